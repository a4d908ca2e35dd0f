// Named, simulated workloads for demos, tests and `--ops synthetic --workload NAME`.
// They are written in the same JSON form a user would put in a file, and go through the
// same validation.
import { readFileSync } from 'node:fs';
import { quoted } from '../../common/log.js';
import { PAGE_SIZE } from '../engine/region.js';
import { parseWorkload, parseWorkloadJson, WorkloadError, type Workload } from './synthetic-workload.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Hot and cold access probabilities per sampling interval shared by the presets. */
export const PRESET_HOT_PROBABILITY = 0.9;
export const PRESET_COLD_PROBABILITY = 0.02;

/**
 * A process-like layout around one big data mapping: a program image low in the address
 * space, the data mapping and a library mapping after a small gap high up, and a stack at
 * the top. The two biggest gaps separate the three, so the three-regions construction
 * finds [image], [data .. library], [stack].
 */
export function processLayout(dataStart: number, dataSize: number) {
  return [
    { start: hexOf(0x5555_5555_4000), size: 8 * MiB },
    { start: hexOf(dataStart), size: dataSize },
    { start: hexOf(dataStart + dataSize + 64 * MiB), size: 16 * MiB },
    { start: hexOf(2 ** 47 - 1 * MiB), size: 1 * MiB },
  ];
}

export const PRESET_DATA_START = 0x7f00_0000_0000;

function hexOf(n: number): string {
  return `0x${n.toString(16)}`;
}

function pages(bytes: number): number {
  return Math.floor(bytes / PAGE_SIZE) * PAGE_SIZE;
}

/** "hot5": a 4 GiB data mapping whose hot 5% moves to another place every 4 s. */
function hot5() {
  const size = 4 * GiB;
  const hot = pages(size * 0.05);
  const at = (offset: number) => ({ start: hexOf(PRESET_DATA_START + offset), size: hot, probability: PRESET_HOT_PROBABILITY });
  return {
    name: 'hot5',
    description: 'simulated: 4 GiB of data; a hot 5% (accessed in 90% of sampling intervals) at 1 GiB moves to 2.75 GiB after 4 s and back after 8 s; the rest is accessed in 2%',
    targets: [{
      id: 1,
      mappings: processLayout(PRESET_DATA_START, size),
      baseProbability: PRESET_COLD_PROBABILITY,
      repeat: true,
      phases: [
        { durationUs: '4s', ranges: [at(1 * GiB)] },
        { durationUs: '4s', ranges: [at(2.75 * GiB)] },
      ],
    }],
  };
}

/** Island offsets and sizes in the 4 GiB data mapping of "islands", per phase. */
export const ISLANDS_PHASES: ReadonlyArray<ReadonlyArray<{ offset: number; size: number; probability: number }>> = [
  [
    { offset: 0.2 * GiB, size: 48 * MiB, probability: 0.9 },
    { offset: 0.9 * GiB, size: 32 * MiB, probability: 0.95 },
    { offset: 1.6 * GiB, size: 64 * MiB, probability: 0.85 },
    { offset: 2.5 * GiB, size: 40 * MiB, probability: 0.9 },
    { offset: 3.4 * GiB, size: 24 * MiB, probability: 0.95 },
  ],
  [
    { offset: 0.5 * GiB, size: 48 * MiB, probability: 0.9 },
    { offset: 1.25 * GiB, size: 32 * MiB, probability: 0.95 },
    { offset: 2.1 * GiB, size: 64 * MiB, probability: 0.85 },
    { offset: 3.0 * GiB, size: 40 * MiB, probability: 0.9 },
    { offset: 3.75 * GiB, size: 24 * MiB, probability: 0.95 },
  ],
];

/** "islands": five small hot islands (24..64 MiB) in 4 GiB that all move after 4 s. */
function islands() {
  const size = 4 * GiB;
  return {
    name: 'islands',
    description: 'simulated: 4 GiB of data with five hot islands of 24..64 MiB (accessed in 85..95% of sampling intervals) that move every 4 s; the rest is accessed in 2%',
    targets: [{
      id: 1,
      mappings: processLayout(PRESET_DATA_START, size),
      baseProbability: PRESET_COLD_PROBABILITY,
      repeat: true,
      phases: ISLANDS_PHASES.map((ph) => ({
        durationUs: '4s',
        ranges: ph.map((r) => ({ start: hexOf(PRESET_DATA_START + pages(r.offset)), size: r.size, probability: r.probability })),
      })),
    }],
  };
}

const PRESETS: Record<string, () => unknown> = { hot5, islands };

/** The workload a synthetic session without synthetic_workload simulates. */
export const DEFAULT_SYNTHETIC_WORKLOAD = 'hot5';

export const PRESET_NAMES: readonly string[] = Object.keys(PRESETS);

/** The JSON form of a preset, e.g. to write it out as a starting point for a custom workload. */
export function presetWorkloadJson(name: string): unknown {
  const make = PRESETS[name];
  if (!make) throw new Error(`no preset workload named "${name}" (presets: ${PRESET_NAMES.join(', ')})`);
  return make();
}

export function presetWorkload(name: string): Workload {
  return parseWorkload(presetWorkloadJson(name), name);
}

/**
 * Resolves a `--workload` argument: a preset name (hot5, islands) or the path of a JSON
 * workload file. Errors say which of the two was tried and what is wrong.
 */
export function loadWorkload(spec: string, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): Workload {
  if (PRESETS[spec]) return presetWorkload(spec);
  let text: string;
  try {
    text = readFile(spec);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : (e as Error).message;
    throw new WorkloadError('', `"${spec}" is neither a preset (${PRESET_NAMES.join(', ')}) nor a readable file: ${why}`);
  }
  return parseWorkloadJson(text, spec);
}

/**
 * A session's synthetic_workload: a preset name or a JSON description (never a file path:
 * the agent runs as root, and the text comes from a remote caller); "" is the default.
 */
export function resolveWorkload(spec: string): Workload {
  const text = spec.trim();
  if (text === '') return presetWorkload(DEFAULT_SYNTHETIC_WORKLOAD);
  if (text.startsWith('{')) return parseWorkloadJson(text, 'synthetic_workload');
  if (PRESET_NAMES.includes(text)) return presetWorkload(text);
  throw new Error(`synthetic_workload ${quoted(text)}: neither a preset (${PRESET_NAMES.join(', ')}) nor a JSON workload`);
}
