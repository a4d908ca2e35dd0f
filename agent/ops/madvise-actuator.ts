// Scheme actions on a monitored process (the page_idle operations): process_madvise(2)
// on the process's pidfd, opened once per target at its first action and closed when the
// target leaves the context or the operations are cleaned up. Refusals (EPERM, EINVAL,
// ENOMEM for a range the process unmapped, ESRCH once it exited) become ActionErrors: the
// scheme counts them and monitoring goes on.
import { ActionError, type SchemeActuator } from '../schemes/actuator.js';
import type { SchemeActionName } from '../schemes/scheme.js';
import { MadviseError, adviceSupported, openProcess, processMadvise, type AdviceName, type ProcessHandle } from './process-madvise.js';

const ADVICE: Partial<Record<SchemeActionName, AdviceName>> = {
  willneed: 'willneed',
  cold: 'cold',
  pageout: 'pageout',
  collapse: 'collapse',
};

export class MadviseActuator implements SchemeActuator {
  private readonly handles = new Map<number, ProcessHandle | MadviseError>();

  constructor(private readonly opsName = 'page_idle') {}

  refusal(action: SchemeActionName): string | null {
    if (action === 'stat') return null;
    const advice = ADVICE[action];
    if (advice === undefined) {
      return (
        `the ${this.opsName} operations apply actions through process_madvise(2), which takes no MADV_${action.toUpperCase()}; ` +
        `${action} is the kernel's DAMOS action: run the session on the kdamond operations`
      );
    }
    if (!adviceSupported(advice)) {
      return advice === 'collapse'
        ? 'this kernel has no process_madvise(2) with MADV_COLLAPSE (Linux 6.1+ with transparent huge pages), or the native library is not built'
        : `this kernel has no process_madvise(2) (Linux 5.10+) with MADV_${advice.toUpperCase()}, or the native library is not built (npm run build:native)`;
    }
    return null;
  }

  apply(targetId: number, start: number, end: number, action: SchemeActionName): number {
    const advice = ADVICE[action];
    if (advice === undefined) throw new Error(`MadviseActuator.apply: ${action} is not an advice (refusal() said so)`);
    const h = this.handle(targetId);
    try {
      return processMadvise(h, [{ start, end }], advice).bytes;
    } catch (e) {
      if (e instanceof MadviseError) throw new ActionError(targetId, e.errno, e.message);
      throw e;
    }
  }

  release(targetId: number): void {
    const h = this.handles.get(targetId);
    this.handles.delete(targetId);
    if (h !== undefined && !(h instanceof MadviseError)) h.close();
  }

  /** Closes every pidfd (the operations' cleanup). */
  close(): void {
    for (const id of [...this.handles.keys()]) this.release(id);
  }

  private handle(targetId: number): ProcessHandle {
    let h = this.handles.get(targetId);
    if (h === undefined) {
      try {
        h = openProcess(targetId);
      } catch (e) {
        if (!(e instanceof MadviseError)) throw e;
        // Kept: a process that cannot be opened now will not be later (it exited).
        h = e;
      }
      this.handles.set(targetId, h);
    }
    if (h instanceof MadviseError) throw new ActionError(targetId, h.errno, h.message);
    return h;
  }
}
