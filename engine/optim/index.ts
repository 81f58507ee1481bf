export { Adam, type AdamOptions, type AdamState } from './adam.ts';
export { StepLR } from './steplr.ts';
