// Promise wrappers around the generated grpc-js clients, and polling helpers, for tests.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { channelCredentials, clientOptions, type Credentials } from '../../../common/auth.js';
import { service as healthService } from 'grpc-health-check';
import { ControllerClient, RegistryClient } from '../../../gen/damon/v1/damon.js';

type Callback<Res> = (err: grpc.ServiceError | null, res: Res) => void;
type UnaryMethod<Req, Res> = (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: Callback<Res>) => grpc.ClientUnaryCall;
type ReqOf<M> = M extends (req: infer Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: Callback<infer _R>) => unknown ? Req : never;
type ResOf<M> = M extends (req: infer _Q, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: Callback<infer Res>) => unknown ? Res : never;

/** Calls unary `method` of `client` with a 10 s deadline. */
export function unary<C extends grpc.Client, K extends keyof C>(
  client: C,
  method: K,
  req: ReqOf<C[K]>,
  md: grpc.Metadata = new grpc.Metadata(),
): Promise<ResOf<C[K]>> {
  return new Promise((resolve, reject) => {
    const fn = client[method] as unknown as UnaryMethod<ReqOf<C[K]>, ResOf<C[K]>>;
    fn.call(client, req, md, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** A Controller client presenting `creds`. */
export function controllerClient(address: string, creds: Credentials = {}, extra: Partial<grpc.ClientOptions> = {}): ControllerClient {
  return new ControllerClient(address, channelCredentials(creds), clientOptions(creds, extra));
}

/** A Registry client presenting `creds`. */
export function registryClient(address: string, creds: Credentials = {}, extra: Partial<grpc.ClientOptions> = {}): RegistryClient {
  return new RegistryClient(address, channelCredentials(creds), clientOptions(creds, extra));
}

/** Asserts that `p` fails with gRPC status `code` and a message matching `re`; returns the message. */
export async function rejectsWith(p: Promise<unknown>, code: grpc.status, re?: RegExp): Promise<string> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    assert.equal(grpc.status[e.code], grpc.status[code], `expected ${grpc.status[code]}, got ${grpc.status[e.code]}: ${e.details}`);
    if (re) assert.match(e.details, re);
    return e.details;
  }
  assert.fail(`expected ${grpc.status[code]}, but the call succeeded`);
}

/** Polls `fn` until it returns a truthy value (returned) or `timeoutMs` passes (fails naming `what`). */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 8000, everyMs = 50): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Items of a server stream as they arrive, and a way to cancel it. */
export interface Collected<T> {
  items: T[];
  /** Resolves when the stream ends: with undefined after a clean end, or its error. */
  ended: Promise<grpc.ServiceError | undefined>;
  cancel(): void;
}

/** Collects a server stream's items. */
export function collect<T>(stream: grpc.ClientReadableStream<T>): Collected<T> {
  const items: T[] = [];
  stream.on('data', (d: T) => items.push(d));
  const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
    stream.on('error', (e: grpc.ServiceError) => resolve(e));
    stream.on('end', () => resolve(undefined));
  });
  return { items, ended, cancel: () => stream.cancel() };
}

/** grpc.health.v1.Health/Check for `service` ('' = the server): "SERVING", "NOT_SERVING", ... */
export async function healthCheck(address: string, creds: grpc.ChannelCredentials, service = ''): Promise<string> {
  const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
  const client = new Client(address, creds) as unknown as grpc.Client & {
    check(req: { service: string }, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
  };
  try {
    return await new Promise((resolve, reject) =>
      client.check({ service }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r.status))),
    );
  } finally {
    client.close();
  }
}

/** True when the controller behind `client` serves the API (it leads); a standby refuses. */
export async function servesAsLeader(client: ControllerClient): Promise<boolean> {
  try {
    await unary(client, 'listSessions', { pageSize: 0, pageToken: '' });
    return true;
  } catch {
    return false;
  }
}
