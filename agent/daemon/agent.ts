// The agent daemon, assembled: one per host. It serves damon.v1.Agent to its controller
// (plus health and reflection), runs the sessions the controller applies, publishes
// their records to NATS, and registers and heartbeats with the controller's Registry.
// Neither NATS nor the controller has to be up for it to start: it retries both in the
// background, and monitoring goes on while either is away.
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import type * as grpc from '@grpc/grpc-js';
import type { NatsConnection } from '@nats-io/transport-node';
import { serverCredentials, type TlsMaterial } from '../../common/auth.js';
import { WatchedIdentities, accessAuthorizer, type IdentityTable } from '../../common/grpc-access.js';
import {
  SERVICE_NAMES,
  bindServer,
  createServer,
  implement,
  shutdownServer,
} from '../../common/grpc-server.js';
import { NatsAuthError, checkNatsUrls, connectNats, isNatsAuthRefusal, jetStream, type NatsTlsFiles } from '../../common/nats.js';
import { readNkeySeed } from '../../common/nats-access.js';
import { HOST_RE } from '../../common/subjects.js';
import { AgentService, type GetStateResponse } from '../../gen/damon/v1/damon.js';
import { agentHandlers } from './agent-service.js';
import { EpochFence } from './epoch-fence.js';
import { createLogger, errorMessage, type Logger } from '../../common/log.js';
import { probeHostOperations, type HostOperations } from './ops-select.js';
import { RecordPublisher, type PublisherStats } from './publisher.js';
import { RecordSpool } from './spool.js';
import { SPOOL_DIR_NAME } from '../../common/session-schema.js';
import { Registration } from './registration.js';
import { observedDigest } from '../../common/observed-digest.js';
import { SessionManager } from './sessions.js';
import { checkTrust, isWildcardHost, splitHostPort } from '../../common/trust.js';
import { startMetricsServer, type MetricsServer } from '../../common/metrics-server.js';
import { DamonStatReporter } from './damon-stat-reporter.js';
import { AgentMetrics } from './metrics.js';
import { ActionRunner, type MadviseOps } from './action-runner.js';

export const DEFAULT_LISTEN = '127.0.0.1:7101';
export const DEFAULT_DATA_DIR = '/var/lib/damon-fleet';

export interface AgentOptions {
  /** This host's name, as sessions' targets name it (RFC 1123). Default: os.hostname(). */
  host?: string;
  /** Where the Agent service listens ("HOST:PORT"; port 0 picks one). Default 127.0.0.1:7101. */
  listen?: string;
  /** The address the controller dials; default the listen address (the host name for a wildcard). */
  advertise?: string;
  /**
   * The controllers' gRPC addresses (one leads, the others stand by; the agent finds the
   * leader). Without one the agent does not register (tests, manual use).
   */
  controller?: string | readonly string[];
  /** NATS server URL(s). */
  nats: string | string[];
  /** This host's NATS nkey seed file (DIR/agents/<host>/nats.nk of damon-fleet credentials). */
  natsNkeyFile?: string;
  /** TLS to NATS. */
  natsTls?: NatsTlsFiles;
  /** Result files are confined here. Created (0750) when missing. */
  dataDir?: string;
  /** This agent's own token, presented to the controller's Registry. */
  token?: string;
  /**
   * Who may call this agent, by token: an identities file (re-read when it changes) or a
   * table. Only the controller's identity is obeyed (grpc-access.ts).
   */
  identities?: string | IdentityTable;
  /**
   * Mutual TLS: this agent's certificate (served, and presented to the controller) and the
   * CA of the controller's; callers' certificates name them (spiffe://damon-fleet/controller).
   */
  tls?: TlsMaterial;
  /** With mutual TLS: the name to verify the controller's certificate against, if not its address. */
  controllerTlsName?: string;
  /** No authentication, on a loopback address only. */
  insecure?: boolean;
  /** Bytes of records the spool (DATA_DIR/.spool) holds while NATS does not accept them (default 64 MiB). */
  spoolMaxBytes?: number;
  /** How often target processes are checked for exit (default 200 ms). */
  processPollMs?: number;
  /** Heartbeat interval until the controller names one (default 2000 ms). */
  defaultHeartbeatMs?: number;
  /** Where GET /metrics (Prometheus) is served; off when absent (docs/metrics.md). */
  metrics?: { host: string; port: number };
  /** How often DAMON_STAT summaries are computed and published (default 5000 ms, as the kernel's module). */
  damonStatRefreshMs?: number;
  /** Overrides the host probe (tests). */
  hostOperations?: HostOperations;
  /** Overrides process_madvise (tests). */
  madvise?: MadviseOps;
  log?: Logger;
}

export interface AgentHandle {
  readonly host: string;
  readonly instanceId: string;
  /** The bound listen address ("127.0.0.1:PORT"). */
  readonly address: string;
  readonly advertise: string;
  readonly port: number;
  readonly dataDir: string;
  /** The bound metrics address ("127.0.0.1:PORT"), when --metrics was given. */
  readonly metricsAddress: string | undefined;
  state(): GetStateResponse;
  publisherStats(): PublisherStats;
  /** True once the controller accepted this instance. */
  registered(): boolean;
  /** True while the agent is connected to NATS. */
  natsConnected(): boolean;
  /** Rejects when the agent cannot go on: NATS refused its credential. */
  readonly fatal: Promise<never>;
  stop(): Promise<void>;
}

function checkHost(host: string): string {
  if (!HOST_RE.test(host)) {
    throw new Error(`--host "${host}": not a valid host name (letters, digits, '-', dots between labels)`);
  }
  return host;
}

export async function startAgent(opts: AgentOptions): Promise<AgentHandle> {
  const log = opts.log ?? createLogger('agent');
  const host = checkHost(opts.host ?? hostname());
  const listen = opts.listen ?? DEFAULT_LISTEN;
  checkTrust(
    listen,
    { identities: opts.identities !== undefined, tls: opts.tls !== undefined, ownCredential: opts.token !== undefined, insecure: opts.insecure ?? false },
    { accept: '--identities FILE', present: '--token-file FILE' },
  );
  // Bad NATS settings fail the start, not the background connection.
  checkNatsUrls(opts.nats);
  if (opts.natsNkeyFile) readNkeySeed(opts.natsNkeyFile);
  const dataDir = opts.dataDir ?? DEFAULT_DATA_DIR;
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  } catch (err) {
    throw new Error(`--data-dir ${dataDir}: ${errorMessage(err)}`);
  }
  // Records wait on disk until acknowledged: a restart publishes what an earlier run left.
  const spool = RecordSpool.open(join(dataDir, SPOOL_DIR_NAME), { maxBytes: opts.spoolMaxBytes, log: log.child('records') });
  const callers = typeof opts.identities === 'string' ? new WatchedIdentities(opts.identities, log) : opts.identities;
  const closeCallers = () => {
    if (callers instanceof WatchedIdentities) callers.close();
  };

  const instanceId = randomUUID();
  const hostOps = opts.hostOperations ?? probeHostOperations();
  log.info(
    `agent ${host} (instance ${instanceId}) starting: operations ${hostOps.operations.join(', ')}` +
      (hostOps.unavailable.length ? `; unavailable: ${hostOps.unavailable.join('; ')}` : ''),
  );

  const publisher = new RecordPublisher(undefined, { spool, log: log.child('records') });
  const damonStat = new DamonStatReporter({
    host,
    instanceId,
    log: log.child('damon_stat'),
    refreshMs: opts.damonStatRefreshMs,
    schemeStats: (id) => sessions.running().find((r) => r.spec.sessionId === id)?.schemeStats() ?? [],
  });
  let metrics: AgentMetrics | undefined;
  let registration: Registration | undefined;
  const sessions = new SessionManager({
    host,
    dataDir,
    hostOps,
    publisher,
    instanceId,
    onChange: () => registration?.heartbeatSoon(),
    log,
    processPollMs: opts.processPollMs,
    observer: {
      record: (id, rec, aggregationUs) => damonStat.record(id, rec, aggregationUs),
      targetEnded: (id, pid) => damonStat.targetEnded(id, pid),
      published: (seconds) => metrics?.observePublish(seconds),
    },
  });
  damonStat.start();
  const identity = { host, instanceId, operations: hostOps.operations, unavailable: hostOps.unavailable };
  const fence = new EpochFence(log);
  const actions = new ActionRunner({ host, instanceId, observed: () => sessions.observed(), log: log.child('actions'), madvise: opts.madvise });

  // NATS in the background: records queue (bounded) until it is there. A refused credential
  // is fatal: no retry can fix it, and an agent silently holding records helps nobody.
  let nc: NatsConnection | undefined;
  let natsUp = false;
  let stopping = false;
  let failFatally: (err: Error) => void = () => {};
  const fatal = new Promise<never>((_, reject) => {
    failFatally = reject;
  });
  fatal.catch(() => undefined); // observed by whoever awaits it (main); not an unhandled rejection
  const natsReady = (async () => {
    let warned = false;
    while (!stopping) {
      try {
        const conn = await connectNats({
          servers: opts.nats,
          name: `damon-fleet agent ${host}`,
          nkeyFile: opts.natsNkeyFile,
          tls: opts.natsTls,
          log,
        });
        if (stopping) {
          await conn.close();
          return;
        }
        nc = conn;
        natsUp = true;
        void (async () => {
          for await (const st of conn.status()) {
            if (st.type === 'disconnect') natsUp = false;
            else if (st.type === 'reconnect') natsUp = true;
          }
        })();
        void conn.closed().then((err) => {
          natsUp = false;
          // The server stopped accepting the credential (removed, then reloaded).
          if (!stopping && isNatsAuthRefusal(err)) failFatally(new NatsAuthError(opts.natsNkeyFile, { cause: err }));
        });
        publisher.setSink(jetStream(conn));
        actions.setSink(jetStream(conn));
        damonStat.setSink(conn);
        return;
      } catch (err) {
        if (isNatsAuthRefusal(err)) {
          failFatally(err as Error);
          return;
        }
        if (!warned) log.warn(`nats: cannot connect: ${errorMessage(err)}; retrying`);
        warned = true;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  })();

  const natsSlow = setTimeout(() => {
    if (!nc && !stopping) {
      log.warn(
        `nats: no connection to ${[opts.nats].flat().join(', ')} yet; still trying ` +
          `(records are spooled, up to ${spool.maxBytes} bytes, then the oldest dropped)`,
      );
    }
  }, 5000);
  natsSlow.unref();

  // connectNats cannot be cancelled while it waits for a first connection: when NATS never
  // came up, stop without it (the loop above closes a connection that comes too late).
  const settleNats = async () => {
    await Promise.race([natsReady.catch(() => undefined), new Promise((r) => setTimeout(r, 200).unref())]);
    if (nc) await nc.close().catch(() => undefined);
  };

  const { server } = createServer({
    services: [
      {
        name: SERVICE_NAMES.agent,
        definition: AgentService,
        implementation: implement(AgentService, agentHandlers(sessions, identity, fence, actions), {
          authorize: opts.insecure ? undefined : accessAuthorizer({ identities: callers, tls: opts.tls !== undefined }),
          log,
        }),
      },
    ],
  });
  // A start that fails after this point releases what it took.
  const abortStart = async (err: unknown): Promise<never> => {
    closeCallers();
    stopping = true;
    server.forceShutdown();
    damonStat.stop();
    await publisher.close(0);
    await settleNats();
    throw err;
  };
  const port = await bindServer(server, listen, serverCredentials({ tls: opts.tls })).catch(abortStart);
  let metricsServer: MetricsServer | undefined;
  if (opts.metrics) {
    metrics = new AgentMetrics({
      host,
      instanceId,
      sessions: () => sessions.running(),
      publisher: () => publisher.stats(),
      damonStat: () => damonStat.current(),
      natsConnected: () => natsUp,
      registered: () => registration?.isRegistered ?? false,
    });
    metricsServer = await startMetricsServer(metrics.registry, opts.metrics, log).catch(abortStart);
  }
  const bound = splitHostPort(listen);
  const address = `${bound.host.includes(':') ? `[${bound.host}]` : bound.host}:${port}`;
  const advertise = opts.advertise ?? (isWildcardHost(bound.host) ? `${host}:${port}` : address);
  const auth = opts.insecure
    ? 'NO AUTHENTICATION (--insecure, loopback only)'
    : [opts.tls ? 'mutual TLS' : '', callers ? 'the controller\'s token' : ''].filter(Boolean).join(' or ');
  log.info(`serving damon.v1.Agent on ${address}, auth: ${auth}; data directory ${dataDir}`);

  const controllers = [opts.controller ?? []].flat();
  if (controllers.length > 0) {
    const extra: Partial<grpc.ClientOptions> = opts.controllerTlsName
      ? { 'grpc.ssl_target_name_override': opts.controllerTlsName, 'grpc.default_authority': opts.controllerTlsName }
      : {};
    registration = new Registration({
      controllers,
      onEpoch: (epoch) => fence.observe(epoch),
      credentials: { token: opts.token, tls: opts.tls },
      clientOptions: extra,
      registration: { host, address: advertise, operations: hostOps.operations, unavailable: hostOps.unavailable, instanceId },
      observed: () => sessions.observed(),
      // The controller names sessions it does not want here (deleted or turned off while
      // this agent could not be reached): stop them without waiting to be called.
      stopUnwanted: (ids) => {
        for (const id of ids) {
          log.info(`session ${id}: the controller does not want it on this host; stopping`);
          sessions.stop(id).catch((err: unknown) => log.warn(`session ${id}: stopping failed: ${errorMessage(err)}`));
        }
      },
      log: log.child('registry'),
      defaultHeartbeatMs: opts.defaultHeartbeatMs,
    });
    registration.start();
  } else {
    log.warn('no --controller: not registering (sessions only through direct ApplySession calls)');
  }

  let stopped: Promise<void> | undefined;
  return {
    host,
    instanceId,
    address,
    advertise,
    port,
    dataDir,
    metricsAddress: metricsServer?.address,
    state: () => {
      const all = sessions.observed();
      return { ...identity, sessions: all, nextPageToken: '', stateDigest: observedDigest(all) };
    },
    publisherStats: () => publisher.stats(),
    registered: () => registration?.isRegistered ?? false,
    natsConnected: () => natsUp,
    fatal,
    stop() {
      stopped ??= (async () => {
        log.info('stopping');
        stopping = true;
        await registration?.stop();
        await sessions.stopAll();
        damonStat.stop();
        await metricsServer?.close();
        await shutdownServer(server, 1000);
        closeCallers();
        await publisher.close(2000);
        await settleNats();
        const s = publisher.stats();
        log.info(`stopped (${s.published} records published, ${s.dropped} dropped)`);
      })();
      return stopped;
    },
  };
}
