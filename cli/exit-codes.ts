// Exit codes of the fleet commands (sessions, agents, watch) and how a failed call maps to
// one: scripts branch on the code, people read the sentence. The table is docs/cli.md's.
import * as grpc from '@grpc/grpc-js';
import { excerpt } from '../common/log.js';
import { statusName } from '../common/grpc-server.js';

export const Exit = {
  Ok: 0,
  /** Anything else: the controller failed (INTERNAL), a stream broke, an unexpected error. */
  Failure: 1,
  /** A bad command line, or a request the controller refused as invalid (bad attrs, too many targets). */
  Usage: 2,
  NotFound: 3,
  /** Not in this state: on while on, delete while on, already exists, changed meanwhile. */
  Precondition: 4,
  /** No credential the controller accepts, or this identity may not do that (a reader writing). */
  Auth: 5,
  /** No controller answered (down, unreachable, no leader elected) within the timeout. */
  Unavailable: 6,
} as const;
export type ExitCode = (typeof Exit)[keyof typeof Exit];

/** A failure the command reports as one sentence on stderr and an exit code. */
export class CliError extends Error {
  /** The failed call's error, when a call failed (its code and trailers, for programs that act on them). */
  serviceError?: grpc.ServiceError;
  constructor(readonly exitCode: ExitCode, message: string, readonly status?: string) {
    super(message);
    this.name = 'CliError';
  }
}

/** A bad command line: the command prints the message and its usage, exits 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(Exit.Usage, message);
    this.name = 'UsageError';
  }
}

const STATUS: Partial<Record<grpc.status, { exit: ExitCode; says: string }>> = {
  [grpc.status.INVALID_ARGUMENT]: { exit: Exit.Usage, says: 'the controller refused the request as invalid' },
  [grpc.status.OUT_OF_RANGE]: { exit: Exit.Usage, says: 'a value is out of range' },
  [grpc.status.RESOURCE_EXHAUSTED]: { exit: Exit.Usage, says: 'over a limit' },
  [grpc.status.NOT_FOUND]: { exit: Exit.NotFound, says: 'not found' },
  [grpc.status.FAILED_PRECONDITION]: { exit: Exit.Precondition, says: 'not possible in the current state' },
  [grpc.status.ALREADY_EXISTS]: { exit: Exit.Precondition, says: 'already exists' },
  [grpc.status.ABORTED]: { exit: Exit.Precondition, says: 'changed meanwhile (another client wrote it first); try again' },
  [grpc.status.UNAUTHENTICATED]: {
    exit: Exit.Auth,
    says: 'the controller did not accept this credential (check --token-file, or --tls-cert/--tls-key/--tls-ca)',
  },
  [grpc.status.PERMISSION_DENIED]: { exit: Exit.Auth, says: 'this identity may not do that' },
  [grpc.status.UNAVAILABLE]: { exit: Exit.Unavailable, says: 'the controller is unavailable' },
  [grpc.status.DEADLINE_EXCEEDED]: { exit: Exit.Unavailable, says: 'no answer within the timeout (--timeout)' },
  [grpc.status.INTERNAL]: { exit: Exit.Failure, says: "the controller failed (a bug: its log has the details)" },
};

/** True for an error a gRPC call failed with. */
export function isServiceError(err: unknown): err is grpc.ServiceError {
  return typeof (err as grpc.ServiceError)?.code === 'number' && typeof (err as grpc.ServiceError)?.details === 'string';
}

/**
 * A failed call as a person reads it: "<short sentence>: <the server's message>" (the
 * command's name goes before it),
 * the server's text cut to an excerpt with control characters escaped (it reaches a
 * terminal), and the exit code of its status.
 */
export function callError(err: grpc.ServiceError, where?: string): CliError {
  const s = STATUS[err.code as grpc.status] ?? { exit: Exit.Failure, says: `failed (${statusName(err.code)})` };
  // grpc-js ends some connection errors with an empty "Resolution note:".
  const details = excerpt((err.details || err.message).replace(/\s*Resolution note:\s*$/, ''), 400);
  const at = where && err.code === grpc.status.UNAVAILABLE ? ` at ${where}` : '';
  const e = new CliError(s.exit, `${s.says}${at}: ${details}`, statusName(err.code));
  e.serviceError = err;
  return e;
}
