// The shape both long-running commands (controller, agent) share: parse, start, run until
// SIGINT/SIGTERM (or until the service reports a fatal error), stop. Exit codes: 0 stopped
// by a signal, 1 could not start or failed fatally, 2 bad usage.

/** What a running service gives back: a way to stop it and, optionally, a fatal failure. */
export interface ServiceHandle {
  stop(): Promise<void>;
  /** Rejects when the service cannot go on (e.g. a credential refused after start). */
  readonly fatal?: Promise<never>;
}

export interface ServiceMain<O, H extends ServiceHandle> {
  /** "controller", "agent": prefixes usage errors. */
  name: string;
  usage: string;
  /** Throws on bad arguments; `isUsageError` tells whether to print the usage too. */
  parse(argv: string[]): O;
  isUsageError(err: unknown): boolean;
  log: { info(msg: string): void; error(msg: string): void };
  start(options: O): Promise<H>;
}

export async function runServiceMain<O, H extends ServiceHandle>(
  argv: string[],
  m: ServiceMain<O, H>,
): Promise<{ code: number; handle?: H }> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(m.usage + '\n');
    return { code: 0 };
  }
  let options: O;
  try {
    options = m.parse(argv);
  } catch (err) {
    process.stderr.write(`damon-fleet ${m.name}: ${(err as Error).message}\n${m.isUsageError(err) ? m.usage + '\n' : ''}`);
    return { code: 2 };
  }
  let handle: H;
  try {
    handle = await m.start(options);
  } catch (err) {
    m.log.error(`cannot start: ${(err as Error).message}`);
    return { code: 1 };
  }
  let code = 0;
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      m.log.info(`${sig}: stopping`);
      resolve();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    handle.fatal?.catch((err: unknown) => {
      m.log.error(`${(err as Error).message}; stopping`);
      code = 1;
      resolve();
    });
  });
  await handle.stop();
  return { code, handle };
}
