/**
 * The symbol table of libflashattn.so: one entry per FA_API function of
 * cuda/include/flashattn.h. Addresses (host or device) cross as "u64"; out-parameters and
 * argument structs as "buffer" (a typed array the call writes into or reads from).
 * @module
 */

/** Every function of the C ABI, typed for `Deno.dlopen`. */
export const symbols = {
  // library
  fa_abi_version: { parameters: [], result: "u32" },
  // Optional so that a library older than ABI 2 loads far enough to be refused as
  // "abi_mismatch" rather than failing to open.
  fa_abi_layout: { parameters: [], result: "pointer", optional: true },
  fa_last_error: { parameters: [], result: "pointer" },
  fa_version: { parameters: [], result: "pointer" },
  fa_cpu_set_threads: { parameters: ["i32"], result: "i32" },

  // devices
  fa_device_count: { parameters: ["buffer"], result: "i32" },
  fa_device_info_get: { parameters: ["i32", "buffer"], result: "i32" },
  fa_device_synchronize: { parameters: ["i32"], result: "i32" },

  // device memory
  fa_malloc: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  fa_free: { parameters: ["i32", "u64"], result: "i32" },
  fa_memcpy_htod: { parameters: ["i32", "u64", "buffer", "u64"], result: "i32" },
  fa_memcpy_dtoh: { parameters: ["i32", "buffer", "u64", "u64"], result: "i32" },
  fa_memcpy_dtod: { parameters: ["i32", "u64", "u64", "u64"], result: "i32" },
  fa_memset: { parameters: ["i32", "u64", "i32", "u64"], result: "i32" },

  // streams and events
  fa_stream_create: { parameters: ["i32", "buffer"], result: "i32" },
  fa_stream_destroy: { parameters: ["i32", "u64"], result: "i32" },
  fa_stream_synchronize: { parameters: ["i32", "u64"], result: "i32" },
  fa_event_create: { parameters: ["i32", "buffer"], result: "i32" },
  fa_event_destroy: { parameters: ["i32", "u64"], result: "i32" },
  fa_event_record: { parameters: ["i32", "u64", "u64"], result: "i32" },
  fa_event_synchronize: { parameters: ["i32", "u64"], result: "i32" },
  fa_event_elapsed_ms: { parameters: ["i32", "u64", "u64", "buffer"], result: "i32" },

  // attention
  fa_forward: { parameters: ["buffer"], result: "i32" },
  fa_backward: { parameters: ["buffer"], result: "i32" },
  fa_backward_workspace_size: { parameters: ["buffer", "buffer"], result: "i32" },
  // ABI 3: KV cache, merge and CUDA graphs. Optional for the same reason as fa_abi_layout:
  // an ABI 2 library lacks them and must still open far enough to be refused by version.
  fa_kvcache_forward: { parameters: ["buffer"], result: "i32", optional: true }, // (args)
  // (args, bytes)
  fa_kvcache_workspace_size: { parameters: ["buffer", "buffer"], result: "i32", optional: true },
  fa_merge: { parameters: ["buffer"], result: "i32", optional: true }, // (args)

  // CUDA graphs
  // (device, stream)
  fa_graph_begin_capture: { parameters: ["i32", "u64"], result: "i32", optional: true },
  // (device, stream, graph)
  fa_graph_end_capture: { parameters: ["i32", "u64", "buffer"], result: "i32", optional: true },
  // (device, graph, stream)
  fa_graph_launch: { parameters: ["i32", "u64", "u64"], result: "i32", optional: true },
  fa_graph_destroy: { parameters: ["i32", "u64"], result: "i32", optional: true }, // (device, graph)
} as const satisfies Deno.ForeignLibraryInterface;

type OpenedSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

/**
 * The loaded library's functions. Every one is present: the loader refuses a library whose
 * ABI version differs, and the optional entries above exist in every ABI 3 library.
 */
export type FlashAttentionSymbols = {
  readonly [name in keyof OpenedSymbols]: NonNullable<OpenedSymbols[name]>;
};
