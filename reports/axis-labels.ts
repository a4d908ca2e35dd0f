// Tick positions and labels for the reports' time and size axes.
import { isWallClockNs } from './report-input.js';

/** Round steps: 1, 2, 5 times a power of ten. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/** About `n` round values from 0 to `max` inclusive of 0 (and of max's round neighbour below). */
export function ticks(max: number, n: number): number[] {
  if (!(max > 0)) return [0];
  const step = niceStep(max / n);
  const out: number[] = [];
  for (let v = 0; v <= max * (1 + 1e-9); v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Seconds with as many decimals as the step between ticks needs: "0 s", "2.5 s". */
export function formatSeconds(s: number, step: number): string {
  const decimals = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)));
  return `${s.toFixed(decimals)} s`;
}

/** An absolute wall-clock time for titles, or null when the values are not wall-clock (a monotonic time base). */
export function wallClock(ns: bigint): string | null {
  if (!isWallClockNs(ns)) return null;
  return new Date(Number(ns / 1_000_000n)).toISOString().replace(/\.\d+Z$/, 'Z');
}
