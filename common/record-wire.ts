// AggregationRecords on NATS: the one encoder and decoder of their wire form. Regions
// travel delta-coded in PackedRegions (see damon.proto); consumers get plain regions back.
// Invariant: decodeRecord(encodeRecord(r)) equals r for any uint64 addresses and uint32
// counts, in any order.
import { AggregationRecord, type PackedRegions, type Region } from '../gen/damon/v1/damon.js';

const U64 = 64;

/** A message on a records subject that is not a well-formed record. */
export class RecordWireError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RecordWireError';
  }
}

/** The largest k (at most 63) such that every start and end is a multiple of 2^k; 0 for none. */
function commonShift(regions: readonly Region[]): number {
  let bits = 0n;
  for (const r of regions) bits |= r.start | r.end;
  if (bits === 0n) return 0;
  let k = 0;
  while (k < 63 && ((bits >> BigInt(k)) & 1n) === 0n) k++;
  return k;
}

/** Regions as packed varints: gaps and sizes in units of 2^address_shift, modulo 2^64. */
export function packRegions(regions: readonly Region[]): PackedRegions {
  const shift = commonShift(regions);
  const s = BigInt(shift);
  const n = regions.length;
  const gaps = new Array<bigint>(n);
  const sizes = new Array<bigint>(n);
  const nrAccesses = new Array<number>(n);
  const ages = new Array<number>(n);
  let prevEnd = 0n;
  for (let i = 0; i < n; i++) {
    const r = regions[i];
    const start = r.start >> s;
    const end = r.end >> s;
    gaps[i] = BigInt.asUintN(U64, start - prevEnd);
    sizes[i] = BigInt.asUintN(U64, end - start);
    nrAccesses[i] = r.nrAccesses;
    ages[i] = r.age;
    prevEnd = end;
  }
  return { addressShift: shift, gaps, sizes, nrAccesses, ages };
}

/** The plain regions of a packed list; throws RecordWireError when it is malformed. */
export function unpackRegions(p: PackedRegions): Region[] {
  const n = p.gaps.length;
  if (p.sizes.length !== n || p.nrAccesses.length !== n || p.ages.length !== n) {
    throw new RecordWireError(
      `packed regions: lists of different lengths (gaps ${n}, sizes ${p.sizes.length}, nr_accesses ${p.nrAccesses.length}, ages ${p.ages.length})`,
    );
  }
  if (p.addressShift > 63) throw new RecordWireError(`packed regions: address_shift ${p.addressShift} is above 63`);
  const s = BigInt(p.addressShift);
  const limit = 1n << BigInt(U64 - p.addressShift);
  const out = new Array<Region>(n);
  let prevEnd = 0n;
  for (let i = 0; i < n; i++) {
    const start = BigInt.asUintN(U64, prevEnd + p.gaps[i]);
    const end = BigInt.asUintN(U64, start + p.sizes[i]);
    if (start >= limit || end >= limit) throw new RecordWireError(`packed regions: region ${i} lies beyond 2^64`);
    out[i] = { start: start << s, end: end << s, nrAccesses: p.nrAccesses[i], age: p.ages[i] };
    prevEnd = end;
  }
  return out;
}

/** The wire form of a record: its regions packed (a record already packed is left so). */
export function encodeRecord(rec: AggregationRecord): Uint8Array {
  if (rec.packed !== undefined && rec.regions.length > 0) throw new RecordWireError('a record with both plain and packed regions');
  const numbers = rec.packed === undefined ? asNumbers(rec.regions) : undefined;
  if (!numbers) return AggregationRecord.encode({ ...rec, regions: [], packed: rec.packed ?? packRegions(rec.regions) }).finish();
  return encodeRecordOfNumbers(rec, numbers);
}

/** A region as the engine holds it: addresses as numbers, below 2^53. */
export interface NumberRegion {
  start: number;
  end: number;
  nrAccesses: number;
  age: number;
}

/**
 * encodeRecord for regions held as numbers (the agent's engine records): the same bytes
 * without a BigInt per address. `header`'s own regions and packed are ignored.
 */
export function encodeRecordOfNumbers(header: AggregationRecord, regions: readonly NumberRegion[]): Uint8Array {
  const packed = packedField(regions);
  // Fields may come in any order: the header as ts-proto writes it, then field 12.
  const head = AggregationRecord.encode({ ...header, regions: [], packed: undefined }).finish();
  const out = new Uint8Array(head.length + packed.length);
  out.set(head);
  out.set(packed, head.length);
  return out;
}

/** The regions with number addresses, or undefined when one is at or above 2^53. */
function asNumbers(regions: readonly Region[]): NumberRegion[] | undefined {
  const out = new Array<NumberRegion>(regions.length);
  for (let i = 0; i < regions.length; i++) {
    const r = regions[i];
    if (r.start > MAX_SAFE || r.end > MAX_SAFE) return undefined;
    out[i] = { start: Number(r.start), end: Number(r.end), nrAccesses: r.nrAccesses, age: r.age };
  }
  return out;
}

// ---- the packed field in plain number arithmetic ------------------------------------------
// Addresses below 2^53 (every user-space address is): varints written from doubles,
// without a BigInt per value (4 a region).

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const TWO32 = 2 ** 32;

/** Writes protobuf varints into a buffer sized by its user (at most 10 bytes a value). */
class VarintWriter {
  readonly buf: Uint8Array;
  len = 0;

  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity);
  }

  /** A non-negative safe integer. */
  varint(v: number): void {
    const b = this.buf;
    if (v < 0x80000000) {
      while (v > 0x7f) {
        b[this.len++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      b[this.len++] = v;
      return;
    }
    while (v >= 128) {
      b[this.len++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    b[this.len++] = v;
  }

  bigVarint(v: bigint): void {
    while (v >= 128n) {
      this.buf[this.len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.len++] = Number(v);
  }

  /** A length-delimited field holding what `w` wrote. */
  field(field: number, w: VarintWriter): void {
    this.varint((field << 3) | 2);
    this.varint(w.len);
    this.buf.set(w.buf.subarray(0, w.len), this.len);
    this.len += w.len;
  }
}

/** Trailing zero bits of a positive safe integer. */
function trailingZeros(v: number): number {
  const low = v % TWO32;
  if (low !== 0) return 31 - Math.clz32(low & -low);
  return 32 + trailingZeros(Math.floor(v / TWO32));
}

/** Field 12 (PackedRegions) of a record, encoded, as packRegions and ts-proto would. */
function packedField(regions: readonly NumberRegion[]): Uint8Array {
  const n = regions.length;
  let shift = 63;
  for (let i = 0; i < n; i++) {
    const r = regions[i];
    if (!(r.start <= Number.MAX_SAFE_INTEGER && r.end <= Number.MAX_SAFE_INTEGER)) {
      throw new RecordWireError(`region ${i}: addresses as numbers must be safe integers`);
    }
    if (r.start !== 0) shift = Math.min(shift, trailingZeros(r.start));
    if (r.end !== 0) shift = Math.min(shift, trailingZeros(r.end));
  }
  if (shift === 63) shift = 0; // every address 0 (or none): as commonShift says
  const unit = 2 ** shift;
  const list = new VarintWriter(10 * n);
  const body = new VarintWriter(4 * (10 * n + 12) + 4);
  if (shift !== 0) {
    body.varint(1 << 3);
    body.varint(shift);
  }
  let prevEnd = 0;
  for (let i = 0; i < n; i++) {
    const gap = regions[i].start / unit - prevEnd;
    prevEnd = regions[i].end / unit;
    if (gap >= 0) list.varint(gap);
    else list.bigVarint(BigInt.asUintN(U64, BigInt(gap))); // out of order: modulo 2^64
  }
  body.field(2, list);
  list.len = 0;
  for (let i = 0; i < n; i++) {
    const size = (regions[i].end - regions[i].start) / unit;
    if (size >= 0) list.varint(size);
    else list.bigVarint(BigInt.asUintN(U64, BigInt(size)));
  }
  body.field(3, list);
  list.len = 0;
  for (let i = 0; i < n; i++) list.varint(regions[i].nrAccesses);
  body.field(4, list);
  list.len = 0;
  for (let i = 0; i < n; i++) list.varint(regions[i].age);
  body.field(5, list);
  const out = new VarintWriter(body.len + 12);
  out.field(12, body);
  return out.buf.subarray(0, out.len);
}

/** The former wire form (plain Region messages), which decodeRecord still reads; for comparisons. */
export function encodePlainRecord(rec: AggregationRecord): Uint8Array {
  return AggregationRecord.encode({ ...rec, regions: rec.packed ? unpackRegions(rec.packed) : rec.regions, packed: undefined }).finish();
}

/**
 * A record from its wire form, with plain regions (packed is undefined). Reads records of
 * either form; throws RecordWireError for anything that is not a well-formed record.
 */
export function decodeRecord(data: Uint8Array): AggregationRecord {
  let rec: AggregationRecord;
  try {
    rec = AggregationRecord.decode(data);
  } catch (err) {
    throw new RecordWireError(`not an AggregationRecord: ${(err as Error).message}`, { cause: err });
  }
  if (rec.packed === undefined) return rec;
  if (rec.regions.length > 0) throw new RecordWireError('a record with both plain and packed regions');
  return { ...rec, regions: unpackRegions(rec.packed), packed: undefined };
}

/** Protobuf varint of a non-negative integer. */
function varint(v: bigint): number[] {
  const out: number[] = [];
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

/** Field 11 (dropped_before), varint. */
const DROPPED_BEFORE_TAG = (11 << 3) | 0;

/**
 * An encoded record with dropped_before set to `n`, without decoding it: protobuf merges
 * a field appended to a message, the last value of a scalar winning.
 */
export function withDroppedBefore(data: Uint8Array, n: bigint): Uint8Array {
  if (n <= 0n) return data;
  const tail = [DROPPED_BEFORE_TAG, ...varint(BigInt.asUintN(U64, n))];
  const out = new Uint8Array(data.length + tail.length);
  out.set(data);
  out.set(tail, data.length);
  return out;
}
