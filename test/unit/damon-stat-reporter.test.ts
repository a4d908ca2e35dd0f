// The agent's DAMON_STAT reporter: each refresh publishes one DamonStat per session on
// damon.stat.<session>.<host> with the summaries of every running target and of them
// together; a target that ends leaves at once; a sink that throws does not stop it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DamonStatReporter } from '../../agent/daemon/damon-stat-reporter.js';
import { damonStat } from '../../common/damon-stat.js';
import { statOnSubject } from '../../common/subjects.js';
import { silentLogger } from '../../common/log.js';
import { DamonStat } from '../../gen/damon/v1/damon.js';
import type { AggregationRecord } from '../../agent/records/record.js';

const rec = (targetId: number, regions: AggregationRecord['regions']): AggregationRecord => ({ targetId, startNs: 0n, endNs: 1n, maxNrAccesses: 20, regions });
const A = [{ start: 0, end: 4096, nrAccesses: 2, age: 3 }, { start: 4096, end: 12288, nrAccesses: 0, age: 4 }];
const B = [{ start: 1 << 20, end: (1 << 20) + 8192, nrAccesses: 0, age: 0 }];

test('one DamonStat per session and refresh: per target and the targets together, as damonStat computes them', () => {
  const sent: { subject: string; msg: DamonStat }[] = [];
  const r = new DamonStatReporter({ host: 'db1.example.com', instanceId: 'i-1', log: silentLogger, now: () => 1_700_000_000_000 });
  r.setSink({ publish: (subject, data) => sent.push({ subject, msg: statOnSubject(DamonStat.decode(data), subject) }) });
  r.record('s1', rec(10, A), 100_000);
  r.record('s1', rec(11, B), 100_000);
  r.record('s2', rec(10, B), 5_000);
  r.refresh();
  assert.deepEqual(sent.map((s) => s.subject).sort(), ['damon.stat.s1.db1_example_com', 'damon.stat.s2.db1_example_com']);
  const s1 = sent.find((s) => s.msg.sessionId === 's1')!.msg;
  assert.equal(s1.agentInstance, 'i-1');
  assert.equal(s1.timeNs, 1_700_000_000_000_000_000n);
  const together = damonStat([{ regions: A, aggregationUs: 100_000 }, { regions: B, aggregationUs: 100_000 }])!;
  assert.equal(s1.hostSummary!.estimatedMemoryBandwidth, BigInt(together.estimatedMemoryBandwidth));
  assert.deepEqual(s1.hostSummary!.memoryIdleMsPercentiles, together.memoryIdleMsPercentiles.map(BigInt));
  assert.equal(s1.hostSummary!.totalBytes, 20_480n);
  assert.deepEqual(s1.targets.map((t) => [t.pid, t.aggregationIntervalUs, t.summary!.totalBytes]), [[10, 100_000n, 12_288n], [11, 100_000n, 8192n]]);
  // A newer record replaces the target's regions.
  r.record('s1', rec(10, [{ start: 0, end: 4096, nrAccesses: 0, age: 9 }]), 100_000);
  assert.equal(r.refresh().find((s) => s.sessionId === 's1')!.targets[0].summary.memoryIdleMsPercentiles[100], 1000);
});

test('a target that ends leaves the summaries at once; the session goes with its last target', () => {
  const r = new DamonStatReporter({ host: 'h', instanceId: 'i', log: silentLogger });
  r.record('s1', rec(10, A), 100_000);
  r.record('s1', rec(11, B), 100_000);
  r.refresh();
  r.targetEnded('s1', 11);
  assert.deepEqual(r.current().get('s1')!.targets.map((t) => t.pid), [10]);
  assert.equal(r.current().get('s1')!.host.totalBytes, 12_288);
  r.targetEnded('s1', 10);
  assert.equal(r.current().has('s1'), false);
  assert.deepEqual(r.refresh(), []);
});

test('a sink that throws (a closed connection): summaries are still computed, and published again later', () => {
  let fail = true;
  const sent: string[] = [];
  const r = new DamonStatReporter({ host: 'h', instanceId: 'i', log: silentLogger });
  r.setSink({ publish: (subject) => { if (fail) throw new Error('connection closed'); sent.push(subject); } });
  r.record('s1', rec(10, A), 100_000);
  assert.equal(r.refresh().length, 1);
  assert.deepEqual(sent, []);
  fail = false;
  r.refresh();
  assert.deepEqual(sent, ['damon.stat.s1.h']);
});

test('DamonStat carries the session\'s scheme statistics on this host', () => {
  const sent: DamonStat[] = [];
  const stats = [{ scheme: 0, nrTried: 5n, szTried: 20_480n, nrApplied: 2n, szApplied: 8192n, qtExceeds: 1n, active: true }];
  const r = new DamonStatReporter({ host: 'h', instanceId: 'i', log: silentLogger, schemeStats: (id) => (id === 's1' ? stats : []) });
  r.setSink({ publish: (_subject, data) => sent.push(DamonStat.decode(data)) });
  r.record('s1', rec(10, A), 100_000);
  r.record('s2', rec(10, A), 100_000);
  r.refresh();
  assert.deepEqual(sent.find((m) => m.sessionId === 's1')!.schemes, stats);
  assert.deepEqual(sent.find((m) => m.sessionId === 's2')!.schemes, []);
});
