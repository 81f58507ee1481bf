// Pictures from plain arrays, in pure TypeScript (no PNG or SVG libraries, so the browser explorer draws with
// the same code): colormaps, filter and feature-map grids, de-normalised inputs and jet heat-map overlays.
import { ShapeError } from '../../engine/errors.ts';

/** Row-major 8-bit RGBA, not premultiplied. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type Rgb = [number, number, number];

export const IMAGENET_MEAN: Rgb = [0.485, 0.456, 0.406];
export const IMAGENET_STD: Rgb = [0.229, 0.224, 0.225];

const WHITE: Rgb = [255, 255, 255];
/** Non-finite weights or activations: a colour no colormap here produces, so divergence is seen, not hidden. */
const NOT_FINITE: Rgb = [255, 0, 255];

export function blank(width: number, height: number, fill: Rgb = WHITE): RgbaImage {
  const data = new Uint8Array(width * height * 4);
  for (let p = 0; p < data.length; p += 4) data.set([fill[0], fill[1], fill[2], 255], p);
  return { width, height, data };
}

function fillRect(img: RgbaImage, x0: number, y0: number, w: number, h: number, rgb: Rgb): void {
  for (let y = y0; y < y0 + h; y++)
    for (let x = x0; x < x0 + w; x++) {
      const p = (y * img.width + x) * 4;
      img.data[p] = Math.round(rgb[0]);
      img.data[p + 1] = Math.round(rgb[1]);
      img.data[p + 2] = Math.round(rgb[2]);
      img.data[p + 3] = 255;
    }
}

export function checkShape(values: ArrayLike<number>, shape: readonly number[], rank: number, what: string): void {
  const count = shape.reduce((a, b) => a * b, 1);
  if (shape.length !== rank || count !== values.length)
    throw new ShapeError(`${what}: shape [${shape.join(', ')}] does not match ${values.length} values (expected rank ${rank})`);
}

/** Undo the normalisation of a CHW float image (1 or 3 channels) and return it as RGBA. */
export function chwToRgba(chw: Float32Array, shape: readonly number[], mean: Rgb = IMAGENET_MEAN, std: Rgb = IMAGENET_STD): RgbaImage {
  checkShape(chw, shape, 3, 'chwToRgba');
  const [c, h, w] = shape;
  if (c !== 1 && c !== 3) throw new ShapeError(`chwToRgba: expected 1 or 3 channels, got ${c}`);
  const img = blank(w, h);
  for (let k = 0; k < 3; k++) {
    const ch = c === 1 ? 0 : k;
    // Clamp explicitly: a Uint8Array store wraps out-of-range values instead of saturating.
    for (let i = 0; i < h * w; i++) img.data[i * 4 + k] = Math.min(255, Math.max(0, Math.round((chw[ch * h * w + i] * std[ch] + mean[ch]) * 255)));
  }
  return img;
}

/** MATLAB's jet: t in [0, 1] (clamped) -> RGB in [0, 255], blue (0) through green to red (1). */
export function jet(t: number): Rgb {
  const x = Math.min(1, Math.max(0, t)) * 4;
  const band = (centre: number) => 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(x - centre)));
  return [band(3), band(2), band(1)];
}

// Matplotlib's viridis sampled at i/9; linear interpolation between samples stays perceptually even enough for maps.
const VIRIDIS = ['440154', '482878', '3e4989', '31688e', '26828e', '1f9e89', '35b779', '6ece58', 'b5de2b', 'fde725'].map(
  (hex): Rgb => [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)) as Rgb,
);

/** Viridis: t in [0, 1] (clamped) -> RGB in [0, 255], dark purple (0) to yellow (1). */
export function viridis(t: number): Rgb {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return [0, 1, 2].map((k) => VIRIDIS[i][k] + (VIRIDIS[i + 1][k] - VIRIDIS[i][k]) * f) as Rgb;
}

/** Range of the finite values in values[start, end); lo > hi when there are none. */
function finiteRange(values: ArrayLike<number>, start: number, end: number): { lo: number; hi: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = start; i < end; i++) {
    const v = values[i];
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return { lo, hi };
}

/** v scaled to [0, 1] by [lo, hi]; `flat` when the range is empty (a constant tile). NaN for non-finite v. */
const unit = (v: number, lo: number, hi: number, flat: number) => (!Number.isFinite(v) ? NaN : hi > lo ? (v - lo) / (hi - lo) : flat);

export interface FilterGridOptions {
  /** One RGB tile per filter (needs 3 input channels). Default: true when the layer has 3 input channels. */
  colour?: boolean;
  /** Each weight becomes a scale x scale block. Default: the smallest making a tile at least 14 px wide. */
  scale?: number;
  /** Filters drawn, from the first. Default 64. */
  maxFilters?: number;
  /** Greyscale only: input channels drawn per filter, from the first. Default 8. */
  maxChannels?: number;
}

/**
 * Conv weights [O, I, kh, kw] as a grid of tiles, each filter min-max normalised on its own (its drawn values only).
 * Colour: one RGB tile per filter. Greyscale: per filter a cell of `channels` tiles side by side (1 px apart),
 * cells 3 px apart. Layout: tile = k*scale px; cell width cw = channels*(tile+1)-1 (colour: the tile);
 * columns = round(sqrt(n*tileH/cw)) so the grid comes out near square; gap g = 1 (colour) or 3;
 * width = cols*(cw+g)+g, height = rows*(tileH+g)+g; gaps white (colour) or slate blue. Non-finite weights are drawn magenta.
 */
export function filterGrid(weights: Float32Array, shape: readonly number[], opts: FilterGridOptions = {}): RgbaImage {
  checkShape(weights, shape, 4, 'filterGrid');
  const [o, i, kh, kw] = shape;
  const colour = opts.colour ?? i === 3;
  if (colour && i !== 3) throw new ShapeError(`filterGrid: colour needs 3 input channels, the layer has ${i}`);
  const n = Math.min(o, opts.maxFilters ?? 64);
  const tiles = colour ? 1 : Math.min(i, opts.maxChannels ?? 8);
  const s = opts.scale ?? Math.ceil(14 / kw);
  const tw = kw * s;
  const th = kh * s;
  const cellW = tiles * (tw + 1) - 1;
  const gap = tiles > 1 ? 3 : 1;
  const cols = Math.max(1, Math.min(n, Math.round(Math.sqrt((n * th) / cellW))));
  const rows = Math.ceil(n / cols);
  // Greyscale tiles get a coloured background so gaps cannot be mistaken for white or black weights.
  const img = blank(cols * (cellW + gap) + gap, rows * (th + gap) + gap, colour ? WHITE : [43, 58, 85]);
  const plane = kh * kw;
  for (let f = 0; f < n; f++) {
    const x0 = gap + (f % cols) * (cellW + gap);
    const y0 = gap + Math.floor(f / cols) * (th + gap);
    const base = f * i * plane;
    const { lo, hi } = finiteRange(weights, base, base + (colour ? 3 : tiles) * plane);
    for (let t = 0; t < tiles; t++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++) {
          const at = (ch: number) => unit(weights[base + ch * plane + y * kw + x], lo, hi, 0.5) * 255;
          const rgb: Rgb = colour ? [at(0), at(1), at(2)] : [at(t), at(t), at(t)];
          fillRect(img, x0 + t * (tw + 1) + x * s, y0 + y * s, s, s, rgb.some(Number.isNaN) ? NOT_FINITE : rgb);
        }
  }
  return img;
}

/**
 * Activations [C, H, W] as a grid of the first maxChannels channels, each min-max normalised on its own and drawn
 * in viridis (a constant channel, e.g. dead after ReLU, is dark). Tiles are 1 px apart, ceil(sqrt(n)) columns;
 * scale defaults to the smallest making a tile at least 32 px.
 */
export function featureMapGrid(act: Float32Array, shape: readonly number[], maxChannels = 64, scale?: number): RgbaImage {
  checkShape(act, shape, 3, 'featureMapGrid');
  const [c, h, w] = shape;
  const n = Math.min(c, maxChannels);
  const s = scale ?? Math.ceil(32 / Math.max(h, w));
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const img = blank(cols * (w * s + 1) + 1, rows * (h * s + 1) + 1);
  for (let k = 0; k < n; k++) {
    const x0 = 1 + (k % cols) * (w * s + 1);
    const y0 = 1 + Math.floor(k / cols) * (h * s + 1);
    const { lo, hi } = finiteRange(act, k * h * w, (k + 1) * h * w);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const t = unit(act[k * h * w + y * w + x], lo, hi, 0);
        fillRect(img, x0 + x * s, y0 + y * s, s, s, Number.isNaN(t) ? NOT_FINITE : viridis(t));
      }
  }
  return img;
}

/** Bilinear sample of a camW x camH map at output pixel (x, y) of a w x h image (pixel centres aligned). */
function bilinear(cam: ArrayLike<number>, camW: number, camH: number, x: number, y: number, w: number, h: number): number {
  const sx = Math.min(camW - 1, Math.max(0, ((x + 0.5) * camW) / w - 0.5));
  const sy = Math.min(camH - 1, Math.max(0, ((y + 0.5) * camH) / h - 0.5));
  const x0 = Math.floor(sx);
  const y0 = Math.floor(sy);
  const x1 = Math.min(camW - 1, x0 + 1);
  const y1 = Math.min(camH - 1, y0 + 1);
  const fx = sx - x0;
  const fy = sy - y0;
  const row = (yy: number) => cam[yy * camW + x0] * (1 - fx) + cam[yy * camW + x1] * fx;
  return row(y0) * (1 - fy) + row(y1) * fy;
}


/**
 * A class-activation map drawn over an image: the map is ReLU'd, divided by its maximum (0 = no evidence stays blue),
 * upsampled bilinearly to the image, coloured with jet and blended: out = (1 - alpha) * image + alpha * jet.
 * The map must have signal (camSignal 'ok'): heatmapOverlay in images.ts handles the other cases.
 */
export function jetOverlay(image: RgbaImage, cam: ArrayLike<number>, camW: number, camH: number, alpha = 0.5): RgbaImage {
  checkShape(cam, [camH, camW], 2, 'jetOverlay');
  let hi = 0;
  for (let i = 0; i < cam.length; i++) hi = Math.max(hi, cam[i]);
  const relu = Array.from(cam, (v) => Math.max(0, v) / hi);
  const { width: w, height: h } = image;
  const out = blank(w, h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const heat = jet(bilinear(relu, camW, camH, x, y, w, h));
      const p = (y * w + x) * 4;
      for (let k = 0; k < 3; k++) out.data[p + k] = Math.round((1 - alpha) * image.data[p + k] + alpha * heat[k]);
    }
  return out;
}
