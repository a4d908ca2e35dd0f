// Monitoring attributes, their defaults and DAMON's rules between them. Their text form
// and the bounds a session puts on them are in common/session-schema.ts.
import type { SchemeSpec } from '../schemes/scheme.js';

/**
 * Intervals auto-tuning (Linux 6.15's damon_intervals_goal): every `aggrs` aggregations
 * the sampling interval is scaled so that the observed access events come to `accessBp`
 * basis points of the most possible, within [minSampleUs, maxSampleUs]; the aggregation
 * interval keeps its ratio to it (intervals-tuning.ts).
 */
export interface IntervalsGoal {
  /** Target ratio of observed access events to the most possible, in 1/10000 (1..10000). */
  accessBp: number;
  /** Aggregations between two adjustments (>= 1). */
  aggrs: number;
  minSampleUs: number;
  maxSampleUs: number;
}

export interface Attributes {
  samplingUs: number;
  aggregationUs: number;
  /** Regions-update interval: how often the targets' mappings are re-read. */
  updateUs: number;
  minNrRegions: number;
  maxNrRegions: number;
  /** Result file path; empty for none. */
  resultFile: string;
  /** Intervals auto-tuning; null or absent (default) keeps the intervals as set. */
  intervalsGoal?: IntervalsGoal | null;
  /**
   * DAMOS schemes, applied in this order once per aggregation (agent/schemes/); absent or
   * empty for none. Checked by the API (the controller), not here.
   */
  schemes?: readonly SchemeSpec[];
}

export const DEFAULT_ATTRS: Readonly<Attributes> = Object.freeze({
  samplingUs: 5_000,
  aggregationUs: 100_000,
  updateUs: 1_000_000,
  minNrRegions: 10,
  maxNrRegions: 1000,
  resultFile: '',
  intervalsGoal: null,
});

/** Most basis points: 10000 = every possible access event observed. */
export const MAX_ACCESS_BP = 10_000;

/** A bad attribute value; `field` names it the way users write it. */
export class AttributeError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'AttributeError';
  }
}

/** Largest possible nrAccesses in one aggregation interval. */
export function maxNrAccesses(a: Pick<Attributes, 'samplingUs' | 'aggregationUs'>): number {
  return Math.floor(a.aggregationUs / a.samplingUs);
}

function positiveInt(field: string, v: number): void {
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new AttributeError(field, `must be a positive integer, got ${v}`);
  }
}

/** Returns a complete, checked copy of `partial` over the defaults, or throws AttributeError. */
export function validateAttributes(partial: Partial<Attributes>): Attributes {
  const a: Attributes = { ...DEFAULT_ATTRS, ...partial };
  positiveInt('sampling_interval_us', a.samplingUs);
  positiveInt('aggregation_interval_us', a.aggregationUs);
  positiveInt('update_interval_us', a.updateUs);
  positiveInt('min_nr_regions', a.minNrRegions);
  positiveInt('max_nr_regions', a.maxNrRegions);
  if (a.samplingUs > a.aggregationUs) {
    throw new AttributeError(
      'sampling_interval_us',
      `must not exceed aggregation_interval_us (${a.samplingUs} > ${a.aggregationUs})`,
    );
  }
  if (a.minNrRegions < 3) {
    throw new AttributeError('min_nr_regions', `must be at least 3 (the three regions), got ${a.minNrRegions}`);
  }
  if (a.maxNrRegions < a.minNrRegions) {
    throw new AttributeError(
      'max_nr_regions',
      `must be at least min_nr_regions (${a.maxNrRegions} < ${a.minNrRegions})`,
    );
  }
  if (typeof a.resultFile !== 'string' || a.resultFile.includes('\0')) {
    throw new AttributeError('result_file', 'must be a path without NUL bytes');
  }
  if (a.intervalsGoal !== null && a.intervalsGoal !== undefined) a.intervalsGoal = validateIntervalsGoal(a.intervalsGoal);
  else a.intervalsGoal = null;
  return a;
}

/** A checked copy of an intervals goal, or AttributeError naming the field. */
export function validateIntervalsGoal(g: IntervalsGoal): IntervalsGoal {
  const f = (name: string) => `intervals_goal.${name}`;
  positiveInt(f('access_bp'), g.accessBp);
  if (g.accessBp > MAX_ACCESS_BP) throw new AttributeError(f('access_bp'), `must be at most ${MAX_ACCESS_BP} (all access events), got ${g.accessBp}`);
  positiveInt(f('aggrs'), g.aggrs);
  positiveInt(f('min_sample_us'), g.minSampleUs);
  positiveInt(f('max_sample_us'), g.maxSampleUs);
  if (g.maxSampleUs < g.minSampleUs) {
    throw new AttributeError(f('max_sample_us'), `must be at least min_sample_us (${g.maxSampleUs} < ${g.minSampleUs})`);
  }
  return { accessBp: g.accessBp, aggrs: g.aggrs, minSampleUs: g.minSampleUs, maxSampleUs: g.maxSampleUs };
}
