// Which regions a scheme applies to (the kernel's __damos_valid_target): size, nr_accesses
// of the aggregation just ended and age, every bound inclusive.
import type { Region } from '../engine/region.js';
import type { AccessPatternSpec } from './scheme.js';

export function matchesPattern(r: Pick<Region, 'start' | 'end' | 'nrAccesses' | 'age'>, p: AccessPatternSpec): boolean {
  const sz = r.end - r.start;
  return (
    p.minSizeBytes <= sz &&
    sz <= p.maxSizeBytes &&
    p.minNrAccesses <= r.nrAccesses &&
    r.nrAccesses <= p.maxNrAccesses &&
    p.minAge <= r.age &&
    r.age <= p.maxAge
  );
}
