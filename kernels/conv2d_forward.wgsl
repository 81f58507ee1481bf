// conv2d forward as an implicit GEMM (no im2col buffer); x packed in channel quads by
// conv2d_pack_x.wgsl (or, for few-channel stems, in row runs by conv2d_pack_x_runs.wgsl), weight
// packed by conv2d_pack.wgsl.
//
//   y[n, g Og + o, oh, ow] = bias[g Og + o]
//       + sum_{i, j, c} x[n, g Cg + c, oh sh - pt + i dh, ow sw - pl + j dw] * w[g Og + o, c, i, j]
//
// GEMM view: rows = output positions (n, oh, ow) of the batch, columns = output channels of group g,
// k = (i, j, c). The structure is kernels/matmul_subgroup.wgsl's (read its header for why): one
// subgroup per workgroup, each lane owns TM rows x 4 columns; per step of 4 input channels at one
// kernel position the row operand (input pixels, the same for every lane: one vec4 of packed x per
// row) is gathered once per subgroup and shuffled round, and each lane loads its own 4x4 weight block
// (4 output x 4 input channels), the next 64 bytes of the packed weight. Pixels in the padding read
// as 0, and so do the channels that pad Cg to whole quads.
//
// Where packed x sits is in the parameters (in vec4s): x_image per (image, group), x_row and x_col per
// input row and column, x_quad per step of 4 along k. Row runs (engine/ops/conv2d.ts) present a
// few-channel stem as a convolution with kernel width 1 over "channels" (j, c) of a padded image.
//
// Specialisation: SG (lanes), TM, SUBGROUPS (shuffles, else workgroup memory), BIAS, RELU.
// Dispatch: x, y = row tile (2-D past 65535 tiles), z = column tile + col_tiles * group.
#if ${SUBGROUPS}
enable subgroups;
#endif

struct Params {
  rows: u32, // N Ho Wo of this batch chunk
  og: u32, // output channels per group
  cg: u32, // input channels per group
  groups: u32,
  o_total: u32,
  h: u32,
  w: u32,
  ho: u32,
  wo: u32,
  kh: u32,
  kw: u32,
  sh: i32,
  sw: i32,
  dh: i32,
  dw: i32,
  pt: i32,
  pl: i32,
  tiles_x: u32, // row tiles along workgroup x
  col_tiles: u32,
  y_off: u32, // element offset of this batch chunk's first image in y
  x_image: u32, // packed x's layout, see the header
  x_row: u32,
  x_col: u32,
  x_quad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // packed by conv2d_pack_x.wgsl
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
#if ${BIAS}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
#else
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
#endif

#include conv2d_lanes

@compute @workgroup_size(SG)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
#if ${SUBGROUPS}
  @builtin(subgroup_invocation_id) lane: u32,
#else
  @builtin(local_invocation_index) lane: u32,
#endif
) {
  let p = params;
  let row0 = (wg.y * p.tiles_x + wg.x) * TM;
  if (row0 >= p.rows) { return; }
  let g = wg.z / p.col_tiles;
  let col = (wg.z % p.col_tiles) * SG * 4u + lane * 4u; // output channel within the group
  let quads = (p.cg + 3u) / 4u;
  // This lane's weights for k step 0; each step is SG x 4 vec4 further.
  let w_lane = wg.z * p.kh * p.kw * quads * SG * 4u + lane * 4u;

  // The rows this lane gathers: image, and the input pixel under kernel position (0, 0).
  var x_img: array<u32, LOADS>;
  var ih0: array<i32, LOADS>;
  var iw0: array<i32, LOADS>;
  for (var q = 0u; q < LOADS; q++) {
    let r = min(row0 + q * SG + lane, p.rows - 1u);
    let n = r / (p.ho * p.wo);
    let pos = r % (p.ho * p.wo);
    x_img[q] = (n * p.groups + g) * p.x_image;
    ih0[q] = i32(pos / p.wo) * p.sh - p.pt;
    iw0[q] = i32(pos % p.wo) * p.sw - p.pl;
  }

  var acc: array<vec4<f32>, TM>;
  for (var i = 0u; i < p.kh; i++) {
    for (var j = 0u; j < p.kw; j++) {
      // Per gathered row: the pixel's offset in the group's first quad plane, and whether it is inside.
      var x_at: array<u32, LOADS>;
      var inside: array<bool, LOADS>;
      for (var q = 0u; q < LOADS; q++) {
        let ih = ih0[q] + i32(i) * p.dh;
        let iw = iw0[q] + i32(j) * p.dw;
        inside[q] = ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w);
        x_at[q] = x_img[q] + u32(select(0, ih * i32(p.x_row) + iw * i32(p.x_col), inside[q]));
      }
      let w_ij = w_lane + (i * p.kw + j) * quads * SG * 4u;
      for (var c0 = 0u; c0 < p.cg; c0 += 4u) {
        var wk: array<vec4<f32>, 4>; // wk[t] = input channel c0 + t for the lane's 4 output channels
        let w_at = w_ij + c0 * SG; // (c0 / 4) steps of SG x 4 vec4
        for (var t = 0u; t < 4u; t++) {
          wk[t] = w[w_at + t];
        }
        for (var q = 0u; q < LOADS; q++) {
          let mine = select(vec4(0.0), x[x_at[q] + (c0 / 4u) * p.x_quad], inside[q]);
          share(mine, lane);
          for (var s = 0u; s < SG; s++) {
            let v = from_lane(mine, s);
            let r = q * SG + s;
            acc[r] = fma(vec4(v.x), wk[0], fma(vec4(v.y), wk[1], fma(vec4(v.z), wk[2], fma(vec4(v.w), wk[3], acc[r]))));
          }
          shared_done();
        }
      }
    }
  }

  // Rows are consecutive positions: step (n, pos) along instead of dividing per row (x86 has no
  // SIMD integer division, so lavapipe divides lane by lane).
  let pos_count = p.ho * p.wo;
  var n = row0 / pos_count;
  var pos = row0 % pos_count;
  for (var r = 0u; r < TM && row0 + r < p.rows; r++) {
    for (var jj = 0u; jj < 4u; jj++) {
      let o = col + jj;
      if (o < p.og) {
        let oc = g * p.og + o;
        var v = acc[r][jj];
#if ${BIAS}
        v += bias[oc];
#endif
#if ${RELU}
        v = max(v, 0.0);
#endif
        y[p.y_off + (n * p.o_total + oc) * pos_count + pos] = v;
      }
    }
    pos++;
    if (pos == pos_count) {
      pos = 0u;
      n++;
    }
  }
}
