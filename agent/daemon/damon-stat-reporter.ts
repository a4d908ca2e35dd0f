// DAMON_STAT for this host's sessions: the latest regions of each running target, and every
// DAMON_STAT_REFRESH_MS (as the kernel's module refreshes) the summaries of each target and
// of a session's targets on this host taken together (common/damon-stat.ts), with the
// session's scheme statistics, published as DamonStat on damon.stat.<session>.<host> and
// kept for /metrics.
import { DAMON_STAT_REFRESH_MS, damonStat, type DamonStatSummary as Summary, type StatInput } from '../../common/damon-stat.js';
import { statSubject } from '../../common/subjects.js';
import { errorMessage, StateLog, type Logger } from '../../common/log.js';
import { DamonStat, type DamonStatSummary, type SchemeStats } from '../../gen/damon/v1/damon.js';
import type { AggregationRecord as EngineRecord } from '../records/record.js';

/** What the reporter needs of a NATS connection: a plain publish. */
export interface StatSink {
  publish(subject: string, payload: Uint8Array): void;
}

/** One session's summaries on this host, as last computed. */
export interface SessionStat {
  sessionId: string;
  timeMs: number;
  host: Summary;
  targets: { pid: number; aggregationUs: number; summary: Summary }[];
}

export interface DamonStatReporterOptions {
  host: string;
  instanceId: string;
  log: Logger;
  refreshMs?: number;
  now?: () => number;
  /** A session's scheme statistics on this host, by scheme index (SessionRunner.schemeStats). */
  schemeStats?: (sessionId: string) => SchemeStats[];
}

export class DamonStatReporter {
  private readonly latest = new Map<string, Map<number, StatInput>>();
  private readonly computed = new Map<string, SessionStat>();
  private readonly refreshMs: number;
  private readonly now: () => number;
  private readonly health: StateLog<'ok' | 'failing'>;
  private sink: StatSink | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: DamonStatReporterOptions) {
    this.refreshMs = o.refreshMs ?? DAMON_STAT_REFRESH_MS;
    this.now = o.now ?? Date.now;
    this.health = new StateLog(o.log);
  }

  /** Publishes through `sink` from the next refresh on. */
  setSink(sink: StatSink): void {
    this.sink = sink;
  }

  start(): void {
    this.timer ??= setInterval(() => this.refresh(), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A running target's record, counted over `aggregationUs`. */
  record(sessionId: string, rec: EngineRecord, aggregationUs: number): void {
    let targets = this.latest.get(sessionId);
    if (!targets) this.latest.set(sessionId, (targets = new Map()));
    targets.set(rec.targetId, { regions: rec.regions, aggregationUs });
  }

  /** A target no longer runs: it leaves the summaries at once. */
  targetEnded(sessionId: string, pid: number): void {
    const targets = this.latest.get(sessionId);
    if (!targets?.delete(pid)) return;
    if (targets.size === 0) this.latest.delete(sessionId);
    this.compute(sessionId);
  }

  /** The summaries as last computed, by session. */
  current(): ReadonlyMap<string, SessionStat> {
    return this.computed;
  }

  /** Computes every session's summaries and publishes them; returns what was computed. */
  refresh(): SessionStat[] {
    const out: SessionStat[] = [];
    for (const id of [...this.latest.keys()]) {
      const s = this.compute(id);
      if (s) out.push(s);
    }
    for (const s of out) this.publish(s);
    return out;
  }

  private compute(sessionId: string): SessionStat | undefined {
    const targets = this.latest.get(sessionId);
    const host = targets && damonStat([...targets.values()]);
    if (!targets || !host) {
      this.computed.delete(sessionId);
      return undefined;
    }
    const s: SessionStat = { sessionId, timeMs: this.now(), host, targets: [] };
    for (const [pid, input] of targets) {
      const summary = damonStat([input]);
      if (summary) s.targets.push({ pid, aggregationUs: input.aggregationUs, summary });
    }
    this.computed.set(sessionId, s);
    return s;
  }

  private publish(s: SessionStat): void {
    if (!this.sink) return;
    const msg = DamonStat.encode({
      sessionId: s.sessionId,
      host: this.o.host,
      agentInstance: this.o.instanceId,
      timeNs: BigInt(s.timeMs) * 1_000_000n,
      hostSummary: toProto(s.host),
      targets: s.targets.map((t) => ({ pid: t.pid, aggregationIntervalUs: BigInt(Math.round(t.aggregationUs)), summary: toProto(t.summary) })),
      schemes: this.o.schemeStats?.(s.sessionId) ?? [],
    }).finish();
    try {
      this.sink.publish(statSubject(s.sessionId, this.o.host), msg);
      if (this.health.current === 'failing') this.health.set('ok', 'publishing DAMON_STAT summaries again');
    } catch (err) {
      // A closed connection: the records go on; the summaries wait for the next refresh.
      this.health.set('failing', `cannot publish DAMON_STAT summaries: ${errorMessage(err)}`, 'warn');
    }
  }
}

function toProto(s: Summary): DamonStatSummary {
  return {
    estimatedMemoryBandwidth: BigInt(s.estimatedMemoryBandwidth),
    memoryIdleMsPercentiles: s.memoryIdleMsPercentiles.map((v) => BigInt(v)),
    totalBytes: BigInt(s.totalBytes),
  };
}
