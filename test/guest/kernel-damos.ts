// For programs in the guest: the kernel's own DAMOS on one process, written straight to
// DAMON's sysfs interface through the agent's KdamondDriver (which claims an unused
// interface, retries EBUSY and releases what it wrote): vaddr monitoring at the given
// attributes plus the schemes, then their statistics read back. It is the reference the
// reclaim comparison (reclaim-run.ts) measures the agent's own schemes against.
import type { Attributes } from '../../agent/engine/attrs.js';
import { KdamondDriver, parseSysfsInt } from '../../agent/kdamond/kdamond-driver.js';
import { NodeKernelFiles } from '../../agent/kdamond/kernel-files.js';
import { KDAMOND_PATHS } from '../../agent/daemon/ops-select.js';

/** The kernel's names for a scheme's action (sysfs `action`). */
export type KernelDamosAction = 'pageout' | 'cold' | 'willneed' | 'hugepage' | 'nohugepage' | 'stat';

/** One scheme as DAMON's sysfs takes it: sizes in bytes, nr_accesses in samples, ages in aggregation intervals. */
export interface KernelScheme {
  action: KernelDamosAction;
  sizeBytes: { min: number; max: number | null };
  nrAccesses: { min: number; max: number };
  age: { min: number; max: number | null };
}

/** A scheme's counters as the kernel keeps them (schemes/N/stats). */
export interface KernelSchemeStats {
  nrTried: number;
  szTried: number;
  nrApplied: number;
  szApplied: number;
  qtExceeds: number;
}

/** ULONG_MAX and UINT_MAX in the kernel's text: "no upper bound" for sizes and ages. */
const ULONG_MAX = '18446744073709551615';
const UINT_MAX = '4294967295';

export class KernelDamos {
  private constructor(
    private readonly driver: KdamondDriver,
    readonly kdamondPid: number,
    private readonly nrSchemes: number,
  ) {}

  /** Claims the (unused) DAMON sysfs interface, configures vaddr monitoring of `pid` with `schemes`, turns it on. */
  static async start(pid: number, attrs: Attributes, schemes: readonly KernelScheme[]): Promise<KernelDamos> {
    const driver = await KdamondDriver.claim(new NodeKernelFiles(), KDAMOND_PATHS.sysfsRoot);
    try {
      await driver.configureMonitoring(attrs, [pid]);
      const dir = 'contexts/0/schemes';
      await driver.set(`${dir}/nr_schemes`, schemes.length);
      for (const [i, s] of schemes.entries()) {
        const p = `${dir}/${i}`;
        await driver.set(`${p}/action`, s.action);
        // max before min: the kernel checks nothing between them, but a reader sees a sane range at every step.
        await driver.set(`${p}/access_pattern/sz/max`, s.sizeBytes.max === null ? ULONG_MAX : s.sizeBytes.max);
        await driver.set(`${p}/access_pattern/sz/min`, s.sizeBytes.min);
        await driver.set(`${p}/access_pattern/nr_accesses/max`, s.nrAccesses.max);
        await driver.set(`${p}/access_pattern/nr_accesses/min`, s.nrAccesses.min);
        await driver.set(`${p}/access_pattern/age/max`, s.age.max === null ? UINT_MAX : s.age.max);
        await driver.set(`${p}/access_pattern/age/min`, s.age.min);
      }
      const kpid = await driver.turnOn();
      return new KernelDamos(driver, kpid, schemes.length);
    } catch (e) {
      await driver.release().catch(() => undefined);
      throw e;
    }
  }

  /** Every scheme's statistics now (the kernel refreshes the files on `update_schemes_stats`). */
  async stats(): Promise<KernelSchemeStats[]> {
    await this.driver.command('update_schemes_stats');
    const out: KernelSchemeStats[] = [];
    for (let i = 0; i < this.nrSchemes; i++) {
      const read = async (name: string) => {
        const rel = `contexts/0/schemes/${i}/stats/${name}`;
        return parseSysfsInt(await this.driver.read(rel), rel);
      };
      out.push({
        nrTried: await read('nr_tried'),
        szTried: await read('sz_tried'),
        nrApplied: await read('nr_applied'),
        szApplied: await read('sz_applied'),
        qtExceeds: await read('qt_exceeds'),
      });
    }
    return out;
  }

  /** Turns the kdamond off and removes what was written. */
  async stop(): Promise<void> {
    await this.driver.release();
  }
}
