// The heatmap's colours: a perceptually ordered scale from idle (near black) to hottest
// (pale yellow), the anchors of matplotlib's "inferno", readable in grey print and by
// most colour-blind readers; and a grey apart from the scale for "no record".
export type Rgb = readonly [number, number, number];

const ANCHORS: readonly Rgb[] = [
  [0, 0, 4],
  [40, 11, 84],
  [101, 21, 110],
  [159, 42, 99],
  [212, 72, 66],
  [245, 125, 21],
  [250, 193, 39],
  [252, 255, 164],
];

/** Cells no record covers. */
export const NO_RECORD: Rgb = [200, 200, 200];

/** The colour of a value in [0, 1] (clamped). */
export function heatColor(f: number): Rgb {
  const x = Math.min(1, Math.max(0, f)) * (ANCHORS.length - 1);
  const i = Math.min(ANCHORS.length - 2, Math.floor(x));
  const u = x - i;
  const a = ANCHORS[i]!;
  const b = ANCHORS[i + 1]!;
  return [0, 1, 2].map((k) => Math.round(a[k]! + (b[k]! - a[k]!) * u)) as unknown as Rgb;
}

export function cssColor(c: Rgb): string {
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}
