// Packs a few-channel input (a 3-channel stem) for kernels/conv2d_forward.wgsl's row-run layout.
// The image is padded on every side as far as the kernel reaches and its channels interleaved within
// each row (row element f = column f / C, channel f mod C), so a kernel row's taps over all channels,
// (j, c) for j < kW, are one run of kW C consecutive elements; a step of the forward kernel takes 4 of
// them at once. Every element f holds the vec4 of the 4 elements from f on, so any such 4 is one
// aligned load:
//
//   packed[(n HP + r) F + f] = vec4(v(n, r, f + t) for t = 0..3)
//   v(n, r, f) = x[n, f mod C, r - pt, f / C - pl], or 0 outside the image
//
// where HP and F are the padded rows and row elements that the kernel reads. Against 4-channel quads
// at each kernel position (a quarter of every step wasted on a 4th channel that is not there), a 7x7
// kernel over 3 channels takes 6 steps of 4 per kernel row instead of 7 (21 taps in 24 slots), with
// no edge tests: the padding is in the data.
//
// Each invocation writes 4 consecutive f from the 7 values they span.
// Dispatch: x = tiles of 64 x 4 elements f, y (+ z folded past 65535) = rows (n, r).

struct Params {
  f_count: u32, // F
  rows: u32, // count HP
  rows_y: u32, // rows per z slice of the grid
  hp: u32,
  c: u32,
  h: u32,
  w: u32,
  pt: i32,
  pl: i32,
  x_off: u32, // element offset of the chunk's first image in x
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = params;
  let row = wg.y + wg.z * p.rows_y;
  let f0 = (wg.x * 64u + lid) * 4u;
  if (row >= p.rows || f0 >= p.f_count) { return; }
  let n = row / p.hp;
  let ih = i32(row - n * p.hp) - p.pt;
  var v: array<f32, 7>;
  if (ih >= 0 && ih < i32(p.h)) {
    // Element f0 + t is column col, channel c: step them along instead of dividing 7 times.
    var col = f0 / p.c;
    var c = f0 - col * p.c;
    let x_row = p.x_off + (n * p.c * p.h + u32(ih)) * p.w;
    for (var t = 0u; t < 7u; t++) {
      let iw = i32(col) - p.pl;
      if (iw >= 0 && iw < i32(p.w)) {
        v[t] = x[x_row + c * p.h * p.w + u32(iw)];
      }
      c++;
      if (c == p.c) {
        c = 0u;
        col++;
      }
    }
  }
  for (var t = 0u; t < 4u && f0 + t < p.f_count; t++) {
    packed[row * p.f_count + f0 + t] = vec4(v[t], v[t + 1u], v[t + 2u], v[t + 3u]);
  }
}
