// Merge, age, reset and split against cases computed by hand from the rules in
// agent/engine/adjust.ts (which follow mm/damon/core.c). Addresses are in pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAGE_SIZE, type Region } from '../../agent/engine/region.js';
import {
  agedRegionAge, initialMergeThreshold, mergeAllTargets, mergeRegions, mergeTwoRegions, regionSizeLimit,
  resetAggregated, splitPieces, splitPoint, splitRegions,
} from '../../agent/engine/adjust.js';

const P = PAGE_SIZE;

/** A region from page numbers. */
function reg(startPage: number, endPage: number, nrAccesses = 0, lastNrAccesses = 0, age = 0): Region {
  return { start: startPage * P, end: endPage * P, nrAccesses, lastNrAccesses, age, samplingAddr: -1 };
}

/** [startPage, endPage, nrAccesses, age] of each region, for compact expectations. */
function shape(regions: readonly Region[]): [number, number, number, number][] {
  return regions.map((r) => [r.start / P, r.end / P, r.nrAccesses, r.age]);
}

/** A random source returning `values` in order; fails the test if asked for more. */
function scripted(values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error(`scripted random exhausted after ${values.length} values`);
    return values[i++];
  };
}

test('merge: the kernel kunit case (damon_test_merge_regions_of), threshold 9', () => {
  // nrAccesses 0 0 10 10 20 30 1 2; last 0 and age 0 everywhere, so aging with
  // threshold 9 gives age 1 to the regions with nrAccesses <= 9 and 0 to the others.
  const regions = [
    reg(0, 100, 0), reg(100, 112, 0), reg(114, 122, 10), reg(122, 130, 10),
    reg(130, 156, 20), reg(156, 170, 30), reg(170, 184, 1), reg(184, 230, 2),
  ];
  const before = structuredClone(regions);
  const out = mergeRegions(regions, 9, 9999 * P);
  assert.deepEqual(shape(out), [
    [0, 112, 0, 1], // 0+0 over 112 pages; ages (1*100 + 1*12) / 112 = 1
    [114, 130, 10, 0], // not adjacent to 112: a gap stays a gap
    [130, 156, 20, 0], // |10 - 20| = 10 > 9
    [156, 170, 30, 0],
    [170, 230, 1, 1], // floor((1*14 + 2*46) / 60) = floor(106 / 60) = 1
  ]);
  assert.deepEqual(regions, before, 'the input is not modified');
});

test('merge: size-weighted averages floor like integer division; lastNrAccesses is the left one', () => {
  const m = mergeTwoRegions(reg(0, 1, 10, 6, 4), reg(1, 4, 2, 9, 8));
  // nrAccesses (10*1 + 2*3) / 4 = 4; age (4*1 + 8*3) / 4 = 7
  assert.deepEqual(m, { start: 0, end: 4 * P, nrAccesses: 4, lastNrAccesses: 6, age: 7, samplingAddr: -1 });
  const odd = mergeTwoRegions(reg(0, 2, 3, 0, 1), reg(2, 3, 0, 0, 0));
  assert.equal(odd.nrAccesses, 2); // 6 / 3
  assert.equal(odd.age, 0); // 2 / 3 floors to 0
});

test('merge: never beyond the size limit', () => {
  const regions = [reg(0, 3, 5), reg(3, 5, 5)];
  assert.deepEqual(shape(mergeRegions(regions, 1, 4 * P, false)), [[0, 3, 5, 0], [3, 5, 5, 0]]);
  assert.deepEqual(shape(mergeRegions(regions, 1, 5 * P, false)), [[0, 5, 5, 0]]);
});

test('age: reset when nrAccesses moved by more than the threshold, else one more', () => {
  assert.equal(agedRegionAge({ nrAccesses: 5, lastNrAccesses: 3, age: 9 }, 1), 0);
  assert.equal(agedRegionAge({ nrAccesses: 4, lastNrAccesses: 3, age: 9 }, 1), 10);
  assert.equal(agedRegionAge({ nrAccesses: 0, lastNrAccesses: 2, age: 9 }, 2), 10);
  // Each region is aged before it merges; the merged age is the average of the new ages.
  // Left: |4 - 4| <= 1 -> age 3 + 1 = 4. Right: |5 - 0| > 1 -> 0. Merged: (4*2 + 0*2) / 4 = 2.
  const out = mergeRegions([reg(0, 2, 4, 4, 3), reg(2, 4, 5, 0, 9)], 1, 100 * P);
  assert.deepEqual(shape(out), [[0, 4, 4, 2]]); // nrAccesses (4*2 + 5*2) / 4 = 4
  // Without aging the ages are only averaged: (3*2 + 9*2) / 4 = 6.
  assert.deepEqual(shape(mergeRegions([reg(0, 2, 4, 4, 3), reg(2, 4, 5, 0, 9)], 1, 100 * P, false)), [[0, 4, 4, 6]]);
});

test('merge loop: threshold starts at max(1, max/10) and doubles while there are too many regions', () => {
  assert.equal(initialMergeThreshold(0), 1);
  assert.equal(initialMergeThreshold(19), 1);
  assert.equal(initialMergeThreshold(20), 2);
  // nrAccesses 0 2 4 ... 14, one page each; max seen 14 -> threshold 1; max 3 regions.
  const regions = [0, 2, 4, 6, 8, 10, 12, 14].map((n, i) => reg(i, i + 1, n));
  const [out] = mergeAllTargets([regions], { maxNrAccessesSeen: 14, szLimit: 100 * P, maxNrRegions: 3, maxNrAccesses: 20 });
  // threshold 1: every difference is 2, nothing merges (8 regions).
  // threshold 2: 0+2 -> 1, 4+6 -> 5, 8+10 -> 9, 12+14 -> 13 (4 regions of 2 pages).
  // threshold 4: 1+5 -> 3, |3 - 9| = 6 > 4, 9+13 -> 11 (2 regions: done).
  // Ages: only the first pass ages (0 for nrAccesses >= 2, 1 for the region at 0), then
  // averages: (1*1 + 0*1) / 2 = 0, so 0 everywhere.
  assert.deepEqual(shape(out), [[0, 4, 3, 0], [4, 8, 11, 0]]);
});

test('merge loop: counts regions over all targets, and stops once the threshold reaches maxNrAccesses', () => {
  // Two targets of two regions each (nrAccesses 0 and 4), at most 3 regions in all:
  // threshold 1 and 2 merge nothing (4 regions), 4 merges each pair: nrAccesses 4/2 = 2,
  // ages (1 + 0) / 2 = 0 (the region at 0 aged to 1, the one at 4 reset). Counting each
  // target alone (2 <= 3) would have stopped after the first pass.
  const a = [reg(0, 1, 0), reg(1, 2, 4)];
  const b = [reg(0, 1, 0), reg(1, 2, 4)];
  const out = mergeAllTargets([a, b], { maxNrAccessesSeen: 4, szLimit: 10 * P, maxNrRegions: 3, maxNrAccesses: 20 });
  assert.deepEqual(out.map(shape), [[[0, 2, 2, 0]], [[0, 2, 2, 0]]]);
  // Alternating 0/20 with a 2-page size limit: thresholds 2, 4, 8, 16 merge nothing, 32
  // (>= 20) merges pairs, then the loop ends although 2 regions exceed the maximum of 1.
  const alt = [reg(0, 1, 0), reg(1, 2, 20), reg(2, 3, 0), reg(3, 4, 20)];
  const [alternating] = mergeAllTargets([alt], { maxNrAccessesSeen: 20, szLimit: 2 * P, maxNrRegions: 1, maxNrAccesses: 20 });
  assert.deepEqual(shape(alternating).map((s) => s.slice(0, 3)), [[0, 2, 10], [2, 4, 10]]);
});

test('size limit: total size of all targets / min_nr_regions, at least a page', () => {
  assert.equal(regionSizeLimit([[reg(0, 50)], [reg(100, 150)]], 10), 10 * P);
  assert.equal(regionSizeLimit([[reg(0, 3)]], 10), P);
  assert.equal(regionSizeLimit([[reg(0, 7)]], 2), Math.floor((7 * P) / 2));
});

test('reset: lastNrAccesses takes nrAccesses, which restarts at 0', () => {
  const regions = [reg(0, 1, 5, 2, 3), reg(1, 2, 0, 9, 1)];
  assert.deepEqual(shape(resetAggregated(regions)), [[0, 1, 0, 3], [1, 2, 0, 1]]);
  assert.deepEqual(resetAggregated(regions).map((r) => r.lastNrAccesses), [5, 0]);
  assert.equal(regions[0].nrAccesses, 5, 'the input is not modified');
});

test('split decision: only at <= max/2 regions; 3 pieces when unchanged since the last split and < max/3', () => {
  assert.equal(splitPieces(10, 0, 1000), 2);
  assert.equal(splitPieces(10, 10, 1000), 3);
  assert.equal(splitPieces(332, 332, 1000), 3);
  assert.equal(splitPieces(333, 333, 1000), 2); // floor(1000 / 3) = 333 is not below itself
  assert.equal(splitPieces(500, 0, 1000), 2);
  assert.equal(splitPieces(501, 0, 1000), 0);
  assert.equal(splitPieces(5, 5, 11), 2); // 11 / 3 = 3
  assert.equal(splitPieces(6, 0, 11), 0); // 11 / 2 = 5
});

test('split point: a random tenth of the region, page aligned down', () => {
  assert.equal(splitPoint(10 * P, () => 0), P); // tenths 1
  assert.equal(splitPoint(10 * P, () => 0.35), 4 * P); // 1 + floor(3.15) = 4 tenths
  assert.equal(splitPoint(10 * P, () => 0.999999), 9 * P); // tenths capped at 9
  assert.equal(splitPoint(4 * P, () => 0.9), 3 * P); // 9 tenths of 4 pages = 3.6 -> 3
  assert.equal(splitPoint(3 * P, () => 0), 0); // 0.3 page: no empty piece
});

test('split: 2 and 3 pieces with a scripted random source; children inherit the counts', () => {
  const src = [{ ...reg(0, 10, 3, 5, 7), samplingAddr: 6 * P }];
  const two = splitRegions(src, 2, scripted([0.35]));
  assert.deepEqual(two, [
    { start: 0, end: 4 * P, nrAccesses: 3, lastNrAccesses: 5, age: 7, samplingAddr: -1 },
    { start: 4 * P, end: 10 * P, nrAccesses: 3, lastNrAccesses: 5, age: 7, samplingAddr: -1 },
  ]);
  // 3 pieces: cut at 4 pages, then the left piece (4 pages) at 9 tenths = 3 pages.
  assert.deepEqual(shape(splitRegions(src, 3, scripted([0.35, 0.9]))), [[0, 3, 3, 7], [3, 4, 3, 7], [4, 10, 3, 7]]);
  assert.equal(src[0].end, 10 * P, 'the input is not modified');
});

test('split: regions of at most two pages stay whole; a cut that would be empty is skipped', () => {
  // [0,2) is two pages: untouched, no random drawn. [2,5) is three: the first draw (1
  // tenth = 0.3 page) is skipped, the second (9 tenths = 2.7 -> 2 pages) cuts.
  const out = splitRegions([reg(0, 2, 1), reg(2, 5, 2)], 3, scripted([0, 0.99]));
  assert.deepEqual(shape(out), [[0, 2, 1, 0], [2, 4, 2, 0], [4, 5, 2, 0]]);
});
