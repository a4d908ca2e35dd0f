// The evaluation set of the split rules (bench/eval-families.ts): seed sets kept apart,
// workloads reproducible from a seed, and each family being what its name says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FAMILIES, familyNamed, HELD_OUT_SEEDS, TEST_SEEDS, TUNING_PRESET_SEEDS, TUNING_SEEDS, withLongWindows,
} from '../../bench/eval-families.js';
import { hotRanges, layoutAt, phaseAt, spanBytes, type WorkloadTarget } from '../../agent/ops/synthetic-workload.js';
import { DEFAULT_ATTRS } from '../../agent/engine/attrs.js';
import { initRegions } from '../../agent/ops/vaddr-regions.js';
import { monitoredRanges } from '../../agent/ops/synthetic.js';
import { PRESET_DATA_START } from '../../agent/ops/synthetic-presets.js';

const SAMPLE_SEEDS = [...TUNING_SEEDS.slice(0, 5), ...HELD_OUT_SEEDS.slice(0, 5), ...TEST_SEEDS.slice(0, 5)];

/** The target of a family's workload and its phases' start times. */
function target(name: string, seed: number): { t: WorkloadTarget; phaseStarts: number[] } {
  const f = familyNamed(name);
  const w = f.workload(seed);
  assert.equal(w.targets.length, 1);
  const phaseStarts = Array.from({ length: Math.round(f.runUs / f.phaseUs) }, (_, i) => i * f.phaseUs);
  return { t: w.targets[0], phaseStarts };
}

test('the tuning, held-out and test seed sets never overlap', () => {
  const tuning = new Set([...TUNING_SEEDS, ...TUNING_PRESET_SEEDS]);
  for (const s of [...HELD_OUT_SEEDS, ...TEST_SEEDS]) assert.ok(!tuning.has(s), `seed ${s} is also a tuning seed`);
  for (const s of TEST_SEEDS) assert.ok(!HELD_OUT_SEEDS.includes(s), `seed ${s} is both the bench's and the test's`);
});

test('every family: the same seed gives the same workload, other seeds other layouts; every phase has a hot set inside the data mapping', () => {
  for (const f of FAMILIES) {
    assert.equal(f.runUs % f.phaseUs, 0, `${f.name}: a whole number of phases`);
    const layouts = new Set<string>();
    for (const seed of SAMPLE_SEEDS) {
      assert.deepEqual(f.workload(seed), f.workload(seed), `${f.name} seed ${seed} is not reproducible`);
      const { t, phaseStarts } = target(f.name, seed);
      layouts.add(JSON.stringify(t.phases.map((p) => p.ranges)));
      const data = layoutAt(t, 0).mappings.find((m) => m.start === PRESET_DATA_START);
      assert.ok(data, `${f.name}: no data mapping`);
      for (const at of phaseStarts) {
        const hot = hotRanges(t, at);
        assert.ok(spanBytes(hot) > 0, `${f.name} seed ${seed}: no hot byte at ${at} us`);
        for (const h of hot) assert.ok(h.start >= data.start && h.end <= data.end, `${f.name} seed ${seed}: hot range outside the data mapping`);
      }
      // The hot set moves at every phase boundary.
      for (let i = 1; i < phaseStarts.length; i++) {
        assert.notDeepEqual(hotRanges(t, phaseStarts[i]), hotRanges(t, phaseStarts[i - 1]), `${f.name} seed ${seed}: phase ${i} does not move`);
      }
    }
    assert.ok(layouts.size >= SAMPLE_SEEDS.length - 2, `${f.name}: seeds give too few different layouts (${layouts.size})`);
  }
});

test('islands-12x8: twelve islands of 8 MiB; gradient: no level within 0.15 of the hot cut', () => {
  for (const seed of SAMPLE_SEEDS) {
    const { t: islands } = target('islands-12x8', seed);
    for (const p of islands.phases) {
      assert.equal(p.ranges.length, 12);
      for (const r of p.ranges) assert.equal(r.end - r.start, 8 * 2 ** 20);
    }
    const { t: gradient } = target('gradient', seed);
    for (const p of gradient.phases) {
      assert.ok(p.ranges.length >= 6);
      for (const r of p.ranges) assert.ok(Math.abs(r.probability - gradient.hotThreshold) >= 0.15 - 1e-9, `level ${r.probability}`);
      // Adjacent bands: a gradient, not scattered levels.
      for (let i = 1; i < p.ranges.length; i++) assert.equal(p.ranges[i].start, p.ranges[i - 1].end);
    }
  }
});

test('edge-strips: every strip starts or ends at an edge of the initial regions; tiny-hot: the mapping is >= 2048 times the hot range', () => {
  for (const seed of SAMPLE_SEEDS) {
    const { t, phaseStarts } = target('edge-strips', seed);
    const edges = new Set(initRegions(monitoredRanges(layoutAt(t, 0).mappings), DEFAULT_ATTRS.minNrRegions).map((r) => r.start));
    for (const at of phaseStarts) {
      for (const r of phaseAt(t, at).ranges) assert.ok(edges.has(r.start) || edges.has(r.end), `seed ${seed}: strip [${r.start}, ${r.end}) is at no edge`);
    }
    const { t: tiny } = target('tiny-hot', seed);
    const data = layoutAt(tiny, 0).mappings.find((m) => m.start === PRESET_DATA_START)!;
    for (const p of tiny.phases) {
      assert.equal(p.ranges.length, 1);
      assert.ok((data.end - data.start) / (p.ranges[0].end - p.ranges[0].start) >= 2048);
    }
  }
});

test('long windows: every probability p reads as 1 - (1 - p)^k, and the hot bytes stay the same', () => {
  const gradient = familyNamed('gradient');
  const late = withLongWindows(gradient, 2);
  for (const seed of SAMPLE_SEEDS) {
    const t = gradient.workload(seed).targets[0];
    const u = late.workload(seed).targets[0];
    assert.ok(Math.abs(u.baseProbability - (1 - (1 - t.baseProbability) ** 2)) < 1e-12);
    t.phases.forEach((ph, i) => ph.ranges.forEach((r, j) => {
      assert.ok(Math.abs(u.phases[i].ranges[j].probability - (1 - (1 - r.probability) ** 2)) < 1e-12);
    }));
    for (const at of [0, gradient.phaseUs]) assert.deepEqual(hotRanges(u, at), hotRanges(t, at));
  }
});
