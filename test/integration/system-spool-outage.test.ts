// The whole system with NATS down while an agent keeps monitoring, the agent killed (-9)
// during the outage, NATS back, the agent started again on its data directory: every
// record it had spooled arrives, each target's sequence runs 1, 2, 3, ... with no gap and
// no record twice, and the records of the killed instance are told from the new one's.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from './support/grpc-client.js';
import { endMs, recordGaps, recordKey, storedRecords, watchRecords, recordsOf } from './support/nats-watch.js';
import { AGGREGATION_MS, RUNNING, sessionOn, statusOf, useFleet, waitSession } from './support/system-env.js';

const A = 'spl-a';
const ID = 'spooled';
/** Records the agent should hold when it is killed: three targets for this long. */
const HELD = 100;
const TARGETS = 3;

describe('whole system: agent killed (-9) during a NATS outage', () => {
  const env = useFleet([A]);

  test('every record it had spooled arrives after NATS and the agent are back; sequences continuous, none twice', { timeout: 90_000 }, async (t) => {
    const { fleet } = env;
    const targets = Array.from({ length: TARGETS }, () => ({ host: A, pid: fleet.target().pid }));
    const recs = watchRecords(fleet.nc, ID);
    await fleet.nc.flush();
    try {
      await sessionOn(fleet, ID, targets);
      await waitFor('records of every target', () => targets.every((x) => recordsOf(recs.items, x.host, x.pid).length >= 2), 10_000);
      const old = fleet.agents.get(A)!;

      await fleet.nats.kill9();
      const downAt = Date.now();
      // The agent monitors on; its records go to its spool. Long enough for HELD of them.
      await sleep((HELD / TARGETS) * AGGREGATION_MS + 2 * AGGREGATION_MS);
      await old.kill9();
      const killedAt = Date.now();
      await fleet.nats.restart();
      const fresh = await fleet.startAgent(A);
      assert.notEqual(fresh.instanceId, old.instanceId);

      await waitSession(fleet, ID, 'every target running on the new instance', (s) => targets.every((x) => statusOf(s, x.host, x.pid)?.state === RUNNING), 30_000);
      await waitFor(
        'records of the new instance for every target',
        () => targets.every((x) => recordsOf(recs.items, x.host, x.pid).some((r) => r.msg.agentInstance === fresh.instanceId)),
        15_000,
      );
      await fleet.agents.get(A)!.stop(5000);

      const stored = await storedRecords(fleet.nc, ID);
      const keys = stored.map(recordKey);
      assert.equal(new Set(keys).size, keys.length, 'a record stored twice');
      const held = stored.filter((r) => r.agentInstance === old.instanceId && endMs(r) > downAt && endMs(r) <= killedAt);
      const expected = (TARGETS * (killedAt - downAt)) / AGGREGATION_MS;
      t.diagnostic(`${held.length} records monitored during the outage by the killed agent (about ${expected.toFixed(0)} expected at the configured interval), ${stored.length} in all`);
      assert.ok(held.length >= HELD * 0.8, `only ${held.length} records from the outage arrived`);
      for (const x of targets) {
        const mine = stored.filter((r) => r.pid === x.pid);
        const seqs = mine.map((r) => r.sequence);
        assert.deepEqual(seqs, seqs.map((_, i) => BigInt(i + 1)), `pid ${x.pid}: sequences in the stream`);
        // The new instance went on where the killed one's spool ended.
        const firstNew = mine.findIndex((r) => r.agentInstance === fresh.instanceId);
        assert.ok(firstNew > 0 && mine.slice(0, firstNew).every((r) => r.agentInstance === old.instanceId), `pid ${x.pid}: instances in order`);
        assert.ok(mine.every((r) => r.droppedBefore === 0n), 'nothing dropped');
      }
      assert.deepEqual(recordGaps(stored), [], 'what a consumer\'s gap detection reports');
    } finally {
      recs.stop();
    }
  });
});
