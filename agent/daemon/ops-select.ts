// Which operations this host can monitor with, and which one a session gets: the best
// real one the host supports when the spec leaves it empty (kdamond, then page_idle), what
// the spec names otherwise, and "synthetic" only when asked for. When nothing fits, the
// reason is the session's message: what the host lacks.
//
// kdamond is the kernel's own DAMON driven through its sysfs interface (agent/kdamond/):
// a whole monitoring context of its own rather than Operations for the engine, so a choice
// says which engine runs the session; either way it makes a Monitor (engine/monitor.ts).
// The probe is read-only: it writes nothing under /sys/kernel/mm/damon, which on most
// hosts belongs to the machine.
import type { Attributes } from '../engine/attrs.js';
import { DamonContext } from '../engine/context.js';
import type { Monitor } from '../engine/monitor.js';
import type { Operations } from '../engine/operations.js';
import type { Target } from '../engine/region.js';
import { KdamondContext } from '../kdamond/kdamond-context.js';
import type { KdamondProbe } from '../kdamond/probe.js';
import { PageIdleOperations, type PageIdleProbe } from '../ops/page-idle.js';
import { SyntheticOperations } from '../ops/synthetic.js';
import { resolveWorkload } from '../ops/synthetic-presets.js';
import type { Workload } from '../ops/synthetic-workload.js';
import type { RunSpec } from './spec.js';
import { schemesRefusal, type SchemeSpec } from '../../common/scheme-schema.js';

/** Where the kernel's DAMON sysfs interface and tracefs are on a real system. */
export const KDAMOND_PATHS = Object.freeze({ sysfsRoot: '/sys/kernel/mm/damon', tracefsRoot: '/sys/kernel/tracing' });

export interface HostOperations {
  /** Operations this host supports, best first (as registered with the controller). */
  operations: string[];
  /** "<ops>: <what is missing>" per operation it cannot run. */
  unavailable: string[];
  pageIdle: PageIdleProbe;
  /** Makes the page_idle operations of one session (tests substitute their own). */
  createPageIdle: () => Operations;
  kdamond: KdamondProbe;
  /** Makes the kdamond context of one session, its schemes handed to the kernel's DAMOS (tests substitute one on a fake kernel). */
  createKdamond: (pids: number[], attrs: Attributes, schemes: readonly SchemeSpec[]) => KdamondContext;
}

export interface ProbeHostOptions {
  probePageIdle?: () => PageIdleProbe;
  /** DAMON's sysfs directory and tracefs; default KDAMOND_PATHS. */
  kdamondPaths?: { sysfsRoot: string; tracefsRoot: string };
}

export function probeHostOperations(o: ProbeHostOptions = {}): HostOperations {
  const pageIdle = (o.probePageIdle ?? (() => PageIdleOperations.probe()))();
  const paths = o.kdamondPaths ?? KDAMOND_PATHS;
  const kdamond = KdamondContext.probe(paths.sysfsRoot, { tracefsRoot: paths.tracefsRoot });
  const operations: string[] = [];
  const unavailable: string[] = [];
  if (kdamond.usable) operations.push('kdamond');
  else unavailable.push(`kdamond: ${kdamond.message}`);
  if (pageIdle.usable) operations.push('page_idle');
  else unavailable.push(`page_idle: ${pageIdle.missing.join('; ')}`);
  operations.push('synthetic');
  return {
    operations,
    unavailable,
    pageIdle,
    createPageIdle: () => new PageIdleOperations(),
    kdamond,
    createKdamond: (pids, attrs, schemes) =>
      new KdamondContext({
        attrs,
        schemes,
        targetIds: pids,
        sysfsRoot: paths.sysfsRoot,
        tracefsRoot: paths.tracefsRoot,
        recordSource: kdamond.recommendedSource,
      }),
  };
}

/** Whether a target's process still lives, as the session's process watch sees it. */
export type TargetAlive = (pid: number) => boolean;

/** An engine for a session's targets on this host. */
interface MonitorChoice {
  ok: true;
  name: string;
  /**
   * The engine over `pids`. The project's engine also ends a target once `alive` says its
   * process is gone; the kdamond context watches the processes in /proc itself.
   * `onSchemeError` hears of scheme actions a target refused (once per distinct refusal).
   */
  createMonitor(pids: number[], attrs: Attributes, alive: TargetAlive, onSchemeError?: (message: string) => void): Monitor;
}

/** Operations for the project's engine (agent/engine/context.ts). */
export interface EngineChoice extends MonitorChoice {
  engine: 'damon';
  create(pids: readonly number[]): Operations;
}

/** The kernel's DAMON as the engine. */
export interface KdamondChoice extends MonitorChoice {
  engine: 'kdamond';
  name: 'kdamond';
  /**
   * For a session that left the operations to the agent: what to run instead when the
   * kernel's DAMON turns out to be taken at start (another session of this agent, or
   * another tool, has claimed it since the probe).
   */
  fallback?: EngineChoice;
}

export type OpsChoice = EngineChoice | KdamondChoice | { ok: false; message: string };

/**
 * The workload's simulated processes, one per pid: pid i simulates the workload's
 * target i (cycling when there are more pids than declared targets).
 */
export function workloadForPids(w: Workload, pids: readonly number[]): Workload {
  return { ...w, targets: pids.map((pid, i) => ({ ...w.targets[i % w.targets.length], id: pid })) };
}

/** Operations whose targets also end when the watched process exits. */
function withProcessLiveness(inner: Operations, alive: TargetAlive): Operations {
  return {
    name: inner.name,
    init: (ctx) => inner.init(ctx),
    update: (ctx) => inner.update(ctx),
    prepareAccessChecks: (ctx) => inner.prepareAccessChecks(ctx),
    checkAccesses: (ctx) => inner.checkAccesses(ctx),
    targetValid: (t: Target) => alive(t.id) && inner.targetValid(t),
    cleanup: inner.cleanup ? (ctx) => inner.cleanup!(ctx) : undefined,
    actuator: inner.actuator,
  };
}

/** The operations each of the project's engines runs (for engineThreadCpu). */
const opsOfMonitor = new WeakMap<Monitor, Operations>();

/** The project's engine over the operations `create` makes. */
function engineChoice(name: string, create: (pids: readonly number[]) => Operations): EngineChoice {
  return {
    ok: true,
    engine: 'damon',
    name,
    create,
    createMonitor: (pids, attrs, alive, onSchemeError) => {
      const ops = create(pids);
      const monitor = new DamonContext({
        attrs,
        targetIds: pids,
        ops: withProcessLiveness(ops, alive),
        ...(onSchemeError ? { schemeHooks: { onActionError: onSchemeError } } : {}),
      });
      opsOfMonitor.set(monitor, ops);
      return monitor;
    },
  };
}

/** A thread that does an engine's sampling apart from the agent's JavaScript. */
export type EngineThread = 'sampler' | 'kdamond';

/**
 * CPU seconds the engine's own thread has used: the native sampler's pthread (page_idle on
 * the batched loop; thread CPU clock) or the kdamond kernel thread (its /proc stat, 10 ms
 * ticks, kept once it stopped). Undefined for engines without one (synthetic) and for a
 * kdamond not started.
 */
export function engineThreadCpu(monitor: Monitor): { thread: EngineThread; seconds: number } | undefined {
  if (monitor instanceof KdamondContext) {
    const us = monitor.costs().kdamondCpuUs;
    return us === undefined ? undefined : { thread: 'kdamond', seconds: us / 1e6 };
  }
  const ops = opsOfMonitor.get(monitor);
  return ops instanceof PageIdleOperations ? { thread: 'sampler', seconds: ops.samplerCpuNs() / 1e9 } : undefined;
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
    return engineChoice('synthetic', (pids) => new SyntheticOperations(workloadForPids(workload, pids)));
  }
  const pageIdle = host.pageIdle.usable ? engineChoice('page_idle', () => host.createPageIdle()) : undefined;
  const kdamond = (fallback?: EngineChoice): KdamondChoice => ({
    ok: true,
    engine: 'kdamond',
    name: 'kdamond',
    createMonitor: (pids, attrs) => host.createKdamond(pids, attrs, spec.schemes),
    ...(fallback ? { fallback } : {}),
  });
  const pageIdleMissing = `page_idle unavailable: ${host.pageIdle.missing.join('; ')}`;
  const kdamondMissing = `kdamond unavailable: ${host.kdamond.message}`;
  if (wanted === 'kdamond') return host.kdamond.usable ? kdamond() : { ok: false, message: kdamondMissing };
  if (wanted === 'page_idle') return pageIdle ?? { ok: false, message: pageIdleMissing };
  // '': the best real operations this host has that can apply the session's schemes.
  const pageIdleRefusal = schemesRefusal(spec.schemes, 'page_idle');
  const kdamondRefusal = schemesRefusal(spec.schemes, 'kdamond');
  const pageIdleFits = pageIdleRefusal === undefined ? pageIdle : undefined;
  if (host.kdamond.usable && kdamondRefusal === undefined) return kdamond(pageIdleFits);
  if (pageIdleFits) return pageIdleFits;
  const why = [pageIdle ? pageIdleRefusal : pageIdleMissing, host.kdamond.usable ? kdamondRefusal : kdamondMissing];
  return { ok: false, message: why.join('; ') };
}
