// The fleet CLI (`damon-fleet sessions|agents|watch`) as a person or a script runs it, as a
// child process against a real nats-server, controller and agent: what it prints, its
// --json output parsed, its error messages and exit codes.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { describe, it, after } from 'node:test';
import { FLEET_BIN, spawnController, type FleetProcess } from './support/fleet-processes.js';
import { TEST_READER, freePort } from './support/nats-server.js';
import { TEST_HEARTBEAT_MS, TEST_LEASE_MS } from './support/controller-env.js';
import { servesAsLeader, controllerClient, waitFor } from './support/grpc-client.js';
import { useFleet } from './support/system-env.js';
import { Exit } from '../../cli/exit-codes.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `damon-fleet ARGS` to its end (60 s at most: a busy machine starts Node slowly). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FLEET_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`damon-fleet ${args.join(' ')}: still running after 60 s\n${stdout}\n${stderr}`));
    }, 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Long-running children: killed after the tests, so a failed assertion leaves none behind. */
const running = new Set<ChildProcess>();
after(() => {
  for (const c of running) c.kill('SIGKILL');
});

/** A long-running `damon-fleet ARGS` whose output is read as it comes. */
function cliRunning(args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [FLEET_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  running.add(child);
  const exit = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  return { child, out: () => stdout, err: () => stderr, exit };
}

function expectExit(r: Run, code: number, stderr?: RegExp): void {
  assert.equal(r.code, code, `exit code ${r.code}, expected ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  if (stderr) assert.match(r.stderr, stderr);
}

describe('damon-fleet CLI against a real controller, agent and NATS', { timeout: 240_000 }, () => {
  const env = useFleet(['h1']);
  const operator = () => ({ DAMON_FLEET_CONTROLLER: env.fleet.controllerAddress, DAMON_FLEET_TOKEN_FILE: env.fleet.creds.layout.operator.token });
  const reader = () => ({ DAMON_FLEET_CONTROLLER: env.fleet.controllerAddress, DAMON_FLEET_TOKEN_FILE: env.fleet.creds.layout.reader(TEST_READER).token });

  it('creates, configures, turns on and off, lists and deletes a session; --json parses', async () => {
    const t = env.fleet.target();
    const created = await cli(['sessions', 'create', 'cli-a', '--attrs', '10000 200000 1000000 10 100', '--json'], operator());
    expectExit(created, Exit.Ok);
    const s = JSON.parse(created.stdout);
    assert.equal(s.id, 'cli-a');
    assert.equal(s.state, 'SESSION_STATE_OFF');
    assert.equal(s.attrsText, '10000 200000 1000000 10 100');

    const attrs = await cli(['sessions', 'attrs', 'cli-a', '10000', '200000', '1000000', '10', '100', 'out/cli.data', '--format', 'json_compressed'], operator());
    expectExit(attrs, Exit.Ok);
    const shown = await cli(['sessions', 'attrs', 'cli-a'], operator());
    expectExit(shown, Exit.Ok);
    assert.equal(shown.stdout.split('\n')[0], '10000 200000 1000000 10 100 out/cli.data', 'the first line is DAMON\'s attrs text');
    assert.match(shown.stdout, /result format json_compressed/);

    expectExit(await cli(['sessions', 'targets', 'cli-a', `h1:${t.pid}`, '--operations', 'synthetic', '--workload', 'hot5'], operator()), Exit.Ok);
    const targets = JSON.parse((await cli(['sessions', 'targets', 'cli-a', '--json'], operator())).stdout);
    assert.deepEqual(targets.targets, [{ host: 'h1', pid: t.pid }]);

    const on = await cli(['sessions', 'on', 'cli-a'], operator());
    expectExit(on, Exit.Ok);
    assert.match(on.stdout, /session cli-a: on/);
    const again = await cli(['sessions', 'on', 'cli-a'], operator());
    expectExit(again, Exit.Precondition, /^damon-fleet sessions on: not possible in the current state: session "cli-a" is already on\n$/);
    expectExit(await cli(['sessions', 'delete', 'cli-a'], operator()), Exit.Precondition, /turn it off before deleting it/);
    const changeWhileOn = await cli(['sessions', 'targets', 'cli-a', 'h1:1'], operator());
    expectExit(changeWhileOn, Exit.Precondition, /is on: turn it off before changing its targets/);

    const got = JSON.parse((await cli(['sessions', 'get', 'cli-a', '--json'], operator())).stdout);
    assert.equal(got.state, 'SESSION_STATE_ON');
    assert.equal(got.operations, 'synthetic', 'setting targets without --operations kept them');
    const listed = await cli(['sessions', 'list', '--json', '--page-size', '1'], operator());
    expectExit(listed, Exit.Ok);
    assert.ok(JSON.parse(listed.stdout).sessions.some((x: { id: string }) => x.id === 'cli-a'));
    const table = await cli(['sessions', 'list'], operator());
    assert.match(table.stdout, /^ID\s+STATE\s+TARGETS/m);
    assert.match(table.stdout, /^cli-a\s+on\s+/m);

    expectExit(await cli(['sessions', 'off', 'cli-a'], operator()), Exit.Ok);
    expectExit(await cli(['sessions', 'off', 'cli-a'], operator()), Exit.Precondition, /session "cli-a" is already off/);
    const deleted = await cli(['sessions', 'delete', 'cli-a', '--json'], operator());
    expectExit(deleted, Exit.Ok);
    assert.deepEqual(JSON.parse(deleted.stdout), { deleted: 'cli-a' });
    const gone = await cli(['sessions', 'get', 'cli-a'], operator());
    expectExit(gone, Exit.NotFound, /^damon-fleet sessions get: not found: session "cli-a" not found\n$/);
  });

  it('pages through every session', async () => {
    for (const id of ['cli-p1', 'cli-p2', 'cli-p3']) expectExit(await cli(['sessions', 'create', id], operator()), Exit.Ok);
    const listed = JSON.parse((await cli(['sessions', 'list', '--json', '--page-size', '1'], operator())).stdout);
    const ids = listed.sessions.map((x: { id: string }) => x.id);
    for (const id of ['cli-p1', 'cli-p2', 'cli-p3']) assert.ok(ids.includes(id), `${id} in ${ids}`);
    for (const id of ['cli-p1', 'cli-p2', 'cli-p3']) expectExit(await cli(['sessions', 'delete', id], operator()), Exit.Ok);
  });

  it('refuses bad input with the field and bound, before or at the controller (exit 2)', async () => {
    const bad = await cli(['sessions', 'create', 'cli-bad', '--attrs', '5000 100000 1000000 10 99999'], operator());
    expectExit(bad, Exit.Usage, /bad attrs "5000 100000 1000000 10 99999": max_nr_regions: too large: at most 20000/);
    expectExit(await cli(['sessions', 'create', 'cli-bad', '--attrs', '5000 100000'], operator()), Exit.Usage, /expected "<sampling_us> <aggregation_us>/);
    expectExit(await cli(['sessions', 'create', 'cli-bad', '--targets', 'h1'], operator()), Exit.Usage, /target "h1": expected HOST:PID/);
    // Only the controller knows: an INVALID_ARGUMENT answer is exit 2 as well.
    const ops = await cli(['sessions', 'create', 'cli-bad', '--operations', 'bogus'], operator());
    expectExit(ops, Exit.Usage, /refused the request as invalid: operations: unknown operations "bogus"/);
    expectExit(await cli(['sessions', 'frobnicate', 'x'], operator()), Exit.Usage, /unknown command "frobnicate"/);
    const jsonErr = await cli(['sessions', 'get', 'no-such', '--json'], operator());
    expectExit(jsonErr, Exit.NotFound);
    assert.deepEqual(JSON.parse(jsonErr.stderr), { error: { message: 'not found: session "no-such" not found', exitCode: Exit.NotFound, status: 'NOT_FOUND' } });
  });

  it('says what is wrong with the credential, and what an identity may not do (exit 2, 5)', async () => {
    const none = await cli(['sessions', 'list'], { DAMON_FLEET_CONTROLLER: env.fleet.controllerAddress, DAMON_FLEET_TOKEN_FILE: '' });
    expectExit(none, Exit.Usage, /no credential: give --token-file FILE \(or DAMON_FLEET_TOKEN_FILE\)/);
    const insecure = await cli(['sessions', 'list', '--insecure', '--controller', env.fleet.controllerAddress]);
    expectExit(insecure, Exit.Auth, /did not accept this credential/);
    const asReader = await cli(['sessions', 'create', 'cli-r'], reader());
    expectExit(asReader, Exit.Auth, /this identity may not do that: .*reader/);
    expectExit(await cli(['sessions', 'list'], reader()), Exit.Ok);
    const token = await cli(['sessions', 'list', '--token', 'x'], operator());
    expectExit(token, Exit.Usage, /give the token in a file/);
    const missing = await cli(['sessions', 'list', '--token-file', '/nonexistent/token'], { DAMON_FLEET_CONTROLLER: env.fleet.controllerAddress });
    expectExit(missing, Exit.Usage, /token file \/nonexistent\/token/);
  });

  it('exits 6 when no controller answers', async () => {
    const port = await freePort();
    const r = await cli(['agents', 'list', '--controller', `127.0.0.1:${port}`], { DAMON_FLEET_TOKEN_FILE: env.fleet.creds.layout.operator.token });
    expectExit(r, Exit.Unavailable, new RegExp(`the controller is unavailable at 127\\.0\\.0\\.1:${port}`));
  });

  it('lists agents with their operations and health', async () => {
    const r = await cli(['agents', 'list', '--json'], reader());
    expectExit(r, Exit.Ok);
    const h1 = JSON.parse(r.stdout).agents.find((a: { host: string }) => a.host === 'h1');
    assert.ok(h1, r.stdout);
    assert.equal(h1.live, true);
    assert.ok(h1.operations.includes('synthetic'));
    assert.equal(h1.instanceId, env.fleet.agents.get('h1')!.instanceId);
    const text = await cli(['agents', 'list'], reader());
    assert.match(text.stdout, /^h1\s+127\.0\.0\.1:\d+\s+live\s+\d+\.\ds ago\s+/m);
  });

  describe('watch', () => {
    let t: ReturnType<typeof env.fleet.target>;
    const id = 'cli-watch';
    const ready = async () => {
      if (t) return;
      t = env.fleet.target();
      expectExit(await cli(['sessions', 'create', id, '--attrs', '10000 200000 1000000 10 100', '--targets', `h1:${t.pid}`, '--operations', 'synthetic', '--workload', 'hot5'], operator()), Exit.Ok);
      expectExit(await cli(['sessions', 'on', id], operator()), Exit.Ok);
    };
    after(async () => {
      if (t) await cli(['sessions', 'off', id], operator());
    });

    it('prints plain snapshots of a live session per target when not on a terminal; Ctrl-C exits 0', async () => {
      await ready();
      const w = cliRunning(['watch', id, '--interval', '300ms'], reader());
      await waitFor('a snapshot with the target\'s regions', () => new RegExp(`h1:${t.pid}  running  synthetic  record #\\d+`).test(w.out()) && /regions over/.test(w.out()), 30_000, 100);
      const out = w.out();
      assert.match(out, /^session cli-watch: on, 1 target, records from WatchRecords at /m);
      assert.match(out, /aggregation [\d.]+ ms real vs 200\.0 ms configured \([+-][\d.]+%\)/);
      assert.match(out, /^  hottest 0x[0-9a-f]+-0x[0-9a-f]+ +[\d.]+ [KMG]iB +\d+% (for [\d.]+ m?s|new)$/m);
      assert.match(out, /^  coldest 0x[0-9a-f]+-0x[0-9a-f]+/m);
      assert.doesNotMatch(out, /\x1b\[/, 'no escape sequences when not on a terminal');
      w.child.kill('SIGINT');
      assert.equal(await w.exit, 0, w.err());
    });

    it('writes one JSON line per view with --json, and reads NATS with a reader seed', async () => {
      await ready();
      const w = cliRunning(
        ['watch', id, '--json', '--interval', '300ms', '--nats', env.fleet.nats.url, '--nats-nkey', env.fleet.creds.reader()],
        reader(),
      );
      const withRegions = () => w.out().split('\n').slice(0, -1).map((l) => JSON.parse(l)).find((v) => v.targets[0]?.regions > 0);
      const snap = await waitFor('a JSON view with regions', withRegions, 30_000, 100);
      w.child.kill('SIGINT');
      assert.equal(await w.exit, 0, w.err());
      assert.equal(snap.session, id);
      assert.equal(snap.state, 'on');
      const target = snap.targets[0];
      assert.equal(target.host, 'h1');
      assert.equal(target.pid, t.pid);
      assert.equal(target.state, 'running');
      assert.ok(target.workingSetBytes <= target.monitoredBytes);
      assert.equal(target.configuredAggregationUs, 200_000);
      assert.ok(target.hottest.length > 0 && target.hottest[0].frequency >= target.coldest[0].frequency);
    });

    it('redraws in place with --screen, and leaves the terminal as it was on Ctrl-C', async () => {
      await ready();
      const w = cliRunning(['watch', id, '--screen', '--interval', '200ms'], { ...reader(), COLUMNS: '90', LINES: '30' });
      await waitFor('two frames', () => w.out().split('\x1b[H').length > 2 && /regions over/.test(w.out()), 30_000, 100);
      w.child.kill('SIGINT');
      assert.equal(await w.exit, 0, w.err());
      const out = w.out();
      assert.ok(out.startsWith('\x1b[?1049h\x1b[?25l'), 'alternate screen, no cursor');
      assert.ok(out.endsWith('\x1b[?25h\x1b[?1049l'), 'cursor and screen restored at the end');
      const frame = out.split('\x1b[H').at(-2)!.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split('\r\n');
      assert.ok(frame.length <= 30 && frame.every((l) => [...l].length <= 90), 'each frame fits the window');
    });

    it('on a real terminal (a pty from script(1)) draws the screen by itself', async (ctx) => {
      await ready();
      if (spawnSync('script', ['--version']).status !== 0) {
        ctx.skip('script(1) (util-linux) is not installed: no pty to run watch on');
        return;
      }
      const cmd = `stty cols 100 rows 30; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(FLEET_BIN)} watch ${id} --count 3 --interval 300ms`;
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const c = spawn('script', ['-qefc', cmd, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...reader() } });
        let out = '';
        c.stdout!.on('data', (b: Buffer) => (out += b.toString()));
        c.once('exit', (code) => resolve({ code, out }));
      });
      assert.equal(r.code, 0, r.out);
      assert.ok(r.out.includes('\x1b[?1049h'), 'a terminal gets the redrawn screen');
      assert.ok(r.out.trimEnd().endsWith('\x1b[?25h\x1b[?1049l'), 'and gets it back at the end');
      assert.match(r.out, new RegExp(`h1:${t.pid}  running`));
    });

    it('stops after --count views', async () => {
      await ready();
      const r = await cli(['watch', id, '--count', '2', '--interval', '200ms', '--json'], reader());
      expectExit(r, Exit.Ok);
      assert.equal(r.stdout.trim().split('\n').length, 2);
    });

    it('exits 3 once the watched session is deleted', async () => {
      expectExit(await cli(['sessions', 'create', 'cli-doomed'], operator()), Exit.Ok);
      const w = cliRunning(['watch', 'cli-doomed', '--interval', '200ms'], reader());
      await waitFor('a first view', () => /^session cli-doomed: off, 0 targets/m.test(w.out()), 30_000, 100);
      expectExit(await cli(['sessions', 'delete', 'cli-doomed'], operator()), Exit.Ok);
      assert.equal(await w.exit, Exit.NotFound, w.out());
      assert.match(w.err(), /^damon-fleet watch: session "cli-doomed" was deleted\n$/);
    });

    it('exits 3 for a session that does not exist', async () => {
      expectExit(await cli(['watch', 'no-such-session'], reader()), Exit.NotFound, /not found: session "no-such-session" not found/);
    });
  });

  describe('with a standby controller', () => {
    let standby: FleetProcess | undefined;
    after(async () => {
      await standby?.stop(3000);
    });

    it('follows the leader a standby names', async () => {
      const address = `127.0.0.1:${await freePort()}`;
      standby = await spawnController({
        listen: address,
        nats: env.fleet.nats.url,
        credentials: env.fleet.creds,
        leaseTtlMs: TEST_LEASE_MS,
        heartbeatMs: TEST_HEARTBEAT_MS,
        name: 'standby',
      });
      const client = controllerClient(address, env.fleet.creds.grpc.operator);
      try {
        assert.equal(await servesAsLeader(client), false, 'the second controller stands by');
      } finally {
        client.close();
      }
      const r = await cli(['agents', 'list', '--json', '--controller', `${address},${env.fleet.controllerAddress}`], operator());
      expectExit(r, Exit.Ok);
      assert.ok(JSON.parse(r.stdout).agents.some((a: { host: string }) => a.host === 'h1'));
      const alone = await cli(['agents', 'list', '--controller', address], operator());
      expectExit(alone, Exit.Unavailable, new RegExp(`unavailable at ${address.replace(/\./g, '\\.')}: standby; the leader is at `));
    });
  });

  // Last: it restarts the controller the other tests talk to.
  it('watch goes on across a controller restart, saying what is wrong meanwhile', async () => {
    const t = env.fleet.target();
    const id = 'cli-restart';
    expectExit(await cli(['sessions', 'create', id, '--attrs', '10000 200000 1000000 10 100', '--targets', `h1:${t.pid}`, '--operations', 'synthetic', '--workload', 'hot5'], operator()), Exit.Ok);
    expectExit(await cli(['sessions', 'on', id], operator()), Exit.Ok);
    const w = cliRunning(['watch', id, '--json', '--interval', '200ms'], reader());
    type View = { problem?: string; targets: Array<{ records: number; lastSequence: string }> };
    // Whole lines only: the last may still be coming.
    const views = () => w.out().split('\n').slice(0, -1).map((l) => JSON.parse(l) as View);
    const seq = (v: View) => BigInt(v.targets[0]?.lastSequence ?? '0');
    await waitFor('records', () => views().some((v) => v.targets[0]?.records > 0), 30_000, 100);
    await env.fleet.controller.kill9();
    const down = await waitFor('a view naming the outage', () => views().find((v) => v.problem?.includes('unavailable')), 30_000, 100);
    assert.match(down.problem!, /the controller is unavailable at 127\.0\.0\.1:\d+: .*retrying/);
    const before = seq(views().at(-1)!);
    await env.fleet.restartController();
    await waitFor('records past the restart, and no problem shown', () => {
      const last = views().at(-1)!;
      return seq(last) > before + 2n && last.problem === undefined;
    }, 60_000, 100);
    w.child.kill('SIGINT');
    assert.equal(await w.exit, 0, w.err());
    expectExit(await cli(['sessions', 'off', id], operator()), Exit.Ok);
  });
});
