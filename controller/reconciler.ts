// The reconcile loop (the Kubernetes controller pattern). Desired state: the sessions that
// are ON in the bucket. Observed state: what live agents report. Each pass makes them agree:
// dispatches ON sessions to their hosts' agents (again after an agent restarted or lost one),
// stops sessions agents run that are not desired, records observed target status in the
// session, and turns a session off once none of its targets is left to monitor.
// Each session is reconciled on its own: an error with one (other than NATS being away)
// backs that session off, exponentially and capped, while the pass goes on with the rest.
// Bucket entries that break the session schema are quarantined: listed, never dispatched.
import * as grpc from '@grpc/grpc-js';
import { excerpt, type BasicLogger as Logger } from '../common/log.js';
import { isNatsUnavailable } from '../common/nats.js';
import { RpcError } from '../common/grpc-server.js';
import { SessionEventKind } from '../gen/damon/v1/damon.js';
import { callErrorText } from './agent-client.js';
import type { EventPublisher } from './events.js';
import type { KeyedMutex } from './keyed-mutex.js';
import { inTargetOrder, specFor, statusFrom, type SessionLifecycle } from './lifecycle.js';
import type { AgentEntry, AgentRegistry } from './registry.js';
import { targetHosts, type StoredSession, type StoredTargetStatus } from './session-model.js';
import { isQuarantined, type Quarantined, type SessionStore, type Versioned } from './session-store.js';

export interface ReconcilerOptions {
  /** Time between passes when nothing nudges the loop. */
  intervalMs: number;
  /**
   * After the controller starts, hosts whose agents have not registered yet keep their last
   * recorded status for this long (agents re-register within a lease).
   */
  startupGraceMs: number;
  log: Logger;
  now?: () => number;
}

// Errors worth retrying on the next pass (the agent may come back); others mean the agent
// refused the spec, which stays refused until the agent or the spec changes.
const TRANSIENT = new Set<number>([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
  grpc.status.UNKNOWN,
]);

/** Longest wait before a failing session is reconciled again. */
export const MAX_SESSION_BACKOFF_MS = 30_000;

/** A session whose reconcile failed: when to try again, and what was logged. */
interface Backoff {
  /** The entry's revision when it failed: a change resets the backoff. */
  revision: number;
  failures: number;
  retryAtMs: number;
  message: string;
}

/** What the last pass listed, to judge what agents run (see unwantedOn). */
interface Snapshot {
  seq: number;
  sessions: Map<string, { state: 'on' | 'off'; revision: number; generation: number; hosts: string[] }>;
  quarantined: Set<string>;
}

function isDone(t: StoredTargetStatus): boolean {
  return t.state === 'exited' || t.state === 'failed';
}

function sameStatus(a: StoredTargetStatus[], b: StoredTargetStatus[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class Reconciler {
  /** Completed passes (tests wait on it). */
  passes = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private natsDown = false;
  private readonly startedAt: number;
  private readonly now: () => number;
  private readonly backoff = new Map<string, Backoff>();
  /** Quarantined keys and the revision logged, so each is logged once per revision. */
  private readonly quarantineLogged = new Map<string, number>();
  private snapshot: Snapshot | undefined;
  /** Agents whose last GetState failed, with the error logged. */
  private readonly syncErrors = new Map<string, string>();
  /** host -> session -> "instance/generation" the agent refused; not re-sent until either changes. */
  private readonly refused = new Map<string, Map<string, { key: string; message: string }>>();

  constructor(
    private readonly store: SessionStore,
    private readonly registry: AgentRegistry,
    private readonly lifecycle: SessionLifecycle,
    private readonly events: EventPublisher,
    private readonly locks: KeyedMutex,
    private readonly opts: ReconcilerOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops the loop; resolves when a running pass has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** Asks for a pass soon (coalesced with one in progress). */
  nudge(): void {
    if (this.stopped) return;
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.pass().finally(() => {
        this.running = undefined;
        if (this.stopped) return;
        const again = this.again;
        this.again = false;
        this.schedule(again ? 0 : this.opts.intervalMs);
      });
    }, delayMs);
  }

  /** One pass over every session and every live agent; errors are logged, the loop goes on. */
  async pass(): Promise<void> {
    try {
      this.registry.expire();
      await this.syncAgents();
      const listing = await this.store.scan();
      this.noteQuarantined(listing.quarantined);
      const { sessions } = listing;
      for (const v of sessions) {
        if (v.session.state === 'on') await this.reconcileIsolated(v);
      }
      const on = new Set(sessions.filter((v) => v.session.state === 'on').map((v) => v.session.id));
      for (const id of this.backoff.keys()) if (!on.has(id)) this.backoff.delete(id);
      for (const perHost of this.refused.values()) for (const id of perHost.keys()) if (!on.has(id)) perHost.delete(id);
      this.snapshot = {
        seq: listing.seq,
        sessions: new Map(
          sessions.map((v) => [
            v.session.id,
            { state: v.session.state, revision: v.revision, generation: v.session.generation, hosts: targetHosts(v.session) },
          ]),
        ),
        quarantined: new Set(listing.quarantined.map((q) => q.id)),
      };
      await this.stopUndesired(new Map(sessions.map((v) => [v.session.id, v.session])));
      if (this.natsDown) this.opts.log.info('reconcile: NATS reachable again');
      this.natsDown = false;
    } catch (err) {
      if (isNatsUnavailable(err)) {
        // Logged once per outage, not once per pass.
        if (!this.natsDown) this.opts.log.warn(`reconcile: NATS unavailable (${(err as Error).message}); retrying every pass`);
        this.natsDown = true;
      } else if (err instanceof RpcError) {
        this.opts.log.warn(`reconcile: ${err.message}`); // e.g. this controller stopped leading mid-pass
      } else {
        this.opts.log.error(`reconcile: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      }
    } finally {
      this.passes++;
    }
  }

  /**
   * Reconciles one ON session unless it is backing off. NATS being away is the whole pass's
   * problem (rethrown); any other error backs this session off alone.
   */
  private async reconcileIsolated(v: Versioned): Promise<void> {
    const id = v.session.id;
    const b = this.backoff.get(id);
    if (b && b.revision === v.revision && this.now() < b.retryAtMs) return;
    if (b && b.revision !== v.revision) this.backoff.delete(id); // changed: a fresh start
    try {
      await this.locks.run(id, () => this.reconcileSession(id));
      const was = this.backoff.get(id);
      if (was) {
        this.backoff.delete(id);
        this.opts.log.info(`session ${id}: reconciled again after ${was.failures} failed attempt${was.failures > 1 ? 's' : ''}`);
      }
    } catch (err) {
      if (isNatsUnavailable(err)) throw err;
      const message = excerpt(err instanceof Error ? err.message : String(err), 300);
      const prev = this.backoff.get(id);
      const failures = (prev?.failures ?? 0) + 1;
      const delay = Math.min(this.opts.intervalMs * 2 ** (failures - 1), MAX_SESSION_BACKOFF_MS);
      this.backoff.set(id, { revision: v.revision, failures, retryAtMs: this.now() + delay, message });
      if (prev?.message !== message) {
        // Once per distinct error, not once per attempt; a bug (not an RpcError) with its stack.
        const detail = err instanceof RpcError ? '' : `\n${err instanceof Error ? err.stack : ''}`;
        this.opts.log.warn(`session ${id}: reconcile failed: ${message}; backing off (up to ${MAX_SESSION_BACKOFF_MS} ms), the other sessions go on${detail}`);
      }
    }
  }

  /** Logs each quarantined entry once per revision. */
  private noteQuarantined(quarantined: Quarantined[]): void {
    const seen = new Set<string>();
    for (const q of quarantined) {
      seen.add(q.id);
      if (this.quarantineLogged.get(q.id) === q.revision) continue;
      this.quarantineLogged.set(q.id, q.revision);
      this.opts.log.error(`session ${q.id} quarantined (revision ${q.revision}): ${q.error}`);
    }
    for (const id of this.quarantineLogged.keys()) {
      if (!seen.has(id)) {
        this.quarantineLogged.delete(id);
        this.opts.log.info(`session ${id}: quarantined entry gone`);
      }
    }
  }

  /**
   * Sessions `agent` runs (as this controller last heard) that the last pass's listing says
   * it does not want on the agent's host: deleted, off since the generation the agent runs,
   * or on without this host. A generation newer than the listing (a TurnOn since, which
   * dispatches before it records ON) and quarantined entries are left alone.
   */
  unwantedOn(agent: AgentEntry): string[] {
    const snap = this.snapshot;
    if (!snap) return [];
    const out: string[] = [];
    for (const [id, o] of agent.observed) {
      const g = Number(o.generation);
      if (g > snap.seq || snap.quarantined.has(id)) continue;
      const s = snap.sessions.get(id);
      if (!s) out.push(id);
      else if (s.state === 'off' && g < s.revision) out.push(id);
      else if (s.state === 'on' && g < s.generation && !s.hosts.includes(agent.host)) out.push(id);
    }
    return out;
  }

  /**
   * Pulls what agents run (GetState, in pages) from those whose heartbeat digest is new to
   * this controller (or that just registered), before dispatching to them.
   */
  private async syncAgents(): Promise<void> {
    await Promise.all(
      this.registry
        .liveAgents()
        .filter((a) => !a.synced)
        .map(async (a) => {
          try {
            const state = await a.connection.state();
            if (a.synced || state.instanceId !== a.instanceId) return; // a heartbeat was quicker, or it restarted again
            a.observed = new Map(state.sessions.map((s) => [s.sessionId, s]));
            a.synced = true;
            if (this.syncErrors.delete(a.host)) this.opts.log.info(`agent ${a.host}: GetState answers again`);
          } catch (err) {
            // Dispatching re-sends what it may already run, which is harmless (ApplySession is
            // idempotent). The next heartbeat's digest asks again: logged once per error.
            const text = callErrorText(err);
            if (this.syncErrors.get(a.host) !== text) this.opts.log.warn(`agent ${a.host}: GetState failed: ${text}`);
            this.syncErrors.set(a.host, text);
            a.synced = true;
          }
        }),
    );
  }

  private inGrace(): boolean {
    return this.now() - this.startedAt < this.opts.startupGraceMs;
  }

  /** Dispatches one ON session where needed and records what its agents observe. */
  private async reconcileSession(id: string): Promise<void> {
    const v = await this.store.get(id);
    if (!v || v.session.state !== 'on') return;
    const s = v.session;
    const statuses: StoredTargetStatus[] = [];
    for (const host of targetHosts(s)) {
      const agent = this.registry.live(host);
      if (!agent) {
        if (this.inGrace()) statuses.push(...s.targetStatus.filter((t) => t.host === host));
        else statuses.push(...statusFrom(s, host, undefined, `no live agent on ${host}`));
        continue;
      }
      if (!agent.synced) {
        // Registered after this pass synced agents: ask it what it runs (next pass) before
        // dispatching, so a running session is not sent again.
        statuses.push(...s.targetStatus.filter((t) => t.host === host));
        continue;
      }
      statuses.push(...(await this.ensureRunning(s, agent)));
    }
    const next = inTargetOrder(s, statuses);
    // Unchanged status needs no write, unless nothing is left to monitor (e.g. every pid was
    // already gone when it was turned on): then it turns off.
    if (sameStatus(next, s.targetStatus) && !next.every(isDone)) return;
    await this.recordStatus(id, s.generation, next);
  }

  /** Makes sure `agent` runs its share of `s` at s.generation; returns that share's target status. */
  private async ensureRunning(s: StoredSession, agent: AgentEntry): Promise<StoredTargetStatus[]> {
    const observed = agent.observed.get(s.id);
    if (observed && observed.generation === BigInt(s.generation)) return statusFrom(s, agent.host, observed, 'not reported by the agent');
    const key = `${agent.instanceId}/${s.generation}`;
    const refused = this.refused.get(agent.host)?.get(s.id);
    if (refused?.key === key) {
      return statusFrom(s, agent.host, undefined, '').map((t) => ({ ...t, state: 'failed', message: refused.message }));
    }
    const why = observed ? `it runs generation ${observed.generation}` : 'it does not run it';
    this.opts.log.info(`session ${s.id}: dispatching to ${agent.host} (generation ${s.generation}; ${why})`);
    try {
      const res = await agent.connection.apply(specFor(s, agent.host, s.generation));
      if (res.observed) agent.observed.set(s.id, res.observed);
      this.refused.get(agent.host)?.delete(s.id);
      return statusFrom(s, agent.host, res.observed, 'dispatched');
    } catch (err) {
      const text = callErrorText(err);
      const code = (err as Partial<grpc.ServiceError>).code;
      if (typeof code === 'number' && !TRANSIENT.has(code)) {
        this.opts.log.warn(`session ${s.id}: ${agent.host} refused it: ${text}`);
        if (!this.refused.has(agent.host)) this.refused.set(agent.host, new Map());
        this.refused.get(agent.host)!.set(s.id, { key, message: `refused by agent: ${text}` });
        return statusFrom(s, agent.host, undefined, '').map((t) => ({ ...t, state: 'failed', message: `refused by agent: ${text}` }));
      }
      this.opts.log.warn(`session ${s.id}: dispatch to ${agent.host} failed: ${text}; retrying`);
      return statusFrom(s, agent.host, undefined, `dispatch to ${agent.host} failed: ${text}`);
    }
  }

  /**
   * Commits observed target status (compare-and-set, only onto the same ON generation),
   * publishes target events, and turns the session off when no target is left.
   */
  private async recordStatus(id: string, generation: number, statuses: StoredTargetStatus[]): Promise<void> {
    let turnedOff = false;
    const exited: StoredTargetStatus[] = [];
    const failed: StoredTargetStatus[] = [];
    const r = await this.store.update(id, (cur) => {
      if (cur.state !== 'on' || cur.generation !== generation) return undefined;
      exited.length = 0;
      failed.length = 0;
      for (const t of statuses) {
        const before = cur.targetStatus.find((x) => x.host === t.host && x.pid === t.pid);
        if (before?.state === t.state) continue;
        if (t.state === 'exited') exited.push(t);
        if (t.state === 'failed') failed.push(t);
      }
      cur.targetStatus = statuses;
      turnedOff = statuses.every(isDone);
      if (turnedOff) {
        cur.state = 'off';
        const nFailed = statuses.filter((t) => t.state === 'failed').length;
        cur.offReason = nFailed === 0 ? 'all targets exited' : `no target left to monitor (${statuses.length - nFailed} exited, ${nFailed} failed)`;
      }
      return cur;
    });
    if (!r.changed) return;
    const rev = r.after.revision;
    for (const t of exited) {
      this.opts.log.info(`session ${id}: target ${t.host} pid ${t.pid} exited`);
      await this.events.publish(id, rev, SessionEventKind.SESSION_EVENT_KIND_TARGET_EXITED, t.message || 'exited', { host: t.host, pid: t.pid });
    }
    for (const t of failed) {
      this.opts.log.warn(`session ${id}: target ${t.host} pid ${t.pid} failed: ${t.message}`);
      await this.events.publish(id, rev, SessionEventKind.SESSION_EVENT_KIND_TARGET_FAILED, t.message || 'failed', { host: t.host, pid: t.pid });
    }
    if (turnedOff) {
      const reason = r.after.session.offReason;
      this.opts.log.info(`session ${id} off (${reason})`);
      await this.lifecycle.stopHosts(r.after.session, id);
      await this.events.publish(id, rev, SessionEventKind.SESSION_EVENT_KIND_OFF, reason);
    }
  }

  /** Stops sessions live agents run that are not desired there (off, deleted, or not this host's). */
  private async stopUndesired(listed: Map<string, StoredSession>): Promise<void> {
    const desiredOn = (s: StoredSession | undefined, host: string) => s?.state === 'on' && targetHosts(s).includes(host);
    for (const agent of this.registry.liveAgents()) {
      for (const id of [...agent.observed.keys()]) {
        // The pass's listing settles the common case; a session that looks undesired is re-read
        // under its lock, as it may have been turned on since.
        if (desiredOn(listed.get(id), agent.host)) continue;
        try {
          await this.locks.run(id, async () => {
            if (!agent.observed.has(id)) return; // stopped meanwhile
            const v = await this.store.read(id);
            if (v !== null && isQuarantined(v)) return; // unreadable: neither dispatched nor judged
            if (desiredOn(v?.session, agent.host)) return;
            const why = !v ? 'deleted' : v.session.state !== 'on' ? 'off' : 'no target on this host';
            this.opts.log.info(`session ${id}: stopping on ${agent.host} (${why})`);
            await this.lifecycle.stopOn([agent], id);
          });
        } catch (err) {
          if (isNatsUnavailable(err)) throw err;
          this.opts.log.warn(`session ${id}: stopping on ${agent.host} failed: ${excerpt(err instanceof Error ? err.message : String(err), 300)}`);
        }
      }
    }
  }
}
