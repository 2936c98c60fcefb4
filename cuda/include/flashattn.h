/*
 * flashattn.h: the C ABI of libflashattn.so, the single source of truth for ffi/.
 *
 * Conventions
 * - Every function returns an fa_status; on failure fa_last_error() gives a thread-local,
 *   human-readable message of the form "<argument>: <what was expected, what was given>".
 * - Addresses cross the ABI as uint64_t (host or device); sizes and strides are int64_t,
 *   strides counted in elements, not bytes.
 * - The argument structs start with the ABI version and their own size, so a caller built
 *   for another layout is refused with FA_ERR_ABI_MISMATCH before anything is read.
 * - Layout is fixed for FFI packing: every struct below is naturally aligned with explicit
 *   padding. The offsets are not written out by hand anywhere: fa_abi_layout() returns the
 *   table the library was compiled with (generated from offsetof/sizeof in
 *   cuda/api/abi_layout.cpp), ffi/structs.ts packs from one field table, and a test checks
 *   the two agree field by field.
 */
#ifndef FLASHATTN_H
#define FLASHATTN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FA_API __declspec(dllexport)
#else
#define FA_API __attribute__((visibility("default")))
#endif

/** Bumped on any change of a struct layout or of a function's meaning. */
#define FA_ABI_VERSION 3u

/** Maximum tensor rank crossing the ABI. */
#define FA_MAX_DIMS 4

typedef enum fa_status {
  FA_OK = 0,
  FA_ERR_INVALID_ARGUMENT = 1, /* shape, dtype, stride, alignment, value out of range */
  FA_ERR_UNSUPPORTED = 2,      /* valid request this build or device cannot run */
  FA_ERR_NO_DEVICE = 3,        /* no CUDA device / driver, or ordinal out of range */
  FA_ERR_CUDA = 4,             /* a CUDA runtime call failed */
  FA_ERR_OUT_OF_MEMORY = 5,    /* device or host allocation failed */
  FA_ERR_ABI_MISMATCH = 6,     /* abi_version or struct_size differ from the library's */
  FA_ERR_INTERNAL = 7          /* a bug: please report */
} fa_status;

typedef enum fa_dtype {
  FA_FLOAT16 = 0,
  FA_BFLOAT16 = 1,
  FA_FLOAT32 = 2,
  FA_INT32 = 3
} fa_dtype;

/** Device ordinal meaning "host memory, CPU backend". */
#define FA_DEVICE_CPU (-1)

/**
 * A strided view. data == 0 means "absent" for optional tensors.
 *
 * Alignment: data must be aligned to the element size; any strides are accepted as long as
 * the last dim is contiguous. On CUDA, q/k/v/out/dout/dq/dk/dv that start on a 16-byte
 * boundary with every non-last stride a multiple of 8 elements (every contiguous tensor,
 * and most slices of one) are read and written in place by the kernels. Any other such
 * operand takes a slower path: an input is first copied into a contiguous temporary, an
 * output is computed into one and copied back into the caller's view afterwards. The copies
 * run on the call's stream, in device memory from the library's stream-ordered pool
 * (cudaMallocFromPoolAsync / cudaFreeAsync on that stream, no host synchronization; the
 * pool keeps its memory for later calls and is trimmed when an allocation would fail).
 * They cost extra time and an extra B*H*S*D (nested: total*H*D) elements of device memory
 * per such operand, and failing to allocate one gives FA_ERR_OUT_OF_MEMORY naming the
 * operand. bias, dbias and lse have no 16-byte rule and are never copied.
 */
typedef struct fa_tensor {
  uint64_t data;               /* address of element [0,0,...] */
  int32_t dtype;               /* fa_dtype */
  int32_t device;              /* FA_DEVICE_CPU or CUDA ordinal */
  int32_t ndim;                /* 1..4 */
  int32_t reserved;            /* must be 0 */
  int64_t shape[FA_MAX_DIMS];  /* unused trailing entries 0 */
  int64_t stride[FA_MAX_DIMS]; /* in elements; the last used dim's stride must be 1 where
                                  that dim has more than one element (size 0 or 1: any);
                                  lse is exempt (addressed through all its strides) */
} fa_tensor;

/** Flags for fa_forward_args.flags / fa_backward_args.flags. */
#define FA_FLAG_CAUSAL 1u        /* bottom-right aligned: row i sees key j iff j <= i + Sk - Sq;
                                    the same as window_right = 0 (see fa_forward_args) */
#define FA_FLAG_DETERMINISTIC 2u /* backward: no floating-point atomics, bitwise repeatable */
#define FA_FLAG_ROTARY_INTERLEAVED 4u /* fa_kvcache_args: rotary pairs (2m, 2m + 1) instead of
                                         (m, m + rotary_dim / 2) */
#define FA_FLAG_ADVANCE_SEQLENS 8u    /* fa_kvcache_args: after the call, cache_seqlens[b] +=
                                         Snew on the device (stream-ordered), so a replayed
                                         graph moves every sequence forward by itself */

/**
 * Forward: out = softmax(score, masked, with sink) [dropout] v, lse = logsumexp, where
 *   score = softcap(scale * q k^T) + bias + alibi   (softcap and alibi when enabled)
 *
 * Dense:  q [B, Hq, Sq, D], k/v [B, Hkv, Sk, D], out like q, lse [B, Hq, Sq] float32.
 * Nested: cu_seqlens_q/k present (int32 [B+1], same device as q); q [totalQ, Hq, D],
 *         k/v [totalK, Hkv, D], out like q, lse [totalQ, Hq] float32.
 * bias:   optional, 4-d [B, Hq, Sq, Sk] (nested: [B, Hq, maxSq, maxSk]) with stride 0 on
 *         broadcast dims; float16, bfloat16 or float32; last dim contiguous.
 * lse:    optional for the forward (data 0 = not wanted).
 *
 * Score features (softcap, alibi_slopes and sinks are off when left zero; the window is
 * off at (-1, -1), not at zero):
 * window_left / window_right: a sliding window around the bottom-right aligned diagonal:
 *         query row i sees key j iff i + Sk - Sq - window_left <= j <= i + Sk - Sq +
 *         window_right; -1 = unbounded on that side. FA_FLAG_CAUSAL means window_right = 0,
 *         so with it window_right must be -1 or 0. A zeroed struct has (0, 0): a caller who
 *         wants no window passes (-1, -1). Values below -1 are refused.
 * softcap: > 0 caps each scaled score: s = softcap * tanh(scale * q.k / softcap), before
 *         bias and ALiBi; 0 = off; negative, NaN or Inf refused.
 * alibi_slopes: optional float32 [Hq] or [B, Hq]: adds -slope[b, h] * |i + Sk - Sq - j|
 *         to the score (after softcap and bias). No gradient.
 * sinks:  optional float32 [Hq]: one logit per query head that joins every row's softmax
 *         denominator and carries no value (lse includes it). A row that sees no key gets
 *         out = 0 and lse = sink; a sink of -inf has no effect.
 *
 * max_seqlen_q / max_seqlen_k (nested only) and the trust placed in cu_seqlens:
 * - CPU tensors, or either max_seqlen 0: the library reads cu_seqlens (on CUDA: a
 *   device-to-host copy ordered on `stream`, then a sync of that stream) and refuses values
 *   that do not start at 0, decrease, or pass the packed rows; a max_seqlen given
 *   alongside must be >= the longest sequence.
 * - CUDA tensors with both max_seqlen > 0: cu_seqlens are NOT read or checked, so the call
 *   neither copies nor synchronizes. The caller promises that they start at 0, never
 *   decrease, end at or before the packed rows, and that no sequence is longer than its
 *   max_seqlen. A broken promise gives wrong results (the kernels clamp each sequence to
 *   the packed rows and to max_seqlen, so memory outside the tensors is never touched), not
 *   an error. The TypeScript NestedBatch builds cu_seqlens from its own checked host copy of
 *   the lengths and passes their maxima, so its cu_seqlens keep the promise (a maximum of
 *   0, every sequence empty, sends it down the first path).
 */
typedef struct fa_forward_args {
  uint32_t abi_version; /* FA_ABI_VERSION */
  uint32_t struct_size; /* sizeof(fa_forward_args) */
  fa_tensor q, k, v, out, lse, bias, cu_seqlens_q, cu_seqlens_k;
  float scale;          /* > 0 and finite; callers pass 1/sqrt(D) for the default */
  float dropout_p;      /* [0, 1) */
  uint64_t seed;        /* Philox key */
  uint64_t offset;      /* Philox counter word 3 (low 32 bits used) */
  uint32_t flags;       /* FA_FLAG_* */
  int32_t max_seqlen_q; /* nested only: max sequence length (0 = computed from cu_seqlens);
                           on CUDA, both > 0 means cu_seqlens are trusted (see above) */
  int32_t max_seqlen_k;
  int32_t reserved;     /* must be 0 */
  uint64_t stream;      /* cudaStream_t for CUDA tensors (0 = legacy default stream) */
  /* ABI 2: score features (see above). */
  fa_tensor sinks;        /* optional float32 [Hq]: per-head sink logit */
  fa_tensor alibi_slopes; /* optional float32 [Hq] or [B, Hq] */
  int32_t window_left;    /* -1 = unbounded; >= 0: keys before the diagonal a row sees */
  int32_t window_right;   /* -1 = unbounded; >= 0: keys after the diagonal (causal: 0) */
  float softcap;          /* 0 = off, else > 0 and finite */
  int32_t reserved2;      /* must be 0 */
} fa_forward_args;

/**
 * Backward: given dout = dL/dout, computes dq, dk, dv (and dbias when dbias.data != 0).
 * Shapes as in the forward; dq like q, dk/dv like k/v (summed over each GQA group).
 * lse is required (from the forward with the same options). dbias has bias's logical shape
 * [B, Hq, Sq, Sk]; a dimension whose dbias stride is 0 is summed over (so a [1,H,Sq,Sk]
 * dbias of a broadcast bias receives the sum over the batch). A dbias with no elements
 * (nested, every query or every key sequence empty) is not written at all: callers whose
 * dbias storage outlives that view (a broadcast bias's gradient) zero it themselves.
 * max_seqlen_q / max_seqlen_k and cu_seqlens: as for fa_forward_args.
 * sinks, alibi_slopes, window_left/right, softcap: the forward's values.
 * dsinks: float32 [Hq], required iff sinks is given; written (not accumulated) with
 *   dsinks[h] = -sum over (b, i) of exp(sinks[h] - lse[b, h, i]) * rowsum(dout * out)[b, h, i].
 */
typedef struct fa_backward_args {
  uint32_t abi_version;
  uint32_t struct_size;
  fa_tensor q, k, v, out, dout, lse, dq, dk, dv, bias, dbias, cu_seqlens_q, cu_seqlens_k;
  float scale;
  float dropout_p;
  uint64_t seed;
  uint64_t offset;
  uint32_t flags;
  int32_t max_seqlen_q;
  int32_t max_seqlen_k;
  int32_t reserved;
  uint64_t stream;
  uint64_t workspace;       /* device scratch for dq accumulation (0 = from the library's pool) */
  uint64_t workspace_bytes; /* size of workspace; see fa_backward_workspace_size */
  /* ABI 2: score features, as in fa_forward_args. */
  fa_tensor sinks;
  fa_tensor alibi_slopes;
  int32_t window_left;
  int32_t window_right;
  float softcap;
  int32_t reserved2;        /* must be 0 */
  fa_tensor dsinks;         /* float32 [Hq]: gradient of sinks; required iff sinks given */
} fa_backward_args;

/**
 * Attention over a KV cache (ABI 3): decoding, speculative rows, chunked prefill.
 *
 * Shapes (any strides with a contiguous last dim, as in fa_forward):
 *   q            [B, Hq, Snew, D]   Snew >= 1 new query rows per sequence
 *   k_cache/v_cache dense [B, capacity, Hkv, D], or, with block_table, paged
 *                [num_pages, page_size, Hkv, D] (any page_size >= 1); the same dtype as q
 *   cache_seqlens int32 [B] on q's device: L_b, the rows of sequence b already in the cache
 *   block_table  optional int32 [B, max_pages_per_seq]: row r of sequence b lives in page
 *                block_table[b, r / page_size] at row r % page_size; capacity =
 *                max_pages_per_seq * page_size. Absent: the cache is dense.
 *   k_new/v_new  optional (both or neither) [B, Hkv, Snew, D]: written into the cache at
 *                rows L_b .. L_b + Snew - 1 of each sequence, then attended in the same call
 *   rotary_cos/rotary_sin optional (both or neither) float32 [rotary_rows, rotary_dim / 2],
 *                rotary_dim even and <= D, rotary_rows >= capacity: q row i and k_new row i
 *                of sequence b are rotated at position L_b + i before use (only k_new is
 *                stored rotated; q is not written). Pairs (m, m + rotary_dim / 2), or
 *                (2m, 2m + 1) with FA_FLAG_ROTARY_INTERLEAVED; dims >= rotary_dim unchanged.
 *   out          like q; lse optional float32 [B, Hq, Snew]
 *   sinks, alibi_slopes, window_left/right, softcap, scale, FA_FLAG_CAUSAL: as fa_forward.
 *
 * Sequence b attends with Sq = Snew query rows over Sk = L_b + Snew keys (L_b without
 * k_new), bottom-right aligned: exactly fa_forward over the cache rows [0, Sk) gathered
 * into a dense [1, Hkv, Sk, D]. Query head h reads kv head h / (Hq / Hkv).
 *
 * Trust, as for nested cu_seqlens (see fa_forward_args):
 * - max_seqlen_k == 0 (or CPU tensors): the library reads cache_seqlens (and the block
 *   table's used entries) to the host, ordered on `stream` with a sync of that stream,
 *   and refuses L_b < 0, L_b + Snew > capacity, and page indices outside [0, num_pages)
 *   (argument named) before anything is written.
 * - max_seqlen_k > 0 on CUDA: nothing is read or synchronized (graph-capturable); the
 *   caller promises L_b + Snew <= max_seqlen_k <= capacity and valid page indices. Kernels
 *   clamp lengths and page indices, so a broken promise gives wrong numbers (and writes of
 *   k_new inside the cache), never accesses outside the tensors.
 *
 * num_splits: 0 = the library splits the keys of each sequence across blocks when B * Hkv
 * alone would not fill the GPU (from the multiprocessor count and max_seqlen_k, else the
 * capacity) and merges the parts exactly (fa_merge's rule); 1 = no split; n > 1 = n parts.
 * Splitting needs workspace: fa_kvcache_workspace_size gives its bytes for these
 * arguments; workspace 0 takes it from the library's stream-ordered pool.
 *
 * Graph capture (fa_graph_*): with max_seqlen_k > 0 and a caller workspace, a call issues
 * only kernel launches on `stream`: no allocation, no host synchronization.
 * FA_FLAG_ADVANCE_SEQLENS makes the call end by adding Snew to each cache_seqlens[b].
 * On an error nothing has been written (the cache is never left half-appended).
 */
typedef struct fa_kvcache_args {
  uint32_t abi_version; /* FA_ABI_VERSION */
  uint32_t struct_size; /* sizeof(fa_kvcache_args) */
  fa_tensor q, k_cache, v_cache, cache_seqlens, block_table, k_new, v_new;
  fa_tensor rotary_cos, rotary_sin, out, lse, sinks, alibi_slopes;
  float scale;          /* > 0 and finite */
  float softcap;        /* 0 = off, else > 0 and finite */
  int32_t window_left;  /* as fa_forward_args */
  int32_t window_right;
  uint32_t flags;       /* FA_FLAG_CAUSAL, FA_FLAG_ROTARY_INTERLEAVED, FA_FLAG_ADVANCE_SEQLENS */
  int32_t num_splits;   /* 0 = heuristic, 1 = no split, n > 1 = n parts (at most 256) */
  int32_t max_seqlen_k; /* 0 = read and check cache_seqlens; > 0 = trusted bound (above) */
  int32_t reserved;     /* must be 0 */
  uint64_t stream;      /* cudaStream_t (0 = legacy default stream) */
  uint64_t workspace;   /* device scratch for the split parts (0 = library pool) */
  uint64_t workspace_bytes;
} fa_kvcache_args;

/**
 * Merge of partial attention results: given parts (out_i, lse_i) of the same query rows
 * over disjoint key sets, computes the attention over their union, exactly:
 *   lse = log(sum_i exp(lse_i)),  out = sum_i exp(lse_i - lse) * out_i.
 * Parts whose lse is -inf (no visible key) contribute nothing; a row where every part is
 * -inf gets out = 0, lse = -inf; NaN propagates. This is the split-KV combine step, and
 * the building block of attention spread over several GPUs (ring / context parallelism):
 * each GPU attends its keys, the parts meet in one call.
 *
 * parts: host address of 2 * num_parts fa_tensor, in the order out_0, lse_0, out_1, ...
 *   out_i [B, H, S, D] (or nested [T, H, D]), float16, bfloat16 or float32;
 *   lse_i [B, H, S] (nested [T, H]) float32; every part the shape of `out` / `lse`.
 * out: like a part (any of the three dtypes); lse: optional. 1 <= num_parts <= 256.
 * Every tensor on one device (or the CPU); out and lse may not overlap any part.
 */
typedef struct fa_merge_args {
  uint32_t abi_version;
  uint32_t struct_size;
  uint64_t parts;      /* const fa_tensor* (host memory), 2 * num_parts entries */
  int32_t num_parts;
  int32_t reserved;    /* must be 0 */
  fa_tensor out, lse;
  uint64_t stream;
} fa_merge_args;

/** Device properties; name is NUL-terminated. */
typedef struct fa_device_info {
  char name[256];
  int32_t major;              /* compute capability */
  int32_t minor;
  int32_t multiprocessors;
  int32_t reserved;
  uint64_t total_memory;      /* bytes */
  uint64_t free_memory;       /* bytes, at the time of the call */
  uint64_t l2_cache_bytes;
  int32_t max_shared_per_block; /* opt-in maximum, bytes */
  int32_t clock_khz;
} fa_device_info;

/* ---- library ---- */
FA_API uint32_t fa_abi_version(void);
/**
 * The layout of every ABI struct, as compiled: one line per struct and per field,
 *   "struct <name> <size>" then "field <name> <offset> <size>" lines of that struct,
 * lines separated by '\n', NUL-terminated, static (never freed). Generated from
 * offsetof/sizeof; ffi/ checks its own packing table against it.
 */
FA_API const char* fa_abi_layout(void);
FA_API const char* fa_last_error(void);
/** Version string of the library, e.g. "0.1.0". */
FA_API const char* fa_version(void);
/** Threads the CPU backend uses (0 = hardware concurrency). */
FA_API int32_t fa_cpu_set_threads(int32_t threads);

/* ---- devices ---- */
/** Number of CUDA devices; 0 with FA_OK where there is no driver or no GPU. */
FA_API int32_t fa_device_count(int32_t* count);
FA_API int32_t fa_device_info_get(int32_t device, fa_device_info* info);
FA_API int32_t fa_device_synchronize(int32_t device);

/* ---- device memory ---- */
FA_API int32_t fa_malloc(int32_t device, uint64_t bytes, uint64_t* ptr);
FA_API int32_t fa_free(int32_t device, uint64_t ptr);
FA_API int32_t fa_memcpy_htod(int32_t device, uint64_t dst, const void* src, uint64_t bytes);
FA_API int32_t fa_memcpy_dtoh(int32_t device, void* dst, uint64_t src, uint64_t bytes);
FA_API int32_t fa_memcpy_dtod(int32_t device, uint64_t dst, uint64_t src, uint64_t bytes);
FA_API int32_t fa_memset(int32_t device, uint64_t dst, int32_t byte_value, uint64_t bytes);

/* ---- streams and events ---- */
FA_API int32_t fa_stream_create(int32_t device, uint64_t* stream);
FA_API int32_t fa_stream_destroy(int32_t device, uint64_t stream);
FA_API int32_t fa_stream_synchronize(int32_t device, uint64_t stream);
FA_API int32_t fa_event_create(int32_t device, uint64_t* event);
FA_API int32_t fa_event_destroy(int32_t device, uint64_t event);
FA_API int32_t fa_event_record(int32_t device, uint64_t event, uint64_t stream);
FA_API int32_t fa_event_synchronize(int32_t device, uint64_t event);
FA_API int32_t fa_event_elapsed_ms(int32_t device, uint64_t start, uint64_t end, float* ms);

/* ---- attention ---- */
FA_API int32_t fa_forward(const fa_forward_args* args);
FA_API int32_t fa_backward(const fa_backward_args* args);
/** Bytes of workspace fa_backward wants for these arguments (0 on the CPU). */
FA_API int32_t fa_backward_workspace_size(const fa_backward_args* args, uint64_t* bytes);
/** Attention over a KV cache, with optional append and rotary (see fa_kvcache_args). */
FA_API int32_t fa_kvcache_forward(const fa_kvcache_args* args);
/** Bytes of workspace fa_kvcache_forward wants for these arguments (0 when unsplit / CPU). */
FA_API int32_t fa_kvcache_workspace_size(const fa_kvcache_args* args, uint64_t* bytes);
/** Merge of partial results (see fa_merge_args). */
FA_API int32_t fa_merge(const fa_merge_args* args);

/* ---- CUDA graphs ----
 * Capture of the work issued on a stream (thread-local capture mode: the capturing thread
 * may not synchronize or allocate outside the stream), then replay with one launch. */
FA_API int32_t fa_graph_begin_capture(int32_t device, uint64_t stream);
/** Ends the capture and instantiates it: *graph is an executable graph handle. */
FA_API int32_t fa_graph_end_capture(int32_t device, uint64_t stream, uint64_t* graph);
FA_API int32_t fa_graph_launch(int32_t device, uint64_t graph, uint64_t stream);
FA_API int32_t fa_graph_destroy(int32_t device, uint64_t graph);

#ifdef __cplusplus
}
#endif

#endif /* FLASHATTN_H */
