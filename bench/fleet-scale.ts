// The control plane at scale: one real controller (a process) with 2,000 agents
// registering and heartbeating (a lease of a few hundred bytes each, every second):
// heartbeat round-trip p50/p99 and the controller's CPU; then a 500-host session turned
// on: the TurnOn reply and the time until every target is RUNNING in GetSession.
// The agents are in-process fakes (test/integration/support/fake-agent.ts: the Agent
// service and the Registry client of a real agent, without the engine): 2,000 agent
// processes do not fit on a small machine. --quick: 200 agents, a 50-host session.
import { setTimeout as sleep } from 'node:timers/promises';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { IdentityTable } from '../common/grpc-access.js';
import { TargetState } from '../gen/damon/v1/damon.js';
import { FakeAgent } from '../test/integration/support/fake-agent.js';
import { spawnController } from '../test/integration/support/fleet-processes.js';
import { controllerClient, unary, waitFor } from '../test/integration/support/grpc-client.js';
import { freePort, startNatsServer } from '../test/integration/support/nats-server.js';
import { cpuUs, percentile, processCpuS, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const HEARTBEAT_MS = 1000;
const LEASE_MS = 5000;

async function run(b: BenchContext): Promise<BenchResult> {
  const nAgents = b.quick ? 200 : 2000;
  const sessionHosts = b.quick ? 50 : 500;
  const windowS = b.quick ? 3 : 10;
  const hosts = Array.from({ length: nAgents }, (_, i) => `scale-${String(i).padStart(4, '0')}`);
  b.progress('credentials and NATS', 0, 4);
  const nats = await startNatsServer({ agents: hosts });
  const listen = `127.0.0.1:${await freePort()}`;
  const ctl = await spawnController({ listen, nats: nats.url, credentials: nats.credentials, leaseTtlMs: LEASE_MS, heartbeatMs: HEARTBEAT_MS });
  const client = controllerClient(listen, nats.credentials.grpc.operator);
  const agents: FakeAgent[] = [];
  try {
    const t0 = performance.now();
    for (let i = 0; i < nAgents; i += 50) {
      agents.push(
        ...(await Promise.all(
          hosts.slice(i, i + 50).map((host) =>
            new FakeAgent({
              host,
              controller: listen,
              credentials: nats.credentials.grpc.agent(host),
              accept: { identities: IdentityTable.readFile(nats.credentials.layout.agent(host).identities) },
              heartbeatMs: HEARTBEAT_MS,
            }).start(),
          ),
        )),
      );
      b.progress(`${agents.length} agents registered`, 1, 4);
    }
    await waitFor(`${nAgents} agents live`, async () => (await unary(client, 'listAgents', {})).agents.filter((a) => a.live).length === nAgents, 120_000, 500);
    const registerS = (performance.now() - t0) / 1000;

    // Steady state: every agent heartbeating, nothing on.
    await sleep(2 * HEARTBEAT_MS);
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const w0 = performance.now();
    const c0 = processCpuS(ctl.pid);
    const own0 = cpuUs();
    await sleep(windowS * 1000);
    const cpuS = processCpuS(ctl.pid) - c0;
    const ownCpuS = (cpuUs() - own0) / 1e6;
    const w1 = performance.now();
    loopDelay.disable();
    const rtts = agents.flatMap((a) => a.heartbeatTimes.filter((h) => h.at >= w0 && h.at < w1).map((h) => h.ms));
    const expected = (nAgents * windowS * 1000) / HEARTBEAT_MS;
    const live = (await unary(client, 'listAgents', {})).agents.filter((a) => a.live).length;
    b.progress(`heartbeats measured: ${rtts.length} of ${expected}, p50 ${percentile(rtts, 50).toFixed(1)} ms, p99 ${percentile(rtts, 99).toFixed(1)} ms, ${live} live`, 2, 4);
    // Every agent must hold its lease for the session to go on everywhere.
    await waitFor(`${nAgents} agents live`, async () => (await unary(client, 'listAgents', {})).agents.filter((a) => a.live).length === nAgents, 60_000, 200);

    // A session over `sessionHosts` hosts, one target each.
    const id = 'scale-session';
    const chosen = agents.slice(0, sessionHosts);
    await unary(client, 'createSession', {
      id, attrs: undefined, attrsText: '', schemesText: '', operations: 'synthetic', syntheticWorkload: '',
      targets: chosen.map((a, i) => ({ host: a.host, pid: 1000 + i })),
    });
    const s0 = performance.now();
    const on = await unary(client, 'turnOn', { id });
    const turnOnMs = performance.now() - s0;
    await waitFor('every target RUNNING', async () =>
      (await unary(client, 'getSession', { id })).targetStatus.every((t) => t.state === TargetState.TARGET_STATE_RUNNING), 120_000, 20);
    const allRunningMs = performance.now() - s0;
    const runningInReply = on.targetStatus.filter((t) => t.state === TargetState.TARGET_STATE_RUNNING).length;
    b.progress('session on', 3, 4);
    await unary(client, 'turnOff', { id });
    await unary(client, 'deleteSession', { id });
    b.progress('done', 4, 4);

    const heartbeat = {
      agents: nAgents,
      windowS,
      answered: rtts.length,
      expected,
      p50Ms: percentile(rtts, 50),
      p99Ms: percentile(rtts, 99),
      maxMs: Math.max(...rtts),
      controllerCpuPercent: (100 * cpuS) / ((w1 - w0) / 1000),
      controllerCpuUsPerHeartbeat: (cpuS * 1e6) / Math.max(1, rtts.length),
      loadGeneratorCpuPercent: (100 * ownCpuS) / ((w1 - w0) / 1000),
      loadGeneratorLoopDelayP99Ms: loopDelay.percentile(99) / 1e6,
      liveAfter: live,
      registerS,
    };
    const session = { hosts: sessionHosts, turnOnMs, runningInReply, allRunningMs };
    return {
      summary: {
        agents: nAgents,
        heartbeatP50Ms: heartbeat.p50Ms,
        heartbeatP99Ms: heartbeat.p99Ms,
        controllerCpuPercent: heartbeat.controllerCpuPercent,
        sessionHosts,
        turnOnToAllRunningMs: allRunningMs,
      },
      tables: [
        {
          title: `${nAgents} agents heartbeating every ${HEARTBEAT_MS} ms against one controller (${windowS} s window)`,
          columns: ['answered', 'expected', 'p50 ms', 'p99 ms', 'max ms', 'controller CPU %', 'CPU us/heartbeat', 'live after', 'fakes CPU %', 'fakes loop p99 ms'],
          rows: [[heartbeat.answered, heartbeat.expected, heartbeat.p50Ms, heartbeat.p99Ms, heartbeat.maxMs, heartbeat.controllerCpuPercent,
            heartbeat.controllerCpuUsPerHeartbeat, live, heartbeat.loadGeneratorCpuPercent, heartbeat.loadGeneratorLoopDelayP99Ms]],
        },
        {
          title: `a ${sessionHosts}-host session turned on`,
          columns: ['TurnOn reply ms', 'RUNNING in reply', 'all RUNNING ms'],
          rows: [[turnOnMs, runningInReply, allRunningMs]],
        },
      ],
      notes: [
        `The ${nAgents} agents are in-process fakes (test/integration/support/fake-agent.ts) sharing this process's CPU with the benchmark; the controller is a real process.`,
        'Heartbeat round trips include the fakes\' own event-loop delay (its p99 is in the table): on a small machine they are an upper bound of the controller\'s share.',
        'Controller CPU is user + system time from /proc over the window, in percent of one core.',
      ],
      data: { heartbeat, session },
    };
  } finally {
    client.close();
    await Promise.all(agents.map((a) => a.stop()));
    await ctl.stop(3000);
    await nats.stop();
  }
}

export const benchmark: Benchmark = {
  name: 'fleet-scale',
  description: '2,000 agents heartbeating against one controller (fakes), and a 500-host session turned on',
  run,
};
