// `report wss` as a picture: the working set size over time, one line per --acc_thres,
// with its percentiles (the table's rows) as dashed lines labelled at the right.
import { formatBytes } from '../agent/recorder/format.js';
import { svgDocument, text } from './render.js';
import { formatSeconds, ticks, wallClock } from './axis-labels.js';
import type { WssOptions, WssReport } from './wss.js';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
const PLOT = { x: 100, y: 70, width: 700, height: 360 };

/** Binary powers for a byte axis: about `n` ticks of a round size. */
export function byteTicks(max: number, n: number): number[] {
  if (!(max > 0)) return [0];
  let step = 1;
  while (max / step > n) step *= 2;
  const out: number[] = [];
  for (let v = 0; v <= max; v += step) out.push(v);
  return out;
}

export function drawWss(r: WssReport, o: WssOptions, source?: string): string {
  const p = PLOT;
  const width = p.x + p.width + 190;
  const height = p.y + p.height + 80;
  const t0 = r.target.records[0]!.startNs;
  const xs = r.endNs.map((e) => Number(e - t0) / 1e9);
  const spanS = Math.max(xs[xs.length - 1] ?? 0, 1e-9);
  const maxBytes = Math.max(1, ...r.columns.flatMap((c) => c.bytes));
  const yTicks = byteTicks(maxBytes, 6);
  const top = yTicks[yTicks.length - 1]! < maxBytes ? yTicks[yTicks.length - 1]! * 2 : Math.max(yTicks[yTicks.length - 1]!, 1);
  const X = (s: number) => p.x + (s / spanS) * p.width;
  const Y = (b: number) => p.y + p.height - (b / top) * p.height;
  const start = wallClock(t0);
  const body: string[] = [
    text(p.x, 24, `${r.target.label}: working set size over time`, 'font-size="16" font-weight="bold"'),
    text(p.x, 42, `damo wss semantics: --sz_thres ${o.szThres}, --exclude_samples ${o.excludeSamples}${source ? ` · ${source}` : ''}`, 'font-size="11" fill="#333"'),
    `<rect x="${p.x}" y="${p.y}" width="${p.width}" height="${p.height}" fill="none" stroke="black"/>`,
  ];
  for (const b of byteTicks(top, 6)) {
    body.push(`<line x1="${p.x - 5}" y1="${Y(b)}" x2="${p.x + p.width}" y2="${Y(b)}" stroke="#e0e0e0"/>`);
    body.push(text(p.x - 8, Y(b) + 4, formatBytes(b), 'font-size="11" text-anchor="end"'));
  }
  const ts = ticks(spanS, 8);
  const step = ts.length > 1 ? ts[1]! - ts[0]! : 1;
  for (const s of ts) {
    body.push(`<line x1="${X(s)}" y1="${p.y + p.height}" x2="${X(s)}" y2="${p.y + p.height + 5}" stroke="black"/>`);
    body.push(text(X(s), p.y + p.height + 18, formatSeconds(s, step), 'font-size="11" text-anchor="middle"'));
  }
  body.push(text(p.x + p.width / 2, height - 18, `time${start ? ` since ${start}` : ''}`, 'font-size="12" text-anchor="middle"'));
  body.push(text(24, p.y + p.height / 2, 'working set size', `font-size="12" text-anchor="middle" transform="rotate(-90 24 ${p.y + p.height / 2})"`));
  r.columns.forEach((c, k) => {
    const color = COLORS[k % COLORS.length]!;
    // A step line: each snapshot's size holds until the next one ends.
    const pts = c.bytes.map((b, i) => {
      const here = `${X(xs[i]!).toFixed(1)},${Y(b).toFixed(1)}`;
      return i === 0 ? here : `${X(xs[i - 1]!).toFixed(1)},${Y(b).toFixed(1)} ${here}`;
    });
    body.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    // Labels in a column per threshold, moved apart where percentiles lie close together.
    const labels = o.percentiles.map((pc, i) => ({ y: Y(c.atPercentiles[i]!), s: `p${pc} ${formatBytes(c.atPercentiles[i]!)}` }));
    let below = Infinity;
    for (const l of [...labels].sort((a, b) => b.y - a.y)) {
      body.push(`<line x1="${p.x}" y1="${l.y}" x2="${p.x + p.width}" y2="${l.y}" stroke="${color}" stroke-dasharray="3 4" stroke-opacity="0.6"/>`);
      const y = Math.min(l.y + 4, below - 12);
      below = y;
      body.push(text(p.x + p.width + 6 + k * 90, y, l.s, `font-size="10" fill="${color}"`));
    }
    body.push(`<line x1="${p.x + 10}" y1="${p.y + 14 + k * 16}" x2="${p.x + 34}" y2="${p.y + 14 + k * 16}" stroke="${color}" stroke-width="2"/>`);
    body.push(text(p.x + 40, p.y + 18 + k * 16, `--acc_thres ${c.accThres} (nr_accesses >= ${c.accThres} of ${r.target.maxNrAccesses})`, 'font-size="11"'));
  });
  return svgDocument(width, height, body);
}
