// Adam (Kingma & Ba) with PyTorch's semantics: bias correction, eps added after the bias-corrected
// square root, coupled weight decay; a parameter whose grad is null is skipped and its step count
// does not advance. One fused dispatch per parameter tensor. Kernel: kernels/adam.wgsl.
import adamSource from '../../kernels/adam.wgsl';
import { keep } from '../autograd.ts';
import { f32, registerKernel, rt } from '../runtime.ts';
import { PER_THREAD, grid } from '../ops/elementwise.ts';
import { Tensor } from '../tensor.ts';

registerKernel('adam', adamSource);

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

interface ParamState {
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
}

/** The optimizer's state as plain data, for checkpoints. */
export interface AdamState {
  lr: number;
  steps: number[];
  expAvg: Float32Array[];
  expAvgSq: Float32Array[];
}

export class Adam {
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  private readonly state = new Map<Tensor, ParamState>();

  constructor(
    readonly params: Tensor[],
    options: AdamOptions = {},
  ) {
    this.lr = options.lr ?? 1e-3;
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
  }

  /** Records one update of every parameter that has a gradient (no read-back, no submit). */
  step(): void {
    const [beta1, beta2] = this.betas;
    for (const p of this.params) {
      if (!p.grad) continue;
      const s = this.stateOf(p);
      s.step++;
      const { workgroups, row } = grid(Math.ceil(p.size / PER_THREAD));
      rt().dispatch({
        kernel: 'adam',
        spec: { WG: 256, PER_THREAD },
        params: [
          p.size,
          row,
          f32(beta1),
          f32(beta2),
          f32(1 - beta1),
          f32(1 - beta2),
          f32(this.lr / (1 - beta1 ** s.step)),
          f32(Math.sqrt(1 - beta2 ** s.step)),
          f32(this.eps),
          f32(this.weightDecay),
        ],
        bindings: [{ buffer: p.buffer }, { buffer: p.grad.buffer }, { buffer: s.expAvg.buffer }, { buffer: s.expAvgSq.buffer }],
        workgroups,
      });
    }
  }

  /** Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  async stateDict(): Promise<AdamState> {
    const steps: number[] = [];
    const expAvg: Float32Array[] = [];
    const expAvgSq: Float32Array[] = [];
    for (const p of this.params) {
      const s = this.state.get(p);
      steps.push(s?.step ?? 0);
      expAvg.push(s ? await s.expAvg.toArray() : new Float32Array(0));
      expAvgSq.push(s ? await s.expAvgSq.toArray() : new Float32Array(0));
    }
    return { lr: this.lr, steps, expAvg, expAvgSq };
  }

  loadStateDict(state: AdamState): void {
    if (state.steps.length !== this.params.length) {
      throw new Error(`Adam state has ${state.steps.length} parameters, the optimizer ${this.params.length}`);
    }
    this.lr = state.lr;
    this.params.forEach((p, i) => {
      if (state.steps[i] === 0) return;
      const s = this.stateOf(p);
      s.step = state.steps[i];
      s.expAvg.write(state.expAvg[i]);
      s.expAvgSq.write(state.expAvgSq[i]);
    });
  }

  dispose(): void {
    for (const s of this.state.values()) {
      s.expAvg.dispose();
      s.expAvgSq.dispose();
    }
    this.state.clear();
  }

  private stateOf(p: Tensor): ParamState {
    let s = this.state.get(p);
    if (!s) {
      s = { step: 0, expAvg: keep(Tensor.zeros(p.shape)), expAvgSq: keep(Tensor.zeros(p.shape)) };
      this.state.set(p, s);
    }
    return s;
  }
}
