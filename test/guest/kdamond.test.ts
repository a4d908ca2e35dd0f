// The kdamond engine against the real Linux 6.12 DAMON sysfs interface and tracefs, in the
// guest (kdamond-run.ts runs there): what the unit tests' fake kernel claims holds on the
// real one. The probe works without /proc/kallsyms; the driver's write sequence is accepted
// as written; the kdamond's pid is there right after "on"; our trace instance reads back
// the mono clock and the common_pid filter and delivers every aggregation, back to back;
// the stat schemes' target filters give each target its own regions; when one of two
// targets exits the kdamond goes on for the other, and when both have exited it stops by
// itself and the context ends with 'no-targets'; cleanup leaves nothing behind; and "off"
// answers EINVAL before a kdamond ever ran and EPERM after it stopped by itself.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { frequentSpans } from '../support/synthetic-accuracy.js';
import { overlapBytes } from '../../agent/ops/synthetic-workload.js';
import type { KdamondRunReport, LoggedOp, SourceRun } from './kdamond-run.js';
import { recordFromJson } from './record-json.js';
import { runInGuest } from './rig.js';
import { buildWorkload } from './workload.js';

const KD = 'mm/damon/admin/kdamonds';
const C = `${KD}/0/contexts/0`;
const INST = 'tracing/instances/kdamond-run';

function tail(text: string, lines = 30): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

/** The writes that configure two targets, as the fake-tree tests expect them too. */
function configureWrites(pids: number[]): LoggedOp[] {
  return [
    { op: 'write', path: `${KD}/nr_kdamonds`, value: '1' },
    { op: 'write', path: `${KD}/0/contexts/nr_contexts`, value: '1' },
    { op: 'write', path: `${C}/operations`, value: 'vaddr' },
    { op: 'write', path: `${C}/monitoring_attrs/intervals/sample_us`, value: '5000' },
    { op: 'write', path: `${C}/monitoring_attrs/intervals/aggr_us`, value: '100000' },
    { op: 'write', path: `${C}/monitoring_attrs/intervals/update_us`, value: '1000000' },
    { op: 'write', path: `${C}/monitoring_attrs/nr_regions/min`, value: '10' },
    { op: 'write', path: `${C}/monitoring_attrs/nr_regions/max`, value: '1000' },
    { op: 'write', path: `${C}/targets/nr_targets`, value: String(pids.length) },
    ...pids.map((p, i): LoggedOp => ({ op: 'write', path: `${C}/targets/${i}/pid_target`, value: String(p) })),
  ];
}

function schemeWrites(n: number): LoggedOp[] {
  const s = `${C}/schemes`;
  const out: LoggedOp[] = [{ op: 'write', path: `${s}/nr_schemes`, value: String(n) }];
  for (let i = 0; i < n; i++) {
    const w = (rel: string, value: string): LoggedOp => ({ op: 'write', path: `${s}/${i}/${rel}`, value });
    out.push(
      w('action', 'stat'),
      w('access_pattern/sz/min', '0'),
      w('access_pattern/sz/max', '18446744073709551615'),
      w('access_pattern/nr_accesses/min', '0'),
      w('access_pattern/nr_accesses/max', '4294967295'),
      w('access_pattern/age/min', '0'),
      w('access_pattern/age/max', '4294967295'),
      w('filters/nr_filters', '1'),
      w('filters/0/type', 'target'),
      w('filters/0/damon_target_idx', String(i)),
      w('filters/0/matching', 'N'),
    );
  }
  return out;
}

/** Each target's records: its own workload's mapping covered, its own hot range seen hot. */
function checkTargets(run: SourceRun): void {
  for (const w of run.workloads) {
    const recs = run.records.map((x) => recordFromJson(x.record)).filter((r) => r.targetId === w.pid);
    assert.ok(recs.length >= 3, `${run.source}: ${recs.length} records of ${w.pid}`);
    const covering = recs.filter((r) => overlapBytes(r.regions, [w.mapping]) === w.mapping.end - w.mapping.start);
    assert.equal(covering.length, recs.length, `${run.source}: every record of ${w.pid} covers its mapping`);
    const seen = Math.max(...recs.map((r) => overlapBytes(frequentSpans(r.regions, r.maxNrAccesses, 0.5), w.hot) / (w.hot[0]!.end - w.hot[0]!.start)));
    assert.ok(seen >= 0.9, `${run.source}: target ${w.pid}'s hot range seen hot at best ${(seen * 100).toFixed(1)}%`);
  }
}

describe('the kdamond engine on the real 6.12 interface, in the guest', () => {
  let rep: KdamondRunReport;
  before(async () => {
    const driver = fileURLToPath(new URL('./kdamond-run.js', import.meta.url));
    const r = await runInGuest(`node ${driver} --workload ${buildWorkload()}`, { timeoutMs: 180_000 });
    assert.equal(r.exitCode, 0, `the kdamond run in the guest failed (exit ${r.exitCode}); stderr tail:\n${tail(r.stderr)}`);
    rep = JSON.parse(r.stdout) as KdamondRunReport;
  });

  test('the probe says usable without /proc/kallsyms, and why vaddr is checked later', () => {
    assert.equal(rep.kallsymsPresent, false, 'the rig kernel has no kallsyms');
    assert.equal(rep.probe.usable, true, rep.probe.message);
    assert.equal(rep.probe.recommendedSource, 'tracepoint');
    assert.match(rep.probe.message, /vaddr operations not verifiable read-only \(\/proc\/kallsyms is unreadable \(ENOENT\)\); checked in avail_operations/);
  });

  test('tracepoint source: the write sequence, the pid after "on", the instance read back, every aggregation, cleanup', (t) => {
    const run = rep.runs.find((x) => x.source === 'tracepoint')!;
    const pids = run.workloads.map((w) => w.pid);
    const kpid = run.kdamondPid!;
    t.diagnostic(`started in ${run.startMs.toFixed(0)} ms; ${run.costs.aggregations} aggregations, ${run.costs.records} records`);
    assert.deepEqual(run.log, [
      ...configureWrites(pids),
      { op: 'mkdir', path: INST },
      { op: 'write', path: `${INST}/trace_clock`, value: 'mono' },
      { op: 'write', path: `${KD}/0/state`, value: 'on' },
      { op: 'write', path: `${INST}/events/damon/damon_aggregated/filter`, value: `common_pid == ${kpid}` },
      { op: 'write', path: `${INST}/events/damon/damon_aggregated/enable`, value: '1' },
      // The kdamond stops by itself when its last target exits: no "off", only removal;
      // "off" only when the context saw the exit first (a busy host).
      { op: 'write', path: `${INST}/events/damon/damon_aggregated/enable`, value: '0' },
      { op: 'rmdir', path: INST },
      ...(run.release?.turnedOff ? [{ op: 'write', path: `${KD}/0/state`, value: 'off' } as LoggedOp] : []),
      { op: 'write', path: `${KD}/nr_kdamonds`, value: '0' },
    ]);
    assert.ok(kpid > 0);
    assert.equal(run.kdamondComm, 'kdamond.0');
    assert.equal(run.traceClock, 'local global counter uptime perf [mono] mono_raw boot tai x86-tsc');
    assert.equal(run.eventFilter, `common_pid == ${kpid}`);
    assert.equal(run.costs.source.kernelPidFilter, 1);
    assert.equal(run.costs.source.lostEvents, 0);
    assert.equal(run.costs.source.incompleteAggregations, 0);
    assert.equal(run.costs.missedAggregations, 0);
    assert.ok(run.costs.kdamondCpuUs !== undefined && run.costs.kdamondCpuUs > 0, 'the kdamond\'s CPU time from /proc/<pid>/stat');
    // The kernel's timestamps (mono clock) map to wall-clock record times: each record ends
    // shortly before it was delivered, and a target's records follow each other back to back.
    for (const x of run.records) {
      const endMs = Number(BigInt(x.record.e) / 1_000_000n);
      assert.ok(endMs <= x.atMs + 5 && endMs >= x.atMs - 1000, `record ending at ${endMs} delivered at ${x.atMs}`);
    }
    for (const pid of pids) {
      const recs = run.records.map((x) => x.record).filter((r) => r.t === pid);
      for (let i = 1; i < recs.length; i++) assert.equal(recs[i]!.s, recs[i - 1]!.e, `target ${pid}: record ${i} starts where ${i - 1} ended`);
    }
    checkTargets(run);
  });

  test('target exits: the kdamond goes on for the other target, then stops by itself; the context ends with no-targets', () => {
    for (const run of rep.runs) {
      const [a, b] = run.workloads.map((w) => w.pid);
      assert.deepEqual(run.exited.map((e) => e.pid), [a, b], run.source);
      assert.ok(run.exited[0]!.atMs - run.killedAtMs[0]! < 1000, `${run.source}: first exit seen in ${run.exited[0]!.atMs - run.killedAtMs[0]!} ms`);
      if (run.source === 'tracepoint') assert.equal(run.stateAfterFirstExit, 'on', 'one exited target does not stop the kdamond');
      // No records of the exited target after its exit was reported; the other's continue.
      const afterExit = run.records.filter((x) => x.atMs > run.exited[0]!.atMs);
      assert.ok(afterExit.every((x) => x.record.t === b), `${run.source}: records of ${a} after its exit`);
      assert.ok(afterExit.length > 0, `${run.source}: no records of ${b} after ${a} exited`);
      assert.equal(run.stop.reason, 'no-targets', `${run.source}: ${run.stop.error ?? ''}`);
      assert.ok(run.stop.atMs - run.killedAtMs[1]! < 2000, `${run.source}: stopped ${run.stop.atMs - run.killedAtMs[1]!} ms after the last exit`);
      // Usually the kernel stops the kdamond first and it is removed without "off"; on a busy
      // host the context may see the exit first and turn it off itself. Either way it is gone.
      assert.equal(run.release?.removed, true, `${run.source}: the kdamond is removed (${JSON.stringify(run.release)})`);
      assert.equal(run.nrKdamondsAfter, '0');
      assert.deepEqual(run.instancesAfter, []);
    }
  });

  test('tried_regions source: one stat scheme per target whose target filter gives each target its own regions', (t) => {
    const run = rep.runs.find((x) => x.source === 'tried_regions')!;
    const pids = run.workloads.map((w) => w.pid);
    t.diagnostic(`${run.costs.source.updates} updates, ${run.costs.aggregations} aggregations delivered, ${run.costs.missedAggregations} missed`);
    const updates = run.log.filter((e) => e.op === 'write' && e.value === 'update_schemes_tried_regions').length;
    assert.ok(updates >= 3, `${updates} updates`);
    assert.deepEqual(run.log, [
      ...configureWrites(pids),
      ...schemeWrites(2),
      { op: 'write', path: `${KD}/0/state`, value: 'on' },
      ...Array.from({ length: updates }, (): LoggedOp => ({ op: 'write', path: `${KD}/0/state`, value: 'update_schemes_tried_regions' })),
      // "off" only when the context saw the targets' exits before the kernel stopped the kdamond (a busy host).
      ...(run.release?.turnedOff ? [{ op: 'write', path: `${KD}/0/state`, value: 'off' } as LoggedOp] : []),
      { op: 'write', path: `${KD}/nr_kdamonds`, value: '0' },
    ]);
    checkTargets(run);
  });

  test('"off" is EINVAL for a kdamond never turned on and EPERM for one that stopped by itself; the driver removes the latter', () => {
    assert.equal(rep.offNeverOn, 'EINVAL');
    assert.equal(rep.offStopped, 'EPERM');
    assert.deepEqual(rep.releaseAfterSelfStop, { turnedOff: false, removed: true });
  });
});
