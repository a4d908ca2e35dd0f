// What a session's schemes (DAMOS: DAMON-based operation schemes) may be: the one check
// the controller's API (attrs.schemes, schemes_text), its bucket and the agents' ApplySession
// go through (common/session-schema.ts calls it with the attributes), the vocabulary of
// actions and watermark metrics, and which operations can do which action. The text form
// is common/scheme-text.ts; docs/schemes.md describes both for users.
//
// Every field is bounded, and refused with its name and the bound (INVALID_ARGUMENT):
// - access pattern: min <= max for size, nr_accesses and age; nr_accesses within what one
//   aggregation can count (aggregation / sampling interval); an unset max is no bound (the
//   kernel's ULONG_MAX / UINT_MAX, as its text form writes it, means the same);
// - an action, one of SCHEME_ACTIONS;
// - quotas: reset_interval_ms when ms or bytes is set; weights at most 1000 permil;
// - watermarks: a metric; with free_mem_rate, interval_us > 0 and 1000 >= high >= mid >= low;
// - apply_interval_us: 0 (every aggregation) or at least one aggregation interval;
// - at most MAX_SCHEMES_PER_SESSION schemes.
// Unset and empty parts are normalized (quotas with neither ms nor bytes, watermarks with
// metric none: none), so that the message and the text form round-trip.
import type { OpsName } from './session-schema.js';
import { excerpt } from './log.js';
import { MAX_INTERVAL_US, SchemaError } from './schema-base.js';
import {
  SchemeAction,
  WatermarkMetric,
  type Scheme as ProtoScheme,
  type SchemeQuotas as ProtoQuotas,
  type SchemeWatermarks as ProtoWatermarks,
} from '../gen/damon/v1/damon.js';

// ---- limits ---------------------------------------------------------------------------

/** Most schemes one session may have. */
export const MAX_SCHEMES_PER_SESSION = 32;
/** Most bytes of a schemes text (comments included). */
export const MAX_SCHEMES_TEXT_BYTES = 65_536;
/** Largest region size or bytes quota a scheme may name (2^53 - 1: exact in JSON and JavaScript). */
export const MAX_SCHEME_BYTES = Number.MAX_SAFE_INTEGER;
/** Longest time quota and quota reset interval, milliseconds: one day. */
export const MAX_QUOTA_MS = 86_400_000;
/** Largest weight and watermark: permil. */
export const MAX_PERMIL = 1000;
/**
 * Agents refresh the scheme statistics they report at most this often: the heartbeat's
 * digest covers them (common/observed-digest.ts), so each refresh costs one GetState.
 */
export const SCHEME_STATS_REPORT_MS = 5_000;
/** The kernel's "no bound" for sizes (ULONG_MAX on 64-bit) and for nr_accesses and age (UINT_MAX). */
export const KERNEL_ULONG_MAX = 18_446_744_073_709_551_615n;
export const KERNEL_UINT_MAX = 4_294_967_295;

// ---- vocabulary -----------------------------------------------------------------------

/** Actions as users and the kernel's sysfs name them. */
export const SchemeActions = {
  Willneed: 'willneed',
  Cold: 'cold',
  Pageout: 'pageout',
  Hugepage: 'hugepage',
  Nohugepage: 'nohugepage',
  Stat: 'stat',
  Collapse: 'collapse',
} as const;
export type SchemeActionName = (typeof SchemeActions)[keyof typeof SchemeActions];
export const SCHEME_ACTIONS: readonly SchemeActionName[] = Object.values(SchemeActions);

const ACTION_OF_PROTO: ReadonlyMap<SchemeAction, SchemeActionName> = new Map([
  [SchemeAction.SCHEME_ACTION_WILLNEED, SchemeActions.Willneed],
  [SchemeAction.SCHEME_ACTION_COLD, SchemeActions.Cold],
  [SchemeAction.SCHEME_ACTION_PAGEOUT, SchemeActions.Pageout],
  [SchemeAction.SCHEME_ACTION_HUGEPAGE, SchemeActions.Hugepage],
  [SchemeAction.SCHEME_ACTION_NOHUGEPAGE, SchemeActions.Nohugepage],
  [SchemeAction.SCHEME_ACTION_STAT, SchemeActions.Stat],
  [SchemeAction.SCHEME_ACTION_COLLAPSE, SchemeActions.Collapse],
]);
const PROTO_OF_ACTION = new Map([...ACTION_OF_PROTO].map(([p, n]) => [n, p]));

/** The API's enum value of an action. */
export function protoAction(name: SchemeActionName): SchemeAction {
  return PROTO_OF_ACTION.get(name)!;
}

/** An action's name from the API's enum; undefined for UNSPECIFIED and unknown values. */
export function actionName(a: SchemeAction): SchemeActionName | undefined {
  return ACTION_OF_PROTO.get(a);
}

/** Watermark metrics as the kernel's sysfs names them. */
export const WatermarkMetrics = { None: 'none', FreeMemRate: 'free_mem_rate' } as const;
export type WatermarkMetricName = (typeof WatermarkMetrics)[keyof typeof WatermarkMetrics];

/**
 * Which operations can do which action: the kernel's DAMOS (kdamond) has no collapse;
 * process_madvise(2) (page_idle, and synthetic, which simulates it) takes only cold,
 * pageout, willneed and collapse. stat only counts, everywhere.
 */
export const ACTIONS_OF_OPERATIONS: Readonly<Record<OpsName, readonly SchemeActionName[]>> = {
  kdamond: ['willneed', 'cold', 'pageout', 'hugepage', 'nohugepage', 'stat'],
  page_idle: ['willneed', 'cold', 'pageout', 'collapse', 'stat'],
  synthetic: ['willneed', 'cold', 'pageout', 'collapse', 'stat'],
};

// ---- schemes as a session holds them ----------------------------------------------------

/** Regions a scheme applies to; every bound inclusive, null = no bound. */
export interface AccessPatternSpec {
  minSizeBytes: number;
  maxSizeBytes: number | null;
  minNrAccesses: number;
  maxNrAccesses: number | null;
  /** In aggregation intervals. */
  minAge: number;
  maxAge: number | null;
}

/** A quota (at least one of ms and bytes set) and the priority weights. */
export interface QuotaSpec {
  ms: number;
  bytes: number;
  resetIntervalMs: number;
  weightSizePermil: number;
  weightNrAccessesPermil: number;
  weightAgePermil: number;
}

/** Watermarks of a metric other than none. */
export interface WatermarksSpec {
  metric: WatermarkMetricName;
  intervalUs: number;
  highPermil: number;
  midPermil: number;
  lowPermil: number;
}

/** One checked scheme, JSON-safe (the session bucket stores it as is). */
export interface SchemeSpec {
  pattern: AccessPatternSpec;
  action: SchemeActionName;
  /** null: no quota. */
  quotas: QuotaSpec | null;
  /** null: always active. */
  watermarks: WatermarksSpec | null;
  /** 0: every aggregation interval. */
  applyIntervalUs: number;
}

function fail(field: string, detail: string): never {
  throw new SchemaError(field, detail);
}

function atMost(field: string, v: bigint | number, max: bigint | number): number {
  if (BigInt(v) > BigInt(max)) fail(field, `too large: at most ${max}, got ${v}`);
  return Number(v);
}

/** An unset max, or the kernel's "no bound", is null; anything else is checked against min and `max`. */
function upperBound(field: string, v: bigint | number | undefined, kernelMax: bigint | number, min: number, minField: string, max: number): number | null {
  if (v === undefined || BigInt(v) === BigInt(kernelMax)) return null;
  const n = atMost(field, v, max);
  if (n < min) fail(field, `must not be below ${minField} (${n} < ${min})`);
  return n;
}

function patternFromMessage(m: ProtoScheme['accessPattern'], maxNr: number): AccessPatternSpec {
  const p = m ?? { minSizeBytes: 0n, minNrAccesses: 0, minAge: 0 };
  const minSizeBytes = atMost('access_pattern.min_size_bytes', p.minSizeBytes, MAX_SCHEME_BYTES);
  const maxSizeBytes = upperBound('access_pattern.max_size_bytes', p.maxSizeBytes, KERNEL_ULONG_MAX, minSizeBytes, 'min_size_bytes', MAX_SCHEME_BYTES);
  if (p.minNrAccesses > maxNr) {
    fail('access_pattern.min_nr_accesses', `${p.minNrAccesses} can never match: an aggregation counts at most ${maxNr} accesses (aggregation / sampling interval)`);
  }
  const maxNrAccesses =
    p.maxNrAccesses !== undefined && p.maxNrAccesses !== KERNEL_UINT_MAX && p.maxNrAccesses > maxNr
      ? fail('access_pattern.max_nr_accesses', `${p.maxNrAccesses} exceeds the ${maxNr} accesses an aggregation counts at most (aggregation / sampling interval); leave it unset for no bound`)
      : upperBound('access_pattern.max_nr_accesses', p.maxNrAccesses, KERNEL_UINT_MAX, p.minNrAccesses, 'min_nr_accesses', maxNr);
  const maxAge = upperBound('access_pattern.max_age', p.maxAge, KERNEL_UINT_MAX, p.minAge, 'min_age', KERNEL_UINT_MAX - 1);
  return { minSizeBytes, maxSizeBytes, minNrAccesses: p.minNrAccesses, maxNrAccesses, minAge: p.minAge, maxAge };
}

function quotasFromMessage(q: ProtoQuotas | undefined): QuotaSpec | null {
  if (q === undefined) return null;
  const ms = atMost('quotas.ms', q.ms, MAX_QUOTA_MS);
  const bytes = atMost('quotas.bytes', q.bytes, MAX_SCHEME_BYTES);
  const resetIntervalMs = atMost('quotas.reset_interval_ms', q.resetIntervalMs, MAX_QUOTA_MS);
  const weights = {
    weightSizePermil: atMost('quotas.weight_size_permil', q.weightSizePermil, MAX_PERMIL),
    weightNrAccessesPermil: atMost('quotas.weight_nr_accesses_permil', q.weightNrAccessesPermil, MAX_PERMIL),
    weightAgePermil: atMost('quotas.weight_age_permil', q.weightAgePermil, MAX_PERMIL),
  };
  if (ms === 0 && bytes === 0) return null; // no quota: nothing to charge, nothing to prioritise
  if (resetIntervalMs === 0) fail('quotas.reset_interval_ms', 'required (> 0) when ms or bytes is set: the window the quota is charged over');
  return { ms, bytes, resetIntervalMs, ...weights };
}

function watermarksFromMessage(w: ProtoWatermarks | undefined): WatermarksSpec | null {
  if (w === undefined || w.metric === WatermarkMetric.WATERMARK_METRIC_NONE) return null;
  if (w.metric !== WatermarkMetric.WATERMARK_METRIC_FREE_MEM_RATE) {
    fail('watermarks.metric', `required: ${WatermarkMetrics.None} or ${WatermarkMetrics.FreeMemRate} (leave watermarks unset to be always active), got ${w.metric}`);
  }
  const intervalUs = atMost('watermarks.interval_us', w.intervalUs, MAX_INTERVAL_US);
  if (intervalUs === 0) fail('watermarks.interval_us', 'must be positive: how often the metric is checked');
  const highPermil = atMost('watermarks.high_permil', w.highPermil, MAX_PERMIL);
  const midPermil = atMost('watermarks.mid_permil', w.midPermil, MAX_PERMIL);
  const lowPermil = atMost('watermarks.low_permil', w.lowPermil, MAX_PERMIL);
  if (midPermil > highPermil) fail('watermarks.mid_permil', `must not exceed high_permil (${midPermil} > ${highPermil})`);
  if (lowPermil > midPermil) fail('watermarks.low_permil', `must not exceed mid_permil (${lowPermil} > ${midPermil})`);
  return { metric: WatermarkMetrics.FreeMemRate, intervalUs, highPermil, midPermil, lowPermil };
}

function schemeFromMessage(s: ProtoScheme, a: { samplingUs: number; aggregationUs: number }): SchemeSpec {
  const action = actionName(s.action);
  if (action === undefined) fail('action', `required: one of ${SCHEME_ACTIONS.join(', ')}, got ${s.action}`);
  const applyIntervalUs = atMost('apply_interval_us', s.applyIntervalUs, MAX_INTERVAL_US);
  if (applyIntervalUs !== 0 && applyIntervalUs < a.aggregationUs) {
    fail('apply_interval_us', `must be 0 (every aggregation) or at least the aggregation interval (${applyIntervalUs} < ${a.aggregationUs})`);
  }
  return {
    pattern: patternFromMessage(s.accessPattern, Math.floor(a.aggregationUs / a.samplingUs)),
    action,
    quotas: quotasFromMessage(s.quotas),
    watermarks: watermarksFromMessage(s.watermarks),
    applyIntervalUs,
  };
}

/**
 * Checks the API's schemes against the attributes they run with; throws SchemaError with
 * fields as "schemes[2].access_pattern.max_age".
 */
export function schemesFromMessage(schemes: readonly ProtoScheme[], a: { samplingUs: number; aggregationUs: number }): SchemeSpec[] {
  if (schemes.length > MAX_SCHEMES_PER_SESSION) {
    fail('schemes', `${schemes.length} schemes; a session has at most ${MAX_SCHEMES_PER_SESSION} (MAX_SCHEMES_PER_SESSION)`);
  }
  return schemes.map((s, i) => {
    try {
      return schemeFromMessage(s, a);
    } catch (err) {
      if (err instanceof SchemaError) throw err.under(`schemes[${i}].`);
      throw err;
    }
  });
}

/** A scheme as the API's message. */
export function toProtoScheme(s: SchemeSpec): ProtoScheme {
  const p = s.pattern;
  return {
    accessPattern: {
      minSizeBytes: BigInt(p.minSizeBytes),
      maxSizeBytes: p.maxSizeBytes === null ? undefined : BigInt(p.maxSizeBytes),
      minNrAccesses: p.minNrAccesses,
      maxNrAccesses: p.maxNrAccesses ?? undefined,
      minAge: p.minAge,
      maxAge: p.maxAge ?? undefined,
    },
    action: protoAction(s.action),
    quotas: s.quotas
      ? {
          ms: BigInt(s.quotas.ms),
          bytes: BigInt(s.quotas.bytes),
          resetIntervalMs: BigInt(s.quotas.resetIntervalMs),
          weightSizePermil: s.quotas.weightSizePermil,
          weightNrAccessesPermil: s.quotas.weightNrAccessesPermil,
          weightAgePermil: s.quotas.weightAgePermil,
        }
      : undefined,
    watermarks: s.watermarks
      ? {
          metric: WatermarkMetric.WATERMARK_METRIC_FREE_MEM_RATE,
          intervalUs: BigInt(s.watermarks.intervalUs),
          highPermil: s.watermarks.highPermil,
          midPermil: s.watermarks.midPermil,
          lowPermil: s.watermarks.lowPermil,
        }
      : undefined,
    applyIntervalUs: BigInt(s.applyIntervalUs),
  };
}

// ---- actions and operations ---------------------------------------------------------------

/** The schemes (index, action) that `operations` cannot apply. */
export function unsupportedActions(schemes: readonly SchemeSpec[], operations: OpsName): { index: number; action: SchemeActionName }[] {
  const can = ACTIONS_OF_OPERATIONS[operations];
  return schemes.flatMap((s, index) => (can.includes(s.action) ? [] : [{ index, action: s.action }]));
}

/** Why `operations` cannot run these schemes, or undefined when it can. */
export function schemesRefusal(schemes: readonly SchemeSpec[], operations: OpsName): string | undefined {
  const no = unsupportedActions(schemes, operations);
  if (no.length === 0) return undefined;
  const which = no.map((n) => `schemes[${n.index}] ${n.action}`).join(', ');
  return `operations "${operations}" cannot apply ${which} (it applies ${ACTIONS_OF_OPERATIONS[operations].join(', ')})`;
}

/**
 * Refuses schemes the session's explicit operations cannot apply (INVALID_ARGUMENT, field
 * "schemes[i].action"). With operations "" each agent picks operations that can, or fails
 * the session's targets on its host saying why.
 */
export function checkSchemesFitOperations(schemes: readonly SchemeSpec[], operations: string): void {
  if (operations === '' || !(operations in ACTIONS_OF_OPERATIONS)) return;
  const no = unsupportedActions(schemes, operations as OpsName);
  if (no.length === 0) return;
  fail(`schemes[${no[0].index}].action`, excerpt(schemesRefusal(schemes, operations as OpsName)!, 300));
}
