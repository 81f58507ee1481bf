// SVG -> pixels with resvg. The font is loaded explicitly (system fonts off): resvg draws no text at all without a
// font it can find, and system font discovery differs between machines, so charts would silently lose their labels.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { DataError } from '../../engine/errors.ts';
import type { RgbaImage } from './pixels.ts';

export type { RgbaImage } from './pixels.ts';

// Debian/Ubuntu (fonts-dejavu-core), Fedora, Arch.
const FONT_DIRS = ['/usr/share/fonts/truetype/dejavu', '/usr/share/fonts/dejavu-sans-fonts', '/usr/share/fonts/TTF'];
export const FONT_FAMILY = 'DejaVu Sans';

let fontFiles: string[] | undefined;

/** The DejaVu Sans files resvg is given; throws with the fix when none is installed. */
export function fontPaths(): string[] {
  if (fontFiles) return fontFiles;
  for (const dir of FONT_DIRS) {
    const regular = join(dir, 'DejaVuSans.ttf');
    if (existsSync(regular)) return (fontFiles = [regular, join(dir, 'DejaVuSans-Bold.ttf')].filter((f) => existsSync(f)));
  }
  throw new DataError(
    join(FONT_DIRS[0], 'DejaVuSans.ttf'),
    'no DejaVu Sans font found, so chart and caption text cannot be drawn. Install it: apt-get install fonts-dejavu-core (scripts/setup.sh does this)',
  );
}

function render(svg: string, zoom: number) {
  return new Resvg(svg, {
    background: 'white',
    fitTo: { mode: 'zoom', value: zoom },
    imageRendering: 1, // nearest neighbour for embedded images: filter tiles must stay crisp
    font: {
      loadSystemFonts: false,
      fontFiles: fontPaths(),
      defaultFontFamily: FONT_FAMILY,
      sansSerifFamily: FONT_FAMILY,
      serifFamily: FONT_FAMILY,
      monospaceFamily: FONT_FAMILY,
    },
  }).render();
}

export function svgToPng(svg: string, zoom = 1): Uint8Array {
  return new Uint8Array(render(svg, zoom).asPng());
}

export function svgToRgba(svg: string, zoom = 1): RgbaImage {
  const out = render(svg, zoom); // opaque (white background), so premultiplied and straight alpha agree
  return { width: out.width, height: out.height, data: new Uint8Array(out.pixels) };
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
