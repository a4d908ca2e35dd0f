// KernelFiles that count what passes through them: the user-space side of what a record
// source costs (files opened, bytes moved), for the source benchmark.
import type { KernelFiles, PipeReader } from '../agent/kdamond/kernel-files.js';

export interface FileCounts {
  reads: number;
  bytesRead: number;
  writes: number;
  lists: number;
  pipeReads: number;
  pipeBytes: number;
}

export function zeroCounts(): FileCounts {
  return { reads: 0, bytesRead: 0, writes: 0, lists: 0, pipeReads: 0, pipeBytes: 0 };
}

export class CountingKernelFiles implements KernelFiles {
  readonly counts: FileCounts = zeroCounts();

  constructor(private readonly inner: KernelFiles) {}

  /** The counts so far, and zero them. */
  take(): FileCounts {
    const c = { ...this.counts };
    Object.assign(this.counts, zeroCounts());
    return c;
  }

  async read(path: string): Promise<string> {
    const s = await this.inner.read(path);
    this.counts.reads++;
    this.counts.bytesRead += Buffer.byteLength(s);
    return s;
  }

  async write(path: string, value: string): Promise<void> {
    this.counts.writes++;
    await this.inner.write(path, value);
  }

  async list(path: string): Promise<string[]> {
    this.counts.lists++;
    return this.inner.list(path);
  }

  exists(path: string): Promise<boolean> {
    return this.inner.exists(path);
  }

  mkdir(path: string): Promise<void> {
    return this.inner.mkdir(path);
  }

  rmdir(path: string): Promise<void> {
    return this.inner.rmdir(path);
  }

  async openPipe(path: string): Promise<PipeReader> {
    const inner = await this.inner.openPipe(path);
    const counts = this.counts;
    return {
      async readAvailable(maxBytes: number): Promise<string> {
        const s = await inner.readAvailable(maxBytes);
        counts.pipeReads++;
        counts.pipeBytes += Buffer.byteLength(s);
        return s;
      },
      close: () => inner.close(),
      closeSync: () => inner.closeSync(),
    };
  }

  readSync(path: string): string {
    return this.inner.readSync(path);
  }

  writeSync(path: string, value: string): void {
    this.inner.writeSync(path, value);
  }

  rmdirSync(path: string): void {
    this.inner.rmdirSync(path);
  }
}
