// What a monitoring session may hold: the one schema the controller's API
// (controller-service.ts), its bucket (decodeStoredSession) and the agents' ApplySession
// (agent/daemon/spec.ts) check against. Whatever can be known without the host (names,
// numbers within their wire types, result-path rules, workloads that parse, sizes) is
// refused here, naming the field and the bound; what depends on the host (pids, the data
// directory, the operations it has) is the agent's to report.
//
// The size limits keep every message of a session within what carries it:
//
//   message                        carried by                   limit      worst case
//   a session entry (JSON)         NATS publish (KV put)        1 MiB      922 KiB
//   Session, GetSession answer     gRPC                         4 MiB      756 KiB
//   ApplySession request (1 host)  gRPC                         4 MiB       20 KiB
//   ApplySession answer (1 host)   gRPC                         4 MiB      414 KiB
//   one AggregationRecord          NATS publish                 1 MiB      704 KiB
//
// A session entry is dominated by its targets: MAX_TARGETS_PER_SESSION of (host of
// MAX_HOST_BYTES, and a status whose message is at most MAX_STATUS_MESSAGE_CHARS, up to
// 6 JSON bytes each), then the synthetic workload and the result path (2 JSON bytes per
// byte at worst: control characters are refused in both). A record is dominated by its
// regions: at most MAX_NR_REGIONS per target (the merge brings them down to
// max_nr_regions every aggregation), 36 protobuf bytes each. test/unit/session-schema.test.ts
// builds each worst case and measures it. What carries many sessions is paged instead:
// ListSessions (3 MiB pages), Agent.GetState (1 MiB pages); a heartbeat carries a digest.
import * as grpc from '@grpc/grpc-js';
import { isAbsolute, posix } from 'node:path';
import { AttributeError, DEFAULT_ATTRS, MAX_ACCESS_BP, maxNrAccesses, validateAttributes, type Attributes, type IntervalsGoal } from '../agent/engine/attrs.js';
import { PRESET_NAMES, resolveWorkload } from '../agent/ops/synthetic-presets.js';
import { MAX_INTERVAL_US, SchemaError } from './schema-base.js';
import { excerpt, quoted } from './log.js';
import { schemesFromMessage, toProtoScheme, type SchemeSpec } from './scheme-schema.js';
import { schemesFromText } from './scheme-text.js';
import { HOST_RE, SESSION_ID_RE } from './subjects.js';
import type { Attributes as ProtoAttributes, IntervalsGoal as ProtoIntervalsGoal } from '../gen/damon/v1/damon.js';

export { MAX_INTERVAL_US, SchemaError, within } from './schema-base.js';

// ---- limits ---------------------------------------------------------------------------

/** Most targets (host, pid) one session may have. */
export const MAX_TARGETS_PER_SESSION = 512;
/** Most distinct hosts one session may span (TurnOn calls each host's agent at once). */
export const MAX_HOSTS_PER_SESSION = 500;
/** Most characters of a session id (one NATS subject token; SESSION_ID_RE). */
export const MAX_SESSION_ID_CHARS = 64;
/** Most bytes of a host name (RFC 1123; HOST_RE). */
export const MAX_HOST_BYTES = 253;
/** Largest max_nr_regions (and so min_nr_regions): one target's record must fit one NATS message. */
export const MAX_NR_REGIONS = 20_000;
/** Most components a result path may have, the file name included. */
export const MAX_RESULT_PATH_DEPTH = 16;
/** Most aggregations between two intervals adjustments of an intervals goal. */
export const MAX_INTERVALS_GOAL_AGGRS = 10_000;
/** Most bytes (UTF-8) a result path may have. */
export const MAX_RESULT_PATH_BYTES = 1024;
/** Most bytes one result path component may have (NAME_MAX). */
export const MAX_RESULT_NAME_BYTES = 255;
/** Most bytes (UTF-8) of a synthetic_workload (a preset name or a JSON workload). */
export const MAX_SYNTHETIC_WORKLOAD_BYTES = 16_384;
/** Most characters of a target status message as stored and reported (the rest is cut). */
export const MAX_STATUS_MESSAGE_CHARS = 200;
/** The agent's record spool, in its data directory: no result file may go there. */
export const SPOOL_DIR_NAME = '.spool';

// ---- vocabulary -----------------------------------------------------------------------

/** Operation names, best first (the order an agent prefers them in). */
export const Ops = { Kdamond: 'kdamond', PageIdle: 'page_idle', Synthetic: 'synthetic' } as const;
export type OpsName = (typeof Ops)[keyof typeof Ops];
/** Operation names a session may ask for; "" asks each agent for the best its host supports. */
export const KNOWN_OPERATIONS: readonly OpsName[] = [Ops.Kdamond, Ops.PageIdle, Ops.Synthetic];

/** Result-file formats as a session names them (Attributes.result_format); "" is the default. */
export const RESULT_FORMATS = ['binary', 'binary_v0', 'json', 'json_compressed'] as const;
export type ResultFormatName = (typeof RESULT_FORMATS)[number];
export const DEFAULT_RESULT_FORMAT: ResultFormatName = 'binary';
/** What a result file is written as: DAMON's binary format, or damo's JSON (plain or zlib). */
export const FILE_FORMATS = ['binary', 'json', 'json_compressed'] as const;
export type FileFormat = (typeof FILE_FORMATS)[number];
/** Binary format versions: 0 has no header, 1 stores s32 target ids, 2 stores u64 ids. */
export type BinaryVersion = 0 | 1 | 2;

/** The file format and binary version a format name asks for. */
export function resultFileFormat(name: ResultFormatName): { format: FileFormat; version: 0 | 2 | undefined } {
  switch (name) {
    case 'binary': return { format: 'binary', version: 2 };
    case 'binary_v0': return { format: 'binary', version: 0 };
    default: return { format: name, version: undefined };
  }
}

// ---- errors ---------------------------------------------------------------------------

function fail(field: string, detail: string): never {
  throw new SchemaError(field, detail);
}

const CONTROL_RE = /[\u0000-\u001f\u007f]/;

// ---- ids and targets ------------------------------------------------------------------

/** Checks a session id. */
export function checkSessionId(id: string, field = 'id'): string {
  if (!SESSION_ID_RE.test(id)) fail(field, `must be 1 to ${MAX_SESSION_ID_CHARS} of [A-Za-z0-9_-], got ${quoted(id)}`);
  return id;
}

export interface SessionTarget {
  host: string;
  pid: number;
}

/** Checks targets: at most the limits, host names (RFC 1123), pid > 0, no target twice. */
export function checkTargets(targets: readonly SessionTarget[], field = 'targets'): SessionTarget[] {
  if (targets.length > MAX_TARGETS_PER_SESSION) {
    throw new SchemaError(field, `${targets.length} targets; a session has at most ${MAX_TARGETS_PER_SESSION} (MAX_TARGETS_PER_SESSION)`, grpc.status.RESOURCE_EXHAUSTED);
  }
  const seen = new Set<string>();
  const hosts = new Set<string>();
  const out = targets.map((t, i) => {
    if (!HOST_RE.test(t.host)) fail(`${field}[${i}].host`, `not a valid host name: ${quoted(t.host)} (RFC 1123, at most ${MAX_HOST_BYTES} bytes)`);
    if (!Number.isInteger(t.pid) || t.pid <= 0) fail(`${field}[${i}].pid`, `must be a positive process id, got ${t.pid}`);
    const key = `${t.host}/${t.pid}`;
    if (seen.has(key)) fail(`${field}[${i}]`, `duplicate target ${t.host} pid ${t.pid}`);
    seen.add(key);
    hosts.add(t.host);
    return { host: t.host, pid: t.pid };
  });
  if (hosts.size > MAX_HOSTS_PER_SESSION) {
    throw new SchemaError(field, `${hosts.size} hosts; a session spans at most ${MAX_HOSTS_PER_SESSION} (MAX_HOSTS_PER_SESSION)`, grpc.status.RESOURCE_EXHAUSTED);
  }
  return out;
}

/** Checks one host's pids (an ApplySession): at least one, at most the limit, positive, each once. */
export function checkPids(pids: readonly number[], field = 'pids'): number[] {
  if (pids.length === 0) fail(field, 'at least one pid is required');
  if (pids.length > MAX_TARGETS_PER_SESSION) {
    throw new SchemaError(field, `${pids.length} pids; a session has at most ${MAX_TARGETS_PER_SESSION} (MAX_TARGETS_PER_SESSION)`, grpc.status.RESOURCE_EXHAUSTED);
  }
  const seen = new Set<number>();
  for (const pid of pids) {
    if (!Number.isInteger(pid) || pid <= 0) fail(field, `not a process id: ${pid}`);
    if (seen.has(pid)) fail(field, `pid ${pid} given twice`);
    seen.add(pid);
  }
  return [...pids];
}

// ---- operations -----------------------------------------------------------------------

/** Checks the operations name, and the synthetic workload that goes only with "synthetic". */
export function checkOperations(operations: string, syntheticWorkload: string): { operations: string; syntheticWorkload: string } {
  if (operations !== '' && !(KNOWN_OPERATIONS as readonly string[]).includes(operations)) {
    fail('operations', `unknown operations ${quoted(operations)} (known: ${KNOWN_OPERATIONS.join(', ')}; empty for the best each host supports)`);
  }
  if (syntheticWorkload !== '') {
    if (operations !== Ops.Synthetic) fail('synthetic_workload', 'only meaningful with operations "synthetic"');
    checkSyntheticWorkload(syntheticWorkload);
  }
  return { operations, syntheticWorkload };
}

/** A synthetic_workload must be a preset or a JSON workload that parses, and bounded. */
function checkSyntheticWorkload(w: string): void {
  const bytes = Buffer.byteLength(w);
  if (bytes > MAX_SYNTHETIC_WORKLOAD_BYTES) {
    fail('synthetic_workload', `is ${bytes} bytes long; at most ${MAX_SYNTHETIC_WORKLOAD_BYTES} (MAX_SYNTHETIC_WORKLOAD_BYTES)`);
  }
  try {
    resolveWorkload(w);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    fail('synthetic_workload', `not a preset (${PRESET_NAMES.join(', ')}) nor a valid JSON workload: ${excerpt(why, 200)}`);
  }
}

// ---- result paths ---------------------------------------------------------------------

/** A result path as the rules leave it: directories to resolve, and the file name. */
export interface ResultPathParts {
  dirs: string[];
  name: string;
  /** The normalized relative path. */
  relative: string;
}

/**
 * The rules a result path follows wherever it is checked (the agent resolves it beneath
 * its data directory, agent/daemon/result-path.ts): relative, no climbing out with '..',
 * no control characters, and bounded in bytes, depth and component length. Throws
 * SchemaError (field "result_file") whose detail says which rule.
 */
export function checkResultPath(resultFile: string): ResultPathParts {
  const no = (detail: string) => fail('result_file', detail);
  if (resultFile.length === 0) no('empty path');
  if (resultFile.includes('\0')) no('contains a NUL byte');
  const bytes = Buffer.byteLength(resultFile);
  if (bytes > MAX_RESULT_PATH_BYTES) no(`is ${bytes} bytes long; result paths have at most ${MAX_RESULT_PATH_BYTES} (MAX_RESULT_PATH_BYTES)`);
  if (CONTROL_RE.test(resultFile)) no('contains a control character');
  if (isAbsolute(resultFile)) no("absolute paths are refused; give a path relative to the agent's data directory");
  const normalized = posix.normalize(resultFile);
  if (normalized === '..' || normalized.startsWith('../')) no("escapes the agent's data directory through '..'");
  if (normalized === '.' || normalized.endsWith('/')) no('names a directory, not a file');
  const parts = normalized.split('/');
  if (parts.length > MAX_RESULT_PATH_DEPTH) {
    no(`has ${parts.length} components; result paths have at most ${MAX_RESULT_PATH_DEPTH} (MAX_RESULT_PATH_DEPTH)`);
  }
  for (const part of parts) {
    const n = Buffer.byteLength(part);
    if (n > MAX_RESULT_NAME_BYTES) no(`component ${quoted(part)} is ${n} bytes long; a component has at most ${MAX_RESULT_NAME_BYTES}`);
  }
  if (parts[0] === SPOOL_DIR_NAME) no(`${SPOOL_DIR_NAME} in the data directory is the agent's record spool`);
  const name = parts.pop()!;
  return { dirs: parts, name, relative: normalized };
}

// ---- attributes -----------------------------------------------------------------------

/** Attributes with the result format and the schemes, as a session holds them (the engine's own form of the schemes, Attributes.schemes, is made from them on the agent). */
export interface SessionAttrs extends Omit<Attributes, 'schemes'> {
  resultFormat: ResultFormatName;
  /** Applied in this order (common/scheme-schema.ts); absent in sessions stored before schemes. */
  schemes: SchemeSpec[];
}

/** Largest value of each number, within its wire type (uint64 intervals, uint32 regions). */
const NUMBER_BOUNDS = {
  sampling_interval_us: MAX_INTERVAL_US,
  aggregation_interval_us: MAX_INTERVAL_US,
  update_interval_us: MAX_INTERVAL_US,
  min_nr_regions: MAX_NR_REGIONS,
  max_nr_regions: MAX_NR_REGIONS,
} as const;
type NumberField = keyof typeof NUMBER_BOUNDS;
const TEXT_FIELDS = Object.keys(NUMBER_BOUNDS) as NumberField[];
const ATTR_KEYS: Record<NumberField, keyof Attributes> = {
  sampling_interval_us: 'samplingUs',
  aggregation_interval_us: 'aggregationUs',
  update_interval_us: 'updateUs',
  min_nr_regions: 'minNrRegions',
  max_nr_regions: 'maxNrRegions',
};

/** An exact value (never rounded through a double) within its bound, as a number. */
function bounded(field: NumberField, v: bigint): number {
  const max = NUMBER_BOUNDS[field];
  if (v > BigInt(max)) fail(field, `too large: at most ${max}, got ${excerpt(v.toString(), 24)}`);
  return Number(v);
}

/** Largest value of each intervals goal number; what else binds them is DAMON's (engine/attrs.ts). */
const GOAL_BOUNDS = {
  access_bp: MAX_ACCESS_BP,
  aggrs: MAX_INTERVALS_GOAL_AGGRS,
  min_sample_us: MAX_INTERVAL_US,
  max_sample_us: MAX_INTERVAL_US,
} as const;

function boundedGoal(field: keyof typeof GOAL_BOUNDS, v: bigint | number): number {
  const max = GOAL_BOUNDS[field];
  if (BigInt(v) > BigInt(max)) fail(`intervals_goal.${field}`, `too large: at most ${max}, got ${excerpt(v.toString(), 24)}`);
  return Number(v);
}

function goalFromMessage(g: ProtoIntervalsGoal): IntervalsGoal {
  return {
    accessBp: boundedGoal('access_bp', g.accessBp),
    aggrs: boundedGoal('aggrs', g.aggrs),
    minSampleUs: boundedGoal('min_sample_us', g.minSampleUs),
    maxSampleUs: boundedGoal('max_sample_us', g.maxSampleUs),
  };
}

/** The tuned aggregation interval (max_sample_us times the samples of one) stays within MAX_INTERVAL_US. */
function checkTunedBound(a: Attributes): void {
  const g = a.intervalsGoal;
  if (!g) return;
  const samples = maxNrAccesses(a);
  if (g.maxSampleUs * samples > MAX_INTERVAL_US) {
    fail(
      'intervals_goal.max_sample_us',
      `too large for ${samples} samples an aggregation: the tuned aggregation interval would reach ${g.maxSampleUs * samples} us (at most ${MAX_INTERVAL_US})`,
    );
  }
}

/** DAMON's relations between the numbers (engine/attrs.ts), as a SchemaError. */
function damonRules(partial: Partial<Attributes>): Attributes {
  try {
    return validateAttributes(partial);
  } catch (err) {
    if (err instanceof AttributeError) fail(err.field, err.message.slice(err.field.length + 2));
    throw err;
  }
}

/**
 * DAMON's attrs text, "<sampling_us> <aggregation_us> <update_us> <min_nr_regions>
 * <max_nr_regions> [result_file]": numbers parsed exactly and bounded, DAMON's rules
 * applied. The result file is not checked (the local recorder writes where it is told).
 */
export function parseAttrsText(text: string): Attributes {
  const words = text.trim().split(/\s+/).filter((w) => w.length > 0);
  if (words.length < 5 || words.length > 6) {
    fail('attrs', `expected "<sampling_us> <aggregation_us> <update_us> <min_nr_regions> <max_nr_regions> [result_file]", got ${words.length} words`);
  }
  const partial: Partial<Attributes> = { resultFile: words[5] ?? '' };
  TEXT_FIELDS.forEach((field, i) => {
    const w = words[i];
    if (!/^\d+$/.test(w)) fail(field, `not a non-negative integer: ${quoted(w)}`);
    (partial as Record<string, number>)[ATTR_KEYS[field]] = bounded(field, BigInt(w));
  });
  return damonRules(partial);
}

/** DAMON's text form of attributes. */
export function formatAttrsText(a: Omit<Attributes, 'schemes'>): string {
  const base = `${a.samplingUs} ${a.aggregationUs} ${a.updateUs} ${a.minNrRegions} ${a.maxNrRegions}`;
  return a.resultFile ? `${base} ${a.resultFile}` : base;
}

function checkResultFormat(format: string): ResultFormatName {
  const f = format === '' ? DEFAULT_RESULT_FORMAT : format;
  if (!(RESULT_FORMATS as readonly string[]).includes(f)) {
    fail('result_format', `unknown format ${quoted(format)} (formats: ${RESULT_FORMATS.join(', ')})`);
  }
  return f as ResultFormatName;
}

/** The fleet's rules beyond DAMON's: the result path; the schemes, checked against the intervals. */
function sessionAttrs(a: Attributes, resultFormat: string, schemes: (a: Attributes) => SchemeSpec[]): SessionAttrs {
  if (a.resultFile !== '') checkResultPath(a.resultFile);
  return { ...a, resultFormat: checkResultFormat(resultFormat), schemes: schemes(a) };
}

/**
 * Attributes from the API's message: proto3 0 is "unset" and takes DAMON's default.
 * Field names are the message's ("min_nr_regions"); callers put their prefix before them.
 */
export function attrsFromMessage(m: ProtoAttributes | undefined): SessionAttrs {
  if (!m) return { ...DEFAULT_ATTRS, resultFormat: DEFAULT_RESULT_FORMAT, schemes: [] };
  const partial: Partial<Attributes> = { resultFile: m.resultFile };
  const values: Record<NumberField, bigint> = {
    sampling_interval_us: m.samplingIntervalUs,
    aggregation_interval_us: m.aggregationIntervalUs,
    update_interval_us: m.updateIntervalUs,
    min_nr_regions: BigInt(m.minNrRegions),
    max_nr_regions: BigInt(m.maxNrRegions),
  };
  for (const field of TEXT_FIELDS) {
    if (values[field] !== 0n) (partial as Record<string, number>)[ATTR_KEYS[field]] = bounded(field, values[field]);
  }
  if (m.intervalsGoal !== undefined) partial.intervalsGoal = goalFromMessage(m.intervalsGoal);
  const a = damonRules(partial);
  checkTunedBound(a);
  return sessionAttrs(a, m.resultFormat, (checked) => schemesFromMessage(m.schemes ?? [], checked));
}

/**
 * Attributes from DAMON's text form, with the result format kept from elsewhere and the
 * schemes in their text form (common/scheme-text.ts; "" for none).
 */
export function attrsFromText(text: string, resultFormat: string, schemesText = ''): SessionAttrs {
  return sessionAttrs(parseAttrsText(text), resultFormat, (checked) => schemesFromText(schemesText, checked));
}

/** Attributes as the API's message. */
export function toProtoAttrs(a: SessionAttrs): ProtoAttributes {
  return {
    samplingIntervalUs: BigInt(a.samplingUs),
    aggregationIntervalUs: BigInt(a.aggregationUs),
    updateIntervalUs: BigInt(a.updateUs),
    minNrRegions: a.minNrRegions,
    maxNrRegions: a.maxNrRegions,
    resultFile: a.resultFile,
    resultFormat: a.resultFormat,
    schemes: (a.schemes ?? []).map(toProtoScheme),
    intervalsGoal: a.intervalsGoal
      ? {
          accessBp: a.intervalsGoal.accessBp,
          aggrs: a.intervalsGoal.aggrs,
          minSampleUs: BigInt(a.intervalsGoal.minSampleUs),
          maxSampleUs: BigInt(a.intervalsGoal.maxSampleUs),
        }
      : undefined,
  };
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * A target status message as stored and reported: an excerpt, never the whole of it, and
 * well-formed (a lone surrogate would take 6 bytes of JSON where U+FFFD takes 3).
 */
export function statusMessage(message: string, max = MAX_STATUS_MESSAGE_CHARS): string {
  return excerpt(message.replace(LONE_SURROGATE, '\uFFFD'), max);
}
