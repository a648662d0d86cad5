#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS - build the safetensors fuzzer with clang and
# libFuzzer into build/fuzz/ (FUZZ_BUILD overrides) and run it for SECONDS
# (default 60) on a copy of tests/fuzz/corpus_safetensors/.
#
#   exit 0   "fuzz_safetensors: N runs, no crash"
#   exit 1   a crash, leak, timeout or build failure; the reproducer and the
#            log are kept in the build directory
#   exit 77  "skipped: clang with libFuzzer not installed"
set -u
secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_BUILD:-$root/build/fuzz}
cc=${CLANG:-clang}
mkdir -p "$out" || exit 1

probe='int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);
int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }'
if ! command -v "$cc" > /dev/null 2>&1 ||
   ! printf '%s\n' "$probe" | "$cc" -x c -fsanitize=fuzzer - -o "$out/probe" > /dev/null 2>&1; then
    echo "skipped: clang with libFuzzer not installed"
    exit 77
fi
rm -f "$out/probe"

cjson=$(pkg-config --cflags --libs libcjson) || { echo "fuzz_safetensors: pkg-config libcjson failed"; exit 1; }
# shellcheck disable=SC2086
"$cc" -std=c11 -g -O1 -D_GNU_SOURCE -Wall -Wextra \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/core" "$root/tests/fuzz/fuzz_safetensors.c" \
    "$root"/core/{safetensors,dtype,err,mem}.c "$root/api/json_doc.c" \
    $cjson -lm -o "$out/fuzz_safetensors" || { echo "fuzz_safetensors: build failed"; exit 1; }

corpus=$(mktemp -d "$out/corpus.XXXXXX") || exit 1
cp "$root"/tests/fuzz/corpus_safetensors/* "$corpus"/
log=$out/fuzz_safetensors.log
"$out/fuzz_safetensors" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" "$corpus" > "$log" 2>&1
status=$?
rm -rf "$corpus"
runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz_safetensors: failed (exit $status); log $log, reproducer $out/crash-* (or leak-*, timeout-*)"
    exit 1
fi
echo "fuzz_safetensors: ${runs:-0} runs, no crash"
