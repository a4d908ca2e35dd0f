// The "three regions" of a process's address space from /proc/PID/maps and the initial
// regions built on them: the vaddr operations' half of region setup (the kernel's
// __damon_va_three_regions and __damon_va_init_regions, static in mm/damon/vaddr.c),
// shared by page_idle and synthetic the way ops-common.c is shared.
//
// All addresses are page aligned; functions taking ranges check it and throw
// MappingError naming the offending value.
import { PAGE_SIZE, newRegion, type Region } from '../engine/region.js';
import { MappingError, checkRanges, type AddressRange } from '../engine/set-regions.js';

const MAPS_LINE = /^([0-9a-fA-F]+)-([0-9a-fA-F]+)\s+[-rwxsp]{4}\s+[0-9a-fA-F]+\s+[0-9a-fA-F]+:[0-9a-fA-F]+\s+\d+(?:\s+(.*))?$/;

function parseHexAddress(h: string, lineNo: number): number {
  const big = BigInt(`0x${h}`);
  if (big >= 1n << 64n) throw new MappingError(`maps line ${lineNo}: address 0x${h} exceeds 64 bits`);
  // Page-aligned values below 2^65 are exact in a double; alignment is checked by the caller.
  return Number(big);
}

/**
 * Parses /proc/PID/maps text into the process's mappings, in address order. Skips the
 * [vsyscall] gate area: it is not part of the process's own address space (the kernel's
 * VMA walk never sees it), and its huge distance from the stack would otherwise be taken
 * for the biggest gap. Throws MappingError naming the line for malformed input.
 */
export function parseMaps(text: string): AddressRange[] {
  const out: AddressRange[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const m = MAPS_LINE.exec(line);
    if (m === null) throw new MappingError(`maps line ${i + 1}: not "start-end perms offset dev inode [path]": "${line}"`);
    if ((m[3] ?? '').trim() === '[vsyscall]') continue;
    const start = parseHexAddress(m[1], i + 1);
    const end = parseHexAddress(m[2], i + 1);
    if (start % PAGE_SIZE !== 0 || end % PAGE_SIZE !== 0) {
      throw new MappingError(`maps line ${i + 1}: ${m[1]}-${m[2]} is not page aligned`);
    }
    if (end <= start) throw new MappingError(`maps line ${i + 1}: empty or reversed mapping ${m[1]}-${m[2]}`);
    const prev = out[out.length - 1];
    if (prev !== undefined && start < prev.end) {
      throw new MappingError(`maps line ${i + 1}: ${m[1]}-${m[2]} overlaps or precedes the mapping before it`);
    }
    out.push({ start, end });
  }
  return out;
}

/**
 * The three regions of a process from its mappings (sorted, non-overlapping): the two
 * biggest gaps between consecutive mappings cut [first start, last end) into three. On
 * equal gaps the lower one wins, as in the kernel. Throws MappingError when there are
 * fewer than two gaps.
 */
export function threeRegions(mappings: readonly AddressRange[]): [AddressRange, AddressRange, AddressRange] {
  checkRanges(mappings, 'mappings');
  let first: AddressRange | undefined;
  let second: AddressRange | undefined;
  for (let i = 1; i < mappings.length; i++) {
    const gap = { start: mappings[i - 1].end, end: mappings[i].start };
    const sz = gap.end - gap.start;
    if (sz === 0) continue;
    if (first === undefined || sz > first.end - first.start) {
      second = first;
      first = gap;
    } else if (second === undefined || sz > second.end - second.start) {
      second = gap;
    }
  }
  if (first === undefined || second === undefined) {
    throw new MappingError(
      `three regions: ${mappings.length} mapping(s) with ${first === undefined ? 0 : 1} gap(s) between them; at least 2 gaps are needed`,
    );
  }
  if (first.start > second.start) [first, second] = [second, first];
  return [
    { start: mappings[0].start, end: first.start },
    { start: first.end, end: second.start },
    { start: second.end, end: mappings[mappings.length - 1].end },
  ];
}

/** threeRegions(parseMaps(text)): the three regions of a process from its maps text. */
export function threeRegionsOfMaps(text: string): [AddressRange, AddressRange, AddressRange] {
  return threeRegions(parseMaps(text));
}

/**
 * Initial regions of a target covering `ranges` (usually the three regions): exactly
 * minNrRegions regions in all, split evenly. Each range gets at least one region and at
 * most one per page; the pieces go to the ranges so that the largest region is as small
 * as possible (repeatedly to the range whose regions are biggest, lower address on
 * ties), and within a range region sizes differ by at most one page (the lower pieces
 * get the extra pages). So there are fewer than minNrRegions only when the ranges hold
 * fewer pages, and more only when minNrRegions is below ranges.length. Unlike the
 * kernel's even split (floor(size / (total / min)) pieces per range, remainder in the
 * last piece), the total is exactly minNrRegions and never less: a region may exceed
 * total / minNrRegions by the rounding of uneven ranges instead.
 */
export function initRegions(ranges: readonly AddressRange[], minNrRegions: number): Region[] {
  checkRanges(ranges);
  if (ranges.length === 0) throw new MappingError('initial regions: no ranges to cover');
  if (!Number.isSafeInteger(minNrRegions) || minNrRegions < 1) {
    throw new MappingError(`initial regions: min_nr_regions must be a positive integer, got ${minNrRegions}`);
  }
  const pages = ranges.map((r) => (r.end - r.start) / PAGE_SIZE);
  const totalPages = pages.reduce((a, b) => a + b, 0);
  const pieces = ranges.map(() => 1);
  let left = Math.min(minNrRegions, totalPages) - ranges.length;
  while (left > 0) {
    let best = -1;
    for (let i = 0; i < ranges.length; i++) {
      if (pieces[i] >= pages[i]) continue;
      // pages[i]/pieces[i] > pages[best]/pieces[best], without division.
      if (best < 0 || pages[i] * pieces[best] > pages[best] * pieces[i]) best = i;
    }
    pieces[best]++;
    left--;
  }
  const out: Region[] = [];
  for (let i = 0; i < ranges.length; i++) {
    const base = Math.floor(pages[i] / pieces[i]);
    const extra = pages[i] % pieces[i];
    let at = ranges[i].start;
    for (let k = 0; k < pieces[i]; k++) {
      const end = at + (base + (k < extra ? 1 : 0)) * PAGE_SIZE;
      out.push(newRegion(at, end));
      at = end;
    }
  }
  return out;
}

