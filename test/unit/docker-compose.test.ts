// docker-compose.yml cannot run here (no docker daemon); this reads it and checks the NATS
// cluster's wiring against the configurations that the credentials command in its header
// actually writes: three nodes, each started on its own configuration from the mounted
// folder, routes naming the other two by service name, every client given every node's
// URL, and the controller keeping 3 copies.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parse } from 'yaml';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'damon-fleet.js');
const text = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');

interface Service {
  image?: string;
  command?: string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: string[];
}
const compose = parse(text) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;
const natsNodes = Object.keys(services).filter((s) => /^nats:/.test(services[s].image ?? ''));

/** The credentials command the header tells the user to run, as arguments after `credentials`. */
function credentialsArgs(): string[] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => /^#\s+node bin\/damon-fleet\.js credentials /.test(l));
  assert.ok(start >= 0, 'the header shows the credentials command');
  let cmd = '';
  for (let i = start; ; i++) {
    const l = lines[i].replace(/^#\s*/, '');
    cmd += ' ' + l.replace(/\\$/, '');
    if (!l.endsWith('\\')) break;
  }
  const words = cmd.trim().split(/\s+/);
  assert.deepEqual(words.slice(0, 3), ['node', 'bin/damon-fleet.js', 'credentials']);
  return words.slice(3);
}

const option = (args: string[], name: string): string[] => args.flatMap((a, i) => (args[i - 1] === name ? [a] : []));

/** The host path a container path of `svc` comes from, through its bind mounts (relative to the compose folder). */
function hostPath(svc: Service, containerPath: string): string | undefined {
  for (const v of svc.volumes ?? []) {
    const [from, to] = v.split(':');
    if (!from.startsWith('./')) continue;
    if (containerPath === to || containerPath.startsWith(`${to}/`)) return posix.join(from, posix.relative(to, containerPath));
  }
  return undefined;
}

test('docker-compose.yml: three NATS nodes forming one cluster, every client given every node, replicas 3', () => {
  assert.equal(natsNodes.length, 3, `NATS services: ${natsNodes.join(', ')}`);
  const dir = mkdtempSync(join(tmpdir(), 'damon-compose-'));
  try {
    // Run the header's command in a scratch folder: what it writes is what the nodes read.
    const args = credentialsArgs();
    assert.deepEqual(option(args, '--node'), natsNodes, 'one --node per NATS service, named as the service');
    const r = spawnSync(process.execPath, [BIN, 'credentials', ...args], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);

    const clientUrls: string[] = [];
    const dataVolumes = new Set<string>();
    for (const name of natsNodes) {
      const svc = services[name];
      const [flag, conf] = svc.command ?? [];
      assert.equal(flag, '-c', `${name}: started on a configuration file`);
      const confOnHost = hostPath(svc, conf);
      assert.ok(confOnHost, `${name}: ${conf} comes from a mounted folder`);
      assert.ok(confOnHost.startsWith('.run/creds/'), `${name}: from the credentials folder (${confOnHost})`);
      assert.ok(svc.volumes!.some((v) => v.startsWith('./.run/creds/') && v.endsWith(':ro')), `${name}: mounted read-only`);
      const body = readFileSync(join(dir, confOnHost), 'utf8');

      assert.match(body, new RegExp(`^server_name: "${name}"$`, 'm'));
      const include = /^include "([^"]+)"$/m.exec(body)![1];
      const accounts = posix.join(posix.dirname(conf), include);
      const accountsOnHost = hostPath(svc, accounts);
      assert.ok(accountsOnHost && existsSync(join(dir, accountsOnHost)), `${name}: the accounts file ${accounts} is in the mount`);

      const clientPort = Number(/^port: (\d+)$/m.exec(body)![1]);
      assert.ok(svc.ports!.some((p) => p.endsWith(`:${clientPort}`)), `${name}: client port ${clientPort} published`);
      clientUrls.push(`nats://${name}:${clientPort}`);
      const cluster = /cluster \{\n {2}name: "[^"]+"\n {2}host: "([^"]*)"\n {2}port: (\d+)\n/.exec(body);
      assert.ok(cluster, `${name}: a cluster block`);
      assert.equal(cluster[1], '0.0.0.0', `${name}: routes accepted from the other containers`);
      const routes = [...body.matchAll(/"nats-route:\/\/[^@]+@([^"]+)"/g)].map((m) => m[1]).sort();
      assert.deepEqual(routes, natsNodes.filter((n) => n !== name).map((n) => `${n}:${cluster[2]}`).sort(), `${name}: routes to the other nodes by service name`);

      const store = /^jetstream \{ store_dir: "([^"]+)" \}$/m.exec(body)![1];
      const data = svc.volumes!.find((v) => !v.startsWith('./') && (store === v.split(':')[1] || store.startsWith(`${v.split(':')[1]}/`)));
      assert.ok(data, `${name}: its JetStream store ${store} is on a volume`);
      const volume = data.split(':')[0];
      assert.ok(volume in compose.volumes, `${name}: ${volume} is a named volume`);
      assert.ok(!dataVolumes.has(volume), `${name}: ${volume} is another node's store`);
      dataVolumes.add(volume);
    }

    const clients = Object.entries(services).filter(([, s]) => (s.command ?? []).includes('--nats'));
    assert.deepEqual(clients.map(([n]) => n).sort(), ['agent', 'controller', 'controller-standby']);
    for (const [name, svc] of clients) {
      const urls = option(svc.command!, '--nats')[0].split(',');
      assert.deepEqual(urls.sort(), [...clientUrls].sort(), `${name}: every node's URL`);
      for (const n of natsNodes) assert.ok(name === 'agent' || svc.depends_on?.includes(n), `${name}: starts after ${n}`);
    }
    for (const name of ['controller', 'controller-standby']) {
      assert.deepEqual(option(services[name].command!, '--nats-replicas'), [String(natsNodes.length)], `${name} keeps a copy on every node`);
    }
    // Either controller may lead: the agent is given both.
    const agentControllers = option(services.agent.command!, '--controller')[0].split(',').sort();
    assert.deepEqual(agentControllers, ['controller-standby:7100', 'controller:7100']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
