// Where a result writer writes. The writers never reach the file system by path
// themselves: they ask a ResultLocation to open the file for appending, to read it, or
// to replace it atomically through a temporary file beside it. pathLocation() is the
// plain one the recorder uses (the path its own user gave); the agent's confined one,
// which works only through descriptors opened beneath its data directory, is
// agent/daemon/result-path.ts.
import { close, fchmod, fdatasync, fstat, fsync, ftruncate, open, read, write, constants, type Stats } from 'node:fs';
import { access, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ResultFileError, describeFsError } from './result-format.js';

const pOpen = promisify(open);
const pWrite = promisify(write);
const pRead = promisify(read);
const pFstat = promisify(fstat);
const pFtruncate = promisify(ftruncate);
const pFsync = promisify(fsync);
const pFdatasync = promisify(fdatasync);
const pFchmod = promisify(fchmod);
const pClose = promisify(close);

/** An open result file: asynchronous operations on its descriptor, which it owns. */
export class ResultFd {
  #fd: number;

  constructor(fd: number) {
    this.#fd = fd;
  }

  /** The descriptor (-1 once closed). */
  get fd(): number {
    return this.#fd;
  }

  write(b: Buffer, offset: number, length: number): Promise<{ bytesWritten: number }> {
    return pWrite(this.#fd, b, offset, length);
  }

  stat(): Promise<Stats> {
    return pFstat(this.#fd);
  }

  truncate(length: number): Promise<void> {
    return pFtruncate(this.#fd, length);
  }

  sync(): Promise<void> {
    return pFsync(this.#fd);
  }

  datasync(): Promise<void> {
    return pFdatasync(this.#fd);
  }

  chmod(mode: number): Promise<void> {
    return pFchmod(this.#fd, mode);
  }

  /** The whole file, from its first byte to its end. */
  async readAll(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for (let pos = 0; ;) {
      const b = Buffer.alloc(256 * 1024);
      const { bytesRead } = await pRead(this.#fd, b, 0, b.length, pos);
      if (bytesRead === 0) return Buffer.concat(chunks);
      chunks.push(b.subarray(0, bytesRead));
      pos += bytesRead;
    }
  }

  /** Closes once; later calls resolve at once (a second close(2) could close a reused number). */
  async close(): Promise<void> {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    await pClose(fd);
  }
}

/** A temporary file beside the result file: `name` in its directory, `path` for messages. */
export interface TempFile {
  file: ResultFd;
  name: string;
  path: string;
}

export interface ResultLocation {
  /** The result file's path, as messages name it. */
  readonly path: string;
  /**
   * The existing file's stats, or null when there is none yet. Refuses a file the writers
   * may not use: a directory or another non-regular file (a writer would append to a
   * device, or replace it by rename), one this process may not write, and whatever else
   * the location forbids.
   */
  existing(): Promise<Stats | null>;
  /** Opens for reading and appending, creating the file (with `mode`) when missing; never truncates. */
  openAppend(mode: number): Promise<ResultFd>;
  /** The existing file's bytes. */
  readExisting(): Promise<Buffer>;
  /** Creates a new temporary file beside the result file (exclusively, never through a link). */
  createTemp(mode: number): Promise<TempFile>;
  /** Renames the temporary file `name` over the result file: the atomic replace. */
  commitTemp(name: string): Promise<void>;
  /** Removes the temporary file `name`. */
  discardTemp(name: string): Promise<void>;
  /** Releases what the location holds; the writer that owns it calls this once it is done. */
  close(): void;
}

let tmpSeq = 0;

/** The name of a new temporary file for `fileName`: hidden, unique to this process and call. */
export function tempName(fileName: string): string {
  return `.${fileName}.${process.pid}.${tmpSeq++}.tmp`;
}

/** A failure to open `path`: the path and the reason; a ResultFileError passes through as it is. */
export function openError(path: string, err: unknown, doing = 'open'): ResultFileError {
  if (err instanceof ResultFileError) return err;
  return new ResultFileError(
    'open', path, `cannot ${doing} result file ${path}: ${describeFsError(err, path)}`, undefined, { cause: err },
  );
}

/** The result file at `path`, reached by path as this process's user may. */
export function pathLocation(path: string): ResultLocation {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw new ResultFileError('open', String(path), `result file path must be a non-empty path without NUL bytes, got ${JSON.stringify(path)}`);
  }
  const dir = dirname(path);
  return {
    path,
    async existing() {
      let st: Stats;
      try {
        st = await stat(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw openError(path, e);
      }
      if (st.isDirectory()) throw new ResultFileError('open', path, `cannot open result file ${path}: it is a directory`);
      if (!st.isFile()) throw new ResultFileError('open', path, `cannot open result file ${path}: it is not a regular file`);
      // Rename could replace a file we may not write; respect its permissions instead.
      await access(path, constants.W_OK).catch((e: unknown) => {
        throw openError(path, e);
      });
      return st;
    },
    async openAppend(mode) {
      return new ResultFd(await pOpen(path, 'a+', mode));
    },
    readExisting: () => readFile(path),
    async createTemp(mode) {
      const name = tempName(basename(path));
      return { file: new ResultFd(await pOpen(join(dir, name), 'wx', mode)), name, path: join(dir, name) };
    },
    commitTemp: (name) => rename(join(dir, name), path),
    discardTemp: (name) => unlink(join(dir, name)),
    close() {
      // Holds nothing between calls.
    },
  };
}

/**
 * Writes all of `b` at the file's position (the end, under O_APPEND), however many short
 * writes it takes; throws what the failing write threw, with `done.bytes` telling how
 * many bytes did reach the file.
 */
export async function writeAll(fh: ResultFd, b: Buffer, done?: { bytes: number }): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off);
    if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    off += bytesWritten;
    if (done) done.bytes = off;
  }
}
