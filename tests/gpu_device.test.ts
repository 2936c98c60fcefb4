/**
 * GPU memory and device tests. Ignored (reported as ignored, not passed) without a CUDA
 * device. Run with `make test-gpu`.
 */

import assert from "node:assert/strict";
import { ffi, lastError } from "../ffi/library.ts";
import { packForwardArgs, type TensorDescriptor } from "../ffi/structs.ts";
import { describeTensor } from "../src/tensor.ts";
import {
  attention,
  CudaEvent,
  Device,
  type DType,
  FlashAttentionError,
  Stream,
  Tensor,
} from "../mod.ts";
import { disposeTensors } from "./helpers/cases.ts";
import { assertAllEqual, assertBitwise } from "./helpers/check.ts";
import { quantize, Rng } from "./helpers/random.ts";

const CUDA_COUNT = Device.cudaCount();
const ignore = CUDA_COUNT === 0;
const gpu = (): Device => Device.cuda(0);

function assertCode(fn: () => unknown, code: string, argument?: string): FlashAttentionError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof FlashAttentionError, `expected FlashAttentionError, got ${caught}`);
  assert.equal(caught.code, code, caught.message);
  if (argument !== undefined) assert.equal(caught.argument, argument, caught.message);
  return caught;
}

Deno.test({
  name: "gpu device: info (name, compute capability, SMs, memory) and the device list",
  ignore,
  fn() {
    const list = Device.list();
    assert.equal(list.length, 1 + CUDA_COUNT);
    assert.equal(list[0].kind, "cpu");
    for (let i = 0; i < CUDA_COUNT; i++) {
      const d = list[1 + i];
      assert.equal(d.kind, "cuda");
      assert.equal(d.index, i);
      assert.ok(d.equals(Device.cuda(i)));
      assert.ok(d.name.length > 0 && d.name.length < 256, d.name);
      assert.ok(d.computeCapability !== null);
      const [major, minor] = d.computeCapability;
      assert.ok(major >= 3 && major < 100 && minor >= 0 && minor < 10, `CC ${major}.${minor}`);
      assert.ok(d.multiprocessors > 0 && d.multiprocessors < 10_000);
      assert.ok(d.totalMemory > 2 ** 30, `total memory ${d.totalMemory}`);
      const free = d.freeMemory();
      assert.ok(free > 0 && free <= d.totalMemory, `free ${free} of ${d.totalMemory}`);
      assert.equal(d.toString(), `cuda:${i} (${d.name})`);
      d.synchronize();
    }
    assert.ok(Device.default().equals(Device.cuda(0)));
    assertCode(() => Device.cuda(CUDA_COUNT), "no_device");
  },
});

Deno.test({
  name: "gpu memory (raw ABI): malloc, htod, dtoh, dtod, memset round trips incl. odd byte counts",
  ignore,
  fn() {
    const lib = ffi();
    const rng = new Rng(1);
    for (const bytes of [1, 7, 4099, (1 << 20) + 5, (64 << 20) + 3]) {
      const host = new Uint8Array(bytes);
      for (let i = 0; i < bytes; i++) host[i] = rng.nextU32() & 0xff;
      const ptrA = new BigUint64Array(1), ptrB = new BigUint64Array(1);
      assert.equal(lib.fa_malloc(0, BigInt(bytes), ptrA), 0, lastError());
      assert.equal(lib.fa_malloc(0, BigInt(bytes), ptrB), 0, lastError());
      try {
        assert.notEqual(ptrA[0], 0n);
        assert.equal(lib.fa_memcpy_htod(0, ptrA[0], host, BigInt(bytes)), 0, lastError());
        assert.equal(lib.fa_memcpy_dtod(0, ptrB[0], ptrA[0], BigInt(bytes)), 0, lastError());
        const back = new Uint8Array(bytes).fill(0x5a);
        assert.equal(lib.fa_memcpy_dtoh(0, back, ptrB[0], BigInt(bytes)), 0, lastError());
        assert.deepEqual(back, host, `round trip of ${bytes} bytes`);
        // memset an odd sub-range [1, bytes - 1) of B to 0xc3 and read all of it back.
        if (bytes > 2) {
          assert.equal(lib.fa_memset(0, ptrB[0] + 1n, 0xc3, BigInt(bytes - 2)), 0, lastError());
          assert.equal(lib.fa_memcpy_dtoh(0, back, ptrB[0], BigInt(bytes)), 0, lastError());
          assert.equal(back[0], host[0]);
          assert.equal(back[bytes - 1], host[bytes - 1]);
          for (let i = 1; i < bytes - 1; i++) {
            if (back[i] !== 0xc3) assert.fail(`memset byte ${i} is ${back[i]}`);
          }
        }
      } finally {
        assert.equal(lib.fa_free(0, ptrA[0]), 0, lastError());
        assert.equal(lib.fa_free(0, ptrB[0]), 0, lastError());
      }
    }
  },
});

Deno.test({
  name: "gpu tensors: upload/download/device copy of random data, every dtype, odd sizes",
  ignore,
  fn() {
    const rng = new Rng(2);
    const dtypes: DType[] = ["float16", "bfloat16", "float32", "int32"];
    for (const dtype of dtypes) {
      for (const shape of [[1], [3, 5], [7, 1, 13], [2, 3, 129, 40], [1 << 20]]) {
        const n = shape.reduce((a, b) => a * b, 1);
        const values = dtype === "int32"
          ? Float32Array.from({ length: n }, () => rng.int(-1_000_000, 1_000_000))
          : quantize(rng.normalArray(n, 3), dtype === "float32" ? "float32" : dtype);
        const host = dtype === "int32"
          ? Tensor.fromArray(Int32Array.from(values), shape)
          : Tensor.fromArray(values, shape, { dtype });
        const onGpu = host.to(gpu());
        const direct = dtype === "int32"
          ? Tensor.fromArray(Int32Array.from(values), shape, { device: gpu() })
          : Tensor.fromArray(values, shape, { dtype, device: gpu() });
        const copy = onGpu.to(gpu());
        const back = copy.to(Device.cpu());
        try {
          assert.ok(onGpu.device.equals(gpu()));
          assert.deepEqual([...onGpu.shape], shape);
          const name = `${dtype} [${shape}]`;
          assertBitwise(`${name} toFloat32 on device`, onGpu.toFloat32(), values);
          assertBitwise(`${name} fromArray on device`, direct.toFloat32(), values);
          assertBitwise(`${name} device-to-device`, copy.toFloat32(), values);
          assertBitwise(`${name} back on host`, back.toFloat32(), values);
          if (dtype === "float16" || dtype === "bfloat16") {
            assert.deepEqual(onGpu.toBits(), host.toBits());
          }
        } finally {
          disposeTensors({ host, onGpu, direct, copy, back });
        }
      }
    }
    const full = Tensor.full([3, 1001], -2.5, "bfloat16", gpu());
    const zeros = Tensor.zeros([4097], "float16", gpu());
    assertAllEqual("full on device", full.toFloat32(), -2.5);
    assertAllEqual("zeros on device", zeros.toFloat32(), 0);
    disposeTensors({ full, zeros });
  },
});

Deno.test({
  name: "gpu tensors: views (permute, slice, contiguous) of device tensors download correctly",
  ignore,
  fn() {
    const shape = [2, 3, 5, 8];
    const n = 2 * 3 * 5 * 8;
    const values = Float32Array.from({ length: n }, (_, i) => i);
    const host = Tensor.fromArray(values, shape, { dtype: "float16" });
    const dev = host.to(gpu());
    const views: [string, (t: Tensor) => Tensor][] = [
      ["permute", (t) => t.permute([0, 2, 1, 3])],
      ["slice", (t) => t.slice(2, 1, 4)],
      ["slice of permute", (t) => t.permute([1, 0, 2, 3]).slice(0, 1, 3)],
      ["reshape", (t) => t.reshape([6, 40])],
    ];
    try {
      for (const [name, view] of views) {
        const a = view(host), b = view(dev);
        const c = b.contiguous();
        assertBitwise(`${name} on device`, b.toFloat32(), a.toFloat32());
        assertBitwise(`${name} contiguous on device`, c.toFloat32(), a.toFloat32());
        assert.ok(c.device.equals(gpu()) && c.isContiguous);
        disposeTensors({ a, b, c });
      }
    } finally {
      disposeTensors({ host, dev });
    }
  },
});

Deno.test({
  name: "gpu events: elapsed time around device work is positive; streams synchronize",
  ignore,
  fn() {
    const stream = Stream.create(gpu());
    const start = CudaEvent.create(gpu()), end = CudaEvent.create(gpu());
    const big = Tensor.zeros([64 << 20], "float32", gpu()); // 256 MiB
    try {
      start.record();
      const copies: Tensor[] = [];
      for (let i = 0; i < 4; i++) copies.push(big.to(gpu()));
      end.record();
      end.synchronize();
      const ms = start.elapsedMs(end);
      assert.ok(ms > 0 && ms < 60_000, `elapsed ${ms} ms`);
      for (const c of copies) c.dispose();
      // Events on a created stream.
      start.record(stream);
      end.record(stream);
      stream.synchronize();
      assert.ok(start.elapsedMs(end) >= 0);
      gpu().synchronize();
    } finally {
      big.dispose();
      start.dispose();
      end.dispose();
      stream.dispose();
    }
  },
});

Deno.test({
  name: "gpu memory: a 1 PiB request is out_of_memory (not a crash); the device still works",
  ignore,
  fn() {
    assertCode(() => Tensor.empty([2 ** 49], "float16", gpu()), "out_of_memory");
    const ptr = new BigUint64Array(1);
    assert.equal(ffi().fa_malloc(0, 2n ** 50n, ptr), 5, "raw fa_malloc status");
    assert.match(lastError(), /.+/);
    const t = Tensor.full([1000], 3, "float16", gpu());
    assertAllEqual("after OOM", t.toFloat32(), 3);
    t.dispose();
  },
});

Deno.test({
  name: "gpu memory: use after dispose throws 'disposed'; the last view releases device memory",
  ignore,
  fn() {
    const t = Tensor.full([16], 1, "bfloat16", gpu());
    t.dispose();
    assertCode(() => t.toFloat32(), "disposed");
    assertCode(() => t.to(Device.cpu()), "disposed");
    t.dispose();
    gpu().synchronize();
    const before = gpu().freeMemory();
    const bytes = 2 ** 31; // 2 GiB
    const big = Tensor.empty([bytes / 2], "float16", gpu());
    const view = big.slice(0, 10, 20);
    const during = gpu().freeMemory();
    assert.ok(during <= before - bytes + (64 << 20), `free ${before} -> ${during} after 2 GiB`);
    big.dispose();
    assert.ok(gpu().freeMemory() <= before - bytes + (64 << 20), "a live view keeps the storage");
    view.toFloat32(); // still readable
    view.dispose();
    gpu().synchronize();
    const after = gpu().freeMemory();
    assert.ok(after >= before - (256 << 20), `free ${before} -> ${after} after dispose`);
  },
});

Deno.test({
  name: "gpu attention arguments: tensors on different devices are refused before any work",
  ignore,
  fn() {
    const rng = new Rng(3);
    const q = Tensor.fromArray(rng.normalArray(2 * 16 * 64), [1, 2, 16, 64], {
      dtype: "float16",
      device: gpu(),
    });
    const kHost = Tensor.fromArray(rng.normalArray(2 * 16 * 64), [1, 2, 16, 64], {
      dtype: "float16",
    });
    const k = kHost.to(gpu());
    const outHost = Tensor.full([1, 2, 16, 64], 7, "float16");
    try {
      assertCode(() => attention(q, kHost, k), "invalid_argument", "k");
      assertCode(() => attention(q, k, kHost), "invalid_argument", "v");
      assertCode(() => attention(q, k, k, { out: outHost }), "invalid_argument", "out");
      assertAllEqual("host out untouched", outHost.toFloat32(), 7);
      const biasHost = Tensor.zeros([16], "float32");
      assertCode(() => attention(q, k, k, { bias: biasHost }), "invalid_argument", "bias");
      biasHost.dispose();
      if (CUDA_COUNT > 1) {
        const k1 = kHost.to(Device.cuda(1));
        assertCode(() => attention(q, k1, k), "invalid_argument", "k");
        k1.dispose();
      }
    } finally {
      disposeTensors({ q, kHost, k, outHost });
    }
  },
});

Deno.test({
  name: "gpu attention arguments: a tensor labelled cpu that holds device memory is refused",
  ignore,
  fn() {
    const rng = new Rng(4);
    const shape = [1, 2, 16, 64];
    const host = (): Tensor =>
      Tensor.fromArray(rng.normalArray(2 * 16 * 64), shape, { dtype: "float16" });
    const [q, k, v] = [host(), host(), host()];
    const out = Tensor.full(shape, 7, "float16");
    const onGpu = q.to(gpu());
    try {
      const args = (qDescriptor: TensorDescriptor) =>
        packForwardArgs({
          q: qDescriptor,
          k: describeTensor(k, "k"),
          v: describeTensor(v, "v"),
          out: describeTensor(out, "out"),
          scale: 0.125,
          dropoutP: 0,
          seed: 0n,
          offset: 0n,
          flags: 0,
          maxSeqlenQ: 0,
          maxSeqlenK: 0,
          stream: 0n,
        });
      // Device memory with device -1: the CPU backend would fault on it.
      const lying = { ...describeTensor(onGpu, "q"), device: -1 };
      assert.equal(ffi().fa_forward(args(lying)), 1, lastError());
      assert.equal(lastError(), "q: pointer is CUDA device memory on cuda:0, tensor says cpu");
      assertAllEqual("out untouched", out.toFloat32(), 7);
      // Host memory labelled cpu still runs on the CPU backend with a GPU present.
      assert.equal(ffi().fa_forward(args(describeTensor(q, "q"))), 0, lastError());
      assert.ok(out.toFloat32().every((x) => x !== 7), "out written");
    } finally {
      disposeTensors({ q, k, v, out, onGpu });
    }
  },
});
