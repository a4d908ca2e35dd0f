// What a benchmark module exports so that bench/run.ts finds and runs it: a file
// bench/<name>.ts with `export const benchmark: Benchmark = {...}`.
import { readFileSync } from 'node:fs';

export interface BenchContext {
  /** Times each measurement is repeated; benchmarks report medians over them. */
  readonly repeats: number;
  /** Shorter runs (fewer repeats and steps), for a smoke check rather than figures. */
  readonly quick: boolean;
  /** Updates the runner's progress line; `done` and `total` count the benchmark's own steps. */
  progress(what: string, done: number, total: number): void;
}

export interface BenchTable {
  title: string;
  columns: string[];
  rows: Array<Array<string | number>>;
}

export interface BenchResult {
  /** Headline figures, e.g. { cpuRatioLargestSmallest: 1.04 }. */
  summary: Record<string, number | string | boolean>;
  /** What the readable report prints. */
  tables: BenchTable[];
  /** How the figures were obtained and what they do not say (extrapolations, noise). */
  notes: string[];
  /** Everything measured, for the JSON report. */
  data: unknown;
}

export interface Benchmark {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<BenchResult>;
}

/** Nearest-rank percentile. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of no values');
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** CPU seconds (user + system) of a process so far, from /proc. */
export function processCpuS(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** CPU time (user + system) of this process in microseconds. */
export function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}
