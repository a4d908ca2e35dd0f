// Appends snapshots to a binary result file. Like the kernel's DAMON, it opens the file
// with O_APPEND; each snapshot goes out in one write of its whole bytes.
//
// - A new (or empty) file gets the version-2 header first; version 0 has none.
// - An existing file is continued, never re-headed: it must be a result file of the
//   requested version that ends exactly at a snapshot boundary, or opening is refused
//   with the reason (a second header, or bytes after a broken tail, would make the rest
//   of the file unreadable).
// - A failed write (ENOSPC, EFBIG, EIO...) cuts the file back to its last complete
//   snapshot, so what was written before stays readable; the call rejects, and later
//   snapshots may still be written.
// - close() appends, for each target that appeared in only one snapshot of the file, a
//   closing entry: one zero-size region at the target's first address, no accesses,
//   ending at end + (end − start) of that snapshot (end + aggr when the start is not
//   known). The format stores only ends, and damo derives a target's first start from
//   the spacing of its ends: with one snapshot it cannot, and then fails on the whole
//   file. damo shows the entry as a last snapshot holding a 0-byte region (nothing in
//   wss or heatmaps); this project's reader uses it for the start time and drops it.
// Not supported: two writers appending to one file at once.
import { readSync } from 'node:fs';
import type { AggregationRecord } from './record.js';
import {
  closingEntry, decodeBinary, encodeHeader, encodeSnapshot, isClosingEntry, HEADER_SIZE,
  type BinaryEntry, type ByteSource, type DecodedBinary,
} from './binary-layout.js';
import {
  ResultFileError, describeFsError, validateSnapshot, type ResultIntervals, type ResultWriter,
} from './result-format.js';
import { openError, writeAll, type ResultFd, type ResultLocation } from './result-location.js';

function fileSource(fh: ResultFd, size: number): ByteSource {
  return {
    size,
    read(offset, length) {
      const b = Buffer.alloc(length);
      for (let got = 0; got < length;) {
        const n = readSync(fh.fd, b, got, length - got, offset + got);
        if (n === 0) throw new Error(`file shrank while being read (at byte ${offset + got})`);
        got += n;
      }
      return b;
    },
  };
}

/** What an existing file tells a writer that continues it. */
interface Continued {
  size: number;
  snapshots: number;
  lastEndNs: bigint | null;
  /** Real (non-closing) entries per target. */
  counts: Map<number, number>;
  /** Targets with exactly one real entry and no closing entry yet: [end, first address]. */
  single: Map<number, [bigint, number]>;
}

function refuse(path: string, why: string, offset?: number): never {
  throw new ResultFileError('not-result-file', path, `refusing to append to ${path}: ${why}`, offset);
}

function checkExisting(path: string, d: DecodedBinary, version: 0 | 2, size: number): Continued {
  if (version === 0 && d.hasHeader) {
    refuse(path, `it is a version-${d.version} result file (it has a "damon_recfmt_ver" header), and version 0 was asked for`);
  }
  if (version === 2 && !d.hasHeader) {
    const v0 = d.problem === null && d.trailingBytes === 0 && d.snapshots.every((s) => s.entries.length > 0);
    refuse(
      path,
      v0
        ? 'it has no "damon_recfmt_ver" header: it reads as a version-0 result file (open it with version 0 to continue it)'
        : 'it does not start with the "damon_recfmt_ver" header and is not a result file',
    );
  }
  if (d.hasHeader && d.version !== 2) {
    refuse(path, `its header says version ${d.version}${d.version === 1 ? ' (s32 target ids)' : ''}, and version 2 was asked for`);
  }
  if (d.problem !== null) {
    refuse(
      path,
      d.problem.kind === 'truncated'
        ? `${d.problem.message}; appending after an incomplete snapshot would make every later one unreadable ` +
          `(cutting the file to ${d.endOffset} bytes keeps its ${d.snapshots.length} complete snapshot(s))`
        : `it is not a result file: ${d.problem.message}`,
      d.problem.offset,
    );
  }
  if (d.trailingBytes > 0) {
    refuse(
      path,
      `${d.trailingBytes} byte(s) follow its last complete snapshot (which ends at byte ${d.endOffset}); ` +
      'they would make anything appended after them unreadable',
      d.endOffset,
    );
  }
  const empty = d.snapshots.find((s) => s.entries.length === 0);
  if (empty !== undefined) refuse(path, `it is not a result file: the snapshot at byte ${empty.offset} has no targets`, empty.offset);

  const counts = new Map<number, number>();
  const single = new Map<number, [bigint, number]>();
  const closed = new Set<number>();
  let lastEndNs: bigint | null = null;
  for (const s of d.snapshots) {
    for (const e of s.entries) {
      if (isClosingEntry(e)) {
        closed.add(e.targetId);
        continue;
      }
      // closing entries end past their snapshot; only real ones bound the next snapshot
      if (lastEndNs === null || s.endNs > lastEndNs) lastEndNs = s.endNs;
      const c = (counts.get(e.targetId) ?? 0) + 1;
      counts.set(e.targetId, c);
      if (c === 1) single.set(e.targetId, [s.endNs, e.regions[0]?.start ?? 0]);
      else single.delete(e.targetId);
    }
  }
  for (const id of closed) single.delete(id);
  return { size, snapshots: d.snapshots.length, lastEndNs, counts, single };
}

/** Opens the binary writer of `location`; it closes the location when it is closed. */
export async function openBinaryWriter(
  location: ResultLocation,
  opts: { version: 0 | 2; intervals: ResultIntervals },
): Promise<ResultWriter> {
  const path = location.path;
  await location.existing();
  let fh: ResultFd;
  try {
    fh = await location.openAppend(0o644);
  } catch (e) {
    throw openError(path, e);
  }
  try {
    const size = (await fh.stat()).size;
    let state: Continued;
    if (size === 0) {
      state = { size: 0, snapshots: 0, lastEndNs: null, counts: new Map(), single: new Map() };
      if (opts.version === 2) {
        try {
          await writeAll(fh, encodeHeader(2));
        } catch (e) {
          await fh.truncate(0).catch(() => undefined);
          throw openError(path, e, 'write the header of');
        }
        state.size = HEADER_SIZE;
      }
    } else {
      let d: DecodedBinary;
      try {
        d = decodeBinary(fileSource(fh, size), { skipRegions: true });
      } catch (e) {
        throw openError(path, e, 'read the existing');
      }
      state = checkExisting(path, d, opts.version, size);
    }
    return new BinaryResultWriter(location, fh, opts.version, opts.intervals, state);
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

class BinaryResultWriter implements ResultWriter {
  readonly format = 'binary' as const;
  private queue: Promise<void> = Promise.resolve();
  private closed: Promise<void> | null = null;
  /** Set when a failed write could not be undone: the file has a broken tail. */
  private broken: ResultFileError | null = null;
  /** Targets seen in one snapshot so far, for the closing entries: [start or null, end, first address]. */
  private readonly once = new Map<number, [bigint | null, bigint, number]>();

  readonly path: string;

  constructor(
    private readonly location: ResultLocation,
    private readonly fh: ResultFd,
    readonly version: 0 | 2,
    private readonly intervals: ResultIntervals,
    private readonly state: Continued,
  ) {
    this.path = location.path;
    for (const [id, [end, addr]] of state.single) this.once.set(id, [null, end, addr]);
  }

  writeSnapshot(records: readonly AggregationRecord[]): Promise<void> {
    try {
      if (this.closed) throw new ResultFileError('closed', this.path, `${this.path}: the writer is closed`);
      validateSnapshot(this.path, records, this.intervals, this.state.lastEndNs);
    } catch (e) {
      return Promise.reject(e);
    }
    const endNs = records[0]!.endNs;
    this.state.lastEndNs = endNs;
    const bytes = encodeSnapshot(endNs, records, this.version);
    const seen = records.map((r) => [r.targetId, r.startNs, r.regions[0]?.start ?? 0] as const);
    return this.enqueue(async () => {
      await this.append(bytes);
      for (const [id, startNs, addr] of seen) this.count(id, startNs, endNs, addr);
    });
  }

  private enqueue(job: () => Promise<void>): Promise<void> {
    const p = this.queue.then(job);
    this.queue = p.catch(() => undefined); // a failed snapshot does not stop later ones
    return p;
  }

  private count(id: number, startNs: bigint, endNs: bigint, addr: number): void {
    const c = (this.state.counts.get(id) ?? 0) + 1;
    this.state.counts.set(id, c);
    if (c === 1) this.once.set(id, [startNs, endNs, addr]);
    else this.once.delete(id);
  }

  private async append(bytes: Buffer): Promise<void> {
    if (this.broken) {
      throw new ResultFileError('write', this.path, `${this.path}: not written, an earlier failure left the file unrepaired: ${this.broken.message}`);
    }
    const done = { bytes: 0 };
    try {
      await writeAll(this.fh, bytes, done);
    } catch (e) {
      const at = this.state.size + done.bytes;
      let repaired = `the file keeps its ${this.state.snapshots} complete snapshot(s) (${this.state.size} bytes) and stays readable`;
      if (done.bytes > 0) {
        try {
          await this.fh.truncate(this.state.size);
        } catch (te) {
          repaired = `cutting the partial snapshot off also failed (${describeFsError(te, this.path)}), so the file ends in ` +
            `a truncated snapshot at byte ${this.state.size}; readResultFile(path, { partial: true }) still returns what precedes it`;
          this.broken = new ResultFileError('write', this.path, `${this.path}: ${repaired}`, this.state.size);
        }
      }
      throw new ResultFileError(
        'write', this.path,
        `writing a snapshot to ${this.path} failed at byte ${at}: ${describeFsError(e, this.path)}; ${repaired}`,
        at, { cause: e },
      );
    }
    this.state.size += bytes.length;
    this.state.snapshots++;
  }

  close(): Promise<void> {
    this.closed ??= this.finish();
    return this.closed;
  }

  private async finish(): Promise<void> {
    await this.queue;
    let failure: unknown = null;
    try {
      // Closing entries, grouped by end time (one snapshot per distinct end), oldest first.
      const aggrNs = BigInt(this.intervals.aggrUs) * 1000n;
      const byEnd = new Map<bigint, BinaryEntry[]>();
      for (const [id, [start, end, addr]] of this.once) {
        const span = start !== null && end > start ? end - start : aggrNs;
        const at = end + span;
        byEnd.set(at, [...(byEnd.get(at) ?? []), closingEntry(id, addr)]);
      }
      const ends = [...byEnd.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      for (const at of ends) await this.append(encodeSnapshot(at, byEnd.get(at)!, this.version));
      await this.fh.datasync();
    } catch (e) {
      failure = e;
    }
    try {
      await this.fh.close();
    } catch (e) {
      failure ??= new ResultFileError('write', this.path, `closing ${this.path} failed: ${describeFsError(e, this.path)}`, undefined, { cause: e });
    }
    this.location.close();
    if (failure !== null) {
      throw failure instanceof ResultFileError
        ? failure
        : new ResultFileError('write', this.path, `finishing ${this.path} failed: ${describeFsError(failure, this.path)}`, undefined, { cause: failure });
    }
  }
}
