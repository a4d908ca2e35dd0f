// Optimizers' actions, piece by piece: the request checks, the rate limits and their
// RetryInfo, and the agent's side (clipping to the mappings, dry run, errno -> status, the
// event) with process_madvise and /proc replaced.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { RpcError } from '../../common/grpc-server.js';
import { actionByName, actionName, checkActionRequest } from '../../common/actions.js';
import { retryDelayMs, retryMetadata } from '../../common/retry-info.js';
import { ActionRateLimiter, TokenBucket } from '../../controller/action-limits.js';
import { ActionRunner, advisableMappings, clipToMappings, type MadviseOps } from '../../agent/daemon/action-runner.js';
import { MadviseError, type ProcessHandle } from '../../agent/ops/process-madvise.js';
import { ActionEvent, SchemeAction, TargetState, type ActionRequest, type ObservedSession } from '../../gen/damon/v1/damon.js';
import { silentLogger } from '../../common/log.js';

const req = (o: Partial<ActionRequest> = {}): ActionRequest => ({
  sessionId: 's1',
  host: 'h1',
  pid: 100,
  start: 0x10000n,
  end: 0x20000n,
  action: SchemeAction.SCHEME_ACTION_PAGEOUT,
  dryRun: false,
  ...o,
});

function refused(fn: () => unknown, code: grpc.status, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof RpcError && e.code === code && re.test(e.message));
}

test('requests: well formed, page aligned, not empty, an action process_madvise takes', () => {
  assert.equal(checkActionRequest(req()), 'pageout');
  assert.equal(checkActionRequest(req({ action: SchemeAction.SCHEME_ACTION_COLLAPSE })), 'collapse');
  const bad = grpc.status.INVALID_ARGUMENT;
  refused(() => checkActionRequest(req({ sessionId: 'a b' })), bad, /session_id: not a session id/);
  refused(() => checkActionRequest(req({ host: 'bad_host' })), bad, /host: not a host name/);
  refused(() => checkActionRequest(req({ pid: 0 })), bad, /pid: must be a positive process id/);
  refused(() => checkActionRequest(req({ start: 0x10001n })), bad, /0x10001-0x20000: start and end must be page aligned/);
  refused(() => checkActionRequest(req({ start: 0x20000n })), bad, /end must be above start/);
  refused(() => checkActionRequest(req({ action: SchemeAction.SCHEME_ACTION_STAT })), bad, /stat only counts/);
  refused(() => checkActionRequest(req({ action: SchemeAction.SCHEME_ACTION_HUGEPAGE })), bad, /hugepage is not possible through process_madvise/);
  refused(() => checkActionRequest(req({ action: SchemeAction.SCHEME_ACTION_NOHUGEPAGE })), bad, /nohugepage is not possible/);
  refused(() => checkActionRequest(req({ action: SchemeAction.SCHEME_ACTION_UNSPECIFIED })), bad, /action: required; one of willneed, cold, pageout, collapse/);
  assert.equal(actionName(SchemeAction.SCHEME_ACTION_PAGEOUT), 'pageout');
  assert.equal(actionByName('Cold'), SchemeAction.SCHEME_ACTION_COLD);
  assert.equal(actionByName('unspecified'), undefined);
  assert.equal(actionByName('nonsense'), undefined);
});

test('token bucket: a burst, then the rate; the wait until the next token', () => {
  const b = new TokenBucket(2, 3, 0);
  for (let i = 0; i < 3; i++) {
    assert.equal(b.waitMs(0), 0);
    b.take(0);
  }
  assert.equal(b.waitMs(0), 500);
  assert.equal(b.waitMs(250), 250);
  assert.equal(b.waitMs(500), 0);
});

test('rate limits per caller and per target: RESOURCE_EXHAUSTED with when to retry, in the message and as RetryInfo', () => {
  let now = 0;
  const l = new ActionRateLimiter({ callerPerS: 10, callerBurst: 4, targetPerS: 1, targetBurst: 2 }, () => now);
  const t1 = { host: 'h1', pid: 1 };
  l.admit('optimizer "a"', t1);
  l.admit('optimizer "b"', t1);
  // The target's bucket is empty whoever asks.
  assert.throws(
    () => l.admit('optimizer "c"', t1),
    (e: unknown) => {
      const r = e as RpcError;
      assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(r.message, /rate limit: 1 actions a second \(bursts of 2\) on h1:1; retry in 1000 ms/);
      assert.equal(retryDelayMs(r.metadata), 1000);
      return true;
    },
  );
  // The caller's own bucket, across targets; a refusal takes no token from the other bucket.
  for (let pid = 2; pid <= 4; pid++) l.admit('optimizer "a"', { host: 'h1', pid });
  assert.throws(() => l.admit('optimizer "a"', { host: 'h1', pid: 5 }), /optimizer "a" may request 10 actions a second \(bursts of 4\); retry in 100 ms/);
  now = 100;
  l.admit('optimizer "a"', { host: 'h1', pid: 5 });
  now = 1000;
  l.admit('optimizer "c"', t1);
});

test('RetryInfo: what is written is read back; no details, no delay', () => {
  for (const ms of [1, 999, 1000, 1500, 120_000]) {
    assert.equal(retryDelayMs(retryMetadata(grpc.status.RESOURCE_EXHAUSTED, 'x', ms)), ms);
  }
  assert.equal(retryDelayMs(new grpc.Metadata()), undefined);
  const junk = new grpc.Metadata();
  junk.set('grpc-status-details-bin', Buffer.from([0xff, 0xff, 0xff]));
  assert.equal(retryDelayMs(junk), undefined);
});

const MAPS = [
  '00010000-00018000 r--p 00000000 08:01 1 /usr/bin/x',
  '00018000-0001c000 r-xp 00008000 08:01 1 /usr/bin/x',
  '00030000-00040000 rw-s 00000000 08:01 2 /tmp/data',
  '7ffc0000-7ffc2000 r--p 00000000 00:00 0 [vvar]',
  '7ffc2000-7ffc4000 r-xp 00000000 00:00 0 [vdso]',
  'ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]',
].join('\n');

test('clipping: to the mappings, adjacent ones joined, the rest counted; the vDSO is never advisable', () => {
  const maps = advisableMappings(MAPS);
  assert.deepEqual(maps, [
    { start: 0x10000, end: 0x18000 },
    { start: 0x18000, end: 0x1c000 },
    { start: 0x30000, end: 0x40000 },
  ]);
  const c = clipToMappings({ start: 0x0n, end: 0x38000n }, maps);
  assert.deepEqual(c.ranges, [{ start: 0x10000n, end: 0x1c000n }, { start: 0x30000n, end: 0x38000n }]);
  assert.equal(c.eligible, 0xc000n + 0x8000n);
  assert.equal(c.clipped, 0x38000n - c.eligible);
  const none = clipToMappings({ start: 0x7ffc0000n, end: 0x7ffc4000n }, maps);
  assert.deepEqual(none, { ranges: [], eligible: 0n, clipped: 0x4000n });
});

interface Fake {
  runner: ActionRunner;
  advised: { ranges: { start: number; end: number }[]; advice: string }[];
  events: { subject: string; event: ActionEvent; msgID: string }[];
  opened: number[];
  closed: number;
}

function fake(o: { fail?: MadviseError; openFail?: MadviseError; supported?: boolean; state?: TargetState; maps?: string } = {}): Fake {
  const f: Fake = { runner: undefined as never, advised: [], events: [], opened: [], closed: 0 };
  const ops: MadviseOps = {
    openProcess(pid: number): ProcessHandle {
      if (o.openFail) throw o.openFail;
      f.opened.push(pid);
      return { pid, close: () => void f.closed++ };
    },
    processMadvise(_h, ranges, advice) {
      if (o.fail) throw o.fail;
      f.advised.push({ ranges: [...ranges], advice });
      return { bytes: ranges.reduce((n, r) => n + r.end - r.start, 0) };
    },
    adviceSupported: () => o.supported ?? true,
  };
  const observed: ObservedSession[] = [
    {
      sessionId: 's1',
      generation: 1n,
      running: true,
      targets: [{ pid: 100, state: o.state ?? TargetState.TARGET_STATE_RUNNING, operations: 'page_idle', message: '' }],
      samplingIntervalMeanUs: 0,
      aggregationIntervalMeanUs: 0,
      recordsPublished: 0n,
      schemeStats: [],
    },
  ];
  f.runner = new ActionRunner({ host: 'h1', instanceId: 'inst', observed: () => observed, log: silentLogger as never, madvise: ops, readMaps: () => o.maps ?? MAPS, now: () => 1234 });
  f.runner.setSink({
    publish: async (subject, payload, opts) => {
      f.events.push({ subject, event: ActionEvent.decode(payload), msgID: opts.msgID });
    },
  });
  return f;
}

const apply = (f: Fake, r: Partial<ActionRequest> = {}) => f.runner.apply({ request: req({ start: 0n, end: 0x38000n, ...r }), actionId: 'act-1', requestedBy: 'optimizer "o"', epoch: 0n });

test('agent: the clipped ranges are advised, the answer and the event say what was done', async () => {
  const f = fake();
  const r = await apply(f);
  assert.deepEqual(f.advised, [{ ranges: [{ start: 0x10000, end: 0x1c000 }, { start: 0x30000, end: 0x38000 }], advice: 'pageout' }]);
  assert.equal(r.bytesEligible, 0x14000n);
  assert.equal(r.bytesApplied, 0x14000n);
  assert.equal(r.bytesClipped, 0x38000n - 0x14000n);
  assert.equal(r.error, '');
  assert.equal(r.requestedBy, 'optimizer "o"');
  assert.equal(f.closed, 1, 'the pidfd is closed');
  assert.equal(f.events.length, 1);
  assert.equal(f.events[0].subject, 'damon.actions.s1.h1');
  assert.equal(f.events[0].msgID, 'act-1');
  assert.deepEqual(f.events[0].event, { result: r, agentInstance: 'inst' });
});

test('agent: a dry run does everything but the advice', async () => {
  const f = fake();
  const r = await apply(f, { dryRun: true });
  assert.deepEqual(f.advised, []);
  assert.deepEqual(f.opened, [100]);
  assert.equal(r.bytesEligible, 0x14000n);
  assert.equal(r.bytesApplied, 0n);
  assert.equal(r.dryRun, true);
  assert.equal(f.events[0].event.result?.dryRun, true);
});

test('agent: a range with nothing mapped is answered, not refused, and says so', async () => {
  const f = fake();
  const r = await apply(f, { start: 0x100000n, end: 0x200000n });
  assert.deepEqual(f.advised, []);
  assert.equal(r.bytesClipped, 0x100000n);
  assert.match(r.message, /nothing of the range is mapped/);
});

test('agent: only running targets of a session it runs; never another host', async () => {
  await assert.rejects(apply(fake(), { sessionId: 's2' }), (e: RpcError) => e.code === grpc.status.NOT_FOUND && /session "s2" does not run on host "h1"/.test(e.message));
  await assert.rejects(apply(fake(), { pid: 101 }), (e: RpcError) => e.code === grpc.status.NOT_FOUND && /pid 101 is not a target of session "s1"/.test(e.message));
  await assert.rejects(apply(fake({ state: TargetState.TARGET_STATE_EXITED })), (e: RpcError) => e.code === grpc.status.NOT_FOUND && /process exited/.test(e.message));
  await assert.rejects(apply(fake(), { host: 'h2' }), (e: RpcError) => e.code === grpc.status.INVALID_ARGUMENT && /this agent is "h1"/.test(e.message));
});

test('agent: refusals of the kernel and the process are statuses, and events', async () => {
  const cases: [MadviseError, 'open' | 'advise', grpc.status, RegExp][] = [
    [new MadviseError('pidfd_open of process 100: ESRCH', 'ESRCH'), 'open', grpc.status.NOT_FOUND, /^process exited/],
    [new MadviseError('process_madvise: ESRCH', 'ESRCH'), 'advise', grpc.status.NOT_FOUND, /^process exited/],
    [new MadviseError('process_madvise: EPERM', 'EPERM', 0x1000), 'advise', grpc.status.FAILED_PRECONDITION, /CAP_SYS_NICE/],
    [new MadviseError('process_madvise: EINVAL', 'EINVAL'), 'advise', grpc.status.INVALID_ARGUMENT, /EINVAL: memory that advice cannot apply to/],
    [new MadviseError('process_madvise: ENOMEM', 'ENOMEM'), 'advise', grpc.status.ABORTED, /mappings changed/],
    [new MadviseError('no library', 'ENOLIB'), 'open', grpc.status.FAILED_PRECONDITION, /cannot advise processes/],
  ];
  for (const [err, where, code, re] of cases) {
    const f = fake(where === 'open' ? { openFail: err } : { fail: err });
    await assert.rejects(apply(f), (e: RpcError) => e.code === code && re.test(e.message), `${err.errno} at ${where}`);
    assert.equal(f.events.length, 1, `${err.errno}: an event`);
    const ev = f.events[0].event.result!;
    assert.equal(ev.error, grpc.status[code]);
    assert.match(ev.message, re);
    assert.equal(ev.bytesApplied, BigInt(err.bytesAdvised), 'what was advised before the refusal');
  }
  // A kernel without the advice.
  const f = fake({ supported: false });
  await assert.rejects(apply(f, { action: SchemeAction.SCHEME_ACTION_COLLAPSE }), (e: RpcError) => e.code === grpc.status.FAILED_PRECONDITION && /lacks process_madvise with collapse/.test(e.message));
  assert.equal(f.events[0].event.result?.error, 'FAILED_PRECONDITION');
});

test('agent: a NATS that does not take the event does not undo the answer', async () => {
  const f = fake();
  f.runner.setSink({ publish: async () => Promise.reject(new Error('no responders')) });
  const r = await apply(f);
  assert.equal(r.bytesApplied, 0x14000n);
});
