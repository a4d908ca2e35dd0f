// Accuracy over many seeds: how many aggregations the engine needs to meet the project's
// accuracy bar on the (simulated) synthetic presets, from the start and after the hot set
// moves. The accuracy test checks ten seeds; this shows the distribution behind them.
import { DamonContext } from '../agent/engine/context.js';
import { DEFAULT_ATTRS } from '../agent/engine/attrs.js';
import { SyntheticOperations } from '../agent/ops/synthetic.js';
import { presetWorkload } from '../agent/ops/synthetic-presets.js';
import { seededRandom } from '../agent/ops/seeded-random.js';
import { meetsBar, PROJECT_ACCURACY_BAR, scoreAggregations, type ScoredAggregation } from '../agent/ops/synthetic-accuracy.js';
import { median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const PRESETS = ['hot5', 'islands'];
const MOVE_US = 4_000_000;
const RUN_US = 8_000_000;
const WITHIN = 10;

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

async function run(b: BenchContext): Promise<BenchResult> {
  const seeds = b.quick ? 10 : 40;
  const rows: Array<Array<string | number>> = [];
  const data: Record<string, unknown> = {};
  const summary: Record<string, number> = {};
  let done = 0;
  for (const preset of PRESETS) {
    const start: number[] = [];
    const moved: number[] = [];
    const steady: number[] = [];
    for (let seed = 1; seed <= seeds; seed++) {
      const ops = new SyntheticOperations(presetWorkload(preset));
      const ctx = new DamonContext({ attrs: { ...DEFAULT_ATTRS }, targetIds: ops.targetIds(), ops, random: seededRandom(seed), clock: 'virtual' });
      const aggs = scoreAggregations(ctx, ops, ops.targetIds()[0]);
      ctx.runFor(RUN_US);
      const first = aggs.filter((a) => a.startUs < MOVE_US);
      const second = aggs.filter((a) => a.startUs >= MOVE_US);
      start.push(metAt(first));
      moved.push(metAt(second));
      // The last 10 aggregations of each phase: does the bar hold once settled?
      const tail = [...first.slice(-10), ...second.slice(-10)];
      steady.push(tail.filter((a) => meetsBar(a.score)).length / tail.length);
      b.progress(`${preset} seed ${seed}`, ++done, seeds * PRESETS.length);
    }
    const both = start.map((s, i) => s <= WITHIN && moved[i] <= WITHIN).filter(Boolean).length;
    rows.push([
      preset, seeds,
      show(quantile(start, 0.5)), show(quantile(start, 0.9)), start.filter((x) => x <= WITHIN).length,
      show(quantile(moved, 0.5)), show(quantile(moved, 0.9)), moved.filter((x) => x <= WITHIN).length,
      both, median(steady),
    ]);
    summary[`${preset}SeedsMeetingBar`] = both / seeds;
    data[preset] = { seeds, aggregationsToMeetFromStart: start.map(show), aggregationsToMeetAfterMove: moved.map(show), settledFractionMeeting: steady };
  }
  return {
    summary,
    tables: [{
      title: `Aggregations until hot >= ${PROJECT_ACCURACY_BAR.minHotCovered * 100}%, cold <= ${PROJECT_ACCURACY_BAR.maxColdCovered * 100}%, working set within ${PROJECT_ACCURACY_BAR.maxWorkingSetError * 100}% (DAMON defaults; simulated presets; seeds 1..${seeds})`,
      columns: ['preset', 'seeds', 'start: median', 'start: p90', `start: <= ${WITHIN}`, 'move: median', 'move: p90', `move: <= ${WITHIN}`, 'both <= 10', 'settled: meets bar'],
      rows,
    }],
    notes: [
      'Virtual time, seeded; an aggregation is scored against the ground truth in force when it started. "settled" is the median fraction of the last 10 aggregations of each 4 s phase that meet the bar.',
    ],
    data,
  };
}

export const benchmark: Benchmark = {
  name: 'accuracy',
  description: 'aggregations the engine needs to meet the accuracy bar on the synthetic presets, over many seeds',
  run,
};
