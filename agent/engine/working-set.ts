// Summaries of one aggregation record: the working-set estimate, the hottest ranges and
// the monitored size. Used by the recorder's live summary and the accuracy tests.
import type { AggregationRecord, RegionRecord } from '../records/record.js';

/**
 * Default fraction of maxNrAccesses from which a region counts in the working set.
 *
 * nrAccesses / maxNrAccesses estimates, for a page of the region, the chance that it is
 * accessed within one sampling interval. At 0.5 a region counts when its sampled page
 * was found accessed in at least half of the aggregation's samples: a majority vote,
 * so the memory is in use throughout the interval rather than touched once, and a
 * region whose pages are accessed with probability p per interval counts, in
 * expectation, exactly when p >= 0.5. Much lower thresholds count regions that merely
 * saw a stray access (at the defaults, one access in 100 ms is 1/20); higher ones drop
 * memory used steadily but not in every 5 ms. Callers with their own notion of "hot"
 * (e.g. a synthetic workload's ground truth) pass their threshold instead.
 */
export const DEFAULT_WORKING_SET_THRESHOLD = 0.5;

function checkRecord(rec: AggregationRecord): void {
  if (!Number.isFinite(rec.maxNrAccesses) || rec.maxNrAccesses <= 0) {
    throw new RangeError(`aggregation record of target ${rec.targetId}: maxNrAccesses must be positive, got ${rec.maxNrAccesses}`);
  }
}

/** Access frequency of a region in [0, 1]: nrAccesses / maxNrAccesses. */
export function accessFrequency(r: RegionRecord, maxNrAccesses: number): number {
  return r.nrAccesses / maxNrAccesses;
}

/** Bytes covered by the record's regions. */
export function monitoredBytes(rec: AggregationRecord): number {
  let total = 0;
  for (const r of rec.regions) total += r.end - r.start;
  return total;
}

/**
 * Working-set estimate in bytes: the size of the regions whose access frequency
 * (nrAccesses / maxNrAccesses) is at least `threshold`, a fraction in (0, 1]; see
 * DEFAULT_WORKING_SET_THRESHOLD for why 0.5.
 */
export function workingSetBytes(rec: AggregationRecord, threshold = DEFAULT_WORKING_SET_THRESHOLD): number {
  checkRecord(rec);
  if (!(threshold > 0 && threshold <= 1)) {
    throw new RangeError(`working-set threshold must be a fraction in (0, 1], got ${threshold}`);
  }
  let total = 0;
  // Compare counts, not ratios, to avoid rounding at the boundary (e.g. 10/20 vs 0.5).
  const minCount = threshold * rec.maxNrAccesses;
  for (const r of rec.regions) if (r.nrAccesses >= minCount - 1e-9) total += r.end - r.start;
  return total;
}

/** One of the hottest ranges of a record. */
export interface HotRange {
  start: number;
  end: number;
  bytes: number;
  nrAccesses: number;
  /** nrAccesses / maxNrAccesses. */
  frequency: number;
  age: number;
}

/**
 * The `n` hottest regions of a record: highest nrAccesses first, then the larger, then
 * the lower address (so the order is total and stable).
 */
export function hottestRanges(rec: AggregationRecord, n: number): HotRange[] {
  checkRecord(rec);
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`hottest ranges: n must be a non-negative integer, got ${n}`);
  return [...rec.regions]
    .sort((a, b) => b.nrAccesses - a.nrAccesses || (b.end - b.start) - (a.end - a.start) || a.start - b.start)
    .slice(0, n)
    .map((r) => ({
      start: r.start,
      end: r.end,
      bytes: r.end - r.start,
      nrAccesses: r.nrAccesses,
      frequency: accessFrequency(r, rec.maxNrAccesses),
      age: r.age,
    }));
}

export interface WorkingSetSummary {
  targetId: number;
  monitoredBytes: number;
  workingSetBytes: number;
  hottest: HotRange[];
}

/** monitoredBytes, workingSetBytes and hottestRanges of one record together. */
export function summarize(
  rec: AggregationRecord,
  o: { threshold?: number; topN?: number } = {},
): WorkingSetSummary {
  return {
    targetId: rec.targetId,
    monitoredBytes: monitoredBytes(rec),
    workingSetBytes: workingSetBytes(rec, o.threshold ?? DEFAULT_WORKING_SET_THRESHOLD),
    hottest: hottestRanges(rec, o.topN ?? 5),
  };
}
