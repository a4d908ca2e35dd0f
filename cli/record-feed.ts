// Where `watch` gets a session's records: the controller's WatchRecords stream (following
// the leader, reconnecting after an outage), or NATS directly with a reader's credential
// (a JetStream ordered consumer, as any downstream consumer reads them).
import * as grpc from '@grpc/grpc-js';
import { setTimeout as delay } from 'node:timers/promises';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { AggregationRecord } from '../gen/damon/v1/damon.js';
import { connectNats, isNatsAuthRefusal, redactNatsUrl, type NatsTlsFiles } from '../common/nats.js';
import { RECORDS_STREAM, recordOnSubject, recordsFilter } from '../common/subjects.js';
import { decodeRecord } from '../common/record-wire.js';
import { errorMessage, type Logger } from '../common/log.js';
import type { ControllerConnection } from './controller-connection.js';
import { CliError, Exit, callError } from './exit-codes.js';

export interface FeedHandlers {
  record(r: AggregationRecord): void;
  /** What is wrong with the feed now ('' once it works again). */
  problem(text: string): void;
}

export interface RecordFeed {
  /** For the view: where records come from. */
  readonly source: string;
  /** Feeds records until stop(); rejects with a CliError when it cannot go on (session gone, credential refused). */
  run(h: FeedHandlers): Promise<void>;
  stop(): void;
}

export interface FeedRequest {
  sessionId: string;
  /** Only this host's records. */
  host?: string;
  /** First the records the stream still holds. */
  replay: boolean;
}

/** Statuses after which watching again cannot help. */
const FINAL = new Set([grpc.status.NOT_FOUND, grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.INVALID_ARGUMENT]);
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

export class WatchRecordsFeed implements RecordFeed {
  private stopped = false;
  private call: grpc.ClientReadableStream<AggregationRecord> | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly conn: ControllerConnection, private readonly req: FeedRequest) {}

  get source(): string {
    return `WatchRecords at ${this.conn.address}`;
  }

  async run(h: FeedHandlers): Promise<void> {
    let replay = this.req.replay;
    let backoff = RETRY_MIN_MS;
    const round = new Set<string>();
    while (!this.stopped) {
      const call = this.conn.watchRecords({ sessionId: this.req.sessionId, host: this.req.host ?? '', replay });
      this.call = call;
      const outcome = await new Promise<grpc.ServiceError | 'end'>((resolve) => {
        call.on('data', (r: AggregationRecord) => {
          round.clear();
          backoff = RETRY_MIN_MS;
          h.problem('');
          h.record(r);
        });
        call.on('error', (e: grpc.ServiceError) => resolve(e));
        call.on('end', () => resolve('end'));
      });
      if (this.stopped) return;
      // Records missed while away are not replayed: the view shows them as missing.
      replay = false;
      if (outcome !== 'end' && FINAL.has(outcome.code)) throw callError(outcome, this.conn.address);
      h.problem(
        outcome === 'end'
          ? `the controller at ${this.conn.address} ended the stream; watching again`
          : `${callError(outcome, this.conn.address).message}; retrying`,
      );
      if (outcome === 'end' || this.conn.afterFailure(outcome, round) !== 'retry') {
        round.clear();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          void delay(backoff).then(resolve);
        });
        backoff = Math.min(RETRY_MAX_MS, backoff * 2);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.call?.cancel();
    this.wake?.();
  }
}

export interface NatsFeedOptions {
  servers: string[];
  nkeyFile?: string;
  tls?: NatsTlsFiles;
  /** How long the first connection may take. */
  connectTimeoutMs: number;
}

export class NatsFeed implements RecordFeed {
  private nc: NatsConnection | undefined;
  private stopped = false;
  private stopMessages: (() => void) | undefined;

  constructor(private readonly o: NatsFeedOptions, private readonly req: FeedRequest) {}

  get source(): string {
    return `NATS ${this.nc ? redactNatsUrl(this.nc.getServer()) : this.o.servers.map(redactNatsUrl).join(',')}`;
  }

  private logTo(h: FeedHandlers): Logger {
    const log: Logger = {
      info: (m) => (/reconnected/.test(m) ? h.problem('') : undefined),
      warn: (m) => h.problem(m),
      error: (m) => h.problem(m),
      child: () => log,
    };
    return log;
  }

  private async connect(h: FeedHandlers): Promise<NatsConnection> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new CliError(Exit.Unavailable, `NATS at ${this.o.servers.map(redactNatsUrl).join(',')} did not answer within ${this.o.connectTimeoutMs} ms`)),
        this.o.connectTimeoutMs,
      );
    });
    try {
      return await Promise.race([connectNats({ servers: this.o.servers, nkeyFile: this.o.nkeyFile, tls: this.o.tls, name: 'damon-fleet watch', log: this.logTo(h) }), timeout]);
    } catch (err) {
      if (isNatsAuthRefusal(err)) throw new CliError(Exit.Auth, errorMessage(err));
      if (err instanceof CliError) throw err;
      throw new CliError(Exit.Unavailable, `NATS: ${errorMessage(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  async run(h: FeedHandlers): Promise<void> {
    const nc = await this.connect(h);
    this.nc = nc;
    if (this.stopped) return void (await nc.close());
    try {
      // An ordered consumer: ephemeral, in stream order, recreated by the client after an outage.
      const consumer = await jetstream(nc).consumers.get(RECORDS_STREAM, {
        filter_subjects: recordsFilter(this.req.sessionId, this.req.host),
        deliver_policy: this.req.replay ? DeliverPolicy.All : DeliverPolicy.New,
      });
      const messages = await consumer.consume();
      this.stopMessages = () => messages.stop();
      if (this.stopped) messages.stop();
      for await (const m of messages) {
        let rec: AggregationRecord;
        try {
          rec = recordOnSubject(decodeRecord(m.data), m.subject);
        } catch (err) {
          h.problem(`skipped a message on ${m.subject}: ${errorMessage(err)}`);
          continue;
        }
        h.record(rec);
      }
    } catch (err) {
      if (this.stopped) return;
      throw new CliError(isNatsAuthRefusal(err) || /permission/i.test(errorMessage(err)) ? Exit.Auth : Exit.Failure, `NATS: ${errorMessage(err)}`);
    } finally {
      await nc.close().catch(() => undefined);
    }
  }

  stop(): void {
    this.stopped = true;
    this.stopMessages?.();
    void this.nc?.close().catch(() => undefined);
  }
}
