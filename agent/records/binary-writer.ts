// Appends snapshots to a binary result file. Like the kernel's DAMON, it opens the file
// with O_APPEND; each snapshot goes out in one write of its whole bytes.
//
// - A new (or empty) file gets the version-2 header first; version 0 has none.
// - Times are stored on the file's recording clock (recording-clock.ts): its first
//   record starts at 0, so damo's float arithmetic stays exact.
// - Before a target's first snapshot in the file, and before a snapshot that starts after
//   the target's previous one ended (a gap: the recording was stopped, or the target was
//   not monitored), the same write carries an opening entry: the target with one
//   zero-size region, no accesses, ending where the snapshot starts. The format stores
//   only ends and damo takes each snapshot's start from the previous end of its target;
//   with the opening entry every target has at least two entries (damo fails on a whole
//   file otherwise), every start is exact, and entries stay in time order. Because it is
//   in the same write as the data it opens, it is on disk whenever that data is, also
//   after the writer is killed. damo 2.0.1's `report heats` skips each target's first
//   snapshot and `report wss` its first 20: the 0-byte entry is the one skipped.
// - An existing file is continued, never re-headed: it must be a result file of the
//   requested version that ends exactly at a snapshot boundary, or opening is refused
//   with the reason (a second header, or bytes after a broken tail, would make the rest
//   of the file unreadable).
// - A failed write (ENOSPC, EFBIG, EIO...) cuts the file back to its last complete
//   snapshot, so what was written before stays readable; the call rejects, and later
//   snapshots may still be written.
// Not supported: two writers appending to one file at once.
import { readSync } from 'node:fs';
import type { AggregationRecord } from './record.js';
import {
  decodeBinary, encodeHeader, encodeSnapshot, markerEntry, HEADER_SIZE,
  type BinaryEntry, type ByteSource, type DecodedBinary,
} from './binary-layout.js';
import {
  ResultFileError, describeFsError, validateSnapshot, type ResultIntervals, type ResultWriter,
} from './result-format.js';
import { RecordingClock } from './recording-clock.js';
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

/** What the file holds so far, on its recording clock. */
interface FileState {
  size: number;
  snapshots: number;
  /** End of the latest snapshot (markers included). */
  lastEndNs: bigint | null;
  /** Per target, the end of its latest entry (markers included). */
  targetEnds: Map<number, bigint>;
  /** Wall-clock ns the existing file was last modified; null for a new file. */
  mtimeNs: bigint | null;
}

function refuse(path: string, why: string, offset?: number): never {
  throw new ResultFileError('not-result-file', path, `refusing to append to ${path}: ${why}`, offset);
}

function checkExisting(path: string, d: DecodedBinary, version: 0 | 2, size: number, mtimeNs: bigint): FileState {
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

  const targetEnds = new Map<number, bigint>();
  let lastEndNs: bigint | null = null;
  for (const s of d.snapshots) {
    // closing entries of earlier writers end past the snapshot before them: the latest
    // end of any entry bounds what comes next, so that the file stays in time order
    if (lastEndNs === null || s.endNs > lastEndNs) lastEndNs = s.endNs;
    for (const e of s.entries) {
      const prev = targetEnds.get(e.targetId);
      if (prev === undefined || s.endNs > prev) targetEnds.set(e.targetId, s.endNs);
    }
  }
  return { size, snapshots: d.snapshots.length, lastEndNs, targetEnds, mtimeNs };
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
    const st = await fh.stat();
    let state: FileState;
    if (st.size === 0) {
      state = { size: 0, snapshots: 0, lastEndNs: null, targetEnds: new Map(), mtimeNs: null };
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
        d = decodeBinary(fileSource(fh, st.size), { skipRegions: true });
      } catch (e) {
        throw openError(path, e, 'read the existing');
      }
      state = checkExisting(path, d, opts.version, st.size, BigInt(Math.round(st.mtimeMs * 1e6)));
    }
    return new BinaryResultWriter(location, fh, opts.version, opts.intervals, state);
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

/** A record's times on the file's clock. */
interface Placed {
  record: AggregationRecord;
  startNs: bigint;
}

class BinaryResultWriter implements ResultWriter {
  readonly format = 'binary' as const;
  private queue: Promise<void> = Promise.resolve();
  private closed: Promise<void> | null = null;
  /** Set when a failed write could not be undone: the file has a broken tail. */
  private broken: ResultFileError | null = null;
  /** Set at the first snapshot. */
  private clock: RecordingClock | null = null;
  /** End of the latest snapshot accepted (queued or written), on the file's clock. */
  private acceptedEndNs: bigint | null;

  readonly path: string;

  constructor(
    private readonly location: ResultLocation,
    private readonly fh: ResultFd,
    readonly version: 0 | 2,
    private readonly intervals: ResultIntervals,
    private readonly state: FileState,
  ) {
    this.path = location.path;
    this.acceptedEndNs = state.lastEndNs;
  }

  writeSnapshot(records: readonly AggregationRecord[]): Promise<void> {
    let placed: Placed[];
    let endNs: bigint;
    try {
      if (this.closed) throw new ResultFileError('closed', this.path, `${this.path}: the writer is closed`);
      validateSnapshot(this.path, records, this.intervals, null);
      this.clock ??= this.state.lastEndNs === null || this.state.mtimeNs === null
        ? RecordingClock.startingAt(minStart(records))
        : RecordingClock.continuing(this.state.lastEndNs, this.state.mtimeNs, minStart(records));
      const clock = this.clock;
      endNs = clock.toFile(records[0]!.endNs);
      if (this.acceptedEndNs !== null && endNs <= this.acceptedEndNs) {
        throw new ResultFileError(
          'invalid-record', this.path,
          `${this.path}: snapshot end ${records[0]!.endNs} ns (${endNs} ns on the file's recording clock) is not after ` +
          `the previous snapshot's end (${this.acceptedEndNs} ns on that clock)`,
        );
      }
      placed = records.map((record) => ({ record, startNs: clock.toFile(record.startNs) }));
    } catch (e) {
      return Promise.reject(e);
    }
    this.acceptedEndNs = endNs;
    // The bytes depend on what earlier writes left in the file: built when this one runs.
    return this.enqueue(async () => {
      const [bytes, count] = this.snapshotBytes(placed, endNs);
      await this.append(bytes, count);
      for (const p of placed) this.state.targetEnds.set(p.record.targetId, endNs);
      this.state.lastEndNs = endNs;
    });
  }

  /** The snapshot, preceded by the opening entries it needs, grouped by their end time. */
  private snapshotBytes(placed: readonly Placed[], endNs: bigint): [Buffer, number] {
    const floor = this.state.lastEndNs ?? 0n;
    const openings = new Map<bigint, BinaryEntry[]>();
    for (const { record, startNs } of placed) {
      const prev = this.state.targetEnds.get(record.targetId);
      if (prev !== undefined && startNs <= prev) continue; // continues its previous entry
      let at = startNs < floor ? floor : startNs;
      if (at > endNs) at = endNs;
      if (prev !== undefined && at >= endNs) continue; // no room for a gap marker
      openings.set(at, [...(openings.get(at) ?? []), markerEntry(record.targetId, record.regions[0]?.start ?? 0)]);
    }
    const parts = [...openings.keys()]
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .map((at) => encodeSnapshot(at, openings.get(at)!, this.version));
    parts.push(encodeSnapshot(endNs, placed.map((p) => p.record), this.version));
    return [parts.length === 1 ? parts[0]! : Buffer.concat(parts), parts.length];
  }

  private enqueue(job: () => Promise<void>): Promise<void> {
    const p = this.queue.then(job);
    this.queue = p.catch(() => undefined); // a failed snapshot does not stop later ones
    return p;
  }

  /** Appends `count` snapshots' bytes in one write, or cuts the file back to before them. */
  private async append(bytes: Buffer, count: number): Promise<void> {
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
    this.state.snapshots += count;
  }

  close(): Promise<void> {
    this.closed ??= this.finish();
    return this.closed;
  }

  private async finish(): Promise<void> {
    await this.queue;
    let failure: unknown = null;
    try {
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

/** The earliest start of a snapshot's records (they share one end, not always one start). */
function minStart(records: readonly AggregationRecord[]): bigint {
  return records.reduce((m, r) => (r.startNs < m ? r.startNs : m), records[0]!.startNs);
}
