// What a benchmark module exports so that bench/run.ts finds and runs it: a file
// bench/<name>.ts with `export const benchmark: Benchmark = {...}`.

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
