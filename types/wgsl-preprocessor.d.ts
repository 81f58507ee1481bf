declare module 'wgsl-preprocessor/wgsl-preprocessor.js' {
  /** Tagged template that evaluates #if/#elif/#else/#endif blocks whose conditions are substitutions. */
  export function wgsl(strings: TemplateStringsArray, ...values: unknown[]): string;
}
