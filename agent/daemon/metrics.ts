// The agent's Prometheus metrics (docs/metrics.md): its sessions and targets, records
// published, queued and dropped, publish latency, sampling drift, the engine's CPU per
// session, and DAMON_STAT's summaries per target and per (session, host). Read from the
// agent's own state at each scrape; only the latency is observed as records go.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { TargetState } from '../../gen/damon/v1/damon.js';
import type { PublisherStats } from './publisher.js';
import type { EngineCpu, SessionRunner } from './session-runner.js';
import type { ObservedSession } from '../../gen/damon/v1/damon.js';
import type { SessionStat } from './damon-stat-reporter.js';
import type { DamonStatSummary } from '../../common/damon-stat.js';

/** The idle-time percentiles exported to Prometheus (all 101 travel on NATS, in DamonStat). */
export const EXPORTED_IDLE_PERCENTILES = [0, 10, 25, 50, 75, 90, 99, 100] as const;

/** Publish latency buckets, seconds: 0.5 ms to a minute (an outage spools records for longer). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const TARGET_STATE_LABEL: Record<TargetState, string> = {
  [TargetState.TARGET_STATE_UNSPECIFIED]: 'unspecified',
  [TargetState.TARGET_STATE_IDLE]: 'idle',
  [TargetState.TARGET_STATE_PENDING]: 'pending',
  [TargetState.TARGET_STATE_RUNNING]: 'running',
  [TargetState.TARGET_STATE_EXITED]: 'exited',
  [TargetState.TARGET_STATE_FAILED]: 'failed',
  [TargetState.UNRECOGNIZED]: 'unrecognized',
};

/** What the metrics read at each scrape. */
export interface AgentMetricsSources {
  host: string;
  instanceId: string;
  sessions(): SessionRunner[];
  publisher(): PublisherStats;
  damonStat(): ReadonlyMap<string, SessionStat>;
  natsConnected(): boolean;
  registered(): boolean;
}

/** One session as one scrape reads it. */
interface SessionView {
  id: string;
  observed: ObservedSession;
  cpu: EngineCpu;
}

/** The collectors of one scrape run at once: they share one reading of the sessions (each costs a drift computation). */
const VIEW_REUSE_MS = 500;

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly latency: Histogram;
  private view: { at: number; sessions: SessionView[] } | undefined;

  constructor(src: AgentMetricsSources) {
    const sessions = (): SessionView[] => {
      const now = Date.now();
      if (!this.view || now - this.view.at >= VIEW_REUSE_MS) {
        this.view = { at: now, sessions: src.sessions().map((r) => ({ id: r.spec.sessionId, observed: r.observed(), cpu: r.engineCpu() })) };
      }
      return this.view.sessions;
    };
    const register = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void) =>
      new Gauge({ name, help, labelNames, registers: register, collect() { this.reset(); collect(this); } });
    /** A counter whose total the agent keeps (it restarts with the session or the agent). */
    const total = (name: string, help: string, labelNames: string[], collect: (set: (labels: Record<string, string>, v: number) => void) => void) =>
      new Counter({
        name,
        help,
        labelNames,
        registers: register,
        collect() {
          this.reset();
          collect((labels, v) => this.inc(labels, v));
        },
      });

    gauge('damon_fleet_agent_info', 'This agent: its host name and instance id (value 1).', ['host', 'instance'], (g) =>
      g.set({ host: src.host, instance: src.instanceId }, 1),
    );
    gauge('damon_fleet_agent_nats_connected', '1 while the agent is connected to NATS.', [], (g) => g.set(src.natsConnected() ? 1 : 0));
    gauge('damon_fleet_agent_registered', '1 once the controller accepted this agent instance.', [], (g) => g.set(src.registered() ? 1 : 0));
    gauge('damon_fleet_agent_sessions', 'Sessions this agent runs (applied and not stopped).', [], (g) => g.set(sessions().length));
    gauge('damon_fleet_agent_targets', "Targets of this agent's sessions, by state.", ['session', 'state'], (g) => {
      for (const r of sessions()) {
        const counts = new Map<string, number>();
        for (const t of r.observed.targets) counts.set(TARGET_STATE_LABEL[t.state], (counts.get(TARGET_STATE_LABEL[t.state]) ?? 0) + 1);
        for (const [state, n] of counts) g.set({ session: r.id, state }, n);
      }
    });
    total('damon_fleet_agent_records_published_total', 'Records of a session acknowledged by JetStream (since the session started on this agent).', ['session'], (set) => {
      for (const r of sessions()) set({ session: r.id }, Number(r.observed.recordsPublished));
    });
    gauge('damon_fleet_agent_records_queued', 'Records in the spool: waiting for NATS or for their acknowledgement.', [], (g) => g.set(src.publisher().queued));
    gauge('damon_fleet_agent_spool_bytes', 'Bytes of records in the spool.', [], (g) => g.set(src.publisher().spooledBytes));
    total('damon_fleet_agent_records_dropped_total', 'Records dropped because the spool was full or could not take them (since the agent started).', [], (set) =>
      set({}, src.publisher().dropped),
    );
    this.latency = new Histogram({
      name: 'damon_fleet_agent_publish_latency_seconds',
      help: 'From the end of an aggregation (the record handed to the publisher) to its JetStream acknowledgement.',
      buckets: LATENCY_BUCKETS,
      registers: register,
    });
    const interval = (which: 'configured' | 'measured', help: string) =>
      gauge(`damon_fleet_agent_interval_${which}_seconds`, help, ['session', 'interval'], (g) => {
        for (const r of sessions()) {
          const o = r.observed;
          const v =
            which === 'configured'
              ? { sampling: Number(o.samplingIntervalUs), aggregation: Number(o.aggregationIntervalUs) }
              : { sampling: o.samplingIntervalMeanUs, aggregation: o.aggregationIntervalMeanUs };
          // 0: not measured yet (or never run).
          if (v.sampling > 0) g.set({ session: r.id, interval: 'sampling' }, v.sampling / 1e6);
          if (v.aggregation > 0) g.set({ session: r.id, interval: 'aggregation' }, v.aggregation / 1e6);
        }
      });
    interval('configured', 'The sampling and aggregation intervals the engine runs with (as set, or as an intervals goal tuned them).');
    interval('measured', 'The mean real length of recent sampling and aggregation intervals (drift: measured / configured).');
    total(
      'damon_fleet_agent_engine_cpu_seconds_total',
      "CPU the engine used for a session: thread=\"sampler\" the native sampler's thread (page_idle), \"kdamond\" the kernel's kdamond thread, \"js\" the process while its JavaScript steps ran.",
      ['session', 'thread'],
      (set) => {
        for (const { id, cpu } of sessions()) {
          if (cpu.thread) set({ session: id, thread: cpu.thread }, cpu.threadSeconds);
          set({ session: id, thread: 'js' }, cpu.jsSeconds);
        }
      },
    );

    const perHost = (s: SessionStat) => ({ session: s.sessionId, host: src.host });
    const summaries = (scope: 'host' | 'target', each: (labels: Record<string, string>, sum: DamonStatSummary) => void) => {
      for (const s of src.damonStat().values()) {
        if (scope === 'host') each(perHost(s), s.host);
        else for (const t of s.targets) each({ ...perHost(s), pid: String(t.pid) }, t.summary);
      }
    };
    for (const scope of ['host', 'target'] as const) {
      const prefix = scope === 'host' ? 'damon_fleet_stat' : 'damon_fleet_stat_target';
      const of = scope === 'host' ? "a session's targets on a host, taken together" : 'one target';
      const labels = scope === 'host' ? ['session', 'host'] : ['session', 'host', 'pid'];
      gauge(`${prefix}_memory_bandwidth_bytes_per_second`, `DAMON_STAT estimated_memory_bandwidth of ${of}.`, labels, (g) =>
        summaries(scope, (l, s) => g.set(l, s.estimatedMemoryBandwidth)),
      );
      gauge(`${prefix}_memory_idle_seconds`, `DAMON_STAT memory_idle_ms_percentiles of ${of}: the idle time of the byte at that quantile, least idle first.`, [...labels, 'quantile'], (g) =>
        summaries(scope, (l, s) => {
          for (const p of EXPORTED_IDLE_PERCENTILES) g.set({ ...l, quantile: String(p / 100) }, s.memoryIdleMsPercentiles[p] / 1000);
        }),
      );
      gauge(`${prefix}_monitored_bytes`, `Bytes the regions of ${of} cover.`, labels, (g) => summaries(scope, (l, s) => g.set(l, s.totalBytes)));
    }
  }

  /** A record acknowledged `seconds` after it was handed over. */
  observePublish(seconds: number): void {
    this.latency.observe(seconds);
  }
}
