// The tuning view of the split rules: every family and tuning preset on the tuning seeds
// only (bench/eval-families.ts), one line per family and rule. What the refined split's
// constants are chosen on; the held-out figures are the accuracy bench's.
//
// Usage: node dist/bench/tune-split.js [FAMILY ...] [--kernel] [--seeds N]
import { pathToFileURL } from 'node:url';
import type { AdjustMode } from '../agent/engine/context.js';
import { FAMILIES, presetFamily, TUNING_PRESET_SEEDS, TUNING_PRESETS, TUNING_SEEDS, type Family } from './eval-families.js';
import { evaluateFamily, NEVER } from './split-evaluation.js';

function main(): void {
  const args = process.argv.slice(2);
  const modes: AdjustMode[] = args.includes('--kernel') ? ['refined', 'kernel'] : ['refined'];
  const seedsAt = args.indexOf('--seeds');
  const limit = seedsAt >= 0 ? Number(args[seedsAt + 1]) : Infinity;
  const names = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--seeds');
  const all: Array<{ family: Family; seeds: readonly number[] }> = [
    ...TUNING_PRESETS.map((p) => ({ family: presetFamily(p), seeds: TUNING_PRESET_SEEDS })),
    ...FAMILIES.map((family) => ({ family, seeds: TUNING_SEEDS })),
  ];
  const show = (x: number) => (x === NEVER ? 'never' : String(x));
  for (const { family, seeds } of all) {
    if (names.length > 0 && !names.includes(family.name)) continue;
    for (const mode of modes) {
      const { runs, summary: s } = evaluateFamily(family, mode, seeds.slice(0, limit));
      const failed = runs.filter((r) => !r.pass).map((r) => r.seed);
      process.stdout.write(
        `${family.name.padEnd(13)} ${mode.padEnd(7)} pass ${String(s.passed).padStart(2)}/${s.seeds}  start ${show(s.medianFromStart).padStart(5)}  move ${show(s.medianAfterMove).padStart(5)}  ` +
        `falseHot MiB med ${(s.medianFalseHotBytes / 2 ** 20).toFixed(2).padStart(6)} max ${(s.maxFalseHotBytes / 2 ** 20).toFixed(2).padStart(6)}  regions ${s.sampledRegions.toFixed(0).padStart(4)}` +
        `${failed.length ? `  failed: ${failed.slice(0, 8).join(',')}` : ''}\n`,
      );
    }
  }
}

// bench/run.js imports every module beside it to find benchmarks: run only when invoked.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
