// Reduces over a set of axes. The input is described as kept dims (one output element per kept
// coordinate) and reduced dims (summed over), each with its input strides, up to 4 of each after
// merging contiguous dims. OP: 0 sum (times `scale`, so mean is sum * 1/R), 1 max.
// PER_GROUP: one workgroup per output element (long reductions), else one thread per output.

struct Params {
  n_out: u32,
  row: u32,
  r: u32,
  scale: f32,
  kept_rank: u32,
  red_rank: u32,
  _pad0: u32,
  _pad1: u32,
  kept_shape: vec4<u32>,
  kept_strides: vec4<u32>,
  red_shape: vec4<u32>,
  red_strides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn base_of(o: u32) -> u32 {
  var rest = o;
  var base = 0u;
  for (var d = i32(params.kept_rank) - 1; d >= 0; d--) {
    let size = params.kept_shape[d];
    base += (rest % size) * params.kept_strides[d];
    rest = rest / size;
  }
  return base;
}

fn offset_of(r: u32) -> u32 {
  var rest = r;
  var off = 0u;
  for (var d = i32(params.red_rank) - 1; d >= 0; d--) {
    let size = params.red_shape[d];
    off += (rest % size) * params.red_strides[d];
    rest = rest / size;
  }
  return off;
}

fn combine(acc: f32, v: f32) -> f32 {
#if ${IS_MAX}
  return max(acc, v);
#else
  return acc + v;
#endif
}

fn finish(acc: f32) -> f32 {
#if ${IS_MAX}
  return acc;
#else
  return acc * params.scale;
#endif
}

const INIT: f32 = ${INIT};

#if ${PER_GROUP}
var<workgroup> partial: array<f32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * params.row;
  if (o >= params.n_out) { return; }
  let base = base_of(o);
  var acc = INIT;
  for (var r = lid; r < params.r; r += ${WG}u) {
    acc = combine(acc, src[base + offset_of(r)]);
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var stride = ${WG}u / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { partial[lid] = combine(partial[lid], partial[lid + stride]); }
    workgroupBarrier();
  }
  if (lid == 0u) { dst[o] = finish(partial[0]); }
}
#else
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o = gid.x + gid.y * params.row;
  if (o >= params.n_out) { return; }
  let base = base_of(o);
  var acc = INIT;
  for (var r = 0u; r < params.r; r++) {
    acc = combine(acc, src[base + offset_of(r)]);
  }
  dst[o] = finish(acc);
}
#endif
