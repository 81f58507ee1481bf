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
// Threads: one per strip of STRIP consecutive elements along a row (outputs forward, inputs backward),
// flat over [planes, rows, strips] (2-D grid folded by `row`): on lavapipe an invocation costs more than
// a few loads, so fewer, longer ones are faster.
// Forward: each output is its window's sum over its divisor.
// Backward: each input element gathers grad_y / divisor over the outputs whose window covers it (no
// atomics).

struct Params {
  strips: u32, // of all planes and rows: the thread count
  row: u32,
}

// The geometry is specialised (compile-time constants): lavapipe has no vector integer division, and
// with constants every division becomes a multiplication and the window loops get fixed trip counts.
const H = ${H}u;
const W = ${W}u;
const OH = ${OH}u;
const OW = ${OW}u;
const KH = ${KH}u;
const KW = ${KW}u;
const SH = ${SH}u;
const SW = ${SW}u;
const PH = ${PH}u;
const PW = ${PW}u;

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

// A thread's strip: its plane, row, and columns [first, end).
struct Strip {
  plane: u32,
  row: u32,
  first: u32,
  end: u32,
}

fn strip(s: u32, rows: u32, cols: u32) -> Strip {
  let strips = (cols + ${STRIP}u - 1u) / ${STRIP}u;
  let first = (s % strips) * ${STRIP}u;
  return Strip(s / (strips * rows), (s / strips) % rows, first, min(first + ${STRIP}u, cols));
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = gid.x + gid.y * params.row;
  if (s >= params.strips) { return; }
#if ${BACKWARD}
  let t = strip(s, H, W);
  let rows = covering(t.row, H, OH, KH, SH, PH);
  for (var w = t.first; w < t.end; w++) {
    let cols = covering(w, W, OW, KW, SW, PW);
    var acc = 0.0;
    for (var oh = rows.x; oh <= rows.y; oh++) {
      let sh = span(oh, H, OH, KH, SH, PH);
      for (var ow = cols.x; ow <= cols.y; ow++) {
        let sw = span(ow, W, OW, KW, SW, PW);
        acc += src[(t.plane * OH + oh) * OW + ow] / f32(sh.count * sw.count);
      }
    }
    dst[(t.plane * H + t.row) * W + w] = acc;
  }
#else
  let t = strip(s, OH, OW);
  let base = t.plane * H * W;
  let sh = span(t.row, H, OH, KH, SH, PH);
  for (var ow = t.first; ow < t.end; ow++) {
    let sw = span(ow, W, OW, KW, SW, PW);
    var acc = 0.0;
    for (var h = sh.start; h < sh.end; h++) {
      for (var w = sw.start; w < sw.end; w++) {
        acc += src[base + h * W + w];
      }
    }
    dst[(t.plane * OH + t.row) * OW + ow] = acc / f32(sh.count * sw.count);
  }
#endif
}
