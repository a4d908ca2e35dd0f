// Calls to one agent's Agent service with the controller's credentials for that agent (the token
// derived for its host, and/or the controller's TLS client certificate), each with a deadline.
import * as grpc from '@grpc/grpc-js';
import { isStaleEpoch } from '../common/fencing.js';
import { statusMessage } from '../common/session-schema.js';
import { channelCredentials, clientOptions, type Credentials } from '../common/auth.js';
import {
  AgentClient,
  type ActionResult,
  type ApplyActionRequest,
  type ApplySessionResponse,
  type GetStateResponse,
  type SessionSpec,
} from '../gen/damon/v1/damon.js';

/** Options of AgentConnection. */
export interface AgentConnectionOptions {
  credentials: Credentials;
  /** Deadline of each call (default 5000 ms). */
  callTimeoutMs?: number;
  /** Name to verify the agent's certificate against when it differs from the address' host. */
  tlsServerName?: string;
  /**
   * Fencing: the leader's epoch sent with every call (throws when this controller does not
   * lead: nothing is sent), and what to do when the agent answers that it saw a newer one.
   */
  fence?: { epoch(): bigint; deposed(why: string): void };
}

/**
 * Deadline of an ApplyAction call: process_madvise of a large range (pageout writes to
 * swap) takes far longer than a state call.
 */
export const ACTION_CALL_TIMEOUT_MS = 60_000;

/** Pages of one GetState pull at most (a page holds at least one session). */
const MAX_STATE_PAGES = 10_000;

/** A client of one agent address. */
export class AgentConnection {
  private readonly client: AgentClient;
  private readonly timeoutMs: number;
  private readonly fence: AgentConnectionOptions['fence'];

  constructor(readonly address: string, options: AgentConnectionOptions) {
    this.fence = options.fence;
    const extra: Partial<grpc.ClientOptions> = options.tlsServerName
      ? { 'grpc.ssl_target_name_override': options.tlsServerName, 'grpc.default_authority': options.tlsServerName }
      : {};
    this.client = new AgentClient(address, channelCredentials(options.credentials), clientOptions(options.credentials, extra));
    this.timeoutMs = options.callTimeoutMs ?? 5000;
  }

  private call<Req, Res>(
    method: (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown,
    req: Req,
    timeoutMs = this.timeoutMs,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(this.client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (!err) return resolve(res);
        if (isStaleEpoch(err)) this.fence?.deposed(`agent at ${this.address}: ${err.details}`);
        reject(err);
      });
    });
  }

  private epoch(): bigint {
    return this.fence?.epoch() ?? 0n;
  }

  /** Agent.ApplySession: runs (or keeps running) the spec on the agent's host. */
  async apply(spec: SessionSpec): Promise<ApplySessionResponse> {
    return this.call(this.client.applySession, { spec, epoch: this.epoch() });
  }

  /** Agent.ApplyAction: the agent clips, applies (unless a dry run) and publishes the action. */
  async applyAction(req: Omit<ApplyActionRequest, 'epoch'>): Promise<ActionResult> {
    return this.call(this.client.applyAction, { ...req, epoch: this.epoch() }, Math.max(this.timeoutMs, ACTION_CALL_TIMEOUT_MS));
  }

  /** Agent.StopSession. */
  async stop(sessionId: string): Promise<void> {
    await this.call(this.client.stopSession, { sessionId, epoch: this.epoch() });
  }

  /**
   * Agent.GetState: what the agent runs now, every page of it (never refused by epoch; it
   * tells the agent the leader's).
   */
  async state(): Promise<GetStateResponse> {
    let res = await this.call(this.client.getState, { pageToken: '', epoch: this.epoch() });
    const sessions = [...res.sessions];
    for (let pages = 1; res.nextPageToken !== ''; pages++) {
      // Tokens are increasing session ids: one that does not advance is an agent's bug.
      const token = res.nextPageToken;
      if (pages > MAX_STATE_PAGES) throw new Error(`GetState: more than ${MAX_STATE_PAGES} pages`);
      res = await this.call(this.client.getState, { pageToken: token, epoch: this.epoch() });
      if (res.nextPageToken !== '' && res.nextPageToken <= token) throw new Error('GetState: page token did not advance');
      sessions.push(...res.sessions);
    }
    return { ...res, sessions, nextPageToken: '' };
  }

  close(): void {
    this.client.close();
  }
}

/**
 * "UNAVAILABLE: connection refused"-style text of a failed call, for logs and statuses;
 * an excerpt, since an agent's answer may quote what it was sent.
 */
export function callErrorText(err: unknown): string {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e?.code === 'number') return statusMessage(`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}`);
  return statusMessage(err instanceof Error ? err.message : String(err));
}
