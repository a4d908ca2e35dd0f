// Unusable paths fail at open with the path and the reason; bad records are refused
// before a byte is written; a write that fails mid-run leaves what was written readable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { readResultFile } from '../../agent/records/result-reader.js';
import { ResultFileError, type ResultFormat } from '../../agent/records/result-format.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { INTERVALS, WRITER_MODULE, runChild, snapshot, snapshots, tempDir } from './result-file-fixtures.js';

const FORMATS: ResultFormat[] = ['binary', 'json', 'json_compressed'];

function openFails(path: string, format: ResultFormat, reason: string) {
  return assert.rejects(openResultWriter(path, { intervals: INTERVALS, format }), (e: unknown) =>
    e instanceof ResultFileError && e.kind === 'open' && e.path === path &&
    e.message.startsWith(`cannot open result file ${path}: ${reason}`));
}

test('a result path in a missing directory fails at open, naming the path and the directory', async (t) => {
  const dir = join(tempDir(t), 'no', 'such');
  for (const format of FORMATS) await openFails(join(dir, `r.${format}`), format, `its directory ${dir} does not exist`);
});

test('a result path that is a directory, or not a regular file, fails at open', async (t) => {
  const dir = tempDir(t);
  const sub = join(dir, 'sub.json');
  mkdirSync(sub);
  for (const format of FORMATS) await openFails(sub, format, 'it is a directory');
  for (const format of FORMATS) await openFails('/dev/null', format, 'it is not a regular file');
  await openFails(join(dir, 'sub.json', 'x', 'y'), 'binary', 'its directory');
  const file = join(dir, 'plain');
  writeFileSync(file, '');
  await openFails(join(file, 'inside.data'), 'binary', 'a component of the path is not a directory');
});

test('a path the process may not write fails at open with "permission denied"', async (t) => {
  const dir = tempDir(t);
  const locked = join(dir, 'locked');
  mkdirSync(locked);
  const existing = join(locked, 'owned.data');
  writeFileSync(existing, '');
  chmodSync(dir, 0o755);
  chmodSync(locked, 0o555); // no one but root may create files here
  chmodSync(existing, 0o444);
  const script = `
    import { openResultWriter } from ${JSON.stringify(WRITER_MODULE)};
    const out = [];
    for (const [path, format] of JSON.parse(process.argv[1])) {
      try { await openResultWriter(path, { format, intervals: ${JSON.stringify(INTERVALS)} }); out.push('opened'); }
      catch (e) { out.push(e.kind + ': ' + e.message); }
    }
    console.log(JSON.stringify(out));`;
  const cases = [
    [join(locked, 'new.data'), 'binary'], [join(locked, 'new.json'), 'json'],
    [join(locked, 'new.json.zlib'), 'json_compressed'], [existing, 'binary'],
  ];
  // Root may write anywhere: check as an unprivileged user, the way a real agent may run.
  const asUser = process.getuid?.() === 0 ? 65534 : undefined;
  let got: string[];
  try {
    got = runChild(script, { uid: asUser, args: [JSON.stringify(cases)] }) as string[];
  } finally {
    chmodSync(locked, 0o755); // so that a non-root run can clean up
  }
  assert.deepEqual(got, [
    `open: cannot open result file ${cases[0]![0]}: permission denied`,
    `open: cannot open result file ${cases[1]![0]}: permission denied (cannot create files in ${locked})`,
    `open: cannot open result file ${cases[2]![0]}: permission denied (cannot create files in ${locked})`,
    `open: cannot open result file ${existing}: permission denied`,
  ]);
});

test('options are checked at open', async (t) => {
  const path = join(tempDir(t), 'o.data');
  const bad = (opts: object, pattern: RegExp) => assert.rejects(
    openResultWriter(path, { intervals: INTERVALS, ...opts }),
    (e: unknown) => e instanceof ResultFileError && e.kind === 'invalid-record' && pattern.test(e.message),
  );
  await bad({ format: 'csv' }, /unknown format "csv" \(known: binary, json, json_compressed\)/);
  await bad({ format: 'json', version: 0 }, /version applies to the binary format only, not json/);
  await bad({ version: 1 }, /binary version must be 0 or 2, got 1/);
  await bad({ intervals: { sampleUs: 0, aggrUs: 100, opsUpdateUs: 1 } }, /intervals.sampleUs must be a positive integer, got 0/);
  await bad({ intervals: { sampleUs: 200, aggrUs: 100, opsUpdateUs: 1 } }, /sampleUs must not exceed aggrUs \(200 > 100\)/);
  await bad({ format: 'json', rewriteIntervalMs: -1 }, /rewriteIntervalMs must be a non-negative number/);
});

test('a bad snapshot is refused before anything of it is written, in every format', async (t) => {
  const dir = tempDir(t);
  const good = snapshot(0);
  const later = snapshot(1);
  const cases: [string, AggregationRecord[], RegExp][] = [
    ['empty', [], /a snapshot needs at least one record/],
    ['mixed ends', [later[0]!, good[1]!], /endNs .* differs from the snapshot's .*one snapshot is one aggregation end/],
    ['twice', [later[0]!, later[0]!], /target 4242 appears twice in one snapshot/],
    ['not later', good, /is not after the previous snapshot's end/],
    ['backwards region', [{ ...later[0]!, regions: [{ start: 8192, end: 4096, nrAccesses: 0, age: 0 }] }], /region 0: start 8192 must be below end 4096/],
    ['too many accesses', [{ ...later[0]!, regions: [{ start: 0, end: 4096, nrAccesses: 2 ** 32, age: 0 }] }], /nrAccesses must be an integer in \[0, 2\^32\)/],
    ['negative age', [{ ...later[0]!, regions: [{ start: 0, end: 4096, nrAccesses: 1, age: -1 }] }], /age must be a non-negative integer, got -1/],
    ['max mismatch', [{ ...later[0]!, maxNrAccesses: 10 }], /maxNrAccesses 10 does not match the writer's intervals \(aggr 100000 us \/ sample 5000 us = 20\)/],
    ['start after end', [{ ...later[0]!, startNs: later[0]!.endNs + 1n }], /startNs .* is after endNs/],
    ['number time', [{ ...later[0]!, endNs: 5 as unknown as bigint }], /startNs and endNs must be BigInt nanoseconds/],
    ['bad id', [{ ...later[0]!, targetId: -1 }], /targetId must be an integer in \[0, 2\^64\), got -1/],
  ];
  for (const [i, name] of ['b.data', 'j.json', 'z.json.zlib'].entries()) {
    const path = join(dir, name);
    const w = await openResultWriter(path, { intervals: INTERVALS, rewriteIntervalMs: i === 0 ? undefined : 0 });
    await w.writeSnapshot(good);
    const before = readFileSync(path);
    for (const [what, records, pattern] of cases) {
      await assert.rejects(w.writeSnapshot(records), (e: unknown) =>
        e instanceof ResultFileError && e.kind === 'invalid-record' && e.message.startsWith(`${path}: `) && pattern.test(e.message), `${name}: ${what}`);
    }
    assert.deepEqual(readFileSync(path), before, `${name}: nothing written by refused snapshots`);
    await w.writeSnapshot(later);
    await w.close();
    await assert.rejects(w.writeSnapshot(snapshot(2)), (e: unknown) => e instanceof ResultFileError && e.kind === 'closed');
    assert.equal((await readResultFile(path)).snapshots.length, 2);
  }
});

// A child process under a 4 KiB file-size limit: the kernel accepts the bytes up to the
// limit and then fails the write (EFBIG), the way a full disk fails with ENOSPC.
const LIMITED_WRITER = `
  import { openResultWriter } from ${JSON.stringify(WRITER_MODULE)};
  const [path, format, n] = JSON.parse(process.argv[1]);
  const revive = (k, v) => (typeof v === 'string' && /^\\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v);
  const snaps = JSON.parse(process.argv[2], revive);
  let now = 0; // a virtual clock a second apart per snapshot: every JSON snapshot is a rewrite
  const w = await openResultWriter(path, { format, intervals: ${JSON.stringify(INTERVALS)}, clock: () => now });
  const results = [];
  for (const s of snaps) {
    now += 1000;
    try { await w.writeSnapshot(s); results.push('ok'); } catch (e) { results.push(e.kind + ': ' + e.message); }
  }
  try { await w.close(); results.push('closed'); } catch (e) { results.push('close ' + e.kind + ': ' + e.message); }
  console.log(JSON.stringify(results));`;

function runLimited(path: string, format: ResultFormat, n: number): string[] {
  const snaps = JSON.stringify(snapshots(n), (_, v) => (typeof v === 'bigint' ? `${v}n` : v));
  return runChild(LIMITED_WRITER, { fileSizeKiB: 4, args: [JSON.stringify([path, format, n]), snaps] }) as string[];
}

test('binary: a write failing mid-snapshot is cut back, earlier snapshots stay readable', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'full.data');
  const results = runLimited(path, 'binary', 30);
  const size = (20 + 3 * 12 + (2 + 3 + 4) * 20); // one snapshot of the fixture's three targets
  const opening = 20 + 3 * (12 + 20); // written with the first: the targets' opening entry
  const fit = Math.floor((4096 - 20 - opening) / size);
  assert.deepEqual(results.slice(0, fit), Array(fit).fill('ok'));
  assert.match(results[fit]!, new RegExp(
    `^write: writing a snapshot to ${path} failed at byte 4096: file too large \\(file size limit reached\\); ` +
    `the file keeps its ${fit + 1} complete snapshot\\(s\\) \\(${20 + opening + fit * size} bytes\\) and stays readable$`));
  // every later snapshot gets as far as the limit again, and is cut back again
  for (const r of results.slice(fit + 1, -1)) assert.match(r, new RegExp(`failed at byte 4096: .* keeps its ${fit + 1} complete snapshot`));
  assert.equal(results.at(-1), 'closed');
  assert.equal(readFileSync(path).length, 20 + opening + fit * size);
  const got = await readResultFile(path);
  assert.equal(got.snapshots.length, fit);
  assert.equal(got.problem, null);
});

test('json: a rewrite that fails leaves the previous complete document and no temporary file', async (t) => {
  const dir = tempDir(t);
  for (const [name, format] of [['full.json', 'json'], ['full.json.zlib', 'json_compressed']] as const) {
    const path = join(dir, name);
    const results = runLimited(path, format, format === 'json' ? 12 : 60);
    const ok = results.findIndex((r) => r !== 'ok');
    assert.ok(ok > 0, `${name}: some rewrites fit under the limit: ${results.join(' | ')}`);
    assert.match(results[ok]!, new RegExp(
      `^write: rewriting ${path} failed: file too large \\(file size limit reached\\); ` +
      `the file keeps its previous complete document \\(${ok} snapshot\\(s\\)\\)`));
    assert.match(results.at(-1)!, /^close write: rewriting .* failed: file too large/);
    const got = await readResultFile(path);
    assert.equal(got.snapshots.length, ok, `${name}: the last complete rewrite`);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
  }
});

test('a closed writer may be closed again', async (t) => {
  const w = await openResultWriter(join(tempDir(t), 'twice.data'), { intervals: INTERVALS });
  await w.writeSnapshot(snapshot(0));
  await w.close();
  await w.close();
  assert.equal((await readResultFile(w.path)).snapshots.length, 1);
});
