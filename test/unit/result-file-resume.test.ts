// Opening a result file that already exists: continue it without a second header, or
// refuse it, unchanged, when it is not a result file of the wanted format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { readResultFile } from '../../agent/records/result-reader.js';
import { ResultFileError } from '../../agent/records/result-format.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { INTERVALS, TARGET_IDS, asRead, asReadBinary, snapshots, tempDir } from './result-file-fixtures.js';

async function write(path: string, snaps: AggregationRecord[][], opts: { version?: 0 | 2 } = {}) {
  const w = await openResultWriter(path, { intervals: INTERVALS, ...opts });
  for (const s of snaps) await w.writeSnapshot(s);
  await w.close();
}

function occurrences(hay: Buffer, needle: string): number {
  let n = 0;
  for (let i = hay.indexOf(needle); i >= 0; i = hay.indexOf(needle, i + 1)) n++;
  return n;
}

async function refused(path: string, opts: object, pattern: RegExp): Promise<ResultFileError> {
  const before = readFileSync(path);
  let caught: unknown;
  await assert.rejects(openResultWriter(path, { intervals: INTERVALS, ...opts }), (e: unknown) => {
    caught = e;
    return e instanceof ResultFileError && e.kind === 'not-result-file' && e.message.includes(path) && pattern.test(e.message);
  });
  assert.deepEqual(readFileSync(path), before, 'a refused file is left unchanged');
  return caught as ResultFileError;
}

test('a version-2 file is continued without a second header', async (t) => {
  const path = join(tempDir(t), 'resume.data');
  const all = snapshots(5);
  await write(path, all.slice(0, 2));
  await write(path, all.slice(2));
  const bytes = readFileSync(path);
  assert.equal(occurrences(bytes, 'damon_recfmt_ver'), 1);
  assert.equal(bytes.indexOf('damon_recfmt_ver'), 0);
  assert.deepEqual((await readResultFile(path)).snapshots, asReadBinary(all));
});

test('a version-0 file is continued as version 0', async (t) => {
  const path = join(tempDir(t), 'resume0.data');
  const all = snapshots(4);
  await write(path, all.slice(0, 2), { version: 0 });
  await write(path, all.slice(2), { version: 0 });
  const got = await readResultFile(path);
  assert.equal(got.version, 0);
  assert.equal(occurrences(readFileSync(path), 'damon_recfmt_ver'), 0);
  assert.deepEqual(got.snapshots, asReadBinary(all));
});

test('a target seen once in a run that ends keeps its opening entry; the next run continues the clock', async (t) => {
  const path = join(tempDir(t), 'resume-single.data');
  const all = snapshots(3, [1, 2]);
  // run 1: targets 1 and 2 once; run 2: target 1 twice more, target 2 absent
  await write(path, [all[0]!]);
  await write(path, [all[1]!.slice(0, 1), all[2]!.slice(0, 1)]);
  const got = await readResultFile(path);
  const want = asReadBinary([all[0]!, all[1]!.slice(0, 1), all[2]!.slice(0, 1)]);
  assert.deepEqual(got.snapshots, want);
});

test('a continued file keeps the time it was stopped as a gap, taken from its modification time', async (t) => {
  const path = join(tempDir(t), 'resume-gap.data');
  const all = snapshots(3, [1]);
  await write(path, all.slice(0, 2));
  // the file was last written when its second snapshot ended; the next run starts 5 s later
  const lastEnd = all[1]![0]!.endNs;
  const s = Number(lastEnd / 1_000_000n) / 1000;
  utimesSync(path, s, s);
  const later = all[2]!.map((r) => ({ ...r, startNs: lastEnd + 5_000_000_000n, endNs: lastEnd + 5_100_000_000n }));
  await write(path, [later]);
  const got = await readResultFile(path);
  assert.deepEqual(got.snapshots.slice(0, 2).map((x) => [x.records[0]!.startNs, x.endNs]), [
    [0n, 100_000_000n], [100_000_000n, 200_000_000n],
  ]);
  const third = got.snapshots[2]!;
  const gap = third.records[0]!.startNs! - 200_000_000n;
  // within the precision of a file time (under a millisecond here)
  assert.ok(gap > 4_999_000_000n && gap < 5_001_000_000n, `the 5 s the recording was stopped show (${gap} ns)`);
  assert.equal(third.endNs - third.records[0]!.startNs!, 100_000_000n);
  // and were it copied (modified later than its records), the next run starts where it ends
  const copy = join(tempDir(t), 'copied.data');
  await write(copy, all.slice(0, 2));
  await write(copy, [later]);
  const c = await readResultFile(copy);
  assert.equal(c.snapshots[2]!.records[0]!.startNs, 200_000_000n);
});

test('the version asked for must match the existing file', async (t) => {
  const dir = tempDir(t);
  const v2 = join(dir, 'v2.data');
  const v0 = join(dir, 'v0.data');
  await write(v2, snapshots(2));
  await write(v0, snapshots(2), { version: 0 });
  await refused(v2, { version: 0 }, /version-2 result file .*header.*version 0 was asked for/);
  await refused(v0, {}, /no "damon_recfmt_ver" header: it reads as a version-0 result file \(open it with version 0/);
  // a header of another version (1 stores s32 ids) cannot be continued as version 2
  const v1 = join(dir, 'v1.data');
  const b = readFileSync(v2);
  b.writeInt32LE(1, 16);
  writeFileSync(v1, b.subarray(0, 20));
  await refused(v1, {}, /header says version 1 \(s32 target ids\)/);
});

test('files that are not result files are refused, not appended to or overwritten', async (t) => {
  const dir = tempDir(t);
  const text = join(dir, 'notes.txt');
  writeFileSync(text, 'shopping list: eggs, milk\n');
  await refused(text, {}, /does not start with the "damon_recfmt_ver" header and is not a result file/);
  await refused(text, { version: 0 }, /byte/);
  const textJson = join(dir, 'notes.json');
  writeFileSync(textJson, 'shopping list: eggs, milk\n');
  await refused(textJson, {}, /not a json result file/);
  const zeros = join(dir, 'zeros.data');
  writeFileSync(zeros, Buffer.alloc(40));
  await refused(zeros, { version: 0 }, /not a result file: the snapshot at byte 0 has no targets/);
  // result files of another format
  const bin = join(dir, 'real.data');
  await write(bin, snapshots(2));
  await refused(bin, { format: 'json' }, /not a json result file/);
  const json = join(dir, 'real.json');
  await write(json, snapshots(2));
  await refused(json, { format: 'binary' }, /not a result file/);
  await refused(json, { format: 'json_compressed' }, /it is a json result file, and json_compressed was asked for/);
  const other = join(dir, 'other.json.zlib');
  writeFileSync(other, deflateSync('{"not": "a list"}'));
  await refused(other, {}, /a damo JSON result is a list of records/);
});

test('a binary file ending in an incomplete snapshot or stray bytes is refused with the offset', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'cut.data');
  await write(path, snapshots(3));
  const full = readFileSync(path).length;
  const opening = 20 + TARGET_IDS.length * (8 + 4 + 20); // the targets' opening entry
  const snapSize = (full - 20 - opening) / 3;
  const cut = 20 + opening + 2 * snapSize;
  truncateSync(path, full - 7);
  const e = await refused(path, {}, new RegExp(`snapshot at byte ${cut} ends early.*cutting the file to ${cut} bytes keeps its 3 complete snapshot`));
  assert.equal(e.offset, cut);
  const stray = join(dir, 'stray.data');
  await write(stray, snapshots(2));
  appendFileSync(stray, Buffer.alloc(9));
  await refused(stray, {}, new RegExp(`9 byte\\(s\\) follow its last complete snapshot \\(which ends at byte ${20 + opening + 2 * snapSize}\\)`));
});

test('a JSON file is continued when format and intervals match, refused when intervals differ', async (t) => {
  const dir = tempDir(t);
  for (const name of ['c.json', 'c.json.zlib']) {
    const path = join(dir, name);
    const all = snapshots(4);
    await write(path, all.slice(0, 2));
    await write(path, all.slice(2));
    assert.deepEqual((await readResultFile(path)).snapshots, asRead(all));
    await refused(path, { intervals: { ...INTERVALS, aggrUs: 200_000 } }, /recorded with intervals 5000\/100000\/1000000 us .* this writer's are 5000\/200000\/1000000 us/);
  }
});

test('an empty existing file is started fresh, with the header', async (t) => {
  const path = join(tempDir(t), 'empty.data');
  writeFileSync(path, '');
  await write(path, snapshots(2));
  assert.equal(occurrences(readFileSync(path), 'damon_recfmt_ver'), 1);
  assert.equal((await readResultFile(path)).snapshots.length, 2);
});
