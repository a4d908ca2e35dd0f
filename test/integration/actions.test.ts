// Optimizers' actions end to end, on real processes of this host: a real controller and agent
// on a real NATS, sessions monitoring with the synthetic operations (page_idle is not here)
// but actions taken on the real pids through process_madvise. A target maps a file and reads
// it; pageout of its range drops its resident pages (mincore, smaps Rss); a range reaching
// into unmapped space is clipped and says how much; a dry run changes nothing; every action
// is an event on NATS; each refusal has its status; and the example optimizer, run as a
// process, pages out a range that stayed cold.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../../common/nats.js';
import { ACTIONS_STREAM, actionsFilter } from '../../common/subjects.js';
import { retryDelayMs } from '../../common/retry-info.js';
import { startController, type RunningController } from '../../controller/controller.js';
import { startAgent, type AgentHandle } from '../../agent/daemon/main.js';
import { ActionEvent, SchemeAction, SessionState, type ActionRequest, type ActionResult, type ControllerClient } from '../../gen/damon/v1/damon.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { controllerClient, rejectsWith, unary, waitFor } from './support/grpc-client.js';
import { testLogger } from './support/controller-env.js';
import { testCredentials } from './support/credentials.js';
import { FAST_ATTRS, agentClient, agentTestLogger, tempDir } from './support/agent-env.js';
import { FLEET_BIN } from './support/fleet-processes.js';
import { FileToucher, buildToucher, diskTempDir } from './support/file-toucher.js';

const { PERMISSION_DENIED, NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT, RESOURCE_EXHAUSTED } = grpc.status;
const HOST = 'act-node';
const MiB = 1 << 20;
const OPTIMIZER_BIN = fileURLToPath(new URL('../../examples/optimizer.js', import.meta.url));
// Each target gets 4 actions at once, then one per 5 s: the rate-limit test reaches the
// limit in a few calls however slow the machine, and no other test comes near it.
const LIMITS = { targetPerS: 0.2, targetBurst: 4 };

const creds = testCredentials({
  agents: [HOST],
  optimizers: [
    { name: 'reclaim', sessions: ['act-*'] },
    { name: 'other', sessions: ['elsewhere'] },
  ],
});
const files = diskTempDir('damon-actions-');
const built = buildToucher(files.path);

let nats: NatsServer;
let controller: RunningController;
let operator: ControllerClient;
let optimizer: ControllerClient;
let agent: AgentHandle;
let data: ReturnType<typeof tempDir>;
let nc: NatsConnection;
const touchers: FileToucher[] = [];

async function toucher(bytes = 8 * MiB): Promise<FileToucher> {
  const t = await FileToucher.start(built.exe!, files.path, bytes);
  touchers.push(t);
  return t;
}

const SESSION = { attrs: FAST_ATTRS, attrsText: '', schemesText: '', operations: 'synthetic', syntheticWorkload: 'hot5' };

async function sessionOn(id: string, pids: number[], syntheticWorkload = 'hot5'): Promise<void> {
  await unary(operator, 'createSession', { id, ...SESSION, syntheticWorkload, targets: pids.map((pid) => ({ host: HOST, pid })) });
  const s = await unary(operator, 'turnOn', { id });
  assert.equal(s.state, SessionState.SESSION_STATE_ON);
}

function request(t: { pid: number }, start: bigint, end: bigint, o: Partial<ActionRequest> = {}): ActionRequest {
  return { sessionId: 'act-main', host: HOST, pid: t.pid, start, end, action: SchemeAction.SCHEME_ACTION_PAGEOUT, dryRun: false, ...o };
}

/** The action events of `sessionId` the stream holds, replayed by the optimizer's NATS identity. */
async function actionEvents(sessionId: string, want: (e: ActionEvent[]) => boolean): Promise<ActionEvent[]> {
  return waitFor('the action events', async () => {
    const js = jetstream(nc);
    const c = await js.consumers.get(ACTIONS_STREAM, { filter_subjects: actionsFilter(sessionId), deliver_policy: DeliverPolicy.All });
    const info = await c.info(true);
    const out: ActionEvent[] = [];
    if (info.num_pending > 0) {
      const batch = await c.fetch({ max_messages: info.num_pending, expires: 2000 });
      for await (const m of batch) {
        out.push(ActionEvent.decode(m.data));
        if (out.length >= info.num_pending) break;
      }
    }
    await c.delete().catch(() => undefined);
    return want(out) ? out : undefined;
  }, 10_000, 200);
}

describe('actions on real processes', { skip: built.why }, () => {
  let a: FileToucher; // paged out
  let b: FileToucher; // clipped and dry-run
  let c: FileToucher; // rate limited
  let d: FileToucher; // exits

  before(async () => {
    nats = await startNatsServer({ credentials: creds });
    controller = await startController({
      listen: '127.0.0.1:0',
      nats: nats.url,
      natsNkeyFile: creds.controller,
      ...creds.grpc.controllerAccess,
      leaseTtlMs: 1200,
      heartbeatIntervalMs: 200,
      actionLimits: LIMITS,
      log: testLogger('controller'),
    });
    operator = controllerClient(controller.address, creds.grpc.operator);
    optimizer = controllerClient(controller.address, creds.grpc.optimizer('reclaim'));
    data = tempDir('damon-actions-agent-');
    agent = await startAgent({
      host: HOST,
      listen: '127.0.0.1:0',
      controller: controller.address,
      nats: nats.url,
      natsNkeyFile: creds.agent(HOST),
      dataDir: data.path,
      ...creds.grpc.agentAccess(HOST),
      processPollMs: 50,
      log: agentTestLogger(),
    });
    nc = await connectNats({ servers: nats.url, nkeyFile: creds.optimizer('reclaim') });
    await waitFor('the agent live', async () => (await unary(operator, 'listAgents', {})).agents.find((x) => x.host === HOST && x.live));
    [a, b, c, d] = await Promise.all([toucher(), toucher(), toucher(), toucher()]);
    await sessionOn('act-main', [a.pid, b.pid, c.pid, d.pid]);
  });

  after(async () => {
    operator?.close();
    optimizer?.close();
    await nc?.close();
    await agent?.stop();
    await Promise.all(touchers.map((t) => t.kill()));
    await controller?.stop();
    await nats?.stop();
    data?.remove();
    files.remove();
    creds.remove();
  });

  test('pageout of a target\'s file mapping drops its resident pages; the answer and the event say so', async () => {
    assert.equal(await a.residentPages(), a.pages, 'all resident before');
    const r = await unary(optimizer, 'requestAction', request(a, a.start, a.end));
    assert.equal(r.bytesEligible, a.size);
    assert.equal(r.bytesClipped, 0n);
    assert.equal(r.bytesApplied, a.size);
    assert.deepEqual(r.ranges, [{ start: a.start, end: a.end }]);
    assert.equal(r.error, '');
    assert.equal(r.requestedBy, 'optimizer "reclaim"');
    // The kernel dropped them: none left in memory, none mapped in the process.
    assert.equal(await a.residentPages(), 0);
    assert.ok(a.rssBytes() <= 4 * 4096, `Rss of the mapping ${a.rssBytes()} bytes after pageout`);
    const events = await actionEvents('act-main', (e) => e.some((x) => x.result?.actionId === r.actionId));
    const ev = events.find((x) => x.result?.actionId === r.actionId)!;
    assert.deepEqual(ev.result, r);
    assert.equal(ev.agentInstance, agent.instanceId);
  });

  test('a range reaching into unmapped space is clipped to the mapping, and the bytes left out are reported', async () => {
    const r = await unary(optimizer, 'requestAction', request(b, b.start - b.guard, b.end + b.guard, { dryRun: true }));
    assert.deepEqual(r.requested, { start: b.start - b.guard, end: b.end + b.guard });
    assert.deepEqual(r.ranges, [{ start: b.start, end: b.end }]);
    assert.equal(r.bytesEligible, b.size);
    assert.equal(r.bytesClipped, 2n * b.guard);
  });

  test('a dry run changes nothing, and is an event too', async () => {
    const before = await b.residentPages();
    assert.equal(before, b.pages);
    const r = await unary(optimizer, 'requestAction', request(b, b.start, b.end, { dryRun: true }));
    assert.equal(r.dryRun, true);
    assert.equal(r.bytesEligible, b.size);
    assert.equal(r.bytesApplied, 0n);
    assert.equal(await b.residentPages(), b.pages, 'still all resident');
    const events = await actionEvents('act-main', (e) => e.some((x) => x.result?.actionId === r.actionId));
    assert.equal(events.find((x) => x.result?.actionId === r.actionId)!.result?.dryRun, true);
  });

  test('only sessions the optimizer is granted; only targets of them; each refusal with its status', async () => {
    const other = controllerClient(controller.address, creds.grpc.optimizer('other'));
    const reader = controllerClient(controller.address, creds.grpc.reader());
    try {
      await rejectsWith(unary(other, 'requestAction', request(b, b.start, b.end)), PERMISSION_DENIED, /optimizer "other" may not act on session "act-main"/);
      // Whether a session exists is not told to an optimizer not granted it.
      await rejectsWith(unary(other, 'requestAction', request(b, b.start, b.end, { sessionId: 'no-such' })), PERMISSION_DENIED, /may not act on session "no-such"/);
      await rejectsWith(unary(other, 'getSession', { id: 'act-main' }), PERMISSION_DENIED, /optimizer "other" may not read session "act-main"/);
      assert.deepEqual((await unary(other, 'listSessions', { pageSize: 0, pageToken: '' })).sessions, []);
      assert.ok((await unary(optimizer, 'listSessions', { pageSize: 0, pageToken: '' })).sessions.some((s) => s.id === 'act-main'));
      await rejectsWith(unary(optimizer, 'turnOff', { id: 'act-main' }), PERMISSION_DENIED, /optimizer "reclaim" may not call TurnOff/);
      await rejectsWith(unary(reader, 'requestAction', request(b, b.start, b.end)), PERMISSION_DENIED, /reader "test-reader" may not call RequestAction/);
    } finally {
      other.close();
      reader.close();
    }
    await rejectsWith(unary(optimizer, 'requestAction', request(b, b.start, b.end, { sessionId: 'act-none' })), NOT_FOUND, /act-none/);
    await unary(operator, 'createSession', { id: 'act-off', ...SESSION, targets: [{ host: HOST, pid: b.pid }] });
    await rejectsWith(unary(optimizer, 'requestAction', request(b, b.start, b.end, { sessionId: 'act-off' })), FAILED_PRECONDITION, /session "act-off" is off/);
    await rejectsWith(unary(optimizer, 'requestAction', request({ pid: process.pid }, b.start, b.end)), NOT_FOUND, new RegExp(`pid ${process.pid} is not a target of session "act-main"`));
    await rejectsWith(unary(optimizer, 'requestAction', request(b, b.start, b.end, { host: 'h1' })), NOT_FOUND, /no target on host "h1"/);
    await rejectsWith(unary(optimizer, 'requestAction', request(b, b.start, b.end, { action: SchemeAction.SCHEME_ACTION_STAT })), INVALID_ARGUMENT, /stat only counts/);
    await rejectsWith(unary(optimizer, 'requestAction', request(b, b.start, b.end, { action: SchemeAction.SCHEME_ACTION_HUGEPAGE })), INVALID_ARGUMENT, /not possible through process_madvise/);
    await rejectsWith(unary(optimizer, 'requestAction', request(b, b.start + 1n, b.end)), INVALID_ARGUMENT, /page aligned/);
    assert.equal(await b.residentPages(), b.pages, 'no refused request touched the target');
  });

  test('a target whose process exited: NOT_FOUND "process exited"', async () => {
    await d.kill();
    await rejectsWith(unary(optimizer, 'requestAction', request(d, d.start, d.end, { dryRun: true })), NOT_FOUND, /process exited/);
    // The session is not affected: still on, its other targets still acted on.
    assert.equal((await unary(operator, 'getSession', { id: 'act-main' })).state, SessionState.SESSION_STATE_ON);
  });

  test('rate limit per target: RESOURCE_EXHAUSTED with when to retry (RetryInfo)', async () => {
    for (let i = 0; i < LIMITS.targetBurst; i++) await unary(optimizer, 'requestAction', request(c, c.start, c.end, { dryRun: true }));
    const err = await unary(optimizer, 'requestAction', request(c, c.start, c.end, { dryRun: true })).then(
      () => assert.fail('not limited'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, RESOURCE_EXHAUSTED);
    assert.match(err.details, /rate limit: 0\.2 actions a second \(bursts of 4\) on act-node:\d+; retry in \d+ ms/);
    const delay = retryDelayMs(err.metadata);
    assert.ok(delay !== undefined && delay > 0 && delay <= 5000, `retry delay ${delay}`);
  });

  test('the agent obeys only the controller: an optimizer cannot call ApplyAction itself, nor a deposed leader', async () => {
    const direct = agentClient(agent.address, creds.grpc.optimizer('reclaim'));
    const stale = agentClient(agent.address, creds.grpc.controllerToAgent(HOST));
    try {
      const req = { request: request(b, b.start, b.end), actionId: 'forged', requestedBy: 'me', epoch: 1_000_000n };
      await rejectsWith(unary(direct, 'applyAction', req), PERMISSION_DENIED, /token not accepted/);
      await rejectsWith(unary(stale, 'applyAction', { ...req, epoch: 0n }), FAILED_PRECONDITION, /stale controller epoch/);
    } finally {
      direct.close();
      stale.close();
    }
    assert.equal(await b.residentPages(), b.pages);
  });

  test('damon-fleet act: what was done, in text and JSON; refusals as exit codes', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        const child = spawn(process.execPath, [FLEET_BIN, 'act', ...args, '--controller', controller.address, '--token-file', creds.layout.optimizer('reclaim').token], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (x) => (out += x));
        child.stderr.on('data', (x) => (err += x));
        child.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
      });
    const hex = (v: bigint) => `0x${v.toString(16)}`;
    const range = `${hex(b.start - b.guard)}-${hex(b.end)}`;
    const text = await run(['act-main', `${HOST}:${b.pid}`, range, 'pageout', '--dry-run']);
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, new RegExp(`^action \\S+: dry run of pageout of ${range} on ${HOST}:${b.pid} \\(session act-main\\)\\n`));
    assert.match(text.out, new RegExp(`eligible: ${b.size} bytes \\(8\\.00 MiB\\) in 1 range\\(s\\): ${hex(b.start)}-${hex(b.end)}\\n`));
    assert.match(text.out, new RegExp(`clipped: +${b.guard} bytes \\(1\\.00 MiB\\) outside the target's mappings`));
    const json = await run(['act-main', `${HOST}:${b.pid}`, `${hex(b.start)}-${hex(b.end)}`, 'cold', '--json']);
    assert.equal(json.code, 0, json.err);
    const r = JSON.parse(json.out) as ActionResult & { bytesApplied: string };
    assert.equal(r.bytesApplied, String(b.size));
    const refused = await run(['act-main', `${HOST}:${b.pid}`, `${hex(b.start)}-${hex(b.end)}`, 'stat']);
    assert.equal(refused.code, 2);
    assert.match(refused.err, /refused the request as invalid: action: stat only counts regions/);
    const foreign = await run(['elsewhere', `${HOST}:${b.pid}`, `${hex(b.start)}-${hex(b.end)}`, 'cold']);
    assert.equal(foreign.code, 5);
    assert.match(foreign.err, /may not act on session "elsewhere"/);
  });

  test('the example optimizer, as a process, pages out a file-backed range that stayed cold', async () => {
    const e = await toucher();
    // The synthetic workload declares e's mapping, never accessed: the records show it cold
    // (nr_accesses 0, growing age); the optimizer acts on the real process.
    const workload = JSON.stringify({
      name: 'cold-file',
      targets: [{ id: 1, mappings: [{ start: `0x${e.start.toString(16)}`, size: Number(e.size) }], baseProbability: 0 }],
    });
    assert.equal(await e.residentPages(), e.pages);
    const opt: ChildProcess = spawn(
      process.execPath,
      [
        OPTIMIZER_BIN,
        '--nats', nats.url,
        '--nats-nkey', creds.optimizer('reclaim'),
        '--session', 'act-opt',
        '--controller', controller.address,
        '--token-file', creds.layout.optimizer('reclaim').token,
        '--min-age', '1',
        '--rate', '1G',
        '--every', '600000',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    opt.stdout!.on('data', (x) => (out += x));
    opt.stderr!.on('data', (x) => (err += x));
    try {
      await waitFor('the optimizer following the records', () => /following damon\.records\.act-opt\.>/.test(err), 15_000);
      await sessionOn('act-opt', [e.pid], workload);
      await waitFor('the optimizer to page the range out', () => /optimizer: done action/.test(out), 30_000, 100);
      assert.match(out, new RegExp(`optimizer: ask pageout 0x${e.start.toString(16)}-0x[0-9a-f]+ \\([0-9.]+ MiB, cold [0-9.]+ s\\) on ${HOST}:${e.pid} of session act-opt`));
      assert.match(out, /optimizer: done action \S+ on act-node:\d+: 8\.0 MiB eligible in 1 range\(s\), 0 B clipped, 8\.0 MiB paged out/);
      assert.equal(await e.residentPages(), 0, 'paged out');
    } finally {
      opt.kill('SIGTERM');
      await new Promise((r) => opt.once('exit', r));
      await unary(operator, 'turnOff', { id: 'act-opt' }).catch(() => undefined);
    }
    assert.doesNotMatch(out + err, /refused/, 'nothing was refused');
  });
});
