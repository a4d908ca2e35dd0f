// Who may do what on NATS: one nkey identity per process role, the subjects each may publish
// and subscribe to (allow-lists, found by running the system under them), the server
// configuration they render to, and the credentials directory. See docs/nats.md.
import { chmodSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { createUser, fromSeed } from '@nats-io/nkeys';
import { credentialsLayout, existingIdentities, writeCredentialFile } from './credentials-layout.js';
import { quoted } from './log.js';
import {
  ACTIONS_STREAM,
  EVENTS_STREAM,
  HOST_RE,
  LEADER_KEY_SUBJECT,
  LEADER_STREAM,
  RECORDS_STREAM,
  SESSIONS_KEY_PREFIX,
  SESSIONS_STREAM,
  actionsFilter,
  eventsFilter,
  hostToken,
  recordsFilter,
  statFilter,
} from './subjects.js';

export const NatsRoles = { Controller: 'controller', Agent: 'agent', Reader: 'reader', Optimizer: 'optimizer', Operator: 'operator' } as const;
export type NatsRole = (typeof NatsRoles)[keyof typeof NatsRoles];

/** One NATS user: its role and, for agents and readers, the host or reader name. */
export type NatsIdentity =
  | { role: 'controller' | 'operator' }
  | { role: 'agent'; host: string }
  | { role: 'reader'; name: string }
  | { role: 'optimizer'; name: string };

export interface NatsPermissions {
  publish: readonly string[];
  subscribe: readonly string[];
}

/** Reader and optimizer names: one path component and one subject token. */
export const READER_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

const API = '$JS.API';
const streamApi = (op: string, stream: string) => `${API}.STREAM.${op}.${stream}`;

/**
 * Reading a stream through consumers of one's own: create (unnamed, or named with the filter
 * after the name: nats.js 3 on a 2.9 server), info, delete, pull the next batch, acknowledge.
 * Ordered consumers are recreated (and the old one deleted) by the client when they fall
 * behind, so all of these are needed.
 */
function consumeStream(stream: string): string[] {
  return [
    streamApi('INFO', stream),
    `${API}.CONSUMER.CREATE.${stream}`,
    `${API}.CONSUMER.CREATE.${stream}.>`,
    `${API}.CONSUMER.INFO.${stream}.*`,
    `${API}.CONSUMER.DELETE.${stream}.*`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.ACK.${stream}.>`,
  ];
}

/**
 * Reading the bucket: a get is a direct get of the key's last message (the key's subject
 * follows in the API subject); watch and keys are ordered push consumers, with flow control.
 */
function readBucket(): string[] {
  return [...consumeStream(SESSIONS_STREAM), `${API}.DIRECT.GET.${SESSIONS_STREAM}.>`, `$JS.FC.${SESSIONS_STREAM}.>`];
}

const DATA_STREAMS = [RECORDS_STREAM, EVENTS_STREAM, ACTIONS_STREAM] as const;

/**
 * The permission table: what each role may publish and subscribe to, besides its own inbox
 * (added by permissionsOf). Least privilege: only what the role's code was seen to use.
 */
export const NATS_PERMISSIONS: { readonly [R in NatsRole]: (id: NatsIdentity & { role: R }) => NatsPermissions } = {
  // The bucket's only writer; sets up the two data streams and the bucket (info, create,
  // update: limits, replicas; never purge or delete), publishes events, reads both streams
  // for WatchRecords / WatchEvents. Never publishes records.
  controller: () => ({
    publish: [
      `${API}.INFO`,
      ...DATA_STREAMS.flatMap((s) => [streamApi('CREATE', s), streamApi('UPDATE', s), ...consumeStream(s)]),
      streamApi('CREATE', SESSIONS_STREAM),
      streamApi('UPDATE', SESSIONS_STREAM),
      ...readBucket(),
      `${SESSIONS_KEY_PREFIX}>`,
      eventsFilter(),
      // The leader lease (controller/leadership.ts): its bucket (update: its replica count),
      // and reading and writing its one key.
      streamApi('INFO', LEADER_STREAM),
      streamApi('CREATE', LEADER_STREAM),
      streamApi('UPDATE', LEADER_STREAM),
      `${API}.DIRECT.GET.${LEADER_STREAM}.${LEADER_KEY_SUBJECT}`,
      LEADER_KEY_SUBJECT,
    ],
    subscribe: [],
  }),
  // Publishes its own host's records (the pub ack comes back on its inbox), DAMON_STAT
  // summaries (plain NATS) and the events of the actions it took; nothing else.
  agent: ({ host }) => ({
    publish: [`damon.records.*.${hostToken(host)}.*`, `damon.stat.*.${hostToken(host)}`, `damon.actions.*.${hostToken(host)}`],
    subscribe: [],
  }),
  // A consumer of records, events, action events and DAMON_STAT summaries: its own
  // consumers, or plain subscriptions.
  reader: () => ({
    publish: [`${API}.INFO`, ...DATA_STREAMS.flatMap(consumeStream)],
    subscribe: [recordsFilter(), eventsFilter(), actionsFilter(), statFilter()],
  }),
  // An optimizer reads what a reader reads, action events included (its actions go through
  // the controller over gRPC, never NATS): an identity of its own so that it can be
  // granted, reloaded and revoked apart from the readers.
  optimizer: () => ({
    publish: [`${API}.INFO`, ...DATA_STREAMS.flatMap(consumeStream)],
    subscribe: [recordsFilter(), eventsFilter(), actionsFilter(), statFilter()],
  }),
  // Administers the data streams and reads everything, the bucket included; writing the
  // bucket (or purging, deleting, updating its stream) stays the controller's alone.
  operator: () => ({
    publish: [
      `${API}.INFO`,
      `${API}.STREAM.NAMES`,
      `${API}.STREAM.LIST`,
      ...DATA_STREAMS.flatMap((s) => [
        ...['CREATE', 'UPDATE', 'PURGE', 'DELETE', 'MSG.GET', 'MSG.DELETE'].map((op) => streamApi(op, s)),
        `${API}.CONSUMER.NAMES.${s}`,
        `${API}.CONSUMER.LIST.${s}`,
        ...consumeStream(s),
      ]),
      ...readBucket(),
      // Messages by sequence (nats stream get), of the bucket too.
      streamApi('MSG.GET', SESSIONS_STREAM),
      `${API}.DIRECT.GET.${SESSIONS_STREAM}`,
    ],
    subscribe: [recordsFilter(), eventsFilter(), actionsFilter(), statFilter(), `${SESSIONS_KEY_PREFIX}>`],
  }),
};

/**
 * The inbox prefix of the identity holding `publicKey`: replies to its requests (JetStream
 * API answers, pub acks, consumer deliveries) come there, and only it may subscribe to it.
 * Derived from the key so that a process needs nothing but its seed file.
 */
export function inboxPrefix(publicKey: string): string {
  return `_INBOX_${publicKey}`;
}

/** The full permissions of `id`, its own inbox included. */
export function permissionsOf(id: NatsIdentity, publicKey: string): NatsPermissions {
  const p = (NATS_PERMISSIONS[id.role] as (i: NatsIdentity) => NatsPermissions)(id);
  return { publish: p.publish, subscribe: [...p.subscribe, `${inboxPrefix(publicKey)}.>`] };
}

/** "controller", "operator", "agent h1", "reader optimizer": for messages and the conf's comments. */
export function identityLabel(id: NatsIdentity): string {
  if (id.role === 'agent') return `agent ${id.host}`;
  if (id.role === 'reader') return `reader ${id.name}`;
  if (id.role === 'optimizer') return `optimizer ${id.name}`;
  return id.role;
}

/** A user of the server configuration: an identity and its public nkey. */
export interface NatsUser {
  identity: NatsIdentity;
  publicKey: string;
}

/** The account every damon-fleet user is in (JetStream enabled). */
export const NATS_ACCOUNT = 'DAMON';

const quote = (s: string) => JSON.stringify(s);
const list = (xs: readonly string[], indent: string) => `[\n${xs.map((x) => `${indent}  ${quote(x)}`).join('\n')}\n${indent}]`;

/**
 * The accounts file (nats/nats.conf, included by the server configuration): the DAMON
 * account with JetStream and one nkey user per identity with allow-list permissions. Public
 * keys only.
 */
export function renderNatsConf(users: readonly NatsUser[]): string {
  const entries = users.map(({ identity, publicKey }) => {
    const p = permissionsOf(identity, publicKey);
    const i = '          ';
    return (
      `      # ${identityLabel(identity)}\n` +
      `      {\n` +
      `        nkey: ${quote(publicKey)}\n` +
      `        permissions: {\n` +
      `          publish: { allow: ${list(p.publish, i)} }\n` +
      `          subscribe: { allow: ${list(p.subscribe, i)} }\n` +
      `        }\n` +
      `      }`
    );
  });
  return (
    '# Generated by `damon-fleet credentials`: rerun it rather than editing (docs/nats.md).\n' +
    '# Users are nkeys (public keys only); each may publish and subscribe to what is listed.\n' +
    `accounts {\n  ${NATS_ACCOUNT} {\n    jetstream: enabled\n    users: [\n${entries.join('\n')}\n    ]\n  }\n}\n`
  );
}

/** Where one nats-server listens and keeps its JetStream store. */
export interface NatsServerSettings {
  host: string;
  port: number;
  storeDir: string;
}

/**
 * A whole nats-server configuration: where it listens, its JetStream store, and the accounts
 * file (nats/nats.conf) included. JetStream belongs in the file, not on the command line:
 * nats-server 2.9.10 shuts JetStream down at a reload (SIGHUP) when only -js enabled it.
 * Include paths are relative to the including file (2.9.10 refuses absolute ones), so
 * `confPath` is where this text will be written.
 */
export function renderServerConf(confPath: string, accountsFile: string, s: NatsServerSettings): string {
  return (
    '# nats-server for damon-fleet; users and permissions are in the included file (damon-fleet credentials).\n' +
    `host: ${quote(s.host)}\n` +
    `port: ${s.port}\n` +
    `jetstream { store_dir: ${quote(s.storeDir)} }\n` +
    `include ${quote(relative(dirname(confPath), accountsFile))}\n`
  );
}

/** Writes renderServerConf's text to `confPath` (0644, atomically). */
export function writeServerConf(confPath: string, accountsFile: string, s: NatsServerSettings): void {
  writeCredentialFile(confPath, renderServerConf(confPath, accountsFile, s), 0o644);
}

/** The nkey seed file of `id` under the credentials folder `dir`. */
export function seedFileOf(dir: string, id: NatsIdentity): string {
  const layout = credentialsLayout(dir);
  if (id.role === 'agent') return layout.agent(id.host).natsSeed;
  if (id.role === 'reader') return layout.reader(id.name).natsSeed;
  if (id.role === 'optimizer') return layout.optimizer(id.name).natsSeed;
  return layout[id.role].natsSeed;
}

/** The identities a credentials directory holds. */
export interface CredentialsPlan {
  agents: readonly string[];
  readers: readonly string[];
  optimizers?: readonly string[];
}

/** What ensureNatsCredentials did, file by file (paths only: never a secret). */
export interface CredentialsReport {
  created: string[];
  kept: string[];
  /** The server configuration, rewritten every time. */
  conf: string;
}

/** Checks host and reader names; throws naming the first bad one. */
export function checkPlan(plan: CredentialsPlan): void {
  for (const h of plan.agents) if (!HOST_RE.test(h)) throw new Error(`agent host ${quoted(h)}: not a valid host name`);
  for (const r of plan.readers) {
    if (!READER_NAME_RE.test(r)) throw new Error(`reader ${quoted(r)}: letters, digits, '_' and '-' only (at most 64)`);
  }
  for (const o of plan.optimizers ?? []) {
    if (!READER_NAME_RE.test(o)) throw new Error(`optimizer ${quoted(o)}: letters, digits, '_' and '-' only (at most 64)`);
  }
}

/** The identities of `plan`: controller, operator, then agents, readers and optimizers (sorted, duplicates merged). */
export function identitiesOf(plan: CredentialsPlan): NatsIdentity[] {
  return [
    { role: 'controller' },
    { role: 'operator' },
    ...[...new Set(plan.agents)].sort().map((host): NatsIdentity => ({ role: 'agent', host })),
    ...[...new Set(plan.readers)].sort().map((name): NatsIdentity => ({ role: 'reader', name })),
    ...[...new Set(plan.optimizers ?? [])].sort().map((name): NatsIdentity => ({ role: 'optimizer', name })),
  ];
}

function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
}

/** The public key of the seed in `file`; throws naming the file (never quoting it). */
export function publicKeyOfSeedFile(file: string): string {
  return fromSeed(readNkeySeed(file)).getPublicKey();
}

/**
 * Reads a user nkey seed file ("SU..."; surrounding whitespace ignored). Errors name the
 * file, never its content.
 */
export function readNkeySeed(file: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`NATS nkey file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const seed = text.trim();
  if (!/^SU[A-Z2-7]{56}$/.test(seed)) throw new Error(`NATS nkey file ${file}: not a user nkey seed (expected one line "SU...")`);
  try {
    fromSeed(new TextEncoder().encode(seed));
  } catch {
    throw new Error(`NATS nkey file ${file}: not a valid nkey seed (bad checksum)`);
  }
  return new TextEncoder().encode(seed);
}

/**
 * Makes `dir` hold an nkey seed for every identity of `plan` and the server configuration
 * for them and for every identity already in `dir`: keeps existing seeds, generates missing
 * ones (files 0600, directories 0700), rewrites nats/nats.conf. Idempotent. The directory is
 * the list of identities: one is removed by deleting its directory, then rerunning this.
 */
export function ensureNatsCredentials(dir: string, requested: CredentialsPlan): CredentialsReport {
  checkPlan(requested);
  const had = existingIdentities(dir);
  const plan = {
    agents: [...had.agents, ...requested.agents],
    readers: [...had.readers, ...requested.readers],
    optimizers: [...had.optimizers, ...(requested.optimizers ?? [])],
  };
  checkPlan(plan);
  ensureDir(dir);
  const report: CredentialsReport = { created: [], kept: [], conf: credentialsLayout(dir).natsConf };
  const users: NatsUser[] = [];
  for (const identity of identitiesOf(plan)) {
    const file = seedFileOf(dir, identity);
    ensureDir(dirname(dirname(file)));
    ensureDir(dirname(file));
    let exists = false;
    try {
      exists = statSync(file).isFile();
    } catch {
      exists = false;
    }
    if (exists) {
      chmodSync(file, 0o600);
      users.push({ identity, publicKey: publicKeyOfSeedFile(file) });
      report.kept.push(file);
    } else {
      const kp = createUser();
      writeCredentialFile(file, new TextDecoder().decode(kp.getSeed()) + '\n');
      users.push({ identity, publicKey: kp.getPublicKey() });
      report.created.push(file);
    }
  }
  ensureDir(dirname(report.conf));
  writeCredentialFile(report.conf, renderNatsConf(users), 0o644);
  return report;
}
