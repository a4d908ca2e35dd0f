// The session runner's handling of operations failures, with stand-in page_idle
// operations: a target the operations cannot monitor fails alone (the others go on in a
// new context); operations that become unavailable fail every running target.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OperationsUnavailableError, TargetError, type Operations, type OpsContext, type SampledIntervals } from '../../agent/engine/operations.js';
import { newRegion } from '../../agent/engine/region.js';
import { SessionRunner } from '../../agent/daemon/session-runner.js';
import { tempSpool } from './temp-spool.js';
import { decodeRecord } from '../../common/record-wire.js';
import { RecordPublisher, type RecordSink } from '../../agent/daemon/publisher.js';
import { silentLogger } from '../../common/log.js';
import { parseSpec } from '../../agent/daemon/spec.js';
import type { HostOperations } from '../../agent/daemon/ops-select.js';
import { TargetState, type IntervalsGoal } from '../../gen/damon/v1/damon.js';

const MiB = 2 ** 20;

/** Ten 4 MiB regions per target; every sampled page accessed. */
class StandInOps implements Operations {
  readonly name = 'page_idle';
  checks = 0;
  constructor(private readonly o: { failInit?: number; unavailableAfter?: number }) {}
  init(ctx: OpsContext): void {
    for (const t of ctx.targets) {
      if (t.id === this.o.failInit) throw new TargetError(t.id, 'cannot read /proc/N/maps: permission denied');
      t.regions = Array.from({ length: 10 }, (_, i) => newRegion(0x1000_0000 + i * 4 * MiB, 0x1000_0000 + (i + 1) * 4 * MiB));
    }
  }
  update(): void {}
  prepareAccessChecks(): void {}
  checkAccesses(ctx: OpsContext): number {
    if (this.o.unavailableAfter !== undefined && ++this.checks > this.o.unavailableAfter) {
      throw new OperationsUnavailableError('page_idle', 'PFNs in /proc/PID/pagemap read as zero');
    }
    let max = 0;
    for (const t of ctx.targets) for (const r of t.regions) max = Math.max(max, ++r.nrAccesses);
    return max;
  }
  targetValid(): boolean {
    return true;
  }
}

function host(make: () => Operations): HostOperations {
  const missing = ['no /sys/kernel/mm/damon: the kernel has no DAMON'];
  return {
    operations: ['page_idle', 'synthetic'],
    unavailable: [`kdamond: ${missing[0]}`],
    pageIdle: { usable: true, missing: [], message: 'page_idle operations available' },
    createPageIdle: make,
    kdamond: {
      usable: false,
      missing,
      notes: [],
      message: missing[0],
      sources: { tracepoint: { usable: false, missing }, tried_regions: { usable: false, missing } },
      recommendedSource: undefined,
    },
    createKdamond: () => assert.fail('kdamond is unavailable on this stand-in host'),
  };
}

function setup(make: () => Operations, intervalsGoal?: IntervalsGoal) {
  const subjects: string[] = [];
  const payloads: Uint8Array[] = [];
  const sink: RecordSink = {
    async publish(subject, payload) {
      subjects.push(subject);
      payloads.push(payload);
      return {};
    },
  };
  let changes = 0;
  const spec = parseSpec({
    sessionId: 'u1',
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
    // Two live processes: this one and its parent.
    pids: [process.pid, process.ppid],
    operations: '',
    syntheticWorkload: '',
    generation: 1n,
  });
  const runner = new SessionRunner(spec, {
    host: 'unit-host',
    dataDir: '/nonexistent',
    hostOps: host(make),
    publisher: new RecordPublisher(sink, { spool: tempSpool(), log: silentLogger }),
    instanceId: 'unit-instance',
    onChange: () => changes++,
    log: silentLogger,
  });
  return { runner, subjects, payloads, changes: () => changes };
}

const state = (runner: SessionRunner, pid: number) => runner.observed().targets.find((t) => t.pid === pid)!;

test('a target the operations cannot monitor fails alone; the other runs on in a new context', async () => {
  const made: StandInOps[] = [];
  const { runner, subjects, changes } = setup(() => {
    const ops = new StandInOps({ failInit: process.ppid });
    made.push(ops);
    return ops;
  });
  await runner.start();
  const bad = state(runner, process.ppid);
  assert.equal(bad.state, TargetState.TARGET_STATE_FAILED);
  assert.equal(bad.message, `target ${process.ppid}: cannot read /proc/N/maps: permission denied`);
  assert.equal(bad.operations, 'page_idle');
  assert.equal(state(runner, process.pid).state, TargetState.TARGET_STATE_RUNNING);
  assert.equal(made.length, 2, 'a second context without the failed target');
  assert.ok(changes() >= 1, 'the failure is reported early');
  // Aggregations of 50 ms: wait for two records (a busy machine may take much longer).
  const deadline = Date.now() + 30_000;
  while (subjects.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await runner.stop();
  assert.ok(subjects.length >= 2, `${subjects.length} records`);
  assert.ok(subjects.every((s) => s === `damon.records.u1.unit-host.${process.pid}`));
});

test('operations that become unavailable fail every running target with their message', async () => {
  const { runner } = setup(() => new StandInOps({ unavailableAfter: 3 }));
  await runner.start();
  await new Promise((r) => setTimeout(r, 100));
  const o = runner.observed();
  assert.equal(o.running, false);
  for (const t of o.targets) {
    assert.equal(t.state, TargetState.TARGET_STATE_FAILED);
    assert.equal(t.message, 'page_idle operations unavailable: PFNs in /proc/PID/pagemap read as zero');
  }
  await runner.stop();
});

test('with an intervals goal the session reports the intervals as tuned, in its observed state and in every record', async () => {
  // Every sample is accessed: 100% of the events against a goal of 4%, so each adjustment
  // halves the sampling interval until the lower bound: 5000, 2500, then 2000 us.
  const { runner, payloads } = setup(() => new StandInOps({}), { accessBp: 400, aggrs: 1, minSampleUs: 2_000n, maxSampleUs: 10_000n });
  await runner.start();
  const deadline = Date.now() + 20_000;
  const lastTuned = () => (payloads.length === 0 ? undefined : decodeRecord(payloads[payloads.length - 1]).samplingIntervalUs);
  while (lastTuned() !== 2_000n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const o = runner.observed();
  assert.equal(o.samplingIntervalUs, 2_000n);
  assert.equal(o.aggregationIntervalUs, 20_000n, 'the aggregation interval keeps its 10 samples');
  await runner.stop();
  const tuned = payloads.map((p) => decodeRecord(p).samplingIntervalUs);
  assert.equal(tuned[0], 5_000n, 'the first aggregation ran at the interval set');
  assert.ok(tuned.includes(2_500n) && tuned[tuned.length - 1] === 2_000n, tuned.join(', '));
  for (const p of payloads) assert.equal(decodeRecord(p).maxNrAccesses, 10);
});

/** The stand-in with a batched loop, as page_idle's native sampler: one call per aggregation. */
class BatchedStandInOps extends StandInOps {
  batches = 0;
  async sampleAggregation(ctx: OpsContext, nSamples: number, samplingUs: number): Promise<SampledIntervals> {
    this.batches++;
    await new Promise((r) => setTimeout(r, (nSamples * samplingUs) / 1000));
    for (let i = 0; i < nSamples; i++) this.checkAccesses(ctx);
    return { samples: nSamples, wallUs: nSamples * samplingUs, late: 0, stopped: false };
  }
}

test("the agent's engine runs the operations' batched loop (the native sampler) where they have one", async () => {
  const ops = new BatchedStandInOps({});
  const { runner, subjects } = setup(() => ops);
  await runner.start();
  const deadline = Date.now() + 30_000;
  while (subjects.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await runner.stop();
  assert.ok(subjects.length >= 4, `${subjects.length} records`);
  assert.ok(ops.batches >= 2, `${ops.batches} batches: the per-sample loop ran instead`);
});
