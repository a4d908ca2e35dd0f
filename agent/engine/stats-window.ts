// A bounded window of measured interval lengths and their statistics: how far real
// intervals drift from the configured ones (both engines report them).

/** Number of recent intervals the drift statistics cover. */
export const DRIFT_WINDOW = 1000;

/** Statistics of measured lengths, in microseconds, over the last DRIFT_WINDOW values. */
export interface IntervalStats {
  /** What the lengths should be; 0 where nothing is configured (step durations). */
  configuredUs: number;
  /** Values the statistics below cover (at most DRIFT_WINDOW). */
  count: number;
  /** Values measured since start. */
  total: number;
  /** The sum of every value measured since start (a running total, e.g. CPU microseconds). */
  sumUs: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

/** The last DRIFT_WINDOW values, and the sum of all. */
export class StatsWindow {
  private readonly values = new Float64Array(DRIFT_WINDOW);
  private next = 0;
  total = 0;
  sum = 0;

  add(v: number): void {
    this.values[this.next] = v;
    this.next = (this.next + 1) % DRIFT_WINDOW;
    this.total++;
    this.sum += v;
  }

  stats(configuredUs: number): IntervalStats {
    const count = Math.min(this.total, DRIFT_WINDOW);
    if (count === 0) return { configuredUs, count, total: 0, sumUs: 0, meanUs: 0, p50Us: 0, p99Us: 0, maxUs: 0 };
    const sorted = Array.from(this.values.subarray(0, count)).sort((a, b) => a - b);
    const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * count) - 1)];
    return {
      configuredUs,
      count,
      total: this.total,
      sumUs: this.sum,
      meanUs: sorted.reduce((a, b) => a + b, 0) / count,
      p50Us: rank(0.5),
      p99Us: rank(0.99),
      maxUs: sorted[count - 1],
    };
  }
}
