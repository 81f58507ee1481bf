// Batched C[b] = op(A[b]) * op(B[b]), op = optional transpose, by strides. Each invocation owns a
// TM x TN block of C and accumulates it in registers; no workgroup memory.
// (The portable variant; see matmul_subgroup.wgsl for software adapters.)

struct Params {
  m: u32,
  n: u32,
  k: u32,
  batch: u32,
  // element strides of A along (batch, row i of op(A), col k of op(A)), same for B (k, j), C is contiguous
  a_batch: u32,
  a_row: u32,
  a_col: u32,
  b_batch: u32,
  b_row: u32,
  b_col: u32,
  // element offsets of A, B and C in their bindings
  a_off: u32,
  b_off: u32,
  c_off: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TM: u32 = ${TM}u;
const TN: u32 = ${TN}u;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row0 = gid.y * TM;
  let col0 = gid.x * TN;
  let batch = gid.z;
  if (row0 >= params.m || col0 >= params.n) { return; }
  var acc: array<array<f32, TN>, TM>;
  let a_base = params.a_off + batch * params.a_batch;
  let b_base = params.b_off + batch * params.b_batch;
  for (var kk = 0u; kk < params.k; kk++) {
    var av: array<f32, TM>;
    var bv: array<f32, TN>;
    for (var i = 0u; i < TM; i++) {
      let r = min(row0 + i, params.m - 1u);
      av[i] = a[a_base + r * params.a_row + kk * params.a_col];
    }
    for (var j = 0u; j < TN; j++) {
      let col = min(col0 + j, params.n - 1u);
      bv[j] = b[b_base + kk * params.b_row + col * params.b_col];
    }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) {
        acc[i][j] = fma(av[i], bv[j], acc[i][j]);
      }
    }
  }
  let c_base = params.c_off + batch * params.m * params.n;
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      if (row0 + i < params.m && col0 + j < params.n) {
        c[c_base + (row0 + i) * params.n + col0 + j] = acc[i][j];
      }
    }
  }
}
