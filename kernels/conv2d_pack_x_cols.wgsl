// Packs x for kernels/conv2d_grad_weight.wgsl: for each kernel column j, the input pixels that 4
// consecutive output columns read, as one vec4 (stride, dilation and padding applied, zeros outside
// the image and past Wo):
//
//   packed[(((j N + n) C + c) H + ih) W4 + w4] = vec4(x[n, c, ih, (4 w4 + t) sw + j dw - pl] for t = 0..3)
//   W4 = ceil(Wo / 4)
//
// A lane of the weight-gradient kernel then reads the row operand of one step as one aligned vec4
// where it gathered 4 scalars with 4 bounds tests (lavapipe runs a per-lane-address load as a loop
// over the lanes, so the gather cost as much as the arithmetic on 7x7 layers). The price is kW / sw
// copies of x, made once per call.
//
// Dispatch: one invocation per packed row (j, n, c, ih), 64 per workgroup, 2-D past 65535 workgroups.

struct Params {
  rows: u32, // kW count C H
  groups_x: u32, // workgroups per row of the grid
  n: u32, // images in this chunk
  c: u32,
  h: u32,
  w: u32,
  wo: u32,
  sw: i32,
  dw: i32,
  pl: i32,
  x_off: u32, // element offset of the chunk's first image in x
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = params;
  let row = (wg.x + wg.y * p.groups_x) * 64u + lid;
  if (row >= p.rows) { return; }
  let jnc = row / p.h; // (j N + n) C + c
  let jn = jnc / p.c;
  let j = jn / p.n;
  let x_row = p.x_off + ((jn - j * p.n) * p.c + jnc - jn * p.c) * p.h * p.w + (row - jnc * p.h) * p.w;
  let w4n = (p.wo + 3u) / 4u;
  let iw0 = i32(j) * p.dw - p.pl;
  for (var w4 = 0u; w4 < w4n; w4++) {
    var v = vec4(0.0);
    for (var t = 0u; t < 4u; t++) {
      let ow = w4 * 4u + t;
      let iw = i32(ow) * p.sw + iw0;
      if (ow < p.wo && iw >= 0 && iw < i32(p.w)) {
        v[t] = x[x_row + u32(iw)];
      }
    }
    packed[row * w4n + w4] = v;
  }
}
