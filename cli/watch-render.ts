// `watch` as lines of text: a header for the session, then per target its state, regions,
// working set, sampling drift, a heat strip and its hottest and coldest ranges. The same
// lines serve the terminal (redrawn in place) and plain snapshots (pipes, logs); --json
// takes snapshotJson() instead.
import { DEFAULT_WORKING_SET_THRESHOLD } from '../agent/engine/working-set.js';
import { formatAddr, formatBytes, heatStrip } from '../agent/recorder/format.js';
import { sessionStateName } from './fleet-text.js';
import { ago, cell, duration } from './text-table.js';
import type { RangeSummary, TargetSummary, WatchModel } from './watch-model.js';

export interface RenderOptions {
  /** Columns to fit (the heat strip is as wide as this allows). */
  width: number;
  /** How many hottest and coldest ranges per target. */
  top: number;
  /** "WatchRecords at 127.0.0.1:7100", "NATS nats://...": where records come from. */
  source: string;
  now: number;
}

function pct(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '0%';
}

/** "+1.2%" of real over configured: how far the intervals drift from what was asked. */
export function driftText(realUs: number, configuredUs: number): string {
  const d = (100 * (realUs - configuredUs)) / configuredUs;
  return `${d >= 0 ? '+' : ''}${d.toFixed(1)}%`;
}

/** How long a range has kept its frequency; "new" when it changed in the latest aggregation (age 0). */
function keptFor(us: number): string {
  return us > 0 ? `for ${duration(us)}` : 'new';
}

function rangeLine(label: string, r: RangeSummary): string {
  return (
    `  ${label} ${formatAddr(r.start)}-${formatAddr(r.end)} ${formatBytes(r.bytes).padStart(10)} ` +
    `${(r.frequency * 100).toFixed(0).padStart(3)}% ${keptFor(r.forUs)}`
  );
}

function targetLines(t: TargetSummary, o: RenderOptions): string[] {
  const head =
    `${cell(t.host)}:${t.pid}  ${t.state}` +
    (t.operations ? `  ${cell(t.operations)}` : '') +
    (t.records > 0 ? `  record #${t.lastSequence}, ${ago(t.lastAtMs, o.now)}` : '  no record yet') +
    (t.missing > 0n ? `  ${t.missing} missing${t.droppedByAgent > 0n ? ` (${t.droppedByAgent} dropped by the agent)` : ''}` : '');
  const lines = [head];
  if (t.message) lines.push(`  ${cell(t.message)}`);
  if (!t.record) return lines;
  lines.push(
    `  ${t.regions} regions over ${formatBytes(t.monitoredBytes)}, working set ${formatBytes(t.workingSetBytes)} ` +
      `(${pct(t.workingSetBytes, t.monitoredBytes)})`,
  );
  if (t.realAggregationUs !== undefined && t.configuredAggregationUs !== undefined) {
    lines.push(
      `  aggregation ${duration(t.realAggregationUs)} real vs ${duration(t.configuredAggregationUs)} configured ` +
        `(${driftText(t.realAggregationUs, t.configuredAggregationUs)})` +
        (t.samplingUs !== undefined ? `, sampling ${duration(t.samplingUs)}` : ''),
    );
  }
  lines.push(`  [${heatStrip(t.record, Math.max(10, o.width - 4))}]`);
  t.hottest.forEach((r, i) => lines.push(rangeLine(i === 0 ? 'hottest' : '       ', r)));
  t.coldest.forEach((r, i) => lines.push(rangeLine(i === 0 ? 'coldest' : '       ', r)));
  return lines;
}

/** Every line of one view of the session. */
export function renderWatch(m: WatchModel, o: RenderOptions): string[] {
  const s = m.session;
  const targets = m.summaries(o.top);
  const state = s ? sessionStateName(s.state) + (s.offReason && sessionStateName(s.state) !== 'on' ? ` (${cell(s.offReason)})` : '') : '?';
  const lines = [
    `session ${cell(m.sessionId)}: ${state}, ${targets.length} target${targets.length === 1 ? '' : 's'}, ` +
      `records from ${o.source}  ${new Date(o.now).toISOString().slice(11, 19)}Z`,
    `  attrs ${s ? cell(s.attrsText) : '?'}; working set: accessed in >= ${DEFAULT_WORKING_SET_THRESHOLD * 100}% of samples`,
    '  heat: monitored ranges only (gaps left out), " " idle .. "@" hottest; %: share of samples accessed',
  ];
  if (m.problem) lines.push(`  ! ${cell(m.problem, 300)}`);
  for (const t of targets) lines.push('', ...targetLines(t, o));
  return lines;
}

const rangeJson = (r: RangeSummary) => ({ start: formatAddr(r.start), end: formatAddr(r.end), bytes: r.bytes, frequency: r.frequency, forUs: r.forUs });

/** One snapshot for --json: one line of JSON per view. */
export function snapshotJson(m: WatchModel, top: number, now: number): unknown {
  const s = m.session;
  return {
    time: new Date(now).toISOString(),
    session: m.sessionId,
    state: s ? sessionStateName(s.state) : undefined,
    ...(m.problem ? { problem: m.problem } : {}),
    workingSetThreshold: DEFAULT_WORKING_SET_THRESHOLD,
    targets: m.summaries(top).map((t) => ({
      host: t.host,
      pid: t.pid,
      state: t.state,
      operations: t.operations,
      ...(t.message ? { message: t.message } : {}),
      records: t.records,
      lastSequence: t.lastSequence.toString(),
      missing: t.missing.toString(),
      ...(t.record
        ? {
            regions: t.regions,
            monitoredBytes: t.monitoredBytes,
            workingSetBytes: t.workingSetBytes,
            realAggregationUs: t.realAggregationUs,
            configuredAggregationUs: t.configuredAggregationUs,
            ...(t.samplingUs !== undefined ? { samplingUs: t.samplingUs } : {}),
            hottest: t.hottest.map(rangeJson),
            coldest: t.coldest.map(rangeJson),
          }
        : {}),
    })),
  };
}
