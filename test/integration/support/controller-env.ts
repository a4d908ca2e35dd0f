// One NATS server and one in-process controller for a test file, with fast leases.
import type { ClusterCredentials } from '../../../common/auth.js';
import { createLogger, silentLogger, type BasicLogger as Logger } from '../../../common/log.js';
import { startController, type ControllerOptions, type RunningController } from '../../../controller/controller.js';
import type { ControllerClient } from '../../../gen/damon/v1/damon.js';
import { FakeAgent, type FakeAgentOptions } from './fake-agent.js';
import { controllerClient } from './grpc-client.js';
import { startNatsServer, type NatsServer } from './nats-server.js';

/** Lease and heartbeat of test controllers: short so expiry is seen in about a second. */
export const TEST_LEASE_MS = 1200;
export const TEST_HEARTBEAT_MS = 200;

/** Logs to stderr when DAMON_TEST_LOG=1 (to see what the controller did), else nothing. */
export function testLogger(component: string): Logger {
  return process.env.DAMON_TEST_LOG === '1' ? createLogger(component) : silentLogger;
}

/** A logger keeping every line in `lines` (and passing it on to testLogger). */
export function capturingLogger(component: string): Logger & { lines: string[] } {
  const inner = testLogger(component);
  const lines: string[] = [];
  return {
    lines,
    info: (m) => (lines.push(`info ${m}`), inner.info(m)),
    warn: (m) => (lines.push(`warn ${m}`), inner.warn(m)),
    error: (m) => (lines.push(`error ${m}`), inner.error(m)),
  };
}

export interface ControllerEnv {
  /** The NATS server (a test that restarts it assigns the new one here, for close()). */
  nats: NatsServer;
  controller: RunningController;
  client: ControllerClient;
  agents: FakeAgent[];
  /** The controller's log lines. */
  logs: string[];
  /** Starts a fake agent registered with this controller. */
  agent(host: string, o?: Partial<FakeAgentOptions>): Promise<FakeAgent>;
  close(): Promise<void>;
}

export async function startEnv(o: Partial<ControllerOptions> & { clientCredentials?: ClusterCredentials } = {}): Promise<ControllerEnv> {
  const nats = await startNatsServer();
  const log = capturingLogger('controller');
  const controller = await startController({
    listen: '127.0.0.1:0',
    nats: nats.url,
    natsNkeyFile: nats.credentials.controller,
    leaseTtlMs: TEST_LEASE_MS,
    heartbeatIntervalMs: TEST_HEARTBEAT_MS,
    agentCallTimeoutMs: 2000,
    log,
    ...o,
  });
  const client = controllerClient(controller.address, o.clientCredentials ?? o.credentials ?? {});
  const agents: FakeAgent[] = [];
  const env: ControllerEnv = {
    nats,
    controller,
    client,
    agents,
    logs: log.lines,
    async agent(host, ao = {}) {
      const a = await new FakeAgent({
        host,
        controller: controller.address,
        credentials: o.credentials,
        heartbeatMs: TEST_HEARTBEAT_MS,
        ...ao,
      }).start();
      agents.push(a);
      return a;
    },
    async close() {
      client.close();
      await Promise.all(agents.map((a) => a.stop()));
      await controller.stop();
      await env.nats.stop();
    },
  };
  return env;
}
