// Records from DAMOS tried regions: one "stat" scheme per target (stat changes nothing, not
// even the regions' age), matching every region by its access pattern, with a "target"
// filter so that scheme i sees only target i's regions (the tried_regions directory does
// not say which target a region belongs to). Each collect writes
// "update_schemes_tried_regions" to our kdamond's state file, which returns once the kernel
// has dumped the regions the schemes were tried on in their next apply pass (at an
// aggregation boundary: the aggregated nr_accesses and age), then reads them back from
// schemes/<i>/tried_regions/<N>/{start,end,nr_accesses,age}.
import type { RegionRecord } from '../records/record.js';
import { parseSysfsInt, type KdamondDriver } from './kdamond-driver.js';
import type { RecordClock, RecordSource, SourceRecord } from './record-source.js';

const ULONG_MAX = '18446744073709551615';
const UINT_MAX = '4294967295';

export interface TriedRegionsSourceOptions {
  clock: RecordClock;
}

export class TriedRegionsSource implements RecordSource {
  readonly name = 'tried_regions' as const;
  readonly kernelTimes = false;
  private readonly clock: RecordClock;
  private driver: KdamondDriver | undefined;
  private nrTargets = 0;
  private aggregation = 0;
  private updates = 0;
  private regionsRead = 0;

  constructor(o: TriedRegionsSourceOptions) {
    this.clock = o.clock;
  }

  /** One stat scheme per target, at the target's index. */
  schemesNeeded(nrTargets: number): number {
    return nrTargets;
  }

  async prepare(driver: KdamondDriver, nrTargets: number): Promise<void> {
    this.nrTargets = nrTargets;
    const s = 'contexts/0/schemes';
    for (let i = 0; i < nrTargets; i++) {
      const d = `${s}/${i}`;
      await driver.set(`${d}/action`, 'stat');
      await driver.set(`${d}/access_pattern/sz/min`, 0);
      await driver.set(`${d}/access_pattern/sz/max`, ULONG_MAX);
      await driver.set(`${d}/access_pattern/nr_accesses/min`, 0);
      await driver.set(`${d}/access_pattern/nr_accesses/max`, UINT_MAX);
      await driver.set(`${d}/access_pattern/age/min`, 0);
      await driver.set(`${d}/access_pattern/age/max`, UINT_MAX);
      // Keep only target i: the filter catches memory NOT of target i (matching N) and
      // filters it out.
      await driver.set(`${d}/filters/nr_filters`, 1);
      await driver.set(`${d}/filters/0/type`, 'target');
      await driver.set(`${d}/filters/0/damon_target_idx`, i);
      await driver.set(`${d}/filters/0/matching`, 'N');
    }
  }

  async begin(driver: KdamondDriver): Promise<void> {
    this.driver = driver;
  }

  async collect(): Promise<SourceRecord[]> {
    const driver = this.driver;
    if (driver === undefined) throw new Error('tried_regions source: collect() before begin()');
    await driver.command('update_schemes_tried_regions');
    const endNs = this.clock.nowWallNs();
    this.updates++;
    this.aggregation++;
    const out: SourceRecord[] = [];
    for (let i = 0; i < this.nrTargets; i++) {
      out.push({ targetIndex: i, endNs, aggregation: this.aggregation, afterGap: true, regions: await this.readRegions(driver, i) });
    }
    return out;
  }

  private async readRegions(driver: KdamondDriver, scheme: number): Promise<RegionRecord[]> {
    const dir = `contexts/0/schemes/${scheme}/tried_regions`;
    const names = (await driver.list(dir)).filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(a) - Number(b));
    const regions = await Promise.all(
      names.map(async (n) => {
        const file = (f: string) => `${dir}/${n}/${f}`;
        const [start, end, nrAccesses, age] = await Promise.all(
          ['start', 'end', 'nr_accesses', 'age'].map(async (f) => parseSysfsInt(await driver.read(file(f)), `${driver.dir}/${file(f)}`)),
        );
        if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end <= start) {
          throw new Error(`${driver.dir}/${dir}/${n}: region ${start}-${end} is empty or beyond 2^53`);
        }
        return { start, end, nrAccesses, age };
      }),
    );
    regions.sort((a, b) => a.start - b.start);
    for (let k = 1; k < regions.length; k++) {
      if (regions[k].start < regions[k - 1].end) {
        throw new Error(`${driver.dir}/${dir}: regions ${regions[k - 1].start}-${regions[k - 1].end} and ${regions[k].start}-${regions[k].end} overlap`);
      }
    }
    this.regionsRead += regions.length;
    return regions;
  }

  async end(): Promise<void> {
    // Everything lives in our kdamond directory, which the driver removes.
    this.driver = undefined;
  }

  endSync(): void {
    this.driver = undefined;
  }

  counters(): Record<string, number> {
    return { updates: this.updates, regionsRead: this.regionsRead };
  }
}
