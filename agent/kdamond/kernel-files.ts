// The files the kdamond engine reads and writes: DAMON's sysfs and tracefs. All access goes
// through KernelFiles so that tests can put a fake kernel (plain files in a temp dir plus
// a helper that answers writes the way the kernel would) behind the same calls.
//
// Writes never create files: a sysfs or tracefs attribute that is missing is a kernel that
// lacks the feature, and creating a plain file there would hide that.
//
// Reads, listings and pipe reads are synchronous behind the async interface: a sysfs or
// tracefs attribute read never blocks (the kernel formats it from memory; trace_pipe is
// opened O_NONBLOCK), and a hop through libuv's thread pool costs far more than the read
// itself (measured in the rig's emulated guest: 4 ms for fs.promises.readFile, 0.25 ms
// for readFileSync). Writes stay asynchronous: a command written to a kdamond's state
// file ("update_schemes_tried_regions", "off") blocks in the kernel for 100 ms or more.
import fs from 'node:fs';
import fsp from 'node:fs/promises';

/** A kernel file operation failed; says which file, what was written and what errno means here. */
export class KernelFileError extends Error {
  constructor(
    readonly op: 'read' | 'write' | 'list' | 'mkdir' | 'rmdir' | 'open' | 'close',
    readonly path: string,
    readonly code: string,
    detail: string,
  ) {
    super(`${op} ${path}: ${detail}`);
    this.name = 'KernelFileError';
  }
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file (the kernel lacks this feature, or the directory was removed)',
  EACCES: 'permission denied (the kdamond engine needs root)',
  EPERM: 'operation not permitted',
  EBUSY: 'device or resource busy',
  EINVAL: 'invalid argument (the kernel refused the value)',
  ENOMEM: 'out of memory',
  EEXIST: 'already exists',
  ENOTEMPTY: 'directory not empty',
  EAGAIN: 'try again',
  ESRCH: 'no such process',
};

/** Wraps a Node.js fs error into a KernelFileError that names the file and the value. */
export function kernelFileError(op: KernelFileError['op'], path: string, err: unknown, value?: string): KernelFileError {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'EIO';
  const what = ERRNO_TEXT[code] ?? ((err as Error)?.message || String(err));
  const detail = value === undefined ? `${code}: ${what}` : `writing "${value}" failed with ${code}: ${what}`;
  return new KernelFileError(op, path, code, detail);
}

/** A non-blocking reader of a pipe-like kernel file (tracefs trace_pipe). */
export interface PipeReader {
  /** Everything readable now, up to `maxBytes`; "" when nothing is waiting. */
  readAvailable(maxBytes: number): Promise<string>;
  close(): Promise<void>;
  closeSync(): void;
}

export interface KernelFiles {
  read(path: string): Promise<string>;
  /** Writes `value` to an existing file in one write() call; never creates the file. */
  write(path: string, value: string): Promise<void>;
  /** Names in a directory. */
  list(path: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
  mkdir(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  openPipe(path: string): Promise<PipeReader>;
  // Synchronous variants, for cleanup from a process 'exit' handler.
  readSync(path: string): string;
  writeSync(path: string, value: string): void;
  rmdirSync(path: string): void;
}

const WRITE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_TRUNC;
const PIPE_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK;

class NodePipeReader implements PipeReader {
  private fd: number | undefined;
  private readonly buf = Buffer.alloc(64 * 1024);

  constructor(
    private readonly path: string,
    fd: number,
  ) {
    this.fd = fd;
  }

  async readAvailable(maxBytes: number): Promise<string> {
    const chunks: Buffer[] = [];
    let total = 0;
    while (total < maxBytes) {
      if (this.fd === undefined) throw new KernelFileError('read', this.path, 'EBADF', 'the pipe is closed');
      let n: number;
      try {
        n = fs.readSync(this.fd, this.buf, 0, Math.min(this.buf.length, maxBytes - total), null);
      } catch (err) {
        // trace_pipe opened O_NONBLOCK says EAGAIN when it is empty.
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw kernelFileError('read', this.path, err);
      }
      if (n === 0) break;
      chunks.push(Buffer.from(this.buf.subarray(0, n)));
      total += n;
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  async close(): Promise<void> {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    await new Promise<void>((resolve, reject) => fs.close(fd, (err) => (err ? reject(kernelFileError('close', this.path, err)) : resolve())));
  }

  closeSync(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    try {
      fs.closeSync(fd);
    } catch (err) {
      throw kernelFileError('close', this.path, err);
    }
  }
}

/** The real files, through node:fs. */
export class NodeKernelFiles implements KernelFiles {
  async read(path: string): Promise<string> {
    return this.readSync(path);
  }

  async write(path: string, value: string): Promise<void> {
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, WRITE_FLAGS);
    } catch (err) {
      throw kernelFileError('write', path, err, value);
    }
    try {
      await fh.write(value);
    } catch (err) {
      throw kernelFileError('write', path, err, value);
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  async list(path: string): Promise<string[]> {
    try {
      return fs.readdirSync(path);
    } catch (err) {
      throw kernelFileError('list', path, err);
    }
  }

  async exists(path: string): Promise<boolean> {
    return fs.existsSync(path);
  }

  async mkdir(path: string): Promise<void> {
    try {
      await fsp.mkdir(path);
    } catch (err) {
      throw kernelFileError('mkdir', path, err);
    }
  }

  async rmdir(path: string): Promise<void> {
    try {
      await fsp.rmdir(path);
    } catch (err) {
      throw kernelFileError('rmdir', path, err);
    }
  }

  async openPipe(path: string): Promise<PipeReader> {
    const fd = await new Promise<number>((resolve, reject) =>
      fs.open(path, PIPE_FLAGS, (err, fd) => (err ? reject(kernelFileError('open', path, err)) : resolve(fd))),
    );
    return new NodePipeReader(path, fd);
  }

  readSync(path: string): string {
    try {
      return fs.readFileSync(path, 'utf8');
    } catch (err) {
      throw kernelFileError('read', path, err);
    }
  }

  writeSync(path: string, value: string): void {
    let fd: number;
    try {
      fd = fs.openSync(path, WRITE_FLAGS);
    } catch (err) {
      throw kernelFileError('write', path, err, value);
    }
    try {
      fs.writeSync(fd, value);
    } catch (err) {
      throw kernelFileError('write', path, err, value);
    } finally {
      fs.closeSync(fd);
    }
  }

  rmdirSync(path: string): void {
    try {
      fs.rmdirSync(path);
    } catch (err) {
      throw kernelFileError('rmdir', path, err);
    }
  }
}
