// Controller.RequestAction (docs/actions.md): an optimizer's (or the operator's) action on
// a range of one target. Checked here in the order a caller can fix them (the request's
// form, the caller's grant, the session, the target), rate limited per caller and per
// target, then forwarded to the target host's agent (Agent.ApplyAction), which clips the
// range to the target's mappings, applies it and publishes the event. The session itself
// is never changed.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { actionName, checkActionRequest, formatRange } from '../common/actions.js';
import { describeCaller, mayActOn, type Caller } from '../common/grpc-access.js';
import { RpcError } from '../common/grpc-server.js';
import type { BasicLogger as Logger } from '../common/log.js';
import type { ActionRequest, ActionResult } from '../gen/damon/v1/damon.js';
import { callErrorText } from './agent-client.js';
import type { ActionRateLimiter } from './action-limits.js';
import type { AgentRegistry } from './registry.js';
import type { SessionStore } from './session-store.js';

export interface ActionDeps {
  store: Pick<SessionStore, 'mustGet'>;
  registry: Pick<AgentRegistry, 'live'>;
  limiter: ActionRateLimiter;
  log: Logger;
  newId?: () => string;
}

/** Who is asking, for messages and the event; an unauthenticated (--insecure) controller's callers act as the operator. */
function asker(caller: Caller | undefined): { label: string; caller: Pick<Caller, 'role' | 'sessions'> } {
  return caller ? { label: describeCaller(caller), caller } : { label: 'operator (--insecure)', caller: { role: 'operator' } };
}

export async function requestAction(req: ActionRequest, who: Caller | undefined, d: ActionDeps): Promise<ActionResult> {
  checkActionRequest(req);
  const { label, caller } = asker(who);
  const what = `${actionName(req.action)} of ${formatRange(req)} on ${req.host}:${req.pid}`;
  // Before the session is looked up: a caller learns nothing of sessions it was not granted.
  if (!mayActOn(caller, req.sessionId)) {
    throw new RpcError(grpc.status.PERMISSION_DENIED, `${label} may not act on session "${req.sessionId}" (not among the sessions its identity is granted)`);
  }
  const { session } = await d.store.mustGet(req.sessionId);
  if (session.state !== 'on') {
    throw new RpcError(grpc.status.FAILED_PRECONDITION, `session "${session.id}" is off: actions are taken on the targets of a session that is on`);
  }
  if (!session.targets.some((t) => t.host === req.host)) {
    throw new RpcError(grpc.status.NOT_FOUND, `session "${session.id}" has no target on host "${req.host}"`);
  }
  if (!session.targets.some((t) => t.host === req.host && t.pid === req.pid)) {
    throw new RpcError(grpc.status.NOT_FOUND, `pid ${req.pid} is not a target of session "${session.id}" on host "${req.host}"`);
  }
  const status = session.targetStatus.find((t) => t.host === req.host && t.pid === req.pid);
  if (status?.state === 'exited') {
    throw new RpcError(grpc.status.NOT_FOUND, `process exited: ${req.host}:${req.pid} of session "${session.id}" is no longer running`);
  }
  const agent = d.registry.live(req.host);
  if (!agent) throw new RpcError(grpc.status.UNAVAILABLE, `host "${req.host}" has no live agent: no action can be taken there now`);
  d.limiter.admit(label, req);
  const actionId = (d.newId ?? randomUUID)();
  try {
    const res = await agent.connection.applyAction({ request: req, actionId, requestedBy: label });
    d.log.info(
      `action ${actionId}: ${label} ${req.dryRun ? 'dry-ran' : 'applied'} ${what} of session ${session.id}: ` +
        `${res.bytesEligible} bytes eligible, ${res.bytesClipped} clipped, ${res.bytesApplied} advised`,
    );
    return res;
  } catch (err) {
    d.log.info(`action ${actionId}: ${label}'s ${what} of session ${session.id} refused: ${callErrorText(err)}`);
    throw err;
  }
}
