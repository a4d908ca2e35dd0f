// The kdamond driver on a FAKE DAMON sysfs tree (temp dir + FakeKernel answering writes as
// Linux 6.12 does): it creates its own kdamond, refuses an interface busy with another
// user's kdamonds, writes exactly the files of its own kdamond, checks before every write
// that the kdamond is still its own, and cleans up only what is still its own.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { validateAttributes } from '../../agent/engine/attrs.js';
import { OperationsUnavailableError } from '../../agent/engine/operations.js';
import { KdamondBusyError, KdamondDriver, KdamondOwnershipError } from '../../agent/kdamond/kdamond-driver.js';
import { KernelFileError } from '../../agent/kdamond/kernel-files.js';
import { FakeKernel } from './kdamond-fake-kernel.js';

const KD = 'sys/kernel/mm/damon/admin/kdamonds';
const ATTRS = validateAttributes({ samplingUs: 5000, aggregationUs: 100_000, updateUs: 1_000_000, minNrRegions: 10, maxNrRegions: 1000 });

const fakes: FakeKernel[] = [];
function fake(...a: ConstructorParameters<typeof FakeKernel>): FakeKernel {
  const f = new FakeKernel(...a);
  fakes.push(f);
  return f;
}
afterEach(() => {
  for (const f of fakes.splice(0)) f.remove();
});

test('fake tree: claim, configure, on and release write exactly nr_kdamonds and files of kdamonds/0', async () => {
  const k = fake();
  k.addProcess(100);
  k.addProcess(200);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  assert.equal(d.index, 0);
  await d.configureMonitoring(ATTRS, [100, 200]);
  const kpid = await d.turnOn();
  assert.equal(kpid, k.kdamondPid(0));
  assert.deepEqual(await d.status(), { state: 'on', pid: kpid });
  const report = await d.release();
  assert.deepEqual(report, { turnedOff: true, removed: true });
  const c = `${KD}/0/contexts/0`;
  assert.deepEqual(k.written(), [
    { path: `${KD}/nr_kdamonds`, value: '1' },
    { path: `${KD}/0/contexts/nr_contexts`, value: '1' },
    { path: `${c}/operations`, value: 'vaddr' },
    { path: `${c}/monitoring_attrs/intervals/sample_us`, value: '5000' },
    { path: `${c}/monitoring_attrs/intervals/aggr_us`, value: '100000' },
    { path: `${c}/monitoring_attrs/intervals/update_us`, value: '1000000' },
    { path: `${c}/monitoring_attrs/nr_regions/min`, value: '10' },
    { path: `${c}/monitoring_attrs/nr_regions/max`, value: '1000' },
    { path: `${c}/targets/nr_targets`, value: '2' },
    { path: `${c}/targets/0/pid_target`, value: '100' },
    { path: `${c}/targets/1/pid_target`, value: '200' },
    { path: `${KD}/0/state`, value: 'on' },
    { path: `${KD}/0/state`, value: 'off' },
    { path: `${KD}/nr_kdamonds`, value: '0' },
  ]);
  assert.equal(k.get(`${KD}/nr_kdamonds`), '0');
  assert.equal(k.has(`${KD}/0`), false, 'our kdamond directory is gone');
  assert.deepEqual(await d.release(), { turnedOff: false, removed: false }, 'release is idempotent');
});

test('fake tree: an intervals goal goes to intervals_goal/ where the kernel has it, and is refused clearly where it does not', async () => {
  const goal = { accessBp: 400, aggrs: 3, minSampleUs: 1_000, maxSampleUs: 200_000 };
  const attrs = validateAttributes({ ...ATTRS, intervalsGoal: goal });
  const g = `${KD}/0/contexts/0/monitoring_attrs/intervals/intervals_goal`;

  const k615 = fake({ intervalsGoal: true });
  k615.addProcess(100);
  const d = await KdamondDriver.claim(k615, k615.sysfsRoot);
  await d.configureMonitoring(attrs, [100]);
  assert.deepEqual(
    ['access_bp', 'aggrs', 'min_sample_us', 'max_sample_us'].map((f) => k615.get(`${g}/${f}`)),
    ['400', '3', '1000', '200000'],
  );
  await d.release();

  const k612 = fake();
  k612.addProcess(100);
  const old = await KdamondDriver.claim(k612, k612.sysfsRoot);
  await assert.rejects(old.configureMonitoring(attrs, [100]), (e: unknown) =>
    e instanceof OperationsUnavailableError && /intervals_goal is not supported by this kernel \(no .*intervals_goal; Linux 6\.15 added/.test(e.message));
  assert.equal(k612.written().some((w) => w.path.includes('intervals_goal')), false, 'nothing written there');
  await old.release();
  // Without a goal a 6.15 kernel's intervals_goal is left alone (tuning stays off).
  const plain = fake({ intervalsGoal: true });
  plain.addProcess(100);
  const p = await KdamondDriver.claim(plain, plain.sysfsRoot);
  await p.configureMonitoring(ATTRS, [100]);
  assert.equal(plain.written().some((w) => w.path.includes('intervals_goal')), false);
  await p.release();
});

test('fake tree: refuses when another user\'s kdamond runs, writing nothing', async () => {
  const k = fake();
  k.addForeignKdamond('on', 812);
  const before = k.snapshot();
  await assert.rejects(KdamondDriver.claim(k, k.sysfsRoot), (e: unknown) => {
    assert.ok(e instanceof KdamondBusyError);
    assert.ok(e instanceof OperationsUnavailableError, 'the agent reports it like any unavailable operations');
    assert.match(e.message, /is in use: nr_kdamonds is 1 \(kdamond 0: on \(pid 812\)\)/);
    assert.match(e.message, /deletes every kdamond directory with its settings/);
    return true;
  });
  assert.deepEqual(k.log, []);
  assert.deepEqual(k.snapshot(), before);
});

test('fake tree: refuses when another user\'s kdamond directory exists even though it is off', async () => {
  const k = fake();
  k.addForeignKdamond('off');
  k.addForeignKdamond('on', 900);
  const before = k.snapshot();
  await assert.rejects(KdamondDriver.claim(k, k.sysfsRoot), /nr_kdamonds is 2 \(kdamond 0: off; kdamond 1: on \(pid 900\)\)/);
  assert.deepEqual(k.log, []);
  assert.deepEqual(k.snapshot(), before);
});

test('fake tree: a kdamond that appears between our read and our write makes the kernel say EBUSY, and we refuse', async () => {
  const k = fake();
  // The kernel answers EBUSY to our nr_kdamonds write; by then another user's kdamond runs.
  k.failOn(`${KD}/nr_kdamonds`, 'EBUSY');
  const orig = k.write.bind(k);
  k.write = async (p, v) => {
    if (p.endsWith('nr_kdamonds')) k.addForeignKdamond('on', 4321);
    return orig(p, v);
  };
  await assert.rejects(KdamondDriver.claim(k, k.sysfsRoot), (e: unknown) => e instanceof KdamondBusyError && /kdamond 0: on \(pid 4321\)/.test(e.message));
});

test('fake tree: a directory recreated by another user is detected before our next write, and left alone', async () => {
  const k = fake();
  k.addProcess(100);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  await d.set('contexts/nr_contexts', 1);
  k.otherUserWritesNrKdamonds(1);
  const logged = k.log.length;
  await assert.rejects(d.set('contexts/0/operations', 'vaddr'), (e: unknown) => {
    assert.ok(e instanceof KdamondOwnershipError);
    assert.match(e.message, /no longer the one we created: .*nr_contexts reads "0" but we wrote "1"/);
    return true;
  });
  const report = await d.release();
  assert.equal(report.removed, false);
  assert.match(report.leftAlone ?? '', /no longer the one we created/);
  assert.equal(k.log.length, logged, 'nothing written after the directory stopped being ours');
  assert.equal(k.get(`${KD}/nr_kdamonds`), '1');
});

test('fake tree: a kdamond someone else restarted is theirs: release neither turns it off nor removes it', async () => {
  const k = fake();
  k.addProcess(100);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  await d.configureMonitoring(ATTRS, [100]);
  const ours = await d.turnOn();
  k.kdamondStops();
  const theirs = k.kdamondRestartedBySomeoneElse();
  await assert.rejects(d.command('update_schemes_tried_regions'), new RegExp(`now runs as pid ${theirs}, not as the pid ${ours} we started`));
  const logged = k.log.length;
  const report = await d.release();
  assert.deepEqual(report, {
    turnedOff: false,
    removed: false,
    leftAlone: `kdamond 0 runs as pid ${theirs}, not as the pid ${ours} we started: someone else restarted it, so it is theirs; left it alone`,
  });
  assert.equal(k.log.length, logged);
  assert.equal(k.get(`${KD}/0/state`), 'on');
});

test('fake tree: a kdamond that stopped on its own is removed without writing "off"', async () => {
  const k = fake();
  k.addProcess(100);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  await d.configureMonitoring(ATTRS, [100]);
  await d.turnOn();
  k.kdamondStops();
  assert.deepEqual(await d.release(), { turnedOff: false, removed: true });
  assert.equal(k.written().some((w) => w.value === 'off'), false);
  assert.equal(k.get(`${KD}/nr_kdamonds`), '0');
});

test('fake tree: a kdamond that stops by itself between our pid read and "off" (EPERM) is still removed', async () => {
  const k = fake();
  k.addProcess(100);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  await d.configureMonitoring(ATTRS, [100]);
  await d.turnOn();
  const orig = k.write.bind(k);
  k.write = async (p, v) => {
    // Its last target exits just before our "off" arrives: Linux 6.12 answers EPERM.
    if (p.endsWith('/state') && v === 'off') k.kdamondStops();
    return orig(p, v);
  };
  assert.deepEqual(await d.release(), { turnedOff: false, removed: true });
  assert.equal(k.get(`${KD}/nr_kdamonds`), '0');
});

test('fake tree: "off" of a kdamond never turned on is EINVAL, of one that ran and stopped EPERM (as in Linux 6.12)', async () => {
  const k = fake();
  k.addProcess(100);
  await KdamondDriver.claim(k, k.sysfsRoot);
  await assert.rejects(k.write(`${k.sysfsRoot}/admin/kdamonds/0/state`, 'off'), { code: 'EINVAL' });
  await k.write(`${k.sysfsRoot}/admin/kdamonds/0/contexts/nr_contexts`, '1');
  await k.write(`${k.sysfsRoot}/admin/kdamonds/0/contexts/0/targets/nr_targets`, '1');
  await k.write(`${k.sysfsRoot}/admin/kdamonds/0/contexts/0/targets/0/pid_target`, '100');
  await k.write(`${k.sysfsRoot}/admin/kdamonds/0/state`, 'on');
  k.kdamondStops();
  await assert.rejects(k.write(`${k.sysfsRoot}/admin/kdamonds/0/state`, 'off'), { code: 'EPERM' });
});

test('fake tree: configuring reads back only a few settings before each write, and all of them before "on"', async () => {
  const k = fake();
  k.addProcess(100);
  const reads: string[] = [];
  const orig = k.read.bind(k);
  k.read = async (p) => {
    reads.push(p);
    return orig(p);
  };
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  const before = reads.length;
  await d.configureMonitoring(ATTRS, [100]);
  const settings = d.writtenSettings.size - 1;
  // At most three read-backs per write, plus avail_operations: linear in the settings.
  assert.ok(reads.length - before <= 3 * settings + 1, `${reads.length - before} reads for ${settings} settings`);
  reads.length = 0;
  await d.turnOn();
  for (const p of d.writtenSettings.keys()) assert.ok(reads.includes(p), `${p} is read back before "on"`);
  await d.release();
});

test('fake tree: EBUSY from DAMON\'s sysfs lock is retried; other errors name the file and value', async () => {
  const k = fake();
  k.addProcess(100);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  await d.configureMonitoring(ATTRS, [100]);
  await d.turnOn();
  k.failOn(`${KD}/0/state`, 'EBUSY', 2);
  assert.deepEqual(await d.release(), { turnedOff: true, removed: true });
  assert.equal(k.written().filter((w) => w.value === 'off').length, 3);

  const k2 = fake();
  k2.addProcess(100);
  const d2 = await KdamondDriver.claim(k2, k2.sysfsRoot);
  k2.failOn(`${KD}/0/contexts/nr_contexts`, 'ENOMEM');
  await assert.rejects(d2.configureMonitoring(ATTRS, [100]), (e: unknown) => {
    assert.ok(e instanceof KernelFileError);
    assert.match(e.message, /kdamonds\/0\/contexts\/nr_contexts: writing "1" failed with ENOMEM/);
    return true;
  });
  assert.deepEqual(await d2.release(), { turnedOff: false, removed: true }, 'a half-configured kdamond of ours is removed');
});

test('fake tree: reads of pid and state answered EBUSY (DAMON\'s sysfs lock held by a command, as Linux 6.12 does) are retried', async () => {
  const k = fake();
  k.addProcess(100);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  await d.configureMonitoring(ATTRS, [100]);
  const kpid = await d.turnOn();
  k.failOn(`${KD}/0/pid`, 'EBUSY', 3, 'read');
  k.failOn(`${KD}/0/state`, 'EBUSY', 2, 'read');
  assert.deepEqual(await d.status(), { state: 'on', pid: kpid });
  k.failOn(`${KD}/0/pid`, 'EBUSY', 2, 'read');
  assert.deepEqual(await d.release(), { turnedOff: true, removed: true }, 'a busy moment does not leave our kdamond behind');
  assert.equal(k.get(`${KD}/nr_kdamonds`), '0');
});

test('fake tree: a kernel without vaddr operations is refused right after creating the context', async () => {
  const k = fake({ availOperations: 'paddr' });
  k.addProcess(100);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  await assert.rejects(d.configureMonitoring(ATTRS, [100]), (e: unknown) => {
    assert.ok(e instanceof OperationsUnavailableError);
    assert.match(e.message, /has no vaddr operations \(.*avail_operations lists: paddr\); it needs CONFIG_DAMON_VADDR/);
    return true;
  });
  assert.equal(k.written().some((w) => w.path.endsWith('/operations')), false);
  assert.deepEqual(await d.release(), { turnedOff: false, removed: true });
});

test('fake tree: "on" refused by the kernel says the kdamond did not start and why it may be', async () => {
  const k = fake();
  k.addProcess(100);
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  await d.configureMonitoring(ATTRS, [100]);
  k.killProcess(100);
  await assert.rejects(d.turnOn(), /kdamond 0 did not start: .*state: writing "on" failed with EINVAL.*a target process may have exited/);
  assert.deepEqual(await d.release(), { turnedOff: false, removed: true });
});

test('fake tree: setting paths outside our kdamond directory are refused', async () => {
  const k = fake();
  const d = await KdamondDriver.claim(k, k.sysfsRoot);
  for (const bad of ['../1/state', '/etc/passwd', 'contexts/../../nr_kdamonds', '']) {
    await assert.rejects(d.set(bad, 1), /must be relative and inside/);
  }
  await d.release();
});
