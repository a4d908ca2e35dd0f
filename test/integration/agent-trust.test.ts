// Who may drive the agent: the cluster token, mutual TLS (narrowed to the controller's
// certificate name), and no authentication only when asked for, on loopback.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { startAgent, type AgentHandle, type AgentOptions } from '../../agent/daemon/main.js';
import { TrustError } from '../../agent/daemon/trust.js';
import { AgentClient } from '../../gen/damon/v1/damon.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { rejectsWith, unary } from './support/grpc-client.js';
import { agentClient, agentTestLogger, syntheticSpec, tempDir } from './support/agent-env.js';
import { createTestCa, type TestCa } from './support/test-certs.js';

const TOKEN = 'agent-trust-test-token';

let nats: NatsServer;
let data: ReturnType<typeof tempDir>;
let ca: TestCa;
const agents: AgentHandle[] = [];

function start(o: Partial<AgentOptions>): Promise<AgentHandle> {
  return startAgent({
    host: 'trust-host',
    listen: '127.0.0.1:0',
    nats: nats.url,
    natsNkeyFile: nats.credentials.agent('trust-host'),
    dataDir: data.path,
    credentials: {},
    log: agentTestLogger(),
    ...o,
  }).then((a) => {
    agents.push(a);
    return a;
  });
}

before(async () => {
  nats = await startNatsServer({ agents: ['trust-host'] });
  data = tempDir('damon-agent-trust-');
  ca = createTestCa();
});

after(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await nats?.stop();
  data?.remove();
  ca?.remove();
});

test('with a token: callers without it are UNAUTHENTICATED, with another one PERMISSION_DENIED', async () => {
  const agent = await start({ credentials: { token: TOKEN } });
  const none = agentClient(agent.address, {});
  const wrong = agentClient(agent.address, { token: 'not-the-token' });
  const right = agentClient(agent.address, { token: TOKEN });
  try {
    await rejectsWith(unary(none, 'getState', {}), grpc.status.UNAUTHENTICATED, /missing "authorization: Bearer <token>"/);
    await rejectsWith(unary(none, 'applySession', { spec: syntheticSpec('t-1', [process.pid]) }), grpc.status.UNAUTHENTICATED);
    await rejectsWith(unary(none, 'stopSession', { sessionId: 't-1' }), grpc.status.UNAUTHENTICATED);
    await rejectsWith(unary(wrong, 'getState', {}), grpc.status.PERMISSION_DENIED, /token not accepted/);
    await rejectsWith(unary(wrong, 'applySession', { spec: syntheticSpec('t-1', [process.pid]) }), grpc.status.PERMISSION_DENIED);
    // Nothing was started by the refused calls.
    const st = await unary(right, 'getState', {});
    assert.equal(st.host, 'trust-host');
    assert.equal(st.instanceId, agent.instanceId);
    assert.deepEqual(st.sessions, []);
  } finally {
    none.close();
    wrong.close();
    right.close();
  }
});

test('with mutual TLS and --controller-identity: only the controller certificate is obeyed', async () => {
  const agentTls = ca.issue('agent-1');
  const agent = await start({ credentials: { tls: agentTls }, controllerIdentity: 'controller' });
  // Certificates name localhost (TLS server names are host names, not IP addresses).
  const byName = { 'grpc.ssl_target_name_override': 'localhost' };
  const controller = agentClient(agent.address, { tls: ca.issue('controller') }, byName);
  const otherAgent = agentClient(agent.address, { tls: ca.issue('agent-2') }, byName);
  const noCert = new AgentClient(agent.address, grpc.credentials.createSsl(ca.caPem), byName);
  const rogue = createTestCa('rogue-ca');
  const rogueClient = agentClient(agent.address, { tls: { ...rogue.issue('controller'), ca: ca.caPem } }, byName);
  try {
    const st = await unary(controller, 'getState', {});
    assert.equal(st.instanceId, agent.instanceId);
    await rejectsWith(
      unary(otherAgent, 'applySession', { spec: syntheticSpec('t-2', [process.pid]) }),
      grpc.status.PERMISSION_DENIED,
      /client certificate \(.*agent-2.*\) is not the controller's \(controller\)/,
    );
    // The handshake itself refuses a client without a certificate, or with one of another CA.
    await rejectsWith(unary(noCert, 'getState', {}), grpc.status.UNAVAILABLE);
    await rejectsWith(unary(rogueClient, 'getState', {}), grpc.status.UNAVAILABLE);
    assert.deepEqual((await unary(controller, 'getState', {})).sessions, []);
  } finally {
    controller.close();
    otherAgent.close();
    noCert.close();
    rogueClient.close();
    rogue.remove();
  }
});

test('refuses to start without credentials unless --insecure, and --insecure only on loopback', async () => {
  await assert.rejects(start({ credentials: {} }), (err: unknown) => {
    assert.ok(err instanceof TrustError);
    assert.match((err as Error).message, /refusing to start without credentials: give --token-file/);
    return true;
  });
  await assert.rejects(
    start({ credentials: {}, insecure: true, listen: '0.0.0.0:0' }),
    /--insecure is allowed on a loopback address only .*not --listen 0\.0\.0\.0:0/,
  );
  await assert.rejects(start({ credentials: { token: TOKEN }, insecure: true }), /--insecure contradicts/);
  await assert.rejects(start({ credentials: { token: TOKEN }, controllerIdentity: 'c' }), /--controller-identity needs mutual TLS/);

  const agent = await start({ credentials: {}, insecure: true, listen: '127.0.0.1:0' });
  const anyone = agentClient(agent.address, {});
  try {
    assert.equal((await unary(anyone, 'getState', {})).host, 'trust-host');
  } finally {
    anyone.close();
  }
});
