// DAMON's binary record format, byte for byte (see shared/reference/result-file.md):
//
//   file     := [header] snapshot*             header := "damon_recfmt_ver" version:s32
//   snapshot := tv_sec:s64 tv_nsec:s64 nr_targets:u32 target{nr_targets}
//   target   := id nr_regions:u32 region{nr_regions}   id := u64 (versions 0, 2) | s32 (version 1)
//   region   := start:u64 end:u64 nr_accesses:u32
//
// Packed, no padding, in the host's byte order. This file only turns values into
// bytes and bytes into values; files and policies live in the writer and reader.
import { endianness } from 'node:os';

export const MAGIC = Buffer.from('damon_recfmt_ver', 'ascii');
export const HEADER_SIZE = 20;
/** tv_sec + tv_nsec: fewer bytes than this left at the end of a file is where damo stops. */
export const TIME_SIZE = 16;
export const SNAPSHOT_HEAD_SIZE = 20;
export const REGION_SIZE = 20;

export type ByteOrder = 'LE' | 'BE';
/** "Native" order: little-endian on x86_64 and arm64. */
export const HOST_ORDER: ByteOrder = endianness();

const TWO32 = 2 ** 32;
const NS_PER_SEC = 1_000_000_000n;

export interface BinaryRegion {
  start: number;
  end: number;
  nrAccesses: number;
}

export interface BinaryEntry {
  targetId: number;
  regions: BinaryRegion[];
}

/** Bytes of the id field: s32 in version 1, u64 otherwise (damo reads any other header value as 2). */
export function idSize(version: number): number {
  return version === 1 ? 4 : 8;
}

export function encodeHeader(version: number, order: ByteOrder = HOST_ORDER): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  MAGIC.copy(b, 0);
  if (order === 'LE') b.writeInt32LE(version, 16);
  else b.writeInt32BE(version, 16);
  return b;
}

/** Size in bytes of one snapshot holding these entries. */
export function snapshotSize(entries: readonly { regions: readonly unknown[] }[], version: number): number {
  let n = SNAPSHOT_HEAD_SIZE;
  for (const e of entries) n += idSize(version) + 4 + REGION_SIZE * e.regions.length;
  return n;
}

class Out {
  offset = 0;
  constructor(readonly b: Buffer, readonly le: boolean) {}
  u32(v: number): void {
    this.offset = this.le ? this.b.writeUInt32LE(v, this.offset) : this.b.writeUInt32BE(v, this.offset);
  }
  s32(v: number): void {
    this.offset = this.le ? this.b.writeInt32LE(v, this.offset) : this.b.writeInt32BE(v, this.offset);
  }
  s64(v: bigint): void {
    this.offset = this.le ? this.b.writeBigInt64LE(v, this.offset) : this.b.writeBigInt64BE(v, this.offset);
  }
  /** Any integer double in [0, 2^64) is exact, and so are its two 32-bit halves. */
  u64(v: number): void {
    const lo = v % TWO32;
    const hi = Math.floor(v / TWO32);
    if (this.le) {
      this.u32(lo);
      this.u32(hi);
    } else {
      this.u32(hi);
      this.u32(lo);
    }
  }
}

/**
 * One snapshot: the time is the END of the aggregation interval as tv_sec/tv_nsec.
 * Callers validate the values first (result-format.ts validateSnapshot).
 */
export function encodeSnapshot(
  endNs: bigint,
  entries: readonly BinaryEntry[],
  version: number,
  order: ByteOrder = HOST_ORDER,
): Buffer {
  const out = new Out(Buffer.alloc(snapshotSize(entries, version)), order === 'LE');
  out.s64(endNs / NS_PER_SEC);
  out.s64(endNs % NS_PER_SEC);
  out.u32(entries.length);
  for (const e of entries) {
    if (idSize(version) === 4) out.s32(e.targetId);
    else out.u64(e.targetId);
    out.u32(e.regions.length);
    for (const r of e.regions) {
      out.u64(r.start);
      out.u64(r.end);
      out.u32(r.nrAccesses);
    }
  }
  return out.b;
}

/**
 * A marker entry: one zero-size region [addr, addr) with no accesses. DAMON never has an
 * empty region, so it cannot be mistaken for monitoring data. damo shows it as a
 * snapshot holding a 0-byte region (nothing in wss or heatmaps).
 *
 * The writer puts one before each target's first snapshot, ending where that snapshot
 * starts (an opening entry; binary-writer.ts): the format stores only ends, and damo
 * takes a snapshot's start from the previous end of the same target. Files from earlier
 * writers hold one after the only snapshot of a target instead (a closing entry, ending
 * at end + (end - start)); the reader understands both.
 */
export function markerEntry(targetId: number, addr: number): BinaryEntry {
  return { targetId, regions: [{ start: addr, end: addr, nrAccesses: 0 }] };
}

export function isMarkerEntry(e: { nrRegions: number; regions: readonly BinaryRegion[] }): boolean {
  const r = e.regions[0];
  return e.nrRegions === 1 && r !== undefined && r.start === r.end && r.nrAccesses === 0;
}

/** Random access to the bytes being decoded: a Buffer in memory or an open file. */
export interface ByteSource {
  readonly size: number;
  /** Exactly `length` bytes at `offset`; callers never ask past `size`. */
  read(offset: number, length: number): Buffer;
}

export function bufferSource(b: Buffer): ByteSource {
  return { size: b.length, read: (offset, length) => b.subarray(offset, offset + length) };
}

export interface DecodedSnapshot {
  /** Byte offset of the snapshot's tv_sec. */
  offset: number;
  endNs: bigint;
  /** When the walk skipped region bytes, `regions` holds only the first one (if any). */
  entries: (BinaryEntry & { nrRegions: number })[];
}

export interface DecodeProblem {
  kind: 'truncated' | 'corrupt';
  /** Where the snapshot (or header) that could not be decoded starts. */
  offset: number;
  message: string;
}

export interface DecodedBinary {
  hasHeader: boolean;
  /** The header's version value; 0 without a header. */
  version: number;
  snapshots: DecodedSnapshot[];
  /** End of the last complete snapshot (or of the header, or 0). */
  endOffset: number;
  /** Bytes after endOffset, fewer than 16, that damo ignores too. 0 when `problem` is set. */
  trailingBytes: number;
  /** The first snapshot that could not be decoded; snapshots before it are complete. */
  problem: DecodeProblem | null;
}

class NotDecodable extends Error {
  constructor(readonly kind: 'truncated' | 'corrupt', message: string) {
    super(message);
  }
}

/**
 * Decodes a whole binary result file. Stops silently when fewer than 16 bytes are left
 * (as damo does); a snapshot that ends early, or holds a value a JS number cannot
 * represent exactly, stops the walk with `problem` set and every earlier snapshot kept.
 * `skipRegions` reads only the heads and each target's first region (to check a file cheaply).
 */
export function decodeBinary(
  src: ByteSource,
  opts: { skipRegions?: boolean; order?: ByteOrder } = {},
): DecodedBinary {
  const le = (opts.order ?? HOST_ORDER) === 'LE';
  const size = src.size;
  const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const u64 = (b: Buffer, o: number, what: string): number => {
    const lo = u32(b, le ? o : o + 4);
    const hi = u32(b, le ? o + 4 : o);
    if (hi < 2 ** 21) return hi * TWO32 + lo; // below 2^53: exact
    const big = (BigInt(hi) << 32n) | BigInt(lo);
    const n = Number(big);
    if (BigInt(n) !== big) throw new NotDecodable('corrupt', `${what} ${big} cannot be represented exactly as a JS number`);
    return n;
  };

  const result: DecodedBinary = {
    hasHeader: false, version: 0, snapshots: [], endOffset: 0, trailingBytes: 0, problem: null,
  };
  if (size >= MAGIC.length && src.read(0, MAGIC.length).equals(MAGIC)) {
    result.hasHeader = true;
    if (size < HEADER_SIZE) {
      result.problem = {
        kind: 'truncated', offset: 0,
        message: `the header ends at byte ${size}, before its 4-byte version (needs ${HEADER_SIZE} bytes)`,
      };
      return result;
    }
    const v = src.read(16, 4);
    result.version = le ? v.readInt32LE(0) : v.readInt32BE(0);
    result.endOffset = HEADER_SIZE;
  }
  const idBytes = idSize(result.version);

  let offset = result.endOffset;
  while (size - offset >= TIME_SIZE) {
    const start = offset;
    try {
      const need = (n: number, what: string) => {
        if (offset + n > size) {
          throw new NotDecodable(
            'truncated',
            `snapshot at byte ${start} ends early: ${what} needs bytes ${offset}..${offset + n - 1}, ` +
            `but the file ends at byte ${size}`,
          );
        }
      };
      need(SNAPSHOT_HEAD_SIZE, 'its target count');
      const head = src.read(offset, SNAPSHOT_HEAD_SIZE);
      const sec = le ? head.readBigInt64LE(0) : head.readBigInt64BE(0);
      const nsec = le ? head.readBigInt64LE(8) : head.readBigInt64BE(8);
      const nrTargets = u32(head, 16);
      if (sec < 0n || nsec < 0n || nsec >= NS_PER_SEC) {
        // every writer stores a normalized timespec; anything else is not a snapshot
        throw new NotDecodable('corrupt', `its time (tv_sec ${sec}, tv_nsec ${nsec}) is not a timespec (tv_nsec must be in [0, 10^9))`);
      }
      offset += SNAPSHOT_HEAD_SIZE;
      const snap: DecodedSnapshot = { offset: start, endNs: sec * NS_PER_SEC + nsec, entries: [] };
      for (let t = 0; t < nrTargets; t++) {
        need(idBytes + 4, `target ${t} of ${nrTargets}`);
        const th = src.read(offset, idBytes + 4);
        const targetId = idBytes === 4
          ? (le ? th.readInt32LE(0) : th.readInt32BE(0))
          : u64(th, 0, `target id at byte ${offset}:`);
        const nrRegions = u32(th, idBytes);
        offset += idBytes + 4;
        need(nrRegions * REGION_SIZE, `${nrRegions} regions of target ${targetId}`);
        const regions: BinaryRegion[] = [];
        if (nrRegions > 0) {
          const nrRead = opts.skipRegions ? 1 : nrRegions;
          const rb = src.read(offset, nrRead * REGION_SIZE);
          for (let r = 0, o = 0; r < nrRead; r++, o += REGION_SIZE) {
            regions.push({
              start: u64(rb, o, `region start at byte ${offset + o}:`),
              end: u64(rb, o + 8, `region end at byte ${offset + o + 8}:`),
              nrAccesses: u32(rb, o + 16),
            });
          }
        }
        offset += nrRegions * REGION_SIZE;
        snap.entries.push({ targetId, nrRegions, regions });
      }
      result.snapshots.push(snap);
      result.endOffset = offset;
    } catch (e) {
      if (!(e instanceof NotDecodable)) throw e;
      const message = e.kind === 'corrupt' ? `snapshot at byte ${start}: ${e.message}` : e.message;
      result.problem = { kind: e.kind, offset: start, message };
      return result;
    }
  }
  result.trailingBytes = size - offset;
  return result;
}
