// A scheme's statistics (the kernel's damos_stat) and their proto form. Counted on this
// host's targets of a session, per scheme index, since the session turned on.
import type { SchemeStats } from '../../gen/damon/v1/damon.js';

export interface SchemeCounters {
  /** Regions the pattern matched when the scheme was applied, and their bytes. */
  nrTried: number;
  szTried: number;
  /** Regions the action succeeded on (any bytes), and the bytes. */
  nrApplied: number;
  szApplied: number;
  /** Charge windows that ended with the quota used up. */
  qtExceeds: number;
}

export function zeroCounters(): SchemeCounters {
  return { nrTried: 0, szTried: 0, nrApplied: 0, szApplied: 0, qtExceeds: 0 };
}

/** One scheme's try (damos_update_stat). */
export function countTry(c: SchemeCounters, szTried: number, szApplied: number): void {
  c.nrTried++;
  c.szTried += szTried;
  if (szApplied > 0) c.nrApplied++;
  c.szApplied += szApplied;
}

export function toSchemeStats(index: number, c: SchemeCounters, active: boolean): SchemeStats {
  return {
    scheme: index,
    nrTried: BigInt(c.nrTried),
    szTried: BigInt(c.szTried),
    nrApplied: BigInt(c.nrApplied),
    szApplied: BigInt(c.szApplied),
    qtExceeds: BigInt(c.qtExceeds),
    active,
  };
}

/**
 * Per scheme index, the sums of `earlier` (engines a session ran before, e.g. before a
 * target failed) and `now`; `active` is the current engine's.
 */
export function addSchemeStats(earlier: readonly SchemeStats[], now: readonly SchemeStats[]): SchemeStats[] {
  const out = new Map<number, SchemeStats>();
  for (const s of earlier) out.set(s.scheme, { ...s });
  for (const s of now) {
    const e = out.get(s.scheme);
    out.set(
      s.scheme,
      e === undefined
        ? { ...s }
        : {
            scheme: s.scheme,
            nrTried: e.nrTried + s.nrTried,
            szTried: e.szTried + s.szTried,
            nrApplied: e.nrApplied + s.nrApplied,
            szApplied: e.szApplied + s.szApplied,
            qtExceeds: e.qtExceeds + s.qtExceeds,
            active: s.active,
          },
    );
  }
  return [...out.values()].sort((a, b) => a.scheme - b.scheme);
}
