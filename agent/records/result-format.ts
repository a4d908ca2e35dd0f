// What every result-file writer and the reader share: the format names, the rule that
// picks a format from a file name, the monitoring intervals stored with JSON records,
// the error type, and the checks a snapshot passes before any byte of it is written.
import { basename, dirname } from 'node:path';
import type { AggregationRecord } from './record.js';
import { FILE_FORMATS, type BinaryVersion, type FileFormat } from '../../common/session-schema.js';

/**
 * `binary`: DAMON's record format (version 2 by default, version 0 on request).
 * `json`: damo's JSON list of per-target records. `json_compressed`: the same text
 * as one raw zlib stream (not gzip), which is what current damo reads best.
 * The names live with the session schema (common/session-schema.ts).
 */
export type ResultFormat = FileFormat;
export const RESULT_FORMATS: readonly ResultFormat[] = FILE_FORMATS;
export type { BinaryVersion };

/** The monitoring intervals, in microseconds, the way damo's JSON names them. */
export interface ResultIntervals {
  sampleUs: number;
  aggrUs: number;
  opsUpdateUs: number;
}

export type ResultFileErrorKind =
  | 'open' // the path cannot be opened or created for writing, or read
  | 'not-result-file' // an existing file is not a result file of the wanted format
  | 'truncated' // a snapshot or the document ends before its bytes do
  | 'corrupt' // the bytes are complete but do not describe valid records
  | 'write' // a write failed after the file was opened
  | 'invalid-record' // a record handed to a writer cannot be stored
  | 'closed'; // the writer was used after close()

/** Every failure of the result-file code: names the file, what went wrong and where. */
export class ResultFileError extends Error {
  constructor(
    readonly kind: ResultFileErrorKind,
    readonly path: string,
    message: string,
    /** Byte offset in the file the problem was found at, where one applies. */
    readonly offset?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ResultFileError';
  }
}

/** An open result file: one snapshot per aggregation, then close(). */
export interface ResultWriter {
  readonly path: string;
  readonly format: ResultFormat;
  /** The binary version written (0 or 2); null for JSON formats. */
  readonly version: 0 | 2 | null;
  /**
   * Stores one snapshot: every target's record of one aggregation (all with the same
   * endNs, later than the previous snapshot's). Calls are applied in call order; a bad
   * record rejects the call before anything is written.
   */
  writeSnapshot(records: readonly AggregationRecord[]): Promise<void>;
  /** Finishes the file (see each writer) and releases it. Idempotent. */
  close(): Promise<void>;
}

/**
 * The format a file name asks for, used when a writer is given no explicit format:
 * a name ending in `.json.zlib` is `json_compressed`, one ending in `.json` is `json`,
 * and every other name is `binary` (DAMON's result file, e.g. `/damon.data`).
 * The comparison ignores case.
 */
export function formatFromFileName(path: string): ResultFormat {
  const name = basename(path).toLowerCase();
  if (name.endsWith('.json.zlib')) return 'json_compressed';
  if (name.endsWith('.json')) return 'json';
  return 'binary';
}

/** Largest nrAccesses an aggregation can reach with these intervals (DAMON's max_nr_accesses). */
export function maxNrAccessesOf(i: ResultIntervals): number {
  return Math.floor(i.aggrUs / i.sampleUs);
}

export function validateIntervals(path: string, i: ResultIntervals | undefined): ResultIntervals {
  if (i === undefined || i === null || typeof i !== 'object') {
    throw new ResultFileError('invalid-record', path, `${path}: intervals {sampleUs, aggrUs, opsUpdateUs} are required`);
  }
  for (const key of ['sampleUs', 'aggrUs', 'opsUpdateUs'] as const) {
    const v = i[key];
    if (!Number.isSafeInteger(v) || v <= 0) {
      throw new ResultFileError('invalid-record', path, `${path}: intervals.${key} must be a positive integer, got ${String(v)}`);
    }
  }
  if (i.sampleUs > i.aggrUs) {
    throw new ResultFileError(
      'invalid-record', path,
      `${path}: intervals.sampleUs must not exceed aggrUs (${i.sampleUs} > ${i.aggrUs})`,
    );
  }
  return { sampleUs: i.sampleUs, aggrUs: i.aggrUs, opsUpdateUs: i.opsUpdateUs };
}

const U32_MAX = 2 ** 32 - 1;
const U64_LIMIT = 2 ** 64;
const S64_MAX = (1n << 63n) - 1n;

/** An address or id the u64 fields can hold; any integer double below 2^64 is exact. */
function isU64(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < U64_LIMIT;
}

/**
 * Checks one snapshot (all targets' records of one aggregation) before it is written,
 * so that a bad record never leaves half a snapshot in a file. `previousEndNs` is the
 * end of the snapshot written before it, if any: snapshots must move forward in time,
 * because damo rejects a target whose snapshots are not sorted by time.
 */
export function validateSnapshot(
  path: string,
  records: readonly AggregationRecord[],
  intervals: ResultIntervals,
  previousEndNs: bigint | null,
): void {
  const bad = (what: string): never => {
    throw new ResultFileError('invalid-record', path, `${path}: ${what}`);
  };
  if (!Array.isArray(records) || records.length === 0) {
    bad('a snapshot needs at least one record (one per target)');
  }
  const first = records[0] as AggregationRecord | null;
  const endNs = first !== null && typeof first === 'object' ? first.endNs : undefined;
  const maxNr = maxNrAccessesOf(intervals);
  const seen = new Set<number>();
  records.forEach((r, i) => {
    const where = `snapshot record ${i} (target ${String(r?.targetId)})`;
    if (r === null || typeof r !== 'object') bad(`snapshot record ${i} is not a record`);
    if (!isU64(r.targetId)) bad(`${where}: targetId must be an integer in [0, 2^64), got ${String(r.targetId)}`);
    if (seen.has(r.targetId)) bad(`${where}: target ${r.targetId} appears twice in one snapshot`);
    seen.add(r.targetId);
    if (typeof r.startNs !== 'bigint' || typeof r.endNs !== 'bigint') {
      bad(`${where}: startNs and endNs must be BigInt nanoseconds`);
    }
    if (r.endNs !== endNs) {
      bad(`${where}: endNs ${r.endNs} differs from the snapshot's ${endNs}; one snapshot is one aggregation end`);
    }
    if (r.startNs < 0n || r.endNs > S64_MAX) bad(`${where}: times must be within [0, 2^63) ns`);
    if (r.startNs > r.endNs) bad(`${where}: startNs ${r.startNs} is after endNs ${r.endNs}`);
    if (r.maxNrAccesses !== maxNr) {
      bad(
        `${where}: maxNrAccesses ${String(r.maxNrAccesses)} does not match the writer's intervals ` +
        `(aggr ${intervals.aggrUs} us / sample ${intervals.sampleUs} us = ${maxNr})`,
      );
    }
    if (!Array.isArray(r.regions)) bad(`${where}: regions must be an array`);
    r.regions.forEach((g, j) => {
      const at = `${where}: region ${j}`;
      if (g === null || typeof g !== 'object') bad(`${at} is not a region`);
      if (!isU64(g.start) || !isU64(g.end)) bad(`${at}: start and end must be integers in [0, 2^64)`);
      if (g.start >= g.end) bad(`${at}: start ${g.start} must be below end ${g.end}`);
      if (!Number.isInteger(g.nrAccesses) || g.nrAccesses < 0 || g.nrAccesses > U32_MAX) {
        bad(`${at}: nrAccesses must be an integer in [0, 2^32), got ${String(g.nrAccesses)}`);
      }
      if (!Number.isSafeInteger(g.age) || g.age < 0) bad(`${at}: age must be a non-negative integer, got ${String(g.age)}`);
    });
  });
  if (previousEndNs !== null && endNs! <= previousEndNs) {
    bad(`snapshot end ${endNs} ns is not after the previous snapshot's end ${previousEndNs} ns`);
  }
}

/** A short reason for a failed file-system call, for messages that name the path. */
export function describeFsError(err: unknown, path: string): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOENT': return `its directory ${dirname(path)} does not exist`;
    case 'ENOTDIR': return 'a component of the path is not a directory';
    case 'EACCES':
    case 'EPERM': return 'permission denied';
    case 'EISDIR': return 'it is a directory';
    case 'EROFS': return 'the file system is read-only';
    case 'ENOSPC': return 'no space left on device';
    case 'EDQUOT': return 'disk quota exceeded';
    case 'EFBIG': return 'file too large (file size limit reached)';
    case 'EIO': return 'input/output error';
    case 'ENAMETOOLONG': return 'the path is too long';
    case 'ELOOP': return 'too many symbolic links';
    default: return e?.message ?? String(err);
  }
}
