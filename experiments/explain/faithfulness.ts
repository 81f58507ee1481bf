// Faithfulness of explanation maps, as the Grad-CAM++ paper (Chattopadhyay et al. 2018, sec. 5.1) defines it.
// Y_i: the class score on the full image; O_i: the score on the image multiplied by its explanation map.
//   Average Drop %           = (1/N) sum_i max(0, Y_i - O_i) / Y_i * 100
//   % Increase in Confidence = (1/N) sum_i [O_i > Y_i] * 100
// pytorch-grad-cam's DropInConfidence omits the division by Y_i; this follows the paper. The score used
// here is the softmax probability of the target class (the caller says which, and the report prints it).

export interface Faithfulness {
  averageDrop: number;
  increaseInConfidence: number;
  images: number;
}

export function faithfulness(fullScores: ArrayLike<number>, maskedScores: ArrayLike<number>): Faithfulness {
  const n = fullScores.length;
  if (n !== maskedScores.length) throw new Error(`faithfulness: ${n} full-image scores but ${maskedScores.length} masked ones`);
  if (n === 0) return { averageDrop: NaN, increaseInConfidence: NaN, images: 0 };
  let drop = 0;
  let increases = 0;
  for (let i = 0; i < n; i++) {
    const y = fullScores[i];
    const o = maskedScores[i];
    if (!(y > 0)) throw new Error(`faithfulness: the full-image score must be positive (softmax probability), got ${y} at image ${i}`);
    drop += Math.max(0, y - o) / y;
    if (o > y) increases++;
  }
  return { averageDrop: (drop / n) * 100, increaseInConfidence: (increases / n) * 100, images: n };
}
