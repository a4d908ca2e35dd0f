// Credentials for tests, made by the same code as `damon-fleet credentials`, in a
// temporary folder: the identities, tokens and keys of a fleet of named hosts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTokenFile, type Credentials } from '../../../common/auth.js';
import { agentCallToken } from '../../../common/grpc-access.js';
import { credentialsLayout, type CredentialsLayout } from '../../../common/credentials-layout.js';
import { ensureGrpcCredentials, type GrpcCredentialsPlan } from '../../../common/grpc-credentials.js';

export interface TestCredentials {
  layout: CredentialsLayout;
  /** What the operator presents (the whole Controller API). */
  operator: Credentials;
  /** What reader `name` presents (Controller reads only). */
  reader(name?: string): Credentials;
  /** What host's agent presents to the controller. */
  agent(host: string): Credentials;
  /** What the controller presents to host's agent. */
  controllerToAgent(host: string): Credentials;
  /** Options of startController / spawnController for these credentials. */
  controllerAccess: { identities: string; agentKey: string };
  /** Options of startAgent for host. */
  agentAccess(host: string): { token: string; identities: string };
  remove(): void;
}

/** Credentials for `hosts` (each may register 127.0.0.1 and its name) and the reader "reader". */
export function makeTestCredentials(hosts: string[], plan: Partial<GrpcCredentialsPlan> = {}): TestCredentials {
  const root = mkdtempSync(join(tmpdir(), 'damon-creds-'));
  ensureGrpcCredentials(root, {
    agents: plan.agents ?? hosts.map((host) => ({ host, addresses: ['127.0.0.1', host] })),
    readers: plan.readers ?? ['reader'],
  });
  const layout = credentialsLayout(root);
  const agentKey = readTokenFile(layout.controller.agentKey);
  return {
    layout,
    operator: { token: readTokenFile(layout.operator.token) },
    reader: (name = 'reader') => ({ token: readTokenFile(layout.reader(name).token) }),
    agent: (host) => ({ token: readTokenFile(layout.agent(host).token) }),
    controllerToAgent: (host) => ({ token: agentCallToken(agentKey, host) }),
    controllerAccess: { identities: layout.controller.identities, agentKey },
    agentAccess: (host) => ({ token: readTokenFile(layout.agent(host).token), identities: layout.agent(host).identities }),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}
