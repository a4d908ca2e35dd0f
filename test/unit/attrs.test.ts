import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AttributeError, DEFAULT_ATTRS, maxNrAccesses, validateAttributes } from '../../agent/engine/attrs.js';
import { SchemaError, formatAttrsText, parseAttrsText } from '../../common/session-schema.js';

test('defaults are DAMON\'s: 5 ms, 100 ms, 1 s, 10, 1000', () => {
  const a = validateAttributes({});
  assert.deepEqual(
    [a.samplingUs, a.aggregationUs, a.updateUs, a.minNrRegions, a.maxNrRegions],
    [5000, 100000, 1000000, 10, 1000],
  );
  assert.equal(maxNrAccesses(DEFAULT_ATTRS), 20);
});

test('the text form round-trips, with and without a result file', () => {
  const t = '5000 100000 1000000 10 1000 /damon.data';
  assert.equal(formatAttrsText(parseAttrsText(t)), t);
  assert.equal(formatAttrsText(parseAttrsText(' 10000 200000 2000000 5 50 \n')), '10000 200000 2000000 5 50');
});

function rejects(fn: () => unknown, field: string) {
  assert.throws(fn, (e: unknown) => (e instanceof AttributeError || e instanceof SchemaError) && e.field === field);
}

test('bad attributes name the field that is wrong', () => {
  rejects(() => validateAttributes({ samplingUs: 0 }), 'sampling_interval_us');
  rejects(() => validateAttributes({ aggregationUs: -5 }), 'aggregation_interval_us');
  rejects(() => validateAttributes({ updateUs: 1.5 }), 'update_interval_us');
  rejects(() => validateAttributes({ samplingUs: 200000, aggregationUs: 100000 }), 'sampling_interval_us');
  rejects(() => validateAttributes({ minNrRegions: 2 }), 'min_nr_regions');
  rejects(() => validateAttributes({ minNrRegions: 20, maxNrRegions: 10 }), 'max_nr_regions');
  rejects(() => parseAttrsText('5000 100000'), 'attrs');
  rejects(() => parseAttrsText('5000 1e5 1000000 10 1000'), 'aggregation_interval_us');
});
