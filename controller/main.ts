// `damon-fleet controller`: runs the controller until SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { readTokenFile } from '../common/auth.js';
import { createLogger, quoted } from '../common/log.js';
import { MAX_NATS_REPLICAS, checkReplicas, type StreamLimits } from '../common/nats.js';
import { CREDENTIAL_OPTIONS, parseDaemonCredentials } from '../common/credential-options.js';
import { startController, type ControllerOptions } from './controller.js';
import type { ActionLimits } from './action-limits.js';
import { runServiceMain } from '../common/service-main.js';
import { OptionError as UsageError, parseBytes, parseDurationMs } from '../common/cli-values.js';
import { SUGGESTED_METRICS_PORTS, parseMetricsAddress } from '../common/metrics-server.js';

export const USAGE = `usage: damon-fleet controller [options]

  --listen HOST:PORT          gRPC address (default 127.0.0.1:7100)
  --advertise HOST:PORT       the address standby controllers name to agents and clients
                              when this one leads (default: the listen address; the
                              host name with the port when listening on 0.0.0.0 or ::)
  --leader-lease DURATION     leadership among controllers on one NATS (default 3s): one
                              leads, the others stand by and take over this long after
                              the leader's last renewal
  --nats URL[,URL...]         NATS servers with JetStream (default nats://127.0.0.1:4222)
  --identities FILE           who may call, by token: operators, readers, agents (with
                              the addresses each may register); re-read when it changes.
                              Written by \`damon-fleet credentials\`
  --agent-key-file FILE       the key that the token shown to each agent derives from
  --nats-nkey FILE            the controller's NATS nkey seed (controller/nats.nk of
                              damon-fleet credentials)
  --nats-ca FILE              TLS to NATS: the CA of the server's certificate
  --nats-cert FILE --nats-key FILE
                              TLS to NATS: the controller's client certificate and key
  --tls-cert FILE --tls-key FILE --tls-ca FILE
                              mutual TLS: this server's certificate and key, and the CA
                              that signs agents' and clients' certificates (also used
                              to call agents); a certificate names its identity with a
                              URI SAN spiffe://damon-fleet/<role>[/<name>]
  --insecure                  no authentication at all; only with a loopback --listen
  --agent-tls-name NAME       verify agents' certificates against NAME instead of
                              their address' host
  --lease-ttl DURATION        agent lease (default 5s)
  --heartbeat DURATION        heartbeat interval agents are told (default 1s)
  --records-max-age DURATION  DAMON_RECORDS retention by age (default 24h)
  --records-max-bytes BYTES   DAMON_RECORDS retention by size (default 1G)
  --events-max-age DURATION   DAMON_EVENTS retention by age (default 7d)
  --events-max-bytes BYTES    DAMON_EVENTS retention by size (default 64M)
  --actions-max-age DURATION  DAMON_ACTIONS (action events) retention by age (default 7d)
  --actions-max-bytes BYTES   DAMON_ACTIONS retention by size (default 256M)
  --dedup-window DURATION     Nats-Msg-Id de-duplication window of the streams (default 2m)
  --action-rate N/BURST       RequestAction: actions a second each caller identity may
                              request, and its burst (default 20/40)
  --target-action-rate N/BURST
                              RequestAction: actions a second on one target, whoever
                              asks, and its burst (default 5/10)
  --nats-replicas N           copies JetStream keeps of both streams and the session
                              bucket, 1 to 5 (default 1: a single nats-server); 3 on a
                              cluster of three servers survives the loss of any one
  --metrics HOST:PORT|PORT    serve Prometheus metrics at http://HOST:PORT/metrics (off
                              by default; a bare PORT binds 127.0.0.1; suggested
                              ${SUGGESTED_METRICS_PORTS.controller}). No credential: bind loopback, or protect it
                              (docs/metrics.md)

Callers present "authorization: Bearer <token>" or a client certificate. Health and
reflection answer without a credential; every damon.v1 method demands one.
DURATION: 500ms, 10s, 5m, 24h, 7d. BYTES: 1048576, 512K, 64M, 1G.`;

function parseControllerOptions(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      listen: { type: 'string', default: '127.0.0.1:7100' },
      advertise: { type: 'string' },
      'leader-lease': { type: 'string', default: '3s' },
      ...CREDENTIAL_OPTIONS,
      'agent-key-file': { type: 'string' },
      'agent-tls-name': { type: 'string' },
      'lease-ttl': { type: 'string', default: '5s' },
      heartbeat: { type: 'string', default: '1s' },
      'records-max-age': { type: 'string' },
      'records-max-bytes': { type: 'string' },
      'events-max-age': { type: 'string' },
      'events-max-bytes': { type: 'string' },
      'actions-max-age': { type: 'string' },
      'actions-max-bytes': { type: 'string' },
      'action-rate': { type: 'string' },
      'target-action-rate': { type: 'string' },
      'dedup-window': { type: 'string' },
      'nats-replicas': { type: 'string', default: '1' },
      metrics: { type: 'string' },
    },
  });
}

/** Parses the command line into controller options; throws UsageError naming the bad option. */
export function parseControllerArgs(argv: string[]): ControllerOptions {
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
  if (values.advertise !== undefined && !/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(values.advertise)) {
    throw new UsageError(`--advertise ${values.advertise}: expected HOST:PORT`);
  }
  const agentKey = values['agent-key-file'] ? readTokenFile(values['agent-key-file']) : undefined;
  const credentials = parseDaemonCredentials(values, values.listen!, { option: '--agent-key-file', given: agentKey !== undefined });
  const dedup = values['dedup-window'] ? parseDurationMs('--dedup-window', values['dedup-window']) : undefined;
  const limits = (which: 'records' | 'events' | 'actions'): Partial<StreamLimits> => {
    const l: Partial<StreamLimits> = {};
    const age = values[`${which}-max-age`];
    const bytes = values[`${which}-max-bytes`];
    if (age) l.maxAgeMs = parseDurationMs(`--${which}-max-age`, age);
    if (bytes) l.maxBytes = parseBytes(`--${which}-max-bytes`, bytes);
    if (dedup) l.duplicateWindowMs = dedup;
    return l;
  };
  const rate = (option: string, text: string): [number, number] => {
    const m = /^(\d+(?:\.\d+)?)\/(\d+)$/.exec(text);
    if (!m || !(Number(m[1]) > 0) || Number(m[2]) < 1) throw new UsageError(`${option} ${quoted(text)}: expected RATE/BURST, e.g. 20/40 (a positive rate, a burst of at least 1)`);
    return [Number(m[1]), Number(m[2])];
  };
  const actionLimits = (caller?: string, target?: string): Partial<ActionLimits> => {
    const l: Partial<ActionLimits> = {};
    if (caller) [l.callerPerS, l.callerBurst] = rate('--action-rate', caller);
    if (target) [l.targetPerS, l.targetBurst] = rate('--target-action-rate', target);
    return l;
  };
  const replicasText = values['nats-replicas']!;
  if (!/^\d{1,2}$/.test(replicasText)) throw new UsageError(`--nats-replicas ${quoted(replicasText)}: expected an integer from 1 to ${MAX_NATS_REPLICAS}`);
  let replicas: number;
  try {
    replicas = checkReplicas(Number(replicasText), '--nats-replicas');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    listen: values.listen!,
    ...credentials,
    agentKey,
    agentTlsServerName: values['agent-tls-name'],
    advertise: values.advertise,
    leaderLeaseMs: parseDurationMs('--leader-lease', values['leader-lease']!),
    leaseTtlMs: parseDurationMs('--lease-ttl', values['lease-ttl']!),
    heartbeatIntervalMs: parseDurationMs('--heartbeat', values.heartbeat!),
    streams: { records: limits('records'), events: limits('events'), actions: limits('actions'), replicas },
    actionLimits: actionLimits(values['action-rate'], values['target-action-rate']),
    metrics: values.metrics === undefined ? undefined : parseMetricsAddress(values.metrics),
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
