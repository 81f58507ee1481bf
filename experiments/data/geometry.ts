// The geometry of torchvision's image transforms, in plain code with no image library, so the decode workers
// (transforms.ts, through sharp) and the browser explorer (canvas) crop and resize identically. The functions
// marked "shipped to the decode worker" are sent to worker threads as source text (see loader.ts), so they may
// refer only to their arguments, to each other and to language globals.
import { mulberry32 } from './rng.ts';
import type { Box } from './types.ts';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

interface Normalisation {
  /** Per-channel mean and std of the [0, 1] image; ImageNet's by default. */
  mean?: readonly number[];
  std?: readonly number[];
}

/** RandomResizedCrop(size, scale, ratio) then RandomHorizontalFlip(0.5) when `flip` (default true). */
export interface TrainTransform extends Normalisation {
  kind: 'train';
  size: number;
  scale?: readonly [number, number];
  ratio?: readonly [number, number];
  flip?: boolean;
}

/** Resize the shorter side to `resize` (default round(size / 0.875)), then CenterCrop(size). */
export interface ValTransform extends Normalisation {
  kind: 'val';
  size: number;
  resize?: number;
}

export type Transform = TrainTransform | ValTransform;

export const trainTransform = (size: number): TrainTransform => ({ kind: 'train', size });
export const valTransform = (size: number): ValTransform => ({ kind: 'val', size });

export interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** What sharp does to one image: crop `extract`, resize to `resize` [w, h], crop `post` if set, mirror if `flip`. */
export interface Plan {
  extract: Rect;
  resize: [number, number];
  post?: Rect;
  flip: boolean;
}

/** Python's round(): halves go to the even neighbour. Shipped to the decode worker. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision RandomResizedCrop.get_params: ten tries at a random area fraction in `scale` and a log-uniform
 * aspect ratio in `ratio`; if none fits, the largest centred crop with the ratio clamped into `ratio`.
 * `rand` returns floats in [0, 1). Shipped to the decode worker.
 */
export function randomResizedCropParams(width: number, height: number, rand: () => number, scale: readonly [number, number], ratio: readonly [number, number]): Rect {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * rand());
    const aspect = Math.exp(logLo + (logHi - logLo) * rand());
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = Math.floor(rand() * (height - h + 1));
      const left = Math.floor(rand() * (width - w + 1));
      return { left, top, width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    h = roundHalfEven(w / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    w = roundHalfEven(h * Math.max(ratio[0], ratio[1]));
  }
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/**
 * The geometry for one image of `width` x `height`, cropped first to `box` (clipped to the image) if given.
 * `seed` drives the random crop and flip (ignored by the validation transform). Shipped to the decode worker.
 */
export function planTransform(t: Transform, width: number, height: number, box: Box | undefined, seed: number): Plan {
  const x1 = box ? Math.max(0, Math.round(box.x1)) : 0;
  const y1 = box ? Math.max(0, Math.round(box.y1)) : 0;
  const x2 = box ? Math.min(width, Math.round(box.x2)) : width;
  const y2 = box ? Math.min(height, Math.round(box.y2)) : height;
  if (x2 <= x1 || y2 <= y1) throw new Error(`face box (${box?.x1}, ${box?.y1}, ${box?.x2}, ${box?.y2}) is empty or outside the ${width}x${height} image`);
  const rw = x2 - x1;
  const rh = y2 - y1;
  if (t.kind === 'train') {
    const rand = mulberry32(seed);
    const c = randomResizedCropParams(rw, rh, rand, t.scale ?? [0.08, 1], t.ratio ?? [3 / 4, 4 / 3]);
    const flip = (t.flip ?? true) && rand() < 0.5;
    return { extract: { left: x1 + c.left, top: y1 + c.top, width: c.width, height: c.height }, resize: [t.size, t.size], flip };
  }
  // torchvision Resize(int): the shorter side becomes `resize`, the longer one int(resize * long / short).
  const r = t.resize ?? Math.round(t.size / 0.875);
  const nw = rw <= rh ? r : Math.floor((r * rw) / rh);
  const nh = rw <= rh ? Math.floor((r * rh) / rw) : r;
  // CenterCrop: offsets int(round((dim - size) / 2)).
  const post = { left: roundHalfEven((nw - t.size) / 2), top: roundHalfEven((nh - t.size) / 2), width: t.size, height: t.size };
  return { extract: { left: x1, top: y1, width: rw, height: rh }, resize: [nw, nh], post, flip: false };
}
