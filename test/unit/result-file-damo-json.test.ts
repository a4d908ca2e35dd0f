// JSON that damo itself writes is read exactly: grouped digits, durations with units.
// The fixture files are damo v3.3.0's own output (fixtures/damo-written/make.sh).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { readResultFile } from '../../agent/records/result-reader.js';
import { ResultFileError } from '../../agent/records/result-format.js';
import { DamoValueError, damoDurationNs, damoInteger, damoNumber } from '../../agent/records/damo-values.js';
import { REPO_ROOT } from './page-idle-fakes.js';
import { tempDir } from './result-file-fixtures.js';
import { firstJsonError } from '../../agent/records/json-syntax.js';
import fc from 'fast-check';

const FIXTURES = join(REPO_ROOT, 'test/unit/fixtures/damo-written');

test('damo 3.3.0\'s own json and json_compressed read back every value of the records it converted', async () => {
  const source = await readResultFile(join(FIXTURES, 'source.json.zlib'));
  for (const name of ['damo-3.3.0.json', 'damo-3.3.0.json.zlib']) {
    const got = await readResultFile(join(FIXTURES, name));
    assert.equal(got.format, name.endsWith('.zlib') ? 'json_compressed' : 'json');
    assert.deepEqual(got.intervals, source.intervals);
    assert.deepEqual(got.snapshots, source.snapshots, name);
  }
  // what makes the file damo's: its forms, which the reader must have parsed
  const { readFileSync } = await import('node:fs');
  const text = readFileSync(join(FIXTURES, 'damo-3.3.0.json'), 'utf8');
  assert.match(text, /"start": "140,776,679,931,904"/);
  assert.match(text, /"usec": "1 d 10 h 17 m 36 s 700 ms"/);
  assert.match(text, /"aggr_intervals": "40,000"/);
  assert.match(text, /"start_time": "1700000000123456789"/);
  const ages = source.snapshots.flatMap((s) => s.records.flatMap((r) => r.regions.map((g) => g.age)));
  assert.ok(ages.includes(1_234_567) && ages.includes(40_000), 'ages written as days and hours read back');
});

test('damo\'s number forms: grouped digits, durations in any of its units, fractions', () => {
  assert.equal(damoInteger('139,637,976,727,552'), 139_637_976_727_552n);
  assert.equal(damoInteger('18,446,744,073,709,551,615'), 2n ** 64n - 1n);
  assert.equal(damoInteger(' 5000 '), 5000n);
  assert.equal(damoInteger(-3), -3n);
  for (const bad of ['1,23', '12,3456', '1.5', '', 'max', null, 1.5, '0x10']) {
    assert.throws(() => damoInteger(bad), DamoValueError, String(bad));
  }
  const us = 1000n;
  assert.equal(damoDurationNs('100 ms', us), 100_000_000n);
  assert.equal(damoDurationNs('1 s 200 ms', us), 1_200_000_000n);
  assert.equal(damoDurationNs('1 h 6 m 40 s', us), 4_000_000_000_000n);
  assert.equal(damoDurationNs('1,234 d 5 h', us), 1234n * 86_400_000_000_000n + 5n * 3_600_000_000_000n);
  assert.equal(damoDurationNs('0 ns', us), 0n);
  assert.equal(damoDurationNs('1.500 ns', 1n), 2n); // rounded
  assert.equal(damoDurationNs('2.5 s', us), 2_500_000_000n);
  assert.equal(damoDurationNs('-100 ms', us), -100_000_000n);
  assert.equal(damoDurationNs('100ms', us), 100_000_000n); // damo's own parser accepts both
  assert.equal(damoDurationNs('5000', us), 5_000_000n); // plain: in the caller's unit
  assert.equal(damoDurationNs(5000, 1n), 5000n);
  for (const bad of ['100 furlongs', '1 s and more', 'ms', '', '1 mss']) {
    assert.throws(() => damoDurationNs(bad, us), DamoValueError, bad);
  }
  assert.equal(damoNumber('12.5'), 12.5);
  assert.equal(damoNumber('50 %'), 50);
  assert.equal(damoNumber('1,234'), 1234);
});

test('a bad value in damo\'s forms names its record, snapshot, region and key', async (t) => {
  const path = join(tempDir(t), 'bad.json');
  const region = (usec: string) => ({ start: '4,096', end: '8,192', nr_accesses: { samples: 1, percent: 5 }, age: { usec, aggr_intervals: null } });
  const doc = [{
    intervals: { sample_us: '5 ms', aggr_us: '100 ms', ops_update_us: '1 s' }, target_id: 0,
    snapshots: [{ start_time: '1 s', end_time: '1 s 100 ms', regions: [region('300 ms'), region('3 parsecs')] }],
  }];
  writeFileSync(path, JSON.stringify(doc));
  await assert.rejects(readResultFile(path), (e: unknown) => e instanceof ResultFileError && e.kind === 'corrupt' &&
    e.message.includes(`${path}: record 0 (target 0): snapshot 0: region 1: age.usec: expected a duration like "100 ms"`));
  // the same document with a good age reads, intervals and times in damo's durations
  doc[0]!.snapshots[0]!.regions[1] = region('1 s');
  writeFileSync(path, JSON.stringify(doc));
  const got = await readResultFile(path);
  assert.deepEqual(got.intervals, { sampleUs: 5000, aggrUs: 100_000, opsUpdateUs: 1_000_000 });
  assert.deepEqual(got.snapshots[0]!.records[0]!.regions, [
    { start: 4096, end: 8192, nrAccesses: 1, age: 3 }, { start: 4096, end: 8192, nrAccesses: 1, age: 10 },
  ]);
  assert.deepEqual([got.snapshots[0]!.records[0]!.startNs, got.snapshots[0]!.endNs], [1_000_000_000n, 1_100_000_000n]);
});

test('a JSON syntax error is reported at its line and column in the file, also past quoted big numbers', async (t) => {
  const dir = tempDir(t);
  // the times are quoted internally to keep them exact; the error must still point into the file
  const good = '[{"target_id": 1, "intervals": null, "snapshots": [{"start_time": 1700000000123456789, "end_time": 1700000000223456789, "regions": []}]}]';
  const broken = good.replace('"regions": []', '"regions": [}').replace('[{"target_id"', '[\n{"target_id"');
  const path = join(dir, 'broken.json');
  writeFileSync(path, broken);
  const col = broken.split('\n')[1]!.indexOf('[}') + 2; // 1-based column of the '}'
  const at = broken.indexOf('[}') + 1;
  await assert.rejects(readResultFile(path), (e: unknown) => {
    assert.ok(e instanceof ResultFileError);
    assert.equal(e.kind, 'corrupt');
    assert.equal(e.offset, at);
    assert.ok(e.offset! < broken.length, 'the position is inside the file');
    assert.match(e.message, new RegExp(`^${path}: not valid JSON: "\\}" where a value was expected at line 2, column ${col} \\(character ${at}\\) of the file, near ".*regions": \\[\\}`));
    return true;
  });
  // cut short: the end of the file, not a position past it
  const cut = join(dir, 'cut.json');
  writeFileSync(cut, good.slice(0, 60));
  await assert.rejects(readResultFile(cut), (e: unknown) => e instanceof ResultFileError && e.kind === 'truncated' &&
    e.offset === 60 && /the document ends early: the file ends at line 1, column 61 \(character 60\)$/.test(e.message));
  // in a json_compressed file, positions are in the inflated text, and say so
  const z = join(dir, 'broken.json.zlib');
  writeFileSync(z, deflateSync(broken));
  await assert.rejects(readResultFile(z), /at line 2, column \d+ \(character \d+\) of the JSON text inflated from the file/);
});

test('property: the syntax scanner finds an error exactly when JSON.parse fails', () => {
  const mutated = fc.tuple(fc.json(), fc.nat(), fc.constantFrom('', '}', ']', ',', ':', '"', '\\', '\n', 'x', '0')).map(
    ([text, at, insert]) => {
      const k = at % (text.length + 1);
      return text.slice(0, k) + insert + text.slice(k + (at % 2)); // insert, or replace one character
    },
  );
  fc.assert(fc.property(fc.oneof(fc.json(), mutated), (text) => {
    let parses = true;
    try {
      JSON.parse(text);
    } catch {
      parses = false;
    }
    const found = firstJsonError(text);
    assert.equal(found === null, parses, JSON.stringify(text));
    if (found) assert.ok(found.offset >= 0 && found.offset <= text.length);
  }), { numRuns: 2000 });
});
