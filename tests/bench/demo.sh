#!/usr/bin/env bash
# demo.sh - what `make demo` runs until the daemon exists: the product's main
# job, `gptq quantize`, on a real model with evaluation before and after.
#
# With ../shared (or $GPTQ_SHARED): the trained tiny-qwen2-gcide model,
# calibrated on its texts by the reference protocol, 4-bit group 128, and
# its held-out perplexity before and after, gated at +5%.  Without it: the
# generated tests/fixtures/tiny-llama model calibrated on random ids.
# The checkpoint is written to build/demo/ (replaced on each run); then
# `gptq inspect` shows what was written.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${GPTQ_BIN:-$root/build/gptq}
out=$root/build/demo
shared=${GPTQ_SHARED:-$root/../shared}
rm -rf "$out" "$out".tmp-*
mkdir -p "$root/build"
if [ -d "$shared/fixtures/tiny-qwen2-gcide" ]; then
    fx=$shared/fixtures/tiny-qwen2-gcide
    echo "demo: quantizing $fx/model (4-bit, group 128) with GPTQ"
    "$bin" quantize "$fx/model" --out "$out" --calib "$fx/calibration.jsonl" \
        --calib-samples 128 --calib-seqlen 256 --bits 4 --group-size 128 \
        --eval-blocks "$fx/reference/eval-blocks.i32" --eval-seqlen 256 --max-ppl-ratio 1.05
else
    echo "demo: ../shared is absent; quantizing the generated tests/fixtures/tiny-llama instead"
    ids=$root/build/demo-ids.i32
    head -c 65536 /dev/urandom | od -An -tu2 -w2 -v | awk '{ printf "%c%c%c%c", $1 % 320 % 256, int($1 % 320 / 256), 0, 0 }' > "$ids"
    "$bin" quantize "$root/tests/fixtures/tiny-llama" --out "$out" --calib-ids "$ids" \
        --calib-samples 16 --calib-seqlen 64 --bits 4 --group-size 32
fi
echo
"$bin" inspect "$out" | head -n 40
