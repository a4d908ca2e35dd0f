// A SessionSpec from the controller, checked and turned into what the session runner
// needs. Malformed specs are the caller's error (INVALID_ARGUMENT, naming the field);
// what depends on the host (operations it lacks, pids it has not, a result path it
// refuses) is not checked here but reported as the session's observed state.
import { AttributeError, validateAttributes, type Attributes } from '../engine/attrs.js';
import { SESSION_ID_RE } from '../../common/subjects.js';
import type { SessionSpec } from '../../gen/damon/v1/damon.js';

/** Result-file formats (see docs of attrs.result_format). */
export const RESULT_FORMATS = ['binary', 'binary_v0', 'json', 'json_compressed'] as const;
export type ResultFormat = (typeof RESULT_FORMATS)[number];

/** Operation names a spec may ask for; "" means the best the host supports. */
export const KNOWN_OPERATIONS = ['kdamond', 'page_idle', 'synthetic'] as const;

export class SpecError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'SpecError';
  }
}

export interface RunSpec {
  sessionId: string;
  generation: bigint;
  attrs: Attributes;
  resultFormat: ResultFormat;
  pids: number[];
  /** As asked: "" (best available), "kdamond", "page_idle" or "synthetic". */
  operations: string;
  syntheticWorkload: string;
  /** Canonical form: two specs with the same key run the same way. */
  key: string;
}

// proto3 has no presence: 0 means "not set", and the defaults fill it (as CreateSession does).
function num(v: bigint, field: string): number | undefined {
  if (v === 0n) return undefined;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new SpecError(field, `too large: ${v}`);
  return Number(v);
}

export function parseSpec(spec: SessionSpec | undefined): RunSpec {
  if (!spec) throw new SpecError('spec', 'required');
  if (!SESSION_ID_RE.test(spec.sessionId)) {
    throw new SpecError('spec.session_id', `must match ${SESSION_ID_RE.source}, got "${spec.sessionId}"`);
  }
  const a = spec.attrs;
  let attrs: Attributes;
  try {
    const partial: Partial<Attributes> = { resultFile: a?.resultFile ?? '' };
    const set = <K extends keyof Attributes>(k: K, v: Attributes[K] | undefined) => {
      if (v !== undefined) partial[k] = v;
    };
    if (a) {
      set('samplingUs', num(a.samplingIntervalUs, 'spec.attrs.sampling_interval_us'));
      set('aggregationUs', num(a.aggregationIntervalUs, 'spec.attrs.aggregation_interval_us'));
      set('updateUs', num(a.updateIntervalUs, 'spec.attrs.update_interval_us'));
      set('minNrRegions', a.minNrRegions || undefined);
      set('maxNrRegions', a.maxNrRegions || undefined);
    }
    attrs = validateAttributes(partial);
  } catch (err) {
    if (err instanceof AttributeError) throw new SpecError(`spec.attrs.${err.field}`, err.message.slice(err.field.length + 2));
    throw err;
  }
  const format = a?.resultFormat || 'binary';
  if (!(RESULT_FORMATS as readonly string[]).includes(format)) {
    throw new SpecError('spec.attrs.result_format', `unknown format "${format}" (formats: ${RESULT_FORMATS.join(', ')})`);
  }
  if (spec.pids.length === 0) throw new SpecError('spec.pids', 'at least one pid is required');
  const seen = new Set<number>();
  for (const pid of spec.pids) {
    if (!Number.isInteger(pid) || pid <= 0) throw new SpecError('spec.pids', `not a process id: ${pid}`);
    if (seen.has(pid)) throw new SpecError('spec.pids', `pid ${pid} given twice`);
    seen.add(pid);
  }
  if (spec.operations !== '' && !(KNOWN_OPERATIONS as readonly string[]).includes(spec.operations)) {
    throw new SpecError(
      'spec.operations',
      `unknown operations "${spec.operations}" (known: ${KNOWN_OPERATIONS.join(', ')}; empty for the best the host supports)`,
    );
  }
  if (spec.syntheticWorkload !== '' && spec.operations !== 'synthetic') {
    throw new SpecError('spec.synthetic_workload', 'only meaningful with operations "synthetic"');
  }
  const pids = [...spec.pids];
  const key = JSON.stringify([
    spec.generation.toString(),
    attrs,
    format,
    pids,
    spec.operations,
    spec.syntheticWorkload,
  ]);
  return {
    sessionId: spec.sessionId,
    generation: spec.generation,
    attrs,
    resultFormat: format as ResultFormat,
    pids,
    operations: spec.operations,
    syntheticWorkload: spec.syntheticWorkload,
    key,
  };
}
