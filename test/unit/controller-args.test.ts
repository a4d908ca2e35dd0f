// The controller's command line: defaults, credentials, durations and sizes, and the
// refusal to listen off loopback without credentials.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseControllerArgs } from '../../controller/main.js';
import { parseBytes, parseDurationMs as parseDuration } from '../../common/cli-values.js';

const dir = mkdtempSync(join(tmpdir(), 'damon-args-'));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 's3cret\n');

test('defaults: loopback, local NATS, 5 s lease, 1 s heartbeat, no credentials', () => {
  const o = parseControllerArgs([], {});
  assert.equal(o.listen, '127.0.0.1:7100');
  assert.deepEqual(o.nats, ['nats://127.0.0.1:4222']);
  assert.equal(o.leaseTtlMs, 5000);
  assert.equal(o.heartbeatIntervalMs, 1000);
  assert.deepEqual(o.credentials, {});
  assert.deepEqual(o.streams, { records: {}, events: {} });
});

test('token from --token-file (trimmed) or DAMON_FLEET_TOKEN; a client token apart', () => {
  assert.equal(parseControllerArgs(['--token-file', tokenFile], {}).credentials!.token, 's3cret');
  assert.equal(parseControllerArgs([], { DAMON_FLEET_TOKEN: 'env-token\n' }).credentials!.token, 'env-token');
  const o = parseControllerArgs(['--token-file', tokenFile, '--client-token-file', tokenFile], {});
  assert.equal(o.clientToken, 's3cret');
  assert.throws(() => parseControllerArgs(['--token-file', join(dir, 'missing')], {}), /token file .*missing: ENOENT/);
});

test('off loopback only with credentials', () => {
  assert.throws(() => parseControllerArgs(['--listen', '0.0.0.0:7100'], {}), /refusing to listen on 0\.0\.0\.0:7100 without credentials/);
  assert.equal(parseControllerArgs(['--listen', '0.0.0.0:7100', '--token-file', tokenFile], {}).listen, '0.0.0.0:7100');
  assert.equal(parseControllerArgs(['--listen', '[::1]:7100'], {}).listen, '[::1]:7100');
  assert.throws(() => parseControllerArgs(['--listen', 'nope'], {}), /--listen nope: expected HOST:PORT/);
});

test('TLS files go together', () => {
  assert.throws(() => parseControllerArgs(['--tls-cert', 'a.crt'], {}), /--tls-cert, --tls-key and --tls-ca go together/);
  assert.throws(() => parseControllerArgs(['--tls-cert', 'a', '--tls-key', 'b', '--tls-ca', 'c'], {}), /tls cert file a: ENOENT/);
});

test('stream limits and timings', () => {
  const o = parseControllerArgs(
    ['--records-max-age', '6h', '--records-max-bytes', '512M', '--events-max-age', '30d', '--dedup-window', '90s', '--lease-ttl', '3s', '--heartbeat', '500ms', '--nats', 'nats://a:4222, nats://b:4222'],
    {},
  );
  assert.deepEqual(o.streams, {
    records: { maxAgeMs: 6 * 3600_000, maxBytes: 512 * 1024 ** 2, duplicateWindowMs: 90_000 },
    events: { maxAgeMs: 30 * 86_400_000, duplicateWindowMs: 90_000 },
  });
  assert.equal(o.leaseTtlMs, 3000);
  assert.equal(o.heartbeatIntervalMs, 500);
  assert.deepEqual(o.nats, ['nats://a:4222', 'nats://b:4222']);
  assert.equal(parseDuration('--x', '7d'), 7 * 86_400_000);
  assert.throws(() => parseDuration('--lease-ttl', '5'), /--lease-ttl 5: expected a duration/);
  assert.throws(() => parseDuration('--lease-ttl', '0s'), /must be positive/);
  assert.equal(parseBytes('--x', '1G'), 1024 ** 3);
  assert.throws(() => parseBytes('--records-max-bytes', '1T'), /--records-max-bytes 1T: expected bytes/);
  assert.throws(() => parseControllerArgs(['extra'], {}), /unexpected argument: extra/);
});
