export * from './elementwise.ts';
export * from './reduce.ts';
export * from './matmul.ts';
export * from './shape.ts';
