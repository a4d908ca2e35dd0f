// Reading files that end early or hold bytes that are not records.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { decodeResultBytes, readResultFile } from '../../agent/records/result-reader.js';
import { ResultFileError } from '../../agent/records/result-format.js';
import { INTERVALS, TARGET_IDS, asReadBinary, snapshots, tempDir } from './result-file-fixtures.js';

async function written(path: string, n: number, opts: { version?: 0 | 2 } = {}): Promise<Buffer> {
  const w = await openResultWriter(path, { intervals: INTERVALS, ...opts });
  for (const s of snapshots(n)) await w.writeSnapshot(s);
  await w.close();
  return readFileSync(path);
}

test('every cut of a binary file: fewer than 16 stray bytes are ignored, a cut snapshot is an error at its offset', async (t) => {
  const dir = tempDir(t);
  for (const version of [2, 0] as const) {
    const full = await written(join(dir, `cut${version}.data`), 3, { version });
    const head = version === 2 ? 20 : 0;
    const opening = 20 + TARGET_IDS.length * (8 + 4 + 20); // the targets' opening entry
    const size = (full.length - head - opening) / 3;
    // where each snapshot of the file starts: the opening entry, then three of records
    const bounds = [head, head + opening, head + opening + size, head + opening + 2 * size, full.length];
    const want = asReadBinary(snapshots(3));
    for (let len = head; len <= full.length; len++) {
      const cut = full.subarray(0, len);
      const k = bounds.filter((b) => b <= len).length - 1; // complete snapshots of the file
      const rest = len - bounds[k]!;
      if (head === 0 && k === 0) {
        // without a header, bytes before the first complete snapshot are no evidence of a result file
        assert.throws(() => decodeResultBytes(cut, 'cut'), (e: unknown) =>
          e instanceof ResultFileError && e.kind === 'not-result-file', `length ${len}`);
        continue;
      }
      if (rest < 16) {
        const got = decodeResultBytes(cut, 'cut');
        assert.equal(got.snapshots.length, Math.max(0, k - 1), `length ${len}`);
        assert.equal(got.trailingBytes, rest);
        assert.deepEqual(got.snapshots, want.slice(0, Math.max(0, k - 1)));
        continue;
      }
      const offset = bounds[k]!;
      assert.throws(() => decodeResultBytes(cut, 'cut'), (e: unknown) =>
        e instanceof ResultFileError && e.kind === 'truncated' && e.offset === offset &&
        e.message.includes(`snapshot at byte ${offset} ends early`) && e.message.includes(`the file ends at byte ${len}`) &&
        e.message.includes(`${k} complete snapshot(s) before it`), `length ${len}`);
      const partial = decodeResultBytes(cut, 'cut', { partial: true });
      assert.equal(partial.snapshots.length, Math.max(0, k - 1));
      assert.deepEqual(partial.problem && [partial.problem.kind, partial.problem.offset], ['truncated', offset]);
    }
  }
});

test('an empty file, a few stray bytes and a header cut before its version are errors, not 0 snapshots', () => {
  const notResult = (b: Buffer, why: RegExp) => assert.throws(() => decodeResultBytes(b, 'f'), (e: unknown) =>
    e instanceof ResultFileError && e.kind === 'not-result-file' && e.message.startsWith('f: not a result file: ') && why.test(e.message));
  notResult(Buffer.alloc(0), /the file is empty/);
  notResult(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 2]), /no "damon_recfmt_ver" header and its 9 bytes are too few for a snapshot/);
  notResult(Buffer.from('damon_recfmt_ve'), /it is text/);
  // a header and nothing else is a recording with no snapshot yet
  assert.equal(decodeResultBytes(Buffer.from('damon_recfmt_ver\x02\x00\x00\x00'), 'h').snapshots.length, 0);
  assert.throws(() => decodeResultBytes(Buffer.from('damon_recfmt_ver\x02\x00'), 'h'), (e: unknown) =>
    e instanceof ResultFileError && e.kind === 'truncated' && e.offset === 0 && /header ends at byte 18/.test(e.message));
});

test('text, perf script output and other bytes that are not snapshots are refused with the reason', (t) => {
  const notResult = (b: Buffer, why: RegExp) => assert.throws(() => decodeResultBytes(b, 'f'), (e: unknown) =>
    e instanceof ResultFileError && e.kind === 'not-result-file' && why.test(e.message), why.source);
  const perf = '       kdamond.0  4452 [000] 82820.952659: damon:damon_aggregated: target_id=18446623435582458880 ' +
    'nr_regions=8 94253027950592-94253031862272: 0\n';
  notResult(Buffer.from(perf.repeat(100)), /`perf script` output of DAMON's tracepoints, which damo reads and damon-fleet does not; damo converts it/);
  notResult(Buffer.from('shopping list: eggs, milk\n'), /it is text, neither DAMON's binary format nor damo's JSON \(it starts "shopping list: eggs, milk"\)/);
  // binary bytes whose first "snapshot" has a tv_nsec no timespec has
  const junk = Buffer.alloc(64, 0xa5);
  junk[3] = 0; // not text
  notResult(junk, /does not start with a version-0 snapshot: snapshot at byte 0: its time .* is not a timespec/);
  void t;
});

test('partial reads of a file written to disk return the records before the cut', async (t) => {
  const dir = tempDir(t);
  const full = await written(join(dir, 'src.data'), 3);
  const path = join(dir, 'cut.data');
  writeFileSync(path, full.subarray(0, full.length - 30));
  await assert.rejects(readResultFile(path), (e: unknown) => e instanceof ResultFileError && e.path === path && e.message.startsWith(`${path}: snapshot at byte`));
  const got = await readResultFile(path, { partial: true });
  assert.deepEqual(got.snapshots, asReadBinary(snapshots(2)));
  assert.equal(got.problem?.kind, 'truncated');
});

test('a value a JS number cannot hold exactly is reported as corrupt at its snapshot', () => {
  const b = Buffer.alloc(20 + 20 + 12);
  Buffer.from('damon_recfmt_ver').copy(b);
  b.writeInt32LE(2, 16);
  b.writeBigInt64LE(1n, 20);
  b.writeUInt32LE(1, 36);
  b.writeBigUInt64LE(2n ** 64n - 1n, 40); // target id
  assert.throws(() => decodeResultBytes(b, 'big'), (e: unknown) =>
    e instanceof ResultFileError && e.kind === 'corrupt' && e.offset === 20 &&
    /snapshot at byte 20: target id at byte 40: 18446744073709551615 cannot be represented exactly/.test(e.message));
});

test('JSON and zlib documents that end early are errors that say so, partial or not', async (t) => {
  const dir = tempDir(t);
  for (const name of ['t.json', 't.json.zlib']) {
    const full = await written(join(dir, name), 3);
    const cut = full.subarray(0, Math.floor(full.length * 0.6));
    for (const partial of [false, true]) {
      assert.throws(() => decodeResultBytes(cut, name, { partial }), (e: unknown) =>
        e instanceof ResultFileError && e.kind === 'truncated' &&
        (name.endsWith('zlib')
          ? e.message.includes(`the zlib stream ends early, at byte ${cut.length}`)
          : e.message.includes('the document ends early')));
    }
  }
});

test('JSON with a bad value names the record, snapshot and region', () => {
  const doc = '[{"target_id": 5, "intervals": {"sample_us": 5000, "aggr_us": 100000, "ops_update_us": 1000000}, ' +
    '"snapshots": [{"start_time": 1, "end_time": 2, "regions": [{"start": 0, "end": 4096, "nr_accesses": {"samples": "many"}, "age": null}]}]}]';
  assert.throws(() => decodeResultBytes(Buffer.from(doc), 'bad.json'), (e: unknown) =>
    e instanceof ResultFileError && e.kind === 'corrupt' &&
    e.message === 'bad.json: record 0 (target 5): snapshot 0: region 0: nr_accesses.samples: expected a number, found "many"');
});

test('a missing file is an open error naming it', async (t) => {
  const path = join(tempDir(t), 'absent.data');
  await assert.rejects(readResultFile(path), (e: unknown) =>
    e instanceof ResultFileError && e.kind === 'open' && e.message === `cannot read result file ${path}: no such file`);
});
