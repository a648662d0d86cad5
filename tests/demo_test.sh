#!/usr/bin/env bash
# demo_test.sh - `make demo` (deploy/demo.sh) end to end, as the README's
# first command runs it: make test runs this after the C tests.
#
# Runs the demo twice, non-interactively (DEMO_SERVE=0), each in its own
# state directory: once with ../shared hidden (the generated tiny-llama) and
# once with it (the trained shared fixture; skipped, visibly, when ../shared
# is absent).  Each run must exit 0 and show the submission (201), the
# progress, the succeeded state in the event log, the artifact summary
# (perplexity before and after, a passed gate, the files) and the dashboard
# URL; the files it lists must be on disk with those sizes, the database must
# hold the job as succeeded, and no gptqd or fake Hub may be left running.
# The shared run must also meet the w4g128 bar of targets.json.
#
# Environment: GPTQD_BIN, FAKEHUB_BIN (make test sets them), GPTQ_SHARED.
# Ends with "RESULT passed=N failed=N skipped=N".
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
passed=0 failed=0 skipped=0
say() { echo "[demo] $*"; }
finish() {
    echo "RESULT passed=$passed failed=$failed skipped=$skipped"
    exit 0
}
[ -x "${GPTQD_BIN:-}" ] && [ -x "${FAKEHUB_BIN:-}" ] || {
    say "skip: GPTQD_BIN and FAKEHUB_BIN must name the built binaries (run through make test)"
    skipped=2
    finish
}
for tool in curl jq sqlite3; do
    command -v "$tool" >/dev/null 2>&1 || {
        say "skip: $tool is not installed (deploy/install-deps.sh installs it)"
        skipped=2
        finish
    }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/demo-test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# expect NAME OUTPUT PATTERN...: every extended regex matches a line
expect() {
    local name=$1 out=$2 pat
    shift 2
    for pat in "$@"; do
        if ! grep -qE -- "$pat" "$out"; then
            say "$name: FAIL: no line matches /$pat/"
            return 1
        fi
    done
}

# run_demo NAME SHARED PATTERN...: one demo run and its checks
run_demo() {
    local name=$1 shared=$2 dir=$tmp/$1 out=$tmp/$1.out status id url n f size
    shift 2
    GPTQ_SHARED=$shared DEMO_DIR=$dir DEMO_SERVE=0 DEMO_TIMEOUT=900 timeout 1200 \
        "$root/deploy/demo.sh" </dev/null >"$out" 2>&1
    status=$?
    if [ "$status" -ne 0 ]; then
        cat "$out"
        say "$name: FAIL: deploy/demo.sh exited with status $status"
        return 1
    fi
    expect "$name" "$out" \
        '^  -> 201, job j_[0-9a-f]+ \(queued\)$' \
        '^\[[0-9.]+s\] [#.]{30} [0-9]+% (calibrating|quantizing|writing|evaluating|succeeded)' \
        'quantizing -> writing$' \
        'evaluating -> succeeded$' \
        '^  perplexity    [0-9.]+ before, [0-9.]+ after \(x[0-9.]+, [0-9]+ blocks of [0-9]+\)$' \
        '^  gate          passed \(max x1\.05\)$' \
        '^ +[0-9]+  model\.safetensors$' \
        '^ +[0-9]+  quant_config\.json$' \
        '^  download      http://127\.0\.0\.1:[0-9]+/v1/jobs/j_[0-9a-f]+/artifact/files/model\.safetensors$' \
        '^dashboard:  http://127\.0\.0\.1:[0-9]+/#/jobs/j_[0-9a-f]+$' \
        "$@" || {
        cat "$out"
        return 1
    }
    id=$(sed -nE 's|^dashboard:  http://[^#]*#/jobs/(j_[0-9a-f]+)$|\1|p' "$out")
    url=$(sed -nE 's|^dashboard:  (http://[^/]*)/.*|\1|p' "$out")
    # every listed file is on disk with the listed size
    n=0
    while read -r size f; do
        n=$((n + 1))
        if [ "$(stat -c %s "$dir/var/artifacts/$id/$f" 2>/dev/null)" != "$size" ]; then
            say "$name: FAIL: $f is not $size bytes in $dir/var/artifacts/$id"
            return 1
        fi
    done < <(sed -nE 's/^ +([0-9]+)  ([A-Za-z0-9_.-]+)$/\1 \2/p' "$out")
    expect "$name" "$out" "^  files         $n, [0-9]+ bytes:$" || return 1
    # the daemon kept it in its database, and is gone
    status=$(sqlite3 "$dir/gptqd.db" "SELECT status FROM jobs WHERE id = '$id'" 2>&1)
    if [ "$status" != succeeded ]; then
        say "$name: FAIL: the database says '$status' for $id"
        return 1
    fi
    if curl -s -o /dev/null --max-time 2 "$url/healthz"; then
        say "$name: FAIL: gptqd still answers at $url after the demo exited"
        return 1
    fi
    if [ -s "$dir/hub.url" ] && curl -s -o /dev/null --max-time 2 "$(cat "$dir/hub.url")/api/models/x/y"; then
        say "$name: FAIL: the fake Hub still answers after the demo exited"
        return 1
    fi
    say "$name ($n files, job $id) ok"
}

if run_demo generated "$tmp/no-shared" 'shared is absent; model gen/tiny-llama'; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

shared=${GPTQ_SHARED:-$root/../shared}
if [ ! -d "$shared/fixtures/tiny-qwen2-gcide" ]; then
    say "skip: shared fixture: $shared/fixtures/tiny-qwen2-gcide is absent"
    skipped=$((skipped + 1))
elif run_demo shared "$shared" \
    'model gcide/tiny-qwen2 = the shared fixture' \
    '"texts":"<[0-9]+ texts>","num_samples":128,"seq_len":256' \
    '^  calibration   128 x 256 tokens from texts, sha256 [0-9a-f]{64}$' \
    '400 blocks of 256\)$' \
    '^  reference     w4g128: .* bar [0-9.]+: met$' \
    '^ +[0-9]+  tokenizer\.json$'; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi
finish
