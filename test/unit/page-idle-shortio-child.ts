// Child process of page-idle-native.test.ts: runs one fixed arm / access / check scenario
// against fake files and prints the outcome as JSON. The test runs it twice, once with
// test/unit/fixtures/short-io-shim.c preloaded (SHIM_PATH set: EINTR and short transfers
// on the fake files' descriptors) and once without, and compares.
import fs from 'node:fs';
import koffi from 'koffi';
import { ArmedPages, loadNativeAccess, type AccessFiles } from '../../agent/ops/native.js';
import { FakeHost, KPF_LRU, PAGE } from './page-idle-fakes.js';

const shimPath = process.env.SHIM_PATH;
const shim = shimPath ? koffi.load(shimPath) : null;
const watch = shim ? shim.func('void shim_watch(int, int)') : () => undefined;
const shimStat = shim ? shim.func('long shim_stat(int)') : () => 0;

const native = loadNativeAccess(process.env.LIB_PATH);
const h = new FakeHost();
try {
  const pid = 7;
  const base = 0x400000;
  h.addProcess(pid, '');
  const addrs: number[] = [];
  const pfns: number[] = [];
  // 40 sampled pages, each in its own bitmap word; neighbours in the pagemap so that
  // pagemap and kpageflags reads are gathered into multi-word preads.
  for (let i = 0; i < 40; i++) {
    const pfn = 1000 + 64 * i;
    h.map(pid, base + i * PAGE, pfn);
    h.flags(pfn, KPF_LRU);
    addrs.push(base + i * PAGE + 8 * i);
    pfns.push(pfn);
  }
  // Three pages whose bitmap words have gaps between them (words 60, 62, 70): reading the
  // words in between would cost the kernel for nothing.
  for (const [i, pfn] of [[40, 3840], [41, 3968], [42, 4480]]) {
    h.map(pid, base + i * PAGE, pfn);
    h.flags(pfn, KPF_LRU);
    addrs.push(base + i * PAGE);
    pfns.push(pfn);
  }
  // Two samples on tails of one THP: one check, through the head page.
  h.thp(0x8000, 512);
  h.map(pid, base + 100 * PAGE, 0x8003);
  h.map(pid, base + 101 * PAGE, 0x81ff);
  addrs.push(base + 100 * PAGE, base + 101 * PAGE);
  const files: AccessFiles = {
    pagemap: { fd: fs.openSync(h.pagemapPath(pid), 'r'), path: h.pagemapPath(pid) },
    kpageflags: { fd: fs.openSync(h.kpageflags, 'r'), path: h.kpageflags },
    bitmap: { fd: fs.openSync(h.bitmap, 'r+'), path: h.bitmap },
  };
  watch(files.pagemap.fd, 1);
  watch(files.kpageflags.fd, 1);
  watch(files.bitmap.fd, 3);

  const a = Float64Array.from(addrs);
  const pages = new ArmedPages();
  const armed = native.prepare(files, a, a.length, pages);
  const armedWords = h.nonZeroBitmapWords().map(([w, v]) => [w, v.toString(16)]);
  // Every third page accessed, and the THP.
  for (let i = 0; i < 40; i += 3) h.access(pfns[i]);
  h.access(0x8000);
  const accessed = new Uint8Array(a.length);
  const checked = native.checkAndPrepare(files, a, a.length, accessed, a, a.length, pages);
  // The same pages again, now through what the last call armed: every second page and the
  // THP accessed, confirmed through kpageflags; nothing armed.
  for (let i = 1; i < 40; i += 2) h.access(pfns[i]);
  h.access(0x8000);
  const accessedAgain = new Uint8Array(a.length);
  const reused = native.checkAndPrepare(files, a, a.length, accessedAgain, new Float64Array(0), 0, pages);
  process.stdout.write(
    JSON.stringify({
      armed,
      armedWords,
      checked,
      accessed: Array.from(accessed),
      reused,
      accessedAgain: Array.from(accessedAgain),
      rearmedWords: h.nonZeroBitmapWords().map(([w, v]) => [w, v.toString(16)]),
      shim: [0, 1, 2, 3, 4].map((i) => Number(shimStat(i))),
    }),
  );
} finally {
  h.remove();
}
