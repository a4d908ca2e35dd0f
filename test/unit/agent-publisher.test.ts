// The record publisher never blocks the engine, keeps order, de-duplicates retries by
// msg id, spools what NATS does not accept (bounded by bytes, the oldest dropped and
// reported as dropped_before), and leaves what it could not publish for the next start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecordPublisher, type RecordSink } from '../../agent/daemon/publisher.js';
import { RecordSpool } from '../../agent/daemon/spool.js';
import { createLogger, silentLogger } from '../../common/log.js';
import { decodeRecord, encodeRecord } from '../../common/record-wire.js';
import { tempSpool, tempSpoolDir } from './temp-spool.js';

class FakeSink implements RecordSink {
  up = true;
  got: { subject: string; msgID: string; data: Uint8Array }[] = [];
  attempts = 0;
  async publish(subject: string, data: Uint8Array, opts: { msgID: string; timeout: number }) {
    this.attempts++;
    await new Promise((r) => setImmediate(r));
    if (!this.up) throw new Error('connection closed');
    this.got.push({ subject, msgID: opts.msgID, data });
    return {};
  }
}

/** A small real record; every one is the same size. */
function record(seq: number): Uint8Array {
  return encodeRecord({
    sessionId: 's', host: 'h', pid: 1, startTimeNs: 1000n + BigInt(seq), endTimeNs: 2000n, maxNrAccesses: 20,
    regions: [{ start: 0x1000n, end: 0x2000n, nrAccesses: 1, age: 2 }], operations: 'synthetic',
    sequence: BigInt(seq), agentInstance: 'i', droppedBefore: 0n, packed: undefined,
  });
}
const id = (i: number) => `id-${String(i).padStart(2, '0')}`;

test('publishes every record in order with its msg id', async () => {
  const sink = new FakeSink();
  const p = new RecordPublisher(sink, { spool: tempSpool(), log: silentLogger, window: 4 });
  let acked = 0;
  for (let i = 1; i <= 10; i++) p.enqueue(`s.${i}`, record(i), id(i), BigInt(i), () => acked++);
  assert.ok(await p.flush());
  assert.deepEqual(sink.got.map((g) => g.msgID), Array.from({ length: 10 }, (_, i) => id(i + 1)));
  assert.equal(acked, 10);
  assert.deepEqual(p.stats(), { published: 10, dropped: 0, queued: 0, spooledBytes: 0 });
});

test('while NATS is down: spools up to its bytes, drops the oldest queued, logs once, resumes in order and reports the drop', async () => {
  const sink = new FakeSink();
  sink.up = false;
  const lines: string[] = [];
  const log = createLogger('t', (l) => lines.push(l));
  const probe = tempSpool();
  probe.append('s', id(1), 1n, record(1));
  const entry = probe.bytes;
  const p = new RecordPublisher(sink, { spool: tempSpool({ maxBytes: 5 * entry, log }), log, window: 2, retryMinMs: 5, retryMaxMs: 10 });
  for (let i = 1; i <= 12; i++) p.enqueue('s', record(i), id(i), BigInt(i));
  await new Promise((r) => setTimeout(r, 60)); // several failed retries
  // 1 and 2 went out at once (a window of 2) and stay; 3..9 made room for 10..12.
  assert.deepEqual(p.stats(), { published: 0, dropped: 7, queued: 5, spooledBytes: 5 * entry });
  sink.up = true;
  assert.ok(await p.flush(p.lastMark(), 2000));
  assert.deepEqual(sink.got.map((g) => g.msgID), [1, 2, 10, 11, 12].map(id));
  assert.deepEqual(sink.got.map((g) => decodeRecord(g.data).droppedBefore), [0n, 0n, 7n, 0n, 0n]);
  assert.deepEqual(p.stats(), { published: 5, dropped: 7, queued: 0, spooledBytes: 0 });
  assert.equal(lines.filter((l) => l.includes('cannot publish records')).length, 1, lines.join('\n'));
  assert.equal(lines.filter((l) => l.includes('record spool full')).length, 1, lines.join('\n'));
  assert.ok(lines.some((l) => l.includes('publishing records to NATS again (7 dropped')), lines.join('\n'));
  assert.ok(sink.attempts > 5);
});

test('enqueue returns at once, without a sink too; records go out when one is set', async () => {
  const p = new RecordPublisher(undefined, { spool: tempSpool(), log: silentLogger });
  // Synchronous: each call has spooled its record when it returns (no promise to wait for),
  // and with no sink nothing waits for NATS.
  for (let i = 1; i <= 5; i++) assert.equal(typeof p.enqueue('s', record(i), id(i), BigInt(i)), 'number');
  assert.equal(p.stats().queued, 5);
  assert.equal(await p.flush(p.lastMark(), 30), false);
  const sink = new FakeSink();
  p.setSink(sink);
  assert.ok(await p.flush());
  assert.deepEqual(sink.got.map((g) => g.msgID), [1, 2, 3, 4, 5].map(id));
});

test('close keeps what NATS did not take; the next start publishes it and sequences go on', async () => {
  const dir = tempSpoolDir();
  const down = new FakeSink();
  down.up = false;
  const lines: string[] = [];
  const p = new RecordPublisher(down, { spool: RecordSpool.open(dir, { log: silentLogger }), log: createLogger('t', (l) => lines.push(l)), retryMinMs: 5, retryMaxMs: 5 });
  for (let i = 1; i <= 3; i++) p.enqueue('s.a', record(i), id(i), p.nextSequence('s.a'));
  await p.close(30);
  assert.deepEqual(p.stats(), { published: 0, dropped: 0, queued: 3, spooledBytes: p.stats().spooledBytes });
  assert.ok(lines.some((l) => l.includes('3 records not yet published') && l.includes('kept in the spool')), lines.join('\n'));

  const sink = new FakeSink();
  const again = new RecordPublisher(sink, { spool: RecordSpool.open(dir, { log: silentLogger }), log: silentLogger });
  assert.equal(again.nextSequence('s.a'), 4n);
  assert.equal(again.nextSequence('s.other'), 1n);
  assert.ok(await again.flush());
  assert.deepEqual(sink.got.map((g) => g.msgID), [1, 2, 3].map(id));
  await again.close();
});

test('a record the spool cannot take is dropped and counted; the engine goes on', async () => {
  const sink = new FakeSink();
  const lines: string[] = [];
  const spool = tempSpool({ maxBytes: 200 });
  const p = new RecordPublisher(sink, { spool, log: createLogger('t', (l) => lines.push(l)) });
  assert.doesNotThrow(() => p.enqueue('s', new Uint8Array(500), 'big', 1n));
  p.enqueue('s', record(2), id(2), 2n);
  assert.ok(await p.flush());
  assert.deepEqual(sink.got.map((g) => [g.msgID, decodeRecord(g.data).droppedBefore]), [[id(2), 1n]]);
  assert.equal(p.stats().dropped, 1);
  assert.ok(lines.some((l) => l.includes('does not fit the spool')), lines.join('\n'));
});
