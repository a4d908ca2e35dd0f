// Helpers for the schemes tests: scheme specs with defaults, a monitoring view the tests
// move by hand, and an actuator that records what it was asked to do.
import { newRegion, type Region, type Target } from '../../agent/engine/region.js';
import { ActionError, type SchemeActuator } from '../../agent/schemes/actuator.js';
import type { AccessPatternSpec, QuotaSpec, SchemeActionName, SchemeSpec } from '../../agent/schemes/scheme.js';
import type { SchemeView } from '../../agent/schemes/schemes-engine.js';

export const P = 4096;

export const ANY_PATTERN: AccessPatternSpec = Object.freeze({
  minSizeBytes: 0, maxSizeBytes: Infinity, minNrAccesses: 0, maxNrAccesses: Infinity, minAge: 0, maxAge: Infinity,
});

export function scheme(o: Partial<SchemeSpec> & { action: SchemeActionName }): SchemeSpec {
  return { pattern: ANY_PATTERN, quota: null, watermarks: null, applyIntervalUs: 0, ...o };
}

export function quota(o: Partial<QuotaSpec>): QuotaSpec {
  return { ms: 0, bytes: 0, resetIntervalMs: 1000, weightSizePermil: 0, weightNrAccessesPermil: 1000, weightAgePermil: 1000, ...o };
}

/** A region of pages [startPage, endPage) with its counts. */
export function region(startPage: number, endPage: number, nrAccesses = 0, age = 0): Region {
  return { ...newRegion(startPage * P, endPage * P), nrAccesses, age };
}

/** Monitoring at 5 ms / 100 ms (20 samples an aggregation), moved by hand. */
export class FakeView implements SchemeView {
  passedSamples = 0;
  now = 0;
  samplingUs = 5_000;
  aggregationUs = 100_000;
  constructor(public targets: Target[]) {}
  nowUs(): number {
    return this.now;
  }
  intervals() {
    return { samplingUs: this.samplingUs, aggregationUs: this.aggregationUs };
  }
  /** The end of the next aggregation. */
  aggregate(): this {
    this.passedSamples += this.aggregationUs / this.samplingUs;
    this.now += this.aggregationUs;
    return this;
  }
}

export interface Call {
  targetId: number;
  start: number;
  end: number;
  action: SchemeActionName;
}

/** Applies nothing, records every call; `fail` makes a target refuse with an errno. */
export class RecordingActuator implements SchemeActuator {
  calls: Call[] = [];
  released: number[] = [];
  fail = new Map<number, string>();
  /** Called with each call's bytes (a test clock advances by it). */
  onApply: (bytes: number) => void = () => {};
  refuse: Partial<Record<SchemeActionName, string>> = {};

  refusal(action: SchemeActionName): string | null {
    return this.refuse[action] ?? null;
  }
  apply(targetId: number, start: number, end: number, action: SchemeActionName): number {
    this.calls.push({ targetId, start, end, action });
    this.onApply(end - start);
    const code = this.fail.get(targetId);
    if (code !== undefined) throw new ActionError(targetId, code, `refused with ${code}`);
    return end - start;
  }
  release(targetId: number): void {
    this.released.push(targetId);
  }
  /** The calls as [startPage, endPage) pairs. */
  pages(): [number, number][] {
    return this.calls.map((c) => [c.start / P, c.end / P]);
  }
}
