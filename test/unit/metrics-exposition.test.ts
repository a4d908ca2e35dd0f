// The metrics as Prometheus reads them, without processes: the agent's DAMON_STAT, drift
// and CPU series from hand-made state; the Grafana dashboard (deploy/grafana) parses and
// its every PromQL expression names only metrics the code exports; the scrape
// configuration (deploy/prometheus) parses and scrapes the ports the docs suggest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { Registry } from 'prom-client';
import { AgentMetrics, EXPORTED_IDLE_PERCENTILES } from '../../agent/daemon/metrics.js';
import type { SessionRunner } from '../../agent/daemon/session-runner.js';
import type { SessionStat } from '../../agent/daemon/damon-stat-reporter.js';
import { ControllerMetrics } from '../../controller/metrics.js';
import { SUGGESTED_METRICS_PORTS, parseMetricsAddress } from '../../common/metrics-server.js';
import { OptionError } from '../../common/cli-values.js';
import { silentLogger } from '../../common/log.js';
import { TargetState, type ObservedSession } from '../../gen/damon/v1/damon.js';
import { parseExposition, valueOf, samples } from '../support/prometheus-text.js';

const root = new URL('../../../', import.meta.url);

function fakeRunner(id: string, o: Partial<ObservedSession>, cpu: ReturnType<SessionRunner['engineCpu']>): SessionRunner {
  const observed: ObservedSession = {
    sessionId: id,
    generation: 1n,
    running: true,
    targets: [],
    samplingIntervalMeanUs: 0,
    aggregationIntervalMeanUs: 0,
    recordsPublished: 0n, schemeStats: [],
    samplingIntervalUs: 0n,
    aggregationIntervalUs: 0n,
    ...o,
  };
  return { spec: { sessionId: id }, observed: () => observed, engineCpu: () => cpu } as unknown as SessionRunner;
}

const pct = (f: (p: number) => number) => Array.from({ length: 101 }, (_, p) => f(p));
const STAT: SessionStat = {
  sessionId: 's1',
  timeMs: 0,
  host: { estimatedMemoryBandwidth: 81_920, memoryIdleMsPercentiles: pct((p) => (p <= 25 ? 0 : p <= 50 ? 100 : 500)), totalBytes: 16_384 },
  targets: [{ pid: 42, aggregationUs: 100_000, summary: { estimatedMemoryBandwidth: 81_920, memoryIdleMsPercentiles: pct((p) => p * 10), totalBytes: 16_384 } }],
};

function agentMetrics(): AgentMetrics {
  const runner = fakeRunner(
    's1',
    {
      targets: [
        { pid: 42, state: TargetState.TARGET_STATE_RUNNING, operations: 'page_idle', message: '' },
        { pid: 43, state: TargetState.TARGET_STATE_EXITED, operations: 'page_idle', message: 'process exited' },
      ],
      recordsPublished: 17n,
      samplingIntervalUs: 5_000n,
      aggregationIntervalUs: 100_000n,
      samplingIntervalMeanUs: 5_500,
      aggregationIntervalMeanUs: 110_000,
    },
    { thread: 'sampler', threadSeconds: 1.5, jsSeconds: 0.25 },
  );
  return new AgentMetrics({
    host: 'db1',
    instanceId: 'i-1',
    sessions: () => [runner],
    publisher: () => ({ published: 17, dropped: 3, queued: 5, spooledBytes: 1234 }),
    damonStat: () => new Map([['s1', STAT]]),
    natsConnected: () => true,
    registered: () => false,
  });
}

function controllerMetrics(): ControllerMetrics {
  const session = (id: string, state: 'on' | 'off', targets: string[]) => ({ session: { id, state, targetStatus: targets.map((t) => ({ state: t })) }, revision: 1 });
  return new ControllerMetrics({
    scan: async () => ({ sessions: [session('a', 'on', ['running', 'exited']), session('b', 'off', ['idle'])], quarantined: [], seq: 1 }) as never,
    agents: () => [{ live: true }, { live: false }],
    leading: () => true,
    natsConnected: () => true,
    log: silentLogger,
  });
}

test('agent: DAMON_STAT per target and per host, drift, CPU per session, records and spool, as Prometheus reads them', async () => {
  const m = agentMetrics();
  m.observePublish(0.003);
  const s = parseExposition(await m.registry.metrics());
  assert.equal(valueOf(s, 'damon_fleet_stat_memory_bandwidth_bytes_per_second', { session: 's1', host: 'db1' }), 81_920);
  assert.equal(valueOf(s, 'damon_fleet_stat_memory_idle_seconds', { session: 's1', host: 'db1', quantile: '0.5' }), 0.1);
  assert.equal(valueOf(s, 'damon_fleet_stat_memory_idle_seconds', { session: 's1', host: 'db1', quantile: '0.75' }), 0.5);
  const idle = samples(s, 'damon_fleet_stat_target_memory_idle_seconds', { session: 's1', host: 'db1', pid: '42' });
  assert.deepEqual(idle.map((x) => [x.labels.quantile, x.value]), EXPORTED_IDLE_PERCENTILES.map((p) => [String(p / 100), p / 100]));
  assert.equal(valueOf(s, 'damon_fleet_stat_target_monitored_bytes', { pid: '42' }), 16_384);
  assert.equal(valueOf(s, 'damon_fleet_agent_interval_measured_seconds', { session: 's1', interval: 'aggregation' }), 0.11);
  assert.equal(valueOf(s, 'damon_fleet_agent_interval_configured_seconds', { session: 's1', interval: 'sampling' }), 0.005);
  assert.equal(valueOf(s, 'damon_fleet_agent_engine_cpu_seconds_total', { session: 's1', thread: 'sampler' }), 1.5);
  assert.equal(valueOf(s, 'damon_fleet_agent_engine_cpu_seconds_total', { session: 's1', thread: 'js' }), 0.25);
  assert.equal(valueOf(s, 'damon_fleet_agent_targets', { session: 's1', state: 'running' }), 1);
  assert.equal(valueOf(s, 'damon_fleet_agent_targets', { session: 's1', state: 'exited' }), 1);
  assert.equal(valueOf(s, 'damon_fleet_agent_records_published_total', { session: 's1' }), 17);
  assert.equal(valueOf(s, 'damon_fleet_agent_records_dropped_total'), 3);
  assert.equal(valueOf(s, 'damon_fleet_agent_records_queued'), 5);
  assert.equal(valueOf(s, 'damon_fleet_agent_publish_latency_seconds_bucket', { le: '0.005' }), 1);
  assert.equal(valueOf(s, 'damon_fleet_agent_registered'), 0);
  // A second scrape reports the same totals (not added twice).
  const again = parseExposition(await m.registry.metrics());
  assert.equal(valueOf(again, 'damon_fleet_agent_records_published_total', { session: 's1' }), 17);
});

test('controller: sessions and the targets of sessions that are on, by state; agents live', async () => {
  const s = parseExposition(await controllerMetrics().registry.metrics());
  assert.equal(valueOf(s, 'damon_fleet_controller_sessions', { state: 'on' }), 1);
  assert.equal(valueOf(s, 'damon_fleet_controller_sessions', { state: 'off' }), 1);
  assert.equal(valueOf(s, 'damon_fleet_controller_session_targets', { state: 'running' }), 1);
  assert.equal(valueOf(s, 'damon_fleet_controller_session_targets', { state: 'idle' }), undefined, 'targets of an off session are not counted');
  assert.equal(valueOf(s, 'damon_fleet_controller_agents_live'), 1);
  assert.equal(valueOf(s, 'damon_fleet_controller_agents_registered'), 2);
});

/** Every series name a registry exposes (histograms as _bucket, _sum, _count). */
async function exported(...registries: Registry[]): Promise<Set<string>> {
  const names = new Set<string>();
  for (const r of registries) {
    for (const m of await r.getMetricsAsJSON()) {
      if (m.type === ('histogram' as never)) for (const suffix of ['_bucket', '_sum', '_count']) names.add(m.name + suffix);
      else names.add(m.name);
    }
  }
  return names;
}

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/** The metric names a PromQL expression selects (functions, keywords, labels, strings and Grafana variables left out). */
function metricNamesIn(expr: string): string[] {
  const e = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\$\{[^}]*\}|\$\w+/g, '')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const m of e.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    if (e.slice(m.index + m[0].length).trimStart().startsWith('(')) continue; // a function
    if (PROMQL_WORDS.has(m[0].toLowerCase())) continue;
    if (m.index > 0 && /[0-9.]/.test(e[m.index - 1])) continue; // 1e3
    names.push(m[0]);
  }
  return names;
}

test('the PromQL name reader: metrics only, whatever surrounds them', () => {
  assert.deepEqual(
    metricNamesIn('histogram_quantile(0.99, sum by (le, session) (rate(a_bucket{session=~"$session",x="by(y)"}[$__rate_interval]))) / ignoring(le) b_total offset 5m > 1e3'),
    ['a_bucket', 'b_total'],
  );
  assert.deepEqual(metricNamesIn('topk(10, no_such_metric)'), ['no_such_metric']);
});

test('the Grafana dashboard parses and its every expression names only exported metrics', async () => {
  const dash = JSON.parse(readFileSync(new URL('deploy/grafana/damon-fleet.json', root), 'utf8')) as {
    panels: { type: string; title: string; targets?: { expr: string }[] }[];
    templating: { list: { type: string; name: string; definition?: string }[] };
  };
  const names = await exported(agentMetrics().registry, controllerMetrics().registry);
  const used = new Set<string>();
  const check = (where: string, expr: string) => {
    const found = metricNamesIn(expr);
    assert.ok(found.length > 0, `${where}: no metric in ${expr}`);
    for (const n of found) {
      assert.ok(names.has(n), `${where}: ${n} is not a metric damon-fleet exports`);
      used.add(n);
    }
  };
  const panels = dash.panels.filter((p) => p.type !== 'row');
  assert.ok(panels.length > 10);
  for (const p of panels) {
    assert.ok(p.targets && p.targets.length > 0, `panel ${p.title}: no query`);
    for (const t of p.targets) check(`panel ${p.title}`, t.expr);
  }
  for (const v of dash.templating.list.filter((x) => x.type === 'query')) {
    const m = /^label_values\(([^,]+),\s*\w+\)$/.exec(v.definition ?? '');
    assert.ok(m, `variable ${v.name}: ${v.definition}`);
    check(`variable ${v.name}`, m[1]);
  }
  // What operators were promised: each has a panel.
  for (const n of [
    'damon_fleet_controller_sessions',
    'damon_fleet_controller_agents_live',
    'damon_fleet_agent_records_published_total',
    'damon_fleet_agent_records_queued',
    'damon_fleet_agent_records_dropped_total',
    'damon_fleet_agent_publish_latency_seconds_bucket',
    'damon_fleet_agent_interval_measured_seconds',
    'damon_fleet_agent_engine_cpu_seconds_total',
    'damon_fleet_stat_memory_bandwidth_bytes_per_second',
    'damon_fleet_stat_target_memory_bandwidth_bytes_per_second',
    'damon_fleet_stat_memory_idle_seconds',
    'damon_fleet_stat_target_memory_idle_seconds',
  ]) {
    assert.ok(used.has(n), `no panel shows ${n}`);
  }
});

test('the scrape configuration parses and scrapes the suggested ports', () => {
  const conf = parseYaml(readFileSync(new URL('deploy/prometheus/prometheus.yml', root), 'utf8')) as {
    scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
  };
  const job = (name: string) => conf.scrape_configs.find((j) => j.job_name === name)!.static_configs.flatMap((c) => c.targets);
  assert.deepEqual(job('damon-fleet-controller'), [`127.0.0.1:${SUGGESTED_METRICS_PORTS.controller}`]);
  assert.deepEqual(job('damon-fleet-agent'), [`127.0.0.1:${SUGGESTED_METRICS_PORTS.agent}`]);
});

test('--metrics: HOST:PORT or a bare port on loopback; no address means no default', () => {
  assert.deepEqual(parseMetricsAddress('7103'), { host: '127.0.0.1', port: 7103 });
  assert.deepEqual(parseMetricsAddress('10.0.0.7:7103'), { host: '10.0.0.7', port: 7103 });
  assert.deepEqual(parseMetricsAddress('[::1]:7103'), { host: '::1', port: 7103 });
  assert.deepEqual(parseMetricsAddress('0.0.0.0:0'), { host: '0.0.0.0', port: 0 });
  assert.throws(() => parseMetricsAddress(':7103'), (e) => e instanceof OptionError && /name the address/.test(e.message));
  assert.throws(() => parseMetricsAddress('70000'), /port out of range/);
  assert.throws(() => parseMetricsAddress('host:port'), /expected HOST:PORT/);
});
