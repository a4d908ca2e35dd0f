// process_madvise(2) through the native library on real processes of this host: pageout
// of a file-backed mapping a child touched drops its resident pages, cold succeeds, a
// reaped child is ESRCH, an unaligned range EINVAL, and batches longer than IOV_MAX go
// through whole.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { once } from 'node:events';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  MadviseError,
  adviceSupported,
  openProcess,
  processMadvise,
  type ProcessHandle,
} from '../../agent/ops/process-madvise.js';
import { buildNative, REPO_ROOT } from '../unit/page-idle-fakes.js';

const PAGE = 4096;
const SIZE = 8 << 20;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'process-madvise-'));
const exe = path.join(dir, 'file-mapper');
// On the disk (not tmpfs): clean file pages are reclaimable without swap.
const dataDir = fs.mkdtempSync(path.join(REPO_ROOT, '.process-madvise-data-'));
const dataFile = path.join(dataDir, 'mapped');

before(() => {
  buildNative();
  const cc = spawnSync('cc', ['-O2', '-o', exe, path.join(REPO_ROOT, 'test/integration/fixtures/file-mapper.c')], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  fs.writeFileSync(dataFile, Buffer.alloc(SIZE, 7));
  // Written back, so its pages are clean: reclaim drops clean pages at once, dirty ones never.
  const fd = fs.openSync(dataFile, 'r');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Mapper {
  child: ChildProcess;
  start: number;
  end: number;
  ask(cmd: string): Promise<string>;
  stop(): Promise<void>;
}

async function startMapper(): Promise<Mapper> {
  const child = spawn(exe, [dataFile], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await lines.next();
    assert.ok(!r.done, 'the mapper closed its output');
    return r.value as string;
  };
  const m = /^ready ([0-9a-f]+) ([0-9a-f]+)$/.exec(await next());
  assert.ok(m);
  const exited = once(child, 'exit');
  return {
    child,
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
}

/** Rss (bytes) of the mapping starting at `start`, from /proc/PID/smaps. */
function mappingRss(pid: number, start: number): number {
  const text = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8');
  const head = `${start.toString(16)}-`;
  const at = text.split('\n').findIndex((l) => l.startsWith(head));
  assert.ok(at >= 0, 'mapping not in smaps');
  const rss = text
    .split('\n')
    .slice(at + 1)
    .find((l) => l.startsWith('Rss:'));
  return Number(/(\d+) kB/.exec(rss!)![1]) * 1024;
}

function withHandle<T>(pid: number, f: (h: ProcessHandle) => T): T {
  const h = openProcess(pid);
  try {
    return f(h);
  } finally {
    h.close();
  }
}

test('process_madvise and its advices are there on this kernel', () => {
  assert.equal(adviceSupported('pageout'), true);
  assert.equal(adviceSupported('cold'), true);
  assert.equal(adviceSupported('willneed'), true);
});

test('pageout of a file-backed mapping the child touched drops its resident pages', async () => {
  const m = await startMapper();
  try {
    assert.equal(await m.ask('resident'), `resident ${SIZE / PAGE}`);
    assert.equal(mappingRss(m.child.pid!, m.start), SIZE);
    const r = withHandle(m.child.pid!, (h) => processMadvise(h, [{ start: m.start, end: m.end }], 'pageout'));
    assert.equal(r.bytes, SIZE);
    // Pageout unmaps the pages from the child and reclaims the clean page cache behind them.
    assert.ok(mappingRss(m.child.pid!, m.start) <= SIZE / 16, `Rss after pageout: ${mappingRss(m.child.pid!, m.start)}`);
    const resident = Number(/^resident (\d+)$/.exec(await m.ask('resident'))![1]);
    assert.ok(resident <= SIZE / PAGE / 16, `${resident} of ${SIZE / PAGE} pages still in memory`);
    // Touching brings them back: the advice lost nothing.
    assert.equal(await m.ask('touch'), 'touched');
    assert.equal(mappingRss(m.child.pid!, m.start), SIZE);
  } finally {
    await m.stop();
  }
});

test('cold succeeds and keeps the pages; more ranges than IOV_MAX go through whole', async () => {
  const m = await startMapper();
  try {
    withHandle(m.child.pid!, (h) => {
      assert.equal(processMadvise(h, [{ start: m.start, end: m.end }], 'cold').bytes, SIZE);
      // One range per page: 2048 ranges, two batches of at most 1024 iovecs.
      const ranges = [];
      for (let a = m.start; a < m.end; a += PAGE) ranges.push({ start: a, end: a + PAGE });
      assert.equal(processMadvise(h, ranges, 'willneed').bytes, SIZE);
      assert.equal(processMadvise(h, [], 'cold').bytes, 0);
    });
    assert.equal(mappingRss(m.child.pid!, m.start), SIZE);
  } finally {
    await m.stop();
  }
});

test('an unaligned range is EINVAL, after the ranges before it were advised', async () => {
  const m = await startMapper();
  try {
    withHandle(m.child.pid!, (h) => {
      assert.throws(
        () =>
          processMadvise(
            h,
            [
              { start: m.start, end: m.start + PAGE },
              { start: m.start + PAGE + 1, end: m.start + 2 * PAGE },
            ],
            'cold',
          ),
        (e: unknown) =>
          e instanceof MadviseError && e.errno === 'EINVAL' && e.bytesAdvised === PAGE && e.rangeIndex === 1 && /range 1/.test(e.message),
      );
    });
  } finally {
    await m.stop();
  }
});

test('a process that exited is ESRCH, through an old pidfd and for a new one', async () => {
  const m = await startMapper();
  const pid = m.child.pid!;
  const h = openProcess(pid);
  try {
    await m.stop(); // exited and reaped by Node
    assert.throws(
      () => processMadvise(h, [{ start: m.start, end: m.end }], 'pageout'),
      (e: unknown) => e instanceof MadviseError && e.errno === 'ESRCH',
    );
    // The pid is free (or, rarely, reused by another process, which is then not ESRCH).
    if (!fs.existsSync(`/proc/${pid}`)) {
      assert.throws(
        () => openProcess(pid),
        (e: unknown) => e instanceof MadviseError && e.errno === 'ESRCH' && new RegExp(`process ${pid}`).test(e.message),
      );
    }
  } finally {
    h.close();
    h.close(); // idempotent
  }
  assert.throws(
    () => processMadvise(h, [{ start: 0, end: PAGE }], 'cold'),
    (e: unknown) => e instanceof MadviseError && e.errno === 'EBADF',
  );
});

test('bad arguments are refused before any system call', () => {
  assert.throws(() => openProcess(0), (e: unknown) => e instanceof MadviseError && e.errno === 'EINVAL');
  assert.throws(() => openProcess(1.5), (e: unknown) => e instanceof MadviseError && e.errno === 'EINVAL');
  withHandle(process.pid, (h) => {
    assert.throws(
      () => processMadvise(h, [{ start: 2 * PAGE, end: PAGE }], 'cold'),
      (e: unknown) => e instanceof MadviseError && e.errno === 'EINVAL' && e.rangeIndex === 0,
    );
    assert.throws(
      () => processMadvise(h, [{ start: 0, end: PAGE }], 'dontneed' as never),
      (e: unknown) => e instanceof MadviseError && /unknown advice/.test(e.message),
    );
  });
});
