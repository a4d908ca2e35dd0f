// `damon-fleet report heatmap|wss|summary`: where the records come from (a result file, or
// a session's records replayed from NATS by time range), what to draw, where to write it.
// Exit codes: 0 done, 1 the input could not be read or holds no records, 2 bad options.
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { checkNatsUrls, natsTlsOption } from '../common/nats.js';
import { OptionError, parseDurationUs } from '../common/cli-values.js';
import { errorMessage } from '../common/log.js';
import { loadSessionRecords } from './nats-replay.js';
import { ReportError, loadResultFile, parseTimeBound, pickTarget, type ReportInput, type TimeWindow } from './report-input.js';
import { drawHeatmap } from './heatmap.js';
import { svgToPng } from './render.js';
import { DAMO_WSS_DEFAULTS, wssReport, wssWindows, type WssOptions } from './wss.js';
import { wssJson, wssTable, wssWindowsTable } from './wss-text.js';
import { drawWss } from './wss-plot.js';
import { summaryText } from './summary.js';

export const SUBCOMMANDS = ['heatmap', 'wss', 'summary'] as const;
export type Subcommand = (typeof SUBCOMMANDS)[number];

const SOURCE_HELP = `
Records from (one of):
  FILE | --file FILE      a result file (binary, json, json_compressed)
  --session ID            a session's records, replayed from NATS's DAMON_RECORDS stream
    --nats URL[,URL]      (default nats://127.0.0.1:4222)
    --nats-nkey FILE      a reader's seed (damon-fleet credentials --reader NAME writes
                          readers/NAME/nats.nk); --nats-ca/--nats-cert/--nats-key for TLS
  --since T --until T     only records that end between the two (either may be left out):
                          an ISO time (2026-12-03T15:00:00Z) or a duration before now (10m, 2h)
  --target T              one target: "0" or "target 0" (file), "HOST pid PID" (session)
`;

export const USAGES: Record<Subcommand, string> = {
  heatmap: `usage: damon-fleet report heatmap (FILE | --file FILE | --session ID ...) [--out PREFIX] [--format png,svg]

Draws each target's access heatmap: address across (low to high), time down (first record
at the top); unmapped gaps between mapped spans are cut out and marked with their size;
colour = access frequency (nr_accesses / max nr_accesses), legend at the right. (damo's
gnuplot heatmap draws time across and address up.) Writes PREFIX-<target>.png and .svg
(default PREFIX: heatmap) and prints their paths.
  --format png,svg        which to write (default both)
  --width N --height N    plot size in pixels, one cell per pixel (default 760 x 480)
${SOURCE_HELP}`,
  wss: `usage: damon-fleet report wss (FILE | --file FILE | --session ID ...) [options]

Working set size percentiles per target, computed as damo's \`wss\` (same option names
and defaults): a region counts when its nr_accesses >= --acc_thres and its size >=
--sz_thres. (damon-fleet record's and report FILE's working-set column counts a region
accessed in at least half the samples: --acc_thres 10 at the default 5 ms / 100 ms.)
  --acc_thres N[,N...]    default 1; several give one column each
  --sz_thres B            default 1
  --exclude_samples K     the first K snapshots of each target are left out (default 20)
  --range S,E,STEP        percentiles S, S+STEP, ... below E (default 0,101,25)
  --every D               also the percentiles per window of D (10s, 1m, ...) over time
  --raw_number            sizes in bytes
  --json                  the figures (and each snapshot's size) as JSON
  --plot PREFIX           also draw PREFIX-<target>.png and .svg: size over time, percentiles
  --format png,svg        which pictures --plot writes (default both)
${SOURCE_HELP}`,
  summary: `usage: damon-fleet report summary (FILE | --file FILE | --session ID ...)

A few lines per target for a terminal: time and size monitored, mapped spans, working
set percentiles, the hottest ranges, a heat strip of the address space.
${SOURCE_HELP}`,
};

const SOURCE_OPTIONS = {
  file: { type: 'string' },
  session: { type: 'string' },
  nats: { type: 'string', default: 'nats://127.0.0.1:4222' },
  'nats-nkey': { type: 'string' },
  'nats-ca': { type: 'string' },
  'nats-cert': { type: 'string' },
  'nats-key': { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  target: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const OPTIONS = {
  heatmap: { ...SOURCE_OPTIONS, out: { type: 'string', default: 'heatmap' }, format: { type: 'string', default: 'png,svg' }, width: { type: 'string' }, height: { type: 'string' } },
  wss: {
    ...SOURCE_OPTIONS,
    acc_thres: { type: 'string' },
    sz_thres: { type: 'string' },
    exclude_samples: { type: 'string' },
    range: { type: 'string' },
    raw_number: { type: 'boolean' },
    json: { type: 'boolean' },
    plot: { type: 'string' },
    format: { type: 'string', default: 'png,svg' },
    every: { type: 'string' },
  },
  summary: SOURCE_OPTIONS,
} as const;

/** A bad option: usage and exit 2. */
class UsageError extends Error {}

type Values = Record<string, string | boolean | undefined>;

function int(option: string, v: string | undefined, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${option} ${v}: expected an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}`);
  }
  return n;
}

async function loadInput(values: Values, positionals: string[]): Promise<ReportInput> {
  const file = (values.file as string | undefined) ?? positionals[0];
  if (positionals.length > 1 || (values.file !== undefined && positionals.length > 0)) throw new UsageError('give one result file');
  const session = values.session as string | undefined;
  if ((file === undefined) === (session === undefined)) throw new UsageError('give a result file (FILE or --file FILE) or --session ID, one of them');
  const window: TimeWindow = {};
  if (values.since !== undefined) window.sinceNs = parseTimeBound('--since', values.since as string);
  if (values.until !== undefined) window.untilNs = parseTimeBound('--until', values.until as string);
  if (window.sinceNs !== undefined && window.untilNs !== undefined && window.sinceNs > window.untilNs) {
    throw new UsageError('--since is after --until');
  }
  if (file !== undefined) {
    for (const o of ['nats-nkey', 'nats-ca', 'nats-cert', 'nats-key']) {
      if (values[o] !== undefined) throw new UsageError(`--${o} goes with --session, not with a file`);
    }
    return loadResultFile(file, window);
  }
  let tls;
  try {
    tls = natsTlsOption(values['nats-ca'] as string, values['nats-cert'] as string, values['nats-key'] as string);
  } catch (e) {
    throw new UsageError(errorMessage(e));
  }
  const servers = (values.nats as string).split(',').map((s) => s.trim()).filter(Boolean);
  if (servers.length === 0) throw new UsageError('--nats: at least one URL');
  try {
    checkNatsUrls(servers);
  } catch (e) {
    throw new UsageError(errorMessage(e));
  }
  return loadSessionRecords({ servers, nkeyFile: values['nats-nkey'] as string | undefined, tls, sessionId: session!, window });
}

function wssOptions(values: Values): WssOptions {
  const acc = values.acc_thres === undefined ? DAMO_WSS_DEFAULTS.accThres : (values.acc_thres as string).split(',').map((s) => int('acc_thres', s, 1, 0));
  let percentiles = DAMO_WSS_DEFAULTS.percentiles;
  if (values.range !== undefined) {
    const parts = (values.range as string).split(',');
    if (parts.length !== 3) throw new UsageError(`--range ${values.range}: expected START,END,STEP (damo's --range 0 101 25 is 0,101,25)`);
    const [s, e, step] = parts.map((x) => int('range', x, 0, 0)) as [number, number, number];
    if (step < 1 || e <= s || e > 101) throw new UsageError(`--range ${values.range}: STEP >= 1 and START < END <= 101`);
    percentiles = [];
    for (let p = s; p < e; p += step) percentiles.push(p);
  }
  return {
    accThres: [...acc],
    szThres: int('sz_thres', values.sz_thres as string | undefined, DAMO_WSS_DEFAULTS.szThres, 0),
    excludeSamples: int('exclude_samples', values.exclude_samples as string | undefined, DAMO_WSS_DEFAULTS.excludeSamples, 0),
    percentiles: [...percentiles],
  };
}

async function writeOut(path: string, data: string | Buffer): Promise<void> {
  try {
    await writeFile(path, data);
  } catch (e) {
    throw new ReportError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : errorMessage(e)}`);
  }
}

/** Writes PREFIX-<slug>.svg and/or .png of one picture; returns the paths. */
async function writePicture(prefix: string, slug: string, svg: string, formats: Set<string>): Promise<string[]> {
  const out: string[] = [];
  if (formats.has('svg')) {
    await writeOut(`${prefix}-${slug}.svg`, svg);
    out.push(`${prefix}-${slug}.svg`);
  }
  if (formats.has('png')) {
    let png: Buffer;
    try {
      png = svgToPng(svg);
    } catch (e) {
      throw new ReportError(`cannot draw ${prefix}-${slug}.png: ${errorMessage(e)}`);
    }
    await writeOut(`${prefix}-${slug}.png`, png);
    out.push(`${prefix}-${slug}.png`);
  }
  return out;
}

async function run(cmd: Subcommand, values: Values, positionals: string[]): Promise<number> {
  const formats = new Set(String(values.format ?? 'png,svg').split(',').map((s) => s.trim()));
  for (const f of formats) if (f !== 'png' && f !== 'svg') throw new UsageError(`--format ${values.format}: png, svg or png,svg`);
  const opts = cmd === 'wss' ? wssOptions(values) : undefined;
  const everyNs = values.every === undefined ? undefined : BigInt(parseDurationUs('--every', values.every as string)) * 1000n;
  // One cell per pixel: bounded so that a typo cannot ask for gigabytes.
  const plotWidth = int('width', values.width as string | undefined, 760, 100, 8000);
  const plotHeight = int('height', values.height as string | undefined, 480, 50, 8000);
  const input = await loadInput(values, positionals);
  for (const w of input.warnings.slice(0, 5)) process.stderr.write(`warning: ${w}\n`);
  if (input.warnings.length > 5) process.stderr.write(`warning: and ${input.warnings.length - 5} more like these\n`);
  if (input.targets.length === 0) {
    throw new ReportError(`no records in ${input.source}${values.since !== undefined || values.until !== undefined ? ' within --since/--until' : ''}`);
  }
  const targets = pickTarget(input, values.target as string | undefined);
  const out = process.stdout;
  if (cmd === 'heatmap') {
    for (const t of targets) {
      let svg: string;
      try {
        svg = drawHeatmap(t, { plotWidth, plotHeight, source: input.source }).svg;
      } catch (e) {
        if (e instanceof RangeError) throw new UsageError(`${t.label}: ${e.message}; give a larger --width`);
        throw e;
      }
      for (const p of await writePicture(values.out as string, t.slug, svg, formats)) out.write(`${p}\n`);
    }
  } else if (cmd === 'wss') {
    const reports = targets.map((t) => wssReport(t, opts!));
    const raw = Boolean(values.raw_number);
    const windows = everyNs === undefined ? undefined : (r: (typeof reports)[number]) => wssWindows(r, opts!, everyNs);
    if (values.json) out.write(JSON.stringify(wssJson(reports, opts!, windows), null, 2) + '\n');
    else {
      out.write(reports.map((r) => wssTable(r, opts!, raw) + (windows && r.endNs.length ? '\n' + wssWindowsTable(r, opts!, windows(r), raw) : '')).join('\n'));
    }
    if (values.plot !== undefined) {
      for (const r of reports) {
        if (r.endNs.length === 0) continue;
        for (const p of await writePicture(values.plot as string, r.target.slug, drawWss(r, opts!, input.source), formats)) {
          process.stderr.write(`wrote ${p}\n`);
        }
      }
    }
  } else {
    out.write(`${input.source}\n`);
    const width = Math.max(40, Math.min(100, (process.stdout.columns ?? 110) - 48));
    for (const t of targets) out.write(summaryText(t, width));
  }
  return 0;
}

/** Runs `report <cmd> ...argv`; returns the exit code. */
export async function runReportCommand(cmd: Subcommand, argv: string[]): Promise<number> {
  const usage = USAGES[cmd];
  try {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS[cmd], strict: true });
    if (values.help) {
      process.stdout.write(usage);
      return 0;
    }
    return await run(cmd, values as Values, positionals);
  } catch (e) {
    if (e instanceof ReportError) {
      process.stderr.write(`damon-fleet report ${cmd}: ${e.message}\n`);
      return 1;
    }
    if (e instanceof UsageError || e instanceof OptionError || (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`damon-fleet report ${cmd}: ${(e as Error).message}\n${usage}`);
      return 2;
    }
    throw e;
  }
}
