// out[i] = EXPR(x[i]) for every element. EXPR is a WGSL expression in `x` and the scalar `alpha`.
// Each invocation maps PER_THREAD consecutive elements (fewer invocations: 2-3x faster on lavapipe).
// A 2-D grid covers tensors beyond 65535 workgroups: t = gid.x + gid.y * row.

struct Params {
  n: u32,
  row: u32,
  alpha: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let first = (gid.x + gid.y * params.row) * ${PER_THREAD}u;
  let alpha = params.alpha;
  for (var i = first; i < min(first + ${PER_THREAD}u, params.n); i++) {
    let x = src[i];
    dst[i] = ${EXPR};
  }
}
