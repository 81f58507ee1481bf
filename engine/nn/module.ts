// Module: the tree a model is built from, with PyTorch's names for every sub-module, parameter and
// buffer, so that stateDict() keys are torchvision's state_dict keys and weight files load by name.
//
// Parameters and buffers are declared with their shapes in the constructor and allocated later by
// initialize(seed, rule). So a model built without initialize() (the models' `meta` option) knows all
// its names, shapes and counts without touching the GPU, and a model's own init scheme (kaiming,
// truncated normal, ...) draws each tensor once instead of overwriting a default init.
import { keep } from '../autograd.ts';
import { CelgradError, ShapeError, WeightsError } from '../errors.ts';
import { Rng } from '../random.ts';
import { rt } from '../runtime.ts';
import { Tensor, sizeOf } from '../tensor.ts';

/**
 * A model's init scheme (torchvision's `for m in self.modules(): ...` loop): the initial value of
 * parameter or buffer `name` of `module` (at dotted `path`), or undefined for the module's default.
 * `seed` is drawn for this tensor from the model's seed.
 */
export type InitRule = (module: Module<unknown>, name: string, shape: number[], seed: number, path: string) => Tensor | undefined;

/** Runs after a module's forward; returning a tensor replaces the output (PyTorch's forward hooks). */
export type ForwardHook<O = Tensor> = (module: Module<unknown>, input: Tensor, output: O) => O | void;

/** A weights file's tensors by name, as engine/io reads them. */
export type StateDictData = Map<string, { shape: number[]; data: Float32Array }>;

interface Slot {
  readonly kind: 'parameter' | 'buffer';
  readonly shape: number[];
  /** Weight files may lack it (num_batches_tracked: older PyTorch did not save it); loading then keeps the current value. */
  readonly optional: boolean;
  /**
   * Set for a weight that may be stored as row blocks along dim 0 (see Linear): the most bytes per
   * block, or 0 for the device's maxStorageBufferBindingSize.
   */
  readonly maxBlockBytes?: number;
  /** One tensor, or its row blocks; empty until initialize(). */
  blocks: Tensor[];
}

export abstract class Module<Out = Tensor> {
  /** Train mode (batch statistics, dropout) or eval mode. Set with train() / eval(). */
  training = true;
  private readonly childModules = new Map<string, Module<unknown>>();
  private readonly slots = new Map<string, Slot>();
  private readonly forwardHooks: ForwardHook<unknown>[] = [];

  abstract forward(x: Tensor): Out;

  /** Runs forward() and then the forward hooks. Call modules through this, as `module(x)` in PyTorch. */
  call(x: Tensor): Out {
    let y = this.forward(x);
    for (const hook of [...this.forwardHooks]) {
      const replaced = hook(this, x, y);
      if (replaced !== undefined) y = replaced as Out;
    }
    return y;
  }

  // ---- building ----

  /** Registers (or replaces, keeping its place) a sub-module under `name`. */
  addModule<M extends Module<unknown>>(name: string, module: M): M {
    if (name === '' || name.includes('.')) throw new CelgradError(`module name '${name}' must be non-empty and contain no '.'`);
    this.childModules.set(name, module);
    return module;
  }

  protected declareParameter(name: string, shape: number[], options: { maxBlockBytes?: number } = {}): void {
    this.slots.set(name, { kind: 'parameter', shape, optional: false, maxBlockBytes: options.maxBlockBytes, blocks: [] });
  }

  protected declareBuffer(name: string, shape: number[], options: { optional?: boolean } = {}): void {
    this.slots.set(name, { kind: 'buffer', shape, optional: options.optional ?? false, blocks: [] });
  }

  /** The default initial value of one of this module's parameters or buffers (PyTorch's reset_parameters). */
  protected initialValue(name: string, _shape: number[], _seed: number): Tensor {
    throw new CelgradError(`${this.constructor.name} has no default initialisation for '${name}'`);
  }

  /** Seeds the randomness this module draws while running (dropout masks). */
  protected reseed(_seed: number): void {}

  /**
   * Allocates every declared parameter and buffer of this sub-tree, in state_dict order, drawing one
   * seed per tensor from `seed`: the same seed gives the same model. `rule` overrides the defaults.
   */
  initialize(seed: number, rule?: InitRule): this {
    const rng = new Rng(seed);
    for (const [path, m] of this.namedModules()) {
      for (const [name, slot] of m.slots) {
        const s = rng.nextU32();
        const value = rule?.(m, name, slot.shape, s, path) ?? m.initialValue(name, slot.shape, s);
        m.store(name, slot, value);
      }
    }
    return this.reseedRandomness(rng.nextU32());
  }

  /** Restarts every dropout mask stream of this sub-tree from `seed` (e.g. per training step, so a resumed run repeats it). */
  reseedRandomness(seed: number): this {
    const rng = new Rng(seed);
    for (const [, m] of this.namedModules()) m.reseed(rng.nextU32());
    return this;
  }

  private store(name: string, slot: Slot, value: Tensor): void {
    if (!sameShape(value.shape, slot.shape)) {
      throw new ShapeError(`${this.constructor.name}.${name}: initial value has shape [${value.shape}], declared [${slot.shape}]`);
    }
    for (const t of slot.blocks) disposeWithGrad(t);
    const limit = slot.maxBlockBytes === 0 ? rt().device.limits.maxStorageBufferBindingSize : slot.maxBlockBytes;
    if (limit !== undefined && value.byteLength > limit) {
      slot.blocks = splitRows(value, limit, name);
      value.dispose();
    } else slot.blocks = [value];
    for (const t of slot.blocks) {
      keep(t);
      if (slot.kind === 'parameter') t.setRequiresGrad(true);
    }
  }

  // ---- access ----

  /** A declared parameter or buffer of this module as one tensor. */
  protected tensor(name: string): Tensor {
    const blocks = this.blocks(name);
    if (blocks.length !== 1) throw new CelgradError(`${this.constructor.name}.${name} is stored as ${blocks.length} row blocks`);
    return blocks[0];
  }

  /** A declared parameter or buffer as its row blocks (one block unless it is larger than a binding). */
  protected blocks(name: string): Tensor[] {
    const slot = this.slots.get(name);
    if (!slot) throw new CelgradError(`${this.constructor.name} has no parameter or buffer '${name}'`);
    if (slot.blocks.length === 0) {
      throw new CelgradError(
        `${this.constructor.name}.${name} has no value: the model was built with { meta: true } (shapes only) or not initialised; call initialize(seed)`,
      );
    }
    return slot.blocks;
  }

  /** Replaces a buffer's tensor (e.g. after an update computed out of place). */
  protected replaceBuffer(name: string, value: Tensor): void {
    const slot = this.slots.get(name);
    if (slot?.kind !== 'buffer') throw new CelgradError(`${this.constructor.name} has no buffer '${name}'`);
    for (const t of slot.blocks) t.dispose();
    slot.blocks = [keep(value)];
  }

  get hasForwardHooks(): boolean {
    return this.forwardHooks.length > 0;
  }

  /** Direct sub-modules in registration order. */
  *namedChildren(): Generator<[string, Module<unknown>]> {
    yield* this.childModules;
  }

  /** This module and every descendant, depth first, with dotted names ('' for this one), as PyTorch's named_modules(). */
  *namedModules(prefix = ''): Generator<[string, Module<unknown>]> {
    yield [prefix, this];
    for (const [name, child] of this.childModules) yield* child.namedModules(prefix ? `${prefix}.${name}` : name);
  }

  /**
   * Every parameter tensor with its torchvision name. A weight stored as row blocks (see Linear)
   * appears once per block, as `name#0`, `name#1`, ...: each block is a tensor the optimizer updates.
   */
  *namedParameters(): Generator<[string, Tensor]> {
    yield* this.namedTensors('parameter');
  }

  *namedBuffers(): Generator<[string, Tensor]> {
    yield* this.namedTensors('buffer');
  }

  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, t]) => t);
  }

  private *namedTensors(kind: Slot['kind']): Generator<[string, Tensor]> {
    for (const [path, m] of this.namedModules()) {
      for (const [name, slot] of m.slots) {
        if (slot.kind !== kind) continue;
        const key = path ? `${path}.${name}` : name;
        if (slot.blocks.length === 1) yield [key, slot.blocks[0]];
        else for (const [i, t] of slot.blocks.entries()) yield [`${key}#${i}`, t];
      }
    }
  }

  /** Number of parameter values (torchvision's num_params), from the declared shapes: works on meta models. */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const [, m] of this.namedModules()) {
      for (const slot of m.slots.values()) {
        if (slot.kind !== 'parameter') continue;
        if (options.trainableOnly && !slot.blocks.every((t) => t.requiresGrad)) continue;
        n += sizeOf(slot.shape);
      }
    }
    return n;
  }

  /** Every state_dict key with its shape, in state_dict order, from the declared shapes (no GPU needed). */
  stateDictShapes(): Map<string, number[]> {
    const shapes = new Map<string, number[]>();
    for (const [key, , slot] of this.stateEntries()) shapes.set(key, slot.shape);
    return shapes;
  }

  /**
   * The state_dict: parameters then buffers of each module, modules depth first, exactly PyTorch's
   * order and keys. Values are the live tensors, except a weight stored as row blocks, which is
   * gathered into a new tensor of its full shape (dispose it, or call stateDict() inside a scope;
   * readStateDict() reads the blocks without gathering).
   * num_batches_tracked is an f32 tensor of shape [] (int64 in PyTorch).
   */
  stateDict(): Map<string, Tensor> {
    const dict = new Map<string, Tensor>();
    for (const [key, m, slot, name] of this.stateEntries()) {
      const blocks = m.blocks(name);
      dict.set(key, blocks.length === 1 ? blocks[0] : gatherRows(blocks, slot.shape));
    }
    return dict;
  }

  /** The state_dict read back to the CPU, in the form loadStateDict() and engine/io's writers take. */
  async readStateDict(): Promise<StateDictData> {
    const out: StateDictData = new Map();
    for (const [key, m, slot, name] of this.stateEntries()) {
      const data = new Float32Array(sizeOf(slot.shape));
      let offset = 0;
      for (const block of m.blocks(name)) {
        data.set(await block.toArray(), offset);
        offset += block.size;
      }
      out.set(key, { shape: [...slot.shape], data });
    }
    return out;
  }

  private *stateEntries(): Generator<[string, Module<unknown>, Slot, string]> {
    for (const [path, m] of this.namedModules()) {
      for (const kind of ['parameter', 'buffer'] as const) {
        for (const [name, slot] of m.slots) if (slot.kind === kind) yield [path ? `${path}.${name}` : name, m, slot, name];
      }
    }
  }

  /**
   * Copies a state_dict (engine/io's reading of a weights file) into the model. Every missing,
   * unexpected or wrongly shaped key is named in one WeightsError, thrown before anything changes.
   * With strict false, missing and unexpected keys are allowed; wrong shapes never are.
   * num_batches_tracked may be missing (older files): the current value is kept.
   */
  loadStateDict(dict: StateDictData, options: { strict?: boolean } = {}): void {
    const strict = options.strict ?? true;
    const entries = [...this.stateEntries()];
    const expected = new Set(entries.map(([key]) => key));
    const missing = entries.filter(([key, , slot]) => !dict.has(key) && !slot.optional).map(([key]) => key);
    const unexpected = [...dict.keys()].filter((key) => !expected.has(key));
    const misshaped: string[] = [];
    for (const [key, , slot] of entries) {
      const value = dict.get(key);
      if (value && (!sameShape(value.shape, slot.shape) || value.data.length !== sizeOf(slot.shape))) {
        misshaped.push(`${key}: file has [${value.shape}] (${value.data.length} values), model has [${slot.shape}]`);
      }
    }
    const problems = [
      ...(strict && missing.length ? [`missing keys (${missing.length}):\n  ${missing.join('\n  ')}`] : []),
      ...(strict && unexpected.length ? [`unexpected keys (${unexpected.length}):\n  ${unexpected.join('\n  ')}`] : []),
      ...(misshaped.length ? [`wrong shapes (${misshaped.length}):\n  ${misshaped.join('\n  ')}`] : []),
    ];
    if (problems.length) {
      throw new WeightsError(
        `the weights do not match this ${this.constructor.name}; nothing was loaded.\n${problems.join('\n')}\n` +
          'Check that the file was saved from the same architecture and number of classes ' +
          '(load a checkpoint with a different head with strict: false after replaceHead(), or drop the head keys).',
      );
    }
    for (const [key, m, , name] of entries) {
      const value = dict.get(key);
      if (!value) continue;
      let start = 0;
      for (const block of m.blocks(name)) {
        block.write(value.data.subarray(start, start + block.size));
        start += block.size;
      }
    }
  }

  // ---- navigation, modes, freezing, hooks ----

  /** The sub-module at a dotted torchvision name: 'layer3.5.conv2', 'Mixed_5b', 'features.denseblock2'. */
  get(path: string): Module<unknown> {
    let m: Module<unknown> = this;
    let at = '';
    for (const part of path ? path.split('.') : []) {
      const child = m.childModules.get(part);
      if (!child) {
        const known = [...m.childModules.keys()].join(', ') || '(none)';
        throw new CelgradError(`no layer '${path}' in ${this.constructor.name}: ${at ? `'${at}'` : 'the model'} has children ${known}`);
      }
      m = child;
      at = at ? `${at}.${part}` : part;
    }
    return m;
  }

  /** Sets train mode on this sub-tree (eval mode with false). */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Freezes (false) or unfreezes this sub-tree's parameters; frozen ones get no gradient. */
  requiresGrad(flag = true): this {
    for (const [, t] of this.namedParameters()) t.setRequiresGrad(flag);
    return this;
  }

  /**
   * Runs `hook(module, input, output)` after each call of the layer at `layerName` ('' = this module).
   * Remove the handle when done, in a `finally` when the forward pass can throw.
   */
  registerForwardHook<O = Tensor>(layerName: string, hook: ForwardHook<O>): { remove(): void } {
    const hooks = this.get(layerName).forwardHooks;
    const stored = hook as ForwardHook<unknown>;
    hooks.push(stored);
    return {
      remove: () => {
        const i = hooks.indexOf(stored);
        if (i >= 0) hooks.splice(i, 1);
      },
    };
  }

  /** Frees every parameter, buffer and gradient of this sub-tree (back to the buffer pool). */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const slot of m.slots.values()) {
        for (const t of slot.blocks) disposeWithGrad(t);
        slot.blocks = [];
      }
    }
  }
}

/** Runs the children in order; they are named '0', '1', ... unless added by name (DenseNet's `features`). */
export class Sequential extends Module {
  constructor(...layers: Module[]) {
    super();
    layers.forEach((layer, i) => this.addModule(String(i), layer));
  }

  forward(x: Tensor): Tensor {
    for (const [, layer] of this.namedChildren()) x = layer.call(x) as Tensor;
    return x;
  }
}

// ---- row blocks: a weight larger than one storage binding (VGG-16's classifier.0, 392 MiB) ----

function splitRows(t: Tensor, maxBytes: number, name: string): Tensor[] {
  const [rows, ...rest] = t.shape;
  const rowBytes = sizeOf(rest) * 4;
  const perBlock = Math.floor(maxBytes / rowBytes);
  if (perBlock < 1) throw new ShapeError(`'${name}' [${t.shape}]: one row (${rowBytes} bytes) is larger than a block (${maxBytes} bytes)`);
  const blocks: Tensor[] = [];
  for (let start = 0; start < rows; start += perBlock) {
    const n = Math.min(perBlock, rows - start);
    const block = Tensor.empty([n, ...rest]);
    rt().copy(t.buffer, start * rowBytes, block.buffer, 0, n * rowBytes);
    blocks.push(block);
  }
  return blocks;
}

function gatherRows(blocks: Tensor[], shape: number[]): Tensor {
  const out = Tensor.empty(shape);
  let offset = 0;
  for (const b of blocks) {
    rt().copy(b.buffer, 0, out.buffer, offset, b.size * 4);
    offset += b.size * 4;
  }
  return out;
}

function disposeWithGrad(t: Tensor): void {
  t.grad?.dispose();
  t.grad = null;
  t.dispose();
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
