// Packs the rig's initramfs: busybox-static and test/guest/init.sh in a gzipped "newc"
// cpio archive, the format the kernel unpacks at boot. Written here rather than with the
// cpio tool so the archive needs no root (the /dev/console node is just a header) and is
// the same bytes every time. Cached by the content of both inputs.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export class InitramfsError extends Error {
  override name = 'InitramfsError';
}

interface Entry {
  name: string;
  mode: number; // file type and permission bits, as in st_mode
  data?: Buffer;
  rdev?: [number, number];
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;

function field(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Encodes entries as a newc cpio archive (without compression). */
export function packNewc(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of [...entries, { name: 'TRAILER!!!', mode: 0 }]) {
    const data = e.data ?? Buffer.alloc(0);
    const [major, minor] = e.rdev ?? [0, 0];
    const name = Buffer.from(e.name + '\0');
    const header =
      '070701' +
      [e.name === 'TRAILER!!!' ? 0 : ino++, e.mode, 0, 0, e.mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, major, minor, name.length, 0]
        .map(field)
        .join('');
    parts.push(Buffer.from(header, 'ascii'), name, Buffer.alloc(pad4(header.length + name.length)));
    parts.push(data, Buffer.alloc(pad4(data.length)));
  }
  return Buffer.concat(parts);
}

/** Throws unless path is a statically linked ELF executable (no PT_INTERP program header). */
export function assertStaticElf(path: string): void {
  const head = Buffer.alloc(64);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 64, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2) {
      throw new InitramfsError(`${path} is not a 64-bit ELF executable`);
    }
    const phoff = Number(head.readBigUInt64LE(32));
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      if (ph.readUInt32LE(i * phentsize) === 3 /* PT_INTERP */) {
        throw new InitramfsError(
          `${path} is dynamically linked; the initramfs needs a static busybox (install the Debian package busybox-static, or set DAMON_RIG_BUSYBOX)`,
        );
      }
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Returns the path of the initramfs for this init script and busybox, building it into
 * cacheDir when missing.
 */
export function buildInitramfs(opts: { cacheDir: string; initScript: string; busybox: string }): string {
  if (!existsSync(opts.busybox)) {
    throw new InitramfsError(
      `busybox not found at ${opts.busybox}: install the Debian package busybox-static (or set DAMON_RIG_BUSYBOX)`,
    );
  }
  if (!existsSync(opts.initScript)) throw new InitramfsError(`init script ${opts.initScript} is missing`);
  assertStaticElf(opts.busybox);
  const init = readFileSync(opts.initScript);
  const busybox = readFileSync(opts.busybox);
  const key = createHash('sha256').update(init).update(busybox).digest('hex').slice(0, 16);
  const out = join(opts.cacheDir, `initramfs-${key}.cpio.gz`);
  if (existsSync(out)) return out;

  const dirs = ['bin', 'dev', 'proc', 'sys', 'host', 'rigio', 'tmp'];
  const archive = packNewc([
    ...dirs.map((name) => ({ name, mode: S_IFDIR | 0o755 })),
    // The kernel opens /dev/console for init's stdio before anything mounts devtmpfs.
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: [5, 1] as [number, number] },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: busybox },
    { name: 'init', mode: S_IFREG | 0o755, data: init },
  ]);
  mkdirSync(opts.cacheDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, gzipSync(archive, { level: 6 }));
  renameSync(tmp, out);
  // Archives of older init scripts are never used again.
  for (const name of readdirSync(opts.cacheDir)) {
    if (/^initramfs-[0-9a-f]{16}\.cpio\.gz$/.test(name) && join(opts.cacheDir, name) !== out) {
      rmSync(join(opts.cacheDir, name), { force: true });
    }
  }
  return out;
}
