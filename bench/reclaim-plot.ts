// The reclaim benchmark's picture: the workload's anonymous resident memory over time,
// one line per way (one round each), from the monitor's start, with the hot set marked.
// Drawn with the reports' SVG helpers (reports/render.ts, the byte axis of `report wss`).
import { formatBytes } from '../agent/recorder/format.js';
import { formatSeconds, ticks } from '../reports/axis-labels.js';
import { svgDocument, text } from '../reports/render.js';
import { byteTicks } from '../reports/wss-plot.js';
import type { ReclaimRun } from '../test/guest/reclaim-run.js';
import { WORKLOAD } from '../test/guest/reclaim-scenario.js';

const COLORS: Record<string, string> = { baseline: '#7f7f7f', kdamond: '#1f77b4', engine: '#d62728', optimizer: '#2ca02c' };
const PLOT = { x: 100, y: 70, width: 700, height: 360 };

export function drawReclaim(runs: readonly ReclaimRun[], subtitle: string): string {
  const p = PLOT;
  const width = p.x + p.width + 40;
  const height = p.y + p.height + 70;
  // From the monitor's start; the memory just before it is drawn at 0.
  const series = runs.map((r) => {
    const before = r.samples.filter((s) => s.tMs < r.monitorStartMs).at(-1);
    const after = r.samples.filter((s) => s.tMs >= r.monitorStartMs);
    return {
      way: r.way,
      pts: [...(before ? [{ t: 0, b: before.rssAnonKiB * 1024 }] : []), ...after.map((s) => ({ t: (s.tMs - r.monitorStartMs) / 1000, b: s.rssAnonKiB * 1024 }))],
    };
  });
  const tMin = 0;
  const tMax = Math.max(1, ...series.flatMap((s) => s.pts.map((x) => x.t)));
  const maxBytes = Math.max(WORKLOAD.sizeBytes, ...series.flatMap((s) => s.pts.map((x) => x.b)));
  // One more step of the byte axis above the largest value (256.6 MiB: up to 320 MiB, not 512).
  const yStep = byteTicks(maxBytes, 6)[1] ?? maxBytes;
  const top = Math.ceil(maxBytes / yStep) * yStep;
  const yTicks = Array.from({ length: top / yStep + 1 }, (_, i) => i * yStep);
  const X = (t: number) => p.x + ((t - tMin) / (tMax - tMin)) * p.width;
  const Y = (b: number) => p.y + p.height - (b / top) * p.height;
  const body: string[] = [
    text(p.x, 24, 'Proactive reclaim in the guest: the workload\'s anonymous resident memory', 'font-size="16" font-weight="bold"'),
    text(p.x, 42, subtitle, 'font-size="11" fill="#333"'),
    `<rect x="${p.x}" y="${p.y}" width="${p.width}" height="${p.height}" fill="none" stroke="black"/>`,
  ];
  for (const b of yTicks) {
    body.push(`<line x1="${p.x - 5}" y1="${Y(b)}" x2="${p.x + p.width}" y2="${Y(b)}" stroke="#e0e0e0"/>`);
    body.push(text(p.x - 8, Y(b) + 4, formatBytes(b), 'font-size="11" text-anchor="end"'));
  }
  const ts = ticks(tMax, 8);
  const step = ts.length > 1 ? ts[1]! - ts[0]! : 1;
  for (const t of ts) {
    body.push(`<line x1="${X(t)}" y1="${p.y + p.height}" x2="${X(t)}" y2="${p.y + p.height + 5}" stroke="black"/>`);
    body.push(text(X(t), p.y + p.height + 18, formatSeconds(t, step), 'font-size="11" text-anchor="middle"'));
  }
  body.push(text(p.x + p.width / 2, height - 18, 'time since the monitor started', 'font-size="12" text-anchor="middle"'));
  body.push(text(24, p.y + p.height / 2, 'RssAnon', `font-size="12" text-anchor="middle" transform="rotate(-90 24 ${p.y + p.height / 2})"`));
  body.push(`<line x1="${p.x}" y1="${Y(WORKLOAD.hotBytes)}" x2="${p.x + p.width}" y2="${Y(WORKLOAD.hotBytes)}" stroke="black" stroke-dasharray="4 4"/>`);
  body.push(text(p.x + p.width - 4, Y(WORKLOAD.hotBytes) - 4, `hot set ${formatBytes(WORKLOAD.hotBytes)}`, 'font-size="10" text-anchor="end"'));
  series.forEach((s, k) => {
    const color = COLORS[s.way] ?? '#000';
    body.push(`<polyline points="${s.pts.map((x) => `${X(x.t).toFixed(1)},${Y(x.b).toFixed(1)}`).join(' ')}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    body.push(`<line x1="${p.x + p.width - 150}" y1="${p.y + 14 + k * 16}" x2="${p.x + p.width - 126}" y2="${p.y + 14 + k * 16}" stroke="${color}" stroke-width="2"/>`);
    body.push(text(p.x + p.width - 120, p.y + 18 + k * 16, s.way, 'font-size="11"'));
  });
  return svgDocument(width, height, body);
}
