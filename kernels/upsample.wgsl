// Bilinear resize of NCHW planes with align_corners = false (PyTorch), forward (BACKWARD false) and
// backward (BACKWARD true).
//
// Along each axis, output o samples src = max(scale * (o + 0.5) - 0.5, 0), scale = in / out (f32, as
// PyTorch computes it), between i0 = floor(src) and i1 = min(i0 + 1, in - 1), weights l0 = 1 - l1 and
// l1 = src - i0. taps() is shared by both directions, so the backward uses the forward's exact weights.
//
// Forward: one thread per output element, y = l0h * (l0w x00 + l1w x01) + l1h * (l0w x10 + l1w x11).
// Backward: one thread per input element gathers (no atomics) g * (weight of this input row) *
// (weight of this input column) over the outputs that sample it. Those lie where src is in
// (i - 1, i + 1), o in ((i - 0.5) / scale - 0.5, (i + 1.5) / scale - 0.5): that range widened by one
// on each side, clamped, and each output's weight is recomputed exactly (0 when it does not touch i).

struct Params {
  n: u32,
  row: u32,
  h: u32,
  w: u32,
  oh: u32,
  ow: u32,
  scale_h: f32,
  scale_w: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

struct Taps {
  i0: u32,
  i1: u32,
  l0: f32,
  l1: f32,
}

fn taps(o: u32, size: u32, scale: f32) -> Taps {
  let s = max(scale * (f32(o) + 0.5) - 0.5, 0.0);
  let i0 = min(u32(s), size - 1u);
  let l1 = s - f32(i0);
  return Taps(i0, min(i0 + 1u, size - 1u), 1.0 - l1, l1);
}

#if ${BACKWARD}
// The weight output o gives input i along one axis (both taps when i0 == i1 at the border).
fn weight(t: Taps, i: u32) -> f32 {
  return select(0.0, t.l0, t.i0 == i) + select(0.0, t.l1, t.i1 == i);
}

// Candidate outputs [first, last] that may sample input i along one axis.
fn candidates(i: u32, outs: u32, scale: f32) -> vec2<u32> {
  let first = i32(floor((f32(i) - 0.5) / scale - 0.5)) - 1;
  let last = i32(ceil((f32(i) + 1.5) / scale - 0.5)) + 1;
  return vec2<u32>(u32(max(first, 0)), u32(clamp(last, 0, i32(outs) - 1)));
}
#endif

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row;
  if (i >= params.n) { return; }
#if ${BACKWARD}
  let x = i % params.w;
  let y = (i / params.w) % params.h;
  let plane = i / (params.w * params.h);
  let rows = candidates(y, params.oh, params.scale_h);
  let cols = candidates(x, params.ow, params.scale_w);
  var acc = 0.0;
  for (var oh = rows.x; oh <= rows.y; oh++) {
    let wh = weight(taps(oh, params.h, params.scale_h), y);
    if (wh == 0.0) { continue; }
    for (var ow = cols.x; ow <= cols.y; ow++) {
      let ww = weight(taps(ow, params.w, params.scale_w), x);
      if (ww != 0.0) {
        acc += src[(plane * params.oh + oh) * params.ow + ow] * wh * ww;
      }
    }
  }
  dst[i] = acc;
#else
  let ow = i % params.ow;
  let oh = (i / params.ow) % params.oh;
  let base = (i / (params.ow * params.oh)) * params.h * params.w;
  let th = taps(oh, params.h, params.scale_h);
  let tw = taps(ow, params.w, params.scale_w);
  let r0 = base + th.i0 * params.w;
  let r1 = base + th.i1 * params.w;
  dst[i] = th.l0 * (tw.l0 * src[r0 + tw.i0] + tw.l1 * src[r0 + tw.i1]) +
           th.l1 * (tw.l0 * src[r1 + tw.i0] + tw.l1 * src[r1 + tw.i1]);
#endif
}
