// Schemes through the Controller service against a real NATS (and a fake agent): set and
// read as a message and in DAMON's text form, refused while on and with the line and field
// of a bad text, actions the session's operations cannot apply refused, the schemes carried
// to the agents in the spec, per-host statistics in GetSession as the agent reports them,
// and the CLI's `sessions schemes` (in process, as a person runs it) over the same API.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { main as sessionsMain } from '../../cli/sessions-main.js';
import { Exit } from '../../cli/exit-codes.js';
import { GetAttributesResponse, SchemeAction, WatermarkMetric, type Attributes, type Scheme } from '../../gen/damon/v1/damon.js';
import { startEnv, type ControllerEnv } from './support/controller-env.js';
import { rejectsWith, unary, waitFor } from './support/grpc-client.js';

const { INVALID_ARGUMENT, FAILED_PRECONDITION } = grpc.status;

const ATTRS: Attributes = {
  samplingIntervalUs: 5000n,
  aggregationIntervalUs: 100000n,
  updateIntervalUs: 1000000n,
  minNrRegions: 10,
  maxNrRegions: 1000,
  resultFile: '',
  resultFormat: '',
  schemes: [],
};

/** Proactive reclaim: page out regions of 4 KiB and more not accessed for 50 aggregations (5 s), 1 GiB a second at most. */
const RECLAIM: Scheme = {
  accessPattern: { minSizeBytes: 4096n, maxSizeBytes: undefined, minNrAccesses: 0, maxNrAccesses: 0, minAge: 50, maxAge: undefined },
  action: SchemeAction.SCHEME_ACTION_PAGEOUT,
  quotas: { ms: 0n, bytes: 1n << 30n, resetIntervalMs: 1000n, weightSizePermil: 0, weightNrAccessesPermil: 0, weightAgePermil: 1000 },
  watermarks: { metric: WatermarkMetric.WATERMARK_METRIC_FREE_MEM_RATE, intervalUs: 5_000_000n, highPermil: 500, midPermil: 400, lowPermil: 50 },
  applyIntervalUs: 0n,
};
const RECLAIM_TEXT = '4096 18446744073709551615 0 0 50 4294967295 2 0 1073741824 1000 0 0 1000 1 5000000 500 400 50\n';
const HOT_STAT_TEXT = '0 18446744073709551615 15 20 0 4294967295 5 0 0 0 0 0 0 0 0 0 0 0\n';

const create = (env: ControllerEnv, req: Partial<Parameters<typeof env.client.createSession>[0]>) =>
  unary(env.client, 'createSession', { id: '', attrs: undefined, attrsText: '', schemesText: '', targets: [], operations: '', syntheticWorkload: '', ...req });
const setAttrs = (env: ControllerEnv, id: string, a: { attrs?: Attributes; attrsText?: string; schemesText?: string; expectedRevision?: bigint }) =>
  unary(env.client, 'setAttributes', { id, attrs: undefined, attrsText: '', schemesText: '', expectedRevision: 0n, ...a });

/** Runs `damon-fleet sessions ARGS` in this process; its exit code and what it printed. */
async function cli(env: ControllerEnv, args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk, _enc, done) {
        append(chunk.toString());
        done();
      },
    });
  const io = { out: sink((s) => (out += s)), err: sink((s) => (err += s)) } as unknown as Parameters<typeof sessionsMain>[1];
  const code = await sessionsMain([...args, '--controller', env.controller.address, '--insecure'], io);
  return { code, out, err };
}

describe('controller schemes', () => {
  let env: ControllerEnv;
  let dir: string;
  before(async () => {
    env = await startEnv();
    await env.agent('host-a');
    dir = mkdtempSync(path.join(tmpdir(), 'schemes-it-'));
  });
  after(async () => {
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('as a message: GetSession and GetAttributes give them back, and in the text form', async () => {
    const s = await create(env, { attrs: { ...ATTRS, schemes: [RECLAIM] } });
    assert.equal(s.schemesText, RECLAIM_TEXT);
    assert.deepEqual(s.attrs!.schemes, [RECLAIM]);
    const a = await unary(env.client, 'getAttributes', { id: s.id });
    assert.equal(a.schemesText, RECLAIM_TEXT);
    assert.deepEqual(a.attrs!.schemes, [RECLAIM]);
    // The grpcurl view: the JSON mapping of the answer carries both forms.
    const json = GetAttributesResponse.toJSON(a) as { schemesText: string; attrs: { schemes: { action: string; accessPattern: { minAge: number } }[] } };
    assert.equal(json.schemesText, RECLAIM_TEXT);
    assert.equal(json.attrs.schemes[0].action, 'SCHEME_ACTION_PAGEOUT');
    assert.equal(json.attrs.schemes[0].accessPattern.minAge, 50);
  });

  test('as text beside attrs_text: the same schemes; comments and names accepted, the kernel form given back', async () => {
    const s = await create(env, {
      attrsText: '5000 100000 1000000 10 1000',
      schemesText: `# reclaim\n4096 18446744073709551615 0 0 50 4294967295 pageout 0 1073741824 1000 0 0 1000 free_mem_rate 5000000 500 400 50\n\n${HOT_STAT_TEXT}`,
    });
    assert.equal(s.schemesText, RECLAIM_TEXT + HOT_STAT_TEXT);
    assert.deepEqual(s.attrs!.schemes[0], RECLAIM);
    const cleared = await setAttrs(env, s.id, { attrsText: '5000 100000 1000000 10 1000' });
    assert.equal(cleared.schemesText, '', 'SetAttributes sets attributes and schemes together');
  });

  test('bad schemes: INVALID_ARGUMENT naming the line and field (text) or the field (message)', async () => {
    await rejectsWith(
      create(env, { attrsText: '5000 100000 1000000 10 1000', schemesText: `${HOT_STAT_TEXT}0 0 0 0 0 0 evict 0 0 0 0 0 0 0 0 0 0 0` }),
      INVALID_ARGUMENT,
      /^schemes_text: line 2, field 7 \(action\): unknown action "evict"/,
    );
    await rejectsWith(
      create(env, { attrsText: '10000 100000 1000000 10 1000', schemesText: HOT_STAT_TEXT }),
      INVALID_ARGUMENT,
      /^schemes_text: line 1, field 3 \(min_nr_accesses\): 15 can never match: an aggregation counts at most 10 accesses/,
    );
    await rejectsWith(create(env, { schemesText: HOT_STAT_TEXT }), INVALID_ARGUMENT, /^schemes_text: goes with attrs_text/);
    await rejectsWith(
      create(env, { attrs: { ...ATTRS, schemes: [{ ...RECLAIM, quotas: { ...RECLAIM.quotas!, resetIntervalMs: 0n } }] } }),
      INVALID_ARGUMENT,
      /^attrs\.schemes\[0\]\.quotas\.reset_interval_ms: required/,
    );
    const s = await create(env, {});
    await rejectsWith(setAttrs(env, s.id, { attrsText: '5000 100000 1000000 10 1000', schemesText: '1 2 3' }), INVALID_ARGUMENT, /^schemes_text: line 1: 3 fields/);
  });

  test('actions the explicit operations cannot apply are refused where the schemes or the operations are set', async () => {
    const hugepage: Scheme = { ...RECLAIM, action: SchemeAction.SCHEME_ACTION_HUGEPAGE, quotas: undefined, watermarks: undefined };
    await rejectsWith(
      create(env, { attrs: { ...ATTRS, schemes: [hugepage] }, operations: 'page_idle' }),
      INVALID_ARGUMENT,
      /^attrs\.schemes\[0\]\.action: operations "page_idle" cannot apply schemes\[0\] hugepage/,
    );
    const s = await create(env, { attrs: { ...ATTRS, schemes: [hugepage] } });
    await rejectsWith(
      unary(env.client, 'setTargets', { id: s.id, targets: [{ host: 'host-a', pid: 7 }], expectedRevision: 0n, operations: 'synthetic', syntheticWorkload: '' }),
      INVALID_ARGUMENT,
      /"synthetic" cannot apply schemes\[0\] hugepage/,
    );
    const collapse = { ...hugepage, action: SchemeAction.SCHEME_ACTION_COLLAPSE };
    const k = await create(env, { operations: 'kdamond' });
    await rejectsWith(setAttrs(env, k.id, { attrs: { ...ATTRS, schemes: [collapse] } }), INVALID_ARGUMENT, /operations "kdamond" cannot apply schemes\[0\] collapse/);
  });

  test('on: the schemes go to the agent in its spec, changing them is refused, and each host\'s statistics show in GetSession', async () => {
    const agent = env.agents[0];
    const s = await create(env, { attrs: { ...ATTRS, schemes: [RECLAIM] }, targets: [{ host: 'host-a', pid: 4242 }], operations: 'synthetic' });
    await unary(env.client, 'turnOn', { id: s.id });
    const spec = agent.applies(s.id).at(-1)!.spec;
    assert.deepEqual(spec.attrs!.schemes, [RECLAIM]);
    await rejectsWith(setAttrs(env, s.id, { attrs: { ...ATTRS, schemes: [] } }), FAILED_PRECONDITION, /is on: turn it off before changing its attributes/);
    await rejectsWith(setAttrs(env, s.id, { attrsText: '5000 100000 1000000 10 1000', schemesText: HOT_STAT_TEXT }), FAILED_PRECONDITION, /is on/);
    const cliOn = await cli(env, ['schemes', s.id, HOT_STAT_TEXT]);
    assert.equal(cliOn.code, Exit.Precondition, cliOn.err);
    assert.match(cliOn.err, /is on: turn it off/);

    // The agent reports statistics: they reach GetSession with its next state.
    const stats = { scheme: 0, nrTried: 12n, szTried: 49152n, nrApplied: 10n, szApplied: 40960n, qtExceeds: 1n, active: true };
    agent.sessions.get(s.id)!.schemeStats = [stats];
    await waitFor('scheme statistics in GetSession', async () => (await unary(env.client, 'getSession', { id: s.id })).schemeStats.length > 0 || undefined, 20_000);
    const got = await unary(env.client, 'getSession', { id: s.id });
    assert.deepEqual(got.schemeStats, [{ host: 'host-a', schemes: [stats] }]);
    const shown = await cli(env, ['get', s.id]);
    assert.equal(shown.code, Exit.Ok, shown.err);
    assert.match(shown.out, /schemes +1 \(DAMON's text form/);
    assert.match(shown.out, /0: 4096 18446744073709551615 0 0 50 /);
    assert.match(shown.out, /host-a +0 +yes +12 +48\.0 KiB +10 +40\.0 KiB +1/);
    await unary(env.client, 'turnOff', { id: s.id });
    assert.deepEqual((await unary(env.client, 'getSession', { id: s.id })).schemeStats, [], 'no statistics while off');
  });

  test('CLI: sessions schemes reads and sets them, keeping the attributes; attrs keeps the schemes; bad text exits 2 naming line and field', async () => {
    const s = await create(env, { attrs: { ...ATTRS, resultFormat: 'json', intervalsGoal: { accessBp: 400, aggrs: 3, minSampleUs: 1000n, maxSampleUs: 10000n } } });
    const none = await cli(env, ['schemes', s.id]);
    assert.equal(none.code, Exit.Ok, none.err);
    assert.equal(none.out, 'no schemes\n');
    const file = path.join(dir, 'reclaim.schemes');
    writeFileSync(file, `# proactive reclaim\n${RECLAIM_TEXT}`);
    const set = await cli(env, ['schemes', s.id, '--file', file]);
    assert.equal(set.code, Exit.Ok, set.err);
    let cur = await unary(env.client, 'getSession', { id: s.id });
    assert.equal(cur.schemesText, RECLAIM_TEXT);
    assert.equal(cur.attrs!.resultFormat, 'json', 'the format is kept');
    assert.equal(cur.attrs!.intervalsGoal?.accessBp, 400, 'the intervals goal is kept');
    const read = await cli(env, ['schemes', s.id, '--json']);
    assert.equal((JSON.parse(read.out) as { schemesText: string }).schemesText, RECLAIM_TEXT);

    const attrs = await cli(env, ['attrs', s.id, '5000', '200000', '1000000', '10', '1000']);
    assert.equal(attrs.code, Exit.Ok, attrs.err);
    cur = await unary(env.client, 'getSession', { id: s.id });
    assert.equal(cur.attrsText, '5000 200000 1000000 10 1000');
    assert.equal(cur.schemesText, RECLAIM_TEXT, 'attrs keeps the schemes');

    const bad = await cli(env, ['schemes', s.id, `${RECLAIM_TEXT}0 0 0 0 0 0 9 0 0 0 0 0 0 0 0 0 0 0`]);
    assert.equal(bad.code, Exit.Usage);
    assert.match(bad.err, /schemes_text: line 2, field 7 \(action\): unknown action "9"/);
    const cleared = await cli(env, ['schemes', s.id, '']);
    assert.equal(cleared.code, Exit.Ok, cleared.err);
    assert.equal((await unary(env.client, 'getSession', { id: s.id })).schemesText, '');
  });
});
