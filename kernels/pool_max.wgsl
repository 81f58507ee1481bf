// 2-D max pooling over NCHW planes, forward (BACKWARD false) and backward (BACKWARD true).
//
// Forward: one thread per output element (flat index over [planes, OH, OW]; 2-D grid folded by
// `row`). The window starts at o * stride - pad, clipped to the input. It scans the window row-major
// and replaces the running max only on a strictly greater value, so the first max wins on ties, as in
// PyTorch; a NaN always replaces it (PyTorch propagates NaN). `indices` gets the argmax as h * W + w
// within the plane (PyTorch's convention).
//
// Backward: one thread per input element gathers, with no atomics: it visits the outputs whose
// window covers it, oh in [ceil((h + pad - k + 1) / stride), floor((h + pad) / stride)], and adds the
// gradient of those whose argmax is this element.

struct Params {
  n: u32,
  row: u32,
  h: u32,
  w: u32,
  oh: u32,
  ow: u32,
  kh: u32,
  kw: u32,
  sh: u32,
  sw: u32,
  ph: u32,
  pw: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if ${BACKWARD}
@group(0) @binding(1) var<storage, read> indices: array<i32>;
@group(0) @binding(2) var<storage, read> grad_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<i32>;
#endif

fn is_nan(v: f32) -> bool {
  // By bits: a compiler may fold v != v to false.
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// The outputs along one axis whose window covers input coordinate i: [first, last] (empty if first > last).
fn covering(i: u32, k: u32, stride: u32, pad: u32, count: u32) -> vec2<i32> {
  let reach = i32(i + pad) - i32(k) + 1;
  let first = select(0, (reach + i32(stride) - 1) / i32(stride), reach > 0);
  let last = min(i32((i + pad) / stride), i32(count) - 1);
  return vec2<i32>(first, last);
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row;
  if (i >= params.n) { return; }
#if ${BACKWARD}
  let w = i % params.w;
  let h = (i / params.w) % params.h;
  let plane = i / (params.w * params.h);
  let own = i32(h * params.w + w);
  let rows = covering(h, params.kh, params.sh, params.ph, params.oh);
  let cols = covering(w, params.kw, params.sw, params.pw, params.ow);
  var acc = 0.0;
  for (var oh = rows.x; oh <= rows.y; oh++) {
    for (var ow = cols.x; ow <= cols.y; ow++) {
      let o = (plane * params.oh + u32(oh)) * params.ow + u32(ow);
      if (indices[o] == own) {
        acc += grad_y[o];
      }
    }
  }
  grad_x[i] = acc;
#else
  let ow = i % params.ow;
  let oh = (i / params.ow) % params.oh;
  let base = (i / (params.ow * params.oh)) * params.h * params.w;
  let h0 = i32(oh * params.sh) - i32(params.ph);
  let w0 = i32(ow * params.sw) - i32(params.pw);
  let hs = u32(max(h0, 0));
  let ws = u32(max(w0, 0));
  let he = u32(min(h0 + i32(params.kh), i32(params.h)));
  let we = u32(min(w0 + i32(params.kw), i32(params.w)));
  // Every window holds at least one input element (padding <= kernel / 2; ceil_mode's last window starts inside).
  var arg = hs * params.w + ws;
  var best = x[base + arg];
  for (var h = hs; h < he; h++) {
    for (var w = ws; w < we; w++) {
      let v = x[base + h * params.w + w];
      if (v > best || is_nan(v)) {
        best = v;
        arg = h * params.w + w;
      }
    }
  }
  y[i] = best;
  indices[i] = i32(arg);
#endif
}
