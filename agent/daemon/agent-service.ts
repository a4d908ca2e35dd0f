// The damon.v1.Agent service: what the controller drives on this host. Handlers only
// translate; the session manager does the work.
import * as grpc from '@grpc/grpc-js';
import { RpcError, type AsyncHandlers } from '../../common/grpc-server.js';
import type { AgentService, GetStateResponse, ObservedSession, SessionSpec } from '../../gen/damon/v1/damon.js';
import { SESSION_ID_RE } from '../../common/subjects.js';
import { SpecError, parseSpec, type RunSpec } from './spec.js';

/** The part of a server call that tells who is calling. */
type PeerCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>;

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

/**
 * With mutual TLS, any certificate signed by the cluster CA passes the handshake; when
 * the CA also signs agents, `controllerIdentity` narrows the callers to the controller's
 * certificate (its CN or a DNS subject alternative name).
 */
export function peerIdentityCheck(controllerIdentity: string): (call: PeerCall) => void {
  return (call) => {
    const cert = call.getAuthContext().sslPeerCertificate;
    if (!cert || Object.keys(cert).length === 0) {
      throw new RpcError(grpc.status.UNAUTHENTICATED, 'no client certificate');
    }
    const names = new Set<string>();
    const cn = cert.subject?.CN;
    for (const n of Array.isArray(cn) ? cn : cn ? [cn] : []) names.add(n);
    for (const alt of (cert.subjectaltname ?? '').split(/,\s*/)) {
      if (alt.startsWith('DNS:')) names.add(alt.slice(4));
    }
    if (!names.has(controllerIdentity)) {
      throw new RpcError(
        grpc.status.PERMISSION_DENIED,
        `client certificate (${[...names].join(', ') || 'no names'}) is not the controller's (${controllerIdentity})`,
      );
    }
  };
}

export function agentHandlers(
  sessions: SessionControl,
  identity: AgentIdentity,
  checkPeer?: (call: PeerCall) => void,
): AsyncHandlers<typeof AgentService> {
  return {
    async applySession(req: { spec: SessionSpec | undefined }, call) {
      checkPeer?.(call);
      let spec: RunSpec;
      try {
        spec = parseSpec(req.spec);
      } catch (err) {
        if (err instanceof SpecError) throw new RpcError(grpc.status.INVALID_ARGUMENT, err.message);
        throw err;
      }
      return { observed: await sessions.apply(spec) };
    },
    async stopSession(req: { sessionId: string }, call) {
      checkPeer?.(call);
      if (!SESSION_ID_RE.test(req.sessionId)) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, `session_id: must match ${SESSION_ID_RE.source}, got "${req.sessionId}"`);
      }
      await sessions.stop(req.sessionId);
      return {};
    },
    async getState(_req, call): Promise<GetStateResponse> {
      checkPeer?.(call);
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
