// Who may call the controller (tokens, mutual TLS), and what works without the .proto:
// server reflection (what grpcurl list/describe use) and the gRPC health check.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { service as healthService } from 'grpc-health-check';
import { channelCredentials, readTls, tokenMetadata, type ClusterCredentials } from '../../common/auth.js';
import { SessionState } from '../../gen/damon/v1/damon.js';
import { makePki, type TestPki } from './support/certs.js';
import { startEnv, type ControllerEnv } from './support/controller-env.js';
import { controllerClient, registryClient, rejectsWith, unary } from './support/grpc-client.js';

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

/** grpc.health.v1.Health/Check for `service` ('' = the server). */
async function healthCheck(address: string, creds: grpc.ChannelCredentials, service = ''): Promise<string> {
  const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
  const client = new Client(address, creds) as unknown as grpc.Client & {
    check(req: { service: string }, cb: (e: grpc.ServiceError | null, r: { status: string }) => void): void;
  };
  try {
    return await new Promise((resolve, reject) => client.check({ service }, (e, r) => (e ? reject(e) : resolve(r.status))));
  } finally {
    client.close();
  }
}

const insecure = grpc.credentials.createInsecure();

describe('controller token auth', () => {
  let env: ControllerEnv;
  before(async () => {
    env = await startEnv({
      credentials: { token: 'cluster-secret' },
      clientToken: 'client-secret',
      clientCredentials: { token: 'client-secret' },
    });
    await env.agent('host-a'); // presents the cluster token, and demands it from the controller
  });
  after(async () => {
    await env.close();
  });

  test('Controller calls: missing token UNAUTHENTICATED, malformed UNAUTHENTICATED, wrong PERMISSION_DENIED', async () => {
    const bare = controllerClient(env.controller.address);
    try {
      await rejectsWith(unary(bare, 'listSessions', {}), UNAUTHENTICATED, /missing "authorization: Bearer <token>" metadata/);
      const basic = new grpc.Metadata();
      basic.set('authorization', 'Basic dXNlcjpwYXNz');
      await rejectsWith(unary(bare, 'listSessions', {}, basic), UNAUTHENTICATED, /malformed authorization metadata/);
      await rejectsWith(unary(bare, 'listSessions', {}, tokenMetadata('guess')), PERMISSION_DENIED, /token not accepted/);
      // The cluster token is the agents'; Controller clients have their own.
      await rejectsWith(unary(bare, 'listSessions', {}, tokenMetadata('cluster-secret')), PERMISSION_DENIED);
      const ok = await unary(bare, 'listSessions', {}, tokenMetadata('client-secret'));
      assert.deepEqual(ok.sessions, []);
    } finally {
      bare.close();
    }
  });

  test('Registry calls need the cluster token', async () => {
    const req = { host: 'intruder', address: '127.0.0.1:9', operations: [], unavailable: [], instanceId: 'x' };
    const bare = registryClient(env.controller.address);
    const withClientToken = registryClient(env.controller.address, { token: 'client-secret' });
    try {
      await rejectsWith(unary(bare, 'register', req), UNAUTHENTICATED);
      await rejectsWith(unary(withClientToken, 'register', req), PERMISSION_DENIED);
      const agents = (await unary(env.client, 'listAgents', {})).agents.map((a) => a.host);
      assert.deepEqual(agents, ['host-a']);
    } finally {
      bare.close();
      withClientToken.close();
    }
  });

  test('the controller calls agents with the cluster token', async () => {
    const s = await unary(env.client, 'createSession', {
      id: 'tok', attrs: undefined, attrsText: '', targets: [{ host: 'host-a', pid: 5 }], operations: '', syntheticWorkload: '',
    });
    const on = await unary(env.client, 'turnOn', { id: s.id });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    assert.equal(env.agents[0].applies('tok').length, 1);
    await unary(env.client, 'turnOff', { id: s.id });
  });

  test('health and reflection answer without a token (as grpcurl list/describe need)', async () => {
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
  });
});

describe('controller mutual TLS', () => {
  let pki: TestPki;
  let env: ControllerEnv;
  let clientCreds: ClusterCredentials;
  before(async () => {
    pki = makePki();
    clientCreds = { tls: readTls(pki.issue('operator')) };
    env = await startEnv({ credentials: { tls: readTls(pki.issue('controller')) }, clientCredentials: clientCreds });
    await env.agent('host-a', { credentials: { tls: readTls(pki.issue('host-a')) } });
  });
  after(async () => {
    await env.close();
    pki.remove();
  });

  test('a client with a certificate from the cluster CA is served; the controller reaches agents over mTLS', async () => {
    await unary(env.client, 'createSession', {
      id: 'tls', attrs: undefined, attrsText: '', targets: [{ host: 'host-a', pid: 5 }], operations: '', syntheticWorkload: '',
    });
    const on = await unary(env.client, 'turnOn', { id: 'tls' });
    assert.equal(on.state, SessionState.SESSION_STATE_ON);
    assert.equal(env.agents[0].applies('tls').length, 1);
    assert.equal(await healthCheck(env.controller.address, channelCredentials(clientCreds)), 'SERVING');
  });

  test('clients without a certificate, or with one from another CA, are refused', async () => {
    const ca = readTls(pki.issue('unused')).ca;
    const noCert = new (await import('../../gen/damon/v1/damon.js')).ControllerClient(env.controller.address, grpc.credentials.createSsl(ca));
    const other = makePki();
    const foreign = readTls(other.issue('operator'));
    other.remove();
    const foreignCert = controllerClient(env.controller.address, { tls: { ...foreign, ca } });
    const plain = controllerClient(env.controller.address);
    try {
      await rejectsWith(unary(noCert, 'listSessions', {}), UNAVAILABLE);
      await rejectsWith(unary(foreignCert, 'listSessions', {}), UNAVAILABLE);
      await rejectsWith(unary(plain, 'listSessions', {}), UNAVAILABLE);
    } finally {
      noCert.close();
      foreignCert.close();
      plain.close();
    }
  });
});
