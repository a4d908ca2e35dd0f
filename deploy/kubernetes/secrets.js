#!/usr/bin/env node
// Prints the Secrets that deploy/kubernetes/*.yaml mount, made from a credentials directory
// that `damon-fleet credentials` wrote (docs/deploy.md has the whole command). Pipe it
// straight into kubectl; never commit its output:
//   node deploy/kubernetes/secrets.js --dir creds | kubectl apply -n damon-fleet -f -
// One Secret per role, each holding only what that role's pods read:
//   damon-fleet-nats        nats.conf (users, permissions: public keys only) and the
//                           three nodes' configurations nats-N.conf (route password)
//   damon-fleet-controller  nats.nk, identities.json, agent-call.key
//   damon-fleet-agents      NODE.nats.nk, NODE.token, NODE.identities.json per node
// Run `npm run build` first: the folder layout is read from dist/common.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { credentialsLayout, existingIdentities } from '../../dist/common/credentials-layout.js';

/** The NATS StatefulSet's pods, and so the --node names its configurations must carry. */
const NATS_NODES = ['nats-0', 'nats-1', 'nats-2'];
/** Where each node's configuration expects the accounts file (the projected volume's layout). */
const ACCOUNTS_INCLUDE = '../nats.conf';

const USAGE = `usage: node deploy/kubernetes/secrets.js --dir DIR [--nats-confs FOLDER]

  --dir DIR           the credentials directory of \`damon-fleet credentials\`
  --nats-confs FOLDER the folder its --server-conf wrote the nodes' configurations to
                      (default DIR/nats/servers)

Prints the Secrets damon-fleet-nats, damon-fleet-controller and damon-fleet-agents as
YAML on stdout (secrets: pipe it into kubectl, do not keep it in a file).`;

class UsageError extends Error {}

function read(path) {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`${path}: ${err.code ?? err.message}; run damon-fleet credentials first (docs/deploy.md)`);
  }
}

function secret(name, role, files) {
  const keys = Object.keys(files).sort();
  return [
    '---',
    'apiVersion: v1',
    'kind: Secret',
    'metadata:',
    `  name: ${name}`,
    '  labels:',
    '    app.kubernetes.io/part-of: damon-fleet',
    `    app.kubernetes.io/component: ${role}`,
    'type: Opaque',
    'data:',
    // Keys are file names (letters, digits, '.', '-', '_'): plain YAML scalars.
    ...keys.map((k) => `  ${k}: ${files[k].toString('base64')}`),
    '',
  ].join('\n');
}

/** The three Secrets' YAML for credentials directory `dir`; throws naming what is missing. */
function renderSecrets(dir, confDir = join(dir, 'nats', 'servers')) {
  const layout = credentialsLayout(dir);
  const nats = { 'nats.conf': read(layout.natsConf) };
  for (const node of NATS_NODES) {
    const path = join(confDir, `${node}.conf`);
    const text = read(path);
    const body = text.toString('utf8');
    if (!body.includes(`server_name: "${node}"\n`)) {
      throw new Error(`${path}: not the configuration of node ${node}; give damon-fleet credentials --node ${NATS_NODES.join(' --node ')}`);
    }
    if (!body.includes(`include "${ACCOUNTS_INCLUDE}"\n`)) {
      throw new Error(`${path}: does not include ${ACCOUNTS_INCLUDE}; give damon-fleet credentials --server-conf DIR/nats/servers`);
    }
    nats[`${node}.conf`] = text;
  }
  const c = layout.controller;
  const controller = { 'nats.nk': read(c.natsSeed), 'identities.json': read(c.identities), 'agent-call.key': read(c.agentKey) };
  const agents = {};
  const hosts = existingIdentities(dir).agents;
  if (hosts.length === 0) throw new Error(`${dir}/agents: no agent hosts; give damon-fleet credentials --agent NODE=NODE_IP for each node`);
  for (const host of hosts) {
    const a = layout.agent(host);
    agents[`${host}.nats.nk`] = read(a.natsSeed);
    agents[`${host}.token`] = read(a.token);
    agents[`${host}.identities.json`] = read(a.identities);
  }
  return (
    secret('damon-fleet-nats', 'nats', nats) +
    secret('damon-fleet-controller', 'controller', controller) +
    secret('damon-fleet-agents', 'agent', agents)
  );
}

function main(argv) {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { dir: { type: 'string' }, 'nats-confs': { type: 'string' }, help: { type: 'boolean' } } }));
    if (values.help) {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (!values.dir) throw new UsageError('--dir DIR is required');
    if (!existsSync(values.dir) || readdirSync(values.dir).length === 0) throw new UsageError(`--dir ${values.dir}: no credentials there`);
  } catch (err) {
    process.stderr.write(`secrets.js: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  try {
    process.stdout.write(renderSecrets(values.dir, values['nats-confs']));
    return 0;
  } catch (err) {
    process.stderr.write(`secrets.js: ${err.message}\n`);
    return 1;
  }
}

process.exitCode = main(process.argv.slice(2));
