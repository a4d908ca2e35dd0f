// What a process presents over gRPC: a bearer token in call metadata and/or a mutual-TLS
// certificate, read from files. Who is accepted is grpc-access.ts's concern.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/** Metadata key carrying `Bearer <token>` (gRPC metadata keys are lower case). */
export const AUTH_METADATA_KEY = 'authorization';

/**
 * Reads a token file: its content without surrounding whitespace (a trailing newline is
 * usual). Throws naming the file when it cannot be read or holds no token.
 */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`token file ${path}: ${(err as Error).message}`);
  }
  const token = text.trim();
  if (token.length === 0) throw new Error(`token file ${path}: empty`);
  if (/\s/.test(token)) throw new Error(`token file ${path}: a token must not contain whitespace`);
  return token;
}

/** Metadata with `authorization: Bearer <token>`, for a single call. */
export function tokenMetadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(AUTH_METADATA_KEY, `Bearer ${token}`);
  return md;
}

/**
 * A client interceptor adding `authorization: Bearer <token>` to every call. (grpc-js refuses
 * call credentials on insecure channels, so plain-text deployments with a token need this.)
 */
export function tokenInterceptor(token: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(AUTH_METADATA_KEY, `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/** PEM files of one side of a mutual-TLS connection. */
export interface TlsPaths {
  /** This side's certificate (chain). */
  cert: string;
  /** This side's private key. */
  key: string;
  /** The CA that signs the other side's certificates. */
  ca: string;
}

/** PEM contents of TlsPaths. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

/** Reads the three PEM files; throws naming the file (and the option) that failed. */
export function readTls(paths: TlsPaths): TlsMaterial {
  const read = (what: keyof TlsPaths) => {
    try {
      return readFileSync(paths[what]);
    } catch (err) {
      throw new Error(`tls ${what} file ${paths[what]}: ${(err as Error).message}`);
    }
  };
  return { cert: read('cert'), key: read('key'), ca: read('ca') };
}

/**
 * Server credentials for mutual TLS: presents `cert`/`key` and refuses clients without a
 * certificate signed by `ca`.
 */
export function serverTlsCredentials(tls: TlsMaterial): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/** Client credentials for mutual TLS: verifies the server against `ca` and presents `cert`/`key`. */
export function clientTlsCredentials(tls: TlsMaterial): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
}

/**
 * What a process presents: its own token, its certificate (mutual TLS: the same
 * material serves its server side), both, or neither (plain text, no credential).
 */
export interface Credentials {
  token?: string;
  tls?: TlsMaterial;
}

/** Server credentials for `creds`: mutual TLS when it has TLS material, else insecure. */
export function serverCredentials(creds: Credentials): grpc.ServerCredentials {
  return creds.tls ? serverTlsCredentials(creds.tls) : grpc.ServerCredentials.createInsecure();
}

/** Channel credentials for `creds`: mutual TLS when it has TLS material, else insecure. */
export function channelCredentials(creds: Credentials): grpc.ChannelCredentials {
  return creds.tls ? clientTlsCredentials(creds.tls) : grpc.credentials.createInsecure();
}

/** Reconnect quickly to a peer that comes back: within 2 s, whatever the outage's length. */
export const RECONNECT_BACKOFF: Partial<grpc.ClientOptions> = Object.freeze({
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 2000,
});

/**
 * Client options for `creds`: the token interceptor when it has a token. Extra options
 * (e.g. 'grpc.ssl_target_name_override' when certificates name another host) are merged in.
 */
export function clientOptions(creds: Credentials, extra: Partial<grpc.ClientOptions> = {}): Partial<grpc.ClientOptions> {
  const interceptors = [...(extra.interceptors ?? [])];
  if (creds.token) interceptors.push(tokenInterceptor(creds.token));
  // Controller and agents restart as ordinary events: grpc-js's default backoff (1 s growing
  // to 120 s) would keep a peer away far longer than its lease after an outage.
  return { ...RECONNECT_BACKOFF, ...extra, interceptors };
}
