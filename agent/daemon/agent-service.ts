// The damon.v1.Agent service: what the controller drives on this host. Handlers only
// translate; the session manager does the work.
import type { AsyncHandlers } from '../../common/grpc-server.js';
import type { ActionResult, AgentService, ApplyActionRequest, GetStateResponse, ObservedSession, SessionSpec } from '../../gen/damon/v1/damon.js';
import { checkSessionId } from '../../common/session-schema.js';
import type { EpochFence } from './epoch-fence.js';
import { parseSpec, type RunSpec } from './spec.js';
import { observedDigest, observedPage } from '../../common/observed-digest.js';

export interface SessionControl {
  /** `admit` runs first in the session's turn and throws to refuse. */
  apply(spec: RunSpec, admit?: () => void): Promise<ObservedSession>;
  stop(sessionId: string, admit?: () => void): Promise<void>;
  observed(): ObservedSession[];
}

export interface AgentIdentity {
  host: string;
  instanceId: string;
  operations: string[];
  unavailable: string[];
}

/** Agent.ApplyAction's worker (action-runner.ts). */
export interface ActionControl {
  apply(req: ApplyActionRequest): Promise<ActionResult>;
}

export function agentHandlers(
  sessions: SessionControl,
  identity: AgentIdentity,
  fence: EpochFence,
  actions: ActionControl,
): AsyncHandlers<typeof AgentService> {
  return {
    async applySession(req: { spec: SessionSpec | undefined; epoch: bigint }) {
      // parseSpec's SchemaError is an RpcError: INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
      const spec = parseSpec(req.spec);
      // Checked in the session's turn: a call queued behind another is judged when it acts.
      return { observed: await sessions.apply(spec, () => fence.admit(req.epoch, `ApplySession ${spec.sessionId}`)) };
    },
    async stopSession(req: { sessionId: string; epoch: bigint }) {
      const id = checkSessionId(req.sessionId, 'session_id');
      await sessions.stop(id, () => fence.admit(req.epoch, `StopSession ${id}`));
      return {};
    },
    async getState(req: { pageToken: string; epoch: bigint }): Promise<GetStateResponse> {
      fence.observe(req.epoch);
      // Session ids order the pages; a token that is not one is refused like any bad id.
      if (req.pageToken !== '') checkSessionId(req.pageToken, 'page_token');
      const all = sessions.observed();
      return {
        host: identity.host,
        instanceId: identity.instanceId,
        operations: identity.operations,
        unavailable: identity.unavailable,
        ...observedPage(all, req.pageToken),
        stateDigest: observedDigest(all),
      };
    },
    async applyAction(req: ApplyActionRequest) {
      // A deposed leader's forwarding is refused like its dispatches.
      fence.admit(req.epoch, `ApplyAction ${req.actionId}`);
      return actions.apply(req);
    },
  };
}
