// What users saw before the session schema (common/session-schema.ts), one test per report:
// each is now refused at the boundary with the status code that says why, and messages and
// log lines quote only an excerpt of the input.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Kvm } from '@nats-io/kv';
import { connectNats, jetStream } from '../../common/nats.js';
import { MAX_HOSTS_PER_SESSION, MAX_TARGETS_PER_SESSION } from '../../common/session-schema.js';
import { SESSIONS_BUCKET } from '../../common/subjects.js';
import { SessionState, TargetState } from '../../gen/damon/v1/damon.js';
import { startEnv, type ControllerEnv } from './support/controller-env.js';
import { rejectsWith, unary } from './support/grpc-client.js';

const { INVALID_ARGUMENT, RESOURCE_EXHAUSTED, FAILED_PRECONDITION } = grpc.status;

describe('controller limits', () => {
  let env: ControllerEnv;
  let n = 0;
  before(async () => {
    env = await startEnv();
    await env.agent('host-a');
  });
  after(async () => {
    await env.close();
  });

  const create = async () =>
    unary(env.client, 'createSession', { id: `lim${++n}`, attrs: undefined, attrsText: '', schemesText: '', targets: [], operations: '', syntheticWorkload: '' });
  const setText = (id: string, attrsText: string) => unary(env.client, 'setAttributes', { id, attrs: undefined, attrsText, schemesText: '', expectedRevision: 0n });
  const setTargets = (id: string, targets: { host: string; pid: number }[], more: { operations?: string; syntheticWorkload?: string } = {}) =>
    unary(env.client, 'setTargets', { id, targets, expectedRevision: 0n, operations: '', syntheticWorkload: '', ...more });

  test('max_nr_regions beyond its bound (4294967296 overflows uint32) is refused; every read keeps working', async () => {
    const s = await create();
    await rejectsWith(setText(s.id, '5000 100000 1000000 10 4294967296'), INVALID_ARGUMENT, /^attrs_text: max_nr_regions: too large: at most 20000, got 4294967296$/);
    assert.equal((await unary(env.client, 'getSession', { id: s.id })).attrsText, '5000 100000 1000000 10 1000');
    await unary(env.client, 'getAttributes', { id: s.id });
    await setTargets(s.id, [{ host: 'host-a', pid: 1 }]);
    assert.ok((await unary(env.client, 'listSessions', { pageSize: 0, pageToken: '' })).sessions.some((x) => x.id === s.id));
  });

  test('an out-of-bounds entry already in the bucket: FAILED_PRECONDITION naming it; the others list; it can be deleted', async () => {
    const good = await create();
    const nc = await connectNats({ servers: env.nats.url, nkeyFile: env.nats.credentials.controller });
    try {
      const kv = await new Kvm(jetStream(nc)).create(SESSIONS_BUCKET, { history: 1 }); // as SessionStore opens it
      const stored = JSON.parse((await kv.get(good.id))!.string());
      stored.id = 'old-broken';
      stored.attrs.maxNrRegions = 4294967296;
      await kv.put('old-broken', JSON.stringify(stored));
    } finally {
      await nc.close();
    }
    await rejectsWith(
      unary(env.client, 'getSession', { id: 'old-broken' }),
      FAILED_PRECONDITION,
      /stored value breaks the session schema: attrs\.max_nr_regions: too large: at most 20000.*delete it/,
    );
    const page = await unary(env.client, 'listSessions', { pageSize: 0, pageToken: '' });
    const listed = page.sessions.map((x) => x.id);
    assert.ok(listed.includes(good.id) && !listed.includes('old-broken'));
    const q = page.quarantined.find((x) => x.id === 'old-broken');
    assert.ok(q && q.revision > 0n, 'listed as quarantined, with its revision');
    assert.match(q.error, /breaks the session schema: attrs\.max_nr_regions: too large/);
    await unary(env.client, 'deleteSession', { id: 'old-broken' });
    assert.ok(!(await unary(env.client, 'listSessions', { pageSize: 0, pageToken: '' })).quarantined.some((x) => x.id === 'old-broken'));
    await rejectsWith(unary(env.client, 'getSession', { id: 'old-broken' }), grpc.status.NOT_FOUND);
  });

  test('values the agent would refuse are refused by SetAttributes/SetTargets, naming the field and the bound', async () => {
    const s = await create();
    // The seed's own example: an absolute result path (a kernel DAMON habit).
    await rejectsWith(setText(s.id, '5000 100000 1000000 10 1000 /damon.data'), INVALID_ARGUMENT, /^attrs_text: result_file: absolute paths are refused; give a path relative/);
    await rejectsWith(setText(s.id, '5000 100000 1000000 10 1000 runs/../../x'), INVALID_ARGUMENT, /^attrs_text: result_file: escapes the agent's data directory through '\.\.'/);
    await rejectsWith(
      unary(env.client, 'setAttributes', { id: s.id, attrs: { samplingIntervalUs: 0n, aggregationIntervalUs: 0n, updateIntervalUs: 0n, minNrRegions: 0, maxNrRegions: 0, resultFile: '../x', resultFormat: '', schemes: [] }, attrsText: '', schemesText: '', expectedRevision: 0n }),
      INVALID_ARGUMENT,
      /^attrs\.result_file: escapes/,
    );
    await rejectsWith(setTargets(s.id, [{ host: 'host-a', pid: 1 }], { operations: 'synthetic', syntheticWorkload: 'hot-cold' }), INVALID_ARGUMENT, /^synthetic_workload: not a preset \(hot5, islands\)/);
    await rejectsWith(setText(s.id, '5000 100000 100000000000000000000 10 1000'), INVALID_ARGUMENT, /^attrs_text: update_interval_us: too large: at most 86400000000, got 100000000000000000000$/);
    // Exact: 2^53 + 1 is named as given, not as the double it would round to.
    await rejectsWith(setText(s.id, '5000 9007199254740993 1000000 10 1000'), INVALID_ARGUMENT, /got 9007199254740993$/);
    const ok = await setText(s.id, '5000 100000 1000000 10 1000 runs/damon.data');
    assert.equal(ok.attrs!.resultFile, 'runs/damon.data');
  });

  test('TurnOn when every target fails at the agents: FAILED_PRECONDITION, and the session is off', async () => {
    const agent = env.agents[0];
    const s = await create();
    await setTargets(s.id, [{ host: 'host-a', pid: 4242 }]);
    agent.setPid(4242, TargetState.TARGET_STATE_FAILED, 'synthetic operations: cannot start');
    try {
      await rejectsWith(unary(env.client, 'turnOn', { id: s.id }), FAILED_PRECONDITION, /no target could start: host-a pid 4242 failed: synthetic operations: cannot start/);
      assert.equal((await unary(env.client, 'getSession', { id: s.id })).state, SessionState.SESSION_STATE_OFF);
    } finally {
      agent.pidStates.clear();
    }
  });

  test('too many targets is RESOURCE_EXHAUSTED at SetTargets and CreateSession, never INTERNAL', async () => {
    const s = await create();
    const targets = (count: number) => Array.from({ length: count }, (_, i) => ({ host: 'host-a', pid: i + 1 }));
    await rejectsWith(setTargets(s.id, targets(10_000)), RESOURCE_EXHAUSTED, new RegExp(`^targets: 10000 targets; a session has at most ${MAX_TARGETS_PER_SESSION} \\(MAX_TARGETS_PER_SESSION\\)$`));
    await rejectsWith(setTargets(s.id, targets(50_000)), RESOURCE_EXHAUSTED, /50000 targets/);
    await rejectsWith(
      unary(env.client, 'createSession', { id: '', attrs: undefined, attrsText: '', schemesText: '', targets: targets(10_000), operations: '', syntheticWorkload: '' }),
      RESOURCE_EXHAUSTED,
    );
    const spread = Array.from({ length: MAX_HOSTS_PER_SESSION + 1 }, (_, i) => ({ host: `h${i}`, pid: 1 }));
    await rejectsWith(setTargets(s.id, spread), RESOURCE_EXHAUSTED, new RegExp(`${MAX_HOSTS_PER_SESSION + 1} hosts; a session spans at most ${MAX_HOSTS_PER_SESSION}`));
    // The most allowed fits, and turns on.
    const max = await setTargets(s.id, targets(MAX_TARGETS_PER_SESSION));
    assert.equal(max.targets.length, MAX_TARGETS_PER_SESSION);
    const on = await unary(env.client, 'turnOn', { id: s.id });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    await unary(env.client, 'turnOff', { id: s.id });
  });

  test('a 3 MB id is quoted as an excerpt; log lines stay short and on one line', async () => {
    const msg = await rejectsWith(unary(env.client, 'getSession', { id: 'x'.repeat(3_000_000) }), INVALID_ARGUMENT, /^id: must be 1 to 64 of \[A-Za-z0-9_-\], got "x{64}…"$/);
    assert.ok(msg.length < 200, `message of ${msg.length} characters`);
    await rejectsWith(setText('lim1', `5000 100000 1000000 10 1000 ${'a/'.repeat(60_000)}r`), INVALID_ARGUMENT, /result paths have at most 1024/);
    await rejectsWith(
      unary(env.client, 'setAttributes', { id: 'lim1', attrs: { samplingIntervalUs: 0n, aggregationIntervalUs: 0n, updateIntervalUs: 0n, minNrRegions: 0, maxNrRegions: 0, resultFile: 'runs/a\nb', resultFormat: '', schemes: [] }, attrsText: '', schemesText: '', expectedRevision: 0n }),
      INVALID_ARGUMENT,
      /^attrs\.result_file: contains a control character$/,
    );
    const s = await create();
    const longHost = (i: number) => `h${i}${'a'.repeat(60)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61 - String(i).length)}`;
    await setTargets(s.id, Array.from({ length: MAX_TARGETS_PER_SESSION }, (_, i) => ({ host: longHost(i % 64), pid: i + 1 })));
    for (const line of env.logs) {
      assert.ok(line.length < 2000, `a log line of ${line.length} characters: ${line.slice(0, 100)}`);
      assert.ok(!line.includes('\n'), `a log line with a newline: ${line.slice(0, 100)}`);
    }
  });

  test('ListSessions is paged: page_size up to 1000, a token that continues where the page ended, refusals for bad ones', async () => {
    for (let i = 0; i < 5; i++) await create();
    const all = (await unary(env.client, 'listSessions', { pageSize: 1000, pageToken: '' })).sessions.map((s) => s.id);
    assert.ok(all.length >= 5);
    const paged: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await unary(env.client, 'listSessions', { pageSize: 2, pageToken });
      assert.ok(page.sessions.length <= 2);
      paged.push(...page.sessions.map((s) => s.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== '' && pages < 1000);
    assert.deepEqual(paged, all, 'every session once, in id order');
    assert.equal(pages, Math.ceil(all.length / 2));
    await rejectsWith(unary(env.client, 'listSessions', { pageSize: 1001, pageToken: '' }), INVALID_ARGUMENT, /^page_size: too large: 1001; at most 1000$/);
    await rejectsWith(unary(env.client, 'listSessions', { pageSize: 0, pageToken: 'not a token!' }), INVALID_ARGUMENT, /^page_token: not a token ListSessions gave/);
  });
});
