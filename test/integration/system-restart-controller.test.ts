// The whole system with the controller killed (-9) mid-session: the agents go on
// monitoring and records keep flowing while it is down; started again, it finds the
// session still on in the bucket, the agents register again (same instances, not
// re-dispatched), and it reconciles what changed meanwhile (a target that exited).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SessionEventKind, SessionState } from '../../gen/damon/v1/damon.js';
import { unary, waitFor } from './support/grpc-client.js';
import { endMs, watchEvents, watchRecords, recordsOf } from './support/nats-watch.js';
import {
  AGGREGATION_MS,
  EXITED,
  RUNNING,
  killTarget,
  sessionOn,
  useFleet,
  statusOf,
  waitSession,
} from './support/system-env.js';

const A = 'ctl-a';
const B = 'ctl-b';
const ID = 'survives';


describe('whole system: controller killed (-9)', () => {
  const env = useFleet([A, B]);

  test('records flow while it is down; restarted, the session is still on and reconciles', { timeout: 60_000 }, async (t) => {
    const { fleet } = env;
    const ta = fleet.target();
    const tb = fleet.target();
    const recs = watchRecords(fleet.nc, ID);
    const events = watchEvents(fleet.nc, ID);
    await fleet.nc.flush();
    try {
      const { session: on } = await sessionOn(fleet, ID, [{ host: A, pid: ta.pid }, { host: B, pid: tb.pid }]);
      await waitFor('records of both targets', () => recordsOf(recs.items, A, ta.pid).length > 0 && recordsOf(recs.items, B, tb.pid).length > 0, 5000);
      const { agents: before } = await unary(fleet.client, 'listAgents', {});

      await fleet.controller.kill9();
      const killedAt = Date.now();
      await waitFor(
        'three records of each target while the controller is down',
        () => [recordsOf(recs.items, A, ta.pid), recordsOf(recs.items, B, tb.pid)].every((rs) => rs.filter((r) => r.at > killedAt).length >= 3),
        5000,
      );
      assert.ok(fleet.controller.exited(), 'the controller is still down');

      // Meanwhile one target exits: its agent sees it, but can tell no controller yet.
      await killTarget(tb);
      await waitFor('ctl-b sees the exit', async () => {
        const { sessions } = await unary(fleet.agentClient(B), 'getState', { pageToken: '', epoch: 0n });
        return sessions.find((s) => s.sessionId === ID)?.targets[0]?.state === EXITED;
      });
      const downFor = Date.now() - killedAt;

      await fleet.restartController();
      assert.ok(fleet.controller.log.some((l) => /1 sessions in store, 1 on/.test(l)), fleet.controller.log.join('\n'));
      // Reconciled once both agents registered again: ctl-b's exit recorded, ctl-a running.
      const s = await waitSession(
        fleet,
        ID,
        'the exit reconciled into the session',
        (x) => statusOf(x, B, tb.pid)?.state === EXITED && statusOf(x, A, ta.pid)?.state === RUNNING,
        15_000,
      );
      assert.equal(s.state, SessionState.SESSION_STATE_ON, 'one target left: still on');
      assert.equal(statusOf(s, A, ta.pid)!.state, RUNNING);
      assert.equal(statusOf(s, B, tb.pid)!.message, 'process exited');
      assert.equal(s.createdAtMs, on.createdAtMs);
      assert.deepEqual(s.targets, on.targets);
      const exited = await waitFor('TARGET_EXITED from the new controller', () =>
        events.items.find((e) => e.msg.kind === SessionEventKind.SESSION_EVENT_KIND_TARGET_EXITED),
      );
      assert.deepEqual(exited.msg.target, { host: B, pid: tb.pid });

      // The same agent instances registered again; the one still monitoring was left alone.
      const expected = JSON.stringify(before.map((a) => [a.host, true, a.instanceId]));
      await waitFor('both agents live again, as the same instances', async () => {
        const { agents: now } = await unary(fleet.client, 'listAgents', {});
        return JSON.stringify(now.map((a) => [a.host, a.live, a.instanceId])) === expected;
      });
      assert.ok(!fleet.controller.log.some((l) => l.includes(`session ${ID}: dispatching to ${A}`)), 'ctl-a was dispatched again');
      // ctl-a's records went on without a gap or a restart across the outage.
      const seqA = recordsOf(recs.items, A, ta.pid).map((r) => r.msg.sequence);
      assert.deepEqual(seqA, seqA.map((_, i) => BigInt(i + 1)));
      const at = (re: RegExp) => Date.parse(fleet.controller.log.find((l) => re.test(l))?.split(' ')[0] ?? '');
      const up = at(/controller listening on /);
      t.diagnostic(
        `controller down ${downFor} ms; ${recordsOf(recs.items, A, ta.pid).filter((r) => r.at > killedAt).length} records of ctl-a since the kill; ` +
          `agents registered again ${at(/agent ctl-a registered/) - up} ms (ctl-a) and ${at(/agent ctl-b registered/) - up} ms (ctl-b) after it listened`,
      );

      // The restarted controller drives the session: off stops the records.
      const off = await unary(fleet.client, 'turnOff', { id: ID });
      const offAt = Date.now();
      assert.equal(off.state, SessionState.SESSION_STATE_OFF);
      await sleep(5 * AGGREGATION_MS);
      assert.deepEqual(recs.items.filter((r) => endMs(r.msg) > offAt + AGGREGATION_MS || r.at > offAt + AGGREGATION_MS).map((r) => r.msg.sequence), []);
      assert.deepEqual(
        events.items.map((e) => SessionEventKind[e.msg.kind]),
        ['SESSION_EVENT_KIND_ON', 'SESSION_EVENT_KIND_TARGET_EXITED', 'SESSION_EVENT_KIND_OFF'],
      );
    } finally {
      recs.stop();
      events.stop();
    }
  });
});
