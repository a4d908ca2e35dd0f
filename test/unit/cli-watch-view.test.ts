// `watch`'s view without a fleet: per-target summaries from records (working set, hottest
// and coldest ranges, drift against the configured or tuned aggregation interval, missing
// records), the lines and JSON drawn from them, and the terminal redrawn in place.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { WriteStream } from 'node:tty';
import { SessionState, TargetState, type AggregationRecord, type Session } from '../../gen/damon/v1/damon.js';
import { WatchModel } from '../../cli/watch-model.js';
import { driftText, renderWatch, snapshotJson } from '../../cli/watch-render.js';
import { TerminalScreen, clip, fitFrame } from '../../cli/terminal-screen.js';

const MiB = 1 << 20;
const BASE = 0x7f0000000000;

function session(o: Partial<Session> = {}): Session {
  return {
    id: 's1',
    attrs: { samplingIntervalUs: 5000n, aggregationIntervalUs: 100_000n, updateIntervalUs: 1_000_000n, minNrRegions: 10, maxNrRegions: 1000, resultFile: '', resultFormat: 'binary', schemes: [], intervalsGoal: undefined },
    attrsText: '5000 100000 1000000 10 1000', schemesText: '',
    targets: [{ host: 'h1', pid: 10 }, { host: 'h2', pid: 20 }],
    state: SessionState.SESSION_STATE_ON,
    operations: 'synthetic',
    syntheticWorkload: 'hot5',
    targetStatus: [
      { target: { host: 'h1', pid: 10 }, state: TargetState.TARGET_STATE_RUNNING, operations: 'synthetic', message: '' },
      { target: { host: 'h2', pid: 20 }, state: TargetState.TARGET_STATE_FAILED, operations: '', message: 'no such process' },
    ],
    offReason: '',
    revision: 3n,
    createdAtMs: 0n,
    updatedAtMs: 0n,
    schemeStats: [],
    ...o,
  };
}

/** A record of h1:10: 1 MiB hot (20/20), 2 MiB warm (5/20), 5 MiB cold (0/20, age 7). */
function record(sequence: bigint, lengthMs: number, o: Partial<AggregationRecord> = {}): AggregationRecord {
  const end = 1_000_000_000n * sequence;
  return {
    sessionId: 's1',
    host: 'h1',
    pid: 10,
    startTimeNs: end - BigInt(lengthMs * 1e6),
    endTimeNs: end,
    maxNrAccesses: 20,
    regions: [
      { start: BigInt(BASE), end: BigInt(BASE + MiB), nrAccesses: 20, age: 2 },
      { start: BigInt(BASE + MiB), end: BigInt(BASE + 3 * MiB), nrAccesses: 5, age: 1 },
      { start: BigInt(BASE + 3 * MiB), end: BigInt(BASE + 8 * MiB), nrAccesses: 0, age: 7 },
    ],
    operations: 'synthetic',
    sequence,
    agentInstance: 'i1',
    droppedBefore: 0n,
    packed: undefined,
    ...o,
  };
}

test('a target summary: working set at half the samples, hottest and coldest ranges, drift over recent intervals, missing records', () => {
  const m = new WatchModel('s1');
  m.setSession(session());
  m.addRecord(record(1n, 110), 1000);
  m.addRecord(record(2n, 130), 2000);
  m.addRecord(record(5n, 120), 3000); // 3 and 4 missing
  m.addRecord(record(5n, 120), 3100); // the same again: not counted
  m.addRecord(record(9n, 100, { sessionId: 'other' }), 3200); // another session's
  const [h1, h2] = m.summaries(2);
  assert.equal(h1.state, 'running');
  assert.equal(h1.records, 3);
  assert.equal(h1.lastSequence, 5n);
  assert.equal(h1.missing, 2n);
  assert.equal(h1.regions, 3);
  assert.equal(h1.monitoredBytes, 8 * MiB);
  assert.equal(h1.workingSetBytes, MiB, 'only the range accessed in >= 50% of the samples');
  assert.deepEqual(h1.hottest.map((r) => [r.bytes, r.frequency]), [[MiB, 1], [2 * MiB, 0.25]]);
  assert.deepEqual(h1.coldest.map((r) => [r.bytes, r.frequency]), [[5 * MiB, 0], [2 * MiB, 0.25]]);
  assert.equal(h1.coldest[0].forUs, 7 * 100_000, 'age in configured aggregation intervals');
  assert.equal(h1.realAggregationUs, 120_000, 'the mean of the recent intervals');
  assert.equal(h1.configuredAggregationUs, 100_000, "the session's aggregation interval");
  assert.equal(h2.state, 'failed');
  assert.equal(h2.message, 'no such process');
  assert.equal(h2.records, 0);
  assert.equal(driftText(120_000, 100_000), '+20.0%');
  assert.equal(driftText(95_000, 100_000), '-5.0%');
});

test('a tuned sampling interval sets the configured aggregation interval: max_nr_accesses samples of it', () => {
  const m = new WatchModel('s1');
  m.setSession(session());
  m.addRecord(record(1n, 210, { samplingIntervalUs: 10_000n }), 1000);
  const [h1] = m.summaries(1);
  assert.equal(h1.configuredAggregationUs, 200_000);
  assert.equal(h1.samplingUs, 10_000);
});

test('--host keeps that host\'s targets; records of targets the session does not list still show', () => {
  const m = new WatchModel('s1', 'h1');
  m.setSession(session());
  m.addRecord(record(1n, 100, { pid: 99 }), 1000);
  assert.deepEqual(m.summaries(1).map((t) => `${t.host}:${t.pid}:${t.state}`), ['h1:10:running', 'h1:99:-']);
});

test('the view: header, a block per target, and nothing from the server that could drive the terminal', () => {
  const m = new WatchModel('s1');
  m.setSession(session({ targetStatus: [{ target: { host: 'h2', pid: 20 }, state: TargetState.TARGET_STATE_FAILED, operations: '', message: 'bad \x1b[2J thing' }] }));
  m.addRecord(record(1n, 100), Date.now());
  const lines = renderWatch(m, { width: 60, top: 1, source: 'WatchRecords at c:1', now: Date.now() });
  const text = lines.join('\n');
  assert.match(lines[0], /^session s1: on, 2 targets, records from WatchRecords at c:1 /);
  assert.match(text, /^h1:10  -  synthetic  record #1, 0\.\ds ago$/m);
  assert.match(text, /^  3 regions over 8\.00 MiB, working set 1\.00 MiB \(12\.5%\)$/m);
  assert.match(text, /^  aggregation 100\.0 ms real vs 100\.0 ms configured \(\+0\.0%\)$/m);
  assert.match(text, /^  hottest 0x7f0000000000-0x7f0000100000 +1\.00 MiB 100% for 200\.0 ms$/m);
  assert.match(text, /^  coldest 0x7f0000300000-0x7f0000800000 +5\.00 MiB +0% for 700\.0 ms$/m);
  const strip = lines.find((l) => l.startsWith('  ['))!;
  assert.equal(strip.length, 2 + 1 + 56 + 1, 'the strip fills the width');
  assert.match(text, /^h2:20  failed  no record yet$/m);
  assert.doesNotMatch(text, /\x1b/, 'control characters from the server are escaped');
  assert.match(text, /bad \\x1b\[2J thing/);
});

test('--json: one object per view, with byte counts and ranges', () => {
  const m = new WatchModel('s1');
  m.setSession(session());
  m.addRecord(record(1n, 100), 1000);
  const v = JSON.parse(JSON.stringify(snapshotJson(m, 1, 5000))) as { targets: Array<Record<string, unknown>>; workingSetThreshold: number; state: string };
  assert.equal(v.state, 'on');
  assert.equal(v.workingSetThreshold, 0.5);
  assert.deepEqual(v.targets[0], {
    host: 'h1', pid: 10, state: 'running', operations: 'synthetic', records: 1, lastSequence: '1', missing: '0',
    regions: 3, monitoredBytes: 8 * MiB, workingSetBytes: MiB, realAggregationUs: 100_000, configuredAggregationUs: 100_000,
    hottest: [{ start: '0x7f0000000000', end: '0x7f0000100000', bytes: MiB, frequency: 1, forUs: 200_000 }],
    coldest: [{ start: '0x7f0000300000', end: '0x7f0000800000', bytes: 5 * MiB, frequency: 0, forUs: 700_000 }],
  });
  assert.deepEqual(v.targets[1], { host: 'h2', pid: 20, state: 'failed', operations: '', message: 'no such process', records: 0, lastSequence: '0', missing: '0' });
});

/** A terminal of `columns` x `rows` that keeps what is written to it. */
function fakeTerminal(columns: number, rows: number): WriteStream & { written: string } {
  const t = Object.assign(new EventEmitter(), { columns, rows, written: '', write(s: string) { t.written += s; return true; } });
  return t as unknown as WriteStream & { written: string };
}

test('the terminal: alternate screen, frames clipped to the window, redrawn on resize, restored once', () => {
  const out = fakeTerminal(20, 4);
  const screen = new TerminalScreen(out);
  let resized = 0;
  screen.enter(() => {
    resized++;
    screen.draw(['title', 'a'.repeat(30), 'b', 'c', 'd', 'e']);
  });
  assert.ok(out.written.startsWith('\x1b[?1049h\x1b[?25l'), 'alternate screen, cursor hidden');
  screen.draw(['title', 'a'.repeat(30)]);
  assert.match(out.written, /\x1b\[H\x1b\[7mtitle\x1b\[0m\x1b\[K\r\naaaaaaaaaaaaaaaaaaa…\x1b\[K\x1b\[J$/);
  out.rows = 3;
  out.emit('resize');
  assert.equal(resized, 1);
  assert.match(out.written, /a…\x1b\[K\r\n… 4 more lines .*…\x1b\[K\x1b\[J$/, 'what does not fit is counted on the last row');
  screen.restore();
  screen.restore();
  assert.ok(out.written.endsWith('\x1b[?25h\x1b[?1049l'));
  assert.equal(out.written.split('\x1b[?1049l').length, 2, 'restored once');
  assert.equal(out.listenerCount('resize'), 0);
  assert.equal(clip('abc', 3), 'abc');
  assert.equal(clip('abcd', 3), 'ab…');
  assert.deepEqual(fitFrame(['1', '2', '3'], 10, 3), ['1', '2', '3']);
});
