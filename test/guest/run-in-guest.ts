// Command line for the rig, for trying things in the guest by hand:
//   node dist/test/guest/run-in-guest.js [--timeout-ms N] [--mem-mib N] [--cpus N] [--console] 'command'
// Prints the command's stdout and stderr, the boot and total times, and exits with the
// command's exit status (125 with a message when the rig itself fails).
import { GuestRigError, runInGuest, type GuestRunOptions } from './rig.js';

function parseArgs(argv: string[]): { command: string; opts: GuestRunOptions; showConsole: boolean } {
  const opts: GuestRunOptions = {};
  let showConsole = false;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const number = (name: string): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v)) throw new Error(`${name} needs a whole number, got '${argv[i]}'`);
      return v;
    };
    if (arg === '--timeout-ms') opts.timeoutMs = number(arg);
    else if (arg === '--mem-mib') opts.memMiB = number(arg);
    else if (arg === '--cpus') opts.cpus = number(arg);
    else if (arg === '--console') showConsole = true;
    else if (arg.startsWith('--')) throw new Error(`unknown option '${arg}'`);
    else rest.push(arg);
  }
  if (rest.length !== 1) {
    throw new Error("expected one command (quote it): run-in-guest.js [--timeout-ms N] [--mem-mib N] [--cpus N] [--console] 'command'");
  }
  return { command: rest[0]!, opts, showConsole };
}

try {
  const { command, opts, showConsole } = parseArgs(process.argv.slice(2));
  const r = await runInGuest(command, opts);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  if (showConsole) process.stderr.write(`--- guest console\n${r.console}`);
  process.stderr.write(`[rig] exit ${r.exitCode}, boot ${Math.round(r.bootMs)} ms, total ${Math.round(r.totalMs)} ms\n`);
  process.exitCode = r.exitCode;
} catch (err) {
  const code = err instanceof GuestRigError ? ` (${err.code})` : '';
  process.stderr.write(`run-in-guest${code}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 125;
}
