// A NATS cluster's configuration without a server: node options and their defaults, the
// refusals, what one node's configuration says, and `damon-fleet credentials --node`
// writing them (0600, the route password made once and never printed).
// test/integration/nats-cluster.test.ts runs the same configurations in real nats-servers.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import {
  DEFAULT_ROUTE_PORT,
  NATS_ROUTE_USER,
  checkClusterNodes,
  parseClusterNode,
  renderClusterNodeConf,
  type NatsClusterNode,
} from '../../common/nats-cluster.js';
import { parseHostPort } from '../../common/cli-values.js';

const BIN = fileURLToPath(new URL('../../../bin/damon-fleet.js', import.meta.url));
const ANY = { host: '0.0.0.0', port: 4222 };
const PASSWORD = 'p'.repeat(43);

test('--node: defaults follow listen; on every interface the others dial the node by its name', () => {
  assert.deepEqual(parseClusterNode('nats-1', ANY), {
    name: 'nats-1',
    listen: ANY,
    cluster: { host: '0.0.0.0', port: DEFAULT_ROUTE_PORT },
    route: { host: 'nats-1', port: DEFAULT_ROUTE_PORT },
  });
  assert.deepEqual(parseClusterNode('n2,listen=127.0.0.1:4223,cluster=127.0.0.1:6223', ANY), {
    name: 'n2',
    listen: { host: '127.0.0.1', port: 4223 },
    cluster: { host: '127.0.0.1', port: 6223 },
    route: { host: '127.0.0.1', port: 6223 },
  });
  assert.deepEqual(parseClusterNode('n3,route=10.0.0.3:7000,cluster=:7000', ANY).route, { host: '10.0.0.3', port: 7000 });
  assert.deepEqual(parseClusterNode('n4,cluster=[::1]:6224', ANY).route, { host: '::1', port: 6224 });
  assert.throws(() => parseClusterNode('bad_name', ANY), /--node "bad_name": NAME first/);
  assert.throws(() => parseClusterNode('n1,port=1', ANY), /"port=1" is not listen=HOST:PORT/);
  assert.throws(() => parseClusterNode('n1,listen=1:2,listen=1:3', ANY), /listen= given twice/);
  assert.throws(() => parseClusterNode('n1,cluster=host:99999', ANY), /--node n1 cluster= "host:99999": expected HOST:PORT/);
  assert.throws(() => parseClusterNode(`n1,route=${'x'.repeat(5000)}`, ANY), (err: Error) => err.message.length < 300);
});

const node = (name: string, port: number): NatsClusterNode => ({
  name,
  listen: { host: '127.0.0.1', port: 4000 + port },
  cluster: { host: '127.0.0.1', port },
  route: { host: '127.0.0.1', port },
});

test('a cluster has at least three nodes, named once, each reached at its own address', () => {
  checkClusterNodes([node('a', 1), node('b', 2), node('c', 3)]);
  assert.throws(() => checkClusterNodes([node('a', 1), node('b', 2)]), /at least 3 nodes/);
  assert.throws(() => checkClusterNodes([node('a', 1), node('b', 2), node('a', 3)]), /node a: named twice/);
  assert.throws(() => checkClusterNodes([node('a', 1), node('b', 2), node('c', 2)]), /node c: route address 127\.0\.0\.1:2 is another node's too/);
});

test('a node dials every other node with the route credential and demands it', () => {
  const nodes = [node('a', 6001), node('b', 6002), node('c', 6003)];
  const text = renderClusterNodeConf('/etc/d/servers/b.conf', '/etc/d/nats/nats.conf', { nodes, storeDir: '/var/lib/nats' }, nodes[1], PASSWORD);
  assert.match(text, /^server_name: "b"$/m);
  assert.match(text, /^port: 10002$/m);
  assert.match(text, /^jetstream \{ store_dir: "\/var\/lib\/nats\/b" \}$/m);
  assert.match(text, /^include "\.\.\/nats\/nats\.conf"$/m);
  assert.match(text, /cluster \{\n {2}name: "damon"\n {2}host: "127\.0\.0\.1"\n {2}port: 6002\n/);
  assert.ok(text.includes(`authorization { user: "${NATS_ROUTE_USER}", password: "${PASSWORD}", timeout: 2 }`));
  const routes = [...text.matchAll(/"nats-route:\/\/([^:]+):([^@]+)@([^"]+)"/g)].map((m) => [m[1], m[2], m[3]]);
  assert.deepEqual(routes, [
    [NATS_ROUTE_USER, PASSWORD, '127.0.0.1:6001'],
    [NATS_ROUTE_USER, PASSWORD, '127.0.0.1:6003'],
  ]);
  const v6 = { ...nodes[0], name: 'v6', route: { host: '::1', port: 6009 } };
  assert.match(renderClusterNodeConf('/x/a.conf', '/x/n.conf', { nodes: [...nodes, v6], storeDir: '/s' }, nodes[0], PASSWORD), /@\[::1\]:6009"/);
});

test('parseHostPort: HOST:PORT, [v6]:PORT, :PORT', () => {
  assert.deepEqual(parseHostPort('--x', 'nats-1:6222'), { host: 'nats-1', port: 6222 });
  assert.deepEqual(parseHostPort('--x', '[::]:6222'), { host: '::', port: 6222 });
  assert.deepEqual(parseHostPort('--x', ':6222'), { host: '', port: 6222 });
  assert.throws(() => parseHostPort('--x', 'h:70000'), /--x "h:70000": expected HOST:PORT/);
  assert.throws(() => parseHostPort('--x', 'h'), /expected HOST:PORT/);
});

function credentials(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, 'credentials', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('damon-fleet credentials --node: one 0600 configuration per node; the password kept across runs and never printed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'damon-cluster-creds-'));
  try {
    const creds = join(dir, 'creds');
    const confs = join(creds, 'nats', 'servers');
    const args = ['--dir', creds, '--agent', 'agent-1=agent', '--server-conf', confs, '--listen', '0.0.0.0:4222', '--store', '/data'];
    const nodes = ['--node', 'nats-1', '--node', 'nats-2', '--node', 'nats-3'];
    const first = credentials([...args, ...nodes]);
    assert.equal(first.code, 0, first.err);
    const passwordFile = join(creds, 'nats', 'route.password');
    const password = readFileSync(passwordFile, 'utf8').trim();
    assert.match(password, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(statSync(passwordFile).mode & 0o777, 0o600);
    assert.ok(!first.out.includes(password) && !first.err.includes(password), 'the password is never printed');
    assert.match(first.out, /created .*route\.password/);
    for (const n of ['nats-1', 'nats-2', 'nats-3']) {
      const f = join(confs, `${n}.conf`);
      assert.equal(statSync(f).mode & 0o777, 0o600, f);
      const text = readFileSync(f, 'utf8');
      assert.match(text, new RegExp(`^server_name: "${n}"$`, 'm'));
      assert.match(text, new RegExp(`^jetstream \\{ store_dir: "/data/${n}" \\}$`, 'm'));
      assert.match(text, /^include "\.\.\/nats\.conf"$/m);
      const others = ['nats-1', 'nats-2', 'nats-3'].filter((o) => o !== n);
      assert.deepEqual([...text.matchAll(/@([^"]+)"/g)].map((m) => m[1]), others.map((o) => `${o}:6222`));
      assert.equal(text.split(password).length - 1, 3, 'the password: in the authorization and both routes');
    }
    const again = credentials([...args, ...nodes]);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /kept {4}.*route\.password/);
    assert.equal(readFileSync(passwordFile, 'utf8').trim(), password, 'kept');

    const two = credentials([...args, '--node', 'nats-1', '--node', 'nats-2']);
    assert.equal(two.code, 2);
    assert.match(two.err, /at least 3 nodes/);
    const clash = credentials(['--dir', creds, '--server-conf', join(creds, 'nats'), '--listen', '0.0.0.0:4222', '--store', '/data', '--node', 'nats', '--node', 'b', '--node', 'c']);
    assert.equal(clash.code, 1);
    assert.match(clash.err, /node nats: its configuration would replace .*nats\.conf; give --server-conf another folder/);
    const alone = credentials(['--dir', creds, ...nodes]);
    assert.equal(alone.code, 2);
    assert.match(alone.err, /--node needs --server-conf DIR, --listen HOST:PORT and --store DIR/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
