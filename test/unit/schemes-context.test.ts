// Schemes in the monitoring context with the synthetic operations: applied once per
// aggregation to the regions the records show (after the merge, before the reset), so a
// stat scheme's statistics equal what the records say; actions restart the regions' age.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DamonContext } from '../../agent/engine/context.js';
import { validateAttributes } from '../../agent/engine/attrs.js';
import { SyntheticOperations } from '../../agent/ops/synthetic.js';
import { presetWorkload } from '../../agent/ops/synthetic-presets.js';
import { workloadForPids } from '../../agent/daemon/ops-select.js';
import { SchemeRefusedError } from '../../agent/schemes/schemes-engine.js';
import type { AccessPatternSpec } from '../../agent/schemes/scheme.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import type { Operations } from '../../agent/engine/operations.js';
import { seededRandom } from './page-idle-fakes.js';
import { ANY_PATTERN, scheme } from './schemes-fakes.js';

const MiB = 2 ** 20;

function run(schemes: ReturnType<typeof scheme>[], aggregations: number) {
  const attrs = validateAttributes({ samplingUs: 5_000, aggregationUs: 100_000, schemes });
  const ops = new SyntheticOperations(workloadForPids(presetWorkload('hot5'), [11, 12]));
  const ctx = new DamonContext({ attrs, targetIds: [11, 12], ops, clock: 'virtual', random: seededRandom(5) });
  const records: AggregationRecord[] = [];
  ctx.on('aggregate', (r) => records.push(r));
  ctx.runFor(aggregations * attrs.aggregationUs);
  return { ctx, records };
}

test('a stat scheme counts exactly the regions of the records that match its pattern', () => {
  const hot: AccessPatternSpec = { ...ANY_PATTERN, minNrAccesses: 10 };
  const coldBig: AccessPatternSpec = { ...ANY_PATTERN, maxNrAccesses: 2, minSizeBytes: 16 * MiB, minAge: 3 };
  const { ctx, records } = run([scheme({ action: 'stat', pattern: hot }), scheme({ action: 'stat', pattern: coldBig })], 40);
  assert.equal(records.length, 80);
  const expect = (p: AccessPatternSpec) => {
    let nr = 0;
    let sz = 0;
    for (const rec of records) {
      for (const r of rec.regions) {
        const size = r.end - r.start;
        if (size >= p.minSizeBytes && size <= p.maxSizeBytes && r.nrAccesses >= p.minNrAccesses && r.nrAccesses <= p.maxNrAccesses && r.age >= p.minAge && r.age <= p.maxAge) {
          nr++;
          sz += size;
        }
      }
    }
    return { nr, sz };
  };
  const [a, b] = ctx.schemeStats();
  for (const [st, p] of [[a, hot], [b, coldBig]] as const) {
    const e = expect(p);
    assert.ok(e.nr > 0, 'the pattern matches something');
    assert.equal(st.nrTried, BigInt(e.nr));
    assert.equal(st.szTried, BigInt(e.sz));
    assert.equal(st.nrApplied, 0n);
    assert.equal(st.szApplied, 0n);
    assert.equal(st.active, true);
  }
});

test('pageout on synthetic targets counts as applied, changes nothing, and restarts the ages', () => {
  const cold: AccessPatternSpec = { ...ANY_PATTERN, maxNrAccesses: 0, minAge: 5 };
  const { ctx, records } = run([scheme({ action: 'stat', pattern: cold }), scheme({ action: 'pageout', pattern: cold })], 60);
  const [stat, pageout] = ctx.schemeStats();
  assert.ok(pageout.nrTried > 0n);
  assert.equal(pageout.nrTried, stat.nrTried);
  assert.equal(pageout.szApplied, pageout.szTried);
  assert.equal(pageout.nrApplied, pageout.nrTried);
  // Paged-out regions start aging from 0: in the next record, what lies inside one is at most 1 old.
  let checked = 0;
  for (let k = 0; k + 2 < records.length; k++) {
    const rec = records[k];
    const next = records.slice(k + 1).find((r) => r.targetId === rec.targetId)!;
    for (const r of rec.regions.filter((x) => x.nrAccesses === 0 && x.age >= 5)) {
      for (const n of next.regions.filter((x) => x.start >= r.start && x.end <= r.end)) {
        assert.ok(n.age <= 1, `[${n.start}, ${n.end}) is ${n.age} old after a pageout`);
        checked++;
      }
    }
  }
  assert.ok(checked > 0);
});

test('operations without an actuator refuse action schemes, and still run stat ones', () => {
  const ops = new SyntheticOperations(workloadForPids(presetWorkload('hot5'), [1]));
  const bare: Operations = {
    name: 'bare',
    init: (c) => ops.init(c),
    update: (c) => ops.update(c),
    prepareAccessChecks: (c) => ops.prepareAccessChecks(c),
    checkAccesses: (c) => ops.checkAccesses(c),
    targetValid: (t) => ops.targetValid(t),
  };
  assert.throws(
    () => new DamonContext({ attrs: validateAttributes({ schemes: [scheme({ action: 'cold' })] }), targetIds: [1], ops: bare, clock: 'virtual' }),
    (e: unknown) => e instanceof SchemeRefusedError && /schemes\[0\] \(cold\): the bare operations cannot apply cold/.test(e.message),
  );
  const ctx = new DamonContext({ attrs: validateAttributes({ schemes: [scheme({ action: 'stat' })] }), targetIds: [1], ops: bare, clock: 'virtual' });
  ctx.runFor(300_000);
  assert.ok(ctx.schemeStats()[0].nrTried > 0n);
  assert.deepEqual(new DamonContext({ attrs: validateAttributes({}), targetIds: [1], ops: bare, clock: 'virtual' }).schemeStats(), []);
});
