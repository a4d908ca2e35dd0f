import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  lastStartAtOrBelow, lastStartAtOrBelowFrom,
  hotRanges, layoutAt, parseBytes, parseMicros, parseWorkload, parseWorkloadJson, phaseAt, probabilityRuns,
  spanBytes, WorkloadError,
} from '../../agent/ops/synthetic-workload.js';
import { loadWorkload, PRESET_NAMES, presetWorkload } from '../../agent/ops/synthetic-presets.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

function rejects(v: unknown, path: string, msg?: RegExp) {
  assert.throws(() => parseWorkload(v), (e: unknown) => {
    assert.ok(e instanceof WorkloadError, `expected WorkloadError, got ${String(e)}`);
    assert.equal(e.path, path, e.message);
    if (msg) assert.match(e.message, msg);
    return true;
  });
}

const oneTarget = (t: Record<string, unknown>) => ({ targets: [{ id: 1, mappings: [{ start: '0x100000', size: '1GiB' }], ...t }] });

test('byte quantities: numbers, hex, binary units; whole bytes only', () => {
  assert.equal(parseBytes('4GiB', 'x'), 4 * GiB);
  assert.equal(parseBytes('512 MiB', 'x'), 512 * MiB);
  assert.equal(parseBytes('1.5G', 'x'), 1.5 * GiB);
  assert.equal(parseBytes('0x7f0000000000', 'x'), 0x7f0000000000);
  assert.equal(parseBytes(4096, 'x'), 4096);
  assert.throws(() => parseBytes('4GB', 'a.b'), /a\.b: unknown size unit "GB"/);
  assert.throws(() => parseBytes('0.1', 'a'), /whole/);
  assert.throws(() => parseBytes(-1, 'a'), /non-negative/);
  assert.throws(() => parseBytes('0x' + 'f'.repeat(16), 'a'), /2\^57/);
  assert.equal(parseMicros('3s', 'd'), 3_000_000);
  assert.equal(parseMicros('250ms', 'd'), 250_000);
  assert.throws(() => parseMicros('3 min', 'd'), /d: not a duration/);
  assert.throws(() => parseMicros(0, 'd'), /above 0/);
});

test('bad workloads name the field that is wrong', () => {
  rejects({}, 'targets', /required/);
  rejects({ targets: [] }, 'targets', /at least one/);
  rejects({ targets: [{ id: 1 }] }, 'targets[0].mappings', /required/);
  rejects({ targets: [{ id: 'a', mappings: [] }] }, 'targets[0].id');
  rejects({ targets: [{ id: 1, mappings: [] }] }, 'targets[0].mappings', /at least one/);
  rejects({ targets: [{ id: 1, mappings: [{ start: 4097, size: 4096 }] }] }, 'targets[0].mappings[0].start', /page size/);
  rejects({ targets: [{ id: 1, mappings: [{ start: 4096 }] }] }, 'targets[0].mappings[0]', /exactly one of "size" and "end"/);
  rejects(
    { targets: [{ id: 1, mappings: [{ start: 0, size: '1MiB' }, { start: '512KiB', size: '1MiB' }] }] },
    'targets[0].mappings', /mapping 0 .* and mapping 1 .* overlap/,
  );
  rejects(oneTarget({ baseProbability: 1.5 }), 'targets[0].baseProbability', /\[0, 1\]/);
  rejects(oneTarget({ probabilty: 0.5 }), 'targets[0].probabilty', /unknown field/);
  rejects(
    oneTarget({ phases: [{ ranges: [{ start: '0x100000', size: '1MiB', probability: 1 }] }, { ranges: [] }] }),
    'targets[0].phases[0].durationUs', /every phase but the last/,
  );
  rejects(oneTarget({ repeat: true, phases: [{ ranges: [] }] }), 'targets[0].phases[0].durationUs', /repeat/);
  rejects(
    oneTarget({ phases: [{ ranges: [{ start: '0x100000', size: '2GiB', probability: 1 }] }] }),
    'targets[0].phases[0].ranges[0]', /does not lie within one mapping/,
  );
  rejects(oneTarget({ phases: [{ ranges: [{ start: '0x100000', size: '1MiB' }] }] }), 'targets[0].phases[0].ranges[0].probability');
  rejects(
    oneTarget({ mappingChanges: [{ atUs: '2s', mappings: [{ start: 0, size: 4096 }] }, { atUs: '1s', mappings: [{ start: 0, size: 4096 }] }] }),
    'targets[0].mappingChanges[1].atUs', /later than the previous change/,
  );
  rejects({ targets: [oneTarget({}).targets[0], oneTarget({}).targets[0]] }, 'targets[1].id', /used twice/);
  assert.throws(() => parseWorkloadJson('{"targets": [', 'w.json'), /w\.json is not valid JSON/);
});

test('phases, repetition, layouts and ground truth follow the declaration', () => {
  const w = parseWorkload({
    targets: [{
      id: 7,
      mappings: [{ start: '1GiB', size: '1GiB' }, { start: '3GiB', size: '1GiB' }],
      baseProbability: 0.1,
      repeat: true,
      phases: [
        { durationUs: '1s', ranges: [{ start: '1GiB', size: '16MiB', probability: 0.9 }] },
        { durationUs: '2s', ranges: [{ start: '3GiB', size: '8MiB', probability: 0.6 }, { start: '1GiB', size: '4MiB', probability: 0.3 }] },
      ],
      mappingChanges: [{ atUs: '10s', mappings: [{ start: '1GiB', size: '8MiB' }] }],
      exitAtUs: '20s',
    }],
  });
  const t = w.targets[0];
  assert.equal(phaseAt(t, 0), t.phases[0]);
  assert.equal(phaseAt(t, 1_000_000), t.phases[1]);
  assert.equal(phaseAt(t, 3_500_000), t.phases[0], 'repeats after 3 s');
  assert.deepEqual(hotRanges(t, 0), [{ start: GiB, end: GiB + 16 * MiB }]);
  assert.deepEqual(hotRanges(t, 1_500_000), [{ start: 3 * GiB, end: 3 * GiB + 8 * MiB }]);
  // The runs cover exactly the mapped bytes.
  assert.equal(spanBytes(probabilityRuns(t, 1_500_000)), 2 * GiB);
  assert.equal(layoutAt(t, 10_000_000).mappings.length, 1);
  // After the mapping change, the 16 MiB hot range is clipped to what is still mapped.
  assert.deepEqual(hotRanges(t, 12_000_000), [{ start: GiB, end: GiB + 8 * MiB }]);
  assert.equal(t.exitAtUs, 20_000_000);
});

test('presets parse, describe themselves as simulated, and load by name; files too', () => {
  for (const name of PRESET_NAMES) {
    const w = presetWorkload(name);
    assert.match(w.description, /^simulated/);
    assert.ok(w.targets.length >= 1);
  }
  const hot5 = presetWorkload('hot5').targets[0];
  const mapped = spanBytes(probabilityRuns(hot5, 0));
  const hot = spanBytes(hotRanges(hot5, 0));
  assert.ok(Math.abs(hot / (4 * GiB) - 0.05) < 1e-4, `hot fraction ${hot / (4 * GiB)}`);
  assert.ok(mapped > 4 * GiB);
  assert.notDeepEqual(hotRanges(hot5, 0), hotRanges(hot5, 4_000_000), 'the hot set moves');
  assert.equal(loadWorkload('islands').name, 'islands');
  assert.throws(() => loadWorkload('/nonexistent/w.json'), /neither a preset \(hot5, islands\) nor a readable file: no such file/);
  const fromFile = loadWorkload('w.json', () => JSON.stringify(oneTarget({})));
  assert.equal(fromFile.name, 'w.json');
});

test('the hinted search finds what the plain binary search finds, from any hint', () => {
  fc.assert(fc.property(
    fc.uniqueArray(fc.integer({ min: 0, max: 10_000 }), { maxLength: 40 }),
    fc.integer({ min: -5, max: 10_005 }),
    fc.integer({ min: -2, max: 45 }),
    (starts, addr, hint) => {
      const spans = [...starts].sort((a, b) => a - b).map((s) => ({ start: s, end: s + 1 }));
      assert.equal(lastStartAtOrBelowFrom(spans, addr, hint), lastStartAtOrBelow(spans, addr));
    },
  ), { numRuns: 2000 });
});

test('the example workload file parses: a growing heap, a moving hot set and an exit', () => {
  const path = new URL('../../../examples/workloads/grow-and-exit.json', import.meta.url).pathname;
  const w = loadWorkload(path);
  const t = w.targets[0];
  assert.equal(t.layouts.length, 2);
  assert.equal(t.exitAtUs, 10_000_000);
  assert.equal(spanBytes(hotRanges(t, 0)), 64 * MiB);
  assert.equal(spanBytes(hotRanges(t, 5_000_000)), 128 * MiB);
});
