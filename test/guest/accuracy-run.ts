// Runs INSIDE the guest (it drives the guest kernel's DAMON and writes the page_idle
// bitmap). The workload (256 MiB, 16 MiB hot, the hot set moves after a phase) monitored
// at once by two engines with DAMON's default attributes, and what each reported. Parts:
//   direct:        the kernel's DAMON (KdamondContext) and the project's engine with the
//                  page_idle operations and its default ('refined') region adjustment;
//   kernel-adjust: the kernel's DAMON and the project's engine with the kernel's adjustment;
//   agent:         the agent's session runner with default operations (the kdamond
//                  operations on this kernel) and the project's engine with page_idle;
//   agent-page-idle: the kernel's DAMON and the agent's session runner with the page_idle
//                  operations (the native sampler behind the agent's liveness wrapper).
// Each part runs on a fresh workload, one after the other: two kdamonds cannot run at once
// (the driver claims DAMON's sysfs only when it is unused), and more than two monitors
// starve each other of the guest's two emulated CPUs.
//
// Monitors share the Accessed bits: one that clears a bit after an access hides it from
// another whose check comes later. The workload flushes its TLB every millisecond by
// default (--tlb-flush-ms), so that an access sets the bit again well within every
// 5 ms sampling interval whoever cleared it; both engines see the same workload. It also
// sleeps 1 ms after each pass over its hot set (--pause-us; still several passes per
// sampling interval): a busy loop holds one of the guest's two emulated CPUs for good and
// starves the monitors (measured with THP: the page_idle engine's steady hot coverage fell
// from 1.00 to 0.39-0.78 and the kernel DAMON's to 0.86, as both ran late).
//
// Usage: node dist/test/guest/accuracy-run.js --workload BIN [--thp hugepage,nohugepage]
//          [--parts direct,kernel-adjust,agent,agent-page-idle] [--phase-ms 60000] [--tlb-flush-ms 1] [--pause-us 1000]
// A phase ends once every monitor delivered PHASE_AGGREGATIONS records in it, or after
// --phase-ms at most.
// Prints one JSON line (AccuracyCase) per THP mode and part; progress goes to stderr.
import { pathToFileURL } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ATTRS } from '../../agent/engine/attrs.js';
import { probeHostOperations } from '../../agent/daemon/ops-select.js';
import { SessionRunner } from '../../agent/daemon/session-runner.js';
import { RecordPublisher } from '../../agent/daemon/publisher.js';
import { createLogger } from '../../common/log.js';
import { parseSpec } from '../../agent/daemon/spec.js';
import { TargetState } from '../../gen/damon/v1/damon.js';
import { decodeRecord } from '../../common/record-wire.js';
import { RecordSpool } from '../../agent/daemon/spool.js';
import type { RecordJson } from './record-json.js';
import { advancePhases, kdamondEngine, pageIdleEngine, type Engine, type EngineRun } from './monitors.js';
import type { WorkloadEvent } from './workload.js';
import { WorkloadProcess } from './workload-process.js';

export type { EngineRun } from './monitors.js';

export const PARTS = ['direct', 'kernel-adjust', 'agent', 'agent-page-idle'] as const;
export type Part = (typeof PARTS)[number];

export interface AccuracyCase {
  thp: string;
  part: Part;
  tlbFlushMs: number;
  pauseUs: number;
  events: WorkloadEvent[];
  engines: EngineRun[];
}

const MiB = 2 ** 20;
/** The hot set of the first phase, then of the second: offsets in the mapping. */
export const HOT_RANGES = ['64M+16M', '160M+16M'];

function log(msg: string): void {
  process.stderr.write(`accuracy-run: ${msg}\n`);
}

/**
 * A session of the agent's runner with `operations` ('' for the agent's choice); its records
 * as published. Named agent_kdamond for the agent's choice (kdamond on this kernel), else
 * agent_<operations>.
 */
function agentEngine(pid: number, operations = ''): Engine {
  const records: RecordJson[] = [];
  const hostOps = probeHostOperations();
  const spec = parseSpec({
    sessionId: 'accuracy',
    attrs: {
      samplingIntervalUs: BigInt(DEFAULT_ATTRS.samplingUs),
      aggregationIntervalUs: BigInt(DEFAULT_ATTRS.aggregationUs),
      updateIntervalUs: BigInt(DEFAULT_ATTRS.updateUs),
      minNrRegions: DEFAULT_ATTRS.minNrRegions,
      maxNrRegions: DEFAULT_ATTRS.maxNrRegions,
      resultFile: '',
      resultFormat: '', schemes: [],
    },
    pids: [pid],
    operations,
    syntheticWorkload: '',
    generation: 1n,
  });
  const recordOperations = new Set<string>();
  const publisher = new RecordPublisher(
    {
      async publish(_subject, data) {
        const p = decodeRecord(data);
        recordOperations.add(p.operations);
        records.push({
          t: p.pid,
          s: p.startTimeNs.toString(),
          e: p.endTimeNs.toString(),
          m: p.maxNrAccesses,
          r: p.regions.map((g) => [Number(g.start), Number(g.end), g.nrAccesses, g.age]),
        });
        return {};
      },
    },
    { spool: RecordSpool.open(mkdtempSync(join(tmpdir(), 'accuracy-spool-')), { log: createLogger('accuracy-run/spool') }), log: createLogger('accuracy-run/publisher') },
  );
  const runner = new SessionRunner(spec, {
    host: 'guest',
    dataDir: '/tmp',
    hostOps,
    publisher,
    instanceId: 'accuracy-run',
    onChange: () => undefined,
    log: createLogger('accuracy-run/agent'),
    processPollMs: 100,
  });
  const ended = () => !runner.observed().running;
  return {
    async start() {
      await runner.start();
      const t = runner.observed().targets[0];
      if (t?.state !== TargetState.TARGET_STATE_RUNNING) throw new Error(`the agent's session did not start: ${TargetState[t?.state ?? 0]} ${t?.message ?? ''}`);
    },
    delivered: () => records.length,
    ended,
    async end(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!ended() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await runner.stop();
    },
    result() {
      const o = runner.observed();
      const t = o.targets[0];
      return {
        name: `agent_${operations || 'kdamond'}`,
        records,
        stopReason: t === undefined ? 'unknown' : TargetState[t.state],
        ...(t?.message ? { error: t.message } : {}),
        info: {
          targetOperations: t?.operations, recordOperations: [...recordOperations], hostOperations: hostOps.operations, kdamondProbe: hostOps.kdamond.message,
          checkCostUs: o.checkCostUs, affordableRegions: o.affordableRegions,
          drift: { aggregation: { meanUs: o.aggregationIntervalMeanUs }, sampling: { meanUs: o.samplingIntervalMeanUs } },
        },
      };
    },
  };
}

export function workloadArgs(thp: string, phaseMs: number, tlbFlushMs: number, pauseUs: number): string[] {
  return [
    '--size', '256M', '--align', '2M', '--thp', thp, '--tlb-flush-ms', String(tlbFlushMs), '--pause-us', String(pauseUs),
    ...HOT_RANGES.flatMap((r) => ['--phase', `${phaseMs}:${r}`]),
  ];
}

interface RunOptions {
  phaseMs: number;
  tlbFlushMs: number;
  pauseUs: number;
}

async function runCase(bin: string, thp: string, part: Part, o: RunOptions): Promise<AccuracyCase> {
  const w = WorkloadProcess.start(bin, workloadArgs(thp, o.phaseMs, o.tlbFlushMs, o.pauseUs));
  try {
    const ready = await w.waitFor('ready', 60_000);
    await w.waitFor('phase', 10_000, 0);
    log(`${thp} ${part}: workload pid ${w.pid} ready (${ready.anonHugeBytes / MiB} MiB huge pages), starting the engines`);
    const engines =
      part === 'direct'
        ? [kdamondEngine(w.pid), pageIdleEngine('page_idle', w.pid, 'refined')]
        : part === 'kernel-adjust'
          ? [kdamondEngine(w.pid), pageIdleEngine('page_idle_kernel_adjust', w.pid, 'kernel')]
          : part === 'agent'
            ? [agentEngine(w.pid), pageIdleEngine('page_idle', w.pid, 'refined')]
            : [kdamondEngine(w.pid), agentEngine(w.pid, 'page_idle')];
    // One after the other: the kdamond's setup writes must not queue behind the page_idle
    // engine's sampling steps in this process's event loop.
    for (const e of engines) await e.start();
    await advancePhases(w, engines, HOT_RANGES.length, o.phaseMs);
    const status = await w.waitExit(60_000);
    log(`${thp} ${part}: workload exited (${status}); waiting for the engines to stop`);
    await Promise.all(engines.map((e) => e.end(10_000)));
    return { thp, part, tlbFlushMs: o.tlbFlushMs, pauseUs: o.pauseUs, events: w.events, engines: engines.map((e) => e.result()) };
  } finally {
    w.kill();
  }
}

async function main(argv: string[]): Promise<void> {
  let bin: string | undefined;
  let thps = ['hugepage', 'nohugepage'];
  let parts: Part[] = [...PARTS];
  const o: RunOptions = { phaseMs: 60_000, tlbFlushMs: 1, pauseUs: 1000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [opt, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`option ${opt} needs a value`);
    if (opt === '--workload') bin = v;
    else if (opt === '--thp') thps = v.split(',');
    else if (opt === '--parts') {
      parts = v.split(',').map((p) => {
        if (!(PARTS as readonly string[]).includes(p)) throw new Error(`--parts: "${p}" is not one of ${PARTS.join(', ')}`);
        return p as Part;
      });
    } else if (opt === '--phase-ms' || opt === '--tlb-flush-ms' || opt === '--pause-us') {
      const n = Number(v);
      if (!Number.isInteger(n) || n < (opt === '--phase-ms' ? 500 : 0)) throw new Error(`${opt} must be a whole number${opt === '--phase-ms' ? ' >= 500' : ''}, got "${v}"`);
      if (opt === '--phase-ms') o.phaseMs = n;
      else if (opt === '--tlb-flush-ms') o.tlbFlushMs = n;
      else o.pauseUs = n;
    } else throw new Error(`unknown option "${opt}" (expected --workload BIN [--thp LIST] [--parts LIST] [--phase-ms N] [--tlb-flush-ms N] [--pause-us N])`);
  }
  if (bin === undefined) throw new Error('--workload BIN is required');
  // A freshly booted guest is slow for its first seconds (Node compiling this code, pages
  // coming in over 9p, the first huge pages). One short case, not reported, takes that
  // cost, so every reported case runs in a warm guest.
  const warm = Date.now();
  await runCase(bin, thps[0], parts[0], { ...o, phaseMs: 2000 });
  log(`warm-up case done in ${Date.now() - warm} ms (not reported)`);
  for (const thp of thps) {
    for (const part of parts) process.stdout.write(`${JSON.stringify(await runCase(bin, thp, part, o))}\n`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`accuracy-run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
