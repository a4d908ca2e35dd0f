// Schemes acting on a real process of this host: the engine (DamonContext) with
// operations over a child's file-backed mapping that report no accesses, and the
// page_idle operations' actuator (process_madvise on a pidfd). page_idle itself is not
// needed: the access checks are not what is tested here, the applying is.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { DamonContext } from '../../agent/engine/context.js';
import { validateAttributes } from '../../agent/engine/attrs.js';
import type { Operations, OpsContext } from '../../agent/engine/operations.js';
import { newRegion, type Target } from '../../agent/engine/region.js';
import { MadviseActuator } from '../../agent/ops/madvise-actuator.js';
import { PageIdleOperations } from '../../agent/ops/page-idle.js';
import type { SchemeSpec } from '../../agent/schemes/scheme.js';
import { ANY_PATTERN, quota, scheme } from '../unit/schemes-fakes.js';
import { toucherRig, type FileToucher, type ToucherRig } from './support/file-toucher.js';

const MiB = 2 ** 20;
const SIZE = 16 * MiB;
let rig: ToucherRig;

before(() => {
  rig = toucherRig(SIZE);
});
after(() => rig.close());

/** The child's mapping in 16 regions, never accessed; `extra` regions go before it. */
class MappingOps implements Operations {
  readonly name = 'mapping';
  readonly actuator = new MadviseActuator('mapping');
  constructor(
    private readonly m: FileToucher,
    private readonly extra: [number, number][] = [],
  ) {}
  init(ctx: OpsContext): void {
    const { start, end } = this.m.range;
    for (const t of ctx.targets as Target[]) {
      const step = (end - start) / 16;
      t.regions = [
        ...this.extra.map(([s, e]) => newRegion(s, e)),
        ...Array.from({ length: 16 }, (_, i) => newRegion(start + i * step, start + (i + 1) * step)),
      ];
    }
  }
  update(): void {}
  prepareAccessChecks(): void {}
  checkAccesses(): number {
    return 0;
  }
  targetValid(): boolean {
    return true;
  }
  cleanup(): void {
    this.actuator.close();
  }
}

function pidfds(): number {
  let n = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[pidfd]') n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

function runScheme(m: FileToucher, schemes: SchemeSpec[], aggregations: number, extra: [number, number][] = [], told: string[] = []) {
  const ops = new MappingOps(m, extra);
  const ctx = new DamonContext({
    // Regions are kept as set: no merging across the hole, at most 32 regions.
    attrs: validateAttributes({ samplingUs: 5_000, aggregationUs: 100_000, minNrRegions: 16, maxNrRegions: 32, schemes }),
    targetIds: [m.pid],
    ops,
    clock: 'virtual',
    adjust: 'kernel',
    schemeHooks: { onActionError: (msg) => told.push(msg) },
  });
  ctx.runFor(aggregations * 100_000);
  return ctx;
}

const COLD = { ...ANY_PATTERN, maxNrAccesses: 0, minAge: 2 };

test('a pageout scheme pages out a cold mapping of a real process', async () => {
  const m = await rig.start();
  try {
    assert.equal(m.rssBytes(), SIZE);
    const before = pidfds();
    const ctx = runScheme(m, [scheme({ action: 'pageout', pattern: COLD })], 4);
    const [st] = ctx.schemeStats();
    assert.ok(st.szApplied >= BigInt(SIZE), `applied to ${st.szApplied} bytes`);
    assert.equal(st.szApplied, st.szTried);
    assert.ok(m.rssBytes() <= SIZE / 16, `Rss after: ${m.rssBytes()}`);
    assert.equal(pidfds(), before + 1, 'one pidfd for the target, opened once');
    await ctx.stop();
    assert.equal(pidfds(), before, 'closed with the operations');
  } finally {
    await m.kill();
  }
});

test('a size quota limits what is paged out per reset interval', async () => {
  const m = await rig.start();
  try {
    // 500 ms of aggregations inside one 10 s window: 1 MiB, not more.
    const ctx = runScheme(m, [scheme({ action: 'pageout', pattern: COLD, quota: quota({ bytes: MiB, resetIntervalMs: 10_000 }) })], 5);
    const [st] = ctx.schemeStats();
    assert.equal(st.szApplied, BigInt(MiB));
    const rss = m.rssBytes();
    assert.ok(Math.abs(rss - (SIZE - MiB)) <= 64 * 1024, `Rss ${rss}, expected about ${SIZE - MiB}`);
    await ctx.stop();
  } finally {
    await m.kill();
  }
});

test('a range the process does not map is refused (ENOMEM), counted, told once; the rest is paged out', async () => {
  const m = await rig.start();
  const told: string[] = [];
  try {
    // Page 1 is below mmap_min_addr: never mapped.
    const ctx = runScheme(m, [scheme({ action: 'pageout', pattern: COLD })], 8, [[0x1000, 0x2000]], told);
    assert.equal(told.length, 1, told.join('\n'));
    assert.match(told[0], /pageout on target \d+: .*ENOMEM/);
    assert.ok(m.rssBytes() <= SIZE / 16);
    const [st] = ctx.schemeStats();
    assert.ok(st.nrTried > st.nrApplied, 'the refused region was tried, not applied');
    await ctx.stop();
  } finally {
    await m.kill();
  }
});

test('a target that exited is ESRCH for its actions', async () => {
  const m = await rig.start();
  const act = new MadviseActuator();
  await m.kill();
  assert.throws(() => act.apply(m.pid, m.range.start, m.range.end, 'pageout'), (e: unknown) => (e as { code?: string }).code === 'ESRCH');
  act.close();
});

test('page_idle refuses hugepage and nohugepage, naming the kdamond operations', () => {
  const ops = new PageIdleOperations();
  for (const action of ['hugepage', 'nohugepage'] as const) {
    assert.match(ops.actuator.refusal(action)!, /process_madvise\(2\).*MADV_(NO)?HUGEPAGE.*kdamond operations/);
  }
  assert.equal(ops.actuator.refusal('pageout'), null);
  assert.equal(ops.actuator.refusal('stat'), null);
});
