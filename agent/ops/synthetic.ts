// The "synthetic" operations: SIMULATED access checks against a declared workload
// (synthetic-workload.ts), for tests, benchmarks and demos. No process is observed: a
// sampled page counts as accessed with the probability the workload declares for it at
// that moment. Because the workload is declared, the ground truth (hot byte ranges) is
// known at any time, which is what the accuracy tests score the engine against.
//
// The cost of one check is a search over the target's mappings and the current phase's
// ranges per region, started from where the previous region's landed (regions are
// sorted): O(regions x log ranges) at worst, whatever the size of the target.
import type { Operations, OpsContext } from '../engine/operations.js';
import { TargetError } from '../engine/operations.js';
import { PAGE_SIZE, type Target } from '../engine/region.js';
import { setRegions, type AddressRange } from '../engine/set-regions.js';
import { initRegions, threeRegions } from './vaddr-regions.js';
import { SyntheticActuator } from './synthetic-actuator.js';
import {
  exitedAt, hotRanges, layoutAt, phaseAt, probabilityRuns, ProbabilityCursor,
  type ProbabilityRange, type Span, type Workload, type WorkloadTarget,
} from './synthetic-workload.js';

/**
 * The ranges a target is monitored over: the three regions of its mappings, as the vaddr
 * operations do; with fewer than two gaps between mappings there is nothing to cut
 * away, so the mappings themselves.
 */
export function monitoredRanges(mappings: readonly Span[]): AddressRange[] {
  let gaps = 0;
  for (let i = 1; i < mappings.length; i++) if (mappings[i].start > mappings[i - 1].end) gaps++;
  if (gaps >= 2) return threeRegions(mappings);
  // Adjacent mappings form one range.
  const out: AddressRange[] = [];
  for (const m of mappings) {
    const last = out[out.length - 1];
    if (last && last.end === m.start) last.end = m.end;
    else out.push({ start: m.start, end: m.end });
  }
  return out;
}

export class SyntheticOperations implements Operations {
  readonly name = 'synthetic';
  /** Actions count as applied and change nothing (synthetic-actuator.ts). */
  readonly actuator = new SyntheticActuator();
  /** Always true: these accesses are simulated from a declared workload, never observed. */
  readonly simulated = true;

  private ctx: OpsContext | undefined;
  private originUs = 0;
  private readonly byId = new Map<number, WorkloadTarget>();

  constructor(readonly workload: Workload) {
    for (const t of workload.targets) this.byId.set(t.id, t);
  }

  /** The target ids the workload declares, to hand to the context. */
  targetIds(): number[] {
    return this.workload.targets.map((t) => t.id);
  }

  /** Workload time (µs since init) at the context's time `nowUs`; the current time by default. */
  workloadTimeUs(nowUs?: number): number {
    const ctx = this.requireCtx();
    return (nowUs ?? ctx.nowUs()) - this.originUs;
  }

  private requireCtx(): OpsContext {
    if (!this.ctx) throw new Error('synthetic operations: used before init()');
    return this.ctx;
  }

  private declared(id: number): WorkloadTarget {
    const t = this.byId.get(id);
    if (!t) {
      throw new TargetError(id, `the synthetic workload "${this.workload.name}" declares no such target (it has ${this.targetIds().join(', ')})`);
    }
    return t;
  }

  init(ctx: OpsContext): void {
    this.ctx = ctx;
    this.originUs = ctx.nowUs();
    for (const target of ctx.targets) {
      const w = this.declared(target.id);
      target.regions = initRegions(monitoredRanges(layoutAt(w, 0).mappings), ctx.attrs.minNrRegions);
    }
  }

  update(ctx: OpsContext): void {
    const t = ctx.nowUs() - this.originUs;
    for (const target of ctx.targets) {
      const w = this.declared(target.id);
      target.regions = setRegions(target.regions, monitoredRanges(layoutAt(w, t).mappings));
    }
  }

  prepareAccessChecks(ctx: OpsContext): void {
    for (const target of ctx.targets) {
      for (const r of target.regions) {
        // A random page of the region, as vaddr samples a random address in it.
        const pages = (r.end - r.start) / PAGE_SIZE;
        r.samplingAddr = r.start + Math.floor(ctx.random() * pages) * PAGE_SIZE;
      }
    }
  }

  checkAccesses(ctx: OpsContext): number {
    const t = ctx.nowUs() - this.originUs;
    let max = 0;
    for (const target of ctx.targets) {
      const w = this.declared(target.id);
      const gone = exitedAt(w, t);
      const cursor = new ProbabilityCursor(w, layoutAt(w, t).mappings, phaseAt(w, t));
      for (const r of target.regions) {
        // A page of an exited process, or an unprepared region, is never accessed.
        if (!gone && r.samplingAddr >= 0) {
          const p = cursor.at(r.samplingAddr);
          if (p > 0 && ctx.random() < p) r.nrAccesses++;
        }
        if (r.nrAccesses > max) max = r.nrAccesses;
      }
    }
    return max;
  }

  targetValid(target: Target): boolean {
    return !exitedAt(this.declared(target.id), this.workloadTimeUs());
  }

  // ---- Ground truth (simulation only) ----

  /** The hot byte ranges of a target at context time `nowUs` (now by default). */
  hotRanges(targetId: number, nowUs?: number): Span[] {
    return hotRanges(this.declared(targetId), this.workloadTimeUs(nowUs));
  }

  /** The mapped byte ranges of a target at context time `nowUs` (now by default). */
  mappedRanges(targetId: number, nowUs?: number): Span[] {
    return layoutAt(this.declared(targetId), this.workloadTimeUs(nowUs)).mappings.map((m) => ({ ...m }));
  }

  /** The mapped address space cut into runs of constant access probability. */
  probabilityRuns(targetId: number, nowUs?: number): ProbabilityRange[] {
    return probabilityRuns(this.declared(targetId), this.workloadTimeUs(nowUs));
  }

  /**
   * What DAMON's regions avoid: one access check for every mapped page, from `fromAddr`
   * for at most `maxPages` pages (all of them by default), with the same per-check work as
   * a region's check (a random draw against the page's probability; the probability
   * lookup is amortized by walking the runs in order, which favours this scan).
   * Returns the number of pages checked and found accessed.
   */
  checkEveryPage(targetId: number, fromAddr = 0, maxPages = Infinity): { pages: number; accessed: number } {
    const ctx = this.requireCtx();
    const w = this.declared(targetId);
    const t = this.workloadTimeUs();
    if (exitedAt(w, t)) return { pages: 0, accessed: 0 };
    const random = ctx.random.bind(ctx);
    let pages = 0;
    let accessed = 0;
    for (const run of probabilityRuns(w, t)) {
      if (run.end <= fromAddr) continue;
      const first = Math.max(run.start, fromAddr - (fromAddr % PAGE_SIZE));
      const n = Math.min((run.end - first) / PAGE_SIZE, maxPages - pages);
      const p = run.probability;
      for (let i = 0; i < n; i++) {
        if (random() < p) accessed++;
      }
      pages += n;
      if (pages >= maxPages) break;
    }
    return { pages, accessed };
  }
}
