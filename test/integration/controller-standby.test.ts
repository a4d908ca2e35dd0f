// Several controllers on one NATS (in-process, real credentials): one leads, a standby
// answers every call UNAVAILABLE naming the leader and reports NOT_SERVING, and takes over
// when the leader goes. Fencing: a deposed leader's store writes and an agent call of an
// older epoch are refused. A host name claimed by a second live agent is refused and
// reported; a restart is not.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, jetStream } from '../../common/nats.js';
import type { RpcError } from '../../common/grpc-server.js';
import { startAgent, type AgentHandle } from '../../agent/daemon/main.js';
import { startController, type RunningController } from '../../controller/controller.js';
import { SessionStore } from '../../controller/session-store.js';
import { SessionEventKind, type AgentClient, type ControllerClient } from '../../gen/damon/v1/damon.js';
import { agentClient, agentTestLogger, killTarget, spawnTarget, syntheticSpec, tempDir } from './support/agent-env.js';
import { TEST_HEARTBEAT_MS, TEST_LEASE_MS, capturingLogger, startEnv, type ControllerEnv } from './support/controller-env.js';
import { controllerClient, healthCheck, registryClient, rejectsWith, unary, waitFor } from './support/grpc-client.js';
import { watchEvents } from './support/nats-watch.js';
import { FakeAgent } from './support/fake-agent.js';
import { IdentityTable } from '../../common/grpc-access.js';
import { startNatsServer, testCredentials, type NatsServer } from './support/nats-server.js';

const insecure = grpc.credentials.createInsecure();
const LEADER_LEASE_MS = 1500;

describe('two controllers on one NATS', () => {
  const creds = testCredentials({ agents: ['sb-h'] });
  let nats: NatsServer;
  const controllers: RunningController[] = [];
  const clients: ControllerClient[] = [];
  const logs: string[][] = [];

  const start = async () => {
    const log = capturingLogger(`controller ${controllers.length + 1}`);
    const c = await startController({
      listen: '127.0.0.1:0',
      nats: nats.url,
      natsNkeyFile: nats.credentials.controller,
      leaseTtlMs: TEST_LEASE_MS,
      heartbeatIntervalMs: TEST_HEARTBEAT_MS,
      leaderLeaseMs: LEADER_LEASE_MS,
      log,
      ...creds.grpc.controllerAccess,
    });
    controllers.push(c);
    logs.push(log.lines);
    clients.push(controllerClient(c.address, creds.grpc.operator));
    return c;
  };

  before(async () => {
    nats = await startNatsServer({ credentials: creds });
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const c of controllers) await c.stop();
    await nats?.stop();
  });

  test('the second stands by: UNAVAILABLE naming the leader, NOT_SERVING, agents refused', async () => {
    const leader = await start();
    const standby = await start();
    assert.ok(leader.leadership.currentEpoch()! > 0);
    assert.equal(standby.leadership.currentEpoch(), undefined);
    assert.match(logs[1].join('\n'), new RegExp(`controller listening on .*standby \\(leader ${leader.address}\\)`));

    const [lc, sc] = clients;
    await unary(lc, 'createSession', { id: 'sb-1', attrs: undefined, attrsText: '', schemesText: '', targets: [], operations: '', syntheticWorkload: '' });
    const standbyText = new RegExp(`^standby; the leader is at ${leader.address.replace(/\./g, '\\.')}$`);
    await rejectsWith(unary(sc, 'getSession', { id: 'sb-1' }), grpc.status.UNAVAILABLE, standbyText);
    await rejectsWith(unary(sc, 'listSessions', { pageSize: 0, pageToken: '' }), grpc.status.UNAVAILABLE, standbyText);
    await rejectsWith(unary(sc, 'turnOn', { id: 'sb-1' }), grpc.status.UNAVAILABLE, standbyText);
    // Credentials are checked first: a stranger learns nothing.
    await rejectsWith(unary(controllerClient(standby.address), 'getSession', { id: 'sb-1' }), grpc.status.UNAUTHENTICATED);
    const registry = registryClient(standby.address, creds.grpc.agent('sb-h'));
    try {
      const reg = { host: 'sb-h', address: '127.0.0.1:1', operations: [], unavailable: [], instanceId: 'i-1' };
      await rejectsWith(unary(registry, 'register', reg), grpc.status.UNAVAILABLE, standbyText);
    } finally {
      registry.close();
    }
    for (const service of ['damon.v1.Controller', 'damon.v1.Registry']) {
      assert.equal(await healthCheck(leader.address, insecure, service), 'SERVING', `leader ${service}`);
      assert.equal(await healthCheck(standby.address, insecure, service), 'NOT_SERVING', `standby ${service}`);
    }
    assert.equal(await healthCheck(standby.address, insecure), 'SERVING', 'the process itself is up');
  });

  test('the leader stops: the standby leads at once with a higher epoch; the old epoch\'s writes are refused', async () => {
    const [leader, standby] = controllers;
    const oldEpoch = leader.leadership.currentEpoch()!;
    const from = Date.now();
    await leader.stop();
    await waitFor('the standby leads', () => standby.leadership.currentEpoch() !== undefined, 5000);
    const took = Date.now() - from;
    assert.ok(took < LEADER_LEASE_MS, `a released lease is taken at the next read, not after a TTL (${took} ms)`);
    const newEpoch = standby.leadership.currentEpoch()!;
    assert.ok(newEpoch > oldEpoch, `${newEpoch} > ${oldEpoch}`);
    const s = await unary(clients[1], 'getSession', { id: 'sb-1' });
    assert.equal(s.id, 'sb-1');
    assert.equal(await healthCheck(standby.address, insecure, 'damon.v1.Controller'), 'SERVING');

    // The new leader writes the entry; a store of the old epoch (a deposed leader) is refused.
    await unary(clients[1], 'setTargets', { id: 'sb-1', targets: [{ host: 'sb-h', pid: 1 }], expectedRevision: 0n, operations: '', syntheticWorkload: '' });
    let nc: NatsConnection | undefined;
    try {
      nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.controller });
      const deposed: string[] = [];
      const stale = await SessionStore.open(jetStream(nc), Date.now, { epoch: () => oldEpoch, deposed: (why) => deposed.push(why) });
      const before = await standby.store.get('sb-1');
      const refused = (p: Promise<unknown>, re: RegExp) =>
        assert.rejects(p, (e: RpcError) => (e.code === grpc.status.UNAVAILABLE && re.test(e.message)) || assert.fail(e));
      await refused(
        stale.update('sb-1', (cur) => ({ ...cur, offReason: 'from the deposed leader' })),
        new RegExp(`no longer leads \\(session "sb-1" was written by the leader of epoch ${newEpoch}, this controller's is ${oldEpoch}\\)`),
      );
      await refused(stale.delete('sb-1', () => undefined), /no longer leads/);
      assert.equal(deposed.length, 2, 'the deposed writer is told');
      assert.deepEqual(await standby.store.get('sb-1'), before, 'nothing written');
    } finally {
      await nc?.close();
    }
  });
});

describe('an agent refuses a lower epoch than the highest it has seen', () => {
  let nats: NatsServer;
  let agent: AgentHandle;
  let client: AgentClient;
  const data = tempDir('damon-fence-');
  const target = spawnTarget();

  before(async () => {
    nats = await startNatsServer();
    agent = await startAgent({ host: 'h1', listen: '127.0.0.1:0', insecure: true, nats: nats.url, natsNkeyFile: nats.credentials.agent('h1'), dataDir: data.path, log: agentTestLogger() });
    client = agentClient(agent.address, {});
  });
  after(async () => {
    client?.close();
    await agent?.stop();
    await killTarget(target);
    await nats?.stop();
    data.remove();
  });

  test('ApplySession and StopSession of an older epoch: FAILED_PRECONDITION, nothing changed', async () => {
    const spec = syntheticSpec('f-1', [target.pid]);
    await unary(client, 'applySession', { spec, epoch: 7n });
    // A deposed leader (epoch 5) would restart it with another generation, or stop it.
    await rejectsWith(
      unary(client, 'applySession', { spec: { ...spec, generation: 2n }, epoch: 5n }),
      grpc.status.FAILED_PRECONDITION,
      /^stale controller epoch 5: this agent has seen epoch 7 from a newer leader; ApplySession f-1 refused$/,
    );
    await rejectsWith(unary(client, 'stopSession', { sessionId: 'f-1', epoch: 5n }), grpc.status.FAILED_PRECONDITION, /stale controller epoch 5/);
    // A newer leader's GetState raises the epoch; its own calls pass.
    const st = await unary(client, 'getState', { pageToken: '', epoch: 9n });
    assert.deepEqual(st.sessions.map((s) => [s.sessionId, s.generation]), [['f-1', 1n]]);
    await rejectsWith(unary(client, 'stopSession', { sessionId: 'f-1', epoch: 7n }), grpc.status.FAILED_PRECONDITION, /stale controller epoch 7: this agent has seen epoch 9/);
    await unary(client, 'stopSession', { sessionId: 'f-1', epoch: 9n });
    assert.deepEqual((await unary(client, 'getState', { pageToken: '', epoch: 0n })).sessions, [], 'GetState is never refused');
  });
});

describe('one host name, two agents', () => {
  const HOST = 'h2';
  const creds = testCredentials();
  let env: ControllerEnv;
  let nc: NatsConnection;
  before(async () => {
    env = await startEnv({ creds });
    nc = await connectNats({ servers: env.nats.url, nkeyFile: env.nats.credentials.reader() });
  });
  after(async () => {
    await nc?.close();
    await env?.close();
  });

  test('a restart is accepted at once; a second live agent is refused and reported; taken once the first is gone', async () => {
    await unary(env.client, 'createSession', { id: 'dup', attrs: undefined, attrsText: '', schemesText: '', targets: [{ host: HOST, pid: 1 }], operations: '', syntheticWorkload: '' });
    const events = watchEvents(nc, 'dup');
    await nc.flush();
    try {
      const first = await env.agent(HOST);
      // Restart: a new instance at the same address, while the old lease is live.
      await first.restart();
      const agents = async () => (await unary(env.client, 'listAgents', {})).agents;
      assert.deepEqual((await agents()).map((a) => [a.host, a.address, a.instanceId, a.live]), [[HOST, first.address, first.instanceId, true]]);

      // A second agent with the host's credential, elsewhere, while the first answers.
      const dup = new FakeAgent({
        host: HOST,
        controller: env.controller.address,
        credentials: creds.grpc.agent(HOST),
        accept: { identities: IdentityTable.readFile(creds.layout.agent(HOST).identities) },
        heartbeatMs: TEST_HEARTBEAT_MS,
      });
      const second = await dup.start().then(
        () => assert.fail('the second agent was accepted'),
        (err: grpc.ServiceError) => err,
      );
      await dup.stop();
      assert.equal(second.code, grpc.status.ALREADY_EXISTS, second.details);
      assert.match(second.details, new RegExp(`^host "${HOST}" already has a live agent at ${first.address} \\(instance ${first.instanceId}\\); refused the agent at 127\\.0\\.0\\.1:\\d+ \\(instance [0-9a-f-]+\\): two agents may not claim one host$`));
      assert.equal((await agents())[0].instanceId, first.instanceId, 'the first keeps the host');
      assert.equal(env.logs.filter((l) => l.includes('two agents may not claim one host')).length, 1, 'logged');
      const reported = await waitFor('a HOST_CONFLICT event on the session', () => events.items.find((e) => e.msg.kind === SessionEventKind.SESSION_EVENT_KIND_HOST_CONFLICT));
      assert.equal(reported.msg.reason, second.details);
      assert.deepEqual(reported.msg.target, { host: HOST, pid: 0 });

      // The first goes away: the second is taken at once (the old address no longer answers).
      await first.stop();
      env.agents.splice(env.agents.indexOf(first), 1);
      const third = await env.agent(HOST);
      assert.deepEqual((await agents()).map((a) => [a.address, a.instanceId, a.live]), [[third.address, third.instanceId, true]]);
    } finally {
      events.stop();
    }
  });
});
