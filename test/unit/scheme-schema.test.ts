// Schemes at the door: every field's bound with the status and the field named, the
// normalizations that make message and text agree, which operations can apply which
// action, and DAMON's text form (dbgfs's schemes file): errors by line and field, action
// and metric numbers and names, comments, and a round trip over random valid schemes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import {
  KERNEL_UINT_MAX,
  KERNEL_ULONG_MAX,
  MAX_SCHEMES_PER_SESSION,
  MAX_SCHEMES_TEXT_BYTES,
  checkSchemesFitOperations,
  schemesFromMessage,
  schemesRefusal,
  toProtoScheme,
  type SchemeSpec,
} from '../../common/scheme-schema.js';
import { formatSchemesText, parseSchemesText, schemesFromText } from '../../common/scheme-text.js';
import { SchemaError, attrsFromMessage, attrsFromText } from '../../common/session-schema.js';
import { SchemeAction, WatermarkMetric, type Scheme } from '../../gen/damon/v1/damon.js';

const { INVALID_ARGUMENT } = grpc.status;
/** DAMON's default intervals: 20 samples an aggregation. */
const ATTRS = { samplingUs: 5_000, aggregationUs: 100_000 };

function refuses(fn: () => unknown, field: string, re: RegExp): SchemaError {
  let caught: unknown;
  assert.throws(fn, (e: unknown) => ((caught = e), true));
  assert.ok(caught instanceof SchemaError, `not a SchemaError: ${String(caught)}`);
  assert.equal(caught.field, field, caught.message);
  assert.equal(caught.code, INVALID_ARGUMENT, caught.message);
  assert.match(caught.message, re);
  assert.ok(caught.message.length < 400, `a short message: ${caught.message}`);
  return caught;
}

function scheme(p: Partial<Scheme> = {}): Scheme {
  return { accessPattern: { minSizeBytes: 0n, minNrAccesses: 0, minAge: 0 }, action: SchemeAction.SCHEME_ACTION_PAGEOUT, applyIntervalUs: 0n, ...p };
}

const one = (s: Scheme) => schemesFromMessage([s], ATTRS)[0];

test('access pattern: min <= max for size, nr_accesses and age; nr_accesses within one aggregation; unset or the kernel max is no bound', () => {
  const pat = (p: Partial<NonNullable<Scheme['accessPattern']>>) => scheme({ accessPattern: { minSizeBytes: 0n, minNrAccesses: 0, minAge: 0, ...p } });
  refuses(() => schemesFromMessage([pat({ minSizeBytes: 8192n, maxSizeBytes: 4096n })], ATTRS), 'schemes[0].access_pattern.max_size_bytes', /must not be below min_size_bytes \(4096 < 8192\)/);
  refuses(() => schemesFromMessage([scheme(), pat({ minNrAccesses: 5, maxNrAccesses: 4 })], ATTRS), 'schemes[1].access_pattern.max_nr_accesses', /must not be below min_nr_accesses/);
  refuses(() => schemesFromMessage([pat({ minAge: 10, maxAge: 9 })], ATTRS), 'schemes[0].access_pattern.max_age', /must not be below min_age \(9 < 10\)/);
  refuses(() => one(pat({ minNrAccesses: 21 })), 'schemes[0].access_pattern.min_nr_accesses', /21 can never match: an aggregation counts at most 20 accesses/);
  refuses(() => one(pat({ maxNrAccesses: 21 })), 'schemes[0].access_pattern.max_nr_accesses', /exceeds the 20 accesses .*leave it unset for no bound/);
  refuses(() => one(pat({ minSizeBytes: 2n ** 53n })), 'schemes[0].access_pattern.min_size_bytes', /too large: at most 9007199254740991, got 9007199254740992/);
  refuses(() => one(pat({ maxSizeBytes: 2n ** 64n - 2n })), 'schemes[0].access_pattern.max_size_bytes', /too large/);
  // No bound: unset, or what the kernel writes for none.
  for (const p of [{}, { maxSizeBytes: KERNEL_ULONG_MAX, maxNrAccesses: KERNEL_UINT_MAX, maxAge: KERNEL_UINT_MAX }]) {
    assert.deepEqual(one(pat(p)).pattern, { minSizeBytes: 0, maxSizeBytes: null, minNrAccesses: 0, maxNrAccesses: null, minAge: 0, maxAge: null });
  }
  assert.deepEqual(one(pat({ minSizeBytes: 4096n, maxSizeBytes: 4096n, minNrAccesses: 20, maxNrAccesses: 20, minAge: 3, maxAge: 3 })).pattern, {
    minSizeBytes: 4096, maxSizeBytes: 4096, minNrAccesses: 20, maxNrAccesses: 20, minAge: 3, maxAge: 3,
  });
  // The bound follows the intervals: 1 ms / 100 ms counts 100.
  assert.equal(schemesFromMessage([pat({ minNrAccesses: 100 })], { samplingUs: 1000, aggregationUs: 100_000 })[0].pattern.minNrAccesses, 100);
});

test('action: required and known', () => {
  refuses(() => one(scheme({ action: SchemeAction.SCHEME_ACTION_UNSPECIFIED })), 'schemes[0].action', /required: one of willneed, cold, pageout, hugepage, nohugepage, stat, collapse, got 0/);
  refuses(() => one(scheme({ action: 99 as SchemeAction })), 'schemes[0].action', /got 99/);
  assert.equal(one(scheme({ action: SchemeAction.SCHEME_ACTION_COLLAPSE })).action, 'collapse');
});

test('quotas: reset interval required with ms or bytes, weights in permil, none when neither is set', () => {
  const q = (p: Partial<NonNullable<Scheme['quotas']>>) =>
    scheme({ quotas: { ms: 0n, bytes: 0n, resetIntervalMs: 0n, weightSizePermil: 0, weightNrAccessesPermil: 0, weightAgePermil: 0, ...p } });
  refuses(() => one(q({ bytes: 1n << 20n })), 'schemes[0].quotas.reset_interval_ms', /required \(> 0\) when ms or bytes is set/);
  refuses(() => one(q({ ms: 10n })), 'schemes[0].quotas.reset_interval_ms', /required/);
  refuses(() => one(q({ ms: 10n, resetIntervalMs: 1000n, weightAgePermil: 1001 })), 'schemes[0].quotas.weight_age_permil', /too large: at most 1000, got 1001/);
  refuses(() => one(q({ ms: 86_400_001n, resetIntervalMs: 1000n })), 'schemes[0].quotas.ms', /at most 86400000/);
  assert.equal(one(q({ resetIntervalMs: 1000n, weightSizePermil: 5 })).quotas, null, 'neither ms nor bytes: no quota');
  assert.deepEqual(one(q({ bytes: 1n << 30n, resetIntervalMs: 1000n, weightAgePermil: 1000 })).quotas, {
    ms: 0, bytes: 2 ** 30, resetIntervalMs: 1000, weightSizePermil: 0, weightNrAccessesPermil: 0, weightAgePermil: 1000,
  });
});

test('watermarks: a metric, a positive interval, 1000 >= high >= mid >= low; metric none is always active', () => {
  const w = (p: Partial<NonNullable<Scheme['watermarks']>>) =>
    scheme({ watermarks: { metric: WatermarkMetric.WATERMARK_METRIC_FREE_MEM_RATE, intervalUs: 5_000_000n, highPermil: 500, midPermil: 400, lowPermil: 50, ...p } });
  refuses(() => one(w({ metric: WatermarkMetric.WATERMARK_METRIC_UNSPECIFIED })), 'schemes[0].watermarks.metric', /required: none or free_mem_rate/);
  refuses(() => one(w({ intervalUs: 0n })), 'schemes[0].watermarks.interval_us', /must be positive/);
  refuses(() => one(w({ midPermil: 501 })), 'schemes[0].watermarks.mid_permil', /must not exceed high_permil \(501 > 500\)/);
  refuses(() => one(w({ lowPermil: 401 })), 'schemes[0].watermarks.low_permil', /must not exceed mid_permil/);
  refuses(() => one(w({ highPermil: 1001 })), 'schemes[0].watermarks.high_permil', /at most 1000/);
  assert.equal(one(w({ metric: WatermarkMetric.WATERMARK_METRIC_NONE, intervalUs: 0n, lowPermil: 900 })).watermarks, null);
  assert.deepEqual(one(w({})).watermarks, { metric: 'free_mem_rate', intervalUs: 5_000_000, highPermil: 500, midPermil: 400, lowPermil: 50 });
});

test('apply interval: 0 or at least one aggregation interval; at most MAX_SCHEMES_PER_SESSION schemes', () => {
  refuses(() => one(scheme({ applyIntervalUs: 99_999n })), 'schemes[0].apply_interval_us', /must be 0 \(every aggregation\) or at least the aggregation interval \(99999 < 100000\)/);
  assert.equal(one(scheme({ applyIntervalUs: 1_000_000n })).applyIntervalUs, 1_000_000);
  refuses(() => schemesFromMessage(Array.from({ length: MAX_SCHEMES_PER_SESSION + 1 }, () => scheme()), ATTRS), 'schemes', /33 schemes; a session has at most 32/);
  assert.equal(schemesFromMessage(Array.from({ length: MAX_SCHEMES_PER_SESSION }, () => scheme()), ATTRS).length, 32);
});

test('the schemes are checked with the attributes they come with, and named under attrs', () => {
  const m = { samplingIntervalUs: 10_000n, aggregationIntervalUs: 100_000n, updateIntervalUs: 0n, minNrRegions: 0, maxNrRegions: 0, resultFile: '', resultFormat: '' };
  refuses(() => attrsFromMessage({ ...m, schemes: [scheme({ accessPattern: { minSizeBytes: 0n, minNrAccesses: 11, minAge: 0 } })] }), 'schemes[0].access_pattern.min_nr_accesses', /at most 10 accesses/);
  const a = attrsFromMessage({ ...m, schemes: [scheme()] });
  assert.equal(a.schemes.length, 1);
  assert.deepEqual(attrsFromMessage(undefined).schemes, []);
});

test('actions the operations cannot apply: refused for explicit operations, left to the agent for ""', () => {
  const [hp, collapse, pageout] = schemesFromMessage(
    [scheme({ action: SchemeAction.SCHEME_ACTION_HUGEPAGE }), scheme({ action: SchemeAction.SCHEME_ACTION_COLLAPSE }), scheme()],
    ATTRS,
  );
  refuses(() => checkSchemesFitOperations([pageout, hp], 'page_idle'), 'schemes[1].action', /operations "page_idle" cannot apply schemes\[1\] hugepage \(it applies willneed, cold, pageout, collapse, stat\)/);
  refuses(() => checkSchemesFitOperations([collapse], 'kdamond'), 'schemes[0].action', /operations "kdamond" cannot apply schemes\[0\] collapse/);
  refuses(() => checkSchemesFitOperations([hp], 'synthetic'), 'schemes[0].action', /"synthetic" cannot apply/);
  checkSchemesFitOperations([hp, collapse], '');
  checkSchemesFitOperations([hp, pageout], 'kdamond');
  checkSchemesFitOperations([collapse, pageout], 'page_idle');
  assert.equal(schemesRefusal([pageout], 'kdamond'), undefined);
});

// ---- the text form ------------------------------------------------------------------------

const PAGEOUT_LINE = '4096 18446744073709551615 0 0 10 4294967295 2 0 0 0 0 0 0 0 0 0 0 0';

test('text: dbgfs lines with action numbers, names, comments and blank lines; no bound read as the kernel writes it', () => {
  const text = `# proactive reclaim
${PAGEOUT_LINE}

  4096 18446744073709551615 0 0 10 4294967295 pageout 0 0 0 0 0 0 none 0 0 0 0   # same, by name
0 0 0 0 0 0 collapse 0 0 0 0 0 0 0 0 0 0 0 200000
`;
  const s = schemesFromText(text, ATTRS);
  assert.equal(s.length, 3);
  assert.deepEqual(s[0], s[1]);
  assert.deepEqual(s[0], {
    pattern: { minSizeBytes: 4096, maxSizeBytes: null, minNrAccesses: 0, maxNrAccesses: 0, minAge: 10, maxAge: null },
    action: 'pageout', quotas: null, watermarks: null, applyIntervalUs: 0,
  });
  assert.equal(s[2].action, 'collapse');
  assert.equal(s[2].applyIntervalUs, 200_000);
  assert.equal(formatSchemesText(s), `${PAGEOUT_LINE}\n${PAGEOUT_LINE}\n0 0 0 0 0 0 collapse 0 0 0 0 0 0 0 0 0 0 0 200000\n`);
  assert.deepEqual(parseSchemesText('# nothing\n\n').schemes, []);
  assert.equal(formatSchemesText([]), '');
  const full = schemesFromText('0 1048576 0 5 0 100 1 10 1073741824 1000 0 3 7 1 5000000 600 500 100', ATTRS)[0];
  assert.deepEqual(full.quotas, { ms: 10, bytes: 2 ** 30, resetIntervalMs: 1000, weightSizePermil: 0, weightNrAccessesPermil: 3, weightAgePermil: 7 });
  assert.deepEqual(full.watermarks, { metric: 'free_mem_rate', intervalUs: 5_000_000, highPermil: 600, midPermil: 500, lowPermil: 100 });
  assert.equal(full.action, 'cold');
});

test('text: errors name the line and the field', () => {
  const bad = (text: string, re: RegExp) => refuses(() => schemesFromText(text, ATTRS), 'schemes_text', re);
  bad(`# c\n${PAGEOUT_LINE}\n1 2 3`, /^schemes_text: line 3: 3 fields; a scheme has 18 \(min_sz max_sz .* wmarks_low\) and optionally apply_interval_us$/);
  bad(PAGEOUT_LINE.replace(' 2 0 0', ' 9 0 0'), /line 1, field 7 \(action\): unknown action "9" \(0 willneed, 1 cold, 2 pageout, 3 hugepage, 4 nohugepage, 5 stat, or a name/);
  bad(PAGEOUT_LINE.replace(' 2 0 0', ' evict 0 0'), /line 1, field 7 \(action\): unknown action "evict"/);
  bad(PAGEOUT_LINE.replace(/^4096/, '-1'), /line 1, field 1 \(min_sz\): not a non-negative integer: "-1"/);
  bad(PAGEOUT_LINE.replace(/^4096/, '4K'), /field 1 \(min_sz\): not a non-negative integer: "4K"/);
  bad(PAGEOUT_LINE.replace(' 0 0 10 ', ' 0 4294967296 10 '), /line 1, field 4 \(max_nr_accesses\): too large: at most 4294967295, got 4294967296/);
  bad(PAGEOUT_LINE.replace(' 0 0 10 ', ' 0 30 10 '), /line 1, field 4 \(max_nr_accesses\): 30 exceeds the 20 accesses/);
  bad(`\n\n${PAGEOUT_LINE.replace(/ 0 0 0 0 0$/, ' 2 0 0 0 0')}`, /line 3, field 14 \(wmarks_metric\): unknown watermark metric "2"/);
  bad(PAGEOUT_LINE.replace(/ 0 0 0 0 0$/, ' 1 1000 400 500 0'), /line 1, field 17 \(wmarks_mid\): must not exceed high_permil \(500 > 400\)/);
  bad(PAGEOUT_LINE.replace(/ 2 0 0 0 /, ' 2 10 0 0 '), /line 1, field 10 \(quota_reset_interval_ms\): required/);
  bad(`${PAGEOUT_LINE} 5`, /line 1, field 19 \(apply_interval_us\): must be 0/);
  bad(`${PAGEOUT_LINE}\n`.repeat(MAX_SCHEMES_PER_SESSION + 1), /^schemes_text: 33 schemes; a session has at most 32/);
  bad(`#${'x'.repeat(MAX_SCHEMES_TEXT_BYTES)}`, /is 65537 bytes long; at most 65536/);
  bad(`${PAGEOUT_LINE.replace(/^4096/, '9'.repeat(500))}`, /field 1 \(min_sz\): not a non-negative integer: "9{24}…"/);
});

test('text with the attributes: attrs_text and schemes_text together, the schemes checked against those intervals', () => {
  refuses(() => attrsFromText('10000 100000 1000000 10 1000', '', '0 0 11 11 0 0 5 0 0 0 0 0 0 0 0 0 0 0'), 'schemes_text', /line 1, field 3 \(min_nr_accesses\): 11 can never match: an aggregation counts at most 10/);
  const a = attrsFromText('5000 100000 1000000 10 1000', '', PAGEOUT_LINE);
  assert.equal(a.schemes[0].action, 'pageout');
});

/** Any valid scheme for ATTRS (20 samples an aggregation). */
const schemeArb: fc.Arbitrary<SchemeSpec> = fc
  .record({
    minSize: fc.integer({ min: 0, max: 2 ** 40 }),
    sizeSpan: fc.option(fc.integer({ min: 0, max: 2 ** 40 })),
    minNr: fc.integer({ min: 0, max: 20 }),
    nrSpan: fc.option(fc.integer({ min: 0, max: 20 })),
    minAge: fc.integer({ min: 0, max: 1000 }),
    ageSpan: fc.option(fc.integer({ min: 0, max: 1000 })),
    action: fc.constantFrom('willneed', 'cold', 'pageout', 'hugepage', 'nohugepage', 'stat', 'collapse' as const),
    quotas: fc.option(
      fc.record({
        ms: fc.integer({ min: 0, max: 1000 }),
        bytes: fc.integer({ min: 1, max: 2 ** 40 }),
        resetIntervalMs: fc.integer({ min: 1, max: 60_000 }),
        weightSizePermil: fc.integer({ min: 0, max: 1000 }),
        weightNrAccessesPermil: fc.integer({ min: 0, max: 1000 }),
        weightAgePermil: fc.integer({ min: 0, max: 1000 }),
      }),
    ),
    wmarks: fc.option(fc.tuple(fc.integer({ min: 1, max: 10_000_000 }), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 1000 }))),
    apply: fc.oneof(fc.constant(0), fc.integer({ min: 100_000, max: 10_000_000 })),
  })
  .map((r) => {
    const cap = (min: number, span: number | null, max: number) => (span === null ? null : Math.min(min + span, max));
    const [interval, ...marks] = r.wmarks ?? [0, 0, 0, 0];
    const [low, mid, high] = marks.sort((x, y) => x - y);
    return {
      pattern: {
        minSizeBytes: r.minSize,
        maxSizeBytes: cap(r.minSize, r.sizeSpan, Number.MAX_SAFE_INTEGER),
        minNrAccesses: r.minNr,
        maxNrAccesses: cap(r.minNr, r.nrSpan, 20),
        minAge: r.minAge,
        maxAge: cap(r.minAge, r.ageSpan, 1_000_000),
      },
      action: r.action,
      quotas: r.quotas && { ...r.quotas },
      watermarks: r.wmarks ? { metric: 'free_mem_rate' as const, intervalUs: interval, highPermil: high, midPermil: mid, lowPermil: low } : null,
      applyIntervalUs: r.apply,
    };
  });

test('round trip: message -> text -> schemes and schemes -> message -> schemes are the identity on valid schemes', () => {
  fc.assert(
    fc.property(fc.array(schemeArb, { maxLength: MAX_SCHEMES_PER_SESSION }), (schemes) => {
      const viaMessage = schemesFromMessage(schemes.map(toProtoScheme), ATTRS);
      assert.deepEqual(viaMessage, schemes);
      const text = formatSchemesText(schemes);
      assert.deepEqual(schemesFromText(text, ATTRS), schemes);
      assert.equal(formatSchemesText(schemesFromText(text, ATTRS)), text);
    }),
    { numRuns: 300 },
  );
});
