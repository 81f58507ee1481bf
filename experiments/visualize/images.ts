// Pictures of a network's insides from plain arrays: filter grids, feature-map grids, heat-map overlays, and rows
// of captioned panels. Everything returns 8-bit RGBA (RgbaImage); encodePng turns one into a file. The pure pixel
// code lives in pixels.ts (shared with the browser explorer); this file adds PNG and SVG.
import pngjs from 'pngjs';
import { camSignal, type CamSignal } from '../explain/cam.ts';
import { blank, checkShape, jetOverlay } from './pixels.ts';
import { escapeXml, svgToRgba, type RgbaImage } from './raster.ts';

export type { RgbaImage } from './raster.ts';
export { camSignal, type CamSignal } from '../explain/cam.ts';
export {
  IMAGENET_MEAN,
  IMAGENET_STD,
  chwToRgba,
  featureMapGrid,
  filterGrid,
  jet,
  viridis,
  type FilterGridOptions,
  type Rgb,
} from './pixels.ts';

export function encodePng(img: RgbaImage): Uint8Array {
  checkShape(img.data, [img.height, img.width, 4], 3, 'encodePng');
  const png = new pngjs.PNG({ width: img.width, height: img.height });
  png.data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  return new Uint8Array(pngjs.PNG.sync.write(png));
}

export function decodePng(png: Uint8Array): RgbaImage {
  const p = pngjs.PNG.sync.read(Buffer.from(png.buffer, png.byteOffset, png.byteLength));
  return { width: p.width, height: p.height, data: new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength) };
}

/**
 * Grad-CAM style overlay (jetOverlay). A map without signal or with non-finite values is not coloured: the image
 * is greyed and hatched and labelled "no signal" / "not finite", and `signal` says which.
 */
export function heatmapOverlay(
  image: RgbaImage,
  cam: ArrayLike<number>,
  camW: number,
  camH: number,
  alpha = 0.5,
): { image: RgbaImage; signal: CamSignal } {
  checkShape(cam, [camH, camW], 2, 'heatmapOverlay');
  const signal = camSignal(cam);
  if (signal !== 'ok') return { image: unusableMap(image, signal === 'no-signal' ? 'no signal' : 'not finite'), signal };
  return { image: jetOverlay(image, cam, camW, camH, alpha), signal };
}

const dataUri = (png: Uint8Array) => `data:image/png;base64,${Buffer.from(png).toString('base64')}`;

function unusableMap(image: RgbaImage, label: string): RgbaImage {
  const { width: w, height: h } = image;
  const size = Math.max(9, Math.round(w / 9));
  return svgToRgba(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">
      <defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
        <rect width="3" height="8" fill="#000" fill-opacity="0.35"/></pattern></defs>
      <image href="${dataUri(encodePng(image))}" width="${w}" height="${h}"/>
      <rect width="${w}" height="${h}" fill="#808080" fill-opacity="0.65"/>
      <rect width="${w}" height="${h}" fill="url(#hatch)"/>
      <text x="${w / 2}" y="${h / 2 + size * 0.35}" text-anchor="middle" font-size="${size}" font-weight="bold"
        fill="#fff" stroke="#000" stroke-width="${size / 8}" paint-order="stroke">${escapeXml(label)}</text>
    </svg>`,
  );
}

export interface Panel {
  /** Pixels, or PNG file bytes. */
  image: RgbaImage | Uint8Array;
  /** Lines separated by '\n', centred under the image. */
  caption: string;
}

/** Panels side by side, top-aligned, each with its caption below, on white. */
export function labelledRow(panels: Panel[], fontSize = 12): RgbaImage {
  const pad = 8;
  const lineH = Math.round(fontSize * 1.3);
  const items = panels.map((p) => {
    const png = p.image instanceof Uint8Array ? p.image : encodePng(p.image);
    const { width, height } = p.image instanceof Uint8Array ? decodePng(p.image) : p.image;
    const lines = p.caption.split('\n');
    // DejaVu Sans averages about 0.6 em per character; widen the column rather than let captions collide.
    const colW = Math.max(width, Math.ceil(Math.max(...lines.map((l) => l.length)) * fontSize * 0.62));
    return { png, width, height, lines, colW };
  });
  const imgH = Math.max(...items.map((i) => i.height));
  const textH = Math.max(...items.map((i) => i.lines.length)) * lineH;
  const totalW = items.reduce((a, i) => a + i.colW + pad, pad);
  const totalH = pad + imgH + 6 + textH + pad;
  let x = pad;
  const parts = items.map((it) => {
    const cx = x + it.colW / 2;
    const svg =
      `<image href="${dataUri(it.png)}" x="${Math.round(cx - it.width / 2)}" y="${pad}" width="${it.width}" height="${it.height}"/>` +
      it.lines
        .map((l, k) => `<text x="${cx}" y="${pad + imgH + 6 + (k + 0.8) * lineH}" text-anchor="middle">${escapeXml(l)}</text>`)
        .join('');
    x += it.colW + pad;
    return svg;
  });
  return svgToRgba(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${totalW}" height="${totalH}" font-size="${fontSize}" fill="#222">${parts.join('')}</svg>`,
  );
}

/** Images stacked top to bottom, left-aligned, `gap` px apart on white (e.g. one labelledRow per run). */
export function stackRows(images: RgbaImage[], gap = 4): RgbaImage {
  const out = blank(Math.max(...images.map((i) => i.width)), images.reduce((a, i) => a + i.height, 0) + gap * (images.length - 1));
  let y0 = 0;
  for (const im of images) {
    for (let y = 0; y < im.height; y++) out.data.set(im.data.subarray(y * im.width * 4, (y + 1) * im.width * 4), ((y0 + y) * out.width) * 4);
    y0 += im.height + gap;
  }
  return out;
}

/** A signed gradient image [3, S, S] as pixels: grey is zero, scaled by the largest magnitude (guided backprop). */
export function signedImage(g: Float32Array, size: number): RgbaImage {
  let max = 0;
  for (const v of g) max = Math.max(max, Math.abs(v));
  const hw = size * size;
  const data = new Uint8Array(hw * 4);
  for (let i = 0; i < hw; i++) {
    for (let c = 0; c < 3; c++) data[i * 4 + c] = Math.round(127.5 + (max > 0 ? (g[c * hw + i] / max) * 127.5 : 0));
    data[i * 4 + 3] = 255;
  }
  return { width: size, height: size, data };
}
