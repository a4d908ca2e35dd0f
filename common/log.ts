// The controller's and agents' log: one line per event on stderr,
// "<ISO time> <LEVEL> <component>: <message>". Operators read it to learn what happened (a
// session turned on, NATS went away, ...), so repeated failures are logged once per change
// of state, not once per attempt.

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(component: string): Logger;
}

/** What code that only logs needs; `console` fits. */
export type BasicLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

export type LogSink = (line: string) => void;

const stderrSink: LogSink = (line) => process.stderr.write(line + '\n');

export function createLogger(component = 'agent', sink: LogSink = stderrSink): Logger {
  const emit = (level: string, msg: string) =>
    sink(`${new Date().toISOString()} ${level} ${component}: ${msg}`);
  return {
    info: (msg) => emit('INFO', msg),
    warn: (msg) => emit('WARN', msg),
    error: (msg) => emit('ERROR', msg),
    child: (sub) => createLogger(`${component}/${sub}`, sink),
  };
}

/** A logger that drops everything (tests that do not look at logs). */
export const silentLogger: Logger = {
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};

/**
 * Logs a condition only when it changes: `set('down', 'NATS unreachable: ...')` logs once
 * however often it is called while the state stays 'down'.
 */
export class StateLog<S extends string> {
  private state: S | undefined;
  constructor(private readonly log: Logger) {}

  get current(): S | undefined {
    return this.state;
  }

  /** Records the new state; logs `msg` (at `level`) only if the state changed. Returns whether it did. */
  set(state: S, msg: string, level: 'info' | 'warn' | 'error' = 'info'): boolean {
    if (this.state === state) return false;
    this.state = state;
    this.log[level](msg);
    return true;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * At most `max` characters of untrusted input, for a message or a log line: control
 * characters (newlines included) escaped as \xNN, the rest cut with an ellipsis (never
 * half a surrogate pair).
 */
export function excerpt(text: string, max = 64): string {
  let cut = text.length > max ? text.slice(0, max) : text;
  if (cut.length < text.length && /[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  const flat = cut.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return cut.length < text.length ? `${flat}…` : flat;
}

/** excerpt() in double quotes. */
export function quoted(text: string, max = 64): string {
  return `"${excerpt(text, max)}"`;
}
