// 2-D pooling over NCHW: max (backward through the argmax), average, adaptive average, each with its
// derivative. Kernels: kernels/pool_max.wgsl, kernels/pool_avg.wgsl. Reference: test/reference/pool.ts.
import poolMaxSource from '../../kernels/pool_max.wgsl';
import poolAvgSource from '../../kernels/pool_avg.wgsl';
import { floats, type OnnxConstant, type OpExport } from '../autograd.ts';
import { ShapeError } from '../errors.ts';
import { registerKernel, rt } from '../runtime.ts';
import { Tensor } from '../tensor.ts';
import { grid } from './elementwise.ts';

registerKernel('pool_max', poolMaxSource);
registerKernel('pool_avg', poolAvgSource);

const WG = 256;
/** Consecutive elements of a row per invocation (on lavapipe the per-invocation cost dominates). */
const STRIP = 8;

type Pair = number | [number, number];

export interface PoolOptions {
  kernel: Pair;
  /** Defaults to the kernel size, as in PyTorch. */
  stride?: Pair;
  padding?: Pair;
  /** Output size rounded up: a last, partial window that starts inside the input or its left padding. */
  ceilMode?: boolean;
}

export interface AvgPoolOptions extends PoolOptions {
  /** Padding counts towards the divisor (PyTorch's default, true). */
  countIncludePad?: boolean;
}

const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);

/** PyTorch's pooling output size along one axis. */
function outputSize(size: number, k: number, stride: number, pad: number, ceilMode: boolean): number {
  let out = Math.floor((size + 2 * pad - k + (ceilMode ? stride - 1 : 0)) / stride) + 1;
  // The last window must start inside the input or the left padding.
  if (ceilMode && (out - 1) * stride >= size + pad) out--;
  return out;
}

/**
 * Batch, channels, and the kernels' compile-time constants: input and output sizes, and the window
 * (kernel, stride, padding; zeros for adaptive pooling). Lavapipe divides integers slowly unless by a
 * constant, and constant windows give the loops fixed trip counts.
 */
interface Geometry {
  n: number;
  c: number;
  spec: { H: number; W: number; OH: number; OW: number; KH: number; KW: number; SH: number; SW: number; PH: number; PW: number };
}

function geometry(op: string, x: Tensor, o: PoolOptions): Geometry {
  if (x.shape.length !== 4) throw new ShapeError(`${op} expects x [N, C, H, W], got [${x.shape}]`);
  const [n, c, h, w] = x.shape;
  const [kh, kw] = pair(o.kernel);
  const [sh, sw] = pair(o.stride ?? o.kernel);
  const [ph, pw] = pair(o.padding ?? 0);
  if (!(kh > 0 && kw > 0 && sh > 0 && sw > 0 && ph >= 0 && pw >= 0)) {
    throw new ShapeError(`${op}: kernel [${kh}, ${kw}] and stride [${sh}, ${sw}] must be positive, padding [${ph}, ${pw}] >= 0`);
  }
  if (2 * ph > kh || 2 * pw > kw) {
    throw new ShapeError(`${op}: padding [${ph}, ${pw}] must be at most half the kernel [${kh}, ${kw}] (as in PyTorch)`);
  }
  const oh = outputSize(h, kh, sh, ph, o.ceilMode ?? false);
  const ow = outputSize(w, kw, sw, pw, o.ceilMode ?? false);
  if (oh < 1 || ow < 1) throw new ShapeError(`${op}: input [${x.shape}] is too small for kernel [${kh}, ${kw}] (output ${oh}x${ow})`);
  return { n, c, spec: { H: h, W: w, OH: oh, OW: ow, KH: kh, KW: kw, SH: sh, SW: sw, PH: ph, PW: pw } };
}

/** The ONNX attributes of a pooling window (pads: begins, then ends). */
function onnxWindow({ spec }: Geometry, ceilMode = false): OpExport['attrs'] {
  return { kernel_shape: [spec.KH, spec.KW], strides: [spec.SH, spec.SW], pads: [spec.PH, spec.PW, spec.PH, spec.PW], ceil_mode: ceilMode ? 1 : 0 };
}

/** Records one pooling kernel over the rows of `shape` (the output forward, the input backward). */
function dispatch(kernel: string, spec: Record<string, boolean>, g: Geometry, shape: readonly number[], bindings: Tensor[]): void {
  const [n, c, rows, cols] = shape;
  const threads = n * c * rows * Math.ceil(cols / STRIP);
  const { workgroups, row } = grid(threads, WG);
  rt().dispatch({
    kernel,
    spec: { WG, STRIP, ...spec, ...g.spec },
    params: [threads, row],
    bindings: bindings.map((t) => ({ buffer: t.buffer })),
    workgroups,
  });
}

/** Max pooling; the gradient goes to each window's first maximum (PyTorch's argmax). */
export function maxPool2d(x: Tensor, options: PoolOptions): Tensor {
  const g = geometry('maxPool2d', x, options);
  const outShape = [g.n, g.c, g.spec.OH, g.spec.OW];
  const y = Tensor.empty(outShape);
  const indices = Tensor.empty(outShape, 'i32');
  dispatch('pool_max', { BACKWARD: false }, g, outShape, [x, y, indices]);
  if (!Tensor.needsGrad(x)) {
    indices.dispose();
    return y;
  }
  y.requiresGrad = true;
  y.gradFn = {
    op: 'maxPool2d',
    inputs: [x],
    backward: (gy) => {
      const gx = Tensor.empty(x.shape);
      dispatch('pool_max', { BACKWARD: true }, g, x.shape, [indices, gy, gx]);
      return [gx];
    },
    export: { type: 'MaxPool', attrs: onnxWindow(g, options.ceilMode) },
  };
  return y;
}

/** Average pooling (count_include_pad defaults to true, as in PyTorch). */
export function avgPool2d(x: Tensor, options: AvgPoolOptions): Tensor {
  const spec = { ADAPTIVE: false, COUNT_INCLUDE_PAD: options.countIncludePad ?? true };
  const g = geometry('avgPool2d', x, options);
  const onnx = { type: 'AveragePool', attrs: { ...onnxWindow(g, options.ceilMode), count_include_pad: spec.COUNT_INCLUDE_PAD ? 1 : 0 } };
  return averagePool('avgPool2d', x, g, spec, onnx);
}

/** Adaptive average pooling to [oh, ow]: bins floor(i * H / oh) .. ceil((i + 1) * H / oh). */
export function adaptiveAvgPool2d(x: Tensor, size: Pair): Tensor {
  if (x.shape.length !== 4) throw new ShapeError(`adaptiveAvgPool2d expects x [N, C, H, W], got [${x.shape}]`);
  const [n, c, h, w] = x.shape;
  const [oh, ow] = pair(size);
  if (!(oh > 0 && ow > 0 && h > 0 && w > 0)) throw new ShapeError(`adaptiveAvgPool2d: [${x.shape}] to [${oh}, ${ow}]`);
  const g = { n, c, spec: { H: h, W: w, OH: oh, OW: ow, KH: 0, KW: 0, SH: 0, SW: 0, PH: 0, PW: 0 } };
  return averagePool('adaptiveAvgPool2d', x, g, { ADAPTIVE: true, COUNT_INCLUDE_PAD: false }, adaptiveExport(h, w, oh, ow));
}

/** Adaptive pooling in ONNX: global or exact-window pooling where the bins tile the input, else two matmuls. */
function adaptiveExport(h: number, w: number, oh: number, ow: number): OpExport {
  if (oh === 1 && ow === 1) return { type: 'GlobalAveragePool' };
  if (h % oh === 0 && w % ow === 0) return { type: 'AveragePool', attrs: { kernel_shape: [h / oh, w / ow], strides: [h / oh, w / ow] } };
  // Overlapping or repeated bins (VGG's 7x7 from a 1x1 map): y = Ph x Pw^T with each bin's averaging weights.
  return { type: 'MatMul', inputs: [bins(oh, h, false), { type: 'MatMul', inputs: [0, bins(ow, w, true)] }] };
}

/** The [o, n] matrix (or its transpose) whose row i averages bin i: floor(i n / o) .. ceil((i + 1) n / o). */
function bins(o: number, n: number, transposed: boolean): OnnxConstant {
  const m = new Array<number>(o * n).fill(0);
  for (let i = 0; i < o; i++) {
    const start = Math.floor((i * n) / o);
    const end = Math.ceil(((i + 1) * n) / o);
    for (let j = start; j < end; j++) m[transposed ? j * o + i : i * n + j] = 1 / (end - start);
  }
  return floats(m, transposed ? [n, o] : [o, n]);
}

function averagePool(op: string, x: Tensor, g: Geometry, spec: Record<string, boolean>, onnx: OpExport): Tensor {
  const y = Tensor.empty([g.n, g.c, g.spec.OH, g.spec.OW]);
  dispatch('pool_avg', { ...spec, BACKWARD: false }, g, y.shape, [x, y]);
  if (Tensor.needsGrad(x)) {
    y.requiresGrad = true;
    y.gradFn = {
      op,
      inputs: [x],
      backward: (gy) => {
        const gx = Tensor.empty(x.shape);
        dispatch('pool_avg', { ...spec, BACKWARD: true }, g, x.shape, [gy, gx]);
        return [gx];
      },
      export: onnx,
    };
  }
  return y;
}
