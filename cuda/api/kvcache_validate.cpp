// kvcache_validate.cpp: every check of fa_kvcache_args, then KvCacheParams.
// Order as validate.cpp: struct header, scalars, each tensor's header, dtypes and shapes,
// devices, alignment and strides, overlaps, sizes the kernels index in 32 bits, then the
// values of cache_seqlens / block_table (untrusted path) or the caller's bound (trusted).
#include "api/kvcache_validate.h"

#include <cinttypes>
#include <cmath>
#include <vector>

#include "api/cuda_devices.h"
#include "api/request.h"
#include "api/score_checks.h"
#include "api/tensor_checks.h"
#include "api/validate.h"
#include "common/status.h"

namespace fa {
namespace {

constexpr uint32_t kKnownFlags =
    FA_FLAG_CAUSAL | FA_FLAG_ROTARY_INTERLEAVED | FA_FLAG_ADVANCE_SEQLENS;
constexpr int64_t kMaxHeadDim = 256;
// Kernels index rows, pages and sequences with int and keep lengths below 2^30 (mask.h).
constexpr int64_t kMaxRows = int64_t(1) << 30;

// The score features seen through validate.cpp's lens, so their checks are shared.
Request score_request(const fa_kvcache_args& args) {
  Request request;
  request.sinks = &args.sinks;
  request.alibi_slopes = &args.alibi_slopes;
  request.window_left = args.window_left;
  request.window_right = args.window_right;
  request.softcap = args.softcap;
  request.flags = args.flags;
  return request;
}

fa_status check_scalars(const fa_kvcache_args& args) {
  if (args.reserved != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT, "reserved: must be 0, got %d", args.reserved);
  }
  if (args.flags & ~kKnownFlags) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "flags: unknown bits 0x%x (known: 0x1 causal, 0x4 rotary interleaved, "
                "0x8 advance seqlens)",
                args.flags & ~kKnownFlags);
  }
  if (!std::isfinite(args.scale) || args.scale <= 0.0f) {
    return fail(FA_ERR_INVALID_ARGUMENT, "scale: expected a finite value > 0, got %g",
                double(args.scale));
  }
  if (const fa_status s = check_score_scalars(score_request(args))) return s;
  if (args.num_splits < 0 || args.num_splits > kMaxMergeParts) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "num_splits: expected 0 (heuristic), 1 (no split) or up to %d parts, got %d",
                kMaxMergeParts, args.num_splits);
  }
  if (args.max_seqlen_k < 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "max_seqlen_k: expected 0 (read cache_seqlens) or a bound > 0, got %d",
                args.max_seqlen_k);
  }
  if (args.workspace == 0 && args.workspace_bytes != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "workspace: is 0 but workspace_bytes is %" PRIu64 " (0 = library allocates)",
                args.workspace_bytes);
  }
  return FA_OK;
}

fa_status gather_tensors(const fa_kvcache_args& args, std::vector<NamedTensor>* all) {
  const NamedTensor required[] = {{"q", &args.q},
                                  {"k_cache", &args.k_cache},
                                  {"v_cache", &args.v_cache},
                                  {"cache_seqlens", &args.cache_seqlens},
                                  {"out", &args.out}};
  const NamedTensor optional[] = {{"block_table", &args.block_table}, {"k_new", &args.k_new},
                                  {"v_new", &args.v_new},             {"rotary_cos", &args.rotary_cos},
                                  {"rotary_sin", &args.rotary_sin},   {"lse", &args.lse},
                                  {"sinks", &args.sinks},             {"alibi_slopes", &args.alibi_slopes}};
  for (const NamedTensor& named : required) {
    if (const fa_status s = check_required(named.name, *named.tensor)) return s;
    all->push_back(named);
  }
  for (const NamedTensor& named : optional) {
    if (!present(named.tensor)) continue;
    if (const fa_status s = check_tensor_header(named.name, *named.tensor)) return s;
    all->push_back(named);
  }
  return FA_OK;
}

fa_status check_dtype_like_q(const char* name, const fa_tensor& tensor, const fa_tensor& q) {
  if (tensor.dtype != q.dtype) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: dtype %s differs from q's %s", name,
                dtype_name(tensor.dtype), dtype_name(q.dtype));
  }
  return FA_OK;
}

fa_status check_at_least_one(const char* name, const char* what, int64_t size) {
  if (size < 1) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: %s must be >= 1, got %" PRId64, name, what, size);
  }
  return FA_OK;
}

// q: [B, Hq, Snew, D] float16/bfloat16.
fa_status check_q(const fa_tensor& q, KvCacheParams* p) {
  if (const fa_status s = check_ndim("q", q, 4, "[B, Hq, Snew, D]")) return s;
  if (q.dtype != FA_FLOAT16 && q.dtype != FA_BFLOAT16) {
    return fail(FA_ERR_INVALID_ARGUMENT, "q: expected float16 or bfloat16, got %s",
                dtype_name(q.dtype));
  }
  p->dtype = q.dtype;
  p->device = q.device;
  p->batch = q.shape[0];
  p->heads_q = q.shape[1];
  p->seqlen_new = q.shape[2];
  p->head_dim = q.shape[3];
  if (const fa_status s = check_at_least_one("q", "batch size", p->batch)) return s;
  if (const fa_status s = check_at_least_one("q", "heads", p->heads_q)) return s;
  if (const fa_status s = check_at_least_one("q", "new rows (Snew)", p->seqlen_new)) return s;
  if (p->head_dim < 8 || p->head_dim > kMaxHeadDim || p->head_dim % 8 != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "q: head dim must be a multiple of 8 from 8 to %" PRId64 ", got %" PRId64,
                kMaxHeadDim, p->head_dim);
  }
  return FA_OK;
}

// k_cache / v_cache: dense [B, capacity, Hkv, D] or paged [num_pages, page_size, Hkv, D]
// (with block_table int32 [B, pages_per_seq]).
fa_status check_caches(const fa_kvcache_args& args, KvCacheParams* p) {
  const fa_tensor &q = args.q, &k = args.k_cache, &v = args.v_cache;
  const bool paged = present(&args.block_table);
  const char* layout = paged ? "[num_pages, page_size, Hkv, D] (paged)" : "[B, capacity, Hkv, D]";
  if (const fa_status s = check_ndim("k_cache", k, 4, layout)) return s;
  if (const fa_status s = check_dtype_like_q("k_cache", k, q)) return s;
  if (k.shape[3] != p->head_dim) {
    return fail(FA_ERR_INVALID_ARGUMENT, "k_cache: head dim %" PRId64 " differs from q's %" PRId64,
                k.shape[3], p->head_dim);
  }
  p->heads_kv = k.shape[2];
  if (const fa_status s = check_at_least_one("k_cache", "heads", p->heads_kv)) return s;
  if (p->heads_q % p->heads_kv != 0) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "k_cache: %" PRId64 " heads do not divide q's %" PRId64
                " (grouped-query attention needs Hq %% Hkv == 0)",
                p->heads_kv, p->heads_q);
  }
  if (const fa_status s = check_ndim("v_cache", v, 4, layout)) return s;
  if (const fa_status s = check_dtype_like_q("v_cache", v, q)) return s;
  if (const fa_status s = check_shape("v_cache", v, k.shape, "like k_cache")) return s;
  if (!paged) {
    if (k.shape[0] != p->batch) {
      return fail(FA_ERR_INVALID_ARGUMENT,
                  "k_cache: batch size %" PRId64 " differs from q's %" PRId64
                  " (a dense cache is [B, capacity, Hkv, D]; paged caches need block_table)",
                  k.shape[0], p->batch);
    }
    p->capacity = k.shape[1];
    p->page_size = k.shape[1];
    p->num_pages = p->batch;
    p->pages_per_seq = 1;
    return FA_OK;
  }
  const fa_tensor& table = args.block_table;
  p->num_pages = k.shape[0];
  p->page_size = k.shape[1];
  if (const fa_status s = check_at_least_one("k_cache", "page size", p->page_size)) return s;
  if (const fa_status s = check_ndim("block_table", table, 2, "[B, max_pages_per_seq]")) return s;
  if (const fa_status s = check_dtype_is("block_table", table, FA_INT32, "page indices"))
    return s;
  if (table.shape[0] != p->batch) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "block_table: batch size %" PRId64 " differs from q's %" PRId64, table.shape[0],
                p->batch);
  }
  p->pages_per_seq = table.shape[1];
  if (__builtin_mul_overflow(p->pages_per_seq, p->page_size, &p->capacity) ||
      p->capacity >= kMaxRows) {
    return fail(FA_ERR_UNSUPPORTED,
                "block_table: %" PRId64 " pages of %" PRId64
                " rows per sequence exceed the supported capacity of 2^30 rows",
                p->pages_per_seq, p->page_size);
  }
  return FA_OK;
}

fa_status check_new_rows(const fa_kvcache_args& args, const KvCacheParams& p) {
  if (present(&args.k_new) != present(&args.v_new)) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: missing while %s is given (appending needs both)",
                present(&args.k_new) ? "v_new" : "k_new", present(&args.k_new) ? "k_new" : "v_new");
  }
  if (!present(&args.k_new)) return FA_OK;
  const int64_t shape[] = {p.batch, p.heads_kv, p.seqlen_new, p.head_dim};
  for (const NamedTensor named : {NamedTensor{"k_new", &args.k_new}, NamedTensor{"v_new", &args.v_new}}) {
    if (const fa_status s = check_ndim(named.name, *named.tensor, 4, "[B, Hkv, Snew, D]")) return s;
    if (const fa_status s = check_dtype_like_q(named.name, *named.tensor, args.q)) return s;
    if (const fa_status s =
            check_shape(named.name, *named.tensor, shape, "[B, Hkv, Snew, D] from q and k_cache"))
      return s;
  }
  return FA_OK;
}

fa_status check_rotary(const fa_kvcache_args& args, const KvCacheParams& p) {
  const fa_tensor &cos = args.rotary_cos, &sin = args.rotary_sin;
  if (present(&cos) != present(&sin)) {
    return fail(FA_ERR_INVALID_ARGUMENT, "%s: missing while %s is given (rotary needs both)",
                present(&cos) ? "rotary_sin" : "rotary_cos",
                present(&cos) ? "rotary_cos" : "rotary_sin");
  }
  if (!present(&cos)) return FA_OK;
  if (const fa_status s = check_ndim("rotary_cos", cos, 2, "[rotary_rows, rotary_dim / 2]"))
    return s;
  if (const fa_status s = check_dtype_is("rotary_cos", cos, FA_FLOAT32, "rotary tables are float32"))
    return s;
  if (const fa_status s = check_ndim("rotary_sin", sin, 2, "[rotary_rows, rotary_dim / 2]"))
    return s;
  if (const fa_status s = check_dtype_is("rotary_sin", sin, FA_FLOAT32, "rotary tables are float32"))
    return s;
  if (const fa_status s = check_shape("rotary_sin", sin, cos.shape, "like rotary_cos")) return s;
  const int64_t half = cos.shape[1];
  if (half < 1 || 2 * half > p.head_dim) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "rotary_cos: expected rotary_dim / 2 in 1..%" PRId64
                " (rotary_dim even and <= head dim %" PRId64 "), got %" PRId64,
                p.head_dim / 2, p.head_dim, half);
  }
  if (cos.shape[0] < p.capacity) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "rotary_cos: expected at least the cache capacity %" PRId64
                " rows (one per position), got %" PRId64,
                p.capacity, cos.shape[0]);
  }
  return FA_OK;
}

fa_status check_shapes(const fa_kvcache_args& args, KvCacheParams* p) {
  if (const fa_status s = check_q(args.q, p)) return s;
  if (const fa_status s = check_caches(args, p)) return s;
  {
    const fa_tensor& lengths = args.cache_seqlens;
    if (const fa_status s = check_ndim("cache_seqlens", lengths, 1, "[B]")) return s;
    if (const fa_status s = check_dtype_is("cache_seqlens", lengths, FA_INT32, "lengths"))
      return s;
    const int64_t shape[] = {p->batch};
    if (const fa_status s = check_shape("cache_seqlens", lengths, shape, "[B] from q")) return s;
  }
  if (const fa_status s = check_new_rows(args, *p)) return s;
  if (const fa_status s = check_rotary(args, *p)) return s;
  if (const fa_status s = check_ndim("out", args.out, 4, "[B, Hq, Snew, D]")) return s;
  if (const fa_status s = check_dtype_like_q("out", args.out, args.q)) return s;
  if (const fa_status s = check_shape("out", args.out, args.q.shape, "like q")) return s;
  if (present(&args.lse)) {
    if (const fa_status s = check_ndim("lse", args.lse, 3, "[B, Hq, Snew]")) return s;
    if (const fa_status s = check_dtype_is("lse", args.lse, FA_FLOAT32, "log-sum-exp")) return s;
    if (const fa_status s = check_shape("lse", args.lse, args.q.shape, "[B, Hq, Snew] from q"))
      return s;
  }
  Problem problem;
  problem.batch = p->batch;
  problem.heads_q = p->heads_q;
  return check_score_tensors(score_request(args), problem);
}

// Element alignment, contiguous last dims (lse excepted: addressed through all strides),
// outputs with one address per element and sharing no byte with any other tensor.
fa_status check_layouts(const fa_kvcache_args& args, const std::vector<NamedTensor>& all) {
  for (const NamedTensor& named : all) {
    const fa_tensor& tensor = *named.tensor;
    if (const fa_status s = check_alignment(named.name, tensor, dtype_size(tensor.dtype), 1))
      return s;
    if (named.tensor == &args.lse) continue;
    if (const fa_status s = check_last_contiguous(named.name, tensor)) return s;
  }
  std::vector<NamedTensor> outputs = {{"out", &args.out}};
  if (present(&args.lse)) outputs.push_back({"lse", &args.lse});
  if (present(&args.k_new)) {
    outputs.push_back({"k_cache", &args.k_cache});
    outputs.push_back({"v_cache", &args.v_cache});
  }
  if (args.flags & FA_FLAG_ADVANCE_SEQLENS) outputs.push_back({"cache_seqlens", &args.cache_seqlens});
  for (const NamedTensor& named : outputs) {
    if (const fa_status s = check_no_overlap(named.name, *named.tensor, 0)) return s;
    if (const fa_status s = check_disjoint(named.name, *named.tensor, all)) return s;
  }
  return FA_OK;
}

// Sizes the kernels index with int (grid dimensions, row and page counters).
fa_status check_int32_sizes(const KvCacheParams& p) {
  const struct {
    const char* name;
    const char* what;
    int64_t value;
  } sizes[] = {{"q", "batch size x heads", p.batch * p.heads_q},
               {"q", "new rows (Snew)", p.seqlen_new},
               {"k_cache", p.paged() ? "pages" : "capacity", p.paged() ? p.num_pages : p.capacity}};
  for (const auto& size : sizes) {
    if (size.value >= kMaxRows) {
      return fail(FA_ERR_UNSUPPORTED, "%s: %s %" PRId64 " exceeds the supported 2^30", size.name,
                  size.what, size.value);
    }
  }
  return FA_OK;
}

void build_params(const fa_kvcache_args& args, KvCacheParams* p) {
  const auto operand = [](const fa_tensor& t) {
    Operand o;
    o.ptr = reinterpret_cast<void*>(t.data);
    if (t.data != 0) {
      o.stride_b = t.stride[0];
      o.stride_head = t.stride[1];
      o.stride_row = t.stride[2];
    }
    return o;
  };
  const auto cache = [](const fa_tensor& t) {
    CacheOperand c;
    c.ptr = reinterpret_cast<void*>(t.data);
    c.stride_seq = t.stride[0];
    c.stride_row = t.stride[1];
    c.stride_head = t.stride[2];
    return c;
  };
  p->q = operand(args.q);
  p->out = operand(args.out);
  p->k_new = operand(args.k_new);
  p->v_new = operand(args.v_new);
  if (present(&args.lse)) {
    p->lse.ptr = reinterpret_cast<float*>(args.lse.data);
    p->lse.stride_b = args.lse.stride[0];
    p->lse.stride_head = args.lse.stride[1];
    p->lse.stride_row = args.lse.stride[2];
  }
  p->k_cache = cache(args.k_cache);
  p->v_cache = cache(args.v_cache);
  p->cache_seqlens = reinterpret_cast<int32_t*>(args.cache_seqlens.data);
  if (present(&args.block_table)) {
    p->block_table = reinterpret_cast<const int32_t*>(args.block_table.data);
    p->block_table_stride = args.block_table.stride[0];
  }
  if (present(&args.rotary_cos)) {
    p->rotary.cos = reinterpret_cast<const float*>(args.rotary_cos.data);
    p->rotary.sin = reinterpret_cast<const float*>(args.rotary_sin.data);
    p->rotary.cos_stride = args.rotary_cos.stride[0];
    p->rotary.sin_stride = args.rotary_sin.stride[0];
    p->rotary.rows = args.rotary_cos.shape[0];
    p->rotary.dim = 2 * args.rotary_cos.shape[1];
    p->rotary.interleaved = (args.flags & FA_FLAG_ROTARY_INTERLEAVED) != 0;
  }
  p->scale = args.scale;
  p->window.left = args.window_left;
  p->window.right = (args.flags & FA_FLAG_CAUSAL) != 0 ? 0 : args.window_right;
  p->softcap = args.softcap;
  if (present(&args.alibi_slopes)) {
    p->alibi_slopes = reinterpret_cast<const float*>(args.alibi_slopes.data);
    p->alibi_stride_b = args.alibi_slopes.ndim == 2 ? args.alibi_slopes.stride[0] : 0;
  }
  if (present(&args.sinks)) p->sinks = reinterpret_cast<const float*>(args.sinks.data);
  p->advance_seqlens = (args.flags & FA_FLAG_ADVANCE_SEQLENS) != 0;
  p->num_splits = args.num_splits;
  p->stream = reinterpret_cast<void*>(args.stream);
  p->workspace = reinterpret_cast<void*>(args.workspace);
  p->workspace_bytes = args.workspace_bytes;
}

// Untrusted path: read cache_seqlens and the block table to the host and check them.
fa_status check_lengths(const fa_kvcache_args& args, KvCacheParams* p) {
  const bool on_cuda = p->device != FA_DEVICE_CPU;
  const int32_t* seqlens = p->cache_seqlens;
  const int32_t* table = p->block_table;
  int64_t table_stride = p->block_table_stride;
  std::vector<int32_t> host_seqlens, host_table;
  if (on_cuda) {
    void* stream = p->stream;
    host_seqlens.resize(size_t(p->batch));
    if (const fa_status s = copy_int32_to_host(p->device, stream, args.cache_seqlens.data,
                                               p->batch, host_seqlens.data()))
      return s;
    seqlens = host_seqlens.data();
    if (table != nullptr) {
      // The table's rows may be strided: copy the span from the first entry to the last.
      const int64_t span = (p->batch - 1) * table_stride + p->pages_per_seq;
      host_table.resize(size_t(span));
      if (span > 0) {
        if (const fa_status s = copy_int32_to_host(p->device, stream, args.block_table.data,
                                                   span, host_table.data()))
          return s;
      }
      table = host_table.data();
    }
  }
  if (table != nullptr && p->pages_per_seq == 0) table_stride = 0;
  int64_t longest = 0;
  if (const fa_status s = check_cache_lengths(*p, seqlens, table, table_stride, &longest))
    return s;
  if (args.max_seqlen_k > 0 && longest > args.max_seqlen_k) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "max_seqlen_k: %d is below the longest cache_seqlens[b] + Snew, %" PRId64,
                args.max_seqlen_k, longest);
  }
  p->max_seqlen_k = longest;
  p->seqlens_checked = true;
  return FA_OK;
}

// Trusted path: the caller's bound, within [Snew if appending (else 1), capacity].
fa_status check_trusted_bound(const fa_kvcache_args& args, KvCacheParams* p) {
  const int64_t lowest = p->appends() ? p->seqlen_new : 1;
  if (args.max_seqlen_k < lowest || args.max_seqlen_k > p->capacity) {
    return fail(FA_ERR_INVALID_ARGUMENT,
                "max_seqlen_k: expected 0 or a bound in [%" PRId64 ", %" PRId64
                "] (%s, the cache capacity), got %d",
                lowest, p->capacity, p->appends() ? "Snew" : "1", args.max_seqlen_k);
  }
  p->max_seqlen_k = args.max_seqlen_k;
  p->seqlens_checked = false;
  return FA_OK;
}

}  // namespace

fa_status validate_kvcache(const fa_kvcache_args* args, KvCacheParams* params) {
  if (args == nullptr) return fail(FA_ERR_INVALID_ARGUMENT, "args: null pointer");
  if (const fa_status s = check_struct_header(args->abi_version, args->struct_size,
                                              sizeof(fa_kvcache_args), "fa_kvcache_args"))
    return s;
  if (const fa_status s = check_scalars(*args)) return s;
  std::vector<NamedTensor> all;
  if (const fa_status s = gather_tensors(*args, &all)) return s;
  KvCacheParams& p = *params;
  p = KvCacheParams{};
  if (const fa_status s = check_shapes(*args, &p)) return s;
  if (const fa_status s = check_one_device(all, args->workspace)) return s;
  if (const fa_status s = check_layouts(*args, all)) return s;
  if (const fa_status s = check_int32_sizes(p)) return s;
  build_params(*args, &p);
  if (p.device == FA_DEVICE_CPU || args->max_seqlen_k == 0) return check_lengths(*args, &p);
  return check_trusted_bound(*args, &p);
}

}  // namespace fa
