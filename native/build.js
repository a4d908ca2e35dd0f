#!/usr/bin/env node
// Builds native/build/libdamon_access.so (the page_idle access checks, process_madvise
// for scheme actions, and the opening of the agent's result files beneath its data
// directory) from native/src with the machine's C compiler ($CC, else cc, gcc or clang).
//
// It rebuilds only when a source file or this script is newer than the library.
// Without a compiler, or when compiling fails, it prints a warning saying what is missing
// and exits 0, so `npm ci` still succeeds on such a machine: the synthetic operations need
// no native code, and the page_idle operations and the agent's result files then fail
// with "native library not built".
// `--strict` makes those failures exit 1 (for CI and for developers of the C code).
//
// Usage: node native/build.js [--strict] [--force]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const srcDir = path.join(here, 'src');
const outDir = path.join(here, 'build');
const out = path.join(outDir, 'libdamon_access.so');
const args = new Set(process.argv.slice(2));
const strict = args.has('--strict');
const force = args.has('--force');

for (const a of args) {
  if (a !== '--strict' && a !== '--force') {
    console.error(`native/build.js: unknown option ${a} (usage: node native/build.js [--strict] [--force])`);
    process.exit(2);
  }
}

/** Reports a build that could not happen; the library stays absent. */
function giveUp(what, fix) {
  // A library older than its sources would run stale code: remove it so loading says "not built".
  fs.rmSync(out, { force: true });
  const level = strict ? 'error' : 'warning';
  console.error(`native/build.js: ${level}: ${what}`);
  console.error(`  fix: ${fix}`);
  console.error('  without it the page_idle operations are unavailable (the synthetic operations still work),');
  console.error('  and the agent refuses result files (the recorder still writes them).');
  process.exit(strict ? 1 : 0);
}

if (process.platform !== 'linux') {
  giveUp(
    `page_idle access checks need Linux (this is ${process.platform}); ${path.relative(process.cwd(), out)} not built`,
    'run the agent on a Linux host to use the page_idle operations',
  );
}

const sources = fs.readdirSync(srcDir).filter((f) => f.endsWith('.c')).map((f) => path.join(srcDir, f));
const inputs = [
  ...fs.readdirSync(srcDir).filter((f) => /\.[ch]$/.test(f)).map((f) => path.join(srcDir, f)),
  fileURLToPath(import.meta.url),
];
if (sources.length === 0) giveUp(`no C sources in ${srcDir}`, 'restore native/src from the repository');

function mtimeMs(p) {
  try {
    return fs.statSync(p).mtimeMs;
  } catch {
    return -1;
  }
}

const built = mtimeMs(out);
const newest = Math.max(...inputs.map(mtimeMs));
if (!force && built >= 0 && built >= newest) {
  console.log(`native/build.js: ${path.relative(process.cwd(), out)} is up to date`);
  process.exit(0);
}

/** The first compiler that runs: $CC (may carry arguments, e.g. "ccache gcc"), else cc, gcc, clang. */
function findCompiler() {
  const candidates = process.env.CC ? [process.env.CC.trim().split(/\s+/)] : [['cc'], ['gcc'], ['clang']];
  for (const [cmd, ...pre] of candidates) {
    const r = spawnSync(cmd, [...pre, '--version'], { stdio: 'ignore' });
    if (!r.error && r.status === 0) return [cmd, ...pre];
  }
  return null;
}

const cc = findCompiler();
if (!cc) {
  giveUp(
    process.env.CC
      ? `the C compiler in $CC ("${process.env.CC}") does not run`
      : 'no C compiler found (tried cc, gcc, clang)',
    'install one (Debian/Ubuntu: apt-get install gcc libc6-dev; Fedora: dnf install gcc; Alpine: apk add build-base) or set $CC, then run `npm run build:native`',
  );
}

fs.mkdirSync(outDir, { recursive: true });
// Compile next to the target and rename: a process loading the library never sees half a file.
const tmp = `${out}.tmp-${process.pid}`;
const extra = process.env.CFLAGS ? process.env.CFLAGS.trim().split(/\s+/) : [];
const ccArgs = [...cc.slice(1), '-std=gnu11', '-O2', '-fPIC', '-shared', '-Wall', '-Wextra', '-pthread', ...extra, '-o', tmp, ...sources];
const r = spawnSync(cc[0], ccArgs, { encoding: 'utf8' });
if (r.stdout) process.stdout.write(r.stdout);
if (r.stderr) process.stderr.write(r.stderr);
if (r.error || r.status !== 0) {
  fs.rmSync(tmp, { force: true });
  const missingHeaders = /fatal error: .*\.h: No such file/.test(r.stderr ?? '');
  giveUp(
    `compiling ${path.relative(process.cwd(), out)} failed: \`${[cc[0], ...ccArgs].join(' ')}\` ${r.error ? r.error.message : `exited with status ${r.status}`}`,
    missingHeaders
      ? 'the C library headers are missing: install them (Debian/Ubuntu: apt-get install libc6-dev; Fedora: dnf install glibc-devel), then run `npm run build:native`'
      : 'read the compiler messages above, fix the cause, then run `npm run build:native`',
  );
}
fs.renameSync(tmp, out);
console.log(`native/build.js: built ${path.relative(process.cwd(), out)} with ${cc.join(' ')}`);
