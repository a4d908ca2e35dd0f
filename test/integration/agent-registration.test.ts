// The agent's side of the Registry, against a stand-in Registry the test steers:
// registration, heartbeats with the observed sessions, an early heartbeat when a target
// exits, registering again when the controller no longer knows it, and carrying on
// (logging once) while the controller is unreachable.
import { observedDigest } from '../../common/observed-digest.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { SERVICE_NAMES, bindServer, createServer, implement, shutdownServer } from '../../common/grpc-server.js';
import { connectNats, ensureStreams, jetStream } from '../../common/nats.js';
import {
  RegistryService,
  TargetState,
  type AgentClient,
  type HeartbeatRequest,
  type RegisterRequest,
} from '../../gen/damon/v1/damon.js';
import { startAgent, type AgentHandle } from '../../agent/daemon/main.js';
import { createLogger } from '../../common/log.js';
import { freePort, startNatsServer, type NatsServer } from './support/nats-server.js';
import { unary, waitFor } from './support/grpc-client.js';
import { testCredentials } from './support/credentials.js';
import { IdentityTable, accessAuthorizer } from '../../common/grpc-access.js';
import { agentClient, killTarget, spawnTarget, syntheticSpec, tempDir } from './support/agent-env.js';

const HOST = 'node-2';
const creds = testCredentials({ agents: [HOST] });

/** A Registry that records calls; `known` decides what heartbeats are told. */
class StandInRegistry {
  registers: RegisterRequest[] = [];
  heartbeats: { req: HeartbeatRequest; at: number }[] = [];
  known = new Set<string>();
  heartbeatIntervalMs = 1500n;
  private server: grpc.Server | undefined;

  constructor(readonly port: number) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const { server } = createServer({
      services: [
        {
          name: SERVICE_NAMES.registry,
          definition: RegistryService,
          implementation: implement(
            RegistryService,
            {
              register: async (req) => {
                this.registers.push(req);
                this.known.add(req.instanceId);
                return { leaseTtlMs: this.heartbeatIntervalMs * 3n, heartbeatIntervalMs: this.heartbeatIntervalMs, epoch: 0n };
              },
              heartbeat: async (req) => {
                this.heartbeats.push({ req, at: performance.now() });
                return { known: this.known.has(req.instanceId), stopSessions: [], epoch: 0n };
              },
            },
            // Checks the agent's credential as the real controller does.
            { authorize: accessAuthorizer({ identities: IdentityTable.readFile(creds.layout.controller.identities) }) },
          ),
        },
      ],
    });
    await bindServer(server, this.address, grpc.ServerCredentials.createInsecure());
    this.server = server;
  }

  async stop(): Promise<void> {
    if (this.server) await shutdownServer(this.server, 100);
    this.server = undefined;
  }
}

let nats: NatsServer;
let registry: StandInRegistry;
let agent: AgentHandle;
let client: AgentClient;
let data: ReturnType<typeof tempDir>;
const logs: string[] = [];
const targets: ReturnType<typeof spawnTarget>[] = [];

before(async () => {
  nats = await startNatsServer({ credentials: creds });
  const nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.operator });
  await ensureStreams(jetStream(nc));
  await nc.close();
  registry = new StandInRegistry(await freePort());
  await registry.start();
  data = tempDir('damon-agent-reg-');
  agent = await startAgent({
    host: HOST,
    listen: '127.0.0.1:0',
    controller: registry.address,
    nats: nats.url,
    natsNkeyFile: nats.credentials.agent(HOST),
    dataDir: data.path,
    ...creds.grpc.agentAccess(HOST),
    processPollMs: 50,
    log: createLogger('agent', (line) => {
      logs.push(line);
      if (process.env.DAMON_TEST_LOG === '1') process.stderr.write(line + '\n');
    }),
  });
  client = agentClient(agent.address, creds.grpc.controllerToAgent(HOST));
});

after(async () => {
  client?.close();
  await agent?.stop();
  await Promise.all(targets.map(killTarget));
  await registry?.stop();
  await nats?.stop();
  data?.remove();
  creds.remove();
});

test('registers what it is and heartbeats its observed sessions', async () => {
  const reg = await waitFor('a registration', () => registry.registers[0]);
  assert.equal(reg.host, HOST);
  assert.equal(reg.address, agent.address);
  assert.equal(reg.instanceId, agent.instanceId);
  assert.deepEqual(reg.operations, ['synthetic']);
  assert.ok(reg.unavailable.some((u) => u.startsWith('page_idle: ')));
  // A heartbeat follows the registration at once.
  await waitFor('a first heartbeat', () => registry.heartbeats.length >= 1);
  assert.equal(agent.registered(), true);

  const t = spawnTarget();
  targets.push(t);
  await unary(client, 'applySession', { epoch: 0n, spec: syntheticSpec('r-hb', [t.pid]) });
  // A target exit is reported at once, not at the next heartbeat: kill it just after a
  // regular heartbeat, so the next regular one is 1.5 s away.
  const n = registry.heartbeats.length;
  await waitFor('a regular heartbeat', () => registry.heartbeats.length > n, 3000, 5);
  const digestBefore = registry.heartbeats.at(-1)!.req.stateDigest;
  await killTarget(t);
  const killedAt = performance.now();
  // The heartbeat carries a digest, not the state: a new digest, then the state behind it.
  const exited = await waitFor(
    'a heartbeat with a new state digest',
    () => registry.heartbeats.find((h) => h.at > killedAt && h.req.stateDigest !== digestBefore),
    3000,
    5,
  );
  assert.equal(exited.req.host, HOST);
  assert.equal(exited.req.instanceId, agent.instanceId);
  const state = await unary(client, 'getState', { pageToken: '', epoch: 0n });
  const target = state.sessions.find((s) => s.sessionId === 'r-hb')!.targets[0];
  assert.equal(target.state, TargetState.TARGET_STATE_EXITED);
  assert.match(target.message, /process exited/);
  assert.equal(observedDigest(state.sessions), exited.req.stateDigest, 'the digest is that of the state GetState gives');
  assert.ok(exited.at - killedAt < 500, `EXITED reported ${(exited.at - killedAt).toFixed(0)} ms after the exit`);
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 'r-hb' });
});

test('registers again, with the same instance id, when the controller no longer knows it', async () => {
  registry.heartbeatIntervalMs = 200n;
  registry.known.clear(); // as a restarted controller
  const n = registry.registers.length;
  await waitFor('a new registration', () => registry.registers.length > n, 8000);
  assert.equal(registry.registers.at(-1)!.instanceId, agent.instanceId);
  assert.ok(logs.some((l) => l.includes('does not know this agent') && l.includes('registering again')));
  const hbs = registry.heartbeats.length;
  await waitFor('heartbeats every 200 ms now', () => registry.heartbeats.length >= hbs + 3, 3000);
});

test('while the controller is unreachable: monitoring goes on, one log line, then it registers again', async () => {
  const t = spawnTarget();
  targets.push(t);
  await unary(client, 'applySession', { epoch: 0n, spec: syntheticSpec('r-down', [t.pid]) });
  await registry.stop();
  const logsBefore = logs.length;
  const published = async () => (await unary(client, 'getState', { pageToken: '', epoch: 0n })).sessions.find((s) => s.sessionId === 'r-down')!.recordsPublished;
  const p0 = await published();
  await new Promise((r) => setTimeout(r, 1500)); // several heartbeat attempts fail meanwhile
  assert.ok((await published()) > p0, 'records still published while the controller is away');
  const unreachable = logs.slice(logsBefore).filter((l) => l.includes('unreachable'));
  assert.equal(unreachable.length, 1, unreachable.join('\n'));
  assert.match(unreachable[0], /WARN .*controller 127\.0\.0\.1:\d+ unreachable \(UNAVAILABLE: .*\); monitoring continues, retrying/);

  registry.known.clear(); // it comes back without memory of the agent
  const n = registry.registers.length;
  await registry.start();
  await waitFor('registered again', () => registry.registers.length > n, 8000);
  const running = observedDigest((await unary(client, 'getState', { pageToken: '', epoch: 0n })).sessions);
  await waitFor('the running session reported', () =>
    registry.heartbeats.some((h) => h.req.sessionCount === 1 && h.req.stateDigest === running),
  );
  assert.ok(logs.slice(logsBefore).some((l) => l.includes('reachable') && !l.includes('unreachable')));
  await unary(client, 'stopSession', { epoch: 0n, sessionId: 'r-down' });
});
