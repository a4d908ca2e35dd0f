// Runs INSIDE the guest: the whole damon-fleet path on a kernel with DAMON and page_idle.
// nats-server (the host's binary), the controller and one agent (`damon-fleet controller`,
// `damon-fleet agent` as processes), a workload, and a session on its pid with default
// operations; then the workload exits and the session turns itself off. Prints one JSON
// object (SystemRunReport) with what a consumer and the kernel showed; the test on the
// host (system.test.ts) judges it. Needs the loopback interface up (the test's command
// does `ip link set lo up`).
//
// Usage: node dist/test/guest/system-run.js --workload BIN [--phase-ms 5000]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { connectNats } from '../../common/nats.js';
import { eventsSubject, recordsFilter } from '../../common/subjects.js';
import { SessionEvent, SessionEventKind, SessionState, TargetState } from '../../gen/damon/v1/damon.js';
import { decodeRecord } from '../../common/record-wire.js';
import { controllerClient, unary, waitFor } from '../integration/support/grpc-client.js';
import { freePort, startNatsServer } from '../integration/support/nats-server.js';
import { recordToJson, type RecordJson } from './record-json.js';
import type { WorkloadEvent } from './workload.js';
import { WorkloadProcess } from './workload-process.js';

const BIN = fileURLToPath(new URL('../../../bin/damon-fleet.js', import.meta.url));
const HOST = 'guest-1';
const SESSION = 'guest-system';
const KDAMONDS = '/sys/kernel/mm/damon/admin/kdamonds';

export interface SystemRunReport {
  agentOperations: string[];
  agentUnavailable: string[];
  /** The session's target status right after TurnOn. */
  onStatus: { state: string; operations: string; message: string };
  /** The guest kernel's DAMON while the session ran: kdamond 0's state and target pid. */
  kernelWhileOn: { nrKdamonds: string; state: string; operations: string; pidTarget: string; traceInstances: string[] };
  /** ... and once the session was off. */
  kernelAfterOff: { nrKdamonds: string; traceInstances: string[] };
  /** The workload's mappings when the session turned on ("start-end" hex, from /proc/PID/maps). */
  maps: string[];
  records: { subject: string; operations: string; host: string; pid: number; sequence: string; record: RecordJson; atMs: number }[];
  events: { kind: string; reason: string; pid?: number; atMs: number }[];
  final: { state: string; offReason: string; target: { state: string; operations: string; message: string } };
  workload: WorkloadEvent[];
  onAtMs: number;
  log: string[];
}

const logLines: string[] = [];
function log(msg: string): void {
  logLines.push(msg);
  process.stderr.write(`system-run: ${msg}\n`);
}

export interface Daemon {
  child: ChildProcess;
  lines: string[];
}

/** Starts `damon-fleet <args>` and waits for a log line matching `ready`. */
export async function daemon(name: string, args: string[], ready: RegExp, timeoutMs: number): Promise<Daemon> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines: string[] = [];
  let rest = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      logLines.push(`[${name}] ${l}`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} not ready within ${timeoutMs} ms:\n${lines.join('\n')}`)), timeoutMs);
    const check = setInterval(() => {
      if (lines.some((l) => ready.test(l))) {
        clearTimeout(timer);
        clearInterval(check);
        resolve();
      }
    }, 50);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      clearInterval(check);
      reject(new Error(`${name} exited (${code ?? sig}) before it was ready:\n${lines.join('\n')}`));
    });
  });
  child.removeAllListeners('exit');
  return { child, lines };
}

export async function stop(d: Daemon | undefined): Promise<void> {
  if (d === undefined || d.child.exitCode !== null || d.child.signalCode !== null) return;
  const gone = new Promise((r) => d.child.once('exit', r));
  d.child.kill('SIGTERM');
  const t = setTimeout(() => d.child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (e) {
    return `unreadable (${(e as NodeJS.ErrnoException).code})`;
  }
}

function traceInstances(): string[] {
  return readdirSync('/sys/kernel/tracing/instances');
}

async function run(bin: string, phaseMs: number): Promise<SystemRunReport> {
  const nats = await startNatsServer({ agents: [HOST] });
  log(`nats-server at ${nats.url}`);
  const creds = nats.credentials;
  let controller: Daemon | undefined;
  let agent: Daemon | undefined;
  let w: WorkloadProcess | undefined;
  const nc = await connectNats({ servers: nats.url, name: 'guest system test', nkeyFile: nats.credentials.reader() });
  try {
    const listen = `127.0.0.1:${await freePort()}`;
    // The guest's /tmp (the NATS store) is a tmpfs of a few hundred MiB: JetStream refuses a
    // records stream of the default 1 GiB there.
    controller = await daemon(
      'controller',
      ['controller', '--listen', listen, '--nats', nats.url, '--nats-nkey', creds.controller, '--lease-ttl', '5s', '--heartbeat', '1s', '--records-max-bytes', '64M', '--actions-max-bytes', '16M',
        '--identities', creds.layout.controller.identities, '--agent-key-file', creds.layout.controller.agentKey],
      /controller listening on /,
      // Node loads the daemon's modules over 9p under emulation: on a busy host, minutes.
      180_000,
    );
    log(`controller at ${listen}`);
    agent = await daemon(
      'agent',
      ['agent', '--host', HOST, '--listen', '127.0.0.1:0', '--controller', listen, '--nats', nats.url, '--nats-nkey', creds.agent(HOST),
        '--data-dir', mkdtempSync(join(tmpdir(), 'agent-')), '--token-file', creds.layout.agent(HOST).token, '--identities', creds.layout.agent(HOST).identities],
      /serving damon\.v1\.Agent on /,
      180_000,
    );
    const client = controllerClient(listen, creds.grpc.operator);
    const info = await waitFor('the agent registered and live', async () => {
      const { agents } = await unary(client, 'listAgents', {});
      return agents.find((a) => a.host === HOST && a.live);
    }, 30_000);
    log(`agent live with operations ${info.operations.join(', ')}`);

    const records: SystemRunReport['records'] = [];
    const events: SystemRunReport['events'] = [];
    const recSub = nc.subscribe(recordsFilter(SESSION));
    const evSub = nc.subscribe(eventsSubject(SESSION));
    void (async () => {
      for await (const m of recSub) {
        const r = decodeRecord(m.data);
        const record = recordToJson({
          targetId: r.pid,
          startNs: r.startTimeNs,
          endNs: r.endTimeNs,
          maxNrAccesses: r.maxNrAccesses,
          regions: r.regions.map((g) => ({ start: Number(g.start), end: Number(g.end), nrAccesses: g.nrAccesses, age: g.age })),
        });
        records.push({ subject: m.subject, operations: r.operations, host: r.host, pid: r.pid, sequence: r.sequence.toString(), record, atMs: Date.now() });
      }
    })();
    void (async () => {
      for await (const m of evSub) {
        const e = SessionEvent.decode(m.data);
        events.push({ kind: SessionEventKind[e.kind], reason: e.reason, ...(e.target ? { pid: e.target.pid } : {}), atMs: Date.now() });
      }
    })();
    await nc.flush();

    w = WorkloadProcess.start(bin, ['--size', '256M', '--align', '2M', '--thp', 'hugepage', '--tlb-flush-ms', '1', '--pause-us', '1000', '--phase', `${phaseMs}:64M+16M`]);
    await w.waitFor('phase', 60_000, 0);
    log(`workload pid ${w.pid} in its phase; creating the session`);
    const maps = readFileSync(`/proc/${w.pid}/maps`, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')[0]!);
    await unary(client, 'createSession', {
      id: SESSION,
      attrs: { samplingIntervalUs: 5000n, aggregationIntervalUs: 100_000n, updateIntervalUs: 1_000_000n, minNrRegions: 10, maxNrRegions: 1000, resultFile: '', resultFormat: '', schemes: [] },
      attrsText: '', schemesText: '',
      targets: [{ host: HOST, pid: w.pid }],
      operations: '',
      syntheticWorkload: '',
    });
    const on = await unary(client, 'turnOn', { id: SESSION });
    const onAtMs = Date.now();
    const ts = on.targetStatus[0];
    log(`session on: target ${TargetState[ts?.state ?? 0]} with ${ts?.operations} ${ts?.message ?? ''}`);
    await waitFor('five records', () => records.length >= 5, 20_000);
    const kernelWhileOn = {
      nrKdamonds: read(`${KDAMONDS}/nr_kdamonds`),
      state: read(`${KDAMONDS}/0/state`),
      operations: read(`${KDAMONDS}/0/contexts/0/operations`),
      pidTarget: read(`${KDAMONDS}/0/contexts/0/targets/0/pid_target`),
      traceInstances: traceInstances(),
    };
    log(`kernel: ${JSON.stringify(kernelWhileOn)}; waiting for the workload to exit`);
    await w.waitExit(phaseMs + 30_000);
    const final = await waitFor('the session off', async () => {
      const s = await unary(client, 'getSession', { id: SESSION });
      return s.state === SessionState.SESSION_STATE_OFF ? s : undefined;
    }, 30_000);
    await waitFor('the OFF event', () => events.some((e) => e.kind === 'SESSION_EVENT_KIND_OFF'), 10_000).catch(() => undefined);
    // The agent removes its kdamond when the session's context stops; give it a moment.
    await waitFor('the kdamond removed', () => read(`${KDAMONDS}/nr_kdamonds`) === '0', 10_000).catch(() => undefined);
    const t = final.targetStatus[0];
    recSub.unsubscribe();
    evSub.unsubscribe();
    client.close();
    return {
      agentOperations: info.operations,
      agentUnavailable: info.unavailable,
      onStatus: { state: TargetState[ts?.state ?? 0], operations: ts?.operations ?? '', message: ts?.message ?? '' },
      kernelWhileOn,
      kernelAfterOff: { nrKdamonds: read(`${KDAMONDS}/nr_kdamonds`), traceInstances: traceInstances() },
      maps,
      records,
      events,
      final: {
        state: SessionState[final.state],
        offReason: final.offReason,
        target: { state: TargetState[t?.state ?? 0], operations: t?.operations ?? '', message: t?.message ?? '' },
      },
      workload: w.events,
      onAtMs,
      log: [],
    };
  } finally {
    w?.kill();
    await stop(agent);
    await stop(controller);
    await nc.close().catch(() => undefined);
    await nats.stop();
  }
}

async function main(argv: string[]): Promise<void> {
  let bin: string | undefined;
  let phaseMs = 5000;
  for (let i = 0; i < argv.length; i += 2) {
    const [opt, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`option ${opt} needs a value`);
    if (opt === '--workload') bin = v;
    else if (opt === '--phase-ms') {
      phaseMs = Number(v);
      if (!Number.isInteger(phaseMs) || phaseMs < 1000) throw new Error(`--phase-ms must be a whole number >= 1000, got "${v}"`);
    } else throw new Error(`unknown option "${opt}" (expected --workload BIN [--phase-ms N])`);
  }
  if (bin === undefined) throw new Error('--workload BIN is required');
  const report = await run(bin, phaseMs);
  report.log = logLines;
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`system-run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n${logLines.slice(-40).join('\n')}\n`);
      process.exit(1);
    },
  );
}
