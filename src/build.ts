/**
 * Building libflashattn.so with the user's CUDA toolkit (or, where there is no nvcc, the
 * CPU-only library: `make lib-cpu`, the CPU backend alone, built by a C++17 compiler).
 *
 * From a local checkout this runs `make lib` in the checkout. From a remote import (JSR) it
 * fetches the C++/CUDA sources listed in {@link SOURCE_FILES} into a temporary folder,
 * runs `make lib` there and installs the library into the per-user cache, where the
 * library lookup finds it:
 *
 * ```sh
 * deno run -A jsr:@flashattn/flashattn/build
 * ```
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { FlashAttentionError } from "../ffi/errors.ts";
import {
  defaultCacheDir,
  envGetter,
  type EnvSource,
  fileExists,
  LIBRARY_FILE,
  localPackageRoot,
  readEnv,
} from "../ffi/library.ts";

export type { EnvSource };

/**
 * Every file `make lib` needs, relative to the package root: the Makefile and cuda/**
 * (without the sm90 debug harnesses, cuda/sm90/debug/). Keep in sync with the git-tracked
 * files (a test compares them); regenerate the list with
 * `git ls-files Makefile cuda | grep -v '^cuda/sm90/debug/' | sort`.
 */
export const SOURCE_FILES: readonly string[] = [
  "Makefile",
  "cuda/api/abi_guard.h",
  "cuda/api/abi_layout.cpp",
  "cuda/api/attention.cpp",
  "cuda/api/cuda_backend.cpp",
  "cuda/api/cuda_backward.cu",
  "cuda/api/cuda_devices.cpp",
  "cuda/api/cuda_devices.h",
  "cuda/api/cuda_dispatch.cu",
  "cuda/api/cuda_dispatch.h",
  "cuda/api/cuda_kvcache.cu",
  "cuda/api/cuda_steps.h",
  "cuda/api/errors.cpp",
  "cuda/api/graph.cu",
  "cuda/api/kvcache.cpp",
  "cuda/api/kvcache_kernels.cu",
  "cuda/api/kvcache_kernels.h",
  "cuda/api/kvcache_lengths.cpp",
  "cuda/api/kvcache_prefill.cpp",
  "cuda/api/kvcache_prefill.h",
  "cuda/api/kvcache_validate.cpp",
  "cuda/api/kvcache_validate.h",
  "cuda/api/library.cpp",
  "cuda/api/merge_validate.cpp",
  "cuda/api/no_cuda.cpp",
  "cuda/api/params_builder.cpp",
  "cuda/api/params_builder.h",
  "cuda/api/request.h",
  "cuda/api/runtime.cu",
  "cuda/api/score_checks.cpp",
  "cuda/api/score_checks.h",
  "cuda/api/scratch_pool.cpp",
  "cuda/api/seqlens.cpp",
  "cuda/api/seqlens.h",
  "cuda/api/shape_checks.cpp",
  "cuda/api/shape_checks.h",
  "cuda/api/strided_copy.cu",
  "cuda/api/strided_copy.h",
  "cuda/api/tensor_checks.cpp",
  "cuda/api/tensor_checks.h",
  "cuda/api/validate.cpp",
  "cuda/api/validate.h",
  "cuda/common/backends.h",
  "cuda/common/bwd_aux_kernels.h",
  "cuda/common/bwd_plan.h",
  "cuda/common/dbias.h",
  "cuda/common/decode_params.h",
  "cuda/common/dropout.h",
  "cuda/common/fragments.h",
  "cuda/common/kernel_params.h",
  "cuda/common/kernel_params_build.h",
  "cuda/common/kvcache_params.h",
  "cuda/common/launch.h",
  "cuda/common/mask.h",
  "cuda/common/merge.h",
  "cuda/common/online_softmax.h",
  "cuda/common/params.h",
  "cuda/common/philox.h",
  "cuda/common/ptx.h",
  "cuda/common/rotary.h",
  "cuda/common/score.h",
  "cuda/common/scratch_pool.h",
  "cuda/common/seqlen.h",
  "cuda/common/status.h",
  "cuda/common/tile_scheduler.h",
  "cuda/cpu/attention_tiles.cpp",
  "cuda/cpu/attention_tiles.h",
  "cuda/cpu/backward.cpp",
  "cuda/cpu/float_convert.h",
  "cuda/cpu/forward.cpp",
  "cuda/cpu/kvcache.cpp",
  "cuda/cpu/thread_pool.cpp",
  "cuda/cpu/thread_pool.h",
  "cuda/include/flashattn.h",
  "cuda/sm80/README.md",
  "cuda/sm80/bias.h",
  "cuda/sm80/bwd_d128.cu",
  "cuda/sm80/bwd_d256.cu",
  "cuda/sm80/bwd_d64.cu",
  "cuda/sm80/bwd_dq_kernel.h",
  "cuda/sm80/bwd_kernel.h",
  "cuda/sm80/bwd_launch.h",
  "cuda/sm80/decode.h",
  "cuda/sm80/decode_d128.cu",
  "cuda/sm80/decode_d256.cu",
  "cuda/sm80/decode_d64.cu",
  "cuda/sm80/decode_kernel.h",
  "cuda/sm80/decode_launch.h",
  "cuda/sm80/fwd_d128.cu",
  "cuda/sm80/fwd_d256.cu",
  "cuda/sm80/fwd_d64.cu",
  "cuda/sm80/fwd_kernel.h",
  "cuda/sm80/fwd_launch.h",
  "cuda/sm80/masking.h",
  "cuda/sm80/score_transform.h",
  "cuda/sm80/sm80.h",
  "cuda/sm80/tile.h",
  "cuda/sm80/warp_gemm.h",
  "cuda/sm90/README.md",
  "cuda/sm90/bwd_d128.cu",
  "cuda/sm90/bwd_d64.cu",
  "cuda/sm90/bwd_kernel.h",
  "cuda/sm90/bwd_launch.h",
  "cuda/sm90/bwd_scores.h",
  "cuda/sm90/cases.cu",
  "cuda/sm90/fwd_d128.cu",
  "cuda/sm90/fwd_d256.cu",
  "cuda/sm90/fwd_d64.cu",
  "cuda/sm90/fwd_kernel.h",
  "cuda/sm90/fwd_launch.h",
  "cuda/sm90/fwd_scores.h",
  "cuda/sm90/ptx90.h",
  "cuda/sm90/sm90.h",
  "cuda/sm90/softmax.h",
  "cuda/sm90/tma.cu",
  "cuda/sm90/tma.h",
  "cuda/sm90/wgmma.h",
];

/** Options of {@link buildLibrary}. */
export interface BuildOptions {
  /**
   * Folder to install the library into. Remote builds default to {@link libraryCacheDir};
   * a local checkout builds into its own `build/` and copies there only when this is set.
   */
  cacheDir?: string;
  /**
   * The nvcc to use; default `$NVCC`, then `nvcc` on PATH, then /usr/local/cuda/bin/nvcc.
   * Where none is found the CPU-only library is built (as with {@link cpuOnly}).
   */
  nvcc?: string;
  /**
   * Build the CPU-only library (`make lib-cpu`): no CUDA device, ever; needs only `make` and
   * a C++17 compiler. Default false.
   */
  cpuOnly?: boolean;
  /** Capture the compiler's output (shown only when the build fails). */
  quiet?: boolean;
}

/**
 * The per-user folder the library of this version is installed in:
 * `${XDG_CACHE_HOME ?? HOME/.cache}/flashattn/<version>`.
 */
export function libraryCacheDir(env: EnvSource = readEnv): string {
  const dir = defaultCacheDir(env);
  if (dir === undefined) {
    throw new FlashAttentionError(
      "invalid_argument",
      "cacheDir: neither XDG_CACHE_HOME nor HOME is set; pass cacheDir",
    );
  }
  return dir;
}

/** The nvcc to build with: explicit, `$NVCC`, on PATH, or the toolkit's default place. */
export function findNvcc(explicit?: string, environment: EnvSource = readEnv): string {
  const env = envGetter(environment);
  const candidates = [explicit, env("NVCC")];
  for (const dir of (env("PATH") ?? "").split(":")) {
    if (dir !== "") candidates.push(join(dir, "nvcc"));
  }
  candidates.push("/usr/local/cuda/bin/nvcc");
  for (const candidate of candidates) {
    if (candidate !== undefined && candidate !== "" && fileExists(candidate)) return candidate;
  }
  throw new FlashAttentionError(
    "unsupported",
    "nvcc: not found (install the CUDA toolkit, or set NVCC or pass { nvcc } to its path)",
  );
}

/** `make lib` with `nvcc`, or `make lib-cpu` where it is undefined. */
async function runMake(dir: string, nvcc: string | undefined, quiet: boolean): Promise<void> {
  const jobs = Math.max(1, navigator.hardwareConcurrency || 1);
  const target = nvcc === undefined ? "lib-cpu" : "lib";
  const command = new Deno.Command("make", {
    args: [`-j${jobs}`, target, ...(nvcc === undefined ? [] : [`NVCC=${nvcc}`])],
    cwd: dir,
    stdout: quiet ? "piped" : "inherit",
    stderr: quiet ? "piped" : "inherit",
  });
  const result = await command.output();
  if (result.success) return;
  const decoder = new TextDecoder();
  const log = quiet ? decoder.decode(result.stdout) + decoder.decode(result.stderr) : "";
  throw new FlashAttentionError(
    "unsupported",
    `make: \`make ${target}\` failed in ${dir} with exit code ${result.code}` +
      (log ? `\n${log.slice(-4000)}` : ""),
  );
}

/** Downloads {@link SOURCE_FILES} from the package root URL into `dir`. */
async function fetchSources(root: URL, dir: string): Promise<void> {
  for (const file of SOURCE_FILES) {
    const url = new URL(file, root);
    const response = await fetch(url);
    if (!response.ok) {
      throw new FlashAttentionError(
        "library_not_found",
        `source: cannot fetch ${url} (${response.status} ${response.statusText})`,
      );
    }
    const path = join(dir, file);
    await Deno.mkdir(join(path, ".."), { recursive: true });
    await Deno.writeFile(path, new Uint8Array(await response.arrayBuffer()));
  }
}

/** Copies the built library into `cacheDir` atomically (a reader never sees half a file). */
async function install(built: string, cacheDir: string): Promise<string> {
  await Deno.mkdir(cacheDir, { recursive: true });
  const target = join(cacheDir, LIBRARY_FILE);
  const partial = `${target}.${Deno.pid}.partial`;
  await Deno.copyFile(built, partial);
  await Deno.rename(partial, target);
  return target;
}

/**
 * Builds libflashattn.so and returns its path: in the checkout when running from one,
 * else from fetched sources into the per-user cache. Needs `make`, a C++17 compiler and
 * nvcc (without nvcc, or with `cpuOnly`, it builds the CPU-only library and says so on
 * stderr unless `quiet`); throws FlashAttentionError when the build fails.
 */
export async function buildLibrary(options: BuildOptions = {}): Promise<string> {
  const quiet = options.quiet ?? false;
  let nvcc: string | undefined;
  if (!options.cpuOnly) {
    try {
      nvcc = findNvcc(options.nvcc);
    } catch (error) {
      if (options.nvcc !== undefined) throw error; // asked for by name: no silent fallback
      if (!quiet) console.error("nvcc not found: building the CPU-only library (no CUDA device)");
    }
  }
  const root = localPackageRoot();
  if (root !== undefined && fileExists(join(root, "Makefile"))) {
    await runMake(root, nvcc, quiet);
    const built = join(root, "build", LIBRARY_FILE);
    return options.cacheDir === undefined ? built : await install(built, options.cacheDir);
  }
  const workDir = await Deno.makeTempDir({ prefix: "flashattn-build-" });
  try {
    await fetchSources(new URL("../", import.meta.url), workDir);
    await runMake(workDir, nvcc, quiet);
    return await install(
      join(workDir, "build", LIBRARY_FILE),
      options.cacheDir ?? libraryCacheDir(),
    );
  } finally {
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
}

const USAGE = `Builds libflashattn.so with your CUDA toolkit (without nvcc: the CPU-only library).

Usage: deno run -A jsr:@flashattn/flashattn/build [options]

Options:
  --cache-dir DIR  install the library into DIR (default ${"$"}{XDG_CACHE_HOME:-~/.cache}/flashattn/<version>)
  --nvcc PATH      nvcc to use (default $NVCC, nvcc on PATH, /usr/local/cuda/bin/nvcc)
  --cpu-only       build the CPU-only library (make lib-cpu: no CUDA, a C++17 compiler only)
  --quiet          show the compiler's output only on failure
  -h, --help       show this help`;

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "cache-dir": { type: "string" },
      nvcc: { type: "string" },
      "cpu-only": { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const path = await buildLibrary({
    cacheDir: values["cache-dir"],
    nvcc: values.nvcc,
    cpuOnly: values["cpu-only"],
    quiet: values.quiet,
  });
  console.log(path);
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
