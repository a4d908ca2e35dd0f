// What controllers in standby and agents answer a controller that is not (or no longer)
// the leader, and how callers read it back: one wording, written and parsed here.
import * as grpc from '@grpc/grpc-js';
import { RpcError } from './grpc-server.js';

const STANDBY_MARK = 'standby;';
const STANDBY_PREFIX = `${STANDBY_MARK} the leader is at `;

/**
 * UNAVAILABLE from a controller in standby: names the leader's address when one is known,
 * so that an agent, a client or a person with grpcurl knows where to go.
 */
export function standbyError(leader: string | undefined): RpcError {
  return new RpcError(
    grpc.status.UNAVAILABLE,
    leader ? `${STANDBY_PREFIX}${leader}` : `${STANDBY_MARK} no controller leads at the moment (electing one): retry shortly`,
  );
}

/** The leader's address a standby named in `err`, if it did. */
export function leaderNamedIn(err: unknown): string | undefined {
  const e = err as Partial<grpc.ServiceError>;
  if (e?.code !== grpc.status.UNAVAILABLE) return undefined;
  const text = e.details ?? '';
  if (!text.startsWith(STANDBY_PREFIX)) return undefined;
  const addr = text.slice(STANDBY_PREFIX.length).trim();
  return /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(addr) ? addr : undefined;
}

const STALE_EPOCH = 'stale controller epoch';

/** An agent's refusal of a call from a deposed controller. */
export function staleEpochError(epoch: bigint, highest: bigint, what: string): RpcError {
  return new RpcError(
    grpc.status.FAILED_PRECONDITION,
    `${STALE_EPOCH} ${epoch}: this agent has seen epoch ${highest} from a newer leader; ${what} refused`,
  );
}

/** True when `err` is an agent's refusal by epoch (the caller was deposed). */
export function isStaleEpoch(err: unknown): boolean {
  const e = err as Partial<grpc.ServiceError>;
  return e?.code === grpc.status.FAILED_PRECONDITION && (e.details ?? '').startsWith(STALE_EPOCH);
}

/** True when `err` is a standby's refusal (naming the leader or not): the caller should go elsewhere. */
export function isStandbyRefusal(err: unknown): boolean {
  const e = err as Partial<grpc.ServiceError>;
  return e?.code === grpc.status.UNAVAILABLE && (e.details ?? '').startsWith(STANDBY_MARK);
}
