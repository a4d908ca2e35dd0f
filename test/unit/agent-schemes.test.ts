// Schemes through the agent: the session runner hands the spec's schemes to the engine,
// and their statistics (summed over this host's targets) are in ObservedSession; an action
// the operations cannot apply fails the session's targets with a message saying where it
// can run; statistics add up across the engines a session runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Operations, OpsContext } from '../../agent/engine/operations.js';
import { newRegion } from '../../agent/engine/region.js';
import { SessionRunner } from '../../agent/daemon/session-runner.js';
import { RecordPublisher, type RecordSink } from '../../agent/daemon/publisher.js';
import { parseSpec } from '../../agent/daemon/spec.js';
import type { HostOperations } from '../../agent/daemon/ops-select.js';
import { MadviseActuator } from '../../agent/ops/madvise-actuator.js';
import type { SchemeActuator } from '../../agent/schemes/actuator.js';
import { addSchemeStats } from '../../agent/schemes/stats.js';
import { silentLogger } from '../../common/log.js';
import { SchemeAction, TargetState, type Scheme } from '../../gen/damon/v1/damon.js';
import { tempSpool } from './temp-spool.js';
import { RecordingActuator } from './schemes-fakes.js';

const MiB = 2 ** 20;

/** Ten 4 MiB regions per target, never accessed. */
class ColdOps implements Operations {
  readonly name = 'page_idle';
  constructor(readonly actuator: SchemeActuator) {}
  init(ctx: OpsContext): void {
    for (const t of ctx.targets) t.regions = Array.from({ length: 10 }, (_, i) => newRegion(0x1000_0000 + i * 4 * MiB, 0x1000_0000 + (i + 1) * 4 * MiB));
  }
  update(): void {}
  prepareAccessChecks(): void {}
  checkAccesses(): number {
    return 0;
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

function runner(schemes: Scheme[], make: () => Operations): SessionRunner {
  const sink: RecordSink = { publish: async () => ({}) };
  const spec = parseSpec({
    sessionId: 'sch1',
    attrs: {
      samplingIntervalUs: 5_000n,
      aggregationIntervalUs: 50_000n,
      updateIntervalUs: 500_000n,
      minNrRegions: 10,
      maxNrRegions: 100,
      resultFile: '',
      resultFormat: '',
      schemes,
    },
    pids: [process.pid, process.ppid],
    operations: '',
    syntheticWorkload: '',
    generation: 1n,
  });
  return new SessionRunner(spec, {
    host: 'unit-host',
    dataDir: '/nonexistent',
    hostOps: host(make),
    publisher: new RecordPublisher(sink, { spool: tempSpool(), log: silentLogger }),
    instanceId: 'unit-instance',
    onChange: () => {},
    log: silentLogger,
  });
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pageoutAll: Scheme = { accessPattern: undefined, action: SchemeAction.SCHEME_ACTION_PAGEOUT, applyIntervalUs: 0n };
const statAll: Scheme = { accessPattern: undefined, action: SchemeAction.SCHEME_ACTION_STAT, applyIntervalUs: 0n };

test('the runner applies the spec\'s schemes and reports their statistics over both targets', async () => {
  const act = new RecordingActuator();
  const r = runner([statAll, pageoutAll], () => new ColdOps(act));
  await r.start();
  try {
    await until(() => (r.schemeStats()[1]?.nrTried ?? 0n) >= 4n, 'a few applies');
    const [stat, pageout] = r.schemeStats();
    assert.equal(stat.scheme, 0);
    assert.equal(pageout.scheme, 1);
    assert.ok(stat.nrTried > 0n && stat.nrApplied === 0n);
    assert.ok(pageout.szApplied > 0n);
    assert.equal(pageout.szApplied, pageout.szTried);
    // Both targets were acted on.
    assert.deepEqual([...new Set(act.calls.map((c) => c.targetId))].sort(), [process.pid, process.ppid].sort());
  } finally {
    await r.stop();
  }
  // Kept after the stop.
  assert.ok(r.schemeStats()[1].szApplied > 0n);
  // observed() (what heartbeats cover) reports them at most every SCHEME_STATS_REPORT_MS.
  assert.equal(r.observed().schemeStats.length, 2);
});

test('a hugepage scheme where only page_idle runs fails the targets, saying why neither operations can run it', async () => {
  const r = runner([{ ...pageoutAll, action: SchemeAction.SCHEME_ACTION_HUGEPAGE }], () => new ColdOps(new MadviseActuator('page_idle')));
  await r.start();
  const o = r.observed();
  for (const t of o.targets) {
    assert.equal(t.state, TargetState.TARGET_STATE_FAILED);
    assert.match(t.message, /^operations "page_idle" cannot apply schemes\[0\] hugepage .*; kdamond unavailable: /);
  }
  await r.stop();
});

test('statistics of the engines a session ran add up per scheme; active is the latest', () => {
  const s = (scheme: number, n: number, active: boolean) => ({
    scheme, nrTried: BigInt(n), szTried: BigInt(n * 10), nrApplied: BigInt(n), szApplied: BigInt(n * 5), qtExceeds: 1n, active,
  });
  assert.deepEqual(addSchemeStats([s(0, 1, true), s(1, 2, true)], [s(1, 3, false), s(0, 4, false)]), [
    { scheme: 0, nrTried: 5n, szTried: 50n, nrApplied: 5n, szApplied: 25n, qtExceeds: 2n, active: false },
    { scheme: 1, nrTried: 5n, szTried: 50n, nrApplied: 5n, szApplied: 25n, qtExceeds: 2n, active: false },
  ]);
  assert.deepEqual(addSchemeStats([], []), []);
});
