// Scores one aggregation record against the synthetic workload's ground truth: how much
// of the truly hot memory the regions DAMON calls hot cover, how much cold memory they
// wrongly include, and how far the working-set size is from the truth. Only meaningful
// for the simulated "synthetic" operations, where the truth is declared.
import type { AggregationRecord, RegionRecord } from '../../agent/records/record.js';
import { DEFAULT_WORKING_SET_THRESHOLD, workingSetBytes } from '../../agent/engine/working-set.js';
import { overlapBytes, spanBytes, type Span } from '../../agent/ops/synthetic-workload.js';

export interface AccuracyScore {
  /** Fraction of hot bytes inside regions at >= the frequency cut (1 is perfect). */
  hotCovered: number;
  /** Fraction of mapped cold bytes inside such regions (0 is perfect). */
  coldCovered: number;
  /** The engine's working-set estimate of the record (bytes of regions at >= the cut). */
  estimatedHotBytes: number;
  trueHotBytes: number;
  /** |estimate - truth| / truth. */
  workingSetError: number;
  nrRegions: number;
}

/** Sorted, coalesced spans of the records whose nrAccesses / maxNrAccesses >= cut. */
export function frequentSpans(regions: readonly RegionRecord[], maxNrAccesses: number, cut: number): Span[] {
  const out: Span[] = [];
  for (const r of regions) {
    // The same comparison as workingSetBytes, so both agree on which regions count.
    if (r.nrAccesses < cut * maxNrAccesses - 1e-9) continue;
    const last = out[out.length - 1];
    if (last && last.end === r.start) last.end = r.end;
    else out.push({ start: r.start, end: r.end });
  }
  return out;
}

/** `mapped` minus `hot`; both sorted and disjoint, `hot` within `mapped`. */
export function subtractSpans(mapped: readonly Span[], hot: readonly Span[]): Span[] {
  const out: Span[] = [];
  let j = 0;
  for (const m of mapped) {
    let cur = m.start;
    while (j < hot.length && hot[j].end <= cur) j++;
    let k = j;
    while (k < hot.length && hot[k].start < m.end) {
      if (hot[k].start > cur) out.push({ start: cur, end: hot[k].start });
      cur = Math.max(cur, hot[k].end);
      k++;
    }
    if (cur < m.end) out.push({ start: cur, end: m.end });
  }
  return out;
}

/**
 * Scores an aggregation record against the truth: `hot` and `mapped` byte ranges (sorted,
 * disjoint) at the end of the aggregation. `cut` is the access frequency, as a fraction of
 * maxNrAccesses, from which a region counts as hot; the working-set estimate uses the same.
 */
export function scoreRecord(
  rec: AggregationRecord,
  hot: readonly Span[],
  mapped: readonly Span[],
  cut = DEFAULT_WORKING_SET_THRESHOLD,
): AccuracyScore {
  const frequent = frequentSpans(rec.regions, rec.maxNrAccesses, cut);
  const cold = subtractSpans(mapped, hot);
  const trueHotBytes = spanBytes(hot);
  const coldBytes = spanBytes(cold);
  const estimatedHotBytes = workingSetBytes(rec, cut);
  return {
    hotCovered: trueHotBytes === 0 ? 1 : overlapBytes(frequent, hot) / trueHotBytes,
    coldCovered: coldBytes === 0 ? 0 : overlapBytes(frequent, cold) / coldBytes,
    estimatedHotBytes,
    trueHotBytes,
    workingSetError: trueHotBytes === 0 ? (estimatedHotBytes === 0 ? 0 : Infinity) : Math.abs(estimatedHotBytes - trueHotBytes) / trueHotBytes,
    nrRegions: rec.regions.length,
  };
}

/** Accuracy a record must reach: the project's bar (see test/integration/accuracy.test.ts). */
export interface AccuracyBar {
  minHotCovered: number;
  maxColdCovered: number;
  maxWorkingSetError: number;
}

export const PROJECT_ACCURACY_BAR: Readonly<AccuracyBar> = Object.freeze({
  minHotCovered: 0.98,
  maxColdCovered: 0.01,
  maxWorkingSetError: 0.05,
});

export function meetsBar(s: AccuracyScore, bar: AccuracyBar = PROJECT_ACCURACY_BAR): boolean {
  return s.hotCovered >= bar.minHotCovered && s.coldCovered <= bar.maxColdCovered && s.workingSetError <= bar.maxWorkingSetError;
}

export interface ScoredAggregation {
  /** 1 for the first aggregation of the run. */
  index: number;
  /** Context time (µs) at which the aggregation interval started and ended. */
  startUs: number;
  endUs: number;
  score: AccuracyScore;
}

/** What scoreAggregations needs: the ground truth at a context time. */
export interface GroundTruth {
  hotRanges(targetId: number, nowUs?: number): Span[];
  mappedRanges(targetId: number, nowUs?: number): Span[];
}

/** The part of a monitoring context scoreAggregations listens to. */
export interface AggregationSource {
  nowUs(): number;
  on(event: 'aggregate', listener: (rec: AggregationRecord) => void): unknown;
}

/**
 * Scores every aggregation of `targetId` as the context emits it, against the truth in
 * force when the aggregation interval started (a phase change at an aggregation boundary
 * then belongs to the next interval, whose samples all see it). Returns the list it fills.
 */
export function scoreAggregations(
  ctx: AggregationSource,
  truth: GroundTruth,
  targetId: number,
  cut = DEFAULT_WORKING_SET_THRESHOLD,
): ScoredAggregation[] {
  const out: ScoredAggregation[] = [];
  let startUs = ctx.nowUs();
  ctx.on('aggregate', (rec) => {
    if (rec.targetId !== targetId) return;
    const endUs = ctx.nowUs();
    const score = scoreRecord(rec, truth.hotRanges(targetId, startUs), truth.mappedRanges(targetId, startUs), cut);
    out.push({ index: out.length + 1, startUs, endUs, score });
    startUs = endUs;
  });
  return out;
}
