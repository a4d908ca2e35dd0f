// Three (or more) nats-servers on loopback ports forming one JetStream cluster, in the
// configuration `damon-fleet credentials --node` writes (route password, nkey users from
// the test's credentials): each node can be killed with SIGKILL and started again on its
// port and store, and the cluster tells which node leads a stream.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetStream } from '../../../common/nats.js';
import { writeClusterConfs, type NatsClusterNode } from '../../../common/nats-cluster.js';
import { freePort, spawnNatsServer, type NatsProcess } from './nats-server.js';
import { testCredentials, type TestCredentials } from './credentials.js';

export interface ClusterNode {
  name: string;
  url: string;
  port: number;
  /** Its server configuration, as damon-fleet credentials --node wrote it. */
  conf: string;
  /** The log lines of its current run. */
  readonly log: string[];
  running(): boolean;
  /** SIGKILL: no clean shutdown, as in a crash; resolves once it is gone. */
  kill9(): Promise<void>;
  /** Starts it again on its port, store and configuration; resolves once it is ready. */
  restart(): Promise<void>;
}

export interface NatsClusterProcesses {
  nodes: ClusterNode[];
  /** Every node's client URL. */
  urls: string[];
  credentials: TestCredentials;
  /** The node whose client URL is `url` (e.g. from a process's "connected to" log line). */
  byUrl(url: string): ClusterNode | undefined;
  /** The node named `name` (a stream's leader, say). */
  byName(name: string): ClusterNode | undefined;
  stop(): Promise<void>;
}

async function gone(p: NatsProcess, signal: NodeJS.Signals): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.child.once('exit', () => r()));
  p.child.kill(signal);
  await exited;
}

/**
 * Starts `size` (default 3) nodes on free loopback ports with fresh credentials (for
 * `agents` besides the defaults) and fresh stores; resolves once every node is ready and
 * the JetStream cluster has a metadata leader.
 */
export async function startNatsCluster(o: { size?: number; agents?: readonly string[] } = {}): Promise<NatsClusterProcesses> {
  const size = o.size ?? 3;
  const credentials = testCredentials({ agents: o.agents });
  const storeDir = mkdtempSync(join(tmpdir(), 'damon-nats-cluster-'));
  const specs: NatsClusterNode[] = [];
  for (let i = 1; i <= size; i++) {
    const [client, route] = [await freePort(), await freePort()];
    specs.push({ name: `n${i}`, listen: { host: '127.0.0.1', port: client }, cluster: { host: '127.0.0.1', port: route }, route: { host: '127.0.0.1', port: route } });
  }
  const { confs } = writeClusterConfs(credentials.dir, join(credentials.dir, 'nats', 'servers'), { nodes: specs, storeDir });
  const procs = new Map<string, NatsProcess>();
  const nodes: ClusterNode[] = specs.map((spec, i) => ({
    name: spec.name,
    url: `nats://127.0.0.1:${spec.listen.port}`,
    port: spec.listen.port,
    conf: confs[i],
    get log() {
      return procs.get(spec.name)?.log ?? [];
    },
    running() {
      const p = procs.get(spec.name);
      return p !== undefined && p.child.exitCode === null && p.child.signalCode === null;
    },
    async kill9() {
      await gone(procs.get(spec.name)!, 'SIGKILL');
    },
    async restart() {
      procs.set(spec.name, await spawnNatsServer(confs[i], `nats ${spec.name}`));
    },
  }));
  const cluster: NatsClusterProcesses = {
    nodes,
    urls: nodes.map((n) => n.url),
    credentials,
    byUrl: (url) => nodes.find((n) => n.url === url),
    byName: (name) => nodes.find((n) => n.name === name),
    async stop() {
      await Promise.all([...procs.values()].map((p) => gone(p, 'SIGTERM')));
      rmSync(storeDir, { recursive: true, force: true });
      credentials.remove();
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.restart()));
    const deadline = Date.now() + 30_000;
    while (!nodes.some((n) => n.log.some((l) => /JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/.test(l)))) {
      if (Date.now() > deadline) throw new Error(`no JetStream metadata leader within 30 s:\n${nodes.map((n) => n.log.join('\n')).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Where a stream stands in the cluster: its leader's name and whether every replica is current. */
export interface StreamPlacement {
  replicas: number;
  leader?: string;
  /** Every follower online and caught up with the leader. */
  current: boolean;
}

/** `stream`'s placement, as the cluster reports it (stream info). */
export async function streamPlacement(nc: NatsConnection, stream: string): Promise<StreamPlacement> {
  const info = await (await jetStream(nc, 3000).jetstreamManager()).streams.info(stream);
  const peers = info.cluster?.replicas ?? [];
  return {
    replicas: info.config.num_replicas,
    leader: info.cluster?.leader,
    current: peers.length === info.config.num_replicas - 1 && peers.every((p) => p.current && !p.offline),
  };
}
