// native/build.js on a copy of native/: builds with the machine's compiler, rebuilds only
// when a source changed, and without a compiler warns, leaves no library behind and still
// exits 0 (so `npm ci` succeeds), unless --strict.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO_ROOT } from './page-idle-fakes.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'native-build-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
fs.cpSync(path.join(REPO_ROOT, 'native/src'), path.join(dir, 'native/src'), { recursive: true });
fs.copyFileSync(path.join(REPO_ROOT, 'native/build.js'), path.join(dir, 'native/build.js'));
const lib = path.join(dir, 'native/build/libdamon_access.so');

function build(env: NodeJS.ProcessEnv = {}, ...args: string[]) {
  const { CC: _cc, ...rest } = process.env;
  return spawnSync(process.execPath, [path.join(dir, 'native/build.js'), ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...rest, ...env },
  });
}

test('builds, then rebuilds only when a source is newer than the library', () => {
  let r = build();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /built native\/build\/libdamon_access\.so with cc/);
  assert.ok(fs.statSync(lib).size > 0);
  r = build();
  assert.match(r.stdout, /is up to date/);
  const later = new Date(Date.now() + 5000);
  fs.utimesSync(path.join(dir, 'native/src/damon_access.h'), later, later);
  r = build();
  assert.match(r.stdout, /built/);
  assert.equal(fs.readdirSync(path.dirname(lib)).join(), 'libdamon_access.so', 'no temporary file left');
});

test('without a compiler: a warning saying what to install, no library, exit 0 (1 with --strict)', () => {
  const later = new Date(Date.now() + 10000);
  fs.utimesSync(path.join(dir, 'native/src/damon_access.c'), later, later);
  let r = build({ CC: 'no-such-cc' });
  assert.equal(r.status, 0);
  assert.match(r.stderr, /warning: the C compiler in \$CC \("no-such-cc"\) does not run/);
  assert.match(r.stderr, /apt-get install gcc libc6-dev/);
  assert.match(r.stderr, /page_idle operations are unavailable \(the synthetic operations still work\)/);
  assert.equal(fs.existsSync(lib), false, 'the library older than its sources is gone');
  r = build({ CC: 'no-such-cc' }, '--strict');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error: the C compiler/);
  r = build({ PATH: '/nonexistent' });
  assert.equal(r.status, 0);
  assert.match(r.stderr, /no C compiler found \(tried cc, gcc, clang\)/);
});

test('a failed compile says so, with the compiler output, and leaves no library', () => {
  fs.appendFileSync(path.join(dir, 'native/src/damon_access.c'), '\nthis is not C;\n');
  const r = build();
  assert.equal(r.status, 0);
  assert.match(r.stderr, /error:.*|expected/);
  assert.match(r.stderr, /warning: compiling native\/build\/libdamon_access\.so failed: `cc .*` exited with status 1/);
  assert.equal(fs.existsSync(lib), false);
  assert.deepEqual(fs.readdirSync(path.dirname(lib)), [], 'no temporary file left');
  assert.equal(build({}, '--bogus').status, 2);
});
