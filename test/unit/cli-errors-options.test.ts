// The fleet CLI's edges with no server: how a gRPC status becomes a sentence and an exit
// code, the connection options (flags over environment, credentials from files only), the
// checks of attrs and targets before any call, and where a failed call goes next among
// several controllers.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Exit, UsageError, callError } from '../../cli/exit-codes.js';
import { ENV, parseConnection } from '../../cli/connection-options.js';
import { ControllerConnection } from '../../cli/controller-connection.js';
import { attrsRequest, parseTargets } from '../../cli/sessions-main.js';
import { standbyError } from '../../common/fencing.js';

function serviceError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), { code, details, metadata: new grpc.Metadata() });
}

const dir = mkdtempSync(join(tmpdir(), 'damon-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 'secret-token\n');

test('every status maps to its documented exit code, with a sentence before the server\'s words', () => {
  const cases: Array<[grpc.status, number]> = [
    [grpc.status.INVALID_ARGUMENT, Exit.Usage],
    [grpc.status.RESOURCE_EXHAUSTED, Exit.Usage],
    [grpc.status.NOT_FOUND, Exit.NotFound],
    [grpc.status.FAILED_PRECONDITION, Exit.Precondition],
    [grpc.status.ALREADY_EXISTS, Exit.Precondition],
    [grpc.status.ABORTED, Exit.Precondition],
    [grpc.status.UNAUTHENTICATED, Exit.Auth],
    [grpc.status.PERMISSION_DENIED, Exit.Auth],
    [grpc.status.UNAVAILABLE, Exit.Unavailable],
    [grpc.status.DEADLINE_EXCEEDED, Exit.Unavailable],
    [grpc.status.INTERNAL, Exit.Failure],
    [grpc.status.UNKNOWN, Exit.Failure],
  ];
  for (const [code, exit] of cases) {
    const e = callError(serviceError(code, 'the server says why'));
    assert.equal(e.exitCode, exit, grpc.status[code]);
    assert.equal(e.status, grpc.status[code]);
    assert.match(e.message, /^[a-z].*: the server says why$/, e.message);
  }
  assert.equal(callError(serviceError(grpc.status.NOT_FOUND, 'session "x" not found')).message, 'not found: session "x" not found');
  assert.match(callError(serviceError(grpc.status.UNAVAILABLE, 'down'), '10.0.0.1:7100').message, /unavailable at 10\.0\.0\.1:7100: down/);
});

test("the server's words reach the terminal without control characters, and cut short", () => {
  const e = callError(serviceError(grpc.status.INVALID_ARGUMENT, `bad \x1b]0;pwned\x07 ${'x'.repeat(1000)}`));
  assert.doesNotMatch(e.message, /[\x00-\x1f]/);
  assert.match(e.message, /\\x1b\]0;pwned\\x07/);
  assert.ok(e.message.length < 520, `${e.message.length} characters`);
  const conn = callError(serviceError(grpc.status.UNAVAILABLE, 'No connection established. Last error: ECONNREFUSED. Resolution note: '));
  assert.match(conn.message, /ECONNREFUSED\.$/);
});

test('connection options: flags win over the environment; one credential, from a file, is required', () => {
  const c = parseConnection({ 'token-file': tokenFile }, { [ENV.controller]: 'a:1,b:2' });
  assert.deepEqual(c.controllers, ['a:1', 'b:2']);
  assert.equal(c.credentials.token, 'secret-token');
  assert.equal(c.timeoutMs, 10_000);
  assert.deepEqual(parseConnection({ controller: 'c:3' }, { [ENV.controller]: 'a:1', [ENV['token-file']]: tokenFile }).controllers, ['c:3']);
  assert.deepEqual(parseConnection({ insecure: true }, {}).controllers, ['127.0.0.1:7100']);
  const usage = (values: Parameters<typeof parseConnection>[0], env: Record<string, string>, re: RegExp) =>
    assert.throws(() => parseConnection(values, env), (err: unknown) => err instanceof UsageError && err.exitCode === Exit.Usage && re.test(err.message));
  usage({}, {}, /no credential: give --token-file FILE \(or DAMON_FLEET_TOKEN_FILE\)/);
  usage({ insecure: true, 'token-file': tokenFile }, {}, /--insecure contradicts/);
  usage({ 'tls-cert': 'c.pem' }, {}, /--tls-cert, --tls-key and --tls-ca go together/);
  usage({ 'token-file': join(dir, 'missing') }, {}, /token file .*missing/);
  usage({ 'token-file': tokenFile, controller: 'a:1,a:1' }, {}, /given twice/);
  usage({ 'token-file': tokenFile, controller: 'nohost' }, {}, /--controller nohost: expected HOST:PORT/);
  usage({ 'token-file': tokenFile, timeout: 'soon' }, {}, /--timeout soon: expected a duration/);
  usage({ 'token-file': tokenFile, 'controller-tls-name': 'ctl' }, {}, /--controller-tls-name needs --tls-cert/);
});

test('attrs and targets are checked before any call, with the words the controller would use', () => {
  assert.deepEqual(attrsRequest(' 5000 100000 1000000 10 1000 out.data ', undefined), { attrs: undefined, attrsText: '5000 100000 1000000 10 1000 out.data', schemesText: '' });
  const withFormat = attrsRequest('5000 100000 1000000 10 1000', 'json');
  assert.equal(withFormat.attrsText, '');
  assert.equal(withFormat.attrs?.resultFormat, 'json');
  assert.equal(withFormat.attrs?.aggregationIntervalUs, 100_000n);
  assert.throws(() => attrsRequest('5000 100000 1000000 10 99999', undefined), /bad attrs "5000 100000 1000000 10 99999": max_nr_regions: too large: at most 20000/);
  assert.throws(() => attrsRequest('5000 100000 1000000 10 1000 ../up', undefined), /result_file: escapes the agent's data directory/);
  assert.throws(() => attrsRequest('5000 100000 1000000 10 1000', 'xml'), /result_format: unknown format "xml"/);
  assert.deepEqual(parseTargets(['h1:10,h2:20', 'h.example:30']), [{ host: 'h1', pid: 10 }, { host: 'h2', pid: 20 }, { host: 'h.example', pid: 30 }]);
  assert.throws(() => parseTargets(['h1']), /target "h1": expected HOST:PID/);
  assert.throws(() => parseTargets(['h1:0']), /bad targets: targets\[0\]\.pid: must be a positive process id/);
  assert.throws(() => parseTargets(['h1:5', 'h1:5']), /duplicate target h1 pid 5/);
  assert.throws(() => parseTargets(['bad_host:5']), /not a valid host name/);
});

test('among several controllers a failed call goes to the leader a standby names, then to the others, and stops when none answers', () => {
  const conn = new ControllerConnection({ controllers: ['a:1', 'b:2', 'c:3'], credentials: {}, timeoutMs: 1000, json: false });
  const standby = (leader: string | undefined) => {
    const e = standbyError(leader);
    return serviceError(e.code, e.message);
  };
  const round = new Set<string>();
  assert.equal(conn.afterFailure(standby('c:3'), round), 'retry');
  assert.equal(conn.address, 'c:3', 'straight to the leader named');
  assert.equal(conn.afterFailure(serviceError(grpc.status.UNAVAILABLE, 'ECONNREFUSED'), round), 'retry');
  assert.equal(conn.address, 'b:2', 'the leader is down: the address not tried yet');
  assert.equal(conn.afterFailure(serviceError(grpc.status.UNAVAILABLE, 'ECONNREFUSED'), round), 'stop', 'every address failed');

  const fresh = new Set<string>();
  const c2 = new ControllerConnection({ controllers: ['a:1', 'b:2'], credentials: {}, timeoutMs: 1000, json: false });
  assert.equal(c2.afterFailure(standby('evil:666'), fresh), 'retry');
  assert.equal(c2.address, 'b:2', 'a leader that is not among the addresses given is not followed (the credential stays home)');
  assert.equal(c2.afterFailure(standby(undefined), fresh), 'wait', 'every controller stands by: an election is under way');
  assert.equal(c2.afterFailure(serviceError(grpc.status.PERMISSION_DENIED, 'no'), new Set()), 'stop', 'the leader answered');
  assert.equal(c2.afterFailure(serviceError(grpc.status.UNAVAILABLE, 'NATS unavailable'), new Set(['a:1'])), 'stop');
});
