// Writes damo's JSON record formats (`json`, `json_compressed`). Both are one document,
// a list of per-target records, that cannot be appended to: the writer keeps every
// snapshot (as ready-made JSON text) in memory and rewrites the whole file atomically:
// a temporary file beside it, fsync, then rename over it. A reader, or a crash, sees the
// previous complete document or the new one, never a partial one.
//
// When it rewrites: when the file is opened, on close(), and in between at a bounded
// rate: a writeSnapshot() rewrites once `rewriteIntervalMs` (default 1 s) has passed
// since the last rewrite started, and never sooner than 10× the last rewrite's duration,
// so rewriting takes at most about a tenth of the time however large the file grows.
//
// The trade-off, against the binary format: memory and rewrite cost grow with the
// recording (each rewrite is O(file size)), and a crash loses the snapshots since the
// last rewrite (at most about one interval); the binary format appends O(1) per snapshot
// and loses at most the snapshot being written. Use JSON for bounded recordings that
// damo's current reports should read; use binary for long ones.
//
// A target that appears in only one snapshot is written as it is: JSON stores each
// snapshot's start_time, so damo's JSON reader needs no second snapshot to derive it
// (damo derives start times only for its binary and perf-script inputs).
//
// An existing non-empty file is continued if it is a result file of the same format
// with the same intervals and complete records (ages and start times); otherwise opening
// is refused rather than overwriting it. A failed rewrite (ENOSPC...) leaves the previous
// document in place, rejects that call, and is retried at the next due rewrite.
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { createDeflate } from 'node:zlib';
import type { AggregationRecord } from './record.js';
import { documentPieces, encodeSnapshotFragment, encodeTargetHead } from './json-layout.js';
import {
  ResultFileError, describeFsError, maxNrAccessesOf, validateSnapshot, type ResultIntervals, type ResultWriter,
} from './result-format.js';
import { openError, writeAll, type ResultLocation, type TempFile } from './result-location.js';
import { decodeJsonBytes } from './result-reader.js';

export interface JsonWriterOptions {
  format: 'json' | 'json_compressed';
  intervals: ResultIntervals;
  /** Least time between two rewrites before close(); default 1000 ms. */
  rewriteIntervalMs?: number;
  /** Milliseconds clock for the rewrite rate; default performance.now. */
  clock?: () => number;
}

interface TargetText {
  head: string;
  fragments: string[];
}

/** The document's pieces joined into buffers of about 256 KiB: fewer, larger writes. */
function* batches(pieces: Iterable<string>): Generator<Buffer> {
  let parts: string[] = [];
  let size = 0;
  for (const p of pieces) {
    parts.push(p);
    size += p.length;
    if (size >= 256 * 1024) {
      yield Buffer.from(parts.join(''), 'utf8');
      parts = [];
      size = 0;
    }
  }
  if (parts.length > 0) yield Buffer.from(parts.join(''), 'utf8');
}

/** A rewrite that could not even create its temporary file: the directory is unwritable. */
class TempFileError extends ResultFileError {}

/** Opens the JSON writer of `location`; it closes the location when it is closed. */
export async function openJsonWriter(location: ResultLocation, opts: JsonWriterOptions): Promise<ResultWriter> {
  const path = location.path;
  const st = await location.existing();
  const w = new JsonResultWriter(location, opts, st === null ? null : st.mode & 0o7777);
  if (st !== null && st.size > 0) await w.continueExisting();
  try {
    await w.rewrite();
  } catch (e) {
    // The first rewrite is where an unwritable path shows: report it as an open failure.
    const cause = e instanceof ResultFileError ? e.cause : e;
    const inDir = e instanceof TempFileError ? ` (cannot create files in ${dirname(path)})` : '';
    throw new ResultFileError('open', path, `cannot open result file ${path}: ${describeFsError(cause, path)}${inDir}`, undefined, { cause });
  }
  return w;
}

class JsonResultWriter implements ResultWriter {
  readonly version = null;
  readonly format: 'json' | 'json_compressed';
  private readonly intervals: ResultIntervals;
  private readonly rewriteIntervalMs: number;
  private readonly clock: () => number;
  /** In order of first appearance: the document's order. */
  private readonly targets = new Map<number, TargetText>();
  private snapshots = 0;
  private lastEndNs: bigint | null = null;
  private writtenSnapshots = 0;
  private dirty = false;
  private lastRewriteStart = -Infinity;
  private lastRewriteMs = 0;
  /** Rewrites queued or running, and the promise the next one waits for. */
  private pending = 0;
  private chain: Promise<void> = Promise.resolve();
  private closed: Promise<void> | null = null;

  readonly path: string;

  /** `mode`: the existing file's permissions, kept across rewrites; null for a new file. */
  constructor(private readonly location: ResultLocation, opts: JsonWriterOptions, private readonly mode: number | null) {
    this.path = location.path;
    this.format = opts.format;
    this.intervals = opts.intervals;
    this.rewriteIntervalMs = opts.rewriteIntervalMs ?? 1000;
    this.clock = opts.clock ?? (() => performance.now());
  }

  /** Loads an existing document so that the rewrites keep its snapshots. */
  async continueExisting(): Promise<void> {
    const refuse = (why: string, cause?: unknown): never => {
      throw new ResultFileError('not-result-file', this.path, `refusing to overwrite ${this.path}: ${why}`, undefined, { cause });
    };
    let bytes: Buffer;
    try {
      bytes = await this.location.readExisting();
    } catch (e) {
      throw openError(this.path, e, 'read the existing');
    }
    let decoded: ReturnType<typeof decodeJsonBytes>;
    try {
      decoded = decodeJsonBytes(bytes, this.path);
    } catch (e) {
      return refuse(`it is not a readable ${this.format} result file (${(e as Error).message})`, e);
    }
    if (decoded === null) return refuse(`it is not a ${this.format} result file (it is neither JSON nor zlib data)`);
    if (decoded.format !== this.format) return refuse(`it is a ${decoded.format} result file, and ${this.format} was asked for`);
    const i = this.intervals;
    const ends = new Set<bigint>();
    for (const rec of decoded.records) {
      const ri = rec.intervals;
      if (ri === null || ri.sampleUs !== i.sampleUs || ri.aggrUs !== i.aggrUs || ri.opsUpdateUs !== i.opsUpdateUs) {
        refuse(
          `its target ${rec.targetId} was recorded with intervals ${ri === null ? 'null' : `${ri.sampleUs}/${ri.aggrUs}/${ri.opsUpdateUs}`} us ` +
          `(sample/aggr/ops_update), this writer's are ${i.sampleUs}/${i.aggrUs}/${i.opsUpdateUs} us`,
        );
      }
      const t: TargetText = { head: encodeTargetHead(rec.targetId, i), fragments: [] };
      if (this.targets.has(rec.targetId)) refuse(`target ${rec.targetId} has two records`);
      this.targets.set(rec.targetId, t);
      for (const s of rec.snapshots) {
        if (s.startNs === null || s.regions.some((g) => g.age === null)) {
          refuse(`target ${rec.targetId}'s snapshot ending at ${s.endNs} ns lacks a start time or region ages`);
        }
        const record: AggregationRecord = {
          targetId: rec.targetId, startNs: s.startNs!, endNs: s.endNs, maxNrAccesses: maxNrAccessesOf(i),
          regions: s.regions.map((g) => ({ start: g.start, end: g.end, nrAccesses: g.nrAccesses, age: g.age! })),
        };
        t.fragments.push(encodeSnapshotFragment(record, i));
        ends.add(s.endNs);
        if (this.lastEndNs === null || s.endNs > this.lastEndNs) this.lastEndNs = s.endNs;
      }
    }
    this.snapshots = ends.size;
    this.writtenSnapshots = ends.size;
  }

  writeSnapshot(records: readonly AggregationRecord[]): Promise<void> {
    try {
      if (this.closed) throw new ResultFileError('closed', this.path, `${this.path}: the writer is closed`);
      validateSnapshot(this.path, records, this.intervals, this.lastEndNs);
    } catch (e) {
      return Promise.reject(e);
    }
    this.lastEndNs = records[0]!.endNs;
    for (const r of records) {
      let t = this.targets.get(r.targetId);
      if (t === undefined) this.targets.set(r.targetId, (t = { head: encodeTargetHead(r.targetId, this.intervals), fragments: [] }));
      t.fragments.push(encodeSnapshotFragment(r, this.intervals));
    }
    this.snapshots++;
    this.dirty = true;
    const due = this.pending === 0 &&
      this.clock() - this.lastRewriteStart >= Math.max(this.rewriteIntervalMs, 10 * this.lastRewriteMs);
    return due ? this.rewrite() : Promise.resolve();
  }

  /** Rewrites the file with every snapshot accepted so far; rewrites run one at a time. */
  rewrite(): Promise<void> {
    this.pending++;
    const p = this.chain.then(async () => {
      const startedAt = this.clock();
      this.lastRewriteStart = startedAt;
      this.dirty = false;
      try {
        await this.writeDocument();
      } catch (e) {
        this.dirty = true;
        throw e;
      } finally {
        this.lastRewriteMs = Math.max(0, this.clock() - startedAt);
        this.pending--;
      }
    });
    this.chain = p.catch(() => undefined); // a failed rewrite does not block the next
    return p;
  }

  private async writeDocument(): Promise<void> {
    // A consistent view: the snapshots accepted before this rewrite started.
    const view = [...this.targets.values()].map((t) => ({ head: t.head, fragments: t.fragments.slice() }));
    const count = this.snapshots;
    let tmp: TempFile;
    try {
      tmp = await this.location.createTemp(this.mode ?? 0o644);
    } catch (e) {
      throw new TempFileError(
        'write', this.path,
        `cannot create the temporary file beside ${this.path} to rewrite it: ${describeFsError(e, this.path)}` + this.keptNote(),
        undefined, { cause: e },
      );
    }
    const fh = tmp.file;
    try {
      if (this.mode !== null) await fh.chmod(this.mode); // open() applied the umask
      const text = Readable.from(batches(documentPieces(view)));
      const bytes = this.format === 'json_compressed' ? text.pipe(createDeflate()) : text;
      for await (const chunk of bytes) await writeAll(fh, chunk as Buffer);
      await fh.sync();
      await fh.close();
      await this.location.commitTemp(tmp.name);
    } catch (e) {
      await fh.close().catch(() => undefined);
      await this.location.discardTemp(tmp.name).catch(() => undefined);
      throw new ResultFileError(
        'write', this.path, `rewriting ${this.path} failed: ${describeFsError(e, this.path)}` + this.keptNote(),
        undefined, { cause: e },
      );
    }
    this.writtenSnapshots = count;
  }

  private keptNote(): string {
    return `; the file keeps its previous complete document (${this.writtenSnapshots} snapshot(s)), ` +
      'and the writer keeps every snapshot for its next rewrite';
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.chain;
      try {
        if (this.dirty) await this.rewrite();
      } finally {
        this.targets.clear();
        this.location.close();
      }
    })();
    return this.closed;
  }
}
