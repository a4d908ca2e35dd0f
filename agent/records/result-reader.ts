// Reads a result file of any format back into snapshots of per-target records.
//
// The format is detected from the bytes, in this order: the "damon_recfmt_ver" magic
// (binary with header), a zlib stream that inflates (json_compressed), JSON text (starts
// with '[' or '{' and holds no NUL byte; binary snapshots hold many, in the high bytes of
// tv_sec and of their counts), else binary version 0 (no header).
//
// What each format keeps:
// - JSON formats keep everything a writer was given (start and end times, nr_accesses,
//   age), and the intervals, from which maxNrAccesses is derived.
// - The binary formats (versions 0, 1, 2) store no age and no intervals: every region's
//   `age` is null, and `maxNrAccesses` is null unless `intervals` is passed. They store
//   only the END of each interval: a record's start is the previous end of the same
//   target (as damo reads it). Times are returned as stored: in files this project
//   writes, on the recording clock (0 = the recording's first start; recording-clock.ts).
// - Entries holding one zero-size region (markers, binary-layout.ts) are used for start
//   times and not returned: an opening entry before a target's first record gives its
//   start; a closing entry after the only record of a target (earlier writers) gives it
//   as end - (closing end - end). Without either, the first record's start is derived
//   the way damo derives it (its end minus the target's mean spacing of ends), and a
//   target with one record gets end - aggrUs when `intervals` is passed, else null.
// - Anything else (text such as `perf script` output, an empty file, bytes that do not
//   decode as snapshots) is refused with a ResultFileError of kind 'not-result-file'.
import { readFile } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import { quoted } from '../../common/log.js';
import { decodeBinary, bufferSource, isMarkerEntry, MAGIC } from './binary-layout.js';
import { decodeJsonDocument, type DecodedJsonRecord } from './json-layout.js';
import {
  ResultFileError, describeFsError, maxNrAccessesOf, type ResultFormat, type ResultIntervals,
} from './result-format.js';

export interface ResultRegion {
  start: number;
  end: number;
  nrAccesses: number;
  /** In aggregation intervals; null where the format stores none (every binary version). */
  age: number | null;
}

export interface ResultRecord {
  targetId: number;
  /** Stored in JSON; derived for binary files (see the file comment); null when underivable. */
  startNs: bigint | null;
  endNs: bigint;
  /** aggr / sample of the record's intervals; null when neither the file nor the caller gives them. */
  maxNrAccesses: number | null;
  regions: ResultRegion[];
}

/** All targets' records that end at one time: what one writeSnapshot() call wrote. */
export interface ResultSnapshot {
  endNs: bigint;
  /** In file order (binary) or in order of the targets' first appearance (JSON). */
  records: ResultRecord[];
}

export interface ResultFileProblem {
  kind: 'truncated' | 'corrupt';
  /** Byte offset of the first snapshot that could not be read. */
  offset: number;
  message: string;
}

export interface ResultFileContents {
  format: ResultFormat;
  /** Binary: the header's version, 0 without a header. JSON: null. */
  version: number | null;
  /** The intervals all records share (JSON), else the ones passed in options, else null. */
  intervals: ResultIntervals | null;
  snapshots: ResultSnapshot[];
  /** Binary: bytes after the last snapshot, fewer than 16, ignored silently (as damo does). */
  trailingBytes: number;
  /** Only with `partial: true`: the snapshot that stopped the read; earlier ones are returned. */
  problem: ResultFileProblem | null;
}

export interface ReadResultOptions {
  /**
   * Binary files: return the complete snapshots before a truncated or undecodable one
   * (and describe it in `problem`) instead of throwing. JSON is one document: a broken
   * one always throws.
   */
  partial?: boolean;
  /** Monitoring intervals for files that do not store them (binary). */
  intervals?: ResultIntervals;
}

/** Reads and decodes `path`. Throws ResultFileError naming the path, the problem and its byte offset. */
export async function readResultFile(path: string, opts: ReadResultOptions = {}): Promise<ResultFileContents> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : describeFsError(e, path);
    throw new ResultFileError('open', path, `cannot read result file ${path}: ${why}`, undefined, { cause: e });
  }
  return decodeResultBytes(bytes, path, opts);
}

/** Whether the first two bytes are a zlib header (RFC 1950: deflate, window <= 32K, check bits). */
function looksZlib(b: Buffer): boolean {
  return b.length >= 2 && (b[0]! & 0x0f) === 8 && b[0]! >> 4 <= 7 && ((b[0]! << 8) | b[1]!) % 31 === 0;
}

function looksJsonText(b: Buffer): boolean {
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  return i < b.length && (b[i] === 0x5b || b[i] === 0x7b) && !b.includes(0);
}

/** readResultFile() for bytes already in memory; `path` is only used in messages. */
export function decodeResultBytes(bytes: Buffer, path: string, opts: ReadResultOptions = {}): ResultFileContents {
  const json = decodeJsonBytes(bytes, path);
  if (json !== null) return fromJson(json.records, json.format, opts);
  const foreign = whyNotBinary(bytes);
  if (foreign !== null) throw new ResultFileError('not-result-file', path, `${path}: not a result file: ${foreign}`, 0);
  return fromBinary(bytes, path, opts);
}

/** The first bytes hold no NUL: text (binary snapshots hold many, in tv_sec's high bytes). */
function looksText(b: Buffer): boolean {
  return b.length > 0 && !b.subarray(0, 4096).includes(0);
}

/**
 * Why bytes that are neither JSON nor zlib are not a binary result file either, or null.
 * Without the header, the only evidence of version 0 is that its first snapshot decodes.
 */
function whyNotBinary(b: Buffer): string | null {
  if (b.length === 0) return 'the file is empty';
  if (b.length >= MAGIC.length && b.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  if (looksText(b)) {
    const text = b.subarray(0, 4096).toString('utf8');
    if (/damon:damon_aggregated|damon:damos_before_apply/.test(text)) {
      return 'it is `perf script` output of DAMON\'s tracepoints, which damo reads and damon-fleet does not; ' +
        'damo converts it: damo convert_record_format --record_file FILE --format json_compressed --output_file OUT';
    }
    const line = text.split('\n').find((l) => l.trim() !== '') ?? '';
    return `it is text, neither DAMON's binary format nor damo's JSON (it starts ${quoted(line.trim(), 48)})`;
  }
  const d = decodeBinary(bufferSource(b));
  if (d.snapshots.length === 0) {
    return d.problem !== null
      ? `it has no "damon_recfmt_ver" header and does not start with a version-0 snapshot: ${d.problem.message}`
      : `it has no "damon_recfmt_ver" header and its ${b.length} bytes are too few for a snapshot`;
  }
  return null;
}

/**
 * The records of a JSON result file in document order, or null when the bytes are not
 * JSON (binary). Throws ResultFileError when they are JSON or zlib but broken.
 */
export function decodeJsonBytes(
  bytes: Buffer,
  path: string,
): { format: 'json' | 'json_compressed'; records: DecodedJsonRecord[] } | null {
  if (bytes.length >= MAGIC.length && bytes.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  if (looksZlib(bytes)) {
    let text: string | null = null;
    let zerr: unknown = null;
    try {
      text = inflateSync(bytes).toString('utf8');
    } catch (e) {
      zerr = e;
    }
    if (text !== null) return { format: 'json_compressed', records: decodeJsonDocument(text, path, true) };
    // Two bytes can look like a zlib header by chance in a version-0 file.
    const v0 = decodeBinary(bufferSource(bytes));
    if (v0.problem === null && v0.trailingBytes === 0) return null;
    const truncated = (zerr as NodeJS.ErrnoException).code === 'Z_BUF_ERROR';
    throw new ResultFileError(
      truncated ? 'truncated' : 'corrupt', path,
      truncated
        ? `${path}: the zlib stream ends early, at byte ${bytes.length} (a truncated json_compressed file)`
        : `${path}: starts like a zlib stream but does not inflate: ${(zerr as Error).message}`,
      bytes.length,
    );
  }
  if (looksJsonText(bytes)) return { format: 'json', records: decodeJsonDocument(bytes.toString('utf8'), path) };
  return null;
}

function sameIntervals(a: ResultIntervals, b: ResultIntervals): boolean {
  return a.sampleUs === b.sampleUs && a.aggrUs === b.aggrUs && a.opsUpdateUs === b.opsUpdateUs;
}

function fromJson(records: DecodedJsonRecord[], format: ResultFormat, opts: ReadResultOptions): ResultFileContents {
  const byEnd = new Map<bigint, ResultRecord[]>();
  let shared: ResultIntervals | null | undefined;
  for (const rec of records) {
    const intervals = rec.intervals ?? opts.intervals ?? null;
    if (shared === undefined) shared = intervals;
    else if (shared !== null && (intervals === null || !sameIntervals(shared, intervals))) shared = null;
    const maxNr = intervals === null ? null : maxNrAccessesOf(intervals);
    for (const s of rec.snapshots) {
      let group = byEnd.get(s.endNs);
      if (group === undefined) byEnd.set(s.endNs, (group = []));
      group.push({ targetId: rec.targetId, startNs: s.startNs, endNs: s.endNs, maxNrAccesses: maxNr, regions: s.regions });
    }
  }
  const snapshots = [...byEnd.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([endNs, recs]) => ({ endNs, records: recs }));
  return {
    format, version: null, intervals: shared ?? opts.intervals ?? null, snapshots, trailingBytes: 0, problem: null,
  };
}

function fromBinary(bytes: Buffer, path: string, opts: ReadResultOptions): ResultFileContents {
  const d = decodeBinary(bufferSource(bytes));
  if (d.problem !== null && !opts.partial) {
    throw new ResultFileError(
      d.problem.kind, path,
      `${path}: ${d.problem.message} (${d.snapshots.length} complete snapshot(s) before it; ` +
      'readResultFile(path, { partial: true }) returns them)',
      d.problem.offset,
    );
  }
  // Per target, its entries in file order: end times, and whether each is a marker.
  const seq = new Map<number, { endNs: bigint; marker: boolean }[]>();
  for (const s of d.snapshots) {
    for (const e of s.entries) {
      let l = seq.get(e.targetId);
      if (l === undefined) seq.set(e.targetId, (l = []));
      l.push({ endNs: s.endNs, marker: isMarkerEntry(e) });
    }
  }
  const aggrNs = opts.intervals ? BigInt(opts.intervals.aggrUs) * 1000n : null;
  const maxNr = opts.intervals ? maxNrAccessesOf(opts.intervals) : null;
  // The start of a target's first real entry when no entry precedes it (files without
  // opening entries: earlier writers', the kernel's, damo's).
  const startOf = new Map<number, bigint | null>();
  for (const [id, l] of seq) {
    const real = l.filter((x) => !x.marker);
    if (real.length === 0 || l[0]!.marker) continue;
    const end0 = real[0]!.endNs;
    let start: bigint | null;
    if (l[1]?.marker && real.length === 1) start = 2n * end0 - l[1].endNs; // a closing entry ends at end + (end - start)
    else if (real.length >= 2) start = end0 - (real[real.length - 1]!.endNs - end0) / BigInt(real.length - 1); // damo's rule
    else start = aggrNs === null ? null : end0 - aggrNs;
    startOf.set(id, start);
  }
  const lastEnd = new Map<number, bigint>();
  const snapshots: ResultSnapshot[] = [];
  for (const s of d.snapshots) {
    const records: ResultRecord[] = [];
    for (const e of s.entries) {
      const prev = lastEnd.get(e.targetId);
      lastEnd.set(e.targetId, s.endNs);
      if (isMarkerEntry(e)) continue;
      records.push({
        targetId: e.targetId,
        startNs: prev ?? startOf.get(e.targetId) ?? null,
        endNs: s.endNs,
        maxNrAccesses: maxNr,
        regions: e.regions.map((r) => ({ start: r.start, end: r.end, nrAccesses: r.nrAccesses, age: null })),
      });
    }
    if (records.length > 0) snapshots.push({ endNs: s.endNs, records });
  }
  return {
    format: 'binary',
    version: d.version,
    intervals: opts.intervals ?? null,
    snapshots,
    trailingBytes: d.trailingBytes,
    problem: d.problem,
  };
}
