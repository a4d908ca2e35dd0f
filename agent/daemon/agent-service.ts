// The damon.v1.Agent service: what the controller drives on this host. Handlers only
// translate; the session manager does the work.
import type { AsyncHandlers } from '../../common/grpc-server.js';
import type { AgentService, GetStateResponse, ObservedSession, SessionSpec } from '../../gen/damon/v1/damon.js';
import { checkSessionId } from '../../common/session-schema.js';
import { parseSpec, type RunSpec } from './spec.js';
import { observedDigest, observedPage } from '../../common/observed-digest.js';

export interface SessionControl {
  apply(spec: RunSpec): Promise<ObservedSession>;
  stop(sessionId: string): Promise<void>;
  observed(): ObservedSession[];
}

export interface AgentIdentity {
  host: string;
  instanceId: string;
  operations: string[];
  unavailable: string[];
}

export function agentHandlers(
  sessions: SessionControl,
  identity: AgentIdentity,
): AsyncHandlers<typeof AgentService> {
  return {
    async applySession(req: { spec: SessionSpec | undefined }) {
      // parseSpec's SchemaError is an RpcError: INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
      return { observed: await sessions.apply(parseSpec(req.spec)) };
    },
    async stopSession(req: { sessionId: string }) {
      await sessions.stop(checkSessionId(req.sessionId, 'session_id'));
      return {};
    },
    async getState(req: { pageToken: string }): Promise<GetStateResponse> {
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
  };
}
