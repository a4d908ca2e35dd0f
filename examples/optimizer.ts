// A downstream optimizer, and a working proactive reclaimer: follows a session's aggregation
// records on NATS (every host of it) with a JetStream ordered consumer, tracks per target
// which address ranges stayed cold (access frequency at most --cold %, 0 by default: not one
// sampled access) for at least --min-age seconds (examples/reclaim-planner.ts), and asks the
// controller to page them out (RequestAction pageout), at most --rate bytes a second, or only
// to dry-run them (--dry-run). It logs what it asked for and what was done (one line each on
// stdout), and every --every ms a plan per target: the hottest and coldest ranges with their
// access frequency (nr_accesses / max_nr_accesses, as damo prints it), what it would keep
// in fast memory and what is cold. Records missing (sequence gaps, records the agent had to
// drop) are reported on stderr as they show. Without --controller it only prints plans.
//
//   node dist/examples/optimizer.js --nats nats://127.0.0.1:4222 --nats-nkey FILE --session ID
//        [--controller HOST:PORT --token-file FILE] [--min-age S] [--rate BYTES] [--dry-run]
//        [--host NAME] [--hot PCT] [--cold PCT] [--top N] [--every MS] [--replay] [--count N]
// FILE is an optimizer's seed and token (optimizers/<name>/{nats.nk,token} of
// `damon-fleet credentials --optimizer NAME=SESSION`); docs/actions.md.
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { connectNats, natsTlsOption } from '../common/nats.js';
import type { AggregationRecord } from '../gen/damon/v1/damon.js';
import { RECORDS_STREAM, recordOnSubject, recordsFilter } from '../common/subjects.js';
import { decodeRecord } from '../common/record-wire.js';
import { RecordGaps, describeGap } from '../common/record-gaps.js';
import * as grpc from '@grpc/grpc-js';
import { formatRange as rangeText } from '../common/actions.js';
import { retryDelayMs } from '../common/retry-info.js';
import { statusName } from '../common/grpc-server.js';
import { parseBytes } from '../common/cli-values.js';
import { SchemeAction, type ActionResult } from '../gen/damon/v1/damon.js';
import { CONNECTION_OPTIONS, parseConnection, type ConnectionValues } from '../cli/connection-options.js';
import { ControllerConnection } from '../cli/controller-connection.js';
import { CliError } from '../cli/exit-codes.js';
import { DEFAULT_RECLAIM, ReclaimPlanner, aggregationMs, type AskOutcome, type ReclaimAsk } from './reclaim-planner.js';

export interface PlanOptions {
  /** Frequency (%) at or above which a range is hot: keep it in fast memory. */
  hotPct: number;
  /** Frequency (%) at or below which a range is cold... */
  coldPct: number;
  /** ...once it has stayed that way this long ((age + 1) aggregation intervals): reclaim it. */
  minAgeMs: number;
  /** How many hottest and coldest ranges to show. */
  top: number;
}

export const DEFAULT_PLAN: PlanOptions = { hotPct: 20, coldPct: DEFAULT_RECLAIM.coldPct, minAgeMs: DEFAULT_RECLAIM.minAgeMs, top: 3 };

export interface RangeView {
  start: bigint;
  end: bigint;
  bytes: bigint;
  /** nr_accesses / max_nr_accesses, in percent. */
  frequencyPct: number;
  age: number;
  /** How long it has had this frequency: (age + 1) aggregation intervals, ms. */
  forMs: number;
}

export interface TargetPlan {
  key: string;
  record: AggregationRecord;
  hottest: RangeView[];
  coldest: RangeView[];
  keepBytes: bigint;
  reclaimBytes: bigint;
  otherBytes: bigint;
  totalBytes: bigint;
}

export function frequencyPct(nrAccesses: number, maxNrAccesses: number): number {
  return maxNrAccesses > 0 ? (100 * nrAccesses) / maxNrAccesses : 0;
}

/** The plan for one target from its latest record. */
export function planTarget(rec: AggregationRecord, o: PlanOptions = DEFAULT_PLAN): TargetPlan {
  const aggr = aggregationMs(rec);
  const ranges: RangeView[] = rec.regions.map((r) => ({
    start: r.start,
    end: r.end,
    bytes: r.end - r.start,
    frequencyPct: frequencyPct(r.nrAccesses, rec.maxNrAccesses),
    age: r.age,
    forMs: (r.age + 1) * aggr,
  }));
  let keep = 0n;
  let reclaim = 0n;
  let total = 0n;
  for (const r of ranges) {
    total += r.bytes;
    if (r.frequencyPct >= o.hotPct) keep += r.bytes;
    else if (r.frequencyPct <= o.coldPct && r.forMs >= o.minAgeMs) reclaim += r.bytes;
  }
  const bigFirst = (a: RangeView, b: RangeView) => (a.bytes === b.bytes ? 0 : a.bytes > b.bytes ? -1 : 1);
  const hottest = [...ranges].sort((a, b) => b.frequencyPct - a.frequencyPct || bigFirst(a, b)).slice(0, o.top);
  const coldest = [...ranges]
    .sort((a, b) => a.frequencyPct - b.frequencyPct || b.age - a.age || bigFirst(a, b))
    .slice(0, o.top);
  return {
    key: `${rec.sessionId}/${rec.host}/${rec.pid}`,
    record: rec,
    hottest,
    coldest,
    keepBytes: keep,
    reclaimBytes: reclaim,
    otherBytes: total - keep - reclaim,
    totalBytes: total,
  };
}

export function formatBytes(n: bigint): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function formatRange(r: RangeView): string {
  const hex = (v: bigint) => `0x${v.toString(16)}`;
  return `${hex(r.start)}-${hex(r.end)} ${formatBytes(r.bytes).padStart(10)}  ${r.frequencyPct.toFixed(0).padStart(3)}%  age ${r.age}`;
}

export function formatPlan(p: TargetPlan, o: PlanOptions = DEFAULT_PLAN): string {
  const rec = p.record;
  const pct = (b: bigint) => (p.totalBytes > 0n ? ((100 * Number(b)) / Number(p.totalBytes)).toFixed(1) : '0.0');
  const lines = [
    `session ${rec.sessionId} host ${rec.host} pid ${rec.pid}: record #${rec.sequence} (${rec.operations}), ` +
      `${rec.regions.length} regions over ${formatBytes(p.totalBytes)}, max_nr_accesses ${rec.maxNrAccesses}`,
    '  hottest:',
    ...p.hottest.map((r) => `    ${formatRange(r)}`),
    '  coldest:',
    ...p.coldest.map((r) => `    ${formatRange(r)}`),
    `  plan: keep in fast memory ${formatBytes(p.keepBytes)} (${pct(p.keepBytes)}%, >= ${o.hotPct}%), ` +
      `reclaim ${formatBytes(p.reclaimBytes)} (${pct(p.reclaimBytes)}%, <= ${o.coldPct}% for >= ${o.minAgeMs / 1000} s), ` +
      `leave ${formatBytes(p.otherBytes)}`,
  ];
  return lines.join('\n');
}

function usage(msg?: string): never {
  if (msg) process.stderr.write(`optimizer: ${msg}\n`);
  process.stderr.write(
    'usage: node dist/examples/optimizer.js --nats URL --nats-nkey FILE [--session ID] [--host NAME]\n' +
      '         [--controller HOST:PORT (--token-file FILE | --tls-cert F --tls-key F --tls-ca F | --insecure)]\n' +
      '         [--min-age SECONDS] [--rate BYTES] [--min-bytes BYTES] [--dry-run]\n' +
      '         [--hot PCT] [--cold PCT] [--top N] [--every MS] [--replay] [--count N]\n' +
      '         [--nats-ca FILE] [--nats-cert FILE --nats-key FILE]\n' +
      '  --nats-nkey FILE, --token-file FILE: an optimizer\'s (damon-fleet credentials --optimizer NAME=SESSION)\n' +
      '  --controller: page out what stayed cold --min-age seconds (default 30) in the session\'s targets,\n' +
      '                at most --rate bytes a second (default 64M); without it plans are only printed\n',
  );
  process.exit(msg ? 2 : 0);
}

function numberOpt(v: string | undefined, name: string, dflt: number, min: number, max = Infinity): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) usage(`--${name}: expected a number in [${min}, ${max}], got "${v}"`);
  return n;
}

function bytesOpt(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  try {
    return parseBytes(`--${name}`, v);
  } catch (err) {
    usage((err as Error).message);
  }
}

/** What a refused RequestAction means for the plan. */
export function outcomeOfRefusal(err: unknown): AskOutcome {
  const se = err instanceof CliError ? err.serviceError : undefined;
  if (se?.code === grpc.status.NOT_FOUND) return { kind: 'gone' };
  if (se?.code === grpc.status.RESOURCE_EXHAUSTED) return { kind: 'later', retryInMs: retryDelayMs(se.metadata) ?? 1000 };
  return { kind: 'failed' };
}

/** One log line for an ask. */
export function describeAsk(a: ReclaimAsk, dryRun: boolean): string {
  return (
    `ask ${dryRun ? 'dry-run ' : ''}pageout ${rangeText(a)} (${formatBytes(a.end - a.start)}, cold ${(a.coldForMs / 1000).toFixed(1)} s) ` +
    `on ${a.host}:${a.pid} of session ${a.sessionId}`
  );
}

/** One log line for what was done. */
export function describeResult(r: ActionResult): string {
  return (
    `done ${r.dryRun ? 'dry-run ' : ''}action ${r.actionId} on ${r.host}:${r.pid}: ${formatBytes(r.bytesEligible)} eligible in ` +
    `${r.ranges.length} range(s), ${formatBytes(r.bytesClipped)} clipped, ${formatBytes(r.bytesApplied)} paged out`
  );
}

export async function main(argv: string[]): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
        'nats-nkey': { type: 'string' },
        'nats-ca': { type: 'string' },
        'nats-cert': { type: 'string' },
        'nats-key': { type: 'string' },
        session: { type: 'string' },
        host: { type: 'string' },
        hot: { type: 'string' },
        cold: { type: 'string' },
        'min-age': { type: 'string' },
        top: { type: 'string' },
        every: { type: 'string' },
        replay: { type: 'boolean', default: false },
        count: { type: 'string' },
        controller: CONNECTION_OPTIONS.controller,
        'token-file': CONNECTION_OPTIONS['token-file'],
        'tls-cert': CONNECTION_OPTIONS['tls-cert'],
        'tls-key': CONNECTION_OPTIONS['tls-key'],
        'tls-ca': CONNECTION_OPTIONS['tls-ca'],
        'controller-tls-name': CONNECTION_OPTIONS['controller-tls-name'],
        insecure: CONNECTION_OPTIONS.insecure,
        timeout: { type: 'string', default: '70s' },
        rate: { type: 'string' },
        'min-bytes': { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.help) usage();
  if (values.host && !values.session) usage('--host needs --session');
  const plan: PlanOptions = {
    hotPct: numberOpt(values.hot, 'hot', DEFAULT_PLAN.hotPct, 0, 100),
    coldPct: numberOpt(values.cold, 'cold', DEFAULT_PLAN.coldPct, 0, 100),
    minAgeMs: 1000 * numberOpt(values['min-age'], 'min-age', DEFAULT_PLAN.minAgeMs / 1000, 0),
    top: numberOpt(values.top, 'top', DEFAULT_PLAN.top, 1),
  };
  if (plan.coldPct >= plan.hotPct) usage(`--cold (${plan.coldPct}) must be below --hot (${plan.hotPct})`);
  const everyMs = numberOpt(values.every, 'every', 10_000, 0);
  const count = numberOpt(values.count, 'count', Infinity, 1);
  const dryRun = values['dry-run'] ?? false;

  let controller: ControllerConnection | undefined;
  if (values.controller !== undefined) {
    if (!values.session) usage('--controller needs --session: the session whose targets to reclaim');
    try {
      controller = new ControllerConnection(parseConnection(values as ConnectionValues, {}));
    } catch (err) {
      usage((err as Error).message);
    }
  }
  const planner = new ReclaimPlanner(
    {
      minAgeMs: plan.minAgeMs,
      coldPct: plan.coldPct,
      rateBytesPerS: bytesOpt(values.rate, 'rate', DEFAULT_RECLAIM.rateBytesPerS),
      minBytes: bytesOpt(values['min-bytes'], 'min-bytes', DEFAULT_RECLAIM.minBytes),
    },
    Date.now(),
  );

  let tls;
  try {
    tls = natsTlsOption(values['nats-ca'], values['nats-cert'], values['nats-key']);
  } catch (err) {
    usage((err as Error).message);
  }
  const nc = await connectNats({
    servers: values.nats!.split(','),
    name: 'damon-fleet optimizer example',
    nkeyFile: values['nats-nkey'],
    tls,
  });
  const js = jetstream(nc);
  const filter = recordsFilter(values.session, values.host);
  // An ordered consumer: ephemeral, in stream order, recreated by the client if it
  // falls behind or the server restarts; nothing to clean up on exit.
  const consumer = await js.consumers.get(RECORDS_STREAM, {
    filter_subjects: filter,
    deliver_policy: values.replay ? DeliverPolicy.All : DeliverPolicy.New,
  });
  process.stderr.write(
    `optimizer: following ${filter} on ${nc.getServer()}${values.replay ? ' (replaying)' : ''}` +
      (controller
        ? `; paging out what stays cold (<= ${plan.coldPct}%) ${plan.minAgeMs / 1000} s via ${controller.address}${dryRun ? ' (dry run)' : ''}\n`
        : '; printing plans only (no --controller)\n'),
  );

  const stop = () => void nc.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  // Asks go one at a time, in the order planned; records keep being read meanwhile.
  let asking = Promise.resolve();
  const ask = (a: ReclaimAsk) =>
    (asking = asking.then(async () => {
      process.stdout.write(`optimizer: ${describeAsk(a, dryRun)}\n`);
      try {
        const r = await controller!.call('requestAction', {
          sessionId: a.sessionId,
          host: a.host,
          pid: a.pid,
          start: a.start,
          end: a.end,
          action: SchemeAction.SCHEME_ACTION_PAGEOUT,
          dryRun,
        });
        planner.settle(a, { kind: 'done' }, Date.now());
        process.stdout.write(`optimizer: ${describeResult(r)}\n`);
      } catch (err) {
        const outcome = outcomeOfRefusal(err);
        planner.settle(a, outcome, Date.now());
        const se = err instanceof CliError ? err.serviceError : undefined;
        process.stdout.write(
          `optimizer: refused ${rangeText(a)} on ${a.host}:${a.pid}: ${se ? statusName(se.code) : 'error'}: ${(err as Error).message}` +
            (outcome.kind === 'gone' ? ' (target forgotten)' : outcome.kind === 'later' ? ` (again in ${outcome.retryInMs} ms)` : '') +
            '\n',
        );
      }
    }));

  const lastPrinted = new Map<string, number>();
  const gaps = new RecordGaps();
  let seen = 0;
  const messages = await consumer.consume();
  for await (const m of messages) {
    let rec: AggregationRecord;
    try {
      rec = recordOnSubject(decodeRecord(m.data), m.subject);
    } catch (err) {
      process.stderr.write(`optimizer: skipping a message on ${m.subject}: ${(err as Error).message}\n`);
      continue;
    }
    seen++;
    for (const g of gaps.observe(rec)) process.stderr.write(`optimizer: ${describeGap(g)}\n`);
    const p = planTarget(rec, plan);
    const now = Date.now();
    if (now - (lastPrinted.get(p.key) ?? -Infinity) >= everyMs || seen >= count) {
      lastPrinted.set(p.key, now);
      process.stdout.write(formatPlan(p, plan) + '\n');
    }
    if (controller) {
      planner.observe(rec);
      for (const a of planner.plan(now)) void ask(a);
    }
    if (seen >= count) break;
  }
  await asking;
  controller?.close();
  if (gaps.missing > 0n) process.stderr.write(`optimizer: ${gaps.missing} record(s) missing in all (${gaps.droppedByAgents} dropped by agents)\n`);
  await nc.close();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`optimizer: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
