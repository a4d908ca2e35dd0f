// The refined split (agent/engine/adjust-refined.ts): the noise test that finds boundaries,
// the slices cut next to them, the strata of extrema, exploration, the shared budget and
// the bound on the number of regions. Addresses are in pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PAGE_SIZE, type Region } from '../../agent/engine/region.js';
import {
  BOUNDARY_Z, differenceZ, EXPLORATION_SHARE, EXTREMUM_PIECES, explorationPieces, refinedSplit, sliceDistances,
} from '../../agent/engine/adjust-refined.js';

const P = PAGE_SIZE;

/** A region from page numbers, with its count of the last aggregation (as after a reset). */
function reg(startPage: number, endPage: number, lastNrAccesses: number, age = 0): Region {
  return { start: startPage * P, end: endPage * P, nrAccesses: 0, lastNrAccesses, age, samplingAddr: startPage * P };
}

/** Start pages of the pieces after the first, i.e. where the cuts are. */
function cutPages(regions: readonly Region[]): number[] {
  return regions.slice(1).map((r) => r.start / P);
}

const zero = () => 0;

/** A max_nr_regions at which exploration aims at 50 pieces (with min_nr_regions 10). */
const MAX_FOR_50 = Math.ceil(50 / EXPLORATION_SHARE);

test('boundary test: counts out of n samples this many standard deviations apart', () => {
  assert.equal(differenceZ(7, 7, 20), 0);
  assert.equal(differenceZ(0, 4, 20), differenceZ(4, 0, 20));
  // 0 vs 20: pooled p 1/2, variance 40/4 = 10.
  assert.ok(Math.abs(differenceZ(0, 20, 20) - 20 / Math.sqrt(10)) < 1e-12);
  // Cold noise (0 vs 3 of 20 happens) is not a boundary; 0 vs 4 is.
  assert.ok(differenceZ(0, 3, 20) < BOUNDARY_Z);
  assert.ok(differenceZ(0, 4, 20) >= BOUNDARY_Z);
  // Around half the maximum the noise is largest: 8 vs 12 is not a boundary, 4 vs 11 is.
  assert.ok(differenceZ(8, 12, 20) < BOUNDARY_Z);
  assert.ok(differenceZ(4, 11, 20) >= BOUNDARY_Z);
});

test('slice distances: powers of 4 from a random phase, up to half the region, largest first', () => {
  assert.deepEqual(sliceDistances(1024, 0), [256, 64, 16, 4, 1]);
  assert.deepEqual(sliceDistances(1024, 0.5), [512, 128, 32, 8, 2]);
  assert.deepEqual(sliceDistances(1, 0), []);
  assert.deepEqual(sliceDistances(2, 0), [1]);
});

test('exploration pieces: 0.2 x max, at least 2 x min_nr_regions, at most max/2', () => {
  assert.equal(explorationPieces(1000, 10), 200);
  assert.equal(explorationPieces(100, 10), 20);
  assert.equal(explorationPieces(30, 10), 15);
  assert.equal(explorationPieces(3, 3), 1);
});

test('uniform counts and regions below the exploration size: nothing is cut', () => {
  // 60 regions of 10 pages; exploration pieces of 600 / 50 = 12 pages; counts differ by
  // noise only.
  const regions = Array.from({ length: 60 }, (_, i) => reg(10 * i, 10 * i + 10, 9 + (i % 3)));
  assert.equal(explorationPieces(MAX_FOR_50, 10), 50);
  const out = refinedSplit([regions], { maxNrRegions: MAX_FOR_50, minNrRegions: 10, maxNrAccesses: 20 }, zero);
  assert.deepEqual(out, [regions]);
  assert.notEqual(out[0][0], regions[0], 'copies, not the input objects');
});

test('exploration: a big region is cut once per stratum into pieces of about total / P', () => {
  // 50 small regions of 12 pages and one of 120 pages: P = 50 over 720 pages, so pieces
  // of 14.4 pages and the big region gets round(120 / 14.4) = 8 pieces, one cut in each
  // [(j - 1/2) 15, (j + 1/2) 15), j = 1..7.
  const small = Array.from({ length: 50 }, (_, i) => reg(12 * i, 12 * i + 12, 1));
  const big = reg(600, 720, 1);
  const draws = [0, 0.5, 0.999, 0.25, 0.75, 0.1, 0.9];
  let k = 0;
  const out = refinedSplit([[...small, big]], { maxNrRegions: MAX_FOR_50, minNrRegions: 10, maxNrAccesses: 20 }, () => draws[k++]);
  assert.equal(k, 7, 'one random draw per cut');
  const pieces = out[0].slice(50);
  assert.deepEqual(
    cutPages(pieces).map((p) => p - 600),
    draws.map((u, i) => Math.floor((i + 1 - 0.5 + u) * 15)),
  );
  assert.equal(pieces[0].start, big.start);
  assert.equal(pieces[pieces.length - 1].end, big.end);
});

test('boundary: both regions get slices at 4^i pages from the shared edge, inheriting counts', () => {
  // A hot and a cold region of 4096 pages each; P = 2 (min_nr_regions 1, max 14), so no
  // exploration. With u = 0: slices at 1, 4, 16, 64, 256, 1024 pages from page 4096.
  const hot = reg(0, 4096, 20, 5);
  const cold = reg(4096, 8192, 0, 7);
  const input = [hot, cold];
  const before = structuredClone(input);
  assert.equal(explorationPieces(14, 1), 2);
  const out = refinedSplit([input], { maxNrRegions: 14, minNrRegions: 1, maxNrAccesses: 20 }, zero)[0];
  const ds = [1024, 256, 64, 16, 4, 1];
  assert.deepEqual(cutPages(out), [...ds.map((d) => 4096 - d), 4096, ...[...ds].reverse().map((d) => 4096 + d)]);
  for (const r of out) {
    const parent = r.start < 4096 * P ? hot : cold;
    assert.equal(r.lastNrAccesses, parent.lastNrAccesses);
    assert.equal(r.age, parent.age);
  }
  // The pieces of a cut region get their sampling address afresh, as in the kernel's split.
  assert.ok(out.every((r) => r.samplingAddr === -1));
  assert.deepEqual(input, before, 'the input is not modified');
});

test('no boundary across a gap, between targets, or between counts within noise', () => {
  // P = 2: a region of half the total gets no exploration cut.
  const o = { maxNrRegions: 14, minNrRegions: 1, maxNrAccesses: 20 };
  // A gap between a hot and a cold region.
  assert.equal(refinedSplit([[reg(0, 4096, 20), reg(5000, 9096, 0)]], o, zero)[0].length, 2);
  // Two targets.
  assert.deepEqual(refinedSplit([[reg(0, 4096, 20)], [reg(4096, 8192, 0)]], o, zero).map((t) => t.length), [1, 1]);
  // 8 vs 12 of 20.
  assert.equal(refinedSplit([[reg(0, 4096, 8), reg(4096, 8192, 12)]], o, zero)[0].length, 2);
});

test('extremum: a region hotter than both neighbours is also cut into 8 strata', () => {
  const mid = 64;
  // max 24, min 1: P = 4, pieces of 48 pages, so no exploration cut in 64 pages; room
  // for the 7 strata and 3 slices (1, 4, 16) on each of the four sides.
  assert.equal(explorationPieces(24, 1), 4);
  const out = refinedSplit(
    [[reg(0, mid, 0), reg(mid, 2 * mid, 12), reg(2 * mid, 3 * mid, 0)]],
    { maxNrRegions: 24, minNrRegions: 1, maxNrAccesses: 20 },
    zero,
  )[0];
  const cuts = new Set(cutPages(out));
  for (let j = 1; j < EXTREMUM_PIECES; j++) {
    const at = mid + Math.floor(((j - 0.5) * mid) / EXTREMUM_PIECES);
    assert.ok(cuts.has(at), `no stratum cut at page ${at}`);
  }
  // Its neighbours are not extrema (one neighbour each): only slices near the edges.
  assert.ok(cutPages(out).filter((p) => p < mid).every((p) => p >= mid - mid / 2));
});

test('a scarce budget is shared: one cut per boundary side per round, largest scale first', () => {
  // A staircase of six regions of 1000 pages, counts 0, 20 .. 100 of 100 samples: five
  // boundaries, ten sides, no extremum. Slices reach 500 pages; the largest distance,
  // floor(4^(i + u)) <= 500, is at least 125.
  const regions = Array.from({ length: 6 }, (_, i) => reg(1000 * i, 1000 * i + 1000, 20 * i));
  let seed = 7;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  // Offsets of the cuts in region i that are within `half` ('left' or 'right') of it.
  const cutsIn = (out: Region[], i: number, half: 'left' | 'right') =>
    cutPages(out).map((p) => p - 1000 * i).filter((off) => (half === 'left' ? off > 0 && off <= 500 : off >= 500 && off < 1000));
  // Room for exactly one cut per side (6 + 10 = 16): every side gets its largest slice.
  const all = refinedSplit([regions], { maxNrRegions: 16, minNrRegions: 1, maxNrAccesses: 100 }, random)[0];
  assert.equal(all.length, 16);
  for (let i = 0; i < 6; i++) {
    const left = cutsIn(all, i, 'left');
    const right = cutsIn(all, i, 'right');
    assert.equal(left.length, i > 0 ? 1 : 0, `region ${i}: cuts ${left} from its start`);
    assert.equal(right.length, i < 5 ? 1 : 0, `region ${i}: cuts ${right} from its end`);
    for (const off of left) assert.ok(off >= 125, `region ${i}: first slice ${off} pages from the start, not the largest`);
    for (const off of right) assert.ok(1000 - off >= 125, `region ${i}: first slice ${1000 - off} pages from the end, not the largest`);
  }
  // Room for 4: four different sides get one each; the total is max.
  const some = refinedSplit([regions], { maxNrRegions: 10, minNrRegions: 1, maxNrAccesses: 100 }, random)[0];
  assert.equal(some.length, 10);
  for (let i = 0; i < 6; i++) {
    assert.ok(cutsIn(some, i, 'left').length <= 1 && cutsIn(some, i, 'right').length <= 1, `region ${i} got two cuts on one side`);
  }
  // Already at max: nothing is added.
  assert.equal(refinedSplit([some], { maxNrRegions: 10, minNrRegions: 1, maxNrAccesses: 100 }, random)[0].length, 10);
});

test('property: pieces tile each region exactly, inherit its counts, and the total never exceeds max unless it already did', () => {
  const regionArb = fc.record({ pages: fc.integer({ min: 1, max: 5000 }), gap: fc.constantFrom(0, 0, 0, 3), count: fc.integer({ min: 0, max: 20 }) });
  fc.assert(
    fc.property(
      fc.array(fc.array(regionArb, { minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 3 }),
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      (targets, maxNrRegions, minNrRegions, seed) => {
        const input = targets.map((t) => {
          let at = 0;
          return t.map((x) => {
            at += x.gap;
            const r = reg(at, at + x.pages, x.count, x.count % 4);
            at += x.pages;
            return r;
          });
        });
        let s = seed || 1;
        const random = () => ((s = (s * 48271) % 2147483647) / 2147483647);
        const before = structuredClone(input);
        const out = refinedSplit(input, { maxNrRegions, minNrRegions, maxNrAccesses: 20 }, random);
        assert.deepEqual(input, before, 'input modified');
        const nIn = input.reduce((n, t) => n + t.length, 0);
        const nOut = out.reduce((n, t) => n + t.length, 0);
        assert.ok(nOut >= nIn && nOut <= Math.max(nIn, maxNrRegions), `${nIn} regions became ${nOut}, max ${maxNrRegions}`);
        out.forEach((pieces, t) => {
          let k = 0;
          for (const r of input[t]) {
            let at = r.start;
            while (k < pieces.length && pieces[k].start < r.end) {
              const p = pieces[k++];
              assert.equal(p.start, at, 'pieces must tile the region');
              assert.ok(p.end > p.start && p.end <= r.end && p.start % P === 0 && p.end % P === 0);
              assert.equal(p.lastNrAccesses, r.lastNrAccesses);
              assert.equal(p.nrAccesses, r.nrAccesses);
              assert.equal(p.age, r.age);
              at = p.end;
            }
            assert.equal(at, r.end, 'pieces must cover the region');
          }
          assert.equal(k, pieces.length);
        });
      },
    ),
    { numRuns: 300 },
  );
});
