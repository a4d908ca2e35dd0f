// The JSON documents hold exactly what damo reads, and are rewritten atomically at a
// bounded rate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { gunzipSync, inflateSync } from 'node:zlib';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { readResultFile } from '../../agent/records/result-reader.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { INTERVALS, MAX_NR, T0, TARGET_IDS, asRead, snapshot, snapshots, tempDir } from './result-file-fixtures.js';

/** JSON.parse with the ns times kept as exact decimal strings. */
function parseDoc(text: string): any[] {
  return JSON.parse(text.replace(/("(?:start_time|end_time)": )(\d+)/g, '$1"$2"'));
}

function expectedRecord(targetId: number, snaps: AggregationRecord[][]) {
  return {
    kdamond_idx: null,
    context_idx: null,
    intervals: { sample_us: 5000, aggr_us: 100000, ops_update_us: 1000000 },
    scheme_idx: null,
    target_id: targetId,
    snapshots: snaps.map((s) => {
      const r = s.find((x) => x.targetId === targetId)!;
      return {
        start_time: String(r.startNs),
        end_time: String(r.endNs),
        regions: r.regions.map((g) => ({
          start: g.start,
          end: g.end,
          // damo: percent = int(samples * 100 / (aggr / sample)); usec = aggr_intervals * aggr
          nr_accesses: { samples: g.nrAccesses, percent: Math.trunc((g.nrAccesses * 100) / MAX_NR) },
          age: { usec: g.age * 100000, aggr_intervals: g.age },
        })),
        total_bytes: r.regions.reduce((t, g) => t + (g.end - g.start), 0),
      };
    }),
  };
}

test('json: one record per target, with damo\'s keys in damo\'s order, non-null intervals, every snapshot', async (t) => {
  const path = join(tempDir(t), 'fields.json');
  const snaps = snapshots(3);
  const w = await openResultWriter(path, { intervals: INTERVALS });
  for (const s of snaps) await w.writeSnapshot(s);
  await w.close();
  const doc = parseDoc(readFileSync(path, 'utf8'));
  assert.equal(doc.length, TARGET_IDS.length);
  for (const [i, id] of TARGET_IDS.entries()) {
    assert.deepEqual(Object.keys(doc[i]), ['kdamond_idx', 'context_idx', 'intervals', 'scheme_idx', 'target_id', 'snapshots']);
    assert.deepEqual(Object.keys(doc[i].snapshots[0]), ['start_time', 'end_time', 'regions', 'total_bytes']);
    assert.deepEqual(Object.keys(doc[i].snapshots[0].regions[0]), ['start', 'end', 'nr_accesses', 'age']);
    assert.ok(doc[i].snapshots.length >= 2, 'each target is in at least two snapshots');
    assert.deepEqual(doc[i], expectedRecord(id, snaps));
  }
  // a region beyond 2^53 is written digit for digit (page aligned, so exact as a double)
  assert.match(readFileSync(path, 'utf8'), /"start": 72057594037927936, "end": 72057594037932032/);
});

test('json_compressed is one raw zlib stream (not gzip) of the same text, which `file` calls zlib data', async (t) => {
  const dir = tempDir(t);
  const snaps = snapshots(2);
  for (const name of ['same.json', 'same.json.zlib']) {
    const w = await openResultWriter(join(dir, name), { intervals: INTERVALS });
    for (const s of snaps) await w.writeSnapshot(s);
    await w.close();
  }
  const z = readFileSync(join(dir, 'same.json.zlib'));
  assert.deepEqual([z[0], z[1]], [0x78, 0x9c]); // zlib header, default compression
  assert.equal(inflateSync(z).toString('utf8'), readFileSync(join(dir, 'same.json'), 'utf8'));
  assert.throws(() => gunzipSync(z), /incorrect header check/);
  // damo picks its JSON parser from `file -b`: 'zlib compressed data' selects json_compressed
  const file = spawnSync('file', ['-b', join(dir, 'same.json.zlib')], { encoding: 'utf8' });
  assert.equal(file.error, undefined, 'the `file` command damo relies on is installed');
  assert.equal(file.stdout.trim(), 'zlib compressed data');
});

test('a target in only one snapshot is written as it is, with its own start_time', async (t) => {
  const path = join(tempDir(t), 'single.json.zlib');
  const snaps = [snapshot(0, [1, 2]), snapshot(1, [1])];
  const w = await openResultWriter(path, { intervals: INTERVALS });
  for (const s of snaps) await w.writeSnapshot(s);
  await w.close();
  const doc = parseDoc(inflateSync(readFileSync(path)).toString('utf8'));
  assert.deepEqual(doc.map((r) => [r.target_id, r.snapshots.length]), [[1, 2], [2, 1]]);
  assert.deepEqual(doc[1], expectedRecord(2, [snaps[0]!]));
  assert.deepEqual((await readResultFile(path)).snapshots, asRead(snaps));
});

test('the document is rewritten at open, at most once per interval, and on close; always complete', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'rate.json');
  let now = 0;
  const w = await openResultWriter(path, { intervals: INTERVALS, rewriteIntervalMs: 1000, clock: () => now });
  const onDisk = async () => (await readResultFile(path)).snapshots.length;
  assert.equal(await onDisk(), 0, 'an empty list from the start');
  const snaps = snapshots(6);
  const seen: number[] = [];
  for (const [k, at] of [100, 500, 999, 1000, 1500, 2100].entries()) {
    now = at;
    await w.writeSnapshot(snaps[k]!);
    seen.push(await onDisk());
  }
  // rewrites at t=1000 (snapshots 0-3) and t=2100 (0-5): never more often than the interval
  assert.deepEqual(seen, [0, 0, 0, 4, 4, 6]);
  await w.close();
  assert.deepEqual((await readResultFile(path)).snapshots, asRead(snaps));
  assert.deepEqual(readdirSync(dir), ['rate.json'], 'no temporary file is left behind');
});

test('a slow rewrite spaces the next one out to ten times its duration', async (t) => {
  const path = join(tempDir(t), 'slow.json');
  let now = 0;
  let slow = false;
  // the clock jumps 300 ms whenever it is read while a rewrite is timed
  const clock = () => (slow ? (now += 300) : now);
  const w = await openResultWriter(path, { intervals: INTERVALS, rewriteIntervalMs: 100, clock });
  const onDisk = async () => (await readResultFile(path)).snapshots.length;
  slow = true;
  now = 1000;
  await w.writeSnapshot(snapshot(0)); // due; its rewrite "takes" 300 ms
  slow = false;
  assert.equal(await onDisk(), 1);
  now += 2000; // 100 ms interval passed, but not 10 × 300 ms
  await w.writeSnapshot(snapshot(1));
  assert.equal(await onDisk(), 1);
  now += 1100;
  await w.writeSnapshot(snapshot(2));
  assert.equal(await onDisk(), 3);
  await w.close();
});

test('reads hand-built documents in damo\'s raw forms: numbers as decimal strings, null units, extra keys (damo\'s own files: result-file-damo-json)', async (t) => {
  // damo's to_kvpairs(raw=True): times, addresses and intervals as '%d' strings, units it
  // did not compute as null, and keys this project does not write.
  const doc = [{
    kdamond_idx: 0, context_idx: 0,
    intervals: {
      sample_us: '5000', aggr_us: '100000', ops_update_us: '1000000',
      intervals_goal: { access_bp: '0.000000', aggrs: '0', min_sample_us: '0', max_sample_us: '0' },
    },
    scheme_idx: null, target_id: 0, scheme_filters: [],
    snapshots: [0, 1].map((k) => ({
      start_time: String(T0 + BigInt(k) * 100_000_000n), end_time: String(T0 + BigInt(k + 1) * 100_000_000n),
      regions: [
        { start: '140737488351232', end: '140737488355328', nr_accesses: { samples: 4, percent: null }, age: { usec: null, aggr_intervals: '3' }, sz_filter_passed: '0' },
        { start: '140737488355328', end: '140737488359424', nr_accesses: { samples: null, percent: 50 }, age: { usec: '700000', aggr_intervals: null }, sz_filter_passed: '0' },
      ],
      total_bytes: '8192', damos_stats: null,
    })),
  }];
  const path = join(tempDir(t), 'damo.json');
  writeFileSync(path, JSON.stringify(doc, null, 4));
  const got = await readResultFile(path);
  assert.deepEqual(got.intervals, INTERVALS);
  assert.deepEqual(got.snapshots.map((s) => s.records.map((r) => [r.targetId, r.startNs, r.endNs, r.maxNrAccesses, r.regions])), [0, 1].map((k) => [[
    0, T0 + BigInt(k) * 100_000_000n, T0 + BigInt(k + 1) * 100_000_000n, MAX_NR,
    [
      { start: 140737488351232, end: 140737488355328, nrAccesses: 4, age: 3 },
      // damo's add_unset_unit(): samples = int(percent * max / 100), aggr_intervals = int(usec / aggr)
      { start: 140737488355328, end: 140737488359424, nrAccesses: 10, age: 7 },
    ],
  ]]));
});
