// Optimizers' actions: a real controller and agent (in this process) on a real NATS, a
// session on real processes that map and read a 64 MiB file each. Measures what an
// optimizer waits for: the round trip of RequestAction (optimizer -> controller -> agent ->
// process_madvise -> event on NATS -> answer) as a dry run and as a pageout of the whole
// mapping, and the pageout's own time in the kernel (duration_us) and its bytes a second.
// The pages are read back in between, so every pageout has all 64 MiB to drop.
import { performance } from 'node:perf_hooks';
import { startController } from '../controller/controller.js';
import { startAgent } from '../agent/daemon/main.js';
import { SchemeAction, type ControllerClient } from '../gen/damon/v1/damon.js';
import { FAST_ATTRS, tempDir } from '../test/integration/support/agent-env.js';
import { controllerClient, unary, waitFor } from '../test/integration/support/grpc-client.js';
import { startNatsServer } from '../test/integration/support/nats-server.js';
import { testCredentials } from '../test/integration/support/credentials.js';
import { FileToucher, buildToucher, diskTempDir } from '../test/integration/support/file-toucher.js';
import { median, percentile, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';
import { silentLogger } from '../common/log.js';

const HOST = 'bench-actions';
const MAPPING_BYTES = 64 * 1024 * 1024;
const TARGETS = 4;

async function run(b: BenchContext): Promise<BenchResult> {
  const rounds = b.quick ? 5 : 10 * b.repeats;
  const total = 2 * rounds;
  let done = 0;
  const files = diskTempDir('damon-bench-actions-');
  const built = buildToucher(files.path);
  if (!built.exe) throw new Error(`actions benchmark: ${built.why}`);
  const creds = testCredentials({ agents: [HOST], optimizers: [{ name: 'bench', sessions: ['*'] }] });
  const nats = await startNatsServer({ credentials: creds });
  // The benchmark measures one optimizer at full speed: limits well above what it asks.
  const controller = await startController({
    listen: '127.0.0.1:0', nats: nats.url, natsNkeyFile: creds.controller, ...creds.grpc.controllerAccess,
    leaseTtlMs: 2000, heartbeatIntervalMs: 500, actionLimits: { callerPerS: 1e6, callerBurst: 1e6, targetPerS: 1e6, targetBurst: 1e6 }, log: silentLogger,
  });
  const data = tempDir('damon-bench-actions-agent-');
  const agent = await startAgent({
    host: HOST, listen: '127.0.0.1:0', controller: controller.address, nats: nats.url, natsNkeyFile: creds.agent(HOST),
    dataDir: data.path, ...creds.grpc.agentAccess(HOST), log: silentLogger as never,
  });
  const operator: ControllerClient = controllerClient(controller.address, creds.grpc.operator);
  const optimizer: ControllerClient = controllerClient(controller.address, creds.grpc.optimizer('bench'));
  const touchers: FileToucher[] = [];
  try {
    await waitFor('the agent live', async () => (await unary(operator, 'listAgents', {})).agents.find((a) => a.live), 15_000);
    for (let i = 0; i < TARGETS; i++) touchers.push(await FileToucher.start(built.exe, files.path, MAPPING_BYTES));
    await unary(operator, 'createSession', {
      id: 'bench', attrs: FAST_ATTRS, attrsText: '', schemesText: '', operations: 'synthetic', syntheticWorkload: 'hot5',
      targets: touchers.map((t) => ({ host: HOST, pid: t.pid })),
    });
    await unary(operator, 'turnOn', { id: 'bench' });
    const ask = (t: FileToucher, dryRun: boolean) =>
      unary(optimizer, 'requestAction', { sessionId: 'bench', host: HOST, pid: t.pid, start: t.start, end: t.end, action: SchemeAction.SCHEME_ACTION_PAGEOUT, dryRun });
    const dryMs: number[] = [];
    const pageoutMs: number[] = [];
    const kernelMs: number[] = [];
    const dropped: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t = touchers[i % TARGETS];
      let t0 = performance.now();
      await ask(t, true);
      dryMs.push(performance.now() - t0);
      b.progress('dry runs', ++done, total);
      const before = await t.residentPages();
      t0 = performance.now();
      const r = await ask(t, false);
      pageoutMs.push(performance.now() - t0);
      kernelMs.push(Number(r.durationUs) / 1000);
      dropped.push(before - (await t.residentPages()));
      b.progress('pageouts', ++done, total);
      await t.touch();
    }
    const mib = MAPPING_BYTES / 2 ** 20;
    const gibPerS = (ms: number) => MAPPING_BYTES / 2 ** 30 / (ms / 1000);
    return {
      summary: {
        dryRunP50Ms: round(percentile(dryMs, 50)),
        dryRunP99Ms: round(percentile(dryMs, 99)),
        pageoutP50Ms: round(percentile(pageoutMs, 50)),
        pageoutP99Ms: round(percentile(pageoutMs, 99)),
        kernelShareOfPageout: round(median(kernelMs) / median(pageoutMs)),
        pageoutGiBPerS: round(gibPerS(median(kernelMs))),
        pagesDroppedOfMapping: round(median(dropped) / (MAPPING_BYTES / 4096)),
      },
      tables: [
        {
          title: `RequestAction round trip, ${rounds} of each, ${mib} MiB file-backed mapping (ms)`,
          columns: ['request', 'p50', 'p90', 'p99', 'max'],
          rows: [
            ['dry run', ...[50, 90, 99, 100].map((p) => round(percentile(dryMs, p)))],
            ['pageout', ...[50, 90, 99, 100].map((p) => round(percentile(pageoutMs, p)))],
            ['  of which process_madvise', ...[50, 90, 99, 100].map((p) => round(percentile(kernelMs, p)))],
          ],
        },
      ],
      notes: [
        'In one process: controller, agent and the optimizer\'s client share its CPU (and the 2 cores with anything else running).',
        'The round trip includes the event\'s publish and its acknowledgement by the DAMON_ACTIONS stream (the agent answers after it).',
        `pagesDroppedOfMapping: the share of the mapping's pages no longer resident after a pageout (mincore in the process); the file is clean, so pageout drops it from the page cache.`,
      ],
      data: { rounds, mappingBytes: MAPPING_BYTES, targets: TARGETS, dryMs, pageoutMs, kernelMs, dropped },
    };
  } finally {
    optimizer.close();
    operator.close();
    await agent.stop();
    await Promise.all(touchers.map((t) => t.kill()));
    await controller.stop();
    await nats.stop();
    data.remove();
    files.remove();
    creds.remove();
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export const benchmark: Benchmark = {
  name: 'actions',
  description: 'optimizers\' actions: RequestAction round trips (dry run, pageout of a 64 MiB file mapping) through a real controller and agent, process_madvise\'s share and speed',
  run,
};
