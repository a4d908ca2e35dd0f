// Starts a private nats-server with JetStream on a free port for one test file, in the
// configuration damon-fleet runs it in: nkey users with least-privilege permissions from a
// credentials directory made by ensureNatsCredentials.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeServerConf } from '../../../common/nats-access.js';
import { testCredentials, type TestCredentials } from './credentials.js';

export { DEFAULT_TEST_HOSTS, TEST_READER, testCredentials, type TestCredentials } from './credentials.js';

export const NATS_SERVER_BIN = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';

/** A free TCP port on 127.0.0.1 (the kernel picks it; racy only against other processes). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A running nats-server: its process, and every log line so far (permission violations show there). */
export interface NatsProcess {
  child: ChildProcess;
  log: string[];
}

/**
 * Runs nats-server on 127.0.0.1:`port` with JetStream in `storeDir` and the users of
 * `credentials`, from a server configuration written beside them (as damon-fleet credentials
 * --server-conf writes it), plus `extraConf` (e.g. a tls block); resolves once it is ready.
 */
export function runNatsServer(credentials: TestCredentials, storeDir: string, port: number, extraConf = ''): Promise<NatsProcess> {
  const conf = join(credentials.dir, 'nats-server.conf');
  writeServerConf(conf, credentials.conf, { host: '127.0.0.1', port, storeDir });
  if (extraConf) appendFileSync(conf, extraConf);
  return spawnNatsServer(conf);
}

/** Runs nats-server -c `conf`; resolves once it is ready (logs with `label` when DAMON_TEST_LOG=1). */
export function spawnNatsServer(conf: string, label = 'nats-server'): Promise<NatsProcess> {
  const child = spawn(NATS_SERVER_BIN, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log: string[] = [];
  let partial = '';
  let ready: (() => void) | undefined;
  child.stderr!.on('data', (b: Buffer) => {
    const lines = (partial + b.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      log.push(l);
      if (process.env.DAMON_TEST_LOG === '1') process.stderr.write(`[${label}] ${l}\n`);
      if (l.includes('Server is ready')) ready?.();
    }
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server not ready in 10 s:\n${log.join('\n')}`)), 10_000);
    const onExit = (code: number | null, sig: string | null) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code ?? sig}:\n${log.join('\n')}`));
    };
    child.once('exit', onExit);
    ready = () => {
      clearTimeout(timer);
      child.off('exit', onExit);
      ready = undefined;
      resolve({ child, log });
    };
  });
}

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  credentials: TestCredentials;
  /** The server's log lines so far. */
  log: string[];
  readonly pid: number;
  /** SIGHUP (what nats-server --signal reload does): re-reads the configuration; resolves once reloaded. */
  reload(): Promise<void>;
  /** Stops the server (SIGTERM) and removes its store and credentials unless `keep`. */
  stop(keep?: boolean): Promise<void>;
}

export interface NatsServerOptions {
  /** Restart a server where it was: its store, port and credentials. */
  storeDir?: string;
  port?: number;
  credentials?: TestCredentials;
  /** Agent hosts the test uses (besides DEFAULT_TEST_HOSTS), when credentials are made here. */
  agents?: readonly string[];
  readers?: readonly string[];
  /** Appended to the server configuration (e.g. a tls block). */
  extraConf?: string;
}

/**
 * Runs nats-server -js on a free port with a fresh store directory and fresh credentials (or
 * the given ones, to restart a server where it was); resolves once it is ready.
 */
export async function startNatsServer(o: NatsServerOptions = {}): Promise<NatsServer> {
  const credentials = o.credentials ?? testCredentials({ agents: o.agents, readers: o.readers });
  const dir = o.storeDir ?? mkdtempSync(join(tmpdir(), 'damon-nats-'));
  const port = o.port ?? (await freePort());
  const { child, log } = await runNatsServer(credentials, dir, port, o.extraConf);
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: dir,
    credentials,
    log,
    pid: child.pid!,
    async reload() {
      const from = log.length;
      child.kill('SIGHUP');
      for (let i = 0; i < 100; i++) {
        if (log.slice(from).some((l) => l.includes('Reloaded server configuration'))) return;
        if (log.slice(from).some((l) => l.includes('[ERR]'))) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`nats-server did not reload:\n${log.slice(from).join('\n')}`);
    },
    async stop(keep = false) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keep) {
        rmSync(dir, { recursive: true, force: true });
        credentials.remove();
      }
    },
  };
}
