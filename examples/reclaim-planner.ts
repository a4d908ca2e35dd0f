// The example optimizer's proactive reclaim plan (examples/optimizer.ts): per target, the
// address ranges that stayed cold (access frequency at most coldPct, 0 by default: not one
// sampled access) for at least minAgeMs, and which of them to ask the controller to page
// out now, within the optimizer's own byte rate. Pure bookkeeping: no I/O, time passed in.
//
// How long a range has been cold comes from two sources: a record's region age (it has had
// the same access frequency for age + 1 aggregation intervals, as DAMON counts it) and this
// planner's memory of earlier records, so that a region the engine split or merged (which
// changes its age) keeps the earliest time it is known to have been cold since. A range
// that shows an access is forgotten, and may be asked for again once it cooled down anew.
import type { AggregationRecord } from '../gen/damon/v1/damon.js';

export const PAGE = 4096n;

export interface ReclaimOptions {
  /** A range must have been cold this long before it is paged out. */
  minAgeMs: number;
  /** Access frequency (nr_accesses / max_nr_accesses, %) at or below which a range is cold. */
  coldPct: number;
  /** Bytes a second the optimizer asks to page out, across every target. */
  rateBytesPerS: number;
  /** Bytes it may ask for at once after a quiet time (default: one second's worth). */
  burstBytes?: number;
  /** Cold ranges smaller than this are left alone (not worth a call). */
  minBytes: number;
  /** After a refusal that is not about the target being gone, wait this long before asking about the target again. */
  failureBackoffMs: number;
}

export const DEFAULT_RECLAIM: Readonly<ReclaimOptions> = Object.freeze({
  minAgeMs: 30_000,
  coldPct: 0,
  rateBytesPerS: 64 * 1024 * 1024,
  minBytes: 64 * 1024,
  failureBackoffMs: 30_000,
});

/** A part of a target's address space and since when it is known to be cold. */
interface ColdSpan {
  start: bigint;
  end: bigint;
  sinceMs: number;
}

/** One request the optimizer should make now. */
export interface ReclaimAsk {
  sessionId: string;
  host: string;
  pid: number;
  start: bigint;
  end: bigint;
  /** How long the range has been cold, ms. */
  coldForMs: number;
}

/** What became of an ask. */
export type AskOutcome =
  | { kind: 'done' }
  /** The target is gone (exited, no longer a target): forget it. */
  | { kind: 'gone' }
  /** Over a rate limit: ask again (the same range) after this long. */
  | { kind: 'later'; retryInMs: number }
  /** Refused for another reason: leave the target alone for a while. */
  | { kind: 'failed' };

interface TargetState {
  sessionId: string;
  host: string;
  pid: number;
  /** Cold spans as of the latest record, sorted, disjoint. */
  cold: ColdSpan[];
  /** Ranges already paged out (or being): not asked again while they stay cold. Sorted, disjoint. */
  asked: { start: bigint; end: bigint }[];
  pausedUntilMs: number;
}

const targetKey = (sessionId: string, host: string, pid: number) => `${sessionId}/${host}/${pid}`;

/** The aggregation interval a record covers, ms. */
export function aggregationMs(rec: Pick<AggregationRecord, 'startTimeNs' | 'endTimeNs'>): number {
  return Number(rec.endTimeNs - rec.startTimeNs) / 1e6;
}

/**
 * The record's cold ranges with when each has been cold since (by its age); adjacent cold
 * regions of the same age merge.
 */
export function coldSpansOf(rec: AggregationRecord, coldPct: number): ColdSpan[] {
  const aggr = aggregationMs(rec);
  const endMs = Number(rec.endTimeNs / 1_000_000n);
  const out: ColdSpan[] = [];
  for (const r of rec.regions) {
    const pct = rec.maxNrAccesses > 0 ? (100 * r.nrAccesses) / rec.maxNrAccesses : 0;
    if (pct > coldPct || r.end <= r.start) continue;
    const sinceMs = endMs - (r.age + 1) * aggr;
    const last = out[out.length - 1];
    if (last && last.end === r.start && last.sinceMs === sinceMs) last.end = r.end;
    else out.push({ start: r.start, end: r.end, sinceMs });
  }
  return out;
}

/**
 * The new cold spans, each part that was also cold before taking the earlier of the two
 * times (it stayed cold in between: records come every aggregation interval).
 */
export function carryColdSince(prev: readonly ColdSpan[], next: readonly ColdSpan[]): ColdSpan[] {
  const out: ColdSpan[] = [];
  let i = 0;
  for (const n of next) {
    let at = n.start;
    while (i < prev.length && prev[i].end <= at) i++;
    for (let j = i; j < prev.length && prev[j].start < n.end && at < n.end; j++) {
      const p = prev[j];
      if (p.start > at) {
        out.push({ start: at, end: p.start < n.end ? p.start : n.end, sinceMs: n.sinceMs });
        at = p.start;
      }
      const end = p.end < n.end ? p.end : n.end;
      if (end > at) {
        out.push({ start: at, end, sinceMs: Math.min(p.sinceMs, n.sinceMs) });
        at = end;
      }
    }
    if (at < n.end) out.push({ start: at, end: n.end, sinceMs: n.sinceMs });
  }
  return out;
}

/** `spans` without what `holes` cover (both sorted, disjoint). */
function subtract<T extends { start: bigint; end: bigint }>(spans: readonly T[], holes: readonly { start: bigint; end: bigint }[]): T[] {
  const out: T[] = [];
  for (const s of spans) {
    let at = s.start;
    for (const h of holes) {
      if (h.end <= at || h.start >= s.end) continue;
      if (h.start > at) out.push({ ...s, start: at, end: h.start });
      at = h.end > at ? h.end : at;
      if (at >= s.end) break;
    }
    if (at < s.end) out.push({ ...s, start: at, end: s.end });
  }
  return out;
}

/** `spans` cut to what `within` covers (both sorted, disjoint). */
function intersect(spans: readonly { start: bigint; end: bigint }[], within: readonly { start: bigint; end: bigint }[]): { start: bigint; end: bigint }[] {
  const out: { start: bigint; end: bigint }[] = [];
  for (const s of spans) {
    for (const w of within) {
      const start = s.start > w.start ? s.start : w.start;
      const end = s.end < w.end ? s.end : w.end;
      if (start < end) out.push({ start, end });
    }
  }
  return out;
}

function addSorted(list: { start: bigint; end: bigint }[], r: { start: bigint; end: bigint }): { start: bigint; end: bigint }[] {
  const all = [...list, r].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: { start: bigint; end: bigint }[] = [];
  for (const x of all) {
    const last = out[out.length - 1];
    if (last && x.start <= last.end) last.end = x.end > last.end ? x.end : last.end;
    else out.push({ ...x });
  }
  return out;
}

export class ReclaimPlanner {
  private readonly targets = new Map<string, TargetState>();
  private readonly o: ReclaimOptions & { burstBytes: number };
  private tokens: number;
  private tokensAtMs: number;

  constructor(options: Partial<ReclaimOptions>, nowMs: number) {
    const o = { ...DEFAULT_RECLAIM, ...options };
    this.o = { ...o, burstBytes: o.burstBytes ?? o.rateBytesPerS };
    if (!(this.o.rateBytesPerS > 0) || !(this.o.burstBytes >= Number(PAGE))) throw new Error('reclaim rate and burst must allow at least a page');
    this.tokens = this.o.burstBytes;
    this.tokensAtMs = nowMs;
  }

  /** Takes in a target's latest record. */
  observe(rec: AggregationRecord): void {
    const key = targetKey(rec.sessionId, rec.host, rec.pid);
    let t = this.targets.get(key);
    if (!t) {
      t = { sessionId: rec.sessionId, host: rec.host, pid: rec.pid, cold: [], asked: [], pausedUntilMs: 0 };
      this.targets.set(key, t);
    }
    t.cold = carryColdSince(t.cold, coldSpansOf(rec, this.o.coldPct));
    // What was paged out and showed an access since is no longer "done": once cold again
    // for long enough, it is asked for again.
    t.asked = intersect(t.asked, t.cold);
  }

  /** Forgets a target (its process exited, or it left the session). */
  forget(sessionId: string, host: string, pid: number): void {
    this.targets.delete(targetKey(sessionId, host, pid));
  }

  /** Bytes of cold ranges old enough and not yet asked for, per target key. */
  pendingBytes(nowMs: number): bigint {
    let n = 0n;
    for (const t of this.targets.values()) for (const c of this.eligible(t, nowMs)) n += c.end - c.start;
    return n;
  }

  private eligible(t: TargetState, nowMs: number): ColdSpan[] {
    const old = t.cold.filter((c) => nowMs - c.sinceMs >= this.o.minAgeMs);
    // Whole pages only, and large enough to be worth a call.
    return subtract(old, t.asked)
      .map((c) => ({ ...c, start: ((c.start + PAGE - 1n) / PAGE) * PAGE, end: (c.end / PAGE) * PAGE }))
      .filter((c) => c.end - c.start >= BigInt(this.o.minBytes));
  }

  /**
   * What to ask for now: the longest-cold ranges first, across targets, within the byte
   * budget (a range larger than what is left is cut at a page boundary). Each ask is
   * charged to the budget and counted as asked until `settle` says otherwise.
   */
  plan(nowMs: number): ReclaimAsk[] {
    if (nowMs > this.tokensAtMs) {
      this.tokens = Math.min(this.o.burstBytes, this.tokens + ((nowMs - this.tokensAtMs) * this.o.rateBytesPerS) / 1000);
      this.tokensAtMs = nowMs;
    }
    const candidates: { t: TargetState; c: ColdSpan }[] = [];
    for (const t of this.targets.values()) {
      if (t.pausedUntilMs > nowMs) continue;
      for (const c of this.eligible(t, nowMs)) candidates.push({ t, c });
    }
    candidates.sort((a, b) => a.c.sinceMs - b.c.sinceMs || (a.c.start < b.c.start ? -1 : 1));
    const asks: ReclaimAsk[] = [];
    for (const { t, c } of candidates) {
      const budget = (BigInt(Math.floor(this.tokens)) / PAGE) * PAGE;
      if (budget < BigInt(this.o.minBytes) || budget === 0n) break;
      const end = c.end - c.start > budget ? c.start + budget : c.end;
      asks.push({ sessionId: t.sessionId, host: t.host, pid: t.pid, start: c.start, end, coldForMs: nowMs - c.sinceMs });
      this.tokens -= Number(end - c.start);
      t.asked = addSorted(t.asked, { start: c.start, end });
    }
    return asks;
  }

  /** What became of `ask`. */
  settle(ask: ReclaimAsk, outcome: AskOutcome, nowMs: number): void {
    const t = this.targets.get(targetKey(ask.sessionId, ask.host, ask.pid));
    if (!t) return;
    if (outcome.kind === 'gone') {
      this.forget(ask.sessionId, ask.host, ask.pid);
      return;
    }
    if (outcome.kind === 'later') {
      // Not done: asked again once the controller's limit allows.
      t.asked = subtract(t.asked, [{ start: ask.start, end: ask.end }]);
      t.pausedUntilMs = nowMs + outcome.retryInMs;
      this.tokens += Number(ask.end - ask.start);
    } else if (outcome.kind === 'failed') {
      t.pausedUntilMs = nowMs + this.o.failureBackoffMs;
    }
  }
}
