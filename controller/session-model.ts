// A session as the controller stores it (JSON in the damon_sessions bucket), the checks
// every client input goes through, and the conversions to and from the API's messages.
import * as grpc from '@grpc/grpc-js';
import { RpcError } from '../common/grpc-server.js';
import { excerpt, quoted } from '../common/log.js';
import { checkSchemesFitOperations } from '../common/scheme-schema.js';
import { formatSchemesText } from '../common/scheme-text.js';
import {
  SchemaError,
  attrsFromMessage,
  attrsFromText,
  checkOperations,
  checkSessionId,
  checkTargets,
  formatAttrsText,
  MAX_STATUS_MESSAGE_CHARS,
  toProtoAttrs,
  within,
  type SessionAttrs,
  type SessionTarget,
} from '../common/session-schema.js';
import {
  SessionState,
  TargetState,
  type Attributes as ProtoAttributes,
  type HostSchemeStats,
  type Session,
  type Target,
  type TargetStatus,
} from '../gen/damon/v1/damon.js';

export { checkSessionId, toProtoAttrs };

/** Observed per-target states, as stored. */
export type StoredTargetState = 'idle' | 'pending' | 'running' | 'exited' | 'failed';
const STORED_TARGET_STATES: readonly StoredTargetState[] = ['idle', 'pending', 'running', 'exited', 'failed'];

export type StoredAttrs = SessionAttrs;
export type StoredTarget = SessionTarget;

export interface StoredTargetStatus extends StoredTarget {
  state: StoredTargetState;
  operations: string;
  message: string;
}

/** The JSON value of one session in the bucket (key = id). Revision is the entry's, not stored. */
export interface StoredSession {
  id: string;
  attrs: StoredAttrs;
  targets: StoredTarget[];
  state: 'on' | 'off';
  operations: string;
  syntheticWorkload: string;
  /** Revision the session was turned on at (identifies the spec agents run); 0 = never on. */
  generation: number;
  targetStatus: StoredTargetStatus[];
  offReason: string;
  createdAtMs: number;
  updatedAtMs: number;
  /** Epoch of the leading controller that wrote it, in decimal (fencing, controller/leadership.ts); absent = 0. */
  epoch?: string;
}

function invalid(message: string): RpcError {
  return new RpcError(grpc.status.INVALID_ARGUMENT, message);
}

/**
 * The attributes a request gives, as message (with attrs.schemes) or as DAMON text (with
 * schemes_text), exactly one of them, checked against the session schema; unset message
 * fields take DAMON's defaults. `currentFormat` is kept when the text form (which has no
 * format) is used.
 */
export function attrsFromRequest(
  req: { attrs?: ProtoAttributes; attrsText: string; schemesText: string },
  currentFormat: string,
  required: boolean,
): StoredAttrs {
  const { attrs, attrsText: text, schemesText } = req;
  if (attrs && text.trim() !== '') {
    throw invalid('attrs, attrs_text: give the attributes either as a message or as text, not both');
  }
  if (schemesText.trim() !== '' && text.trim() === '') {
    throw invalid('schemes_text: goes with attrs_text (with the attrs message, give attrs.schemes)');
  }
  if (text.trim() !== '') {
    try {
      return attrsFromText(text, currentFormat, schemesText);
    } catch (err) {
      // "attrs_text: max_nr_regions: too large: ...", as DAMON's text names its fields;
      // "schemes_text: line 2, field 4 (max_nr_accesses): ..." as it is.
      if (err instanceof SchemaError && err.field !== 'schemes_text') throw new SchemaError('attrs_text', err.message, err.code);
      throw err;
    }
  }
  if (!attrs) {
    if (required) throw invalid('attrs, attrs_text: one of them is required');
    return attrsFromMessage(undefined);
  }
  return within('attrs.', () => attrsFromMessage(attrs));
}

/** Schemes the session's explicit operations cannot apply are refused where they are set. */
export function checkSchemesOperations(attrs: StoredAttrs, operations: string): void {
  within('attrs.', () => checkSchemesFitOperations(attrs.schemes, operations));
}

/** Checks a request's targets (schema limits, host names, pids, duplicates). */
export function targetsFromRequest(targets: Target[]): StoredTarget[] {
  return checkTargets(targets);
}

/** Checks the operations name and the synthetic workload that only goes with "synthetic". */
export function operationsFromRequest(operations: string, syntheticWorkload: string): { operations: string; syntheticWorkload: string } {
  return checkOperations(operations, syntheticWorkload);
}

/** Target status of a session that is not monitoring: idle, except what already finished. */
export function idleStatus(targets: StoredTarget[], previous: StoredTargetStatus[] = []): StoredTargetStatus[] {
  return targets.map((t) => {
    const p = previous.find((s) => s.host === t.host && s.pid === t.pid);
    if (p && (p.state === 'exited' || p.state === 'failed')) return { ...p };
    return { host: t.host, pid: t.pid, state: 'idle', operations: '', message: '' };
  });
}

/** The hosts of a session's targets, sorted, each once. */
export function targetHosts(s: Pick<StoredSession, 'targets'>): string[] {
  return [...new Set(s.targets.map((t) => t.host))].sort();
}

/** Pids of the session's targets on `host`. */
export function pidsOn(s: Pick<StoredSession, 'targets'>, host: string): number[] {
  return s.targets.filter((t) => t.host === host).map((t) => t.pid);
}

const TO_PROTO_TARGET_STATE: Record<StoredTargetState, TargetState> = {
  idle: TargetState.TARGET_STATE_IDLE,
  pending: TargetState.TARGET_STATE_PENDING,
  running: TargetState.TARGET_STATE_RUNNING,
  exited: TargetState.TARGET_STATE_EXITED,
  failed: TargetState.TARGET_STATE_FAILED,
};

/** An agent-reported TargetState as stored; unknown values count as pending. */
export function fromProtoTargetState(s: TargetState): StoredTargetState {
  switch (s) {
    case TargetState.TARGET_STATE_IDLE:
      return 'idle';
    case TargetState.TARGET_STATE_RUNNING:
      return 'running';
    case TargetState.TARGET_STATE_EXITED:
      return 'exited';
    case TargetState.TARGET_STATE_FAILED:
      return 'failed';
    default:
      return 'pending';
  }
}

/** DAMON's text form of stored attributes. */
export function attrsText(a: StoredAttrs): string {
  return formatAttrsText(a);
}

/** The schemes' text form of stored attributes ("" for none). */
export function schemesText(a: StoredAttrs): string {
  return formatSchemesText(a.schemes ?? []);
}

function toProtoTargetStatus(s: StoredTargetStatus): TargetStatus {
  return {
    target: { host: s.host, pid: s.pid },
    state: TO_PROTO_TARGET_STATE[s.state],
    operations: s.operations,
    message: s.message,
  };
}

/**
 * A stored session (at `revision`) as the API's message, with the scheme statistics its
 * agents last reported (they are not stored: see schemeStatsOf in controller-service.ts).
 */
export function toProtoSession(s: StoredSession, revision: number, schemeStats: HostSchemeStats[] = []): Session {
  return {
    id: s.id,
    attrs: toProtoAttrs(s.attrs),
    attrsText: attrsText(s.attrs),
    schemesText: schemesText(s.attrs),
    targets: s.targets.map((t) => ({ host: t.host, pid: t.pid })),
    state: s.state === 'on' ? SessionState.SESSION_STATE_ON : SessionState.SESSION_STATE_OFF,
    operations: s.operations,
    syntheticWorkload: s.syntheticWorkload,
    targetStatus: s.targetStatus.map(toProtoTargetStatus),
    offReason: s.offReason,
    revision: BigInt(revision),
    createdAtMs: BigInt(s.createdAtMs),
    updatedAtMs: BigInt(s.updatedAtMs),
    schemeStats,
  };
}

/** A bucket value that is not a session of this schema (written by hand, or by an older controller). */
export class StoredSessionError extends Error {
  constructor(readonly key: string, detail: string) {
    super(`session ${quoted(key)}: stored value ${detail}`);
    this.name = 'StoredSessionError';
  }
}

const ATTR_NUMBERS = ['samplingUs', 'aggregationUs', 'updateUs', 'minNrRegions', 'maxNrRegions'] as const;

/**
 * Parses a bucket value and checks it against the session schema, as a request is checked:
 * a value out of bounds would fail every answer that carries it (a uint32 that does not
 * fit, a message over a limit). Throws StoredSessionError naming the key and the field.
 */
export function decodeStoredSession(key: string, json: string): StoredSession {
  let v: StoredSession;
  try {
    v = JSON.parse(json) as StoredSession;
  } catch (err) {
    throw new StoredSessionError(key, `is not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || v.id !== key || !Array.isArray(v.targets) || !Array.isArray(v.targetStatus) || !v.attrs) {
    throw new StoredSessionError(key, 'is not a session');
  }
  try {
    for (const k of ATTR_NUMBERS) {
      const n = v.attrs[k];
      if (!Number.isSafeInteger(n) || n <= 0) throw new SchemaError(`attrs.${k}`, `not a positive integer: ${excerpt(String(n), 24)}`);
    }
    // Sessions stored before schemes have none.
    v.attrs.schemes = within('attrs.', () => attrsFromMessage(toProtoAttrs(v.attrs))).schemes;
    checkSchemesOperations(v.attrs, v.operations);
    checkTargets(v.targets);
    checkOperations(v.operations, v.syntheticWorkload);
    if (v.epoch !== undefined && !(typeof v.epoch === 'string' && /^\d{1,20}$/.test(v.epoch))) throw new SchemaError('epoch', 'not a decimal string of at most 20 digits');
    if (v.targetStatus.length > v.targets.length) throw new SchemaError('target_status', 'has more entries than targets');
    for (const t of v.targetStatus) {
      if (!STORED_TARGET_STATES.includes(t.state)) throw new SchemaError('target_status', `unknown state ${quoted(String(t.state))}`);
      if (typeof t.message !== 'string' || t.message.length > MAX_STATUS_MESSAGE_CHARS * 4 + 1) {
        throw new SchemaError('target_status', `a message is not a string of at most ${MAX_STATUS_MESSAGE_CHARS} characters`);
      }
    }
  } catch (err) {
    if (err instanceof SchemaError) throw new StoredSessionError(key, `breaks the session schema: ${err.message}`);
    throw err;
  }
  return v;
}
