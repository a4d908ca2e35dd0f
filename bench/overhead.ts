// Monitoring overhead: CPU time per sampling interval of the engine driving the
// (simulated) synthetic operations at max_nr_regions = 1000, for targets of 1 GiB, 64 GiB
// and 4 TiB, with each split rule (the context's `adjust`: 'refined', the default, and
// 'kernel'), beside the CPU of checking every page of the same targets (what DAMON's
// regions avoid). Also the interval drift of a short real-time run.
//
// All figures that compare sizes are ratios within one run, medians over repeats with the
// sizes interleaved, because the machine is shared and its speed varies.
import { DamonContext, type AdjustMode } from '../agent/engine/context.js';
import { DEFAULT_ATTRS, validateAttributes, type Attributes } from '../agent/engine/attrs.js';
import { PAGE_SIZE } from '../agent/engine/region.js';
import { SyntheticOperations } from '../agent/ops/synthetic.js';
import { parseWorkload, type Workload } from '../agent/ops/synthetic-workload.js';
import { presetWorkload } from '../agent/ops/synthetic-presets.js';
import { seededRandom } from '../test/support/seeded-random.js';
import { cpuUs, median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;
const SIZES: ReadonlyArray<{ label: string; bytes: number }> = [
  { label: '1 GiB', bytes: GiB },
  { label: '64 GiB', bytes: 64 * GiB },
  { label: '4 TiB', bytes: 4 * TiB },
];
const DATA_START = 2 ** 40;
/** The default first: the summary's headline figures are the default's. */
const MODES: readonly AdjustMode[] = ['refined', 'kernel'];
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
  adjust: AdjustMode;
  bytes: number;
  ops: SyntheticOperations;
  ctx: DamonContext;
  /** Regions after each aggregation's merge (the records). */
  regionCounts: number[];
  /** Regions checked per sampling interval during the measurements: sum and intervals. */
  sampled: { sum: number; intervals: number };
}

function monitor(label: string, bytes: number, adjust: AdjustMode, attrs: Attributes, seed: number): Monitored {
  const ops = new SyntheticOperations(stripesWorkload(bytes));
  const ctx = new DamonContext({ attrs, targetIds: ops.targetIds(), ops, random: seededRandom(seed), clock: 'virtual', adjust });
  const m: Monitored = { label, adjust, bytes, ops, ctx, regionCounts: [], sampled: { sum: 0, intervals: 0 } };
  ctx.on('aggregate', (r) => m.regionCounts.push(r.regions.length));
  return m;
}

/** CPU µs per sampling interval over `steps` steps (a whole number of aggregations). */
function regionCost(m: Monitored, steps: number): number {
  let sampled = 0;
  const c0 = cpuUs();
  for (let i = 0; i < steps; i++) {
    sampled += m.ctx.targets[0].regions.length;
    m.ctx.step();
  }
  const us = (cpuUs() - c0) / steps;
  m.sampled.sum += sampled;
  m.sampled.intervals += steps;
  return us;
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
  const total = SIZES.length * (MODES.length + (MODES.length + 1) * b.repeats) + 1;
  let done = 0;
  const tick = (what: string) => b.progress(what, ++done, total);

  // byMode[k][i]: split rule MODES[k], size SIZES[i]; the same seed for both rules.
  const byMode = MODES.map((adjust) => SIZES.map((s, i) => monitor(s.label, s.bytes, adjust, attrs, 1000 + i)));
  for (const m of byMode.flat()) {
    for (let i = 0; i < warmupSteps; i++) m.ctx.step();
    tick(`warm-up ${m.adjust} ${m.label}`);
  }
  const regionUs: number[][][] = MODES.map(() => SIZES.map(() => []));
  const scanUs: number[][] = SIZES.map(() => []);
  const scanInfo: Array<ReturnType<typeof scanCost>> = [];
  const countsFrom = byMode.map((ms) => ms.map((m) => m.regionCounts.length));
  for (let r = 0; r < b.repeats; r++) {
    // Interleave rules and sizes so that a slow spell of the machine hits all of them.
    byMode.forEach((ms, k) => ms.forEach((m, i) => {
      regionUs[k][i].push(regionCost(m, measureSteps));
      tick(`repeat ${r + 1}/${b.repeats}: regions, ${m.adjust} ${m.label}`);
    }));
    // Checking every page does not depend on the split rule.
    byMode[0].forEach((m, i) => {
      const s = scanCost(m);
      scanUs[i].push(s.us);
      scanInfo[i] = s;
      tick(`repeat ${r + 1}/${b.repeats}: every page, ${m.label}`);
    });
  }
  const drift = await driftRun(driftSeconds);
  tick('real-time drift');

  const regionMed = regionUs.map((perSize) => perSize.map(median));
  const scanMed = scanUs.map(median);
  const regionStats = byMode.map((ms, k) => ms.map((m, i) => stat(m.regionCounts.slice(countsFrom[k][i]))));
  // Headline figures are the default's (refined, MODES[0]).
  const [refined, kernel] = regionMed;
  const last = SIZES.length - 1;
  const smallest = refined[0];
  const largest = refined[last];
  const ratio = largest / smallest;
  const samplingUs = attrs.samplingUs;

  return {
    summary: {
      cpuPerSamplingUsSmallest: smallest,
      cpuPerSamplingUsLargest: largest,
      regionCostRatioLargestToSmallest: ratio,
      regionCostRatioWithinExpected: ratio <= 1.2,
      regionCostSpreadMaxToMinOverSizes: Math.max(...refined) / Math.min(...refined),
      everyPageToRegionsRatio4TiB: scanMed[last] / largest,
      kernelSplitCpuPerSamplingUsSmallest: kernel[0],
      kernelSplitCpuPerSamplingUsLargest: kernel[last],
      refinedToKernelCpuRatioSmallest: refined[0] / kernel[0],
      refinedToKernelCpuRatioLargest: refined[last] / kernel[last],
      driftSamplingP50Us: drift.sampling.p50Us,
      driftSamplingP99Us: drift.sampling.p99Us,
      driftMissedSamples: drift.missedSamples,
    },
    tables: [
      {
        title: `CPU per sampling interval (${samplingUs} us), max_nr_regions ${attrs.maxNrRegions}, median of ${b.repeats}, per split rule (simulated synthetic targets)`,
        columns: ['target', 'split', 'regions merged (min/med/max)', 'regions checked', 'regions: CPU us', 'regions: % of 1 CPU', 'vs 1 GiB', 'every page: CPU us', 'every page / regions', 'every page measured'],
        rows: byMode.flatMap((ms, k) => ms.map((m, i) => [
          m.label,
          m.adjust,
          `${regionStats[k][i].min}/${regionStats[k][i].median}/${regionStats[k][i].max}`,
          m.sampled.sum / m.sampled.intervals,
          regionMed[k][i],
          (100 * regionMed[k][i]) / samplingUs,
          regionMed[k][i] / regionMed[k][0],
          scanMed[i],
          scanMed[i] / regionMed[k][i],
          scanInfo[i].extrapolated ? `${scanInfo[i].measuredPages} of ${scanInfo[i].totalPages} pages, extrapolated` : `all ${scanInfo[i].totalPages} pages x${scanInfo[i].measuredPages / scanInfo[i].totalPages}`,
        ])),
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
      `"regions merged" is the count in the aggregation records; "regions checked" the mean count per sampling interval (after the split), which is what an interval costs. Both stay <= max_nr_regions with either split rule. The kernel's splits only while there are <= max_nr_regions / 2 regions, into 2 or 3; the refined one spends the whole budget where boundaries are (these ${STRIPES} stripes have ${2 * STRIPES}), so it checks ${attrs.maxNrRegions}, and its split costs a little more per region.`,
      `Drift: missed samples = sampling slots skipped because a step ran more than one interval late (${drift.missedSamples} in ${drift.sampling.total + 1} steps).`,
    ],
    data: {
      attrs,
      stripes: STRIPES,
      sizes: SIZES.map((size, i) => ({
        label: size.label,
        bytes: size.bytes,
        regionCpuUsPerSampling: Object.fromEntries(MODES.map((mode, k) => [mode, regionUs[k][i]])),
        regionCountsDuringMeasurement: Object.fromEntries(MODES.map((mode, k) => [mode, regionStats[k][i]])),
        regionsCheckedPerSampling: Object.fromEntries(MODES.map((mode, k) => [mode, byMode[k][i].sampled.sum / byMode[k][i].sampled.intervals])),
        everyPageCpuUsPerSampling: scanUs[i],
        everyPageMeasuredPages: scanInfo[i].measuredPages,
        everyPageTotalPages: scanInfo[i].totalPages,
        everyPageExtrapolated: scanInfo[i].extrapolated,
      })),
      drift,
    },
  };
}

export const benchmark: Benchmark = {
  name: 'overhead',
  description: 'CPU per sampling interval at 1 GiB, 64 GiB and 4 TiB (simulated targets), per split rule, vs checking every page; real-time interval drift',
  run,
};
