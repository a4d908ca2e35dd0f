// The benchmark hook for choosing the record source: monitors the same processes through
// each source in turn for the same time and reports what each cost, per aggregation and
// per second: CPU of this process while polling (user + system, so the syscalls of reading
// sysfs or trace_pipe count), CPU of the kdamond thread (which emits the trace events or
// builds the tried-regions directories), and the kernel files touched. Meant for the guest
// (a kernel whose DAMON is ours); KdamondContext refuses hosts whose DAMON is busy.
//
//   node dist/bench/kdamond-sources.js --pid 1234 [--pid 5678] [--seconds 10]
//        [--sources tracepoint,tried_regions] [--attrs "5000 100000 1000000 10 1000"]
//        [--sysfs-root /sys/kernel/mm/damon] [--tracefs-root /sys/kernel/tracing] [--proc-root /proc]
// prints one JSON object: the results and the cheaper source.
import { pathToFileURL } from 'node:url';
import type { Attributes } from '../agent/engine/attrs.js';
import { formatAttrsText, parseAttrsText } from '../common/session-schema.js';
import { CountingKernelFiles, type FileCounts } from './kdamond-counting-files.js';
import { KdamondContext, type KdamondCosts } from '../agent/kdamond/kdamond-context.js';
import { NodeKernelFiles, type KernelFiles } from '../agent/kdamond/kernel-files.js';
import { parseRecordSource, RECORD_SOURCES, type RecordSourceName } from '../agent/kdamond/record-source.js';

/** Where the kernel's files are on a real system; only this command line defaults to them. */
export const SYSTEM_PATHS = Object.freeze({ sysfsRoot: '/sys/kernel/mm/damon', tracefsRoot: '/sys/kernel/tracing', procRoot: '/proc' });

export interface SourceBenchmarkOptions {
  sysfsRoot: string;
  tracefsRoot: string;
  procRoot?: string;
  pids: number[];
  attrs?: Partial<Attributes>;
  /** How long each source monitors. */
  durationMs: number;
  sources?: readonly RecordSourceName[];
  files?: KernelFiles;
}

export interface PerUnit {
  collectorCpuUs: number | null;
  kdamondCpuUs: number | null;
  /** Kernel files read, written and listed plus trace_pipe reads: roughly syscalls of I/O. */
  fileOps: number | null;
}

export interface SourceBenchmarkResult {
  recordSource: RecordSourceName;
  /** How the run ended: 'off' when it ran the whole time. */
  stopReason: string;
  error?: string;
  costs: KdamondCosts;
  /** Kernel file traffic while monitoring (setup and cleanup excluded). */
  io: FileCounts;
  perAggregation: PerUnit;
  perSecond: PerUnit & { records: number | null };
}

function per(v: number | undefined, n: number): number | null {
  return v === undefined || n <= 0 ? null : v / n;
}

function fileOps(c: FileCounts): number {
  return c.reads + c.writes + c.lists + c.pipeReads;
}

async function runOne(o: SourceBenchmarkOptions, source: RecordSourceName): Promise<SourceBenchmarkResult> {
  const files = new CountingKernelFiles(o.files ?? new NodeKernelFiles());
  const ctx = new KdamondContext({
    attrs: o.attrs ?? {},
    targetIds: o.pids,
    sysfsRoot: o.sysfsRoot,
    tracefsRoot: o.tracefsRoot,
    procRoot: o.procRoot,
    recordSource: source,
    files,
  });
  let stopReason = 'off';
  let error: string | undefined;
  ctx.on('stopped', (reason, err) => {
    stopReason = reason;
    error = err?.message;
  });
  const started = await ctx.start();
  files.take();
  if (started) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, o.durationMs);
      ctx.once('stopped', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  const costs = ctx.costs();
  const io = files.take();
  await ctx.stop();
  const seconds = costs.elapsedUs / 1e6;
  const n = costs.aggregations;
  return {
    recordSource: source,
    stopReason,
    ...(error === undefined ? {} : { error }),
    costs,
    io,
    perAggregation: { collectorCpuUs: per(costs.collectorCpuUs, n), kdamondCpuUs: per(costs.kdamondCpuUs, n), fileOps: per(fileOps(io), n) },
    perSecond: {
      collectorCpuUs: per(costs.collectorCpuUs, seconds),
      kdamondCpuUs: per(costs.kdamondCpuUs, seconds),
      fileOps: per(fileOps(io), seconds),
      records: per(costs.records, seconds),
    },
  };
}

/** Runs each source in turn (in the order given) and returns their costs. */
export async function compareRecordSources(o: SourceBenchmarkOptions): Promise<SourceBenchmarkResult[]> {
  if (!Number.isFinite(o.durationMs) || o.durationMs <= 0) throw new RangeError(`durationMs: must be positive, got ${o.durationMs}`);
  const out: SourceBenchmarkResult[] = [];
  for (const s of o.sources ?? RECORD_SOURCES) out.push(await runOne(o, s));
  return out;
}

/**
 * The source with the least CPU (this process plus the kdamond) per delivered aggregation,
 * among those that ran the whole time; undefined if none did.
 */
export function cheaperSource(results: readonly SourceBenchmarkResult[]): RecordSourceName | undefined {
  const total = (r: SourceBenchmarkResult) => (r.perAggregation.collectorCpuUs ?? Infinity) + (r.perAggregation.kdamondCpuUs ?? 0);
  const ok = results.filter((r) => r.stopReason === 'off' && r.costs.aggregations > 0);
  if (ok.length === 0) return undefined;
  return ok.reduce((a, b) => (total(b) < total(a) ? b : a)).recordSource;
}

const USAGE =
  'usage: source-benchmark --pid PID [--pid PID ...] [--seconds S] [--sources tracepoint,tried_regions] ' +
  '[--attrs "<sample_us> <aggr_us> <update_us> <min_nr_regions> <max_nr_regions>"] [--sysfs-root P] [--tracefs-root P] [--proc-root P]';

export function parseArgs(argv: string[]): SourceBenchmarkOptions {
  const o: SourceBenchmarkOptions = { ...SYSTEM_PATHS, pids: [], durationMs: 10_000 };
  const value = (i: number, flag: string): string => {
    const v = argv[i];
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value\n${USAGE}`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--pid') {
      const v = value(++i, a);
      if (!/^\d+$/.test(v) || Number(v) <= 0) throw new Error(`--pid: not a process id: "${v}"`);
      o.pids.push(Number(v));
    } else if (a === '--seconds') {
      const v = Number(value(++i, a));
      if (!Number.isFinite(v) || v <= 0) throw new Error(`--seconds: must be a positive number, got "${argv[i]}"`);
      o.durationMs = v * 1000;
    } else if (a === '--sources') {
      o.sources = value(++i, a).split(',').map((s) => parseRecordSource(s.trim()));
    } else if (a === '--attrs') {
      o.attrs = parseAttrsText(value(++i, a));
    } else if (a === '--sysfs-root') o.sysfsRoot = value(++i, a);
    else if (a === '--tracefs-root') o.tracefsRoot = value(++i, a);
    else if (a === '--proc-root') o.procRoot = value(++i, a);
    else throw new Error(`unknown argument "${a}"\n${USAGE}`);
  }
  if (o.pids.length === 0) throw new Error(`at least one --pid is needed\n${USAGE}`);
  return o;
}

export async function main(argv: string[]): Promise<number> {
  let o: SourceBenchmarkOptions;
  try {
    o = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  const probe = KdamondContext.probe(o.sysfsRoot, { tracefsRoot: o.tracefsRoot, procRoot: o.procRoot });
  if (!probe.usable) {
    process.stderr.write(`kdamond engine unavailable: ${probe.message}\n`);
    return 1;
  }
  const results = await compareRecordSources(o);
  const attrs = o.attrs === undefined ? undefined : formatAttrsText(o.attrs as Attributes);
  process.stdout.write(
    `${JSON.stringify({ pids: o.pids, seconds: o.durationMs / 1000, attrs, probe: probe.message, results, cheaper: cheaperSource(results) }, null, 2)}\n`,
  );
  return results.every((r) => r.stopReason === 'off') ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
