// The whole system with two controllers (real processes, real credentials) and an agent
// given both addresses. The leader killed (-9): the standby takes over within seconds and
// the session goes on untouched (no second dispatch, record sequences continue, no gap
// beyond the takeover); the new leader answers GetSession and TurnOff. The leader paused
// (SIGSTOP) until a standby took over, then resumed: it steps down, answers as a standby
// and changes nothing (the session the new leader turned off stays off).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../../common/nats.js';
import { SessionState, type ControllerClient } from '../../gen/damon/v1/damon.js';
import { FAST_ATTRS, agentClient, killTarget, spawnTarget, startKillableNats, tempDir, type KillableNats } from './support/agent-env.js';
import { TEST_HEARTBEAT_MS, TEST_LEASE_MS } from './support/controller-env.js';
import { spawnAgent, spawnController, type AgentProcess, type FleetProcess } from './support/fleet-processes.js';
import { controllerClient, healthCheck, rejectsWith, servesAsLeader, unary, waitFor } from './support/grpc-client.js';
import { freePort } from './support/nats-server.js';
import { endMs, recordsOf, watchRecords } from './support/nats-watch.js';
import { AGGREGATION_MS, RUNNING, statusOf } from './support/system-env.js';

const HOST = 'sb-node';
/** The product's default leader lease: what a user gets. */
const LEADER_LEASE_MS = 3000;

describe('whole system: two controllers, one agent with both addresses', () => {
  let nats: KillableNats;
  let nc: NatsConnection;
  const data = tempDir('damon-standby-');
  const addr: string[] = [];
  const ctl: FleetProcess[] = [];
  const clients: ControllerClient[] = [];
  const processes: FleetProcess[] = [];
  let agent: AgentProcess;
  const targets: ReturnType<typeof spawnTarget>[] = [];

  const startController = async (i: number) => {
    ctl[i] = await spawnController({
      name: `controller ${i + 1}`,
      listen: addr[i],
      nats: nats.url,
      credentials: nats.credentials,
      leaseTtlMs: TEST_LEASE_MS,
      heartbeatMs: TEST_HEARTBEAT_MS,
    });
    processes.push(ctl[i]);
  };
  const leads = (i: number) => servesAsLeader(clients[i]);
  const agentLiveOn = (i: number) =>
    waitFor(`the agent registered with controller ${i + 1}`, async () => {
      const { agents } = await unary(clients[i], 'listAgents', {}).catch(() => ({ agents: [] }));
      return agents.some((a) => a.host === HOST && a.live && a.instanceId === agent.instanceId);
    }, 20_000);
  const sessionOn = async (i: number, id: string, pid: number) => {
    await unary(clients[i], 'createSession', { id, attrs: { ...FAST_ATTRS }, attrsText: '', schemesText: '', targets: [{ host: HOST, pid }], operations: 'synthetic', syntheticWorkload: 'hot5' });
    return unary(clients[i], 'turnOn', { id });
  };

  before(async () => {
    nats = await startKillableNats({ agents: [HOST] });
    nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.reader() });
    for (let i = 0; i < 2; i++) {
      // A port found free may be taken by another process before the controller binds it:
      // pick each just before its start, and again should that happen.
      for (let attempt = 1; ; attempt++) {
        addr[i] = `127.0.0.1:${await freePort()}`;
        try {
          await startController(i);
          break;
        } catch (err) {
          if (attempt === 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
        }
      }
      clients.push(controllerClient(addr[i], nats.credentials.grpc.operator));
    }
    // The standby first: the agent follows its answer to the leader.
    agent = await spawnAgent({ host: HOST, controller: `${addr[1]},${addr[0]}`, nats: nats.url, credentials: nats.credentials, dataDir: data.path });
    processes.push(agent);
  }, { timeout: 90_000 });

  after(async () => {
    for (const c of clients) c.close();
    for (const p of processes) {
      p.child.kill('SIGCONT');
      await p.stop(3000);
    }
    await nc?.close();
    await Promise.all(targets.map(killTarget));
    await nats?.stop();
    data.remove();
  });

  test('the leader killed (-9): the standby takes over; the session runs on untouched', { timeout: 90_000 }, async (t) => {
    assert.ok(await leads(0), 'the first controller leads');
    await rejectsWith(unary(clients[1], 'listSessions', { pageSize: 0, pageToken: '' }), grpc.status.UNAVAILABLE, new RegExp(`^standby; the leader is at ${addr[0]}$`));
    await agentLiveOn(0);
    assert.ok(agent.log.some((l) => l.includes(`controller ${addr[1]} stands by; the leader is ${addr[0]}`)), agent.log.join('\n'));

    const target = spawnTarget();
    targets.push(target);
    const recs = watchRecords(nc, 'kill9');
    await nc.flush();
    try {
      const on = await sessionOn(0, 'kill9', target.pid);
      await waitFor('records', () => recordsOf(recs.items, HOST, target.pid).length >= 3, 10_000);

      await ctl[0].kill9();
      const killedAt = Date.now();
      await waitFor('the standby leads', () => leads(1), 30_000, 20);
      const takeover = Date.now() - killedAt;
      assert.ok(takeover < LEADER_LEASE_MS + 7000, `took over within seconds (${takeover} ms)`);
      assert.equal(await healthCheck(addr[1], grpc.credentials.createInsecure(), 'damon.v1.Controller'), 'SERVING');
      await agentLiveOn(1);
      const agentBack = Date.now() - killedAt;
      await waitFor('three more records after the takeover', () => recordsOf(recs.items, HOST, target.pid).filter((r) => r.at > killedAt + takeover).length >= 3, 10_000);

      // The new leader reads the session as it was and drives it.
      const s = await unary(clients[1], 'getSession', { id: 'kill9' });
      assert.equal(s.state, SessionState.SESSION_STATE_ON);
      assert.equal(s.revision >= on.revision, true);
      assert.equal(statusOf(s, HOST, target.pid)?.state, RUNNING);
      // No second dispatch: the agent's run was not restarted and its sequences go on.
      assert.ok(!ctl[1].log.some((l) => l.includes('session kill9: dispatching')), ctl[1].log.join('\n'));
      assert.ok(!agent.log.some((l) => /session kill9: spec changed/.test(l)), agent.log.join('\n'));
      const rs = recordsOf(recs.items, HOST, target.pid);
      const seqs = rs.map((r) => r.msg.sequence);
      assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + BigInt(i)), 'sequences continue, none missing');
      const gaps = rs.slice(1).map((r, i) => endMs(r.msg) - endMs(rs[i].msg));
      const maxGap = Math.max(...gaps);
      assert.ok(maxGap < takeover + 1000, `no gap beyond the takeover (largest ${maxGap} ms between records)`);
      t.diagnostic(`takeover ${takeover} ms after kill -9 (leader lease ${LEADER_LEASE_MS} ms); agent registered with the new leader ${agentBack} ms after; largest gap between records ${maxGap} ms (aggregation ${AGGREGATION_MS} ms)`);

      const off = await unary(clients[1], 'turnOff', { id: 'kill9' });
      assert.equal(off.state, SessionState.SESSION_STATE_OFF);
      const direct = agentClient(agent.address, nats.credentials.grpc.controllerToAgent(HOST));
      try {
        await waitFor('the agent stopped it', async () => (await unary(direct, 'getState', { pageToken: '', epoch: 0n })).sessions.length === 0);
      } finally {
        direct.close();
      }
    } finally {
      recs.stop();
    }
  });

  test('the leader paused (SIGSTOP) past its lease, then resumed: it steps down and changes nothing', { timeout: 90_000 }, async () => {
    await startController(0); // at its old address, now a standby
    assert.ok(!(await leads(0)), 'the restarted one stands by');
    const target = spawnTarget();
    targets.push(target);
    await sessionOn(1, 'paused', target.pid);

    ctl[1].child.kill('SIGSTOP');
    await waitFor('the standby leads', () => leads(0), 30_000, 20);
    await agentLiveOn(0);
    // The new leader turns the session off; the paused one still thinks it is on.
    await unary(clients[0], 'turnOff', { id: 'paused' });
    const direct = agentClient(agent.address, nats.credentials.grpc.controllerToAgent(HOST));
    try {
      await waitFor('the agent stopped it', async () => (await unary(direct, 'getState', { pageToken: '', epoch: 0n })).sessions.length === 0);
      ctl[1].child.kill('SIGCONT');
      await waitFor('the resumed one stands by', () => ctl[1].log.some((l) => /leadership: standing by \(epoch \d+ ended/.test(l)), 10_000);
      await rejectsWith(unary(clients[1], 'getSession', { id: 'paused' }), grpc.status.UNAVAILABLE, new RegExp(`^standby; the leader is at ${addr[0]}$`));
      assert.equal(await healthCheck(addr[1], grpc.credentials.createInsecure(), 'damon.v1.Controller'), 'NOT_SERVING');
      // Give a resumed reconcile loop time to act, were it going to.
      await new Promise((r) => setTimeout(r, 3 * TEST_HEARTBEAT_MS + 500));
      const st = await unary(direct, 'getState', { pageToken: '', epoch: 0n });
      assert.deepEqual(st.sessions, [], 'the deposed leader dispatched nothing');
      const s = await unary(clients[0], 'getSession', { id: 'paused' });
      assert.equal(s.state, SessionState.SESSION_STATE_OFF, 'the deposed leader wrote nothing');
      const after = ctl[1].log.slice(ctl[1].log.findIndex((l) => /leadership: standing by/.test(l)));
      assert.ok(!after.some((l) => /dispatching|session paused (on|off)/.test(l)), after.join('\n'));
      assert.ok(await leads(0), 'the new leader still leads');
    } finally {
      direct.close();
    }
  });
});
