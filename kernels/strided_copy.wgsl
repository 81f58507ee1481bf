// Copies a strided view to a strided view: for every coordinate c of `shape` (up to 8 dims),
// dst[dst_offset + sum c_d * dst_strides_d] = src[src_offset + sum c_d * src_strides_d].
// One kernel serves permute, expand (stride 0), slice, concat (a slice of the output) and their
// backward passes.

struct Params {
  n: u32,
  row: u32,
  rank: u32,
  src_offset: u32,
  dst_offset: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
  shape: array<vec4<u32>, 2>,
  src_strides: array<vec4<u32>, 2>,
  dst_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn dim(v: array<vec4<u32>, 2>, d: u32) -> u32 {
  return v[d / 4u][d % 4u];
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row;
  if (i >= params.n) { return; }
  var rest = i;
  var s = params.src_offset;
  var t = params.dst_offset;
  for (var d = i32(params.rank) - 1; d >= 0; d--) {
    let size = dim(params.shape, u32(d));
    let coord = rest % size;
    rest = rest / size;
    s += coord * dim(params.src_strides, u32(d));
    t += coord * dim(params.dst_strides, u32(d));
  }
  dst[t] = src[s];
}
