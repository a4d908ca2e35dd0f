// The binary format byte for byte, against bytes built by hand from the format's
// definition (shared/reference/result-file.md), not by the encoder under test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { readResultFile } from '../../agent/records/result-reader.js';
import { decodeBinary, bufferSource } from '../../agent/records/binary-layout.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { INTERVALS, MAX_NR, tempDir } from './result-file-fixtures.js';

// Little-endian fields, written out byte by byte.
function le(value: bigint, bytes: number): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(bytes * 8, value);
  for (let i = 0; i < bytes; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}
const s32 = (v: number) => le(BigInt(v), 4);
const u32 = (v: number) => le(BigInt(v), 4);
const s64 = (v: bigint) => le(v, 8);
const u64 = (v: number | bigint) => le(BigInt(v), 8);
const ascii = (s: string) => [...Buffer.from(s, 'ascii')];

const END_NS = 1_700_000_001_250_000_042n; // tv_sec 1700000001, tv_nsec 250000042

const records: AggregationRecord[] = [
  {
    targetId: 1234, startNs: END_NS - 100_000_000n, endNs: END_NS, maxNrAccesses: MAX_NR,
    regions: [
      { start: 0x5555_5555_4000, end: 0x5555_5555_8000, nrAccesses: 3, age: 9 },
      { start: 0x7ffd_0000_0000, end: 0x7ffd_0002_1000, nrAccesses: 20, age: 0 },
    ],
  },
  {
    targetId: 2 ** 33 + 5, startNs: END_NS - 100_000_000n, endNs: END_NS, maxNrAccesses: MAX_NR,
    regions: [{ start: 2 ** 56, end: 2 ** 56 + 2 ** 21, nrAccesses: 0, age: 1 }],
  },
];

// tv_sec, tv_nsec, nr_targets, then per target: id, nr_regions, regions of 20 bytes.
const SNAPSHOT_BYTES = [
  ...s64(1_700_000_001n), ...s64(250_000_042n), ...u32(2),
  ...u64(1234), ...u32(2),
  ...u64(0x5555_5555_4000), ...u64(0x5555_5555_8000), ...u32(3),
  ...u64(0x7ffd_0000_0000), ...u64(0x7ffd_0002_1000), ...u32(20),
  ...u64(2n ** 33n + 5n), ...u32(1),
  ...u64(2n ** 56n), ...u64(2n ** 56n + 2n ** 21n), ...u32(0),
];
const HEADER_BYTES = [...ascii('damon_recfmt_ver'), ...s32(2)];

test('the host is little-endian, so "native order" below means little-endian', () => {
  assert.equal(endianness(), 'LE');
});

test('version 2: the header, then tv_sec/tv_nsec of the interval END, u64 ids, 20-byte regions', async (t) => {
  const path = join(tempDir(t), 'v2.data');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  await w.writeSnapshot(records);
  await w.close();
  const bytes = readFileSync(path);
  assert.equal(HEADER_BYTES.length, 20);
  assert.equal(SNAPSHOT_BYTES.length, 20 + (8 + 4 + 2 * 20) + (8 + 4 + 20));
  const expected = [...HEADER_BYTES, ...SNAPSHOT_BYTES];
  assert.deepEqual([...bytes.subarray(0, expected.length)], expected);
  // then close()'s closing entries for the two targets seen once (tested below)
  assert.equal(bytes.length, expected.length + 20 + 2 * (8 + 4 + 20));
});

test('version 0: the same snapshot bytes with no header', async (t) => {
  const path = join(tempDir(t), 'v0.data');
  const w = await openResultWriter(path, { intervals: INTERVALS, version: 0 });
  await w.writeSnapshot(records);
  await w.close();
  assert.deepEqual([...readFileSync(path).subarray(0, SNAPSHOT_BYTES.length)], SNAPSHOT_BYTES);
});

test('the reader decodes hand-built version 2 and version 0 files', async (t) => {
  const dir = tempDir(t);
  for (const [name, bytes] of [['h2', [...HEADER_BYTES, ...SNAPSHOT_BYTES]], ['h0', SNAPSHOT_BYTES]] as const) {
    writeFileSync(join(dir, name), Buffer.from(bytes));
    const got = await readResultFile(join(dir, name), { intervals: INTERVALS });
    assert.equal(got.version, name === 'h2' ? 2 : 0);
    assert.equal(got.snapshots.length, 1);
    assert.equal(got.snapshots[0]!.endNs, END_NS);
    assert.deepEqual(
      got.snapshots[0]!.records.map((r) => [r.targetId, r.regions.map((g) => [g.start, g.end, g.nrAccesses, g.age])]),
      records.map((r) => [r.targetId, r.regions.map((g) => [g.start, g.end, g.nrAccesses, null])]),
    );
  }
});

test('version 1 stores s32 target ids; any other header value reads as version 2, as damo reads it', async (t) => {
  const dir = tempDir(t);
  const v1 = [
    ...ascii('damon_recfmt_ver'), ...s32(1),
    ...s64(10n), ...s64(5n), ...u32(1), ...s32(-7), ...u32(1), ...u64(4096), ...u64(8192), ...u32(4),
    ...s64(11n), ...s64(5n), ...u32(1), ...s32(-7), ...u32(0),
  ];
  writeFileSync(join(dir, 'v1'), Buffer.from(v1));
  const got1 = await readResultFile(join(dir, 'v1'));
  assert.equal(got1.version, 1);
  assert.deepEqual(got1.snapshots.map((s) => [s.endNs, s.records[0]!.targetId, s.records[0]!.regions.length]), [
    [10_000_000_005n, -7, 1],
    [11_000_000_005n, -7, 0],
  ]);
  const v3 = [...ascii('damon_recfmt_ver'), ...s32(3), ...SNAPSHOT_BYTES];
  writeFileSync(join(dir, 'v3'), Buffer.from(v3));
  const got3 = await readResultFile(join(dir, 'v3'));
  assert.equal(got3.version, 3);
  assert.equal(got3.snapshots[0]!.records[1]!.targetId, 2 ** 33 + 5);
});

test('a target seen in one snapshot gets a closing entry that lets damo derive its start', async (t) => {
  const path = join(tempDir(t), 'close.data');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  // target 1234 in two snapshots, target 2^33+5 only in the first
  const second = { ...records[0]!, startNs: END_NS, endNs: END_NS + 100_000_000n };
  await w.writeSnapshot(records);
  await w.writeSnapshot([second]);
  await w.close();
  const bytes = readFileSync(path);
  const closing = [
    // end + (end - start) = END_NS + 100 ms, one target, one zero-size region at its first address
    ...s64(1_700_000_001n), ...s64(350_000_042n), ...u32(1),
    ...u64(2n ** 33n + 5n), ...u32(1), ...u64(2n ** 56n), ...u64(2n ** 56n), ...u32(0),
  ];
  assert.deepEqual([...bytes.subarray(bytes.length - closing.length)], closing);
  // damo derives the first start as first end - (last end - first end) / (n - 1)
  const raw = decodeBinary(bufferSource(bytes));
  const ends = raw.snapshots.filter((s) => s.entries.some((e) => e.targetId === 2 ** 33 + 5)).map((s) => s.endNs);
  assert.equal(ends[0]! - (ends[1]! - ends[0]!), records[1]!.startNs);
  // this project's reader uses and drops the closing entry
  const got = await readResultFile(path);
  assert.deepEqual(got.snapshots.map((s) => s.records.map((r) => [r.targetId, r.startNs, r.endNs])), [
    [[1234, END_NS - 100_000_000n, END_NS], [2 ** 33 + 5, END_NS - 100_000_000n, END_NS]],
    [[1234, END_NS, END_NS + 100_000_000n]],
  ]);
});

test('targets in two or more snapshots get no closing entry', async (t) => {
  const path = join(tempDir(t), 'two.data');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  await w.writeSnapshot(records);
  await w.writeSnapshot(records.map((r) => ({ ...r, startNs: END_NS, endNs: END_NS + 100_000_000n })));
  await w.close();
  assert.equal(readFileSync(path).length, 20 + 2 * SNAPSHOT_BYTES.length);
});
