// damo both ways: files the recorder writes, also when it is killed, read by damo's own
// releases (v2.0.1 for the binary format, v3.3.0 for JSON), and what `convert` writes.
// The damo checks skip, saying why, where damo is not checked out (test/support/damo.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readResultFile } from '../../agent/records/result-reader.js';
import { decodeBinary, bufferSource, isMarkerEntry } from '../../agent/records/binary-layout.js';
import { damoOrSkip, type Damo } from '../support/damo.js';

const BIN = fileURLToPath(new URL('../../../bin/damon-fleet.js', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'damo-compat-'));

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function until<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Target 1 runs on; target 2 exits after 1.5 s, so with 1 s aggregations it is in one snapshot. */
const WORKLOAD = join(dir, 'two.json');
writeFileSync(WORKLOAD, JSON.stringify({
  name: 'two', description: 'one target that stays, one that exits after 1.5 s',
  targets: [1, 2].map((id) => ({
    id,
    mappings: [{ start: '0x10000000', size: '16MiB' }, { start: '0x40000000', size: '64MiB' }, { start: '0x7f0000000000', size: '1MiB' }],
    baseProbability: 0.01,
    ...(id === 2 && { exitAtUs: '1500ms' }),
    phases: [{ ranges: [{ start: '0x40000000', size: '8MiB', probability: 0.9 }] }],
  })),
}));

/** Starts the recorder, waits until `ready` holds for its file, then kills it with SIGKILL. */
async function recordAndKill(out: string, aggr: string, ready: (snapshots: number) => boolean): Promise<void> {
  const child = spawn(process.execPath, [BIN, 'record', '--ops', 'synthetic', '--workload', WORKLOAD,
    '--sample', '50ms', '--aggr', aggr, '--update', '100ms', '--out', out, '--quiet'], { stdio: 'ignore' });
  const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, sig) => r(sig)));
  await until('the recorder\'s snapshots', async () => {
    const n = (await readResultFile(out, { partial: true })).snapshots.length;
    return ready(n) ? n : null;
  });
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
}

/** Per target, its entries in file order; and every snapshot's end. */
function layout(path: string) {
  const d = decodeBinary(bufferSource(readFileSync(path)));
  assert.equal(d.problem, null);
  const byTarget = new Map<number, { endNs: bigint; marker: boolean }[]>();
  for (const s of d.snapshots) {
    for (const e of s.entries) byTarget.set(e.targetId, [...(byTarget.get(e.targetId) ?? []), { endNs: s.endNs, marker: isMarkerEntry(e) }]);
  }
  return { ends: d.snapshots.map((s) => s.endNs), byTarget };
}

function assertDamoAccepts(path: string, byTarget: Map<number, unknown>, damo: Damo): void {
  const raw = damo.run(['report', 'raw', '-i', path]);
  assert.equal(raw.status, 0, raw.stderr + raw.stdout);
  for (const id of byTarget.keys()) assert.match(raw.stdout, new RegExp(`^target_id: ${id}$`, 'm'));
  assert.doesNotMatch(raw.stdout, /base_time_absolute: \d+ h/, 'times are not wall-clock hours');
  for (const id of byTarget.keys()) {
    const heats = damo.run(['report', 'heats', '-i', path, '--tid', String(id), '--resol', '10', '20']);
    assert.equal(heats.status, 0, `heats of target ${id}: ${heats.stderr}`);
    assert.equal(heats.stdout.trim().split('\n').length, 200, `target ${id}: one line per pixel`);
  }
  const wss = damo.run(['report', 'wss', '-i', path, '--exclude_samples', '0']);
  assert.equal(wss.status, 0, wss.stderr);
}

const killedOnce = join(dir, 'killed-first.data');
const killedLater = join(dir, 'killed-later.data');

test('a recorder killed with SIGKILL after its first snapshot: every target opened, in time order', async () => {
  await recordAndKill(killedOnce, '1s', (n) => n >= 1);
  const { ends, byTarget } = layout(killedOnce);
  assert.deepEqual(ends, [...ends].sort((a, b) => (a < b ? -1 : 1)), 'no snapshot ends before the one before it');
  assert.deepEqual([...byTarget.keys()].sort(), [1, 2]);
  for (const [id, l] of byTarget) {
    assert.ok(l.length >= 2 && l[0]!.marker && !l[1]!.marker, `target ${id} opens with a marker, then its data`);
  }
  assert.ok(ends.every((e) => e < 2n ** 53n / 1000n), 'times on the recording clock: far below 2^53 ns');
  const file = await readResultFile(killedOnce);
  for (const r of file.snapshots[0]!.records) {
    assert.equal(r.startNs, 0n, 'the first records start at the recording clock\'s 0');
    assert.ok(r.endNs >= 900_000_000n && r.endNs < 5_000_000_000n, `one aggregation of 1 s: ${r.endNs} ns`);
  }
});

test('a recorder killed later: a target that exited after one snapshot keeps its entries, in time order', async () => {
  await recordAndKill(killedLater, '1s', (n) => n >= 3);
  const { ends, byTarget } = layout(killedLater);
  assert.deepEqual(ends, [...ends].sort((a, b) => (a < b ? -1 : 1)));
  const real = (id: number) => byTarget.get(id)!.filter((x) => !x.marker).length;
  assert.ok(real(2) < real(1), `target 2 exited early (${real(2)} of ${real(1)} snapshots)`);
  for (const [id, l] of byTarget) assert.ok(l.length >= 2 && l[0]!.marker, `target ${id}: ${JSON.stringify(l.map((x) => x.marker))}`);
});

test('damo 2.0.1 reads both killed recordings: report raw, heats of every target, wss', (t) => {
  const damo = damoOrSkip(t, 'v2.0.1');
  if (!damo) return;
  for (const path of [killedOnce, killedLater]) assertDamoAccepts(path, layout(path).byTarget, damo);
});

test('damo 2.0.1 draws heats of recordings at several intervals, and of a wall-clock JSON converted to binary', async (t) => {
  const damo = damoOrSkip(t, 'v2.0.1');
  const files: string[] = [];
  for (const aggr of ['100ms', '150ms', '200ms', '350ms']) {
    const out = join(dir, `heats-${aggr}.data`);
    const r = await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--sample', '5ms', '--aggr', aggr,
      '--duration', '1500ms', '--out', out, '--quiet']);
    assert.equal(r.code, 0, r.stderr);
    files.push(out);
  }
  const json = join(dir, 'wall.json.zlib');
  assert.equal((await run(['record', '--ops', 'synthetic', '--workload', 'islands', '--duration', '1500ms', '--out', json, '--quiet'])).code, 0);
  const wall = await readResultFile(json);
  assert.ok(wall.snapshots[0]!.endNs > 2n ** 53n, 'JSON keeps wall-clock time');
  const converted = join(dir, 'wall.data');
  const c = await run(['convert', json, converted]);
  assert.equal(c.code, 0, c.stderr);
  files.push(converted);
  if (!damo) return;
  for (const f of files) {
    const heats = damo.run(['report', 'heats', '-i', f, '--resol', '15', '30']);
    assert.equal(heats.status, 0, `${f}: ${heats.stderr}`);
    assert.equal(heats.stdout.trim().split('\n').length, 450, f);
  }
});

test('damo 3.3.0 reads json_compressed from the recorder and from convert of a binary file', async (t) => {
  const damo = damoOrSkip(t, 'v3.3.0');
  const fromRecorder = join(dir, 'rec.json.zlib');
  assert.equal((await run(['record', '--ops', 'synthetic', '--workload', WORKLOAD, '--duration', '1s', '--out', fromRecorder, '--quiet'])).code, 0);
  const fromBinary = join(dir, 'killed.json.zlib');
  const c = await run(['convert', killedLater, fromBinary, '--sample', '50ms', '--aggr', '1s', '--update', '100ms']);
  assert.equal(c.code, 0, c.stderr);
  if (!damo) return;
  for (const f of [fromRecorder, fromBinary]) {
    for (const cmd of [['report', 'access'], ['report', 'heatmap'], ['report', 'wss'], ['report', 'access', '--sort_regions_by', 'age']]) {
      const r = damo.run([...cmd, '-i', f]);
      assert.equal(r.status, 0, `${cmd.join(' ')} ${f}: ${r.stderr}${r.stdout.slice(-300)}`);
    }
  }
});

test('plain json: damo picks its parser by `file`\'s verdict, and treats ours exactly as its own', async (t) => {
  const damo = damoOrSkip(t, 'v3.3.0');
  const ours = join(dir, 'plain.json');
  assert.equal((await run(['record', '--ops', 'synthetic', '--workload', 'hot5', '--duration', '1s', '--out', ours, '--quiet'])).code, 0);
  const theirs = join(REPO, 'test/unit/fixtures/damo-written/damo-3.3.0.json');
  const verdict = spawnSync('file', ['-b', ours], { encoding: 'utf8' }).stdout.trim();
  assert.match(verdict, /^JSON (text )?data$/, '`file` recognises the text as JSON');
  if (!damo) return;
  // damo compares the verdict with "JSON data" (file 5.35-5.41); file 5.42 and later say
  // "JSON text data", and then damo cannot read any plain JSON file, its own included
  const hostOurs = damo.run(['report', 'access', '-i', ours]).status;
  const hostTheirs = damo.run(['report', 'access', '-i', theirs]).status;
  assert.equal(hostOurs, hostTheirs, `our json and damo's own fare alike with \`file\` saying "${verdict}"`);
  assert.equal(hostOurs === 0, verdict === 'JSON data');
  // with a `file` that says what damo expects, as file 5.35-5.41 does, damo reads ours
  const shim = join(dir, 'shim');
  spawnSync('mkdir', ['-p', shim]);
  writeFileSync(join(shim, 'file'), '#!/bin/sh\nv=$(/usr/bin/file "$@")\n[ "$v" = "JSON text data" ] && v="JSON data"\necho "$v"\n');
  chmodSync(join(shim, 'file'), 0o755);
  const env = { PATH: `${shim}:${process.env.PATH}` };
  for (const f of [ours, theirs]) {
    const r = damo.run(['report', 'access', '-i', f], { env });
    assert.equal(r.status, 0, `${f}: ${r.stderr}${r.stdout.slice(-300)}`);
  }
});
