// The decision rule of `graft compare`: from measured accuracies per variant and training-set
// size, plain words on whether transfer learning pays off here, and where it stops paying.

export interface VariantResult {
  name: string;
  /** Labels per class. */
  size: number;
  accuracyMean: number;
  accuracyStd: number;
  seconds: number;
  trainableParams: number;
  modelBytes: number;
}

export const TRANSFER_VARIANTS = ['knn', 'linear-probe', 'warm-up', 'full-recipe', 'lp-ft'];
/** Within this many accuracy points, two variants count as equal. */
export const EQUAL_POINTS = 1;

const pts = (v: number) => `${(100 * v).toFixed(1)}`;

export function recommend(results: VariantResult[]): string {
  const sizes = [...new Set(results.map((r) => r.size))].sort((a, b) => a - b);
  if (!sizes.length) return 'No results to compare.';
  const at = (size: number) => {
    const rows = results.filter((r) => r.size === size);
    const scratch = rows.find((r) => r.name === 'scratch');
    const transfer = rows.filter((r) => TRANSFER_VARIANTS.includes(r.name)).sort((a, b) => b.accuracyMean - a.accuracyMean)[0];
    return { scratch, transfer, gain: scratch && transfer ? transfer.accuracyMean - scratch.accuracyMean : undefined };
  };
  const words: string[] = [];
  const small = at(sizes[0]);
  const large = at(sizes[sizes.length - 1]);
  if (small.gain === undefined || large.gain === undefined) {
    const best = results.slice().sort((a, b) => b.accuracyMean - a.accuracyMean)[0];
    return `Best: ${best.name} with ${best.size} labels per class (${pts(best.accuracyMean)}%). Add the scratch variant to judge whether transfer pays off.`;
  }
  // Where transfer stops paying: the first size at which it is no longer EQUAL_POINTS ahead
  // (scratch within a point of it, or ahead of it).
  const equalAfter = sizes.find((s) => at(s).gain! * 100 < EQUAL_POINTS);
  if (large.gain * 100 <= -EQUAL_POINTS) {
    const gap = Math.abs(large.gain * 100).toFixed(1);
    words.push(`With ${sizes[sizes.length - 1]} labels per class, training from scratch (${pts(large.scratch!.accuracyMean)}%) is ${gap} points better than the best transfer variant (${large.transfer!.name}, ${pts(large.transfer!.accuracyMean)}%): here the pretrained features cost accuracy; train from scratch.`);
  } else if (large.gain * 100 < EQUAL_POINTS) {
    const ratio = large.scratch!.modelBytes > 0 ? large.transfer!.modelBytes / large.scratch!.modelBytes : 1;
    const smaller = ratio >= 1.5 ? ` and ${ratio.toFixed(1)}x smaller` : '';
    const gap = Math.abs(large.gain * 100).toFixed(1);
    const how = large.gain < 0 ? `${gap} points better than` : `within ${gap} point${Number(gap) >= 1.95 ? 's' : ''} of`;
    words.push(`With ${sizes[sizes.length - 1]} labels per class, training from scratch (${pts(large.scratch!.accuracyMean)}%) is ${how} the best transfer variant (${large.transfer!.name}, ${pts(large.transfer!.accuracyMean)}%)${smaller}: transfer is optional here.`);
  } else {
    words.push(`With ${sizes[sizes.length - 1]} labels per class, transfer (${large.transfer!.name}, ${pts(large.transfer!.accuracyMean)}%) still beats training from scratch (${pts(large.scratch!.accuracyMean)}%) by ${(large.gain * 100).toFixed(1)} points: use it.`);
  }
  if (sizes.length > 1) {
    words.push(`With ${sizes[0]} labels per class, transfer is ${(small.gain * 100).toFixed(1)} points ${small.gain >= 0 ? 'better' : 'worse'} (${small.transfer!.name} ${pts(small.transfer!.accuracyMean)}% vs scratch ${pts(small.scratch!.accuracyMean)}%).`);
    const before = equalAfter !== undefined ? sizes[sizes.indexOf(equalAfter) - 1] : undefined;
    words.push(equalAfter !== undefined && before !== undefined
      ? `Transfer stops paying off between ${before} and ${equalAfter} labels per class.`
      : equalAfter === sizes[0] ? 'At every size tried, scratch is as good: the pretrained features do not help this task.' : 'Transfer pays off at every size tried.');
  }
  const cheapest = results.filter((r) => r.size === sizes[sizes.length - 1] && TRANSFER_VARIANTS.includes(r.name))
    .filter((r) => (large.transfer!.accuracyMean - r.accuracyMean) * 100 < EQUAL_POINTS).sort((a, b) => a.seconds - b.seconds)[0];
  if (cheapest && cheapest.name !== large.transfer!.name) words.push(`${cheapest.name} is within ${EQUAL_POINTS} point of the best and the quickest (${cheapest.seconds.toFixed(1)} s).`);
  return words.join(' ');
}
