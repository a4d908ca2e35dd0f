// The local recorder end to end: `damon-fleet record` as a user runs it, then the
// result file read back with the project's reader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readResultFile } from '../../agent/records/result-reader.js';
import { PageIdleOperations } from '../../agent/ops/page-idle.js';

const BIN = fileURLToPath(new URL('../../../bin/damon-fleet.js', import.meta.url));

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'damon-recorder-'));

test('record --ops synthetic writes one snapshot per aggregation and a live summary', async () => {
  const out = join(dir, 'hot5.data');
  const r = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--duration', '2s', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /target 1: \d+ regions, monitored 4\.\d+ GiB, working set ~\d/);
  assert.match(r.stdout, /stopped, \d+ snapshots in /);
  const file = await readResultFile(out, { intervals: { sampleUs: 5000, aggrUs: 100000, opsUpdateUs: 1000000 } });
  assert.equal(file.format, 'binary');
  assert.equal(file.version, 2);
  // 2 s at 100 ms: about 20; a loaded machine may lose a few at the edges.
  assert.ok(file.snapshots.length >= 12 && file.snapshots.length <= 21, `${file.snapshots.length} snapshots`);
  const stated = Number(/(\d+) snapshots in/.exec(r.stdout)![1]);
  assert.equal(file.snapshots.length, stated);
  for (const s of file.snapshots) {
    assert.equal(s.records.length, 1);
    const regions = s.records[0].regions;
    assert.equal(s.records[0].targetId, 1);
    for (let i = 0; i < regions.length; i++) {
      assert.ok(regions[i].start < regions[i].end);
      assert.ok(regions[i].nrAccesses <= 20);
      if (i > 0) assert.ok(regions[i - 1].end <= regions[i].start);
    }
  }
  // After a few aggregations the hot 5% (about 205 MiB) stands out.
  const last = file.snapshots[file.snapshots.length - 1].records[0];
  const hotBytes = last.regions.filter((g) => g.nrAccesses >= 10).reduce((s, g) => s + g.end - g.start, 0);
  assert.ok(hotBytes > 150 * 2 ** 20 && hotBytes < 260 * 2 ** 20, `hot bytes ${hotBytes}`);
});

test('record writes damo json_compressed with the attributes given in DAMON text form', async () => {
  const out = join(dir, 'islands.json.zlib');
  const r = await run(['record', '--ops', 'synthetic', '--workload', 'islands', '--attrs', '10000 200000 1000000 10 500', '--adjust', 'kernel',
    '--duration', '1500ms', '--out', out, '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  const file = await readResultFile(out);
  assert.equal(file.format, 'json_compressed');
  assert.deepEqual(file.intervals, { sampleUs: 10000, aggrUs: 200000, opsUpdateUs: 1000000 });
  assert.ok(file.snapshots.length >= 4, `${file.snapshots.length} snapshots`);
  assert.equal(file.snapshots[0].records[0].maxNrAccesses, 20);
});

test('a target that exits ends the recording, and the file stays readable', async () => {
  const workload = join(dir, 'exits.json');
  writeFileSync(workload, JSON.stringify({
    name: 'exits',
    description: 'simulated process that exits after 600 ms',
    targets: [{
      id: 42,
      mappings: [
        { start: '0x10000000', size: '16MiB' }, { start: '0x40000000', size: '64MiB' }, { start: '0x7f0000000000', size: '1MiB' },
      ],
      baseProbability: 0.01,
      exitAtUs: '600ms',
      phases: [{ ranges: [{ start: '0x40000000', size: '8MiB', probability: 0.9 }] }],
    }],
  }));
  const out = join(dir, 'exits.data');
  const r = await run(['record', '--ops', 'synthetic', '--workload', workload, '--update', '100ms', '--duration', '20s', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /target 42 exited/);
  assert.match(r.stdout, /every target exited/);
  const file = await readResultFile(out);
  assert.ok(file.snapshots.length >= 3 && file.snapshots.length <= 9, `${file.snapshots.length} snapshots`);
});

test('record --intervals-goal tunes the sampling interval, and the aggregations with it', async () => {
  // The same recording with and without the goal, one after the other: hot5 shows more
  // than 4% of the events at 5 ms, so the goal shrinks the interval toward 2 ms and, since
  // an aggregation keeps its 20 samples, snapshots come faster than without it. Compared
  // with each other rather than with a fixed time: a busy machine makes both late.
  const gaps = async (name: string, extra: string[]) => {
    const out = join(dir, name);
    const r = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', ...extra, '--duration', '3s', '--out', out, '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    const file = await readResultFile(out);
    return file.snapshots.slice(1).map((x, i) => Number(x.endNs - file.snapshots[i].endNs) / 1e6);
  };
  const tuned = await gaps('tuned.json', ['--intervals-goal', '400,1,2ms,20ms']);
  const fixed = await gaps('fixed.json', []);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  assert.ok(
    tuned.length > fixed.length && median(tuned) < median(fixed),
    `snapshot gaps with the goal ${tuned.map((g) => g.toFixed(0)).join(', ')} ms; without ${fixed.map((g) => g.toFixed(0)).join(', ')} ms`,
  );
});

test('bad input: each a clear error and a non-zero exit', async () => {
  const bad = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--attrs', '5000 1000 1000000 10 1000']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /sampling_interval_us: must not exceed aggregation_interval_us/);

  const badGoal = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--intervals-goal', '400,3,100ms,1ms']);
  assert.equal(badGoal.code, 2);
  assert.match(badGoal.stderr, /intervals_goal\.max_sample_us: must be at least min_sample_us \(1000 < 100000\)/);
  const shortGoal = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--intervals-goal', '400,3']);
  assert.equal(shortGoal.code, 2);
  assert.match(shortGoal.stderr, /--intervals-goal: expected ACCESS_BP,AGGRS,MIN,MAX/);

  const fewRegions = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--min-nr-regions', '2']);
  assert.equal(fewRegions.code, 2);
  assert.match(fewRegions.stderr, /min_nr_regions: must be at least 3/);

  const noWorkload = await run(['record', '--ops', 'synthetic', '--workload', join(dir, 'missing.json')]);
  assert.equal(noWorkload.code, 1);
  assert.match(noWorkload.stderr, /neither a preset .* nor a readable file: no such file/);

  const unwritable = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--duration', '1s',
    '--out', join(dir, 'no-such-dir', 'x.data')]);
  assert.equal(unwritable.code, 1);
  assert.match(unwritable.stderr, /no-such-dir/);

  const badAdjust = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--adjust', 'fast']);
  assert.equal(badAdjust.code, 2);
  assert.match(badAdjust.stderr, /--adjust: unknown mode "fast" \(kernel, refined\)/);

  const badPid = await run(['record', '--pid', 'abc']);
  assert.equal(badPid.code, 2);
  assert.match(badPid.stderr, /--pid: not a process id: "abc"/);
});

test('page_idle on a host without it says what is missing', async () => {
  const probe = PageIdleOperations.probe();
  const r = await run(['record', '--pid', String(process.pid), '--duration', '1s', '--out', '']);
  if (probe.usable) {
    // A host with idle page tracking (the guest kernel): monitoring works.
    assert.equal(r.code, 0, r.stderr);
  } else {
    assert.equal(r.code, 1);
    assert.match(r.stderr, /page_idle operations unavailable: .*bitmap/);
    assert.match(r.stderr, /--ops synthetic/);
  }
});

test('report draws a heatmap of a recorded file', async () => {
  const out = join(dir, 'report.data');
  assert.equal((await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--duration', '1500ms', '--out', out, '--quiet'])).code, 0);
  const r = await run(['report', out, '--width', '40', '--rows', '5']);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => /^\s+\d+\.\ds \|.{40}\| /.test(l));
  assert.ok(rows.length >= 3 && rows.length <= 5, r.stdout);
  // The hot 5% shows as dense cells somewhere in the last row.
  assert.match(rows[rows.length - 1], /[#%@*]/);
  const missing = await run(['report', join(dir, 'nope.data')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no such file/);
});
