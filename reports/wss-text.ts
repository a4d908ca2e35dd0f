// `report wss` for terminals and scripts: damo's percentile table (one column per
// --acc_thres, sizes human-readable or, with --raw_number, in bytes), and the same
// figures as JSON.
import { formatBytes } from '../agent/recorder/format.js';
import type { WssOptions, WssReport, WssWindow } from './wss.js';

function header(r: WssReport, o: WssOptions): string {
  const n = r.endNs.length;
  return (
    `# ${r.target.label}: working set size of ${n} snapshot(s)` +
    `${r.excluded > 0 ? `, the first ${r.excluded} excluded (--exclude_samples ${o.excludeSamples})` : ''}` +
    `; a region counts when nr_accesses >= --acc_thres (of ${r.target.maxNrAccesses}${r.target.maxFromIntervals ? '' : ', the highest seen'})` +
    ` and size >= --sz_thres ${o.szThres}`
  );
}

/** The table for one target; `raw` prints bytes as plain integers (damo's --raw_number). */
export function wssTable(r: WssReport, o: WssOptions, raw: boolean): string {
  const fmt = (v: number) => (raw ? String(Math.round(v)) : formatBytes(Math.round(v)));
  const heads = r.columns.map((c) => `--acc_thres ${c.accThres}`);
  const w = Math.max(16, ...heads.map((h) => h.length + 2));
  const lines = [header(r, o)];
  if (r.endNs.length === 0) {
    lines.push(
      `# no snapshot left: the target has ${r.excluded} and --exclude_samples is ${o.excludeSamples} (damo's default is 20; pass --exclude_samples 0)`,
    );
    return lines.join('\n') + '\n';
  }
  lines.push(`${'percentile'.padEnd(10)}${heads.map((h) => h.padStart(w)).join('')}`);
  lines.push(`${'avg'.padEnd(10)}${r.columns.map((c) => fmt(c.average).padStart(w)).join('')}`);
  o.percentiles.forEach((p, i) => {
    lines.push(`${String(p).padEnd(10)}${r.columns.map((c) => fmt(c.atPercentiles[i]!).padStart(w)).join('')}`);
  });
  return lines.join('\n') + '\n';
}

/** One row per window of time: its percentiles at each threshold. */
export function wssWindowsTable(r: WssReport, o: WssOptions, windows: WssWindow[], raw: boolean): string {
  const fmt = (v: number) => (raw ? String(Math.round(v)) : formatBytes(Math.round(v)));
  const secs = (ns: bigint) => `${(Number(ns) / 1e9).toFixed(1)}s`;
  const lines: string[] = [];
  r.columns.forEach((c, k) => {
    lines.push(`# ${r.target.label}, --acc_thres ${c.accThres}: percentiles per window of time (seconds after the first record)`);
    lines.push(`${'window'.padEnd(16)}${'snapshots'.padStart(10)}${o.percentiles.map((p) => `p${p}`.padStart(12)).join('')}`);
    for (const w of windows) {
      lines.push(`${`${secs(w.fromNs)}-${secs(w.toNs)}`.padEnd(16)}${String(w.snapshots).padStart(10)}${w.atPercentiles[k]!.map((v) => fmt(v).padStart(12)).join('')}`);
    }
  });
  return lines.join('\n') + '\n';
}

/** Everything the tables show plus the per-snapshot sizes, for scripts. */
export function wssJson(reports: WssReport[], o: WssOptions, windows?: (r: WssReport) => WssWindow[]): unknown {
  return reports.map((r) => ({
    target: r.target.label,
    maxNrAccesses: r.target.maxNrAccesses,
    szThres: o.szThres,
    excludedSnapshots: r.excluded,
    snapshots: r.endNs.length,
    endTimesNs: r.endNs.map(String),
    thresholds: r.columns.map((c) => ({
      accThres: c.accThres,
      average: c.average,
      percentiles: Object.fromEntries(o.percentiles.map((p, i) => [String(p), c.atPercentiles[i]])),
      bytes: c.bytes,
    })),
    ...(windows
      ? {
          windows: windows(r).map((w) => ({
            fromNs: String(w.fromNs),
            toNs: String(w.toNs),
            snapshots: w.snapshots,
            percentiles: r.columns.map((c, k) => ({
              accThres: c.accThres,
              ...Object.fromEntries(o.percentiles.map((p, i) => [String(p), w.atPercentiles[k]![i]])),
            })),
          })),
        }
      : {}),
  }));
}
