#!/usr/bin/python3
"""bench:recipe's PyTorch side: Graft's default two-phase recipe written as PyTorch's tutorials
write it, on the same pretrained MobileNetV2 (the zoo's weights, dumped by bench/recipe.ts) and
the same Fashion-MNIST folders.

  /usr/bin/python3 bench/recipe_torch.py <data dir with train/ and test/> <weights dir>

Warm-up: the body frozen (eval mode), its forward pass run every epoch, the head (global
average pool, dropout 0.2, dense) trained 3 epochs; fine-tune: every layer, 2 epochs, three
layer groups at 1/100, 1/10 and 1 of the peak LR, BatchNorm statistics kept (Graft's choice
for a run this short), horizontal flips. AdamW (weight decay 1e-2, eps 1e-7), batch 64,
one-cycle schedules at Graft's peaks (2e-3, then 1e-3), 10% of the training images held out
for validation. The clock runs from the start of the script and stops while the test set is
scored after each epoch (that is the benchmark's measurement, not the recipe). Last line: JSON.
"""
import json, sys, time
import numpy as np
import torch
from torch import nn
from torchvision import datasets, transforms

clock = time.perf_counter()
paused = 0.0
torch.set_num_threads(2)
torch.manual_seed(0)
data, wdir = sys.argv[1], sys.argv[2]
SIZE, BATCH, CLASSES = 96, 64, 10
LR, FT_LR, WD = 2e-3, 1e-3, 1e-2

manifest = json.load(open(f"{wdir}/manifest.json"))
buf = np.fromfile(f"{wdir}/weights.bin", dtype=np.float32)
W = {}
for m in manifest:
    n = int(np.prod(m["shape"]))
    W.setdefault(m["layer"], []).append(torch.from_numpy(buf[m["offset"]:m["offset"] + n].reshape(m["shape"]).copy()))


def cba(name, bn_name, depthwise=False, stride=1, act=True):
    """Keras conv (+ its BatchNorm, + ReLU6) as torch modules; Keras pads stride-2 convs (0, 1)."""
    k = W[name][0]
    w = k.permute(2, 3, 0, 1) if depthwise else k.permute(3, 2, 0, 1)  # -> [out, in/groups, kh, kw]
    out_c, kh = w.shape[0], w.shape[2]
    groups = out_c if depthwise else 1
    conv = nn.Conv2d(w.shape[1] * groups, out_c, kh, stride, padding=0 if stride == 2 or kh == 1 else kh // 2, groups=groups, bias=False)
    conv.weight.data.copy_(w.contiguous())
    bn = nn.BatchNorm2d(out_c, eps=1e-3, momentum=0.001)
    gamma, beta, mean, var = W[bn_name]
    bn.weight.data.copy_(gamma); bn.bias.data.copy_(beta); bn.running_mean.copy_(mean); bn.running_var.copy_(var)
    return nn.Sequential(*([nn.ZeroPad2d((0, 1, 0, 1))] if stride == 2 else []), conv, bn, *([nn.ReLU6()] if act else []))


class Block(nn.Module):
    def __init__(self, k, stride, residual):
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(cba(f"block_{k}_expand", f"block_{k}_expand_BN"), cba(f"block_{k}_depthwise", f"block_{k}_depthwise_BN", True, stride),
                                  cba(f"block_{k}_project", f"block_{k}_project_BN", act=False))

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


STRIDES = {1: 2, 3: 2, 6: 2}
RESIDUAL = {2, 4, 5, 7, 8, 9, 11, 12}
body = nn.Sequential(
    cba("Conv1", "bn_Conv1", stride=2),
    cba("expanded_conv_depthwise", "expanded_conv_depthwise_BN", True), cba("expanded_conv_project", "expanded_conv_project_BN", act=False),
    *[Block(k, STRIDES.get(k, 1), k in RESIDUAL) for k in range(1, 13)],
    cba("block_13_expand", "block_13_expand_BN"),  # the cut: block_13_expand_relu, 6x6x576 at 96x96
).to(memory_format=torch.channels_last)
head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(576, CLASSES))

plain = transforms.Compose([transforms.Grayscale(3), transforms.Resize(SIZE), transforms.ToTensor()])
flip = transforms.Compose([transforms.Grayscale(3), transforms.Resize(SIZE), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
train_all = datasets.ImageFolder(f"{data}/train", transform=plain)
order = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(0))
n_val = len(train_all) // 10
val_set = torch.utils.data.Subset(train_all, order[:n_val].tolist())
train_set = torch.utils.data.Subset(datasets.ImageFolder(f"{data}/train", transform=plain), order[n_val:].tolist())
train_flip = torch.utils.data.Subset(datasets.ImageFolder(f"{data}/train", transform=flip), order[n_val:].tolist())
test_set = datasets.ImageFolder(f"{data}/test", transform=plain)
loader = lambda d, shuffle: torch.utils.data.DataLoader(d, batch_size=BATCH, shuffle=shuffle, num_workers=0)


def model(x):
    return head(body(x.contiguous(memory_format=torch.channels_last)))


def accuracy(d):
    body.eval(); head.eval()
    right = 0
    with torch.no_grad():
        for x, y in loader(d, False):
            right += (model(x).argmax(1) == y).sum().item()
    return right / len(d)


def phase(name, epochs, params, lrs, data, train_bn):
    global paused
    opt = torch.optim.AdamW([{"params": p, "lr": lr} for p, lr in zip(params, lrs)], weight_decay=WD, eps=1e-7)
    steps = epochs * len(loader(data, True))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lrs, total_steps=steps, pct_start=0.3, div_factor=25, final_div_factor=1e4, cycle_momentum=False)
    for epoch in range(1, epochs + 1):
        body.train(train_bn); head.train()
        for x, y in loader(data, True):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step(); sched.step()
        val = accuracy(val_set)
        t = time.perf_counter()
        test = accuracy(test_set)
        paused += time.perf_counter() - t
        records.append({"phase": name, "epoch": epoch, "seconds": round(time.perf_counter() - clock - paused, 1), "valAccuracy": val, "testAccuracy": test})
        print(json.dumps(records[-1]), file=sys.stderr)


records = []
for p in body.parameters():
    p.requires_grad_(False)
phase("warm-up", 3, [list(head.parameters())], [LR], train_set, False)
for p in body.parameters():
    p.requires_grad_(True)
layers = list(body.children())
half = len(layers) // 2
groups = [[p for m in layers[:half] for p in m.parameters()], [p for m in layers[half:] for p in m.parameters()], list(head.parameters())]
# BatchNorm statistics kept: the body's BatchNorm layers stay in eval mode while their weights train.
phase("fine-tune", 2, groups, [FT_LR / 100, FT_LR / 10, FT_LR], train_flip, False)
print(json.dumps({"epochs": records, "seconds": records[-1]["seconds"], "testAccuracy": records[-1]["testAccuracy"], "torch": torch.__version__}))
