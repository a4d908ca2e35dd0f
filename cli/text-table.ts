// Aligned columns and times for the fleet commands' text output. Every cell passes through
// excerpt(): what the controller returns (ids, hosts, messages) reaches a terminal, where a
// control character could move the cursor or retitle the window.
import { excerpt } from '../common/log.js';

/** A cell as shown: control characters escaped, at most `max` characters. */
export function cell(text: string, max = 200): string {
  return excerpt(text, max);
}

/** Rows under a header, columns padded to their widest cell (the last column is not padded). */
export function table(header: readonly string[], rows: readonly (readonly string[])[], indent = ''): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

/** "3.2s ago", "4m ago", "2h ago", "3d ago" from a past time in ms since the epoch. */
export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 60) return `${s.toFixed(1)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** "2026-12-03 15:30:01Z" (UTC, to the second) from ms since the epoch. */
export function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** "1.2 ms", "250 ms", "1.50 s" from microseconds. */
export function duration(us: number): string {
  if (us < 1000) return `${us.toFixed(0)} us`;
  if (us < 10_000) return `${(us / 1000).toFixed(2)} ms`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}
