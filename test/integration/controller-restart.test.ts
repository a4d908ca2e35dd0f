// A controller killed with SIGKILL loses nothing: sessions live in the KV bucket, agents
// register again, and the restarted controller resumes reconciling where it left off.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { SessionEventKind, SessionState, TargetState } from '../../gen/damon/v1/damon.js';
import { TEST_HEARTBEAT_MS, TEST_LEASE_MS } from './support/controller-env.js';
import { FakeAgent } from './support/fake-agent.js';
import { collect, controllerClient, unary, waitFor } from './support/grpc-client.js';
import { freePort, startNatsServer, type NatsServer } from './support/nats-server.js';

const BIN = fileURLToPath(new URL('../../../bin/damon-fleet.js', import.meta.url));

interface ControllerProcess {
  child: ChildProcess;
  log: string[];
}

async function spawnController(listen: string, nats: NatsServer): Promise<ControllerProcess> {
  const child = spawn(
    process.execPath,
    [BIN, 'controller', '--listen', listen, '--nats', nats.url, '--nats-nkey', nats.credentials.controller, '--lease-ttl', `${TEST_LEASE_MS}ms`, '--heartbeat', `${TEST_HEARTBEAT_MS}ms`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const log: string[] = [];
  let partial = '';
  child.stderr!.on('data', (b: Buffer) => {
    const lines = (partial + b.toString()).split('\n');
    partial = lines.pop()!;
    log.push(...lines);
    if (process.env.DAMON_TEST_LOG === '1') for (const l of lines) process.stderr.write(`[child] ${l}\n`);
  });
  await waitFor('controller listening', () => {
    if (child.exitCode !== null) throw new Error(`controller exited with ${child.exitCode}:\n${log.join('\n')}`);
    return log.some((l) => l.includes('controller listening on'));
  }, 15_000);
  return { child, log };
}

async function kill9(p: ControllerProcess): Promise<void> {
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGKILL');
  await exited;
}

describe('controller restart (kill -9)', () => {
  let nats: NatsServer;
  let listen: string;
  let ctl: ControllerProcess;
  let a: FakeAgent;
  let b: FakeAgent;

  before(async () => {
    nats = await startNatsServer();
    listen = `127.0.0.1:${await freePort()}`;
    ctl = await spawnController(listen, nats);
    a = await new FakeAgent({ host: 'host-a', controller: listen, heartbeatMs: TEST_HEARTBEAT_MS }).start();
    b = await new FakeAgent({ host: 'host-b', controller: listen, heartbeatMs: TEST_HEARTBEAT_MS }).start();
  });
  after(async () => {
    await a.stop();
    await b.stop();
    if (ctl.child.exitCode === null) {
      const exited = new Promise((r) => ctl.child.once('exit', r));
      ctl.child.kill('SIGTERM');
      await exited;
    }
    await nats.stop();
  });

  test('sessions survive; agents re-register; a restarted agent gets its session again; reconciling resumes', async () => {
    const client = controllerClient(listen);
    try {
      const created = await unary(client, 'createSession', {
        id: 'survivor', attrs: undefined, attrsText: '2000 40000 400000 5 100 out.data',
        targets: [{ host: 'host-a', pid: 100 }, { host: 'host-b', pid: 200 }], operations: 'synthetic', syntheticWorkload: '',
      });
      await unary(client, 'createSession', {
        id: 'idle-one', attrs: undefined, attrsText: '', targets: [], operations: '', syntheticWorkload: '',
      });
      const on = await unary(client, 'turnOn', { id: created.id });
      assert.equal(on.state, SessionState.SESSION_STATE_ON);

      await kill9(ctl);
      // While it is down, host-b restarts and loses the session (its registration fails for now).
      await b.restart().catch(() => undefined);
      assert.equal(b.sessions.size, 0);

      ctl = await spawnController(listen, nats);
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
