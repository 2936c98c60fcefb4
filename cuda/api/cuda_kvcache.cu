// cuda_kvcache.cu: the CUDA backend of fa_kvcache_forward and fa_merge (stub until the
// decode kernel lands: refuses with FA_ERR_UNSUPPORTED).
#include "common/backends.h"
#include "common/status.h"

namespace fa {

fa_status cuda_kvcache_forward(const KvCacheParams&) {
  return fail(FA_ERR_UNSUPPORTED, "device: the CUDA KV-cache kernels are not built yet");
}

fa_status cuda_kvcache_workspace_size(const KvCacheParams&, uint64_t* bytes) {
  *bytes = 0;
  return FA_OK;
}

fa_status cuda_merge(const MergeParams&) {
  return fail(FA_ERR_UNSUPPORTED, "device: the CUDA merge kernel is not built yet");
}

}  // namespace fa
