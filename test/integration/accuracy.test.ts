// Accuracy of the engine against the synthetic workloads' ground truth, in virtual time
// with seeded random sources and DAMON's default attributes (5 ms, 100 ms, 1 s, 10, 1000).
//
// The project's bar: within 10 aggregations of the start, and within 10 after the hot set
// moves, the regions at >= 50% of the maximum nr_accesses cover >= 98% of the hot bytes
// and <= 1% of the cold bytes, and the working-set estimate is within 5% of the truth.
// (For reference, the kernel's DAMON found a 16 MiB hot range in 256 MiB within 2-4
// aggregations and re-found it within 2 after a move.)
//
// Every seed of SEEDS must meet it: the seeds are 1..10, not picked for passing.
//
// This checks the engine's default split ('refined', agent/engine/adjust-refined.ts).
// The kernel's own split rule (adjust: 'kernel') does not meet the bar on these presets;
// bench/accuracy.ts measures both over 40 seeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DamonContext } from '../../agent/engine/context.js';
import { DEFAULT_ATTRS } from '../../agent/engine/attrs.js';
import { SyntheticOperations } from '../../agent/ops/synthetic.js';
import { presetWorkload } from '../../agent/ops/synthetic-presets.js';
import { seededRandom } from '../support/seeded-random.js';
import {
  meetsBar, PROJECT_ACCURACY_BAR, scoreAggregations, type ScoredAggregation,
} from '../support/synthetic-accuracy.js';

const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
/** Aggregations allowed to meet the bar, from the start and from the move. */
const WITHIN = 10;
/** Both presets move their hot set at 4 s, i.e. after 40 aggregations of 100 ms. */
const MOVE_US = 4_000_000;
const RUN_US = 8_000_000;

interface PhaseResult {
  /** Aggregations from the phase start until the bar was first met; undefined if never. */
  metAt: number | undefined;
  atMet: ScoredAggregation | undefined;
  /** Of the phase's aggregations after the first that met the bar, how many met it too. */
  heldAfter: number;
  after: number;
  last: ScoredAggregation;
}

function phaseResult(aggs: ScoredAggregation[]): PhaseResult {
  const first = aggs.findIndex((a) => meetsBar(a.score));
  const later = first < 0 ? [] : aggs.slice(first + 1);
  return {
    metAt: first < 0 ? undefined : first + 1,
    atMet: first < 0 ? undefined : aggs[first],
    heldAfter: later.filter((a) => meetsBar(a.score)).length,
    after: later.length,
    last: aggs[aggs.length - 1],
  };
}

function runOnce(preset: string, seed: number): { seed: number; start: PhaseResult; moved: PhaseResult } {
  const ops = new SyntheticOperations(presetWorkload(preset));
  const ctx = new DamonContext({
    attrs: { ...DEFAULT_ATTRS }, targetIds: ops.targetIds(), ops, random: seededRandom(seed), clock: 'virtual',
  });
  const aggs = scoreAggregations(ctx, ops, ops.targetIds()[0]);
  ctx.runFor(RUN_US);
  assert.equal(aggs.length, RUN_US / DEFAULT_ATTRS.aggregationUs);
  return {
    seed,
    start: phaseResult(aggs.filter((a) => a.startUs < MOVE_US)),
    moved: phaseResult(aggs.filter((a) => a.startUs >= MOVE_US)),
  };
}

const pct = (x: number, digits = 2) => `${(100 * x).toFixed(digits)}%`;

function describePhase(p: PhaseResult): string {
  const s = (p.atMet ?? p.last).score;
  const figures = `hot ${pct(s.hotCovered)}, cold ${pct(s.coldCovered, 3)}, wss error ${pct(s.workingSetError)}, ${s.nrRegions} regions`;
  if (p.metAt === undefined) return `never met (last: ${figures})`;
  return `met at ${p.metAt} (${figures}); held in ${p.heldAfter}/${p.after} later`;
}

function checkPreset(preset: string, what: string) {
  test(`${preset}: ${what} found within ${WITHIN} aggregations, and again within ${WITHIN} after it moves (seeds ${SEEDS.join(',')})`, (t) => {
    const runs = SEEDS.map((seed) => runOnce(preset, seed));
    const lines = runs.map((r) => `seed ${r.seed}: start ${describePhase(r.start)} | after move ${describePhase(r.moved)}`);
    for (const l of lines) t.diagnostic(l);
    const missed = runs.filter((r) => !(r.start.metAt !== undefined && r.start.metAt <= WITHIN && r.moved.metAt !== undefined && r.moved.metAt <= WITHIN));
    assert.equal(
      missed.length, 0,
      `${missed.length} of ${runs.length} seeds missed the bar (hot >= ${pct(PROJECT_ACCURACY_BAR.minHotCovered, 0)}, cold <= ${pct(PROJECT_ACCURACY_BAR.maxColdCovered, 0)}, ` +
      `working set within ${pct(PROJECT_ACCURACY_BAR.maxWorkingSetError, 0)} by aggregation ${WITHIN}):\n${missed.map((r) => lines[runs.indexOf(r)]).join('\n')}`,
    );
  });
}

checkPreset('hot5', 'a hot 5% of 4 GiB');
checkPreset('islands', 'five small hot islands (24..64 MiB) in 4 GiB');
