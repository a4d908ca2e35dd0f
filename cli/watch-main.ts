// `damon-fleet watch SESSION`: a live view of a session per target, redrawn in place on a
// terminal (resizes redraw; Ctrl-C leaves it as it was), plain snapshots on anything else,
// JSON lines with --json. Records come from WatchRecords or, with a reader's NATS seed,
// from NATS; the session (targets, their state, the configured intervals) from the controller.
import type { WriteStream } from 'node:tty';
import { parseDurationMs } from '../common/cli-values.js';
import { CREDENTIAL_OPTIONS } from '../common/credential-options.js';
import { checkNatsUrls, natsTlsOption } from '../common/nats.js';
import { errorMessage, quoted } from '../common/log.js';
import { HOST_RE } from '../common/subjects.js';
import { checkSessionId } from '../common/session-schema.js';
import { CONNECTION_OPTIONS, CONNECTION_USAGE, parseConnection, type ConnectionValues } from './connection-options.js';
import { ControllerConnection } from './controller-connection.js';
import { CliError, Exit, UsageError } from './exit-codes.js';
import { parseCommandLine, processIo, runCommand, type Io } from './command.js';
import { NatsFeed, WatchRecordsFeed, type RecordFeed } from './record-feed.js';
import { TerminalScreen } from './terminal-screen.js';
import { WatchModel } from './watch-model.js';
import { renderWatch, snapshotJson } from './watch-render.js';

export const USAGE = `usage: damon-fleet watch SESSION [options]

  A live view of a session, per target: its state, regions, working set, the sampling
  drift (the real aggregation interval against the configured one), a heat strip of the
  monitored address space and its hottest and coldest ranges. On a terminal it is redrawn
  in place (Ctrl-C leaves); otherwise a plain snapshot is printed every --interval.

  --host NAME                 only this host's targets
  --replay                    first the records NATS still holds, then live ones
  --interval DURATION         between two views (default 1s)
  --count N                   stop after N views (default: until Ctrl-C)
  --top N                     hottest and coldest ranges per target (default 3)
  --plain                     plain snapshots even on a terminal
  --screen                    redraw in place even when not on a terminal (to record it)
  --json                      one JSON line per view (see docs/cli.md)
  --nats URL[,URL...]         read records from NATS instead of WatchRecords, with
  --nats-nkey FILE            a reader's NATS seed (readers/<name>/nats.nk)
  --nats-ca FILE --nats-cert FILE --nats-key FILE
                              TLS to NATS

${CONNECTION_USAGE}

Exit codes: 0 stopped (Ctrl-C, --count), 1 failure, 2 usage, 3 no such session (or it was
deleted), 5 credential refused, 6 no controller (or NATS) available.`;

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  host: { type: 'string' },
  replay: { type: 'boolean', default: false },
  interval: { type: 'string', default: '1s' },
  count: { type: 'string' },
  top: { type: 'string', default: '3' },
  plain: { type: 'boolean', default: false },
  screen: { type: 'boolean', default: false },
  nats: { type: 'string' },
  'nats-nkey': CREDENTIAL_OPTIONS['nats-nkey'],
  'nats-ca': CREDENTIAL_OPTIONS['nats-ca'],
  'nats-cert': CREDENTIAL_OPTIONS['nats-cert'],
  'nats-key': CREDENTIAL_OPTIONS['nats-key'],
} as const;

type Values = ConnectionValues & {
  host?: string;
  replay?: boolean;
  interval?: string;
  count?: string;
  top?: string;
  plain?: boolean;
  screen?: boolean;
  nats?: string;
  'nats-nkey'?: string;
  'nats-ca'?: string;
  'nats-cert'?: string;
  'nats-key'?: string;
};

/** How often the session (targets' states) is asked again, at most. */
const SESSION_REFRESH_MS = 2000;

function intOption(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min || Number(text) > max) throw new UsageError(`--${name} ${quoted(text)}: expected an integer from ${min} to ${max}`);
  return Number(text);
}

interface WatchPlan {
  sessionId: string;
  host?: string;
  replay: boolean;
  intervalMs: number;
  count?: number;
  top: number;
  mode: 'screen' | 'plain' | 'json';
  nats?: { servers: string[]; nkeyFile?: string; tls?: ReturnType<typeof natsTlsOption> };
}

function plan(positionals: string[], v: Values, io: Io): WatchPlan {
  if (positionals.length === 0) throw new UsageError('a session ID is required');
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${quoted(positionals[1])}`);
  try {
    checkSessionId(positionals[0], 'SESSION');
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
  if (v.host !== undefined && !HOST_RE.test(v.host)) throw new UsageError(`--host ${quoted(v.host)}: not a host name`);
  if ([v.plain, v.screen, v.json].filter(Boolean).length > 1) throw new UsageError('--plain, --screen and --json: one at most');
  const natsGiven = v['nats-nkey'] !== undefined || v['nats-ca'] !== undefined || v['nats-cert'] !== undefined;
  if (natsGiven && v.nats === undefined) throw new UsageError('--nats-nkey, --nats-ca, --nats-cert go with --nats URL');
  let nats: WatchPlan['nats'];
  if (v.nats !== undefined) {
    try {
      const servers = checkNatsUrls(v.nats.split(',').map((s) => s.trim()).filter(Boolean));
      if (servers.length === 0) throw new Error('--nats: at least one URL');
      nats = { servers, nkeyFile: v['nats-nkey'], tls: natsTlsOption(v['nats-ca'], v['nats-cert'], v['nats-key']) };
    } catch (err) {
      throw new UsageError(errorMessage(err));
    }
  }
  const tty = Boolean((io.out as WriteStream).isTTY);
  return {
    sessionId: positionals[0],
    host: v.host,
    replay: v.replay ?? false,
    intervalMs: parseDurationMs('--interval', v.interval ?? '1s'),
    count: intOption('count', v.count, 1, 1e9),
    top: intOption('top', v.top, 0, 100) ?? 3,
    mode: v.json ? 'json' : v.screen || (tty && !v.plain) ? 'screen' : 'plain',
    nats,
  };
}

/** Columns for plain output: the terminal's, $COLUMNS, else 100. */
function plainWidth(io: Io): number {
  return (io.out as WriteStream).columns || Number(process.env.COLUMNS) || 100;
}

async function watch(p: WatchPlan, conn: ControllerConnection, io: Io, timeoutMs: number): Promise<number> {
  const model = new WatchModel(p.sessionId, p.host);
  model.setSession(await conn.call('getSession', { id: p.sessionId }));
  const feed: RecordFeed = p.nats
    ? new NatsFeed({ ...p.nats, connectTimeoutMs: timeoutMs }, p)
    : new WatchRecordsFeed(conn, p);
  let feedProblem = '';
  let sessionProblem = '';
  const screen = p.mode === 'screen' ? new TerminalScreen(io.out as WriteStream) : undefined;
  let views = 0;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => (finish = resolve));
  let failure: unknown;

  const draw = () => {
    model.problem = [sessionProblem, feedProblem].filter(Boolean).join('; ');
    const now = Date.now();
    if (p.mode === 'json') {
      io.out.write(JSON.stringify(snapshotJson(model, p.top, now)) + '\n');
    } else {
      const width = screen ? screen.columns : plainWidth(io);
      const lines = renderWatch(model, { width, top: p.top, source: feed.source, now });
      if (screen) screen.draw(lines);
      else io.out.write(`${views > 0 ? '\n' : ''}${lines.join('\n')}\n`);
    }
    views++;
    if (p.count !== undefined && views >= p.count) finish(Exit.Ok);
  };

  let lastRefresh = Date.now();
  const refreshSession = async () => {
    if (Date.now() - lastRefresh < SESSION_REFRESH_MS) return;
    lastRefresh = Date.now();
    try {
      model.setSession(await conn.call('getSession', { id: p.sessionId }));
      sessionProblem = '';
    } catch (err) {
      if (err instanceof CliError && err.exitCode === Exit.NotFound) {
        failure = new CliError(Exit.NotFound, `session ${quoted(p.sessionId)} was deleted`);
        finish(Exit.NotFound);
      } else {
        sessionProblem = `session: ${errorMessage(err)}`;
      }
    }
  };

  const onSignal = () => finish(Exit.Ok);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  screen?.enter(() => draw());
  const timer = setInterval(() => {
    draw();
    void refreshSession();
  }, p.intervalMs);
  const feeding = feed
    .run({ record: (r) => model.addRecord(r, Date.now()), problem: (t) => (feedProblem = t) })
    .then(
      () => finish(Exit.Ok),
      (err) => {
        failure = err;
        finish(err instanceof CliError ? err.exitCode : Exit.Failure);
      },
    );
  try {
    draw();
    const code = await done;
    if (failure) throw failure;
    return code;
  } finally {
    clearInterval(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    feed.stop();
    screen?.restore();
    await feeding;
  }
}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  return runCommand('watch', USAGE, argv, io, async () => {
    const { values, positionals } = parseCommandLine(argv, OPTIONS);
    const v = values as Values;
    const p = plan(positionals, v, io);
    const c = parseConnection(v);
    const conn = new ControllerConnection(c);
    try {
      return await watch(p, conn, io, c.timeoutMs);
    } finally {
      conn.close();
      // A NATS connection still trying its first server cannot be cancelled: do not let it hold the process.
      if (io === processIo) setTimeout(() => process.exit(), 1000).unref();
    }
  });
}

