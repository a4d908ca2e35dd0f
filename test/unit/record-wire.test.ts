// Records on the wire: packed regions round-trip exactly for any uint64 addresses and
// uint32 counts (unaligned, unsorted, up to 2^64-1), empty records too; the former plain
// form still decodes; malformed packing is refused; DAMON-like records stay small.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AggregationRecord, type Region } from '../../gen/damon/v1/damon.js';
import { RecordWireError, decodeRecord, encodePlainRecord, encodeRecord, encodeRecordOfNumbers, packRegions, unpackRegions, withDroppedBefore } from '../../common/record-wire.js';

const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 2 ** 32 - 1;

function rec(regions: Region[], o: Partial<AggregationRecord> = {}): AggregationRecord {
  return {
    sessionId: 's1', host: 'h.example', pid: 4242, startTimeNs: 1n, endTimeNs: 2n, maxNrAccesses: 20, regions,
    operations: 'page_idle', sequence: 9n, agentInstance: 'inst', droppedBefore: 0n, packed: undefined, samplingIntervalUs: undefined, ...o,
  };
}

const anyRegion = fc.record({
  start: fc.bigInt({ min: 0n, max: U64_MAX }),
  end: fc.bigInt({ min: 0n, max: U64_MAX }),
  nrAccesses: fc.integer({ min: 0, max: U32_MAX }),
  age: fc.integer({ min: 0, max: U32_MAX }),
});
const edgeU64 = fc.constantFrom(0n, 1n, 4095n, 4096n, (1n << 63n), U64_MAX - 4096n, U64_MAX - 1n, U64_MAX);
const edgeRegion = fc.record({ start: edgeU64, end: edgeU64, nrAccesses: fc.constantFrom(0, 1, U32_MAX), age: fc.constantFrom(0, U32_MAX) });

test('any regions round-trip: unaligned, unsorted, overlapping, up to 2^64-1', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(anyRegion, edgeRegion), { maxLength: 50 }), (arb) => {
      const regions = arb.map((x) => ({ ...x }));
      assert.deepEqual(decodeRecord(encodeRecord(rec(regions))), rec(regions));
    }),
    { numRuns: 500 },
  );
});

test('regions held as numbers (the agent\'s path) encode to the same bytes, in any order', () => {
  const small = fc.record({
    start: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    end: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    nrAccesses: fc.integer({ min: 0, max: U32_MAX }),
    age: fc.integer({ min: 0, max: U32_MAX }),
  });
  const aligned = small.map((r) => ({ ...r, start: r.start - (r.start % 4096), end: r.end - (r.end % 4096) }));
  fc.assert(
    fc.property(fc.array(fc.oneof(small, aligned), { maxLength: 60 }), (arb) => {
      const regions = arb.map((r) => ({ start: BigInt(r.start), end: BigInt(r.end), nrAccesses: r.nrAccesses, age: r.age }));
      const bytes = encodeRecordOfNumbers(rec([]), arb);
      assert.deepEqual(bytes, encodeRecord(rec(regions)));
      assert.deepEqual(decodeRecord(bytes), rec(regions));
    }),
    { numRuns: 300 },
  );
  assert.throws(() => encodeRecordOfNumbers(rec([]), [{ start: 2 ** 53, end: 2 ** 53 + 2, nrAccesses: 0, age: 0 }]), /safe integers/);
});

test('page-aligned, sorted regions (what DAMON reports) round-trip with any shift', () => {
  const pages = fc.array(fc.tuple(fc.bigInt({ min: 0n, max: 1n << 20n }), fc.bigInt({ min: 1n, max: 1n << 20n })), { minLength: 1, maxLength: 200 });
  fc.assert(
    fc.property(pages, fc.bigInt({ min: 0n, max: 1n << 40n }), fc.integer({ min: 0, max: 30 }), (steps, base, shift) => {
      let at = base << BigInt(shift);
      const regions = steps.map(([gap, size]) => {
        const start = at + (gap << BigInt(shift));
        at = start + (size << BigInt(shift));
        return { start, end: at, nrAccesses: 3, age: 7 };
      });
      if (at > U64_MAX) return;
      assert.deepEqual(decodeRecord(encodeRecord(rec(regions))).regions, regions);
    }),
  );
});

test('empty records and records of maximum values', () => {
  const empty = rec([], { sessionId: '', host: '', pid: 0, startTimeNs: 0n, endTimeNs: 0n, maxNrAccesses: 0, operations: '', sequence: 0n, agentInstance: '' });
  assert.deepEqual(decodeRecord(encodeRecord(empty)), empty);
  const max = rec([{ start: U64_MAX, end: U64_MAX, nrAccesses: U32_MAX, age: U32_MAX }, { start: 0n, end: U64_MAX, nrAccesses: U32_MAX, age: U32_MAX }], {
    pid: -(2 ** 31), startTimeNs: U64_MAX, endTimeNs: U64_MAX, maxNrAccesses: U32_MAX, sequence: U64_MAX, droppedBefore: U64_MAX, samplingIntervalUs: U64_MAX,
  });
  assert.deepEqual(decodeRecord(encodeRecord(max)), max);
});

test('the former plain form still decodes, to the same record', () => {
  const r = rec([{ start: 0x1000n, end: 0x5000n, nrAccesses: 2, age: 3 }]);
  assert.deepEqual(decodeRecord(encodePlainRecord(r)), r);
  assert.deepEqual(decodeRecord(AggregationRecord.encode(r).finish()), r);
});

test('dropped_before appended to an encoded record is what decodes', () => {
  const bytes = encodeRecord(rec([{ start: 0x1000n, end: 0x2000n, nrAccesses: 1, age: 1 }], { droppedBefore: 5n }));
  assert.equal(decodeRecord(bytes).droppedBefore, 5n);
  assert.equal(decodeRecord(withDroppedBefore(bytes, 300n)).droppedBefore, 300n);
  assert.equal(decodeRecord(withDroppedBefore(bytes, U64_MAX)).droppedBefore, U64_MAX);
  assert.equal(withDroppedBefore(bytes, 0n), bytes);
});

test('malformed packing is refused with a RecordWireError saying what', () => {
  const refused = (packed: AggregationRecord['packed'], re: RegExp) =>
    assert.throws(() => decodeRecord(AggregationRecord.encode(rec([], { packed })).finish()), (e: unknown) => e instanceof RecordWireError && re.test((e as Error).message));
  refused({ addressShift: 0, gaps: [1n], sizes: [], nrAccesses: [1], ages: [1] }, /lists of different lengths/);
  refused({ addressShift: 64, gaps: [], sizes: [], nrAccesses: [], ages: [] }, /address_shift 64 is above 63/);
  refused({ addressShift: 12, gaps: [1n << 60n], sizes: [0n], nrAccesses: [0], ages: [0] }, /region 0 lies beyond 2\^64/);
  assert.throws(() => decodeRecord(AggregationRecord.encode(rec([{ start: 0n, end: 1n, nrAccesses: 0, age: 0 }], { packed: packRegions([]) })).finish()), /both plain and packed/);
  assert.throws(() => decodeRecord(new Uint8Array([0xff, 0xff, 0xff])), RecordWireError);
});

test('DAMON-like regions take under 10 bytes each at 1000 regions', () => {
  let at = 0x5555_5555_0000n;
  const regions: Region[] = Array.from({ length: 1000 }, (_, i) => {
    const start = at + (i % 50 === 0 ? 0x10_0000n : 0n);
    at = start + BigInt(1 + (i * 7919) % 2048) * 4096n;
    return { start, end: at, nrAccesses: (i * 13) % 21, age: (i * 31) % 300 };
  });
  const r = rec(regions);
  const packed = encodeRecord(r).length;
  const plain = encodePlainRecord(r).length;
  assert.ok(packed / 1000 < 10, `${packed / 1000} bytes a region`);
  assert.ok(packed < plain / 2, `packed ${packed}, plain ${plain}`);
  assert.equal(packRegions(regions).addressShift, 12);
  assert.deepEqual(unpackRegions(packRegions(regions)), regions);
});
