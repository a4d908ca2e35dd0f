// CPU of the agent's engine with the page_idle operations against the kernel's own DAMON
// (its kdamond thread), monitoring the same workload over the same period in the test
// rig's guest (Linux 6.12 under QEMU/TCG), at max_nr_regions 10, 100 and 1000; and which of
// the kdamond engine's two record sources costs less. The engine runs both real-time loops:
// 'batched' (the native sampler, the default) and 'per-sample' (a JavaScript step per
// sampling interval, as before), so before and after come from the same run. It boots the guest itself
// (test/guest/rig.ts); bench/guest-cpu-run.ts does the measuring inside.
//
// Ratios, not absolute times, are the result: under software emulation every instruction
// costs many host instructions, user space and kernel alike, and the machine is shared.
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';
import type { CpuMeasurement, GuestCpuReport } from './guest-cpu-run.js';
import { DEFAULT_ATTRS } from '../agent/engine/attrs.js';
import { LOOP_MODES } from '../agent/engine/context.js';
import { runInGuest } from '../test/guest/rig.js';
import { buildWorkload } from '../test/guest/workload.js';

const MAXES = [10, 100, 1000];

function tail(text: string, lines = 20): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** CPU of the engine over CPU of the kdamond per aggregation each delivered (they may differ when one falls behind). */
function perAggregationRatio(m: CpuMeasurement): number {
  const engine = m.engine.aggregations === 0 ? Infinity : m.engine.cpuUs / m.engine.aggregations;
  const kd = m.kdamondAggregations === 0 ? Infinity : m.kdamondCpuUs / m.kdamondAggregations;
  return engine / kd;
}

async function run(b: BenchContext): Promise<BenchResult> {
  const repeats = Math.min(b.repeats, 3);
  const seconds = b.quick ? 2 : 4;
  const warmup = b.quick ? 1 : 2;
  const sourceSeconds = b.quick ? 2 : 5;
  b.progress('booting the guest', 0, 1);
  const driver = fileURLToPath(new URL('./guest-cpu-run.js', import.meta.url));
  const args = `--workload ${buildWorkload()} --max ${MAXES.join(',')} --seconds ${seconds} --warmup ${warmup} --repeats ${repeats} --source-seconds ${sourceSeconds}`;
  // Each window: the kdamond's setup, the engine process's start (10-20 s in a guest on a busy host), warm-up and measuring.
  const budgetMs = 60_000 + repeats * MAXES.length * LOOP_MODES.length * (seconds + warmup + 30) * 1000 + 2 * (sourceSeconds + 5) * 1000;
  const r = await runInGuest(`node ${driver} ${args}`, { timeoutMs: budgetMs });
  if (r.exitCode !== 0) throw new Error(`the measurement in the guest failed (exit ${r.exitCode}); stderr tail:\n${tail(r.stderr)}`);
  const rep = JSON.parse(r.stdout) as GuestCpuReport;
  b.progress('done', 1, 1);

  const groups = MAXES.flatMap((max) => LOOP_MODES.map((loop) => ({ max, loop, ms: rep.measurements.filter((m) => m.maxNrRegions === max && m.engine.loop === loop) })));
  const med = (ms: CpuMeasurement[], f: (m: CpuMeasurement) => number) => median(ms.map(f));
  const cpuRows = groups.map(({ max, loop, ms }) => [
    max,
    loop,
    med(ms, (m) => m.engine.meanRegions),
    med(ms, (m) => m.kdamondMeanRegions),
    med(ms, (m) => m.engine.cpuUs / 1000),
    med(ms, (m) => m.engine.cpuSystemUs / m.engine.cpuUs),
    med(ms, (m) => m.kdamondCpuUs / 1000),
    med(ms, (m) => m.collectorCpuUs / 1000),
    med(ms, (m) => m.engine.cpuUs / m.kdamondCpuUs),
    med(ms, (m) => m.engine.cpuUs / (m.kdamondCpuUs + m.collectorCpuUs)),
    med(ms, (m) => m.engine.aggregations),
    med(ms, (m) => m.kdamondAggregations),
    med(ms, perAggregationRatio),
    med(ms, (m) => m.engine.samplingMeanUs / 1000),
    med(ms, (m) => m.engine.aggregationMeanUs / 1000),
  ]);
  const sourceRows = rep.sources.map((s) => [
    s.recordSource,
    s.stopReason,
    s.costs.aggregations,
    s.costs.missedAggregations,
    s.perAggregation.collectorCpuUs === null ? '-' : s.perAggregation.collectorCpuUs / 1000,
    s.perAggregation.kdamondCpuUs === null ? '-' : s.perAggregation.kdamondCpuUs / 1000,
    s.perAggregation.fileOps ?? '-',
    s.perSecond.collectorCpuUs === null ? '-' : s.perSecond.collectorCpuUs / 1000,
  ]);
  const summary: BenchResult['summary'] = {};
  const suffix = { batched: '', 'per-sample': 'PerSampleLoop' } as const;
  for (const { max, loop, ms } of groups) {
    summary[`cpuRatioEngineToKdamondAt${max}${suffix[loop]}`] = Number(med(ms, (m) => m.engine.cpuUs / m.kdamondCpuUs).toFixed(2));
    summary[`cpuRatioPerAggregationAt${max}${suffix[loop]}`] = Number(med(ms, perAggregationRatio).toFixed(2));
    // Real over configured: 1.00 is on time; the aim is within 10% at 1000 regions.
    summary[`aggregationIntervalRatioAt${max}${suffix[loop]}`] = Number(med(ms, (m) => m.engine.aggregationMeanUs / DEFAULT_ATTRS.aggregationUs).toFixed(2));
    summary[`samplingIntervalRatioAt${max}${suffix[loop]}`] = Number(med(ms, (m) => m.engine.samplingMeanUs / DEFAULT_ATTRS.samplingUs).toFixed(2));
  }
  summary.cheaperRecordSource = rep.cheaperSource ?? 'none completed';
  summary.defaultRecordSource = rep.defaultRecordSource;
  summary.defaultIsCheaper = rep.cheaperSource === rep.defaultRecordSource;
  return {
    summary,
    tables: [
      {
        title: `CPU over the same ${seconds} s window, engine (page_idle) vs kdamond, medians of ${repeats} (guest under TCG)`,
        columns: ['max regions', 'engine loop', 'engine regions', 'kdamond regions', 'engine ms', 'engine system share', 'kdamond ms', 'collector ms', 'engine/kdamond', 'engine/(kdamond+collector)', 'engine aggr', 'kdamond aggr', 'ratio per aggr', 'engine sampling ms', 'engine aggregation ms'],
        rows: cpuRows,
      },
      {
        title: `kdamond record sources, ${sourceSeconds} s each`,
        columns: ['source', 'stop', 'aggregations', 'missed', 'collector ms/aggr', 'kdamond ms/aggr', 'file ops/aggr', 'collector ms/s'],
        rows: sourceRows,
      },
    ],
    notes: [
      'engine loop: "batched" runs each aggregation\'s sampling intervals on the native sampler\'s thread (the default); "per-sample" runs one JavaScript step per sampling interval (the loop before it). Summary keys without a suffix are the batched loop; ...PerSampleLoop the per-sample one.',
      'engine system share: the part of the engine\'s CPU spent in the kernel, mostly the page_idle bitmap reads (a read walks the reverse mappings of every idle page in the 64-page word it returns).',
      'engine sampling / aggregation ms: mean real intervals over the window (configured 5 and 100 ms).',
      'Both engines monitor one workload (256 MiB, 64 hot stripes of 1 MiB, small pages, accessed every ~1 ms) at the same time with DAMON\'s default intervals; they share the Accessed bits.',
      'engine ms: CPU of the process running the project\'s engine with the page_idle operations (all threads, GC included); kdamond ms: utime + stime of the kdamond thread from /proc/<pid>/stat (10 ms resolution); collector ms: this process reading the kdamond\'s trace events, the agent\'s side of the kdamond engine.',
      '"ratio per aggregation" divides each side\'s CPU by the aggregations it completed: where the engine cannot keep up with 5 ms sampling under emulation it samples less, which the plain ratio hides.',
      `Under QEMU's software emulation on ${cpus().length} shared host cores: absolute times are many times a real machine's, and the ratios need not carry over to real hardware as they are.`,
      'Where "engine aggr" falls well below "kdamond aggr" the engine used a whole emulated CPU and still could not sample every 5 ms: its plain ratio is then capped by the window, and the per-aggregation ratio is the one to read.',
      `Record sources: the source with the least CPU (collector + kdamond) per delivered aggregation wins (cheaperSource in bench/kdamond-sources.ts); the default is ${rep.defaultRecordSource}.`,
    ],
    data: rep,
  };
}

export const benchmark: Benchmark = {
  name: 'guest-cpu',
  description: 'in the guest kernel: CPU of the page_idle engine vs the kernel\'s kdamond on the same workload at 10/100/1000 max regions; kdamond record sources',
  run,
};
