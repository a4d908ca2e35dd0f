// Typed access to the page_idle checks of native/build/libdamon_access.so
// (native/src/damon_access.c) through koffi. The library is loaded lazily, on the first
// loadNativeAccess() call, so that importing this module costs nothing on hosts that only
// run the synthetic operations; a missing or stale library becomes an
// OperationsUnavailableError that says how to build it.
import { getSystemErrorMap } from 'node:util';
import type koffi from 'koffi';
import { OperationsUnavailableError } from '../engine/operations.js';
import { DEFAULT_LIBRARY_PATH, NativeLibraryError, loadNativeLibrary } from './native-library.js';

/** Files the native calls read and write; errors name them by this key and path. */
export type NativeFile = 'pagemap' | 'kpageflags' | 'bitmap';
const FILE_KEYS: readonly (NativeFile | null)[] = [null, 'pagemap', 'kpageflags', 'bitmap'];
const OPS = ['unknown', 'read', 'write', 'alloc', 'argument', 'armed'] as const;
export type NativeOp = (typeof OPS)[number];

/** An open file handed to the library: its descriptor, and its path for messages. */
export interface OpenFile {
  fd: number;
  path: string;
}

export interface AccessFiles {
  /** /proc/PID/pagemap of the target. */
  pagemap: OpenFile;
  /** /proc/kpageflags. */
  kpageflags: OpenFile;
  /** /sys/kernel/mm/page_idle/bitmap, opened read-write. */
  bitmap: OpenFile;
}

/** What one call saw; page counts are over the distinct virtual pages it resolved. */
export interface AccessStats {
  /** Distinct (head) pages whose idle bit was read. */
  checked: number;
  /** Distinct (head) pages marked idle. */
  armed: number;
  /** Unmapped, swapped-out or never-touched pages (they count as not accessed). */
  notPresent: number;
  /** Present pages whose PFN read as 0: the reader lacks CAP_SYS_ADMIN. */
  pfnZero: number;
  /** Present pages that idle page tracking ignores (off the LRU, hugetlb). */
  untracked: number;
  /** THP tail pages checked through their head page. */
  hugeTail: number;
  /** 8-byte words a file did not have because it ended early. */
  short: number;
  /** Current pages still on the frame armed for them: checked without reading kpageflags. */
  reused: number;
  /** Reused pages that read as accessed, then confirmed through kpageflags. */
  reverified: number;
  /** System calls (pread/pwrite, retries included) on each file. */
  pagemapReads: number;
  kpageflagsReads: number;
  bitmapReads: number;
  bitmapWrites: number;
}

// struct da_armed: vpn, pfn, head (3 x uint64).
const ARMED_BYTES = 24;

/**
 * The pages one target has armed (struct da_armed[], sorted by virtual page), as the
 * native calls leave them: the next check of a page that still maps the same frame
 * reuses its head page instead of reading kpageflags. Each call reads the list and
 * writes the new one into a second buffer; the two then swap.
 */
export class ArmedPages {
  /** Number of entries. */
  count = 0;
  private buf = new Uint8Array(0);
  private spare = new Uint8Array(0);
  /** Holds `count` (uint32_t *n_armed_out). */
  readonly outCount = new Uint32Array(1);

  /** The current list, for the native call to read. */
  get current(): Uint8Array {
    return this.buf;
  }

  /** A buffer with room for n entries for the native call to write; swap() adopts it. */
  output(n: number): Uint8Array {
    if (this.spare.length < n * ARMED_BYTES) this.spare = new Uint8Array(Math.max(16, n) * ARMED_BYTES * 2);
    return this.spare;
  }

  /** Adopts what the last call wrote to output(). */
  swap(): void {
    [this.buf, this.spare] = [this.spare, this.buf];
    this.count = this.outCount[0];
  }

  /** Forgets everything: the next check resolves every page afresh. */
  clear(): void {
    this.count = 0;
  }

  /** The entries, for tests and diagnostics. */
  entries(): { vpn: bigint; pfn: bigint; head: bigint }[] {
    const v = new BigUint64Array(this.buf.buffer, this.buf.byteOffset, this.count * 3);
    return Array.from({ length: this.count }, (_, i) => ({ vpn: v[3 * i], pfn: v[3 * i + 1], head: v[3 * i + 2] }));
  }
}

/** A failed native call: errno, the file and operation, and a message with all of them. */
export class NativeAccessError extends Error {
  constructor(
    readonly errno: number,
    readonly code: string,
    readonly file: NativeFile | null,
    readonly op: NativeOp,
    readonly offset: number,
    message: string,
  ) {
    super(message);
    this.name = 'NativeAccessError';
  }
}

/** "EACCES (permission denied)" for 13. */
export function describeErrno(errno: number): { code: string; text: string } {
  const e = getSystemErrorMap().get(-errno);
  return e ? { code: e[0], text: `${e[0]} (${e[1]})` } : { code: `E${errno}`, text: `errno ${errno}` };
}

/** Addresses passed to a call and how many of them count. */
type AddressList = [Float64Array, number];

// struct da_stats: 13 x uint32, 3 x int32, then uint64 err_offset at byte 64; 72 bytes.
export const STATS_BYTES = 72;

/** The functions of damon_sampler.h; NativeSampler (native-sampler.ts) calls them. */
export interface SamplerFunctions {
  create: koffi.KoffiFunction;
  free: koffi.KoffiFunction;
  setFiles: koffi.KoffiFunction;
  setTarget: koffi.KoffiFunction;
  start: koffi.KoffiFunction;
  done: koffi.KoffiFunction;
  progress: koffi.KoffiFunction;
  stop: koffi.KoffiFunction;
  result: koffi.KoffiFunction;
  timing: koffi.KoffiFunction;
  cpuNs: koffi.KoffiFunction;
  threads: koffi.KoffiFunction;
}

export class NativeAccess {
  /** The page size the library resolves addresses with (the host's). */
  readonly pageSize: number;
  private readonly statsBuf = new ArrayBuffer(STATS_BYTES);
  private readonly statsU32 = new Uint32Array(this.statsBuf);
  private readonly statsI32 = new Int32Array(this.statsBuf);
  private readonly statsU64 = new BigUint64Array(this.statsBuf);
  private readonly statsBytes = new Uint8Array(this.statsBuf);
  private readonly fnCheckAndPrepare: koffi.KoffiFunction;
  private readonly fnPrepare: koffi.KoffiFunction;
  private readonly fnPfnVisible: koffi.KoffiFunction;
  /** The sampler's functions (damon_sampler.h), for NativeSampler. */
  readonly samplerFns: SamplerFunctions;

  constructor(readonly libraryPath: string, lib: koffi.IKoffiLib) {
    // Buffers go as void *: koffi then hands C a pointer to their memory without copying.
    this.pageSize = lib.func('uint32_t da_page_size(void)')() as number;
    this.fnCheckAndPrepare = lib.func(
      'int da_check_and_prepare(int, int, int, void *cur, uint32_t, void *accessed, void *next, uint32_t, ' +
        'void *armed, uint32_t, void *armedOut, void *nArmedOut, void *st)',
    );
    this.fnPrepare = lib.func(
      'int da_prepare(int, int, int, void *addrs, uint32_t, void *armed, uint32_t, void *armedOut, void *nArmedOut, void *st)',
    );
    this.fnPfnVisible = lib.func('int da_pfn_visible(int, void *st)');
    this.samplerFns = {
      create: lib.func('void *da_sampler_new(uint64_t seed)'),
      free: lib.func('void da_sampler_free(void *s)'),
      setFiles: lib.func('int da_sampler_set_files(void *s, int, int)'),
      setTarget: lib.func('int da_sampler_set_target(void *s, uint32_t, uint32_t, int, void *bounds, uint32_t, void *bad)'),
      start: lib.func('int da_sampler_start(void *s, uint32_t, uint64_t)'),
      done: lib.func('int da_sampler_done(void *s)'),
      progress: lib.func('uint32_t da_sampler_progress(void *s)'),
      stop: lib.func('void da_sampler_stop(void *s)'),
      result: lib.func('int da_sampler_result(void *s, uint32_t, void *counts, void *st)'),
      timing: lib.func('int da_sampler_timing(void *s, void *out)'),
      cpuNs: lib.func('int64_t da_sampler_cpu_ns(void *s)'),
      threads: lib.func('uint32_t da_sampler_threads(void)'),
    };
  }

  /**
   * Checks the pages of cur[0..nCur) (armed by earlier calls): accessed[i] = 1 if
   * accessed since, else 0. Then marks the pages of next[0..nNext) idle. One native call.
   * `armed` holds what the earlier calls armed for this target and afterwards what this
   * one did (the next samples' pages).
   */
  checkAndPrepare(
    files: AccessFiles,
    cur: Float64Array,
    nCur: number,
    accessed: Uint8Array,
    next: Float64Array,
    nNext: number,
    armed: ArmedPages,
  ): AccessStats {
    checkCount('current addresses', nCur, cur.length);
    checkCount('accessed flags', nCur, accessed.length);
    checkCount('next addresses', nNext, next.length);
    const out = armed.output(nNext);
    const r = this.fnCheckAndPrepare(
      files.pagemap.fd,
      files.kpageflags.fd,
      files.bitmap.fd,
      cur,
      nCur,
      accessed,
      next,
      nNext,
      armed.current,
      armed.count,
      out,
      armed.outCount,
      this.statsBytes,
    ) as number;
    const s = this.result(r, files, [
      [cur, nCur],
      [next, nNext],
    ]);
    armed.swap();
    return s;
  }

  /** Marks the pages of addrs[0..n) idle and adds them to `armed`. */
  prepare(files: AccessFiles, addrs: Float64Array, n: number, armed: ArmedPages): AccessStats {
    checkCount('addresses', n, addrs.length);
    const out = armed.output(armed.count + n);
    const r = this.fnPrepare(
      files.pagemap.fd,
      files.kpageflags.fd,
      files.bitmap.fd,
      addrs,
      n,
      armed.current,
      armed.count,
      out,
      armed.outCount,
      this.statsBytes,
    ) as number;
    const s = this.result(r, files, [[addrs, n]]);
    armed.swap();
    return s;
  }

  /**
   * Whether PFNs show through `selfPagemap` (/proc/self/pagemap, opened by this process),
   * judged by the entry of a page of the native call's own stack: 'visible', 'zero' (the
   * reader lacks CAP_SYS_ADMIN), or 'not-present' (the file does not describe this process).
   */
  pfnVisible(selfPagemap: OpenFile): 'visible' | 'zero' | 'not-present' {
    const r = this.fnPfnVisible(selfPagemap.fd, this.statsBytes) as number;
    if (r < 0) throw this.error(r, { pagemap: selfPagemap }, []);
    if (r === 1) return 'visible';
    return this.statsU32[2] > 0 ? 'not-present' : 'zero';
  }

  private result(r: number, files: AccessFiles, addrs: AddressList[]): AccessStats {
    if (r < 0) throw this.error(r, files, addrs);
    return statsOf(this.statsU32);
  }

  /** The stats a sampler call left in `st` (STATS_BYTES), or its error (r < 0). */
  samplerOutcome(r: number, st: Uint8Array, files: AccessFiles): { stats: AccessStats; error: NativeAccessError | null } {
    this.statsBytes.set(st.subarray(0, STATS_BYTES));
    return { stats: statsOf(this.statsU32), error: r < 0 ? this.error(r, files, []) : null };
  }

  /** Sampler threads alive in this process. */
  samplerThreads(): number {
    return this.samplerFns.threads() as number;
  }

  private error(r: number, files: Partial<AccessFiles>, addrs: AddressList[]): NativeAccessError {
    return nativeError(this.statsI32, this.statsU64, r, files, addrs);
  }
}

function statsOf(s: Uint32Array): AccessStats {
    return {
      checked: s[0],
      armed: s[1],
      notPresent: s[2],
      pfnZero: s[3],
      untracked: s[4],
      hugeTail: s[5],
      short: s[6],
      reused: s[7],
      reverified: s[8],
      pagemapReads: s[9],
      kpageflagsReads: s[10],
      bitmapReads: s[11],
      bitmapWrites: s[12],
  };
}

function nativeError(i32: Int32Array, u64: BigUint64Array, r: number, files: Partial<AccessFiles>, addrs: AddressList[]): NativeAccessError {
  const errno = i32[13] || -r;
  const file = FILE_KEYS[i32[14]] ?? null;
  const op = OPS[i32[15]] ?? 'unknown';
  const offset = Number(u64[8]);
  const { code, text } = describeErrno(errno);
  let message: string;
  if (op === 'argument') {
    // err_offset indexes the lists one after the other (next after current).
    const all = addrs.flatMap(([a, n]) => Array.from(a.subarray(0, n)));
    message = `bad sampling address #${offset}: ${all[offset]} (must be a number in [0, 2^64))`;
  } else if (op === 'armed') {
    // Only a list a native call wrote is ever passed back; anything else is a bug here.
    message = `armed-page list corrupted: entry #${offset} is not above the one before it`;
  } else if (op === 'alloc') {
    message = `native access check: out of memory (${text})`;
  } else {
    const path = file ? files[file]?.path ?? file : 'unknown file';
    const verb = op === 'write' ? 'writing' : 'reading';
    message = `${verb} ${path} at byte ${offset}: ${text}`;
  }
  return new NativeAccessError(errno, code, file, op, offset, message);
}

function checkCount(what: string, n: number, length: number): void {
  // The C side reads n elements: a count past the array's end would read foreign memory.
  if (!Number.isInteger(n) || n < 0 || n > length || n > 0xffffffff) {
    throw new RangeError(`${what}: count ${n} does not fit an array of ${length}`);
  }
}

const loaded = new Map<string, NativeAccess>();

/**
 * The access checks of the library at `libraryPath` (default: the one `npm run
 * build:native` builds), bound once. Throws OperationsUnavailableError saying what is
 * wrong and how to fix it.
 */
export function loadNativeAccess(libraryPath: string = DEFAULT_LIBRARY_PATH): NativeAccess {
  const cached = loaded.get(libraryPath);
  if (cached) return cached;
  let lib: koffi.IKoffiLib;
  try {
    lib = loadNativeLibrary(libraryPath);
  } catch (e) {
    if (e instanceof NativeLibraryError) throw new OperationsUnavailableError('page_idle', e.message);
    throw e;
  }
  const access = new NativeAccess(libraryPath, lib);
  loaded.set(libraryPath, access);
  return access;
}
