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
  const packed = rec.packed ?? packRegions(rec.regions);
  return AggregationRecord.encode({ ...rec, regions: [], packed }).finish();
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
