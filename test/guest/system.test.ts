// The whole path on a real kernel, in the guest (system-run.ts runs there): nats-server,
// the controller and an agent as processes, a session with default operations on a
// workload's pid. The agent picks the kernel's DAMON (kdamond) and it is the real one: the
// guest kernel's kdamond 0 monitors the workload's pid with the vaddr operations while the
// session runs; records of the real process arrive on NATS and show its hot range; when
// the workload exits the session turns itself off (TARGET_EXITED and OFF events) and the
// agent leaves the kernel's DAMON and tracefs as it found them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { frequentSpans } from '../support/synthetic-accuracy.js';
import { overlapBytes } from '../../agent/ops/synthetic-workload.js';
import { recordFromJson } from './record-json.js';
import { runInGuest } from './rig.js';
import type { SystemRunReport } from './system-run.js';
import { buildWorkload } from './workload.js';

function tail(text: string, lines = 40): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

test('in the guest: controller, agent and NATS monitor a real process through the kernel\'s DAMON, and the session ends with it', async (t) => {
  const workload = buildWorkload();
  const driver = fileURLToPath(new URL('./system-run.js', import.meta.url));
  const r = await runInGuest(`ip link set lo up && node ${driver} --workload ${workload}`, { timeoutMs: 600_000, memMiB: 1536 });
  assert.equal(r.exitCode, 0, `the system run in the guest failed (exit ${r.exitCode}); stderr tail:\n${tail(r.stderr)}`);
  const rep = JSON.parse(r.stdout) as SystemRunReport;
  const context = `\nguest log tail:\n${tail(rep.log.join('\n'))}`;

  // The agent registered the kernel's DAMON first, and the session got it.
  assert.deepEqual(rep.agentOperations, ['kdamond', 'page_idle', 'synthetic'], context);
  assert.deepEqual(rep.onStatus, { state: 'TARGET_STATE_RUNNING', operations: 'kdamond', message: '' }, context);
  const mapped = rep.workload.find((e) => e.event === 'mapped');
  const phase = rep.workload.find((e) => e.event === 'phase');
  assert.ok(mapped?.event === 'mapped' && phase?.event === 'phase');
  const pid = mapped.pid;
  // Real, not simulated: the guest kernel's kdamond monitored this very pid.
  assert.deepEqual(
    { ...rep.kernelWhileOn, traceInstances: rep.kernelWhileOn.traceInstances.length },
    { nrKdamonds: '1', state: 'on', operations: 'vaddr', pidTarget: String(pid), traceInstances: 1 },
    context,
  );
  assert.match(rep.kernelWhileOn.traceInstances[0]!, /^damon-fleet-\d+-[0-9a-f]{6}$/);

  // Records of the real process on its subject, in sequence, inside its address space.
  const recs = rep.records;
  t.diagnostic(`${recs.length} records; first ${recs[0] ? recs[0].atMs - rep.onAtMs : '-'} ms after TurnOn`);
  assert.ok(recs.length >= 5, `${recs.length} records${context}`);
  const ranges = rep.maps.map((m) => m.split('-').map((x) => parseInt(x, 16)) as [number, number]);
  const lo = Math.min(...ranges.map((x) => x[0]));
  const hi = Math.max(...ranges.map((x) => x[1]));
  recs.forEach((x, i) => {
    assert.equal(x.subject, `damon.records.guest-system.guest-1.${pid}`);
    assert.equal(x.operations, 'kdamond');
    assert.equal(x.host, 'guest-1');
    assert.equal(x.pid, pid);
    assert.equal(x.sequence, String(i + 1));
    const rec = recordFromJson(x.record);
    assert.equal(rec.maxNrAccesses, 20);
    assert.ok(rec.regions.length >= 3, `record ${i + 1}: ${rec.regions.length} regions`);
    for (const g of rec.regions) assert.ok(g.start >= lo && g.end <= hi, `record ${i + 1}: region ${g.start}-${g.end} outside the process (${lo}-${hi})`);
  });
  // The workload's hot 16 MiB shows up as hot (>= half the samples) in the kernel's records.
  const hot = phase.hot;
  const best = Math.max(...recs.map((x) => {
    const rec = recordFromJson(x.record);
    return overlapBytes(frequentSpans(rec.regions, rec.maxNrAccesses, 0.5), hot) / (hot[0]!.end - hot[0]!.start);
  }));
  assert.ok(best >= 0.9, `at best ${(best * 100).toFixed(1)}% of the hot range was seen hot${context}`);

  // The workload exits: TARGET_EXITED, then the session turns itself off.
  const kinds = rep.events.map((e) => e.kind);
  assert.deepEqual(kinds, ['SESSION_EVENT_KIND_ON', 'SESSION_EVENT_KIND_TARGET_EXITED', 'SESSION_EVENT_KIND_OFF'], context);
  assert.equal(rep.events[1]!.pid, pid);
  assert.equal(rep.events[2]!.reason, 'all targets exited');
  // The agent may see the exited workload before its parent reaps it (a zombie): both say it exited.
  assert.match(rep.final.target.message, /^process exited( \(zombie\))?$/, context);
  assert.deepEqual(rep.final, {
    state: 'SESSION_STATE_OFF',
    offReason: 'all targets exited',
    target: { state: 'TARGET_STATE_EXITED', operations: 'kdamond', message: rep.final.target.message },
  });
  const exit = rep.workload.find((e) => e.event === 'exit');
  assert.ok(exit?.event === 'exit' && exit.reason === 'phases-done');
  t.diagnostic(`OFF event ${rep.events[2]!.atMs - exit.realMs} ms after the workload exited`);
  // Nothing of ours is left in the kernel.
  assert.deepEqual(rep.kernelAfterOff, { nrKdamonds: '0', traceInstances: [] });
});
