// The session's schemes handed to the kernel's DAMOS on a FAKE kernel (test/unit/
// kdamond-fake-kernel.ts; nothing under /sys is touched): the files each scheme writes,
// beside the tried_regions source's own stat schemes (which keep indices 0..n-1 and keep
// delivering records), statistics read back with update_schemes_stats at the interval
// asked, and the cleanup leaving the tree as it was.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { KdamondContext, type KdamondContextOptions } from '../../agent/kdamond/kdamond-context.js';
import { schemesFromText } from '../../common/scheme-text.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { FakeKernel } from './kdamond-fake-kernel.js';

const KD = 'sys/kernel/mm/damon/admin/kdamonds';
const S = `${KD}/0/contexts/0/schemes`;
const ATTRS = { samplingUs: 5000, aggregationUs: 100_000, updateUs: 1_000_000, minNrRegions: 10, maxNrRegions: 1000 };

// A proactive reclaim scheme (pageout what stayed idle for 5 s, 1 GiB a second at most, free
// memory between 5% and 50%), and one that only counts hot regions, every second.
const SCHEMES = schemesFromText(
  `4096 18446744073709551615 0 0 50 4294967295 pageout 0 1073741824 1000 0 0 1000 free_mem_rate 5000000 500 400 50
2097152 18446744073709551615 15 20 0 4294967295 stat 0 0 0 0 0 0 0 0 0 0 0 1000000`,
  ATTRS,
);

const fakes: FakeKernel[] = [];
const contexts: KdamondContext[] = [];
afterEach(async () => {
  for (const c of contexts.splice(0)) await c.stop();
  for (const f of fakes.splice(0)) f.remove();
});

function setup(o: Partial<KdamondContextOptions> = {}): { k: FakeKernel; ctx: KdamondContext; records: AggregationRecord[] } {
  const k = new FakeKernel();
  fakes.push(k);
  k.addProcess(100);
  k.addProcess(200);
  const ctx = new KdamondContext({
    attrs: ATTRS,
    targetIds: [100, 200],
    sysfsRoot: k.sysfsRoot,
    tracefsRoot: k.tracefsRoot,
    procRoot: k.procRoot,
    files: k,
    autoPoll: false,
    traceInstanceName: 'test-inst',
    schemes: SCHEMES,
    schemeStatsIntervalMs: 0,
    ...o,
  });
  contexts.push(ctx);
  const records: AggregationRecord[] = [];
  ctx.on('aggregate', (r) => records.push(r));
  return { k, ctx, records };
}

/** What the two schemes write into scheme directories `first` and `first + 1`. */
function expectedWrites(first: number): { path: string; value: string }[] {
  const a = `${S}/${first}`;
  const b = `${S}/${first + 1}`;
  return [
    { path: `${a}/action`, value: 'pageout' },
    { path: `${a}/access_pattern/sz/min`, value: '4096' },
    { path: `${a}/access_pattern/sz/max`, value: '18446744073709551615' },
    { path: `${a}/access_pattern/nr_accesses/min`, value: '0' },
    { path: `${a}/access_pattern/nr_accesses/max`, value: '0' },
    { path: `${a}/access_pattern/age/min`, value: '50' },
    { path: `${a}/access_pattern/age/max`, value: '4294967295' },
    { path: `${a}/quotas/ms`, value: '0' },
    { path: `${a}/quotas/bytes`, value: '1073741824' },
    { path: `${a}/quotas/reset_interval_ms`, value: '1000' },
    { path: `${a}/quotas/weights/sz_permil`, value: '0' },
    { path: `${a}/quotas/weights/nr_accesses_permil`, value: '0' },
    { path: `${a}/quotas/weights/age_permil`, value: '1000' },
    { path: `${a}/watermarks/metric`, value: 'free_mem_rate' },
    { path: `${a}/watermarks/interval_us`, value: '5000000' },
    { path: `${a}/watermarks/high`, value: '500' },
    { path: `${a}/watermarks/mid`, value: '400' },
    { path: `${a}/watermarks/low`, value: '50' },
    { path: `${b}/action`, value: 'stat' },
    { path: `${b}/access_pattern/sz/min`, value: '2097152' },
    { path: `${b}/access_pattern/sz/max`, value: '18446744073709551615' },
    { path: `${b}/access_pattern/nr_accesses/min`, value: '15' },
    { path: `${b}/access_pattern/nr_accesses/max`, value: '20' },
    { path: `${b}/access_pattern/age/min`, value: '0' },
    { path: `${b}/access_pattern/age/max`, value: '4294967295' },
    { path: `${b}/apply_interval_us`, value: '1000000' },
  ];
}

test('fake tree, tracepoint source: the schemes are DAMOS schemes 0 and 1, every file as the session says, before "on"', async () => {
  const { k, ctx } = setup();
  const before = k.snapshot(['proc']);
  assert.equal(await ctx.start(), true);
  const writes = k.written();
  const schemeWrites = writes.filter((w) => w.path.startsWith(S));
  assert.deepEqual(schemeWrites, [{ path: `${S}/nr_schemes`, value: '2' }, ...expectedWrites(0)]);
  const on = writes.findIndex((w) => w.path === `${KD}/0/state` && w.value === 'on');
  assert.ok(writes.findLastIndex((w) => w.path.startsWith(S)) < on, 'every scheme file is written before the kdamond is turned on');
  for (const w of expectedWrites(0)) assert.equal(k.get(w.path), w.value, `${w.path} reads back`);
  await ctx.stop();
  assert.deepEqual(ctx.releaseReport, { turnedOff: true, removed: true });
  assert.deepEqual(k.snapshot(['proc']), before, 'the fake tree is exactly as before');
});

test('fake tree, tried_regions source: its stat schemes keep 0..n-1 and its records; the session\'s follow at n', async () => {
  const { k, ctx, records } = setup({ recordSource: 'tried_regions', tracefsRoot: undefined });
  assert.equal(await ctx.start(), true);
  const schemeWrites = k.written().filter((w) => w.path.startsWith(S));
  assert.deepEqual(schemeWrites[0], { path: `${S}/nr_schemes`, value: '4' }, 'nr_schemes once, for both');
  assert.equal(schemeWrites.filter((w) => w.path.endsWith('/nr_schemes')).length, 1);
  assert.deepEqual(schemeWrites.slice(-expectedWrites(2).length), expectedWrites(2));
  for (const i of [0, 1]) {
    assert.equal(k.get(`${S}/${i}/action`), 'stat');
    assert.equal(k.get(`${S}/${i}/filters/0/damon_target_idx`), String(i));
  }
  // The records still come from schemes 0 and 1 (each target's own).
  const A = [{ start: 0x10000000, end: 0x10004000, nrAccesses: 3, age: 1 }];
  const B = [{ start: 0x20000000, end: 0x20008000, nrAccesses: 0, age: 7 }];
  k.triedRegions = [A, B];
  k.schemeStats = { 2: { nr_tried: '7', sz_tried: '28672', nr_applied: '5', sz_applied: '20480', qt_exceeds: '1' } };
  await ctx.poll();
  assert.deepEqual(records.map((r) => [r.targetId, r.regions]), [[100, A], [200, B]]);
  assert.deepEqual(ctx.schemeStats(), [
    { scheme: 0, nrTried: 7n, szTried: 28672n, nrApplied: 5n, szApplied: 20480n, qtExceeds: 1n, active: true },
    { scheme: 1, nrTried: 0n, szTried: 0n, nrApplied: 0n, szApplied: 0n, qtExceeds: 0n, active: true },
  ]);
});

test('fake tree: statistics come from update_schemes_stats, at most every schemeStatsIntervalMs; exact past 2^53', async () => {
  const { k, ctx } = setup({ schemeStatsIntervalMs: 60_000 });
  assert.equal(await ctx.start(), true);
  assert.deepEqual(
    ctx.schemeStats().map((s) => [s.nrTried, s.active]),
    [[0n, false], [0n, true]],
    'zero before the first read; a scheme with watermarks counts as inactive until the kernel tries it',
  );
  k.schemeStats = { 0: { nr_tried: '3', sz_tried: '18446744073709551615' }, 1: { nr_tried: '9', nr_applied: '9' } };
  await ctx.poll();
  const first = ctx.schemeStats();
  assert.equal(first[0].szTried, 18446744073709551615n);
  assert.equal(first[0].active, true, 'tried on something since the last read');
  assert.equal(first[1].nrApplied, 9n);
  const commands = () => k.written().filter((w) => w.value === 'update_schemes_stats').length;
  assert.equal(commands(), 1);
  k.schemeStats = { 0: { nr_tried: '4' } };
  await ctx.poll();
  assert.equal(commands(), 1, 'not again within the interval');
  assert.deepEqual(ctx.schemeStats(), first);
});

test('fake tree: a scheme with watermarks that the kernel stopped trying reads as inactive', async () => {
  const { k, ctx } = setup();
  assert.equal(await ctx.start(), true);
  k.schemeStats = { 0: { nr_tried: '3' } };
  await ctx.poll();
  assert.equal(ctx.schemeStats()[0].active, true);
  await ctx.poll(); // nr_tried still 3: deactivated by its watermarks
  assert.equal(ctx.schemeStats()[0].active, false);
  assert.equal(ctx.schemeStats()[1].active, true, 'no watermarks: always active');
});

test('a collapse scheme is refused before anything is written: the kernel\'s DAMOS has no such action', () => {
  const k = new FakeKernel();
  fakes.push(k);
  const collapse = schemesFromText('0 0 0 0 0 0 collapse 0 0 0 0 0 0 0 0 0 0 0', ATTRS);
  assert.throws(
    () => new KdamondContext({ attrs: ATTRS, targetIds: [1], sysfsRoot: k.sysfsRoot, tracefsRoot: k.tracefsRoot, files: k, schemes: collapse }),
    /schemes\[0\]: the kernel's DAMOS has no collapse action/,
  );
  assert.deepEqual(k.log, []);
});
