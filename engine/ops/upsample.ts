// Bilinear upsampling (F.interpolate(mode='bilinear', align_corners=False)), any output size, with
// its derivative in gather form. Kernel: kernels/upsample.wgsl. Reference: test/reference/upsample.ts.
import upsampleSource from '../../kernels/upsample.wgsl';
import { int64s } from '../autograd.ts';
import { ShapeError } from '../errors.ts';
import { f32, registerKernel, rt } from '../runtime.ts';
import { Tensor } from '../tensor.ts';
import { grid } from './elementwise.ts';

registerKernel('upsample', upsampleSource);

const WG = 256;

/** Resizes x [N, C, H, W] to [N, C, oh, ow] bilinearly (align_corners = false; up or down). */
export function upsampleBilinear(x: Tensor, [oh, ow]: [number, number]): Tensor {
  if (x.shape.length !== 4) throw new ShapeError(`upsampleBilinear expects x [N, C, H, W], got [${x.shape}]`);
  const [n, c, h, w] = x.shape;
  if (!(Number.isInteger(oh) && Number.isInteger(ow) && oh > 0 && ow > 0 && h > 0 && w > 0)) {
    throw new ShapeError(`upsampleBilinear: cannot resize [${x.shape}] to ${oh}x${ow}`);
  }
  // PyTorch's scale is input / output computed in the tensor's precision (f32).
  const params = [h, w, oh, ow, f32(Math.fround(h / oh)), f32(Math.fround(w / ow))];
  const run = (src: Tensor, dst: Tensor, backward: boolean) => {
    const { workgroups, row } = grid(dst.size, WG);
    rt().dispatch({
      kernel: 'upsample',
      spec: { WG, BACKWARD: backward },
      params: [dst.size, row, ...params],
      bindings: [{ buffer: src.buffer }, { buffer: dst.buffer }],
      workgroups,
    });
    return dst;
  };
  const y = run(x, Tensor.empty([n, c, oh, ow]), false);
  if (Tensor.needsGrad(x)) {
    y.requiresGrad = true;
    y.gradFn = {
      op: 'upsampleBilinear',
      inputs: [x],
      backward: (g) => [run(g, Tensor.empty(x.shape), true)],
      // Resize(X, roi, scales, sizes): half_pixel is align_corners = false.
      export: {
        type: 'Resize',
        attrs: { mode: 'linear', coordinate_transformation_mode: 'half_pixel' },
        inputs: [0, null, null, int64s([n, c, oh, ow])],
      },
    };
  }
  return y;
}
