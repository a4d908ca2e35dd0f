// `report heatmap`: one picture per target of how often each address was accessed over
// time. Orientation: address across (low to high, left to right) and time down (the
// first record at the top), as damo's terminal heatmap and `damon-fleet report FILE`
// draw it; damo's gnuplot image draws time across and address up instead. The unmapped
// gaps between mapped spans are cut (address-axis.ts) and marked with their size.
// The cells are one raster image (encoded by pngjs) inside the SVG; axes, labels and the
// legend are SVG; the PNG is the SVG rasterised (render.ts).
import { PNG } from 'pngjs';
import { formatAddr, formatBytes } from '../agent/recorder/format.js';
import { layAddressAxis, type AddressAxis } from './address-axis.js';
import { heatGrid, type HeatGrid } from './heat-grid.js';
import { NO_RECORD, cssColor, heatColor } from './colormap.js';
import { svgDocument, text } from './render.js';
import { formatSeconds, ticks, wallClock } from './axis-labels.js';
import type { ReportTarget } from './report-input.js';

/** The plot's place in the picture, in pixels. */
export interface PlotBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Heatmap {
  svg: string;
  width: number;
  height: number;
  plot: PlotBox;
  axis: AddressAxis;
  grid: HeatGrid;
}

export interface HeatmapOptions {
  /** Plot size in pixels (one cell per pixel); default 760 × 480. */
  plotWidth?: number;
  plotHeight?: number;
  /** What the picture was drawn from, for its subtitle. */
  source?: string;
}

const MARGIN = { left: 92, top: 92, right: 150, bottom: 150 };

/** The cells as an RGBA PNG, one pixel each, with the colour scale normalised to the highest value. */
function rasterOf(grid: HeatGrid, axis: AddressAxis): Buffer {
  const png = new PNG({ width: grid.cols, height: grid.rows });
  const top = grid.highest > 0 ? grid.highest : 1;
  const onCut = new Uint8Array(grid.cols);
  for (const c of axis.cuts) onCut.fill(1, c.x0, c.x1);
  for (let r = 0; r < grid.rows; r++) {
    for (let c = 0; c < grid.cols; c++) {
      const v = grid.values[r * grid.cols + c]!;
      const rgb = onCut[c] ? ([255, 255, 255] as const) : Number.isNaN(v) ? NO_RECORD : heatColor(v / top);
      const i = (r * grid.cols + c) * 4;
      png.data[i] = rgb[0];
      png.data[i + 1] = rgb[1];
      png.data[i + 2] = rgb[2];
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

/** Address labels under the plot: span starts first, then ends, then inner ticks; none crowding another. */
function addressLabels(axis: AddressAxis, p: PlotBox): string[] {
  const wanted: { x: number; addr: number }[] = [];
  for (const s of axis.spans) wanted.push({ x: s.x0, addr: s.start });
  for (const s of axis.spans) wanted.push({ x: s.x1, addr: s.end });
  for (const s of axis.spans) {
    const n = Math.floor((s.x1 - s.x0) / 150);
    for (let k = 1; k <= n; k++) {
      const x = s.x0 + Math.round(((s.x1 - s.x0) * k) / (n + 1));
      wanted.push({ x, addr: s.start + ((s.end - s.start) * (x - s.x0)) / (s.x1 - s.x0) });
    }
  }
  const placed: number[] = [];
  const out: string[] = [];
  for (const w of wanted) {
    if (placed.some((x) => Math.abs(x - w.x) < 15)) continue;
    placed.push(w.x);
    const x = p.x + w.x;
    const y = p.y + p.height;
    out.push(`<line x1="${x}" y1="${y}" x2="${x}" y2="${y + 5}" stroke="black"/>`);
    // Page-aligned, as addresses are read in /proc/PID/maps.
    const label = formatAddr(Math.round(w.addr / 4096) * 4096);
    out.push(text(x, y + 9, label, `font-size="11" text-anchor="end" transform="rotate(-45 ${x} ${y + 9})"`));
  }
  return out;
}

/** Marks over each cut gap, with its size above the plot (staggered when two are close). */
function cutMarks(axis: AddressAxis, p: PlotBox): string[] {
  const out: string[] = [];
  let lastX = -Infinity;
  let lane = 0;
  for (const c of axis.cuts) {
    const x = p.x + (c.x0 + c.x1) / 2;
    lane = x - lastX < 90 ? (lane + 1) % 3 : 0;
    lastX = x;
    const y = p.y - 8 - lane * 13;
    out.push(`<line x1="${x}" y1="${p.y - 4}" x2="${x}" y2="${p.y + p.height}" stroke="#444" stroke-dasharray="4 3"/>`);
    out.push(text(x, y, `✂ ${formatBytes(c.end - c.start)} gap`, 'font-size="10" text-anchor="middle" fill="#333"'));
  }
  return out;
}

function timeLabels(grid: HeatGrid, p: PlotBox): string[] {
  const spanS = (grid.rowNs * grid.rows) / 1e9;
  const ts = ticks(spanS, 8);
  const step = ts.length > 1 ? ts[1]! - ts[0]! : spanS || 1;
  const out: string[] = [];
  for (const s of ts) {
    const y = p.y + (spanS > 0 ? (s / spanS) * p.height : 0);
    out.push(`<line x1="${p.x - 5}" y1="${y}" x2="${p.x}" y2="${y}" stroke="black"/>`);
    out.push(text(p.x - 8, y + 4, formatSeconds(s, step), 'font-size="11" text-anchor="end"'));
  }
  return out;
}

function legend(t: ReportTarget, grid: HeatGrid, p: PlotBox): string[] {
  const x = p.x + p.width + 34;
  const w = 18;
  const out: string[] = [
    '<defs><linearGradient id="heat" x1="0" y1="1" x2="0" y2="0">',
    ...Array.from({ length: 11 }, (_, k) => `<stop offset="${k / 10}" stop-color="${cssColor(heatColor(k / 10))}"/>`),
    '</linearGradient></defs>',
    text(x - 6, p.y - 30, 'access frequency', 'font-size="12" font-weight="bold"'),
    text(x - 6, p.y - 16, t.maxFromIntervals ? '(% of max nr_accesses)' : '(% of busiest region)', 'font-size="10"'),
    `<rect x="${x}" y="${p.y}" width="${w}" height="${p.height}" fill="url(#heat)" stroke="black"/>`,
  ];
  const topPct = grid.highest * 100;
  const ts = ticks(topPct, 5);
  const step = ts.length > 1 ? ts[1]! - ts[0]! : 1;
  for (const v of ts) {
    const y = p.y + p.height - (topPct > 0 ? (v / topPct) * p.height : 0);
    out.push(`<line x1="${x + w}" y1="${y}" x2="${x + w + 4}" y2="${y}" stroke="black"/>`);
    out.push(text(x + w + 7, y + 4, `${v.toFixed(step >= 1 ? 0 : 1)}%`, 'font-size="11"'));
  }
  const maxNote = t.maxFromIntervals ? `100% = ${t.maxNrAccesses} nr_accesses` : `100% = ${t.maxNrAccesses} nr_accesses (no intervals stored)`;
  out.push(text(x - 6, p.y + p.height + 18, maxNote, 'font-size="10"'));
  out.push(`<rect x="${x}" y="${p.y + p.height + 30}" width="${w}" height="12" fill="${cssColor(NO_RECORD)}" stroke="black"/>`);
  out.push(text(x + w + 7, p.y + p.height + 40, 'no record', 'font-size="11"'));
  return out;
}

/** The heatmap of one target. Throws RangeError when it has more mapped spans than the width can show. */
export function drawHeatmap(t: ReportTarget, o: HeatmapOptions = {}): Heatmap {
  const plot: PlotBox = { x: MARGIN.left, y: MARGIN.top, width: o.plotWidth ?? 760, height: o.plotHeight ?? 480 };
  const width = MARGIN.left + plot.width + MARGIN.right;
  const height = MARGIN.top + plot.height + MARGIN.bottom;
  const axis = layAddressAxis(t, plot.width);
  const grid = heatGrid(t, axis, plot.height);
  const raster = rasterOf(grid, axis).toString('base64');
  const start = wallClock(grid.t0);
  const p = plot;
  const body = [
    text(p.x, 24, `${t.label}: access heatmap`, 'font-size="16" font-weight="bold"'),
    text(p.x, 42, `address across, time down; unmapped gaps cut (✂)${o.source ? ` · ${o.source}` : ''}`, 'font-size="11" fill="#333"'),
    `<image x="${p.x}" y="${p.y}" width="${p.width}" height="${p.height}" preserveAspectRatio="none" ` +
      `style="image-rendering:pixelated" href="data:image/png;base64,${raster}"/>`,
    `<rect x="${p.x}" y="${p.y}" width="${p.width}" height="${p.height}" fill="none" stroke="black"/>`,
    ...cutMarks(axis, p),
    ...addressLabels(axis, p),
    ...timeLabels(grid, p),
    ...legend(t, grid, p),
    text(p.x + p.width / 2, height - 14, 'address (mapped spans side by side; each scaled to its own size)', 'font-size="12" text-anchor="middle"'),
    text(22, p.y + p.height / 2, `time${start ? ` since ${start}` : ''}`, `font-size="12" text-anchor="middle" transform="rotate(-90 22 ${p.y + p.height / 2})"`),
  ];
  return { svg: svgDocument(width, height, body), width, height, plot, axis, grid };
}

