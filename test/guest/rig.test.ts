// Tests of the guest rig itself: the guest kernel boots, runs the host's Node.js, reports
// output and exit status, tracks accesses through page_idle the way the agent relies on,
// and fails clearly. These tests need the kernel built by test/guest/build-kernel.sh; they
// fail (not skip) without it, with the error saying how to build it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { IdleProbeReport } from './idle-probe.js';
import { rigPaths } from './paths.js';
import { GuestRigError, resolveKernel, runInGuest } from './rig.js';
import { buildWorkload, parseWorkloadOutput, type WorkloadEvent } from './workload.js';

const MiB = 1 << 20;

test('the guest runs the host Node.js as root, with DAMON, page_idle and tracefs, and reports output and status', async () => {
  const marker = join(rigPaths().projectRoot, 'dist', `guest-write-${process.pid}`);
  const command = [
    `node -e 'console.log(JSON.stringify({ node: process.version, uid: process.getuid(), kernel: require("os").release() }))'`,
    'echo to-stderr >&2',
    'test -d /sys/kernel/mm/damon/admin/kdamonds && test -r /sys/kernel/mm/page_idle/bitmap && test -d /sys/kernel/tracing/events/damon && echo features-ok',
    'echo scratch > /tmp/scratch && cat /tmp/scratch',
    `echo "$RIG_TEST_VALUE" > '${marker}'`,
    'exit 7',
  ].join('\n');
  const r = await runInGuest(command, { env: { RIG_TEST_VALUE: "it's shared" }, timeoutMs: 90_000 });
  try {
    assert.equal(r.exitCode, 7, `stderr: ${r.stderr}`);
    const lines = r.stdout.trim().split('\n');
    const info = JSON.parse(lines[0]!) as { node: string; uid: number; kernel: string };
    assert.equal(info.node, process.version);
    assert.equal(info.uid, 0);
    assert.match(info.kernel, /^6\.12\./);
    assert.deepEqual(lines.slice(1), ['features-ok', 'scratch']);
    assert.equal(r.stderr, 'to-stderr\n');
    // The project folder is writable from the guest and the write shows on the host.
    assert.equal(readFileSync(marker, 'utf8'), "it's shared\n");
    assert.ok(r.bootMs > 0 && r.bootMs < r.totalMs, `bootMs ${r.bootMs}, totalMs ${r.totalMs}`);
  } finally {
    rmSync(marker, { force: true });
  }
});

test('page_idle in the guest shows exactly the hot 16 MiB of a 256 MiB workload as accessed, with and without huge pages', async () => {
  const workload = buildWorkload();
  const probe = fileURLToPath(new URL('./idle-probe.js', import.meta.url));
  const runCase = (name: string, thp: string) =>
    [
      `echo '== ${name}'`,
      `${workload} --size 256M --align 2M --thp ${thp} --hot 64M+16M > /tmp/${name}.jsonl &`,
      'pid=$!',
      `node ${probe} --layout /tmp/${name}.jsonl --wait-ms 1000`,
      'kill $pid && wait $pid',
      `cat /tmp/${name}.jsonl`,
    ].join('\n');
  const r = await runInGuest(`set -e\n${runCase('thp', 'hugepage')}\n${runCase('small', 'nohugepage')}`, {
    timeoutMs: 120_000,
  });
  assert.equal(r.exitCode, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);

  const sections = new Map<string, { report: IdleProbeReport; events: WorkloadEvent[] }>();
  for (const section of r.stdout.split(/^== /m).slice(1)) {
    const [name, reportLine, ...rest] = section.split('\n');
    sections.set(name!, { report: JSON.parse(reportLine!) as IdleProbeReport, events: parseWorkloadOutput(rest.join('\n')) });
  }
  assert.deepEqual([...sections.keys()], ['thp', 'small']);
  for (const [name, { report, events }] of sections) {
    const mapped = events.find((e) => e.event === 'mapped');
    const ready = events.find((e) => e.event === 'ready');
    const phase = events.find((e) => e.event === 'phase');
    const exit = events.find((e) => e.event === 'exit');
    assert.ok(mapped?.event === 'mapped' && ready?.event === 'ready' && phase?.event === 'phase', name);
    assert.equal(mapped.end - mapped.start, 256 * MiB);
    assert.equal(mapped.start % (2 * MiB), 0, `${name}: --align 2M`);
    assert.deepEqual(phase.hot, [{ start: mapped.start + 64 * MiB, end: mapped.start + 80 * MiB, probability: 1 }]);
    assert.equal(exit?.event === 'exit' && exit.reason, 'signal', `${name}: the workload ends on SIGTERM`);

    assert.equal(report.pages, 65536, name);
    assert.equal(report.present, 65536, `${name}: every page was touched`);
    assert.equal(report.hot.pages, 4096, name);
    // Frames in the bitmap's partial last word cannot be read back (at most 63 of them).
    assert.ok(report.hot.unreadable + report.cold.unreadable < 64, JSON.stringify(report));
    assert.equal(report.hot.accessed, 4096 - report.hot.unreadable, `${name}: every hot page reads as accessed`);
    // A few cold pages may still sit in a per-CPU LRU batch (15 a CPU), which page_idle
    // cannot mark idle, so they read as accessed; more would mean the idle flags fail.
    assert.ok(report.cold.accessed <= 30, `${name}: ${report.cold.accessed} of ${report.cold.pages} cold pages read as accessed`);
    if (name === 'thp') {
      assert.equal(ready.anonHugeBytes, 256 * MiB, 'MADV_HUGEPAGE on a 2 MiB aligned mapping gives huge pages');
      assert.equal(report.thpPages, 65536);
    } else {
      assert.equal(ready.anonHugeBytes, 0);
      assert.equal(report.thpPages, 0);
    }
  }
});

test('a guest that overruns its timeout is killed and the error says so', async () => {
  const started = performance.now();
  const err = await runInGuest('echo started; sleep 600', { timeoutMs: 20_000 }).then(
    () => assert.fail('runInGuest resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GuestRigError);
  assert.equal(err.code, 'timeout');
  assert.match(err.message, /timed out after 20000 ms during the command and was killed/);
  assert.ok(performance.now() - started < 30_000, 'the timeout bounds the run');
  assert.ok(err.qemuPid !== undefined);
  assert.throws(() => process.kill(err.qemuPid!, 0), { code: 'ESRCH' }, 'QEMU is gone');
});

test('a missing kernel image, QEMU binary or bad option is a clear error before anything boots', async () => {
  await assert.rejects(runInGuest('true', { kernel: '/nonexistent/bzImage' }), (e: unknown) => {
    assert.ok(e instanceof GuestRigError);
    assert.equal(e.code, 'kernel-missing');
    assert.match(e.message, /guest kernel image \/nonexistent\/bzImage does not exist/);
    return true;
  });
  await assert.rejects(runInGuest('true', { qemu: 'qemu-system-nonexistent' }), (e: unknown) => {
    assert.ok(e instanceof GuestRigError);
    assert.equal(e.code, 'qemu-missing');
    assert.match(e.message, /'qemu-system-nonexistent' not found: install the Debian package qemu-system-x86/);
    return true;
  });
  await assert.rejects(runInGuest('true', { memMiB: 64 }), { code: 'bad-option', message: /memMiB must be .* got 64/ });
});

test('a kernel not built, or whose build failed, for the current config is a clear error', () => {
  const saved = process.env.DAMON_RIG_CACHE;
  const cache = mkdtempSync(join(tmpdir(), 'damon-rig-cache-'));
  process.env.DAMON_RIG_CACHE = cache;
  try {
    let expected = '';
    assert.throws(
      () => resolveKernel(),
      (e: unknown) => {
        assert.ok(e instanceof GuestRigError);
        assert.equal(e.code, 'kernel-missing');
        assert.match(e.message, /guest kernel not built for the current test\/guest\/kernel.config .* run test\/guest\/build-kernel.sh/);
        expected = /\(expected (\S+)\)/.exec(e.message)![1]!;
        return true;
      },
    );
    assert.ok(expected.startsWith(cache), expected);
    // What the build script leaves behind when a build fails.
    mkdirSync(dirname(expected), { recursive: true });
    writeFileSync(join(dirname(expected), 'FAILED'), '');
    writeFileSync(join(dirname(expected), 'build.log'), 'ld: undefined reference to `damon_start`\n');
    assert.throws(() => resolveKernel(), (e: unknown) => {
      assert.ok(e instanceof GuestRigError);
      assert.equal(e.code, 'kernel-build-failed');
      assert.match(e.message, /last guest kernel build for this config failed/);
      assert.match(e.message, /undefined reference to `damon_start`/);
      return true;
    });
    assert.ok(!existsSync(expected));
  } finally {
    if (saved === undefined) delete process.env.DAMON_RIG_CACHE;
    else process.env.DAMON_RIG_CACHE = saved;
    rmSync(cache, { recursive: true, force: true });
  }
});

test('the workload rejects bad arguments naming them', () => {
  const workload = buildWorkload();
  const cases: [string[], RegExp][] = [
    [['--hot', '0+1M'], /--size is required/],
    [['--size', '5000'], /--size 5000 is not a multiple of the page size 4096/],
    [['--size', '8M', '--hot', '0+9M'], /hot range 0\+9437184 \(phase 0\) ends past --size 8388608/],
    [['--size', '8M', '--phase', 'x:0+1M'], /bad --phase 'x:0\+1M'/],
    [['--size', '8M', '--thp', 'huge'], /bad --thp 'huge'/],
    [['--size', '8M', '--hot', '0+1M@0'], /bad probability '0' in hot range list '0\+1M@0': expected 0 < P <= 1/],
    [['--size', '8M', '--hot', '0+1M@1.5'], /bad probability '1.5'/],
  ];
  for (const [args, message] of cases) {
    const r = spawnSync(workload, args, { encoding: 'utf8' });
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, message);
  }
});

test('the workload moves its hot set in phases and reports each change with its time', () => {
  const workload = buildWorkload();
  const r = spawnSync(workload, ['--size', '8M', '--phase', '150:0+1M', '--phase', '150:-', '--phase', '150:4M+2M@0.25,7M+1M'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const events = parseWorkloadOutput(r.stdout);
  assert.deepEqual(events.map((e) => e.event), ['mapped', 'ready', 'phase', 'phase', 'phase', 'exit']);
  const [mapped, , p0, p1, p2, exit] = events;
  assert.ok(mapped?.event === 'mapped' && p0?.event === 'phase' && p1?.event === 'phase' && p2?.event === 'phase');
  assert.equal(mapped.pid, r.pid);
  assert.deepEqual(p0.hot, [{ start: mapped.start, end: mapped.start + MiB, probability: 1 }]);
  assert.deepEqual(p1.hot, []);
  assert.deepEqual(p2.hot, [
    { start: mapped.start + 4 * MiB, end: mapped.start + 6 * MiB, probability: 0.25 },
    { start: mapped.start + 7 * MiB, end: mapped.start + 8 * MiB, probability: 1 },
  ]);
  assert.ok(exit?.event === 'exit' && exit.reason === 'phases-done');
  for (const [a, b] of [[p0, p1], [p1, p2], [p2, exit]] as const) {
    const gap = b.monoMs - a.monoMs;
    assert.ok(gap >= 149.99 && gap < 400, `phase lasted ${gap} ms, wanted 150`);
  }
});

test('the workload reports its hot loop throughput every --report-ms, each window timed exactly', () => {
  const workload = buildWorkload();
  const r = spawnSync(workload, ['--size', '8M', '--hot', '0+1M', '--report-ms', '100', '--duration', '1'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const events = parseWorkloadOutput(r.stdout);
  const rates = events.filter((e) => e.event === 'rate');
  const phase = events.find((e) => e.event === 'phase');
  const exit = events.find((e) => e.event === 'exit');
  assert.ok(phase?.event === 'phase' && exit?.event === 'exit');
  assert.ok(rates.length >= 5 && rates.length <= 10, `${rates.length} rate events in 1 s at 100 ms`);
  let previous = phase.monoMs;
  let passes = 0;
  for (const e of rates) {
    assert.ok(e.event === 'rate');
    assert.ok(e.ms >= 100 && e.passes > 0, JSON.stringify(e));
    // Each window starts where the last one ended: nothing is counted twice or lost.
    assert.ok(Math.abs(e.monoMs - e.ms - previous) < 1, `window ${JSON.stringify(e)} does not start at ${previous}`);
    previous = e.monoMs;
    passes += e.passes;
  }
  assert.ok(passes <= exit.passes && exit.passes - passes < exit.passes / 2, `rates sum to ${passes} of ${exit.passes} passes`);
});
