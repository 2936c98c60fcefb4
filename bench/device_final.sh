#!/usr/bin/env bash
# One device call for the KV-cache work, most important first (a call cut at its limit still
# returns what is under $OUT): bench/device_run.sh kvcache, the main GPU suite, two CLI decode
# lines, then the sanitizers (the TS reduced set, with the KV-cache paths, and the ctypes
# one). Run from the repo root on the GPU machine with .device carried.
set -u
OUT="${OUT:-/tmp/out}"
bash bench/device_run.sh kvcache > "$OUT/summary.txt" 2>&1
export PATH=/tmp/bin:$PATH FLASHATTN_LIB=/tmp/libflashattn.so NO_COLOR=1
flags="--allow-ffi --allow-read --allow-env --allow-write --allow-run"
timeout 120 deno test $flags tests/gpu_attention.test.ts tests/gpu_device.test.ts \
  > "$OUT/test_gpu.log" 2>&1
echo "gpu suite: exit $?" >> "$OUT/summary.txt"
grep -E "passed|FAILED" "$OUT/test_gpu.log" | tail -3 >> "$OUT/summary.txt"
for line in "--decode --cache-len 1,500,2000 --page-size 16 --append --rotary 64 --steps 32 --graph --check" \
  "--decode --batch 8 --cache-len 8192 --append --steps 20 --graph"; do
  echo "cli $line" >> "$OUT/summary.txt"
  timeout 60 deno run --allow-ffi --allow-read --allow-env cli.ts $line 2>&1 | tail -6 >> "$OUT/summary.txt"
done
bash bench/device_run.sh sanitize kvcache-sanitize >> "$OUT/summary.txt" 2>&1
rm -f "$OUT/gpu.txt"
# At most 8 files come back: every log in one archive, the summary and the tables beside it.
(cd "$OUT" && tar czf logs.tar.gz --exclude=logs.tar.gz --exclude=summary.txt \
  --exclude=decode.md *.log *.json 2>/dev/null && rm -f ./*.log ./*.json)
cat "$OUT/summary.txt"
