// Tensor: an NCHW-contiguous array on the GPU (f32, or i32 for indices and labels), with autograd state.
import { backward as runBackward, isGradEnabled, trackInScope, type GradNode } from './autograd.ts';
import { ShapeError } from './errors.ts';
import { rt } from './runtime.ts';
import { Rng } from './random.ts';

export type DType = 'f32' | 'i32';
export type Shape = readonly number[];

/** A GPU buffer shared by a tensor and its views (reshape), freed when the last one is disposed. */
class Storage {
  refs = 1;
  constructor(
    readonly buffer: GPUBuffer,
    readonly bytes: number,
  ) {}
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: Shape;
  readonly size: number;
  readonly dtype: DType;
  requiresGrad = false;
  /** The accumulated gradient (leaf tensors, and tensors that called retainGrad()). */
  grad: Tensor | null = null;
  /** How this tensor was computed (null for leaves and for tensors made without grad). */
  gradFn: GradNode | null = null;
  /** Called with this tensor's gradient during backward(); may return a replacement. */
  readonly hooks: ((grad: Tensor) => Tensor | void)[] = [];
  retainsGrad = false;
  name?: string;
  private storage: Storage | null;

  private constructor(shape: Shape, storage: Storage, dtype: DType) {
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(shape);
    this.storage = storage;
    this.dtype = dtype;
    trackInScope(this);
  }

  // ---- creation ----

  /** An uninitialised tensor whose buffer will be written by a GPU kernel. */
  static empty(shape: Shape, dtype: DType = 'f32'): Tensor {
    checkShape(shape);
    const bytes = Math.max(4, sizeOf(shape) * 4);
    return new Tensor(shape, new Storage(rt().pool.acquire(bytes), bytes), dtype);
  }

  static fromArray(data: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): Tensor {
    checkShape(shape);
    const n = sizeOf(shape);
    if (data.length !== n) {
      throw new ShapeError(`fromArray: ${data.length} values cannot fill shape [${shape}] (needs ${n})`);
    }
    const bytes = Math.max(4, n * 4);
    const typed =
      dtype === 'f32'
        ? data instanceof Float32Array ? data : Float32Array.from(data)
        : data instanceof Int32Array ? data : Int32Array.from(data);
    const storage = new Storage(rt().pool.acquire(bytes, true), bytes);
    if (n > 0) rt().write(storage.buffer, 0, typed);
    return new Tensor(shape, storage, dtype);
  }

  static scalar(value: number): Tensor {
    return Tensor.fromArray([value], []);
  }

  static zeros(shape: Shape): Tensor {
    return Tensor.fromArray(new Float32Array(sizeOf(shape)), shape);
  }

  static ones(shape: Shape): Tensor {
    return Tensor.full(shape, 1);
  }

  static full(shape: Shape, value: number): Tensor {
    return Tensor.fromArray(new Float32Array(sizeOf(shape)).fill(value), shape);
  }

  /** Uniform in [low, high). Seeded: the same seed gives the same values. */
  static uniform(shape: Shape, low: number, high: number, seed: number): Tensor {
    const rng = new Rng(seed);
    const data = new Float32Array(sizeOf(shape));
    for (let i = 0; i < data.length; i++) data[i] = low + (high - low) * rng.next();
    return Tensor.fromArray(data, shape);
  }

  /** Normal(mean, std), seeded. */
  static normal(shape: Shape, mean: number, std: number, seed: number): Tensor {
    const rng = new Rng(seed);
    const data = new Float32Array(sizeOf(shape));
    for (let i = 0; i < data.length; i++) data[i] = mean + std * rng.normal();
    return Tensor.fromArray(data, shape);
  }

  /** Normal(mean, std) redrawn until inside the absolute bounds [a, b] (torch.nn.init.trunc_normal_). */
  static truncatedNormal(shape: Shape, mean: number, std: number, a: number, b: number, seed: number): Tensor {
    const rng = new Rng(seed);
    const data = new Float32Array(sizeOf(shape));
    for (let i = 0; i < data.length; i++) {
      let v: number;
      do v = mean + std * rng.normal();
      while (v < a || v > b);
      data[i] = v;
    }
    return Tensor.fromArray(data, shape);
  }

  /** Kaiming normal (He et al.) for a weight of shape [out, in, ...kernel]: std = sqrt(2 / fan). */
  static kaimingNormal(shape: Shape, mode: 'fan_in' | 'fan_out', seed: number): Tensor {
    const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
    const fan = (mode === 'fan_in' ? shape[1] : shape[0]) * receptive;
    return Tensor.normal(shape, 0, Math.sqrt(2 / fan), seed);
  }

  // ---- data ----

  /** The GPU buffer (bind it with offset 0 and byteLength). */
  get buffer(): GPUBuffer {
    if (!this.storage) throw new Error(`tensor [${this.shape}]${this.name ? ` '${this.name}'` : ''} was used after dispose()`);
    return this.storage.buffer;
  }

  get byteLength(): number {
    return Math.max(4, this.size * 4);
  }

  get disposed(): boolean {
    return this.storage === null;
  }

  /** Reads the values back to the CPU (flushes recorded work). */
  async toArray(): Promise<Float32Array> {
    const bytes = await rt().read(this.buffer, 0, this.size * 4);
    return this.dtype === 'f32' ? new Float32Array(bytes) : Float32Array.from(new Int32Array(bytes));
  }

  /** Reads an i32 tensor back as integers. */
  async toInt32Array(): Promise<Int32Array> {
    if (this.dtype !== 'i32') throw new ShapeError(`toInt32Array on a ${this.dtype} tensor`);
    return new Int32Array(await rt().read(this.buffer, 0, this.size * 4));
  }

  /** Reads a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new ShapeError(`item() needs a one-element tensor, got shape [${this.shape}]`);
    return (await this.toArray())[0];
  }

  /** Overwrites the values in place (e.g. loading weights). Flushes recorded work first. */
  write(data: ArrayLike<number>): void {
    if (data.length !== this.size) {
      throw new ShapeError(`write: ${data.length} values for a tensor of shape [${this.shape}] (${this.size} values)`);
    }
    if (rt().recording) rt().flush();
    rt().write(this.buffer, 0, this.dtype === 'f32' ? Float32Array.from(data) : Int32Array.from(data));
  }

  /** Copies another tensor's values into this one on the GPU (same size). */
  copyFrom(source: Tensor): void {
    if (source.size !== this.size) throw new ShapeError(`copyFrom: [${source.shape}] into [${this.shape}]`);
    if (this.size > 0) rt().copy(source.buffer, 0, this.buffer, 0, this.size * 4);
  }

  // ---- lifetime ----

  /** Returns the buffer to the pool (once no view shares it). Safe to call twice. */
  dispose(): void {
    const s = this.storage;
    if (!s) return;
    this.storage = null;
    this.gradFn = null;
    if (--s.refs === 0) rt().pool.release(s.buffer);
  }

  /** A view with another shape over the same buffer (contiguous, so no copy). No grad tracking. */
  view(shape: Shape): Tensor {
    const resolved = resolveShape(shape, this.size, this.shape);
    const s = this.storage;
    if (!s) throw new Error('view of a disposed tensor');
    s.refs++;
    return new Tensor(resolved, s, this.dtype);
  }

  /** The same values, cut from the graph. Shares the buffer. */
  detach(): Tensor {
    return this.view(this.shape);
  }

  // ---- autograd ----

  setRequiresGrad(flag = true): this {
    if (flag && this.dtype !== 'f32') throw new ShapeError('only f32 tensors can require gradients');
    this.requiresGrad = flag;
    return this;
  }

  /** Keeps this (non-leaf) tensor's gradient in .grad during backward(). */
  retainGrad(): this {
    this.retainsGrad = true;
    return this;
  }

  /** Runs `hook(grad)` when this tensor's gradient has been computed. Returns a remover. */
  registerHook(hook: (grad: Tensor) => Tensor | void): { remove(): void } {
    this.hooks.push(hook);
    return {
      remove: () => {
        const i = this.hooks.indexOf(hook);
        if (i >= 0) this.hooks.splice(i, 1);
      },
    };
  }

  /** Reverse-mode autodiff from this tensor: a scalar, or any shape with an explicit upstream gradient. */
  backward(gradient?: Tensor): void {
    runBackward(this, gradient);
  }

  /** Whether an op producing this tensor should record a tape node. */
  static needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
    return isGradEnabled() && inputs.some((t) => t?.requiresGrad);
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape}]${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`invalid shape [${shape}]: dimensions must be integers >= 0`);
  }
}

/** Resolves one -1 dimension and checks the element count. */
export function resolveShape(shape: Shape, size: number, from: Shape): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free >= 0) {
    const known = out.reduce((a, d, i) => (i === free ? a : a * d), 1);
    out[free] = known === 0 ? 0 : size / known;
  }
  if (!out.every((d) => Number.isInteger(d) && d >= 0) || sizeOf(out) !== size) {
    throw new ShapeError(`cannot reshape [${from}] (${size} values) to [${shape}]`);
  }
  return out;
}
