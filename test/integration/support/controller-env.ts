// One NATS server and one in-process controller for a test file, with fast leases.
import type { Credentials } from '../../../common/auth.js';
import type { TestCredentials } from './credentials.js';
import { IdentityTable } from '../../../common/grpc-access.js';
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

export interface EnvOptions extends Partial<ControllerOptions> {
  /**
   * Real credentials: the controller checks them, fake agents present their host's and
   * accept the controller's, the env's client is the operator. Without them (and without
   * TLS) the controller runs --insecure, for tests about something else.
   */
  creds?: TestCredentials;
  /** What the env's client presents (default: the operator's, or the TLS material). */
  clientCredentials?: Credentials;
}

export async function startEnv(o: EnvOptions = {}): Promise<ControllerEnv> {
  const { creds, clientCredentials, ...controllerOptions } = o;
  const nats = await startNatsServer({ credentials: creds });
  const log = capturingLogger('controller');
  const controller = await startController({
    listen: '127.0.0.1:0',
    nats: nats.url,
    natsNkeyFile: nats.credentials.controller,
    leaseTtlMs: TEST_LEASE_MS,
    heartbeatIntervalMs: TEST_HEARTBEAT_MS,
    agentCallTimeoutMs: 2000,
    log,
    ...(creds ? creds.grpc.controllerAccess : o.tls ? {} : { insecure: true }),
    ...controllerOptions,
  });
  const client = controllerClient(controller.address, clientCredentials ?? creds?.grpc.operator ?? { tls: o.tls });
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
        credentials: creds?.grpc.agent(host) ?? { tls: o.tls },
        accept: creds ? { identities: IdentityTable.readFile(creds.layout.agent(host).identities) } : { tls: o.tls !== undefined },
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
