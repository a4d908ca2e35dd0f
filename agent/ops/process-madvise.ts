// Advising another process's memory through process_madvise(2) on a pidfd
// (native/src/damon_madvise.c): the DAMOS actions pageout, cold, willneed and collapse
// on a monitored process, and the optimizers' actions. Failures are MadviseErrors
// naming the errno ('EPERM', 'EINVAL', 'ESRCH', ...), which callers map to their own
// answers (a scheme counts them, an action request turns them into a gRPC status).
import fs from 'node:fs';
import { getSystemErrorMap } from 'node:util';
import type koffi from 'koffi';
import { DEFAULT_LIBRARY_PATH, NativeLibraryError, loadNativeLibrary } from './native-library.js';

export type AdviceName = 'willneed' | 'cold' | 'pageout' | 'collapse';

/** The kernel's MADV_* values (include/uapi/asm-generic/mman-common.h); the same in damon_madvise.h. */
export const MADV_VALUES: Readonly<Record<AdviceName, number>> = Object.freeze({
  willneed: 3,
  cold: 20,
  pageout: 21,
  collapse: 25,
});

/** A refused open or advice: errno by name, and how far an advice got before it. */
export class MadviseError extends Error {
  /** 'EPERM', 'EINVAL', 'ESRCH', 'ENOMEM', ..., or 'ENOLIB' when the native library is missing. */
  readonly errno: string;
  /** Bytes advised before the refusal (whole ranges, in the order given). */
  readonly bytesAdvised: number;
  /** Index of the refused range in the caller's list; -1 when no range is at fault. */
  readonly rangeIndex: number;
  constructor(message: string, errno: string, bytesAdvised = 0, rangeIndex = -1) {
    super(message);
    this.name = 'MadviseError';
    this.errno = errno;
    this.bytesAdvised = bytesAdvised;
    this.rangeIndex = rangeIndex;
  }
}

/** An open pidfd of a process. close() is idempotent. */
export interface ProcessHandle {
  readonly pid: number;
  close(): void;
}

interface Bound {
  pidfdOpen: koffi.KoffiFunction;
  madvise: koffi.KoffiFunction;
  probe: koffi.KoffiFunction;
}

const boundByPath = new Map<string, Bound>();

function bind(libraryPath: string): Bound {
  const cached = boundByPath.get(libraryPath);
  if (cached) return cached;
  let lib: koffi.IKoffiLib;
  try {
    lib = loadNativeLibrary(libraryPath);
  } catch (e) {
    if (e instanceof NativeLibraryError) throw new MadviseError(`process_madvise unavailable: ${e.message}`, 'ENOLIB');
    throw e;
  }
  const b: Bound = {
    pidfdOpen: lib.func('int da_pidfd_open(int32_t)'),
    // ranges as void * (a BigUint64Array), the two outputs as void * too.
    madvise: lib.func('int da_process_madvise(int, void *, uint32_t, int32_t, void *, void *)'),
    probe: lib.func('int da_madvise_probe(int32_t)'),
  };
  boundByPath.set(libraryPath, b);
  return b;
}

function errnoName(negErrno: number): [string, string] {
  const e = getSystemErrorMap().get(negErrno);
  return e ?? [`E${-negErrno}`, `errno ${-negErrno}`];
}

class PidfdHandle implements ProcessHandle {
  private fdOrClosed: number;
  constructor(
    readonly pid: number,
    fd: number,
    readonly bound: Bound,
  ) {
    this.fdOrClosed = fd;
  }
  /** The descriptor; MadviseError EBADF once closed. */
  get fd(): number {
    if (this.fdOrClosed < 0) throw new MadviseError(`the pidfd of process ${this.pid} is closed`, 'EBADF');
    return this.fdOrClosed;
  }
  close(): void {
    if (this.fdOrClosed < 0) return;
    const fd = this.fdOrClosed;
    this.fdOrClosed = -1;
    fs.closeSync(fd);
  }
}

/** pidfd_open(2) of `pid`; MadviseError (ESRCH: no such process, ENOLIB: library not built). */
export function openProcess(pid: number, libraryPath: string = DEFAULT_LIBRARY_PATH): ProcessHandle {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid > 0x7fffffff) {
    throw new MadviseError(`pid ${pid} is not a process id`, 'EINVAL');
  }
  const b = bind(libraryPath);
  const r = b.pidfdOpen(pid) as number;
  if (r < 0) {
    const [code, text] = errnoName(r);
    throw new MadviseError(`pidfd_open of process ${pid}: ${code} (${text})`, code);
  }
  return new PidfdHandle(pid, r, b);
}

/**
 * process_madvise(2) of `advice` over `ranges` ([start, end), start page aligned, in
 * batches of at most IOV_MAX); returns the bytes advised. Empty ranges are skipped.
 * MadviseError at the first range the kernel refuses, with the bytes advised before it.
 */
export function processMadvise(
  h: ProcessHandle,
  ranges: readonly { start: number; end: number }[],
  advice: AdviceName,
): { bytes: number } {
  if (!(h instanceof PidfdHandle)) throw new TypeError('processMadvise needs a handle from openProcess()');
  const value = MADV_VALUES[advice];
  if (value === undefined) throw new MadviseError(`unknown advice ${JSON.stringify(advice)}`, 'EINVAL');
  const kept: number[] = [];
  const words: bigint[] = [];
  ranges.forEach((r, i) => {
    if (!Number.isSafeInteger(r.start) || !Number.isSafeInteger(r.end) || r.start < 0 || r.end < r.start) {
      throw new MadviseError(`range ${i} [${r.start}, ${r.end}) is not an address range`, 'EINVAL', 0, i);
    }
    if (r.end === r.start) return;
    kept.push(i);
    words.push(BigInt(r.start), BigInt(r.end));
  });
  if (kept.length === 0) return { bytes: 0 };
  const advised = new BigUint64Array(1);
  const failed = new Uint32Array(1);
  const rc = h.bound.madvise(h.fd, new BigUint64Array(words), kept.length, value, advised, failed) as number;
  const bytes = Number(advised[0]);
  if (rc < 0) {
    const [code, text] = errnoName(rc);
    const index = failed[0] < kept.length ? kept[failed[0]] : -1;
    const where = index >= 0 ? ` at range ${index} [0x${ranges[index].start.toString(16)}, 0x${ranges[index].end.toString(16)})` : '';
    throw new MadviseError(`process_madvise(${advice}) of process ${h.pid}${where}: ${code} (${text})`, code, bytes, index);
  }
  return { bytes };
}

const supported = new Map<AdviceName, boolean>();

/** Whether this kernel has process_madvise and the advice (MADV_COLLAPSE needs 6.1+ with THP). */
export function adviceSupported(advice: AdviceName, libraryPath: string = DEFAULT_LIBRARY_PATH): boolean {
  const known = supported.get(advice);
  if (known !== undefined) return known;
  let ok: boolean;
  try {
    ok = (bind(libraryPath).probe(MADV_VALUES[advice]) as number) === 0;
  } catch (e) {
    if (e instanceof MadviseError) return false;
    throw e;
  }
  supported.set(advice, ok);
  return ok;
}
