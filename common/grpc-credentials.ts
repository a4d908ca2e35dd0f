// The gRPC side of `damon-fleet credentials`: a token per identity (kept once made), the
// controller's identities file holding their hashes, and per host the hash of the token
// the controller shows that host's agent. Secrets never leave their identity's folder.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { excerpt, quoted } from './log.js';
import { HOST_RE } from './subjects.js';
import { existsSync, readFileSync } from 'node:fs';
import { readTokenFile } from './auth.js';
import { IdentityTable, SESSION_GRANT_RE, agentCallToken, tokenSha256, type IdentityEntry } from './grpc-access.js';
import { credentialsLayout, ensureSecretFile, existingIdentities, writeCredentialFile } from './credentials-layout.js';

/**
 * Who gets credentials: agents (with the addresses each may register), readers and
 * optimizers (with the sessions each may act on).
 */
export interface GrpcCredentialsPlan {
  agents: Array<{ host: string; addresses?: string[] }>;
  readers: string[];
  optimizers?: Array<{ name: string; sessions?: string[] }>;
}

const newSecret = () => randomBytes(32).toString('base64url') + '\n';

/**
 * Makes what is missing for `requested` and for every identity already under `root` (the
 * folder is the list of identities), and rewrites both kinds of identities file. An agent
 * given without addresses keeps the ones it had, else may register only its own host name.
 * Returns the files it created (never their contents).
 */
export function ensureGrpcCredentials(root: string, requested: GrpcCredentialsPlan): string[] {
  for (const { host, addresses } of requested.agents) {
    const bad = addresses?.find((a) => !HOST_RE.test(a) && isIP(a) === 0);
    if (addresses?.length === 0 || bad !== undefined) {
      throw new Error(`agent ${excerpt(host)}: addresses must be host names or IP addresses, got ${quoted(bad ?? '')}`);
    }
  }
  for (const { name, sessions } of requested.optimizers ?? []) {
    const bad = sessions?.find((g) => !SESSION_GRANT_RE.test(g));
    if (bad !== undefined) throw new Error(`optimizer ${excerpt(name)}: sessions must be session ids or "prefix*" patterns, got ${quoted(bad)}`);
  }
  const layout = credentialsLayout(root);
  const had = existingIdentities(root);
  const sessionsOf = new Map((requested.optimizers ?? []).map((o) => [o.name, o.sessions]));
  const addressesOf = new Map(requested.agents.map((a) => [a.host, a.addresses]));
  const plan = {
    agents: [...new Set([...had.agents, ...requested.agents.map((a) => a.host)])].sort().map((host) => ({ host, addresses: addressesOf.get(host) })),
    readers: [...new Set([...had.readers, ...requested.readers])].sort(),
    optimizers: [...new Set([...had.optimizers, ...(requested.optimizers ?? []).map((o) => o.name)])].sort(),
  };
  const created: string[] = [];
  const ensure = (path: string) => {
    if (ensureSecretFile(path, newSecret)) created.push(path);
    return readTokenFile(path);
  };
  const previous = existsSync(layout.controller.identities)
    ? IdentityTable.parse(readFileSync(layout.controller.identities, 'utf8'), layout.controller.identities)
    : undefined;
  const agentKey = ensure(layout.controller.agentKey);
  const entries: IdentityEntry[] = [{ role: 'operator', name: 'operator', tokenSha256: tokenSha256(ensure(layout.operator.token)) }];
  for (const name of plan.readers) {
    entries.push({ role: 'reader', name, tokenSha256: tokenSha256(ensure(layout.reader(name).token)) });
  }
  for (const name of plan.optimizers) {
    // Sessions given again replace the grant; otherwise the earlier one stays (none at first).
    const kept = previous?.entries.find((e) => e.role === 'optimizer' && e.name === name)?.sessions;
    const sessions = sessionsOf.get(name) ?? kept ?? [];
    entries.push({ role: 'optimizer', name, tokenSha256: tokenSha256(ensure(layout.optimizer(name).token)), sessions });
  }
  for (const { host, addresses } of plan.agents) {
    const files = layout.agent(host);
    const kept = previous?.entries.find((e) => e.role === 'agent' && e.name === host)?.addresses;
    entries.push({ role: 'agent', name: host, tokenSha256: tokenSha256(ensure(files.token)), addresses: addresses ?? kept ?? [host] });
    const callers = new IdentityTable([{ role: 'controller', name: 'controller', tokenSha256: tokenSha256(agentCallToken(agentKey, host)) }]);
    writeCredentialFile(files.identities, callers.format());
  }
  const table = new IdentityTable(entries);
  writeCredentialFile(layout.controller.identities, table.format());
  return created;
}
