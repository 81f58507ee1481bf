// One Adam step (PyTorch's torch.optim.Adam, amsgrad=False) for one parameter tensor, in place:
//   g <- g + weight_decay * p                       (coupled L2, as Adam, not AdamW)
//   m <- beta1 * m + (1 - beta1) * g
//   v <- beta2 * v + (1 - beta2) * g^2
//   p <- p - step_size * m / (sqrt(v) / bias2_sqrt + eps)
// with step_size = lr / (1 - beta1^t) and bias2_sqrt = sqrt(1 - beta2^t) computed on the CPU, and
// 1 - beta computed there in double as PyTorch does: in f32, 1 - 0.999 loses four digits.

struct Params {
  n: u32,
  row: u32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  step_size: f32,
  bias2_sqrt: f32,
  eps: f32,
  weight_decay: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  // PER_THREAD consecutive elements per invocation: fewer invocations, 2-3x faster on lavapipe.
  let first = (gid.x + gid.y * params.row) * ${PER_THREAD}u;
  for (var i = first; i < min(first + ${PER_THREAD}u, params.n); i++) {
  let p = param[i];
  let g = grad[i] + params.weight_decay * p;
  let m = params.beta1 * exp_avg[i] + params.one_minus_beta1 * g;
  let v = params.beta2 * exp_avg_sq[i] + params.one_minus_beta2 * g * g;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = p - params.step_size * m / (sqrt(v) / params.bias2_sqrt + params.eps);
  }
}
