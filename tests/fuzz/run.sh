#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS [NAME...] - build the libFuzzer targets with
# clang into build/fuzz/ (FUZZ_BUILD overrides) and run each on a copy of
# its seed corpus tests/fuzz/corpus_NAME/, splitting SECONDS (default 60)
# evenly between them.  NAMEs (safetensors, tokenizer) pick some; default all.
#
#   exit 0   one "fuzz_NAME: N runs, no crash" line per target
#   exit 1   a crash, leak, timeout or build failure in any target (the
#            others still run); the reproducer and the log are kept in the
#            build directory
#   exit 77  "skipped: clang with libFuzzer not installed"
set -u
secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 SECONDS [NAME...]" >&2; exit 2 ;; esac
shift $(( $# > 0 ? 1 : 0 ))
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(safetensors tokenizer)
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

# Per target: the core/ sources it links (with api/json_doc.c), the
# pkg-config packages, and extra libFuzzer flags.
sources() {
    case $1 in
    safetensors) echo "safetensors dtype err mem" ;;
    tokenizer) echo "tokenizer buf err mem" ;;
    esac
}
packages() {
    case $1 in
    safetensors) echo "libcjson" ;;
    tokenizer) echo "libcjson libpcre2-8 libutf8proc" ;;
    esac
}
flags() {
    case $1 in
    tokenizer) echo "-max_len=8192" ;;   # room for small tokenizer.json files
    esac
}

for name in "${names[@]}"; do
    [ -n "$(sources "$name")" ] && [ -d "$root/tests/fuzz/corpus_$name" ] ||
        { echo "$0: unknown fuzz target '$name'" >&2; exit 2; }
done
each=$(( secs / ${#names[@]} ))
[ "$each" -ge 1 ] || each=1

failed=0
for name in "${names[@]}"; do
    bin=$out/fuzz_$name
    if ! pkg=$(pkg-config --cflags --libs $(packages "$name")); then
        echo "fuzz_$name: pkg-config $(packages "$name") failed"
        failed=1
        continue
    fi
    srcs=()
    for s in $(sources "$name"); do srcs+=("$root/core/$s.c"); done
    # shellcheck disable=SC2086
    if ! "$cc" -std=c11 -g -O1 -D_GNU_SOURCE -Wall -Wextra \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$root/core" "$root/tests/fuzz/fuzz_$name.c" "${srcs[@]}" "$root/api/json_doc.c" \
        $pkg -lm -o "$bin"; then
        echo "fuzz_$name: build failed"
        failed=1
        continue
    fi

    corpus=$(mktemp -d "$out/corpus.XXXXXX") || exit 1
    cp "$root/tests/fuzz/corpus_$name"/* "$corpus"/
    log=$out/fuzz_$name.log
    # shellcheck disable=SC2046
    "$bin" -max_total_time="$each" -timeout=5 -rss_limit_mb=2048 $(flags "$name") \
        -print_final_stats=1 -artifact_prefix="$out/$name-" "$corpus" > "$log" 2>&1
    status=$?
    rm -rf "$corpus"
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log"
        echo "fuzz_$name: failed (exit $status); log $log, reproducer $out/$name-crash-* (or leak-*, timeout-*)"
        failed=1
        continue
    fi
    echo "fuzz_$name: ${runs:-0} runs, no crash"
done
exit $failed
