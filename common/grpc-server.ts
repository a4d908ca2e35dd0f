// Server plumbing shared by the controller and the agents: async handlers with errors
// mapped to gRPC statuses, an authorization hook, grpc.health.v1, server reflection,
// and bind/shutdown as promises.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { silentLogger, type BasicLogger } from './log.js';

/**
 * An error a handler throws to answer with a specific gRPC status, e.g.
 * `throw new RpcError(grpc.status.NOT_FOUND, 'session "x" not found')`.
 * Any other error becomes INTERNAL (and its stack is logged).
 */
export class RpcError extends Error {
  /** Trailers sent with the status (e.g. grpc-status-details-bin with a RetryInfo). */
  readonly metadata?: grpc.Metadata;
  constructor(readonly code: grpc.status, message: string, metadata?: grpc.Metadata) {
    super(message);
    this.name = 'RpcError';
    if (metadata) this.metadata = metadata;
  }
}

/** The name of a gRPC status code ("NOT_FOUND"), for logs and messages. */
export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? `status ${code}`;
}

/** The part of a server call that tells who is calling. */
export type AuthCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'metadata' | 'getAuthContext'>;

/**
 * Checks a call's credentials before its handler runs, given the method's path
 * ("/damon.v1.Controller/GetSession"); throws RpcError (UNAUTHENTICATED /
 * PERMISSION_DENIED) to refuse it, or returns who the caller is, which the handler reads
 * with authorizedCaller(call). See accessAuthorizer in grpc-access.ts.
 */
export type Authorizer = (call: AuthCall, method: string) => unknown;

const callers = new WeakMap<object, unknown>();

/** What the Authorizer returned for `call` (undefined when the server has none). */
export function authorizedCaller(call: object): unknown {
  return callers.get(call);
}

function authorizeCall(authorize: Authorizer | undefined, call: AuthCall, method: string): void {
  if (authorize) callers.set(call, authorize(call, method));
}

/**
 * Turns anything a handler threw into a gRPC status (after `mapError`, if given, had its say):
 * RpcError keeps its code, an error that
 * already carries a numeric gRPC `code` (e.g. a failed outgoing call) keeps it, anything else is
 * INTERNAL with its stack logged under `method`.
 */
export function toStatus(
  err: unknown,
  method: string,
  log: BasicLogger,
  mapError?: (err: unknown) => RpcError | undefined,
): grpc.ServerErrorResponse {
  const mapped = mapError?.(err);
  if (mapped) err = mapped;
  if (err instanceof RpcError) {
    return Object.assign(new Error(err.message), { code: err.code, details: err.message, ...(err.metadata ? { metadata: err.metadata } : {}) });
  }
  const e = err as Partial<grpc.ServiceError> | undefined;
  if (e && typeof e.code === 'number' && e.code in grpc.status && e.code !== grpc.status.OK) {
    const details = e.details ?? e.message ?? statusName(e.code);
    return Object.assign(new Error(details), { code: e.code, details });
  }
  log.error(`${method}: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  const details = `internal error: ${err instanceof Error ? err.message : String(err)}`;
  return Object.assign(new Error(details), { code: grpc.status.INTERNAL, details });
}

type MethodOf<D> = D extends grpc.MethodDefinition<infer Req, infer Res> ? [Req, Res] : never;

/**
 * Handlers written as async functions: unary methods return the response, server-streaming
 * methods write to the call and resolve when the stream is done (the helper ends it).
 */
export type AsyncHandlers<S extends grpc.ServiceDefinition> = {
  [K in keyof S]: S[K]['responseStream'] extends true
    ? (call: grpc.ServerWritableStream<MethodOf<S[K]>[0], MethodOf<S[K]>[1]>) => Promise<void>
    : (request: MethodOf<S[K]>[0], call: grpc.ServerUnaryCall<MethodOf<S[K]>[0], MethodOf<S[K]>[1]>) => Promise<MethodOf<S[K]>[1]>;
};

/** Options of `implement`. */
export interface ImplementOptions {
  /** Runs before every handler; omitted = no authorization. */
  authorize?: Authorizer;
  log?: BasicLogger;
  /**
   * Translates errors of the server's dependencies into statuses (e.g. its store being
   * unreachable -> UNAVAILABLE); undefined leaves the error to the default mapping.
   */
  mapError?: (err: unknown) => RpcError | undefined;
}

/**
 * Adapts async handlers to grpc-js: authorizes each call, maps thrown errors to statuses
 * (see toStatus), ends server streams. Client- and bidi-streaming methods are not supported
 * (the damon.v1 API has none).
 */
export function implement<S extends grpc.ServiceDefinition>(
  definition: S,
  handlers: AsyncHandlers<S>,
  options: ImplementOptions = {},
): grpc.UntypedServiceImplementation {
  const log = options.log ?? silentLogger;
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(definition)) {
    const method = def.path;
    const fn = (handlers as Record<string, (...a: any[]) => Promise<any>>)[name];
    if (typeof fn !== 'function') throw new Error(`implement: no handler for ${method}`);
    if (def.requestStream) throw new Error(`implement: client streaming ${method} is not supported`);
    if (!def.responseStream) {
      out[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        (async () => {
          authorizeCall(options.authorize, call, method);
          return fn(call.request, call);
        })().then(
          (res) => callback(null, res),
          (err) => callback(toStatus(err, method, log, options.mapError)),
        );
      }) as grpc.handleUnaryCall<unknown, unknown>;
    } else {
      out[name] = ((call: grpc.ServerWritableStream<unknown, unknown>) => {
        (async () => {
          authorizeCall(options.authorize, call, method);
          await fn(call);
        })().then(
          () => {
            if (!call.cancelled && !call.writableEnded) call.end();
          },
          (err) => {
            if (call.cancelled) return;
            // grpc-js turns an 'error' event into the call's status and ends the stream.
            call.emit('error', toStatus(err, method, log, options.mapError));
          },
        );
      }) as grpc.handleServerStreamingCall<unknown, unknown>;
    }
  }
  return out;
}

/** Finds proto/damon/v1/damon.proto from this module (works from common/ and from dist/common/). */
function findDamonProto(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = join(dir, 'proto', 'damon', 'v1', 'damon.proto');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  throw new Error('proto/damon/v1/damon.proto not found above ' + dirname(fileURLToPath(import.meta.url)));
}

/** Path of the API's .proto file (the source of truth; reflection serves it). */
export const DAMON_PROTO_PATH: string = findDamonProto();

/** Fully-qualified names of the API's services. */
export const SERVICE_NAMES = {
  controller: 'damon.v1.Controller',
  registry: 'damon.v1.Registry',
  agent: 'damon.v1.Agent',
} as const;

const HEALTH_SERVICE = 'grpc.health.v1.Health';

/**
 * Adds grpc.health.v1.Health with the overall status ("") and each of `services` SERVING.
 * Returns the implementation so a server can flip to NOT_SERVING while it shuts down.
 */
export function addHealth(server: grpc.Server, services: readonly string[]): HealthImplementation {
  const status: Record<string, 'SERVING'> = { '': 'SERVING' };
  for (const s of services) status[s] = 'SERVING';
  const health = new HealthImplementation(status);
  health.addToServer(server);
  return health;
}

let packageDefinition: protoLoader.PackageDefinition | undefined;

/**
 * Adds server reflection (v1 and v1alpha) exposing `services` (the damon.v1 services this
 * server implements) and grpc.health.v1.Health, so `grpcurl -plaintext HOST:PORT list` and
 * `describe` work without the .proto.
 */
export function addReflection(server: grpc.Server, services: readonly string[]): void {
  packageDefinition ??= protoLoader.loadSync([DAMON_PROTO_PATH, healthProtoPath], {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  new ReflectionService(packageDefinition, { services: [...services, HEALTH_SERVICE] }).addToServer(server);
}

/** Options of createServer. */
export interface ServerSetup {
  /** damon.v1 services this server implements: definition, handlers, authorization. */
  services: Array<{
    name: string;
    definition: grpc.ServiceDefinition;
    implementation: grpc.UntypedServiceImplementation;
  }>;
  /** grpc-js server options (message sizes, keepalive). */
  options?: grpc.ServerOptions;
}

/** A server with the services, health and reflection added. */
export function createServer(setup: ServerSetup): { server: grpc.Server; health: HealthImplementation } {
  const server = new grpc.Server(setup.options);
  for (const s of setup.services) server.addService(s.definition, s.implementation);
  const names = setup.services.map((s) => s.name);
  const health = addHealth(server, names);
  addReflection(server, names);
  return { server, health };
}

/** Binds `address` ("host:port"; port 0 picks a free one) and resolves the bound port. */
export function bindServer(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => {
      if (err) reject(new Error(`cannot listen on ${address}: ${err.message}`));
      else resolve(port);
    });
  });
}

/**
 * Stops accepting calls and waits up to `graceMs` for running ones (server streams included),
 * then cancels whatever is left.
 */
export function shutdownServer(server: grpc.Server, graceMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
