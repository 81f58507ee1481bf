// Image transforms with torchvision semantics: RandomResizedCrop + horizontal flip for training, resize of the
// shorter side + centre crop for validation, then [0, 1] and ImageNet normalisation into CHW floats.
//
// The geometry is planned in plain code (geometry.ts: a crop rectangle, a resize, an optional second crop, a
// flip) and executed by sharp. The functions marked "shipped to the decode worker" are sent to worker threads as
// source text (see loader.ts), so they may refer only to their arguments, to each other and to language globals.
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { planTransform, type Transform } from './geometry.ts';
import type { Box } from './types.ts';

export {
  IMAGENET_MEAN,
  IMAGENET_STD,
  planTransform,
  randomResizedCropParams,
  roundHalfEven,
  trainTransform,
  valTransform,
  type Plan,
  type Rect,
  type TrainTransform,
  type Transform,
  type ValTransform,
} from './geometry.ts';

/** The sharp module's callable default export; loosely typed because the worker loads it with require(). */
export type SharpLib = (input: Buffer, options?: any) => any;

/**
 * Decodes `input`, applies `t` (after cropping `box`) and writes size*size*3 normalised floats, CHW, into `out`
 * at `offset`. Bilinear resampling, antialiased when shrinking (libvips 'linear' kernel, no shrink-on-load
 * shortcut); EXIF orientation is ignored and alpha dropped, as PIL's convert('RGB') does. Throws on any decode
 * problem (failOn 'warning' catches truncated files). Shipped to the decode worker.
 */
export async function transformInto(lib: SharpLib, input: Buffer, box: Box | undefined, t: Transform, seed: number, out: Float32Array, offset: number): Promise<void> {
  if (input.length === 0) throw new Error('empty file (0 bytes)');
  const meta = await lib(input, { failOn: 'warning' }).metadata();
  if (!meta.width || !meta.height) throw new Error('image header has no size');
  const plan = planTransform(t, meta.width, meta.height, box, seed);
  let img = lib(input, { failOn: 'warning' })
    .extract(plan.extract)
    .resize(plan.resize[0], plan.resize[1], { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false });
  if (plan.post) img = img.extract(plan.post);
  if (plan.flip) img = img.flop();
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  const plane = t.size * t.size;
  if (info.width * info.height !== plane) throw new Error(`decoded ${info.width}x${info.height}, expected ${t.size}x${t.size}`);
  // IMAGENET_MEAN / IMAGENET_STD, written out because this function runs detached from its module.
  const mean = t.mean ?? [0.485, 0.456, 0.406];
  const std = t.std ?? [0.229, 0.224, 0.225];
  const channels = info.channels;
  for (let c = 0; c < 3; c++) {
    const src = channels >= 3 ? c : 0;
    const base = offset + c * plane;
    const m = mean[c];
    const s = std[c];
    for (let i = 0; i < plane; i++) out[base + i] = (data[i * channels + src] / 255 - m) / s;
  }
}

/** One image through `t` on this thread: a 3 x size x size Float32Array (CHW). For single images (explanations, checks). */
export async function loadImage(path: string, t: Transform, options: { box?: Box; seed?: number } = {}): Promise<Float32Array> {
  const out = new Float32Array(3 * t.size * t.size);
  await transformInto(sharp as unknown as SharpLib, await readFile(path), options.box, t, options.seed ?? 0, out, 0);
  return out;
}
