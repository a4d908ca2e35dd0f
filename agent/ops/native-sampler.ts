// One monitoring context's sampling loop in native code (native/src/damon_sampler.c): a
// thread of the native library runs every sampling interval of an aggregation (pick,
// arm, check, count per region) on absolute CLOCK_MONOTONIC deadlines, so JavaScript
// wakes once per aggregation instead of once per sampling interval. JS hands it the
// regions, starts a run, and polls for its end on a timer set to the run's expected end:
// no libuv pool thread is held for the run, however many contexts an agent has.
import { describeErrno, STATS_BYTES, type AccessFiles, type AccessStats, type NativeAccess, type NativeAccessError, type SamplerFunctions } from './native.js';

/** One target of a run: its files and its regions as [start, end) pairs. */
export interface SamplerTarget {
  files: AccessFiles;
  /** bounds[2i], bounds[2i + 1]: start and end of region i. */
  bounds: Float64Array;
  count: number;
}

/** One target's outcome of a run. */
export interface SamplerTargetResult {
  /** nr_accesses of each region over the run. */
  counts: Uint32Array;
  stats: AccessStats;
  /** The failed call that ended this target's run early (its counts up to it are kept). */
  error: NativeAccessError | null;
}

export interface SamplerRun {
  targets: SamplerTargetResult[];
  /** Sampling intervals completed: the run's length unless stopped. */
  samples: number;
  /** Real time from arming the first samples to the end of the last check, microseconds. */
  wallUs: number;
  /** Time the checks took, sleeps excluded, microseconds: what the regions cost. */
  busyUs: number;
  /** Checks that ended a whole interval late (the schedule then restarted). */
  late: number;
  /** The run was cut short by stop() or close(). */
  stopped: boolean;
}

interface PendingRun {
  resolve: (r: SamplerRun) => void;
  timer: NodeJS.Timeout | undefined;
  nSamples: number;
  startMs: number;
}

// struct da_sampler_timing: start_ns, end_ns, busy_ns (uint64), samples, late, stopped, reserved (uint32).
const TIMING_BYTES = 40;
/** How often a run that has not ended by its expected end is polled again, ms. */
const POLL_MS = 1;

export class NativeSampler {
  private handle: unknown;
  private readonly fns: SamplerFunctions;
  private readonly bad = new Uint32Array(1);
  private readonly timingBuf = new ArrayBuffer(TIMING_BYTES);
  private readonly st = new Uint8Array(STATS_BYTES);
  private targets: SamplerTarget[] = [];
  private running: PendingRun | null = null;
  private lastCpuNs = 0;

  /** Starts the sampler's thread; `seed` places the samples (seeded runs repeat). */
  constructor(private readonly native: NativeAccess, seed: number) {
    this.fns = native.samplerFns;
    this.handle = this.fns.create(Math.floor(seed));
    if (this.handle === null) throw new Error('native sampler: cannot start its thread (out of memory or threads)');
  }

  /** False once closed. */
  get open(): boolean {
    return this.handle !== null;
  }

  /**
   * Runs nSamples sampling intervals of samplingUs over these targets (at least one,
   * sharing one kpageflags and bitmap) on the sampler's thread. Resolves when the run
   * ends, or at once with stopped = true once the sampler is closed.
   */
  run(targets: SamplerTarget[], nSamples: number, samplingUs: number): Promise<SamplerRun> {
    const h = this.live();
    if (this.running !== null) throw new Error('native sampler: a run is already going on');
    if (targets.length === 0) throw new RangeError('native sampler: no targets');
    if (!Number.isInteger(nSamples) || nSamples < 1 || nSamples > 0xffffffff) throw new RangeError(`native sampler: ${nSamples} samples`);
    const shared = targets[0].files;
    this.check(this.fns.setFiles(h, shared.kpageflags.fd, shared.bitmap.fd) as number, 'set the files');
    targets.forEach((t, i) => {
      if (t.count * 2 > t.bounds.length) throw new RangeError(`native sampler: ${t.count} regions do not fit ${t.bounds.length / 2}`);
      const r = this.fns.setTarget(h, targets.length, i, t.files.pagemap.fd, t.bounds, t.count, this.bad) as number;
      if (r === -22) {
        const k = this.bad[0];
        throw new RangeError(`native sampler: region ${k} [${t.bounds[2 * k]}, ${t.bounds[2 * k + 1]}) of ${t.files.pagemap.path} is empty, unaligned or out of range`);
      }
      this.check(r, 'set a target');
    });
    this.targets = targets;
    this.check(this.fns.start(h, nSamples, Math.round(samplingUs * 1000)) as number, 'start a run');
    return new Promise<SamplerRun>((resolve) => {
      const run: PendingRun = { resolve, timer: undefined, nSamples, startMs: performance.now() };
      this.running = run;
      // The checks end right after the last deadline: wake then, poll briefly if not yet.
      run.timer = setTimeout(() => this.poll(run), Math.max(0, Math.floor((nSamples * samplingUs) / 1000)));
    });
  }

  private poll(run: PendingRun): void {
    run.timer = undefined;
    if (this.running !== run) return;
    if (this.handle === null || (this.fns.done(this.handle) as number) === 1) {
      this.finish();
      return;
    }
    // Late (checks slower than the interval): sleep about as long as the remaining
    // samples take at the pace so far, then poll closely.
    const done = this.fns.progress(this.handle) as number;
    const left = done === 0 ? 0 : ((run.nSamples - done) * (performance.now() - run.startMs)) / done;
    run.timer = setTimeout(() => this.poll(run), Math.max(POLL_MS, Math.floor(left)));
  }

  /** Ends the current run at its next check or sleep; later runs end at once. */
  stop(): void {
    if (this.handle === null) return;
    this.fns.stop(this.handle);
    const run = this.running;
    if (run === null) return;
    // The poll was set for the run's full length: look again soon.
    if (run.timer !== undefined) clearTimeout(run.timer);
    run.timer = setTimeout(() => this.poll(run), POLL_MS);
  }

  /**
   * CPU time the sampler's thread has used, nanoseconds (its thread CPU clock): the
   * engine's own CPU, apart from the agent's other threads. Once closed, what it had used.
   */
  cpuNs(): number {
    if (this.handle !== null) {
      const ns = Number(this.fns.cpuNs(this.handle) as number | bigint);
      // Only a thread that is gone fails (pthread_getcpuclockid: ESRCH): keep the last value.
      if (ns >= 0) this.lastCpuNs = ns;
    }
    return this.lastCpuNs;
  }

  /** Stops the run, joins the thread, frees the sampler. The files stay open (they are the caller's). */
  close(): void {
    if (this.handle === null) return;
    this.cpuNs();
    this.fns.free(this.handle);
    this.handle = null;
    if (this.running !== null) this.finish();
  }

  private finish(): void {
    const run = this.running!;
    this.running = null;
    if (run.timer !== undefined) clearTimeout(run.timer);
    if (this.handle === null) {
      run.resolve({ targets: [], samples: 0, wallUs: 0, busyUs: 0, late: 0, stopped: true });
      return;
    }
    const results = this.targets.map((t, i): SamplerTargetResult => {
      const counts = new Uint32Array(t.count);
      const r = this.fns.result(this.handle, i, counts, this.st) as number;
      const { stats, error } = this.native.samplerOutcome(r, this.st, t.files);
      return { counts, stats, error };
    });
    this.check(this.fns.timing(this.handle, this.timingBuf) as number, 'read the timing');
    const u64 = new BigUint64Array(this.timingBuf, 0, 3);
    const u32 = new Uint32Array(this.timingBuf, 24, 3);
    run.resolve({
      targets: results,
      samples: u32[0],
      wallUs: Number(u64[1] - u64[0]) / 1000,
      busyUs: Number(u64[2]) / 1000,
      late: u32[1],
      stopped: u32[2] === 1,
    });
  }

  private live(): unknown {
    if (this.handle === null) throw new Error('native sampler used after close()');
    return this.handle;
  }

  private check(r: number, what: string): void {
    // Only a misuse of the sampler gets here (busy, never set, no memory): a bug or an exhausted host.
    if (r < 0) throw new Error(`native sampler: cannot ${what}: ${describeErrno(-r).text}`);
  }
}
