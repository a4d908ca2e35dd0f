// Turning sessions on and off across hosts. TurnOn is all-or-nothing across hosts: every
// target host must have a live agent and accept the session, or none keeps it and the
// session stays off. Within the accepted session, DAMON's rule holds: turning on succeeds
// when at least one target starts (the others' status says why not), and fails, leaving
// the session off, when none does. TurnOff commits OFF first, then stops the agents (the
// reconcile loop retries stops).
import * as grpc from '@grpc/grpc-js';
import { RpcError } from '../common/grpc-server.js';
import { excerpt, type BasicLogger as Logger } from '../common/log.js';
import { statusMessage } from '../common/session-schema.js';
import { SessionEventKind, type ObservedSession, type SessionSpec } from '../gen/damon/v1/damon.js';
import { callErrorText } from './agent-client.js';
import type { EventPublisher } from './events.js';
import type { KeyedMutex } from './keyed-mutex.js';
import type { AgentEntry, AgentRegistry } from './registry.js';
import {
  fromProtoTargetState,
  idleStatus,
  pidsOn,
  targetHosts,
  toProtoAttrs,
  type StoredSession,
  type StoredTargetStatus,
} from './session-model.js';
import type { SessionStore, Versioned } from './session-store.js';

/** The spec an agent runs for `host`'s share of a session. */
export function specFor(s: StoredSession, host: string, generation: number): SessionSpec {
  return {
    sessionId: s.id,
    attrs: toProtoAttrs(s.attrs),
    pids: pidsOn(s, host),
    operations: s.operations,
    syntheticWorkload: s.syntheticWorkload,
    generation: BigInt(generation),
  };
}

/** Per-target status of `host`'s targets from what its agent observed. */
export function statusFrom(s: StoredSession, host: string, observed: ObservedSession | undefined, missing: string): StoredTargetStatus[] {
  return pidsOn(s, host).map((pid) => {
    const t = observed?.targets.find((o) => o.pid === pid);
    if (!t) return { host, pid, state: 'pending', operations: '', message: missing };
    return { host, pid, state: fromProtoTargetState(t.state), operations: statusMessage(t.operations, 32), message: statusMessage(t.message) };
  });
}

/** Orders statuses as the session's targets are ordered (pending where one has none). */
export function inTargetOrder(s: StoredSession, statuses: StoredTargetStatus[]): StoredTargetStatus[] {
  return s.targets.map(
    (t) =>
      statuses.find((x) => x.host === t.host && x.pid === t.pid) ??
      { host: t.host, pid: t.pid, state: 'pending', operations: '', message: 'not reported yet' },
  );
}

/** A target that is monitored or about to be (an agent that did not say counts as starting). */
function started(t: StoredTargetStatus): boolean {
  return t.state === 'running' || t.state === 'pending';
}

/** The first `n` items for a message, and how many more there are. */
function some(items: string[], n = 8, sep = ', '): string {
  return items.length <= n ? items.join(sep) : `${items.slice(0, n).join(sep)}${sep}and ${items.length - n} more`;
}

export class SessionLifecycle {
  constructor(
    private readonly store: SessionStore,
    private readonly registry: AgentRegistry,
    private readonly events: EventPublisher,
    private readonly locks: KeyedMutex,
    private readonly log: Logger,
  ) {}

  /** Controller.TurnOn. */
  turnOn(id: string): Promise<Versioned> {
    return this.locks.run(id, async () => {
      const v = await this.store.mustGet(id);
      const s = v.session;
      if (s.state === 'on') throw new RpcError(grpc.status.FAILED_PRECONDITION, `session "${id}" is already on`);
      if (s.targets.length === 0) {
        throw new RpcError(grpc.status.FAILED_PRECONDITION, `session "${id}" has no targets: set targets before turning it on`);
      }
      const hosts = targetHosts(s);
      this.registry.expire(); // leases as of now, not as of the last reconcile pass
      const missing = hosts.filter((h) => !this.registry.live(h));
      if (missing.length > 0) {
        throw new RpcError(
          grpc.status.FAILED_PRECONDITION,
          `session "${id}": no live agent on host${missing.length > 1 ? 's' : ''} ${some(missing)}`,
        );
      }
      const agents = hosts.map((h) => this.registry.live(h)!);
      if (s.operations !== '') {
        const lacking = agents.filter((a) => !a.operations.includes(s.operations));
        if (lacking.length > 0) {
          const why = lacking.map((a) => {
            const reason = a.unavailable.find((u) => u.startsWith(`${s.operations}:`));
            return reason ? `${a.host} (${excerpt(reason, 200)})` : `${a.host} (has ${a.operations.join(', ') || 'none'})`;
          });
          throw new RpcError(grpc.status.FAILED_PRECONDITION, `session "${id}": operations "${s.operations}" unavailable on ${some(why)}`);
        }
      }

      // The revision it is turned on at identifies the spec: attrs and targets cannot change while on.
      const generation = v.revision;
      const results = await Promise.allSettled(agents.map((a) => a.connection.apply(specFor(s, a.host, generation))));
      const failedAt = results.findIndex((r) => r.status === 'rejected');
      if (failedAt >= 0) {
        const err = (results[failedAt] as PromiseRejectedResult).reason;
        const host = agents[failedAt].host;
        this.log.warn(`session ${id}: turn on failed on ${host}: ${callErrorText(err)}; stopping it on the other hosts`);
        await this.stopOn(agents.filter((_, i) => results[i].status === 'fulfilled'), id);
        const e = err as Partial<grpc.ServiceError>;
        const code = typeof e.code === 'number' && e.code !== grpc.status.OK ? e.code : grpc.status.UNAVAILABLE;
        throw new RpcError(code, `session "${id}" stays off: agent on ${host}: ${statusMessage(e.details || e.message || String(err))}`);
      }

      const statuses: StoredTargetStatus[] = [];
      agents.forEach((a, i) => {
        const observed = (results[i] as PromiseFulfilledResult<{ observed?: ObservedSession }>).value.observed;
        if (observed) a.observed.set(id, observed);
        statuses.push(...statusFrom(s, a.host, observed, 'dispatched'));
      });
      if (!statuses.some(started)) return this.noTargetStarted(v, agents, statuses);
      let r;
      try {
        r = await this.store.update(id, (cur, revision) => {
          if (revision !== v.revision) {
            throw new RpcError(grpc.status.ABORTED, `session "${id}" changed while turning on (revision ${v.revision} -> ${revision}): retry`);
          }
          cur.state = 'on';
          cur.generation = generation;
          cur.offReason = '';
          cur.targetStatus = inTargetOrder(cur, statuses);
          return cur;
        });
      } catch (err) {
        await this.stopOn(agents, id);
        throw err;
      }
      this.log.info(`session ${id} on (generation ${generation}, hosts ${some(hosts, 4)}, ${s.targets.length} targets)`);
      await this.events.publish(id, r.after.revision, SessionEventKind.SESSION_EVENT_KIND_ON, 'turned on');
      // Targets already gone when it was turned on (the reconcile loop only reports changes).
      for (const t of r.after.session.targetStatus) {
        const target = { host: t.host, pid: t.pid };
        if (t.state === 'exited') {
          await this.events.publish(id, r.after.revision, SessionEventKind.SESSION_EVENT_KIND_TARGET_EXITED, t.message || 'exited', target);
        } else if (t.state === 'failed') {
          await this.events.publish(id, r.after.revision, SessionEventKind.SESSION_EVENT_KIND_TARGET_FAILED, t.message || 'failed', target);
        }
      }
      return r.after;
    });
  }

  /**
   * TurnOn where every agent accepted the session but no target started (each exited or
   * failed at once): stops it on the agents, keeps the session off with each target's
   * status (until it is reconfigured), and fails with FAILED_PRECONDITION saying why.
   */
  private async noTargetStarted(v: Versioned, agents: AgentEntry[], statuses: StoredTargetStatus[]): Promise<never> {
    const id = v.session.id;
    await this.stopOn(agents, id);
    const ordered = inTargetOrder(v.session, statuses);
    const why = some(ordered.map((t) => `${t.host} pid ${t.pid} ${t.state}${t.message ? `: ${t.message}` : ''}`), 4, '; ');
    try {
      await this.store.update(id, (cur, revision) => {
        if (revision !== v.revision) return undefined; // changed meanwhile: its status is not this run's
        cur.targetStatus = inTargetOrder(cur, statuses);
        cur.offReason = 'turn on failed: no target could start';
        return cur;
      });
    } catch (err) {
      this.log.warn(`session ${id}: could not record the failed turn on: ${(err as Error).message}`);
    }
    this.log.warn(`session ${id} stays off: no target could start (${why})`);
    throw new RpcError(grpc.status.FAILED_PRECONDITION, `session "${id}" stays off: no target could start: ${why}`);
  }

  /** Controller.TurnOff. */
  turnOff(id: string): Promise<Versioned> {
    return this.locks.run(id, async () => {
      const r = await this.store.update(id, (cur) => {
        if (cur.state !== 'on') throw new RpcError(grpc.status.FAILED_PRECONDITION, `session "${id}" is already off`);
        cur.state = 'off';
        cur.offReason = 'turned off';
        cur.targetStatus = idleStatus(cur.targets, cur.targetStatus);
        return cur;
      });
      this.log.info(`session ${id} off (turned off)`);
      await this.stopHosts(r.after.session, id);
      await this.events.publish(id, r.after.revision, SessionEventKind.SESSION_EVENT_KIND_OFF, 'turned off');
      return r.after;
    });
  }

  /** Stops the session on its target hosts' live agents (the reconcile loop retries the rest). */
  async stopHosts(s: StoredSession, id: string): Promise<void> {
    const agents = targetHosts(s)
      .map((h) => this.registry.live(h))
      .filter((a): a is AgentEntry => a !== undefined);
    await this.stopOn(agents, id);
  }

  /** Agent.StopSession on each agent; failures are logged (the reconcile loop stops what is left). */
  async stopOn(agents: AgentEntry[], id: string): Promise<void> {
    await Promise.all(
      agents.map(async (a) => {
        try {
          await a.connection.stop(id);
          a.observed.delete(id);
          this.log.info(`session ${id}: stopped on ${a.host}`);
        } catch (err) {
          this.log.warn(`session ${id}: stop on ${a.host} failed: ${callErrorText(err)}`);
        }
      }),
    );
  }
}
