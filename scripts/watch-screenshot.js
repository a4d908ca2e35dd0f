#!/usr/bin/env node
// Refreshes the README's text screenshot of `damon-fleet watch`: starts a small fleet here
// (nats-server, the controller, two agents, `sleep` processes as targets on the synthetic
// operations), runs `watch --screen` in a 100x40 window, takes its last frame and writes it
// between the README's watch-screenshot markers (and to docs/watch-screenshot.txt).
// Needs `npm run build` and nats-server (as the integration tests do).
//   node scripts/watch-screenshot.js
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { startFleet } = await import(new URL('../dist/test/integration/support/system-env.js', import.meta.url).href);

const COLUMNS = 100;
const LINES = 40;
const fleet = await startFleet(['host-a', 'host-b']);
let frame;
try {
  const targets = [fleet.target(), fleet.target(), fleet.target()];
  const hosts = ['host-a', 'host-a', 'host-b'];
  const env = { ...process.env, DAMON_FLEET_CONTROLLER: fleet.controllerAddress, DAMON_FLEET_TOKEN_FILE: fleet.creds.layout.operator.token, COLUMNS: String(COLUMNS), LINES: String(LINES) };
  const cli = (...args) => {
    const r = spawnSync(process.execPath, ['bin/damon-fleet.js', ...args], { cwd: root, env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`damon-fleet ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    return r.stdout;
  };
  cli('sessions', 'create', 'demo', '--attrs', '5000 100000 1000000 10 1000', '--operations', 'synthetic', '--workload', 'islands',
    '--targets', targets.map((t, i) => `${hosts[i]}:${t.pid}`).join(','));
  cli('sessions', 'on', 'demo');
  // Long enough for the regions to settle (adaptive merge and split) and the ages to grow.
  const out = cli('watch', 'demo', '--screen', '--top', '2', '--interval', '1s', '--count', '8');
  const frames = out.split('\x1b[H');
  frame = frames[frames.length - 1]
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .replace(/\r/g, '')
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')
    .trim();
  cli('sessions', 'off', 'demo');
} finally {
  await fleet.close();
}

writeFileSync(`${root}/docs/watch-screenshot.txt`, frame + '\n');
const readmePath = `${root}/README.md`;
const readme = readFileSync(readmePath, 'utf8');
const block = /(<!-- watch-screenshot -->\n)[\s\S]*?(<!-- \/watch-screenshot -->)/;
if (!block.test(readme)) throw new Error('README.md has no <!-- watch-screenshot --> ... <!-- /watch-screenshot --> block');
writeFileSync(readmePath, readme.replace(block, (_m, open, close) => `${open}\`\`\`text\n${frame}\n\`\`\`\n${close}`));
process.stdout.write(frame + '\n');
