// The evaluation families (bench/eval-families.ts) as runs of the guest's workload program
// (test/guest/workload.c): the same layouts from the same layout seeds, scaled down to
// what the guest holds, for bench/guest-families.ts.
//
// How a simulated family maps to the guest:
// - The simulated data mapping (4 GiB, or 16..64 GiB for tiny-hot) becomes the workload's
//   anonymous mapping of GUEST_SCALE times fewer bytes, at most MAX_GUEST_MAPPING: 4 GiB
//   -> 256 MiB, 16..64 GiB -> 1 GiB. Every offset and size is scaled by the same factor
//   (rounded to pages), so each hot range keeps its fraction of the mapping and its
//   distance to the others in fractions: what DAMON's regions (fractions of the address
//   space split in tens, then in two or three) see is the same. Islands of 8..64 MiB are
//   0.5..4 MiB, tiny-hot's 1..8 MiB in 16..64 GiB are 16..512 KiB in 1 GiB (the same
//   2048..65536 ratios).
// - Each range keeps its simulated access probability per 5 ms sampling interval
//   (OFFSET+LENGTH@P: the workload touches each page of it once per 5 ms window with that
//   chance), so gradients keep their levels and the truth is the simulation's: a range is
//   hot when its probability is at least the working-set cut (0.5).
// - The simulation's cold background (every other page at 0.02 per interval) is left out:
//   drawing for every page of a 1 GiB mapping every 5 ms is more than the emulated CPU
//   does in that time. Cold pages are never touched after the start.
// - Phases end after PHASE_AGGREGATIONS aggregations of every monitor (not after the
//   simulated 2 or 4 s): the guest's intervals stretch under emulation.
// - edge-strips: the strips sit where the simulated layout's initial regions cut, scaled;
//   the guest process's own initial regions cut its mapping at nearly the same fractions
//   (its mapping is almost all of the middle of its three regions, as the simulated data
//   mapping is), but not exactly, so the strips are near the edges rather than on them.
import { PAGE_SIZE } from '../agent/engine/region.js';
import { PRESET_DATA_START } from '../agent/ops/synthetic-presets.js';
import { HELD_OUT_SEEDS, type Family } from './eval-families.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Simulated bytes per guest byte. */
export const GUEST_SCALE = 16;
/** The largest mapping a guest workload gets (the guest has GUEST_MEM_MIB). */
export const MAX_GUEST_MAPPING = 1 * GiB;
/** Guest memory for these workloads: the largest mapping, Node.js and two monitors. */
export const GUEST_MEM_MIB = 2560;
/** Held-out seeds the bench runs per family (the first of HELD_OUT_SEEDS). */
export const GUEST_SEEDS = HELD_OUT_SEEDS.slice(0, 2);
export const GUEST_QUICK_SEEDS = HELD_OUT_SEEDS.slice(0, 1);

export interface GuestRange {
  /** Offset in the workload's mapping, page aligned. */
  offset: number;
  /** Page aligned, > 0. */
  size: number;
  /** Chance that a page is accessed in a 5 ms sampling interval. */
  probability: number;
}

export interface GuestFamilyWorkload {
  family: string;
  seed: number;
  /** The simulated layout's description (its sizes are the simulated ones). */
  description: string;
  simulatedBytes: number;
  /** The workload's mapping: simulatedBytes / GUEST_SCALE, at most MAX_GUEST_MAPPING. */
  size: number;
  /** Sorted, disjoint ranges of each phase, in order. */
  phases: GuestRange[][];
}

const pageDown = (x: number) => Math.floor(x / PAGE_SIZE) * PAGE_SIZE;

/** The guest version of `family`'s layout for `seed`. */
export function guestWorkload(family: Family, seed: number): GuestFamilyWorkload {
  const w = family.workload(seed);
  if (w.targets.length !== 1) throw new Error(`${family.name}: expected one target, got ${w.targets.length}`);
  const t = w.targets[0];
  const data = t.layouts[0].mappings.find((m) => m.start === PRESET_DATA_START);
  if (data === undefined) throw new Error(`${family.name}: no data mapping at ${PRESET_DATA_START.toString(16)}`);
  const simulatedBytes = data.end - data.start;
  const size = pageDown(Math.min(simulatedBytes / GUEST_SCALE, MAX_GUEST_MAPPING));
  const factor = size / simulatedBytes;
  const phases = t.phases.map((ph, p) => {
    const out: GuestRange[] = [];
    for (const r of ph.ranges) {
      if (r.start < data.start || r.end > data.end) throw new Error(`${family.name} seed ${seed} phase ${p}: a range lies outside the data mapping`);
      // Ends scale like starts, so adjacent ranges stay adjacent and disjoint ones disjoint.
      const offset = pageDown((r.start - data.start) * factor);
      const end = Math.min(size, Math.max(offset + PAGE_SIZE, pageDown((r.end - data.start) * factor)));
      const prev = out[out.length - 1];
      if (prev !== undefined && offset < prev.offset + prev.size) throw new Error(`${family.name} seed ${seed} phase ${p}: ranges overlap once scaled`);
      out.push({ offset, size: end - offset, probability: r.probability });
    }
    return out;
  });
  return { family: family.name, seed, description: w.description, simulatedBytes, size, phases };
}

export interface WorkloadRunOptions {
  /** Upper bound of a phase; the driver ends phases earlier (SIGUSR1). */
  phaseMs: number;
  tlbFlushMs: number;
  pauseUs: number;
}

/** How a probability is written on the command line; the workload prints it back, and the truth reads that. */
export function formatProbability(p: number): string {
  if (!(p > 0 && p <= 1)) throw new RangeError(`probability must be in (0, 1], got ${p}`);
  return String(Number(p.toFixed(4)));
}

/** The workload program's arguments for `w` (small pages, each range at its probability). */
export function workloadArgs(w: GuestFamilyWorkload, o: WorkloadRunOptions): string[] {
  const bytes = (n: number) => (n % MiB === 0 ? `${n / MiB}M` : n % 1024 === 0 ? `${n / 1024}K` : String(n));
  return [
    '--size', bytes(w.size), '--thp', 'nohugepage', '--tlb-flush-ms', String(o.tlbFlushMs), '--pause-us', String(o.pauseUs),
    ...w.phases.flatMap((ph) => [
      '--phase',
      `${o.phaseMs}:${ph.length === 0 ? '-' : ph.map((r) => `${bytes(r.offset)}+${bytes(r.size)}@${formatProbability(r.probability)}`).join(',')}`,
    ]),
  ];
}
