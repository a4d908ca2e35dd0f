// The page_idle operations end to end on a fake /proc tree (maps, stat, pagemap), fake
// kpageflags and a fake bitmap whose bits the test clears to simulate accesses; their
// errors; and probe() on fake paths and on this host.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { validateAttributes } from '../../agent/engine/attrs.js';
import { OperationsUnavailableError, TargetError, type OpsContext } from '../../agent/engine/operations.js';
import { newRegion, type Target } from '../../agent/engine/region.js';
import { setRegions } from '../../agent/engine/set-regions.js';
import { initRegions, threeRegionsOfMaps } from '../../agent/ops/vaddr-regions.js';
import { PageIdleOperations } from '../../agent/ops/page-idle.js';
import { buildNative, FakeHost, KPF_LRU, PAGE, seededRandom, statLine } from './page-idle-fakes.js';

const PID = 4321;
const MAPPINGS = [
  [0x10000000, 64],
  [0x20000000, 64],
  [0x30000000, 64],
] as const;

function mapsText(mappings: readonly (readonly [number, number])[]): string {
  return mappings
    .map(([start, pages]) => `${(start).toString(16)}-${(start + pages * PAGE).toString(16)} rw-p 00000000 00:00 0 \n`)
    .join('');
}

const hosts: FakeHost[] = [];
before(() => buildNative());
after(() => {
  for (const h of hosts.splice(0)) h.remove();
});

/** Page `i` of mapping `m` is PFN 64 * (m * 64 + i + 1): one bitmap word per page. */
function pfnOf(addr: number): number {
  for (let m = 0; m < MAPPINGS.length; m++) {
    const [start, pages] = MAPPINGS[m];
    if (addr >= start && addr < start + pages * PAGE) return 64 * (m * 64 + Math.floor((addr - start) / PAGE) + 1);
  }
  throw new Error(`no page at 0x${addr.toString(16)}`);
}

/** A fake host with process PID mapped as MAPPINGS, every page present unless `absent` holds its mapping. */
function fakeProcess(absent: number[] = [], pfnZero = false): FakeHost {
  const h = new FakeHost();
  hosts.push(h);
  h.addProcess(PID, mapsText(MAPPINGS));
  MAPPINGS.forEach(([start, pages], m) => {
    if (absent.includes(m)) return;
    for (let i = 0; i < pages; i++) {
      const addr = start + i * PAGE;
      h.map(PID, addr, pfnZero ? 0 : pfnOf(addr));
      h.flags(pfnOf(addr), KPF_LRU);
    }
  });
  return h;
}

function context(regions: Target['regions'] = [], minNrRegions = 10): OpsContext & { targets: Target[] } {
  return {
    attrs: validateAttributes({ minNrRegions, maxNrRegions: 100 }),
    targets: [{ id: PID, regions }],
    nowUs: () => 0,
    random: seededRandom(7),
  };
}

function ops(h: FakeHost): PageIdleOperations {
  return new PageIdleOperations(h.paths);
}

const valid = (r: { start: number; end: number; samplingAddr: number }) => r.samplingAddr >= r.start && r.samplingAddr < r.end;

test('init builds the three regions of /proc/PID/maps, split to min_nr_regions', () => {
  const h = fakeProcess();
  const ctx = context();
  const o = ops(h);
  o.init(ctx);
  try {
    const regions = ctx.targets[0].regions;
    assert.deepEqual(regions, initRegions(threeRegionsOfMaps(mapsText(MAPPINGS)), 10));
    assert.equal(regions.length, 10);
    assert.equal(regions[0].start, 0x10000000);
    assert.equal(regions[9].end, 0x30000000 + 64 * PAGE);
  } finally {
    o.cleanup();
  }
});

test('init keeps regions the user set', () => {
  const h = fakeProcess();
  const mine = [newRegion(0x10000000, 0x10010000), newRegion(0x20000000, 0x20004000)];
  const ctx = context(mine);
  const o = ops(h);
  o.init(ctx);
  o.cleanup();
  assert.deepEqual(ctx.targets[0].regions, mine);
});

test('sampled pages are armed, simulated accesses counted, next samples armed in the same call', () => {
  const h = fakeProcess();
  const ctx = context();
  const o = ops(h);
  o.init(ctx);
  try {
    const regions = () => ctx.targets[0].regions;
    o.prepareAccessChecks(ctx);
    for (const r of regions()) {
      assert.ok(valid(r), 'every region has a sample');
      assert.ok(h.isIdle(pfnOf(r.samplingAddr)), 'and its page is marked idle');
    }
    assert.equal(o.counters().armed, 10);

    const hot = new Set([0, 4, 9]);
    let max = -1;
    // Samples whose next page is the one just checked: those are resolved afresh for arming.
    let same = 0;
    let sameHot = 0;
    for (let i = 0; i < 20; i++) {
      regions().forEach((r, k) => {
        if (hot.has(k)) h.access(pfnOf(r.samplingAddr));
      });
      const before = regions().map((r) => r.samplingAddr);
      max = o.checkAccesses(ctx);
      regions().forEach((r, k) => {
        if (r.samplingAddr === before[k]) {
          same++;
          if (hot.has(k)) sameHot++;
        }
      });
      for (const r of regions()) assert.ok(h.isIdle(pfnOf(r.samplingAddr)), 'next sample armed by checkAccesses');
      o.prepareAccessChecks(ctx);
    }
    assert.equal(max, 20);
    assert.deepEqual(
      regions().map((r) => r.nrAccesses),
      regions().map((_, k) => (hot.has(k) ? 20 : 0)),
    );
    const c = o.counters();
    assert.equal(c.checked, 200);
    assert.equal(c.armed, 10 + 200, 'prepareAccessChecks armed nothing after the first interval');
    // Every other check went through the page armed for it; only the accessed ones were
    // confirmed through kpageflags, besides one read per page armed (PFNs 64 apart: no sharing).
    assert.ok(same < 20, `${same} samples repeated their page`);
    assert.equal(c.reused, 200 - same);
    assert.equal(c.reverified, 3 * 20 - sameHot);
    assert.equal(c.kpageflagsReads, 10 + 200 + c.reverified);

    // A sample the core invalidated (split child, merged or trimmed region) is re-armed, alone.
    regions()[3].samplingAddr = -1;
    regions()[5].samplingAddr = regions()[5].end;
    o.prepareAccessChecks(ctx);
    assert.equal(o.counters().armed, 212);
    assert.ok(valid(regions()[3]) && valid(regions()[5]));
    assert.ok(h.isIdle(pfnOf(regions()[3].samplingAddr)) && h.isIdle(pfnOf(regions()[5].samplingAddr)));
  } finally {
    o.cleanup();
  }
});

test('pages that are not present never count as accessed', () => {
  const h = fakeProcess([2]); // the third mapping never faulted in
  const ctx = context();
  const o = ops(h);
  o.init(ctx);
  try {
    o.prepareAccessChecks(ctx);
    // Every bit 0: every present sampled page reads as accessed.
    fs.writeFileSync(h.bitmap, Buffer.alloc(fs.statSync(h.bitmap).size));
    o.checkAccesses(ctx);
    for (const r of ctx.targets[0].regions) {
      assert.equal(r.nrAccesses, r.start >= 0x30000000 ? 0 : 1, `region 0x${r.start.toString(16)}`);
    }
    assert.ok(o.counters().notPresent > 0);
  } finally {
    o.cleanup();
  }
});

test('update applies the new three regions and re-arms samples left outside their region', () => {
  const h = fakeProcess();
  const ctx = context();
  const o = ops(h);
  o.init(ctx);
  try {
    o.prepareAccessChecks(ctx);
    // The first region of the last mapping samples its last page, which the shrink below cuts off.
    const cut = ctx.targets[0].regions.find((r) => r.start === 0x30000000)!;
    assert.ok(cut.end > 0x30000000 + 8 * PAGE);
    cut.samplingAddr = cut.end - PAGE;
    const before = ctx.targets[0].regions.map((r) => ({ ...r }));
    // The last mapping shrinks to 8 pages; the first grows by 16.
    const next = [
      [0x10000000, 80],
      [0x20000000, 64],
      [0x30000000, 8],
    ] as const;
    fs.writeFileSync(path.join(h.proc, String(PID), 'maps'), mapsText(next));
    o.update(ctx);
    const regions = ctx.targets[0].regions;
    assert.deepEqual(
      regions.map((r) => [r.start, r.end]),
      setRegions(before, threeRegionsOfMaps(mapsText(next))).map((r) => [r.start, r.end]),
    );
    assert.equal(regions[regions.length - 1].end, 0x30000000 + 8 * PAGE);
    const invalid = regions.filter((r) => !valid(r)).length;
    assert.ok(invalid > 0, 'the shrink left a sample outside its region');
    for (const r of regions) assert.ok(valid(r) || r.samplingAddr === -1);
    const armed = o.counters().armed;
    o.prepareAccessChecks(ctx);
    assert.equal(o.counters().armed - armed, invalid);
    assert.ok(regions.every(valid));

    // A process that is exiting shows empty maps: the regions stay as they are.
    fs.writeFileSync(path.join(h.proc, String(PID), 'maps'), '');
    o.update(ctx);
    assert.equal(ctx.targets[0].regions, regions);
  } finally {
    o.cleanup();
  }
});

test('targetValid: false once the process is a zombie, gone, or its pid reused', () => {
  const h = fakeProcess();
  const ctx = context();
  const o = ops(h);
  o.init(ctx);
  const t = ctx.targets[0];
  const stat = path.join(h.proc, String(PID), 'stat');
  try {
    assert.equal(o.targetValid(t), true);
    fs.writeFileSync(stat, statLine(PID, 'Z'));
    assert.equal(o.targetValid(t), false);
    fs.writeFileSync(stat, statLine(PID, 'R', 99999));
    assert.equal(o.targetValid(t), false, 'another process now has this pid');
    fs.writeFileSync(stat, statLine(PID, 'R'));
    assert.equal(o.targetValid(t), true);
    fs.rmSync(path.join(h.proc, String(PID)), { recursive: true });
    assert.equal(o.targetValid(t), false);
  } finally {
    o.cleanup();
  }
});

test('PFNs that read as zero stop the operations with the reason', () => {
  const h = fakeProcess([], true);
  const ctx = context();
  const o = ops(h);
  o.init(ctx);
  try {
    assert.throws(
      () => o.prepareAccessChecks(ctx),
      (e: unknown) =>
        e instanceof OperationsUnavailableError &&
        /PFNs in \/proc\/PID\/pagemap read as zero: this process lacks CAP_SYS_ADMIN; run the agent as root/.test(e.message),
    );
    assert.ok(ctx.targets[0].regions.every((r) => r.samplingAddr === -1), 'no sample counts as armed');
  } finally {
    o.cleanup();
  }
});

test('targets that cannot be monitored raise TargetError naming the file and errno', () => {
  const h = fakeProcess();
  const expectTargetError = (ctx: OpsContext, re: RegExp) => {
    const o = ops(h);
    try {
      assert.throws(() => o.init(ctx), (e: unknown) => e instanceof TargetError && re.test(e.message));
    } finally {
      o.cleanup();
    }
  };
  const other = (id: number) => ({ ...context(), targets: [{ id, regions: [] }] });
  expectTargetError(other(999), new RegExp(`^target 999: no process with pid 999 \\(${h.proc}/999/stat: ENOENT \\(no such file or directory\\)\\)$`));
  expectTargetError(other(-3), /^target -3: not a process id: -3$/);

  h.addProcess(55, '');
  fs.rmSync(path.join(h.proc, '55', 'maps'));
  fs.mkdirSync(path.join(h.proc, '55', 'maps'));
  expectTargetError(other(55), /^target 55: cannot read .*\/proc\/55\/maps: EISDIR \(illegal operation on a directory\)$/);

  h.addProcess(56, mapsText([[0x10000000, 4]]));
  expectTargetError(other(56), /^target 56: .*\/proc\/56\/maps: three regions: 1 mapping\(s\) with 0 gap\(s\) between them; at least 2 gaps are needed$/);

  h.addProcess(57, mapsText(MAPPINGS));
  fs.rmSync(h.pagemapPath(57));
  expectTargetError(other(57), /^target 57: cannot open .*\/proc\/57\/pagemap: ENOENT/);

  h.addProcess(58, mapsText(MAPPINGS), statLine(58, 'Z'));
  expectTargetError(other(58), /^target 58: process 58 has exited \(zombie\)$/);
});

test('a missing or broken native library is a clear OperationsUnavailableError', () => {
  const h = fakeProcess();
  const missing = path.join(h.dir, 'build', 'libdamon_access.so');
  const o = new PageIdleOperations({ ...h.paths, libraryPath: missing });
  assert.throws(
    () => o.init(context()),
    (e: unknown) =>
      e instanceof OperationsUnavailableError &&
      e.message ===
        `page_idle operations unavailable: native library not built: ${missing} does not exist; ` +
          'run `npm run build:native` (needs a C compiler: cc, gcc or clang)',
  );
  const junk = path.join(h.dir, 'junk.so');
  fs.writeFileSync(junk, 'not an ELF file');
  assert.throws(
    () => new PageIdleOperations({ ...h.paths, libraryPath: junk }).init(context()),
    (e: unknown) => e instanceof OperationsUnavailableError && e.message.includes(`cannot load native library ${junk}`),
  );
  assert.throws(() => o.prepareAccessChecks(context()), /used before init/);
});

test('a host without the bitmap or kpageflags: init says which kernel option is missing', () => {
  const h = fakeProcess();
  assert.throws(
    () => new PageIdleOperations({ ...h.paths, bitmap: path.join(h.dir, 'none') }).init(context()),
    /page_idle operations unavailable: no .*\/none: the kernel lacks idle page tracking \(CONFIG_IDLE_PAGE_TRACKING=y\)/,
  );
  assert.throws(
    () => new PageIdleOperations({ ...h.paths, kpageflags: path.join(h.dir, 'none') }).init(context()),
    /page_idle operations unavailable: no .*\/none: the kernel lacks CONFIG_PROC_PAGE_MONITOR/,
  );
});

test('probe lists everything missing', () => {
  const h = fakeProcess();
  fs.mkdirSync(path.join(h.proc, 'self'));
  const status = path.join(h.proc, 'self', 'status');
  fs.writeFileSync(status, 'Name:\tnode\nCapEff:\t0000000000000000\n');
  const none = path.join(h.dir, 'none');
  const p = PageIdleOperations.probe({ proc: h.proc, bitmap: none, kpageflags: none }, path.join(h.dir, 'no.so'));
  assert.equal(p.usable, false);
  assert.equal(p.missing.length, 4, p.message);
  assert.match(p.missing[0], /^native library not built/);
  assert.match(p.missing[1], /CONFIG_IDLE_PAGE_TRACKING/);
  assert.match(p.missing[2], /CONFIG_PROC_PAGE_MONITOR/);
  assert.match(p.missing[3], /^PFNs in \/proc\/PID\/pagemap read as zero: this process lacks CAP_SYS_ADMIN/);
  assert.equal(p.message, `page_idle operations unavailable: ${p.missing.join('; ')}`);

  // With CAP_SYS_ADMIN only the library is missing.
  fs.writeFileSync(status, 'CapEff:\t000001ffffffffff\n');
  const q = PageIdleOperations.probe(h.paths, path.join(h.dir, 'no.so'));
  assert.deepEqual(q.missing.length, 1, q.message);

  // With the library, it reads its own pagemap entry; a fake one does not describe this process.
  fs.writeFileSync(path.join(h.proc, 'self', 'pagemap'), '');
  const r = PageIdleOperations.probe(h.paths);
  assert.deepEqual(r.missing, [
    `cannot tell whether PFNs are visible: ${h.proc}/self/pagemap shows this process's own stack page as not present`,
  ]);
});

test('probe on this host: no page_idle bitmap, so not usable, and it says why', () => {
  const p = PageIdleOperations.probe();
  assert.equal(p.usable, false);
  assert.match(
    p.message,
    /no \/sys\/kernel\/mm\/page_idle\/bitmap: the kernel lacks idle page tracking \(CONFIG_IDLE_PAGE_TRACKING=y\)/,
  );
});

test('cleanup closes every file it opened', () => {
  const h = fakeProcess();
  const ctx = context();
  const fdsBefore = fs.readdirSync('/proc/self/fd').length;
  const o = ops(h);
  o.init(ctx);
  o.prepareAccessChecks(ctx);
  assert.equal(fs.readdirSync('/proc/self/fd').length, fdsBefore + 3, 'bitmap, kpageflags, one pagemap');
  o.cleanup();
  assert.equal(fs.readdirSync('/proc/self/fd').length, fdsBefore);
});
