// Wires the controller together: NATS (streams, session bucket), the agent registry, the
// reconcile loop and the gRPC server (Controller, Registry, health, reflection).
import type { NatsConnection } from '@nats-io/transport-node';
import { serverCredentials, type TlsMaterial } from '../common/auth.js';
import { WatchedIdentities, accessAuthorizer, agentCallToken, type IdentityTable } from '../common/grpc-access.js';
import { checkTrust } from '../common/trust.js';
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
import { ControllerService, RegistryService } from '../gen/damon/v1/damon.js';
import { AgentConnection } from './agent-client.js';
import { controllerHandlers } from './controller-service.js';
import { EventPublisher } from './events.js';
import { KeyedMutex } from './keyed-mutex.js';
import { SessionLifecycle } from './lifecycle.js';
import { Reconciler } from './reconciler.js';
import { AgentRegistry } from './registry.js';
import { registryHandlers } from './registry-service.js';
import { SessionStore } from './session-store.js';

export interface ControllerOptions {
  /** gRPC listen address, "host:port" (port 0 picks a free one). */
  listen: string;
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
  log?: Logger;
}

// How long a starting controller waits for JetStream to answer (a NATS cluster that
// restarted whole elects its stream leaders first) before it gives up.
const JETSTREAM_START_WAIT_MS = 60_000;

// NATS down or slow: the caller may retry (UNAVAILABLE), rather than an opaque INTERNAL.
function natsUnavailable(err: unknown): RpcError | undefined {
  return isNatsUnavailable(err) ? new RpcError(grpc.status.UNAVAILABLE, `NATS unavailable: ${(err as Error).message}`) : undefined;
}

export interface RunningController {
  /** "host:port" actually bound. */
  address: string;
  port: number;
  store: SessionStore;
  registry: AgentRegistry;
  reconciler: Reconciler;
  nats: NatsConnection;
  /** Rejects when NATS stops accepting the controller's credential (removed, then reloaded). */
  readonly fatal: Promise<never>;
  /** Graceful stop: the loop, then the server (streams cancelled after a grace), then NATS. */
  stop(): Promise<void>;
}

/** Starts a controller; resolves once it serves. */
export async function startController(o: ControllerOptions): Promise<RunningController> {
  const log = o.log ?? silentLogger;
  checkTrust(
    o.listen,
    { identities: o.identities !== undefined, tls: o.tls !== undefined, ownCredential: o.agentKey !== undefined, insecure: o.insecure ?? false },
    { accept: '--identities FILE', present: '--agent-key-file FILE' },
  );
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
    const replicas = o.streams?.replicas ?? 1;
    if (replicas % 2 === 0) log.warn(`NATS replicas ${replicas}: an even count survives no more failures than ${replicas - 1}`);
    let store: SessionStore;
    try {
      store = await whenJetStreamAnswers(async () => {
        await ensureStreams(js, o.streams, log);
        return SessionStore.open(js, Date.now, replicas);
      }, JETSTREAM_START_WAIT_MS, log);
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
        }),
      onChange: () => reconciler?.nudge(),
    });
    const lifecycle = new SessionLifecycle(store, registry, events, locks, log);
    reconciler = new Reconciler(store, registry, lifecycle, events, locks, {
      intervalMs: o.reconcileIntervalMs ?? heartbeatIntervalMs,
      startupGraceMs: leaseTtlMs,
      log,
    });
    const rec = reconciler;

    const { server, health } = createServer({
      services: [
        {
          name: SERVICE_NAMES.controller,
          definition: ControllerService,
          implementation: implement(
            ControllerService,
            controllerHandlers({ store, registry, lifecycle, locks, js, log, nudge: () => rec.nudge() }),
            { authorize: access, log, mapError: natsUnavailable },
          ),
        },
        {
          name: SERVICE_NAMES.registry,
          definition: RegistryService,
          implementation: implement(RegistryService, registryHandlers(registry), {
            authorize: access,
            log,
            mapError: natsUnavailable,
          }),
        },
      ],
    });
    const port = await bindServer(server, o.listen, serverCredentials({ tls: o.tls }));
    const host = o.listen.slice(0, o.listen.lastIndexOf(':'));
    const address = `${host}:${port}`;
    reconciler.start();
    const sessions = await whenJetStreamAnswers(() => store.list(), JETSTREAM_START_WAIT_MS, log);
    const on = sessions.filter((v) => v.session.state === 'on').length;
    log.info(
      `controller listening on ${address} (${o.tls ? 'mutual TLS' : 'plain text'}, ` +
        `${o.insecure ? 'NO AUTHENTICATION (--insecure, loopback only)' : `${identities?.entries.length ?? 0} identities by token${o.tls ? ' and certificates' : ''}`}); ` +
        `${sessions.length} sessions in store, ${on} on; ` +
        `lease ${leaseTtlMs} ms, heartbeat ${heartbeatIntervalMs} ms`,
    );

    return {
      address,
      port,
      store,
      registry,
      reconciler,
      nats: nc,
      fatal,
      stop() {
        stopping ??= (async () => {
          health.setStatus('', 'NOT_SERVING');
          await rec.stop();
          await shutdownServer(server, 1000);
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
