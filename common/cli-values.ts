// Durations, sizes and addresses as the commands take them ("500ms", "10s", "64M",
// "127.0.0.1:4222"), with errors that name the option. One syntax for every command.
import { quoted } from './log.js';

/** A bad command-line value: the command prints its usage and exits 2. */
export class OptionError extends Error {}

const DURATION_UNITS_US = { us: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6, d: 86_400e6 } as const;

/** "250us", "1.5s", "500ms", "10s", "5m", "24h", "7d" -> microseconds (positive). */
export function parseDurationUs(option: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(us|ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw new OptionError(`${option} ${text}: expected a duration like 500ms, 10s, 5m, 24h, 7d`);
  const us = Math.round(Number(m[1]) * DURATION_UNITS_US[m[2] as keyof typeof DURATION_UNITS_US]);
  if (us <= 0 || !Number.isSafeInteger(us)) throw new OptionError(`${option} ${text}: must be positive`);
  return us;
}

/** The same, in whole milliseconds (at least 1). */
export function parseDurationMs(option: string, text: string): number {
  const ms = Math.round(parseDurationUs(option, text) / 1000);
  if (ms <= 0) throw new OptionError(`${option} ${text}: must be positive (at least 1ms)`);
  return ms;
}

/** "1048576", "512K", "64M", "1G" -> bytes (positive). */
export function parseBytes(option: string, text: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (!m) throw new OptionError(`${option} ${text}: expected bytes like 1048576, 512K, 64M, 1G`);
  const v = Number(m[1]) * { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  if (v <= 0 || !Number.isSafeInteger(v)) throw new OptionError(`${option} ${text}: must be positive`);
  return v;
}

/** "HOST:PORT", "[::1]:PORT" or ":PORT" (every interface) -> host (brackets removed) and port. */
export function parseHostPort(option: string, text: string): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) throw new OptionError(`${option} ${quoted(text)}: expected HOST:PORT`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}
