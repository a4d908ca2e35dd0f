// `damon-fleet report FILE`: reads a result file (any format) and draws each target's
// access pattern over time as a text heatmap (time down, address across), with the
// working-set estimate per snapshot: what damo's `report heats` and `wss` show.
import { parseArgs } from 'node:util';
import { readResultFile, type ResultRecord } from '../records/result-reader.js';
import type { AggregationRecord } from '../records/record.js';
import { workingSetBytes } from '../engine/working-set.js';
import { formatAddr, formatBytes, heatStrip } from './format.js';

const USAGE = `usage: damon-fleet report FILE [--target ID] [--rows N] [--width N]

Draws each target's access frequency over time: one row per snapshot (or per group of
snapshots when there are more than --rows), address across (unmapped gaps left out),
shaded from idle ' ' to hottest '@'; with the working-set estimate of each row.
`;

interface Span { start: number; end: number }

/** The union of every region of the records: the address axis, without the gaps. */
function axisOf(records: readonly ResultRecord[]): Span[] {
  const spans = records.flatMap((r) => r.regions.map((g) => ({ start: g.start, end: g.end })));
  spans.sort((a, b) => a.start - b.start);
  const out: Span[] = [];
  for (const s of spans) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}

/** A record laid on the axis: regions plus zero-access filler where it monitored nothing. */
function onAxis(rec: ResultRecord, axis: readonly Span[], max: number): AggregationRecord {
  const regions: AggregationRecord['regions'] = [];
  let i = 0;
  for (const span of axis) {
    let at = span.start;
    while (i < rec.regions.length && rec.regions[i].start < span.end) {
      const g = rec.regions[i++];
      if (g.start > at) regions.push({ start: at, end: g.start, nrAccesses: 0, age: 0 });
      regions.push({ start: g.start, end: g.end, nrAccesses: g.nrAccesses, age: g.age ?? 0 });
      at = g.end;
    }
    if (at < span.end) regions.push({ start: at, end: span.end, nrAccesses: 0, age: 0 });
  }
  return { targetId: rec.targetId, startNs: rec.startNs ?? rec.endNs, endNs: rec.endNs, maxNrAccesses: max, regions };
}

/** Averages a group of records laid on the same axis into one (for rows that cover several snapshots). */
function average(group: readonly AggregationRecord[]): AggregationRecord {
  const cuts = [...new Set(group.flatMap((r) => r.regions.flatMap((g) => [g.start, g.end])))].sort((a, b) => a - b);
  const regions: AggregationRecord['regions'] = [];
  const idx = group.map(() => 0);
  for (let c = 0; c + 1 < cuts.length; c++) {
    const [start, end] = [cuts[c], cuts[c + 1]];
    let sum = 0;
    let covered = false;
    group.forEach((r, k) => {
      while (idx[k] < r.regions.length && r.regions[idx[k]].end <= start) idx[k]++;
      const g = r.regions[idx[k]];
      if (g && g.start <= start && g.end >= end) {
        sum += g.nrAccesses;
        covered = true;
      }
    });
    if (covered) regions.push({ start, end, nrAccesses: sum / group.length, age: 0 });
  }
  return { ...group[group.length - 1], startNs: group[0].startNs, regions };
}

export async function main(argv: string[]): Promise<number> {
  let values: { target?: string; rows?: string; width?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { target: { type: 'string' }, rows: { type: 'string' }, width: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (e) {
    process.stderr.write(`damon-fleet report: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(`damon-fleet report: give exactly one result file\n${USAGE}`);
    return 2;
  }
  const rows = Number(values.rows ?? 40);
  const width = Number(values.width ?? Math.max(20, Math.min(100, (process.stdout.columns ?? 80) - 30)));
  if (!Number.isSafeInteger(rows) || rows <= 0 || !Number.isSafeInteger(width) || width <= 0) {
    process.stderr.write('damon-fleet report: --rows and --width take positive integers\n');
    return 2;
  }
  let contents;
  try {
    contents = await readResultFile(positionals[0], { partial: true });
  } catch (e) {
    process.stderr.write(`damon-fleet report: ${(e as Error).message}\n`);
    return 1;
  }
  const byTarget = new Map<number, ResultRecord[]>();
  for (const s of contents.snapshots) {
    for (const r of s.records) {
      if (values.target !== undefined && String(r.targetId) !== values.target) continue;
      byTarget.set(r.targetId, [...(byTarget.get(r.targetId) ?? []), r]);
    }
  }
  const out = process.stdout;
  out.write(
    `${positionals[0]}: ${contents.format}${contents.version !== null ? ` version ${contents.version}` : ''}, ` +
      `${contents.snapshots.length} snapshots\n`,
  );
  if (contents.problem) out.write(`warning: ${contents.problem.message}; showing the snapshots before it\n`);
  if (byTarget.size === 0) {
    out.write(values.target !== undefined ? `no records of target ${values.target}\n` : 'no records\n');
    return values.target !== undefined ? 1 : 0;
  }
  for (const [id, recs] of byTarget) {
    // Binary files store no intervals: frequencies are then relative to the busiest region seen.
    const max = recs[0].maxNrAccesses ?? Math.max(1, ...recs.flatMap((r) => r.regions.map((g) => g.nrAccesses)));
    const axis = axisOf(recs);
    const laid = recs.map((r) => onAxis(r, axis, max));
    const per = Math.ceil(laid.length / rows);
    const t0 = recs[0].startNs ?? recs[0].endNs;
    out.write(`\ntarget ${id}: ${recs.length} snapshots, ${axis.length} mapped span(s) ` +
      `${axis.map((s) => `${formatAddr(s.start)}-${formatAddr(s.end)}`).join(' ')}` +
      `${recs[0].maxNrAccesses === null ? ' (frequency relative to the busiest region: the format stores no intervals)' : ''}\n`);
    out.write(`${'time'.padStart(9)}  ${'low address'.padEnd(width - 12)}high  working set\n`);
    for (let i = 0; i < laid.length; i += per) {
      const row = average(laid.slice(i, i + per));
      const secs = Number(row.endNs - t0) / 1e9;
      out.write(`${(secs.toFixed(1) + 's').padStart(9)} |${heatStrip(row, width)}| ${formatBytes(workingSetBytes(row))}\n`);
    }
  }
  return 0;
}
