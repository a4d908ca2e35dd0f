// A controller killed with SIGKILL loses nothing: sessions live in the KV bucket, agents
// register again, and the restarted controller resumes reconciling where it left off.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { IdentityTable } from '../../common/grpc-access.js';
import { SessionEventKind, SessionState, TargetState } from '../../gen/damon/v1/damon.js';
import { TEST_HEARTBEAT_MS, TEST_LEASE_MS } from './support/controller-env.js';
import { FakeAgent } from './support/fake-agent.js';
import { spawnController as spawnFleetController, type FleetProcess } from './support/fleet-processes.js';
import { collect, controllerClient, unary, waitFor } from './support/grpc-client.js';
import { freePort, startNatsServer, type NatsServer } from './support/nats-server.js';

describe('controller restart (kill -9)', () => {
  let nats: NatsServer;
  let listen: string;
  let ctl: FleetProcess;
  let a: FakeAgent;
  let b: FakeAgent;
  const spawnController = () =>
    spawnFleetController({ listen, nats: nats.url, credentials: nats.credentials, leaseTtlMs: TEST_LEASE_MS, heartbeatMs: TEST_HEARTBEAT_MS });
  const fakeAgent = (host: string) =>
    new FakeAgent({
      host,
      controller: listen,
      credentials: nats.credentials.grpc.agent(host),
      accept: { identities: IdentityTable.readFile(nats.credentials.layout.agent(host).identities) },
      heartbeatMs: TEST_HEARTBEAT_MS,
    }).start();

  before(async () => {
    nats = await startNatsServer();
    listen = `127.0.0.1:${await freePort()}`;
    ctl = await spawnController();
    a = await fakeAgent('host-a');
    b = await fakeAgent('host-b');
  });
  after(async () => {
    await a.stop();
    await b.stop();
    await ctl.stop();
    await nats.stop();
  });

  test('sessions survive; agents re-register; a restarted agent gets its session again; reconciling resumes', async () => {
    const client = controllerClient(listen, nats.credentials.grpc.operator);
    try {
      const created = await unary(client, 'createSession', {
        id: 'survivor', attrs: undefined, attrsText: '2000 40000 400000 5 100 out.data', schemesText: '',
        targets: [{ host: 'host-a', pid: 100 }, { host: 'host-b', pid: 200 }], operations: 'synthetic', syntheticWorkload: '',
      });
      await unary(client, 'createSession', {
        id: 'idle-one', attrs: undefined, attrsText: '', schemesText: '', targets: [], operations: '', syntheticWorkload: '',
      });
      const on = await unary(client, 'turnOn', { id: created.id });
      assert.equal(on.state, SessionState.SESSION_STATE_ON);

      await ctl.kill9();
      // While it is down, host-b restarts and loses the session (its registration fails for now).
      await b.restart().catch(() => undefined);
      assert.equal(b.sessions.size, 0);

      ctl = await spawnController();
      assert.ok(ctl.log.some((l) => /2 sessions in store, 1 on/.test(l)), ctl.log.join('\n'));

      // The client's channel backs off after the outage: retry until it reconnects.
      const after = await waitFor('controller reachable again', () => unary(client, 'getSession', { id: created.id }));
      assert.equal(after.state, SessionState.SESSION_STATE_ON);
      assert.equal(after.attrsText, '2000 40000 400000 5 100 out.data');
      assert.deepEqual(after.targets, on.targets);
      assert.equal(after.operations, 'synthetic');
      assert.equal(after.createdAtMs, on.createdAtMs);
      assert.equal((await unary(client, 'getSession', { id: 'idle-one' })).state, SessionState.SESSION_STATE_OFF);

      // host-a (same instance, still running it) re-registers and is left alone; host-b
      // (a new instance) gets the same spec again.
      await waitFor('both agents live', async () => (await unary(client, 'listAgents', {})).agents.filter((x) => x.live).length === 2);
      await waitFor('re-applied to host-b', () => b.applies('survivor').length === 2);
      const [first, again] = b.applies('survivor');
      assert.equal(again.spec.generation, first.spec.generation);
      assert.deepEqual(again.spec.pids, [200]);
      assert.notEqual(again.instanceId, first.instanceId);
      await new Promise((r) => setTimeout(r, 3 * TEST_HEARTBEAT_MS));
      assert.equal(a.applies('survivor').length, 1, 'host-a kept running it: no re-apply');

      // The restarted controller goes on reconciling: both targets exit -> the session turns off.
      const ev = collect(client.watchEvents({ sessionId: 'survivor', replay: true }));
      a.setPid(100, TargetState.TARGET_STATE_EXITED, 'process exited');
      b.setPid(200, TargetState.TARGET_STATE_EXITED, 'process exited');
      const off = await waitFor('turned off', async () => {
        const s = await unary(client, 'getSession', { id: 'survivor' });
        return s.state === SessionState.SESSION_STATE_OFF ? s : undefined;
      });
      assert.equal(off.offReason, 'all targets exited');
      await waitFor('OFF event', () => ev.items.some((e) => e.kind === SessionEventKind.SESSION_EVENT_KIND_OFF));
      // The ON event published by the first controller process is still there (JetStream).
      assert.equal(ev.items[0].kind, SessionEventKind.SESSION_EVENT_KIND_ON);
      ev.cancel();
      assert.ok(ctl.log.some((l) => /agent host-b registered/.test(l)));
      assert.ok(ctl.log.some((l) => /session survivor: dispatching to host-b/.test(l)));
    } finally {
      client.close();
    }
  });
});
