// Wires the controller together: NATS (streams, session bucket), leadership among the
// controllers on one NATS, the agent registry, the reconcile loop (while leading) and the
// gRPC server (Controller, Registry, health, reflection).
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { serverCredentials, type TlsMaterial } from '../common/auth.js';
import { WatchedIdentities, accessAuthorizer, agentCallToken, type IdentityTable } from '../common/grpc-access.js';
import { checkTrust, isWildcardHost, splitHostPort } from '../common/trust.js';
import { hostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import {
  RpcError,
  SERVICE_NAMES,
  bindServer,
  createServer,
  implement,
  shutdownServer,
} from '../common/grpc-server.js';
import { silentLogger, type BasicLogger as Logger } from '../common/log.js';
import {
  NatsAuthError,
  connectNats,
  ensureStreams,
  isNatsAuthRefusal,
  isNatsUnavailable,
  jetStream,
  replicasRefusal,
  whenJetStreamAnswers,
  type NatsTlsFiles,
  type StreamsOptions,
} from '../common/nats.js';
import { ControllerService, RegistryService, SessionEventKind } from '../gen/damon/v1/damon.js';
import { AgentConnection } from './agent-client.js';
import { controllerHandlers } from './controller-service.js';
import { EventPublisher } from './events.js';
import { KeyedMutex } from './keyed-mutex.js';
import { Leadership, type Role } from './leadership.js';
import { standbyError } from '../common/fencing.js';
import { SessionLifecycle } from './lifecycle.js';
import { Reconciler } from './reconciler.js';
import { AgentRegistry } from './registry.js';
import { registryHandlers } from './registry-service.js';
import { targetHosts } from './session-model.js';
import { SessionStore } from './session-store.js';
import { ControllerMetrics } from './metrics.js';
import { ActionRateLimiter, DEFAULT_ACTION_LIMITS, type ActionLimits } from './action-limits.js';
import { startMetricsServer, type MetricsServer } from '../common/metrics-server.js';

export interface ControllerOptions {
  /** gRPC listen address, "host:port" (port 0 picks a free one). */
  listen: string;
  /**
   * The address standbys name to callers when this controller leads (default: the bound
   * listen address; the host name with the port for a wildcard listen address).
   */
  advertise?: string;
  /** Leader lease among controllers on one NATS (default 3000 ms): a standby takes over this long after the leader's last renewal. */
  leaderLeaseMs?: number;
  /** NATS server URL(s). */
  nats: string | string[];
  /** The controller's NATS nkey seed file (controller/nats.nk of damon-fleet credentials). */
  natsNkeyFile?: string;
  /** TLS to NATS. */
  natsTls?: NatsTlsFiles;
  /**
   * Who may call: identities by token, from an identities file (read again when it
   * changes) or a fixed table (operators, readers, agents; see grpc-access.ts).
   */
  identities?: string | IdentityTable;
  /**
   * Mutual TLS: the server demands client certificates signed by the CA (their URI SANs
   * name identities) and presents its certificate to agents.
   */
  tls?: TlsMaterial;
  /** The key the token presented to each agent derives from (agentCallToken). */
  agentKey?: string;
  /** No authentication at all; on a loopback address only (local trials, tests). */
  insecure?: boolean;
  /** Agent lease (default 5000 ms) and the heartbeat interval agents are told (default 1000 ms). */
  leaseTtlMs?: number;
  heartbeatIntervalMs?: number;
  /** Reconcile pass interval (default: the heartbeat interval). */
  reconcileIntervalMs?: number;
  /** Deadline of each call to an agent (default 5000 ms). */
  agentCallTimeoutMs?: number;
  /** Name to verify agents' certificates against when it differs from their address' host. */
  agentTlsServerName?: string;
  streams?: StreamsOptions;
  /** Bound of each JetStream / KV call (default 5000 ms); beyond it calls fail UNAVAILABLE. */
  natsTimeoutMs?: number;
  /** Where GET /metrics (Prometheus) is served; off when absent (docs/metrics.md). */
  metrics?: { host: string; port: number };
  /** RequestAction's rate limits (default DEFAULT_ACTION_LIMITS; docs/actions.md). */
  actionLimits?: Partial<ActionLimits>;
  log?: Logger;
}

function raise(err: Error): never {
  throw err;
}

// How long a starting controller waits for JetStream to answer (a NATS cluster that
// restarted whole elects its stream leaders first) before it gives up.
const JETSTREAM_START_WAIT_MS = 60_000;
// How long it waits for enough servers to join to hold --nats-replicas copies: long enough
// for nodes started beside it, short enough that a cluster too small is said soon.
const JETSTREAM_PLACEMENT_WAIT_MS = 15_000;

// NATS down or slow: the caller may retry (UNAVAILABLE), rather than an opaque INTERNAL.
function natsUnavailable(err: unknown): RpcError | undefined {
  return isNatsUnavailable(err) ? new RpcError(grpc.status.UNAVAILABLE, `NATS unavailable: ${(err as Error).message}`) : undefined;
}

export interface RunningController {
  /** "host:port" actually bound. */
  address: string;
  port: number;
  /** The address standbys name for this controller. */
  advertise: string;
  /** The bound metrics address, when `metrics` was given. */
  metricsAddress: string | undefined;
  store: SessionStore;
  registry: AgentRegistry;
  /** The reconcile loop of the current (or last) term as leader. */
  readonly reconciler: Reconciler | undefined;
  leadership: Leadership;
  nats: NatsConnection;
  /** Rejects when NATS stops accepting the controller's credential (removed, then reloaded). */
  readonly fatal: Promise<never>;
  /** Graceful stop: the loop, then the server (streams cancelled after a grace), then NATS. */
  stop(): Promise<void>;
}

/** Tells `onChange` when the NATS connection drops (false) and comes back (true), logged. */
function watchNatsHealth(nc: NatsConnection, log: Logger, onChange: (up: boolean) => void): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        onChange(false);
        log.warn('health NOT_SERVING while NATS is unreachable');
      } else if (s.type === 'reconnect') {
        onChange(true);
        log.info('health SERVING again (NATS reachable)');
      }
    }
  })();
}

/** Starts a controller; resolves once it serves. */
export async function startController(o: ControllerOptions): Promise<RunningController> {
  const log = o.log ?? silentLogger;
  checkTrust(
    o.listen,
    { identities: o.identities !== undefined, tls: o.tls !== undefined, ownCredential: o.agentKey !== undefined, insecure: o.insecure ?? false },
    { accept: '--identities FILE', present: '--agent-key-file FILE' },
  );
  const actionLimiter = new ActionRateLimiter({ ...DEFAULT_ACTION_LIMITS, ...o.actionLimits });
  const leaseTtlMs = o.leaseTtlMs ?? 5000;
  const heartbeatIntervalMs = o.heartbeatIntervalMs ?? 1000;
  if (!(heartbeatIntervalMs > 0 && leaseTtlMs > heartbeatIntervalMs)) {
    throw new Error(`lease TTL (${leaseTtlMs} ms) must exceed the heartbeat interval (${heartbeatIntervalMs} ms), both positive`);
  }

  const identities = typeof o.identities === 'string' ? new WatchedIdentities(o.identities, log) : o.identities;
  const closeIdentities = () => {
    if (identities instanceof WatchedIdentities) identities.close();
  };
  const access = o.insecure ? undefined : accessAuthorizer({ identities, tls: o.tls !== undefined });
  const nc = await connectNats({ servers: o.nats, name: 'damon-controller', nkeyFile: o.natsNkeyFile, tls: o.natsTls, log }).catch((err) => {
    closeIdentities();
    throw err;
  });
  let stopping: Promise<void> | undefined;
  const fatal = nc.closed().then((err) => {
    if (!stopping && isNatsAuthRefusal(err)) throw new NatsAuthError(o.natsNkeyFile, { cause: err });
    return new Promise<never>(() => {});
  });
  fatal.catch(() => undefined); // observed by whoever awaits it (main)
  try {
    const js = jetStream(nc, o.natsTimeoutMs);
    // Set once the server is bound (its address is what standbys name); until then this
    // controller answers as a standby that knows no leader.
    let leadership: Leadership | undefined;
    const fence = {
      epoch: () => (leadership ? leadership.assertLeader() : raise(standbyError(undefined))),
      deposed: (why: string) => leadership?.deposed(why),
    };
    const replicas = o.streams?.replicas ?? 1;
    if (replicas % 2 === 0) log.warn(`NATS replicas ${replicas}: an even count survives no more failures than ${replicas - 1}`);
    let store: SessionStore;
    try {
      store = await whenJetStreamAnswers(async () => {
        await ensureStreams(js, o.streams, log);
        return SessionStore.open(js, Date.now, fence, replicas);
      }, JETSTREAM_START_WAIT_MS, log, JETSTREAM_PLACEMENT_WAIT_MS);
    } catch (err) {
      throw replicasRefusal(err, replicas, 'NATS replicas (--nats-replicas)') ?? err;
    }
    const locks = new KeyedMutex();
    const events = new EventPublisher(js, log);
    let reconciler: Reconciler | undefined;
    const registry = new AgentRegistry({
      leaseTtlMs,
      heartbeatIntervalMs,
      log,
      connect: (host, address) =>
        new AgentConnection(address, {
          // Each agent is shown a token of its own: one agent cannot replay it to another.
          credentials: { tls: o.tls, token: o.agentKey === undefined ? undefined : agentCallToken(o.agentKey, host) },
          callTimeoutMs: o.agentCallTimeoutMs,
          tlsServerName: o.agentTlsServerName,
          fence,
        }),
      onChange: () => reconciler?.nudge(),
      onConflict: (host, message) => void reportConflict(host, message),
      unwanted: (agent) => reconciler?.unwantedOn(agent) ?? [],
    });
    // A host claimed twice is reported on the events of the sessions that target it.
    const reportConflict = async (host: string, message: string) => {
      try {
        for (const v of await store.list()) {
          if (!targetHosts(v.session).includes(host)) continue;
          await events.publish(v.session.id, v.revision, SessionEventKind.SESSION_EVENT_KIND_HOST_CONFLICT, message, { host, pid: 0 });
        }
      } catch (err) {
        log.warn(`could not report the conflict on ${host}: ${(err as Error).message}`);
      }
    };
    const lifecycle = new SessionLifecycle(store, registry, events, locks, log);
    const newReconciler = () =>
      new Reconciler(store, registry, lifecycle, events, locks, {
        intervalMs: o.reconcileIntervalMs ?? heartbeatIntervalMs,
        startupGraceMs: leaseTtlMs,
        log,
      });

    // Only the leader serves the API and the Registry: a standby answers UNAVAILABLE naming
    // the leader, after the caller's credentials were checked.
    const leaderOnly = (call: Parameters<NonNullable<typeof access>>[0], method: string) => {
      const who = access?.(call, method);
      if (leadership?.currentEpoch() === undefined) throw leadership?.standbyError() ?? standbyError(undefined);
      return who;
    };
    const { server, health } = createServer({
      services: [
        {
          name: SERVICE_NAMES.controller,
          definition: ControllerService,
          implementation: implement(
            ControllerService,
            controllerHandlers({ store, registry, lifecycle, locks, js, actionLimiter, log, nudge: () => reconciler?.nudge() }),
            { authorize: leaderOnly, log, mapError: natsUnavailable },
          ),
        },
        {
          name: SERVICE_NAMES.registry,
          definition: RegistryService,
          implementation: implement(RegistryService, registryHandlers(registry, () => leadership?.currentEpoch() ?? 0n), {
            authorize: leaderOnly,
            log,
            mapError: natsUnavailable,
          }),
        },
      ],
    });
    // Health: "" follows NATS (a controller without NATS cannot serve); the damon.v1
    // services are SERVING only on the leader while NATS is reachable, so readiness (a load
    // balancer, a Kubernetes probe of damon.v1.Controller) points at the leader.
    const damonServices = [SERVICE_NAMES.controller, SERVICE_NAMES.registry];
    let leading = false;
    let natsUp = true;
    const updateHealth = () => {
      health.setStatus('', natsUp ? 'SERVING' : 'NOT_SERVING');
      for (const s of damonServices) health.setStatus(s, leading && natsUp ? 'SERVING' : 'NOT_SERVING');
    };
    updateHealth();
    watchNatsHealth(nc, log, (up) => {
      if (stopping) return;
      natsUp = up;
      updateHealth();
    });
    // Everything that can fail before serving comes before the port is bound: a controller
    // that cannot serve is never reachable and SERVING (the caller exits non-zero).
    const listing = await whenJetStreamAnswers(() => store.scan(), JETSTREAM_START_WAIT_MS, log);
    const port = await bindServer(server, o.listen, serverCredentials({ tls: o.tls })).catch((err: unknown) => {
      server.forceShutdown();
      throw err;
    });
    let metricsServer: MetricsServer | undefined;
    if (o.metrics) {
      const metrics = new ControllerMetrics({
        scan: () => store.scan(),
        agents: () => registry.list(),
        leading: () => leading,
        natsConnected: () => natsUp,
        log,
      });
      metricsServer = await startMetricsServer(metrics.registry, o.metrics, log).catch((err: unknown) => {
        server.forceShutdown();
        throw err;
      });
    }
    const host = o.listen.slice(0, o.listen.lastIndexOf(':'));
    const address = `${host}:${port}`;
    const advertise = o.advertise ?? (isWildcardHost(splitHostPort(o.listen).host) ? `${hostname()}:${port}` : address);

    const onRole = async (r: Role) => {
      if (r.role === 'leader') {
        // Agents known from an earlier term are asked what they run before any dispatch;
        // those whose lease lapsed meanwhile (a standby refuses heartbeats) expire.
        registry.resync();
        reconciler = newReconciler();
        reconciler.start();
        leading = true;
        updateHealth();
      } else {
        leading = false;
        updateHealth();
        await reconciler?.stop();
        log.info(`standby${r.leader ? `; the leader is at ${r.leader}` : ''}`);
      }
    };
    try {
      leadership = await whenJetStreamAnswers(
        () => Leadership.open(js, { id: randomUUID(), address: advertise, ttlMs: o.leaderLeaseMs ?? 3000, log, onRole }, replicas),
        JETSTREAM_START_WAIT_MS,
        log,
        JETSTREAM_PLACEMENT_WAIT_MS,
      );
      await leadership.start();
    } catch (err) {
      server.forceShutdown();
      await metricsServer?.close();
      throw err;
    }
    const on = listing.sessions.filter((v) => v.session.state === 'on').length;
    log.info(
      `controller listening on ${address} (${o.tls ? 'mutual TLS' : 'plain text'}, ` +
        `${o.insecure ? 'NO AUTHENTICATION (--insecure, loopback only)' : `${identities?.entries.length ?? 0} identities by token${o.tls ? ' and certificates' : ''}`}); ` +
        `${listing.sessions.length} sessions in store, ${on} on${listing.quarantined.length ? `, ${listing.quarantined.length} quarantined` : ''}; ` +
        `lease ${leaseTtlMs} ms, heartbeat ${heartbeatIntervalMs} ms; ` +
        (leadership.currentEpoch() !== undefined
          ? `leading (epoch ${leadership.currentEpoch()})`
          : `standby (leader ${leadership.leaderAddress() ?? 'unknown'}), advertised as ${advertise}`),
    );

    return {
      address,
      port,
      advertise,
      metricsAddress: metricsServer?.address,
      store,
      registry,
      get reconciler() {
        return reconciler;
      },
      leadership,
      nats: nc,
      fatal,
      stop() {
        stopping ??= (async () => {
          leading = false;
          natsUp = false;
          updateHealth();
          await leadership.stop();
          await reconciler?.stop();
          await shutdownServer(server, 1000);
          await metricsServer?.close();
          registry.close();
          closeIdentities();
          await nc.close();
          log.info('controller stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    closeIdentities();
    await nc.close();
    throw err;
  }
}
