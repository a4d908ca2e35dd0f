// The record publisher never blocks the engine, keeps order, de-duplicates retries by
// msg id, and bounds what it holds while NATS does not accept records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecordPublisher, type RecordSink } from '../../agent/daemon/publisher.js';
import { createLogger, silentLogger } from '../../common/log.js';

class FakeSink implements RecordSink {
  up = true;
  got: { subject: string; msgID: string }[] = [];
  attempts = 0;
  async publish(subject: string, _payload: Uint8Array, opts: { msgID: string; timeout: number }) {
    this.attempts++;
    await new Promise((r) => setImmediate(r));
    if (!this.up) throw new Error('connection closed');
    this.got.push({ subject, msgID: opts.msgID });
    return {};
  }
}

const data = new Uint8Array([1, 2, 3]);

test('publishes every record in order with its msg id', async () => {
  const sink = new FakeSink();
  const p = new RecordPublisher(sink, { log: silentLogger, window: 4 });
  let acked = 0;
  for (let i = 1; i <= 10; i++) p.enqueue(`s.${i}`, data, `id-${i}`, () => acked++);
  assert.ok(await p.flush());
  assert.deepEqual(sink.got.map((g) => g.msgID), Array.from({ length: 10 }, (_, i) => `id-${i + 1}`));
  assert.equal(acked, 10);
  assert.deepEqual(p.stats(), { published: 10, dropped: 0, queued: 0 });
});

test('while NATS is down: holds up to capacity, drops the oldest, logs once, then resumes in order', async () => {
  const sink = new FakeSink();
  sink.up = false;
  const lines: string[] = [];
  const p = new RecordPublisher(sink, {
    log: createLogger('t', (l) => lines.push(l)),
    capacity: 5,
    window: 2,
    retryMinMs: 5,
    retryMaxMs: 10,
  });
  for (let i = 1; i <= 12; i++) p.enqueue('s', data, `id-${i}`);
  await new Promise((r) => setTimeout(r, 60)); // several failed retries
  assert.equal(p.stats().queued, 5);
  assert.equal(p.stats().dropped, 7);
  sink.up = true;
  assert.ok(await p.flush(p.lastMark(), 2000));
  assert.deepEqual(sink.got.map((g) => g.msgID), ['id-8', 'id-9', 'id-10', 'id-11', 'id-12']);
  assert.deepEqual(p.stats(), { published: 5, dropped: 7, queued: 0 });
  const warnings = lines.filter((l) => l.includes('cannot publish records'));
  assert.equal(warnings.length, 1, lines.join('\n'));
  assert.equal(lines.filter((l) => l.includes('record queue full')).length, 1);
  assert.ok(lines.some((l) => l.includes('publishing records to NATS again (7 dropped')), lines.join('\n'));
  assert.ok(sink.attempts > 5);
});

test('enqueue returns at once, without a sink too; records go out when one is set', async () => {
  const p = new RecordPublisher(undefined, { log: silentLogger, capacity: 3 });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 5; i++) p.enqueue('s', data, `id-${i}`);
  assert.ok(process.hrtime.bigint() - t0 < 50_000_000n);
  assert.equal(await p.flush(p.lastMark(), 30), false);
  const sink = new FakeSink();
  p.setSink(sink);
  assert.ok(await p.flush());
  assert.deepEqual(sink.got.map((g) => g.msgID), ['id-2', 'id-3', 'id-4']);
  assert.equal(p.stats().dropped, 2);
});

test('close publishes what it can, then drops the rest and counts it', async () => {
  const sink = new FakeSink();
  sink.up = false;
  const p = new RecordPublisher(sink, { log: silentLogger, retryMinMs: 5, retryMaxMs: 5 });
  p.enqueue('s', data, 'a');
  p.enqueue('s', data, 'b');
  await p.close(30);
  assert.equal(p.stats().dropped, 2);
  assert.equal(p.stats().queued, 0);
  p.enqueue('s', data, 'c');
  assert.equal(p.stats().dropped, 3);
});
