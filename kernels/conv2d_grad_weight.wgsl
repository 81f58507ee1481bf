// conv2d gradient w.r.t. the weight as an implicit GEMM.
//
//   dw[g Og + o, c, i, j] = sum_{n, oh, ow} dy[n, g Og + o, oh, ow] * x[n, g Cg + c, oh sh - pt + i dh, ow sw - pl + j dw]
//
// GEMM view: rows = (c, i, j) of group g (dw's own layout, so a 3-channel stem fills its tiles as well
// as a 512-channel layer), columns = output channels o of group g, k = every output position of the
// batch (a long reduction), walked as image, output row, 4 output columns at a time. Same structure as
// kernels/conv2d_forward.wgsl: the row operand (x at 4 positions: one vec4, the same for every lane)
// is loaded once per subgroup and shuffled round; each lane reads its 4 output channels x 4 positions
// of dy as the next 64-byte block of dy packed by conv2d_pack_dy.wgsl.
//
// x is read as vec4s along output columns, from one of two layouts (X_VEC):
//   - packed by conv2d_pack_x_cols.wgsl: per kernel column j, input row ih, the pixels under 4
//     consecutive output columns (stride, dilation and horizontal padding already applied);
//   - x itself, for a 1x1 convolution with stride 1 and no padding on planes of a multiple of 4
//     pixels, run as one on a 1 x HW image (engine/ops/conv2d.ts): 4 neighbouring pixels.
// Either way a row of x is `x_base + j * x_sj + n * x_sn + c * x_sc + ih * x_sh` vec4s from the start.
// Where one image's packed copy would not fit a storage binding, x is read in place (X_VEC false)
// and each step gathers its 4 pixels one by one, testing each against the image's edges.
//
// dy likewise (DY_DIRECT): packed, or, for the pointwise case read in place, dy itself: then a lane
// reads 4 vec4 along its 4 channels' planes and transposes them in registers, which saves the packing
// pass (it took as long as the GEMM on 64-channel 56x56 layers).
//
// Split k: a layer with few row and column tiles (a 64 x 64 1x1 conv makes 6 workgroups) would leave
// most of the adapter idle through its long reduction, so each y slice of the grid sums its own range of
// 4-position steps into its own copy of dw (engine/ops/conv2d.ts adds the copies up).
//
// Specialisation: SG (lanes), TM, SUBGROUPS (shuffles, else workgroup memory), X_VEC, DY_DIRECT,
// ACCUMULATE (add into dw: batch chunks after the first).
// Dispatch: x = row tile, y = k slice, z = column tile + col_tiles * group.
#if ${SUBGROUPS}
enable subgroups;
#endif

struct Params {
  n: u32, // images in this batch chunk
  cg: u32,
  og: u32,
  o_total: u32,
  h: u32,
  ho: u32,
  wo: u32,
  kh: u32,
  kw: u32,
  sh: i32,
  dh: i32,
  pt: i32,
  col_tiles: u32,
  all_quads: u32, // output channel quads of all groups in packed dy
  dy_off: u32, // DY_DIRECT: the chunk's first image in dy, in vec4s
  slice_steps: u32, // 4-position steps per k slice
  x_base: u32, // x's layout in vec4s: see the header
  x_sj: u32,
  x_sn: u32,
  x_sc: u32,
  x_sh: u32,
  w: u32, // for reading x in place (X_VEC false): x_* are then in elements
  sw: i32,
  dw: i32,
  pl: i32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if ${X_VEC}
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read> dy: array<vec4<f32>>; // packed, or in place (DY_DIRECT)
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

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
  let khw = p.kh * p.kw;
  let rows = p.cg * khw;
  let row0 = wg.x * TM; // row = (c, i, j) of the group, as laid out in dw
  let g = wg.z / p.col_tiles;
  let col = (wg.z % p.col_tiles) * SG * 4u + lane * 4u; // output channel within the group

  // For each row this lane gathers: its x row for image 0 at input row 0, and its kernel row offset
  // (and column offset, reading x in place).
  var x_chan: array<u32, LOADS>;
  var di: array<i32, LOADS>;
  var dj: array<i32, LOADS>;
  for (var q = 0u; q < LOADS; q++) {
    let r = min(row0 + q * SG + lane, rows - 1u);
    let c = r / khw;
    x_chan[q] = p.x_base + (r % p.kw) * p.x_sj + (g * p.cg + c) * p.x_sc;
    di[q] = i32((r / p.kw) % p.kh) * p.dh - p.pt;
    dj[q] = i32(r % p.kw) * p.dw - p.pl;
  }
  // This lane's quad of output channels in packed dy (lanes past the group's edge: garbage, never stored).
  let quads = (p.og + 3u) / 4u;
  let quad = g * quads + min(col / 4u, quads - 1u);
  let w4n = (p.wo + 3u) / 4u;

  // This slice's steps: (n Ho + oh) W4 + w4 in [k_first, k_end).
  let k_first = wg.y * p.slice_steps;
  let k_end = min(k_first + p.slice_steps, p.n * p.ho * w4n);
  var acc: array<vec4<f32>, TM>;
  var k4 = k_first;
  while (k4 < k_end) {
    let nh = k4 / w4n;
    let n = nh / p.ho;
    let oh = nh - n * p.ho;
    let w4_first = k4 - nh * w4n;
    let w4_end = min(w4n, w4_first + (k_end - k4));
    k4 += w4_end - w4_first;
    let dy_row = nh * w4n;
    // Per gathered row: the input row, and whether it is inside.
    var x_row: array<u32, LOADS>;
    var row_in: array<bool, LOADS>;
    for (var q = 0u; q < LOADS; q++) {
      let ih = i32(oh) * p.sh + di[q];
      row_in[q] = ih >= 0 && ih < i32(p.h);
      x_row[q] = x_chan[q] + n * p.x_sn + u32(select(0, ih, row_in[q])) * p.x_sh;
    }
    for (var w4 = w4_first; w4 < w4_end; w4++) {
      var dk: array<vec4<f32>, 4>; // dk[t] = the lane's 4 output channels at output column 4 w4 + t
#if ${DY_DIRECT}
      // Rows of the lane's 4 channels (clamped to the group: lanes past its edge are never stored).
      let plane4 = w4n; // a pointwise plane is one row of Wo / 4 vec4s
      let o0 = g * p.og + min(col, p.og - 1u);
      var rows4: array<vec4<f32>, 4>;
      for (var jj = 0u; jj < 4u; jj++) {
        let o = min(o0 + jj, g * p.og + p.og - 1u);
        rows4[jj] = dy[p.dy_off + (n * p.o_total + o) * plane4 + w4];
      }
      for (var t = 0u; t < 4u; t++) {
        dk[t] = vec4(rows4[0][t], rows4[1][t], rows4[2][t], rows4[3][t]);
      }
#else
      let dy_at = ((dy_row + w4) * p.all_quads + quad) * 4u;
      for (var t = 0u; t < 4u; t++) {
        dk[t] = dy[dy_at + t];
      }
#endif
      for (var q = 0u; q < LOADS; q++) {
#if ${X_VEC}
        // Past Wo, packed x and packed dy both hold zeros.
        let mine = select(vec4(0.0), x[x_row[q] + w4], row_in[q]);
#else
        let ow = vec4(w4 * 4u) + vec4(0u, 1u, 2u, 3u);
        let iw = vec4<i32>(ow) * p.sw + vec4(dj[q]);
        let ok = (ow < vec4(p.wo)) & (iw >= vec4(0)) & (iw < vec4(i32(p.w))) & vec4(row_in[q]);
        let e = vec4(x_row[q]) + vec4<u32>(select(vec4(0), iw, ok));
        let mine = select(vec4(0.0), vec4(x[e.x], x[e.y], x[e.z], x[e.w]), ok);
#endif
        share(mine, lane);
        for (var s = 0u; s < SG; s++) {
          let v = from_lane(mine, s);
          let r = q * SG + s;
          acc[r] = fma(vec4(v.x), dk[0], fma(vec4(v.y), dk[1], fma(vec4(v.z), dk[2], fma(vec4(v.w), dk[3], acc[r]))));
        }
        shared_done();
      }
    }
  }

  for (var r = 0u; r < TM; r++) {
    let row = row0 + r;
    if (row >= rows) { break; }
    for (var jj = 0u; jj < 4u; jj++) {
      let o = col + jj;
      if (o < p.og) {
        let e = (wg.y * p.o_total + g * p.og + o) * rows + row;
#if ${ACCUMULATE}
        dw[e] += acc[r][jj];
#else
        dw[e] = acc[r][jj];
#endif
      }
    }
  }
}
