// Runs INSIDE the guest (never on a host: it writes /sys/kernel/mm/page_idle/bitmap).
// Reads a running workload's layout from its JSON output, marks every page of its mapping
// idle through the page_idle bitmap, waits, and reports which pages were accessed since,
// split into the hot ranges of the current phase and the rest. This is the ground-truth
// check that the rig's kernel tracks accesses the way the agent expects.
//
// Usage: node dist/test/guest/idle-probe.js --layout FILE [--wait-ms N]
// Prints one JSON object (IdleProbeReport); exit status 1 with a message on any error.
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseWorkloadOutput, type AddressRange, type WorkloadEvent } from './workload.js';

const PAGE = 4096;
const PM_PRESENT = 1n << 63n;
const PM_PFN_MASK = (1n << 55n) - 1n;
const KPF_COMPOUND_HEAD = 1n << 15n;
const KPF_COMPOUND_TAIL = 1n << 16n;
const KPF_THP = 1n << 22n;
const BITMAP = '/sys/kernel/mm/page_idle/bitmap';

export interface IdleProbeReport {
  pages: number;
  present: number;
  /** Pages backed by transparent huge pages (their idle flag is the head page's). */
  thpPages: number;
  /**
   * Pages of the hot ranges and of the rest: how many, how many read as accessed, and how
   * many sit in the bitmap's unreadable partial last word.
   */
  hot: { pages: number; accessed: number; unreadable: number };
  cold: { pages: number; accessed: number; unreadable: number };
  waitMs: number;
}

/**
 * Reads count 64-bit words from word firstWord on. With partial, a file that ends early
 * gives only the words it has (the page_idle bitmap ends at the last full word below
 * max_pfn: the kernel never returns a partial last word).
 */
function preadWords(path: string, firstWord: number, count: number, partial = false): BigUint64Array {
  const buf = Buffer.alloc(count * 8);
  const fd = openSync(path, 'r');
  let done = 0;
  try {
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, firstWord * 8 + done);
      if (n === 0) {
        if (partial) break;
        throw new Error(`${path}: unexpected end of file at word ${firstWord + done / 8}`);
      }
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return new BigUint64Array(buf.buffer, buf.byteOffset, Math.floor(done / 8));
}

/** The page frame whose idle flag stands for each page (the head page for a THP tail). */
function flagFrames(pid: number, range: AddressRange): { frames: (number | null)[]; thpPages: number } {
  const entries = preadWords(`/proc/${pid}/pagemap`, range.start / PAGE, (range.end - range.start) / PAGE);
  const pfns = Array.from(entries, (e) => ((e & PM_PRESENT) !== 0n ? Number(e & PM_PFN_MASK) : null));
  const present = pfns.filter((p): p is number => p !== null);
  if (present.length === 0) return { frames: pfns, thpPages: 0 };
  // A tail's head is at most 511 frames below it (2 MiB huge pages).
  const [min, hi] = minMax(present);
  const lo = Math.max(0, min - 511);
  const flags = preadWords('/proc/kpageflags', lo, hi - lo + 1);
  let thpPages = 0;
  const frames = pfns.map((pfn) => {
    if (pfn === null) return null;
    if ((flags[pfn - lo]! & KPF_THP) !== 0n) thpPages++;
    let head = pfn;
    while ((flags[head - lo]! & KPF_COMPOUND_TAIL) !== 0n) head--;
    if (head !== pfn && (flags[head - lo]! & KPF_COMPOUND_HEAD) === 0n) {
      throw new Error(`frame ${pfn} is a compound tail but no head was found below it`);
    }
    return head;
  });
  return { frames, thpPages };
}

function minMax(values: number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

function idleBits(frames: number[]): { first: number; words: BigUint64Array } {
  const [lo, hi] = minMax(frames);
  const first = Math.floor(lo / 64);
  const last = Math.floor(hi / 64);
  const words = new BigUint64Array(last - first + 1);
  for (const f of frames) words[Math.floor(f / 64) - first]! |= 1n << BigInt(f % 64);
  return { first, words };
}

async function probe(pid: number, mapping: AddressRange, hot: AddressRange[], waitMs: number): Promise<IdleProbeReport> {
  const { frames, thpPages } = flagFrames(pid, mapping);
  const present = frames.filter((f): f is number => f !== null);
  if (present.length === 0) throw new Error(`no page of the mapping ${mapping.start}-${mapping.end} is present`);
  const { first, words } = idleBits(present);
  // Writing 1 bits marks those frames idle; 0 bits leave other frames alone.
  const fd = openSync(BITMAP, 'r+');
  try {
    const buf = Buffer.from(words.buffer);
    const n = writeSync(fd, buf, 0, buf.length, first * 8);
    // The kernel processes the bits below max_pfn of a partial last word but does not
    // count that word as written.
    if (n < buf.length - 8) throw new Error(`short write to ${BITMAP}: ${n} of ${buf.length} bytes`);
  } finally {
    closeSync(fd);
  }
  await sleep(waitMs);
  const after = preadWords(BITMAP, first, words.length, true);
  const report: IdleProbeReport = {
    pages: frames.length,
    present: present.length,
    thpPages,
    hot: { pages: 0, accessed: 0, unreadable: 0 },
    cold: { pages: 0, accessed: 0, unreadable: 0 },
    waitMs,
  };
  frames.forEach((f, i) => {
    const addr = mapping.start + i * PAGE;
    const side = hot.some((r) => addr >= r.start && addr < r.end) ? report.hot : report.cold;
    side.pages++;
    if (f === null) return;
    const word = after[Math.floor(f / 64) - first];
    if (word === undefined) {
      side.unreadable++;
      return;
    }
    if (((word >> BigInt(f % 64)) & 1n) === 0n) side.accessed++;
  });
  return report;
}

/** Waits until the workload's output shows it mapped, touched and entered a phase. */
async function waitForLayout(file: string, timeoutMs: number): Promise<WorkloadEvent[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // not created yet
    }
    // Only complete lines: the workload may be writing the last one.
    const events = parseWorkloadOutput(text.slice(0, text.lastIndexOf('\n') + 1));
    if (events.some((e) => e.event === 'phase')) return events;
    if (Date.now() > deadline) throw new Error(`the workload's output ${file} showed no phase within ${timeoutMs} ms: ${text}`);
    await sleep(50);
  }
}

async function main(argv: string[]): Promise<void> {
  let layout: string | undefined;
  let waitMs = 1000;
  for (let i = 0; i < argv.length; i += 2) {
    const [opt, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`option ${opt} needs a value`);
    if (opt === '--layout') layout = value;
    else if (opt === '--wait-ms') {
      waitMs = Number(value);
      if (!Number.isInteger(waitMs) || waitMs < 0) throw new Error(`--wait-ms must be a whole number, got '${value}'`);
    } else throw new Error(`unknown option '${opt}' (expected --layout FILE [--wait-ms N])`);
  }
  if (layout === undefined) throw new Error('--layout FILE is required');
  const events = await waitForLayout(layout, 30_000);
  const mapped = events.find((e) => e.event === 'mapped');
  const phase = events.filter((e) => e.event === 'phase').at(-1);
  if (mapped?.event !== 'mapped' || phase?.event !== 'phase') throw new Error(`no mapped or phase event in ${layout}`);
  const report = await probe(mapped.pid, mapped, phase.hot, waitMs);
  process.stdout.write(JSON.stringify(report) + '\n');
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`idle-probe: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
