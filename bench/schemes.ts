// What applying schemes costs the agent: the JavaScript time of one apply (matching,
// score histograms, quota splits) at DAMON's largest default region count, and what
// process_madvise(MADV_PAGEOUT) achieves on a real process of this host (clean file
// pages), which is the throughput a time quota is converted with.
import { SchemesEngine } from '../agent/schemes/schemes-engine.js';
import type { SchemeSpec } from '../agent/schemes/scheme.js';
import { newRegion, type Target } from '../agent/engine/region.js';
import { openProcess, processMadvise } from '../agent/ops/process-madvise.js';
import { toucherRig } from '../test/integration/support/file-toucher.js';
import { seededRandom } from '../test/support/seeded-random.js';
import { median, percentile, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const MiB = 2 ** 20;
const P = 4096;
const ANY = { minSizeBytes: 0, maxSizeBytes: Infinity, minNrAccesses: 0, maxNrAccesses: Infinity, minAge: 0, maxAge: Infinity };
const weights = { weightSizePermil: 0, weightNrAccessesPermil: 1000, weightAgePermil: 1000 };

/** A stat scheme over everything, a pageout of cold regions under a size quota, a cold under a time quota. */
const SCHEMES: SchemeSpec[] = [
  { pattern: ANY, action: 'stat', quota: null, watermarks: null, applyIntervalUs: 0 },
  { pattern: { ...ANY, maxNrAccesses: 2, minAge: 5 }, action: 'pageout', quota: { ms: 0, bytes: 64 * MiB, resetIntervalMs: 1000, ...weights }, watermarks: null, applyIntervalUs: 0 },
  { pattern: { ...ANY, maxNrAccesses: 5 }, action: 'cold', quota: { ms: 10, bytes: 0, resetIntervalMs: 1000, ...weights }, watermarks: null, applyIntervalUs: 0 },
];

function applyCost(nrRegions: number, applies: number, seed: number): number[] {
  const rnd = seededRandom(seed);
  const size = 4096 * MiB;
  const per = Math.floor(size / nrRegions / P) * P;
  const target: Target = { id: 1, regions: [] };
  const fresh = () => {
    target.regions = Array.from({ length: nrRegions }, (_, i) => ({
      ...newRegion(i * per, (i + 1) * per),
      nrAccesses: Math.floor(rnd() * 21),
      age: Math.floor(rnd() * 100),
    }));
  };
  let clock = 0;
  const engine = new SchemesEngine({
    schemes: SCHEMES,
    actuator: { refusal: () => null, apply: (_t, s, e) => e - s, release: () => {} },
    samplingUs: 5_000,
    aggregationUs: 100_000,
    actionClockNs: () => (clock += 1000),
  });
  const view = { targets: [target], passedSamples: 0, now: 0, nowUs() { return this.now; }, intervals: () => ({ samplingUs: 5_000, aggregationUs: 100_000 }) };
  const us: number[] = [];
  // The first applies run before the JIT compiled the loop: not counted.
  const warmup = 20;
  for (let i = 0; i < applies + warmup; i++) {
    fresh();
    view.passedSamples += 20;
    view.now += 100_000;
    const t0 = process.hrtime.bigint();
    engine.apply(view);
    if (i >= warmup) us.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return us;
}

async function pageoutThroughput(rangeMiB: number, repeats: number): Promise<{ mibPerS: number[]; rssAfterFraction: number[] }> {
  const size = 64 * MiB;
  const rig = toucherRig(size);
  const mibPerS: number[] = [];
  const rssAfterFraction: number[] = [];
  try {
    for (let r = 0; r < repeats; r++) {
      const t = await rig.start();
      const m = t.range;
      const h = openProcess(t.pid);
      try {
        const ranges = [];
        for (let a = m.start; a < m.end; a += rangeMiB * MiB) ranges.push({ start: a, end: Math.min(m.end, a + rangeMiB * MiB) });
        const t0 = process.hrtime.bigint();
        let bytes = 0;
        for (const x of ranges) bytes += processMadvise(h, [x], 'pageout').bytes;
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        mibPerS.push(bytes / MiB / s);
        rssAfterFraction.push(t.rssBytes() / size);
      } finally {
        h.close();
        await t.kill();
      }
    }
  } finally {
    rig.close();
  }
  return { mibPerS, rssAfterFraction };
}

export const benchmark: Benchmark = {
  name: 'schemes',
  description: 'cost of applying schemes in the engine (1000 regions, 3 schemes) and process_madvise pageout throughput on this host',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const applies = ctx.quick ? 50 : 500;
    ctx.progress('apply cost', 0, 2);
    const cost = applyCost(1000, applies, 1);
    const cost10k = applyCost(10_000, Math.max(10, applies / 10), 2);
    ctx.progress('pageout throughput', 1, 2);
    const po = await pageoutThroughput(1, ctx.quick ? 1 : ctx.repeats);
    ctx.progress('done', 2, 2);
    const summary = {
      applyMedianUs1000Regions: Number(median(cost).toFixed(1)),
      applyP99Us1000Regions: Number(percentile(cost, 99).toFixed(1)),
      applyShareOfAggregation1000Regions: Number((median(cost) / 100_000).toFixed(5)),
      applyMedianUs10000Regions: Number(median(cost10k).toFixed(1)),
      pageoutMiBPerS: Number(median(po.mibPerS).toFixed(0)),
      rssLeftAfterPageout: Number(median(po.rssAfterFraction).toFixed(3)),
    };
    return {
      summary,
      tables: [
        {
          title: 'one apply of 3 schemes (stat; pageout under a 64 MiB quota; cold under a 10 ms quota), no-op actuator',
          columns: ['regions', 'applies', 'median us', 'p99 us', 'median / 100 ms aggregation'],
          rows: [
            [1000, cost.length, summary.applyMedianUs1000Regions, summary.applyP99Us1000Regions, summary.applyShareOfAggregation1000Regions],
            [10_000, cost10k.length, summary.applyMedianUs10000Regions, Number(percentile(cost10k, 99).toFixed(1)), Number((median(cost10k) / 100_000).toFixed(5))],
          ],
        },
        {
          title: 'process_madvise(MADV_PAGEOUT) of a 64 MiB clean file mapping of a child, 1 MiB per call',
          columns: ['runs', 'median MiB/s', 'min MiB/s', 'max MiB/s', 'Rss left (fraction)'],
          rows: [[po.mibPerS.length, summary.pageoutMiBPerS, Math.round(Math.min(...po.mibPerS)), Math.round(Math.max(...po.mibPerS)), summary.rssLeftAfterPageout]],
        },
      ],
      notes: [
        'Apply cost is JavaScript time on the agent thread per aggregation (after 20 warm-up applies), with regions of random counts and ages and an actuator that does nothing: the schemes core alone. The p99 includes garbage collection and a busy host\'s scheduling.',
        'Pageout throughput depends on the host (page cache, storage, load); clean file pages are dropped without I/O, anonymous pages would need swap (this host has none).',
      ],
      data: { cost, cost10k, pageout: po },
    };
  },
};
