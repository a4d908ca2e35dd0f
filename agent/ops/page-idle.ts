// The "page_idle" operations: real access checks of processes through idle page tracking
// (/proc/PID/pagemap, /proc/kpageflags and /sys/kernel/mm/page_idle/bitmap), done by the
// native library (native/src/damon_access.c). The user-space counterpart of the kernel's
// vaddr operations: regions from the three regions of /proc/PID/maps, one sampled page
// per region per sampling interval.
//
// One native call per target per sampling interval: checkAccesses checks the samples
// armed in the previous interval and arms the next ones in the same call, so
// prepareAccessChecks only arms regions whose sample the core invalidated (new regions,
// split children, regions trimmed by an update). Each target keeps the list of pages it
// armed (ArmedPages) so that the next check of a page still on the same frame skips
// kpageflags.
//
// sampleAggregation runs a whole aggregation's sampling intervals on the native sampler's
// thread (native-sampler.ts), with the same checks; the core's real-time loop uses it, so
// JavaScript wakes once per aggregation instead of once per sampling interval.
import fs from 'node:fs';
import { OperationsUnavailableError, TargetError, type Operations, type OpsContext, type SampledIntervals } from '../engine/operations.js';
import { isExitedState, parseProcStat } from './process-stat.js';
import { PAGE_SIZE, type Region, type Target } from '../engine/region.js';
import { MappingError, setRegions } from '../engine/set-regions.js';
import { initRegions, threeRegionsOfMaps } from './vaddr-regions.js';
import {
  ArmedPages,
  describeErrno,
  loadNativeAccess,
  NativeAccessError,
  type AccessFiles,
  type AccessStats,
  type NativeAccess,
  type OpenFile,
} from './native.js';
import { NativeSampler } from './native-sampler.js';
import { MadviseActuator } from './madvise-actuator.js';

export interface PageIdlePaths {
  /** procfs root: PID/maps, PID/pagemap, PID/stat and self/pagemap live under it. */
  proc: string;
  /** The idle page tracking bitmap. */
  bitmap: string;
  /** Per-PFN page flags (to find the head page of a huge page). */
  kpageflags: string;
}

export const DEFAULT_PAGE_IDLE_PATHS: Readonly<PageIdlePaths> = Object.freeze({
  proc: '/proc',
  bitmap: '/sys/kernel/mm/page_idle/bitmap',
  kpageflags: '/proc/kpageflags',
});

export interface PageIdleOptions extends Partial<PageIdlePaths> {
  /** The native library; default: native/build/libdamon_access.so. */
  libraryPath?: string;
}

/** Whether this host can run the page_idle operations, and if not, what is missing. */
export interface PageIdleProbe {
  usable: boolean;
  /** One sentence per missing piece: what is missing and how to get it. */
  missing: string[];
  /** "page_idle operations available", or the missing pieces in one line. */
  message: string;
}

/** Counts summed over every native call (see AccessStats). */
export type PageIdleCounters = AccessStats;

const CAP_SYS_ADMIN = 21;

interface TargetState {
  pid: number;
  pagemap: OpenFile;
  /** Field 22 of /proc/PID/stat at init: tells a reused pid from the monitored process. */
  startTime: string;
  // Reused per interval, grown on demand: the native call takes typed arrays.
  cur: Float64Array;
  next: Float64Array;
  accessed: Uint8Array;
  /** owner[i]: index of the region whose sample is cur[i]. */
  owner: Uint32Array;
  /** The pages armed for the target's samples, as the native calls left them. */
  armed: ArmedPages;
  /** Region bounds handed to the native sampler, grown on demand. */
  bounds: Float64Array;
}

function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (typeof err.errno === 'number') return describeErrno(Math.abs(err.errno)).text;
  return err.code ?? String((e as Error).message ?? e);
}

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ESRCH';
}

function openBitmap(path: string): number {
  try {
    return fs.openSync(path, 'r+');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new OperationsUnavailableError(
        'page_idle',
        `no ${path}: the kernel lacks idle page tracking (CONFIG_IDLE_PAGE_TRACKING=y)`,
      );
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new OperationsUnavailableError('page_idle', `${path} is not writable by this process: ${errnoText(e)}; run the agent as root`);
    }
    throw new OperationsUnavailableError('page_idle', `cannot open ${path}: ${errnoText(e)}`);
  }
}

function openKpageflags(path: string): number {
  try {
    return fs.openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new OperationsUnavailableError('page_idle', `no ${path}: the kernel lacks CONFIG_PROC_PAGE_MONITOR`);
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new OperationsUnavailableError('page_idle', `${path} is not readable by this process: ${errnoText(e)}; run the agent as root`);
    }
    throw new OperationsUnavailableError('page_idle', `cannot open ${path}: ${errnoText(e)}`);
  }
}

function checkPageSize(native: NativeAccess): void {
  if (native.pageSize !== PAGE_SIZE) {
    throw new OperationsUnavailableError(
      'page_idle',
      `this host's page size is ${native.pageSize} bytes; the engine works in ${PAGE_SIZE}-byte pages`,
    );
  }
}

const PFN_ZERO =
  'PFNs in /proc/PID/pagemap read as zero: this process lacks CAP_SYS_ADMIN; run the agent as root';

function reason(e: unknown): string {
  if (e instanceof OperationsUnavailableError) return e.message.replace(/^page_idle operations unavailable: /, '');
  throw e;
}

export class PageIdleOperations implements Operations {
  readonly name = 'page_idle';
  /** Schemes' actions through process_madvise(2) on each target's pidfd. */
  readonly actuator = new MadviseActuator('page_idle');
  readonly paths: Readonly<PageIdlePaths>;
  private readonly libraryPath: string | undefined;
  private native: NativeAccess | null = null;
  private bitmapFd = -1;
  private kpageflagsFd = -1;
  private readonly states = new Map<number, TargetState>();
  private readonly sums: PageIdleCounters = zeroCounters();
  private sampler: NativeSampler | null = null;
  /** CPU of samplers already closed, nanoseconds. */
  private closedSamplerCpuNs = 0;

  constructor(options: PageIdleOptions = {}) {
    const { libraryPath, ...paths } = options;
    this.paths = Object.freeze({ ...DEFAULT_PAGE_IDLE_PATHS, ...stripUndefined(paths) });
    this.libraryPath = libraryPath;
  }

  /**
   * Whether this host can run the page_idle operations: the native library, the bitmap
   * (CONFIG_IDLE_PAGE_TRACKING), /proc/kpageflags and visible PFNs (CAP_SYS_ADMIN).
   * Lists everything missing, not just the first.
   */
  static probe(paths: Partial<PageIdlePaths> = {}, libraryPath?: string): PageIdleProbe {
    const p = { ...DEFAULT_PAGE_IDLE_PATHS, ...stripUndefined(paths) };
    const missing: string[] = [];
    let native: NativeAccess | null = null;
    try {
      native = loadNativeAccess(libraryPath);
      checkPageSize(native);
    } catch (e) {
      missing.push(reason(e));
    }
    for (const open of [() => openBitmap(p.bitmap), () => openKpageflags(p.kpageflags)]) {
      try {
        fs.closeSync(open());
      } catch (e) {
        missing.push(reason(e));
      }
    }
    const pfn = pfnProblem(p.proc, native);
    if (pfn) missing.push(pfn);
    return {
      usable: missing.length === 0,
      missing,
      message: missing.length === 0 ? 'page_idle operations available' : `page_idle operations unavailable: ${missing.join('; ')}`,
    };
  }

  /** Counts over every native call so far: pages checked, armed, not present, untracked, ... */
  counters(): Readonly<PageIdleCounters> {
    return { ...this.sums };
  }

  init(ctx: OpsContext): void {
    this.native = loadNativeAccess(this.libraryPath);
    checkPageSize(this.native);
    if (this.bitmapFd < 0) this.bitmapFd = openBitmap(this.paths.bitmap);
    if (this.kpageflagsFd < 0) this.kpageflagsFd = openKpageflags(this.paths.kpageflags);
    for (const t of ctx.targets) this.setUp(ctx, t);
  }

  update(ctx: OpsContext): void {
    const live = new Set<number>();
    for (const t of ctx.targets) {
      live.add(t.id);
      const st = this.states.get(t.id);
      if (!st) {
        this.setUp(ctx, t);
        continue;
      }
      const text = this.readMaps(st.pid, true);
      // Empty maps: the process is exiting (a zombie has none); targetValid will say so.
      if (text === null || text.trim() === '') continue;
      t.regions = setRegions(t.regions, this.threeRegions(st.pid, text));
    }
    for (const [id, st] of this.states) {
      if (!live.has(id)) {
        fs.closeSync(st.pagemap.fd);
        this.states.delete(id);
      }
    }
  }

  prepareAccessChecks(ctx: OpsContext): void {
    const native = this.ready();
    for (const t of ctx.targets) {
      const st = this.states.get(t.id) ?? this.setUp(ctx, t);
      const regions = t.regions;
      ensureCapacity(st, regions.length);
      let n = 0;
      for (let i = 0; i < regions.length; i++) {
        const r = regions[i];
        if (r.samplingAddr >= r.start && r.samplingAddr < r.end) continue;
        st.next[n] = pickAddress(r, ctx);
        st.owner[n++] = i;
      }
      if (n === 0) continue;
      this.account(st, () => native.prepare(this.files(st), st.next, n, st.armed));
      // Only samples that were armed count as prepared.
      for (let i = 0; i < n; i++) regions[st.owner[i]].samplingAddr = st.next[i];
    }
  }

  checkAccesses(ctx: OpsContext): number {
    const native = this.ready();
    let max = 0;
    for (const t of ctx.targets) {
      const st = this.states.get(t.id) ?? this.setUp(ctx, t);
      const regions = t.regions;
      ensureCapacity(st, regions.length);
      let nCur = 0;
      for (let i = 0; i < regions.length; i++) {
        const r = regions[i];
        // A region without an armed sample (the core skipped prepare) has nothing to check.
        if (r.samplingAddr >= r.start && r.samplingAddr < r.end) {
          st.cur[nCur] = r.samplingAddr;
          st.owner[nCur++] = i;
        }
        st.next[i] = pickAddress(r, ctx);
      }
      this.account(st, () =>
        native.checkAndPrepare(this.files(st), st.cur, nCur, st.accessed, st.next, regions.length, st.armed),
      );
      for (let i = 0; i < nCur; i++) regions[st.owner[i]].nrAccesses += st.accessed[i];
      for (let i = 0; i < regions.length; i++) {
        const r = regions[i];
        r.samplingAddr = st.next[i];
        if (r.nrAccesses > max) max = r.nrAccesses;
      }
    }
    return max;
  }

  async sampleAggregation(ctx: OpsContext, nSamples: number, samplingUs: number): Promise<SampledIntervals> {
    const native = this.ready();
    this.sampler ??= new NativeSampler(native, ctx.random() * 2 ** 53);
    const targets = ctx.targets.map((t) => {
      const st = this.states.get(t.id) ?? this.setUp(ctx, t);
      const n = t.regions.length;
      if (st.bounds.length < 2 * n) st.bounds = new Float64Array(2 * Math.max(n, 16));
      for (let i = 0; i < n; i++) {
        st.bounds[2 * i] = t.regions[i].start;
        st.bounds[2 * i + 1] = t.regions[i].end;
      }
      return { target: t, st, spec: { files: this.files(st), bounds: st.bounds, count: n } };
    });
    const run = await this.sampler.run(targets.map((x) => x.spec), nSamples, samplingUs);
    if (run.stopped && run.targets.length === 0) return { samples: run.samples, wallUs: run.wallUs, busyUs: run.busyUs, late: run.late, stopped: true };
    let failure: Error | undefined;
    targets.forEach(({ target, st }, i) => {
      const res = run.targets[i];
      const regions = target.regions;
      for (let k = 0; k < regions.length; k++) {
        regions[k].nrAccesses += res.counts[k];
        // Nothing stays armed after a run: a per-sample step would arm afresh.
        regions[k].samplingAddr = -1;
      }
      for (const k of Object.keys(res.stats) as (keyof AccessStats)[]) this.sums[k] += res.stats[k];
      const e = res.error ? nativeFailure(st, res.error) : res.stats.pfnZero > 0 ? new OperationsUnavailableError('page_idle', PFN_ZERO) : undefined;
      // A failure of the host outranks a target's: the context must stop, not just drop the target.
      if (e !== undefined && (failure === undefined || failure instanceof TargetError)) failure = e;
    });
    if (failure) throw failure;
    return { samples: run.samples, wallUs: run.wallUs, busyUs: run.busyUs, late: run.late, stopped: run.stopped };
  }

  targetValid(target: Target): boolean {
    const path = `${this.paths.proc}/${target.id}/stat`;
    let text: string;
    try {
      text = fs.readFileSync(path, 'utf8');
    } catch (e) {
      if (isMissing(e)) return false;
      // It exists but cannot be read (EACCES...): the process is there.
      return true;
    }
    const { state, startTicks } = parseProcStat(text, path);
    if (isExitedState(state)) return false;
    const st = this.states.get(target.id);
    return st === undefined || st.startTime === startTicks;
  }

  /** CPU time the native sampling thread has used, nanoseconds (0 on the per-sample loop, which samples in JavaScript). */
  samplerCpuNs(): number {
    return this.closedSamplerCpuNs + (this.sampler?.cpuNs() ?? 0);
  }

  cleanup(): void {
    this.actuator.close();
    // First: the sampler's thread uses the files closed below.
    if (this.sampler) {
      this.sampler.close();
      this.closedSamplerCpuNs += this.sampler.cpuNs();
    }
    this.sampler = null;
    for (const st of this.states.values()) fs.closeSync(st.pagemap.fd);
    this.states.clear();
    if (this.bitmapFd >= 0) fs.closeSync(this.bitmapFd);
    if (this.kpageflagsFd >= 0) fs.closeSync(this.kpageflagsFd);
    this.bitmapFd = -1;
    this.kpageflagsFd = -1;
  }

  private ready(): NativeAccess {
    if (this.native === null || this.bitmapFd < 0 || this.kpageflagsFd < 0) {
      throw new Error('page_idle operations used before init() (or after cleanup())');
    }
    return this.native;
  }

  /** Opens the target's pagemap and, unless the user gave regions, builds its initial regions. */
  private setUp(ctx: OpsContext, t: Target): TargetState {
    this.ready();
    const pid = t.id;
    if (!Number.isSafeInteger(pid) || pid <= 0) throw new TargetError(pid, `not a process id: ${pid}`);
    const statPath = `${this.paths.proc}/${pid}/stat`;
    let statText: string;
    try {
      statText = fs.readFileSync(statPath, 'utf8');
    } catch (e) {
      if (isMissing(e)) throw new TargetError(pid, `no process with pid ${pid} (${statPath}: ${errnoText(e)})`);
      throw new TargetError(pid, `cannot read ${statPath}: ${errnoText(e)}`);
    }
    let stat: { state: string; startTicks: string };
    try {
      stat = parseProcStat(statText, statPath);
    } catch (e) {
      throw new TargetError(pid, (e as Error).message);
    }
    if (isExitedState(stat.state)) throw new TargetError(pid, `process ${pid} has exited (zombie)`);
    if (t.regions.length === 0) {
      // The kernel's vaddr keeps regions the user set; only an empty target gets the three regions.
      const text = this.readMaps(pid, false) as string;
      t.regions = initRegions(this.threeRegions(pid, text), ctx.attrs.minNrRegions);
    }
    const pagemapPath = `${this.paths.proc}/${pid}/pagemap`;
    let fd: number;
    try {
      fd = fs.openSync(pagemapPath, 'r');
    } catch (e) {
      throw new TargetError(pid, `cannot open ${pagemapPath}: ${errnoText(e)}`);
    }
    const old = this.states.get(pid);
    if (old) fs.closeSync(old.pagemap.fd);
    const st: TargetState = {
      pid,
      pagemap: { fd, path: pagemapPath },
      startTime: stat.startTicks,
      cur: new Float64Array(0),
      next: new Float64Array(0),
      accessed: new Uint8Array(0),
      owner: new Uint32Array(0),
      armed: new ArmedPages(),
      bounds: new Float64Array(0),
    };
    ensureCapacity(st, Math.max(t.regions.length, ctx.attrs.minNrRegions));
    this.states.set(pid, st);
    return st;
  }

  /** /proc/PID/maps text; null when `gone` is allowed and the process no longer exists. */
  private readMaps(pid: number, goneOk: boolean): string | null {
    const path = `${this.paths.proc}/${pid}/maps`;
    try {
      return fs.readFileSync(path, 'utf8');
    } catch (e) {
      if (goneOk && isMissing(e)) return null;
      if (isMissing(e)) throw new TargetError(pid, `no process with pid ${pid} (${path}: ${errnoText(e)})`);
      throw new TargetError(pid, `cannot read ${path}: ${errnoText(e)}`);
    }
  }

  private threeRegions(pid: number, mapsText: string) {
    try {
      return threeRegionsOfMaps(mapsText);
    } catch (e) {
      if (e instanceof MappingError) throw new TargetError(pid, `${this.paths.proc}/${pid}/maps: ${e.message}`);
      throw e;
    }
  }

  private files(st: TargetState): AccessFiles {
    return {
      pagemap: st.pagemap,
      kpageflags: { fd: this.kpageflagsFd, path: this.paths.kpageflags },
      bitmap: { fd: this.bitmapFd, path: this.paths.bitmap },
    };
  }

  /** Runs one native call: sums its counts, turns its failures into the engine's errors. */
  private account(st: TargetState, call: () => AccessStats): void {
    let s: AccessStats;
    try {
      s = call();
    } catch (e) {
      if (e instanceof NativeAccessError) throw nativeFailure(st, e);
      throw e;
    }
    for (const k of Object.keys(s) as (keyof AccessStats)[]) this.sums[k] += s[k];
    if (s.pfnZero > 0) throw new OperationsUnavailableError('page_idle', PFN_ZERO);
  }
}

/** A failed native call as the engine's error: the target's pagemap is the target's, the rest the host's. */
function nativeFailure(st: TargetState, e: NativeAccessError): Error {
  if (e.file === 'pagemap') return new TargetError(st.pid, e.message);
  return new OperationsUnavailableError('page_idle', e.message);
}

/** A random page of the region, by its first byte: only the page matters to the check. */
function pickAddress(r: Region, ctx: OpsContext): number {
  const pages = (r.end - r.start) / PAGE_SIZE;
  return r.start + Math.floor(ctx.random() * pages) * PAGE_SIZE;
}

/** Makes the per-target arrays hold n samples; their contents do not survive growing. */
function ensureCapacity(st: TargetState, n: number): void {
  if (st.next.length >= n) return;
  let cap = Math.max(16, st.next.length);
  while (cap < n) cap *= 2;
  st.cur = new Float64Array(cap);
  st.next = new Float64Array(cap);
  st.accessed = new Uint8Array(cap);
  st.owner = new Uint32Array(cap);
}

function zeroCounters(): PageIdleCounters {
  return {
    checked: 0,
    armed: 0,
    notPresent: 0,
    pfnZero: 0,
    untracked: 0,
    hugeTail: 0,
    short: 0,
    reused: 0,
    reverified: 0,
    pagemapReads: 0,
    kpageflagsReads: 0,
    bitmapReads: 0,
    bitmapWrites: 0,
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Why PFNs would read as zero here, or null if they show. With the native library it
 * reads this process's own pagemap entry of a present page; without it, it looks for
 * CAP_SYS_ADMIN in the effective capabilities.
 */
function pfnProblem(proc: string, native: NativeAccess | null): string | null {
  if (native !== null) {
    const path = `${proc}/self/pagemap`;
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (e) {
      return `cannot open ${path}: ${errnoText(e)}`;
    }
    try {
      const v = native.pfnVisible({ fd, path });
      if (v === 'visible') return null;
      if (v === 'zero') return PFN_ZERO;
      return `cannot tell whether PFNs are visible: ${path} shows this process's own stack page as not present`;
    } catch (e) {
      return (e as Error).message;
    } finally {
      fs.closeSync(fd);
    }
  }
  const path = `${proc}/self/status`;
  try {
    const m = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(fs.readFileSync(path, 'utf8'));
    if (m === null) return `cannot tell whether PFNs are visible: no CapEff line in ${path}`;
    return (BigInt(`0x${m[1]}`) >> BigInt(CAP_SYS_ADMIN)) & 1n ? null : PFN_ZERO;
  } catch (e) {
    return `cannot read ${path}: ${errnoText(e)}`;
  }
}
