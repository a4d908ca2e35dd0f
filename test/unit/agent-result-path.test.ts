// The agent (root) writes result files only inside its data directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, existsSync, readFileSync, writeSync, closeSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ResultPathError, confineResultPath, openConfinedResultFile } from '../../agent/daemon/result-path.js';

function setup() {
  const base = realpathSync(mkdtempSync(join(tmpdir(), 'damon-rp-')));
  const data = join(base, 'data');
  const outside = join(base, 'outside');
  mkdirSync(data);
  mkdirSync(outside);
  return { base, data, outside, done: () => rmSync(base, { recursive: true, force: true }) };
}

function refused(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (err: unknown) => err instanceof ResultPathError && re.test(err.message));
}

test('relative paths land inside the data directory, missing directories created', () => {
  const t = setup();
  try {
    assert.equal(confineResultPath(t.data, 'damon.data'), join(t.data, 'damon.data'));
    assert.equal(confineResultPath(t.data, 'runs/a/b.json'), join(t.data, 'runs/a/b.json'));
    assert.ok(existsSync(join(t.data, 'runs/a')));
    // '..' that stays inside is harmless.
    assert.equal(confineResultPath(t.data, 'runs/../top.data'), join(t.data, 'top.data'));
  } finally {
    t.done();
  }
});

test("'..' escapes and absolute paths are refused, naming the path", () => {
  const t = setup();
  try {
    refused(() => confineResultPath(t.data, '../x'), /result_file "\.\.\/x": escapes the agent's data directory/);
    refused(() => confineResultPath(t.data, 'a/../../x'), /escapes/);
    refused(() => confineResultPath(t.data, '..'), /escapes/);
    refused(() => confineResultPath(t.data, '/etc/x'), /result_file "\/etc\/x": absolute paths are refused/);
    refused(() => confineResultPath(t.data, 'dir/'), /names a directory/);
    refused(() => confineResultPath(t.data, 'a\0b'), /NUL/);
    assert.ok(!existsSync(join(t.base, 'x')));
  } finally {
    t.done();
  }
});

test('a symbolic link on the path that leads outside is refused; one that stays inside is followed', () => {
  const t = setup();
  try {
    symlinkSync(t.outside, join(t.data, 'out'));
    refused(() => confineResultPath(t.data, 'out/x.data'), /"out" is a symbolic link to .*outside the agent's data directory/);
    mkdirSync(join(t.data, 'real'));
    symlinkSync(join(t.data, 'real'), join(t.data, 'alias'));
    assert.equal(confineResultPath(t.data, 'alias/x.data'), join(t.data, 'real', 'x.data'));
    // Nested: a link inside a created directory, pointing out.
    mkdirSync(join(t.data, 'real', 'deep'));
    symlinkSync('/etc', join(t.data, 'real', 'deep', 'etc'));
    refused(() => confineResultPath(t.data, 'alias/deep/etc/passwd'), /"alias\/deep\/etc" is a symbolic link to \/etc/);
  } finally {
    t.done();
  }
});

test('the file itself is never a link: refused before and at open (O_NOFOLLOW)', () => {
  const t = setup();
  try {
    writeFileSync(join(t.outside, 'victim'), 'keep');
    symlinkSync(join(t.outside, 'victim'), join(t.data, 'r.data'));
    refused(() => confineResultPath(t.data, 'r.data'), /is a symbolic link/);
    refused(() => openConfinedResultFile(t.data, 'r.data', false), /is a symbolic link/);
    assert.equal(readFileSync(join(t.outside, 'victim'), 'utf8'), 'keep');
  } finally {
    t.done();
  }
});

test('openConfinedResultFile truncates or appends', () => {
  const t = setup();
  try {
    const a = openConfinedResultFile(t.data, 'r.data', false);
    writeSync(a.fd, 'one');
    closeSync(a.fd);
    const b = openConfinedResultFile(t.data, 'r.data', true);
    writeSync(b.fd, 'two');
    closeSync(b.fd);
    assert.equal(readFileSync(join(t.data, 'r.data'), 'utf8'), 'onetwo');
    const c = openConfinedResultFile(t.data, 'r.data', false);
    closeSync(c.fd);
    assert.equal(readFileSync(join(t.data, 'r.data'), 'utf8'), '');
  } finally {
    t.done();
  }
});
