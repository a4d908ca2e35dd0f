// `damon-fleet sessions`: monitoring sessions on the controller, with DAMON's interface
// (attrs in its text form, targets as pids, on/off) plus get, list, delete.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { Attributes, Session, QuarantinedSession, GetAttributesResponse, type ListSessionsResponse, type Target } from '../gen/damon/v1/damon.js';
import { SchemaError, attrsFromMessage, attrsFromText, checkTargets, toProtoAttrs } from '../common/session-schema.js';
import { toProtoScheme } from '../common/scheme-schema.js';
import { schemesFromText } from '../common/scheme-text.js';
import { quoted } from '../common/log.js';
import { CONNECTION_OPTIONS, CONNECTION_USAGE, parseConnection, type ConnectionValues } from './connection-options.js';
import { ControllerConnection } from './controller-connection.js';
import { CliError, Exit, UsageError } from './exit-codes.js';
import { parseCommandLine, print, printJson, processIo, runCommand, type Io } from './command.js';
import { attrsExtras, schemesText, sessionText, sessionsTable, targetsTable } from './fleet-text.js';

export const USAGE = `usage: damon-fleet sessions <command> [options]

  create [ID] [--attrs "SAMPLING AGGREGATION UPDATE MIN MAX [RESULT_FILE]"] [--format F]
         [--targets HOST:PID[,HOST:PID...]] [--operations OPS] [--workload W]
         [--schemes-file F]
                          a new session, off (ID generated when not given)
  attrs ID                its attributes in DAMON's text form (as DAMON's attrs file)
  attrs ID SAMPLING AGGREGATION UPDATE MIN MAX [RESULT_FILE] [--format F] [--revision N]
                          sets them (only while off): intervals in microseconds, the
                          number of regions, a result file relative to the agents' data
                          directory; --format binary, binary_v0, json or json_compressed;
                          the schemes are kept
  schemes ID              its schemes in DAMON's text form (as dbgfs's schemes file), and
                          each host's statistics of them while on
  schemes ID TEXT | --file F [--revision N]
                          sets them (only while off): one scheme per line, '#' comments;
                          F "-" reads standard input; TEXT "" removes them (docs/schemes.md)
  targets ID              its targets, with each one's state
  targets ID HOST:PID... [--operations OPS] [--workload W] [--revision N]
                          sets them (only while off; keeps the operations unless given)
  on ID, off ID           starts / stops monitoring
  get ID                  the whole session
  list [--page-size N]    every session (paged through), and quarantined entries
  delete ID               (only while off)

  --operations OPS        kdamond, page_idle or synthetic (default: the best each host has)
  --workload W            with synthetic: a preset (hot5, islands) or a JSON workload
  --revision N            change it only if it is still at revision N (compare-and-set)

${CONNECTION_USAGE}

Exit codes: 0 ok, 1 failure, 2 usage or invalid request, 3 not found, 4 not possible in
the session's state (on while on, changed meanwhile), 5 credential refused or not
allowed, 6 no controller available. See docs/cli.md.`;

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  attrs: { type: 'string' },
  format: { type: 'string' },
  targets: { type: 'string', multiple: true },
  operations: { type: 'string' },
  workload: { type: 'string' },
  revision: { type: 'string' },
  'page-size': { type: 'string' },
  file: { type: 'string' },
  'schemes-file': { type: 'string' },
} as const;

type Values = ConnectionValues & {
  attrs?: string;
  format?: string;
  targets?: string[];
  operations?: string;
  workload?: string;
  revision?: string;
  'page-size'?: string;
  file?: string;
  'schemes-file'?: string;
};

/** A schema refusal found before calling: the same words the controller would answer with. */
function schemaUsage(what: string, err: unknown): never {
  if (err instanceof SchemaError) throw new UsageError(`${what}: ${err.message}`);
  throw err;
}

/** "HOST:PID" words (each may hold several, comma-separated), checked as the controller checks them. */
export function parseTargets(words: readonly string[]): Target[] {
  const targets = words
    .flatMap((w) => w.split(','))
    .filter((w) => w.trim() !== '')
    .map((w) => {
      const m = /^(.+):(\d{1,10})$/.exec(w.trim());
      if (!m) throw new UsageError(`target ${quoted(w)}: expected HOST:PID`);
      return { host: m[1], pid: Number(m[2]) };
    });
  try {
    return checkTargets(targets);
  } catch (err) {
    schemaUsage('bad targets', err);
  }
}

/**
 * Attributes from DAMON's text form, checked here as the controller checks them. With a
 * format they go as the API's message (the text form has none); without, as text, so the
 * session keeps its format.
 */
export function attrsRequest(text: string, format: string | undefined): { attrs: Attributes | undefined; attrsText: string; schemesText: string } {
  let parsed;
  try {
    parsed = attrsFromText(text, format ?? '');
  } catch (err) {
    schemaUsage(`bad attrs ${quoted(text)}`, err);
  }
  return format === undefined ? { attrs: undefined, attrsText: text.trim(), schemesText: '' } : { attrs: toProtoAttrs(parsed), attrsText: '', schemesText: '' };
}

function revisionOf(text: string | undefined): bigint {
  if (text === undefined) return 0n;
  if (!/^[1-9]\d{0,15}$/.test(text)) throw new UsageError(`--revision ${quoted(text)}: expected a positive integer`);
  return BigInt(text);
}

function pageSizeOf(text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^\d{1,4}$/.test(text) || Number(text) === 0) throw new UsageError(`--page-size ${quoted(text)}: expected a positive integer`);
  return Number(text);
}

/** Every session, page by page (page tokens as ListSessions gives them). */
async function listAll(conn: ControllerConnection, pageSize: number): Promise<{ sessions: Session[]; quarantined: QuarantinedSession[] }> {
  const sessions: Session[] = [];
  const quarantined: QuarantinedSession[] = [];
  let pageToken = '';
  do {
    const page: ListSessionsResponse = await conn.call('listSessions', { pageSize, pageToken });
    sessions.push(...page.sessions);
    quarantined.push(...page.quarantined);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return { sessions, quarantined };
}

/** How often a read-modify-write of targets is tried again when another client wrote between. */
const TARGETS_TRIES = 3;

async function setTargets(conn: ControllerConnection, id: string, targets: Target[], v: Values): Promise<Session> {
  const explicit = revisionOf(v.revision);
  if (v.workload !== undefined && v.operations === undefined) throw new UsageError('--workload goes with --operations synthetic');
  for (let attempt = 1; ; attempt++) {
    // SetTargets sets the operations too: keep the session's unless new ones are given.
    const cur = v.operations === undefined ? await conn.call('getSession', { id }) : undefined;
    const req = {
      id,
      targets,
      expectedRevision: explicit || (cur?.revision ?? 0n),
      operations: v.operations ?? cur!.operations,
      syntheticWorkload: v.operations === undefined ? cur!.syntheticWorkload : (v.workload ?? ''),
    };
    try {
      return await conn.call('setTargets', req);
    } catch (err) {
      const raced = err instanceof CliError && err.status === grpc.status[grpc.status.ABORTED] && cur !== undefined && explicit === 0n;
      if (!raced || attempt >= TARGETS_TRIES) throw err;
    }
  }
}

function one(positionals: string[], what: string): string {
  if (positionals.length === 0) throw new UsageError('a session ID is required');
  if (positionals.length > 1) throw new UsageError(`unexpected argument ${quoted(positionals[1])} (${what} takes one session ID)`);
  return positionals[0];
}

async function run(sub: string, args: string[], io: Io): Promise<number> {
  const { values: raw, positionals } = parseCommandLine(args, OPTIONS);
  const v = raw as Values;
  const onlyFor = (option: keyof Values, subs: string[]) => {
    if (v[option] !== undefined && !subs.includes(sub)) throw new UsageError(`--${option} does not go with ${sub}`);
  };
  onlyFor('attrs', ['create']);
  onlyFor('targets', ['create']);
  onlyFor('format', ['create', 'attrs']);
  onlyFor('operations', ['create', 'targets']);
  onlyFor('workload', ['create', 'targets']);
  onlyFor('revision', ['attrs', 'targets', 'schemes']);
  onlyFor('page-size', ['list']);
  onlyFor('file', ['schemes']);
  onlyFor('schemes-file', ['create']);
  // Arguments are checked before the connection, so a bad one fails the same with or without a controller.
  const conn = (): ControllerConnection => new ControllerConnection(parseConnection(v));
  const show = (s: Session) => (v.json ? printJson(io, Session.toJSON(s)) : print(io, sessionText(s)));

  switch (sub) {
    case 'create': {
      if (positionals.length > 1) throw new UsageError(`unexpected argument ${quoted(positionals[1])}`);
      const base = v.attrs !== undefined ? attrsRequest(v.attrs, v.format) : { attrs: v.format !== undefined ? defaultsWithFormat(v.format) : undefined, attrsText: '', schemesText: '' };
      const attrs = v['schemes-file'] !== undefined ? withSchemes(base, readText(v['schemes-file'])) : base;
      const targets = parseTargets(v.targets ?? []);
      if (v.workload !== undefined && v.operations === undefined) throw new UsageError('--workload goes with --operations synthetic');
      const c = conn();
      try {
        show(await c.call('createSession', { id: positionals[0] ?? '', ...attrs, targets, operations: v.operations ?? '', syntheticWorkload: v.workload ?? '' }));
      } finally {
        c.close();
      }
      return Exit.Ok;
    }
    case 'attrs': {
      if (positionals.length === 0) throw new UsageError('a session ID is required');
      const [id, ...words] = positionals;
      const c = conn();
      try {
        if (words.length === 0) {
          if (v.format !== undefined || v.revision !== undefined) throw new UsageError('attrs ID: --format and --revision go with new attributes');
          const a: GetAttributesResponse = await c.call('getAttributes', { id });
          if (v.json) printJson(io, GetAttributesResponse.toJSON(a));
          else print(io, [a.attrsText, ...attrsExtras(a.attrs)]);
        } else {
          const req = attrsRequest(words.join(' '), v.format);
          show(await setKeepingSchemes(c, id, req, revisionOf(v.revision)));
        }
      } finally {
        c.close();
      }
      return Exit.Ok;
    }
    case 'schemes': {
      if (positionals.length === 0) throw new UsageError('a session ID is required');
      if (positionals.length > 2) throw new UsageError(`unexpected argument ${quoted(positionals[2])} (give the schemes as one argument, or --file)`);
      const [id, text] = positionals;
      if (text !== undefined && v.file !== undefined) throw new UsageError('schemes ID: give the schemes as TEXT or --file, not both');
      const newText = text ?? (v.file !== undefined ? readText(v.file) : undefined);
      if (newText === undefined && v.revision !== undefined) throw new UsageError('schemes ID: --revision goes with new schemes');
      const c = conn();
      try {
        if (newText === undefined) {
          const sess = await c.call('getSession', { id });
          if (v.json) printJson(io, { schemesText: sess.schemesText, schemes: (Session.toJSON(sess) as { attrs?: { schemes?: unknown[] } }).attrs?.schemes ?? [], schemeStats: (Session.toJSON(sess) as { schemeStats?: unknown[] }).schemeStats ?? [] });
          else print(io, sess.schemesText === '' ? ['no schemes'] : schemesText(sess));
        } else {
          show(await setSchemes(c, id, newText, revisionOf(v.revision)));
        }
      } finally {
        c.close();
      }
      return Exit.Ok;
    }
    case 'targets': {
      if (positionals.length === 0) throw new UsageError('a session ID is required');
      const [id, ...words] = positionals;
      const targets = words.length > 0 ? parseTargets(words) : undefined;
      if (!targets && (v.operations !== undefined || v.workload !== undefined || v.revision !== undefined)) {
        throw new UsageError('targets ID: --operations, --workload and --revision go with new targets');
      }
      const c = conn();
      try {
        if (!targets) {
          const s = await c.call('getSession', { id });
          const j = Session.toJSON(s) as { targets?: unknown[]; targetStatus?: unknown[] };
          if (v.json) printJson(io, { targets: j.targets ?? [], targetStatus: j.targetStatus ?? [] });
          else print(io, s.targets.length ? targetsTable(s) : ['no targets']);
        } else {
          show(await setTargets(c, id, targets, v));
        }
      } finally {
        c.close();
      }
      return Exit.Ok;
    }
    case 'on':
    case 'off':
    case 'get': {
      const id = one(positionals, sub);
      const c = conn();
      try {
        show(await c.call(sub === 'on' ? 'turnOn' : sub === 'off' ? 'turnOff' : 'getSession', { id }));
      } finally {
        c.close();
      }
      return Exit.Ok;
    }
    case 'delete': {
      const id = one(positionals, sub);
      const c = conn();
      try {
        await c.call('deleteSession', { id });
      } finally {
        c.close();
      }
      if (v.json) printJson(io, { deleted: id });
      else print(io, [`session ${quoted(id)} deleted`]);
      return Exit.Ok;
    }
    case 'list': {
      if (positionals.length > 0) throw new UsageError(`list: unexpected argument ${quoted(positionals[0])}`);
      const pageSize = pageSizeOf(v['page-size']);
      const c = conn();
      try {
        const all = await listAll(c, pageSize);
        if (v.json) printJson(io, { sessions: all.sessions.map((s) => Session.toJSON(s)), quarantined: all.quarantined.map((q) => QuarantinedSession.toJSON(q)) });
        else print(io, sessionsTable(all.sessions, all.quarantined));
      } finally {
        c.close();
      }
      return Exit.Ok;
    }
    default:
      throw new UsageError(`unknown command ${quoted(sub)} (create, attrs, schemes, targets, on, off, get, list, delete)`);
  }
}

type AttrsRequest = { attrs: Attributes | undefined; attrsText: string; schemesText: string };

/** A file's text ("-": standard input); a file that cannot be read is a usage error. */
function readText(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${quoted(file)}: ${(err as Error).message}`);
  }
}

/**
 * A request's attributes with these schemes, checked here against its intervals as the
 * controller checks them: as schemes_text beside attrs_text, or in the attrs message.
 */
function withSchemes(given: AttrsRequest, text: string): AttrsRequest {
  // No attributes given: DAMON's defaults, as the controller would take them.
  const req = given.attrs === undefined && given.attrsText === '' ? { ...given, attrs: defaultsWithFormat('') } : given;
  const intervals = req.attrs ? attrsFromMessage({ ...req.attrs, schemes: [] }) : attrsFromText(req.attrsText, '');
  let schemes;
  try {
    schemes = schemesFromText(text, intervals);
  } catch (err) {
    schemaUsage('bad schemes', err);
  }
  if (req.attrs) return { attrs: { ...req.attrs, schemes: schemes.map(toProtoScheme) }, attrsText: '', schemesText: '' };
  return { ...req, schemesText: text };
}

/** How often a read-modify-write of attributes is tried again when another client wrote between. */
const ATTRS_TRIES = 3;

/**
 * SetAttributes from the session as it is, changed by `change`, compare-and-set on its
 * revision (retried when another client wrote between, unless the caller gave one).
 */
async function readModifyWrite(conn: ControllerConnection, id: string, explicit: bigint, change: (cur: Session) => AttrsRequest): Promise<Session> {
  for (let attempt = 1; ; attempt++) {
    const cur = await conn.call('getSession', { id });
    try {
      return await conn.call('setAttributes', { id, ...change(cur), expectedRevision: explicit || cur.revision });
    } catch (err) {
      const raced = err instanceof CliError && err.status === grpc.status[grpc.status.ABORTED] && explicit === 0n;
      if (!raced || attempt >= ATTRS_TRIES) throw err;
    }
  }
}

/** New attributes, keeping the session's schemes (SetAttributes sets both). */
function setKeepingSchemes(conn: ControllerConnection, id: string, req: AttrsRequest, revision: bigint): Promise<Session> {
  return readModifyWrite(conn, id, revision, (cur) => (req.attrs ? { ...req, attrs: { ...req.attrs, schemes: cur.attrs?.schemes ?? [] } } : { ...req, schemesText: cur.schemesText }));
}

/** New schemes, keeping the session's attributes (with its result format and intervals goal). */
function setSchemes(conn: ControllerConnection, id: string, text: string, revision: bigint): Promise<Session> {
  return readModifyWrite(conn, id, revision, (cur) => withSchemes({ attrs: cur.attrs ?? defaultsWithFormat(''), attrsText: '', schemesText: '' }, text));
}

/** DAMON's default attributes with a result format: what create --format alone asks for. */
function defaultsWithFormat(format: string): Attributes {
  try {
    return toProtoAttrs(attrsFromMessage({ ...Attributes.fromPartial({}), resultFormat: format }));
  } catch (err) {
    schemaUsage('--format', err);
  }
}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [sub, ...args] = argv;
  const name = sub && !sub.startsWith('-') ? `sessions ${sub}` : 'sessions';
  return runCommand(name, USAGE, argv, io, async () => {
    if (!sub || sub.startsWith('-')) throw new UsageError('a command is required (create, attrs, schemes, targets, on, off, get, list, delete)');
    return run(sub, args, io);
  });
}
