// Intervals auto-tuning: the feedback loop of Linux 6.15's kdamond_tune_intervals, which
// scales the sampling interval toward a target ratio of observed access events. The
// aggregation interval keeps its number of samples, so max_nr_accesses never changes.
import { MAX_ACCESS_BP, type IntervalsGoal } from './attrs.js';
import type { Region } from './region.js';

/** Scores and factors are in basis points; 10000 means "on goal" / "unchanged". */
const BP = 10_000;

/**
 * How far the last aggregation is from the goal, in basis points of it (Linux 6.15
 * damon_get_intervals_score): access events counted per byte, as the kernel does
 * (sum of size * nrAccesses), over the most possible times accessBp / 10000. Call it
 * after the merge and before nrAccesses is reset. Undefined when there are no regions.
 */
export function intervalsScoreBp(targets: readonly (readonly Region[])[], samplesPerAggregation: number, accessBp: number): number | undefined {
  let events = 0;
  let most = 0;
  for (const regions of targets) {
    for (const r of regions) {
      const sz = r.end - r.start;
      events += sz * r.nrAccesses;
      most += sz * samplesPerAggregation;
    }
  }
  if (most === 0) return undefined;
  const target = (most * accessBp) / MAX_ACCESS_BP;
  return Math.floor((events * BP) / target);
}

/**
 * The kernel's damon_feed_loop_next_input: assuming input and score grow together, the
 * next input moves from the last by the score's relative distance from the goal (10000);
 * never below 10000 so that it can grow again.
 */
export function feedLoopNextInput(lastInput: number, scoreBp: number): number {
  const minInput = BP;
  if (scoreBp === BP) return lastInput;
  const diff = scoreBp < BP ? BP - scoreBp : Math.min(scoreBp - BP, BP);
  const compensation = Math.floor((lastInput * diff) / BP);
  if (scoreBp < BP) return lastInput + compensation;
  return lastInput > compensation + minInput ? lastInput - compensation : minInput;
}

/**
 * The factor to scale the sampling interval by, in basis points (Linux 6.15
 * damon_get_intervals_adaptation_bp): up to 2x when too few events are seen; when too
 * many, at most halved per adjustment (1..10000 is rescaled to 5000..10000), since a
 * rapid shrink buys little and costs checks.
 */
export function intervalsAdaptationBp(scoreBp: number): number {
  const adaptation = Math.floor(feedLoopNextInput(BP * BP, scoreBp) / BP);
  return adaptation <= BP ? 5_000 + Math.floor(adaptation / 2) : adaptation;
}

/** The next sampling interval: scaled by the adaptation, kept within the goal's bounds. */
export function tunedSamplingUs(samplingUs: number, adaptationBp: number, goal: IntervalsGoal): number {
  const scaled = Math.floor((samplingUs * adaptationBp) / BP);
  return Math.max(goal.minSampleUs, Math.min(goal.maxSampleUs, scaled));
}

/** One adjustment: the new sampling interval for the regions as they ended an aggregation. */
export function tuneSamplingUs(
  targets: readonly (readonly Region[])[],
  samplesPerAggregation: number,
  samplingUs: number,
  goal: IntervalsGoal,
): number {
  const score = intervalsScoreBp(targets, samplesPerAggregation, goal.accessBp);
  if (score === undefined) return samplingUs;
  const adaptation = intervalsAdaptationBp(score);
  if (adaptation === BP) return samplingUs;
  return tunedSamplingUs(samplingUs, adaptation, goal);
}
