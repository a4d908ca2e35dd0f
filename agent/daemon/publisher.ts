// Publishes records to JetStream without ever blocking the engine: the engine hands a
// record over and returns; a pump publishes in order, a window of them at a time, each
// with a Nats-Msg-Id so that a retry after a lost acknowledgement is de-duplicated by
// the stream. While NATS does not accept records (down, restarting, no stream), they
// wait in a bounded queue; when it is full the oldest are dropped and counted, because
// a downstream consumer wants the freshest access pattern more than a complete history.
import { StateLog, errorMessage, type Logger } from '../../common/log.js';
import { Sleeper } from './sleeper.js';

/** What the publisher needs of a JetStream client (its publish). */
export interface RecordSink {
  publish(subject: string, payload: Uint8Array, opts: { msgID: string; timeout: number }): Promise<unknown>;
}

export interface PublisherOptions {
  /** Records held at most while NATS does not accept them (plus one window in flight). */
  capacity?: number;
  /** Publishes in flight at once. */
  window?: number;
  /** How long to wait for one acknowledgement. */
  ackTimeoutMs?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  log: Logger;
}

interface Pending {
  id: number;
  subject: string;
  data: Uint8Array;
  msgId: string;
  onPublished?: () => void;
}

export interface PublisherStats {
  published: number;
  dropped: number;
  queued: number;
}

export class RecordPublisher {
  private readonly capacity: number;
  private readonly window: number;
  private readonly ackTimeoutMs: number;
  private readonly retryMinMs: number;
  private readonly retryMaxMs: number;
  private readonly log: Logger;
  private readonly health: StateLog<'ok' | 'failing'>;

  private queue: Pending[] = [];
  private inflight: Pending[] = [];
  private nextId = 1;
  private published = 0;
  private dropped = 0;
  private droppedInOutage = 0;
  private pumping = false;
  private pumpDone: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly sleeper = new Sleeper();
  private waiters: { mark: number; resolve: () => void }[] = [];

  constructor(
    private sink: RecordSink | undefined,
    opts: PublisherOptions,
  ) {
    this.capacity = opts.capacity ?? 10_000;
    this.window = opts.window ?? 64;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? 2_000;
    this.retryMinMs = opts.retryMinMs ?? 100;
    this.retryMaxMs = opts.retryMaxMs ?? 2_000;
    if (!(this.capacity >= 1 && this.window >= 1)) throw new Error('publisher capacity and window must be at least 1');
    this.log = opts.log;
    this.health = new StateLog(this.log);
  }

  /** Sets (or replaces) the JetStream client; queued records go out through it. */
  setSink(sink: RecordSink): void {
    this.sink = sink;
    this.kick();
  }

  /**
   * Queues one record; never blocks. Returns a mark for flush(). When the queue is full
   * the oldest record is dropped.
   */
  enqueue(subject: string, data: Uint8Array, msgId: string, onPublished?: () => void): number {
    const id = this.nextId++;
    if (this.closed) {
      this.dropped++;
      return id;
    }
    // Records in flight are older still: if they fail they come back in front and the
    // trim after a failed batch drops them first (so at most capacity + window are held).
    if (this.queue.length >= this.capacity) {
      this.queue.shift();
      this.countDrop();
    }
    this.queue.push({ id, subject, data, msgId, onPublished });
    this.kick();
    return id;
  }

  stats(): PublisherStats {
    return { published: this.published, dropped: this.dropped, queued: this.queue.length + this.inflight.length };
  }

  /** The mark of the last record enqueued so far. */
  lastMark(): number {
    return this.nextId - 1;
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
   * Publishes what it can within `timeoutMs`, then drops what is still queued (and says
   * so); a batch in flight finishes (or fails) within the acknowledgement timeout.
   */
  async close(timeoutMs = 2_000): Promise<void> {
    await this.flush(this.lastMark(), timeoutMs);
    this.closed = true;
    const droppedBefore = this.dropped;
    this.dropped += this.queue.length;
    this.queue = [];
    this.sleeper.wake();
    await this.pumpDone;
    const lost = this.dropped - droppedBefore;
    if (lost > 0) this.log.warn(`closing with ${lost} records not published (NATS did not accept them in time); dropped`);
    this.settle();
  }

  private doneThrough(mark: number): boolean {
    const oldest = this.inflight[0]?.id ?? this.queue[0]?.id;
    return oldest === undefined || oldest > mark;
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) (this.doneThrough(w.mark) ? w.resolve() : still.push(w));
    this.waiters = still;
  }

  private countDrop(): void {
    this.dropped++;
    if (this.droppedInOutage++ === 0) {
      this.log.warn(
        `record queue full (${this.capacity} records): dropping the oldest until NATS accepts records again`,
      );
    }
  }

  private kick(): void {
    if (this.sleeper.sleeping) return; // sleeping between retries: the retry comes soon enough
    if (!this.pumping) this.pumpDone = this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    let backoff = this.retryMinMs;
    try {
      while (!this.closed && this.queue.length > 0 && this.sink) {
        const sink = this.sink;
        const batch = this.queue.splice(0, this.window);
        this.inflight = batch;
        const results = await Promise.allSettled(
          batch.map((p) => sink.publish(p.subject, p.data, { msgID: p.msgId, timeout: this.ackTimeoutMs })),
        );
        this.inflight = [];
        const failed: Pending[] = [];
        let firstError: unknown;
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') {
            this.published++;
            batch[i].onPublished?.();
          } else {
            failed.push(batch[i]);
            firstError ??= r.reason;
          }
        });
        if (failed.length > 0 && this.closed) {
          this.dropped += failed.length;
          break;
        }
        if (failed.length > 0) {
          // Keep their order: they go back in front of what came since.
          this.queue.unshift(...failed);
          while (this.queue.length > this.capacity) {
            this.queue.shift();
            this.countDrop();
          }
          this.health.set(
            'failing',
            `cannot publish records to NATS (${errorMessage(firstError)}); holding up to ${this.capacity} and retrying`,
            'warn',
          );
          this.settle();
          await this.sleeper.sleep(backoff);
          backoff = Math.min(backoff * 2, this.retryMaxMs);
          continue;
        }
        backoff = this.retryMinMs;
        if (this.health.current === 'failing') {
          this.health.set(
            'ok',
            `publishing records to NATS again (${this.droppedInOutage} dropped while it did not accept them)`,
          );
          this.droppedInOutage = 0;
        } else if (this.health.current === undefined) {
          this.health.set('ok', 'publishing records to NATS');
        }
        this.settle();
      }
    } finally {
      this.pumping = false;
      this.settle();
    }
  }
}
