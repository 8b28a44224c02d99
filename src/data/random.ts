// A small seeded random generator (mulberry32), so splits, shuffles and dropout masks repeat
// with --seed. Its state is one number, saved in checkpoints so a resumed run draws the same
// numbers an uninterrupted one would.

export interface Rng {
  (): number;
  /** The generator's state; makeRng(0, state) continues from it. */
  state(): number;
}

export function makeRng(seed: number, state?: number): Rng {
  let a = (state ?? seed) >>> 0;
  const next = (() => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }) as Rng;
  next.state = () => a;
  return next;
}

export function shuffle<T>(items: T[], rng: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}
