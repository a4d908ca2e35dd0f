// A session as the controller stores it (JSON in the damon_sessions bucket), the checks
// every client input goes through, and the conversions to and from the API's messages.
import * as grpc from '@grpc/grpc-js';
import {
  AttributeError,
  DEFAULT_ATTRS,
  formatAttrsText,
  parseAttrsText,
  validateAttributes,
  type Attributes as EngineAttributes,
} from '../agent/engine/attrs.js';
import { HOST_RE, SESSION_ID_RE } from '../common/subjects.js';
import { RpcError } from '../common/grpc-server.js';
import {
  SessionState,
  TargetState,
  type Attributes as ProtoAttributes,
  type Session,
  type Target,
  type TargetStatus,
} from '../gen/damon/v1/damon.js';

/** Result-file formats (Attributes.result_format); "" stores as the default, "binary". */
export const RESULT_FORMATS = ['binary', 'binary_v0', 'json', 'json_compressed'] as const;

/** Operation names a session may ask for; "" asks each agent for the best its host supports. */
export const KNOWN_OPERATIONS = ['page_idle', 'kdamond', 'synthetic'] as const;

/** Observed per-target states, as stored. */
export type StoredTargetState = 'idle' | 'pending' | 'running' | 'exited' | 'failed';

export interface StoredAttrs extends EngineAttributes {
  resultFormat: string;
}

export interface StoredTarget {
  host: string;
  pid: number;
}

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
}

function invalid(message: string): RpcError {
  return new RpcError(grpc.status.INVALID_ARGUMENT, message);
}

/** Checks a session id (INVALID_ARGUMENT naming `field` otherwise). */
export function checkSessionId(id: string, field = 'id'): string {
  if (!SESSION_ID_RE.test(id)) {
    throw invalid(`${field}: must be 1 to 64 of [A-Za-z0-9_-], got "${id}"`);
  }
  return id;
}

function u64(v: bigint, field: string): number | undefined {
  if (v === 0n) return undefined; // proto3: 0 is "unset", the default fills it
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`attrs.${field}: too large: ${v}`);
  return Number(v);
}

function checkResultFormat(format: string): string {
  const f = format === '' ? 'binary' : format;
  if (!(RESULT_FORMATS as readonly string[]).includes(f)) {
    throw invalid(`attrs.result_format: unknown format "${format}" (formats: ${RESULT_FORMATS.join(', ')})`);
  }
  return f;
}

function attributeError(err: unknown, prefix: string): never {
  if (err instanceof AttributeError) throw invalid(`${prefix}${err.message}`);
  throw err;
}

/**
 * The attributes a request gives, as message or DAMON text (exactly one of them), checked
 * with DAMON's rules; unset message fields take DAMON's defaults. `currentFormat` is kept
 * when the text form (which has no format) is used.
 */
export function attrsFromRequest(
  attrs: ProtoAttributes | undefined,
  attrsText: string,
  currentFormat: string,
  required: boolean,
): StoredAttrs {
  if (attrs && attrsText.trim() !== '') {
    throw invalid('attrs, attrs_text: give the attributes either as a message or as text, not both');
  }
  if (attrsText.trim() !== '') {
    try {
      return { ...parseAttrsText(attrsText), resultFormat: currentFormat };
    } catch (err) {
      attributeError(err, 'attrs_text: ');
    }
  }
  if (!attrs) {
    if (required) throw invalid('attrs, attrs_text: one of them is required');
    return { ...DEFAULT_ATTRS, resultFormat: currentFormat };
  }
  const partial: Partial<EngineAttributes> = { resultFile: attrs.resultFile };
  const set = <K extends keyof EngineAttributes>(k: K, v: EngineAttributes[K] | undefined) => {
    if (v !== undefined) partial[k] = v;
  };
  set('samplingUs', u64(attrs.samplingIntervalUs, 'sampling_interval_us'));
  set('aggregationUs', u64(attrs.aggregationIntervalUs, 'aggregation_interval_us'));
  set('updateUs', u64(attrs.updateIntervalUs, 'update_interval_us'));
  set('minNrRegions', attrs.minNrRegions || undefined);
  set('maxNrRegions', attrs.maxNrRegions || undefined);
  let checked: EngineAttributes;
  try {
    checked = validateAttributes(partial);
  } catch (err) {
    attributeError(err, 'attrs.');
  }
  return { ...checked, resultFormat: checkResultFormat(attrs.resultFormat) };
}

/** Checks targets: host names (RFC 1123), pid > 0, no target twice. */
export function targetsFromRequest(targets: Target[]): StoredTarget[] {
  const seen = new Set<string>();
  return targets.map((t, i) => {
    if (!HOST_RE.test(t.host)) throw invalid(`targets[${i}].host: not a valid host name: "${t.host}"`);
    if (!Number.isInteger(t.pid) || t.pid <= 0) throw invalid(`targets[${i}].pid: must be a positive process id, got ${t.pid}`);
    const key = `${t.host}/${t.pid}`;
    if (seen.has(key)) throw invalid(`targets[${i}]: duplicate target ${t.host} pid ${t.pid}`);
    seen.add(key);
    return { host: t.host, pid: t.pid };
  });
}

/** Checks the operations name and the synthetic workload that only goes with "synthetic". */
export function operationsFromRequest(operations: string, syntheticWorkload: string): { operations: string; syntheticWorkload: string } {
  if (operations !== '' && !(KNOWN_OPERATIONS as readonly string[]).includes(operations)) {
    throw invalid(
      `operations: unknown operations "${operations}" (known: ${KNOWN_OPERATIONS.join(', ')}; empty for the best each host supports)`,
    );
  }
  if (syntheticWorkload !== '' && operations !== 'synthetic') {
    throw invalid('synthetic_workload: only meaningful with operations "synthetic"');
  }
  return { operations, syntheticWorkload };
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

/** Stored attributes as the API's message. */
export function toProtoAttrs(a: StoredAttrs): ProtoAttributes {
  return {
    samplingIntervalUs: BigInt(a.samplingUs),
    aggregationIntervalUs: BigInt(a.aggregationUs),
    updateIntervalUs: BigInt(a.updateUs),
    minNrRegions: a.minNrRegions,
    maxNrRegions: a.maxNrRegions,
    resultFile: a.resultFile,
    resultFormat: a.resultFormat,
  };
}

/** DAMON's text form of stored attributes. */
export function attrsText(a: StoredAttrs): string {
  return formatAttrsText(a);
}

function toProtoTargetStatus(s: StoredTargetStatus): TargetStatus {
  return {
    target: { host: s.host, pid: s.pid },
    state: TO_PROTO_TARGET_STATE[s.state],
    operations: s.operations,
    message: s.message,
  };
}

/** A stored session (at `revision`) as the API's message. */
export function toProtoSession(s: StoredSession, revision: number): Session {
  return {
    id: s.id,
    attrs: toProtoAttrs(s.attrs),
    attrsText: attrsText(s.attrs),
    targets: s.targets.map((t) => ({ host: t.host, pid: t.pid })),
    state: s.state === 'on' ? SessionState.SESSION_STATE_ON : SessionState.SESSION_STATE_OFF,
    operations: s.operations,
    syntheticWorkload: s.syntheticWorkload,
    targetStatus: s.targetStatus.map(toProtoTargetStatus),
    offReason: s.offReason,
    revision: BigInt(revision),
    createdAtMs: BigInt(s.createdAtMs),
    updatedAtMs: BigInt(s.updatedAtMs),
  };
}

/** Parses a bucket value; throws naming the key when it is not a session. */
export function decodeStoredSession(key: string, json: string): StoredSession {
  let v: StoredSession;
  try {
    v = JSON.parse(json) as StoredSession;
  } catch (err) {
    throw new Error(`session ${key}: stored value is not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || v.id !== key || !Array.isArray(v.targets) || !v.attrs) {
    throw new Error(`session ${key}: stored value is not a session`);
  }
  return v;
}
