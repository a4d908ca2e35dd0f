// /proc/PID/maps parsing, the three regions, the initial split (agent/ops/vaddr-regions.ts)
// and the update (damon_set_regions, agent/engine/set-regions.ts), against cases computed
// by hand. Addresses are in pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAGE_SIZE, type Region } from '../../agent/engine/region.js';
import { MappingError, setRegions, type AddressRange } from '../../agent/engine/set-regions.js';
import { initRegions, parseMaps, threeRegions, threeRegionsOfMaps } from '../../agent/ops/vaddr-regions.js';

const P = PAGE_SIZE;

function range(startPage: number, endPage: number): AddressRange {
  return { start: startPage * P, end: endPage * P };
}

function reg(startPage: number, endPage: number, nrAccesses = 0, lastNrAccesses = 0, age = 0): Region {
  return { start: startPage * P, end: endPage * P, nrAccesses, lastNrAccesses, age, samplingAddr: -1 };
}

/** [startPage, endPage] of each range or region. */
function pages(rs: readonly AddressRange[]): [number, number][] {
  return rs.map((r) => [r.start / P, r.end / P]);
}

/** [startPage, endPage, nrAccesses, lastNrAccesses, age] of each region. */
function shape(regions: readonly Region[]): number[][] {
  return regions.map((r) => [r.start / P, r.end / P, r.nrAccesses, r.lastNrAccesses, r.age]);
}

const MAPS = `\
55d0c8a00000-55d0c8a02000 r--p 00000000 08:01 1234                       /usr/bin/my prog
55d0c8a02000-55d0c8a07000 r-xp 00002000 08:01 1234                       /usr/bin/my prog
55d0c9c4e000-55d0c9c6f000 rw-p 00000000 00:00 0                          [heap]

7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0
7ffd5a1e1000-7ffd5a202000 rw-p 00000000 00:00 0                          [stack]
7ffd5a3f0000-7ffd5a3f4000 r--p 00000000 00:00 0                          [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`;

test('maps: mappings in order, blank lines and [vsyscall] skipped, paths with spaces accepted', () => {
  assert.deepEqual(parseMaps(MAPS), [
    { start: 0x55d0c8a00000, end: 0x55d0c8a02000 },
    { start: 0x55d0c8a02000, end: 0x55d0c8a07000 },
    { start: 0x55d0c9c4e000, end: 0x55d0c9c6f000 },
    { start: 0x7f3a1c000000, end: 0x7f3a1c021000 },
    { start: 0x7ffd5a1e1000, end: 0x7ffd5a202000 },
    { start: 0x7ffd5a3f0000, end: 0x7ffd5a3f4000 },
  ]);
});

test('maps: bad lines are errors that name the line', () => {
  assert.throws(() => parseMaps('00400000-00401000 r-xp 00000000 08:01 1 /bin/x\ngarbage\n'), (e: unknown) =>
    e instanceof MappingError && /line 2/.test(e.message));
  assert.throws(() => parseMaps('00400010-00401000 r-xp 00000000 08:01 1 /bin/x'), /line 1: .*not page aligned/);
  assert.throws(() => parseMaps('00401000-00400000 r-xp 00000000 08:01 1 /bin/x'), /line 1: empty or reversed/);
  assert.throws(
    () => parseMaps('00400000-00402000 r-xp 00000000 08:01 1 /bin/x\n00401000-00403000 r-xp 00000000 08:01 1 /bin/x'),
    /line 2: .*overlaps/,
  );
});

test('three regions: the two biggest gaps cut the address space', () => {
  // Gaps: 20-50 (30 pages), 60-61 (1), 70-200 (130); 10-10 between adjacent mappings is none.
  const mappings = [range(0, 10), range(10, 20), range(50, 60), range(61, 70), range(200, 210)];
  assert.deepEqual(pages(threeRegions(mappings)), [[0, 20], [50, 70], [200, 210]]);
  // From the sample maps: the biggest gaps are heap..mmap and mmap..stack.
  assert.deepEqual(threeRegionsOfMaps(MAPS), [
    { start: 0x55d0c8a00000, end: 0x55d0c9c6f000 },
    { start: 0x7f3a1c000000, end: 0x7f3a1c021000 },
    { start: 0x7ffd5a1e1000, end: 0x7ffd5a3f4000 },
  ]);
});

test('three regions: on equal gaps the lower ones win', () => {
  const mappings = [range(0, 1), range(11, 12), range(22, 23), range(33, 34)];
  assert.deepEqual(pages(threeRegions(mappings)), [[0, 1], [11, 12], [22, 34]]);
});

test('three regions: fewer than two gaps is an error that says so', () => {
  assert.throws(() => threeRegions([range(0, 1), range(5, 6)]), /1 gap\(s\).*at least 2 gaps/);
  assert.throws(() => threeRegions([range(0, 1), range(1, 2), range(2, 3)]), /0 gap\(s\)/);
  assert.throws(() => threeRegions([range(5, 6), range(0, 1)]), /mappings\[1\].*overlaps or precedes/);
});

test('initial regions: min_nr_regions in all, to the ranges with the biggest regions, evenly', () => {
  // 20, 20 and 10 pages, 10 regions: pieces go 1,1,1 -> 2,1,1 -> 2,2,1 -> 3,2,1 -> 3,3,1
  // -> 3,3,2 -> 4,3,2 -> 4,4,2: every region 5 pages.
  const out = initRegions([range(0, 20), range(50, 70), range(200, 210)], 10);
  assert.deepEqual(pages(out), [
    [0, 5], [5, 10], [10, 15], [15, 20],
    [50, 55], [55, 60], [60, 65], [65, 70],
    [200, 205], [205, 210],
  ]);
  assert.ok(out.every((r) => r.nrAccesses === 0 && r.lastNrAccesses === 0 && r.age === 0 && r.samplingAddr === -1));
});

test('initial regions: uneven ranges get at least one region each; sizes within a range differ by a page at most', () => {
  // 7, 3 and 1 pages, 5 regions: 1,1,1 -> 2,1,1 (7/2 = 3.5 > 3) -> 3,1,1; 7 pages in 3 = 3+2+2.
  assert.deepEqual(pages(initRegions([range(0, 7), range(10, 13), range(20, 21)], 5)), [
    [0, 3], [3, 5], [5, 7], [10, 13], [20, 21],
  ]);
  // Fewer pages (4) than min_nr_regions: one region per page.
  assert.deepEqual(pages(initRegions([range(0, 1), range(2, 3), range(4, 6)], 10)), [[0, 1], [2, 3], [4, 5], [5, 6]]);
  assert.throws(() => initRegions([range(0, 1)], 0), /min_nr_regions must be a positive integer/);
  assert.throws(() => initRegions([{ start: 1, end: P }], 3), /ranges\[0\].*not aligned/);
});

test('update: regions are stretched or trimmed to the range bounds', () => {
  const regions = [reg(0, 10, 1, 2, 3), reg(10, 20, 4, 5, 6), reg(20, 30, 7, 8, 9)];
  assert.deepEqual(shape(setRegions(regions, [range(5, 25)])), [[5, 10, 1, 2, 3], [10, 20, 4, 5, 6], [20, 25, 7, 8, 9]]);
  assert.deepEqual(shape(setRegions([reg(10, 20, 1), reg(20, 30, 2)], [range(0, 50)])), [[0, 20, 1, 0, 0], [20, 50, 2, 0, 0]]);
  assert.equal(regions[0].start, 0, 'the input is not modified');
});

test('update: regions outside are removed; a range without regions gets a new one', () => {
  const regions = [reg(0, 10, 1, 1, 1), reg(10, 20, 2, 2, 2), reg(40, 50, 3, 3, 3)];
  // [10,20) intersects no new range: removed. [30,35) has no region: a new one.
  assert.deepEqual(shape(setRegions(regions, [range(0, 5), range(30, 35), range(45, 60)])), [
    [0, 5, 1, 1, 1],
    [30, 35, 0, 0, 0],
    [45, 60, 3, 3, 3],
  ]);
});

test('update: a region across a new gap stays with the first range; holes are filled', () => {
  // [0,100) intersects all three ranges: it is trimmed to the first, the others get new regions.
  assert.deepEqual(shape(setRegions([reg(0, 100, 7, 7, 7)], [range(0, 10), range(20, 30), range(40, 100)])), [
    [0, 10, 7, 7, 7],
    [20, 30, 0, 0, 0],
    [40, 100, 0, 0, 0],
  ]);
  // An old gap now inside a range becomes a new region between the old ones.
  assert.deepEqual(shape(setRegions([reg(0, 10, 1), reg(30, 40, 2)], [range(0, 40)])), [
    [0, 10, 1, 0, 0],
    [10, 30, 0, 0, 0],
    [30, 40, 2, 0, 0],
  ]);
});

test('update: a sampling address left outside its region is cleared', () => {
  const r = { ...reg(0, 10), samplingAddr: 8 * P };
  const [out] = setRegions([r], [range(0, 5)]);
  assert.equal(out.samplingAddr, -1);
  const [kept] = setRegions([{ ...r, samplingAddr: 2 * P }], [range(0, 5)]);
  assert.equal(kept.samplingAddr, 2 * P);
});
