// The agent's side of the controller's Registry: register (a new instance id per agent
// start), then heartbeat every interval the controller asked for. A heartbeat is a lease of
// fixed size: a digest of the observed sessions, not the sessions (the controller pulls
// those with GetState when the digest is new to it); its answer names sessions the
// controller does not want here, which the agent stops. A heartbeat answered "unknown" (the controller restarted or let the lease lapse)
// leads to registering again. While the controller is unreachable the agent keeps
// monitoring and keeps retrying; the log says so once per change, not per attempt.
// Given several controllers (one leads, the others stand by), it talks to the leader: a
// standby's refusal names the leader, an unreachable one sends it to the next address.
import * as grpc from '@grpc/grpc-js';
import { leaderNamedIn } from '../../common/fencing.js';
import { channelCredentials, clientOptions, type Credentials } from '../../common/auth.js';
import {
  RegistryClient,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type ObservedSession,
  type RegisterRequest,
  type RegisterResponse,
} from '../../gen/damon/v1/damon.js';
import { StateLog, type Logger } from '../../common/log.js';
import { Sleeper } from './sleeper.js';
import { observedDigest } from '../../common/observed-digest.js';

export interface RegistrationOptions {
  /** The controllers' gRPC addresses ("host:port"): one leads, the agent finds which. */
  controllers: readonly string[];
  credentials: Credentials;
  /** Extra client options, e.g. 'grpc.ssl_target_name_override'. */
  clientOptions?: Partial<grpc.ClientOptions>;
  /** What this agent registers as (host, address, operations, instance id). */
  registration: RegisterRequest;
  /** The sessions as the agent observes them now. */
  observed: () => ObservedSession[];
  /** Sessions the controller does not want on this host (deleted, turned off): stop them. */
  stopUnwanted?: (sessionIds: string[]) => void;
  log: Logger;
  /** Heartbeat interval until the controller names one. */
  defaultHeartbeatMs?: number;
  /** Delay between attempts while the controller is unreachable: doubles from min to max. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** The leader's epoch, from each Register and Heartbeat answer (fencing). */
  onEpoch?: (epoch: bigint) => void;
}

type Reach = 'reachable' | 'unreachable';

function callDeadline(ms: number): Date {
  return new Date(Date.now() + ms);
}

export class Registration {
  private readonly clients = new Map<string, RegistryClient>();
  /** Index in opts.controllers of the controller talked to. */
  private current = 0;
  /** Controllers that failed since one last answered: once all did, wait before going round again. */
  private failedInARow = 0;
  private readonly reach: StateLog<Reach>;
  private readonly log: Logger;
  private registered = false;
  private heartbeatMs: number;
  private leaseMs = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly sleeper = new Sleeper();
  private wakeRequested = false;
  private heartbeats = 0;

  constructor(private readonly opts: RegistrationOptions) {
    this.log = opts.log;
    this.reach = new StateLog(opts.log);
    this.heartbeatMs = opts.defaultHeartbeatMs ?? 2_000;
    if (opts.controllers.length === 0) throw new Error('registration: no controller address');
  }

  /** The controller address talked to now. */
  get controller(): string {
    return this.opts.controllers[this.current];
  }

  private get client(): RegistryClient {
    let c = this.clients.get(this.controller);
    if (!c) {
      c = new RegistryClient(this.controller, channelCredentials(this.opts.credentials), clientOptions(this.opts.credentials, this.opts.clientOptions));
      this.clients.set(this.controller, c);
    }
    return c;
  }

  /** True once the controller accepted this instance (and has not disowned it since). */
  get isRegistered(): boolean {
    return this.registered;
  }

  /** Heartbeats the controller answered, since start. */
  get heartbeatCount(): number {
    return this.heartbeats;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Sends a heartbeat now (e.g. a target exited), without waiting for the interval. */
  heartbeatSoon(): void {
    this.wakeRequested = true;
    this.sleeper.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.sleeper.wake();
    await this.loop;
    for (const c of this.clients.values()) c.close();
  }

  private sleep(ms: number): Promise<void> {
    if (this.wakeRequested || this.stopped) return Promise.resolve();
    return this.sleeper.sleep(ms);
  }

  private unary<Req, Res>(
    method: (req: Req, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown,
    req: Req,
  ): Promise<Res> {
    const timeout = Math.max(1_000, Math.min(this.heartbeatMs, 5_000));
    return new Promise((resolve, reject) => {
      method.call(this.client, req, new grpc.Metadata(), { deadline: callDeadline(timeout) }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  /**
   * After a failed call: goes to the leader a standby named, or to the next controller.
   * Returns whether to retry at once (false: every controller failed in a row, back off).
   */
  private moveOn(err: unknown): boolean {
    const list = this.opts.controllers;
    const named = leaderNamedIn(err);
    const from = this.controller;
    const code = (err as Partial<grpc.ServiceError>)?.code;
    if (named === undefined && code !== undefined && code !== grpc.status.UNAVAILABLE && code !== grpc.status.DEADLINE_EXCEEDED) {
      // The leader answered and refused (credentials, a host claimed twice): ask it again later.
      this.unreachable(err);
      return false;
    }
    if (named !== undefined && named !== from && list.includes(named)) {
      this.current = list.indexOf(named);
      this.registered = false;
      this.failedInARow = 0;
      this.log.info(`controller ${from} stands by; the leader is ${named}`);
      return true;
    }
    if (named !== undefined && !list.includes(named)) {
      this.reach.set('unreachable', `controller ${from} stands by and names the leader ${named}, which is not among --controller ${list.join(',')}; trying the others`, 'warn');
    } else {
      this.unreachable(err);
    }
    if (list.length === 1) return false;
    this.current = (this.current + 1) % list.length;
    this.registered = false;
    this.failedInARow++;
    return this.failedInARow % list.length !== 0;
  }

  private unreachable(err: unknown): void {
    const e = err as grpc.ServiceError;
    const why = typeof e?.code === 'number' ? `${grpc.status[e.code]}: ${e.details || e.message}` : String(err);
    // Refused credentials are not an outage: say so plainly, they will not fix themselves.
    const hint =
      e?.code === grpc.status.UNAUTHENTICATED || e?.code === grpc.status.PERMISSION_DENIED
        ? " (check --token-file, or the certificate's spiffe://damon-fleet/agent/<host> SAN, against the controller's identities)"
        : e?.code === grpc.status.ALREADY_EXISTS
          ? ' (another agent holds this host name: this one is taken once that one is gone)'
          : '';
    this.reach.set(
      'unreachable',
      `controller ${this.controller} ${hint ? 'refused this agent' : 'unreachable'} (${why})${hint}; monitoring continues, retrying`,
      'warn',
    );
  }

  private async run(): Promise<void> {
    const retryMin = this.opts.retryMinMs ?? 250;
    const retryMax = this.opts.retryMaxMs ?? 5_000;
    let retry = retryMin;
    while (!this.stopped) {
      if (!this.registered) {
        try {
          const res = await this.unary<RegisterRequest, RegisterResponse>(
            this.client.register,
            this.opts.registration,
          );
          this.registered = true;
          this.failedInARow = 0;
          this.opts.onEpoch?.(res.epoch);
          const hb = Number(res.heartbeatIntervalMs);
          if (hb > 0) this.heartbeatMs = hb;
          this.leaseMs = Number(res.leaseTtlMs);
          this.reach.set('reachable', `controller ${this.controller} reachable`);
          this.log.info(
            `registered with controller ${this.controller} as ${this.opts.registration.host} ` +
              `(instance ${this.opts.registration.instanceId}, heartbeat every ${this.heartbeatMs} ms, lease ${this.leaseMs} ms)`,
          );
          retry = retryMin;
          // Falls through to a heartbeat right away: the controller reconciles against it.
        } catch (err) {
          if (this.stopped) break;
          this.wakeRequested = false; // an early heartbeat cannot go out before registering
          if (this.moveOn(err)) continue;
          // Among several controllers a new leader is due within seconds: look again soon.
          await this.sleep(this.opts.controllers.length > 1 ? Math.min(retry, this.heartbeatMs) : retry);
          retry = Math.min(retry * 2, retryMax);
          continue;
        }
      }
      this.wakeRequested = false;
      try {
        const observed = this.opts.observed();
        const res = await this.unary<HeartbeatRequest, HeartbeatResponse>(this.client.heartbeat, {
          host: this.opts.registration.host,
          instanceId: this.opts.registration.instanceId,
          stateDigest: observedDigest(observed),
          sessionCount: observed.length,
        });
        this.heartbeats++;
        this.failedInARow = 0;
        this.opts.onEpoch?.(res.epoch);
        this.reach.set('reachable', `controller ${this.controller} reachable`);
        retry = retryMin;
        if (res.known && res.stopSessions.length > 0) {
          // Only ids this agent runs: the answer is about them, nothing else is acted on.
          const running = new Set(observed.map((o) => o.sessionId));
          const unwanted = res.stopSessions.filter((id) => running.has(id));
          if (unwanted.length > 0) this.opts.stopUnwanted?.(unwanted);
        }
        if (!res.known) {
          this.log.warn(
            `controller ${this.controller} does not know this agent (it restarted or the lease expired); registering again`,
          );
          this.registered = false;
          continue;
        }
        await this.sleep(this.heartbeatMs);
      } catch (err) {
        if (this.stopped) break;
        if (this.moveOn(err)) continue;
        await this.sleep(Math.min(retry, this.heartbeatMs));
        retry = Math.min(retry * 2, retryMax);
      }
    }
  }
}
