// 2-D convolution (cross-correlation, as torch.nn.functional.conv2d), NCHW / OIHW, with its derivative.
// Kernels: kernels/conv2d_forward.wgsl, conv2d_grad_input.wgsl, conv2d_grad_weight.wgsl (implicit GEMMs
// built like kernels/matmul_subgroup.wgsl), and the GEMM of engine/ops/matmul.ts for 1x1 convolutions,
// kernels as large as the input, and the grad input of few-channel stems (+ conv2d_col2im.wgsl).
// Each implicit GEMM first rearranges its operands (conv2d_pack*.wgsl) so that every load in its inner
// loop is one aligned vec4 from a contiguous stream: the weight per lane block, activations in channel
// quads (or, for few-channel stems, in row runs), dy per 4x4 block, x per kernel column for the
// weight gradient. On lavapipe a load whose address differs per lane runs lane by lane, so a vec4
// costs what a scalar did; the packs cost a pass over their input each.
// Reference: test/reference/conv2d.ts.
import forwardSource from '../../kernels/conv2d_forward.wgsl';
import gradInputSource from '../../kernels/conv2d_grad_input.wgsl';
import gradWeightSource from '../../kernels/conv2d_grad_weight.wgsl';
import packSource from '../../kernels/conv2d_pack.wgsl';
import packDySource from '../../kernels/conv2d_pack_dy.wgsl';
import packXSource from '../../kernels/conv2d_pack_x.wgsl';
import packXColsSource from '../../kernels/conv2d_pack_x_cols.wgsl';
import packXRunsSource from '../../kernels/conv2d_pack_x_runs.wgsl';
import col2imSource from '../../kernels/conv2d_col2im.wgsl';
import lanesSource from '../../kernels/conv2d_lanes.wgsl';
import { KernelError, ShapeError } from '../errors.ts';
import { gpu } from '../gpu.ts';
import { platform } from '../platform/index.ts';
import { i32, registerKernel, rt, type Binding, type ParamValue } from '../runtime.ts';
import { Tensor } from '../tensor.ts';
import { recordGemm } from './matmul.ts';
import { sum } from './reduce.ts';
import { contiguousStrides, stridedCopy } from './shape.ts';

// The three implicit GEMMs share their tile constants and lane exchange (WGSL has no includes).
const withLanes = (source: string) => source.replace('#include conv2d_lanes', lanesSource);
registerKernel('conv2d_forward', withLanes(forwardSource));
registerKernel('conv2d_grad_input', withLanes(gradInputSource));
registerKernel('conv2d_grad_weight', withLanes(gradWeightSource));
registerKernel('conv2d_pack', packSource);
registerKernel('conv2d_pack_dy', packDySource);
registerKernel('conv2d_pack_x', packXSource);
registerKernel('conv2d_pack_x_cols', packXColsSource);
registerKernel('conv2d_pack_x_runs', packXRunsSource);
registerKernel('conv2d_col2im', col2imSource);

type Pair = number | [number, number];

export interface Conv2dOptions {
  stride?: Pair;
  /** p (all sides), [ph, pw] (symmetric), or [top, bottom, left, right]. */
  padding?: number | [number, number] | [number, number, number, number];
  dilation?: Pair;
  groups?: number;
  /** Applies ReLU to the output (inference only: not differentiable). */
  relu?: boolean;
}

/** Everything about one convolution's shapes. */
export interface ConvGeometry {
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  groups: number;
  cg: number;
  og: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  dh: number;
  dw: number;
  pt: number;
  pb: number;
  pl: number;
  pr: number;
  ho: number;
  wo: number;
}

const pairOf = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

export function convGeometry(xShape: readonly number[], wShape: readonly number[], options: Conv2dOptions = {}): ConvGeometry {
  if (xShape.length !== 4 || wShape.length !== 4) {
    throw new ShapeError(`conv2d needs x [N, C, H, W] and weight [O, C/groups, kH, kW], got [${xShape}] and [${wShape}]`);
  }
  const [n, c, h, w] = xShape;
  const [o, cg, kh, kw] = wShape;
  const groups = options.groups ?? 1;
  const [sh, sw] = pairOf(options.stride ?? 1);
  const [dh, dw] = pairOf(options.dilation ?? 1);
  const pad = options.padding ?? 0;
  const [pt, pb, pl, pr] =
    typeof pad === 'number' ? [pad, pad, pad, pad] : pad.length === 2 ? [pad[0], pad[0], pad[1], pad[1]] : pad;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0 || o % groups !== 0 || c / groups !== cg) {
    throw new ShapeError(
      `conv2d: groups=${groups} does not fit x [${xShape}] and weight [${wShape}] (needs C % groups = O % groups = 0 and weight dim 1 = C / groups)`,
    );
  }
  if (![sh, sw, dh, dw].every((v) => Number.isInteger(v) && v >= 1) || ![pt, pb, pl, pr].every((v) => Number.isInteger(v) && v >= 0)) {
    throw new ShapeError(`conv2d: stride and dilation must be integers >= 1 and padding >= 0, got ${JSON.stringify(options)}`);
  }
  const ho = Math.floor((h + pt + pb - dh * (kh - 1) - 1) / sh) + 1;
  const wo = Math.floor((w + pl + pr - dw * (kw - 1) - 1) / sw) + 1;
  if (ho < 1 || wo < 1) {
    throw new ShapeError(`conv2d: the ${kh}x${kw} kernel (dilation ${dh}x${dw}) does not fit the padded ${h}x${w} input`);
  }
  return { n, c, h, w, o, groups, cg, og: o / groups, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, ho, wo };
}

/**
 * y = conv2d(x, weight) + bias. x [N, C, H, W], weight [O, C / groups, kH, kW], bias [O] or null.
 * Differentiable in x, weight and bias (unless relu is set).
 */
export function conv2d(x: Tensor, weight: Tensor, bias: Tensor | null, options: Conv2dOptions = {}): Tensor {
  const geo = convGeometry(x.shape, weight.shape, options);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== geo.o)) {
    throw new ShapeError(`conv2d: bias [${bias.shape}] should be [${geo.o}]`);
  }
  const relu = options.relu ?? false;
  const needsGrad = Tensor.needsGrad(x, weight, bias);
  if (relu && needsGrad) throw new ShapeError('conv2d: the fused ReLU is for inference; use relu(conv2d(...)) when training');
  const y = conv2dForward(x, weight, bias, geo, relu);
  if (needsGrad) {
    y.requiresGrad = true;
    y.gradFn = {
      op: 'conv2d',
      inputs: [x, weight, bias],
      backward: (g) => [
        x.requiresGrad ? conv2dGradInput(g, weight, geo) : null,
        weight.requiresGrad ? conv2dGradWeight(x, g, geo) : null,
        bias?.requiresGrad ? sum(g, [0, 2, 3]) : null,
      ],
      // ONNX's pads run begins then ends: top, left, bottom, right.
      export: {
        type: 'Conv',
        attrs: { kernel_shape: [geo.kh, geo.kw], strides: [geo.sh, geo.sw], pads: [geo.pt, geo.pl, geo.pb, geo.pr], dilations: [geo.dh, geo.dw], group: geo.groups },
      },
    };
  }
  return y;
}

// ---- kernel variants ----

/**
 * How the conv kernels hand gathered input rows round their group of lanes. 'subgroup': subgroup
 * shuffles (the fast path on lavapipe, see kernels/matmul_subgroup.wgsl). 'workgroup': workgroup
 * memory and barriers, for adapters without the `subgroups` feature (correct everywhere, tuned nowhere).
 */
export const CONV2D_VARIANTS = ['subgroup', 'workgroup'] as const;
export type Conv2dVariant = (typeof CONV2D_VARIANTS)[number];

let forcedVariant: Conv2dVariant | null = null;

/** Forces a variant for every later convolution (tests, benches); null restores the automatic choice. */
export function setConv2dVariant(variant: Conv2dVariant | null): void {
  if (variant) checkVariant(variant);
  forcedVariant = variant;
}

/** The variant in use: setConv2dVariant(), else CELGRAD_CONV=subgroup|workgroup, else 'subgroup' where the adapter has subgroups. */
export function conv2dVariant(): Conv2dVariant {
  if (forcedVariant) return forcedVariant;
  const asked = platform().env('CELGRAD_CONV');
  if (asked) return checkVariant(asked);
  return gpu().hasSubgroups ? 'subgroup' : 'workgroup';
}

function checkVariant(name: string): Conv2dVariant {
  if (!(CONV2D_VARIANTS as readonly string[]).includes(name)) {
    throw new KernelError('conv2d', `no conv2d variant '${name}' (CELGRAD_CONV): use one of ${CONV2D_VARIANTS.join(', ')}`);
  }
  if (name === 'subgroup' && !gpu().hasSubgroups) {
    throw new KernelError('conv2d', "this adapter does not offer the 'subgroups' feature; use CELGRAD_CONV=workgroup");
  }
  return name as Conv2dVariant;
}

/** Lanes per group (the subgroup size, or 8 with workgroup memory) and the SUBGROUPS specialisation. */
function lanes(): { SG: number; SUBGROUPS: boolean } {
  const subgroups = conv2dVariant() === 'subgroup';
  return { SG: subgroups ? gpu().facts.subgroupSize : 8, SUBGROUPS: subgroups };
}

/** Rows per lane: 24 measured best on lavapipe (see engine/ops/matmul.ts); a multiple of SG. */
const rowsPerLane = (sg: number) => (sg <= 8 ? 24 : sg);

/**
 * The weight in the order the forward (or grad-input) kernel's lanes read it: see kernels/conv2d_pack.wgsl.
 * Column tiles run over output channels (forward) or input channels (grad input) of each group.
 */
function packWeight(weight: Tensor, geo: ConvGeometry, sg: number, forInput: boolean, runs = false): Tensor {
  const cols = forInput ? geo.cg : geo.og;
  const quads = runs ? Math.ceil((geo.kw * geo.cg) / 4) : Math.ceil((forInput ? geo.og : geo.cg) / 4);
  const colTiles = Math.ceil(cols / (4 * sg));
  const steps = geo.kh * (runs ? 1 : geo.kw) * quads;
  const blocks = geo.groups * colTiles * steps;
  const packed = Tensor.empty([blocks * sg * 16]);
  const [gx, gy] = tileGrid(Math.ceil((blocks * sg) / 64));
  rt().dispatch({
    kernel: 'conv2d_pack',
    spec: { SG: sg, FOR_INPUT: forInput, RUNS: runs },
    params: [blocks, gx, geo.cg, geo.og, geo.kh * geo.kw, colTiles, steps, quads, geo.kw],
    bindings: [{ buffer: weight.buffer }, { buffer: packed.buffer }],
    workgroups: [gx, gy],
  });
  return packed;
}

/**
 * Images [first, first + count) of an NCHW tensor t (`channels` in `groups`, `hw` pixels each) in
 * channel quads: see kernels/conv2d_pack_x.wgsl.
 */
function packChannels(t: Tensor, channels: number, groups: number, hw: number, first: number, count: number): Tensor {
  const cg = channels / groups;
  const cq = Math.ceil(cg / 4);
  const planes = count * groups * cq;
  const packed = Tensor.empty([planes * hw * 4]);
  const ts = window(t, channels * hw, first, count);
  const [py, pz] = tileGrid(planes);
  rt().dispatch({
    kernel: 'conv2d_pack_x',
    spec: { X_VEC: hw % 4 === 0 && ts.offset % 4 === 0 },
    params: [hw, planes, py, cg, cq, groups, channels, ts.offset],
    bindings: [ts.binding, { buffer: packed.buffer }],
    workgroups: [Math.ceil(hw / 256), py, pz],
  });
  return packed;
}

/** Elements per image of an NCHW tensor packed by packChannels(). */
const packedPerImage = (channels: number, groups: number, hw: number) => groups * Math.ceil(channels / groups / 4) * 4 * hw;

/** Splits `tiles` workgroups over two grid dimensions (at most maxComputeWorkgroupsPerDimension each). */
function tileGrid(tiles: number): [number, number] {
  const max = rt().device.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(tiles, max);
  return [x, Math.ceil(tiles / x)];
}

/**
 * Batch chunks [first image, count] small enough that every per-image tensor's window fits one
 * storage binding (maxStorageBufferBindingSize; 128 MiB on lavapipe, less than e.g. Inception's
 * 32 x 64 x 147 x 147 activations).
 */
function batchChunks(kernel: string, n: number, perImageElements: number[]): [number, number][] {
  const limits = rt().device.limits;
  const room = bindingRoom();
  const perImage = Math.max(...perImageElements) * 4;
  const count = Math.floor(room / perImage);
  if (count < 1) {
    throw new KernelError(
      kernel,
      `one image's tensor (${(perImage / 2 ** 20).toFixed(1)} MiB) exceeds maxStorageBufferBindingSize ` +
        `(${(limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(1)} MiB); reduce the image size or channels`,
    );
  }
  const out: [number, number][] = [];
  for (let first = 0; first < n; first += count) out.push([first, Math.min(count, n - first)]);
  return out;
}

/** Bytes a binding window can hold wherever it starts. */
function bindingRoom(): number {
  const limits = rt().device.limits;
  return limits.maxStorageBufferBindingSize - limits.minStorageBufferOffsetAlignment;
}

/** A binding window over images [first, first + count) of t, and the element offset of `first` in it. */
function window(t: Tensor, perImage: number, first: number, count: number): { binding: Binding; offset: number } {
  const align = rt().device.limits.minStorageBufferOffsetAlignment;
  const start = first * perImage * 4;
  const offset = Math.floor(start / align) * align;
  return { binding: { buffer: t.buffer, offset, size: start - offset + count * perImage * 4 }, offset: (start - offset) / 4 };
}

/** Stride 1, no padding, no groups: for each image the convolution is one GEMM. */
const isPointwise = (g: ConvGeometry) =>
  g.kh === 1 && g.kw === 1 && g.sh === 1 && g.sw === 1 && g.pt + g.pb + g.pl + g.pr === 0 && g.groups === 1;

/**
 * Pointwise, on planes of 4k pixels: the forward and input gradient run as the GEMM, whose loads along
 * the planes are then vec4. Planes like Inception's 35x35 would make them scalar; the implicit kernels,
 * reading activations packed in channel quads, are faster there.
 */
const isPointwiseGemm = (g: ConvGeometry) => isPointwise(g) && (g.h * g.w) % 4 === 0;

/** A 1x1 kernel with a stride and no padding, on an input that fits one binding (for the subsample copy). */
const isStridedPointwise = (g: ConvGeometry) =>
  g.kh === 1 && g.kw === 1 && (g.sh > 1 || g.sw > 1) && g.pt + g.pb + g.pl + g.pr === 0 &&
  g.n * g.c * g.h * g.w * 4 <= rt().device.limits.maxStorageBufferBindingSize;

/**
 * The kernel covers the whole unpadded input (Inception's aux 5x5 on a 5x5 map): a fully connected
 * layer, one GEMM over the batch. The implicit GEMMs would give every input pixel all kH kW kernel
 * positions of which one applies (25x the work for the grad input).
 */
const isDense = (g: ConvGeometry) =>
  g.kh === g.h && g.kw === g.w && g.dh === 1 && g.dw === 1 && g.pt + g.pb + g.pl + g.pr === 0 && g.groups === 1;

/**
 * Few input channels (a 3-channel stem): the grad-input kernel would leave most of its 4 x SG columns
 * (input channels) empty, so multiply into columns with the GEMM and fold them back (3x faster on the
 * ResNet-50 stem), a batch chunk at a time, where one image's columns fit half a binding. The forward
 * keeps the implicit GEMM: unfolding its input first measured slower.
 */
const unfolds = (g: ConvGeometry) =>
  g.groups === 1 && g.cg < 8 && g.dh === 1 && g.dw === 1 && g.c * g.kh * g.kw * g.ho * g.wo * 4 <= rt().device.limits.maxStorageBufferBindingSize / 2;

/** Shape parameters shared by the kernels, in their Params order after the first few. */
const sizes = (g: ConvGeometry): ParamValue[] => [g.h, g.w, g.ho, g.wo, g.kh, g.kw];
const steps = (g: ConvGeometry): ParamValue[] => [i32(g.sh), i32(g.sw), i32(g.dh), i32(g.dw), i32(g.pt), i32(g.pl)];

function conv2dForward(x: Tensor, weight: Tensor, bias: Tensor | null, geo: ConvGeometry, relu: boolean): Tensor {
  const { n, c, h, w, o, ho, wo } = geo;
  const y = Tensor.empty([n, o, ho, wo]);
  // Few-channel stems read x in row runs, everything else in channel quads (never a pointwise or dense conv).
  const runs = rowRuns(geo);
  const chunks = batchChunks('conv2d_forward', n, [c * h * w, o * ho * wo, runs ? runs.hp * runs.f * 4 : packedPerImage(c, geo.groups, h * w)]);
  if (isPointwiseGemm(geo) && !bias && !relu && chunks.length === 1) {
    // y[n] (O x HW) = W (O x C) . x[n] (C x HW)
    recordGemm({ a: { buffer: weight.buffer }, b: { buffer: x.buffer }, c: { buffer: y.buffer }, m: o, n: h * w, k: c, batch: n, transA: false, transB: false, aBatch: 0, bBatch: c * h * w });
    return y;
  }
  if (isDense(geo) && !bias && !relu && chunks.length === 1) {
    // y (N x O) = x (N x CHW) . W^T (CHW x O)
    recordGemm({ a: { buffer: x.buffer }, b: { buffer: weight.buffer }, c: { buffer: y.buffer }, m: n, n: o, k: c * h * w, batch: 1, transA: false, transB: true, aBatch: 0, bBatch: 0 });
    return y;
  }
  const { SG, SUBGROUPS } = lanes();
  const TM = rowsPerLane(SG);
  const wt = packWeight(weight, geo, SG, false, runs !== null);
  const colTiles = Math.ceil(geo.og / (4 * SG));
  for (const [first, count] of chunks) {
    const xs = runs ? packRowRuns(x, geo, runs, first, count) : packChannels(x, c, geo.groups, h * w, first, count);
    // What the kernel sees: row runs are a convolution of width 1 over the padded image's interleaved rows.
    const kgeo = runs ? { ...geo, cg: 4 * runs.r4, h: runs.hp, w: runs.f, kw: 1, pt: 0, pl: 0 } : geo;
    const layout = runs ? [runs.hp * runs.f, runs.f, c, 4] : [Math.ceil(geo.cg / 4) * h * w, w, 1, h * w];
    const ys = window(y, o * ho * wo, first, count);
    const rows = count * ho * wo;
    const [tx, ty] = tileGrid(Math.ceil(rows / TM));
    rt().dispatch({
      kernel: 'conv2d_forward',
      spec: { SG, TM, SUBGROUPS, BIAS: bias !== null, RELU: relu },
      params: [rows, geo.og, kgeo.cg, geo.groups, o, ...sizes(kgeo), ...steps(kgeo), tx, colTiles, ys.offset, ...layout],
      bindings: [{ buffer: xs.buffer }, { buffer: wt.buffer }, ...(bias ? [{ buffer: bias.buffer }] : []), ys.binding],
      workgroups: [tx, ty, colTiles * geo.groups],
    });
    xs.dispose();
  }
  wt.dispose();
  return y;
}

/** Row runs' sizes: padded rows HP, row elements F (vec4 starts) and steps of 4 per kernel row R4. */
interface RowRuns {
  hp: number;
  f: number;
  r4: number;
}

/**
 * The forward of a few-channel convolution (a 3-channel stem) in row runs (kernels/conv2d_pack_x_runs.wgsl)
 * where they waste fewer k slots than 4-channel quads: 7x7 over 3 channels takes 42 steps, not 49.
 * Null for any other convolution.
 */
function rowRuns(g: ConvGeometry): RowRuns | null {
  const r4 = Math.ceil((g.kw * g.cg) / 4);
  if (g.groups !== 1 || g.dw !== 1 || g.cg >= 4 || r4 * 4 >= g.kw * 4 * Math.ceil(g.cg / 4)) return null;
  const hp = (g.ho - 1) * g.sh + (g.kh - 1) * g.dh + 1;
  const f = (g.wo - 1) * g.sw * g.cg + 4 * r4;
  return { hp, f, r4 };
}

/** Images [first, first + count) of x in row runs. */
function packRowRuns(x: Tensor, g: ConvGeometry, runs: RowRuns, first: number, count: number): Tensor {
  const rows = count * runs.hp;
  const packed = Tensor.empty([rows * runs.f * 4]);
  const xs = window(x, g.c * g.h * g.w, first, count);
  const [ry, rz] = tileGrid(rows);
  rt().dispatch({
    kernel: 'conv2d_pack_x_runs',
    params: [runs.f, rows, ry, runs.hp, g.c, g.h, g.w, i32(g.pt), i32(g.pl), xs.offset],
    bindings: [xs.binding, { buffer: packed.buffer }],
    workgroups: [Math.ceil(runs.f / 256), ry, rz],
  });
  return packed;
}

/** d(loss)/dx for y = conv2d(x, weight): a transposed convolution of dy. */
export function conv2dGradInput(dy: Tensor, weight: Tensor, geo: ConvGeometry): Tensor {
  const { n, c, h, w, o, ho, wo } = geo;
  const dx = Tensor.empty([n, c, h, w]);
  const chunks = batchChunks('conv2d_grad_input', n, [c * h * w, o * ho * wo]);
  if (isPointwiseGemm(geo) && chunks.length === 1) {
    // dx[n] (C x HW) = W^T (C x O) . dy[n] (O x HW)
    recordGemm({ a: { buffer: weight.buffer }, b: { buffer: dy.buffer }, c: { buffer: dx.buffer }, m: c, n: h * w, k: o, batch: n, transA: true, transB: false, aBatch: 0, bBatch: o * h * w });
    return dx;
  }
  if (isDense(geo) && chunks.length === 1) {
    // dx (N x CHW) = dy (N x O) . W (O x CHW)
    recordGemm({ a: { buffer: dy.buffer }, b: { buffer: weight.buffer }, c: { buffer: dx.buffer }, m: n, n: c * h * w, k: o, batch: 1, transA: false, transB: false, aBatch: 0, bBatch: 0 });
    return dx;
  }
  if (unfolds(geo)) {
    const k = c * geo.kh * geo.kw;
    // W^T (CkHkW x O) as its own copy: the GEMM then loads it in vec4s along O (CkHkW = 147 is not a
    // multiple of 4, which made every load of W scalar: 12% of the stem's GEMM).
    const wT = Tensor.empty([k, o]);
    stridedCopy(weight, 0, [1, k], wT, 0, [o, 1], [k, o]);
    for (const [first, count] of batchChunks('conv2d_grad_input', n, [c * h * w, o * ho * wo, k * ho * wo])) {
      // col[n] (CkHkW x HoWo) = W^T (CkHkW x O) . dy[n] (O x HoWo), then each pixel sums its entries.
      const col = Tensor.empty([count, k, ho * wo]);
      const dys = window(dy, o * ho * wo, first, count);
      recordGemm({ a: { buffer: wT.buffer }, b: dys.binding, bOffset: dys.offset, c: { buffer: col.buffer }, m: k, n: ho * wo, k: o, batch: count, transA: false, transB: false, aBatch: 0, bBatch: o * ho * wo });
      const dxs = window(dx, c * h * w, first, count);
      const [ry, rz] = tileGrid(count * c * h);
      rt().dispatch({
        kernel: 'conv2d_col2im',
        params: [count * c * h, c, ...sizes(geo), i32(geo.sh), i32(geo.sw), i32(geo.pt), i32(geo.pl), ry, dxs.offset],
        bindings: [{ buffer: col.buffer }, dxs.binding],
        workgroups: [Math.ceil((geo.sw * Math.ceil(w / (4 * geo.sw))) / 64), ry, rz],
      });
      col.dispose();
    }
    wT.dispose();
    return dx;
  }
  const { SG, SUBGROUPS } = lanes();
  const TM = rowsPerLane(SG);
  const wt = packWeight(weight, geo, SG, true);
  const colTiles = Math.ceil(geo.cg / (4 * SG));
  for (const [first, count] of batchChunks('conv2d_grad_input', n, [c * h * w, o * ho * wo, packedPerImage(o, geo.groups, ho * wo)])) {
    const dys = packChannels(dy, o, geo.groups, ho * wo, first, count);
    const dxs = window(dx, c * h * w, first, count);
    // One dispatch per stride phase (h mod sh, w mod sw): see the kernel's header.
    for (let ph = 0; ph < Math.min(geo.sh, h); ph++) {
      for (let pw = 0; pw < Math.min(geo.sw, w); pw++) {
        const hp = Math.ceil((h - ph) / geo.sh);
        const wp = Math.ceil((w - pw) / geo.sw);
        const rows = count * hp * wp;
        const [tx, ty] = tileGrid(Math.ceil(rows / TM));
        rt().dispatch({
          kernel: 'conv2d_grad_input',
          spec: { SG, TM, SUBGROUPS },
          params: [rows, geo.cg, geo.og, c, geo.groups, ...sizes(geo), ...steps(geo), ph, pw, hp, wp, tx, colTiles, dxs.offset],
          bindings: [{ buffer: dys.buffer }, { buffer: wt.buffer }, dxs.binding],
          workgroups: [tx, ty, colTiles * geo.groups],
        });
      }
    }
    dys.dispose();
  }
  wt.dispose();
  return dx;
}

/** d(loss)/dweight for y = conv2d(x, weight): a reduction over the batch and every output position. */
export function conv2dGradWeight(x: Tensor, dy: Tensor, geo: ConvGeometry): Tensor {
  if (isDense(geo) && batchChunks('conv2d_grad_weight', geo.n, [geo.c * geo.h * geo.w, geo.o]).length === 1) {
    // dW (O x CHW) = dy^T (O x N) . x (N x CHW): the implicit kernel would spend a whole step of 4
    // positions on each image's single output position.
    const dw = Tensor.empty([geo.o, geo.cg, geo.kh, geo.kw]);
    recordGemm({ a: { buffer: dy.buffer }, b: { buffer: x.buffer }, c: { buffer: dw.buffer }, m: geo.o, n: geo.c * geo.h * geo.w, k: geo.n, batch: 1, transA: true, transB: false, aBatch: 0, bBatch: 0 });
    return dw;
  }
  if (isStridedPointwise(geo)) {
    // A 1x1 kernel with a stride (ResNet's downsample) reads every sh-th row and sw-th column only:
    // copy that subsample out (a quarter of x) and take the pointwise convolution's gradient.
    const xs = Tensor.empty([geo.n, geo.c, geo.ho, geo.wo]);
    stridedCopy(x, 0, [geo.c * geo.h * geo.w, geo.h * geo.w, geo.sh * geo.w, geo.sw], xs, 0, contiguousStrides(xs.shape), xs.shape);
    const dw = conv2dGradWeight(xs, dy, { ...geo, h: geo.ho, w: geo.wo, sh: 1, sw: 1 });
    xs.dispose();
    return dw;
  }
  // A pointwise convolution runs as the same one on a 1 x HW image: rows of 4k pixels, x read where
  // it is (4 neighbouring pixels per vec4) when HW is a multiple of 4. Any other reads x packed per
  // kernel column (kernels/conv2d_pack_x_cols.wgsl), or, where one image's packed copy would not
  // fit a binding, gathers from x in place.
  const pointwise = isPointwise(geo);
  const g = pointwise ? { ...geo, h: 1, w: geo.h * geo.w, ho: 1, wo: geo.ho * geo.wo } : geo;
  const direct = pointwise && g.w % 4 === 0;
  const packsX = !direct && g.kw * g.c * g.h * Math.ceil(g.wo / 4) * 16 <= bindingRoom();
  const { n, c, h, w, o, ho, wo } = g;
  const { SG, SUBGROUPS } = lanes();
  const TM = rowsPerLane(SG);
  const rowTiles = Math.ceil((g.cg * g.kh * g.kw) / TM);
  const colTiles = Math.ceil(g.og / (4 * SG));
  const quads = Math.ceil(g.og / 4);
  const w4 = Math.ceil(wo / 4);
  const dyPerImage = direct ? 0 : ho * w4 * g.groups * quads * 16;
  const xPerImage = packsX ? g.kw * c * h * w4 * 4 : 0;
  const chunks = batchChunks('conv2d_grad_weight', n, [c * h * w, o * ho * wo, dyPerImage, xPerImage]);
  const slices = kSlices(rowTiles * colTiles * g.groups, chunks[0][1] * ho * w4);
  const sliceSteps = Math.ceil((chunks[0][1] * ho * w4) / slices);
  const shape = [geo.o, geo.cg, geo.kh, geo.kw];
  // One copy of dw per k slice, added up at the end.
  const partial = Tensor.empty(slices === 1 ? shape : [slices, ...shape]);
  chunks.forEach(([first, count], chunk) => {
    // x's layout in vec4s for the kernel: base, then strides of kernel column, image, channel, row.
    let xs: Binding;
    let layout: number[];
    let xPacked: Tensor | null = null;
    if (packsX) {
      xPacked = packColumns(x, g, first, count);
      xs = { buffer: xPacked.buffer };
      layout = [0, count * c * h * w4, c * h * w4, h * w4, w4];
    } else {
      const win = window(x, c * h * w, first, count);
      xs = win.binding;
      // In vec4s when direct (offset % 4 == 0: images hold 4k values), else in elements.
      layout = direct ? [win.offset / 4, 0, (c * h * w) / 4, (h * w) / 4, 0] : [win.offset, 0, c * h * w, h * w, w];
    }
    // dy in place (pointwise, direct) or in the kernel's reading order (kernels/conv2d_pack_dy.wgsl).
    const dys = window(dy, o * ho * wo, first, count);
    const packed = direct ? null : Tensor.empty([count * dyPerImage]);
    if (packed) {
      const blocks = count * ho * w4 * g.groups * quads;
      const [gx, gy] = tileGrid(Math.ceil(blocks / 64));
      rt().dispatch({
        kernel: 'conv2d_pack_dy',
        spec: { DY_VEC: wo % 4 === 0 && dys.offset % 4 === 0 },
        params: [blocks, gx, g.og, o, ho, wo, quads, g.groups * quads, dys.offset],
        bindings: [dys.binding, { buffer: packed.buffer }],
        workgroups: [gx, gy],
      });
    }
    rt().dispatch({
      kernel: 'conv2d_grad_weight',
      spec: { SG, TM, SUBGROUPS, X_VEC: direct || packsX, DY_DIRECT: direct, ACCUMULATE: chunk > 0 },
      params: [count, g.cg, g.og, o, h, ho, wo, g.kh, g.kw, i32(g.sh), i32(g.dh), i32(g.pt), colTiles, g.groups * quads, packed ? 0 : dys.offset / 4, sliceSteps, ...layout, w, i32(g.sw), i32(g.dw), i32(g.pl)],
      bindings: [xs, packed ? { buffer: packed.buffer } : dys.binding, { buffer: partial.buffer }],
      workgroups: [rowTiles, slices, colTiles * g.groups],
    });
    packed?.dispose();
    xPacked?.dispose();
  });
  if (slices === 1) return partial;
  const dw = sum(partial, 0);
  partial.dispose();
  return dw;
}

/** Images [first, first + count) of x as kernels/conv2d_pack_x_cols.wgsl lays them out. */
function packColumns(x: Tensor, g: ConvGeometry, first: number, count: number): Tensor {
  const { c, h, w, kw, wo } = g;
  const rows = kw * count * c * h;
  const packed = Tensor.empty([rows * Math.ceil(wo / 4) * 4]);
  const xs = window(x, c * h * w, first, count);
  const [gx, gy] = tileGrid(Math.ceil(rows / 64));
  rt().dispatch({
    kernel: 'conv2d_pack_x_cols',
    params: [rows, gx, count, c, h, w, wo, i32(g.sw), i32(g.dw), i32(g.pl), xs.offset],
    bindings: [xs.binding, { buffer: packed.buffer }],
    workgroups: [gx, gy],
  });
  return packed;
}

/**
 * How many k slices the weight gradient's reduction is cut into: enough for about 64 workgroups where
 * the layer itself has fewer tiles, each slice keeping at least 32 steps (128 positions).
 */
function kSlices(tiles: number, steps: number): number {
  return Math.max(1, Math.min(Math.ceil(64 / tiles), Math.floor(steps / 32)));
}
