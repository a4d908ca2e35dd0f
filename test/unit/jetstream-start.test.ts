// whenJetStreamAnswers: what a starting controller waits out and what it reports at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JetStreamApiError } from '@nats-io/jetstream';
import type { Logger } from '../../common/log.js';
import { whenJetStreamAnswers } from '../../common/nats.js';

function apiError(code: number, description: string): JetStreamApiError {
  return new JetStreamApiError({ code: 500, err_code: code, description });
}

// Fails with `errors` in turn, then answers 'ok'; counts the calls.
function failing(errors: Error[]): { f: () => Promise<string>; calls: () => number } {
  let n = 0;
  return { f: async () => (n < errors.length ? Promise.reject(errors[n++]) : (n++, 'ok')), calls: () => n };
}

test('an electing cluster and a peer not joined yet are waited out; the wait is told once', { timeout: 20_000 }, async () => {
  const warnings: string[] = [];
  const log: Logger = { info() {}, error() {}, warn: (m) => void warnings.push(m), child: () => log };
  const { f, calls } = failing([apiError(10008, 'JetStream system temporarily unavailable'), apiError(10005, 'no suitable peers for placement')]);
  assert.equal(await whenJetStreamAnswers(f, 10_000, log, 10_000), 'ok');
  assert.equal(calls(), 3);
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0], /does not answer yet/);
});

test('a placement refusal is thrown once its own wait has passed, at once without one; other errors at once', async () => {
  const refusal = apiError(10005, 'no suitable peers for placement');
  await assert.rejects(whenJetStreamAnswers(failing([refusal, refusal, refusal]).f, 60_000), /no suitable peers/);
  const single = failing([apiError(10074, 'replicas > 1 not supported in non-clustered mode')]);
  await assert.rejects(whenJetStreamAnswers(single.f, 60_000, undefined, 60_000), /non-clustered/);
  assert.equal(single.calls(), 1);
  const denied = failing([new Error('permissions violation')]);
  await assert.rejects(whenJetStreamAnswers(denied.f, 60_000, undefined, 60_000), /permissions/);
  assert.equal(denied.calls(), 1);
});
