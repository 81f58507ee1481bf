// Explanations of one image by a trained classifier, computed with the engine's own autograd:
// Grad-CAM and Grad-CAM++ (forward hook on the target layer, its activation's gradient), vanilla
// saliency and SmoothGrad (gradient w.r.t. the input), guided backpropagation (the engine's guided
// ReLU backward mode) and guided Grad-CAM (their product). Hooks are removed and requires-grad flags
// restored even when something throws.
import { Tensor, noGrad, scopeAsync, softmax, withBackwardMode } from '../../engine/index.ts';
import type { Module } from '../../engine/nn/index.ts';
import { Rng } from '../../engine/random.ts';
import { logitsOf, type ClassifierOutput } from '../../models/index.ts';
import { gradCam, gradCamPlusPlus, type Cam } from './cam.ts';

export type Method = 'gradcam' | 'gradcam++' | 'guided' | 'guided-gradcam' | 'saliency' | 'smoothgrad';
export const METHODS: Method[] = ['gradcam', 'gradcam++', 'guided', 'guided-gradcam', 'saliency', 'smoothgrad'];

export interface Prediction {
  logits: Float32Array;
  probabilities: Float32Array;
  predicted: number;
}

export interface CamResult extends Prediction {
  cam: Cam;
  target: number;
  /** The activation's shape [C, h, w]. */
  shape: number[];
}

/** Runs `fn` with every parameter frozen (explanations need no parameter gradients), then restores the flags. */
async function withFrozenParameters<T>(model: Module<unknown>, fn: () => Promise<T>): Promise<T> {
  const params = model.parameters();
  const flags = params.map((p) => p.requiresGrad);
  for (const p of params) p.requiresGrad = false;
  try {
    return await fn();
  } finally {
    params.forEach((p, i) => (p.requiresGrad = flags[i]));
  }
}

function oneHot(classes: number, target: number): Tensor {
  const data = new Float32Array(classes);
  data[target] = 1;
  return Tensor.fromArray(data, [1, classes]);
}

async function predictionOf(logits: Tensor): Promise<Prediction> {
  const values = await logits.toArray();
  const probabilities = await noGrad(() => softmax(logits)).toArray();
  let predicted = 0;
  for (let c = 1; c < values.length; c++) if (values[c] > values[predicted]) predicted = c;
  return { logits: values, probabilities, predicted };
}

/** Logits and class probabilities of one image [3, S, S] (eval mode, no tape). */
export async function predict(model: Module<ClassifierOutput>, image: Float32Array, size: number): Promise<Prediction> {
  model.eval();
  return scopeAsync(() => noGrad(() => predictionOf(logitsOf(model.call(Tensor.fromArray(image, [1, 3, size, size]))))));
}

/**
 * The output of `layer` for one image [3, S, S] (eval mode, no tape), without its batch dimension; null when the
 * forward pass does not call that layer or it returns something other than a tensor.
 */
export async function activationOf(
  model: Module<ClassifierOutput>,
  image: Float32Array,
  size: number,
  layer: string,
): Promise<{ data: Float32Array; shape: number[] } | null> {
  model.eval();
  let activation: unknown = null;
  const hook = model.registerForwardHook(layer, (_m, _input, output) => {
    activation = output;
  });
  try {
    return await scopeAsync(async () => {
      noGrad(() => model.call(Tensor.fromArray(image, [1, 3, size, size])));
      const a = activation;
      return a instanceof Tensor ? { data: await a.toArray(), shape: a.shape.slice(1) } : null;
    });
  } finally {
    hook.remove();
  }
}

/**
 * Grad-CAM (or Grad-CAM++) of `layer` for class `target` (default: the predicted class), from the
 * pre-softmax score, as Selvaraju et al. and pytorch-grad-cam's ClassifierOutputTarget.
 */
export async function camOf(
  model: Module<ClassifierOutput>,
  image: Float32Array,
  size: number,
  options: { layer: string; target?: number; plusPlus?: boolean },
): Promise<CamResult> {
  model.eval();
  return withFrozenParameters(model, () =>
    scopeAsync(async () => {
      let activation: Tensor | null = null;
      const hook = model.registerForwardHook(options.layer, (_m, _input, output) => {
        const a = output as Tensor;
        // With frozen parameters the activation is a leaf of the tape from here on: its .grad collects dS/dA.
        a.requiresGrad = true;
        if (a.gradFn) a.retainGrad();
        activation = a;
      });
      try {
        const logits = logitsOf(model.call(Tensor.fromArray(image, [1, 3, size, size])));
        const prediction = await predictionOf(logits);
        const target = options.target ?? prediction.predicted;
        const a = activation as Tensor | null;
        if (!a || a.shape.length !== 4) throw new Error(`layer '${options.layer}' did not produce a [1, C, h, w] activation`);
        logits.backward(oneHot(logits.shape[1], target));
        const shape = a.shape.slice(1);
        const [values, grads] = await Promise.all([a.toArray(), a.grad!.toArray()]);
        const cam = options.plusPlus ? gradCamPlusPlus(values, grads, shape) : gradCam(values, grads, shape);
        return { ...prediction, cam, target, shape };
      } finally {
        hook.remove();
      }
    }),
  );
}

/** d score_target / d input [3, S, S], standard or guided (guided backpropagation). */
export async function inputGradient(
  model: Module<ClassifierOutput>,
  image: Float32Array,
  size: number,
  target: number,
  guided = false,
): Promise<Float32Array> {
  model.eval();
  return withFrozenParameters(model, () =>
    scopeAsync(async () => {
      const x = Tensor.fromArray(image, [1, 3, size, size]).setRequiresGrad();
      const logits = logitsOf(model.call(x));
      withBackwardMode(guided ? 'guided' : 'standard', () => logits.backward(oneHot(logits.shape[1], target)));
      return x.grad!.toArray();
    }),
  );
}

/** Vanilla saliency (Simonyan et al. 2014): max over channels of |d score / d input|, [S, S]. */
export function saliencyOf(gradient: Float32Array, size: number): Float32Array {
  const hw = size * size;
  const out = new Float32Array(hw);
  for (let i = 0; i < hw; i++) out[i] = Math.max(Math.abs(gradient[i]), Math.abs(gradient[hw + i]), Math.abs(gradient[2 * hw + i]));
  return out;
}

/** SmoothGrad (Smilkov et al. 2017): saliency averaged over `samples` noisy copies, noise std = sigma * (max - min). */
export async function smoothGrad(
  model: Module<ClassifierOutput>,
  image: Float32Array,
  size: number,
  target: number,
  options: { samples?: number; sigma?: number; seed?: number } = {},
): Promise<Float32Array> {
  const { samples = 8, sigma = 0.15, seed = 0 } = options;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of image) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const rng = new Rng(seed);
  const sum = new Float32Array(size * size);
  for (let s = 0; s < samples; s++) {
    const noisy = image.map((v) => v + rng.normal() * sigma * (hi - lo));
    const map = saliencyOf(await inputGradient(model, noisy, size, target), size);
    for (let i = 0; i < sum.length; i++) sum[i] += map[i] / samples;
  }
  return sum;
}

/** Bilinear resize of a map (align_corners=false) to size x size, on the CPU. */
export function resizeMap(map: ArrayLike<number>, w: number, h: number, size: number): Float32Array {
  const out = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    const sy = Math.max(0, ((y + 0.5) * h) / size - 0.5);
    const y0 = Math.min(h - 1, Math.floor(sy));
    const y1 = Math.min(h - 1, y0 + 1);
    const fy = sy - y0;
    for (let x = 0; x < size; x++) {
      const sx = Math.max(0, ((x + 0.5) * w) / size - 0.5);
      const x0 = Math.min(w - 1, Math.floor(sx));
      const x1 = Math.min(w - 1, x0 + 1);
      const fx = sx - x0;
      const top = map[y0 * w + x0] * (1 - fx) + map[y0 * w + x1] * fx;
      const bottom = map[y1 * w + x0] * (1 - fx) + map[y1 * w + x1] * fx;
      out[y * size + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

/** Guided Grad-CAM: guided backpropagation [3, S, S] times the upsampled Grad-CAM map. */
export function guidedGradCam(guided: Float32Array, cam: Cam, size: number): Float32Array {
  const up = resizeMap(cam.map, cam.width, cam.height, size);
  const hw = size * size;
  return guided.map((v, i) => v * up[i % hw]);
}
