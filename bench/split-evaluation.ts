// Runs a split rule on an evaluation family (bench/eval-families.ts) for a list of seeds,
// in virtual time with DAMON's default attributes, and scores every aggregation against
// the workload's ground truth with the project's bar (synthetic-accuracy.ts): hot coverage
// >= 98%, <= 1% of cold bytes counted hot, working set within 5%. A run passes when the
// bar is met within WITHIN aggregations of the start and of every move of the hot set.
import { DamonContext, type AdjustMode } from '../agent/engine/context.js';
import { DEFAULT_ATTRS } from '../agent/engine/attrs.js';
import { SyntheticOperations } from '../agent/ops/synthetic.js';
import { spanBytes } from '../agent/ops/synthetic-workload.js';
import { meetsBar, scoreAggregations, type ScoredAggregation } from '../test/support/synthetic-accuracy.js';
import { engineRandom, type Family } from './eval-families.js';

/** Aggregations allowed to meet the bar, from the start and from every move. */
export const WITHIN = 10;
/** The last aggregations of each phase, over which false positives are averaged. */
export const SETTLED_AGGREGATIONS = 10;

export interface PhaseOutcome {
  /** Aggregations from the phase start until the bar was first met; undefined if never. */
  metAt: number | undefined;
  /** Mean cold bytes counted hot over the phase's last SETTLED_AGGREGATIONS aggregations. */
  settledFalseHotBytes: number;
  /** The score when the bar was first met, else the phase's last. */
  shown: ScoredAggregation;
}

export interface RunOutcome {
  family: string;
  adjust: AdjustMode;
  seed: number;
  phases: PhaseOutcome[];
  /** Every phase met the bar within WITHIN aggregations. */
  pass: boolean;
  /** Mean regions checked per sampling interval (after the split): the run's cost. */
  sampledRegions: number;
}

/** Runs one family on one seed with one split rule. */
export function runFamily(family: Family, adjust: AdjustMode, seed: number): RunOutcome {
  const ops = new SyntheticOperations(family.workload(seed));
  const ctx = new DamonContext({ attrs: { ...DEFAULT_ATTRS }, targetIds: ops.targetIds(), ops, random: engineRandom(seed), clock: 'virtual', adjust });
  const targetId = ops.targetIds()[0];
  const aggs = scoreAggregations(ctx, ops, targetId);
  const steps = family.runUs / DEFAULT_ATTRS.samplingUs;
  let sampled = 0;
  for (let i = 0; i < steps; i++) {
    sampled += ctx.targets[0]?.regions.length ?? 0;
    ctx.step();
  }
  const mappedBytes = spanBytes(ops.mappedRanges(targetId, 0));
  const nrPhases = Math.round(family.runUs / family.phaseUs);
  const phases: PhaseOutcome[] = [];
  for (let p = 0; p < nrPhases; p++) {
    const inPhase = aggs.filter((a) => Math.floor(ops.workloadTimeUs(a.startUs) / family.phaseUs) === p);
    if (inPhase.length === 0) throw new Error(`${family.name} seed ${seed}: no aggregation in phase ${p}`);
    const first = inPhase.findIndex((a) => meetsBar(a.score));
    const settled = inPhase.slice(-SETTLED_AGGREGATIONS);
    const falseHot = settled.map((a) => a.score.coldCovered * (mappedBytes - a.score.trueHotBytes));
    phases.push({
      metAt: first < 0 ? undefined : first + 1,
      settledFalseHotBytes: falseHot.reduce((x, y) => x + y, 0) / falseHot.length,
      shown: first < 0 ? inPhase[inPhase.length - 1] : inPhase[first],
    });
  }
  return {
    family: family.name,
    adjust,
    seed,
    phases,
    pass: phases.every((p) => p.metAt !== undefined && p.metAt <= WITHIN),
    sampledRegions: sampled / steps,
  };
}

/** Stands for "never met" in sortable figures. */
export const NEVER = Number.MAX_SAFE_INTEGER;

export interface FamilySummary {
  family: string;
  adjust: AdjustMode;
  seeds: number;
  passed: number;
  /** Median aggregations to meet the bar from the start (NEVER when the median run never does). */
  medianFromStart: number;
  /** Median over every move of every seed. */
  medianAfterMove: number;
  /** Median and largest, over seeds, of a run's mean settled false-positive bytes. */
  medianFalseHotBytes: number;
  maxFalseHotBytes: number;
  /** Mean regions checked per sampling interval. */
  sampledRegions: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  if (s.length % 2) return s[m];
  // Two middles, one of them "never": the median is never too.
  return s[m - 1] === NEVER || s[m] === NEVER ? NEVER : (s[m - 1] + s[m]) / 2;
}

export function summarize(runs: readonly RunOutcome[]): FamilySummary {
  if (runs.length === 0) throw new Error('summary of no runs');
  const met = (p: PhaseOutcome) => p.metAt ?? NEVER;
  const falseHot = runs.map((r) => r.phases.reduce((x, p) => x + p.settledFalseHotBytes, 0) / r.phases.length);
  const moves = runs.flatMap((r) => r.phases.slice(1).map(met));
  return {
    family: runs[0].family,
    adjust: runs[0].adjust,
    seeds: runs.length,
    passed: runs.filter((r) => r.pass).length,
    medianFromStart: median(runs.map((r) => met(r.phases[0]))),
    medianAfterMove: moves.length === 0 ? NEVER : median(moves),
    medianFalseHotBytes: median(falseHot),
    maxFalseHotBytes: Math.max(...falseHot),
    sampledRegions: runs.reduce((x, r) => x + r.sampledRegions, 0) / runs.length,
  };
}

/** Runs and summarizes a family for every seed; `progress` is called after each run. */
export function evaluateFamily(family: Family, adjust: AdjustMode, seeds: readonly number[], progress?: (r: RunOutcome) => void): { runs: RunOutcome[]; summary: FamilySummary } {
  const runs = seeds.map((seed) => {
    const r = runFamily(family, adjust, seed);
    progress?.(r);
    return r;
  });
  return { runs, summary: summarize(runs) };
}
