#!/usr/bin/env bash
# bench/cpu_speed.sh: CPU backend forward/backward timings through the CLI, alternating
# libraries so a busy machine slows both alike. Usage:
#   bash bench/cpu_speed.sh [rounds] [lib ...]   (default: 3 rounds of build/libflashattn.so)
# Prints one line per run; take the median per library.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
libs=("$@")
[ ${#libs[@]} -eq 0 ] && libs=(build/libflashattn.so)
deno=$(command -v deno || echo .tools/node_modules/.bin/deno)
for round in $(seq "$rounds"); do
  for lib in "${libs[@]}"; do
    line=$(FLASHATTN_LIB=$lib "$deno" run --allow-ffi --allow-read --allow-env cli.ts --device cpu \
      --batch 1 --heads 12 --seqlen-q 1024 --head-dim 128 --backward | grep -E '^(for|back)ward' |
      awk '{printf "%s %s  ", $1, $2}')
    echo "round $round  $lib  $line"
  done
done
