// Runs INSIDE the guest: proactive reclaim of a workload's cold memory, the ways side by
// side. Each run starts a fresh workload (reclaim-scenario.ts: a small hot set in a large
// anonymous mapping, all of it resident), lets one way reclaim for a while and records
// the workload's resident and swapped memory over time, its hot loop's throughput
// (passes per second, from its "rate" events) and the CPU of the monitor doing it.
// Rounds interleave the ways, so that a busy host slows them alike. Prints one JSON
// object (ReclaimReport); reclaim.test.ts and bench/reclaim.ts judge it on the host.
//
// Usage: node dist/test/guest/reclaim-run.js --workload BIN [--ways baseline,kdamond,engine[,optimizer]]
//          [--rounds 1] [--seconds 30]
//        node dist/test/guest/reclaim-run.js --engine   (the engine way's own process; the pid comes on stdin)
// The optimizer way needs the loopback interface up (the caller's command runs
// `ip link set lo up`): nats-server, the controller and the agent start once, at its
// first run, and serve every round.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DEFAULT_ATTRS } from '../../agent/engine/attrs.js';
import { DamonContext } from '../../agent/engine/context.js';
import { PageIdleOperations } from '../../agent/ops/page-idle.js';
import { engineScheme } from '../../agent/schemes/scheme.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SessionState, type ControllerClient } from '../../gen/damon/v1/damon.js';
import { controllerClient, unary, waitFor } from '../integration/support/grpc-client.js';
import { testCredentials } from '../integration/support/credentials.js';
import { freePort, startNatsServer, type NatsServer } from '../integration/support/nats-server.js';
import { daemon, stop as stopDaemon, type Daemon } from './system-run.js';
import { KDAMOND_PATHS } from '../../agent/daemon/ops-select.js';
import { KdamondContext } from '../../agent/kdamond/kdamond-context.js';
import type { SchemeStats } from '../../gen/damon/v1/damon.js';
import { RECLAIM_SCHEME, RECLAIM_WAYS, reclaimSchemes, workloadArgs, type ReclaimWay } from './reclaim-scenario.js';
import { WorkloadProcess } from './workload-process.js';

/** How often the workload's memory is read. */
const SAMPLE_MS = 250;
/** USER_HZ: the unit of utime and stime in /proc/PID/stat. */
const USER_HZ = 100;

/** The workload's memory at one time (kB, as /proc/PID/status gives it). */
export interface MemorySample {
  /** Since the workload's "ready" event (all pages touched), ms. */
  tMs: number;
  rssKiB: number;
  rssAnonKiB: number;
  swapKiB: number;
  /** Major faults of the workload so far (/proc/PID/stat): with zram swap, each one a page swapped back in. */
  majorFaults: number;
}

/** One window of the hot loop: passes per second over `ms` ending at tMs. */
export interface RateWindow {
  tMs: number;
  ms: number;
  passesPerS: number;
}

/** A scheme's statistics as the way counted them (SchemeStats in plain numbers). */
export interface SchemeCounts {
  nrTried: number;
  szTried: number;
  nrApplied: number;
  szApplied: number;
  qtExceeds: number;
}

function counts(s: SchemeStats): SchemeCounts {
  return { nrTried: Number(s.nrTried), szTried: Number(s.szTried), nrApplied: Number(s.nrApplied), szApplied: Number(s.szApplied), qtExceeds: Number(s.qtExceeds) };
}

export interface ReclaimRun {
  way: ReclaimWay;
  round: number;
  /** When the monitor was running (its start took time), since "ready", ms. */
  monitorStartMs: number;
  monitorEndMs: number;
  samples: MemorySample[];
  rates: RateWindow[];
  /** CPU of the monitor over [monitorStartMs, monitorEndMs]: the kdamond thread, or the process(es) of the agent's path; 0 for the baseline. */
  monitorCpuUs: number;
  /** What monitored: "kdamond pid N", ... */
  monitor: string;
  /** The schemes' statistics at the end, as the way reports them. */
  schemeStats: SchemeCounts[] | null;
  /** Set when the way could not run; the rest is then partial. */
  error?: string;
}

export interface ReclaimReport {
  kernel: string;
  swaps: string;
  memTotalKiB: number;
  workloadArgs: string[];
  seconds: number;
  runs: ReclaimRun[];
}

function log(msg: string): void {
  process.stderr.write(`reclaim-run: ${msg}\n`);
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6; // CLOCK_MONOTONIC, as the workload's monoMs
}

/** utime + stime of a task (a process: all its threads; a kernel thread: itself), µs. */
export function taskCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1_000_000) / USER_HZ;
}

function memoryOf(pid: number): Omit<MemorySample, 'tMs'> | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]);
  };
  let majorFaults: number;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    majorFaults = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[9]);
  } catch {
    return null;
  }
  return { rssKiB: kib('VmRSS'), rssAnonKiB: kib('RssAnon'), swapKiB: kib('VmSwap'), majorFaults };
}

/** A way of reclaiming, running on one workload. */
interface Monitor {
  describe: string;
  /** CPU so far, µs (what is charged to the way). */
  cpuUs(): number;
  schemeStats(): Promise<SchemeCounts[] | null>;
  stop(): Promise<void>;
}

async function startMonitor(way: ReclaimWay, pid: number, round: number): Promise<Monitor> {
  switch (way) {
    case 'optimizer':
      return startOptimizerWay(pid, round);
    case 'baseline':
      return { describe: 'none', cpuUs: () => 0, schemeStats: async () => null, stop: async () => undefined };
    case 'kdamond': {
      // The agent's kdamond operations: the scheme handed to the kernel's DAMOS through sysfs.
      const ctx = new KdamondContext({ attrs: DEFAULT_ATTRS, schemes: reclaimSchemes(), schemeStatsIntervalMs: 1000, targetIds: [pid], ...KDAMOND_PATHS });
      let error: Error | undefined;
      ctx.on('stopped', (_reason, err?: Error) => (error = err));
      if (!(await ctx.start())) {
        await new Promise((r) => setTimeout(r, 100));
        throw new Error(`the kdamond did not start: ${error?.message ?? 'no reason given'}`);
      }
      const kpid = ctx.kdamondPid!;
      return {
        describe: `kdamond pid ${kpid}`,
        cpuUs: () => taskCpuUs(kpid),
        schemeStats: async () => {
          // Statistics refresh with the records' polls; give it one more.
          await new Promise((r) => setTimeout(r, 1200));
          return ctx.schemeStats().map(counts);
        },
        stop: () => ctx.stop(),
      };
    }
    case 'engine': {
      const child = pending.engine;
      if (!child) throw new Error('the engine process was not started before the workload');
      pending.engine = undefined;
      return engineMonitor(child, pid);
    }
  }
}

/** Processes a way starts before the workload, so that loading Node (a minute under emulation) is not part of the run. */
const pending: { engine?: ChildProcess } = {};

async function prepareMonitor(way: ReclaimWay): Promise<void> {
  if (way === 'engine') {
    pending.engine = spawn(process.execPath, [fileURLToPath(import.meta.url), '--engine'], { stdio: ['pipe', 'pipe', 'inherit'] });
    await nextLine(pending.engine, createInterface({ input: pending.engine.stdout! }), 'loaded');
  }
}

const readers = new WeakMap<ChildProcess, Interface>();

/** The next line the child prints (failing if it exits first); `want`, when given, must be that line. */
function nextLine(child: ChildProcess, lines?: Interface, want?: string): Promise<string> {
  if (lines) readers.set(child, lines);
  const rl = readers.get(child)!;
  return new Promise<string>((resolve, reject) => {
    const onLine = (l: string) => {
      cleanup();
      if (want !== undefined && l !== want) reject(new Error(`the engine process said ${l.slice(0, 200)}, expected ${want}`));
      else resolve(l);
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`the engine process exited (${code}) before answering`));
    };
    const cleanup = () => {
      rl.off('line', onLine);
      child.off('exit', onExit);
    };
    rl.on('line', onLine);
    child.on('exit', onExit);
  });
}

/** The agent's engine in a process of its own (as in the agent), so that its CPU is its own. */
async function engineMonitor(child: ChildProcess, pid: number): Promise<Monitor> {
  const started = nextLine(child, undefined, 'started');
  child.stdin!.write(`${pid}\n`);
  await started;
  return {
    describe: `engine (page_idle) pid ${child.pid}`,
    cpuUs: () => taskCpuUs(child.pid!),
    schemeStats: async () => {
      const answer = nextLine(child);
      child.kill('SIGUSR2');
      return JSON.parse(await answer) as SchemeCounts[];
    },
    stop: async () => {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

const FLEET_HOST = 'guest-1';
const OPTIMIZER = 'reclaimer';
const OPTIMIZER_BIN = fileURLToPath(new URL('../../examples/optimizer.js', import.meta.url));
const KDAMONDS = '/sys/kernel/mm/damon/admin/kdamonds';

/** nats-server, controller and agent in the guest, as the system test runs them (system-run.ts). */
interface Fleet {
  nats: NatsServer;
  controller: Daemon;
  agent: Daemon;
  listen: string;
  client: ControllerClient;
  creds: ReturnType<typeof testCredentials>;
}

let fleet: Fleet | undefined;

async function startFleet(): Promise<Fleet> {
  const creds = testCredentials({ agents: [FLEET_HOST], optimizers: [{ name: OPTIMIZER, sessions: ['reclaim-*'] }] });
  const nats = await startNatsServer({ credentials: creds });
  const listen = `127.0.0.1:${await freePort()}`;
  let controller: Daemon | undefined;
  let agent: Daemon | undefined;
  try {
    // Minutes to load under emulation on a busy host; the guest's /tmp is too small for the
    // streams' default sizes (1 GiB of records, 256 MiB of action events).
    controller = await daemon(
      'controller',
      ['controller', '--listen', listen, '--nats', nats.url, '--nats-nkey', creds.controller, '--lease-ttl', '5s', '--heartbeat', '1s', '--records-max-bytes', '64M', '--actions-max-bytes', '16M',
        '--identities', creds.layout.controller.identities, '--agent-key-file', creds.layout.controller.agentKey],
      /controller listening on /,
      300_000,
    );
    agent = await daemon(
      'agent',
      ['agent', '--host', FLEET_HOST, '--listen', '127.0.0.1:0', '--controller', listen, '--nats', nats.url, '--nats-nkey', creds.agent(FLEET_HOST),
        '--data-dir', mkdtempSync(join(tmpdir(), 'agent-')), '--token-file', creds.layout.agent(FLEET_HOST).token, '--identities', creds.layout.agent(FLEET_HOST).identities],
      /serving damon\.v1\.Agent on /,
      300_000,
    );
    const client = controllerClient(listen, creds.grpc.operator);
    try {
      await waitFor('the agent registered and live', async () => (await unary(client, 'listAgents', {})).agents.find((a) => a.host === FLEET_HOST && a.live), 60_000);
    } catch (e) {
      client.close();
      throw e;
    }
    return { nats, controller, agent, listen, client, creds };
  } catch (e) {
    // What did start would keep this process alive after the failed round.
    if (agent) await stopDaemon(agent);
    if (controller) await stopDaemon(controller);
    await nats.stop();
    throw e;
  }
}

async function stopFleet(): Promise<void> {
  if (!fleet) return;
  fleet.client.close();
  await stopDaemon(fleet.agent);
  await stopDaemon(fleet.controller);
  await fleet.nats.stop();
  fleet = undefined;
}

/**
 * The optimizer way: a session on the workload (default operations: the agent picks the
 * kdamond in this guest) publishes records on NATS; examples/optimizer.ts follows them and
 * asks the controller to page out what stayed cold for the scheme's age (RequestAction),
 * which the agent applies through process_madvise. CPU: agent + optimizer + kdamond.
 */
async function startOptimizerWay(pid: number, round: number): Promise<Monitor> {
  fleet ??= await startFleet();
  const f = fleet;
  const session = `reclaim-${round}`;
  await unary(f.client, 'createSession', {
    id: session,
    attrs: { samplingIntervalUs: BigInt(DEFAULT_ATTRS.samplingUs), aggregationIntervalUs: BigInt(DEFAULT_ATTRS.aggregationUs), updateIntervalUs: BigInt(DEFAULT_ATTRS.updateUs),
      minNrRegions: DEFAULT_ATTRS.minNrRegions, maxNrRegions: DEFAULT_ATTRS.maxNrRegions, resultFile: '', resultFormat: '', schemes: [] },
    attrsText: '', schemesText: '',
    targets: [{ host: FLEET_HOST, pid }],
    operations: '',
    syntheticWorkload: '',
  });
  const opt = spawn(process.execPath, [OPTIMIZER_BIN,
    '--nats', f.nats.url, '--nats-nkey', f.creds.optimizer(OPTIMIZER), '--session', session,
    '--controller', f.listen, '--token-file', f.creds.layout.optimizer(OPTIMIZER).token,
    '--min-age', String(RECLAIM_SCHEME.minAgeMs / 1000), '--rate', '1G', '--every', '600000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  opt.stdout!.setEncoding('utf8').on('data', (x: string) => (out = (out + x).slice(-20_000)));
  opt.stderr!.setEncoding('utf8').on('data', (x: string) => (err = (err + x).slice(-20_000)));
  try {
    await waitFor('the optimizer following the records', () => new RegExp(`following damon\\.records\\.${session}\\.>`).test(err), 300_000, 200);
    await unary(f.client, 'turnOn', { id: session });
  } catch (e) {
    opt.kill('SIGKILL');
    throw new Error(`${(e as Error).message}; optimizer stderr: ${err.slice(-1000)}`);
  }
  const kdamondPid = Number(readFileSync(`${KDAMONDS}/0/pid`, 'utf8').trim());
  const pids = [f.agent.child.pid!, opt.pid!, ...(kdamondPid > 0 ? [kdamondPid] : [])];
  const cpu = () => pids.reduce((sum, p) => { try { return sum + taskCpuUs(p); } catch { return sum; } }, 0);
  return {
    describe: `optimizer pid ${opt.pid} via agent pid ${f.agent.child.pid}${kdamondPid > 0 ? `, kdamond pid ${kdamondPid}` : ''}`,
    cpuUs: cpu,
    schemeStats: async () => {
      // What the optimizer reports as done, as a scheme's applied bytes.
      const done = [...out.matchAll(/done action \S+ on \S+: .*?, ([0-9.]+) (B|KiB|MiB|GiB) paged out/g)];
      const unit: Record<string, number> = { B: 1, KiB: 1024, MiB: 2 ** 20, GiB: 2 ** 30 };
      const bytes = done.reduce((s, m) => s + Number(m[1]) * unit[m[2]!]!, 0);
      return [{ nrTried: done.length, szTried: bytes, nrApplied: done.length, szApplied: bytes, qtExceeds: 0 }];
    },
    stop: async () => {
      const gone = new Promise((r) => opt.once('exit', r));
      opt.kill('SIGTERM');
      await gone;
      await unary(f.client, 'turnOff', { id: session }).catch(() => undefined);
      await waitFor('the session off', async () => (await unary(f.client, 'getSession', { id: session })).state === SessionState.SESSION_STATE_OFF, 60_000).catch(() => undefined);
      await unary(f.client, 'deleteSession', { id: session }).catch((e: Error) => log(`deleting ${session}: ${e.message}`));
    },
  };
}

/**
 * --engine: the agent's engine with the page_idle operations, DAMON's default attributes
 * and the scheme, on the pid read from stdin; prints "loaded" once its modules are, then
 * "started" once it runs, the schemes' statistics (SchemeCounts[]) on SIGUSR2, and stops
 * on SIGTERM.
 */
async function engineMain(): Promise<void> {
  const schemes = reclaimSchemes().map(engineScheme);
  process.stdout.write('loaded\n');
  const pid = Number((await createInterface({ input: process.stdin })[Symbol.asyncIterator]().next()).value);
  const ctx = new DamonContext({ attrs: { ...DEFAULT_ATTRS, schemes }, targetIds: [pid], ops: new PageIdleOperations() });
  const stopped = new Promise<void>((resolve) =>
    ctx.on('stopped', (reason, err?: Error) => {
      if (reason === 'error') process.stderr.write(`reclaim-run engine: stopped: ${err?.message}\n`);
      resolve();
    }),
  );
  process.on('SIGUSR2', () => process.stdout.write(`${JSON.stringify(ctx.schemeStats().map(counts))}\n`));
  process.on('SIGTERM', () => void ctx.stop());
  ctx.start();
  process.stdout.write('started\n');
  await stopped;
  process.exit(0);
}

async function runOnce(bin: string, way: ReclaimWay, round: number, seconds: number): Promise<ReclaimRun> {
  await prepareMonitor(way);
  const w = WorkloadProcess.start(bin, workloadArgs());
  const run: ReclaimRun = { way, round, monitorStartMs: 0, monitorEndMs: 0, samples: [], rates: [], monitorCpuUs: 0, monitor: 'none', schemeStats: null };
  let sampler: NodeJS.Timeout | undefined;
  try {
    const ready = await w.waitFor('ready', 120_000);
    const t0 = ready.monoMs;
    const sample = () => {
      const m = memoryOf(w.pid);
      if (m) run.samples.push({ tMs: nowMs() - t0, ...m });
    };
    sample();
    sampler = setInterval(sample, SAMPLE_MS);
    let monitor: Monitor | undefined;
    try {
      monitor = await startMonitor(way, w.pid, round);
      run.monitor = monitor.describe;
      run.monitorStartMs = nowMs() - t0;
      const cpu0 = monitor.cpuUs();
      const endAt = t0 + run.monitorStartMs + seconds * 1000;
      while (nowMs() < endAt && w.events.every((e) => e.event !== 'exit')) await new Promise((r) => setTimeout(r, 200));
      run.monitorCpuUs = monitor.cpuUs() - cpu0;
      run.monitorEndMs = nowMs() - t0;
      run.schemeStats = await monitor.schemeStats();
    } catch (e) {
      run.error = (e as Error).message;
      log(`${way} round ${round}: ${run.error}`);
    } finally {
      await monitor?.stop().catch((e: Error) => log(`stopping ${way}: ${e.message}`));
    }
    clearInterval(sampler);
    sampler = undefined;
    w.kill('SIGTERM');
    await w.waitExit(30_000);
    for (const e of w.events) {
      if (e.event === 'rate') run.rates.push({ tMs: e.monoMs - t0, ms: e.ms, passesPerS: (e.passes * 1000) / e.ms });
    }
    return run;
  } finally {
    if (sampler) clearInterval(sampler);
    w.kill();
    pending.engine?.kill();
    pending.engine = undefined;
  }
}

function parseArgs(argv: string[]): { workload: string; ways: ReclaimWay[]; rounds: number; seconds: number } {
  const o = { workload: '', ways: ['baseline', 'kdamond', 'engine'] as ReclaimWay[], rounds: 1, seconds: 30 };
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${argv[i]} needs a value`);
    if (argv[i] === '--workload') o.workload = v;
    else if (argv[i] === '--ways') {
      o.ways = v.split(',').map((x) => {
        if (!(RECLAIM_WAYS as readonly string[]).includes(x)) throw new Error(`unknown way '${x}' (expected ${RECLAIM_WAYS.join(', ')})`);
        return x as ReclaimWay;
      });
    } else if (argv[i] === '--rounds') o.rounds = Number(v);
    else if (argv[i] === '--seconds') o.seconds = Number(v);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!o.workload) throw new Error('--workload is required');
  if (!(Number.isInteger(o.rounds) && o.rounds > 0) || !(o.seconds > 0)) throw new Error('--rounds and --seconds must be positive');
  return o;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const swaps = readFileSync('/proc/swaps', 'utf8');
  if (swaps.trim().split('\n').length < 2) throw new Error('the guest has no swap (/proc/swaps is empty): the kernel needs CONFIG_ZRAM (test/guest/kernel.config)');
  const memTotalKiB = Number(/^MemTotal:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]);
  const report: ReclaimReport = {
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    swaps: swaps.trim(),
    memTotalKiB,
    workloadArgs: workloadArgs(),
    seconds: o.seconds,
    runs: [],
  };
  for (let round = 0; round < o.rounds; round++) {
    for (const way of o.ways) {
      log(`round ${round + 1}/${o.rounds}: ${way}`);
      report.runs.push(await runOnce(o.workload, way, round, o.seconds));
    }
  }
  await stopFleet();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

(process.argv[2] === '--engine' ? engineMain() : main()).catch((e: Error) => {
  process.stderr.write(`reclaim-run: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
