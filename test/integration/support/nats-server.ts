// Starts a private nats-server with JetStream on a free port for one test file, in the
// configuration damon-fleet runs it in: nkey users with least-privilege permissions from a
// credentials directory made by ensureNatsCredentials.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentialPaths, ensureNatsCredentials, writeServerConf } from '../../../common/nats-access.js';

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

/** Agent hosts every test server knows (those the controller tests use), besides those a test names. */
export const DEFAULT_TEST_HOSTS = ['h', 'h1', 'h2', 'h3', 'h4', 'host-a', 'host-b', 'host.b.example'] as const;
/** The reader every test server knows. */
export const TEST_READER = 'test-reader';

/** A credentials directory (damon-fleet credentials' layout) and its nkey seed files. */
export interface TestCredentials {
  dir: string;
  /** The accounts file (users, permissions) the server configuration includes. */
  conf: string;
  controller: string;
  operator: string;
  /** The agent host's seed file; throws for a host the directory was not made for. */
  agent(host: string): string;
  /** The reader's seed file (TEST_READER unless named). */
  reader(name?: string): string;
  remove(): void;
}

/** Makes a credentials directory for `agents` (plus DEFAULT_TEST_HOSTS) and `readers` (plus TEST_READER). */
export function testCredentials(o: { agents?: readonly string[]; readers?: readonly string[] } = {}): TestCredentials {
  const dir = mkdtempSync(join(tmpdir(), 'damon-creds-'));
  const agents = [...new Set([...DEFAULT_TEST_HOSTS, ...(o.agents ?? [])])];
  const readers = [...new Set([TEST_READER, ...(o.readers ?? [])])];
  const r = ensureNatsCredentials(dir, { agents, readers });
  const nkey = (idDir: string) => credentialPaths.nkey(idDir);
  return {
    dir,
    conf: r.conf,
    controller: nkey(credentialPaths.controller(dir)),
    operator: nkey(credentialPaths.operator(dir)),
    agent(host) {
      if (!agents.includes(host)) throw new Error(`test credentials: no agent "${host}" (give it to startNatsServer's agents)`);
      return nkey(credentialPaths.agent(dir, host));
    },
    reader(name = TEST_READER) {
      if (!readers.includes(name)) throw new Error(`test credentials: no reader "${name}"`);
      return nkey(credentialPaths.reader(dir, name));
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
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
  const child = spawn(NATS_SERVER_BIN, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log: string[] = [];
  let partial = '';
  let ready: (() => void) | undefined;
  child.stderr!.on('data', (b: Buffer) => {
    const lines = (partial + b.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) {
      log.push(l);
      if (process.env.DAMON_TEST_LOG === '1') process.stderr.write(`[nats-server] ${l}\n`);
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
