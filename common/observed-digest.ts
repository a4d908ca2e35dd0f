// What an agent runs, in a form both sides can compare cheaply: the agent's heartbeat
// carries this digest instead of its observed sessions, and the controller pulls the
// sessions (Agent.GetState, in pages) only when the digest differs from what it knows.
import { createHash } from 'node:crypto';
import { ObservedSession } from '../gen/damon/v1/damon.js';

/**
 * Digest of observed sessions: ids, generations, running, each target's pid, state and
 * message, and the scheme statistics, in id order. Counters (records published, interval
 * drift) are left out: they change every interval and the controller does not act on them.
 * Scheme statistics are in, so that GetSession shows them; agents refresh them at most
 * every SCHEME_STATS_REPORT_MS (common/scheme-schema.ts), which bounds the GetState calls
 * they cost.
 */
export function observedDigest(sessions: Iterable<ObservedSession>): string {
  const h = createHash('sha256');
  const sorted = [...sessions].sort((a, b) => (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0));
  for (const s of sorted) {
    h.update(JSON.stringify([s.sessionId, String(s.generation), s.running, s.targets.map((t) => [t.pid, t.state, t.operations, t.message])]));
    for (const st of s.schemeStats ?? []) {
      h.update(JSON.stringify([st.scheme, String(st.nrTried), String(st.szTried), String(st.nrApplied), String(st.szApplied), String(st.qtExceeds), st.active]));
    }
    h.update('\n');
  }
  return h.digest('base64url');
}

/** Bytes of GetState sessions per page; a page holds at least one session whatever its size. */
export const STATE_PAGE_BYTES = 1024 * 1024;

/**
 * One page of observed sessions after `pageToken` (the last id of the previous page), in id
 * order, at most STATE_PAGE_BYTES encoded (at least one session).
 */
export function observedPage(sessions: ObservedSession[], pageToken: string): { sessions: ObservedSession[]; nextPageToken: string } {
  const sorted = sessions
    .filter((s) => pageToken === '' || s.sessionId > pageToken)
    .sort((a, b) => (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0));
  const page: ObservedSession[] = [];
  let bytes = 0;
  for (const s of sorted) {
    const n = ObservedSession.encode(s).finish().length + 8;
    if (page.length > 0 && bytes + n > STATE_PAGE_BYTES) break;
    page.push(s);
    bytes += n;
  }
  const more = page.length < sorted.length;
  return { sessions: page, nextPageToken: more ? page[page.length - 1].sessionId : '' };
}
