// Accuracy over many seeds: how many aggregations the engine needs to meet the project's
// accuracy bar on the (simulated) synthetic presets, from the start and after the hot set
// moves, with each split rule (the context's `adjust`: 'refined', the default, and
// 'kernel', the kernel's own). The accuracy test checks ten seeds of the default; this
// shows the distribution behind them. Also the regions each rule keeps once settled, on
// the presets and on uniform targets (where more regions buy nothing).
import { DamonContext, type AdjustMode } from '../agent/engine/context.js';
import { DEFAULT_ATTRS } from '../agent/engine/attrs.js';
import { SyntheticOperations } from '../agent/ops/synthetic.js';
import { PRESET_DATA_START, presetWorkload, processLayout } from '../agent/ops/synthetic-presets.js';
import { parseWorkload, type Workload } from '../agent/ops/synthetic-workload.js';
import { seededRandom } from '../test/support/seeded-random.js';
import { meetsBar, PROJECT_ACCURACY_BAR, scoreAggregations, type ScoredAggregation } from '../test/support/synthetic-accuracy.js';
import { median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const PRESETS = ['hot5', 'islands'];
const MODES: readonly AdjustMode[] = ['refined', 'kernel'];
/** Uniform targets: every page accessed with this probability per sampling interval. */
const UNIFORM_PROBABILITIES = [0.02, 0.3, 0.9];
const UNIFORM_SEEDS = 5;
const MOVE_US = 4_000_000;
const RUN_US = 8_000_000;
const WITHIN = 10;
/** Region counts are averaged from here on (the first second is the initial search). */
const SETTLED_FROM_US = 1_000_000;

/** Stands for "never met" in sortable figures. */
const NEVER = Number.MAX_SAFE_INTEGER;

/** Aggregations until the bar is first met in `aggs`; NEVER if never. */
function metAt(aggs: ScoredAggregation[]): number {
  const i = aggs.findIndex((a) => meetsBar(a.score));
  return i < 0 ? NEVER : i + 1;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

const show = (x: number): number | string => (x === NEVER ? 'never' : x);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The presets' layout (4 GiB of data) accessed uniformly at `p`. */
function uniformWorkload(p: number): Workload {
  return parseWorkload({
    name: `uniform-${p}`,
    description: `simulated: 4 GiB of data, every page accessed in ${p * 100}% of sampling intervals`,
    targets: [{ id: 1, mappings: processLayout(PRESET_DATA_START, 4 * 2 ** 30), baseProbability: p }],
  });
}

interface Run {
  aggs: ScoredAggregation[];
  /** Mean regions after the merge (what the records show), from SETTLED_FROM_US on. */
  merged: number;
  /** Mean regions sampled per sampling interval (after the split), from SETTLED_FROM_US on. */
  sampled: number;
}

function monitor(workload: Workload, adjust: AdjustMode, seed: number): Run {
  const ops = new SyntheticOperations(workload);
  const ctx = new DamonContext({ attrs: { ...DEFAULT_ATTRS }, targetIds: ops.targetIds(), ops, random: seededRandom(seed), clock: 'virtual', adjust });
  const aggs = scoreAggregations(ctx, ops, ops.targetIds()[0]);
  const steps = RUN_US / DEFAULT_ATTRS.samplingUs;
  const settledStep = SETTLED_FROM_US / DEFAULT_ATTRS.samplingUs;
  let sampled = 0;
  for (let i = 1; i <= steps; i++) {
    if (i > settledStep) sampled += ctx.targets[0].regions.length;
    ctx.step();
  }
  const settled = aggs.filter((a) => a.startUs >= SETTLED_FROM_US);
  return { aggs, merged: mean(settled.map((a) => a.score.nrRegions)), sampled: sampled / (steps - settledStep) };
}

async function run(b: BenchContext): Promise<BenchResult> {
  const seeds = b.quick ? 10 : 40;
  const total = MODES.length * (PRESETS.length * seeds + UNIFORM_PROBABILITIES.length * UNIFORM_SEEDS);
  const rows: Array<Array<string | number>> = [];
  const regionRows: Array<Array<string | number>> = [];
  const data: Record<string, unknown> = {};
  const summary: Record<string, number> = {};
  let done = 0;
  for (const preset of PRESETS) {
    for (const mode of MODES) {
      const start: number[] = [];
      const moved: number[] = [];
      const steady: number[] = [];
      const merged: number[] = [];
      const sampled: number[] = [];
      for (let seed = 1; seed <= seeds; seed++) {
        const r = monitor(presetWorkload(preset), mode, seed);
        const first = r.aggs.filter((a) => a.startUs < MOVE_US);
        const second = r.aggs.filter((a) => a.startUs >= MOVE_US);
        start.push(metAt(first));
        moved.push(metAt(second));
        // The last 10 aggregations of each phase: does the bar hold once settled?
        const tail = [...first.slice(-10), ...second.slice(-10)];
        steady.push(tail.filter((a) => meetsBar(a.score)).length / tail.length);
        merged.push(r.merged);
        sampled.push(r.sampled);
        b.progress(`${preset} ${mode} seed ${seed}`, ++done, total);
      }
      const both = start.map((s, i) => s <= WITHIN && moved[i] <= WITHIN).filter(Boolean).length;
      rows.push([
        preset, mode, seeds,
        show(quantile(start, 0.5)), show(quantile(start, 0.9)), show(Math.max(...start)), start.filter((x) => x <= WITHIN).length,
        show(quantile(moved, 0.5)), show(quantile(moved, 0.9)), show(Math.max(...moved)), moved.filter((x) => x <= WITHIN).length,
        both, median(steady),
      ]);
      regionRows.push([preset, mode, mean(merged), mean(sampled)]);
      summary[`${preset}SeedsMeetingBar${mode === 'kernel' ? 'Kernel' : ''}`] = both / seeds;
      data[`${preset}/${mode}`] = {
        seeds, aggregationsToMeetFromStart: start.map(show), aggregationsToMeetAfterMove: moved.map(show),
        settledFractionMeeting: steady, regionsMerged: merged, regionsSampled: sampled,
      };
    }
  }
  for (const p of UNIFORM_PROBABILITIES) {
    for (const mode of MODES) {
      const merged: number[] = [];
      const sampled: number[] = [];
      for (let seed = 1; seed <= UNIFORM_SEEDS; seed++) {
        const r = monitor(uniformWorkload(p), mode, seed);
        merged.push(r.merged);
        sampled.push(r.sampled);
        b.progress(`uniform ${p} ${mode} seed ${seed}`, ++done, total);
      }
      regionRows.push([`uniform ${p}`, mode, mean(merged), mean(sampled)]);
      data[`uniform-${p}/${mode}`] = { seeds: UNIFORM_SEEDS, regionsMerged: merged, regionsSampled: sampled };
    }
  }
  return {
    summary,
    tables: [
      {
        title: `Aggregations until hot >= ${PROJECT_ACCURACY_BAR.minHotCovered * 100}%, cold <= ${PROJECT_ACCURACY_BAR.maxColdCovered * 100}%, working set within ${PROJECT_ACCURACY_BAR.maxWorkingSetError * 100}% (DAMON defaults; simulated presets; seeds 1..${seeds})`,
        columns: ['preset', 'split', 'seeds', 'start: median', 'p90', 'max', `<= ${WITHIN}`, 'move: median', 'p90', 'max', `<= ${WITHIN}`, `both <= ${WITHIN}`, 'settled: meets bar'],
        rows,
      },
      {
        title: `Regions once settled (from ${SETTLED_FROM_US / 1e6} s of ${RUN_US / 1e6} s; mean over seeds; max_nr_regions ${DEFAULT_ATTRS.maxNrRegions})`,
        columns: ['target', 'split', 'after merge (records)', 'sampled per interval'],
        rows: regionRows,
      },
    ],
    notes: [
      'Virtual time, seeded; an aggregation is scored against the ground truth in force when it started. "settled" is the median fraction of the last 10 aggregations of each 4 s phase that meet the bar.',
      `"split" is the context's adjust option: refined (the default; agent/engine/adjust-refined.ts) or kernel (the kernel's rule). Uniform targets: ${UNIFORM_SEEDS} seeds each; the sampled count is what a sampling interval costs.`,
    ],
    data,
  };
}

export const benchmark: Benchmark = {
  name: 'accuracy',
  description: 'aggregations each split rule needs to meet the accuracy bar on the synthetic presets, over many seeds; regions kept',
  run,
};
