// The native sampling loop (native/src/damon_sampler.c through agent/ops/native-sampler.ts
// and PageIdleOperations.sampleAggregation) against fake pagemap, kpageflags and bitmap
// files: nr_accesses per region over a run, THP heads, new regions between runs, the
// thread gone after close, and the core's batched loop with a target that exits mid-run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import koffi from 'koffi';
import { validateAttributes } from '../../agent/engine/attrs.js';
import { DamonContext } from '../../agent/engine/context.js';
import { newRegion, type Target } from '../../agent/engine/region.js';
import type { OpsContext } from '../../agent/engine/operations.js';
import type { AccessFiles } from '../../agent/ops/native.js';
import { NativeSampler } from '../../agent/ops/native-sampler.js';
import { PageIdleOperations } from '../../agent/ops/page-idle.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { FakeHost, KPF_LRU, NativeFixture, PAGE, seededRandom, statLine } from './page-idle-fakes.js';

const fixture = new NativeFixture();
const open = (p: string, flags: string): number => fixture.open(p, flags);
const PID = 4321;

/** Four regions of 16 pages: A present, B absent, C half present, D a THP's tails. */
const A = 0x10000000;
const B = 0x20000000;
const C = 0x30000000;
const D = 0x40000000;
const PAGES = 16;
const THP_HEAD = 64 * 1024;

function host(): FakeHost {
  const h = fixture.host();
  h.addProcess(PID, '');
  for (let i = 0; i < PAGES; i++) {
    h.map(PID, A + i * PAGE, 64 * (i + 1));
    h.flags(64 * (i + 1), KPF_LRU);
    if (i < PAGES / 2) {
      h.map(PID, C + i * PAGE, 64 * (100 + i));
      h.flags(64 * (100 + i), KPF_LRU);
    }
  }
  h.thp(THP_HEAD, 512);
  for (let i = 0; i < PAGES; i++) h.map(PID, D + i * PAGE, THP_HEAD + 1 + i);
  return h;
}

/** The host's files; `bitmap` '/dev/zero' reads every bit as 0: every tracked page accessed. */
function files(h: FakeHost, bitmap = h.bitmap): AccessFiles {
  return {
    pagemap: { fd: open(h.pagemapPath(PID), 'r'), path: h.pagemapPath(PID) },
    kpageflags: { fd: open(h.kpageflags, 'r'), path: h.kpageflags },
    bitmap: { fd: open(bitmap, 'r+'), path: bitmap },
  };
}

function bounds(...regions: [number, number][]): Float64Array {
  return Float64Array.from(regions.flat());
}

const sixteen = (start: number): [number, number] => [start, start + PAGES * PAGE];

function threads(): number {
  return fs.readdirSync('/proc/self/task').length;
}

test('a run adds one check per region per interval: tracked pages accessed every time count N', async () => {
  const h = host();
  const f = files(h, '/dev/zero');
  const s = new NativeSampler(fixture.native, 7);
  try {
    const N = 10;
    const run = await s.run([{ files: f, bounds: bounds(sixteen(A), sixteen(B), sixteen(C), sixteen(D)), count: 4 }], N, 2_000);
    assert.equal(run.stopped, false);
    assert.equal(run.samples, N);
    const [a, b, c, d] = run.targets[0].counts;
    assert.equal(a, N, 'every sample of a present, tracked page reads accessed');
    assert.equal(b, 0, 'pages not present never count');
    assert.ok(c > 0 && c < N, `half the pages present: some samples count, some not (${c})`);
    assert.equal(d, N, 'THP tails are checked through their head');
    const st = run.targets[0].stats;
    assert.equal(run.targets[0].error, null);
    assert.ok(st.hugeTail > 0 && st.notPresent > 0, JSON.stringify(st));
    // Each interval arms before it checks: the window is at least the sampling interval.
    assert.ok(run.wallUs >= N * 2_000, `${run.wallUs} us for ${N} intervals of 2 ms`);
  } finally {
    s.close();
  }
});

test('samples are armed in the bitmap (idle bits set on the sampled frames, heads for THP tails)', async () => {
  const h = host();
  const f = files(h);
  const s = new NativeSampler(fixture.native, 11);
  try {
    const run = await s.run([{ files: f, bounds: bounds(sixteen(A), sixteen(D)), count: 2 }], 3, 1_000);
    assert.deepEqual(Array.from(run.targets[0].counts), [0, 0], 'nothing cleared the idle bits: no accesses');
    assert.ok(h.isIdle(THP_HEAD), 'the THP head carries the tails\' idle bit');
    const armedA = Array.from({ length: PAGES }, (_, i) => 64 * (i + 1)).filter((pfn) => h.isIdle(pfn));
    assert.ok(armedA.length >= 1 && armedA.length <= 3, `the samples of A armed their frames (${armedA.length} of 3 samples)`);
  } finally {
    s.close();
  }
});

test('the region array given to each run is honoured: counts follow the new boundaries', async () => {
  const h = host();
  const f = files(h, '/dev/zero');
  const s = new NativeSampler(fixture.native, 3);
  try {
    const first = await s.run([{ files: f, bounds: bounds(sixteen(A), sixteen(B)), count: 2 }], 5, 1_000);
    assert.deepEqual(Array.from(first.targets[0].counts), [5, 0]);
    // Now: B, then the present half of C, then A split in two; counts start from zero.
    const half = C + (PAGES / 2) * PAGE;
    const second = await s.run(
      [{ files: f, bounds: bounds(sixteen(B), [C, half], [half, C + PAGES * PAGE], [A, A + 4 * PAGE], [A + 4 * PAGE, A + PAGES * PAGE]), count: 5 }],
      6,
      1_000,
    );
    assert.deepEqual(Array.from(second.targets[0].counts), [0, 6, 0, 6, 6]);
    // A shorter array than the buffer holds: only `count` regions are sampled.
    const third = await s.run([{ files: f, bounds: bounds(sixteen(D), sixteen(B), sixteen(A)), count: 1 }], 2, 1_000);
    assert.deepEqual(Array.from(third.targets[0].counts), [2]);
  } finally {
    s.close();
  }
});

test('bad regions are refused before a run starts, naming the region', () => {
  const h = host();
  const f = files(h);
  const s = new NativeSampler(fixture.native, 1);
  try {
    assert.throws(() => s.run([{ files: f, bounds: bounds([A, A]), count: 1 }], 1, 1_000), /region 0 \[268435456, 268435456\) of .*pagemap is empty, unaligned or out of range/);
    assert.throws(() => s.run([{ files: f, bounds: bounds(sixteen(A), [B + 1, B + PAGE]), count: 2 }], 1, 1_000), /region 1 /);
    assert.throws(() => s.run([{ files: f, bounds: bounds(sixteen(A)), count: 1 }], 0, 1_000), RangeError);
  } finally {
    s.close();
  }
});

test('close() ends a run at once, joins the thread, and the run resolves as stopped', async () => {
  const h = host();
  const f = files(h);
  const before = threads();
  const live = fixture.native.samplerThreads();
  const s = new NativeSampler(fixture.native, 5);
  assert.equal(fixture.native.samplerThreads(), live + 1);
  assert.equal(threads(), before + 1);
  // 1000 intervals of 10 ms: ten seconds unless stopped.
  const t0 = performance.now();
  const running = s.run([{ files: f, bounds: bounds(sixteen(A)), count: 1 }], 1000, 10_000);
  await new Promise((r) => setTimeout(r, 50));
  s.close();
  const run = await running;
  assert.equal(run.stopped, true);
  assert.ok(performance.now() - t0 < 5_000, 'the run did not wait for its intervals');
  assert.equal(fixture.native.samplerThreads(), live);
  assert.equal(threads(), before, 'no thread left');
  assert.throws(() => s.run([{ files: f, bounds: bounds(sixteen(A)), count: 1 }], 1, 1_000), /used after close/);
  s.close();
});

test('cpuNs() is the sampler thread\'s own CPU, as /proc/self/task/TID/stat counts it, apart from the main thread', async (t) => {
  const h = host();
  const f = files(h, '/dev/zero');
  const before = new Set(fs.readdirSync('/proc/self/task'));
  const s = new NativeSampler(fixture.native, 3);
  const tid = fs.readdirSync('/proc/self/task').find((t) => !before.has(t));
  assert.ok(tid, 'the sampler\'s thread');
  try {
    const idle = s.cpuNs();
    // The main thread burns 200 ms while the sampler waits: not the sampler's.
    const until = performance.now() + 200;
    while (performance.now() < until);
    const whileIdle = s.cpuNs() - idle;
    assert.ok(whileIdle < 20e6, `${whileIdle / 1e6} ms while idle`);
    // 4000 intervals of 50 us over four regions: busy.
    for (let i = 0; i < 4; i++) await s.run([{ files: f, bounds: bounds(sixteen(A), sixteen(B), sixteen(C), sixteen(D)), count: 4 }], 4000, 50);
    const ns = s.cpuNs();
    // utime + stime (fields 14, 15) in USER_HZ (100) ticks.
    const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').slice(-400).split(') ').at(-1)!.split(' ');
    const ticks = (Number(stat[11]) + Number(stat[12])) / 100;
    t.diagnostic(`sampler thread: ${(ns / 1e6).toFixed(1)} ms by its CPU clock, ${(ticks * 1e3).toFixed(0)} ms by /proc; the main thread's 200 ms burn added ${(whileIdle / 1e6).toFixed(1)} ms`);
    assert.ok(ns > 10e6, `${ns / 1e6} ms for 16000 checks`);
    // /proc counts in 10 ms ticks (and splits by sampling): within two ticks and 10%.
    assert.ok(Math.abs(ns / 1e9 - ticks) <= 0.02 + 0.1 * ticks, `thread clock ${ns / 1e6} ms, /proc ${ticks * 1e3} ms`);
  } finally {
    s.close();
  }
  // Once closed, what it had used.
  assert.ok(s.cpuNs() > 10e6);
});

test('stop() cuts a run short but keeps its counts', async () => {
  const h = host();
  const f = files(h, '/dev/zero');
  const s = new NativeSampler(fixture.native, 5);
  try {
    const running = s.run([{ files: f, bounds: bounds(sixteen(A)), count: 1 }], 1000, 5_000);
    await new Promise((r) => setTimeout(r, 100));
    s.stop();
    const run = await running;
    assert.equal(run.stopped, true);
    assert.ok(run.samples > 0 && run.samples < 1000, `${run.samples}`);
    assert.equal(run.targets[0].counts[0], run.samples);
  } finally {
    s.close();
  }
});

// ---- through the operations and the core ----------------------------------------------

function mapsText(starts: number[]): string {
  return starts.map((s) => `${s.toString(16)}-${(s + PAGES * PAGE).toString(16)} rw-p 00000000 00:00 0 \n`).join('');
}

function opsContext(regions: Target['regions'], maxNrRegions = 100): OpsContext & { targets: Target[] } {
  return {
    attrs: validateAttributes({ samplingUs: 1_000, aggregationUs: 10_000, minNrRegions: 3, maxNrRegions }),
    targets: [{ id: PID, regions }],
    nowUs: () => 0,
    random: seededRandom(9),
  };
}

test('sampleAggregation adds the run to nrAccesses and leaves no sample armed; cleanup ends the thread', async () => {
  const h = host();
  const live = fixture.native.samplerThreads();
  const o = new PageIdleOperations({ ...h.paths, bitmap: '/dev/zero' });
  const ctx = opsContext([newRegion(...sixteen(A)), newRegion(...sixteen(B)), newRegion(...sixteen(D))]);
  o.init(ctx);
  try {
    ctx.targets[0].regions[0].nrAccesses = 2;
    const r = await o.sampleAggregation(ctx, 8, ctx.attrs.samplingUs);
    assert.deepEqual(r, { samples: 8, wallUs: r.wallUs, busyUs: r.busyUs, late: r.late, stopped: false });
    assert.ok(r.busyUs! > 0 && r.busyUs! < r.wallUs, `checks took ${r.busyUs} of ${r.wallUs} us: sleeps are not counted`);
    assert.deepEqual(ctx.targets[0].regions.map((x) => x.nrAccesses), [10, 0, 8]);
    assert.ok(ctx.targets[0].regions.every((x) => x.samplingAddr === -1));
    const c = o.counters();
    assert.ok(c.checked >= 16 && c.hugeTail > 0, JSON.stringify(c));
    assert.equal(fixture.native.samplerThreads(), live + 1);
    assert.ok(o.samplerCpuNs() > 0, 'the sampler thread\'s CPU');
  } finally {
    o.cleanup();
  }
  assert.equal(fixture.native.samplerThreads(), live, 'cleanup joined the sampler thread');
  // What the closed sampler used stays counted (the session's engine CPU).
  const cpu = o.samplerCpuNs();
  assert.ok(cpu > 0);
  assert.equal(o.samplerCpuNs(), cpu);
});

const libc = koffi.load('libc.so.6');
const dup2 = libc.func('int dup2(int, int)');

/** The descriptor this process holds open on `file`. */
function fdOf(file: string): number {
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === fs.realpathSync(file)) return Number(fd);
    } catch {
      // closed meanwhile
    }
  }
  throw new Error(`no descriptor open on ${file}`);
}

test('the core batched loop: per-region counts each aggregation; a target that exits mid-run is dropped, the others go on', async () => {
  const h = host();
  const OTHER = 4322;
  h.addProcess(PID, mapsText([A, C, D]));
  h.addProcess(OTHER, mapsText([A, C, D]));
  for (let i = 0; i < PAGES; i++) h.map(OTHER, A + i * PAGE, 64 * (i + 1));
  const live = fixture.native.samplerThreads();
  const ops = new PageIdleOperations({ ...h.paths, bitmap: '/dev/zero' });
  const ctx = new DamonContext({
    attrs: validateAttributes({ samplingUs: 2_000, aggregationUs: 20_000, updateUs: 10_000_000, minNrRegions: 3, maxNrRegions: 3 }),
    targetIds: [PID, OTHER],
    ops,
    random: seededRandom(4),
    adjust: 'kernel',
  });
  assert.equal(ctx.batched, true);
  const records: AggregationRecord[] = [];
  const exited: number[] = [];
  const stopped = new Promise<string>((resolve) => ctx.on('stopped', (reason, err) => resolve(`${reason} ${err?.message ?? ''}`)));
  ctx.on('aggregate', (r) => records.push(r));
  ctx.on('targetExited', (id) => exited.push(id));
  ctx.start();
  try {
    const until = async (cond: () => boolean, what: string) => {
      const t0 = Date.now();
      while (!cond()) {
        if (Date.now() - t0 > 20_000) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await until(() => records.filter((r) => r.targetId === PID).length >= 2, 'two aggregations');
    for (const r of records) {
      assert.equal(r.maxNrAccesses, 10);
      // min = max = 3 regions: the three mappings, none merged or split.
      assert.deepEqual(r.regions.map((x) => [x.start, x.end]), [sixteen(A), sixteen(C), sixteen(D)]);
      const [a, , d] = r.regions.map((x) => x.nrAccesses);
      assert.equal(a, 10, 'A is present for both targets: accessed at every sample');
      assert.equal(d, r.targetId === PID ? 10 : 0, 'D is a THP for PID, absent for OTHER');
    }
    // PID exits: its pagemap now fails to read (as a vanished mm does) and its stat says zombie.
    fs.writeFileSync(path.join(h.proc, String(PID), 'stat'), statLine(PID, 'Z'));
    const dir = fs.openSync(h.dir, 'r');
    const pagemapFd = fdOf(h.pagemapPath(PID));
    try {
      assert.equal(dup2(dir, pagemapFd), pagemapFd);
    } finally {
      fs.closeSync(dir);
    }
    const seen = records.length;
    await until(() => exited.length === 1, 'targetExited');
    assert.deepEqual(exited, [PID]);
    await until(() => records.slice(seen).filter((r) => r.targetId === OTHER).length >= 2, 'OTHER to go on');
    assert.equal(ctx.running, true);
    const d = ctx.drift();
    assert.ok(d.sampling.meanUs >= 2_000, `real sampling interval ${d.sampling.meanUs} us for 2000 configured`);
    assert.ok(d.aggregation.count >= 2);
  } finally {
    await ctx.stop();
  }
  assert.match(await stopped, /^off/);
  assert.equal(fixture.native.samplerThreads(), live, 'stop joined the sampler thread');
});

test('the per-sample loop stays selectable: page_idle then runs one step per sampling interval', () => {
  const h = host();
  h.addProcess(PID, mapsText([A, C, D]));
  const ctx = new DamonContext({ attrs: validateAttributes({}), targetIds: [PID], ops: new PageIdleOperations(h.paths), loop: 'per-sample' });
  assert.equal(ctx.batched, false);
  assert.throws(() => new DamonContext({ attrs: validateAttributes({}), targetIds: [PID], ops: new PageIdleOperations(h.paths), loop: 'x' as never }), /loop: must be 'batched' or 'per-sample', got x/);
});
