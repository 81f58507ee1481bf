#!/usr/bin/env node
// The `celgrad` command: bundles the TypeScript sources (esbuild, well under a second) and runs the CLI.
import { buildAll } from '../scripts/build.mjs';
await buildAll({ quiet: true });
const { main } = await import('../dist/experiments/cli.mjs');
await main(process.argv.slice(2));
