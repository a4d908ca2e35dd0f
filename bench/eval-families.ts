// The evaluation set of the split rules: families of simulated workloads, each generated
// from a seed, kept apart from what the refined split was tuned on.
//
// Tuning material: the presets hot5 and islands (agent/ops/synthetic-presets.ts) and the
// families below on TUNING_SEEDS. Held out: the families on HELD_OUT_SEEDS (the bench's
// figures) and on TEST_SEEDS (test/integration/accuracy.test.ts). The three seed sets were
// fixed before any result was looked at, and never overlap.
//
// A seed drives two independent random streams: the workload's layout (where the hot
// ranges are, how many, how big: `layoutRandom(seed)`) and the engine's sampling and
// splitting (`engineRandom(seed)`). Every family lays its ranges in the presets' process
// layout (processLayout: a program image, the data mapping, a library, a stack), accessed
// at the presets' cold probability outside its ranges unless it says otherwise, and moves
// its hot set at every phase boundary: the bar is checked from the start and after
// every move.
import { DEFAULT_ATTRS } from '../agent/engine/attrs.js';
import { PAGE_SIZE } from '../agent/engine/region.js';
import { initRegions } from '../agent/ops/vaddr-regions.js';
import type { RandomSource } from '../agent/engine/adjust.js';
import { seededRandom } from '../test/support/seeded-random.js';
import { monitoredRanges } from '../agent/ops/synthetic.js';
import {
  PRESET_COLD_PROBABILITY, PRESET_DATA_START, presetWorkload, processLayout,
} from '../agent/ops/synthetic-presets.js';
import { parseWorkload, type Workload } from '../agent/ops/synthetic-workload.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Seeds the refined split's constants may be chosen on (with the presets). */
export const TUNING_SEEDS: readonly number[] = range(1, 20);
/** Seeds the bench reports; never tuned on. */
export const HELD_OUT_SEEDS: readonly number[] = range(1001, 1040);
/** Seeds the accuracy test asserts on; never tuned on, disjoint from the bench's. */
export const TEST_SEEDS: readonly number[] = range(2001, 2010);

/** The workloads the refined split was tuned on, with the seeds they were tuned on. */
export const TUNING_PRESETS: readonly string[] = ['hot5', 'islands'];
export const TUNING_PRESET_SEEDS: readonly number[] = range(1, 40);

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** The random stream that lays out a family's workload for `seed`. */
export function layoutRandom(seed: number): RandomSource {
  return seededRandom(seed * 2 + 1);
}

/** The random stream of the engine (sampling and splits) for `seed`. */
export function engineRandom(seed: number): RandomSource {
  return seededRandom(seed * 2);
}

export interface Family {
  name: string;
  /** What the family varies and why it is hard; for the bench's notes. */
  description: string;
  /** Length of each phase: the hot set moves at every multiple of it. */
  phaseUs: number;
  /** Virtual time a run lasts (a whole number of phases). */
  runUs: number;
  workload(seed: number): Workload;
}

/** Same as `Family` for a tuning preset (its phases are 4 s, two of them). */
export function presetFamily(name: string): Family {
  return {
    name,
    description: `the preset ${name} (tuning material)`,
    phaseUs: 4_000_000,
    runUs: 8_000_000,
    workload: () => presetWorkload(name),
  };
}

interface HotRange {
  /** Offset in the data mapping, page aligned. */
  offset: number;
  size: number;
  probability: number;
}

const DATA_SIZE = 4 * GiB;

function pageDown(x: number): number {
  return Math.floor(x / PAGE_SIZE) * PAGE_SIZE;
}

function uniform(random: RandomSource, lo: number, hi: number): number {
  return lo + random() * (hi - lo);
}

function pick<T>(random: RandomSource, xs: readonly T[]): T {
  return xs[Math.floor(random() * xs.length)];
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * `count` ranges of the given sizes at random places in [0, span), none overlapping and
 * at least `gap` bytes apart, sorted by offset. Rejection sampling; throws when the sizes
 * cannot be placed (a bug in a family's parameters).
 */
function placeApart(random: RandomSource, sizes: readonly number[], span: number, gap: number): number[] {
  for (let attempt = 0; attempt < 1000; attempt++) {
    const placed: Array<{ offset: number; size: number }> = [];
    let ok = true;
    for (const size of sizes) {
      let found = false;
      for (let tries = 0; tries < 200 && !found; tries++) {
        const offset = pageDown(random() * (span - size));
        if (placed.every((p) => offset + size + gap <= p.offset || p.offset + p.size + gap <= offset)) {
          placed.push({ offset, size });
          found = true;
        }
      }
      if (!found) {
        ok = false;
        break;
      }
    }
    if (ok) return placed.map((p) => p.offset);
  }
  throw new Error(`cannot place ${sizes.length} ranges in ${span} bytes`);
}

interface Phase {
  ranges: HotRange[];
}

/** The JSON workload of one target over the presets' layout with a data mapping of `dataSize`. */
function workloadOf(name: string, description: string, dataSize: number, phases: Phase[], phaseUs: number, baseProbability = PRESET_COLD_PROBABILITY): Workload {
  return parseWorkload({
    name,
    description,
    targets: [{
      id: 1,
      mappings: processLayout(PRESET_DATA_START, dataSize),
      baseProbability,
      repeat: true,
      phases: phases.map((ph) => ({
        durationUs: phaseUs,
        ranges: [...ph.ranges]
          .sort((a, b) => a.offset - b.offset)
          .map((r) => ({ start: hex(PRESET_DATA_START + r.offset), size: r.size, probability: r.probability })),
      })),
    }],
  }, name);
}

const FOUR_S = 4_000_000;
const TWO_PHASES = 2 * FOUR_S;

/** Islands: `count` hot islands of `size` each in 4 GiB, all moving at the phase boundary. */
function islandsOf(name: string, random: RandomSource, counts: readonly number[], sizes: readonly number[]): Workload {
  const count = pick(random, counts);
  const size = pick(random, sizes);
  const phases = [0, 1].map(() => {
    const offsets = placeApart(random, Array(count).fill(size), DATA_SIZE, 16 * MiB);
    return { ranges: offsets.map((offset) => ({ offset, size, probability: uniform(random, 0.85, 0.95) })) };
  });
  return workloadOf(name, `${count} islands of ${size / MiB} MiB in 4 GiB`, DATA_SIZE, phases, FOUR_S);
}

/**
 * Hot strips that start or end exactly at an edge of the initial regions (where the
 * kernel's first splits cut), on either side of it.
 */
function edgeStrips(random: RandomSource): Workload {
  const mappings = processLayout(PRESET_DATA_START, DATA_SIZE).map((m) => ({ start: Number(m.start), end: Number(m.start) + m.size }));
  const edges = initRegions(monitoredRanges(mappings), DEFAULT_ATTRS.minNrRegions)
    .map((r) => r.start - PRESET_DATA_START)
    .filter((o) => o > 0 && o < DATA_SIZE);
  const count = pick(random, [1, 2, 3]);
  const phases = [0, 1].map(() => {
    const chosen = [...edges].sort(() => random() - 0.5).slice(0, count);
    return {
      ranges: chosen.map((edge) => {
        const size = pick(random, [2, 4, 8, 16, 32, 64]) * MiB;
        const offset = random() < 0.5 ? edge - size : edge;
        return { offset, size, probability: uniform(random, 0.85, 0.95) };
      }),
    };
  });
  return workloadOf('edge-strips', `${count} hot strips of 2..64 MiB at edges of the initial regions`, DATA_SIZE, phases, FOUR_S);
}

/**
 * An access-frequency gradient: 6..12 adjacent bands of 32..128 MiB whose probabilities
 * step from 0.95 down to 0.05 (or up), without the levels within 0.15 of the hot cut
 * (0.5), where 20 samples cannot tell hot from cold. Moves as a whole, and may flip.
 */
function gradient(random: RandomSource): Workload {
  const bands = 6 + Math.floor(random() * 7);
  const bandSize = pick(random, [32, 64, 128]) * MiB;
  const hotBands = Math.floor(bands / 2);
  const levels = Array.from({ length: bands }, (_, i) =>
    i < hotBands
      ? 0.95 - (0.3 * i) / Math.max(1, hotBands - 1)
      : 0.35 - (0.3 * (i - hotBands)) / Math.max(1, bands - hotBands - 1));
  const phases = [0, 1].map(() => {
    const [offset] = placeApart(random, [bands * bandSize], DATA_SIZE, 0);
    const order = random() < 0.5 ? levels : [...levels].reverse();
    return { ranges: order.map((probability, i) => ({ offset: offset + i * bandSize, size: bandSize, probability })) };
  });
  return workloadOf('gradient', `${bands} bands of ${bandSize / MiB} MiB stepping from 0.95 to 0.05 (no level in 0.35..0.65)`, DATA_SIZE, phases, FOUR_S);
}

/** A hot set of 1..3 ranges (16..256 MiB) that hops to new places every 2 s. */
function hopping(random: RandomSource): Workload {
  const count = pick(random, [1, 2, 3]);
  const sizes = Array.from({ length: count }, () => pick(random, [16, 32, 64, 128, 256]) * MiB);
  const phases = [0, 1, 2, 3].map(() => {
    const offsets = placeApart(random, sizes, DATA_SIZE, 16 * MiB);
    return { ranges: offsets.map((offset, i) => ({ offset, size: sizes[i], probability: uniform(random, 0.85, 0.95) })) };
  });
  return workloadOf('hopping', `${count} hot ranges of 16..256 MiB hopping every 2 s`, DATA_SIZE, phases, 2_000_000);
}

/** A tiny hot range (1..8 MiB) in a mapping 2048..65536 times its size (16..64 GiB). */
function tinyHot(random: RandomSource): Workload {
  const dataSize = pick(random, [16, 32, 64]) * GiB;
  const size = pick(random, [1, 2, 4, 8]) * MiB;
  const phases = [0, 1].map(() => ({ ranges: [{ offset: pageDown(random() * (dataSize - size)), size, probability: uniform(random, 0.85, 0.95) }] }));
  return workloadOf('tiny-hot', `one hot range of ${size / MiB} MiB in ${dataSize / GiB} GiB`, dataSize, phases, FOUR_S);
}

/** Strided access: in a 256 MiB..1 GiB stretch, the first half (or quarter) of every 4..16 MiB is hot. */
function strided(random: RandomSource): Workload {
  const stretch = pick(random, [256, 512, 1024]) * MiB;
  const period = pick(random, [4, 8, 16]) * MiB;
  const hot = period / pick(random, [2, 4]);
  const phases = [0, 1].map(() => {
    const [offset] = placeApart(random, [stretch], DATA_SIZE, 0);
    const probability = uniform(random, 0.85, 0.95);
    return { ranges: Array.from({ length: stretch / period }, (_, i) => ({ offset: offset + i * period, size: hot, probability })) };
  });
  return workloadOf('strided', `${hot / MiB} MiB hot of every ${period / MiB} MiB over ${stretch / MiB} MiB`, DATA_SIZE, phases, FOUR_S);
}

/** The evaluation families, in report order. */
export const FAMILIES: readonly Family[] = [
  {
    name: 'many-islands',
    description: '3, 6, 12 or 20 hot islands of 8, 16, 32 or 64 MiB at random places in 4 GiB, moving after 4 s',
    phaseUs: FOUR_S,
    runUs: TWO_PHASES,
    workload: (seed) => islandsOf('many-islands', layoutRandom(seed), [3, 6, 12, 20], [8, 16, 32, 64].map((m) => m * MiB)),
  },
  {
    name: 'islands-12x8',
    description: '12 hot islands of 8 MiB at random places in 4 GiB, moving after 4 s',
    phaseUs: FOUR_S,
    runUs: TWO_PHASES,
    workload: (seed) => islandsOf('islands-12x8', layoutRandom(seed), [12], [8 * MiB]),
  },
  {
    name: 'edge-strips',
    description: '1-3 hot strips of 2..64 MiB ending or starting at an edge of the initial regions, moving after 4 s',
    phaseUs: FOUR_S,
    runUs: TWO_PHASES,
    workload: (seed) => edgeStrips(layoutRandom(seed)),
  },
  {
    name: 'gradient',
    description: '6-12 adjacent bands of 32..128 MiB stepping from 0.95 to 0.05 (none within 0.15 of the cut), moving after 4 s',
    phaseUs: FOUR_S,
    runUs: TWO_PHASES,
    workload: (seed) => gradient(layoutRandom(seed)),
  },
  {
    name: 'hopping',
    description: '1-3 hot ranges of 16..256 MiB hopping to new places every 2 s (4 phases)',
    phaseUs: 2_000_000,
    runUs: 8_000_000,
    workload: (seed) => hopping(layoutRandom(seed)),
  },
  {
    name: 'tiny-hot',
    description: 'one hot range of 1..8 MiB in a 16..64 GiB mapping, moving after 4 s',
    phaseUs: FOUR_S,
    runUs: TWO_PHASES,
    workload: (seed) => tinyHot(layoutRandom(seed)),
  },
  {
    name: 'strided',
    description: 'a half or a quarter of every 4..16 MiB hot over 256 MiB..1 GiB, moving after 4 s',
    phaseUs: FOUR_S,
    runUs: TWO_PHASES,
    workload: (seed) => strided(layoutRandom(seed)),
  },
];

/**
 * `family` as a monitor sees it when each of its sampling windows lasts `k` sampling
 * intervals instead of one (a loop that runs late): a page accessed with probability p per
 * interval is found accessed with 1 - (1 - p)^k. The hot threshold is mapped the same
 * way, so the ground truth (which bytes are hot) is unchanged.
 */
export function withLongWindows(family: Family, k: number): Family {
  const stretch = (p: number) => 1 - (1 - p) ** k;
  return {
    ...family,
    name: `${family.name} x${k} windows`,
    description: `${family.description}, sampled over windows ${k} times the sampling interval`,
    workload: (seed) => {
      const w = family.workload(seed);
      return {
        ...w,
        targets: w.targets.map((t) => ({
          ...t,
          baseProbability: stretch(t.baseProbability),
          hotThreshold: stretch(t.hotThreshold),
          phases: t.phases.map((ph) => ({ ...ph, ranges: ph.ranges.map((r) => ({ ...r, probability: stretch(r.probability) })) })),
        })),
      };
    },
  };
}

export function familyNamed(name: string): Family {
  const f = FAMILIES.find((x) => x.name === name) ?? (TUNING_PRESETS.includes(name) ? presetFamily(name) : undefined);
  if (!f) throw new Error(`no evaluation family named "${name}" (have: ${[...FAMILIES.map((x) => x.name), ...TUNING_PRESETS].join(', ')})`);
  return f;
}
