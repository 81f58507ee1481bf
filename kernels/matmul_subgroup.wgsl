// Batched C[b] = op(A[b]) * op(B[b]) for software adapters (lavapipe), op = optional transpose.
//
// Why it looks like this (measured on Mesa 25 lavapipe, see shared/perf-notes.md): a storage load
// whose address differs per lane runs as a scalar loop over the lanes, so loads, not FMAs, bound
// the speed. One workgroup is one subgroup of SG lanes. Each lane owns a tall tile of TM rows x 4
// columns of C (TM vec4 accumulators; they spill, which is still cheaper than loading). Per step
// of 4 along k:
//   - the A values (shared by all lanes: same rows) are loaded once per subgroup, spread over the
//     lanes, and handed round with subgroupShuffle at constant lane indices (with 8 lanes lavapipe
//     lowers that to one AVX2 vpermd per component; subgroupBroadcast was 2x slower here);
//   - the B values are the lane's own: its 4 columns x 4 k.
// Loads are vec4 along each operand's contiguous dimension when it is a multiple of 4 (A_VEC,
// B_VEC), else four scalar loads. Rows and columns past the edge read whatever is in bounds and
// are never stored; k past the edge is masked to 0 (both operands, so garbage never meets a 0).
//
// Specialisation: SG lanes, TM rows per lane (a multiple of SG), A_T (A stored [k][m]), B_T
// (B stored [n][k]), A_VEC, B_VEC, C_VEC (N % 4 == 0 and C's offset too: vec4 stores).
// Dispatch: (ceil(N / (4 SG)), ceil(M / TM), batch), or with ROWS_X the row tiles along x: where A is
// a few row tiles (a conv's weight against a long B) the workgroups that share a column tile of B then
// run one after another, and B streams from memory once instead of once per row tile.
enable subgroups;

struct Params {
  m: u32,
  n: u32,
  k: u32,
  a_batch: u32, // element strides between batch entries (0: shared by every batch entry)
  b_batch: u32,
  a_off: u32, // element offsets of A, B and C in their bindings
  b_off: u32,
  c_off: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if ${A_VEC}
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> a: array<f32>;
#endif
#if ${B_VEC}
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> b: array<f32>;
#endif
#if ${C_VEC}
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;
#else
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
#endif

const SG: u32 = ${SG}u;
const TM: u32 = ${TM}u;
const LOADS_A: u32 = TM / SG; // vec4s of A each lane loads per k step

// 4 consecutive elements of A from element e (along A's contiguous dimension).
fn load_a(e: u32) -> vec4<f32> {
#if ${A_VEC}
  return a[e / 4u];
#else
  return vec4(a[e], a[e + 1u], a[e + 2u], a[e + 3u]);
#endif
}

fn load_b(e: u32) -> vec4<f32> {
#if ${B_VEC}
  return b[e / 4u];
#else
  return vec4(b[e], b[e + 1u], b[e + 2u], b[e + 3u]);
#endif
}

@compute @workgroup_size(SG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let m = params.m;
  let n = params.n;
  let k = params.k;
#if ${ROWS_X}
  let row0 = wg.x * TM;
  let col = (wg.y * SG + lane) * 4u;
#else
  let row0 = wg.y * TM;
  let col = (wg.x * SG + lane) * 4u;
#endif
  let a0 = params.a_off + wg.z * params.a_batch;
  let b0 = params.b_off + wg.z * params.b_batch;
  var acc: array<vec4<f32>, TM>;

  for (var k0 = 0u; k0 < k; k0 += 4u) {
    // Which of k0..k0+3 exist.
    let k_ok = vec4(k0, k0 + 1u, k0 + 2u, k0 + 3u) < vec4(k);

    // This lane's B block: bk[t] = B[k0 + t][col .. col + 3].
    var bk: array<vec4<f32>, 4>;
#if ${B_T}
    var bt: array<vec4<f32>, 4>; // bt[j] = B[col + j][k0 .. k0 + 3]
    for (var j = 0u; j < 4u; j++) {
      bt[j] = select(vec4(0.0), load_b(b0 + (col + j) * k + k0), k_ok);
    }
    for (var t = 0u; t < 4u; t++) {
      bk[t] = vec4(bt[0][t], bt[1][t], bt[2][t], bt[3][t]);
    }
#else
    for (var t = 0u; t < 4u; t++) {
      bk[t] = select(vec4(0.0), load_b(b0 + (k0 + t) * n + col), vec4(k_ok[t]));
    }
#endif

    for (var q = 0u; q < LOADS_A; q++) {
#if ${A_T}
      // Lane l loads A[k0 + l % 4][row0 + q SG + l - l % 4 .. + 3]; lane s of the shuffle thus
      // holds 4 rows for one k.
      let ka = k0 + lane % 4u;
      let mine = select(vec4(0.0), load_a(a0 + ka * m + row0 + q * SG + lane - lane % 4u), vec4(ka < k));
      for (var s = 0u; s < SG; s++) {
        let v = subgroupShuffle(mine, s);
        let r = q * SG + s - s % 4u;
        acc[r] = fma(vec4(v.x), bk[s % 4u], acc[r]);
        acc[r + 1u] = fma(vec4(v.y), bk[s % 4u], acc[r + 1u]);
        acc[r + 2u] = fma(vec4(v.z), bk[s % 4u], acc[r + 2u]);
        acc[r + 3u] = fma(vec4(v.w), bk[s % 4u], acc[r + 3u]);
      }
#else
      // Lane l loads A[row0 + q SG + l][k0 .. k0 + 3]; lane s of the shuffle holds one row.
      let mine = select(vec4(0.0), load_a(a0 + (row0 + q * SG + lane) * k + k0), k_ok);
      for (var s = 0u; s < SG; s++) {
        let v = subgroupShuffle(mine, s);
        let r = q * SG + s;
        acc[r] = fma(vec4(v.x), bk[0], fma(vec4(v.y), bk[1], fma(vec4(v.z), bk[2], fma(vec4(v.w), bk[3], acc[r]))));
      }
#endif
    }
  }

  if (col >= n) { return; }
  let c0 = params.c_off + wg.z * m * n;
  for (var i = 0u; i < TM; i++) {
    let row = row0 + i;
    if (row < m) {
#if ${C_VEC}
      c[(c0 + row * n + col) / 4u] = acc[i];
#else
      for (var j = 0u; j < 4u; j++) {
        if (col + j < n) { c[c0 + row * n + col + j] = acc[i][j]; }
      }
#endif
    }
  }
}
