// process_madvise(2) through the native library on real processes of this host: pageout
// of a file-backed mapping a child touched drops its resident pages, cold succeeds, a
// reaped child is ESRCH, an unaligned range EINVAL, and batches longer than IOV_MAX go
// through whole.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  MadviseError,
  adviceSupported,
  openProcess,
  processMadvise,
  type ProcessHandle,
} from '../../agent/ops/process-madvise.js';
import { toucherRig, type ToucherRig } from './support/file-toucher.js';

const PAGE = 4096;
const SIZE = 8 << 20;
let rig: ToucherRig;

before(() => {
  rig = toucherRig(SIZE);
});

after(() => rig.close());

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
  const t = await rig.start();
  const m = t.range;
  try {
    assert.equal(await t.residentPages(), SIZE / PAGE);
    assert.equal(t.rssBytes(), SIZE);
    const r = withHandle(t.pid, (h) => processMadvise(h, [{ start: m.start, end: m.end }], 'pageout'));
    assert.equal(r.bytes, SIZE);
    // Pageout unmaps the pages from the child and reclaims the clean page cache behind them.
    assert.ok(t.rssBytes() <= SIZE / 16, `Rss after pageout: ${t.rssBytes()}`);
    const resident = await t.residentPages();
    assert.ok(resident <= SIZE / PAGE / 16, `${resident} of ${SIZE / PAGE} pages still in memory`);
    // Touching brings them back: the advice lost nothing.
    await t.touch();
    assert.equal(t.rssBytes(), SIZE);
  } finally {
    await t.kill();
  }
});

test('cold succeeds and keeps the pages; more ranges than IOV_MAX go through whole', async () => {
  const t = await rig.start();
  const m = t.range;
  try {
    withHandle(t.pid, (h) => {
      assert.equal(processMadvise(h, [{ start: m.start, end: m.end }], 'cold').bytes, SIZE);
      // One range per page: 2048 ranges, two batches of at most 1024 iovecs.
      const ranges = [];
      for (let a = m.start; a < m.end; a += PAGE) ranges.push({ start: a, end: a + PAGE });
      assert.equal(processMadvise(h, ranges, 'willneed').bytes, SIZE);
      assert.equal(processMadvise(h, [], 'cold').bytes, 0);
    });
    assert.equal(t.rssBytes(), SIZE);
  } finally {
    await t.kill();
  }
});

test('an unaligned range is EINVAL, after the ranges before it were advised', async () => {
  const t = await rig.start();
  const m = t.range;
  try {
    withHandle(t.pid, (h) => {
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
    await t.kill();
  }
});

test('a process that exited is ESRCH, through an old pidfd and for a new one', async () => {
  const t = await rig.start();
  const m = t.range;
  const pid = t.pid;
  const h = openProcess(pid);
  try {
    await t.kill(); // exited and reaped by Node
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
