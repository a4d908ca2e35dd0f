// Runs INSIDE the guest, for bench/guest-cpu.ts: the CPU time of the agent's engine with
// the page_idle operations against the CPU time of the kernel's kdamond thread, both
// monitoring the same workload at the same time, at several region bounds (min:max; fixed
// when min = max, so that both check exactly that many regions per sample), with the
// engine's batched loop (sampling on the native sampler's thread) and its per-sample loop
// (one JavaScript step per sampling interval, as before the native loop); then the cost
// of the kdamond's two record sources (bench/kdamond-sources.ts).
//
// The engine runs in a process of its own (this file with --engine), as in the agent, so
// that its CPU time (process.cpuUsage: every thread, GC included) is the engine's alone.
// The parent drives the kdamond (KdamondContext, default record source) and reads the
// kdamond thread's utime + stime from /proc/<pid>/stat at the start and the end of the
// engine's measuring window; it also counts its own polling of the kdamond's records.
//
// Usage: node dist/bench/guest-cpu-run.js --workload BIN [--regions 10:10,100:100,1000:1000,10:1000] [--seconds 4]
//          [--warmup 2] [--repeats 1] [--source-seconds 4] [--primitives BIN]
// Prints one JSON object (GuestCpuReport).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEFAULT_ATTRS, validateAttributes } from '../agent/engine/attrs.js';
import { DamonContext, LOOP_MODES, type LoopMode } from '../agent/engine/context.js';
import { KdamondContext } from '../agent/kdamond/kdamond-context.js';
import { cheaperSource, compareRecordSources, type SourceBenchmarkResult } from './kdamond-sources.js';
import { DEFAULT_RECORD_SOURCE } from '../agent/kdamond/record-source.js';
import { PageIdleOperations } from '../agent/ops/page-idle.js';
import { WorkloadProcess } from '../test/guest/workload-process.js';

const SYSFS = '/sys/kernel/mm/damon';
const TRACEFS = '/sys/kernel/tracing';
/** USER_HZ: the unit of utime and stime in /proc/PID/stat. */
const USER_HZ = 100;
const MiB = 2 ** 20;

/** 64 hot stripes of 1 MiB, 4 MiB apart: 128 edges, room for many regions. */
export const WORKLOAD_ARGS = [
  '--size', '256M', '--thp', 'nohugepage', '--tlb-flush-ms', '1', '--pause-us', '1000',
  '--hot', Array.from({ length: 64 }, (_, k) => `${4 * k}M+1M`).join(','),
];

/** Region bounds of one measurement: fixed (min = max: every sample checks exactly that many) or DAMON's defaults. */
export interface RegionBounds {
  min: number;
  max: number;
}

export interface EngineWindow {
  loop: LoopMode;
  seconds: number;
  /** Sampling intervals completed in the window. */
  samples: number;
  /** Real time per region check the engine measured (check-budget.ts), and the regions it affords at that cost. */
  checkCost: { perCheckUs: number; affordableRegions: number } | null;
  cpuUs: number;
  /** Of cpuUs, the part spent in the kernel (system time): the access checks' system calls. */
  cpuSystemUs: number;
  meanRegions: number;
  aggregations: number;
  samplingMeanUs: number;
  /** Mean real time between the window's aggregations. */
  aggregationMeanUs: number;
  missedSamples: number;
}

export interface CpuMeasurement {
  bounds: RegionBounds;
  repeat: number;
  engine: EngineWindow;
  /** The kdamond thread's utime + stime over the engine's window (10 ms resolution). */
  kdamondCpuUs: number;
  kdamondMeanRegions: number;
  /** The kdamond's aggregations delivered during the window. */
  kdamondAggregations: number;
  /** This process's CPU reading the kdamond's records (the agent's side of the kdamond engine). */
  collectorCpuUs: number;
}

/** Microseconds per call of one page_idle primitive (bench/page-idle-primitives.c). */
export interface PrimitiveCost {
  wallUs: number;
  cpuUs: number;
}

/** What bench/page-idle-primitives.c prints: per-call costs over `pages` random pages. */
export interface PrimitiveCosts {
  pages: number;
  kind: '4k' | 'thp';
  nullCall: PrimitiveCost;
  pagemapRead: PrimitiveCost;
  bitmapWrite: PrimitiveCost;
  bitmapRead: PrimitiveCost;
}

export interface GuestCpuReport {
  /** The primitives of a check, measured alone (no monitor running), 4 KiB pages. */
  primitives: PrimitiveCosts | null;
  defaultRecordSource: string;
  measurements: CpuMeasurement[];
  sources: SourceBenchmarkResult[];
  cheaperSource: string | undefined;
}

function log(msg: string): void {
  process.stderr.write(`guest-cpu-run: ${msg}\n`);
}

function taskCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1_000_000) / USER_HZ;
}

/** --engine: the page_idle engine on --pid; "start" when the window opens, then the window as JSON. */
async function engineMain(pid: number, bounds: RegionBounds, warmupS: number, seconds: number, loop: LoopMode): Promise<void> {
  const ops = new PageIdleOperations();
  const attrs = validateAttributes({ ...DEFAULT_ATTRS, minNrRegions: bounds.min, maxNrRegions: bounds.max });
  const ctx = new DamonContext({ attrs, targetIds: [pid], ops, loop });
  let regions = 0;
  let aggregations = 0;
  let counting = false;
  const aggregationTimes: number[] = [];
  ctx.on('aggregate', (r) => {
    if (!counting) return;
    regions += r.regions.length;
    aggregations++;
    aggregationTimes.push(performance.now());
  });
  ctx.start();
  await new Promise((r) => setTimeout(r, warmupS * 1000));
  counting = true;
  const d0 = ctx.drift();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  process.stdout.write('start\n');
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const cpu = process.cpuUsage(cpu0);
  const elapsed = (performance.now() - t0) / 1000;
  const d1 = ctx.drift();
  await ctx.stop();
  const gaps = aggregationTimes.slice(1).map((t, i) => (t - aggregationTimes[i]!) * 1000);
  const w: EngineWindow = {
    loop,
    seconds: elapsed,
    samples: d1.sampling.total - d0.sampling.total,
    checkCost: d1.checkCost,
    cpuUs: cpu.user + cpu.system,
    cpuSystemUs: cpu.system,
    meanRegions: aggregations === 0 ? 0 : regions / aggregations,
    aggregations,
    samplingMeanUs: d1.sampling.meanUs,
    aggregationMeanUs: gaps.length === 0 ? 0 : gaps.reduce((a, b) => a + b, 0) / gaps.length,
    missedSamples: d1.missedSamples - d0.missedSamples,
  };
  process.stdout.write(`${JSON.stringify(w)}\n`);
}

/** One window: the kdamond (this process) and the engine (a child) on the same workload. */
async function measure(pid: number, bounds: RegionBounds, loop: LoopMode, repeat: number, warmupS: number, seconds: number): Promise<CpuMeasurement> {
  const attrs = validateAttributes({ ...DEFAULT_ATTRS, minNrRegions: bounds.min, maxNrRegions: bounds.max });
  const kd = new KdamondContext({ attrs, targetIds: [pid], sysfsRoot: SYSFS, tracefsRoot: TRACEFS });
  let kdRegions = 0;
  let kdAggregations = 0;
  let counting = false;
  kd.on('aggregate', (r) => {
    if (!counting) return;
    kdRegions += r.regions.length;
    kdAggregations++;
  });
  let stopError: string | undefined;
  kd.on('stopped', (reason, err) => {
    if (reason !== 'off') stopError = `${reason}: ${err?.message ?? ''}`;
  });
  if (!(await kd.start())) throw new Error(`the kdamond did not start: ${stopError}`);
  const kpid = kd.kdamondPid!;
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [self, '--engine', '--pid', String(pid), '--min', String(bounds.min), '--max', String(bounds.max), '--warmup', String(warmupS), '--seconds', String(seconds), '--loop', loop], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done || first.value !== 'start') throw new Error(`the engine process said "${first.value ?? 'nothing'}" instead of "start"`);
    const k0 = taskCpuUs(kpid);
    const c0 = kd.costs().collectorCpuUs;
    counting = true;
    const second = await lines.next();
    const k1 = taskCpuUs(kpid);
    const c1 = kd.costs().collectorCpuUs;
    counting = false;
    if (second.done) throw new Error('the engine process ended without its measurement');
    const engine = JSON.parse(second.value) as EngineWindow;
    if (stopError !== undefined) throw new Error(`the kdamond stopped during the window: ${stopError}`);
    return {
      bounds,
      repeat,
      engine,
      kdamondCpuUs: k1 - k0,
      kdamondMeanRegions: kdAggregations === 0 ? 0 : kdRegions / kdAggregations,
      kdamondAggregations: kdAggregations,
      collectorCpuUs: c1 - c0,
    };
  } finally {
    child.kill();
    await kd.stop();
  }
}

interface Options {
  workload: string;
  bounds: RegionBounds[];
  seconds: number;
  warmup: number;
  repeats: number;
  sourceSeconds: number;
  /** bench/page-idle-primitives.c, compiled; measured first when given. */
  primitives?: string;
}

function parse(argv: string[]): Options {
  const o: Partial<Options> = { bounds: [{ min: 10, max: 10 }], seconds: 4, warmup: 2, repeats: 1, sourceSeconds: 4 };
  const num = (opt: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`${opt} must be a number >= ${min}, got "${v}"`);
    return n;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [opt, v] = [argv[i]!, argv[i + 1]];
    if (v === undefined) throw new Error(`option ${opt} needs a value`);
    if (opt === '--workload') o.workload = v;
    else if (opt === '--regions') {
      o.bounds = v.split(',').map((x) => {
        const [min, max] = x.split(':');
        return { min: num('--regions', min ?? '', 3), max: num('--regions', max ?? '', 3) };
      });
    }
    else if (opt === '--seconds') o.seconds = num(opt, v, 0.5);
    else if (opt === '--warmup') o.warmup = num(opt, v, 0);
    else if (opt === '--repeats') o.repeats = num(opt, v, 1);
    else if (opt === '--source-seconds') o.sourceSeconds = num(opt, v, 0.5);
    else if (opt === '--primitives') o.primitives = v;
    else throw new Error(`unknown option "${opt}"`);
  }
  if (o.workload === undefined) throw new Error('--workload BIN is required');
  return o as Options;
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--engine') {
    const get = (name: string) => Number(argv[argv.indexOf(name) + 1]);
    const loop = argv[argv.indexOf('--loop') + 1] as LoopMode;
    if (!LOOP_MODES.includes(loop)) throw new Error(`--loop must be one of ${LOOP_MODES.join(', ')}`);
    await engineMain(get('--pid'), { min: get('--min'), max: get('--max') }, get('--warmup'), get('--seconds'), loop);
    return;
  }
  const o = parse(argv);
  let primitives: PrimitiveCosts | null = null;
  if (o.primitives !== undefined) {
    // As many pages as the largest fixed region count arms, in a mapping of the workload's size.
    const r = spawnSync(o.primitives, ['256', '4k', '1000'], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${o.primitives} failed (${r.status ?? r.signal}): ${r.stderr}`);
    primitives = JSON.parse(r.stdout) as PrimitiveCosts;
    log(`primitives: pagemap ${primitives.pagemapRead.cpuUs.toFixed(1)} us, bitmap write ${primitives.bitmapWrite.cpuUs.toFixed(1)} us, read ${primitives.bitmapRead.cpuUs.toFixed(1)} us per page`);
  }
  const w = WorkloadProcess.start(o.workload, WORKLOAD_ARGS);
  try {
    const ready = await w.waitFor('ready', 60_000);
    await w.waitFor('phase', 10_000, 0);
    log(`workload pid ${w.pid} ready (${ready.anonHugeBytes / MiB} MiB huge pages)`);
    const measurements: CpuMeasurement[] = [];
    // Maxima interleaved within each repeat, so a slow spell of the machine hits all of them.
    for (let r = 0; r < o.repeats; r++) {
      for (const b of o.bounds) for (const loop of LOOP_MODES) {
        const m = await measure(w.pid, b, loop, r, o.warmup, o.seconds);
        log(`regions ${b.min}..${b.max}, ${loop} loop: engine ${(m.engine.cpuUs / 1000).toFixed(0)} ms CPU (${m.engine.meanRegions.toFixed(0)} regions), kdamond ${(m.kdamondCpuUs / 1000).toFixed(0)} ms (${m.kdamondMeanRegions.toFixed(0)} regions); aggregation ${(m.engine.aggregationMeanUs / 1000).toFixed(1)} ms`);
        measurements.push(m);
      }
    }
    const sources = await compareRecordSources({ sysfsRoot: SYSFS, tracefsRoot: TRACEFS, pids: [w.pid], durationMs: o.sourceSeconds * 1000 });
    const report: GuestCpuReport = { primitives, defaultRecordSource: DEFAULT_RECORD_SOURCE, measurements, sources, cheaperSource: cheaperSource(sources) };
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } finally {
    w.kill();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`guest-cpu-run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
