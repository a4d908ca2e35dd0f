// Fitting a target's regions to new address ranges (the kernel's damon_set_regions, a
// core function): what operations call from their update once they know the ranges. How
// the ranges of an address space are found is the operations' business (ops/vaddr-regions.ts).
//
// All addresses are page aligned; functions taking ranges check it and throw
// MappingError naming the offending value.
import { PAGE_SIZE, newRegion, type Region } from './region.js';

/** [start, end) of an address space, page aligned. */
export interface AddressRange {
  start: number;
  end: number;
}

/** A bad /proc/PID/maps text or a bad list of ranges; says which line or range. */
export class MappingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MappingError';
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/**
 * Checks that `ranges` are non-empty, page aligned, sorted and non-overlapping; throws
 * MappingError naming `what`[index] otherwise.
 */
export function checkRanges(ranges: readonly AddressRange[], what = 'ranges'): void {
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i];
    const name = `${what}[${i}]`;
    if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end) || r.start < 0) {
      throw new MappingError(`${name}: start and end must be non-negative integers, got ${r.start}-${r.end}`);
    }
    if (r.start % PAGE_SIZE !== 0 || r.end % PAGE_SIZE !== 0) {
      throw new MappingError(`${name}: ${hex(r.start)}-${hex(r.end)} is not aligned to the ${PAGE_SIZE}-byte page`);
    }
    if (r.end <= r.start) {
      throw new MappingError(`${name}: empty or reversed range ${hex(r.start)}-${hex(r.end)}`);
    }
    if (i > 0 && r.start < ranges[i - 1].end) {
      throw new MappingError(
        `${name}: ${hex(r.start)}-${hex(r.end)} overlaps or precedes ${what}[${i - 1}] ending at ${hex(ranges[i - 1].end)}`,
      );
    }
  }
}

/**
 * Fits a target's regions to new ranges (the kernel's damon_set_regions), keeping what
 * was learnt where the address space did not change: regions intersecting no range are
 * removed; each remaining region belongs to the first range it intersects; the first
 * and last regions of a range are stretched or trimmed to its bounds and holes between
 * its regions are filled with new regions; a range without regions gets one new region
 * covering it. New regions start with nrAccesses, lastNrAccesses and age 0. Returns the
 * new regions; the input is not modified.
 */
export function setRegions(regions: readonly Region[], ranges: readonly AddressRange[]): Region[] {
  checkRanges(ranges);
  const kept = regions
    .filter((r) => ranges.some((g) => r.start < g.end && g.start < r.end))
    .map((r) => ({ ...r }));
  const out: Region[] = [];
  let idx = 0;
  for (const range of ranges) {
    const mine: Region[] = [];
    // Every kept region starting below range.end and not taken by an earlier range
    // intersects this one (it intersects some range and starts after the earlier ones).
    while (idx < kept.length && kept[idx].start < range.end) mine.push(kept[idx++]);
    if (mine.length === 0) {
      out.push(newRegion(range.start, range.end));
      continue;
    }
    mine[0].start = range.start;
    mine[mine.length - 1].end = range.end;
    for (let i = 0; i < mine.length; i++) {
      const r = mine[i];
      if (r.samplingAddr !== -1 && (r.samplingAddr < r.start || r.samplingAddr >= r.end)) r.samplingAddr = -1;
      out.push(r);
      const next = mine[i + 1];
      if (next !== undefined && r.end !== next.start) out.push(newRegion(r.end, next.start));
    }
  }
  return out;
}
