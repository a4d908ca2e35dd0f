// Applying a context's schemes (the kernel's kdamond_apply_schemes, mm/damon/core.c,
// Linux 6.12): once per aggregation, after the merge and before nr_accesses are reset, the
// engine calls apply(). Each scheme due (its apply interval passed) and active (its
// watermarks) adjusts its quota; then every region of every target, in address order, is
// offered to every scheme in the order given: a scheme whose quota is used up, a region
// already charged in the previous window, a region off the pattern or below the quota's
// score threshold is skipped; otherwise the region is cut at what is left of the quota,
// the action is applied through the operations' actuator, timed (the time quota's
// throughput), charged, counted, and the region's age restarts (except for stat).
import { maxNrAccesses } from '../engine/attrs.js';
import type { Intervals } from '../engine/monitor.js';
import type { Region, Target } from '../engine/region.js';
import { ActionError, type SchemeActuator } from './actuator.js';
import { matchesPattern } from './pattern.js';
import { QuotaState } from './quota.js';
import { MIN_REGION, hasQuota, type SchemeSpec } from './scheme.js';
import { schemeScore, type ScoreIntervals } from './score.js';
import { countTry, toSchemeStats, zeroCounters, type SchemeCounters } from './stats.js';
import type { SchemeStats } from '../../gen/damon/v1/damon.js';
import { WatermarkState, freeMemRatePermil } from './watermarks.js';

/** What the engine reads of the monitoring context at an apply. */
export interface SchemeView {
  readonly targets: readonly Target[];
  /** Sampling intervals passed since the context started. */
  readonly passedSamples: number;
  /** Monitoring time, microseconds. */
  nowUs(): number;
  /** The intervals now (tuned ones included). */
  intervals(): Intervals;
}

/** A scheme's action the operations cannot apply: the session cannot run with it here. */
export class SchemeRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemeRefusedError';
  }
}

export interface SchemesEngineOptions {
  schemes: readonly SchemeSpec[];
  actuator: SchemeActuator;
  /** The sampling interval at start (the first apply is due one apply interval in). */
  samplingUs: number;
  aggregationUs: number;
  /** Told once per distinct refusal (target, action, errno); monitoring goes on. */
  onActionError?: (message: string) => void;
  /** Free memory rate of the host, permil (watermarks); /proc/meminfo by default. */
  freeMemRate?: () => number;
  /** Monotonic clock that times actions, nanoseconds (the time quota's throughput). */
  actionClockNs?: () => number;
}

interface SchemeRun {
  spec: SchemeSpec;
  quota: QuotaState | null;
  wmarks: WatermarkState;
  nextApplySample: number;
  counters: SchemeCounters;
}

/** A refusal of one kind, counted. */
export interface ActionErrorCount {
  targetId: number;
  action: string;
  code: string;
  count: number;
  /** The first message. */
  message: string;
}

function hrNs(): number {
  return Number(process.hrtime.bigint());
}

/** Splits regions[i] at `size` bytes from its start; the second part follows it. */
function splitRegionAt(regions: Region[], i: number, size: number): void {
  const r = regions[i];
  const tail: Region = { ...r, start: r.start + size, samplingAddr: -1 };
  r.end = r.start + size;
  if (r.samplingAddr >= r.end) r.samplingAddr = -1;
  regions.splice(i + 1, 0, tail);
}

export class SchemesEngine {
  private readonly runs: SchemeRun[];
  private readonly actuator: SchemeActuator;
  private readonly onActionError: (message: string) => void;
  private readonly freeMemRate: () => number;
  private readonly clockNs: () => number;
  private readonly errors = new Map<string, ActionErrorCount>();
  private readonly seenTargets = new Set<number>();

  /** Throws SchemeRefusedError when the actuator cannot apply one of the actions. */
  constructor(o: SchemesEngineOptions) {
    this.actuator = o.actuator;
    o.schemes.forEach((s, i) => {
      if (s.action === 'stat') return;
      const why = o.actuator.refusal(s.action);
      if (why !== null) throw new SchemeRefusedError(`schemes[${i}] (${s.action}): ${why}`);
    });
    this.onActionError = o.onActionError ?? (() => {});
    this.freeMemRate = o.freeMemRate ?? (() => freeMemRatePermil());
    this.clockNs = o.actionClockNs ?? hrNs;
    this.runs = o.schemes.map((spec) => ({
      spec,
      quota: hasQuota(spec.quota) ? new QuotaState(spec.quota) : null,
      wmarks: new WatermarkState(spec.watermarks),
      nextApplySample: Math.floor((spec.applyIntervalUs || o.aggregationUs) / o.samplingUs),
      counters: zeroCounters(),
    }));
  }

  /** The schemes' statistics, by index. */
  stats(): SchemeStats[] {
    return this.runs.map((r, i) => toSchemeStats(i, { ...r.counters, qtExceeds: r.quota?.qtExceeds ?? 0 }, r.wmarks.activated));
  }

  /** Refusals so far, one entry per (target, action, errno). */
  actionErrors(): ActionErrorCount[] {
    return [...this.errors.values()].map((e) => ({ ...e }));
  }

  /** One apply, at the end of an aggregation (after the merge, before the reset). */
  apply(view: SchemeView): void {
    this.releaseGone(view.targets);
    const now = view.nowUs();
    const passed = view.passedSamples;
    const iv = view.intervals();
    const scoreIv: ScoreIntervals = { maxNrAccesses: maxNrAccesses(iv), aggregationUs: iv.aggregationUs };
    let metric: number | undefined;
    const readMetric = (): number => (metric ??= this.freeMemRate());
    let any = false;
    for (const run of this.runs) {
      if (passed < run.nextApplySample) continue;
      if (!run.wmarks.check(now, readMetric)) continue;
      any = true;
      run.quota?.adjust(now, view.targets, run.spec, scoreIv);
    }
    if (!any) return;
    for (const t of view.targets) {
      const regions = t.regions as Region[];
      // Splits insert the rest of a region after it: the loop reaches it next.
      for (let i = 0; i < regions.length; i++) {
        for (const run of this.runs) {
          if (passed < run.nextApplySample || !run.wmarks.activated) continue;
          if (run.quota?.exhausted) continue;
          if (this.skipCharged(t, regions, i, run)) continue;
          if (!this.validTarget(regions[i], run, scoreIv)) continue;
          this.applyOne(t, regions, i, run);
        }
      }
    }
    const samplingUs = iv.samplingUs > 0 ? iv.samplingUs : 1;
    for (const run of this.runs) {
      if (passed < run.nextApplySample) continue;
      run.nextApplySample = passed + Math.floor((run.spec.applyIntervalUs || iv.aggregationUs) / samplingUs);
    }
  }

  /** The actuator lets go of targets that left the context. */
  private releaseGone(targets: readonly Target[]): void {
    const live = new Set(targets.map((t) => t.id));
    for (const id of this.seenTargets) {
      if (live.has(id)) continue;
      this.seenTargets.delete(id);
      this.actuator.release(id);
    }
    for (const id of live) this.seenTargets.add(id);
  }

  /** damos_valid_target: the pattern, and the quota's score threshold while a quota holds. */
  private validTarget(r: Region, run: SchemeRun, iv: ScoreIntervals): boolean {
    if (!matchesPattern(r, run.spec.pattern)) return false;
    const q = run.quota;
    if (q === null || q.esz === 0) return true;
    return schemeScore(run.spec.action, r, q.spec, iv) >= q.minScore;
  }

  /**
   * damos_skip_charged_region: after a window ran out at (target, address), the next
   * window goes on from there; the part of a region before it is cut off and skipped.
   */
  private skipCharged(t: Target, regions: Region[], i: number, run: SchemeRun): boolean {
    const q = run.quota;
    if (q === null || q.chargeTargetFrom === null) return false;
    if (t.id !== q.chargeTargetFrom) return true;
    const r = regions[i];
    let skip = false;
    if (q.chargeAddrFrom > 0 && r.end <= q.chargeAddrFrom) {
      skip = true;
    } else if (q.chargeAddrFrom > 0 && r.start < q.chargeAddrFrom) {
      let szToSkip = Math.floor((q.chargeAddrFrom - r.start) / MIN_REGION) * MIN_REGION;
      if (szToSkip === 0) szToSkip = r.end - r.start <= MIN_REGION ? 0 : MIN_REGION;
      if (szToSkip > 0) splitRegionAt(regions, i, szToSkip);
      skip = true;
    }
    if (i === regions.length - 1) {
      q.chargeTargetFrom = null;
      q.chargeAddrFrom = 0;
    }
    return skip;
  }

  /** damos_apply_scheme. */
  private applyOne(t: Target, regions: Region[], i: number, run: SchemeRun): void {
    const q = run.quota;
    let sz = regions[i].end - regions[i].start;
    if (q !== null && q.esz > 0 && q.chargedBytes + sz > q.esz) {
      sz = Math.floor((q.esz - q.chargedBytes) / MIN_REGION) * MIN_REGION;
      if (sz === 0) {
        countTry(run.counters, 0, 0);
        return;
      }
      splitRegionAt(regions, i, sz);
    }
    const r = regions[i];
    sz = r.end - r.start;
    let applied = 0;
    const t0 = this.clockNs();
    if (run.spec.action !== 'stat') {
      try {
        applied = this.actuator.apply(t.id, r.start, r.end, run.spec.action);
      } catch (e) {
        if (!(e instanceof ActionError)) throw e;
        this.refused(e, run.spec.action);
      }
    }
    const ns = Math.max(0, this.clockNs() - t0);
    q?.charge(sz, ns, t.id, r.end);
    if (run.spec.action !== 'stat') r.age = 0;
    countTry(run.counters, sz, applied);
  }

  private refused(e: ActionError, action: string): void {
    const key = `${e.targetId}\0${action}\0${e.code}`;
    const known = this.errors.get(key);
    if (known) {
      known.count++;
      return;
    }
    this.errors.set(key, { targetId: e.targetId, action, code: e.code, count: 1, message: e.message });
    // A process that exited is the process watch's to report.
    if (e.code !== 'ESRCH') {
      this.onActionError(`scheme action ${action} on target ${e.targetId}: ${e.message} (counted, told once; monitoring goes on)`);
    }
  }
}
