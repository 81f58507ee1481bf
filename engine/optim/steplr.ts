// StepLR with PyTorch's semantics: lr = base_lr * gamma^floor(epoch / step_size), stepped once per
// epoch after training it; epochs 0..step_size-1 use base_lr.
export interface LrTarget {
  lr: number;
}

export class StepLR {
  readonly baseLr: number;
  lastEpoch = 0;

  constructor(
    private readonly optimizer: LrTarget,
    readonly stepSize: number,
    readonly gamma = 0.1,
  ) {
    if (!(Number.isInteger(stepSize) && stepSize > 0)) throw new Error(`StepLR: step size must be a positive integer, got ${stepSize}`);
    this.baseLr = optimizer.lr;
  }

  step(): void {
    this.lastEpoch++;
    this.optimizer.lr = this.baseLr * this.gamma ** Math.floor(this.lastEpoch / this.stepSize);
  }

  stateDict(): { lastEpoch: number; baseLr: number } {
    return { lastEpoch: this.lastEpoch, baseLr: this.baseLr };
  }

  loadStateDict(state: { lastEpoch: number }): void {
    this.lastEpoch = state.lastEpoch;
    this.optimizer.lr = this.baseLr * this.gamma ** Math.floor(this.lastEpoch / this.stepSize);
  }
}
