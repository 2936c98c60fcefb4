/**
 * Bad input: every kind gives FlashAttentionError with the right `code` and `argument`, and
 * leaves preallocated (poisoned) outputs untouched. The public API first, then the raw C ABI
 * with structs packed here at the offsets of the library's own fa_abi_layout() table
 * (independent of ffi/structs.ts, which a test compares byte for byte; mismatched devices,
 * misaligned pointers, zero strides, bad cu_seqlens values, ABI version and struct size).
 */

import assert from "node:assert/strict";
import { check, ffi, lastError } from "../ffi/library.ts";
import {
  ABI_LAYOUT,
  BACKWARD_ARGS_BYTES,
  formatAbiLayout,
  FORWARD_ARGS_BYTES,
  packBackwardArgs,
  packForwardArgs,
  type TensorDescriptor,
} from "../ffi/structs.ts";
import {
  attention,
  attentionBackward,
  type AttentionOptions,
  type BackwardOptions,
  Device,
  type DType,
  type ErrorCode,
  NestedBatch,
  Tensor,
} from "../mod.ts";
import { assertFails } from "./helpers/errors.ts";
import { disposeTensors, POISON, poisoned } from "./helpers/cases.ts";
import { assertAllEqual } from "./helpers/check.ts";
import {
  libraryAbiLayout,
  libraryOffset,
  libraryStruct,
  parseAbiLayout,
} from "./helpers/abi_layout.ts";
import { Rng } from "./helpers/random.ts";

const rng = new Rng(4242);

function rand(shape: number[], dtype: DType = "float16"): Tensor {
  return Tensor.fromArray(rng.normalArray(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
}

// A valid baseline: B=2, Hq=4, Hkv=2, Sq=8, Sk=16, D=8.
const B = 2, HQ = 4, HKV = 2, SQ = 8, SK = 16, D = 8;

interface Baseline {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  out: Tensor;
  lse: Tensor;
}

function baseline(): Baseline {
  return {
    q: rand([B, HQ, SQ, D]),
    k: rand([B, HKV, SK, D]),
    v: rand([B, HKV, SK, D]),
    out: poisoned([B, HQ, SQ, D], "float16"),
    lse: poisoned([B, HQ, SQ], "float32"),
  };
}

/** Runs a bad forward into the baseline's poisoned out/lse and checks they stay poisoned. */
function forwardFails(
  what: string,
  code: ErrorCode,
  argument: string | undefined,
  make: (b: Baseline) => { q?: Tensor; k?: Tensor; v?: Tensor; options?: AttentionOptions },
): void {
  const b = baseline();
  const extra: Tensor[] = [];
  try {
    const call = make(b);
    const o = call.options;
    for (const t of [call.q, call.k, call.v, o?.bias, o?.sinks, o?.alibiSlopes]) {
      if (t && t !== b.q && t !== b.k && t !== b.v) extra.push(t);
    }
    if (call.q && call.q.shape.length === 4) {
      // Outputs shaped after the replaced q, so that only the mutation is wrong.
      b.out.dispose();
      b.lse.dispose();
      b.out = poisoned(call.q.shape, call.q.dtype);
      b.lse = poisoned(call.q.shape.slice(0, 3), "float32");
    }
    assertFails(
      () =>
        attention(call.q ?? b.q, call.k ?? b.k, call.v ?? b.v, {
          out: b.out,
          lse: b.lse,
          ...call.options,
        }),
      code,
      argument,
      what,
    );
    if (!b.out.disposed) assertAllEqual(`${what}: out after the error`, b.out.toFloat32(), POISON);
    if (!b.lse.disposed) assertAllEqual(`${what}: lse after the error`, b.lse.toFloat32(), POISON);
  } finally {
    disposeTensors(b);
    for (const t of extra) if (!t.disposed) t.dispose();
  }
}

Deno.test("errors: the baseline call succeeds (so every failure below is the mutation's)", () => {
  const b = baseline();
  try {
    attention(b.q, b.k, b.v, { out: b.out, lse: b.lse });
    const o = b.out.toFloat32();
    assert.ok(o.every((x) => x !== POISON && Number.isFinite(x)));
  } finally {
    disposeTensors(b);
  }
});

Deno.test("errors: shapes and ranks", () => {
  forwardFails("q rank 3", "invalid_argument", "q", () => ({ q: rand([B * HQ, SQ, D]) }));
  forwardFails("k rank 5", "invalid_argument", "k", () => ({ k: rand([1, B, HKV, SK, D]) }));
  forwardFails("k batch", "invalid_argument", "k", () => ({ k: rand([B + 1, HKV, SK, D]) }));
  forwardFails("k head dim", "invalid_argument", "k", () => ({ k: rand([B, HKV, SK, 16]) }));
  forwardFails("v head dim", "invalid_argument", "v", () => ({ v: rand([B, HKV, SK, 16]) }));
  forwardFails("v seqlen", "invalid_argument", "v", () => ({ v: rand([B, HKV, SK + 1, D]) }));
  forwardFails("v heads", "invalid_argument", "v", () => ({ v: rand([B, 1, SK, D]) }));
  forwardFails("Hq % Hkv", "invalid_argument", "k", () => ({
    k: rand([B, 3, SK, D]),
    v: rand([B, 3, SK, D]),
  }));
  forwardFails("D = 12 (not a multiple of 8)", "invalid_argument", "q", () => ({
    q: rand([B, HQ, SQ, 12]),
    k: rand([B, HKV, SK, 12]),
    v: rand([B, HKV, SK, 12]),
  }));
  forwardFails("D = 264 (> 256)", "invalid_argument", "q", () => ({
    q: rand([1, 1, 2, 264]),
    k: rand([1, 1, 2, 264]),
    v: rand([1, 1, 2, 264]),
  }));
  forwardFails("Sq = 0", "invalid_argument", "q", () => ({ q: rand([B, HQ, 0, D]) }));
});

Deno.test("errors: dtypes", () => {
  forwardFails("k bfloat16 vs q float16", "invalid_argument", "k", () => ({
    k: rand([B, HKV, SK, D], "bfloat16"),
  }));
  forwardFails(
    "v float32",
    "invalid_argument",
    "v",
    () => ({ v: rand([B, HKV, SK, D], "float32") }),
  );
  forwardFails("q float32 (unsupported dtype)", "invalid_argument", "q", () => ({
    q: rand([B, HQ, SQ, D], "float32"),
    k: rand([B, HKV, SK, D], "float32"),
    v: rand([B, HKV, SK, D], "float32"),
  }));
});

Deno.test("errors: preallocated out and lse of the wrong shape or dtype", () => {
  for (
    const [what, argument, shape, dtype] of [
      ["lse float16", "lse", [B, HQ, SQ], "float16"],
      ["lse shape", "lse", [B, HQ, SQ + 1], "float32"],
      ["lse rank", "lse", [B, HQ * SQ], "float32"],
      ["out shape", "out", [B, HQ, SQ, D + 8], "float16"],
      ["out dtype", "out", [B, HQ, SQ, D], "bfloat16"],
    ] as const
  ) {
    const bad = poisoned([...shape], dtype);
    const b = baseline();
    try {
      const options: AttentionOptions = argument === "lse"
        ? { out: b.out, lse: bad }
        : { out: bad, lse: b.lse };
      assertFails(() => attention(b.q, b.k, b.v, options), "invalid_argument", argument, what);
      assertAllEqual(`${what}: bad tensor untouched`, bad.toFloat32(), POISON);
      assertAllEqual(`${what}: out untouched`, b.out.toFloat32(), POISON);
      assertAllEqual(`${what}: lse untouched`, b.lse.toFloat32(), POISON);
    } finally {
      disposeTensors(b, { bad });
    }
  }
});

Deno.test("errors: bias of a wrong shape, rank or dtype", () => {
  const cases: [string, number[], DType][] = [
    ["bias Sk + 1", [B, HQ, SQ, SK + 1], "float32"],
    ["bias batch 3 (not broadcastable)", [3, 1, 1, SK], "float32"],
    ["bias heads 2 (not broadcastable to 4)", [1, 2, SQ, SK], "float16"],
    ["bias rank 5", [1, B, HQ, SQ, SK], "float32"],
    ["bias int32", [B, 1, 1, SK], "int32"],
  ];
  for (const [what, shape, dtype] of cases) {
    const bias = dtype === "int32"
      ? Tensor.fromArray(new Int32Array(shape.reduce((a, b) => a * b, 1)), shape)
      : rand(shape, dtype);
    forwardFails(what, "invalid_argument", "bias", () => ({ options: { bias } }));
  }
});

Deno.test("errors: last dimension not contiguous", () => {
  // Sq == D so that the transposed view has the same shape but strides [.., .., 1, 8].
  forwardFails("q transposed", "invalid_argument", "q", () => {
    const square = rand([B, HQ, D, D]);
    const t = square.permute([0, 1, 3, 2]);
    square.dispose();
    return { q: t };
  });
  forwardFails("bias with a strided key dim", "invalid_argument", "bias", () => {
    // A transposed square bias sliced to [B, HQ, SQ, SK]: the key dim has stride SK.
    const square = rand([B, HQ, SK, SK], "float32");
    const t = square.permute([0, 1, 3, 2]).slice(2, 0, SQ);
    square.dispose();
    return { options: { bias: t } };
  });
});

Deno.test("errors: scale and dropout values", () => {
  for (const scale of [0, -1, NaN, Infinity, -Infinity]) {
    forwardFails(`scale ${scale}`, "invalid_argument", "scale", () => ({ options: { scale } }));
  }
  for (const p of [1, 1.5, -0.1, NaN, Infinity]) {
    forwardFails(
      `dropout ${p}`,
      "invalid_argument",
      undefined,
      () => ({ options: { dropout: p } }),
    );
    forwardFails(`dropout {p: ${p}}`, "invalid_argument", undefined, () => ({
      options: { dropout: { p, seed: 1n } },
    }));
  }
  forwardFails("layout", "invalid_argument", "layout", () => ({
    options: { layout: "sbhd" as "bshd" },
  }));
});

Deno.test("errors: the dropout argument is named (dropout or dropout_p)", () => {
  const b = baseline();
  try {
    const e = assertFails(
      () => attention(b.q, b.k, b.v, { dropout: 1 }),
      "invalid_argument",
      undefined,
      "p = 1",
    );
    assert.ok(
      e.argument === "dropout" || e.argument === "dropout_p",
      `argument ${e.argument} of "${e.message}"`,
    );
  } finally {
    disposeTensors(b);
  }
});

Deno.test("errors: use after dispose names the argument (code disposed)", () => {
  for (const name of ["q", "k", "v", "out", "lse", "bias"] as const) {
    const b = baseline();
    const bias = rand([B, 1, 1, SK], "float32");
    try {
      const victim = name === "bias" ? bias : b[name];
      victim.dispose();
      assertFails(
        () => attention(b.q, b.k, b.v, { out: b.out, lse: b.lse, bias }),
        "disposed",
        name,
        `${name} disposed`,
      );
      if (!b.out.disposed) assertAllEqual("out", b.out.toFloat32(), POISON);
    } finally {
      disposeTensors(b);
      if (!bias.disposed) bias.dispose();
    }
  }
  const t = rand([2, 2]);
  t.dispose();
  assertFails(() => t.toFloat32(), "disposed", undefined, "toFloat32");
  assertFails(() => t.permute([1, 0]), "disposed", undefined, "permute");
  assertFails(() => t.to(Device.cpu()), "disposed", undefined, "to");
  t.dispose(); // a second dispose is harmless
});

Deno.test("errors: backward arguments", () => {
  const b = baseline();
  const dout = rand([B, HQ, SQ, D]);
  const fwd = attention(b.q, b.k, b.v);
  const dq = poisoned([B, HQ, SQ, D], "float16");
  const dk = poisoned([B, HKV, SK, D], "float16");
  const dv = poisoned([B, HKV, SK, D], "float16");
  const run = (
    options: BackwardOptions,
    over: { dout?: Tensor; out?: Tensor; lse?: Tensor } = {},
  ) =>
  () =>
    attentionBackward(
      over.dout ?? dout,
      b.q,
      b.k,
      b.v,
      over.out ?? fwd.out,
      over.lse ?? fwd.lse,
      { dq, dk, dv, ...options },
    );
  const extra: Tensor[] = [];
  const keep = (t: Tensor): Tensor => {
    extra.push(t);
    return t;
  };
  try {
    assertFails(
      run({}, { lse: keep(poisoned([B, HQ, SQ + 1], "float32")) }),
      "invalid_argument",
      "lse",
      "lse shape",
    );
    assertFails(
      run({}, { lse: keep(poisoned([B, HQ, SQ], "float16")) }),
      "invalid_argument",
      "lse",
      "lse dtype",
    );
    assertFails(
      run({}, { dout: keep(rand([B, HQ, SQ + 1, D])) }),
      "invalid_argument",
      "dout",
      "dout shape",
    );
    assertFails(
      run({}, { dout: keep(rand([B, HQ, SQ, D], "bfloat16")) }),
      "invalid_argument",
      "dout",
      "dout dtype",
    );
    assertFails(
      run({}, { out: keep(rand([B, HQ, SQ, D + 8])) }),
      "invalid_argument",
      "out",
      "out shape",
    );
    assertFails(
      run({ dq: keep(poisoned([B, HQ, SQ, D], "bfloat16")) }),
      "invalid_argument",
      "dq",
      "dq dtype",
    );
    assertFails(
      run({ dk: keep(poisoned([B, HQ, SK, D], "float16")) }),
      "invalid_argument",
      "dk",
      "dk shape",
    );
    assertFails(
      run({ dv: keep(poisoned([B, HKV, SK], "float16")) }),
      "invalid_argument",
      "dv",
      "dv rank",
    );
    // dbias without bias.
    assertFails(
      run({ computeDbias: true }),
      "invalid_argument",
      "dbias",
      "computeDbias without bias",
    );
    assertFails(
      run({ dbias: keep(poisoned([B, 1, 1, SK], "float32")) }),
      "invalid_argument",
      "dbias",
      "dbias without bias",
    );
    // dbias of the wrong shape or dtype for the bias.
    const bias = keep(rand([B, 1, 1, SK], "float32"));
    assertFails(
      run({ bias, dbias: keep(poisoned([B, 1, 1, SK + 1], "float32")) }),
      "invalid_argument",
      "dbias",
      "dbias shape",
    );
    assertFails(
      run({ bias, dbias: keep(poisoned([B, 1, 1, SK], "float16")) }),
      "invalid_argument",
      "dbias",
      "dbias dtype",
    );
    assertFails(run({ scale: -2 }), "invalid_argument", "scale", "backward scale");
    for (const [name, t] of [["dq", dq], ["dk", dk], ["dv", dv]] as const) {
      assertAllEqual(`${name} after the errors`, t.toFloat32(), POISON);
    }
    // Disposed lse / dout.
    const gone = keep(rand([B, HQ, SQ, D]));
    gone.dispose();
    assertFails(run({}, { dout: gone }), "disposed", "dout", "dout disposed");
  } finally {
    disposeTensors(b, fwd, { dout, dq, dk, dv });
    for (const t of extra) if (!t.disposed) t.dispose();
  }
});

Deno.test("errors: nested batches", () => {
  const seqs = (lens: number[], heads: number): Tensor[] => lens.map((s) => rand([s, heads, D]));
  const mk = (lens: number[], heads: number): NestedBatch => {
    const parts = seqs(lens, heads);
    const nb = NestedBatch.pack(parts);
    for (const p of parts) p.dispose();
    return nb;
  };
  const q = mk([3, 5], HQ), k = mk([4, 6], HKV), v = mk([4, 6], HKV);
  const k3 = mk([4, 6, 2], HKV), v3 = mk([4, 6, 2], HKV);
  const vOther = mk([4, 7], HKV);
  const out = poisoned([8, HQ, D], "float16");
  try {
    attention(q, k, v); // the valid baseline
    assertFails(
      () => attention(q, k3, v3, { out }),
      "invalid_argument",
      undefined,
      "k: 3 sequences vs q's 2",
    );
    assertFails(
      () => attention(q, k, vOther, { out }),
      "invalid_argument",
      "v",
      "v lengths differ from k",
    );
    assertFails(
      () => attention(q, k, v, { out: poisoned([9, HQ, D], "float16") }),
      "invalid_argument",
      "out",
      "nested out shape",
    );
    assertFails(
      () => attention(q, k, v, { bias: rand([2, 1, 5, 7], "float32") }),
      "invalid_argument",
      "bias",
      "nested bias [B,1,maxSq,maxSk+1]",
    );
    assertAllEqual("out", out.toFloat32(), POISON);
    // fromData with lengths that do not add up to the data, or negative.
    assertFails(
      () => NestedBatch.fromData(q.data, [3, 6]),
      "invalid_argument",
      undefined,
      "lengths sum",
    );
    assertFails(
      () => NestedBatch.fromData(q.data, [9, -1]),
      "invalid_argument",
      undefined,
      "negative length",
    );
  } finally {
    for (const nb of [q, k, v, k3, v3, vOther]) nb.dispose();
    out.dispose();
  }
});

Deno.test("errors: tensor construction and views", () => {
  assertFails(
    () => Tensor.fromArray(new Float32Array(5), [2, 3]),
    "invalid_argument",
    undefined,
    "length vs shape",
  );
  assertFails(
    () => Tensor.fromArray(new Uint16Array(6), [2, 3], { dtype: "float32" }),
    "invalid_argument",
    undefined,
    "raw bits as float32",
  );
  assertFails(
    () => Tensor.zeros([2, -1], "float16"),
    "invalid_argument",
    undefined,
    "negative dim",
  );
  const t = rand([2, 3, 4]);
  try {
    assertFails(() => t.reshape([5, 5]), "invalid_argument", undefined, "reshape numel");
    assertFails(() => t.permute([0, 0, 1]), "invalid_argument", undefined, "permute repeat");
    assertFails(() => t.permute([0, 1]), "invalid_argument", undefined, "permute rank");
    assertFails(() => t.slice(1, 2, 4), "invalid_argument", undefined, "slice past the end");
    assertFails(() => t.slice(3, 0, 1), "invalid_argument", undefined, "slice dim");
  } finally {
    t.dispose();
  }
  const f = rand([4], "float32");
  assertFails(() => f.toBits(), "invalid_argument", undefined, "toBits of float32");
  f.dispose();
  if (Device.cudaCount() === 0) {
    assertFails(() => Device.cuda(0), "no_device", undefined, "Device.cuda(0) without a GPU");
  }
  assertFails(() => Device.cuda(1 << 20), "no_device", undefined, "Device.cuda(2^20)");
});

// ---------------------------------------------------------------------------------------------
// The raw C ABI, with structs packed here at the offsets of fa_abi_layout().

const FA_FLOAT16 = 0, FA_FLOAT32 = 2, FA_INT32 = 3;

interface RawTensor {
  data: bigint;
  dtype: number;
  device: number;
  shape: number[];
  stride: number[];
  ndim?: number;
  reserved?: number;
}

function addressOf(buffer: ArrayBufferView<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

function writeRawTensor(view: DataView, at: number, t: RawTensor | undefined): void {
  if (!t) return;
  const field = (name: string) => at + libraryOffset("fa_tensor", name);
  view.setBigUint64(field("data"), t.data, true);
  view.setInt32(field("dtype"), t.dtype, true);
  view.setInt32(field("device"), t.device, true);
  view.setInt32(field("ndim"), t.ndim ?? t.shape.length, true);
  view.setInt32(field("reserved"), t.reserved ?? 0, true);
  for (let d = 0; d < t.shape.length; d++) {
    view.setBigInt64(field("shape") + 8 * d, BigInt(t.shape[d]), true);
    view.setBigInt64(field("stride") + 8 * d, BigInt(t.stride[d]), true);
  }
}

interface RawForward {
  abiVersion: number;
  structSize: number;
  q: RawTensor;
  k: RawTensor;
  v: RawTensor;
  out: RawTensor;
  lse?: RawTensor;
  bias?: RawTensor;
  cuQ?: RawTensor;
  cuK?: RawTensor;
  scale: number;
  dropoutP: number;
  seed: bigint;
  offset: bigint;
  flags: number;
  maxQ: number;
  maxK: number;
  reserved: number;
  sinks?: RawTensor;
  alibiSlopes?: RawTensor;
  windowLeft: number;
  windowRight: number;
  softcap: number;
  reserved2: number;
}

/** The fields both raw structs share, written at the library's own offsets of `struct`. */
function writeRawShared(view: DataView, struct: string, a: RawForward): void {
  const at = (name: string) => libraryOffset(struct, name);
  view.setUint32(at("abi_version"), a.abiVersion, true);
  view.setUint32(at("struct_size"), a.structSize, true);
  writeRawTensor(view, at("q"), a.q);
  writeRawTensor(view, at("k"), a.k);
  writeRawTensor(view, at("v"), a.v);
  writeRawTensor(view, at("out"), a.out);
  writeRawTensor(view, at("lse"), a.lse);
  writeRawTensor(view, at("bias"), a.bias);
  writeRawTensor(view, at("cu_seqlens_q"), a.cuQ);
  writeRawTensor(view, at("cu_seqlens_k"), a.cuK);
  view.setFloat32(at("scale"), a.scale, true);
  view.setFloat32(at("dropout_p"), a.dropoutP, true);
  view.setBigUint64(at("seed"), a.seed, true);
  view.setBigUint64(at("offset"), a.offset, true);
  view.setUint32(at("flags"), a.flags, true);
  view.setInt32(at("max_seqlen_q"), a.maxQ, true);
  view.setInt32(at("max_seqlen_k"), a.maxK, true);
  view.setInt32(at("reserved"), a.reserved, true);
  view.setBigUint64(at("stream"), 0n, true);
  writeRawTensor(view, at("sinks"), a.sinks);
  writeRawTensor(view, at("alibi_slopes"), a.alibiSlopes);
  view.setInt32(at("window_left"), a.windowLeft, true);
  view.setInt32(at("window_right"), a.windowRight, true);
  view.setFloat32(at("softcap"), a.softcap, true);
  view.setInt32(at("reserved2"), a.reserved2, true);
}

/** fa_forward_args, at the offsets of the library's fa_abi_layout() table. */
function packRawForward(a: RawForward): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(libraryStruct("fa_forward_args").size);
  writeRawShared(new DataView(bytes.buffer), "fa_forward_args", a);
  return bytes;
}

interface RawBackward extends RawForward {
  dout: RawTensor;
  lse: RawTensor;
  dq: RawTensor;
  dk: RawTensor;
  dv: RawTensor;
  dbias?: RawTensor;
  workspace: bigint;
  workspaceBytes: bigint;
  dsinks?: RawTensor;
}

/** fa_backward_args, at the offsets of the library's fa_abi_layout() table. */
function packRawBackward(a: RawBackward): Uint8Array<ArrayBuffer> {
  const struct = "fa_backward_args";
  const bytes = new Uint8Array(libraryStruct(struct).size);
  const view = new DataView(bytes.buffer);
  const at = (name: string) => libraryOffset(struct, name);
  writeRawShared(view, struct, a);
  writeRawTensor(view, at("dout"), a.dout);
  writeRawTensor(view, at("dq"), a.dq);
  writeRawTensor(view, at("dk"), a.dk);
  writeRawTensor(view, at("dv"), a.dv);
  writeRawTensor(view, at("dbias"), a.dbias);
  view.setBigUint64(at("workspace"), a.workspace, true);
  view.setBigUint64(at("workspace_bytes"), a.workspaceBytes, true);
  writeRawTensor(view, at("dsinks"), a.dsinks);
  return bytes;
}

const FORWARD_SIZE = (): number => libraryStruct("fa_forward_args").size;
const BACKWARD_SIZE = (): number => libraryStruct("fa_backward_args").size;

/** Host buffers for a raw problem [1, 2, 4, 8] x [1, 2, 8, 8], kept alive by this object. */
class RawProblem {
  // Sized for the nested problem (q/out [8, 2, 8], lse [8, 2]); the dense one uses the front.
  readonly q = new Uint16Array(8 * 2 * 8);
  readonly k = new Uint16Array(1 * 2 * 8 * 8);
  readonly v = new Uint16Array(1 * 2 * 8 * 8);
  readonly out = new Uint16Array(8 * 2 * 8);
  readonly lse = new Float32Array(8 * 2);
  readonly dout = new Uint16Array(1 * 2 * 4 * 8);
  readonly dq = new Uint16Array(1 * 2 * 4 * 8);
  readonly dk = new Uint16Array(1 * 2 * 8 * 8);
  readonly dv = new Uint16Array(1 * 2 * 8 * 8);
  readonly bias = new Float32Array(8);
  readonly dbias = new Float32Array(8);
  readonly cu = new Int32Array([0, 4, 8]);

  constructor() {
    const r = new Rng(77);
    // float16 bits of small normal numbers: 0x3000..0x37ff (0.125 .. 0.5) with random signs.
    for (const a of [this.q, this.k, this.v, this.dout]) {
      for (let i = 0; i < a.length; i++) a[i] = 0x3000 + r.int(0, 0x7ff) + (r.int(0, 1) << 15);
    }
    this.bias.set(r.normalArray(8));
  }

  poison(): void {
    for (const a of [this.out, this.dq, this.dk, this.dv]) a.fill(0x7e00); // float16 NaN
    this.lse.fill(POISON);
    this.dbias.fill(POISON);
  }

  untouched(): boolean {
    for (const a of [this.out, this.dq, this.dk, this.dv]) {
      if (a.some((x) => x !== 0x7e00)) return false;
    }
    return this.lse.every((x) => x === POISON) && this.dbias.every((x) => x === POISON);
  }

  t(
    buffer: Uint16Array<ArrayBuffer> | Float32Array<ArrayBuffer> | Int32Array<ArrayBuffer>,
    dtype: number,
    shape: number[],
  ): RawTensor {
    const stride = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
    return { data: addressOf(buffer), dtype, device: -1, shape, stride };
  }

  forward(): RawForward {
    return {
      abiVersion: 3,
      structSize: FORWARD_SIZE(),
      q: this.t(this.q, FA_FLOAT16, [1, 2, 4, 8]),
      k: this.t(this.k, FA_FLOAT16, [1, 2, 8, 8]),
      v: this.t(this.v, FA_FLOAT16, [1, 2, 8, 8]),
      out: this.t(this.out, FA_FLOAT16, [1, 2, 4, 8]),
      lse: this.t(this.lse, FA_FLOAT32, [1, 2, 4]),
      scale: 0.35,
      dropoutP: 0,
      seed: 0n,
      offset: 0n,
      flags: 0,
      maxQ: 0,
      maxK: 0,
      reserved: 0,
      windowLeft: -1,
      windowRight: -1,
      softcap: 0,
      reserved2: 0,
    };
  }

  backward(): RawBackward {
    return {
      ...this.forward(),
      structSize: BACKWARD_SIZE(),
      dout: this.t(this.dout, FA_FLOAT16, [1, 2, 4, 8]),
      lse: this.t(this.lse, FA_FLOAT32, [1, 2, 4]),
      dq: this.t(this.dq, FA_FLOAT16, [1, 2, 4, 8]),
      dk: this.t(this.dk, FA_FLOAT16, [1, 2, 8, 8]),
      dv: this.t(this.dv, FA_FLOAT16, [1, 2, 8, 8]),
      workspace: 0n,
      workspaceBytes: 0n,
    };
  }

  /** A nested problem: q [8, 2, 8] (two sequences of 4), k/v [16, 1, 8] (two of 8). */
  nested(cuQ: Int32Array<ArrayBuffer>, cuK: Int32Array<ArrayBuffer>): RawForward {
    return {
      ...this.forward(),
      q: this.t(this.q, FA_FLOAT16, [8, 2, 8]),
      k: this.t(this.k, FA_FLOAT16, [16, 1, 8]),
      v: this.t(this.v, FA_FLOAT16, [16, 1, 8]),
      out: this.t(this.out, FA_FLOAT16, [8, 2, 8]),
      lse: this.t(this.lse, FA_FLOAT32, [8, 2]),
      cuQ: this.t(cuQ, FA_INT32, [cuQ.length]),
      cuK: this.t(cuK, FA_INT32, [cuK.length]),
    };
  }
}

/** Calls fa_forward on a mutated baseline; expects `status` and a message about `argument`. */
function rawForwardFails(
  what: string,
  status: number,
  argument: string,
  mutate: (a: RawForward, p: RawProblem) => RawForward,
): void {
  const p = new RawProblem();
  p.poison();
  const args = packRawForward(mutate(p.forward(), p));
  const got = ffi().fa_forward(args);
  const message = lastError();
  assert.equal(got, status, `${what}: status ${got} ("${message}")`);
  assert.ok(message.startsWith(`${argument}: `), `${what}: message "${message}"`);
  assert.ok(p.untouched(), `${what}: outputs were written`);
}

function rawBackwardFails(
  what: string,
  status: number,
  argument: string,
  mutate: (a: RawBackward, p: RawProblem) => RawBackward,
): void {
  const p = new RawProblem();
  p.poison();
  const args = packRawBackward(mutate(p.backward(), p));
  const got = ffi().fa_backward(args);
  const message = lastError();
  assert.equal(got, status, `${what}: status ${got} ("${message}")`);
  assert.ok(message.startsWith(`${argument}: `), `${what}: message "${message}"`);
  assert.ok(p.untouched(), `${what}: outputs were written`);
}

const INVALID = 1, ABI_MISMATCH = 6;

Deno.test("raw ABI: the baselines succeed, write every output and clear the last error", () => {
  const p = new RawProblem();
  p.poison();
  assert.equal(ffi().fa_forward(packRawForward({ ...p.forward(), scale: Number.NaN })), INVALID);
  assert.notEqual(lastError(), "");
  assert.equal(ffi().fa_forward(packRawForward(p.forward())), 0, lastError());
  assert.equal(lastError(), "", "a successful call clears the message");
  assert.ok(!p.out.subarray(0, 64).some((x) => x === 0x7e00), "forward out fully written");
  assert.ok(p.out.subarray(64).every((x) => x === 0x7e00), "nothing written past out");
  const lse = p.lse.subarray(0, 8);
  assert.ok(lse.every((x) => x !== POISON && Number.isFinite(x)), "lse fully written");
  const b = p.backward();
  assert.equal(ffi().fa_backward(packRawBackward(b)), 0, lastError());
  for (const [name, a] of [["dq", p.dq], ["dk", p.dk], ["dv", p.dv]] as const) {
    assert.ok(!a.some((x) => x === 0x7e00), `${name} fully written`);
  }
  const bias = p.t(p.bias, FA_FLOAT32, [1, 1, 1, 8]);
  bias.stride = [0, 0, 0, 1];
  bias.shape = [1, 2, 4, 8];
  const dbias = { ...bias, data: addressOf(p.dbias) };
  assert.equal(ffi().fa_backward(packRawBackward({ ...b, bias, dbias })), 0, lastError());
  assert.ok(p.dbias.every((x) => x !== POISON), "dbias (broadcast, reduced) fully written");
  const cuQ = new Int32Array([0, 4, 8]), cuK = new Int32Array([0, 8, 16]);
  p.poison();
  assert.equal(ffi().fa_forward(packRawForward(p.nested(cuQ, cuK))), 0, lastError());
  assert.ok(!p.out.some((x) => x === 0x7e00), "nested out fully written");
  assert.ok(p.lse.every((x) => x !== POISON && Number.isFinite(x)), "nested lse fully written");
});

Deno.test("raw ABI: a dbias view with no elements is never written (nested, every query sequence empty)", () => {
  const p = new RawProblem();
  p.poison();
  // q, out, dout, dq: 0 packed rows; k, v, dk, dv: two sequences of 8 rows.
  const nested = p.nested(new Int32Array([0, 0, 0]), new Int32Array([0, 8, 16]));
  // [B, Hq, maxSq = 0, maxSk] with a stride-0 row dim: a "sum over the rows" of no rows.
  const empty = (buffer: Float32Array<ArrayBuffer>): RawTensor => ({
    ...p.t(buffer, FA_FLOAT32, [2, 2, 0, 8]),
    stride: [0, 0, 0, 1],
  });
  const args: RawBackward = {
    ...p.backward(),
    ...nested,
    structSize: BACKWARD_SIZE(),
    q: p.t(p.q, FA_FLOAT16, [0, 2, 8]),
    out: p.t(p.out, FA_FLOAT16, [0, 2, 8]),
    dout: p.t(p.dout, FA_FLOAT16, [0, 2, 8]),
    lse: p.t(p.lse, FA_FLOAT32, [0, 2]),
    dq: p.t(p.dq, FA_FLOAT16, [0, 2, 8]),
    dk: p.t(p.dk, FA_FLOAT16, [16, 1, 8]),
    dv: p.t(p.dv, FA_FLOAT16, [16, 1, 8]),
    bias: empty(p.bias),
    dbias: empty(p.dbias),
  };
  assert.equal(ffi().fa_backward(packRawBackward(args)), 0, lastError());
  assert.ok(p.dbias.every((x) => x === POISON), "nothing written through the empty dbias");
  const zero = (x: number) => (x & 0x7fff) === 0;
  assert.ok(p.dk.every(zero) && p.dv.every(zero), "dk, dv = 0 (no queries)");
  assert.ok(p.dq.every((x) => x === 0x7e00), "nothing written to the empty dq");
});

Deno.test("raw ABI: this file's packing equals ffi/structs.ts byte for byte", () => {
  const p = new RawProblem();
  const a = p.forward();
  const bias = { ...p.t(p.bias, FA_FLOAT32, [1, 2, 4, 8]), stride: [0, 0, 0, 1] };
  const desc = (t: RawTensor): TensorDescriptor => ({
    data: t.data,
    dtype: t.dtype,
    device: t.device,
    shape: t.shape,
    strides: t.stride,
  });
  const mine = packRawForward({
    ...a,
    bias,
    dropoutP: 0.25,
    seed: 0x0123456789abcdefn,
    offset: 77n,
    flags: 1,
    maxQ: 3,
    maxK: 5,
  });
  const theirs = packForwardArgs({
    q: desc(a.q),
    k: desc(a.k),
    v: desc(a.v),
    out: desc(a.out),
    lse: a.lse && desc(a.lse),
    bias: desc(bias),
    scale: 0.35,
    dropoutP: 0.25,
    seed: 0x0123456789abcdefn,
    offset: 77n,
    flags: 1,
    maxSeqlenQ: 3,
    maxSeqlenK: 5,
    stream: 0n,
  });
  assert.deepEqual(theirs, mine);
  const b = p.backward();
  const mineB = packRawBackward({
    ...b,
    bias,
    dbias: bias,
    flags: 3,
    workspace: 64n,
    workspaceBytes: 128n,
  });
  const theirsB = packBackwardArgs({
    q: desc(b.q),
    k: desc(b.k),
    v: desc(b.v),
    out: desc(b.out),
    dout: desc(b.dout),
    lse: desc(b.lse),
    dq: desc(b.dq),
    dk: desc(b.dk),
    dv: desc(b.dv),
    bias: desc(bias),
    dbias: desc(bias),
    scale: 0.35,
    dropoutP: 0,
    seed: 0n,
    offset: 0n,
    flags: 3,
    maxSeqlenQ: 0,
    maxSeqlenK: 0,
    stream: 0n,
    workspace: 64n,
    workspaceBytes: 128n,
  });
  assert.deepEqual(theirsB, mineB);
});

Deno.test("raw ABI: abi_version and struct_size mismatches are refused (abi_mismatch)", () => {
  rawForwardFails("abi_version 999", ABI_MISMATCH, "args", (a) => ({ ...a, abiVersion: 999 }));
  rawForwardFails("abi_version 0", ABI_MISMATCH, "args", (a) => ({ ...a, abiVersion: 0 }));
  rawForwardFails("struct_size 760 (ABI 1's)", ABI_MISMATCH, "args", (a) => ({
    ...a,
    structSize: 760,
  }));
  rawForwardFails(
    "struct_size of fa_backward_args",
    ABI_MISMATCH,
    "args",
    (a) => ({ ...a, structSize: BACKWARD_SIZE() }),
  );
  rawBackwardFails(
    "backward abi_version 1",
    ABI_MISMATCH,
    "args",
    (a) => ({ ...a, abiVersion: 1 }),
  );
  rawBackwardFails(
    "backward struct_size of fa_forward_args",
    ABI_MISMATCH,
    "args",
    (a) => ({ ...a, structSize: FORWARD_SIZE() }),
  );
  rawBackwardFails(
    "backward struct_size 1216 (ABI 1's)",
    ABI_MISMATCH,
    "args",
    (a) => ({ ...a, structSize: 1216 }),
  );
  // Through the FFI layer's status check: FlashAttentionError code "abi_mismatch".
  const p = new RawProblem();
  const bad = packRawForward({ ...p.forward(), abiVersion: 999 });
  const e = assertFails(() => check(ffi().fa_forward(bad), "attention"), "abi_mismatch", "args");
  assert.equal(e.status, ABI_MISMATCH);
});

Deno.test("raw ABI: mismatched devices, misaligned pointers, bad strides", () => {
  rawForwardFails(
    "k on device 0, q on the cpu",
    INVALID,
    "k",
    (a) => ({ ...a, k: { ...a.k, device: 0 } }),
  );
  rawForwardFails(
    "out on device 0",
    INVALID,
    "out",
    (a) => ({ ...a, out: { ...a.out, device: 0 } }),
  );
  rawForwardFails(
    "lse on device 3",
    INVALID,
    "lse",
    (a) => ({ ...a, lse: { ...a.lse!, device: 3 } }),
  );
  rawForwardFails("q address + 1 (float16 needs 2-byte alignment)", INVALID, "q", (a) => ({
    ...a,
    q: { ...a.q, data: a.q.data + 1n },
  }));
  rawForwardFails("lse address + 2", INVALID, "lse", (a) => ({
    ...a,
    lse: { ...a.lse!, data: a.lse!.data + 2n },
  }));
  rawForwardFails("q last stride 2", INVALID, "q", (a) => ({
    ...a,
    q: { ...a.q, stride: [64, 32, 8, 2] },
  }));
  rawForwardFails("out with a zero stride on heads", INVALID, "out", (a) => ({
    ...a,
    out: { ...a.out, stride: [64, 0, 8, 1] },
  }));
  rawForwardFails("out rows overlapping (row stride 4 < D)", INVALID, "out", (a) => ({
    ...a,
    out: { ...a.out, stride: [32, 16, 4, 1] },
  }));
  rawForwardFails("lse with a zero stride", INVALID, "lse", (a) => ({
    ...a,
    lse: { ...a.lse!, stride: [8, 0, 1] },
  }));
  rawForwardFails("q data 0 (null)", INVALID, "q", (a) => ({ ...a, q: { ...a.q, data: 0n } }));
  rawForwardFails("q ndim 5", INVALID, "q", (a) => ({ ...a, q: { ...a.q, ndim: 5 } }));
  rawForwardFails("q reserved field", INVALID, "q", (a) => ({ ...a, q: { ...a.q, reserved: 1 } }));
  rawBackwardFails(
    "dq with a zero stride",
    INVALID,
    "dq",
    (a) => ({ ...a, dq: { ...a.dq, stride: [64, 32, 0, 1] } }),
  );
  rawBackwardFails("dk on device 0", INVALID, "dk", (a) => ({ ...a, dk: { ...a.dk, device: 0 } }));
  rawBackwardFails(
    "dv misaligned",
    INVALID,
    "dv",
    (a) => ({ ...a, dv: { ...a.dv, data: a.dv.data + 1n } }),
  );
});

Deno.test("raw ABI: an output sharing memory with another output or an input is refused", () => {
  rawForwardFails("out = q", INVALID, "out", (a) => ({ ...a, out: { ...a.out, data: a.q.data } }));
  rawBackwardFails("dk = dv", INVALID, "dk", (a) => ({ ...a, dk: { ...a.dk, data: a.dv.data } }));
  rawBackwardFails(
    "dq = dout",
    INVALID,
    "dq",
    (a) => ({ ...a, dq: { ...a.dq, data: a.dout.data } }),
  );
  rawBackwardFails("dv = v", INVALID, "dv", (a) => ({ ...a, dv: { ...a.dv, data: a.v.data } }));
});

Deno.test("raw ABI: element counts and byte offsets beyond int64 are refused, naming the tensor", () => {
  // 2^31 * 2^31 * 8 = 2^65 elements wraps to 0 in int64: such a tensor must not pass as empty
  // (which skipped the overlap and alignment checks, then ran for ever over stride-0 views).
  const huge = { shape: [2 ** 31, 2 ** 31, 1, 8], stride: [0, 0, 0, 1] };
  const tooMany = /: shape \[2147483648, 2147483648, 1, 8\] has more than 2\^63 elements$/;
  rawForwardFails("a whole problem of stride-0 views, 2^65 elements each", INVALID, "q", (a) => ({
    ...a,
    q: { ...a.q, ...huge },
    k: { ...a.k, ...huge },
    v: { ...a.v, ...huge },
    out: { ...a.out, ...huge },
    lse: undefined,
  }));
  assert.match(lastError(), tooMany);
  rawForwardFails("out of 2^65 elements", INVALID, "out", (a) => ({
    ...a,
    out: { ...a.out, ...huge },
  }));
  assert.match(lastError(), tooMany);
  rawBackwardFails("dq of 2^65 elements", INVALID, "dq", (a) => ({
    ...a,
    dq: { ...a.dq, ...huge },
  }));
  assert.match(lastError(), tooMany);
  rawBackwardFails(
    "dbias of 2^65 elements (reducible stride-0 dims)",
    INVALID,
    "dbias",
    (a, p) => ({
      ...a,
      bias: { ...p.t(p.bias, FA_FLOAT32, [1, 2, 4, 8]), stride: [0, 0, 0, 1] },
      dbias: { ...p.t(p.dbias, FA_FLOAT32, [1, 1, 1, 8]), ...huge },
    }),
  );
  assert.match(lastError(), tooMany);
  rawForwardFails("lse whose last byte offset passes 2^63", INVALID, "lse", (a) => ({
    ...a,
    lse: { ...a.lse!, stride: [8, 2 ** 61, 1] },
  }));
  assert.match(lastError(), /^lse: shape \[1, 2, 4\] with strides \[8, \d+, 1\] spans more than/);
});

Deno.test("raw ABI: scalar fields", () => {
  for (const scale of [0, -1, NaN, Infinity]) {
    rawForwardFails(`scale ${scale}`, INVALID, "scale", (a) => ({ ...a, scale }));
  }
  for (const dropoutP of [1, -0.25, NaN, 2]) {
    rawForwardFails(`dropout_p ${dropoutP}`, INVALID, "dropout_p", (a) => ({ ...a, dropoutP }));
    rawBackwardFails(
      `backward dropout_p ${dropoutP}`,
      INVALID,
      "dropout_p",
      (a) => ({ ...a, dropoutP }),
    );
  }
  rawForwardFails("unknown flag bit", INVALID, "flags", (a) => ({ ...a, flags: 4 }));
  rawForwardFails("reserved", INVALID, "reserved", (a) => ({ ...a, reserved: 7 }));
  rawBackwardFails("workspace_bytes without workspace", INVALID, "workspace", (a) => ({
    ...a,
    workspaceBytes: 1024n,
  }));
});

Deno.test("raw ABI: dbias without bias; bias and dbias shapes", () => {
  rawBackwardFails("dbias without bias", INVALID, "dbias", (a, p) => ({
    ...a,
    dbias: { ...p.t(p.dbias, FA_FLOAT32, [1, 2, 4, 8]), stride: [0, 0, 0, 1] },
  }));
  rawForwardFails("bias with a zero stride on the key dim", INVALID, "bias", (a, p) => ({
    ...a,
    bias: { ...p.t(p.bias, FA_FLOAT32, [1, 2, 4, 8]), stride: [0, 0, 0, 0] },
  }));
  rawForwardFails("bias shape Sk + 1", INVALID, "bias", (a, p) => ({
    ...a,
    bias: { ...p.t(p.bias, FA_FLOAT32, [1, 2, 4, 9]), stride: [0, 0, 0, 1] },
  }));
  rawForwardFails("bias rank 3", INVALID, "bias", (a, p) => ({
    ...a,
    bias: { ...p.t(p.bias, FA_FLOAT32, [2, 4, 8]), stride: [0, 0, 1] },
  }));
  rawForwardFails("bias int32", INVALID, "bias", (a, p) => ({
    ...a,
    bias: { ...p.t(p.bias, FA_INT32, [1, 2, 4, 8]), stride: [0, 0, 0, 1] },
  }));
});

Deno.test("raw ABI: cu_seqlens checks", () => {
  const nestedFails = (
    what: string,
    argument: string,
    cuQ: Int32Array<ArrayBuffer>,
    cuK: Int32Array<ArrayBuffer>,
    mutate: (a: RawForward) => RawForward = (a) => a,
  ): void => {
    rawForwardFails(what, INVALID, argument, (_a, p) => mutate(p.nested(cuQ, cuK)));
  };
  const okK = new Int32Array([0, 8, 16]);
  nestedFails("cu_seqlens_q decreasing", "cu_seqlens_q", new Int32Array([0, 6, 3]), okK);
  nestedFails(
    "cu_seqlens_k decreasing",
    "cu_seqlens_k",
    new Int32Array([0, 4, 8]),
    new Int32Array([0, 9, 8]),
  );
  nestedFails("cu_seqlens_q not starting at 0", "cu_seqlens_q", new Int32Array([1, 4, 8]), okK);
  nestedFails("cu_seqlens_q past the packed rows", "cu_seqlens_q", new Int32Array([0, 4, 9]), okK);
  nestedFails(
    "cu_seqlens_k past the packed rows",
    "cu_seqlens_k",
    new Int32Array([0, 4, 8]),
    new Int32Array([0, 8, 17]),
  );
  nestedFails(
    "cu_seqlens_k length differs",
    "cu_seqlens_k",
    new Int32Array([0, 4, 8]),
    new Int32Array([0, 4, 8, 16]),
  );
  nestedFails("cu_seqlens_q length 1", "cu_seqlens_q", new Int32Array([0]), new Int32Array([0]));
  nestedFails("cu_seqlens_q float32", "cu_seqlens_q", new Int32Array([0, 4, 8]), okK, (a) => ({
    ...a,
    cuQ: { ...a.cuQ!, dtype: FA_FLOAT32 },
  }));
  nestedFails("cu_seqlens_k rank 2", "cu_seqlens_k", new Int32Array([0, 4, 8]), okK, (a) => ({
    ...a,
    cuK: { ...a.cuK!, shape: [1, 3], stride: [3, 1] },
  }));
  nestedFails("cu_seqlens_k missing", "cu_seqlens_k", new Int32Array([0, 4, 8]), okK, (a) => ({
    ...a,
    cuK: undefined,
  }));
  nestedFails(
    "max_seqlen_q below the longest",
    "max_seqlen_q",
    new Int32Array([0, 4, 8]),
    okK,
    (a) => ({
      ...a,
      maxQ: 3,
    }),
  );
});

// ---------------------------------------------------------------------------------------------
// Score features (window, softcap, sinks, ALiBi, dsinks): every refused value names its
// argument and leaves the outputs untouched.

const f32 = (shape: number[]): Tensor => Tensor.zeros(shape, "float32");

Deno.test("errors: window and softcap values (TypeScript checks and the library's)", () => {
  const bad: [string, unknown][] = [
    ["one number", 3],
    ["one edge", [3]],
    ["three edges", [1, 2, 3]],
    ["a fraction", [1.5, 0]],
    ["NaN", [NaN, 0]],
    ["a string", ["1", 0]],
    ["past int32", [2 ** 31, 0]],
  ];
  for (const [what, window] of bad) {
    forwardFails(`window ${what}`, "invalid_argument", "window", () => ({
      options: { window: window as [number, number] },
    }));
  }
  for (const window of [[-2, 0], [0, -2], [-5, -5]] as [number, number][]) {
    forwardFails(`window [${window}]`, "invalid_argument", "window", () => ({
      options: { window },
    }));
  }
  for (const window of [[-1, 1], [4, 3]] as [number, number][]) {
    forwardFails(`causal with window [${window}]`, "invalid_argument", "window", () => ({
      options: { causal: true, window },
    }));
  }
  for (const softcap of [-1, -1e-30, NaN, Infinity, -Infinity]) {
    forwardFails(`softcap ${softcap}`, "invalid_argument", "softcap", () => ({
      options: { softcap },
    }));
  }
  forwardFails("softcap a string", "invalid_argument", "softcap", () => ({
    options: { softcap: "2" as unknown as number },
  }));
  // Accepted: causal with right -1 or 0, softcap 0 (off).
  const b = baseline();
  try {
    attention(b.q, b.k, b.v, { causal: true, window: [3, -1], softcap: 0 });
    attention(b.q, b.k, b.v, { causal: true, window: [3, 0] }).out.dispose();
  } finally {
    disposeTensors(b);
  }
});

Deno.test("errors: sinks and alibiSlopes of a wrong dtype, shape or rank", () => {
  const cases: [string, string, () => AttentionOptions][] = [
    ["sinks float16", "sinks", () => ({ sinks: poisoned([HQ], "float16") })],
    ["sinks [Hq + 1]", "sinks", () => ({ sinks: f32([HQ + 1]) })],
    ["sinks [Hkv]", "sinks", () => ({ sinks: f32([HKV]) })],
    ["sinks [1, Hq]", "sinks", () => ({ sinks: f32([1, HQ]) })],
    ["alibiSlopes bfloat16", "alibi_slopes", () => ({ alibiSlopes: poisoned([HQ], "bfloat16") })],
    ["alibiSlopes [Hq - 1]", "alibi_slopes", () => ({ alibiSlopes: f32([HQ - 1]) })],
    ["alibiSlopes [B + 1, Hq]", "alibi_slopes", () => ({ alibiSlopes: f32([B + 1, HQ]) })],
    ["alibiSlopes [Hq, B]", "alibi_slopes", () => ({ alibiSlopes: f32([HQ, B]) })],
    ["alibiSlopes [1, B, Hq]", "alibi_slopes", () => ({ alibiSlopes: f32([1, B, HQ]) })],
  ];
  for (const [what, argument, options] of cases) {
    forwardFails(what, "invalid_argument", argument, () => ({ options: options() }));
  }
  // A disposed sinks tensor is named too.
  const sinks = f32([HQ]);
  sinks.dispose();
  forwardFails("sinks disposed", "disposed", "sinks", () => ({ options: { sinks } }));
});

Deno.test("errors: dsinks missing, without sinks, of a wrong shape or dtype (backward)", () => {
  const b = baseline();
  const dout = rand([B, HQ, SQ, D]);
  const sinks = f32([HQ]);
  const fwd = attention(b.q, b.k, b.v, { sinks });
  const dq = poisoned([B, HQ, SQ, D], "float16");
  const extra: Tensor[] = [];
  const keep = (t: Tensor): Tensor => {
    extra.push(t);
    return t;
  };
  const fails = (what: string, argument: string, options: BackwardOptions): void => {
    assertFails(
      () => attentionBackward(dout, b.q, b.k, b.v, fwd.out, fwd.lse, { dq, ...options }),
      "invalid_argument",
      argument,
      what,
    );
    assertAllEqual(`${what}: dq after the error`, dq.toFloat32(), POISON);
  };
  try {
    fails("dsinks without sinks", "dsinks", { dsinks: keep(poisoned([HQ], "float32")) });
    fails("dsinks [Hq + 1]", "dsinks", { sinks, dsinks: keep(poisoned([HQ + 1], "float32")) });
    fails("dsinks float16", "dsinks", { sinks, dsinks: keep(poisoned([HQ], "float16")) });
    fails("sinks [Hkv]", "sinks", { sinks: keep(f32([HKV])) });
    fails("alibiSlopes [B, Hkv]", "alibi_slopes", { alibiSlopes: keep(f32([B, HKV])) });
    fails("causal with window [0, 2]", "window", { causal: true, window: [0, 2] });
    fails("softcap NaN", "softcap", { softcap: NaN });
    const dsinks = keep(poisoned([HQ], "float32"));
    const g = attentionBackward(dout, b.q, b.k, b.v, fwd.out, fwd.lse, { sinks, dsinks });
    assert.equal(g.dsinks, dsinks, "a passed dsinks is returned");
    assert.ok(dsinks.toFloat32().every((x) => x !== POISON), "dsinks written");
    disposeTensors(g);
  } finally {
    disposeTensors(b, fwd, { dout, sinks, dq });
    for (const t of extra) if (!t.disposed) t.dispose();
  }
});

Deno.test("raw ABI: score feature fields (window, softcap, reserved2, sinks, alibi_slopes)", () => {
  for (const [left, right] of [[-2, -1], [-1, -3], [-100, 0]]) {
    rawForwardFails(`window (${left}, ${right})`, INVALID, "window", (a) => ({
      ...a,
      windowLeft: left,
      windowRight: right,
    }));
  }
  rawForwardFails("causal flag with window_right 1", INVALID, "window", (a) => ({
    ...a,
    flags: 1,
    windowRight: 1,
  }));
  for (const softcap of [-0.5, NaN, Infinity]) {
    rawForwardFails(`softcap ${softcap}`, INVALID, "softcap", (a) => ({ ...a, softcap }));
    rawBackwardFails(`backward softcap ${softcap}`, INVALID, "softcap", (a) => ({
      ...a,
      softcap,
    }));
  }
  rawForwardFails("reserved2", INVALID, "reserved2", (a) => ({ ...a, reserved2: 1 }));
  rawBackwardFails("backward reserved2", INVALID, "reserved2", (a) => ({ ...a, reserved2: -1 }));
  const sinks = new Float32Array(2), slopes = new Float32Array(4);
  rawForwardFails("sinks on device 0", INVALID, "sinks", (a, p) => ({
    ...a,
    sinks: { ...p.t(sinks, FA_FLOAT32, [2]), device: 0 },
  }));
  rawForwardFails("sinks int32", INVALID, "sinks", (a, p) => ({
    ...a,
    sinks: p.t(new Int32Array(2), FA_INT32, [2]),
  }));
  rawForwardFails("sinks misaligned", INVALID, "sinks", (a, p) => ({
    ...a,
    sinks: { ...p.t(sinks, FA_FLOAT32, [2]), data: addressOf(sinks) + 1n },
  }));
  rawForwardFails("sinks ndim 0", INVALID, "sinks", (a, p) => ({
    ...a,
    sinks: { ...p.t(sinks, FA_FLOAT32, [2]), ndim: 0 },
  }));
  rawForwardFails("alibi_slopes on device 0", INVALID, "alibi_slopes", (a, p) => ({
    ...a,
    alibiSlopes: { ...p.t(slopes, FA_FLOAT32, [1, 2]), device: 0 },
  }));
  rawForwardFails("alibi_slopes [1, 2] with a zero head stride", INVALID, "alibi_slopes", (
    a,
    p,
  ) => ({ ...a, alibiSlopes: { ...p.t(slopes, FA_FLOAT32, [1, 2]), stride: [2, 0] } }));
  // Accepted: the zeroed window (0, 0) is a valid window (each row sees its diagonal key).
  const p = new RawProblem();
  const args = {
    ...p.forward(),
    windowLeft: 0,
    windowRight: 0,
    sinks: p.t(sinks, FA_FLOAT32, [2]),
  };
  assert.equal(ffi().fa_forward(packRawForward(args)), 0, lastError());
});

Deno.test("raw ABI: dsinks required with sinks, refused without, checked and not overlapping", () => {
  const sinks = new Float32Array(2), dsinks = new Float32Array(4);
  const withSinks = (a: RawBackward, p: RawProblem): RawBackward => ({
    ...a,
    sinks: p.t(sinks, FA_FLOAT32, [2]),
  });
  rawBackwardFails("sinks without dsinks", INVALID, "dsinks", withSinks);
  rawBackwardFails("dsinks without sinks", INVALID, "dsinks", (a, p) => ({
    ...a,
    dsinks: p.t(dsinks, FA_FLOAT32, [2]),
  }));
  rawBackwardFails("dsinks [3]", INVALID, "dsinks", (a, p) => ({
    ...withSinks(a, p),
    dsinks: p.t(dsinks, FA_FLOAT32, [3]),
  }));
  rawBackwardFails("dsinks float16", INVALID, "dsinks", (a, p) => ({
    ...withSinks(a, p),
    dsinks: p.t(new Uint16Array(2), FA_FLOAT16, [2]),
  }));
  rawBackwardFails("dsinks on device 0", INVALID, "dsinks", (a, p) => ({
    ...withSinks(a, p),
    dsinks: { ...p.t(dsinks, FA_FLOAT32, [2]), device: 0 },
  }));
  rawBackwardFails("dsinks with a zero stride (one address for two heads)", INVALID, "dsinks", (
    a,
    p,
  ) => ({ ...withSinks(a, p), dsinks: { ...p.t(dsinks, FA_FLOAT32, [2]), stride: [0] } }));
  rawBackwardFails("dsinks aliasing sinks", INVALID, "dsinks", (a, p) => ({
    ...withSinks(a, p),
    dsinks: p.t(sinks, FA_FLOAT32, [2]),
  }));
  rawBackwardFails("dsinks inside lse", INVALID, "dsinks", (a, p) => ({
    ...withSinks(a, p),
    dsinks: p.t(p.lse, FA_FLOAT32, [2]),
  }));
  // Accepted: its own memory; written, not accumulated.
  const p = new RawProblem();
  assert.equal(
    ffi().fa_forward(packRawForward({ ...p.forward(), sinks: p.t(sinks, FA_FLOAT32, [2]) })),
    0,
  );
  dsinks.fill(POISON);
  const args = { ...withSinks(p.backward(), p), dsinks: p.t(dsinks, FA_FLOAT32, [2]) };
  assert.equal(ffi().fa_backward(packRawBackward(args)), 0, lastError());
  const first = [...dsinks.subarray(0, 2)];
  assert.ok(first.every((x) => x !== POISON && Number.isFinite(x)), `dsinks ${first}`);
  assert.equal(ffi().fa_backward(packRawBackward(args)), 0, lastError());
  assert.deepEqual([...dsinks.subarray(0, 2)], first, "written, not accumulated");
  assert.deepEqual([...dsinks.subarray(2)], [POISON, POISON], "nothing past dsinks");
});

Deno.test("abi layout: ffi/structs.ts's field table equals the library's fa_abi_layout(), field by field", () => {
  const library = libraryAbiLayout();
  assert.deepEqual(
    [...library.keys()].sort(),
    Object.keys(ABI_LAYOUT).sort(),
    "the same structs",
  );
  for (const [name, struct] of Object.entries(ABI_LAYOUT)) {
    const theirs = library.get(name)!;
    assert.equal(struct.size, theirs.size, `sizeof ${name}`);
    assert.deepEqual(
      Object.keys(struct.fields),
      [...theirs.fields.keys()],
      `${name}: the same fields in the same order`,
    );
    for (const [field, layout] of Object.entries(struct.fields)) {
      const c = theirs.fields.get(field)!;
      assert.equal(layout.offset, c.offset, `${name}.${field} offset`);
      assert.equal(layout.size, c.size, `${name}.${field} size`);
    }
  }
  // The text the loader compares at load time round-trips through the parser.
  assert.deepEqual(parseAbiLayout(formatAbiLayout()), library);
  assert.equal(FORWARD_ARGS_BYTES, library.get("fa_forward_args")!.size);
  assert.equal(BACKWARD_ARGS_BYTES, library.get("fa_backward_args")!.size);
  // The header keeps no hand-written offset list (the table is the one description).
  const header = Deno.readTextFileSync(new URL("../cuda/include/flashattn.h", import.meta.url));
  assert.ok(!/\w@\d+/.test(header), "flashattn.h lists offsets by hand (name@offset)");
});

Deno.test("abi layout: parseAbiLayout rejects malformed text", () => {
  assert.throws(() => parseAbiLayout("field x 0 4\n"), /cannot parse/);
  assert.throws(() => parseAbiLayout("struct s\n"), /cannot parse/);
  const parsed = parseAbiLayout("struct s 8\nfield a 0 4\nfield b 4 4\n");
  assert.deepEqual([...parsed.get("s")!.fields.keys()], ["a", "b"]);
});
