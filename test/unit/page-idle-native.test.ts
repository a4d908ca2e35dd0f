// The native access checks (native/src/damon_access.c through agent/ops/native.ts) against
// fake pagemap, kpageflags and bitmap files: which PFN and bit are read and written, huge
// page heads, shared checks, pages that cannot be checked, files that end early, I/O
// retries, and the errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  ArmedPages,
  NativeAccessError,
  type AccessFiles,
  type AccessStats,
} from '../../agent/ops/native.js';
import {
  FakeHost, KPF_HEAD, KPF_HUGE, KPF_LRU, KPF_TAIL, KPF_THP, NativeFixture, PAGE, PM_PRESENT, PM_SWAPPED, REPO_ROOT,
} from './page-idle-fakes.js';

const fixture = new NativeFixture();
const open = (p: string, flags: string): number => fixture.open(p, flags);
const PID = 100;

function host(): FakeHost {
  const h = fixture.host();
  h.addProcess(PID, '');
  return h;
}

function files(h: FakeHost, bitmapFlags = 'r+'): AccessFiles {
  return {
    pagemap: { fd: open(h.pagemapPath(PID), 'r'), path: h.pagemapPath(PID) },
    kpageflags: { fd: open(h.kpageflags, 'r'), path: h.kpageflags },
    bitmap: { fd: open(h.bitmap, bitmapFlags), path: h.bitmap },
  };
}

const f64 = (...a: number[]) => Float64Array.from(a);

/** Each set of files is one target: the pages its calls armed carry over from call to call. */
const armedOf = new WeakMap<AccessFiles, ArmedPages>();
function armed(f: AccessFiles): ArmedPages {
  let a = armedOf.get(f);
  if (!a) armedOf.set(f, (a = new ArmedPages()));
  return a;
}

function prepare(f: AccessFiles, ...addrs: number[]): AccessStats {
  return fixture.native.prepare(f, f64(...addrs), addrs.length, armed(f));
}

/** Checks `cur` and arms `next`; returns the accessed flags and the stats. */
function check(f: AccessFiles, cur: number[], next: number[] = []): { accessed: number[]; stats: AccessStats } {
  const accessed = new Uint8Array(cur.length).fill(7);
  const stats = fixture.native.checkAndPrepare(f, f64(...cur), cur.length, accessed, f64(...next), next.length, armed(f));
  return { accessed: Array.from(accessed), stats };
}

const V = 0x400000; // a virtual page: pagemap entry at byte (V / 4096) * 8

test('the library resolves addresses with this host page size', () => {
  assert.equal(fixture.native.pageSize, PAGE);
});

test('arming sets bit pfn % 64 of word pfn / 64 and nothing else; accessed = bit cleared', () => {
  const h = host();
  const pfn = 0x1234; // word 0x48, bit 0x34
  h.map(PID, V, pfn);
  h.flags(pfn, KPF_LRU);
  const f = files(h);
  const s = prepare(f, V + 123);
  assert.equal(s.armed, 1);
  assert.deepEqual(h.nonZeroBitmapWords(), [[0x48, 1n << 0x34n]]);
  assert.equal(fs.statSync(h.bitmap).size, 0x49 * 8, 'one 8-byte word written at byte 0x240');

  let r = check(f, [V + 4000]);
  assert.deepEqual(r.accessed, [0], 'still idle: not accessed');
  assert.equal(r.stats.checked, 1);
  assert.equal(r.stats.armed, 0);
  assert.deepEqual(h.nonZeroBitmapWords(), [[0x48, 1n << 0x34n]], 'checking alone writes nothing');

  h.access(pfn);
  r = check(f, [V]);
  assert.deepEqual(r.accessed, [1]);
});

test('one call checks the current samples, then arms the next ones', () => {
  const h = host();
  const a = 0x1000, b = 0x2040; // words 0x40 and 0x81
  h.map(PID, V, a);
  h.map(PID, V + PAGE, b);
  h.flags(a, KPF_LRU);
  h.flags(b, KPF_LRU);
  const f = files(h);
  prepare(f, V);
  h.access(a);
  // The next sample is the page just checked: it must be read before it is re-armed.
  let r = check(f, [V], [V, V + PAGE]);
  assert.deepEqual(r.accessed, [1]);
  assert.equal(r.stats.armed, 2);
  assert.ok(h.isIdle(a) && h.isIdle(b), 'both next pages marked idle');
  r = check(f, [V, V + PAGE], []);
  assert.deepEqual(r.accessed, [0, 0]);
});

test('samples in one page or one huge page share one check; pages of one word share one write', () => {
  const h = host();
  h.map(PID, V, 0x40);
  h.map(PID, V + PAGE, 0x41);
  h.flags(0x40, KPF_LRU);
  h.flags(0x41, KPF_LRU);
  h.thp(0x4000, 512);
  h.map(PID, V + 2 * PAGE, 0x4001);
  h.map(PID, V + 3 * PAGE, 0x4100);
  const f = files(h);

  const s = prepare(f, V, V + 8, V + PAGE, V + 2 * PAGE, V + 3 * PAGE + 5);
  assert.equal(s.armed, 3, 'pages 0x40, 0x41 and the THP head 0x4000');
  assert.equal(s.hugeTail, 2);
  assert.deepEqual(h.nonZeroBitmapWords(), [
    [1, 0b11n],
    [0x100, 1n],
  ]);

  h.access(0x41);
  const r = check(f, [V + 100, V + PAGE, V + 200, V + 3 * PAGE, V + 2 * PAGE + 9]);
  assert.deepEqual(r.accessed, [0, 1, 0, 0, 0]);
  assert.equal(r.stats.checked, 3, 'two samples in page 0x40, two in the THP: 3 checks for 5 samples');
  h.access(0x4000);
  assert.deepEqual(check(f, [V + 2 * PAGE, V + 3 * PAGE]).accessed, [1, 1]);
});

test('THP tails are checked and armed through their head page', () => {
  const h = host();
  h.thp(0x2000, 512);
  h.map(PID, V, 0x2005);
  const f = files(h);
  prepare(f, V);
  // The tail's own bit stays 0: the kernel reads it as "accessed" whatever happened.
  assert.deepEqual(h.nonZeroBitmapWords(), [[0x80, 1n]], 'only the head 0x2000 is marked');
  let r = check(f, [V]);
  assert.deepEqual(r.accessed, [0], 'head still idle: not accessed, though the tail bit reads 0');
  assert.equal(r.stats.hugeTail, 1);
  h.access(0x2000);
  r = check(f, [V]);
  assert.deepEqual(r.accessed, [1]);

  // A head more than one 512-word kpageflags chunk below the tail.
  h.thp(0x10000, 1024);
  h.map(PID, V + PAGE, 0x10000 + 700);
  prepare(f, V + PAGE);
  assert.ok(h.isIdle(0x10000));
  assert.ok(!h.isIdle(0x10000 + 700));
});

test('pages idle tracking ignores count as not accessed and are not armed', () => {
  const h = host();
  h.flags(0x3000, KPF_HEAD | KPF_HUGE); // hugetlb: compound, but not a THP and not on the LRU
  h.flags(0x3001, KPF_TAIL | KPF_HUGE);
  h.flags(0x3100, 0n); // not on the LRU (kernel page, isolated)
  h.flags(0x3200, KPF_LRU | KPF_THP);
  h.flags(0x3201, KPF_LRU); // a THP "tail" after a plain page: split meanwhile
  h.flags(0x3202, KPF_TAIL | KPF_THP | KPF_LRU);
  h.map(PID, V, 0x3001);
  h.map(PID, V + PAGE, 0x3100);
  h.map(PID, V + 2 * PAGE, 0x3202);
  const f = files(h);
  const s = prepare(f, V, V + PAGE, V + 2 * PAGE);
  assert.equal(s.untracked, 3);
  assert.equal(s.armed, 0);
  assert.deepEqual(h.nonZeroBitmapWords(), []);
  // Their bits read 0, which would otherwise mean "accessed".
  const r = check(f, [V, V + PAGE, V + 2 * PAGE]);
  assert.deepEqual(r.accessed, [0, 0, 0]);
  assert.equal(r.stats.checked, 0);
});

test('unmapped, swapped-out and not-present pages count as not accessed and are not armed', () => {
  const h = host();
  h.map(PID, V, 0x500, PM_SWAPPED); // swapped out: not present
  h.map(PID, V + PAGE, 0x600, 0n); // not present
  h.map(PID, V + 3 * PAGE, 0x700); // present, so the pagemap file extends past V + 2 pages
  h.flags(0x700, KPF_LRU);
  const f = files(h);
  const far = V + 1000 * PAGE; // past the end of the pagemap file
  const s = prepare(f, V, V + PAGE, V + 2 * PAGE, far);
  assert.equal(s.notPresent, 4);
  assert.equal(s.short, 1, 'the entry past the end of the file');
  assert.equal(s.armed, 0);
  assert.deepEqual(h.nonZeroBitmapWords(), []);
  const r = check(f, [V, V + PAGE, V + 2 * PAGE, far]);
  assert.deepEqual(r.accessed, [0, 0, 0, 0]);
});

test('present pages whose PFN reads as 0 are counted (no CAP_SYS_ADMIN) and not armed', () => {
  const h = host();
  h.map(PID, V, 0); // what pagemap shows without CAP_SYS_ADMIN: present, PFN 0
  h.map(PID, V + PAGE, 0);
  h.flags(0, KPF_LRU);
  const f = files(h);
  const s = prepare(f, V, V + PAGE);
  assert.equal(s.pfnZero, 2);
  assert.equal(s.armed, 0);
  assert.deepEqual(h.nonZeroBitmapWords(), []);
  const r = check(f, [V]);
  assert.deepEqual(r.accessed, [0]);
  assert.equal(r.stats.pfnZero, 1);
});

test('files that end early: the missing words tell nothing, and say so', () => {
  const h = host();
  h.flags(0x9000, KPF_LRU);
  h.flags(0x20, KPF_LRU);
  h.map(PID, V, 0x20);
  // A pagemap entry cut after 4 bytes.
  fs.appendFileSync(h.pagemapPath(PID), Buffer.alloc(4, 0xff));
  const cut = (fs.statSync(h.pagemapPath(PID)).size - 4) / 8;
  const f = files(h);
  let s = prepare(f, cut * PAGE);
  assert.equal(s.notPresent, 1);
  assert.equal(s.short, 1);

  // PFN past the end of kpageflags: flags unknown, so untracked.
  h.map(PID, V + PAGE, 0x100000);
  s = prepare(f, V + PAGE);
  assert.equal(s.untracked, 1);
  assert.equal(s.short, 1);

  // Bitmap shorter than the word of a sampled PFN (0x9000 is word 0x240): not accessed.
  h.map(PID, V + 2 * PAGE, 0x9000);
  prepare(f, V);
  assert.equal(fs.statSync(h.bitmap).size, 8);
  const r = check(f, [V + 2 * PAGE, V]);
  assert.deepEqual(r.accessed, [0, 0]);
  assert.equal(r.stats.short, 1);
});

test('short transfers and EINTR are retried; bitmap I/O stays 8-byte aligned', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'short-io-'));
  try {
    const shim = path.join(dir, 'short-io-shim.so');
    const cc = spawnSync(
      'cc',
      ['-shared', '-fPIC', '-O2', '-o', shim, path.join(REPO_ROOT, 'test/unit/fixtures/short-io-shim.c'), '-ldl'],
      { encoding: 'utf8' },
    );
    assert.equal(cc.status, 0, `building the shim: ${cc.stderr}`);
    const child = path.join(REPO_ROOT, 'dist/test/unit/page-idle-shortio-child.js');
    const run = (env: NodeJS.ProcessEnv) => {
      const r = spawnSync(process.execPath, [child], { encoding: 'utf8', env: { ...process.env, ...env } });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout);
    };
    const plain = run({});
    const shimmed = run({ LD_PRELOAD: shim, SHIM_PATH: shim });
    const [calls, eintrs, misaligned, shortened, bitmapBytesRead] = shimmed.shim as number[];
    assert.ok(eintrs > 10 && shortened > 10, `the shim interfered: ${shimmed.shim}`);
    assert.ok(calls > eintrs);
    assert.equal(misaligned, 0, 'no bitmap read or write at an unaligned offset or size');
    assert.equal(bitmapBytesRead, 2 * 44 * 8, 'exactly the 44 bitmap words checked (twice) were read, none between them');
    assert.deepEqual(plain.shim, [0, 0, 0, 0, 0]);
    // Same outcome either way, and the right one; only the system call counts differ (retries).
    const IO = ['pagemapReads', 'kpageflagsReads', 'bitmapReads', 'bitmapWrites'];
    const outcome = (s: Record<string, number>) => Object.fromEntries(Object.entries(s).filter(([k]) => !IO.includes(k)));
    for (const k of ['armed', 'checked', 'reused']) {
      assert.deepEqual(outcome(shimmed[k]), outcome(plain[k]), k);
      for (const io of IO) assert.ok(shimmed[k][io] >= plain[k][io], `${k}.${io}: retries are counted`);
    }
    assert.ok(shimmed.checked.bitmapReads > plain.checked.bitmapReads);
    for (const k of ['armedWords', 'accessed', 'rearmedWords', 'accessedAgain']) {
      assert.deepEqual(shimmed[k], plain[k], k);
    }
    const expected = Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? 1 : 0)).concat([0, 0, 0, 1, 1]);
    assert.deepEqual(plain.accessed, expected);
    assert.equal(plain.armed.armed, 44);
    assert.equal(plain.checked.checked, 44);
    assert.equal(plain.armedWords.length, 44);
    // The third call checked through the armed pages: kpageflags only for the 22 read as
    // accessed (20 pages and the 2 THP samples).
    assert.deepEqual(
      plain.accessedAgain,
      Array.from({ length: 40 }, (_, i) => (i % 2 === 1 ? 1 : 0)).concat([0, 0, 0, 1, 1]),
    );
    assert.equal(plain.reused.reused, 45);
    assert.equal(plain.reused.reverified, 22);
    assert.equal(plain.reused.armed, 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('errors name the file, the operation and the errno', () => {
  const h = host();
  h.map(PID, V, 0x48);
  h.flags(0x48, KPF_LRU);
  const good = files(h);

  const readOnlyBitmap = files(h, 'r');
  assert.throws(
    () => prepare(readOnlyBitmap, V),
    (e: unknown) => {
      assert.ok(e instanceof NativeAccessError);
      assert.equal(e.file, 'bitmap');
      assert.equal(e.op, 'write');
      assert.equal(e.code, 'EBADF');
      assert.equal(e.message, `writing ${h.bitmap} at byte 8: EBADF (bad file descriptor)`);
      return true;
    },
  );

  const dirAsFlags = { ...good, kpageflags: { fd: open(h.dir, 'r'), path: '/proc/kpageflags' } };
  assert.throws(() => prepare(dirAsFlags, V), /^NativeAccessError: reading \/proc\/kpageflags at byte 576: EISDIR \(illegal operation on a directory\)$/);

  const closed = fs.openSync(h.pagemapPath(PID), 'r');
  fs.closeSync(closed);
  const badPagemap = { ...good, pagemap: { fd: closed, path: '/proc/100/pagemap' } };
  assert.throws(() => check(badPagemap, [V]), (e: unknown) => e instanceof NativeAccessError && e.file === 'pagemap' && /reading \/proc\/100\/pagemap at byte 8192: EBADF/.test(e.message));

  assert.throws(() => check(good, [V], [NaN]), /bad sampling address #1: NaN/);
  assert.throws(() => prepare(good, V, -PAGE), /bad sampling address #1: -4096/);
  assert.throws(() => fixture.native.prepare(good, f64(V), 2, new ArmedPages()), RangeError);
  assert.throws(
    () => fixture.native.checkAndPrepare(good, f64(V), 1, new Uint8Array(0), f64(), 0, new ArmedPages()),
    /accessed flags: count 1/,
  );
});

test('PFN visibility through /proc/self/pagemap matches CAP_SYS_ADMIN; a foreign pagemap is not-present', () => {
  const fd = open('/proc/self/pagemap', 'r');
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  assert.ok(capEff);
  const admin = ((BigInt(`0x${capEff[1]}`) >> 21n) & 1n) === 1n;
  assert.equal(fixture.native.pfnVisible({ fd, path: '/proc/self/pagemap' }), admin ? 'visible' : 'zero');
  const h = host();
  assert.equal(fixture.native.pfnVisible({ fd: open(h.pagemapPath(PID), 'r'), path: 'fake' }), 'not-present');
});

test('entries with every flag bit set still give the PFN from bits 0..54', () => {
  const h = host();
  const pfn = 0x7abcd;
  h.map(PID, V, BigInt(pfn) | (0xffn << 55n)); // soft-dirty, exclusive, file, present...
  h.map(PID, V + PAGE, BigInt(pfn + 64) | PM_PRESENT);
  h.flags(pfn, KPF_LRU);
  h.flags(pfn + 64, KPF_LRU);
  const f = files(h);
  prepare(f, V, V + PAGE);
  assert.ok(h.isIdle(pfn));
  assert.ok(h.isIdle(pfn + 64));
  assert.equal(h.nonZeroBitmapWords().length, 2);
});

test('pagemap entries up to 32 pages apart share one read of at most 512 entries; farther ones are read apart', () => {
  const h = host();
  const pfnAt = (i: number) => 0x100000 + 64 * i; // one bitmap word per page
  // Pages 31 apart share a read; the one 33 further is read alone: 2 reads for 4 samples.
  const near = [0, 31, 62, 95];
  // A chain 30 pages apart over 600 pages: the first read stops below 512 entries.
  const chain = Array.from({ length: 21 }, (_, i) => 1024 + 30 * i);
  const all = [...near, ...chain];
  all.forEach((p, i) => {
    h.map(PID, V + p * PAGE, pfnAt(i));
    h.flags(pfnAt(i), KPF_LRU);
  });
  const f = files(h);
  let s = prepare(f, ...near.map((p) => V + p * PAGE));
  assert.equal(s.pagemapReads, 2);
  assert.equal(s.armed, 4);
  s = prepare(f, ...chain.map((p) => V + p * PAGE));
  assert.equal(s.pagemapReads, 2, 'pages 1024..1534 in one read, 1564..1624 in the next');
  assert.equal(s.armed, 21);
  // Every entry came from its own offset, on both sides of each boundary.
  all.forEach((_, i) => assert.ok(h.isIdle(pfnAt(i)), `page ${all[i]} armed through pfn ${pfnAt(i)}`));
  assert.equal(h.nonZeroBitmapWords().length, all.length);
});

test('a page still on the frame armed for it is checked without kpageflags; a new frame is resolved afresh', () => {
  const h = host();
  h.map(PID, V, 0x1000);
  h.flags(0x1000, KPF_LRU);
  h.flags(0x2040, KPF_LRU);
  const f = files(h);
  prepare(f, V);
  assert.deepEqual(armed(f).entries(), [{ vpn: BigInt(V / PAGE), pfn: 0x1000n, head: 0x1000n }]);
  let r = check(f, [V]);
  assert.deepEqual(r.accessed, [0]);
  assert.equal(r.stats.reused, 1);
  assert.equal(r.stats.kpageflagsReads, 0);
  assert.equal(r.stats.checked, 1);
  assert.equal(armed(f).count, 0, 'nothing armed for the next interval');

  // The page moved to another frame (migrated, or freed and faulted in again): the cached
  // head would still read idle; the new frame, never armed, reads accessed as a fresh page does.
  prepare(f, V);
  h.map(PID, V, 0x2040);
  h.access(0x2040); // its word exists in the fake bitmap, its bit clear
  r = check(f, [V]);
  assert.deepEqual(r.accessed, [1]);
  assert.equal(r.stats.reused, 0);
  assert.equal(r.stats.kpageflagsReads, 1);
  assert.ok(h.isIdle(0x1000), 'the old frame was not the one read');

  // Not present when armed: nothing cached; faulted in since, it is resolved afresh.
  h.map(PID, V + PAGE, 0x3000, 0n);
  h.flags(0x3000, KPF_LRU);
  prepare(f, V + PAGE);
  assert.equal(armed(f).count, 0);
  h.map(PID, V + PAGE, 0x3000);
  h.access(0x3000);
  r = check(f, [V + PAGE]);
  assert.equal(r.stats.reused, 0);
  assert.deepEqual(r.accessed, [1]);
});

test('a reused page read as accessed is confirmed: off the LRU it counts as not accessed', () => {
  const h = host();
  h.map(PID, V, 0x1000);
  h.map(PID, V + PAGE, 0x1040);
  h.flags(0x1000, KPF_LRU);
  h.flags(0x1040, KPF_LRU);
  const f = files(h);
  prepare(f, V, V + PAGE);
  h.access(0x1000);
  h.access(0x1040);
  // 0x1040 was taken off the LRU (isolated for reclaim, say): the kernel reads its bit as 0.
  h.flags(0x1040, 0n);
  const r = check(f, [V, V + PAGE]);
  assert.deepEqual(r.accessed, [1, 0]);
  assert.equal(r.stats.reused, 2);
  assert.equal(r.stats.reverified, 2);
  assert.equal(r.stats.untracked, 1);
});

test('a reused THP tail whose folio was split meanwhile is checked through its own bit', () => {
  const h = host();
  h.thp(0x4000, 512);
  h.map(PID, V, 0x4005);
  const f = files(h);
  prepare(f, V);
  assert.deepEqual(armed(f).entries(), [{ vpn: BigInt(V / PAGE), pfn: 0x4005n, head: 0x4000n }]);
  // Split: both are plain pages now; the kernel copies the head's idle flag to the former
  // tails. Then only the former head is accessed.
  h.flags(0x4000, KPF_LRU);
  h.flags(0x4005, KPF_LRU);
  h.setIdle(0x4005);
  h.access(0x4000);
  let r = check(f, [V]);
  assert.deepEqual(r.accessed, [0], 'the sampled page itself was not accessed');
  assert.equal(r.stats.reverified, 1);
  assert.equal(r.stats.checked, 2, 'the cached head, then the page itself');
  // And when it is accessed, it says so.
  prepare(f, V);
  h.access(0x4005);
  r = check(f, [V]);
  assert.deepEqual(r.accessed, [1]);
  assert.equal(r.stats.reused, 1);
});

test('tails of a THP found earlier in the call need no kpageflags read; its end is found, not assumed', () => {
  const h = host();
  h.thp(0x10000, 512);
  h.flags(0x10200, KPF_LRU); // a plain page right after the folio
  const offsets = [3, 100, 200, 300, 400, 511];
  offsets.forEach((o, i) => h.map(PID, V + i * PAGE, 0x10000 + o));
  h.map(PID, V + 10 * PAGE, 0x10200);
  const f = files(h);
  const s = prepare(f, ...offsets.map((_, i) => V + i * PAGE), V + 10 * PAGE);
  assert.equal(s.hugeTail, 6);
  assert.equal(s.armed, 2, 'the head 0x10000 and the plain page');
  assert.ok(h.isIdle(0x10000) && h.isIdle(0x10200));
  assert.deepEqual(h.nonZeroBitmapWords(), [
    [0x400, 1n],
    [0x408, 1n],
  ]);
  // 0x10003: its flags, then 0x10002 and the head 0x10000 (span 4). The folio then grows
  // through the pages at +4, +8, +16, +32, +64, +128 and +256 (each a tail, so the folio
  // doubles) to cover the other tails. The plain page at +512 is past a 2 MiB folio's
  // reach: read as itself. Without the folio: 6 own reads and a search per tail.
  assert.equal(s.kpageflagsReads, 3 + 7 + 1);
  const r = check(f, offsets.map((_, i) => V + i * PAGE));
  assert.equal(r.stats.reused, 6);
  assert.equal(r.stats.kpageflagsReads, 0);
  assert.equal(r.stats.checked, 1);
  assert.deepEqual(r.accessed, [0, 0, 0, 0, 0, 0]);

  // A 64-page folio and a plain page right after it: growing the folio stops at the page
  // that is no tail, which is then taken for what it is.
  h.thp(0x20000, 64);
  h.flags(0x20040, KPF_LRU);
  h.map(PID, V + 20 * PAGE, 0x20003);
  h.map(PID, V + 21 * PAGE, 0x20028);
  h.map(PID, V + 22 * PAGE, 0x20040);
  const t = prepare(f, V + 20 * PAGE, V + 21 * PAGE, V + 22 * PAGE);
  assert.equal(t.armed, 2);
  assert.equal(t.hugeTail, 2);
  assert.ok(h.isIdle(0x20000) && h.isIdle(0x20040));
  assert.ok(!h.isIdle(0x20028) && !h.isIdle(0x20003));
});

test('prepare adds to the armed pages; later arms of a page replace its entry', () => {
  const h = host();
  h.map(PID, V, 0x1000);
  h.map(PID, V + 5 * PAGE, 0x1040);
  h.map(PID, V + 9 * PAGE, 0x1080);
  for (const p of [0x1000, 0x1040, 0x1080, 0x10c0]) h.flags(p, KPF_LRU);
  const f = files(h);
  prepare(f, V + 5 * PAGE);
  prepare(f, V + 9 * PAGE, V);
  assert.deepEqual(
    armed(f).entries().map((e) => [e.vpn - BigInt(V / PAGE), e.pfn]),
    [[0n, 0x1000n], [5n, 0x1040n], [9n, 0x1080n]],
  );
  h.map(PID, V + 5 * PAGE, 0x10c0);
  prepare(f, V + 5 * PAGE);
  assert.deepEqual(armed(f).entries().map((e) => e.pfn), [0x1000n, 0x10c0n, 0x1080n]);
  const r = check(f, [V, V + 5 * PAGE, V + 9 * PAGE]);
  assert.equal(r.stats.reused, 3);
  assert.equal(r.stats.kpageflagsReads, 0);
  assert.deepEqual(r.accessed, [0, 0, 0]);
});

test('an armed-page list out of order is refused with a clear error', () => {
  const h = host();
  h.map(PID, V, 0x1000);
  h.map(PID, V + PAGE, 0x1040);
  h.flags(0x1000, KPF_LRU);
  h.flags(0x1040, KPF_LRU);
  const f = files(h);
  prepare(f, V, V + PAGE);
  const a = armed(f);
  const v = new BigUint64Array(a.current.buffer, a.current.byteOffset, 6);
  const first = v.slice(0, 3);
  v.copyWithin(0, 3, 6);
  v.set(first, 3);
  assert.throws(
    () => check(f, [V]),
    (e: unknown) =>
      e instanceof NativeAccessError &&
      e.op === 'armed' &&
      e.message === 'armed-page list corrupted: entry #1 is not above the one before it',
  );
});
