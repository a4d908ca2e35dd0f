// What the agent's integration tests share: a nats-server that can be killed with
// SIGKILL and restarted on the same port and store, target processes, an Agent client,
// and specs.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { channelCredentials, clientOptions, type Credentials } from '../../../common/auth.js';
import { AgentClient, type Scheme, type SessionSpec } from '../../../gen/damon/v1/damon.js';
import { createLogger, silentLogger, type Logger } from '../../../common/log.js';
import { freePort, runNatsServer, testCredentials, type TestCredentials } from './nats-server.js';

export interface KillableNats {
  url: string;
  port: number;
  storeDir: string;
  credentials: TestCredentials;
  /** The server's log lines (of the current run). */
  readonly log: string[];
  /** SIGKILL: no clean shutdown, as in a crash. */
  kill9(): Promise<void>;
  /** Starts it again on the same port, store and credentials. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function waitExit(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  return exited;
}

/** A nats-server (credentials for `o.agents` and the defaults) that a test may kill and restart. */
export async function startKillableNats(o: { agents?: readonly string[]; credentials?: TestCredentials } = {}): Promise<KillableNats> {
  const credentials = o.credentials ?? testCredentials({ agents: o.agents });
  const dir = mkdtempSync(join(tmpdir(), 'damon-agent-nats-'));
  const port = await freePort();
  let nats = await runNatsServer(credentials, dir, port);
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: dir,
    credentials,
    get log() {
      return nats.log;
    },
    kill9: () => waitExit(nats.child, 'SIGKILL'),
    async restart() {
      nats = await runNatsServer(credentials, dir, port);
    },
    async stop() {
      await waitExit(nats.child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
      credentials.remove();
    },
  };
}

/** A process to monitor: `sleep 60`, killed by the test or at the end. */
export function spawnTarget(): ChildProcess & { pid: number } {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  if (child.pid === undefined) throw new Error('could not spawn sleep');
  return child as ChildProcess & { pid: number };
}

export function killTarget(child: ChildProcess): Promise<void> {
  return waitExit(child, 'SIGKILL');
}

/** A pid that no process has (the kernel's pid_max is at most 2^22). */
export const MISSING_PID = 4_194_303;

export function agentClient(address: string, creds: Credentials, extra: Partial<grpc.ClientOptions> = {}): AgentClient {
  return new AgentClient(address, channelCredentials(creds), clientOptions(creds, extra));
}

/** Fast intervals: 10 ms sampling, 200 ms aggregation, 1 s update, 10..100 regions. */
export const FAST_ATTRS = {
  samplingIntervalUs: 10_000n,
  aggregationIntervalUs: 200_000n,
  updateIntervalUs: 1_000_000n,
  minNrRegions: 10,
  maxNrRegions: 100,
  resultFile: '',
  resultFormat: '',
  schemes: [] as Scheme[],
};
export const AGGREGATION_MS = 200;

export function syntheticSpec(sessionId: string, pids: number[], o: Partial<SessionSpec> = {}): SessionSpec {
  return {
    sessionId,
    attrs: { ...FAST_ATTRS },
    pids,
    operations: 'synthetic',
    syntheticWorkload: 'hot5',
    generation: 1n,
    ...o,
  };
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** The agent's log on stderr when DAMON_TEST_LOG=1 (to see what it did), else nothing. */
export function agentTestLogger(): Logger {
  return process.env.DAMON_TEST_LOG === '1' ? createLogger('agent') : silentLogger;
}
