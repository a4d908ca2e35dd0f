// Rate limits of RequestAction: a token bucket per caller identity and one per target
// (host, pid), both charged for every action the controller forwards. A request that finds
// either empty is refused RESOURCE_EXHAUSTED with when to retry, as a google.rpc.RetryInfo
// in the status details (common/retry-info.ts) and in the message.
import * as grpc from '@grpc/grpc-js';
import { RpcError } from '../common/grpc-server.js';
import { retryMetadata } from '../common/retry-info.js';

/** Actions per second one identity (an optimizer, the operator) may request, sustained, and its burst. */
export const CALLER_ACTIONS_PER_S = 20;
export const CALLER_ACTIONS_BURST = 40;
/** Actions per second on one target (host, pid), whoever asks, and its burst. */
export const TARGET_ACTIONS_PER_S = 5;
export const TARGET_ACTIONS_BURST = 10;
/** Buckets unused this long are full again and forgotten (bounds the memory). */
const IDLE_FORGET_MS = 10 * 60_000;

export interface ActionLimits {
  callerPerS: number;
  callerBurst: number;
  targetPerS: number;
  targetBurst: number;
}

export const DEFAULT_ACTION_LIMITS: Readonly<ActionLimits> = Object.freeze({
  callerPerS: CALLER_ACTIONS_PER_S,
  callerBurst: CALLER_ACTIONS_BURST,
  targetPerS: TARGET_ACTIONS_PER_S,
  targetBurst: TARGET_ACTIONS_BURST,
});

/** Checks limits; throws naming the bad one. */
export function checkActionLimits(l: ActionLimits): ActionLimits {
  for (const [k, v] of Object.entries(l)) {
    if (!(Number.isFinite(v) && v > 0)) throw new Error(`action limit ${k}: must be a positive number, got ${v}`);
  }
  if (l.callerBurst < 1 || l.targetBurst < 1) throw new Error('action limits: a burst must allow at least one action');
  return l;
}

/** A token bucket: `burst` tokens, refilled at `perS` a second. */
export class TokenBucket {
  private tokens: number;
  private at: number;
  private lastTake = -Infinity;

  constructor(private readonly perS: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.at = now;
  }

  private refill(now: number): void {
    if (now > this.at) this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perS) / 1000);
    this.at = Math.max(this.at, now);
  }

  /** Milliseconds until a token is there (0: now). */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * 1000) / this.perS);
  }

  take(now: number): void {
    this.refill(now);
    this.tokens -= 1;
    this.lastTake = now;
  }

  /** Whether it is full and untouched for `ms`: forgetting it changes nothing. */
  idle(now: number, ms: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst && now - this.lastTake >= ms;
  }
}

/** RESOURCE_EXHAUSTED saying `why` and to retry after `delayMs`, with the RetryInfo trailer. */
export function rateLimited(why: string, delayMs: number): RpcError {
  const message = `${why}; retry in ${delayMs} ms`;
  return new RpcError(grpc.status.RESOURCE_EXHAUSTED, message, retryMetadata(grpc.status.RESOURCE_EXHAUSTED, message, delayMs));
}

/** The buckets of every caller and target. */
export class ActionRateLimiter {
  private readonly callers = new Map<string, TokenBucket>();
  private readonly targets = new Map<string, TokenBucket>();
  private lastSweep: number;

  constructor(
    private readonly limits: ActionLimits = DEFAULT_ACTION_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    checkActionLimits(limits);
    this.lastSweep = now();
  }

  private bucket(map: Map<string, TokenBucket>, key: string, perS: number, burst: number, now: number): TokenBucket {
    let b = map.get(key);
    if (!b) map.set(key, (b = new TokenBucket(perS, burst, now)));
    return b;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < IDLE_FORGET_MS) return;
    this.lastSweep = now;
    for (const map of [this.callers, this.targets]) {
      for (const [k, b] of map) if (b.idle(now, IDLE_FORGET_MS)) map.delete(k);
    }
  }

  /**
   * Takes a token from the caller's bucket and the target's, or neither: RESOURCE_EXHAUSTED
   * naming the limit when either is empty.
   */
  admit(caller: string, target: { host: string; pid: number }): void {
    const now = this.now();
    this.sweep(now);
    const l = this.limits;
    const c = this.bucket(this.callers, caller, l.callerPerS, l.callerBurst, now);
    const t = this.bucket(this.targets, `${target.host}:${target.pid}`, l.targetPerS, l.targetBurst, now);
    const cw = c.waitMs(now);
    if (cw > 0) throw rateLimited(`rate limit: ${caller} may request ${l.callerPerS} actions a second (bursts of ${l.callerBurst})`, cw);
    const tw = t.waitMs(now);
    if (tw > 0) {
      throw rateLimited(`rate limit: ${l.targetPerS} actions a second (bursts of ${l.targetBurst}) on ${target.host}:${target.pid}`, tw);
    }
    c.take(now);
    t.take(now);
  }
}
