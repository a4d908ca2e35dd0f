// Adaptive regions adjustment: the merge, age, reset and split rules that keep the number
// of regions between min_nr_regions and max_nr_regions (the kernel's kdamond_merge_regions,
// damon_merge_regions_of, damon_merge_two_regions, kdamond_reset_aggregated,
// kdamond_split_regions and damon_split_regions_of in mm/damon/core.c).
//
// Every function here is pure: it takes region arrays and returns new ones, never
// modifying its arguments, so that tests can compare before and after. Randomness comes
// from a `random` argument.
import { PAGE_SIZE, type Region } from './region.js';

/** A random source in [0, 1), like Math.random. */
export type RandomSource = () => number;

/** A copy of `r` over [start, end); an object literal with every field keeps one shape (fast). */
function copyRegion(r: Region, start = r.start, end = r.end, samplingAddr = r.samplingAddr): Region {
  return { start, end, nrAccesses: r.nrAccesses, lastNrAccesses: r.lastNrAccesses, age: r.age, samplingAddr };
}

function alignDown(x: number, align: number): number {
  return Math.floor(x / align) * align;
}

/**
 * First merge threshold of an aggregation: max(1, floor(max observed nrAccesses / 10)).
 * The kernel passes max_nr_accesses / 10 (which may be 0); the project's reference starts
 * at 1 so that regions whose counts differ by one sample still merge.
 */
export function initialMergeThreshold(maxNrAccessesSeen: number): number {
  return Math.max(1, Math.floor(maxNrAccessesSeen / 10));
}

/**
 * Largest size a merge may produce: max(PAGE_SIZE, floor(total size of all targets /
 * minNrRegions)), like the kernel's damon_region_sz_limit. Keeping every merged region
 * within it is what keeps at least min_nr_regions regions in all.
 */
export function regionSizeLimit(regionsPerTarget: readonly (readonly Region[])[], minNrRegions: number): number {
  let total = 0;
  for (const regions of regionsPerTarget) {
    for (const r of regions) total += r.end - r.start;
  }
  return Math.max(PAGE_SIZE, Math.floor(total / minNrRegions));
}

/**
 * New age of a region at the end of an aggregation: 0 when its nrAccesses moved by more
 * than `threshold` since the last aggregation, else one more interval.
 */
export function agedRegionAge(r: Pick<Region, 'nrAccesses' | 'lastNrAccesses' | 'age'>, threshold: number): number {
  // Recent kernels (6.x) also reset the age when nrAccesses goes from zero to non-zero or
  // back; the reference this project follows keeps the original rule.
  return Math.abs(r.nrAccesses - r.lastNrAccesses) > threshold ? 0 : r.age + 1;
}

/**
 * Merges two adjacent regions `l` and `r` (l.end === r.start) into a new one: the
 * size-weighted averages of nrAccesses and age, floored as the kernel's integer division
 * does; lastNrAccesses is `l`'s, like damon_merge_two_regions.
 */
export function mergeTwoRegions(l: Region, r: Region): Region {
  const szL = l.end - l.start;
  const szR = r.end - r.start;
  const sz = szL + szR;
  return {
    start: l.start,
    end: r.end,
    nrAccesses: Math.floor((l.nrAccesses * szL + r.nrAccesses * szR) / sz),
    lastNrAccesses: l.lastNrAccesses,
    age: Math.floor((l.age * szL + r.age * szR) / sz),
    samplingAddr: l.samplingAddr,
  };
}

/**
 * One merge pass over one target's regions (damon_merge_regions_of): walking in address
 * order, each region is first aged (when `age` is true), then merged into the previous
 * one when they are adjacent, |prev.nrAccesses - r.nrAccesses| <= threshold and the
 * merged size is <= szLimit. Returns the new regions.
 */
export function mergeRegions(regions: readonly Region[], threshold: number, szLimit: number, age = true): Region[] {
  const out: Region[] = [];
  for (const src of regions) {
    const r = copyRegion(src);
    if (age) r.age = agedRegionAge(r, threshold);
    const prev = out.length > 0 ? out[out.length - 1] : undefined;
    if (
      prev !== undefined &&
      prev.end === r.start &&
      Math.abs(prev.nrAccesses - r.nrAccesses) <= threshold &&
      prev.end - prev.start + (r.end - r.start) <= szLimit
    ) {
      out[out.length - 1] = mergeTwoRegions(prev, r);
    } else {
      out.push(r);
    }
  }
  return out;
}

export interface MergeOptions {
  /** Largest nrAccesses seen in the aggregation (what checkAccesses returned). */
  maxNrAccessesSeen: number;
  /** See regionSizeLimit. */
  szLimit: number;
  maxNrRegions: number;
  /** aggregation / sampling interval: the threshold never needs to exceed it. */
  maxNrAccesses: number;
}

/**
 * The merge step of an aggregation for all targets (kdamond_merge_regions): a pass with
 * threshold initialMergeThreshold(maxNrAccessesSeen), repeated with the threshold doubled
 * while the total number of regions exceeds maxNrRegions and the last threshold used was
 * below maxNrAccesses. Ages regions in the first pass only: the kernel ages again in
 * every extra pass, which would count one aggregation interval several times.
 */
export function mergeAllTargets(regionsPerTarget: readonly (readonly Region[])[], o: MergeOptions): Region[][] {
  let threshold = initialMergeThreshold(o.maxNrAccessesSeen);
  let current: readonly (readonly Region[])[] = regionsPerTarget;
  let first = true;
  for (;;) {
    const merged = current.map((regions) => mergeRegions(regions, threshold, o.szLimit, first));
    first = false;
    const total = merged.reduce((n, regions) => n + regions.length, 0);
    if (total <= o.maxNrRegions || threshold >= o.maxNrAccesses) return merged;
    current = merged;
    threshold *= 2;
  }
}

/**
 * The reset after reporting (kdamond_reset_aggregated): lastNrAccesses = nrAccesses,
 * nrAccesses = 0.
 */
export function resetAggregated(regions: readonly Region[]): Region[] {
  return regions.map((r) => ({
    start: r.start, end: r.end, nrAccesses: 0, lastNrAccesses: r.nrAccesses, age: r.age, samplingAddr: r.samplingAddr,
  }));
}

/**
 * How many pieces kdamond_split_regions cuts every region into, from the total number of
 * regions of all targets now and at the last split: 0 (no split) when total >
 * maxNrRegions / 2; 3 when the total did not change since the last split and is below
 * maxNrRegions / 3 (maybe the middle of a region differs); else 2. Either way the total
 * stays <= maxNrRegions.
 */
export function splitPieces(totalNrRegions: number, lastSplitNrRegions: number, maxNrRegions: number): 0 | 2 | 3 {
  // Integer division, as in the kernel.
  if (totalNrRegions > Math.floor(maxNrRegions / 2)) return 0;
  if (totalNrRegions === lastSplitNrRegions && totalNrRegions < Math.floor(maxNrRegions / 3)) return 3;
  return 2;
}

/**
 * Where a split cuts a region of `size` bytes: a random tenth (10%..90%) of it, page
 * aligned down, like the kernel's damon_rand(1, 10) * sz / 10. Returns 0 when that cut
 * would leave an empty piece.
 */
export function splitPoint(size: number, random: RandomSource): number {
  const tenths = Math.min(9, 1 + Math.floor(random() * 9));
  const sub = alignDown(Math.floor((tenths * size) / 10), PAGE_SIZE);
  return sub > 0 && sub < size ? sub : 0;
}

/**
 * Splits every region larger than two pages into up to `nrPieces` pieces
 * (damon_split_regions_of): cut at splitPoint, then cut the left piece again, and so on.
 * One call to `random` per cut attempt. The pieces inherit nrAccesses, lastNrAccesses and
 * age; their samplingAddr is reset (-1) since the next prepareAccessChecks picks it.
 */
export function splitRegions(regions: readonly Region[], nrPieces: number, random: RandomSource): Region[] {
  const out: Region[] = [];
  // Pieces cut off the right of the current region, right to left (reused across regions).
  const rightPieces: Region[] = [];
  for (const src of regions) {
    rightPieces.length = 0;
    let left = src;
    let size = left.end - left.start;
    for (let i = 0; i < nrPieces - 1 && size > 2 * PAGE_SIZE; i++) {
      const sub = splitPoint(size, random);
      if (sub === 0) continue;
      rightPieces.push(copyRegion(left, left.start + sub, left.end, -1));
      left = copyRegion(left, left.start, left.start + sub, -1);
      size = sub;
    }
    out.push(left === src ? copyRegion(src) : left);
    for (let i = rightPieces.length - 1; i >= 0; i--) out.push(rightPieces[i]);
  }
  return out;
}
