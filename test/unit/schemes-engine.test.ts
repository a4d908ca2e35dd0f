// Applying schemes as kdamond_apply_schemes does, on hand-made regions: which regions a
// size quota picks by priority, the split at what is left of the quota, the next window
// resuming where the last one ran out, qt_exceeds, a time quota paced by the measured
// throughput of the action, watermarks, apply intervals, statistics, and refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SchemeRefusedError, SchemesEngine } from '../../agent/schemes/schemes-engine.js';
import type { SchemeSpec } from '../../agent/schemes/scheme.js';
import { FakeView, P, RecordingActuator, quota, region, scheme } from './schemes-fakes.js';

function engine(schemes: SchemeSpec[], act = new RecordingActuator(), extra: { freeMemRate?: () => number; actionClockNs?: () => number; onActionError?: (m: string) => void } = {}) {
  return new SchemesEngine({ schemes, actuator: act, samplingUs: 5_000, aggregationUs: 100_000, ...extra });
}

/** One target: cold scores 25 (10 pages), 79 (20), 48 (5), 75 (15); see schemes-rules.test.ts. */
function fourRegions() {
  return [{ id: 7, regions: [region(0, 10, 20, 0), region(10, 30, 0, 100), region(30, 35, 10, 50), region(35, 50, 0, 0)] }];
}

test('a size quota takes the coldest regions first and splits the last one at the quota', () => {
  const act = new RecordingActuator();
  const view = new FakeView(fourRegions());
  const e = engine([scheme({ action: 'pageout', quota: quota({ bytes: 30 * P, resetIntervalMs: 1000 }) })], act);
  e.apply(view.aggregate());
  // min_score 75: [10, 30) (79) whole, then [35, 50) (75) cut at the 10 pages left.
  assert.deepEqual(act.pages(), [[10, 30], [35, 45]]);
  const regions = view.targets[0].regions;
  assert.deepEqual(regions.map((r) => [r.start / P, r.end / P]), [[0, 10], [10, 30], [30, 35], [35, 45], [45, 50]]);
  // The split keeps the counts; acted-on regions start aging again.
  assert.deepEqual(regions.map((r) => r.nrAccesses), [20, 0, 10, 0, 0]);
  assert.deepEqual(regions.map((r) => r.age), [0, 0, 50, 0, 0]);
  const [st] = e.stats();
  assert.deepEqual(
    { nrTried: st.nrTried, szTried: st.szTried, nrApplied: st.nrApplied, szApplied: st.szApplied, qtExceeds: st.qtExceeds, active: st.active },
    { nrTried: 2n, szTried: BigInt(30 * P), nrApplied: 2n, szApplied: BigInt(30 * P), qtExceeds: 0n, active: true },
  );

  // Same window: the quota is used up, nothing more.
  e.apply(view.aggregate());
  assert.equal(act.calls.length, 2);

  // Next window: the one before ended used up (qt_exceeds), and this one goes on after
  // [35, 45), where the last ran out, not from the start of the target.
  view.now += 1_000_000;
  e.apply(view.aggregate());
  assert.deepEqual(act.pages().slice(2), [[45, 50]]);
  assert.equal(e.stats()[0].qtExceeds, 1n);
  // The resume point is spent: the window after starts from the lowest address again.
  view.now += 1_000_000;
  e.apply(view.aggregate());
  // [0, 10) is too hot (25 < min_score 75): the first region is [10, 30), now cold with age 0 (75).
  assert.deepEqual(act.pages()[3], [10, 30], 'a window after one that did not run out starts at the lowest address');
  assert.equal(e.stats()[0].qtExceeds, 1n, 'the window with 5 pages did not use its quota up');
});

test('without a quota every matching region is acted on, whatever its score', () => {
  const act = new RecordingActuator();
  const view = new FakeView(fourRegions());
  const e = engine([scheme({ action: 'cold', pattern: { minSizeBytes: 0, maxSizeBytes: Infinity, minNrAccesses: 0, maxNrAccesses: 10, minAge: 0, maxAge: Infinity } })], act);
  e.apply(view.aggregate());
  assert.deepEqual(act.pages(), [[10, 30], [30, 35], [35, 50]]);
  assert.equal(e.stats()[0].szTried, BigInt(40 * P));
});

test('a quota that is not a whole number of pages counts the leftover tries with no bytes, as the kernel does', () => {
  const act = new RecordingActuator();
  const view = new FakeView([{ id: 1, regions: [region(0, 1), region(1, 2), region(2, 3)] }]);
  const e = engine([scheme({ action: 'pageout', quota: quota({ bytes: P + 100 }) })], act);
  e.apply(view.aggregate());
  assert.deepEqual(act.pages(), [[0, 1]]);
  const [st] = e.stats();
  assert.equal(st.nrTried, 3n);
  assert.equal(st.szTried, BigInt(P));
  assert.equal(st.nrApplied, 1n);
});

test('a time quota is paced by the measured throughput of the action', () => {
  // Every page takes 2 us: 4096 bytes per 2 us = 2048000 bytes per millisecond.
  let clockNs = 0;
  const act = new RecordingActuator();
  act.onApply = (bytes) => {
    clockNs += (bytes / P) * 2000;
  };
  const view = new FakeView([{ id: 1, regions: [region(0, 4096)] }]); // 16 MiB, all alike
  const e = engine([scheme({ action: 'pageout', quota: quota({ ms: 1, resetIntervalMs: 100 }) })], act, { actionClockNs: () => clockNs });
  e.apply(view.aggregate());
  // First window: the kernel's 4 MiB a millisecond before anything was measured.
  assert.deepEqual(act.pages(), [[0, 1024]]);
  e.apply(view.aggregate()); // 100 ms later: a new window, at the measured 2048000 bytes/ms = 500 pages
  assert.deepEqual(act.pages().slice(1), [[1024, 1524]]);
  assert.equal(e.stats()[0].qtExceeds, 1n);
  e.apply(view.aggregate());
  assert.deepEqual(act.pages().slice(2), [[1524, 2024]]);
});

test('schemes apply in their order; each is offered every region, split or not', () => {
  const act = new RecordingActuator();
  const view = new FakeView([{ id: 1, regions: [region(0, 10, 0, 30), region(10, 20, 15, 30)] }]);
  const stat = scheme({ action: 'stat' });
  const cold = scheme({ action: 'cold', quota: quota({ bytes: 4 * P }) });
  const willneed = scheme({ action: 'willneed', pattern: { minSizeBytes: 0, maxSizeBytes: Infinity, minNrAccesses: 10, maxNrAccesses: Infinity, minAge: 0, maxAge: Infinity } });
  const e = engine([stat, cold, willneed], act);
  e.apply(view.aggregate());
  // cold cuts [0, 10) at 4 pages; the rest [4, 10) is offered to every scheme again.
  assert.deepEqual(
    act.calls.map((c) => [c.action, c.start / P, c.end / P]),
    [['cold', 0, 4], ['willneed', 10, 20]],
  );
  const st = e.stats();
  // stat saw [0, 10) before cold cut it, then [4, 10) and [10, 20); it applies nothing
  // (the kernel's vaddr returns 0 for stat).
  assert.deepEqual([st[0].nrTried, st[0].szTried, st[0].nrApplied, st[0].szApplied], [3n, BigInt(26 * P), 0n, 0n]);
  assert.deepEqual([st[1].nrTried, st[1].szTried], [1n, BigInt(4 * P)]);
  assert.deepEqual([st[2].nrTried, st[2].szApplied], [1n, BigInt(10 * P)]);
  // stat leaves ages alone; actions restart them.
  assert.deepEqual(view.targets[0].regions.map((r) => r.age), [0, 30, 0]);
});

test('apply intervals: a scheme acts at the first aggregation its interval has passed, then again an interval later', () => {
  const act = new RecordingActuator();
  const view = new FakeView([{ id: 1, regions: [region(0, 1)] }]);
  const e = engine([scheme({ action: 'stat' }), scheme({ action: 'pageout', applyIntervalUs: 250_000 })], act);
  const tried: bigint[][] = [];
  for (let i = 0; i < 6; i++) {
    e.apply(view.aggregate());
    tried.push(e.stats().map((s) => s.nrTried));
  }
  // 250 ms at 100 ms aggregations: due from sample 50, seen at the 3rd aggregation (sample 60), next due at 110 (6th).
  assert.deepEqual(tried.map((t) => Number(t[0])), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(tried.map((t) => Number(t[1])), [0, 0, 1, 1, 1, 2]);
});

test('watermarks gate a scheme by the free memory rate; stats say whether it is active', () => {
  const act = new RecordingActuator();
  const view = new FakeView([{ id: 1, regions: [region(0, 1)] }]);
  let free = 600;
  const wm = { metric: 'free_mem_rate' as const, intervalUs: 100_000, highPermil: 500, midPermil: 400, lowPermil: 200 };
  const e = engine([scheme({ action: 'pageout', watermarks: wm })], act, { freeMemRate: () => free });
  const seen: [number, boolean][] = [];
  for (const f of [600, 450, 350, 450, 100, 300]) {
    free = f;
    e.apply(view.aggregate());
    seen.push([act.calls.length, e.stats()[0].active]);
  }
  assert.deepEqual(seen, [
    [0, false], // above high
    [0, false], // between mid and high, inactive
    [1, true], // below mid
    [2, true], // between, active
    [2, false], // below low
    [3, true],
  ]);
});

test('a refused action is counted, told once per target and errno, and the rest goes on', () => {
  const act = new RecordingActuator();
  act.fail.set(2, 'EPERM');
  const told: string[] = [];
  const view = new FakeView([{ id: 1, regions: [region(0, 2)] }, { id: 2, regions: [region(0, 2), region(2, 4, 5)] }]);
  const e = engine([scheme({ action: 'pageout' })], act, { onActionError: (m) => told.push(m) });
  e.apply(view.aggregate());
  e.apply(view.aggregate());
  assert.equal(told.length, 1);
  assert.match(told[0], /pageout on target 2: refused with EPERM/);
  assert.deepEqual(e.actionErrors(), [{ targetId: 2, action: 'pageout', code: 'EPERM', count: 4, message: 'refused with EPERM' }]);
  const [st] = e.stats();
  // Tried 3 regions twice; applied only target 1's.
  assert.deepEqual([st.nrTried, st.nrApplied, st.szApplied], [6n, 2n, BigInt(4 * P)]);
  // A process that exited is the process watch's to tell.
  act.fail.set(1, 'ESRCH');
  e.apply(view.aggregate());
  assert.equal(told.length, 1);
});

test('targets that left are released; actions the operations cannot apply refuse the engine', () => {
  const act = new RecordingActuator();
  const view = new FakeView([{ id: 1, regions: [region(0, 1)] }, { id: 2, regions: [region(0, 1)] }]);
  const e = engine([scheme({ action: 'stat' })], act);
  e.apply(view.aggregate());
  view.targets = [view.targets[1]];
  e.apply(view.aggregate());
  assert.deepEqual(act.released, [1]);

  act.refuse.hugepage = 'no MADV_HUGEPAGE here; use kdamond';
  assert.throws(
    () => engine([scheme({ action: 'stat' }), scheme({ action: 'hugepage' })], act),
    (err: unknown) => err instanceof SchemeRefusedError && err.message === 'schemes[1] (hugepage): no MADV_HUGEPAGE here; use kdamond',
  );
});
