// The real agent with the real controller: the agent registers, a session turned on
// through the Controller service runs on it and its records arrive; a target exit shows
// in the session; a failure on the host (no page_idle) reaches the user; and after a
// controller restart the agent registers again by itself.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { connectNats } from '../../common/nats.js';
import { recordsFilter } from '../../common/subjects.js';
import { startController, type RunningController } from '../../controller/controller.js';
import {
  type AggregationRecord,
  SessionState,
  TargetState,
  type ControllerClient,
  type Session,
} from '../../gen/damon/v1/damon.js';
import { decodeRecord } from '../../common/record-wire.js';
import { startAgent, type AgentHandle } from '../../agent/daemon/main.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { controllerClient, rejectsWith, unary, waitFor } from './support/grpc-client.js';
import { testLogger } from './support/controller-env.js';
import { testCredentials } from './support/credentials.js';
import { FAST_ATTRS, agentTestLogger, killTarget, spawnTarget, tempDir } from './support/agent-env.js';

const HOST = 'fleet-node-1';
const creds = testCredentials({ agents: [HOST] });

let nats: NatsServer;
let nc: NatsConnection;
let sub: Subscription;
let controller: RunningController;
let client: ControllerClient;
let agent: AgentHandle;
let data: ReturnType<typeof tempDir>;
const records: AggregationRecord[] = [];
const targets: ReturnType<typeof spawnTarget>[] = [];

function runController(listen: string): Promise<RunningController> {
  return startController({
    listen,
    nats: nats.url,
    natsNkeyFile: nats.credentials.controller,
    ...nats.credentials.grpc.controllerAccess,
    leaseTtlMs: 1200,
    heartbeatIntervalMs: 200,
    log: testLogger('controller'),
  });
}

function targetOf(s: Session, pid: number) {
  return s.targetStatus.find((t) => t.target?.pid === pid);
}

before(async () => {
  nats = await startNatsServer({ credentials: creds });
  controller = await runController('127.0.0.1:0');
  client = controllerClient(controller.address, nats.credentials.grpc.operator);
  nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.reader() });
  sub = nc.subscribe(recordsFilter());
  void (async () => {
    for await (const m of sub) records.push(decodeRecord(m.data));
  })();
  data = tempDir('damon-agent-e2e-');
  agent = await startAgent({
    host: HOST,
    listen: '127.0.0.1:0',
    controller: controller.address,
    nats: nats.url,
    natsNkeyFile: nats.credentials.agent(HOST),
    dataDir: data.path,
    ...creds.grpc.agentAccess(HOST),
    processPollMs: 50,
    log: agentTestLogger(),
  });
});

after(async () => {
  client?.close();
  await agent?.stop();
  await Promise.all(targets.map(killTarget));
  sub?.unsubscribe();
  await nc?.close();
  await controller?.stop();
  await nats?.stop();
  data?.remove();
  creds.remove();
});

test('registers with the controller: ListAgents shows it live with its operations', async () => {
  const info = await waitFor('the agent listed live', async () => {
    const { agents } = await unary(client, 'listAgents', {});
    return agents.find((a) => a.host === HOST && a.live);
  });
  assert.equal(info.address, agent.advertise);
  assert.equal(info.instanceId, agent.instanceId);
  assert.deepEqual(info.operations, ['synthetic']);
  assert.ok(info.unavailable.some((u) => u.startsWith('page_idle: ')));
});

test('a session turned on through the controller runs here; records arrive; an exit shows in the session', async () => {
  const t = spawnTarget();
  targets.push(t);
  await unary(client, 'createSession', {
    id: 'e2e',
    attrs: { ...FAST_ATTRS },
    attrsText: '', schemesText: '',
    targets: [{ host: HOST, pid: t.pid }],
    operations: 'synthetic',
    syntheticWorkload: 'islands',
  });
  await unary(client, 'turnOn', { id: 'e2e' });
  const running = await waitFor('the target RUNNING in the session', async () => {
    const s = await unary(client, 'getSession', { id: 'e2e' });
    return targetOf(s, t.pid)?.state === TargetState.TARGET_STATE_RUNNING ? s : undefined;
  });
  assert.equal(targetOf(running, t.pid)!.operations, 'synthetic');
  await waitFor('records of the session', () => records.filter((r) => r.sessionId === 'e2e').length >= 3);
  assert.ok(records.filter((r) => r.sessionId === 'e2e').every((r) => r.host === HOST && r.pid === t.pid));

  await killTarget(t);
  const exited = await waitFor('the target EXITED in the session', async () => {
    const s = await unary(client, 'getSession', { id: 'e2e' });
    return targetOf(s, t.pid)?.state === TargetState.TARGET_STATE_EXITED ? s : undefined;
  }, 5000);
  assert.match(targetOf(exited, t.pid)!.message, /process exited/);
});

test('default operations on this host: TurnOn fails with what is missing; the session stays off showing it', async () => {
  const t = spawnTarget();
  targets.push(t);
  await unary(client, 'createSession', {
    id: 'e2e-default',
    attrs: { ...FAST_ATTRS },
    attrsText: '', schemesText: '',
    targets: [{ host: HOST, pid: t.pid }],
    operations: '',
    syntheticWorkload: '',
  });
  await rejectsWith(
    unary(client, 'turnOn', { id: 'e2e-default' }),
    grpc.status.FAILED_PRECONDITION,
    new RegExp(`stays off: no target could start: ${HOST} pid ${t.pid} failed: page_idle unavailable: `),
  );
  const off = await unary(client, 'getSession', { id: 'e2e-default' });
  assert.equal(off.state, SessionState.SESSION_STATE_OFF);
  assert.equal(targetOf(off, t.pid)?.state, TargetState.TARGET_STATE_FAILED);
  assert.match(targetOf(off, t.pid)!.message, /page_idle unavailable: /);
});

test('after a controller restart the agent registers again by itself', async () => {
  const address = controller.address;
  await controller.stop();
  client.close();
  controller = await runController(address);
  client = controllerClient(controller.address, creds.grpc.operator);
  const info = await waitFor('the agent live again', async () => {
    const { agents } = await unary(client, 'listAgents', {});
    return agents.find((a) => a.host === HOST && a.live);
  }, 10_000);
  assert.equal(info.instanceId, agent.instanceId, 'the same agent instance, registered again');
  assert.equal(agent.registered(), true);
});
