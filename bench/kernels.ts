// Kernel bench: for each kernel and shape, the error against a float64 reference, the median time,
// GFLOP/s (or GB/s), and the same op in TF.js's WebGPU backend on the very same Dawn device, side by
// side in the same run. `celgrad bench kernels [--json FILE]` calls benchKernels().
//
// Timing: wall time of `reps` runs recorded into one submission, then a wait for the GPU through the
// platform (which polls with setTimeout: dawn.node's own busy polling steals a core from lavapipe,
// perf-notes). reps is chosen so a sample lasts >= 100 ms, which amortises the ~1 ms wait; the median
// of the samples is reported. TF.js is timed the same way, its queue flushed with submitQueue().
// On a software adapter the "GPU" is this process's threads, so the process's CPU time per run over
// the number of cores (cpuMs) is also reported: it estimates the wall time on an idle machine when
// other processes share the cores (wall time then grows, CPU time hardly does).
//
// Correctness: the max relative error (max |out - ref| / max |ref|) against float64 on the bench
// shape itself; for matmul and conv, on a few hundred random output positions.
//
// Entries are BenchCase objects in one list (matmul, conv2d, then batch norm and pooling); adding an
// op is adding entries.
import { writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import type * as TfCore from '@tensorflow/tfjs-core';
import { gpu, type AdapterFacts } from '../engine/gpu.ts';
import { noGrad } from '../engine/autograd.ts';
import { batchNorm2d } from '../engine/ops/batchnorm.ts';
import { conv2d, conv2dGradInput, conv2dGradWeight, conv2dVariant, convGeometry, type ConvGeometry } from '../engine/ops/conv2d.ts';
import { matmul, matmulVariant } from '../engine/ops/matmul.ts';
import { avgPool2d, maxPool2d } from '../engine/ops/pool.ts';
import { platform } from '../engine/platform/index.ts';
import { nodeGpu } from '../engine/platform/node.ts';
import { Rng } from '../engine/random.ts';
import { rt } from '../engine/runtime.ts';
import { Tensor } from '../engine/tensor.ts';
import * as refBatchNorm from '../test/reference/batchnorm.ts';
import * as refPool from '../test/reference/pool.ts';

type Tf = typeof TfCore;

export interface BenchOptions {
  /** Also write the report as JSON to this file. */
  json?: string;
  /** A few shapes per op and fewer samples (a smoke run). */
  quick?: boolean;
  /** Only entries whose "kernel shape" contains this text. */
  filter?: string;
  /** Images per conv / batch-norm / pooling shape; default 8, or 4 on a software adapter. */
  batch?: number;
  /** false: time celgrad only, without the TF.js WebGPU peer (a quicker run while tuning). */
  peer?: boolean;
}

export interface BenchResult {
  kernel: string;
  shape: string;
  maxRelErr: number;
  medianMs: number;
  /** Median CPU time of this process per run over the cores (software adapters: see the header). */
  cpuMs: number;
  gflops: number | null;
  gbps?: number | null;
  peer: { name: string; medianMs: number; cpuMs: number } | null;
  /** Pool bytes one run takes beyond its inputs (its output and any scratch). */
  peakBytes: number;
}

export interface BenchReport {
  adapter: AdapterFacts & { subgroups: boolean; matmulVariant: string; conv2dVariant: string };
  batch: number;
  results: BenchResult[];
  /** Every ResNet-50 conv layer (each distinct shape times its count), forward + both gradients. */
  resnet50ConvSum: { ms: number; cpuMs: number; peerMs: number | null; peerCpuMs: number | null; layers: number } | null;
}

/** One entry: a kernel at one shape. */
export interface BenchCase {
  kernel: string;
  shape: string;
  /** Floating-point operations of one run (GFLOP/s), or bytes it must move (GB/s, memory-bound kernels). */
  flops?: number;
  bytes?: number;
  /** How often this shape occurs in ResNet-50 (for the conv sum). */
  resnet50Count?: number;
  /** Makes seeded inputs; tf is null when TF.js's WebGPU backend could not start. */
  prepare(tf: Tf | null): Prepared;
}

export interface Prepared {
  /** Records one run; returns its output (the bench disposes it). */
  run(): Tensor | Tensor[];
  /** Max relative error of run()'s output against float64. */
  check(out: Tensor | Tensor[]): Promise<number>;
  /** The same op in TF.js: records one run, returns what to dispose. */
  peer?: () => TfCore.Tensor | TfCore.Tensor[];
  peerName?: string;
  dispose(): void;
}

// ---- inputs and references ----

function uniform(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() * 2 - 1;
  return a;
}

/** max |out[i] - ref(i)| / max |ref(i)| over `samples` random flat indices i (all of them if fewer). */
function sampledError(out: Float32Array, ref: (i: number) => number, samples = 300): number {
  const rng = new Rng(12345);
  const all = out.length <= samples;
  let err = 0;
  let scale = 0;
  for (let s = 0; s < (all ? out.length : samples); s++) {
    const i = all ? s : Math.floor(rng.next() * out.length);
    const r = ref(i);
    err = Math.max(err, Math.abs(out[i] - r));
    scale = Math.max(scale, Math.abs(r));
  }
  return err / Math.max(scale, 1e-30);
}

function maxRelErr(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    err = Math.max(err, Math.abs(out[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return err / Math.max(scale, 1e-30);
}

const single = (out: Tensor | Tensor[]) => (Array.isArray(out) ? out[0] : out);
const disposeAll = (out: Tensor | Tensor[]) => (Array.isArray(out) ? out.forEach((t) => t.dispose()) : out.dispose());

// ---- matmul ----

function matmulCase(m: number, n: number, k: number): BenchCase {
  return {
    kernel: 'matmul',
    shape: `${m}x${n}x${k} (MxNxK)`,
    flops: 2 * m * n * k,
    prepare(tf) {
      const ad = uniform(m * k, 1);
      const bd = uniform(k * n, 2);
      const a = Tensor.fromArray(ad, [m, k]);
      const b = Tensor.fromArray(bd, [k, n]);
      const ta = tf?.tensor2d(ad, [m, k]);
      const tb = tf?.tensor2d(bd, [k, n]);
      return {
        run: () => matmul(a, b),
        check: async (out) =>
          sampledError(await single(out).toArray(), (e) => {
            const [i, j] = [Math.floor(e / n), e % n];
            let s = 0;
            for (let t = 0; t < k; t++) s += ad[i * k + t] * bd[t * n + j];
            return s;
          }),
        peer: tf && ta && tb ? () => tf.matMul(ta, tb) : undefined,
        peerName: 'tf.matMul',
        dispose: () => [a, b, ta, tb].forEach((t) => t?.dispose()),
      };
    },
  };
}

// ---- conv2d ----

interface ConvLayer {
  net: 'resnet50' | 'inception_v3';
  name: string;
  /** Input channels, input size (square), output channels, kernel [kh, kw], stride, padding [ph, pw]. */
  c: number;
  size: number;
  o: number;
  k: [number, number];
  stride: number;
  pad: [number, number];
  /** Occurrences in the network. */
  count: number;
}

const L = (net: ConvLayer['net'], name: string, c: number, size: number, o: number, k: number | [number, number], stride: number, pad: number | [number, number], count: number): ConvLayer => ({
  net,
  name,
  c,
  size,
  o,
  k: typeof k === 'number' ? [k, k] : k,
  stride,
  pad: typeof pad === 'number' ? [pad, pad] : pad,
  count,
});

/** Every distinct conv layer shape of torchvision's ResNet-50 at 224 px (v1.5: stride on the 3x3), with counts. */
const RESNET50: ConvLayer[] = [
  L('resnet50', 'conv1', 3, 224, 64, 7, 2, 3, 1),
  L('resnet50', 'layer1.0.conv1', 64, 56, 64, 1, 1, 0, 1),
  L('resnet50', 'layer1.x.conv1', 256, 56, 64, 1, 1, 0, 2),
  L('resnet50', 'layer1.x.conv2', 64, 56, 64, 3, 1, 1, 3),
  L('resnet50', 'layer1.x.conv3+downsample', 64, 56, 256, 1, 1, 0, 4),
  L('resnet50', 'layer2.0.conv1', 256, 56, 128, 1, 1, 0, 1),
  L('resnet50', 'layer2.0.conv2', 128, 56, 128, 3, 2, 1, 1),
  L('resnet50', 'layer2.0.downsample', 256, 56, 512, 1, 2, 0, 1),
  L('resnet50', 'layer2.x.conv3', 128, 28, 512, 1, 1, 0, 4),
  L('resnet50', 'layer2.x.conv1', 512, 28, 128, 1, 1, 0, 3),
  L('resnet50', 'layer2.x.conv2', 128, 28, 128, 3, 1, 1, 3),
  L('resnet50', 'layer3.0.conv1', 512, 28, 256, 1, 1, 0, 1),
  L('resnet50', 'layer3.0.conv2', 256, 28, 256, 3, 2, 1, 1),
  L('resnet50', 'layer3.0.downsample', 512, 28, 1024, 1, 2, 0, 1),
  L('resnet50', 'layer3.x.conv3', 256, 14, 1024, 1, 1, 0, 6),
  L('resnet50', 'layer3.x.conv1', 1024, 14, 256, 1, 1, 0, 5),
  L('resnet50', 'layer3.x.conv2', 256, 14, 256, 3, 1, 1, 5),
  L('resnet50', 'layer4.0.conv1', 1024, 14, 512, 1, 1, 0, 1),
  L('resnet50', 'layer4.0.conv2', 512, 14, 512, 3, 2, 1, 1),
  L('resnet50', 'layer4.0.downsample', 1024, 14, 2048, 1, 2, 0, 1),
  L('resnet50', 'layer4.x.conv3', 512, 7, 2048, 1, 1, 0, 3),
  L('resnet50', 'layer4.x.conv1', 2048, 7, 512, 1, 1, 0, 2),
  L('resnet50', 'layer4.x.conv2', 512, 7, 512, 3, 1, 1, 2),
];

/** Every distinct conv layer shape of torchvision's Inception v3 at 299 px (aux classifier included), with counts. */
const INCEPTION_V3: ConvLayer[] = [
  L('inception_v3', 'Conv2d_1a_3x3', 3, 299, 32, 3, 2, 0, 1),
  L('inception_v3', 'Conv2d_2a_3x3', 32, 149, 32, 3, 1, 0, 1),
  L('inception_v3', 'Conv2d_2b_3x3', 32, 147, 64, 3, 1, 1, 1),
  L('inception_v3', 'Conv2d_3b_1x1', 64, 73, 80, 1, 1, 0, 1),
  L('inception_v3', 'Conv2d_4a_3x3', 80, 73, 192, 3, 1, 0, 1),
  L('inception_v3', 'Mixed_5b 1x1 192->64', 192, 35, 64, 1, 1, 0, 2),
  L('inception_v3', 'Mixed_5b 1x1 192->48', 192, 35, 48, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_5b pool 1x1 192->32', 192, 35, 32, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_5x 5x5 48->64', 48, 35, 64, 5, 1, 2, 3),
  L('inception_v3', 'Mixed_5x 3x3 64->96', 64, 35, 96, 3, 1, 1, 3),
  L('inception_v3', 'Mixed_5x 3x3 96->96', 96, 35, 96, 3, 1, 1, 3),
  L('inception_v3', 'Mixed_5c 1x1 256->64', 256, 35, 64, 1, 1, 0, 3),
  L('inception_v3', 'Mixed_5c 1x1 256->48', 256, 35, 48, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_5d 1x1 288->64', 288, 35, 64, 1, 1, 0, 4),
  L('inception_v3', 'Mixed_5d 1x1 288->48', 288, 35, 48, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_6a 3x3 s2 288->384', 288, 35, 384, 3, 2, 0, 1),
  L('inception_v3', 'Mixed_6a 3x3 s2 96->96', 96, 35, 96, 3, 2, 0, 1),
  L('inception_v3', 'Mixed_6x 1x1 768->192', 768, 17, 192, 1, 1, 0, 12),
  L('inception_v3', 'Mixed_6b 1x1 768->128', 768, 17, 128, 1, 1, 0, 2),
  L('inception_v3', 'Mixed_6b 1x7 128->128', 128, 17, 128, [1, 7], 1, [0, 3], 2),
  L('inception_v3', 'Mixed_6b 7x1 128->128', 128, 17, 128, [7, 1], 1, [3, 0], 2),
  L('inception_v3', 'Mixed_6b 7x1 128->192', 128, 17, 192, [7, 1], 1, [3, 0], 1),
  L('inception_v3', 'Mixed_6b 1x7 128->192', 128, 17, 192, [1, 7], 1, [0, 3], 1),
  L('inception_v3', 'Mixed_6c/d 1x1 768->160', 768, 17, 160, 1, 1, 0, 4),
  L('inception_v3', 'Mixed_6c/d 1x7 160->160', 160, 17, 160, [1, 7], 1, [0, 3], 4),
  L('inception_v3', 'Mixed_6c/d 7x1 160->160', 160, 17, 160, [7, 1], 1, [3, 0], 4),
  L('inception_v3', 'Mixed_6c/d 7x1 160->192', 160, 17, 192, [7, 1], 1, [3, 0], 2),
  L('inception_v3', 'Mixed_6c/d 1x7 160->192', 160, 17, 192, [1, 7], 1, [0, 3], 2),
  L('inception_v3', 'Mixed_6e/7a 1x7 192->192', 192, 17, 192, [1, 7], 1, [0, 3], 4),
  L('inception_v3', 'Mixed_6e/7a 7x1 192->192', 192, 17, 192, [7, 1], 1, [3, 0], 4),
  L('inception_v3', 'AuxLogits.conv0 1x1 768->128', 768, 5, 128, 1, 1, 0, 1),
  L('inception_v3', 'AuxLogits.conv1 5x5 128->768', 128, 5, 768, 5, 1, 0, 1),
  L('inception_v3', 'Mixed_7a 3x3 s2 192->320', 192, 17, 320, 3, 2, 0, 1),
  L('inception_v3', 'Mixed_7a 3x3 s2 192->192', 192, 17, 192, 3, 2, 0, 1),
  L('inception_v3', 'Mixed_7b 1x1 1280->320', 1280, 8, 320, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_7b 1x1 1280->384', 1280, 8, 384, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_7b 1x1 1280->448', 1280, 8, 448, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_7b 1x1 1280->192', 1280, 8, 192, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_7x 1x3 384->384', 384, 8, 384, [1, 3], 1, [0, 1], 4),
  L('inception_v3', 'Mixed_7x 3x1 384->384', 384, 8, 384, [3, 1], 1, [1, 0], 4),
  L('inception_v3', 'Mixed_7x 3x3 448->384', 448, 8, 384, 3, 1, 1, 2),
  L('inception_v3', 'Mixed_7c 1x1 2048->320', 2048, 8, 320, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_7c 1x1 2048->384', 2048, 8, 384, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_7c 1x1 2048->448', 2048, 8, 448, 1, 1, 0, 1),
  L('inception_v3', 'Mixed_7c 1x1 2048->192', 2048, 8, 192, 1, 1, 0, 1),
];

type ConvOp = 'conv2d_forward' | 'conv2d_grad_input' | 'conv2d_grad_weight';

/** Conv inputs as float64-checkable arrays: x [N, C, H, W], w [O, C, kh, kw], dy [N, O, Ho, Wo]. */
interface ConvData {
  g: ConvGeometry;
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
}

/** The float64 value of one output element of each conv op (flat index e into its output). */
const convRef: Record<ConvOp, (d: ConvData, e: number) => number> = {
  conv2d_forward({ g, x, w }, e) {
    const ow = e % g.wo;
    const oh = Math.floor(e / g.wo) % g.ho;
    const o = Math.floor(e / (g.wo * g.ho)) % g.o;
    const n = Math.floor(e / (g.wo * g.ho * g.o));
    let s = 0;
    for (let c = 0; c < g.c; c++) {
      for (let i = 0; i < g.kh; i++) {
        const ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        for (let j = 0; j < g.kw; j++) {
          const iw = ow * g.sw - g.pl + j * g.dw;
          if (iw >= 0 && iw < g.w) s += x[((n * g.c + c) * g.h + ih) * g.w + iw] * w[((o * g.c + c) * g.kh + i) * g.kw + j];
        }
      }
    }
    return s;
  },
  conv2d_grad_input({ g, w, dy }, e) {
    const iw = e % g.w;
    const ih = Math.floor(e / g.w) % g.h;
    const c = Math.floor(e / (g.w * g.h)) % g.c;
    const n = Math.floor(e / (g.w * g.h * g.c));
    let s = 0;
    for (let i = 0; i < g.kh; i++) {
      const th = ih + g.pt - i * g.dh;
      if (th < 0 || th % g.sh !== 0 || th / g.sh >= g.ho) continue;
      for (let j = 0; j < g.kw; j++) {
        const tw = iw + g.pl - j * g.dw;
        if (tw < 0 || tw % g.sw !== 0 || tw / g.sw >= g.wo) continue;
        for (let o = 0; o < g.o; o++) s += dy[((n * g.o + o) * g.ho + th / g.sh) * g.wo + tw / g.sw] * w[((o * g.c + c) * g.kh + i) * g.kw + j];
      }
    }
    return s;
  },
  conv2d_grad_weight({ g, x, dy }, e) {
    const j = e % g.kw;
    const i = Math.floor(e / g.kw) % g.kh;
    const c = Math.floor(e / (g.kw * g.kh)) % g.c;
    const o = Math.floor(e / (g.kw * g.kh * g.c));
    let s = 0;
    for (let n = 0; n < g.n; n++) {
      for (let oh = 0; oh < g.ho; oh++) {
        const ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        for (let ow = 0; ow < g.wo; ow++) {
          const iw = ow * g.sw - g.pl + j * g.dw;
          if (iw >= 0 && iw < g.w) s += dy[((n * g.o + o) * g.ho + oh) * g.wo + ow] * x[((n * g.c + c) * g.h + ih) * g.w + iw];
        }
      }
    }
    return s;
  },
};

function convCase(layer: ConvLayer, op: ConvOp, batch: number): BenchCase {
  const [kh, kw] = layer.k;
  const options = { stride: layer.stride, padding: layer.pad };
  const g = convGeometry([batch, layer.c, layer.size, layer.size], [layer.o, layer.c, kh, kw], options);
  const pad = layer.pad[0] === layer.pad[1] ? `${layer.pad[0]}` : `(${layer.pad})`;
  return {
    kernel: op,
    shape: `${layer.net} ${layer.name}: x[${batch},${layer.c},${layer.size},${layer.size}] w[${layer.o},${layer.c},${kh},${kw}] s${layer.stride} p${pad}`,
    flops: 2 * g.n * g.o * g.ho * g.wo * g.c * kh * kw,
    resnet50Count: layer.net === 'resnet50' ? layer.count : undefined,
    prepare(tf) {
      const d: ConvData = { g, x: uniform(g.n * g.c * g.h * g.w, 1), w: uniform(g.o * g.c * kh * kw, 2), dy: uniform(g.n * g.o * g.ho * g.wo, 3) };
      const x = Tensor.fromArray(d.x, [g.n, g.c, g.h, g.w]);
      const w = Tensor.fromArray(d.w, [g.o, g.c, kh, kw]);
      const dy = Tensor.fromArray(d.dy, [g.n, g.o, g.ho, g.wo]);
      const run = {
        conv2d_forward: () => noGrad(() => conv2d(x, w, null, options)),
        conv2d_grad_input: () => conv2dGradInput(dy, w, g),
        conv2d_grad_weight: () => conv2dGradWeight(x, dy, g),
      }[op];
      // TF.js: NHWC activations, HWIO filters, explicit padding; converted once, outside the timing.
      const t = tf?.tidy(() => ({
        x: tf.transpose(tf.tensor4d(d.x, [g.n, g.c, g.h, g.w]), [0, 2, 3, 1]) as TfCore.Tensor4D,
        w: tf.transpose(tf.tensor4d(d.w, [g.o, g.c, kh, kw]), [2, 3, 1, 0]) as TfCore.Tensor4D,
        dy: tf.transpose(tf.tensor4d(d.dy, [g.n, g.o, g.ho, g.wo]), [0, 2, 3, 1]) as TfCore.Tensor4D,
      }));
      const tfPad = [[0, 0], [g.pt, g.pb], [g.pl, g.pr], [0, 0]] as TfCore.backend_util.ExplicitPadding;
      const strides: [number, number] = [g.sh, g.sw];
      const peers = tf && t && {
        conv2d_forward: () => tf.conv2d(t.x, t.w, strides, tfPad, 'NHWC'),
        conv2d_grad_input: () =>
          tf.engine().runKernel('Conv2DBackpropInput', { dy: t.dy, filter: t.w }, { strides, pad: tfPad, dataFormat: 'NHWC', inputShape: [g.n, g.h, g.w, g.c] }),
        conv2d_grad_weight: () =>
          tf.engine().runKernel('Conv2DBackpropFilter', { x: t.x, dy: t.dy }, { strides, pad: tfPad, dataFormat: 'NHWC', filterShape: [kh, kw, g.c, g.o] }),
      };
      return {
        run,
        check: async (out) => sampledError(await single(out).toArray(), (e) => convRef[op](d, e)),
        peer: peers ? peers[op] : undefined,
        peerName: { conv2d_forward: 'tf.conv2d', conv2d_grad_input: 'Conv2DBackpropInput', conv2d_grad_weight: 'Conv2DBackpropFilter' }[op],
        dispose: () => {
          [x, w, dy].forEach((v) => v.dispose());
          if (t) [t.x, t.w, t.dy].forEach((v) => v.dispose());
        },
      };
    },
  };
}

// ---- batch norm and pooling (engine/ops/batchnorm.ts, pool.ts) ----

/** The backward alone: y's tape rule applied to a fixed upstream gradient (d/dx first). */
const grads = (y: Tensor, gy: Tensor) => y.gradFn!.backward(gy).filter((t): t is Tensor => t !== null);

function batchNormCase(shape: number[], backward: boolean): BenchCase {
  const [n, c, h, w] = shape;
  const size = n * c * h * w;
  return {
    kernel: backward ? 'batchnorm_backward (train)' : 'batchnorm_forward (train)',
    shape: `x[${shape}]`,
    // forward reads x twice (statistics, then normalise) and writes y; backward reads x, dy twice, writes dx
    bytes: (backward ? 5 : 3) * size * 4,
    prepare(tf) {
      const xd = uniform(size, 1);
      const gyd = uniform(size, 2);
      const x = Tensor.fromArray(xd, shape).setRequiresGrad(backward);
      const weight = Tensor.fromArray(uniform(c, 3), [c]);
      const bias = Tensor.fromArray(uniform(c, 4), [c]);
      const runningMean = Tensor.zeros([c]);
      const runningVar = Tensor.ones([c]);
      const gy = Tensor.fromArray(gyd, shape);
      const opts = { training: true };
      const forward = () => batchNorm2d(x, weight, bias, runningMean, runningVar, opts);
      const y = backward ? forward() : null;
      const arr = (a: Float32Array, s: number[]) => ({ data: Float64Array.from(a), shape: s });
      const tx = tf?.tidy(() => tf.transpose(tf.tensor4d(xd, [n, c, h, w]), [0, 2, 3, 1]));
      return {
        run: () => (y ? grads(y, gy) : forward()),
        check: async (out) => {
          const [wd, bd] = [await weight.toArray(), await bias.toArray()];
          const args = [arr(xd, shape), null, null, arr(wd, [c]), arr(bd, [c])] as const;
          if (!backward) return maxRelErr(await single(out).toArray(), refBatchNorm.batchNorm2d(...args, opts).y.data);
          const { gx } = refBatchNorm.batchNorm2dBackward(args[0], null, null, args[3], arr(gyd, shape), opts);
          return maxRelErr(await single(out).toArray(), gx.data);
        },
        peer:
          !backward && tf && tx
            ? () =>
                tf.tidy(() => {
                  const { mean, variance } = tf.moments(tx, [0, 1, 2]);
                  return tf.batchNorm(tx, mean, variance, undefined, undefined, 1e-5);
                })
            : undefined,
        peerName: 'tf.moments + tf.batchNorm',
        dispose: () => [x, weight, bias, runningMean, runningVar, gy, y, tx].forEach((t) => t?.dispose()),
      };
    },
  };
}

function poolCase(kind: 'max' | 'avg', shape: number[], k: number, stride: number, pad: number, backward: boolean): BenchCase {
  const [n, c, h, w] = shape;
  const opts = { kernel: k, stride, padding: pad };
  const ref = { kernelSize: k, stride, padding: pad };
  const out = (v: number) => Math.floor((v + 2 * pad - k) / stride) + 1;
  const outShape = [n, c, out(h), out(w)];
  const size = n * c * h * w;
  const outSize = n * c * out(h) * out(w);
  return {
    kernel: `${kind}pool_${backward ? 'backward' : 'forward'}`,
    shape: `x[${shape}] k${k} s${stride} p${pad}`,
    bytes: (size + outSize) * 4,
    prepare(tf) {
      const xd = uniform(size, 1);
      const gyd = uniform(outSize, 2);
      const x = Tensor.fromArray(xd, shape).setRequiresGrad(backward);
      const gy = Tensor.fromArray(gyd, outShape);
      const forward = () => (kind === 'max' ? maxPool2d(x, opts) : avgPool2d(x, opts));
      const y = backward ? forward() : null;
      const arr = (a: Float32Array, s: number[]) => ({ data: Float64Array.from(a), shape: s });
      const t = tf?.tidy(() => {
        const tx = tf.transpose(tf.tensor4d(xd, shape as [number, number, number, number]), [0, 2, 3, 1]) as TfCore.Tensor4D;
        const tgy = tf.transpose(tf.tensor4d(gyd, outShape as [number, number, number, number]), [0, 2, 3, 1]) as TfCore.Tensor4D;
        return { tx, tgy, ty: kind === 'max' ? tf.maxPool(tx, k, stride, pad) : tf.avgPool(tx, k, stride, pad) };
      });
      const attrs = { filterSize: k, strides: stride, pad };
      const peers = t && tf && {
        forward: () => (kind === 'max' ? tf.maxPool(t.tx, k, stride, pad) : tf.avgPool(t.tx, k, stride, pad)),
        backward: () =>
          kind === 'max'
            ? tf.engine().runKernel('MaxPoolGrad', { dy: t.tgy, input: t.tx, output: t.ty }, attrs)
            : tf.engine().runKernel('AvgPoolGrad', { dy: t.tgy, input: t.tx }, attrs),
      };
      return {
        run: () => (y ? grads(y, gy) : forward()),
        check: async (o) => {
          const xa = arr(xd, shape);
          const expected = backward
            ? kind === 'max'
              ? refPool.maxPool2dBackward(xa, arr(gyd, outShape), ref)
              : refPool.avgPool2dBackward(xa, arr(gyd, outShape), ref)
            : kind === 'max'
              ? refPool.maxPool2d(xa, ref)
              : refPool.avgPool2d(xa, ref);
          return maxRelErr(await single(o).toArray(), expected.data);
        },
        peer: peers ? (backward ? peers.backward : peers.forward) : undefined,
        peerName: backward ? `${kind === 'max' ? 'MaxPoolGrad' : 'AvgPoolGrad'}` : `tf.${kind}Pool`,
        dispose: () => [x, gy, y, t?.tx, t?.tgy, t?.ty].forEach((v) => v?.dispose()),
      };
    },
  };
}

// ---- the list ----

const QUICK_RESNET = ['conv1', 'layer1.x.conv2', 'layer1.x.conv1', 'layer4.x.conv2'];
const QUICK_INCEPTION = ['Conv2d_1a_3x3', 'Mixed_6b 1x7 128->128'];

/** Every bench entry, in report order. */
export function benchCases(batch: number, quick = false): BenchCase[] {
  const ops: ConvOp[] = ['conv2d_forward', 'conv2d_grad_input', 'conv2d_grad_weight'];
  const layers = quick
    ? [...RESNET50.filter((l) => QUICK_RESNET.includes(l.name)), ...INCEPTION_V3.filter((l) => QUICK_INCEPTION.includes(l.name))]
    : [...RESNET50, ...INCEPTION_V3];
  const cases = [matmulCase(1024, 1024, 1024), matmulCase(4096, 256, 2304)];
  for (const layer of layers) for (const op of ops) cases.push(convCase(layer, op, batch));
  const stem = [batch, 64, 112, 112];
  const pools: BenchCase[] = [
    batchNormCase(stem, false),
    batchNormCase(stem, true),
    poolCase('max', stem, 3, 2, 1, false),
    poolCase('max', stem, 3, 2, 1, true),
    poolCase('avg', [batch, 192, 35, 35], 3, 1, 1, false),
    poolCase('avg', [batch, 192, 35, 35], 3, 1, 1, true),
  ];
  return [...cases, ...(quick ? pools.slice(0, 3) : pools)];
}

// ---- running ----

/** TF.js's WebGPU backend on celgrad's own device (null, with a warning, when it cannot start). */
async function startTf(): Promise<Tf | null> {
  try {
    const g = gpu();
    const navigatorLike = ((globalThis as { navigator?: { gpu?: GPU } }).navigator ??= {});
    navigatorLike.gpu ??= nodeGpu() ?? undefined; // TF.js refuses to construct without navigator.gpu
    const tf = await import('@tensorflow/tfjs-core');
    const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
    tf.env().set('PROD', true);
    // TF.js's kernels are registered for the backend name 'webgpu': replace its factory (which would
    // request a second adapter and device) with one that shares celgrad's device.
    tf.removeBackend('webgpu');
    tf.registerBackend('webgpu', () => new WebGPUBackend(g.device, g.adapter.info));
    if (!(await tf.setBackend('webgpu'))) throw new Error('tf.setBackend failed');
    return tf;
  } catch (e) {
    console.warn(`bench: TF.js WebGPU peer unavailable (${(e as Error).message}); peers are skipped`);
    return null;
  }
}

async function waitGpu(): Promise<void> {
  await platform().waitForGPU(gpu().device.queue.onSubmittedWorkDone());
}

/** Median wall and CPU ms (over the cores) of one run: record() `reps` times per sample, wait for the GPU, divide. */
async function timeRuns(record: () => void, flush: () => void, samples: number): Promise<{ wall: number; cpu: number }> {
  const now = () => platform().now();
  const cores = availableParallelism();
  record(); // warm-up: pipelines compile, the pool fills
  flush();
  await waitGpu();
  let t0 = now();
  record();
  flush();
  await waitGpu();
  const reps = Math.min(50, Math.max(1, Math.ceil(100 / Math.max(now() - t0, 0.01))));
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let s = 0; s < samples; s++) {
    t0 = now();
    const c0 = process.cpuUsage();
    for (let r = 0; r < reps; r++) record();
    flush();
    await waitGpu();
    const c = process.cpuUsage(c0);
    wall.push((now() - t0) / reps);
    cpu.push((c.user + c.system) / 1000 / cores / reps);
  }
  return { wall: median(wall), cpu: median(cpu) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

export async function benchKernels(options: BenchOptions = {}): Promise<BenchReport> {
  const g = gpu();
  const batch = options.batch ?? (g.facts.isSoftware ? 4 : 8);
  const samples = options.quick ? 3 : 5;
  const tf = options.peer === false ? null : await startTf();
  const cases = benchCases(batch, options.quick).filter((c) => !options.filter || `${c.kernel} ${c.shape}`.includes(options.filter));
  const results: BenchResult[] = [];
  console.log(TABLE_HEADER);
  const sum = { ms: 0, cpuMs: 0, peerMs: 0 as number | null, peerCpuMs: 0 as number | null, layers: 0 };
  for (const c of cases) {
    const p = c.prepare(tf);
    const out = p.run();
    const maxRelErr = await p.check(out);
    disposeAll(out);
    await rt().sync();
    const base = rt().pool.getStats().inUse;
    rt().pool.resetPeak();
    disposeAll(p.run());
    const peakBytes = rt().pool.getStats().peak - base;
    const time = await timeRuns(() => disposeAll(p.run()), () => rt().flush(), samples);
    let peer: BenchResult['peer'] = null;
    if (tf && p.peer) {
      // As TF.js's own read-backs do: close its compute pass and encoder, then submit.
      const backend = tf.backend() as unknown as { ensureCommandEncoderReady(): void; endComputePassEncoder(): void; submitQueue(): void };
      const flushTf = () => {
        backend.ensureCommandEncoderReady();
        backend.endComputePassEncoder();
        backend.submitQueue();
      };
      const peerRun = p.peer;
      const peerTime = await timeRuns(() => tf.dispose(peerRun()), flushTf, options.quick ? 2 : 3);
      peer = { name: `TF.js WebGPU ${p.peerName}`, medianMs: peerTime.wall, cpuMs: peerTime.cpu };
    }
    p.dispose();
    const result: BenchResult = {
      kernel: c.kernel,
      shape: c.shape,
      maxRelErr,
      medianMs: time.wall,
      cpuMs: time.cpu,
      gflops: c.flops ? c.flops / time.wall / 1e6 : null,
      ...(c.bytes ? { gbps: c.bytes / time.wall / 1e6 } : {}),
      peer,
      peakBytes,
    };
    results.push(result);
    console.log(formatRow(result));
    if (c.resnet50Count) {
      sum.ms += c.resnet50Count * time.wall;
      sum.cpuMs += c.resnet50Count * time.cpu;
      sum.peerMs = peer && sum.peerMs !== null ? sum.peerMs + c.resnet50Count * peer.medianMs : null;
      sum.peerCpuMs = peer && sum.peerCpuMs !== null ? sum.peerCpuMs + c.resnet50Count * peer.cpuMs : null;
      if (c.kernel === 'conv2d_forward') sum.layers += c.resnet50Count;
    }
  }
  const report: BenchReport = {
    adapter: { ...g.facts, subgroups: g.hasSubgroups, matmulVariant: matmulVariant(), conv2dVariant: conv2dVariant() },
    batch,
    results,
    resnet50ConvSum: sum.layers ? sum : null,
  };
  console.log(formatSummary(report));
  if (options.json) await writeFile(options.json, JSON.stringify(report, null, 2));
  return report;
}

// ---- printing ----

const fixed = (v: number | null | undefined, d: number) => (v === null || v === undefined ? '-' : v.toFixed(d));

export const TABLE_HEADER =
  '| kernel | shape | max rel err | ms | CPU ms | GFLOP/s | GB/s | TF.js WebGPU ms | TF.js CPU ms | TF.js / celgrad |\n' +
  '|---|---|---|---|---|---|---|---|---|---|';

/** One markdown table row; the ratio (wall time) is how many times faster celgrad is than the peer. */
export function formatRow(r: BenchResult): string {
  const ratio = r.peer ? `${(r.peer.medianMs / r.medianMs).toFixed(1)}x` : '-';
  return (
    `| ${r.kernel} | ${r.shape} | ${r.maxRelErr.toExponential(1)} | ${fixed(r.medianMs, 2)} | ${fixed(r.cpuMs, 2)} | ${fixed(r.gflops, 1)} | ` +
    `${fixed(r.gbps, 1)} | ${fixed(r.peer?.medianMs, 2)} | ${fixed(r.peer?.cpuMs, 2)} | ${ratio} |`
  );
}

export function formatSummary(report: BenchReport): string {
  const a = report.adapter;
  const lines = [
    `adapter: ${a.description} (${a.architecture}), subgroups ${a.subgroups ? a.subgroupSize : 'no'}; matmul '${a.matmulVariant}', conv2d '${a.conv2dVariant}'; batch ${report.batch}`,
  ];
  const s = report.resnet50ConvSum;
  if (s) {
    lines.push(
      `ResNet-50 conv layers (${s.layers} layers, forward + grad input + grad weight, batch ${report.batch}): ` +
        `${s.ms.toFixed(0)} ms (CPU ${s.cpuMs.toFixed(0)} ms)` +
        (s.peerMs && s.peerCpuMs ? `; TF.js WebGPU ${s.peerMs.toFixed(0)} ms (CPU ${s.peerCpuMs.toFixed(0)} ms): ${(s.peerMs / s.ms).toFixed(1)}x` : ''),
    );
  }
  return lines.join('\n');
}
