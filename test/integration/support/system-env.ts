// A whole damon-fleet on this machine for the system tests: a nats-server that can be
// killed and restarted on its store, the real controller and one real agent per host name
// as processes, a Controller client, a NATS connection of the test's own, and real
// processes (`sleep`) as targets. Sessions use the synthetic operations (this host has no
// page_idle), which still watch the real target processes for exit.
import { after, before } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../../../common/nats.js';
import { TargetState, type AgentClient, type ControllerClient, type Session, type TargetStatus } from '../../../gen/damon/v1/damon.js';
import { FAST_ATTRS, agentClient, killTarget, spawnTarget, startKillableNats, tempDir, type KillableNats } from './agent-env.js';
import { TEST_HEARTBEAT_MS, TEST_LEASE_MS } from './controller-env.js';
import { spawnAgent, spawnController, type AgentProcess, type FleetProcess } from './fleet-processes.js';
import { controllerClient, unary, waitFor } from './grpc-client.js';
import { freePort } from './nats-server.js';
import type { TestCredentials } from './credentials.js';

export { AGGREGATION_MS } from './agent-env.js';

type TargetProcess = ReturnType<typeof spawnTarget>;

export interface Fleet {
  nats: KillableNats;
  /** Every identity's credentials, as `damon-fleet credentials` makes them. */
  creds: TestCredentials;
  /** The controller's fixed address: a restarted controller listens there again. */
  readonly controllerAddress: string;
  controller: FleetProcess;
  /** The running agent of each host (replaced when one is started again). */
  readonly agents: Map<string, AgentProcess>;
  client: ControllerClient;
  /** The test's own NATS connection, as a reader (reconnects by itself). */
  nc: NatsConnection;
  /** Starts a controller at controllerAddress (again, after the last one was killed). */
  restartController(): Promise<void>;
  /** Starts the host's agent (again), with the host's data directory. */
  startAgent(host: string): Promise<AgentProcess>;
  /** A real process to monitor, killed at close() if still alive. */
  target(): TargetProcess;
  /** An Agent client for the host's current agent (one per agent address); closed at close(). */
  agentClient(host: string): AgentClient;
  close(): Promise<void>;
}

/** Further command-line options of the fleet's processes. */
export interface FleetArgs {
  controller?: readonly string[];
  agent?: readonly string[];
}

/** Starts NATS, the controller and an agent per host; resolves once every agent is live. */
export async function startFleet(hosts: string[], args: FleetArgs = {}): Promise<Fleet> {
  const nats = await startKillableNats({ agents: hosts });
  const creds = nats.credentials;
  const dataDir = tempDir('damon-system-');
  const targets: TargetProcess[] = [];
  const agentClients = new Map<string, AgentClient>();
  // Every process this fleet started, and agent starts still under way: close() waits for
  // those and stops them all, so a start that fails half-way leaves nothing running.
  const processes: FleetProcess[] = [];
  const starting = new Set<Promise<unknown>>();
  const controllerAddress = `127.0.0.1:${await freePort()}`;
  const controllerOpts = { listen: controllerAddress, nats: nats.url, credentials: creds, leaseTtlMs: TEST_LEASE_MS, heartbeatMs: TEST_HEARTBEAT_MS, extraArgs: args.controller };
  const fleet: Partial<Fleet> & { agents: Map<string, AgentProcess> } = {
    nats,
    creds,
    controllerAddress,
    agents: new Map(),
    async restartController() {
      fleet.controller = await spawnController(controllerOpts);
      processes.push(fleet.controller);
    },
    async startAgent(host) {
      const start = spawnAgent({ host, controller: controllerAddress, nats: nats.url, credentials: creds, dataDir: `${dataDir.path}/${host}`, extraArgs: args.agent });
      starting.add(start);
      try {
        const a = await start;
        processes.push(a);
        fleet.agents.set(host, a);
        return a;
      } finally {
        starting.delete(start);
      }
    },
    target() {
      const t = spawnTarget();
      targets.push(t);
      return t;
    },
    agentClient(host) {
      const a = fleet.agents.get(host);
      if (!a) throw new Error(`no agent for host ${host}`);
      let c = agentClients.get(a.address);
      if (!c) {
        c = agentClient(a.address, creds.grpc.controllerToAgent(host));
        agentClients.set(a.address, c);
      }
      return c;
    },
    async close() {
      for (const c of agentClients.values()) c.close();
      fleet.client?.close();
      await Promise.allSettled([...starting]);
      await Promise.all(processes.filter((p) => p !== fleet.controller).map((p) => p.stop(3000)));
      await fleet.controller?.stop(3000);
      await fleet.nc?.close().catch(() => undefined);
      await Promise.all(targets.map(killTarget));
      await nats.stop();
      dataDir.remove();
    },
  };
  try {
    await fleet.restartController!();
    fleet.client = controllerClient(controllerAddress, creds.grpc.operator);
    fleet.nc = await connectNats({ servers: nats.url, nkeyFile: creds.reader() });
    const started = await Promise.allSettled(hosts.map((h) => fleet.startAgent!(h)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    await waitFor('every agent live', async () => {
      const { agents } = await unary(fleet.client!, 'listAgents', {});
      return hosts.every((h) => agents.some((a) => a.host === h && a.live && a.instanceId === fleet.agents.get(h)!.instanceId));
    }, 15_000);
  } catch (err) {
    await fleet.close!();
    throw err;
  }
  return fleet as Fleet;
}

/**
 * Creates a session over `targets` with the synthetic operations and fast attributes
 * (10 ms sampling, 200 ms aggregation) and turns it on; returns the TurnOn reply and when
 * it came (Date.now()).
 */
export async function sessionOn(fleet: Fleet, id: string, targets: Array<{ host: string; pid: number }>): Promise<{ session: Session; onAt: number }> {
  await unary(fleet.client, 'createSession', { id, attrs: { ...FAST_ATTRS }, attrsText: '', schemesText: '', targets, operations: 'synthetic', syntheticWorkload: 'hot5' });
  const session = await unary(fleet.client, 'turnOn', { id });
  return { session, onAt: Date.now() };
}

export function getSession(fleet: Fleet, id: string): Promise<Session> {
  return unary(fleet.client, 'getSession', { id });
}

export function statusOf(s: Session, host: string, pid: number): TargetStatus | undefined {
  return s.targetStatus.find((t) => t.target?.host === host && t.target.pid === pid);
}

/** Polls GetSession until `ok` holds (retrying while the controller is unreachable); returns that session. */
export function waitSession(fleet: Fleet, id: string, what: string, ok: (s: Session) => boolean, timeoutMs = 10_000): Promise<Session> {
  return waitFor(what, async () => {
    const s = await getSession(fleet, id);
    return ok(s) ? s : undefined;
  }, timeoutMs);
}

export const RUNNING = TargetState.TARGET_STATE_RUNNING;
export const EXITED = TargetState.TARGET_STATE_EXITED;
export const PENDING = TargetState.TARGET_STATE_PENDING;

export { killTarget };

/**
 * Starts a fleet before a suite's tests and closes it after them (call inside describe);
 * tests read it as `env.fleet`.
 */
export function useFleet(hosts: string[], args: FleetArgs = {}): { readonly fleet: Fleet } {
  let fleet: Fleet | undefined;
  before(async () => {
    fleet = await startFleet(hosts, args);
  }, { timeout: 90_000 });
  after(async () => {
    await fleet?.close();
  });
  return {
    get fleet(): Fleet {
      if (!fleet) throw new Error('the fleet did not start (see the before hook)');
      return fleet;
    },
  };
}
