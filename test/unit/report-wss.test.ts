// `report wss` on recorded data with known patterns: the figures must be the ones the
// patterns state (report-patterns.ts), computed with damo's rules (its option names,
// defaults and percentile pick); and, where damo is at hand, the ones damo prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openResultWriter } from '../../agent/records/result-writer.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { loadResultFile, type ReportTarget } from '../../reports/report-input.js';
import { DAMO_WSS_DEFAULTS, percentileOf, recorderAccThres, wssReport, wssWindows } from '../../reports/wss.js';
import { wssTable, wssWindowsTable } from '../../reports/wss-text.js';
import { summaryText } from '../../reports/summary.js';
import { workingSetBytes } from '../../agent/engine/working-set.js';
import { HOT_BAND_RECORDS, INTERVALS, MiB, PER_PHASE, PHASES, hotBand, movingHotSet } from '../support/report-patterns.js';
import { damoOrSkip } from '../support/damo.js';

const dir = mkdtempSync(join(tmpdir(), 'damon-report-wss-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function recorded(name: string, records: AggregationRecord[]): Promise<ReportTarget> {
  const path = join(dir, name);
  const w = await openResultWriter(path, { intervals: INTERVALS });
  for (const r of records) await w.writeSnapshot([r]);
  await w.close();
  return (await loadResultFile(path)).targets[0]!;
}

test("damo's defaults: --acc_thres 1, --sz_thres 1, --exclude_samples 20, percentiles 0..100 by 25", () => {
  assert.deepEqual({ ...DAMO_WSS_DEFAULTS }, { accThres: [1], szThres: 1, excludeSamples: 20, percentiles: [0, 25, 50, 75, 100] });
});

test("percentiles are picked as damo's get_percentile picks them", () => {
  const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.deepEqual([0, 25, 50, 75, 90, 99, 100].map((p) => percentileOf(sorted, p)), [1, 3, 6, 8, 10, 10, 10]);
  assert.equal(percentileOf([], 50), null);
});

test('hot band: 33 MiB at --acc_thres 1, 8 MiB at --acc_thres 10, in every snapshot', async () => {
  const t = await recorded('band.json', hotBand());
  const r = wssReport(t, { ...DAMO_WSS_DEFAULTS, accThres: [1, 10, 21] });
  assert.equal(r.excluded, 20);
  assert.equal(r.endNs.length, HOT_BAND_RECORDS - 20);
  const [one, ten, none] = r.columns;
  assert.ok(one!.bytes.every((b) => b === 33 * MiB));
  assert.ok(ten!.bytes.every((b) => b === 8 * MiB));
  assert.ok(none!.bytes.every((b) => b === 0));
  assert.deepEqual(one!.atPercentiles, [33, 33, 33, 33, 33].map((m) => m * MiB));
  // --sz_thres leaves out regions smaller than it: the 1 MiB stack.
  const big = wssReport(t, { ...DAMO_WSS_DEFAULTS, szThres: 2 * MiB });
  assert.ok(big.columns[0]!.bytes.every((b) => b === 32 * MiB));
});

test("the recorder's working-set column is --acc_thres 10 at the default intervals, and says so", async () => {
  const t = await recorded('band2.json', hotBand());
  assert.equal(recorderAccThres(t.maxNrAccesses), 10);
  const rec = t.records[0]!;
  const asRecorder = workingSetBytes({ targetId: 0, startNs: rec.startNs, endNs: rec.endNs, maxNrAccesses: t.maxNrAccesses, regions: rec.regions.map((g) => ({ ...g, age: 0 })) });
  assert.equal(asRecorder, wssReport(t, { ...DAMO_WSS_DEFAULTS, accThres: [10], excludeSamples: 0 }).columns[0]!.bytes[0]);
  assert.match(summaryText(t), /--acc_thres 10 \(half the samples, the recorder's column\)/);
});

test('moving hot set: 8 + k MiB in phase k at --acc_thres 1; the distribution as damo computes it', async () => {
  const t = await recorded('moving.json', movingHotSet());
  const all = wssReport(t, { ...DAMO_WSS_DEFAULTS, accThres: [1, 5, 6], excludeSamples: 0 });
  const expected = Array.from({ length: PHASES * PER_PHASE }, (_, i) => (8 + Math.floor(i / PER_PHASE)) * MiB);
  assert.deepEqual(all.columns[0]!.bytes, expected);
  assert.deepEqual(all.columns[1]!.bytes, expected);
  assert.ok(all.columns[2]!.bytes.every((b) => b === 8 * MiB));
  // 80 values, ten each of 8..15 MiB: index floor(p/100 × 80).
  assert.deepEqual(all.columns[0]!.atPercentiles, [8, 10, 12, 14, 15].map((m) => m * MiB));
  assert.equal(all.columns[0]!.average, 11.5 * MiB);
  // damo's default --exclude_samples 20 drops phases 0 and 1: ten each of 10..15 MiB.
  const dflt = wssReport(t, DAMO_WSS_DEFAULTS);
  assert.deepEqual(dflt.columns[0]!.atPercentiles, [10, 11, 13, 14, 15].map((m) => m * MiB));
  assert.equal(dflt.columns[0]!.average, 12.5 * MiB);
  const table = wssTable(dflt, DAMO_WSS_DEFAULTS, true);
  assert.match(table, /the first 20 excluded \(--exclude_samples 20\)/);
  assert.match(table, /^percentile\s+--acc_thres 1$/m);
  assert.match(table, new RegExp(`^50\\s+${13 * MiB}$`, 'm'));
  assert.match(table, new RegExp(`^avg\\s+${12.5 * MiB}$`, 'm'));
});

test('moving hot set, percentiles per second: each window holds its own phase', async () => {
  const t = await recorded('moving-windows.json', movingHotSet());
  const o = { ...DAMO_WSS_DEFAULTS, accThres: [1, 10], excludeSamples: 0 };
  const r = wssReport(t, o);
  const windows = wssWindows(r, o, 1_000_000_000n);
  assert.equal(windows.length, PHASES);
  windows.forEach((w, k) => {
    assert.equal(w.fromNs, BigInt(k) * 1_000_000_000n);
    assert.equal(w.snapshots, PER_PHASE, `window ${k}`);
    assert.deepEqual(w.atPercentiles[0], o.percentiles.map(() => (8 + k) * MiB), `window ${k}, --acc_thres 1`);
    assert.deepEqual(w.atPercentiles[1], o.percentiles.map(() => 8 * MiB), `window ${k}, --acc_thres 10`);
  });
  const table = wssWindowsTable(r, o, windows, true);
  assert.match(table, new RegExp(`^3\\.0s-4\\.0s\\s+10(\\s+${11 * MiB}){5}$`, 'm'));
});

test('a target with fewer snapshots than --exclude_samples: the table says what to pass', async () => {
  const t = await recorded('short.json', hotBand().slice(0, 5));
  const table = wssTable(wssReport(t, DAMO_WSS_DEFAULTS), DAMO_WSS_DEFAULTS, false);
  assert.match(table, /no snapshot left: .*pass --exclude_samples 0/);
});

// damo 3.3.0 itself, where it is checked out (test/support/damo.ts; CI without it skips visibly).
test('the figures equal damo report wss on the same json_compressed file', async (t) => {
  const damo = damoOrSkip(t, 'v3.3.0');
  if (damo === null) return;
  const path = join(dir, 'moving.json.zlib');
  const w = await openResultWriter(path, { intervals: INTERVALS });
  for (const r of movingHotSet()) await w.writeSnapshot([r]);
  await w.close();
  const target = (await loadResultFile(path)).targets[0]!;
  for (const thres of [1, 5, 6, 10]) {
    const r = damo.run(['report', 'wss', '-i', path, '--raw_number', '--acc_thres', String(thres)]);
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout;
    const theirs = [...out.matchAll(/^\s*(\d+)\s+(\d+)\s/gm)].map((m) => [Number(m[1]), Number(m[2])]);
    const ours = wssReport(target, { ...DAMO_WSS_DEFAULTS, accThres: [thres] });
    assert.deepEqual(theirs, DAMO_WSS_DEFAULTS.percentiles.map((p, i) => [p, ours.columns[0]!.atPercentiles[i]]), `--acc_thres ${thres}:\n${out}`);
    assert.equal(Number(/avr:\s+(\d+)/.exec(out)![1]), Math.trunc(ours.columns[0]!.average));
  }
});
