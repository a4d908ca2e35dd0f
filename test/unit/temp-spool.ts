// A record spool in a fresh temporary directory, removed when the process exits.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../common/log.js';
import { RecordSpool, type SpoolOptions } from '../../agent/daemon/spool.js';

const dirs: string[] = [];
process.once('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A new empty directory for a spool (removed at exit). */
export function tempSpoolDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'damon-spool-'));
  dirs.push(d);
  return join(d, '.spool');
}

export function tempSpool(opts: Partial<SpoolOptions> & { log?: Logger } = {}): RecordSpool {
  return RecordSpool.open(tempSpoolDir(), { log: silentLogger, ...opts });
}
