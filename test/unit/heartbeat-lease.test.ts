// The agent's lease does not grow with what it runs: a heartbeat's bytes against the
// number of sessions and targets, its answer's bound, and GetState's pages.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { STATE_PAGE_BYTES, observedDigest, observedPage } from '../../common/observed-digest.js';
import { MAX_STATUS_MESSAGE_CHARS, MAX_TARGETS_PER_SESSION } from '../../common/session-schema.js';
import { GetStateResponse, HeartbeatRequest, HeartbeatResponse, TargetState, type ObservedSession } from '../../gen/damon/v1/damon.js';

function observed(sessions: number, targets: number, message = ''): ObservedSession[] {
  return Array.from({ length: sessions }, (_, i) => ({
    sessionId: `session-${String(i).padStart(5, '0')}-${'x'.repeat(40)}`,
    generation: BigInt(1_000_000 + i),
    running: true,
    targets: Array.from({ length: targets }, (_, p) => ({ pid: 4_000_000 - p, state: TargetState.TARGET_STATE_RUNNING, operations: 'page_idle', message })),
    samplingIntervalMeanUs: 5000.5,
    aggregationIntervalMeanUs: 100000.5,
    recordsPublished: 123456789n, schemeStats: [],
  }));
}

function heartbeatBytes(sessions: ObservedSession[]): number {
  return HeartbeatRequest.encode({
    host: 'h'.repeat(253),
    instanceId: '9fb52d92-151b-4574-9a07-89ff2e9ae783',
    stateDigest: observedDigest(sessions),
    sessionCount: sessions.length,
  }).finish().length;
}

test('a heartbeat is the same few hundred bytes for 0 sessions and for 12 x 6000 or 200 x 512 targets', (t) => {
  const sizes = [
    [0, 0],
    [1, 1],
    [12, 6000],
    [200, MAX_TARGETS_PER_SESSION],
  ].map(([n, m]) => [n, m, heartbeatBytes(observed(n, m))]);
  for (const [n, m, b] of sizes) t.diagnostic(`${n} sessions x ${m} targets: heartbeat ${b} bytes`);
  const bytes = sizes.map(([, , b]) => b);
  assert.ok(bytes.every((b) => b <= 400), `${bytes}`);
  // Only the session count's varint may differ.
  assert.ok(Math.max(...bytes) - Math.min(...bytes) <= 3, `${bytes}`);
});

test('the digest follows what the controller acts on, not counters', () => {
  const a = observed(3, 4);
  const b = structuredClone(a);
  b[0].recordsPublished += 10n;
  b[1].samplingIntervalMeanUs = 1;
  assert.equal(observedDigest(b), observedDigest(a), 'counters and drift are left out');
  assert.equal(observedDigest([...a].reverse()), observedDigest(a), 'order does not matter');
  b[2].targets[1].state = TargetState.TARGET_STATE_EXITED;
  assert.notEqual(observedDigest(b), observedDigest(a), 'a target state is in');
  const c = structuredClone(a);
  c[0].generation += 1n;
  assert.notEqual(observedDigest(c), observedDigest(a), 'a generation is in');
  assert.notEqual(observedDigest(a.slice(1)), observedDigest(a), 'a session gone is seen');
});

test('a heartbeat answer is bounded: at most 64 session ids to stop', () => {
  const ids = Array.from({ length: 64 }, (_, i) => `${String(i).padStart(2, '0')}${'s'.repeat(62)}`);
  const bytes = HeartbeatResponse.encode({ known: true, stopSessions: ids, epoch: 0n }).finish().length;
  assert.ok(bytes < 5000, `${bytes}`);
});

test('GetState pages: each at most 1 MiB (or one session), in id order, covering every session once', (t) => {
  const worst = '\n'.repeat(MAX_STATUS_MESSAGE_CHARS); // what the agent stores is an excerpt of this size
  const all = observed(60, MAX_TARGETS_PER_SESSION, worst);
  let token = '';
  const seen: string[] = [];
  let pages = 0;
  let largest = 0;
  do {
    const page = observedPage(all, token);
    const bytes = GetStateResponse.encode({ host: 'h', instanceId: 'i', operations: [], unavailable: [], sessions: page.sessions, nextPageToken: page.nextPageToken, stateDigest: observedDigest(all) }).finish().length;
    largest = Math.max(largest, bytes);
    assert.ok(page.sessions.length >= 1);
    assert.ok(bytes <= STATE_PAGE_BYTES + 1024, `page of ${bytes} bytes`);
    seen.push(...page.sessions.map((s) => s.sessionId));
    if (page.nextPageToken !== '') assert.ok(page.nextPageToken > token);
    token = page.nextPageToken;
    pages++;
  } while (token !== '' && pages < 1000);
  t.diagnostic(`60 sessions x ${MAX_TARGETS_PER_SESSION} targets: ${pages} pages, largest ${largest} bytes`);
  assert.deepEqual(seen, all.map((s) => s.sessionId).sort());
  assert.deepEqual(observedPage([], ''), { sessions: [], nextPageToken: '' });
});
