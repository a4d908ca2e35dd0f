// Sessions in the JetStream KV bucket damon_sessions (key = session id, value = JSON).
// Every change is a compare-and-set on the entry's revision; a conflicting writer re-reads
// and re-applies its change, so concurrent writers never lose each other's updates.
import * as grpc from '@grpc/grpc-js';
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { RpcError } from '../common/grpc-server.js';
import { checkReplicas } from '../common/nats.js';
import { SESSIONS_BUCKET, SESSIONS_KEY_PREFIX, SESSIONS_STREAM } from '../common/subjects.js';
import { StoredSessionError, decodeStoredSession, type StoredSession } from './session-model.js';

/** A session and the revision of its bucket entry. */
export interface Versioned {
  session: StoredSession;
  revision: number;
}

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

/** A stored value that is not a valid session: readable by nobody, deletable. */
class BrokenSessionError extends RpcError {
  constructor(readonly revision: number, cause: StoredSessionError) {
    super(grpc.status.FAILED_PRECONDITION, `${cause.message}; delete it (DeleteSession) and create it again`);
    this.name = 'BrokenSessionError';
  }
}

export class SessionStore {
  /** Compare-and-set conflicts that were resolved by re-reading (for logs and tests). */
  conflicts = 0;

  private constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly now: () => number,
  ) {}

  /**
   * Opens (creating if needed) the damon_sessions bucket with `replicas` copies (default 1);
   * an existing bucket with another count is changed to it (JetStream moves the data).
   */
  static async open(js: JetStreamClient, now: () => number = Date.now, replicas = 1): Promise<SessionStore> {
    checkReplicas(replicas);
    const kv = await new Kvm(js).create(SESSIONS_BUCKET, { history: 1, replicas });
    const jsm = await js.jetstreamManager();
    // Kvm.create leaves an existing bucket as it is.
    const { config } = await jsm.streams.info(SESSIONS_STREAM);
    if (config.num_replicas !== replicas) await jsm.streams.update(SESSIONS_STREAM, { ...config, num_replicas: replicas });
    return new SessionStore(kv, jsm, now);
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

  /** Every valid session, by id (a broken entry is left out: one must not hide the others). */
  async list(): Promise<Versioned[]> {
    // The stream's subject list, not kv.keys(): its consumer only ends on an idle heartbeat
    // when keys are written meanwhile (up to 30 s), which would stall the reconcile loop.
    const prefix = SESSIONS_KEY_PREFIX;
    const info = await this.jsm.streams.info(SESSIONS_STREAM, { subjects_filter: `${prefix}>` });
    const keys = Object.keys(info.state.subjects ?? {})
      .map((subject) => subject.slice(prefix.length))
      .sort();
    const out: Versioned[] = [];
    for (const k of keys) {
      try {
        const v = await this.get(k); // may have been deleted since the listing
        if (v) out.push(v);
      } catch (err) {
        if (!(err instanceof BrokenSessionError)) throw err;
      }
    }
    return out;
  }

  /** Stores a new session; ALREADY_EXISTS when the id is taken. */
  async create(s: StoredSession): Promise<Versioned> {
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
      const next = mutate(structuredClone(before.session), before.revision);
      if (next === undefined) return { before, after: before, changed: false };
      next.updatedAtMs = this.now();
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
        check(v.session);
        revision = v.revision;
      } catch (err) {
        if (!(err instanceof BrokenSessionError)) throw err;
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
