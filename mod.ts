/**
 * flashattn: exact fused FlashAttention for Deno, over FFI to a CUDA library
 * (`libflashattn.so`), with a multithreaded CPU reference backend where no GPU is present.
 *
 * ```ts
 * import { attention, Device, Tensor } from "jsr:@flashattn/flashattn";
 *
 * const device = Device.default(); // cuda:0 when present, else cpu
 * const shape = [1, 8, 1024, 64]; // [batch, heads, seqlen, head dim]
 * const values = new Float32Array(8 * 1024 * 64).map(() => Math.random() - 0.5);
 * using q = Tensor.fromArray(values, shape, { dtype: "bfloat16", device });
 * using k = Tensor.fromArray(values, shape, { dtype: "bfloat16", device });
 * using v = Tensor.fromArray(values, shape, { dtype: "bfloat16", device });
 * const { out, lse } = attention(q, k, v, { causal: true });
 * console.log(out.toFloat32().slice(0, 4));
 * out.dispose();
 * lse.dispose();
 * ```
 *
 * The library is found through `FLASHATTN_LIB`, the checkout's `build/`, or the per-user
 * cache (build it there with `deno run -A jsr:@flashattn/flashattn/build`); it is opened on
 * first use, so importing this module never needs it.
 * @module
 */

export * from "./src/mod.ts";
