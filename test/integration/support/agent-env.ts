// What the agent's integration tests share: a nats-server that can be killed with
// SIGKILL and restarted on the same port and store, target processes, an Agent client,
// and specs.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { channelCredentials, clientOptions, type Credentials } from '../../../common/auth.js';
import { AgentClient, type SessionSpec } from '../../../gen/damon/v1/damon.js';
import { createLogger, silentLogger, type Logger } from '../../../common/log.js';
import { NATS_SERVER_BIN, freePort } from './nats-server.js';

export interface KillableNats {
  url: string;
  port: number;
  storeDir: string;
  /** SIGKILL: no clean shutdown, as in a crash. */
  kill9(): Promise<void>;
  /** Starts it again on the same port and store. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function runNats(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(NATS_SERVER_BIN, ['-js', '-sd', dir, '-a', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server not ready in 10 s:\n${log}`)), 10_000);
    const onData = (b: Buffer) => {
      log += b.toString();
      if (log.includes('Server is ready')) {
        clearTimeout(timer);
        child.stderr!.off('data', onData);
        child.stderr!.resume();
        resolve(child);
      }
    };
    child.stderr!.on('data', onData);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code ?? sig}:\n${log}`));
    });
  });
}

function waitExit(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  return exited;
}

export async function startKillableNats(): Promise<KillableNats> {
  const dir = mkdtempSync(join(tmpdir(), 'damon-agent-nats-'));
  const port = await freePort();
  let child = await runNats(port, dir);
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: dir,
    kill9: () => waitExit(child, 'SIGKILL'),
    async restart() {
      child = await runNats(port, dir);
    },
    async stop() {
      await waitExit(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
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
