// Sessions in the JetStream KV bucket damon_sessions (key = session id, value = JSON).
// Every change is a compare-and-set on the entry's revision; a conflicting writer re-reads
// and re-applies its change, so concurrent writers never lose each other's updates.
// Every entry read is checked against the session schema; one that breaks it is
// quarantined (scan() lists it apart, get() answers FAILED_PRECONDITION, delete() removes it).
import * as grpc from '@grpc/grpc-js';
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { RpcError } from '../common/grpc-server.js';
import { excerpt } from '../common/log.js';
import { openBucket } from '../common/nats.js';
import { MAX_SESSION_ID_CHARS } from '../common/session-schema.js';
import { SESSIONS_BUCKET, SESSIONS_KEY_PREFIX, SESSIONS_STREAM } from '../common/subjects.js';
import { StoredSessionError, decodeStoredSession, type StoredSession } from './session-model.js';

/** A session and the revision of its bucket entry. */
export interface Versioned {
  session: StoredSession;
  revision: number;
}

/** A bucket entry that breaks the session schema: listed, never dispatched, deletable. */
export interface Quarantined {
  /** The entry's key, as an excerpt. */
  id: string;
  revision: number;
  /** What is wrong with it, as an excerpt. */
  error: string;
}

/** Every entry of the bucket, by key, as one listing saw them. */
export interface Listing {
  sessions: Versioned[];
  quarantined: Quarantined[];
  /**
   * The bucket stream's last sequence when the keys were listed: every entry written later
   * (and so every generation turned on later) has a greater revision.
   */
  seq: number;
}

/** Longest error text of a quarantined entry. */
const MAX_QUARANTINE_ERROR_CHARS = 300;

/** What a read-modify-write did. */
export interface UpdateResult {
  before: Versioned;
  after: Versioned;
  /** False when the mutation asked for no change (nothing was written). */
  changed: boolean;
}

/**
 * Computes the next value from the current one (a copy: mutate it freely). Returns undefined
 * for "no change"; throws (RpcError) to refuse.
 */
export type Mutation = (current: StoredSession, revision: number) => StoredSession | undefined;

function isCasConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

function notFound(id: string): RpcError {
  return new RpcError(grpc.status.NOT_FOUND, `session "${id}" not found`);
}

const MAX_ATTEMPTS = 100;

/**
 * Largest session entry written: NATS's default max_payload (1 MiB) less room for the
 * headers a KV put carries. The schema's limits keep every entry far below it
 * (common/session-schema.ts); this guard turns a breach into RESOURCE_EXHAUSTED rather
 * than the server's error.
 */
const MAX_ENTRY_BYTES = 1024 * 1024 - 4096;

function encode(s: StoredSession): string {
  const json = JSON.stringify(s);
  const bytes = Buffer.byteLength(json);
  if (bytes > MAX_ENTRY_BYTES) {
    throw new RpcError(grpc.status.RESOURCE_EXHAUSTED, `session "${s.id}" would be ${bytes} bytes stored; an entry has at most ${MAX_ENTRY_BYTES}`);
  }
  return json;
}

/** Tells a quarantined entry from a session in what read() returns. */
export function isQuarantined(v: Versioned | Quarantined): v is Quarantined {
  return 'error' in v;
}

/** A stored value that is not a valid session: readable by nobody, deletable. */
class BrokenSessionError extends RpcError {
  constructor(readonly revision: number, readonly broken: StoredSessionError) {
    super(grpc.status.FAILED_PRECONDITION, `${broken.message}; delete it (DeleteSession) and create it again`);
    this.name = 'BrokenSessionError';
  }
}

/**
 * Fencing of writes (controller/leadership.ts): every entry carries the epoch of the leader
 * that wrote it, and a writer whose epoch is lower than an entry's was deposed.
 */
export interface WriteFence {
  /** The writer's epoch; throws (UNAVAILABLE) when it does not lead. */
  epoch(): bigint;
  /** Called when an entry shows a newer leader. */
  deposed(why: string): void;
}

const UNFENCED: WriteFence = { epoch: () => 0n, deposed: () => undefined };

export class SessionStore {
  /** Compare-and-set conflicts that were resolved by re-reading (for logs and tests). */
  conflicts = 0;

  private constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly now: () => number,
    private readonly fence: WriteFence,
  ) {}

  /**
   * Opens (creating if needed) the damon_sessions bucket with `replicas` copies (default 1);
   * an existing bucket with another count is changed to it (JetStream moves the data).
   */
  static async open(js: JetStreamClient, now: () => number = Date.now, fence: WriteFence = UNFENCED, replicas = 1): Promise<SessionStore> {
    const kv = await openBucket(js, SESSIONS_BUCKET, replicas);
    return new SessionStore(kv, await js.jetstreamManager(), now, fence);
  }

  /** This writer's epoch, refused (and reported) when `entry` was written by a newer leader. */
  private writerEpoch(entry?: StoredSession): string {
    const mine = this.fence.epoch();
    const theirs = BigInt(entry?.epoch ?? 0);
    if (theirs > mine) {
      const why = `session "${entry!.id}" was written by the leader of epoch ${theirs}, this controller's is ${mine}`;
      this.fence.deposed(why);
      throw new RpcError(grpc.status.UNAVAILABLE, `this controller no longer leads (${why}): retry, and the leader answers`);
    }
    return String(mine);
  }

  /** The session, or null when there is none. */
  async get(id: string): Promise<Versioned | null> {
    const e = await this.kv.get(id);
    if (!e || e.operation !== 'PUT') return null;
    try {
      return { session: decodeStoredSession(id, e.string()), revision: e.revision };
    } catch (err) {
      if (err instanceof StoredSessionError) throw new BrokenSessionError(e.revision, err);
      throw err;
    }
  }

  /** The session, or NOT_FOUND. */
  async mustGet(id: string): Promise<Versioned> {
    const v = await this.get(id);
    if (!v) throw notFound(id);
    return v;
  }

  /** Every key in the bucket, sorted, and the stream sequence they were listed at. */
  async keys(): Promise<{ keys: string[]; seq: number }> {
    // The stream's subject list, not kv.keys(): its consumer only ends on an idle heartbeat
    // when keys are written meanwhile (up to 30 s), which would stall the reconcile loop.
    const prefix = SESSIONS_KEY_PREFIX;
    const info = await this.jsm.streams.info(SESSIONS_STREAM, { subjects_filter: `${prefix}>` });
    const keys = Object.keys(info.state.subjects ?? {})
      .map((subject) => subject.slice(prefix.length))
      .sort();
    return { keys, seq: info.state.last_seq };
  }

  /** The entry at `key`: a session, a quarantined entry, or null (none, or deleted). */
  async read(key: string): Promise<Versioned | Quarantined | null> {
    try {
      return await this.get(key);
    } catch (err) {
      if (!(err instanceof BrokenSessionError)) throw err;
      return { id: excerpt(key, MAX_SESSION_ID_CHARS), revision: err.revision, error: excerpt(err.broken.message, MAX_QUARANTINE_ERROR_CHARS) };
    }
  }

  /** Every entry: valid sessions, and the broken ones apart (one must not hide the others). */
  async scan(): Promise<Listing> {
    const { keys, seq } = await this.keys();
    const out: Listing = { sessions: [], quarantined: [], seq };
    for (const k of keys) {
      const v = await this.read(k); // may have been deleted since the listing
      if (v === null) continue;
      if (isQuarantined(v)) out.quarantined.push(v);
      else out.sessions.push(v);
    }
    return out;
  }

  /** Every valid session, by id. */
  async list(): Promise<Versioned[]> {
    return (await this.scan()).sessions;
  }

  /** Stores a new session; ALREADY_EXISTS when the id is taken. */
  async create(s: StoredSession): Promise<Versioned> {
    s.epoch = this.writerEpoch();
    try {
      const revision = await this.kv.create(s.id, encode(s));
      return { session: s, revision };
    } catch (err) {
      if (isCasConflict(err)) throw new RpcError(grpc.status.ALREADY_EXISTS, `session "${s.id}" already exists`);
      throw err;
    }
  }

  /**
   * Read-modify-write by compare-and-set. On a conflict (someone else wrote in between) it
   * re-reads and applies `mutate` again. With `expectedRevision` (non-zero) the caller asks for
   * its own compare-and-set: ABORTED unless the session is at that revision.
   */
  async update(id: string, mutate: Mutation, expectedRevision = 0): Promise<UpdateResult> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const before = await this.mustGet(id);
      if (expectedRevision !== 0 && before.revision !== expectedRevision) {
        throw new RpcError(
          grpc.status.ABORTED,
          `session "${id}" is at revision ${before.revision}, not the expected ${expectedRevision}: re-read and retry`,
        );
      }
      const epoch = this.writerEpoch(before.session);
      const next = mutate(structuredClone(before.session), before.revision);
      if (next === undefined) return { before, after: before, changed: false };
      next.updatedAtMs = this.now();
      next.epoch = epoch;
      try {
        const revision = await this.kv.update(id, encode(next), before.revision);
        return { before, after: { session: next, revision }, changed: true };
      } catch (err) {
        if (!isCasConflict(err)) throw err;
        this.conflicts++;
        // A few ms of jitter so racing writers do not collide in lockstep.
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(2 + attempt, 20)));
      }
    }
    throw new RpcError(grpc.status.ABORTED, `session "${id}": too many concurrent updates, retry`);
  }

  /**
   * Deletes the session if `check` (which throws to refuse) passes on its current value, by
   * compare-and-set. A broken entry is deleted unchecked: nothing can use it.
   */
  async delete(id: string, check: (s: StoredSession) => void): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let revision: number;
      try {
        const v = await this.mustGet(id);
        this.writerEpoch(v.session);
        check(v.session);
        revision = v.revision;
      } catch (err) {
        if (!(err instanceof BrokenSessionError)) throw err;
        this.writerEpoch();
        revision = err.revision;
      }
      try {
        await this.kv.delete(id, { previousSeq: revision });
        return;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
        this.conflicts++;
      }
    }
    throw new RpcError(grpc.status.ABORTED, `session "${id}": too many concurrent updates, retry`);
  }
}
