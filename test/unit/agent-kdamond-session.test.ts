// The agent's choice of operations with the kernel's DAMON in the picture, and kdamond
// sessions through the session runner on a FAKE kernel (DAMON sysfs, tracefs and /proc in
// a temp dir): default operations prefer kdamond, then page_idle; a kdamond session
// publishes the kdamond's records like any other; a session that left the choice to the
// agent runs on page_idle when the kernel's DAMON is taken; and the host probe says why
// kdamond is unavailable (here: no DAMON vaddr). The real kernel: test/guest/.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseOperations, probeHostOperations, type HostOperations } from '../../agent/daemon/ops-select.js';
import { SessionRunner } from '../../agent/daemon/session-runner.js';
import { tempSpool } from './temp-spool.js';
import { decodeRecord } from '../../common/record-wire.js';
import { RecordPublisher, type RecordSink } from '../../agent/daemon/publisher.js';
import { silentLogger } from '../../common/log.js';
import { parseSpec, type RunSpec } from '../../agent/daemon/spec.js';
import type { Operations, OpsContext } from '../../agent/engine/operations.js';
import { newRegion } from '../../agent/engine/region.js';
import { KdamondContext } from '../../agent/kdamond/kdamond-context.js';
import { AggregationRecord, Attributes, SchemeAction, TargetState, type IntervalsGoal } from '../../gen/damon/v1/damon.js';
import { schemesFromMessage } from '../../common/scheme-schema.js';
import { schemesFromText } from '../../common/scheme-text.js';
import type { RegionRecord } from '../../agent/records/record.js';
import { FakeKernel } from './kdamond-fake-kernel.js';

const fakes: FakeKernel[] = [];
const runners: SessionRunner[] = [];
afterEach(async () => {
  for (const r of runners.splice(0)) await r.stop();
  for (const f of fakes.splice(0)) f.remove();
});

const PAGE_IDLE_OK = { usable: true, missing: [], message: 'page_idle operations available' };
const PAGE_IDLE_MISSING = {
  usable: false,
  missing: ['no /sys/kernel/mm/page_idle/bitmap: the kernel lacks idle page tracking (CONFIG_IDLE_PAGE_TRACKING=y)'],
  message: 'page_idle operations unavailable: no /sys/kernel/mm/page_idle/bitmap',
};

/** The two live processes of every test: this one and its parent, also in the fake /proc. */
const PIDS = [process.pid, process.ppid];

/** Stand-in page_idle operations: four regions, every sample accessed. */
class StandInPageIdle implements Operations {
  readonly name = 'page_idle';
  init(ctx: OpsContext): void {
    for (const t of ctx.targets) t.regions = Array.from({ length: 4 }, (_, i) => newRegion(0x10000000 + i * 0x100000, 0x10000000 + (i + 1) * 0x100000));
  }
  update(): void {}
  prepareAccessChecks(): void {}
  checkAccesses(ctx: OpsContext): number {
    let max = 0;
    for (const t of ctx.targets) for (const r of t.regions) max = Math.max(max, ++r.nrAccesses);
    return max;
  }
  targetValid(): boolean {
    return true;
  }
}

/** A host whose kdamond probe and contexts use the fake kernel. */
function fakeHost(k: FakeKernel, pageIdle: HostOperations['pageIdle']): HostOperations {
  const kdamond = KdamondContext.probe(k.sysfsRoot, { tracefsRoot: k.tracefsRoot, procRoot: k.procRoot });
  return {
    operations: [...(kdamond.usable ? ['kdamond'] : []), ...(pageIdle.usable ? ['page_idle'] : []), 'synthetic'],
    unavailable: [],
    pageIdle,
    createPageIdle: () => new StandInPageIdle(),
    kdamond,
    createKdamond: (pids, attrs, schemes) =>
      new KdamondContext({
        attrs,
        schemes,
        schemeStatsIntervalMs: 0,
        targetIds: pids,
        sysfsRoot: k.sysfsRoot,
        tracefsRoot: k.tracefsRoot,
        procRoot: k.procRoot,
        files: k,
        recordSource: kdamond.recommendedSource,
      }),
  };
}

function fake(): FakeKernel {
  const k = new FakeKernel();
  fakes.push(k);
  for (const pid of PIDS) k.addProcess(pid);
  return k;
}

function spec(operations: string, pids = PIDS, intervalsGoal?: IntervalsGoal): RunSpec {
  return parseSpec({
    sessionId: 'k1',
    attrs: {
      samplingIntervalUs: 5_000n,
      aggregationIntervalUs: 50_000n,
      updateIntervalUs: 500_000n,
      minNrRegions: 10,
      maxNrRegions: 100,
      resultFile: '',
      resultFormat: '', schemes: [],
      intervalsGoal,
    },
    pids,
    operations,
    syntheticWorkload: '',
    generation: 1n,
  });
}

function runner(s: RunSpec, hostOps: HostOperations): { runner: SessionRunner; published: AggregationRecord[] } {
  const published: AggregationRecord[] = [];
  const sink: RecordSink = {
    async publish(_subject, data) {
      published.push(decodeRecord(data));
      return {};
    },
  };
  const r = new SessionRunner(s, {
    host: 'unit-host',
    dataDir: '/nonexistent',
    hostOps,
    publisher: new RecordPublisher(sink, { spool: tempSpool(), log: silentLogger }),
    instanceId: 'unit-instance',
    onChange: () => undefined,
    log: silentLogger,
  });
  runners.push(r);
  return { runner: r, published };
}

async function until(what: string, ok: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const REGIONS: RegionRecord[][] = [
  [{ start: 0x10000000, end: 0x10400000, nrAccesses: 10, age: 2 }, { start: 0x10400000, end: 0x11000000, nrAccesses: 0, age: 5 }],
  [{ start: 0x7f0000000000, end: 0x7f0000100000, nrAccesses: 3, age: 1 }],
];

test('default operations: kdamond first, then page_idle; named operations as asked; what is missing otherwise', () => {
  const k = fake();
  const both = fakeHost(k, PAGE_IDLE_OK);
  const best = chooseOperations(spec(''), both);
  assert.ok(best.ok && best.engine === 'kdamond');
  assert.equal(best.fallback?.name, 'page_idle', 'page_idle stands by in case the kernel DAMON is taken');
  const named = chooseOperations(spec('page_idle'), both);
  assert.ok(named.ok && named.engine === 'damon' && named.name === 'page_idle');
  assert.ok(chooseOperations(spec('kdamond'), fakeHost(k, PAGE_IDLE_MISSING)).ok);

  k.addForeignKdamond('on', 812);
  const busy = fakeHost(k, PAGE_IDLE_OK);
  const pi = chooseOperations(spec(''), busy);
  assert.ok(pi.ok && pi.name === 'page_idle', 'kdamond busy at probe time: page_idle');
  const none = chooseOperations(spec(''), fakeHost(k, PAGE_IDLE_MISSING));
  assert.ok(!none.ok);
  assert.match(none.message, /^page_idle unavailable: no \/sys\/kernel\/mm\/page_idle\/bitmap.*; kdamond unavailable: DAMON sysfs interface at .* is in use: nr_kdamonds is 1 \(kdamond 0: on \(pid 812\)\)/);
  const kd = chooseOperations(spec('kdamond'), busy);
  assert.ok(!kd.ok);
  assert.match(kd.message, /^kdamond unavailable: DAMON sysfs interface .* is in use/);
});

test('the host probe (read-only) lists kdamond first when usable, else says why it is unavailable', () => {
  // Development hosts have no DAMON vaddr: unavailable, with the probe's message. A host
  // whose kernel DAMON is usable and free lists it first.
  const h = probeHostOperations({ probePageIdle: () => PAGE_IDLE_MISSING });
  const line = h.unavailable.find((u) => u.startsWith('kdamond: '));
  if (h.kdamond.usable) {
    assert.deepEqual(h.operations, ['kdamond', 'synthetic']);
    assert.equal(line, undefined);
    return;
  }
  assert.deepEqual(h.operations, ['synthetic']);
  assert.equal(line, `kdamond: ${h.kdamond.message}`);
  assert.ok(h.kdamond.missing.length > 0 && h.kdamond.message !== '');
  const choice = chooseOperations(spec(''), h);
  assert.ok(!choice.ok);
  assert.equal(choice.message, `page_idle unavailable: ${PAGE_IDLE_MISSING.missing[0]}; kdamond unavailable: ${h.kdamond.message}`);
});

test('a kdamond session publishes the kdamond records as kdamond, then ends when its targets exit', async () => {
  const k = fake();
  const { runner: r, published } = runner(spec(''), fakeHost(k, PAGE_IDLE_OK));
  k.autoAggregate(20, () => REGIONS);
  await r.start();
  for (const t of r.observed().targets) {
    assert.equal(t.state, TargetState.TARGET_STATE_RUNNING);
    assert.equal(t.operations, 'kdamond');
  }
  await until('a record of each target', () => PIDS.every((p) => published.some((x) => x.pid === p)));
  const mine = published.find((x) => x.pid === process.pid)!;
  assert.equal(mine.operations, 'kdamond');
  assert.equal(mine.maxNrAccesses, 10);
  assert.deepEqual(
    mine.regions.map((g) => [Number(g.start), Number(g.end), g.nrAccesses, g.age]),
    REGIONS[0].map((g) => [g.start, g.end, g.nrAccesses, g.age]),
  );
  assert.equal(k.get('sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds'), '1', 'our kdamond runs');

  // Both targets exit (in the fake /proc) and the kernel stops the kdamond.
  for (const pid of PIDS) k.killProcess(pid);
  k.kdamondStops();
  await until('the context ended', () => k.get('sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds') === '0');
  await until('both targets EXITED', () => r.observed().targets.every((t) => t.state === TargetState.TARGET_STATE_EXITED));
  assert.equal(r.observed().running, false);
  assert.deepEqual(k.instances(), [], 'our trace instance is gone');
});

test('default operations and the kernel DAMON taken since the probe: the session runs on page_idle', async () => {
  const k = fake();
  const host = fakeHost(k, PAGE_IDLE_OK);
  // Another tool claims the kernel's DAMON after the agent probed it.
  k.addForeignKdamond('on', 4242);
  const { runner: r, published } = runner(spec(''), host);
  await r.start();
  await until('page_idle records', () => published.length >= 2);
  for (const t of r.observed().targets) {
    assert.equal(t.state, TargetState.TARGET_STATE_RUNNING);
    assert.equal(t.operations, 'page_idle');
  }
  assert.ok(published.every((x) => x.operations === 'page_idle'));
  assert.equal(k.get('sys/kernel/mm/damon/admin/kdamonds/0/state'), 'on', 'the other tool\'s kdamond is untouched');
});

test('kdamond asked for by name and taken at start: every target FAILED saying so', async () => {
  const k = fake();
  const host = fakeHost(k, PAGE_IDLE_OK);
  k.addForeignKdamond('off');
  const { runner: r } = runner(spec('kdamond'), host);
  await r.start();
  await until('the targets FAILED', () => r.observed().targets.every((t) => t.state === TargetState.TARGET_STATE_FAILED));
  for (const t of r.observed().targets) {
    assert.equal(t.operations, 'kdamond');
    assert.match(t.message, /kdamond operations unavailable: .*is in use: nr_kdamonds is 1 \(kdamond 0: off\)/);
  }
});

const GOAL: IntervalsGoal = { accessBp: 400, aggrs: 3, minSampleUs: 1_000n, maxSampleUs: 100_000n };

test('an intervals goal on a kernel without intervals_goal (6.12): kdamond by name fails saying so; by default page_idle runs it', async () => {
  const k = fake();
  const { runner: named } = runner(spec('kdamond', PIDS, GOAL), fakeHost(k, PAGE_IDLE_OK));
  await named.start();
  await until('the targets FAILED', () => named.observed().targets.every((t) => t.state === TargetState.TARGET_STATE_FAILED));
  for (const t of named.observed().targets) assert.match(t.message, /kdamond operations unavailable: intervals_goal is not supported by this kernel/);
  assert.equal(k.get('sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds'), '0', 'the kdamond we had claimed is removed again');

  const { runner: auto, published } = runner(spec('', PIDS, GOAL), fakeHost(k, PAGE_IDLE_OK));
  await auto.start();
  await until('page_idle records', () => published.length >= 2);
  assert.ok(auto.observed().targets.every((t) => t.state === TargetState.TARGET_STATE_RUNNING && t.operations === 'page_idle'));
});

test('an intervals goal on a kernel with intervals_goal (6.15+) is handed to the kdamond', async () => {
  const k = new FakeKernel({ intervalsGoal: true });
  fakes.push(k);
  for (const pid of PIDS) k.addProcess(pid);
  k.autoAggregate(20, () => REGIONS);
  const { runner: r, published } = runner(spec('kdamond', PIDS, GOAL), fakeHost(k, PAGE_IDLE_OK));
  await r.start();
  await until('kdamond records', () => published.length >= 2);
  const g = 'sys/kernel/mm/damon/admin/kdamonds/0/contexts/0/monitoring_attrs/intervals/intervals_goal';
  assert.deepEqual(['access_bp', 'aggrs', 'min_sample_us', 'max_sample_us'].map((f) => k.get(`${g}/${f}`)), ['400', '3', '1000', '100000']);
  assert.ok(published.every((x) => x.operations === 'kdamond' && x.samplingIntervalUs === undefined), 'when each record ran is the kernel\'s to know');
  // The kernel tuned 5 ms / 50 ms to 2.5 ms / 50 ms (the fake's answer to update_tuned_intervals).
  await until('the tuned intervals read back', () => r.observed().samplingIntervalUs === 2_500n);
  assert.equal(r.observed().aggregationIntervalUs, 50_000n);
  await r.stop();
  assert.equal(k.get('sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds'), '0', 'the tuned values are ours: the kdamond is still removed');
});

test('default operations and schemes: the best operations that can apply every action; why none can otherwise', () => {
  const k = fake();
  const both = fakeHost(k, PAGE_IDLE_OK);
  const withActions = (operations: string, ...actions: SchemeAction[]): RunSpec => {
    const s = spec(operations);
    const schemes = actions.map((action) => ({ accessPattern: { minSizeBytes: 0n, minNrAccesses: 0, minAge: 0 }, action, applyIntervalUs: 0n }));
    return { ...s, schemes: schemesFromMessage(schemes, s.attrs) };
  };
  const hugepage = chooseOperations(withActions('', SchemeAction.SCHEME_ACTION_PAGEOUT, SchemeAction.SCHEME_ACTION_HUGEPAGE), both);
  assert.ok(hugepage.ok && hugepage.engine === 'kdamond');
  assert.equal(hugepage.fallback, undefined, 'page_idle cannot apply hugepage: no fallback to it');
  const collapse = chooseOperations(withActions('', SchemeAction.SCHEME_ACTION_COLLAPSE), both);
  assert.ok(collapse.ok && collapse.name === 'page_idle', 'the kernel DAMOS has no collapse: page_idle');
  const neither = chooseOperations(withActions('', SchemeAction.SCHEME_ACTION_COLLAPSE, SchemeAction.SCHEME_ACTION_NOHUGEPAGE), both);
  assert.ok(!neither.ok);
  assert.equal(
    neither.message,
    'operations "page_idle" cannot apply schemes[1] nohugepage (it applies willneed, cold, pageout, collapse, stat); ' +
      'operations "kdamond" cannot apply schemes[0] collapse (it applies willneed, cold, pageout, hugepage, nohugepage, stat)',
  );
  // An agent refuses a spec whose explicit operations cannot apply its schemes, naming the scheme.
  const hp = { accessPattern: { minSizeBytes: 0n, minNrAccesses: 0, minAge: 0 }, action: SchemeAction.SCHEME_ACTION_HUGEPAGE, applyIntervalUs: 0n };
  assert.throws(
    () => parseSpec({ sessionId: 'k1', attrs: { ...Attributes.fromPartial({}), schemes: [hp] }, pids: [1], operations: 'page_idle', syntheticWorkload: '', generation: 1n }),
    /^SchemaError: spec\.attrs\.schemes\[0\]\.action: operations "page_idle" cannot apply schemes\[0\] hugepage/,
  );
});

test('a kdamond session hands its schemes to the kernel\'s DAMOS and reports their statistics as the kernel counts them', async () => {
  const k = fake();
  const base = spec('kdamond');
  // Page out what stayed idle for 10 aggregations, 64 MiB a second at most.
  const schemes = schemesFromText('4096 18446744073709551615 0 0 10 4294967295 pageout 0 67108864 1000 0 0 1000 0 0 0 0 0', base.attrs);
  const { runner: r } = runner({ ...base, schemes }, fakeHost(k, PAGE_IDLE_OK));
  k.autoAggregate(20, () => REGIONS);
  await r.start();
  const kd = 'sys/kernel/mm/damon/admin/kdamonds/0';
  await until('our kdamond on', () => k.has(`${kd}/state`) && k.get(`${kd}/state`) === 'on');
  const s = `${kd}/contexts/0/schemes`;
  assert.equal(k.get(`${s}/0/action`), 'pageout');
  assert.equal(k.get(`${s}/0/access_pattern/age/min`), '10');
  assert.equal(k.get(`${s}/0/quotas/bytes`), '67108864');
  k.schemeStats = { 0: { nr_tried: '4', sz_tried: '16777216', nr_applied: '4', sz_applied: '16777216', qt_exceeds: '0' } };
  await until('the statistics read back', () => r.schemeStats()[0]?.nrApplied === 4n);
  assert.deepEqual(r.schemeStats(), [{ scheme: 0, nrTried: 4n, szTried: 16777216n, nrApplied: 4n, szApplied: 16777216n, qtExceeds: 0n, active: true }]);
});
