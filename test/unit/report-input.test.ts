// What the reports accept as input: the time bounds a person types, result files of each
// format with their window, and the refusal of files that are not result files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { OptionError } from '../../common/cli-values.js';
import { ReportError, loadResultFile, parseTimeBound, pickTarget } from '../../reports/report-input.js';
import { AGGR_NS, INTERVALS, T0, hotBand } from '../support/report-patterns.js';

const dir = mkdtempSync(join(tmpdir(), 'damon-report-input-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function write(name: string, format?: 'binary' | 'json' | 'json_compressed'): Promise<string> {
  const path = join(dir, name);
  const w = await openResultWriter(path, { intervals: INTERVALS, format });
  for (const r of hotBand()) await w.writeSnapshot([r]);
  await w.close();
  return path;
}

test('time bounds: ISO times and durations before now; anything else names the option', () => {
  const now = Date.parse('2026-12-03T15:00:00Z');
  assert.equal(parseTimeBound('--since', '2026-12-03T14:00:00Z', now), BigInt(Date.parse('2026-12-03T14:00:00Z')) * 1_000_000n);
  assert.equal(parseTimeBound('--since', '2026-12-03T14:00:00.5+01:00', now), BigInt(Date.parse('2026-12-03T13:00:00.5Z')) * 1_000_000n);
  assert.equal(parseTimeBound('--since', '10m', now), BigInt(now - 600_000) * 1_000_000n);
  assert.equal(parseTimeBound('--until', '1d', now), BigInt(now - 86_400_000) * 1_000_000n);
  for (const bad of ['yesterday', '10', '-5m', '2026-13-45T00:00:00Z', '']) {
    assert.throws(() => parseTimeBound('--since', bad, now), (e: Error) => e instanceof OptionError && e.message.startsWith(`--since "${bad}"`), bad);
  }
});

test('every format reads into the same targets; the window keeps records ending inside it', async () => {
  for (const [name, format] of [['a.data', 'binary'], ['a.json', 'json'], ['a.json.zlib', 'json_compressed']] as const) {
    const input = await loadResultFile(await write(name, format));
    assert.equal(input.targets.length, 1, name);
    const t = input.targets[0]!;
    assert.equal(t.label, 'target 0');
    assert.equal(t.records.length, 60, name);
    // Binary files count time from the recording's start (damo's float arithmetic needs
    // values well below 2^53 ns); json keeps wall-clock time.
    assert.equal(t.records[5]!.endNs, (format === 'binary' ? 0n : T0) + 6n * AGGR_NS, name);
    assert.equal(t.maxNrAccesses, 20);
    assert.equal(t.maxFromIntervals, format !== 'binary', name);
    const window = { sinceNs: T0 + 10n * AGGR_NS, untilNs: T0 + 19n * AGGR_NS };
    if (format === 'binary') {
      await assert.rejects(loadResultFile(join(dir, name), window), (e: Error) => e instanceof ReportError && /not wall-clock/.test(e.message), name);
    } else {
      const win = await loadResultFile(join(dir, name), window);
      assert.equal(win.targets[0]!.records.length, 10, name);
    }
    assert.deepEqual(pickTarget(input, '0'), [t]);
    assert.throws(() => pickTarget(input, '3'), ReportError);
  }
});

test('perf script text, garbage and empty files are refused, naming what they are', async () => {
  const perf = join(dir, 'perf.script');
  writeFileSync(perf, 'kdamond.0  1234 [000] 100.000: damon:damon_aggregated: target_id=0 nr_regions=1 0-4096: 0 0\n');
  await assert.rejects(loadResultFile(perf), (e: Error) => e instanceof ReportError && /not a result file: it is `perf script` output/.test(e.message));
  const junk = join(dir, 'junk');
  writeFileSync(junk, Buffer.from([1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 9, 9, 9, 9, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2]));
  await assert.rejects(loadResultFile(junk), ReportError);
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  await assert.rejects(loadResultFile(empty), ReportError);
});

test('a truncated binary file: the snapshots before the break, with a warning', async () => {
  const path = await write('cut.data', 'binary');
  const bytes = readFileSync(path);
  writeFileSync(path, bytes.subarray(0, bytes.length - 30));
  const input = await loadResultFile(path);
  assert.ok(input.targets[0]!.records.length >= 55 && input.targets[0]!.records.length < 60, `${input.targets[0]!.records.length}`);
  assert.equal(input.warnings.length, 1);
  assert.match(input.warnings[0]!, /showing the \d+ snapshot\(s\) before it/);
});

test('--since/--until on a file whose times are not wall-clock: refused, saying why', async () => {
  const path = join(dir, 'boot.json');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  for (const r of hotBand()) await w.writeSnapshot([{ ...r, startNs: r.startNs - T0 + 5_000_000_000n, endNs: r.endNs - T0 + 5_000_000_000n }]);
  await w.close();
  assert.equal((await loadResultFile(path)).targets[0]!.records.length, 60);
  await assert.rejects(loadResultFile(path, { sinceNs: T0 }), (e: Error) => e instanceof ReportError && /not wall-clock times .*--since\/--until/.test(e.message));
});
