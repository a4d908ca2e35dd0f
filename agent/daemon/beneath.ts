// Typed access to the beneath-a-directory calls of the native library
// (native/src/beneath.h): opening directories and files relative to a held directory
// descriptor, never through a symbolic link, and renaming within one directory.
// Failures are Node-style errno errors (`code` 'ELOOP', 'ENOENT'...), so the callers'
// messages read like those of node:fs.
import { getSystemErrorMap } from 'node:util';
import { DEFAULT_LIBRARY_PATH, loadNativeLibrary } from '../ops/native-library.js';

/** A failed call: errno as node:fs gives it, and the component that failed, if known. */
export interface BeneathError extends NodeJS.ErrnoException {
  /** Index of the path component that failed (open of a directory path), else -1. */
  component: number;
}

function errnoError(negErrno: number, syscall: string, component = -1): BeneathError {
  const e = getSystemErrorMap().get(negErrno);
  const [code, text] = e ?? [`E${-negErrno}`, `errno ${-negErrno}`];
  return Object.assign(new Error(`${code}: ${text}, ${syscall}`), { errno: negErrno, code, syscall, component });
}

export interface Beneath {
  /**
   * The directory at `path` (components joined by '/', none '.', '..' or empty; '' is
   * the root itself) beneath `rootFd`, creating missing ones with `createMode` when it
   * is not 0; refused past `maxDepth` components.
   */
  openDir(rootFd: number, path: string, createMode: number, maxDepth: number): number;
  /** The file `name` of `dirFd` opened with `flags` (O_NOFOLLOW and O_CLOEXEC added). */
  openFile(dirFd: number, name: string, flags: number, mode: number): number;
  /** Renames `from` over `to`, both in `dirFd`. */
  rename(dirFd: number, from: string, to: string): void;
  unlink(dirFd: number, name: string): void;
  /** Whether openat2 is used; `set` switches to it (true) or to the fallback walk (false). */
  useOpenat2(set?: boolean): boolean;
}

const bound = new Map<string, Beneath>();

/** The calls of the library at `libraryPath`, bound once; throws NativeLibraryError. */
export function loadBeneath(libraryPath: string = DEFAULT_LIBRARY_PATH): Beneath {
  const cached = bound.get(libraryPath);
  if (cached) return cached;
  const lib = loadNativeLibrary(libraryPath);
  // The Int32Array goes as void *: C writes the failing component's index into it.
  const openDir = lib.func('int da_beneath_open_dir(int, const char *, uint32_t, uint32_t, void *)');
  const openFile = lib.func('int da_beneath_open_file(int, const char *, int32_t, uint32_t)');
  const rename = lib.func('int da_beneath_rename(int, const char *, const char *)');
  const unlink = lib.func('int da_beneath_unlink(int, const char *)');
  const useOpenat2 = lib.func('int da_beneath_use_openat2(int32_t)');
  const bad = new Int32Array(1);
  const beneath: Beneath = {
    openDir(rootFd, path, createMode, maxDepth) {
      const r = openDir(rootFd, path, createMode, maxDepth, bad) as number;
      if (r < 0) throw errnoError(r, 'openat', bad[0]);
      return r;
    },
    openFile(dirFd, name, flags, mode) {
      const r = openFile(dirFd, name, flags, mode) as number;
      if (r < 0) throw errnoError(r, 'openat');
      return r;
    },
    rename(dirFd, from, to) {
      const r = rename(dirFd, from, to) as number;
      if (r < 0) throw errnoError(r, 'renameat');
    },
    unlink(dirFd, name) {
      const r = unlink(dirFd, name) as number;
      if (r < 0) throw errnoError(r, 'unlinkat');
    },
    useOpenat2: (set) => (useOpenat2(set === undefined ? -1 : set ? 1 : 0) as number) === 1,
  };
  bound.set(libraryPath, beneath);
  return beneath;
}
