// Runs INSIDE the guest (it drives the guest kernel's DAMON and writes the page_idle
// bitmap): the evaluation families (bench/guest-family-workloads.ts) on the workload
// program, each monitored by the kernel's DAMON next to the project's engine with the
// page_idle operations, two monitors at a time (more starve the guest's two emulated
// CPUs): kdamond + engine with the refined split, then kdamond + engine with the kernel's
// rule, each pair on a fresh workload. Scores every monitor against the workload's
// printed truth (test/support/phase-accuracy.ts) here, so only the scores leave the guest.
//
// Usage: node dist/bench/guest-families-run.js --workload BIN --families a,b,... --seeds 1001,1002
//          [--phase-ms 60000] [--tlb-flush-ms 1] [--pause-us 1000]
// Prints one JSON line (FamilyCase) per family, seed and split rule; progress goes to stderr.
import { pathToFileURL } from 'node:url';
import type { AdjustMode } from '../agent/engine/context.js';
import { scoreEngine } from '../test/support/phase-accuracy.js';
import { advancePhases, kdamondEngine, pageIdleEngine, PHASE_AGGREGATIONS, type EngineRun } from '../test/guest/monitors.js';
import { recordFromJson } from '../test/guest/record-json.js';
import { phasedTruth, type WorkloadEvent } from '../test/guest/workload.js';
import { WorkloadProcess } from '../test/guest/workload-process.js';
import { familyNamed } from './eval-families.js';
import { guestWorkload, workloadArgs, type GuestFamilyWorkload, type WorkloadRunOptions } from './guest-family-workloads.js';
import { WITHIN } from './split-evaluation.js';

export const SPLIT_RULES: readonly AdjustMode[] = ['refined', 'kernel'];

export interface MonitorScore {
  /** kdamond, or engine-refined / engine-kernel. */
  monitor: string;
  stopReason: string;
  error?: string;
  records: number;
  unscored: number;
  /** Aggregations to the first detection (phase 0) and to each re-detection; null: never. */
  detections: (number | null)[];
  /** Every detection within WITHIN aggregations. */
  pass: boolean;
  steadyHotCovered: number | null;
  steadyColdBytes: number | null;
  /** Median real aggregation interval, ms. */
  medianAggregationMs: number | null;
  /** Median number of regions a record holds. */
  medianRegions: number | null;
}

export interface FamilyCase {
  family: string;
  seed: number;
  /** The split rule of the engine in this pair (the other monitor is the kdamond). */
  rule: AdjustMode;
  description: string;
  mappingBytes: number;
  simulatedBytes: number;
  phases: number;
  /** The workload's mean time per pass over its ranges (pause included), ms. */
  meanPassMs: number | null;
  monitors: MonitorScore[];
}

function log(msg: string): void {
  process.stderr.write(`guest-families-run: ${msg}\n`);
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** One monitor's run scored against the workload's truth. */
export function scoreMonitor(monitor: string, run: EngineRun, events: readonly WorkloadEvent[]): MonitorScore {
  const records = run.records.map(recordFromJson);
  const s = scoreEngine(records, phasedTruth(events));
  const detections = [s.firstDetection, ...s.redetections].map((d) => d ?? null);
  return {
    monitor,
    stopReason: run.stopReason,
    ...(run.error === undefined ? {} : { error: run.error }),
    records: s.records,
    unscored: s.unscored,
    detections,
    pass: detections.every((d) => d !== null && d <= WITHIN),
    steadyHotCovered: s.steadyHotCovered ?? null,
    steadyColdBytes: s.steadyColdBytes ?? null,
    medianAggregationMs: median(records.map((r) => Number(r.endNs - r.startNs) / 1e6)),
    medianRegions: median(records.map((r) => r.regions.length)),
  };
}

function meanPassMs(events: readonly WorkloadEvent[]): number | null {
  const first = events.find((e) => e.event === 'phase');
  const exit = events.find((e) => e.event === 'exit');
  if (first === undefined || exit?.event !== 'exit' || exit.passes === 0) return null;
  return (exit.monoMs - first.monoMs) / exit.passes;
}

async function runCase(bin: string, gw: GuestFamilyWorkload, rule: AdjustMode, o: WorkloadRunOptions): Promise<FamilyCase> {
  const w = WorkloadProcess.start(bin, workloadArgs(gw, o));
  try {
    await w.waitFor('ready', 120_000);
    await w.waitFor('phase', 10_000, 0);
    log(`${gw.family} seed ${gw.seed} ${rule}: workload pid ${w.pid} ready, starting the monitors`);
    const engines = [kdamondEngine(w.pid), pageIdleEngine(`engine-${rule}`, w.pid, rule)];
    // One after the other: the kdamond's setup writes must not queue behind the page_idle
    // engine's work in this process's event loop.
    for (const e of engines) await e.start();
    await advancePhases(w, engines, gw.phases.length, o.phaseMs);
    const status = await w.waitExit(60_000);
    log(`${gw.family} seed ${gw.seed} ${rule}: workload exited (${status})`);
    await Promise.all(engines.map((e) => e.end(10_000)));
    const runs = engines.map((e) => e.result());
    return {
      family: gw.family,
      seed: gw.seed,
      rule,
      description: gw.description,
      mappingBytes: gw.size,
      simulatedBytes: gw.simulatedBytes,
      phases: gw.phases.length,
      meanPassMs: meanPassMs(w.events),
      monitors: runs.map((r) => scoreMonitor(r.name, r, w.events)),
    };
  } finally {
    w.kill();
  }
}

function list(opt: string, v: string): string[] {
  const xs = v.split(',').filter((x) => x !== '');
  if (xs.length === 0) throw new Error(`${opt} needs a comma-separated list, got "${v}"`);
  return xs;
}

async function main(argv: string[]): Promise<void> {
  let bin: string | undefined;
  let families: string[] = [];
  let seeds: number[] = [];
  const o: WorkloadRunOptions = { phaseMs: 60_000, tlbFlushMs: 1, pauseUs: 1000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [opt, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`option ${opt} needs a value`);
    if (opt === '--workload') bin = v;
    else if (opt === '--families') families = list(opt, v);
    else if (opt === '--seeds') {
      seeds = list(opt, v).map((x) => {
        if (!/^\d+$/.test(x)) throw new Error(`--seeds: "${x}" is not a whole number`);
        return Number(x);
      });
    } else if (opt === '--phase-ms' || opt === '--tlb-flush-ms' || opt === '--pause-us') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < (opt === '--phase-ms' ? 500 : 0)) throw new Error(`${opt} must be a whole number${opt === '--phase-ms' ? ' >= 500' : ''}, got "${v}"`);
      if (opt === '--phase-ms') o.phaseMs = n;
      else if (opt === '--tlb-flush-ms') o.tlbFlushMs = n;
      else o.pauseUs = n;
    } else throw new Error(`unknown option "${opt}" (expected --workload BIN --families LIST --seeds LIST [--phase-ms N] [--tlb-flush-ms N] [--pause-us N])`);
  }
  if (bin === undefined) throw new Error('--workload BIN is required');
  if (families.length === 0 || seeds.length === 0) throw new Error('--families and --seeds are required');
  const workloads = families.flatMap((f) => seeds.map((s) => guestWorkload(familyNamed(f), s)));
  // A freshly booted guest is slow for its first seconds (Node compiling this code, pages
  // coming in over 9p): one short case, not reported, takes that cost.
  const warm = Date.now();
  await runCase(bin, workloads[0], SPLIT_RULES[0], { ...o, phaseMs: 2000 });
  log(`warm-up case done in ${Date.now() - warm} ms (not reported); ${PHASE_AGGREGATIONS} aggregations per phase from here`);
  for (const gw of workloads) {
    for (const rule of SPLIT_RULES) process.stdout.write(`${JSON.stringify(await runCase(bin, gw, rule, o))}\n`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`guest-families-run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
