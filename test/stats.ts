// Summary statistics of sampled values (initialisation checks).
export function stats(values: Float32Array): { mean: number; std: number; min: number; max: number } {
  let s = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    s += v;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const mean = s / values.length;
  let q = 0;
  for (const v of values) q += (v - mean) ** 2;
  return { mean, std: Math.sqrt(q / values.length), min, max };
}
