// Gap detection for consumers of aggregation records: per target (session, host, pid) the
// sequence goes 1, 2, 3, ... across agent restarts, so a jump is records missing, and a
// record's dropped_before says how many of those its agent dropped itself (spool full).
// A sequence that goes back is an agent that lost its data directory (loss unknown).
import type { AggregationRecord } from '../gen/damon/v1/damon.js';

type Seen = Pick<AggregationRecord, 'sessionId' | 'host' | 'pid' | 'sequence' | 'startTimeNs' | 'agentInstance' | 'droppedBefore'>;

export type RecordGap =
  /** `count` records before `sequence` never arrived; `droppedByAgent` of them the agent dropped. */
  | { kind: 'missing'; target: string; sequence: bigint; count: bigint; droppedByAgent: bigint }
  /** A record reported missing arrived after all (out of order after a publish retry). */
  | { kind: 'late'; target: string; sequence: bigint }
  /** The same record again. */
  | { kind: 'duplicate'; target: string; sequence: bigint }
  /** The sequence went back (from `previous` to `sequence`): the agent lost its state; an unknown number may be missing. */
  | { kind: 'reset'; target: string; sequence: bigint; previous: bigint }
  /** A new agent instance went on with the sequence: restarted, nothing missing by itself. */
  | { kind: 'restart'; target: string; sequence: bigint; instance: string };

/** Missing ranges remembered per target, to recognise late arrivals. */
const MAX_MISSING_RANGES = 32;
/** Recent records remembered per target, to recognise repeats (a plain subscription sees retried publishes). */
const RECENT = 64;

interface TargetTrack {
  last: bigint;
  instance: string;
  /** sequence -> start time of the latest records. */
  recent: Map<bigint, bigint>;
  /** [from, to] inclusive, oldest first. */
  missing: [bigint, bigint][];
}

/** The target a record belongs to, as gap reports name it. */
export function targetKey(r: Pick<AggregationRecord, 'sessionId' | 'host' | 'pid'>): string {
  return `${r.sessionId}/${r.host}/${r.pid}`;
}

export class RecordGaps {
  private readonly targets = new Map<string, TargetTrack>();
  /** Records known missing so far (late arrivals taken back), and of those dropped by agents. */
  missing = 0n;
  droppedByAgents = 0n;

  /** Takes the next record received; returns what it reveals (nothing for the next in sequence). */
  observe(r: Seen): RecordGap[] {
    const target = targetKey(r);
    const t = this.targets.get(target);
    const out: RecordGap[] = [];
    if (!t) {
      this.targets.set(target, { last: r.sequence, instance: r.agentInstance, recent: new Map([[r.sequence, r.startTimeNs]]), missing: [] });
      return out;
    }
    if (r.sequence <= t.last) {
      if (this.takeLate(t, r.sequence)) out.push({ kind: 'late', target, sequence: r.sequence });
      else if (t.recent.get(r.sequence) === r.startTimeNs) out.push({ kind: 'duplicate', target, sequence: r.sequence });
      else {
        out.push({ kind: 'reset', target, sequence: r.sequence, previous: t.last });
        Object.assign(t, { last: r.sequence, instance: r.agentInstance, recent: new Map([[r.sequence, r.startTimeNs]]), missing: [] });
      }
      return out;
    }
    if (r.agentInstance !== t.instance) out.push({ kind: 'restart', target, sequence: r.sequence, instance: r.agentInstance });
    const count = r.sequence - t.last - 1n;
    if (count > 0n) {
      const droppedByAgent = r.droppedBefore < count ? r.droppedBefore : count;
      out.push({ kind: 'missing', target, sequence: r.sequence, count, droppedByAgent });
      this.missing += count;
      this.droppedByAgents += droppedByAgent;
      t.missing.push([t.last + 1n, r.sequence - 1n]);
      if (t.missing.length > MAX_MISSING_RANGES) t.missing.shift();
    }
    t.last = r.sequence;
    t.instance = r.agentInstance;
    t.recent.set(r.sequence, r.startTimeNs);
    if (t.recent.size > RECENT) t.recent.delete(t.recent.keys().next().value!);
    return out;
  }

  private takeLate(t: TargetTrack, seq: bigint): boolean {
    const i = t.missing.findIndex(([a, b]) => a <= seq && seq <= b);
    if (i < 0) return false;
    const [a, b] = t.missing[i];
    const rest: [bigint, bigint][] = [];
    if (a < seq) rest.push([a, seq - 1n]);
    if (seq < b) rest.push([seq + 1n, b]);
    t.missing.splice(i, 1, ...rest);
    this.missing -= 1n;
    return true;
  }
}

/** One line for a log or a terminal. */
export function describeGap(g: RecordGap): string {
  switch (g.kind) {
    case 'missing': {
      const dropped = g.droppedByAgent > 0n ? ` (${g.droppedByAgent} dropped by the agent, its spool full)` : '';
      return `${g.target}: ${g.count} record(s) missing before #${g.sequence}${dropped}`;
    }
    case 'late':
      return `${g.target}: record #${g.sequence} arrived late (no longer missing)`;
    case 'duplicate':
      return `${g.target}: record #${g.sequence} again (duplicate)`;
    case 'reset':
      return `${g.target}: sequence went back from #${g.previous} to #${g.sequence}: the agent lost its state; records may be missing`;
    case 'restart':
      return `${g.target}: agent restarted (instance ${g.instance}) at #${g.sequence}`;
  }
}
