// Runs a shell command as root inside a guest kernel under QEMU (software emulation, never
// KVM: KVM guests die early in boot on these machines). The guest sees the host's root
// read-only and the project folder writable at the same paths, so host programs (Node.js,
// the compiled project, the workload) run in it unchanged. The command's stdout, stderr and
// exit status come back through a per-run folder shared as a third 9p export, so kernel
// messages on the console never mix with them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';
import { buildInitramfs } from './initramfs.js';
import { rigPaths } from './paths.js';

export type GuestRigErrorCode =
  | 'bad-option'
  | 'qemu-missing'
  | 'kernel-missing'
  | 'kernel-build-failed'
  | 'timeout'
  | 'guest-failed';

export class GuestRigError extends Error {
  override name = 'GuestRigError';
  constructor(
    readonly code: GuestRigErrorCode,
    message: string,
    /** The guest's console output (kernel messages and RIG- markers), when it booted. */
    readonly console = '',
    /** The QEMU process id, when one was started; it is dead when this error is thrown. */
    readonly qemuPid?: number,
  ) {
    super(message);
  }
}

export interface GuestRunOptions {
  /** Bound on the whole run, boot included; the guest is killed when it passes. Default 120 s. */
  timeoutMs?: number;
  /** Guest memory. Default 1024 MiB. */
  memMiB?: number;
  /** Guest CPUs. Default 2. */
  cpus?: number;
  /** Working directory of the command inside the guest. Default: the project folder. */
  cwd?: string;
  /** Extra environment variables for the command (the guest starts from a clean one). */
  env?: Record<string, string>;
  /** Kernel image. Default: $DAMON_RIG_KERNEL, else the image test/guest/build-kernel.sh built. */
  kernel?: string;
  /** QEMU binary. Default: $DAMON_RIG_QEMU, else qemu-system-x86_64 on PATH. */
  qemu?: string;
}

export interface GuestResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  /** The guest's console: kernel messages and the init's RIG- markers. */
  console: string;
  /** Host time from starting QEMU to the command starting in the guest. */
  bootMs: number;
  /** Host time of the whole run. */
  totalMs: number;
}

const CONSOLE_LIMIT = 1 << 20;
const live = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let cleanupInstalled = false;

// A process that exits, or is stopped by a signal (a test runner's timeout, Ctrl-C), must
// not leave emulators running (QEMU does not notice its parent's death) nor exchange folders.
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  const killAll = () => {
    for (const child of live) child.kill('SIGKILL');
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      // The listener is gone now: raising the signal again ends the process as it would have.
      process.kill(process.pid, signal);
    });
  }
}

function tail(text: string, lines = 30): string {
  return text.split('\n').slice(-lines).join('\n');
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** QEMU option values separate fields with commas; a literal comma is written twice. */
function qemuPath(p: string): string {
  return p.replaceAll(',', ',,');
}

function findOnPath(name: string): string | undefined {
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** The kernel image for the current test/guest/kernel.config, or a clear error. */
export function resolveKernel(explicit?: string): string {
  const chosen = explicit ?? process.env.DAMON_RIG_KERNEL;
  if (chosen !== undefined) {
    if (!existsSync(chosen)) throw new GuestRigError('kernel-missing', `guest kernel image ${chosen} does not exist`);
    return chosen;
  }
  const script = join(rigPaths().guestDir, 'build-kernel.sh');
  const r = spawnSync('bash', [script, '--print-image'], { encoding: 'utf8' });
  if (r.error) throw new GuestRigError('kernel-missing', `cannot run ${script}: ${r.error.message}`);
  if (r.status === 0) return r.stdout.trim();
  const why = r.stderr.trim();
  if (r.status === 3) throw new GuestRigError('kernel-build-failed', why);
  throw new GuestRigError('kernel-missing', why || `${script} --print-image failed with exit status ${r.status}`);
}

function validate(opts: GuestRunOptions): Required<Pick<GuestRunOptions, 'timeoutMs' | 'memMiB' | 'cpus'>> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const memMiB = opts.memMiB ?? 1024;
  const cpus = opts.cpus ?? 2;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new GuestRigError('bad-option', `timeoutMs must be a positive integer, got ${timeoutMs}`);
  }
  if (!Number.isInteger(memMiB) || memMiB < 256) {
    throw new GuestRigError('bad-option', `memMiB must be an integer of at least 256 (Node.js needs it), got ${memMiB}`);
  }
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 16) {
    throw new GuestRigError('bad-option', `cpus must be an integer from 1 to 16, got ${cpus}`);
  }
  if (opts.cwd !== undefined && !isAbsolute(opts.cwd)) {
    throw new GuestRigError('bad-option', `cwd must be an absolute path, got '${opts.cwd}'`);
  }
  for (const name of Object.keys(opts.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new GuestRigError('bad-option', `env variable name '${name}' is not a valid shell variable name`);
    }
  }
  return { timeoutMs, memMiB, cpus };
}

/**
 * Boots the guest, runs `command` with /bin/sh as root in it, and returns its output and
 * exit status. Rejects with a GuestRigError naming what went wrong: no QEMU, no kernel,
 * a failed kernel build, a timeout (the guest is killed), or a guest that ended without
 * reporting (its console tail is in the error).
 */
export async function runInGuest(command: string, opts: GuestRunOptions = {}): Promise<GuestResult> {
  const { timeoutMs, memMiB, cpus } = validate(opts);
  const qemuName = opts.qemu ?? process.env.DAMON_RIG_QEMU ?? 'qemu-system-x86_64';
  const qemu = findOnPath(qemuName);
  if (qemu === undefined) {
    throw new GuestRigError(
      'qemu-missing',
      `QEMU '${qemuName}' not found: install the Debian package qemu-system-x86 (or set DAMON_RIG_QEMU)`,
    );
  }
  const kernel = resolveKernel(opts.kernel);
  const paths = rigPaths();
  const initrd = buildInitramfs({
    cacheDir: paths.cacheDir,
    initScript: join(paths.guestDir, 'init.sh'),
    busybox: process.env.DAMON_RIG_BUSYBOX ?? '/bin/busybox',
  });

  installCleanup();
  const io = mkdtempSync(join(tmpdir(), 'damon-rig-'));
  liveDirs.add(io);
  try {
    const cwd = opts.cwd ?? paths.projectRoot;
    const exports = Object.entries(opts.env ?? {}).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`);
    writeFileSync(join(io, 'project'), paths.projectRoot);
    writeFileSync(join(io, 'command'), `cd ${shellQuote(cwd)} || exit 125\n${exports.join('')}${command}\n`);
    const args = [
      '-accel', 'tcg', '-cpu', 'max', '-m', String(memMiB), '-smp', String(cpus),
      '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
      '-kernel', kernel, '-initrd', initrd,
      '-append', 'console=ttyS0 quiet panic=-1',
      '-virtfs', `local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap`,
      '-virtfs', `local,path=${qemuPath(paths.projectRoot)},mount_tag=project,security_model=none,multidevs=remap`,
      '-virtfs', `local,path=${qemuPath(io)},mount_tag=rigio,security_model=none`,
    ];
    const run = await boot(qemu, args, timeoutMs);
    const [status, stdout, stderr] = ['status', 'stdout', 'stderr'].map((f) => join(io, f)) as [string, string, string];
    if (!existsSync(status) || !existsSync(stdout) || !existsSync(stderr)) {
      throw new GuestRigError(
        'guest-failed',
        `the guest ended without reporting the command's output and exit status (QEMU exit ${run.qemuExit}` +
          `${run.qemuStderr ? `, stderr: ${run.qemuStderr.trim()}` : ''}); console tail:\n${tail(run.console)}`,
        run.console,
        run.pid,
      );
    }
    return {
      stdout: readFileSync(stdout, 'utf8'),
      stderr: readFileSync(stderr, 'utf8'),
      exitCode: Number(readFileSync(status, 'utf8').trim()),
      console: run.console,
      bootMs: run.bootMs,
      totalMs: run.totalMs,
    };
  } finally {
    rmSync(io, { recursive: true, force: true });
    liveDirs.delete(io);
  }
}

interface BootResult {
  console: string;
  qemuStderr: string;
  qemuExit: string;
  bootMs: number;
  totalMs: number;
  pid?: number;
}

function boot(qemu: string, args: string[], timeoutMs: number): Promise<BootResult> {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    let consoleText = '';
    let qemuStderr = '';
    let bootMs = NaN;
    let timedOut = false;
    const child = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      consoleText = (consoleText + chunk).slice(-CONSOLE_LIMIT);
      if (Number.isNaN(bootMs) && consoleText.includes('RIG-READY')) bootMs = performance.now() - started;
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      qemuStderr = (qemuStderr + chunk).slice(-CONSOLE_LIMIT);
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      live.delete(child);
      reject(new GuestRigError('qemu-missing', `cannot start QEMU '${qemu}': ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      if (timedOut) {
        const stage = consoleText.includes('RIG-READY') ? 'the command' : 'the boot';
        reject(
          new GuestRigError(
            'timeout',
            `guest timed out after ${timeoutMs} ms during ${stage} and was killed; console tail:\n${tail(consoleText)}`,
            consoleText,
            child.pid,
          ),
        );
        return;
      }
      resolvePromise({
        console: consoleText,
        qemuStderr,
        qemuExit: signal ? `signal ${signal}` : String(code),
        bootMs,
        totalMs: performance.now() - started,
        pid: child.pid,
      });
    });
  });
}
