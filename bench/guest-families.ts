// The evaluation families (bench/eval-families.ts) in the test rig's guest (Linux 6.12
// under QEMU/TCG): each family on the workload program (bench/guest-family-workloads.ts
// says how a simulated layout maps to the guest), monitored by the kernel's DAMON next to
// the project's engine with the page_idle operations, first with the refined split, then
// with the kernel's rule, on a fresh workload each. The bar is the simulated evaluation's
// (bench/split-evaluation.ts): the hot set found (phase-accuracy.ts DETECTION_BAR) within
// WITHIN aggregations of the start and of every move. It boots the guest itself
// (test/guest/rig.ts); bench/guest-families-run.ts does the monitoring inside.
//
// Counts and aggregations, not times: under software emulation every interval stretches,
// and the machine is shared.
import { fileURLToPath } from 'node:url';
import { DEFAULT_ATTRS } from '../agent/engine/attrs.js';
import { DETECTION_BAR } from '../test/support/phase-accuracy.js';
import { PHASE_AGGREGATIONS } from '../test/guest/monitors.js';
import { runInGuest } from '../test/guest/rig.js';
import { buildWorkload } from '../test/guest/workload.js';
import { median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';
import { FAMILIES } from './eval-families.js';
import { GUEST_MEM_MIB, GUEST_QUICK_SEEDS, GUEST_SCALE, GUEST_SEEDS, MAX_GUEST_MAPPING } from './guest-family-workloads.js';
import type { FamilyCase, MonitorScore } from './guest-families-run.js';
import { WITHIN } from './split-evaluation.js';

const MiB = 2 ** 20;
/** Report order of the monitors: the engine with each split rule, then the kernel. */
export const MONITORS = ['engine-refined', 'engine-kernel', 'kdamond'] as const;

export interface GuestFamilyRow {
  family: string;
  monitor: string;
  runs: number;
  passed: number;
  /** Medians; null when there is nothing to take it of, Infinity when the median run never detects. */
  medianFirstDetection: number | null;
  medianRedetection: number | null;
  medianSteadyColdMiB: number | null;
  medianSteadyHotCovered: number | null;
  /** Real aggregation interval over the configured one. */
  medianAggregationRatio: number | null;
  medianRegions: number | null;
}

const med = (xs: number[]): number | null => (xs.length === 0 ? null : median(xs));
const present = (xs: (number | null)[]): number[] => xs.filter((x): x is number => x !== null);

/**
 * Per family and monitor, over every case: the kdamond ran in both pairs (next to each
 * split rule), so it has twice the runs of each engine.
 */
export function familyRows(cases: readonly FamilyCase[]): GuestFamilyRow[] {
  const families = [...new Set(cases.map((c) => c.family))];
  return families.flatMap((family) =>
    MONITORS.map((monitor) => {
      const ms: MonitorScore[] = cases.filter((c) => c.family === family).flatMap((c) => c.monitors.filter((m) => m.monitor === monitor));
      // A detection that never came sorts last: its median is "never" when half the runs miss.
      const never = (d: number | null) => d ?? Infinity;
      return {
        family,
        monitor,
        runs: ms.length,
        passed: ms.filter((m) => m.pass).length,
        medianFirstDetection: med(ms.filter((m) => m.detections.length > 0).map((m) => never(m.detections[0]))),
        medianRedetection: med(ms.flatMap((m) => m.detections.slice(1).map(never))),
        medianSteadyColdMiB: med(present(ms.map((m) => m.steadyColdBytes)).map((b) => b / MiB)),
        medianSteadyHotCovered: med(present(ms.map((m) => m.steadyHotCovered))),
        medianAggregationRatio: med(present(ms.map((m) => m.medianAggregationMs)).map((x) => (x * 1000) / DEFAULT_ATTRS.aggregationUs)),
        medianRegions: med(present(ms.map((m) => m.medianRegions))),
      };
    }),
  );
}

function tail(text: string, lines = 20): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

const cell = (x: number | null): number | string => (x === null ? '-' : x === Infinity ? 'never' : x);

async function run(b: BenchContext): Promise<BenchResult> {
  const seeds = b.quick ? GUEST_QUICK_SEEDS : GUEST_SEEDS;
  const families = FAMILIES.map((f) => f.name);
  const nrCases = families.length * seeds.length * 2;
  b.progress('booting the guest', 0, 1);
  const driver = fileURLToPath(new URL('./guest-families-run.js', import.meta.url));
  const args = `--workload ${buildWorkload()} --families ${families.join(',')} --seeds ${seeds.join(',')}`;
  // Boot, the warm-up case, then each case: the workload's start (up to 1 GiB touched),
  // the monitors' start and PHASE_AGGREGATIONS aggregations of every phase (2-4 phases)
  // at a few hundred ms each under emulation.
  const budgetMs = 240_000 + (nrCases + 1) * 240_000;
  const r = await runInGuest(`node ${driver} ${args}`, { timeoutMs: budgetMs, memMiB: GUEST_MEM_MIB });
  if (r.exitCode !== 0) throw new Error(`the runs in the guest failed (exit ${r.exitCode}); stderr tail:\n${tail(r.stderr)}`);
  const cases = r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as FamilyCase);
  if (cases.length !== nrCases) throw new Error(`expected ${nrCases} cases from the guest, got ${cases.length}; stderr tail:\n${tail(r.stderr)}`);
  b.progress('done', 1, 1);

  const rows = familyRows(cases);
  const summary: BenchResult['summary'] = {};
  for (const row of rows) summary[`passed.${row.family}.${row.monitor}`] = `${row.passed}/${row.runs}`;
  const passRatio = (c: FamilyCase) => (c.meanPassMs === null ? Number.NaN : c.meanPassMs / (DEFAULT_ATTRS.samplingUs / 1000));
  return {
    summary,
    tables: [
      {
        title: `Evaluation families in the guest (held-out seeds ${seeds.join(', ')}), engine (page_idle) with each split rule and the kernel's DAMON; DAMON's defaults`,
        columns: ['family', 'monitor', 'runs meeting the bar', 'first detection: median aggr', 're-detection: median aggr', 'steady cold MiB: median', 'steady hot coverage: median', 'aggregation interval / configured', 'regions: median'],
        rows: rows.map((x) => [
          x.family, x.monitor, `${x.passed}/${x.runs}`, cell(x.medianFirstDetection), cell(x.medianRedetection),
          cell(x.medianSteadyColdMiB), cell(x.medianSteadyHotCovered), cell(x.medianAggregationRatio), cell(x.medianRegions),
        ]),
      },
      {
        title: 'Workloads: mapping, and the workload\'s mean pass over its ranges relative to the 5 ms sampling interval',
        columns: ['family', 'seed', 'split rule of the pair', 'mapping MiB', 'simulated MiB', 'phases', 'pass / 5 ms'],
        rows: cases.map((c) => [c.family, c.seed, c.rule, c.mappingBytes / MiB, c.simulatedBytes / MiB, c.phases, passRatio(c)]),
      },
    ],
    notes: [
      `A run meets the bar when the hot set is found (>= ${DETECTION_BAR.minHotCovered * 100}% of the hot bytes and <= ${DETECTION_BAR.maxColdCovered * 100}% of the cold bytes in regions at >= half the maximum count) within ${WITHIN} aggregations of the start and of every move; first detection and re-detection count aggregations from the phase's first scored one. Steady: after the phase's first 10 aggregations.`,
      `Each phase lasts until every monitor delivered ${PHASE_AGGREGATIONS} aggregations in it. The kdamond ran in both pairs (beside the refined and beside the kernel-rule engine), so it has twice the runs.`,
      `Layouts are the simulated families' for the same held-out seeds (bench/eval-families.ts HELD_OUT_SEEDS), scaled down ${GUEST_SCALE}x (at most ${MAX_GUEST_MAPPING / MiB} MiB of mapping; tiny-hot keeps its range-to-mapping ratio), each range at its simulated access probability per 5 ms interval; no cold background accesses (bench/guest-family-workloads.ts).`,
      `Guest: ${GUEST_MEM_MIB} MiB, 2 emulated CPUs (QEMU/TCG) on a shared host; small pages; the workload flushes its TLB every ms and sleeps 1 ms per pass. A pass / 5 ms above 1 means windows were skipped and ranges accessed less often than their probability says.`,
    ],
    data: { seeds, cases, rows },
  };
}

export const benchmark: Benchmark = {
  name: 'guest-families',
  description: 'in the guest kernel: the evaluation families (held-out seeds) under the page_idle engine with each split rule and the kernel\'s DAMON, against the split evaluation\'s bar',
  run,
};
