// The `celgrad` command. Each subcommand parses its own flags (node:util parseArgs) and returns an exit code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CelgradError } from '../engine/errors.ts';
import { dataStats, formatStats, generateSynthFaces } from './data/index.ts';
import { doctor } from './doctor.ts';

const USAGE = `celgrad — a transparent deep-learning engine on WebGPU, and a study of cartoon-face recognition

Usage:
  celgrad doctor [--json] [--backend B] [--adapter NAME]   adapter, limits, features; exit 1 with the fix if none
  celgrad data synth --out DIR [--identities N --per-identity M --size S --seed K [--source-task] [--evidence-region]]
  celgrad data stats DIR [--decode]                        identities, images, sizes, unreadable files

Adapter selection: --backend/--adapter or CELGRAD_BACKEND / CELGRAD_ADAPTER (Dawn's backend= and adapter= options).`;

type Command = (args: string[]) => Promise<number>;

const adapterOptions = {
  backend: { type: 'string' },
  adapter: { type: 'string' },
} satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  return parseArgs({ args, options, allowPositionals: true, strict: true });
}

const int = (v: string | undefined, fallback: number, name: string) => {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CelgradError(`--${name} must be a whole number, got '${v}'`);
  return n;
};

const commands: Record<string, Command> = {
  async doctor(args) {
    const { values } = parse(args, { ...adapterOptions, json: { type: 'boolean' } });
    return doctor(values);
  },
  async data([sub, ...args]) {
    if (sub === 'synth') {
      const { values } = parse(args, {
        out: { type: 'string' },
        identities: { type: 'string' },
        'per-identity': { type: 'string' },
        size: { type: 'string' },
        seed: { type: 'string' },
        'source-task': { type: 'boolean' },
        'evidence-region': { type: 'boolean' },
      });
      if (!values.out) throw new CelgradError('data synth needs --out DIR');
      const result = generateSynthFaces({
        out: values.out,
        identities: int(values.identities, 10, 'identities'),
        perIdentity: int(values['per-identity'], 20, 'per-identity'),
        size: int(values.size, 64, 'size'),
        seed: int(values.seed, 0, 'seed'),
        sourceTask: values['source-task'],
        evidenceRegion: values['evidence-region'],
      });
      console.log(`wrote ${result.files.length} images of ${result.classes.length} identities to ${result.out}`);
      return 0;
    }
    if (sub === 'stats') {
      const { values, positionals } = parse(args, { decode: { type: 'boolean' } });
      if (!positionals[0]) throw new CelgradError('data stats needs a folder: celgrad data stats DIR');
      console.log(formatStats(await dataStats(positionals[0], { check: values.decode ? 'decode' : 'header' })));
      return 0;
    }
    throw new CelgradError(`unknown 'data' subcommand '${sub ?? ''}': use 'data synth' or 'data stats'`);
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
