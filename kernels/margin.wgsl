// Angular-margin transforms of the target logit (ArcFace, SphereFace): cosines [N, C] and labels [N]
// (i32) in; the cosine at (r, labels[r]) is replaced by f(c), every other one passes unchanged. A
// label outside [0, C) leaves its row unchanged (insightface marks skipped rows with -1).
// Forward (BACKWARD false): out = f(c) on the target, c elsewhere.
// Backward (BACKWARD true): gx = g * f'(c) on the target, g elsewhere.
// The target cosine is first clamped to [-LIMIT, LIMIT]; as torch.clamp, the gradient is 0 outside.
//
// ARCFACE (insightface arcface_torch): f(c) = cos(theta + m) = c cos m - sqrt(1 - c^2) sin m where
// c > threshold, else c - shift. threshold = cos(pi - m), shift = sin(pi - m) m; easy margin: both 0.
// LIMIT = 1 - 1e-7 (as f32: 1 - 2^-23): sqrt(1 - c^2) has an infinite slope at |c| = 1.
//
// SPHEREFACE (A-Softmax, clcarwin's AngleLoss with lambda): f(c) = (lambda c + psi(c)) / (1 + lambda),
// psi = (-1)^k T_m(c) - 2k, T_m the Chebyshev polynomial (cos m theta = T_m(cos theta); T_4 =
// 8c^4 - 8c^2 + 1), k = floor(m theta / pi) kept in [0, m - 1] (the paper's intervals; psi is
// continuous, so k = m at theta = pi gives the same value). LIMIT = 1, the reference's clamp.
// One thread per element; a 2-D grid folded by `row`.

struct Params {
  n: u32,
  cols: u32,
  row: u32,
#if ${ARCFACE}
  cos_m: f32,
  sin_m: f32,
  threshold: f32,
  shift: f32,
#else
  m: u32,
  lambda: f32,
#endif
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> cosines: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
#if ${BACKWARD}
@group(0) @binding(3) var<storage, read> grad_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_in: array<f32>;
#else
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
#endif

#if ${ARCFACE}
const LIMIT = 0.99999988;

fn value(c: f32) -> f32 {
  // (1 - c)(1 + c) rather than 1 - c^2: no cancellation near |c| = 1.
  let sin_theta = sqrt((1.0 - c) * (1.0 + c));
  return select(c - params.shift, c * params.cos_m - sin_theta * params.sin_m, c > params.threshold);
}

fn slope(c: f32) -> f32 {
  let sin_theta = sqrt((1.0 - c) * (1.0 + c));
  return select(1.0, params.cos_m + c * params.sin_m / sin_theta, c > params.threshold);
}
#else
const LIMIT = 1.0;
const PI = 3.14159265358979;

// (psi(c), psi'(c)): T_m and T_m' by the recurrences T_{j+1} = 2c T_j - T_{j-1},
// T'_{j+1} = 2 T_j + 2c T'_j - T'_{j-1}, from T_0 = 1, T_1 = c.
fn psi(c: f32) -> vec2<f32> {
  var t = vec2<f32>(1.0, c); // (T_{j-1}, T_j)
  var d = vec2<f32>(0.0, 1.0); // (T'_{j-1}, T'_j)
  for (var j = 1u; j < params.m; j++) {
    t = vec2<f32>(t.y, 2.0 * c * t.y - t.x);
    d = vec2<f32>(d.y, 2.0 * t.x + 2.0 * c * d.y - d.x);
  }
  let k = min(floor(f32(params.m) * acos(c) / PI), f32(params.m - 1u));
  let parity = 1.0 - 2.0 * (k - 2.0 * floor(k * 0.5)); // (-1)^k
  return vec2<f32>(parity * t.y - 2.0 * k, parity * d.y);
}

fn value(c: f32) -> f32 {
  return (params.lambda * c + psi(c).x) / (1.0 + params.lambda);
}

fn slope(c: f32) -> f32 {
  return (params.lambda + psi(c).y) / (1.0 + params.lambda);
}
#endif

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row;
  if (i >= params.n) { return; }
  let c = cosines[i];
  let is_target = i32(i % params.cols) == labels[i / params.cols];
#if ${BACKWARD}
  let d = select(0.0, slope(clamp(c, -LIMIT, LIMIT)), abs(c) <= LIMIT);
  grad_in[i] = grad_out[i] * select(1.0, d, is_target);
#else
  out[i] = select(c, value(clamp(c, -LIMIT, LIMIT)), is_target);
#endif
}
