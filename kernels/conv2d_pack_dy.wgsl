// Packs dy for kernels/conv2d_grad_weight.wgsl: per image, output row and 4 output columns, the
// output channels in quads, each quad as 4 vec4 (one per column, holding the 4 channels). A lane of
// the weight-gradient kernel then reads its 4 channels x 4 positions as one contiguous 64-byte block,
// and a group of lanes reads consecutive blocks: one sequential stream, where dy's NCHW layout gave
// 4 streams per lane (32 per workgroup) and scalar loads wherever Wo % 4 != 0. Zeros pad Wo to a
// multiple of 4 and each group's channels to whole quads, so the GEMM needs no masks.
//
//   packed[((((n Ho + oh) W4 + w4) GQ + g OQ + q) 4 + t] = dy[n, g Og + 4 q + (0..3), oh, 4 w4 + t]
//   W4 = ceil(Wo / 4), OQ = ceil(Og / 4), GQ = groups OQ
//
// Dispatch: x = tiles of 64 vec4 along (quad, t), y (+ z folded past 65535) = rows (n, oh, w4).
// Divisions go through f32 (exact below 2^23): lavapipe runs integer division lane by lane.

struct Params {
  rows: u32, // count Ho W4
  rows_y: u32, // rows per z slice of the grid
  og: u32,
  o_total: u32,
  ho: u32,
  wo: u32,
  quads: u32, // OQ
  all_quads: u32, // GQ
  dy_off: u32, // element offset of the chunk's first image in dy
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<f32>>;

// floor(a / b) for a < 2^23.
fn div(a: u32, b: u32) -> u32 {
  return u32((f32(a) + 0.5) / f32(b));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = params;
  let row = wg.y + wg.z * p.rows_y;
  let i = wg.x * 64u + lid;
  if (row >= p.rows || i >= p.all_quads * 4u) { return; }
  let w4n = (p.wo + 3u) / 4u;
  let nh = div(row, w4n); // n Ho + oh
  let ow = (row - nh * w4n) * 4u + i % 4u;
  let n = div(nh, p.ho);
  let oh = nh - n * p.ho;
  let gq = i / 4u;
  let g = div(gq, p.quads);
  let o0 = (gq - g * p.quads) * 4u;
  var v = vec4(0.0);
  if (ow < p.wo) {
    for (var jj = 0u; jj < 4u; jj++) {
      if (o0 + jj < p.og) {
        v[jj] = dy[p.dy_off + ((n * p.o_total + g * p.og + o0 + jj) * p.ho + oh) * p.wo + ow];
      }
    }
  }
  packed[row * p.all_quads * 4u + i] = v;
}
