// Softmax / log-softmax along one axis, forward (BACKWARD false) and backward (BACKWARD true);
// LOG selects log-softmax.
//
// The tensor is viewed as [outer, len, inner] with the axis in the middle: one thread per
// (outer, inner) row, whose elements sit `inner` apart. Forward: one pass keeps a running max m and
// s = sum exp(x - m) (rescaling s when m grows, so no exp ever overflows: stable for any magnitude),
// a second writes exp(x - m) / s, or (x - m) - log(s) for log-softmax.
// Backward, from the output y:  softmax: gx = y * (g - sum(g * y));  log-softmax: gx = g - exp(y) * sum(g).

struct Params {
  rows: u32,
  row: u32,
  len: u32,
  inner: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if ${BACKWARD}
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> grad_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#endif

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x + gid.y * params.row;
  if (r >= params.rows) { return; }
  let base = (r / params.inner) * params.len * params.inner + r % params.inner;
  let step = params.inner;
  let end = base + params.len * step;
#if ${BACKWARD}
  var dot = 0.0;
  for (var i = base; i < end; i += step) {
#if ${LOG}
    dot += grad_y[i];
#else
    dot += grad_y[i] * y[i];
#endif
  }
  for (var i = base; i < end; i += step) {
#if ${LOG}
    grad_x[i] = grad_y[i] - exp(y[i]) * dot;
#else
    grad_x[i] = y[i] * (grad_y[i] - dot);
#endif
  }
#else
  var m = x[base];
  var s = 0.0;
  for (var i = base; i < end; i += step) {
    let v = x[i];
    if (v > m) {
      s = s * exp(m - v) + 1.0;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
#if ${LOG}
  let log_s = log(s);
  for (var i = base; i < end; i += step) {
    y[i] = (x[i] - m) - log_s;
  }
#else
  let inv_s = 1.0 / s;
  for (var i = base; i < end; i += step) {
    y[i] = exp(x[i] - m) * inv_s;
  }
#endif
#endif
}
