// DAMON_STAT's two summaries (Linux 6.17 mm/damon/stat.c) on hand-computed cases, and the
// percentiles against a byte-by-byte oracle: sort every byte's idle time, read the byte at
// p% of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IDLE_PERCENTILES, damonStat, estimatedMemoryBandwidth, idleMsPercentiles, type StatRegion } from '../../common/damon-stat.js';

const reg = (start: number, end: number, nrAccesses: number, age: number): StatRegion => ({ start, end, nrAccesses, age });
/** p -> value for p in [from, to] */
const fill = (...runs: [from: number, to: number, v: number][]) => {
  const out: number[] = [];
  for (const [from, to, v] of runs) for (let p = from; p <= to; p++) out[p] = v;
  return out;
};

test('one target: accessed regions idle 0, others (age + 1) aggregation intervals; bandwidth per second', () => {
  // 100 ms aggregation: A accessed twice, C idle one interval (age 0), B idle five (age 4).
  const input = { aggregationUs: 100_000, regions: [reg(0, 4096, 2, 3), reg(4096, 12288, 0, 4), reg(12288, 16384, 0, 0)] };
  const s = damonStat([input])!;
  // Sorted A (0 ms, 4 KiB), C (100 ms, 4 KiB), B (500 ms, 8 KiB): 25%, 50%, 100% of the bytes.
  assert.deepEqual(s.memoryIdleMsPercentiles, fill([0, 25, 0], [26, 50, 100], [51, 100, 500]));
  assert.equal(s.memoryIdleMsPercentiles.length, IDLE_PERCENTILES);
  // 4096 bytes x 2 accesses per 0.1 s.
  assert.equal(s.estimatedMemoryBandwidth, 81_920);
  assert.equal(s.totalBytes, 16_384);
});

test('integer arithmetic as the kernel: percent of bytes, milliseconds and bytes per second round down', () => {
  // Three equal regions: 100/3 -> 33, 200/3 -> 66. 7 ms aggregation: ages 0 and 1 are 7 and 14 ms.
  const input = { aggregationUs: 7_000, regions: [reg(0, 1, 3, 5), reg(1, 2, 0, 0), reg(2, 3, 0, 1)] };
  assert.deepEqual(idleMsPercentiles([input]), fill([0, 33, 0], [34, 66, 7], [67, 100, 14]));
  // 1 byte x 3 accesses / 7 ms = 428.57...
  assert.equal(estimatedMemoryBandwidth([input]), 428);
  // 1.5 ms aggregation: one idle interval is 1 ms.
  assert.deepEqual(idleMsPercentiles([{ aggregationUs: 1_500, regions: [reg(0, 10, 0, 0)] }]), fill([0, 100, 1]));
});

test('targets of one context are summed before dividing, as the kernel sums its targets', () => {
  const a = { aggregationUs: 3, regions: [reg(0, 1, 1, 0)] };
  const b = { aggregationUs: 3, regions: [reg(0, 2, 1, 0)] };
  // Apart: 333333 + 666666; together 3 bytes / 3 us.
  assert.equal(estimatedMemoryBandwidth([a]) + estimatedMemoryBandwidth([b]), 999_999);
  assert.equal(estimatedMemoryBandwidth([a, b]), 1_000_000);
});

test('contexts with different aggregation intervals are ordered by milliseconds, not intervals', () => {
  // Both idle 10 intervals: 1000 ms at 100 ms, 50 ms at 5 ms.
  const slow = { aggregationUs: 100_000, regions: [reg(0, 100, 0, 9)] };
  const fast = { aggregationUs: 5_000, regions: [reg(0, 300, 0, 9)] };
  assert.deepEqual(idleMsPercentiles([slow, fast]), fill([0, 75, 50], [76, 100, 1000]));
  assert.equal(estimatedMemoryBandwidth([slow, fast]), 0);
});

test('no regions: no summary; a bad aggregation interval is an error', () => {
  assert.equal(damonStat([]), null);
  assert.equal(damonStat([{ aggregationUs: 100_000, regions: [] }]), null);
  assert.throws(() => estimatedMemoryBandwidth([{ aggregationUs: 0, regions: [reg(0, 1, 1, 0)] }]), /aggregation interval 0 us/);
});

test('address spaces of hundreds of TiB: bytes counted as exact integers', () => {
  // 2^47 idle bytes, 2^47 + 1 accessed.
  const big = 2 ** 47;
  const input = { aggregationUs: 100_000, regions: [reg(0, big, 0, 0), reg(big, 2 * big + 1, 1, 0)] };
  // Accessed first: 2^47 + 1 of 2^48 + 1 bytes is just over 50%.
  assert.deepEqual(idleMsPercentiles([input]), fill([0, 50, 0], [51, 100, 100]));
});

test('percentiles equal the byte-by-byte oracle', () => {
  const region = fc.record({ size: fc.integer({ min: 1, max: 40 }), nrAccesses: fc.integer({ min: 0, max: 3 }), age: fc.integer({ min: 0, max: 6 }) });
  const ctx = fc.record({ aggregationUs: fc.constantFrom(1_000, 2_500, 100_000), regions: fc.array(region, { minLength: 1, maxLength: 12 }) });
  fc.assert(
    fc.property(fc.array(ctx, { minLength: 1, maxLength: 3 }), (ctxs) => {
      const inputs = ctxs.map(({ aggregationUs, regions }) => {
        let at = 0;
        return { aggregationUs, regions: regions.map((r) => reg(at, (at += r.size), r.nrAccesses, r.age)) };
      });
      const bytes: number[] = [];
      for (const { aggregationUs, regions } of inputs) {
        for (const r of regions) {
          const idleMs = r.nrAccesses > 0 ? 0 : Math.floor(((r.age + 1) * aggregationUs) / 1000);
          for (let b = r.start; b < r.end; b++) bytes.push(idleMs);
        }
      }
      bytes.sort((a, b) => a - b);
      // The kernel gives percentile p the region where accounted * 100 / total first reaches p:
      // the byte at ceil(p * total / 100) - 1 (the first byte for p = 0).
      const expected = Array.from({ length: IDLE_PERCENTILES }, (_, p) => bytes[Math.max(0, Math.ceil((p * bytes.length) / 100) - 1)]);
      assert.deepEqual(idleMsPercentiles(inputs), expected);
    }),
    { numRuns: 300, seed: 10 },
  );
});
