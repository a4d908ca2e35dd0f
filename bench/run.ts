// Benchmark runner: finds every bench/<name>.ts module that exports `benchmark`, runs the
// ones asked for (all by default), shows a progress line, prints readable tables and
// writes a JSON report to bench/reports/<timestamp>.json.
//
// Usage: node dist/bench/run.js [NAME ...] [--repeats N] [--quick] [--list]
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BenchContext, BenchResult, BenchTable, Benchmark } from './benchmark.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

interface Options {
  names: string[];
  repeats: number;
  quick: boolean;
  list: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: node dist/bench/run.js [NAME ...] [--repeats N] [--quick] [--list]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { names: [], repeats: 5, quick: false, list: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--list') o.list = true;
    else if (a === '--repeats') {
      const v = argv[++i];
      if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1) usage(`--repeats needs a positive integer, got ${v ?? 'nothing'}`);
      o.repeats = Number(v);
    } else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else o.names.push(a);
  }
  if (o.quick && !argv.includes('--repeats')) o.repeats = 1;
  return o;
}

/** Every compiled module beside this one that exports a `benchmark`. */
async function discover(): Promise<Benchmark[]> {
  const self = basename(fileURLToPath(import.meta.url));
  const found: Benchmark[] = [];
  for (const f of readdirSync(here).sort()) {
    if (!f.endsWith('.js') || f === self) continue;
    const mod = (await import(pathToFileURL(join(here, f)).href)) as { benchmark?: Benchmark };
    if (mod.benchmark) found.push(mod.benchmark);
  }
  return found;
}

/** One status line on a terminal, rewritten in place; elsewhere a line every few seconds. */
class Progress {
  private lastPrint = 0;
  private readonly tty = process.stderr.isTTY === true;
  private readonly t0 = Date.now();

  update(bench: string, what: string, done: number, total: number): void {
    const now = Date.now();
    const pct = total > 0 ? Math.min(100, Math.floor((100 * done) / total)) : 0;
    const line = `[${((now - this.t0) / 1000).toFixed(1)}s] ${bench}: ${pct}% ${what}`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns ?? 100) - 1)}`);
    } else if (now - this.lastPrint >= 3000 || done === total) {
      this.lastPrint = now;
      process.stderr.write(`${line}\n`);
    }
  }

  clear(): void {
    if (this.tty) process.stderr.write('\r\x1b[K');
  }
}

function formatCell(v: string | number): string {
  if (typeof v === 'string') return v;
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

function printTable(t: BenchTable): void {
  const cells = [t.columns, ...t.rows.map((r) => r.map(formatCell))];
  const widths = t.columns.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => r.map((v, c) => (c === 0 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  ');
  process.stdout.write(`\n${t.title}\n${line(cells[0])}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const r of cells.slice(1)) process.stdout.write(`${line(r)}\n`);
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const all = await discover();
  if (opts.list) {
    for (const b of all) process.stdout.write(`${b.name}\t${b.description}\n`);
    return;
  }
  for (const n of opts.names) {
    if (!all.some((b) => b.name === n)) usage(`no benchmark named "${n}" (have: ${all.map((b) => b.name).join(', ')})`);
  }
  const chosen = opts.names.length > 0 ? all.filter((b) => opts.names.includes(b.name)) : all;
  if (chosen.length === 0) usage('no benchmarks found beside run.js');

  const progress = new Progress();
  const report = {
    startedAt: new Date().toISOString(),
    finishedAt: '',
    host: { node: process.version, platform: process.platform, arch: process.arch, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', loadavgAtStart: loadavg() },
    options: { repeats: opts.repeats, quick: opts.quick },
    benchmarks: [] as Array<{ name: string; description: string; wallMs: number; error?: string } & Partial<BenchResult>>,
  };
  let failed = false;
  for (const b of chosen) {
    const ctx: BenchContext = {
      repeats: opts.repeats,
      quick: opts.quick,
      progress: (what, done, total) => progress.update(b.name, what, done, total),
    };
    const t0 = Date.now();
    try {
      const r = await b.run(ctx);
      progress.clear();
      report.benchmarks.push({ name: b.name, description: b.description, wallMs: Date.now() - t0, ...r });
      process.stdout.write(`\n== ${b.name}: ${b.description}\n`);
      for (const t of r.tables) printTable(t);
      process.stdout.write('\n');
      for (const [k, v] of Object.entries(r.summary)) process.stdout.write(`${k}: ${formatCell(typeof v === 'boolean' ? String(v) : v)}\n`);
      for (const n of r.notes) process.stdout.write(`note: ${n}\n`);
    } catch (e) {
      progress.clear();
      failed = true;
      const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
      report.benchmarks.push({ name: b.name, description: b.description, wallMs: Date.now() - t0, error: msg });
      process.stderr.write(`benchmark ${b.name} failed: ${msg}\n`);
    }
  }
  report.finishedAt = new Date().toISOString();
  const dir = join(projectRoot, 'bench', 'reports');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${report.startedAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`\nreport: ${file}\n`);
  if (failed) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
