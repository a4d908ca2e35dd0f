// The agent's command line, its trust rules and the checks of a SessionSpec.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError, parseAgentArgs } from '../../agent/daemon/main.js';
import { parseSpec } from '../../agent/daemon/spec.js';
import { MAX_TARGETS_PER_SESSION, SchemaError } from '../../common/session-schema.js';
import { TrustError, checkTrust, isLoopbackHost, splitHostPort } from '../../common/trust.js';
import type { SessionSpec } from '../../gen/damon/v1/damon.js';

test('command line: the documented flags; credentials from files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'damon-cli-'));
  try {
    writeFileSync(join(dir, 'token'), 's3cret\n');
    const o = parseAgentArgs(
      ['--host', 'agent-1', '--listen', '0.0.0.0:7101', '--advertise', 'agent:7101', '--controller', 'controller:7100',
        '--nats', 'nats://a:4222,nats://b:4222', '--token-file', join(dir, 'token'), '--identities', join(dir, 'identities.json'),
        '--data-dir', dir, '--spool-max-bytes', '8388608'],
    );
    assert.equal(o.host, 'agent-1');
    assert.equal(o.listen, '0.0.0.0:7101');
    assert.equal(o.advertise, 'agent:7101');
    assert.deepEqual(o.controller, ['controller:7100']);
    assert.deepEqual(o.nats, ['nats://a:4222', 'nats://b:4222']);
    assert.equal(o.token, 's3cret');
    assert.equal(o.identities, join(dir, 'identities.json'));
    assert.equal(o.dataDir, dir);
    assert.equal(o.spoolMaxBytes, 8_388_608);
    assert.equal(o.insecure, false);
    assert.deepEqual(parseAgentArgs(['--controller', 'c1:7100, c2:7100,[::1]:7100', '--insecure']).controller, ['c1:7100', 'c2:7100', '[::1]:7100']);
    const local = parseAgentArgs(['--controller', 'c:1', '--insecure']);
    assert.equal(local.listen, '127.0.0.1:7101');
    assert.equal(local.dataDir, '/var/lib/damon-fleet');
    assert.equal(local.token, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('command line: mistakes are named', () => {
  const bad = (argv: string[], re: RegExp) => assert.throws(() => parseAgentArgs(argv), (e: unknown) => e instanceof UsageError && re.test((e as Error).message));
  bad([], /--controller HOST:PORT is required/);
  bad(['--controller', 'nope'], /--controller nope: expected HOST:PORT/);
  bad(['--controller', 'c:1,nope'], /--controller nope: expected HOST:PORT/);
  bad(['--controller', 'c:1,c:1'], /--controller c:1,c:1: an address is given twice/);
  bad(['--controller', 'c:1', '--listen', '1.2.3.4'], /--listen 1\.2\.3\.4: expected HOST:PORT/);
  bad(['--controller', 'c:1', '--tls-cert', 'x'], /--tls-cert, --tls-key and --tls-ca go together/);
  bad(['--controller', 'c:1', '--insecure', '--controller-tls-name', 'x'], /--controller-tls-name needs --tls-cert/);
  bad(['--controller', 'c:1', '--insecure', '--spool-max-bytes', '0'], /--spool-max-bytes 0: expected a positive integer/);
  bad(['--controller', 'c:1', '--insecure', '--spool-max-bytes', '1000'], /--spool-max-bytes 1000: expected at least 4194304/);
  bad(['--controller', 'c:1', '--bogus'], /Unknown option '--bogus'/);
  bad(['--controller', 'c:1'], /refusing to start without a way to check callers: give --identities FILE/);
  bad(['--controller', 'c:1', '--identities', 'i.json'], /without a credential to present: give --token-file FILE/);
  bad(['--controller', 'c:1', '--listen', '0.0.0.0:7101', '--insecure'], /--insecure is allowed on a loopback address only/);
  assert.throws(() => parseAgentArgs(['--controller', 'c:1', '--token-file', '/nonexistent/token']), /token file \/nonexistent\/token/);
});

test('trust: a way to check callers and a credential to present, or --insecure on loopback only', () => {
  const need = { accept: '--identities FILE', present: '--token-file FILE' };
  const tokens = { identities: true, tls: false, ownCredential: true, insecure: false };
  const none = { identities: false, tls: false, ownCredential: false, insecure: false };
  assert.deepEqual(splitHostPort('[::1]:7101'), { host: '::1', port: 7101 });
  assert.deepEqual(splitHostPort('0.0.0.0:0'), { host: '0.0.0.0', port: 0 });
  assert.throws(() => splitHostPort('h:70000'), /port out of range/);
  assert.ok(isLoopbackHost('127.0.0.1') && isLoopbackHost('127.1.2.3') && isLoopbackHost('::1') && isLoopbackHost('localhost'));
  assert.ok(!isLoopbackHost('0.0.0.0') && !isLoopbackHost('10.0.0.1') && !isLoopbackHost('::'));
  checkTrust('0.0.0.0:7101', tokens, need);
  checkTrust('0.0.0.0:7101', { ...none, tls: true }, need);
  checkTrust('127.0.0.1:7101', { ...none, insecure: true }, need);
  checkTrust('[::1]:7101', { ...none, insecure: true }, need);
  assert.throws(() => checkTrust('127.0.0.1:7101', none, need), TrustError);
  assert.throws(() => checkTrust('127.0.0.1:7101', { ...tokens, ownCredential: false }, need), /give --token-file FILE/);
  assert.throws(() => checkTrust('[::]:7101', { ...none, insecure: true }, need), /loopback address only/);
  assert.throws(() => checkTrust('127.0.0.1:7101', { ...tokens, insecure: true }, need), /--insecure contradicts/);
});

function spec(o: Partial<SessionSpec> = {}): SessionSpec {
  return {
    sessionId: 's1',
    attrs: {
      samplingIntervalUs: 0n,
      aggregationIntervalUs: 0n,
      updateIntervalUs: 0n,
      minNrRegions: 0,
      maxNrRegions: 0,
      resultFile: '',
      resultFormat: '', schemes: [],
    },
    pids: [10, 11],
    operations: '',
    syntheticWorkload: '',
    generation: 3n,
    ...o,
  };
}

test('spec: unset attributes take the defaults; the key tells specs apart', () => {
  const s = parseSpec(spec());
  assert.deepEqual(s.attrs, { samplingUs: 5000, aggregationUs: 100_000, updateUs: 1_000_000, minNrRegions: 10, maxNrRegions: 1000, resultFile: '', intervalsGoal: null });
  assert.equal(s.resultFormat, 'binary');
  assert.equal(parseSpec(spec()).key, s.key);
  assert.notEqual(parseSpec(spec({ generation: 4n })).key, s.key);
  assert.notEqual(parseSpec(spec({ pids: [10] })).key, s.key);
  assert.notEqual(parseSpec(spec({ operations: 'synthetic', syntheticWorkload: 'islands' })).key, s.key);
  const goal = { accessBp: 400, aggrs: 3, minSampleUs: 1_000n, maxSampleUs: 100_000n };
  assert.notEqual(parseSpec(spec({ attrs: { ...spec().attrs!, intervalsGoal: goal } })).key, s.key);
  assert.equal(parseSpec(spec({ attrs: { ...spec().attrs!, resultFormat: 'binary_v0' } })).resultFormat, 'binary_v0');
});

test('spec: malformed ones are refused naming the field', () => {
  const bad = (o: Partial<SessionSpec> | undefined, re: RegExp) =>
    assert.throws(() => parseSpec(o === undefined ? undefined : spec(o)), (e: unknown) => e instanceof SchemaError && re.test((e as Error).message));
  bad(undefined, /^spec: required$/);
  bad({ sessionId: '' }, /^spec\.session_id: must be 1 to 64 of/);
  bad({ pids: [0] }, /^spec\.pids: not a process id: 0$/);
  bad({ pids: [-5] }, /^spec\.pids: not a process id: -5$/);
  bad({ attrs: { ...spec().attrs!, samplingIntervalUs: 200_000n, aggregationIntervalUs: 100_000n } }, /^spec\.attrs\.sampling_interval_us: must not exceed/);
  bad({ attrs: { ...spec().attrs!, samplingIntervalUs: 1n << 60n } }, /^spec\.attrs\.sampling_interval_us: too large/);
  bad({ syntheticWorkload: 'hot5' }, /^spec\.synthetic_workload: only meaningful with operations "synthetic"$/);
  bad({ operations: 'perf' }, /unknown operations "perf" \(known: kdamond, page_idle, synthetic/);
  // The session schema's rules, the same as the controller's.
  bad({ attrs: { ...spec().attrs!, resultFile: '../x' } }, /^spec\.attrs\.result_file: escapes the agent's data directory/);
  bad({ operations: 'synthetic', syntheticWorkload: 'nope' }, /^spec\.synthetic_workload: not a preset/);
  const over = MAX_TARGETS_PER_SESSION + 1;
  bad({ pids: Array.from({ length: over }, (_, i) => i + 1) }, new RegExp(`^spec\\.pids: ${over} pids; a session has at most ${MAX_TARGETS_PER_SESSION}`));
});
