// Monitors of one workload process inside the guest, for the programs that compare them
// (test/guest/accuracy-run.ts, bench/guest-families-run.ts): the kernel's DAMON
// (KdamondContext) and the project's engine with the page_idle operations, each with its
// records as RecordJson, started one after the other and stopped once the workload
// exited; and the phase advance that gives every monitor the same number of aggregations
// of each phase.
import { DEFAULT_ATTRS } from '../../agent/engine/attrs.js';
import { DamonContext, type AdjustMode, type StopReason } from '../../agent/engine/context.js';
import { KdamondContext } from '../../agent/kdamond/kdamond-context.js';
import { PageIdleOperations } from '../../agent/ops/page-idle.js';
import { KDAMOND_PATHS } from '../../agent/daemon/ops-select.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { recordToJson, type RecordJson } from './record-json.js';
import type { WorkloadProcess } from './workload-process.js';

export interface EngineRun {
  /** kdamond, page_idle, page_idle_kernel_adjust or agent_kdamond. */
  name: string;
  records: RecordJson[];
  stopReason: string;
  error?: string;
  /** Drift, costs and counters, for the report. */
  info: Record<string, unknown>;
}

export interface Engine {
  start(): Promise<void>;
  /** Records delivered so far (one target: one per aggregation). */
  delivered(): number;
  /** Whether it stopped (it delivers no more). */
  ended(): boolean;
  /** Waits until it stopped by itself (its target exited), stopping it after timeoutMs. */
  end(timeoutMs: number): Promise<void>;
  result(): EngineRun;
}

/** The common part: records and the stop, for any context with DamonContext's events. */
function watch(name: string, ctx: DamonContext | KdamondContext, info: () => Record<string, unknown>): Engine {
  const records: RecordJson[] = [];
  let stopReason = 'running';
  let error: string | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  ctx.on('aggregate', (rec: AggregationRecord) => records.push(recordToJson(rec)));
  ctx.on('stopped', (reason: StopReason, err?: Error) => {
    stopReason = reason;
    error = err?.message;
    resolveStopped();
  });
  return {
    async start() {
      if (ctx instanceof DamonContext) ctx.start();
      else if (!(await ctx.start())) {
        // A failed start emits 'stopped' (with the cause) only after start() resolved.
        await stopped;
        throw new Error(`${name} did not start: ${stopReason} ${error ?? ''}`);
      }
    },
    delivered: () => records.length,
    ended: () => stopReason !== 'running',
    async end(timeoutMs) {
      const t = setTimeout(() => void ctx.stop(), timeoutMs);
      await stopped;
      clearTimeout(t);
    },
    result: () => ({ name, records, stopReason, ...(error === undefined ? {} : { error }), info: info() }),
  };
}

/** The kernel's DAMON on `pid` with DAMON's default attributes. */
export function kdamondEngine(pid: number): Engine {
  const ctx = new KdamondContext({ attrs: DEFAULT_ATTRS, targetIds: [pid], ...KDAMOND_PATHS });
  return watch('kdamond', ctx, () => ({ drift: ctx.drift(), costs: ctx.costs(), kdamondPid: ctx.kdamondPid }));
}

/** The project's engine on `pid` with the page_idle operations, DAMON's default attributes and the given split rule. */
export function pageIdleEngine(name: string, pid: number, adjust: AdjustMode): Engine {
  const ops = new PageIdleOperations();
  const ctx = new DamonContext({ attrs: DEFAULT_ATTRS, targetIds: [pid], ops, adjust });
  return watch(name, ctx, () => ({ adjust, drift: ctx.drift(), counters: ops.counters() }));
}

/**
 * Aggregations every monitor gets in each phase before the hot set moves: the bar's
 * window (10) and a steady part to score after it. Phases end on this count, not after a
 * fixed time, so a busy machine that slows the monitors down gives them longer phases
 * instead of fewer aggregations (the workload's phase length is then only an upper bound).
 */
export const PHASE_AGGREGATIONS = 25;

/**
 * Drives a workload of `nrPhases` phases under `engines` (already started): once every
 * engine delivered PHASE_AGGREGATIONS records in a phase (or stopped), ends the phase
 * (SIGUSR1); waits at most phaseMs + 10 s for each phase to start. Returns after the
 * last phase was ended; the workload then exits by itself.
 */
export async function advancePhases(w: WorkloadProcess, engines: readonly Engine[], nrPhases: number, phaseMs: number): Promise<void> {
  for (let p = 0; p < nrPhases; p++) {
    await w.waitFor('phase', phaseMs + 10_000, p);
    const at = engines.map((e) => e.delivered());
    const enough = () => engines.every((e, i) => e.ended() || e.delivered() - at[i] >= PHASE_AGGREGATIONS);
    while (!enough() && w.events.every((e) => e.event !== 'exit' && !(e.event === 'phase' && e.index > p))) {
      await new Promise((r) => setTimeout(r, 50));
    }
    w.nextPhase();
  }
}
