// The wording standbys and agents answer a controller that does not lead, and how agents
// and clients read it back (common/fencing.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { isStaleEpoch, leaderNamedIn, staleEpochError, standbyError } from '../../common/fencing.js';

/** An RpcError as a client receives it. */
const received = (e: { code: grpc.status; message: string }) => ({ code: e.code, details: e.message });

test('a standby names the leader; callers read the address back', () => {
  const e = standbyError('controller-b:7100');
  assert.equal(e.code, grpc.status.UNAVAILABLE);
  assert.equal(e.message, 'standby; the leader is at controller-b:7100');
  assert.equal(leaderNamedIn(received(e)), 'controller-b:7100');
  assert.equal(leaderNamedIn(received(standbyError('[::1]:7100'))), '[::1]:7100');
  const none = standbyError(undefined);
  assert.match(none.message, /^standby; no controller leads at the moment/);
  assert.equal(leaderNamedIn(received(none)), undefined);
});

test('only an UNAVAILABLE standby answer names a leader', () => {
  assert.equal(leaderNamedIn({ code: grpc.status.FAILED_PRECONDITION, details: 'standby; the leader is at a:1' }), undefined);
  assert.equal(leaderNamedIn({ code: grpc.status.UNAVAILABLE, details: 'connection refused' }), undefined);
  assert.equal(leaderNamedIn({ code: grpc.status.UNAVAILABLE, details: 'standby; the leader is at not an address' }), undefined);
  assert.equal(leaderNamedIn(new Error('standby; the leader is at a:1')), undefined);
});

test('a stale epoch is FAILED_PRECONDITION naming both epochs, and is recognised', () => {
  const e = staleEpochError(5n, 9n, 'ApplySession s1');
  assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(e.message, 'stale controller epoch 5: this agent has seen epoch 9 from a newer leader; ApplySession s1 refused');
  assert.ok(isStaleEpoch(received(e)));
  assert.ok(!isStaleEpoch({ code: grpc.status.FAILED_PRECONDITION, details: 'spec: required' }));
  assert.ok(!isStaleEpoch({ code: grpc.status.UNAVAILABLE, details: e.message }));
});
