// Intervals auto-tuning (an intervals goal, Linux 6.15's intervals_goal) against fixed
// intervals, on a simulated target whose hot range is accessed at a rate that changes by
// phase (test/support/rate-operations.ts): what the sampling interval settles at, the
// ratio of access events it sees, how soon the hot range is found after each change
// (detection), and how many access checks a second it costs.
import { DamonContext } from '../agent/engine/context.js';
import { validateAttributes, type IntervalsGoal } from '../agent/engine/attrs.js';
import type { AggregationRecord } from '../agent/records/record.js';
import { RateOperations, observedAccessRatio, type RatePhase } from '../test/support/rate-operations.js';
import { seededRandom } from '../test/support/seeded-random.js';
import { median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const MiB = 2 ** 20;
const BASE = 0x1000_0000;
const SIZE = 256 * MiB;
const HOT_SIZE = 32 * MiB;
const hotAt = (offMiB: number) => ({ start: BASE + offMiB * MiB, end: BASE + offMiB * MiB + HOT_SIZE });
const PHASE_US = 60_000_000;
/** At each change the 32 MiB hot range also hops elsewhere: detection starts from nothing. */
const PHASES: RatePhase[] = [
  { durationUs: PHASE_US, hotRate: 40, baseRate: 0, hot: hotAt(64) },
  { durationUs: PHASE_US, hotRate: 4, baseRate: 0, hot: hotAt(160) },
  { durationUs: PHASE_US, hotRate: 100, baseRate: 0, hot: hotAt(16) },
];
/** DAMON's recommended goal (4% of the events, every 3 aggregations), bounds 1 ms..200 ms. */
const GOAL: IntervalsGoal = { accessBp: 400, aggrs: 3, minSampleUs: 1_000, maxSampleUs: 200_000 };
/** The hot range is found once this much of it is in regions seen accessed, and this little of the rest. */
const FOUND = { minHot: 0.9, maxCold: 0.1 };
const NEVER = Number.POSITIVE_INFINITY;

interface PhaseFigures {
  /** Monitoring seconds and aggregations from the change until the hot range was found. */
  detectS: number;
  detectAggs: number;
  /** Median sampling interval (us) and observed event ratio over the phase's second half. */
  samplingUs: number;
  ratio: number;
  /** Region checks per second of monitoring time, over the phase. */
  checksPerS: number;
  aggregationsPerS: number;
}

/** Fractions of hot and cold bytes in regions with at least one access. */
function coverage(rec: AggregationRecord, hotRange: { start: number; end: number }): { hot: number; cold: number } {
  let hot = 0;
  let cold = 0;
  for (const r of rec.regions) {
    if (r.nrAccesses === 0) continue;
    const inHot = Math.max(0, Math.min(r.end, hotRange.end) - Math.max(r.start, hotRange.start));
    hot += inHot;
    cold += r.end - r.start - inHot;
  }
  return { hot: hot / HOT_SIZE, cold: cold / (SIZE - HOT_SIZE) };
}

function monitor(goal: IntervalsGoal | null, seed: number): PhaseFigures[] {
  const ops = new RateOperations({ targetId: 1, start: BASE, end: BASE + SIZE, hotStart: PHASES[0].hot!.start, hotEnd: PHASES[0].hot!.end, phases: PHASES });
  const ctx = new DamonContext({ attrs: validateAttributes({ intervalsGoal: goal }), targetIds: [1], ops, random: seededRandom(seed), clock: 'virtual' });
  const seen: { atUs: number; rec: AggregationRecord }[] = [];
  const checks = PHASES.map(() => 0);
  ctx.on('aggregate', (rec) => seen.push({ atUs: ctx.nowUs(), rec }));
  const endUs = PHASES.length * PHASE_US;
  while (ctx.nowUs() < endUs) {
    const phase = Math.min(PHASES.length - 1, Math.floor(ctx.nowUs() / PHASE_US));
    checks[phase] += ctx.targets.reduce((a, t) => a + t.regions.length, 0);
    ctx.step();
  }
  return PHASES.map((_, p) => {
    const from = p * PHASE_US;
    const inPhase = seen.filter((s) => s.atUs > from && s.atUs <= from + PHASE_US);
    const i = inPhase.findIndex((s) => {
      const c = coverage(s.rec, PHASES[p].hot!);
      return c.hot >= FOUND.minHot && c.cold <= FOUND.maxCold;
    });
    const late = inPhase.filter((s) => s.atUs > from + PHASE_US / 2);
    return {
      detectS: i < 0 ? NEVER : (inPhase[i].atUs - from) / 1e6,
      detectAggs: i < 0 ? NEVER : i + 1,
      samplingUs: median(late.map((s) => s.rec.samplingUs ?? 0)),
      ratio: median(late.map((s) => observedAccessRatio(s.rec))),
      checksPerS: checks[p] / (PHASE_US / 1e6),
      aggregationsPerS: inPhase.length / (PHASE_US / 1e6),
    };
  });
}

const show = (x: number, digits = 1): number | string => (Number.isFinite(x) ? Number(x.toFixed(digits)) : 'never');

async function run(b: BenchContext): Promise<BenchResult> {
  const seeds = b.quick ? 2 : 5;
  const configs: { name: string; goal: IntervalsGoal | null }[] = [
    { name: 'fixed 5 ms / 100 ms', goal: null },
    { name: `goal ${GOAL.accessBp} bp, ${GOAL.aggrs} aggrs`, goal: GOAL },
  ];
  const rows: (string | number)[][] = [];
  const data: Record<string, unknown> = {};
  const summary: Record<string, number | string> = {};
  let done = 0;
  for (const c of configs) {
    const runs: PhaseFigures[][] = [];
    for (let seed = 1; seed <= seeds; seed++) {
      runs.push(monitor(c.goal, seed));
      b.progress(`${c.name} seed ${seed}`, ++done, configs.length * seeds);
    }
    PHASES.forEach((ph, p) => {
      const f = runs.map((r) => r[p]);
      const detectS = median(f.map((x) => x.detectS));
      rows.push([
        c.name, `${ph.hotRate}/s`,
        show(detectS), show(median(f.map((x) => x.detectAggs)), 0), f.filter((x) => Number.isFinite(x.detectS)).length,
        show(median(f.map((x) => x.samplingUs)) / 1000, 2), show(median(f.map((x) => x.ratio)) * 100, 2),
        show(median(f.map((x) => x.checksPerS)), 0), show(median(f.map((x) => x.aggregationsPerS)), 2),
      ]);
      const key = `${c.goal ? 'goal' : 'fixed'}Rate${ph.hotRate}`;
      summary[`${key}DetectS`] = Number.isFinite(detectS) ? Number(detectS.toFixed(2)) : 'never';
      summary[`${key}ChecksPerS`] = Math.round(median(f.map((x) => x.checksPerS)));
    });
    data[c.name] = { goal: c.goal, seeds, phases: PHASES, perSeed: runs };
  }
  return {
    summary,
    tables: [
      {
        title: `Intervals goal vs fixed intervals: 256 MiB target, a 32 MiB hot range that hops and changes its access rate every ${PHASE_US / 1e6} s (medians over seeds 1..${seeds})`,
        columns: ['intervals', 'hot rate', 'found after (s)', 'aggregations', `found (of ${seeds})`, 'sampling (ms)', 'events seen (%)', 'checks/s', 'aggregations/s'],
        rows,
      },
    ],
    notes: [
      `Virtual time, seeded. A sampled hot page counts as accessed with probability 1 - exp(-rate x time since its check was armed), so the events seen grow with the sampling interval, as on a real process. "found": at least ${FOUND.minHot * 100}% of the hot range in regions seen accessed and at most ${FOUND.maxCold * 100}% of the rest, counted from the change (the aggregation in force when the range hopped counts as the first).`,
      `"sampling" and "events seen" are medians over each phase's second half (the goal asks for ${GOAL.accessBp / 100}%); checks/s (regions checked per second of monitoring) is what sampling costs the page_idle operations; aggregations/s is how often the engine wakes to merge, split and publish.`,
    ],
    data,
  };
}

export const benchmark: Benchmark = {
  name: 'intervals-tuning',
  description: 'an intervals goal against fixed intervals on a hot range whose access rate changes: detection, events seen and checks per second',
  run,
};
