// Whether this host can run the kdamond engine, and if not, what is missing. Strictly
// read-only: it reads the DAMON sysfs interface, tracefs and /proc/kallsyms and writes
// nothing (it runs on hosts whose DAMON belongs to someone else).
//
// Whether the kernel's DAMON has vaddr operations shows in contexts/<C>/avail_operations,
// which exists only inside a kdamond directory. With none to read (nr_kdamonds is 0 and
// creating one would be a write), the probe looks for the vaddr functions (damon_va_*) in
// /proc/kallsyms; without kallsyms it cannot tell, says so, and start() checks
// avail_operations right after creating our kdamond.
import fs from 'node:fs';
import { BUSY_EXPLANATION, kdamondsDir, nrKdamondsPath } from './kdamond-driver.js';
import { DEFAULT_RECORD_SOURCE, RECORD_SOURCES, type RecordSourceName } from './record-source.js';

export interface KdamondProbeOptions {
  /** tracefs mount point (for the tracepoint record source); without it that source is unusable. */
  tracefsRoot?: string;
  /** procfs root (kallsyms). */
  procRoot: string;
}

export interface SourceProbe {
  usable: boolean;
  missing: string[];
}

export interface KdamondProbe {
  usable: boolean;
  /** One sentence per missing piece: what is missing and how to get it. */
  missing: string[];
  /** What could not be checked without writing, and when it will be. */
  notes: string[];
  /** One line: available (and with which record source), or the missing pieces. */
  message: string;
  sources: Record<RecordSourceName, SourceProbe>;
  /** The default source if it is usable, else the other one if that is; undefined when neither. */
  recommendedSource: RecordSourceName | undefined;
}

function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? String(e);
}

function readTrim(path: string): string {
  return fs.readFileSync(path, 'utf8').trim();
}

/** 'yes' / 'no' / 'unknown' from the avail_operations of existing kdamonds or from kallsyms. */
function vaddrAvailable(sysfsRoot: string, nr: number, procRoot: string): { state: 'yes' | 'no' | 'unknown'; how: string } {
  for (let k = 0; k < nr; k++) {
    const ctxs = `${kdamondsDir(sysfsRoot)}/${k}/contexts`;
    let names: string[];
    try {
      names = fs.readdirSync(ctxs).filter((n) => /^\d+$/.test(n));
    } catch {
      continue;
    }
    for (const c of names) {
      const avail = `${ctxs}/${c}/avail_operations`;
      try {
        const ops = readTrim(avail).split(/\s+/);
        return ops.includes('vaddr') ? { state: 'yes', how: avail } : { state: 'no', how: `${avail} lists: ${ops.join(', ')}` };
      } catch {
        // Older kernels have no avail_operations; try the next source of truth.
      }
    }
  }
  const kallsyms = `${procRoot}/kallsyms`;
  let text: string;
  try {
    text = fs.readFileSync(kallsyms, 'latin1');
  } catch (e) {
    return { state: 'unknown', how: `${kallsyms} is unreadable (${errnoOf(e)})` };
  }
  if (/\sdamon_va_\w/.test(text)) return { state: 'yes', how: `damon_va_* symbols in ${kallsyms}` };
  if (/\sdamon_\w/.test(text)) return { state: 'no', how: `no damon_va_* symbols in ${kallsyms}, though other DAMON symbols are there` };
  return { state: 'unknown', how: `no DAMON symbols at all in ${kallsyms}` };
}

function probeTracepoint(tracefsRoot: string | undefined): SourceProbe {
  if (tracefsRoot === undefined || tracefsRoot === '') return { usable: false, missing: ['no tracefs mount point given'] };
  const missing: string[] = [];
  const instances = `${tracefsRoot}/instances`;
  if (!fs.existsSync(instances)) {
    missing.push(`no ${instances}: tracefs is not mounted at ${tracefsRoot} (mount -t tracefs nodev ${tracefsRoot}), or the kernel has no tracing (CONFIG_FTRACE)`);
  } else {
    try {
      fs.accessSync(instances, fs.constants.W_OK);
    } catch (e) {
      missing.push(`${instances} is not writable by this process (${errnoOf(e)}); run the agent as root`);
    }
    if (!fs.existsSync(`${tracefsRoot}/events/damon/damon_aggregated`)) {
      missing.push(`no ${tracefsRoot}/events/damon/damon_aggregated: the kernel has no damon:damon_aggregated trace event`);
    }
  }
  return { usable: missing.length === 0, missing };
}

/** See the top of this file. */
export function probeKdamond(sysfsRoot: string, o: KdamondProbeOptions): KdamondProbe {
  const missing: string[] = [];
  const notes: string[] = [];
  const sources: Record<RecordSourceName, SourceProbe> = {
    tracepoint: probeTracepoint(o.tracefsRoot),
    tried_regions: { usable: true, missing: [] },
  };
  const done = (): KdamondProbe => {
    const recommendedSource = sources[DEFAULT_RECORD_SOURCE].usable
      ? DEFAULT_RECORD_SOURCE
      : RECORD_SOURCES.find((s) => sources[s].usable);
    if (recommendedSource === undefined) missing.push('no record source is usable');
    if (recommendedSource === 'tried_regions') {
      notes.push('tried_regions needs DAMOS target filters (Linux 6.6+); checked when the kdamond is configured');
    }
    const usable = missing.length === 0;
    const message = usable
      ? `kdamond operations available (record source: ${recommendedSource})${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`
      : missing.join('; ');
    return { usable, missing, notes, message, sources, recommendedSource: usable ? recommendedSource : undefined };
  };

  if (!fs.existsSync(sysfsRoot)) {
    missing.push(`no ${sysfsRoot}: the kernel has no DAMON (CONFIG_DAMON) or no DAMON sysfs interface (CONFIG_DAMON_SYSFS)`);
    return done();
  }
  const nrPath = nrKdamondsPath(sysfsRoot);
  if (!fs.existsSync(nrPath)) {
    missing.push(`no ${nrPath}: the kernel has no DAMON sysfs interface (CONFIG_DAMON_SYSFS)`);
    return done();
  }
  let text: string;
  try {
    fs.accessSync(nrPath, fs.constants.R_OK | fs.constants.W_OK);
    text = readTrim(nrPath);
  } catch (e) {
    const code = errnoOf(e);
    missing.push(
      code === 'EACCES' || code === 'EPERM'
        ? `${nrPath} is not readable and writable by this process; run the agent as root`
        : `cannot read ${nrPath} (${code})`,
    );
    return done();
  }
  if (!/^\d+$/.test(text)) {
    missing.push(`${nrPath} reads "${text}", not a number of kdamonds`);
    return done();
  }
  const nr = Number(text);
  if (nr > 0) {
    const parts: string[] = [];
    for (let k = 0; k < nr; k++) {
      const dir = `${kdamondsDir(sysfsRoot)}/${k}`;
      try {
        const state = readTrim(`${dir}/state`);
        parts.push(state === 'on' ? `kdamond ${k}: on (pid ${readTrim(`${dir}/pid`)})` : `kdamond ${k}: ${state}`);
      } catch (e) {
        parts.push(`kdamond ${k}: unreadable (${errnoOf(e)})`);
      }
    }
    missing.push(`DAMON sysfs interface at ${sysfsRoot} is in use: nr_kdamonds is ${nr} (${parts.join('; ')}); ${BUSY_EXPLANATION}`);
  }
  const vaddr = vaddrAvailable(sysfsRoot, nr, o.procRoot);
  if (vaddr.state === 'no') missing.push(`the kernel's DAMON has no vaddr operations (${vaddr.how}); it needs CONFIG_DAMON_VADDR`);
  else if (vaddr.state === 'unknown') notes.push(`vaddr operations not verifiable read-only (${vaddr.how}); checked in avail_operations when the kdamond is created`);
  return done();
}
