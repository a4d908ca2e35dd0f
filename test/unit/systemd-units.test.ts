// deploy/systemd's units: systemd-analyze verify where it is installed, the sandboxing
// every unit promises, the agent's capabilities as documented (and as in the Kubernetes
// manifest), and each ExecStart parsed by the daemon's own parser after systemd's
// expansions (%d = $CREDENTIALS_DIRECTORY holding what LoadCredential= copies from a real
// `damon-fleet credentials` run, %H, %S, ${VAR} from the example environment files).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { parseAgentArgs } from '../../agent/daemon/main.js';
import { parseControllerArgs } from '../../controller/main.js';
import { credentialsLayout } from '../../common/credentials-layout.js';
import { SUGGESTED_METRICS_PORTS } from '../../common/metrics-server.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const UNITS = join(ROOT, 'deploy', 'systemd');
const BIN = join(ROOT, 'bin', 'damon-fleet.js');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
const NATS_SERVER = '/usr/sbin/nats-server';
const HOST = hostname();

type Unit = Map<string, string[]>;

/** [Section] Key=value lines (continuations joined), as key "Section.Key" -> every value given. */
function readUnit(name: string): Unit {
  const text = readFileSync(join(UNITS, name), 'utf8').replace(/\\\n\s*/g, ' ');
  const unit: Unit = new Map();
  let section = '';
  for (const line of text.split('\n')) {
    if (/^\s*(#|;|$)/.test(line)) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1];
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `${name}: ${line}`);
    const key = `${section}.${line.slice(0, eq)}`;
    unit.set(key, [...(unit.get(key) ?? []), line.slice(eq + 1)]);
  }
  return unit;
}
const get = (u: Unit, key: string): string => {
  const v = u.get(key);
  assert.ok(v, `${key} is set`);
  assert.equal(v.length, 1, `${key} set once`);
  return v[0];
};
const readEnv = (file: string): Record<string, string> =>
  Object.fromEntries(
    readFileSync(join(UNITS, file), 'utf8')
      .split('\n')
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );

const agent = readUnit('damon-fleet-agent.service');
const controller = readUnit('damon-fleet-controller.service');
const nats = readUnit('nats-server.service');
const units: Array<[string, Unit]> = [['damon-fleet-agent.service', agent], ['damon-fleet-controller.service', controller], ['nats-server.service', nats]];

let scratch = '';
before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'damon-systemd-'));
  // NATS on three hosts; this host is one of them, so %H.conf exists for it.
  const nodes = [HOST, 'nats-b', 'nats-c'];
  const r = spawnSync(
    process.execPath,
    [BIN, 'credentials', '--dir', join(scratch, 'creds'), '--agent', `${HOST}=10.0.0.11`, '--server-conf', join(scratch, 'creds', 'nats'),
      '--listen', '0.0.0.0:4222', '--store', '/var/lib/nats', ...nodes.flatMap((n) => ['--node', n])],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
});
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Where /etc/damon-fleet/... of the units is in a credentials directory made by the command. */
function credentialSource(path: string): string {
  const layout = credentialsLayout(join(scratch, 'creds'));
  const m = /^\/etc\/damon-fleet\/(agent|controller|nats)\/(.+)$/.exec(path);
  assert.ok(m, `${path}: under /etc/damon-fleet/ROLE/`);
  const dir = { agent: layout.agent(HOST).dir, controller: layout.controller.dir, nats: join(layout.root, 'nats') }[m[1] as 'agent'];
  return join(dir, m[2].replace('%H', HOST));
}

/** $CREDENTIALS_DIRECTORY as systemd fills it from `unit`'s LoadCredential= lines. */
function credentialsDirectory(name: string, unit: Unit): string {
  const dir = join(scratch, `${name}-credentials`);
  mkdirSync(dir, { recursive: true });
  for (const spec of unit.get('Service.LoadCredential') ?? []) {
    const [id, from] = spec.split(':');
    assert.ok(existsSync(credentialSource(from)), `${name}: ${from} is a file damon-fleet credentials writes (${basename(from)})`);
    copyFileSync(credentialSource(from), join(dir, id));
  }
  return dir;
}

/** ExecStart's words after systemd's specifiers and ${VAR} expansion. */
function execStart(unit: Unit, env: Record<string, string>, credDir: string): string[] {
  return get(unit, 'Service.ExecStart')
    .trim()
    .split(/\s+/)
    .map((w) =>
      w
        .replace(/%d/g, credDir)
        .replace(/%H/g, HOST)
        .replace(/%S/g, '/var/lib')
        .replace(/\$\{([A-Z_]+)\}/g, (_, v: string) => {
          assert.ok(v in env, `\${${v}} is in the example environment file`);
          return env[v];
        }),
    );
}
const option = (args: string[], name: string): string[] => args.flatMap((a, i) => (args[i - 1] === name ? [a] : []));

test('systemd-analyze verify accepts every unit without a warning', (t) => {
  if (!existsSync(SYSTEMD_ANALYZE)) {
    t.skip(`${SYSTEMD_ANALYZE} is not installed`);
    return;
  }
  // verify checks that ExecStart's program exists: point the units at this checkout and node.
  const dir = mkdtempSync(join(scratch, 'units-'));
  const write = (name: string, text: string) => {
    writeFileSync(
      join(dir, name),
      text.replaceAll('/usr/bin/node', process.execPath).replaceAll('/opt/damon-fleet', ROOT).replaceAll(NATS_SERVER, existsSync(NATS_SERVER) ? NATS_SERVER : process.execPath),
    );
    return spawnSync(SYSTEMD_ANALYZE, ['verify', '--man=no', join(dir, name)], { encoding: 'utf8' });
  };
  for (const [name] of units) {
    const r = write(name, readFileSync(join(UNITS, name), 'utf8'));
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.equal(r.stderr.trim(), '', `${name}: no warning`);
  }
  // verify is live: a bad value is reported (its exit status stays 0, so stderr is what tells).
  const bad = write('bad.service', readFileSync(join(UNITS, units[0][0]), 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=stricter'));
  assert.match(bad.stderr, /protect system value/i);
});

test('every unit is sandboxed: read-only system, no home, private /tmp, no new privileges, restarted on failure', () => {
  for (const [name, u] of units) {
    assert.equal(get(u, 'Service.ProtectSystem'), 'strict', name);
    assert.equal(get(u, 'Service.ProtectHome'), 'yes', name);
    assert.equal(get(u, 'Service.PrivateTmp'), 'yes', name);
    assert.equal(get(u, 'Service.NoNewPrivileges'), 'yes', name);
    assert.equal(get(u, 'Service.Restart'), 'on-failure', name);
    assert.equal(get(u, 'Install.WantedBy'), 'multi-user.target', name);
    // Credentials only through LoadCredential: no secret in the environment or the unit.
    assert.ok(!u.has('Service.Environment'), `${name}: no Environment= (settings come from the env file, secrets from credentials)`);
  }
  // Only the agent is root, with exactly four capabilities; the others have none.
  for (const u of [controller, nats]) {
    assert.equal(get(u, 'Service.DynamicUser'), 'yes');
    assert.equal(get(u, 'Service.CapabilityBoundingSet'), '');
    assert.equal(get(u, 'Service.AmbientCapabilities'), '');
    assert.equal(get(u, 'Service.ProtectKernelTunables'), 'yes');
  }
  const caps = (v: string) => v.split(/\s+/).filter(Boolean).sort();
  assert.deepEqual(caps(get(agent, 'Service.CapabilityBoundingSet')), ['CAP_DAC_READ_SEARCH', 'CAP_SYS_ADMIN', 'CAP_SYS_NICE', 'CAP_SYS_PTRACE']);
  assert.deepEqual(caps(get(agent, 'Service.AmbientCapabilities')), ['CAP_DAC_READ_SEARCH', 'CAP_SYS_ADMIN', 'CAP_SYS_NICE', 'CAP_SYS_PTRACE']);
  // The same set as the Kubernetes DaemonSet's.
  const ds = parse(readFileSync(join(ROOT, 'deploy', 'kubernetes', 'agent.yaml'), 'utf8'));
  const added = ds.spec.template.spec.containers[0].securityContext.capabilities.add as string[];
  assert.deepEqual(added.map((c) => `CAP_${c}`).sort(), caps(get(agent, 'Service.CapabilityBoundingSet')));
  // /sys must stay writable for page_idle, damon and tracing: ProtectKernelTunables= would not.
  assert.ok(!agent.has('Service.ProtectKernelTunables'));
});

test("the agent's ExecStart parses with the agent's own parser, its credentials read from $CREDENTIALS_DIRECTORY", () => {
  const env = readEnv('agent.env');
  const args = execStart(agent, env, credentialsDirectory('agent', agent));
  assert.deepEqual(args.slice(0, 3), ['/usr/bin/node', '/opt/damon-fleet/bin/damon-fleet.js', 'agent']);
  const o = parseAgentArgs(args.slice(3));
  assert.equal(o.host, HOST);
  assert.equal(o.advertise, env.DAMON_ADVERTISE);
  assert.deepEqual(o.controller, env.DAMON_CONTROLLERS.split(','));
  assert.deepEqual(o.nats, env.DAMON_NATS.split(','));
  assert.ok(o.identities && o.token && o.natsNkeyFile);
  // The data directory is the state directory, the one writable path.
  assert.equal(get(agent, 'Service.StateDirectory'), 'damon-fleet');
  assert.equal(o.dataDir, '/var/lib/damon-fleet');
  assert.deepEqual(agent.get('Service.ReadWritePaths'), ['%S/damon-fleet']);
  assert.deepEqual(o.metrics, { host: '127.0.0.1', port: SUGGESTED_METRICS_PORTS.agent }, 'metrics on loopback only');
  // Every credential option names a file in %d; the same options as docker-compose's agent.
  const raw = get(agent, 'Service.ExecStart').split(/\s+/);
  for (const f of ['--nats-nkey', '--token-file', '--identities']) assert.match(option(raw, f)[0], /^%d\//, f);
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')).services.agent.command as string[];
  assert.deepEqual(raw.filter((a) => a.startsWith('--')).sort(), compose.filter((a) => a.startsWith('--')).sort());
});

test("the controller's ExecStart parses with the controller's own parser, its credentials read from $CREDENTIALS_DIRECTORY", () => {
  const env = readEnv('controller.env');
  const args = execStart(controller, env, credentialsDirectory('controller', controller));
  assert.deepEqual(args.slice(0, 3), ['/usr/bin/node', '/opt/damon-fleet/bin/damon-fleet.js', 'controller']);
  const o = parseControllerArgs(args.slice(3));
  assert.equal(o.advertise, env.DAMON_ADVERTISE);
  assert.deepEqual(o.nats, env.DAMON_NATS.split(','));
  assert.equal(o.streams?.replicas, Number(env.DAMON_NATS_REPLICAS));
  assert.ok(o.identities && o.agentKey && o.natsNkeyFile);
  assert.deepEqual(o.metrics, { host: '127.0.0.1', port: SUGGESTED_METRICS_PORTS.controller });
  const raw = get(controller, 'Service.ExecStart').split(/\s+/);
  for (const f of ['--nats-nkey', '--identities', '--agent-key-file']) assert.match(option(raw, f)[0], /^%d\//, f);
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')).services.controller.command as string[];
  assert.deepEqual(raw.filter((a) => a.startsWith('--')).sort(), compose.filter((a) => a.startsWith('--')).sort());
  // Agents are told this host's controllers: the example agent.env names this one.
  assert.ok(readEnv('agent.env').DAMON_CONTROLLERS.split(',').includes(env.DAMON_ADVERTISE));
});

test("NATS: the node's configuration and the accounts file it includes land side by side in $CREDENTIALS_DIRECTORY; nats-server accepts them", (t) => {
  const dir = credentialsDirectory('nats', nats);
  const args = execStart(nats, {}, dir);
  assert.equal(args[0], NATS_SERVER);
  const conf = option(args, '-c')[0];
  const body = readFileSync(conf, 'utf8');
  assert.match(body, new RegExp(`^server_name: "${HOST}"$`, 'm'));
  const include = /^include "([^"]+)"$/m.exec(body)![1];
  assert.ok(existsSync(join(dir, include)), `the include ${include} is in the credentials directory`);
  const store = /^jetstream \{ store_dir: "([^"]+)" \}$/m.exec(body)![1];
  assert.equal(store, `/var/lib/${get(nats, 'Service.StateDirectory')}/${HOST}`, 'JetStream in the state directory');
  if (!existsSync(NATS_SERVER)) {
    t.skip(`${NATS_SERVER} is not installed: the configuration was not checked by nats-server`);
    return;
  }
  const r = spawnSync(NATS_SERVER, ['-t', '-c', conf], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `nats-server -t: ${r.stderr}${r.stdout}`);
});
