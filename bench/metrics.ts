// What metrics cost the agent's event loop (the engines' timers share it): computing
// DAMON_STAT's summaries of one target, as a share of DAMON's default aggregation interval,
// and one /metrics scrape of an agent running many sessions, as a share of the scrape
// interval. Both are median wall time in this process over the repeats.
import { damonStat, type StatRegion } from '../common/damon-stat.js';
import { DamonStatReporter } from '../agent/daemon/damon-stat-reporter.js';
import { AgentMetrics } from '../agent/daemon/metrics.js';
import type { SessionRunner } from '../agent/daemon/session-runner.js';
import { silentLogger } from '../common/log.js';
import { TargetState } from '../gen/damon/v1/damon.js';
import { median, type Benchmark } from './benchmark.js';

const AGGREGATION_US = 100_000;
const SCRAPE_INTERVAL_S = 15;

function regions(n: number, seed: number): StatRegion[] {
  let x = seed;
  const rnd = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const out: StatRegion[] = [];
  let at = 0x7f0000000000;
  for (let i = 0; i < n; i++) {
    const size = 4096 * (1 + Math.floor(rnd() * 256));
    out.push({ start: at, end: at + size, nrAccesses: rnd() < 0.3 ? Math.floor(rnd() * 20) : 0, age: Math.floor(rnd() * 100) });
    at += size;
  }
  return out;
}

function timeMs(fn: () => unknown, times: number): number {
  const xs: number[] = [];
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    fn();
    xs.push(performance.now() - t0);
  }
  return median(xs);
}

async function timeAsyncMs(fn: () => Promise<unknown>, times: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    await fn();
    xs.push(performance.now() - t0);
  }
  return median(xs);
}

export const benchmark: Benchmark = {
  name: 'metrics',
  description: "DAMON_STAT's computation per target and one /metrics scrape of an agent with many sessions, as shares of the intervals they run in",
  async run(ctx) {
    const times = ctx.quick ? 3 : Math.max(5, ctx.repeats * 4);
    const statRows: Array<Array<string | number>> = [];
    const statData: Record<string, number> = {};
    const sizes = [100, 1000, 20_000];
    for (const [i, n] of sizes.entries()) {
      ctx.progress(`DAMON_STAT of ${n} regions`, i, sizes.length + 1);
      const input = [{ regions: regions(n, n), aggregationUs: AGGREGATION_US }];
      damonStat(input);
      const ms = timeMs(() => damonStat(input), times);
      statData[`regions${n}Ms`] = ms;
      statRows.push([n, ms.toFixed(3), ((ms * 1000) / AGGREGATION_US).toExponential(2)]);
    }

    // An agent with 100 sessions of 4 targets of 1000 regions each.
    ctx.progress('a scrape of 100 sessions', sizes.length, sizes.length + 1);
    const nSessions = 100;
    const reporter = new DamonStatReporter({ host: 'bench', instanceId: 'i', log: silentLogger });
    const runners: SessionRunner[] = [];
    for (let s = 0; s < nSessions; s++) {
      const id = `s${s}`;
      for (let t = 0; t < 4; t++) reporter.record(id, { targetId: 1000 + t, startNs: 0n, endNs: 1n, maxNrAccesses: 20, regions: regions(1000, s * 4 + t + 1) }, AGGREGATION_US);
      const observed = {
        sessionId: id,
        generation: 1n,
        running: true,
        targets: [0, 1, 2, 3].map((t) => ({ pid: 1000 + t, state: TargetState.TARGET_STATE_RUNNING, operations: 'page_idle', message: '' })),
        samplingIntervalMeanUs: 5100,
        aggregationIntervalMeanUs: 101_000,
        recordsPublished: 1234n,
        samplingIntervalUs: 5000n,
        aggregationIntervalUs: 100_000n,
      };
      runners.push({ spec: { sessionId: id }, observed: () => observed, engineCpu: () => ({ thread: 'sampler', threadSeconds: 12.5, jsSeconds: 3.25 }) } as unknown as SessionRunner);
    }
    const refreshMs = timeMs(() => reporter.refresh(), Math.min(times, 5));
    const metrics = new AgentMetrics({
      host: 'bench',
      instanceId: 'i',
      sessions: () => runners,
      publisher: () => ({ published: 0, dropped: 0, queued: 0, spooledBytes: 0 }),
      damonStat: () => reporter.current(),
      natsConnected: () => true,
      registered: () => true,
    });
    const text = await metrics.registry.metrics();
    const scrapeMs = await timeAsyncMs(() => metrics.registry.metrics(), times);
    const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
    ctx.progress('done', sizes.length + 1, sizes.length + 1);
    return {
      summary: {
        damonStat20000RegionsShareOfAggregation: (statData.regions20000Ms * 1000) / AGGREGATION_US,
        refresh100SessionsMs: refreshMs,
        scrape100SessionsMs: scrapeMs,
        scrapeShareOfInterval: scrapeMs / 1000 / SCRAPE_INTERVAL_S,
        series,
      },
      tables: [
        { title: "DAMON_STAT's summaries of one target (median)", columns: ['regions', 'ms', `share of a ${AGGREGATION_US / 1000} ms aggregation`], rows: statRows },
        {
          title: `An agent with ${nSessions} sessions x 4 targets x 1000 regions (median)`,
          columns: ['what', 'ms', 'share of its interval'],
          rows: [
            ['DAMON_STAT refresh (all sessions, every 5 s)', refreshMs.toFixed(1), (refreshMs / 5000).toExponential(2)],
            [`one /metrics scrape (${series} series, ${(text.length / 1024).toFixed(0)} KiB)`, scrapeMs.toFixed(1), (scrapeMs / 1000 / SCRAPE_INTERVAL_S).toExponential(2)],
          ],
        },
      ],
      notes: [
        'Wall time on the event loop of this process; the engines of the sessions are not running (their cost is measured by the overhead and guest-cpu benchmarks).',
        'A scrape reads each session once (observed state, engine CPU) and formats every series; the shares assume a 15 s scrape interval.',
      ],
      data: { stat: statData, refreshMs, scrapeMs, series, bytes: text.length },
    };
  },
};
