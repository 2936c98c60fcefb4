# flashattn: builds build/libflashattn.so and drives the Deno tooling.
# `make demo` runs the CLI (GPU when present, else CPU); `make test` is the CI suite.

DENO_VERSION := 2.9.6
NVCC ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
CXX ?= g++

BUILD := build
# Parallel by default: kernels are split into one file per head-dim bucket for this.
MAKEFLAGS += --jobs=$(shell nproc)
LIB := $(BUILD)/libflashattn.so

# Deno: the one on PATH, else a pinned copy installed from npm into .tools/ (never a root
# node_modules: that switches Deno to manual npm resolution).
DENO ?= $(shell command -v deno 2>/dev/null || echo .tools/node_modules/.bin/deno)
DENO_FLAGS := --allow-ffi --allow-read --allow-env
TEST_FLAGS := $(DENO_FLAGS) --allow-write --allow-run

# Fat binary: SASS for A100, RTX 30, RTX 40/L4, H100 (sm_90a for wgmma), PTX for newer GPUs.
GENCODE := -gencode=arch=compute_80,code=sm_80 \
           -gencode=arch=compute_86,code=sm_86 \
           -gencode=arch=compute_89,code=sm_89 \
           -gencode=arch=compute_90a,code=sm_90a \
           -gencode=arch=compute_80,code=compute_80

INCLUDES := -Icuda/include -Icuda
CXXFLAGS_COMMON := -O3 -std=c++17 -fPIC -fvisibility=hidden -Wall -Wextra
NVCCFLAGS := -O3 -std=c++17 $(INCLUDES) -Xcompiler -fPIC,-fvisibility=hidden \
             --expt-relaxed-constexpr -lineinfo

CPP_SRCS := $(wildcard cuda/api/*.cpp cuda/cpu/*.cpp)
# API-layer CUDA code: runtime calls, plus the small strided-copy kernel of the unaligned-operand
# slow path (strided_copy.cu), so every architecture in GENCODE as well.
HOST_CU_SRCS := $(wildcard cuda/api/*.cu)
# Kernels: every architecture in GENCODE.
KERNEL_CU_SRCS := $(wildcard cuda/sm80/*.cu cuda/sm90/*.cu)
HEADERS := $(wildcard cuda/include/*.h cuda/common/*.h cuda/api/*.h cuda/cpu/*.h cuda/sm80/*.h cuda/sm90/*.h)

OBJS := $(CPP_SRCS:%.cpp=$(BUILD)/%.o) $(HOST_CU_SRCS:%.cu=$(BUILD)/%.o) \
        $(KERNEL_CU_SRCS:%.cu=$(BUILD)/%.o)

.PHONY: all lib deno test test-cpu test-gpu test-gpu-sm80 check bench demo clean

all: lib

lib: $(LIB)

$(LIB): $(OBJS)
	$(NVCC) -shared -cudart static $(GENCODE) -o $@ $(OBJS) -lpthread -ldl -lrt

$(BUILD)/%.o: %.cpp $(HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_COMMON) $(INCLUDES) -I/usr/local/cuda/include -c $< -o $@

$(BUILD)/cuda/api/%.o: cuda/api/%.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(GENCODE) -c $< -o $@

$(BUILD)/%.o: %.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(GENCODE) -Xptxas -warn-spills -c $< -o $@

# Pinned Deno from npm, project-local.
.tools/node_modules/.bin/deno:
	npm install --prefix .tools --no-audit --no-fund --no-save deno@$(DENO_VERSION)
	@test -x $@ || { echo "deno install failed" >&2; exit 1; }

deno: $(DENO)

check: $(DENO)
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) check mod.ts cli.ts src/build.ts tests/*.ts bench/*.ts

test: lib check
	$(DENO) test $(TEST_FLAGS) tests/

test-gpu: lib $(DENO)
	$(DENO) test $(TEST_FLAGS) tests/gpu_*.test.ts

# The GPU suite with the Hopper kernels off, so every case runs on the sm80 kernels.
test-gpu-sm80: lib $(DENO)
	FLASHATTN_SM90=0 $(DENO) test $(TEST_FLAGS) tests/gpu_*.test.ts

bench: lib $(DENO)
	$(DENO) bench $(DENO_FLAGS) bench/

demo: lib $(DENO)
	$(DENO) run $(DENO_FLAGS) cli.ts --device auto --backward

clean:
	rm -rf $(BUILD)
