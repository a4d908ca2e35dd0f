// Session rules of the Controller service, through gRPC against a real NATS: every status
// code a client can get, DAMON's attribute and target rules, and compare-and-set.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SESSION_ID_RE } from '../../common/subjects.js';
import { connectNats, jetStream } from '../../common/nats.js';
import { SessionStore } from '../../controller/session-store.js';
import { SessionState, TargetState, type Attributes } from '../../gen/damon/v1/damon.js';
import { startEnv, type ControllerEnv } from './support/controller-env.js';
import { controllerClient, rejectsWith, unary } from './support/grpc-client.js';

const { INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED } = grpc.status;

function attrs(p: Partial<Attributes>): Attributes {
  return {
    samplingIntervalUs: 0n,
    aggregationIntervalUs: 0n,
    updateIntervalUs: 0n,
    minNrRegions: 0,
    maxNrRegions: 0,
    resultFile: '',
    resultFormat: '', schemes: [],
    ...p,
  };
}

const create = (env: ControllerEnv, req: Partial<Parameters<typeof env.client.createSession>[0]>) =>
  unary(env.client, 'createSession', { id: '', attrs: undefined, attrsText: '', schemesText: '', targets: [], operations: '', syntheticWorkload: '', ...req });
const setTargets = (env: ControllerEnv, id: string, targets: { host: string; pid: number }[], more: { operations?: string; syntheticWorkload?: string; expectedRevision?: bigint } = {}) =>
  unary(env.client, 'setTargets', { id, targets, expectedRevision: 0n, operations: '', syntheticWorkload: '', ...more });
const setAttrs = (env: ControllerEnv, id: string, a: { attrs?: Attributes; attrsText?: string; expectedRevision?: bigint }) =>
  unary(env.client, 'setAttributes', { id, attrs: undefined, attrsText: '', schemesText: '', expectedRevision: 0n, ...a });

describe('controller sessions', () => {
  let env: ControllerEnv;
  before(async () => {
    env = await startEnv();
    await env.agent('host-a');
  });
  after(async () => {
    await env.close();
  });

  test('create fills DAMON defaults, generates an id, starts off with idle targets', async () => {
    const s = await create(env, { targets: [{ host: 'host-a', pid: 42 }] });
    assert.match(s.id, SESSION_ID_RE);
    assert.equal(s.state, SessionState.SESSION_STATE_OFF);
    assert.equal(s.attrsText, '5000 100000 1000000 10 1000');
    assert.equal(s.attrs!.samplingIntervalUs, 5000n);
    assert.equal(s.attrs!.resultFormat, 'binary');
    assert.deepEqual(s.targetStatus.map((t) => [t.target!.pid, t.state]), [[42, TargetState.TARGET_STATE_IDLE]]);
    assert.ok(s.revision > 0n);
    assert.ok(s.createdAtMs > 0n && s.updatedAtMs === s.createdAtMs);
    const got = await unary(env.client, 'getSession', { id: s.id });
    assert.deepEqual(got, s);
  });

  test('ids: a chosen id is kept, a taken one is ALREADY_EXISTS, a malformed one INVALID_ARGUMENT', async () => {
    const s = await create(env, { id: 'web-1' });
    assert.equal(s.id, 'web-1');
    await rejectsWith(create(env, { id: 'web-1' }), ALREADY_EXISTS, /"web-1" already exists/);
    await rejectsWith(create(env, { id: 'has space' }), INVALID_ARGUMENT, /^id: /);
    await rejectsWith(create(env, { id: 'x'.repeat(65) }), INVALID_ARGUMENT, /^id: /);
  });

  test('attributes as a message or as DAMON text; bad values name the field', async () => {
    const s = await create(env, { attrs: attrs({ samplingIntervalUs: 1000n, aggregationIntervalUs: 20000n, maxNrRegions: 500, resultFormat: 'json' }) });
    assert.equal(s.attrsText, '1000 20000 1000000 10 500');
    assert.equal(s.attrs!.resultFormat, 'json');
    const t = await create(env, { attrsText: '2000 40000 500000 5 100 out.data' });
    assert.deepEqual(
      [t.attrs!.samplingIntervalUs, t.attrs!.aggregationIntervalUs, t.attrs!.updateIntervalUs, t.attrs!.minNrRegions, t.attrs!.maxNrRegions, t.attrs!.resultFile],
      [2000n, 40000n, 500000n, 5, 100, 'out.data'],
    );
    const cases: Array<[Parameters<typeof create>[1], RegExp]> = [
      [{ attrs: attrs({ minNrRegions: 2 }) }, /attrs\.min_nr_regions: must be at least 3/],
      [{ attrs: attrs({ samplingIntervalUs: 200000n }) }, /attrs\.sampling_interval_us: must not exceed aggregation_interval_us/],
      [{ attrs: attrs({ minNrRegions: 20, maxNrRegions: 10 }) }, /attrs\.max_nr_regions/],
      [{ attrs: attrs({ resultFormat: 'xml' }) }, /attrs\.result_format: unknown format "xml"/],
      [{ attrs: attrs({ updateIntervalUs: 1n << 60n }) }, /attrs\.update_interval_us: too large/],
      [{ attrsText: '5000 100000 1000000 10' }, /attrs_text: .*expected "<sampling_us>/],
      [{ attrsText: '5000 100000 x 10 1000' }, /attrs_text: update_interval_us: not a non-negative integer: "x"/],
      [{ attrsText: '5000 100000 1000000 2 1000' }, /attrs_text: min_nr_regions/],
      [{ attrs: attrs({}), attrsText: '5000 100000 1000000 10 1000' }, /either as a message or as text, not both/],
    ];
    for (const [req, re] of cases) await rejectsWith(create(env, req), INVALID_ARGUMENT, re);
  });

  test('GetAttributes gives both forms; SetAttributes by text keeps the result format', async () => {
    const s = await create(env, { attrs: attrs({ resultFormat: 'json_compressed' }) });
    const r = await setAttrs(env, s.id, { attrsText: '10000 200000 2000000 10 100 r.json.gz' });
    assert.equal(r.attrs!.resultFormat, 'json_compressed');
    const g = await unary(env.client, 'getAttributes', { id: s.id });
    assert.equal(g.attrsText, '10000 200000 2000000 10 100 r.json.gz');
    assert.equal(g.attrs!.samplingIntervalUs, 10000n);
    assert.equal(g.attrs!.resultFile, 'r.json.gz');
    await rejectsWith(setAttrs(env, s.id, {}), INVALID_ARGUMENT, /one of them is required/);
    await rejectsWith(setAttrs(env, s.id, { attrsText: '1 2 3' }), INVALID_ARGUMENT, /^attrs_text: /);
  });

  test('targets: valid host names, positive pids, no duplicates', async () => {
    const s = await create(env, {});
    await rejectsWith(setTargets(env, s.id, [{ host: 'bad_host', pid: 1 }]), INVALID_ARGUMENT, /targets\[0\]\.host: not a valid host name: "bad_host"/);
    await rejectsWith(setTargets(env, s.id, [{ host: 'h', pid: 1 }, { host: 'h', pid: 0 }]), INVALID_ARGUMENT, /targets\[1\]\.pid: must be a positive/);
    await rejectsWith(setTargets(env, s.id, [{ host: 'h', pid: -5 }]), INVALID_ARGUMENT, /targets\[0\]\.pid/);
    await rejectsWith(setTargets(env, s.id, [{ host: 'h', pid: 7 }, { host: 'h', pid: 7 }]), INVALID_ARGUMENT, /targets\[1\]: duplicate target h pid 7/);
    const r = await setTargets(env, s.id, [{ host: 'h.example.com', pid: 7 }, { host: 'h2', pid: 7 }]);
    assert.deepEqual(r.targets, [{ host: 'h.example.com', pid: 7 }, { host: 'h2', pid: 7 }]);
  });

  test('operations: "" or a known name; synthetic only when asked', async () => {
    await rejectsWith(create(env, { operations: 'magic' }), INVALID_ARGUMENT, /^operations: unknown operations "magic" \(known: kdamond, page_idle, synthetic/);
    await rejectsWith(create(env, { syntheticWorkload: 'islands' }), INVALID_ARGUMENT, /^synthetic_workload: only meaningful with operations "synthetic"/);
    const s = await create(env, { operations: 'synthetic', syntheticWorkload: 'islands' });
    assert.equal(s.operations, 'synthetic');
    for (const ops of ['', 'page_idle', 'kdamond']) assert.equal((await create(env, { operations: ops })).operations, ops);
    const r = await setTargets(env, s.id, [{ host: 'host-a', pid: 3 }], { operations: 'magic' }).catch((e) => e);
    assert.equal(r.code, INVALID_ARGUMENT);
  });

  test('unknown session: NOT_FOUND from every call', async () => {
    const id = 'no-such-session';
    await rejectsWith(unary(env.client, 'getSession', { id }), NOT_FOUND, /"no-such-session" not found/);
    await rejectsWith(unary(env.client, 'getAttributes', { id }), NOT_FOUND);
    await rejectsWith(unary(env.client, 'deleteSession', { id }), NOT_FOUND);
    await rejectsWith(setAttrs(env, id, { attrsText: '5000 100000 1000000 10 1000' }), NOT_FOUND);
    await rejectsWith(setTargets(env, id, []), NOT_FOUND);
    await rejectsWith(unary(env.client, 'turnOn', { id }), NOT_FOUND);
    await rejectsWith(unary(env.client, 'turnOff', { id }), NOT_FOUND);
  });

  test('setting targets does not start; on without targets is FAILED_PRECONDITION', async () => {
    const agent = env.agents[0];
    const s = await create(env, {});
    await rejectsWith(unary(env.client, 'turnOn', { id: s.id }), FAILED_PRECONDITION, /has no targets/);
    const r = await setTargets(env, s.id, [{ host: 'host-a', pid: 11 }]);
    assert.equal(r.state, SessionState.SESSION_STATE_OFF);
    await new Promise((res) => setTimeout(res, 300)); // a reconcile pass or two
    assert.equal(agent.applies(s.id).length, 0);
    assert.equal((await unary(env.client, 'getSession', { id: s.id })).state, SessionState.SESSION_STATE_OFF);
  });

  test('while on: attributes, targets and delete are FAILED_PRECONDITION; off again allows them', async () => {
    const s = await create(env, { targets: [{ host: 'host-a', pid: 21 }] });
    const on = await unary(env.client, 'turnOn', { id: s.id });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    await rejectsWith(setAttrs(env, s.id, { attrsText: '5000 100000 1000000 10 1000' }), FAILED_PRECONDITION, /is on: turn it off before changing its attributes/);
    await rejectsWith(setTargets(env, s.id, [{ host: 'host-a', pid: 22 }]), FAILED_PRECONDITION, /is on: turn it off before changing its targets/);
    await rejectsWith(unary(env.client, 'deleteSession', { id: s.id }), FAILED_PRECONDITION, /is on: turn it off before deleting it/);
    await rejectsWith(unary(env.client, 'turnOn', { id: s.id }), FAILED_PRECONDITION, /already on/);
    // Bad input is still INVALID_ARGUMENT while on (values are checked first, as DAMON parses first).
    await rejectsWith(setAttrs(env, s.id, { attrsText: 'nonsense' }), INVALID_ARGUMENT);
    const off = await unary(env.client, 'turnOff', { id: s.id });
    assert.equal(off.state, SessionState.SESSION_STATE_OFF);
    assert.equal(off.offReason, 'turned off');
    assert.deepEqual(off.targetStatus.map((t) => t.state), [TargetState.TARGET_STATE_IDLE]);
    await rejectsWith(unary(env.client, 'turnOff', { id: s.id }), FAILED_PRECONDITION, /already off/);
    await setTargets(env, s.id, [{ host: 'host-a', pid: 22 }]);
    await unary(env.client, 'deleteSession', { id: s.id });
    await rejectsWith(unary(env.client, 'getSession', { id: s.id }), NOT_FOUND);
    const ids = (await unary(env.client, 'listSessions', { pageSize: 0, pageToken: '' })).sessions.map((x) => x.id);
    assert.ok(!ids.includes(s.id));
  });

  test('ListSessions lists every session by id', async () => {
    const list = (await unary(env.client, 'listSessions', { pageSize: 0, pageToken: '' })).sessions;
    const ids = list.map((s) => s.id);
    assert.deepEqual(ids, [...ids].sort());
    assert.ok(ids.includes('web-1'));
  });

  test('expected_revision: a stale revision is ABORTED and changes nothing', async () => {
    const s = await create(env, {});
    const r1 = await setAttrs(env, s.id, { attrsText: '1000 10000 100000 10 100', expectedRevision: s.revision });
    assert.ok(r1.revision > s.revision);
    await rejectsWith(setAttrs(env, s.id, { attrsText: '2000 20000 200000 10 100', expectedRevision: s.revision }), ABORTED, /is at revision \d+, not the expected/);
    await rejectsWith(setTargets(env, s.id, [{ host: 'h', pid: 1 }], { expectedRevision: s.revision }), ABORTED);
    const now = await unary(env.client, 'getSession', { id: s.id });
    assert.equal(now.attrsText, '1000 10000 100000 10 100');
    assert.equal(now.revision, r1.revision);
    assert.deepEqual(now.targets, []);
  });

  test('two clients racing with the same expected_revision: exactly one wins', async () => {
    const other = controllerClient(env.controller.address);
    try {
      const s = await create(env, {});
      const results = await Promise.allSettled([
        setAttrs(env, s.id, { attrsText: '1000 10000 100000 10 100', expectedRevision: s.revision }),
        unary(other, 'setTargets', { id: s.id, targets: [{ host: 'h', pid: 9 }], expectedRevision: s.revision, operations: '', syntheticWorkload: '' }),
      ]);
      const ok = results.filter((r) => r.status === 'fulfilled');
      const aborted = results.filter((r) => r.status === 'rejected' && (r.reason as grpc.ServiceError).code === ABORTED);
      assert.equal(ok.length, 1);
      assert.equal(aborted.length, 1);
    } finally {
      other.close();
    }
  });

  test('two clients racing without expected_revision: neither loses the other\'s write', async () => {
    const other = controllerClient(env.controller.address);
    try {
      for (let round = 1; round <= 10; round++) {
        const s = await create(env, {});
        const text = `${round * 100} 100000 1000000 10 1000`;
        await Promise.all([
          setAttrs(env, s.id, { attrsText: text }),
          unary(other, 'setTargets', { id: s.id, targets: [{ host: 'h', pid: round }], expectedRevision: 0n, operations: 'synthetic', syntheticWorkload: '' }),
        ]);
        const got = await unary(env.client, 'getSession', { id: s.id });
        assert.equal(got.attrsText, text, `round ${round}: attributes lost`);
        assert.deepEqual(got.targets, [{ host: 'h', pid: round }], `round ${round}: targets lost`);
        assert.equal(got.operations, 'synthetic');
      }
    } finally {
      other.close();
    }
  });

  test('two stores (two controllers\' worth) racing read-modify-writes: every write lands', async () => {
    const asController = () => connectNats({ servers: env.nats.url, nkeyFile: env.nats.credentials.controller });
    const ncs = await Promise.all([asController(), asController()]);
    try {
      // Both write as the leader (its epoch): what is raced here is the compare-and-set.
      const asLeader = { epoch: () => env.controller.leadership.assertLeader(), deposed: () => undefined };
      const stores = await Promise.all(ncs.map((nc) => SessionStore.open(jetStream(nc), Date.now, asLeader)));
      const s = await create(env, {});
      const perStore = 25;
      await Promise.all(
        stores.flatMap((store, k) =>
          Array.from({ length: perStore }, (_, i) =>
            store.update(s.id, (cur) => {
              cur.targets.push({ host: `writer${k}`, pid: i + 1 });
              return cur;
            }),
          ),
        ),
      );
      const got = await unary(env.client, 'getSession', { id: s.id });
      assert.equal(got.targets.length, 2 * perStore);
      for (let k = 0; k < 2; k++) {
        const pids = got.targets.filter((t) => t.host === `writer${k}`).map((t) => t.pid).sort((a, b) => a - b);
        assert.deepEqual(pids, Array.from({ length: perStore }, (_, i) => i + 1));
      }
      const conflicts = stores[0].conflicts + stores[1].conflicts;
      assert.ok(conflicts > 0, 'the race should have produced compare-and-set conflicts');
    } finally {
      await Promise.all(ncs.map((nc) => nc.close()));
    }
  });
});
