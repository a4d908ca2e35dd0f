// A declared, simulated access pattern for the "synthetic" operations: per target, the
// address-space layout (mappings, possibly changing over time), access probabilities per
// sampling interval that change in phases, and an optional exit time. Because the
// pattern is declared, the ground truth (which bytes are hot at any moment) is known, so
// the engine's accuracy can be measured against it. Nothing here observes a real process.
//
// Time is workload time: microseconds since the operations were initialized.
import { PAGE_SIZE } from '../engine/region.js';
import { quoted } from '../../common/log.js';

/** A bad workload description; `path` names the offending field, e.g. targets[0].phases[1].durationUs. */
export class WorkloadError extends Error {
  constructor(readonly path: string, message: string) {
    super(path ? `workload ${path}: ${message}` : `workload: ${message}`);
    this.name = 'WorkloadError';
  }
}

export interface Span {
  start: number;
  end: number;
}

export interface ProbabilityRange extends Span {
  /** Chance that a page of the range is accessed in one sampling interval. */
  probability: number;
}

export interface WorkloadPhase {
  /** Workload time at which the phase starts. */
  startUs: number;
  /** Workload time at which it ends; Infinity for a last phase without a duration. */
  endUs: number;
  /** Sorted, non-overlapping. */
  ranges: ProbabilityRange[];
}

export interface MappingLayout {
  /** Workload time from which this layout holds. */
  atUs: number;
  /** Sorted, non-overlapping, with gaps between mappings allowed. */
  mappings: Span[];
}

export interface WorkloadTarget {
  id: number;
  /** Access probability of mapped pages outside every range of the current phase. */
  baseProbability: number;
  /** Ground truth: a byte is hot when its access probability is at least this. */
  hotThreshold: number;
  phases: WorkloadPhase[];
  /** When true, the phases start over after the last one (every phase has a duration). */
  repeat: boolean;
  /** Layouts sorted by atUs; the first is at 0. */
  layouts: MappingLayout[];
  /** Workload time at which the simulated process exits; Infinity when it never does. */
  exitAtUs: number;
}

export interface Workload {
  name: string;
  description: string;
  targets: WorkloadTarget[];
}

// ---------------------------------------------------------------------------------------
// Parsing and validation of the JSON form.

/** Highest address a target may use: user space stays below 2^57 (5-level page tables). */
export const MAX_ADDRESS = 2 ** 57;

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 2 ** 10, kib: 2 ** 10,
  m: 2 ** 20, mib: 2 ** 20,
  g: 2 ** 30, gib: 2 ** 30,
  t: 2 ** 40, tib: 2 ** 40,
};

const TIME_UNITS: Record<string, number> = { '': 1, us: 1, ms: 1_000, s: 1_000_000 };

type Json = unknown;

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function expectObject(v: Json, path: string, allowed: readonly string[]): Record<string, Json> {
  if (!isObject(v)) throw new WorkloadError(path, `must be an object, got ${describe(v)}`);
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) {
      // Unknown keys are almost always typos ("probabilty"); silently ignoring them
      // would monitor a workload other than the one the user meant.
      throw new WorkloadError(join(path, k), `unknown field (expected one of: ${allowed.join(', ')})`);
    }
  }
  return v;
}

function expectArray(v: Json, path: string): Json[] {
  if (!Array.isArray(v)) throw new WorkloadError(path, `must be an array, got ${describe(v)}`);
  return v;
}

function describe(v: Json): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'string') return quoted(v);
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

/**
 * Parses a byte quantity: a JSON number, or a string such as "4GiB", "512 MiB", "0x7f0000000000",
 * "1.5G" (binary units; K/M/G/T mean KiB/MiB/GiB/TiB). The result must be a whole number of bytes.
 */
export function parseBytes(v: Json, path: string): number {
  let n: number;
  if (typeof v === 'number') {
    n = v;
  } else if (typeof v === 'string') {
    const s = v.trim();
    if (/^0x[0-9a-f]+$/i.test(s)) {
      const big = BigInt(s);
      if (big > BigInt(MAX_ADDRESS)) throw new WorkloadError(path, `${s} is above 2^57, the top of user space`);
      n = Number(big);
    } else {
      const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(s);
      if (!m) throw new WorkloadError(path, `not a byte quantity: "${v}" (write e.g. 4096, "0x7f0000000000", "4GiB", "512MiB")`);
      const unit = SIZE_UNITS[m[2].toLowerCase()];
      if (unit === undefined) {
        throw new WorkloadError(path, `unknown size unit "${m[2]}" in "${v}" (use B, KiB, MiB, GiB or TiB; units are binary)`);
      }
      n = Number(m[1]) * unit;
    }
  } else {
    throw new WorkloadError(path, `must be a number of bytes or a string like "4GiB", got ${describe(v)}`);
  }
  if (!Number.isFinite(n) || n < 0 || !Number.isInteger(n)) {
    throw new WorkloadError(path, `must be a whole, non-negative number of bytes, got ${describe(v)}`);
  }
  if (n > MAX_ADDRESS) throw new WorkloadError(path, `${describe(v)} is above 2^57, the top of user space`);
  return n;
}

function parsePageAligned(v: Json, path: string): number {
  const n = parseBytes(v, path);
  if (n % PAGE_SIZE !== 0) {
    throw new WorkloadError(path, `must be a multiple of the page size (${PAGE_SIZE}), got ${n} (${describe(v)})`);
  }
  return n;
}

/** Parses a duration: a JSON number of microseconds, or a string such as "3s", "500ms", "250us". */
export function parseMicros(v: Json, path: string, allowZero = false): number {
  let n: number;
  if (typeof v === 'number') {
    n = v;
  } else if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
    const unit = m ? TIME_UNITS[m[2].toLowerCase()] : undefined;
    if (!m || unit === undefined) throw new WorkloadError(path, `not a duration: "${v}" (write microseconds, or e.g. "3s", "500ms")`);
    n = Number(m[1]) * unit;
  } else {
    throw new WorkloadError(path, `must be microseconds or a string like "3s", got ${describe(v)}`);
  }
  if (!Number.isSafeInteger(n) || n < 0 || (n === 0 && !allowZero)) {
    throw new WorkloadError(path, `must be a whole number of microseconds${allowZero ? '' : ' above 0'}, got ${describe(v)}`);
  }
  return n;
}

function parseProbability(v: Json, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
    throw new WorkloadError(path, `must be a probability in [0, 1], got ${describe(v)}`);
  }
  return v;
}

/** Reads a span written as {start, size} or {start, end}. */
function parseSpan(o: Record<string, Json>, path: string): Span {
  if (o.start === undefined) throw new WorkloadError(join(path, 'start'), 'is required');
  const start = parsePageAligned(o.start, join(path, 'start'));
  if ((o.size === undefined) === (o.end === undefined)) {
    throw new WorkloadError(path, 'give exactly one of "size" and "end"');
  }
  const end = o.size !== undefined
    ? start + parsePageAligned(o.size, join(path, 'size'))
    : parsePageAligned(o.end, join(path, 'end'));
  if (end <= start) throw new WorkloadError(path, `is empty or reversed: [0x${start.toString(16)}, 0x${end.toString(16)})`);
  if (end > MAX_ADDRESS) throw new WorkloadError(path, 'ends above 2^57, the top of user space');
  return { start, end };
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function sortAndCheckDisjoint<T extends Span>(spans: T[], path: string, what: string): T[] {
  const order = spans.map((s, i) => ({ s, i })).sort((a, b) => a.s.start - b.s.start);
  for (let k = 1; k < order.length; k++) {
    const prev = order[k - 1];
    const cur = order[k];
    if (cur.s.start < prev.s.end) {
      throw new WorkloadError(
        path,
        `${what} ${prev.i} [${hex(prev.s.start)}, ${hex(prev.s.end)}) and ${what} ${cur.i} [${hex(cur.s.start)}, ${hex(cur.s.end)}) overlap`,
      );
    }
  }
  return order.map((o) => o.s);
}

function parseMappings(v: Json, path: string): Span[] {
  const arr = expectArray(v, path);
  if (arr.length === 0) throw new WorkloadError(path, 'must list at least one mapping');
  const spans = arr.map((m, i) => parseSpan(expectObject(m, join(path, i), ['start', 'size', 'end']), join(path, i)));
  return sortAndCheckDisjoint(spans, path, 'mapping');
}

const TARGET_FIELDS = [
  'id', 'mappings', 'baseProbability', 'hotThreshold', 'phases', 'repeat', 'exitAtUs', 'mappingChanges',
] as const;

function parseTarget(v: Json, path: string): WorkloadTarget {
  const o = expectObject(v, path, TARGET_FIELDS);
  if (typeof o.id !== 'number' || !Number.isSafeInteger(o.id) || o.id < 0) {
    throw new WorkloadError(join(path, 'id'), `must be a non-negative integer (the target id), got ${describe(o.id)}`);
  }
  if (o.mappings === undefined) throw new WorkloadError(join(path, 'mappings'), 'is required');
  const layouts: MappingLayout[] = [{ atUs: 0, mappings: parseMappings(o.mappings, join(path, 'mappings')) }];
  if (o.mappingChanges !== undefined) {
    const changes = expectArray(o.mappingChanges, join(path, 'mappingChanges'));
    changes.forEach((c, i) => {
      const p = join(join(path, 'mappingChanges'), i);
      const co = expectObject(c, p, ['atUs', 'mappings']);
      if (co.atUs === undefined) throw new WorkloadError(join(p, 'atUs'), 'is required');
      if (co.mappings === undefined) throw new WorkloadError(join(p, 'mappings'), 'is required');
      const atUs = parseMicros(co.atUs, join(p, 'atUs'));
      const prev = layouts[layouts.length - 1].atUs;
      if (atUs <= prev) {
        throw new WorkloadError(join(p, 'atUs'), `must be later than the previous change (${prev} us), got ${atUs}`);
      }
      layouts.push({ atUs, mappings: parseMappings(co.mappings, join(p, 'mappings')) });
    });
  }

  const baseProbability = o.baseProbability === undefined ? 0 : parseProbability(o.baseProbability, join(path, 'baseProbability'));
  const hotThreshold = o.hotThreshold === undefined ? 0.5 : parseProbability(o.hotThreshold, join(path, 'hotThreshold'));
  if (hotThreshold === 0) throw new WorkloadError(join(path, 'hotThreshold'), 'must be above 0 (at 0 every mapped byte would be hot)');
  if (o.repeat !== undefined && typeof o.repeat !== 'boolean') {
    throw new WorkloadError(join(path, 'repeat'), `must be true or false, got ${describe(o.repeat)}`);
  }
  const repeat = o.repeat === true;

  const phases: WorkloadPhase[] = [];
  const phasesPath = join(path, 'phases');
  const rawPhases = o.phases === undefined ? [] : expectArray(o.phases, phasesPath);
  if (rawPhases.length === 0) {
    // No phases: the base probability everywhere, for ever.
    phases.push({ startUs: 0, endUs: Infinity, ranges: [] });
  }
  let t = 0;
  rawPhases.forEach((ph, i) => {
    const p = join(phasesPath, i);
    const po = expectObject(ph, p, ['durationUs', 'ranges']);
    const last = i === rawPhases.length - 1;
    let endUs: number;
    if (po.durationUs === undefined) {
      if (!last) throw new WorkloadError(join(p, 'durationUs'), 'is required for every phase but the last');
      if (repeat) throw new WorkloadError(join(p, 'durationUs'), 'is required for every phase when "repeat" is true');
      endUs = Infinity;
    } else {
      endUs = t + parseMicros(po.durationUs, join(p, 'durationUs'));
    }
    const rangesPath = join(p, 'ranges');
    const raw = po.ranges === undefined ? [] : expectArray(po.ranges, rangesPath);
    const ranges = raw.map((r, k) => {
      const rp = join(rangesPath, k);
      const ro = expectObject(r, rp, ['start', 'size', 'end', 'probability']);
      const span = parseSpan(ro, rp);
      if (ro.probability === undefined) throw new WorkloadError(join(rp, 'probability'), 'is required');
      const probability = parseProbability(ro.probability, join(rp, 'probability'));
      // A range that no layout maps is a mistake in the description (often a size unit
      // slip); a range that some layout maps may legitimately be unmapped at times.
      if (!layouts.some((l) => l.mappings.some((m) => span.start >= m.start && span.end <= m.end))) {
        throw new WorkloadError(
          rp,
          `[${hex(span.start)}, ${hex(span.end)}) does not lie within one mapping of any layout`,
        );
      }
      return { ...span, probability };
    });
    phases.push({ startUs: t, endUs, ranges: sortAndCheckDisjoint(ranges, rangesPath, 'range') });
    t = endUs;
  });

  const exitAtUs = o.exitAtUs === undefined ? Infinity : parseMicros(o.exitAtUs, join(path, 'exitAtUs'));
  return { id: o.id, baseProbability, hotThreshold, phases, repeat, layouts, exitAtUs };
}

/** Validates a workload given as parsed JSON; throws WorkloadError naming the bad field. */
export function parseWorkload(v: Json, fallbackName = 'workload'): Workload {
  const o = expectObject(v, '', ['name', 'description', 'targets']);
  for (const k of ['name', 'description'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'string') throw new WorkloadError(k, `must be a string, got ${describe(o[k])}`);
  }
  if (o.targets === undefined) throw new WorkloadError('targets', 'is required');
  const rawTargets = expectArray(o.targets, 'targets');
  if (rawTargets.length === 0) throw new WorkloadError('targets', 'must list at least one target');
  const targets = rawTargets.map((t, i) => parseTarget(t, join('targets', i)));
  const seen = new Set<number>();
  targets.forEach((t, i) => {
    if (seen.has(t.id)) throw new WorkloadError(join(join('targets', i), 'id'), `target id ${t.id} is used twice`);
    seen.add(t.id);
  });
  return {
    name: (o.name as string | undefined) ?? fallbackName,
    description: (o.description as string | undefined) ?? '',
    targets,
  };
}

/** Parses a workload from JSON text; a syntax error names the source. */
export function parseWorkloadJson(text: string, source: string): Workload {
  let v: Json;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new WorkloadError('', `${source} is not valid JSON: ${(e as Error).message}`);
  }
  return parseWorkload(v, source);
}

// ---------------------------------------------------------------------------------------
// Queries: what the simulated process does at a given workload time. All lookups are
// binary searches, so their cost depends on the number of ranges and mappings, never on
// the size of the address space.

/** Index of the last span whose start <= addr, or -1. */
export function lastStartAtOrBelow(spans: readonly Span[], addr: number): number {
  let lo = 0;
  let hi = spans.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (spans[mid].start <= addr) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

export function phaseAt(t: WorkloadTarget, tUs: number): WorkloadPhase {
  const phases = t.phases;
  let at = tUs;
  if (t.repeat) at = tUs % phases[phases.length - 1].endUs;
  // Few phases; a binary search keeps the cost bounded regardless.
  let lo = 0;
  let hi = phases.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (phases[mid].startUs <= at) lo = mid;
    else hi = mid - 1;
  }
  return phases[lo];
}

export function layoutAt(t: WorkloadTarget, tUs: number): MappingLayout {
  let i = t.layouts.length - 1;
  while (i > 0 && t.layouts[i].atUs > tUs) i--;
  return t.layouts[i];
}

export function exitedAt(t: WorkloadTarget, tUs: number): boolean {
  return tUs >= t.exitAtUs;
}

/**
 * Index of the last span whose start <= addr, or -1, searching from `hint` (the answer for
 * a nearby address): exponential steps away from the hint, then a binary search. For
 * addresses visited in ascending order (a target's regions) the cost per lookup is
 * O(log distance from the previous answer), never more than O(log spans).
 */
export function lastStartAtOrBelowFrom(spans: readonly Span[], addr: number, hint: number): number {
  const n = spans.length;
  if (n === 0) return -1;
  let lo: number;
  let hi: number;
  if (hint < 0 || hint >= n) return lastStartAtOrBelow(spans, addr);
  if (spans[hint].start <= addr) {
    // Answer in [hint, n): gallop right.
    lo = hint;
    let step = 1;
    hi = hint + 1;
    while (hi < n && spans[hi].start <= addr) {
      lo = hi;
      step *= 2;
      hi = lo + step;
    }
    hi = Math.min(hi, n) - 1;
  } else {
    // Answer in [-1, hint): gallop left.
    hi = hint - 1;
    let step = 1;
    lo = hint - 1;
    while (lo >= 0 && spans[lo].start > addr) {
      hi = lo - 1;
      step *= 2;
      lo = hi - step + 1;
    }
    if (lo < 0) lo = 0;
    if (hi < lo) return -1;
    if (spans[lo].start > addr) return -1;
  }
  // Invariant: spans[lo].start <= addr; the answer is in [lo, hi].
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (spans[mid].start <= addr) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Access probabilities of ascending addresses under one layout and phase; remembers
 * where the previous lookup landed so that walking a target's sorted regions costs
 * O(regions x log ranges) at worst and close to O(regions) when regions and ranges
 * interleave.
 */
export class ProbabilityCursor {
  private mi = -1;
  private ri = -1;

  constructor(
    private readonly target: WorkloadTarget,
    private readonly mappings: readonly Span[],
    private readonly phase: WorkloadPhase,
  ) {}

  at(addr: number): number {
    const ms = this.mappings;
    const mi = (this.mi = lastStartAtOrBelowFrom(ms, addr, this.mi));
    if (mi < 0 || addr >= ms[mi].end) return 0;
    const rs = this.phase.ranges;
    const ri = (this.ri = lastStartAtOrBelowFrom(rs, addr, this.ri));
    if (ri >= 0 && addr < rs[ri].end) return rs[ri].probability;
    return this.target.baseProbability;
  }
}

/** Access probability of the page holding `addr` (0 when unmapped). */
export function probabilityOf(t: WorkloadTarget, mappings: readonly Span[], phase: WorkloadPhase, addr: number): number {
  const mi = lastStartAtOrBelow(mappings, addr);
  if (mi < 0 || addr >= mappings[mi].end) return 0;
  const ri = lastStartAtOrBelow(phase.ranges, addr);
  if (ri >= 0 && addr < phase.ranges[ri].end) return phase.ranges[ri].probability;
  return t.baseProbability;
}

/** The mapped address space at tUs cut into runs of constant access probability, in order. */
export function probabilityRuns(t: WorkloadTarget, tUs: number): ProbabilityRange[] {
  const { mappings } = layoutAt(t, tUs);
  const { ranges } = phaseAt(t, tUs);
  const out: ProbabilityRange[] = [];
  const push = (start: number, end: number, probability: number) => {
    if (end <= start) return;
    const last = out[out.length - 1];
    if (last && last.end === start && last.probability === probability) last.end = end;
    else out.push({ start, end, probability });
  };
  let ri = 0;
  for (const m of mappings) {
    let cur = m.start;
    while (ri < ranges.length && ranges[ri].end <= cur) ri++;
    let k = ri;
    while (k < ranges.length && ranges[k].start < m.end) {
      const r = ranges[k];
      push(cur, Math.max(cur, r.start), t.baseProbability);
      const s = Math.max(cur, r.start);
      const e = Math.min(m.end, r.end);
      push(s, e, r.probability);
      cur = Math.max(cur, e);
      k++;
    }
    push(cur, m.end, t.baseProbability);
  }
  return out;
}

/** Ground truth: the mapped byte ranges at tUs whose access probability reaches the hot threshold. */
export function hotRanges(t: WorkloadTarget, tUs: number): Span[] {
  const out: Span[] = [];
  for (const r of probabilityRuns(t, tUs)) {
    if (r.probability < t.hotThreshold) continue;
    const last = out[out.length - 1];
    if (last && last.end === r.start) last.end = r.end;
    else out.push({ start: r.start, end: r.end });
  }
  return out;
}

export function spanBytes(spans: readonly Span[]): number {
  let n = 0;
  for (const s of spans) n += s.end - s.start;
  return n;
}

/** Bytes shared by two sorted, disjoint span lists. */
export function overlapBytes(a: readonly Span[], b: readonly Span[]): number {
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length && j < b.length) {
    const s = Math.max(a[i].start, b[j].start);
    const e = Math.min(a[i].end, b[j].end);
    if (e > s) n += e - s;
    if (a[i].end < b[j].end) i++;
    else j++;
  }
  return n;
}
