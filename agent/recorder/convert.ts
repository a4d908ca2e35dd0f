// `damon-fleet convert IN OUT`: rewrites a result file in another format, for the tool
// that reads it: damo 2.0.1 reads binary, damo 3.x json_compressed.
import { parseArgs } from 'node:util';
import { existsSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { readResultFile, type ResultFileContents, type ResultRecord } from '../records/result-reader.js';
import { openResultWriter } from '../records/result-writer.js';
import {
  ResultFileError, formatFromFileName, maxNrAccessesOf, validateIntervals, type ResultIntervals,
} from '../records/result-format.js';
import type { AggregationRecord } from '../records/record.js';
import { estimateAges, type AgedRegion } from '../records/age-estimate.js';
import { RESULT_FORMATS, SchemaError, parseAttrsText, resultFileFormat, type ResultFormatName } from '../../common/session-schema.js';
import { OptionError, parseDurationUs } from '../../common/cli-values.js';
import { quoted } from '../../common/log.js';

const USAGE = `usage: damon-fleet convert IN OUT [--format F] [--attrs "S A U MIN MAX" | --sample D --aggr D [--update D]]

Reads a result file of any format and writes it as another.

  --format F      binary (DAMON's format v2), binary_v0, json, json_compressed
                  (default from OUT's name: *.json -> json, *.json.zlib -> json_compressed,
                  anything else binary). damo 2.0.1 reads binary; damo 3.x reads
                  json_compressed, and json only where \`file\` calls it "JSON data" (file
                  5.35-5.41, and files up to 1 MiB): damo picks its parser by that string.
  --attrs, --sample, --aggr, --update
                  the monitoring intervals, for an IN that stores none (binary) written
                  as JSON, which stores them; DAMON's attrs text or durations (5ms, 100ms)

Binary files store times on the recording's clock (0 = the first record's start) and no
region ages: converted to JSON, their times stay on that clock and ages are estimated the
way DAMON ages regions. Converted to binary, times are moved to that clock.
An IN that ends in a cut snapshot is converted up to it, with a warning. OUT must not exist.
`;

class UsageError extends Error {}

interface ConvertOptions {
  input: string;
  output: string;
  format: ResultFormatName;
  /** From the options; null when none were given. */
  intervals: ResultIntervals | null;
}

function parseOptions(argv: string[]): ConvertOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      format: { type: 'string' },
      attrs: { type: 'string' },
      sample: { type: 'string' },
      aggr: { type: 'string' },
      update: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) throw new UsageError('');
  if (positionals.length !== 2) throw new UsageError('give an input file and an output file');
  const [input, output] = positionals as [string, string];
  if (resolve(input) === resolve(output)) throw new UsageError('the output must be another file than the input');
  let format: ResultFormatName;
  if (values.format !== undefined) {
    if (!(RESULT_FORMATS as readonly string[]).includes(values.format)) {
      throw new UsageError(`--format: unknown format ${quoted(values.format)} (${RESULT_FORMATS.join(', ')})`);
    }
    format = values.format as ResultFormatName;
  } else {
    format = formatFromFileName(output);
  }
  let intervals: ResultIntervals | null = null;
  if (values.attrs !== undefined) {
    if (values.sample !== undefined || values.aggr !== undefined || values.update !== undefined) {
      throw new UsageError('give the intervals either as --attrs or as --sample/--aggr/--update, not both');
    }
    const a = parseAttrsText(values.attrs);
    intervals = { sampleUs: a.samplingUs, aggrUs: a.aggregationUs, opsUpdateUs: a.updateUs };
  } else if (values.sample !== undefined || values.aggr !== undefined || values.update !== undefined) {
    if (values.sample === undefined || values.aggr === undefined) throw new UsageError('--sample and --aggr go together');
    const sampleUs = parseDurationUs('--sample', values.sample);
    const aggrUs = parseDurationUs('--aggr', values.aggr);
    intervals = { sampleUs, aggrUs, opsUpdateUs: values.update !== undefined ? parseDurationUs('--update', values.update) : aggrUs * 10 };
  }
  if (intervals !== null) {
    try {
      intervals = validateIntervals('--attrs', intervals);
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^--attrs: /, 'intervals: '));
    }
  }
  return { input, output, format, intervals };
}

/** The intervals to write with: the file's, or the options' for a file that stores none. */
function intervalsFor(o: ConvertOptions, c: ResultFileContents, jsonOut: boolean): ResultIntervals {
  const stored = c.format === 'binary' ? null : c.intervals;
  if (stored === null && c.snapshots.some((s) => s.records.some((r) => r.maxNrAccesses !== null && c.format !== 'binary'))) {
    throw new UsageError(`${o.input}: its targets were recorded with different intervals; a result file holds one set`);
  }
  if (stored !== null) {
    const i = o.intervals;
    if (i !== null && (i.sampleUs !== stored.sampleUs || i.aggrUs !== stored.aggrUs || i.opsUpdateUs !== stored.opsUpdateUs)) {
      throw new UsageError(
        `${o.input} stores its intervals (${stored.sampleUs}/${stored.aggrUs}/${stored.opsUpdateUs} us); ` +
        'the options give others: leave them out',
      );
    }
    return stored;
  }
  if (o.intervals !== null) return o.intervals;
  if (jsonOut) {
    throw new UsageError(
      `${o.input} is a ${c.format} result file, which stores no monitoring intervals, and ${o.format} stores them: ` +
      'give them with --attrs "S A U MIN MAX" or --sample D --aggr D [--update D]',
    );
  }
  // binary to binary: nothing stores intervals; the writer's consistency check needs one set
  return { sampleUs: 5000, aggrUs: 100_000, opsUpdateUs: 1_000_000 };
}

/** The records of one snapshot, complete for the writers: start times, ages, maxNrAccesses. */
function completed(
  records: readonly ResultRecord[],
  intervals: ResultIntervals,
  lastRegions: Map<number, AgedRegion[]>,
): AggregationRecord[] {
  const maxNr = maxNrAccessesOf(intervals);
  return records.map((r) => {
    const known = r.regions.every((g) => g.age !== null);
    const regions = known
      ? r.regions.map((g) => ({ start: g.start, end: g.end, nrAccesses: g.nrAccesses, age: g.age! }))
      : estimateAges(r.regions, lastRegions.get(r.targetId) ?? null, maxNr);
    lastRegions.set(r.targetId, regions);
    return {
      targetId: r.targetId,
      startNs: r.startNs ?? r.endNs - BigInt(intervals.aggrUs) * 1000n,
      endNs: r.endNs,
      maxNrAccesses: maxNr,
      regions,
    };
  });
}

export async function convert(o: ConvertOptions, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  if (existsSync(o.output)) {
    err.write(`damon-fleet convert: ${o.output} exists; convert writes a new file (remove it or name another)\n`);
    return 1;
  }
  const { format, version } = resultFileFormat(o.format);
  const jsonOut = format !== 'binary';
  const c = await readResultFile(o.input, { partial: true, ...(o.intervals && { intervals: o.intervals }) });
  const intervals = intervalsFor(o, c, jsonOut);
  if (c.problem !== null) {
    err.write(`damon-fleet convert: warning: ${o.input}: ${c.problem.message}; converting the ${c.snapshots.length} snapshot(s) before it\n`);
  }
  if (c.snapshots.length === 0) {
    err.write(`damon-fleet convert: ${o.input} holds no snapshot; nothing to convert\n`);
    return 1;
  }
  const writer = await openResultWriter(o.output, {
    format, version, intervals,
    rewriteIntervalMs: 2 ** 31, // one document, written at close
  });
  const lastRegions = new Map<number, AgedRegion[]>();
  let k = 0;
  try {
    for (; k < c.snapshots.length; k++) await writer.writeSnapshot(completed(c.snapshots[k]!.records, intervals, lastRegions));
    await writer.close();
  } catch (e) {
    await writer.close().catch(() => undefined);
    rmSync(o.output, { force: true });
    const at = k < c.snapshots.length ? ` (snapshot ${k} of ${o.input})` : '';
    err.write(`damon-fleet convert: ${(e as Error).message}${at}; nothing written\n`);
    return 1;
  }
  const ages = c.format === 'binary' && jsonOut ? '; region ages estimated (the binary format stores none)' : '';
  const clock = jsonOut && c.format === 'binary'
    ? '; times on the binary file\'s recording clock'
    : !jsonOut ? '; times on the recording clock (0 = first start)' : '';
  out.write(
    `${o.input} (${c.format}${c.version !== null ? ` version ${c.version}` : ''}) -> ${o.output} (${o.format}): ` +
    `${c.snapshots.length} snapshot(s)${clock}${ages}\n`,
  );
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let o: ConvertOptions;
  try {
    o = parseOptions(argv);
  } catch (e) {
    if (e instanceof UsageError && e.message === '') {
      process.stdout.write(USAGE);
      return 0;
    }
    const usage = e instanceof UsageError || e instanceof OptionError || e instanceof SchemaError ||
      (typeof (e as { code?: unknown }).code === 'string' && String((e as { code: string }).code).startsWith('ERR_PARSE_ARGS'));
    process.stderr.write(`damon-fleet convert: ${(e as Error).message}\n${usage ? USAGE : ''}`);
    return usage ? 2 : 1;
  }
  try {
    return await convert(o, process.stdout, process.stderr);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`damon-fleet convert: ${e.message}\n`);
      return 2;
    }
    if (e instanceof ResultFileError) {
      process.stderr.write(`damon-fleet convert: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
