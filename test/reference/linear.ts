/**
 * test/reference/linear.ts — fully connected layer y = x @ W^T + b (torch.nn.functional.linear), float64,
 * forward and backward. x: [..., in]; W: [out, in]; b: [out]; y: [..., out].
 *
 * API
 *   linear(x, w, b?: Arr | null): Arr
 *   linearBackward(x, w, gy): { gx, gw, gb }     gx [..., in] = gy @ W;  gw [out, in] = sum over rows of gy^T x;
 *                                                gb [out] = sum over rows of gy (returned whether or not b was used)
 */
import { type Arr, zeros, shapeStr } from './tensor.ts';

function dims(x: Arr, w: Arr): { R: number; I: number; O: number } {
  if (w.shape.length !== 2 || x.shape.length < 1 || x.shape[x.shape.length - 1] !== w.shape[1]) {
    throw new Error(`reference: linear wants x [..., in] and W [out, in], got ${shapeStr(x.shape)} ${shapeStr(w.shape)}`);
  }
  const I = w.shape[1];
  return { R: x.data.length / I, I, O: w.shape[0] };
}

export function linear(x: Arr, w: Arr, b?: Arr | null): Arr {
  const { R, I, O } = dims(x, w);
  if (b && b.data.length !== O) throw new Error(`reference: linear bias ${shapeStr(b.shape)} for ${O} outputs`);
  const y = zeros([...x.shape.slice(0, -1), O]);
  for (let r = 0; r < R; r++) {
    for (let o = 0; o < O; o++) {
      let s = b ? b.data[o] : 0;
      for (let i = 0; i < I; i++) s += x.data[r * I + i] * w.data[o * I + i];
      y.data[r * O + o] = s;
    }
  }
  return y;
}

export function linearBackward(x: Arr, w: Arr, gy: Arr): { gx: Arr; gw: Arr; gb: Arr } {
  const { R, I, O } = dims(x, w);
  if (gy.data.length !== R * O) throw new Error(`reference: linear backward: gy ${shapeStr(gy.shape)} for ${R} rows x ${O}`);
  const gx = zeros(x.shape);
  const gw = zeros(w.shape);
  const gb = zeros([O]);
  for (let r = 0; r < R; r++) {
    for (let o = 0; o < O; o++) {
      const g = gy.data[r * O + o];
      gb.data[o] += g;
      for (let i = 0; i < I; i++) {
        gx.data[r * I + i] += g * w.data[o * I + i];
        gw.data[o * I + i] += g * x.data[r * I + i];
      }
    }
  }
  return { gx, gw, gb };
}
