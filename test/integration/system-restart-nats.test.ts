// The whole system with nats-server killed (-9) mid-session and started again on the same
// port and file store: the agents and the controller reconnect by themselves, records
// flow again, the controller serves and changes the session again, and every record
// JetStream had stored before the kill is still in the stream afterwards, with each
// target's records there exactly once (the ones held during the outage included).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SessionEventKind, SessionState } from '../../gen/damon/v1/damon.js';
import { collect, unary, waitFor } from './support/grpc-client.js';
import { endMs, recordKey, storedRecords, watchRecords, recordsOf } from './support/nats-watch.js';
import { AGGREGATION_MS, RUNNING, sessionOn, useFleet, statusOf, waitSession } from './support/system-env.js';

const A = 'nts-a';
const B = 'nts-b';
const ID = 'outlasts';


describe('whole system: nats-server killed (-9)', () => {
  const env = useFleet([A, B]);

  test('agents and controller reconnect; records stored before the kill are still there', { timeout: 60_000 }, async (t) => {
    const { fleet } = env;
    const targets = [
      { host: A, pid: fleet.target().pid },
      { host: B, pid: fleet.target().pid },
    ];
    const recs = watchRecords(fleet.nc, ID);
    await fleet.nc.flush();
    try {
      await sessionOn(fleet, ID, targets);
      await waitFor('three records of each target', () => targets.every((x) => recordsOf(recs.items, x.host, x.pid).length >= 3), 5000);
      const stored = await storedRecords(fleet.nc, ID);
      assert.ok(stored.length >= 6, `${stored.length} records stored before the kill`);

      await fleet.nats.kill9();
      // An outage of two aggregation intervals: the agents go on monitoring and hold the records.
      await sleep(2 * AGGREGATION_MS);
      await fleet.nats.restart();
      const restartedAt = Date.now();

      await waitFor(
        'records of each target monitored after the restart',
        () => targets.every((x) => recordsOf(recs.items, x.host, x.pid).some((r) => endMs(r.msg) > restartedAt)),
        15_000,
      );
      // The controller is back on NATS: it reads the session from the bucket again ...
      const s = await waitSession(fleet, ID, 'the controller serving the session again', (x) => x.state === SessionState.SESSION_STATE_ON, 15_000);
      for (const x of targets) assert.equal(statusOf(s, x.host, x.pid)!.state, RUNNING);
      // An outage past the leader lease's renewal margin makes the controller stand by until
      // NATS is back (docs/controller.md): agents whose heartbeats it refused meanwhile register again.
      await waitFor('both agents live again', async () => {
        const { agents } = await unary(fleet.client, 'listAgents', {});
        return JSON.stringify(agents.map((a) => [a.host, a.live])) === JSON.stringify([[A, true], [B, true]]);
      }, 15_000);
      // ... and writes it: off goes through, the records stop.
      const off = await unary(fleet.client, 'turnOff', { id: ID });
      const offAt = Date.now();
      assert.equal(off.state, SessionState.SESSION_STATE_OFF);
      await sleep(5 * AGGREGATION_MS);
      assert.deepEqual(recs.items.filter((r) => endMs(r.msg) > offAt + AGGREGATION_MS || r.at > offAt + AGGREGATION_MS).map((r) => r.msg.host), []);

      const afterwards = await storedRecords(fleet.nc, ID);
      const kept = new Set(afterwards.map(recordKey));
      assert.deepEqual(stored.filter((r) => !kept.has(recordKey(r))).map(recordKey), [], 'stored before the kill, missing after');
      for (const x of targets) {
        // Exactly once each: nothing held during the outage lost, no retried publish stored twice.
        const seqs = afterwards.filter((r) => r.host === x.host && r.pid === x.pid).map((r) => r.sequence);
        seqs.sort((p, q) => (p < q ? -1 : p > q ? 1 : 0));
        assert.deepEqual(seqs, seqs.map((_, i) => BigInt(i + 1)), `${x.host} pid ${x.pid}: sequences in the stream`);
      }
      t.diagnostic(`${stored.length} records stored before the kill, ${afterwards.length} at the end`);

      // The events stream kept the ON event from before the kill; OFF came after the restart.
      const ev = collect(fleet.client.watchEvents({ sessionId: ID, replay: true }));
      try {
        await waitFor('ON and OFF replayed', () => ev.items.length >= 2);
        assert.deepEqual(ev.items.map((e) => SessionEventKind[e.kind]), ['SESSION_EVENT_KIND_ON', 'SESSION_EVENT_KIND_OFF']);
      } finally {
        ev.cancel();
      }
    } finally {
      recs.stop();
    }
  });
});
