// WatchRecords / WatchEvents: server streams fed by a JetStream ordered consumer
// (replay = from the oldest message the stream holds, else new messages only), ending
// when the client cancels; the consumer is deleted then.
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { DeliverPolicy, type JetStreamClient } from '@nats-io/jetstream';
import type { BasicLogger as Logger } from '../common/log.js';

/** What to stream from where. */
export interface WatchSource<T> {
  stream: string;
  /** Subject filter, e.g. damon.records.<session>.> */
  filter: string;
  replay: boolean;
  /** Decodes a message (throwing when it is not what its subject promises). */
  decode: (data: Uint8Array, subject: string) => T;
  /** For logs: "records of session s1". */
  what: string;
}

/** Streams messages from JetStream to `call` until the client cancels (or the server shuts down). */
export async function streamFromJetStream<T>(
  call: grpc.ServerWritableStream<unknown, T>,
  js: JetStreamClient,
  source: WatchSource<T>,
  log: Logger,
): Promise<void> {
  if (call.cancelled) return;
  const consumer = await js.consumers.get(source.stream, {
    filter_subjects: source.filter,
    deliver_policy: source.replay ? DeliverPolicy.All : DeliverPolicy.New,
  });
  const messages = await consumer.consume();
  const cancelled = new Promise<void>((resolve) => {
    const stop = () => {
      messages.stop();
      resolve();
    };
    if (call.cancelled) stop();
    call.once('cancelled', stop);
    call.once('close', stop);
  });
  log.info(`watch: streaming ${source.what}${source.replay ? ' (replay)' : ''}`);
  let sent = 0;
  const warned = new Set<string>(); // once per subject: a bad publisher cannot flood the log
  try {
    for await (const m of messages) {
      if (call.cancelled) break;
      let item: T;
      try {
        item = source.decode(m.data, m.subject);
      } catch (err) {
        if (!warned.has(m.subject)) {
          warned.add(m.subject);
          log.warn(`watch: skipping a message on ${m.subject} (seq ${m.seq}; further ones there are skipped silently): ${(err as Error).message}`);
        }
        continue;
      }
      sent++;
      // Backpressure: a slow client pauses the consumer rather than growing our buffers.
      if (!call.write(item)) await Promise.race([once(call, 'drain'), cancelled]);
    }
  } finally {
    messages.stop();
    // Now, not after the server's inactivity threshold (5 min): watches come and go, and each
    // left behind would hold a consumer on the stream until then.
    await consumer.delete().catch(() => undefined);
    log.info(`watch: ${source.what} ended after ${sent} messages`);
  }
}
