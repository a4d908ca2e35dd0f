// SVG text and its rasterisation to PNG. The font ships with the package (DejaVu Sans,
// from dejavu-fonts-ttf) and system fonts are never consulted, so a picture looks the
// same on every machine; when the font file is missing, drawing fails saying so rather
// than rendering labels in whatever the system has (or not at all).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Resvg } from '@resvg/resvg-js';

/** The family every report's SVG names; the PNG renderer is given this font's file. */
export const FONT_FAMILY = 'DejaVu Sans';

/** Path of the shipped font file; throws saying how to get it when it is not installed. */
export function fontFile(): string {
  let path: string;
  try {
    path = createRequire(import.meta.url).resolve('dejavu-fonts-ttf/ttf/DejaVuSans.ttf');
  } catch {
    throw new Error('the report font (npm package dejavu-fonts-ttf, DejaVuSans.ttf) is not installed: run npm install in damon-fleet');
  }
  if (!existsSync(path)) throw new Error(`the report font ${path} is missing: reinstall the package dejavu-fonts-ttf`);
  return path;
}

/** Text for SVG content and attribute values. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** One <text> element. */
export function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${x}" y="${y}"${attrs ? ' ' + attrs : ''}>${esc(s)}</text>`;
}

/** A whole SVG document of the given size, white background, default font set. */
export function svgDocument(width: number, height: number, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="${FONT_FAMILY}, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** The SVG rendered to PNG at its own size, with the shipped font only. */
export function svgToPng(svg: string): Buffer {
  const r = new Resvg(svg, {
    font: { loadSystemFonts: false, fontFiles: [fontFile()], defaultFontFamily: FONT_FAMILY },
    imageRendering: 1, // optimizeSpeed: the embedded heat raster stays pixel-exact
    shapeRendering: 2,
    textRendering: 1,
  });
  return r.render().asPng();
}
