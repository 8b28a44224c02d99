#!/usr/bin/python3
"""The PyTorch side of the bodies equivalence test: a torchvision CNN with seeded random
weights, exported to ONNX with BatchNorm kept (training-mode export, no constant folding) and
with BatchNorm folded (eval-mode export), then fine-tuned for a few AdamW steps in PyTorch.
Graft imports the same ONNX file and must reproduce every loss and every weight.

  /usr/bin/python3 scripts/torchvision-reference.py <model> <out-dir> [size] [steps]

Writes to <out-dir>:
  <model>.onnx          the model at its initial weights (BatchNorm kept, softmax output)
  <model>-folded.onnx   the same in eval mode with BatchNorm folded into the convolutions
  <model>-trained.onnx  the model after the PyTorch steps (same graph, trained weights)
  x.bin, labels.bin     the batches (float32 NHWC, int32), one per step
  reference.json        losses per step and the optimizer settings used
Dropout and stochastic depth are set to 0 so both sides compute the same function.
"""
import copy, json, os, sys
import torch
import torchvision
from torch import nn

name = sys.argv[1]
out = sys.argv[2]
size = int(sys.argv[3]) if len(sys.argv) > 3 else 64
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 10
batch, classes = int(os.environ.get('REF_BATCH', 8)), 5
lr, wd, eps = float(os.environ.get('REF_LR', 1e-5)), float(os.environ.get('REF_WD', 0.01)), float(os.environ.get('REF_EPS', 1e-7))
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get('REF_THREADS', 1)))

net = getattr(torchvision.models, name)(weights=None, num_classes=classes)
for m in net.modules():
    if isinstance(m, nn.Dropout):
        m.p = 0.0
    if type(m).__name__ == 'StochasticDepth':
        m.p = 0.0
    if isinstance(m, nn.BatchNorm2d):
        # Statistics and affine parameters away from their initial 0 and 1.
        with torch.no_grad():
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.8, 1.2)
            m.weight.uniform_(0.8, 1.2)
            m.bias.uniform_(-0.1, 0.1)
# torchvision initializes the classifier small (mobilenet_v3's gives near-uniform outputs): make
# the outputs confident enough that the losses and their gradients test something.
last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
with torch.no_grad():
    last.weight.mul_(float(os.environ.get('REF_HEAD_SCALE', 1.0)))
model = nn.Sequential(net, nn.Softmax(dim=1))
x0 = torch.rand(1, 3, size, size)


def export(m, path, training):
    # Export a copy: a training-mode trace runs a forward that moves BatchNorm statistics.
    c = copy.deepcopy(m)
    c.train(training)
    torch.onnx.export(c, x0, path, input_names=['input'], output_names=['probs'], opset_version=13,
                      training=torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL,
                      do_constant_folding=not training, dynamic_axes={'input': {0: 'batch'}, 'probs': {0: 'batch'}})


export(model, os.path.join(out, f'{name}.onnx'), True)
export(model, os.path.join(out, f'{name}-folded.onnx'), False)

g = torch.Generator().manual_seed(1)
xs = torch.rand(steps, batch, 3, size, size, generator=g)
ys = torch.randint(0, classes, (steps, batch), generator=g)
xs.permute(0, 1, 3, 4, 2).contiguous().numpy().astype('float32').tofile(os.path.join(out, 'x.bin'))
ys.numpy().astype('int32').tofile(os.path.join(out, 'labels.bin'))

# Parameters whose gradient is rounding noise: mathematically about zero (a BatchNorm beta
# feeding a convolution whose output is batch-normalized again), so float32 gives it an
# arbitrary sign, which Adam turns into a full step either way. Found by the float32 gradient
# of the first batch differing from the float64 one by more than half its size.
def grads(m, x, y):
    m.zero_grad()
    p = m(x)
    (-p.gather(1, y.unsqueeze(1)).squeeze(1).clamp(1e-7, 1.0).log().mean()).backward()
    return {k: v.grad.detach().clone().double() for k, v in m.named_parameters()}
m64 = copy.deepcopy(model).double().train()
g64 = grads(m64, xs[0].double(), ys[0])
g32 = grads(copy.deepcopy(model).train(), xs[0], ys[0])
noise = [k for k in g64 if (g32[k] - g64[k]).norm() > 0.5 * g64[k].norm()]

# Graft's AdamW: decoupled weight decay on weights of rank > 1 only, epsilon outside the root.
decay = [p for p in model.parameters() if p.dim() > 1]
rest = [p for p in model.parameters() if p.dim() <= 1]
opt = torch.optim.AdamW([{'params': decay, 'weight_decay': wd}, {'params': rest, 'weight_decay': 0.0}], lr=lr, betas=(0.9, 0.999), eps=eps)
model.train()
losses = []
for s in range(steps):
    opt.zero_grad()
    probs = model(xs[s])
    loss = -probs.gather(1, ys[s].unsqueeze(1)).squeeze(1).clamp(1e-7, 1.0).log().mean()
    loss.backward()
    opt.step()
    losses.append(loss.item())
export(model, os.path.join(out, f'{name}-trained.onnx'), True)
json.dump({'model': name, 'size': size, 'steps': steps, 'batch': batch, 'classes': classes, 'lr': lr, 'weightDecay': wd, 'epsilon': eps,
           'losses': losses, 'noiseGradients': noise, 'torch': torch.__version__, 'torchvision': torchvision.__version__}, open(os.path.join(out, 'reference.json'), 'w'))
print(f'{name}: losses {", ".join(f"{l:.5f}" for l in losses)}; {len(noise)} parameters with a rounding-noise gradient: {", ".join(noise)}')
