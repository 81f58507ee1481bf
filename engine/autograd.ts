// Reverse-mode automatic differentiation on a tape, and scopes that free intermediates.
//
// Each op that sees an input requiring grad attaches a GradNode to its output: the inputs and a
// rule mapping the output's gradient to the inputs' gradients (the rule lives beside the op's
// forward in engine/ops/). backward() orders the graph once, topologically, and walks it in
// reverse, summing gradients where a tensor feeds several consumers (residual adds, Inception's
// branches): each node's rule runs exactly once, never once per path.
import { add } from './ops/elementwise.ts';
import { ShapeError } from './errors.ts';
import type { Tensor } from './tensor.ts';

export interface GradNode {
  /** The op's name, for error messages and debugging. */
  op: string;
  inputs: (Tensor | null)[];
  /** Given d(loss)/d(output), returns d(loss)/d(input) for each input (null where not needed). */
  backward(grad: Tensor): (Tensor | null)[];
  /** The op as ONNX (engine/io/onnx.ts walks the tape to export a model); absent where it has no ONNX form. */
  export?: OpExport;
}

// ---- the tape as an ONNX graph ----

/** An ONNX attribute: an integer, integers, a string, or a float (marked: ONNX types 1 and 1.0 differently). */
export type OnnxAttribute = number | number[] | string | { float: number };

/** A constant input of an exported node (a shape, axes, a scalar), written as an initializer. */
export interface OnnxConstant {
  dtype: 'float' | 'int64';
  dims: number[];
  values: number[];
}

/**
 * What an exported node reads: the op's k-th tape input, a tensor the tape does not hold (batch-norm
 * running statistics), a constant, the output of a nested node, or null for an omitted optional input.
 */
export type OnnxInput = number | Tensor | OnnxConstant | OpExport | null;

/**
 * An op's ONNX form (opset 17): one node whose inputs may be nested nodes (a fused ReLU wraps its
 * batch norm; a transposed matmul operand is a Transpose node).
 */
export interface OpExport {
  type: string;
  attrs?: Record<string, OnnxAttribute>;
  /** Default: the op's tape inputs in order, missing trailing ones (a conv without bias) dropped. */
  inputs?: OnnxInput[];
}

export const int64s = (values: number[], dims = [values.length]): OnnxConstant => ({ dtype: 'int64', dims, values });
export const floats = (values: number[], dims = [values.length]): OnnxConstant => ({ dtype: 'float', dims, values });

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording the tape (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const saved = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = saved;
  }
}

/**
 * How ReLU passes gradients back. 'standard' is the derivative; 'guided' is guided
 * backpropagation (Springenberg et al. 2015): only positive gradients through positive inputs.
 */
export type BackwardMode = 'standard' | 'guided';
let backwardMode: BackwardMode = 'standard';

export function getBackwardMode(): BackwardMode {
  return backwardMode;
}

/** Runs `fn` (which calls backward()) with another ReLU backward rule. */
export function withBackwardMode<T>(mode: BackwardMode, fn: () => T): T {
  const saved = backwardMode;
  backwardMode = mode;
  try {
    return fn();
  } finally {
    backwardMode = saved;
  }
}

// ---- scopes ----

const scopes: Set<Tensor>[] = [];

/** Called by every new tensor: the innermost open scope will free it unless it escapes. */
export function trackInScope(t: Tensor): void {
  scopes[scopes.length - 1]?.add(t);
}

/**
 * Runs `fn`; every tensor created inside is disposed at the end except those returned (a tensor,
 * or tensors inside a returned array or plain object) and those passed to keep(). Memory stays flat
 * across training steps when each step runs in a scope.
 */
export function scope<T>(fn: () => T): T {
  const created = new Set<Tensor>();
  scopes.push(created);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of created) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of created) t.dispose();
    throw new Error('scope(fn): fn returned a promise; use scopeAsync(fn) for async work');
  }
  return closeScope(created, result);
}

/** Frees a closed scope's tensors except those in `result`, which move to the enclosing scope. */
function closeScope<T>(created: Set<Tensor>, result: T): T {
  const escaping = new Set<Tensor>();
  collectTensors(result, escaping);
  for (const t of created) {
    if (escaping.has(t)) trackInScope(t);
    else t.dispose();
  }
  return result;
}

/** The async form of scope(), for steps that await (read-backs). */
export async function scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
  const created = new Set<Tensor>();
  scopes.push(created);
  let result: T;
  try {
    result = await fn();
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  } finally {
    // An async scope must be the innermost when it ends; anything else is a nesting bug.
    if (scopes[scopes.length - 1] !== created) throw new Error('scopeAsync: scopes were closed out of order');
    scopes.pop();
  }
  return closeScope(created, result);
}

/** Removes `t` from every open scope, so it outlives them (parameters, gradients, state). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collectTensors(value: unknown, into: Set<Tensor>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 3) return;
  if (isTensor(value)) {
    into.add(value);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collectTensors(v, into, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collectTensors(v, into, depth + 1);
  }
}

function isTensor(value: object): value is Tensor {
  return 'gradFn' in value && 'shape' in value && 'dispose' in value;
}

// ---- backward ----

/** Reverse-mode autodiff from `root`. Leaf gradients accumulate into .grad (kept out of scopes). */
export function backward(root: Tensor, gradient?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error('backward(): the tensor does not require grad (no input of the computation had requiresGrad set)');
  }
  if (!gradient && root.size !== 1) {
    throw new ShapeError(`backward() without a gradient needs a scalar, got shape [${root.shape}]; pass the upstream gradient`);
  }
  if (gradient && gradient.size !== root.size) {
    throw new ShapeError(`backward(): gradient shape [${gradient.shape}] does not match the tensor's [${root.shape}]`);
  }
  // Gradient computations are never themselves recorded (no double backward).
  noGrad(() => backwardPass(root, gradient));
}

function backwardPass(root: Tensor, gradient?: Tensor): void {
  const order = topologicalOrder(root);
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, gradient ? gradient.view(root.shape) : onesLike(root));

  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
    let g = grads.get(t);
    if (!g) continue;
    grads.delete(t);
    for (const hook of t.hooks) {
      const replaced = hook(g);
      if (replaced && replaced !== g) {
        g.dispose();
        g = replaced;
      }
    }
    const node = t.gradFn;
    if (!node) {
      accumulateInto(t, g);
      continue;
    }
    if (t.retainsGrad) accumulateInto(t, g.detach());
    const inputGrads = node.backward(g);
    node.inputs.forEach((input, k) => {
      const ig = inputGrads[k];
      if (!input || !ig || !input.requiresGrad) {
        if (ig && ig !== g) ig.dispose();
        return;
      }
      if (ig.size !== input.size) {
        throw new ShapeError(`${node.op} backward produced a gradient of shape [${ig.shape}] for an input of shape [${input.shape}]`);
      }
      const previous = grads.get(input);
      if (previous) {
        grads.set(input, add(previous, ig));
        previous.dispose();
        ig.dispose();
      } else grads.set(input, ig === g ? g.detach() : ig);
    });
    g.dispose();
  }
}

function accumulateInto(t: Tensor, g: Tensor): void {
  const shaped = g.shape.length === t.shape.length && g.shape.every((d, i) => d === t.shape[i]) ? g : g.view(t.shape);
  if (shaped !== g) g.dispose();
  if (t.grad) {
    const sum = add(t.grad, shaped);
    t.grad.dispose();
    shaped.dispose();
    t.grad = keep(sum);
  } else t.grad = keep(shaped);
}

/** Tensors reachable from root through gradFn inputs that require grad, inputs before outputs. */
function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  visited.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, next] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (next < inputs.length) {
      top[1]++;
      const input = inputs[next];
      if (input && input.requiresGrad && !visited.has(input)) {
        visited.add(input);
        stack.push([input, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

function onesLike(t: Tensor): Tensor {
  // Imported lazily through the class to keep this module free of a value import cycle.
  const ctor = t.constructor as typeof Tensor;
  return ctor.ones(t.shape);
}
