// A real child process that maps a clean file on disk and touches every page
// (fixtures/file-mapper.c), for tests that advise its memory through process_madvise;
// and the Rss of that mapping, as /proc/PID/smaps shows it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { once } from 'node:events';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { buildNative, REPO_ROOT } from '../../unit/page-idle-fakes.js';

export interface Mapper {
  child: ChildProcess;
  pid: number;
  /** The mapping, [start, end). */
  start: number;
  end: number;
  /** Sends a command line ("resident", "touch"), resolves with the answer line. */
  ask(cmd: string): Promise<string>;
  /** Closes its stdin; resolves once it exited (and Node reaped it). */
  stop(): Promise<void>;
}

export interface MapperRig {
  size: number;
  start(): Promise<Mapper>;
  /** Removes the program and the data file. */
  close(): void;
}

/** Builds the native library and the fixture, writes a clean `size`-byte file (on disk, not tmpfs). */
export function fileMapperRig(size: number): MapperRig {
  buildNative();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'file-mapper-'));
  const exe = path.join(dir, 'file-mapper');
  // On the disk, not tmpfs: clean file pages are reclaimable without swap.
  const dataDir = fs.mkdtempSync(path.join(REPO_ROOT, '.file-mapper-data-'));
  const dataFile = path.join(dataDir, 'mapped');
  const cc = spawnSync('cc', ['-O2', '-o', exe, path.join(REPO_ROOT, 'test/integration/fixtures/file-mapper.c')], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  fs.writeFileSync(dataFile, Buffer.alloc(size, 7));
  // Written back, so its pages are clean: reclaim drops clean pages at once, dirty ones never.
  const fd = fs.openSync(dataFile, 'r');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return {
    size,
    async start() {
      const child = spawn(exe, [dataFile], { stdio: ['pipe', 'pipe', 'inherit'] });
      const exited = once(child, 'exit');
      const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      const next = async (): Promise<string> => {
        const r = await lines.next();
        assert.ok(!r.done, 'the mapper closed its output');
        return r.value as string;
      };
      const m = /^ready ([0-9a-f]+) ([0-9a-f]+)$/.exec(await next());
      assert.ok(m);
      return {
        child,
        pid: child.pid!,
        start: parseInt(m[1], 16),
        end: parseInt(m[2], 16),
        async ask(cmd) {
          child.stdin!.write(`${cmd}\n`);
          return next();
        },
        async stop() {
          child.stdin!.end();
          await exited;
        },
      };
    },
    close() {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Rss (bytes) of the mapping starting at `start`, from /proc/PID/smaps. */
export function mappingRss(pid: number, start: number): number {
  const lines = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n');
  const at = lines.findIndex((l) => l.startsWith(`${start.toString(16)}-`));
  assert.ok(at >= 0, 'mapping not in smaps');
  const rss = lines.slice(at + 1).find((l) => l.startsWith('Rss:'));
  return Number(/(\d+) kB/.exec(rss!)![1]) * 1024;
}
