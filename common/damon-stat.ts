// The two summaries of the kernel's DAMON_STAT module (Linux 6.17 mm/damon/stat.c), computed
// from aggregation records: estimated memory bandwidth and memory idle-time percentiles.
// The agent computes them per target and per (session, host); docs/metrics.md.

/** One region as DAMON_STAT reads it: its bytes, nr_accesses, and age in aggregation intervals. */
export interface StatRegion {
  start: number;
  end: number;
  nrAccesses: number;
  age: number;
}

/** The regions of one monitoring context's target, and the aggregation interval they were counted over. */
export interface StatInput {
  regions: readonly StatRegion[];
  /** The aggregation interval (c->attrs.aggr_interval), microseconds; positive. */
  aggregationUs: number;
}

/** Percentiles 0, 1, ..., 100: as memory_idle_ms_percentiles. */
export const IDLE_PERCENTILES = 101;

/** How often DAMON_STAT refreshes its summaries ("avoid unnecessarily frequent stat update"). */
export const DAMON_STAT_REFRESH_MS = 5_000;

export interface DamonStatSummary {
  /** estimated_memory_bandwidth: bytes per second. */
  estimatedMemoryBandwidth: number;
  /** memory_idle_ms_percentiles: IDLE_PERCENTILES values, milliseconds; [p] is the idle time of the byte at p% (least idle first). */
  memoryIdleMsPercentiles: number[];
  /** Bytes the regions cover. */
  totalBytes: number;
}

/**
 * Linux 6.17 damon_stat_set_estimated_memory_bandwidth: the bytes of every region times
 * its nr_accesses, per second of aggregation interval:
 *   sum(size * nr_accesses) * USEC_PER_MSEC * MSEC_PER_SEC / aggr_interval
 * in integer arithmetic (rounded down). Inputs with different aggregation intervals (two
 * sessions' contexts) are summed per interval first, then added.
 */
export function estimatedMemoryBandwidth(inputs: readonly StatInput[]): number {
  const byInterval = new Map<number, ExactSum>();
  for (const { regions, aggregationUs } of inputs) {
    const aggrUs = checkInterval(aggregationUs);
    let accessBytes = byInterval.get(aggrUs);
    if (!accessBytes) byInterval.set(aggrUs, (accessBytes = new ExactSum()));
    for (const r of regions) accessBytes.addProduct(r.end - r.start, r.nrAccesses);
  }
  let bw = 0n;
  for (const [aggrUs, accessBytes] of byInterval) bw += (accessBytes.value() * 1_000_000n) / BigInt(aggrUs);
  return Number(bw);
}

/**
 * Linux 6.17 damon_stat_idletime, in aggregation intervals: 0 for a region accessed in
 * the last aggregation interval, else its age + 1. (Linux 6.18 made it -(age + 1) for an
 * accessed region, so that hot memory is told apart too; this follows 6.17.)
 */
export function idleIntervals(r: StatRegion): number {
  return r.nrAccesses > 0 ? 0 : r.age + 1;
}

/**
 * Linux 6.17 damon_stat_set_idletime_percentiles: regions sorted by idle time (least
 * first), walked accumulating their bytes; after each region, every percentile p not yet
 * set with p <= accounted * 100 / total (integer division) gets that region's idle time,
 * idle_intervals * aggr_interval / USEC_PER_MSEC (rounded down). Null when there are no
 * bytes.
 *
 * Regions of equal idle time are walked as one (the percentiles they set get the same
 * value either way), so the sort is over distinct idle times, not regions. Sorting by
 * milliseconds rather than intervals is the same order within one context, and keeps it
 * right across contexts with different aggregation intervals.
 */
export function idleMsPercentiles(inputs: readonly StatInput[]): number[] | null {
  const bytesByIdle = new Map<number, ExactSum>();
  const total = new ExactSum();
  for (const { regions, aggregationUs } of inputs) {
    const aggrUs = checkInterval(aggregationUs);
    for (const r of regions) {
      const idleMs = Math.floor((idleIntervals(r) * aggrUs) / 1000);
      let bytes = bytesByIdle.get(idleMs);
      if (!bytes) bytesByIdle.set(idleMs, (bytes = new ExactSum()));
      bytes.addProduct(r.end - r.start, 1);
      total.addProduct(r.end - r.start, 1);
    }
  }
  const totalBytes = total.value();
  if (totalBytes === 0n) return null;
  const out: number[] = [];
  let accounted = 0n;
  for (const idleMs of [...bytesByIdle.keys()].sort((a, b) => a - b)) {
    accounted += bytesByIdle.get(idleMs)!.value();
    const reached = Number((accounted * 100n) / totalBytes);
    while (out.length <= reached) out.push(idleMs);
  }
  return out;
}

/** Both summaries of `inputs` taken as one (a target, or every target of a session on a host); null without regions. */
export function damonStat(inputs: readonly StatInput[]): DamonStatSummary | null {
  const pct = idleMsPercentiles(inputs);
  if (pct === null) return null;
  let totalBytes = 0;
  for (const { regions } of inputs) for (const r of regions) totalBytes += r.end - r.start;
  return { estimatedMemoryBandwidth: estimatedMemoryBandwidth(inputs), memoryIdleMsPercentiles: pct, totalBytes };
}

/**
 * An exact sum of non-negative integer products: in a double while it stays below 2^53
 * (every real case, and fast), in a bigint beyond.
 */
class ExactSum {
  private small = 0;
  private big = 0n;

  addProduct(a: number, b: number): void {
    const p = a * b;
    if (Number.isSafeInteger(p) && Number.isSafeInteger(this.small + p)) {
      this.small += p;
      return;
    }
    this.big += BigInt(this.small) + BigInt(a) * BigInt(b);
    this.small = 0;
  }

  value(): bigint {
    return this.big + BigInt(this.small);
  }
}

/** Whole microseconds, as attrs.aggr_interval; a tuned interval may come fractional. */
function checkInterval(us: number): number {
  const aggrUs = Math.round(us);
  if (!(Number.isSafeInteger(aggrUs) && aggrUs > 0)) throw new RangeError(`aggregation interval ${us} us: expected a positive number`);
  return aggrUs;
}
