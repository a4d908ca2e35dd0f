// One session on this host: one engine context over the session's pids on this host,
// with the operations chosen for it; each aggregation record goes to NATS (and to the
// result file when one is asked for); each target's observed state (RUNNING, EXITED,
// FAILED with why) is kept for heartbeats and GetState.
//
// Target lifetimes: a pid that does not exist is EXITED from the start; a process that
// exits is seen by the process watch within a poll and reported at once (the engine
// drops it at its next update); a target the operations cannot monitor (TargetError)
// is FAILED and the others go on in a new context; anything else that stops the engine
// fails every target still running, with the error's message.
//
// The engine is the project's (DamonContext with the chosen operations) or the kernel's
// own DAMON (KdamondContext), driven only through the Monitor contract (engine/monitor.ts).
// A session that left the choice to the agent and finds the kernel's DAMON taken at start
// runs on page_idle instead.
import type { DriftStats, Monitor, StopReason } from '../engine/monitor.js';
import { OperationsUnavailableError, TargetError } from '../engine/operations.js';
import type { AggregationRecord as EngineRecord } from '../records/record.js';
import { openResultWriter } from '../records/result-writer.js';
import type { ResultWriter } from '../records/result-format.js';
import { TargetState, type ObservedSession, type ObservedTarget, type SchemeStats } from '../../gen/damon/v1/damon.js';
import { addSchemeStats } from '../schemes/stats.js';
import { SCHEME_STATS_REPORT_MS } from '../../common/scheme-schema.js';
import { recordsSubject } from '../../common/subjects.js';
import { recordMsgId } from '../../common/nats.js';
import { errorMessage, quoted, type Logger } from '../../common/log.js';
import { chooseOperations, engineThreadCpu, type EngineChoice, type EngineThread, type HostOperations, type KdamondChoice } from './ops-select.js';
import { ProcessWatch } from './process-watch.js';
import { probeProcess } from '../ops/process-stat.js';
import type { RecordPublisher } from './publisher.js';
import { toProtoHeader } from './record-convert.js';
import { encodeRecordOfNumbers } from '../../common/record-wire.js';
import { ResultPathError, openConfinedLocation } from './result-path.js';
import type { RunSpec } from './spec.js';
import { resultFileFormat, statusMessage } from '../../common/session-schema.js';

export interface RunnerDeps {
  host: string;
  dataDir: string;
  hostOps: HostOperations;
  publisher: RecordPublisher;
  /** This agent process's instance id (records carry it). */
  instanceId: string;
  /** Called when a target's observed state changed (the agent heartbeats early). */
  onChange(): void;
  log: Logger;
  /** How often target processes are checked for exit. */
  processPollMs?: number;
  /** Told of records and ended targets (DAMON_STAT, metrics). */
  observer?: RunnerObserver;
}

/** What the agent's DAMON_STAT summaries and metrics learn from a session (agent.ts wires it). */
export interface RunnerObserver {
  /** A running target's record, counted over the engine's aggregation interval now. */
  record(sessionId: string, rec: EngineRecord, aggregationUs: number): void;
  /** A target stopped running (exited, failed, or the session stopped). */
  targetEnded(sessionId: string, pid: number): void;
  /** JetStream acknowledged a record `seconds` after the engine handed it over. */
  published(seconds: number): void;
}

/** CPU an engine used for one session, seconds since it started. */
export interface EngineCpu {
  /** The engine's own thread, where it has one (engineThreadCpu). */
  thread: EngineThread | undefined;
  threadSeconds: number;
  /** Process CPU while the session's JavaScript steps ran (the engine's drift accounting). */
  jsSeconds: number;
}

interface TargetView {
  state: TargetState;
  operations: string;
  message: string;
}

export class SessionRunner {
  private readonly targets = new Map<number, TargetView>();
  private readonly log: Logger;
  private readonly watch: ProcessWatch;
  private ctx: Monitor | undefined;
  private opsName = '';
  private choice: EngineChoice | KdamondChoice | undefined;
  private writer: ResultWriter | undefined;
  private writeFailed = false;
  private snapshot: EngineRecord[] = [];
  private writes: Promise<void> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private published = 0n;
  private stopping = false;
  private drift: { samplingMeanUs: number; aggregationMeanUs: number; checkCost: DriftStats['checkCost'] } = { samplingMeanUs: 0, aggregationMeanUs: 0, checkCost: null };
  /** The engine's intervals when last seen (kept once it stopped). */
  private intervals = { samplingUs: 0, aggregationUs: 0 };
  /** CPU of the engines this session ran before the current one (a target failed: a new context). */
  private retiredCpu: EngineCpu = { thread: undefined, threadSeconds: 0, jsSeconds: 0 };
  /** Scheme statistics of those engines. */
  private retiredSchemeStats: SchemeStats[] = [];
  /** What observed() last reported of them, and when. */
  private reported: { atMs: number; stats: SchemeStats[] } | undefined;

  constructor(
    readonly spec: RunSpec,
    private readonly deps: RunnerDeps,
  ) {
    this.log = deps.log.child(`session ${spec.sessionId}`);
    this.watch = new ProcessWatch((pid, reason) => this.exited(pid, reason), deps.processPollMs ?? 200);
    for (const pid of spec.pids) this.targets.set(pid, { state: TargetState.TARGET_STATE_PENDING, operations: '', message: '' });
  }

  /** Starts monitoring; resolves once every target is RUNNING, EXITED or FAILED. */
  async start(): Promise<void> {
    const { spec, deps } = this;
    const choice = chooseOperations(spec, deps.hostOps);
    if (!choice.ok) {
      this.failActive(choice.message);
      return;
    }
    this.opsName = choice.name;
    this.choice = choice;
    const live: number[] = [];
    for (const pid of spec.pids) {
      const p = probeProcess(pid);
      if (!p.alive) {
        const why = p.reason === 'no such process' ? `no process with pid ${pid} on host ${deps.host}` : p.reason;
        this.set(pid, TargetState.TARGET_STATE_EXITED, why);
        continue;
      }
      this.watch.add(pid, p.startTicks);
      live.push(pid);
    }
    if (live.length === 0) {
      this.log.warn(`not started: none of its processes exists (${spec.pids.join(', ')})`);
      return;
    }
    if (spec.attrs.resultFile !== '') {
      try {
        this.writer = await this.openWriter();
      } catch (err) {
        this.watch.stop();
        this.failActive(errorMessage(err));
        return;
      }
    }
    // A process may have exited while the file was being opened.
    const running = live.filter((pid) => this.watch.isWatched(pid));
    if (running.length === 0) {
      await this.closeWriter();
      return;
    }
    this.run(running);
    this.log.info(
      `started generation ${spec.generation}: pids ${running.join(', ')} with ${this.opsName} operations` +
        (this.writer ? `, result file ${this.writer.path} (${spec.resultFormat})` : ''),
    );
  }

  /** Stops monitoring; resolves once the engine stopped, the file is closed and the records sent (or 2 s passed). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.watch.stop();
    await this.ctx?.stop();
    for (const pid of this.targets.keys()) this.deps.observer?.targetEnded(this.spec.sessionId, pid);
    this.flushSnapshot();
    await this.closeWriter();
    const flushed = await this.deps.publisher.flush(this.deps.publisher.lastMark(), 2_000);
    if (!flushed) this.log.warn('stopped with records still waiting for NATS (they stay queued)');
    this.log.info(`stopped (${this.published} records published)`);
  }

  observed(): ObservedSession {
    if (this.ctx) {
      const d = this.ctx.drift();
      if (d.sampling.count > 0) this.drift.samplingMeanUs = d.sampling.meanUs;
      if (d.aggregation.count > 0) this.drift.aggregationMeanUs = d.aggregation.meanUs;
      if (d.checkCost !== null) this.drift.checkCost = d.checkCost;
      this.intervals = this.ctx.intervals();
    }
    const targets: ObservedTarget[] = [...this.targets].map(([pid, t]) => ({ pid, ...t }));
    return {
      sessionId: this.spec.sessionId,
      generation: this.spec.generation,
      running: targets.some((t) => t.state === TargetState.TARGET_STATE_RUNNING),
      targets,
      samplingIntervalMeanUs: this.drift.samplingMeanUs,
      aggregationIntervalMeanUs: this.drift.aggregationMeanUs,
      recordsPublished: this.published,
      schemeStats: this.reportedSchemeStats(),
      samplingIntervalUs: BigInt(Math.round(this.intervals.samplingUs)),
      aggregationIntervalUs: BigInt(Math.round(this.intervals.aggregationUs)),
      ...(this.drift.checkCost === null
        ? {}
        : { checkCostUs: this.drift.checkCost.perCheckUs, affordableRegions: this.drift.checkCost.affordableRegions }),
    };
  }

  /**
   * The statistics as observed() reports them: refreshed at most every
   * SCHEME_STATS_REPORT_MS, since the heartbeat's digest covers them and each change costs
   * the controller a GetState.
   */
  private reportedSchemeStats(): SchemeStats[] {
    const now = performance.now();
    if (this.reported === undefined || now - this.reported.atMs >= SCHEME_STATS_REPORT_MS) this.reported = { atMs: now, stats: this.schemeStats() };
    return this.reported.stats;
  }

  /** The schemes' statistics on this host since the session started here, by scheme index. */
  schemeStats(): SchemeStats[] {
    return addSchemeStats(this.retiredSchemeStats, this.ctx?.schemeStats?.() ?? []);
  }

  engineCpu(): EngineCpu {
    const now = this.ctx ? cpuOf(this.ctx) : undefined;
    return {
      thread: now?.thread ?? this.retiredCpu.thread,
      threadSeconds: this.retiredCpu.threadSeconds + (now?.threadSeconds ?? 0),
      jsSeconds: this.retiredCpu.jsSeconds + (now?.jsSeconds ?? 0),
    };
  }

  // ---- engine ---------------------------------------------------------------------------

  private run(pids: number[]): void {
    const choice = this.choice!;
    let ctx: Monitor;
    try {
      ctx = choice.createMonitor(pids, this.spec.attrs, (pid) => this.watch.isWatched(pid), (m) => this.log.warn(m));
    } catch (err) {
      this.failActive(errorMessage(err));
      return;
    }
    if (this.ctx) {
      this.retiredCpu = this.engineCpu();
      this.retiredSchemeStats = this.schemeStats();
    }
    this.ctx = ctx;
    ctx.on('aggregate', (rec) => this.record(rec, ctx));
    ctx.on('targetExited', (pid) => this.engineExit(pid));
    ctx.on('stopped', (reason, err) => this.engineStopped(ctx, reason, err));
    for (const pid of pids) this.set(pid, TargetState.TARGET_STATE_RUNNING, '');
    // A failed start is reported through 'stopped'.
    void ctx.start();
  }

  /**
   * The kernel's DAMON could not be had at start (no kdamond thread was ever ours): a
   * session that left the choice to the agent goes on with the fallback operations.
   */
  private tryFallback(ctx: Monitor, err: Error): boolean {
    const choice = this.choice;
    if (choice?.engine !== 'kdamond' || !choice.fallback || this.stopping) return false;
    if (!(err instanceof OperationsUnavailableError) || ctx.started) return false;
    const pids = this.activePids();
    if (pids.length === 0) return false;
    this.log.warn(`${err.message}; running on ${choice.fallback.name} instead`);
    this.choice = choice.fallback;
    this.opsName = choice.fallback.name;
    this.run(pids);
    this.deps.onChange();
    return true;
  }

  private record(rec: EngineRecord, ctx: Monitor): void {
    // The engine keeps an exited process until its next update; its records end now.
    if (this.targets.get(rec.targetId)?.state !== TargetState.TARGET_STATE_RUNNING) return;
    const { sessionId } = this.spec;
    const { publisher, host, instanceId } = this.deps;
    const subject = recordsSubject(sessionId, host, rec.targetId);
    const header = toProtoHeader(rec, {
      sessionId,
      host,
      operations: this.opsName,
      sequence: publisher.nextSequence(subject),
      agentInstance: instanceId,
    });
    const handedAt = performance.now();
    publisher.enqueue(subject, encodeRecordOfNumbers(header, rec.regions), recordMsgId(header), header.sequence, () => {
      this.published++;
      this.deps.observer?.published((performance.now() - handedAt) / 1000);
    });
    this.deps.observer?.record(sessionId, rec, ctx.intervals().aggregationUs);
    if (this.writer && !this.writeFailed) {
      // The engine emits every target's record of one aggregation in one go: one snapshot.
      if (this.snapshot.length === 0) queueMicrotask(() => this.flushSnapshot());
      this.snapshot.push(rec);
    }
  }

  private engineExit(pid: number): void {
    // The process watch normally sees it first; if the engine did, the operations said
    // the target is gone (e.g. a synthetic workload's simulated process ended).
    const alive = this.watch.isWatched(pid);
    this.watch.remove(pid);
    this.exited(pid, alive && this.opsName === 'synthetic' ? 'the simulated process of the synthetic workload exited' : 'process exited');
  }

  private engineStopped(ctx: Monitor, reason: StopReason, err?: Error): void {
    if (ctx !== this.ctx) return;
    this.flushSnapshot();
    if (reason === 'error' && err && !this.stopping) {
      if (this.tryFallback(ctx, err)) return;
      if (err instanceof TargetError && this.targets.get(err.targetId)?.state === TargetState.TARGET_STATE_RUNNING) {
        // One target the operations cannot monitor; the others go on in a new context.
        this.watch.remove(err.targetId);
        this.set(err.targetId, TargetState.TARGET_STATE_FAILED, err.message);
        this.log.warn(`target ${err.targetId} failed: ${statusMessage(err.message)}`);
        const rest = this.activePids();
        if (rest.length > 0) {
          this.run(rest);
          this.deps.onChange();
          return;
        }
      } else {
        const what = err instanceof OperationsUnavailableError ? err.message : `monitoring failed: ${err.message}`;
        this.log.error(what);
        this.failActive(what);
      }
    } else if (reason === 'no-targets') {
      this.log.info('every target exited; monitoring ended');
    }
    this.watch.stop();
    void this.closeWriter();
    this.deps.onChange();
  }

  // ---- target states --------------------------------------------------------------------

  private set(pid: number, state: TargetState, message: string): void {
    // Bounded: the message travels in every heartbeat and ApplySession answer.
    this.targets.set(pid, { state, operations: this.opsName, message: statusMessage(message) });
    if (state !== TargetState.TARGET_STATE_RUNNING) this.deps.observer?.targetEnded(this.spec.sessionId, pid);
  }

  private activePids(): number[] {
    return [...this.targets]
      .filter(([, t]) => t.state === TargetState.TARGET_STATE_RUNNING || t.state === TargetState.TARGET_STATE_PENDING)
      .map(([pid]) => pid);
  }

  private exited(pid: number, reason: string): void {
    const t = this.targets.get(pid);
    if (!t || (t.state !== TargetState.TARGET_STATE_RUNNING && t.state !== TargetState.TARGET_STATE_PENDING)) return;
    this.set(pid, TargetState.TARGET_STATE_EXITED, reason);
    this.log.info(`target ${pid}: ${reason}`);
    this.deps.onChange();
  }

  /** Every target not yet ended fails with `message`. */
  private failActive(message: string): void {
    const pids = this.activePids();
    for (const pid of pids) this.set(pid, TargetState.TARGET_STATE_FAILED, message);
    if (pids.length > 0) this.log.warn(`failed: ${statusMessage(message)}`);
    this.deps.onChange();
  }

  // ---- result file ----------------------------------------------------------------------

  /**
   * Opens the result file inside the data directory: the writer works only through
   * descriptors opened beneath it (result-path.ts), and owns them until it is closed.
   */
  private async openWriter(): Promise<ResultWriter> {
    const { attrs, resultFormat } = this.spec;
    try {
      return await openResultWriter(openConfinedLocation(this.deps.dataDir, attrs.resultFile), {
        ...resultFileFormat(resultFormat),
        intervals: { sampleUs: attrs.samplingUs, aggrUs: attrs.aggregationUs, opsUpdateUs: attrs.updateUs },
      });
    } catch (err) {
      if (err instanceof ResultPathError) throw err;
      throw new Error(`result_file ${quoted(attrs.resultFile)}: ${errorMessage(err)}`);
    }
  }

  private flushSnapshot(): void {
    if (this.snapshot.length === 0 || !this.writer) return;
    const recs = this.snapshot;
    this.snapshot = [];
    const writer = this.writer;
    this.writes = this.writes.then(() =>
      writer.writeSnapshot(recs).catch((err) => {
        if (this.writeFailed) return;
        this.writeFailed = true;
        // Monitoring and publishing go on; the file stops, and the targets say why.
        const msg = `result file ${writer.path}: ${errorMessage(err)}; no longer written (records are still published)`;
        this.log.error(msg);
        for (const [pid, t] of this.targets) {
          if (t.state === TargetState.TARGET_STATE_RUNNING) this.targets.set(pid, { ...t, message: statusMessage(msg) });
        }
        this.deps.onChange();
      }),
    );
  }

  /** Closes the result file once; every caller waits for that one close. */
  private closeWriter(): Promise<void> {
    this.closing ??= (async () => {
      const writer = this.writer;
      if (!writer) return;
      await this.writes;
      this.writer = undefined;
      try {
        await writer.close();
      } catch (err) {
        this.log.error(`result file ${writer.path}: closing failed: ${errorMessage(err)}`);
      }
    })();
    return this.closing;
  }
}

function cpuOf(ctx: Monitor): EngineCpu {
  const t = engineThreadCpu(ctx);
  return { thread: t?.thread, threadSeconds: t?.seconds ?? 0, jsSeconds: ctx.drift().stepCpuUs.sumUs / 1e6 };
}
