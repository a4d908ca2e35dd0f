// Monitoring attributes, their defaults and DAMON's rules between them. Their text form
// and the bounds a session puts on them are in common/session-schema.ts.

export interface Attributes {
  samplingUs: number;
  aggregationUs: number;
  /** Regions-update interval: how often the targets' mappings are re-read. */
  updateUs: number;
  minNrRegions: number;
  maxNrRegions: number;
  /** Result file path; empty for none. */
  resultFile: string;
}

export const DEFAULT_ATTRS: Readonly<Attributes> = Object.freeze({
  samplingUs: 5_000,
  aggregationUs: 100_000,
  updateUs: 1_000_000,
  minNrRegions: 10,
  maxNrRegions: 1000,
  resultFile: '',
});

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
  return a;
}
