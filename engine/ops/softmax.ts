// Softmax, log-softmax and fused softmax cross-entropy, each with its derivative.
// Kernels: kernels/softmax.wgsl, kernels/cross_entropy.wgsl. Reference: test/reference/softmax.ts.
import softmaxSource from '../../kernels/softmax.wgsl';
import crossEntropySource from '../../kernels/cross_entropy.wgsl';
import { ShapeError } from '../errors.ts';
import { f32, i32, registerKernel, rt } from '../runtime.ts';
import { Tensor } from '../tensor.ts';
import { grid } from './elementwise.ts';

registerKernel('softmax', softmaxSource);
registerKernel('cross_entropy', crossEntropySource);

const WG = 256;

/** Records the softmax kernel over `axis` of `shape`: input bindings, then the output. */
function dispatchSoftmax(shape: readonly number[], axis: number, spec: Record<string, boolean>, bindings: Tensor[]): void {
  const len = shape[axis];
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const rows = shape.reduce((a, b) => a * b, 1) / len;
  const { workgroups, row } = grid(rows, WG);
  rt().dispatch({
    kernel: 'softmax',
    spec: { WG, ...spec },
    params: [rows, row, len, inner],
    bindings: bindings.map((t) => ({ buffer: t.buffer })),
    workgroups,
  });
}

function softmaxOp(x: Tensor, axis: number, log: boolean): Tensor {
  const ax = axis < 0 ? axis + x.shape.length : axis;
  if (ax < 0 || ax >= x.shape.length) throw new ShapeError(`softmax: axis ${axis} is out of range for [${x.shape}]`);
  const y = Tensor.empty(x.shape);
  if (y.size === 0) return y;
  dispatchSoftmax(x.shape, ax, { BACKWARD: false, LOG: log }, [x, y]);
  if (Tensor.needsGrad(x)) {
    y.requiresGrad = true;
    y.gradFn = {
      op: log ? 'logSoftmax' : 'softmax',
      inputs: [x],
      backward: (g) => {
        const gx = Tensor.empty(x.shape);
        dispatchSoftmax(x.shape, ax, { BACKWARD: true, LOG: log }, [y, g, gx]);
        return [gx];
      },
      export: { type: log ? 'LogSoftmax' : 'Softmax', attrs: { axis: ax } },
    };
  }
  return y;
}

/** exp(x) / sum(exp(x)) along `axis` (stable for any magnitude). */
export const softmax = (x: Tensor, axis = -1) => softmaxOp(x, axis, false);

/** x - log(sum(exp(x))) along `axis`. */
export const logSoftmax = (x: Tensor, axis = -1) => softmaxOp(x, axis, true);

export interface CrossEntropyOptions {
  /** PyTorch's label_smoothing: the target mixes (1 - s) of the label with s spread evenly over the classes. */
  labelSmoothing?: number;
  /** Rows with this label count neither in the loss nor in the mean (PyTorch's default -100). */
  ignoreIndex?: number;
}

/**
 * torch.nn.functional.cross_entropy(logits [N, C], labels [N]) with mean reduction, fused: one kernel for
 * the loss (a scalar), one for its gradient w.r.t. the logits. Labels are i32 class indices in [0, C)
 * or ignoreIndex; any other label gives an undefined loss (PyTorch raises).
 */
export function crossEntropy(logits: Tensor, labels: Tensor, options: CrossEntropyOptions = {}): Tensor {
  const { labelSmoothing = 0, ignoreIndex = -100 } = options;
  if (logits.shape.length !== 2) throw new ShapeError(`crossEntropy expects logits [N, C], got [${logits.shape}]`);
  const [n, c] = logits.shape;
  if (labels.dtype !== 'i32' || labels.size !== n) {
    throw new ShapeError(`crossEntropy: labels must be i32 [${n}], got ${labels.dtype} [${labels.shape}]`);
  }
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) throw new ShapeError(`crossEntropy: labelSmoothing ${labelSmoothing} is outside [0, 1]`);
  if (n === 0 || c === 0) throw new ShapeError(`crossEntropy: empty logits [${logits.shape}]`);
  const loss = Tensor.empty([]);
  // Per row (max m, log sum exp(x - m)), then the kept-row count: what the backward needs.
  const saved = Tensor.empty([2 * n + 1]);
  const params = [n, c, i32(ignoreIndex), f32(labelSmoothing)];
  rt().dispatch({
    kernel: 'cross_entropy',
    spec: { WG, BACKWARD: false },
    params,
    bindings: [logits, labels, loss, saved].map((t) => ({ buffer: t.buffer })),
    workgroups: [1],
  });
  if (!Tensor.needsGrad(logits)) {
    saved.dispose();
    return loss;
  }
  loss.requiresGrad = true;
  loss.gradFn = {
    op: 'crossEntropy',
    inputs: [logits],
    backward: (g) => {
      const gx = Tensor.empty(logits.shape);
      const { workgroups, row } = grid(gx.size, WG);
      rt().dispatch({
        kernel: 'cross_entropy',
        spec: { WG, BACKWARD: true },
        params: [...params, row],
        bindings: [logits, labels, saved, g, gx].map((t) => ({ buffer: t.buffer })),
        workgroups,
      });
      return [gx];
    },
  };
  return loss;
}
