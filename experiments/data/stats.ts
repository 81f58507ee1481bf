// `celgrad data stats DIR`: what a dataset holds, and which files could not be used.
import { readDataset, type Check, type Layout } from './folder.ts';
import type { Problem } from './types.ts';

export interface DataStats {
  root: string;
  layout: Layout;
  identities: number;
  images: number;
  /** Fewest and most usable images of one identity. */
  perIdentity: [number, number];
  /** Full image sizes (before any face-box crop). */
  width: [number, number];
  height: [number, number];
  /** Skipped files and folders with the reason. */
  problems: Problem[];
}

/** Reads every identity of `dir`; `check: 'decode'` (slower) also finds truncated files. */
export async function dataStats(dir: string, options: { check?: Exclude<Check, 'none'> } = {}): Promise<DataStats> {
  const data = await readDataset(dir, { check: options.check ?? 'header' });
  const counts = new Array<number>(data.classes.length).fill(0);
  for (const s of data.samples) counts[s.label]++;
  return {
    root: data.root,
    layout: data.layout,
    identities: data.classes.length,
    images: data.samples.length,
    perIdentity: [Math.min(...counts), Math.max(...counts)],
    width: data.sizeRange!.width,
    height: data.sizeRange!.height,
    problems: data.problems,
  };
}

export function formatStats(s: DataStats): string {
  const range = ([lo, hi]: [number, number]) => (lo === hi ? `${lo}` : `${lo}..${hi}`);
  const lines = [
    `${s.root} (${s.layout === 'icartoonface' ? 'iCartoonFace recognition training layout' : 'ImageFolder'})`,
    `identities   ${s.identities}`,
    `images       ${s.images} (${range(s.perIdentity)} per identity)`,
    `width        ${range(s.width)} px`,
    `height       ${range(s.height)} px`,
    `unreadable   ${s.problems.length}`,
    ...s.problems.map((p) => `  ${p.path}: ${p.reason}`),
  ];
  return lines.join('\n');
}
