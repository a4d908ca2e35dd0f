// Scoring records against a phased truth and comparing two engines (test/support/phase-accuracy.ts),
// on hand-made records whose scores are known.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compareHotSets, comparisonFailures, jaccard, KERNEL_COMPARISON_BAR, scoreEngine, type PhasedTruth,
} from '../support/phase-accuracy.js';
import type { AggregationRecord, RegionRecord } from '../../agent/records/record.js';

const MiB = 2 ** 20;
const MS = 1_000_000n;
const BASE = 0x7f0000000000;
const at = (mib: number) => BASE + mib * MiB;

const TRUTH: PhasedTruth = {
  mapped: [{ start: at(0), end: at(256) }],
  phases: [
    { startNs: 1000n * MS, hot: [{ start: at(64), end: at(80) }] },
    { startNs: 2000n * MS, hot: [{ start: at(160), end: at(176) }] },
  ],
};

/** Regions covering the mapping: [hotStart, hotEnd) at `nr`, the rest at 0 (plus a stack region, not scored). */
function regions(hotStart: number, hotEnd: number, nr = 20): RegionRecord[] {
  const out: RegionRecord[] = [];
  if (hotStart > 0) out.push({ start: at(0), end: at(hotStart), nrAccesses: 0, age: 1 });
  out.push({ start: at(hotStart), end: at(hotEnd), nrAccesses: nr, age: 1 });
  if (hotEnd < 256) out.push({ start: at(hotEnd), end: at(256), nrAccesses: 0, age: 1 });
  out.push({ start: at(1024), end: at(1025), nrAccesses: 20, age: 1 });
  return out;
}

function rec(startMs: number, endMs: number, r: RegionRecord[]): AggregationRecord {
  return { targetId: 1, startNs: BigInt(startMs) * MS, endNs: BigInt(endMs) * MS, maxNrAccesses: 20, regions: r };
}

// Engine A: finds the hot set in its third aggregation, and the moved one in the second after the move.
const A = [
  rec(1010, 1110, regions(0, 128, 5)), // nothing at >= 10
  rec(1110, 1210, regions(48, 96)), // all hot, 32 MiB cold: 13% of the cold bytes
  rec(1210, 1310, regions(64, 80)), // exact
  rec(1310, 1410, regions(64, 81)), // 1 MiB cold: 0.4%
  rec(1950, 2050, regions(64, 80)), // the move happens during it: not scored
  rec(2050, 2150, regions(64, 80)), // the old place: 0 covered
  rec(2150, 2250, regions(160, 176)),
  rec(2250, 2350, regions(160, 175)), // 15/16 covered: steady, not detected
];
// Engine B: one aggregation earlier each time; its hot sets are exact.
const B = [
  rec(1000, 1100, regions(48, 96)),
  rec(1100, 1200, regions(64, 80)),
  rec(1200, 1300, regions(64, 80)),
  rec(2000, 2100, regions(160, 176)),
  rec(2100, 2200, regions(160, 176)),
  rec(2200, 2300, regions(160, 176)),
];

const SETTLE = { settle: 2 };

test('an engine is scored per aggregation against the phase in force; moves during an aggregation are left out', () => {
  const a = scoreEngine(A, TRUTH, SETTLE);
  assert.equal(a.records, 8);
  assert.equal(a.unscored, 1);
  assert.deepEqual(a.scored.map((s) => [s.phase, s.index, s.detected, s.steady]), [
    [0, 1, false, false],
    [0, 2, false, false],
    [0, 3, true, true],
    [0, 4, true, true],
    [1, 1, false, false],
    [1, 2, true, false],
    [1, 3, false, true],
  ]);
  assert.equal(a.firstDetection, 3);
  assert.deepEqual(a.redetections, [2]);
  const coldBytes = 240 * MiB;
  assert.equal(a.phases[0].steadyColdBytes, (0 + MiB) / 2);
  assert.equal(a.phases[0].steadyColdCovered, MiB / coldBytes / 2);
  assert.equal(a.phases[1].steadyHotCovered, 15 / 16);
  assert.equal(a.steadyHotCovered, (1 + 1 + 15 / 16) / 3);
  // The stack region is hot but outside the mapping: not in the hot spans.
  assert.deepEqual(a.scored[2].hot, [{ start: at(64), end: at(80) }]);
});

test('hot sets of two engines are compared pairwise once settled', () => {
  assert.equal(jaccard([{ start: 0, end: 4 }], [{ start: 2, end: 6 }]), 2 / 6);
  assert.equal(jaccard([], []), 1);
  const a = scoreEngine(A, TRUTH, SETTLE);
  const b = scoreEngine(B, TRUTH, { settle: 1 });
  assert.equal(b.firstDetection, 2);
  assert.deepEqual(b.redetections, [1]);
  const agree = compareHotSets(a, b);
  // A's steady aggregations and B's steady ones with the nearest middle: 1210-1310 and
  // 1200-1300 (exact), 1310-1410 and 1200-1300 (16/17), 2250-2350 and 2200-2300 (15/16).
  assert.equal(agree.pairs, 3);
  assert.equal(agree.minJaccard, 15 / 16);
  assert.equal(agree.meanJaccard, (1 + 16 / 17 + 15 / 16) / 3);
});

test('the comparison bar says every way an engine falls short of the reference', () => {
  const a = scoreEngine(A, TRUTH, SETTLE);
  const b = scoreEngine(B, TRUTH, { settle: 1 });
  const agree = compareHotSets(a, b);
  assert.deepEqual(comparisonFailures(a, b, agree), [
    'steady hot coverage 0.9792 is more than 0.01 below the reference\'s 1.0000 and below 0.98',
  ]);
  // Enough on its own: a reference that lost less of the hot set is no bar then.
  assert.deepEqual(comparisonFailures(a, b, agree, { ...KERNEL_COMPARISON_BAR, steadyHotEnough: 0.97 }), []);
  const strict = comparisonFailures(a, b, agree, { maxDetectionLag: 0, maxDetectionWithoutReference: 10, maxSteadyHotShortfall: 0.1, steadyHotEnough: 1, maxSteadyColdCovered: 0.0005, minMeanJaccard: 0.99 });
  assert.deepEqual(strict, [
    'first detection: aggregation 3, more than 0 after the reference\'s 2',
    're-detection after move 1: aggregation 2, more than 0 after the reference\'s 1',
    'steady cold coverage 0.14% is above 0.05%',
    `mean Jaccard of the hot sets ${agree.meanJaccard!.toFixed(3)} is below 0.99`,
  ]);
  const never = scoreEngine(A.slice(0, 2), TRUTH, SETTLE);
  assert.deepEqual(comparisonFailures(never, b, compareHotSets(never, b)), [
    'first detection: never (reference: aggregation 2)',
    're-detection after move 1: never (reference: aggregation 1)',
    'steady hot coverage: no steady aggregation',
    'hot-set agreement: no pair of steady aggregations',
  ]);
  // A reference that never detects bounds nothing by itself: the engine has its own limit.
  const blind = comparisonFailures(a, never, compareHotSets(a, never), { ...KERNEL_COMPARISON_BAR, maxDetectionWithoutReference: 2 });
  assert.deepEqual(blind.filter((f) => f.includes('detection')), [
    'first detection: aggregation 3, beyond 2 (the reference never detected it)',
  ]);
  assert.deepEqual(comparisonFailures(a, never, compareHotSets(a, never)).filter((f) => f.includes('detection')), [], 'within the default 10');
});

test('a truth that is not sorted, or has empty spans, is refused naming the part', () => {
  assert.throws(() => scoreEngine([], { mapped: TRUTH.mapped, phases: [] }), /at least one phase/);
  assert.throws(() => scoreEngine([], { mapped: TRUTH.mapped, phases: [TRUTH.phases[1], TRUTH.phases[0]] }), /phase 1 does not start after phase 0/);
  assert.throws(() => scoreEngine([], { mapped: [{ start: 5, end: 5 }], phases: TRUTH.phases }), /mapped span 0 is empty/);
  assert.throws(() => scoreEngine([], { ...TRUTH, endNs: 2000n * MS }), /endNs is not after the last phase starts/);
});

test('aggregations that end after the truth ends (the workload exited) are not scored', () => {
  const a = scoreEngine(A, { ...TRUTH, endNs: 2300n * MS }, SETTLE);
  assert.equal(a.unscored, 2);
  assert.deepEqual(a.scored.map((s) => s.record.endNs / MS), [1110n, 1210n, 1310n, 1410n, 2150n, 2250n]);
});
