// Opens a result-file writer: the one entry point the recorder uses.
//
//   const w = await openResultWriter('/var/tmp/damon.data', { intervals });  // binary v2
//   await w.writeSnapshot(recordsOfOneAggregation);
//   await w.close();
//
// Format: `format` when given, else from the file name (result-format.ts
// formatFromFileName): `*.json.zlib` → json_compressed, `*.json` → json, anything else
// → binary. Binary is version 2 unless `version: 0` is asked for.
// Every problem with the path (missing directory, no permission, a directory, not a
// result file) is reported here, by a ResultFileError naming the path and the reason.
// A path is reached as this process's user may (pathLocation); the agent passes a
// ResultLocation confined to its data directory instead (agent/daemon/result-path.ts).
// The writer owns the location: it closes it when it is closed, or when opening fails.
// See binary-writer.ts and json-writer.ts for what each format does on resume, on a
// failed write and on close.
import { openBinaryWriter } from './binary-writer.js';
import { openJsonWriter } from './json-writer.js';
import { pathLocation, type ResultLocation } from './result-location.js';
import {
  RESULT_FORMATS, ResultFileError, formatFromFileName, validateIntervals,
  type ResultFormat, type ResultIntervals, type ResultWriter,
} from './result-format.js';

export interface ResultWriterOptions {
  format?: ResultFormat;
  /** Binary only: 2 (default, with header) or 0 (no header, the first DAMON patches' format). */
  version?: 0 | 2;
  /** Stored in JSON records; binary files keep none but records are checked against them. */
  intervals: ResultIntervals;
  /** JSON only: least time between two rewrites of the document before close(); default 1000. */
  rewriteIntervalMs?: number;
  /** JSON only: a milliseconds clock for the rewrite rate (tests pass a virtual one). */
  clock?: () => number;
}

export async function openResultWriter(
  where: string | ResultLocation,
  opts: ResultWriterOptions,
): Promise<ResultWriter> {
  const location = typeof where === 'string' ? pathLocation(where) : where;
  try {
    return await openWriterAt(location, opts);
  } catch (e) {
    location.close();
    throw e;
  }
}

async function openWriterAt(location: ResultLocation, opts: ResultWriterOptions): Promise<ResultWriter> {
  const path = location.path;
  const bad = (what: string): never => {
    throw new ResultFileError('invalid-record', String(path), `result file ${String(path)}: ${what}`);
  };
  if (opts === null || typeof opts !== 'object') bad('options with intervals are required');
  const format = opts.format ?? formatFromFileName(path);
  if (!RESULT_FORMATS.includes(format)) bad(`unknown format ${JSON.stringify(format)} (known: ${RESULT_FORMATS.join(', ')})`);
  if (opts.version !== undefined && format !== 'binary') bad(`version applies to the binary format only, not ${format}`);
  if (opts.version !== undefined && opts.version !== 0 && opts.version !== 2) {
    bad(`binary version must be 0 or 2, got ${JSON.stringify(opts.version)}`);
  }
  if (opts.rewriteIntervalMs !== undefined && !(Number.isFinite(opts.rewriteIntervalMs) && opts.rewriteIntervalMs >= 0)) {
    bad(`rewriteIntervalMs must be a non-negative number, got ${String(opts.rewriteIntervalMs)}`);
  }
  const intervals = validateIntervals(path, opts.intervals);
  if (format === 'binary') return openBinaryWriter(location, { version: opts.version ?? 2, intervals });
  return openJsonWriter(location, {
    format, intervals, rewriteIntervalMs: opts.rewriteIntervalMs, clock: opts.clock,
  });
}
