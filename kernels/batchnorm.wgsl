// Batch normalisation over NCHW, forward (BACKWARD false) and backward (BACKWARD true).
//
// Dispatch: one workgroup per channel c (workgroups [C]). Its WG lanes stride over the channel's
// M = N*HW values with an (n, hw) cursor advanced by additions, so the loops divide nothing (integer
// division is slow on lavapipe). Per-channel values (mean, scale, ...) live in registers: the
// per-element work is one or two loads and a store.
// Variants: VEC4 (when HW % 4 == 0) moves 4 values per load: on lavapipe a load costs the same
// whatever its width, and loads are the bottleneck here. SUBGROUP (software adapters): the workgroup
// is one subgroup and sums are subgroupAdd, with no barriers (a barrier on lavapipe switches between
// all the workgroup's lane groups); otherwise sums end in a workgroup tree over `scratch`.
//
// Forward, TRAINING: two passes over the channel: the mean (summing x - x0, x0 near the channel's first
// values, so the terms stay small when |mean| >> std), then the mean squared deviation (where a one-pass
// sum of squares would cancel catastrophically); the running stats are updated in place (running_var
// takes the unbiased variance, var * M / (M - 1), as PyTorch does).
// Forward, eval: the running statistics. Either way a last pass writes y = (x - mean) * scale + b,
// scale = w * invstd (then ReLU when RELU) and `saved` gets the mean and invstd used:
// [mean[0..C), invstd[0..C)].
//
// Backward: one pass sums g and g * xhat (g masked by y > 0 when RELU, y recomputed by the same
// affine() as the forward, so the mask is identical), giving grad_bias and grad_weight; a second
// writes grad_x:
//   TRAINING: w * invstd * (g - sum(g) / M - xhat * sum(g * xhat) / M)   (the batch stats depend on x)
//   eval:     w * invstd * g                                            (the running stats do not)
#if ${SUBGROUP}
enable subgroups;
#endif

#if ${VEC4}
alias V = vec4<f32>;
const VEC = 4u;
fn total(v: V) -> f32 {
  return v.x + v.y + v.z + v.w;
}
#else
alias V = f32;
const VEC = 1u;
fn total(v: V) -> f32 {
  return v;
}
#endif

struct Params {
  n: u32,
  c: u32,
  hw: u32, // in units of V
  eps: f32,
  momentum: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
#if ${BACKWARD}
@group(0) @binding(4) var<storage, read> saved: array<f32>;
@group(0) @binding(5) var<storage, read> grad_y: array<V>;
@group(0) @binding(6) var<storage, read_write> grad_x: array<V>;
@group(0) @binding(7) var<storage, read_write> grad_weight: array<f32>;
@group(0) @binding(8) var<storage, read_write> grad_bias: array<f32>;
#else
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<V>;
@group(0) @binding(7) var<storage, read_write> saved: array<f32>;
#endif

// Position (n, hw) in the channel; lane `lid` visits lid, lid + WG, lid + 2 WG, ...
struct Cursor {
  n: u32,
  hw: u32,
}

fn first(lid: u32) -> Cursor {
  return Cursor(lid / params.hw, lid % params.hw);
}

fn next(p: Cursor) -> Cursor {
  var q = Cursor(p.n + ${WG}u / params.hw, p.hw + ${WG}u % params.hw);
  if (q.hw >= params.hw) {
    q.hw -= params.hw;
    q.n += 1u;
  }
  return q;
}

fn index(p: Cursor, c: u32) -> u32 {
  return (p.n * params.c + c) * params.hw + p.hw;
}

#if ${SUBGROUP}
// The workgroup's total of v (every lane gets it): the workgroup is one subgroup.
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
  return subgroupAdd(v);
}
#else
var<workgroup> scratch: array<vec2<f32>, ${WG}>;

// The workgroup's total of v (every lane gets it). Called in uniform control flow.
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
  scratch[lid] = v;
  for (var stride = ${WG}u / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) {
      scratch[lid] += scratch[lid + stride];
    }
  }
  workgroupBarrier();
  let total = scratch[0];
  workgroupBarrier(); // every lane has read the total before the scratch is reused
  return total;
}
#endif

// The forward's output before ReLU. Subtracting the mean first keeps it exact when |mean| >> std, where
// the folded form x * scale + (b - mean * scale) would cancel.
fn affine(v: V, mean: f32, scale: f32, b: f32) -> V {
  return (v - mean) * scale + b;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let m = f32(params.n * params.hw * VEC);
#if ${BACKWARD}
  let mean = saved[c];
  let invstd = saved[params.c + c];
  let scale = weight[c] * invstd;
  let b = bias[c];
  var acc = vec2<f32>(0.0);
  for (var p = first(lid); p.n < params.n; p = next(p)) {
    let i = index(p, c);
    let v = x[i];
#if ${RELU}
    let g = select(V(0.0), grad_y[i], affine(v, mean, scale, b) > V(0.0));
#else
    let g = grad_y[i];
#endif
    acc += vec2<f32>(total(g), total(g * (v - mean) * invstd));
  }
  let sums = workgroup_sum(lid, acc);
  if (lid == 0u) {
    grad_bias[c] = sums.x;
    grad_weight[c] = sums.y;
  }
#if ${TRAINING}
  let mean_g = sums.x / m;
  let mean_gx = sums.y / m;
#endif
  for (var p = first(lid); p.n < params.n; p = next(p)) {
    let i = index(p, c);
#if ${RELU}
    let g = select(V(0.0), grad_y[i], affine(x[i], mean, scale, b) > V(0.0));
#else
    let g = grad_y[i];
#endif
#if ${TRAINING}
    let xhat = (x[i] - mean) * invstd;
    grad_x[i] = scale * (g - mean_g - xhat * mean_gx);
#else
    grad_x[i] = scale * g;
#endif
  }
#else
#if ${TRAINING}
  let x0 = total(x[c * params.hw]) / f32(VEC);
  var sum = 0.0;
  for (var p = first(lid); p.n < params.n; p = next(p)) {
    sum += total(x[index(p, c)] - x0);
  }
  let mean = x0 + workgroup_sum(lid, vec2<f32>(sum, 0.0)).x / m;
  var sq = 0.0;
  for (var p = first(lid); p.n < params.n; p = next(p)) {
    let d = x[index(p, c)] - mean;
    sq += total(d * d);
  }
  let variance = workgroup_sum(lid, vec2<f32>(sq, 0.0)).x / m;
  if (lid == 0u) {
    let f = params.momentum;
    running_mean[c] = (1.0 - f) * running_mean[c] + f * mean;
    running_var[c] = (1.0 - f) * running_var[c] + f * variance * m / (m - 1.0);
  }
#else
  let mean = running_mean[c];
  let variance = running_var[c];
#endif
  let invstd = 1.0 / sqrt(variance + params.eps);
  if (lid == 0u) {
    saved[c] = mean;
    saved[params.c + c] = invstd;
  }
  let scale = weight[c] * invstd;
  let b = bias[c];
  for (var p = first(lid); p.n < params.n; p = next(p)) {
    let i = index(p, c);
#if ${RELU}
    y[i] = max(affine(x[i], mean, scale, b), V(0.0));
#else
    y[i] = affine(x[i], mean, scale, b);
#endif
  }
#endif
}
