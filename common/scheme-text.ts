// DAMON's text form of schemes: the kernel's debugfs "schemes" file (Linux 5.16 to 6.x,
// mm/damon/dbgfs.c), one scheme per line of 18 numbers,
//
//   <min_sz> <max_sz> <min_nr_accesses> <max_nr_accesses> <min_age> <max_age> <action>
//   <quota_ms> <quota_sz> <quota_reset_interval_ms> <weight_sz> <weight_nr_accesses>
//   <weight_age> <wmarks_metric> <wmarks_interval> <wmarks_high> <wmarks_mid> <wmarks_low>
//
// with the action as dbgfs's number (0 willneed, 1 cold, 2 pageout, 3 hugepage,
// 4 nohugepage, 5 stat) and the watermark metric as its number (0 none, 1 free_mem_rate).
// For people, names are taken too (pageout, free_mem_rate), and so are '#' comments and
// blank lines. Two things dbgfs lacks: the action collapse (by name only) and an optional
// 19th number, apply_interval_us. An unbounded max is written as the kernel's largest value
// (ULONG_MAX for sizes, UINT_MAX for nr_accesses and age), and read back as no bound.
// What the numbers may be is common/scheme-schema.ts's; errors here name the line and field.
import { quoted } from './log.js';
import {
  KERNEL_UINT_MAX,
  KERNEL_ULONG_MAX,
  MAX_SCHEMES_TEXT_BYTES,
  SCHEME_ACTIONS,
  WatermarkMetrics,
  protoAction,
  schemesFromMessage,
  type SchemeActionName,
  type SchemeSpec,
} from './scheme-schema.js';
import { SchemaError } from './schema-base.js';
import { WatermarkMetric, type Scheme as ProtoScheme } from '../gen/damon/v1/damon.js';

/** The fields of a line, in order, as dbgfs names them. */
export const SCHEME_TEXT_FIELDS = [
  'min_sz',
  'max_sz',
  'min_nr_accesses',
  'max_nr_accesses',
  'min_age',
  'max_age',
  'action',
  'quota_ms',
  'quota_sz',
  'quota_reset_interval_ms',
  'weight_sz',
  'weight_nr_accesses',
  'weight_age',
  'wmarks_metric',
  'wmarks_interval',
  'wmarks_high',
  'wmarks_mid',
  'wmarks_low',
  'apply_interval_us',
] as const;
type TextField = (typeof SCHEME_TEXT_FIELDS)[number];
/** Fields of the kernel's format; apply_interval_us may follow. */
const KERNEL_FIELDS = 18;

/** dbgfs's action numbers (damos_action_to_dbgfs_scheme_action); collapse has none. */
export const DBGFS_ACTION_NUMBERS: Readonly<Partial<Record<SchemeActionName, number>>> = {
  willneed: 0,
  cold: 1,
  pageout: 2,
  hugepage: 3,
  nohugepage: 4,
  stat: 5,
};
const ACTION_OF_NUMBER = new Map(Object.entries(DBGFS_ACTION_NUMBERS).map(([name, n]) => [String(n), name as SchemeActionName]));
/** dbgfs's watermark metric numbers (enum damos_wmark_metric). */
const METRIC_NUMBERS = { [WatermarkMetrics.None]: 0, [WatermarkMetrics.FreeMemRate]: 1 } as const;

/** The text field each checked message field comes from. */
const TEXT_FIELD_OF: Readonly<Record<string, TextField>> = {
  'access_pattern.min_size_bytes': 'min_sz',
  'access_pattern.max_size_bytes': 'max_sz',
  'access_pattern.min_nr_accesses': 'min_nr_accesses',
  'access_pattern.max_nr_accesses': 'max_nr_accesses',
  'access_pattern.min_age': 'min_age',
  'access_pattern.max_age': 'max_age',
  action: 'action',
  'quotas.ms': 'quota_ms',
  'quotas.bytes': 'quota_sz',
  'quotas.reset_interval_ms': 'quota_reset_interval_ms',
  'quotas.weight_size_permil': 'weight_sz',
  'quotas.weight_nr_accesses_permil': 'weight_nr_accesses',
  'quotas.weight_age_permil': 'weight_age',
  'watermarks.metric': 'wmarks_metric',
  'watermarks.interval_us': 'wmarks_interval',
  'watermarks.high_permil': 'wmarks_high',
  'watermarks.mid_permil': 'wmarks_mid',
  'watermarks.low_permil': 'wmarks_low',
  apply_interval_us: 'apply_interval_us',
};

const U64_MAX = KERNEL_ULONG_MAX;
const U32_MAX = BigInt(KERNEL_UINT_MAX);
/** Fields that are 32-bit in the message (and the kernel); the others are 64-bit. */
const U32_FIELDS: ReadonlySet<TextField> = new Set([
  'min_nr_accesses',
  'max_nr_accesses',
  'min_age',
  'max_age',
  'weight_sz',
  'weight_nr_accesses',
  'weight_age',
  'wmarks_high',
  'wmarks_mid',
  'wmarks_low',
]);

function where(line: number, field: number): string {
  return `line ${line}, field ${field + 1} (${SCHEME_TEXT_FIELDS[field]})`;
}

function textError(detail: string): SchemaError {
  return new SchemaError('schemes_text', detail);
}

/** The lines that hold a scheme: number and words, comments and blank lines left out. */
function schemeLines(text: string): { line: number; words: string[] }[] {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_SCHEMES_TEXT_BYTES) throw textError(`is ${bytes} bytes long; at most ${MAX_SCHEMES_TEXT_BYTES} (MAX_SCHEMES_TEXT_BYTES)`);
  const out: { line: number; words: string[] }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const hash = raw.indexOf('#');
    const words = (hash >= 0 ? raw.slice(0, hash) : raw).split(/[ \t]+/).filter((w) => w !== '');
    if (words.length > 0) out.push({ line: i + 1, words });
  });
  return out;
}

function number(words: string[], line: number, field: number): bigint {
  const w = words[field];
  if (!/^\d{1,20}$/.test(w)) throw textError(`${where(line, field)}: not a non-negative integer: ${quoted(w, 24)}`);
  const v = BigInt(w);
  const max = U32_FIELDS.has(SCHEME_TEXT_FIELDS[field]) ? U32_MAX : U64_MAX;
  if (v > max) throw textError(`${where(line, field)}: too large: at most ${max}, got ${w}`);
  return v;
}

function action(words: string[], line: number): SchemeActionName {
  const w = words[6].toLowerCase();
  const a = ACTION_OF_NUMBER.get(w) ?? (SCHEME_ACTIONS as readonly string[]).find((n) => n === w);
  if (a === undefined) {
    const numbers = Object.entries(DBGFS_ACTION_NUMBERS).map(([n, k]) => `${k} ${n}`).join(', ');
    throw textError(`${where(line, 6)}: unknown action ${quoted(words[6], 24)} (${numbers}, or a name: ${SCHEME_ACTIONS.join(', ')})`);
  }
  return a as SchemeActionName;
}

function metric(words: string[], line: number): WatermarkMetric {
  switch (words[13].toLowerCase()) {
    case '0':
    case WatermarkMetrics.None:
      return WatermarkMetric.WATERMARK_METRIC_NONE;
    case '1':
    case WatermarkMetrics.FreeMemRate:
      return WatermarkMetric.WATERMARK_METRIC_FREE_MEM_RATE;
    default:
      throw textError(`${where(line, 13)}: unknown watermark metric ${quoted(words[13], 24)} (0 or none, 1 or free_mem_rate)`);
  }
}

/** One line as the API's message, unchecked beyond its syntax and wire types. */
function lineToMessage(words: string[], line: number): ProtoScheme {
  if (words.length !== KERNEL_FIELDS && words.length !== KERNEL_FIELDS + 1) {
    throw textError(`line ${line}: ${words.length} fields; a scheme has ${KERNEL_FIELDS} (${SCHEME_TEXT_FIELDS.slice(0, KERNEL_FIELDS).join(' ')}) and optionally apply_interval_us`);
  }
  const n = (field: number) => number(words, line, field);
  const small = (field: number) => Number(n(field));
  return {
    accessPattern: {
      minSizeBytes: n(0),
      maxSizeBytes: n(1),
      minNrAccesses: small(2),
      maxNrAccesses: small(3),
      minAge: small(4),
      maxAge: small(5),
    },
    action: protoAction(action(words, line)),
    quotas: { ms: n(7), bytes: n(8), resetIntervalMs: n(9), weightSizePermil: small(10), weightNrAccessesPermil: small(11), weightAgePermil: small(12) },
    watermarks: { metric: metric(words, line), intervalUs: n(14), highPermil: small(15), midPermil: small(16), lowPermil: small(17) },
    applyIntervalUs: words.length > KERNEL_FIELDS ? n(18) : 0n,
  };
}

/**
 * Parses schemes text into the API's messages (syntax and wire types only), with the line
 * each came from. Throws SchemaError (field "schemes_text") naming line and field.
 */
export function parseSchemesText(text: string): { schemes: ProtoScheme[]; lines: number[] } {
  const lines = schemeLines(text);
  return { schemes: lines.map((l) => lineToMessage(l.words, l.line)), lines: lines.map((l) => l.line) };
}

/**
 * Schemes from their text form, checked as the message form is (scheme-schema.ts) against
 * the attributes they run with. Errors: SchemaError "schemes_text: line 3, field 4
 * (max_nr_accesses): ...".
 */
export function schemesFromText(text: string, a: { samplingUs: number; aggregationUs: number }): SchemeSpec[] {
  const { schemes, lines } = parseSchemesText(text);
  try {
    return schemesFromMessage(schemes, a);
  } catch (err) {
    if (!(err instanceof SchemaError)) throw err;
    const m = /^schemes\[(\d+)\]\.(.+)$/.exec(err.field);
    if (!m) throw textError(err.detail);
    const line = lines[Number(m[1])];
    const field = TEXT_FIELD_OF[m[2]];
    const at = field === undefined ? `line ${line}` : where(line, SCHEME_TEXT_FIELDS.indexOf(field));
    throw textError(`${at}: ${err.detail}`);
  }
}

/** One scheme as a line of the text form. */
export function formatSchemeLine(s: SchemeSpec): string {
  const p = s.pattern;
  const q = s.quotas;
  const w = s.watermarks;
  const fields: (string | number | bigint)[] = [
    p.minSizeBytes,
    p.maxSizeBytes ?? KERNEL_ULONG_MAX,
    p.minNrAccesses,
    p.maxNrAccesses ?? KERNEL_UINT_MAX,
    p.minAge,
    p.maxAge ?? KERNEL_UINT_MAX,
    DBGFS_ACTION_NUMBERS[s.action] ?? s.action,
    q?.ms ?? 0,
    q?.bytes ?? 0,
    q?.resetIntervalMs ?? 0,
    q?.weightSizePermil ?? 0,
    q?.weightNrAccessesPermil ?? 0,
    q?.weightAgePermil ?? 0,
    METRIC_NUMBERS[w?.metric ?? WatermarkMetrics.None],
    w?.intervalUs ?? 0,
    w?.highPermil ?? 0,
    w?.midPermil ?? 0,
    w?.lowPermil ?? 0,
  ];
  if (s.applyIntervalUs !== 0) fields.push(s.applyIntervalUs);
  return fields.join(' ');
}

/** Schemes in the text form, one line each ("" for none). */
export function formatSchemesText(schemes: readonly SchemeSpec[]): string {
  return schemes.map((s) => `${formatSchemeLine(s)}\n`).join('');
}
