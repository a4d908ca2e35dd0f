// KdamondContext.probe() on FAKE trees (temp dirs shaped like DAMON's sysfs, tracefs and
// /proc): what it reports for each missing piece, and that it never writes anything.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { KdamondContext } from '../../agent/kdamond/kdamond-context.js';
import { FakeKernel, KALLSYMS_WITHOUT_VADDR } from './kdamond-fake-kernel.js';

const fakes: FakeKernel[] = [];
function fake(o: ConstructorParameters<typeof FakeKernel>[0] = {}): FakeKernel {
  const f = new FakeKernel(o);
  fakes.push(f);
  return f;
}
afterEach(() => {
  for (const f of fakes.splice(0)) f.remove();
});

function probe(k: FakeKernel) {
  const before = k.snapshot();
  const p = KdamondContext.probe(k.sysfsRoot, { tracefsRoot: k.tracefsRoot, procRoot: k.procRoot });
  assert.deepEqual(k.snapshot(), before, 'probe wrote nothing');
  return p;
}

test('fake tree: an idle interface with vaddr symbols and tracefs is usable with the tracepoint source', () => {
  const p = probe(fake());
  assert.equal(p.usable, true);
  assert.deepEqual(p.missing, []);
  assert.deepEqual(p.notes, []);
  assert.equal(p.recommendedSource, 'tracepoint');
  assert.equal(p.message, 'kdamond operations available (record source: tracepoint)');
});

test('fake tree: no DAMON sysfs directory, or no nr_kdamonds in it', () => {
  const k = fake({ damon: false });
  let p = probe(k);
  assert.equal(p.usable, false);
  assert.match(p.message, /^no .*sys\/kernel\/mm\/damon: the kernel has no DAMON \(CONFIG_DAMON\) or no DAMON sysfs interface \(CONFIG_DAMON_SYSFS\)$/);
  fs.mkdirSync(k.sysfsRoot, { recursive: true });
  p = probe(k);
  assert.match(p.message, /^no .*admin\/kdamonds\/nr_kdamonds: the kernel has no DAMON sysfs interface \(CONFIG_DAMON_SYSFS\)$/);
});

test('fake tree: another user\'s kdamonds make it busy, listing their states', () => {
  const k = fake();
  k.addForeignKdamond('on', 812);
  k.addForeignKdamond('off');
  const p = probe(k);
  assert.equal(p.usable, false);
  assert.match(p.missing[0], /is in use: nr_kdamonds is 2 \(kdamond 0: on \(pid 812\); kdamond 1: off\); adding a kdamond means rewriting nr_kdamonds/);
});

test('fake tree: vaddr is judged from an existing context\'s avail_operations before kallsyms', () => {
  const k = fake({ availOperations: 'paddr' });
  k.addForeignKdamond('off');
  const p = probe(k);
  assert.equal(p.missing.length, 2);
  assert.match(p.missing[1], /no vaddr operations \(.*avail_operations lists: paddr\); it needs CONFIG_DAMON_VADDR/);
});

test('fake tree: kallsyms with DAMON but no damon_va_* symbols means no vaddr', () => {
  const p = probe(fake({ kallsyms: KALLSYMS_WITHOUT_VADDR }));
  assert.equal(p.usable, false);
  assert.match(p.message, /no vaddr operations \(no damon_va_\* symbols in .*kallsyms, though other DAMON symbols are there\)/);
});

test('fake tree: without kallsyms vaddr cannot be verified read-only: usable, with a note', () => {
  const p = probe(fake({ kallsyms: null }));
  assert.equal(p.usable, true);
  assert.match(p.notes[0], /vaddr operations not verifiable read-only \(.*kallsyms is unreadable \(ENOENT\)\); checked in avail_operations when the kdamond is created/);
  assert.match(p.message, /^kdamond operations available \(record source: tracepoint\); vaddr operations not verifiable/);
});

test('fake tree: no tracefs: the tried_regions source is recommended, and what tracefs lacks is said', () => {
  const p = probe(fake({ tracefs: false }));
  assert.equal(p.usable, true);
  assert.equal(p.recommendedSource, 'tried_regions');
  assert.equal(p.sources.tracepoint.usable, false);
  assert.match(p.sources.tracepoint.missing[0], /instances: tracefs is not mounted at .*mount -t tracefs nodev/);
  assert.match(p.message, /record source: tried_regions\); tried_regions needs DAMOS target filters \(Linux 6\.6\+\)/);
});

test('fake tree: tracefs without the damon_aggregated event', () => {
  const k = fake();
  fs.rmSync(path.join(k.tracefsRoot, 'events/damon'), { recursive: true });
  const p = probe(k);
  assert.equal(p.recommendedSource, 'tried_regions');
  assert.match(p.sources.tracepoint.missing[0], /no .*events\/damon\/damon_aggregated: the kernel has no damon:damon_aggregated trace event/);
});

test('fake tree: an unreadable nr_kdamonds is named', () => {
  const k = fake();
  fs.writeFileSync(path.join(k.sysfsRoot, 'admin/kdamonds/nr_kdamonds'), 'many\n');
  const p = probe(k);
  assert.equal(p.usable, false);
  assert.match(p.message, /nr_kdamonds reads "many", not a number of kdamonds$/);
});
