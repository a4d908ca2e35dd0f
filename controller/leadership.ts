// Which of several controllers on one NATS leads: a lease in the JetStream KV bucket
// damon_leader (one key), taken and renewed by compare-and-set on the key's revision. The
// others stand by, and take the lease over once its revision has not changed for a whole
// TTL by their own clock. A controller's epoch is the revision at which it took the lease,
// after the bucket's creation time: a later leader's is higher (even once NATS's store was
// wiped and the bucket made anew, while agents remember older epochs), and fencing
// (docs/controller.md) compares epochs so that a deposed leader's writes and dispatches
// are refused.
import { performance } from 'node:perf_hooks';
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { openBucket } from '../common/nats.js';
import { standbyError } from '../common/fencing.js';
import { RpcError } from '../common/grpc-server.js';
import { errorMessage, excerpt, type BasicLogger as Logger } from '../common/log.js';
import { LEADER_BUCKET, LEADER_KEY, LEADER_STREAM } from '../common/subjects.js';

/** What the lease key holds: who leads and where its gRPC service is. */
export interface LeaseHolder {
  /** The holding controller's instance id (new on every start). */
  id: string;
  /** Its advertised gRPC address. */
  address: string;
}

export type Role = { role: 'leader'; epoch: bigint } | { role: 'standby'; leader: string | undefined };

export interface LeadershipOptions {
  /** This controller's instance id. */
  id: string;
  /** Its advertised gRPC address (what standbys name to callers). */
  address: string;
  /** Lease TTL: a standby takes over after the lease went this long without a renewal. */
  ttlMs: number;
  log: Logger;
  /** Monotonic milliseconds (default performance.now: it keeps running while the process is stopped). */
  now?: () => number;
  /**
   * Called on each change of role, one at a time: 'leader' before this controller acts as
   * leader, 'standby' after it stopped doing so (the callee stops its loop and forgets agents).
   */
  onRole: (r: Role) => Promise<void>;
}

function isCasConflict(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

function parseHolder(text: string): LeaseHolder | undefined {
  try {
    const v = JSON.parse(text) as Partial<LeaseHolder>;
    return typeof v.id === 'string' && typeof v.address === 'string' ? { id: v.id, address: v.address } : undefined;
  } catch {
    return undefined;
  }
}

export class Leadership {
  private readonly now: () => number;
  private readonly value: string;
  private leading = false;
  private epoch = 0n;
  /** Leader: the revision of its last write of the key. */
  private revision = 0;
  /** Leader: by its own clock, the lease is safely its own until then. */
  private validUntil = 0;
  /** Standby: the key's revision as last read, and when it was first seen. */
  private seen: { revision: number; at: number } | undefined;
  private leader: LeaseHolder | undefined;
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private transitions: Promise<void> = Promise.resolve();
  private stopped = false;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly kv: KV,
    private readonly opts: LeadershipOptions,
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.value = JSON.stringify({ id: opts.id, address: opts.address } satisfies LeaseHolder);
  }

  /** Opens (creating if needed) the damon_leader bucket with `replicas` copies. */
  static async open(js: JetStreamClient, opts: LeadershipOptions, replicas = 1): Promise<Leadership> {
    const kv = await openBucket(js, LEADER_BUCKET, replicas);
    return new Leadership(js, kv, opts);
  }

  /** Renewals (leader) and reads (standby) happen this often. */
  get tickMs(): number {
    return Math.max(10, Math.floor(this.opts.ttlMs / 4));
  }

  /**
   * A renewal sent at t keeps the lease until t + 3/4 TTL by the leader's clock: a standby
   * waits a whole TTL from when it saw that renewal, which was after t, so the leader stops
   * first by a quarter TTL of margin.
   */
  private get validityMs(): number {
    return Math.floor((this.opts.ttlMs * 3) / 4);
  }

  /** The first round (takes a free lease at once), then rounds every tickMs. */
  async start(): Promise<void> {
    await this.round();
    this.schedule();
    this.watchdog = setInterval(() => this.checkValidity(), Math.max(5, Math.floor(this.tickMs / 2)));
  }

  /** The epoch while this controller leads with a valid lease, else undefined. */
  currentEpoch(): bigint | undefined {
    if (!this.leading) return undefined;
    if (this.now() >= this.validUntil) {
      this.stepDown(`lease not renewed within ${this.validityMs} ms`);
      return undefined;
    }
    return this.epoch;
  }

  /** The epoch to stamp on a write or a dispatch; UNAVAILABLE (naming the leader) when not leading. */
  assertLeader(): bigint {
    const e = this.currentEpoch();
    if (e === undefined) throw this.standbyError();
    return e;
  }

  /** What a standby answers to a call only the leader serves. */
  standbyError(): RpcError {
    return standbyError(this.leader && this.leader.id !== this.opts.id ? this.leader.address : undefined);
  }

  /** The leader's address as last read (this controller's own while it leads). */
  leaderAddress(): string | undefined {
    if (this.leading) return this.opts.address;
    return this.leader?.address;
  }

  /** Someone saw a newer epoch (a session entry, an agent): this controller was deposed. */
  deposed(why: string): void {
    if (this.leading) this.stepDown(`deposed: ${why}`);
  }

  /** Stops taking part; a leader releases the lease (deletes the key) so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.watchdog) clearInterval(this.watchdog);
    await this.ticking;
    if (this.leading) {
      const revision = this.revision;
      this.stepDown('stopping');
      try {
        await this.kv.delete(LEADER_KEY, { previousSeq: revision });
        this.opts.log.info('leadership: lease released');
      } catch (err) {
        this.opts.log.warn(`leadership: could not release the lease (${errorMessage(err)}); a standby takes over when it lapses`);
      }
    }
    await this.transitions;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.ticking = this.round().finally(() => {
        this.ticking = undefined;
        this.schedule();
      });
    }, this.tickMs);
  }

  private checkValidity(): void {
    if (this.leading && this.now() >= this.validUntil) this.stepDown(`lease not renewed within ${this.validityMs} ms`);
  }

  private async round(): Promise<void> {
    try {
      if (this.leading) await this.renew();
      else await this.standBy();
    } catch (err) {
      // NATS unreachable: a leader keeps trying until its lease lapses (the watchdog steps
      // it down); a standby cannot take over without NATS either.
      this.opts.log.warn(`leadership: ${errorMessage(err)}`);
    }
  }

  private async renew(): Promise<void> {
    const sentAt = this.now();
    const epoch = this.epoch;
    try {
      const revision = await this.kv.update(LEADER_KEY, this.value, this.revision);
      if (!this.leading || this.epoch !== epoch) return; // stepped down meanwhile
      this.revision = revision;
      this.validUntil = sentAt + this.validityMs;
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      // A renewal whose answer was lost may have been written: if the key is still ours, go on.
      const e = await this.kv.get(LEADER_KEY);
      const holder = e?.operation === 'PUT' ? parseHolder(e.string()) : undefined;
      if (e && holder?.id === this.opts.id && this.leading && this.epoch === epoch) {
        this.revision = e.revision;
        return;
      }
      this.leader = holder;
      this.stepDown(holder ? `the lease was taken by ${excerpt(holder.address)}` : 'the lease was released');
    }
  }

  private async standBy(): Promise<void> {
    const e = await this.kv.get(LEADER_KEY);
    const now = this.now();
    if (!e || e.operation !== 'PUT') {
      await this.take(0, 'no controller held the lease');
      return;
    }
    this.leader = parseHolder(e.string());
    // Still this controller's own last renewal (it stepped down while NATS was away or it
    // was paused, and nobody took over): take it back at once, by compare-and-set as ever.
    if (this.leader?.id === this.opts.id && e.revision === this.revision) {
      await this.take(e.revision, 'the lease was still this controller\'s');
      return;
    }
    if (this.seen?.revision !== e.revision) {
      this.seen = { revision: e.revision, at: now };
      return;
    }
    const idle = now - this.seen.at;
    if (idle >= this.opts.ttlMs) {
      await this.take(e.revision, `the lease of ${excerpt(this.leader?.address ?? 'an unreadable holder')} lapsed (not renewed for ${Math.round(idle)} ms)`);
    }
  }

  /** Takes the lease by compare-and-set on `revision` (0: the key is absent or deleted). */
  private async take(revision: number, why: string): Promise<void> {
    const base = await this.epochBase();
    const sentAt = this.now();
    let taken: number;
    try {
      taken = revision === 0 ? await this.kv.create(LEADER_KEY, this.value) : await this.kv.update(LEADER_KEY, this.value, revision);
    } catch (err) {
      if (isCasConflict(err)) {
        this.seen = undefined; // another standby was quicker: read who leads next round
        return;
      }
      throw err;
    }
    if (this.stopped) {
      await this.kv.delete(LEADER_KEY, { previousSeq: taken }).catch(() => undefined);
      return;
    }
    this.leading = true;
    this.epoch = base | BigInt(taken >>> 0);
    this.revision = taken;
    this.validUntil = sentAt + this.validityMs;
    this.leader = { id: this.opts.id, address: this.opts.address };
    this.seen = undefined;
    this.opts.log.info(`leadership: leading (epoch ${this.epoch}, lease revision ${taken}; ${why})`);
    this.transition({ role: 'leader', epoch: this.epoch });
    await this.transitions;
  }

  /**
   * The high bits of the epoch of a lease taken now: the bucket's creation time in seconds.
   * The revision fills the low 32 (renewals every second would take a century to fill them).
   */
  private async epochBase(): Promise<bigint> {
    const info = await (await this.js.jetstreamManager()).streams.info(LEADER_STREAM);
    return BigInt(Math.floor(Date.parse(info.created) / 1000)) << 32n;
  }

  private stepDown(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.seen = undefined;
    const leader = this.leader && this.leader.id !== this.opts.id ? this.leader.address : undefined;
    this.opts.log.warn(`leadership: standing by (epoch ${this.epoch} ended: ${why})`);
    this.transition({ role: 'standby', leader });
  }

  private transition(r: Role): void {
    this.transitions = this.transitions.then(() =>
      this.opts.onRole(r).catch((err) => this.opts.log.error(`leadership: becoming ${r.role}: ${errorMessage(err)}`)),
    );
  }
}
