// Charts of a study: Vega-Lite spec -> vega View (headless, renderer 'none') -> SVG -> PNG with resvg.
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { FONT_FAMILY, svgToPng } from './raster.ts';

/** One epoch of a training run. Accuracies are fractions in [0, 1]. */
export interface EpochMetrics {
  epoch: number;
  trainLoss: number;
  valLoss: number;
  trainAcc: number;
  valAcc: number;
}

export interface RunCurves {
  name: string;
  metrics: EpochMetrics[];
}

/** A verification ROC: false accept rate against true accept rate, both fractions. */
export interface RocCurve {
  name: string;
  fpr: number[];
  tpr: number[];
}

export interface BarDatum {
  /** Position on the x axis (e.g. the model). */
  category: string;
  /** Bars side by side within a category, one colour each (e.g. the regime). */
  series: string;
  value: number;
}

export interface Chart {
  svg: string;
  /** Rendered at twice the SVG's size, for print. */
  png: Uint8Array;
}

type ChildSpec = Extract<TopLevelSpec, { hconcat: unknown }>['hconcat'][number];

const config = {
  font: FONT_FAMILY,
  title: { fontSize: 14 },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 260 },
};

async function render(spec: TopLevelSpec): Promise<Chart> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    return { svg, png: svgToPng(svg, 2) };
  } finally {
    view.finalize();
  }
}

/** Figure 1: loss (left) and accuracy (right) per epoch; colour = run, dash = train/validation. */
export function lossCurves(runs: RunCurves[]): Promise<Chart> {
  const names = runs.map((r) => r.name);
  const values = runs.flatMap((r) =>
    r.metrics.flatMap((m) => [
      { run: r.name, epoch: m.epoch, split: 'train', metric: 'loss', value: m.trainLoss },
      { run: r.name, epoch: m.epoch, split: 'validation', metric: 'loss', value: m.valLoss },
      { run: r.name, epoch: m.epoch, split: 'train', metric: 'accuracy', value: m.trainAcc },
      { run: r.name, epoch: m.epoch, split: 'validation', metric: 'accuracy', value: m.valAcc },
    ]),
  );
  const panel = (metric: 'loss' | 'accuracy'): ChildSpec => ({
    title: metric === 'loss' ? 'Loss per epoch' : 'Accuracy per epoch',
    width: 340,
    height: 260,
    transform: [{ filter: { field: 'metric', equal: metric } }],
    encoding: {
      x: { field: 'epoch', type: 'quantitative', title: 'Epoch', axis: { tickMinStep: 1, format: 'd' } },
      y:
        metric === 'loss'
          ? // Log scale: an early validation loss in the thousands (batch-norm statistics not yet settled) must not flatten the rest.
            { field: 'value', type: 'quantitative', title: 'Cross-entropy loss (log scale)', scale: { type: 'log' } }
          : { field: 'value', type: 'quantitative', title: 'Accuracy', scale: { domain: [0, 1] }, axis: { format: '.0%' } },
      color: { field: 'run', type: 'nominal', title: 'Run', sort: names, scale: { scheme: 'tableau10' } },
    },
    // Points in their own layer so that the split legend shows dashes rather than merged point symbols.
    layer: [
      {
        mark: 'line',
        encoding: {
          strokeDash: { field: 'split', type: 'nominal', title: 'Split', sort: ['train', 'validation'], legend: { symbolType: 'stroke', symbolStrokeColor: '#444', symbolSize: 400 } },
        },
      },
      { mark: { type: 'point', filled: true, size: 25 } },
    ],
  });
  return render({
    title: { text: 'Training and validation loss and accuracy', anchor: 'middle', fontSize: 16, offset: 12 },
    data: { values },
    hconcat: [panel('loss'), panel('accuracy')],
    // One legend for both panels.
    resolve: { scale: { color: 'shared', strokeDash: 'shared' }, legend: { color: 'shared', strokeDash: 'shared' } },
    config,
  });
}

/** Verification ROC on a log FAR axis, with guides at the FARs usually reported (1e-4, 1e-3, 1e-2). */
export function rocChart(curves: RocCurve[]): Promise<Chart> {
  // A log axis cannot show FAR = 0; those points carry no information on it anyway.
  const values = curves.flatMap((c) =>
    c.fpr.flatMap((fpr, i) => (fpr > 0 ? [{ run: c.name, fpr, tpr: c.tpr[i] }] : [])),
  );
  // Label only the powers of ten the data spans; vega's default log ticks mix in 2x and 5x values.
  const lowest = Math.floor(Math.log10(values.reduce((m, v) => Math.min(m, v.fpr), 1e-4)));
  const decades = Array.from({ length: 1 - lowest }, (_, i) => 10 ** (lowest + i));
  return render({
    title: 'Verification ROC',
    width: 420,
    height: 300,
    layer: [
      {
        data: { values: [1e-4, 1e-3, 1e-2].map((far) => ({ far })) },
        mark: { type: 'rule', color: '#aaa', strokeDash: [3, 3] },
        encoding: { x: { field: 'far', type: 'quantitative' } },
      },
      {
        data: { values },
        mark: { type: 'line', interpolate: 'step-after' },
        encoding: {
          x: {
            field: 'fpr',
            type: 'quantitative',
            title: 'False accept rate (FAR)',
            scale: { type: 'log' },
            axis: { values: decades, format: '.0e' },
          },
          y: { field: 'tpr', type: 'quantitative', title: 'True accept rate (TAR)', scale: { domain: [0, 1] } },
          color: { field: 'run', type: 'nominal', title: 'Run', sort: curves.map((c) => c.name), scale: { scheme: 'tableau10' } },
        },
      },
    ],
    config,
  });
}

/** Grouped bars: one group per category, one bar per series within it. `percent` formats fractions as %. */
export function barChart(data: BarDatum[], opts: { title: string; valueTitle: string; percent?: boolean }): Promise<Chart> {
  return render({
    title: opts.title,
    width: { step: 40 },
    height: 220,
    data: { values: data },
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'category', type: 'nominal', title: null, sort: null, axis: { labelAngle: 0 } },
      xOffset: { field: 'series', type: 'nominal', sort: null },
      y: {
        field: 'value',
        type: 'quantitative',
        title: opts.valueTitle,
        ...(opts.percent ? { axis: { format: '.0%' }, scale: { domain: [0, 1] } } : {}),
      },
      color: { field: 'series', type: 'nominal', title: null, sort: null, scale: { scheme: 'tableau10' } },
    },
    config,
  });
}
