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
function snapshotBytes(sec: bigint, nsec: bigint): number[] {
  return [
    ...s64(sec), ...s64(nsec), ...u32(2),
    ...u64(1234), ...u32(2),
    ...u64(0x5555_5555_4000), ...u64(0x5555_5555_8000), ...u32(3),
    ...u64(0x7ffd_0000_0000), ...u64(0x7ffd_0002_1000), ...u32(20),
    ...u64(2n ** 33n + 5n), ...u32(1),
    ...u64(2n ** 56n), ...u64(2n ** 56n + 2n ** 21n), ...u32(0),
  ];
}
/** The snapshot at its wall-clock end, as a file written by another tool may hold it. */
const SNAPSHOT_BYTES = snapshotBytes(1_700_000_001n, 250_000_042n);
/**
 * What the writer stores for `records`: on the file's recording clock, where the first
 * record starts at 0, the snapshot ends at 100 ms; before it, the targets' opening entry:
 * one zero-size region at each target's first address, ending where the snapshot starts.
 */
const WRITTEN_BYTES = [
  ...s64(0n), ...s64(0n), ...u32(2),
  ...u64(1234), ...u32(1), ...u64(0x5555_5555_4000), ...u64(0x5555_5555_4000), ...u32(0),
  ...u64(2n ** 33n + 5n), ...u32(1), ...u64(2n ** 56n), ...u64(2n ** 56n), ...u32(0),
  ...snapshotBytes(0n, 100_000_000n),
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
  assert.equal(HEADER_BYTES.length, 20);
  assert.equal(SNAPSHOT_BYTES.length, 20 + (8 + 4 + 2 * 20) + (8 + 4 + 20));
  assert.deepEqual([...readFileSync(path)], [...HEADER_BYTES, ...WRITTEN_BYTES]);
});

test('version 0: the same snapshot bytes with no header', async (t) => {
  const path = join(tempDir(t), 'v0.data');
  const w = await openResultWriter(path, { intervals: INTERVALS, version: 0 });
  await w.writeSnapshot(records);
  await w.close();
  assert.deepEqual([...readFileSync(path)], WRITTEN_BYTES);
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

const MS = 1_000_000n;

/** Per target, the end times of its entries in file order, and which are zero-size markers. */
function entriesByTarget(bytes: Buffer): Map<number, { endNs: bigint; marker: boolean }[]> {
  const out = new Map<number, { endNs: bigint; marker: boolean }[]>();
  for (const s of decodeBinary(bufferSource(bytes)).snapshots) {
    for (const e of s.entries) {
      const marker = e.nrRegions === 1 && e.regions[0]!.start === e.regions[0]!.end;
      out.set(e.targetId, [...(out.get(e.targetId) ?? []), { endNs: s.endNs, marker }]);
    }
  }
  return out;
}

test('binary times are on the recording clock: the first record starts at 0, far below 2^53 ns', async (t) => {
  const path = join(tempDir(t), 'clock.data');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  for (let k = 0n; k < 3n; k++) {
    await w.writeSnapshot(records.map((r) => ({ ...r, startNs: r.startNs + k * 100n * MS, endNs: r.endNs + k * 100n * MS })));
  }
  await w.close();
  const ends = decodeBinary(bufferSource(readFileSync(path))).snapshots.map((s) => s.endNs);
  assert.deepEqual(ends, [0n, 100n * MS, 200n * MS, 300n * MS]);
  assert.ok(ends.every((e) => e < 2n ** 53n));
});

test('every target has an opening entry, in time order, that gives damo each start exactly', async (t) => {
  const path = join(tempDir(t), 'open.data');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  const at = (k: bigint, rs: AggregationRecord[]) => rs.map((r) => ({ ...r, startNs: r.startNs + k * 100n * MS, endNs: r.endNs + k * 100n * MS }));
  const [a, b] = records as [AggregationRecord, AggregationRecord];
  const c: AggregationRecord = { ...b, targetId: 99, regions: [{ start: 4096, end: 8192, nrAccesses: 1, age: 0 }] };
  await w.writeSnapshot(at(0n, [a, b])); // b seen in this snapshot only
  await w.writeSnapshot(at(1n, [a]));
  await w.writeSnapshot(at(2n, [a, c])); // c comes in the last snapshot: seen once too
  await w.close();
  const bytes = readFileSync(path);
  const all = decodeBinary(bufferSource(bytes)).snapshots.map((s) => s.endNs);
  assert.deepEqual(all, [...all].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)), 'no snapshot ends before the one before it');
  const seq = entriesByTarget(bytes);
  for (const [id, l] of seq) {
    assert.ok(l.length >= 2, `target ${id} is in at least two snapshots, which damo needs`);
    assert.equal(l[0]!.marker, true, `target ${id} opens with a marker`);
    assert.equal(l.filter((x) => x.marker).length, 1);
  }
  // damo: the start of an entry is the previous end of its target; the opening entry ends
  // where the target's first record starts (on the file's clock, 0 = the first start)
  assert.deepEqual(seq.get(2 ** 33 + 5)!.map((x) => x.endNs), [0n, 100n * MS]);
  assert.deepEqual(seq.get(99)!.map((x) => x.endNs), [200n * MS, 300n * MS]);
  // this project's reader uses and drops the markers
  const got = await readResultFile(path);
  assert.deepEqual(got.snapshots.map((s) => s.records.map((r) => [r.targetId, r.startNs, r.endNs])), [
    [[1234, 0n, 100n * MS], [2 ** 33 + 5, 0n, 100n * MS]],
    [[1234, 100n * MS, 200n * MS]],
    [[1234, 200n * MS, 300n * MS], [99, 200n * MS, 300n * MS]],
  ]);
});

test('a target monitored again after a gap gets a marker where it restarts; back-to-back records get none', async (t) => {
  const path = join(tempDir(t), 'gap.data');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  const a = records[0]!;
  const t0 = a.startNs;
  await w.writeSnapshot([{ ...a, startNs: t0, endNs: t0 + 100n * MS }]);
  await w.writeSnapshot([{ ...a, startNs: t0 + 100n * MS, endNs: t0 + 200n * MS }]);
  await w.writeSnapshot([{ ...a, startNs: t0 + 900n * MS, endNs: t0 + 1000n * MS }]); // not monitored for 700 ms
  await w.close();
  assert.deepEqual(entriesByTarget(readFileSync(path)).get(1234), [
    { endNs: 0n, marker: true }, { endNs: 100n * MS, marker: false }, { endNs: 200n * MS, marker: false },
    { endNs: 900n * MS, marker: true }, { endNs: 1000n * MS, marker: false },
  ]);
  const got = await readResultFile(path);
  assert.deepEqual(got.snapshots.map((s) => [s.records[0]!.startNs, s.endNs]), [
    [0n, 100n * MS], [100n * MS, 200n * MS], [900n * MS, 1000n * MS],
  ]);
});

test('a file from an earlier writer, with a closing entry after a target\'s only snapshot, still reads', async (t) => {
  const path = join(tempDir(t), 'legacy.data');
  const closing = [
    ...s64(1_700_000_001n), ...s64(350_000_042n), ...u32(1),
    ...u64(2n ** 33n + 5n), ...u32(1), ...u64(2n ** 56n), ...u64(2n ** 56n), ...u32(0),
  ];
  writeFileSync(path, Buffer.from([...HEADER_BYTES, ...SNAPSHOT_BYTES, ...closing]));
  const got = await readResultFile(path);
  assert.deepEqual(got.snapshots.map((s) => s.records.map((r) => [r.targetId, r.startNs])), [
    [[1234, null], [2 ** 33 + 5, END_NS - 100n * MS]],
  ]);
});
