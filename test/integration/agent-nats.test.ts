// The agent and NATS going away: nats-server killed with SIGKILL and restarted on the
// same port and store. The agent reconnects by itself, the records it held meanwhile go
// out, and the stream ends up with every record exactly once (Nats-Msg-Id de-duplicates
// the retries); records acknowledged before the crash are still there. Then the example
// optimizer reads them back.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy } from '@nats-io/jetstream';
import { connectNats, ensureStreams, jetStream } from '../../common/nats.js';
import { RECORDS_STREAM, recordsFilter } from '../../common/subjects.js';
import { type AggregationRecord, type AgentClient } from '../../gen/damon/v1/damon.js';
import { decodeRecord } from '../../common/record-wire.js';
import { startAgent, type AgentHandle } from '../../agent/daemon/main.js';
import { unary, waitFor } from './support/grpc-client.js';
import {
  agentClient,
  agentTestLogger,
  killTarget,
  spawnTarget,
  startKillableNats,
  syntheticSpec,
  tempDir,
  type KillableNats,
} from './support/agent-env.js';
import { testCredentials } from './support/credentials.js';

const SESSION = 'n-kill';
const HOST = 'crash-host';
const creds = testCredentials({ agents: [HOST] });

let nats: KillableNats;
let nc: NatsConnection;
let agent: AgentHandle;
let client: AgentClient;
let data: ReturnType<typeof tempDir>;
let target: ReturnType<typeof spawnTarget>;

before(async () => {
  nats = await startKillableNats({ credentials: creds });
  // The operator: it may set up the streams (as the controller would) and read them.
  nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.operator });
  await ensureStreams(jetStream(nc));
  data = tempDir('damon-agent-nats-');
  agent = await startAgent({
    host: HOST,
    listen: '127.0.0.1:0',
    nats: nats.url,
    natsNkeyFile: nats.credentials.agent('crash-host'),
    dataDir: data.path,
    ...creds.grpc.agentAccess(HOST),
    log: agentTestLogger(),
  });
  client = agentClient(agent.address, creds.grpc.controllerToAgent(HOST));
  target = spawnTarget();
});

after(async () => {
  client?.close();
  await agent?.stop();
  if (target) await killTarget(target);
  await nc?.close();
  await nats?.stop();
  data?.remove();
  creds.remove();
});

/** Every record of the session in the stream, in stream order. */
async function storedRecords(): Promise<AggregationRecord[]> {
  const js = jetStream(nc);
  const jsm = await js.jetstreamManager();
  const info = await jsm.streams.info(RECORDS_STREAM, { subjects_filter: recordsFilter(SESSION) });
  const total = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  const consumer = await js.consumers.get(RECORDS_STREAM, { filter_subjects: recordsFilter(SESSION), deliver_policy: DeliverPolicy.All });
  const out: AggregationRecord[] = [];
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: total - out.length, expires: 2000 });
    for await (const m of batch) out.push(decodeRecord(m.data));
  }
  return out;
}

test('nats-server killed (-9) and restarted: the agent reconnects, records flow again, each stored once', async () => {
  await unary(client, 'applySession', { epoch: 0n, spec: syntheticSpec(SESSION, [target.pid]) });
  await waitFor('five records acknowledged', () => agent.publisherStats().published >= 5, 8000);
  assert.equal(agent.natsConnected(), true);

  await nats.kill9();
  const ackedBeforeCrash = agent.publisherStats().published;
  await waitFor('the agent to notice', () => !agent.natsConnected(), 5000);
  // Monitoring goes on: records wait in the agent's queue.
  await waitFor('records held while NATS is down', () => agent.publisherStats().queued >= 3, 5000);
  const heldAtRestart = agent.publisherStats().queued;

  await nats.restart();
  await waitFor('the agent reconnected', () => agent.natsConnected(), 10_000);
  await waitFor(
    'the held records published and new ones flowing',
    () => agent.publisherStats().queued === 0 && agent.publisherStats().published >= ackedBeforeCrash + heldAtRestart + 2,
    10_000,
  );
  await unary(client, 'stopSession', { epoch: 0n, sessionId: SESSION });
  const stats = agent.publisherStats();
  assert.equal(stats.dropped, 0);

  const recs = await storedRecords();
  const seqs = recs.map((r) => r.sequence);
  // Every record exactly once, in order: nothing acknowledged was lost, no retry duplicated one.
  assert.deepEqual(seqs, seqs.map((_, i) => BigInt(i + 1)), `sequences in the stream: ${seqs.join(',')}`);
  assert.ok(recs.length >= ackedBeforeCrash + heldAtRestart, `${recs.length} stored`);
  assert.ok(recs.every((r) => r.pid === target.pid && r.host === 'crash-host'));
});

test('the example optimizer reads the records back and prints a plan per target', async () => {
  const script = fileURLToPath(new URL('../../examples/optimizer.js', import.meta.url));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [script, '--nats', nats.url, '--nats-nkey', nats.credentials.reader(), '--session', SESSION, '--replay', '--count', '3', '--every', '0', '--top', '2'],
    { timeout: 15_000 },
  );
  const plans = stdout.split(/\n(?=session )/);
  assert.equal(plans.length, 3, stdout);
  assert.match(plans[0], new RegExp(`^session ${SESSION} host crash-host pid ${target.pid}: record #1 \\(synthetic\\), \\d+ regions over [\\d.]+ GiB`));
  assert.match(plans[0], /\n {2}hottest:\n {4}0x[0-9a-f]+-0x[0-9a-f]+ +[\d.]+ [KMG]iB +\d+% {2}age \d+\n/);
  assert.match(plans[0], /\n {2}coldest:\n/);
  assert.match(plans[2], /plan: keep in fast memory [\d.]+ [KMG]?i?B \([\d.]+%, >= 20%\), reclaim [\d.]+ [KMG]?i?B/);
});
