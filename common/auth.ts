// Cluster credentials: bearer tokens in call metadata and mutual TLS, for the servers
// (controller, agents) and for their clients.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { RpcError, type Authorizer } from './grpc-server.js';

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

// Hashing first gives equal-length inputs, so the comparison time says nothing about the token.
function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * An Authorizer accepting calls whose metadata holds `authorization: Bearer <token>` for one of
 * `tokens` (compared in constant time). Missing or malformed metadata -> UNAUTHENTICATED; a
 * token that is not accepted -> PERMISSION_DENIED.
 */
export function tokenAuthorizer(tokens: string | readonly string[]): Authorizer {
  const accepted = (typeof tokens === 'string' ? [tokens] : [...tokens]).map((t) => {
    if (t.length === 0) throw new Error('tokenAuthorizer: empty token');
    return digest(t);
  });
  if (accepted.length === 0) throw new Error('tokenAuthorizer: no tokens');
  return (metadata) => {
    const values = metadata.get(AUTH_METADATA_KEY);
    if (values.length === 0) {
      throw new RpcError(grpc.status.UNAUTHENTICATED, 'missing "authorization: Bearer <token>" metadata');
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(String(values[0]));
    if (!m) {
      throw new RpcError(grpc.status.UNAUTHENTICATED, 'malformed authorization metadata: expected "Bearer <token>"');
    }
    const presented = digest(m[1]);
    let ok = false;
    // No early exit: every accepted token is compared.
    for (const a of accepted) ok = timingSafeEqual(a, presented) || ok;
    if (!ok) throw new RpcError(grpc.status.PERMISSION_DENIED, 'token not accepted');
  };
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
 * What a process presents to (and demands from) the other members of the cluster:
 * a bearer token, mutual TLS, both, or neither (plain text, no auth).
 */
export interface ClusterCredentials {
  token?: string;
  tls?: TlsMaterial;
}

/** Server credentials for `creds`: mutual TLS when it has TLS material, else insecure. */
export function serverCredentials(creds: ClusterCredentials): grpc.ServerCredentials {
  return creds.tls ? serverTlsCredentials(creds.tls) : grpc.ServerCredentials.createInsecure();
}

/** The Authorizer for `creds`: its token, or none when it has no token. */
export function serverAuthorizer(creds: ClusterCredentials): Authorizer | undefined {
  return creds.token ? tokenAuthorizer(creds.token) : undefined;
}

/** Channel credentials for `creds`: mutual TLS when it has TLS material, else insecure. */
export function channelCredentials(creds: ClusterCredentials): grpc.ChannelCredentials {
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
export function clientOptions(creds: ClusterCredentials, extra: Partial<grpc.ClientOptions> = {}): Partial<grpc.ClientOptions> {
  const interceptors = [...(extra.interceptors ?? [])];
  if (creds.token) interceptors.push(tokenInterceptor(creds.token));
  // Controller and agents restart as ordinary events: grpc-js's default backoff (1 s growing
  // to 120 s) would keep a peer away far longer than its lease after an outage.
  return { ...RECONNECT_BACKOFF, ...extra, interceptors };
}
