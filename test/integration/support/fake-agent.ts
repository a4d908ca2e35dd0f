// A stand-in for the real agent: serves damon.v1.Agent (recording every call), registers
// with the controller and heartbeats its observed sessions, registering again when the
// controller no longer knows it. Tests steer what it reports.
import { observedDigest, observedPage } from '../../../common/observed-digest.js';
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { serverCredentials, type Credentials } from '../../../common/auth.js';
import { accessAuthorizer, type AccessOptions } from '../../../common/grpc-access.js';
import { RpcError, bindServer, implement, shutdownServer } from '../../../common/grpc-server.js';
import {
  AgentService,
  TargetState,
  type ApplyActionRequest,
  type ObservedSession,
  type RegistryClient,
  type SessionSpec,
} from '../../../gen/damon/v1/damon.js';
import { registryClient, unary } from './grpc-client.js';

export interface FakeAgentOptions {
  host: string;
  controller: string;
  /** What it presents to the controller's Registry (TLS material: also what it serves). */
  credentials?: Credentials;
  /** Who it obeys, as the real agent does (grpc-access.ts); omitted = anyone. */
  accept?: AccessOptions;
  /** Extra client options towards the controller (e.g. TLS name override). */
  controllerClientOptions?: Partial<grpc.ClientOptions>;
  operations?: string[];
  unavailable?: string[];
  heartbeatMs?: number;
}

export type AgentCall =
  | { method: 'apply'; spec: SessionSpec; instanceId: string }
  | { method: 'stop'; sessionId: string; instanceId: string }
  /** Stopped by the agent itself, as a heartbeat's answer asked. */
  | { method: 'stopped-itself'; sessionId: string; instanceId: string }
  /** ApplyAction: answered as if the whole range were mapped and advised. */
  | { method: 'action'; request: ApplyActionRequest; instanceId: string };

export class FakeAgent {
  readonly host: string;
  instanceId = randomUUID();
  address = '';
  readonly calls: AgentCall[] = [];
  /** What it runs, by session id. */
  readonly sessions = new Map<string, ObservedSession>();
  /** State reported for a pid (default RUNNING). */
  readonly pidStates = new Map<number, { state: TargetState; message: string }>();
  /** When set, ApplySession fails with it. */
  applyError: RpcError | undefined;
  /** When set, StopSession fails with it (and stops nothing). */
  stopError: RpcError | undefined;
  /** False: stop heartbeating (the lease runs out). */
  heartbeating = true;
  registrations = 0;
  /** Round trips of the answered heartbeats, with when each was sent (performance.now()). */
  readonly heartbeatTimes: Array<{ at: number; ms: number }> = [];
  private server: grpc.Server | undefined;
  private registry: RegistryClient;
  private timer: NodeJS.Timeout | undefined;
  private beating = false;

  constructor(private readonly o: FakeAgentOptions) {
    this.host = o.host;
    this.registry = registryClient(o.controller, o.credentials ?? {}, o.controllerClientOptions ?? {});
  }

  /** Starts serving on a free loopback port and registers. */
  async start(): Promise<this> {
    const creds = this.o.credentials ?? {};
    this.server = new grpc.Server();
    this.server.addService(
      AgentService,
      implement(
        AgentService,
        {
          applySession: async (req) => {
            const spec = req.spec!;
            this.calls.push({ method: 'apply', spec, instanceId: this.instanceId });
            if (this.applyError) throw this.applyError;
            const observed: ObservedSession = {
              sessionId: spec.sessionId,
              generation: spec.generation,
              running: true,
              targets: spec.pids.map((pid) => ({ pid, state: TargetState.TARGET_STATE_RUNNING, operations: spec.operations || 'synthetic', message: '' })),
              samplingIntervalMeanUs: 0,
              aggregationIntervalMeanUs: 0,
              recordsPublished: 0n, schemeStats: [],
            };
            this.sessions.set(spec.sessionId, observed);
            this.refresh();
            return { observed };
          },
          stopSession: async (req) => {
            this.calls.push({ method: 'stop', sessionId: req.sessionId, instanceId: this.instanceId });
            if (this.stopError) throw this.stopError;
            this.sessions.delete(req.sessionId);
            return {};
          },
          applyAction: async (req) => {
            this.calls.push({ method: 'action', request: req, instanceId: this.instanceId });
            const r = req.request!;
            const bytes = r.end - r.start;
            return {
              actionId: req.actionId,
              sessionId: r.sessionId,
              host: r.host,
              pid: r.pid,
              action: r.action,
              requested: { start: r.start, end: r.end },
              ranges: [{ start: r.start, end: r.end }],
              bytesEligible: bytes,
              bytesClipped: 0n,
              bytesApplied: r.dryRun ? 0n : bytes,
              dryRun: r.dryRun,
              error: '',
              message: '',
              timeMs: BigInt(Date.now()),
              requestedBy: req.requestedBy,
              durationUs: 0n,
            };
          },
          getState: async (req) => ({
            host: this.host,
            instanceId: this.instanceId,
            operations: this.o.operations ?? ['synthetic'],
            unavailable: this.o.unavailable ?? [],
            ...observedPage([...this.sessions.values()], req.pageToken),
            stateDigest: observedDigest(this.sessions.values()),
          }),
        },
        { authorize: this.o.accept && (this.o.accept.identities || this.o.accept.tls) ? accessAuthorizer(this.o.accept) : undefined },
      ),
    );
    const port = await bindServer(this.server, '127.0.0.1:0', serverCredentials(creds));
    this.address = `127.0.0.1:${port}`;
    await this.register();
    this.timer = setInterval(() => void this.beat(), this.o.heartbeatMs ?? 200);
    return this;
  }

  async register(): Promise<void> {
    await unary(this.registry, 'register', {
      host: this.host,
      address: this.address,
      operations: this.o.operations ?? ['synthetic'],
      unavailable: this.o.unavailable ?? [],
      instanceId: this.instanceId,
    });
    this.registrations++;
  }

  private async beat(): Promise<void> {
    if (!this.heartbeating || this.beating) return;
    this.beating = true;
    try {
      const sent = performance.now();
      const r = await unary(this.registry, 'heartbeat', {
        host: this.host,
        instanceId: this.instanceId,
        stateDigest: observedDigest(this.sessions.values()),
        sessionCount: this.sessions.size,
      });
      this.heartbeatTimes.push({ at: sent, ms: performance.now() - sent });
      // As the real agent: sessions the controller does not want here are stopped.
      for (const id of r.stopSessions) {
        if (this.sessions.delete(id)) this.calls.push({ method: 'stopped-itself', sessionId: id, instanceId: this.instanceId });
      }
      if (!r.known) await this.register();
    } catch {
      // Controller unreachable: keep trying, as the real agent does.
    } finally {
      this.beating = false;
    }
  }

  /** Applies pidStates to every session's observed targets. */
  private refresh(): void {
    for (const s of this.sessions.values()) {
      for (const t of s.targets) {
        const p = this.pidStates.get(t.pid);
        if (p) {
          t.state = p.state;
          t.message = p.message;
        }
      }
      s.running = s.targets.some((t) => t.state === TargetState.TARGET_STATE_RUNNING);
    }
  }

  /** Reports `pid` in `state` from now on. */
  setPid(pid: number, state: TargetState, message = ''): void {
    this.pidStates.set(pid, { state, message });
    this.refresh();
  }

  /** Simulates an agent restart: a new instance that runs nothing, registering afresh. */
  async restart(): Promise<void> {
    this.instanceId = randomUUID();
    this.sessions.clear();
    await this.register();
  }

  applies(sessionId?: string): Array<Extract<AgentCall, { method: 'apply' }>> {
    return this.calls.filter((c): c is Extract<AgentCall, { method: 'apply' }> => c.method === 'apply' && (!sessionId || c.spec.sessionId === sessionId));
  }

  /** Sessions it stopped because a heartbeat's answer named them. */
  stoppedItself(sessionId?: string): Array<Extract<AgentCall, { method: 'stopped-itself' }>> {
    return this.calls.filter((c): c is Extract<AgentCall, { method: 'stopped-itself' }> => c.method === 'stopped-itself' && (!sessionId || c.sessionId === sessionId));
  }

  stops(sessionId?: string): Array<Extract<AgentCall, { method: 'stop' }>> {
    return this.calls.filter((c): c is Extract<AgentCall, { method: 'stop' }> => c.method === 'stop' && (!sessionId || c.sessionId === sessionId));
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.registry.close();
    if (this.server) await shutdownServer(this.server, 200);
  }
}
