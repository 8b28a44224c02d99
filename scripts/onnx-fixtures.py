#!/usr/bin/python3
"""Exports a small CNN to ONNX with Debian's python3-torch, and records, for a few inputs, its
outputs and the activations at an intermediate node (what Graft's ONNX body must return).

  /usr/bin/python3 scripts/onnx-fixtures.py test/fixtures/onnx
"""
import json, os, sys
import numpy as np
import onnx
import torch
from torch import nn

OUT = sys.argv[1] if len(sys.argv) > 1 else 'test/fixtures/onnx'
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(3)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        feat = torch.relu(self.conv2(x))
        self.feat = feat
        return torch.softmax(self.fc(feat.mean(dim=(2, 3))), dim=1)


model = Tiny().eval()
with torch.no_grad():
    model.bn1.running_mean.uniform_(-0.2, 0.2)
    model.bn1.running_var.uniform_(0.5, 1.5)
x = torch.rand(4, 3, 16, 16)
path = os.path.join(OUT, 'tiny-cnn.onnx')
torch.onnx.export(model, x, path, input_names=['pixels'], output_names=['probs'], opset_version=13,
                  dynamic_axes={'pixels': {0: 'batch'}, 'probs': {0: 'batch'}})
graph = onnx.load(path).graph
relus = [n for n in graph.node if n.op_type == 'Relu']
cut = relus[1].output[0]
with torch.no_grad():
    probs = model(x)
json.dump({
    'input': x.numpy().ravel().tolist(), 'inputShape': list(x.shape), 'layout': 'NCHW',
    'cut': cut, 'cutNode': relus[1].name, 'features': model.feat.numpy().ravel().tolist(), 'featureShape': list(model.feat.shape),
    'probs': probs.numpy().ravel().tolist(), 'nodes': [n.name for n in graph.node],
}, open(os.path.join(OUT, 'expected.json'), 'w'))
print(f'wrote {path} ({os.path.getsize(path)} bytes) and expected.json; cut at {cut} ({relus[1].name})')
