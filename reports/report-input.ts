// What every report draws from: per target, its records in time order, whether they
// came from a result file or from a session's records on NATS. Also the time window
// (--since/--until) and the refusal of files that are not result files.
import { readFile } from 'node:fs/promises';
import { readResultFile, type ResultFileContents } from '../agent/records/result-reader.js';
import { excerpt } from '../common/log.js';
import { OptionError } from '../common/cli-values.js';

export interface ReportRegion {
  start: number;
  end: number;
  nrAccesses: number;
}

export interface ReportRecord {
  startNs: bigint;
  endNs: bigint;
  regions: ReportRegion[];
}

export interface ReportTarget {
  /** How a person names it: "target 0" (file) or "host1 pid 4242" (session). */
  label: string;
  /** The label as a file-name part: "target-0", "host1-pid-4242". */
  slug: string;
  /**
   * nr_accesses of a region accessed at every sample (aggregation / sampling interval);
   * when the source stores no intervals (binary files), the highest nr_accesses seen.
   */
  maxNrAccesses: number;
  /** False when maxNrAccesses is the highest seen, not the intervals' (binary files). */
  maxFromIntervals: boolean;
  /** In time order, at least one. */
  records: ReportRecord[];
}

export interface ReportInput {
  /** "damon.data (binary version 2)" or "session s1 on nats://...". */
  source: string;
  targets: ReportTarget[];
  /** Things a reader should know (a truncated file read up to the break, records missing). */
  warnings: string[];
}

/** A report that cannot be made (input unreadable or empty, output unwritable, font missing): the command prints the message and exits 1. */
export class ReportError extends Error {}

/** A time window in wall-clock nanoseconds; either end open. */
export interface TimeWindow {
  sinceNs?: bigint;
  untilNs?: bigint;
}

/**
 * Whether a record time is wall-clock (nanoseconds since the Unix epoch, after 2001), as
 * NATS records and JSON files hold, rather than a monotonic clock (time since boot).
 */
export function isWallClockNs(ns: bigint): boolean {
  return ns >= 1_000_000_000_000_000_000n;
}

/** A record belongs to the window when it ends inside it. */
export function inWindow(endNs: bigint, w: TimeWindow): boolean {
  return (w.sinceNs === undefined || endNs >= w.sinceNs) && (w.untilNs === undefined || endNs <= w.untilNs);
}

const DURATION_NS = { ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n, d: 86_400_000_000_000n } as const;

/**
 * A --since/--until value: an ISO 8601 time ("2026-12-03T15:00:00Z"), or a duration
 * ("10m", "2h", "90s") meaning that long before `nowMs`. Throws naming the option.
 */
export function parseTimeBound(option: string, text: string, nowMs = Date.now()): bigint {
  const d = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (d) return BigInt(nowMs) * 1_000_000n - BigInt(d[1]!) * DURATION_NS[d[2] as keyof typeof DURATION_NS];
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(text.trim())) {
    const ms = Date.parse(text.trim());
    if (Number.isFinite(ms)) return BigInt(ms) * 1_000_000n;
  }
  throw new OptionError(
    `${option} "${excerpt(text, 40)}": expected an ISO time like 2026-12-03T15:00:00Z or a duration before now like 10m, 2h, 1d`,
  );
}

function describeFormat(c: ResultFileContents): string {
  return c.version === null ? c.format : `${c.format} version ${c.version}`;
}

/**
 * The targets of a result file, records ending inside `window` only. Throws
 * ReportError when the file cannot be read, is not a result file (text such as
 * `perf script` output, garbage), or holds no snapshot that could be read.
 */
export async function loadResultFile(path: string, window: TimeWindow = {}): Promise<ReportInput> {
  let contents: ResultFileContents;
  try {
    contents = await readResultFile(path, { partial: true });
  } catch (e) {
    throw new ReportError((e as Error).message);
  }
  const warnings: string[] = [];
  if (contents.problem) {
    if (contents.snapshots.length === 0) {
      throw new ReportError(`${path}: not a readable result file: ${contents.problem.message}`);
    }
    warnings.push(`${contents.problem.message}; showing the ${contents.snapshots.length} snapshot(s) before it`);
  }
  if (contents.snapshots.length === 0) throw new ReportError(`${path}: ${describeFormat(contents)}, but it holds no snapshot`);
  const windowed = window.sinceNs !== undefined || window.untilNs !== undefined;
  if (windowed && !isWallClockNs(contents.snapshots[0]!.endNs)) {
    throw new ReportError(
      `${path}: its record times are not wall-clock times (a monotonic clock, e.g. since boot), so --since/--until cannot select from it`,
    );
  }
  const byTarget = new Map<number, { max: number | null; records: ReportRecord[] }>();
  for (const s of contents.snapshots) {
    for (const r of s.records) {
      if (!inWindow(r.endNs, window)) continue;
      let t = byTarget.get(r.targetId);
      if (!t) byTarget.set(r.targetId, (t = { max: r.maxNrAccesses, records: [] }));
      // A first record whose start the format cannot tell (binary, one record, no intervals): a zero-length interval.
      t.records.push({ startNs: r.startNs ?? r.endNs, endNs: r.endNs, regions: r.regions.map(({ start, end, nrAccesses }) => ({ start, end, nrAccesses })) });
    }
  }
  const targets: ReportTarget[] = [...byTarget.entries()].map(([id, t]) => {
    const seen = Math.max(1, ...t.records.flatMap((r) => r.regions.map((g) => g.nrAccesses)));
    return {
      label: `target ${id}`,
      slug: `target-${id}`,
      maxNrAccesses: t.max ?? seen,
      maxFromIntervals: t.max !== null,
      records: t.records,
    };
  });
  return { source: `${path} (${describeFormat(contents)})`, targets, warnings };
}

/** Time from the first record's start to the last record's end, in nanoseconds. */
export function timeSpanNs(t: ReportTarget): { t0: bigint; t1: bigint } {
  let t0 = t.records[0]!.startNs;
  for (const r of t.records) if (r.startNs < t0) t0 = r.startNs;
  return { t0, t1: t.records[t.records.length - 1]!.endNs };
}

/** The targets restricted to the one the user named (its label or slug), or all. */
export function pickTarget(input: ReportInput, target: string | undefined): ReportTarget[] {
  if (target === undefined) return input.targets;
  const found = input.targets.filter((t) => t.label === target || t.slug === target || t.label === `target ${target}`);
  if (found.length === 0) {
    throw new ReportError(
      `no records of target "${excerpt(target, 40)}" in ${input.source} (targets: ${input.targets.map((t) => t.label).join(', ') || 'none'})`,
    );
  }
  return found;
}
