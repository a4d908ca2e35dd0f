// What /proc/PID/stat says of a target process. A pid alone is not an identity (pids are
// reused), so a process is known by its pid and its start time (field 22); a zombie
// counts as exited. Shared by the operations, the kdamond engine and the agent.
import { readFileSync } from 'node:fs';

/** The state (field 3) and start time in clock ticks (field 22) of /proc/PID/stat text. */
export function parseProcStat(text: string, path: string): { state: string; startTicks: string } {
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const close = text.lastIndexOf(')');
  const fields = close < 0 ? [] : text.slice(close + 1).trim().split(/\s+/);
  if (fields.length < 20) throw new Error(`${path}: not a /proc/PID/stat line: "${text.trim().slice(0, 80)}"`);
  return { state: fields[0], startTicks: fields[19] };
}

/** True for the states of a process that has exited but was not reaped yet. */
export function isExitedState(state: string): boolean {
  return state === 'Z' || state === 'X' || state === 'x';
}

export type ProcessProbe =
  | { alive: true; startTicks: string }
  | { alive: false; reason: string };

/** Whether `pid` lives, and its start time. */
export function probeProcess(pid: number, procRoot = '/proc'): ProcessProbe {
  const path = `${procRoot}/${pid}/stat`;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return { alive: false, reason: 'no such process' };
    return { alive: false, reason: `cannot read ${path}: ${(err as Error).message}` };
  }
  let stat;
  try {
    stat = parseProcStat(text, path);
  } catch {
    return { alive: false, reason: `unreadable ${path}` };
  }
  if (isExitedState(stat.state)) return { alive: false, reason: 'process exited (zombie)' };
  return { alive: true, startTicks: stat.startTicks };
}
