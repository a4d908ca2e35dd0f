// The contract every monitoring engine keeps (the project's DamonContext, the kernel's
// DAMON through KdamondContext), so the agent drives either the way mm/damon/sysfs.c
// drives any context through damon_start()/damon_stop().
import type { EventEmitter } from 'node:events';
import type { AggregationRecord } from '../records/record.js';
import type { IntervalStats } from './stats-window.js';
import type { SchemeStats } from '../../gen/damon/v1/damon.js';

export type StopReason = 'off' | 'no-targets' | 'error';

export interface MonitorEvents {
  /** Once per live target per aggregation interval. */
  aggregate: [record: AggregationRecord];
  /** Once per target the engine finds gone; it sends no more records for it. */
  targetExited: [targetId: number];
  /** Exactly once; a failed start is reported here too, as ('error', why). */
  stopped: [reason: StopReason, error?: Error];
}

export interface DriftStats {
  /** Real time between the starts of consecutive sampling steps. */
  sampling: IntervalStats;
  /** Real time between consecutive aggregations (the first from start()); configuredUs is aggregationUs. */
  aggregation: IntervalStats;
  /** Wall time one step took (batched loop: the JavaScript work of one batch). */
  stepWallUs: IntervalStats;
  /** Process CPU time (all threads, from process.cpuUsage) during one step (batched: its JavaScript work). */
  stepCpuUs: IntervalStats;
  /** Sampling slots skipped because the loop was more than one interval late (batched: windows restarted late). */
  missedSamples: number;
  /**
   * Measured real time per region check, microseconds, and the regions the split may
   * leave at that cost (check-budget.ts); null where the engine does not measure it.
   */
  checkCost: { perCheckUs: number; affordableRegions: number } | null;
}

/** The intervals an engine runs with, in microseconds. */
export interface Intervals {
  samplingUs: number;
  aggregationUs: number;
}

export interface Monitor extends EventEmitter<MonitorEvents> {
  /** True until 'stopped' was emitted. */
  readonly running: boolean;
  /**
   * True once monitoring began (the engine holds its targets: operations initialized, or
   * the kdamond turned on); a context whose start failed before that never held anything.
   */
  readonly started: boolean;
  /**
   * Starts monitoring. Resolves true once it runs, false if it could not start ('stopped'
   * says why). Throws at once when called twice or after the monitor stopped.
   */
  start(): Promise<boolean>;
  /** Stops monitoring and releases what the engine holds; resolves once 'stopped' was emitted. */
  stop(): Promise<void>;
  /** Real interval lengths measured while running. */
  drift(): DriftStats;
  /** The sampling and aggregation intervals now: as set, or as an intervals goal tuned them. */
  intervals(): Intervals;
  /** The statistics of attrs.schemes since this engine started, by scheme index; [] without schemes. */
  schemeStats?(): SchemeStats[];
}
