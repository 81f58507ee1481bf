// Dropout: out[i] = src[i] * scale where element i is kept, else 0. The same kernel is the forward
// (src = x) and the backward (src = upstream gradient): the mask is a pure function of (seed, i), so the
// backward regenerates exactly the forward's mask and nothing is stored.
//
// The mask: Philox-2x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), a
// counter-based generator, with counter (i, 0) and key `seed`: ten rounds of a 32x32 -> 64-bit
// multiply and key-dependent xors, then key += the Weyl constant. Its first output word's top 24 bits
// u are a uniform integer in [0, 2^24); element i is kept when u >= threshold = round(p * 2^24), i.e.
// dropped with probability p (to 2^-24), and p = 1 drops everything.
// One thread per element; 2-D grid folded by `row`.

struct Params {
  n: u32,
  row: u32,
  seed: u32,
  threshold: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// The high and low 32 bits of a * b, from 16-bit halves (WGSL has no widening multiply).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
  let a_lo = a & 0xffffu;
  let a_hi = a >> 16u;
  let b_lo = b & 0xffffu;
  let b_hi = b >> 16u;
  let lo_lo = a_lo * b_lo;
  let hi_lo = a_hi * b_lo;
  let lo_hi = a_lo * b_hi;
  let middle = (lo_lo >> 16u) + (hi_lo & 0xffffu) + (lo_hi & 0xffffu);
  let high = a_hi * b_hi + (hi_lo >> 16u) + (lo_hi >> 16u) + (middle >> 16u);
  return vec2<u32>(high, a * b);
}

fn philox2x32(counter: vec2<u32>, seed: u32) -> u32 {
  var x = counter;
  var key = seed;
  for (var round = 0; round < 10; round++) {
    let product = mul_wide(0xd256d193u, x.x);
    x = vec2<u32>(product.x ^ key ^ x.y, product.y);
    key += 0x9e3779b9u;
  }
  return x.x;
}

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.row;
  if (i >= params.n) { return; }
  let keep = (philox2x32(vec2<u32>(i, 0u), params.seed) >> 8u) >= params.threshold;
  dst[i] = select(0.0, src[i] * params.scale, keep);
}
