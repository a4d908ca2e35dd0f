// Publishes records to JetStream without ever blocking the engine: the engine hands a
// record over (it is appended to the spool on disk, spool.ts) and returns; records go
// out at once in batches of up to a window, the next as soon as the last is acknowledged,
// each with a Nats-Msg-Id so that a retry after a lost acknowledgement is de-duplicated by the
// stream. While NATS does not accept records (down, restarting, no stream) they wait in
// the spool, bounded by bytes; beyond that the oldest are dropped, counted, and reported
// to consumers as dropped_before on the next record of their target.
import { StateLog, errorMessage, type Logger } from '../../common/log.js';
import { withDroppedBefore } from '../../common/record-wire.js';
import { Sleeper } from './sleeper.js';
import type { RecordSpool, SpoolEntry } from './spool.js';

interface Batch {
  entries: SpoolEntry[];
  sends: Promise<unknown>[];
}

/** What the publisher needs of a JetStream client (its publish). */
export interface RecordSink {
  publish(subject: string, payload: Uint8Array, opts: { msgID: string; timeout: number }): Promise<unknown>;
}

export interface PublisherOptions {
  /** Where records wait until acknowledged. */
  spool: RecordSpool;
  /** Publishes awaiting acknowledgement at once. */
  window?: number;
  /** How long to wait for one acknowledgement. */
  ackTimeoutMs?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  log: Logger;
}

export interface PublisherStats {
  published: number;
  /** Dropped because the spool was full or could not take them. */
  dropped: number;
  /** In the spool: waiting or awaiting acknowledgement. */
  queued: number;
  spooledBytes: number;
}

export class RecordPublisher {
  private readonly spool: RecordSpool;
  private readonly window: number;
  private readonly ackTimeoutMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly log: Logger;
  private readonly health: StateLog<'ok' | 'failing'>;
  private readonly spoolHealth: StateLog<'ok' | 'failing'>;
  /** Records the spool could not take (too large, or a write failed). */
  private unspooled = 0;

  private published = 0;
  /** Records dropped up to the last acknowledgement before an outage. */
  private droppedAtOutage = 0;
  private backoff: number;
  private closed = false;
  private pumping = false;
  /** The batch taking records until the current task ends. */
  private open: Batch | undefined;
  private pumpDone: Promise<void> = Promise.resolve();
  private readonly sleeper = new Sleeper();
  private waiters: { mark: number; resolve: () => void }[] = [];

  constructor(
    private sink: RecordSink | undefined,
    opts: PublisherOptions,
  ) {
    this.spool = opts.spool;
    this.window = opts.window ?? 64;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 2_000;
    this.retryMinMs = opts.retryMinMs ?? 100;
    this.retryMaxMs = opts.retryMaxMs ?? 2_000;
    if (!(this.window >= 1)) throw new Error('publisher window must be at least 1');
    this.backoff = this.retryMinMs;
    this.log = opts.log;
    this.health = new StateLog(this.log);
    this.spoolHealth = new StateLog(this.log);
    if (this.spool.queued > 0) this.health.set('failing', `${this.spool.queued} records from the spool to publish`);
    this.kick();
  }

  /** Sets (or replaces) the JetStream client; spooled records go out through it. */
  setSink(sink: RecordSink): void {
    this.sink = sink;
    this.kick();
  }

  /** The next record sequence of a target (by subject); they go on across restarts. */
  nextSequence(subject: string): bigint {
    return this.spool.nextSequence(subject);
  }

  /**
   * Spools one record and sends it if the window allows; never waits for NATS. Returns a
   * mark for flush().
   */
  enqueue(subject: string, data: Uint8Array, msgId: string, sequence: bigint, onPublished?: () => void): number {
    let e: SpoolEntry;
    try {
      e = this.spool.append(subject, msgId, sequence, data);
    } catch (err) {
      // Counted against its target (dropped_before of the next record); the engine goes on.
      this.unspooled++;
      this.spoolHealth.set('failing', `${errorMessage(err)} (further failures are counted, not logged)`, 'error');
      return this.lastMark();
    }
    if (this.spoolHealth.current === 'failing') this.spoolHealth.set('ok', 'writing the record spool again');
    e.onPublished = onPublished;
    this.kick();
    this.settle(); // records the spool dropped to make room may finish a flush
    return e.id;
  }

  stats(): PublisherStats {
    return { published: this.published, dropped: this.spool.dropped + this.unspooled, queued: this.spool.queued, spooledBytes: this.spool.bytes };
  }

  /** The mark of the last record enqueued so far. */
  lastMark(): number {
    return this.spool.lastId();
  }

  /**
   * Resolves true once every record enqueued up to `mark` was published or dropped, or
   * false when `timeoutMs` passes first.
   */
  flush(mark = this.lastMark(), timeoutMs = 2_000): Promise<boolean> {
    if (this.doneThrough(mark)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      const waiter = {
        mark,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /**
   * Publishes what it can within `timeoutMs`, waits for what is in flight (at most the
   * acknowledgement timeout), and closes the spool: what is left is published at the next
   * start.
   */
  async close(timeoutMs = 2_000): Promise<void> {
    if (this.closed) return;
    await this.flush(this.lastMark(), timeoutMs);
    this.closed = true;
    this.sleeper.wake();
    await Promise.resolve(); // a batch still open is handed to the pump first
    await this.pumpDone; // a batch in flight finishes (or fails) within the acknowledgement timeout
    const left = this.spool.queued;
    this.spool.close();
    if (left > 0) this.log.warn(`closing with ${left} records not yet published (NATS did not accept them in time); kept in the spool for the next start`);
    this.settle();
  }

  private doneThrough(mark: number): boolean {
    return this.spool.oldestLiveId() > mark;
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) (this.doneThrough(w.mark) ? w.resolve() : still.push(w));
    this.waiters = still;
  }

  /**
   * Sends what the spool holds, now: a batch opened here takes every record handed over
   * until the current task ends (the engine hands over all targets' records of one
   * aggregation in one go), and then waits for their acknowledgements.
   */
  private kick(): void {
    if (this.closed || !this.sink || this.sleeper.sleeping) return;
    if (this.open) {
      this.fillBatch(this.open);
      return;
    }
    if (this.pumping) return; // the pump takes them after the batch in flight
    this.pumping = true;
    const batch: Batch = { entries: [], sends: [] };
    this.open = batch;
    this.fillBatch(batch);
    queueMicrotask(() => {
      this.open = undefined;
      this.pumpDone = this.pump(batch);
    });
  }

  private fillBatch(b: Batch): void {
    const sink = this.sink!;
    while (b.entries.length < this.window) {
      const e = this.spool.take();
      if (!e) break;
      b.entries.push(e);
      b.sends.push(this.send(sink, e));
    }
  }

  /**
   * Waits for a batch, then sends the next, as long as records wait. A batch at a time
   * keeps each target's records in order in the stream: a failed one is retried before
   * anything newer goes out.
   */
  private async pump(first: Batch): Promise<void> {
    let batch: Batch | undefined = first;
    try {
      while (batch) {
        const results = await Promise.allSettled(batch.sends);
        let firstError: unknown;
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') this.acked(batch!.entries[i]);
          else {
            this.spool.requeue(batch!.entries[i]);
            firstError ??= r.reason;
          }
        });
        this.settle();
        if (firstError === undefined) {
          this.backoff = this.retryMinMs;
          this.healthy();
        } else {
          this.health.set(
            'failing',
            `cannot publish records to NATS (${errorMessage(firstError)}); spooling up to ${this.spool.maxBytes} bytes and retrying`,
            'warn',
          );
          if (this.closed) break;
          await this.sleeper.sleep(this.backoff);
          this.backoff = Math.min(this.backoff * 2, this.retryMaxMs);
        }
        if (this.closed || !this.sink) break;
        batch = { entries: [], sends: [] };
        this.fillBatch(batch);
        if (batch.entries.length === 0) batch = undefined;
      }
    } finally {
      this.pumping = false;
      this.settle();
    }
  }

  private send(sink: RecordSink, e: SpoolEntry): Promise<unknown> {
    e.droppedBefore ??= this.spool.claimDroppedBefore(e);
    return sink.publish(e.subject, withDroppedBefore(e.data, e.droppedBefore), { msgID: e.msgId, timeout: this.ackTimeoutMs });
  }

  private acked(e: SpoolEntry): void {
    this.spool.done(e);
    this.published++;
    e.onPublished?.();
  }

  private healthy(): void {
    const dropped = this.stats().dropped;
    if (this.health.current === 'failing') {
      this.health.set('ok', `publishing records to NATS again (${dropped - this.droppedAtOutage} dropped while it did not accept them)`);
    } else if (this.health.current === undefined) {
      this.health.set('ok', 'publishing records to NATS');
    }
    this.droppedAtOutage = dropped;
  }
}
