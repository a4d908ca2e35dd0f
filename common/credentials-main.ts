// `damon-fleet credentials`: creates (or completes) a credentials directory: one identity per
// controller, operator, agent host and reader, and the NATS server configuration for them.
// Idempotent: existing secrets are kept. Prints paths only, never a secret.
import { parseArgs } from 'node:util';
import { credentialPaths, ensureNatsCredentials, type CredentialsPlan } from './nats-access.js';

export const USAGE = `usage: damon-fleet credentials --dir DIR [--agent HOST]... [--reader NAME]...

  --dir DIR          the credentials directory (created 0700)
  --agent HOST       an agent host (repeat for each host)
  --reader NAME      a consumer of records and events, e.g. an optimizer (repeat)

Creates what is missing and keeps what exists:
  DIR/nats/nats.conf            NATS server configuration (public keys and permissions)
  DIR/controller/nats.nk        the controller's NATS nkey seed
  DIR/operator/nats.nk          the operator's (stream administration, read access)
  DIR/agents/<host>/nats.nk     each agent host's
  DIR/readers/<name>/nats.nk    each reader's
Run nats-server with -c DIR/nats/nats.conf; after adding a host or reader, rerun this
with the full list and reload nats-server (nats-server --signal reload=PID, or SIGHUP).
Identities left out of the list lose their NATS user at the reload.`;

function parse(argv: string[]): { dir: string; plan: CredentialsPlan } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      agent: { type: 'string', multiple: true, default: [] },
      reader: { type: 'string', multiple: true, default: [] },
    },
  });
  if (positionals.length > 0) throw new Error(`unexpected argument: ${positionals[0]}`);
  if (!values.dir) throw new Error('--dir DIR is required');
  return { dir: values.dir, plan: { agents: values.agent!, readers: values.reader! } };
}

/** Creates the credentials; resolves the exit code (0 done, 1 failed, 2 bad usage). */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let dir: string;
  let plan: CredentialsPlan;
  try {
    ({ dir, plan } = parse(argv));
  } catch (err) {
    process.stderr.write(`damon-fleet credentials: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  try {
    // Each kind of credential has its ensure* step; they share the directory and the plan.
    const nats = ensureNatsCredentials(dir, plan);
    for (const f of nats.created) process.stdout.write(`created ${f}\n`);
    for (const f of nats.kept) process.stdout.write(`kept    ${f}\n`);
    process.stdout.write(`wrote   ${nats.conf}\n`);
    process.stdout.write(
      `NATS: nats-server -c ${credentialPaths.natsConf(dir)} ...; if it runs already: nats-server --signal reload=PID\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`damon-fleet credentials: ${(err as Error).message}\n`);
    return 1;
  }
}
