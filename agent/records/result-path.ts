// File handling the writers share: checking a result path before a writer touches it
// (so an unusable path fails at open time with a message naming the path and the
// reason, not at the first snapshot), and writing a buffer whole.
import { stat, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { ResultFileError, describeFsError } from './result-format.js';

export function openError(path: string, err: unknown, doing = 'open'): ResultFileError {
  return new ResultFileError(
    'open', path, `cannot ${doing} result file ${path}: ${describeFsError(err, path)}`, undefined, { cause: err },
  );
}

/**
 * The existing file's stats, or null when there is none yet. Refuses a path that is a
 * directory or another non-regular file (a writer would append to a device, or replace
 * it by rename).
 */
export async function existingResultFile(path: string): Promise<Stats | null> {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw new ResultFileError('open', String(path), `result file path must be a non-empty path without NUL bytes, got ${JSON.stringify(path)}`);
  }
  let st: Stats;
  try {
    st = await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw openError(path, e);
  }
  if (st.isDirectory()) throw new ResultFileError('open', path, `cannot open result file ${path}: it is a directory`);
  if (!st.isFile()) throw new ResultFileError('open', path, `cannot open result file ${path}: it is not a regular file`);
  return st;
}

/**
 * Writes all of `b` at the file's position (the end, under O_APPEND), however many short
 * writes it takes; throws what the failing write threw, with `done.bytes` telling how
 * many bytes did reach the file.
 */
export async function writeAll(fh: FileHandle, b: Buffer, done?: { bytes: number }): Promise<void> {
  let off = 0;
  while (off < b.length) {
    const { bytesWritten } = await fh.write(b, off, b.length - off);
    if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    off += bytesWritten;
    if (done) done.bytes = off;
  }
}
