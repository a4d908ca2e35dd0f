// The agent's spool of unpublished records, on disk in DATA_DIR/spool: every record is
// appended before it is published, and forgotten once JetStream acknowledged it, so a
// kill (even -9) loses nothing queued: the next start publishes the rest (Nats-Msg-Id
// de-duplicates what was published but not yet marked). Bounded by bytes: beyond the
// bound the oldest queued records are dropped, counted per target for dropped_before.
// It also keeps each target's last record sequence, so sequences survive restarts.
//
// Files (0600 in a 0700 directory): segments <first id, 16 hex>.seg of entries
// [u32 body length][u32 crc32 of body][body], state.json (replaced by rename), and a lock
// naming the agent's pid. A kill
// mid-append leaves a torn last entry, which the next start cuts off; nothing else changes.
import { closeSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { errorMessage, type Logger } from '../../common/log.js';

/** Default bound of what the spool holds (--spool-max-bytes). */
export const DEFAULT_SPOOL_MAX_BYTES = 64 * 1024 * 1024;
/** Smallest bound: a few records of the largest size. */
export const MIN_SPOOL_BYTES = 4 * 1024 * 1024;
/** Sequences of targets without a record for this long are forgotten (a new record of one starts at 1). */
export const SEQUENCE_KEEP_MS = 7 * 24 * 3600_000;
const MAX_DROP_NOTES = 10_000;
const ENTRY_VERSION = 1;
const HEADER = 8;

export interface SpoolEntry {
  /** Position in the spool: increasing, across restarts too. */
  readonly id: number;
  readonly subject: string;
  readonly msgId: string;
  readonly sequence: bigint;
  readonly data: Uint8Array;
  /** Bytes on disk. */
  readonly size: number;
  /** dropped_before given to it at its first send (kept for retries). */
  droppedBefore?: bigint;
  onPublished?: () => void;
}

interface Segment {
  firstId: number;
  lastId: number;
  path: string;
  bytes: number;
}

interface StateFile {
  version: 1;
  /** Every entry with an id up to this is published or dropped. */
  head: number;
  /** subject -> [last sequence, last use in ms since the epoch]. */
  sequences: Record<string, [string, number]>;
  /** subject -> [records dropped and not yet reported, id of the last one dropped]. */
  drops: Record<string, [string, number]>;
}

export interface SpoolOptions {
  maxBytes?: number;
  /** Segment size; default maxBytes / 16 within [64 KiB, 4 MiB]. */
  segmentBytes?: number;
  log: Logger;
}

/** A spool that cannot be used (its directory or files); the agent cannot start. */
export class SpoolError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SpoolError';
  }
}

function encodeEntry(id: number, subject: string, msgId: string, seq: bigint, data: Uint8Array): Buffer {
  const subj = Buffer.from(subject);
  const mid = Buffer.from(msgId);
  const bodyLen = 1 + 8 + 8 + 2 + subj.length + 2 + mid.length + data.length;
  const buf = Buffer.allocUnsafe(HEADER + bodyLen);
  let o = HEADER;
  buf.writeUInt8(ENTRY_VERSION, o++);
  buf.writeBigUInt64LE(BigInt(id), o);
  buf.writeBigUInt64LE(seq, (o += 8));
  buf.writeUInt16LE(subj.length, (o += 8));
  subj.copy(buf, (o += 2));
  buf.writeUInt16LE(mid.length, (o += subj.length));
  mid.copy(buf, (o += 2));
  buf.set(data, o + mid.length);
  buf.writeUInt32LE(bodyLen, 0);
  buf.writeUInt32LE(crc32(buf.subarray(HEADER)), 4);
  return buf;
}

/** Entries of one segment file, and the length of its readable prefix. */
function readSegment(buf: Buffer): { entries: Omit<SpoolEntry, 'onPublished'>[]; good: number } {
  const entries: Omit<SpoolEntry, 'onPublished'>[] = [];
  let o = 0;
  while (o + HEADER <= buf.length) {
    const len = buf.readUInt32LE(o);
    if (len < 21 || o + HEADER + len > buf.length) break;
    const body = buf.subarray(o + HEADER, o + HEADER + len);
    if (crc32(body) !== buf.readUInt32LE(o + 4) || body[0] !== ENTRY_VERSION) break;
    let p = 1;
    const id = Number(body.readBigUInt64LE(p));
    const sequence = body.readBigUInt64LE((p += 8));
    const sl = body.readUInt16LE((p += 8));
    const subject = body.toString('utf8', (p += 2), p + sl);
    const ml = body.readUInt16LE((p += sl));
    const msgId = body.toString('utf8', (p += 2), p + ml);
    const data = new Uint8Array(body.subarray(p + ml)); // a copy: the file buffer goes
    entries.push({ id, subject, msgId, sequence, data, size: HEADER + len });
    o += HEADER + len;
  }
  return { entries, good: o };
}

export class RecordSpool {
  readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly log: Logger;
  private readonly segments: Segment[] = [];
  private fd: number | undefined;
  private nextId = 1;
  private head = 0;
  /** Queued (not sent or sent and failed), in id order. */
  private queue: SpoolEntry[] = [];
  private readonly inflight = new Set<SpoolEntry>();
  private liveBytes = 0;
  private readonly sequences = new Map<string, { seq: bigint; usedMs: number }>();
  /** Per target: records dropped and not yet reported (`claimed` of them given to entries in flight). */
  private readonly drops = new Map<string, { count: bigint; lastId: number; claimed: bigint }>();
  private saveScheduled = false;
  private lockPath: string | undefined;
  private closed = false;
  /** Records dropped because the spool was full, since it was opened. */
  dropped = 0;

  private constructor(
    readonly dir: string,
    opts: SpoolOptions,
  ) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_SPOOL_MAX_BYTES;
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 1) throw new SpoolError(`spool bound ${this.maxBytes}: a positive number of bytes`);
    this.segmentBytes = opts.segmentBytes ?? Math.min(4 << 20, Math.max(64 << 10, Math.floor(this.maxBytes / 16)));
    this.log = opts.log;
  }

  /** Opens (creating) the spool in `dir`, taking back what an earlier run left queued. */
  static open(dir: string, opts: SpoolOptions): RecordSpool {
    const s = new RecordSpool(dir, opts);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      s.lock();
      s.load();
    } catch (err) {
      if (err instanceof SpoolError) throw err;
      throw new SpoolError(`record spool ${dir}: ${errorMessage(err)}`, { cause: err });
    }
    return s;
  }

  /**
   * Two agents on one data directory would interleave their files: the second refuses to
   * start. A lock left by a process that is gone (a kill) is taken over.
   */
  private lock(): void {
    const path = join(this.dir, 'lock');
    let holder: number | undefined;
    try {
      holder = Number(readFileSync(path, 'utf8').trim());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (holder !== undefined && holder !== process.pid && isAgentProcess(holder)) {
      throw new SpoolError(`record spool ${this.dir} is in use by process ${holder} (another agent with this data directory?)`);
    }
    writeFileSync(`${path}.tmp`, `${process.pid}\n`, { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
    this.lockPath = path;
  }

  private load(): void {
    const statePath = join(this.dir, 'state.json');
    let state: StateFile | undefined;
    try {
      state = JSON.parse(readFileSync(statePath, 'utf8')) as StateFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn(`record spool: ${statePath} unreadable (${errorMessage(err)}); starting from the segments alone`);
    }
    const now = Date.now();
    if (state?.version === 1) {
      this.head = state.head;
      for (const [k, [seq, used]] of Object.entries(state.sequences ?? {})) {
        if (now - used < SEQUENCE_KEEP_MS) this.sequences.set(k, { seq: BigInt(seq), usedMs: used });
      }
      for (const [k, [count, lastId]] of Object.entries(state.drops ?? {})) this.drops.set(k, { count: BigInt(count), lastId, claimed: 0n });
    }
    const files = readdirSync(this.dir).filter((f) => /^[0-9a-f]{16}\.seg$/.test(f)).sort();
    let recovered = 0;
    for (const f of files) {
      const path = join(this.dir, f);
      const buf = readFileSync(path);
      const { entries, good } = readSegment(buf);
      if (good < buf.length) {
        this.log.warn(`record spool: ${f}: ${buf.length - good} bytes after entry ${entries.at(-1)?.id ?? 'none'} unreadable (a write cut short); cut off`);
        const fd = openSync(path, 'r+');
        try {
          ftruncateSync(fd, good);
        } finally {
          closeSync(fd);
        }
      }
      if (entries.length === 0) {
        unlinkSync(path); // created just before a kill: nothing in it
        continue;
      }
      const firstId = parseInt(f.slice(0, 16), 16);
      this.segments.push({ firstId, lastId: entries.at(-1)!.id, path, bytes: good });
      for (const e of entries) {
        this.nextId = Math.max(this.nextId, e.id + 1);
        const known = this.sequences.get(e.subject);
        if (!known || known.seq < e.sequence) this.sequences.set(e.subject, { seq: e.sequence, usedMs: now });
        if (e.id <= this.head) continue;
        this.queue.push(e);
        this.liveBytes += e.size;
        recovered++;
      }
    }
    this.nextId = Math.max(this.nextId, this.head + 1);
    if (recovered > 0) this.log.info(`record spool: ${recovered} records from an earlier run to publish`);
    this.trim(0);
    this.removeFinishedSegments();
  }

  /** The next record sequence of a target (its subject): last one + 1, from 1. */
  nextSequence(subject: string): bigint {
    const s = this.sequences.get(subject);
    const seq = (s?.seq ?? 0n) + 1n;
    this.sequences.set(subject, { seq, usedMs: Date.now() });
    return seq;
  }

  /** Appends a record (written before this returns); the oldest queued are dropped beyond the bound. */
  append(subject: string, msgId: string, sequence: bigint, data: Uint8Array): SpoolEntry {
    if (this.closed) throw new SpoolError('record spool closed');
    // nextId moves only once the entry is written: a checkpoint while rolling must not count it done.
    const id = this.nextId;
    const buf = encodeEntry(id, subject, msgId, sequence, data);
    if (buf.length > this.maxBytes) {
      this.nextId++;
      this.noteDrop(subject, id);
      throw new SpoolError(`a record of ${buf.length} bytes does not fit the spool (${this.maxBytes} bytes); dropped`);
    }
    this.trim(buf.length);
    try {
      if (this.fd === undefined || this.segments.at(-1)!.bytes >= this.segmentBytes) this.roll(id);
      let written = 0;
      while (written < buf.length) written += writeSync(this.fd!, buf, written);
    } catch (err) {
      // The segment may end in a torn entry now: start a new one for the next append.
      if (this.fd !== undefined) closeSync(this.fd);
      this.fd = undefined;
      this.nextId++;
      this.noteDrop(subject, id);
      throw new SpoolError(`cannot write the record spool: ${errorMessage(err)}; record dropped`, { cause: err });
    }
    this.nextId++;
    const seg = this.segments.at(-1)!;
    seg.bytes += buf.length;
    seg.lastId = id;
    const e: SpoolEntry = { id, subject, msgId, sequence, data, size: buf.length };
    this.queue.push(e);
    this.liveBytes += e.size;
    return e;
  }

  /** Drops the oldest queued entries until `incoming` more bytes fit (entries in flight stay). */
  private trim(incoming: number): void {
    let n = 0;
    while (this.liveBytes + incoming > this.maxBytes && this.queue.length > 0) {
      const e = this.queue.shift()!;
      this.liveBytes -= e.size;
      // A retried entry gives back the drops it was to report, and adds itself.
      const d = this.drops.get(e.subject);
      if (d && e.droppedBefore) d.claimed -= e.droppedBefore;
      this.noteDrop(e.subject, e.id);
      n++;
    }
    if (n === 0) return;
    if (this.dropped === 0 || this.dropped % 1000 < n) {
      this.log.warn(`record spool full (${this.maxBytes} bytes): dropped the oldest records (${this.dropped + n} since start); they show as dropped_before on the next record of their target`);
    }
    this.dropped += n;
  }

  /** Counts a dropped record against its target, for the dropped_before of its next one. */
  private noteDrop(subject: string, id: number): void {
    const d = this.drops.get(subject);
    this.drops.delete(subject); // re-inserted last: the oldest notes go first beyond the bound
    this.drops.set(subject, { count: (d?.count ?? 0n) + 1n, lastId: id, claimed: d?.claimed ?? 0n });
    while (this.drops.size > MAX_DROP_NOTES) this.drops.delete(this.drops.keys().next().value!);
    this.changed();
  }

  private roll(firstId: number): void {
    // Finished segments go now, not only at the next checkpoint: the files stay bounded
    // while appends come faster than the event loop turns.
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
      this.checkpoint();
    }
    const path = join(this.dir, `${firstId.toString(16).padStart(16, '0')}.seg`);
    this.fd = openSync(path, 'a', 0o600);
    this.segments.push({ firstId, lastId: firstId - 1, path, bytes: 0 });
  }

  /** The oldest queued entry, now in flight; undefined when none is queued. */
  take(): SpoolEntry | undefined {
    const e = this.queue.shift();
    if (e) this.inflight.add(e);
    return e;
  }

  /**
   * dropped_before for an entry at its first send: records of its target dropped before
   * it that no other entry reports; they are its to report until it is published.
   */
  claimDroppedBefore(e: SpoolEntry): bigint {
    const d = this.drops.get(e.subject);
    if (!d || d.lastId > e.id) return 0n;
    const n = d.count - d.claimed;
    d.claimed += n;
    return n;
  }

  /** The entry was published: forgotten (with the drops it reported). */
  done(e: SpoolEntry): void {
    if (!this.inflight.delete(e)) return;
    this.liveBytes -= e.size;
    if (e.droppedBefore) {
      const d = this.drops.get(e.subject);
      if (d) {
        d.count -= e.droppedBefore;
        d.claimed -= e.droppedBefore;
        if (d.count <= 0n) this.drops.delete(e.subject);
      }
    }
    this.changed();
  }

  /** The entries' publish failed: queued again, in front, in order. */
  requeue(e: SpoolEntry): void {
    if (!this.inflight.delete(e)) return;
    let i = 0;
    while (i < this.queue.length && this.queue[i].id < e.id) i++;
    this.queue.splice(i, 0, e);
  }

  get queued(): number {
    return this.queue.length + this.inflight.size;
  }

  get bytes(): number {
    return this.liveBytes;
  }

  /** The id below which every entry is published or dropped. */
  oldestLiveId(): number {
    let min = this.queue[0]?.id ?? this.nextId;
    for (const e of this.inflight) min = Math.min(min, e.id);
    return min;
  }

  lastId(): number {
    return this.nextId - 1;
  }

  /** State is saved once per turn of the event loop at most, then finished segments go. */
  private changed(): void {
    if (this.saveScheduled || this.closed) return;
    this.saveScheduled = true;
    setImmediate(() => {
      this.saveScheduled = false;
      if (!this.closed) this.checkpoint();
    });
  }

  private checkpoint(): void {
    try {
      this.saveState();
      this.removeFinishedSegments();
    } catch (err) {
      this.log.error(`record spool: saving state failed: ${errorMessage(err)} (records already published may be published again after a restart)`);
    }
  }

  private saveState(): void {
    this.head = this.oldestLiveId() - 1;
    const state: StateFile = {
      version: 1,
      head: this.head,
      sequences: Object.fromEntries([...this.sequences].map(([k, v]) => [k, [v.seq.toString(), v.usedMs]])),
      drops: Object.fromEntries([...this.drops].map(([k, v]) => [k, [v.count.toString(), v.lastId]])),
    };
    const path = join(this.dir, 'state.json');
    writeFileSync(`${path}.tmp`, JSON.stringify(state), { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
  }

  /** Segments whose entries are all published or dropped (never the one being appended to). */
  private removeFinishedSegments(): void {
    const live = this.oldestLiveId();
    while (this.segments.length > 0) {
      const s = this.segments[0];
      const current = this.fd !== undefined && s === this.segments.at(-1);
      if (current || s.lastId >= live) break;
      this.segments.shift();
      unlinkSync(s.path);
    }
  }

  /** Saves the state and closes the files; what is still queued stays for the next start. */
  close(): void {
    if (this.closed) return;
    this.checkpoint();
    this.closed = true;
    if (this.fd !== undefined) {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = undefined;
    }
    if (this.lockPath) rmSync(this.lockPath, { force: true });
  }

  /** Bytes of the spool's files on disk (for tests and logs). */
  diskBytes(): number {
    return this.segments.reduce((a, s) => a + (statSafe(s.path) ?? 0), 0);
  }
}

/** Whether `pid` is a live damon-fleet process (a pid reused by anything else after a reboot is not). */
function isAgentProcess(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('damon-fleet');
  } catch {
    return false;
  }
}

function statSafe(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}
