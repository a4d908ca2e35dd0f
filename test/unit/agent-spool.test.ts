// The agent's record spool on disk: what a kill leaves is taken back whole (a torn last
// entry costs that entry only), published entries are forgotten, files stay private and
// bounded, and record sequences survive restarts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { RecordSpool, SpoolError, type SpoolEntry } from '../../agent/daemon/spool.js';
import { createLogger, silentLogger } from '../../common/log.js';
import { tempSpoolDir } from './temp-spool.js';

const data = (i: number, n = 100) => new Uint8Array(n).fill(i & 0xff);
const segments = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();

function drain(s: RecordSpool): SpoolEntry[] {
  const out: SpoolEntry[] = [];
  for (let e = s.take(); e; e = s.take()) out.push(e);
  return out;
}

test('a kill mid-write loses only the entry being written; the rest comes back intact', () => {
  const dir = tempSpoolDir();
  const s = RecordSpool.open(dir, { log: silentLogger });
  for (let i = 1; i <= 10; i++) s.append('t', `m${i}`, BigInt(i), data(i));
  // No close: a kill. Cut the last entry short, as a write interrupted halfway would.
  const seg = join(dir, segments(dir).at(-1)!);
  truncateSync(seg, statSync(seg).size - 40);
  const lines: string[] = [];
  const again = RecordSpool.open(dir, { log: createLogger('t', (l) => lines.push(l)) });
  const got = drain(again);
  assert.deepEqual(got.map((e) => e.msgId), Array.from({ length: 9 }, (_, i) => `m${i + 1}`));
  got.forEach((e, i) => assert.deepEqual(e.data, data(i + 1)));
  assert.ok(lines.some((l) => l.includes('unreadable (a write cut short); cut off')), lines.join('\n'));
  // Appends go on after the cut; a second restart sees every entry.
  again.append('t', 'm11', 11n, data(11));
  appendFileSync(join(dir, segments(dir).at(-1)!), Buffer.from([0xff, 0xff, 0, 0, 1, 2])); // garbage header
  const third = RecordSpool.open(dir, { log: silentLogger });
  assert.deepEqual(drain(third).map((e) => e.msgId), [...Array.from({ length: 9 }, (_, i) => `m${i + 1}`), 'm11']);
});

test('published entries are forgotten: not taken back, their segments removed; sequences remain', () => {
  const dir = tempSpoolDir();
  const s = RecordSpool.open(dir, { log: silentLogger, segmentBytes: 1000 });
  for (let i = 1; i <= 30; i++) s.append(`t${i % 2}`, `m${i}`, s.nextSequence(`t${i % 2}`), data(i));
  assert.ok(segments(dir).length > 3);
  const taken = drain(s);
  for (const e of taken.slice(0, 25)) s.done(e);
  s.close();
  assert.ok(segments(dir).length <= 2, segments(dir).join(' '));
  const again = RecordSpool.open(dir, { log: silentLogger });
  const rest = drain(again);
  assert.deepEqual(rest.map((e) => e.msgId), ['m26', 'm27', 'm28', 'm29', 'm30']);
  assert.equal(again.nextSequence('t0'), 16n);
  assert.equal(again.nextSequence('t1'), 16n);
  // Everything published: the sequences still go on.
  for (const e of rest) again.done(e);
  again.close();
  const third = RecordSpool.open(dir, { log: silentLogger });
  assert.equal(third.queued, 0);
  assert.equal(third.nextSequence('t0'), 17n);
});

test('files are private: directory 0700, segments and state 0600', () => {
  const dir = tempSpoolDir();
  const s = RecordSpool.open(dir, { log: silentLogger });
  s.append('t', 'm', 1n, data(1));
  s.close();
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  for (const f of readdirSync(dir)) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
});

test('bounded by bytes: the oldest queued go first, counted per target; the files stay within the bound and a segment', () => {
  const dir = tempSpoolDir();
  const max = 64 * 1024;
  const s = RecordSpool.open(dir, { log: silentLogger, maxBytes: max, segmentBytes: 8 * 1024 });
  for (let i = 1; i <= 2000; i++) s.append(`t${i % 3}`, `m${i}`, BigInt(i), data(i));
  assert.ok(s.bytes <= max);
  assert.ok(s.dropped > 1000);
  assert.ok(s.diskBytes() <= max + 8 * 1024 + 200, `${s.diskBytes()} bytes on disk`);
  const first = s.take()!;
  // Its target's earlier records were all dropped: a third of the ones before it.
  const before = BigInt(first.id - 1);
  const claimed = s.claimDroppedBefore(first);
  assert.ok(claimed >= before / 3n - 1n && claimed <= before / 3n + 1n, `${claimed} of ${before}`);
  // Claimed once: another entry of that target does not report them again.
  assert.equal(s.claimDroppedBefore({ ...first, id: first.id + 3 }), 0n);
  s.close();
  // The drop counts survive a restart (a kill before they were reported).
  const again = RecordSpool.open(dir, { log: silentLogger, maxBytes: max });
  const e = again.take()!;
  assert.equal(e.id, first.id);
  assert.equal(again.claimDroppedBefore(e), claimed);
});

test('a second agent on the same data directory is refused; a lock left by a killed one is taken over', async () => {
  const dir = tempSpoolDir();
  RecordSpool.open(dir, { log: silentLogger }).close();
  // A live process that looks like an agent holds the lock.
  const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'damon-fleet', 'agent'], { stdio: 'ignore' });
  try {
    await once(other, 'spawn');
    writeFileSync(join(dir, 'lock'), `${other.pid}\n`);
    assert.throws(() => RecordSpool.open(dir, { log: silentLogger }), (e: unknown) => e instanceof SpoolError && new RegExp(`in use by process ${other.pid}`).test((e as Error).message));
  } finally {
    other.kill('SIGKILL');
    await once(other, 'exit');
  }
  const s = RecordSpool.open(dir, { log: silentLogger });
  assert.equal(readFileSync(join(dir, 'lock'), 'utf8').trim(), String(process.pid));
  s.close();
});
