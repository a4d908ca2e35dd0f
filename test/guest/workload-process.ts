// A running workload (workload.c) for the programs that run inside the guest: starts it,
// collects the events it prints as they come, and waits for one of them or for its exit,
// failing with its stderr when it dies or takes too long.
import { spawn, type ChildProcess } from 'node:child_process';
import { parseWorkloadOutput, type WorkloadEvent } from './workload.js';

type EventOf<K extends WorkloadEvent['event']> = Extract<WorkloadEvent, { event: K }>;

export class WorkloadProcess {
  readonly events: WorkloadEvent[] = [];
  readonly pid: number;
  /** Resolves with the exit status (or signal name) once the process is gone. */
  readonly exited: Promise<string>;
  private readonly child: ChildProcess;
  private stdoutRest = '';
  private stderrText = '';
  private exitStatus: string | undefined;
  private readonly listeners = new Set<() => void>();

  private constructor(bin: string, args: string[]) {
    this.child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (this.child.pid === undefined) throw new Error(`cannot start the workload ${bin}`);
    this.pid = this.child.pid;
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => {
      const text = this.stdoutRest + chunk;
      const cut = text.lastIndexOf('\n') + 1;
      this.stdoutRest = text.slice(cut);
      this.events.push(...parseWorkloadOutput(text.slice(0, cut)));
      this.notify();
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (chunk: string) => {
      this.stderrText = (this.stderrText + chunk).slice(-4000);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        this.exitStatus = signal ?? String(code);
        this.notify();
        resolve(this.exitStatus);
      });
    });
  }

  static start(bin: string, args: string[]): WorkloadProcess {
    return new WorkloadProcess(bin, args);
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** The first event of a kind (index: the phase's index, for 'phase'), waiting up to timeoutMs. */
  waitFor<K extends WorkloadEvent['event']>(kind: K, timeoutMs: number, index?: number): Promise<EventOf<K>> {
    const find = () =>
      this.events.find((e): e is EventOf<K> => e.event === kind && (index === undefined || (e.event === 'phase' && e.index === index)));
    return new Promise((resolve, reject) => {
      const check = () => {
        const e = find();
        if (e !== undefined) done(() => resolve(e));
        else if (this.exitStatus !== undefined) {
          done(() => reject(new Error(`the workload (pid ${this.pid}) exited (${this.exitStatus}) before its "${kind}" event; stderr: ${this.stderrText}`)));
        }
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`no "${kind}" event from the workload (pid ${this.pid}) within ${timeoutMs} ms; stderr: ${this.stderrText}`))),
        timeoutMs,
      );
      const done = (f: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        f();
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Waits for the process to end by itself within timeoutMs, else kills it and fails. */
  async waitExit(timeoutMs: number): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill();
        reject(new Error(`the workload (pid ${this.pid}) did not exit within ${timeoutMs} ms; killed it`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the current phase now (SIGUSR1; the workload moves to the next phase or exits after the last). */
  nextPhase(): void {
    if (this.exitStatus === undefined) this.child.kill('SIGUSR1');
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitStatus === undefined) this.child.kill(signal);
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }
}
