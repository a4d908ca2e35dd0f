// The evaluation families as guest workloads (bench/guest-family-workloads.ts): the
// simulated layouts scaled to the guest's mapping with their fractions and probabilities
// kept; arguments the workload program (test/guest/workload.c, built and run here on the
// host, where it needs no kernel feature) accepts and prints back as the truth the guest
// bench scores against; and the bench's per-family summary.
import { after, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { PAGE_SIZE } from '../../agent/engine/region.js';
import { PRESET_DATA_START } from '../../agent/ops/synthetic-presets.js';
import { FAMILIES, HELD_OUT_SEEDS } from '../../bench/eval-families.js';
import {
  formatProbability, GUEST_QUICK_SEEDS, GUEST_SCALE, GUEST_SEEDS, guestWorkload, MAX_GUEST_MAPPING, workloadArgs,
} from '../../bench/guest-family-workloads.js';
import { familyRows } from '../../bench/guest-families.js';
import type { FamilyCase, MonitorScore } from '../../bench/guest-families-run.js';
import { buildWorkload, parseWorkloadOutput, phasedTruth } from '../guest/workload.js';

const MiB = 2 ** 20;

/** A cache of its own: the rig's shared one drops other sources' builds, which a guest run elsewhere may be using. */
let cache: string | undefined;
function workloadCache(): string {
  cache ??= mkdtempSync(join(tmpdir(), 'guest-family-workloads-'));
  return cache;
}
after(() => {
  if (cache !== undefined) rmSync(cache, { recursive: true, force: true });
});
const SEEDS = HELD_OUT_SEEDS.slice(0, 4);

test('the guest seeds are held-out seeds', () => {
  for (const s of [...GUEST_SEEDS, ...GUEST_QUICK_SEEDS]) assert.ok(HELD_OUT_SEEDS.includes(s), `seed ${s}`);
});

test('every family scales to the guest keeping each range\'s place and size as fractions of the mapping, and its probability', () => {
  for (const f of FAMILIES) {
    for (const seed of SEEDS) {
      const sim = f.workload(seed).targets[0];
      const g = guestWorkload(f, seed);
      const data = sim.layouts[0].mappings.find((m) => m.start === PRESET_DATA_START)!;
      assert.equal(g.simulatedBytes, data.end - data.start);
      assert.equal(g.size, Math.min(g.simulatedBytes / GUEST_SCALE, MAX_GUEST_MAPPING), `${f.name} ${seed}: mapping size`);
      assert.equal(g.phases.length, sim.phases.length, `${f.name} ${seed}: phases`);
      g.phases.forEach((ph, p) => {
        const simRanges = sim.phases[p].ranges;
        assert.equal(ph.length, simRanges.length, `${f.name} ${seed} phase ${p}: ranges`);
        assert.ok(ph.length > 0 && ph.length <= 256, `${f.name} ${seed} phase ${p}: ${ph.length} ranges, the workload takes 1..256`);
        ph.forEach((r, i) => {
          const at = `${f.name} ${seed} phase ${p} range ${i}`;
          assert.equal(r.offset % PAGE_SIZE, 0, `${at}: offset page aligned`);
          assert.equal(r.size % PAGE_SIZE, 0, `${at}: size page aligned`);
          assert.ok(r.size > 0 && r.offset + r.size <= g.size, `${at}: inside the mapping`);
          if (i > 0) assert.ok(r.offset >= ph[i - 1].offset + ph[i - 1].size, `${at}: sorted and disjoint`);
          const s = simRanges[i];
          const scale = g.size / g.simulatedBytes;
          assert.ok(Math.abs(r.offset - (s.start - data.start) * scale) < PAGE_SIZE, `${at}: offset scaled`);
          assert.ok(Math.abs(r.offset + r.size - (s.end - data.start) * scale) < PAGE_SIZE, `${at}: end scaled`);
          assert.equal(r.probability, s.probability, `${at}: probability`);
        });
      });
    }
  }
});

test('tiny-hot keeps its simulated mapping-to-range ratio (2048..65536)', () => {
  const f = FAMILIES.find((x) => x.name === 'tiny-hot')!;
  for (const seed of SEEDS) {
    const g = guestWorkload(f, seed);
    for (const r of g.phases.flat()) {
      const ratio = g.size / r.size;
      assert.ok(ratio >= 2048 && ratio <= 65536, `seed ${seed}: mapping / range = ${ratio}`);
    }
  }
});

test('probabilities are written with at most 4 decimals and must be in (0, 1]', () => {
  assert.equal(formatProbability(0.873456), '0.8735');
  assert.equal(formatProbability(1), '1');
  assert.equal(formatProbability(0.05), '0.05');
  assert.throws(() => formatProbability(0), /\(0, 1\]/);
  assert.throws(() => formatProbability(1.2), /\(0, 1\]/);
  assert.throws(() => formatProbability(Number.NaN), /\(0, 1\]/);
});

test('the workload program takes every family\'s arguments and prints back its ranges, and the truth holds the ranges at >= 0.5', (t) => {
  let bin: string;
  try {
    bin = buildWorkload(workloadCache());
  } catch (e) {
    t.skip(`cannot build test/guest/workload.c here: ${(e as Error).message}`);
    return;
  }
  for (const f of FAMILIES) {
    const seed = HELD_OUT_SEEDS[0];
    const g = guestWorkload(f, seed);
    // Phases of 1 ms: the program maps and touches the mapping, then runs through them.
    const r = spawnSync(bin, workloadArgs(g, { phaseMs: 1, tlbFlushMs: 0, pauseUs: 0 }), { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `${f.name}: the workload failed: ${r.stderr}`);
    const events = parseWorkloadOutput(r.stdout);
    const mapped = events.find((e) => e.event === 'mapped');
    assert.ok(mapped?.event === 'mapped');
    assert.equal(mapped.size, g.size);
    const phases = events.filter((e) => e.event === 'phase');
    assert.equal(phases.length, g.phases.length, `${f.name}: phases printed`);
    phases.forEach((e, p) => {
      assert.ok(e.event === 'phase');
      assert.deepEqual(
        e.hot.map((h) => [h.start - mapped.start, h.end - h.start, h.probability]),
        g.phases[p].map((x) => [x.offset, x.size, Number(formatProbability(x.probability))]),
        `${f.name} phase ${p}: ranges printed back`,
      );
    });
    const truth = phasedTruth(events);
    truth.phases.forEach((ph, p) => {
      const hot = g.phases[p].filter((x) => x.probability >= 0.5).map((x) => ({ start: mapped.start + x.offset, end: mapped.start + x.offset + x.size }));
      assert.deepEqual(ph.hot, hot, `${f.name} phase ${p}: truth`);
    });
    if (f.name === 'gradient') assert.ok(truth.phases.every((ph, p) => ph.hot.length < g.phases[p].length), 'gradient: its cold bands are not in the truth');
  }
});

test('the workload program rejects a probability outside (0, 1] naming it', (t) => {
  let bin: string;
  try {
    bin = buildWorkload(workloadCache());
  } catch (e) {
    t.skip(`cannot build test/guest/workload.c here: ${(e as Error).message}`);
    return;
  }
  for (const bad of ['0', '1.5', 'x', '']) {
    const r = spawnSync(bin, ['--size', '1M', '--hot', `0+64K@${bad}`, '--duration', '1'], { encoding: 'utf8' });
    assert.equal(r.status, 2, `@${bad}`);
    assert.match(r.stderr, /probability/, `@${bad}: ${r.stderr}`);
  }
});

function score(monitor: string, detections: (number | null)[], pass: boolean, coldMiB: number): MonitorScore {
  return {
    monitor, stopReason: 'target-exited', records: 50, unscored: 2, detections, pass,
    steadyHotCovered: 1, steadyColdBytes: coldMiB * MiB, medianAggregationMs: 150, medianRegions: 40,
  };
}

test('the per-family summary counts the kdamond of both pairs, and a median that never detects is "never"', () => {
  const base = { description: '', mappingBytes: 256 * MiB, simulatedBytes: 4096 * MiB, phases: 2, meanPassMs: 2 };
  const cases: FamilyCase[] = [
    { ...base, family: 'a', seed: 1, rule: 'refined', monitors: [score('kdamond', [7, null], false, 3), score('engine-refined', [3, 4], true, 1)] },
    { ...base, family: 'a', seed: 1, rule: 'kernel', monitors: [score('kdamond', [8, 12], false, 3), score('engine-kernel', [null, null], false, 5)] },
  ];
  const rows = familyRows(cases);
  assert.deepEqual(rows.map((r) => [r.monitor, r.runs, r.passed]), [['engine-refined', 1, 1], ['engine-kernel', 1, 0], ['kdamond', 2, 0]]);
  const kd = rows.find((r) => r.monitor === 'kdamond')!;
  assert.equal(kd.medianFirstDetection, 7.5);
  assert.equal(kd.medianRedetection, Infinity);
  assert.equal(kd.medianSteadyColdMiB, 3);
  assert.equal(kd.medianAggregationRatio, 1.5);
  assert.equal(rows.find((r) => r.monitor === 'engine-kernel')!.medianFirstDetection, Infinity);
});
