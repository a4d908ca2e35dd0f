// Accuracy of the engine against simulated workloads' ground truth, in virtual time with
// seeded random sources and DAMON's default attributes (5 ms, 100 ms, 1 s, 10, 1000).
//
// The project's bar: within 10 aggregations of the start, and within 10 after every move
// of the hot set, the regions at >= 50% of the maximum nr_accesses cover >= 98% of the hot
// bytes and <= 1% of the cold bytes, and the working-set estimate is within 5% of the
// truth. (For reference, the kernel's DAMON found a 16 MiB hot range in 256 MiB within 2-4
// aggregations and re-found it within 2 after a move.)
//
// Seeds: TEST_SEEDS (bench/eval-families.ts), fixed before any result and never used to
// tune the refined split (its constants were chosen on the presets with seeds 1..40 and
// on the families with seeds 1..20). On the presets and on the island and hopping
// families, the default split ('refined', agent/engine/adjust-refined.ts) must meet the bar
// on every seed. On every family, it must meet it on at least as many seeds as the
// kernel's own rule (adjust: 'kernel'). bench/accuracy.ts reports both over more seeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FAMILIES, familyNamed, TEST_SEEDS, TUNING_PRESETS } from '../../bench/eval-families.js';
import { runFamily, WITHIN, type PhaseOutcome, type RunOutcome } from '../../bench/split-evaluation.js';
import { PROJECT_ACCURACY_BAR } from '../support/synthetic-accuracy.js';

/** Where the refined split must meet the bar on every seed. */
const EVERY_SEED = [...TUNING_PRESETS, 'many-islands', 'islands-12x8', 'hopping'];

const pct = (x: number, digits = 2) => `${(100 * x).toFixed(digits)}%`;

function describePhase(p: PhaseOutcome): string {
  const s = p.shown.score;
  const figures = `hot ${pct(s.hotCovered)}, cold ${pct(s.coldCovered, 3)}, wss error ${pct(s.workingSetError)}, ${s.nrRegions} regions`;
  return p.metAt === undefined ? `never met (last: ${figures})` : `met at ${p.metAt} (${figures})`;
}

function describeRun(r: RunOutcome): string {
  return `${r.adjust} seed ${r.seed}: ${r.phases.map((p, i) => `${i === 0 ? 'start' : `move ${i}`} ${describePhase(p)}`).join(' | ')}`;
}

const bar = `hot >= ${pct(PROJECT_ACCURACY_BAR.minHotCovered, 0)}, cold <= ${pct(PROJECT_ACCURACY_BAR.maxColdCovered, 0)}, working set within ${pct(PROJECT_ACCURACY_BAR.maxWorkingSetError, 0)}`;

for (const name of EVERY_SEED) {
  const family = familyNamed(name);
  test(`${name}: the refined split meets the bar within ${WITHIN} aggregations of the start and of every move, on every held-out seed (${TEST_SEEDS[0]}..${TEST_SEEDS[TEST_SEEDS.length - 1]})`, (t) => {
    const runs = TEST_SEEDS.map((seed) => runFamily(family, 'refined', seed));
    for (const r of runs) t.diagnostic(describeRun(r));
    const missed = runs.filter((r) => !r.pass);
    assert.equal(missed.length, 0, `${missed.length} of ${runs.length} seeds missed the bar (${bar} by aggregation ${WITHIN}):\n${missed.map(describeRun).join('\n')}`);
  });
}

for (const family of FAMILIES) {
  test(`${family.name}: the refined split meets the bar on at least as many held-out seeds as the kernel's rule`, (t) => {
    const refined = TEST_SEEDS.map((seed) => runFamily(family, 'refined', seed));
    const kernel = TEST_SEEDS.map((seed) => runFamily(family, 'kernel', seed));
    const passed = (runs: RunOutcome[]) => runs.filter((r) => r.pass).length;
    t.diagnostic(`${family.description}: refined ${passed(refined)}/${refined.length}, kernel ${passed(kernel)}/${kernel.length}`);
    assert.ok(
      passed(refined) >= passed(kernel),
      `refined met the bar on ${passed(refined)} seeds, the kernel's rule on ${passed(kernel)}:\n${[...refined, ...kernel].filter((r) => !r.pass).map(describeRun).join('\n')}`,
    );
  });
}
