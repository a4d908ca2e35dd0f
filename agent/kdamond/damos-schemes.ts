// A session's schemes handed to the kernel's own DAMOS (the "kdamond" operations): each one
// written to contexts/0/schemes/<N>/ of our kdamond (Linux 6.12 sysfs-schemes.c; the
// admin guide's usage.rst), after the record source's own schemes, and their statistics
// read back from schemes/<N>/stats/ after the state file's "update_schemes_stats" command.
//
// A freshly created scheme directory holds the kernel's defaults (action stat, every bound
// 0, no quota, watermark metric none, apply_interval_us 0), so only what differs from them
// is written: the access pattern and the action always, quotas, watermarks and the apply
// interval when the scheme has them. Every write goes through the driver, whose ledger
// then checks that the kdamond is still ours.
import { KERNEL_UINT_MAX, KERNEL_ULONG_MAX, type SchemeSpec } from '../../common/scheme-schema.js';
import type { SchemeStats } from '../../gen/damon/v1/damon.js';
import { parseSysfsInt, type KdamondDriver } from './kdamond-driver.js';

const SCHEMES_DIR = 'contexts/0/schemes';

/** The kernel's directory of scheme `index` (0-based among every scheme of our kdamond). */
export function schemeDir(index: number): string {
  return `${SCHEMES_DIR}/${index}`;
}

/** Writes nr_schemes: the kernel recreates every scheme directory, so it is written once, first. */
export async function setNrSchemes(driver: KdamondDriver, n: number): Promise<void> {
  await driver.set(`${SCHEMES_DIR}/nr_schemes`, n);
}

/** Writes `schemes` into the scheme directories from index `first` on. */
export async function writeSchemes(driver: KdamondDriver, first: number, schemes: readonly SchemeSpec[]): Promise<void> {
  for (let i = 0; i < schemes.length; i++) await writeScheme(driver, schemeDir(first + i), schemes[i]);
}

async function writeScheme(driver: KdamondDriver, d: string, s: SchemeSpec): Promise<void> {
  if (s.action === 'collapse') throw new RangeError(`the kernel's DAMOS has no collapse action (${d})`);
  const p = s.pattern;
  await driver.set(`${d}/action`, s.action);
  await driver.set(`${d}/access_pattern/sz/min`, p.minSizeBytes);
  await driver.set(`${d}/access_pattern/sz/max`, p.maxSizeBytes ?? KERNEL_ULONG_MAX.toString());
  await driver.set(`${d}/access_pattern/nr_accesses/min`, p.minNrAccesses);
  await driver.set(`${d}/access_pattern/nr_accesses/max`, p.maxNrAccesses ?? KERNEL_UINT_MAX);
  await driver.set(`${d}/access_pattern/age/min`, p.minAge);
  await driver.set(`${d}/access_pattern/age/max`, p.maxAge ?? KERNEL_UINT_MAX);
  if (s.quotas) {
    const q = s.quotas;
    await driver.set(`${d}/quotas/ms`, q.ms);
    await driver.set(`${d}/quotas/bytes`, q.bytes);
    await driver.set(`${d}/quotas/reset_interval_ms`, q.resetIntervalMs);
    await driver.set(`${d}/quotas/weights/sz_permil`, q.weightSizePermil);
    await driver.set(`${d}/quotas/weights/nr_accesses_permil`, q.weightNrAccessesPermil);
    await driver.set(`${d}/quotas/weights/age_permil`, q.weightAgePermil);
  }
  if (s.watermarks) {
    const w = s.watermarks;
    await driver.set(`${d}/watermarks/metric`, w.metric);
    await driver.set(`${d}/watermarks/interval_us`, w.intervalUs);
    await driver.set(`${d}/watermarks/high`, w.highPermil);
    await driver.set(`${d}/watermarks/mid`, w.midPermil);
    await driver.set(`${d}/watermarks/low`, w.lowPermil);
  }
  if (s.applyIntervalUs !== 0) await driver.set(`${d}/apply_interval_us`, s.applyIntervalUs);
}

const STAT_FILES = ['nr_tried', 'sz_tried', 'nr_applied', 'sz_applied', 'qt_exceeds'] as const;

/** A stats file as the exact unsigned number it holds (sizes may pass 2^53). */
function statValue(text: string, path: string): bigint {
  const t = text.trim();
  if (!/^\d{1,20}$/.test(t)) {
    parseSysfsInt(t, path); // names the file
    throw new Error(`${path}: expected an unsigned integer, read "${t}"`);
  }
  return BigInt(t);
}

/**
 * The kernel's statistics of `count` schemes from index `first` (our session's, numbered
 * from 0 as the session numbers them): "update_schemes_stats" makes the kernel copy them
 * into the stats files. `active` is whether the scheme was tried on any region since
 * `previous` (always true without watermarks): the kernel's sysfs does not show the
 * watermarks' state, and a scheme its watermarks deactivate is tried on nothing.
 */
export async function readSchemeStats(
  driver: KdamondDriver,
  first: number,
  schemes: readonly SchemeSpec[],
  previous: readonly SchemeStats[],
): Promise<SchemeStats[]> {
  await driver.command('update_schemes_stats');
  return Promise.all(
    schemes.map(async (s, i) => {
      const dir = `${schemeDir(first + i)}/stats`;
      const [nrTried, szTried, nrApplied, szApplied, qtExceeds] = await Promise.all(
        STAT_FILES.map(async (f) => statValue(await driver.read(`${dir}/${f}`), `${driver.dir}/${dir}/${f}`)),
      );
      const before = previous[i]?.nrTried ?? 0n;
      return { scheme: i, nrTried, szTried, nrApplied, szApplied, qtExceeds, active: s.watermarks === null || nrTried > before };
    }),
  );
}
