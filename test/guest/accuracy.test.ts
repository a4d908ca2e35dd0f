// Accuracy on a real kernel: in one guest run, the workload (256 MiB mapping, 16 MiB hot,
// the hot set moves after a phase) is monitored at the same time by the project's engine
// with the page_idle operations and by the kernel's own DAMON (kdamond), both with DAMON's
// default attributes (5 ms, 100 ms, 1 s, 10, 1000), with transparent huge pages on and off
// (accuracy-run.ts runs in the guest; this file scores what it reports, with
// test/support/phase-accuracy.ts, against the hot ranges the workload printed).
//
// The bar, for the engine's default region adjustment ('refined'): first detection (the
// aggregation at which regions at >= 50% of the maximum nr_accesses cover >= 99% of the hot
// bytes and <= 1% of the cold bytes) and re-detection after the move at most 2 aggregations
// after the kernel's (within 10 where the kernel never detects); steady hot coverage (after the first 10 aggregations of each phase) at
// most 0.01 below the kernel's or >= 0.98; steady cold coverage <= 1%; mean Jaccard of the two engines'
// steady hot sets >= 0.9. The engine with the kernel's adjustment is measured and reported
// beside it. The kdamond operations behind the agent (its session runner, default
// operations) must publish kdamond records that serve as the reference just as well, and
// the agent's runner on page_idle is held to the engine's bar next to the kernel's DAMON.
// A case that misses the comparison bar is run once more in a fresh guest, and the bar must
// hold there: an emulated guest on a busy host starves the user-space engine (not the
// kdamond) in some runs. Both rounds' figures are printed.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { before, describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  compareHotSets, comparisonFailures, KERNEL_COMPARISON_BAR, scoreEngine, type EngineScore,
} from '../support/phase-accuracy.js';
import type { AccuracyCase, EngineRun, Part } from './accuracy-run.js';
import { recordFromJson } from './record-json.js';
import { runInGuest } from './rig.js';
import { buildWorkload, phasedTruth } from './workload.js';

const MiB = 2 ** 20;
const THP_MODES = ['hugepage', 'nohugepage'] as const;
/** The guest's report of the last run, kept for a closer look when a test fails. */
const REPORT = fileURLToPath(new URL('./accuracy-last.jsonl', import.meta.url));

function tail(text: string, lines = 25): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

const pct = (x: number | undefined) => (x === undefined ? '-' : `${(x * 100).toFixed(2)}%`);
const det = (x: number | undefined, s: EngineScore, p: number) => (x === undefined ? `never (of ${s.phases[p].aggregations})` : String(x));

function describeScore(name: string, run: EngineRun, s: EngineScore): string {
  const drift = run.info.drift as { aggregation: { meanUs: number }; missedSamples?: number } | undefined;
  const regions = s.scored.reduce((a, x) => a + x.record.regions.length, 0) / Math.max(1, s.scored.length);
  return (
    `${name.padEnd(24)} first ${det(s.firstDetection, s, 0).padEnd(12)} re ${det(s.redetections[0], s, 1).padEnd(12)} ` +
    `steady hot ${pct(s.steadyHotCovered).padStart(7)} cold ${pct(s.steadyColdCovered).padStart(6)} ` +
    `(${((s.steadyColdBytes ?? 0) / MiB).toFixed(2)} MiB) records ${s.records} regions ${regions.toFixed(1)}` +
    (drift ? ` aggregation ${(drift.aggregation.meanUs / 1000).toFixed(0)} ms` : '')
  );
}

function engine(c: AccuracyCase, name: string): EngineRun {
  const e = c.engines.find((x) => x.name === name);
  assert.ok(e, `${c.thp}/${c.part}: no engine ${name} in the guest's report`);
  return e;
}

describe('accuracy in the guest: the page_idle engine and the kernel\'s DAMON on the same workload', () => {
  let cases = new Map<string, AccuracyCase>();
  let guestStderr = '';
  let workload = '';

  /** One guest run of the THP modes and parts given: its cases by "thp/part". */
  async function guestRun(thps: readonly string[], parts?: readonly Part[]): Promise<Map<string, AccuracyCase>> {
    const driver = fileURLToPath(new URL('./accuracy-run.js', import.meta.url));
    const r = await runInGuest(
      `node ${driver} --workload ${workload} --thp ${thps.join(',')}${parts ? ` --parts ${parts.join(',')}` : ''}`,
      { timeoutMs: 900_000 },
    );
    guestStderr = r.stderr;
    writeFileSync(REPORT, r.stdout);
    assert.equal(r.exitCode, 0, `the accuracy run in the guest failed (exit ${r.exitCode}); stderr tail:\n${tail(r.stderr)}`);
    const out = new Map<string, AccuracyCase>();
    for (const line of r.stdout.split('\n').filter((l) => l.startsWith('{'))) {
      const c = JSON.parse(line) as AccuracyCase;
      out.set(`${c.thp}/${c.part}`, c);
    }
    return out;
  }

  before(async () => {
    workload = buildWorkload();
    cases = await guestRun(THP_MODES);
  });

  function get(thp: string, part: Part, from = cases): AccuracyCase {
    const c = from.get(`${thp}/${part}`);
    assert.ok(c, `no ${thp}/${part} case in the guest's output; stderr tail:\n${tail(guestStderr)}`);
    return c;
  }

  /**
   * Holds `judge` (the comparison bar's failures of a case; its assertions throw at once) on
   * the case of the first run, or, when it misses there, on the same case run again in a
   * fresh guest.
   */
  async function barHolds(t: TestContext, thp: string, part: Part, judge: (c: AccuracyCase) => string[], message: string): Promise<void> {
    const first = judge(get(thp, part));
    if (first.length === 0) return;
    t.diagnostic(`${thp}/${part}, round 1 missed the bar (${first.join('; ')}); a second guest run decides`);
    const again = judge(get(thp, part, await guestRun([thp], [part])));
    assert.deepEqual(again, [], `${message}, in two guest runs (round 1: ${first.join('; ')})`);
  }

  /** Scores a case's engines; checks that each ran until its target exited and the workload was as asked. */
  function scoreCase(t: TestContext, c: AccuracyCase, names: string[]): Map<string, EngineScore> {
    const ready = c.events.find((e) => e.event === 'ready');
    assert.ok(ready?.event === 'ready');
    assert.equal(ready.anonHugeBytes, c.thp === 'hugepage' ? 256 * MiB : 0, `${c.thp}: huge pages as asked`);
    const truth = phasedTruth(c.events);
    const out = new Map<string, EngineScore>();
    for (const name of names) {
      const run = engine(c, name);
      assert.ok(run.records.length > 0, `${c.thp}/${c.part} ${name}: no records (${run.stopReason} ${run.error ?? ''})`);
      const s = scoreEngine(run.records.map(recordFromJson), truth);
      out.set(name, s);
      t.diagnostic(`${c.thp}/${c.part}: ${describeScore(name, run, s)}`);
    }
    return out;
  }

  for (const thp of THP_MODES) {
    test(`THP ${thp === 'hugepage' ? 'on' : 'off'}: the page_idle engine meets the bar next to the kernel's DAMON, both monitoring at once`, { timeout: 1_000_000 }, async (t) => {
      await barHolds(t, thp, 'direct', (direct) => {
        const s = scoreCase(t, direct, ['kdamond', 'page_idle']);
        const kd = engine(direct, 'kdamond');
        const pi = engine(direct, 'page_idle');
        assert.equal(kd.stopReason, 'no-targets', `kdamond: ${kd.error ?? ''}`);
        assert.equal(pi.stopReason, 'no-targets', `page_idle: ${pi.error ?? ''}`);
        const costs = kd.info.costs as { source: Record<string, number> };
        assert.equal(costs.source.kernelPidFilter, 1, 'the trace instance filters on the kdamond pid');
        assert.equal(costs.source.lostEvents, 0);
        const agree = compareHotSets(s.get('page_idle')!, s.get('kdamond')!);
        t.diagnostic(`${thp}/direct: Jaccard of the steady hot sets: mean ${agree.meanJaccard?.toFixed(3)}, min ${agree.minJaccard?.toFixed(3)} over ${agree.pairs} pairs`);
        return comparisonFailures(s.get('page_idle')!, s.get('kdamond')!, agree, KERNEL_COMPARISON_BAR);
      }, `${thp}: the page_idle engine misses the bar (the guest's report: ${REPORT})`);

      // The same engine with the kernel's region adjustment, in its own run beside the kernel: reported, not held to the bar.
      const ka = get(thp, 'kernel-adjust');
      const k = scoreCase(t, ka, ['kdamond', 'page_idle_kernel_adjust']);
      assert.equal(engine(ka, 'page_idle_kernel_adjust').stopReason, 'no-targets');
      const kagree = compareHotSets(k.get('page_idle_kernel_adjust')!, k.get('kdamond')!);
      t.diagnostic(
        `${thp}/kernel-adjust: Jaccard mean ${kagree.meanJaccard?.toFixed(3)}; against the bar: ` +
          (comparisonFailures(k.get('page_idle_kernel_adjust')!, k.get('kdamond')!, kagree).join('; ') || 'met'),
      );
    });

    test(`THP ${thp === 'hugepage' ? 'on' : 'off'}: the kdamond operations behind the agent publish kdamond records that the same bar holds against`, { timeout: 1_000_000 }, async (t) => {
      await barHolds(t, thp, 'agent', (c) => agentCase(t, thp, c), `${thp}: against the agent's kdamond records (the guest's report: ${REPORT})`);
    });

    test(`THP ${thp === 'hugepage' ? 'on' : 'off'}: the agent's session runner on page_idle runs the native sampler and meets the bar next to the kernel's DAMON`, { timeout: 1_000_000 }, async (t) => {
      await barHolds(t, thp, 'agent-page-idle', (c) => {
        const s = scoreCase(t, c, ['kdamond', 'agent_page_idle']);
        const agent = engine(c, 'agent_page_idle');
        assert.equal(agent.info.targetOperations, 'page_idle');
        assert.deepEqual(agent.info.recordOperations, ['page_idle'], 'every published record says page_idle');
        assert.equal(agent.stopReason, 'TARGET_STATE_EXITED', `the target ends EXITED when the workload exits (${agent.error ?? ''})`);
        // Measured only by the native sampler: a per-sample JavaScript loop leaves it unset.
        const cost = agent.info.checkCostUs as number | undefined;
        assert.ok(cost !== undefined && cost > 0, `the agent reports no check cost (${String(cost)}): its page_idle sessions did not run the native sampler`);
        t.diagnostic(`${thp}/agent-page-idle: ${cost.toFixed(1)} us per check, ${String(agent.info.affordableRegions)} affordable regions`);
        const agree = compareHotSets(s.get('agent_page_idle')!, s.get('kdamond')!);
        t.diagnostic(`${thp}/agent-page-idle: Jaccard of the steady hot sets: mean ${agree.meanJaccard?.toFixed(3)}, min ${agree.minJaccard?.toFixed(3)} over ${agree.pairs} pairs`);
        return comparisonFailures(s.get('agent_page_idle')!, s.get('kdamond')!, agree, KERNEL_COMPARISON_BAR);
      }, `${thp}: the agent on page_idle misses the bar (the guest's report: ${REPORT})`);
    });
  }

  /** The checks of the agent's kdamond records; returns the comparison bar's failures. */
  function agentCase(t: TestContext, thp: string, c: AccuracyCase): string[] {
    const s = scoreCase(t, c, ['agent_kdamond', 'page_idle']);
    const agent = engine(c, 'agent_kdamond');
    assert.equal(agent.info.targetOperations, 'kdamond', `the agent chose ${String(agent.info.targetOperations)} (kdamond probe: ${String(agent.info.kdamondProbe)})`);
    assert.deepEqual(agent.info.recordOperations, ['kdamond'], 'every published record says kdamond');
    assert.deepEqual((agent.info.hostOperations as string[]).slice(0, 2), ['kdamond', 'page_idle'], 'kdamond first, then page_idle');
    assert.equal(agent.stopReason, 'TARGET_STATE_EXITED', `the target ends EXITED when the workload exits (${agent.error ?? ''})`);
    // The same kind of records as the kernel's DAMON run directly: the maximum nr_accesses,
    // regions sorted and disjoint, consecutive records back to back.
    const recs = agent.records.map(recordFromJson);
    for (const [i, r] of recs.entries()) {
      assert.equal(r.maxNrAccesses, 20);
      assert.ok(r.endNs > r.startNs);
      for (let k = 1; k < r.regions.length; k++) assert.ok(r.regions[k].start >= r.regions[k - 1].end, `record ${i}: regions overlap`);
      if (i > 0) assert.ok(r.startNs >= recs[i - 1].endNs, `record ${i} starts before record ${i - 1} ends`);
    }
    const contiguous = recs.slice(1).filter((r, i) => r.startNs === recs[i].endNs).length;
    assert.ok(contiguous >= (recs.length - 1) * 0.9, `${contiguous} of ${recs.length - 1} records start where the previous one ended`);

    const cold = s.get('agent_kdamond')!.steadyColdCovered;
    assert.ok(cold !== undefined && cold <= KERNEL_COMPARISON_BAR.maxSteadyColdCovered, `the agent's kdamond records: steady cold ${pct(cold)}`);
    const agree = compareHotSets(s.get('page_idle')!, s.get('agent_kdamond')!);
    t.diagnostic(`${thp}/agent: Jaccard of the steady hot sets: mean ${agree.meanJaccard?.toFixed(3)}, min ${agree.minJaccard?.toFixed(3)} over ${agree.pairs} pairs`);
    return comparisonFailures(s.get('page_idle')!, s.get('agent_kdamond')!, agree, KERNEL_COMPARISON_BAR);
  }
});
