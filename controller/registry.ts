// Agents known to the controller: registered by host, alive while they heartbeat within
// the lease, carrying what they observed (the sessions they run). Held in memory: after a
// controller restart, agents learn from their next heartbeat (known = false) to register again.
import * as grpc from '@grpc/grpc-js';
import { RpcError } from '../common/grpc-server.js';
import type { BasicLogger as Logger } from '../common/log.js';
import { HOST_RE } from '../common/subjects.js';
import { describeCaller, mayRegisterAddress, type Caller } from '../common/grpc-access.js';
import { excerpt, quoted } from '../common/log.js';
import type {
  AgentInfo,
  HeartbeatRequest,
  HeartbeatResponse,
  ObservedSession,
  RegisterRequest,
  RegisterResponse,
} from '../gen/damon/v1/damon.js';
import type { AgentConnection } from './agent-client.js';
import { observedDigest } from '../common/observed-digest.js';

/** One registered agent. */
export interface AgentEntry {
  host: string;
  address: string;
  operations: string[];
  unavailable: string[];
  instanceId: string;
  lastHeartbeatMs: number;
  live: boolean;
  /** Sessions the agent reported (heartbeat, ApplySession, GetState), by id. */
  observed: Map<string, ObservedSession>;
  /**
   * False until this controller has heard what the instance runs (a heartbeat or GetState):
   * an agent registering with a restarted controller may already run sessions.
   */
  synced: boolean;
  connection: AgentConnection;
}

export interface RegistryOptions {
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  /** A client of the host's agent at `address`. */
  connect: (host: string, address: string) => AgentConnection;
  log: Logger;
  now?: () => number;
  /** Called when something a reconcile acts on changed (an agent came, went, or reported). */
  onChange?: () => void;
  /** Called once per refused duplicate instance (a second agent claiming a live host). */
  onConflict?: (host: string, message: string) => void;
  /** Sessions `agent` runs (as last pulled) that the controller does not want on its host. */
  unwanted?: (agent: AgentEntry) => string[];
}

/** Sessions one heartbeat answer asks to stop (bounds the answer; the next names the rest). */
const MAX_STOP_SESSIONS = 64;

const ADDRESS_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

function invalid(message: string): RpcError {
  return new RpcError(grpc.status.INVALID_ARGUMENT, message);
}

// An agent's credential names its host: it speaks for that host only.
function checkHost(host: string, caller: Caller | undefined): void {
  if (caller && caller.name !== host) {
    throw new RpcError(grpc.status.PERMISSION_DENIED, `${describeCaller(caller)} may not speak for host ${quoted(host)}`);
  }
}

export class AgentRegistry {
  private readonly agents = new Map<string, AgentEntry>();
  private readonly now: () => number;
  /** Per host, the refused duplicate instance last reported (an agent retries registering). */
  private readonly conflicts = new Map<string, string>();

  constructor(private readonly opts: RegistryOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * Registry.Register: (re)places the host's agent; a new instance id means the agent
   * restarted. `caller` (absent only on a server without authentication) must be that
   * host's agent, and the address must be one its credential names. A new instance at
   * another address while the host's lease is live is a restart only if the old instance no
   * longer answers there; otherwise two agents claim one host: ALREADY_EXISTS.
   */
  async register(req: RegisterRequest, caller?: Caller): Promise<Omit<RegisterResponse, 'epoch'>> {
    if (!HOST_RE.test(req.host)) throw invalid(`host: not a valid host name: ${quoted(req.host)}`);
    if (!ADDRESS_RE.test(req.address)) throw invalid(`address: expected "host:port", got ${quoted(req.address)}`);
    if (req.instanceId === '') throw invalid('instance_id: required (new on every agent start)');
    checkHost(req.host, caller);
    if (caller && !mayRegisterAddress(caller, req.address)) {
      throw new RpcError(
        grpc.status.PERMISSION_DENIED,
        `${describeCaller(caller)} may not register address ${req.address}: its ${caller.via} names ` +
          `${caller.addresses.length ? caller.addresses.join(', ') : 'no address'}`,
      );
    }
    const { log } = this.opts;
    const before = this.agents.get(req.host);
    if (before?.live && before.instanceId !== req.instanceId && before.address !== req.address) await this.refuseIfAnswering(before, req);
    const old = this.agents.get(req.host);
    let connection: AgentConnection;
    if (old && old.address === req.address) {
      connection = old.connection;
    } else {
      old?.connection.close();
      connection = this.opts.connect(req.host, req.address);
    }
    const sameInstance = old?.instanceId === req.instanceId;
    const entry: AgentEntry = {
      host: req.host,
      address: req.address,
      operations: [...req.operations],
      unavailable: [...req.unavailable],
      instanceId: req.instanceId,
      lastHeartbeatMs: this.now(),
      live: true,
      // The same instance keeps what it runs; a new one starts empty.
      observed: sameInstance ? old!.observed : new Map(),
      synced: sameInstance ? old!.synced : false,
      connection,
    };
    this.agents.set(req.host, entry);
    if (!old) {
      log.info(`agent ${req.host} registered (${req.address}, instance ${excerpt(req.instanceId)}, operations: ${excerpt(req.operations.join(', '), 200) || 'none'})`);
    } else if (!sameInstance) {
      log.info(`agent ${req.host} restarted (instance ${excerpt(old.instanceId)} -> ${excerpt(req.instanceId)}, ${req.address})`);
    } else {
      log.info(`agent ${req.host} registered again (${req.address}, instance ${excerpt(req.instanceId)})`);
    }
    this.opts.onChange?.();
    return { leaseTtlMs: BigInt(this.opts.leaseTtlMs), heartbeatIntervalMs: BigInt(this.opts.heartbeatIntervalMs) };
  }

  /** Refuses `req` (ALREADY_EXISTS, reported once) when the host's live agent `old` still answers at its address. */
  private async refuseIfAnswering(old: AgentEntry, req: RegisterRequest): Promise<void> {
    let answering: boolean;
    try {
      answering = (await old.connection.state()).host === req.host;
    } catch {
      answering = false; // gone (or not an agent of this host any more): the newcomer is a restart elsewhere
    }
    if (!answering) return;
    const message =
      `host ${quoted(req.host)} already has a live agent at ${old.address} (instance ${excerpt(old.instanceId)}); ` +
      `refused the agent at ${req.address} (instance ${excerpt(req.instanceId)}): two agents may not claim one host`;
    if (this.conflicts.get(req.host) !== req.instanceId) {
      this.conflicts.set(req.host, req.instanceId);
      this.opts.log.warn(message);
      this.opts.onConflict?.(req.host, message);
    }
    throw new RpcError(grpc.status.ALREADY_EXISTS, message);
  }

  /**
   * Registry.Heartbeat: renews the lease of a known, live instance. A digest unlike that of
   * what the controller knows the agent runs marks it for a GetState pull (the reconcile
   * loop's). Names sessions the agent runs that the controller does not want there.
   */
  heartbeat(req: HeartbeatRequest, caller?: Caller): Omit<HeartbeatResponse, 'epoch'> {
    checkHost(req.host, caller);
    const a = this.agents.get(req.host);
    if (!a || a.instanceId !== req.instanceId || !a.live) return { known: false, stopSessions: [] };
    a.lastHeartbeatMs = this.now();
    const inSync = req.stateDigest === observedDigest(a.observed.values());
    if (inSync !== a.synced) {
      a.synced = inSync;
      if (!inSync) this.opts.onChange?.();
    }
    // Only what the controller knows the agent runs now can be judged unwanted.
    const stopSessions = inSync ? (this.opts.unwanted?.(a) ?? []).slice(0, MAX_STOP_SESSIONS) : [];
    return { known: true, stopSessions };
  }

  /** Marks agents whose lease ran out as not live (logged once). */
  expire(): void {
    const now = this.now();
    for (const a of this.agents.values()) {
      if (a.live && now - a.lastHeartbeatMs > this.opts.leaseTtlMs) {
        a.live = false;
        this.opts.log.warn(`agent ${a.host} expired (no heartbeat for ${now - a.lastHeartbeatMs} ms, instance ${excerpt(a.instanceId)})`);
        this.opts.onChange?.();
      }
    }
  }

  /** The host's agent if it holds a lease. */
  live(host: string): AgentEntry | undefined {
    const a = this.agents.get(host);
    return a?.live ? a : undefined;
  }

  /** Every live agent. */
  liveAgents(): AgentEntry[] {
    return [...this.agents.values()].filter((a) => a.live);
  }

  /** Controller.ListAgents: every agent ever registered since the controller started, by host. */
  list(): AgentInfo[] {
    return [...this.agents.values()]
      .sort((a, b) => a.host.localeCompare(b.host))
      .map((a) => ({
        host: a.host,
        address: a.address,
        operations: [...a.operations],
        unavailable: [...a.unavailable],
        live: a.live,
        lastHeartbeatMs: BigInt(a.lastHeartbeatMs),
        instanceId: a.instanceId,
      }));
  }

  /** A new term as leader: what each agent runs is asked again (GetState) before anything is dispatched to it. */
  resync(): void {
    for (const a of this.agents.values()) a.synced = false;
  }

  /** Closes every agent connection. */
  close(): void {
    for (const a of this.agents.values()) a.connection.close();
    this.agents.clear();
    this.conflicts.clear();
  }
}
