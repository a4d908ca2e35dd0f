// `damon-fleet convert IN OUT`: between every format the project reads and writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { readResultFile, type ResultSnapshot } from '../../agent/records/result-reader.js';
import { estimateAges } from '../../agent/records/age-estimate.js';
import { INTERVALS, MAX_NR, asRead, asReadBinary, snapshots, tempDir } from './result-file-fixtures.js';

const BIN = fileURLToPath(new URL('../../../bin/damon-fleet.js', import.meta.url));
const INTERVAL_OPTIONS = ['--sample', '5ms', '--aggr', '100ms', '--update', '1s'];

function convert(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'convert', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const FORMATS = [
  ['binary', 'b.data'], ['binary_v0', 'b0.data'], ['json', 'j.json'], ['json_compressed', 'z.json.zlib'],
] as const;

/** What a file of `format` holds of `snaps` after a trip through `via`. */
function expected(snaps: ReturnType<typeof snapshots>, via: readonly string[]): ResultSnapshot[] {
  const binary = via.some((f) => f.startsWith('binary'));
  if (!binary) return asRead(snaps);
  const read = asReadBinary(snaps, via.at(-1)!.startsWith('binary') ? null : MAX_NR);
  return read;
}

test('every format converts to every format, keeping what both store', async (t) => {
  const dir = tempDir(t);
  const snaps = snapshots(4);
  const src = join(dir, 'src.json.zlib');
  const w = await openResultWriter(src, { intervals: INTERVALS });
  for (const s of snaps) await w.writeSnapshot(s);
  await w.close();
  for (const [f1, n1] of FORMATS) {
    const p1 = join(dir, `1-${n1}`);
    const r1 = convert(src, p1, '--format', f1);
    assert.equal(r1.code, 0, r1.stderr);
    for (const [f2, n2] of FORMATS) {
      const p2 = join(dir, `2-${f1}-${n2}`);
      const binaryIn = f1.startsWith('binary') && !f2.startsWith('binary');
      const r2 = convert(p1, p2, '--format', f2, ...(binaryIn ? INTERVAL_OPTIONS : []));
      assert.equal(r2.code, 0, `${f1} -> ${f2}: ${r2.stderr}`);
      const got = await readResultFile(p2);
      assert.equal(got.format, f2.startsWith('binary') ? 'binary' : f2);
      assert.equal(got.version, f2 === 'binary' ? 2 : f2 === 'binary_v0' ? 0 : null);
      const want = expected(snaps, [f1, f2]);
      if (binaryIn) {
        // the binary format stores no age: estimated, so compare the rest
        const strip = (s: ResultSnapshot[]) => s.map((x) => ({ ...x, records: x.records.map((r) => ({ ...r, regions: r.regions.map((g) => ({ ...g, age: null })) })) }));
        assert.deepEqual(strip(got.snapshots), strip(want), `${f1} -> ${f2}`);
        assert.ok(got.snapshots.every((s) => s.records.every((r) => r.regions.every((g) => Number.isInteger(g.age)))));
        assert.deepEqual(got.intervals, INTERVALS);
        assert.match(r2.stdout, /region ages estimated \(the binary format stores none\)/);
      } else {
        assert.deepEqual(got.snapshots, want, `${f1} -> ${f2}`);
      }
    }
  }
});

test('damo\'s own JSON converts to binary for damo 2.0.1, on the recording clock', async (t) => {
  const out = join(tempDir(t), 'damo.data');
  const src = fileURLToPath(new URL('../../../test/unit/fixtures/damo-written/damo-3.3.0.json', import.meta.url));
  const r = convert(src, out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /damo-3\.3\.0\.json \(json\) -> .*damo\.data \(binary\): 3 snapshot\(s\); times on the recording clock \(0 = first start\)/);
  const got = await readResultFile(out);
  assert.deepEqual(got.snapshots.map((s) => [s.endNs, s.records.map((r) => [r.targetId, r.startNs])]), [
    [100_000_000n, [[4242, 0n]]],
    [200_000_000n, [[4242, 100_000_000n], [77, 100_000_000n]]],
    [300_000_000n, [[4242, 200_000_000n]]],
  ]);
});

test('bad conversions: a clear error and an exit code scripts can use', async (t) => {
  const dir = tempDir(t);
  const bin = join(dir, 'in.data');
  const w = await openResultWriter(bin, { intervals: INTERVALS });
  for (const s of snapshots(3)) await w.writeSnapshot(s);
  await w.close();
  const json = join(dir, 'in.json');
  assert.equal(convert(bin, json, ...INTERVAL_OPTIONS).code, 0);

  const cases: [string[], number, RegExp][] = [
    [[bin, join(dir, 'x.json')], 2, /in\.data is a binary result file, which stores no monitoring intervals, and json stores them: give them with --attrs/],
    [[json, join(dir, 'y.data'), '--aggr', '200ms', '--sample', '5ms'], 2, /in\.json stores its intervals \(5000\/100000\/1000000 us\); the options give others/],
    [[bin, json], 1, /in\.json exists; convert writes a new file/],
    [[bin, bin], 2, /the output must be another file than the input/],
    [[bin, join(dir, 'z.out'), '--format', 'yaml'], 2, /--format: unknown format "yaml" \(binary, binary_v0, json, json_compressed\)/],
    [[bin], 2, /give an input file and an output file/],
    [[join(dir, 'missing.data'), join(dir, 'm.json')], 1, /cannot read result file .*missing\.data: no such file/],
    [[bin, join(dir, 'a.json'), '--sample', '5ms'], 2, /--sample and --aggr go together/],
  ];
  for (const [args, code, message] of cases) {
    const r = convert(...args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  const perf = join(dir, 'perf.script');
  writeFileSync(perf, '       kdamond.0  4452 [000] 82820.952659: damon:damon_aggregated: target_id=1 nr_regions=1 4096-8192: 0\n');
  const p = convert(perf, join(dir, 'p.json.zlib'));
  assert.equal(p.code, 1);
  assert.match(p.stderr, /not a result file: it is `perf script` output/);
});

test('a binary file cut in its last snapshot converts up to it, with a warning', async (t) => {
  const dir = tempDir(t);
  const bin = join(dir, 'cut.data');
  const w = await openResultWriter(bin, { intervals: INTERVALS });
  for (const s of snapshots(3)) await w.writeSnapshot(s);
  await w.close();
  truncateSync(bin, readFileSync(bin).length - 30);
  const out = join(dir, 'cut.json.zlib');
  const r = convert(bin, out, ...INTERVAL_OPTIONS);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: .*cut\.data: snapshot at byte \d+ ends early.*converting the 2 snapshot\(s\) before it/);
  assert.equal((await readResultFile(out)).snapshots.length, 2);
});

test('estimated ages follow DAMON\'s rule: one more per aggregation while the count holds, 0 when it moves', () => {
  const max = 20; // threshold max / 10 = 2
  const r0 = [{ start: 0, end: 4096, nrAccesses: 5 }, { start: 4096, end: 8192, nrAccesses: 0 }];
  const a0 = estimateAges(r0, null, max);
  assert.deepEqual(a0.map((g) => g.age), [0, 0]);
  const a1 = estimateAges([{ start: 0, end: 4096, nrAccesses: 7 }, { start: 4096, end: 8192, nrAccesses: 3 }], a0, max);
  assert.deepEqual(a1.map((g) => g.age), [1, 0], 'moved by 2 (within the threshold) vs by 3');
  // a region spanning both: size-weighted previous count (5) and age (0.5, rounded to 1) + 1
  const merged = estimateAges([{ start: 0, end: 8192, nrAccesses: 5 }], a1, max);
  assert.deepEqual(merged.map((g) => g.age), [2]);
  assert.deepEqual(estimateAges([{ start: 1 << 20, end: (1 << 20) + 4096, nrAccesses: 5 }], a1, max).map((g) => g.age), [0], 'no shared bytes');
});
