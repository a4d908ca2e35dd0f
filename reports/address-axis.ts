// The address axis of a heatmap: the mapped spans of a target (the union of its records'
// regions) laid side by side, with the unmapped gaps between them cut out. A process's
// heap and its stack lie ~100 TiB apart; drawn to scale, everything it uses would be two
// invisible lines at the picture's edges (the complaint users raise most about damo's
// heatmaps). Each span gets pixels in proportion to its bytes, but never fewer than a
// floor, so a small stack stays visible; between two spans a narrow cut mark stands for
// the gap, labelled with its size.
import type { ReportTarget } from './report-input.js';

export interface AxisSpan {
  start: number;
  end: number;
  /** Pixel columns [x0, x1) of the plot, from its left edge. */
  x0: number;
  x1: number;
}

export interface AxisCut {
  /** The unmapped gap [start, end) left out. */
  start: number;
  end: number;
  /** Pixel columns [x0, x1) of the cut mark. */
  x0: number;
  x1: number;
}

export interface AddressAxis {
  width: number;
  spans: AxisSpan[];
  cuts: AxisCut[];
}

/** Pixels of a cut mark between two spans. */
export const CUT_PX = 6;
/** Fewest pixels a span gets, however small it is (fewer when the width is small). */
const MIN_SPAN_PX = 12;

/** The union of every region of every record: [start, end) spans in address order. */
export function mappedSpans(t: ReportTarget): { start: number; end: number }[] {
  const all = t.records.flatMap((r) => r.regions.filter((g) => g.end > g.start));
  all.sort((a, b) => a.start - b.start);
  const out: { start: number; end: number }[] = [];
  for (const g of all) {
    const last = out[out.length - 1];
    if (last && g.start <= last.end) last.end = Math.max(last.end, g.end);
    else out.push({ start: g.start, end: g.end });
  }
  return out;
}

/**
 * Lays the target's spans over `width` pixels, `cutPx` for each cut mark. Throws RangeError when the width cannot
 * hold every span's floor and the cut marks (the caller picks a wider picture).
 */
export function layAddressAxis(t: ReportTarget, width: number, cutPx = CUT_PX): AddressAxis {
  const raw = mappedSpans(t);
  const n = raw.length;
  const free = width - cutPx * Math.max(0, n - 1);
  const minPx = Math.min(MIN_SPAN_PX, Math.floor(free / (3 * n)));
  if (n === 0 || minPx < 1) {
    throw new RangeError(`${n} mapped spans do not fit in ${width} pixels`);
  }
  // Proportional shares, then raise the small ones to the floor and take it from the large.
  const bytes = raw.map((s) => s.end - s.start);
  const px = largestRemainder(bytes, free);
  for (let pass = 0; pass < n && px.some((p) => p < minPx); pass++) {
    const small = px.map((p) => p < minPx);
    const fixed = small.filter(Boolean).length * minPx;
    const rest = largestRemainder(bytes.map((b, i) => (small[i] ? 0 : b)), free - fixed);
    for (let i = 0; i < n; i++) px[i] = small[i] ? minPx : rest[i]!;
  }
  const spans: AxisSpan[] = [];
  const cuts: AxisCut[] = [];
  let x = 0;
  raw.forEach((s, i) => {
    if (i > 0) {
      cuts.push({ start: raw[i - 1]!.end, end: s.start, x0: x, x1: x + cutPx });
      x += cutPx;
    }
    spans.push({ start: s.start, end: s.end, x0: x, x1: x + px[i]! });
    x += px[i]!;
  });
  return { width, spans, cuts };
}

/** Integer shares of `total` in proportion to `weights` (Hamilton's method; sums to total). */
function largestRemainder(weights: number[], total: number): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) return weights.map(() => 0);
  const exact = weights.map((w) => (w / sum) * total);
  const out = exact.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => [e - Math.floor(e), i] as const).sort((a, b) => b[0] - a[0]);
  for (const [, i] of order) {
    if (left <= 0) break;
    out[i]!++;
    left--;
  }
  return out;
}

/** The address range [start, end) pixel column `x` shows, or null on a cut mark. */
export function addressesOfColumn(axis: AddressAxis, x: number): { start: number; end: number } | null {
  for (const s of axis.spans) {
    if (x >= s.x0 && x < s.x1) {
      const per = (s.end - s.start) / (s.x1 - s.x0);
      return { start: s.start + (x - s.x0) * per, end: s.start + (x + 1 - s.x0) * per };
    }
  }
  return null;
}

/** The pixel position (fractional, from the plot's left) of an address, or null when it lies in a cut gap. */
export function columnOfAddress(axis: AddressAxis, addr: number): number | null {
  for (const s of axis.spans) {
    if (addr >= s.start && addr <= s.end) return s.x0 + ((addr - s.start) / (s.end - s.start)) * (s.x1 - s.x0);
  }
  return null;
}
