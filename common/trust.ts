// When a server (controller or agent) may start. Both serve callers that can read any
// process's memory layout on the fleet's hosts, so each demands a credential from its
// callers: tokens checked against an identities file and/or mutual TLS. Neither is allowed
// only with an explicit --insecure, and then only on a loopback address, where nothing
// off this host can reach it.

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

/** What a server was given to recognise its callers, and to present to its peers. */
export interface TrustConfig {
  /** It checks callers' tokens against an identities file. */
  identities: boolean;
  /** It serves mutual TLS (callers' certificates name them). */
  tls: boolean;
  /** It has a credential of its own for the peers it calls. */
  ownCredential: boolean;
  insecure: boolean;
}

/**
 * Checks that a server may start listening on `listen`; throws TrustError saying what to
 * give otherwise. `need` names the options, for the message.
 */
export function checkTrust(
  listen: string,
  c: TrustConfig,
  need: { accept: string; present: string },
): void {
  const { host } = splitHostPort(listen);
  const any = c.identities || c.tls || c.ownCredential;
  if (c.insecure && any) {
    throw new TrustError('--insecure contradicts the credential options given: drop one or the other');
  }
  if (c.insecure) {
    if (!isLoopbackHost(host)) {
      throw new TrustError(
        `--insecure is allowed on a loopback address only (127.0.0.1, ::1, localhost), not --listen ${listen}: ` +
          "anyone who reaches it could read every process's memory layout",
      );
    }
    return;
  }
  if (!c.identities && !c.tls) {
    throw new TrustError(
      `refusing to start without a way to check callers: give ${need.accept}, or --tls-cert/--tls-key/--tls-ca ` +
        'for mutual TLS; --insecure (no authentication) is allowed on a loopback address only',
    );
  }
  if (!c.ownCredential && !c.tls) {
    throw new TrustError(`refusing to start without a credential to present: give ${need.present}, or --tls-cert/--tls-key/--tls-ca`);
  }
}
