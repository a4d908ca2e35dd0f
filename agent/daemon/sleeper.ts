// A sleep between retries that can be cut short: a stop, or news that makes waiting
// pointless (an early heartbeat, records queued while NATS is back).
export class Sleeper {
  private wakeFn: (() => void) | undefined;

  /** True while a sleep is under way. */
  get sleeping(): boolean {
    return this.wakeFn !== undefined;
  }

  /** Resolves after `ms`, or at once when wake() is called meanwhile. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeFn = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeFn = done;
    });
  }

  /** Ends the current sleep, if any. */
  wake(): void {
    this.wakeFn?.();
  }
}
