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
// One invocation per (row, quad) transposes a 4 x 4 block (4 channels x 4 columns): 4 loads along dy's
// rows (one vec4 each when Wo % 4 == 0 and the chunk is aligned: DY_VEC) and 4 vec4 stores. An earlier
// version with one invocation per stored vec4 (4 scalar loads from 4 channel planes each) took as long
// as the weight-gradient GEMM itself on 56x56 layers.
//
// Dispatch: 64 invocations per workgroup along (row, quad) flattened, 2-D past 65535 workgroups.
// Divisions go through f32 (exact below 2^23): lavapipe runs integer division lane by lane.

struct Params {
  blocks: u32, // count Ho W4 GQ
  groups_x: u32, // workgroups per row of the 2-D grid
  og: u32,
  o_total: u32,
  ho: u32,
  wo: u32,
  quads: u32, // OQ
  all_quads: u32, // GQ
  dy_off: u32, // element offset of the chunk's first image in dy
}

@group(0) @binding(0) var<uniform> params: Params;
#if ${DY_VEC}
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> dy: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<f32>>;

// floor(a / b) for a < 2^23.
fn div(a: u32, b: u32) -> u32 {
  return u32((f32(a) + 0.5) / f32(b));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = params;
  let block = (wg.x + wg.y * p.groups_x) * 64u + lid;
  if (block >= p.blocks) { return; }
  let row = div(block, p.all_quads); // (n Ho + oh) W4 + w4
  let gq = block - row * p.all_quads;
  let w4n = (p.wo + 3u) / 4u;
  let nh = div(row, w4n); // n Ho + oh
  let ow0 = (row - nh * w4n) * 4u;
  let n = div(nh, p.ho);
  let oh = nh - n * p.ho;
  let g = div(gq, p.quads);
  let o0 = (gq - g * p.quads) * 4u;
  // v[jj] = channel o0 + jj at columns ow0 .. ow0 + 3
  var v: array<vec4<f32>, 4>;
  for (var jj = 0u; jj < 4u; jj++) {
    if (o0 + jj < p.og) {
      let e = p.dy_off + ((n * p.o_total + g * p.og + o0 + jj) * p.ho + oh) * p.wo + ow0;
#if ${DY_VEC}
      v[jj] = dy[e / 4u];
#else
      let ok = vec4(ow0, ow0 + 1u, ow0 + 2u, ow0 + 3u) < vec4(p.wo);
      let at = min(vec4(e) + vec4(0u, 1u, 2u, 3u), vec4(e + p.wo - 1u - ow0));
      v[jj] = select(vec4(0.0), vec4(dy[at.x], dy[at.y], dy[at.z], dy[at.w]), ok);
#endif
    }
  }
  for (var t = 0u; t < 4u; t++) {
    packed[block * 4u + t] = vec4(v[0][t], v[1][t], v[2][t], v[3][t]);
  }
}
