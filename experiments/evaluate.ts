// `celgrad eval`: a trained run's best weights on its validation split (or another data folder):
// top-1 / top-5, per-class accuracy and the most frequent confusions.
import { join } from 'node:path';
import { DataLoader, readDataset, readSplit, valTransform, type Sample } from './data/index.ts';
import { loadRunModel } from './runs.ts';
import { evaluate } from './train.ts';
import { verification } from './study-metrics.ts';
import type { VerificationReport } from './verify.ts';

export type EvalProtocol = 'classification' | 'identification' | 'verification';

export interface EvalReport {
  run: string;
  images: number;
  top1: number;
  top5: number;
  loss: number;
  perClass: { name: string; accuracy: number; images: number }[];
  confusions: { actual: string; predicted: string; count: number }[];
  /** With --protocol identification or verification: the embedding evaluation. */
  embeddings?: Omit<VerificationReport, 'roc'>;
  text: string;
}

export async function evalRun(run: string, options: { data?: string; protocol?: EvalProtocol } = {}): Promise<EvalReport> {
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
    let embeddings: EvalReport['embeddings'];
    if (options.protocol && options.protocol !== 'classification') {
      const { roc: _curve, ...v } = await verification(model, samples, config.inputSize, config.batchSize);
      embeddings = v;
      lines.push(
        options.protocol === 'identification'
          ? `identification: top-1 ${(v.top1 * 100).toFixed(2)}% (${v.probes} probes against a gallery of ${v.galleryImages}, one image per identity, cosine similarity of the penultimate features)`
          : `verification: ${v.genuinePairs} genuine / ${v.impostorPairs} impostor pairs (cosine similarity); ` +
              v.tar.map((t) => `TAR@FAR=${t.far}: ${t.tar === null ? `n/a (below the resolution ${v.farResolution.toExponential(1)})` : `${(t.tar * 100).toFixed(2)}%`}`).join(', '),
      );
    }
    return { run, images: r.images, top1: r.top1, top5: r.top5, loss: r.loss, perClass, confusions, embeddings, text: lines.join('\n') };
  } finally {
    loader.close();
    model.dispose();
  }
}
