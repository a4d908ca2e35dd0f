// `damon-fleet credentials`: creates (or completes) a credentials directory: one identity per
// controller, operator, agent host and reader, and the NATS server configuration for them.
// Idempotent: existing secrets are kept. Prints paths only, never a secret.
import { parseArgs } from 'node:util';
import { credentialPaths, ensureNatsCredentials, publicKeyOfSeedFile, writeServerConf, type CredentialsPlan, type NatsServerSettings } from './nats-access.js';

export const USAGE = `usage: damon-fleet credentials --dir DIR [--agent HOST]... [--reader NAME]...
                              [--server-conf FILE --listen HOST:PORT --store DIR]

  --dir DIR          the credentials directory (created 0700)
  --agent HOST       an agent host (repeat for each host)
  --reader NAME      a consumer of records and events, e.g. an optimizer (repeat)
  --server-conf FILE also write a whole nats-server configuration there: listening on
                     --listen, JetStream in --store, including DIR/nats/nats.conf

Creates what is missing and keeps what exists:
  DIR/nats/nats.conf            NATS server configuration (public keys and permissions)
  DIR/controller/nats.nk        the controller's NATS nkey seed
  DIR/operator/nats.nk          the operator's (stream administration, read access)
  DIR/agents/<host>/nats.nk     each agent host's
  DIR/readers/<name>/nats.nk    each reader's
Identities already in DIR stay (remove one by deleting its directory, then rerun).
Run nats-server -c on a configuration that includes DIR/nats/nats.conf and enables
JetStream itself (--server-conf writes one; -js on the command line does not survive a
reload). After adding or removing a host or reader, reload nats-server
(nats-server --signal reload=PID, or SIGHUP).`;

interface ServerConfRequest {
  path: string;
  settings: NatsServerSettings;
}

function parse(argv: string[]): { dir: string; plan: CredentialsPlan; server?: ServerConfRequest } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      agent: { type: 'string', multiple: true, default: [] },
      reader: { type: 'string', multiple: true, default: [] },
      'server-conf': { type: 'string' },
      listen: { type: 'string' },
      store: { type: 'string' },
    },
  });
  if (positionals.length > 0) throw new Error(`unexpected argument: ${positionals[0]}`);
  if (!values.dir) throw new Error('--dir DIR is required');
  const plan = { agents: values.agent!, readers: values.reader! };
  const given = [values['server-conf'], values.listen, values.store].filter(Boolean).length;
  if (given === 0) return { dir: values.dir, plan };
  if (given !== 3) throw new Error('--server-conf, --listen and --store go together');
  const m = /^(.+):(\d{1,5})$/.exec(values.listen!);
  if (!m || Number(m[2]) > 65535) throw new Error(`--listen ${values.listen!.slice(0, 80)}: expected HOST:PORT`);
  const settings = { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]), storeDir: values.store! };
  return { dir: values.dir, plan, server: { path: values['server-conf']!, settings } };
}

/** Creates the credentials; resolves the exit code (0 done, 1 failed, 2 bad usage). */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let dir: string;
  let plan: CredentialsPlan;
  let server: ServerConfRequest | undefined;
  try {
    ({ dir, plan, server } = parse(argv));
  } catch (err) {
    process.stderr.write(`damon-fleet credentials: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  try {
    // Each kind of credential has its ensure* step; they share the directory and the plan.
    const nats = ensureNatsCredentials(dir, plan);
    // The public key names the identity in nats-server's log and its inbox prefix (_INBOX_<key>).
    for (const f of nats.created) process.stdout.write(`created ${f}  ${publicKeyOfSeedFile(f)}\n`);
    for (const f of nats.kept) process.stdout.write(`kept    ${f}  ${publicKeyOfSeedFile(f)}\n`);
    process.stdout.write(`wrote   ${nats.conf}\n`);
    if (server) {
      writeServerConf(server.path, credentialPaths.natsConf(dir), server.settings);
      process.stdout.write(`wrote   ${server.path}\n`);
    }
    const conf = server?.path ?? 'SERVER.conf (including the file above)';
    process.stdout.write(`NATS: nats-server -c ${conf}; if it runs already: nats-server --signal reload=PID\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`damon-fleet credentials: ${(err as Error).message}\n`);
    return 1;
  }
}
