// Types of build-web.mjs for the TypeScript code that imports it (the server and the browser tests).
export function buildWeb(options?: { root?: string; outdir?: string; quiet?: boolean; tests?: boolean }): Promise<string>;
