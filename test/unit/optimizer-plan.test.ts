// The example optimizer's plan: access frequency as nr_accesses / max_nr_accesses, the
// hottest and coldest ranges, and what it would keep in fast memory or reclaim.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatPlan, frequencyPct, planTarget } from '../../examples/optimizer.js';
import type { AggregationRecord } from '../../gen/damon/v1/damon.js';

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
      [10n * MiB, 110n * MiB, 0, 5], // 0% for 5 intervals: reclaim
      [110n * MiB, 130n * MiB, 0, 1], // 0% but young: leave
      [130n * MiB, 134n * MiB, 4, 0], // 20%: keep (at the threshold)
      [134n * MiB, 200n * MiB, 2, 9], // 10%: leave
    ]),
    { hotPct: 20, coldPct: 5, minAge: 2, top: 2 },
  );
  assert.equal(p.keepBytes, 14n * MiB);
  assert.equal(p.reclaimBytes, 100n * MiB);
  assert.equal(p.otherBytes, 86n * MiB);
  assert.equal(p.totalBytes, 200n * MiB);
  assert.deepEqual(p.hottest.map((r) => [r.start, r.frequencyPct]), [[0n, 90], [130n * MiB, 20]]);
  // Coldest: lowest frequency, then the longest cold.
  assert.deepEqual(p.coldest.map((r) => [r.start, r.age]), [[10n * MiB, 5], [110n * MiB, 1]]);
  const text = formatPlan(p, { hotPct: 20, coldPct: 5, minAge: 2, top: 2 });
  assert.match(text, /^session s host h pid 42: record #7 \(synthetic\), 5 regions over 200\.0 MiB, max_nr_accesses 20\n/);
  assert.match(text, /\n {4}0x0-0xa00000 +10\.0 MiB +90% {2}age 3\n/);
  assert.match(text, /plan: keep in fast memory 14\.0 MiB \(7\.0%, >= 20%\), reclaim 100\.0 MiB \(50\.0%, <= 5% for >= 2 intervals\), leave 86\.0 MiB$/);
});

test('byte sizes print in binary units', () => {
  assert.equal(formatBytes(0n), '0 B');
  assert.equal(formatBytes(1023n), '1023 B');
  assert.equal(formatBytes(4096n), '4.0 KiB');
  assert.equal(formatBytes(5n * (1n << 30n)), '5.0 GiB');
});
