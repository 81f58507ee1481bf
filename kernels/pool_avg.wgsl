// 2-D average pooling over NCHW planes, forward (BACKWARD false) and backward (BACKWARD true);
// ADAPTIVE selects adaptive average pooling.
//
// Windows along each axis, as PyTorch defines them:
//   avg_pool2d:          start = o * stride - pad, end = min(start + k, size + pad), then clipped to
//                        [0, size). The divisor counts the padding (COUNT_INCLUDE_PAD) but never the
//                        part of a ceil_mode window beyond it; otherwise only the clipped elements.
//   adaptive_avg_pool2d: start = floor(o * size / count), end = ceil((o + 1) * size / count).
// The forward and backward share span(), so both use the same windows and divisors.
//
// Forward: one thread per output element, the window's sum over its divisor.
// Backward: one thread per input element gathers grad_y / divisor over the outputs whose window
// covers it (no atomics).

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
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One axis of a window: the input range [start, end) and the axis's factor of the divisor.
struct Span {
  start: u32,
  end: u32,
  count: u32,
}

fn span(o: u32, size: u32, outs: u32, k: u32, stride: u32, pad: u32) -> Span {
#if ${ADAPTIVE}
  let start = o * size / outs;
  let end = ((o + 1u) * size + outs - 1u) / outs;
  return Span(start, end, end - start);
#else
  let start = i32(o * stride) - i32(pad);
  let end = min(start + i32(k), i32(size + pad));
  let first = max(start, 0);
  let last = min(end, i32(size));
#if ${COUNT_INCLUDE_PAD}
  return Span(u32(first), u32(last), u32(end - start));
#else
  return Span(u32(first), u32(last), u32(last - first));
#endif
#endif
}

// The outputs along one axis whose window covers input coordinate i: [first, last].
fn covering(i: u32, size: u32, outs: u32, k: u32, stride: u32, pad: u32) -> vec2<u32> {
#if ${ADAPTIVE}
  // start(o) <= i  <=>  o < (i + 1) * outs / size;   end(o) > i  <=>  o >= floor(i * outs / size).
  return vec2<u32>(i * outs / size, ((i + 1u) * outs + size - 1u) / size - 1u);
#else
  let reach = i32(i + pad) - i32(k) + 1;
  let first = select(0, (reach + i32(stride) - 1) / i32(stride), reach > 0);
  let last = min((i + pad) / stride, outs - 1u);
  return vec2<u32>(u32(first), last);
#endif
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row;
  if (i >= params.n) { return; }
#if ${BACKWARD}
  let w = i % params.w;
  let h = (i / params.w) % params.h;
  let plane = i / (params.w * params.h);
  let rows = covering(h, params.h, params.oh, params.kh, params.sh, params.ph);
  let cols = covering(w, params.w, params.ow, params.kw, params.sw, params.pw);
  var acc = 0.0;
  for (var oh = rows.x; oh <= rows.y; oh++) {
    let sh = span(oh, params.h, params.oh, params.kh, params.sh, params.ph);
    for (var ow = cols.x; ow <= cols.y; ow++) {
      let sw = span(ow, params.w, params.ow, params.kw, params.sw, params.pw);
      acc += src[(plane * params.oh + oh) * params.ow + ow] / f32(sh.count * sw.count);
    }
  }
  dst[i] = acc;
#else
  let ow = i % params.ow;
  let oh = (i / params.ow) % params.oh;
  let base = (i / (params.ow * params.oh)) * params.h * params.w;
  let sh = span(oh, params.h, params.oh, params.kh, params.sh, params.ph);
  let sw = span(ow, params.w, params.ow, params.kw, params.sw, params.pw);
  var acc = 0.0;
  for (var h = sh.start; h < sh.end; h++) {
    for (var w = sw.start; w < sw.end; w++) {
      acc += src[base + h * params.w + w];
    }
  }
  dst[i] = acc / f32(sh.count * sw.count);
#endif
}
