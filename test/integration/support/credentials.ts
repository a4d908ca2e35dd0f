// Credentials for tests, made by the same code as `damon-fleet credentials`, in one
// temporary folder: NATS nkey seeds and the server's users, gRPC tokens and identities
// files, for the test's agent hosts (plus DEFAULT_TEST_HOSTS) and readers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTokenFile, type Credentials } from '../../../common/auth.js';
import { agentCallToken } from '../../../common/grpc-access.js';
import { credentialsLayout, type CredentialsLayout } from '../../../common/credentials-layout.js';
import { ensureGrpcCredentials } from '../../../common/grpc-credentials.js';
import { ensureNatsCredentials } from '../../../common/nats-access.js';

/** Agent hosts every test's credentials have (those the controller tests use), besides those a test names. */
export const DEFAULT_TEST_HOSTS = ['h', 'h1', 'h2', 'h3', 'h4', 'host-a', 'host-b', 'host.b.example'] as const;
/** The reader every test's credentials have. */
export const TEST_READER = 'test-reader';

/** gRPC: what each identity presents, and the options the servers take. */
export interface GrpcTestCredentials {
  /** The whole Controller API. */
  operator: Credentials;
  /** Controller reads only. */
  reader(name?: string): Credentials;
  /** An optimizer's token (one the credentials were made for). */
  optimizer(name: string): Credentials;
  /** What host's agent presents to the controller. */
  agent(host: string): Credentials;
  /** What the controller presents to host's agent. */
  controllerToAgent(host: string): Credentials;
  /** Options of startController. */
  controllerAccess: { identities: string; agentKey: string };
  /** Options of startAgent for host. */
  agentAccess(host: string): { token: string; identities: string };
}

export interface TestCredentials {
  dir: string;
  layout: CredentialsLayout;
  /** The NATS accounts file (users, permissions) the server configuration includes. */
  conf: string;
  /** NATS nkey seed files. */
  controller: string;
  operator: string;
  /** The agent host's seed file; throws for a host the folder was not made for. */
  agent(host: string): string;
  /** The reader's seed file (TEST_READER unless named). */
  reader(name?: string): string;
  /** The optimizer's seed file. */
  optimizer(name: string): string;
  grpc: GrpcTestCredentials;
  remove(): void;
}

/**
 * Makes a credentials folder for `agents` (plus DEFAULT_TEST_HOSTS; each may register
 * 127.0.0.1 and its name) and `readers` (plus TEST_READER).
 */
export function testCredentials(
  o: { agents?: readonly string[]; readers?: readonly string[]; optimizers?: ReadonlyArray<{ name: string; sessions: string[] }> } = {},
): TestCredentials {
  const dir = mkdtempSync(join(tmpdir(), 'damon-creds-'));
  const agents = [...new Set([...DEFAULT_TEST_HOSTS, ...(o.agents ?? [])])];
  const readers = [...new Set([TEST_READER, ...(o.readers ?? [])])];
  const optimizers = o.optimizers ?? [];
  const optimizerNames = optimizers.map((x) => x.name);
  const nats = ensureNatsCredentials(dir, { agents, readers, optimizers: optimizerNames });
  ensureGrpcCredentials(dir, { agents: agents.map((host) => ({ host, addresses: ['127.0.0.1', host] })), readers, optimizers: [...optimizers] });
  const layout = credentialsLayout(dir);
  const known = <T>(list: readonly string[], what: string, name: string, f: () => T): T => {
    if (!list.includes(name)) throw new Error(`test credentials: no ${what} "${name}" (name it when making them)`);
    return f();
  };
  const token = (path: string): Credentials => ({ token: readTokenFile(path) });
  const agentKey = readTokenFile(layout.controller.agentKey);
  return {
    dir,
    layout,
    conf: nats.conf,
    controller: layout.controller.natsSeed,
    operator: layout.operator.natsSeed,
    agent: (host) => known(agents, 'agent', host, () => layout.agent(host).natsSeed),
    reader: (name = TEST_READER) => known(readers, 'reader', name, () => layout.reader(name).natsSeed),
    optimizer: (name) => known(optimizerNames, 'optimizer', name, () => layout.optimizer(name).natsSeed),
    grpc: {
      operator: token(layout.operator.token),
      reader: (name = TEST_READER) => known(readers, 'reader', name, () => token(layout.reader(name).token)),
      agent: (host) => known(agents, 'agent', host, () => token(layout.agent(host).token)),
      optimizer: (name) => known(optimizerNames, 'optimizer', name, () => token(layout.optimizer(name).token)),
      controllerToAgent: (host) => ({ token: agentCallToken(agentKey, host) }),
      controllerAccess: { identities: layout.controller.identities, agentKey },
      agentAccess: (host) => ({ token: readTokenFile(layout.agent(host).token), identities: layout.agent(host).identities }),
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
