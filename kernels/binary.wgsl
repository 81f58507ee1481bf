// out[i] = EXPR(a[ia], b[ib]) with numpy broadcasting. EXPR is a WGSL expression in `a`, `b` and the
// scalar `alpha`. When BROADCAST is false both inputs have the output's shape (ia = ib = i);
// otherwise each output index is decomposed over up to 6 dims and mapped through per-input strides
// (0 along broadcast dims). Each invocation maps PER_THREAD consecutive elements.

struct Params {
  n: u32,
  row: u32,
  alpha: f32,
  rank: u32,
  shape: array<vec4<u32>, 2>,
  a_strides: array<vec4<u32>, 2>,
  b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn dim(v: array<vec4<u32>, 2>, d: u32) -> u32 {
  return v[d / 4u][d % 4u];
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let first = (gid.x + gid.y * params.row) * ${PER_THREAD}u;
  let alpha = params.alpha;
  for (var i = first; i < min(first + ${PER_THREAD}u, params.n); i++) {
#if ${BROADCAST}
  var rest = i;
  var ia = 0u;
  var ib = 0u;
  for (var d = i32(params.rank) - 1; d >= 0; d--) {
    let size = dim(params.shape, u32(d));
    let coord = rest % size;
    rest = rest / size;
    ia += coord * dim(params.a_strides, u32(d));
    ib += coord * dim(params.b_strides, u32(d));
  }
  let a = lhs[ia];
  let b = rhs[ib];
#else
  let a = lhs[i];
  let b = rhs[i];
#endif
  dst[i] = ${EXPR};
  }
}
