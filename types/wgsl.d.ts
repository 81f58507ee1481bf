// Kernel sources are imported as text (esbuild's text loader), in Node and in the browser bundle alike.
declare module '*.wgsl' {
  const source: string;
  export default source;
}
