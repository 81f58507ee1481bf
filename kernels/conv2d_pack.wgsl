// Packs an OIHW conv weight into the order in which the lanes of kernels/conv2d_forward.wgsl
// (FOR_INPUT false) or kernels/conv2d_grad_input.wgsl (FOR_INPUT true) read it: per group, column
// tile and k step, SG lanes x 4 vec4. A workgroup then streams one contiguous block per step (512
// bytes with 8 lanes) instead of 32 rows of the weight far apart, which kept the weights of wide
// layers (512 x 512 x 3 x 3) from staying in cache. Zeros pad the channel counts to whole blocks, so
// the GEMM kernels need no masks and always load vec4.
//
//   forward:    block (g, tile, ks = (i kW + j) C4 + c / 4), lane, t -> 4 output channels tile 4 SG + 4 lane + (0..3)
//               at input channel c + t;   C4 = ceil(Cg / 4)
//   grad input: block (g, tile, ks = (i kW + j) O4 + o / 4), lane, t -> output channel o + t at 4 input
//               channels tile 4 SG + 4 lane + (0..3);   O4 = ceil(Og / 4)
//   row runs (RUNS, forward of a few-channel stem, see conv2d_pack_x_runs.wgsl): ks = i R4 + r / 4, the
//               reduction index r = j C + c over a kernel row's taps, 0 past kW C;   R4 = ceil(kW C / 4)
// One invocation per (block, lane): its 4 vec4 (64 per workgroup; a workgroup per block of 32
// invocations made the weight packing 5% of a ResNet-50 training step on lavapipe). Block indices are split with f32
// division (exact below 2^23): lavapipe runs integer division lane by lane.

struct Params {
  blocks: u32,
  groups_x: u32, // workgroups per row of the 2-D grid
  cg: u32,
  og: u32,
  khw: u32,
  col_tiles: u32,
  steps: u32, // k steps per column tile
  quads: u32, // C4 (forward), O4 (grad input) or R4 (row runs)
  kw: u32, // row runs only
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<f32>>;

const SG: u32 = ${SG}u;

// floor(a / b) for a < 2^23.
fn div(a: u32, b: u32) -> u32 {
  return u32((f32(a) + 0.5) / f32(b));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = params;
  let id = (wg.x + wg.y * p.groups_x) * 64u + lid;
  if (id >= p.blocks * SG) { return; }
  let block = id / SG;
  let lane = id % SG;
  let gt = div(block, p.steps); // g col_tiles + tile
  let ks = block - gt * p.steps;
  let g = div(gt, p.col_tiles);
  let tile = gt - g * p.col_tiles;
  let ij = div(ks, p.quads);
  let col = tile * SG * 4u + lane * 4u; // first of the lane's 4 columns
  for (var t = 0u; t < 4u; t++) {
    let k = (ks - ij * p.quads) * 4u + t; // the reduction index within this kernel position
    var out = vec4(0.0);
    for (var jj = 0u; jj < 4u; jj++) {
#if ${FOR_INPUT}
      let o = k;
      let c = col + jj;
#else
      let o = col + jj;
      let c = k;
#endif
#if ${RUNS}
      // ij is the kernel row i; k runs over its taps (j, c).
      let j = k / p.cg;
      if (o < p.og && j < p.kw) {
        out[jj] = w[((g * p.og + o) * p.cg + k - j * p.cg) * p.khw + ij * p.kw + j];
      }
#else
      if (o < p.og && c < p.cg) {
        out[jj] = w[((g * p.og + o) * p.cg + c) * p.khw + ij];
      }
#endif
    }
    packed[id * 4u + t] = out;
  }
}
