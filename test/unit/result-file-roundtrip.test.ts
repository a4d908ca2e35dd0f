import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { readResultFile } from '../../agent/records/result-reader.js';
import { formatFromFileName } from '../../agent/records/result-format.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { INTERVALS, MAX_NR, asRead, asReadBinary, snapshots, tempDir } from './result-file-fixtures.js';

async function writeAll(path: string, snaps: AggregationRecord[][], opts: Partial<Parameters<typeof openResultWriter>[1]> = {}) {
  const w = await openResultWriter(path, { intervals: INTERVALS, ...opts });
  for (const s of snaps) await w.writeSnapshot(s);
  await w.close();
  return w;
}

test('json and json_compressed round-trip every field exactly: times, ids, addresses, nr_accesses, age', async (t) => {
  const dir = tempDir(t);
  const snaps = snapshots(4);
  for (const [name, format] of [['r.json', 'json'], ['r.json.zlib', 'json_compressed']] as const) {
    const path = join(dir, name);
    const w = await writeAll(path, snaps);
    assert.equal(w.format, format);
    const got = await readResultFile(path);
    assert.equal(got.format, format);
    assert.equal(got.version, null);
    assert.deepEqual(got.intervals, INTERVALS);
    assert.equal(got.problem, null);
    assert.deepEqual(got.snapshots, asRead(snaps));
  }
});

test('binary version 2 and version 0 round-trip ids, end times, addresses and nr_accesses; age is not stored', async (t) => {
  const dir = tempDir(t);
  const snaps = snapshots(4);
  for (const version of [2, 0] as const) {
    const path = join(dir, `v${version}.data`);
    const w = await writeAll(path, snaps, { version });
    assert.equal(w.version, version);
    const got = await readResultFile(path);
    assert.equal(got.format, 'binary');
    assert.equal(got.version, version);
    assert.equal(got.intervals, null);
    assert.equal(got.trailingBytes, 0);
    // start times come back too: each is the previous end, the first one the opening entry's end
    assert.deepEqual(got.snapshots, asReadBinary(snaps));
    const withIntervals = await readResultFile(path, { intervals: INTERVALS });
    assert.deepEqual(withIntervals.snapshots, asReadBinary(snaps, MAX_NR));
    assert.deepEqual(withIntervals.intervals, INTERVALS);
  }
});

test('the format follows the file name unless given: .json.zlib, .json, anything else binary', async (t) => {
  assert.equal(formatFromFileName('/x/damon.data'), 'binary');
  assert.equal(formatFromFileName('/x/out.json'), 'json');
  assert.equal(formatFromFileName('/x/OUT.JSON.ZLIB'), 'json_compressed');
  assert.equal(formatFromFileName('/x.json/plain'), 'binary');
  const dir = tempDir(t);
  const path = join(dir, 'named.json');
  const w = await writeAll(path, snapshots(2), { format: 'json_compressed' });
  assert.equal(w.format, 'json_compressed');
  assert.equal((await readResultFile(path)).format, 'json_compressed');
});

test('a target that comes and goes keeps its own snapshots in every format', async (t) => {
  const dir = tempDir(t);
  // target 1 in snapshots 0-3, target 2 in 1-2, target 3 in 2-3
  const snaps = [
    ...snapshots(1, [1]),
    ...snapshots(2, [1, 2]).slice(1),
    ...snapshots(3, [1, 2, 3]).slice(2),
    ...snapshots(4, [1, 3]).slice(3),
  ];
  for (const name of ['a.json', 'a.json.zlib']) {
    const path = join(dir, name);
    await writeAll(path, snaps);
    assert.deepEqual((await readResultFile(path)).snapshots, asRead(snaps));
  }
  const path = join(dir, 'a.data');
  await writeAll(path, snaps);
  const got = await readResultFile(path);
  // Binary takes a start from the previous end of the same target; a target's first
  // start is the end of its opening entry. All are exact.
  assert.deepEqual(got.snapshots, asReadBinary(snaps));
});

// Random snapshots: any valid record survives every format (binary without age).
const region = fc.record({
  start: fc.integer({ min: 0, max: 2 ** 40 }).map((p) => p * 4096),
  pages: fc.integer({ min: 1, max: 1 << 20 }),
  nrAccesses: fc.integer({ min: 0, max: MAX_NR }),
  age: fc.integer({ min: 0, max: 1_000_000 }),
}).map((r) => ({ start: r.start, end: r.start + r.pages * 4096, nrAccesses: r.nrAccesses, age: r.age }));

const recording = fc.record({
  targets: fc.uniqueArray(fc.integer({ min: 0, max: 2 ** 53 - 1 }), { minLength: 1, maxLength: 4 }),
  steps: fc.array(fc.bigInt({ min: 1n, max: 10n ** 12n }), { minLength: 2, maxLength: 5 }),
  regions: fc.array(fc.array(region, { maxLength: 6 }), { minLength: 24, maxLength: 24 }),
  t0: fc.bigInt({ min: 0n, max: 2n ** 62n }),
}).map(({ targets, steps, regions, t0 }) => {
  let end = t0;
  return steps.map((step, k) => {
    const start = end;
    end = start + step;
    return targets.map((targetId, i) => ({
      targetId, startNs: start, endNs: end, maxNrAccesses: MAX_NR, regions: regions[(k * 4 + i) % 24]!,
    }));
  });
});

test('property: random recordings round-trip through json_compressed and binary', async (t) => {
  const dir = tempDir(t);
  let n = 0;
  await fc.assert(
    fc.asyncProperty(recording, async (snaps) => {
      const z = join(dir, `p${n}.json.zlib`);
      const b = join(dir, `p${n++}.data`);
      await writeAll(z, snaps);
      await writeAll(b, snaps);
      assert.deepEqual((await readResultFile(z)).snapshots, asRead(snaps));
      // Binary keeps ends only, on the recording clock; opening entries give the starts.
      assert.deepEqual((await readResultFile(b)).snapshots, asReadBinary(snaps));
    }),
    { numRuns: 25 },
  );
});

test('snapshots written without waiting for each other land in call order (binary and json)', async (t) => {
  const dir = tempDir(t);
  const snaps = snapshots(8);
  for (const name of ['burst.data', 'burst.json']) {
    const path = join(dir, name);
    const w = await openResultWriter(path, { intervals: INTERVALS, rewriteIntervalMs: 0 });
    await Promise.all(snaps.map((s) => w.writeSnapshot(s)));
    await w.close();
    const got = (await readResultFile(path)).snapshots;
    assert.deepEqual(got, name.endsWith('.data') ? asReadBinary(snaps) : asRead(snaps));
  }
});
