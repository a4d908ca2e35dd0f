// The monitoring context: DAMON's kdamond loop (mm/damon/core.c kdamond_fn) for a set of
// targets, driven by operations it knows only through the Operations interface.
//
// API (other modules rely on these names):
//   const ctx = new DamonContext({ attrs, targetIds, ops, random?, clock?, adjust? });
//   ctx.on('aggregate', (record: AggregationRecord) => ...)   // once per target per aggregation interval
//   ctx.on('targetExited', (targetId: number) => ...)
//   ctx.on('stopped', (reason: 'off' | 'no-targets' | 'error', error?: Error) => ...)  // exactly once
//   ctx.step() / ctx.runFor(us)     // sampling intervals back to back, in virtual time
//   ctx.start() / await ctx.stop()  // the real-time loop (the Monitor contract, monitor.ts): batched in the operations, or on timers
//   ctx.drift()                     // real interval lengths measured by the real-time loop
//   ctx.intervals()                 // the sampling/aggregation intervals now (tuned by attrs.intervalsGoal)
//   ctx.schemeStats()               // attrs.schemes' statistics (agent/schemes/)
//
// One step is one sampling interval: check accesses; at an aggregation boundary merge,
// report, reset and split; at an update boundary drop exited targets and let the
// operations update the regions; then prepare the next checks. Boundaries are counted in
// sampling intervals, as in the kernel, so an aggregation always holds exactly
// maxNrAccesses(attrs) samples. The split is the kernel's rule or, by default, the refined
// one (adjust-refined.ts says why); everything else is the kernel's. With an intervals
// goal the sampling interval is tuned every goal.aggrs aggregations (intervals-tuning.ts).
//
// The real-time loop has two forms. Operations that offer sampleAggregation (page_idle:
// a native thread) run all the sampling intervals up to the next boundary at once, and
// the core wakes once per aggregation to merge, report, split and update (runBatch). The
// others, and the 'per-sample' loop option, run one step per sampling interval on timers.
import { EventEmitter } from 'node:events';
import { maxNrAccesses, validateAttributes, type Attributes } from './attrs.js';
import { TargetError, type Operations, type OpsContext, type SampledIntervals } from './operations.js';
import { PAGE_SIZE, type Target } from './region.js';
import {
  mergeAllTargets, regionSizeLimit, resetAggregated, splitPieces, splitRegions, type RandomSource,
} from './adjust.js';
import { refinedSplit } from './adjust-refined.js';
import { CheckCost } from './check-budget.js';
import { tuneSamplingUs } from './intervals-tuning.js';
import type { AggregationRecord } from '../records/record.js';
import { StatsWindow } from './stats-window.js';
import type { DriftStats, Intervals, Monitor, MonitorEvents, StopReason } from './monitor.js';
import { SchemesEngine, type SchemesEngineOptions } from '../schemes/schemes-engine.js';
import { noActuator } from '../schemes/actuator.js';
import type { SchemeStats } from '../../gen/damon/v1/damon.js';

export { DRIFT_WINDOW, type IntervalStats } from './stats-window.js';
export type { DriftStats, StopReason } from './monitor.js';

/** Record timestamps of a virtual-clock context count from here: 2024-01-01T00:00:00Z. */
export const VIRTUAL_EPOCH_NS = 1_704_067_200_000_000_000n;


export type ClockKind = 'real' | 'virtual';

export interface DamonContextOptions {
  /** Checked with validateAttributes; a bad value throws AttributeError. */
  attrs: Attributes;
  /** One target per id (a pid for processes); at least one, no duplicates. */
  targetIds: number[];
  ops: Operations;
  /** Random source in [0, 1) for the operations and the splits; Math.random by default. */
  random?: RandomSource;
  /**
   * 'real' (default): nowUs() and record times follow the monotonic clock, anchored to
   * the wall clock at construction. 'virtual': time advances by samplingUs per step,
   * from 0, and record times are VIRTUAL_EPOCH_NS + virtual time.
   */
  clock?: ClockKind;
  /**
   * How regions are split after each aggregation (merge, aging and reporting are the
   * kernel's either way). 'refined' (default): exploration, boundary and extremum cuts
   * that spend the unused region budget where the pattern is uncertain
   * (adjust-refined.ts; damon-fleet's deliberate deviation). 'kernel': the kernel's rule,
   * 2 or 3 pieces at random tenths while at most max_nr_regions / 2 regions (adjust.ts),
   * to compare with the kernel's own DAMON. Either keeps <= max_nr_regions regions.
   */
  adjust?: AdjustMode;
  /**
   * The real-time loop. 'batched' (default): when the operations offer sampleAggregation,
   * they run an aggregation's sampling intervals off the JavaScript thread.
   * 'per-sample': one timer step per sampling interval whatever the operations offer
   * (what every loop did before; kept to compare).
   */
  loop?: LoopMode;
  /** How attrs.schemes report refused actions and read the host (tests substitute them). */
  schemeHooks?: Pick<SchemesEngineOptions, 'onActionError' | 'freeMemRate' | 'actionClockNs'>;
}

export type LoopMode = 'batched' | 'per-sample';
export const LOOP_MODES: readonly LoopMode[] = ['batched', 'per-sample'];

export type AdjustMode = 'kernel' | 'refined';
export const ADJUST_MODES: readonly AdjustMode[] = ['kernel', 'refined'];

/** Monotonic time in microseconds (fractional). */
function hrUs(): number {
  return Number(process.hrtime.bigint()) / 1000;
}

type State = 'new' | 'running' | 'stopped';

/**
 * A DAMON monitoring context: targets, attributes and the loop that samples accesses
 * and adjusts regions. See the top of this file for the API. Exceptions from the
 * operations stop the context with 'stopped' ('error', error) instead of propagating;
 * an operations call that throws TargetError for a target that targetValid() now
 * reports gone removes that target ('targetExited') instead.
 */
export class DamonContext extends EventEmitter<MonitorEvents> implements OpsContext, Monitor {
  readonly attrs: Attributes;
  readonly ops: Operations;
  readonly clock: ClockKind;
  readonly adjust: AdjustMode;
  readonly loop: LoopMode;
  private readonly randomFn: RandomSource;
  private _targets: Target[];
  /** attrs.schemes at work; undefined without schemes. */
  private readonly schemes: SchemesEngine | undefined;

  private state: State = 'new';
  private initialized = false;
  private initDone = false;
  private inStep = false;
  private stopRequested = false;
  private stopWaiters: (() => void)[] = [];

  private readonly samplesPerAggregation: number;
  private samplesPerUpdate: number;
  /** The sampling interval now: attrs.samplingUs, or as the intervals goal tuned it. */
  private samplingUs: number;
  private _passedSamples = 0;
  private nextAggregationSample: number;
  private nextUpdateSample: number;
  private nextTuneSample: number;
  private szLimit = PAGE_SIZE;
  /** Total regions at the last split; per context (the kernel's is one static for all). */
  private lastSplitNrRegions = 0;
  private aggregationStartNs = 0n;
  private aggregatedInStep = false;

  private virtualUs = 0;
  private readonly hrOriginNs: bigint;
  private readonly wallOriginNs: bigint;

  // Real-time loop.
  private looping = false;
  private timer: { kind: 'timeout'; handle: NodeJS.Timeout } | { kind: 'immediate'; handle: NodeJS.Immediate } | undefined;
  private loopOriginUs = 0;
  private loopSlot = 0;
  private lastStepStartUs = -1;
  private lastAggregationUs = -1;
  private missedSamples = 0;
  /** What a region check costs in real time, from the operations that measure it. */
  private readonly checkCost = new CheckCost();
  /** The bound the last refined split kept to (max_nr_regions before any). */
  private lastAffordable: number;
  private readonly samplingWindow = new StatsWindow();
  private readonly aggregationWindow = new StatsWindow();
  private readonly stepWallWindow = new StatsWindow();
  private readonly stepCpuWindow = new StatsWindow();

  constructor(o: DamonContextOptions) {
    super();
    this.attrs = validateAttributes(o.attrs);
    this.lastAffordable = this.attrs.maxNrRegions;
    if (o.ops === null || typeof o.ops !== 'object') throw new TypeError('ops: an Operations object is required');
    this.ops = o.ops;
    if (!Array.isArray(o.targetIds) || o.targetIds.length === 0) {
      throw new RangeError('targetIds: at least one target id is needed');
    }
    const seen = new Set<number>();
    for (const id of o.targetIds) {
      if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`targetIds: ${id} is not a non-negative integer`);
      if (seen.has(id)) throw new RangeError(`targetIds: ${id} appears twice`);
      seen.add(id);
    }
    this._targets = o.targetIds.map((id) => ({ id, regions: [] }));
    this.randomFn = o.random ?? Math.random;
    const clock = o.clock ?? 'real';
    if (clock !== 'real' && clock !== 'virtual') throw new RangeError(`clock: must be 'real' or 'virtual', got ${String(clock)}`);
    this.clock = clock;
    const adjust = o.adjust ?? 'refined';
    if (!ADJUST_MODES.includes(adjust)) throw new RangeError(`adjust: must be 'kernel' or 'refined', got ${String(adjust)}`);
    this.adjust = adjust;
    const loop = o.loop ?? 'batched';
    if (!LOOP_MODES.includes(loop)) throw new RangeError(`loop: must be 'batched' or 'per-sample', got ${String(loop)}`);
    this.loop = loop;
    this.samplesPerAggregation = maxNrAccesses(this.attrs);
    this.samplingUs = this.attrs.samplingUs;
    this.samplesPerUpdate = Math.max(1, Math.floor(this.attrs.updateUs / this.samplingUs));
    this.nextAggregationSample = this.samplesPerAggregation;
    this.nextUpdateSample = this.samplesPerUpdate;
    this.nextTuneSample = this.samplesPerAggregation * (this.attrs.intervalsGoal?.aggrs ?? 0);
    // Throws SchemeRefusedError when the operations cannot apply an action.
    this.schemes = this.attrs.schemes?.length
      ? new SchemesEngine({
          schemes: this.attrs.schemes,
          actuator: this.ops.actuator ?? noActuator(this.ops.name),
          samplingUs: this.attrs.samplingUs,
          aggregationUs: this.attrs.aggregationUs,
          ...o.schemeHooks,
        })
      : undefined;
    // Anchored below the millisecond: Date.now() would put every record time up to 1 ms early.
    this.hrOriginNs = process.hrtime.bigint();
    this.wallOriginNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  }

  // ---- OpsContext -----------------------------------------------------------------------

  /** The live targets (exited ones are removed). */
  get targets(): readonly Target[] {
    return this._targets;
  }

  /** Monitoring time in microseconds since the context was created (virtual: since 0). */
  nowUs(): number {
    if (this.clock === 'virtual') return this.virtualUs;
    return Number(process.hrtime.bigint() - this.hrOriginNs) / 1000;
  }

  /** The context's random source. */
  random(): number {
    return this.randomFn();
  }

  // ---- state ----------------------------------------------------------------------------

  /** Sampling intervals done so far. */
  get passedSamples(): number {
    return this._passedSamples;
  }

  /** True until the context stopped. */
  get running(): boolean {
    return this.state !== 'stopped';
  }

  /** The intervals the loop runs with now (tuned when attrs.intervalsGoal is set). */
  intervals(): Intervals {
    return { samplingUs: this.samplingUs, aggregationUs: this.samplingUs * this.samplesPerAggregation };
  }

  /** attrs.schemes' statistics since the context started, by index; [] without schemes. */
  schemeStats(): SchemeStats[] {
    return this.schemes?.stats() ?? [];
  }

  /** True once ops.init and the first prepareAccessChecks succeeded. */
  get started(): boolean {
    return this.initDone;
  }

  /** Record time (ns since the Unix epoch) of the current moment. */
  private nowNs(): bigint {
    if (this.clock === 'virtual') return VIRTUAL_EPOCH_NS + BigInt(Math.round(this.virtualUs * 1000));
    return this.wallOriginNs + (process.hrtime.bigint() - this.hrOriginNs);
  }

  // ---- manual stepping (virtual time) ---------------------------------------------------

  /**
   * Runs one sampling interval at once, without waiting (the first call also runs
   * ops.init and the first prepareAccessChecks). With the virtual clock, time advances by
   * the sampling interval. Returns whether the context still runs afterwards.
   */
  step(): boolean {
    if (this.state === 'stopped') return false;
    if (this.looping) throw new Error('step(): the real-time loop is running (start() was called)');
    if (this.inStep) throw new Error('step(): called from inside a step (from an event listener?)');
    if (this.state === 'new' && !this.initialize()) return false;
    this.runStep();
    return this.running;
  }

  /**
   * Steps through `us` microseconds of sampling intervals (as many whole intervals as fit,
   * at the sampling interval of each step), stopping early if the context stops. Returns
   * the number of steps run.
   */
  runFor(us: number): number {
    if (!Number.isFinite(us) || us < 0) throw new RangeError(`runFor: duration must be a non-negative number of microseconds, got ${us}`);
    let left = us;
    let done = 0;
    while (left >= this.samplingUs && this.running) {
      left -= this.samplingUs;
      if (!this.step()) break;
      done++;
    }
    return done;
  }

  // ---- the real-time loop ---------------------------------------------------------------

  /**
   * Starts the real-time loop: every sampling step runs from a timer, so the event loop
   * keeps serving other work between steps. Deadlines follow the ideal schedule
   * start + k * samplingUs, so timer lateness does not accumulate; when a step is more
   * than one interval late, the missed slots are skipped (counted in drift()) rather than
   * run back to back. Throws at once if the context already stopped or runs its loop;
   * resolves whether the loop runs (false: init failed, and 'stopped' said why).
   */
  start(): Promise<boolean> {
    if (this.state === 'stopped') throw new Error('start(): the context has stopped');
    if (this.looping) throw new Error('start(): already started');
    if (this.inStep) throw new Error('start(): called from inside a step');
    this.looping = true;
    if (this.state === 'new' && !this.initialize()) return Promise.resolve(false);
    // The schedule starts after init and the first prepareAccessChecks, however long they took.
    this.loopOriginUs = hrUs();
    this.lastAggregationUs = this.loopOriginUs;
    if (this.batched) void this.batchLoop();
    else this.schedule(1);
    return Promise.resolve(true);
  }

  /** Whether the real-time loop runs its sampling intervals in the operations (sampleAggregation). */
  get batched(): boolean {
    return this.loop === 'batched' && typeof this.ops.sampleAggregation === 'function';
  }

  /**
   * Stops the context: ends the loop, calls ops.cleanup and emits 'stopped' ('off').
   * From inside a step (an event listener), the stop takes effect when the step ends.
   * Resolves once stopped; a no-op when already stopped.
   */
  stop(): Promise<void> {
    if (this.state === 'stopped') return Promise.resolve();
    const done = new Promise<void>((resolve) => this.stopWaiters.push(resolve));
    if (this.inStep) this.stopRequested = true;
    else this.finish('off');
    return done;
  }

  /** Real-time loop measurements; see DriftStats. */
  drift(): DriftStats {
    const now = this.intervals();
    const tuned = (this.attrs.intervalsGoal ?? null) !== null;
    return {
      sampling: this.samplingWindow.stats(now.samplingUs),
      // The configured value, although aggregations come every floor(aggregationUs /
      // samplingUs) samples, as in the kernel: a remainder shows up as drift.
      aggregation: this.aggregationWindow.stats(tuned ? now.aggregationUs : this.attrs.aggregationUs),
      stepWallUs: this.stepWallWindow.stats(0),
      stepCpuUs: this.stepCpuWindow.stats(0),
      missedSamples: this.missedSamples,
      checkCost:
        this.checkCost.perCheckUs === undefined
          ? null
          : { perCheckUs: this.checkCost.perCheckUs, affordableRegions: this.lastAffordable },
    };
  }

  private schedule(slot: number): void {
    const deadline = this.loopOriginUs + slot * this.samplingUs;
    const wait = deadline - hrUs();
    // Timers have millisecond granularity: sleep while more than half a millisecond is
    // left, run the step once less is, so a step is at most ~0.5 ms early.
    if (wait > 500) {
      this.timer = { kind: 'timeout', handle: setTimeout(() => this.schedule(slot), Math.max(1, Math.round(wait / 1000))) };
    } else {
      this.timer = { kind: 'immediate', handle: setImmediate(() => this.tick(slot)) };
    }
  }

  private tick(slot: number): void {
    this.timer = undefined;
    if (!this.looping || this.state === 'stopped') return;
    const startUs = hrUs();
    if (this.lastStepStartUs >= 0) this.samplingWindow.add(startUs - this.lastStepStartUs);
    this.lastStepStartUs = startUs;
    const cpu0 = process.cpuUsage();
    this.loopSlot = slot;
    this.runStep();
    const endUs = this.accountStep(startUs, cpu0);
    if (!this.running) return;
    // The next check must come at least half an interval after this step armed its samples:
    // a late step that ran the next one at once would check an almost empty window and
    // under-count accesses (the kernel always sleeps a whole interval). Slots it skips for
    // that are counted as missed; the schedule stays on the ideal grid.
    const earliest = Math.ceil((endUs - this.loopOriginUs + this.samplingUs / 2) / this.samplingUs);
    const next = Math.max(slot + 1, earliest);
    this.missedSamples += next - slot - 1;
    this.schedule(next);
  }

  /** Drift accounting of one step (or batch) that began at startUs with CPU usage cpu0; returns its end. */
  private accountStep(startUs: number, cpu0: NodeJS.CpuUsage): number {
    const cpu = process.cpuUsage(cpu0);
    const endUs = hrUs();
    this.stepWallWindow.add(endUs - startUs);
    this.stepCpuWindow.add(cpu.user + cpu.system);
    if (this.aggregatedInStep) {
      this.aggregationWindow.add(startUs - this.lastAggregationUs);
      this.lastAggregationUs = startUs;
    }
    return endUs;
  }

  // ---- the loop body --------------------------------------------------------------------

  /** ops.init, the region size limit and the first prepareAccessChecks. False if it failed. */
  private initialize(): boolean {
    this.state = 'running';
    this.inStep = true;
    try {
      this.initialized = true;
      this.ops.init(this);
      this.checkRegions('init');
      this.szLimit = regionSizeLimit(this._targets.map((t) => t.regions), this.attrs.minNrRegions);
      this.aggregationStartNs = this.nowNs();
      this.withExits(() => this.ops.prepareAccessChecks(this));
      this.initDone = true;
    } catch (e) {
      this.inStep = false;
      this.finish('error', e);
      return false;
    }
    this.inStep = false;
    if (this._targets.length === 0) this.finish('no-targets');
    else if (this.stopRequested) this.finish('off');
    return this.running;
  }

  private runStep(): void {
    this.inStep = true;
    this.aggregatedInStep = false;
    try {
      this._passedSamples++;
      this.virtualUs += this.samplingUs;
      this.boundaries(this.checkAccesses());
      if (!this.stopRequested && this._targets.length > 0) {
        this.withExits(() => this.ops.prepareAccessChecks(this));
      }
    } catch (e) {
      this.inStep = false;
      this.finish('error', e);
      return;
    }
    this.inStep = false;
    if (this._targets.length === 0) this.finish('no-targets');
    else if (this.stopRequested) this.finish('off');
  }

  /** After the checks of passedSamples: aggregate and update where a boundary is reached. */
  private boundaries(maxSeen: number): void {
    if (this._passedSamples >= this.nextAggregationSample) {
      this.nextAggregationSample += this.samplesPerAggregation;
      this.aggregatedInStep = true;
      this.aggregate(maxSeen);
    }
    if (!this.stopRequested && this._passedSamples >= this.nextUpdateSample) {
      this.nextUpdateSample += this.samplesPerUpdate;
      this.update();
    }
  }

  // ---- the batched real-time loop -------------------------------------------------------

  /**
   * Until the context stops: the operations run the sampling intervals up to the next
   * aggregation or update boundary (sampleAggregation), then runBatch does what the steps
   * ending there would have done.
   */
  private async batchLoop(): Promise<void> {
    const sample = this.ops.sampleAggregation!.bind(this.ops);
    while (this.looping && this.state === 'running') {
      const n = Math.min(this.nextAggregationSample, this.nextUpdateSample) - this._passedSamples;
      let outcome: SampledIntervals | undefined;
      let failure: unknown;
      try {
        outcome = await sample(this, n, this.samplingUs);
      } catch (e) {
        failure = e;
      }
      if (!this.looping || this.state !== 'running') return;
      if (outcome?.stopped) {
        this.finish('error', new Error(`${this.ops.name}.sampleAggregation stopped before the context did`));
        return;
      }
      this.runBatch(n, outcome, failure);
    }
  }

  /** The end of n sampling intervals the operations ran; `failure` is what they threw. */
  private runBatch(n: number, outcome: SampledIntervals | undefined, failure: unknown): void {
    const startUs = hrUs();
    const cpu0 = process.cpuUsage();
    this.inStep = true;
    this.aggregatedInStep = false;
    try {
      this._passedSamples += n;
      this.virtualUs += n * this.samplingUs;
      if (outcome !== undefined) {
        // One value per sample, each the batch's mean: the window's mean stays the real one.
        for (let i = 0; i < outcome.samples; i++) this.samplingWindow.add(outcome.wallUs / outcome.samples);
        this.missedSamples += outcome.late;
        if (outcome.busyUs !== undefined) {
          let regions = 0;
          for (const t of this._targets) regions += t.regions.length;
          this.checkCost.observe(outcome.busyUs, outcome.samples, regions);
        }
      } else {
        if (!(failure instanceof TargetError)) throw failure;
        const t = this._targets.find((x) => x.id === failure.targetId);
        if (t === undefined || this.ops.targetValid(t)) throw failure;
        this.removeExited();
      }
      if (this._targets.length > 0) {
        let maxSeen = 0;
        for (const t of this._targets) for (const r of t.regions) maxSeen = Math.max(maxSeen, r.nrAccesses);
        this.boundaries(maxSeen);
      }
    } catch (e) {
      this.inStep = false;
      this.finish('error', e);
      return;
    }
    this.inStep = false;
    this.accountStep(startUs, cpu0);
    if (this._targets.length === 0) this.finish('no-targets');
    else if (this.stopRequested) this.finish('off');
  }

  private checkAccesses(): number {
    let maxSeen: number | undefined;
    const done = this.withExits(() => {
      maxSeen = this.ops.checkAccesses(this);
    }, false);
    if (!done) {
      // A target exited mid-check: take the largest count from the regions themselves.
      maxSeen = 0;
      for (const t of this._targets) for (const r of t.regions) maxSeen = Math.max(maxSeen, r.nrAccesses);
    }
    if (typeof maxSeen !== 'number' || !Number.isFinite(maxSeen) || maxSeen < 0) {
      throw new Error(`${this.ops.name}.checkAccesses returned ${String(maxSeen)}; expected the largest nrAccesses (a non-negative number)`);
    }
    return maxSeen;
  }

  private aggregate(maxSeen: number): void {
    const maxNr = this.samplesPerAggregation;
    const merged = mergeAllTargets(this._targets.map((t) => t.regions), {
      maxNrAccessesSeen: maxSeen,
      szLimit: this.szLimit,
      maxNrRegions: this.attrs.maxNrRegions,
      maxNrAccesses: maxNr,
    });
    const endNs = this.nowNs();
    const records: AggregationRecord[] = this._targets.map((t, i) => {
      t.regions = merged[i];
      return {
        targetId: t.id,
        startNs: this.aggregationStartNs,
        endNs,
        maxNrAccesses: maxNr,
        samplingUs: this.samplingUs,
        regions: t.regions.map((r) => ({ start: r.start, end: r.end, nrAccesses: r.nrAccesses, age: r.age })),
      };
    });
    this.aggregationStartNs = endNs;
    // Linux 6.12 kdamond_fn: after_aggregation callbacks run after the merge and before
    // reset and split; so do listeners here, and records do not wait for the split.
    for (const rec of records) this.emit('aggregate', rec);
    // Linux 6.12 kdamond_fn: schemes apply after the merge and its callbacks, before the reset.
    this.schemes?.apply(this);
    // Linux 6.15 kdamond_fn: intervals are tuned after the merge, before the reset.
    this.tuneIntervals();
    let total = 0;
    for (const t of this._targets) {
      t.regions = resetAggregated(t.regions);
      total += t.regions.length;
    }
    if (this.adjust === 'refined') {
      const split = refinedSplit(
        this._targets.map((t) => t.regions),
        { maxNrRegions: (this.lastAffordable = this.affordableRegions()), minNrRegions: this.attrs.minNrRegions, maxNrAccesses: maxNr },
        this.randomFn,
      );
      this._targets.forEach((t, i) => {
        t.regions = split[i];
      });
    } else {
      const pieces = splitPieces(total, this.lastSplitNrRegions, this.attrs.maxNrRegions);
      if (pieces > 0) {
        for (const t of this._targets) t.regions = splitRegions(t.regions, pieces, this.randomFn);
        this.lastSplitNrRegions = total;
      }
    }
  }

  /**
   * The most regions the refined split may leave: max_nr_regions, or fewer where checks
   * are slow (check-budget.ts), never below splitFloor.
   */
  private affordableRegions(): number {
    let nr = 0;
    for (const t of this._targets) nr += t.regions.length;
    return this.checkCost.affordableRegions(this.samplingUs, this.attrs.maxNrRegions, this.splitFloor(nr));
  }

  /**
   * The fewest regions the refined split may leave, whatever checks cost: as many as the
   * kernel's rule would (it halves every region while nr_regions <= max_nr_regions / 2),
   * and at least 4 x min_nr_regions, so that exploration still halves a region at the
   * merge size limit (explorationPieces, at most half the budget, must reach 2 x
   * min_nr_regions). The budget only curbs what the refined split adds beyond that.
   */
  private splitFloor(nr: number): number {
    const kernelRule = nr <= this.attrs.maxNrRegions / 2 ? 2 * nr : nr;
    return Math.min(this.attrs.maxNrRegions, Math.max(4 * this.attrs.minNrRegions, kernelRule));
  }

  /** Every intervalsGoal.aggrs aggregations, scales the sampling interval toward the goal. */
  private tuneIntervals(): void {
    const goal = this.attrs.intervalsGoal ?? null;
    if (goal === null || this._passedSamples < this.nextTuneSample) return;
    this.nextTuneSample += this.samplesPerAggregation * goal.aggrs;
    const next = tuneSamplingUs(this._targets.map((t) => t.regions), this.samplesPerAggregation, this.samplingUs, goal);
    if (next !== this.samplingUs) this.setSamplingUs(next);
  }

  /**
   * Runs the next steps at `us`. The next update stays due at the same time (the kernel's
   * damon_set_attrs restarts its countdown, which postpones it for ever when tuning comes
   * more often); the real-time loop's grid keeps the current slot's deadline.
   */
  private setSamplingUs(us: number): void {
    const updateLeftUs = (this.nextUpdateSample - this._passedSamples) * this.samplingUs;
    this.nextUpdateSample = this._passedSamples + Math.max(1, Math.round(updateLeftUs / us));
    this.samplesPerUpdate = Math.max(1, Math.floor(this.attrs.updateUs / us));
    if (this.looping) this.loopOriginUs += this.loopSlot * (this.samplingUs - us);
    this.samplingUs = us;
  }

  private update(): void {
    this.removeExited();
    if (this._targets.length === 0) return;
    this.withExits(() => this.ops.update(this));
    this.checkRegions('update');
    this.szLimit = regionSizeLimit(this._targets.map((t) => t.regions), this.attrs.minNrRegions);
  }

  /** Removes targets the operations report gone, emitting 'targetExited' for each. */
  private removeExited(): boolean {
    const gone = this._targets.filter((t) => !this.ops.targetValid(t));
    if (gone.length === 0) return false;
    this._targets = this._targets.filter((t) => !gone.includes(t));
    for (const t of gone) this.emit('targetExited', t.id);
    return true;
  }

  /**
   * Runs an operations call; when it throws TargetError for a target that has exited,
   * removes the exited targets and, if `retry`, calls again for the others. Returns
   * whether the call completed; rethrows every other error.
   */
  private withExits(call: () => void, retry = true): boolean {
    for (;;) {
      try {
        call();
        return true;
      } catch (e) {
        if (!(e instanceof TargetError)) throw e;
        const t = this._targets.find((x) => x.id === e.targetId);
        if (t === undefined || this.ops.targetValid(t)) throw e;
        this.removeExited();
        if (!retry || this._targets.length === 0) return false;
      }
    }
  }

  /** Catches operations that leave regions unsorted, overlapping, empty or unaligned. */
  private checkRegions(phase: string): void {
    for (const t of this._targets) {
      let prevEnd = -Infinity;
      t.regions.forEach((r, i) => {
        const bad =
          !(r.start < r.end) ? 'is empty' :
          r.start % PAGE_SIZE !== 0 || r.end % PAGE_SIZE !== 0 ? 'is not page aligned' :
          r.start < prevEnd ? 'overlaps or precedes the region before it' : '';
        if (bad !== '') {
          throw new Error(`${this.ops.name}.${phase} left target ${t.id} with region ${i} [0x${r.start.toString(16)}, 0x${r.end.toString(16)}) that ${bad}`);
        }
        prevEnd = r.end;
      });
    }
  }

  private finish(reason: StopReason, error?: unknown): void {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.looping = false;
    if (this.timer?.kind === 'timeout') clearTimeout(this.timer.handle);
    else if (this.timer?.kind === 'immediate') clearImmediate(this.timer.handle);
    this.timer = undefined;
    let err = error === undefined ? undefined : error instanceof Error ? error : new Error(String(error));
    if (this.initialized && this.ops.cleanup !== undefined) {
      try {
        this.ops.cleanup(this);
      } catch (e) {
        // A failing cleanup is worth reporting, but not over the error that stopped us.
        if (err === undefined) {
          reason = 'error';
          err = e instanceof Error ? e : new Error(String(e));
        }
      }
    }
    const waiters = this.stopWaiters;
    this.stopWaiters = [];
    for (const w of waiters) w();
    this.emit('stopped', reason, err);
  }
}
