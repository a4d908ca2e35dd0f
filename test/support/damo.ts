// damo, DAMON's own user-space tool, for the compatibility tests: the releases that
// scripts/fetch-damo.sh checks out under $DAMO_DIR (default ~/.cache/damon-fleet/damo).
// A test that needs one skips, naming what is missing, where it is absent (CI has no
// network to fetch it).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type DamoTag = 'v2.0.1' | 'v3.3.0';

export interface DamoRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface Damo {
  tag: DamoTag;
  dir: string;
  /** `python3 damo ARGS` in `cwd`, with extra environment (e.g. a PATH with a `file` shim). */
  run(args: string[], opts?: { cwd?: string; env?: NodeJS.ProcessEnv }): DamoRun;
}

export const DAMO_DIR = process.env.DAMO_DIR ?? join(homedir(), '.cache/damon-fleet/damo');

/** The damo release, or why it cannot run here. */
export function findDamo(tag: DamoTag): Damo | string {
  const dir = join(DAMO_DIR, tag);
  if (!existsSync(join(dir, 'damo'))) return `damo ${tag} is not checked out at ${dir} (scripts/fetch-damo.sh fetches it)`;
  const py = spawnSync('python3', ['--version'], { encoding: 'utf8' });
  if (py.error || py.status !== 0) return 'python3 is not installed';
  return {
    tag,
    dir,
    run(args, opts = {}) {
      const r = spawnSync('python3', [join(dir, 'damo'), ...args], {
        encoding: 'utf8', cwd: opts.cwd, env: { ...process.env, ...opts.env }, timeout: 120_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      return { status: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
    },
  };
}

/** The damo release for test `t`, or null after marking the test skipped with the reason. */
export function damoOrSkip(t: { skip: (msg: string) => void }, tag: DamoTag): Damo | null {
  const d = findDamo(tag);
  if (typeof d === 'string') {
    t.skip(d);
    return null;
  }
  return d;
}
