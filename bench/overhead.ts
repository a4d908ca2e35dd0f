// Monitoring overhead: CPU time per sampling interval of the engine driving the
// (simulated) synthetic operations at max_nr_regions = 1000, for targets of 1 GiB, 64 GiB
// and 4 TiB, beside the CPU of checking every page of the same targets (what DAMON's
// regions avoid). Also the interval drift of a short real-time run.
//
// All figures that compare sizes are ratios within one run, medians over repeats with the
// sizes interleaved, because the machine is shared and its speed varies.
import { DamonContext } from '../agent/engine/context.js';
import { DEFAULT_ATTRS, validateAttributes, type Attributes } from '../agent/engine/attrs.js';
import { PAGE_SIZE } from '../agent/engine/region.js';
import { SyntheticOperations } from '../agent/ops/synthetic.js';
import { parseWorkload, type Workload } from '../agent/ops/synthetic-workload.js';
import { presetWorkload } from '../agent/ops/synthetic-presets.js';
import { seededRandom } from '../agent/ops/seeded-random.js';
import { cpuUs, median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;
const SIZES: ReadonlyArray<{ label: string; bytes: number }> = [
  { label: '1 GiB', bytes: GiB },
  { label: '64 GiB', bytes: 64 * GiB },
  { label: '4 TiB', bytes: 4 * TiB },
];
const DATA_START = 2 ** 40;
/** Stripes of the workload: enough boundaries to keep the regions near their operating maximum. */
const STRIPES = 300;
const STRIPE_PROBABILITIES = [0.9, 0.6, 0.3];
/** Pages an every-page scan measures at most; beyond, it is extrapolated linearly. */
const SCAN_SLICE_PAGES = 2 ** 25;
/** Small targets are scanned repeatedly until at least this many pages were measured. */
const SCAN_MIN_PAGES = 2 ** 22;

/**
 * A simulated target of `bytes` (plus a small image and stack mapping, for the three
 * regions) with STRIPES accessed stripes of different frequencies, scaled with the size so
 * that every size presents the engine the same structure.
 */
export function stripesWorkload(bytes: number): Workload {
  const stripe = Math.floor(bytes / (2 * STRIPES) / PAGE_SIZE) * PAGE_SIZE;
  const ranges = Array.from({ length: STRIPES }, (_, k) => ({
    start: DATA_START + 2 * k * stripe, size: stripe, probability: STRIPE_PROBABILITIES[k % STRIPE_PROBABILITIES.length],
  }));
  return parseWorkload({
    name: `stripes-${bytes}`,
    description: `simulated: ${bytes} bytes with ${STRIPES} stripes accessed at ${STRIPE_PROBABILITIES.join('/')} per sampling interval, the rest at 0.02`,
    targets: [{
      id: 1,
      mappings: [{ start: PAGE_SIZE, size: 2 ** 20 }, { start: DATA_START, size: bytes }, { start: 2 ** 47 - 2 ** 20, size: 2 ** 20 }],
      baseProbability: 0.02,
      phases: [{ ranges }],
    }],
  });
}

interface Monitored {
  label: string;
  bytes: number;
  ops: SyntheticOperations;
  ctx: DamonContext;
  regionCounts: number[];
}

function monitor(label: string, bytes: number, attrs: Attributes, seed: number): Monitored {
  const ops = new SyntheticOperations(stripesWorkload(bytes));
  const ctx = new DamonContext({ attrs, targetIds: ops.targetIds(), ops, random: seededRandom(seed), clock: 'virtual' });
  const m: Monitored = { label, bytes, ops, ctx, regionCounts: [] };
  ctx.on('aggregate', (r) => m.regionCounts.push(r.regions.length));
  return m;
}

/** CPU µs per sampling interval over `steps` steps (a whole number of aggregations). */
function regionCost(m: Monitored, steps: number): number {
  const c0 = cpuUs();
  for (let i = 0; i < steps; i++) m.ctx.step();
  return (cpuUs() - c0) / steps;
}

/** CPU µs of checking every mapped page once, measured on a slice when the target is large. */
function scanCost(m: Monitored): { us: number; measuredPages: number; totalPages: number; extrapolated: boolean } {
  const totalPages = m.ops.mappedRanges(1).reduce((n, s) => n + (s.end - s.start) / PAGE_SIZE, 0);
  const slice = Math.min(totalPages, SCAN_SLICE_PAGES);
  const passes = Math.max(1, Math.ceil(SCAN_MIN_PAGES / slice));
  const c0 = cpuUs();
  let measured = 0;
  for (let i = 0; i < passes; i++) measured += m.ops.checkEveryPage(1, 0, slice).pages;
  const us = cpuUs() - c0;
  if (measured !== passes * slice) throw new Error(`every-page scan of ${m.label} checked ${measured} pages, expected ${passes * slice}`);
  return { us: (us / measured) * totalPages, measuredPages: measured, totalPages, extrapolated: slice < totalPages };
}

async function driftRun(seconds: number) {
  const ops = new SyntheticOperations(presetWorkload('hot5'));
  const ctx = new DamonContext({ attrs: { ...DEFAULT_ATTRS }, targetIds: ops.targetIds(), ops, clock: 'real' });
  ctx.start();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const d = ctx.drift();
  await ctx.stop();
  return d;
}

const stat = (xs: number[]) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) });

async function run(b: BenchContext): Promise<BenchResult> {
  const attrs = validateAttributes({ ...DEFAULT_ATTRS, maxNrRegions: 1000 });
  const perAggregation = attrs.aggregationUs / attrs.samplingUs;
  const warmupSteps = (b.quick ? 20 : 100) * perAggregation;
  const measureSteps = (b.quick ? 10 : 40) * perAggregation;
  const driftSeconds = b.quick ? 1 : 3;
  const total = SIZES.length * (1 + 2 * b.repeats) + 1;
  let done = 0;
  const tick = (what: string) => b.progress(what, ++done, total);

  const targets = SIZES.map((s, i) => monitor(s.label, s.bytes, attrs, 1000 + i));
  for (const m of targets) {
    for (let i = 0; i < warmupSteps; i++) m.ctx.step();
    tick(`warm-up ${m.label}`);
  }
  const regionUs: number[][] = SIZES.map(() => []);
  const scanUs: number[][] = SIZES.map(() => []);
  const scanInfo: Array<ReturnType<typeof scanCost>> = [];
  const countsFrom = targets.map((m) => m.regionCounts.length);
  for (let r = 0; r < b.repeats; r++) {
    // Interleave the sizes so that a slow spell of the machine hits all of them.
    targets.forEach((m, i) => {
      regionUs[i].push(regionCost(m, measureSteps));
      tick(`repeat ${r + 1}/${b.repeats}: regions, ${m.label}`);
    });
    targets.forEach((m, i) => {
      const s = scanCost(m);
      scanUs[i].push(s.us);
      scanInfo[i] = s;
      tick(`repeat ${r + 1}/${b.repeats}: every page, ${m.label}`);
    });
  }
  const drift = await driftRun(driftSeconds);
  tick('real-time drift');

  const regionMed = regionUs.map(median);
  const scanMed = scanUs.map(median);
  const regionStats = targets.map((m, i) => stat(m.regionCounts.slice(countsFrom[i])));
  const smallest = regionMed[0];
  const largest = regionMed[regionMed.length - 1];
  const ratio = largest / smallest;
  const samplingUs = attrs.samplingUs;

  return {
    summary: {
      cpuPerSamplingUsSmallest: smallest,
      cpuPerSamplingUsLargest: largest,
      regionCostRatioLargestToSmallest: ratio,
      regionCostRatioWithinExpected: ratio <= 1.2,
      regionCostSpreadMaxToMinOverSizes: Math.max(...regionMed) / Math.min(...regionMed),
      everyPageToRegionsRatio4TiB: scanMed[scanMed.length - 1] / largest,
      driftSamplingP50Us: drift.sampling.p50Us,
      driftSamplingP99Us: drift.sampling.p99Us,
      driftMissedSamples: drift.missedSamples,
    },
    tables: [
      {
        title: `CPU per sampling interval (${samplingUs} us), max_nr_regions ${attrs.maxNrRegions}, median of ${b.repeats} (simulated synthetic targets)`,
        columns: ['target', 'regions (min/med/max)', 'regions: CPU us', 'regions: % of 1 CPU', 'vs 1 GiB', 'every page: CPU us', 'every page / regions', 'every page measured'],
        rows: targets.map((m, i) => [
          m.label,
          `${regionStats[i].min}/${regionStats[i].median}/${regionStats[i].max}`,
          regionMed[i],
          (100 * regionMed[i]) / samplingUs,
          regionMed[i] / smallest,
          scanMed[i],
          scanMed[i] / regionMed[i],
          scanInfo[i].extrapolated ? `${scanInfo[i].measuredPages} of ${scanInfo[i].totalPages} pages, extrapolated` : `all ${scanInfo[i].totalPages} pages x${scanInfo[i].measuredPages / scanInfo[i].totalPages}`,
        ]),
      },
      {
        title: `Real-time loop, ${driftSeconds} s of hot5 with context.start() (us; the machine is shared)`,
        columns: ['interval', 'configured', 'count', 'mean', 'p50', 'p99', 'max'],
        rows: ([['sampling', drift.sampling], ['aggregation', drift.aggregation], ['step wall', drift.stepWallUs], ['step CPU', drift.stepCpuUs]] as const).map(
          ([name, s]) => [name, s.configuredUs, s.count, s.meanUs, s.p50Us, s.p99Us, s.maxUs],
        ),
      },
    ],
    notes: [
      'Targets are simulated by the synthetic operations (declared access probabilities), not real processes: the figures are the engine\'s own cost (sampling, checks against the workload, merge/split), not the cost of reading page_idle or pagemap.',
      `Region cost: ${measureSteps} sampling intervals (${measureSteps / perAggregation} aggregations, so merge and split included) per repeat, after ${warmupSteps / perAggregation} aggregations of warm-up; CPU from process.cpuUsage (user + system).`,
      `Every-page cost: one access check (a random draw against the page's probability, runs walked in order) per mapped page. Targets with more than ${SCAN_SLICE_PAGES} pages are measured on their first ${SCAN_SLICE_PAGES} pages and extrapolated linearly to all pages; smaller ones are scanned whole, repeatedly, to measure at least ${SCAN_MIN_PAGES} pages.`,
      `Region counts stay below max_nr_regions: the split runs only while there are <= max_nr_regions / 2 regions (DAMON's rule), so the steady state hovers around ${attrs.maxNrRegions / 2}.`,
      `Drift: missed samples = sampling slots skipped because a step ran more than one interval late (${drift.missedSamples} in ${drift.sampling.total + 1} steps).`,
    ],
    data: {
      attrs,
      stripes: STRIPES,
      sizes: targets.map((m, i) => ({
        label: m.label,
        bytes: m.bytes,
        regionCpuUsPerSampling: regionUs[i],
        everyPageCpuUsPerSampling: scanUs[i],
        everyPageMeasuredPages: scanInfo[i].measuredPages,
        everyPageTotalPages: scanInfo[i].totalPages,
        everyPageExtrapolated: scanInfo[i].extrapolated,
        regionCountsDuringMeasurement: regionStats[i],
      })),
      drift,
    },
  };
}

export const benchmark: Benchmark = {
  name: 'overhead',
  description: 'CPU per sampling interval at 1 GiB, 64 GiB and 4 TiB (simulated targets) vs checking every page; real-time interval drift',
  run,
};
