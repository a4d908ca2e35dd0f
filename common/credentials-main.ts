// `damon-fleet credentials`: creates (or completes) a credentials directory: one identity per
// controller, operator, agent host and reader, on both planes (NATS nkeys and the server
// configuration for them; gRPC tokens and identities files). Idempotent: existing secrets
// are kept. Prints paths only, never a secret.
import { parseArgs } from 'node:util';
import { credentialsLayout } from './credentials-layout.js';
import { join } from 'node:path';
import { parseHostPort } from './cli-values.js';
import { ensureNatsCredentials, publicKeyOfSeedFile, writeServerConf, type NatsServerSettings } from './nats-access.js';
import { checkClusterNodes, parseClusterNode, writeClusterConfs, type NatsClusterSettings } from './nats-cluster.js';
import { ensureGrpcCredentials, type GrpcCredentialsPlan } from './grpc-credentials.js';

export const USAGE = `usage: damon-fleet credentials --dir DIR [--agent HOST[=ADDR,...]]... [--reader NAME]...
                              [--optimizer NAME[=SESSION,...]]...
                              [--server-conf FILE --listen HOST:PORT --store DIR]
                              [--node NAME[,listen=HOST:PORT][,cluster=HOST:PORT][,route=HOST:PORT]]...

  --dir DIR          the credentials directory (created 0700)
  --agent HOST[=ADDR,...]
                     an agent host (repeat for each host), and the host names or IP
                     addresses it may register as its gRPC address (default: HOST;
                     kept from an earlier run when not given again)
  --reader NAME      a read-only client: Get/List/Watch over gRPC, records and events
                     on NATS (e.g. a dashboard; repeat)
  --optimizer NAME[=SESSION,...]
                     an optimizer: reads like a reader and may request actions
                     (RequestAction) on the sessions listed: ids or PREFIX* ('*': all;
                     none when not given; kept from an earlier run when not given
                     again); see docs/actions.md
  --server-conf FILE also write a whole nats-server configuration there: listening on
                     --listen, JetStream in --store, including DIR/nats/nats.conf
  --node NAME[,listen=HOST:PORT][,cluster=HOST:PORT][,route=HOST:PORT]
                     a node of a NATS cluster (repeat, at least 3): --server-conf is
                     then a folder that gets one configuration per node, NAME.conf
                     (0600: it holds the route password), JetStream in --store/NAME.
                     listen: its clients' address (default --listen); cluster: where
                     it listens for routes (default listen's host, port 6222); route:
                     where the others reach it (default cluster's address, or
                     NAME:PORT when cluster is 0.0.0.0, as in docker-compose.yml)

Creates what is missing and keeps what exists (secrets 0600, directories 0700):
  DIR/nats/nats.conf                 NATS users and permissions (public keys only)
  DIR/nats/route.password            with --node: the password routes present (0600)
  DIR/controller/nats.nk             the controller's NATS nkey seed
  DIR/controller/identities.json     who may call the controller (token hashes)
  DIR/controller/agent-call.key      the key of the tokens the controller shows agents
  DIR/operator/{nats.nk,token}       the operator: the whole API, stream administration
  DIR/agents/<host>/{nats.nk,token}  each agent host's
  DIR/agents/<host>/identities.json  who may call that agent (the controller's token hash)
  DIR/readers/<name>/{nats.nk,token} each reader's
  DIR/optimizers/<name>/{nats.nk,token} each optimizer's (its sessions: in identities.json)
A machine needs only its own folder: a host gets DIR/agents/<host>/.
Identities already in DIR stay (remove one by deleting its directory, then rerun).
The controller re-reads its identities file when it changes; no restart is needed.
Run nats-server -c on a configuration that includes DIR/nats/nats.conf and enables
JetStream itself (--server-conf writes one; -js on the command line does not survive a
reload). After adding or removing a host or reader, reload nats-server
(nats-server --signal reload=PID, or SIGHUP).`;

type ServerConfRequest = { path: string; settings: NatsServerSettings } | { confDir: string; cluster: NatsClusterSettings };

function parse(argv: string[]): { dir: string; plan: GrpcCredentialsPlan; server?: ServerConfRequest } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      dir: { type: 'string' },
      agent: { type: 'string', multiple: true, default: [] },
      reader: { type: 'string', multiple: true, default: [] },
      optimizer: { type: 'string', multiple: true, default: [] },
      'server-conf': { type: 'string' },
      listen: { type: 'string' },
      store: { type: 'string' },
      node: { type: 'string', multiple: true, default: [] },
    },
  });
  if (positionals.length > 0) throw new Error(`unexpected argument: ${positionals[0]}`);
  if (!values.dir) throw new Error('--dir DIR is required');
  const agents = values.agent!.map((a) => {
    const [host, addrs] = a.split('=', 2);
    return { host, addresses: addrs === undefined ? undefined : addrs.split(',').filter(Boolean) };
  });
  const optimizers = values.optimizer!.map((o) => {
    const [name, grants] = o.split('=', 2);
    return { name, sessions: grants === undefined ? undefined : grants.split(',').filter(Boolean) };
  });
  const plan = { agents, readers: values.reader!, optimizers };
  const given = [values['server-conf'], values.listen, values.store].filter(Boolean).length;
  if (given === 0) {
    if (values.node!.length > 0) throw new Error('--node needs --server-conf DIR, --listen HOST:PORT and --store DIR');
    return { dir: values.dir, plan };
  }
  if (given !== 3) throw new Error('--server-conf, --listen and --store go together');
  const listen = parseHostPort('--listen', values.listen!);
  if (values.node!.length > 0) {
    const nodes = values.node!.map((n) => parseClusterNode(n, listen));
    checkClusterNodes(nodes);
    return { dir: values.dir, plan, server: { confDir: values['server-conf']!, cluster: { nodes, storeDir: values.store! } } };
  }
  return { dir: values.dir, plan, server: { path: values['server-conf']!, settings: { ...listen, storeDir: values.store! } } };
}

/** Creates the credentials; resolves the exit code (0 done, 1 failed, 2 bad usage). */
export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let dir: string;
  let plan: GrpcCredentialsPlan;
  let server: ServerConfRequest | undefined;
  try {
    ({ dir, plan, server } = parse(argv));
  } catch (err) {
    process.stderr.write(`damon-fleet credentials: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  try {
    // Each kind of credential has its ensure* step; they share the directory and the plan.
    const nats = ensureNatsCredentials(dir, {
      agents: plan.agents.map((a) => a.host),
      readers: plan.readers,
      optimizers: (plan.optimizers ?? []).map((o) => o.name),
    });
    // The public key names the identity in nats-server's log and its inbox prefix (_INBOX_<key>).
    for (const f of nats.created) process.stdout.write(`created ${f}  ${publicKeyOfSeedFile(f)}\n`);
    for (const f of nats.kept) process.stdout.write(`kept    ${f}  ${publicKeyOfSeedFile(f)}\n`);
    process.stdout.write(`wrote   ${nats.conf}\n`);
    for (const f of ensureGrpcCredentials(dir, plan)) process.stdout.write(`created ${f}\n`);
    const layout = credentialsLayout(dir);
    process.stdout.write(`wrote   ${layout.controller.identities} and agents/*/identities.json\n`);
    let conf = 'SERVER.conf (including the file above)';
    if (server && 'path' in server) {
      writeServerConf(server.path, credentialsLayout(dir).natsConf, server.settings);
      process.stdout.write(`wrote   ${server.path}\n`);
      conf = server.path;
    } else if (server) {
      const written = writeClusterConfs(dir, server.confDir, server.cluster);
      process.stdout.write(`${written.passwordCreated ? 'created' : 'kept   '} ${layout.natsRoutePassword}  (the routes' password)\n`);
      for (const p of written.confs) process.stdout.write(`wrote   ${p}\n`);
      conf = `${join(server.confDir, 'NODE.conf')} on each node`;
    }
    process.stdout.write(`NATS: nats-server -c ${conf}; if it runs already: nats-server --signal reload=PID\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`damon-fleet credentials: ${(err as Error).message}\n`);
    return 1;
  }
}
