// The record-source benchmark hook on a FAKE kernel whose "kdamond" reports every 20 ms:
// both sources run in turn, their costs and file traffic are counted, the cheaper one is
// named, and the command line is checked. (The numbers that matter come from the guest.)
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { cheaperSource, compareRecordSources, parseArgs, type SourceBenchmarkResult } from '../../bench/kdamond-sources.js';
import { FakeKernel } from './kdamond-fake-kernel.js';

const fakes: FakeKernel[] = [];
afterEach(() => {
  for (const f of fakes.splice(0)) f.remove();
});

test('fake tree: both record sources run in turn and report their costs', async () => {
  const k = new FakeKernel();
  fakes.push(k);
  k.addProcess(100);
  const region = { start: 0x10000000, end: 0x10010000, nrAccesses: 3, age: 1 };
  k.autoAggregate(20, () => [[region]]);
  const results = await compareRecordSources({
    sysfsRoot: k.sysfsRoot,
    tracefsRoot: k.tracefsRoot,
    procRoot: k.procRoot,
    files: k,
    pids: [100],
    attrs: { samplingUs: 1000, aggregationUs: 20_000 },
    durationMs: 150,
  });
  k.stopAutoAggregate();
  assert.deepEqual(results.map((r) => [r.recordSource, r.stopReason]), [
    ['tracepoint', 'off'],
    ['tried_regions', 'off'],
  ]);
  for (const r of results) {
    assert.ok(r.costs.aggregations >= 2, `${r.recordSource}: ${r.costs.aggregations} aggregations`);
    assert.ok(r.costs.records >= 2);
    // libuv's timers run on a cached loop time, so they may fire a little early by hrtime.
    assert.ok(r.costs.elapsedUs >= 140_000, `elapsed ${r.costs.elapsedUs} us`);
    assert.equal(r.costs.kdamondCpuUs, 0, 'the fake kdamond spends no CPU');
    assert.ok(r.perAggregation.collectorCpuUs !== null && r.perAggregation.collectorCpuUs > 0);
    assert.ok(r.perSecond.records !== null && r.perSecond.records > 0);
  }
  const [tp, tr] = results;
  assert.ok(tp.io.pipeReads >= 2 && tp.io.writes === 0, 'tracepoint: trace_pipe reads, no writes while monitoring');
  assert.ok(tr.io.writes >= 2 && tr.io.reads >= 4 * tr.costs.aggregations, 'tried_regions: one command and four files per region per update');
  assert.equal(k.get('sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds'), '0');
  assert.deepEqual(k.instances(), []);
});

test('the cheaper source is the one with the least CPU per aggregation among complete runs', () => {
  const r = (name: 'tracepoint' | 'tried_regions', cpu: number, kd: number, stop = 'off'): SourceBenchmarkResult =>
    ({
      recordSource: name,
      stopReason: stop,
      costs: { aggregations: 10 },
      perAggregation: { collectorCpuUs: cpu, kdamondCpuUs: kd, fileOps: 1 },
    }) as unknown as SourceBenchmarkResult;
  assert.equal(cheaperSource([r('tracepoint', 50, 30), r('tried_regions', 400, 10)]), 'tracepoint');
  assert.equal(cheaperSource([r('tracepoint', 50, 300), r('tried_regions', 40, 10)]), 'tried_regions');
  assert.equal(cheaperSource([r('tracepoint', 5, 3, 'error'), r('tried_regions', 400, 10)]), 'tried_regions');
  assert.equal(cheaperSource([r('tracepoint', 5, 3, 'error')]), undefined);
});

test('the benchmark command line: system paths by default, every bad argument named', () => {
  const o = parseArgs(['--pid', '42', '--seconds', '2.5', '--sources', 'tried_regions', '--attrs', '5000 100000 1000000 10 1000']);
  assert.equal(o.sysfsRoot, '/sys/kernel/mm/damon');
  assert.equal(o.tracefsRoot, '/sys/kernel/tracing');
  assert.deepEqual(o.pids, [42]);
  assert.equal(o.durationMs, 2500);
  assert.deepEqual(o.sources, ['tried_regions']);
  assert.equal(o.attrs?.aggregationUs, 100_000);
  assert.throws(() => parseArgs([]), /at least one --pid is needed/);
  assert.throws(() => parseArgs(['--pid', 'x']), /--pid: not a process id: "x"/);
  assert.throws(() => parseArgs(['--pid', '1', '--seconds', '-1']), /--seconds: must be a positive number/);
  assert.throws(() => parseArgs(['--pid', '1', '--sources', 'perf']), /record source "perf"/);
  assert.throws(() => parseArgs(['--pid', '1', '--attrs', '1 2']), /attrs: expected/);
  assert.throws(() => parseArgs(['--pid', '1', '--bogus']), /unknown argument "--bogus"/);
  assert.throws(() => parseArgs(['--pid']), /--pid needs a value/);
});
