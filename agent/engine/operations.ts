// The operations interface: the only way the core touches an address space.
// Modeled on the kernel's struct damon_operations; the core never knows which
// primitive (page_idle, synthetic, ...) it drives.
import type { Target } from './region.js';
import type { Attributes } from './attrs.js';
import type { SchemeActuator } from '../schemes/actuator.js';

/** What the core lends to operations: the targets and the monitoring clock. */
export interface OpsContext {
  readonly attrs: Attributes;
  readonly targets: readonly Target[];
  /** Monitoring time in microseconds (virtual in tests and benchmarks, real otherwise). */
  nowUs(): number;
  /** The context's random source, in [0, 1). Seeded in tests. */
  random(): number;
}

export interface Operations {
  /** Short name reported to users: "page_idle", "synthetic", ... */
  readonly name: string;
  /** Set up each target's initial regions (e.g. the three regions, split to min_nr_regions). */
  init(ctx: OpsContext): void;
  /** Apply mapping changes to the targets' regions; called every regions-update interval. */
  update(ctx: OpsContext): void;
  /** Pick a sampling address in every region and arm its access check. */
  prepareAccessChecks(ctx: OpsContext): void;
  /** Add the outcome of the armed checks to nrAccesses; return the largest nrAccesses seen. */
  checkAccesses(ctx: OpsContext): number;
  /** False once the target is gone (its process exited). */
  targetValid(target: Target): boolean;
  /** Release what the operations hold (open files, native handles); ends a sampleAggregation run. */
  cleanup?(ctx: OpsContext): void;
  /**
   * How these operations apply schemes' actions to a target (the kernel's
   * ops.apply_scheme); released by cleanup. Without it, only stat schemes can run.
   */
  readonly actuator?: SchemeActuator;
  /**
   * Optional batched form of prepareAccessChecks + checkAccesses, for operations that can
   * run the sampling intervals off the JavaScript thread: runs `nSamples` sampling
   * intervals of `samplingUs` (the interval now: attrs.samplingUs, or as an intervals goal
   * tuned it) over the targets' current regions (which stay fixed
   * meanwhile), adds the accesses to each region's nrAccesses and resolves once they are
   * done. A target whose checks failed rejects with TargetError after the other targets'
   * counts were added; a cleanup meanwhile resolves with stopped = true. The core uses it
   * in its real-time loop when offered; operations without it drive the same core one
   * sample at a time.
   */
  sampleAggregation?(ctx: OpsContext, nSamples: number, samplingUs: number): Promise<SampledIntervals>;
}

/** What one sampleAggregation run did. */
export interface SampledIntervals {
  /** Sampling intervals completed: nSamples unless stopped. */
  samples: number;
  /** Real time the run took, microseconds (from arming the first samples to the end of the last check). */
  wallUs: number;
  /** Real time the checks took, sleeps excluded, microseconds; when the operations measure it (check-budget.ts). */
  busyUs?: number;
  /** Checks that ended more than a whole interval late (the next window then restarted). */
  late: number;
  /** The run was cut short by cleanup. */
  stopped: boolean;
}

/** Raised by operations when the host cannot do what they need; says what is missing. */
export class OperationsUnavailableError extends Error {
  constructor(readonly ops: string, message: string) {
    super(`${ops} operations unavailable: ${message}`);
    this.name = 'OperationsUnavailableError';
  }
}

/** Raised when a target cannot be monitored (no such process, unreadable /proc files). */
export class TargetError extends Error {
  constructor(readonly targetId: number, message: string) {
    super(`target ${targetId}: ${message}`);
    this.name = 'TargetError';
  }
}
