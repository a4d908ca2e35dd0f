// Human-readable sizes, addresses and heat strips for the terminal views.
import type { AggregationRecord } from '../records/record.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${UNITS[u]}`;
}

export function formatAddr(a: number): string {
  return '0x' + a.toString(16);
}

// Ten shades from idle to hottest; a person reads a strip faster than a table of numbers.
const SHADES = ' .:-=+*#%@';

/**
 * The record's monitored address space squeezed into `width` cells, each shaded by the
 * size-weighted access frequency of the regions under it. Gaps between regions (the
 * unmapped areas cut away by the three regions) are not drawn: cells cover monitored
 * bytes only, so a small hot range in a huge mapping still gets its cells.
 */
export function heatStrip(rec: AggregationRecord, width: number): string {
  const total = rec.regions.reduce((s, r) => s + (r.end - r.start), 0);
  if (total === 0 || width <= 0) return '';
  const max = Math.max(1, rec.maxNrAccesses);
  const cellBytes = total / width;
  const heat = new Float64Array(width);
  let offset = 0;
  for (const r of rec.regions) {
    const size = r.end - r.start;
    const freq = Math.min(1, r.nrAccesses / max);
    let from = offset;
    const to = offset + size;
    while (from < to) {
      const cell = Math.min(width - 1, Math.floor(from / cellBytes));
      const cellEnd = (cell + 1) * cellBytes;
      const part = Math.min(to, cellEnd) - from;
      heat[cell] += freq * part;
      from += part;
      if (part <= 0) break;
    }
    offset = to;
  }
  let out = '';
  for (let i = 0; i < width; i++) {
    const f = heat[i] / cellBytes;
    out += SHADES[Math.min(SHADES.length - 1, Math.round(f * (SHADES.length - 1)))];
  }
  return out;
}
