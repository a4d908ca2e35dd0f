// How many regions a sampling interval can afford to check, from what checks cost.
//
// Why. The kernel bounds DAMON's overhead by max_nr_regions: one check per region per
// sampling interval. A check from user space (pagemap, then the page_idle bitmap, whose
// every read walks the reverse mappings of the idle pages in a 64-frame word) costs
// several times an in-kernel page table walk, and the refined split (adjust-refined.ts)
// spends more of the region budget than the kernel's rule does. Where checks are slow
// (an emulated CPU, a busy host), that made sampling intervals run 2-3 times their
// configured length: windows that long read moderately accessed memory as hot, and
// aggregations that should take 100 ms took 300. So the refined split also stays within
// what CHECK_TIME_SHARE of a sampling interval can check, at the cost the last
// aggregations measured, but never below what the kernel's rule would check (the
// context's splitFloor): the budget curbs only what the refined split adds beyond the
// kernel's. On hardware where checks are cheap the bound is max_nr_regions as before.
// The kernel's rule ('kernel' adjustment) is left as it is.
//
// The cost is measured by the operations that run the sampling intervals themselves
// (sampleAggregation's busyUs: time spent checking, sleeps excluded); operations that
// do not measure it (the synthetic ones, in virtual time) leave the bound at
// max_nr_regions.

/** Share of a sampling interval that the checks of all regions may take. */
export const CHECK_TIME_SHARE = 0.5;

/** Weight of the newest aggregation's cost in the running estimate. */
const NEW_WEIGHT = 0.5;

export class CheckCost {
  private usPerCheck: number | undefined;

  /** One batch of sampling intervals: `busyUs` spent on `samples` x `regions` checks. */
  observe(busyUs: number, samples: number, regions: number): void {
    const checks = samples * regions;
    if (!(checks > 0) || !(busyUs >= 0) || !Number.isFinite(busyUs)) return;
    const x = busyUs / checks;
    this.usPerCheck = this.usPerCheck === undefined ? x : NEW_WEIGHT * x + (1 - NEW_WEIGHT) * this.usPerCheck;
  }

  /** Microseconds per region checked, once measured. */
  get perCheckUs(): number | undefined {
    return this.usPerCheck;
  }

  /**
   * The most regions the split may leave for a sampling interval of `samplingUs`: what
   * CHECK_TIME_SHARE of it affords at the measured cost, within [floor, maxNrRegions]
   * (floor: the fewest the split needs to make progress; max when nothing was measured).
   */
  affordableRegions(samplingUs: number, maxNrRegions: number, floor: number): number {
    if (this.usPerCheck === undefined || this.usPerCheck <= 0) return maxNrRegions;
    const afford = Math.floor((CHECK_TIME_SHARE * samplingUs) / this.usPerCheck);
    return Math.min(maxNrRegions, Math.max(floor, afford));
  }
}
