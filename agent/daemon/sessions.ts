// The sessions this agent runs, by id. ApplySession is idempotent: the same spec (id,
// generation and content) leaves a running session alone; a changed one restarts it.
// Calls for one session are serialized; different sessions proceed independently.
import * as grpc from '@grpc/grpc-js';
import { RpcError } from '../../common/grpc-server.js';
import type { ObservedSession } from '../../gen/damon/v1/damon.js';
import type { Logger } from '../../common/log.js';
import { SessionRunner, type RunnerDeps } from './session-runner.js';
import type { RunSpec } from './spec.js';

export type SessionDeps = Omit<RunnerDeps, 'log'> & { log: Logger };

export class SessionManager {
  private readonly runners = new Map<string, SessionRunner>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(private readonly deps: SessionDeps) {}

  private serialized<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(id, settled);
    void settled.then(() => {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    });
    return next;
  }

  /** Runs (or keeps) `spec`; `admit`, if given, runs first in the session's turn and throws to refuse. */
  apply(spec: RunSpec, admit?: () => void): Promise<ObservedSession> {
    return this.serialized(spec.sessionId, async () => {
      if (this.closed) throw new RpcError(grpc.status.UNAVAILABLE, 'the agent is shutting down');
      admit?.();
      const current = this.runners.get(spec.sessionId);
      if (current && current.spec.key === spec.key) return current.observed();
      if (current) {
        this.deps.log.info(
          `session ${spec.sessionId}: spec changed (generation ${current.spec.generation} -> ${spec.generation}); restarting`,
        );
        this.runners.delete(spec.sessionId);
        await current.stop();
      }
      const runner = new SessionRunner(spec, this.deps);
      this.runners.set(spec.sessionId, runner);
      await runner.start();
      return runner.observed();
    });
  }

  /** Stops and forgets the session; a no-op for a session this agent does not run. */
  stop(sessionId: string, admit?: () => void): Promise<void> {
    return this.serialized(sessionId, async () => {
      admit?.();
      const runner = this.runners.get(sessionId);
      if (!runner) return;
      this.runners.delete(sessionId);
      await runner.stop();
    });
  }

  /** The sessions running now. */
  running(): SessionRunner[] {
    return [...this.runners.values()];
  }

  observed(): ObservedSession[] {
    return [...this.runners.values()].map((r) => r.observed());
  }

  /** Stops every session (agent shutdown); later applies are refused. */
  async stopAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.runners.keys()].map((id) => this.stop(id)));
  }
}
