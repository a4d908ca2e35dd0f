// A fake kernel for the kdamond tests: DAMON's sysfs tree, a tracefs and a /proc as plain
// files in a temp dir, behind the KernelFiles interface. Every call goes to the real
// node:fs implementation on the temp dir, then the fake answers the way Linux 6.12 does:
// writing nr_kdamonds recreates every kdamond directory (EBUSY while one runs), nr_contexts
// / nr_targets / nr_schemes / nr_filters create their directories, "on" starts a "kdamond"
// (a pid in the state/pid files and a /proc entry), "update_schemes_tried_regions" dumps
// the regions a test set, "update_schemes_stats" copies the statistics a test set into
// each scheme's stats/, a tracefs instance gets its files on mkdir and refuses rmdir
// while its trace_pipe is open. The test makes the kdamond "report" with emitAggregation().
// Files, defaults and error codes are those seen on the rig's real 6.12 kernel
// (test/guest/kdamond.test.ts checks the same behaviour there): e.g. update_us defaults
// to 60 s, and "off" answers EINVAL for a kdamond never turned on but EPERM for one that
// ran and stopped by itself. The real kernel also answers reads of pid and state with
// EBUSY while a command holds DAMON's sysfs lock; commands here finish at once, so tests
// inject that with failOn(..., 'read').
//
// Nothing here ever touches a path outside the temp dir: every call checks that first.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KernelFileError, NodeKernelFiles, type KernelFiles, type PipeReader } from '../../agent/kdamond/kernel-files.js';
import type { RegionRecord } from '../../agent/records/record.js';

export type FakeOp = { op: 'write'; path: string; value: string } | { op: 'mkdir' | 'rmdir'; path: string };

export interface FakeKernelOptions {
  /** Create the DAMON sysfs tree (default true). */
  damon?: boolean;
  /** Create tracefs with the damon_aggregated event (default true). */
  tracefs?: boolean;
  /** Contents of /proc/kallsyms; null for none. Default: vaddr symbols present. */
  kallsyms?: string | null;
  /** avail_operations of new contexts (default "vaddr\nfvaddr\npaddr"). */
  availOperations?: string;
  /** Contexts have monitoring_attrs/intervals/intervals_goal (Linux 6.15+; default false, as 6.12). */
  intervalsGoal?: boolean;
}

export const KALLSYMS_WITH_VADDR =
  'ffffffff81000000 T _stext\nffffffff8169db60 T damon_start\nffffffff816a0010 t damon_va_check_accesses\nffffffff816a0200 t damon_va_init\n';
export const KALLSYMS_WITHOUT_VADDR = 'ffffffff81000000 T _stext\nffffffff8169db60 T damon_start\nffffffff816b0010 t damon_pa_check_accesses\n';

function statLine(pid: number, name: string, state: string, startTicks: number, utime = 0, stime = 0): string {
  // Fields 3.. after the comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...
  const rest = [state, 2, 0, 0, 0, -1, 2129984, 0, 0, 0, 0, utime, stime, 0, 0, 20, 0, 1, 0, startTicks, 0, 0];
  return `${pid} (${name}) ${rest.join(' ')}\n`;
}

export class FakeKernel implements KernelFiles {
  readonly root: string;
  readonly sysfsRoot: string;
  readonly tracefsRoot: string;
  readonly procRoot: string;
  /** Every write, mkdir and rmdir, in order, with paths relative to root. */
  readonly log: FakeOp[] = [];
  /** What "update_tuned_intervals" (intervalsGoal kernels) writes into sample_us and aggr_us. */
  tunedIntervals = { sampleUs: 2_500, aggrUs: 50_000 };
  /** Regions "update_schemes_tried_regions" dumps, per target index. */
  triedRegions: RegionRecord[][] = [];
  /** What "update_schemes_stats" writes into schemes/<N>/stats/<file>, per scheme index N (file -> value). */
  schemeStats: Record<number, Partial<Record<'nr_tried' | 'sz_tried' | 'nr_applied' | 'sz_applied' | 'qt_exceeds', string>>> = {};
  nextKdamondPid = 9001;
  private readonly real = new NodeKernelFiles();
  private readonly openPipes = new Map<string, number>();
  private readonly failures = new Map<string, { code: string; times: number }>();
  private readonly availOperations: string;
  private readonly intervalsGoal: boolean;
  private autoTimer: NodeJS.Timeout | undefined;
  /** kdamond directories turned on at least once since they were created (the kernel keeps their context). */
  private readonly ran = new Set<string>();

  constructor(o: FakeKernelOptions = {}) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'kdamond-fake-'));
    this.sysfsRoot = path.join(this.root, 'sys/kernel/mm/damon');
    this.tracefsRoot = path.join(this.root, 'sys/kernel/tracing');
    this.procRoot = path.join(this.root, 'proc');
    this.availOperations = o.availOperations ?? 'vaddr\nfvaddr\npaddr';
    this.intervalsGoal = o.intervalsGoal ?? false;
    fs.mkdirSync(this.procRoot, { recursive: true });
    if (o.damon !== false) {
      fs.mkdirSync(path.join(this.sysfsRoot, 'admin/kdamonds'), { recursive: true });
      this.put('sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds', '0');
    }
    if (o.tracefs !== false) {
      fs.mkdirSync(path.join(this.tracefsRoot, 'instances'), { recursive: true });
      fs.mkdirSync(path.join(this.tracefsRoot, 'events/damon/damon_aggregated'), { recursive: true });
      this.put('sys/kernel/tracing/events/damon/damon_aggregated/enable', '0');
      this.put('sys/kernel/tracing/trace_pipe', '');
    }
    const kallsyms = o.kallsyms === undefined ? KALLSYMS_WITH_VADDR : o.kallsyms;
    if (kallsyms !== null) fs.writeFileSync(path.join(this.procRoot, 'kallsyms'), kallsyms);
  }

  remove(): void {
    this.stopAutoAggregate();
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  // ---- setting the scene ------------------------------------------------------------------

  /** Writes a file of the fake tree directly (not logged: this is "the kernel" or "another user"). */
  put(rel: string, content: string): void {
    const p = path.join(this.root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content === '' ? '' : `${content}\n`);
  }

  get(rel: string): string {
    return fs.readFileSync(path.join(this.root, rel), 'utf8').trim();
  }

  exists(p: string): Promise<boolean> {
    return this.real.exists(this.check(p));
  }

  has(rel: string): boolean {
    return fs.existsSync(path.join(this.root, rel));
  }

  addProcess(pid: number, startTicks = 4242): void {
    this.put(`proc/${pid}/stat`, statLine(pid, 'workload', 'S', startTicks).trimEnd());
  }

  killProcess(pid: number): void {
    fs.rmSync(path.join(this.procRoot, String(pid)), { recursive: true, force: true });
  }

  /** The next `times` writes (or reads) of `rel` fail with `code` (EBUSY, EINVAL...). */
  failOn(rel: string, code: string, times = 1, op: 'write' | 'read' = 'write'): void {
    this.failures.set(`${op}:${path.join(this.root, rel)}`, { code, times });
  }

  /** Another user's kdamond directory (as if they had written nr_kdamonds), on or off. */
  addForeignKdamond(state: 'on' | 'off', pid = 777): void {
    const nrRel = 'sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds';
    const k = Number(this.get(nrRel));
    this.makeKdamond(k);
    this.put(nrRel, String(k + 1));
    const dir = `sys/kernel/mm/damon/admin/kdamonds/${k}`;
    this.writeNrContexts(path.join(this.root, dir, 'contexts'), 1);
    this.put(`${dir}/contexts/0/operations`, 'paddr');
    if (state === 'on') {
      this.put(`${dir}/state`, 'on');
      this.put(`${dir}/pid`, String(pid));
    }
  }

  /** Another user rewrites nr_kdamonds (the kernel recreates every kdamond directory). */
  otherUserWritesNrKdamonds(n: number): void {
    this.recreateKdamonds(n);
  }

  /** Someone turns kdamond `k` off (or the kernel stops it because every target exited). */
  kdamondStops(k = 0): void {
    const dir = `sys/kernel/mm/damon/admin/kdamonds/${k}`;
    this.put(`${dir}/state`, 'off');
    this.put(`${dir}/pid`, '-1');
  }

  /** Someone turns kdamond `k` on again: a new thread. */
  kdamondRestartedBySomeoneElse(k = 0): number {
    const pid = this.nextKdamondPid++;
    const dir = `sys/kernel/mm/damon/admin/kdamonds/${k}`;
    this.put(`${dir}/state`, 'on');
    this.put(`${dir}/pid`, String(pid));
    return pid;
  }

  /** The kdamond thread's CPU time in /proc (ticks of 10 ms). */
  setKdamondCpuTicks(pid: number, utime: number, stime: number): void {
    this.put(`proc/${pid}/stat`, statLine(pid, 'kdamond.0', 'S', 1, utime, stime).trimEnd());
  }

  /** The pid in kdamonds/<k>/pid, or -1. */
  kdamondPid(k = 0): number {
    return Number(this.get(`sys/kernel/mm/damon/admin/kdamonds/${k}/pid`));
  }

  /** Instances directories under tracefs. */
  instances(): string[] {
    return fs.readdirSync(path.join(this.tracefsRoot, 'instances'));
  }

  /**
   * The kdamond `pid` reports one aggregation: one damon_aggregated line per region, target
   * by target, into every trace instance whose event is enabled and whose filter lets pid in.
   */
  emitAggregation(regionsPerTarget: RegionRecord[][], o: { pid?: number; tsNs?: bigint; only?: (line: number) => boolean } = {}): void {
    const pid = o.pid ?? this.kdamondPid(0);
    const ts = o.tsNs ?? process.hrtime.bigint();
    const stamp = `${ts / 1_000_000_000n}.${String((ts % 1_000_000_000n) / 1000n).padStart(6, '0')}`;
    const lines: string[] = [];
    regionsPerTarget.forEach((regions, t) => {
      for (const r of regions) {
        lines.push(
          `       kdamond.0-${pid}    [001] .....  ${stamp}: damon_aggregated: target_id=${t} nr_regions=${regions.length} ${r.start}-${r.end}: ${r.nrAccesses} ${r.age}`,
        );
      }
    });
    const kept = o.only ? lines.filter((_, i) => o.only!(i)) : lines;
    this.appendTrace(kept, pid);
  }

  /** Raw lines into every enabled instance's trace_pipe (pid decides the filter). */
  appendTrace(lines: string[], pid: number): void {
    for (const name of this.instances()) {
      const inst = path.join(this.tracefsRoot, 'instances', name);
      const ev = path.join(inst, 'events/damon/damon_aggregated');
      if (fs.readFileSync(path.join(ev, 'enable'), 'utf8').trim() !== '1') continue;
      const filter = fs.readFileSync(path.join(ev, 'filter'), 'utf8').trim();
      const m = /^common_pid == (\d+)$/.exec(filter);
      if (m && Number(m[1]) !== pid) continue;
      if (lines.length > 0) fs.appendFileSync(path.join(inst, 'trace_pipe'), lines.map((l) => `${l}\n`).join(''));
    }
  }

  /** While kdamond 0 runs, report `regionsPerTarget()` every `ms` (and keep them as tried regions). */
  autoAggregate(ms: number, regionsPerTarget: () => RegionRecord[][]): void {
    this.stopAutoAggregate();
    this.autoTimer = setInterval(() => {
      if (!this.has('sys/kernel/mm/damon/admin/kdamonds/0/state')) return;
      if (this.get('sys/kernel/mm/damon/admin/kdamonds/0/state') !== 'on') return;
      const regions = regionsPerTarget();
      this.triedRegions = regions;
      this.emitAggregation(regions);
    }, ms);
  }

  stopAutoAggregate(): void {
    if (this.autoTimer !== undefined) clearInterval(this.autoTimer);
    this.autoTimer = undefined;
  }

  /** Every file under root except those under the given relative prefixes: path -> content. */
  snapshot(exclude: string[] = []): Map<string, string> {
    const out = new Map<string, string>();
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        const rel = path.relative(this.root, p);
        if (exclude.some((x) => rel === x || rel.startsWith(`${x}/`))) continue;
        if (e.isDirectory()) {
          out.set(`${rel}/`, '');
          walk(p);
        } else out.set(rel, fs.readFileSync(p, 'utf8'));
      }
    };
    walk(this.root);
    return out;
  }

  /** Paths of logged operations of one kind. */
  written(): { path: string; value: string }[] {
    return this.log.flatMap((e) => (e.op === 'write' ? [{ path: e.path, value: e.value }] : []));
  }

  // ---- KernelFiles ------------------------------------------------------------------------

  private check(p: string): string {
    const abs = path.resolve(p);
    if (abs !== this.root && !abs.startsWith(`${this.root}/`)) {
      throw new Error(`FakeKernel: ${p} is outside the fake tree ${this.root}; refusing to touch it`);
    }
    return abs;
  }

  private injected(abs: string, op: KernelFileError['op'], value?: string): void {
    const f = this.failures.get(`${op}:${abs}`);
    if (f === undefined || f.times <= 0) return;
    f.times--;
    throw new KernelFileError(op, abs, f.code, value === undefined ? f.code : `writing "${value}" failed with ${f.code}`);
  }

  async read(p: string): Promise<string> {
    const abs = this.check(p);
    this.injected(abs, 'read');
    return this.real.read(abs);
  }

  readSync(p: string): string {
    const abs = this.check(p);
    this.injected(abs, 'read');
    return this.real.readSync(abs);
  }

  async list(p: string): Promise<string[]> {
    return this.real.list(this.check(p));
  }

  async write(p: string, value: string): Promise<void> {
    this.writeSync(p, value);
  }

  writeSync(p: string, value: string): void {
    const abs = this.check(p);
    this.log.push({ op: 'write', path: path.relative(this.root, abs), value });
    this.injected(abs, 'write', value);
    const fail = (code: string): never => {
      throw new KernelFileError('write', abs, code, `writing "${value}" failed with ${code}`);
    };
    if (!fs.existsSync(abs)) fail('ENOENT');
    const base = path.basename(abs);
    const dir = path.dirname(abs);
    const v = value.trim();
    if (abs === path.join(this.sysfsRoot, 'admin/kdamonds/nr_kdamonds')) {
      if (!/^\d+$/.test(v)) fail('EINVAL');
      if (this.anyKdamondOn()) fail('EBUSY');
      this.recreateKdamonds(Number(v));
      return;
    }
    if (abs.startsWith(`${this.sysfsRoot}/`)) {
      if (base === 'state') return this.stateCommand(dir, v, fail);
      if (base === 'nr_contexts') return this.writeNrContexts(dir, Number(v));
      if (base === 'nr_targets') return this.writeNrTargets(dir, Number(v));
      if (base === 'nr_schemes') return this.writeNrSchemes(dir, Number(v));
      if (base === 'nr_filters') return this.writeNrFilters(dir, Number(v));
      if (base === 'pid' || base === 'avail_operations') fail('EACCES');
    }
    if (base === 'trace_clock') {
      // Reads back as the list of clocks with the chosen one in brackets.
      const clocks = ['local', 'global', 'counter', 'uptime', 'perf', 'mono', 'mono_raw', 'boot', 'tai', 'x86-tsc'];
      if (!clocks.includes(v)) fail('EINVAL');
      fs.writeFileSync(abs, `${clocks.map((c) => (c === v ? `[${c}]` : c)).join(' ')}\n`);
      return;
    }
    fs.writeFileSync(abs, `${v}\n`);
  }

  async mkdir(p: string): Promise<void> {
    const abs = this.check(p);
    this.log.push({ op: 'mkdir', path: path.relative(this.root, abs) });
    await this.real.mkdir(abs);
    if (path.dirname(abs) === path.join(this.tracefsRoot, 'instances')) {
      const ev = path.join(abs, 'events/damon/damon_aggregated');
      fs.mkdirSync(ev, { recursive: true });
      fs.writeFileSync(path.join(ev, 'enable'), '0\n');
      fs.writeFileSync(path.join(ev, 'filter'), 'none\n');
      fs.writeFileSync(path.join(abs, 'trace_clock'), '[local] global counter uptime perf mono mono_raw boot tai x86-tsc\n');
      fs.writeFileSync(path.join(abs, 'trace_pipe'), '');
      fs.writeFileSync(path.join(abs, 'buffer_size_kb'), '7\n');
    }
  }

  async rmdir(p: string): Promise<void> {
    this.rmdirSync(p);
  }

  rmdirSync(p: string): void {
    const abs = this.check(p);
    this.log.push({ op: 'rmdir', path: path.relative(this.root, abs) });
    if (path.dirname(abs) === path.join(this.tracefsRoot, 'instances')) {
      if ((this.openPipes.get(abs) ?? 0) > 0) throw new KernelFileError('rmdir', abs, 'EBUSY', 'EBUSY: device or resource busy');
      fs.rmSync(abs, { recursive: true });
      return;
    }
    this.real.rmdirSync(abs);
  }

  async openPipe(p: string): Promise<PipeReader> {
    const abs = this.check(p);
    const inner = await this.real.openPipe(abs);
    const inst = path.dirname(abs);
    this.openPipes.set(inst, (this.openPipes.get(inst) ?? 0) + 1);
    let open = true;
    const closed = () => {
      if (open) this.openPipes.set(inst, (this.openPipes.get(inst) ?? 1) - 1);
      open = false;
    };
    return {
      readAvailable: (max) => inner.readAvailable(max),
      close: async () => {
        await inner.close();
        closed();
      },
      closeSync: () => {
        inner.closeSync();
        closed();
      },
    };
  }

  /** trace_pipe files still open. */
  get openPipeCount(): number {
    return [...this.openPipes.values()].reduce((a, b) => a + b, 0);
  }

  // ---- the kernel's answers -----------------------------------------------------------------

  private anyKdamondOn(): boolean {
    const dir = path.join(this.sysfsRoot, 'admin/kdamonds');
    return fs
      .readdirSync(dir)
      .filter((n) => /^\d+$/.test(n))
      .some((n) => fs.readFileSync(path.join(dir, n, 'state'), 'utf8').trim() === 'on');
  }

  private recreateKdamonds(n: number): void {
    const dir = path.join(this.sysfsRoot, 'admin/kdamonds');
    this.ran.clear();
    for (const name of fs.readdirSync(dir)) if (/^\d+$/.test(name)) fs.rmSync(path.join(dir, name), { recursive: true });
    for (let k = 0; k < n; k++) this.makeKdamond(k);
    fs.writeFileSync(path.join(dir, 'nr_kdamonds'), `${n}\n`);
  }

  private makeKdamond(k: number): void {
    const d = path.join(this.sysfsRoot, 'admin/kdamonds', String(k));
    fs.mkdirSync(path.join(d, 'contexts'), { recursive: true });
    fs.writeFileSync(path.join(d, 'state'), 'off\n');
    fs.writeFileSync(path.join(d, 'pid'), '-1\n');
    fs.writeFileSync(path.join(d, 'contexts/nr_contexts'), '0\n');
  }

  private recreateNumbered(dir: string, n: number, make: (d: string, i: number) => void, countFile: string): void {
    for (const name of fs.readdirSync(dir)) if (/^\d+$/.test(name)) fs.rmSync(path.join(dir, name), { recursive: true });
    for (let i = 0; i < n; i++) {
      const d = path.join(dir, String(i));
      fs.mkdirSync(d, { recursive: true });
      make(d, i);
    }
    fs.writeFileSync(path.join(dir, countFile), `${n}\n`);
  }

  private writeNrContexts(dir: string, n: number): void {
    this.recreateNumbered(
      dir,
      n,
      (d) => {
        const w = (rel: string, v: string) => {
          fs.mkdirSync(path.dirname(path.join(d, rel)), { recursive: true });
          fs.writeFileSync(path.join(d, rel), `${v}\n`);
        };
        w('avail_operations', this.availOperations);
        w('operations', 'vaddr');
        w('monitoring_attrs/intervals/sample_us', '5000');
        w('monitoring_attrs/intervals/aggr_us', '100000');
        w('monitoring_attrs/intervals/update_us', '60000000');
        if (this.intervalsGoal) {
          // Linux 6.15's defaults: tuning off (aggrs 0).
          w('monitoring_attrs/intervals/intervals_goal/access_bp', '0');
          w('monitoring_attrs/intervals/intervals_goal/aggrs', '0');
          w('monitoring_attrs/intervals/intervals_goal/min_sample_us', '0');
          w('monitoring_attrs/intervals/intervals_goal/max_sample_us', '0');
        }
        w('monitoring_attrs/nr_regions/min', '10');
        w('monitoring_attrs/nr_regions/max', '1000');
        w('targets/nr_targets', '0');
        w('schemes/nr_schemes', '0');
      },
      'nr_contexts',
    );
  }

  private writeNrTargets(dir: string, n: number): void {
    this.recreateNumbered(
      dir,
      n,
      (d) => {
        fs.writeFileSync(path.join(d, 'pid_target'), '0\n');
        fs.mkdirSync(path.join(d, 'regions'));
        fs.writeFileSync(path.join(d, 'regions/nr_regions'), '0\n');
      },
      'nr_targets',
    );
  }

  private writeNrSchemes(dir: string, n: number): void {
    this.recreateNumbered(
      dir,
      n,
      (d) => {
        const w = (rel: string, v: string) => {
          fs.mkdirSync(path.dirname(path.join(d, rel)), { recursive: true });
          fs.writeFileSync(path.join(d, rel), `${v}\n`);
        };
        w('action', 'stat');
        w('apply_interval_us', '0');
        w('target_nid', '-1');
        for (const r of ['sz', 'nr_accesses', 'age']) {
          w(`access_pattern/${r}/min`, '0');
          w(`access_pattern/${r}/max`, '0');
        }
        for (const q of ['ms', 'bytes', 'reset_interval_ms', 'effective_bytes', 'weights/sz_permil', 'weights/nr_accesses_permil', 'weights/age_permil']) {
          w(`quotas/${q}`, '0');
        }
        w('quotas/goals/nr_goals', '0');
        w('watermarks/metric', 'none');
        for (const m of ['interval_us', 'high', 'mid', 'low']) w(`watermarks/${m}`, '0');
        w('filters/nr_filters', '0');
        for (const st of ['nr_tried', 'sz_tried', 'nr_applied', 'sz_applied', 'qt_exceeds']) w(`stats/${st}`, '0');
        w('tried_regions/total_bytes', '0');
      },
      'nr_schemes',
    );
  }

  private writeNrFilters(dir: string, n: number): void {
    this.recreateNumbered(
      dir,
      n,
      (d) => {
        for (const [f, v] of [
          ['type', 'anon'],
          ['matching', 'N'],
          ['memcg_path', ''],
          ['addr_start', '0'],
          ['addr_end', '0'],
          ['damon_target_idx', '0'],
        ]) {
          fs.writeFileSync(path.join(d, f), `${v}\n`);
        }
      },
      'nr_filters',
    );
  }

  private stateCommand(kdamondDir: string, cmd: string, fail: (code: string) => never): void {
    const state = fs.readFileSync(path.join(kdamondDir, 'state'), 'utf8').trim();
    const ctx = path.join(kdamondDir, 'contexts/0');
    if (cmd === 'on') {
      if (state === 'on') fail('EBUSY');
      if (fs.readFileSync(path.join(kdamondDir, 'contexts/nr_contexts'), 'utf8').trim() !== '1') fail('EINVAL');
      const ops = fs.readFileSync(path.join(ctx, 'operations'), 'utf8').trim();
      if (!this.availOperations.split(/\s+/).includes(ops)) fail('EINVAL');
      const nt = Number(fs.readFileSync(path.join(ctx, 'targets/nr_targets'), 'utf8'));
      for (let i = 0; i < nt; i++) {
        const pid = fs.readFileSync(path.join(ctx, `targets/${i}/pid_target`), 'utf8').trim();
        if (!fs.existsSync(path.join(this.procRoot, pid))) fail('EINVAL');
      }
      const kpid = this.nextKdamondPid++;
      this.ran.add(kdamondDir);
      fs.writeFileSync(path.join(kdamondDir, 'state'), 'on\n');
      fs.writeFileSync(path.join(kdamondDir, 'pid'), `${kpid}\n`);
      this.setKdamondCpuTicks(kpid, 0, 0);
      return;
    }
    if (cmd === 'off') {
      // No context yet: EINVAL; a context whose thread already ended: EPERM (damon_stop).
      if (state !== 'on') fail(this.ran.has(kdamondDir) ? 'EPERM' : 'EINVAL');
      fs.writeFileSync(path.join(kdamondDir, 'state'), 'off\n');
      fs.writeFileSync(path.join(kdamondDir, 'pid'), '-1\n');
      return;
    }
    if (cmd === 'update_tuned_intervals') {
      if (!this.intervalsGoal || state !== 'on') fail('EINVAL');
      fs.writeFileSync(path.join(ctx, 'monitoring_attrs/intervals/sample_us'), `${this.tunedIntervals.sampleUs}\n`);
      fs.writeFileSync(path.join(ctx, 'monitoring_attrs/intervals/aggr_us'), `${this.tunedIntervals.aggrUs}\n`);
      return;
    }
    if (cmd === 'update_schemes_stats') {
      if (state !== 'on') fail('EINVAL');
      const schemes = path.join(ctx, 'schemes');
      const ns = Number(fs.readFileSync(path.join(schemes, 'nr_schemes'), 'utf8'));
      for (let s = 0; s < ns; s++) {
        for (const [f, v] of Object.entries(this.schemeStats[s] ?? {})) fs.writeFileSync(path.join(schemes, String(s), 'stats', f), `${v}\n`);
      }
      return;
    }
    if (cmd === 'update_schemes_tried_regions') {
      if (state !== 'on') fail('EINVAL');
      const schemes = path.join(ctx, 'schemes');
      const ns = Number(fs.readFileSync(path.join(schemes, 'nr_schemes'), 'utf8'));
      for (let s = 0; s < ns; s++) {
        const sd = path.join(schemes, String(s));
        // Which targets' regions this scheme is tried on: a "target" filter with matching N keeps one.
        let targets = this.triedRegions.map((_, i) => i);
        const nf = Number(fs.readFileSync(path.join(sd, 'filters/nr_filters'), 'utf8'));
        for (let f = 0; f < nf; f++) {
          const fd = path.join(sd, `filters/${f}`);
          const type = fs.readFileSync(path.join(fd, 'type'), 'utf8').trim();
          const matching = fs.readFileSync(path.join(fd, 'matching'), 'utf8').trim();
          const idx = Number(fs.readFileSync(path.join(fd, 'damon_target_idx'), 'utf8'));
          if (type === 'target') targets = targets.filter((t) => (t === idx) !== (matching === 'Y'));
        }
        const regions = targets.flatMap((t) => this.triedRegions[t]);
        const td = path.join(sd, 'tried_regions');
        this.recreateNumbered(
          td,
          regions.length,
          (d, i) => {
            const r = regions[i];
            fs.writeFileSync(path.join(d, 'start'), `${r.start}\n`);
            fs.writeFileSync(path.join(d, 'end'), `${r.end}\n`);
            fs.writeFileSync(path.join(d, 'nr_accesses'), `${r.nrAccesses}\n`);
            fs.writeFileSync(path.join(d, 'age'), `${r.age}\n`);
          },
          'total_bytes',
        );
        fs.writeFileSync(path.join(td, 'total_bytes'), `${regions.reduce((a, r) => a + r.end - r.start, 0)}\n`);
      }
      return;
    }
    fail('EINVAL');
  }
}
