// A scheme's quota over time (the kernel's damos_quota state, mm/damon/core.c): the
// effective size quota of the current charge window, what was charged in it, the
// measured throughput of the action that turns a time quota into bytes, and the score
// threshold that keeps the highest-priority regions within the quota.
//
// One deliberate difference from Linux 6.12: the kernel computes the effective quota only
// when a charge window ends, so its first window has no limit at all; here the first
// window is already held to it (with the kernel's starting throughput for a time quota).
import type { Target } from '../engine/region.js';
import { matchesPattern } from './pattern.js';
import { MIN_REGION, type QuotaSpec, type SchemeSpec } from './scheme.js';
import { MAX_SCORE, schemeScore, type ScoreIntervals } from './score.js';

/** Bytes per millisecond assumed before an action was ever measured (the kernel's PAGE_SIZE * 1024). */
export const INITIAL_THROUGHPUT_BYTES_PER_MS = 4096 * 1024;

/**
 * The effective size quota (damos_set_effective_quota): a time quota in bytes at the
 * throughput measured so far (bytes charged in past windows over the time their actions
 * took), at least one page; the size quota when smaller or alone.
 */
export function effectiveQuotaBytes(q: Pick<QuotaSpec, 'ms' | 'bytes'>, totalChargedBytes: number, totalChargedNs: number): number {
  if (q.ms === 0) return q.bytes;
  const throughput = totalChargedNs > 0 ? Math.floor((totalChargedBytes * 1_000_000) / totalChargedNs) : INITIAL_THROUGHPUT_BYTES_PER_MS;
  let esz = Math.max(MIN_REGION, throughput * q.ms);
  if (q.bytes > 0 && q.bytes < esz) esz = q.bytes;
  return esz;
}

/**
 * The lowest score a region may have for the scheme to act on it this time
 * (damos_adjust_quota): going down from the highest score, the scores whose matching
 * regions' bytes first add up to the quota. `histogram[score]` is those bytes.
 */
export function minScoreFor(histogram: readonly number[], maxScore: number, quotaBytes: number): number {
  let cumulated = 0;
  let score = maxScore;
  for (;;) {
    cumulated += histogram[score] ?? 0;
    if (cumulated >= quotaBytes || score === 0) return score;
    score--;
  }
}

/** Bytes of the matching regions of every target, by score (0..MAX_SCORE), and the highest score seen. */
export function scoreHistogram(targets: readonly Target[], s: SchemeSpec, q: QuotaSpec, iv: ScoreIntervals): { histogram: number[]; maxScore: number } {
  const histogram = new Array<number>(MAX_SCORE + 1).fill(0);
  let maxScore = 0;
  for (const t of targets) {
    for (const r of t.regions) {
      if (!matchesPattern(r, s.pattern)) continue;
      const score = schemeScore(s.action, r, q, iv);
      histogram[score] += r.end - r.start;
      if (score > maxScore) maxScore = score;
    }
  }
  return { histogram, maxScore };
}

export class QuotaState {
  /** Effective size quota of this window, bytes; 0 = no limit. */
  esz = 0;
  /** Bytes charged in past windows, and the time their actions took (all windows). */
  totalChargedBytes = 0;
  totalChargedNs = 0;
  /** Bytes charged in this window. */
  chargedBytes = 0;
  /** Start of this window, monitoring microseconds; null before the first. */
  chargedFromUs: number | null = null;
  /** Where the last window ran out: the next one starts after it (damos_skip_charged_region). */
  chargeTargetFrom: number | null = null;
  chargeAddrFrom = 0;
  /** Regions scoring below this are left alone while the quota is effective. */
  minScore = 0;
  /** Windows that ended with the quota used up. */
  qtExceeds = 0;

  constructor(readonly spec: QuotaSpec) {}

  /** Whether this window's quota is used up. */
  get exhausted(): boolean {
    return this.esz > 0 && this.chargedBytes >= this.esz;
  }

  /**
   * Before an apply (damos_adjust_quota): starts a new charge window when the last one
   * ended (counting a used-up quota as exceeded), drops a stale resume point, and sets
   * the score threshold from the histogram of the matching regions.
   */
  adjust(nowUs: number, targets: readonly Target[], s: SchemeSpec, iv: ScoreIntervals): void {
    if (this.chargedFromUs === null) {
      this.chargedFromUs = nowUs;
      this.esz = effectiveQuotaBytes(this.spec, this.totalChargedBytes, this.totalChargedNs);
    } else if (!(nowUs >= this.chargedFromUs && nowUs < this.chargedFromUs + this.spec.resetIntervalMs * 1000)) {
      if (this.exhausted) this.qtExceeds++;
      this.totalChargedBytes += this.chargedBytes;
      this.chargedFromUs = nowUs;
      this.chargedBytes = 0;
      this.esz = effectiveQuotaBytes(this.spec, this.totalChargedBytes, this.totalChargedNs);
    }
    if (this.chargeTargetFrom !== null) {
      const t = targets.find((x) => x.id === this.chargeTargetFrom);
      if (t === undefined || t.regions.length === 0) {
        this.chargeTargetFrom = null;
        this.chargeAddrFrom = 0;
      }
    }
    const { histogram, maxScore } = scoreHistogram(targets, s, this.spec, iv);
    this.minScore = minScoreFor(histogram, maxScore, this.esz);
  }

  /** An action on `bytes` that took `ns`, ending at `endAddr` of target `targetId`. */
  charge(bytes: number, ns: number, targetId: number, endAddr: number): void {
    this.totalChargedNs += ns;
    this.chargedBytes += bytes;
    if (this.exhausted) {
      this.chargeTargetFrom = targetId;
      this.chargeAddrFrom = endAddr;
    }
  }
}
