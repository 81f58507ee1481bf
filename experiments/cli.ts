// The `celgrad` command. Each subcommand parses its own flags (node:util parseArgs) and returns an exit code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CelgradError } from '../engine/errors.ts';
import { doctor } from './doctor.ts';

const USAGE = `celgrad — a transparent deep-learning engine on WebGPU, and a study of cartoon-face recognition

Usage:
  celgrad doctor [--json] [--backend B] [--adapter NAME]   adapter, limits, features; exit 1 with the fix if none

Adapter selection: --backend/--adapter or CELGRAD_BACKEND / CELGRAD_ADAPTER (Dawn's backend= and adapter= options).`;

type Command = (args: string[]) => Promise<number>;

const adapterOptions = {
  backend: { type: 'string' },
  adapter: { type: 'string' },
} satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  return parseArgs({ args, options, allowPositionals: true, strict: true });
}

const commands: Record<string, Command> = {
  async doctor(args) {
    const { values } = parse(args, { ...adapterOptions, json: { type: 'boolean' } });
    return doctor(values);
  },
};

export async function main(argv: string[]): Promise<never> {
  const [name, ...rest] = argv;
  let code = 0;
  try {
    if (!name || name === 'help' || name === '--help' || name === '-h') console.log(USAGE);
    else if (!(name in commands)) {
      console.error(`celgrad: unknown command '${name}'.\n\n${USAGE}`);
      code = 2;
    } else code = await commands[name](rest);
  } catch (e) {
    if (e instanceof CelgradError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`celgrad ${name}: ${(e as Error).message}`);
      code = 1;
    } else throw e;
  }
  // dawn.node keeps handles open; leave explicitly once the command is done.
  process.exit(code);
}
