// Watches target processes for their exit (see ../ops/process-stat.ts for what identifies
// one). Watching is by polling /proc: Node has no pidfd, and a poll every few hundred
// milliseconds costs nothing next to monitoring.
import { probeProcess } from '../ops/process-stat.js';

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
