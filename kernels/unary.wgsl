// out[i] = EXPR(x[i]) for every element. EXPR is a WGSL expression in `x` and the scalar `alpha`.
// A 2-D grid covers tensors beyond 65535 workgroups: i = gid.x + gid.y * row.

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
  let i = gid.x + gid.y * params.row;
  if (i >= params.n) { return; }
  let x = src[i];
  let alpha = params.alpha;
  dst[i] = ${EXPR};
}
