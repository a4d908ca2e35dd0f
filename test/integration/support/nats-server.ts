// Starts a private nats-server with JetStream on a free port for one test file.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  /** Stops the server (SIGTERM) and removes its store unless `keepStore`. */
  stop(keepStore?: boolean): Promise<void>;
}

/**
 * Runs nats-server -js on a free port with a fresh store directory (or the given ones, to
 * restart a server where it was); resolves once it is ready.
 */
export async function startNatsServer(storeDir?: string, atPort?: number): Promise<NatsServer> {
  const dir = storeDir ?? mkdtempSync(join(tmpdir(), 'damon-nats-'));
  const port = atPort ?? (await freePort());
  const child: ChildProcess = spawn(NATS_SERVER_BIN, ['-js', '-sd', dir, '-a', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server not ready in 10 s:\n${log}`)), 10_000);
    child.stderr!.on('data', (b: Buffer) => {
      log += b.toString();
      if (log.includes('Server is ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited with ${code}:\n${log}`));
    });
  });
  child.stderr!.resume();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir: dir,
    async stop(keepStore = false) {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (!keepStore) rmSync(dir, { recursive: true, force: true });
    },
  };
}
