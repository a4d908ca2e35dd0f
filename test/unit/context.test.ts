// The monitoring context: aggregation records, target exits, errors, stopping and the
// real-time loop, with scripted operations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PAGE_SIZE, type Target } from '../../agent/engine/region.js';
import { AttributeError, type Attributes } from '../../agent/engine/attrs.js';
import { TargetError, type Operations, type OpsContext } from '../../agent/engine/operations.js';
import { DamonContext, VIRTUAL_EPOCH_NS, type StopReason } from '../../agent/engine/context.js';
import type { AddressRange } from '../../agent/engine/set-regions.js';
import { initRegions } from '../../agent/ops/vaddr-regions.js';
import { EXPLORATION_SHARE, explorationPieces } from '../../agent/engine/adjust-refined.js';
import type { AggregationRecord } from '../../agent/records/record.js';

const P = PAGE_SIZE;
const RANGES: AddressRange[] = [
  { start: 0, end: 100 * P },
  { start: 200 * P, end: 300 * P },
  { start: 400 * P, end: 500 * P },
];

function attrs(a: Partial<Attributes> = {}): Attributes {
  return {
    samplingUs: 5_000, aggregationUs: 100_000, updateUs: 1_000_000, minNrRegions: 10, maxNrRegions: 1000, resultFile: '', ...a,
  };
}

/** Operations over three fixed ranges; `hot` targets are accessed at every check. */
class ScriptedOps implements Operations {
  readonly name = 'scripted';
  ctx: OpsContext | undefined;
  calls = { init: 0, update: 0, prepare: 0, check: 0, cleanup: 0 };
  /** Virtual time from which a target is gone. */
  exitAtUs = new Map<number, number>();
  hot = new Set<number>();
  /** Called at the start of every checkAccesses; may throw. */
  onCheck: (ctx: OpsContext) => void = () => {};
  checkResult: ((max: number) => number) | undefined;

  init(ctx: OpsContext): void {
    this.ctx = ctx;
    this.calls.init++;
    for (const t of ctx.targets) t.regions = initRegions(RANGES, ctx.attrs.minNrRegions);
  }
  update(): void {
    this.calls.update++;
  }
  prepareAccessChecks(ctx: OpsContext): void {
    this.calls.prepare++;
    for (const t of ctx.targets) for (const r of t.regions) r.samplingAddr = r.start;
  }
  checkAccesses(ctx: OpsContext): number {
    this.calls.check++;
    this.onCheck(ctx);
    let max = 0;
    for (const t of ctx.targets) {
      for (const r of t.regions) {
        if (this.hot.has(t.id)) r.nrAccesses++;
        max = Math.max(max, r.nrAccesses);
      }
    }
    return this.checkResult ? this.checkResult(max) : max;
  }
  targetValid(t: Target): boolean {
    return this.ctx!.nowUs() < (this.exitAtUs.get(t.id) ?? Infinity);
  }
  cleanup(): void {
    this.calls.cleanup++;
  }
}

/** Collects a context's events. */
function watch(ctx: DamonContext) {
  const seen = {
    records: [] as AggregationRecord[],
    exited: [] as { id: number; atUs: number }[],
    stopped: [] as { reason: StopReason; error?: Error; atUs: number }[],
  };
  ctx.on('aggregate', (r) => seen.records.push(r));
  ctx.on('targetExited', (id) => seen.exited.push({ id, atUs: ctx.nowUs() }));
  ctx.on('stopped', (reason, error) => seen.stopped.push({ reason, error, atUs: ctx.nowUs() }));
  return seen;
}

test('one record per target per aggregation interval, with maxNrAccesses and virtual times', () => {
  const ops = new ScriptedOps();
  ops.hot.add(1);
  const ctx = new DamonContext({ attrs: attrs(), targetIds: [1, 2], ops, random: () => 0.5, clock: 'virtual' });
  const seen = watch(ctx);
  assert.equal(ctx.runFor(1_000_000), 200);
  assert.equal(ctx.passedSamples, 200);
  assert.equal(ctx.nowUs(), 1_000_000);
  assert.equal(seen.records.length, 20);
  for (const id of [1, 2]) {
    const mine = seen.records.filter((r) => r.targetId === id);
    assert.equal(mine.length, 10);
    mine.forEach((r, k) => {
      assert.equal(r.maxNrAccesses, 20);
      assert.equal(r.startNs, VIRTUAL_EPOCH_NS + BigInt(k) * 100_000_000n);
      assert.equal(r.endNs, VIRTUAL_EPOCH_NS + BigInt(k + 1) * 100_000_000n);
      // Target 1 is accessed at every check, target 2 never.
      assert.ok(r.regions.every((x) => x.nrAccesses === (id === 1 ? 20 : 0)), `target ${id} record ${k}`);
      assert.equal(r.regions.reduce((n, x) => n + x.end - x.start, 0), 300 * P);
    });
  }
  assert.deepEqual(ops.calls, { init: 1, update: 1, prepare: 201, check: 200, cleanup: 0 });
  assert.equal(seen.stopped.length, 0);
});

test('aggregation counts sampling intervals: 10 ms over 3 ms is every 3 samples, maxNrAccesses 3', () => {
  const ops = new ScriptedOps();
  ops.hot.add(7);
  const ctx = new DamonContext({
    attrs: attrs({ samplingUs: 3_000, aggregationUs: 10_000 }), targetIds: [7], ops, clock: 'virtual',
  });
  const seen = watch(ctx);
  ctx.runFor(30_000);
  assert.deepEqual(seen.records.map((r) => [r.maxNrAccesses, Number(r.endNs - VIRTUAL_EPOCH_NS) / 1000]), [
    [3, 9_000], [3, 18_000], [3, 27_000],
  ]);
  assert.ok(seen.records.every((r) => r.regions.every((x) => x.nrAccesses === 3)));
});

test('a target that exits is removed at the update interval; none left stops the context', () => {
  const ops = new ScriptedOps();
  ops.exitAtUs.set(1, 250_000);
  ops.exitAtUs.set(2, 600_000);
  const ctx = new DamonContext({
    attrs: attrs({ updateUs: 100_000 }), targetIds: [1, 2], ops, clock: 'virtual',
  });
  const seen = watch(ctx);
  assert.equal(ctx.runFor(2_000_000), 119); // the 120th step stops it
  assert.deepEqual(seen.exited, [{ id: 1, atUs: 300_000 }, { id: 2, atUs: 600_000 }]);
  assert.deepEqual(seen.stopped, [{ reason: 'no-targets', error: undefined, atUs: 600_000 }]);
  assert.deepEqual(seen.records.filter((r) => r.targetId === 1).length, 3);
  assert.deepEqual(seen.records.filter((r) => r.targetId === 2).length, 6);
  assert.equal(ops.calls.cleanup, 1);
  assert.equal(ctx.running, false);
  assert.equal(ctx.step(), false);
  assert.equal(ctx.targets.length, 0);
});

test('TargetError from a target that exited removes it at once; the others go on', () => {
  const ops = new ScriptedOps();
  ops.exitAtUs.set(1, 52_000);
  ops.onCheck = (ctx) => {
    if (ctx.targets.some((t) => t.id === 1) && ctx.nowUs() >= 52_000) throw new TargetError(1, 'no such process');
  };
  const ctx = new DamonContext({ attrs: attrs(), targetIds: [1, 2], ops, clock: 'virtual' });
  const seen = watch(ctx);
  ctx.runFor(300_000);
  assert.deepEqual(seen.exited, [{ id: 1, atUs: 55_000 }]);
  assert.deepEqual(seen.records.map((r) => r.targetId), [2, 2, 2]);
  assert.equal(seen.stopped.length, 0);
  assert.equal(ctx.running, true);
});

test('an operations error stops the context with reason error, without throwing', () => {
  const ops = new ScriptedOps();
  ops.onCheck = () => {
    if (ops.calls.check === 7) throw new Error('boom');
  };
  const ctx = new DamonContext({ attrs: attrs(), targetIds: [1], ops, clock: 'virtual' });
  const seen = watch(ctx);
  assert.equal(ctx.runFor(1_000_000), 6);
  assert.equal(seen.stopped.length, 1);
  assert.equal(seen.stopped[0].reason, 'error');
  assert.equal(seen.stopped[0].error?.message, 'boom');
  assert.equal(ops.calls.cleanup, 1);
  assert.equal(ctx.step(), false);

  // TargetError for a target that is still there is an error too.
  const ops2 = new ScriptedOps();
  ops2.onCheck = () => { throw new TargetError(1, 'permission denied'); };
  const ctx2 = new DamonContext({ attrs: attrs(), targetIds: [1], ops: ops2, clock: 'virtual' });
  const seen2 = watch(ctx2);
  assert.equal(ctx2.step(), false);
  assert.match(seen2.stopped[0].error?.message ?? '', /target 1: permission denied/);
});

test('init errors and bad checkAccesses results stop the context with an error naming the operations', () => {
  const ops = new ScriptedOps();
  ops.init = () => { throw new Error('no page_idle'); };
  const ctx = new DamonContext({ attrs: attrs(), targetIds: [1], ops, clock: 'virtual' });
  const seen = watch(ctx);
  assert.equal(ctx.step(), false);
  assert.equal(seen.stopped[0].reason, 'error');
  assert.equal(seen.stopped[0].error?.message, 'no page_idle');

  const bad = new ScriptedOps();
  bad.checkResult = () => NaN;
  const ctx2 = new DamonContext({ attrs: attrs(), targetIds: [1], ops: bad, clock: 'virtual' });
  const seen2 = watch(ctx2);
  ctx2.step();
  assert.match(seen2.stopped[0].error?.message ?? '', /scripted\.checkAccesses returned NaN/);

  const overlapping = new ScriptedOps();
  overlapping.init = (c) => {
    overlapping.ctx = c;
    for (const t of c.targets) t.regions = [...initRegions(RANGES, 10), ...initRegions(RANGES, 10)];
  };
  const ctx3 = new DamonContext({ attrs: attrs(), targetIds: [4], ops: overlapping, clock: 'virtual' });
  const seen3 = watch(ctx3);
  ctx3.step();
  assert.match(seen3.stopped[0].error?.message ?? '', /scripted\.init left target 4 with region 10 .* overlaps/);
});

test('stop() emits stopped off once and cleans up; from a listener it ends the current step', async () => {
  const ops = new ScriptedOps();
  const ctx = new DamonContext({ attrs: attrs(), targetIds: [1], ops, clock: 'virtual' });
  const seen = watch(ctx);
  ctx.runFor(50_000);
  await ctx.stop();
  await ctx.stop();
  assert.deepEqual(seen.stopped.map((s) => s.reason), ['off']);
  assert.equal(ops.calls.cleanup, 1);
  assert.equal(ctx.runFor(100_000), 0);
  assert.throws(() => ctx.start(), /has stopped/);

  const ops2 = new ScriptedOps();
  const ctx2 = new DamonContext({ attrs: attrs(), targetIds: [1, 2], ops: ops2, clock: 'virtual' });
  const seen2 = watch(ctx2);
  let stopping: Promise<void> | undefined;
  ctx2.on('aggregate', () => { stopping ??= ctx2.stop(); });
  ctx2.runFor(1_000_000);
  await stopping;
  assert.equal(seen2.records.length, 2, 'both records of the interval, then nothing');
  assert.deepEqual(seen2.stopped.map((s) => [s.reason, s.atUs]), [['off', 100_000]]);
  assert.equal(ops2.calls.prepare, 20, 'no prepare after the stop');
  assert.equal(ops2.calls.cleanup, 1);

  // Stopping a context that never ran: no init, so no cleanup.
  const ops3 = new ScriptedOps();
  const ctx3 = new DamonContext({ attrs: attrs(), targetIds: [1], ops: ops3 });
  const seen3 = watch(ctx3);
  await ctx3.stop();
  assert.deepEqual(seen3.stopped.map((s) => s.reason), ['off']);
  assert.deepEqual(ops3.calls, { init: 0, update: 0, prepare: 0, check: 0, cleanup: 0 });
});

test('bad construction arguments are errors that say what is wrong', () => {
  const ops = new ScriptedOps();
  assert.throws(() => new DamonContext({ attrs: attrs(), targetIds: [], ops }), /targetIds: at least one/);
  assert.throws(() => new DamonContext({ attrs: attrs(), targetIds: [3, 3], ops }), /targetIds: 3 appears twice/);
  assert.throws(() => new DamonContext({ attrs: attrs(), targetIds: [-1], ops }), /targetIds: -1 is not/);
  assert.throws(() => new DamonContext({ attrs: attrs({ samplingUs: 0 }), targetIds: [1], ops }), AttributeError);
  assert.throws(
    () => new DamonContext({ attrs: attrs(), targetIds: [1], ops, clock: 'wall' as 'real' }),
    /clock: must be 'real' or 'virtual'/,
  );
  assert.throws(
    () => new DamonContext({ attrs: attrs(), targetIds: [1], ops, adjust: 'linux' as 'kernel' }),
    /adjust: must be 'kernel' or 'refined', got linux/,
  );
  const ctx = new DamonContext({ attrs: attrs(), targetIds: [1], ops, clock: 'virtual' });
  assert.throws(() => ctx.runFor(-1), /runFor: duration/);
});

test('adjust selects the split: the kernel halves at tenths, refined (the default) cuts a finer grid', () => {
  // Ten regions of 25 to 34 pages, all accessed at every check: nothing merges (the size
  // limit is 300 / 10 = 30 pages) and no two counts differ. random() is always 0.5. The
  // region budget is one at which refined exploration aims at 50 pieces.
  const maxNrRegions = Math.ceil(50 / EXPLORATION_SHARE);
  assert.equal(explorationPieces(maxNrRegions, 10), 50);
  const afterFirstAggregation = (adjust?: 'kernel' | 'refined') => {
    const ops = new ScriptedOps();
    ops.hot.add(1);
    const ctx = new DamonContext({ attrs: attrs({ maxNrRegions }), targetIds: [1], ops, random: () => 0.5, clock: 'virtual', adjust });
    const seen = watch(ctx);
    ctx.runFor(100_000);
    const merged = seen.records[0].regions.map((r) => [r.start / P, r.end / P]);
    assert.equal(merged.length, 10);
    return { adjust: ctx.adjust, merged, starts: ctx.targets[0].regions.map((r) => r.start / P) };
  };
  // Kernel: two pieces, cut at 1 + floor(0.5 * 9) = 5 tenths.
  const kernel = afterFirstAggregation('kernel');
  assert.deepEqual(kernel.starts, kernel.merged.flatMap(([s, e]) => [s, s + Math.floor((5 * (e - s)) / 10)]));
  // Refined: exploration pieces of 300 / 50 = 6 pages, so round(size / 6) strata per
  // region, cut in the middle of each stratum boundary's window with random() = 0.5.
  const refined = afterFirstAggregation('refined');
  assert.deepEqual(refined.starts, refined.merged.flatMap(([s, e]) => {
    const k = Math.round((e - s) / 6);
    return Array.from({ length: k }, (_, j) => s + Math.floor((j * (e - s)) / k));
  }));
  assert.equal(refined.starts.length, 52);
  assert.equal(afterFirstAggregation().adjust, 'refined');
});

test('real-time loop: ~0.5 s at 5 ms sampling keeps the ideal schedule and leaves the event loop free', async () => {
  const ops = new ScriptedOps();
  ops.hot.add(1);
  const ctx = new DamonContext({
    attrs: attrs({ samplingUs: 5_000, aggregationUs: 50_000, updateUs: 100_000 }), targetIds: [1], ops,
  });
  const seen = watch(ctx);
  let ticks = 0;
  const other = setInterval(() => ticks++, 1);
  const t0 = performance.now();
  ctx.start();
  assert.throws(() => ctx.start(), /already started/);
  assert.throws(() => ctx.step(), /real-time loop is running/);
  await new Promise((resolve) => setTimeout(resolve, 500));
  await ctx.stop();
  const elapsedUs = (performance.now() - t0) * 1000;
  clearInterval(other);

  const d = ctx.drift();
  // Bounds are loose where machine load (other processes on these 2 cores) shows up,
  // tight where the design promises independence from it. How closely real intervals
  // follow the configured ones under load is measured by the benchmark, not asserted.
  // The loop never runs ahead of the ideal schedule, whatever the load:
  const slots = ctx.passedSamples + d.missedSamples;
  assert.ok(slots <= elapsedUs / 5_000 + 2, `${slots} slots in ${elapsedUs} us`);
  assert.ok(d.sampling.total === ctx.passedSamples - 1 && d.sampling.count === d.sampling.total);
  assert.ok(d.sampling.count >= 40, `sampling intervals measured: ${d.sampling.count}`);
  assert.equal(d.sampling.configuredUs, 5_000);
  assert.ok(d.sampling.meanUs >= 4_000, `mean sampling interval ${d.sampling.meanUs} us`);
  assert.ok(d.sampling.p50Us >= 2_500 && d.sampling.p50Us <= 10_000, `p50 ${d.sampling.p50Us} us`);
  assert.ok(d.sampling.p50Us <= d.sampling.p99Us && d.sampling.p99Us <= d.sampling.maxUs);
  assert.ok(d.aggregation.count >= 4, `aggregations measured: ${d.aggregation.count}`);
  assert.equal(d.aggregation.configuredUs, 50_000);
  assert.ok(d.aggregation.p50Us >= 40_000 && d.aggregation.p50Us <= 100_000, `p50 aggregation ${d.aggregation.p50Us} us`);
  assert.ok(d.stepWallUs.count === d.sampling.count + 1 && d.stepWallUs.p50Us < 5_000, `step ${d.stepWallUs.p50Us} us`);
  assert.ok(d.stepCpuUs.count === d.stepWallUs.count && d.stepCpuUs.meanUs >= 0);
  assert.ok(ticks >= 20, `a 1 ms interval timer ran only ${ticks} times`);

  assert.ok(seen.records.length >= 4 && seen.records.length <= 11, `${seen.records.length} records`);
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  const last = seen.records[seen.records.length - 1];
  assert.ok(last.endNs <= nowNs && nowNs - last.endNs < 1_000_000_000n, 'record times are wall-clock');
  assert.ok(last.regions.every((r) => r.nrAccesses === 10));
  assert.deepEqual(seen.stopped.map((s) => s.reason), ['off']);
  assert.equal(ops.calls.cleanup, 1);
  console.log(`# drift: ${JSON.stringify(d)}`);
});

test('real-time loop: an operations error stops it with reason error, and nothing crashes', async () => {
  const ops = new ScriptedOps();
  ops.onCheck = () => {
    if (ops.calls.check === 3) throw new Error('pagemap read failed');
  };
  const ctx = new DamonContext({ attrs: attrs({ samplingUs: 2_000, aggregationUs: 4_000 }), targetIds: [1], ops });
  const stopped = new Promise<[StopReason, Error | undefined]>((resolve) => {
    ctx.on('stopped', (reason, error) => resolve([reason, error]));
  });
  ctx.start();
  const [reason, error] = await stopped;
  assert.equal(reason, 'error');
  assert.equal(error?.message, 'pagemap read failed');
  assert.equal(ctx.passedSamples, 3);
  assert.equal(ops.calls.cleanup, 1);
  await ctx.stop(); // already stopped: no second event
});
