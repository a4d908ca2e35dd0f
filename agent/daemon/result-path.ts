// Result files are written by an agent that runs as root, at a path that a remote user
// chose, inside a data directory that local users may be able to change while the agent
// works. The confinement:
// - the path must be relative, must not climb out with '..', and is bounded (depth,
//   bytes, bytes per component) before anything is created: the session schema's rules
//   (common/session-schema.ts), which the controller applies too;
// - it is resolved beneath a descriptor of the data directory, never through a symbolic
//   link (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, native/src/beneath.c); missing
//   directories are created there one at a time, each opened again beneath its parent;
// - the file's directory stays held as a descriptor: every later open, rename and unlink
//   (the JSON writer's rewrites too) is relative to it, so swapping a directory on the
//   path for a link after the checks redirects nothing;
// - an opened file is refused, before a byte is written, unless it is a regular file
//   with one link, owned by the agent's user (a hard link could be a file outside; a
//   file of another user is not the agent's to change).
import { closeSync, constants, fstatSync, openSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { NativeLibraryError } from '../ops/native-library.js';
import { ResultFileError } from '../records/result-format.js';
import { quoted } from '../../common/log.js';
import {
  MAX_RESULT_PATH_DEPTH,
  SchemaError,
  checkResultPath as checkSchemaPath,
  type ResultPathParts,
} from '../../common/session-schema.js';
import { ResultFd, tempName, type ResultLocation, type TempFile } from '../records/result-location.js';
import { loadBeneath, type Beneath, type BeneathError } from './beneath.js';

/**
 * At most these permission bits on the files the agent creates: a result file shows
 * another process's memory layout and access pattern, so it is not for every local user.
 */
export const RESULT_FILE_MODE = 0o640;
/** Mode of the directories the agent creates on the way. */
const DIR_MODE = 0o750;
/** A result_file that the agent refuses to write; the message says why, quoting the path. */
export class ResultPathError extends ResultFileError {
  constructor(readonly resultFile: string, message: string) {
    super('open', resultFile, `result_file ${quoted(resultFile)}: ${message}`);
    this.name = 'ResultPathError';
  }
}

/** Applies the rules that need no file system (the session schema's); throws ResultPathError. */
export function checkResultPath(resultFile: string): ResultPathParts {
  try {
    return checkSchemaPath(resultFile);
  } catch (e) {
    if (e instanceof SchemaError) throw new ResultPathError(resultFile, e.detail);
    throw e;
  }
}

/** Why the directory walk stopped, for the message: which rule, which component. */
function dirRefusal(e: BeneathError, dirs: string[], dataDir: string): string {
  if (e.component < 0) return `cannot open the agent's data directory (${dataDir}): ${e.message}`;
  const at = quoted(dirs.slice(0, e.component + 1).join('/'));
  switch (e.code) {
    case 'ELOOP': return `${at} is a symbolic link; result paths never pass through links`;
    case 'ENOTDIR': return `${at} is not a directory`;
    case 'EXDEV': return `${at} leads outside the agent's data directory (${dataDir})`;
    default: return `cannot open or create the directory ${at}: ${e.message}`;
  }
}

/**
 * The result file `resultFile` inside `dataDir`, for openResultWriter: its directory
 * resolved (missing ones created, mode 0750) and held. Throws ResultPathError when the
 * path is refused, or when the native library that does the confined opens is missing.
 */
export function openConfinedLocation(
  dataDir: string,
  resultFile: string,
  opts: { libraryPath?: string } = {},
): ResultLocation {
  const fail = (msg: string): never => {
    throw new ResultPathError(resultFile, msg);
  };
  const { dirs, name, relative } = checkResultPath(resultFile);
  let beneath: Beneath;
  try {
    beneath = loadBeneath(opts.libraryPath);
  } catch (e) {
    // No fallback to path-based checks: those are the racy ones this replaces.
    if (e instanceof NativeLibraryError) return fail(`the agent cannot write result files: ${e.message}`);
    throw e;
  }
  let rootFd: number;
  try {
    rootFd = openSync(dataDir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (e) {
    return fail(`the agent's data directory ${dataDir} is not usable: ${(e as Error).message}`);
  }
  let dirFd: number;
  try {
    dirFd = beneath.openDir(rootFd, dirs.join('/'), DIR_MODE, MAX_RESULT_PATH_DEPTH - 1);
  } catch (e) {
    return fail(dirRefusal(e as BeneathError, dirs, dataDir));
  } finally {
    closeSync(rootFd);
  }
  return new ConfinedLocation(beneath, dirFd, join(dataDir, relative), name, resultFile);
}

class ConfinedLocation implements ResultLocation {
  #dirFd: number;

  constructor(
    private readonly beneath: Beneath,
    dirFd: number,
    readonly path: string,
    private readonly name: string,
    private readonly resultFile: string,
  ) {
    this.#dirFd = dirFd;
  }

  private refuse(msg: string): never {
    throw new ResultPathError(this.resultFile, msg);
  }

  private dirFd(): number {
    if (this.#dirFd < 0) throw new Error(`result file ${this.path}: used after its location was closed`);
    return this.#dirFd;
  }

  /** Opens `name` in the held directory; a link there is a refusal, other errors are errno errors. */
  private openAt(name: string, flags: number, mode = 0): number {
    try {
      return this.beneath.openFile(this.dirFd(), name, flags, mode);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ELOOP') this.refuse('is a symbolic link; result files are never written through links');
      throw e;
    }
  }

  /** The open file's stats, or (closing it) a refusal of a file the agent must not write. */
  private checked(fd: number): Stats {
    const st = fstatSync(fd);
    const euid = process.geteuid!();
    let why: string | null = null;
    if (!st.isFile()) why = 'exists and is not a regular file';
    else if (st.nlink > 1) why = `has ${st.nlink} hard links; a result file must have one (another could be a file outside the data directory)`;
    else if (st.uid !== euid) why = `is owned by uid ${st.uid}, not by the agent's user (uid ${euid}); it is not the agent's to write`;
    if (why !== null) {
      closeSync(fd);
      this.refuse(why);
    }
    return st;
  }

  async existing(): Promise<Stats | null> {
    let fd: number;
    try {
      fd = this.openAt(this.name, constants.O_RDONLY);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const st = this.checked(fd);
    closeSync(fd);
    return st;
  }

  async openAppend(mode: number): Promise<ResultFd> {
    // No O_TRUNC: a file refused below keeps every byte it had.
    const fd = this.openAt(this.name, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, mode & RESULT_FILE_MODE);
    this.checked(fd);
    return new ResultFd(fd);
  }

  async readExisting(): Promise<Buffer> {
    const fd = this.openAt(this.name, constants.O_RDONLY);
    this.checked(fd);
    const file = new ResultFd(fd);
    try {
      return await file.readAll();
    } finally {
      await file.close();
    }
  }

  async createTemp(mode: number): Promise<TempFile> {
    const name = tempName(this.name);
    const fd = this.openAt(name, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode & RESULT_FILE_MODE);
    return { file: new ResultFd(fd), name, path: join(dirname(this.path), name) };
  }

  async commitTemp(name: string): Promise<void> {
    this.beneath.rename(this.dirFd(), name, this.name);
  }

  async discardTemp(name: string): Promise<void> {
    this.beneath.unlink(this.dirFd(), name);
  }

  close(): void {
    if (this.#dirFd < 0) return;
    closeSync(this.#dirFd);
    this.#dirFd = -1;
  }
}
