#!/usr/bin/python3
"""Writes a small tfjs GraphModel (model.json in the "graph-model" format the tfjs converter
writes: a TensorFlow GraphDef as JSON, weights in a binary shard) and, computed here with
numpy, its activations at an intermediate node and its outputs, for Graft's tests.

  /usr/bin/python3 scripts/graph-model-fixtures.py test/fixtures/graph-model
"""
import base64, json, os, sys
import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else 'test/fixtures/graph-model'
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(11)
k1 = (rng.standard_normal((3, 3, 3, 4)) * 0.4).astype(np.float32)
b1 = (rng.standard_normal(4) * 0.1).astype(np.float32)
k2 = (rng.standard_normal((3, 3, 4, 8)) * 0.3).astype(np.float32)
b2 = (rng.standard_normal(8) * 0.1).astype(np.float32)
w3 = (rng.standard_normal((8, 3)) * 0.5).astype(np.float32)
weights = [('conv1/kernel', k1), ('conv1/bias', b1), ('conv2/kernel', k2), ('conv2/bias', b2), ('dense/kernel', w3)]


def s(text):
    return {'s': base64.b64encode(text.encode()).decode()}


def const(name, value):
    return {'name': name, 'op': 'Const', 'attr': {'dtype': {'type': 'DT_FLOAT'}, 'value': {'tensor': {'dtype': 'DT_FLOAT', 'tensorShape': {'dim': [{'size': str(d)} for d in value.shape]}}}}}


def conv(name, x, k, stride):
    return {'name': name, 'op': 'Conv2D', 'input': [x, k], 'attr': {'T': {'type': 'DT_FLOAT'}, 'strides': {'list': {'i': ['1', str(stride), str(stride), '1']}},
            'padding': s('SAME'), 'data_format': s('NHWC'), 'dilations': {'list': {'i': ['1', '1', '1', '1']}}, 'use_cudnn_on_gpu': {'b': True}, 'explicit_paddings': {'list': {}}}}


nodes = [
    {'name': 'image', 'op': 'Placeholder', 'attr': {'dtype': {'type': 'DT_FLOAT'}, 'shape': {'shape': {'dim': [{'size': '-1'}, {'size': '16'}, {'size': '16'}, {'size': '3'}]}}}},
    *[const(n, v) for n, v in weights],
    {'name': 'axes', 'op': 'Const', 'attr': {'dtype': {'type': 'DT_INT32'}, 'value': {'tensor': {'dtype': 'DT_INT32', 'tensorShape': {'dim': [{'size': '2'}]}}}}},
    conv('conv1/Conv2D', 'image', 'conv1/kernel', 1),
    {'name': 'conv1/BiasAdd', 'op': 'BiasAdd', 'input': ['conv1/Conv2D', 'conv1/bias'], 'attr': {'T': {'type': 'DT_FLOAT'}, 'data_format': s('NHWC')}},
    {'name': 'conv1/Relu', 'op': 'Relu', 'input': ['conv1/BiasAdd'], 'attr': {'T': {'type': 'DT_FLOAT'}}},
    conv('conv2/Conv2D', 'conv1/Relu', 'conv2/kernel', 2),
    {'name': 'conv2/BiasAdd', 'op': 'BiasAdd', 'input': ['conv2/Conv2D', 'conv2/bias'], 'attr': {'T': {'type': 'DT_FLOAT'}, 'data_format': s('NHWC')}},
    {'name': 'conv2/Relu', 'op': 'Relu', 'input': ['conv2/BiasAdd'], 'attr': {'T': {'type': 'DT_FLOAT'}}},
    {'name': 'pool/Mean', 'op': 'Mean', 'input': ['conv2/Relu', 'axes'], 'attr': {'T': {'type': 'DT_FLOAT'}, 'Tidx': {'type': 'DT_INT32'}, 'keep_dims': {'b': False}}},
    {'name': 'dense/MatMul', 'op': 'MatMul', 'input': ['pool/Mean', 'dense/kernel'], 'attr': {'T': {'type': 'DT_FLOAT'}, 'transpose_a': {'b': False}, 'transpose_b': {'b': False}}},
    {'name': 'probs', 'op': 'Softmax', 'input': ['dense/MatMul'], 'attr': {'T': {'type': 'DT_FLOAT'}}},
]
axes = np.array([1, 2], dtype=np.int32)
shard = b''.join(v.tobytes() for _, v in weights) + axes.tobytes()
manifest = [{'paths': ['group1-shard1of1.bin'], 'weights': [{'name': n, 'shape': list(v.shape), 'dtype': 'float32'} for n, v in weights] + [{'name': 'axes', 'shape': [2], 'dtype': 'int32'}]}]
model = {'format': 'graph-model', 'generatedBy': '2.12.0', 'convertedBy': 'graft scripts/graph-model-fixtures.py (the layout of TensorFlow.js Converter v4)',
         'signature': {'inputs': {'image:0': {'name': 'image:0', 'dtype': 'DT_FLOAT', 'tensorShape': {'dim': [{'size': '-1'}, {'size': '16'}, {'size': '16'}, {'size': '3'}]}}},
                       'outputs': {'probs:0': {'name': 'probs:0', 'dtype': 'DT_FLOAT'}}},
         'modelTopology': {'node': nodes, 'library': {}, 'versions': {'producer': 1286}}, 'weightsManifest': manifest}
json.dump(model, open(os.path.join(OUT, 'model.json'), 'w'))
open(os.path.join(OUT, 'group1-shard1of1.bin'), 'wb').write(shard)


def conv_np(x, k, b, stride):
    kh, kw, _, co = k.shape
    h, w = x.shape[1:3]
    oh, ow = -(-h // stride), -(-w // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - w, 0)
    x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    y = np.zeros((x.shape[0], oh, ow, co))
    for i in range(oh):
        for j in range(ow):
            y[:, i, j, :] = np.tensordot(x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :], k, axes=([1, 2, 3], [0, 1, 2]))
    return y + b


x = rng.random((3, 16, 16, 3)).astype(np.float32)
a1 = np.maximum(conv_np(x.astype(np.float64), k1, b1, 1), 0)
a2 = np.maximum(conv_np(a1, k2, b2, 2), 0)
z = a2.mean(axis=(1, 2)) @ w3
p = np.exp(z - z.max(axis=1, keepdims=True)); p /= p.sum(axis=1, keepdims=True)
json.dump({'input': x.ravel().tolist(), 'inputShape': list(x.shape), 'cut': 'conv2/Relu', 'features': a2.ravel().tolist(), 'featureShape': list(a2.shape),
           'probs': p.ravel().tolist()}, open(os.path.join(OUT, 'expected.json'), 'w'))
print(f'wrote model.json, group1-shard1of1.bin and expected.json to {OUT}')
