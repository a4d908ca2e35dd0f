// Where the rig's files are: the project folder, the rig's sources (test/guest/, not the
// compiled copy under dist/) and the cache for built kernels, initramfs and binaries.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RigPaths {
  projectRoot: string;
  guestDir: string;
  cacheDir: string;
}

function findProjectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'test', 'guest', 'init.sh'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the project folder (with test/guest/init.sh) above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export function rigPaths(): RigPaths {
  const projectRoot = findProjectRoot();
  const guestDir = join(projectRoot, 'test', 'guest');
  // Same default and variable as test/guest/build-kernel.sh: outside the checkout, so every
  // clone on a machine (CI's among them) shares one built kernel.
  const userCache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const cacheDir = resolve(process.env.DAMON_RIG_CACHE ?? join(userCache, 'damon-fleet', 'guest'));
  return { projectRoot, guestDir, cacheDir };
}
