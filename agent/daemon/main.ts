// `damon-fleet agent`: runs one host's agent until SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { hostname } from 'node:os';
import { readTokenFile } from '../../common/auth.js';
import { DEFAULT_DATA_DIR, DEFAULT_LISTEN, startAgent, type AgentOptions } from './agent.js';
import { DEFAULT_SPOOL_MAX_BYTES, MIN_SPOOL_BYTES } from './spool.js';
import { createLogger } from '../../common/log.js';
import { runServiceMain } from '../../common/service-main.js';
import { TrustError, splitHostPort } from '../../common/trust.js';
import { CREDENTIAL_OPTIONS, parseDaemonCredentials } from '../../common/credential-options.js';
import { OptionError as UsageError } from '../../common/cli-values.js';
import { SUGGESTED_METRICS_PORTS, parseMetricsAddress } from '../../common/metrics-server.js';

export { startAgent, type AgentOptions, type AgentHandle } from './agent.js';

export const USAGE = `usage: damon-fleet agent --controller HOST:PORT[,HOST:PORT...] [options]

  --host NAME                 this host's name, as sessions' targets name it
                              (default: the system host name)
  --listen HOST:PORT          where the Agent service listens (default ${DEFAULT_LISTEN})
  --advertise HOST:PORT       the address the controller dials (default: the listen
                              address; NAME:PORT when listening on 0.0.0.0 or ::)
  --controller HOST:PORT[,HOST:PORT...]
                              the controllers' gRPC addresses (required): with several
                              (one leads, the others stand by) the agent finds the leader
  --nats URL[,URL...]         NATS servers with JetStream (default nats://127.0.0.1:4222)
  --nats-nkey FILE            this host's NATS nkey seed (agents/<host>/nats.nk of
                              damon-fleet credentials); refused -> the agent exits
  --nats-ca FILE              TLS to NATS: the CA of the server's certificate
  --nats-cert FILE --nats-key FILE
                              TLS to NATS: this agent's client certificate and key
  --data-dir DIR              result files are written inside it, nowhere else
                              (default ${DEFAULT_DATA_DIR})
  --token-file FILE           this agent's token, presented to the controller (it names
                              this host: the controller accepts it for this host only)
  --identities FILE           who may call this agent: the controller's token for this
                              host (by hash). Both files: \`damon-fleet credentials\`
  --tls-cert FILE --tls-key FILE --tls-ca FILE
                              mutual TLS: this agent's certificate (URI SAN
                              spiffe://damon-fleet/agent/<host>; DNS/IP SANs for the
                              addresses it may register) and key, and the CA that signs
                              the controller's (spiffe://damon-fleet/controller)
  --controller-tls-name NAME  with TLS: verify the controller's certificate against NAME
                              instead of the --controller host
  --insecure                  no authentication at all; only with a loopback --listen
  --spool-max-bytes N         bytes of records kept on disk (DATA_DIR/.spool) while
                              NATS does not accept them; beyond it the oldest are
                              dropped (default ${DEFAULT_SPOOL_MAX_BYTES}, 64 MiB)
  --metrics HOST:PORT|PORT    serve Prometheus metrics at http://HOST:PORT/metrics (off
                              by default; a bare PORT binds 127.0.0.1; suggested
                              ${SUGGESTED_METRICS_PORTS.agent}). No credential: bind loopback, or protect it
                              (docs/metrics.md)

The agent reveals any process's memory layout, so it takes orders only from its
controller: it refuses to start without --identities or TLS unless --insecure is
given, and --insecure works on a loopback address only.`;

/** A bad command line (the one error class of every command's options). */
export { UsageError };

function positiveInt(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) <= 0) throw new UsageError(`${option} ${text}: expected a positive integer`);
  return Number(text);
}

function spoolBytes(text: string | undefined): number | undefined {
  const n = positiveInt('--spool-max-bytes', text);
  if (n !== undefined && (n < MIN_SPOOL_BYTES || !Number.isSafeInteger(n))) {
    throw new UsageError(`--spool-max-bytes ${text}: expected at least ${MIN_SPOOL_BYTES}`);
  }
  return n;
}

/** Parses the command line into agent options; throws UsageError naming the bad option. */
export function parseAgentArgs(argv: string[]): AgentOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        host: { type: 'string' },
        listen: { type: 'string', default: DEFAULT_LISTEN },
        advertise: { type: 'string' },
        controller: { type: 'string' },
        ...CREDENTIAL_OPTIONS,
        'data-dir': { type: 'string', default: DEFAULT_DATA_DIR },
        'token-file': { type: 'string' },
        'controller-tls-name': { type: 'string' },
        'spool-max-bytes': { type: 'string' },
        metrics: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  if (!values.controller) throw new UsageError('--controller HOST:PORT is required');
  const controllers = values.controller.split(',').map((a) => a.trim());
  if (new Set(controllers).size !== controllers.length) throw new UsageError(`--controller ${values.controller}: an address is given twice`);
  try {
    splitHostPort(values.listen!, '--listen');
    for (const c of controllers) splitHostPort(c, '--controller');
    if (values.advertise) splitHostPort(values.advertise, '--advertise');
  } catch (err) {
    throw new UsageError((err as TrustError).message);
  }
  const token = values['token-file'] ? readTokenFile(values['token-file']) : undefined;
  const credentials = parseDaemonCredentials(values, values.listen!, { option: '--token-file', given: token !== undefined });
  if (values['controller-tls-name'] && !credentials.tls) {
    throw new UsageError('--controller-tls-name needs --tls-cert, --tls-key and --tls-ca');
  }
  return {
    host: values.host ?? hostname(),
    listen: values.listen,
    advertise: values.advertise,
    controller: controllers,
    ...credentials,
    dataDir: values['data-dir'],
    token,
    controllerTlsName: values['controller-tls-name'],
    spoolMaxBytes: spoolBytes(values['spool-max-bytes']),
    metrics: values.metrics === undefined ? undefined : parseMetricsAddress(values.metrics),
  };
}

/** Runs the agent until a signal; resolves the exit code. */
export async function main(argv: string[]): Promise<number> {
  const log = createLogger('agent');
  const { code, handle } = await runServiceMain(argv, {
    name: 'agent',
    usage: USAGE,
    parse: (args) => parseAgentArgs(args),
    isUsageError: (err) => err instanceof UsageError,
    log,
    start: (options) => startAgent({ ...options, log }),
  });
  if (!handle && code !== 1) return code;
  // A first connection to NATS that never succeeded cannot be cancelled (connectNats waits
  // for it): do not let its retries hold the process once everything else has stopped, nor
  // after a start that failed (a port taken) while NATS was away.
  setTimeout(() => {
    log.warn('exiting with a NATS connection attempt still pending');
    process.exit(code);
  }, 1000).unref();
  return code;
}
