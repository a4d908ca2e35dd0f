// A SessionSpec from the controller, checked against the session schema
// (common/session-schema.ts, the controller's own rules) and turned into what the session
// runner needs. Malformed specs are the caller's error (INVALID_ARGUMENT or
// RESOURCE_EXHAUSTED, naming the field); what depends on the host (operations it lacks,
// pids it has not, a result path its data directory refuses) is not checked here but
// reported as the session's observed state.
import type { Attributes } from '../engine/attrs.js';
import {
  SchemaError,
  attrsFromMessage,
  checkOperations,
  checkPids,
  checkSessionId,
  within,
  type ResultFormatName,
} from '../../common/session-schema.js';
import type { SessionSpec } from '../../gen/damon/v1/damon.js';
import { checkSchemesFitOperations, type SchemeSpec } from '../../common/scheme-schema.js';
import { SchemeSpecError, schemeFromMessage } from '../schemes/scheme.js';

export interface RunSpec {
  sessionId: string;
  generation: bigint;
  attrs: Attributes;
  resultFormat: ResultFormatName;
  /** Applied in order once per aggregation (or apply interval); checked against attrs. */
  schemes: SchemeSpec[];
  pids: number[];
  /** As asked: "" (best available), "kdamond", "page_idle" or "synthetic". */
  operations: string;
  syntheticWorkload: string;
  /** Canonical form: two specs with the same key run the same way. */
  key: string;
}

/** The spec as the runner needs it; throws SchemaError (fields prefixed "spec."). */
export function parseSpec(spec: SessionSpec | undefined): RunSpec {
  if (!spec) throw new SchemaError('spec', 'required');
  const sessionId = within('spec.', () => checkSessionId(spec.sessionId, 'session_id'));
  const { resultFormat, schemes, ...sessionAttrs } = within('spec.attrs.', () => attrsFromMessage(spec.attrs));
  // The engine's form of the same schemes (agent/schemes/scheme.ts) goes into its attributes;
  // the controller validated them (the API's rules), so here they only change form.
  const engineSchemes = (spec.attrs?.schemes ?? []).map((s, i) => {
    try {
      return schemeFromMessage(s, i);
    } catch (err) {
      if (err instanceof SchemeSpecError) throw new SchemaError(`spec.attrs.${err.field}`, err.detail);
      throw err;
    }
  });
  const attrs: Attributes = engineSchemes.length > 0 ? { ...sessionAttrs, schemes: engineSchemes } : sessionAttrs;
  const pids = within('spec.', () => checkPids(spec.pids));
  within('spec.', () => checkOperations(spec.operations, spec.syntheticWorkload));
  within('spec.attrs.', () => checkSchemesFitOperations(schemes, spec.operations));
  const key = JSON.stringify([
    spec.generation.toString(),
    attrs,
    resultFormat,
    schemes,
    pids,
    spec.operations,
    spec.syntheticWorkload,
  ]);
  return {
    sessionId,
    generation: spec.generation,
    attrs,
    resultFormat,
    schemes,
    pids,
    operations: spec.operations,
    syntheticWorkload: spec.syntheticWorkload,
    key,
  };
}
