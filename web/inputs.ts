// The explorer's inputs: an image file decoded by the browser and put through the study's validation transform,
// or a raw float32 tensor (.f32) that is already the model's input.
import { IMAGENET_MEAN, IMAGENET_STD, planTransform, valTransform } from '../experiments/data/geometry.ts';
import type { Box } from '../experiments/data/types.ts';

/** A file the page cannot use as an input; the message says why, for the reader. */
export class InputError extends Error {}

/**
 * `blob` through torchvision's validation transform at `size` (shorter side to round(size / 0.875), centre
 * crop, ImageNet normalisation), CHW floats. The crop and resize follow the same plan as Node's sharp pipeline
 * (planTransform); the resampling is the browser's, so pixels differ from Node's by a few levels where the image
 * is scaled. EXIF orientation is ignored and alpha dropped, as in Node.
 */
export async function decodeImage(blob: Blob, name: string, size: number, box?: Box): Promise<Float32Array> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: 'none', premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  } catch (e) {
    throw new InputError(`${name} cannot be decoded as an image (${(e as Error).message}). Use a PNG, JPEG, WebP, GIF or BMP file, or a .f32 tensor.`);
  }
  let plan;
  try {
    plan = planTransform(valTransform(size), bitmap.width, bitmap.height, box, 0);
  } catch (e) {
    throw new InputError(`${name}: ${(e as Error).message}`);
  }
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.imageSmoothingQuality = 'high';
  // Crop `extract`, scale it to `resize`, then crop `post`: one draw with the destination shifted by the second crop.
  const { extract: e, resize, post } = plan;
  ctx.drawImage(bitmap, e.left, e.top, e.width, e.height, -(post?.left ?? 0), -(post?.top ?? 0), resize[0], resize[1]);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, size, size).data;
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) out[c * plane + i] = (rgba[i * 4 + c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
  }
  return out;
}

/** A .f32 file: 3 x size x size little-endian float32 values (CHW, already normalised), e.g. written from Node. */
export function parseF32(bytes: ArrayBuffer, name: string, size: number): Float32Array {
  const want = 3 * size * size;
  if (bytes.byteLength !== want * 4) {
    throw new InputError(`${name} holds ${bytes.byteLength} bytes; this run's input is 3 x ${size} x ${size} float32 values (${want * 4} bytes)`);
  }
  return new Float32Array(bytes);
}
