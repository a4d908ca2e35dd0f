// KdamondContext end to end on a FAKE kernel (DAMON sysfs, tracefs and /proc as plain files
// in a temp dir; FakeKernel plays the kernel and the test plays the kdamond reporting):
// records from both sources, target exits, a kdamond that stops, busy refusal, start
// failures and every cleanup path, and that nothing outside our kdamond and our trace
// instance is ever written.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { DamonContext } from '../../agent/engine/context.js';
import { OperationsUnavailableError } from '../../agent/engine/operations.js';
import { KdamondContext, type KdamondContextOptions } from '../../agent/kdamond/kdamond-context.js';
import { KdamondNotRunningError } from '../../agent/kdamond/kdamond-driver.js';
import { pendingExitCleanups, runExitCleanups } from '../../agent/kdamond/exit-cleanup.js';
import type { AggregationRecord, RegionRecord } from '../../agent/records/record.js';
import { FakeKernel } from './kdamond-fake-kernel.js';

const KD = 'sys/kernel/mm/damon/admin/kdamonds';
const INST = 'sys/kernel/tracing/instances/test-inst';
const ATTRS = { samplingUs: 5000, aggregationUs: 100_000, updateUs: 1_000_000, minNrRegions: 10, maxNrRegions: 1000 };
const MS = 1_000_000n;

const fakes: FakeKernel[] = [];
const contexts: KdamondContext[] = [];
afterEach(async () => {
  // A failed test must not leave a context running (or its exit cleanup registered).
  for (const c of contexts.splice(0)) await c.stop();
  for (const f of fakes.splice(0)) f.remove();
});

function fakeWith(pids: number[], o: ConstructorParameters<typeof FakeKernel>[0] = {}): FakeKernel {
  const k = new FakeKernel(o);
  fakes.push(k);
  for (const p of pids) k.addProcess(p);
  return k;
}

interface Seen {
  records: AggregationRecord[];
  exited: number[];
  stopped: Promise<[string, Error | undefined]>;
}

function context(k: FakeKernel, o: Partial<KdamondContextOptions> = {}): { ctx: KdamondContext; seen: Seen } {
  const ctx = new KdamondContext({
    attrs: ATTRS,
    targetIds: [100, 200],
    sysfsRoot: k.sysfsRoot,
    tracefsRoot: k.tracefsRoot,
    procRoot: k.procRoot,
    files: k,
    autoPoll: false,
    traceInstanceName: 'test-inst',
    ...o,
  });
  contexts.push(ctx);
  const seen: Seen = {
    records: [],
    exited: [],
    stopped: once(ctx, 'stopped') as Promise<[string, Error | undefined]>,
  };
  ctx.on('aggregate', (r) => seen.records.push(r));
  ctx.on('targetExited', (pid) => seen.exited.push(pid));
  return { ctx, seen };
}

const R = (start: number, pages: number, nrAccesses: number, age = 0): RegionRecord => ({ start, end: start + pages * 4096, nrAccesses, age });
const A = [R(0x10000000, 4, 20, 3), R(0x10004000, 16, 0, 9)];
const B = [R(0x7f0000000000, 8, 5, 1)];

/** Every logged write/mkdir/rmdir is nr_kdamonds, inside kdamonds/0, or inside our trace instance. */
function assertOnlyOurs(k: FakeKernel): void {
  for (const e of k.log) {
    const ok = e.path === `${KD}/nr_kdamonds` || e.path.startsWith(`${KD}/0/`) || e.path === INST || e.path.startsWith(`${INST}/`);
    assert.ok(ok, `${e.op} ${e.path} is outside our kdamond and our trace instance`);
  }
}

test('fake tree, tracepoint source: records per target per aggregation, then a full cleanup', async () => {
  const k = fakeWith([100, 200]);
  const before = k.snapshot(['proc']);
  const { ctx, seen } = context(k);
  const t0 = BigInt(Date.now()) * MS;
  assert.equal(await ctx.start(), true);
  const kpid = k.kdamondPid(0);
  assert.equal(ctx.kdamondPid, kpid);
  assert.deepEqual(
    k.log.filter((e) => e.path.startsWith('sys/kernel/tracing')),
    [
      { op: 'mkdir', path: INST },
      { op: 'write', path: `${INST}/trace_clock`, value: 'mono' },
      { op: 'write', path: `${INST}/events/damon/damon_aggregated/filter`, value: `common_pid == ${kpid}` },
      { op: 'write', path: `${INST}/events/damon/damon_aggregated/enable`, value: '1' },
    ],
  );
  assert.equal(k.get('sys/kernel/tracing/events/damon/damon_aggregated/enable'), '0', 'the global event switch is untouched');

  const ts1 = process.hrtime.bigint();
  k.emitAggregation([A, B], { tsNs: ts1 });
  assert.equal(await ctx.poll(), true);
  assert.equal(seen.records.length, 2);
  const [ra, rb] = seen.records;
  assert.equal(ra.targetId, 100);
  assert.equal(rb.targetId, 200);
  assert.deepEqual(ra.regions, A);
  assert.deepEqual(rb.regions, B);
  assert.equal(ra.maxNrAccesses, 20);
  // The kernel's timestamp, mapped to the wall clock; the first interval starts at "on".
  const t1 = BigInt(Date.now()) * MS;
  assert.ok(ra.endNs >= t0 - 50n * MS && ra.endNs <= t1 + 50n * MS, `endNs ${ra.endNs} within [${t0}, ${t1}]`);
  assert.equal(ra.endNs, rb.endNs);
  assert.ok(ra.startNs >= t0 - 50n * MS && ra.startNs <= ra.endNs);

  k.emitAggregation([A, B], { tsNs: ts1 + 100n * MS });
  await ctx.poll();
  assert.equal(seen.records.length, 4);
  assert.equal(seen.records[2].startNs, ra.endNs, 'back-to-back aggregations share their boundary');
  assert.equal(seen.records[2].endNs - ra.endNs, 100n * MS);

  await ctx.stop();
  const [reason, err] = await seen.stopped;
  assert.equal(reason, 'off');
  assert.equal(err, undefined);
  assert.equal(ctx.running, false);
  assert.deepEqual(ctx.releaseReport, { turnedOff: true, removed: true });
  assert.deepEqual(k.instances(), []);
  assert.equal(k.openPipeCount, 0);
  assert.deepEqual(k.snapshot(['proc']), before, 'the fake tree is exactly as before');
  assertOnlyOurs(k);
  assert.equal(pendingExitCleanups(), 0);
  await ctx.stop();
});

test('fake tree, tried_regions source: one stat scheme per target with a target filter, records from each update', async () => {
  const k = fakeWith([100, 200]);
  const before = k.snapshot(['proc']);
  const { ctx, seen } = context(k, { recordSource: 'tried_regions', tracefsRoot: undefined });
  assert.equal(await ctx.start(), true);
  const s = `${KD}/0/contexts/0/schemes`;
  const schemeWrites = k.written().filter((w) => w.path.startsWith(s));
  const expect: { path: string; value: string }[] = [{ path: `${s}/nr_schemes`, value: '2' }];
  for (const i of [0, 1]) {
    expect.push(
      { path: `${s}/${i}/action`, value: 'stat' },
      { path: `${s}/${i}/access_pattern/sz/min`, value: '0' },
      { path: `${s}/${i}/access_pattern/sz/max`, value: '18446744073709551615' },
      { path: `${s}/${i}/access_pattern/nr_accesses/min`, value: '0' },
      { path: `${s}/${i}/access_pattern/nr_accesses/max`, value: '4294967295' },
      { path: `${s}/${i}/access_pattern/age/min`, value: '0' },
      { path: `${s}/${i}/access_pattern/age/max`, value: '4294967295' },
      { path: `${s}/${i}/filters/nr_filters`, value: '1' },
      { path: `${s}/${i}/filters/0/type`, value: 'target' },
      { path: `${s}/${i}/filters/0/damon_target_idx`, value: String(i) },
      { path: `${s}/${i}/filters/0/matching`, value: 'N' },
    );
  }
  assert.deepEqual(schemeWrites, expect);
  assert.equal(k.log.some((e) => e.path.startsWith('sys/kernel/tracing')), false, 'no tracefs use');

  k.triedRegions = [A, B];
  await ctx.poll();
  assert.deepEqual(
    seen.records.map((r) => [r.targetId, r.regions]),
    [
      [100, A],
      [200, B],
    ],
  );
  // The snapshot's time is when it was read: the record covers one interval before it.
  assert.equal(seen.records[0].endNs - seen.records[0].startNs, 100n * MS);
  assert.equal(k.written().filter((w) => w.value === 'update_schemes_tried_regions').length, 1);
  k.triedRegions = [[A[0]], B];
  await ctx.poll();
  assert.deepEqual(seen.records[2].regions, [A[0]]);

  await ctx.stop();
  assert.equal((await seen.stopped)[0], 'off');
  assert.deepEqual(k.snapshot(['proc']), before);
  assertOnlyOurs(k);
});

test('fake tree: an exited target gets targetExited and no more records; when all exit and the kdamond stops, "no-targets"', async () => {
  const k = fakeWith([100, 200]);
  const { ctx, seen } = context(k);
  await ctx.start();
  k.killProcess(200);
  // The kernel keeps reporting the exited target while another one lives.
  k.emitAggregation([A, B]);
  assert.equal(await ctx.poll(), true);
  assert.deepEqual(seen.exited, [200]);
  assert.deepEqual(seen.records.map((r) => r.targetId), [100]);
  assert.deepEqual(ctx.targetPids, [100]);

  k.killProcess(100);
  k.kdamondStops();
  assert.equal(await ctx.poll(), false);
  const [reason, err] = await seen.stopped;
  assert.equal(reason, 'no-targets');
  assert.equal(err, undefined);
  assert.deepEqual(seen.exited, [200, 100]);
  assert.deepEqual(ctx.releaseReport, { turnedOff: false, removed: true });
  assert.equal(k.written().some((w) => w.value === 'off'), false, 'a stopped kdamond is not turned off again');
  assert.equal(k.get(`${KD}/nr_kdamonds`), '0');
  assert.deepEqual(k.instances(), []);
});

test('fake tree: a pid that now names another process (new start time) counts as exited', async () => {
  const k = fakeWith([100, 200]);
  const { ctx, seen } = context(k);
  await ctx.start();
  k.addProcess(200, 99999);
  await ctx.poll();
  assert.deepEqual(seen.exited, [200]);
  await ctx.stop();
});

test('fake tree: a kdamond turned off by someone else while its targets live stops the context with an error, then cleanup', async () => {
  const k = fakeWith([100, 200]);
  const { ctx, seen } = context(k);
  await ctx.start();
  k.emitAggregation([A, B]);
  k.kdamondStops();
  await ctx.poll();
  assert.equal(seen.records.length, 2, 'records written before it stopped still arrive');
  const [reason, err] = await seen.stopped;
  assert.equal(reason, 'error');
  assert.ok(err instanceof KdamondNotRunningError);
  assert.match(err.message, /stopped while target\(s\) 100, 200 still run: it was turned off outside this context/);
  assert.deepEqual(ctx.releaseReport, { turnedOff: false, removed: true });
  assert.deepEqual(k.instances(), []);
});

test('fake tree: a busy interface refuses at start with nothing written', async () => {
  const k = fakeWith([100, 200]);
  k.addForeignKdamond('on', 812);
  const before = k.snapshot();
  const { ctx, seen } = context(k);
  assert.equal(await ctx.start(), false);
  const [reason, err] = await seen.stopped;
  assert.equal(reason, 'error');
  assert.ok(err instanceof OperationsUnavailableError);
  assert.match(err.message, /^kdamond operations unavailable: DAMON sysfs interface at .* is in use: nr_kdamonds is 1 \(kdamond 0: on \(pid 812\)\)/);
  assert.deepEqual(k.log, []);
  assert.deepEqual(k.snapshot(), before);
  assert.equal(ctx.releaseReport, undefined);
});

test('fake tree: a kernel without vaddr (kallsyms) is refused before any write', async () => {
  const k = fakeWith([100], { kallsyms: 'ffffffff81000000 T damon_start\nffffffff81000100 t damon_pa_check_accesses\n' });
  const { ctx, seen } = context(k, { targetIds: [100] });
  assert.equal(await ctx.start(), false);
  const [, err] = await seen.stopped;
  assert.match(err?.message ?? '', /no vaddr operations \(no damon_va_\* symbols in .*kallsyms.*\); it needs CONFIG_DAMON_VADDR/);
  assert.deepEqual(k.log, []);
});

test('fake tree: a failure after the kdamond was created cleans up everything and names the file', async () => {
  const k = fakeWith([100, 200]);
  const before = k.snapshot(['proc']);
  k.failOn(`${KD}/0/state`, 'EINVAL');
  const { ctx, seen } = context(k);
  assert.equal(await ctx.start(), false);
  const [reason, err] = await seen.stopped;
  assert.equal(reason, 'error');
  assert.match(err?.message ?? '', /kdamond 0 did not start: write .*kdamonds\/0\/state: writing "on" failed with EINVAL/);
  assert.deepEqual(ctx.releaseReport, { turnedOff: false, removed: true });
  assert.deepEqual(k.snapshot(['proc']), before);
  assert.equal(pendingExitCleanups(), 0);
  assertOnlyOurs(k);
});

test('fake tree: targets that do not exist at start get targetExited and are left out of the kdamond', async () => {
  const k = fakeWith([100]);
  const { ctx, seen } = context(k, { targetIds: [300, 100] });
  assert.equal(await ctx.start(), true);
  assert.deepEqual(seen.exited, [300]);
  assert.equal(k.get(`${KD}/0/contexts/0/targets/nr_targets`), '1');
  assert.equal(k.get(`${KD}/0/contexts/0/targets/0/pid_target`), '100');
  k.emitAggregation([A]);
  await ctx.poll();
  assert.deepEqual(seen.records.map((r) => r.targetId), [100]);
  await ctx.stop();

  const k2 = fakeWith([]);
  const c2 = context(k2, { targetIds: [300, 400] });
  assert.equal(await c2.ctx.start(), false);
  assert.deepEqual(c2.seen.exited, [300, 400]);
  assert.equal((await c2.seen.stopped)[0], 'no-targets');
  assert.deepEqual(k2.log, []);
});

test('fake tree: the process-exit cleanup turns our kdamond off, removes it and our trace instance', async () => {
  const k = fakeWith([100, 200]);
  const before = k.snapshot(['proc']);
  const { ctx, seen } = context(k);
  await ctx.start();
  assert.equal(pendingExitCleanups(), 1);
  runExitCleanups();
  assert.equal(pendingExitCleanups(), 0);
  assert.deepEqual(k.snapshot(['proc']), before);
  assert.equal(k.openPipeCount, 0);
  const logged = k.log.length;
  await ctx.stop();
  assert.equal((await seen.stopped)[0], 'off');
  assert.equal(k.log.length, logged, 'stop() after the exit cleanup writes nothing more');
});

test('fake tree: stop() from an aggregate listener ends delivery at once', async () => {
  const k = fakeWith([100, 200]);
  const { ctx, seen } = context(k);
  let stops = 0;
  ctx.on('stopped', () => stops++);
  ctx.once('aggregate', () => void ctx.stop());
  await ctx.start();
  const ts = process.hrtime.bigint();
  k.emitAggregation([A, B], { tsNs: ts });
  k.emitAggregation([A, B], { tsNs: ts + 100n * MS });
  assert.equal(await ctx.poll(), false);
  assert.equal((await seen.stopped)[0], 'off');
  assert.equal(seen.records.length, 1);
  assert.equal(stops, 1);
  assert.deepEqual(k.instances(), []);
});

test('fake tree: lost events drop the incomplete aggregation and count as missed in drift()', async () => {
  const k = fakeWith([100]);
  const { ctx, seen } = context(k, { targetIds: [100] });
  await ctx.start();
  const ts = process.hrtime.bigint();
  const kpid = k.kdamondPid(0);
  k.emitAggregation([A], { tsNs: ts });
  k.emitAggregation([A], { tsNs: ts + 100n * MS, only: (i) => i === 0 });
  k.appendTrace(['CPU:0 [LOST 3 EVENTS]'], kpid);
  k.emitAggregation([A], { tsNs: ts + 300n * MS });
  await ctx.poll();
  assert.equal(seen.records.length, 2);
  assert.equal(seen.records[1].endNs - seen.records[0].endNs, 300n * MS);
  assert.equal(seen.records[1].endNs - seen.records[1].startNs, 100n * MS, 'after a gap the record covers one interval');
  const d = ctx.drift();
  assert.equal(d.missedAggregations, 2);
  assert.equal(d.recordSource, 'tracepoint');
  assert.equal(d.sampling.count, 0, 'the kernel\'s sampling is not observable');
  assert.equal(d.aggregation.configuredUs, 100_000);
  assert.equal(d.aggregation.maxUs, 300_000);
  const c = ctx.costs();
  assert.equal(c.source.incompleteAggregations, 1);
  assert.equal(c.source.lostEvents, 3);
  assert.equal(c.aggregations, 2);
  assert.equal(c.records, 2);
  assert.equal(c.polls, 1);
  await ctx.stop();
});

test('fake tree: without the kernel pid filter, other kdamonds\' events are dropped in user space', async () => {
  const k = fakeWith([100]);
  k.failOn(`${INST}/events/damon/damon_aggregated/filter`, 'EINVAL');
  const { ctx, seen } = context(k, { targetIds: [100] });
  await ctx.start();
  k.emitAggregation([A]);
  k.emitAggregation([B, B], { pid: 4242 });
  await ctx.poll();
  assert.deepEqual(seen.records.map((r) => r.regions), [A]);
  assert.equal(ctx.costs().source.foreignEvents, 2);
  assert.equal(ctx.costs().source.kernelPidFilter, 0);
  await ctx.stop();
});

test('fake tree: the kdamond\'s CPU time comes from /proc/<kdamond pid>/stat', async () => {
  const k = fakeWith([100]);
  const { ctx } = context(k, { targetIds: [100] });
  await ctx.start();
  k.setKdamondCpuTicks(k.kdamondPid(0), 30, 12);
  assert.equal(ctx.costs().kdamondCpuUs, 420_000);
  await ctx.stop();
  assert.equal(ctx.costs().kdamondCpuUs, 420_000, 'kept after stop');
});

test('fake tree: with timers (autoPoll) records arrive without poll() calls', async () => {
  const k = fakeWith([100]);
  const { ctx, seen } = context(k, { targetIds: [100], autoPoll: true, attrs: { ...ATTRS, samplingUs: 1000, aggregationUs: 20_000 } });
  k.autoAggregate(20, () => [A]);
  await ctx.start();
  await new Promise((r) => setTimeout(r, 200));
  await ctx.stop();
  k.stopAutoAggregate();
  assert.ok(seen.records.length >= 3, `${seen.records.length} records in 200 ms at 20 ms aggregations`);
  assert.ok(ctx.drift().stepWallUs.count >= 3);
});

test('bad options are refused with the option named', () => {
  const k = fakeWith([]);
  const base = { attrs: ATTRS, targetIds: [1], sysfsRoot: k.sysfsRoot, tracefsRoot: k.tracefsRoot, files: k };
  assert.throws(() => new KdamondContext({ ...base, sysfsRoot: '' }), /sysfsRoot: the DAMON sysfs directory is required/);
  assert.throws(() => new KdamondContext({ ...base, tracefsRoot: undefined }), /tracefsRoot: .* required for the tracepoint record source/);
  assert.throws(() => new KdamondContext({ ...base, targetIds: [] }), /targetIds: at least one/);
  assert.throws(() => new KdamondContext({ ...base, targetIds: [5, 5] }), /5 appears twice/);
  assert.throws(() => new KdamondContext({ ...base, targetIds: [0] }), /0 is not a process id/);
  assert.throws(() => new KdamondContext({ ...base, recordSource: 'perf' as never }), /record source "perf": must be one of tracepoint, tried_regions/);
  assert.throws(() => new KdamondContext({ ...base, attrs: { minNrRegions: 2 } }), /min_nr_regions: must be at least 3/);
  assert.throws(() => new KdamondContext({ ...base, pollIntervalMs: 0 }), /pollIntervalMs: must be a positive number/);
});

test('start() twice or after stop() throws; poll() before start() rejects', async () => {
  const k = fakeWith([100]);
  const { ctx } = context(k, { targetIds: [100] });
  await assert.rejects(ctx.poll(), /poll\(\): call start\(\) first/);
  await ctx.start();
  assert.throws(() => ctx.start(), /already started/);
  await ctx.stop();
  assert.throws(() => ctx.start(), /has stopped/);
});

test('the session runner\'s view of an engine fits both DamonContext and KdamondContext', () => {
  // Compile-time: what agent/daemon/session-runner.ts uses of a DamonContext, with the same
  // event signatures.
  type EngineView = Pick<DamonContext, 'stop' | 'drift' | 'running'>;
  const k = fakeWith([]);
  const ctx = new KdamondContext({ attrs: ATTRS, targetIds: [1], sysfsRoot: k.sysfsRoot, tracefsRoot: k.tracefsRoot, files: k });
  const view: EngineView = ctx;
  ctx.on('aggregate', (r: AggregationRecord) => r.targetId);
  ctx.on('targetExited', (pid: number) => pid);
  ctx.on('stopped', (reason: 'off' | 'no-targets' | 'error', err?: Error) => [reason, err]);
  assert.equal(typeof view.stop, 'function');
});
