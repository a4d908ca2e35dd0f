// NATS plumbing shared by the controller and the agents: a connection that reconnects
// forever (and says so in the log), and the JetStream streams records and events go to.
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
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
import { EVENTS_STREAM, RECORDS_STREAM } from './subjects.js';
import { silentLogger, type BasicLogger as Logger } from './log.js';

/** Options of connectNats. */
export interface NatsOptions {
  /** Server URL(s), e.g. "nats://127.0.0.1:4222". */
  servers: string | string[];
  /** Client name shown in the server's monitoring (e.g. "damon-controller host1"). */
  name?: string;
  /** NATS token auth, if the server requires it. */
  token?: string;
  /** Milliseconds between reconnect attempts (default 1000). */
  reconnectWaitMs?: number;
  log?: Logger;
}

/**
 * Connects to NATS, retrying the first connection too, and reconnecting forever after that;
 * logs disconnects and reconnects. Resolves once connected.
 */
export async function connectNats(options: NatsOptions): Promise<NatsConnection> {
  const log = options.log ?? silentLogger;
  log.info(`nats: connecting to ${[options.servers].flat().join(', ')}`);
  const nc = await connect({
    servers: options.servers,
    name: options.name,
    token: options.token,
    reconnect: true,
    maxReconnectAttempts: -1,
    waitOnFirstConnect: true,
    reconnectTimeWait: options.reconnectWaitMs ?? 1000,
  });
  log.info(`nats: connected to ${nc.getServer()}`);
  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          log.warn(`nats: disconnected from ${s.server}; reconnecting`);
          break;
        case 'reconnect':
          log.info(`nats: reconnected to ${s.server}`);
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

/** Options of ensureStreams: limits per stream, over the defaults. */
export interface StreamsOptions {
  records?: Partial<StreamLimits>;
  events?: Partial<StreamLimits>;
}

function checkLimits(stream: string, l: StreamLimits): void {
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`${stream} ${k}: must be a positive integer, got ${v}`);
  }
  if (l.duplicateWindowMs > l.maxAgeMs) {
    throw new Error(`${stream} duplicateWindowMs: must not exceed maxAgeMs (${l.duplicateWindowMs} > ${l.maxAgeMs})`);
  }
}

function streamConfig(name: string, subjects: string[], l: StreamLimits): Partial<StreamConfig> & { name: string } {
  return {
    name,
    subjects,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: nanos(l.maxAgeMs),
    max_bytes: l.maxBytes,
    duplicate_window: nanos(l.duplicateWindowMs),
  };
}

// Storage cannot change on an existing stream; only what may be updated is compared.
function differs(have: StreamConfig, want: Partial<StreamConfig>): boolean {
  return (
    have.max_age !== want.max_age ||
    have.max_bytes !== want.max_bytes ||
    have.duplicate_window !== want.duplicate_window ||
    have.discard !== want.discard ||
    JSON.stringify([...have.subjects].sort()) !== JSON.stringify([...(want.subjects ?? [])].sort())
  );
}

const STREAM_NAME_IN_USE = 10058;

async function ensureStream(jsm: JetStreamManager, want: Partial<StreamConfig> & { name: string }, log: Logger): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const info = await jsm.streams.info(want.name);
      if (differs(info.config, want)) {
        await jsm.streams.update(want.name, { ...info.config, ...want });
        log.info(`nats: updated stream ${want.name}`);
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
 * DAMON_RECORDS (damon.records.>) and DAMON_EVENTS (damon.events.>) streams: file storage,
 * limits by age and bytes, a duplicate window for Nats-Msg-Id de-duplication.
 */
export async function ensureStreams(js: JetStreamClient, options: StreamsOptions = {}, log: Logger = silentLogger): Promise<void> {
  const records = { ...DEFAULT_RECORDS_LIMITS, ...options.records };
  const events = { ...DEFAULT_EVENTS_LIMITS, ...options.events };
  checkLimits(RECORDS_STREAM, records);
  checkLimits(EVENTS_STREAM, events);
  const jsm = await js.jetstreamManager();
  await ensureStream(jsm, streamConfig(RECORDS_STREAM, ['damon.records.>'], records), log);
  await ensureStream(jsm, streamConfig(EVENTS_STREAM, ['damon.events.>'], events), log);
}

/**
 * Nats-Msg-Id of an aggregation record: stable across retries of one publish, distinct for
 * distinct records (start time in ns disambiguates the sequence restarting with the agent).
 */
export function recordMsgId(r: { sessionId: string; host: string; pid: number; startTimeNs: bigint; sequence: bigint }): string {
  return `${r.sessionId}/${r.host}/${r.pid}/${r.startTimeNs}/${r.sequence}`;
}
