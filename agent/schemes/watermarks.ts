// When a scheme may act (the kernel's damos_wmark_wait_us): the host's free memory rate,
// in permil of its total, read every interval_us. Above the high watermark or below the
// low one the scheme is deactivated; an inactive scheme is activated once the metric
// comes down to the mid watermark or below (and not below low); in between it keeps its
// state. A new scheme starts active, as the kernel's does. Unlike the kernel, whose
// kdamond stops monitoring while every scheme is inactive, monitoring goes on: only the
// actions wait.
import fs from 'node:fs';
import type { WatermarksSpec } from './scheme.js';

/** The free memory rate of this host, permil: MemFree / MemTotal of /proc/meminfo (the kernel's NR_FREE_PAGES / totalram_pages). */
export function freeMemRatePermil(meminfo = '/proc/meminfo'): number {
  const text = fs.readFileSync(meminfo, 'utf8');
  const kb = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text);
    if (!m) throw new Error(`${meminfo} has no ${name} line`);
    return Number(m[1]);
  };
  const total = kb('MemTotal');
  if (total <= 0) throw new Error(`${meminfo}: MemTotal is 0`);
  return Math.floor((kb('MemFree') * 1000) / total);
}

/** The activation rule: the new state for a metric value, from the current one. */
export function nextActivation(w: Pick<WatermarksSpec, 'highPermil' | 'midPermil' | 'lowPermil'>, metric: number, activated: boolean): boolean {
  if (metric > w.highPermil || metric < w.lowPermil) return false;
  if (metric >= w.midPermil && !activated) return false;
  return true;
}

export class WatermarkState {
  activated = true;
  /** Monitoring time of the next check, microseconds. */
  private nextCheckUs = 0;

  constructor(readonly spec: WatermarksSpec | null) {}

  /** Checks the metric when a check is due; returns whether the scheme is active. */
  check(nowUs: number, metric: () => number): boolean {
    if (this.spec === null || this.spec.metric === 'none') return this.activated;
    if (nowUs < this.nextCheckUs) return this.activated;
    this.nextCheckUs = nowUs + this.spec.intervalUs;
    this.activated = nextActivation(this.spec, metric(), this.activated);
    return this.activated;
  }
}
