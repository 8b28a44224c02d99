#!/usr/bin/python3
"""Independent reference for Graft's small-data head: multinomial logistic regression with L2,
fitted by torch.optim.LBFGS in Debian's python3-torch on the pooled body features Graft extracts
(written by bench/small-data.ts as float32 files). Standardisation from the training rows; the
L2 strength chosen by stratified 5-fold cross-validation (sklearn-style round-robin folds,
written here independently of Graft's code); also the test accuracy at every strength.
Usage: reference_logreg.py <dir with train.f32 train.labels test.f32 test.labels meta.json>
Prints one JSON object."""
import json, sys
import torch

torch.set_num_threads(2)
torch.manual_seed(0)
GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]

def load(d, part, dim):
    import array
    x = array.array('f'); x.frombytes(open(f'{d}/{part}.f32', 'rb').read())
    y = array.array('i'); y.frombytes(open(f'{d}/{part}.labels', 'rb').read())
    return torch.tensor(x, dtype=torch.float64).view(-1, dim), torch.tensor(y, dtype=torch.long)

def fit(x, y, k, l2):
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=1000, tolerance_grad=1e-7, tolerance_change=1e-12, history_size=10, line_search_fn='strong_wolfe')
    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach(), b.detach()

def standardise(tr, *others):
    mu = tr.mean(0); sd = tr.std(0, unbiased=False); sd[sd < 1e-6] = 1
    return [(t - mu) / sd for t in (tr, *others)]

def acc(w, b, x, y):
    return ((x @ w + b).argmax(1) == y).double().mean().item()

def main():
    d = sys.argv[1]
    meta = json.load(open(f'{d}/meta.json'))
    dim, k = meta['d'], meta['k']
    xtr, ytr = load(d, 'train', dim)
    xte, yte = load(d, 'test', dim)
    folds = min(5, int(torch.bincount(ytr, minlength=k).min()))
    g = torch.Generator().manual_seed(meta.get('seed', 0))
    fold = torch.empty(len(ytr), dtype=torch.long)
    for c in range(k):
        ix = (ytr == c).nonzero().flatten()
        ix = ix[torch.randperm(len(ix), generator=g)]
        fold[ix] = torch.arange(len(ix)) % folds
    cv = []
    for l2 in GRID:
        accs = []
        for f in range(folds):
            tr, te = fold != f, fold == f
            a, bb = standardise(xtr[tr], xtr[te])
            w, b = fit(a, ytr[tr], k, l2)
            accs.append(acc(w, b, bb, ytr[te]))
        cv.append(sum(accs) / len(accs))
    best = max(range(len(GRID)), key=lambda i: (cv[i], GRID[i]))
    a, bb = standardise(xtr, xte)
    test = []
    for l2 in GRID:
        w, b = fit(a, ytr, k, l2)
        test.append(acc(w, b, bb, yte))
    print(json.dumps({'torch': torch.__version__, 'folds': folds, 'grid': GRID, 'cvAccuracy': cv, 'chosenL2': GRID[best],
                      'testAccuracy': test[best], 'testAccuracyByL2': test}))

main()
