// NATS in damon-fleet's configuration (nkey users with allow-lists, from
// ensureNatsCredentials), tried as each identity: every refusal is NATS's own permission
// error, and nothing it was refused changed (bucket revision, stream sequences, counts,
// limits). What each identity must be able to do works.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createUser } from '@nats-io/nkeys';
import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { NatsAuthError, connectNats, ensureStreams, jetStream } from '../../common/nats.js';
import { ensureNatsCredentials, inboxPrefix, publicKeyOfSeedFile } from '../../common/nats-access.js';
import { LEADER_BUCKET, LEADER_KEY_SUBJECT, LEADER_STREAM } from '../../common/subjects.js';
import { EVENTS_STREAM, RECORDS_STREAM, SESSIONS_BUCKET, SESSIONS_STREAM, eventsFilter, eventsSubject, recordsFilter, recordsSubject, statFilter, statSubject } from '../../common/subjects.js';
import { FLEET_BIN } from './support/fleet-processes.js';
import { Leadership } from '../../controller/leadership.js';
import { silentLogger } from '../../common/log.js';
import { DEFAULT_TEST_HOSTS, TEST_READER, startNatsServer, testCredentials, type NatsServer } from './support/nats-server.js';
import { ACTIONS_STREAM, actionsFilter, actionsSubject } from '../../common/subjects.js';

let nats: NatsServer;
const creds = testCredentials({ optimizers: [{ name: 'opt', sessions: ['*'] }] });
const conns: NatsConnection[] = [];
let operatorJsm: JetStreamManager;
let controllerKv: KV;

const connsByFile = new Map<string, NatsConnection>();

async function as(nkeyFile: string | undefined): Promise<NatsConnection> {
  const nc = await connectNats({ servers: nats.url, nkeyFile });
  conns.push(nc);
  if (nkeyFile && !connsByFile.has(nkeyFile)) connsByFile.set(nkeyFile, nc);
  return nc;
}

/** A connection as the identity of `nkeyFile`, made once. */
async function conn(nkeyFile: string): Promise<NatsConnection> {
  return connsByFile.get(nkeyFile) ?? as(nkeyFile);
}

/** What a refused operation must leave as it was: read by the operator. */
async function snapshot() {
  const [records, events, bucket] = await Promise.all([RECORDS_STREAM, EVENTS_STREAM, SESSIONS_STREAM].map((s) => operatorJsm.streams.info(s)));
  const part = (i: typeof records) => ({ messages: i.state.messages, lastSeq: i.state.last_seq, maxMsgs: i.config.max_msgs, maxBytes: i.config.max_bytes });
  return { records: part(records), events: part(events), bucket: part(bucket) };
}

/** `op` fails with NATS's permission error for `subject`, the server logs it, and nothing changed. */
async function refused(op: () => Promise<unknown>, subject: string | RegExp): Promise<void> {
  const before = await snapshot();
  const from = nats.log.length;
  const text = (s: string) => `Permissions Violation for Publish to "${s}"`;
  await assert.rejects(op, (e: Error) => (typeof subject === 'string' ? e.message === text(subject) : subject.test(e.message)) || assert.fail(e));
  const logged = await waitLog(from, /Publish Violation/);
  if (typeof subject === 'string') assert.ok(logged.includes(`Subject "${subject}"`), logged);
  assert.deepEqual(await snapshot(), before, 'a refused operation changed nothing');
}

async function waitLog(from: number, re: RegExp): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const l = nats.log.slice(from).find((x) => re.test(x));
    if (l) return l;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no server log line ${re} in:\n${nats.log.slice(from).join('\n')}`);
}

const bytes = (s: string) => new TextEncoder().encode(s);

before(async () => {
  nats = await startNatsServer({ credentials: creds });
  const controller = await as(nats.credentials.controller);
  await ensureStreams(jetStream(controller));
  controllerKv = await new Kvm(jetStream(controller)).create(SESSIONS_BUCKET, { history: 1 });
  await controllerKv.put('s1', '{"id":"s1"}');
  await jetStream(controller).publish(eventsSubject('s1'), bytes('on'), { msgID: 'ev-1' });
  const agent = await as(nats.credentials.agent('h1'));
  await jetStream(agent).publish(recordsSubject('s1', 'h1', 1), bytes('r1'), { msgID: 'rec-1' });
  operatorJsm = await jetStream(await as(nats.credentials.operator)).jetstreamManager();
});

after(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await nats?.stop();
  creds.remove();
});

describe('connecting', () => {
  test('no credential: Authorization Violation, not retried forever', async () => {
    await assert.rejects(as(undefined), (e: Error) => e instanceof NatsAuthError && (e.cause as Error).message === 'Authorization Violation');
  });

  test('a seed the server does not know: refused, naming the file and not its content', async () => {
    const file = join(nats.credentials.dir, 'stranger.nk');
    const seed = new TextDecoder().decode(createUser().getSeed());
    writeFileSync(file, seed, { mode: 0o600 });
    await assert.rejects(as(file), (e: Error) => e instanceof NatsAuthError && e.message.startsWith(`NATS refused the credential in ${file} (Authorization Violation)`) && !e.message.includes(seed));
  });

  test('a host added later: rerun ensureNatsCredentials, reload nats-server, and it is in', async () => {
    const plan = { agents: [...DEFAULT_TEST_HOSTS, 'late-host'], readers: [TEST_READER] };
    const r = ensureNatsCredentials(nats.credentials.dir, plan);
    assert.ok(r.created.some((f) => f.includes('late-host')));
    const file = join(nats.credentials.dir, 'agents', 'late-host', 'nats.nk');
    await assert.rejects(as(file), NatsAuthError);
    await nats.reload();
    const late = await as(file);
    const ack = await jetStream(late).publish(recordsSubject('late', 'late-host', 1), bytes('x'), { msgID: 'late-1' });
    assert.equal(ack.stream, RECORDS_STREAM);
  });

  test('the agent process exits with a clear message when NATS refuses its credential', async () => {
    const file = join(nats.credentials.dir, 'stranger.nk');
    const child = spawn(process.execPath, [FLEET_BIN, 'agent', '--host', 'h1', '--listen', '127.0.0.1:0', '--insecure', '--controller', '127.0.0.1:1',
      '--nats', nats.url, '--nats-nkey', file, '--data-dir', join(nats.credentials.dir, 'agent-data')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    assert.equal(code, 1, err);
    assert.match(err, new RegExp(`ERROR agent: NATS refused the credential in ${file} \\(Authorization Violation\\)`));
    assert.doesNotMatch(err, /\bSU[A-Z2-7]{56}\b/, 'no seed in the log');
  });
});

describe('a reader', () => {
  let nc: NatsConnection;
  before(async () => {
    nc = await as(nats.credentials.reader());
  });

  test('cannot write the bucket, publish records or events, or administer the streams', async () => {
    const js = jetStream(nc);
    await refused(() => js.publish(`$KV.${SESSIONS_BUCKET}.s1`, bytes('{}')), `$KV.${SESSIONS_BUCKET}.s1`);
    const kv = await new Kvm(js).open(SESSIONS_BUCKET);
    await refused(() => kv.put('evil', 'x'), `$KV.${SESSIONS_BUCKET}.evil`);
    await refused(() => kv.delete('s1'), `$KV.${SESSIONS_BUCKET}.s1`);
    await refused(() => js.publish(recordsSubject('s1', 'h1', 1), bytes('forged')), recordsSubject('s1', 'h1', 1));
    await refused(() => js.publish(eventsSubject('s1'), bytes('forged')), eventsSubject('s1'));
    const jsm = await js.jetstreamManager();
    await refused(() => jsm.streams.purge(RECORDS_STREAM), `$JS.API.STREAM.PURGE.${RECORDS_STREAM}`);
    await refused(() => jsm.streams.delete(RECORDS_STREAM), `$JS.API.STREAM.DELETE.${RECORDS_STREAM}`);
    await refused(() => jsm.streams.update(RECORDS_STREAM, { max_msgs: 1 }), `$JS.API.STREAM.UPDATE.${RECORDS_STREAM}`);
  });

  test('cannot read the bucket', async () => {
    const kv = await new Kvm(jetStream(nc)).open(SESSIONS_BUCKET);
    await refused(() => kv.get('s1'), /^Permissions Violation for Publish to "\$JS\.API\.(STREAM\.MSG\.GET|DIRECT\.GET)\.KV_damon_sessions/);
  });

  test('reads records and events with ordered consumers', async () => {
    const js = jetStream(nc);
    for (const [stream, filter, want] of [[RECORDS_STREAM, recordsFilter('s1'), 'r1'], [EVENTS_STREAM, eventsFilter('s1'), 'on']] as const) {
      const c = await js.consumers.get(stream, { filter_subjects: filter, deliver_policy: DeliverPolicy.All });
      const m = await c.next({ expires: 2000 });
      assert.equal(m && new TextDecoder().decode(m.data), want, stream);
    }
  });

  test('creates, uses and deletes a durable consumer of its own', async () => {
    const js = jetStream(nc);
    const jsm = await js.jetstreamManager();
    await jsm.consumers.add(RECORDS_STREAM, { durable_name: 'optimizer', ack_policy: AckPolicy.Explicit, filter_subject: recordsFilter('s1') });
    const m = await (await js.consumers.get(RECORDS_STREAM, 'optimizer')).next({ expires: 2000 });
    assert.equal(m && new TextDecoder().decode(m.data), 'r1');
    await m!.ackAck();
    assert.equal((await jsm.consumers.info(RECORDS_STREAM, 'optimizer')).ack_floor.stream_seq, m!.seq);
    assert.equal(await jsm.consumers.delete(RECORDS_STREAM, 'optimizer'), true);
  });

  test('cannot subscribe to another identity\'s inbox, nor to the shared one', async () => {
    const controllerInbox = `${inboxPrefix(publicKeyOfSeedFile(nats.credentials.controller))}.>`;
    for (const subject of [controllerInbox, '_INBOX.>']) {
      const sub = nc.subscribe(subject);
      const closed = await sub.closed;
      assert.equal((closed as Error | undefined)?.message, `Permissions Violation for Subscription to "${subject}"`);
    }
  });
});

describe('an agent (h1)', () => {
  let nc: NatsConnection;
  before(async () => {
    nc = await as(nats.credentials.agent('h1'));
  });

  test('cannot publish as another host, write the bucket, publish events or purge', async () => {
    const js = jetStream(nc);
    await refused(() => js.publish(recordsSubject('s1', 'h2', 1), bytes('forged'), { msgID: 'h2-forged' }), 'damon.records.s1.h2.1');
    await refused(() => js.publish(`$KV.${SESSIONS_BUCKET}.s1`, bytes('{}')), `$KV.${SESSIONS_BUCKET}.s1`);
    await refused(() => js.publish(eventsSubject('s1'), bytes('forged')), eventsSubject('s1'));
    const jsm = await js.jetstreamManager(false);
    await refused(() => jsm.streams.purge(RECORDS_STREAM), `$JS.API.STREAM.PURGE.${RECORDS_STREAM}`);
    await refused(() => jsm.streams.info(RECORDS_STREAM), `$JS.API.STREAM.INFO.${RECORDS_STREAM}`);
  });

  test('publishes its own records and gets the pub ack on its inbox', async () => {
    const before = (await operatorJsm.streams.info(RECORDS_STREAM)).state.last_seq;
    const ack = await jetStream(nc).publish(recordsSubject('s1', 'h1', 1), bytes('r2'), { msgID: 'rec-2' });
    assert.equal(ack.stream, RECORDS_STREAM);
    assert.equal(ack.seq, before + 1);
  });
});

describe('action events (DAMON_ACTIONS)', () => {
  test('only the agent of the host publishes them; an optimizer, a reader and the operator read them', async () => {
    const agent = await as(nats.credentials.agent('h1'));
    const ack = await jetStream(agent).publish(actionsSubject('s1', 'h1'), bytes('act-1'), { msgID: 'act-1' });
    assert.equal(ack.stream, ACTIONS_STREAM);
    await refused(() => jetStream(agent).publish(actionsSubject('s1', 'h2'), bytes('forged')), actionsSubject('s1', 'h2'));
    for (const seed of [creds.optimizer('opt'), nats.credentials.reader(), nats.credentials.controller, nats.credentials.operator]) {
      const js = jetStream(await conn(seed));
      await refused(() => js.publish(actionsSubject('s1', 'h1'), bytes('forged')), actionsSubject('s1', 'h1'));
    }
    for (const seed of [creds.optimizer('opt'), nats.credentials.reader(), nats.credentials.operator]) {
      const c = await jetStream(await conn(seed)).consumers.get(ACTIONS_STREAM, { filter_subjects: actionsFilter('s1'), deliver_policy: DeliverPolicy.All });
      const m = await c.next({ expires: 2000 });
      assert.equal(m && new TextDecoder().decode(m.data), 'act-1', seed);
    }
  });

  test('an optimizer reads like a reader and writes nothing: no records, events, bucket or stream administration', async () => {
    const js = jetStream(await conn(creds.optimizer('opt')));
    await refused(() => js.publish(recordsSubject('s1', 'h1', 1), bytes('forged')), recordsSubject('s1', 'h1', 1));
    await refused(() => js.publish(eventsSubject('s1'), bytes('forged')), eventsSubject('s1'));
    await refused(() => js.publish(`$KV.${SESSIONS_BUCKET}.s1`, bytes('{}')), `$KV.${SESSIONS_BUCKET}.s1`);
    const jsm = await js.jetstreamManager();
    await refused(() => jsm.streams.purge(ACTIONS_STREAM), `$JS.API.STREAM.PURGE.${ACTIONS_STREAM}`);
    const c = await js.consumers.get(RECORDS_STREAM, { filter_subjects: recordsFilter('s1'), deliver_policy: DeliverPolicy.All });
    const m = await c.next({ expires: 2000 });
    assert.equal(m && new TextDecoder().decode(m.data), 'r1');
  });
});

describe('DAMON_STAT summaries (plain NATS)', () => {
  test('only the agent of the host publishes them; readers and the operator read them', async () => {
    const [agent, reader, operator, controller] = await Promise.all([
      as(nats.credentials.agent('h1')),
      as(nats.credentials.reader()),
      as(nats.credentials.operator),
      as(nats.credentials.controller),
    ]);
    const got: string[] = [];
    for (const nc of [reader, operator]) {
      const sub = nc.subscribe(statFilter());
      void (async () => {
        for await (const m of sub) got.push(`${nc === reader ? 'reader' : 'operator'} ${m.subject} ${new TextDecoder().decode(m.data)}`);
      })();
      await nc.flush();
    }
    // Core publishes do not fail at the publisher: the server refuses and logs them.
    for (const [who, nc, subject] of [['agent h1', agent, statSubject('s1', 'h2')], ['reader', reader, statSubject('s1', 'h1')], ['controller', controller, statSubject('s1', 'h1')]] as const) {
      const from = nats.log.length;
      nc.publish(subject, bytes(`forged by ${who}`));
      await nc.flush();
      const logged = await waitLog(from, /Publish Violation/);
      assert.ok(logged.includes(`Subject "${subject}"`), `${who}: ${logged}`);
    }
    agent.publish(statSubject('s1', 'h1'), bytes('ok'));
    await agent.flush();
    for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got.sort(), ['operator damon.stat.s1.h1 ok', 'reader damon.stat.s1.h1 ok']);
  });
});

describe('the controller', () => {
  let nc: NatsConnection;
  before(async () => {
    nc = await as(nats.credentials.controller);
  });

  test('cannot publish records', async () => {
    await refused(() => jetStream(nc).publish(recordsSubject('s1', 'h1', 1), bytes('forged')), recordsSubject('s1', 'h1', 1));
  });

  test('writes the bucket and publishes events', async () => {
    const rev = await controllerKv.put('s2', '{"id":"s2"}');
    assert.equal((await controllerKv.get('s2'))?.revision, rev);
    const ack = await jetStream(nc).publish(eventsSubject('s2'), bytes('on'), { msgID: 'ev-2' });
    assert.equal(ack.stream, EVENTS_STREAM);
  });

  test('cannot purge or delete the data streams', async () => {
    const jsm = await jetStream(nc).jetstreamManager();
    await refused(() => jsm.streams.purge(RECORDS_STREAM), `$JS.API.STREAM.PURGE.${RECORDS_STREAM}`);
    await refused(() => jsm.streams.delete(EVENTS_STREAM), `$JS.API.STREAM.DELETE.${EVENTS_STREAM}`);
  });

  test('leads: two controllers take, renew and release the lease under these permissions alone', async () => {
    const roles: string[] = [];
    const other = await as(nats.credentials.controller);
    const lead = (conn: NatsConnection, id: string) =>
      Leadership.open(jetStream(conn), { id, address: `127.0.0.1:${id === 'a' ? 1 : 2}`, ttlMs: 400, log: silentLogger, onRole: async (r) => void roles.push(`${id} ${r.role}`) });
    const a = await lead(nc, 'a');
    const b = await lead(other, 'b');
    await a.start();
    await b.start();
    assert.ok(a.currentEpoch() !== undefined, 'the first one leads');
    assert.equal(b.currentEpoch(), undefined, 'the second stands by');
    await new Promise((r) => setTimeout(r, 1000)); // renewals keep it
    assert.ok(a.currentEpoch() !== undefined);
    assert.equal(b.leaderAddress(), '127.0.0.1:1');
    const epoch = a.currentEpoch()!;
    await a.stop(); // releases: the other takes over at its next read
    for (let i = 0; i < 100 && b.currentEpoch() === undefined; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok((b.currentEpoch() ?? 0) > epoch, 'a higher epoch');
    await b.stop();
    assert.deepEqual(roles, ['a leader', 'a standby', 'b leader', 'b standby']);
  });

  test('cannot write other keys of the lease bucket, nor purge or delete it', async () => {
    const kv = await new Kvm(jetStream(nc)).open(LEADER_BUCKET);
    await refused(() => kv.put('other', 'x'), `$KV.${LEADER_BUCKET}.other`);
    const jsm = await jetStream(nc).jetstreamManager();
    await refused(() => jsm.streams.purge(LEADER_STREAM), `$JS.API.STREAM.PURGE.${LEADER_STREAM}`);
    await refused(() => jsm.streams.delete(LEADER_STREAM), `$JS.API.STREAM.DELETE.${LEADER_STREAM}`);
  });
});

describe('the lease', () => {
  test('an agent, a reader or the operator cannot take it', async () => {
    for (const file of [nats.credentials.agent('h1'), nats.credentials.reader(), nats.credentials.operator]) {
      const js = jetStream(await as(file));
      await refused(() => js.publish(LEADER_KEY_SUBJECT, bytes('{}')), LEADER_KEY_SUBJECT);
    }
  });
});

describe('the operator', () => {
  let nc: NatsConnection;
  before(async () => {
    nc = await as(nats.credentials.operator);
  });

  test('cannot write, delete or purge the bucket, or change its stream', async () => {
    const js = jetStream(nc);
    const kv = await new Kvm(js).open(SESSIONS_BUCKET);
    await refused(() => kv.put('s1', '{}'), `$KV.${SESSIONS_BUCKET}.s1`);
    await refused(() => kv.delete('s1'), `$KV.${SESSIONS_BUCKET}.s1`);
    const jsm = await js.jetstreamManager();
    await refused(() => jsm.streams.purge(SESSIONS_STREAM), `$JS.API.STREAM.PURGE.${SESSIONS_STREAM}`);
    await refused(() => jsm.streams.delete(SESSIONS_STREAM), `$JS.API.STREAM.DELETE.${SESSIONS_STREAM}`);
    await refused(() => jsm.streams.update(SESSIONS_STREAM, { max_msgs: 1 }), `$JS.API.STREAM.UPDATE.${SESSIONS_STREAM}`);
  });

  test('reads the bucket (get, keys, watch)', async () => {
    const kv = await new Kvm(jetStream(nc)).open(SESSIONS_BUCKET);
    assert.equal((await kv.get('s1'))?.string(), '{"id":"s1"}');
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    assert.deepEqual(keys.sort(), ['s1', 's2']);
    const w = await kv.watch({ key: 's1' });
    for await (const e of w) {
      assert.equal(e.key, 's1');
      break;
    }
  });

  test('purges the records stream', async () => {
    const jsm = await jetStream(nc).jetstreamManager();
    assert.ok((await jsm.streams.info(RECORDS_STREAM)).state.messages > 0);
    const r = await jsm.streams.purge(RECORDS_STREAM);
    assert.equal(r.success, true);
    assert.equal((await jsm.streams.info(RECORDS_STREAM)).state.messages, 0);
  });
});
