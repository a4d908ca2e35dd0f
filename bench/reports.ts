// How long the reports take on long recordings: a heatmap (cells, SVG), its rasterising
// to PNG, wss and summary, for one target of R regions over N aggregations, in CPU
// milliseconds per million regions read (so sizes compare) and in seconds per picture.
import { drawHeatmap } from '../reports/heatmap.js';
import { svgToPng } from '../reports/render.js';
import { summaryText } from '../reports/summary.js';
import { DAMO_WSS_DEFAULTS, wssReport } from '../reports/wss.js';
import type { ReportTarget } from '../reports/report-input.js';
import { median, type BenchContext, type BenchResult, type Benchmark } from './benchmark.js';

const GiB = 2 ** 30;

/** N records of R regions over a 4 GiB mapping and a stack ~42 TiB above it; sizes and counts vary per record. */
function recording(n: number, r: number): ReportTarget {
  const base = 0x7f00_0000_0000;
  const records = [];
  for (let i = 0; i < n; i++) {
    const regions = [];
    let at = base;
    for (let k = 0; k < r - 1; k++) {
      const end = k === r - 2 ? base + 4 * GiB : at + Math.floor(((4 * GiB) / (r - 1) / 4096) * (0.5 + ((k * 7 + i) % 10) / 10)) * 4096;
      regions.push({ start: at, end: Math.min(end, base + 4 * GiB - 4096 * (r - 2 - k)), nrAccesses: (k * 3 + i) % 21 });
      at = regions[regions.length - 1]!.end;
    }
    regions.push({ start: 0x7fff_fff0_0000, end: 0x8000_0000_0000, nrAccesses: 1 });
    records.push({ startNs: BigInt(i) * 100_000_000n, endNs: BigInt(i + 1) * 100_000_000n, regions });
  }
  return { label: 'bench', slug: 'bench', maxNrAccesses: 20, maxFromIntervals: true, records };
}

function timeMs(f: () => void): number {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export const benchmark: Benchmark = {
  name: 'reports',
  description: 'report heatmap/wss/summary on long recordings: milliseconds per million regions read',
  async run(ctx: BenchContext): Promise<BenchResult> {
    const sizes = ctx.quick ? [[600, 100], [600, 1000]] : [[36_000, 100], [3_600, 1000], [600, 1000]];
    const rows: Array<Array<string | number>> = [];
    const data: unknown[] = [];
    let step = 0;
    for (const [n, r] of sizes as [number, number][]) {
      const t = recording(n, r);
      const m = n * r / 1e6;
      const draw: number[] = [];
      const png: number[] = [];
      const wss: number[] = [];
      const sum: number[] = [];
      for (let k = 0; k < ctx.repeats; k++) {
        ctx.progress(`${n} records x ${r} regions`, step++, sizes.length * ctx.repeats);
        let svg = '';
        draw.push(timeMs(() => (svg = drawHeatmap(t).svg)));
        png.push(timeMs(() => svgToPng(svg)));
        wss.push(timeMs(() => wssReport(t, { ...DAMO_WSS_DEFAULTS, accThres: [1, 10] })));
        sum.push(timeMs(() => summaryText(t)));
      }
      const row = { records: n, regions: r, drawMsPerM: median(draw) / m, pngMs: median(png), wssMsPerM: median(wss) / m, summaryMsPerM: median(sum) / m };
      data.push({ ...row, drawMs: draw, pngMsAll: png, wssMs: wss, summaryMs: sum });
      rows.push([n, r, row.drawMsPerM.toFixed(0), row.pngMs.toFixed(0), row.wssMsPerM.toFixed(0), row.summaryMsPerM.toFixed(0)]);
    }
    const last = data[data.length - 1] as { drawMsPerM: number };
    return {
      summary: { heatmapMsPerMillionRegions: Number(last.drawMsPerM.toFixed(1)) },
      tables: [{
        title: 'report costs (median of repeats; wall milliseconds on this machine)',
        columns: ['records', 'regions each', 'heatmap ms / M regions', 'PNG ms', 'wss ms / M regions', 'summary ms / M regions'],
        rows,
      }],
      notes: [
        'Inputs are built in memory (no file or NATS reading): this measures drawing, not decoding.',
        'PNG time is per picture and does not grow with the input (the SVG holds one raster of the plot).',
      ],
      data,
    };
  },
};
