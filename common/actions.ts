// Optimizers' actions (docs/actions.md): which SchemeActions a request may carry and the
// process_madvise advice each is, the checks of a request that both the controller and the
// agent make, and their text forms. The controller's rate limits are in
// controller/action-limits.ts; the agent's side in agent/daemon/action-runner.ts.
import * as grpc from '@grpc/grpc-js';
import { RpcError } from './grpc-server.js';
import { quoted } from './log.js';
import { HOST_RE, SESSION_ID_RE } from './subjects.js';
import { SchemeAction, type ActionRequest } from '../gen/damon/v1/damon.js';

/** The advice process_madvise(2) is asked for (agent/ops/process-madvise.ts's AdviceName). */
export type ActionAdvice = 'willneed' | 'cold' | 'pageout' | 'collapse';

/** The actions a request may carry, and their advice: what process_madvise takes from another process. */
export const ACTION_ADVICE: ReadonlyMap<SchemeAction, ActionAdvice> = new Map([
  [SchemeAction.SCHEME_ACTION_WILLNEED, 'willneed'],
  [SchemeAction.SCHEME_ACTION_COLD, 'cold'],
  [SchemeAction.SCHEME_ACTION_PAGEOUT, 'pageout'],
  [SchemeAction.SCHEME_ACTION_COLLAPSE, 'collapse'],
]);

/** The page size addresses are aligned to. */
export const ACTION_PAGE_SIZE = 4096n;

/** "pageout", "hugepage", ...: an action's name as the CLI and the messages write it. */
export function actionName(a: SchemeAction): string {
  const n = SchemeAction[a];
  return n === undefined ? `action ${a}` : n.replace(/^SCHEME_ACTION_/, '').toLowerCase();
}

/** The action named `name` ("pageout", ...); undefined for a name no action has. */
export function actionByName(name: string): SchemeAction | undefined {
  const a = SchemeAction[`SCHEME_ACTION_${name.toUpperCase()}` as keyof typeof SchemeAction];
  return typeof a === 'number' && a !== SchemeAction.SCHEME_ACTION_UNSPECIFIED && a !== SchemeAction.UNRECOGNIZED ? a : undefined;
}

const invalid = (m: string) => new RpcError(grpc.status.INVALID_ARGUMENT, m);

/** The advice of `action`, or INVALID_ARGUMENT saying why it cannot be requested. */
export function adviceOf(action: SchemeAction): ActionAdvice {
  const advice = ACTION_ADVICE.get(action);
  if (advice !== undefined) return advice;
  const possible = [...ACTION_ADVICE.keys()].map(actionName).join(', ');
  switch (action) {
    case SchemeAction.SCHEME_ACTION_STAT:
      throw invalid(`action: stat only counts regions in a scheme; it does nothing to a range (requestable: ${possible})`);
    case SchemeAction.SCHEME_ACTION_HUGEPAGE:
    case SchemeAction.SCHEME_ACTION_NOHUGEPAGE:
      throw invalid(
        `action: ${actionName(action)} is not possible through process_madvise(2) (it changes the mapping's flags, which only ` +
          `the process itself or the kernel's DAMOS can); requestable: ${possible}`,
      );
    case SchemeAction.SCHEME_ACTION_UNSPECIFIED:
      throw invalid(`action: required; one of ${possible}`);
    default:
      throw invalid(`action: unknown value ${action}; one of ${possible}`);
  }
}

/** "0x7f0000000000-0x7f0000200000". */
export function formatRange(r: { start: bigint; end: bigint }): string {
  return `0x${r.start.toString(16)}-0x${r.end.toString(16)}`;
}

/**
 * Checks what every request must be, before anything is looked up: session id, host and pid
 * well formed, the range page aligned and not empty, the action one process_madvise takes.
 * INVALID_ARGUMENT naming the field.
 */
export function checkActionRequest(req: ActionRequest): ActionAdvice {
  if (!SESSION_ID_RE.test(req.sessionId)) throw invalid(`session_id: not a session id: ${quoted(req.sessionId)}`);
  if (!HOST_RE.test(req.host)) throw invalid(`host: not a host name: ${quoted(req.host)}`);
  if (!Number.isSafeInteger(req.pid) || req.pid <= 0) throw invalid(`pid: must be a positive process id, got ${req.pid}`);
  if (req.start % ACTION_PAGE_SIZE !== 0n || req.end % ACTION_PAGE_SIZE !== 0n) {
    throw invalid(`range ${formatRange(req)}: start and end must be page aligned (multiples of ${ACTION_PAGE_SIZE})`);
  }
  if (req.end <= req.start) throw invalid(`range ${formatRange(req)}: end must be above start`);
  return adviceOf(req.action);
}
