// Builds test/guest/workload.c (and other one-file C programs for the guest) with the
// machine's C compiler, cached by the source's content, and gives tests a typed view of
// the JSON lines the workload prints.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { rigPaths } from './paths.js';
import { DEFAULT_WORKING_SET_THRESHOLD } from '../../agent/engine/working-set.js';
import type { PhasedTruth } from '../support/phase-accuracy.js';

export class WorkloadBuildError extends Error {
  override name = 'WorkloadBuildError';
}

/**
 * Returns the path of the compiled workload, compiling it when the source changed.
 * The guest sees the host's root except /tmp, so the binary lives in the rig's cache
 * (by default inside the project folder).
 */
export function buildWorkload(cacheDir = rigPaths().cacheDir): string {
  return buildGuestProgram(join(rigPaths().guestDir, 'workload.c'), 'workload', cacheDir);
}

/**
 * Compiles a one-file C program for the guest into the rig's cache as NAME-<hash of the
 * source and flags>, unless that build is there.
 */
export function buildGuestProgram(source: string, name: string, cacheDir = rigPaths().cacheDir): string {
  const cc = process.env.CC ?? 'cc';
  const flags = ['-O2', '-std=c11', '-Wall', '-Wextra', '-Werror'];
  const key = createHash('sha256').update(readFileSync(source)).update(cc + flags.join(' ')).digest('hex').slice(0, 16);
  const out = join(cacheDir, 'bin', `${name}-${key}`);
  if (existsSync(out)) {
    // Marks it in use, so that another checkout sharing the cache keeps it (below).
    const now = new Date();
    utimesSync(out, now, now);
    return out;
  }
  mkdirSync(join(cacheDir, 'bin'), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync(cc, [...flags, '-o', tmp, source], { encoding: 'utf8' });
  if (r.error) {
    throw new WorkloadBuildError(`cannot run the C compiler '${cc}' (set CC to another one): ${r.error.message}`);
  }
  if (r.status !== 0) {
    throw new WorkloadBuildError(`compiling ${source} with '${cc}' failed (exit ${r.status}):\n${r.stderr}`);
  }
  renameSync(tmp, out);
  // Builds of other sources unused for a day go: several checkouts (a clone, worktrees)
  // share this cache, each with its own version of the source, and may run at once.
  const other = new RegExp(`^${name}-[0-9a-f]{16}$`);
  for (const entry of readdirSync(join(cacheDir, 'bin'))) {
    const path = join(cacheDir, 'bin', entry);
    if (other.test(entry) && path !== out && Date.now() - statSync(path).mtimeMs > 86_400_000) rmSync(path, { force: true });
  }
  return out;
}

export interface AddressRange {
  start: number;
  end: number;
}

/** A range of a phase: touched on every pass (probability 1), or per page with that chance in each 5 ms window. */
export interface HotRange extends AddressRange {
  probability: number;
}

interface Times {
  monoMs: number;
  realMs: number;
}

/** The events the workload prints, one JSON object a line. */
export type WorkloadEvent =
  | ({
      event: 'mapped';
      pid: number;
      start: number;
      end: number;
      size: number;
      pageSize: number;
      thp: 'hugepage' | 'nohugepage' | 'default';
      tlbFlushMs: number;
      /** The small mapping whose protection changes force TLB flushes (null with --tlb-flush-ms 0). */
      scratch: AddressRange | null;
    } & Times)
  | ({ event: 'ready'; touchMs: number; anonHugeBytes: number } & Times)
  | ({ event: 'phase'; index: number; durationMs: number; access: 'read' | 'write'; hot: HotRange[] } & Times)
  /** With --report-ms: `passes` over the hot set in the last `ms` milliseconds (ending at monoMs). */
  | ({ event: 'rate'; passes: number; ms: number } & Times)
  | ({ event: 'exit'; reason: 'phases-done' | 'duration' | 'signal'; passes: number } & Times);

/** Parses the workload's stdout; throws naming the line that is not one of its events. */
export function parseWorkloadOutput(text: string): WorkloadEvent[] {
  const events: WorkloadEvent[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`workload output line ${i + 1} is not JSON: ${line}`);
    }
    const event = (value as { event?: unknown }).event;
    if (event !== 'mapped' && event !== 'ready' && event !== 'phase' && event !== 'rate' && event !== 'exit') {
      throw new Error(`workload output line ${i + 1} is not a workload event: ${line}`);
    }
    events.push(value as WorkloadEvent);
  }
  return events;
}

/**
 * The workload's mapping, its phases' hot ranges and its exit, in record time (wall-clock
 * ns): the truth phase-accuracy.ts scores against. A range is hot when its access
 * probability per sampling interval is at least `cut` (the working-set cut, as in the
 * simulated workloads' ground truth); the rest of the mapping is cold.
 */
export function phasedTruth(events: readonly WorkloadEvent[], cut = DEFAULT_WORKING_SET_THRESHOLD): PhasedTruth {
  const mapped = events.find((e) => e.event === 'mapped');
  const exit = events.find((e) => e.event === 'exit');
  if (mapped?.event !== 'mapped' || exit?.event !== 'exit') throw new Error(`the workload's events lack mapped or exit: ${JSON.stringify(events).slice(0, 400)}`);
  const ns = (ms: number) => BigInt(Math.round(ms * 1e6));
  const hotOf = (hot: readonly HotRange[]) =>
    hot
      .filter((r) => r.probability >= cut)
      .map((r) => ({ start: r.start, end: r.end }))
      .sort((a, b) => a.start - b.start);
  return {
    mapped: [{ start: mapped.start, end: mapped.end }],
    phases: events.flatMap((e) => (e.event === 'phase' ? [{ startNs: ns(e.realMs), hot: hotOf(e.hot) }] : [])),
    endNs: ns(exit.realMs),
  };
}
