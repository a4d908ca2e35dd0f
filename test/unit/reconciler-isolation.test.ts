// The reconcile pass with a session that fails: the others are reconciled in the same
// pass, the failing one backs off (capped, logged once per distinct error, reset when the
// session changes or succeeds); and which sessions an agent is told to stop.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KeyedMutex } from '../../controller/keyed-mutex.js';
import { MAX_SESSION_BACKOFF_MS, Reconciler } from '../../controller/reconciler.js';
import type { AgentEntry, AgentRegistry } from '../../controller/registry.js';
import type { SessionLifecycle } from '../../controller/lifecycle.js';
import type { EventPublisher } from '../../controller/events.js';
import type { StoredSession } from '../../controller/session-model.js';
import type { Listing, Quarantined, SessionStore, Versioned } from '../../controller/session-store.js';
import { TargetState, type ObservedSession } from '../../gen/damon/v1/damon.js';

const INTERVAL_MS = 100;

function session(id: string, state: 'on' | 'off', generation: number, hosts = ['h1']): StoredSession {
  const targets = hosts.map((host, i) => ({ host, pid: 100 + i }));
  return {
    id, attrs: { samplingUs: 5000, aggregationUs: 100000, updateUs: 1000000, minNrRegions: 10, maxNrRegions: 1000, resultFile: '', resultFormat: 'binary', schemes: [] },
    targets, state, operations: 'synthetic', syntheticWorkload: '', generation,
    targetStatus: targets.map((t) => ({ ...t, state: 'idle', operations: '', message: '' })),
    offReason: '', createdAtMs: 1, updatedAtMs: 1,
  };
}

/** A store of versioned sessions in memory; `failing` ids throw on get (as a bug would). */
class MemoryStore {
  readonly entries = new Map<string, Versioned>();
  quarantined: Quarantined[] = [];
  readonly failing = new Map<string, string>();
  gets = new Map<string, number>();
  seq = 100;
  put(s: StoredSession): void {
    this.entries.set(s.id, { session: s, revision: ++this.seq });
  }
  async scan(): Promise<Listing> {
    return { sessions: [...this.entries.values()].sort((a, b) => a.session.id.localeCompare(b.session.id)), quarantined: this.quarantined, seq: this.seq };
  }
  async get(id: string): Promise<Versioned | null> {
    this.gets.set(id, (this.gets.get(id) ?? 0) + 1);
    const why = this.failing.get(id);
    if (why) throw new TypeError(why);
    return this.entries.get(id) ?? null;
  }
  async read(id: string): Promise<Versioned | Quarantined | null> {
    return this.quarantined.find((q) => q.id === id) ?? this.get(id);
  }
  async update(id: string, mutate: (s: StoredSession, r: number) => StoredSession | undefined) {
    const before = this.entries.get(id)!;
    const next = mutate(structuredClone(before.session), before.revision);
    if (!next) return { before, after: before, changed: false };
    const after = { session: next, revision: ++this.seq };
    this.entries.set(id, after);
    return { before, after, changed: true };
  }
}

function setup() {
  const store = new MemoryStore();
  const lines: string[] = [];
  const log = { info: (m: string) => lines.push(`info ${m}`), warn: (m: string) => lines.push(`warn ${m}`), error: (m: string) => lines.push(`error ${m}`) };
  let now = 1_000_000;
  const registry = { expire() {}, liveAgents: () => [], live: () => undefined } as unknown as AgentRegistry;
  const lifecycle = { stopHosts: async () => {}, stopOn: async () => {} } as unknown as SessionLifecycle;
  const events = { publish: async () => {} } as unknown as EventPublisher;
  const rec = new Reconciler(store as unknown as SessionStore, registry, lifecycle, events, new KeyedMutex(), {
    intervalMs: INTERVAL_MS, startupGraceMs: 0, log, now: () => now,
  });
  return { store, lines, rec, advance: (ms: number) => (now += ms) };
}

test('one session failing does not stop the pass; it backs off, capped, logged once per error', async () => {
  const { store, lines, rec, advance } = setup();
  store.put(session('a-boom', 'on', 1));
  store.put(session('b-good', 'on', 2));
  store.failing.set('a-boom', 'cannot read properties of undefined');
  advance(1);
  await rec.pass();
  // b-good was reconciled in the same pass (its status written: no live agent on h1).
  assert.match(store.entries.get('b-good')!.session.targetStatus[0].message, /no live agent on h1/);
  assert.equal(lines.filter((l) => l.includes('a-boom: reconcile failed')).length, 1);
  assert.match(lines.find((l) => l.includes('a-boom: reconcile failed'))!, /cannot read properties of undefined; backing off.*the other sessions go on\n.*TypeError/s);

  // Backing off: not retried before its delay; retried after it, without a new log line.
  const calls = () => store.gets.get('a-boom') ?? 0;
  const c1 = calls();
  await rec.pass();
  assert.equal(calls(), c1, 'skipped while backing off');
  let delay = INTERVAL_MS;
  for (let i = 0; i < 12; i++) {
    advance(delay);
    const before = calls();
    await rec.pass();
    assert.equal(calls(), before + 1, `retried after ${delay} ms`);
    delay = Math.min(delay * 2, MAX_SESSION_BACKOFF_MS);
  }
  advance(MAX_SESSION_BACKOFF_MS - 1);
  const c2 = calls();
  await rec.pass();
  assert.equal(calls(), c2, 'the cap holds: not retried 1 ms early');
  assert.equal(lines.filter((l) => l.includes('a-boom: reconcile failed')).length, 1, 'logged once for one error');

  // A different error is logged again; success is logged and ends the backoff.
  store.failing.set('a-boom', 'another error');
  advance(MAX_SESSION_BACKOFF_MS);
  await rec.pass();
  assert.equal(lines.filter((l) => l.includes('a-boom: reconcile failed')).length, 2);
  store.failing.delete('a-boom');
  advance(MAX_SESSION_BACKOFF_MS);
  await rec.pass();
  assert.ok(lines.some((l) => /session a-boom: reconciled again after \d+ failed attempts/.test(l)));
});

test('a session that changes is retried at once, whatever its backoff', async () => {
  const { store, rec, advance } = setup();
  store.put(session('c', 'on', 1));
  store.failing.set('c', 'broken');
  for (let i = 0; i < 6; i++) {
    advance(MAX_SESSION_BACKOFF_MS);
    await rec.pass();
  }
  const before = store.gets.get('c')!;
  await rec.pass();
  assert.equal(store.gets.get('c'), before, 'backing off');
  store.put(store.entries.get('c')!.session); // a new revision
  await rec.pass();
  assert.equal(store.gets.get('c'), before + 1, 'retried on change');
});

function agentRunning(host: string, runs: Array<[string, number]>): AgentEntry {
  const observed = new Map<string, ObservedSession>(
    runs.map(([id, g]) => [id, { sessionId: id, generation: BigInt(g), running: true, targets: [{ pid: 100, state: TargetState.TARGET_STATE_RUNNING, operations: 'synthetic', message: '' }], samplingIntervalMeanUs: 0, aggregationIntervalMeanUs: 0, recordsPublished: 0n, schemeStats: [] }]),
  );
  return { host, observed } as unknown as AgentEntry;
}

test('sessions an agent is told to stop: deleted, off since, or not on its host; never a TurnOn under way', async () => {
  const { store, rec } = setup();
  store.put(session('off-now', 'off', 0)); // revision 101
  store.put(session('on-here', 'on', 50)); // revision 102
  store.put(session('on-elsewhere', 'on', 60, ['h2'])); // revision 103
  store.quarantined = [{ id: 'broken', revision: 99, error: 'is not JSON' }];
  assert.deepEqual(rec.unwantedOn(agentRunning('h1', [['gone', 5]])), [], 'nothing is judged before a pass');
  await rec.pass();
  const agent = agentRunning('h1', [
    ['gone', 40], // deleted: not listed
    ['off-now', 90], // an older generation of a session now off
    ['on-here', 50], // wanted
    ['on-elsewhere', 20], // an older run, the session is now on without h1
    ['broken', 30], // quarantined: not judged
    ['created-later', 200], // newer than the listing (a TurnOn since)
  ]);
  assert.deepEqual(rec.unwantedOn(agent).sort(), ['gone', 'off-now', 'on-elsewhere']);
  // TurnOn dispatches generation = the off entry's revision before recording ON: left alone.
  assert.deepEqual(rec.unwantedOn(agentRunning('h1', [['off-now', store.entries.get('off-now')!.revision]])), []);
});
