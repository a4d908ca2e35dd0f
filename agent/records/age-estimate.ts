// Region ages for records read from a format that stores none (every binary version),
// so that they can be written where an age is required: damo 3.x's `report access` and
// `report heatmap` fail on a JSON record whose ages are null.
//
// The estimate follows DAMON's aging (mm/damon/core.c damon_merge_regions_of): after an
// aggregation a region's age goes up by one if its access count moved by at most the
// merge threshold since the last aggregation, else it restarts at 0; merged regions take
// the size-weighted mean age. Here a region's previous count and age are the
// size-weighted means over the bytes it shares with the target's previous record, and the
// threshold is DAMON's starting one, max_nr_accesses / 10 (at least 1). A region that
// shares no bytes with the previous record, and every region of a target's first record,
// gets age 0. The kernel's own ages can be higher (they started before the file did) or
// differ where its threshold had grown.

export interface AgedRegion {
  start: number;
  end: number;
  nrAccesses: number;
  age: number;
}

/** Ages for `regions`, given the same target's previous record (with its ages) or null. */
export function estimateAges(
  regions: readonly { start: number; end: number; nrAccesses: number }[],
  previous: readonly AgedRegion[] | null,
  maxNrAccesses: number,
): AgedRegion[] {
  const thres = Math.max(1, Math.floor(maxNrAccesses / 10));
  let j = 0;
  return regions.map((r) => {
    if (previous === null) return { ...r, age: 0 };
    while (j < previous.length && previous[j]!.end <= r.start) j++;
    let bytes = 0;
    let nr = 0;
    let age = 0;
    for (let k = j; k < previous.length && previous[k]!.start < r.end; k++) {
      const p = previous[k]!;
      const shared = Math.min(p.end, r.end) - Math.max(p.start, r.start);
      if (shared <= 0) continue;
      bytes += shared;
      nr += p.nrAccesses * shared;
      age += p.age * shared;
    }
    if (bytes === 0) return { ...r, age: 0 };
    const stable = Math.abs(r.nrAccesses - nr / bytes) <= thres;
    return { ...r, age: stable ? Math.round(age / bytes) + 1 : 0 };
  });
}
