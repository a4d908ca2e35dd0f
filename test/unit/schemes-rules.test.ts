// The kernel's DAMOS rules, one at a time, against hand-computed cases: access-pattern
// matching (every bound inclusive), damon_hot_score / damon_cold_score, the score
// histogram and its min_score threshold, the time quota's conversion to bytes, and the
// watermarks' activation rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { matchesPattern } from '../../agent/schemes/pattern.js';
import { MAX_SCORE, coldScore, hotScore, schemeScore } from '../../agent/schemes/score.js';
import { INITIAL_THROUGHPUT_BYTES_PER_MS, effectiveQuotaBytes, minScoreFor, scoreHistogram } from '../../agent/schemes/quota.js';
import { WatermarkState, freeMemRatePermil, nextActivation } from '../../agent/schemes/watermarks.js';
import { schemeFromMessage, SchemeSpecError } from '../../agent/schemes/scheme.js';
import { SchemeAction, WatermarkMetric } from '../../gen/damon/v1/damon.js';
import { P, quota, region, scheme } from './schemes-fakes.js';

test('a region matches when size, nr_accesses and age are each within their inclusive bounds', () => {
  const p = { minSizeBytes: 2 * P, maxSizeBytes: 4 * P, minNrAccesses: 1, maxNrAccesses: 3, minAge: 5, maxAge: 10 };
  assert.equal(matchesPattern(region(0, 2, 1, 5), p), true, 'every lower bound');
  assert.equal(matchesPattern(region(0, 4, 3, 10), p), true, 'every upper bound');
  assert.equal(matchesPattern(region(0, 1, 2, 7), p), false, 'too small');
  assert.equal(matchesPattern(region(0, 5, 2, 7), p), false, 'too large');
  assert.equal(matchesPattern(region(0, 3, 0, 7), p), false, 'too few accesses');
  assert.equal(matchesPattern(region(0, 3, 4, 7), p), false, 'too many accesses');
  assert.equal(matchesPattern(region(0, 3, 2, 4), p), false, 'too young');
  assert.equal(matchesPattern(region(0, 3, 2, 11), p), false, 'too old');
  const open = { minSizeBytes: 0, maxSizeBytes: Infinity, minNrAccesses: 0, maxNrAccesses: Infinity, minAge: 0, maxAge: Infinity };
  assert.equal(matchesPattern(region(0, 1 << 20, 1000, 1e6), open), true, 'unset maxima bound nothing');
});

// 5 ms sampling, 100 ms aggregation: max_nr_accesses 20, an age of 10 aggregations is 1 s.
const IV = { maxNrAccesses: 20, aggregationUs: 100_000 };

test('hot and cold scores as mm/damon/ops-common.c computes them', () => {
  const q = quota({ weightNrAccessesPermil: 1000, weightAgePermil: 1000 });
  // nr 10 of 20: freq 50; age 50 = 5 s, log2 steps 3, +32 = 35 -> 3500/32 = 109, /2 = 54;
  // (50 + 54) / 2 = 52 -> 52 * 99 / 100 = 51.
  assert.equal(hotScore({ nrAccesses: 10, age: 50 }, q, IV), 51);
  assert.equal(coldScore({ nrAccesses: 10, age: 50 }, q, IV), 48);
  // Not accessed for 10 s: freq 0, log2 steps 4, negated: 28 -> 87, /2 = 43; 43 / 2 = 21 -> 20.
  assert.equal(hotScore({ nrAccesses: 0, age: 100 }, q, IV), 20);
  assert.equal(coldScore({ nrAccesses: 0, age: 100 }, q, IV), 79);
  // Every sample accessed, age 0: freq 100, age subscore 50: 75 -> 74.
  assert.equal(hotScore({ nrAccesses: 20, age: 0 }, q, IV), 74);
  // Not accessed, age 0: age subscore 50 alone: 25 -> 24.
  assert.equal(hotScore({ nrAccesses: 0, age: 0 }, q, IV), 24);
  // Frequency alone, then age alone.
  assert.equal(hotScore({ nrAccesses: 10, age: 50 }, quota({ weightNrAccessesPermil: 1, weightAgePermil: 0 }), IV), 49);
  assert.equal(hotScore({ nrAccesses: 10, age: 50 }, quota({ weightNrAccessesPermil: 0, weightAgePermil: 7 }), IV), 53);
  // No weights: every region is as hot as any other (0), and as cold (99).
  const none = quota({ weightNrAccessesPermil: 0, weightAgePermil: 0 });
  assert.equal(hotScore({ nrAccesses: 20, age: 1000 }, none, IV), 0);
  assert.equal(coldScore({ nrAccesses: 20, age: 1000 }, none, IV), MAX_SCORE);
  // The log2 of the age saturates at 32 steps: 2^40 s old scores as 2^32 s old.
  assert.equal(hotScore({ nrAccesses: 0, age: 2 ** 44 }, q, IV), hotScore({ nrAccesses: 0, age: 2 ** 36 }, q, IV));
  assert.equal(hotScore({ nrAccesses: 0, age: 2 ** 44 }, q, IV), 0);
  // Pageout and cold take the coldest first, the others the hottest.
  assert.equal(schemeScore('pageout', { nrAccesses: 0, age: 100 }, q, IV), 79);
  assert.equal(schemeScore('cold', { nrAccesses: 0, age: 100 }, q, IV), 79);
  assert.equal(schemeScore('willneed', { nrAccesses: 0, age: 100 }, q, IV), 20);
  assert.equal(schemeScore('stat', { nrAccesses: 0, age: 100 }, q, IV), 20);
});

test('the score histogram and the min_score that keeps the highest scores within the quota', () => {
  const s = scheme({ action: 'pageout', quota: quota({ bytes: 30 * P }) });
  const targets = [
    { id: 1, regions: [region(0, 10, 20, 0), region(10, 30, 0, 100)] },
    { id: 2, regions: [region(30, 35, 10, 50), region(35, 50, 0, 0)] },
  ];
  const { histogram, maxScore } = scoreHistogram(targets, s, s.quota!, IV);
  // Cold scores: 25 (10 pages), 79 (20), 48 (5), 75 (15).
  assert.equal(maxScore, 79);
  assert.equal(histogram[79], 20 * P);
  assert.equal(histogram[75], 15 * P);
  assert.equal(histogram[48], 5 * P);
  assert.equal(histogram[25], 10 * P);
  assert.equal(histogram.reduce((a, b) => a + b, 0), 50 * P);
  // Down from 79: 20 pages < 30; at 75, 35 pages >= 30.
  assert.equal(minScoreFor(histogram, maxScore, 30 * P), 75);
  assert.equal(minScoreFor(histogram, maxScore, 20 * P), 79);
  assert.equal(minScoreFor(histogram, maxScore, 36 * P), 48);
  // More than everything matching: down to 0.
  assert.equal(minScoreFor(histogram, maxScore, 1000 * P), 0);
  // Regions off the pattern are not in the histogram.
  const young = scheme({ action: 'pageout', quota: quota({ bytes: P }), pattern: { ...s.pattern, minAge: 1 } });
  assert.equal(scoreHistogram(targets, young, young.quota!, IV).histogram.reduce((a, b) => a + b, 0), 25 * P);
});

test('a time quota becomes bytes at the throughput measured so far, at least a page, at most the size quota', () => {
  // Never measured: the kernel's 4 MiB per millisecond.
  assert.equal(INITIAL_THROUGHPUT_BYTES_PER_MS, 4 * 1024 * 1024);
  assert.equal(effectiveQuotaBytes({ ms: 10, bytes: 0 }, 0, 0), 40 * 1024 * 1024);
  // 1 MiB in 4 ms: 262144 bytes a millisecond, 10 ms -> 2.5 MiB.
  assert.equal(effectiveQuotaBytes({ ms: 10, bytes: 0 }, 1 << 20, 4_000_000), 2_621_440);
  // The smaller of the two.
  assert.equal(effectiveQuotaBytes({ ms: 10, bytes: 1 << 20 }, 1 << 20, 4_000_000), 1 << 20);
  assert.equal(effectiveQuotaBytes({ ms: 10, bytes: 8 << 20 }, 1 << 20, 4_000_000), 2_621_440);
  // A crawling action still gets a page.
  assert.equal(effectiveQuotaBytes({ ms: 1, bytes: 0 }, 100, 1e9), P);
  // A size quota alone.
  assert.equal(effectiveQuotaBytes({ ms: 0, bytes: 12345 }, 1 << 20, 1), 12345);
});

test('watermarks: deactivated above high or below low, activated at mid or below, held in between', () => {
  const w = { highPermil: 500, midPermil: 400, lowPermil: 200 };
  // metric -> state, from active (a new scheme starts active).
  const seq: [number, boolean][] = [
    [450, true], // between mid and high: an active scheme stays active
    [600, false], // above high
    [450, false], // between: an inactive one stays inactive
    [400, false], // at mid: still inactive (activation needs below mid)
    [399, true], // below mid
    [500, true], // at high: not above it
    [199, false], // below low
    [200, true], // at low: between low and mid
    [501, false],
  ];
  let active = true;
  for (const [metric, want] of seq) {
    active = nextActivation(w, metric, active);
    assert.equal(active, want, `metric ${metric}`);
  }
});

test('watermarks are read every interval, and not between', () => {
  const st = new WatermarkState({ metric: 'free_mem_rate', intervalUs: 1000, highPermil: 500, midPermil: 400, lowPermil: 200 });
  const reads: number[] = [];
  const metric = (v: number) => () => {
    reads.push(v);
    return v;
  };
  assert.equal(st.check(0, metric(600)), false);
  assert.equal(st.check(999, metric(100)), false, 'not due: not read');
  assert.equal(st.check(1000, metric(300)), true);
  assert.equal(st.check(1500, metric(900)), true, 'not due');
  assert.equal(st.check(2000, metric(900)), false);
  assert.deepEqual(reads, [600, 300, 900]);
  const none = new WatermarkState(null);
  assert.equal(none.check(0, () => assert.fail('read without watermarks')), true);
});

test('the free memory rate is MemFree / MemTotal of /proc/meminfo in permil', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meminfo-'));
  try {
    const f = path.join(dir, 'meminfo');
    fs.writeFileSync(f, 'MemTotal:        1000000 kB\nMemFree:          123456 kB\nMemAvailable:     500000 kB\n');
    assert.equal(freeMemRatePermil(f), 123);
    fs.writeFileSync(f, 'MemTotal:        1000000 kB\n');
    assert.throws(() => freeMemRatePermil(f), /no MemFree line/);
    const real = freeMemRatePermil();
    assert.ok(real >= 0 && real <= 1000, `this host: ${real}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the proto Scheme converts to the engine form: unset maxima are no bound, no watermarks is always active', () => {
  const s = schemeFromMessage({
    accessPattern: { minSizeBytes: 4096n, minNrAccesses: 0, maxNrAccesses: 0, minAge: 10 },
    action: SchemeAction.SCHEME_ACTION_PAGEOUT,
    quotas: { ms: 10n, bytes: 0n, resetIntervalMs: 1000n, weightSizePermil: 0, weightNrAccessesPermil: 1, weightAgePermil: 2 },
    watermarks: { metric: WatermarkMetric.WATERMARK_METRIC_FREE_MEM_RATE, intervalUs: 5_000_000n, highPermil: 500, midPermil: 400, lowPermil: 200 },
    applyIntervalUs: 0n,
  });
  assert.deepEqual(s, {
    pattern: { minSizeBytes: 4096, maxSizeBytes: Infinity, minNrAccesses: 0, maxNrAccesses: 0, minAge: 10, maxAge: Infinity },
    action: 'pageout',
    quota: { ms: 10, bytes: 0, resetIntervalMs: 1000, weightSizePermil: 0, weightNrAccessesPermil: 1, weightAgePermil: 2 },
    watermarks: { metric: 'free_mem_rate', intervalUs: 5_000_000, highPermil: 500, midPermil: 400, lowPermil: 200 },
    applyIntervalUs: 0,
  });
  const stat = schemeFromMessage({
    accessPattern: undefined,
    action: SchemeAction.SCHEME_ACTION_STAT,
    watermarks: { metric: WatermarkMetric.WATERMARK_METRIC_NONE, intervalUs: 0n, highPermil: 0, midPermil: 0, lowPermil: 0 },
    applyIntervalUs: 300_000n,
  });
  assert.equal(stat.watermarks, null);
  assert.equal(stat.quota, null);
  assert.equal(stat.pattern.maxSizeBytes, Infinity);
  assert.throws(
    () => schemeFromMessage({ accessPattern: undefined, action: SchemeAction.SCHEME_ACTION_UNSPECIFIED, applyIntervalUs: 0n }, 3),
    (e: unknown) => e instanceof SchemeSpecError && e.field === 'schemes[3].action',
  );
});
