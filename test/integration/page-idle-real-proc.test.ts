// The page_idle operations on this host's real /proc/PID/pagemap and /proc/kpageflags,
// monitoring a real process that holds (transparent huge) pages; only the idle bitmap is a
// fake file, since this host has none. Proves the PFN and head-page resolution against a
// real kernel: every bit armed is a page on the LRU and never a THP tail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { once } from 'node:events';
import { spawn, spawnSync } from 'node:child_process';
import { validateAttributes } from '../../agent/engine/attrs.js';
import { OperationsUnavailableError, type OpsContext } from '../../agent/engine/operations.js';
import { newRegion, type Target } from '../../agent/engine/region.js';
import { PageIdleOperations } from '../../agent/ops/page-idle.js';
import { buildNative, KPF_LRU, KPF_TAIL, REPO_ROOT, seededRandom } from '../unit/page-idle-fakes.js';

const HUGE = 2 * 1024 * 1024;

function hasCapSysAdmin(): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m !== null && ((BigInt(`0x${m[1]}`) >> 21n) & 1n) === 1n;
}

function kpageflags(pfn: number): bigint {
  const fd = fs.openSync('/proc/kpageflags', 'r');
  try {
    const b = Buffer.alloc(8);
    fs.readSync(fd, b, 0, 8, pfn * 8);
    return b.readBigUInt64LE();
  } finally {
    fs.closeSync(fd);
  }
}

test('a real process: armed pages are LRU pages and THP heads, accesses come from the bitmap', async () => {
  buildNative();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'page-idle-real-'));
  const exe = path.join(dir, 'thp-toucher');
  const cc = spawnSync('cc', ['-O2', '-o', exe, path.join(REPO_ROOT, 'test/integration/fixtures/thp-toucher.c')], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  const child = spawn(exe, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const bitmap = path.join(dir, 'bitmap');
  fs.writeFileSync(bitmap, '');
  const o = new PageIdleOperations({ bitmap });
  try {
    const [line] = (await once(readline.createInterface({ input: child.stdout! }), 'line')) as [string];
    const m = /^ready ([0-9a-f]+) ([0-9a-f]+)$/.exec(line);
    assert.ok(m, `workload said: ${line}`);
    const start = parseInt(m[1], 16);
    const end = parseInt(m[2], 16);
    // One region per 2 MiB: user-set regions, which init keeps.
    const regions = [];
    for (let a = start; a < end; a += HUGE) regions.push(newRegion(a, a + HUGE));
    const target: Target = { id: child.pid!, regions };
    const ctx: OpsContext = {
      attrs: validateAttributes({}),
      targets: [target],
      nowUs: () => 0,
      random: seededRandom(3),
    };

    if (!hasCapSysAdmin()) {
      // Without root, kpageflags cannot be opened or PFNs read as zero: either way, said clearly.
      assert.throws(
        () => {
          o.init(ctx);
          o.prepareAccessChecks(ctx);
        },
        (e: unknown) => e instanceof OperationsUnavailableError && /kpageflags|PFNs/.test(e.message),
      );
      return;
    }

    o.init(ctx);
    assert.equal(target.regions.length, 8);
    o.prepareAccessChecks(ctx);
    const c = o.counters();
    assert.equal(c.pfnZero, 0);
    assert.equal(c.notPresent, 0, 'every page was touched');
    assert.equal(c.armed + c.untracked, 8, JSON.stringify(c));
    assert.ok(c.armed >= 1);
    const rollup = fs.readFileSync(`/proc/${child.pid}/smaps_rollup`, 'utf8');
    const anonHugeKb = Number(/^AnonHugePages:\s+(\d+) kB$/m.exec(rollup)?.[1] ?? 0);
    if (anonHugeKb > 0) assert.ok(c.hugeTail > 0, `THPs present (${anonHugeKb} kB) but no sample resolved through a head`);

    // Every armed bit is a real page frame on the LRU, never a tail.
    const buf = fs.readFileSync(bitmap);
    let bits = 0;
    for (let w = 0; w + 8 <= buf.length; w += 8) {
      const v = buf.readBigUInt64LE(w);
      for (let b = 0; b < 64; b++) {
        if (((v >> BigInt(b)) & 1n) === 0n) continue;
        const flags = kpageflags((w / 8) * 64 + b);
        assert.equal(flags & KPF_TAIL, 0n, 'armed a THP tail');
        assert.equal(flags & KPF_LRU, KPF_LRU, 'armed a page off the LRU');
        bits++;
      }
    }
    assert.equal(bits, c.armed);

    // Nothing cleared the (fake) idle bits: no access. Then all cleared: every tracked sample accessed.
    assert.equal(o.checkAccesses(ctx), 0);
    const afterIdle = o.counters();
    assert.ok(afterIdle.reused >= 1, 'pages still on their armed frame were checked through it');
    assert.equal(afterIdle.reverified, 0, 'idle bits need no confirming');
    fs.writeFileSync(bitmap, Buffer.alloc(fs.statSync(bitmap).size));
    assert.equal(o.checkAccesses(ctx), 1);
    assert.ok(target.regions.filter((r) => r.nrAccesses === 1).length >= 1);
    // The reused pages that read as accessed were confirmed through the real kpageflags.
    const afterBusy = o.counters();
    assert.ok(afterBusy.reverified >= 1 && afterBusy.reverified <= afterBusy.reused - afterIdle.reused);

    assert.equal(o.targetValid(target), true);
    child.stdin!.end();
    await exited;
    assert.equal(o.targetValid(target), false, 'the process exited');
  } finally {
    o.cleanup();
    child.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
