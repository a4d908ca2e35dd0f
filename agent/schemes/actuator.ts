// What applies a scheme's action to a target's memory: the operations provide it (the
// kernel's damon_operations.apply_scheme), so the schemes core never knows the primitive.
// page_idle advises the process through process_madvise(2) (ops/madvise-actuator.ts);
// synthetic has no memory to act on and only counts (ops/synthetic-actuator.ts).
import type { SchemeActionName } from './scheme.js';

/** An action the target refused; the engine counts it, tells once per distinct error, and goes on. */
export class ActionError extends Error {
  constructor(
    readonly targetId: number,
    /** errno name ('EPERM', 'EINVAL', 'ESRCH', 'ENOMEM', ...). */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ActionError';
  }
}

export interface SchemeActuator {
  /** Why these operations cannot apply `action` (naming what can), or null when they can. */
  refusal(action: SchemeActionName): string | null;
  /**
   * Applies `action` (never 'stat') to [start, end) of the target; returns the bytes it
   * was applied to. Throws ActionError when the target refuses.
   */
  apply(targetId: number, start: number, end: number, action: SchemeActionName): number;
  /** The target left the context: release what is held for it. */
  release(targetId: number): void;
}

/** For operations that offer no actuator: every action but stat is refused, saying so. */
export function noActuator(opsName: string): SchemeActuator {
  return {
    refusal: (action) => `the ${opsName} operations cannot apply ${action}`,
    apply: () => {
      throw new Error(`the ${opsName} operations have no actuator`);
    },
    release: () => {},
  };
}
