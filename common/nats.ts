// NATS plumbing shared by the controller and the agents: a connection that reconnects
// forever (and says so in the log), and the JetStream streams records and events go to.
import { existsSync } from 'node:fs';
import { connect, errors, nanos, nkeyAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { ACTIONS_STREAM, EVENTS_STREAM, RECORDS_STREAM, actionsFilter, eventsFilter, recordsFilter } from './subjects.js';
import { silentLogger, type BasicLogger as Logger } from './log.js';
import { inboxPrefix, publicKeyOfSeedFile, readNkeySeed } from './nats-access.js';

/** PEM files for a TLS connection to NATS (nats.js reads them at each connect). */
export interface NatsTlsFiles {
  /** The CA that signs the server's certificate. */
  ca?: string;
  /** This client's certificate and key, when the server verifies clients. */
  cert?: string;
  key?: string;
}

/**
 * The TLS option from command-line files: undefined when none is given; a client certificate
 * needs its key and the other way round. Throws naming the options.
 */
export function natsTlsOption(ca?: string, cert?: string, key?: string): NatsTlsFiles | undefined {
  if (!ca && !cert && !key) return undefined;
  if (Boolean(cert) !== Boolean(key)) throw new Error('--nats-cert and --nats-key go together');
  for (const f of [ca, cert, key]) {
    if (f && !existsSync(f)) throw new Error(`NATS TLS file ${f}: not found`);
  }
  return { ca, cert, key };
}

/** Options of connectNats. */
export interface NatsOptions {
  /** Server URL(s), e.g. "nats://127.0.0.1:4222"; never with credentials in them. */
  servers: string | string[];
  /** Client name shown in the server's monitoring (e.g. "damon-controller host1"). */
  name?: string;
  /** This identity's nkey seed file (damon-fleet credentials writes it). */
  nkeyFile?: string;
  /** TLS to the server; with it every URL must be tls:// or the server must require TLS. */
  tls?: NatsTlsFiles;
  /** Milliseconds between reconnect attempts (default 1000). */
  reconnectWaitMs?: number;
  log?: Logger;
}

/** NATS refused the credential (or demanded one): retrying cannot help. */
export class NatsAuthError extends Error {
  constructor(
    readonly nkeyFile: string | undefined,
    options?: ErrorOptions,
  ) {
    super(
      nkeyFile
        ? `NATS refused the credential in ${nkeyFile} (Authorization Violation): is its public key in the server's configuration (damon-fleet credentials, then reload nats-server)?`
        : 'NATS demands a credential (Authorization Violation): give --nats-nkey FILE',
      options,
    );
    this.name = 'NatsAuthError';
  }
}

/** True when `err` is NATS refusing a connection's credential. */
export function isNatsAuthRefusal(err: unknown): boolean {
  return err instanceof NatsAuthError || err instanceof errors.AuthorizationError;
}

/**
 * The server URL without anything that looks like a credential, for logs. URLs are parsed
 * loosely ("host:port" is a URL to nats.js), so userinfo is cut textually.
 */
export function redactNatsUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)?[^@/]*@/i, (_m, scheme: string | undefined) => `${scheme ?? ''}***@`);
}

/** Throws when a URL carries a user, password or token: credentials come from files only. */
export function checkNatsUrls(servers: string | string[]): string[] {
  const urls = [servers].flat();
  for (const u of urls) {
    if (/^([a-z]+:\/\/)?[^@/]*@/i.test(u)) {
      throw new Error(`NATS URL ${redactNatsUrl(u)}: credentials do not go in URLs (they would show in process lists and logs); give --nats-nkey FILE`);
    }
  }
  return urls;
}

/**
 * Connects to NATS, retrying the first connection too, and reconnecting forever after that;
 * logs disconnects and reconnects. Resolves once connected. A refused credential is not
 * retried: it rejects with NatsAuthError naming the seed file.
 */
export async function connectNats(options: NatsOptions): Promise<NatsConnection> {
  const log = options.log ?? silentLogger;
  const servers = checkNatsUrls(options.servers);
  const auth: Partial<ConnectionOptions> = {};
  let who = 'without a credential';
  if (options.nkeyFile) {
    const seed = readNkeySeed(options.nkeyFile);
    const publicKey = publicKeyOfSeedFile(options.nkeyFile);
    auth.authenticator = nkeyAuthenticator(seed);
    // Replies come to this identity's own inbox, the only one its permissions let it read.
    auth.inboxPrefix = inboxPrefix(publicKey);
    who = `as ${publicKey} (${options.nkeyFile})`;
  }
  if (options.tls) {
    auth.tls = { caFile: options.tls.ca, certFile: options.tls.cert, keyFile: options.tls.key };
  }
  log.info(`nats: connecting to ${servers.map(redactNatsUrl).join(', ')} ${who}${options.tls ? ', TLS' : ''}`);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers,
      name: options.name,
      ...auth,
      reconnect: true,
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
      reconnectTimeWait: options.reconnectWaitMs ?? 1000,
    });
  } catch (err) {
    if (err instanceof errors.AuthorizationError) throw new NatsAuthError(options.nkeyFile, { cause: err });
    throw err;
  }
  log.info(`nats: connected to ${redactNatsUrl(nc.getServer())}`);
  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          log.warn(`nats: disconnected from ${redactNatsUrl(s.server)}; reconnecting`);
          break;
        case 'reconnect':
          log.info(`nats: reconnected to ${redactNatsUrl(s.server)}`);
          break;
        case 'error':
          log.warn(`nats: ${s.error.message}`);
          break;
        case 'staleConnection':
          log.warn('nats: stale connection; reconnecting');
          break;
        default:
          break;
      }
    }
  })();
  return nc;
}

/** JetStream client on `nc` (publishing, consuming); `timeoutMs` bounds each API call (default 5000). */
export function jetStream(nc: NatsConnection, timeoutMs?: number): JetStreamClient {
  return jetstream(nc, timeoutMs ? { timeout: timeoutMs } : {});
}

const NATS_UNAVAILABLE_ERRORS = new Set([
  'TimeoutError',
  'NoResponders',
  'ClosedConnectionError',
  'DrainingConnectionError',
  'ConnectionError',
  'RequestError',
  'JetStreamNotEnabled',
]);

/** True for errors that mean NATS / JetStream could not be reached or did not answer in time. */
export function isNatsUnavailable(err: unknown): boolean {
  return err instanceof Error && NATS_UNAVAILABLE_ERRORS.has(err.name);
}

// The cluster's "JetStream system temporarily unavailable": it is electing its leaders.
const JETSTREAM_CLUSTER_NOT_AVAILABLE = 10008;

/** True when JetStream is reachable but does not answer yet: a request timed out, or the cluster is electing. */
export function isJetStreamStarting(err: unknown): boolean {
  return (err instanceof Error && err.name === 'TimeoutError') || (err instanceof JetStreamApiError && err.code === JETSTREAM_CLUSTER_NOT_AVAILABLE);
}

/**
 * Runs `f`, again while JetStream does not answer yet, for at most `forMs`: a cluster whose
 * nodes all restarted answers nothing until it has elected its stream leaders (seconds).
 * A refusal to place the copies asked for is tried again for at most `placementMs` (servers
 * of a cluster that starts with its clients may still be joining: Kubernetes starts them
 * together), then thrown so that the caller can say the cluster is too small.
 * Any other error is thrown at once.
 */
export async function whenJetStreamAnswers<T>(f: () => Promise<T>, forMs: number, log: Logger = silentLogger, placementMs = 0): Promise<T> {
  const start = Date.now();
  let warned = false;
  for (;;) {
    try {
      return await f();
    } catch (err) {
      const waited = Date.now() - start;
      const placement = isPlacementRefusal(err);
      if (!(isJetStreamStarting(err) || placement) || waited >= (placement ? placementMs : forMs)) throw err;
      if (!warned) {
        const why = placement ? 'cannot place the copies asked for yet' : 'does not answer yet';
        log.warn(`nats: JetStream ${why} (${(err as Error).message}); trying again for up to ${Math.round((placement ? placementMs : forMs) / 1000)} s`);
        warned = true;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Retention limits of one stream. */
export interface StreamLimits {
  /** Messages older than this are dropped. */
  maxAgeMs: number;
  /** The oldest messages are dropped beyond this many bytes. */
  maxBytes: number;
  /** Publishes with an already-seen Nats-Msg-Id within this window are dropped as duplicates. */
  duplicateWindowMs: number;
}

/** Defaults: records a day (1 GiB), events a week (64 MiB), two-minute de-duplication window. */
export const DEFAULT_RECORDS_LIMITS: Readonly<StreamLimits> = Object.freeze({
  maxAgeMs: 24 * 3600_000,
  maxBytes: 1024 * 1024 * 1024,
  duplicateWindowMs: 120_000,
});
/** Defaults of DAMON_EVENTS (see DEFAULT_RECORDS_LIMITS). */
export const DEFAULT_EVENTS_LIMITS: Readonly<StreamLimits> = Object.freeze({
  maxAgeMs: 7 * 24 * 3600_000,
  maxBytes: 64 * 1024 * 1024,
  duplicateWindowMs: 120_000,
});

/** Defaults of DAMON_ACTIONS (see DEFAULT_RECORDS_LIMITS): a week, 256 MiB. */
export const DEFAULT_ACTIONS_LIMITS: Readonly<StreamLimits> = Object.freeze({
  maxAgeMs: 7 * 24 * 3600_000,
  maxBytes: 256 * 1024 * 1024,
  duplicateWindowMs: 120_000,
});

/** Options of ensureStreams: limits per stream, over the defaults. */
export interface StreamsOptions {
  records?: Partial<StreamLimits>;
  events?: Partial<StreamLimits>;
  actions?: Partial<StreamLimits>;
  /** Copies JetStream keeps of each stream (and of the session bucket): 1 on a single server, 3 on a cluster of three. */
  replicas?: number;
}

/** JetStream keeps at most five copies of a stream; an odd count tolerates as many failures as the next even one. */
export const MAX_NATS_REPLICAS = 5;

/** Checks a replica count (1..MAX_NATS_REPLICAS); throws naming `what` (e.g. the option). */
export function checkReplicas(replicas: number, what = 'replicas'): number {
  if (!Number.isSafeInteger(replicas) || replicas < 1 || replicas > MAX_NATS_REPLICAS) {
    throw new Error(`${what} ${replicas}: must be an integer from 1 to ${MAX_NATS_REPLICAS}`);
  }
  return replicas;
}

/**
 * Opens (creating if needed) the KV bucket `bucket` with `replicas` copies; an existing
 * bucket with another count is changed to it (JetStream moves the data), since Kvm.create
 * leaves an existing bucket as it is.
 */
export async function openBucket(js: JetStreamClient, bucket: string, replicas = 1): Promise<KV> {
  checkReplicas(replicas);
  const kv = await new Kvm(js).create(bucket, { history: 1, replicas });
  const jsm = await js.jetstreamManager();
  const stream = `KV_${bucket}`;
  const { config } = await jsm.streams.info(stream);
  if (config.num_replicas !== replicas) await jsm.streams.update(stream, { ...config, num_replicas: replicas });
  return kv;
}

// JetStream's refusals of a replica count it cannot place: a single server (10074), not
// enough peers in the cluster (10005 no suitable peers, 10023 insufficient resources); the
// last two also while peers are still joining.
const PEERS_SHORT = new Set([10005, 10023]);
const REPLICA_REFUSALS = new Set([10074, ...PEERS_SHORT]);

/** True when a cluster refused to place copies for want of peers: too few servers, or not joined yet. */
export function isPlacementRefusal(err: unknown): boolean {
  return err instanceof JetStreamApiError && PEERS_SHORT.has(err.code);
}

/**
 * When `err` is JetStream refusing to place `replicas` copies (fewer JetStream servers than
 * that, or a single server), an error that says so and what to do; otherwise undefined.
 */
export function replicasRefusal(err: unknown, replicas: number, what = 'replicas'): Error | undefined {
  if (!(err instanceof JetStreamApiError) || !REPLICA_REFUSALS.has(err.code)) return undefined;
  return new Error(
    `${what} ${replicas}: NATS cannot keep ${replicas} copies (${err.message}); ` +
      `JetStream needs at least ${replicas} servers in one cluster: run nats-server as a cluster (docs/nats.md) or lower ${what}`,
    { cause: err },
  );
}

function checkLimits(stream: string, l: StreamLimits): void {
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`${stream} ${k}: must be a positive integer, got ${v}`);
  }
  if (l.duplicateWindowMs > l.maxAgeMs) {
    throw new Error(`${stream} duplicateWindowMs: must not exceed maxAgeMs (${l.duplicateWindowMs} > ${l.maxAgeMs})`);
  }
}

function streamConfig(name: string, subjects: string[], l: StreamLimits, replicas: number): Partial<StreamConfig> & { name: string } {
  return {
    name,
    subjects,
    num_replicas: replicas,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: nanos(l.maxAgeMs),
    max_bytes: l.maxBytes,
    duplicate_window: nanos(l.duplicateWindowMs),
  };
}

// Every field the configuration sets is compared, whatever it is: a field added to
// streamConfig (or by an option) is restored without code here. Lists compare as sets;
// objects (placement, ...) by the keys the configuration sets, as the server fills in others.
function sameValue(have: unknown, want: unknown): boolean {
  if (Array.isArray(want)) {
    return Array.isArray(have) && JSON.stringify([...have].sort()) === JSON.stringify([...want].sort());
  }
  if (typeof want === 'object' && want !== null) {
    if (typeof have !== 'object' || have === null) return false;
    return Object.entries(want).every(([k, v]) => v === undefined || sameValue((have as Record<string, unknown>)[k], v));
  }
  return have === want;
}

/** The fields of `want` (but its name) whose value `have` does not hold. */
export function differingStreamFields(have: Partial<StreamConfig>, want: Partial<StreamConfig>): string[] {
  return Object.entries(want)
    .filter(([k, v]) => k !== 'name' && v !== undefined && !sameValue(have[k as keyof StreamConfig], v))
    .map(([k]) => k);
}

const STREAM_NAME_IN_USE = 10058;

async function ensureStream(jsm: JetStreamManager, want: Partial<StreamConfig> & { name: string }, log: Logger): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const info = await jsm.streams.info(want.name);
      const fields = differingStreamFields(info.config, want);
      if (fields.length > 0) {
        const what = fields
          .map((k) => `${k} ${JSON.stringify(info.config[k as keyof StreamConfig] ?? null)} -> ${JSON.stringify(want[k as keyof StreamConfig])}`)
          .join(', ');
        try {
          await jsm.streams.update(want.name, { ...info.config, ...want });
        } catch (err) {
          // Too few servers for the copies asked for: the caller says so (replicasRefusal).
          if (!(err instanceof JetStreamApiError) || REPLICA_REFUSALS.has(err.code)) throw err;
          // Some fields (storage, ...) cannot change in place, and the controller may not
          // delete streams (what they hold is the users'): the operator decides.
          throw new Error(
            `stream ${want.name} differs from the configuration (${what}) and NATS refuses to change it in place ` +
              `(${err.message}); it holds ${info.state.messages} messages: an operator may remove it (nats stream rm ${want.name}) to have it created again`,
          );
        }
        log.warn(`nats: stream ${want.name} differed from the configuration (${what}); restored`);
      }
      return;
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== JetStreamApiCodes.StreamNotFound) throw err;
    }
    try {
      await jsm.streams.add(want);
      log.info(`nats: created stream ${want.name} (${want.subjects?.join(', ')})`);
      return;
    } catch (err) {
      // Another process created it between our info and add: go round and compare.
      if (!(err instanceof JetStreamApiError) || err.code !== STREAM_NAME_IN_USE) throw err;
    }
  }
  throw new Error(`stream ${want.name}: could not create or update it`);
}

/**
 * Creates or updates (idempotently; safe to call from every process at start) the
 * DAMON_RECORDS (damon.records.>), DAMON_EVENTS (damon.events.>) and DAMON_ACTIONS
 * (damon.actions.>) streams: file storage,
 * limits by age and bytes, a duplicate window for Nats-Msg-Id de-duplication, `replicas`
 * copies (default 1).
 */
export async function ensureStreams(js: JetStreamClient, options: StreamsOptions = {}, log: Logger = silentLogger): Promise<void> {
  const records = { ...DEFAULT_RECORDS_LIMITS, ...options.records };
  const events = { ...DEFAULT_EVENTS_LIMITS, ...options.events };
  const actions = { ...DEFAULT_ACTIONS_LIMITS, ...options.actions };
  checkLimits(RECORDS_STREAM, records);
  checkLimits(EVENTS_STREAM, events);
  checkLimits(ACTIONS_STREAM, actions);
  const replicas = checkReplicas(options.replicas ?? 1);
  const jsm = await js.jetstreamManager();
  await ensureStream(jsm, streamConfig(RECORDS_STREAM, [recordsFilter()], records, replicas), log);
  await ensureStream(jsm, streamConfig(EVENTS_STREAM, [eventsFilter()], events, replicas), log);
  await ensureStream(jsm, streamConfig(ACTIONS_STREAM, [actionsFilter()], actions, replicas), log);
}

/**
 * Nats-Msg-Id of an aggregation record: stable across retries of one publish, distinct for
 * distinct records (the start time keeps them apart should an agent that lost its data
 * directory start its sequences at 1 again).
 */
export function recordMsgId(r: { sessionId: string; host: string; pid: number; startTimeNs: bigint; sequence: bigint }): string {
  return `${r.sessionId}/${r.host}/${r.pid}/${r.startTimeNs}/${r.sequence}`;
}
