// The few ONNX protobuf messages an export needs, encoded by hand (field numbers from
// onnx/onnx.proto3): ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
// ValueInfoProto. Reading lives in model/onnx.ts; this is the writing half.

/** ONNX TensorProto.DataType values used here. */
export const DT = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, FLOAT16: 10 } as const;
export type DataType = (typeof DT)[keyof typeof DT];

export interface Tensor {
  name: string;
  dataType: DataType;
  dims: number[];
  /** Little-endian bytes of the values. */
  raw: Uint8Array;
}

export type AttrValue = number | string | number[] | { float: number } | { floats: number[] } | { tensor: Tensor };

export interface Node {
  opType: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attrs?: Record<string, AttrValue>;
}

export interface ValueInfo {
  name: string;
  dataType: DataType;
  /** A number, or a symbolic name such as "batch"; undefined: shape unknown. */
  dims?: (number | string)[];
}

export interface Graph {
  name: string;
  nodes: Node[];
  initializers: Tensor[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

export interface Model {
  graph: Graph;
  opset: number;
  producer: string;
  producerVersion: string;
  docString?: string;
  metadata: Record<string, string>;
}

/** A growable byte buffer with protobuf's wire encodings. */
class Writer {
  private parts: Uint8Array[] = [];
  private size = 0;

  private push(b: Uint8Array): void {
    this.parts.push(b);
    this.size += b.length;
  }

  /** A varint; negative int64 values take ten bytes (two's complement), as protobuf does. */
  varint(v: number | bigint): void {
    let n = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    while (n >= 0x80n) { out.push(Number(n & 0x7fn) | 0x80); n >>= 7n; }
    out.push(Number(n));
    this.push(Uint8Array.from(out));
  }

  key(field: number, wire: number): void { this.varint(field * 8 + wire); }

  int(field: number, v: number): void { this.key(field, 0); this.varint(v); }

  bytes(field: number, b: Uint8Array): void {
    this.key(field, 2);
    this.varint(b.length);
    this.push(b);
  }

  string(field: number, s: string): void { this.bytes(field, Buffer.from(s, 'utf8')); }

  message(field: number, m: Writer): void { this.bytes(field, m.finish()); }

  float(field: number, v: number): void {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
  }

  /** Packed repeated varints. */
  packedInts(field: number, vs: number[]): void {
    const w = new Writer();
    for (const v of vs) w.varint(v);
    this.bytes(field, w.finish());
  }

  packedFloats(field: number, vs: number[]): void {
    const b = new Uint8Array(vs.length * 4);
    const dv = new DataView(b.buffer);
    vs.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    this.bytes(field, b);
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let p = 0;
    for (const b of this.parts) { out.set(b, p); p += b.length; }
    return out;
  }
}

function tensorProto(t: Tensor): Writer {
  const w = new Writer();
  if (t.dims.length) w.packedInts(1, t.dims);
  w.int(2, t.dataType);
  w.string(8, t.name);
  w.bytes(9, t.raw);
  return w;
}

// AttributeProto.AttributeType
const AT = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 };

function attribute(name: string, v: AttrValue): Writer {
  const w = new Writer();
  w.string(1, name);
  if (typeof v === 'number') { w.int(3, v); w.int(20, AT.INT); }
  else if (typeof v === 'string') { w.string(4, v); w.int(20, AT.STRING); }
  else if (Array.isArray(v)) { w.packedInts(8, v); w.int(20, AT.INTS); }
  else if ('float' in v) { w.float(2, v.float); w.int(20, AT.FLOAT); }
  else if ('floats' in v) { w.packedFloats(7, v.floats); w.int(20, AT.FLOATS); }
  else { w.message(5, tensorProto(v.tensor)); w.int(20, AT.TENSOR); }
  return w;
}

function nodeProto(n: Node): Writer {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, attribute(k, v));
  return w;
}

function valueInfoProto(v: ValueInfo): Writer {
  const tensorType = new Writer();
  tensorType.int(1, v.dataType);
  if (v.dims) {
    const shape = new Writer();
    for (const d of v.dims) {
      const dim = new Writer();
      if (typeof d === 'number') dim.int(1, d); else dim.string(2, d);
      shape.message(1, dim);
    }
    tensorType.message(2, shape);
  }
  const type = new Writer();
  type.message(1, tensorType);
  const w = new Writer();
  w.string(1, v.name);
  w.message(2, type);
  return w;
}

function graphProto(g: Graph): Writer {
  const w = new Writer();
  for (const n of g.nodes) w.message(1, nodeProto(n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, tensorProto(t));
  for (const i of g.inputs) w.message(11, valueInfoProto(i));
  for (const o of g.outputs) w.message(12, valueInfoProto(o));
  return w;
}

/** IR version 8 goes with opsets up to 18 (onnx/docs/Versioning.md). */
const IR_VERSION = 8;

export function encodeModel(m: Model): Uint8Array {
  const w = new Writer();
  w.int(1, IR_VERSION);
  w.string(2, m.producer);
  w.string(3, m.producerVersion);
  if (m.docString) w.string(6, m.docString);
  w.message(7, graphProto(m.graph));
  const opset = new Writer();
  opset.string(1, '');
  opset.int(2, m.opset);
  w.message(8, opset);
  for (const [key, value] of Object.entries(m.metadata)) {
    const e = new Writer();
    e.string(1, key);
    e.string(2, value);
    w.message(14, e);
  }
  return w.finish();
}

// Tensors from values.

export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): Tensor {
  const f = values instanceof Float32Array ? values : Float32Array.from(values);
  return { name, dataType: DT.FLOAT, dims, raw: new Uint8Array(f.buffer.slice(f.byteOffset, f.byteOffset + f.byteLength)) };
}

export function int64Tensor(name: string, dims: number[], values: number[]): Tensor {
  const b = new BigInt64Array(values.map((v) => BigInt(v)));
  return { name, dataType: DT.INT64, dims, raw: new Uint8Array(b.buffer) };
}

export function int32Tensor(name: string, dims: number[], values: ArrayLike<number>): Tensor {
  const b = Int32Array.from(values);
  return { name, dataType: DT.INT32, dims, raw: new Uint8Array(b.buffer) };
}

export function int8Tensor(name: string, dims: number[], values: ArrayLike<number>, unsigned = false): Tensor {
  const b = unsigned ? Uint8Array.from(values) : new Uint8Array(Int8Array.from(values).buffer);
  return { name, dataType: unsigned ? DT.UINT8 : DT.INT8, dims, raw: b };
}

/** IEEE 754 half precision bits of a float, rounded to nearest even. */
export function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && (half & 1)) ? 1 : 0));
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++;
  e = half >>> 10;
  return sign | (e >= 0x1f ? 0x7c00 : half);
}

export function halfTensor(name: string, dims: number[], values: ArrayLike<number>): Tensor {
  const h = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) h[i] = toHalf(values[i]);
  return { name, dataType: DT.FLOAT16, dims, raw: new Uint8Array(h.buffer) };
}
