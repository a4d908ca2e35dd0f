// Proactive reclaim in the test rig's guest (Linux 6.12 under QEMU/TCG, zram swap): the
// ways of paging out a workload's cold memory side by side (test/guest/reclaim-scenario.ts:
// 16 MiB hot of 256 MiB, the pageout scheme "not accessed for 2 s"), each on a fresh
// workload, rounds interleaving the ways with an unmonitored baseline. Per way: bytes
// reclaimed, time to 90% of them, resident memory left, the hot loop's throughput against
// the baseline of the same round, the monitor's CPU. Draws the resident memory over time
// (bench/reports/reclaim-<time>.svg and .png). test/guest/reclaim-run.ts measures inside.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchContext, BenchResult, Benchmark } from './benchmark.js';
import { drawReclaim } from './reclaim-plot.js';
import { svgToPng } from '../reports/render.js';
import { reportFigures, wayFigures } from '../test/guest/reclaim-metrics.js';
import type { ReclaimReport } from '../test/guest/reclaim-run.js';
import { RECLAIM_SCHEME, WORKLOAD } from '../test/guest/reclaim-scenario.js';
import { runInGuest } from '../test/guest/rig.js';
import { buildWorkload } from '../test/guest/workload.js';

const MiB = 2 ** 20;
/** The ways measured, each round in this order (reclaim-run.ts). */
const WAYS = ['baseline', 'kdamond', 'engine', 'optimizer'] as const;
/** nats-server, controller, agent and optimizer load once, at the optimizer way's first round: minutes under emulation. */
const FLEET_START_MS = 900_000;
const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

function tail(text: string, lines = 20): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

const round = (x: number | null, digits: number) => (x === null || !Number.isFinite(x) ? '-' : Number(x.toFixed(digits)));

async function run(b: BenchContext): Promise<BenchResult> {
  const rounds = b.quick ? 1 : Math.min(b.repeats, 3);
  const seconds = b.quick ? 20 : 30;
  b.progress('booting the guest', 0, 1);
  const driver = fileURLToPath(new URL('../test/guest/reclaim-run.js', import.meta.url));
  // Each run: the workload's start and touch (256 MiB under emulation), the monitor's start, the window.
  const budgetMs = 120_000 + FLEET_START_MS + rounds * WAYS.length * (seconds + 90) * 1000;
  // The optimizer way's daemons talk over the loopback interface, down in the rig's guest.
  const r = await runInGuest(`ip link set lo up && node ${driver} --workload ${buildWorkload()} --ways ${WAYS.join(',')} --rounds ${rounds} --seconds ${seconds}`, {
    timeoutMs: budgetMs,
  });
  if (r.exitCode !== 0) throw new Error(`the reclaim runs in the guest failed (exit ${r.exitCode}); stderr tail:\n${tail(r.stderr)}`);
  const report = JSON.parse(r.stdout) as ReclaimReport;
  b.progress('done', 1, 1);

  const figures = reportFigures(report);
  const ways = wayFigures(figures);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = join(projectRoot, 'bench', 'reports');
  mkdirSync(dir, { recursive: true });
  const svg = drawReclaim(
    WAYS.flatMap((w) => report.runs.filter((x) => x.way === w && x.round === 0)),
    `${WORKLOAD.hotBytes / MiB} MiB hot of ${WORKLOAD.sizeBytes / MiB} MiB; pageout what was not accessed for ${RECLAIM_SCHEME.minAgeMs / 1000} s; round 1 of ${rounds}; Linux ${report.kernel} under QEMU/TCG, zram swap`,
  );
  const svgPath = join(dir, `reclaim-${stamp}.svg`);
  writeFileSync(svgPath, svg);
  writeFileSync(svgPath.replace(/\.svg$/, '.png'), svgToPng(svg));

  const summary: BenchResult['summary'] = {};
  for (const w of ways) {
    summary[`${w.way}ReclaimedMiB`] = round(w.reclaimedBytes / MiB, 1);
    summary[`${w.way}FinalRssAnonMiB`] = round(w.finalAnonBytes / MiB, 1);
    if (w.way !== 'baseline') {
      summary[`${w.way}T90Seconds`] = round(w.t90Ms === null ? null : w.t90Ms / 1000, 1);
      summary[`${w.way}ThroughputVsBaseline`] = round(w.throughputVsBaseline, 3);
      summary[`${w.way}MajorFaults`] = w.majorFaults;
      summary[`${w.way}MonitorCpuShare`] = round(w.monitorCpuShare, 3);
    }
  }
  summary.plot = svgPath;
  return {
    summary,
    tables: [
      {
        title: `Reclaim per way, medians of ${rounds} round(s) of ${seconds} s (guest under TCG, zram swap)`,
        columns: ['way', 'runs', 'reclaimed MiB', 'RssAnon left MiB', 'cold still resident', 'to 90% s', 'major faults', 'throughput / baseline', 'monitor CPU (share of a CPU)', 'errors'],
        rows: ways.map((w) => [
          w.way,
          w.runs,
          round(w.reclaimedBytes / MiB, 1),
          round(w.finalAnonBytes / MiB, 1),
          round(w.coldResidentShare, 3),
          round(w.t90Ms === null ? null : w.t90Ms / 1000, 1),
          w.majorFaults,
          round(w.throughputVsBaseline, 3),
          round(w.monitorCpuShare, 3),
          w.errors.join('; ') || '-',
        ]),
      },
      {
        title: 'Every run, in the order they ran',
        columns: ['round', 'way', 'RssAnon at start MiB', 'left MiB', 'swap MiB', 'to 90% s', 'major faults', 'passes/s', 'throughput / baseline', 'monitor CPU ms'],
        rows: figures.map((f) => [
          f.round + 1,
          f.way,
          round(f.startAnonBytes / MiB, 1),
          round(f.finalAnonBytes / MiB, 1),
          round(f.finalSwapBytes / MiB, 1),
          round(f.t90Ms === null ? null : f.t90Ms / 1000, 1),
          f.majorFaults,
          round(f.medianPassesPerS, 0),
          round(f.throughputVsBaseline, 3),
          round(f.monitorCpuMs, 0),
        ]),
      },
    ],
    notes: [
      `Workload: ${WORKLOAD.sizeBytes / MiB} MiB anonymous, small pages, every page written once, then a loop reading one byte of each page of the ${WORKLOAD.hotBytes / MiB} MiB hot set, sleeping ${WORKLOAD.pauseUs / 1000} ms after each pass (a busy loop starves the monitor on the guest's other emulated CPU) and flushing its TLB every 5 ms so that cleared Accessed bits are set again. Each run starts a fresh one.`,
      `Scheme: "${RECLAIM_SCHEME.text}" (DAMON's text form: min_age ${RECLAIM_SCHEME.minAgeAggregations} aggregations of DAMON's default 100 ms; no quota, no watermarks), DAMON's default attributes (5 ms, 100 ms, 1 s, 10..1000 regions).`,
      'reclaimed: RssAnon (/proc/PID/status) when the monitor started minus the median of its last 3 s; to 90%: from the monitor\'s start to the first sample (every 250 ms) with 90% of that done.',
      'major faults: of the workload while the monitor ran (/proc/PID/stat): with zram swap, each a page it needed back, so a hot page paged out shows here; the noise-free sign that the hot set stayed resident.',
      'throughput / baseline: median passes/s over the 1 s windows while the monitor ran, over the same figure of the unmonitored run of the same round (the ways interleave so a busy host slows them alike); medians over rounds.',
      'monitor CPU: utime + stime over the monitor\'s run, as a share of one CPU (10 ms resolution), of: the kdamond kernel thread (kdamond); the engine\'s process, every thread (engine); the agent process, the optimizer process and the kdamond the agent runs for the session (optimizer; the controller and nats-server are not counted).',
      'optimizer (when run: reclaim-run.ts --ways ...,optimizer): the session uses the agent\'s default operations (the kdamond in this guest) and no scheme; the optimizer (examples/optimizer.ts --min-age 2 --rate 1G) asks RequestAction pageout for ranges cold that long; its reclaimed bytes are what the agent answered it paged out. nats-server, controller and agent start at its first run and stay up (idle) for the later runs of every way.',
      `Under QEMU's software emulation on ${cpus().length} shared host cores: absolute times are many times a real machine's; the ratios are the result.`,
    ],
    data: { report, figures, ways, plot: svgPath },
  };
}

export const benchmark: Benchmark = {
  name: 'reclaim',
  description: 'in the guest kernel: proactive reclaim of a 16 MiB-hot, 256 MiB workload by the kernel\'s DAMOS and the agent, side by side with an unmonitored run: bytes reclaimed, time, slowdown, CPU',
  run,
};
