// What `watch` knows about a session: the session as the controller last answered, and per
// target (host:pid) its latest record, how many came, how many are missing (sequence gaps)
// and the real length of its recent aggregation intervals, to set against the configured
// one (the sampling drift). Pure: the view draws from summaries().
import type { AggregationRecord, Session } from '../gen/damon/v1/damon.js';
import type { AggregationRecord as EngineRecord } from '../agent/records/record.js';
import { DEFAULT_WORKING_SET_THRESHOLD, hottestRanges, monitoredBytes, workingSetBytes } from '../agent/engine/working-set.js';
import { RecordGaps } from '../common/record-gaps.js';
import { statusOf, targetStateName } from './fleet-text.js';

/** Aggregation intervals the real length is averaged over. */
export const DRIFT_WINDOW = 10;

/** One address range as watch shows it. */
export interface RangeSummary {
  start: number;
  end: number;
  bytes: number;
  /** nr_accesses / max_nr_accesses: the share of samples that found it accessed. */
  frequency: number;
  /** How long it has kept this frequency: age x aggregation interval. */
  forUs: number;
}

export interface TargetSummary {
  host: string;
  pid: number;
  /** idle, pending, running, exited, failed (as the session reports), or "-" when the session does not list it. */
  state: string;
  operations: string;
  message: string;
  records: number;
  lastSequence: bigint;
  /** Records known missing (sequence gaps), and of those dropped by the agent itself. */
  missing: bigint;
  droppedByAgent: bigint;
  /** Received at (ms since the epoch); 0 before the first record. */
  lastAtMs: number;
  /** The latest record, in the engine's form (numbers), for the heat strip. */
  record?: EngineRecord;
  regions: number;
  monitoredBytes: number;
  workingSetBytes: number;
  hottest: RangeSummary[];
  coldest: RangeSummary[];
  /** Mean real aggregation interval of the last DRIFT_WINDOW records, and the configured one. */
  realAggregationUs?: number;
  configuredAggregationUs?: number;
  /** The sampling interval of the latest record (as tuned by an intervals goal), when it says. */
  samplingUs?: number;
}

interface TargetTrack {
  host: string;
  pid: number;
  records: number;
  last?: AggregationRecord;
  lastAtMs: number;
  /** Real lengths (us) of the latest aggregation intervals, oldest first. */
  lengthsUs: number[];
  missing: bigint;
  droppedByAgent: bigint;
}

/** A record in the engine's form: the summaries and the heat strip are computed on it. */
export function toEngineRecord(r: AggregationRecord): EngineRecord {
  return {
    targetId: r.pid,
    startNs: r.startTimeNs,
    endNs: r.endTimeNs,
    maxNrAccesses: r.maxNrAccesses,
    ...(r.samplingIntervalUs !== undefined && { samplingUs: Number(r.samplingIntervalUs) }),
    regions: r.regions.map((g) => ({ start: Number(g.start), end: Number(g.end), nrAccesses: g.nrAccesses, age: g.age })),
  };
}

/** The `n` coldest ranges: fewest accesses first, then the longest so, then the larger, then the lower address. */
export function coldestRanges(rec: EngineRecord, n: number): EngineRecord['regions'] {
  return [...rec.regions]
    .sort((a, b) => a.nrAccesses - b.nrAccesses || b.age - a.age || (b.end - b.start) - (a.end - a.start) || a.start - b.start)
    .slice(0, n);
}

export class WatchModel {
  private readonly tracks = new Map<string, TargetTrack>();
  private readonly gaps = new RecordGaps();
  session: Session | undefined;
  /** What went wrong last with the controller or the feed (shown until things work again). */
  problem = '';

  constructor(readonly sessionId: string, private readonly host?: string) {}

  setSession(s: Session): void {
    this.session = s;
  }

  private track(host: string, pid: number): TargetTrack {
    const key = `${host}:${pid}`;
    let t = this.tracks.get(key);
    if (!t) {
      t = { host, pid, records: 0, lastAtMs: 0, lengthsUs: [], missing: 0n, droppedByAgent: 0n };
      this.tracks.set(key, t);
    }
    return t;
  }

  addRecord(r: AggregationRecord, nowMs: number): void {
    if (r.sessionId !== this.sessionId) return;
    const t = this.track(r.host, r.pid);
    for (const g of this.gaps.observe(r)) {
      if (g.kind === 'missing') {
        t.missing += g.count;
        t.droppedByAgent += g.droppedByAgent;
      } else if (g.kind === 'late' && t.missing > 0n) {
        t.missing -= 1n;
      } else if (g.kind === 'duplicate') {
        return;
      }
    }
    t.records++;
    if (t.last === undefined || r.endTimeNs >= t.last.endTimeNs) t.last = r;
    t.lastAtMs = nowMs;
    t.lengthsUs.push(Number(r.endTimeNs - r.startTimeNs) / 1000);
    if (t.lengthsUs.length > DRIFT_WINDOW) t.lengthsUs.shift();
  }

  /** The session's targets in its order (the --host ones only), then any others records came from. */
  summaries(top: number): TargetSummary[] {
    const keys: string[] = [];
    for (const t of this.session?.targets ?? []) {
      if (this.host === undefined || t.host === this.host) keys.push(`${t.host}:${t.pid}`);
    }
    for (const k of this.tracks.keys()) if (!keys.includes(k)) keys.push(k);
    return keys.map((k) => {
      const i = k.lastIndexOf(':');
      return this.summary(this.tracks.get(k) ?? this.track(k.slice(0, i), Number(k.slice(i + 1))), top);
    });
  }

  private configuredAggregationUs(r: AggregationRecord): number | undefined {
    // An intervals goal tunes the sampling interval; the aggregation keeps max_nr_accesses samples.
    if (r.samplingIntervalUs !== undefined) return Number(r.samplingIntervalUs) * r.maxNrAccesses;
    const a = this.session?.attrs?.aggregationIntervalUs;
    return a ? Number(a) : undefined;
  }

  private summary(t: TargetTrack, top: number): TargetSummary {
    const st = this.session ? statusOf(this.session, t.host, t.pid) : undefined;
    const base: TargetSummary = {
      host: t.host,
      pid: t.pid,
      state: st ? targetStateName(st.state) : '-',
      operations: st?.operations || t.last?.operations || '',
      message: st?.message ?? '',
      records: t.records,
      lastSequence: t.last?.sequence ?? 0n,
      missing: t.missing,
      droppedByAgent: t.droppedByAgent,
      lastAtMs: t.lastAtMs,
      regions: 0,
      monitoredBytes: 0,
      workingSetBytes: 0,
      hottest: [],
      coldest: [],
    };
    if (!t.last || t.last.maxNrAccesses <= 0) return base;
    const rec = toEngineRecord(t.last);
    const configured = this.configuredAggregationUs(t.last);
    const forUs = (age: number) => age * (configured ?? Number(t.last!.endTimeNs - t.last!.startTimeNs) / 1000);
    const range = (r: { start: number; end: number; nrAccesses: number; age: number }): RangeSummary => ({
      start: r.start,
      end: r.end,
      bytes: r.end - r.start,
      frequency: r.nrAccesses / rec.maxNrAccesses,
      forUs: forUs(r.age),
    });
    return {
      ...base,
      record: rec,
      regions: rec.regions.length,
      monitoredBytes: monitoredBytes(rec),
      workingSetBytes: workingSetBytes(rec, DEFAULT_WORKING_SET_THRESHOLD),
      hottest: hottestRanges(rec, top).map(range),
      coldest: coldestRanges(rec, top).map(range),
      realAggregationUs: t.lengthsUs.reduce((s, x) => s + x, 0) / t.lengthsUs.length,
      configuredAggregationUs: configured,
      samplingUs: rec.samplingUs,
    };
  }
}
