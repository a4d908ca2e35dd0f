// `damon-fleet act`: one action on a range of one target of a session (Controller.RequestAction;
// docs/actions.md), and what was done: the ranges advised after clipping to the target's
// mappings, the bytes left out, the bytes the kernel advised.
import { ActionResult } from '../gen/damon/v1/damon.js';
import { ACTION_ADVICE, actionByName, actionName, formatRange } from '../common/actions.js';
import { quoted } from '../common/log.js';
import { formatBytes } from '../agent/recorder/format.js';
import { CONNECTION_OPTIONS, CONNECTION_USAGE, parseConnection, type ConnectionValues } from './connection-options.js';
import { ControllerConnection } from './controller-connection.js';
import { Exit, UsageError } from './exit-codes.js';
import { parseCommandLine, print, printJson, processIo, runCommand, type Io } from './command.js';

const ACTIONS = [...ACTION_ADVICE.keys()].map(actionName).join(', ');

export const USAGE = `usage: damon-fleet act SESSION HOST:PID START-END ACTION [--dry-run] [options]

  Asks the controller to apply ACTION (${ACTIONS}) to [START, END) of process PID
  on HOST, a target of SESSION (which must be on). START and END are page-aligned
  addresses, hex (0x7f...) or decimal. The target's agent clips the range to the
  process's mappings and applies the advice with process_madvise(2); the answer says
  which ranges were advised, how many bytes were outside every mapping, and how many
  the kernel advised. Every action is also an event on NATS (damon.actions.SESSION.HOST).
  Needs the operator's credential, or an optimizer's granted SESSION.

  --dry-run                   everything but the advice itself: checks, rate limits, clipping

${CONNECTION_USAGE}

Exit codes: 0 done, 1 failure, 2 usage or invalid request (an unknown action, a range not
page aligned, an action the kernel cannot apply to part of the range) or over a rate limit,
3 not found (session, target, exited process), 4 not possible now (session off, the agent
lacks the capability, the kernel lacks the advice), 5 credential refused or not granted,
6 no controller (or the host's agent) available.`;

const OPTIONS = { ...CONNECTION_OPTIONS, 'dry-run': { type: 'boolean', default: false } } as const;

function parseAddress(text: string, what: string): bigint {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(text)) throw new UsageError(`${what}: not an address (hex 0x... or decimal): ${quoted(text)}`);
  const v = BigInt(text);
  if (v >= 1n << 64n) throw new UsageError(`${what}: beyond 64 bits: ${quoted(text)}`);
  return v;
}

/** "HOST:PID" -> host and pid. */
export function parseTarget(text: string): { host: string; pid: number } {
  const i = text.lastIndexOf(':');
  const pid = Number(text.slice(i + 1));
  if (i <= 0 || !/^[0-9]+$/.test(text.slice(i + 1)) || !Number.isSafeInteger(pid) || pid <= 0 || pid > 0x7fffffff) {
    throw new UsageError(`target: expected HOST:PID, got ${quoted(text)}`);
  }
  return { host: text.slice(0, i), pid };
}

/** "START-END" -> the range. */
export function parseRange(text: string): { start: bigint; end: bigint } {
  const m = /^([^-]+)-([^-]+)$/.exec(text);
  if (!m) throw new UsageError(`range: expected START-END, got ${quoted(text)}`);
  return { start: parseAddress(m[1], 'range start'), end: parseAddress(m[2], 'range end') };
}

/** The answer as lines for a person. */
export function actionText(r: ActionResult): string[] {
  const b = (n: bigint) => `${n} bytes${n >= 1024n ? ` (${formatBytes(Number(n))})` : ''}`;
  const verb = r.dryRun ? 'dry run of' : 'applied';
  const lines = [
    `action ${r.actionId}: ${verb} ${actionName(r.action)} of ${r.requested ? formatRange(r.requested) : '?'} on ${r.host}:${r.pid} (session ${r.sessionId})`,
    `  eligible: ${b(r.bytesEligible)} in ${r.ranges.length} range(s)${r.ranges.length ? ': ' : ''}${r.ranges.slice(0, 8).map(formatRange).join(', ')}${r.ranges.length > 8 ? ', …' : ''}`,
    `  clipped:  ${b(r.bytesClipped)} outside the target's mappings`,
    `  advised:  ${r.dryRun ? '0 bytes (dry run)' : b(r.bytesApplied)}${r.durationUs > 0n ? ` in ${(Number(r.durationUs) / 1000).toFixed(1)} ms` : ''}`,
  ];
  if (r.message) lines.push(`  note: ${r.message}`);
  return lines;
}

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  return runCommand('act', USAGE, argv, io, async () => {
    const { values, positionals } = parseCommandLine(argv, OPTIONS);
    if (positionals.length !== 4) throw new UsageError(`expected SESSION HOST:PID START-END ACTION, got ${positionals.length} argument(s)`);
    const [sessionId, targetText, rangeText, actionWord] = positionals;
    const { host, pid } = parseTarget(targetText);
    const { start, end } = parseRange(rangeText);
    const action = actionByName(actionWord);
    if (action === undefined) throw new UsageError(`action: one of ${ACTIONS}, got ${quoted(actionWord)}`);
    const v = values as ConnectionValues & { 'dry-run': boolean };
    const conn = new ControllerConnection(parseConnection(v));
    try {
      const r = await conn.call('requestAction', { sessionId, host, pid, start, end, action, dryRun: v['dry-run'] });
      if (v.json) printJson(io, ActionResult.toJSON(r));
      else print(io, actionText(r));
    } finally {
      conn.close();
    }
    return Exit.Ok;
  });
}
