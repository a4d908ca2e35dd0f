// The whole system with an agent killed (-9) mid-session: its records stop while the other
// host's go on, its lease runs out and its target shows pending; started again (a new
// instance), it registers, gets the session back from the controller, and records flow
// from the new instance, its sequences going on from the killed one's: nothing missing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SessionState } from '../../gen/damon/v1/damon.js';
import { unary, waitFor } from './support/grpc-client.js';
import { endMs, recordGaps, storedRecords, watchRecords, recordsOf } from './support/nats-watch.js';
import {
  AGGREGATION_MS,
  PENDING,
  RUNNING,
  sessionOn,
  useFleet,
  statusOf,
  waitSession,
} from './support/system-env.js';

const A = 'agt-a';
const B = 'agt-b';
const ID = 'comeback';


describe('whole system: agent killed (-9)', () => {
  const env = useFleet([A, B]);

  test('restarted, it gets its session back and records flow again from the new instance', { timeout: 60_000 }, async () => {
    const { fleet } = env;
    const ta = fleet.target();
    const tb = fleet.target();
    const recs = watchRecords(fleet.nc, ID);
    await fleet.nc.flush();
    try {
      await sessionOn(fleet, ID, [{ host: A, pid: ta.pid }, { host: B, pid: tb.pid }]);
      await waitFor('records of both targets', () => recordsOf(recs.items, A, ta.pid).length > 0 && recordsOf(recs.items, B, tb.pid).length > 0, 5000);
      const old = fleet.agents.get(A)!;

      await old.kill9();
      const killedAt = Date.now();
      await waitFor('three records of agt-b since the kill', () => recordsOf(recs.items, B, tb.pid).filter((r) => r.at > killedAt).length >= 3, 5000);
      assert.deepEqual(
        recordsOf(recs.items, A, ta.pid).filter((r) => r.at > killedAt + AGGREGATION_MS).map((r) => r.msg.sequence),
        [],
        'records of the killed agent',
      );

      // Its lease runs out: the target is pending, the session stays on.
      const pending = await waitSession(fleet, ID, 'agt-a target pending', (s) => statusOf(s, A, ta.pid)?.state === PENDING);
      assert.equal(pending.state, SessionState.SESSION_STATE_ON);
      assert.match(statusOf(pending, A, ta.pid)!.message, /no live agent on agt-a/);
      assert.equal(statusOf(pending, B, tb.pid)!.state, RUNNING);

      const restartAt = Date.now();
      const fresh = await fleet.startAgent(A);
      assert.notEqual(fresh.instanceId, old.instanceId);
      const first = await waitFor('the first record of the new instance', () =>
        recordsOf(recs.items, A, ta.pid).find((r) => r.msg.agentInstance === fresh.instanceId),
      );
      const before = recordsOf(recs.items, A, ta.pid).filter((r) => r.msg.agentInstance === old.instanceId).map((r) => r.msg.sequence);
      assert.equal(first.msg.sequence, before.reduce((a, b) => (a > b ? a : b), 0n) + 1n, 'the sequence goes on from the killed instance');
      assert.ok(endMs(first.msg) > restartAt, 'a record monitored by the new instance');
      const running = await waitSession(fleet, ID, 'agt-a target running again', (s) => statusOf(s, A, ta.pid)?.state === RUNNING);
      assert.equal(running.state, SessionState.SESSION_STATE_ON);
      const { agents } = await unary(fleet.client, 'listAgents', {});
      assert.equal(agents.find((a) => a.host === A)!.instanceId, fresh.instanceId);
      assert.equal(agents.find((a) => a.host === A)!.address, fresh.address);
      assert.ok(fleet.controller.log.some((l) => l.includes(`agent ${A} restarted (instance ${old.instanceId} -> ${fresh.instanceId}`)));
      assert.ok(fleet.controller.log.some((l) => l.includes(`session ${ID}: dispatching to ${A}`)));

      await waitFor('three records of the new instance', () => recordsOf(recs.items, A, ta.pid).filter((r) => r.at > restartAt).length >= 3, 5000);
      // In the stream: each target's sequence 1, 2, 3, ... across the restart, once each.
      const stored = await storedRecords(fleet.nc, ID);
      for (const [host, pid] of [[A, ta.pid], [B, tb.pid]] as const) {
        const seqs = stored.filter((r) => r.host === host && r.pid === pid).map((r) => r.sequence);
        assert.deepEqual(seqs, seqs.map((_, i) => BigInt(i + 1)), `${host}: sequences in the stream`);
      }
      assert.deepEqual(recordGaps(stored), [], 'what a consumer\'s gap detection reports');

      const off = await unary(fleet.client, 'turnOff', { id: ID });
      const offAt = Date.now();
      assert.equal(off.state, SessionState.SESSION_STATE_OFF);
      await sleep(5 * AGGREGATION_MS);
      assert.deepEqual(recs.items.filter((r) => endMs(r.msg) > offAt + AGGREGATION_MS || r.at > offAt + AGGREGATION_MS).map((r) => r.msg.host), []);
    } finally {
      recs.stop();
    }
  });
});
