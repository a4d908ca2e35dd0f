// Drives one kdamond of the kernel's DAMON sysfs interface (<sysfs>/admin/kdamonds/): creates
// it, configures it for the vaddr operations, turns it on and off, and removes it again,
// touching nothing but the kdamond it created.
//
// How the interface behaves, and the ownership rule that follows from it:
// - Writing N to kdamonds/nr_kdamonds removes EVERY kdamonds/<K>/ directory, with all its
//   settings, and creates N fresh ones; the kernel refuses it (EBUSY) only while one of
//   them runs. Adding "one more" kdamond beside another user's is therefore impossible
//   without deleting that user's settings (or impossible outright while theirs runs).
//   So the driver claims the interface only when nr_kdamonds is 0, writes 1, and owns
//   kdamonds/0; any other kdamond directory means "busy", and the driver refuses.
// - "Ours" is checked before every write. While our kdamond runs, its pid file must show
//   the kdamond thread we started (nobody can rewrite nr_kdamonds while it runs, so the
//   directory cannot be swapped). While it does not run, the values we wrote must still
//   read back (the ledger): a directory recreated by someone else reads back defaults.
//   Before each setting only nr_kdamonds, the first setting (nr_contexts) and the last one
//   are read back, so configuring stays linear in the number of settings (a full check per
//   write made starting a kdamond take seconds in the emulated guest); the whole ledger is
//   checked before "on" and before cleanup, the writes that matter most.
// - Cleanup turns our kdamond off if it still runs as ours and writes nr_kdamonds 0 only
//   if the ledger still matches; otherwise it leaves everything alone and says why.
// A window remains that the interface cannot close: another tool that writes nr_kdamonds
// between our read of 0 and our write of 1 loses its fresh directories.
import { OperationsUnavailableError } from '../engine/operations.js';
import type { Attributes, IntervalsGoal } from '../engine/attrs.js';
import { KernelFileError, type KernelFiles } from './kernel-files.js';

/** The interface is in use by another user's kdamond (or directories we did not create). */
export class KdamondBusyError extends OperationsUnavailableError {
  constructor(message: string) {
    super('kdamond', message);
    this.name = 'KdamondBusyError';
  }
}

/** The kdamond we created is no longer ours (recreated, restarted or reconfigured by someone else). */
export class KdamondOwnershipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KdamondOwnershipError';
  }
}

/** Our kdamond is not running (it stopped on its own, or was turned off). */
export class KdamondNotRunningError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KdamondNotRunningError';
  }
}

export interface KdamondStatus {
  state: string;
  /** The kdamond thread's pid; -1 when it does not run. */
  pid: number;
}

export interface ReleaseReport {
  /** We wrote "off" to our running kdamond. */
  turnedOff: boolean;
  /** We wrote nr_kdamonds back to what it was before we claimed the interface. */
  removed: boolean;
  /** Why we touched nothing more (the kdamond was no longer ours). */
  leftAlone?: string;
}

/** Paths of the DAMON sysfs interface under `sysfsRoot` (normally /sys/kernel/mm/damon). */
export function kdamondsDir(sysfsRoot: string): string {
  return `${sysfsRoot}/admin/kdamonds`;
}

export function nrKdamondsPath(sysfsRoot: string): string {
  return `${kdamondsDir(sysfsRoot)}/nr_kdamonds`;
}

/** Parses a sysfs number, naming the file when it is not one. */
export function parseSysfsInt(text: string, path: string): number {
  const t = text.trim();
  if (!/^-?\d+$/.test(t)) throw new Error(`${path}: expected an integer, read "${t}"`);
  return Number(t);
}

/**
 * Retries of a read or write the kernel answered EBUSY to: DAMON's sysfs lock is held by a
 * concurrent command (Linux 6.12 answers even reads of a kdamond's pid and state with
 * EBUSY while, say, an "update_schemes_tried_regions" of any kdamond is in progress).
 */
const BUSY_RETRIES = 20;
const BUSY_DELAY_MS = 25;

type IoOp = { kind: 'read'; path: string } | { kind: 'write'; path: string; value: string };
type IoResult = { ok: true; value: string } | { ok: false; error: KernelFileError };
type Steps<R> = Generator<IoOp, R, IoResult>;

function asKernelError(e: unknown, path: string): KernelFileError {
  return e instanceof KernelFileError ? e : new KernelFileError('read', path, 'EIO', String((e as Error)?.message ?? e));
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

async function readRetrying(files: KernelFiles, path: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await files.read(path);
    } catch (e) {
      if (!(e instanceof KernelFileError) || e.code !== 'EBUSY' || attempt >= BUSY_RETRIES) throw e;
      await new Promise((r) => setTimeout(r, BUSY_DELAY_MS));
    }
  }
}

function readRetryingSync(files: KernelFiles, path: string): string {
  for (let attempt = 1; ; attempt++) {
    try {
      return files.readSync(path);
    } catch (e) {
      if (!(e instanceof KernelFileError) || e.code !== 'EBUSY' || attempt >= BUSY_RETRIES) throw e;
      sleepSync(BUSY_DELAY_MS);
    }
  }
}

async function writeRetrying(files: KernelFiles, path: string, value: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await files.write(path, value);
      return;
    } catch (e) {
      if (!(e instanceof KernelFileError) || e.code !== 'EBUSY' || attempt >= BUSY_RETRIES) throw e;
      await new Promise((r) => setTimeout(r, BUSY_DELAY_MS));
    }
  }
}

function writeRetryingSync(files: KernelFiles, path: string, value: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      files.writeSync(path, value);
      return;
    } catch (e) {
      if (!(e instanceof KernelFileError) || e.code !== 'EBUSY' || attempt >= BUSY_RETRIES) throw e;
      sleepSync(BUSY_DELAY_MS);
    }
  }
}

/** Runs a step sequence with async I/O. */
async function runSteps<R>(files: KernelFiles, steps: Steps<R>): Promise<R> {
  let next = steps.next();
  while (!next.done) {
    const op = next.value;
    let result: IoResult;
    try {
      if (op.kind === 'read') result = { ok: true, value: await readRetrying(files, op.path) };
      else {
        await writeRetrying(files, op.path, op.value);
        result = { ok: true, value: '' };
      }
    } catch (e) {
      result = { ok: false, error: asKernelError(e, op.path) };
    }
    next = steps.next(result);
  }
  return next.value;
}

/** Runs a step sequence with sync I/O (process exit). */
function runStepsSync<R>(files: KernelFiles, steps: Steps<R>): R {
  let next = steps.next();
  while (!next.done) {
    const op = next.value;
    let result: IoResult;
    try {
      if (op.kind === 'read') result = { ok: true, value: readRetryingSync(files, op.path) };
      else {
        writeRetryingSync(files, op.path, op.value);
        result = { ok: true, value: '' };
      }
    } catch (e) {
      result = { ok: false, error: asKernelError(e, op.path) };
    }
    next = steps.next(result);
  }
  return next.value;
}

/** "kdamond 0: on (pid 812); kdamond 1: off" for the busy message. */
async function describeKdamonds(files: KernelFiles, sysfsRoot: string, nr: number): Promise<string> {
  const parts: string[] = [];
  for (let i = 0; i < nr; i++) {
    const dir = `${kdamondsDir(sysfsRoot)}/${i}`;
    try {
      const state = (await readRetrying(files, `${dir}/state`)).trim();
      const pid = (await readRetrying(files, `${dir}/pid`)).trim();
      parts.push(state === 'on' ? `kdamond ${i}: on (pid ${pid})` : `kdamond ${i}: ${state}`);
    } catch (e) {
      parts.push(`kdamond ${i}: unreadable (${e instanceof KernelFileError ? e.code : String(e)})`);
    }
  }
  return parts.join('; ');
}

/** The sentence every busy refusal ends with. */
export const BUSY_EXPLANATION =
  'adding a kdamond means rewriting nr_kdamonds, which the kernel refuses while any kdamond runs and which ' +
  "otherwise deletes every kdamond directory with its settings; damon-fleet uses DAMON's sysfs interface only " +
  'when no other kdamond directory exists';

export class KdamondDriver {
  /** Index of our kdamond under kdamonds/ (always 0: we only claim an empty interface). */
  readonly index: number;
  /** kdamonds/<index>: everything we write, apart from nr_kdamonds, lies below it. */
  readonly dir: string;
  private readonly nrPath: string;
  /** Absolute path -> the value we last wrote there (settings, not commands). */
  private readonly ledger = new Map<string, string>();
  private kpid: number | undefined;
  private released = false;

  private constructor(
    private readonly files: KernelFiles,
    readonly sysfsRoot: string,
    index: number,
  ) {
    this.index = index;
    this.dir = `${kdamondsDir(sysfsRoot)}/${index}`;
    this.nrPath = nrKdamondsPath(sysfsRoot);
  }

  /**
   * Creates our kdamond: refuses with KdamondBusyError unless nr_kdamonds is 0, then writes
   * 1 and checks that kdamonds/0 is the fresh directory the kernel creates.
   */
  static async claim(files: KernelFiles, sysfsRoot: string): Promise<KdamondDriver> {
    const nrPath = nrKdamondsPath(sysfsRoot);
    const readNr = async () => parseSysfsInt(await readRetrying(files, nrPath), nrPath);
    const refuse = async (nr: number) =>
      new KdamondBusyError(
        `DAMON sysfs interface at ${sysfsRoot} is in use: nr_kdamonds is ${nr} (${await describeKdamonds(files, sysfsRoot, nr)}); ${BUSY_EXPLANATION}`,
      );
    const nr = await readNr();
    if (nr !== 0) throw await refuse(nr);
    for (let attempt = 1; ; attempt++) {
      try {
        await files.write(nrPath, '1');
        break;
      } catch (e) {
        if (!(e instanceof KernelFileError) || e.code !== 'EBUSY') throw e;
        // Another user's kdamond appeared and runs, or their command holds DAMON's lock.
        const now = await readNr();
        if (now !== 0) throw await refuse(now);
        if (attempt >= BUSY_RETRIES) throw e;
        await new Promise((r) => setTimeout(r, BUSY_DELAY_MS));
      }
    }
    const d = new KdamondDriver(files, sysfsRoot, 0);
    d.ledger.set(nrPath, '1');
    const fresh: [string, string][] = [
      ['state', 'off'],
      ['pid', '-1'],
      ['contexts/nr_contexts', '0'],
    ];
    for (const [rel, want] of fresh) {
      const got = (await readRetrying(files, `${d.dir}/${rel}`)).trim();
      if (got !== want) {
        // Not the directory we just created: someone raced us. It is not ours to clean up.
        d.released = true;
        throw new KdamondOwnershipError(
          `after writing 1 to ${nrPath}, ${d.dir}/${rel} reads "${got}" instead of "${want}": another user changed the interface at the same time; left it alone`,
        );
      }
    }
    return d;
  }

  /** The pid of our running kdamond thread, once turned on. */
  get kdamondPid(): number | undefined {
    return this.kpid;
  }

  /** What we wrote (path -> value), for reports and tests. */
  get writtenSettings(): ReadonlyMap<string, string> {
    return this.ledger;
  }

  private resolve(rel: string): string {
    if (rel.startsWith('/') || rel.split('/').some((p) => p === '..' || p === '.' || p === '')) {
      throw new Error(`kdamond setting path "${rel}" must be relative and inside ${this.dir}`);
    }
    return `${this.dir}/${rel}`;
  }

  /** Reads a file of our kdamond (relative to its directory). */
  async read(rel: string): Promise<string> {
    return (await readRetrying(this.files, this.resolve(rel))).trim();
  }

  /** Names in a directory of our kdamond. */
  async list(rel: string): Promise<string[]> {
    return this.files.list(this.resolve(rel));
  }

  /** Writes one setting of our kdamond, after checking it is still ours (see the top of this file). */
  async set(rel: string, value: string | number): Promise<void> {
    const path = this.resolve(rel);
    const v = String(value);
    if (this.released || this.kpid !== undefined) await this.verify();
    else {
      const mismatch = await runSteps(this.files, this.ledgerCheck(this.sentinels()));
      if (mismatch !== undefined) throw new KdamondOwnershipError(`kdamond ${this.index} is no longer the one we created: ${mismatch}`);
    }
    await writeRetrying(this.files, path, v);
    // A setting written again moves to the end: the last entry is the latest write.
    this.ledger.delete(path);
    this.ledger.set(path, v);
  }

  /** nr_kdamonds, the first setting of our directory and the latest one: the cheap check before a write. */
  private sentinels(): string[] {
    const paths = [...this.ledger.keys()];
    return [...new Set([paths[0], paths[1], paths[paths.length - 1]].filter((p): p is string => p !== undefined))];
  }

  /**
   * vaddr operations, the attributes and one target per pid (target index i = pids[i]).
   * Checks avail_operations first, so a kernel without vaddr fails here, clearly.
   */
  async configureMonitoring(attrs: Attributes, pids: readonly number[]): Promise<void> {
    await this.set('contexts/nr_contexts', 1);
    const availPath = this.resolve('contexts/0/avail_operations');
    if (await this.files.exists(availPath)) {
      const avail = (await readRetrying(this.files, availPath)).split(/\s+/).filter((w) => w !== '');
      if (!avail.includes('vaddr')) {
        throw new OperationsUnavailableError(
          'kdamond',
          `the kernel's DAMON has no vaddr operations (${availPath} lists: ${avail.join(', ') || 'nothing'}); it needs CONFIG_DAMON_VADDR`,
        );
      }
    }
    const c = 'contexts/0';
    await this.set(`${c}/operations`, 'vaddr');
    await this.set(`${c}/monitoring_attrs/intervals/sample_us`, attrs.samplingUs);
    await this.set(`${c}/monitoring_attrs/intervals/aggr_us`, attrs.aggregationUs);
    await this.set(`${c}/monitoring_attrs/intervals/update_us`, attrs.updateUs);
    if (attrs.intervalsGoal) await this.configureIntervalsGoal(`${c}/monitoring_attrs/intervals/intervals_goal`, attrs.intervalsGoal);
    await this.set(`${c}/monitoring_attrs/nr_regions/min`, attrs.minNrRegions);
    await this.set(`${c}/monitoring_attrs/nr_regions/max`, attrs.maxNrRegions);
    await this.set(`${c}/targets/nr_targets`, pids.length);
    for (let i = 0; i < pids.length; i++) await this.set(`${c}/targets/${i}/pid_target`, pids[i]);
  }

  /** The intervals goal files (Linux 6.15+); a kernel without them says so before anything runs. */
  private async configureIntervalsGoal(dir: string, goal: IntervalsGoal): Promise<void> {
    if (!(await this.files.exists(this.resolve(dir)))) {
      throw new OperationsUnavailableError(
        'kdamond',
        `intervals_goal is not supported by this kernel (no ${this.resolve(dir)}; Linux 6.15 added intervals auto-tuning)`,
      );
    }
    await this.set(`${dir}/access_bp`, goal.accessBp);
    await this.set(`${dir}/aggrs`, goal.aggrs);
    await this.set(`${dir}/min_sample_us`, goal.minSampleUs);
    await this.set(`${dir}/max_sample_us`, goal.maxSampleUs);
  }

  /** Writes "on" and returns the kdamond thread's pid. */
  async turnOn(): Promise<number> {
    await this.verify();
    const statePath = this.resolve('state');
    try {
      await writeRetrying(this.files, statePath, 'on');
    } catch (e) {
      const why = e instanceof KernelFileError && e.code === 'EINVAL' ? ' (a target process may have exited, or the kernel lacks vaddr operations)' : '';
      throw new Error(`kdamond ${this.index} did not start: ${(e as Error).message}${why}`);
    }
    const pidPath = this.resolve('pid');
    const pid = parseSysfsInt(await readRetrying(this.files, pidPath), pidPath);
    if (pid <= 0) throw new Error(`kdamond ${this.index} did not start: ${pidPath} reads ${pid} after writing "on"`);
    this.kpid = pid;
    return pid;
  }

  async status(): Promise<KdamondStatus> {
    const pidPath = this.resolve('pid');
    const state = (await readRetrying(this.files, this.resolve('state'))).trim();
    return { state, pid: parseSysfsInt(await readRetrying(this.files, pidPath), pidPath) };
  }

  /** Writes a command ("update_schemes_tried_regions", ...) to our running kdamond's state file. */
  async command(cmd: string): Promise<void> {
    if (this.kpid === undefined) throw new Error(`kdamond ${this.index}: "${cmd}" before it was turned on`);
    await this.verify();
    await writeRetrying(this.files, this.resolve('state'), cmd);
  }

  /**
   * The intervals as the kernel tuned them for an intervals goal (Linux 6.15+): the
   * "update_tuned_intervals" command writes them into sample_us and aggr_us, which our
   * ledger then holds as they read, since the change is our doing.
   */
  async tunedIntervals(): Promise<{ samplingUs: number; aggregationUs: number }> {
    await this.command('update_tuned_intervals');
    const read = async (name: string): Promise<number> => {
      const path = this.resolve(`contexts/0/monitoring_attrs/intervals/${name}`);
      const text = (await readRetrying(this.files, path)).trim();
      const v = parseSysfsInt(text, path);
      if (this.ledger.has(path)) this.ledger.set(path, text);
      return v;
    };
    return { samplingUs: await read('sample_us'), aggregationUs: await read('aggr_us') };
  }

  /**
   * Throws unless the kdamond is still ours: the pid of the thread we started while it
   * runs, every value we wrote otherwise.
   */
  async verify(): Promise<void> {
    if (this.released) throw new KdamondOwnershipError(`kdamond ${this.index} was already released`);
    if (this.kpid !== undefined) {
      const pidPath = this.resolve('pid');
      const pid = parseSysfsInt(await readRetrying(this.files, pidPath), pidPath);
      if (pid === this.kpid) return;
      if (pid !== -1) {
        throw new KdamondOwnershipError(`kdamond ${this.index} now runs as pid ${pid}, not as the pid ${this.kpid} we started: someone else restarted it`);
      }
      throw new KdamondNotRunningError(`kdamond ${this.index} (pid ${this.kpid}) is no longer running`);
    }
    const mismatch = await runSteps(this.files, this.ledgerCheck());
    if (mismatch !== undefined) throw new KdamondOwnershipError(`kdamond ${this.index} is no longer the one we created: ${mismatch}`);
  }

  /** Turns our kdamond off and removes it, if it is still ours; see ReleaseReport. Idempotent. */
  async release(): Promise<ReleaseReport> {
    if (this.released) return { turnedOff: false, removed: false };
    const report = await runSteps(this.files, this.releaseSteps());
    this.released = true;
    return report;
  }

  /** release() with synchronous I/O, for a process 'exit' handler. */
  releaseSync(): ReleaseReport {
    if (this.released) return { turnedOff: false, removed: false };
    const report = runStepsSync(this.files, this.releaseSteps());
    this.released = true;
    return report;
  }

  get isReleased(): boolean {
    return this.released;
  }

  /** Reads back what we wrote to `paths` (default: every setting); the first mismatch, if any. */
  private *ledgerCheck(paths: Iterable<string> = this.ledger.keys()): Steps<string | undefined> {
    for (const path of paths) {
      const value = this.ledger.get(path)!;
      const r = yield { kind: 'read', path };
      if (!r.ok) return `${path} cannot be read (${r.error.code})`;
      const got = r.value.trim();
      if (got !== value) return `${path} reads "${got}" but we wrote "${value}"`;
    }
    return undefined;
  }

  private *releaseSteps(): Steps<ReleaseReport> {
    const report: ReleaseReport = { turnedOff: false, removed: false };
    if (this.kpid !== undefined) {
      const pidPath = `${this.dir}/pid`;
      const r = yield { kind: 'read', path: pidPath };
      if (!r.ok) return { ...report, leftAlone: `${pidPath} cannot be read (${r.error.code}); left the interface alone` };
      const pid = Number(r.value.trim());
      if (pid === this.kpid) {
        const w = yield { kind: 'write', path: `${this.dir}/state`, value: 'off' };
        if (w.ok) report.turnedOff = true;
        else {
          // The kdamond may have stopped by itself (its targets exited) between our read and
          // our write: Linux 6.12 then answers "off" with EPERM. Go on if it no longer runs.
          const again = yield { kind: 'read', path: pidPath };
          if (!again.ok || Number(again.value.trim()) !== -1) throw w.error;
        }
      } else if (pid !== -1) {
        return { ...report, leftAlone: `kdamond ${this.index} runs as pid ${r.value.trim()}, not as the pid ${this.kpid} we started: someone else restarted it, so it is theirs; left it alone` };
      }
    }
    const mismatch = yield* this.ledgerCheck();
    if (mismatch !== undefined) {
      return { ...report, leftAlone: `kdamond ${this.index} is no longer the one we created (${mismatch}); left it alone` };
    }
    const w = yield { kind: 'write', path: this.nrPath, value: String(this.index) };
    if (!w.ok) throw w.error;
    report.removed = true;
    return report;
  }
}
