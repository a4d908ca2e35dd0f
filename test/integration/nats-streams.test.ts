// ensureStreams restores a stream changed by hand, whichever configured field was changed,
// and says so; a field NATS cannot change in place (storage) fails the start, naming the
// field and the way out (the controller may not delete streams: the operator does).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DiscardPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { connectNats, differingStreamFields, ensureStreams, jetStream } from '../../common/nats.js';
import { RECORDS_STREAM, recordsSubject } from '../../common/subjects.js';
import { capturingLogger } from './support/controller-env.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

let nats: NatsServer;
let nc: NatsConnection;
let jsm: JetStreamManager;

before(async () => {
  nats = await startNatsServer();
  nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.controller });
  jsm = await jetStream(nc).jetstreamManager();
});
after(async () => {
  await nc?.close();
  await nats?.stop();
});

async function ensure(): Promise<string[]> {
  const log = capturingLogger('controller');
  await ensureStreams(jetStream(nc), {}, log);
  return log.lines;
}

async function config(): Promise<StreamConfig> {
  return (await jsm.streams.info(RECORDS_STREAM)).config;
}

test('every field the configuration sets is compared, and only those', () => {
  const want = { name: 'S', subjects: ['a.>', 'b.>'], max_age: 5, replicas_like_new_field: 3 } as unknown as Partial<StreamConfig>;
  assert.deepEqual(differingStreamFields({ name: 'S', subjects: ['b.>', 'a.>'], max_age: 5, replicas_like_new_field: 3, max_msgs: 7 } as never, want), []);
  assert.deepEqual(differingStreamFields({ name: 'S', subjects: ['a.>'], max_age: 6 } as never, want), ['subjects', 'max_age', 'replicas_like_new_field']);
  // Objects compare by the keys the configuration sets (the server fills in the others).
  const placed = { name: 'S', placement: { cluster: 'c1' } } as unknown as Partial<StreamConfig>;
  assert.deepEqual(differingStreamFields({ name: 'S', placement: { cluster: 'c1', tags: [] } } as never, placed), []);
  assert.deepEqual(differingStreamFields({ name: 'S', placement: { cluster: 'c2' } } as never, placed), ['placement']);
});

test('a stream changed by hand in any updatable field is restored, and the log says which', async () => {
  assert.ok((await ensure()).some((l) => l.includes(`created stream ${RECORDS_STREAM}`)));
  const want = await config();
  const changes: Array<[string, Partial<StreamConfig>]> = [
    ['max_age', { max_age: nanos(3600_000) }],
    ['max_bytes', { max_bytes: 1024 * 1024 }],
    ['duplicate_window', { duplicate_window: nanos(1000) }],
    ['discard', { discard: DiscardPolicy.New }],
    ['subjects', { subjects: ['damon.records.only.this.>'] }],
  ];
  for (const [field, change] of changes) {
    await jsm.streams.update(RECORDS_STREAM, { ...want, ...change });
    assert.notDeepEqual((await config())[field as keyof StreamConfig], want[field as keyof StreamConfig], `${field} changed by hand`);
    const lines = await ensure();
    assert.ok(
      lines.some((l) => l.startsWith('warn ') && l.includes(`stream ${RECORDS_STREAM} differed from the configuration (${field} `) && l.endsWith('restored')),
      `${field}: ${lines.join('\n')}`,
    );
    assert.deepEqual(differingStreamFields(await config(), want), [], `${field} restored`);
  }
  assert.deepEqual(await ensure(), [], 'nothing to restore: nothing logged');
});

test('storage (not changeable in place): refused naming the field; once the operator removes the stream it is created again', async () => {
  const want = await config();
  const op = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.operator });
  try {
    const opm = await jetStream(op).jetstreamManager();
    await opm.streams.delete(RECORDS_STREAM);
    await opm.streams.add({ ...want, storage: StorageType.Memory });
    const agent = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.agent('h') });
    await jetStream(agent).publish(recordsSubject('s1', 'h', 1), new Uint8Array([1])).finally(() => agent.close());
    await assert.rejects(ensure(), /stream DAMON_RECORDS differs from the configuration \(storage "memory" -> "file"\) and NATS refuses to change it in place .*holds 1 messages: an operator may remove it \(nats stream rm DAMON_RECORDS\)/);
    await opm.streams.delete(RECORDS_STREAM);
  } finally {
    await op.close();
  }
  assert.ok((await ensure()).some((l) => l.includes(`created stream ${RECORDS_STREAM}`)));
  assert.deepEqual(differingStreamFields(await config(), want), []);
});
