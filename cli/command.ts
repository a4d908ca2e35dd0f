// How a fleet command runs: parse, act, print; a failure is one line on stderr (a JSON
// line with --json) and an exit code from exit-codes.ts, never a stack trace.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorMessage } from '../common/log.js';
import { CliError, Exit, UsageError } from './exit-codes.js';

/** Where a command writes; tests pass their own. */
export interface Io {
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

export const processIo: Io = { out: process.stdout, err: process.stderr };

/** parseArgs, with its errors as UsageError (and a word for whoever tries to pass a token itself). */
export function parseCommandLine<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  if (args.some((a) => a === '--token' || a.startsWith('--token='))) {
    throw new UsageError('--token: give the token in a file, --token-file FILE (a token on a command line shows in ps and in shell history)');
  }
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}

/** Prints lines (text output) or one JSON document. */
export function print(io: Io, lines: readonly string[]): void {
  io.out.write(lines.length > 0 ? lines.join('\n') + '\n' : '');
}

export function printJson(io: Io, value: unknown): void {
  io.out.write(JSON.stringify(value, null, 2) + '\n');
}

/**
 * Runs `body` as command `name` ("sessions on"): resolves the exit code. `--help` prints
 * `usage`; a UsageError says what is wrong and where the usage is.
 */
export async function runCommand(name: string, usage: string, argv: readonly string[], io: Io, body: () => Promise<number | void>): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out.write(usage + '\n');
    return Exit.Ok;
  }
  const json = argv.includes('--json');
  try {
    return (await body()) ?? Exit.Ok;
  } catch (err) {
    const e = err instanceof CliError ? err : new CliError(Exit.Failure, errorMessage(err));
    if (json) {
      io.err.write(JSON.stringify({ error: { message: e.message, exitCode: e.exitCode, ...(e.status ? { status: e.status } : {}) } }) + '\n');
    } else {
      const hint = e instanceof UsageError ? ` (damon-fleet ${name.split(' ')[0]} --help)` : '';
      io.err.write(`damon-fleet ${name}: ${e.message}${hint}\n`);
    }
    return e.exitCode;
  }
}
