// One error class per kind of failure. Each message says what was wrong and how to fix it.

export class CelgradError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Two tensors (or a tensor and an op) disagree about shapes. */
export class ShapeError extends CelgradError {}

/** A kernel failed to compile, failed validation, or hit a device limit. Names the kernel. */
export class KernelError extends CelgradError {
  constructor(
    readonly kernel: string,
    message: string,
  ) {
    super(`kernel '${kernel}': ${message}`);
  }
}

/** No usable GPU adapter or device, or a request beyond the adapter's limits. */
export class DeviceError extends CelgradError {}

/** A data file or folder is missing, unreadable or malformed. Names the path. */
export class DataError extends CelgradError {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/** A weights file does not match the model, or cannot be parsed. Names the key where there is one. */
export class WeightsError extends CelgradError {
  constructor(
    message: string,
    readonly key?: string,
  ) {
    super(key === undefined ? message : `'${key}': ${message}`);
  }
}
