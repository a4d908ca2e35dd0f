// Fake idle page tracking files for the page_idle tests: a /proc tree (PID/maps, PID/stat,
// PID/pagemap, self/status), /proc/kpageflags and the page_idle bitmap, as sparse regular
// files in a temp dir. Unlike the kernel's bitmap, a regular file stores the zero bits of a
// written word too, so tests keep pages armed in separate calls in separate 64-page words.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { loadNativeAccess, type NativeAccess } from '../../agent/ops/native.js';

export const PAGE = 4096;
export const PM_PRESENT = 1n << 63n;
export const PM_SWAPPED = 1n << 62n;
export const KPF_LRU = 1n << 5n;
export const KPF_HEAD = 1n << 15n;
export const KPF_TAIL = 1n << 16n;
export const KPF_HUGE = 1n << 17n;
export const KPF_THP = 1n << 22n;

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Builds the native library from the current sources (no-op when up to date); throws on failure. */
export function buildNative(): void {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'native/build.js'), '--strict'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`native build failed:\n${r.stdout}\n${r.stderr}`);
}

function writeWord(file: string, index: number, value: bigint): void {
  const fd = fs.openSync(file, fs.existsSync(file) ? 'r+' : 'w+');
  try {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(value);
    fs.writeSync(fd, b, 0, 8, index * 8);
  } finally {
    fs.closeSync(fd);
  }
}

function readWord(file: string, index: number): bigint {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(8);
    const n = fs.readSync(fd, b, 0, 8, index * 8);
    return n === 8 ? b.readBigUInt64LE() : 0n;
  } finally {
    fs.closeSync(fd);
  }
}

export function statLine(pid: number, state = 'S', startTime = 4242): string {
  // Field 22 is starttime; the comm holds a space and a paren, as real ones may.
  const rest = [state, 1, pid, pid, 0, -1, 4194304, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 1, 0, startTime, 1000, 10];
  return `${pid} (fake) proc) ${rest.join(' ')}\n`;
}

export class FakeHost {
  readonly dir: string;
  readonly proc: string;
  readonly bitmap: string;
  readonly kpageflags: string;

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'page-idle-'));
    this.proc = path.join(this.dir, 'proc');
    this.bitmap = path.join(this.dir, 'bitmap');
    this.kpageflags = path.join(this.dir, 'kpageflags');
    fs.mkdirSync(this.proc);
    fs.writeFileSync(this.bitmap, '');
    fs.writeFileSync(this.kpageflags, '');
  }

  get paths() {
    return { proc: this.proc, bitmap: this.bitmap, kpageflags: this.kpageflags };
  }

  pagemapPath(pid: number): string {
    return path.join(this.proc, String(pid), 'pagemap');
  }

  /** A process with these maps lines (and an empty pagemap: nothing present yet). */
  addProcess(pid: number, maps: string, stat = statLine(pid)): void {
    const d = path.join(this.proc, String(pid));
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'maps'), maps);
    fs.writeFileSync(path.join(d, 'stat'), stat);
    if (!fs.existsSync(this.pagemapPath(pid))) fs.writeFileSync(this.pagemapPath(pid), '');
  }

  /** Maps the page at vaddr to pfn (present), or writes a raw pagemap entry. */
  map(pid: number, vaddr: number, pfn: number | bigint, extra = PM_PRESENT): void {
    writeWord(this.pagemapPath(pid), Math.floor(vaddr / PAGE), BigInt(pfn) | extra);
  }

  flags(pfn: number, value: bigint): void {
    writeWord(this.kpageflags, pfn, value);
  }

  /** A THP of `pages` pages from head pfn: head and tails flagged, on the LRU. */
  thp(head: number, pages: number): void {
    this.flags(head, KPF_HEAD | KPF_THP | KPF_LRU);
    for (let p = head + 1; p < head + pages; p++) this.flags(p, KPF_TAIL | KPF_THP | KPF_LRU);
  }

  bitmapWord(word: number): bigint {
    return readWord(this.bitmap, word);
  }

  isIdle(pfn: number): boolean {
    return ((this.bitmapWord(Math.floor(pfn / 64)) >> BigInt(pfn % 64)) & 1n) === 1n;
  }

  /** What the kernel shows after the page was accessed: its idle bit reads 0. */
  access(pfn: number): void {
    const w = Math.floor(pfn / 64);
    writeWord(this.bitmap, w, this.bitmapWord(w) & ~(1n << BigInt(pfn % 64)));
  }

  setIdle(pfn: number): void {
    const w = Math.floor(pfn / 64);
    writeWord(this.bitmap, w, this.bitmapWord(w) | (1n << BigInt(pfn % 64)));
  }

  /** Non-zero bitmap words as [index, value]. */
  nonZeroBitmapWords(): [number, bigint][] {
    const b = fs.readFileSync(this.bitmap);
    const out: [number, bigint][] = [];
    for (let i = 0; i + 8 <= b.length; i += 8) {
      const v = b.readBigUInt64LE(i);
      if (v !== 0n) out.push([i / 8, v]);
    }
    return out;
  }

  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Deterministic random source in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * For a file of native tests: the library built and loaded before its tests, and the
 * descriptors they open and the fake hosts they make released after them.
 */
export class NativeFixture {
  private lib: NativeAccess | undefined;
  private readonly fds: number[] = [];
  private readonly hosts: FakeHost[] = [];

  constructor() {
    before(() => {
      buildNative();
      this.lib = loadNativeAccess();
    });
    after(() => {
      for (const fd of this.fds.splice(0)) fs.closeSync(fd);
      for (const h of this.hosts.splice(0)) h.remove();
    });
  }

  get native(): NativeAccess {
    if (this.lib === undefined) throw new Error('the native library is loaded in before(): use it in a test');
    return this.lib;
  }

  /** Opens `p`, closed after the file's tests. */
  open(p: string, flags: string): number {
    const fd = fs.openSync(p, flags);
    this.fds.push(fd);
    return fd;
  }

  /** A fake host, removed after the file's tests. */
  host(): FakeHost {
    const h = new FakeHost();
    this.hosts.push(h);
    return h;
  }
}
