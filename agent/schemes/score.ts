// The priority of a region for a scheme whose quota would run out (mm/damon/ops-common.c
// damon_hot_score / damon_cold_score), in [0, MAX_SCORE]: an access-frequency subscore
// and an age subscore (log2 of the age in seconds, counting against hotness while the
// region is not accessed), weighted by the quota's permil weights. Like the kernel's, the
// score has no size term: the size weight changes nothing. Pageout and cold take the
// coldest regions first, every other action the hottest.
import type { Region } from '../engine/region.js';
import type { QuotaSpec, SchemeActionName } from './scheme.js';

/** The kernel's DAMOS_MAX_SCORE: scores are 0..99. */
export const MAX_SCORE = 99;
const MAX_SUBSCORE = 100;
const MAX_AGE_IN_LOG = 32;

/** The monitoring intervals a score depends on. */
export interface ScoreIntervals {
  /** Samples per aggregation: the largest nr_accesses. */
  maxNrAccesses: number;
  aggregationUs: number;
}

export function hotScore(r: Pick<Region, 'nrAccesses' | 'age'>, q: Pick<QuotaSpec, 'weightNrAccessesPermil' | 'weightAgePermil'>, iv: ScoreIntervals): number {
  const freqSubscore = iv.maxNrAccesses > 0 ? Math.floor((r.nrAccesses * MAX_SUBSCORE) / iv.maxNrAccesses) : 0;
  let ageInSec = Math.floor((r.age * iv.aggregationUs) / 1_000_000);
  let ageInLog = 0;
  for (; ageInLog < MAX_AGE_IN_LOG && ageInSec > 0; ageInLog++) ageInSec = Math.floor(ageInSec / 2);
  // Not accessed: the longer it stayed so, the colder.
  if (freqSubscore === 0) ageInLog = -ageInLog;
  ageInLog += MAX_AGE_IN_LOG;
  const ageSubscore = Math.floor(Math.floor((ageInLog * MAX_SUBSCORE) / MAX_AGE_IN_LOG) / 2);
  const fw = q.weightNrAccessesPermil;
  const aw = q.weightAgePermil;
  let hotness = fw * freqSubscore + aw * ageSubscore;
  if (fw + aw > 0) hotness = Math.floor(hotness / (fw + aw));
  hotness = Math.floor((hotness * MAX_SCORE) / MAX_SUBSCORE);
  return Math.max(Math.min(hotness, MAX_SCORE), 0);
}

export function coldScore(r: Pick<Region, 'nrAccesses' | 'age'>, q: Pick<QuotaSpec, 'weightNrAccessesPermil' | 'weightAgePermil'>, iv: ScoreIntervals): number {
  return MAX_SCORE - hotScore(r, q, iv);
}

/** The score that orders regions for `action`: cold first for pageout and cold, hot first otherwise. */
export function schemeScore(action: SchemeActionName, r: Pick<Region, 'nrAccesses' | 'age'>, q: QuotaSpec, iv: ScoreIntervals): number {
  return action === 'pageout' || action === 'cold' ? coldScore(r, q, iv) : hotScore(r, q, iv);
}
