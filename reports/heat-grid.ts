// The heatmap's cells: one per pixel of the plot, time down and address across. A cell's
// value is the access frequency (nr_accesses / max_nr_accesses, 0..1) averaged over the
// bytes and the time the cell covers, each record counting for the part of its
// aggregation interval inside the cell's time (damo weights a pixel's heat the same way).
// Where no record covers a cell (before a target appeared, an address no region held at
// that time) the value is NaN: "no record", drawn apart from "idle".
import type { AddressAxis } from './address-axis.js';
import { timeSpanNs, type ReportRecord, type ReportTarget } from './report-input.js';

export interface HeatGrid {
  rows: number;
  cols: number;
  /** Row-major, rows × cols; NaN where no record covers the cell. */
  values: Float64Array;
  /** The time the first row starts at (wall-clock ns) and each row's length in ns. */
  t0: bigint;
  rowNs: number;
  /** The largest cell value (0 when every cell is idle or empty). */
  highest: number;
}

/** Per column of the plot: Σ frequency × bytes and Σ bytes of one record's regions under it. */
function columnsOf(rec: ReportRecord, axis: AddressAxis, max: number, heat: Float64Array, cover: Float64Array): void {
  heat.fill(0);
  cover.fill(0);
  let si = 0;
  for (const g of rec.regions) {
    if (g.end <= g.start) continue;
    while (si < axis.spans.length && axis.spans[si]!.end <= g.start) si++;
    for (let k = si; k < axis.spans.length && axis.spans[k]!.start < g.end; k++) {
      const s = axis.spans[k]!;
      const per = (s.end - s.start) / (s.x1 - s.x0);
      const lo = Math.max(g.start, s.start);
      const hi = Math.min(g.end, s.end);
      const freq = Math.min(1, g.nrAccesses / max);
      const c0 = Math.floor((lo - s.start) / per);
      const c1 = Math.min(s.x1 - s.x0, Math.ceil((hi - s.start) / per));
      for (let c = c0; c < c1; c++) {
        const overlap = Math.min(hi, s.start + (c + 1) * per) - Math.max(lo, s.start + c * per);
        if (overlap <= 0) continue;
        heat[s.x0 + c] += freq * overlap;
        cover[s.x0 + c] += overlap;
      }
    }
  }
}

/** The grid of `rows` rows over the target's whole time span, on `axis`. */
export function heatGrid(t: ReportTarget, axis: AddressAxis, rows: number): HeatGrid {
  const cols = axis.width;
  const { t0, t1 } = timeSpanNs(t);
  const spanNs = Math.max(1, Number(t1 - t0));
  const rowNs = spanNs / rows;
  const heatSum = new Float64Array(rows * cols);
  const coverSum = new Float64Array(rows * cols);
  const heat = new Float64Array(cols);
  const cover = new Float64Array(cols);
  for (const rec of t.records) {
    columnsOf(rec, axis, t.maxNrAccesses, heat, cover);
    const a = Number(rec.startNs - t0);
    const b = Number(rec.endNs - t0);
    // A record without a known interval (start = end) counts as a moment in its row.
    // All records at one instant (one record, no interval known): each fills every row.
    const r0 = t1 === t0 ? 0 : Math.min(rows - 1, Math.floor(a / rowNs));
    const r1 = t1 === t0 ? rows - 1 : b > a ? Math.min(rows - 1, Math.ceil(b / rowNs) - 1) : r0;
    for (let r = r0; r <= r1; r++) {
      const w = b > a ? Math.min(b, (r + 1) * rowNs) - Math.max(a, r * rowNs) : 1;
      if (w <= 0) continue;
      const base = r * cols;
      for (let c = 0; c < cols; c++) {
        if (cover[c] === 0) continue;
        heatSum[base + c] += heat[c]! * w;
        coverSum[base + c] += cover[c]! * w;
      }
    }
  }
  const values = new Float64Array(rows * cols);
  let highest = 0;
  for (let i = 0; i < values.length; i++) {
    values[i] = coverSum[i]! > 0 ? heatSum[i]! / coverSum[i]! : NaN;
    if (values[i]! > highest) highest = values[i]!;
  }
  return { rows, cols, values, t0, rowNs, highest };
}
