// One-at-a-time sections per key (a session id): turning a session on or off and
// reconciling it never interleave within this controller.
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` after every earlier section of `key` has settled. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const result = prev.then(fn, fn);
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      // Last one out forgets the key, so the map does not grow with every session ever seen.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
