// Records and helpers the result-file tests share.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { AggregationRecord } from '../../agent/records/record.js';
import type { ResultIntervals } from '../../agent/records/result-format.js';
import type { ResultRecord, ResultSnapshot } from '../../agent/records/result-reader.js';

export const INTERVALS: ResultIntervals = { sampleUs: 5_000, aggrUs: 100_000, opsUpdateUs: 1_000_000 };
export const MAX_NR = 20; // 100 ms / 5 ms
export const AGGR_NS = 100_000_000n;
/** A wall-clock time in 2023, above 2^53 ns as real ones are. */
export const T0 = 1_700_000_000_123_456_789n;

/** Three targets with different region counts; addresses include one above 2^53 (page aligned, exact). */
export const TARGET_IDS = [4242, 77, 2 ** 40];

/** Snapshot k (0-based) of `targets`: contiguous aggregations of AGGR_NS each. */
export function snapshot(k: number, targets: readonly number[] = TARGET_IDS): AggregationRecord[] {
  const startNs = T0 + BigInt(k) * AGGR_NS;
  return targets.map((targetId, t) => ({
    targetId,
    startNs,
    endNs: startNs + AGGR_NS,
    maxNrAccesses: MAX_NR,
    regions: Array.from({ length: t + 2 }, (_, j) => ({
      start: j === t + 1 ? 2 ** 56 : 0x7f00_0000_0000 + j * 0x10_0000 + t * 0x1000_0000,
      end: j === t + 1 ? 2 ** 56 + 4096 * (k + 1) : 0x7f00_0000_0000 + (j + 1) * 0x10_0000 + t * 0x1000_0000,
      nrAccesses: (k * 7 + j * 3 + t) % (MAX_NR + 1),
      age: k + j,
    })),
  }));
}

export function snapshots(n: number, targets: readonly number[] = TARGET_IDS): AggregationRecord[][] {
  return Array.from({ length: n }, (_, k) => snapshot(k, targets));
}

/** What the reader gives back for written snapshots when the format keeps everything (JSON). */
export function asRead(snaps: AggregationRecord[][]): ResultSnapshot[] {
  return snaps.map((s) => ({ endNs: s[0]!.endNs, records: s.map((r) => ({ ...r, regions: r.regions.map((g) => ({ ...g })) })) }));
}

/**
 * The same for binary files: no age, maxNrAccesses only when intervals were passed, and
 * times on the file's recording clock, whose 0 is the first record's start.
 */
export function asReadBinary(snaps: AggregationRecord[][], maxNr: number | null = null): ResultSnapshot[] {
  const epoch = snaps[0]!.reduce((m, r) => (r.startNs < m ? r.startNs : m), snaps[0]![0]!.startNs);
  return snaps.map((s) => ({
    endNs: s[0]!.endNs - epoch,
    records: s.map((r): ResultRecord => ({
      targetId: r.targetId,
      startNs: r.startNs - epoch,
      endNs: r.endNs - epoch,
      maxNrAccesses: maxNr,
      regions: r.regions.map((g) => ({ start: g.start, end: g.end, nrAccesses: g.nrAccesses, age: null })),
    })),
  }));
}

export function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'result-file-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The compiled module a child process imports (tests run from dist/test/unit/). */
export const WRITER_MODULE = new URL('../../agent/records/result-writer.js', import.meta.url).pathname;

/**
 * Runs an ES module script in a child node process, optionally as another user or under
 * a file-size limit (KiB), and returns its stdout parsed as JSON.
 */
export function runChild(script: string, opts: { uid?: number; fileSizeKiB?: number; args?: string[] } = {}): unknown {
  const node = [process.execPath, '--input-type=module', '-e', script, '--', ...(opts.args ?? [])];
  const quoted = node.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const cmd = opts.fileSizeKiB === undefined ? node : ['/bin/bash', '-c', `ulimit -f ${opts.fileSizeKiB} && exec ${quoted}`];
  const r = spawnSync(cmd[0]!, cmd.slice(1), {
    encoding: 'utf8', cwd: '/', timeout: 20_000,
    ...(opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.uid }),
  });
  if (r.status !== 0) throw new Error(`child failed (status ${r.status}, signal ${r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}
