// The agent (root) writes result files only inside its data directory, only through
// descriptors opened beneath it, and only to files that are its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chownSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync,
  symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ResultPathError, checkResultPath, openConfinedLocation,
} from '../../agent/daemon/result-path.js';
import { MAX_RESULT_PATH_DEPTH } from '../../common/session-schema.js';
import { loadBeneath } from '../../agent/daemon/beneath.js';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { readResultFile } from '../../agent/records/result-reader.js';
import type { ResultFormat } from '../../agent/records/result-format.js';
import { buildNative } from './page-idle-fakes.js';
import { INTERVALS, snapshot } from './result-file-fixtures.js';

buildNative();

function setup(t: { after: (fn: () => void) => void }) {
  const base = realpathSync(mkdtempSync(join(tmpdir(), 'damon-rp-')));
  const data = join(base, 'data');
  const outside = join(base, 'outside');
  mkdirSync(data);
  mkdirSync(outside);
  t.after(() => rmSync(base, { recursive: true, force: true }));
  return { base, data, outside };
}

/** Opens `resultFile` confined to `data`, writes `n` snapshots from `from` on, closes. */
async function record(data: string, resultFile: string, format: ResultFormat = 'binary', n = 1, from = 0): Promise<string> {
  const w = await openResultWriter(openConfinedLocation(data, resultFile), { intervals: INTERVALS, format });
  for (let k = from; k < from + n; k++) await w.writeSnapshot(snapshot(k));
  await w.close();
  return w.path;
}

async function refused(p: Promise<unknown> | (() => unknown), re: RegExp): Promise<void> {
  const isRefusal = (e: unknown) => {
    assert.ok(e instanceof ResultPathError, `a ResultPathError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  };
  if (typeof p === 'function') assert.throws(p, isRefusal);
  else await assert.rejects(p, isRefusal);
}

const FORMATS: ResultFormat[] = ['binary', 'json'];

/** Runs `fn` with openat2 and again with the per-component fallback of older kernels. */
async function bothResolvers(fn: (mode: string) => Promise<void>): Promise<void> {
  const beneath = loadBeneath();
  for (const openat2 of [true, false]) {
    beneath.useOpenat2(openat2);
    try {
      await fn(openat2 ? 'openat2' : 'openat walk');
    } finally {
      beneath.useOpenat2(true);
    }
  }
}

test('relative paths land inside the data directory, missing directories created 0750', async (t) => {
  const { data } = setup(t);
  await bothResolvers(async (mode) => {
    const sub = mode === 'openat2' ? 'a' : 'b';
    assert.equal(await record(data, `runs/${sub}/r.data`), join(data, `runs/${sub}/r.data`));
    assert.equal((await readResultFile(join(data, `runs/${sub}/r.data`))).snapshots.length, 1);
    assert.equal(statSync(join(data, `runs/${sub}`)).mode & 0o7777, 0o750 & ~process.umask());
    // '..' that stays inside is harmless.
    assert.equal(await record(data, `runs/../top-${sub}.json`, 'json'), join(data, `top-${sub}.json`));
  });
});

test("'..' escapes, absolute paths, NUL, empty and directory paths are refused, naming the path", async (t) => {
  const { base, data } = setup(t);
  const no = (p: string, re: RegExp) => refused(() => openConfinedLocation(data, p), re);
  await no('../x', /^result_file "\.\.\/x": escapes the agent's data directory/);
  await no('a/../../x', /escapes/);
  await no('..', /escapes/);
  await no('/etc/x', /^result_file "\/etc\/x": absolute paths are refused/);
  await no('dir/', /names a directory/);
  await no('.', /names a directory/);
  await no('a\0b', /^result_file "a\\x00b": contains a NUL byte/);
  await no('', /empty path/);
  mkdirSync(join(data, 'sub'));
  await refused(record(data, 'sub'), /^result_file "sub": exists and is not a regular file/);
  assert.ok(!existsSync(join(base, 'x')));
});

test('depth and length are bounded before anything is created; messages quote an excerpt', async (t) => {
  const { data } = setup(t);
  const deepest = Array.from({ length: MAX_RESULT_PATH_DEPTH - 1 }, (_, i) => `d${i}`).join('/') + '/r.data';
  await record(data, deepest);
  assert.ok(existsSync(join(data, deepest)));
  rmSync(join(data, 'd0'), { recursive: true });

  // The attack: a 1,500-level path made 1,500 directories.
  const attack = Array.from({ length: 1500 }, () => 'd').join('/') + '/r.data';
  await refused(() => openConfinedLocation(data, attack), /is 3006 bytes long; result paths have at most 1024/);
  const tooDeep = Array.from({ length: MAX_RESULT_PATH_DEPTH }, () => 'd').join('/') + '/r.data';
  await refused(() => openConfinedLocation(data, tooDeep), /has 17 components; result paths have at most 16 \(MAX_RESULT_PATH_DEPTH\)/);
  await refused(() => openConfinedLocation(data, `${'n'.repeat(256)}/r.data`), /component "n{64}…" is 256 bytes long; a component has at most 255/);
  await refused(() => openConfinedLocation(data, 'x/'.repeat(600) + 'r'), /is 1201 bytes long/);
  assert.deepEqual(readdirSync(data), [], 'nothing was created');

  // A 3 MB path: the message quotes at most 64 characters of it.
  const huge = 'a/'.repeat(1_500_000) + 'r.data';
  assert.throws(() => checkResultPath(huge), (e: unknown) => {
    assert.ok(e instanceof ResultPathError);
    assert.ok(e.message.length < 200, `message of ${e.message.length} characters`);
    assert.match(e.message, /^result_file "(a\/){32}…": is 3000006 bytes long/);
    return true;
  });
});

test('a symbolic link anywhere on the path is refused, naming the component, inside links too', async (t) => {
  const { data, outside } = setup(t);
  symlinkSync(outside, join(data, 'out'));
  mkdirSync(join(data, 'real', 'deep'), { recursive: true });
  symlinkSync(join(data, 'real'), join(data, 'alias'));
  symlinkSync('/etc', join(data, 'real', 'deep', 'etc'));
  symlinkSync('deep', join(data, 'real', 'rel'));
  await bothResolvers(async (mode) => {
    await refused(() => openConfinedLocation(data, 'out/x.data'), /^result_file "out\/x\.data": "out" is a symbolic link; result paths never pass through links/);
    await refused(() => openConfinedLocation(data, 'alias/x.data'), /"alias" is a symbolic link/);
    await refused(() => openConfinedLocation(data, 'real/deep/etc/passwd'), /"real\/deep\/etc" is a symbolic link/);
    await refused(() => openConfinedLocation(data, 'real/rel/new/x.data'), /"real\/rel" is a symbolic link/);
    writeFileSync(join(data, 'plain'), '');
    await refused(() => openConfinedLocation(data, 'plain/x.data'), /"plain" is not a directory/);
    assert.deepEqual(readdirSync(outside), [], mode);
    assert.ok(!existsSync(join(data, 'real', 'deep', 'new')), mode);
  });
});

test('the file itself is never a link: refused for every format, the target untouched', async (t) => {
  const { data, outside } = setup(t);
  writeFileSync(join(outside, 'victim'), 'keep');
  symlinkSync(join(outside, 'victim'), join(data, 'r.data'));
  symlinkSync(join(outside, 'victim'), join(data, 'r.json'));
  symlinkSync(join(outside, 'missing'), join(data, 'dangling.data'));
  await bothResolvers(async () => {
    await refused(record(data, 'r.data'), /^result_file "r\.data": is a symbolic link; result files are never written through links/);
    await refused(record(data, 'r.json', 'json'), /is a symbolic link/);
    await refused(record(data, 'dangling.data'), /is a symbolic link/);
  });
  assert.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'keep');
  assert.deepEqual(readdirSync(outside), ['victim']);
});

test('attack 1: a hard link to a file outside is refused before a byte is written', async (t) => {
  const { data, outside } = setup(t);
  writeFileSync(join(outside, 'victim'), 'keep');
  linkSync(join(outside, 'victim'), join(data, 'r.data'));
  linkSync(join(outside, 'victim'), join(data, 'r.json'));
  for (const format of FORMATS) {
    await refused(record(data, `r.${format === 'json' ? 'json' : 'data'}`, format), /has 3 hard links; a result file must have one/);
  }
  assert.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'keep');
  assert.equal(statSync(join(outside, 'victim')).nlink, 3, 'the JSON writer did not replace its link either');
});

test("attack 5: another user's file in the data directory is refused and keeps its bytes", async (t) => {
  if (process.geteuid?.() !== 0) {
    t.skip('needs root to give a file to another user (uid 65534)');
    return;
  }
  const { data } = setup(t);
  for (const name of ['theirs.data', 'theirs.json']) {
    writeFileSync(join(data, name), 'their bytes');
    chownSync(join(data, name), 65534, 65534);
  }
  await refused(record(data, 'theirs.data'), /^result_file "theirs\.data": is owned by uid 65534, not by the agent's user \(uid 0\)/);
  await refused(record(data, 'theirs.json', 'json'), /is owned by uid 65534/);
  for (const name of ['theirs.data', 'theirs.json']) {
    assert.equal(readFileSync(join(data, name), 'utf8'), 'their bytes');
    assert.equal(statSync(join(data, name)).uid, 65534);
  }
});

test('a FIFO planted as the result file is refused without blocking the agent', async (t) => {
  const { data } = setup(t);
  const r = spawnSync('mkfifo', [join(data, 'r.data')]);
  if (r.error || r.status !== 0) {
    t.skip('mkfifo is not available');
    return;
  }
  await refused(record(data, 'r.data'), /exists and is not a regular file/);
});

test("the agent's own result file is continued (binary appended, JSON rewritten)", async (t) => {
  const { data } = setup(t);
  for (const [name, format] of [['runs/r.data', 'binary'], ['runs/r.json', 'json']] as const) {
    await record(data, name, format, 2, 0);
    await record(data, name, format, 1, 2);
    assert.equal((await readResultFile(join(data, name))).snapshots.length, 3, name);
  }
  assert.deepEqual(readdirSync(join(data, 'runs')).sort(), ['r.data', 'r.json'], 'no temporary file left');
});

test('without the native library the agent refuses result files, saying so', async (t) => {
  const { data } = setup(t);
  await refused(
    () => openConfinedLocation(data, 'r.data', { libraryPath: join(data, 'no-such-lib.so') }),
    /^result_file "r\.data": the agent cannot write result files: native library not built: .*no-such-lib\.so does not exist; run `npm run build:native`/,
  );
  assert.deepEqual(readdirSync(data), []);
});
