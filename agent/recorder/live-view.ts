// The recorder's live summary: per target, regions, monitored and working-set bytes, a
// heat strip of the address space and the hottest ranges; redrawn in place on a
// terminal, one plain line per target and second otherwise (logs, pipes, CI).
import type { AggregationRecord } from '../records/record.js';
import type { DriftStats } from '../engine/context.js';
import { summarize } from '../engine/working-set.js';
import { formatAddr, formatBytes, heatStrip } from './format.js';

export interface LiveViewOptions {
  /** Redraw in place with ANSI escapes (a TTY) or print plain lines. */
  tty: boolean;
  columns: number;
  /** Least milliseconds between two draws. */
  minIntervalMs: number;
  opsName: string;
  outPath: string;
}

export class LiveView {
  private lastDrawMs = 0;
  private drawnLines = 0;
  private aggregations = 0;
  private readonly startedMs = Date.now();

  constructor(private readonly out: NodeJS.WritableStream, private readonly o: LiveViewOptions) {}

  /** One aggregation's records (all targets); draws when minIntervalMs has passed. */
  update(records: readonly AggregationRecord[], drift: DriftStats, force = false): void {
    this.aggregations++;
    const now = Date.now();
    if (!force && now - this.lastDrawMs < this.o.minIntervalMs) return;
    this.lastDrawMs = now;
    if (this.o.tty) this.drawScreen(records, drift);
    else this.printLines(records);
  }

  /** A line that stays (target exits, errors), printed above the live block. */
  note(text: string): void {
    this.clear();
    this.out.write(text + '\n');
  }

  private elapsed(): string {
    return ((Date.now() - this.startedMs) / 1000).toFixed(1) + 's';
  }

  private clear(): void {
    if (this.o.tty && this.drawnLines > 0) this.out.write(`\x1b[${this.drawnLines}A\x1b[J`);
    this.drawnLines = 0;
  }

  private drawScreen(records: readonly AggregationRecord[], drift: DriftStats): void {
    const width = Math.max(20, Math.min(100, this.o.columns - 4));
    const lines: string[] = [];
    const s = drift.sampling;
    lines.push(
      `damon-fleet record: ${this.o.opsName} operations, ${this.aggregations} aggregations in ${this.elapsed()}` +
        (this.o.outPath ? ` -> ${this.o.outPath}` : ''),
    );
    if (s.count > 0) {
      lines.push(
        `  sampling interval ${(s.configuredUs / 1000).toFixed(1)} ms configured, ` +
          `${(s.meanUs / 1000).toFixed(2)} ms mean, ${(s.p99Us / 1000).toFixed(2)} ms p99, ${drift.missedSamples} missed`,
      );
    }
    for (const rec of records) {
      const sum = summarize(rec, { topN: 3 });
      lines.push(
        `target ${rec.targetId}: ${rec.regions.length} regions, monitored ${formatBytes(sum.monitoredBytes)}, ` +
          `working set ~${formatBytes(sum.workingSetBytes)}`,
      );
      lines.push(`  [${heatStrip(rec, width)}]`);
      for (const h of sum.hottest) {
        lines.push(
          `  hot ${formatAddr(h.start)}-${formatAddr(h.end)} ${formatBytes(h.end - h.start).padStart(9)} ` +
            `${(h.frequency * 100).toFixed(0).padStart(3)}% age ${h.age}`,
        );
      }
    }
    this.clear();
    this.out.write(lines.join('\n') + '\n');
    this.drawnLines = lines.length;
  }

  private printLines(records: readonly AggregationRecord[]): void {
    for (const rec of records) {
      const sum = summarize(rec, { topN: 1 });
      const hot = sum.hottest[0];
      this.out.write(
        `[${this.elapsed()}] target ${rec.targetId}: ${rec.regions.length} regions, ` +
          `monitored ${formatBytes(sum.monitoredBytes)}, working set ~${formatBytes(sum.workingSetBytes)}` +
          (hot ? `, hottest ${formatAddr(hot.start)}-${formatAddr(hot.end)} ${(hot.frequency * 100).toFixed(0)}%` : '') +
          '\n',
      );
    }
  }
}
