// deploy/kubernetes cannot run here (no cluster): these tests validate every manifest, and
// the Secrets deploy/kubernetes/secrets.js makes, against the Kubernetes API schemas
// (kubernetes-models), then check what a user relies on: the daemons' command lines parse
// with their own parsers against the files the Secrets really put in place, the agent holds
// exactly the documented capabilities and host mounts, credentials arrive as files only,
// probes name the health services the daemons serve, and names, ports and images agree
// with each other, the Dockerfile and docker-compose.yml; and a real agent started on the
// manifest's command line answers the health check its probes make.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { parseAgentArgs } from '../../agent/daemon/main.js';
import { parseControllerArgs } from '../../controller/main.js';
import { SERVICE_NAMES } from '../../common/grpc-server.js';
import { SUGGESTED_METRICS_PORTS } from '../../common/metrics-server.js';
import { modelDts, unknownFields } from './kubernetes-known-fields.js';
import { healthCheck, waitFor } from '../integration/support/grpc-client.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const K8S = join(ROOT, 'deploy', 'kubernetes');
const BIN = join(ROOT, 'bin', 'damon-fleet.js');
const SECRETS_JS = join(K8S, 'secrets.js');

// Only the fields these tests read; the schemas check the rest.
interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  data?: Record<string, string>;
}
type Container = {
  name: string;
  image: string;
  command?: string[];
  args: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: Record<string, any> }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  envFrom?: unknown[];
  ports?: Array<{ name: string; containerPort: number; hostPort?: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
  securityContext?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  startupProbe?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  readinessProbe?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  livenessProbe?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
};

const kustomization = parse(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as { resources: string[]; images: Array<{ name: string }>; namespace: string };
const objects: Obj[] = kustomization.resources.flatMap((f) =>
  parseAllDocuments(readFileSync(join(K8S, f), 'utf8')).map((d) => {
    assert.deepEqual(d.errors, [], f);
    return d.toJS() as Obj;
  }),
);
const find = (kind: string, name: string): Obj => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind} ${name} in deploy/kubernetes`);
  return o;
};
const agentSet = find('DaemonSet', 'agent');
const controllerSet = find('StatefulSet', 'controller');
const natsSet = find('StatefulSet', 'nats');
const workloads = [agentSet, controllerSet, natsSet];
const podSpec = (o: Obj) => o.spec.template.spec;
const container = (o: Obj): Container => {
  assert.equal(podSpec(o).containers.length, 1, `${o.metadata.name}: one container`);
  return podSpec(o).containers[0];
};
const port = (c: Container, name: string): number => {
  const p = c.ports?.find((x) => x.name === name);
  assert.ok(p, `${c.name}: a port named ${name}`);
  return p.containerPort;
};
const option = (args: string[], name: string): string[] => args.flatMap((a, i) => (args[i - 1] === name ? [a] : []));
const one = (args: string[], name: string): string => {
  const v = option(args, name);
  assert.equal(v.length, 1, `${name} given once`);
  return v[0];
};
/** The $(VAR) references Kubernetes expands in args, with the values a pod would get. */
const expand = (args: string[], env: Record<string, string>): string[] =>
  args.map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_, v: string) => {
    assert.ok(v in env, `$(${v}) is set`);
    return env[v];
  }));
/** Each env var's fieldRef path, so a test gives $(VAR) the value that field would have. */
const fieldRefs = (c: Container): Record<string, string> =>
  Object.fromEntries((c.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath ?? `value:${e.value}`]));

/** A model class of the Kubernetes API for apiVersion/kind, from kubernetes-models. */
async function modelOf(o: Obj): Promise<new (data: unknown) => { validate(): void }> {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const mod = (await import(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`)) as Record<string, new (data: unknown) => { validate(): void }>;
  assert.ok(mod[o.kind], `kubernetes-models has ${o.apiVersion} ${o.kind}`);
  return mod[o.kind];
}

// The credentials a user makes for two nodes, and the Secrets secrets.js makes of them.
const NODES = { 'node-a': '10.0.0.11', 'node-b': '10.0.0.12' };
let scratch = '';
let secrets: Obj[] = [];

/** The NATS part of the credentials command `file` gives for Kubernetes: the user copies it as it is. */
function shownCredentialsArgs(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const m = /node bin\/damon-fleet\.js credentials --dir creds \$AGENTS \\\n((?:.*\\\n)*.*)\n/.exec(text);
  assert.ok(m, `${file} shows the credentials command for Kubernetes`);
  return m[1].replace(/\\\n/g, ' ').trim().split(/\s+/);
}
const docsCredentialsArgs = () => shownCredentialsArgs('docs/deploy.md').map((w) => w.replace(/^creds\//, `${scratch}/creds/`));

test('README.md and docs/deploy.md show the same credentials command for Kubernetes', () => {
  assert.deepEqual(shownCredentialsArgs('README.md'), shownCredentialsArgs('docs/deploy.md'));
});

before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'damon-k8s-'));
  const agents = Object.entries(NODES).flatMap(([n, ip]) => ['--agent', `${n}=${ip}`]);
  const r = spawnSync(process.execPath, [BIN, 'credentials', '--dir', join(scratch, 'creds'), ...agents, ...docsCredentialsArgs()], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const s = spawnSync(process.execPath, [SECRETS_JS, '--dir', join(scratch, 'creds')], { encoding: 'utf8' });
  assert.equal(s.status, 0, s.stderr);
  secrets = parseAllDocuments(s.stdout).map((d) => d.toJS() as Obj).filter(Boolean);
});
after(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * The files `c` sees at its mounts of Secret volumes, written under `root` as kubelet
 * would (keys, or items' paths, as file names); returns the container path -> host path map.
 */
function materialize(o: Obj, c: Container, root: string): Array<[string, string]> {
  const mounts: Array<[string, string]> = [];
  for (const m of c.volumeMounts ?? []) {
    const vol = podSpec(o).volumes.find((v: { name: string }) => v.name === m.name);
    if (!vol) continue; // a volume claim template's
    const sources: Array<{ name: string; items?: Array<{ key: string; path: string }> }> = vol.secret
      ? [{ name: vol.secret.secretName, items: vol.secret.items }]
      : (vol.projected?.sources ?? []).map((s: { secret: { name: string; items?: Array<{ key: string; path: string }> } }) => s.secret);
    if (sources.length === 0) continue;
    const dir = join(root, m.name);
    for (const src of sources) {
      const sec = secrets.find((x) => x.metadata.name === src.name);
      assert.ok(sec, `${o.metadata.name}: Secret ${src.name} is one secrets.js makes`);
      const items = src.items ?? Object.keys(sec.data!).map((key) => ({ key, path: key }));
      for (const { key, path } of items) {
        assert.ok(key in sec.data!, `${o.metadata.name}: Secret ${src.name} has ${key}`);
        mkdirSync(dirname(join(dir, path)), { recursive: true });
        writeFileSync(join(dir, path), Buffer.from(sec.data![key], 'base64'));
      }
    }
    mounts.push([m.mountPath, dir]);
  }
  return mounts;
}

/** `args` with every path under a mount moved to where materialize() put its files. */
const relocate = (args: string[], mounts: Array<[string, string]>): string[] =>
  args.map((a) => {
    for (const [from, to] of mounts) if (a === from || a.startsWith(`${from}/`)) return join(to, posix.relative(from, a));
    return a;
  });

test('every manifest and every Secret secrets.js makes is valid against the Kubernetes schemas', async () => {
  const files = readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
  assert.deepEqual([...kustomization.resources].sort(), files, 'kustomization.yaml lists every manifest');
  for (const o of [...objects, ...secrets]) {
    const Model = await modelOf(o);
    assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`);
  }
  assert.deepEqual(secrets.map((s) => s.kind), ['Secret', 'Secret', 'Secret']);
  // The validator is live: a wrong type in the agent's pod is refused.
  const bad = structuredClone(agentSet);
  podSpec(bad).containers[0].securityContext.privileged = 'no';
  const Model = await modelOf(agentSet);
  assert.throws(() => new Model(bad).validate(), /privileged/);
});

test('no manifest has a field its Kubernetes type lacks (a misspelt key would be dropped silently)', () => {
  for (const o of [...objects, ...secrets]) {
    assert.deepEqual(unknownFields(o, modelDts(o.apiVersion, o.kind)), [], `${o.kind} ${o.metadata.name}`);
  }
  // The check is live: misspelt keys deep in the agent's pod are named.
  const bad = structuredClone(agentSet);
  podSpec(bad).containers[0].readinesProbe = podSpec(bad).containers[0].readinessProbe;
  podSpec(bad).volumes[0].secret.defaultMod = 256;
  assert.deepEqual(unknownFields(bad, modelDts(bad.apiVersion, bad.kind)), [
    'spec.template.spec.containers[0].readinesProbe',
    'spec.template.spec.volumes[0].secret.defaultMod',
  ]);
});

test('the agent: exactly the documented capabilities and host mounts, never privileged', () => {
  const c = container(agentSet);
  const spec = podSpec(agentSet);
  const header = readFileSync(join(K8S, 'agent.yaml'), 'utf8');
  const documented = (text: string) => [...new Set([...text.matchAll(/CAP_([A-Z_]+)/g)].map((m) => m[1]))].sort();
  const added = [...c.securityContext.capabilities.add].sort();
  assert.deepEqual(added, ['DAC_READ_SEARCH', 'SYS_ADMIN', 'SYS_NICE', 'SYS_PTRACE']);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  assert.deepEqual(documented(header.split('\napiVersion:')[0]), added, 'agent.yaml\'s header names exactly the added capabilities');
  const docs = readFileSync(join(ROOT, 'docs', 'deploy.md'), 'utf8');
  const why = /## What the agent needs, and why\n([\s\S]*?)\n## /.exec(docs);
  assert.ok(why, 'docs/deploy.md explains the agent\'s privileges');
  assert.deepEqual(documented(why[1]), added, 'docs/deploy.md names exactly the added capabilities');
  assert.equal(spec.hostPID, true, 'target pids are the host\'s');
  assert.notEqual(spec.hostNetwork, true);
  // Kubernetes deems CAP_SYS_ADMIN able to escalate regardless; "false" would claim otherwise.
  assert.notEqual(c.securityContext.allowPrivilegeEscalation, false);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(spec.securityContext.appArmorProfile?.type, 'Unconfined', 'the default AppArmor profile denies writes under /sys');
  const hostPaths = spec.volumes.filter((v: { hostPath?: unknown }) => v.hostPath).map((v: { hostPath: { path: string } }) => v.hostPath.path).sort();
  assert.deepEqual(hostPaths, ['/sys/kernel/mm', '/sys/kernel/tracing', '/var/lib/damon-fleet']);
  for (const p of hostPaths) assert.match(header, new RegExp(p.replace(/\//g, '\\/')), `${p} is explained in agent.yaml`);
  // Each host path is mounted where the agent's code looks for it.
  const mountOf = (vol: string) => c.volumeMounts!.find((m) => m.name === spec.volumes.find((v: { hostPath?: { path: string } }) => v.hostPath?.path === vol).name)!.mountPath;
  assert.equal(mountOf('/sys/kernel/mm'), '/sys/kernel/mm');
  assert.equal(mountOf('/sys/kernel/tracing'), '/sys/kernel/tracing');
  assert.equal(mountOf('/var/lib/damon-fleet'), one(c.args, '--data-dir'));
});

test('nothing runs privileged; the controller and NATS run as non-root with every capability dropped', () => {
  for (const o of workloads) {
    const c = container(o);
    assert.notEqual(c.securityContext?.privileged, true, `${o.metadata.name}: not privileged`);
    assert.equal(podSpec(o).securityContext.seccompProfile?.type, 'RuntimeDefault', `${o.metadata.name}: seccomp`);
  }
  for (const o of [controllerSet, natsSet]) {
    const c = container(o);
    const spec = podSpec(o);
    assert.equal(spec.securityContext.runAsNonRoot, true, o.metadata.name);
    assert.notEqual(spec.hostPID, true, o.metadata.name);
    assert.ok(!spec.volumes.some((v: { hostPath?: unknown }) => v.hostPath), `${o.metadata.name}: no host mount`);
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] }, o.metadata.name);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false, o.metadata.name);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true, o.metadata.name);
  }
});

test('credentials reach the daemons as files from Secret volumes only, never in env or args', () => {
  const secretValues = secrets.flatMap((s) => Object.values(s.data!).map((b64) => Buffer.from(b64, 'base64').toString('utf8').trim()));
  for (const o of workloads) {
    const c = container(o);
    assert.equal(c.envFrom, undefined, `${o.metadata.name}: no envFrom`);
    for (const e of c.env ?? []) {
      assert.ok(e.valueFrom?.fieldRef, `${o.metadata.name}: env ${e.name} comes from the pod's own fields`);
    }
    const line = [...(c.command ?? []), ...c.args].join(' ');
    for (const v of secretValues) assert.ok(!line.includes(v), `${o.metadata.name}: no secret in its command line`);
    for (const m of c.volumeMounts ?? []) {
      const vol = podSpec(o).volumes.find((v: { name: string }) => v.name === m.name);
      if (vol?.secret || vol?.projected) {
        assert.equal(m.readOnly, true, `${o.metadata.name}: ${m.mountPath} read-only`);
        const mode = vol.secret?.defaultMode ?? vol.projected.defaultMode;
        assert.ok(mode !== undefined && (mode & 0o037) === 0, `${o.metadata.name}: its Secret files are not world- or group-writable/readable beyond the group (${mode?.toString(8)})`);
      }
    }
  }
  // Kubernetes reads YAML 1.1 (0400 is octal), this test YAML 1.2 (0400 is decimal): decimal only.
  for (const f of kustomization.resources) assert.doesNotMatch(readFileSync(join(K8S, f), 'utf8'), /Mode: 0\d/, `${f}: file modes in decimal`);
  // The Secrets hold only each role's files: no operator or reader credential, no route
  // password (it is inside the node configurations, which only NATS mounts).
  const keys = (name: string) => Object.keys(secrets.find((s) => s.metadata.name === name)!.data!).sort();
  assert.deepEqual(keys('damon-fleet-controller'), ['agent-call.key', 'identities.json', 'nats.nk']);
  assert.deepEqual(keys('damon-fleet-nats'), ['nats-0.conf', 'nats-1.conf', 'nats-2.conf', 'nats.conf']);
  assert.deepEqual(keys('damon-fleet-agents'), Object.keys(NODES).flatMap((n) => [`${n}.identities.json`, `${n}.nats.nk`, `${n}.token`]).sort());
});

test("the agent's command line parses with the agent's own parser, on the files its Secret puts in place", () => {
  const c = container(agentSet);
  const refs = fieldRefs(c);
  assert.equal(refs.NODE_NAME, 'spec.nodeName');
  assert.equal(refs.HOST_IP, 'status.hostIP');
  assert.equal(c.command, undefined, 'the image\'s entrypoint (bin/damon-fleet.js) runs');
  assert.equal(c.args[0], 'agent');
  const root = mkdtempSync(join(scratch, 'agent-'));
  const mounts = materialize(agentSet, c, root);
  for (const [node, ip] of Object.entries(NODES)) {
    const args = relocate(expand(c.args.slice(1), { NODE_NAME: node, HOST_IP: ip }), mounts);
    const o = parseAgentArgs(args);
    assert.equal(o.host, node);
    assert.equal(o.advertise, `${ip}:${port(c, 'grpc')}`, 'registers the node address its credential lists');
    assert.equal(o.listen, `0.0.0.0:${port(c, 'grpc')}`);
    assert.equal(c.ports!.find((p) => p.name === 'grpc')!.hostPort, port(c, 'grpc'), 'reachable at the node address');
    assert.ok(o.identities && o.token && o.natsNkeyFile, 'authenticated both ways and on NATS');
    assert.deepEqual(o.metrics, { host: '0.0.0.0', port: port(c, 'metrics') });
    assert.equal(o.dataDir, '/var/lib/damon-fleet');
    // Every controller replica, by the stable name its --advertise gives.
    const ctl = container(controllerSet);
    const names = Array.from({ length: controllerSet.spec.replicas }, (_, i) => `${controllerSet.metadata.name}-${i}.${controllerSet.spec.serviceName}:${port(ctl, 'grpc')}`);
    assert.deepEqual(o.controller, names);
    assert.deepEqual(o.nats, natsUrls());
  }
});

function natsUrls(): string[] {
  const c = container(natsSet);
  return Array.from({ length: natsSet.spec.replicas }, (_, i) => `nats://${natsSet.metadata.name}-${i}.${natsSet.spec.serviceName}:${port(c, 'client')}`);
}

test("the controllers' command line parses with the controller's own parser; each advertises its stable name", () => {
  const c = container(controllerSet);
  assert.equal(controllerSet.spec.replicas, 2, 'a leader and a standby');
  assert.equal(fieldRefs(c).POD_NAME, 'metadata.name');
  assert.equal(c.args[0], 'controller');
  const svc = find('Service', controllerSet.spec.serviceName);
  assert.equal(svc.spec.clusterIP, 'None', 'headless: each replica gets its own name');
  assert.equal(svc.spec.publishNotReadyAddresses, true, 'a standby\'s name resolves too');
  const root = mkdtempSync(join(scratch, 'controller-'));
  const mounts = materialize(controllerSet, c, root);
  for (let i = 0; i < controllerSet.spec.replicas; i++) {
    const pod = `${controllerSet.metadata.name}-${i}`;
    const o = parseControllerArgs(relocate(expand(c.args.slice(1), { POD_NAME: pod }), mounts));
    assert.equal(o.advertise, `${pod}.${svc.metadata.name}:${port(c, 'grpc')}`);
    assert.equal(o.listen, `0.0.0.0:${port(c, 'grpc')}`);
    assert.equal(o.streams?.replicas, natsSet.spec.replicas, 'a copy of every stream on every NATS node');
    assert.deepEqual(o.nats, natsUrls());
    assert.ok(o.identities && o.agentKey && o.natsNkeyFile);
    assert.deepEqual(o.metrics, { host: '0.0.0.0', port: port(c, 'metrics') });
  }
});

test('NATS: each node runs the configuration written for it, routes to the others by stable name, stores on its volume', () => {
  const c = container(natsSet);
  assert.equal(natsSet.spec.replicas, 3, 'JetStream\'s quorum survives one node lost');
  assert.equal(natsSet.spec.podManagementPolicy, 'Parallel');
  const svc = find('Service', natsSet.spec.serviceName);
  assert.equal(svc.spec.clusterIP, 'None');
  assert.equal(svc.spec.publishNotReadyAddresses, true);
  const root = mkdtempSync(join(scratch, 'nats-'));
  const mounts = materialize(natsSet, c, root);
  const dataMount = c.volumeMounts!.find((m) => natsSet.spec.volumeClaimTemplates.some((t: Obj) => t.metadata.name === m.name))!.mountPath;
  const n = natsSet.spec.replicas as number;
  for (let i = 0; i < n; i++) {
    const pod = `${natsSet.metadata.name}-${i}`;
    const args = relocate(expand(c.args, { POD_NAME: pod }), mounts);
    const confPath = one(args, '-c');
    const body = readFileSync(confPath, 'utf8');
    assert.match(body, new RegExp(`^server_name: "${pod}"$`, 'm'));
    const include = /^include "([^"]+)"$/m.exec(body)![1];
    assert.match(readFileSync(join(dirname(confPath), include), 'utf8'), /authorization|accounts/, 'the accounts file is where the include points');
    assert.equal(Number(/^port: (\d+)$/m.exec(body)![1]), port(c, 'client'));
    const cluster = /cluster \{\n {2}name: "[^"]+"\n {2}host: "([^"]*)"\n {2}port: (\d+)\n/.exec(body)!;
    assert.equal(cluster[1], '0.0.0.0');
    assert.equal(Number(cluster[2]), port(c, 'cluster'));
    const routes = [...body.matchAll(/"nats-route:\/\/[^@]+@([^"]+)"/g)].map((m) => m[1]).sort();
    const others = [...Array(n).keys()].filter((j) => j !== i).map((j) => `${natsSet.metadata.name}-${j}.${svc.metadata.name}:${port(c, 'cluster')}`);
    assert.deepEqual(routes, others);
    const store = /^jetstream \{ store_dir: "([^"]+)" \}$/m.exec(body)![1];
    assert.equal(store, `${dataMount}/${pod}`, 'JetStream on the node\'s own volume');
    assert.equal(one(args, '-m'), String(port(c, 'monitor')), 'the probes\' port');
  }
});

test('probes are gRPC health checks on the services the daemons serve', () => {
  const agent = container(agentSet);
  for (const p of [agent.startupProbe, agent.readinessProbe, agent.livenessProbe]) {
    assert.deepEqual(p.grpc, { port: port(agent, 'grpc'), service: SERVICE_NAMES.agent });
  }
  // The controller: "" (SERVING while it reaches NATS, the standby included:
  // test/integration/controller-standby.test.ts); damon.v1.Controller would be ready on the
  // leader only and stall every rolling update.
  const ctl = container(controllerSet);
  for (const p of [ctl.startupProbe, ctl.readinessProbe]) assert.deepEqual(p.grpc, { port: port(ctl, 'grpc'), service: '' });
});

async function freePort(): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port: p } = srv.address() as { port: number };
  srv.close();
  return p;
}

test("a real agent started on the manifest's command line answers its probe's health check SERVING, before NATS or a controller answer", async () => {
  const c = container(agentSet);
  const mounts = materialize(agentSet, c, mkdtempSync(join(scratch, 'live-agent-')));
  const listen = `127.0.0.1:${await freePort()}`;
  const args = relocate(expand(c.args, { NODE_NAME: 'node-a', HOST_IP: '127.0.0.1' }), mounts);
  // Loopback instead of the pod's addresses; nothing listens at NATS or the controllers.
  const set = (name: string, value: string) => (args[args.indexOf(name) + 1] = value);
  set('--listen', listen);
  set('--advertise', listen);
  set('--controller', '127.0.0.1:9');
  set('--nats', 'nats://127.0.0.1:9');
  set('--data-dir', mkdtempSync(join(scratch, 'live-data-')));
  args.splice(args.indexOf('--metrics'), 2);
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const service = c.livenessProbe.grpc.service as string;
    await waitFor(`${service} SERVING`, async () => (await healthCheck(listen, grpc.credentials.createInsecure(), service)) === 'SERVING', 60_000, 200);
  } catch (err) {
    assert.fail(`the agent never answered SERVING: ${(err as Error).message}\n${stderr.slice(-2000)}`);
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
  }
});

test('images, entrypoint and ports agree with the Dockerfile and docker-compose.yml; flags as in docker-compose', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  assert.match(dockerfile, /^ENTRYPOINT \["node", "bin\/damon-fleet\.js"\]$/m);
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { image?: string; command: string[] }> };
  assert.deepEqual(kustomization.images.map((i) => i.name), ['damon-fleet']);
  assert.equal(container(agentSet).image, 'damon-fleet');
  assert.equal(container(controllerSet).image, 'damon-fleet');
  assert.equal(container(natsSet).image, compose.services['nats-1'].image, 'the NATS image docker-compose runs');
  const flags = (args: string[]) => args.filter((a) => a.startsWith('--')).sort();
  for (const [o, svc, role] of [[agentSet, 'agent', 'agent'], [controllerSet, 'controller', 'controller']] as const) {
    const c = container(o);
    const cmd = compose.services[svc].command;
    assert.deepEqual(flags(c.args), flags(cmd), `${role}: the options docker-compose gives`);
    assert.equal(one(c.args, '--listen').split(':')[1], one(cmd, '--listen').split(':')[1], `${role}: the gRPC port`);
    assert.equal(port(c, 'metrics'), SUGGESTED_METRICS_PORTS[role], `${role}: the suggested metrics port`);
    assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory, `${role}: requests and a memory limit`);
  }
});

test('secrets.js refuses a directory without credentials, and one without agent hosts', () => {
  const empty = mkdtempSync(join(scratch, 'empty-'));
  const r = spawnSync(process.execPath, [SECRETS_JS, '--dir', empty], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no credentials there/);
  const noAgents = join(scratch, 'no-agents');
  const c = spawnSync(process.execPath, [BIN, 'credentials', '--dir', noAgents, ...docsCredentialsArgs().map((a) => a.replace(`${scratch}/creds/`, `${noAgents}/`))], { encoding: 'utf8' });
  assert.equal(c.status, 0, c.stderr);
  const s = spawnSync(process.execPath, [SECRETS_JS, '--dir', noAgents], { encoding: 'utf8' });
  assert.equal(s.status, 1);
  assert.match(s.stderr, /no agent hosts; give damon-fleet credentials --agent NODE=NODE_IP/);
  assert.equal(s.stdout, '', 'nothing half-made on stdout');
});
