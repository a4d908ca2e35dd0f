// Recorded data with known access patterns for the reports' golden tests: what each
// record holds is stated here, so the tests can say where the picture must be hot and
// what the working set must be without going through the code under test.
import type { AggregationRecord } from '../../agent/records/record.js';
import type { ResultIntervals } from '../../agent/records/result-format.js';

export const MiB = 2 ** 20;
/** Default DAMON intervals: max nr_accesses 20. */
export const INTERVALS: ResultIntervals = { sampleUs: 5000, aggrUs: 100_000, opsUpdateUs: 1_000_000 };
export const MAX_NR = 20;
export const AGGR_NS = 100_000_000n;
/** Wall-clock start of every pattern. */
export const T0 = BigInt(Date.parse('2026-12-01T10:00:00Z')) * 1_000_000n;

/** A process's heap-like data mapping, low; its stack ~42 TiB above (the gap a heatmap must cut). */
export const DATA = 0x5555_5555_4000;
export const DATA_SIZE = 64 * MiB;
export const STACK = 0x7fff_fff0_0000;
export const STACK_SIZE = 1 * MiB;

type Region = AggregationRecord['regions'][number];
const region = (start: number, end: number, nrAccesses: number): Region => ({ start, end, nrAccesses, age: 0 });

function recordAt(i: number, regions: Region[], targetId = 0): AggregationRecord {
  return {
    targetId,
    startNs: T0 + BigInt(i) * AGGR_NS,
    endNs: T0 + BigInt(i + 1) * AGGR_NS,
    maxNrAccesses: MAX_NR,
    regions: regions.filter((r) => r.end > r.start),
  };
}

/** hotBand: the band [DATA+24MiB, DATA+32MiB) is accessed at every sample. */
export const BAND = { start: DATA + 24 * MiB, end: DATA + 32 * MiB };
export const HOT_BAND_RECORDS = 60;

/**
 * 60 records of 100 ms: below the band nr_accesses 1, the band 20 (every sample), above
 * it 0; the stack 2. Working set: 33 MiB at --acc_thres 1 (24 + 8 + 1), 8 MiB at 10.
 */
export function hotBand(): AggregationRecord[] {
  return Array.from({ length: HOT_BAND_RECORDS }, (_, i) =>
    recordAt(i, [
      region(DATA, BAND.start, 1),
      region(BAND.start, BAND.end, MAX_NR),
      region(BAND.end, DATA + DATA_SIZE, 0),
      region(STACK, STACK + STACK_SIZE, 2),
    ]),
  );
}

/** movingHotSet: 8 phases of 1 s (10 records each). */
export const PHASES = 8;
export const PER_PHASE = 10;
export const HOT_SIZE = 8 * MiB;

/** Where the hot set is in phase k: 8 MiB at DATA + k × 8 MiB. */
export function hotSetOf(k: number): { start: number; end: number } {
  return { start: DATA + k * HOT_SIZE, end: DATA + (k + 1) * HOT_SIZE };
}

/**
 * In phase k the hot set (nr_accesses 20) sits at hotSetOf(k), followed by k MiB of warm
 * memory (nr_accesses 5); the rest is idle. Working set in phase k: 8 + k MiB at
 * --acc_thres 1..5, 8 MiB at 6..20. No stack: one mapped span.
 */
export function movingHotSet(): AggregationRecord[] {
  const out: AggregationRecord[] = [];
  for (let k = 0; k < PHASES; k++) {
    const hot = hotSetOf(k);
    for (let j = 0; j < PER_PHASE; j++) {
      out.push(
        recordAt(k * PER_PHASE + j, [
          region(DATA, hot.start, 0),
          region(hot.start, hot.end, MAX_NR),
          region(hot.end, hot.end + k * MiB, 5),
          region(hot.end + k * MiB, DATA + DATA_SIZE, 0),
        ]),
      );
    }
  }
  return out;
}
