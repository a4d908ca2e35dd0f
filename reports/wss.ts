// `report wss`: the working set size of each snapshot and its distribution, computed as
// damo's `wss` computes it, with damo's option names and defaults, so that the figures
// can be compared with damo's one for one:
//   --acc_thres N      a region is in the working set when its nr_accesses >= N (default 1)
//   --sz_thres B       ... and its size >= B bytes (default 1)
//   --exclude_samples K  the first K snapshots of each target are left out (default 20)
//   --range S E STEP   percentiles S, S+STEP, ... below E (default 0 101 25)
// A percentile p is the value at index floor(p/100 × n) of the sizes sorted ascending
// (the last one for p = 100), as damo's get_percentile picks it.
import { DEFAULT_WORKING_SET_THRESHOLD } from '../agent/engine/working-set.js';
import type { ReportTarget } from './report-input.js';

export interface WssOptions {
  /** One or more --acc_thres values: one column (and one plot line) each. */
  accThres: number[];
  szThres: number;
  excludeSamples: number;
  percentiles: number[];
}

export const DAMO_WSS_DEFAULTS: Readonly<WssOptions> = Object.freeze({
  accThres: [1],
  szThres: 1,
  excludeSamples: 20,
  percentiles: [0, 25, 50, 75, 100],
});

export interface WssColumn {
  accThres: number;
  /** Per snapshot kept, in time order. */
  bytes: number[];
  average: number;
  /** Same order as the options' percentiles. */
  atPercentiles: number[];
}

export interface WssReport {
  target: ReportTarget;
  /** End times of the snapshots kept, in time order. */
  endNs: bigint[];
  /** Snapshots left out by --exclude_samples. */
  excluded: number;
  columns: WssColumn[];
}

/** The working set size of one snapshot's regions, as damo's get_wss_dists sums it. */
export function wssBytes(regions: readonly { start: number; end: number; nrAccesses: number }[], accThres: number, szThres: number): number {
  let total = 0;
  for (const r of regions) {
    const size = r.end - r.start;
    if (r.nrAccesses < accThres || size < szThres) continue;
    total += size;
  }
  return total;
}

/** damo's get_percentile over values sorted ascending; null when there are none. */
export function percentileOf(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const idx = Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length));
  return sorted[idx]!;
}

export function wssReport(t: ReportTarget, o: WssOptions): WssReport {
  const kept = t.records.slice(o.excludeSamples);
  const columns = o.accThres.map((thres) => {
    const bytes = kept.map((r) => wssBytes(r.regions, thres, o.szThres));
    const sorted = [...bytes].sort((a, b) => a - b);
    return {
      accThres: thres,
      bytes,
      average: bytes.length ? bytes.reduce((a, b) => a + b, 0) / bytes.length : 0,
      atPercentiles: o.percentiles.map((p) => percentileOf(sorted, p) ?? 0),
    };
  });
  return { target: t, endNs: kept.map((r) => r.endNs), excluded: t.records.length - kept.length, columns };
}

/**
 * The --acc_thres that equals the recorder's working set (agent/engine/working-set.ts:
 * regions accessed in at least DEFAULT_WORKING_SET_THRESHOLD of the samples): 10 at the
 * default intervals (max nr_accesses 20).
 */
export function recorderAccThres(maxNrAccesses: number): number {
  return Math.max(1, Math.ceil(DEFAULT_WORKING_SET_THRESHOLD * maxNrAccesses - 1e-9));
}

/** The percentiles of the snapshots that end within one window of time. */
export interface WssWindow {
  /** Window bounds, nanoseconds after the target's first record starts. */
  fromNs: bigint;
  toNs: bigint;
  snapshots: number;
  /** Per column (threshold), in the options' percentile order. */
  atPercentiles: number[][];
}

/**
 * The report's snapshots cut into consecutive windows of `everyNs` from the target's
 * first record, each with its own percentiles: how the distribution moves over time.
 * Windows without a snapshot are left out.
 */
export function wssWindows(r: WssReport, o: WssOptions, everyNs: bigint): WssWindow[] {
  const t0 = r.target.records[0]!.startNs;
  const groups = new Map<bigint, number[]>();
  r.endNs.forEach((end, i) => {
    // A snapshot ending exactly on a boundary belongs to the window it closes.
    const k = end > t0 ? (end - t0 - 1n) / everyNs : 0n;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(i);
  });
  return [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, idx]) => ({
      fromNs: k * everyNs,
      toNs: (k + 1n) * everyNs,
      snapshots: idx.length,
      atPercentiles: r.columns.map((c) => {
        const sorted = idx.map((i) => c.bytes[i]!).sort((a, b) => a - b);
        return o.percentiles.map((p) => percentileOf(sorted, p)!);
      }),
    }));
}
