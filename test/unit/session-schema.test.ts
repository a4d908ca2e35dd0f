// The session schema: exact numbers and their bounds, result paths, workloads, targets,
// excerpts in messages, and the worst cases its limits allow measured against what carries
// them (NATS's 1 MiB max_payload, gRPC's 4 MiB messages).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { presetWorkloadJson } from '../../agent/ops/synthetic-presets.js';
import {
  MAX_HOSTS_PER_SESSION,
  MAX_INTERVALS_GOAL_AGGRS,
  MAX_INTERVAL_US,
  MAX_NR_REGIONS,
  MAX_RESULT_NAME_BYTES,
  MAX_RESULT_PATH_BYTES,
  MAX_STATUS_MESSAGE_CHARS,
  MAX_SYNTHETIC_WORKLOAD_BYTES,
  MAX_TARGETS_PER_SESSION,
  SchemaError,
  attrsFromMessage,
  attrsFromText,
  toProtoAttrs,
  checkOperations,
  checkResultPath,
  checkSessionId,
  checkTargets,
  parseAttrsText,
  resultFileFormat,
  statusMessage,
} from '../../common/session-schema.js';
import { specFor, statusFrom } from '../../controller/lifecycle.js';
import { decodeStoredSession, toProtoSession, type StoredSession } from '../../controller/session-model.js';
import {
  AggregationRecord,
  ApplySessionRequest,
  ApplySessionResponse,
  GetSessionRequest,
  Session,
  TargetState,
  type Attributes,
} from '../../gen/damon/v1/damon.js';
import { encodePlainRecord, encodeRecord } from '../../common/record-wire.js';
import { MAX_QUOTA_MS, MAX_SCHEMES_PER_SESSION, MAX_SCHEME_BYTES } from '../../common/scheme-schema.js';
import { SchemeAction, WatermarkMetric, type HostSchemeStats, type Scheme } from '../../gen/damon/v1/damon.js';

const { INVALID_ARGUMENT, RESOURCE_EXHAUSTED } = grpc.status;
const MiB = 1024 * 1024;
/** NATS's default max_payload, less room for the headers a message carries. */
const NATS_BUDGET = MiB - 4096;
const GRPC_LIMIT = 4 * MiB;

function refuses(fn: () => unknown, field: string, re: RegExp, code = INVALID_ARGUMENT): SchemaError {
  let caught: unknown;
  assert.throws(fn, (e: unknown) => ((caught = e), true));
  assert.ok(caught instanceof SchemaError, `not a SchemaError: ${String(caught)}`);
  assert.equal(caught.field, field);
  assert.equal(caught.code, code, caught.message);
  assert.match(caught.message, re);
  return caught;
}

const msg = (p: Partial<Attributes>): Attributes => ({
  samplingIntervalUs: 0n, aggregationIntervalUs: 0n, updateIntervalUs: 0n, minNrRegions: 0, maxNrRegions: 0, resultFile: '', resultFormat: '', schemes: [], ...p,
});

test('attrs text: numbers parsed exactly, refused "too large" with the bound, never rounded', () => {
  refuses(() => parseAttrsText('5000 100000 1000000 10 4294967296'), 'max_nr_regions', new RegExp(`too large: at most ${MAX_NR_REGIONS}, got 4294967296`));
  refuses(() => parseAttrsText('5000 100000 1000000 10 20001'), 'max_nr_regions', /too large: at most 20000/);
  refuses(() => parseAttrsText('5000 100000 100000000000000000000 10 100'), 'update_interval_us', /too large: at most 86400000000, got 100000000000000000000/);
  // 2^53 + 1 is not a double: it must be refused as what it is, not as 2^53.
  refuses(() => parseAttrsText('5000 9007199254740993 1000000 10 100'), 'aggregation_interval_us', /got 9007199254740993$/);
  refuses(() => parseAttrsText(`5000 100000 ${'9'.repeat(5000)} 10 100`), 'update_interval_us', /got 9{24}…$/);
  const a = parseAttrsText(`1 ${MAX_INTERVAL_US} ${MAX_INTERVAL_US} 3 ${MAX_NR_REGIONS} /damon.data`);
  assert.deepEqual([a.aggregationUs, a.maxNrRegions, a.resultFile], [MAX_INTERVAL_US, MAX_NR_REGIONS, '/damon.data']);
  refuses(() => parseAttrsText('5000 100000 1000000 10 1e3'), 'max_nr_regions', /not a non-negative integer: "1e3"/);
});

test('attrs message: wire values bounded the same way; 0 takes the default', () => {
  refuses(() => attrsFromMessage(msg({ maxNrRegions: 4294967295 })), 'max_nr_regions', /too large: at most 20000/);
  refuses(() => attrsFromMessage(msg({ samplingIntervalUs: (1n << 64n) - 1n })), 'sampling_interval_us', /too large: at most 86400000000, got 18446744073709551615$/);
  const a = attrsFromMessage(msg({ aggregationIntervalUs: BigInt(MAX_INTERVAL_US) }));
  assert.equal(a.aggregationUs, MAX_INTERVAL_US);
  assert.equal(a.samplingUs, 5000);
  assert.equal(a.resultFormat, 'binary');
  refuses(() => attrsFromMessage(msg({ resultFormat: 'xml\n'.repeat(100) })), 'result_format', /unknown format "xml\\x0axml.*…" \(formats: binary, binary_v0, json, json_compressed\)$/);
  assert.deepEqual(resultFileFormat('binary_v0'), { format: 'binary', version: 0 });
});

test('attrs message: an intervals goal is bounded at the door, naming its field; unset keeps the intervals fixed', () => {
  const goal = { accessBp: 400, aggrs: 3, minSampleUs: 1_000n, maxSampleUs: 200_000n };
  const a = attrsFromMessage(msg({ intervalsGoal: goal }));
  assert.deepEqual(a.intervalsGoal, { accessBp: 400, aggrs: 3, minSampleUs: 1_000, maxSampleUs: 200_000 });
  assert.deepEqual(toProtoAttrs(a).intervalsGoal, goal, 'round-trips through the stored form');
  assert.equal(attrsFromMessage(msg({})).intervalsGoal, null);
  assert.equal(toProtoAttrs(attrsFromMessage(msg({}))).intervalsGoal, undefined);
  const bad = (g: Partial<typeof goal>) => () => attrsFromMessage(msg({ intervalsGoal: { ...goal, ...g } }));
  refuses(bad({ accessBp: 0 }), 'intervals_goal.access_bp', /must be a positive integer, got 0/);
  refuses(bad({ accessBp: 10_001 }), 'intervals_goal.access_bp', /too large: at most 10000, got 10001/);
  refuses(bad({ aggrs: MAX_INTERVALS_GOAL_AGGRS + 1 }), 'intervals_goal.aggrs', /too large: at most 10000/);
  refuses(bad({ maxSampleUs: (1n << 64n) - 1n }), 'intervals_goal.max_sample_us', /too large: at most 86400000000, got 18446744073709551615$/);
  refuses(bad({ minSampleUs: 300_000n }), 'intervals_goal.max_sample_us', /at least min_sample_us \(200000 < 300000\)/);
  // 20 samples an aggregation: a sampling interval of a day would make aggregations of 20 days.
  refuses(bad({ maxSampleUs: BigInt(MAX_INTERVAL_US) }), 'intervals_goal.max_sample_us', /tuned aggregation interval would reach 1728000000000 us \(at most 86400000000\)/);
});

test('result paths: relative, no "..", no control characters, bounded; the session refuses what the agent would', () => {
  refuses(() => attrsFromText('5000 100000 1000000 10 1000 /damon.data', 'binary'), 'result_file', /absolute paths are refused/);
  refuses(() => attrsFromMessage(msg({ resultFile: 'a/../../x' })), 'result_file', /escapes the agent's data directory through '\.\.'/);
  refuses(() => attrsFromMessage(msg({ resultFile: 'a\nb' })), 'result_file', /contains a control character/);
  refuses(() => checkResultPath('d/'.repeat(16) + 'r'), 'result_file', /has 17 components; result paths have at most 16/);
  refuses(() => checkResultPath('.spool/state.json'), 'result_file', /\.spool in the data directory is the agent's record spool/);
  refuses(() => checkResultPath('./.spool/x/../y'), 'result_file', /record spool/);
  assert.equal(checkResultPath('a/.spool').relative, 'a/.spool');
  refuses(() => checkResultPath('x'.repeat(MAX_RESULT_NAME_BYTES + 1)), 'result_file', /component "x{64}…" is 256 bytes long; a component has at most 255/);
  const huge = refuses(() => checkResultPath('a/'.repeat(1_500_000) + 'r'), 'result_file', new RegExp(`is 3000001 bytes long; result paths have at most ${MAX_RESULT_PATH_BYTES}`));
  assert.ok(huge.message.length < 120, huge.message);
  assert.deepEqual(checkResultPath('runs/./r.data'), { dirs: ['runs'], name: 'r.data', relative: 'runs/r.data' });
});

test('operations and workloads: known names, presets or JSON workloads that parse, bounded', () => {
  refuses(() => checkOperations('vaddr', ''), 'operations', /unknown operations "vaddr" \(known: kdamond, page_idle, synthetic;/);
  refuses(() => checkOperations('synthetic', 'hot-cold'), 'synthetic_workload', /not a preset \(hot5, islands\) nor a valid JSON workload: synthetic_workload "hot-cold"/);
  refuses(() => checkOperations('synthetic', '{"targets": []}'), 'synthetic_workload', /workload targets: must list at least one target/);
  const big = '{' + ' '.repeat(MAX_SYNTHETIC_WORKLOAD_BYTES) + '}';
  refuses(() => checkOperations('synthetic', big), 'synthetic_workload', /is 16386 bytes long; at most 16384/);
  assert.deepEqual(checkOperations('synthetic', JSON.stringify(presetWorkloadJson('islands'))).operations, 'synthetic');
  assert.deepEqual(checkOperations('synthetic', 'hot5'), { operations: 'synthetic', syntheticWorkload: 'hot5' });
});

test('ids and targets: excerpts of what is wrong; too many targets or hosts is RESOURCE_EXHAUSTED', () => {
  const id = refuses(() => checkSessionId('x'.repeat(3_000_000)), 'id', /^id: must be 1 to 64 of \[A-Za-z0-9_-\], got "x{64}…"$/);
  assert.ok(id.message.length < 120);
  refuses(() => checkTargets([{ host: 'a\nb', pid: 1 }]), 'targets[0].host', /not a valid host name: "a\\x0ab"/);
  const many = Array.from({ length: MAX_TARGETS_PER_SESSION + 1 }, (_, i) => ({ host: 'h', pid: i + 1 }));
  refuses(() => checkTargets(many), 'targets', /513 targets; a session has at most 512 \(MAX_TARGETS_PER_SESSION\)/, RESOURCE_EXHAUSTED);
  const spread = Array.from({ length: MAX_HOSTS_PER_SESSION + 1 }, (_, i) => ({ host: `h${i}`, pid: 1 }));
  refuses(() => checkTargets(spread), 'targets', /501 hosts; a session spans at most 500 \(MAX_HOSTS_PER_SESSION\)/, RESOURCE_EXHAUSTED);
  assert.equal(checkTargets(many.slice(1)).length, MAX_TARGETS_PER_SESSION);
});

test('status messages are excerpts: control characters escaped, cut at the limit', () => {
  assert.equal(statusMessage('line 1\nline 2'), 'line 1\\x0aline 2');
  const long = statusMessage('x'.repeat(120_000));
  assert.equal(long, 'x'.repeat(MAX_STATUS_MESSAGE_CHARS) + '…');
});

// ---- worst cases -----------------------------------------------------------------------

/** A host name of 253 bytes (four labels), distinct per i. */
function longHost(i: number): string {
  const label = (c: string) => c + 'a'.repeat(62);
  return `${label(String.fromCharCode(97 + (i % 26)))}.${label(String.fromCharCode(97 + Math.floor(i / 26)))}.${label('b')}.${'c'.repeat(61)}`;
}

/**
 * Characters that grow most once stored: control characters (escaped as \x0a, then the
 * backslash by JSON: 5 bytes each); lone surrogates become U+FFFD (3 bytes).
 */
const WORST_MESSAGE = '\n'.repeat(MAX_STATUS_MESSAGE_CHARS * 2);

/** A scheme with every field at its largest (what grows its JSON and its message most). */
const WORST_SCHEME: Scheme = {
  accessPattern: { minSizeBytes: BigInt(MAX_SCHEME_BYTES), maxSizeBytes: BigInt(MAX_SCHEME_BYTES), minNrAccesses: 1, maxNrAccesses: 1, minAge: 2 ** 32 - 2, maxAge: 2 ** 32 - 2 },
  action: SchemeAction.SCHEME_ACTION_COLLAPSE, // the longest name synthetic operations apply
  quotas: { ms: BigInt(MAX_QUOTA_MS), bytes: BigInt(MAX_SCHEME_BYTES), resetIntervalMs: BigInt(MAX_QUOTA_MS), weightSizePermil: 1000, weightNrAccessesPermil: 1000, weightAgePermil: 1000 },
  watermarks: { metric: WatermarkMetric.WATERMARK_METRIC_FREE_MEM_RATE, intervalUs: BigInt(MAX_INTERVAL_US), highPermil: 1000, midPermil: 1000, lowPermil: 1000 },
  applyIntervalUs: BigInt(MAX_INTERVAL_US),
};

/** Every host's statistics of every scheme, each counter at its largest. */
function worstSchemeStats(s: StoredSession): HostSchemeStats[] {
  const top = (1n << 64n) - 1n;
  return [...new Set(s.targets.map((t) => t.host))].map((host) => ({
    host,
    schemes: s.attrs.schemes.map((_, i) => ({ scheme: i, nrTried: top, szTried: top, nrApplied: top, szApplied: top, qtExceeds: top, active: true })),
  }));
}

function worstSession(): StoredSession {
  const component = '"'.repeat(MAX_RESULT_NAME_BYTES);
  const resultFile = [component, component, component, component.slice(0, MAX_RESULT_PATH_BYTES - 3 * 256)].join('/');
  const preset = JSON.stringify(presetWorkloadJson('islands'));
  const syntheticWorkload = preset + '\n'.repeat(MAX_SYNTHETIC_WORKLOAD_BYTES - Buffer.byteLength(preset));
  const targets = checkTargets(Array.from({ length: MAX_TARGETS_PER_SESSION }, (_, i) => ({
    host: longHost(i % MAX_HOSTS_PER_SESSION),
    pid: 2 ** 31 - 1 - i,
  })));
  const attrs = attrsFromMessage(msg({
    samplingIntervalUs: BigInt(MAX_INTERVAL_US), aggregationIntervalUs: BigInt(MAX_INTERVAL_US), updateIntervalUs: BigInt(MAX_INTERVAL_US),
    minNrRegions: MAX_NR_REGIONS, maxNrRegions: MAX_NR_REGIONS, resultFile, resultFormat: 'json_compressed',
    schemes: Array.from({ length: MAX_SCHEMES_PER_SESSION }, () => WORST_SCHEME),
  }));
  checkOperations('synthetic', syntheticWorkload);
  const s: StoredSession = {
    id: 'x'.repeat(64),
    attrs,
    targets,
    state: 'on',
    operations: 'synthetic',
    syntheticWorkload,
    generation: Number.MAX_SAFE_INTEGER,
    targetStatus: [],
    offReason: 'no target left to monitor (256 exited, 256 failed)', // as long as any offReason
    createdAtMs: Number.MAX_SAFE_INTEGER,
    updatedAtMs: Number.MAX_SAFE_INTEGER,
  };
  // Statuses as the controller makes them from what agents report.
  const observedTargets = targets.map((t) => ({ pid: t.pid, state: TargetState.TARGET_STATE_PENDING, operations: WORST_MESSAGE, message: WORST_MESSAGE }));
  for (const host of new Set(targets.map((t) => t.host))) {
    s.targetStatus.push(...statusFrom(s, host, { sessionId: s.id, generation: 1n, running: true, targets: observedTargets, samplingIntervalMeanUs: 0, aggregationIntervalMeanUs: 0, recordsPublished: 0n, schemeStats: [] }, ''));
  }
  s.epoch = String(2n ** 64n - 1n); // the longest a leader's epoch can be
  return s;
}

test('worst case: a session entry fits one NATS message, its Session one gRPC message', (t) => {
  const s = worstSession();
  const json = JSON.stringify(s);
  const entry = Buffer.byteLength(json);
  const proto = Session.encode(toProtoSession(s, Number.MAX_SAFE_INTEGER, worstSchemeStats(s))).finish().length;
  t.diagnostic(`session entry ${entry} bytes (${(entry / MiB).toFixed(2)} MiB), Session message ${proto} bytes`);
  assert.ok(entry < NATS_BUDGET, `entry of ${entry} bytes`);
  assert.ok(proto < GRPC_LIMIT, `Session of ${proto} bytes`);
  assert.deepEqual(decodeStoredSession(s.id, json), s, 'the bucket accepts what the API may store');
  for (const epoch of [12, '-1', '1e3', '123456789012345678901']) {
    assert.throws(() => decodeStoredSession(s.id, JSON.stringify({ ...s, epoch })), /stored value breaks the session schema: epoch: not a decimal string/);
  }
  assert.ok(GetSessionRequest.encode({ id: s.id }).finish().length < 100);
});

test('worst case: one host\'s ApplySession request and answer fit gRPC messages', (t) => {
  const s = worstSession();
  s.targets = s.targets.map((x) => ({ ...x, host: s.targets[0].host })); // every pid on one host
  const request = ApplySessionRequest.encode({ epoch: 2n ** 64n - 1n, spec: specFor(s, s.targets[0].host, Number.MAX_SAFE_INTEGER) }).finish().length;
  const answer = ApplySessionResponse.encode({
    observed: {
      sessionId: s.id, generation: (1n << 64n) - 1n, running: true,
      samplingIntervalMeanUs: 1.5, aggregationIntervalMeanUs: 1.5, recordsPublished: (1n << 64n) - 1n, schemeStats: worstSchemeStats(s)[0].schemes,
      targets: s.targets.map((x) => ({ pid: x.pid, state: TargetState.TARGET_STATE_FAILED, operations: 'page_idle', message: statusMessage(WORST_MESSAGE) })),
    },
  }).finish().length;
  t.diagnostic(`ApplySession request ${request} bytes, answer ${answer} bytes`);
  assert.ok(request < GRPC_LIMIT && answer < GRPC_LIMIT);
});

test('worst case: one record of max_nr_regions regions fits one NATS message, packed or plain', (t) => {
  const u64 = (1n << 64n) - 1n;
  const rec: AggregationRecord = {
    sessionId: 'x'.repeat(64), host: longHost(0), pid: -(2 ** 31), startTimeNs: u64, endTimeNs: u64,
    maxNrAccesses: 2 ** 32 - 1, operations: 'page_idle', sequence: u64,
    agentInstance: 'f'.repeat(36), droppedBefore: u64, packed: undefined,
    // Descending, unaligned: every gap and size takes the longest varint.
    regions: Array.from({ length: MAX_NR_REGIONS }, (_, i) => ({ start: u64 - BigInt(2 * i + 1), end: u64 - BigInt(2 * i) - (1n << 62n), nrAccesses: 2 ** 32 - 1, age: 2 ** 32 - 1 })),
  };
  const plain = encodePlainRecord(rec).length;
  const packed = encodeRecord(rec).length;
  t.diagnostic(`record ${plain} bytes plain (${(plain / MiB).toFixed(2)} MiB), ${packed} packed`);
  assert.ok(plain < NATS_BUDGET, `plain record of ${plain} bytes`);
  assert.ok(packed < NATS_BUDGET, `packed record of ${packed} bytes`);
});
