// Last-resort cleanup when the process exits without stopping its kdamond contexts (an
// uncaught exception, process.exit()): one 'exit' listener for all of them, running each
// context's synchronous cleanup, so a kernel kdamond never outlives the agent that started
// it. A signal that kills the process without an 'exit' event (SIGKILL, or SIGTERM with no
// handler) cannot be caught; the agent's signal handlers stop its sessions instead.
type Cleanup = () => void;

const pending = new Set<Cleanup>();
let installed = false;

/** Runs every registered cleanup once (and forgets it); errors go to stderr, never thrown. */
export function runExitCleanups(): void {
  for (const f of [...pending]) {
    pending.delete(f);
    try {
      f();
    } catch (e) {
      process.stderr.write(`damon-fleet: kdamond cleanup at exit failed: ${(e as Error)?.message ?? String(e)}\n`);
    }
  }
}

/** Registers `f` to run at process exit; returns the function that unregisters it. */
export function registerExitCleanup(f: Cleanup): () => void {
  if (!installed) {
    installed = true;
    process.on('exit', runExitCleanups);
  }
  pending.add(f);
  return () => {
    pending.delete(f);
  };
}

/** Cleanups registered and not yet run or unregistered. */
export function pendingExitCleanups(): number {
  return pending.size;
}
