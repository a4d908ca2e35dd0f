// Who may drive the agent: only the controller, by the token it derives for this host or
// by its certificate (spiffe://damon-fleet/controller); no authentication only when asked
// for, on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { startAgent, type AgentHandle, type AgentOptions } from '../../agent/daemon/main.js';
import { TrustError } from '../../common/trust.js';
import { spiffeId } from '../../common/grpc-access.js';
import { tokenMetadata } from '../../common/auth.js';
import { testCredentials } from './support/credentials.js';
import { AgentClient } from '../../gen/damon/v1/damon.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { rejectsWith, unary } from './support/grpc-client.js';
import { agentClient, agentTestLogger, syntheticSpec, tempDir } from './support/agent-env.js';
import { createTestCa, type TestCa } from './support/test-certs.js';

const HOST = 'trust-host';
const creds = testCredentials({ agents: [HOST, 'other-host'] });

let nats: NatsServer;
let data: ReturnType<typeof tempDir>;
let ca: TestCa;
const agents: AgentHandle[] = [];

function start(o: Partial<AgentOptions>): Promise<AgentHandle> {
  return startAgent({
    host: HOST,
    listen: '127.0.0.1:0',
    nats: nats.url,
    natsNkeyFile: nats.credentials.agent('trust-host'),
    dataDir: data.path,
    log: agentTestLogger(),
    ...o,
  }).then((a) => {
    agents.push(a);
    return a;
  });
}

before(async () => {
  nats = await startNatsServer({ credentials: creds });
  data = tempDir('damon-agent-trust-');
  ca = createTestCa();
});

after(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await nats?.stop();
  data?.remove();
  ca?.remove();
  creds.remove();
});

test('with tokens: only the controller\'s token for this host is obeyed', async () => {
  const agent = await start(creds.grpc.agentAccess(HOST));
  const none = agentClient(agent.address, {});
  const wrong = agentClient(agent.address, { token: 'not-the-token' });
  const forOtherHost = agentClient(agent.address, creds.grpc.controllerToAgent('other-host'));
  const ownToken = agentClient(agent.address, creds.grpc.agent(HOST));
  const operator = agentClient(agent.address, creds.grpc.operator);
  const right = agentClient(agent.address, creds.grpc.controllerToAgent(HOST));
  const spec = syntheticSpec('t-1', [process.pid]);
  try {
    await rejectsWith(unary(none, 'getState', { pageToken: '', epoch: 0n }), grpc.status.UNAUTHENTICATED, /no credential: present "authorization: Bearer <token>"/);
    await rejectsWith(unary(none, 'applySession', { epoch: 0n, spec }), grpc.status.UNAUTHENTICATED);
    await rejectsWith(unary(none, 'stopSession', { epoch: 0n, sessionId: 't-1' }), grpc.status.UNAUTHENTICATED);
    const basic = new grpc.Metadata();
    basic.set('authorization', 'Basic dXNlcjpwYXNz');
    await rejectsWith(unary(none, 'getState', { pageToken: '', epoch: 0n }, basic), grpc.status.UNAUTHENTICATED, /malformed authorization metadata/);
    await rejectsWith(unary(wrong, 'getState', { pageToken: '', epoch: 0n }), grpc.status.PERMISSION_DENIED, /token not accepted/);
    // The token the controller shows another host does not open this one: an agent that
    // leaks what it was shown exposes itself only.
    await rejectsWith(unary(forOtherHost, 'applySession', { epoch: 0n, spec }), grpc.status.PERMISSION_DENIED, /token not accepted/);
    // Nor do the agent's own token (meant for the controller) and an operator's.
    await rejectsWith(unary(ownToken, 'applySession', { epoch: 0n, spec }), grpc.status.PERMISSION_DENIED, /token not accepted/);
    await rejectsWith(unary(operator, 'applySession', { epoch: 0n, spec }), grpc.status.PERMISSION_DENIED, /token not accepted/);
    // Nothing was started by the refused calls.
    const st = await unary(right, 'getState', { pageToken: '', epoch: 0n });
    assert.equal(st.host, HOST);
    assert.equal(st.instanceId, agent.instanceId);
    assert.deepEqual(st.sessions, []);
    // The right token in a call's metadata works without the client interceptor too.
    assert.equal((await unary(none, 'getState', { pageToken: '', epoch: 0n }, tokenMetadata(creds.grpc.controllerToAgent(HOST).token!))).host, HOST);
  } finally {
    for (const c of [none, wrong, forOtherHost, ownToken, operator, right]) c.close();
  }
});

test('with mutual TLS: only the controller\'s certificate is obeyed', async () => {
  const agent = await start({ tls: ca.issue('agent-1', { id: spiffeId('agent', HOST) }) });
  // Certificates name localhost (TLS server names are host names, not IP addresses).
  const byName = { 'grpc.ssl_target_name_override': 'localhost' };
  const controller = agentClient(agent.address, { tls: ca.issue('controller', { id: spiffeId('controller') }) }, byName);
  const otherAgent = agentClient(agent.address, { tls: ca.issue('agent-2', { id: spiffeId('agent', 'other-host') }) }, byName);
  const operator = agentClient(agent.address, { tls: ca.issue('op', { id: spiffeId('operator') }) }, byName);
  const anonymous = agentClient(agent.address, { tls: ca.issue('controller') }, byName);
  const noCert = new AgentClient(agent.address, grpc.credentials.createSsl(ca.caPem), byName);
  const rogue = createTestCa('rogue-ca');
  const rogueClient = agentClient(agent.address, { tls: { ...rogue.issue('controller', { id: spiffeId('controller') }), ca: ca.caPem } }, byName);
  try {
    const st = await unary(controller, 'getState', { pageToken: '', epoch: 0n });
    assert.equal(st.instanceId, agent.instanceId);
    const spec = syntheticSpec('t-2', [process.pid]);
    await rejectsWith(unary(otherAgent, 'applySession', { epoch: 0n, spec }), grpc.status.PERMISSION_DENIED, /agent "other-host" may not call ApplySession/);
    await rejectsWith(unary(operator, 'applySession', { epoch: 0n, spec }), grpc.status.PERMISSION_DENIED, /operator may not call ApplySession/);
    // A certificate of the CA that names no identity (its CN says "controller") is not enough.
    await rejectsWith(unary(anonymous, 'getState', { pageToken: '', epoch: 0n }), grpc.status.PERMISSION_DENIED, /names no damon-fleet identity/);
    // The handshake itself refuses a client without a certificate, or with one of another CA.
    await rejectsWith(unary(noCert, 'getState', { pageToken: '', epoch: 0n }), grpc.status.UNAVAILABLE);
    await rejectsWith(unary(rogueClient, 'getState', { pageToken: '', epoch: 0n }), grpc.status.UNAVAILABLE);
    assert.deepEqual((await unary(controller, 'getState', { pageToken: '', epoch: 0n })).sessions, []);
  } finally {
    for (const c of [controller, otherAgent, operator, anonymous, noCert, rogueClient]) c.close();
    rogue.remove();
  }
});

test('refuses to start without credentials unless --insecure, and --insecure only on loopback', async () => {
  await assert.rejects(start({}), (err: unknown) => {
    assert.ok(err instanceof TrustError);
    assert.match((err as Error).message, /refusing to start without a way to check callers: give --identities FILE/);
    return true;
  });
  await assert.rejects(
    start({ identities: creds.grpc.agentAccess(HOST).identities }),
    /refusing to start without a credential to present: give --token-file FILE/,
  );
  await assert.rejects(
    start({ insecure: true, listen: '0.0.0.0:0' }),
    /--insecure is allowed on a loopback address only .*not --listen 0\.0\.0\.0:0/,
  );
  await assert.rejects(start({ ...creds.grpc.agentAccess(HOST), insecure: true }), /--insecure contradicts/);
  await assert.rejects(start({ ...creds.grpc.agentAccess(HOST), identities: '/nonexistent/identities.json' }), /identities file \/nonexistent\/identities\.json: ENOENT/);

  const agent = await start({ insecure: true, listen: '127.0.0.1:0' });
  const anyone = agentClient(agent.address, {});
  try {
    assert.equal((await unary(anyone, 'getState', { pageToken: '', epoch: 0n })).host, HOST);
  } finally {
    anyone.close();
  }
});
