// Folds columns back into an image (col2im), for the input gradient of convolutions with few input
// channels (a 3-channel stem), whose implicit GEMM would leave most columns of a subgroup empty.
// col = W^T dy comes from the GEMM of kernels/matmul_subgroup.wgsl, one batch chunk at a time; each
// input pixel sums the column entries of the kernel positions that reach it.
//
//   dx[n, c, h, w] = sum over (i, j) with h + pt - i dh = oh sh, w + pl - j dw = ow sw, inside the output,
//                    of col[n, (c kH + i) kW + j, oh Wo + ow]
//
// Dispatch: x = tiles of 64 pixels along w, y (+ z folded past 65535) = image rows (n, c, h).
// Integer division has no SIMD instruction on x86, so lavapipe runs it lane by lane: divisions here
// go through f32 (exact below 2^23).

struct Params {
  rows: u32, // count C H
  c: u32,
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
  rows_y: u32,
  dx_off: u32, // element offset of the chunk's first image in dx
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> col: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

// floor(a / b) for a < 2^23.
fn div(a: u32, b: u32) -> u32 {
  return u32((f32(a) + 0.5) / f32(b));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = params;
  let row = wg.y + wg.z * p.rows_y;
  let x = wg.x * 64u + lid;
  if (row >= p.rows || x >= p.w) { return; }
  let nc = div(row, p.h); // n C + c
  let y = i32(row - nc * p.h);
  let plane = p.ho * p.wo;
  let col_nc = nc * p.kh * p.kw * plane;
  var acc = 0.0;
  for (var i = 0u; i < p.kh; i++) {
    let th = y + p.pt - i32(i) * p.dh; // = oh sh when this kernel row reaches the pixel
    if (th < 0) { break; }
    let oh = div(u32(th), u32(p.sh));
    if (i32(oh) * p.sh != th || oh >= p.ho) { continue; }
    for (var j = 0u; j < p.kw; j++) {
      let tw = i32(x) + p.pl - i32(j) * p.dw;
      if (tw < 0) { break; }
      let ow = div(u32(tw), u32(p.sw));
      if (i32(ow) * p.sw != tw || ow >= p.wo) { continue; }
      acc += col[col_nc + (i * p.kw + j) * plane + oh * p.wo + ow];
    }
  }
  dx[p.dx_off + row * p.w + u32(x)] = acc;
}
