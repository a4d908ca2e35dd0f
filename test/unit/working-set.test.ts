// Working-set estimate, hottest ranges and monitored size of an aggregation record.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAGE_SIZE } from '../../agent/engine/region.js';
import {
  DEFAULT_WORKING_SET_THRESHOLD, hottestRanges, monitoredBytes, summarize, workingSetBytes,
} from '../../agent/engine/working-set.js';
import type { AggregationRecord } from '../../agent/records/record.js';

const P = PAGE_SIZE;

function record(regions: [number, number, number][], maxNrAccesses = 20): AggregationRecord {
  return {
    targetId: 42,
    startNs: 0n,
    endNs: 100_000_000n,
    maxNrAccesses,
    regions: regions.map(([s, e, n], i) => ({ start: s * P, end: e * P, nrAccesses: n, age: i })),
  };
}

const REC = record([
  [0, 10, 20], // 100%
  [10, 30, 10], // 50%
  [30, 31, 9], // 45%
  [31, 40, 0],
  [40, 50, 10], // 50%
]);

test('working set: bytes of regions accessed in at least the threshold fraction of samples', () => {
  assert.equal(DEFAULT_WORKING_SET_THRESHOLD, 0.5);
  assert.equal(workingSetBytes(REC), 40 * P); // 10 + 20 + 10 pages; 45% is out
  assert.equal(workingSetBytes(REC, 0.45), 41 * P);
  assert.equal(workingSetBytes(REC, 1), 10 * P);
  assert.equal(workingSetBytes(REC, 0.01), 41 * P);
  // 0.14 * 50 is 7.000000000000001 in doubles: 7 of 50 samples still reach 14%.
  assert.equal(workingSetBytes(record([[0, 1, 7], [1, 2, 6]], 50), 0.14), P);
});

test('working set: bad thresholds and records are errors that say what is wrong', () => {
  assert.throws(() => workingSetBytes(REC, 0), /threshold must be a fraction in \(0, 1\], got 0/);
  assert.throws(() => workingSetBytes(REC, 1.5), /got 1.5/);
  assert.throws(() => workingSetBytes(record([[0, 1, 0]], 0)), /target 42: maxNrAccesses must be positive/);
  assert.throws(() => hottestRanges(REC, -1), /n must be a non-negative integer/);
});

test('hottest ranges: by frequency, then size, then address', () => {
  assert.deepEqual(hottestRanges(REC, 3), [
    { start: 0, end: 10 * P, bytes: 10 * P, nrAccesses: 20, frequency: 1, age: 0 },
    { start: 10 * P, end: 30 * P, bytes: 20 * P, nrAccesses: 10, frequency: 0.5, age: 1 },
    { start: 40 * P, end: 50 * P, bytes: 10 * P, nrAccesses: 10, frequency: 0.5, age: 4 },
  ]);
  const ties = record([[5, 6, 3], [0, 1, 3]]);
  assert.deepEqual(hottestRanges(ties, 5).map((r) => r.start), [0, 5 * P]);
  assert.deepEqual(hottestRanges(REC, 0), []);
});

test('monitored bytes and the summary', () => {
  assert.equal(monitoredBytes(REC), 50 * P);
  const s = summarize(REC, { topN: 1 });
  assert.equal(s.targetId, 42);
  assert.equal(s.monitoredBytes, 50 * P);
  assert.equal(s.workingSetBytes, 40 * P);
  assert.deepEqual(s.hottest.map((r) => r.start), [0]);
});
