// The 'refined' split: where damon-fleet deliberately departs from the kernel's DAMON.
//
// Why. The kernel splits every region into 2 or 3 pieces at a random tenth (10%..90%)
// and lets the next merge join pieces whose nr_accesses differ by <= max(1, max/10). In a
// 4 GiB target with min_nr_regions = 10, merged regions grow to 410 MiB, so the piece next
// to a thin hot strip buried at the edge of a cold region is >= 41 MiB, only ~10% hot,
// and its nr_accesses (~2.2 of 20) is within the threshold (2) of its cold neighbour's
// (~0.4): it merges straight back, and the strip stays buried for ~20 aggregations. Small
// islands (24..64 MiB) inside a 410 MiB region barely move its count and are found late
// for the same reason. bench/accuracy.ts measures both rules on the tuning presets and on
// held-out families of workloads (bench/eval-families.ts).
//
// What. Merge, age and report stay the kernel's (adjust.ts); only the split differs. The
// counts of adjacent regions say where the access pattern is uncertain, and the split
// spends the unused region budget there. After each aggregation, with at most
// B = max_nr_regions - nr_regions new regions, cuts at any page (not at tenths):
//   1. Exploration: every region larger than total / P, P = explorationPieces(max, min)
//      (0.2 x max_nr_regions = 200 at the defaults, at least 2 x min_nr_regions so that
//      a region at the merge size limit is at least halved), is cut at random pages, one
//      cut per stratum, into pieces of about total / P. A hot spot too small to move a
//      410 MiB region's count (an island) then shows up within an aggregation or two: an
//      island stands out of a piece up to about three times its size (8 MiB in the 20 MiB
//      pieces of a 4 GiB target), not of a piece ten times its size.
//   2. Boundaries: adjacent regions whose counts differ significantly given binomial
//      sampling noise (differenceZ >= BOUNDARY_Z) meet at an edge of the pattern, or next
//      to one buried inside either of them. Both get cuts at geometric distances from
//      their shared edge, SLICE_RATIO^(i + u) pages (u random per side), up to half the
//      region. Whatever the width of a strip of the other class at that edge, one slice
//      is within a factor SLICE_RATIO of it, so mostly that strip: it no longer merges
//      back, and the edge's uncertainty shrinks by about SLICE_RATIO per aggregation,
//      down to a page.
//   3. Extrema: a region significantly hotter (or colder) than both neighbours holds
//      something different somewhere inside, not necessarily near an edge; it is also
//      cut into EXTREMUM_PIECES strata.
// Exploration goes first (it is bounded: about P cuts). The cuts of 2 and 3 are handed
// out round-robin, one per boundary side or extremum per round, in random order, each
// list largest scale first, until B runs out: when the budget is scarce (hundreds of
// boundaries) every uncertain region gets about one cut near its middle, like the
// kernel's halving, and no boundary is starved. A uniform target has (almost) no
// significant boundaries and costs mostly the exploration pieces; but the merge threshold
// (max/10) is below the noise of a count near 0.3-0.5 of the maximum, so under either
// rule such a target keeps hundreds of regions (bench/accuracy.ts reports them). (Also measured,
// and not kept: merging regions whose difference is not significant, which keeps such
// targets small but blurs moderately different frequencies, e.g. stripes at 0.6 and
// 0.9; and extra cuts in every boundary region, which made noisy targets grow.)
//
// Where checks are slow, the context passes a max_nr_regions lowered to what a sampling
// interval affords at the measured cost of a check (check-budget.ts), so that the
// intervals keep their configured length; everything below holds for that bound.
//
// Guarantee (the overhead bound): the split adds at most max_nr_regions - nr_regions
// regions, so with at most max_nr_regions regions before the split there are at most
// max_nr_regions after it, as with the kernel's rule (which splits only at <= max / 2, into
// 2 or 3), and the cost of a sampling interval stays bounded by max_nr_regions checks. The
// merge is unchanged, and with it the size limit (total / min_nr_regions, hence the lower
// bound) and the threshold doubling when an update left too many regions.
import { PAGE_SIZE, type Region } from './region.js';
import type { RandomSource } from './adjust.js';

/**
 * Adjacent regions form a boundary when their counts are at least this many standard
 * deviations apart (differenceZ): about a 5% two-sided test.
 */
export const BOUNDARY_Z = 2;

/** Ratio between consecutive slice distances from a boundary (pages: 4^u, 4^(1+u) ...). */
export const SLICE_RATIO = 4;

/** Exploration cuts aim at this share of max_nr_regions pieces over all targets. */
export const EXPLORATION_SHARE = 0.2;

/** Strata a region significantly hotter or colder than both neighbours is cut into. */
export const EXTREMUM_PIECES = 8;

/**
 * P, the number of pieces exploration aims at over all targets: max_nr_regions x
 * EXPLORATION_SHARE, at least 2 x min_nr_regions (so that a region at the merge size limit,
 * total / min_nr_regions, is at least halved, as the kernel would), at most half of
 * max_nr_regions (leaving half of the budget to boundaries), and at least 1.
 */
export function explorationPieces(maxNrRegions: number, minNrRegions: number): number {
  const want = Math.max(Math.floor(EXPLORATION_SHARE * maxNrRegions), 2 * minNrRegions);
  return Math.max(1, Math.min(Math.floor(maxNrRegions / 2), want));
}

/**
 * How many standard deviations apart two counts `a` and `b` out of `n` samples each are,
 * if both came from one access frequency: |a - b| / sqrt(2 n p (1 - p)), with the pooled
 * p = (a + b) / 2n. 0 when equal.
 */
export function differenceZ(a: number, b: number, n: number): number {
  if (a === b) return 0;
  const p = (a + b) / (2 * n);
  const variance = 2 * n * p * (1 - p);
  // Zero variance with a != b needs a count outside [0, n]: call that infinitely apart.
  return variance > 0 ? Math.abs(a - b) / Math.sqrt(variance) : Infinity;
}

/**
 * Distances in pages from a boundary into a region of `pages` pages at which to cut,
 * largest first: floor(SLICE_RATIO^(i + u)) for i = 0, 1, ... up to half the region;
 * `u` in [0, 1). Distinct, since SLICE_RATIO >= 2.
 */
export function sliceDistances(pages: number, u: number): number[] {
  const base = SLICE_RATIO ** u;
  const count = sliceCount(pages, base);
  return Array.from({ length: count }, (_, k) => sliceDistance(base, count, k));
}

/** How many distances sliceDistances has, for base = SLICE_RATIO^u. */
function sliceCount(pages: number, base: number): number {
  const reach = Math.floor(pages / 2);
  let count = 0;
  for (let x = base; Math.floor(x) <= reach; x *= SLICE_RATIO) count++;
  return count;
}

/** Distance number `k` of `count`, largest first: floor(base x SLICE_RATIO^(count - 1 - k)). */
function sliceDistance(base: number, count: number, k: number): number {
  // Exact: SLICE_RATIO is a power of two, so this equals sliceCount's repeated products.
  return Math.floor(base * SLICE_RATIO ** (count - 1 - k));
}

/**
 * Page offset of the cut between strata j and j+1 of a region of `pages` pages cut into
 * `k`: random in [(j - 1/2) pages / k, (j + 1/2) pages / k), within [1, pages - 1].
 */
function strataCut(pages: number, k: number, j: number, random: RandomSource): number {
  return Math.min(pages - 1, Math.max(1, Math.floor(((j - 0.5 + random()) * pages) / k)));
}

/** 1 .. k-1 in bisection order (k a power of two): k/2, k/4, 3k/4, k/8, 3k/8 ... */
function bisectionOrder(k: number): number[] {
  const out: number[] = [];
  for (let step = k / 2; step >= 1; step /= 2) {
    for (let j = step; j < k; j += 2 * step) out.push(j);
  }
  return out;
}

const EXTREMUM_ORDER = bisectionOrder(EXTREMUM_PIECES);

export interface RefinedSplitOptions {
  maxNrRegions: number;
  minNrRegions: number;
  /** Samples per aggregation (aggregation / sampling interval): n of the binomial counts. */
  maxNrAccesses: number;
}

/**
 * The candidate cuts of one boundary side or extremum, largest scale first, each computed
 * only when handed out (with a scarce budget, most lists give one cut).
 */
interface CutList {
  /** Where the cuts of the region go (page offsets). */
  cuts: number[];
  pages: number;
  kind: 'fromStart' | 'fromEnd' | 'extremum';
  /** Slices: SLICE_RATIO^u, for sliceDistance. */
  base: number;
  count: number;
}

/** Page offset of cut number `k` (0 = the first handed out) of `l`. */
function listCut(l: CutList, k: number, random: RandomSource): number {
  if (l.kind === 'extremum') return strataCut(l.pages, EXTREMUM_PIECES, EXTREMUM_ORDER[k], random);
  const d = sliceDistance(l.base, l.count, k);
  return l.kind === 'fromStart' ? d : l.pages - d;
}

function shuffle<T>(xs: T[], random: RandomSource): void {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
}

/**
 * The refined split of all targets' regions after an aggregation's reset (the counts are
 * in lastNrAccesses): exploration, boundary and extremum cuts, adding at most
 * maxNrRegions - (regions now) regions in all; see the top of this file. Regions of
 * different targets, and regions separated by a gap, are never compared. Pieces inherit
 * nrAccesses, lastNrAccesses and age; the pieces of a cut region get samplingAddr -1
 * (picked afresh), as in the kernel's split. Pure: the input is not modified.
 */
export function refinedSplit(
  regionsPerTarget: readonly (readonly Region[])[],
  o: RefinedSplitOptions,
  random: RandomSource,
): Region[][] {
  let nrRegions = 0;
  let bytes = 0;
  for (const regions of regionsPerTarget) {
    nrRegions += regions.length;
    for (const r of regions) bytes += r.end - r.start;
  }
  let budget = o.maxNrRegions - nrRegions;
  // Page offsets of the cuts of each region (unsorted, maybe repeated), parallel to the input.
  const cuts: number[][][] = regionsPerTarget.map((regions) => regions.map(() => []));

  // 1. Exploration, first: it is what finds what no count shows yet, and it is bounded
  // (the sum of round(size / pieceBytes) - 1 over the regions is at most P).
  const pieceBytes = bytes / explorationPieces(o.maxNrRegions, o.minNrRegions);
  for (let t = 0; t < regionsPerTarget.length; t++) {
    const regions = regionsPerTarget[t];
    for (let i = 0; i < regions.length && budget > 0; i++) {
      const r = regions[i];
      const pages = (r.end - r.start) / PAGE_SIZE;
      const k = Math.min(pages, budget + 1, Math.round((r.end - r.start) / pieceBytes));
      for (let j = 1; j < k; j++) cuts[t][i].push(strataCut(pages, k, j, random));
      if (k >= 2) budget -= k - 1;
    }
  }

  // 2 and 3. Boundary sides and extrema, handed out round-robin in random order.
  const lists: CutList[] = [];
  const n = o.maxNrAccesses;
  // +1 (-1) when r's count is significantly above (below) that of q, adjacent to r; else 0.
  const versus = (r: Region, q: Region | undefined): number =>
    q === undefined || (q.end !== r.start && q.start !== r.end) || differenceZ(r.lastNrAccesses, q.lastNrAccesses, n) < BOUNDARY_Z
      ? 0
      : Math.sign(r.lastNrAccesses - q.lastNrAccesses);
  for (let t = 0; t < regionsPerTarget.length && budget > 0; t++) {
    const regions = regionsPerTarget[t];
    for (let i = 0; i < regions.length; i++) {
      const r = regions[i];
      const pages = (r.end - r.start) / PAGE_SIZE;
      const left = versus(r, regions[i - 1]);
      const right = versus(r, regions[i + 1]);
      for (const kind of ['fromStart', 'fromEnd'] as const) {
        if ((kind === 'fromStart' ? left : right) === 0) continue;
        const base = SLICE_RATIO ** random();
        const count = sliceCount(pages, base);
        if (count > 0) lists.push({ cuts: cuts[t][i], pages, kind, base, count });
      }
      if (left !== 0 && left === right && pages >= EXTREMUM_PIECES) {
        lists.push({ cuts: cuts[t][i], pages, kind: 'extremum', base: 0, count: EXTREMUM_ORDER.length });
      }
    }
  }
  shuffle(lists, random);
  for (let round = 0, more = true; more && budget > 0; round++) {
    more = false;
    for (let k = 0; k < lists.length && budget > 0; k++) {
      const l = lists[k];
      if (round >= l.count) continue;
      more = true;
      l.cuts.push(listCut(l, round, random));
      budget--;
    }
  }

  return regionsPerTarget.map((regions, t) => {
    const out: Region[] = [];
    for (let i = 0; i < regions.length; i++) {
      const r = regions[i];
      const offsets = cuts[t][i];
      if (offsets.length > 1) offsets.sort((a, b) => a - b);
      let start = r.start;
      for (const off of offsets) {
        const at = r.start + off * PAGE_SIZE;
        // Every offset is in [1, pages - 1]; two plans may name the same one.
        if (at <= start) continue;
        out.push({ start, end: at, nrAccesses: r.nrAccesses, lastNrAccesses: r.lastNrAccesses, age: r.age, samplingAddr: -1 });
        start = at;
      }
      // An object literal with every field, in one order, keeps one shape (fast checks).
      const samplingAddr = start === r.start ? r.samplingAddr : -1;
      out.push({ start, end: r.end, nrAccesses: r.nrAccesses, lastNrAccesses: r.lastNrAccesses, age: r.age, samplingAddr });
    }
    return out;
  });
}
