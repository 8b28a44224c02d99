// Options merged over defaults, where an option given as undefined keeps the default
// (a plain spread would let `{ lr: undefined }` erase the default LR).

export function withDefaults<D extends object, O extends object>(defaults: D, options: O): D & O {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  return { ...defaults, ...defined } as D & O;
}
