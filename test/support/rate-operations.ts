// Simulated operations whose pages are accessed at a RATE (Poisson events per second)
// rather than with a probability per sampling interval: a sampled page counts as accessed
// with probability 1 - exp(-rate * time since its check was armed). So a longer sampling
// interval sees more accesses, as on a real process: the workload for intervals tuning.
// One target; the rates change by phase (a hot range and a base rate for the rest).
import type { Operations, OpsContext } from '../../agent/engine/operations.js';
import { PAGE_SIZE, type Target } from '../../agent/engine/region.js';
import { initRegions } from '../../agent/ops/vaddr-regions.js';

export interface RatePhase {
  /** Phase length in microseconds of monitoring time; the last phase lasts for ever. */
  durationUs: number;
  /** Access events per second of each page in the hot range, and of every other page. */
  hotRate: number;
  baseRate: number;
  /** Where the hot range is in this phase; the workload's by default (a hot set that hops). */
  hot?: { start: number; end: number };
}

export interface RateWorkload {
  targetId: number;
  /** The target's one mapping, page aligned. */
  start: number;
  end: number;
  /** The hot range, inside the mapping (phases may move it). */
  hotStart: number;
  hotEnd: number;
  phases: RatePhase[];
}

export class RateOperations implements Operations {
  readonly name = 'synthetic';
  /** When the current checks were armed (monitoring time). */
  private armedAtUs = 0;

  constructor(readonly workload: RateWorkload) {
    const hops = workload.phases.flatMap((p) => (p.hot ? [p.hot.start, p.hot.end] : []));
    for (const v of [workload.start, workload.end, workload.hotStart, workload.hotEnd, ...hops]) {
      if (v % PAGE_SIZE !== 0) throw new RangeError(`rate workload: ${v} is not page aligned`);
    }
    if (workload.phases.length === 0) throw new RangeError('rate workload: at least one phase');
  }

  /** The phase in force at monitoring time `us`, and its index. */
  phaseAt(us: number): { phase: RatePhase; index: number } {
    let left = us;
    const ps = this.workload.phases;
    for (let i = 0; i < ps.length - 1; i++) {
      if (left < ps[i].durationUs) return { phase: ps[i], index: i };
      left -= ps[i].durationUs;
    }
    return { phase: ps[ps.length - 1], index: ps.length - 1 };
  }

  /** The hot range at monitoring time `us`. */
  hotAt(us: number): { start: number; end: number } {
    return this.phaseAt(us).phase.hot ?? { start: this.workload.hotStart, end: this.workload.hotEnd };
  }

  init(ctx: OpsContext): void {
    const w = this.workload;
    for (const t of ctx.targets) t.regions = initRegions([{ start: w.start, end: w.end }], ctx.attrs.minNrRegions);
  }

  update(): void {}

  prepareAccessChecks(ctx: OpsContext): void {
    const now = ctx.nowUs();
    for (const t of ctx.targets) {
      for (const r of t.regions) {
        const pages = (r.end - r.start) / PAGE_SIZE;
        r.samplingAddr = r.start + Math.floor(ctx.random() * pages) * PAGE_SIZE;
      }
    }
    this.armedAtUs = now;
  }

  checkAccesses(ctx: OpsContext): number {
    const now = ctx.nowUs();
    const seconds = (now - this.armedAtUs) / 1e6;
    const { phase } = this.phaseAt(now);
    const range = this.hotAt(now);
    let max = 0;
    for (const t of ctx.targets) {
      for (const r of t.regions) {
        const hot = r.samplingAddr >= range.start && r.samplingAddr < range.end;
        const p = 1 - Math.exp(-(hot ? phase.hotRate : phase.baseRate) * seconds);
        if (r.samplingAddr >= 0 && ctx.random() < p) r.nrAccesses++;
        max = Math.max(max, r.nrAccesses);
      }
    }
    return max;
  }

  targetValid(_t: Target): boolean {
    return true;
  }
}

/**
 * The fraction of the most possible access events an aggregation saw, size-weighted as
 * the kernel's intervals goal counts them (bytes x nrAccesses over bytes x maxNrAccesses).
 */
export function observedAccessRatio(rec: { maxNrAccesses: number; regions: readonly { start: number; end: number; nrAccesses: number }[] }): number {
  let events = 0;
  let bytes = 0;
  for (const r of rec.regions) {
    events += (r.end - r.start) * r.nrAccesses;
    bytes += r.end - r.start;
  }
  return bytes === 0 ? 0 : events / (bytes * rec.maxNrAccesses);
}
