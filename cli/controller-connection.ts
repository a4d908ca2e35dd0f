// The Controller API as the fleet commands call it: among several controllers (one leads,
// the others stand by) it goes where a standby points, tries the next address when one is
// unreachable, and waits out an election, within the call's timeout. It goes only to
// addresses it was given: a credential is never sent where a standby's answer alone says.
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { channelCredentials, clientOptions } from '../common/auth.js';
import { isStandbyRefusal, leaderNamedIn } from '../common/fencing.js';
import { ControllerClient, type AggregationRecord, type WatchRecordsRequest } from '../gen/damon/v1/damon.js';
import type { Connection } from './connection-options.js';
import { callError, isServiceError } from './exit-codes.js';

type Callback<Res> = (err: grpc.ServiceError | null, res: Res) => void;
type UnaryFn<Req, Res> = (req: Req, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: Callback<Res>) => grpc.ClientUnaryCall;
type ReqOf<M> = M extends (req: infer Req, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: Callback<infer _R>) => unknown ? Req : never;
type ResOf<M> = M extends (req: infer _Q, md: grpc.Metadata, o: Partial<grpc.CallOptions>, cb: Callback<infer Res>) => unknown ? Res : never;

/** The unary methods of the Controller service. */
export type UnaryMethod =
  | 'createSession' | 'getSession' | 'listSessions' | 'deleteSession' | 'setAttributes' | 'getAttributes'
  | 'setTargets' | 'turnOn' | 'turnOff' | 'listAgents' | 'requestAction';

/** Pause between two rounds while a standby says the controllers are electing a leader. */
const ELECTION_PAUSE_MS = 250;

export class ControllerConnection {
  private readonly clients = new Map<string, ControllerClient>();
  private current = 0;

  constructor(private readonly c: Connection) {}

  /** The controller talked to now (the leader, once found). */
  get address(): string {
    return this.c.controllers[this.current];
  }

  get timeoutMs(): number {
    return this.c.timeoutMs;
  }

  private client(): ControllerClient {
    let client = this.clients.get(this.address);
    if (!client) {
      const extra: Partial<grpc.ClientOptions> = this.c.tlsName ? { 'grpc.ssl_target_name_override': this.c.tlsName } : {};
      client = new ControllerClient(this.address, channelCredentials(this.c.credentials), clientOptions(this.c.credentials, extra));
      this.clients.set(this.address, client);
    }
    return client;
  }

  /** Calls `method`, following the leader; a failure becomes a CliError saying why. */
  async call<K extends UnaryMethod>(method: K, req: ReqOf<ControllerClient[K]>): Promise<ResOf<ControllerClient[K]>> {
    const deadline = Date.now() + this.c.timeoutMs;
    const round = new Set<string>();
    for (;;) {
      try {
        return await this.unary(method, req, deadline);
      } catch (err) {
        if (!isServiceError(err)) throw err;
        const next = this.afterFailure(err, round);
        if (next === 'stop' || Date.now() >= deadline) throw callError(err, this.address);
        if (next === 'wait') await delay(Math.min(ELECTION_PAUSE_MS, Math.max(0, deadline - Date.now())));
      }
    }
  }

  private unary<K extends UnaryMethod>(method: K, req: ReqOf<ControllerClient[K]>, deadline: number): Promise<ResOf<ControllerClient[K]>> {
    const client = this.client();
    const fn = client[method] as unknown as UnaryFn<ReqOf<ControllerClient[K]>, ResOf<ControllerClient[K]>>;
    return new Promise((resolve, reject) => {
      fn.call(client, req, new grpc.Metadata(), { deadline }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  /**
   * Where to go after a failed call: 'retry' (at the address now current), 'wait' (every
   * address was tried and the controllers are electing: try again shortly) or 'stop' (the
   * leader answered, or nothing answered). `round` holds the addresses tried since the
   * last answer.
   */
  afterFailure(err: grpc.ServiceError, round: Set<string>): 'retry' | 'wait' | 'stop' {
    if (err.code !== grpc.status.UNAVAILABLE) return 'stop'; // the leader answered (or the deadline passed)
    const list = this.c.controllers;
    round.add(this.address);
    const named = leaderNamedIn(err);
    if (named !== undefined && named !== this.address && list.includes(named) && !round.has(named)) {
      this.current = list.indexOf(named);
      return 'retry';
    }
    const untried = list.findIndex((a) => !round.has(a));
    if (untried >= 0) {
      this.current = untried;
      return 'retry';
    }
    if (isStandbyRefusal(err) && named === undefined) {
      round.clear(); // electing: go round again once the pause is over
      return 'wait';
    }
    return 'stop';
  }

  /** Opens WatchRecords at the controller talked to now (no deadline: it streams until cancelled). */
  watchRecords(req: WatchRecordsRequest): grpc.ClientReadableStream<AggregationRecord> {
    return this.client().watchRecords(req, new grpc.Metadata(), {});
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
