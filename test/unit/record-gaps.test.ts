// Gap detection as consumers use it: the next sequence is nothing; a jump is records
// missing (those the agent dropped said so); a new agent instance with the sequence going
// on is a restart that lost nothing; a sequence going back is an agent that lost its state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecordGaps, describeGap } from '../../common/record-gaps.js';

const r = (sequence: bigint, o: { pid?: number; inst?: string; dropped?: bigint; start?: bigint } = {}) => ({
  sessionId: 's', host: 'h', pid: o.pid ?? 1, sequence, startTimeNs: o.start ?? sequence * 100n, agentInstance: o.inst ?? 'a', droppedBefore: o.dropped ?? 0n,
});

test('in sequence: nothing to report, per target', () => {
  const g = new RecordGaps();
  for (let i = 1n; i <= 5n; i++) {
    assert.deepEqual(g.observe(r(i)), []);
    assert.deepEqual(g.observe(r(i + 100n, { pid: 2 })), []);
  }
  assert.equal(g.missing, 0n);
});

test('a restart that lost nothing is told apart from one that lost records', () => {
  const g = new RecordGaps();
  g.observe(r(1n));
  g.observe(r(2n));
  assert.deepEqual(g.observe(r(3n, { inst: 'b' })), [{ kind: 'restart', target: 's/h/1', sequence: 3n, instance: 'b' }]);
  assert.equal(g.missing, 0n);
  const lost = g.observe(r(10n, { inst: 'c', dropped: 4n }));
  assert.deepEqual(lost, [
    { kind: 'restart', target: 's/h/1', sequence: 10n, instance: 'c' },
    { kind: 'missing', target: 's/h/1', sequence: 10n, count: 6n, droppedByAgent: 4n },
  ]);
  assert.equal(describeGap(lost[1]), 's/h/1: 6 record(s) missing before #10 (4 dropped by the agent, its spool full)');
  assert.equal(g.missing, 6n);
  assert.equal(g.droppedByAgents, 4n);
});

test('late arrivals take a gap back; a repeat is a duplicate; going back is a reset', () => {
  const g = new RecordGaps();
  g.observe(r(1n));
  g.observe(r(4n));
  assert.equal(g.missing, 2n);
  assert.deepEqual(g.observe(r(2n)), [{ kind: 'late', target: 's/h/1', sequence: 2n }]);
  assert.equal(g.missing, 1n);
  assert.deepEqual(g.observe(r(4n)), [{ kind: 'duplicate', target: 's/h/1', sequence: 4n }]);
  assert.deepEqual(g.observe(r(1n)), [{ kind: 'duplicate', target: 's/h/1', sequence: 1n }]);
  assert.deepEqual(g.observe(r(1n, { inst: 'z', start: 99_999n })), [{ kind: 'reset', target: 's/h/1', sequence: 1n, previous: 4n }]);
  assert.deepEqual(g.observe(r(2n, { inst: 'z' })), []);
});
