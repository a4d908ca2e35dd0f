// Dispatch and reconcile against fake agents: TurnOn all-or-nothing, re-apply after an
// agent restart or loss, stopping undesired sessions, lease expiry, target status and
// events, all-targets-exited turning the session off, TurnOn with no target able to start,
// and the record/event streams.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { RpcError } from '../../common/grpc-server.js';
import { connectNats, jetStream, recordMsgId } from '../../common/nats.js';
import { encodeRecord } from '../../common/record-wire.js';
import { RECORDS_STREAM, recordsSubject } from '../../common/subjects.js';
import {
  AggregationRecord,
  SessionEventKind,
  SessionState,
  TargetState,
  type Session,
  type SessionEvent,
} from '../../gen/damon/v1/damon.js';
import { startEnv, TEST_LEASE_MS, type ControllerEnv } from './support/controller-env.js';
import type { FakeAgent } from './support/fake-agent.js';
import { collect, rejectsWith, unary, waitFor } from './support/grpc-client.js';

const { FAILED_PRECONDITION, INVALID_ARGUMENT } = grpc.status;

describe('controller dispatch and reconcile', () => {
  let env: ControllerEnv;
  let a: FakeAgent;
  let b: FakeAgent;
  let n = 0;

  before(async () => {
    env = await startEnv();
    a = await env.agent('host-a');
    b = await env.agent('host-b', { operations: ['synthetic'], unavailable: ['page_idle: no /sys/kernel/mm/page_idle/bitmap'] });
  });
  after(async () => {
    await env.close();
  });

  async function session(targets: Array<[string, number]>, operations = ''): Promise<Session> {
    return unary(env.client, 'createSession', {
      id: `s${++n}`,
      attrs: undefined,
      attrsText: '1000 20000 500000 5 50', schemesText: '',
      targets: targets.map(([host, pid]) => ({ host, pid })),
      operations,
      syntheticWorkload: '',
    });
  }
  const get = (id: string) => unary(env.client, 'getSession', { id });
  const events = (sessionId: string) => collect(env.client.watchEvents({ sessionId, replay: true }));

  test('ListAgents shows registered agents with their operations, live', async () => {
    const { agents } = await unary(env.client, 'listAgents', {});
    assert.deepEqual(
      agents.map((x) => [x.host, x.live, x.operations, x.address, x.instanceId]),
      [
        ['host-a', true, ['synthetic'], a.address, a.instanceId],
        ['host-b', true, ['synthetic'], b.address, b.instanceId],
      ],
    );
    assert.deepEqual(agents[1].unavailable, ['page_idle: no /sys/kernel/mm/page_idle/bitmap']);
  });

  test('TurnOn refuses, naming them, when target hosts have no live agent; nothing is dispatched', async () => {
    const s = await session([['host-a', 1], ['ghost-1', 2], ['ghost-2', 3]]);
    await rejectsWith(unary(env.client, 'turnOn', { id: s.id }), FAILED_PRECONDITION, /no live agent on hosts ghost-1, ghost-2$/);
    assert.equal(a.applies(s.id).length, 0);
    assert.equal((await get(s.id)).state, SessionState.SESSION_STATE_OFF);
  });

  test('TurnOn refuses operations a host lacks, with the agent\'s reason', async () => {
    const s = await session([['host-b', 1]], 'page_idle');
    await rejectsWith(
      unary(env.client, 'turnOn', { id: s.id }),
      FAILED_PRECONDITION,
      /operations "page_idle" unavailable on host-b \(page_idle: no \/sys\/kernel\/mm\/page_idle\/bitmap\)/,
    );
    assert.equal(b.applies(s.id).length, 0);
  });

  test('TurnOn is all-or-nothing: one host failing stops it on the others and fails with its error', async () => {
    const s = await session([['host-a', 10], ['host-b', 20]]);
    b.applyError = new RpcError(INVALID_ARGUMENT, 'spec.pids: pid 20 given twice');
    try {
      await rejectsWith(unary(env.client, 'turnOn', { id: s.id }), INVALID_ARGUMENT, /stays off: agent on host-b: spec\.pids: pid 20 given twice/);
    } finally {
      b.applyError = undefined;
    }
    assert.equal(a.applies(s.id).length, 1);
    assert.equal(a.stops(s.id).length, 1, 'host-a must be stopped again');
    assert.equal(a.sessions.has(s.id), false);
    const now = await get(s.id);
    assert.equal(now.state, SessionState.SESSION_STATE_OFF);
    // Still off a few passes later: the reconcile loop does not dispatch it.
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(a.applies(s.id).length, 1);
  });

  test('TurnOn dispatches each host its pids, attrs, operations and generation; status and ON event follow', async () => {
    const s = await session([['host-a', 11], ['host-b', 21], ['host-a', 12]], 'synthetic');
    const on = await unary(env.client, 'turnOn', { id: s.id });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    const [applyA] = a.applies(s.id);
    const [applyB] = b.applies(s.id);
    assert.deepEqual(applyA.spec.pids, [11, 12]);
    assert.deepEqual(applyB.spec.pids, [21]);
    assert.equal(applyA.spec.generation, s.revision, 'generation = the revision it was turned on at');
    assert.equal(applyB.spec.generation, s.revision);
    assert.equal(applyA.spec.operations, 'synthetic');
    assert.equal(applyA.spec.attrs!.samplingIntervalUs, 1000n);
    assert.equal(applyA.spec.attrs!.maxNrRegions, 50);
    assert.deepEqual(
      on.targetStatus.map((t) => [t.target!.host, t.target!.pid, t.state, t.operations]),
      [
        ['host-a', 11, TargetState.TARGET_STATE_RUNNING, 'synthetic'],
        ['host-b', 21, TargetState.TARGET_STATE_RUNNING, 'synthetic'],
        ['host-a', 12, TargetState.TARGET_STATE_RUNNING, 'synthetic'],
      ],
    );
    const ev = events(s.id);
    await waitFor('ON event', () => ev.items.length >= 1);
    assert.equal(ev.items[0].kind, SessionEventKind.SESSION_EVENT_KIND_ON);
    ev.cancel();
    // A pass later nothing is re-sent: the agents report what they run.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(a.applies(s.id).length, 1);
    await unary(env.client, 'turnOff', { id: s.id });
    assert.equal(a.stops(s.id).length, 1);
    assert.equal(b.stops(s.id).length, 1);
  });

  test('an agent that restarts (new instance) or loses a session gets it again', async () => {
    const s = await session([['host-a', 31]]);
    await unary(env.client, 'turnOn', { id: s.id });
    assert.equal(a.applies(s.id).length, 1);
    const oldInstance = a.instanceId;
    await a.restart();
    await waitFor('re-apply after restart', () => a.applies(s.id).length === 2);
    assert.notEqual(a.applies(s.id)[1].instanceId, oldInstance);
    assert.equal(a.applies(s.id)[1].spec.generation, a.applies(s.id)[0].spec.generation);
    a.sessions.delete(s.id); // lost without a restart: its next heartbeat lacks it
    await waitFor('re-apply after loss', () => a.applies(s.id).length === 3);
    await unary(env.client, 'turnOff', { id: s.id });
  });

  test('a restarted agent refusing the spec: its targets fail, it is not re-sent every pass', async () => {
    const s = await session([['host-a', 91], ['host-b', 92]]);
    const ev = events(s.id);
    await unary(env.client, 'turnOn', { id: s.id });
    a.applyError = new RpcError(grpc.status.FAILED_PRECONDITION, 'page_idle: no /sys/kernel/mm/page_idle/bitmap');
    try {
      await a.restart();
      const failed = await waitFor('host-a target failed', async () => {
        const now = await get(s.id);
        return now.targetStatus[0].state === TargetState.TARGET_STATE_FAILED ? now : undefined;
      });
      assert.match(failed.targetStatus[0].message, /refused by agent: FAILED_PRECONDITION: page_idle: no \/sys/);
      assert.equal(failed.state, SessionState.SESSION_STATE_ON, 'host-b still monitors its target');
      await waitFor('TARGET_FAILED event', () => ev.items.some((e) => e.kind === SessionEventKind.SESSION_EVENT_KIND_TARGET_FAILED));
      await new Promise((r) => setTimeout(r, 5 * 200));
      assert.equal(a.applies(s.id).length, 2, 'one refused re-apply, not one per pass');
      b.setPid(92, TargetState.TARGET_STATE_EXITED);
      const off = await waitFor('turned off', async () => {
        const now = await get(s.id);
        return now.state === SessionState.SESSION_STATE_OFF ? now : undefined;
      });
      assert.equal(off.offReason, 'no target left to monitor (1 exited, 1 failed)');
    } finally {
      a.applyError = undefined;
      b.pidStates.clear();
      ev.cancel();
    }
  });

  test('sessions an agent runs that are not desired are stopped', async () => {
    const s = await session([['host-a', 41]]);
    await unary(env.client, 'turnOn', { id: s.id });
    // host-b claims to run it (e.g. left over from an earlier spec): not one of its hosts.
    b.sessions.set(s.id, { ...a.sessions.get(s.id)! });
    b.sessions.set('deleted-long-ago', { ...a.sessions.get(s.id)!, sessionId: 'deleted-long-ago' });
    await waitFor('stops on host-b', () => b.stops(s.id).length === 1 && b.stops('deleted-long-ago').length === 1);
    assert.equal(a.stops(s.id).length, 0, 'host-a keeps running it');
    await unary(env.client, 'turnOff', { id: s.id });
  });

  test('an agent that cannot be stopped by call stops what the heartbeat answer says the controller does not want', async () => {
    const s = await session([['host-b', 45]]);
    await unary(env.client, 'turnOn', { id: s.id });
    await waitFor('running', async () => (await get(s.id)).targetStatus[0].state === TargetState.TARGET_STATE_RUNNING);
    b.stopError = new RpcError(grpc.status.UNAVAILABLE, 'stop calls do not get through');
    try {
      await unary(env.client, 'turnOff', { id: s.id });
      await unary(env.client, 'deleteSession', { id: s.id });
      await waitFor('host-b stopped it itself', () => b.stoppedItself(s.id).length === 1 && !b.sessions.has(s.id), 10_000);
      assert.ok(b.stops(s.id).length >= 1, 'the stop call was tried and failed');
    } finally {
      b.stopError = undefined;
    }
    // A session it runs and the controller wants is never named.
    const kept = await session([['host-b', 46]]);
    await unary(env.client, 'turnOn', { id: kept.id });
    const beats = b.heartbeatTimes.length;
    await waitFor('five more heartbeats', () => b.heartbeatTimes.length >= beats + 5, 10_000);
    assert.equal(b.stoppedItself(kept.id).length, 0);
    await unary(env.client, 'turnOff', { id: kept.id });
  });

  test('a lost lease shows targets pending; the agent returning restores them', async () => {
    const s = await session([['host-b', 51]]);
    await unary(env.client, 'turnOn', { id: s.id });
    b.heartbeating = false;
    await waitFor('host-b expired', async () => !(await unary(env.client, 'listAgents', {})).agents.find((x) => x.host === 'host-b')!.live, TEST_LEASE_MS * 4);
    const pending = await waitFor('pending', async () => {
      const now = await get(s.id);
      return now.targetStatus[0].state === TargetState.TARGET_STATE_PENDING ? now : undefined;
    });
    assert.match(pending.targetStatus[0].message, /no live agent on host-b/);
    assert.equal(pending.state, SessionState.SESSION_STATE_ON);
    const registrations = b.registrations;
    b.heartbeating = true; // heartbeat answers known=false -> registers again (same instance)
    await waitFor('running again', async () => (await get(s.id)).targetStatus[0].state === TargetState.TARGET_STATE_RUNNING);
    assert.equal(b.registrations, registrations + 1);
    assert.equal(b.applies(s.id).length, 1, 'same instance still runs it: no re-apply');
    await unary(env.client, 'turnOff', { id: s.id });
  });

  test('target exited / failed: status and events; when every target exited the session turns off', async () => {
    const s = await session([['host-a', 61], ['host-b', 62]]);
    const ev = events(s.id);
    await unary(env.client, 'turnOn', { id: s.id });
    a.setPid(61, TargetState.TARGET_STATE_EXITED, 'process exited');
    await waitFor('exited status', async () => (await get(s.id)).targetStatus[0].state === TargetState.TARGET_STATE_EXITED);
    assert.equal((await get(s.id)).state, SessionState.SESSION_STATE_ON, 'one target left: still on');
    b.setPid(62, TargetState.TARGET_STATE_EXITED, 'process exited');
    const off = await waitFor('turned off', async () => {
      const now = await get(s.id);
      return now.state === SessionState.SESSION_STATE_OFF ? now : undefined;
    });
    assert.equal(off.offReason, 'all targets exited');
    assert.deepEqual(off.targetStatus.map((t) => t.state), [TargetState.TARGET_STATE_EXITED, TargetState.TARGET_STATE_EXITED]);
    await waitFor('stops', () => a.stops(s.id).length === 1 && b.stops(s.id).length === 1);
    await waitFor('OFF event', () => ev.items.some((e) => e.kind === SessionEventKind.SESSION_EVENT_KIND_OFF));
    const kinds = ev.items.map((e: SessionEvent) => [SessionEventKind[e.kind], e.target?.host ?? '', e.target?.pid ?? 0, e.reason]);
    assert.deepEqual(kinds, [
      ['SESSION_EVENT_KIND_ON', '', 0, 'turned on'],
      ['SESSION_EVENT_KIND_TARGET_EXITED', 'host-a', 61, 'process exited'],
      ['SESSION_EVENT_KIND_TARGET_EXITED', 'host-b', 62, 'process exited'],
      ['SESSION_EVENT_KIND_OFF', '', 0, 'all targets exited'],
    ]);
    ev.cancel();
    assert.equal((await ev.ended)?.code, grpc.status.CANCELLED);
    a.pidStates.clear();
    b.pidStates.clear();
  });

  test('no target can start at TurnOn: FAILED_PRECONDITION saying why per target; the session stays off', async () => {
    a.setPid(81, TargetState.TARGET_STATE_EXITED, 'no process with pid 81 on host host-a');
    b.setPid(82, TargetState.TARGET_STATE_FAILED, 'result_file "r.data": "r.data" is a symbolic link');
    try {
      const s = await session([['host-a', 81], ['host-b', 82]]);
      const ev = events(s.id);
      await rejectsWith(
        unary(env.client, 'turnOn', { id: s.id }),
        FAILED_PRECONDITION,
        /stays off: no target could start: host-a pid 81 exited: no process with pid 81 on host host-a; host-b pid 82 failed: result_file "r\.data": .* symbolic link/,
      );
      const off = await get(s.id);
      assert.equal(off.state, SessionState.SESSION_STATE_OFF);
      assert.equal(off.offReason, 'turn on failed: no target could start');
      assert.deepEqual(off.targetStatus.map((t) => t.state), [TargetState.TARGET_STATE_EXITED, TargetState.TARGET_STATE_FAILED]);
      assert.equal(a.stops(s.id).length, 1, 'stopped where it was accepted');
      assert.equal(b.stops(s.id).length, 1);
      // Still off, and not dispatched, a few passes later.
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(a.applies(s.id).length, 1);
      assert.equal((await get(s.id)).state, SessionState.SESSION_STATE_OFF);
      assert.deepEqual(ev.items.map((e) => SessionEventKind[e.kind]), [], 'it never turned on');
      ev.cancel();
    } finally {
      a.pidStates.clear();
      b.pidStates.clear();
    }
  });

  test('some targets start at TurnOn: it is on, and the target status says which failed', async () => {
    a.setPid(84, TargetState.TARGET_STATE_FAILED, 'pagemap: permission denied');
    try {
      const s = await session([['host-a', 83], ['host-a', 84]]);
      const on = await unary(env.client, 'turnOn', { id: s.id });
      assert.equal(on.state, SessionState.SESSION_STATE_ON);
      assert.deepEqual(
        on.targetStatus.map((t) => [t.target!.pid, t.state, t.message]),
        [[83, TargetState.TARGET_STATE_RUNNING, ''], [84, TargetState.TARGET_STATE_FAILED, 'pagemap: permission denied']],
      );
      await unary(env.client, 'turnOff', { id: s.id });
    } finally {
      a.pidStates.clear();
    }
  });

  test('reconfiguring an off session clears the previous run\'s target status', async () => {
    a.setPid(85, TargetState.TARGET_STATE_EXITED, 'gone');
    const s = await session([['host-a', 85]]);
    await rejectsWith(unary(env.client, 'turnOn', { id: s.id }), FAILED_PRECONDITION, /no target could start/);
    a.pidStates.clear();
    assert.equal((await get(s.id)).targetStatus[0].state, TargetState.TARGET_STATE_EXITED);
    const byAttrs = await unary(env.client, 'setAttributes', { id: s.id, attrs: undefined, attrsText: '1000 20000 500000 5 60', schemesText: '', expectedRevision: 0n });
    assert.deepEqual(byAttrs.targetStatus.map((t) => [t.state, t.message]), [[TargetState.TARGET_STATE_IDLE, '']]);

    a.setPid(85, TargetState.TARGET_STATE_EXITED, 'gone');
    await rejectsWith(unary(env.client, 'turnOn', { id: s.id }), FAILED_PRECONDITION, /no target could start/);
    a.pidStates.clear();
    const byTargets = await unary(env.client, 'setTargets', { id: s.id, targets: [{ host: 'host-a', pid: 85 }], expectedRevision: 0n, operations: '', syntheticWorkload: '' });
    assert.deepEqual(byTargets.targetStatus.map((t) => [t.state, t.message]), [[TargetState.TARGET_STATE_IDLE, '']]);
    const on = await unary(env.client, 'turnOn', { id: s.id });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    await unary(env.client, 'turnOff', { id: s.id });
  });

  test('a failed target publishes TARGET_FAILED with the agent\'s message', async () => {
    const s = await session([['host-a', 71], ['host-a', 72]]);
    const ev = events(s.id);
    await unary(env.client, 'turnOn', { id: s.id });
    a.setPid(72, TargetState.TARGET_STATE_FAILED, 'pagemap: permission denied');
    const failed = await waitFor('TARGET_FAILED', () => ev.items.find((e) => e.kind === SessionEventKind.SESSION_EVENT_KIND_TARGET_FAILED));
    assert.deepEqual(failed.target, { host: 'host-a', pid: 72 });
    assert.equal(failed.reason, 'pagemap: permission denied');
    const now = await get(s.id);
    assert.equal(now.state, SessionState.SESSION_STATE_ON);
    assert.equal(now.targetStatus[1].message, 'pagemap: permission denied');
    ev.cancel();
    a.pidStates.clear();
    await unary(env.client, 'turnOff', { id: s.id });
  });

  test('WatchRecords: filtered by session and host, replay or new only, de-duplicated, ends on cancel', async () => {
    // Each host's records come from that host's agent identity; the operator watches the stream.
    const creds = env.nats.credentials;
    const hosts = ['host-a', 'host.b.example'];
    const agentConns = new Map(
      await Promise.all(hosts.map(async (h) => [h, await connectNats({ servers: env.nats.url, nkeyFile: creds.agent(h) })] as const)),
    );
    const nc = await connectNats({ servers: env.nats.url, nkeyFile: creds.operator });
    const js = jetStream(nc);
    try {
      let seq = 0n;
      const publish = async (sessionId: string, host: string, pid: number, id = ++seq) => {
        const rec: AggregationRecord = {
          sessionId, host, pid, startTimeNs: 1000n * id, endTimeNs: 1000n * id + 999n, maxNrAccesses: 20,
          regions: [{ start: 0x1000n, end: 0x3000n, nrAccesses: 3, age: 1 }], operations: 'synthetic', sequence: id,
          agentInstance: 'test-instance', droppedBefore: 0n, packed: undefined, samplingIntervalUs: undefined,
        };
        await jetStream(agentConns.get(host)!).publish(recordsSubject(sessionId, host, pid), encodeRecord(rec), { msgID: recordMsgId(rec) });
        return rec;
      };
      // Watching a session that does not exist is NOT_FOUND, not a silent stream.
      const missing = collect(env.client.watchRecords({ sessionId: 'rec', host: '', replay: true }));
      assert.equal(grpc.status[(await missing.ended)?.code ?? grpc.status.OK], 'NOT_FOUND');
      const missingEvents = collect(env.client.watchEvents({ sessionId: 'rec', replay: true }));
      assert.equal(grpc.status[(await missingEvents.ended)?.code ?? grpc.status.OK], 'NOT_FOUND');
      await unary(env.client, 'createSession', { id: 'rec', attrs: undefined, attrsText: '', schemesText: '', targets: [], operations: '', syntheticWorkload: '' });
      const old1 = await publish('rec', 'host-a', 1);
      await publish('rec', 'host-a', 1, old1.sequence); // a retried publish: dropped
      await publish('rec', 'host.b.example', 2);
      await publish('other', 'host-a', 1);
      const jsm = await js.jetstreamManager();
      assert.equal((await jsm.streams.info(RECORDS_STREAM)).state.messages, 3, 'the retried publish is dropped');

      const all = collect(env.client.watchRecords({ sessionId: 'rec', host: '', replay: true }));
      await waitFor('replayed records', () => all.items.length >= 2);
      assert.deepEqual(all.items.map((r) => [r.host, r.pid, r.sequence]), [['host-a', 1, 1n], ['host.b.example', 2, 2n]]);
      // Packed on NATS, plain regions over gRPC (what grpcurl shows).
      assert.deepEqual(all.items[0].regions, [{ start: 0x1000n, end: 0x3000n, nrAccesses: 3, age: 1 }]);
      assert.equal(all.items[0].packed, undefined);

      const onlyB = collect(env.client.watchRecords({ sessionId: 'rec', host: 'host.b.example', replay: true }));
      const consumers = async () => (await jsm.streams.info(RECORDS_STREAM)).state.consumer_count;
      const live = collect(env.client.watchRecords({ sessionId: 'rec', host: '', replay: false }));
      await waitFor('three consumers', async () => (await consumers()) === 3);
      const fresh = await publish('rec', 'host-a', 5);
      await waitFor('live record', () => live.items.length === 1 && all.items.length === 3);
      assert.deepEqual(live.items[0], fresh);
      await waitFor('host filter', () => onlyB.items.length === 1);
      assert.equal(onlyB.items[0].host, 'host.b.example');

      for (const c of [all, onlyB, live]) c.cancel();
      for (const c of [all, onlyB, live]) assert.equal((await c.ended)?.code, grpc.status.CANCELLED);
      await waitFor('server side ended', () => env.logs.filter((l) => /watch: records of session rec.* ended after/.test(l)).length === 3);
      // Each cancelled watch freed its consumer at once (not after the server's 5 min).
      assert.equal(await consumers(), 0);

      await rejectsWith(
        new Promise((resolve, reject) => {
          const c = collect(env.client.watchRecords({ sessionId: '', host: '', replay: false }));
          void c.ended.then((e) => (e ? reject(e) : resolve(undefined)));
        }),
        INVALID_ARGUMENT,
        /^session_id: /,
      );
    } finally {
      await Promise.all([nc, ...agentConns.values()].map((c) => c.close()));
    }
  });
});
