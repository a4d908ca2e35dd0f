// `damon-fleet report` as a person runs it: the subcommands on result files and on a
// session's records replayed from a real nats-server with a reader's credential; the
// pictures written and decodable; errors as a person reads them, with exit codes
// (0 done, 1 unreadable input or no records, 2 bad options).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { openResultWriter } from '../../agent/records/result-writer.js';
import { connectNats, ensureStreams, jetStream } from '../../common/nats.js';
import { recordsSubject } from '../../common/subjects.js';
import { encodeRecord } from '../../common/record-wire.js';
import { AggregationRecord } from '../../gen/damon/v1/damon.js';
import { startNatsServer, type NatsServer, freePort } from './support/nats-server.js';
import { AGGR_NS, BAND, INTERVALS, MiB, T0, hotBand } from '../support/report-patterns.js';

const BIN = fileURLToPath(new URL('../../../bin/damon-fleet.js', import.meta.url));

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'report', ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'damon-report-cli-'));
const band = join(dir, 'band.json');
let nats: NatsServer;

before(async () => {
  const w = await openResultWriter(band, { intervals: INTERVALS });
  for (const r of hotBand()) await w.writeSnapshot([r]);
  await w.close();
  nats = await startNatsServer();
  const controller = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.controller });
  await ensureStreams(jetStream(controller));
  await controller.close();
  // The hot band as an agent on host h publishes it for session s1, target pid 42.
  const agent = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.agent('h') });
  const js = jetStream(agent);
  for (const [i, r] of hotBand().entries()) {
    const rec = AggregationRecord.fromPartial({
      sessionId: 's1', host: 'h', pid: 42, startTimeNs: r.startNs, endTimeNs: r.endNs, maxNrAccesses: r.maxNrAccesses,
      regions: r.regions.map((g) => ({ start: BigInt(g.start), end: BigInt(g.end), nrAccesses: g.nrAccesses, age: g.age })),
      operations: 'synthetic', sequence: BigInt(i + 1), agentInstance: 'a1',
    });
    await js.publish(recordsSubject('s1', 'h', 42), encodeRecord(rec));
  }
  await agent.close();
});

after(async () => {
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const iso = (ns: bigint) => new Date(Number(ns / 1_000_000n)).toISOString();

test('report heatmap FILE writes a PNG and an SVG per target and prints their paths', async () => {
  const prefix = join(dir, 'map');
  const r = await run(['heatmap', band, '--out', prefix]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), [`${prefix}-target-0.svg`, `${prefix}-target-0.png`]);
  const png = PNG.sync.read(readFileSync(`${prefix}-target-0.png`));
  assert.ok(png.width >= 760 && png.height >= 480, `${png.width}x${png.height}`);
  const svg = readFileSync(`${prefix}-target-0.svg`, 'utf8');
  assert.match(svg, /^<svg [^>]*font-family="DejaVu Sans/);
  assert.match(svg, /address across, time down/);
  const only = await run(['heatmap', '--file', band, '--out', prefix + '2', '--format', 'svg']);
  assert.equal(only.code, 0, only.stderr);
  assert.deepEqual(only.stdout.trim().split('\n'), [`${prefix}2-target-0.svg`]);
  const nowhere = await run(['heatmap', band, '--out', join(dir, 'no', 'such', 'map')]);
  assert.equal(nowhere.code, 1);
  assert.match(nowhere.stderr, /cannot write .*no\/such\/map-target-0\.svg: no such directory/);
});

test('report wss and summary on a file; report FILE still draws the text heatmap, naming its threshold', async () => {
  const wss = await run(['wss', band, '--acc_thres', '1,10', '--raw_number']);
  assert.equal(wss.code, 0, wss.stderr);
  assert.match(wss.stdout, /^percentile\s+--acc_thres 1\s+--acc_thres 10$/m);
  assert.match(wss.stdout, new RegExp(`^50\\s+${33 * MiB}\\s+${8 * MiB}$`, 'm'));
  const json = JSON.parse((await run(['wss', band, '--json', '--exclude_samples', '0', '--every', '2s'])).stdout);
  assert.equal(json[0].snapshots, 60);
  assert.deepEqual(json[0].windows.map((w: { snapshots: number }) => w.snapshots), [20, 20, 20]);
  assert.deepEqual(json[0].thresholds[0].percentiles, { 0: 33 * MiB, 25: 33 * MiB, 50: 33 * MiB, 75: 33 * MiB, 100: 33 * MiB });
  const sum = await run(['summary', band]);
  assert.equal(sum.code, 0, sum.stderr);
  assert.match(sum.stdout, /target 0: 60 snapshot\(s\) over 6\.0 s/);
  assert.match(sum.stdout, /hottest over the whole time: 0x[0-9a-f]+-0x[0-9a-f]+ \(8\.00 MiB, 100\.0%\)/);
  assert.ok(sum.stdout.includes(`0x${BAND.start.toString(16)}-0x${BAND.end.toString(16)}`), sum.stdout);
  const text = await run([band, '--rows', '5', '--width', '40']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /damo wss --acc_thres 10/);
  assert.match(text.stdout, /wss@acc_thres 10/);
});

test('files that are not result files, and missing ones: exit 1 with what is wrong', async () => {
  const perf = join(dir, 'perf.txt');
  writeFileSync(perf, '    kdamond.0  4242 [001]  1234.567: damon:damon_aggregated: target_id=0 nr_regions=3 4096-8192: 0 1\n'.repeat(20));
  for (const args of [['summary', perf], ['heatmap', perf, '--out', join(dir, 'x')], [perf]]) {
    const r = await run(args);
    assert.equal(r.code, 1, `${args}: ${r.stdout}`);
    assert.match(r.stderr, /not a result file: it is `perf script` output of DAMON.s tracepoints.*damo convert_record_format/);
  }
  const junk = join(dir, 'junk.bin');
  writeFileSync(junk, Buffer.from(Array.from({ length: 999 }, (_, i) => (i * 7919 + 13) % 251)));
  const j = await run(['wss', junk]);
  assert.equal(j.code, 1, j.stdout);
  assert.match(j.stderr, /not a result file|not a readable result file|holds no snapshot/);
  const missing = await run(['summary', join(dir, 'nope.data')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no such file/);
  const target = await run(['summary', band, '--target', '7']);
  assert.equal(target.code, 1);
  assert.match(target.stderr, /no records of target "7" .*\(targets: target 0\)/);
  const window = await run(['summary', band, '--since', '2030-01-01T00:00:00Z']);
  assert.equal(window.code, 1);
  assert.match(window.stderr, /no records in .* within --since\/--until/);
});

test('bad options: usage and exit 2', async () => {
  for (const [args, why] of [
    [['heatmap'], /give a result file \(FILE or --file FILE\) or --session ID/],
    [['heatmap', band, '--session', 's1'], /one of them/],
    [['wss', band, '--acc_thres', 'x'], /--acc_thres x: expected an integer/],
    [['wss', band, '--range', '0,101'], /--range 0,101: expected START,END,STEP/],
    [['summary', band, '--since', 'yesterday'], /--since "yesterday": expected an ISO time/],
    [['heatmap', band, '--format', 'gif'], /--format gif: png, svg/],
    [['heatmap', band, '--width', '100000'], /--width 100000: expected an integer from 100 to 8000/],
    [['summary', band, '--nats-nkey', 'x'], /--nats-nkey goes with --session/],
    [['heatmap', band, '--bogus'], /Unknown option '--bogus'/],
  ] as const) {
    const r = await run([...args]);
    assert.equal(r.code, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, why);
    assert.match(r.stderr, /usage: damon-fleet report/);
  }
});

test("--session: a session's records replayed from NATS with a reader's credential, by time range", async () => {
  const reader = nats.credentials.reader();
  const base = ['--session', 's1', '--nats', nats.url, '--nats-nkey', reader];
  const all = await run(['wss', ...base, '--json', '--exclude_samples', '0', '--acc_thres', '1,10']);
  assert.equal(all.code, 0, all.stderr);
  const [t] = JSON.parse(all.stdout);
  assert.equal(t.target, 'h pid 42');
  assert.equal(t.snapshots, 60);
  assert.ok(t.thresholds[0].bytes.every((b: number) => b === 33 * MiB));
  assert.ok(t.thresholds[1].bytes.every((b: number) => b === 8 * MiB));
  // Records ending from 2 s to 4 s after the start: 21 of them (ends 2.0, 2.1, ..., 4.0).
  const win = await run(['wss', ...base, '--json', '--exclude_samples', '0', '--since', iso(T0 + 20n * AGGR_NS), '--until', iso(T0 + 40n * AGGR_NS)]);
  assert.equal(win.code, 0, win.stderr);
  const [w] = JSON.parse(win.stdout);
  assert.equal(w.snapshots, 21);
  assert.equal(w.endTimesNs[0], String(T0 + 20n * AGGR_NS));
  const prefix = join(dir, 'session');
  const map = await run(['heatmap', ...base, '--out', prefix, '--format', 'png']);
  assert.equal(map.code, 0, map.stderr);
  assert.deepEqual(map.stdout.trim().split('\n'), [`${prefix}-h-pid-42.png`]);
  PNG.sync.read(readFileSync(`${prefix}-h-pid-42.png`));
  const none = await run(['summary', '--session', 'nosuch', '--nats', nats.url, '--nats-nkey', reader]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no records in session nosuch on nats:\/\/127\.0\.0\.1:\d+/);
});

test('--session errors: no credential, a credential that may not read, an unreachable server', async () => {
  const anonymous = await run(['summary', '--session', 's1', '--nats', nats.url]);
  assert.equal(anonymous.code, 1);
  assert.match(anonymous.stderr, /demands a credential: give --nats-nkey FILE/);
  // An agent may publish its own host's records, not replay a stream.
  const agent = await run(['summary', '--session', 's1', '--nats', nats.url, '--nats-nkey', nats.credentials.agent('h')]);
  assert.equal(agent.code, 1);
  assert.match(agent.stderr, /NATS refused to replay damon\.records\.s1\.>: Permissions Violation .*\(a reader's or the operator's credential can\)/);
  const port = await freePort();
  const down = await run(['summary', '--session', 's1', '--nats', `nats://127.0.0.1:${port}`, '--nats-nkey', nats.credentials.reader()]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, new RegExp(`cannot reach NATS at nats://127\\.0\\.0\\.1:${port}`));
  const creds = await run(['summary', '--session', 's1', '--nats', 'nats://user:pw@127.0.0.1:4222']);
  assert.equal(creds.code, 2);
  assert.doesNotMatch(creds.stderr, /pw/);
});
