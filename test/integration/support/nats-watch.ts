// What a consumer sees on NATS, for whole-system tests: records and session events as they
// arrive on their subjects (with the arrival time), and the records JetStream stores.
import type { NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy } from '@nats-io/jetstream';
import { jetStream } from '../../../common/nats.js';
import { RECORDS_STREAM, eventsSubject, recordsFilter } from '../../../common/subjects.js';
import { SessionEvent, type AggregationRecord } from '../../../gen/damon/v1/damon.js';
import { decodeRecord } from '../../../common/record-wire.js';
import { RecordGaps, type RecordGap } from '../../../common/record-gaps.js';

export interface Arrived<T> {
  /** Date.now() when it arrived here. */
  at: number;
  subject: string;
  msg: T;
}

export interface Watch<T> {
  items: Arrived<T>[];
  stop(): void;
}

function watch<T>(nc: NatsConnection, subject: string, decode: (b: Uint8Array) => T): Watch<T> {
  const items: Arrived<T>[] = [];
  const sub = nc.subscribe(subject);
  void (async () => {
    for await (const m of sub) items.push({ at: Date.now(), subject: m.subject, msg: decode(m.data) });
  })();
  return { items, stop: () => sub.unsubscribe() };
}

/** A session's records as published (a plain subscription: from now on). */
export function watchRecords(nc: NatsConnection, sessionId: string): Watch<AggregationRecord> {
  return watch(nc, recordsFilter(sessionId), decodeRecord);
}

/** A session's events as published (from now on). */
export function watchEvents(nc: NatsConnection, sessionId: string): Watch<SessionEvent> {
  return watch(nc, eventsSubject(sessionId), (b) => SessionEvent.decode(b));
}

/** Every record of the session that the DAMON_RECORDS stream holds, in stream order. */
export async function storedRecords(nc: NatsConnection, sessionId: string): Promise<AggregationRecord[]> {
  const js = jetStream(nc);
  const jsm = await js.jetstreamManager();
  const info = await jsm.streams.info(RECORDS_STREAM, { subjects_filter: recordsFilter(sessionId) });
  const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  const consumer = await js.consumers.get(RECORDS_STREAM, { filter_subjects: recordsFilter(sessionId), deliver_policy: DeliverPolicy.All });
  const out: AggregationRecord[] = [];
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: total - out.length, expires: 2000 });
    for await (const m of batch) out.push(decodeRecord(m.data));
  }
  return out;
}

/** A record's identity within its session (the start time keeps apart sequences of an agent that lost its data directory). */
export function recordKey(r: AggregationRecord): string {
  return `${r.host}/${r.pid}/${r.sequence}/${r.startTimeNs}`;
}

/** Wall-clock milliseconds of a record's end (end_time_ns). */
export function endMs(r: AggregationRecord): number {
  return Number(r.endTimeNs / 1_000_000n);
}

/** The records of one target (host and pid), in arrival order. */
export function recordsOf(items: Arrived<AggregationRecord>[], host: string, pid: number): Arrived<AggregationRecord>[] {
  return items.filter((r) => r.msg.host === host && r.msg.pid === pid);
}

/** What a consumer's gap detection reports over these records, in order (restarts left out). */
export function recordGaps(records: readonly AggregationRecord[]): RecordGap[] {
  const g = new RecordGaps();
  return records.flatMap((r) => g.observe(r)).filter((x) => x.kind !== 'restart');
}
