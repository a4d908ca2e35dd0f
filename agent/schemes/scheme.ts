// A scheme as the engine applies it (the kernel's struct damos without its state): the
// access pattern, the action, quotas, watermarks and the apply interval, in plain
// numbers, made from the scheme as the session schema checked it (common/scheme-schema.ts:
// the controller refuses bad schemes at the door, and the agent checks its spec the same
// way); only "no bound" changes form, to Infinity, so that comparisons need no case.
import type { QuotaSpec, SchemeActionName, SchemeSpec as CheckedScheme, WatermarksSpec } from '../../common/scheme-schema.js';

/** Quotas (0: no such limit) and watermarks are the checked form's (the kernel's damos_quota without goals, damos_watermarks). */
export type { QuotaSpec, WatermarksSpec } from '../../common/scheme-schema.js';

/** The actions and watermark metrics by their DAMON names: one vocabulary, the API's (common/scheme-schema.ts). */
export type { SchemeActionName, WatermarkMetricName } from '../../common/scheme-schema.js';

/** The kernel's DAMON_MIN_REGION: regions, and quota splits, are whole pages. */
export const MIN_REGION = 4096;

/** Regions a scheme applies to; every bound inclusive, Infinity for "no bound". */
export interface AccessPatternSpec {
  minSizeBytes: number;
  maxSizeBytes: number;
  /** nr_accesses of the last aggregation interval, in samples. */
  minNrAccesses: number;
  maxNrAccesses: number;
  /** In aggregation intervals. */
  minAge: number;
  maxAge: number;
}

export interface SchemeSpec {
  pattern: AccessPatternSpec;
  action: SchemeActionName;
  /** null: no quota. */
  quota: QuotaSpec | null;
  /** null: always active. */
  watermarks: WatermarksSpec | null;
  /** 0: every aggregation interval. */
  applyIntervalUs: number;
}

/** A bound of the checked form (null: none) as the engine compares it. */
const bound = (v: number | null): number => (v === null ? Infinity : v);

/**
 * The engine's form of a scheme that the session schema checked (common/scheme-schema.ts,
 * the one conversion from the API's message): "no bound" becomes Infinity, and a quota
 * that limits nothing stays as given (hasQuota tells).
 */
export function engineScheme(c: CheckedScheme): SchemeSpec {
  const p = c.pattern;
  return {
    pattern: {
      minSizeBytes: p.minSizeBytes,
      maxSizeBytes: bound(p.maxSizeBytes),
      minNrAccesses: p.minNrAccesses,
      maxNrAccesses: bound(p.maxNrAccesses),
      minAge: p.minAge,
      maxAge: bound(p.maxAge),
    },
    action: c.action,
    quota: c.quotas === null ? null : { ...c.quotas },
    watermarks: c.watermarks === null ? null : { ...c.watermarks },
    applyIntervalUs: c.applyIntervalUs,
  };
}

/** Whether `q` limits anything (the kernel's "quota->ms || quota->sz"). */
export function hasQuota(q: QuotaSpec | null): q is QuotaSpec {
  return q !== null && (q.ms > 0 || q.bytes > 0);
}
