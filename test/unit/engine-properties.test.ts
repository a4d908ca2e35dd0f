// Property tests of the engine under random access patterns and random mapping changes:
// a fake Operations (below) maps random layouts through parseMaps/threeRegions/initRegions
// and updates them through setRegions, and counts random accesses.
//
// What the rules guarantee about the number of regions, and what is checked, for both
// split rules (the context's `adjust` option; merge and age are the kernel's in both):
//
// Upper bound (max_nr_regions, counted over all targets of the context):
//   - split never exceeds it and merge never adds regions, so only an ops update can
//     exceed it (damon_set_regions adds a region per filled hole and per range without
//     regions; init adds min_nr_regions per target). The kernel's split cuts only at
//     <= max/2 regions, into 2, or at < max/3 into 3; the refined split adds at most
//     max - (regions before it), and nothing when there are already max or more.
//   - the merge of the next aggregation brings the total back to <= max: it doubles the
//     threshold until every pair may merge by frequency; then only the size limit L stops
//     merges, and after a greedy pass any two neighbours of one contiguous run add up to
//     more than L, so a run of s bytes keeps < 2s/L + 1 regions. Over all targets that is
//     < 2 * total / L + runs <= 2 * min_nr_regions * (1 + 1/4095) + 3 * targets. So the
//     bound is guaranteed only when max_nr_regions >= 2 * min_nr_regions + 3 * targets,
//     which the generator ensures. Checked: after every aggregation (the 'aggregate'
//     records show the merged regions) and after every step that followed an
//     aggregation without an update since.
// Lower bound (min_nr_regions):
//   - the only mechanism is that merging never makes a region larger than
//     L = max(PAGE_SIZE, floor(total size of all targets / min_nr_regions)). Regions
//     larger than L can exist (init rounding, regions stretched or created by an update)
//     and are then never merged. Checked: every region above L in an aggregation
//     record existed unchanged before that step; and whenever no region exceeds L, the
//     total is >= min(min_nr_regions, total pages).
//   - per target there is no such bound (L spans all targets, so a small target next to
//     a big one may merge down): only one region per range, since ranges are separated
//     by gaps and regions never merge across one. Checked: regions cover exactly the
//     target's current three regions, so each target has >= 3 regions.
// Always, after every step: per target, regions sorted, non-overlapping, page aligned,
// non-empty; nrAccesses and age non-negative integers, nrAccesses <= maxNrAccesses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PAGE_SIZE, type Region, type Target } from '../../agent/engine/region.js';
import type { Operations, OpsContext } from '../../agent/engine/operations.js';
import { DamonContext } from '../../agent/engine/context.js';
import { setRegions, type AddressRange } from '../../agent/engine/set-regions.js';
import { initRegions, parseMaps, threeRegions } from '../../agent/ops/vaddr-regions.js';
import type { AggregationRecord } from '../../agent/records/record.js';

const P = PAGE_SIZE;

/** Small seeded PRNG (mulberry32) so that a failing case replays from its seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A process layout: mappings of `sizes` pages separated by `gaps` pages, from `base`. */
interface Layout {
  base: number;
  sizes: number[];
  gaps: number[];
}

function randInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

function randomLayout(rng: () => number): Layout {
  const n = randInt(rng, 3, 8);
  const sizes = Array.from({ length: n }, () => randInt(rng, 1, 64));
  // Some gaps are 0 (adjacent mappings); the first two are not, so there are two gaps.
  const gaps = Array.from({ length: n - 1 }, (_, i) => (i < 2 ? randInt(rng, 1, 300) : randInt(rng, 0, 300)));
  return { base: randInt(rng, 16, 4096), sizes, gaps };
}

/** A changed layout: mappings grow, shrink, appear, disappear, move. */
function mutateLayout(l: Layout, rng: () => number): Layout {
  const sizes = l.sizes.map((s) => Math.max(1, s + randInt(rng, -16, 16)));
  const gaps = l.gaps.map((g, i) => Math.max(i < 2 ? 1 : 0, g + randInt(rng, -40, 40)));
  if (rng() < 0.3) {
    sizes.push(randInt(rng, 1, 64));
    gaps.push(randInt(rng, 0, 300));
  }
  if (rng() < 0.3 && sizes.length > 3) {
    sizes.pop();
    gaps.pop();
  }
  return { base: Math.max(1, l.base + randInt(rng, -32, 32)), sizes, gaps };
}

/** Cuts regions into pieces of 1 to 4 pages that keep the counts. */
function fragment(regions: readonly Region[], rng: () => number): Region[] {
  const out: Region[] = [];
  for (const r of regions) {
    for (let at = r.start; at < r.end;) {
      const end = Math.min(r.end, at + randInt(rng, 1, 4) * P);
      out.push({ ...r, start: at, end });
      at = end;
    }
  }
  return out;
}

function mapsText(l: Layout): string {
  const lines: string[] = [];
  let at = l.base * P;
  l.sizes.forEach((s, i) => {
    const end = at + s * P;
    lines.push(`${at.toString(16).padStart(8, '0')}-${end.toString(16).padStart(8, '0')} rw-p 00000000 00:00 0`);
    at = end + (l.gaps[i] ?? 0) * P;
  });
  return lines.join('\n') + '\n';
}

/** Operations over random layouts and random access patterns. */
class RandomOps implements Operations {
  readonly name = 'random-test';
  readonly layouts = new Map<number, Layout>();
  /** Each target's current three regions. */
  readonly ranges = new Map<number, AddressRange[]>();
  /** Address intervals with their own access probability, per target, redrawn at every update. */
  private hot = new Map<number, (AddressRange & { p: number })[]>();
  /** Access probability elsewhere, per target. */
  private base = new Map<number, number>();

  constructor(private readonly rng: () => number) {}

  private applyLayout(ctx: OpsContext, t: Target, l: Layout, initial: boolean): void {
    this.layouts.set(t.id, l);
    const ranges = threeRegions(parseMaps(mapsText(l)));
    this.ranges.set(t.id, ranges);
    t.regions = initial ? initRegions(ranges, ctx.attrs.minNrRegions) : setRegions(t.regions, ranges);
    const span = ranges[2].end - ranges[0].start;
    this.base.set(t.id, this.rng() * 0.3);
    this.hot.set(t.id, Array.from({ length: randInt(this.rng, 0, 6) }, () => {
      const start = ranges[0].start + Math.floor((this.rng() * span) / P) * P;
      return { start, end: start + randInt(this.rng, 1, 128) * P, p: this.rng() };
    }));
  }

  init(ctx: OpsContext): void {
    for (const t of ctx.targets) this.applyLayout(ctx, t, randomLayout(this.rng), true);
  }

  update(ctx: OpsContext): void {
    for (const t of ctx.targets) {
      const l = this.layouts.get(t.id)!;
      this.applyLayout(ctx, t, this.rng() < 0.6 ? mutateLayout(l, this.rng) : l, false);
      // Sometimes leave far more regions than max_nr_regions (as when a user lowers it
      // while monitoring), so that the merge must raise its threshold.
      if (this.rng() < 0.15) t.regions = fragment(t.regions, this.rng);
    }
  }

  prepareAccessChecks(ctx: OpsContext): void {
    for (const t of ctx.targets) {
      for (const r of t.regions) r.samplingAddr = r.start + Math.floor((ctx.random() * (r.end - r.start)) / P) * P;
    }
  }

  checkAccesses(ctx: OpsContext): number {
    let max = 0;
    for (const t of ctx.targets) {
      const hot = this.hot.get(t.id)!;
      const base = this.base.get(t.id)!;
      for (const r of t.regions) {
        const h = hot.find((x) => r.samplingAddr >= x.start && r.samplingAddr < x.end);
        if (this.rng() < (h?.p ?? base)) r.nrAccesses++;
        max = Math.max(max, r.nrAccesses);
      }
    }
    return max;
  }

  targetValid(): boolean {
    return true;
  }
}

function totalBytes(targets: readonly { regions: readonly { start: number; end: number }[] }[]): number {
  let n = 0;
  for (const t of targets) for (const r of t.regions) n += r.end - r.start;
  return n;
}

function checkStructure(t: Target, ranges: readonly AddressRange[], maxNr: number, where: string): void {
  let prevEnd = -1;
  const runs: AddressRange[] = [];
  for (const [i, r] of t.regions.entries()) {
    const at = `${where}: target ${t.id} region ${i} [${r.start / P}, ${r.end / P}) pages`;
    assert.ok(r.start < r.end, `${at} is empty`);
    assert.ok(r.start % P === 0 && r.end % P === 0, `${at} is not page aligned`);
    assert.ok(r.start >= prevEnd, `${at} overlaps or precedes the one before`);
    assert.ok(Number.isInteger(r.nrAccesses) && r.nrAccesses >= 0 && r.nrAccesses <= maxNr, `${at} nrAccesses ${r.nrAccesses}`);
    assert.ok(Number.isInteger(r.age) && r.age >= 0, `${at} age ${r.age}`);
    if (runs.length > 0 && runs[runs.length - 1].end === r.start) runs[runs.length - 1].end = r.end;
    else runs.push({ start: r.start, end: r.end });
    prevEnd = r.end;
  }
  assert.deepEqual(runs, ranges, `${where}: target ${t.id} regions do not cover exactly its three regions`);
}

test('regions stay sorted, aligned, covering, and within the guaranteed bounds under random accesses and mappings', () => {
  fc.assert(
    fc.property(
      fc.record({
        seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        nTargets: fc.integer({ min: 1, max: 3 }),
        minNrRegions: fc.integer({ min: 3, max: 12 }),
        maxSlack: fc.integer({ min: 0, max: 30 }),
        samplesPerAggregation: fc.integer({ min: 1, max: 20 }),
        samplesPerUpdate: fc.integer({ min: 1, max: 60 }),
        adjust: fc.constantFrom('kernel' as const, 'refined' as const),
      }),
      (p) => {
        const rng = mulberry32(p.seed);
        const maxNrRegions = 2 * p.minNrRegions + 3 * p.nTargets + p.maxSlack;
        const attrs = {
          samplingUs: 1000,
          aggregationUs: 1000 * p.samplesPerAggregation,
          updateUs: 1000 * p.samplesPerUpdate,
          minNrRegions: p.minNrRegions,
          maxNrRegions,
          resultFile: '',
        };
        const ops = new RandomOps(rng);
        const ctx = new DamonContext({
          attrs, targetIds: Array.from({ length: p.nTargets }, (_, i) => 100 + i), ops, random: rng, clock: 'virtual', adjust: p.adjust,
        });
        let stopped: unknown;
        ctx.on('stopped', (reason, error) => { stopped = error ?? reason; });

        let before: Region[][] = [];
        let records: AggregationRecord[] = [];
        ctx.on('aggregate', (rec) => records.push(rec));
        let aggregatedSinceUpdate = false;
        let nextUpdate = p.samplesPerUpdate;

        for (let step = 1; step <= 150; step++) {
          records = [];
          assert.ok(ctx.step(), `context stopped: ${String(stopped)}`);
          const where = `step ${step}`;
          // The size limit as the context computes it after init and every update.
          const limit = Math.max(P, Math.floor(totalBytes(ctx.targets) / p.minNrRegions));

          if (records.length > 0) {
            assert.equal(records.length, p.nTargets, `${where}: one record per target`);
            const total = records.reduce((n, r) => n + r.regions.length, 0);
            assert.ok(total <= maxNrRegions, `${where}: ${total} regions after merging, max ${maxNrRegions}`);
            // The merge used the limit of the regions before this step (an update in this
            // step comes after it). Step 1 has no "before": init runs inside it.
            const old = new Set(before.flat().map((r) => `${r.start}-${r.end}`));
            const mergeLimit = Math.max(P, Math.floor(totalBytes([{ regions: before.flat() }]) / p.minNrRegions));
            for (const rec of step === 1 ? [] : records) {
              for (const r of rec.regions) {
                if (r.end - r.start > mergeLimit) {
                  assert.ok(old.has(`${r.start}-${r.end}`), `${where}: a merge made [${r.start / P}, ${r.end / P}) pages, above the limit of ${mergeLimit / P}`);
                }
              }
            }
            aggregatedSinceUpdate = true;
          }
          if (step >= nextUpdate) {
            nextUpdate += p.samplesPerUpdate;
            aggregatedSinceUpdate = false;
          }

          const total = ctx.targets.reduce((n, t) => n + t.regions.length, 0);
          if (aggregatedSinceUpdate) assert.ok(total <= maxNrRegions, `${where}: ${total} regions, max ${maxNrRegions}`);
          if (ctx.targets.every((t) => t.regions.every((r) => r.end - r.start <= limit))) {
            const floor = Math.min(p.minNrRegions, totalBytes(ctx.targets) / P);
            assert.ok(total >= floor, `${where}: ${total} regions, all within the size limit, fewer than ${floor}`);
          }
          for (const t of ctx.targets) checkStructure(t, ops.ranges.get(t.id)!, p.samplesPerAggregation, where);
          before = ctx.targets.map((t) => t.regions.map((r) => ({ ...r })));
        }
      },
    ),
    { numRuns: 100 },
  );
});
