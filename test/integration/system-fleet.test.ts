// The whole system on one machine: nats-server, the controller and three agents (each
// with its own host name) as processes, real processes as targets. A session on two of
// the hosts gets records from both on NATS within two aggregation intervals of the TurnOn
// reply, and none after "off": watched for five aggregation intervals, no record ends
// later than the TurnOff reply plus one aggregation interval, nor arrives later than that
// (TurnOff waits for the agents to stop and flush, so one interval is slack for clocks and
// delivery). Target exits show as events on NATS and turn the session off.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostToken } from '../../common/subjects.js';
import { SessionEventKind, SessionState, TargetState } from '../../gen/damon/v1/damon.js';
import { FAST_ATTRS } from './support/agent-env.js';
import { unary, waitFor } from './support/grpc-client.js';
import { endMs, watchEvents, watchRecords, recordsOf } from './support/nats-watch.js';
import {
  AGGREGATION_MS,
  EXITED,
  RUNNING,
  getSession,
  killTarget,
  sessionOn,
  useFleet,
  statusOf,
} from './support/system-env.js';

const A = 'node-1';
const B = 'node-2.rack-7';
const C = 'node-3';
const MAX_NR_ACCESSES = Number(FAST_ATTRS.aggregationIntervalUs / FAST_ATTRS.samplingIntervalUs);

const { SESSION_EVENT_KIND_ON: ON, SESSION_EVENT_KIND_OFF: OFF, SESSION_EVENT_KIND_TARGET_EXITED: TARGET_EXITED } = SessionEventKind;


describe('whole system: three agents', () => {
  const env = useFleet([A, B, C]);

  test('a session on two of three hosts: records from both within two aggregation intervals of on, none after off', { timeout: 60_000 }, async (t) => {
    const { fleet } = env;
    const targets = [
      { host: A, pid: fleet.target().pid },
      { host: A, pid: fleet.target().pid },
      { host: B, pid: fleet.target().pid },
    ];
    const recs = watchRecords(fleet.nc, 'two-hosts');
    await fleet.nc.flush(); // the subscription is in place before the session turns on
    try {
      const { session, onAt } = await sessionOn(fleet, 'two-hosts', targets);
      assert.equal(session.state, SessionState.SESSION_STATE_ON);
      assert.deepEqual(session.targetStatus.map((s) => [s.target!.host, s.state, s.operations]), [
        [A, RUNNING, 'synthetic'],
        [A, RUNNING, 'synthetic'],
        [B, RUNNING, 'synthetic'],
      ]);

      await waitFor('a record of every target', () => targets.every((x) => recordsOf(recs.items, x.host, x.pid).length > 0), 5000);
      const firstAfterOn = targets.map((x) => recordsOf(recs.items, x.host, x.pid)[0].at - onAt);
      t.diagnostic(`first record of each target, ms after the TurnOn reply: ${firstAfterOn.join(', ')}`);
      targets.forEach((x, i) =>
        assert.ok(
          firstAfterOn[i] <= 2 * AGGREGATION_MS,
          `first record of ${x.host} pid ${x.pid} arrived ${firstAfterOn[i]} ms after on (limit ${2 * AGGREGATION_MS} ms)`,
        ),
      );

      await waitFor('three records of every target', () => targets.every((x) => recordsOf(recs.items, x.host, x.pid).length >= 3), 5000);
      for (const x of targets) {
        const mine = recordsOf(recs.items, x.host, x.pid).map((r) => r.msg);
        assert.deepEqual(mine.map((r) => r.sequence), mine.map((_, i) => BigInt(i + 1)), `${x.host} pid ${x.pid}: sequences`);
        for (const r of mine) {
          assert.equal(r.operations, 'synthetic');
          assert.equal(r.maxNrAccesses, MAX_NR_ACCESSES);
          assert.ok(r.regions.length > 0, `${x.host} pid ${x.pid} #${r.sequence}: no regions`);
          assert.ok(r.endTimeNs > r.startTimeNs);
        }
      }
      // min/max_nr_regions bound a host's monitoring context, all its targets together, as
      // in the kernel: the merge limit is the size of every target over min_nr_regions, so
      // one target of two may hold fewer than min_nr_regions.
      for (const h of [A, B]) {
        const perAggregation = new Map<bigint, number>();
        const mine = targets.filter((x) => x.host === h);
        for (const x of mine) for (const r of recordsOf(recs.items, h, x.pid).slice(0, 3)) {
          perAggregation.set(r.msg.sequence, (perAggregation.get(r.msg.sequence) ?? 0) + r.msg.regions.length);
        }
        for (const [seq, n] of perAggregation) {
          assert.ok(n >= FAST_ATTRS.minNrRegions && n <= FAST_ATTRS.maxNrRegions, `${h} aggregation #${seq}: ${n} regions over its ${mine.length} targets`);
        }
      }
      // Records of the third host: none; its agent was never given the session.
      assert.deepEqual(recs.items.filter((r) => ![A, B].includes(r.msg.host)), []);
      assert.deepEqual((await unary(fleet.agentClient(C), 'getState', { pageToken: '', epoch: 0n })).sessions, []);
      // A dotted host name rides on its subject as one token and comes back whole in the record.
      for (const x of targets) {
        for (const r of recordsOf(recs.items, x.host, x.pid)) assert.equal(r.subject, `damon.records.two-hosts.${hostToken(x.host)}.${x.pid}`);
      }
      assert.equal(hostToken(B), 'node-2_rack-7');

      const off = await unary(fleet.client, 'turnOff', { id: 'two-hosts' });
      const offAt = Date.now();
      assert.equal(off.state, SessionState.SESSION_STATE_OFF);
      assert.equal(off.offReason, 'turned off');
      assert.deepEqual(off.targetStatus.map((s) => s.state), targets.map(() => TargetState.TARGET_STATE_IDLE));
      // Watch for five aggregation intervals: anything still coming would be monitoring after off.
      await sleep(5 * AGGREGATION_MS);
      const late = recs.items.filter((r) => endMs(r.msg) > offAt + AGGREGATION_MS || r.at > offAt + AGGREGATION_MS);
      assert.deepEqual(
        late.map((r) => `${r.msg.host} pid ${r.msg.pid} #${r.msg.sequence}: ends ${endMs(r.msg) - offAt} ms, arrived ${r.at - offAt} ms after off`),
        [],
      );
      for (const h of [A, B]) assert.deepEqual((await unary(fleet.agentClient(h), 'getState', { pageToken: '', epoch: 0n })).sessions, [], `${h} still runs it`);
    } finally {
      recs.stop();
    }
  });

  test('target exits: TARGET_EXITED on the events subject while the rest goes on; the last exit turns the session off', { timeout: 60_000 }, async () => {
    const { fleet } = env;
    const x = fleet.target();
    const y = fleet.target();
    const events = watchEvents(fleet.nc, 'exits');
    const recs = watchRecords(fleet.nc, 'exits');
    await fleet.nc.flush();
    try {
      await sessionOn(fleet, 'exits', [{ host: A, pid: x.pid }, { host: C, pid: y.pid }]);
      await waitFor('records of both targets', () => recordsOf(recs.items, A, x.pid).length > 0 && recordsOf(recs.items, C, y.pid).length > 0, 5000);

      await killTarget(x);
      const exitedX = await waitFor('TARGET_EXITED of the first target', () =>
        events.items.find((e) => e.msg.kind === TARGET_EXITED && e.msg.target?.pid === x.pid),
      );
      assert.deepEqual(exitedX.msg.target, { host: A, pid: x.pid });
      assert.equal(exitedX.msg.reason, 'process exited');
      const mid = await getSession(fleet, 'exits');
      assert.equal(mid.state, SessionState.SESSION_STATE_ON, 'one target left: still on');
      assert.equal(statusOf(mid, A, x.pid)!.state, EXITED);
      assert.equal(statusOf(mid, C, y.pid)!.state, RUNNING);

      // The other target's records go on; the exited one's ended before its event.
      const yBefore = recordsOf(recs.items, C, y.pid).length;
      await waitFor('more records of the remaining target', () => recordsOf(recs.items, C, y.pid).length >= yBefore + 3, 5000);
      const xLate = recordsOf(recs.items, A, x.pid).filter((r) => endMs(r.msg) > exitedX.at || r.at > exitedX.at + AGGREGATION_MS);
      assert.deepEqual(xLate.map((r) => `#${r.msg.sequence} ends ${endMs(r.msg) - exitedX.at} ms after the event`), []);

      await killTarget(y);
      const offEv = await waitFor('OFF event', () => events.items.find((e) => e.msg.kind === OFF));
      assert.deepEqual(
        events.items.map((e) => [SessionEventKind[e.msg.kind], e.msg.target?.host ?? '', e.msg.target?.pid ?? 0, e.msg.reason]),
        [
          ['SESSION_EVENT_KIND_ON', '', 0, 'turned on'],
          ['SESSION_EVENT_KIND_TARGET_EXITED', A, x.pid, 'process exited'],
          ['SESSION_EVENT_KIND_TARGET_EXITED', C, y.pid, 'process exited'],
          ['SESSION_EVENT_KIND_OFF', '', 0, 'all targets exited'],
        ],
      );
      assert.ok(events.items.every((e) => e.msg.sessionId === 'exits' && e.msg.timeMs > 0n));
      assert.equal(events.items[0].msg.kind, ON);

      const off = await getSession(fleet, 'exits');
      assert.equal(off.state, SessionState.SESSION_STATE_OFF);
      assert.equal(off.offReason, 'all targets exited');
      assert.deepEqual(off.targetStatus.map((t) => [t.target!.host, t.state, t.message]), [
        [A, EXITED, 'process exited'],
        [C, EXITED, 'process exited'],
      ]);
      // The controller stopped the session on both agents; no record followed the OFF event.
      for (const h of [A, C]) {
        await waitFor(`${h} no longer runs it`, async () => !(await unary(fleet.agentClient(h), 'getState', { pageToken: '', epoch: 0n })).sessions.some((s) => s.sessionId === 'exits'));
      }
      assert.deepEqual(recs.items.filter((r) => r.at > offEv.at + AGGREGATION_MS).map((r) => `${r.msg.host} pid ${r.msg.pid}`), []);
    } finally {
      events.stop();
      recs.stop();
    }
  });
});
