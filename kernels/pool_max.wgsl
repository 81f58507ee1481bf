// 2-D max pooling over NCHW planes, forward (BACKWARD false) and backward (BACKWARD true).
//
// Threads: one per strip of STRIP consecutive elements along a row (outputs forward, inputs backward),
// flat over [planes, rows, strips] (2-D grid folded by `row`): on lavapipe an invocation costs more than
// a few loads, so fewer, longer ones are faster.
//
// Forward: the window starts at o * stride - pad, clipped to the input. It scans the window row-major
// and replaces the running max only on a strictly greater value, so the first max wins on ties, as in
// PyTorch; a NaN always replaces it (PyTorch propagates NaN). `indices` gets the argmax as h * W + w
// within the plane (PyTorch's convention).
//
// Backward: each input element gathers, with no atomics: it visits the outputs whose window covers
// it, oh in [ceil((h + pad - k + 1) / stride), floor((h + pad) / stride)], and adds the gradient of
// those whose argmax is this element (with select, not a branch: divergent branches around loads
// cost lavapipe more than the loads).

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
  let h = t.row;
  let rows = covering(h, KH, SH, PH, OH);
  for (var w = t.first; w < t.end; w++) {
    let own = i32(h * W + w);
    let cols = covering(w, KW, SW, PW, OW);
    var acc = 0.0;
    for (var oh = rows.x; oh <= rows.y; oh++) {
      for (var ow = cols.x; ow <= cols.y; ow++) {
        let o = (t.plane * OH + u32(oh)) * OW + u32(ow);
        acc += select(0.0, grad_y[o], indices[o] == own);
      }
    }
    grad_x[(t.plane * H + h) * W + w] = acc;
  }
#else
  let t = strip(s, OH, OW);
  let base = t.plane * H * W;
  let h0 = i32(t.row * SH) - i32(PH);
  let hs = u32(max(h0, 0));
  let he = u32(min(h0 + i32(KH), i32(H)));
  for (var ow = t.first; ow < t.end; ow++) {
    let w0 = i32(ow * SW) - i32(PW);
    let ws = u32(max(w0, 0));
    let we = u32(min(w0 + i32(KW), i32(W)));
    // Every window holds an input element (padding <= kernel / 2; ceil_mode's last window starts inside).
    var arg = hs * W + ws;
    var best = x[base + arg];
    for (var h = hs; h < he; h++) {
      for (var w = ws; w < we; w++) {
        let v = x[base + h * W + w];
        if (v > best || is_nan(v)) {
          best = v;
          arg = h * W + w;
        }
      }
    }
    let o = (t.plane * OH + t.row) * OW + ow;
    y[o] = best;
    indices[o] = i32(arg);
  }
#endif
}
