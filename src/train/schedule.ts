// Learning-rate schedules, as a multiplier of the peak LR for progress t in [0, 1].

export type ScheduleName = 'one-cycle' | 'cosine' | 'constant';

export interface ScheduleOptions {
  pctStart: number;
  div: number;
  finalDiv: number;
}

const cosineBetween = (from: number, to: number, t: number) => to + ((from - to) * (1 + Math.cos(Math.PI * t))) / 2;

export function lrFactor(name: ScheduleName, t: number, o: ScheduleOptions): number {
  const p = Math.min(Math.max(t, 0), 1);
  if (name === 'constant') return 1;
  if (name === 'cosine') return cosineBetween(1, 0, p);
  // one-cycle: cosine up from 1/div to 1 over pctStart, then cosine down to 1/finalDiv
  if (p < o.pctStart) return cosineBetween(1 / o.div, 1, p / o.pctStart);
  return cosineBetween(1, 1 / o.finalDiv, (p - o.pctStart) / (1 - o.pctStart));
}

/** fastai's even_mults: n learning rates spaced geometrically from lo to hi. */
export function evenMults(lo: number, hi: number, n: number): number[] {
  if (n === 1) return [hi];
  return Array.from({ length: n }, (_, i) => lo * (hi / lo) ** (i / (n - 1)));
}
