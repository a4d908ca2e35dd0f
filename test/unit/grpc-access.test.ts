// The gRPC access rules as data: which role may call which method, identities files,
// callers named by certificates, per-agent tokens, and what the credentials command writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  ACCESS_POLICY, IdentityTable, accessAuthorizer, agentCallToken, certificateCaller, mayRegisterAddress, spiffeId, tokenSha256,
} from '../../common/grpc-access.js';
import { credentialsLayout } from '../../common/credentials-layout.js';
import { ensureGrpcCredentials } from '../../common/grpc-credentials.js';
import { RpcError } from '../../common/grpc-server.js';
import { AgentService, ControllerService, RegistryService } from '../../gen/damon/v1/damon.js';

test('the policy names every method of the three services, and nothing else', () => {
  const paths = [ControllerService, RegistryService, AgentService].flatMap((s) => Object.values(s).map((m) => m.path)).sort();
  assert.deepEqual([...ACCESS_POLICY.keys()].sort(), paths);
  const rolesOf = (p: string) => [...ACCESS_POLICY.get(p)!].sort();
  assert.deepEqual(rolesOf('/damon.v1.Controller/TurnOn'), ['operator']);
  assert.deepEqual(rolesOf('/damon.v1.Controller/WatchRecords'), ['operator', 'reader']);
  assert.deepEqual(rolesOf('/damon.v1.Registry/Register'), ['agent']);
  assert.deepEqual(rolesOf('/damon.v1.Agent/ApplySession'), ['controller']);
});

function call(token?: string, cert?: object) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return { metadata, getAuthContext: () => ({ sslPeerCertificate: cert }) } as never;
}

function denied(fn: () => unknown, code: grpc.status, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof RpcError && e.code === code && re.test(e.message));
}

test('authorizer: tokens by hash, roles by policy, a certificate and a token must agree', () => {
  const table = new IdentityTable([
    { role: 'operator', name: 'operator', tokenSha256: tokenSha256('op') },
    { role: 'reader', name: 'dash', tokenSha256: tokenSha256('rd') },
    { role: 'agent', name: 'h1', tokenSha256: tokenSha256('a1') },
  ]);
  const tokens = accessAuthorizer({ identities: table });
  assert.deepEqual(tokens(call('rd'), '/damon.v1.Controller/GetSession'), { role: 'reader', name: 'dash', addresses: ['dash'], via: 'token' });
  denied(() => tokens(call('rd'), '/damon.v1.Controller/TurnOn'), grpc.status.PERMISSION_DENIED, /reader "dash" may not call TurnOn/);
  denied(() => tokens(call('op'), '/damon.v1.Controller/NewMethod'), grpc.status.PERMISSION_DENIED, /may not call NewMethod/);
  denied(() => tokens(call(), '/damon.v1.Controller/GetSession'), grpc.status.UNAUTHENTICATED, /no credential/);
  denied(() => tokens(call('nope'), '/damon.v1.Controller/GetSession'), grpc.status.PERMISSION_DENIED, /token not accepted/);
  const both = accessAuthorizer({ identities: table, tls: true });
  const h1Cert = { subjectaltname: `DNS:h1, IP Address:10.0.0.1, URI:${spiffeId('agent', 'h1')}` };
  assert.equal((both(call('a1', h1Cert), '/damon.v1.Registry/Register') as { via: string }).via, 'certificate');
  denied(() => both(call('op', h1Cert), '/damon.v1.Registry/Register'), grpc.status.PERMISSION_DENIED, /name different identities/);
  denied(() => both(call(undefined, { subjectaltname: 'DNS:h1' }), '/damon.v1.Registry/Register'), grpc.status.PERMISSION_DENIED, /names no damon-fleet identity/);
  // A certificate's unnamed identity can still be completed by a token.
  assert.equal((both(call('op', { subjectaltname: 'DNS:x' }), '/damon.v1.Controller/TurnOn') as { role: string }).role, 'operator');
});

test('certificates: one spiffe identity, addresses from DNS and IP SANs', () => {
  const c = certificateCaller({ subjectaltname: `DNS:Node-1.example, IP Address:10.0.0.5, URI:${spiffeId('agent', 'node-1.example')}` })!;
  assert.deepEqual(c, { role: 'agent', name: 'node-1.example', addresses: ['node-1.example', '10.0.0.5'], via: 'certificate' });
  assert.ok(mayRegisterAddress(c, '10.0.0.5:7101') && mayRegisterAddress(c, 'NODE-1.example:1'));
  assert.ok(!mayRegisterAddress(c, '10.0.0.6:7101'));
  assert.equal(certificateCaller({ subjectaltname: `URI:${spiffeId('controller')}` })?.role, 'controller');
  assert.equal(certificateCaller({ subjectaltname: 'URI:spiffe://damon-fleet/root/x' }), undefined);
  assert.equal(certificateCaller({ subjectaltname: `URI:${spiffeId('operator')}, URI:${spiffeId('reader', 'r')}` }), undefined, 'two identities are ambiguous');
  assert.equal(certificateCaller({ subjectaltname: 'URI:spiffe://damon-fleet/agent/bad_host' }), undefined);
  assert.equal(certificateCaller(undefined), undefined);
});

test('identities files: errors name the entry and never echo a long value', () => {
  const bad = (doc: unknown, re: RegExp) => assert.throws(() => IdentityTable.parse(JSON.stringify(doc), 'f.json'), re);
  const hash = tokenSha256('t');
  assert.throws(() => IdentityTable.parse('{', 'f.json'), /identities file f\.json: not JSON/);
  bad({}, /expected \{"identities": \[\.\.\.\]\}/);
  bad({ identities: [{ role: 'root', name: 'x', token_sha256: hash }] }, /identities\[0\]\.role: one of operator, reader, agent, controller/);
  bad({ identities: [{ role: 'agent', name: 'a'.repeat(5000), token_sha256: hash }] }, (/identities\[0\]\.name: agent name must be a host name, got "a{64}…"$/));
  bad({ identities: [{ role: 'reader', name: 'r', token_sha256: 'secret-token' }] }, /token_sha256: 64 lower-case hex digits/);
  bad({ identities: [{ role: 'reader', name: 'r', token_sha256: hash }, { role: 'reader', name: 's', token_sha256: hash }] }, /identities\[1\]: the same token/);
  bad({ identities: [{ role: 'reader', name: 'r', token_sha256: hash, addresses: ['x'] }] }, /only agents have addresses/);
  bad({ identities: [{ role: 'operator', name: 'root', token_sha256: hash }] }, /the operator is named "operator"/);
});

test('the controller shows each host a different token, derived from its key', () => {
  assert.notEqual(agentCallToken('k', 'h1'), agentCallToken('k', 'h2'));
  assert.notEqual(agentCallToken('k', 'h1'), agentCallToken('k2', 'h1'));
  assert.equal(agentCallToken('k', 'h1'), agentCallToken('k', 'h1'));
});

test('credentials: private files, tokens only as hashes, kept across runs, addresses kept', () => {
  const root = mkdtempSync(join(tmpdir(), 'damon-creds-unit-'));
  try {
    const first = ensureGrpcCredentials(root, { agents: [{ host: 'h1', addresses: ['10.0.0.1'] }], readers: ['dash'] });
    const l = credentialsLayout(root);
    assert.deepEqual(first.sort(), [l.agent('h1').token, l.controller.agentKey, l.operator.token, l.reader('dash').token].sort());
    for (const f of [...first, l.controller.identities, l.agent('h1').identities]) assert.equal(statSync(f).mode & 0o777, 0o600, f);
    assert.equal(statSync(l.agent('h1').dir).mode & 0o777, 0o700);
    const tokens = first.map((f) => readFileSync(f, 'utf8').trim());
    const idText = readFileSync(l.controller.identities, 'utf8');
    for (const t of tokens) assert.ok(!idText.includes(t), 'a token is in the identities file');
    const table = IdentityTable.readFile(l.controller.identities);
    assert.equal(table.byToken(readFileSync(l.agent('h1').token, 'utf8').trim())?.name, 'h1');
    const agentSide = IdentityTable.readFile(l.agent('h1').identities);
    assert.equal(agentSide.byToken(agentCallToken(tokens[first.indexOf(l.controller.agentKey)], 'h1'))?.role, 'controller');
    // Again with a new host: nothing is remade, h1 keeps its addresses.
    const second = ensureGrpcCredentials(root, { agents: [{ host: 'h1' }, { host: 'h2' }], readers: ['dash'] });
    assert.deepEqual(second, [l.agent('h2').token]);
    const again = IdentityTable.readFile(l.controller.identities).entries;
    assert.deepEqual(again.find((e) => e.name === 'h1')?.addresses, ['10.0.0.1']);
    assert.deepEqual(again.find((e) => e.name === 'h2')?.addresses, ['h2']);
    assert.equal(readFileSync(l.operator.token, 'utf8').trim(), tokens[first.indexOf(l.operator.token)]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
