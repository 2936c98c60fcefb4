/**
 * Host time per attention call: many back-to-back calls on a tiny problem, so that the host's
 * enqueue time (checks in TypeScript and C, FFI, tensor maps, launches) is what bounds the loop.
 *
 *   deno run --allow-ffi --allow-read --allow-env bench/host_overhead.ts [--calls 2000]
 *
 * Set FLASHATTN_SM90=0 to measure the sm80 path on a Hopper GPU.
 * @module
 */

import { parseArgs } from "node:util";
import { attention, attentionBackward, Device, Tensor } from "../mod.ts";
import { randomTensor } from "./seed_inputs.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { calls: { type: "string", default: "2000" } },
  });
  const calls = Number(values.calls);
  const device = Device.default();
  const shape = [1, 2, 128, 128];
  using q = randomTensor(shape, "bfloat16", device, 1);
  using k = randomTensor(shape, "bfloat16", device, 2);
  using v = randomTensor(shape, "bfloat16", device, 3);
  using dout = randomTensor(shape, "bfloat16", device, 4);
  using out = Tensor.empty(shape, "bfloat16", device);
  using lse = Tensor.empty([1, 2, 128], "float32", device);
  using dq = Tensor.empty(shape, "bfloat16", device);
  using dk = Tensor.empty(shape, "bfloat16", device);
  using dv = Tensor.empty(shape, "bfloat16", device);
  const modes: [string, () => void][] = [
    ["forward", () => void attention(q, k, v, { out, lse })],
    ["backward", () => void attentionBackward(dout, q, k, v, out, lse, { dq, dk, dv })],
  ];
  console.log(`device: ${device}, [1, 2, 128, 128] bfloat16, ${calls} calls`);
  for (const [name, call] of modes) {
    for (let i = 0; i < 50; i++) call();
    device.synchronize();
    const start = performance.now();
    for (let i = 0; i < calls; i++) call();
    const enqueued = performance.now();
    device.synchronize();
    const done = performance.now();
    const us = (ms: number) => (ms * 1000 / calls).toFixed(1);
    console.log(
      `${name.padEnd(9)} ${us(enqueued - start)} us/call enqueued, ${
        us(done - start)
      } us/call done`,
    );
  }
}
