// The options every fleet command shares: where the controllers are and what to present to
// them, each also from an environment variable. Credentials come from files only (a token
// on a command line shows in `ps` and in shell history), read as the daemons read theirs.
import { readTls, readTokenFile, type Credentials } from '../common/auth.js';
import { parseDurationMs } from '../common/cli-values.js';
import { CREDENTIAL_OPTIONS } from '../common/credential-options.js';
import { errorMessage } from '../common/log.js';
import { splitHostPort } from '../common/trust.js';
import { UsageError } from './exit-codes.js';

/** The controller's own default --listen: where `npm run up` and a bare `controller` serve. */
export const DEFAULT_CONTROLLER = '127.0.0.1:7100';
export const DEFAULT_TIMEOUT = '10s';

/** Environment variables standing in for the options of the same name. */
export const ENV = {
  controller: 'DAMON_FLEET_CONTROLLER',
  'token-file': 'DAMON_FLEET_TOKEN_FILE',
  'tls-cert': 'DAMON_FLEET_TLS_CERT',
  'tls-key': 'DAMON_FLEET_TLS_KEY',
  'tls-ca': 'DAMON_FLEET_TLS_CA',
  'controller-tls-name': 'DAMON_FLEET_CONTROLLER_TLS_NAME',
} as const;

/** parseArgs specs of the shared options. */
export const CONNECTION_OPTIONS = {
  controller: { type: 'string' },
  'token-file': { type: 'string' },
  'tls-cert': CREDENTIAL_OPTIONS['tls-cert'],
  'tls-key': CREDENTIAL_OPTIONS['tls-key'],
  'tls-ca': CREDENTIAL_OPTIONS['tls-ca'],
  'controller-tls-name': { type: 'string' },
  insecure: CREDENTIAL_OPTIONS.insecure,
  timeout: { type: 'string', default: DEFAULT_TIMEOUT },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export const CONNECTION_USAGE = `connection (each also from its environment variable):
  --controller HOST:PORT[,HOST:PORT...]   ${ENV.controller}
                              the controllers' gRPC addresses (default ${DEFAULT_CONTROLLER}); with
                              several (one leads, the others stand by) the leader is found
  --token-file FILE           ${ENV['token-file']}
                              a bearer token (operator/token or readers/<name>/token of
                              \`damon-fleet credentials\`); never give a token itself
  --tls-cert FILE --tls-key FILE --tls-ca FILE
                              ${ENV['tls-cert']}, ${ENV['tls-key']}, ${ENV['tls-ca']}
                              mutual TLS: this client's certificate (URI SAN
                              spiffe://damon-fleet/operator or .../reader/<name>), its key,
                              and the CA of the controller's certificate
  --controller-tls-name NAME  ${ENV['controller-tls-name']}
                              verify the controller's certificate against NAME
  --insecure                  call without a credential (a controller run with --insecure)
  --timeout DURATION          per call (default ${DEFAULT_TIMEOUT}); 500ms, 10s, 1m
  --json                      the answer as JSON on stdout (the API's proto3 JSON mapping;
                              fields at their default are left out); errors as one JSON
                              line on stderr`;

/** What parseArgs gives for CONNECTION_OPTIONS. */
export interface ConnectionValues {
  controller?: string;
  'token-file'?: string;
  'tls-cert'?: string;
  'tls-key'?: string;
  'tls-ca'?: string;
  'controller-tls-name'?: string;
  insecure?: boolean;
  timeout?: string;
  json?: boolean;
}

export interface Connection {
  /** The controllers' addresses, in the order given. */
  controllers: string[];
  credentials: Credentials;
  /** Verify the controller's certificate against this name (TLS only). */
  tlsName?: string;
  timeoutMs: number;
  json: boolean;
}

type Env = Readonly<Record<string, string | undefined>>;

/** A flag given on the command line wins over its environment variable. */
function valueOf(values: ConnectionValues, name: keyof typeof ENV, env: Env): string | undefined {
  const v = values[name];
  if (v !== undefined) return v;
  const e = env[ENV[name]];
  return e === undefined || e === '' ? undefined : e;
}

/** Checks the shared options; throws UsageError naming the option (or variable) at fault. */
export function parseConnection(values: ConnectionValues, env: Env = process.env): Connection {
  const list = valueOf(values, 'controller', env) ?? DEFAULT_CONTROLLER;
  const controllers = list.split(',').map((a) => a.trim()).filter(Boolean);
  if (controllers.length === 0) throw new UsageError('--controller: at least one HOST:PORT');
  if (new Set(controllers).size !== controllers.length) throw new UsageError(`--controller ${list}: an address is given twice`);
  try {
    for (const c of controllers) splitHostPort(c, '--controller');
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  const tokenFile = valueOf(values, 'token-file', env);
  const tlsFiles = { cert: valueOf(values, 'tls-cert', env), key: valueOf(values, 'tls-key', env), ca: valueOf(values, 'tls-ca', env) };
  const tlsGiven = Object.values(tlsFiles).filter(Boolean).length;
  if (tlsGiven !== 0 && tlsGiven !== 3) throw new UsageError('--tls-cert, --tls-key and --tls-ca go together');
  const insecure = values.insecure ?? false;
  if (insecure && (tokenFile || tlsGiven)) throw new UsageError('--insecure contradicts the credential given: drop one or the other');
  if (!insecure && !tokenFile && !tlsGiven) {
    throw new UsageError(
      `no credential: give --token-file FILE (or ${ENV['token-file']}), or --tls-cert/--tls-key/--tls-ca; ` +
        '--insecure calls a controller that demands none',
    );
  }
  const tlsName = valueOf(values, 'controller-tls-name', env);
  if (tlsName && !tlsGiven) throw new UsageError('--controller-tls-name needs --tls-cert, --tls-key and --tls-ca');
  const credentials: Credentials = {};
  try {
    if (tokenFile) credentials.token = readTokenFile(tokenFile);
    if (tlsGiven) credentials.tls = readTls(tlsFiles as { cert: string; key: string; ca: string });
    const timeoutMs = parseDurationMs('--timeout', values.timeout ?? DEFAULT_TIMEOUT);
    return { controllers, credentials, tlsName, timeoutMs, json: values.json ?? false };
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}
