// The whole of an ONNX model that Graft needs to rebuild it as layers: nodes with their
// attributes, initializers and Constant values with their data, inputs and outputs with their
// shapes. A protobuf reader of the ONNX messages' fields (onnx.proto3):
//   ModelProto: graph = 7, opset_import = 8, producer_name = 2
//   GraphProto: node = 1, initializer = 5, input = 11, output = 12
//   NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7
//   AttributeProto: name = 1, f = 2, i = 3, s = 4, t = 5, floats = 7, ints = 8
//   TensorProto: dims = 1, data_type = 2, float_data = 4, int32_data = 5, int64_data = 7,
//                name = 8, raw_data = 9, double_data = 10, data_location = 14
//   OperatorSetIdProto: domain = 1, version = 2

import { GraftError } from '../errors.js';

export interface OnnxTensorValue { name: string; dims: number[]; dataType: number; values: Float32Array }
export interface OnnxAttr { name: string; f?: number; i?: number; s?: string; t?: OnnxTensorValue; floats?: number[]; ints?: number[] }
export interface OnnxFullNode { name: string; opType: string; domain: string; inputs: string[]; outputs: string[]; attrs: Map<string, OnnxAttr> }
export interface OnnxIo { name: string; dims: (number | string)[] }
export interface OnnxModelGraph {
  nodes: OnnxFullNode[];
  initializers: Map<string, OnnxTensorValue>;
  inputs: OnnxIo[];
  outputs: OnnxIo[];
  opset: number;
  producer: string;
}

interface F { field: number; wire: number; start: number; end: number; big: bigint }

function parse(buf: Uint8Array, start: number, end: number): F[] {
  const out: F[] = [];
  let p = start;
  const varint = (): bigint => {
    let r = 0n;
    let shift = 0n;
    for (;;) {
      if (p >= end) throw new Error('truncated varint');
      const b = buf[p++];
      r |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return r;
      shift += 7n;
      if (shift > 70n) throw new Error('bad varint');
    }
  };
  while (p < end) {
    const key = Number(varint());
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) { const s = p; out.push({ field, wire, start: s, end: s, big: varint() }); }
    else if (wire === 2) {
      const len = Number(varint());
      if (p + len > end) throw new Error('length past the end');
      out.push({ field, wire, start: p, end: p + len, big: BigInt(len) });
      p += len;
    } else if (wire === 5) { out.push({ field, wire, start: p, end: p + 4, big: 0n }); p += 4; }
    else if (wire === 1) { out.push({ field, wire, start: p, end: p + 8, big: 0n }); p += 8; }
    else throw new Error(`wire type ${wire}`);
    if (p > end) throw new Error('field past the end');
  }
  return out;
}

const text = (buf: Uint8Array, f: F) => Buffer.from(buf.subarray(f.start, f.end)).toString('utf8');
const int64 = (v: bigint) => Number(BigInt.asIntN(64, v));
const f32 = (buf: Uint8Array, at: number) => new DataView(buf.buffer, buf.byteOffset + at, 4).getFloat32(0, true);

/** Packed (wire 2) or repeated (wire 0) varints of one field, as signed int64 numbers. */
function ints(buf: Uint8Array, fs: F[], field: number): number[] {
  const out: number[] = [];
  for (const f of fs.filter((x) => x.field === field)) {
    if (f.wire === 0) out.push(int64(f.big));
    else if (f.wire === 2) {
      const w = rewrapVarints(buf, f);
      for (const g of parse(w, 0, w.length)) out.push(int64(g.big));
    }
  }
  return out;
}

/** The bytes of a packed varint field as a message of field-1 varints, so `parse` reads them. */
function rewrapVarints(buf: Uint8Array, f: F): Uint8Array {
  const body = buf.subarray(f.start, f.end);
  const out: number[] = [];
  let i = 0;
  while (i < body.length) {
    out.push(0x08);
    do { out.push(body[i]); } while (body[i++] & 0x80 && i < body.length);
  }
  return Uint8Array.from(out);
}

function floats(buf: Uint8Array, fs: F[], field: number): number[] {
  const out: number[] = [];
  for (const f of fs.filter((x) => x.field === field)) {
    if (f.wire === 5) out.push(f32(buf, f.start));
    else if (f.wire === 2) for (let p = f.start; p + 4 <= f.end; p += 4) out.push(f32(buf, p));
  }
  return out;
}

function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const TYPE_NAMES: Record<number, string> = { 1: 'float', 2: 'uint8', 3: 'int8', 5: 'int16', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'double' };

function tensor(buf: Uint8Array, f: F, where: string, withValues = true): OnnxTensorValue {
  const fs = parse(buf, f.start, f.end);
  const nameF = fs.find((x) => x.field === 8 && x.wire === 2);
  const name = nameF ? text(buf, nameF) : '';
  const dims = ints(buf, fs, 1);
  const typeF = fs.find((x) => x.field === 2 && x.wire === 0);
  const dataType = typeF ? Number(typeF.big) : 1;
  if (!withValues) return { name, dims, dataType, values: new Float32Array(0) };
  const location = fs.find((x) => x.field === 14 && x.wire === 0);
  if (location && Number(location.big) === 1) {
    throw new GraftError('UNSUPPORTED', `${where}: the tensor "${name}" keeps its data in an external file; Graft reads ONNX models with the weights inside.`, {
      fix: 'Save the model with its weights inside: onnx.save(onnx.load(path), out, save_as_external_data=False), or torch.onnx.export without external data (models under 2 GB).' });
  }
  const count = dims.reduce((a, b) => a * b, 1);
  const raw = fs.find((x) => x.field === 9 && x.wire === 2);
  let values: Float32Array;
  if (raw) {
    const bytes = buf.subarray(raw.start, raw.end);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const size: Record<number, number> = { 1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8 };
    const per = size[dataType];
    if (!per) throw new GraftError('UNSUPPORTED', `${where}: the tensor "${name}" has the data type ${TYPE_NAMES[dataType] ?? dataType}, which Graft does not read.`, { fix: 'Export the model with float32 weights.' });
    if (bytes.length !== count * per) throw new Error(`tensor ${name}: ${bytes.length} bytes for ${count} values`);
    values = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const at = i * per;
      values[i] = dataType === 1 ? view.getFloat32(at, true) : dataType === 11 ? view.getFloat64(at, true) : dataType === 7 ? Number(view.getBigInt64(at, true))
        : dataType === 6 ? view.getInt32(at, true) : dataType === 5 ? view.getInt16(at, true) : dataType === 3 ? view.getInt8(at) : dataType === 10 ? half(view.getUint16(at, true)) : view.getUint8(at);
    }
  } else if (dataType === 1) values = Float32Array.from(floats(buf, fs, 4));
  else if (dataType === 7) values = Float32Array.from(ints(buf, fs, 7));
  else if (dataType === 11) {
    const d = fs.find((x) => x.field === 10 && x.wire === 2);
    values = new Float32Array(d ? (d.end - d.start) / 8 : 0);
    if (d) for (let i = 0; i < values.length; i++) values[i] = new DataView(buf.buffer, buf.byteOffset + d.start + i * 8, 8).getFloat64(0, true);
  } else values = Float32Array.from(ints(buf, fs, 5));
  if (values.length !== count) throw new Error(`tensor ${name}: ${values.length} values for dims [${dims.join(', ')}]`);
  return { name, dims, dataType, values };
}

function attribute(buf: Uint8Array, f: F, where: string, withValues: boolean): OnnxAttr {
  const fs = parse(buf, f.start, f.end);
  const n = fs.find((x) => x.field === 1 && x.wire === 2);
  const a: OnnxAttr = { name: n ? text(buf, n) : '' };
  const fl = fs.find((x) => x.field === 2 && x.wire === 5);
  if (fl) a.f = f32(buf, fl.start);
  const i = fs.find((x) => x.field === 3 && x.wire === 0);
  if (i) a.i = int64(i.big);
  const s = fs.find((x) => x.field === 4 && x.wire === 2);
  if (s) a.s = text(buf, s);
  const t = fs.find((x) => x.field === 5 && x.wire === 2);
  if (t) a.t = tensor(buf, t, where, withValues);
  if (fs.some((x) => x.field === 7)) a.floats = floats(buf, fs, 7);
  if (fs.some((x) => x.field === 8)) a.ints = ints(buf, fs, 8);
  return a;
}

function io(buf: Uint8Array, f: F): OnnxIo {
  const fs = parse(buf, f.start, f.end);
  const name = fs.find((x) => x.field === 1 && x.wire === 2);
  const dims: (number | string)[] = [];
  const type = fs.find((x) => x.field === 2 && x.wire === 2);
  const tt = type && parse(buf, type.start, type.end).find((x) => x.field === 1 && x.wire === 2);
  const shape = tt && parse(buf, tt.start, tt.end).find((x) => x.field === 2 && x.wire === 2);
  if (shape) {
    for (const d of parse(buf, shape.start, shape.end).filter((x) => x.field === 1 && x.wire === 2)) {
      const parts = parse(buf, d.start, d.end);
      const v = parts.find((x) => x.field === 1 && x.wire === 0);
      const p = parts.find((x) => x.field === 2 && x.wire === 2);
      dims.push(v ? int64(v.big) : p ? text(buf, p) : '?');
    }
  }
  return { name: name ? text(buf, name) : '', dims };
}

/**
 * Reads an ONNX model's graph with every node's attributes and every weight's values; with
 * `values: false`, the weights' names, shapes and types only (the graph's structure, read fast).
 */
export function readOnnxModel(buf: Uint8Array, where: string, options: { values?: boolean } = {}): OnnxModelGraph {
  const withValues = options.values ?? true;
  let top: F[];
  try {
    top = parse(buf, 0, buf.length);
  } catch (e) {
    throw new GraftError('BAD_MODEL', `${where} is not an ONNX model: it does not read as one (${(e as Error).message}); it may be another kind of file, or truncated.`, { fix: 'Give the .onnx file torch.onnx.export (or your exporter) wrote, copied whole.' });
  }
  try {
    const g = top.find((f) => f.field === 7 && f.wire === 2);
    if (!g) throw new GraftError('BAD_MODEL', `${where} is not an ONNX model (no graph).`, { fix: 'Export the model again (torch.onnx.export) and copy the whole .onnx file.' });
    let opset = 0;
    for (const o of top.filter((f) => f.field === 8 && f.wire === 2)) {
      const fs = parse(buf, o.start, o.end);
      const domain = fs.find((x) => x.field === 1 && x.wire === 2);
      const version = fs.find((x) => x.field === 2 && x.wire === 0);
      if ((!domain || text(buf, domain) === '' || text(buf, domain) === 'ai.onnx') && version) opset = Number(version.big);
    }
    const producerF = top.find((f) => f.field === 2 && f.wire === 2);
    const gf = parse(buf, g.start, g.end);
    const initializers = new Map<string, OnnxTensorValue>();
    for (const f of gf.filter((x) => x.field === 5 && x.wire === 2)) {
      const t = tensor(buf, f, where, withValues);
      initializers.set(t.name, t);
    }
    const nodes = gf.filter((f) => f.field === 1 && f.wire === 2).map((f): OnnxFullNode => {
      const nf = parse(buf, f.start, f.end);
      const strs = (k: number) => nf.filter((x) => x.field === k && x.wire === 2).map((x) => text(buf, x));
      const attrs = new Map<string, OnnxAttr>();
      for (const a of nf.filter((x) => x.field === 5 && x.wire === 2)) { const at = attribute(buf, a, where, withValues); attrs.set(at.name, at); }
      return { name: strs(3)[0] ?? '', opType: strs(4)[0] ?? '', domain: strs(7)[0] ?? '', inputs: strs(1), outputs: strs(2), attrs };
    });
    return {
      nodes,
      initializers,
      inputs: gf.filter((f) => f.field === 11 && f.wire === 2).map((f) => io(buf, f)).filter((v) => !initializers.has(v.name)),
      outputs: gf.filter((f) => f.field === 12 && f.wire === 2).map((f) => io(buf, f)),
      opset,
      producer: producerF ? text(buf, producerF) : '',
    };
  } catch (e) {
    if (e instanceof GraftError) throw e;
    throw new GraftError('BAD_MODEL', `${where} has a damaged graph (${(e as Error).message}); it may be truncated.`, { fix: 'Export the model again (torch.onnx.export) and copy the whole .onnx file.' });
  }
}
