// `celgrad eval`: a trained run's best weights on its validation split (or another data folder):
// top-1 / top-5, per-class accuracy and the most frequent confusions.
import { join } from 'node:path';
import { DataLoader, readDataset, readSplit, valTransform, type Sample } from './data/index.ts';
import { loadRunModel } from './runs.ts';
import { evaluate } from './train.ts';

export interface EvalReport {
  run: string;
  images: number;
  top1: number;
  top5: number;
  loss: number;
  perClass: { name: string; accuracy: number; images: number }[];
  confusions: { actual: string; predicted: string; count: number }[];
  text: string;
}

export async function evalRun(run: string, options: { data?: string } = {}): Promise<EvalReport> {
  const { model, config } = loadRunModel(run);
  let samples: Sample[];
  if (options.data) {
    const ds = await readDataset(options.data);
    const index = new Map(config.classes.map((c, i) => [c, i]));
    samples = ds.samples.flatMap((s) => {
      const label = index.get(ds.classes[s.label]);
      return label === undefined ? [] : [{ ...s, label }];
    });
  } else samples = readSplit(join(run, 'split.json')).val as Sample[];
  const loader = new DataLoader({ samples, batchSize: config.batchSize, transform: valTransform(config.inputSize) });
  try {
    const r = await evaluate(model, loader, config.inputSize, config.classes.length);
    const perClass = r.perClass.map((c, i) => ({ name: config.classes[i], accuracy: c.total ? c.correct / c.total : NaN, images: c.total }));
    const counts = new Map<string, number>();
    r.labels.forEach((label, i) => {
      if (r.predictions[i] !== label) {
        const key = `${label}>${r.predictions[i]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    });
    const confusions = [...counts]
      .map(([key, count]) => {
        const [a, p] = key.split('>').map(Number);
        return { actual: config.classes[a], predicted: config.classes[p], count };
      })
      .sort((x, y) => y.count - x.count)
      .slice(0, 10);
    const lines = [
      `run ${run}: ${r.images} images, top-1 ${(r.top1 * 100).toFixed(2)}%, top-5 ${(r.top5 * 100).toFixed(2)}%, loss ${r.loss.toFixed(4)}`,
      'per class:',
      ...perClass.map((c) => `  ${c.name.padEnd(24)} ${(c.accuracy * 100).toFixed(1).padStart(6)}%  (${c.images} images)`),
      'most frequent confusions:',
      ...(confusions.length ? confusions.map((c) => `  ${c.actual} -> ${c.predicted}: ${c.count}`) : ['  none']),
    ];
    return { run, images: r.images, top1: r.top1, top5: r.top5, loss: r.loss, perClass, confusions, text: lines.join('\n') };
  } finally {
    loader.close();
    model.dispose();
  }
}
