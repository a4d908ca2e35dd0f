// The real controller and agents as `damon-fleet` child processes, for whole-system tests
// and the fleet benchmark: they can be killed with SIGKILL and started again, their log
// lines are kept (and shown with DAMON_TEST_LOG=1), and every child still running is
// killed when this process exits, so a failed test leaves no daemon behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestCredentials } from './credentials.js';

/** bin/damon-fleet.js, relative to the compiled dist/test/integration/support/. */
export const FLEET_BIN = fileURLToPath(new URL('../../../../bin/damon-fleet.js', import.meta.url));

/** How long a starting daemon may take to serve: generous, as a loaded machine starts Node slowly. */
const READY_TIMEOUT_MS = 30_000;

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface FleetProcess {
  /** "controller" or "agent <host>", for messages. */
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Every log line so far (stderr). */
  readonly log: string[];
  /** True once it exited. */
  exited(): boolean;
  /** SIGKILL: no clean shutdown, as in a crash; resolves once it is gone. */
  kill9(): Promise<void>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/**
 * Spawns `damon-fleet <args>` and resolves once a log line matches `ready` (with that
 * line's match), failing if it exits first or `timeoutMs` passes.
 */
async function spawnFleet(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  timeoutMs: number,
): Promise<{ proc: FleetProcess; match: RegExpMatchArray }> {
  const child = spawn(process.execPath, [FLEET_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  if (child.pid === undefined) throw new Error(`${name}: could not spawn ${FLEET_BIN}`);
  live.add(child);
  child.once('exit', () => live.delete(child));
  const log: string[] = [];
  let partial = '';
  let onLine: ((line: string) => void) | undefined;
  child.stderr!.on('data', (b: Buffer) => {
    const lines = (partial + b.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      log.push(l);
      if (process.env.DAMON_TEST_LOG === '1') process.stderr.write(`[${name}] ${l}\n`);
      onLine?.(l);
    }
  });
  const proc: FleetProcess = {
    name,
    child,
    pid: child.pid,
    log,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    async kill9() {
      const gone = waitExit(child);
      child.kill('SIGKILL');
      await gone;
    },
    async stop(graceMs = 5000) {
      const gone = waitExit(child);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await gone;
      clearTimeout(timer);
    },
  };
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      onLine = undefined;
      child.kill('SIGKILL');
      reject(new Error(`${name}: ${why}:\n${log.join('\n')}`));
    };
    const timer = setTimeout(() => fail(`not ready within ${timeoutMs} ms`), timeoutMs);
    const onExit = (code: number | null, sig: string | null) => fail(`exited with ${code ?? sig} before it was ready`);
    child.once('exit', onExit);
    onLine = (l) => {
      const m = ready.exec(l);
      if (!m) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      onLine = undefined;
      resolve(m);
    };
    for (const l of log) onLine?.(l);
  });
  return { proc, match };
}

export interface ControllerProcessOptions {
  /** "127.0.0.1:PORT": a fixed port, so that a restarted controller is found where it was. */
  listen: string;
  /** One NATS URL, or every node's of a cluster. */
  nats: string | readonly string[];
  /** Every identity's credentials, as `damon-fleet credentials` makes them. */
  credentials: TestCredentials;
  leaseTtlMs: number;
  heartbeatMs: number;
  /** For messages when several run (default "controller"). */
  name?: string;
  /** --leader-lease (default: the controller's). */
  leaderLeaseMs?: number;
  /** --nats-replicas (the controller's default, 1, when absent). */
  natsReplicas?: number;
  /** Further options (e.g. --metrics). */
  extraArgs?: readonly string[];
}

/** Runs `damon-fleet controller`; resolves once it listens (leading or standing by). */
export async function spawnController(o: ControllerProcessOptions): Promise<FleetProcess> {
  const { proc } = await spawnFleet(
    o.name ?? 'controller',
    ['controller', '--listen', o.listen, '--nats', [o.nats].flat().join(','), '--nats-nkey', o.credentials.controller,
      '--lease-ttl', `${o.leaseTtlMs}ms`, '--heartbeat', `${o.heartbeatMs}ms`,
      ...(o.leaderLeaseMs === undefined ? [] : ['--leader-lease', `${o.leaderLeaseMs}ms`]),
      '--identities', o.credentials.layout.controller.identities, '--agent-key-file', o.credentials.layout.controller.agentKey,
      ...(o.natsReplicas === undefined ? [] : ['--nats-replicas', String(o.natsReplicas)]), ...(o.extraArgs ?? [])],
    {},
    /controller listening on /,
    READY_TIMEOUT_MS,
  );
  return proc;
}

export interface AgentProcessOptions {
  host: string;
  /** "ADDR" or, with several controllers, "ADDR1,ADDR2". */
  controller: string;
  /** One NATS URL, or every node's of a cluster. */
  nats: string | readonly string[];
  credentials: TestCredentials;
  dataDir: string;
  /** Further options (e.g. --metrics). */
  extraArgs?: readonly string[];
}

export interface AgentProcess extends FleetProcess {
  /** The Agent service's address ("127.0.0.1:PORT"; a free port, new on every start). */
  readonly address: string;
  readonly instanceId: string;
}

/** Runs `damon-fleet agent` on a free loopback port; resolves once it serves. */
export async function spawnAgent(o: AgentProcessOptions): Promise<AgentProcess> {
  const { proc, match } = await spawnFleet(
    `agent ${o.host}`,
    ['agent', '--host', o.host, '--listen', '127.0.0.1:0', '--controller', o.controller, '--nats', [o.nats].flat().join(','),
      '--nats-nkey', o.credentials.agent(o.host), '--data-dir', o.dataDir,
      '--token-file', o.credentials.layout.agent(o.host).token, '--identities', o.credentials.layout.agent(o.host).identities, ...(o.extraArgs ?? [])],
    {},
    /serving damon\.v1\.Agent on (127\.0\.0\.1:\d+)/,
    READY_TIMEOUT_MS,
  );
  const instance = proc.log.map((l) => /\(instance ([0-9a-f-]{36})\) starting/.exec(l)).find((m) => m);
  if (!instance) throw new Error(`agent ${o.host}: no instance id in its log:\n${proc.log.join('\n')}`);
  return Object.assign(proc, { address: match[1], instanceId: instance[1] });
}
