// The whole system with faults in the store and in an agent: corrupt entries in the
// session bucket (not JSON, a wrong type) are quarantined, listed and deletable while every
// other session is reconciled promptly, also by a controller started with them present;
// a controller that cannot start exits non-zero with nothing bound; health follows NATS;
// a session deleted while its agent is frozen (SIGSTOP) stops when the agent comes back.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Kvm } from '@nats-io/kv';
import { connectNats, jetStream } from '../../common/nats.js';
import { SESSIONS_BUCKET } from '../../common/subjects.js';
import { FLEET_BIN } from './support/fleet-processes.js';
import { healthCheck, rejectsWith, unary, waitFor } from './support/grpc-client.js';
import { recordsOf, watchRecords } from './support/nats-watch.js';
import { AGGREGATION_MS, RUNNING, getSession, sessionOn, statusOf, useFleet, waitSession } from './support/system-env.js';

const A = 'flt-a';
const B = 'flt-b';

describe('whole system: a corrupt store, a controller that cannot start, a frozen agent', () => {
  const env = useFleet([A, B]);

  test('corrupt entries are quarantined; the others are reconciled at once, by a controller started with them too', { timeout: 90_000 }, async (t) => {
    const { fleet } = env;
    const ta = fleet.target();
    const tb = fleet.target();
    await sessionOn(fleet, 'good-a', [{ host: A, pid: ta.pid }]);
    await sessionOn(fleet, 'good-b', [{ host: B, pid: tb.pid }]);
    await waitSession(fleet, 'good-a', 'good-a running', (s) => statusOf(s, A, ta.pid)?.state === RUNNING);

    // Written straight into the bucket, as by hand or by another program.
    const nc = await connectNats({ servers: fleet.nats.url, nkeyFile: fleet.creds.controller });
    try {
      const kv = await new Kvm(jetStream(nc)).create(SESSIONS_BUCKET, { history: 1 }); // as SessionStore opens it
      await kv.put('bad-json', '{"id": "bad-json", "attrs": ');
      const wrongType = JSON.parse((await kv.get('good-b'))!.string());
      wrongType.id = 'wrong-type';
      wrongType.targets = 'flt-b:1';
      await kv.put('wrong-type', JSON.stringify(wrongType));
    } finally {
      await nc.close();
    }

    const listQuarantined = async () => (await unary(fleet.client, 'listSessions', { pageSize: 0, pageToken: '' }));
    const page = await listQuarantined();
    assert.deepEqual(page.sessions.map((s) => s.id).sort(), ['good-a', 'good-b']);
    assert.deepEqual(page.quarantined.map((q) => q.id), ['bad-json', 'wrong-type']);
    assert.match(page.quarantined[0].error, /stored value is not JSON/);
    assert.match(page.quarantined[1].error, /stored value is not a session/);
    assert.ok(page.quarantined.every((q) => q.revision > 0n && q.error.length <= 301));
    await rejectsWith(unary(fleet.client, 'getSession', { id: 'bad-json' }), grpc.status.FAILED_PRECONDITION, /delete it/);

    // A controller started with them present serves (no "cannot start"), SERVING.
    await fleet.controller.kill9();
    await fleet.restartController();
    assert.ok(fleet.controller.log.some((l) => /2 sessions in store, 2 on, 2 quarantined/.test(l)), fleet.controller.log.join('\n'));
    await waitFor('the quarantine logged', () => fleet.controller.log.some((l) => /session bad-json quarantined \(revision \d+\): .*not JSON/.test(l)));
    assert.equal(await healthCheck(fleet.controllerAddress, grpc.credentials.createInsecure()), 'SERVING');

    // A restarted agent gets its session back promptly; the other session is unaffected.
    const recs = watchRecords(fleet.nc, 'good-a');
    await fleet.nc.flush();
    try {
      await fleet.agents.get(A)!.kill9();
      const restartAt = Date.now();
      const fresh = await fleet.startAgent(A);
      const readyAt = Date.now();
      const first = await waitFor('a record of the new instance', () =>
        recordsOf(recs.items, A, ta.pid).find((r) => r.at > restartAt && r.msg.agentInstance === fresh.instanceId), 15_000);
      const backMs = first.at - readyAt;
      // The record needs one aggregation interval after dispatch; the dispatch waits on no other session.
      assert.ok(backMs < 3000 + AGGREGATION_MS, `the session came back ${backMs} ms after the agent served`);
      t.diagnostic(`session back ${backMs} ms after the restarted agent served (instance ${fresh.instanceId})`);
      const b = await getSession(fleet, 'good-b');
      assert.equal(statusOf(b, B, tb.pid)?.state, RUNNING);
    } finally {
      recs.stop();
    }

    // Quarantined entries are never dispatched; DeleteSession removes them.
    const dispatched = fleet.controller.log.filter((l) => /session (bad-json|wrong-type): dispatching/.test(l));
    assert.deepEqual(dispatched, []);
    await unary(fleet.client, 'deleteSession', { id: 'bad-json' });
    await unary(fleet.client, 'deleteSession', { id: 'wrong-type' });
    assert.deepEqual((await listQuarantined()).quarantined, []);
    for (const id of ['good-a', 'good-b']) await unary(fleet.client, 'turnOff', { id });
  });

  test('a controller that cannot start exits non-zero and leaves nothing bound', { timeout: 60_000 }, async () => {
    const { fleet } = env;
    // Its port is taken (by the running controller): it must not linger half-started.
    const child = spawn(process.execPath, [FLEET_BIN, 'controller', '--listen', fleet.controllerAddress, '--nats', fleet.nats.url,
      '--nats-nkey', fleet.creds.controller, '--identities', fleet.creds.layout.controller.identities,
      '--agent-key-file', fleet.creds.layout.controller.agentKey], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /cannot start: /);
    assert.equal(await healthCheck(fleet.controllerAddress, grpc.credentials.createInsecure()), 'SERVING', 'the running one still serves');
  });

  test('health is NOT_SERVING while NATS is down, SERVING once it is back', { timeout: 60_000 }, async () => {
    const { fleet } = env;
    const insecure = grpc.credentials.createInsecure();
    await fleet.nats.kill9();
    try {
      await waitFor('NOT_SERVING', async () => (await healthCheck(fleet.controllerAddress, insecure)) === 'NOT_SERVING', 15_000, 100);
      assert.equal(await healthCheck(fleet.controllerAddress, insecure, 'damon.v1.Controller'), 'NOT_SERVING');
    } finally {
      await fleet.nats.restart();
    }
    await waitFor('SERVING again', async () => (await healthCheck(fleet.controllerAddress, insecure)) === 'SERVING', 30_000, 100);
    await unary(fleet.client, 'listSessions', { pageSize: 0, pageToken: '' });
    // The test's own connection reconnects too (for the next test's watches).
    await waitFor('the test\'s NATS connection back', () => fleet.nc.flush().then(() => true, () => false), 30_000, 200);
  });

  test('a session deleted while its agent is frozen stops when the agent comes back', { timeout: 90_000 }, async () => {
    const { fleet } = env;
    const tb = fleet.target();
    await sessionOn(fleet, 'frozen', [{ host: B, pid: tb.pid }]);
    await waitSession(fleet, 'frozen', 'running', (s) => statusOf(s, B, tb.pid)?.state === RUNNING, 20_000);
    const recs = watchRecords(fleet.nc, 'frozen');
    await fleet.nc.flush();
    const agent = fleet.agents.get(B)!;
    try {
      await waitFor('records', () => recordsOf(recs.items, B, tb.pid).length > 0, 10_000);
      process.kill(agent.pid, 'SIGSTOP');
      try {
        await waitFor('the frozen agent not live', async () =>
          (await unary(fleet.client, 'listAgents', {})).agents.some((a) => a.host === B && !a.live), 15_000);
        await unary(fleet.client, 'turnOff', { id: 'frozen' });
        await unary(fleet.client, 'deleteSession', { id: 'frozen' });
      } finally {
        process.kill(agent.pid, 'SIGCONT');
      }
      const contAt = Date.now();
      await waitFor('the agent no longer runs it', async () =>
        !(await unary(fleet.agentClient(B), 'getState', { pageToken: '', epoch: 0n })).sessions.some((s) => s.sessionId === 'frozen'), 15_000);
      const stoppedMs = Date.now() - contAt;
      assert.ok(stoppedMs < 8000, `stopped ${stoppedMs} ms after SIGCONT`);
      const quietFrom = Date.now() + AGGREGATION_MS;
      await new Promise((r) => setTimeout(r, 4 * AGGREGATION_MS));
      assert.deepEqual(recordsOf(recs.items, B, tb.pid).filter((r) => r.at > quietFrom).map((r) => r.msg.sequence), [], 'records after it stopped');
      assert.ok(agent.log.some((l) => /session frozen: (the controller does not want it on this host; stopping|stop)/.test(l)) ||
        fleet.controller.log.some((l) => /session frozen: stopped on flt-b/.test(l)));
    } finally {
      recs.stop();
    }
  });
});
