// Angular-margin transforms of the target logit for face-recognition heads, with their derivatives:
// ArcFace's additive margin cos(theta + m) and SphereFace's multiplicative margin psi(theta) with
// lambda annealing. One kernel (kernels/margin.wgsl) transforms the target column of each row, which
// composing elementwise ops would need a one-hot mask for. Reference: test/reference/margin.ts.
import marginSource from '../../kernels/margin.wgsl';
import { ShapeError } from '../errors.ts';
import { f32, registerKernel, rt, type ParamValue } from '../runtime.ts';
import { Tensor } from '../tensor.ts';
import { grid } from './elementwise.ts';

registerKernel('margin', marginSource);

const WG = 256;

function targetTransform(name: string, cosines: Tensor, labels: Tensor, arcface: boolean, params: ParamValue[]): Tensor {
  if (cosines.shape.length !== 2) throw new ShapeError(`${name}: cosines must be [N, C], got [${cosines.shape}]`);
  const [n, c] = cosines.shape;
  if (labels.dtype !== 'i32' || labels.size !== n) throw new ShapeError(`${name}: labels must be i32 [${n}], got ${labels.dtype} [${labels.shape}]`);
  const { workgroups, row } = grid(cosines.size, WG);
  const run = (backward: boolean, bindings: Tensor[]) =>
    rt().dispatch({
      kernel: 'margin',
      spec: { WG, ARCFACE: arcface, BACKWARD: backward },
      params: [cosines.size, c, row, ...params],
      bindings: bindings.map((t) => ({ buffer: t.buffer })),
      workgroups,
    });
  const out = Tensor.empty(cosines.shape);
  run(false, [cosines, labels, out]);
  if (Tensor.needsGrad(cosines)) {
    out.requiresGrad = true;
    out.gradFn = {
      op: name,
      inputs: [cosines],
      backward: (g) => {
        const gx = Tensor.empty(cosines.shape);
        run(true, [cosines, labels, g, gx]);
        return [gx];
      },
    };
  }
  return out;
}

export interface ArcFaceMarginOptions {
  /** The additive angular margin in radians. Default 0.5. */
  m?: number;
  /** Apply the margin only where cos theta > 0 (insightface's easy_margin). Default false. */
  easyMargin?: boolean;
}

/**
 * ArcFace (insightface arcface_torch): in each row r the target cosine c = cosines[r, labels[r]] becomes
 * cos(theta + m) = c cos m - sqrt(1 - c^2) sin m where c > cos(pi - m), else c - m sin(pi - m) (so the
 * logit keeps falling as theta passes pi - m); with easyMargin, cos(theta + m) where c > 0, else c.
 * Other cosines, and rows whose label is outside [0, C), pass unchanged. Not scaled: the head multiplies by s.
 * The target cosine is clamped to [-1 + 1e-7, 1 - 1e-7] first (f32: 1 - 2^-23), gradient 0 outside as
 * torch.clamp: d/dc sqrt(1 - c^2) is infinite at |c| = 1, where the reference's clamp(-1, 1) gives NaN.
 */
export function arcFaceMargin(cosines: Tensor, labels: Tensor, options: ArcFaceMarginOptions = {}): Tensor {
  const { m = 0.5, easyMargin = false } = options;
  const threshold = easyMargin ? 0 : Math.cos(Math.PI - m);
  const shift = easyMargin ? 0 : Math.sin(Math.PI - m) * m;
  return targetTransform('arcFaceMargin', cosines, labels, true, [f32(Math.cos(m)), f32(Math.sin(m)), f32(threshold), f32(shift)]);
}

export interface SphereFaceMarginOptions {
  /** The integer multiplicative margin. Default 4. */
  m?: number;
  /** The annealing weight (see sphereFaceLambda). */
  lambda: number;
}

/**
 * SphereFace's target logit before the |x| factor (clcarwin/sphereface_pytorch AngleLoss): the target
 * cosine c becomes (lambda c + psi(theta)) / (1 + lambda), psi(theta) = (-1)^k cos(m theta) - 2k,
 * k = floor(m theta / pi) in [0, m - 1], cos(m theta) the Chebyshev polynomial T_m(c) (cos 4 theta =
 * 8c^4 - 8c^2 + 1). Other cosines, and rows whose label is outside [0, C), pass unchanged. The target
 * cosine is clamped to [-1, 1] as in the reference (gradient 0 outside); k is piecewise constant, so
 * the derivative is (lambda + (-1)^k T_m'(c)) / (1 + lambda).
 */
export function sphereFaceMargin(cosines: Tensor, labels: Tensor, options: SphereFaceMarginOptions): Tensor {
  const { m = 4, lambda } = options;
  if (!Number.isInteger(m) || m < 1) throw new ShapeError(`sphereFaceMargin: m must be a positive integer, got ${m}`);
  if (!(lambda >= 0)) throw new ShapeError(`sphereFaceMargin: lambda must be >= 0, got ${lambda}`);
  return targetTransform('sphereFaceMargin', cosines, labels, false, [m, f32(lambda)]);
}

/** SphereFace's annealing: lambda = max(5, 1500 / (1 + 0.1 iteration)), the reference's schedule (it counts from 1). */
export function sphereFaceLambda(iteration: number): number {
  return Math.max(5, 1500 / (1 + 0.1 * iteration));
}
