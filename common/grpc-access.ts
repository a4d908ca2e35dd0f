// Who may call what over gRPC. Every caller is one identity with one role:
//   operator    the whole Controller API;
//   reader      Controller reads only (Get*, List*, Watch*);
//   optimizer   RequestAction, GetSession, ListSessions and WatchRecords, each on the
//               sessions its identities file entry grants it only (docs/actions.md);
//   agent       the Registry, for the one host its credential names;
//   controller  the Agent service (the only caller an agent obeys).
// An identity is proven by a bearer token (the server holds only its SHA-256, in an
// identities file) or by a client certificate whose URI SAN is
// spiffe://damon-fleet/<role>[/<name>] (mutual TLS). The policy below is the one place
// that says which role may call which method; a method missing from it is refused.
import { createHash, createHmac } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { RpcError, SERVICE_NAMES, authorizedCaller, type Authorizer, type AuthCall } from './grpc-server.js';
import { AUTH_METADATA_KEY } from './auth.js';
import { errorMessage, excerpt, quoted, silentLogger, type BasicLogger } from './log.js';
import { HOST_RE } from './subjects.js';

export const ROLES = ['operator', 'reader', 'optimizer', 'agent', 'controller'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling, as proven by its credential. */
export interface Caller {
  role: Role;
  /** The identity's name: an agent's host, a reader's name, "operator", "controller". */
  name: string;
  /**
   * Agents only: the hosts (names or IP addresses) the agent may register as its address:
   * from the identities file for a token, from the certificate's DNS and IP SANs.
   */
  addresses: readonly string[];
  /**
   * Optimizers only: the sessions it may act on (and read), ids or "prefix*" patterns, from
   * its identities file entry (for a certificate too: looked up by its name).
   */
  sessions?: readonly string[];
  via: 'token' | 'certificate';
}

/** 'operator', 'controller', 'reader "dash"', 'agent "h1"': for messages. */
export function describeCaller(c: Pick<Caller, 'role' | 'name'>): string {
  return c.role === 'operator' || c.role === 'controller' ? c.role : `${c.role} "${c.name}"`;
}

// Controller methods that change nothing: readers may call these and only these.
const CONTROLLER_READS = ['GetSession', 'ListSessions', 'GetAttributes', 'WatchRecords', 'WatchEvents', 'ListAgents'];
const CONTROLLER_WRITES = ['CreateSession', 'DeleteSession', 'SetAttributes', 'SetTargets', 'TurnOn', 'TurnOff'];
// What an optimizer needs: its sessions' records and targets, and acting on them.
const OPTIMIZER_METHODS = ['GetSession', 'ListSessions', 'WatchRecords', 'RequestAction'];

/** Method path ("/damon.v1.Controller/GetSession") -> the roles that may call it. */
export const ACCESS_POLICY: ReadonlyMap<string, readonly Role[]> = new Map<string, readonly Role[]>([
  ...CONTROLLER_READS.map((m) => [`/${SERVICE_NAMES.controller}/${m}`, ['operator', 'reader', ...(OPTIMIZER_METHODS.includes(m) ? ['optimizer' as const] : [])]] as const),
  ...CONTROLLER_WRITES.map((m) => [`/${SERVICE_NAMES.controller}/${m}`, ['operator']] as const),
  [`/${SERVICE_NAMES.controller}/RequestAction`, ['operator', 'optimizer']],
  ...['Register', 'Heartbeat'].map((m) => [`/${SERVICE_NAMES.registry}/${m}`, ['agent']] as const),
  ...['ApplySession', 'StopSession', 'GetState', 'ApplyAction'].map((m) => [`/${SERVICE_NAMES.agent}/${m}`, ['controller']] as const),
]);

/** An optimizer's grant: a session id, or "prefix*" (every session whose id starts with prefix; "*" is every session). */
export const SESSION_GRANT_RE = /^(?:[A-Za-z0-9_-]{1,64}|[A-Za-z0-9_-]{0,63}\*)$/;

/** Whether `caller` may act on (and, an optimizer, read) session `id`: the operator any, an optimizer those granted. */
export function mayActOn(caller: Pick<Caller, 'role' | 'sessions'>, id: string): boolean {
  if (caller.role === 'operator') return true;
  if (caller.role !== 'optimizer') return false;
  return (caller.sessions ?? []).some((g) => (g.endsWith('*') ? id.startsWith(g.slice(0, -1)) : id === g));
}

/**
 * Whether `caller` may read session `id`: every session for the roles that read, an
 * optimizer's own only (an optimizer learns nothing of the sessions it was not granted).
 */
export function mayRead(caller: Pick<Caller, 'role' | 'sessions'> | undefined, id: string): boolean {
  return caller === undefined || caller.role !== 'optimizer' || mayActOn(caller, id);
}

/** The SPIFFE-style URI a certificate carries to name its identity. */
export const SPIFFE_PREFIX = 'spiffe://damon-fleet/';

export function spiffeId(role: Role, name?: string): string {
  return name === undefined || name === role ? `${SPIFFE_PREFIX}${role}` : `${SPIFFE_PREFIX}${role}/${name}`;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

function checkName(role: Role, name: string): string | undefined {
  if (role === 'agent' && !HOST_RE.test(name)) return `agent name must be a host name, got ${quoted(name)}`;
  if ((role === 'controller' || role === 'operator') && name !== role) return `the ${role} is named "${role}", got ${quoted(name)}`;
  if (!NAME_RE.test(name)) return `name must be letters, digits, '.', '_', '-', got ${quoted(name)}`;
  return undefined;
}

// ---- tokens -----------------------------------------------------------------------------

/** Hex SHA-256 of a token: what an identities file holds instead of the token. */
export function tokenSha256(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * The token the controller presents to the agent of `host`: derived from the controller's
 * agent-call key, so each agent learns (and could leak) only the token that opens itself.
 */
export function agentCallToken(key: string, host: string): string {
  return createHmac('sha256', key).update(`damon-fleet agent-call ${host}`, 'utf8').digest('base64url');
}

/** One identity of an identities file. */
export interface IdentityEntry {
  role: Role;
  name: string;
  /**
   * Hex SHA-256 of the identity's token. Only an optimizer's entry may go without one: it
   * then grants sessions to the optimizer's certificate alone.
   */
  tokenSha256?: string;
  /** Agents: the hosts they may register as their address (default: the agent's name). */
  addresses?: string[];
  /** Optimizers: the sessions it may act on (ids or "prefix*"); none when absent. */
  sessions?: string[];
}

function callerOfEntry(e: IdentityEntry): Omit<Caller, 'via'> {
  return { role: e.role, name: e.name, addresses: e.addresses ?? [e.name], ...(e.role === 'optimizer' ? { sessions: e.sessions ?? [] } : {}) };
}

/**
 * The identities a server accepts by token, parsed from an identities file:
 *   {"identities": [{"role": "agent", "name": "h1", "token_sha256": "<hex>", "addresses": ["10.0.0.5"]}, ...]}
 */
export class IdentityTable {
  private readonly byDigest: Map<string, Caller>;

  constructor(readonly entries: readonly IdentityEntry[]) {
    this.byDigest = new Map(
      entries
        .filter((e) => e.tokenSha256 !== undefined)
        .map((e) => [e.tokenSha256!.toLowerCase(), { ...callerOfEntry(e), via: 'token' as const }]),
    );
  }

  /** The sessions the identities file grants optimizer `name` (for its certificate); none when it has no entry. */
  optimizerSessions(name: string): readonly string[] {
    return this.entries.find((e) => e.role === 'optimizer' && e.name === name)?.sessions ?? [];
  }

  /** Parses an identities file's text; throws naming `source` and the entry at fault. */
  static parse(text: string, source: string): IdentityTable {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new Error(`identities file ${source}: not JSON: ${errorMessage(err)}`);
    }
    const list = (doc as { identities?: unknown })?.identities;
    if (!Array.isArray(list)) throw new Error(`identities file ${source}: expected {"identities": [...]}`);
    const seen = new Set<string>();
    const entries = list.map((raw: unknown, i): IdentityEntry => {
      const at = `identities file ${source}: identities[${i}]`;
      const e = raw as Record<string, unknown>;
      if (e === null || typeof e !== 'object') throw new Error(`${at}: expected an object`);
      const role = e.role as Role;
      if (!ROLES.includes(role)) throw new Error(`${at}.role: one of ${ROLES.join(', ')}, got ${excerpt(JSON.stringify(e.role))}`);
      if (typeof e.name !== 'string') throw new Error(`${at}.name: a string is required`);
      const bad = checkName(role, e.name);
      if (bad) throw new Error(`${at}.name: ${bad}`);
      if (e.token_sha256 === undefined && role === 'optimizer') {
        // A grant for a certificate: no token opens it.
      } else if (typeof e.token_sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.token_sha256)) {
        throw new Error(`${at}.token_sha256: 64 lower-case hex digits (the SHA-256 of the token, never the token)`);
      } else {
        if (seen.has(e.token_sha256)) throw new Error(`${at}: the same token as an earlier identity`);
        seen.add(e.token_sha256);
      }
      let sessions: string[] | undefined;
      if (e.sessions !== undefined) {
        if (role !== 'optimizer') throw new Error(`${at}.sessions: only optimizers are granted sessions`);
        if (!Array.isArray(e.sessions) || !e.sessions.every((g) => typeof g === 'string' && SESSION_GRANT_RE.test(g))) {
          throw new Error(`${at}.sessions: a list of session ids or "prefix*" patterns, got ${excerpt(JSON.stringify(e.sessions))}`);
        }
        sessions = e.sessions as string[];
      }
      let addresses: string[] | undefined;
      if (e.addresses !== undefined) {
        if (role !== 'agent') throw new Error(`${at}.addresses: only agents have addresses`);
        if (!Array.isArray(e.addresses) || e.addresses.length === 0 || !e.addresses.every((a) => typeof a === 'string' && (HOST_RE.test(a) || isIP(a) !== 0))) {
          throw new Error(`${at}.addresses: a non-empty list of host names or IP addresses`);
        }
        addresses = e.addresses as string[];
      }
      return {
        role,
        name: e.name,
        ...(e.token_sha256 !== undefined ? { tokenSha256: e.token_sha256 as string } : {}),
        ...(addresses ? { addresses } : {}),
        ...(sessions ? { sessions } : {}),
      };
    });
    return new IdentityTable(entries);
  }

  static readFile(path: string): IdentityTable {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`identities file ${path}: ${errorMessage(err)}`);
    }
    return IdentityTable.parse(text, path);
  }

  /** The file's text for these entries (what the credentials command writes). */
  format(): string {
    const identities = this.entries.map((e) => ({
      role: e.role,
      name: e.name,
      ...(e.tokenSha256 !== undefined ? { token_sha256: e.tokenSha256 } : {}),
      ...(e.addresses ? { addresses: e.addresses } : {}),
      ...(e.sessions ? { sessions: e.sessions } : {}),
    }));
    return JSON.stringify({ identities }, null, 2) + '\n';
  }

  /**
   * The identity whose token this is, looked up by the token's SHA-256: what a lookup's
   * timing could reveal is about the digest, which says nothing usable about a token. One
   * lookup, not a comparison with every entry: each call costs the same with 2,000 agents.
   */
  byToken(token: string): Caller | undefined {
    return this.byDigest.get(tokenSha256(token));
  }
}

/**
 * An identities file that is read again when it changes (checked every `intervalMs`), so
 * that a host or a reader added by the credentials command is accepted without a restart.
 * A changed file that does not parse leaves the last good table in force (and says so).
 */
export class WatchedIdentities {
  private table: IdentityTable;
  private readonly onChange: (cur: Stats, prev: Stats) => void;

  constructor(readonly path: string, log: BasicLogger = silentLogger, intervalMs = 1000) {
    this.table = IdentityTable.readFile(path);
    this.onChange = (cur, prev) => {
      if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size && cur.ino === prev.ino) return;
      try {
        this.table = IdentityTable.readFile(path);
        log.info(`identities: reloaded ${path} (${this.table.entries.length} identities)`);
      } catch (err) {
        log.error(`identities: ${errorMessage(err)}; keeping the previous ${this.table.entries.length} identities`);
      }
    };
    watchFile(path, { interval: intervalMs, persistent: false }, this.onChange);
  }

  get current(): IdentityTable {
    return this.table;
  }

  get entries(): readonly IdentityEntry[] {
    return this.table.entries;
  }

  close(): void {
    unwatchFile(this.path, this.onChange);
  }
}

// ---- certificates -------------------------------------------------------------------------

function parseSpiffe(uri: string): { role: Role; name: string } | undefined {
  if (!uri.startsWith(SPIFFE_PREFIX)) return undefined;
  const [role, name, ...rest] = uri.slice(SPIFFE_PREFIX.length).split('/');
  if (rest.length > 0 || !ROLES.includes(role as Role)) return undefined;
  const n = name ?? role;
  return checkName(role as Role, n) ? undefined : { role: role as Role, name: n };
}

/** The identity a verified client certificate names, or undefined when it names none. */
export function certificateCaller(cert: { subjectaltname?: string } | undefined): Caller | undefined {
  const alts = (cert?.subjectaltname ?? '').split(/,\s*/).filter(Boolean);
  const ids = alts.filter((a) => a.startsWith('URI:')).map((a) => parseSpiffe(a.slice(4))).filter((x) => x !== undefined);
  if (ids.length !== 1) return undefined; // none, or ambiguous
  const addresses = alts
    .filter((a) => a.startsWith('DNS:') || a.startsWith('IP Address:'))
    .map((a) => a.slice(a.indexOf(':') + 1).toLowerCase());
  return { ...ids[0], addresses, via: 'certificate' };
}

// ---- authentication and authorization -------------------------------------------------------

/** How a server recognises callers. */
export interface AccessOptions {
  /** Identities accepted by token (a WatchedIdentities, or a fixed table). */
  identities?: { readonly current: IdentityTable } | IdentityTable;
  /** True when the server demands client certificates (mutual TLS). */
  tls?: boolean;
}

function tableOf(o: AccessOptions): IdentityTable | undefined {
  return o.identities instanceof IdentityTable ? o.identities : o.identities?.current;
}

function presentedToken(call: AuthCall): string | undefined {
  const values = call.metadata.get(AUTH_METADATA_KEY);
  if (values.length === 0) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(String(values[0]));
  if (!m) throw new RpcError(grpc.status.UNAUTHENTICATED, 'malformed authorization metadata: expected "Bearer <token>"');
  return m[1];
}

/**
 * The caller of `call`, from its token and/or its client certificate. Both may be
 * presented; they must then name the same identity. No credential -> UNAUTHENTICATED; a
 * credential that names no accepted identity -> PERMISSION_DENIED.
 */
export function authenticate(call: AuthCall, o: AccessOptions): Caller {
  const token = presentedToken(call);
  let byToken: Caller | undefined;
  if (token !== undefined) {
    byToken = tableOf(o)?.byToken(token);
    if (!byToken) throw new RpcError(grpc.status.PERMISSION_DENIED, 'token not accepted');
  }
  let byCert: Caller | undefined;
  if (o.tls) {
    const cert = call.getAuthContext().sslPeerCertificate;
    byCert = certificateCaller(cert);
    // A certificate names an optimizer; what it may act on is in the identities file.
    if (byCert?.role === 'optimizer') byCert = { ...byCert, sessions: tableOf(o)?.optimizerSessions(byCert.name) ?? [] };
    if (!byCert && !byToken) {
      throw new RpcError(
        grpc.status.PERMISSION_DENIED,
        `the client certificate names no damon-fleet identity (a URI SAN ${SPIFFE_PREFIX}<role>[/<name>]) and no token was presented`,
      );
    }
  }
  if (byToken && byCert && (byToken.role !== byCert.role || byToken.name !== byCert.name)) {
    throw new RpcError(
      grpc.status.PERMISSION_DENIED,
      `the token (${describeCaller(byToken)}) and the client certificate (${describeCaller(byCert)}) name different identities`,
    );
  }
  const caller = byCert ?? byToken;
  if (!caller) throw new RpcError(grpc.status.UNAUTHENTICATED, 'no credential: present "authorization: Bearer <token>" metadata');
  return caller;
}

/** An Authorizer: authenticates each call and lets it through when the policy allows the caller's role. */
export function accessAuthorizer(o: AccessOptions): Authorizer {
  return (call, method) => {
    const caller = authenticate(call, o);
    const roles = ACCESS_POLICY.get(method);
    if (!roles?.includes(caller.role)) {
      throw new RpcError(grpc.status.PERMISSION_DENIED, `${describeCaller(caller)} may not call ${method.slice(method.lastIndexOf('/') + 1)}`);
    }
    return caller;
  };
}

/** Whether `address` ("host:port") names a host that `caller` (an agent) may register. */
export function mayRegisterAddress(caller: Caller, address: string): boolean {
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '').toLowerCase();
  return caller.addresses.some((a) => a.toLowerCase() === host);
}

/** The caller an accessAuthorizer let through for `call`; undefined on a server without one. */
export function callerOf(call: object): Caller | undefined {
  return authorizedCaller(call) as Caller | undefined;
}
