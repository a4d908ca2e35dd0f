// Accuracy of real monitoring against a truth that changes in phases (a test workload that
// prints where its hot set is and when it moves), and the comparison of two engines that
// monitored the same process at the same time (the project's page_idle engine and the
// kernel's DAMON). Per-record scores come from synthetic-accuracy.ts; this module adds
// the timeline: which phase an aggregation belongs to, how many aggregations an engine
// needed to find the hot set (first detection, re-detection after a move), how well it
// kept it once settled (steady coverage, cold bytes), and how much two engines' hot sets
// agree then (Jaccard). The steady state of a phase starts after a fixed number of its
// aggregations, the same for every engine, so that an engine that never meets the
// detection bar (the kernel's DAMON often leaves a boundary region of the hot set at
// under half the accesses for long) is still measured over the same stretch.
//
// Aggregations are counted, not timed: an emulated or overloaded machine stretches every
// aggregation interval, and DAMON's adaptation happens per aggregation.
import type { AggregationRecord } from '../../agent/records/record.js';
import { DEFAULT_WORKING_SET_THRESHOLD } from '../../agent/engine/working-set.js';
import { frequentSpans, scoreRecord, type AccuracyScore } from './synthetic-accuracy.js';
import { overlapBytes, spanBytes, type Span } from '../../agent/ops/synthetic-workload.js';

/** A hot set in force from startNs (wall-clock ns, as records' times) until the next phase. */
export interface TruthPhase {
  startNs: bigint;
  /** Sorted, disjoint, inside `mapped`. */
  hot: Span[];
}

export interface PhasedTruth {
  /** The memory the truth speaks about (the workload's mapping); the rest of the address space is not scored. */
  mapped: Span[];
  /** Sorted by startNs. */
  phases: TruthPhase[];
  /** When the last phase ends (the workload exited); aggregations that end later are not scored. */
  endNs?: bigint;
}

/** When the hot set counts as found in one aggregation. */
export interface DetectionBar {
  /** Fraction of the hot bytes in regions at >= the cut. */
  minHotCovered: number;
  /** Fraction of the cold bytes (mapped minus hot) in such regions. */
  maxColdCovered: number;
}

export const DETECTION_BAR: Readonly<DetectionBar> = Object.freeze({ minHotCovered: 0.99, maxColdCovered: 0.01 });

/** Aggregations of each phase before its steady state: the window the synthetic accuracy bar gives the engine. */
export const DEFAULT_SETTLE = 10;

export interface ScoreOptions {
  /** Access frequency (fraction of maxNrAccesses) from which a region counts as hot; default 0.5. */
  cut?: number;
  bar?: DetectionBar;
  /** Aggregations of each phase before the steady state; default DEFAULT_SETTLE. */
  settle?: number;
}

export interface ScoredRecord {
  record: AggregationRecord;
  /** Index of the phase in force for the whole aggregation. */
  phase: number;
  /** 1 for the engine's first scored aggregation of that phase. */
  index: number;
  score: AccuracyScore;
  /** Hot spans of the record (regions at >= the cut), clipped to the mapped memory. */
  hot: Span[];
  /** The bar is met in this aggregation. */
  detected: boolean;
  /** Past the phase's first `settle` aggregations. */
  steady: boolean;
}

export interface PhaseScore {
  phase: number;
  aggregations: number;
  /** Index of the first aggregation that met the bar; undefined if none did. */
  detectedAt: number | undefined;
  steadyCount: number;
  /** Means over the steady aggregations; undefined without any. */
  steadyHotCovered: number | undefined;
  steadyColdCovered: number | undefined;
  steadyColdBytes: number | undefined;
}

export interface EngineScore {
  records: number;
  scored: ScoredRecord[];
  /** Aggregations not scored: a phase changed during them, or they started before the first phase or ended after the last. */
  unscored: number;
  phases: PhaseScore[];
  /** Aggregations until the first detection in phase 0, counted from the engine's first. */
  firstDetection: number | undefined;
  /** Aggregations until the detection in each later phase, counted from the first that started after the move. */
  redetections: (number | undefined)[];
  /** Means over the steady aggregations of every phase. */
  steadyHotCovered: number | undefined;
  steadyColdCovered: number | undefined;
  steadyColdBytes: number | undefined;
}

function clip(spans: readonly Span[], to: readonly Span[]): Span[] {
  const out: Span[] = [];
  let j = 0;
  for (const s of spans) {
    while (j < to.length && to[j].end <= s.start) j++;
    for (let k = j; k < to.length && to[k].start < s.end; k++) {
      const start = Math.max(s.start, to[k].start);
      const end = Math.min(s.end, to[k].end);
      if (end > start) out.push({ start, end });
    }
  }
  return out;
}

function mean(xs: number[]): number | undefined {
  return xs.length === 0 ? undefined : xs.reduce((a, b) => a + b, 0) / xs.length;
}

function checkTruth(t: PhasedTruth): void {
  if (t.phases.length === 0) throw new RangeError('truth: at least one phase is needed');
  for (let i = 1; i < t.phases.length; i++) {
    if (t.phases[i].startNs <= t.phases[i - 1].startNs) throw new RangeError(`truth: phase ${i} does not start after phase ${i - 1}`);
  }
  if (t.endNs !== undefined && t.endNs <= t.phases[t.phases.length - 1].startNs) throw new RangeError('truth: endNs is not after the last phase starts');
  for (const [name, spans] of [['mapped', t.mapped], ...t.phases.map((p, i) => [`phase ${i} hot`, p.hot] as const)] as const) {
    for (let i = 0; i < spans.length; i++) {
      if (!(spans[i].start < spans[i].end)) throw new RangeError(`truth: ${name} span ${i} is empty`);
      if (i > 0 && spans[i].start < spans[i - 1].end) throw new RangeError(`truth: ${name} spans are not sorted and disjoint at ${i}`);
    }
  }
}

/**
 * Scores one engine's records of one target (in the order they came) against the truth:
 * each aggregation against the phase in force for all of it; aggregations during which
 * the hot set moved are left out (counted in `unscored`).
 */
export function scoreEngine(records: readonly AggregationRecord[], truth: PhasedTruth, o: ScoreOptions = {}): EngineScore {
  checkTruth(truth);
  const cut = o.cut ?? DEFAULT_WORKING_SET_THRESHOLD;
  const bar = o.bar ?? DETECTION_BAR;
  const settle = o.settle ?? DEFAULT_SETTLE;
  if (!Number.isInteger(settle) || settle < 0) throw new RangeError(`settle: must be a whole number of aggregations, got ${settle}`);
  const scored: ScoredRecord[] = [];
  const perPhase = truth.phases.map(() => ({ count: 0, detectedAt: undefined as number | undefined }));
  let unscored = 0;
  for (const record of records) {
    let phase = -1;
    for (let p = 0; p < truth.phases.length && truth.phases[p].startNs <= record.startNs; p++) phase = p;
    const nextStart = truth.phases[phase + 1]?.startNs ?? truth.endNs;
    if (phase < 0 || (nextStart !== undefined && nextStart < record.endNs)) {
      unscored++;
      continue;
    }
    const st = perPhase[phase];
    const index = ++st.count;
    const score = scoreRecord(record, truth.phases[phase].hot, truth.mapped, cut);
    const detected = score.hotCovered >= bar.minHotCovered && score.coldCovered <= bar.maxColdCovered;
    if (detected && st.detectedAt === undefined) st.detectedAt = index;
    const hot = clip(frequentSpans(record.regions, record.maxNrAccesses, cut), truth.mapped);
    scored.push({ record, phase, index, score, hot, detected, steady: index > settle });
  }
  const coldBytes = (p: number) => spanBytes(truth.mapped) - spanBytes(truth.phases[p].hot);
  const phases: PhaseScore[] = truth.phases.map((_, p) => {
    const steady = scored.filter((s) => s.phase === p && s.steady);
    const cold = mean(steady.map((s) => s.score.coldCovered));
    return {
      phase: p,
      aggregations: perPhase[p].count,
      detectedAt: perPhase[p].detectedAt,
      steadyCount: steady.length,
      steadyHotCovered: mean(steady.map((s) => s.score.hotCovered)),
      steadyColdCovered: cold,
      steadyColdBytes: cold === undefined ? undefined : cold * coldBytes(p),
    };
  });
  const steady = scored.filter((s) => s.steady);
  return {
    records: records.length,
    scored,
    unscored,
    phases,
    firstDetection: phases[0].detectedAt,
    redetections: phases.slice(1).map((p) => p.detectedAt),
    steadyHotCovered: mean(steady.map((s) => s.score.hotCovered)),
    steadyColdCovered: mean(steady.map((s) => s.score.coldCovered)),
    steadyColdBytes: mean(steady.map((s) => s.score.coldCovered * coldBytes(s.phase))),
  };
}

/** |a ∩ b| / |a ∪ b| of two sorted, disjoint span lists; 1 when both are empty. */
export function jaccard(a: readonly Span[], b: readonly Span[]): number {
  const both = overlapBytes(a, b);
  const union = spanBytes(a) + spanBytes(b) - both;
  return union === 0 ? 1 : both / union;
}

export interface HotSetAgreement {
  /** Steady aggregations of engine a paired with a steady one of b (same phase, most time in common). */
  pairs: number;
  meanJaccard: number | undefined;
  minJaccard: number | undefined;
}

/**
 * How much two engines' hot sets agree once settled: each steady
 * aggregation of `a` is paired with the steady aggregation of `b` of the same phase whose
 * middle is nearest in time (the engines' intervals are not aligned), and the Jaccard
 * index of their hot spans (within the mapped memory) is taken.
 */
export function compareHotSets(a: EngineScore, b: EngineScore): HotSetAgreement {
  const mid = (s: ScoredRecord) => (s.record.startNs + s.record.endNs) / 2n;
  const values: number[] = [];
  for (const x of a.scored) {
    if (!x.steady) continue;
    let best: ScoredRecord | undefined;
    let bestDistance = 0n;
    for (const y of b.scored) {
      if (!y.steady || y.phase !== x.phase) continue;
      const d = mid(x) > mid(y) ? mid(x) - mid(y) : mid(y) - mid(x);
      if (best === undefined || d < bestDistance) {
        bestDistance = d;
        best = y;
      }
    }
    if (best !== undefined) values.push(jaccard(x.hot, best.hot));
  }
  return {
    pairs: values.length,
    meanJaccard: mean(values),
    minJaccard: values.length === 0 ? undefined : Math.min(...values),
  };
}

/** What the project asks of its engine next to the kernel's (see test/guest/accuracy.test.ts). */
export interface ComparisonBar {
  /** First detection and every re-detection at most this many aggregations after the reference's. */
  maxDetectionLag: number;
  /**
   * Where the reference never detects (a kernel slowed by a busy host, say), the engine
   * still has to: within this many aggregations of the phase's start.
   */
  maxDetectionWithoutReference: number;
  /**
   * Steady hot coverage at most this much below the reference's, unless it reaches
   * steadyHotEnough on its own: on a busy host both monitors lose a few aggregations'
   * worth of the hot set at random, and a kernel that happened to lose less is not a bar
   * the engine must beat when it keeps the hot set anyway.
   */
  maxSteadyHotShortfall: number;
  /** Steady hot coverage that meets the bar whatever the reference's (the evaluation bar's 98%). */
  steadyHotEnough: number;
  /** Steady cold coverage (fraction of the cold bytes) at most this. */
  maxSteadyColdCovered: number;
  minMeanJaccard: number;
}

export const KERNEL_COMPARISON_BAR: Readonly<ComparisonBar> = Object.freeze({
  maxDetectionLag: 2,
  maxDetectionWithoutReference: 10,
  maxSteadyHotShortfall: 0.01,
  steadyHotEnough: 0.98,
  maxSteadyColdCovered: 0.01,
  minMeanJaccard: 0.9,
});

/** Every way `engine` misses the bar next to `reference`, one sentence each; empty when it meets it. */
export function comparisonFailures(
  engine: EngineScore,
  reference: EngineScore,
  agreement: HotSetAgreement,
  bar: ComparisonBar = KERNEL_COMPARISON_BAR,
): string[] {
  const out: string[] = [];
  const detections = [engine.firstDetection, ...engine.redetections];
  const refDetections = [reference.firstDetection, ...reference.redetections];
  detections.forEach((d, p) => {
    const ref = refDetections[p];
    const what = p === 0 ? 'first detection' : `re-detection after move ${p}`;
    if (d === undefined) out.push(`${what}: never${ref === undefined ? ' (nor by the reference)' : ` (reference: aggregation ${ref})`}`);
    else if (ref !== undefined && d > ref + bar.maxDetectionLag) {
      out.push(`${what}: aggregation ${d}, more than ${bar.maxDetectionLag} after the reference's ${ref}`);
    } else if (ref === undefined && d > bar.maxDetectionWithoutReference) {
      out.push(`${what}: aggregation ${d}, beyond ${bar.maxDetectionWithoutReference} (the reference never detected it)`);
    }
  });
  const h = engine.steadyHotCovered;
  const rh = reference.steadyHotCovered;
  if (h === undefined) out.push('steady hot coverage: no steady aggregation');
  else if (rh !== undefined && h < rh - bar.maxSteadyHotShortfall && h < bar.steadyHotEnough) {
    out.push(`steady hot coverage ${h.toFixed(4)} is more than ${bar.maxSteadyHotShortfall} below the reference's ${rh.toFixed(4)} and below ${bar.steadyHotEnough}`);
  }
  const c = engine.steadyColdCovered;
  if (c !== undefined && c > bar.maxSteadyColdCovered) out.push(`steady cold coverage ${(c * 100).toFixed(2)}% is above ${bar.maxSteadyColdCovered * 100}%`);
  if (agreement.meanJaccard === undefined) out.push('hot-set agreement: no pair of steady aggregations');
  else if (agreement.meanJaccard < bar.minMeanJaccard) {
    out.push(`mean Jaccard of the hot sets ${agreement.meanJaccard.toFixed(3)} is below ${bar.minMeanJaccard}`);
  }
  return out;
}
