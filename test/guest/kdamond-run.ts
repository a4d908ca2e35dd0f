// Runs INSIDE the guest: the kdamond engine (agent/kdamond/) against the real Linux 6.12
// DAMON sysfs interface and tracefs, to check what the fake kernel of the unit tests
// (test/unit/kdamond-fake-kernel.ts) claims: the probe without /proc/kallsyms, the exact
// write sequence, the kdamond pid right after "on", the trace instance with the mono clock
// and the common_pid filter, cleanup, the stat schemes' target filters of the tried_regions
// source, what happens when one of two targets exits and then the other, and the errors
// the kernel gives. Prints one JSON object (KdamondRunReport); kdamond.test.ts judges it.
//
// Usage: node dist/test/guest/kdamond-run.js --workload BIN
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { DEFAULT_ATTRS } from '../../agent/engine/attrs.js';
import type { StopReason } from '../../agent/engine/context.js';
import { KdamondContext, type KdamondCosts } from '../../agent/kdamond/kdamond-context.js';
import { KdamondDriver, type ReleaseReport } from '../../agent/kdamond/kdamond-driver.js';
import { NodeKernelFiles, type KernelFiles, type PipeReader } from '../../agent/kdamond/kernel-files.js';
import type { KdamondProbe } from '../../agent/kdamond/probe.js';
import type { RecordSourceName } from '../../agent/kdamond/record-source.js';
import { recordToJson, type RecordJson } from './record-json.js';
import type { AddressRange } from './workload.js';
import { WorkloadProcess } from './workload-process.js';

const SYSFS = '/sys/kernel/mm/damon';
const TRACEFS = '/sys/kernel/tracing';
const KD = `${SYSFS}/admin/kdamonds`;
const INSTANCE = 'kdamond-run';

export type LoggedOp = { op: 'write'; path: string; value: string } | { op: 'mkdir' | 'rmdir'; path: string };

/** The real kernel files, logging every change (paths relative to /sys/kernel). */
class LoggingFiles implements KernelFiles {
  readonly log: LoggedOp[] = [];
  private readonly real = new NodeKernelFiles();
  private rel(p: string): string {
    return p.replace(/^\/sys\/kernel\//, '');
  }
  read(p: string): Promise<string> {
    return this.real.read(p);
  }
  write(p: string, value: string): Promise<void> {
    this.log.push({ op: 'write', path: this.rel(p), value });
    return this.real.write(p, value);
  }
  list(p: string): Promise<string[]> {
    return this.real.list(p);
  }
  exists(p: string): Promise<boolean> {
    return this.real.exists(p);
  }
  mkdir(p: string): Promise<void> {
    this.log.push({ op: 'mkdir', path: this.rel(p) });
    return this.real.mkdir(p);
  }
  rmdir(p: string): Promise<void> {
    this.log.push({ op: 'rmdir', path: this.rel(p) });
    return this.real.rmdir(p);
  }
  openPipe(p: string): Promise<PipeReader> {
    return this.real.openPipe(p);
  }
  readSync(p: string): string {
    return this.real.readSync(p);
  }
  writeSync(p: string, value: string): void {
    this.log.push({ op: 'write', path: this.rel(p), value });
    this.real.writeSync(p, value);
  }
  rmdirSync(p: string): void {
    this.log.push({ op: 'rmdir', path: this.rel(p) });
    this.real.rmdirSync(p);
  }
}

export interface WorkloadInfo {
  pid: number;
  mapping: AddressRange;
  hot: AddressRange[];
}

export interface SourceRun {
  source: RecordSourceName;
  startMs: number;
  kdamondPid: number | undefined;
  /** /proc/<kdamond pid>/comm right after start. */
  kdamondComm: string;
  /** The instance's trace_clock and event filter as the kernel reads them back (tracepoint). */
  traceClock?: string;
  eventFilter?: string;
  workloads: WorkloadInfo[];
  /** Records with the wall-clock time they were emitted (Date.now()). */
  records: { atMs: number; record: RecordJson }[];
  exited: { pid: number; atMs: number }[];
  /**
   * kdamond 0's state and pid read right after the first target exited (the other still
   * runs); "unreadable (EBUSY)" when a command of the context held DAMON's sysfs lock.
   */
  stateAfterFirstExit: string;
  pidAfterFirstExit: string;
  killedAtMs: number[];
  stop: { reason: StopReason; error?: string; atMs: number };
  release: ReleaseReport | undefined;
  costs: KdamondCosts;
  log: LoggedOp[];
  nrKdamondsAfter: string;
  instancesAfter: string[];
}

export interface KdamondRunReport {
  kallsymsPresent: boolean;
  probe: KdamondProbe;
  runs: SourceRun[];
  /** errno of "off" written to a kdamond that ran and stopped by itself, and to one never turned on. */
  offStopped: string;
  offNeverOn: string;
  releaseAfterSelfStop: ReleaseReport;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function log(msg: string): void {
  process.stderr.write(`kdamond-run: ${msg}\n`);
}

function read(p: string): string {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch (e) {
    return `unreadable (${(e as NodeJS.ErrnoException).code})`;
  }
}

async function startWorkloads(bin: string): Promise<[WorkloadProcess, WorkloadProcess]> {
  const common = ['--tlb-flush-ms', '1', '--pause-us', '1000'];
  const a = WorkloadProcess.start(bin, ['--size', '64M', '--hot', '0+8M', ...common]);
  const b = WorkloadProcess.start(bin, ['--size', '32M', '--hot', '16M+4M', ...common]);
  await Promise.all([a.waitFor('phase', 30_000, 0), b.waitFor('phase', 30_000, 0)]);
  return [a, b];
}

function info(w: WorkloadProcess): WorkloadInfo {
  const m = w.events.find((e) => e.event === 'mapped');
  const p = w.events.find((e) => e.event === 'phase');
  if (m?.event !== 'mapped' || p?.event !== 'phase') throw new Error(`workload ${w.pid}: no mapped or phase event`);
  return { pid: w.pid, mapping: { start: m.start, end: m.end }, hot: p.hot };
}

async function runSource(bin: string, source: RecordSourceName): Promise<SourceRun> {
  const [a, b] = await startWorkloads(bin);
  const files = new LoggingFiles();
  try {
    const ctx = new KdamondContext({
      attrs: DEFAULT_ATTRS,
      targetIds: [a.pid, b.pid],
      sysfsRoot: SYSFS,
      tracefsRoot: TRACEFS,
      recordSource: source,
      files,
      traceInstanceName: INSTANCE,
    });
    const records: SourceRun['records'] = [];
    const exited: SourceRun['exited'] = [];
    let stop: SourceRun['stop'] | undefined;
    ctx.on('aggregate', (r) => records.push({ atMs: Date.now(), record: recordToJson(r) }));
    ctx.on('targetExited', (pid) => exited.push({ pid, atMs: Date.now() }));
    const stopped = new Promise<void>((resolve) =>
      ctx.on('stopped', (reason, err) => {
        stop = { reason, ...(err ? { error: err.message } : {}), atMs: Date.now() };
        resolve();
      }),
    );
    const t0 = performance.now();
    if (!(await ctx.start())) {
      await stopped;
      throw new Error(`${source}: the context did not start: ${stop?.error ?? stop?.reason}`);
    }
    const startMs = performance.now() - t0;
    const kpid = ctx.kdamondPid;
    const run: Partial<SourceRun> = { source, startMs, kdamondPid: kpid, kdamondComm: read(`/proc/${kpid}/comm`) };
    if (source === 'tracepoint') {
      run.traceClock = read(`${TRACEFS}/instances/${INSTANCE}/trace_clock`);
      run.eventFilter = read(`${TRACEFS}/instances/${INSTANCE}/events/damon/damon_aggregated/filter`);
    }
    log(`${source}: kdamond ${kpid} on after ${startMs.toFixed(0)} ms`);
    await sleep(2000);
    const killedAtMs = [Date.now()];
    a.kill();
    await a.exited;
    await sleep(1500);
    const stateAfterFirstExit = read(`${KD}/0/state`);
    const pidAfterFirstExit = read(`${KD}/0/pid`);
    killedAtMs.push(Date.now());
    b.kill();
    await b.exited;
    const late = setTimeout(() => void ctx.stop(), 10_000);
    await stopped;
    clearTimeout(late);
    log(`${source}: stopped (${stop!.reason}) ${stop!.atMs - killedAtMs[1]!} ms after the last target was killed`);
    return {
      ...(run as SourceRun),
      workloads: [info(a), info(b)],
      records,
      exited,
      stateAfterFirstExit,
      pidAfterFirstExit,
      killedAtMs,
      stop: stop!,
      release: ctx.releaseReport,
      costs: ctx.costs(),
      log: files.log,
      nrKdamondsAfter: read(`${KD}/nr_kdamonds`),
      instancesAfter: readdirSync(`${TRACEFS}/instances`),
    };
  } finally {
    a.kill();
    b.kill();
  }
}

/** errno of a raw write to a sysfs file ("ok" when it succeeded). */
function rawWrite(path: string, value: string): string {
  try {
    writeFileSync(path, value);
    return 'ok';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

/** The kernel's answers to "off" for a kdamond never turned on and one that stopped by itself. */
async function offErrors(bin: string): Promise<Pick<KdamondRunReport, 'offStopped' | 'offNeverOn' | 'releaseAfterSelfStop'>> {
  const w = WorkloadProcess.start(bin, ['--size', '8M', '--hot', '0+1M']);
  try {
    await w.waitFor('phase', 30_000, 0);
    const files = new NodeKernelFiles();
    const d = await KdamondDriver.claim(files, SYSFS);
    const offNeverOn = rawWrite(`${KD}/0/state`, 'off');
    await d.configureMonitoring(DEFAULT_ATTRS, [w.pid]);
    await d.turnOn();
    w.kill();
    await w.exited;
    for (let i = 0; i < 100 && read(`${KD}/0/state`) !== 'off'; i++) await sleep(50);
    const offStopped = rawWrite(`${KD}/0/state`, 'off');
    const releaseAfterSelfStop = await d.release();
    return { offNeverOn, offStopped, releaseAfterSelfStop };
  } finally {
    w.kill();
  }
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] !== '--workload' || argv[1] === undefined || argv.length !== 2) throw new Error('usage: kdamond-run.js --workload BIN');
  const bin = argv[1];
  let kallsymsPresent = true;
  try {
    readFileSync('/proc/kallsyms');
  } catch {
    kallsymsPresent = false;
  }
  const probe = KdamondContext.probe(SYSFS, { tracefsRoot: TRACEFS });
  const runs = [await runSource(bin, 'tracepoint'), await runSource(bin, 'tried_regions')];
  const report: KdamondRunReport = { kallsymsPresent, probe, runs, ...(await offErrors(bin)) };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`kdamond-run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
