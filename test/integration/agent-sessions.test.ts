// The agent daemon against a real nats-server and real processes: sessions applied over
// gRPC, records on NATS, target exits, missing pids, operations the host lacks, result
// files confined to the data directory.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { connectNats, ensureStreams, jetStream } from '../../common/nats.js';
import { recordsFilter } from '../../common/subjects.js';
import {
  type AggregationRecord,
  TargetState,
  type AgentClient,
  type ObservedSession,
  type SessionSpec,
} from '../../gen/damon/v1/damon.js';
import { decodeRecord } from '../../common/record-wire.js';
import { readResultFile } from '../../agent/records/result-reader.js';
import { startAgent, type AgentHandle } from '../../agent/daemon/main.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { rejectsWith, unary, waitFor } from './support/grpc-client.js';
import {
  AGGREGATION_MS,
  MISSING_PID,
  agentClient,
  agentTestLogger,
  killTarget,
  spawnTarget,
  syntheticSpec,
  tempDir,
} from './support/agent-env.js';
import { testCredentials } from './support/credentials.js';

const HOST = 'node-1.test';
const creds = testCredentials({ agents: [HOST] });

let nats: NatsServer;
let nc: NatsConnection;
let agent: AgentHandle;
let client: AgentClient;
let data: ReturnType<typeof tempDir>;
let sub: Subscription;
const received: { rec: AggregationRecord; at: number; msgId: string | undefined }[] = [];
const targets: ReturnType<typeof spawnTarget>[] = [];

function recordsOf(sessionId: string, pid?: number) {
  return received.filter((r) => r.rec.sessionId === sessionId && (pid === undefined || r.rec.pid === pid));
}

async function apply(spec: SessionSpec): Promise<ObservedSession> {
  const res = await unary(client, 'applySession', { epoch: 0n, spec });
  return res.observed!;
}

async function observed(sessionId: string): Promise<ObservedSession | undefined> {
  const st = await unary(client, 'getState', { pageToken: '', epoch: 0n });
  return st.sessions.find((s) => s.sessionId === sessionId);
}

function target() {
  const t = spawnTarget();
  targets.push(t);
  return t;
}

before(async () => {
  nats = await startNatsServer({ credentials: creds });
  // The operator: it may set up the streams (as the controller would) and read records.
  nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.operator });
  await ensureStreams(jetStream(nc));
  sub = nc.subscribe(recordsFilter());
  void (async () => {
    for await (const m of sub) {
      received.push({ rec: decodeRecord(m.data), at: performance.now(), msgId: m.headers?.get('Nats-Msg-Id') });
    }
  })();
  data = tempDir('damon-agent-data-');
  agent = await startAgent({
    host: HOST,
    listen: '127.0.0.1:0',
    nats: nats.url,
    natsNkeyFile: nats.credentials.agent(HOST),
    dataDir: join(data.path, 'data'),
    ...creds.grpc.agentAccess(HOST),
    processPollMs: 50,
    log: agentTestLogger(),
  });
  client = agentClient(agent.address, creds.grpc.controllerToAgent(HOST));
});

after(async () => {
  client?.close();
  await agent?.stop();
  await Promise.all(targets.map(killTarget));
  sub?.unsubscribe();
  await nc?.close();
  await nats?.stop();
  data?.remove();
  creds.remove();
});

test('Apply: records on NATS within two aggregation intervals, one per target per interval, in sequence', async () => {
  const t = target();
  const t0 = performance.now();
  const obs = await apply(syntheticSpec('s-records', [t.pid]));
  assert.equal(obs.running, true);
  assert.deepEqual(
    obs.targets.map((x) => [x.pid, TargetState[x.state], x.operations]),
    [[t.pid, 'TARGET_STATE_RUNNING', 'synthetic']],
  );
  const first = await waitFor('the first record', () => recordsOf('s-records')[0], 5000, 5);
  assert.ok(first.at - t0 <= 2 * AGGREGATION_MS, `first record after ${(first.at - t0).toFixed(0)} ms`);
  if (process.env.DAMON_TEST_LOG === '1') console.error(`first record ${(first.at - t0).toFixed(1)} ms after Apply`);
  await waitFor('five records', () => recordsOf('s-records').length >= 5, 5000);
  const recs = recordsOf('s-records').map((r) => r.rec);
  const r = recs[0];
  assert.equal(r.host, HOST);
  assert.equal(r.pid, t.pid);
  assert.equal(r.operations, 'synthetic');
  assert.equal(r.maxNrAccesses, 20); // 200 ms / 10 ms
  assert.ok(r.regions.length >= 10 && r.regions.length <= 100, `${r.regions.length} regions`);
  for (const g of r.regions) assert.ok(g.start < g.end && g.nrAccesses <= 20);
  assert.deepEqual(recs.slice(0, 5).map((x) => x.sequence), [1n, 2n, 3n, 4n, 5n]);
  for (let i = 1; i < 5; i++) {
    assert.equal(recs[i].startTimeNs, recs[i - 1].endTimeNs);
    const ms = Number(recs[i].endTimeNs - recs[i].startTimeNs) / 1e6;
    assert.ok(ms > AGGREGATION_MS * 0.8 && ms < AGGREGATION_MS * 3, `interval ${ms} ms`);
  }
  // De-duplication id on every message.
  assert.equal(recordsOf('s-records')[0].msgId, `s-records/${HOST}/${t.pid}/${r.startTimeNs}/1`);
  const state = await waitFor('records counted as published', async () => {
    const o = await observed('s-records');
    return o && o.recordsPublished >= 5n ? o : undefined;
  });
  assert.ok(state.aggregationIntervalMeanUs > 150_000 && state.aggregationIntervalMeanUs < 400_000, `${state.aggregationIntervalMeanUs}`);
  assert.ok(state.samplingIntervalMeanUs > 5_000 && state.samplingIntervalMeanUs < 30_000, `${state.samplingIntervalMeanUs}`);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-records' });
});

test('Apply is idempotent by generation and spec; a new generation restarts and sequences go on', async () => {
  const t = target();
  const spec = syntheticSpec('s-idem', [t.pid]);
  await apply(spec);
  await waitFor('three records', () => recordsOf('s-idem').length >= 3);
  const again = await apply(spec);
  assert.equal(again.generation, 1n);
  assert.ok(again.recordsPublished >= 2n, 'the same runner answers (its count goes on)');
  const before2 = recordsOf('s-idem').length;
  await waitFor('records go on', () => recordsOf('s-idem').length >= before2 + 2);
  const seq = recordsOf('s-idem').map((r) => r.rec.sequence);
  assert.deepEqual(seq, seq.map((_, i) => BigInt(i + 1)), 'no restart: one run of sequences, no gap or repeat');

  const restarted = await apply({ ...spec, generation: 2n, attrs: { ...spec.attrs!, aggregationIntervalUs: 100_000n } });
  assert.equal(restarted.generation, 2n);
  assert.equal(restarted.recordsPublished, 0n);
  const n = recordsOf('s-idem').length;
  await waitFor('records of generation 2', () => recordsOf('s-idem').slice(n).find((r) => r.rec.maxNrAccesses === 10));
  const all = recordsOf('s-idem').map((r) => r.rec.sequence);
  assert.deepEqual(all, all.map((_, i) => BigInt(i + 1)), 'sequences go on across the restart');
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-idem' });
});

test('Stop: no records after it returns; the session is gone from the state', async () => {
  const t = target();
  await apply(syntheticSpec('s-stop', [t.pid]));
  await waitFor('two records', () => recordsOf('s-stop').length >= 2);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-stop' });
  const stoppedAt = BigInt(Date.now()) * 1_000_000n;
  // Let anything in flight arrive, then look for later records.
  await new Promise((r) => setTimeout(r, 100));
  const n = recordsOf('s-stop').length;
  await new Promise((r) => setTimeout(r, 3 * AGGREGATION_MS));
  assert.equal(recordsOf('s-stop').length, n);
  for (const r of recordsOf('s-stop')) assert.ok(r.rec.endTimeNs <= stoppedAt);
  assert.equal(await observed('s-stop'), undefined);
  // Stopping again, or a session never applied, is fine.
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-stop' });
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 'never-applied' });
});

test('a target process that exits is EXITED at once and its records end; the others go on', async () => {
  const a = target();
  const b = target();
  await apply(syntheticSpec('s-exit', [a.pid, b.pid]));
  await waitFor('records of both', () => recordsOf('s-exit', a.pid).length >= 1 && recordsOf('s-exit', b.pid).length >= 1);
  await killTarget(a);
  const t0 = performance.now();
  const o = await waitFor('a EXITED', async () => {
    const s = await observed('s-exit');
    return s?.targets.find((x) => x.pid === a.pid && x.state === TargetState.TARGET_STATE_EXITED) ? s : undefined;
  }, 3000, 10);
  assert.ok(performance.now() - t0 < 500, 'seen within the process poll');
  const ta = o.targets.find((x) => x.pid === a.pid)!;
  assert.match(ta.message, /process exited/);
  assert.equal(o.targets.find((x) => x.pid === b.pid)!.state, TargetState.TARGET_STATE_RUNNING);
  assert.equal(o.running, true);
  const na = recordsOf('s-exit', a.pid).length;
  const nb = recordsOf('s-exit', b.pid).length;
  await new Promise((r) => setTimeout(r, 3 * AGGREGATION_MS));
  assert.equal(recordsOf('s-exit', a.pid).length, na, 'no records for the exited process');
  assert.ok(recordsOf('s-exit', b.pid).length > nb);
  // The last one goes: the session stops running.
  await killTarget(b);
  const done = await waitFor('all exited', async () => {
    const s = await observed('s-exit');
    return s && !s.running ? s : undefined;
  }, 3000);
  assert.deepEqual(done.targets.map((x) => TargetState[x.state]), ['TARGET_STATE_EXITED', 'TARGET_STATE_EXITED']);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-exit' });
});

test('a synthetic workload (JSON) whose simulated process ends: EXITED, saying it was simulated', async () => {
  const t = target();
  const workload = JSON.stringify({
    name: 'short-lived',
    targets: [{ id: 1, mappings: [{ start: '0x10000000', size: '64M' }], baseProbability: 0.5, exitAtUs: '300ms' }],
  });
  const o = await apply(syntheticSpec('s-simexit', [t.pid], { syntheticWorkload: workload }));
  assert.equal(o.running, true);
  // The engine notices at its next regions update (1 s).
  const done = await waitFor('the simulated exit', async () => {
    const s = await observed('s-simexit');
    return s && !s.running ? s : undefined;
  }, 4000);
  assert.equal(done.targets[0].state, TargetState.TARGET_STATE_EXITED);
  assert.equal(done.targets[0].message, 'the simulated process of the synthetic workload exited');
  assert.ok(recordsOf('s-simexit').length >= 1);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-simexit' });
});

test('a pid that does not exist is EXITED with a clear message; the existing one runs', async () => {
  const t = target();
  const o = await apply(syntheticSpec('s-missing', [MISSING_PID, t.pid]));
  const missing = o.targets.find((x) => x.pid === MISSING_PID)!;
  assert.equal(missing.state, TargetState.TARGET_STATE_EXITED);
  assert.equal(missing.message, `no process with pid ${MISSING_PID} on host ${HOST}`);
  assert.equal(o.targets.find((x) => x.pid === t.pid)!.state, TargetState.TARGET_STATE_RUNNING);
  const only = await apply(syntheticSpec('s-missing-only', [MISSING_PID]));
  assert.equal(only.running, false);
  assert.equal(only.targets[0].state, TargetState.TARGET_STATE_EXITED);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-missing' });
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-missing-only' });
});

test('default operations on a host without page_idle: FAILED with what is missing', async () => {
  const t = target();
  const st = await unary(client, 'getState', { pageToken: '', epoch: 0n });
  assert.deepEqual(st.operations, ['synthetic'], 'this host has no page_idle');
  assert.ok(st.unavailable.some((u) => u.startsWith('page_idle: ')), st.unavailable.join('; '));
  for (const operations of ['', 'page_idle']) {
    const o = await apply({ ...syntheticSpec(`s-default${operations}`, [t.pid]), operations, syntheticWorkload: '' });
    assert.equal(o.running, false);
    assert.equal(o.targets[0].state, TargetState.TARGET_STATE_FAILED);
    assert.match(o.targets[0].message, /^page_idle unavailable: .*page_idle\/bitmap/);
    await unary(client, 'stopSession', { epoch: 0n, sessionId: o.sessionId });
  }
  // A workload that is not one: a malformed spec, naming it (the session schema's rule).
  await rejectsWith(
    apply(syntheticSpec('s-badload', [t.pid], { syntheticWorkload: 'no-such-preset' })),
    grpc.status.INVALID_ARGUMENT,
    /^spec\.synthetic_workload: not a preset \(hot5, islands\) nor a valid JSON workload: synthetic_workload "no-such-preset"/,
  );
});

test('malformed specs are INVALID_ARGUMENT, naming the field', async () => {
  const base = syntheticSpec('s-bad', [1]);
  await rejectsWith(unary(client, 'applySession', { epoch: 0n, spec: undefined }), grpc.status.INVALID_ARGUMENT, /^spec: required/);
  await rejectsWith(unary(client, 'applySession', { epoch: 0n, spec: { ...base, sessionId: 'a.b' } }), grpc.status.INVALID_ARGUMENT, /spec\.session_id/);
  await rejectsWith(unary(client, 'applySession', { epoch: 0n, spec: { ...base, pids: [7, 7] } }), grpc.status.INVALID_ARGUMENT, /spec\.pids: pid 7 given twice/);
  await rejectsWith(unary(client, 'applySession', { epoch: 0n, spec: { ...base, pids: [] } }), grpc.status.INVALID_ARGUMENT, /spec\.pids/);
  await rejectsWith(
    unary(client, 'applySession', { epoch: 0n, spec: { ...base, attrs: { ...base.attrs!, minNrRegions: 2 } } }),
    grpc.status.INVALID_ARGUMENT,
    /spec\.attrs\.min_nr_regions: must be at least 3/,
  );
  await rejectsWith(unary(client, 'applySession', { epoch: 0n, spec: { ...base, operations: 'vaddr' } }), grpc.status.INVALID_ARGUMENT, /unknown operations "vaddr"/);
  await rejectsWith(
    unary(client, 'applySession', { epoch: 0n, spec: { ...base, attrs: { ...base.attrs!, resultFormat: 'csv' } } }),
    grpc.status.INVALID_ARGUMENT,
    /spec\.attrs\.result_format: unknown format "csv"/,
  );
});

test('result file: written inside the data directory; escapes refused (INVALID_ARGUMENT, or FAILED for links) with a clear message', async () => {
  const t = target();
  const dataDir = agent.dataDir;
  const spec = (id: string, resultFile: string, resultFormat = 'binary') =>
    syntheticSpec(id, [t.pid], { attrs: { ...syntheticSpec(id, []).attrs!, resultFile, resultFormat } });

  const ok = await apply(spec('s-file', 'runs/r.data'));
  assert.equal(ok.running, true);
  await waitFor('three records', () => recordsOf('s-file').length >= 3);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-file' });
  const contents = await readResultFile(join(dataDir, 'runs', 'r.data'));
  assert.equal(contents.format, 'binary');
  assert.ok(contents.snapshots.length >= 3, `${contents.snapshots.length} snapshots`);
  assert.equal(contents.snapshots[0].records[0].targetId, t.pid);

  const json = await apply(spec('s-json', 'r.json', 'json'));
  assert.equal(json.running, true);
  await waitFor('two records', () => recordsOf('s-json').length >= 2);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-json' });
  assert.equal((await readResultFile(join(dataDir, 'r.json'))).format, 'json');

  const outside = join(data.path, 'outside');
  mkdirSync(outside);
  symlinkSync(outside, join(dataDir, 'escape'));
  // What the session schema knows is wrong is a malformed spec (the controller refuses it first).
  await rejectsWith(apply(spec('s-esc-dots', '../x')), grpc.status.INVALID_ARGUMENT, /^spec\.attrs\.result_file: escapes the agent's data directory/);
  await rejectsWith(apply(spec('s-esc-abs', '/etc/x')), grpc.status.INVALID_ARGUMENT, /^spec\.attrs\.result_file: absolute paths are refused/);
  // What only the data directory shows fails the target.
  const o = await apply(spec('s-esc0', 'escape/x.data'));
  assert.equal(o.running, false);
  assert.equal(o.targets[0].state, TargetState.TARGET_STATE_FAILED);
  assert.match(o.targets[0].message, /^result_file "escape\/x\.data": "escape" is a symbolic link; result paths never pass through links/);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 's-esc0' });
  assert.deepEqual(readdirSync(outside), []);
  assert.ok(!existsSync(join(data.path, 'x')));
  assert.equal(recordsOf('s-esc0').length, 0, 'a refused session publishes nothing');
});
