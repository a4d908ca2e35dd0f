// What every part of the session schema shares (common/session-schema.ts for attributes and
// targets, common/scheme-schema.ts and scheme-text.ts for schemes): the error a refused
// value raises, and the interval bound both attributes and schemes are held to. A file of
// its own so that the schema's parts import it without importing one another in a cycle.
import * as grpc from '@grpc/grpc-js';
import { RpcError } from './grpc-server.js';

/**
 * Longest interval, in microseconds: one day. The agent sleeps a sampling interval with a
 * timer that holds at most 2^31-1 ms (about 24.8 days); DAMON is used with far shorter ones.
 */
export const MAX_INTERVAL_US = 86_400_000_000;

/**
 * A value the schema refuses: INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for too many
 * targets or hosts. `field` names it as the API spells it.
 */
export class SchemaError extends RpcError {
  constructor(readonly field: string, readonly detail: string, code: grpc.status = grpc.status.INVALID_ARGUMENT) {
    super(code, `${field}: ${detail}`);
    this.name = 'SchemaError';
  }

  /** The same error with `prefix` before its field ("spec." on the agent's side). */
  under(prefix: string): SchemaError {
    return new SchemaError(`${prefix}${this.field}`, this.detail, this.code);
  }
}

/** Runs a check whose SchemaError gets `prefix` before its field ("attrs.", "spec."). */
export function within<T>(prefix: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof SchemaError) throw err.under(prefix);
    throw err;
  }
}

