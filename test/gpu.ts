// Shared test setup: the Node platform, one GPU device for the whole suite, and conversions between
// GPU tensors and the float64 reference arrays of test/reference/.
import { initGPU, setPlatform, Tensor } from '../engine/index.ts';
import { nodePlatform } from '../engine/platform/node.ts';
import type { Arr } from './reference/tensor.ts';

setPlatform(nodePlatform());
export const device = await initGPU();

/** A GPU tensor with the reference array's values (rounded to f32). */
export function toGpu(a: Arr, requiresGrad = false): Tensor {
  return Tensor.fromArray(Float32Array.from(a.data), a.shape).setRequiresGrad(requiresGrad);
}

/** The tensor's values as a float64 reference array. */
export async function toArr(t: Tensor): Promise<Arr> {
  return { data: Float64Array.from(await t.toArray()), shape: [...t.shape] };
}

/** The reference input rounded to f32, as the GPU sees it, so both sides start from identical values. */
export function asF32(a: Arr): Arr {
  return { data: Float64Array.from(Float32Array.from(a.data)), shape: [...a.shape] };
}
