// Fully connected layer: y = x @ weight^T + bias (torch.nn.functional.linear), built on matmul and a
// broadcasting add, whose derivative rules give the gradients. Reference: test/reference/linear.ts.
import { ShapeError } from '../errors.ts';
import type { Tensor } from '../tensor.ts';
import { add } from './elementwise.ts';
import { matmul } from './matmul.ts';

/** x [..., in], weight [out, in], bias [out] or null: y [..., out]. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  const inFeatures = x.shape[x.shape.length - 1];
  if (weight.shape.length !== 2 || weight.shape[1] !== inFeatures || (bias && (bias.shape.length !== 1 || bias.shape[0] !== weight.shape[0]))) {
    throw new ShapeError(`linear: x [${x.shape}], weight [${weight.shape}], bias [${bias?.shape ?? 'none'}] do not fit (weight is [out, in])`);
  }
  const xw = matmul(x, weight, { transB: true });
  if (!bias) return xw;
  const y = add(xw, bias);
  // The product is an intermediate: free its buffer now unless autograd still needs it (add's rule does not).
  if (!xw.requiresGrad) xw.dispose();
  return y;
}
