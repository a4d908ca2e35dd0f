// The one loader of native/build/libdamon_access.so (native/src): the page_idle access
// checks (native.ts), process_madvise (process-madvise.ts) and the agent's result-file
// confinement (daemon/beneath.ts) bind
// their functions on the library it returns. It is loaded once per path, on first use,
// and a missing, broken or stale library is a NativeLibraryError saying how to build it;
// each user turns that into its own refusal.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';

/** Where `npm run build:native` puts the library (this file runs from dist/agent/ops/). */
export const DEFAULT_LIBRARY_PATH = fileURLToPath(new URL('../../../native/build/libdamon_access.so', import.meta.url));

/** Must match DA_ABI_VERSION in native/src/damon_access.h. */
export const NATIVE_ABI_VERSION = 6;

const BUILD_HINT = 'run `npm run build:native` (needs a C compiler: cc, gcc or clang)';

/** The library cannot be used; the message says why and how to build it. */
export class NativeLibraryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NativeLibraryError';
  }
}

const loaded = new Map<string, koffi.IKoffiLib>();

/** The library at `libraryPath`, loaded and its ABI checked once. */
export function loadNativeLibrary(libraryPath: string = DEFAULT_LIBRARY_PATH): koffi.IKoffiLib {
  const cached = loaded.get(libraryPath);
  if (cached) return cached;
  if (!fs.existsSync(libraryPath)) {
    throw new NativeLibraryError(`native library not built: ${libraryPath} does not exist; ${BUILD_HINT}`);
  }
  let lib: koffi.IKoffiLib;
  try {
    lib = koffi.load(libraryPath);
  } catch (e) {
    throw new NativeLibraryError(`cannot load native library ${libraryPath}: ${(e as Error).message}; rebuild it: ${BUILD_HINT}`);
  }
  let abi: number;
  try {
    abi = lib.func('uint32_t da_abi_version(void)')() as number;
  } catch (e) {
    throw new NativeLibraryError(`${libraryPath} is not the damon access library (${(e as Error).message}); ${BUILD_HINT}`);
  }
  if (abi !== NATIVE_ABI_VERSION) {
    throw new NativeLibraryError(
      `native library ${libraryPath} is out of date (ABI ${abi}, this agent needs ${NATIVE_ABI_VERSION}); ${BUILD_HINT}`,
    );
  }
  loaded.set(libraryPath, lib);
  return lib;
}
