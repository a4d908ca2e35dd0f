// A scheme as the engine applies it (the kernel's struct damos without its state): the
// access pattern, the action, quotas, watermarks and the apply interval, in plain
// numbers, converted once from the proto Scheme (gen/damon/v1/damon.ts) that the session
// carries. Validation is the API's (the controller refuses bad schemes at the door); the
// conversion only maps unset bounds to "no bound" and enums to names.
import {
  SchemeAction,
  WatermarkMetric,
  type Scheme,
} from '../../gen/damon/v1/damon.js';

/** The actions a scheme can ask for, by their DAMON names. */
export type SchemeActionName = 'willneed' | 'cold' | 'pageout' | 'hugepage' | 'nohugepage' | 'stat' | 'collapse';

export const SCHEME_ACTION_NAMES: Readonly<Record<Exclude<SchemeAction, SchemeAction.SCHEME_ACTION_UNSPECIFIED | SchemeAction.UNRECOGNIZED>, SchemeActionName>> =
  Object.freeze({
    [SchemeAction.SCHEME_ACTION_WILLNEED]: 'willneed',
    [SchemeAction.SCHEME_ACTION_COLD]: 'cold',
    [SchemeAction.SCHEME_ACTION_PAGEOUT]: 'pageout',
    [SchemeAction.SCHEME_ACTION_HUGEPAGE]: 'hugepage',
    [SchemeAction.SCHEME_ACTION_NOHUGEPAGE]: 'nohugepage',
    [SchemeAction.SCHEME_ACTION_STAT]: 'stat',
    [SchemeAction.SCHEME_ACTION_COLLAPSE]: 'collapse',
  });

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

/** The kernel's damos_quota (without goals): 0 means "no such limit". */
export interface QuotaSpec {
  ms: number;
  bytes: number;
  resetIntervalMs: number;
  weightSizePermil: number;
  weightNrAccessesPermil: number;
  weightAgePermil: number;
}

export type WatermarkMetricName = 'none' | 'free_mem_rate';

/** The kernel's damos_watermarks. */
export interface WatermarksSpec {
  metric: WatermarkMetricName;
  intervalUs: number;
  highPermil: number;
  midPermil: number;
  lowPermil: number;
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

/** Thrown for a scheme message the engine cannot represent (the API lets none through). */
export class SchemeSpecError extends Error {
  constructor(
    /** The field as users write it: "schemes[1].action". */
    readonly field: string,
    readonly detail: string,
  ) {
    super(`${field}: ${detail}`);
    this.name = 'SchemeSpecError';
  }
}

function num(v: bigint | number | undefined, unset: number): number {
  if (v === undefined) return unset;
  const n = Number(v);
  // Past 2^53 a bound means "no bound" for every region a process can have.
  return Number.isSafeInteger(n) ? n : Number.MAX_SAFE_INTEGER;
}

/** The engine's form of `s` (Attributes.schemes[index]). */
export function schemeFromMessage(s: Scheme, index = 0): SchemeSpec {
  const action = SCHEME_ACTION_NAMES[s.action as keyof typeof SCHEME_ACTION_NAMES];
  if (action === undefined) throw new SchemeSpecError(`schemes[${index}].action`, `${SchemeAction[s.action] ?? s.action} is not an action`);
  const p = s.accessPattern;
  const pattern: AccessPatternSpec = {
    minSizeBytes: num(p?.minSizeBytes, 0),
    maxSizeBytes: num(p?.maxSizeBytes, Infinity),
    minNrAccesses: num(p?.minNrAccesses, 0),
    maxNrAccesses: num(p?.maxNrAccesses, Infinity),
    minAge: num(p?.minAge, 0),
    maxAge: num(p?.maxAge, Infinity),
  };
  const q = s.quotas;
  const quota: QuotaSpec | null =
    q === undefined
      ? null
      : {
          ms: num(q.ms, 0),
          bytes: num(q.bytes, 0),
          resetIntervalMs: num(q.resetIntervalMs, 0),
          weightSizePermil: q.weightSizePermil,
          weightNrAccessesPermil: q.weightNrAccessesPermil,
          weightAgePermil: q.weightAgePermil,
        };
  const w = s.watermarks;
  let watermarks: WatermarksSpec | null = null;
  if (w !== undefined && w.metric === WatermarkMetric.WATERMARK_METRIC_FREE_MEM_RATE) {
    watermarks = { metric: 'free_mem_rate', intervalUs: num(w.intervalUs, 0), highPermil: w.highPermil, midPermil: w.midPermil, lowPermil: w.lowPermil };
  } else if (w !== undefined && w.metric !== WatermarkMetric.WATERMARK_METRIC_NONE && w.metric !== WatermarkMetric.WATERMARK_METRIC_UNSPECIFIED) {
    throw new SchemeSpecError(`schemes[${index}].watermarks.metric`, `${w.metric} is not a metric`);
  }
  return { pattern, action, quota, watermarks, applyIntervalUs: num(s.applyIntervalUs, 0) };
}

/** Whether `q` limits anything (the kernel's "quota->ms || quota->sz"). */
export function hasQuota(q: QuotaSpec | null): q is QuotaSpec {
  return q !== null && (q.ms > 0 || q.bytes > 0);
}
