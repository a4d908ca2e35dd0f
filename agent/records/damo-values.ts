// Values in the forms damo writes into its JSON record files, read back exactly.
//
// damo (v3.x, _damo_records.py write_json) asks for machine-friendly numbers
// (to_kvpairs(raw=True)), but DamonSnapshot.to_kvpairs() calls each region's to_kvpairs()
// without it, so every region carries damo's human-readable forms (_damo_fmt_str.py):
//   start, end, age.aggr_intervals  format_nr: grouped digits       "139,637,976,727,552"
//   age.usec                        format_time_us_exact: durations "100 ms", "1 s 200 ms",
//                                   "2 h 3 m 4 s", "1,234 d 5 h", "0 ns", "1.500 ns"
//   sz_filter_passed                format_sz: "4.000 KiB" (not read here)
//   nr_accesses.samples, percent    as they are: a number (percent may have a fraction)
// and the rest as '%d' strings: target ids and times as "1700000000123456789", intervals as
// "5000"; `damo report raw --json` without --raw_number writes those as durations too.
// JSON numbers are accepted everywhere.

/** A value that is not in any form damo writes: the caller names where it was. */
export class DamoValueError extends Error {}

const GROUPED = /^-?(?:\d{1,3}(?:,\d{3})+|\d+)$/;

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** An integer: a JSON number, or digits, grouped by thousands or not ("1,234"). */
export function damoInteger(v: unknown): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'string' && GROUPED.test(v.trim())) return BigInt(v.trim().replace(/,/g, ''));
  throw new DamoValueError(`expected an integer (digits, grouped by commas or not), found ${show(v)}`);
}

/** A number that may have a fraction: nr_accesses' percent, samples. A trailing '%' is allowed. */
export function damoNumber(v: unknown): number {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string') {
    const t = v.trim().replace(/\s*%$/, '');
    if (/^-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$/.test(t)) return Number(t.replace(/,/g, ''));
  }
  throw new DamoValueError(`expected a number, found ${show(v)}`);
}

const UNIT_NS: Record<string, bigint> = {
  ns: 1n, us: 1_000n, ms: 1_000_000n, s: 1_000_000_000n,
  m: 60_000_000_000n, h: 3_600_000_000_000n, d: 86_400_000_000_000n,
};
const TERM = /(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?\s*(ns|us|ms|s|m|h|d)(?![a-z])/y;

/**
 * A time or duration in nanoseconds: a number or digits in `plainUnitNs` units (ns for
 * times, us for intervals and ages), or damo's "<n> <unit> ..." text in any units.
 * Fractions of a nanosecond are rounded.
 */
export function damoDurationNs(v: unknown, plainUnitNs: bigint): bigint {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v) * plainUnitNs;
  if (typeof v !== 'string') throw new DamoValueError(`expected a duration, found ${show(v)}`);
  let t = v.trim();
  if (GROUPED.test(t)) return BigInt(t.replace(/,/g, '')) * plainUnitNs;
  const negative = t.startsWith('-');
  if (negative) t = t.slice(1).trimStart();
  let total = 0n;
  let terms = 0;
  TERM.lastIndex = 0;
  while (TERM.lastIndex < t.length) {
    const at = TERM.lastIndex;
    const m = TERM.exec(t);
    if (m === null) throw new DamoValueError(`expected a duration like "100 ms" or "1 s 200 ms", found ${show(v)} (at ${show(t.slice(at, at + 12))})`);
    const unit = UNIT_NS[m[3]!]!;
    total += BigInt(m[1]!.replace(/,/g, '')) * unit;
    if (m[2] !== undefined) {
      const scale = 10n ** BigInt(m[2].length);
      total += (BigInt(m[2]) * unit * 2n + scale) / (2n * scale); // rounded to the nanosecond
    }
    terms++;
    while (TERM.lastIndex < t.length && t[TERM.lastIndex] === ' ') TERM.lastIndex++;
  }
  if (terms === 0) throw new DamoValueError(`expected a duration, found ${show(v)}`);
  return negative ? -total : total;
}
