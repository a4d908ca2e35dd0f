// The proactive reclaim scenario of the guest: the workload (a small hot set in a large
// anonymous mapping, every page touched once so all of it is resident) and the one scheme
// every way applies (page out what nobody accessed for PAGEOUT_MIN_AGE_MS), in the forms
// each way takes. One home for the numbers that reclaim-run.ts, reclaim.test.ts and
// bench/reclaim.ts share.
import { DEFAULT_ATTRS } from '../../agent/engine/attrs.js';
import { KERNEL_UINT_MAX, KERNEL_ULONG_MAX, type SchemeSpec } from '../../common/scheme-schema.js';
import { schemesFromText } from '../../common/scheme-text.js';

const MiB = 2 ** 20;

/**
 * baseline: no monitor (the throughput reference); kdamond: the kernel's own DAMOS (the
 * agent's kdamond operations hand the scheme over); engine: the agent's engine with the
 * page_idle operations applying the scheme through process_madvise; optimizer: records on
 * NATS -> examples/optimizer.ts -> RequestAction -> the agent's process_madvise.
 */
export const RECLAIM_WAYS = ['baseline', 'kdamond', 'engine', 'optimizer'] as const;
export type ReclaimWay = (typeof RECLAIM_WAYS)[number];

export const WORKLOAD = Object.freeze({
  sizeBytes: 256 * MiB,
  hotOffsetBytes: 120 * MiB,
  hotBytes: 16 * MiB,
  /** Sleep after each pass over the hot set. */
  pauseUs: 1000,
  /** How often the workload reports its hot loop's throughput. */
  reportMs: 1000,
});

/** Cold for this long before it is paged out. */
export const PAGEOUT_MIN_AGE_MS = 2000;

/**
 * The workload's arguments: small pages (a huge page would be split on the way out, and
 * the hot set's edges would not fall on 2 MiB), the rig's default TLB flush every 5 ms so
 * that the Accessed bits a monitor clears are set again by the next touch, and 1 ms of
 * sleep after each pass over the hot set, as the rig's other tests do: a busy loop holds
 * one of the guest's two emulated CPUs and starves the monitor on the other, which then
 * misses accesses (test/guest/README.md) — measured here, both the kernel's DAMOS and the
 * engine then paged the whole hot set out, and the loop faulted it back, every few seconds.
 */
export function workloadArgs(): string[] {
  const m = (b: number) => `${b / MiB}M`;
  return [
    '--size', m(WORKLOAD.sizeBytes),
    '--hot', `${m(WORKLOAD.hotOffsetBytes)}+${m(WORKLOAD.hotBytes)}`,
    '--thp', 'nohugepage',
    '--pause-us', String(WORKLOAD.pauseUs),
    '--report-ms', String(WORKLOAD.reportMs),
  ];
}

/** Ages are counted in aggregation intervals. */
const minAgeAggregations = Math.ceil((PAGEOUT_MIN_AGE_MS * 1000) / DEFAULT_ATTRS.aggregationUs);

/**
 * The scheme in DAMON's text form (common/scheme-text.ts): any size, no access in the last
 * aggregation, at least PAGEOUT_MIN_AGE_MS old (in aggregations of DAMON's default 100 ms):
 * page out. No quota, no watermarks.
 */
export const RECLAIM_SCHEME_TEXT = `0 ${KERNEL_ULONG_MAX} 0 0 ${minAgeAggregations} ${KERNEL_UINT_MAX} pageout 0 0 0 0 0 0 none 0 0 0 0`;

export const RECLAIM_SCHEME = Object.freeze({ text: RECLAIM_SCHEME_TEXT, minAgeAggregations, minAgeMs: PAGEOUT_MIN_AGE_MS });

/** The scheme as the engines take it. */
export function reclaimSchemes(): SchemeSpec[] {
  return schemesFromText(RECLAIM_SCHEME_TEXT, DEFAULT_ATTRS);
}
