// A bounded window of measurements and its statistics, in the shape of the engine's
// IntervalStats (agent/engine/context.ts keeps its own copy private; the core stays as is).
import { DRIFT_WINDOW, type IntervalStats } from '../engine/context.js';

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
    if (count === 0) return { configuredUs, count, total: 0, meanUs: 0, p50Us: 0, p99Us: 0, maxUs: 0 };
    const sorted = Array.from(this.values.subarray(0, count)).sort((a, b) => a - b);
    const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * count) - 1)];
    return {
      configuredUs,
      count,
      total: this.total,
      meanUs: sorted.reduce((a, b) => a + b, 0) / count,
      p50Us: rank(0.5),
      p99Us: rank(0.99),
      maxUs: sorted[count - 1],
    };
  }
}
