// The example optimizer's plan: access frequency as nr_accesses / max_nr_accesses, the
// hottest and coldest ranges, and what it would keep in fast memory or reclaim.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatPlan, frequencyPct, planTarget } from '../../examples/optimizer.js';
import type { AggregationRecord } from '../../gen/damon/v1/damon.js';
import { ReclaimPlanner, carryColdSince, coldSpansOf, type ReclaimAsk } from '../../examples/reclaim-planner.js';

const MiB = 1n << 20n;

function rec(regions: [bigint, bigint, number, number][]): AggregationRecord {
  return {
    sessionId: 's',
    host: 'h',
    pid: 42,
    startTimeNs: 0n,
    endTimeNs: 100_000_000n,
    maxNrAccesses: 20,
    regions: regions.map(([start, end, nrAccesses, age]) => ({ start, end, nrAccesses, age })),
    operations: 'synthetic',
    sequence: 7n,
    agentInstance: 'i',
    droppedBefore: 0n,
    packed: undefined,
  };
}

test('frequency is nr_accesses over max_nr_accesses, in percent', () => {
  assert.equal(frequencyPct(20, 20), 100);
  assert.equal(frequencyPct(5, 20), 25);
  assert.equal(frequencyPct(0, 20), 0);
  assert.equal(frequencyPct(3, 0), 0);
});

test('hot ranges are kept, long-cold ones reclaimed, the rest left; hottest and coldest listed', () => {
  const p = planTarget(
    rec([
      [0n, 10n * MiB, 18, 3], // 90%: keep
      [10n * MiB, 110n * MiB, 0, 5], // 0% for 600 ms (age 5 + 1 intervals of 100 ms): reclaim
      [110n * MiB, 130n * MiB, 0, 1], // 0% but for 200 ms only (age 1 of 100 ms intervals): leave
      [130n * MiB, 134n * MiB, 4, 0], // 20%: keep (at the threshold)
      [134n * MiB, 200n * MiB, 2, 9], // 10%: leave
    ]),
    { hotPct: 20, coldPct: 5, minAgeMs: 300, top: 2 },
  );
  assert.equal(p.keepBytes, 14n * MiB);
  assert.equal(p.reclaimBytes, 100n * MiB);
  assert.equal(p.otherBytes, 86n * MiB);
  assert.equal(p.totalBytes, 200n * MiB);
  assert.deepEqual(p.hottest.map((r) => [r.start, r.frequencyPct]), [[0n, 90], [130n * MiB, 20]]);
  // Coldest: lowest frequency, then the longest cold.
  assert.deepEqual(p.coldest.map((r) => [r.start, r.age]), [[10n * MiB, 5], [110n * MiB, 1]]);
  const text = formatPlan(p, { hotPct: 20, coldPct: 5, minAgeMs: 300, top: 2 });
  assert.match(text, /^session s host h pid 42: record #7 \(synthetic\), 5 regions over 200\.0 MiB, max_nr_accesses 20\n/);
  assert.match(text, /\n {4}0x0-0xa00000 +10\.0 MiB +90% {2}age 3\n/);
  assert.match(text, /plan: keep in fast memory 14\.0 MiB \(7\.0%, >= 20%\), reclaim 100\.0 MiB \(50\.0%, <= 5% for >= 0\.3 s\), leave 86\.0 MiB$/);
});

test('byte sizes print in binary units', () => {
  assert.equal(formatBytes(0n), '0 B');
  assert.equal(formatBytes(1023n), '1023 B');
  assert.equal(formatBytes(4096n), '4.0 KiB');
  assert.equal(formatBytes(5n * (1n << 30n)), '5.0 GiB');
});

// ---- the reclaimer's plan (examples/reclaim-planner.ts) -------------------------------------

const KiB = 1024n;

/** A record of target (host, pid) ending at `endMs`, aggregation interval 100 ms. */
function at(endMs: number, regions: [bigint, bigint, number, number][], host = 'h', pid = 42): AggregationRecord {
  return { ...rec(regions), host, pid, startTimeNs: BigInt(endMs - 100) * 1_000_000n, endTimeNs: BigInt(endMs) * 1_000_000n };
}

const spans = (asks: ReclaimAsk[]) => asks.map((a) => [a.host, a.pid, a.start, a.end]);

test('cold spans: nr_accesses 0 regions, cold since (age + 1) intervals before the record ended; adjacent ones of one age merge', () => {
  const c = coldSpansOf(
    at(10_000, [[0n, 4n * KiB, 0, 9], [4n * KiB, 8n * KiB, 0, 9], [8n * KiB, 12n * KiB, 0, 4], [12n * KiB, 16n * KiB, 3, 50], [16n * KiB, 20n * KiB, 0, 0]]),
    0,
  );
  assert.deepEqual(c, [
    { start: 0n, end: 8n * KiB, sinceMs: 10_000 - 10 * 100 },
    { start: 8n * KiB, end: 12n * KiB, sinceMs: 10_000 - 5 * 100 },
    { start: 16n * KiB, end: 20n * KiB, sinceMs: 10_000 - 100 },
  ]);
  // A frequency threshold: 3 of 20 samples is 15%.
  assert.equal(coldSpansOf(at(10_000, [[0n, 4n * KiB, 3, 0]]), 15).length, 1);
  assert.equal(coldSpansOf(at(10_000, [[0n, 4n * KiB, 3, 0]]), 10).length, 0);
});

test('a range that stays cold keeps the earliest time it is known cold, across records whose regions split and merge', () => {
  const prev = [{ start: 0n, end: 8n * KiB, sinceMs: 1000 }];
  const next = [{ start: 4n * KiB, end: 16n * KiB, sinceMs: 5000 }];
  assert.deepEqual(carryColdSince(prev, next), [
    { start: 4n * KiB, end: 8n * KiB, sinceMs: 1000 },
    { start: 8n * KiB, end: 16n * KiB, sinceMs: 5000 },
  ]);
  // A part that is not cold now is dropped, whatever it was.
  assert.deepEqual(carryColdSince(prev, []), []);
});

test('only what stayed cold for min-age is asked for, page aligned, oldest first, once', () => {
  const p = new ReclaimPlanner({ minAgeMs: 2000, rateBytesPerS: 1e9, minBytes: 4096 }, 0);
  // [0, 64K) cold for 3 s, [64K, 128K) for 1 s, [128K, 192K) hot.
  p.observe(at(10_000, [[0n, 64n * KiB, 0, 29], [64n * KiB, 128n * KiB, 0, 9], [128n * KiB, 192n * KiB, 5, 100]]));
  assert.deepEqual(spans(p.plan(10_000)), [['h', 42, 0n, 64n * KiB]]);
  assert.deepEqual(p.plan(10_000), [], 'asked once');
  // A second later the next range is old enough too; the first is not asked again.
  p.observe(at(11_000, [[0n, 64n * KiB, 0, 39], [64n * KiB, 128n * KiB, 0, 19], [128n * KiB, 192n * KiB, 5, 110]]));
  assert.deepEqual(spans(p.plan(11_000)), [['h', 42, 64n * KiB, 128n * KiB]]);
});

test('a range that showed an access is asked for again once cold for min-age anew', () => {
  const p = new ReclaimPlanner({ minAgeMs: 1000, rateBytesPerS: 1e9, minBytes: 4096 }, 0);
  p.observe(at(5000, [[0n, 64n * KiB, 0, 20]]));
  assert.equal(p.plan(5000).length, 1);
  p.observe(at(5100, [[0n, 64n * KiB, 4, 0]])); // touched
  p.observe(at(5200, [[0n, 64n * KiB, 0, 0]])); // cold again, for 100 ms
  assert.deepEqual(p.plan(5200), []);
  p.observe(at(6300, [[0n, 64n * KiB, 0, 10]])); // cold since 5200: 1.1 s
  assert.deepEqual(spans(p.plan(6300)), [['h', 42, 0n, 64n * KiB]]);
});

test('the byte rate caps what is asked: across targets, cut at a page, the rest later', () => {
  // 64 KiB a second, bursts of 64 KiB.
  const p = new ReclaimPlanner({ minAgeMs: 0, rateBytesPerS: 64 * 1024, minBytes: 4096 }, 0);
  p.observe(at(1000, [[0n, 40n * KiB, 0, 50]], 'h1', 1)); // cold since -4100: older
  p.observe(at(1000, [[0n, 100n * KiB, 0, 10]], 'h2', 2));
  assert.deepEqual(spans(p.plan(1000)), [['h1', 1, 0n, 40n * KiB], ['h2', 2, 0n, 24n * KiB]]);
  assert.deepEqual(p.plan(1000), [], 'the budget is spent');
  // Half a second later: 32 KiB more.
  assert.deepEqual(spans(p.plan(1500)), [['h2', 2, 24n * KiB, 56n * KiB]]);
  assert.equal(p.pendingBytes(1500), 44n * KiB);
});

test('refusals: a gone target is forgotten; over the controller\'s limit, asked again after the delay; other refusals pause the target', () => {
  const p = new ReclaimPlanner({ minAgeMs: 0, rateBytesPerS: 1e9, minBytes: 4096, failureBackoffMs: 10_000 }, 0);
  p.observe(at(1000, [[0n, 64n * KiB, 0, 5]], 'h1', 1));
  p.observe(at(1000, [[0n, 64n * KiB, 0, 5]], 'h2', 2));
  p.observe(at(1000, [[0n, 64n * KiB, 0, 5]], 'h3', 3));
  const [a1, a2, a3] = p.plan(1000);
  p.settle(a1, { kind: 'gone' }, 1000);
  p.settle(a2, { kind: 'later', retryInMs: 500 }, 1000);
  p.settle(a3, { kind: 'failed' }, 1000);
  assert.deepEqual(p.plan(1200), []);
  assert.deepEqual(spans(p.plan(1600)), [['h2', 2, 0n, 64n * KiB]], 'retried after the delay; the gone one never');
  p.observe(at(2000, [[0n, 128n * KiB, 0, 5]], 'h3', 3));
  assert.deepEqual(p.plan(5000), [], 'paused after a refusal');
  assert.deepEqual(spans(p.plan(11_001)), [['h3', 3, 64n * KiB, 128n * KiB]], 'the part not asked before, after the pause');
});

test('ranges smaller than min-bytes, or unaligned edges, are not asked for', () => {
  const p = new ReclaimPlanner({ minAgeMs: 0, rateBytesPerS: 1e9, minBytes: 64 * 1024 }, 0);
  p.observe(at(1000, [[0n, 32n * KiB, 0, 5], [100n * KiB + 1n, 200n * KiB + 7n, 0, 5]]));
  assert.deepEqual(spans(p.plan(1000)), [['h', 42, 104n * KiB, 200n * KiB]]);
});
