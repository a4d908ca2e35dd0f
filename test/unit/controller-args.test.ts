// The controller's command line: defaults, credentials, durations and sizes, and the
// refusal to start without credentials (--insecure on loopback only).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseControllerArgs } from '../../controller/main.js';
import { parseBytes, parseDurationMs as parseDuration } from '../../common/cli-values.js';

const dir = mkdtempSync(join(tmpdir(), 'damon-args-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 's3cret\n');

const keyFile = tokenFile;
const access = ['--identities', join(dir, 'identities.json'), '--agent-key-file', keyFile];

test('defaults: loopback, local NATS, 5 s lease, 1 s heartbeat', () => {
  const o = parseControllerArgs(access);
  assert.equal(o.listen, '127.0.0.1:7100');
  assert.deepEqual(o.nats, ['nats://127.0.0.1:4222']);
  assert.equal(o.leaseTtlMs, 5000);
  assert.equal(o.heartbeatIntervalMs, 1000);
  assert.equal(o.leaderLeaseMs, 3000);
  assert.equal(o.advertise, undefined);
  assert.equal(o.identities, join(dir, 'identities.json'));
  assert.equal(o.agentKey, 's3cret');
  assert.equal(o.insecure, false);
  assert.deepEqual(o.streams, { records: {}, events: {}, actions: {}, replicas: 1 });
  assert.deepEqual(o.actionLimits, {});
  assert.throws(() => parseControllerArgs(['--identities', 'i', '--agent-key-file', join(dir, 'missing')]), /token file .*missing: ENOENT/);
});

test('credentials required: identities and an agent key, or TLS; --insecure on loopback only', () => {
  assert.throws(() => parseControllerArgs([]), /refusing to start without a way to check callers: give --identities FILE/);
  assert.throws(() => parseControllerArgs(['--identities', 'i.json']), /without a credential to present: give --agent-key-file FILE/);
  assert.equal(parseControllerArgs(['--listen', '0.0.0.0:7100', ...access]).listen, '0.0.0.0:7100');
  assert.equal(parseControllerArgs(['--listen', '[::1]:7100', '--insecure']).insecure, true);
  assert.throws(() => parseControllerArgs(['--listen', '0.0.0.0:7100', '--insecure']), /--insecure is allowed on a loopback address only/);
  assert.throws(() => parseControllerArgs(['--insecure', ...access]), /--insecure contradicts/);
  assert.throws(() => parseControllerArgs(['--listen', 'nope']), /--listen nope: expected HOST:PORT/);
});

test('TLS files go together', () => {
  assert.throws(() => parseControllerArgs(['--tls-cert', 'a.crt']), /--tls-cert, --tls-key and --tls-ca go together/);
  assert.throws(() => parseControllerArgs(['--tls-cert', 'a', '--tls-key', 'b', '--tls-ca', 'c']), /tls cert file a: ENOENT/);
});

test('stream limits and timings', () => {
  const o = parseControllerArgs(
    ['--records-max-age', '6h', '--records-max-bytes', '512M', '--events-max-age', '30d', '--dedup-window', '90s', '--lease-ttl', '3s', '--heartbeat', '500ms', '--nats', 'nats://a:4222, nats://b:4222', ...access],
  );
  assert.deepEqual(o.streams, {
    records: { maxAgeMs: 6 * 3600_000, maxBytes: 512 * 1024 ** 2, duplicateWindowMs: 90_000 },
    events: { maxAgeMs: 30 * 86_400_000, duplicateWindowMs: 90_000 },
    actions: { duplicateWindowMs: 90_000 },
    replicas: 1,
  });
  assert.deepEqual(parseControllerArgs(['--actions-max-age', '1d', '--actions-max-bytes', '1G', ...access]).streams?.actions, { maxAgeMs: 86_400_000, maxBytes: 1024 ** 3 });
  assert.equal(o.leaseTtlMs, 3000);
  assert.equal(o.heartbeatIntervalMs, 500);
  const s = parseControllerArgs(['--listen', '0.0.0.0:7100', '--advertise', 'controller-b:7100', '--leader-lease', '2s', ...access]);
  assert.equal(s.advertise, 'controller-b:7100');
  assert.equal(s.leaderLeaseMs, 2000);
  assert.throws(() => parseControllerArgs(['--advertise', 'nope', ...access]), /--advertise nope: expected HOST:PORT/);
  assert.throws(() => parseControllerArgs(['--leader-lease', '0s', ...access]), /must be positive/);
  assert.deepEqual(o.nats, ['nats://a:4222', 'nats://b:4222']);
  assert.equal(parseDuration('--x', '7d'), 7 * 86_400_000);
  assert.throws(() => parseDuration('--lease-ttl', '5'), /--lease-ttl 5: expected a duration/);
  assert.throws(() => parseDuration('--lease-ttl', '0s'), /must be positive/);
  assert.equal(parseBytes('--x', '1G'), 1024 ** 3);
  assert.throws(() => parseBytes('--records-max-bytes', '1T'), /--records-max-bytes 1T: expected bytes/);
  assert.throws(() => parseControllerArgs(['extra']), /unexpected argument: extra/);
});

test('--nats-replicas: 1 to 5 copies of the streams and the bucket', () => {
  assert.equal(parseControllerArgs(['--nats-replicas', '3', ...access]).streams?.replicas, 3);
  assert.equal(parseControllerArgs(['--nats-replicas', '5', ...access]).streams?.replicas, 5);
  for (const bad of ['0', '6', '-1', '2.5', 'three', '']) {
    assert.throws(() => parseControllerArgs([`--nats-replicas=${bad}`, ...access]), /--nats-replicas .*from 1 to 5/, bad);
  }
  assert.throws(() => parseControllerArgs(['--nats-replicas', 'x'.repeat(5000), ...access]), (err: Error) => err.message.length < 200);
});

test('RequestAction rate limits: RATE/BURST per caller and per target', () => {
  assert.deepEqual(parseControllerArgs(['--action-rate', '2/4', '--target-action-rate', '0.5/2', ...access]).actionLimits, {
    callerPerS: 2,
    callerBurst: 4,
    targetPerS: 0.5,
    targetBurst: 2,
  });
  for (const bad of ['x', '0/4', '2/0', '2', '1/2/3']) {
    assert.throws(() => parseControllerArgs(['--action-rate', bad, ...access]), /--action-rate ".*": expected RATE\/BURST/);
  }
});
