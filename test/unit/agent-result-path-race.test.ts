// The attacks that raced the agent's result-path checks, run against the confined
// writers: a helper (fixtures/rename-exchange.c) swaps a directory of the data directory
// with a link to a directory outside, thousands of times a second, while the writers
// open, write and rewrite beneath it. Nothing outside may be created or changed; the
// opens that meet the link are refused.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import {
  mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ResultPathError, openConfinedLocation } from '../../agent/daemon/result-path.js';
import { loadBeneath } from '../../agent/daemon/beneath.js';
import { openResultWriter } from '../../agent/records/result-writer.js';
import type { ResultWriter } from '../../agent/records/result-format.js';
import { REPO_ROOT, buildNative } from './page-idle-fakes.js';
import { INTERVALS, snapshot } from './result-file-fixtures.js';

/** Each race stops at whichever comes first: its count of opens, or this many ms. */
const RACE_MS = 3000;

const work = realpathSync(mkdtempSync(join(tmpdir(), 'damon-race-')));
let helper: string | null = null;
let noHelper = '';

before(() => {
  buildNative();
  const out = join(work, 'rename-exchange');
  const cc = spawnSync('cc', ['-O2', '-o', out, join(REPO_ROOT, 'test/unit/fixtures/rename-exchange.c')], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) noHelper = `cannot build the rename-exchange helper: ${cc.error?.message ?? cc.stderr}`;
  else helper = out;
});
after(() => rmSync(work, { recursive: true, force: true }));

/** Every file below `dir`, with its contents: what "nothing changed outside" compares. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath ?? e.path, e.name);
    out[p.slice(dir.length + 1)] = e.isFile() ? readFileSync(p, 'latin1') : `(${e.isDirectory() ? 'dir' : 'other'})`;
  }
  return out;
}

interface Arena {
  data: string;
  outside: string;
}

/**
 * Runs `attack` while data/runs (a directory) and data/swap (a link to `outside`)
 * exchange places (as they were again when it returns), and counts the swaps. Outside holds files named like the
 * results, so a write that escaped would show as a change, not only as a new file.
 */
async function race(name: string, attack: (a: Arena) => Promise<void>): Promise<Arena & { swaps: number }> {
  const base = join(work, name);
  const a = { data: join(base, 'data'), outside: join(base, 'outside') };
  mkdirSync(join(a.data, 'runs'), { recursive: true });
  mkdirSync(a.outside);
  for (const f of ['r.json', 'r0.data', 'victim']) writeFileSync(join(a.outside, f), `outside ${f}`);
  symlinkSync(a.outside, join(a.data, 'swap'));
  const before = contents(a.outside);

  const child = spawn(helper!, [join(a.data, 'runs'), join(a.data, 'swap'), String(Math.ceil(RACE_MS / 1000) + 10)]);
  const lines = createInterface({ input: child.stdout });
  const [first] = (await once(lines, 'line')) as [string];
  assert.equal(first, 'ready');
  let attackError: unknown = null;
  try {
    await attack(a);
  } catch (e) {
    attackError = e;
  }
  child.kill('SIGTERM');
  const [count] = (await once(lines, 'line')) as [string];
  await once(child, 'close');
  if (attackError) throw attackError;

  assert.deepEqual(contents(a.outside), before, 'nothing outside the data directory was created or changed');
  assert.deepEqual(readdirSync(base).sort(), ['data', 'outside']);
  return { ...a, swaps: Number(count) };
}

/** A refusal the swap can cause: the open met the link (or, mid-walk, a non-directory). */
function assertRaceRefusal(e: unknown): void {
  assert.ok(e instanceof ResultPathError, `only refusals, got ${String(e)}`);
  assert.match(e.message, /"runs" is a symbolic link|"runs" is not a directory/);
}

test('attack 2: the JSON writer rewriting every snapshot while runs/ and a link to outside swap places', async (t) => {
  if (!helper) return t.skip(noHelper);
  let opened = 0;
  let refusals = 0;
  let rewrites = 0;
  let now = 0;
  const clock = () => (now += 1e6); // every snapshot is due for a rewrite
  const { data, swaps } = await race('json', async ({ data }) => {
    const end = Date.now() + RACE_MS;
    let k = 0;
    // Until a few hundred rewrites went through (opens the swap refuses do not count).
    for (let i = 0; rewrites < 300 && i < 2000 && Date.now() < end; i++) {
      let w: ResultWriter;
      try {
        w = await openResultWriter(openConfinedLocation(data, 'runs/r.json'), {
          format: 'json', intervals: INTERVALS, rewriteIntervalMs: 0, clock,
        });
        opened++;
      } catch (e) {
        assertRaceRefusal(e);
        refusals++;
        continue;
      }
      for (let j = 0; j < 10; j++, rewrites++) await w.writeSnapshot(snapshot(k++));
      await w.close();
    }
  });
  assert.deepEqual(readdirSync(join(data, 'runs')), ['r.json'], 'every rewrite landed beside the file; no temporary file left');
  t.diagnostic(`${opened} opens, ${refusals} refused, ${rewrites} rewrites, ${swaps} swaps`);
  assert.ok(rewrites >= 100, `enough opens got through to rewrite (${rewrites} rewrites)`);
  assert.ok(swaps > 1000, `the swapper ran (${swaps} swaps)`);
});

for (const openat2 of [true, false]) {
  const resolver = openat2 ? 'openat2' : 'the openat walk (kernels without openat2)';
  test(`attack 3: 2,000 binary opens, each creating a file, while runs/ and a link swap places (${resolver})`, async (t) => {
    if (!helper) return t.skip(noHelper);
    const beneath = loadBeneath();
    beneath.useOpenat2(openat2);
    let opened = 0;
    let refusals = 0;
    let swaps: number;
    try {
      ({ swaps } = await race(openat2 ? 'binary' : 'binary-walk', async ({ data }) => {
        const end = Date.now() + RACE_MS;
        for (let i = 0; (i < 2000 || opened < 50) && Date.now() < end; i++) {
          let w: ResultWriter;
          try {
            w = await openResultWriter(openConfinedLocation(data, `runs/r${i}.data`), { intervals: INTERVALS });
            opened++;
          } catch (e) {
            assertRaceRefusal(e);
            refusals++;
            continue;
          }
          await w.writeSnapshot(snapshot(0));
          await w.close();
        }
      }));
    } finally {
      beneath.useOpenat2(true);
    }
    t.diagnostic(`${opened} opens, ${refusals} refused, ${swaps} swaps`);
    assert.ok(opened >= 10, `enough opens got through to write (${opened})`);
    assert.ok(swaps > 1000, `the swapper ran (${swaps} swaps)`);
  });
}
