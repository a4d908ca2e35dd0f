// Parsing trace_pipe lines of the damon:damon_aggregated event and assembling them into
// per-target aggregations (pure: no files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AggregationAssembler, LineSplitter, parseTraceLine, TraceFormatError, type AggregatedEvent } from '../../agent/kdamond/trace-lines.js';

const LINE = '       kdamond.0-812     [001] .....  5012.345678: damon_aggregated: target_id=0 nr_regions=14 139625753477120-139625760739328: 3 7';

function ev(targetId: number, nrRegions: number, start: number, end: number, o: Partial<AggregatedEvent> = {}): AggregatedEvent {
  return { kind: 'aggregated', pid: 812, tsNs: 1_000_000_000n, targetId, nrRegions, start, end, nrAccesses: 1, age: 0, ...o };
}

test('a damon_aggregated line of Linux 6.12 parses into pid, time, target, region, accesses and age', () => {
  assert.deepEqual(parseTraceLine(LINE), {
    kind: 'aggregated',
    pid: 812,
    tsNs: 5012_345678_000n,
    targetId: 0,
    nrRegions: 14,
    start: 139625753477120,
    end: 139625760739328,
    nrAccesses: 3,
    age: 7,
  });
});

test('header variants parse: no flags column, a tgid column, a comm with spaces and dashes, nanosecond stamps', () => {
  const noFlags = parseTraceLine('kdamond.0-812 [000] 12.000001: damon_aggregated: target_id=1 nr_regions=2 4096-8192: 0 0');
  assert.equal(noFlags.kind, 'aggregated');
  assert.equal((noFlags as AggregatedEvent).tsNs, 12_000_001_000n);
  const tgid = parseTraceLine('  kdamond.0-812  (    812) [003] d..2. 12.5: damon_aggregated: target_id=0 nr_regions=1 4096-8192: 20 1');
  assert.equal((tgid as AggregatedEvent).pid, 812);
  assert.equal((tgid as AggregatedEvent).tsNs, 12_500_000_000n);
  const comm = parseTraceLine('my odd-task name-4242 [000] ..... 1.123456789: damon_aggregated: target_id=0 nr_regions=1 4096-8192: 2 3');
  assert.equal((comm as AggregatedEvent).pid, 4242);
  assert.equal((comm as AggregatedEvent).tsNs, 1_123_456_789n);
});

test('lost-event markers and other events are told apart', () => {
  assert.deepEqual(parseTraceLine('CPU:1 [LOST 42 EVENTS]'), { kind: 'lost', cpu: 1, count: 42 });
  assert.deepEqual(parseTraceLine('  bash-1 [000] ..... 1.0: sched_switch: prev_comm=bash'), { kind: 'other' });
});

test('a malformed damon_aggregated line is an error that quotes it', () => {
  assert.throws(
    () => parseTraceLine('kdamond.0-812 [001] ..... 1.0: damon_aggregated: context_id=0 target_id=0 nr_regions=1 0-4096: 1 1'),
    (e: unknown) => e instanceof TraceFormatError && /unexpected damon_aggregated format/.test(e.message) && e.message.includes('context_id=0'),
  );
  assert.throws(() => parseTraceLine('garbage damon_aggregated: target_id=0'), /unreadable damon_aggregated line/);
  assert.throws(
    () => parseTraceLine('kdamond.0-812 [001] ..... 1.0: damon_aggregated: target_id=0 nr_regions=1 18446744073709547520-18446744073709551615: 1 1'),
    /beyond 2\^53/,
  );
  assert.throws(() => parseTraceLine('kdamond.0-812 [001] ..... 1.0: damon_aggregated: target_id=0 nr_regions=1 8192-4096: 1 1'), /is empty/);
});

test('the assembler emits a target once all nr_regions events came, numbering aggregations', () => {
  const a = new AggregationAssembler(812, 2);
  assert.equal(a.push(ev(0, 2, 0, 4096)), undefined);
  const t0 = a.push(ev(0, 2, 4096, 8192));
  assert.deepEqual(t0, {
    targetIndex: 0,
    tsNs: 1_000_000_000n,
    aggregation: 1,
    afterGap: false,
    regions: [
      { start: 0, end: 4096, nrAccesses: 1, age: 0 },
      { start: 4096, end: 8192, nrAccesses: 1, age: 0 },
    ],
  });
  const t1 = a.push(ev(1, 1, 0, 4096));
  assert.equal(t1?.aggregation, 1);
  a.push(ev(0, 2, 0, 4096));
  assert.equal(a.push(ev(0, 2, 4096, 8192))?.aggregation, 2);
  assert.deepEqual(a.counts, { incomplete: 0, lostEvents: 0, foreign: 0, other: 0 });
});

test('events of other kdamonds and other lines are counted and skipped', () => {
  const a = new AggregationAssembler(812, 1);
  assert.equal(a.push(ev(0, 1, 0, 4096, { pid: 99 })), undefined);
  assert.equal(a.push({ kind: 'other' }), undefined);
  assert.ok(a.push(ev(0, 1, 0, 4096)));
  assert.equal(a.counts.foreign, 1);
  assert.equal(a.counts.other, 1);
});

test('an interrupted group is dropped, never emitted half: lost marker, new aggregation, other target', () => {
  const a = new AggregationAssembler(812, 2);
  // Lost events in the middle of target 0.
  a.push(ev(0, 3, 0, 4096));
  a.push({ kind: 'lost', cpu: 0, count: 5 });
  assert.equal(a.push(ev(0, 3, 4096, 8192)), undefined, 'a group that starts mid-way is not complete either');
  // A new aggregation of target 0 starts at a lower address; it follows a gap.
  a.push(ev(0, 3, 0, 4096));
  a.push(ev(0, 3, 4096, 8192));
  const after = a.push(ev(0, 3, 8192, 12288));
  assert.equal(after?.regions.length, 3);
  assert.equal(after?.afterGap, true, 'aggregations of target 0 were lost before this one');
  // Target 1's group interrupted by target 0 (whose one-region group is complete at once).
  a.push(ev(1, 2, 0, 4096));
  const one = a.push(ev(0, 1, 0, 4096));
  assert.equal(a.counts.incomplete, 3);
  assert.equal(a.counts.lostEvents, 5);
  assert.equal(one?.afterGap, true, 'a group was dropped since target 0 was last emitted');
  // Nothing lost since: target 0's next group follows directly.
  a.push(ev(0, 3, 0, 4096));
  a.push(ev(0, 3, 4096, 8192));
  assert.equal(a.push(ev(0, 3, 8192, 12288))?.afterGap, false);
});

test('events much later than their group started begin a new group (the next aggregation)', () => {
  const a = new AggregationAssembler(812, 1, 50_000_000n);
  a.push(ev(0, 3, 8192, 12288, { tsNs: 1_000_000_000n }));
  // 100 ms later, higher addresses after a mapping change: not the rest of the first group.
  a.push(ev(0, 3, 16384, 20480, { tsNs: 1_100_000_000n }));
  a.push(ev(0, 3, 20480, 24576, { tsNs: 1_100_000_010n }));
  const done = a.push(ev(0, 3, 24576, 28672, { tsNs: 1_100_000_020n }));
  assert.deepEqual(done?.regions.map((r) => r.start), [16384, 20480, 24576]);
  assert.equal(a.counts.incomplete, 1);
});

test('a target index beyond our targets is an error', () => {
  const a = new AggregationAssembler(812, 1);
  assert.throws(() => a.push(ev(1, 1, 0, 4096)), /target_id=1, but our kdamond \(pid 812\) has 1 target/);
});

test('the line splitter keeps a partial last line for the next chunk', () => {
  const s = new LineSplitter();
  assert.deepEqual(s.push('a\nb'), ['a']);
  assert.equal(s.partial, 'b');
  assert.deepEqual(s.push('c\n\nd\n'), ['bc', 'd']);
  assert.equal(s.partial, '');
});
