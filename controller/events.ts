// Session events (SessionEvent protobuf) on damon.events.<session>, published after the
// change they report is committed to the bucket. The Nats-Msg-Id names that change
// (session, revision, kind, target), so a repeated publish is dropped by the stream.
import type { JetStreamClient } from '@nats-io/jetstream';
import type { BasicLogger as Logger } from '../common/log.js';
import { eventsSubject } from '../common/subjects.js';
import { SessionEvent, SessionEventKind, type Target } from '../gen/damon/v1/damon.js';

/** Nats-Msg-Id of the event reporting a change committed at `revision`. */
export function eventMsgId(sessionId: string, revision: number, kind: SessionEventKind, target?: Target): string {
  const t = target ? `/${target.host}/${target.pid}` : '';
  return `${sessionId}/${revision}/${SessionEventKind[kind]}${t}`;
}

export class EventPublisher {
  constructor(
    private readonly js: JetStreamClient,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Publishes one event; a failure is logged, not thrown: the change it reports is already
   * committed, and clients see the session's state in any case.
   */
  async publish(sessionId: string, revision: number, kind: SessionEventKind, reason: string, target?: Target): Promise<void> {
    const ev: SessionEvent = { sessionId, kind, target, reason, timeMs: BigInt(this.now()) };
    try {
      await this.js.publish(eventsSubject(sessionId), SessionEvent.encode(ev).finish(), {
        msgID: eventMsgId(sessionId, revision, kind, target),
      });
    } catch (err) {
      this.log.warn(`session ${sessionId}: could not publish ${SessionEventKind[kind]} event: ${(err as Error).message}`);
    }
  }
}
