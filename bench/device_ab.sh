#!/usr/bin/env bash
# A/B of two prebuilt libraries in one device call: the seed table (or any bench script that
# writes --json) run with library A, then B, `rounds` times interleaved so that drift hits
# both, then bench/ab_compare.ts. Run from the repo root on the GPU machine with .device
# carried: deno.xz, a/libflashattn.so.xz (A, e.g. the old main) and b/libflashattn.so.xz (B).
# A library of another ABI needs its own TypeScript: put that commit's tree in .device/a/tree
# (`git archive OLD mod.ts src ffi bench deno.json | tar -x -C .device/a/tree`) and A runs
# the script from there.
#   bash bench/device_ab.sh [rounds] [script] [script args...]
# e.g. bash bench/device_ab.sh 2 bench/seed_table.ts --iterations 30
set -uo pipefail
OUT="${OUT:-/tmp/out}"
rounds="${1:-2}"
script="${2:-bench/seed_table.ts}"
shift 2 2>/dev/null || shift $#
mkdir -p "$OUT" /tmp/bin /tmp/ab
xz -dc .device/deno.xz > /tmp/bin/deno && chmod +x /tmp/bin/deno
export PATH=/tmp/bin:$PATH NO_COLOR=1
for lib in a b; do xz -dc ".device/$lib/libflashattn.so.xz" > "/tmp/ab/$lib.so"; done
flags="--allow-ffi --allow-read --allow-env --allow-write"
a_runs="" b_runs=""
for round in $(seq 1 "$rounds"); do
  for lib in a b; do
    json="$OUT/ab_${lib}${round}.json"
    dir=.
    [ -d ".device/$lib/tree" ] && dir=".device/$lib/tree"
    (cd "$dir" && FLASHATTN_LIB="/tmp/ab/$lib.so" deno run $flags "$script" --json "$json" "$@") \
      > "$OUT/ab_${lib}${round}.txt" 2>&1 || tail -5 "$OUT/ab_${lib}${round}.txt"
    if [ "$lib" = a ]; then a_runs="$a_runs${a_runs:+,}$json"; else b_runs="$b_runs${b_runs:+,}$json"; fi
  done
done
deno run --allow-read --allow-write bench/ab_compare.ts --a "$a_runs" --b "$b_runs" \
  --md "$OUT/ab.md" | tail -3
