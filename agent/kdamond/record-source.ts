// Where the records of a kdamond come from. Two sources, one interface:
// - "tracepoint": the damon:damon_aggregated trace event, read from a tracefs instance of
//   our own (see tracepoint-source.ts);
// - "tried_regions": a stat-only DAMOS scheme per target whose tried regions the kernel
//   dumps into sysfs on "update_schemes_tried_regions" (see tried-regions-source.ts).
//
// Default: tracepoint. It delivers every aggregation of every target with the kernel's own
// timestamp, for a handful of syscalls per poll (one text stream read in large chunks).
// tried_regions costs, per snapshot, a blocking write that the kernel (6.12) serves from
// kdamond callbacks in 100 ms sleeps, one kobject per region created and destroyed, and
// four sysfs file reads per region; and it yields at most one snapshot per update, so at
// short aggregation intervals it misses aggregations. It needs no tracefs, though, which
// is why it exists. Measured on the rig's Linux 6.12 guest (bench/guest-cpu.ts, which runs
// bench/kdamond-sources.ts there, DAMON's default intervals, one 256 MiB target): tracepoint
// cost 15 ms of collector CPU and 34 ms of kdamond CPU per aggregation and missed none;
// tried_regions 310 ms and 107 ms, and delivered 12 of 46 aggregations. The default stays.
import type { RegionRecord } from '../records/record.js';
import type { KdamondDriver } from './kdamond-driver.js';

export type RecordSourceName = 'tracepoint' | 'tried_regions';
export const RECORD_SOURCES: readonly RecordSourceName[] = ['tracepoint', 'tried_regions'];
export const DEFAULT_RECORD_SOURCE: RecordSourceName = 'tracepoint';

export function parseRecordSource(text: string): RecordSourceName {
  if ((RECORD_SOURCES as readonly string[]).includes(text)) return text as RecordSourceName;
  throw new RangeError(`record source "${text}": must be one of ${RECORD_SOURCES.join(', ')}`);
}

/** Maps the kernel's clock to record time. */
export interface RecordClock {
  /** CLOCK_MONOTONIC nanoseconds (the trace clock "mono") to wall-clock ns since the epoch. */
  monoToWallNs(monoNs: bigint): bigint;
  /** Wall-clock ns since the epoch, now. */
  nowWallNs(): bigint;
}

/** One target's regions at the end of one aggregation, as a source found them. */
export interface SourceRecord {
  /** Index of the target in our kdamond's context (the order of the pids we configured). */
  targetIndex: number;
  /** Wall-clock ns at the end of the aggregation (tried_regions: when the snapshot was read). */
  endNs: bigint;
  /** Records of one aggregation share this number; it grows with every aggregation. */
  aggregation: number;
  /**
   * With kernel times: aggregations of this target may be missing since its previous
   * record (lost events). Without kernel times every record may follow a gap.
   */
  afterGap: boolean;
  regions: RegionRecord[];
}

export interface RecordSource {
  readonly name: RecordSourceName;
  /**
   * True when endNs is the kernel's own time of the aggregation (consecutive records then
   * share their boundary); false when it is only when the record was read (a record then
   * covers the aggregation interval before endNs).
   */
  readonly kernelTimes: boolean;
  /**
   * DAMOS schemes the source uses, at indices 0..n-1 of our kdamond's context; the
   * session's own schemes follow them. The context writes nr_schemes (once: the kernel
   * recreates every scheme directory on each write) before prepare().
   */
  schemesNeeded(nrTargets: number): number;
  /** Writes what the source needs into our kdamond (or beside it) before it is turned on. */
  prepare(driver: KdamondDriver, nrTargets: number): Promise<void>;
  /** Starts collecting from the running kdamond thread `kdamondPid`. */
  begin(driver: KdamondDriver, kdamondPid: number): Promise<void>;
  /** Records completed since the last call, in order. */
  collect(): Promise<SourceRecord[]>;
  /** Undoes what prepare/begin set up outside our kdamond directory. Idempotent. */
  end(): Promise<void>;
  /** end() with synchronous I/O, for a process 'exit' handler. */
  endSync(): void;
  /** Source-specific counters (lost events, foreign lines, files read...). */
  counters(): Record<string, number>;
}
