// `damon-fleet report`: the subcommands heatmap, wss and summary (reports/commands.ts),
// and `damon-fleet report FILE`, which reads a result file (any format) and draws each
// target's access pattern over time as a text heatmap (time down, address across), with
// the working-set estimate per row, named as damo's `wss --acc_thres` names it.
import { parseArgs } from 'node:util';
import { ReportError, loadResultFile, pickTarget, type ReportRecord, type ReportTarget } from '../../reports/report-input.js';
import { mappedSpans } from '../../reports/address-axis.js';
import { SUBCOMMANDS, runReportCommand, type Subcommand } from '../../reports/commands.js';
import { recorderAccThres } from '../../reports/wss.js';
import type { AggregationRecord } from '../records/record.js';
import { workingSetBytes } from '../engine/working-set.js';
import { formatAddr, formatBytes, heatStrip } from './format.js';

const USAGE = `usage: damon-fleet report heatmap|wss|summary ...   (report <subcommand> --help)
       damon-fleet report FILE [--target ID] [--rows N] [--width N]

heatmap   PNG and SVG access heatmaps per target (address across, time down, gaps cut)
wss       working set size percentiles, damo's \`wss\` options and defaults; table and plot
summary   a few lines per target for a terminal
          (each from a result file or a session's records on NATS, by time range)

report FILE draws each target's access frequency over time as text: one row per snapshot
(or per group of snapshots when there are more than --rows), address across (unmapped
gaps left out), shaded from idle ' ' to hottest '@'; with each row's working set: the
bytes of regions accessed in at least half the samples, i.e. damo's wss --acc_thres N
with N = max nr_accesses / 2 (10 at the default 5 ms sampling, 100 ms aggregation).
`;

/** A record laid on the target's mapped spans: regions plus zero-access filler where it monitored nothing. */
function onAxis(rec: ReportRecord, axis: readonly { start: number; end: number }[], max: number): AggregationRecord {
  const regions: AggregationRecord['regions'] = [];
  let i = 0;
  for (const span of axis) {
    let at = span.start;
    while (i < rec.regions.length && rec.regions[i]!.start < span.end) {
      const g = rec.regions[i++]!;
      if (g.start > at) regions.push({ start: at, end: g.start, nrAccesses: 0, age: 0 });
      regions.push({ start: g.start, end: g.end, nrAccesses: g.nrAccesses, age: 0 });
      at = g.end;
    }
    if (at < span.end) regions.push({ start: at, end: span.end, nrAccesses: 0, age: 0 });
  }
  return { targetId: 0, startNs: rec.startNs, endNs: rec.endNs, maxNrAccesses: max, regions };
}

/** Averages a group of records laid on the same axis into one (for rows that cover several snapshots). */
function average(group: readonly AggregationRecord[]): AggregationRecord {
  const cuts = [...new Set(group.flatMap((r) => r.regions.flatMap((g) => [g.start, g.end])))].sort((a, b) => a - b);
  const regions: AggregationRecord['regions'] = [];
  const idx = group.map(() => 0);
  for (let c = 0; c + 1 < cuts.length; c++) {
    const [start, end] = [cuts[c]!, cuts[c + 1]!];
    let sum = 0;
    let covered = false;
    group.forEach((r, k) => {
      while (idx[k]! < r.regions.length && r.regions[idx[k]!]!.end <= start) idx[k]!++;
      const g = r.regions[idx[k]!];
      if (g && g.start <= start && g.end >= end) {
        sum += g.nrAccesses;
        covered = true;
      }
    });
    if (covered) regions.push({ start, end, nrAccesses: sum / group.length, age: 0 });
  }
  return { ...group[group.length - 1]!, startNs: group[0]!.startNs, regions };
}

function textHeatmap(t: ReportTarget, rows: number, width: number): string {
  const axis = mappedSpans(t);
  const laid = t.records.map((r) => onAxis(r, axis, t.maxNrAccesses));
  const per = Math.ceil(laid.length / rows);
  const t0 = t.records[0]!.startNs;
  const thres = recorderAccThres(t.maxNrAccesses);
  const lines = [
    `\n${t.label}: ${t.records.length} snapshots, ${axis.length} mapped span(s) ` +
      `${axis.map((s) => `${formatAddr(s.start)}-${formatAddr(s.end)}`).join(' ')}` +
      `${t.maxFromIntervals ? '' : ' (frequency relative to the busiest region: the format stores no intervals)'}`,
    `working set: bytes of regions with nr_accesses >= ${thres} of ${t.maxNrAccesses} (damo wss --acc_thres ${thres}; ` +
      `damo's default is --acc_thres 1, see damon-fleet report wss)`,
    `${'time'.padStart(9)}  ${'low address'.padEnd(width - 12)}high  wss@acc_thres ${thres}`,
  ];
  for (let i = 0; i < laid.length; i += per) {
    const row = average(laid.slice(i, i + per));
    const secs = Number(row.endNs - t0) / 1e9;
    lines.push(`${(secs.toFixed(1) + 's').padStart(9)} |${heatStrip(row, width)}| ${formatBytes(workingSetBytes(row))}`);
  }
  return lines.join('\n') + '\n';
}

export async function main(argv: string[]): Promise<number> {
  if ((SUBCOMMANDS as readonly string[]).includes(argv[0] ?? '')) return runReportCommand(argv[0] as Subcommand, argv.slice(1));
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
  let input;
  try {
    input = await loadResultFile(positionals[0]!);
  } catch (e) {
    if (!(e instanceof ReportError)) throw e;
    process.stderr.write(`damon-fleet report: ${e.message}\n`);
    return 1;
  }
  const out = process.stdout;
  out.write(`${input.source}, ${Math.max(0, ...input.targets.map((t) => t.records.length))} snapshots\n`);
  for (const w of input.warnings) out.write(`warning: ${w}\n`);
  let targets: ReportTarget[];
  try {
    targets = pickTarget(input, values.target);
  } catch (e) {
    process.stderr.write(`damon-fleet report: ${(e as Error).message}\n`);
    return 1;
  }
  for (const t of targets) out.write(textHeatmap(t, rows, width));
  return 0;
}
