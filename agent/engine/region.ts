// A monitoring region: [start, end) of one target's address space, page aligned.
// Addresses are JS numbers: page-aligned values up to 2^65 are exact in a double, and
// user-space addresses stay below 2^57.
export const PAGE_SIZE = 4096;

export interface Region {
  start: number;
  end: number;
  /** Sampled accesses in the current aggregation interval. */
  nrAccesses: number;
  /** nrAccesses of the previous aggregation interval (kept for aging). */
  lastNrAccesses: number;
  /** Aggregation intervals that this region's access frequency stayed the same. */
  age: number;
  /** The address sampled in the current sampling interval; -1 when none is prepared. */
  samplingAddr: number;
}

/** One monitoring target: a process (id = pid) or a synthetic address space. */
export interface Target {
  id: number;
  /** Sorted by address, never overlapping. */
  regions: Region[];
}

export function newRegion(start: number, end: number): Region {
  return { start, end, nrAccesses: 0, lastNrAccesses: 0, age: 0, samplingAddr: -1 };
}

export function regionSize(r: { start: number; end: number }): number {
  return r.end - r.start;
}
