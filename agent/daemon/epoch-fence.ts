// The agent's side of fencing (docs/controller.md): the highest controller epoch seen, from
// calls and from the leader's Registry answers. A call with a lower epoch comes from a
// deposed leader and is refused, so it cannot undo what a newer leader did.
import { staleEpochError } from '../../common/fencing.js';
import type { Logger } from '../../common/log.js';

export class EpochFence {
  private highest = 0n;

  constructor(private readonly log: Logger) {}

  /** The highest epoch seen (0: none yet). */
  get epoch(): bigint {
    return this.highest;
  }

  /** Raises the highest epoch seen to `epoch` (a leader told it). */
  observe(epoch: bigint): void {
    if (epoch <= this.highest) return;
    if (this.highest > 0n) this.log.info(`controller epoch ${this.highest} -> ${epoch} (a new leader); calls of older epochs are refused`);
    this.highest = epoch;
  }

  /** Admits a call of `epoch` (raising the highest seen) or throws FAILED_PRECONDITION when it is stale. */
  admit(epoch: bigint, what: string): void {
    if (epoch < this.highest) {
      this.log.warn(`refused ${what} of stale controller epoch ${epoch} (seen ${this.highest})`);
      throw staleEpochError(epoch, this.highest, what);
    }
    this.observe(epoch);
  }
}
