// Intervals auto-tuning (agent/engine/intervals-tuning.ts, Linux 6.15's intervals_goal):
// the feedback arithmetic against hand-computed cases, and the engine on a virtual clock
// reaching the goal on a workload whose access rate changes, within a bounded number of
// adjustments, with records and intervals() telling the intervals as tuned.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DamonContext } from '../../agent/engine/context.js';
import { AttributeError, validateAttributes, type IntervalsGoal } from '../../agent/engine/attrs.js';
import { feedLoopNextInput, intervalsAdaptationBp, intervalsScoreBp, tunedSamplingUs } from '../../agent/engine/intervals-tuning.js';
import { newRegion } from '../../agent/engine/region.js';
import type { Operations } from '../../agent/engine/operations.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { RateOperations, observedAccessRatio, type RatePhase } from '../support/rate-operations.js';
import { seededRandom } from '../support/seeded-random.js';

const MiB = 2 ** 20;
const BASE = 0x1000_0000;

test('feedback: on goal nothing changes; too few events up to 2x; too many at most halved', () => {
  assert.equal(intervalsAdaptationBp(10_000), 10_000);
  assert.equal(intervalsAdaptationBp(0), 20_000, 'no events at all: double');
  assert.equal(intervalsAdaptationBp(5_000), 15_000, 'half the goal: 1.5x');
  assert.equal(intervalsAdaptationBp(15_000), 7_500, '1.5x the goal: 0.5 rescaled to 0.75');
  assert.equal(intervalsAdaptationBp(20_000), 5_000, 'twice the goal or more: halved, never less');
  assert.equal(intervalsAdaptationBp(1_000_000), 5_000);
  assert.equal(feedLoopNextInput(50_000, 20_000), 10_000, 'the input never goes below 10000');
});

test('score: access events weighted by region size, against the goal ratio', () => {
  // 3 MiB never accessed, 1 MiB accessed in 10 of 20 samples: 1/8 of the most possible.
  const regions = [newRegion(BASE, BASE + 3 * MiB), { ...newRegion(BASE + 3 * MiB, BASE + 4 * MiB), nrAccesses: 10 }];
  assert.equal(intervalsScoreBp([regions], 20, 1_250), 10_000);
  assert.equal(intervalsScoreBp([regions], 20, 2_500), 5_000);
  assert.equal(intervalsScoreBp([[]], 20, 2_500), undefined, 'no regions: no score, no adjustment');
});

test('the tuned sampling interval stays within the goal bounds', () => {
  const g: IntervalsGoal = { accessBp: 400, aggrs: 1, minSampleUs: 2_000, maxSampleUs: 9_000 };
  assert.equal(tunedSamplingUs(5_000, 20_000, g), 9_000);
  assert.equal(tunedSamplingUs(3_000, 5_000, g), 2_000);
  assert.equal(tunedSamplingUs(5_000, 15_000, g), 7_500);
});

test('an intervals goal is checked with the other attributes, naming the field', () => {
  const ok = { accessBp: 400, aggrs: 3, minSampleUs: 1_000, maxSampleUs: 100_000 };
  assert.deepEqual(validateAttributes({ intervalsGoal: ok }).intervalsGoal, ok);
  assert.equal(validateAttributes({}).intervalsGoal, null);
  const refused = (g: Partial<IntervalsGoal>, field: string, re: RegExp) =>
    assert.throws(() => validateAttributes({ intervalsGoal: { ...ok, ...g } }), (e: unknown) => e instanceof AttributeError && e.field === field && re.test(e.message));
  refused({ accessBp: 0 }, 'intervals_goal.access_bp', /positive integer, got 0/);
  refused({ accessBp: 10_001 }, 'intervals_goal.access_bp', /at most 10000/);
  refused({ aggrs: 0 }, 'intervals_goal.aggrs', /positive integer/);
  refused({ minSampleUs: 0 }, 'intervals_goal.min_sample_us', /positive integer/);
  refused({ maxSampleUs: 500 }, 'intervals_goal.max_sample_us', /at least min_sample_us \(500 < 1000\)/);
});

/** 256 MiB mapped, a 32 MiB hot range (1/8): the observed ratio is 1/8 of the hot pages' access probability. */
function rateOps(phases: RatePhase[]): RateOperations {
  return new RateOperations({ targetId: 1, start: BASE, end: BASE + 256 * MiB, hotStart: BASE + 64 * MiB, hotEnd: BASE + 96 * MiB, phases });
}

const PHASE_US = 60_000_000;
const PHASES: RatePhase[] = [
  { durationUs: PHASE_US, hotRate: 40, baseRate: 0 },
  { durationUs: PHASE_US, hotRate: 4, baseRate: 0 },
  { durationUs: PHASE_US, hotRate: 100, baseRate: 0 },
];
const GOAL: IntervalsGoal = { accessBp: 400, aggrs: 3, minSampleUs: 1_000, maxSampleUs: 200_000 };
/** Hot pages must be seen accessed with p = 0.32 for 4% of all events (1/8 hot): s = -ln(0.68) / rate. */
const idealUs = (rate: number) => (-Math.log(1 - (GOAL.accessBp / 10_000) * 8) / rate) * 1e6;
/** Adjustments a rate change may take to come within 35% of the ideal: the 25x drop to the third phase needs 5 halvings at least. */
const MAX_ADJUSTMENTS = 8;

interface Seen {
  atUs: number;
  rec: AggregationRecord;
}

function run(seed: number, goal: IntervalsGoal | null): { seen: Seen[]; ctx: DamonContext; ops: RateOperations } {
  const ops = rateOps(PHASES);
  const ctx = new DamonContext({ attrs: validateAttributes({ intervalsGoal: goal }), targetIds: [1], ops, random: seededRandom(seed), clock: 'virtual' });
  const seen: Seen[] = [];
  ctx.on('aggregate', (rec) => seen.push({ atUs: ctx.nowUs(), rec }));
  ctx.runFor(PHASES.length * PHASE_US);
  return { seen, ctx, ops };
}

for (const seed of [1, 2, 3, 4, 5]) {
  test(`intervals goal, seed ${seed}: within ${MAX_ADJUSTMENTS} adjustments of each rate change the sampling interval fits the goal, and the observed ratio holds it`, () => {
    const { seen, ctx } = run(seed, GOAL);
    for (let p = 0; p < PHASES.length; p++) {
      const from = p * PHASE_US;
      const inPhase = seen.filter((s) => s.atUs > from && s.atUs <= from + PHASE_US);
      // One adjustment every GOAL.aggrs aggregations: the interval a record ran at is the one of its window.
      const windows: Seen[][] = [];
      for (let i = 0; i + GOAL.aggrs <= inPhase.length; i += GOAL.aggrs) windows.push(inPhase.slice(i, i + GOAL.aggrs));
      const ideal = idealUs(PHASES[p].hotRate);
      const k = windows.findIndex((w) => Math.abs(w[0].rec.samplingUs! - ideal) <= 0.35 * ideal);
      assert.ok(k >= 0 && k <= MAX_ADJUSTMENTS, `phase ${p} (rate ${PHASES[p].hotRate}/s): ${k < 0 ? 'never' : k} adjustments to come within 35% of ${ideal.toFixed(0)} us; saw ${windows.map((w) => w[0].rec.samplingUs).join(', ')}`);
      const settled = windows.slice(k).flat();
      assert.ok(settled.length >= 3 * GOAL.aggrs, `phase ${p}: too few settled aggregations (${settled.length})`);
      const ratio = settled.reduce((a, s) => a + observedAccessRatio(s.rec), 0) / settled.length;
      const goal = GOAL.accessBp / 10_000;
      assert.ok(Math.abs(ratio - goal) <= 0.2 * goal, `phase ${p}: mean observed ratio ${ratio.toFixed(4)} once settled, goal ${goal}`);
    }
    // The aggregation interval kept its ratio: 20 samples, whatever the sampling interval.
    for (const { rec } of seen) {
      assert.equal(rec.maxNrAccesses, 20);
      assert.equal(rec.endNs - rec.startNs, BigInt(rec.samplingUs! * 20 * 1000));
    }
    const now = ctx.intervals();
    assert.equal(now.aggregationUs, now.samplingUs * 20);
    assert.ok(now.samplingUs >= GOAL.minSampleUs && now.samplingUs <= GOAL.maxSampleUs);
  });
}

test('without a goal the intervals stay as set; equal bounds pin the sampling interval', () => {
  const fixed = run(1, null);
  assert.ok(fixed.seen.every((s) => s.rec.samplingUs === 5_000));
  assert.deepEqual(fixed.ctx.intervals(), { samplingUs: 5_000, aggregationUs: 100_000 });

  const ops = rateOps(PHASES);
  const pinned = new DamonContext({
    attrs: validateAttributes({ intervalsGoal: { accessBp: 400, aggrs: 1, minSampleUs: 7_000, maxSampleUs: 7_000 } }),
    targetIds: [1], ops, random: seededRandom(1), clock: 'virtual',
  });
  const recs: AggregationRecord[] = [];
  pinned.on('aggregate', (r) => recs.push(r));
  pinned.runFor(5_000_000);
  assert.equal(recs[0].samplingUs, 5_000, 'the first aggregation runs at the interval set');
  assert.ok(recs.slice(1).every((r) => r.samplingUs === 7_000), recs.map((r) => r.samplingUs).join(','));
});

test('the regions update stays due on time while the sampling interval changes', () => {
  // update every 1 s; tuning every aggregation would restart a countdown in samples for ever.
  const ops = rateOps([{ durationUs: PHASE_US, hotRate: 4, baseRate: 0 }]);
  let updates = 0;
  const inner = ops.update.bind(ops);
  ops.update = () => {
    updates++;
    inner();
  };
  const ctx = new DamonContext({
    attrs: validateAttributes({ updateUs: 1_000_000, intervalsGoal: { accessBp: 400, aggrs: 1, minSampleUs: 1_000, maxSampleUs: 200_000 } }),
    targetIds: [1], ops, random: seededRandom(3), clock: 'virtual',
  });
  ctx.runFor(30_000_000);
  // Some slack: an update comes at the first sampling step at or after its due time.
  assert.ok(updates >= 25 && updates <= 31, `${updates} updates in 30 s at 1 s`);
});

test('the batched real-time loop (operations with sampleAggregation, as page_idle\'s native sampler) runs each batch at the interval as tuned', async () => {
  // Nothing is ever accessed (rates 0: the checks run back to back in real time, and on a
  // busy machine some time would pass between them): the goal doubles the interval at every
  // adjustment until its maximum.
  const ops = rateOps([{ durationUs: PHASE_US, hotRate: 0, baseRate: 0 }]) as RateOperations & Required<Pick<Operations, 'sampleAggregation'>>;
  const asked: number[] = [];
  ops.sampleAggregation = async (c, n, samplingUs) => {
    asked.push(samplingUs);
    await new Promise((r) => setImmediate(r));
    ops.prepareAccessChecks(c);
    for (let i = 0; i < n; i++) ops.checkAccesses(c);
    return { samples: n, wallUs: n * samplingUs, late: 0, stopped: false };
  };
  const goal: IntervalsGoal = { accessBp: 400, aggrs: 1, minSampleUs: 1_000, maxSampleUs: 8_000 };
  const ctx = new DamonContext({
    attrs: validateAttributes({ samplingUs: 1_000, aggregationUs: 10_000, updateUs: 1_000_000, intervalsGoal: goal }),
    targetIds: [1], ops, random: seededRandom(7),
  });
  const recs: AggregationRecord[] = [];
  ctx.on('aggregate', (r) => recs.push(r));
  assert.equal(await ctx.start(), true);
  try {
    const deadline = Date.now() + 20_000;
    // Until a record of a batch run at the maximum came out (the batch is asked before its record).
    while (!recs.some((r) => r.samplingUs === 8_000) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  } finally {
    await ctx.stop();
  }
  const steps = [...new Set(asked)];
  assert.deepEqual(steps, [1_000, 2_000, 4_000, 8_000], `intervals asked of the operations: ${asked.join(', ')}`);
  assert.equal(ctx.intervals().samplingUs, 8_000);
  assert.ok(recs.some((r) => r.samplingUs === 8_000), 'records tell the tuned interval');
});
