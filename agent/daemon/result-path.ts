// Result files are written by an agent that runs as root, at a path that a remote user
// chose. They are confined to the agent's data directory: the path must be relative,
// must not climb out with '..', no directory on the way may be a symbolic link that
// leads outside, and the file itself is opened with O_NOFOLLOW (never through a link).
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, realpathSync } from 'node:fs';
import { isAbsolute, join, posix, relative, sep } from 'node:path';

/** A result_file that the agent refuses to write; the message says why, naming the path. */
export class ResultPathError extends Error {
  constructor(readonly resultFile: string, message: string) {
    super(`result_file "${resultFile}": ${message}`);
    this.name = 'ResultPathError';
  }
}

function isInside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code;
}

/**
 * Checks `resultFile` against the rules and returns the absolute path it names inside
 * `dataDir` (resolved through links that stay inside), creating missing directories
 * on the way (mode 0750). Throws ResultPathError when the path is refused.
 */
export function confineResultPath(dataDir: string, resultFile: string): string {
  const fail = (msg: string): never => {
    throw new ResultPathError(resultFile, msg);
  };
  if (resultFile.length === 0) fail('empty path');
  if (resultFile.includes('\0')) fail('contains a NUL byte');
  if (isAbsolute(resultFile)) {
    fail(`absolute paths are refused; give a path relative to the agent's data directory (${dataDir})`);
  }
  const normalized = posix.normalize(resultFile);
  if (normalized === '..' || normalized.startsWith('../')) {
    fail(`escapes the agent's data directory (${dataDir}) through '..'`);
  }
  if (normalized === '.' || normalized.endsWith('/')) fail('names a directory, not a file');

  let root: string;
  try {
    root = realpathSync(dataDir);
  } catch (err) {
    return fail(`the agent's data directory ${dataDir} is not usable: ${(err as Error).message}`);
  }

  const parts = normalized.split('/');
  const fileName = parts.pop()!;
  let dir = root;
  let walked = '';
  for (const part of parts) {
    walked = walked ? `${walked}/${part}` : part;
    const next = join(dir, part);
    let st;
    try {
      st = lstatSync(next);
    } catch (err) {
      if (code(err) !== 'ENOENT') fail(`cannot inspect "${walked}": ${(err as Error).message}`);
      mkdirSync(next, { mode: 0o750 });
      dir = next;
      continue;
    }
    if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = realpathSync(next);
      } catch (err) {
        return fail(`"${walked}" is a symbolic link that does not resolve: ${(err as Error).message}`);
      }
      if (!isInside(root, target)) {
        fail(`"${walked}" is a symbolic link to ${target}, outside the agent's data directory (${dataDir})`);
      }
      if (!lstatSync(target).isDirectory()) fail(`"${walked}" is not a directory`);
      dir = target;
    } else if (st.isDirectory()) {
      dir = next;
    } else {
      fail(`"${walked}" is not a directory`);
    }
  }
  // Re-resolve the parent as a whole: a link swapped in while walking is caught here.
  const parent = realpathSync(dir);
  if (!isInside(root, parent)) fail(`resolves outside the agent's data directory (${dataDir})`);
  const file = join(parent, fileName);
  try {
    const st = lstatSync(file);
    if (st.isSymbolicLink()) fail('is a symbolic link; result files are never written through links');
    if (!st.isFile()) fail('exists and is not a regular file');
  } catch (err) {
    if (err instanceof ResultPathError) throw err;
    if (code(err) !== 'ENOENT') fail(`cannot inspect it: ${(err as Error).message}`);
  }
  return file;
}

/**
 * Opens (creating if needed) the confined result file for writing, with O_NOFOLLOW so
 * that a link put in its place after the checks is refused too. `append` keeps what is
 * there; otherwise the file is truncated.
 */
export function openConfinedResultFile(
  dataDir: string,
  resultFile: string,
  append: boolean,
): { path: string; fd: number } {
  const path = confineResultPath(dataDir, resultFile);
  const flags =
    constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | (append ? constants.O_APPEND : constants.O_TRUNC);
  let fd: number;
  try {
    fd = openSync(path, flags, 0o640);
  } catch (err) {
    if (code(err) === 'ELOOP') {
      throw new ResultPathError(resultFile, 'is a symbolic link; result files are never written through links');
    }
    throw new ResultPathError(resultFile, `cannot open ${path}: ${(err as Error).message}`);
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new ResultPathError(resultFile, 'is not a regular file');
  }
  return { path, fd };
}
