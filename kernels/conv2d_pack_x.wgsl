// Packs an NCHW activation into channel quads, for the implicit-GEMM conv kernels' gathers:
//
//   packed[((n G + g) CQ + cq) H W + p] = vec4(x[n, g Cg + 4 cq + t, p] for t = 0..3), 0 past Cg
//   CQ = ceil(Cg / 4), p = h W + w
//
// A lane of kernels/conv2d_forward.wgsl then reads the 4 input channels of one pixel as one vec4
// instead of 4 scalars from 4 planes (a storage load with a per-lane address costs the same for a
// vec4 as for a scalar on lavapipe), and channel counts that are not multiples of 4 (a 3-channel
// stem, odd group sizes) read zeros instead of masking.
//
// Each invocation packs 4 consecutive pixels: 4 loads along each channel's row (one vec4 each when
// H W % 4 == 0 and the chunk is aligned: X_VEC) and 4 vec4 stores.
// Dispatch: x = tiles of 64 x 4 pixels, y (+ z folded past 65535) = packed planes (n G + g) CQ + cq.

struct Params {
  hw: u32,
  planes: u32, // count G CQ
  planes_y: u32, // planes per z slice of the grid
  cg: u32,
  cq: u32,
  groups: u32,
  c_total: u32,
  x_off: u32, // element offset of the chunk's first image in x
}

@group(0) @binding(0) var<uniform> params: Params;
#if ${X_VEC}
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = params;
  let plane = wg.y + wg.z * p.planes_y;
  let pix = (wg.x * 64u + lid) * 4u;
  if (plane >= p.planes || pix >= p.hw) { return; }
  let ng = plane / p.cq;
  let c0 = (plane - ng * p.cq) * 4u;
  let n = ng / p.groups;
  let first = p.x_off + (n * p.c_total + (ng - n * p.groups) * p.cg + c0) * p.hw + pix;
  // v[t] = channel c0 + t at pixels pix .. pix + 3
  var v: array<vec4<f32>, 4>;
  for (var t = 0u; t < 4u; t++) {
    if (c0 + t < p.cg) {
      let e = first + t * p.hw;
#if ${X_VEC}
      v[t] = x[e / 4u];
#else
      let last = first - pix + p.hw - 1u + t * p.hw; // the plane's last pixel: reads past it are never stored
      v[t] = vec4(x[e], x[min(e + 1u, last)], x[min(e + 2u, last)], x[min(e + 3u, last)]);
#endif
    }
  }
  for (var k = 0u; k < 4u && pix + k < p.hw; k++) {
    packed[plane * p.hw + pix + k] = vec4(v[0][k], v[1][k], v[2][k], v[3][k]);
  }
}
