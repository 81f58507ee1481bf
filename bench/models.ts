// Model throughput: training steps (forward + backward + Adam, one submission each) and inference, in
// images per second, with optional GPU-side per-kernel timings (timestamp queries).
import { Adam, Tensor, crossEntropy, noGrad, rt, scopeAsync } from '../engine/index.ts';
import { createModel, logitsOf, modelInfo } from '../models/index.ts';

export interface ModelBenchOptions {
  model: string;
  imageSize?: number;
  batch: number;
  steps: number;
  classes?: number;
  profile?: boolean;
}

export interface ModelBenchResult {
  model: string;
  imageSize: number;
  batch: number;
  trainImagesPerSec: number;
  inferImagesPerSec: number;
  dispatchesPerStep: number;
  peakBytes: number;
  kernels?: { kernel: string; calls: number; ms: number }[];
}

export async function benchModel(o: ModelBenchOptions): Promise<ModelBenchResult> {
  const imageSize = o.imageSize ?? modelInfo(o.model).defaultInputSize;
  const classes = o.classes ?? 10;
  const model = createModel(o.model, { numClasses: classes, auxLogits: false });
  const adam = new Adam(model.parameters(), { lr: 1e-3 });
  const x = Tensor.uniform([o.batch, 3, imageSize, imageSize], -1, 1, 1);
  const y = Tensor.fromArray(Array.from({ length: o.batch }, (_, i) => i % classes), [o.batch], 'i32');
  const step = () =>
    scopeAsync(() => {
      const loss = crossEntropy(logitsOf(model.call(x)), y);
      loss.backward();
      adam.step();
      adam.zeroGrad();
      return loss.item();
    });
  model.train();
  await step(); // warm-up: pipelines compile, the pool fills
  rt().pool.resetPeak();
  const d0 = rt().dispatchCount;
  let t0 = performance.now();
  for (let i = 0; i < o.steps; i++) await step();
  const trainSeconds = (performance.now() - t0) / 1000;
  const dispatchesPerStep = (rt().dispatchCount - d0) / o.steps;
  let kernels;
  if (o.profile) {
    rt().startProfiling();
    await step();
    kernels = await rt().stopProfiling();
  }
  model.eval();
  const infer = () => scopeAsync(() => noGrad(() => logitsOf(model.call(x)).toArray()));
  await infer();
  t0 = performance.now();
  for (let i = 0; i < o.steps; i++) await infer();
  const inferSeconds = (performance.now() - t0) / 1000;
  const result = {
    model: o.model,
    imageSize,
    batch: o.batch,
    trainImagesPerSec: (o.batch * o.steps) / trainSeconds,
    inferImagesPerSec: (o.batch * o.steps) / inferSeconds,
    dispatchesPerStep,
    peakBytes: rt().pool.getStats().peak,
    kernels,
  };
  x.dispose();
  y.dispose();
  adam.dispose();
  model.dispose();
  return result;
}

export function formatModelBench(r: ModelBenchResult): string {
  const lines = [
    `${r.model} ${r.imageSize}px batch ${r.batch}: train ${r.trainImagesPerSec.toFixed(2)} img/s, inference ${r.inferImagesPerSec.toFixed(2)} img/s, ` +
      `${r.dispatchesPerStep} dispatches per training step (one submission), peak ${(r.peakBytes / 2 ** 20).toFixed(0)} MiB`,
  ];
  if (r.kernels) {
    const total = r.kernels.reduce((a, k) => a + k.ms, 0);
    lines.push(`GPU time per training step by kernel (timestamp queries), total ${total.toFixed(1)} ms:`);
    for (const k of r.kernels.slice(0, 25)) {
      lines.push(`  ${k.kernel.padEnd(28)} ${String(k.calls).padStart(5)} calls ${k.ms.toFixed(1).padStart(9)} ms ${((k.ms / total) * 100).toFixed(1).padStart(5)}%`);
    }
  }
  return lines.join('\n');
}
