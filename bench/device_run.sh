#!/usr/bin/env bash
# One device call: GPU tests, sanitizer passes, the seed table and the PyTorch peers, logs
# under $OUT. Run from the repo root on the GPU machine, with .device carried (deno.xz and,
# optionally, a prebuilt .device/build/libflashattn.so):
#   bash bench/device_run.sh [tests|tests-sm80|sanitize|seed|peers|features|kvcache|kvcache-sanitize|all]...
# features (not part of all: FlexAttention compiles take minutes) times the score-feature
# rows, ours then the peers; FEATURE_ROWS=window,softcap,sinks,alibi picks the groups.
# kvcache (not part of all) checks the KV-cache kernels against torch (bench/kvcache_device.py),
# runs tests/gpu_kvcache.test.ts, times the decode rows, ours then the peers (decode_peers.py),
# then ours again through the TypeScript API (bench/decode_rows.ts),
# then, as kvcache-sanitize does alone, the reduced checks under memcheck and racecheck.
set -uo pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT" /tmp/bin
xz -dc .device/deno.xz > /tmp/bin/deno && chmod +x /tmp/bin/deno
export PATH=/tmp/bin:$PATH NO_COLOR=1
if [ -f .device/build/libflashattn.so.xz ]; then  # compressed to fit the 64 MiB transfer
  xz -dc .device/build/libflashattn.so.xz > /tmp/libflashattn.so
  export FLASHATTN_LIB=/tmp/libflashattn.so
elif [ -f .device/build/libflashattn.so ]; then
  export FLASHATTN_LIB="$PWD/.device/build/libflashattn.so"
else
  make -j"$(nproc)" lib > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
fi
flags="--allow-ffi --allow-read --allow-env --allow-write --allow-run"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
git log -1 --format='commit %h %cd' 2>/dev/null | tee -a "$OUT/gpu.txt"

for step in "${@:-all}"; do
  case "$step" in
    tests | all)
      deno test $flags tests/gpu_*.test.ts > "$OUT/test_gpu.log" 2>&1
      grep -E "FAILED|passed" "$OUT/test_gpu.log" | tail -12 ;;&
    tests-sm80 | all)
      # The same suite with the sm90 kernels off: every case on the sm80 kernels.
      FLASHATTN_SM90=0 deno test $flags tests/gpu_*.test.ts > "$OUT/test_gpu_sm80.log" 2>&1
      grep -E "FAILED|passed" "$OUT/test_gpu_sm80.log" | tail -12 ;;&
    sanitize | all)
      # Reduced suite: a small forward and backward per feature, under memcheck and racecheck.
      for tool in memcheck racecheck; do
        compute-sanitizer --tool "$tool" --print-limit 20 --error-exitcode 9 \
          deno run $flags bench/sanitize_cases.ts > "$OUT/sanitize_$tool.log" 2>&1
        echo "sanitizer $tool: exit $? ($(grep -c 'ERROR SUMMARY: 0 errors' "$OUT/sanitize_$tool.log") clean summaries)"
        tail -3 "$OUT/sanitize_$tool.log"
      done ;;&
    seed | all)
      deno run $flags bench/seed_table.ts --json "$OUT/ours.json" > "$OUT/seed_table.txt" 2>&1
      tail -4 "$OUT/seed_table.txt" ;;&
    peers | all)
      PYTHONUNBUFFERED=1 python3 bench/peers/sdpa_peers.py --ours "$OUT/ours.json" \
        --out-md "$OUT/peers.md" --out-svg "$OUT/peers.svg" > "$OUT/peers.log" 2>&1
      grep -E "worst|Error|error" "$OUT/peers.md" "$OUT/peers.log" | head -12 ;;
    features)
      rows="${FEATURE_ROWS:-window,softcap,sinks,alibi}"
      deno run $flags bench/feature_rows.ts --rows "$rows" --json "$OUT/features_ours.json" \
        > "$OUT/features_ours.txt" 2>&1
      echo "feature_rows.ts: exit $?"
      grep -E " \| (yes|NO) *$|visible fraction" "$OUT/features_ours.txt"
      PYTHONUNBUFFERED=1 python3 bench/peers/flex_peers.py --rows "$rows" \
        --ours "$OUT/features_ours.json" --out-md "$OUT/features.md" > "$OUT/features_peers.log" 2>&1
      echo "flex_peers.py: exit $?"
      grep -E "\| (yes|no) \|" "$OUT/features.md" | head -20 ;;
    kvcache)
      # Checks first, then the TS suite, timings and peers, the sanitizers last (slowest).
      PYTHONUNBUFFERED=1 timeout 240 python3 bench/kvcache_device.py check \
        > "$OUT/kvcache_check.log" 2>&1
      echo "kvcache checks: exit $?"; grep -E "FAIL|checks:|Error" "$OUT/kvcache_check.log" | head -30
      timeout 240 deno test $flags tests/gpu_kvcache.test.ts > "$OUT/test_gpu_kvcache.log" 2>&1
      echo "gpu_kvcache.test.ts: exit $?"
      grep -E "FAILED|passed|=> " "$OUT/test_gpu_kvcache.log" | tail -14
      PYTHONUNBUFFERED=1 timeout 200 python3 bench/kvcache_device.py time \
        --json "$OUT/ours_decode.json" > "$OUT/kvcache_time.log" 2>&1
      echo "kvcache timings: exit $?"; tail -14 "$OUT/kvcache_time.log"
      PYTHONUNBUFFERED=1 timeout 240 python3 bench/peers/decode_peers.py \
        --ours "$OUT/ours_decode.json" --out-json "$OUT/decode_peers.json" \
        --out-md "$OUT/decode.md" > "$OUT/decode_peers.log" 2>&1
      echo "decode_peers.py: exit $?"; grep -E "^\|" "$OUT/decode.md" | head -30
      # The same rows through the TypeScript API, and a graph step's host time from Deno.
      timeout 200 deno run $flags bench/decode_rows.ts --json "$OUT/ours_ts.json" \
        > "$OUT/decode_rows_ts.log" 2>&1
      echo "decode_rows.ts: exit $?"; tail -14 "$OUT/decode_rows_ts.log" ;;&
    kvcache-sanitize)
      for tool in memcheck racecheck; do
        PYTHONUNBUFFERED=1 timeout 150 compute-sanitizer --tool "$tool" --print-limit 20 \
          --error-exitcode 9 python3 bench/kvcache_device.py check --quick \
          > "$OUT/kvcache_$tool.log" 2>&1
        echo "kvcache $tool: exit $?"; grep -E "ERROR SUMMARY|checks:" "$OUT/kvcache_$tool.log"
      done ;;
  esac
done
