// Which operations this host can monitor with, and which one a session gets: the best
// real one the host supports when the spec leaves it empty (kdamond, once the agent has
// it, then page_idle), what the spec names otherwise, and "synthetic" only when asked
// for. When nothing fits, the reason is the session's message: what the host lacks.
import type { Operations } from '../engine/operations.js';
import { PageIdleOperations, type PageIdleProbe } from '../ops/page-idle.js';
import { SyntheticOperations } from '../ops/synthetic.js';
import { PRESET_NAMES, presetWorkload } from '../ops/synthetic-presets.js';
import { parseWorkloadJson, type Workload } from '../ops/synthetic-workload.js';
import type { RunSpec } from './spec.js';

/** The workload a synthetic session without synthetic_workload simulates. */
export const DEFAULT_SYNTHETIC_WORKLOAD = 'hot5';

const KDAMOND_UNAVAILABLE = 'not supported by this agent version';

export interface HostOperations {
  /** Operations this host supports, best first (as registered with the controller). */
  operations: string[];
  /** "<ops>: <what is missing>" per operation it cannot run. */
  unavailable: string[];
  pageIdle: PageIdleProbe;
  /** Makes the page_idle operations of one session (tests substitute their own). */
  createPageIdle: () => Operations;
}

export function probeHostOperations(probePageIdle: () => PageIdleProbe = () => PageIdleOperations.probe()): HostOperations {
  const pageIdle = probePageIdle();
  const operations: string[] = [];
  const unavailable: string[] = [`kdamond: ${KDAMOND_UNAVAILABLE}`];
  if (pageIdle.usable) operations.push('page_idle');
  else unavailable.push(`page_idle: ${pageIdle.missing.join('; ')}`);
  operations.push('synthetic');
  return { operations, unavailable, pageIdle, createPageIdle: () => new PageIdleOperations() };
}

export type OpsChoice =
  | { ok: true; name: string; create(pids: readonly number[]): Operations }
  | { ok: false; message: string };

/**
 * A synthetic_workload: a preset name or a JSON description (never a file path: the
 * agent runs as root, and the text comes from a remote caller).
 */
export function resolveWorkload(spec: string): Workload {
  const text = spec.trim();
  if (text === '') return presetWorkload(DEFAULT_SYNTHETIC_WORKLOAD);
  if (text.startsWith('{')) return parseWorkloadJson(text, 'synthetic_workload');
  if (PRESET_NAMES.includes(text)) return presetWorkload(text);
  throw new Error(`synthetic_workload "${text}": neither a preset (${PRESET_NAMES.join(', ')}) nor a JSON workload`);
}

/**
 * The workload's simulated processes, one per pid: pid i simulates the workload's
 * target i (cycling when there are more pids than declared targets).
 */
export function workloadForPids(w: Workload, pids: readonly number[]): Workload {
  return { ...w, targets: pids.map((pid, i) => ({ ...w.targets[i % w.targets.length], id: pid })) };
}

export function chooseOperations(spec: RunSpec, host: HostOperations): OpsChoice {
  const wanted = spec.operations;
  if (wanted === 'synthetic') {
    let workload: Workload;
    try {
      workload = resolveWorkload(spec.syntheticWorkload);
    } catch (err) {
      return { ok: false, message: (err as Error).message };
    }
    return { ok: true, name: 'synthetic', create: (pids) => new SyntheticOperations(workloadForPids(workload, pids)) };
  }
  if (wanted === 'kdamond') return { ok: false, message: `kdamond unavailable: ${KDAMOND_UNAVAILABLE}` };
  // '' or 'page_idle': the only real operations this agent has.
  if (!host.pageIdle.usable) {
    return { ok: false, message: `page_idle unavailable: ${host.pageIdle.missing.join('; ')}` };
  }
  return { ok: true, name: 'page_idle', create: () => host.createPageIdle() };
}
