// `damon-fleet record`: monitor local processes with the engine, write a result file and
// show a live summary. Works without any controller, agent or NATS.
import { parseArgs } from 'node:util';
import { ADJUST_MODES, DamonContext, type AdjustMode, type StopReason } from '../engine/context.js';
import { AttributeError, validateAttributes, type Attributes, type IntervalsGoal } from '../engine/attrs.js';
import { RESULT_FORMATS, SchemaError, parseAttrsText, resultFileFormat, type ResultFormatName } from '../../common/session-schema.js';
import type { Operations } from '../engine/operations.js';
import type { AggregationRecord } from '../records/record.js';
import { openResultWriter } from '../records/result-writer.js';
import type { ResultFormat, ResultWriter } from '../records/result-format.js';
import { PageIdleOperations } from '../ops/page-idle.js';
import { SyntheticOperations } from '../ops/synthetic.js';
import { loadWorkload, PRESET_NAMES } from '../ops/synthetic-presets.js';
import { LiveView } from './live-view.js';
import { OptionError, parseDurationUs } from '../../common/cli-values.js';

const USAGE = `usage: damon-fleet record (--pid PID ... | --ops synthetic --workload NAME|FILE) [options]

Monitors processes with DAMON's engine and writes one snapshot per aggregation interval.

  --pid PID              a process to monitor (repeat for several)
  --out FILE             result file (default damon.data); "" for none
  --format F             binary (DAMON's format v2; default), binary_v0, json, json_compressed
                         (default from the name: *.json -> json, *.json.zlib -> json_compressed);
                         damo 2.0.1 reads binary, damo 3 json_compressed, and json only where
                         \`file\` says "JSON data" (file 5.35-5.41; see docs/result-files.md)
  --attrs "S A U MIN MAX" DAMON's attrs text: sampling/aggregation/update intervals in us,
                         min/max number of regions (default "5000 100000 1000000 10 1000")
  --sample D --aggr D --update D   the intervals as durations (5ms, 100ms, 1s)
  --min-nr-regions N --max-nr-regions N
  --intervals-goal BP,AGGRS,MIN,MAX  tune the sampling interval every AGGRS aggregations so
                         that BP basis points of the possible access events are seen,
                         within MIN..MAX (durations); e.g. 400,3,1ms,100ms (Linux 6.15's
                         intervals_goal)
  --ops NAME             page_idle (default; needs CONFIG_IDLE_PAGE_TRACKING and root) or
                         synthetic (a SIMULATED address space; for demos and tests)
  --workload W           with --ops synthetic: a preset (${PRESET_NAMES.join(', ')}) or a JSON file
  --adjust MODE          how regions are split: refined (default) or kernel (the kernel's
                         own rule, e.g. to compare with the kernel's DAMON)
  --duration D           stop after D (default: until Ctrl-C or every target exited)
  --quiet                no live summary
`;

interface RecordOptions {
  attrs: Attributes;
  pids: number[];
  ops: Operations;
  out: string;
  /** Undefined: from the file name (see formatFromFileName). */
  format: ResultFormat | undefined;
  version: 0 | 2 | undefined;
  durationUs: number | undefined;
  quiet: boolean;
  adjust: AdjustMode;
}

class UsageError extends Error {}

function parseIntervalsGoal(v: string, int: (v: string, name: string) => number): IntervalsGoal {
  const parts = v.split(',');
  if (parts.length !== 4) throw new UsageError(`--intervals-goal: expected ACCESS_BP,AGGRS,MIN,MAX (e.g. 400,3,1ms,100ms), got "${v}"`);
  return {
    accessBp: int(parts[0], 'intervals-goal access_bp'),
    aggrs: int(parts[1], 'intervals-goal aggrs'),
    minSampleUs: parseDurationUs('--intervals-goal min', parts[2]),
    maxSampleUs: parseDurationUs('--intervals-goal max', parts[3]),
  };
}

function parseFormat(f: string | undefined): { format: ResultFormat | undefined; version: 0 | 2 | undefined } {
  if (f === undefined) return { format: undefined, version: undefined };
  if (!(RESULT_FORMATS as readonly string[]).includes(f)) {
    throw new UsageError(`--format: unknown format "${f}" (${RESULT_FORMATS.join(', ')})`);
  }
  return resultFileFormat(f as ResultFormatName);
}

function parseOptions(argv: string[]): RecordOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      pid: { type: 'string', multiple: true },
      out: { type: 'string' },
      format: { type: 'string' },
      attrs: { type: 'string' },
      sample: { type: 'string' },
      aggr: { type: 'string' },
      update: { type: 'string' },
      'min-nr-regions': { type: 'string' },
      'max-nr-regions': { type: 'string' },
      'intervals-goal': { type: 'string' },
      ops: { type: 'string' },
      workload: { type: 'string' },
      duration: { type: 'string' },
      adjust: { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) throw new UsageError('');

  let attrs = values.attrs !== undefined ? parseAttrsText(values.attrs) : validateAttributes({});
  const int = (v: string, name: string) => {
    if (!/^\d+$/.test(v)) throw new UsageError(`--${name}: not a non-negative integer: "${v}"`);
    return Number(v);
  };
  attrs = validateAttributes({
    ...attrs,
    ...(values.sample !== undefined && { samplingUs: parseDurationUs('--sample', values.sample) }),
    ...(values.aggr !== undefined && { aggregationUs: parseDurationUs('--aggr', values.aggr) }),
    ...(values.update !== undefined && { updateUs: parseDurationUs('--update', values.update) }),
    ...(values['min-nr-regions'] !== undefined && { minNrRegions: int(values['min-nr-regions'], 'min-nr-regions') }),
    ...(values['max-nr-regions'] !== undefined && { maxNrRegions: int(values['max-nr-regions'], 'max-nr-regions') }),
    ...(values['intervals-goal'] !== undefined && { intervalsGoal: parseIntervalsGoal(values['intervals-goal'], int) }),
  });

  const opsName = values.ops ?? 'page_idle';
  let ops: Operations;
  let pids = (values.pid ?? []).map((p) => {
    if (!/^\d+$/.test(p) || Number(p) <= 0) throw new UsageError(`--pid: not a process id: "${p}"`);
    return Number(p);
  });
  if (new Set(pids).size !== pids.length) throw new UsageError('--pid: the same pid is given twice');
  if (opsName === 'synthetic') {
    if (values.workload === undefined) throw new UsageError(`--ops synthetic needs --workload (${PRESET_NAMES.join(', ')} or a JSON file)`);
    if (pids.length > 0) throw new UsageError('--pid does not go with --ops synthetic: the workload declares its simulated targets');
    const synthetic = new SyntheticOperations(loadWorkload(values.workload));
    pids = synthetic.targetIds();
    ops = synthetic;
  } else if (opsName === 'page_idle') {
    if (values.workload !== undefined) throw new UsageError('--workload goes with --ops synthetic only');
    if (pids.length === 0) throw new UsageError('give at least one --pid to monitor');
    const probe = PageIdleOperations.probe();
    if (!probe.usable) throw new Error(`${probe.message}\n(on a host without page_idle, try --ops synthetic --workload hot5 for a simulated demo)`);
    ops = new PageIdleOperations();
  } else {
    throw new UsageError(`--ops: unknown operations "${opsName}" (page_idle, synthetic)`);
  }

  const adjust = (values.adjust ?? 'refined') as AdjustMode;
  if (!ADJUST_MODES.includes(adjust)) throw new UsageError(`--adjust: unknown mode "${values.adjust}" (${ADJUST_MODES.join(', ')})`);
  const { format, version } = parseFormat(values.format);
  const out = values.out ?? 'damon.data';
  return {
    attrs,
    pids,
    ops,
    out,
    format,
    version,
    durationUs: values.duration !== undefined ? parseDurationUs('--duration', values.duration) : undefined,
    quiet: values.quiet ?? false,
    adjust,
  };
}

/** Runs the recorder until the duration passes, Ctrl-C, or every target exits. */
export async function record(o: RecordOptions, stdout: NodeJS.WriteStream = process.stdout): Promise<number> {
  const writer: ResultWriter | null = o.out
    ? await openResultWriter(o.out, {
        format: o.format,
        version: o.version,
        intervals: { sampleUs: o.attrs.samplingUs, aggrUs: o.attrs.aggregationUs, opsUpdateUs: o.attrs.updateUs },
      })
    : null;
  const ctx = new DamonContext({ attrs: o.attrs, targetIds: o.pids, ops: o.ops, adjust: o.adjust });
  const view = o.quiet
    ? null
    : new LiveView(stdout, {
        tty: stdout.isTTY === true,
        columns: stdout.columns ?? 80,
        minIntervalMs: stdout.isTTY ? 250 : 1000,
        opsName: o.ops.name + (o.ops.name === 'synthetic' ? ' (simulated)' : ''),
        outPath: o.out,
      });
  const log = (line: string) => (view ? view.note(line) : process.stderr.write(line + '\n'));

  // Records of one aggregation are emitted back to back within one step; a microtask
  // gathers them into one snapshot. Writes are chained so snapshots land in order.
  let pending: AggregationRecord[] = [];
  let writes: Promise<void> = Promise.resolve();
  let writeError: Error | null = null;
  let snapshots = 0;
  ctx.on('aggregate', (rec) => {
    if (pending.length === 0) {
      queueMicrotask(() => {
        const snapshot = pending;
        pending = [];
        view?.update(snapshot, ctx.drift());
        if (!writer || writeError) return;
        writes = writes.then(() => writer.writeSnapshot(snapshot)).then(
          () => { snapshots++; },
          (e: Error) => {
            writeError = e;
            void ctx.stop();
          },
        );
      });
    }
    pending.push(rec);
  });
  ctx.on('targetExited', (id) => log(`target ${id} exited`));

  const stopped = new Promise<{ reason: StopReason; error?: Error }>((resolve) =>
    ctx.once('stopped', (reason, error) => resolve({ reason, error })),
  );
  const onSignal = () => void ctx.stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const timer = o.durationUs !== undefined ? setTimeout(onSignal, o.durationUs / 1000) : null;

  ctx.start();
  const { reason, error } = await stopped;
  if (timer) clearTimeout(timer);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  await new Promise<void>((r) => setImmediate(r)); // let the last gathered snapshot queue its write
  await writes;
  await writer?.close();

  const where = writer ? `, ${snapshots} snapshots in ${o.out}` : '';
  if (writeError) {
    log(`damon-fleet record: writing ${o.out} failed: ${(writeError as Error).message}; the ${snapshots} snapshots written before stay readable`);
    return 1;
  }
  if (reason === 'error') {
    log(`damon-fleet record: monitoring stopped: ${error?.message ?? 'unknown error'}${where}`);
    return 1;
  }
  log(`damon-fleet record: ${reason === 'no-targets' ? 'every target exited' : 'stopped'}${where}`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let o: RecordOptions;
  try {
    o = parseOptions(argv);
  } catch (e) {
    if (e instanceof UsageError && e.message === '') {
      process.stdout.write(USAGE);
      return 0;
    }
    const msg = e instanceof AttributeError || e instanceof SchemaError ? `invalid attribute ${e.message}` : (e as Error).message;
    process.stderr.write(`damon-fleet record: ${msg}\n`);
    const code = (e as { code?: unknown }).code; // a SchemaError's is a gRPC status number
    const parseError = typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
    if (parseError) process.stderr.write(USAGE);
    return parseError || e instanceof UsageError || e instanceof OptionError || e instanceof AttributeError || e instanceof SchemaError ? 2 : 1;
  }
  try {
    return await record(o);
  } catch (e) {
    process.stderr.write(`damon-fleet record: ${(e as Error).message}\n`);
    return 1;
  }
}
