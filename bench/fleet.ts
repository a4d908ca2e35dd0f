// The fleet's data and control planes:
//  - wire size: bytes of an AggregationRecord per region, at 10, 100 and 1000 regions
//    (records the engine produced, converted as the agent converts them), packed as the
//    agent publishes them and plain (the former encoding), in the same run;
//  - publishing: the most records per second one agent's publisher (RecordPublisher, the
//    agent's own) gets acknowledged by JetStream, at those region counts;
//  - latency: from the end of an aggregation (record end_time) to a NATS consumer
//    receiving the record, with the real controller and agent as processes;
//  - control plane: a controller (process) with 200 registered agents turning a 50-host
//    session on: TurnOn reply, all 50 RUNNING, their heartbeats, TurnOff. The 200 agents are
//    lightweight in-process fakes (test/integration/support/fake-agent.ts): 200 real agent
//    processes do not fit on a small machine.
//
// Figures are percentiles and ratios within one run, because the machine is shared.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy } from '@nats-io/jetstream';
import { DamonContext } from '../agent/engine/context.js';
import { DEFAULT_ATTRS, validateAttributes } from '../agent/engine/attrs.js';
import type { AggregationRecord as EngineRecord } from '../agent/records/record.js';
import { SyntheticOperations } from '../agent/ops/synthetic.js';
import { seededRandom } from '../test/support/seeded-random.js';
import { RecordPublisher } from '../agent/daemon/publisher.js';
import { toProtoHeader, toProtoRecord } from '../agent/daemon/record-convert.js';
import { decodeRecord, encodePlainRecord, encodeRecord, encodeRecordOfNumbers } from '../common/record-wire.js';
import { RecordSpool } from '../agent/daemon/spool.js';
import { silentLogger } from '../common/log.js';
import { connectNats, ensureStreams, jetStream, recordMsgId } from '../common/nats.js';
import { RECORDS_STREAM, recordsFilter, recordsSubject } from '../common/subjects.js';
import { type AggregationRecord, SessionState, TargetState, type ControllerClient } from '../gen/damon/v1/damon.js';
import { agentClient, killTarget, spawnTarget, tempDir } from '../test/integration/support/agent-env.js';
import { FakeAgent } from '../test/integration/support/fake-agent.js';
import { IdentityTable } from '../common/grpc-access.js';
import { spawnAgent, spawnController, type FleetProcess } from '../test/integration/support/fleet-processes.js';
import { controllerClient, unary, waitFor } from '../test/integration/support/grpc-client.js';
import { freePort, startNatsServer, type NatsServer } from '../test/integration/support/nats-server.js';
import { presetWorkload } from '../agent/ops/synthetic-presets.js';
import { workloadForPids } from '../agent/daemon/ops-select.js';
import { median, percentile, processCpuS, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const REGION_COUNTS = [10, 100, 1000] as const;
/** A realistic origin: host names, pids and the agent's instance id are part of every record. */
const ORIGIN = { sessionId: 'web-frontend-1', host: 'worker-017.dc1.example.com', pid: 2_345_678, agentInstance: '0b7c4e2a-6f1d-4c1e-9a57-3f2d8e6b1c90' };
/** The host of the real agent whose records' latency is measured. */
const LATENCY_HOST = 'latency-host';

const FLEET_AGENTS = 200;
/** The control-plane benchmark's fake agents. */
const FLEET_HOSTS = Array.from({ length: FLEET_AGENTS }, (_, i) => `fleet-${String(i).padStart(3, '0')}`);
const SESSION_HOSTS = 50;
const FLEET_HEARTBEAT_MS = 1000;
const FLEET_LEASE_MS = 5000;

/** Wall clock in milliseconds with sub-millisecond resolution. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

// ---- wire size --------------------------------------------------------------------------

/** Records of one target with exactly `n` regions (min = max = n), after a warm-up. */
function engineRecords(n: number, count: number): EngineRecord[] {
  const attrs = validateAttributes({ ...DEFAULT_ATTRS, minNrRegions: n, maxNrRegions: n });
  // A process-like address space (image, 4 GiB of data at 0x7f00_0000_0000, a library, the stack).
  const ops = new SyntheticOperations(presetWorkload('islands'));
  const ctx = new DamonContext({ attrs, targetIds: ops.targetIds(), ops, random: seededRandom(n), clock: 'virtual' });
  const out: EngineRecord[] = [];
  ctx.on('aggregate', (r) => out.push(r));
  // 30 aggregations of warm-up: the regions settle on the workload's hot islands.
  while (out.length < 30 + count) ctx.step();
  return out.slice(30);
}

function toWire(rec: EngineRecord, sequence: bigint): AggregationRecord {
  const proto = toProtoRecord(rec, { sessionId: ORIGIN.sessionId, host: ORIGIN.host, operations: 'synthetic', sequence, agentInstance: ORIGIN.agentInstance });
  return { ...proto, pid: ORIGIN.pid };
}

interface WireSize {
  regions: number;
  records: number;
  bytesMedian: number;
  bytesMax: number;
  bytesPerRegion: number;
  /** The former encoding (plain Region messages) of the same records. */
  plainBytesMedian: number;
  plainBytesPerRegion: number;
  /** Everything but the regions: ids, times, operations, sequence, instance. */
  headerBytes: number;
  /** Subject plus Nats-Msg-Id header value, which also travel with every message. */
  subjectAndMsgIdBytes: number;
}

function wireSizes(): { sizes: WireSize[]; samples: Map<number, AggregationRecord> } {
  const sizes: WireSize[] = [];
  const samples = new Map<number, AggregationRecord>();
  for (const n of REGION_COUNTS) {
    const recs = engineRecords(n, 20).map((r, i) => toWire(r, BigInt(1000 + i)));
    if (recs.some((r) => r.regions.length !== n)) throw new Error(`engine records with other than ${n} regions`);
    const bytes = recs.map((r) => encodeRecord(r).length);
    const plain = recs.map((r) => encodePlainRecord(r).length);
    const headerBytes = encodePlainRecord({ ...recs[0], regions: [] }).length;
    const subject = recordsSubject(recs[0].sessionId, recs[0].host, recs[0].pid);
    sizes.push({
      regions: n,
      records: recs.length,
      bytesMedian: median(bytes),
      bytesMax: Math.max(...bytes),
      bytesPerRegion: median(bytes) / n,
      plainBytesMedian: median(plain),
      plainBytesPerRegion: median(plain) / n,
      headerBytes,
      subjectAndMsgIdBytes: subject.length + recordMsgId(recs[0]).length,
    });
    samples.set(n, recs[0]);
  }
  return { sizes, samples };
}

// ---- publishing throughput -------------------------------------------------------------

interface PublishRun {
  regions: number;
  records: number;
  ms: number;
  recordsPerSec: number;
  mbPerSec: number;
}

/** Numbers publishing runs: each run's records get Nats-Msg-Ids of their own (no de-duplication across runs). */
let publishRunNo = 0;

/** Purges the stream as the operator (`nc`), then publishes as the records' host agent (`agentNc`). */
async function publishOnce(nc: NatsConnection, agentNc: NatsConnection, sample: AggregationRecord, count: number): Promise<PublishRun> {
  const jsm = await jetStream(nc).jetstreamManager();
  await jsm.streams.purge(RECORDS_STREAM);
  const dir = tempDir('damon-bench-spool-');
  const spool = RecordSpool.open(dir.path, { log: silentLogger, maxBytes: 1 << 30 });
  const publisher = new RecordPublisher(jetStream(agentNc), { log: silentLogger, spool });
  const base = BigInt(++publishRunNo) * 1_000_000n;
  const msgs = Array.from({ length: count }, (_, i) => {
    const r = { ...sample, sequence: base + BigInt(i + 1), startTimeNs: sample.startTimeNs + BigInt(i) };
    return { subject: recordsSubject(r.sessionId, r.host, r.pid), data: encodeRecord(r), msgId: recordMsgId(r), seq: r.sequence };
  });
  const bytes = msgs.reduce((a, m) => a + m.data.length, 0);
  const t0 = performance.now();
  for (const m of msgs) publisher.enqueue(m.subject, m.data, m.msgId, m.seq);
  const done = await publisher.flush(publisher.lastMark(), 120_000);
  const ms = performance.now() - t0;
  const st = publisher.stats();
  await publisher.close(0);
  dir.remove();
  if (!done || st.published !== count || st.dropped !== 0) {
    throw new Error(`publisher: ${st.published} of ${count} records acknowledged, ${st.dropped} dropped`);
  }
  return { regions: sample.regions.length, records: count, ms, recordsPerSec: (count / ms) * 1000, mbPerSec: bytes / 1e6 / (ms / 1000) };
}

// ---- end-of-aggregation -> consumer latency ----------------------------------------------

interface LatencyResult {
  targets: number;
  seconds: number;
  jetstreamConsumerMs: number[];
  subscriptionMs: number[];
  /** The agent's engine: mean real sampling and aggregation intervals (configured 5000 / 100000 us). */
  samplingIntervalMeanUs: number;
  aggregationIntervalMeanUs: number;
  recordsPublished: number;
}

type Progress = { tick(what: string): void; note(what: string): void };

async function deliveryLatency(nats: NatsServer, nc: NatsConnection, seconds: number, p: Progress): Promise<LatencyResult> {
  const targets = Array.from({ length: 4 }, () => spawnTarget());
  const data = tempDir('damon-bench-fleet-');
  const procs: FleetProcess[] = [];
  const creds = nats.credentials;
  let client: ControllerClient | undefined;
  try {
    const listen = `127.0.0.1:${await freePort()}`;
    procs.push(await spawnController({ listen, nats: nats.url, credentials: nats.credentials, leaseTtlMs: 1200, heartbeatMs: 200 }));
    const agent = await spawnAgent({ host: LATENCY_HOST, controller: listen, nats: nats.url, credentials: nats.credentials, dataDir: data.path });
    procs.push(agent);
    client = controllerClient(listen, creds.grpc.operator);
    const c = client;
    await waitFor('the agent live', async () => (await unary(c, 'listAgents', {})).agents.some((a) => a.live), 15_000);
    p.tick('latency: controller and agent up');

    const id = 'latency';
    const js = jetStream(nc);
    const consumer = await js.consumers.get(RECORDS_STREAM, { filter_subjects: recordsFilter(id), deliver_policy: DeliverPolicy.New });
    const messages = await consumer.consume();
    const sub = nc.subscribe(recordsFilter(id));
    let measuring = false;
    const jsLat: number[] = [];
    const subLat: number[] = [];
    const latency = (bytes: Uint8Array) => nowMs() - Number(decodeRecord(bytes).endTimeNs) / 1e6;
    const reading = (async () => {
      for await (const m of messages) {
        const l = latency(m.data);
        if (measuring) jsLat.push(l);
      }
    })();
    const subscribed = (async () => {
      for await (const m of sub) {
        const l = latency(m.data);
        if (measuring) subLat.push(l);
      }
    })();
    await nc.flush();

    await unary(c, 'createSession', {
      id,
      attrs: undefined,
      attrsText: '', schemesText: '', // DAMON's defaults: 5 ms sampling, 100 ms aggregation, 10..1000 regions
      targets: targets.map((t) => ({ host: LATENCY_HOST, pid: t.pid })),
      operations: 'synthetic',
      syntheticWorkload: 'hot5',
    });
    await unary(c, 'turnOn', { id });
    await sleep(1000); // warm-up: JIT, connections, the first splits
    measuring = true;
    for (let s = 0; s < seconds; s++) {
      await sleep(1000);
      p.note(`latency: ${s + 1}/${seconds} s`);
    }
    measuring = false;
    const session = await unary(c, 'getSession', { id });
    const direct = agentClient(agent.address, creds.grpc.controllerToAgent(LATENCY_HOST));
    const observed = await unary(direct, 'getState', { pageToken: '', epoch: 0n }).finally(() => direct.close());
    await unary(c, 'turnOff', { id });
    messages.stop();
    sub.unsubscribe();
    await Promise.all([reading, subscribed]);
    if (session.state !== SessionState.SESSION_STATE_ON) throw new Error(`the latency session turned off: ${session.offReason}`);
    const engine = observed.sessions.find((x) => x.sessionId === id);
    if (!engine) throw new Error('the agent did not report the latency session');
    p.tick('latency: measured');
    return {
      targets: targets.length,
      seconds,
      jetstreamConsumerMs: jsLat,
      subscriptionMs: subLat,
      samplingIntervalMeanUs: engine.samplingIntervalMeanUs,
      aggregationIntervalMeanUs: engine.aggregationIntervalMeanUs,
      recordsPublished: Number(engine.recordsPublished),
    };
  } finally {
    client?.close();
    for (const proc of procs.reverse()) await proc.stop(3000);
    await Promise.all(targets.map(killTarget));
    data.remove();
  }
}

// ---- where the time goes: the agent's pipeline in this process -------------------------------

interface StageLatency {
  regions: number;
  /** end_time -> the record handed to the publisher (engine, encoding, spool). */
  handedOverMs: number[];
  /** end_time -> a plain subscriber (this process) received it. */
  receivedMs: number[];
  /** end_time -> JetStream acknowledged it to the publisher. */
  acknowledgedMs: number[];
}

/**
 * The agent's own path (engine, encoding, spool, publisher) run in this process against
 * the same nats-server, with a subscriber here too: one process hop instead of two, and
 * the handover stage timed. Four targets with exactly `regions` regions each.
 */
async function latencyStages(nats: NatsServer, nc: NatsConnection, regions: number, seconds: number): Promise<StageLatency> {
  const agentNc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.agent(ORIGIN.host) });
  const dir = tempDir('damon-bench-stages-');
  const publisher = new RecordPublisher(jetStream(agentNc), { log: silentLogger, spool: RecordSpool.open(dir.path, { log: silentLogger }) });
  const sessionId = `stages-${regions}`;
  const out: StageLatency = { regions, handedOverMs: [], receivedMs: [], acknowledgedMs: [] };
  let measuring = false;
  const sub = nc.subscribe(recordsFilter(sessionId));
  const reading = (async () => {
    for await (const m of sub) {
      const t = nowMs();
      if (measuring) out.receivedMs.push(t - Number(decodeRecord(m.data).endTimeNs) / 1e6);
    }
  })();
  await nc.flush();
  const attrs = validateAttributes({ ...DEFAULT_ATTRS, minNrRegions: regions, maxNrRegions: regions });
  const ops = new SyntheticOperations(workloadForPids(presetWorkload('islands'), [1, 2, 3, 4]));
  const ctx = new DamonContext({ attrs, targetIds: ops.targetIds(), ops, random: seededRandom(regions) });
  ctx.on('aggregate', (rec) => {
    const subject = recordsSubject(sessionId, ORIGIN.host, rec.targetId);
    const header = toProtoHeader(rec, { sessionId, host: ORIGIN.host, operations: 'synthetic', sequence: publisher.nextSequence(subject), agentInstance: ORIGIN.agentInstance });
    const end = Number(rec.endNs) / 1e6;
    const m = measuring;
    publisher.enqueue(subject, encodeRecordOfNumbers(header, rec.regions), recordMsgId(header), header.sequence, () => {
      if (m) out.acknowledgedMs.push(nowMs() - end);
    });
    if (m) out.handedOverMs.push(nowMs() - end);
  });
  try {
    ctx.start();
    await sleep(1000); // warm-up
    measuring = true;
    await sleep(seconds * 1000);
    measuring = false;
    await ctx.stop();
    await publisher.flush(publisher.lastMark(), 5000);
  } finally {
    await publisher.close(0);
    sub.unsubscribe();
    await reading;
    await agentNc.close();
    dir.remove();
  }
  return out;
}

// ---- control plane: 200 agents, a 50-host session -----------------------------------------

interface TurnOnRun {
  label: string;
  turnOnMs: number;
  runningInReply: number;
  allRunningMs: number;
  allHeartbeatedMs: number;
  turnOffMs: number;
  oneHostTurnOnMs: number;
}

async function controlPlane(nats: NatsServer, repeats: number, quick: boolean, tick: (what: string) => void) {
  const listen = `127.0.0.1:${await freePort()}`;
  const ctl = await spawnController({ listen, nats: nats.url, credentials: nats.credentials, leaseTtlMs: FLEET_LEASE_MS, heartbeatMs: FLEET_HEARTBEAT_MS });
  const client = controllerClient(listen, nats.credentials.grpc.operator);
  const agents: FakeAgent[] = [];
  try {
    for (let i = 0; i < FLEET_AGENTS; i += 20) {
      agents.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(20, FLEET_AGENTS - i) }, (_, k) =>
            new FakeAgent({
              host: FLEET_HOSTS[i + k],
              controller: listen,
              credentials: nats.credentials.grpc.agent(FLEET_HOSTS[i + k]),
              accept: { identities: IdentityTable.readFile(nats.credentials.layout.agent(FLEET_HOSTS[i + k]).identities) },
              heartbeatMs: FLEET_HEARTBEAT_MS,
            }).start(),
          ),
        )),
      );
    }
    await waitFor(`${FLEET_AGENTS} agents live`, async () => (await unary(client, 'listAgents', {})).agents.filter((a) => a.live).length === FLEET_AGENTS, 30_000);
    tick(`control plane: ${FLEET_AGENTS} agents registered`);

    // Idle cost: the controller with 200 agents heartbeating, nothing on.
    const idleS = quick ? 2 : 5;
    const c0 = processCpuS(ctl.pid);
    await sleep(idleS * 1000);
    const idleCpuS = processCpuS(ctl.pid) - c0;
    const idle = { seconds: idleS, cpuPercent: (100 * idleCpuS) / idleS, cpuUsPerHeartbeat: (idleCpuS * 1e6) / ((FLEET_AGENTS * idleS * 1000) / FLEET_HEARTBEAT_MS) };

    const hostSet = (k: number) => Array.from({ length: SESSION_HOSTS }, (_, i) => agents[(i * (FLEET_AGENTS / SESSION_HOSTS) + k) % FLEET_AGENTS]);
    const sets = FLEET_AGENTS / SESSION_HOSTS;
    // First TurnOn on each disjoint set of 50 hosts, then again and again on the first set.
    const plan = [
      ...Array.from({ length: quick ? 1 : sets }, (_, k) => ({ label: `first on set ${k}`, set: k })),
      ...Array.from({ length: repeats }, (_, r) => ({ label: `again on set 0 (${r + 1})`, set: 0 })),
    ];
    const runs: TurnOnRun[] = [];
    let n = 0;
    for (const step of plan) {
      const hosts = hostSet(step.set);
      const id = `fleet-on-${n++}`;
      await unary(client, 'createSession', {
        id, attrs: undefined, attrsText: '', schemesText: '', operations: 'synthetic', syntheticWorkload: '',
        targets: hosts.map((a, i) => ({ host: a.host, pid: 1000 + i })),
      });
      const t0 = Date.now();
      const on = await unary(client, 'turnOn', { id });
      const t1 = Date.now();
      const runningInReply = on.targetStatus.filter((t) => t.state === TargetState.TARGET_STATE_RUNNING).length;
      await waitFor('all 50 RUNNING', async () => (await unary(client, 'getSession', { id })).targetStatus.every((t) => t.state === TargetState.TARGET_STATE_RUNNING), 30_000, 5);
      const t2 = Date.now();
      const names = new Set(hosts.map((a) => a.host));
      await waitFor('a heartbeat from all 50 since', async () => {
        const { agents: listed } = await unary(client, 'listAgents', {});
        return listed.filter((a) => names.has(a.host) && Number(a.lastHeartbeatMs) >= t1).length === SESSION_HOSTS;
      }, 30_000, 20);
      const t3 = Date.now();
      if (!hosts.every((a) => a.sessions.has(id))) throw new Error(`session ${id}: not every agent got it`);
      const t4 = Date.now();
      await unary(client, 'turnOff', { id });
      const turnOffMs = Date.now() - t4;
      await unary(client, 'deleteSession', { id });

      // The same on one host, as the baseline the 50-host figure is compared with.
      const one = `fleet-one-${n}`;
      await unary(client, 'createSession', { id: one, attrs: undefined, attrsText: '', schemesText: '', operations: 'synthetic', syntheticWorkload: '', targets: [{ host: hosts[0].host, pid: 1 }] });
      const o0 = Date.now();
      await unary(client, 'turnOn', { id: one });
      const oneHostTurnOnMs = Date.now() - o0;
      await unary(client, 'turnOff', { id: one });
      await unary(client, 'deleteSession', { id: one });

      runs.push({ label: step.label, turnOnMs: t1 - t0, runningInReply, allRunningMs: t2 - t0, allHeartbeatedMs: t3 - t0, turnOffMs, oneHostTurnOnMs });
      tick(`control plane: ${step.label}`);
    }
    return { runs, idle };
  } finally {
    client.close();
    await Promise.all(agents.map((a) => a.stop()));
    await ctl.stop(3000);
  }
}

// ---- the benchmark ------------------------------------------------------------------------

async function run(b: BenchContext): Promise<BenchResult> {
  const total = 1 + REGION_COUNTS.length * b.repeats + 2 + 2 + 1 + (b.quick ? 1 : FLEET_AGENTS / SESSION_HOSTS) + b.repeats + 1;
  let done = 0;
  const tick = (what: string) => b.progress(what, ++done, total);
  const note = (what: string) => b.progress(what, done, total);

  const { sizes, samples } = wireSizes();
  tick('wire sizes');

  const nats = await startNatsServer({ agents: [ORIGIN.host, LATENCY_HOST, ...FLEET_HOSTS] });
  let nc: NatsConnection | undefined;
  let agentNc: NatsConnection | undefined;
  try {
    // The operator sets up, purges and reads the streams; records come from their host's agent identity.
    nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.operator });
    agentNc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.agent(ORIGIN.host) });
    await ensureStreams(jetStream(nc));

    // Publishing: a full queue drained by the agent's publisher, region counts interleaved.
    const counts: Record<number, number> = b.quick ? { 10: 1000, 100: 1000, 1000: 300 } : { 10: 4000, 100: 4000, 1000: 1500 };
    const publishRuns: PublishRun[] = [];
    await publishOnce(nc, agentNc, samples.get(100)!, 1000); // warm-up: JIT, the connection, the stream's files
    for (let r = 0; r < b.repeats; r++) {
      for (const n of REGION_COUNTS) {
        publishRuns.push(await publishOnce(nc, agentNc, samples.get(n)!, counts[n]));
        tick(`publishing: ${n} regions, repeat ${r + 1}`);
      }
    }
    const publish = REGION_COUNTS.map((n) => {
      const rs = publishRuns.filter((p) => p.regions === n);
      return { regions: n, records: counts[n], recordsPerSec: median(rs.map((p) => p.recordsPerSec)), mbPerSec: median(rs.map((p) => p.mbPerSec)), runs: rs };
    });

    const latency = await deliveryLatency(nats, nc, b.quick ? 3 : 12, { tick, note });
    const stages: StageLatency[] = [];
    for (const n of [100, 1000]) {
      stages.push(await latencyStages(nats, nc, n, b.quick ? 2 : 6));
      tick(`latency stages: ${n} regions`);
    }
    const fleet = await controlPlane(nats, b.repeats, b.quick, tick);
    tick('done');

    const js = latency.jetstreamConsumerMs;
    const sub = latency.subscriptionMs;
    const again = fleet.runs.filter((r) => r.label.startsWith('again'));
    const first = fleet.runs.filter((r) => r.label.startsWith('first'));
    const at = (n: number) => publish.find((p) => p.regions === n)!;
    const size = (n: number) => sizes.find((s) => s.regions === n)!;
    const perTargetRate = 1e6 / DEFAULT_ATTRS.aggregationUs; // records/s of one target at DAMON's default aggregation interval
    return {
      summary: {
        bytesPerRegion10: size(10).bytesPerRegion,
        bytesPerRegion100: size(100).bytesPerRegion,
        bytesPerRegion1000: size(1000).bytesPerRegion,
        plainBytesPerRegion10: size(10).plainBytesPerRegion,
        plainBytesPerRegion100: size(100).plainBytesPerRegion,
        plainBytesPerRegion1000: size(1000).plainBytesPerRegion,
        packedToPlainBytes1000: size(1000).bytesMedian / size(1000).plainBytesMedian,
        recordHeaderBytes: size(1000).headerBytes,
        publishRecordsPerSec10: at(10).recordsPerSec,
        publishRecordsPerSec100: at(100).recordsPerSec,
        publishRecordsPerSec1000: at(1000).recordsPerSec,
        publishRatio10To1000Regions: at(10).recordsPerSec / at(1000).recordsPerSec,
        targetsOneAgentCanPublishAt1000Regions: at(1000).recordsPerSec / perTargetRate,
        latencyJetStreamConsumerP50Ms: percentile(js, 50),
        latencyJetStreamConsumerP99Ms: percentile(js, 99),
        latencySubscriptionP50Ms: percentile(sub, 50),
        latencySubscriptionP99Ms: percentile(sub, 99),
        latencySamples: js.length,
        latencyStagesHandedOverP99Ms1000Regions: percentile(stages[1].handedOverMs, 99),
        latencyStagesReceivedP99Ms1000Regions: percentile(stages[1].receivedMs, 99),
        fleetTurnOn50HostsMedianMs: median(again.map((r) => r.turnOnMs)),
        fleetTurnOn50HostsFirstMedianMs: median(first.map((r) => r.turnOnMs)),
        fleetTurnOn50To1HostRatio: median(again.map((r) => r.turnOnMs)) / median(again.map((r) => r.oneHostTurnOnMs)),
        fleetAll50RunningMedianMs: median(again.map((r) => r.allRunningMs)),
        fleetAll50HeartbeatedMedianMs: median(again.map((r) => r.allHeartbeatedMs)),
        fleetTurnOff50HostsMedianMs: median(again.map((r) => r.turnOffMs)),
        controllerIdleCpuPercent200Agents: fleet.idle.cpuPercent,
        fakeAgents: true,
      },
      tables: [
        {
          title: 'AggregationRecord on the wire (protobuf payload; engine records of the synthetic "islands" process, min = max = regions): packed as published, and plain (the former encoding)',
          columns: ['regions', 'records', 'bytes (median)', 'bytes (max)', 'bytes / region', 'plain bytes', 'plain bytes / region', 'header bytes', 'subject + msg id'],
          rows: sizes.map((s) => [s.regions, s.records, s.bytesMedian, s.bytesMax, s.bytesPerRegion, s.plainBytesMedian, s.plainBytesPerRegion, s.headerBytes, s.subjectAndMsgIdBytes]),
        },
        {
          title: `One agent's publisher draining a full queue to JetStream (file storage), median of ${b.repeats}`,
          columns: ['regions', 'records', 'records/s', 'MB/s', `targets at ${perTargetRate} records/s`],
          rows: publish.map((p) => [p.regions, p.records, p.recordsPerSec, p.mbPerSec, p.recordsPerSec / perTargetRate]),
        },
        {
          title: `End of aggregation (record end_time) -> consumer, ${latency.targets} targets, DAMON's default attributes, ${latency.seconds} s (ms)`,
          columns: ['consumer', 'samples', 'p50', 'p90', 'p99', 'max'],
          rows: [
            ['JetStream ordered consumer', js.length, percentile(js, 50), percentile(js, 90), percentile(js, 99), Math.max(...js)],
            ['plain subscription', sub.length, percentile(sub, 50), percentile(sub, 90), percentile(sub, 99), Math.max(...sub)],
          ],
        },
        {
          title: 'Where the time goes: the agent\'s path (engine, encoding, spool, publisher) in the benchmark process, 4 targets, end of aggregation -> stage (ms)',
          columns: ['regions', 'stage', 'samples', 'p50', 'p90', 'p99', 'max'],
          rows: stages.flatMap((st) =>
            ([['handed to the publisher', st.handedOverMs], ['plain subscriber received', st.receivedMs], ['JetStream acknowledged', st.acknowledgedMs]] as const).map(
              ([what, xs]) => [st.regions, what, xs.length, percentile(xs, 50), percentile(xs, 90), percentile(xs, 99), Math.max(...xs)],
            ),
          ),
        },
        {
          title: `Controller with ${FLEET_AGENTS} registered (fake) agents, a ${SESSION_HOSTS}-host session (ms from the TurnOn request)`,
          columns: ['run', 'TurnOn reply', 'RUNNING in reply', 'all RUNNING (GetSession)', 'all heartbeated since', 'TurnOff', '1-host TurnOn'],
          rows: fleet.runs.map((r) => [r.label, r.turnOnMs, r.runningInReply, r.allRunningMs, r.allHeartbeatedMs, r.turnOffMs, r.oneHostTurnOnMs]),
        },
      ],
      notes: [
        'Wire size: records the engine produced for one simulated process (the "islands" preset: a process-like layout with 4 GiB of data at 0x7f00_0000_0000) with min_nr_regions = max_nr_regions = N (so exactly N regions), converted with the agent\'s toProtoRecord and encoded by common/record-wire.ts (packed: gaps and sizes in pages, nr_accesses and ages as packed varints) and, for comparison, as plain Region messages (whose 7-byte address varints made the former 20-30 bytes a region); session id, host, pid and the agent instance set to realistic values (they are in every record\'s header). The subject and the Nats-Msg-Id header travel with each message too (last column).',
        'Publishing: the agent\'s RecordPublisher (batches of up to 64 publishes, each acknowledged by JetStream, every record appended to its spool on disk first) draining a spool filled at once, to a local nats-server with file storage; records/s is the drain rate, which is the most it sustains. The last column divides it by one target\'s record rate at DAMON\'s default 100 ms aggregation interval.',
        'Latency: the real controller and one real agent as processes, synthetic operations on 4 real processes (sleep), DAMON\'s default attributes; the consumer runs in the benchmark process on the same host and clock. end_time is the engine\'s aggregation end; the latency includes the encoding, the spool on disk, the publisher, the JetStream store and delivery, and the scheduling of three processes (agent, nats-server, consumer) on a shared machine.',
        `Control plane: the controller is the real one, as a process; the ${FLEET_AGENTS} agents are FAKES (test/integration/support/fake-agent.ts, in the benchmark process): they register, heartbeat every ${FLEET_HEARTBEAT_MS} ms and answer ApplySession at once with every target RUNNING, as the real agent does once its engine runs. So "RUNNING in reply" is the TurnOn reply already carrying the status; "all heartbeated since" is when every one of the 50 had reported again by heartbeat (bounded by the heartbeat interval). Real agents would add their engine start to each ApplySession.`,
        'Where the time goes: the same code as the agent\'s (DamonContext, toProtoHeader + encodeRecordOfNumbers, RecordSpool, RecordPublisher) in the benchmark process with a plain subscriber beside it, the "islands" process with exactly 100 or 1000 regions per target: "handed to the publisher" is the engine (merge) and encoding after end_time; the rest is the spool, NATS and one process hop.',
        `Latency run: the agent's engine kept a mean sampling interval of ${latency.samplingIntervalMeanUs.toFixed(0)} us and aggregation interval of ${latency.aggregationIntervalMeanUs.toFixed(0)} us (configured 5000 / 100000) and published ${latency.recordsPublished} records.`,
        `Controller idle with ${FLEET_AGENTS} agents heartbeating: ${fleet.idle.cpuPercent.toFixed(1)}% of one CPU over ${fleet.idle.seconds} s (${fleet.idle.cpuUsPerHeartbeat.toFixed(0)} us per heartbeat).`,
        'The machine is shared (2 cores, other work running): absolute figures vary between runs; the ratios and percentiles are within one run.',
      ],
      data: { sizes, publish, latency, stages, fleet },
    };
  } finally {
    await nc?.close();
    await agentNc?.close();
    await nats.stop();
  }
}

export const benchmark: Benchmark = {
  name: 'fleet',
  description: 'records on the wire (bytes/region), one agent\'s publishing rate, end-of-aggregation -> consumer latency, a controller with 200 (fake) agents turning a 50-host session on',
  run,
};
