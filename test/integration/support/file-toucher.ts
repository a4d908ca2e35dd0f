// A real target for the action tests (fixtures/file-toucher.c): a process that maps a file
// of its own, with unmapped guards around the mapping, and reads it all so it is resident.
// The test asks it how much of the mapping is resident (mincore) and reads its Rss of the
// mapping from /proc/PID/smaps: what an action changed, as the kernel sees it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const SOURCE = fileURLToPath(new URL('../../../../test/integration/fixtures/file-toucher.c', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const TMPFS_MAGIC = 0x01021994;

export const PAGE = 4096;

/** A folder for the files and the binary: on a disk (a tmpfs page cannot be paged out without swap). */
export function diskTempDir(prefix: string): { path: string; remove(): void } {
  const base = statfsSync(tmpdir()).type === TMPFS_MAGIC ? REPO_ROOT : tmpdir();
  const path = mkdtempSync(join(base, prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Compiles the fixture into `dir`; undefined (with why) when there is no C compiler. */
export function buildToucher(dir: string): { exe?: string; why?: string } {
  const exe = join(dir, 'file-toucher');
  const cc = spawnSync('cc', ['-O2', '-o', exe, SOURCE], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return { why: `no C compiler to build the target (${cc.error?.message ?? cc.stderr.trim()})` };
  return { exe };
}

export class FileToucher {
  readonly pid: number;
  start = 0n;
  size = 0n;
  /** Unmapped bytes on each side of the mapping. */
  guard = 0n;
  private buf = '';
  private waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  private lines: string[] = [];

  private constructor(private readonly child: ChildProcess) {
    this.pid = child.pid!;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiting.shift();
        if (w) w.resolve(line);
        else this.lines.push(line);
      }
    });
    child.once('exit', () => {
      for (const w of this.waiting.splice(0)) w.reject(new Error('file-toucher exited'));
    });
  }

  /** Writes a file of `bytes` random bytes in `dir` (synced: clean pages), starts the process on it. */
  static async start(exe: string, dir: string, bytes: number): Promise<FileToucher> {
    const file = join(dir, `data-${randomBytes(4).toString('hex')}`);
    const fd = openSync(file, 'w');
    try {
      for (let left = bytes; left > 0; left -= 1 << 20) writeSync(fd, randomBytes(Math.min(left, 1 << 20)));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const t = new FileToucher(spawn(exe, [file], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const [word, start, size, guard] = (await t.line()).split(' ');
    if (word !== 'mapped') throw new Error(`file-toucher: unexpected "${word}"`);
    t.start = BigInt(`0x${start}`);
    t.size = BigInt(size);
    t.guard = BigInt(guard);
    return t;
  }

  get end(): bigint {
    return this.start + this.size;
  }

  private line(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.reject(new Error('file-toucher exited'));
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Pages of the mapping resident now (mincore in the process). */
  async residentPages(): Promise<number> {
    this.child.stdin!.write('r\n');
    const [word, n] = (await this.line()).split(' ');
    if (word !== 'resident') throw new Error(`file-toucher: unexpected "${word}"`);
    return Number(n);
  }

  get pages(): number {
    return Number(this.size) / PAGE;
  }

  /** The process's Rss of the mapping, bytes (/proc/PID/smaps). */
  rssBytes(): number {
    const text = readFileSync(`/proc/${this.pid}/smaps`, 'utf8');
    const at = text.indexOf(`${this.start.toString(16)}-`);
    if (at < 0) throw new Error(`no mapping at 0x${this.start.toString(16)} in /proc/${this.pid}/smaps`);
    const m = /\nRss:\s+(\d+) kB/.exec(text.slice(at));
    if (!m) throw new Error('no Rss line');
    return Number(m[1]) * 1024;
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    await exited;
  }
}
