// /metrics of a real controller and real agents (processes, --metrics on a free loopback
// port), scraped as Prometheus does while a session runs: the series exist and move
// (records published go up, sessions and targets by state count right), DAMON_STAT's
// summaries appear per target and per host and also arrive on NATS, and they go away
// when the session turns off. A metrics port already taken stops a start with exit 1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import { statFilter, statOnSubject } from '../../common/subjects.js';
import { IDLE_PERCENTILES } from '../../common/damon-stat.js';
import { EXPORTED_IDLE_PERCENTILES } from '../../agent/daemon/metrics.js';
import { DamonStat } from '../../gen/damon/v1/damon.js';
import { FAST_ATTRS, tempDir } from './support/agent-env.js';
import { FLEET_BIN } from './support/fleet-processes.js';
import { unary, waitFor } from './support/grpc-client.js';
import { metricsAddressOf, samples, scrape, valueOf } from './support/metrics-scrape.js';
import { sessionOn, useFleet } from './support/system-env.js';

const A = 'metrics-1';
const B = 'metrics-2';
const ON = 'metrics-on';
const OFF = 'metrics-off';

/** Runs `damon-fleet <args>` to its exit; its code and stderr. */
function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [FLEET_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.once('exit', (code) => resolve({ code, stderr }));
  });
}

describe('metrics of a real controller and two agents', () => {
  const env = useFleet([A, B], { controller: ['--metrics', '127.0.0.1:0'], agent: ['--metrics', '127.0.0.1:0'] });

  test('series exist, count right and move; DAMON_STAT per target and per host, on NATS too; gone when off', { timeout: 90_000 }, async () => {
    const { fleet } = env;
    const controller = metricsAddressOf(fleet.controller);
    const agentA = metricsAddressOf(fleet.agents.get(A)!);
    const agentB = metricsAddressOf(fleet.agents.get(B)!);

    let c = await scrape(controller);
    assert.equal(valueOf(c, 'damon_fleet_controller_leader'), 1);
    assert.equal(valueOf(c, 'damon_fleet_controller_agents_live'), 2);
    assert.equal(valueOf(c, 'damon_fleet_controller_sessions', { state: 'on' }), 0);
    assert.ok(valueOf(c, 'process_cpu_seconds_total')! >= 0, 'process metrics');
    assert.equal((await fetch(`http://${controller}/other`)).status, 404);
    assert.equal((await fetch(`http://${controller}/metrics`, { method: 'POST' })).status, 405);

    const stats: DamonStat[] = [];
    const sub = fleet.nc.subscribe(statFilter(ON));
    void (async () => {
      for await (const m of sub) stats.push(statOnSubject(DamonStat.decode(m.data), m.subject));
    })();
    await fleet.nc.flush();

    const pids = [fleet.target().pid, fleet.target().pid];
    await sessionOn(fleet, ON, pids.map((pid) => ({ host: A, pid })));
    await unary(fleet.client, 'createSession', { id: OFF, attrs: { ...FAST_ATTRS }, attrsText: '', schemesText: '', targets: [{ host: B, pid: fleet.target().pid }], operations: 'synthetic', syntheticWorkload: 'hot5' });

    // Controller: sessions and targets by state.
    c = await waitFor('the controller counting the running targets', async () => {
      const s = await scrape(controller);
      return valueOf(s, 'damon_fleet_controller_session_targets', { state: 'running' }) === 2 ? s : undefined;
    }, 15_000);
    assert.equal(valueOf(c, 'damon_fleet_controller_sessions', { state: 'on' }), 1);
    assert.equal(valueOf(c, 'damon_fleet_controller_sessions', { state: 'off' }), 1);

    // Agent A: records published going up, targets by state, latency, intervals, CPU.
    const published = async () => valueOf(await scrape(agentA), 'damon_fleet_agent_records_published_total', { session: ON }) ?? 0;
    const p1 = await waitFor('records published', async () => ((await published()) > 0 ? published() : undefined), 15_000);
    await waitFor('records published going up', async () => (await published()) > p1, 15_000);
    let a = await scrape(agentA);
    assert.equal(valueOf(a, 'damon_fleet_agent_sessions'), 1);
    assert.equal(valueOf(a, 'damon_fleet_agent_targets', { session: ON, state: 'running' }), 2);
    assert.equal(valueOf(a, 'damon_fleet_agent_nats_connected'), 1);
    assert.equal(valueOf(a, 'damon_fleet_agent_registered'), 1);
    assert.ok(valueOf(a, 'damon_fleet_agent_publish_latency_seconds_count')! > 0);
    assert.equal(valueOf(a, 'damon_fleet_agent_interval_configured_seconds', { session: ON, interval: 'aggregation' }), 0.2);
    assert.equal(valueOf(a, 'damon_fleet_agent_interval_configured_seconds', { session: ON, interval: 'sampling' }), 0.01);
    const measured = valueOf(a, 'damon_fleet_agent_interval_measured_seconds', { session: ON, interval: 'aggregation' })!;
    assert.ok(measured > 0.1 && measured < 2, `measured aggregation interval ${measured} s`);
    assert.ok(valueOf(a, 'damon_fleet_agent_engine_cpu_seconds_total', { session: ON, thread: 'js' })! > 0, 'the synthetic engine runs in JavaScript');
    assert.equal(valueOf(await scrape(agentB), 'damon_fleet_agent_sessions'), 0, 'the off session runs nowhere');

    // DAMON_STAT: per target and per host, after its first refresh (5 s).
    a = await waitFor('DAMON_STAT summaries', async () => {
      const s = await scrape(agentA);
      return samples(s, 'damon_fleet_stat_target_memory_bandwidth_bytes_per_second', { session: ON }).length === 2 ? s : undefined;
    }, 20_000);
    for (const pid of pids) {
      const idle = samples(a, 'damon_fleet_stat_target_memory_idle_seconds', { session: ON, host: A, pid: String(pid) });
      assert.deepEqual(idle.map((x) => Number(x.labels.quantile)), EXPORTED_IDLE_PERCENTILES.map((p) => p / 100));
      const values = idle.map((x) => x.value);
      assert.deepEqual(values, [...values].sort((x, y) => x - y), 'percentiles never go down');
      assert.ok(valueOf(a, 'damon_fleet_stat_target_monitored_bytes', { session: ON, pid: String(pid) })! > 0);
    }
    const hostBw = valueOf(a, 'damon_fleet_stat_memory_bandwidth_bytes_per_second', { session: ON, host: A })!;
    const targetBw = samples(a, 'damon_fleet_stat_target_memory_bandwidth_bytes_per_second', { session: ON }).reduce((x, s) => x + s.value, 0);
    // The host's is the targets' access bytes summed, then divided: at most one byte per target more.
    assert.ok(hostBw >= targetBw && hostBw <= targetBw + 2, `host ${hostBw}, targets ${targetBw}`);
    assert.ok(hostBw > 0, 'the hot5 workload is accessed');

    // The same summaries on NATS, all 101 percentiles, the scraped value among them.
    const msg = await waitFor('a DamonStat with the scraped host bandwidth', () => stats.find((m) => Number(m.hostSummary!.estimatedMemoryBandwidth) === hostBw), 15_000);
    assert.equal(msg.host, A);
    assert.equal(msg.agentInstance, fleet.agents.get(A)!.instanceId);
    assert.deepEqual(msg.targets.map((t) => t.pid).sort(), [...pids].sort());
    assert.equal(msg.hostSummary!.memoryIdleMsPercentiles.length, IDLE_PERCENTILES);
    assert.equal(msg.hostSummary!.totalBytes, msg.targets.reduce((x, t) => x + t.summary!.totalBytes, 0n));
    for (const t of msg.targets) assert.equal(t.aggregationIntervalUs, FAST_ATTRS.aggregationIntervalUs);
    sub.unsubscribe();

    // Off: the controller counts it off, the agent runs nothing and its DAMON_STAT series are gone.
    await unary(fleet.client, 'turnOff', { id: ON });
    c = await scrape(controller);
    assert.equal(valueOf(c, 'damon_fleet_controller_sessions', { state: 'on' }), 0);
    assert.equal(valueOf(c, 'damon_fleet_controller_sessions', { state: 'off' }), 2);
    a = await waitFor('the agent without the session', async () => {
      const s = await scrape(agentA);
      return valueOf(s, 'damon_fleet_agent_sessions') === 0 ? s : undefined;
    }, 15_000);
    assert.deepEqual(samples(a, 'damon_fleet_stat_memory_bandwidth_bytes_per_second'), []);
    assert.deepEqual(samples(a, 'damon_fleet_stat_target_memory_idle_seconds'), []);
    assert.ok(valueOf(a, 'damon_fleet_agent_publish_latency_seconds_count')! > 0, 'the histogram keeps what it saw');
  });

  test('a metrics address already taken: the process says so and exits 1 (also while NATS is away)', { timeout: 60_000 }, async () => {
    const { fleet } = env;
    const taken = metricsAddressOf(fleet.controller);
    const data = tempDir('damon-metrics-');
    try {
      const agent = await run(['agent', '--host', 'metrics-x', '--controller', '127.0.0.1:1', '--insecure', '--listen', '127.0.0.1:0',
        '--nats', 'nats://127.0.0.1:1', '--data-dir', data.path, '--metrics', taken]);
      assert.equal(agent.code, 1, agent.stderr);
      assert.match(agent.stderr, new RegExp(`cannot start: --metrics ${taken}: listen EADDRINUSE`));
      const controller = await run(['controller', '--listen', '127.0.0.1:0', '--insecure', '--nats', fleet.nats.url,
        '--nats-nkey', fleet.creds.controller, '--metrics', taken]);
      assert.equal(controller.code, 1, controller.stderr);
      assert.match(controller.stderr, new RegExp(`cannot start: --metrics ${taken}: listen EADDRINUSE`));
    } finally {
      data.remove();
    }
  });
});
