// The kernel's own DAMON as an engine ("kdamond" operations): a kdamond of the kernel's
// DAMON sysfs interface monitors the targets with the vaddr operations, and this context
// turns what it reports into the same AggregationRecords, events and stop semantics as the
// project's DamonContext, so the agent can run either.
//
// API (the Monitor contract of agent/engine/monitor.ts, plus):
//   const ctx = new KdamondContext({ attrs, targetIds, sysfsRoot, tracefsRoot, ... });
//   ctx.on('aggregate', (record) => ...)      // once per target per aggregation the source delivers
//   ctx.on('targetExited', (pid) => ...)
//   ctx.on('stopped', (reason, error?) => ...) // exactly once: 'off' | 'no-targets' | 'error'
//   await ctx.start()   // resolves true once the kdamond runs; failures come as 'stopped' ('error')
//   await ctx.stop()    // turns the kdamond off and removes it; resolves once stopped
//   ctx.drift()         // DriftStats plus missedAggregations; ctx.costs() for the source benchmark
//   ctx.schemeStats()   // the session's schemes, handed to the kernel's DAMOS, as the kernel counts them
//   await KdamondContext.probe(sysfsRoot, { tracefsRoot, procRoot })
//
// Target exits: the kernel keeps reporting an exited target (with no accesses) for as long
// as another target lives, and stops the kdamond on its own once every target has exited.
// So the context watches the target processes itself (pid and start time in /proc) at every
// poll: an exited target gets 'targetExited' and no more records; when none is left, or
// the kdamond stopped, the context stops with 'no-targets'. A kdamond that stops while its
// targets live was turned off by someone else: 'error'.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { validateAttributes, maxNrAccesses, type Attributes } from '../engine/attrs.js';
import type { DriftStats, Intervals, Monitor, MonitorEvents, StopReason } from '../engine/monitor.js';
import { OperationsUnavailableError } from '../engine/operations.js';
import type { AggregationRecord } from '../records/record.js';
import { probeProcess } from '../ops/process-stat.js';
import { registerExitCleanup } from './exit-cleanup.js';
import { KernelFileError, NodeKernelFiles, type KernelFiles } from './kernel-files.js';
import { KdamondDriver, KdamondNotRunningError, KdamondOwnershipError, type ReleaseReport } from './kdamond-driver.js';
import { probeKdamond, type KdamondProbe } from './probe.js';
import { DEFAULT_RECORD_SOURCE, parseRecordSource, type RecordClock, type RecordSource, type RecordSourceName, type SourceRecord } from './record-source.js';
import { StatsWindow } from '../engine/stats-window.js';
import { TracepointSource } from './tracepoint-source.js';
import { TriedRegionsSource } from './tried-regions-source.js';
import { readSchemeStats, setNrSchemes, writeSchemes } from './damos-schemes.js';
import { SCHEME_STATS_REPORT_MS, type SchemeSpec } from '../../common/scheme-schema.js';
import type { SchemeStats } from '../../gen/damon/v1/damon.js';

/** USER_HZ: the unit of utime/stime in /proc/PID/stat (100 on every Linux architecture in use). */
const USER_HZ = 100;

export interface KdamondContextOptions {
  /** Checked with validateAttributes; a bad value throws AttributeError. */
  attrs: Partial<Attributes>;
  /**
   * The session's schemes (checked by common/scheme-schema.ts), handed to the kernel's
   * DAMOS after the record source's own; default none. collapse is refused (no DAMOS action).
   */
  schemes?: readonly SchemeSpec[];
  /** How often polls refresh the schemes' statistics from the kernel; default SCHEME_STATS_REPORT_MS. */
  schemeStatsIntervalMs?: number;
  /** Target pids; at least one, no duplicates. */
  targetIds: number[];
  /** DAMON's sysfs directory (normally /sys/kernel/mm/damon; the caller says so). */
  sysfsRoot: string;
  /** tracefs mount point; required for the tracepoint record source. */
  tracefsRoot?: string;
  /** procfs root: target liveness, kallsyms, the kdamond's CPU time (read only). Default /proc. */
  procRoot?: string;
  /** Where records come from; default DEFAULT_RECORD_SOURCE (see record-source.ts). */
  recordSource?: RecordSourceName;
  /** The kernel files; default the real ones (tests pass a fake kernel). */
  files?: KernelFiles;
  /** Time between polls of the record source; default the aggregation interval. */
  pollIntervalMs?: number;
  /** Poll on timers (default); false: the caller calls poll() (tests). */
  autoPoll?: boolean;
  /** Name of our tracefs instance (tracepoint source); default damon-fleet-<pid>-<random>. */
  traceInstanceName?: string;
}

/** DriftStats with what a kdamond shows instead of its sampling steps. */
export interface KdamondDriftStats extends DriftStats {
  /** Aggregations between two delivered ones that never reached us (lost events, snapshot gaps). */
  missedAggregations: number;
  recordSource: RecordSourceName;
}

/** What monitoring through the kdamond cost so far: the benchmark hook. */
export interface KdamondCosts {
  recordSource: RecordSourceName;
  /** Microseconds since the kdamond was turned on (until it stopped). */
  elapsedUs: number;
  polls: number;
  /** Distinct aggregations delivered, records emitted and regions in them. */
  aggregations: number;
  records: number;
  regions: number;
  missedAggregations: number;
  /** CPU time of this process during polls (user + system, all threads), and their wall time. */
  collectorCpuUs: number;
  collectorWallUs: number;
  /** CPU time of the kdamond thread (utime + stime); undefined if /proc/PID/stat was unreadable. */
  kdamondCpuUs: number | undefined;
  /** Source-specific counters. */
  source: Record<string, number>;
}

type Phase = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

function hrUs(): number {
  return Number(process.hrtime.bigint()) / 1000;
}

function cpuUsOfTask(procRoot: string, pid: number): number | undefined {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? (ticks * 1_000_000) / USER_HZ : undefined;
  } catch {
    return undefined;
  }
}

export class KdamondContext extends EventEmitter<MonitorEvents> implements Monitor {
  readonly attrs: Attributes;
  readonly recordSource: RecordSourceName;
  readonly sysfsRoot: string;
  private readonly tracefsRoot: string | undefined;
  private readonly procRoot: string;
  private readonly files: KernelFiles;
  private readonly pollIntervalMs: number;
  private readonly autoPoll: boolean;
  private readonly targetIds: readonly number[];
  private readonly source: RecordSource;
  private readonly clock: RecordClock;
  private readonly maxNr: number;
  private readonly schemes: readonly SchemeSpec[];
  private readonly schemeStatsIntervalMs: number;
  /** Index of the session's first scheme among our kdamond's (after the source's). */
  private firstScheme = 0;
  private stats: SchemeStats[] = [];
  private statsReadAtMs: number | undefined;

  private phase: Phase = 'new';
  private startCalled = false;
  private chain: Promise<void> = Promise.resolve();
  private finishRequested = false;
  private readonly finished: Promise<void>;
  private resolveFinished!: () => void;
  private timer: NodeJS.Timeout | undefined;
  private unregisterExit: (() => void) | undefined;

  private driver: KdamondDriver | undefined;
  private kpid: number | undefined;
  /** Live targets: pid -> start time (ticks) from /proc/PID/stat. */
  private readonly live = new Map<number, string>();
  /** Kernel target index -> pid. */
  private indexToPid: number[] = [];
  private readonly lastEndNs = new Map<number, bigint>();
  private _releaseReport: ReleaseReport | undefined;
  /** The intervals the kernel runs with, as last read back (tuned by an intervals goal). */
  private tuned: Intervals;

  // Measurements.
  private readonly aggregationWindow = new StatsWindow();
  private readonly pollWallWindow = new StatsWindow();
  private readonly pollCpuWindow = new StatsWindow();
  private lastAggregationEndNs: bigint | undefined;
  private lastAggregationNumber = 0;
  private missedAggregations = 0;
  private polls = 0;
  private aggregations = 0;
  private records = 0;
  private regions = 0;
  private onHrUs = 0;
  private offHrUs: number | undefined;
  private kdamondCpuStartUs: number | undefined;
  private kdamondCpuLastUs: number | undefined;

  constructor(o: KdamondContextOptions) {
    super();
    this.attrs = validateAttributes(o.attrs);
    if (typeof o.sysfsRoot !== 'string' || o.sysfsRoot === '') throw new TypeError('sysfsRoot: the DAMON sysfs directory is required');
    if (!Array.isArray(o.targetIds) || o.targetIds.length === 0) throw new RangeError('targetIds: at least one target pid is needed');
    const seen = new Set<number>();
    for (const id of o.targetIds) {
      if (!Number.isSafeInteger(id) || id <= 0) throw new RangeError(`targetIds: ${id} is not a process id`);
      if (seen.has(id)) throw new RangeError(`targetIds: ${id} appears twice`);
      seen.add(id);
    }
    this.targetIds = [...o.targetIds];
    this.schemes = [...(o.schemes ?? [])];
    this.schemes.forEach((sc, i) => {
      if (sc.action === 'collapse') throw new RangeError(`schemes[${i}]: the kernel's DAMOS has no collapse action`);
    });
    this.schemeStatsIntervalMs = o.schemeStatsIntervalMs ?? SCHEME_STATS_REPORT_MS;
    if (!(this.schemeStatsIntervalMs >= 0)) throw new RangeError(`schemeStatsIntervalMs: must be a non-negative number, got ${o.schemeStatsIntervalMs}`);
    this.sysfsRoot = o.sysfsRoot.replace(/\/+$/, '');
    this.tracefsRoot = o.tracefsRoot?.replace(/\/+$/, '');
    this.procRoot = (o.procRoot ?? '/proc').replace(/\/+$/, '');
    this.recordSource = parseRecordSource(o.recordSource ?? DEFAULT_RECORD_SOURCE);
    this.files = o.files ?? new NodeKernelFiles();
    const poll = o.pollIntervalMs ?? this.attrs.aggregationUs / 1000;
    if (!Number.isFinite(poll) || poll <= 0) throw new RangeError(`pollIntervalMs: must be a positive number, got ${poll}`);
    this.pollIntervalMs = poll;
    this.autoPoll = o.autoPoll ?? true;
    this.maxNr = maxNrAccesses(this.attrs);
    this.tuned = { samplingUs: this.attrs.samplingUs, aggregationUs: this.attrs.aggregationUs };

    const hrOrigin = process.hrtime.bigint();
    const wallOrigin = BigInt(Date.now()) * 1_000_000n;
    this.clock = {
      monoToWallNs: (mono) => wallOrigin + (mono - hrOrigin),
      nowWallNs: () => wallOrigin + (process.hrtime.bigint() - hrOrigin),
    };
    if (this.recordSource === 'tracepoint') {
      if (this.tracefsRoot === undefined || this.tracefsRoot === '') {
        throw new TypeError('tracefsRoot: the tracefs mount point is required for the tracepoint record source');
      }
      this.source = new TracepointSource({
        files: this.files,
        tracefsRoot: this.tracefsRoot,
        clock: this.clock,
        instanceName: o.traceInstanceName,
        aggregationUs: this.attrs.aggregationUs,
      });
    } else {
      this.source = new TriedRegionsSource({ clock: this.clock });
    }
    this.finished = new Promise((r) => (this.resolveFinished = r));
  }

  /** Whether this host can run the kdamond engine (read-only); see probe.ts. */
  static probe(sysfsRoot: string, o: { tracefsRoot?: string; procRoot?: string }): KdamondProbe {
    return probeKdamond(sysfsRoot, { tracefsRoot: o.tracefsRoot, procRoot: o.procRoot ?? '/proc' });
  }

  // ---- state ----------------------------------------------------------------------------

  /** True until the context stopped. */
  get running(): boolean {
    return this.phase !== 'stopped';
  }

  /** True once our kdamond was turned on. */
  get started(): boolean {
    return this.kpid !== undefined;
  }

  /** The pids still monitored (DamonContext.targets holds Target objects; a kdamond's regions stay in the kernel). */
  get targetPids(): readonly number[] {
    return [...this.live.keys()];
  }

  /** The kernel thread monitoring them, once started. */
  get kdamondPid(): number | undefined {
    return this.kpid;
  }

  /** What cleanup did with our kdamond (undefined until stopped, or if none was created). */
  get releaseReport(): ReleaseReport | undefined {
    return this._releaseReport;
  }

  // ---- control --------------------------------------------------------------------------

  /**
   * Creates, configures and turns on our kdamond. Resolves true once it runs; false if it
   * could not start, which 'stopped' ('error', why) or ('no-targets') reports. Throws if
   * called twice or after the context stopped.
   */
  start(): Promise<boolean> {
    if (this.phase === 'stopped' || this.finishRequested) throw new Error('start(): the context has stopped');
    if (this.startCalled) throw new Error('start(): already started');
    this.startCalled = true;
    return this.enqueue(() => this.startBody()).then(() => this.phase === 'running' && !this.finishRequested);
  }

  /**
   * Stops: ends polling, turns our kdamond off, removes it and our trace instance, and emits
   * 'stopped' ('off'). Records not yet delivered are dropped. Resolves once stopped; a
   * no-op when already stopped.
   */
  stop(): Promise<void> {
    if (this.phase === 'stopped') return Promise.resolve();
    return this.requestFinish('off');
  }

  /**
   * One poll of the record source (what the timers do with autoPoll): emits the records
   * that arrived, handles exited targets and a stopped kdamond. Resolves whether the context
   * still runs.
   */
  poll(): Promise<boolean> {
    if (!this.startCalled) return Promise.reject(new Error('poll(): call start() first'));
    return this.enqueue(() => this.pollBody()).then(() => this.phase === 'running' && !this.finishRequested);
  }

  drift(): KdamondDriftStats {
    const none = { configuredUs: this.attrs.samplingUs, count: 0, total: 0, sumUs: 0, meanUs: 0, p50Us: 0, p99Us: 0, maxUs: 0 };
    return {
      // The kernel's sampling steps are not observable from user space.
      sampling: none,
      aggregation: this.aggregationWindow.stats(this.attrs.aggregationUs),
      stepWallUs: this.pollWallWindow.stats(0),
      stepCpuUs: this.pollCpuWindow.stats(0),
      missedSamples: 0,
      checkCost: null,
      missedAggregations: this.missedAggregations,
      recordSource: this.recordSource,
    };
  }

  /**
   * The intervals set; with an intervals goal, as the kernel tuned them when last polled.
   * Records then leave their sampling interval unknown: the kernel may have tuned it
   * between their aggregation and our read.
   */
  intervals(): Intervals {
    return { ...this.tuned };
  }

  /**
   * The session's schemes as the kernel counts them (stats/ of each, summed over the
   * targets), as of the last refresh: one per scheme, zero until the first.
   */
  schemeStats(): SchemeStats[] {
    return this.schemes.map(
      (sc, i) => this.stats[i] ?? { scheme: i, nrTried: 0n, szTried: 0n, nrApplied: 0n, szApplied: 0n, qtExceeds: 0n, active: sc.watermarks === null },
    );
  }

  costs(): KdamondCosts {
    if (this.phase === 'running' && this.kpid !== undefined) this.sampleKdamondCpu();
    const end = this.offHrUs ?? hrUs();
    return {
      recordSource: this.recordSource,
      elapsedUs: this.onHrUs === 0 ? 0 : end - this.onHrUs,
      polls: this.polls,
      aggregations: this.aggregations,
      records: this.records,
      regions: this.regions,
      missedAggregations: this.missedAggregations,
      collectorCpuUs: this.pollCpuWindow.sum,
      collectorWallUs: this.pollWallWindow.sum,
      kdamondCpuUs:
        this.kdamondCpuStartUs === undefined || this.kdamondCpuLastUs === undefined ? undefined : this.kdamondCpuLastUs - this.kdamondCpuStartUs,
      source: this.source.counters(),
    };
  }

  // ---- the body -------------------------------------------------------------------------

  /** Serializes everything that touches the kernel files: start, polls, finish. */
  private enqueue(f: () => Promise<void>): Promise<void> {
    const p = this.chain.then(f);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private requestFinish(reason: StopReason, error?: unknown): Promise<void> {
    if (!this.finishRequested) {
      this.finishRequested = true;
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      void this.enqueue(() => this.finishBody(reason, error));
    }
    return this.finished;
  }

  private async startBody(): Promise<void> {
    if (this.finishRequested) return;
    this.phase = 'starting';
    try {
      // Read-only checks first: on a host whose DAMON is busy or lacks vaddr, write nothing.
      const probe = probeKdamond(this.sysfsRoot, { tracefsRoot: this.tracefsRoot, procRoot: this.procRoot });
      if (!probe.usable) throw new OperationsUnavailableError('kdamond', probe.missing.join('; '));
      const src = probe.sources[this.recordSource];
      if (!src.usable) throw new OperationsUnavailableError('kdamond', `record source ${this.recordSource}: ${src.missing.join('; ')}`);

      const exited: number[] = [];
      for (const pid of this.targetIds) {
        const p = probeProcess(pid, this.procRoot);
        if (p.alive) this.live.set(pid, p.startTicks);
        else exited.push(pid);
      }
      for (const pid of exited) this.emit('targetExited', pid);
      if (this.live.size === 0) {
        void this.requestFinish('no-targets');
        return;
      }
      this.indexToPid = [...this.live.keys()];

      const driver = await KdamondDriver.claim(this.files, this.sysfsRoot);
      this.driver = driver;
      this.unregisterExit = registerExitCleanup(() => this.cleanupSync());
      await driver.configureMonitoring(this.attrs, this.indexToPid);
      this.firstScheme = this.source.schemesNeeded(this.indexToPid.length);
      if (this.firstScheme + this.schemes.length > 0) await setNrSchemes(driver, this.firstScheme + this.schemes.length);
      await this.source.prepare(driver, this.indexToPid.length);
      await writeSchemes(driver, this.firstScheme, this.schemes);
      if (this.finishRequested) return;
      const onNs = this.clock.nowWallNs();
      this.kpid = await driver.turnOn();
      this.onHrUs = hrUs();
      await this.source.begin(driver, this.kpid);
      this.kdamondCpuStartUs = cpuUsOfTask(this.procRoot, this.kpid);
      this.kdamondCpuLastUs = this.kdamondCpuStartUs;
      for (const pid of this.indexToPid) this.lastEndNs.set(pid, onNs);
      this.lastAggregationEndNs = onNs;
      this.phase = 'running';
      if (this.autoPoll && !this.finishRequested) this.schedule(this.pollIntervalMs);
    } catch (e) {
      void this.requestFinish('error', e);
    }
  }

  private schedule(delayMs: number): void {
    if (this.finishRequested || this.phase !== 'running') return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const t0 = hrUs();
      void this.enqueue(() => this.pollBody()).then(() => {
        const took = (hrUs() - t0) / 1000;
        this.schedule(Math.max(1, this.pollIntervalMs - took));
      });
    }, delayMs);
  }

  private async pollBody(): Promise<void> {
    if (this.phase !== 'running' || this.finishRequested) return;
    const t0 = hrUs();
    const cpu0 = process.cpuUsage();
    try {
      let recs: SourceRecord[] = [];
      let kernelStopped = false;
      try {
        recs = await this.source.collect();
      } catch (e) {
        // tried_regions: the update command fails once the kdamond stopped.
        if (!(await this.kdamondGone(e))) throw e;
      }
      const st = await this.driver!.status();
      if (st.pid !== this.kpid) {
        if (st.pid !== -1) {
          throw new KdamondOwnershipError(`kdamond ${this.driver!.index} now runs as pid ${st.pid}, not as the pid ${this.kpid} we started: someone else restarted it`);
        }
        kernelStopped = true;
        this.offHrUs = hrUs();
        // Events the kdamond wrote before it exited may have arrived after our read.
        if (this.source.name === 'tracepoint') recs = recs.concat(await this.source.collect());
      } else {
        this.sampleKdamondCpu();
        if (this.attrs.intervalsGoal) await this.readTunedIntervals();
        await this.refreshSchemeStats();
      }
      this.checkLiveness();
      await this.emitRecords(recs);
      if (this.finishRequested) return;
      if (kernelStopped) {
        this.checkLiveness();
        if (this.live.size === 0) void this.requestFinish('no-targets');
        else {
          void this.requestFinish(
            'error',
            new KdamondNotRunningError(
              `kdamond ${this.driver!.index} (pid ${this.kpid}) stopped while target(s) ${[...this.live.keys()].join(', ')} still run: it was turned off outside this context`,
            ),
          );
        }
      } else if (this.live.size === 0) {
        // The kernel stops the kdamond at its next check; nothing more will come.
        void this.requestFinish('no-targets');
      }
    } catch (e) {
      void this.requestFinish('error', e);
    } finally {
      const cpu = process.cpuUsage(cpu0);
      this.pollCpuWindow.add(cpu.user + cpu.system);
      this.pollWallWindow.add(hrUs() - t0);
      this.polls++;
    }
  }

  private async readTunedIntervals(): Promise<void> {
    try {
      this.tuned = await this.driver!.tunedIntervals();
    } catch (e) {
      // Stopped since the status read: the next poll reports it.
      if (!(await this.kdamondGone(e))) throw e;
    }
  }

  /** The schemes' statistics from the kernel, when the last read is old enough. */
  private async refreshSchemeStats(): Promise<void> {
    if (this.schemes.length === 0) return;
    const now = performance.now();
    if (this.statsReadAtMs !== undefined && now - this.statsReadAtMs < this.schemeStatsIntervalMs) return;
    try {
      this.stats = await readSchemeStats(this.driver!, this.firstScheme, this.schemes, this.stats);
      this.statsReadAtMs = now;
    } catch (e) {
      // Stopped since the status read: the next poll reports it.
      if (!(await this.kdamondGone(e))) throw e;
    }
  }

  /** Whether a collect error means the kdamond is no longer running (its state says off). */
  private async kdamondGone(e: unknown): Promise<boolean> {
    if (e instanceof KdamondNotRunningError) return true;
    if (!(e instanceof KernelFileError)) return false;
    try {
      return (await this.driver!.status()).pid === -1;
    } catch {
      return false;
    }
  }

  /** Targets whose process exited (or whose pid now names another process) leave with 'targetExited'. */
  private checkLiveness(): void {
    for (const [pid, ticks] of [...this.live]) {
      const p = probeProcess(pid, this.procRoot);
      if (!p.alive || p.startTicks !== ticks) {
        this.live.delete(pid);
        this.emit('targetExited', pid);
      }
    }
  }

  /**
   * Emits the records aggregation by aggregation, yielding to queued microtasks in between,
   * so that a listener that batches "one aggregation" in a microtask sees one at a time.
   */
  private async emitRecords(recs: SourceRecord[]): Promise<void> {
    const aggr = BigInt(this.attrs.aggregationUs) * 1000n;
    let i = 0;
    while (i < recs.length) {
      const n = recs[i].aggregation;
      let j = i;
      while (j < recs.length && recs[j].aggregation === n) j++;
      const group = recs.slice(i, j);
      i = j;
      this.noteAggregation(group[0].endNs, n, group.some((r) => r.afterGap));
      for (const r of group) {
        if (this.finishRequested) return;
        const pid = this.indexToPid[r.targetIndex];
        if (pid === undefined || !this.live.has(pid)) continue;
        const prev = this.lastEndNs.get(pid);
        // Back to back with the previous record when the kernel timed both and nothing was
        // lost in between, however long the kernel's interval really was (an overloaded or
        // emulated machine stretches them); otherwise it covers one interval before its end.
        const contiguous = this.source.kernelTimes && prev !== undefined && r.endNs > prev && !r.afterGap;
        const startNs = contiguous ? prev : r.endNs - aggr;
        this.lastEndNs.set(pid, r.endNs);
        const rec: AggregationRecord = { targetId: pid, startNs, endNs: r.endNs, maxNrAccesses: this.maxNr, regions: r.regions };
        if (!this.attrs.intervalsGoal) rec.samplingUs = this.attrs.samplingUs;
        this.records++;
        this.regions += r.regions.length;
        this.emit('aggregate', rec);
      }
      if (i < recs.length) await Promise.resolve();
    }
  }

  private noteAggregation(endNs: bigint, n: number, afterGap: boolean): void {
    if (n === this.lastAggregationNumber) return;
    this.lastAggregationNumber = n;
    this.aggregations++;
    const prev = this.lastAggregationEndNs;
    this.lastAggregationEndNs = endNs;
    if (prev === undefined || endNs <= prev) return;
    const gapUs = Number(endNs - prev) / 1000;
    this.aggregationWindow.add(gapUs);
    // With kernel times and no loss, the kernel's aggregations arrived back to back, however
    // long they took. Otherwise the time between two tells how many never reached us.
    if (this.source.kernelTimes && !afterGap) return;
    const missed = Math.round(gapUs / this.attrs.aggregationUs) - 1;
    this.missedAggregations += this.source.kernelTimes ? Math.max(1, missed) : Math.max(0, missed);
  }

  private sampleKdamondCpu(): void {
    if (this.kpid === undefined || this.kdamondCpuStartUs === undefined) return;
    const v = cpuUsOfTask(this.procRoot, this.kpid);
    if (v !== undefined) this.kdamondCpuLastUs = v;
  }

  private async finishBody(reason: StopReason, error?: unknown): Promise<void> {
    this.phase = 'stopping';
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.kpid !== undefined) {
      this.sampleKdamondCpu();
      this.offHrUs ??= hrUs();
    }
    let err = error === undefined ? undefined : error instanceof Error ? error : new Error(String(error));
    const cleanupErrors: Error[] = [];
    try {
      await this.source.end();
    } catch (e) {
      cleanupErrors.push(e instanceof Error ? e : new Error(String(e)));
    }
    if (this.driver !== undefined) {
      try {
        this._releaseReport = await this.driver.release();
      } catch (e) {
        cleanupErrors.push(e instanceof Error ? e : new Error(String(e)));
      }
    }
    this.unregisterExit?.();
    this.unregisterExit = undefined;
    // A failing cleanup is worth reporting, but not over the error that stopped us.
    if (cleanupErrors.length > 0 && err === undefined) {
      reason = 'error';
      err = cleanupErrors[0];
    }
    this.phase = 'stopped';
    this.resolveFinished();
    this.emit('stopped', reason, err);
  }

  /** Synchronous cleanup for process exit: trace instance, then our kdamond. */
  private cleanupSync(): void {
    let first: unknown;
    try {
      this.source.endSync();
    } catch (e) {
      first = e;
    }
    try {
      if (this.driver !== undefined) this._releaseReport = this.driver.releaseSync();
    } catch (e) {
      first ??= e;
    }
    if (first !== undefined) throw first;
  }
}
