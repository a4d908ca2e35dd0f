#!/usr/bin/env node
// damon-fleet <command> [options]: dispatches to the command's compiled entry point,
// each of which exports `main(argv) -> Promise<exit code>`.
const COMMANDS = {
  controller: '../dist/controller/main.js',
  agent: '../dist/agent/daemon/main.js',
  record: '../dist/agent/recorder/main.js',
  report: '../dist/agent/recorder/report.js',
  convert: '../dist/agent/recorder/convert.js',
  credentials: '../dist/common/credentials-main.js',
  sessions: '../dist/cli/sessions-main.js',
  agents: '../dist/cli/agents-main.js',
  watch: '../dist/cli/watch-main.js',
  act: '../dist/cli/act-main.js',
};

const [command, ...args] = process.argv.slice(2);
const usage = `usage: damon-fleet <command> [options]   (commands: ${Object.keys(COMMANDS).join(', ')}; <command> --help)`;
if (!command || command === '--help' || command === '-h') {
  process.stdout.write(usage + '\n');
  process.exit(command ? 0 : 2);
}
if (!Object.hasOwn(COMMANDS, command)) {
  process.stderr.write(`damon-fleet: unknown command "${command}"\n${usage}\n`);
  process.exit(2);
}
// A reader that stops early (`damon-fleet report FILE | head -1`) closes the pipe: stop
// quietly, as command-line tools do, whichever command was writing; other errors stay loud.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}
const { main } = await import(new URL(COMMANDS[command], import.meta.url).href);
process.exitCode = await main(args);
