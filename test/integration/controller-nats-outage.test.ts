// NATS going away and coming back: calls fail UNAVAILABLE (not INTERNAL) meanwhile, the
// controller reconnects by itself, and the sessions are where they were.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { SessionState } from '../../gen/damon/v1/damon.js';
import { startEnv, type ControllerEnv } from './support/controller-env.js';
import { rejectsWith, unary, waitFor } from './support/grpc-client.js';
import { startNatsServer } from './support/nats-server.js';

describe('controller across a NATS outage', () => {
  let env: ControllerEnv;
  before(async () => {
    env = await startEnv({ natsTimeoutMs: 500 });
  });
  after(async () => {
    await env.close();
  });

  test('UNAVAILABLE while NATS is down; everything back, intact, once it returns', async () => {
    const s = await unary(env.client, 'createSession', {
      id: 'kept', attrs: undefined, attrsText: '1000 20000 500000 5 50', schemesText: '', targets: [{ host: 'h', pid: 1 }], operations: '', syntheticWorkload: '',
    });
    const { storeDir, port, credentials } = env.nats;
    await env.nats.stop(true);
    await rejectsWith(unary(env.client, 'getSession', { id: 'kept' }), grpc.status.UNAVAILABLE, /^NATS unavailable: /);
    await rejectsWith(unary(env.client, 'listSessions', { pageSize: 0, pageToken: '' }), grpc.status.UNAVAILABLE);
    assert.ok(!env.logs.some((l) => l.startsWith('error')), 'an outage is not an internal error');

    env.nats = await startNatsServer({ storeDir, port, credentials });
    const back = await waitFor('controller reconnected', () => unary(env.client, 'getSession', { id: 'kept' }), 15_000, 200);
    assert.equal(back.revision, s.revision);
    assert.equal(back.attrsText, '1000 20000 500000 5 50');
    assert.equal(back.state, SessionState.SESSION_STATE_OFF);
    const moved = await unary(env.client, 'setTargets', { id: 'kept', targets: [{ host: 'h', pid: 2 }], expectedRevision: s.revision, operations: '', syntheticWorkload: '' });
    assert.ok(moved.revision > s.revision);
    assert.ok(env.logs.some((l) => /nats: reconnected/.test(l)));
  });
});
