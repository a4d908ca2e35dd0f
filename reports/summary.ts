// `report summary`: what a person at a terminal wants first about each target: how long
// and how much was monitored, where the mapped memory is (and the gaps cut between), the
// working set at damo's threshold and at a majority of samples, the hottest ranges over
// the whole time, and a one-line heat strip of the address space.
import { formatAddr, formatBytes } from '../agent/recorder/format.js';
import { layAddressAxis, mappedSpans, type AddressAxis } from './address-axis.js';
import { heatGrid } from './heat-grid.js';
import { timeSpanNs, type ReportTarget } from './report-input.js';
import { wallClock } from './axis-labels.js';
import { DAMO_WSS_DEFAULTS, percentileOf, recorderAccThres, wssBytes } from './wss.js';

const SHADES = ' .:-=+*#%@';

/**
 * The hot ranges over the whole time: runs of adjacent addresses whose time-weighted mean
 * frequency is at least half the hottest address's, hottest (by mean) first.
 */
function hottestOverall(t: ReportTarget, n: number): { start: number; end: number; freq: number }[] {
  // A sweep over the regions' edges: each record adds its time-weighted frequency at a
  // region's start and takes it back at its end; sums between edges are the heat.
  const delta = new Map<number, number>();
  let total = 0;
  for (const r of t.records) {
    const w = Math.max(1, Number(r.endNs - r.startNs));
    total += w;
    for (const g of r.regions) {
      const h = (w * g.nrAccesses) / t.maxNrAccesses;
      delta.set(g.start, (delta.get(g.start) ?? 0) + h);
      delta.set(g.end, (delta.get(g.end) ?? 0) - h);
    }
  }
  const edges = [...delta.keys()].sort((a, b) => a - b);
  const pieces: { start: number; end: number; freq: number }[] = [];
  let level = 0;
  for (let i = 0; i + 1 < edges.length; i++) {
    level += delta.get(edges[i]!)!;
    pieces.push({ start: edges[i]!, end: edges[i + 1]!, freq: level / total });
  }
  const top = Math.max(0, ...pieces.map((p) => p.freq));
  if (top <= 1e-12) return [];
  const runs: { start: number; end: number; weighted: number }[] = [];
  for (const p of pieces) {
    if (p.freq < top / 2) continue;
    const last = runs[runs.length - 1];
    if (last && last.end === p.start) {
      last.end = p.end;
      last.weighted += p.freq * (p.end - p.start);
    } else runs.push({ start: p.start, end: p.end, weighted: p.freq * (p.end - p.start) });
  }
  return runs
    .map((r) => ({ start: r.start, end: r.end, freq: r.weighted / (r.end - r.start) }))
    .sort((a, b) => b.freq - a.freq)
    .slice(0, n);
}

function strip(t: ReportTarget, width: number): { line: string; axis: AddressAxis } {
  const axis = layAddressAxis(t, width, 1);
  const grid = heatGrid(t, axis, 1);
  const top = grid.highest > 0 ? grid.highest : 1;
  const onCut = new Set(axis.cuts.flatMap((c) => Array.from({ length: c.x1 - c.x0 }, (_, k) => c.x0 + k)));
  let line = '';
  for (let c = 0; c < width; c++) {
    const v = grid.values[c]!;
    line += onCut.has(c) ? '|' : Number.isNaN(v) ? ' ' : SHADES[Math.min(9, Math.round((v / top) * 9))];
  }
  return { line, axis };
}

export function summaryText(t: ReportTarget, width = 72): string {
  const { t0, t1 } = timeSpanNs(t);
  const secs = Number(t1 - t0) / 1e9;
  const spans = mappedSpans(t);
  const mapped = spans.reduce((a, s) => a + (s.end - s.start), 0);
  const last = t.records[t.records.length - 1]!;
  const majority = recorderAccThres(t.maxNrAccesses);
  const lines = [
    `${t.label}: ${t.records.length} snapshot(s) over ${secs.toFixed(1)} s${wallClock(t0) ? ` from ${wallClock(t0)}` : ''}, ` +
      `${last.regions.length} region(s) in the last; 100% access frequency = ${t.maxNrAccesses} nr_accesses` +
      `${t.maxFromIntervals ? '' : ' (the highest seen: the file stores no intervals)'}`,
    `  mapped: ${formatBytes(mapped)} in ${spans.length} span(s): ` +
      spans.map((s) => `${formatAddr(s.start)}-${formatAddr(s.end)} (${formatBytes(s.end - s.start)})`).join(', '),
  ];
  for (const thres of [DAMO_WSS_DEFAULTS.accThres[0]!, majority]) {
    const sorted = t.records.map((r) => wssBytes(r.regions, thres, 1)).sort((a, b) => a - b);
    lines.push(
      `  working set, --acc_thres ${thres}${thres === majority ? ' (half the samples, the recorder\'s column)' : ' (damo\'s default)'}: ` +
        `p50 ${formatBytes(percentileOf(sorted, 50)!)}, p90 ${formatBytes(percentileOf(sorted, 90)!)}, max ${formatBytes(sorted[sorted.length - 1]!)} (all snapshots)`,
    );
    if (majority === 1) break;
  }
  const hot = hottestOverall(t, 3);
  lines.push(
    hot.length
      ? `  hottest over the whole time: ${hot.map((h) => `${formatAddr(h.start)}-${formatAddr(h.end)} (${formatBytes(h.end - h.start)}, ${(h.freq * 100).toFixed(1)}%)`).join(', ')}`
      : '  no access seen',
  );
  try {
    const { line } = strip(t, width);
    lines.push(`  heat, whole time, address across ('|' = a cut gap): [${line}]`);
  } catch {
    lines.push(`  (${spans.length} mapped spans: too many for a ${width}-column strip)`);
  }
  return lines.join('\n') + '\n';
}
