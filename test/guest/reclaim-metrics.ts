// What a reclaim run (reclaim-run.ts) shows, in figures: bytes reclaimed, time to reach
// 90% of them, resident memory left against the hot set, the hot loop's throughput
// against the unmonitored run of the same round, and the monitor's CPU. Shared by the
// guest test (reclaim.test.ts) and the benchmark (bench/reclaim.ts).
import type { ReclaimReport, ReclaimRun } from './reclaim-run.js';
import { RECLAIM_WAYS, WORKLOAD, type ReclaimWay } from './reclaim-scenario.js';

/** The last this many ms of a run give its final resident memory (median of their samples). */
const FINAL_WINDOW_MS = 3000;

export interface RunFigures {
  way: ReclaimWay;
  round: number;
  /** Anonymous resident memory when the monitor started, and at the end (median of the last 3 s). */
  startAnonBytes: number;
  finalAnonBytes: number;
  reclaimedBytes: number;
  /** Swap the workload holds at the end. */
  finalSwapBytes: number;
  /** From the monitor's start to the first sample with 90% of the final reclaim done; null when nothing was reclaimed. */
  t90Ms: number | null;
  /** finalAnon over the hot set: 1.0 = exactly the hot set left resident. */
  finalOverHot: number;
  /** Of the cold part (mapping - hot set), the share still resident at the end. */
  coldResidentShare: number;
  /** Major faults of the workload while the monitor ran: pages it needed back from swap (or, for file pages, from their file). */
  majorFaults: number;
  /** Median passes/s of the hot loop over the windows that ended while the monitor ran. */
  medianPassesPerS: number;
  /** medianPassesPerS over the same round's baseline; null without a baseline in that round. */
  throughputVsBaseline: number | null;
  /** The monitor's CPU over its run, as a share of one CPU. */
  monitorCpuShare: number;
  monitorCpuMs: number;
  error?: string;
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function medianRate(run: ReclaimRun): number {
  // Windows that started after the monitor did (the first one also counts the start-up).
  return median(run.rates.filter((r) => r.tMs - r.ms >= run.monitorStartMs && r.tMs <= run.monitorEndMs).map((r) => r.passesPerS));
}

export function runFigures(run: ReclaimRun, baseline: ReclaimRun | undefined): RunFigures {
  const KiB = 1024;
  const during = run.samples.filter((s) => s.tMs >= run.monitorStartMs && s.tMs <= run.monitorEndMs + 1);
  const atStart = run.samples.filter((s) => s.tMs <= run.monitorStartMs).at(-1) ?? during[0];
  const last = during.filter((s) => s.tMs >= run.monitorEndMs - FINAL_WINDOW_MS);
  const startAnonBytes = (atStart?.rssAnonKiB ?? Number.NaN) * KiB;
  const finalAnonBytes = median(last.map((s) => s.rssAnonKiB)) * KiB;
  const reclaimedBytes = Math.max(0, startAnonBytes - finalAnonBytes);
  const t90 = reclaimedBytes > 0 ? during.find((s) => s.rssAnonKiB * KiB <= startAnonBytes - 0.9 * reclaimedBytes) : undefined;
  const rate = medianRate(run);
  const coldBytes = WORKLOAD.sizeBytes - WORKLOAD.hotBytes;
  const durationUs = (run.monitorEndMs - run.monitorStartMs) * 1000;
  return {
    way: run.way,
    round: run.round,
    startAnonBytes,
    finalAnonBytes,
    reclaimedBytes,
    finalSwapBytes: median(last.map((s) => s.swapKiB)) * KiB,
    t90Ms: t90 === undefined ? null : t90.tMs - run.monitorStartMs,
    finalOverHot: finalAnonBytes / WORKLOAD.hotBytes,
    coldResidentShare: Math.max(0, finalAnonBytes - WORKLOAD.hotBytes) / coldBytes,
    majorFaults: (during.at(-1)?.majorFaults ?? 0) - (atStart?.majorFaults ?? 0),
    medianPassesPerS: rate,
    throughputVsBaseline: baseline === undefined ? null : rate / medianRate(baseline),
    monitorCpuShare: durationUs > 0 ? run.monitorCpuUs / durationUs : 0,
    monitorCpuMs: run.monitorCpuUs / 1000,
    ...(run.error === undefined ? {} : { error: run.error }),
  };
}

/** Every run's figures, each against the baseline of its round. */
export function reportFigures(report: ReclaimReport): RunFigures[] {
  return report.runs.map((run) => runFigures(run, report.runs.find((b) => b.way === 'baseline' && b.round === run.round)));
}

export interface WayFigures {
  way: ReclaimWay;
  runs: number;
  reclaimedBytes: number;
  finalAnonBytes: number;
  t90Ms: number | null;
  coldResidentShare: number;
  majorFaults: number;
  throughputVsBaseline: number | null;
  monitorCpuShare: number;
  errors: string[];
}

/** Medians over the rounds, per way (in RECLAIM_WAYS order, the ways that ran). */
export function wayFigures(figures: readonly RunFigures[]): WayFigures[] {
  return RECLAIM_WAYS.flatMap((way) => {
    const fs = figures.filter((f) => f.way === way);
    if (fs.length === 0) return [];
    const t90s = fs.map((f) => f.t90Ms).filter((t): t is number => t !== null);
    const ratios = fs.map((f) => f.throughputVsBaseline).filter((t): t is number => t !== null);
    return [
      {
        way,
        runs: fs.length,
        reclaimedBytes: median(fs.map((f) => f.reclaimedBytes)),
        finalAnonBytes: median(fs.map((f) => f.finalAnonBytes)),
        t90Ms: t90s.length === 0 ? null : median(t90s),
        coldResidentShare: median(fs.map((f) => f.coldResidentShare)),
        majorFaults: median(fs.map((f) => f.majorFaults)),
        throughputVsBaseline: ratios.length === 0 ? null : median(ratios),
        monitorCpuShare: median(fs.map((f) => f.monitorCpuShare)),
        errors: fs.flatMap((f) => (f.error === undefined ? [] : [f.error])),
      },
    ];
  });
}
