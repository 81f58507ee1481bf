// conv2d gradient w.r.t. the input as an implicit GEMM (a transposed convolution, no col2im buffer).
//
//   dx[n, g Cg + c, h, w] = sum_{i, j, o} dy[n, g Og + o, oh, ow] * w[g Og + o, c, i, j]
//   over the (i, j) with h + pt - i dh = oh sh and w + pl - j dw = ow sw, 0 <= oh < Ho, 0 <= ow < Wo.
//
// With stride s only 1 in s of the kernel rows (columns) reaches a given input row (column), and which
// ones depends on h mod s. So one dispatch covers one phase (ph, pw) = (h mod sh, w mod sw): every
// pixel in it takes the same kernel positions, the others are skipped for the whole subgroup, and no
// multiply-add is wasted on terms that are zero.
//
// GEMM view: rows = input pixels of the phase (n, hq, wq), columns = input channels of group g, k =
// (i, j, o). Same structure as kernels/conv2d_forward.wgsl: the row operand (dy, the same for every
// lane; one vec4 of 4 output channels per row, dy being packed in channel quads by
// conv2d_pack_x.wgsl) is gathered once per subgroup and shuffled round; each lane loads 4 output
// channels x its 4 input channels of the weight, the next 64 bytes of the weight packed by
// conv2d_pack.wgsl.
//
// Specialisation: SG (lanes), TM, SUBGROUPS (shuffles, else workgroup memory).
// Dispatch: x, y = row tile (2-D past 65535 tiles), z = column tile + col_tiles * group.
#if ${SUBGROUPS}
enable subgroups;
#endif

struct Params {
  rows: u32, // N hp wp: the pixels of this phase in this batch chunk
  cg: u32,
  og: u32,
  c_total: u32,
  groups: u32,
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
  ph: u32, // this phase
  pw: u32,
  hp: u32, // its rows and columns: ceil((h - ph) / sh), ceil((w - pw) / sw)
  wp: u32,
  tiles_x: u32,
  col_tiles: u32,
  dx_off: u32, // element offset of the batch chunk's first image in dx
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dy: array<vec4<f32>>; // packed by conv2d_pack_x.wgsl
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

#include conv2d_lanes

// a / b for a multiple a of b > 0 (a may be negative).
fn exact_div(a: i32, b: i32) -> i32 {
  return select(-((-a) / b), a / b, a >= 0);
}


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
  let col = (wg.z % p.col_tiles) * SG * 4u + lane * 4u; // input channel within the group
  let plane = p.ho * p.wo;
  let quads = (p.og + 3u) / 4u;
  // This lane's weights for k step 0; each step is SG x 4 vec4 further.
  let w_lane = wg.z * p.kh * p.kw * quads * SG * 4u + lane * 4u;

  // The rows this lane gathers: dy offset of (image, group), and the phase coordinates.
  var dy_img: array<u32, LOADS>;
  var hq: array<i32, LOADS>;
  var wq: array<i32, LOADS>;
  for (var q = 0u; q < LOADS; q++) {
    let r = min(row0 + q * SG + lane, p.rows - 1u);
    let n = r / (p.hp * p.wp);
    let pos = r % (p.hp * p.wp);
    dy_img[q] = (n * p.groups + g) * quads * plane;
    hq[q] = i32(pos / p.wp);
    wq[q] = i32(pos % p.wp);
  }

  // The phase rows and columns this tile covers (all of them when it spans images or rows): kernel
  // positions that reach no output from any of its pixels are skipped, e.g. most of a 5x5 kernel
  // whose output is 1x1.
  let last = min(row0 + TM, p.rows) - 1u;
  let per_image = p.hp * p.wp;
  let first_pos = row0 % per_image;
  let last_pos = last % per_image;
  let one_image = row0 / per_image == last / per_image;
  let one_row = one_image && first_pos / p.wp == last_pos / p.wp;
  let hq_lo = select(0, i32(first_pos / p.wp), one_image);
  let hq_hi = select(i32(p.hp) - 1, i32(last_pos / p.wp), one_image);
  let wq_lo = select(0, i32(first_pos % p.wp), one_row);
  let wq_hi = select(i32(p.wp) - 1, i32(last_pos % p.wp), one_row);

  var acc: array<vec4<f32>, TM>;
  for (var i = 0u; i < p.kh; i++) {
    let ti = i32(p.ph) + p.pt - i32(i) * p.dh; // = oh sh - hq sh when this kernel row applies
    if (((ti % p.sh) + p.sh) % p.sh != 0) { continue; }
    let di = exact_div(ti, p.sh);
    if (hq_hi + di < 0 || hq_lo + di >= i32(p.ho)) { continue; }
    for (var j = 0u; j < p.kw; j++) {
      let tj = i32(p.pw) + p.pl - i32(j) * p.dw;
      if (((tj % p.sw) + p.sw) % p.sw != 0) { continue; }
      let dj = exact_div(tj, p.sw);
      if (wq_hi + dj < 0 || wq_lo + dj >= i32(p.wo)) { continue; }
      var dy_at: array<u32, LOADS>;
      var inside: array<bool, LOADS>;
      for (var q = 0u; q < LOADS; q++) {
        let oh = hq[q] + di;
        let ow = wq[q] + dj;
        inside[q] = oh >= 0 && oh < i32(p.ho) && ow >= 0 && ow < i32(p.wo);
        dy_at[q] = dy_img[q] + u32(select(0, oh * i32(p.wo) + ow, inside[q]));
      }
      let w_ij = w_lane + (i * p.kw + j) * quads * SG * 4u;
      for (var o0 = 0u; o0 < p.og; o0 += 4u) {
        var wk: array<vec4<f32>, 4>; // wk[t] = output channel o0 + t, the lane's 4 input channels
        let w_at = w_ij + o0 * SG; // (o0 / 4) steps of SG x 4 vec4
        for (var t = 0u; t < 4u; t++) {
          wk[t] = w[w_at + t];
        }
        for (var q = 0u; q < LOADS; q++) {
          let mine = select(vec4(0.0), dy[dy_at[q] + (o0 / 4u) * plane], inside[q]);
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

  // Rows are consecutive pixels of the phase: step (n, hq, wq) along instead of dividing per row
  // (x86 has no SIMD integer division, so lavapipe divides lane by lane).
  let hw = p.h * p.w;
  var n = row0 / (p.hp * p.wp);
  var y = (row0 % (p.hp * p.wp)) / p.wp;
  var x = row0 % p.wp;
  for (var r = 0u; r < TM && row0 + r < p.rows; r++) {
    let at = (n * p.c_total + g * p.cg + col) * hw + (y * u32(p.sh) + p.ph) * p.w + x * u32(p.sw) + p.pw;
    for (var jj = 0u; jj < 4u; jj++) {
      if (col + jj < p.cg) {
        dx[p.dx_off + at + jj * hw] = acc[r][jj];
      }
    }
    x++;
    if (x == p.wp) {
      x = 0u;
      y++;
      if (y == p.hp) {
        y = 0u;
        n++;
      }
    }
  }
}
