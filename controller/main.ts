// `damon-fleet controller`: runs the controller until SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { readTls, readTokenFile, type ClusterCredentials } from '../common/auth.js';
import { createLogger } from '../common/log.js';
import { checkNatsUrls, natsTlsOption, type StreamLimits } from '../common/nats.js';
import { readNkeySeed } from '../common/nats-access.js';
import { startController, type ControllerOptions } from './controller.js';
import { runServiceMain } from '../common/service-main.js';
import { OptionError as UsageError, parseBytes, parseDurationMs } from '../common/cli-values.js';

export const USAGE = `usage: damon-fleet controller [options]

  --listen HOST:PORT          gRPC address (default 127.0.0.1:7100)
  --nats URL[,URL...]         NATS servers with JetStream (default nats://127.0.0.1:4222)
  --nats-nkey FILE            the controller's NATS nkey seed (controller/nats.nk of
                              damon-fleet credentials)
  --nats-ca FILE              TLS to NATS: the CA of the server's certificate
  --nats-cert FILE --nats-key FILE
                              TLS to NATS: the controller's client certificate and key
  --token-file FILE           cluster token: agents and clients must present it
                              ("authorization: Bearer <token>"); or DAMON_FLEET_TOKEN
  --client-token-file FILE    a separate token for Controller-service clients
  --tls-cert FILE --tls-key FILE --tls-ca FILE
                              mutual TLS: this server's certificate and key, and the CA
                              that signs agents' and clients' certificates (also used
                              to call agents)
  --agent-tls-name NAME       verify agents' certificates against NAME instead of
                              their address' host
  --lease-ttl DURATION        agent lease (default 5s)
  --heartbeat DURATION        heartbeat interval agents are told (default 1s)
  --records-max-age DURATION  DAMON_RECORDS retention by age (default 24h)
  --records-max-bytes BYTES   DAMON_RECORDS retention by size (default 1G)
  --events-max-age DURATION   DAMON_EVENTS retention by age (default 7d)
  --events-max-bytes BYTES    DAMON_EVENTS retention by size (default 64M)
  --dedup-window DURATION     Nats-Msg-Id de-duplication window of both streams (default 2m)

Without a token or TLS the controller only listens on a loopback address.
DURATION: 500ms, 10s, 5m, 24h, 7d. BYTES: 1048576, 512K, 64M, 1G.`;

function isLoopback(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}

function parseControllerOptions(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      listen: { type: 'string', default: '127.0.0.1:7100' },
      nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
      'nats-nkey': { type: 'string' },
      'nats-ca': { type: 'string' },
      'nats-cert': { type: 'string' },
      'nats-key': { type: 'string' },
      'token-file': { type: 'string' },
      'client-token-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      'agent-tls-name': { type: 'string' },
      'lease-ttl': { type: 'string', default: '5s' },
      heartbeat: { type: 'string', default: '1s' },
      'records-max-age': { type: 'string' },
      'records-max-bytes': { type: 'string' },
      'events-max-age': { type: 'string' },
      'events-max-bytes': { type: 'string' },
      'dedup-window': { type: 'string' },
    },
  });
}

/** Parses the command line into controller options; throws UsageError naming the bad option. */
export function parseControllerArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ControllerOptions {
  let parsed;
  try {
    parsed = parseControllerOptions(argv);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  if (!/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/.test(values.listen!)) {
    throw new UsageError(`--listen ${values.listen}: expected HOST:PORT`);
  }
  const credentials: ClusterCredentials = {};
  if (values['token-file']) credentials.token = readTokenFile(values['token-file']);
  else if (env.DAMON_FLEET_TOKEN) credentials.token = env.DAMON_FLEET_TOKEN.trim();
  const tlsGiven = [values['tls-cert'], values['tls-key'], values['tls-ca']].filter(Boolean).length;
  if (tlsGiven !== 0 && tlsGiven !== 3) throw new UsageError('--tls-cert, --tls-key and --tls-ca go together');
  if (tlsGiven === 3) credentials.tls = readTls({ cert: values['tls-cert']!, key: values['tls-key']!, ca: values['tls-ca']! });
  const clientToken = values['client-token-file'] ? readTokenFile(values['client-token-file']) : undefined;
  if (!credentials.token && !credentials.tls && !isLoopback(values.listen!)) {
    throw new UsageError(
      `refusing to listen on ${values.listen} without credentials: give --token-file (or DAMON_FLEET_TOKEN) ` +
        'or --tls-cert/--tls-key/--tls-ca, or listen on a loopback address',
    );
  }
  const nats = values.nats!.split(',').map((s) => s.trim()).filter(Boolean);
  let natsTls;
  try {
    checkNatsUrls(nats);
    if (values['nats-nkey']) readNkeySeed(values['nats-nkey']);
    natsTls = natsTlsOption(values['nats-ca'], values['nats-cert'], values['nats-key']);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const dedup = values['dedup-window'] ? parseDurationMs('--dedup-window', values['dedup-window']) : undefined;
  const limits = (which: 'records' | 'events'): Partial<StreamLimits> => {
    const l: Partial<StreamLimits> = {};
    const age = values[`${which}-max-age`];
    const bytes = values[`${which}-max-bytes`];
    if (age) l.maxAgeMs = parseDurationMs(`--${which}-max-age`, age);
    if (bytes) l.maxBytes = parseBytes(`--${which}-max-bytes`, bytes);
    if (dedup) l.duplicateWindowMs = dedup;
    return l;
  };
  return {
    listen: values.listen!,
    nats,
    natsNkeyFile: values['nats-nkey'],
    natsTls,
    credentials,
    clientToken,
    agentTlsServerName: values['agent-tls-name'],
    leaseTtlMs: parseDurationMs('--lease-ttl', values['lease-ttl']!),
    heartbeatIntervalMs: parseDurationMs('--heartbeat', values.heartbeat!),
    streams: { records: limits('records'), events: limits('events') },
  };
}

/** Runs the controller until a signal; resolves the exit code. */
export async function main(argv: string[]): Promise<number> {
  const log = createLogger('controller');
  const { code } = await runServiceMain(argv, {
    name: 'controller',
    usage: USAGE,
    parse: (args) => parseControllerArgs(args),
    isUsageError: (err) => err instanceof UsageError,
    log,
    start: (options) => startController({ ...options, log }),
  });
  return code;
}
