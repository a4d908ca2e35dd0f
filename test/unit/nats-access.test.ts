// NATS identities without a server: the credentials directory, the permission table's
// invariants, seed files and URLs on the command lines. test/integration/nats-permissions
// checks the same table against a real nats-server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  NATS_PERMISSIONS,
  ensureNatsCredentials,
  inboxPrefix,
  permissionsOf,
  publicKeyOfSeedFile,
  readNkeySeed,
  type NatsIdentity,
} from '../../common/nats-access.js';
import { checkNatsUrls, redactNatsUrl } from '../../common/nats.js';
import { SESSIONS_KEY_PREFIX, SESSIONS_STREAM, recordsSubject } from '../../common/subjects.js';
import { UsageError, parseAgentArgs } from '../../agent/daemon/main.js';
import { parseControllerArgs } from '../../controller/main.js';

function withDir(f: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'damon-nats-access-'));
  try {
    f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const mode = (p: string) => statSync(p).mode & 0o777;

test('ensureNatsCredentials: the agreed layout, 0600 seeds in 0700 directories, public keys only in the conf', () => {
  withDir((base) => {
    const dir = join(base, 'creds');
    const r = ensureNatsCredentials(dir, { agents: ['h1', 'db1.example.com'], readers: ['optimizer'] });
    const seeds = ['controller', 'operator', 'agents/db1.example.com', 'agents/h1', 'readers/optimizer'].map((d) => join(dir, d, 'nats.nk'));
    assert.deepEqual(r.created, seeds);
    assert.deepEqual(r.kept, []);
    assert.equal(r.conf, join(dir, 'nats', 'nats.conf'));
    for (const s of seeds) {
      assert.equal(mode(s), 0o600, s);
      assert.match(readFileSync(s, 'utf8'), /^SU[A-Z2-7]{56}\n$/);
    }
    for (const d of ['', 'agents', 'agents/h1', 'readers', 'controller', 'nats']) assert.equal(mode(join(dir, d)), 0o700, d);
    const conf = readFileSync(r.conf, 'utf8');
    assert.doesNotMatch(conf, /\bS[A-Z][A-Z2-7]{56}\b/, 'no seed in the server configuration');
    for (const s of seeds) assert.ok(conf.includes(`nkey: "${publicKeyOfSeedFile(s)}"`), s);
    assert.match(conf, /accounts \{\n {2}DAMON \{\n {4}jetstream: enabled\n/);
    assert.match(conf, /# agent db1\.example\.com\n/);
  });
});

test('ensureNatsCredentials: idempotent; keeps seeds and identities, adds new ones; deleting a directory removes one', () => {
  withDir((dir) => {
    ensureNatsCredentials(dir, { agents: ['h1'], readers: [] });
    const h1 = join(dir, 'agents/h1/nats.nk');
    const before = readFileSync(h1, 'utf8');
    const again = ensureNatsCredentials(dir, { agents: ['h1'], readers: [] });
    assert.deepEqual(again.created, []);
    assert.equal(readFileSync(h1, 'utf8'), before);
    const more = ensureNatsCredentials(dir, { agents: ['h2'], readers: ['r'] });
    assert.deepEqual(more.created, [join(dir, 'agents/h2/nats.nk'), join(dir, 'readers/r/nats.nk')]);
    assert.ok(readFileSync(more.conf, 'utf8').includes(publicKeyOfSeedFile(h1)), 'h1 stays without being named again');
    const h1Key = publicKeyOfSeedFile(h1);
    rmSync(join(dir, 'agents/h1'), { recursive: true });
    const fewer = ensureNatsCredentials(dir, { agents: [], readers: [] });
    assert.ok(!readFileSync(fewer.conf, 'utf8').includes(h1Key), 'a deleted identity has no user');
    assert.equal(fewer.kept.length, 4);
  });
});

test('ensureNatsCredentials: bad names are refused before anything is written', () => {
  withDir((dir) => {
    assert.throws(() => ensureNatsCredentials(join(dir, 'x'), { agents: ['bad_host'], readers: [] }), /agent host "bad_host": not a valid host name/);
    assert.throws(() => ensureNatsCredentials(join(dir, 'x'), { agents: [], readers: ['../up'] }), /reader "\.\.\/up"/);
    assert.throws(() => statSync(join(dir, 'x')));
  });
});

test('seed files: errors name the file, never quote its content', () => {
  withDir((dir) => {
    const f = join(dir, 'nats.nk');
    writeFileSync(f, 'SUTOPSECRETBUTWRONG\n');
    assert.throws(() => readNkeySeed(f), (e: Error) => e.message.includes(f) && !e.message.includes('TOPSECRET'));
    assert.throws(() => readNkeySeed(join(dir, 'missing')), /NATS nkey file .*missing: ENOENT/);
  });
});

const KEY = 'UAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const all = (id: NatsIdentity) => permissionsOf(id, KEY);

test('permission table: allow-lists only; the bucket is the controller\'s; an agent publishes its own host only', () => {
  const ids: NatsIdentity[] = [
    { role: 'controller' },
    { role: 'operator' },
    { role: 'agent', host: 'db1.example.com' },
    { role: 'reader', name: 'r' },
    { role: 'optimizer', name: 'o' },
  ];
  for (const id of ids) {
    const p = all(id);
    for (const s of [...p.publish, ...p.subscribe]) assert.ok(!/^[>*]$|^\$JS\.API\.>$|^\$JS\.>$/.test(s), `${id.role}: ${s} is too wide`);
    assert.ok(p.subscribe.includes(`${inboxPrefix(KEY)}.>`), `${id.role}: its own inbox`);
    assert.ok(!p.subscribe.some((s) => s.startsWith('_INBOX.') || s === '_INBOX_>'), `${id.role}: no shared inbox`);
    const writesBucket = p.publish.some((s) => s.startsWith(SESSIONS_KEY_PREFIX));
    assert.equal(writesBucket, id.role === 'controller', `${id.role}: bucket writes`);
    for (const op of ['PURGE', 'DELETE']) assert.ok(!p.publish.includes(`$JS.API.STREAM.${op}.${SESSIONS_STREAM}`), `${id.role}: ${op} of the bucket`);
    // Only the bucket's owner changes its stream (its replica count).
    assert.equal(p.publish.includes(`$JS.API.STREAM.UPDATE.${SESSIONS_STREAM}`), id.role === 'controller', `${id.role}: UPDATE of the bucket`);
  }
  assert.deepEqual(all({ role: 'agent', host: 'db1.example.com' }).publish, [
    'damon.records.*.db1_example_com.*',
    'damon.stat.*.db1_example_com',
    'damon.actions.*.db1_example_com',
  ]);
  // Action events: only the host's agent publishes them; readers, optimizers and the operator read them.
  for (const id of ids) {
    const p = all(id);
    assert.equal(p.publish.some((s) => s.startsWith('damon.actions')), id.role === 'agent', `${id.role}: publishes action events`);
    assert.equal(p.subscribe.includes('damon.actions.>'), ['reader', 'optimizer', 'operator'].includes(id.role), `${id.role}: reads action events`);
    assert.equal(p.publish.includes('$JS.API.CONSUMER.MSG.NEXT.DAMON_ACTIONS.*'), id.role !== 'agent', `${id.role}: consumes DAMON_ACTIONS`);
  }
  // An optimizer reads what a reader reads, and publishes nothing a reader may not.
  assert.deepEqual(all({ role: 'optimizer', name: 'o' }), all({ role: 'reader', name: 'r' }));
  assert.ok(!all({ role: 'controller' }).publish.some((s) => s.startsWith('damon.stat')), 'the controller publishes no DAMON_STAT');
  for (const role of ['reader', 'operator'] as const) {
    assert.ok(all(role === 'reader' ? { role, name: 'r' } : { role }).subscribe.includes('damon.stat.>'), `${role} reads DAMON_STAT`);
  }
  assert.deepEqual(all({ role: 'agent', host: 'db1.example.com' }).subscribe, [`${inboxPrefix(KEY)}.>`]);
  assert.ok(!all({ role: 'controller' }).publish.some((s) => s.startsWith('damon.records')), 'the controller publishes no records');
  assert.ok(!all({ role: 'reader', name: 'r' }).publish.some((s) => /^damon\.|STREAM\.(PURGE|DELETE|UPDATE|CREATE|MSG)/.test(s)));
  assert.ok(all({ role: 'operator' }).publish.includes('$JS.API.STREAM.PURGE.DAMON_RECORDS'));
  assert.ok(!recordsSubject('s', 'db1.example.com', 1).includes('*'));
  assert.deepEqual(Object.keys(NATS_PERMISSIONS).sort(), ['agent', 'controller', 'operator', 'optimizer', 'reader']);
});

test('NATS URLs: credentials in them are refused, and redacted in the message', () => {
  assert.deepEqual(checkNatsUrls('nats://127.0.0.1:4222'), ['nats://127.0.0.1:4222']);
  for (const u of ['nats://alice:hunter2@h:4222', 'nats://s3cr3ttoken@h:4222', 'alice:hunter2@h:4222']) {
    assert.throws(() => checkNatsUrls(['nats://ok:1', u]), (e: Error) => /credentials do not go in URLs/.test(e.message) && !/hunter2|s3cr3t/.test(e.message));
  }
  assert.equal(redactNatsUrl('nats://alice:hunter2@h:4222'), 'nats://***@h:4222');
  assert.equal(redactNatsUrl('tls://h:4222'), 'tls://h:4222');
});

test('command lines: --nats-nkey is checked at parse time; --nats-token-file is gone', () => {
  withDir((dir) => {
    const seed = join(dir, 'agents/h1/nats.nk');
    ensureNatsCredentials(dir, { agents: ['h1'], readers: [] });
    const o = parseAgentArgs(['--controller', 'c:1', '--insecure', '--nats-nkey', seed]);
    assert.equal(o.natsNkeyFile, seed);
    assert.throws(() => parseAgentArgs(['--controller', 'c:1', '--insecure', '--nats-nkey', join(dir, 'nope')]), (e) => e instanceof UsageError && /nope: ENOENT/.test((e as Error).message));
    assert.throws(() => parseAgentArgs(['--controller', 'c:1', '--insecure', '--nats-token-file', seed]), UsageError);
    assert.throws(() => parseAgentArgs(['--controller', 'c:1', '--insecure', '--nats', 'nats://u:p@h:1']), /credentials do not go in URLs/);
    assert.throws(() => parseAgentArgs(['--controller', 'c:1', '--insecure', '--nats-cert', seed]), /--nats-cert and --nats-key go together/);
    const c = parseControllerArgs(['--insecure', '--nats-nkey', join(dir, 'controller/nats.nk'), '--nats-ca', seed]);
    assert.equal(c.natsNkeyFile, join(dir, 'controller/nats.nk'));
    assert.deepEqual(c.natsTls, { ca: seed, cert: undefined, key: undefined });
    assert.throws(() => parseControllerArgs(['--insecure', '--nats', 'nats://tok@h:1']), /credentials do not go in URLs/);
  });
});
