// The damon.v1.Agent service: what the controller drives on this host. Handlers only
// translate; the session manager does the work.
import * as grpc from '@grpc/grpc-js';
import { RpcError, type AsyncHandlers } from '../../common/grpc-server.js';
import type { AgentService, GetStateResponse, ObservedSession, SessionSpec } from '../../gen/damon/v1/damon.js';
import { SESSION_ID_RE } from '../../common/subjects.js';
import { SpecError, parseSpec, type RunSpec } from './spec.js';

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
      let spec: RunSpec;
      try {
        spec = parseSpec(req.spec);
      } catch (err) {
        if (err instanceof SpecError) throw new RpcError(grpc.status.INVALID_ARGUMENT, err.message);
        throw err;
      }
      return { observed: await sessions.apply(spec) };
    },
    async stopSession(req: { sessionId: string }) {
      if (!SESSION_ID_RE.test(req.sessionId)) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, `session_id: must match ${SESSION_ID_RE.source}, got "${req.sessionId}"`);
      }
      await sessions.stop(req.sessionId);
      return {};
    },
    async getState(): Promise<GetStateResponse> {
      return {
        host: identity.host,
        instanceId: identity.instanceId,
        operations: identity.operations,
        unavailable: identity.unavailable,
        sessions: sessions.observed(),
      };
    },
  };
}
