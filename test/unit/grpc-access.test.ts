// The gRPC access rules as data: which role may call which method, identities files,
// callers named by certificates, per-agent tokens, and what the credentials command writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  ACCESS_POLICY, IdentityTable, accessAuthorizer, agentCallToken, certificateCaller, mayActOn, mayRead, mayRegisterAddress, spiffeId, tokenSha256,
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
  assert.deepEqual(rolesOf('/damon.v1.Controller/WatchRecords'), ['operator', 'optimizer', 'reader']);
  assert.deepEqual(rolesOf('/damon.v1.Controller/WatchEvents'), ['operator', 'reader']);
  assert.deepEqual(rolesOf('/damon.v1.Registry/Register'), ['agent']);
  assert.deepEqual(rolesOf('/damon.v1.Agent/ApplySession'), ['controller']);
  assert.deepEqual(rolesOf('/damon.v1.Controller/RequestAction'), ['operator', 'optimizer']);
  assert.deepEqual(rolesOf('/damon.v1.Agent/ApplyAction'), ['controller']);
  // An optimizer: its sessions' reads and actions, nothing else.
  const optimizerMay = [...ACCESS_POLICY].filter(([, roles]) => roles.includes('optimizer')).map(([p]) => p).sort();
  assert.deepEqual(optimizerMay, ['GetSession', 'ListSessions', 'RequestAction', 'WatchRecords'].map((m) => `/damon.v1.Controller/${m}`));
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

test('optimizers: granted sessions by id or prefix, by token or certificate; refused everything else', () => {
  const table = new IdentityTable([
    { role: 'optimizer', name: 'reclaim', tokenSha256: tokenSha256('opt'), sessions: ['web-*', 'db1'] },
    { role: 'optimizer', name: 'certonly', sessions: ['*'] }, // a grant for a certificate: no token opens it
    { role: 'reader', name: 'dash', tokenSha256: tokenSha256('rd') },
  ]);
  const auth = accessAuthorizer({ identities: table, tls: true });
  const byToken = auth(call('opt'), '/damon.v1.Controller/RequestAction') as { role: string; sessions: string[] };
  assert.deepEqual(byToken, { role: 'optimizer', name: 'reclaim', addresses: ['reclaim'], sessions: ['web-*', 'db1'], via: 'token' });
  for (const m of ['TurnOn', 'SetTargets', 'CreateSession', 'DeleteSession', 'SetAttributes', 'TurnOff', 'WatchEvents', 'ListAgents', 'GetAttributes']) {
    denied(() => auth(call('opt'), `/damon.v1.Controller/${m}`), grpc.status.PERMISSION_DENIED, new RegExp(`optimizer "reclaim" may not call ${m}`));
  }
  denied(() => auth(call('opt'), '/damon.v1.Agent/ApplyAction'), grpc.status.PERMISSION_DENIED, /may not call ApplyAction/);
  denied(() => auth(call('opt'), '/damon.v1.Registry/Register'), grpc.status.PERMISSION_DENIED, /may not call Register/);
  denied(() => auth(call('rd'), '/damon.v1.Controller/RequestAction'), grpc.status.PERMISSION_DENIED, /reader "dash" may not call RequestAction/);
  // Its certificate names it; the identities file says what it may act on (none without an entry).
  const cert = (name: string) => ({ subjectaltname: `URI:${spiffeId('optimizer', name)}` });
  assert.deepEqual((auth(call(undefined, cert('certonly')), '/damon.v1.Controller/RequestAction') as { sessions: string[] }).sessions, ['*']);
  assert.deepEqual((auth(call(undefined, cert('stranger')), '/damon.v1.Controller/RequestAction') as { sessions: string[] }).sessions, []);
  assert.deepEqual((auth(call('opt', cert('reclaim')), '/damon.v1.Controller/RequestAction') as { sessions: string[] }).sessions, ['web-*', 'db1']);
  // Grants.
  const o = { role: 'optimizer' as const, sessions: ['web-*', 'db1'] };
  assert.ok(mayActOn(o, 'web-1') && mayActOn(o, 'web-') && mayActOn(o, 'db1'));
  assert.ok(!mayActOn(o, 'db10') && !mayActOn(o, 'xweb-1') && !mayActOn({ role: 'optimizer', sessions: [] }, 'web-1'));
  assert.ok(mayActOn({ role: 'optimizer', sessions: ['*'] }, 'anything'));
  assert.ok(mayActOn({ role: 'operator' }, 'anything'));
  assert.ok(!mayActOn({ role: 'reader' }, 'web-1'), 'readers never act');
  assert.ok(mayRead({ role: 'reader' }, 'x') && mayRead(undefined, 'x') && mayRead(o, 'db1') && !mayRead(o, 'db2'));
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
  bad({ identities: [{ role: 'root', name: 'x', token_sha256: hash }] }, /identities\[0\]\.role: one of operator, reader, optimizer, agent, controller/);
  bad({ identities: [{ role: 'reader', name: 'r' }] }, /identities\[0\]\.token_sha256: 64 lower-case hex digits/);
  bad({ identities: [{ role: 'reader', name: 'r', token_sha256: hash, sessions: ['s'] }] }, /sessions: only optimizers are granted sessions/);
  bad({ identities: [{ role: 'optimizer', name: 'o', token_sha256: hash, sessions: ['a*b'] }] }, /sessions: a list of session ids or "prefix\*" patterns/);
  bad({ identities: [{ role: 'optimizer', name: 'o', token_sha256: hash, sessions: 'web-*' }] }, /sessions: a list of session ids/);
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
    // Optimizers: a token each, their sessions in the identities file, kept when not given again.
    const third = ensureGrpcCredentials(root, { agents: [], readers: [], optimizers: [{ name: 'reclaim', sessions: ['web-*'] }] });
    assert.deepEqual(third, [l.optimizer('reclaim').token]);
    const optimizerToken = readFileSync(l.optimizer('reclaim').token, 'utf8').trim();
    assert.deepEqual(IdentityTable.readFile(l.controller.identities).byToken(optimizerToken)?.sessions, ['web-*']);
    ensureGrpcCredentials(root, { agents: [], readers: [] });
    assert.deepEqual(IdentityTable.readFile(l.controller.identities).byToken(optimizerToken)?.sessions, ['web-*'], 'kept');
    ensureGrpcCredentials(root, { agents: [], readers: [], optimizers: [{ name: 'reclaim', sessions: ['db1', 'db2'] }] });
    assert.deepEqual(IdentityTable.readFile(l.controller.identities).byToken(optimizerToken)?.sessions, ['db1', 'db2'], 'replaced');
    assert.throws(() => ensureGrpcCredentials(root, { agents: [], readers: [], optimizers: [{ name: 'reclaim', sessions: ['a b'] }] }), /optimizer "?reclaim"?: sessions must be/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
