// tile_scheduler.h: which tile of work a block runs. Kernels never read blockIdx for their
// work; they ask a scheduler, so a persistent or split-KV schedule replaces the static one
// here without touching a mainloop.
//
// A tile is (block, head, batch, split): `block` indexes the kernel's blocked dimension
// (query blocks in the forward, key blocks in the backward), `split` the share of the keys
// (common/mask.h key_blocks) when the keys are split across blocks; always 0 here.
#pragma once

#include <cuda_runtime.h>

namespace fa {

struct WorkTile {
  int block = 0, head = 0, batch = 0;
  int split = 0, num_splits = 1;
};

// One block per tile on a (blocks, heads, batch) grid. kHeaviestFirst runs the grid's
// blocked dimension in reverse: the forward's last query blocks see the most keys under a
// causal mask, so starting them first shortens the tail.
template <bool kHeaviestFirst>
struct StaticTileScheduler {
  static dim3 grid(int blocks, int heads, int batch) { return dim3(blocks, heads, batch); }

  __device__ static WorkTile tile() {
    WorkTile t;
    t.block = kHeaviestFirst ? int(gridDim.x) - 1 - int(blockIdx.x) : int(blockIdx.x);
    t.head = int(blockIdx.y);
    t.batch = int(blockIdx.z);
    return t;
  }
};

}  // namespace fa
