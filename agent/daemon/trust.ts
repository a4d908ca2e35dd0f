// Who may drive this agent. The agent runs as root and reveals any process's memory
// layout, so it takes orders only from its controller:
//   - mutual TLS when certificates are given (the cluster CA vouches for the caller;
//     --controller-identity narrows it to the controller's certificate name),
//   - a shared cluster token otherwise (or in addition),
//   - neither only with an explicit --insecure, and then only on a loopback address,
//     where nothing off this host can reach it.
// It listens on loopback unless told an address.
import type { ClusterCredentials } from '../../common/auth.js';

export class TrustError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrustError';
  }
}

/** Splits "host:port" / "[v6]:port"; throws naming the option when it is not one. */
export function splitHostPort(address: string, option = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(address);
  if (!m) throw new TrustError(`${option} ${address}: expected HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new TrustError(`${option} ${address}: port out of range`);
  return { host: m[1] ?? m[2], port };
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}

export function isWildcardHost(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::';
}

/**
 * Checks that the agent may start listening on `listen` with `credentials`; throws
 * TrustError saying what to give otherwise.
 */
export function checkTrust(listen: string, credentials: ClusterCredentials, insecure: boolean): void {
  const { host } = splitHostPort(listen);
  const hasCreds = Boolean(credentials.token) || Boolean(credentials.tls);
  if (insecure && hasCreds) {
    throw new TrustError('--insecure contradicts the token / TLS options given: drop one or the other');
  }
  if (!insecure && !hasCreds) {
    throw new TrustError(
      'refusing to start without credentials: give --token-file FILE (or DAMON_FLEET_TOKEN) for the shared ' +
        'cluster token, or --tls-cert/--tls-key/--tls-ca for mutual TLS; --insecure (no authentication) is ' +
        'allowed on a loopback address only',
    );
  }
  if (insecure && !isLoopbackHost(host)) {
    throw new TrustError(
      `--insecure is allowed on a loopback address only (127.0.0.1, ::1, localhost), not --listen ${listen}: ` +
        'anyone who reaches the agent could read every process\'s memory layout',
    );
  }
}
