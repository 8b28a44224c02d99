#!/usr/bin/python3
"""Writes small Keras-layout model files with Debian's python3-h5py (no TensorFlow), and
the predictions of each model computed here with numpy, for Graft's import tests.

  /usr/bin/python3 scripts/keras-fixtures.py test/fixtures/keras

Keras 2 HDF5 (model.save('x.h5')): root attributes model_config (JSON), keras_version,
backend; group model_weights with attribute layer_names; per layer a group with attribute
weight_names ('conv/kernel:0', ...) and the datasets at model_weights/<layer>/<weight name>.
Keras 3 .keras: a zip of config.json, metadata.json and model.weights.h5 whose datasets live
at layers/<layer>/vars/<i>. Some datasets are gzip-compressed, as Keras may write them.
"""
import io, json, os, sys, zipfile
import h5py
import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else 'test/fixtures/keras'
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(7)


def f32(*shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- numpy reference ops (NHWC, kernels HWIO like Keras) ----
def pad_same(x, kh, kw, sh, sw):
    h, w = x.shape[1:3]
    oh, ow = -(-h // sh), -(-w // sw)
    ph = max((oh - 1) * sh + kh - h, 0)
    pw = max((ow - 1) * sw + kw - w, 0)
    return np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def conv2d(x, k, b, stride=1, padding='same'):
    kh, kw, ci, co = k.shape
    if padding == 'same':
        x = pad_same(x, kh, kw, stride, stride)
    n, h, w, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    y = np.zeros((n, oh, ow, co), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            y[:, i, j, :] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
    return y + (b if b is not None else 0)


def depthwise(x, k, b, padding='same'):
    kh, kw, c, m = k.shape
    if padding == 'same':
        x = pad_same(x, kh, kw, 1, 1)
    n, h, w, _ = x.shape
    oh, ow = h - kh + 1, w - kw + 1
    y = np.zeros((n, oh, ow, c * m), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i:i + kh, j:j + kw, :]
            for q in range(m):
                y[:, i, j, q::m] = np.einsum('nhwc,hwc->nc', patch, k[:, :, :, q])
    return y + (b if b is not None else 0)


def bn(x, gamma, beta, mean, var, eps=1e-3):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def maxpool(x, p=2):
    n, h, w, c = x.shape
    return x[:, :h // p * p, :w // p * p, :].reshape(n, h // p, p, w // p, p, c).max(axis=(2, 4))


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def relu(x):
    return np.maximum(x, 0)


# ---- Keras 2 functional CNN ----
def layer(cls, name, config, inbound):
    config = dict(config, name=name, trainable=True)
    out = {'class_name': cls, 'config': config, 'name': name}
    out['inbound_nodes'] = [[[i, 0, 0, {}] for i in inbound]] if inbound else []
    return out


def cnn():
    W = {
        'conv1': [f32(3, 3, 3, 4), f32(4, scale=0.1)],
        'bn1': [1 + f32(4, scale=0.1), f32(4, scale=0.1), f32(4, scale=0.2), (0.5 + rng.random(4)).astype(np.float32)],
        'dw': [f32(3, 3, 4, 1), f32(4, scale=0.1)],
        'conv2': [f32(1, 1, 4, 6), f32(6, scale=0.1)],
        'add_in': [f32(1, 1, 6, 6)],
        'dense': [f32(6, 5), f32(5, scale=0.1)],
    }
    names = {
        'conv1': ['kernel', 'bias'], 'bn1': ['gamma', 'beta', 'moving_mean', 'moving_variance'],
        'dw': ['depthwise_kernel', 'bias'], 'conv2': ['kernel', 'bias'], 'add_in': ['kernel'], 'dense': ['kernel', 'bias'],
    }
    layers = [
        {'class_name': 'InputLayer', 'config': {'batch_input_shape': [None, 12, 12, 3], 'dtype': 'float32', 'sparse': False, 'name': 'image'}, 'name': 'image', 'inbound_nodes': []},
        layer('Conv2D', 'conv1', {'filters': 4, 'kernel_size': [3, 3], 'strides': [2, 2], 'padding': 'same', 'data_format': 'channels_last', 'dilation_rate': [1, 1], 'activation': 'linear', 'use_bias': True,
                                  'kernel_initializer': {'class_name': 'GlorotUniform', 'config': {'seed': None}}, 'bias_initializer': {'class_name': 'Zeros', 'config': {}}}, ['image']),
        layer('BatchNormalization', 'bn1', {'axis': -1, 'momentum': 0.99, 'epsilon': 0.001, 'center': True, 'scale': True}, ['conv1']),
        layer('ReLU', 'relu1', {'max_value': 6.0, 'negative_slope': 0.0, 'threshold': 0.0}, ['bn1']),
        layer('DepthwiseConv2D', 'dw', {'kernel_size': [3, 3], 'strides': [1, 1], 'padding': 'same', 'depth_multiplier': 1, 'data_format': 'channels_last', 'dilation_rate': [1, 1], 'activation': 'relu', 'use_bias': True}, ['relu1']),
        layer('MaxPooling2D', 'pool', {'pool_size': [2, 2], 'strides': [2, 2], 'padding': 'valid', 'data_format': 'channels_last'}, ['dw']),
        layer('Conv2D', 'conv2', {'filters': 6, 'kernel_size': [1, 1], 'strides': [1, 1], 'padding': 'valid', 'data_format': 'channels_last', 'dilation_rate': [1, 1], 'activation': 'relu', 'use_bias': True}, ['pool']),
        layer('Conv2D', 'add_in', {'filters': 6, 'kernel_size': [1, 1], 'strides': [1, 1], 'padding': 'valid', 'data_format': 'channels_last', 'dilation_rate': [1, 1], 'activation': 'linear', 'use_bias': False}, ['conv2']),
        layer('Add', 'add', {}, ['conv2', 'add_in']),
        layer('GlobalAveragePooling2D', 'gap', {'data_format': 'channels_last'}, ['add']),
        layer('Dense', 'dense', {'units': 5, 'activation': 'softmax', 'use_bias': True}, ['gap']),
    ]
    config = {'class_name': 'Functional', 'config': {'name': 'tiny_cnn', 'layers': layers, 'input_layers': [['image', 0, 0]], 'output_layers': [['dense', 0, 0]]}}

    def forward(x):
        y = conv2d(x, W['conv1'][0], W['conv1'][1], stride=2)
        y = np.minimum(relu(bn(y, *W['bn1'])), 6)
        y = relu(depthwise(y, W['dw'][0], W['dw'][1]))
        y = maxpool(y)
        y = relu(conv2d(y, W['conv2'][0], W['conv2'][1], padding='valid'))
        y = y + conv2d(y, W['add_in'][0], None, padding='valid')
        return softmax(y.mean(axis=(1, 2)) @ W['dense'][0] + W['dense'][1])
    return config, W, names, forward, [12, 12, 3]


def mlp():
    W = {'hidden': [f32(4, 8), f32(8, scale=0.1)], 'out': [f32(8, 3), f32(3, scale=0.1)]}
    names = {'hidden': ['kernel', 'bias'], 'out': ['kernel', 'bias']}
    config = {'class_name': 'Sequential', 'config': {'name': 'mlp', 'layers': [
        {'class_name': 'Dense', 'config': {'name': 'hidden', 'trainable': True, 'batch_input_shape': [None, 4], 'dtype': 'float32', 'units': 8, 'activation': 'tanh', 'use_bias': True}},
        {'class_name': 'Dense', 'config': {'name': 'out', 'trainable': True, 'units': 3, 'activation': 'softmax', 'use_bias': True}},
    ]}}

    def forward(x):
        return softmax(np.tanh(x @ W['hidden'][0] + W['hidden'][1]) @ W['out'][0] + W['out'][1])
    return config, W, names, forward, [4]


def write_h5(path, config, W, names, gzip_layers=()):
    with h5py.File(path, 'w') as f:
        f.attrs['model_config'] = json.dumps(config)
        f.attrs['keras_version'] = '2.12.0'
        f.attrs['backend'] = 'tensorflow'
        mw = f.create_group('model_weights')
        layer_names = [l.get('name', l['config']['name']) for l in config['config']['layers']]
        mw.attrs['layer_names'] = np.array([n.encode() for n in layer_names])
        mw.attrs['backend'] = b'tensorflow'
        mw.attrs['keras_version'] = b'2.12.0'
        for ln in layer_names:
            g = mw.create_group(ln)
            wn = [f'{ln}/{n}:0' for n in names.get(ln, [])]
            g.attrs['weight_names'] = np.array([n.encode() for n in wn], dtype='S') if wn else np.array([], dtype='S1')
            for n, value in zip(wn, W.get(ln, [])):
                kw = {'compression': 'gzip', 'compression_opts': 4} if ln in gzip_layers else {}
                g.create_dataset(n, data=value, **kw)


def keras3_config(config):
    """Keras 3 serialisation of the same Functional model (module/registered_name, keras_history nodes)."""
    layers = []
    for l in config['config']['layers']:
        c = dict(l['config'])
        if l['class_name'] == 'InputLayer':
            c = {'batch_shape': c['batch_input_shape'], 'dtype': 'float32', 'sparse': False, 'name': c['name']}
        nodes = []
        for node in l.get('inbound_nodes', []):
            args = [{'class_name': '__keras_tensor__', 'config': {'shape': None, 'dtype': 'float32', 'keras_history': [i[0], i[1], i[2]]}} for i in node]
            nodes.append({'args': [args] if l['class_name'] in ('Add', 'Concatenate') else args, 'kwargs': {}})
        layers.append({'module': 'keras.layers', 'class_name': l['class_name'], 'config': c, 'registered_name': None, 'name': l['name'], 'inbound_nodes': nodes})
    return {'module': 'keras', 'class_name': 'Functional', 'config': {'name': config['config']['name'], 'trainable': True, 'layers': layers,
            'input_layers': config['config']['input_layers'], 'output_layers': config['config']['output_layers']}, 'registered_name': 'Functional'}


def write_keras(path, config, W, names):
    buf = io.BytesIO()
    with h5py.File(buf, 'w') as f:
        layers = f.create_group('layers')
        for l in config['config']['layers']:
            ln = l['name']
            g = layers.create_group(ln).create_group('vars')
            for i, value in enumerate(W.get(ln, [])):
                g.create_dataset(str(i), data=value, compression='gzip')
        f.create_group('optimizer').create_group('vars')
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('metadata.json', json.dumps({'keras_version': '3.3.3', 'date_saved': '2026-11-27@00:00:00'}))
        z.writestr('config.json', json.dumps(keras3_config(config)))
        z.writestr('model.weights.h5', buf.getvalue())


expected = {}
for name, build in [('cnn', cnn), ('mlp', mlp)]:
    config, W, names, forward, shape = build()
    write_h5(os.path.join(OUT, f'{name}.h5'), config, W, names, gzip_layers=('conv1', 'dense', 'out'))
    x = rng.random([3] + shape).astype(np.float32)
    expected[name] = {'input': x.ravel().tolist(), 'shape': [3] + shape, 'output': forward(x.astype(np.float64)).ravel().tolist()}
    if name == 'cnn':
        write_keras(os.path.join(OUT, 'cnn.keras'), config, W, names)

# A Lambda layer: the import must name it and refuse.
config, W, names, _, _ = mlp()
config['config']['layers'].insert(1, {'class_name': 'Lambda', 'config': {'name': 'double', 'trainable': True, 'function': ['4wEAAAAAAAAA', None, None]}})
write_h5(os.path.join(OUT, 'lambda.h5'), config, W, names)
with open(os.path.join(OUT, 'expected.json'), 'w') as f:
    json.dump(expected, f)
print(f'wrote cnn.h5, mlp.h5, cnn.keras, lambda.h5 and expected.json to {OUT}')
