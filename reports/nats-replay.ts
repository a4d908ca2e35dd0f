// A session's records replayed from the DAMON_RECORDS stream, by time range, as report
// input. A report is a one-shot command: it connects once (a refused or unreachable
// server is an error, not a reason to wait forever as a daemon would), replays with an
// ordered consumer (ephemeral, nothing left behind on the server) from --since, and
// stops at the end of the stream.
import { connect, errors, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { checkNatsUrls, redactNatsUrl, type NatsTlsFiles } from '../common/nats.js';
import { inboxPrefix, publicKeyOfSeedFile, readNkeySeed } from '../common/nats-access.js';
import { RECORDS_STREAM, SESSION_ID_RE, recordOnSubject, recordsFilter } from '../common/subjects.js';
import { decodeRecord } from '../common/record-wire.js';
import { RecordGaps, describeGap } from '../common/record-gaps.js';
import { excerpt } from '../common/log.js';
import type { AggregationRecord } from '../gen/damon/v1/damon.js';
import { ReportError, inWindow, type ReportInput, type ReportRecord, type ReportTarget, type TimeWindow } from './report-input.js';

export interface ReplayOptions {
  servers: string[];
  /** A reader's (or the operator's) nkey seed file. */
  nkeyFile?: string;
  tls?: NatsTlsFiles;
  sessionId: string;
  window: TimeWindow;
  /** Milliseconds to wait for the server at connect and for each batch (default 10000). */
  timeoutMs?: number;
}

const BATCH = 1000;

async function connectOnce(o: ReplayOptions): Promise<NatsConnection> {
  const servers = checkNatsUrls(o.servers);
  const auth: { authenticator?: ReturnType<typeof nkeyAuthenticator>; inboxPrefix?: string } = {};
  if (o.nkeyFile) {
    try {
      auth.authenticator = nkeyAuthenticator(readNkeySeed(o.nkeyFile));
      auth.inboxPrefix = inboxPrefix(publicKeyOfSeedFile(o.nkeyFile));
    } catch (e) {
      throw new ReportError(`--nats-nkey ${o.nkeyFile}: ${(e as Error).message}`);
    }
  }
  const where = servers.map(redactNatsUrl).join(', ');
  try {
    return await connect({
      servers,
      ...auth,
      tls: o.tls ? { caFile: o.tls.ca, certFile: o.tls.cert, keyFile: o.tls.key } : undefined,
      name: `damon-fleet report ${o.sessionId}`,
      reconnect: false,
      timeout: o.timeoutMs ?? 10_000,
    });
  } catch (e) {
    if (e instanceof errors.AuthorizationError) {
      throw new ReportError(
        o.nkeyFile
          ? `NATS at ${where} refused the credential in ${o.nkeyFile}: is it a reader's seed (damon-fleet credentials --reader NAME) and the server reloaded?`
          : `NATS at ${where} demands a credential: give --nats-nkey FILE (a reader's seed, readers/NAME/nats.nk)`,
      );
    }
    throw new ReportError(`cannot reach NATS at ${where}: ${(e as Error).message}`);
  }
}

/** "host1 pid 42" and "host1-pid-42". */
function targetOf(r: AggregationRecord): { label: string; slug: string } {
  return { label: `${r.host} pid ${r.pid}`, slug: `${r.host.replaceAll('.', '_')}-pid-${r.pid}` };
}

/**
 * The session's records whose end lies in the window, per target (host and pid), in time
 * order. Throws ReportError for an unreachable server, a refused credential, a
 * missing stream or a session without records in the window.
 */
export async function loadSessionRecords(o: ReplayOptions): Promise<ReportInput> {
  if (!SESSION_ID_RE.test(o.sessionId)) {
    throw new ReportError(`--session "${excerpt(o.sessionId, 40)}": session ids are 1-64 letters, digits, '_' or '-'`);
  }
  const nc = await connectOnce(o);
  try {
    return await replay(nc, o);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

async function replay(nc: NatsConnection, o: ReplayOptions): Promise<ReportInput> {
  const js = jetstream(nc, { timeout: o.timeoutMs ?? 10_000 });
  const filter = recordsFilter(o.sessionId);
  let consumer;
  let pending: number;
  try {
    consumer = await js.consumers.get(RECORDS_STREAM, {
      filter_subjects: filter,
      ...(o.window.sinceNs !== undefined
        ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(Number(o.window.sinceNs / 1_000_000n)).toISOString() }
        : { deliver_policy: DeliverPolicy.All }),
    });
    pending = (await consumer.info()).num_pending;
    if (pending === 0) return emptyInput(o);
  } catch (e) {
    const msg = (e as Error).message;
    if (/stream not found/i.test(msg)) throw new ReportError(`NATS has no ${RECORDS_STREAM} stream: no controller has run against this server`);
    if (/permission/i.test(msg)) throw new ReportError(`NATS refused to replay ${filter}: ${msg} (a reader's or the operator's credential can)`);
    throw new ReportError(`replaying ${filter}: ${msg}`);
  }
  const byTarget = new Map<string, { label: string; slug: string; max: number; records: ReportRecord[] }>();
  const gaps = new RecordGaps();
  const warnings: string[] = [];
  let skipped = 0;
  const take = (data: Uint8Array, subject: string): void => {
    let rec: AggregationRecord;
    try {
      rec = recordOnSubject(decodeRecord(data), subject);
    } catch {
      skipped++;
      return;
    }
    const seen = gaps.observe(rec);
    // A publish retried: the same record twice would count twice.
    if (seen.some((g) => g.kind === 'duplicate')) return;
    for (const g of seen) if (g.kind === 'missing' || g.kind === 'reset') warnings.push(describeGap(g));
    if (!inWindow(rec.endTimeNs, o.window)) return;
    const { label, slug } = targetOf(rec);
    let t = byTarget.get(label);
    if (!t) byTarget.set(label, (t = { label, slug, max: rec.maxNrAccesses, records: [] }));
    // The intervals can change while a session runs (an intervals goal); the largest bounds every record.
    t.max = Math.max(t.max, rec.maxNrAccesses);
    t.records.push({
      startNs: rec.startTimeNs,
      endNs: rec.endTimeNs,
      regions: rec.regions.map((g) => ({ start: Number(g.start), end: Number(g.end), nrAccesses: g.nrAccesses })),
    });
  };
  // Batches of at most what the stream still holds for us, so that no fetch waits for its expiry.
  while (pending > 0) {
    const batch = await consumer.fetch({ max_messages: Math.min(BATCH, pending), expires: o.timeoutMs ?? 10_000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      pending = m.info.pending;
      take(m.data, m.subject);
      if (pending === 0) break;
    }
    if (got === 0) pending = (await consumer.info()).num_pending;
  }
  if (skipped > 0) warnings.push(`${skipped} message(s) on ${filter} were not well-formed records and were skipped`);
  const targets: ReportTarget[] = [...byTarget.values()].map((t) => ({
    label: t.label,
    slug: t.slug,
    maxNrAccesses: Math.max(1, t.max),
    maxFromIntervals: true,
    records: t.records.sort((a, b) => (a.endNs < b.endNs ? -1 : a.endNs > b.endNs ? 1 : 0)),
  }));
  return { source: sourceOf(o), targets, warnings };
}

function sourceOf(o: ReplayOptions): string {
  return `session ${o.sessionId} on ${o.servers.map(redactNatsUrl).join(', ')}`;
}

function emptyInput(o: ReplayOptions): ReportInput {
  return { source: sourceOf(o), targets: [], warnings: [] };
}
