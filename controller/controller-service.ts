// The damon.v1.Controller service: sessions with DAMON's interface rules (attributes and
// targets change only while off; on needs targets; delete only while off), their on/off
// life cycle, record and event streams, and the agent list.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { JetStreamClient } from '@nats-io/jetstream';
import { RpcError, type AsyncHandlers } from '../common/grpc-server.js';
import { quoted, type BasicLogger as Logger } from '../common/log.js';
import { EVENTS_STREAM, HOST_RE, RECORDS_STREAM, eventOnSubject, eventsFilter, recordOnSubject, recordsFilter } from '../common/subjects.js';
import { AggregationRecord, Session, SessionEvent, type ControllerService, type HostSchemeStats, type ListSessionsResponse } from '../gen/damon/v1/damon.js';
import { decodeRecord } from '../common/record-wire.js';
import type { SessionLifecycle } from './lifecycle.js';
import type { KeyedMutex } from './keyed-mutex.js';
import type { AgentRegistry } from './registry.js';
import {
  attrsFromRequest,
  attrsText,
  checkSchemesOperations,
  checkSessionId,
  schemesText,
  targetHosts,
  idleStatus,
  operationsFromRequest,
  targetsFromRequest,
  toProtoAttrs,
  toProtoSession,
  type StoredSession,
  type StoredTarget,
} from './session-model.js';
import { isQuarantined, type SessionStore, type Versioned } from './session-store.js';
import { streamFromJetStream } from './watch.js';
import { requestAction } from './actions.js';
import type { ActionRateLimiter } from './action-limits.js';
import { callerOf, describeCaller, mayRead } from '../common/grpc-access.js';
import { DEFAULT_RESULT_FORMAT } from '../common/session-schema.js';

export interface ControllerDeps {
  store: SessionStore;
  registry: AgentRegistry;
  lifecycle: SessionLifecycle;
  locks: KeyedMutex;
  js: JetStreamClient;
  /** RequestAction's rate limits. */
  actionLimiter: ActionRateLimiter;
  log: Logger;
  /** Called after a change the reconcile loop should act on soon. */
  nudge: () => void;
  now?: () => number;
}

/** An optimizer reads only the sessions it is granted: the others are PERMISSION_DENIED, whether they exist or not. */
function checkMayRead(call: object, id: string): void {
  const c = callerOf(call);
  if (!mayRead(c, id)) throw new RpcError(grpc.status.PERMISSION_DENIED, `${describeCaller(c!)} may not read session "${id}"`);
}

function failedWhileOn(id: string, what: string): RpcError {
  return new RpcError(grpc.status.FAILED_PRECONDITION, `session "${id}" is on: turn it off before changing its ${what}`);
}

/** Targets for a log line: a count, and the first few (a session may have hundreds). */
function describeTargets(targets: StoredTarget[]): string {
  if (targets.length === 0) return 'no targets';
  const shown = targets.slice(0, 4).map((t) => `${t.host}:${t.pid}`).join(', ');
  return `${targets.length} target${targets.length > 1 ? 's' : ''}: ${shown}${targets.length > 4 ? ', …' : ''}`;
}

/**
 * Scheme statistics of an ON session, per host, as its live agents last reported them for
 * the generation it runs (ObservedSession.scheme_stats, refreshed with the agents' state).
 * They are not written to the bucket: they change every few seconds on every host.
 */
export function schemeStatsOf(s: StoredSession, registry: Pick<AgentRegistry, 'live'>): HostSchemeStats[] {
  if (s.state !== 'on' || (s.attrs.schemes ?? []).length === 0) return [];
  const out: HostSchemeStats[] = [];
  for (const host of targetHosts(s)) {
    const o = registry.live(host)?.observed.get(s.id);
    if (o && o.generation === BigInt(s.generation) && o.schemeStats.length > 0) out.push({ host, schemes: o.schemeStats });
  }
  return out;
}

// proto3 uint64: 0 = not given.
function revisionArg(r: bigint): number {
  if (r > BigInt(Number.MAX_SAFE_INTEGER)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `expected_revision: too large: ${r}`);
  return Number(r);
}

/** ListSessions page size: the default (page_size 0) and the largest accepted. */
export const LIST_PAGE_DEFAULT = 100;
export const LIST_PAGE_MAX = 1000;
/** A ListSessions page stops before its sessions pass this many bytes (gRPC's limit is 4 MiB). */
const LIST_PAGE_BYTES = 3 * 1024 * 1024;

// The token is the last key of the previous page (base64url): keys are listed in order.
function pageTokenKey(token: string): string | undefined {
  if (token === '') return undefined;
  const key = Buffer.from(token, 'base64url').toString();
  if (!/^[A-Za-z0-9_=-]+$/.test(token) || key === '' || Buffer.from(key).toString('base64url') !== token) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, `page_token: not a token ListSessions gave: ${quoted(token)}`);
  }
  return key;
}

export function controllerHandlers(d: ControllerDeps): AsyncHandlers<typeof ControllerService> {
  const now = d.now ?? Date.now;
  const out = (v: Versioned) => toProtoSession(v.session, v.revision, schemeStatsOf(v.session, d.registry));
  return {
    async createSession(req) {
      const id = req.id === '' ? randomUUID() : checkSessionId(req.id);
      const attrs = attrsFromRequest(req, DEFAULT_RESULT_FORMAT, false);
      const targets = targetsFromRequest(req.targets);
      const ops = operationsFromRequest(req.operations, req.syntheticWorkload);
      checkSchemesOperations(attrs, ops.operations);
      const t = now();
      const s: StoredSession = {
        id,
        attrs,
        targets,
        state: 'off',
        ...ops,
        generation: 0,
        targetStatus: idleStatus(targets),
        offReason: '',
        createdAtMs: t,
        updatedAtMs: t,
      };
      const v = await d.store.create(s);
      d.log.info(
        `session ${id} created (${describeTargets(targets)}, attrs ${quoted(attrsText(attrs))}, ` +
          `${attrs.schemes.length} scheme${attrs.schemes.length === 1 ? '' : 's'}, operations "${ops.operations || 'best available'}")`,
      );
      return out(v);
    },

    async getSession(req, call) {
      checkMayRead(call, checkSessionId(req.id));
      return out(await d.store.mustGet(req.id));
    },

    async listSessions(req, call) {
      const caller = callerOf(call);
      const pageSize = req.pageSize === 0 ? LIST_PAGE_DEFAULT : req.pageSize;
      if (pageSize > LIST_PAGE_MAX) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, `page_size: too large: ${pageSize}; at most ${LIST_PAGE_MAX}`);
      }
      const after = pageTokenKey(req.pageToken);
      const { keys } = await d.store.keys();
      const res: ListSessionsResponse = { sessions: [], quarantined: [], nextPageToken: '' };
      let bytes = 0;
      let last = '';
      const rest = keys.filter((k) => (after === undefined || k > after) && mayRead(caller, k));
      for (const k of rest) {
        if (res.sessions.length + res.quarantined.length >= pageSize) break;
        const v = await d.store.read(k); // deleted since the listing: skipped
        if (v !== null) {
          if (isQuarantined(v)) {
            res.quarantined.push({ id: v.id, revision: BigInt(v.revision), error: v.error });
          } else {
            const s = out(v);
            const n = Session.encode(s).finish().length;
            // A page stops before it would pass the byte budget (never before its first session).
            if (bytes + n > LIST_PAGE_BYTES && res.sessions.length > 0) break;
            res.sessions.push(s);
            bytes += n;
          }
        }
        last = k;
      }
      if (last !== '' && last !== rest[rest.length - 1]) res.nextPageToken = Buffer.from(last).toString('base64url');
      return res;
    },

    async deleteSession(req) {
      const id = checkSessionId(req.id);
      await d.locks.run(id, () =>
        d.store.delete(id, (s) => {
          if (s.state === 'on') throw new RpcError(grpc.status.FAILED_PRECONDITION, `session "${id}" is on: turn it off before deleting it`);
        }),
      );
      d.log.info(`session ${id} deleted`);
      return {};
    },

    async setAttributes(req) {
      const id = checkSessionId(req.id);
      const expected = revisionArg(req.expectedRevision);
      const r = await d.store.update(
        id,
        (cur) => {
          // Bad values are refused before the state is looked at, as DAMON parses before it checks.
          cur.attrs = attrsFromRequest(req, cur.attrs.resultFormat, true);
          checkSchemesOperations(cur.attrs, cur.operations);
          if (cur.state === 'on') throw failedWhileOn(id, 'attributes');
          cur.targetStatus = idleStatus(cur.targets); // a new configuration: the last run's outcome no longer applies
          return cur;
        },
        expected,
      );
      const set = r.after.session.attrs;
      d.log.info(`session ${id}: attributes set to ${quoted(attrsText(set))} (${set.resultFormat}, ${set.schemes.length} scheme${set.schemes.length === 1 ? '' : 's'})`);
      return out(r.after);
    },

    async getAttributes(req) {
      const v = await d.store.mustGet(checkSessionId(req.id));
      return { attrs: toProtoAttrs(v.session.attrs), attrsText: attrsText(v.session.attrs), schemesText: schemesText(v.session.attrs) };
    },

    async setTargets(req) {
      const id = checkSessionId(req.id);
      const expected = revisionArg(req.expectedRevision);
      const targets = targetsFromRequest(req.targets);
      const ops = operationsFromRequest(req.operations, req.syntheticWorkload);
      const r = await d.store.update(
        id,
        (cur) => {
          if (cur.state === 'on') throw failedWhileOn(id, 'targets');
          // Operations that cannot apply the session's schemes: INVALID_ARGUMENT, naming the scheme.
          checkSchemesOperations(cur.attrs, ops.operations);
          cur.targets = targets;
          cur.operations = ops.operations;
          cur.syntheticWorkload = ops.syntheticWorkload;
          cur.targetStatus = idleStatus(targets);
          return cur;
        },
        expected,
      );
      d.log.info(`session ${id}: targets set to ${describeTargets(targets)} (operations "${ops.operations || 'best available'}")`);
      return out(r.after);
    },

    async turnOn(req) {
      const v = await d.lifecycle.turnOn(checkSessionId(req.id));
      d.nudge();
      return out(v);
    },

    async turnOff(req) {
      const v = await d.lifecycle.turnOff(checkSessionId(req.id));
      d.nudge();
      return out(v);
    },

    async watchRecords(call) {
      const { sessionId, host, replay } = call.request;
      checkSessionId(sessionId, 'session_id');
      checkMayRead(call, sessionId);
      if (host !== '' && !HOST_RE.test(host)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `host: not a valid host name: ${quoted(host)}`);
      await d.store.mustGet(sessionId); // NOT_FOUND rather than a silent, endless stream
      await streamFromJetStream(
        call,
        d.js,
        {
          stream: RECORDS_STREAM,
          filter: recordsFilter(sessionId, host || undefined),
          replay,
          // Plain regions: what grpcurl shows readably (the packed form is for NATS's volume).
          decode: (b, subject) => recordOnSubject(decodeRecord(b), subject),
          what: `records of session ${sessionId}${host ? ` on ${host}` : ''}`,
        },
        d.log,
      );
    },

    async watchEvents(call) {
      const { sessionId, replay } = call.request;
      if (sessionId !== '') {
        checkSessionId(sessionId, 'session_id');
        await d.store.mustGet(sessionId);
      }
      await streamFromJetStream(
        call,
        d.js,
        {
          stream: EVENTS_STREAM,
          filter: eventsFilter(sessionId || undefined),
          replay,
          decode: (b, subject) => eventOnSubject(SessionEvent.decode(b), subject),
          what: sessionId ? `events of session ${sessionId}` : 'events of every session',
        },
        d.log,
      );
    },

    async listAgents() {
      return { agents: d.registry.list() };
    },

    async requestAction(req, call) {
      return requestAction(req, callerOf(call), { store: d.store, registry: d.registry, limiter: d.actionLimiter, log: d.log });
    },
  };
}
