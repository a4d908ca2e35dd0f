// The controller's Prometheus metrics (docs/metrics.md): sessions and targets by state
// (from the session bucket, at each scrape), agents registered and live, leadership, NATS.
// Records, latency, drift and CPU are the agents' own metrics: heartbeats carry no counters.
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { errorMessage, type BasicLogger as Logger } from '../common/log.js';
import type { Listing } from './session-store.js';

/** What the metrics read at each scrape. */
export interface ControllerMetricsSources {
  /** Every entry of the session bucket. */
  scan(): Promise<Listing>;
  /** Every agent registered since the controller started (live or not). */
  agents(): readonly { live: boolean }[];
  leading(): boolean;
  natsConnected(): boolean;
  log: Logger;
}

/** Collectors of one scrape run at once: they share one listing of the bucket. */
const LISTING_REUSE_MS = 1_000;

export class ControllerMetrics {
  readonly registry = new Registry();
  private listing: { at: number; result: Promise<Listing | undefined> } | undefined;
  /** The last listing failed (logged once until one succeeds). */
  private listingFailed = false;

  constructor(private readonly src: ControllerMetricsSources) {
    const register = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void | Promise<void>) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: register,
        async collect() {
          this.reset();
          await collect(this);
        },
      });

    gauge('damon_fleet_controller_leader', '1 while this controller leads (only the leader serves the API and dispatches).', [], (g) => g.set(src.leading() ? 1 : 0));
    gauge('damon_fleet_controller_nats_connected', '1 while the controller is connected to NATS.', [], (g) => g.set(src.natsConnected() ? 1 : 0));
    gauge('damon_fleet_controller_agents_registered', 'Agents registered with this controller since it started, live or not.', [], (g) => g.set(src.agents().length));
    gauge('damon_fleet_controller_agents_live', 'Agents holding a lease (heartbeating within the lease TTL).', [], (g) =>
      g.set(src.agents().filter((a) => a.live).length),
    );
    gauge('damon_fleet_controller_sessions', 'Sessions in the bucket, by state (on, off).', ['state'], async (g) => {
      const l = await this.scan();
      if (!l) return;
      g.set({ state: 'on' }, 0);
      g.set({ state: 'off' }, 0);
      for (const v of l.sessions) g.inc({ state: v.session.state });
    });
    gauge('damon_fleet_controller_sessions_quarantined', 'Bucket entries that break the session schema (never dispatched).', [], async (g) => {
      const l = await this.scan();
      if (l) g.set(l.quarantined.length);
    });
    gauge('damon_fleet_controller_session_targets', "Targets of the sessions that are on, by their last observed state.", ['state'], async (g) => {
      const l = await this.scan();
      if (!l) return;
      for (const v of l.sessions) {
        if (v.session.state !== 'on') continue;
        for (const t of v.session.targetStatus) g.inc({ state: t.state });
      }
    });
  }

  /** The bucket's entries, listed once for the collectors of one scrape; undefined when NATS cannot answer. */
  private scan(): Promise<Listing | undefined> {
    const now = Date.now();
    if (this.listing && now - this.listing.at < LISTING_REUSE_MS) return this.listing.result;
    const result = this.src.scan().then(
      (l) => {
        if (this.listingFailed) this.src.log.info('metrics: the session bucket answers again');
        this.listingFailed = false;
        return l;
      },
      (err: unknown) => {
        // The scrape goes on without the session figures; nats_connected tells why.
        if (!this.listingFailed) this.src.log.warn(`metrics: cannot list the session bucket (${errorMessage(err)}); session figures left out`);
        this.listingFailed = true;
        return undefined;
      },
    );
    this.listing = { at: now, result };
    return result;
  }
}
