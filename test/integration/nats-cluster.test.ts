// NATS as a cluster of three with JetStream replicas 3, the real controller and agent as
// processes given every node's URL: kill -9 the node they are connected to (a stream leader
// when one is), let it come back and catch up, then kill -9 another. No session is lost,
// every record the agent had acknowledged is in the stream afterwards, and the controller
// and the agent reconnect by themselves. Also: the configurations `damon-fleet credentials
// --node` writes for docker-compose.yml are accepted by nats-server, and replicas the
// servers cannot place are refused at the controller's start, saying so.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, ensureStreams, jetStream, whenJetStreamAnswers } from '../../common/nats.js';
import { SessionStore } from '../../controller/session-store.js';
import { ACTIONS_STREAM, EVENTS_STREAM, RECORDS_STREAM, SESSIONS_STREAM } from '../../common/subjects.js';
import { SessionState, TargetState, type AgentClient, type ControllerClient, type Session } from '../../gen/damon/v1/damon.js';
import { FAST_ATTRS, agentClient } from './support/agent-env.js';
import { TEST_HEARTBEAT_MS, TEST_LEASE_MS } from './support/controller-env.js';
import { FLEET_BIN, spawnAgent, spawnController, type FleetProcess } from './support/fleet-processes.js';
import { controllerClient, unary, waitFor } from './support/grpc-client.js';
import { startNatsCluster, streamPlacement, type ClusterNode, type NatsClusterProcesses } from './support/nats-cluster.js';
import { NATS_SERVER_BIN, freePort, startNatsServer } from './support/nats-server.js';
import { storedRecords, watchRecords, type Watch } from './support/nats-watch.js';
import type { AggregationRecord } from '../../gen/damon/v1/damon.js';

const HOST = 'cl-a';
const ID = 'survives';
const IDLE = 'kept-off';
const STREAMS = [RECORDS_STREAM, EVENTS_STREAM, ACTIONS_STREAM, SESSIONS_STREAM];

/** The port of the NATS server a fleet process is connected to now, from its log ("nats: connected to" / "reconnected to"). */
function natsPortOf(p: FleetProcess): number | undefined {
  for (let i = p.log.length - 1; i >= 0; i--) {
    const m = /nats: (?:re)?connected to \S*?:(\d+)\b/.exec(p.log[i]);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/** Log lines after index `from` saying the process reconnected to NATS. */
function reconnectedSince(p: FleetProcess, from: number): boolean {
  return p.log.slice(from).some((l) => /nats: reconnected to /.test(l));
}

/** The last sequence DAMON_RECORDS stored (undefined while it does not answer). */
async function lastSeq(nc: NatsConnection): Promise<number | undefined> {
  const info = await (await jetStream(nc, 3000).jetstreamManager()).streams.info(RECORDS_STREAM);
  return info.state.last_seq;
}

/** Records per (session, host, pid): an added field (an agent instance, say) does not split them. */
function byTarget(records: AggregationRecord[]): Map<string, bigint[]> {
  const out = new Map<string, bigint[]>();
  for (const r of records) {
    const k = `${r.sessionId}/${r.host}/${r.pid}`;
    out.set(k, [...(out.get(k) ?? []), r.sequence]);
  }
  return out;
}

/** What the agent said it dropped (records it could not publish), from its log. */
function droppedByAgent(p: FleetProcess): number {
  let n = 0;
  for (const l of p.log) {
    const m = /\((\d+) dropped while it did not accept them\)|closing with (\d+) records not published/.exec(l);
    if (m) n += Number(m[1] ?? m[2]);
  }
  return n;
}

describe('NATS as a cluster of three, replicas 3', () => {
  let cluster: NatsClusterProcesses;
  let controller: FleetProcess;
  let agent: FleetProcess & { address: string };
  let client: ControllerClient;
  let agentRpc: AgentClient;
  let nc: NatsConnection;
  let target: ChildProcess & { pid: number };
  const dataDir = mkdtempSync(join(tmpdir(), 'damon-cluster-agent-'));

  before(async () => {
    cluster = await startNatsCluster({ agents: [HOST] });
    const creds = cluster.credentials;
    const listen = `127.0.0.1:${await freePort()}`;
    controller = await spawnController({ listen, nats: cluster.urls, credentials: creds, leaseTtlMs: TEST_LEASE_MS, heartbeatMs: TEST_HEARTBEAT_MS, natsReplicas: 3 });
    agent = await spawnAgent({ host: HOST, controller: listen, nats: cluster.urls, credentials: creds, dataDir });
    client = controllerClient(listen, creds.grpc.operator);
    agentRpc = agentClient(agent.address, creds.grpc.controllerToAgent(HOST));
    nc = await connectNats({ servers: cluster.urls, nkeyFile: creds.operator });
    const child = spawn('sleep', ['600'], { stdio: 'ignore' });
    target = child as ChildProcess & { pid: number };
    await waitFor('the agent live', async () => (await unary(client, 'listAgents', {})).agents.some((a) => a.host === HOST && a.live), 15_000);
  }, { timeout: 90_000 });

  after(async () => {
    client?.close();
    agentRpc?.close();
    await agent?.stop(3000);
    await controller?.stop(3000);
    await nc?.close().catch(() => undefined);
    target?.kill('SIGKILL');
    await cluster?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a controller asking for more copies than the cluster has servers does not start, and says why', { timeout: 60_000 }, async () => {
    await assert.rejects(
      spawnController({ listen: `127.0.0.1:${await freePort()}`, nats: cluster.urls, credentials: cluster.credentials, leaseTtlMs: TEST_LEASE_MS, heartbeatMs: TEST_HEARTBEAT_MS, natsReplicas: 5 }),
      /exited with 1 before it was ready:[\s\S]*--nats-replicas\) 5: NATS cannot keep 5 copies \(.*\); JetStream needs at least 5 servers in one cluster/,
    );
    for (const s of STREAMS) assert.equal((await streamPlacement(nc, s)).replicas, 3, `${s}: left as it was`);
  });

  test('kill -9 of one node, recovery, kill -9 of another: no session, no acknowledged record lost; everyone reconnects', { timeout: 150_000 }, async (t) => {
    for (const s of STREAMS) assert.equal((await streamPlacement(nc, s)).replicas, 3, `${s}: replicas`);
    await unary(client, 'createSession', { id: IDLE, attrs: { ...FAST_ATTRS }, attrsText: '', schemesText: '', targets: [{ host: HOST, pid: target.pid }], operations: 'synthetic', syntheticWorkload: 'hot5' });
    await unary(client, 'createSession', { id: ID, attrs: { ...FAST_ATTRS }, attrsText: '', schemesText: '', targets: [{ host: HOST, pid: target.pid }], operations: 'synthetic', syntheticWorkload: 'hot5' });
    const on = await unary(client, 'turnOn', { id: ID });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    const recs: Watch<AggregationRecord> = watchRecords(nc, ID);
    let published = 0n; // the agent's count of acknowledged records, as last seen
    const observe = async () => {
      const st = await unary(agentRpc, 'getState', { pageToken: '', epoch: 0n });
      const s = st.sessions.find((x) => x.sessionId === ID);
      if (s && s.recordsPublished > published) published = s.recordsPublished;
      return s;
    };
    const sessionFine = async (what: string) => {
      const s: Session = await waitFor(`${what}: GetSession answers, on and running`, async () => {
        const x = await unary(client, 'getSession', { id: ID });
        return x.state === SessionState.SESSION_STATE_ON && x.targetStatus[0]?.state === TargetState.TARGET_STATE_RUNNING ? x : undefined;
      }, 30_000);
      const list = await waitFor(`${what}: ListSessions`, () => unary(client, 'listSessions', { pageSize: 0, pageToken: '' }), 30_000);
      assert.deepEqual(list.sessions.map((x) => x.id).sort(), [IDLE, ID].sort(), `${what}: every session listed`);
      assert.equal(list.sessions.find((x) => x.id === IDLE)!.state, SessionState.SESSION_STATE_OFF);
      return s;
    };
    const recordsFlowAfter = (what: string, at: number) =>
      waitFor(`${what}: records arriving again`, () => recs.items.filter((r) => r.at > at).length >= 3, 45_000);

    try {
      await recordsFlowAfter('at the start', 0);
      let previous: ClusterNode | undefined;
      for (const round of [1, 2]) {
        await observe();
        // The victim: a node the controller or the agent uses, the one leading most streams.
        const used = [controller, agent].map((p) => cluster.nodes.find((n) => n.port === natsPortOf(p))).filter((n): n is ClusterNode => n !== undefined);
        const leaders = await waitFor(`round ${round}: the streams' leaders`, () => Promise.all(STREAMS.map(async (s) => (await streamPlacement(nc, s)).leader)), 30_000);
        const candidates = [...new Set(used)].filter((n) => n !== previous && n.running());
        assert.ok(candidates.length > 0, `round ${round}: the controller and the agent are connected to a running node`);
        const victim = candidates.sort((a, b) => leaders.filter((l) => l === b.name).length - leaders.filter((l) => l === a.name).length)[0];
        const users = [controller, agent].filter((p) => natsPortOf(p) === victim.port);
        t.diagnostic(
          `round ${round}: killing ${victim.name} (used by ${users.map((p) => p.name).join(' and ')}; ` +
            `leads ${STREAMS.filter((_, i) => leaders[i] === victim.name).join(', ') || 'no stream'}); ${published} records acknowledged so far`,
        );
        const marks = users.map((p) => p.log.length);
        const lastStored = await waitFor(`round ${round}: ${RECORDS_STREAM}'s last sequence`, () => lastSeq(nc), 30_000);
        await victim.kill9();
        const killedAt = Date.now();

        await waitFor(`round ${round}: ${users.map((p) => p.name).join(' and ')} reconnected to another node`, () =>
          users.every((p, i) => reconnectedSince(p, marks[i]) && natsPortOf(p) !== victim.port), 30_000);
        const reconnectedMs = Date.now() - killedAt;
        await recordsFlowAfter(`round ${round}`, killedAt);
        await waitFor(`round ${round}: records stored again`, async () => ((await lastSeq(nc)) ?? 0) > lastStored, 45_000, 100);
        t.diagnostic(`round ${round}: reconnected within ${reconnectedMs} ms; ${RECORDS_STREAM} stored records again within ${Date.now() - killedAt} ms of the kill`);
        await sessionFine(`round ${round}, ${victim.name} down`);
        await waitFor(`round ${round}: the agent reports`, observe, 15_000);
        for (const s of STREAMS) {
          await waitFor(`round ${round}: ${s} has a leader among the others`, async () => {
            const p = await streamPlacement(nc, s);
            return p.leader !== undefined && p.leader !== victim.name;
          }, 30_000);
        }
        if (round === 1) {
          await victim.restart();
          // Recovered: every stream's replicas online and current again.
          for (const s of STREAMS) await waitFor(`${victim.name} back: ${s} current on every replica`, async () => (await streamPlacement(nc, s)).current, 45_000);
          await sessionFine(`${victim.name} back`);
        }
        previous = victim;
      }
      assert.equal(controller.exited() || agent.exited(), false, 'the controller and the agent were never restarted');

      // Stop the records, then read back everything the stream holds for the session.
      const off = await unary(client, 'turnOff', { id: ID });
      assert.equal(off.state, SessionState.SESSION_STATE_OFF);
      const stopped = await waitFor('the agent stopped the session, its records flushed', () => {
        for (const l of agent.log) {
          const m = new RegExp(`session ${ID}\\b.*stopped \\((\\d+) records published\\)`).exec(l);
          if (m) return BigInt(m[1]);
        }
        return undefined;
      }, 30_000);
      if (stopped > published) published = stopped;
      // A consumer is created through the metadata leader, which may be in election still.
      const stored = await waitFor('the stream read back', () => storedRecords(nc, ID), 30_000, 500);
      const dropped = droppedByAgent(agent);
      const targets = byTarget(stored);
      assert.deepEqual([...targets.keys()], [`${ID}/${HOST}/${target.pid}`]);
      let gaps = 0;
      for (const [k, seqs] of targets) {
        const sorted = [...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        assert.equal(new Set(sorted).size, sorted.length, `${k}: a record stored twice`);
        for (let i = 1; i < sorted.length; i++) gaps += Number(sorted[i] - sorted[i - 1] - 1n);
      }
      t.diagnostic(`${stored.length} records in the stream, ${published} acknowledged to the agent, ${dropped} dropped by it, ${gaps} missing in sequence`);
      assert.ok(gaps <= dropped, `${gaps} sequences missing from the stream, the agent dropped ${dropped}`);
      assert.ok(BigInt(stored.length) >= published, `the agent had ${published} records acknowledged; the stream holds ${stored.length}`);
      assert.ok(stored.length >= 10, `${stored.length} records: the session ran through both kills`);
      const password = readFileSync(cluster.credentials.layout.natsRoutePassword, 'utf8').trim();
      for (const n of cluster.nodes) assert.ok(!n.log.some((l) => l.includes(password)), `${n.name}: the route password in its log`);
    } finally {
      recs.stop();
    }
  });
});

describe('changing the replica count', () => {
  test('streams and the bucket made with 1 copy are kept in 3 once the controller asks for 3', { timeout: 90_000 }, async () => {
    const c = await startNatsCluster();
    let nc: NatsConnection | undefined;
    try {
      nc = await connectNats({ servers: c.urls, nkeyFile: c.credentials.controller });
      const js = jetStream(nc);
      await waitFor('JetStream answering', () => ensureStreams(js, { replicas: 1 }).then(() => true), 30_000, 500);
      await SessionStore.open(js, Date.now, undefined, 1);
      for (const s of STREAMS) assert.equal((await streamPlacement(nc, s)).replicas, 1, s);
      // As the controller does: a node may not have joined the metadata group yet.
      await whenJetStreamAnswers(() => ensureStreams(js, { replicas: 3 }), 30_000, undefined, 30_000);
      await whenJetStreamAnswers(() => SessionStore.open(js, Date.now, undefined, 3), 30_000, undefined, 30_000);
      for (const s of STREAMS) {
        await waitFor(`${s}: 3 copies, all current`, async () => {
          const p = await streamPlacement(nc!, s);
          return p.replicas === 3 && p.current;
        }, 30_000);
      }
    } finally {
      await nc?.close();
      await c.stop();
    }
  });
});

describe('a cluster restarted whole', () => {
  test('a controller started while the nodes elect their leaders waits for them, and finds its sessions', { timeout: 120_000 }, async () => {
    const c = await startNatsCluster();
    const opts = { listen: `127.0.0.1:${await freePort()}`, nats: c.urls, credentials: c.credentials, leaseTtlMs: TEST_LEASE_MS, heartbeatMs: TEST_HEARTBEAT_MS, natsReplicas: 3 };
    let controller: FleetProcess | undefined;
    let client: ControllerClient | undefined;
    try {
      controller = await spawnController(opts);
      client = controllerClient(opts.listen, c.credentials.grpc.operator);
      await unary(client, 'createSession', { id: IDLE, attrs: { ...FAST_ATTRS }, attrsText: '', schemesText: '', targets: [{ host: HOST, pid: 1 }], operations: '', syntheticWorkload: '' });
      await controller.stop(3000);
      // Every node down at once (a host reboot, `docker compose down` then `up`), all back at once.
      await Promise.all(c.nodes.map((n) => n.kill9()));
      await Promise.all(c.nodes.map((n) => n.restart()));
      controller = await spawnController(opts);
      const s = await waitFor('the session, after the restart', () => unary(client!, 'getSession', { id: IDLE }), 30_000);
      assert.equal(s.targets[0]?.host, HOST);
    } finally {
      client?.close();
      await controller?.stop(3000);
      await c.stop();
    }
  });
});

describe('NATS replicas the servers cannot keep', () => {
  test('a controller with --nats-replicas 3 on a single nats-server does not start, and says why', { timeout: 60_000 }, async () => {
    const nats = await startNatsServer();
    try {
      const creds = nats.credentials;
      await assert.rejects(
        spawnController({ listen: `127.0.0.1:${await freePort()}`, nats: nats.url, credentials: creds, leaseTtlMs: TEST_LEASE_MS, heartbeatMs: TEST_HEARTBEAT_MS, natsReplicas: 3 }),
        /exited with 1 before it was ready:[\s\S]*--nats-replicas\) 3: NATS cannot keep 3 copies \(.*\); JetStream needs at least 3 servers in one cluster/,
      );
    } finally {
      await nats.stop();
    }
  });
});

test('the configurations credentials --node writes for docker-compose.yml are accepted by nats-server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'damon-cluster-conf-'));
  try {
    const creds = join(dir, 'creds');
    const servers = join(creds, 'nats', 'servers');
    const r = spawnSync(process.execPath, [FLEET_BIN, 'credentials', '--dir', creds, '--agent', 'agent-1=agent',
      '--server-conf', servers, '--listen', '0.0.0.0:4222', '--store', join(dir, 'data'),
      '--node', 'nats-1', '--node', 'nats-2', '--node', 'nats-3'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const password = readFileSync(join(creds, 'nats', 'route.password'), 'utf8').trim();
    for (const n of ['nats-1', 'nats-2', 'nats-3']) {
      const check = spawnSync(NATS_SERVER_BIN, ['-t', '-c', join(servers, `${n}.conf`)], { encoding: 'utf8' });
      assert.equal(check.status, 0, `${n}: ${check.stderr}${check.stdout}`);
      assert.ok(!`${check.stderr}${check.stdout}`.includes(password), `${n}: the route password in nats-server's output`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
