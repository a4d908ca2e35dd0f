// damo's JSON record format: a list with one element per target,
//
//   { "kdamond_idx": null, "context_idx": null,
//     "intervals": {"sample_us": <int>, "aggr_us": <int>, "ops_update_us": <int>},
//     "scheme_idx": null, "target_id": <int>,
//     "snapshots": [ { "start_time": <ns>, "end_time": <ns>,
//                      "regions": [ { "start": <int>, "end": <int>,
//                                     "nr_accesses": {"samples": <int>, "percent": <int>},
//                                     "age": {"usec": <int>, "aggr_intervals": <int>} } ],
//                      "total_bytes": <int> } ] }
//
// The keys and their order are those damo's own DamonRecord/DamonSnapshot/DamonRegion
// to_kvpairs() write; damo's readers need target_id, intervals (non-null for its text
// reports), the snapshot times and each region's nr_accesses and age with both units.
// `percent` and `usec` are derived the way damo derives them (add_unset_unit()).
// Numbers are written as exact integers; ns timestamps exceed 2^53, so they are
// written from BigInt and read back without passing through a double.
import type { AggregationRecord } from './record.js';
import { ResultFileError, type ResultIntervals } from './result-format.js';
import { DamoValueError, damoDurationNs, damoInteger, damoNumber } from './damo-values.js';
import { quoted } from '../../common/log.js';
import { firstJsonError } from './json-syntax.js';

/** An exact decimal for an integer double (Number#toString can round above 2^53). */
function int(v: number): string {
  return Number.isSafeInteger(v) ? String(v) : BigInt(v).toString();
}

/** damo: int(samples * 100.0 / (aggr / sample)). */
export function percentOf(samples: number, i: ResultIntervals): number {
  return Math.trunc((samples * 100) / (i.aggrUs / i.sampleUs));
}

/** The sum of region sizes when addresses pass 2^53, where a double sum could round. */
function bigTotal(r: AggregationRecord): string {
  return r.regions.reduce((t, g) => t + BigInt(g.end) - BigInt(g.start), 0n).toString();
}

/** The text of one target's record up to and including the opening of its snapshot list. */
export function encodeTargetHead(targetId: number, i: ResultIntervals): string {
  return (
    '{"kdamond_idx": null, "context_idx": null, ' +
    `"intervals": {"sample_us": ${i.sampleUs}, "aggr_us": ${i.aggrUs}, "ops_update_us": ${i.opsUpdateUs}}, ` +
    `"scheme_idx": null, "target_id": ${int(targetId)}, "snapshots": [`
  );
}

export const TARGET_TAIL = ']}';

/** One snapshot of one target, as an element of its record's "snapshots" list. */
export function encodeSnapshotFragment(r: AggregationRecord, i: ResultIntervals): string {
  let total = 0;
  let exact = true;
  const regions = r.regions.map((g) => {
    total += g.end - g.start;
    exact &&= Number.isSafeInteger(g.end);
    return (
      `{"start": ${int(g.start)}, "end": ${int(g.end)}, ` +
      `"nr_accesses": {"samples": ${g.nrAccesses}, "percent": ${percentOf(g.nrAccesses, i)}}, ` +
      `"age": {"usec": ${int(g.age * i.aggrUs)}, "aggr_intervals": ${g.age}}}`
    );
  });
  return (
    `{"start_time": ${r.startNs}, "end_time": ${r.endNs}, ` +
    `"regions": [${regions.join(', ')}], "total_bytes": ${exact ? total : bigTotal(r)}}`
  );
}

/** The whole document, in pieces: one line per target head and per snapshot. */
export function* documentPieces(
  targets: Iterable<{ head: string; fragments: readonly string[] }>,
): Generator<string> {
  yield '[';
  let firstTarget = true;
  for (const t of targets) {
    yield (firstTarget ? '\n' : ',\n') + t.head;
    firstTarget = false;
    // one piece per snapshot: the document is never held as one string
    for (let k = 0; k < t.fragments.length; k++) yield (k === 0 ? '\n' : ',\n') + t.fragments[k];
    yield '\n' + TARGET_TAIL;
  }
  yield '\n]\n';
}

export interface DecodedJsonRegion {
  start: number;
  end: number;
  nrAccesses: number;
  age: number | null;
}

export interface DecodedJsonSnapshot {
  startNs: bigint | null;
  endNs: bigint;
  regions: DecodedJsonRegion[];
}

export interface DecodedJsonRecord {
  targetId: number;
  intervals: ResultIntervals | null;
  snapshots: DecodedJsonSnapshot[];
}

// Integers that may exceed 2^53 (16 digits or more) under these keys are quoted before
// JSON.parse so no digit is lost; shorter ones are exact as doubles and stay numbers.
const BIG_VALUES = /("(?:start_time|end_time|start|end|target_id)"\s*:\s*)(-?\d{16,})(?![\d.eE])/g;

/**
 * JSON.parse keeping BIG_VALUES exact. A syntax error is reported at its place in `text`
 * (line, column, a short excerpt), found by json-syntax.ts in the text as it is.
 */
function parseExact(text: string, path: string, what: string): unknown {
  try {
    return JSON.parse(text.replace(BIG_VALUES, '$1"$2"'));
  } catch (e) {
    const found = firstJsonError(text);
    const pos = found?.offset ?? text.length;
    const before = text.slice(0, pos);
    const line = before.split('\n').length;
    const column = pos - before.lastIndexOf('\n');
    const ended = found?.ended ?? false;
    const where = `line ${line}, column ${column} (character ${pos})`;
    const message = ended
      ? `the document ends early: the ${what} ends at ${where}`
      : `${found?.reason ?? (e as Error).message} at ${where} of the ${what}, ` +
        `near ${quoted(text.slice(Math.max(0, pos - 24), pos + 24))}`;
    throw new ResultFileError(ended ? 'truncated' : 'corrupt', path, `${path}: not valid JSON: ${message}`, Buffer.byteLength(before), { cause: e });
  }
}

/**
 * Parses a damo JSON document (ours, or one damo wrote, in damo's forms: damo-values.ts).
 * Throws ResultFileError('corrupt') naming the record, snapshot and region of the first
 * bad value. `compressed`: the text was inflated from a json_compressed file (positions
 * in messages are in that text, not the file).
 */
export function decodeJsonDocument(text: string, path: string, compressed = false): DecodedJsonRecord[] {
  const doc = parseExact(text, path, compressed ? 'JSON text inflated from the file' : 'file');
  if (!Array.isArray(doc)) {
    throw new ResultFileError('corrupt', path, `${path}: a damo JSON result is a list of records, found ${typeOf(doc)}`);
  }
  return doc.map((rec, ri) => decodeRecord(rec, `${path}: record ${ri}`, path));
}

function typeOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v;
}

function corrupt(path: string, where: string, what: string): never {
  throw new ResultFileError('corrupt', path, `${where}: ${what}`);
}

function obj(v: unknown, path: string, where: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) corrupt(path, where, `expected an object, found ${typeOf(v)}`);
  return v as Record<string, unknown>;
}

/** A damo value read with `read`, its error named by where it was. */
function damo<T>(read: () => T, path: string, where: string): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof DamoValueError) corrupt(path, where, e.message);
    throw e;
  }
}

/** An integer that a JS number holds exactly (ids, addresses). */
function exactNumber(b: bigint, path: string, where: string): number {
  const n = Number(b);
  if (BigInt(n) !== b) corrupt(path, where, `${b} cannot be represented exactly as a JS number`);
  return n;
}

function integerOf(v: unknown, path: string, where: string): number {
  return exactNumber(damo(() => damoInteger(v), path, where), path, where);
}

function timeNsOf(v: unknown, path: string, where: string): bigint {
  return damo(() => damoDurationNs(v, 1n), path, where);
}

/** Microseconds, from damo's plain microseconds or a duration; fractions of a microsecond truncated. */
function usOf(v: unknown, path: string, where: string): number {
  return exactNumber(damo(() => damoDurationNs(v, 1000n), path, where) / 1000n, path, where);
}

function optional<T>(v: unknown, read: (v: unknown) => T): T | null {
  return v === null || v === undefined ? null : read(v);
}

function decodeIntervals(v: unknown, path: string, where: string): ResultIntervals | null {
  if (v === null || v === undefined) return null;
  const o = obj(v, path, where);
  const i = {
    sampleUs: usOf(o.sample_us, path, `${where}.sample_us`),
    aggrUs: usOf(o.aggr_us, path, `${where}.aggr_us`),
    opsUpdateUs: usOf(o.ops_update_us, path, `${where}.ops_update_us`),
  };
  if (i.sampleUs <= 0 || i.aggrUs <= 0) corrupt(path, where, 'sample_us and aggr_us must be positive');
  return i;
}

function decodeRecord(v: unknown, where: string, path: string): DecodedJsonRecord {
  const o = obj(v, path, where);
  const targetId = integerOf(o.target_id, path, `${where}: target_id`);
  where = `${where} (target ${targetId})`;
  const intervals = decodeIntervals(o.intervals, path, `${where}: intervals`);
  if (!Array.isArray(o.snapshots)) corrupt(path, where, `"snapshots" must be a list, found ${typeOf(o.snapshots)}`);
  const snapshots = (o.snapshots as unknown[]).map((s, si) => {
    const sw = `${where}: snapshot ${si}`;
    const so = obj(s, path, sw);
    const startNs = optional(so.start_time, (x) => timeNsOf(x, path, `${sw}: start_time`));
    const endNs = timeNsOf(so.end_time, path, `${sw}: end_time`);
    if (!Array.isArray(so.regions)) corrupt(path, sw, `"regions" must be a list, found ${typeOf(so.regions)}`);
    const regions = (so.regions as unknown[]).map((g, gi) => decodeRegion(g, intervals, path, `${sw}: region ${gi}`));
    return { startNs, endNs, regions };
  });
  return { targetId, intervals, snapshots };
}

function decodeRegion(v: unknown, i: ResultIntervals | null, path: string, where: string): DecodedJsonRegion {
  const o = obj(v, path, where);
  const start = integerOf(o.start, path, `${where}: start`);
  const end = integerOf(o.end, path, `${where}: end`);
  const na = obj(o.nr_accesses, path, `${where}: nr_accesses`);
  const samples = optional(na.samples, (x) => damo(() => damoNumber(x), path, `${where}: nr_accesses.samples`));
  const percent = optional(na.percent, (x) => damo(() => damoNumber(x), path, `${where}: nr_accesses.percent`));
  let nrAccesses: number;
  if (samples !== null) nrAccesses = samples;
  else if (percent !== null && i !== null) nrAccesses = Math.trunc((percent * (i.aggrUs / i.sampleUs)) / 100);
  else return corrupt(path, where, 'nr_accesses has neither samples nor (percent with intervals)');
  if (!Number.isInteger(nrAccesses) || nrAccesses < 0) corrupt(path, where, `nr_accesses ${nrAccesses} is not a count`);
  let age: number | null = null;
  if (o.age !== null && o.age !== undefined) {
    const ao = obj(o.age, path, `${where}: age`);
    const aggrs = optional(ao.aggr_intervals, (x) => integerOf(x, path, `${where}: age.aggr_intervals`));
    const usec = optional(ao.usec, (x) => usOf(x, path, `${where}: age.usec`));
    if (aggrs !== null) age = aggrs;
    else if (usec !== null && i !== null) age = Math.trunc(usec / i.aggrUs);
  }
  return { start, end, nrAccesses, age };
}
