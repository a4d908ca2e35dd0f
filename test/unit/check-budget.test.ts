// The check budget (agent/engine/check-budget.ts): where region checks are slow, the
// refined split leaves no more regions than half a sampling interval can check, so the
// intervals keep their length; where they are cheap, or not measured, max_nr_regions holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHECK_TIME_SHARE, CheckCost } from '../../agent/engine/check-budget.js';
import { DamonContext, type AdjustMode } from '../../agent/engine/context.js';
import { validateAttributes } from '../../agent/engine/attrs.js';
import type { Operations } from '../../agent/engine/operations.js';
import { RateOperations } from '../support/rate-operations.js';
import { seededRandom } from '../support/seeded-random.js';

const MiB = 2 ** 20;
const BASE = 0x7f00_0000_0000;

test('CheckCost: max_nr_regions until measured; then what CHECK_TIME_SHARE of the interval affords, within [floor, max]', () => {
  const c = new CheckCost();
  assert.equal(c.affordableRegions(5_000, 1_000, 20), 1_000, 'nothing measured: the configured maximum');
  c.observe(20 * 10 * 100, 20, 10); // 100 us per check
  assert.equal(c.perCheckUs, 100);
  assert.equal(c.affordableRegions(5_000, 1_000, 20), Math.floor((CHECK_TIME_SHARE * 5_000) / 100));
  assert.equal(c.affordableRegions(5_000, 10, 5), 10, 'never above max_nr_regions');
  assert.equal(c.affordableRegions(500, 1_000, 20), 20, 'never below the floor');
  c.observe(20 * 10 * 300, 20, 10); // the newest weighs half
  assert.equal(c.perCheckUs, 200);
  c.observe(0, 0, 10);
  c.observe(Number.NaN, 20, 10);
  assert.equal(c.perCheckUs, 200, 'empty or broken batches are ignored');
  c.observe(0, 20, 10);
  assert.equal(c.perCheckUs, 100, 'free checks lower the estimate');
});

/**
 * Batched operations whose checks cost `usPerCheck` each; records the regions of every
 * batch. Accesses are deterministic (a sample in the hot quarter is always accessed,
 * elsewhere never), so a seeded context splits the same way on every run.
 */
function costedOps(usPerCheck: number): { ops: Operations; batches: number[] } {
  const hot = { start: BASE + 300 * MiB, end: BASE + 556 * MiB };
  const rate = new RateOperations({
    targetId: 1, start: BASE, end: BASE + 1024 * MiB, hotStart: hot.start, hotEnd: hot.end,
    phases: [{ durationUs: 1e12, hotRate: 0, baseRate: 0 }],
  });
  const batches: number[] = [];
  const ops = rate as RateOperations & Required<Pick<Operations, 'sampleAggregation'>>;
  ops.sampleAggregation = async (c, n, samplingUs) => {
    const regions = c.targets.reduce((a, t) => a + t.regions.length, 0);
    batches.push(regions);
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < n; i++) {
      rate.prepareAccessChecks(c);
      for (const t of c.targets) for (const r of t.regions) if (r.samplingAddr >= hot.start && r.samplingAddr < hot.end) r.nrAccesses++;
    }
    return { samples: n, wallUs: n * samplingUs, busyUs: n * regions * usPerCheck, late: 0, stopped: false };
  };
  return { ops, batches };
}

async function regionsPerBatch(usPerCheck: number, adjust: AdjustMode, minNrRegions = 10): Promise<{ batches: number[]; ctx: DamonContext }> {
  const { ops, batches } = costedOps(usPerCheck);
  const ctx = new DamonContext({
    attrs: validateAttributes({ samplingUs: 5_000, aggregationUs: 100_000, updateUs: 1_000_000, minNrRegions, maxNrRegions: 1_000 }),
    targetIds: [1], ops, random: seededRandom(11), adjust,
  });
  assert.equal(await ctx.start(), true);
  try {
    const deadline = Date.now() + 30_000;
    while (batches.length < 12 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  } finally {
    await ctx.stop();
  }
  assert.ok(batches.length >= 12, `only ${batches.length} batches ran`);
  return { batches, ctx };
}

test('refined split, slow checks (40 us): every batch after the first measured one checks at most what 2.5 ms affords', async () => {
  const { batches, ctx } = await regionsPerBatch(40, 'refined');
  const afford = Math.floor((CHECK_TIME_SHARE * 5_000) / 40);
  assert.ok(batches.slice(1).every((n) => n <= afford), `regions per batch ${batches.join(' ')}; affordable ${afford}`);
  assert.ok(batches.slice(1).some((n) => n > 40), `it still splits beyond the floor (4 x min_nr_regions): ${batches.join(' ')}`);
  assert.deepEqual(ctx.drift().checkCost, { perCheckUs: 40, affordableRegions: afford });
});

test('refined split, cheap checks (1 us): the budget is max_nr_regions and the split uses far more than 12 regions', async () => {
  const { batches, ctx } = await regionsPerBatch(1, 'refined');
  assert.ok(Math.max(...batches) > 100, `regions per batch ${batches.join(' ')}`);
  assert.deepEqual(ctx.drift().checkCost, { perCheckUs: 1, affordableRegions: 1_000 });
});

test('very slow checks (1 ms): the refined split keeps its floor (as many as the kernel\'s rule, at least 4 x min_nr_regions) and still explores', async () => {
  const { batches } = await regionsPerBatch(1_000, 'refined');
  assert.ok(batches.slice(1).every((n) => n <= 40), `regions per batch ${batches.join(' ')}`);
  assert.ok(batches.slice(1).some((n) => n >= 20), `every region at the size limit is halved: ${batches.join(' ')}`);
});

test("the kernel's rule is left as the kernel has it: the same seed splits the same way at any check cost", async () => {
  const slow = await regionsPerBatch(1_000, 'kernel');
  const cheap = await regionsPerBatch(1, 'kernel');
  assert.deepEqual(slow.batches.slice(0, 12), cheap.batches.slice(0, 12));
  // Under the refined split the same two costs do make a difference.
  const refinedSlow = await regionsPerBatch(1_000, 'refined');
  const refinedCheap = await regionsPerBatch(1, 'refined');
  assert.notDeepEqual(refinedSlow.batches.slice(0, 12), refinedCheap.batches.slice(0, 12));
});
