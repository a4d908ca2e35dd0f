// Takeover by a standby controller: two real controllers (processes) on one NATS, one real
// agent given both addresses, a session on. Each repeat stops the leader (kill -9, and a
// graceful SIGTERM that releases the lease) and measures, from the signal, when the
// standby answers the Controller API as leader and when the agent is registered with it;
// then the stopped one is started again as the next standby. Records go on meanwhile: the
// largest gap between consecutive records and whether their sequences stayed contiguous
// (no second dispatch) are reported too.
import { performance } from 'node:perf_hooks';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../common/nats.js';
import type { ControllerClient } from '../gen/damon/v1/damon.js';
import { FAST_ATTRS, killTarget, spawnTarget, tempDir } from '../test/integration/support/agent-env.js';
import { spawnAgent, spawnController, type FleetProcess } from '../test/integration/support/fleet-processes.js';
import { controllerClient, servesAsLeader, unary, waitFor } from '../test/integration/support/grpc-client.js';
import { freePort, startNatsServer } from '../test/integration/support/nats-server.js';
import { endMs, recordsOf, watchRecords } from '../test/integration/support/nats-watch.js';
import { median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const HOST = 'takeover-host';
/** The controller's default --leader-lease (controller/main.ts): what a user gets. */
const LEADER_LEASE_MS = 3000;
const AGENT_LEASE_MS = 5000;
const HEARTBEAT_MS = 1000;

type Stop = 'kill -9' | 'SIGTERM';

interface Takeover {
  stop: Stop;
  /** Signal -> the standby answers ListSessions (it leads and serves). */
  leadsMs: number;
  /** Signal -> the agent is live on the new leader (same instance). */
  agentMs: number;
}

async function run(b: BenchContext): Promise<BenchResult> {
  const stops: Stop[] = ['kill -9', 'SIGTERM'];
  const total = 1 + b.repeats * stops.length;
  let done = 0;
  const tick = (what: string) => b.progress(what, ++done, total);

  const nats = await startNatsServer({ agents: [HOST] });
  const data = tempDir('damon-bench-takeover-');
  const target = spawnTarget();
  const addr: string[] = [];
  const clients: ControllerClient[] = [];
  const ctl: FleetProcess[] = [];
  const procs: FleetProcess[] = [];
  let nc: NatsConnection | undefined;
  const start = async (i: number) => {
    ctl[i] = await spawnController({ name: `controller ${i + 1}`, listen: addr[i], nats: nats.url, credentials: nats.credentials, leaseTtlMs: AGENT_LEASE_MS, heartbeatMs: HEARTBEAT_MS });
    procs.push(ctl[i]);
  };
  const leads = (i: number) => servesAsLeader(clients[i]);
  try {
    for (let i = 0; i < 2; i++) {
      addr[i] = `127.0.0.1:${await freePort()}`; // just before the start: the port stays free
      await start(i);
      clients.push(controllerClient(addr[i], nats.credentials.grpc.operator));
    }
    const agent = await spawnAgent({ host: HOST, controller: addr.join(','), nats: nats.url, credentials: nats.credentials, dataDir: data.path });
    procs.push(agent);
    const agentOn = async (i: number) => {
      const { agents } = await unary(clients[i], 'listAgents', {}).catch(() => ({ agents: [] }));
      return agents.some((a) => a.host === HOST && a.live && a.instanceId === agent.instanceId);
    };
    await waitFor('the agent registered', () => agentOn(0), 30_000);
    nc = await connectNats({ servers: nats.url, nkeyFile: nats.credentials.reader() });
    const recs = watchRecords(nc, 'takeover');
    await nc.flush();
    await unary(clients[0], 'createSession', { id: 'takeover', attrs: { ...FAST_ATTRS }, attrsText: '', schemesText: '', targets: [{ host: HOST, pid: target.pid }], operations: 'synthetic', syntheticWorkload: 'hot5' });
    await unary(clients[0], 'turnOn', { id: 'takeover' });
    await waitFor('records', () => recs.items.length >= 3, 10_000);
    tick('fleet up');

    const runs: Takeover[] = [];
    let leader = 0;
    for (let r = 0; r < b.repeats; r++) {
      for (const stop of stops) {
        const next = 1 - leader;
        const t0 = performance.now();
        if (stop === 'kill -9') await ctl[leader].kill9();
        else await ctl[leader].stop(10_000);
        let leadsMs = 0;
        await waitFor('the standby leads', async () => (await leads(next)) && (leadsMs = performance.now() - t0) > 0, 60_000, 10);
        let agentMs = 0;
        await waitFor('the agent on the new leader', async () => (await agentOn(next)) && (agentMs = performance.now() - t0) > 0, 60_000, 10);
        runs.push({ stop, leadsMs, agentMs });
        await start(leader); // the next standby
        leader = next;
        tick(`${stop}, repeat ${r + 1}`);
      }
    }
    recs.stop();
    const rs = recordsOf(recs.items, HOST, target.pid);
    const seqs = rs.map((x) => x.msg.sequence);
    const contiguous = seqs.every((s, i) => s === seqs[0] + BigInt(i));
    const maxGapMs = Math.max(...rs.slice(1).map((x, i) => endMs(x.msg) - endMs(rs[i].msg)));
    const dispatches = procs.filter((p) => p.name.startsWith('controller')).flatMap((p) => p.log).filter((l) => l.includes('session takeover: dispatching')).length;

    const of = (s: Stop) => runs.filter((x) => x.stop === s);
    const kill = of('kill -9');
    const term = of('SIGTERM');
    return {
      summary: {
        takeoverKill9P50Ms: median(kill.map((x) => x.leadsMs)),
        takeoverKill9MaxMs: Math.max(...kill.map((x) => x.leadsMs)),
        agentOnNewLeaderKill9P50Ms: median(kill.map((x) => x.agentMs)),
        takeoverSigtermP50Ms: median(term.map((x) => x.leadsMs)),
        agentOnNewLeaderSigtermP50Ms: median(term.map((x) => x.agentMs)),
        takeoverKill9ToLeaseRatio: median(kill.map((x) => x.leadsMs)) / LEADER_LEASE_MS,
        leaderLeaseMs: LEADER_LEASE_MS,
        recordSequencesContiguous: contiguous,
        largestRecordGapMs: maxGapMs,
        redispatches: dispatches,
      },
      tables: [
        {
          title: `A standby taking over (leader lease ${LEADER_LEASE_MS} ms, agent heartbeat ${HEARTBEAT_MS} ms), ms from the signal; ${b.repeats} repeat(s)`,
          columns: ['stop', 'runs', 'standby leads (p50)', 'max', 'agent on new leader (p50)', 'max'],
          rows: stops.map((s) => {
            const xs = of(s);
            return [s, xs.length, median(xs.map((x) => x.leadsMs)), Math.max(...xs.map((x) => x.leadsMs)), median(xs.map((x) => x.agentMs)), Math.max(...xs.map((x) => x.agentMs))];
          }),
        },
        {
          title: 'The session across every takeover (one target, 200 ms aggregation)',
          columns: ['records', 'sequences contiguous', 'largest gap between records (ms)', 'dispatches after the first'],
          rows: [[rs.length, contiguous ? 'yes' : 'NO', maxGapMs, dispatches]],
        },
      ],
      notes: [
        'Real processes: nats-server, two `damon-fleet controller`s with the default --leader-lease, one `damon-fleet agent --controller A,B` running a synthetic session on a real process (sleep). "Standby leads" is the first successful ListSessions on the standby, polled every 10 ms; "agent on new leader" is the first ListAgents there showing the agent live as the same instance.',
        'After kill -9 the standby waits for the lease to go a whole TTL without renewal by its own clock (it reads the key every TTL/4), so the takeover is between 1 and 1.5 leases after the last renewal. SIGTERM releases the lease: the standby takes it at its next read.',
        'Dispatches after the first: lines "session takeover: dispatching" of any controller; 0 means no new leader re-sent the running session (its GetState showed the agent runs it).',
        'The machine is shared (2 cores, other work running): absolute figures vary between runs.',
      ],
      data: { runs, records: rs.length, contiguous, maxGapMs, dispatches },
    };
  } finally {
    for (const c of clients) c.close();
    for (const p of procs) await p.stop(3000);
    await nc?.close();
    await killTarget(target);
    await nats.stop();
    data.remove();
  }
}

export const benchmark: Benchmark = {
  name: 'takeover',
  description: 'a standby controller taking over after kill -9 (and SIGTERM) of the leader: time to lead, time until the agent is registered with it, the session\'s records across it',
  run,
};
