import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DamonContext } from '../../agent/engine/context.js';
import { DEFAULT_ATTRS } from '../../agent/engine/attrs.js';
import { TargetError } from '../../agent/engine/operations.js';
import { SyntheticOperations, monitoredRanges } from '../../agent/ops/synthetic.js';
import { parseWorkload, spanBytes } from '../../agent/ops/synthetic-workload.js';
import { presetWorkload } from '../../agent/ops/synthetic-presets.js';
import { seededRandom } from '../support/seeded-random.js';
import type { AggregationRecord } from '../../agent/records/record.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const TiB = 2 ** 40;

function context(ops: SyntheticOperations, seed = 1, attrs = {}) {
  return new DamonContext({
    attrs: { ...DEFAULT_ATTRS, ...attrs }, targetIds: ops.targetIds(), ops, random: seededRandom(seed), clock: 'virtual',
  });
}

/** Three mappings with big gaps: A (all accessed), B (never), C (all accessed). */
function threeMappings(extra: Record<string, unknown> = {}) {
  return parseWorkload({
    targets: [{
      id: 42,
      mappings: [{ start: '1GiB', size: '64MiB' }, { start: '4GiB', size: '256MiB' }, { start: '16GiB', size: '32MiB' }],
      baseProbability: 0,
      phases: [{ ranges: [{ start: '1GiB', size: '64MiB', probability: 1 }, { start: '16GiB', size: '32MiB', probability: 1 }] }],
      ...extra,
    }],
  });
}

test('init builds the three regions split to min_nr_regions; checks follow the declared probabilities', () => {
  const ops = new SyntheticOperations(threeMappings());
  assert.equal(ops.name, 'synthetic');
  assert.equal(ops.simulated, true);
  const ctx = context(ops);
  const records: AggregationRecord[] = [];
  ctx.on('aggregate', (r) => records.push(r));
  ctx.step();
  const regions = ctx.targets[0].regions;
  assert.equal(regions.length, DEFAULT_ATTRS.minNrRegions);
  assert.equal(regions[0].start, GiB);
  assert.equal(regions[regions.length - 1].end, 16 * GiB + 32 * MiB);
  ctx.runFor(DEFAULT_ATTRS.aggregationUs);
  const rec = records[0];
  assert.equal(rec.maxNrAccesses, 20);
  for (const r of rec.regions) {
    const accessed = r.start >= 16 * GiB || r.end <= GiB + 64 * MiB;
    assert.equal(r.nrAccesses, accessed ? 20 : 0, `region [${r.start}, ${r.end})`);
  }
});

test('a region in an unmapped gap is never accessed, even at probability 1 around it', () => {
  // Four mappings: the small gap between the first two stays inside the first region.
  const w = parseWorkload({
    targets: [{
      id: 1,
      mappings: [{ start: 0, size: '4MiB' }, { start: '8MiB', size: '4MiB' }, { start: '1GiB', size: '4MiB' }, { start: '8GiB', size: '4MiB' }],
      baseProbability: 1,
    }],
  });
  const ops = new SyntheticOperations(w);
  assert.deepEqual(monitoredRanges(w.targets[0].layouts[0].mappings), [
    { start: 0, end: 12 * MiB }, { start: GiB, end: GiB + 4 * MiB }, { start: 8 * GiB, end: 8 * GiB + 4 * MiB },
  ]);
  const ctx = context(ops, 3, { minNrRegions: 12, maxNrRegions: 100 });
  const records: AggregationRecord[] = [];
  ctx.on('aggregate', (r) => records.push(r));
  ctx.runFor(DEFAULT_ATTRS.aggregationUs);
  const gap = records[0].regions.filter((r) => r.start >= 4 * MiB && r.end <= 8 * MiB);
  assert.ok(gap.length > 0, 'some region lies wholly in the gap');
  for (const r of gap) assert.equal(r.nrAccesses, 0);
});

test('one sampling interval costs the same few checks for 1 GiB and 4 TiB targets', () => {
  const perStep = (size: number) => {
    const w = parseWorkload({
      targets: [{
        id: 1,
        mappings: [{ start: '4KiB', size: '4KiB' }, { start: '1TiB', size }, { start: '8TiB', size: '4KiB' }],
        baseProbability: 0.05,
        phases: [{ ranges: [{ start: '1TiB', size: size / 16, probability: 0.9 }] }],
      }],
    });
    const ops = new SyntheticOperations(w);
    let calls = 0;
    const rnd = seededRandom(9);
    const ctx = new DamonContext({
      attrs: { ...DEFAULT_ATTRS }, targetIds: [1], ops, clock: 'virtual', random: () => { calls++; return rnd(); },
    });
    ctx.runFor(2_000_000); // reach a steady number of regions
    const regionsBefore = ctx.targets[0].regions.length;
    calls = 0;
    ctx.step();
    return { calls, regions: regionsBefore };
  };
  for (const size of [GiB, 4 * TiB]) {
    const { calls, regions } = perStep(size);
    // One draw for the sampled address and at most one for the access, per region.
    assert.ok(calls <= 2 * regions, `${size} bytes: ${calls} random draws for ${regions} regions`);
    assert.ok(regions <= DEFAULT_ATTRS.maxNrRegions);
  }
});

test('the simulated process exits at exitAtUs: the context drops it at the next update and stops', () => {
  const ops = new SyntheticOperations(threeMappings({ exitAtUs: '1.5s' }));
  const ctx = context(ops);
  const exited: number[] = [];
  let stopped = '';
  const late: number[] = [];
  ctx.on('targetExited', (id) => exited.push(id));
  ctx.on('stopped', (reason) => { stopped = reason; });
  ctx.on('aggregate', (r) => { if (ctx.nowUs() > 1_500_000 + DEFAULT_ATTRS.aggregationUs) late.push(...r.regions.map((x) => x.nrAccesses)); });
  ctx.runFor(5_000_000);
  assert.deepEqual(exited, [42]);
  assert.equal(stopped, 'no-targets');
  // Removed at the first update interval after the exit (updates every 1 s).
  assert.equal(ctx.nowUs(), 2_000_000);
  // Aggregations fully after the exit see no access at all.
  assert.ok(late.length > 0 && late.every((n) => n === 0), `${late}`);
});

test('a mapping change is applied at the next update: regions follow the new three regions', () => {
  const ops = new SyntheticOperations(threeMappings({
    mappingChanges: [{
      atUs: '1.2s',
      mappings: [{ start: '1GiB', size: '32MiB' }, { start: '4GiB', size: '128MiB' }, { start: '16GiB', size: '32MiB' }, { start: '20GiB', size: '8MiB' }],
    }],
  }));
  const ctx = context(ops);
  ctx.runFor(1_500_000);
  assert.equal(ctx.targets[0].regions.at(-1)!.end, 16 * GiB + 32 * MiB, 'not yet updated at 1.5 s');
  ctx.runFor(600_000);
  const regions = ctx.targets[0].regions;
  const ranges = monitoredRanges(ops.mappedRanges(42));
  // The two biggest gaps are now 4..16 GiB and 16..20 GiB; the 1..4 GiB gap is monitored.
  assert.deepEqual(ranges, [
    { start: GiB, end: 4 * GiB + 128 * MiB }, { start: 16 * GiB, end: 16 * GiB + 32 * MiB }, { start: 20 * GiB, end: 20 * GiB + 8 * MiB },
  ]);
  for (const r of regions) {
    assert.ok(ranges.some((g) => r.start >= g.start && r.end <= g.end), `region [${r.start}, ${r.end}) outside the new ranges`);
  }
  assert.equal(regions[0].start, GiB);
  assert.equal(regions.at(-1)!.end, 20 * GiB + 8 * MiB);
});

test('ground truth follows the phases in context time; every-page checks cover the mapped pages', () => {
  const ops = new SyntheticOperations(presetWorkload('hot5'));
  const ctx = context(ops);
  ctx.step();
  const before = ops.hotRanges(1, 3_999_999);
  const after = ops.hotRanges(1, 4_000_000);
  assert.equal(before.length, 1);
  assert.notDeepEqual(before, after);
  assert.equal(spanBytes(before), spanBytes(after));
  const mapped = spanBytes(ops.mappedRanges(1));
  const all = ops.checkEveryPage(1);
  assert.equal(all.pages, mapped / 4096);
  // About 5% of pages at 0.9 and 95% at 0.02: 6.4% accessed.
  assert.ok(Math.abs(all.accessed / all.pages - (0.05 * 0.9 + 0.95 * 0.02)) < 0.002, `${all.accessed / all.pages}`);
  const slice = ops.checkEveryPage(1, 0x7f00_0000_0000, 1000);
  assert.equal(slice.pages, 1000);
});

test('a context target the workload does not declare stops the context with a TargetError', () => {
  const ops = new SyntheticOperations(threeMappings());
  const ctx = new DamonContext({ attrs: { ...DEFAULT_ATTRS }, targetIds: [42, 7], ops, clock: 'virtual' });
  let error: Error | undefined;
  ctx.on('stopped', (_reason, e) => { error = e; });
  ctx.step();
  assert.ok(error instanceof TargetError, String(error));
  assert.match(error.message, /target 7: the synthetic workload .* declares no such target \(it has 42\)/);
});
