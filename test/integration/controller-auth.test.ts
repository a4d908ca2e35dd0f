// Who may call the controller: one identity per role (operator, reader, each agent host),
// by token or by certificate, each refused what its role may not do with the right status;
// and what answers without a credential: the gRPC health check and server reflection
// (what grpcurl list/describe use), which reveal only the public schema and SERVING.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { channelCredentials, readTokenFile, tokenMetadata, type Credentials } from '../../common/auth.js';
import { ACCESS_POLICY, IdentityTable, spiffeId } from '../../common/grpc-access.js';
import { SERVICE_NAMES } from '../../common/grpc-server.js';
import { ensureGrpcCredentials } from '../../common/grpc-credentials.js';
import { AggregationRecord, SchemeAction, SessionState, type ControllerClient } from '../../gen/damon/v1/damon.js';
import { connectNats, jetStream } from '../../common/nats.js';
import { recordsSubject } from '../../common/subjects.js';
import { createTestCa, type TestCa } from './support/test-certs.js';
import { testCredentials, type TestCredentials } from './support/credentials.js';
import { startEnv, type ControllerEnv } from './support/controller-env.js';
import { collect, controllerClient, healthCheck, registryClient, rejectsWith, unary, waitFor } from './support/grpc-client.js';

const { UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE } = grpc.status;

const require = createRequire(import.meta.url);
const REFLECTION_PROTO = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto/grpc/reflection/v1/reflection.proto');

interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

/** Asks the server's reflection service what grpcurl asks for `list` and `describe SYMBOL`. */
async function reflect(address: string, creds: grpc.ChannelCredentials, symbol: string): Promise<ReflectionResponse[]> {
  const pkg = protoLoader.loadSync(REFLECTION_PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  const def = grpc.loadPackageDefinition(pkg) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (a: string, c: grpc.ChannelCredentials) => grpc.Client & { ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> } } } };
  };
  const client = new def.grpc.reflection.v1.ServerReflection(address, creds);
  try {
    const call = client.ServerReflectionInfo();
    const out: ReflectionResponse[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (r: ReflectionResponse) => out.push(r));
      call.on('end', resolve);
      call.on('error', reject);
    });
    call.write({ list_services: '' });
    call.write({ file_containing_symbol: symbol });
    call.end();
    await done;
    return out;
  } finally {
    client.close();
  }
}

const insecure = grpc.credentials.createInsecure();

const SESSION_REQ = { attrs: undefined, attrsText: '', schemesText: '', operations: '', syntheticWorkload: '' };

/** Every Controller write, as a reader would try it on session `id`. */
function writes(c: ControllerClient, id: string): Array<[string, () => Promise<unknown>]> {
  return [
    ['CreateSession', () => unary(c, 'createSession', { id: 'by-reader', ...SESSION_REQ, targets: [] })],
    ['SetAttributes', () => unary(c, 'setAttributes', { id, attrs: undefined, attrsText: '5000 100000 1000000 10 1000', schemesText: '', expectedRevision: 0n })],
    ['SetTargets', () => unary(c, 'setTargets', { id, targets: [{ host: 'host-a', pid: 6 }], operations: '', syntheticWorkload: '', expectedRevision: 0n })],
    ['TurnOn', () => unary(c, 'turnOn', { id })],
    ['TurnOff', () => unary(c, 'turnOff', { id })],
    ['DeleteSession', () => unary(c, 'deleteSession', { id })],
  ];
}

describe('controller identities by token', () => {
  let creds: TestCredentials;
  let env: ControllerEnv;
  before(async () => {
    creds = testCredentials({ agents: ['host-a', 'host-b'] });
    env = await startEnv({ creds });
    await env.agent('host-a'); // presents host-a's token, obeys only the controller's token for host-a
  });
  after(async () => {
    await env.close();
    creds.remove();
  });

  test('no token UNAUTHENTICATED, malformed UNAUTHENTICATED, unknown PERMISSION_DENIED; the operator is served', async () => {
    const bare = controllerClient(env.controller.address);
    try {
      await rejectsWith(unary(bare, 'listSessions', { pageSize: 0, pageToken: '' }), UNAUTHENTICATED, /no credential: present "authorization: Bearer <token>"/);
      const basic = new grpc.Metadata();
      basic.set('authorization', 'Basic dXNlcjpwYXNz');
      await rejectsWith(unary(bare, 'listSessions', { pageSize: 0, pageToken: '' }, basic), UNAUTHENTICATED, /malformed authorization metadata/);
      await rejectsWith(unary(bare, 'listSessions', { pageSize: 0, pageToken: '' }, tokenMetadata('guess')), PERMISSION_DENIED, /token not accepted/);
      const ok = await unary(bare, 'listSessions', { pageSize: 0, pageToken: '' }, tokenMetadata(creds.grpc.operator.token!));
      assert.deepEqual(ok.sessions, []);
    } finally {
      bare.close();
    }
  });

  test('a reader reads everything and changes nothing', async () => {
    const created = await unary(env.client, 'createSession', { id: 'watched', ...SESSION_REQ, targets: [{ host: 'host-a', pid: 5 }] });
    const reader = controllerClient(env.controller.address, creds.grpc.reader());
    try {
      assert.equal((await unary(reader, 'getSession', { id: 'watched' })).revision, created.revision);
      assert.ok((await unary(reader, 'listSessions', { pageSize: 0, pageToken: '' })).sessions.some((s) => s.id === 'watched'));
      assert.ok((await unary(reader, 'getAttributes', { id: 'watched' })).attrsText.length > 0);
      assert.deepEqual((await unary(reader, 'listAgents', {})).agents.map((a) => a.host), ['host-a']);
      const events = collect(reader.watchEvents({ sessionId: 'watched', replay: true }));
      for (const [method, call] of writes(reader, 'watched')) {
        await rejectsWith(call(), PERMISSION_DENIED, new RegExp(`reader "test-reader" may not call ${method}`));
      }
      const after = await unary(env.client, 'getSession', { id: 'watched' });
      assert.equal(after.revision, created.revision, 'a refused write changed the session');
      assert.equal(after.state, SessionState.SESSION_STATE_OFF);
      assert.equal((await unary(env.client, 'listSessions', { pageSize: 0, pageToken: '' })).sessions.some((s) => s.id === 'by-reader'), false);
      events.cancel();
      assert.equal(grpc.status[(await events.ended)?.code ?? grpc.status.OK], 'CANCELLED');
    } finally {
      reader.close();
      await unary(env.client, 'deleteSession', { id: 'watched' });
    }
  });

  test('clients cannot register; an agent speaks only for its host, at the addresses its credential names', async () => {
    const req = (host: string, address: string) => ({ host, address, operations: [], unavailable: [], instanceId: 'intruder' });
    const before = (await unary(env.client, 'listAgents', {})).agents;
    const bare = registryClient(env.controller.address);
    const operator = registryClient(env.controller.address, creds.grpc.operator);
    const reader = registryClient(env.controller.address, creds.grpc.reader());
    const hostB = registryClient(env.controller.address, creds.grpc.agent('host-b'));
    const hostA = registryClient(env.controller.address, creds.grpc.agent('host-a'));
    const hostAasClient = controllerClient(env.controller.address, creds.grpc.agent('host-a'));
    try {
      await rejectsWith(unary(bare, 'register', req('host-a', '127.0.0.1:9')), UNAUTHENTICATED);
      await rejectsWith(unary(operator, 'register', req('host-a', '127.0.0.1:9')), PERMISSION_DENIED, /operator may not call Register/);
      await rejectsWith(unary(reader, 'register', req('host-a', '127.0.0.1:9')), PERMISSION_DENIED, /reader "test-reader" may not call Register/);
      await rejectsWith(unary(hostB, 'register', req('host-a', '127.0.0.1:9')), PERMISSION_DENIED, /agent "host-b" may not speak for host "host-a"/);
      await rejectsWith(
        unary(hostB, 'heartbeat', { host: 'host-a', instanceId: before[0].instanceId, stateDigest: '', sessionCount: 0 }),
        PERMISSION_DENIED,
        /agent "host-b" may not speak for host "host-a"/,
      );
      await rejectsWith(unary(hostA, 'register', req('host-a', '10.9.9.9:7101')), PERMISSION_DENIED, /may not register address 10\.9\.9\.9:7101: its token names 127\.0\.0\.1, host-a/);
      await rejectsWith(unary(hostAasClient, 'listSessions', { pageSize: 0, pageToken: '' }), PERMISSION_DENIED, /agent "host-a" may not call ListSessions/);
      // The real host-a was never replaced: same address, same instance, still live.
      assert.deepEqual((await unary(env.client, 'listAgents', {})).agents.map((a) => [a.host, a.address, a.instanceId, a.live]),
        before.map((a) => [a.host, a.address, a.instanceId, true]));
    } finally {
      for (const c of [bare, operator, reader, hostB, hostA, hostAasClient]) c.close();
    }
  });

  test('WatchRecords delivers only records whose body matches their subject (an agent cannot speak for another host)', async () => {
    const nc = await connectNats({ servers: env.nats.url, nkeyFile: creds.agent('host-a') });
    const reader = controllerClient(env.controller.address, creds.grpc.reader());
    const record = (host: string, sequence: bigint) =>
      AggregationRecord.encode({
        sessionId: 'w', host, pid: 7, startTimeNs: 1n, endTimeNs: 2n, maxNrAccesses: 20, regions: [], operations: 'page_idle', sequence, agentInstance: 'i', droppedBefore: 0n, packed: undefined,
      }).finish();
    try {
      await unary(env.client, 'createSession', { id: 'w', ...SESSION_REQ, targets: [] });
      const js = jetStream(nc);
      // Both on host-a's own subject, which its NATS permissions allow; the second claims host-b.
      await js.publish(recordsSubject('w', 'host-a', 7), record('host-b', 1n));
      await js.publish(recordsSubject('w', 'host-a', 7), record('host-a', 2n));
      const watch = collect(reader.watchRecords({ sessionId: 'w', host: '', replay: true }));
      await waitFor('the genuine record', () => watch.items.length >= 1);
      await new Promise((r) => setTimeout(r, 300));
      watch.cancel();
      assert.deepEqual(watch.items.map((r) => [r.host, r.sequence]), [['host-a', 2n]]);
      assert.ok(env.logs.some((l) => /skipping a message on damon\.records\.w\.host-a\.7 .*the record claims damon\.records\.w\.host-b\.7/.test(l)));
    } finally {
      reader.close();
      await nc.close();
    }
  });

  test('the controller shows each agent the token derived for its host', async () => {
    await unary(env.client, 'createSession', { id: 'tok', ...SESSION_REQ, targets: [{ host: 'host-a', pid: 5 }] });
    const on = await unary(env.client, 'turnOn', { id: 'tok' });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    assert.equal(env.agents[0].applies('tok').length, 1);
    await unary(env.client, 'turnOff', { id: 'tok' });
  });

  test('a reader added by the credentials command is accepted without a restart', async () => {
    ensureGrpcCredentials(creds.layout.root, { agents: [], readers: ['late'] });
    const late = controllerClient(env.controller.address, { token: readTokenFile(creds.layout.reader('late').token) });
    try {
      await waitFor('the new reader accepted', async () => (await unary(late, 'listSessions', { pageSize: 0, pageToken: '' })).sessions, 8000, 200);
      await rejectsWith(unary(late, 'turnOn', { id: 'tok' }), PERMISSION_DENIED, /reader "late" may not call TurnOn/);
    } finally {
      late.close();
    }
  });

  test('without a credential: health and reflection answer (schema and SERVING only), every damon.v1 method refuses', async () => {
    assert.equal(await healthCheck(env.controller.address, insecure), 'SERVING');
    assert.equal(await healthCheck(env.controller.address, insecure, 'damon.v1.Controller'), 'SERVING');
    assert.equal(await healthCheck(env.controller.address, insecure, 'damon.v1.Registry'), 'SERVING');
    const res = await reflect(env.controller.address, insecure, 'damon.v1.Controller');
    const services = res[0].list_services_response!.service.map((s) => s.name).sort();
    assert.deepEqual(services, ['damon.v1.Controller', 'damon.v1.Registry', 'grpc.health.v1.Health']);
    const files = res[1].file_descriptor_response!.file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
    const damon = files.find((f) => f.package === 'damon.v1')!;
    const controller = damon.service.find((s) => s.name === 'Controller')!;
    assert.ok(controller.method.some((m) => m.name === 'TurnOn' && m.inputType === '.damon.v1.TurnOnRequest' && m.outputType === '.damon.v1.Session'));
    assert.ok(controller.method.some((m) => m.name === 'WatchRecords' && m.serverStreaming));
    assert.ok(damon.messageType.some((m) => m.name === 'AggregationRecord'));
    // Every Controller and Registry method, called bare through a generic client.
    const methods = [...ACCESS_POLICY.keys()].filter((m) => !m.startsWith(`/${SERVICE_NAMES.agent}/`));
    const generic = new grpc.Client(env.controller.address, insecure);
    try {
      for (const path of methods) {
        const streaming = path.endsWith('/WatchRecords') || path.endsWith('/WatchEvents');
        const err = await new Promise<grpc.ServiceError>((resolve) => {
          const ser = (b: Buffer) => b;
          if (streaming) {
            const call = generic.makeServerStreamRequest(path, ser, ser, Buffer.alloc(0));
            call.on('error', resolve);
            call.on('data', () => resolve(Object.assign(new Error('data'), { code: grpc.status.OK }) as grpc.ServiceError));
          } else {
            generic.makeUnaryRequest(path, ser, ser, Buffer.alloc(0), (e) => resolve(e ?? (Object.assign(new Error('ok'), { code: grpc.status.OK }) as grpc.ServiceError)));
          }
        });
        assert.equal(grpc.status[err.code], 'UNAUTHENTICATED', `${path} answered ${grpc.status[err.code]} without a credential`);
      }
    } finally {
      generic.close();
    }
  });
});

describe('controller mutual TLS', () => {
  let ca: TestCa;
  let env: ControllerEnv;
  let clientCreds: Credentials;
  before(async () => {
    ca = createTestCa();
    clientCreds = { tls: ca.issue('op', { id: spiffeId('operator') }) };
    env = await startEnv({ tls: ca.issue('controller', { id: spiffeId('controller') }), clientCredentials: clientCreds });
    await env.agent('host-a', { credentials: { tls: ca.issue('host-a', { id: spiffeId('agent', 'host-a') }) } });
  });
  after(async () => {
    await env.close();
    ca.remove();
  });

  test('an operator certificate is served; the controller reaches agents over mTLS with its own', async () => {
    await unary(env.client, 'createSession', { id: 'tls', ...SESSION_REQ, targets: [{ host: 'host-a', pid: 5 }] });
    const on = await unary(env.client, 'turnOn', { id: 'tls' });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    assert.equal(env.agents[0].applies('tls').length, 1);
    assert.equal(await healthCheck(env.controller.address, channelCredentials(clientCreds)), 'SERVING');
    await unary(env.client, 'turnOff', { id: 'tls' });
  });

  test('certificates: roles, hosts and addresses come from their SANs', async () => {
    const req = (host: string, address: string) => ({ host, address, operations: [], unavailable: [], instanceId: 'intruder' });
    const reader = controllerClient(env.controller.address, { tls: ca.issue('r', { id: spiffeId('reader', 'dash') }) });
    const hostB = registryClient(env.controller.address, { tls: ca.issue('host-b', { id: spiffeId('agent', 'host-b') }) });
    const elsewhere = registryClient(env.controller.address, { tls: ca.issue('host-a', { id: spiffeId('agent', 'host-a'), dns: ['host-a.example'], ips: ['10.1.2.3'] }) });
    const anonymous = controllerClient(env.controller.address, { tls: ca.issue('operator') });
    try {
      await rejectsWith(unary(reader, 'turnOn', { id: 'tls' }), PERMISSION_DENIED, /reader "dash" may not call TurnOn/);
      assert.ok((await unary(reader, 'listSessions', { pageSize: 0, pageToken: '' })).sessions.length > 0);
      await rejectsWith(unary(hostB, 'register', req('host-a', '127.0.0.1:9')), PERMISSION_DENIED, /agent "host-b" may not speak for host "host-a"/);
      await rejectsWith(unary(elsewhere, 'register', req('host-a', '127.0.0.1:9')), PERMISSION_DENIED, /may not register address 127\.0\.0\.1:9: its certificate names host-a\.example, 10\.1\.2\.3/);
      await rejectsWith(unary(anonymous, 'listSessions', { pageSize: 0, pageToken: '' }), PERMISSION_DENIED, /names no damon-fleet identity/);
    } finally {
      for (const c of [reader, hostB, elsewhere, anonymous]) c.close();
    }
  });

  test('clients without a certificate, or with one from another CA, are refused', async () => {
    const noCert = new (await import('../../gen/damon/v1/damon.js')).ControllerClient(env.controller.address, grpc.credentials.createSsl(ca.caPem));
    const other = createTestCa('other-ca');
    const foreignCert = controllerClient(env.controller.address, { tls: { ...other.issue('op', { id: spiffeId('operator') }), ca: ca.caPem } });
    other.remove();
    const plain = controllerClient(env.controller.address);
    try {
      await rejectsWith(unary(noCert, 'listSessions', { pageSize: 0, pageToken: '' }), UNAVAILABLE);
      await rejectsWith(unary(foreignCert, 'listSessions', { pageSize: 0, pageToken: '' }), UNAVAILABLE);
      await rejectsWith(unary(plain, 'listSessions', { pageSize: 0, pageToken: '' }), UNAVAILABLE);
    } finally {
      noCert.close();
      foreignCert.close();
      plain.close();
    }
  });
});

describe('an optimizer by certificate', () => {
  let ca: TestCa;
  let env: ControllerEnv;
  before(async () => {
    ca = createTestCa();
    env = await startEnv({
      tls: ca.issue('controller', { id: spiffeId('controller') }),
      clientCredentials: { tls: ca.issue('op', { id: spiffeId('operator') }) },
      // Its certificate names it; the identities file grants it sessions (no token: none opens it).
      identities: new IdentityTable([{ role: 'optimizer', name: 'reclaim', sessions: ['mine-*'] }]),
    });
    await env.agent('host-a', { credentials: { tls: ca.issue('host-a', { id: spiffeId('agent', 'host-a') }) } });
    for (const id of ['mine-1', 'theirs']) {
      await unary(env.client, 'createSession', { id, ...SESSION_REQ, targets: [{ host: 'host-a', pid: 5 }] });
      await unary(env.client, 'turnOn', { id });
    }
  });
  after(async () => {
    await env.close();
    ca.remove();
  });

  test('acts on the sessions the identities file grants its name, and reads only those', async () => {
    const opt = controllerClient(env.controller.address, { tls: ca.issue('opt', { id: spiffeId('optimizer', 'reclaim') }) });
    const stranger = controllerClient(env.controller.address, { tls: ca.issue('opt2', { id: spiffeId('optimizer', 'stranger') }) });
    const action = (sessionId: string) => ({
      sessionId, host: 'host-a', pid: 5, start: 0x1000n, end: 0x3000n, action: SchemeAction.SCHEME_ACTION_COLD, dryRun: false,
    });
    try {
      const r = await unary(opt, 'requestAction', action('mine-1'));
      assert.equal(r.bytesApplied, 0x2000n);
      const forwarded = env.agents[0].calls.filter((c) => c.method === 'action');
      assert.equal(forwarded.length, 1);
      assert.equal(forwarded[0].method === 'action' && forwarded[0].request.requestedBy, 'optimizer "reclaim"');
      await rejectsWith(unary(opt, 'requestAction', action('theirs')), PERMISSION_DENIED, /optimizer "reclaim" may not act on session "theirs"/);
      await rejectsWith(unary(opt, 'getSession', { id: 'theirs' }), PERMISSION_DENIED, /may not read session "theirs"/);
      assert.deepEqual((await unary(opt, 'listSessions', { pageSize: 0, pageToken: '' })).sessions.map((s) => s.id), ['mine-1']);
      await rejectsWith(unary(opt, 'turnOff', { id: 'mine-1' }), PERMISSION_DENIED, /optimizer "reclaim" may not call TurnOff/);
      // A certificate naming an optimizer the identities file does not grant anything.
      await rejectsWith(unary(stranger, 'requestAction', action('mine-1')), PERMISSION_DENIED, /optimizer "stranger" may not act on session "mine-1"/);
      assert.equal(env.agents[0].calls.filter((c) => c.method === 'action').length, 1, 'nothing refused reached the agent');
    } finally {
      opt.close();
      stranger.close();
    }
  });
});
