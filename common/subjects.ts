// NATS names shared by the controller, the agents and consumers: subjects, streams, buckets.
// Documented for consumers in docs/nats.md.

/** Session ids: one NATS subject token, readable in grpcurl. */
export const SESSION_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** Host names: RFC 1123 (letters, digits, '-', dots between labels). No '_', so '.' -> '_' is reversible. */
export const HOST_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** A host name as one subject token ('.' separates tokens in NATS). */
export function hostToken(host: string): string {
  return host.replaceAll('.', '_');
}
export function hostFromToken(token: string): string {
  return token.replaceAll('_', '.');
}

export const RECORDS_STREAM = 'DAMON_RECORDS';
export const EVENTS_STREAM = 'DAMON_EVENTS';
export const ACTIONS_STREAM = 'DAMON_ACTIONS';
export const SESSIONS_BUCKET = 'damon_sessions';
/** The stream behind the bucket (nats.js KV names it KV_<bucket>). */
export const SESSIONS_STREAM = `KV_${SESSIONS_BUCKET}`;
/** Subject prefix of the bucket's keys: a put or delete of key K is a publish to `$KV.damon_sessions.K`. */
export const SESSIONS_KEY_PREFIX = `$KV.${SESSIONS_BUCKET}.`;

/** The controllers' leader lease: one key, taken and renewed by compare-and-set (controller/leadership.ts). */
export const LEADER_BUCKET = 'damon_leader';
export const LEADER_STREAM = `KV_${LEADER_BUCKET}`;
export const LEADER_KEY = 'controller';
/** The subject a put of the lease key publishes to. */
export const LEADER_KEY_SUBJECT = `$KV.${LEADER_BUCKET}.${LEADER_KEY}`;

/** damon.records.<session>.<host>.<pid>: one AggregationRecord (protobuf) per message. */
export function recordsSubject(sessionId: string, host: string, pid: number): string {
  return `damon.records.${sessionId}.${hostToken(host)}.${pid}`;
}
/** Filter for a session's records, optionally of one host. */
export function recordsFilter(sessionId?: string, host?: string): string {
  if (!sessionId) return 'damon.records.>';
  return host ? `damon.records.${sessionId}.${hostToken(host)}.*` : `damon.records.${sessionId}.>`;
}
/**
 * damon.stat.<session>.<host>: DamonStat (protobuf), a session's DAMON_STAT summaries on
 * one host every few seconds. Plain NATS (no stream keeps them): live figures for
 * dashboards; the records they are computed from are in DAMON_RECORDS.
 */
export function statSubject(sessionId: string, host: string): string {
  return `damon.stat.${sessionId}.${hostToken(host)}`;
}
/** Filter for DamonStat messages, optionally of one session. */
export function statFilter(sessionId?: string): string {
  return sessionId ? `damon.stat.${sessionId}.*` : 'damon.stat.>';
}
/** damon.events.<session>: SessionEvent (protobuf). */
export function eventsSubject(sessionId: string): string {
  return `damon.events.${sessionId}`;
}
export function eventsFilter(sessionId?: string): string {
  return sessionId ? eventsSubject(sessionId) : 'damon.events.>';
}
/** damon.actions.<session>.<host>: ActionEvent (protobuf), published by that host's agent for every action it took. */
export function actionsSubject(sessionId: string, host: string): string {
  return `damon.actions.${sessionId}.${hostToken(host)}`;
}
/** Filter for action events, optionally of one session. */
export function actionsFilter(sessionId?: string): string {
  return sessionId ? `damon.actions.${sessionId}.*` : 'damon.actions.>';
}

/**
 * Decodes a record and checks it against its subject. NATS's permissions say who may
 * publish on a subject (an agent only on its own host's), not what the message claims, so
 * a record that names another session, host or pid than its subject is refused here.
 */
export function recordOnSubject<R extends { sessionId: string; host: string; pid: number }>(record: R, subject: string): R {
  const expected = recordsSubject(record.sessionId, record.host, record.pid);
  if (expected !== subject) throw new Error(`the record claims ${expected}`);
  return record;
}

/** A DamonStat checked against its subject, as recordOnSubject. */
export function statOnSubject<S extends { sessionId: string; host: string }>(stat: S, subject: string): S {
  const expected = statSubject(stat.sessionId, stat.host);
  if (expected !== subject) throw new Error(`the stat claims ${expected}`);
  return stat;
}

/** An event checked against its subject, as recordOnSubject. */
export function eventOnSubject<E extends { sessionId: string }>(event: E, subject: string): E {
  const expected = eventsSubject(event.sessionId);
  if (expected !== subject) throw new Error(`the event claims ${expected}`);
  return event;
}
