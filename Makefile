# flashattn: builds build/libflashattn.so and drives the Deno tooling.
# `make demo` runs the CLI (GPU when present, else CPU); `make test` is the CI suite.

DENO_VERSION := 2.9.6
NVCC ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
CXX ?= g++

# What `make lib` builds: the full library where nvcc is found, else the CPU-only one
# (lib-cpu: the CPU backend alone, a C++17 compiler and no CUDA header; no CUDA device, ever).
# `make lib-cpu` (or CPU_ONLY=1) asks for the CPU-only library where nvcc is there too.
CPU_ONLY ?= $(if $(filter lib-cpu,$(MAKECMDGOALS)),1,$(if $(shell command -v $(NVCC) 2>/dev/null),,1))

BUILD := build
# Parallel by default: kernels are split into one file per head-dim bucket for this.
MAKEFLAGS += --jobs=$(shell nproc)
LIB := $(BUILD)/libflashattn.so

# Quiet by default: one line per file. `make V=1` prints the full commands and every
# ptxas spill warning; quiet, each kernel file's spills are counted on one line (the known
# ones, and why they are accepted, are listed in cuda/sm80/README.md, "ptxas spills").
V ?= 0
ifeq ($(V),1)
Q :=
say :=
else
Q := @
say = @printf '  %-5s %s\n' $(1) $(2);
endif

# Deno: the one on PATH, else a pinned copy installed from npm into .tools/ (never a root
# node_modules: that switches Deno to manual npm resolution).
DENO ?= $(shell command -v deno 2>/dev/null || echo .tools/node_modules/.bin/deno)
DENO_FLAGS := --allow-ffi --allow-read --allow-env
# Deno runs the library just built: the lookup finds build/ beside the module by itself, any
# other BUILD folder through FLASHATTN_LIB.
LIB_ENV = $(if $(filter build,$(BUILD)),,FLASHATTN_LIB=$(abspath $(LIB)))
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

# C++ of the CUDA backend only (CUDA runtime calls, or calls into the .cu files), and its
# stand-in for the CPU-only build: the device count, ordinal and pointer checks, the CUDA
# backends' entry points and those of the .cu files.
CUDA_CPP_SRCS := cuda/api/cuda_backend.cpp cuda/api/cuda_devices.cpp cuda/api/kvcache_prefill.cpp \
                 cuda/api/scratch_pool.cpp
NO_CUDA_SRCS := cuda/api/no_cuda.cpp
# C++ of both builds: validation, ABI entry points, the CPU backend (no CUDA header).
CPP_SRCS := $(filter-out $(CUDA_CPP_SRCS) $(NO_CUDA_SRCS),$(wildcard cuda/api/*.cpp cuda/cpu/*.cpp))
# API-layer CUDA code: runtime calls, plus the small strided-copy kernel of the unaligned-operand
# slow path (strided_copy.cu), so every architecture in GENCODE as well.
HOST_CU_SRCS := $(wildcard cuda/api/*.cu)
# Kernels: every architecture in GENCODE.
KERNEL_CU_SRCS := $(wildcard cuda/sm80/*.cu cuda/sm90/*.cu)
HEADERS := $(wildcard cuda/include/*.h cuda/common/*.h cuda/api/*.h cuda/cpu/*.h cuda/sm80/*.h cuda/sm90/*.h)

CPU_OBJS := $(CPP_SRCS:%.cpp=$(BUILD)/%.o)
CUDA_OBJS := $(CPU_OBJS) $(CUDA_CPP_SRCS:%.cpp=$(BUILD)/%.o) $(HOST_CU_SRCS:%.cu=$(BUILD)/%.o) \
             $(KERNEL_CU_SRCS:%.cu=$(BUILD)/%.o)
CPU_ONLY_OBJS := $(CPU_OBJS) $(NO_CUDA_SRCS:%.cpp=$(BUILD)/%.o)

# Both builds write $(LIB) from the same objects where they share them; the flavor stamp
# relinks it when the other build made it last.
ifeq ($(CPU_ONLY),1)
FLAVOR := cpu
OBJS := $(CPU_ONLY_OBJS)
CUDA_INCLUDES :=
else
FLAVOR := cuda
OBJS := $(CUDA_OBJS)
CUDA_INCLUDES := -I/usr/local/cuda/include
endif
FLAVOR_STAMP := $(BUILD)/flavor-$(FLAVOR)

# Quiet nvcc for kernels: on success, ptxas spill warnings are counted into one line per file
# (the rest of the output is shown); on failure, everything is shown.
ifeq ($(V),1)
nvcc_spills = $(1)
else
nvcc_spills = $(1) 2>$@.log; s=$$?; \
  if [ $$s -ne 0 ]; then cat $@.log >&2; rm -f $@.log; exit $$s; fi; \
  grep -v 'Registers are spilled to local memory' $@.log >&2; \
  n=$$(grep -c 'Registers are spilled to local memory' $@.log); \
  max=$$(sed -n 's/.* \([0-9]*\) bytes spill stores.*/\1/p' $@.log | sort -n | tail -n 1); \
  rm -f $@.log; \
  if [ $$n -gt 0 ]; then \
    printf '  %-5s %s: %s kernel builds spill, at most %s bytes (%s; V=1 lists them)\n' \
      SPILL $< $$n $$max 'cuda/sm80/README.md, "ptxas spills"'; \
  fi
endif

.PHONY: all lib lib-cpu deno test test-cpu test-gpu test-gpu-sm80 check bench demo clean

all: lib

lib: $(LIB)

# The CPU-only library at the same place ($(LIB)), whether or not nvcc is there.
lib-cpu: $(LIB)

$(FLAVOR_STAMP):
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/flavor-*
	@touch $@

ifeq ($(FLAVOR),cpu)
$(LIB): $(OBJS) $(FLAVOR_STAMP)
	$(call say,LD,$@)$(CXX) -shared -Wl,--no-undefined -o $@ $(OBJS) -lpthread
else
$(LIB): $(OBJS) $(FLAVOR_STAMP)
	$(call say,LD,$@)$(NVCC) -shared -cudart static $(GENCODE) -o $@ $(OBJS) -lpthread -ldl -lrt
endif

$(BUILD)/%.o: %.cpp $(HEADERS)
	@mkdir -p $(dir $@)
	$(call say,CXX,$<)$(CXX) $(CXXFLAGS_COMMON) $(INCLUDES) $(CUDA_INCLUDES) -c $< -o $@

$(BUILD)/cuda/api/%.o: cuda/api/%.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(call say,NVCC,$<)$(NVCC) $(NVCCFLAGS) $(GENCODE) -c $< -o $@

$(BUILD)/%.o: %.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(call say,NVCC,$<)$(call nvcc_spills,$(NVCC) $(NVCCFLAGS) $(GENCODE) -Xptxas -warn-spills -c $< -o $@)

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
	$(LIB_ENV) $(DENO) test $(TEST_FLAGS) tests/

test-gpu: lib $(DENO)
	$(LIB_ENV) $(DENO) test $(TEST_FLAGS) tests/gpu_*.test.ts

# The GPU suite with the Hopper kernels off, so every case runs on the sm80 kernels.
test-gpu-sm80: lib $(DENO)
	$(LIB_ENV) FLASHATTN_SM90=0 $(DENO) test $(TEST_FLAGS) tests/gpu_*.test.ts

bench: lib $(DENO)
	$(LIB_ENV) $(DENO) bench $(DENO_FLAGS) bench/

demo: lib $(DENO)
	$(LIB_ENV) $(DENO) run $(DENO_FLAGS) cli.ts --device auto --backward

clean:
	rm -rf $(BUILD)
