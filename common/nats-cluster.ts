// NATS as a cluster: the nodes, the credential their routes present to each other, and one
// server configuration per node (what `damon-fleet credentials --node` writes; docs/nats.md).
// Routes authenticate with a user and password: nats-server 2.9 routes take a user/password
// or TLS, not nkeys, and a password needs no certificate authority. The password is made
// once (DIR/nats/route.password, 0600) and appears only in the node configurations, which
// are 0600 as well; nats-server redacts it from the route URLs it logs.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseHostPort } from './cli-values.js';
import { credentialsLayout, ensureSecretFile, writeCredentialFile } from './credentials-layout.js';
import { quoted } from './log.js';
import { renderServerConf } from './nats-access.js';

/** The cluster's name (one per deployment: routes are explicit, so two never mix). */
export const NATS_CLUSTER_NAME = 'damon';
/** The user routes authenticate as. */
export const NATS_ROUTE_USER = 'damon-route';
/** Where a node listens for routes unless told otherwise (NATS's customary port). */
export const DEFAULT_ROUTE_PORT = 6222;
/** Fewer than three JetStream servers cannot lose one and keep a quorum. */
export const MIN_CLUSTER_NODES = 3;
/** Node names: a server_name, a file name and, by default, the host the other nodes dial. */
export const NODE_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export interface HostPort {
  host: string;
  port: number;
}

/** One nats-server of the cluster. */
export interface NatsClusterNode {
  /** Its server_name, unique in the cluster. */
  name: string;
  /** Where it listens for clients. */
  listen: HostPort;
  /** Where it listens for the other nodes' routes. */
  cluster: HostPort;
  /** The address the other nodes dial to reach it. */
  route: HostPort;
}

export interface NatsClusterSettings {
  nodes: readonly NatsClusterNode[];
  /** Each node's JetStream store is STORE/<node name>. */
  storeDir: string;
}

const hostPort = ({ host, port }: HostPort) => `${host.includes(':') ? `[${host}]` : host}:${port}`;
const quote = (s: string) => JSON.stringify(s);

/** Checks the nodes: enough of them, names valid and distinct, route addresses distinct. Throws naming the first problem. */
export function checkClusterNodes(nodes: readonly NatsClusterNode[]): void {
  if (nodes.length < MIN_CLUSTER_NODES) {
    throw new Error(`a NATS cluster needs at least ${MIN_CLUSTER_NODES} nodes (JetStream keeps a quorum of a majority), got ${nodes.length}`);
  }
  const names = new Set<string>();
  const routes = new Set<string>();
  for (const n of nodes) {
    if (!NODE_NAME_RE.test(n.name)) throw new Error(`node ${quoted(n.name)}: letters, digits and inner '-' only (at most 63)`);
    if (names.has(n.name)) throw new Error(`node ${n.name}: named twice`);
    names.add(n.name);
    const r = hostPort(n.route);
    if (routes.has(r)) throw new Error(`node ${n.name}: route address ${r} is another node's too`);
    routes.add(r);
  }
}

/** Reads the route password (made by ensureRoutePassword); errors name the file, never its content. */
export function readRoutePassword(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`NATS route password file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const password = text.trim();
  // It goes into route URLs and the configuration's strings as it is.
  if (!/^[A-Za-z0-9_-]{32,128}$/.test(password)) throw new Error(`NATS route password file ${file}: expected one line of 32 to 128 letters, digits, '-' or '_'`);
  return password;
}

/** Makes the credentials directory's route password unless it has one (0600); true when it made it. */
export function ensureRoutePassword(dir: string): boolean {
  return ensureSecretFile(credentialsLayout(dir).natsRoutePassword, () => randomBytes(32).toString('base64url') + '\n');
}

/**
 * The configuration of `node`: renderServerConf's (client port, JetStream store
 * STORE/<name>, the accounts file included) with its server_name and a cluster block that
 * demands the route credential and dials every other node with it.
 */
export function renderClusterNodeConf(
  confPath: string,
  accountsFile: string,
  cluster: NatsClusterSettings,
  node: NatsClusterNode,
  routePassword: string,
): string {
  const routes = cluster.nodes
    .filter((n) => n.name !== node.name)
    .map((n) => `    ${quote(`nats-route://${NATS_ROUTE_USER}:${routePassword}@${hostPort(n.route)}`)}`);
  return (
    renderServerConf(confPath, accountsFile, { ...node.listen, storeDir: join(cluster.storeDir, node.name) }) +
    `# Node ${node.name} of ${cluster.nodes.length}; holds the route password: keep this file 0600.\n` +
    `server_name: ${quote(node.name)}\n` +
    `cluster {\n` +
    `  name: ${quote(NATS_CLUSTER_NAME)}\n` +
    `  host: ${quote(node.cluster.host)}\n` +
    `  port: ${node.cluster.port}\n` +
    `  authorization { user: ${quote(NATS_ROUTE_USER)}, password: ${quote(routePassword)}, timeout: 2 }\n` +
    `  routes: [\n${routes.join('\n')}\n  ]\n` +
    `}\n`
  );
}

/**
 * Writes one configuration per node, confDir/<name>.conf (0600: it holds the route
 * password), from the credentials directory `dir` (its accounts file and route password,
 * made if missing). Returns the paths written, and whether the password was made now.
 */
export function writeClusterConfs(dir: string, confDir: string, cluster: NatsClusterSettings): { confs: string[]; passwordCreated: boolean } {
  checkClusterNodes(cluster.nodes);
  const layout = credentialsLayout(dir);
  const confs = cluster.nodes.map((node) => join(confDir, `${node.name}.conf`));
  const clash = confs.findIndex((path) => resolve(path) === resolve(layout.natsConf));
  if (clash >= 0) throw new Error(`node ${cluster.nodes[clash].name}: its configuration would replace ${layout.natsConf}; give --server-conf another folder`);
  const passwordCreated = ensureRoutePassword(dir);
  const password = readRoutePassword(layout.natsRoutePassword);
  cluster.nodes.forEach((node, i) => writeCredentialFile(confs[i], renderClusterNodeConf(confs[i], layout.natsConf, cluster, node, password)));
  return { confs, passwordCreated };
}

/**
 * A node from the command line: NAME[,listen=HOST:PORT][,cluster=HOST:PORT][,route=HOST:PORT].
 * listen defaults to `defaultListen`; cluster to listen's host on DEFAULT_ROUTE_PORT; route
 * to cluster's address, or NAME:<cluster port> when cluster listens on every interface (as
 * in docker-compose, where the node's name is its host name). Throws naming the bad part.
 */
export function parseClusterNode(spec: string, defaultListen: HostPort): NatsClusterNode {
  const [name, ...parts] = spec.split(',');
  if (!NODE_NAME_RE.test(name)) throw new Error(`--node ${quoted(spec)}: NAME first (letters, digits and inner '-'), then listen=, cluster=, route=`);
  const given: Partial<Record<'listen' | 'cluster' | 'route', HostPort>> = {};
  for (const part of parts) {
    const eq = part.indexOf('=');
    const key = part.slice(0, eq);
    if (eq < 0 || !['listen', 'cluster', 'route'].includes(key)) {
      throw new Error(`--node ${quoted(spec)}: ${quoted(part)} is not listen=HOST:PORT, cluster=HOST:PORT or route=HOST:PORT`);
    }
    const k = key as keyof typeof given;
    if (given[k]) throw new Error(`--node ${quoted(spec)}: ${key}= given twice`);
    given[k] = parseHostPort(`--node ${name} ${key}=`, part.slice(eq + 1));
  }
  const listen = given.listen ?? defaultListen;
  const cluster = given.cluster ?? { host: listen.host, port: DEFAULT_ROUTE_PORT };
  const wildcard = ['0.0.0.0', '::', ''].includes(cluster.host);
  const route = given.route ?? { host: wildcard ? name : cluster.host, port: cluster.port };
  return { name, listen, cluster, route };
}
