// Elementwise ops: unary maps, scalar variants and broadcasting binary ops, each with its derivative.
// Kernels: kernels/unary.wgsl, kernels/binary.wgsl. Reference: test/reference/elementwise.ts.
import unarySource from '../../kernels/unary.wgsl';
import binarySource from '../../kernels/binary.wgsl';
import { floats, getBackwardMode, type OpExport } from '../autograd.ts';
import { ShapeError } from '../errors.ts';
import { f32, registerKernel, rt } from '../runtime.ts';
import { Tensor, type Shape } from '../tensor.ts';
import { sumTo } from './reduce.ts';

registerKernel('unary', unarySource);
registerKernel('binary', binarySource);

const WG = 256;
const MAX_RANK = 8;
/** Elements per invocation in the elementwise kernels. */
export const PER_THREAD = 4;

/** Workgroups covering n threads of WG lanes, folded into 2-D past the per-dimension limit; and the row length. */
export function grid(n: number, wg = WG): { workgroups: [number, number]; row: number } {
  const groups = Math.max(1, Math.ceil(n / wg));
  const maxX = rt().device.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(groups, maxX);
  return { workgroups: [x, Math.ceil(groups / x)], row: x * wg };
}

/** Records out = expr(x) elementwise. `expr` is WGSL in `x` and `alpha`. */
export function mapUnary(x: Tensor, expr: string, alpha = 0, into?: Tensor): Tensor {
  const out = into ?? Tensor.empty(x.shape);
  const { workgroups, row } = grid(Math.ceil(x.size / PER_THREAD));
  rt().dispatch({
    kernel: 'unary',
    spec: { WG, EXPR: expr, PER_THREAD },
    params: [x.size, row, f32(alpha)],
    bindings: [{ buffer: x.buffer }, { buffer: out.buffer }],
    workgroups,
  });
  return out;
}

/** Records out = expr(a, b) elementwise with broadcasting. `expr` is WGSL in `a`, `b` and `alpha`. */
export function mapBinary(a: Tensor, b: Tensor, expr: string, alpha = 0): Tensor {
  const shape = broadcastShapes(a.shape, b.shape);
  const out = Tensor.empty(shape);
  const broadcast = !sameShape(a.shape, shape) || !sameShape(b.shape, shape);
  const { workgroups, row } = grid(Math.ceil(out.size / PER_THREAD));
  const params = [out.size, row, f32(alpha), shape.length];
  if (broadcast) {
    if (shape.length > MAX_RANK) throw new ShapeError(`broadcasting supports at most ${MAX_RANK} dims, got [${shape}]`);
    const pad = (v: number[]) => [...v, ...new Array(MAX_RANK - v.length).fill(0)];
    params.push(...pad([...shape]), ...pad(broadcastStrides(a.shape, shape)), ...pad(broadcastStrides(b.shape, shape)));
  }
  rt().dispatch({
    kernel: 'binary',
    spec: { WG, EXPR: expr, BROADCAST: broadcast, PER_THREAD },
    params,
    bindings: [{ buffer: a.buffer }, { buffer: b.buffer }, { buffer: out.buffer }],
    workgroups,
  });
  return out;
}

// ---- unary ops ----

/**
 * A unary op with its derivative: `grad` maps (g = upstream gradient, x = input, y = output) to dx;
 * `onnx` is its ONNX form.
 */
function unaryOp(
  name: string,
  expr: string,
  alpha: number,
  x: Tensor,
  grad: (g: Tensor, x: Tensor, y: Tensor) => Tensor,
  onnx: OpExport,
): Tensor {
  const y = mapUnary(x, expr, alpha);
  if (Tensor.needsGrad(x)) {
    y.requiresGrad = true;
    y.gradFn = { op: name, inputs: [x], backward: (g) => [grad(g, x, y)], export: onnx };
  }
  return y;
}

/** ONNX form of `x <op> s` for a scalar s: the op with a constant. */
const withScalar = (type: string, s: number): OpExport => ({ type, inputs: [0, floats([s], [])] });

export const neg = (x: Tensor) => unaryOp('neg', '-x', 0, x, (g) => mapUnary(g, '-x'), { type: 'Neg' });

export const relu = (x: Tensor) =>
  unaryOp('relu', 'max(x, 0.0)', 0, x, (g, input) =>
    getBackwardMode() === 'guided'
      ? mapBinary(g, input, 'select(0.0, a, b > 0.0 && a > 0.0)')
      : mapBinary(g, input, 'select(0.0, a, b > 0.0)'),
    { type: 'Relu' },
  );

export const exp = (x: Tensor) => unaryOp('exp', 'exp(x)', 0, x, (g, _x, y) => mapBinary(g, y, 'a * b'), { type: 'Exp' });

export const log = (x: Tensor) => unaryOp('log', 'log(x)', 0, x, (g, input) => mapBinary(g, input, 'a / b'), { type: 'Log' });

export const sqrt = (x: Tensor) => unaryOp('sqrt', 'sqrt(x)', 0, x, (g, _x, y) => mapBinary(g, y, '0.5 * a / b'), { type: 'Sqrt' });

export const abs = (x: Tensor) => unaryOp('abs', 'abs(x)', 0, x, (g, input) => mapBinary(g, input, 'a * sign(b)'), { type: 'Abs' });

export const sigmoid = (x: Tensor) =>
  unaryOp('sigmoid', '1.0 / (1.0 + exp(-x))', 0, x, (g, _x, y) => mapBinary(g, y, 'a * b * (1.0 - b)'), { type: 'Sigmoid' });

export const tanh = (x: Tensor) =>
  unaryOp('tanh', 'tanh(x)', 0, x, (g, _x, y) => mapBinary(g, y, 'a * (1.0 - b * b)'), { type: 'Tanh' });

export const addScalar = (x: Tensor, s: number) => unaryOp('addScalar', 'x + alpha', s, x, (g) => g.detach(), withScalar('Add', s));

export const mulScalar = (x: Tensor, s: number) =>
  unaryOp('mulScalar', 'x * alpha', s, x, (g) => mapUnary(g, 'x * alpha', s), withScalar('Mul', s));

/** x^p for a scalar p (x > 0 where p is not an integer, as in PyTorch). */
export const powScalar = (x: Tensor, p: number) =>
  unaryOp('powScalar', powExpr('x'), p, x, (g, input) => mapBinary(g, input, `a * alpha * ${powExpr('b', -1)}`, p), withScalar('Pow', p));

/** WGSL for v^alpha (or v^(alpha + shift)) that is correct for negative v and integer exponents. */
function powExpr(v: string, shift = 0): string {
  const e = shift ? `(alpha + ${shift}.0)` : 'alpha';
  return `select(pow(abs(${v}), ${e}) * select(1.0, -1.0, fract(${e} * 0.5) != 0.0 && fract(${e}) == 0.0), pow(${v}, ${e}), ${v} >= 0.0)`;
}

// ---- binary ops with broadcasting ----

/** A broadcasting binary op: `grads` maps the upstream gradient to (da, db) before reduction; `type` is its ONNX op. */
function binaryOp(
  name: string,
  expr: string,
  a: Tensor,
  b: Tensor,
  grads: (g: Tensor) => [Tensor | null, Tensor | null],
  type: string,
): Tensor {
  const y = mapBinary(a, b, expr);
  if (Tensor.needsGrad(a, b)) {
    y.requiresGrad = true;
    y.gradFn = {
      op: name,
      inputs: [a, b],
      backward: (g) => {
        const [ga, gb] = grads(g);
        return [ga && reduceTo(ga, a.shape), gb && reduceTo(gb, b.shape)];
      },
      export: { type },
    };
  }
  return y;
}

export const add = (a: Tensor, b: Tensor) => binaryOp('add', 'a + b', a, b, (g) => [g.detach(), g.detach()], 'Add');

export const sub = (a: Tensor, b: Tensor) => binaryOp('sub', 'a - b', a, b, (g) => [g.detach(), mapUnary(g, '-x')], 'Sub');

export const mul = (a: Tensor, b: Tensor) =>
  binaryOp('mul', 'a * b', a, b, (g) => [
    a.requiresGrad ? mapBinary(g, b, 'a * b') : null,
    b.requiresGrad ? mapBinary(g, a, 'a * b') : null,
  ], 'Mul');

export const div = (a: Tensor, b: Tensor) =>
  binaryOp('div', 'a / b', a, b, (g) => {
    const ga = a.requiresGrad ? mapBinary(g, b, 'a / b') : null;
    let gb: Tensor | null = null;
    if (b.requiresGrad) {
      const q = mapBinary(a, b, 'a / (b * b)');
      gb = mapBinary(g, q, '-a * b');
      q.dispose();
    }
    return [ga, gb];
  }, 'Div');

/** Elementwise maximum; on ties the gradient is split evenly between the inputs, as in PyTorch. */
export const maximum = (a: Tensor, b: Tensor) =>
  binaryOp('maximum', 'max(a, b)', a, b, (g) => {
    const aWins = mapBinary(a, b, 'select(select(0.0, 1.0, a > b), 0.5, a == b)');
    const ga = mapBinary(g, aWins, 'a * b');
    const gb = mapBinary(g, aWins, 'a * (1.0 - b)');
    aWins.dispose();
    return [ga, gb];
  }, 'Max');

/** Sums a broadcast gradient back to an input's shape (disposing the full-size one). */
function reduceTo(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const reduced = sumTo(g, shape);
  g.dispose();
  return reduced;
}

// ---- shape helpers ----

export function broadcastShapes(a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`shapes [${a}] and [${b}] cannot be broadcast together (dim ${i}: ${da} vs ${db})`);
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides of `shape` read as `target` (right-aligned), 0 along broadcast dims. */
function broadcastStrides(shape: Shape, target: Shape): number[] {
  const strides = new Array(target.length).fill(0);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const t = target.length - shape.length + i;
    strides[t] = shape[i] === 1 ? 0 : stride;
    stride *= shape[i];
  }
  return strides;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
