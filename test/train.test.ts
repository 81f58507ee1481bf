// Training end to end on the software adapter: the whole stack can fit a batch, a run writes every
// artefact and skips bad files, and a run killed with SIGKILL resumes to the metrics of an
// uninterrupted one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Adam, Tensor, crossEntropy, scopeAsync } from '../engine/index.ts';
import { readSafetensors } from '../engine/io/index.ts';
import { createModel, logitsOf } from '../models/index.ts';
import { EASY_DIFFICULTY, generateSynthFaces } from '../experiments/data/index.ts';
import { readMetrics, train, type TrainConfig } from '../experiments/train.ts';
import './gpu.ts';

const root = mkdtempSync(join(tmpdir(), 'celgrad-train-'));
const data = join(root, 'faces');
generateSynthFaces({ out: data, identities: 3, perIdentity: 8, size: 40, seed: 11, difficulty: EASY_DIFFICULTY });

const tiny = (out: string): TrainConfig => ({
  model: 'resnet50',
  data,
  regime: 'scratch',
  out,
  epochs: 2,
  batchSize: 6,
  imageSize: 32,
  cropScale: [0.6, 1],
  seed: 3,
  workers: 1,
  quiet: true,
});

test('the whole training stack fits one batch: ResNet-50 drives its loss to ~0 in 8 Adam steps', async () => {
  const model = createModel('resnet50', { numClasses: 4, seed: 1 });
  const adam = new Adam(model.parameters(), { lr: 1e-3 });
  const x = Tensor.uniform([8, 3, 32, 32], -1, 1, 7);
  const y = Tensor.fromArray([0, 1, 2, 3, 0, 1, 2, 3], [8], 'i32');
  model.train();
  let loss = Infinity;
  const losses: number[] = [];
  for (let i = 0; i < 8; i++) {
    loss = await scopeAsync(() => {
      const l = crossEntropy(logitsOf(model.call(x)), y);
      l.backward();
      adam.step();
      adam.zeroGrad();
      return l.item();
    });
    losses.push(loss);
  }
  assert.ok(loss < 0.05, `loss after 8 steps: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
  x.dispose();
  y.dispose();
  adam.dispose();
  model.dispose();
});

test('a run writes metrics, best weights, filter snapshots and a checkpoint; bad files are skipped and listed', async () => {
  const bad = join(root, 'with-bad-files');
  generateSynthFaces({ out: bad, identities: 3, perIdentity: 6, size: 40, seed: 12 });
  writeFileSync(join(bad, 'id000', 'empty.png'), '');
  writeFileSync(join(bad, 'id001', 'garbage.jpg'), 'this is not a jpeg');
  const out = join(root, 'run-bad');
  const result = await train({ ...tiny(out), data: bad, epochs: 1 });
  const metrics = readMetrics(out);
  assert.is(metrics.length, 1);
  for (const key of ['epoch', 'trainLoss', 'trainAcc', 'valLoss', 'valAcc', 'lr', 'imagesPerSec', 'seconds'] as const) {
    assert.ok(Number.isFinite(metrics[0][key]), `metrics.${key} = ${metrics[0][key]}`);
  }
  assert.ok(metrics[0].valAcc >= 0 && metrics[0].valAcc <= 1);
  const best = readSafetensors(new Uint8Array(readFileSync(join(out, 'best.safetensors'))));
  assert.equal(best.tensors.get('conv1.weight')?.shape, [64, 3, 7, 7]);
  assert.equal(best.tensors.get('fc.weight')?.shape, [3, 2048]);
  assert.ok(existsSync(join(out, 'checkpoint.safetensors')));
  const snapshots = readdirSync(join(out, 'filters', 'epoch-00'));
  for (const layer of result.filterLayers) assert.ok(snapshots.includes(`${layer}.png`), `filters/epoch-00/${layer}.png`);
  const log = readFileSync(join(out, 'run.log'), 'utf8');
  assert.match(log, /skipped .*empty\.png/);
  assert.match(log, /skipped .*garbage\.jpg/);
});

/**
 * Runs `celgrad train` in a child process; `killWhen` is polled every 50 ms and the child gets SIGKILL
 * when it returns true. Resolves with the exit code or signal.
 */
function celgrad(args: string[], killWhen?: () => boolean): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/celgrad.mjs', ...args], { stdio: 'ignore' });
    const poll = killWhen && setInterval(() => killWhen() && child.kill('SIGKILL'), 50);
    child.on('close', (code, signal) => {
      if (poll) clearInterval(poll);
      resolve({ code, signal });
    });
  });
}

/** The (epoch, batch) a run's checkpoint has reached, or null before the first one. */
function checkpointPosition(run: string): { epoch: number; batch: number } | null {
  const file = join(run, 'checkpoint.safetensors');
  if (!existsSync(file)) return null;
  const meta = JSON.parse(readSafetensors(new Uint8Array(readFileSync(file))).metadata.celgrad);
  return { epoch: meta.epoch, batch: meta.batch };
}

test('kill -9 mid-training, then --resume: the metrics equal an uninterrupted run with the same seed', async () => {
  const reference = join(root, 'uninterrupted');
  await train({ ...tiny(reference), checkpointEvery: 1 });
  const expected = readMetrics(reference);

  const crashed = join(root, 'crashed');
  const args = ['train', '--model', 'resnet50', '--data', data, '--regime', 'scratch', '--out', crashed, '--epochs', '2', '--batch-size', '6',
    '--image-size', '32', '--crop-scale', '0.6,1', '--seed', '3', '--checkpoint-every', '1'];
  // Kill in the middle of the second epoch, once a mid-epoch checkpoint exists (it is written atomically).
  const first = await celgrad(args, () => {
    const at = checkpointPosition(crashed);
    return at !== null && at.epoch === 1 && at.batch >= 1;
  });
  assert.is(first.signal, 'SIGKILL', `the first run should have been killed (exit ${first.code})`);
  assert.ok(readMetrics(crashed).length < 2, 'the killed run had not finished');
  const second = await celgrad([...args, '--resume']);
  assert.is(second.code, 0);
  const got = readMetrics(crashed);
  assert.is(got.length, expected.length);
  got.forEach((m, i) => {
    for (const key of ['trainLoss', 'trainAcc', 'valLoss', 'valAcc', 'lr'] as const) {
      const e = expected[i][key];
      assert.ok(Math.abs(m[key] - e) <= 1e-5 * Math.max(1, Math.abs(e)), `epoch ${i} ${key}: resumed ${m[key]} vs uninterrupted ${e}`);
    }
  });
});

test('a non-finite loss stops the run with a message naming the step, keeping the last good checkpoint', async () => {
  const out = join(root, 'nan');
  let error: unknown;
  try {
    await train({ ...tiny(out), epochs: 1, lr: 1e30 });
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof Error, 'the run should fail');
  assert.match((error as Error).message, /loss is (NaN|Infinity|-Infinity) at epoch 0, step \d+/);
});

test.run();
