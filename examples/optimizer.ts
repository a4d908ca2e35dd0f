// A small downstream optimizer: follows the aggregation records on NATS (all sessions or
// one) with a JetStream ordered consumer and prints, per target, the hottest and coldest
// address ranges with their access frequency (nr_accesses / max_nr_accesses, as damo
// prints it) and a memory plan: what it would keep in fast memory and what it would
// reclaim. It only prints; acting on the plan (mlock, madvise(MADV_PAGEOUT), moving pages
// between tiers) is the job of a real optimizer built the same way. Records missing
// (sequence gaps, records the agent had to drop) are reported on stderr as they show.
//
//   node dist/examples/optimizer.js --nats nats://127.0.0.1:4222 --nats-nkey FILE [--session ID]
//        [--host NAME] [--hot PCT] [--cold PCT] [--min-age N] [--top N] [--every MS] [--replay] [--count N]
// FILE is a reader's seed (readers/<name>/nats.nk of `damon-fleet credentials --reader NAME`).
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import { connectNats, natsTlsOption } from '../common/nats.js';
import type { AggregationRecord } from '../gen/damon/v1/damon.js';
import { RECORDS_STREAM, recordOnSubject, recordsFilter } from '../common/subjects.js';
import { decodeRecord } from '../common/record-wire.js';
import { RecordGaps, describeGap } from '../common/record-gaps.js';

export interface PlanOptions {
  /** Frequency (%) at or above which a range is hot: keep it in fast memory. */
  hotPct: number;
  /** Frequency (%) at or below which a range is cold... */
  coldPct: number;
  /** ...once it has stayed that way for this many aggregation intervals: reclaim it. */
  minAge: number;
  /** How many hottest and coldest ranges to show. */
  top: number;
}

export const DEFAULT_PLAN: PlanOptions = { hotPct: 20, coldPct: 5, minAge: 2, top: 3 };

export interface RangeView {
  start: bigint;
  end: bigint;
  bytes: bigint;
  /** nr_accesses / max_nr_accesses, in percent. */
  frequencyPct: number;
  age: number;
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
  const ranges: RangeView[] = rec.regions.map((r) => ({
    start: r.start,
    end: r.end,
    bytes: r.end - r.start,
    frequencyPct: frequencyPct(r.nrAccesses, rec.maxNrAccesses),
    age: r.age,
  }));
  let keep = 0n;
  let reclaim = 0n;
  let total = 0n;
  for (const r of ranges) {
    total += r.bytes;
    if (r.frequencyPct >= o.hotPct) keep += r.bytes;
    else if (r.frequencyPct <= o.coldPct && r.age >= o.minAge) reclaim += r.bytes;
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
      `reclaim ${formatBytes(p.reclaimBytes)} (${pct(p.reclaimBytes)}%, <= ${o.coldPct}% for >= ${o.minAge} intervals), ` +
      `leave ${formatBytes(p.otherBytes)}`,
  ];
  return lines.join('\n');
}

function usage(msg?: string): never {
  if (msg) process.stderr.write(`optimizer: ${msg}\n`);
  process.stderr.write(
    'usage: node dist/examples/optimizer.js --nats URL --nats-nkey FILE [--session ID] [--host NAME]\n' +
      '         [--hot PCT] [--cold PCT] [--min-age N] [--top N] [--every MS] [--replay] [--count N]\n' +
      '         [--nats-ca FILE] [--nats-cert FILE --nats-key FILE]\n' +
      '  --nats-nkey FILE: a reader\'s NATS seed (damon-fleet credentials --reader NAME)\n',
  );
  process.exit(msg ? 2 : 0);
}

function numberOpt(v: string | undefined, name: string, dflt: number, min: number, max = Infinity): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) usage(`--${name}: expected a number in [${min}, ${max}], got "${v}"`);
  return n;
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
    minAge: numberOpt(values['min-age'], 'min-age', DEFAULT_PLAN.minAge, 0),
    top: numberOpt(values.top, 'top', DEFAULT_PLAN.top, 1),
  };
  if (plan.coldPct >= plan.hotPct) usage(`--cold (${plan.coldPct}) must be below --hot (${plan.hotPct})`);
  const everyMs = numberOpt(values.every, 'every', 2000, 0);
  const count = numberOpt(values.count, 'count', Infinity, 1);

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
  process.stderr.write(`optimizer: following ${filter} on ${nc.getServer()}${values.replay ? ' (replaying)' : ''}\n`);

  const stop = () => void nc.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

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
    if (seen >= count) break;
  }
  if (gaps.missing > 0n) process.stderr.write(`optimizer: ${gaps.missing} record(s) missing in all (${gaps.droppedByAgents} dropped by agents)\n`);
  await nc.close();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`optimizer: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
