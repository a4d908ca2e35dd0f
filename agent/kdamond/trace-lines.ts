// Lines of a tracefs trace_pipe with the damon:damon_aggregated event, and their assembly
// into one aggregation record per target. The kernel (mm/damon/core.c,
// kdamond_reset_aggregated) emits one event per region, target by target, in address
// order, each carrying the target's index in the context and its number of regions:
//
//   kdamond.0-812     [001] .....  5012.345678: damon_aggregated: target_id=0 nr_regions=14 139625753477120-139625760739328: 3 0
//
// (task-pid, [cpu], flags, timestamp in seconds of the instance's trace clock, then
// "target_id=<index> nr_regions=<n> <start>-<end>: <nr_accesses> <age>").
import type { RegionRecord } from '../records/record.js';

/** A line that claims to be a damon_aggregated event but does not read as one. */
export class TraceFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TraceFormatError';
  }
}

export interface AggregatedEvent {
  kind: 'aggregated';
  /** The emitting task's pid: the kdamond thread. */
  pid: number;
  /** Trace clock time in nanoseconds (microsecond resolution in the text). */
  tsNs: bigint;
  targetId: number;
  nrRegions: number;
  start: number;
  end: number;
  nrAccesses: number;
  age: number;
}

export type TraceLine =
  | AggregatedEvent
  /** "CPU:1 [LOST 42 EVENTS]": the ring buffer overflowed before we read it. */
  | { kind: 'lost'; cpu: number; count: number }
  | { kind: 'other' };

const HEADER = /^\s*(?<comm>.+)-(?<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?<cpu>\d+)\]\s+(?:\S+\s+)?(?<sec>\d+)\.(?<frac>\d+):\s+damon_aggregated:\s*(?<body>.*)$/;
const BODY = /^target_id=(\d+) nr_regions=(\d+) (\d+)-(\d+): (\d+) (\d+)$/;
const LOST = /^CPU:(\d+) \[LOST (\d+) EVENTS\]$/;

function safeInt(text: string, what: string, line: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new TraceFormatError(`damon_aggregated ${what} ${text} is beyond 2^53: ${line}`);
  return n;
}

/** Parses one line (without its newline). Throws TraceFormatError for a malformed damon_aggregated line. */
export function parseTraceLine(line: string): TraceLine {
  const text = line.trimEnd();
  const lost = LOST.exec(text.trim());
  if (lost) return { kind: 'lost', cpu: Number(lost[1]), count: Number(lost[2]) };
  if (!text.includes('damon_aggregated:')) return { kind: 'other' };
  const h = HEADER.exec(text);
  if (!h?.groups) throw new TraceFormatError(`unreadable damon_aggregated line (expected "task-pid [cpu] flags secs.usecs: damon_aggregated: ..."): ${text}`);
  const b = BODY.exec(h.groups.body.trim());
  if (!b) {
    throw new TraceFormatError(
      `unexpected damon_aggregated format (expected "target_id=<n> nr_regions=<n> <start>-<end>: <nr_accesses> <age>"): ${text}`,
    );
  }
  const tsNs = BigInt(h.groups.sec) * 1_000_000_000n + BigInt((h.groups.frac + '000000000').slice(0, 9));
  const ev: AggregatedEvent = {
    kind: 'aggregated',
    pid: Number(h.groups.pid),
    tsNs,
    targetId: safeInt(b[1], 'target_id', text),
    nrRegions: safeInt(b[2], 'nr_regions', text),
    start: safeInt(b[3], 'start', text),
    end: safeInt(b[4], 'end', text),
    nrAccesses: safeInt(b[5], 'nr_accesses', text),
    age: safeInt(b[6], 'age', text),
  };
  if (ev.end <= ev.start) throw new TraceFormatError(`damon_aggregated region ${ev.start}-${ev.end} is empty: ${text}`);
  return ev;
}

/** One target's regions at the end of one aggregation interval. */
export interface AssembledAggregation {
  targetIndex: number;
  /** Trace clock time of the aggregation (its first region's event). */
  tsNs: bigint;
  /** Counts aggregations: records with the same number came from one aggregation. */
  aggregation: number;
  /**
   * Events were lost or a group dropped since this target's previous aggregation: some of
   * its aggregations in between never arrived. False means this one directly follows it.
   */
  afterGap: boolean;
  regions: RegionRecord[];
}

export interface AssemblerCounts {
  /** Aggregations of a target dropped because some of their events were missing. */
  incomplete: number;
  /** Events the kernel reported lost ([LOST n EVENTS]). */
  lostEvents: number;
  /** damon_aggregated events of other kdamonds (other DAMON users). */
  foreign: number;
  /** Lines of other events. */
  other: number;
}

/**
 * Collects our kdamond's events into complete per-target aggregations. A group is
 * complete when it holds nr_regions events; one that is interrupted (another target, a
 * new aggregation starting at a lower address or much later, a lost-events marker) is
 * dropped and counted, never emitted half.
 */
export class AggregationAssembler {
  readonly counts: AssemblerCounts = { incomplete: 0, lostEvents: 0, foreign: 0, other: 0 };
  private cur: { targetId: number; nrRegions: number; tsNs: bigint; regions: RegionRecord[] } | undefined;
  private lastTarget = -1;
  private aggregation = 0;
  /** Losses so far (dropped groups, lost-events markers), and their number at each target's last group. */
  private losses = 0;
  private readonly lossesAtLast = new Map<number, number>();

  /**
   * `maxGroupSpanNs`: the kernel writes one target's events in one loop, microseconds
   * apart; events further apart than this (half an aggregation interval) cannot belong to
   * one group.
   */
  constructor(
    readonly kdamondPid: number,
    readonly nrTargets: number,
    readonly maxGroupSpanNs?: bigint,
  ) {}

  push(line: TraceLine): AssembledAggregation | undefined {
    if (line.kind === 'other') {
      this.counts.other++;
      return undefined;
    }
    if (line.kind === 'lost') {
      this.dropCurrent();
      this.counts.lostEvents += line.count;
      this.losses++;
      return undefined;
    }
    if (line.pid !== this.kdamondPid) {
      this.counts.foreign++;
      return undefined;
    }
    if (line.targetId >= this.nrTargets) {
      throw new TraceFormatError(`damon_aggregated target_id=${line.targetId}, but our kdamond (pid ${this.kdamondPid}) has ${this.nrTargets} target(s)`);
    }
    const cur = this.cur;
    if (cur !== undefined) {
      const prevEnd = cur.regions[cur.regions.length - 1].end;
      const tooLate = this.maxGroupSpanNs !== undefined && line.tsNs - cur.tsNs > this.maxGroupSpanNs;
      if (line.targetId !== cur.targetId || line.nrRegions !== cur.nrRegions || line.start < prevEnd || tooLate) this.dropCurrent();
    }
    if (this.cur === undefined) {
      this.cur = { targetId: line.targetId, nrRegions: line.nrRegions, tsNs: line.tsNs, regions: [] };
    }
    const g = this.cur;
    g.regions.push({ start: line.start, end: line.end, nrAccesses: line.nrAccesses, age: line.age });
    if (g.regions.length < g.nrRegions) return undefined;
    this.cur = undefined;
    // Targets come in index order within an aggregation; a lower or equal index starts the next.
    if (g.targetId <= this.lastTarget || this.aggregation === 0) this.aggregation++;
    this.lastTarget = g.targetId;
    const afterGap = (this.lossesAtLast.get(g.targetId) ?? 0) !== this.losses;
    this.lossesAtLast.set(g.targetId, this.losses);
    return { targetIndex: g.targetId, tsNs: g.tsNs, aggregation: this.aggregation, afterGap, regions: g.regions };
  }

  /** Whether events of an unfinished group are waiting for more. */
  get pending(): boolean {
    return this.cur !== undefined;
  }

  private dropCurrent(): void {
    if (this.cur === undefined) return;
    this.cur = undefined;
    this.counts.incomplete++;
    this.losses++;
  }
}

/** Splits a stream of text chunks into whole lines, keeping a partial last line for the next chunk. */
export class LineSplitter {
  private rest = '';

  push(chunk: string): string[] {
    const text = this.rest + chunk;
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    return lines.filter((l) => l.trim() !== '');
  }

  get partial(): string {
    return this.rest;
  }
}
