// Whether a target process still lives. A pid alone is not an identity (pids are
// reused), so a process is known by its pid and its start time (field 22 of
// /proc/PID/stat); a zombie counts as exited. Watching is by polling /proc: Node has no
// pidfd, and a poll every few hundred milliseconds costs nothing next to monitoring.
import { readFileSync } from 'node:fs';

export type ProcessProbe =
  | { alive: true; startTicks: string }
  | { alive: false; reason: string };

export function probeProcess(pid: number, procRoot = '/proc'): ProcessProbe {
  let stat: string;
  try {
    stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return { alive: false, reason: 'no such process' };
    return { alive: false, reason: `cannot read ${procRoot}/${pid}/stat: ${(err as Error).message}` };
  }
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  if (state === 'Z' || state === 'X') return { alive: false, reason: 'process exited (zombie)' };
  const startTicks = fields[19];
  if (startTicks === undefined) return { alive: false, reason: `unreadable ${procRoot}/${pid}/stat` };
  return { alive: true, startTicks };
}

/** Polls a set of processes and reports each exit once. */
export class ProcessWatch {
  private readonly watched = new Map<number, string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly onExit: (pid: number, reason: string) => void,
    private readonly intervalMs = 250,
    private readonly procRoot = '/proc',
  ) {}

  /** Starts watching `pid` as the process that started at `startTicks` (from probeProcess). */
  add(pid: number, startTicks: string): void {
    this.watched.set(pid, startTicks);
    if (!this.timer) {
      this.timer = setInterval(() => this.check(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Stops watching `pid` without reporting it. */
  remove(pid: number): void {
    this.watched.delete(pid);
    if (this.watched.size === 0) this.stop();
  }

  isWatched(pid: number): boolean {
    return this.watched.has(pid);
  }

  /** Checks every watched process now; exits are reported through onExit. */
  check(): void {
    for (const [pid, startTicks] of [...this.watched]) {
      const p = probeProcess(pid, this.procRoot);
      let reason: string | undefined;
      if (!p.alive) reason = p.reason === 'no such process' ? 'process exited' : p.reason;
      else if (p.startTicks !== startTicks) reason = 'process exited (its pid now belongs to another process)';
      if (reason !== undefined) {
        this.watched.delete(pid);
        this.onExit(pid, reason);
      }
    }
    if (this.watched.size === 0) this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
