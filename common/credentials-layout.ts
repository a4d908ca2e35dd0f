// Where `damon-fleet credentials` keeps each identity's files: one folder per identity,
// so that what one machine needs can be copied to it alone (a host gets agents/<host>/).
//
//   DIR/nats/nats.conf                 NATS users and permissions (public keys only)
//   DIR/nats/route.password            a NATS cluster's route credential (made with --node)
//   DIR/controller/nats.nk             the controller's NATS nkey seed
//   DIR/controller/identities.json     who may call the controller, by token hash
//   DIR/controller/agent-call.key      the key the controller's per-agent tokens derive from
//   DIR/operator/{nats.nk,token}       the operator: the whole API, NATS administration
//   DIR/readers/<name>/{nats.nk,token} read-only clients and NATS consumers
//   DIR/optimizers/<name>/{nats.nk,token} optimizers: readers that may request actions
//                                      on the sessions the controller's identities file grants
//   DIR/agents/<host>/{nats.nk,token}  each host's agent
//   DIR/agents/<host>/identities.json  who may call that agent: the controller, by token hash
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface IdentityFiles {
  dir: string;
  /** NATS nkey seed. */
  natsSeed: string;
  /** gRPC bearer token (absent for the controller, which derives one per agent). */
  token: string;
}

export interface CredentialsLayout {
  root: string;
  natsConf: string;
  /** The password a NATS cluster's routes present to each other. */
  natsRoutePassword: string;
  controller: IdentityFiles & { identities: string; agentKey: string };
  operator: IdentityFiles;
  agent(host: string): IdentityFiles & { identities: string };
  reader(name: string): IdentityFiles;
  optimizer(name: string): IdentityFiles;
}

function identity(dir: string): IdentityFiles {
  return { dir, natsSeed: join(dir, 'nats.nk'), token: join(dir, 'token') };
}

export function credentialsLayout(root: string): CredentialsLayout {
  const controller = identity(join(root, 'controller'));
  return {
    root,
    natsConf: join(root, 'nats', 'nats.conf'),
    natsRoutePassword: join(root, 'nats', 'route.password'),
    controller: { ...controller, identities: join(controller.dir, 'identities.json'), agentKey: join(controller.dir, 'agent-call.key') },
    operator: identity(join(root, 'operator')),
    agent(host) {
      const a = identity(join(root, 'agents', host));
      return { ...a, identities: join(a.dir, 'identities.json') };
    },
    reader: (name) => identity(join(root, 'readers', name)),
    optimizer: (name) => identity(join(root, 'optimizers', name)),
  };
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The agents, readers and optimizers that already have folders under `root`. */
export function existingIdentities(root: string): { agents: string[]; readers: string[]; optimizers: string[] } {
  return { agents: subdirs(join(root, 'agents')), readers: subdirs(join(root, 'readers')), optimizers: subdirs(join(root, 'optimizers')) };
}

/**
 * Writes `text` to `path` whole (a temporary file renamed over it, so a reader never sees
 * half of it), readable by its owner only unless `mode` says otherwise; folders 0700.
 */
export function writeCredentialFile(path: string, text: string, mode = 0o600): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode, flag: 'wx' });
  chmodSync(tmp, mode); // the umask may have taken bits away
  renameSync(tmp, path);
}

/** Creates a secret file with `make()` unless it exists; true when it created it. */
export function ensureSecretFile(path: string, make: () => string): boolean {
  if (existsSync(path)) return false;
  writeCredentialFile(path, make());
  return true;
}
