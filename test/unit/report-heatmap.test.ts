// Golden tests of `report heatmap` on recorded data with known patterns: the files are
// written by the project's result writer, read back as the command reads them, drawn,
// rasterised, and the PNG decoded: the hot band's pixels must be where the band is, the
// moving hot set where it was at each time, and the unmapped gap must not be drawn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { openResultWriter } from '../../agent/records/result-writer.js';
import type { AggregationRecord } from '../../agent/records/record.js';
import { loadResultFile, type ReportTarget } from '../../reports/report-input.js';
import { drawHeatmap, type Heatmap } from '../../reports/heatmap.js';
import { svgToPng } from '../../reports/render.js';
import { CUT_PX } from '../../reports/address-axis.js';
import { NO_RECORD, heatColor, type Rgb } from '../../reports/colormap.js';
import {
  BAND, DATA, DATA_SIZE, HOT_SIZE, INTERVALS, MAX_NR, MiB, PER_PHASE, PHASES, STACK, STACK_SIZE, T0, AGGR_NS,
  hotBand, hotSetOf, movingHotSet,
} from '../support/report-patterns.js';

const dir = mkdtempSync(join(tmpdir(), 'damon-report-heatmap-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function recorded(name: string, records: AggregationRecord[], format?: 'binary' | 'json'): Promise<ReportTarget> {
  const path = join(dir, name);
  const w = await openResultWriter(path, { intervals: INTERVALS, format });
  for (const r of records) await w.writeSnapshot([r]);
  await w.close();
  const input = await loadResultFile(path);
  assert.equal(input.targets.length, 1);
  return input.targets[0]!;
}

interface Picture {
  map: Heatmap;
  png: PNG;
  at(x: number, y: number): Rgb;
}

function draw(t: ReportTarget): Picture {
  const map = drawHeatmap(t);
  const png = PNG.sync.read(svgToPng(map.svg));
  assert.equal(png.width, map.width);
  assert.equal(png.height, map.height);
  return {
    map,
    png,
    at(x, y) {
      const i = (png.width * Math.floor(y) + Math.floor(x)) * 4;
      return [png.data[i]!, png.data[i + 1]!, png.data[i + 2]!];
    },
  };
}

const dist = (a: Rgb, b: Rgb) => Math.max(...a.map((v, k) => Math.abs(v - b[k]!)));
const HOT = heatColor(1);
const IDLE = heatColor(0);

function assertColor(p: Picture, x: number, y: number, want: Rgb, what: string): void {
  const got = p.at(x, y);
  assert.ok(dist(got, want) <= 6, `${what}: pixel (${x}, ${y}) is rgb(${got}), want about rgb(${want})`);
}

/** Whether a colour is on the heat scale (as opposed to background, a cut mark, a label). */
function onScale(c: Rgb): boolean {
  for (let v = 0; v <= 1.0001; v += 0.005) if (dist(c, heatColor(v)) <= 4) return true;
  return false;
}

/** The picture's x of an address, from the plot box and the span it lies in. */
function xOf(p: Picture, addr: number): number {
  const s = p.map.axis.spans.find((sp) => addr >= sp.start && addr <= sp.end);
  assert.ok(s, `address 0x${addr.toString(16)} lies in no span`);
  return p.map.plot.x + s.x0 + ((addr - s.start) / (s.end - s.start)) * (s.x1 - s.x0);
}

/** The picture's y of a time (ns after T0). */
function yOf(p: Picture, ns: number, spanNs: number): number {
  return p.map.plot.y + (ns / spanNs) * p.map.plot.height;
}

test('hot band: its pixels are where the band is, at every time, and nowhere else', async () => {
  const p = draw(await recorded('band.json', hotBand()));
  const { plot } = p.map;
  const x0 = xOf(p, BAND.start);
  const x1 = xOf(p, BAND.end);
  // 8 MiB of a 64 MiB span drawn in ~750 pixels: about 94 columns.
  assert.ok(x1 - x0 > 80, `band ${x1 - x0} px wide`);
  for (let y = plot.y + 1; y < plot.y + plot.height - 1; y += 7) {
    for (let x = Math.ceil(x0) + 1; x < Math.floor(x1) - 1; x += 5) assertColor(p, x, y, HOT, 'inside the band');
    // Below the band nr_accesses 1 of 20, above it 0.
    for (const x of [plot.x + 2, Math.floor(x0) - 2]) assertColor(p, x, y, heatColor(1 / MAX_NR), 'below the band');
    for (const x of [Math.ceil(x1) + 2, xOf(p, DATA + DATA_SIZE) - 2]) assertColor(p, x, y, IDLE, 'above the band');
  }
  // The legend says what 100% is.
  assert.match(p.map.svg, /100% = 20 nr_accesses/);
});

test('large unmapped gap: cut out, marked with its size, not drawn', async () => {
  const p = draw(await recorded('gap.json', hotBand()));
  const { plot, axis } = p.map;
  assert.equal(axis.spans.length, 2);
  assert.deepEqual(axis.cuts.map((c) => [c.start, c.end]), [[DATA + DATA_SIZE, STACK]]);
  // ~42.7 TiB between the data and the stack: labelled, and given CUT_PX columns only.
  assert.match(p.map.svg, /✂ 42\.7 TiB gap/);
  const gapTiB = (STACK - DATA - DATA_SIZE) / 2 ** 40;
  assert.ok(gapTiB > 42 && gapTiB < 43);
  // Every column of a row is on the heat scale except the cut's own.
  for (const y of [plot.y + 5, plot.y + plot.height / 2, plot.y + plot.height - 5]) {
    const off: number[] = [];
    for (let x = plot.x; x < plot.x + plot.width; x++) if (!onScale(p.at(x, y))) off.push(x - plot.x);
    const cut = axis.cuts[0]!;
    assert.ok(off.length > 0 && off.length <= CUT_PX, `columns off the scale: ${off}`);
    for (const x of off) assert.ok(x >= cut.x0 && x < cut.x1, `column ${x} off the scale outside the cut ${cut.x0}..${cut.x1}`);
  }
  // Drawn to scale, 65 MiB in 42.7 TiB would be a fraction of one pixel; cut, the data
  // span fills all but the stack's few columns and the cut mark.
  const data = axis.spans[0]!;
  assert.ok(data.x1 - data.x0 >= plot.width - CUT_PX - 12, `data span ${data.x1 - data.x0} of ${plot.width} px`);
  // The stack (nr_accesses 2 of 20) is drawn in its own columns after the cut.
  const stack = axis.spans[1]!;
  assert.equal(stack.start, STACK);
  assert.equal(stack.end, STACK + STACK_SIZE);
  assertColor(p, plot.x + (stack.x0 + stack.x1) / 2, plot.y + 10, heatColor(2 / MAX_NR), 'the stack');
});

test('moving hot set: hot where it was at each time, idle where it was before', async () => {
  const p = draw(await recorded('moving.json', movingHotSet()));
  const spanNs = PHASES * PER_PHASE * Number(AGGR_NS);
  assert.equal(p.map.axis.spans.length, 1);
  for (let k = 0; k < PHASES; k++) {
    const y = yOf(p, (k + 0.5) * PER_PHASE * Number(AGGR_NS), spanNs);
    const hot = hotSetOf(k);
    for (let x = Math.ceil(xOf(p, hot.start)) + 1; x < Math.floor(xOf(p, hot.end)) - 1; x += 4) {
      assertColor(p, x, y, HOT, `phase ${k}, its hot set`);
    }
    if (k > 0) {
      const before = hotSetOf(k - 1);
      assertColor(p, (xOf(p, before.start) + xOf(p, before.end)) / 2, y, IDLE, `phase ${k}, where the hot set was in phase ${k - 1}`);
    }
    // The warm k MiB after the hot set: nr_accesses 5 of 20.
    if (k >= 2) assertColor(p, xOf(p, hotSetOf(k).end + (k * MiB) / 2), y, heatColor(5 / MAX_NR), `phase ${k}, warm memory`);
  }
  assert.equal(HOT_SIZE, 8 * MiB);
});

test('cells no record covers are drawn as "no record", apart from idle', async () => {
  // The first half of the time monitors only the lower half of the mapping.
  const recs = hotBand().map((r, i) => (i < 30 ? { ...r, regions: r.regions.filter((g) => g.end <= DATA + 32 * MiB) } : r));
  const p = draw(await recorded('partial.json', recs));
  const { plot } = p.map;
  const xHigh = xOf(p, DATA + 48 * MiB);
  assertColor(p, xHigh, plot.y + plot.height * 0.25, NO_RECORD, 'upper addresses, first half');
  assertColor(p, xHigh, plot.y + plot.height * 0.75, IDLE, 'upper addresses, second half');
  assert.match(p.map.svg, /no record/);
});

test('binary files (no intervals stored): frequency relative to the busiest region, said in the legend', async () => {
  const t = await recorded('band.data', hotBand(), 'binary');
  assert.equal(t.maxFromIntervals, false);
  assert.equal(t.maxNrAccesses, MAX_NR);
  const p = draw(t);
  assertColor(p, (xOf(p, BAND.start) + xOf(p, BAND.end)) / 2, p.map.plot.y + p.map.plot.height / 2, HOT, 'the band');
  assert.match(p.map.svg, /% of busiest region/);
  // Times are relative to the first record: the axis starts at 0 s whatever the file's time base.
  assert.match(p.map.svg, />0 s</);
  assert.ok(T0 > 0n);
});

test('one record whose interval the file cannot tell (binary, no intervals): drawn over the whole height', async () => {
  const t = await recorded('one.data', hotBand().slice(0, 1), 'binary');
  assert.equal(t.records.length, 1);
  const p = draw(t);
  const x = (xOf(p, BAND.start) + xOf(p, BAND.end)) / 2;
  for (const f of [0.02, 0.5, 0.98]) assertColor(p, x, p.map.plot.y + p.map.plot.height * f, HOT, `the band at ${f} of the height`);
});
