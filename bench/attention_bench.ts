/**
 * `deno bench` kernel timings on device-resident tensors: forward, backward and both, on the
 * GPU when present (wall clock around a synchronized call), else small CPU-backend problems.
 * The seed table with CUDA-event timings is bench/seed_table.ts.
 * @module
 */

import { attention, attentionBackward, Device } from "../mod.ts";
import { randomTensor } from "./seed_inputs.ts";

const device = Device.default();
const onGpu = device.kind === "cuda";
const cases = onGpu
  ? [
    { n: 4096, d: 128, causal: false },
    { n: 4096, d: 128, causal: true },
    { n: 8192, d: 64, causal: false },
  ]
  : [{ n: 256, d: 64, causal: false }, { n: 256, d: 64, causal: true }];
const heads = onGpu ? 12 : 2;

for (const { n, d, causal } of cases) {
  const shape = [1, heads, n, d];
  const q = randomTensor(shape, "bfloat16", device, 1);
  const k = randomTensor(shape, "bfloat16", device, 2);
  const v = randomTensor(shape, "bfloat16", device, 3);
  const dout = randomTensor(shape, "bfloat16", device, 4);
  const { out, lse } = attention(q, k, v, { causal });
  const grads = attentionBackward(dout, q, k, v, out, lse, { causal });
  const name = `(1,${heads},${n},${d}) causal=${+causal} ${device.kind}`;
  const group = name;
  Deno.bench(`forward ${name}`, { group, baseline: true }, () => {
    attention(q, k, v, { causal, out, lse });
    device.synchronize();
  });
  Deno.bench(`backward ${name}`, { group }, () => {
    attentionBackward(dout, q, k, v, out, lse, { causal, ...grads });
    device.synchronize();
  });
  Deno.bench(`forward+backward ${name}`, { group }, () => {
    attention(q, k, v, { causal, out, lse });
    attentionBackward(dout, q, k, v, out, lse, { causal, ...grads });
    device.synchronize();
  });
}
