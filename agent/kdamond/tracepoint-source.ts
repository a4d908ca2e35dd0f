// Records from the damon:damon_aggregated trace event, through a tracefs instance of our own
// (<tracefs>/instances/<name>/): its own ring buffer, event switch and trace clock, so the
// global trace buffer and other tracing users are left undisturbed. The instance's clock is
// set to "mono" (CLOCK_MONOTONIC), which maps exactly to wall-clock record times. An event
// filter on common_pid keeps other kdamonds' events (another DAMON user, DAMON_RECLAIM) out
// of our buffer; the assembler drops any that still arrive.
//
// trace_pipe is opened O_NONBLOCK and read at every poll until it says EAGAIN: no thread
// ever blocks in it, and the instance can be removed (tracefs refuses while it is open).
import { randomBytes } from 'node:crypto';
import { KernelFileError, type KernelFiles, type PipeReader } from './kernel-files.js';
import type { KdamondDriver } from './kdamond-driver.js';
import type { RecordClock, RecordSource, SourceRecord } from './record-source.js';
import { AggregationAssembler, LineSplitter, parseTraceLine } from './trace-lines.js';

/** Bytes read from trace_pipe in one poll at most; the rest waits for the next poll. */
const MAX_BYTES_PER_POLL = 8 * 1024 * 1024;
const EVENT_DIR = 'events/damon/damon_aggregated';

export interface TracepointSourceOptions {
  files: KernelFiles;
  /** tracefs mount point (normally /sys/kernel/tracing). */
  tracefsRoot: string;
  clock: RecordClock;
  /** Instance name; default damon-fleet-<pid>-<random>. */
  instanceName?: string;
  /** The aggregation interval, to tell a group's events from the next aggregation's. */
  aggregationUs?: number;
}

export class TracepointSource implements RecordSource {
  readonly name = 'tracepoint' as const;
  readonly kernelTimes = true;
  readonly instanceDir: string;
  private readonly tracefsRoot: string;
  private readonly files: KernelFiles;
  private readonly clock: RecordClock;
  private readonly maxGroupSpanNs: bigint | undefined;
  private created = false;
  private enabled = false;
  private pipe: PipeReader | undefined;
  private assembler: AggregationAssembler | undefined;
  private readonly splitter = new LineSplitter();
  private nrTargets = 0;
  private kernelFilter = false;
  private bytes = 0;

  constructor(o: TracepointSourceOptions) {
    this.files = o.files;
    this.clock = o.clock;
    this.maxGroupSpanNs = o.aggregationUs === undefined ? undefined : BigInt(Math.floor(o.aggregationUs * 500));
    const name = o.instanceName ?? `damon-fleet-${process.pid}-${randomBytes(3).toString('hex')}`;
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new RangeError(`trace instance name "${name}": letters, digits, '.', '_' and '-' only`);
    this.tracefsRoot = o.tracefsRoot;
    this.instanceDir = `${o.tracefsRoot}/instances/${name}`;
  }

  /** The trace event needs no scheme. */
  schemesNeeded(): number {
    return 0;
  }

  async prepare(_driver: KdamondDriver, nrTargets: number): Promise<void> {
    this.nrTargets = nrTargets;
    const instances = `${this.tracefsRoot}/instances`;
    if (!(await this.files.exists(instances))) {
      throw new Error(`no ${instances}: tracefs is not mounted at ${this.tracefsRoot} (mount -t tracefs nodev ${this.tracefsRoot}), or use the tried_regions record source`);
    }
    await this.files.mkdir(this.instanceDir);
    this.created = true;
    const event = `${this.instanceDir}/${EVENT_DIR}/enable`;
    if (!(await this.files.exists(event))) {
      throw new Error(`no ${event}: the kernel has no damon:damon_aggregated trace event (it needs CONFIG_DAMON with tracing); use the tried_regions record source`);
    }
    await this.files.write(`${this.instanceDir}/trace_clock`, 'mono');
    this.pipe = await this.files.openPipe(`${this.instanceDir}/trace_pipe`);
  }

  async begin(_driver: KdamondDriver, kdamondPid: number): Promise<void> {
    this.assembler = new AggregationAssembler(kdamondPid, this.nrTargets, this.maxGroupSpanNs);
    try {
      await this.files.write(`${this.instanceDir}/${EVENT_DIR}/filter`, `common_pid == ${kdamondPid}`);
      this.kernelFilter = true;
    } catch (e) {
      // Only an optimization: the assembler filters by pid anyway.
      if (!(e instanceof KernelFileError)) throw e;
      this.kernelFilter = false;
    }
    await this.files.write(`${this.instanceDir}/${EVENT_DIR}/enable`, '1');
    this.enabled = true;
  }

  async collect(): Promise<SourceRecord[]> {
    const pipe = this.pipe;
    const asm = this.assembler;
    if (pipe === undefined || asm === undefined) throw new Error('tracepoint source: collect() before begin()');
    const text = await pipe.readAvailable(MAX_BYTES_PER_POLL);
    this.bytes += Buffer.byteLength(text);
    const out: SourceRecord[] = [];
    for (const line of this.splitter.push(text)) {
      const done = asm.push(parseTraceLine(line));
      if (done !== undefined) {
        out.push({
          targetIndex: done.targetIndex,
          endNs: this.clock.monoToWallNs(done.tsNs),
          aggregation: done.aggregation,
          afterGap: done.afterGap,
          regions: done.regions,
        });
      }
    }
    return out;
  }

  async end(): Promise<void> {
    let first: unknown;
    const attempt = async (f: () => Promise<void>) => {
      try {
        await f();
      } catch (e) {
        first ??= e;
      }
    };
    if (this.enabled) {
      this.enabled = false;
      await attempt(() => this.files.write(`${this.instanceDir}/${EVENT_DIR}/enable`, '0'));
    }
    if (this.pipe !== undefined) {
      const p = this.pipe;
      this.pipe = undefined;
      await attempt(() => p.close());
    }
    if (this.created) {
      this.created = false;
      await attempt(() => this.files.rmdir(this.instanceDir));
    }
    if (first !== undefined) throw first;
  }

  endSync(): void {
    let first: unknown;
    const attempt = (f: () => void) => {
      try {
        f();
      } catch (e) {
        first ??= e;
      }
    };
    if (this.enabled) {
      this.enabled = false;
      attempt(() => this.files.writeSync(`${this.instanceDir}/${EVENT_DIR}/enable`, '0'));
    }
    if (this.pipe !== undefined) {
      const p = this.pipe;
      this.pipe = undefined;
      attempt(() => p.closeSync());
    }
    if (this.created) {
      this.created = false;
      attempt(() => this.files.rmdirSync(this.instanceDir));
    }
    if (first !== undefined) throw first;
  }

  counters(): Record<string, number> {
    const c = this.assembler?.counts ?? { incomplete: 0, lostEvents: 0, foreign: 0, other: 0 };
    return {
      incompleteAggregations: c.incomplete,
      lostEvents: c.lostEvents,
      foreignEvents: c.foreign,
      otherLines: c.other,
      pipeBytes: this.bytes,
      kernelPidFilter: this.kernelFilter ? 1 : 0,
    };
  }
}
