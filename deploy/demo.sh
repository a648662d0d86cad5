#!/usr/bin/env bash
# demo.sh - what `make demo` runs: the product's main job, end to end,
# through the daemon.
#
# Starts a local fake Hub (build/fakehub_serve) serving a small model, starts
# gptqd with its embedded SQLite default on a loopback port, submits one
# quantization job with POST /v1/jobs, shows its progress as the worker runs
# it, then prints the artifact summary (provenance, perplexity before and
# after, the gate, per-layer error against RTN, the files with their sizes
# and download URLs) and the dashboard URL.
#
# With ../shared (or $GPTQ_SHARED): the trained tiny-qwen2-gcide model, its
# calibration texts (128 windows of 256 tokens), 4-bit group 128 asymmetric,
# perplexity on its held-out blocks before and after, gated at +5%, next to
# the bar from its targets.json.  Without it: the generated
# tests/fixtures/tiny-llama (no tokenizer), calibrated on random token ids.
#
# Nothing is downloaded: the Hub is the local fake one.  State (database,
# Hub cache, artifacts) goes to $DEMO_DIR (build/demo, replaced each run) and
# stays there afterwards.
#
# Environment:
#   GPTQD_BIN, FAKEHUB_BIN  the daemon and the fake Hub (make demo sets them)
#   GPTQ_SHARED             the shared fixtures (default ../shared)
#   DEMO_DIR                state directory (default build/demo)
#   DEMO_LISTEN             gptqd's --listen (default 127.0.0.1:0, any free port)
#   DEMO_SERVE              1: keep gptqd serving the dashboard until Ctrl-C;
#                           0: stop when the job is done.  Default: 1 when
#                           stdin and stdout are terminals, else 0.
#   DEMO_TIMEOUT            seconds to wait for the job (default 600)
#
# Exit status: 0 when the job succeeded, 1 when it failed or timed out, 2 on a
# setup problem (named on stderr).
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
gptqd=${GPTQD_BIN:-$root/build/gptqd}
fakehub=${FAKEHUB_BIN:-$root/build/fakehub_serve}
shared=${GPTQ_SHARED:-$root/../shared}
dir=${DEMO_DIR:-$root/build/demo}
listen=${DEMO_LISTEN:-127.0.0.1:0}
timeout_s=${DEMO_TIMEOUT:-600}
if [ -z "${DEMO_SERVE:-}" ]; then
    if [ -t 0 ] && [ -t 1 ]; then DEMO_SERVE=1; else DEMO_SERVE=0; fi
fi

die() {
    echo "demo: $*" >&2
    exit 2
}
[ -x "$gptqd" ] || die "no gptqd at $gptqd (run make demo, or make first)"
[ -x "$fakehub" ] || die "no fake Hub at $fakehub (run make demo, or make first)"
for tool in curl jq od; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (deploy/install-deps.sh installs it)"
done

case "$dir" in
    /*) ;;
    *) dir=$PWD/$dir ;;
esac
rm -rf "$dir" || die "cannot remove the previous $dir"
mkdir -p "$dir" || die "cannot create $dir"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'echo; exit 130' INT TERM
. "$root/tests/tools/servers.sh"   # wait_file, port_url

log_tail() {
    echo "--- $1 (last lines)" >&2
    tail -n 20 "$1" >&2
}

# ---- the model and the job ----
body=$dir/request.json
if [ -d "$shared/fixtures/tiny-qwen2-gcide/model" ]; then
    fx=$(cd "$shared/fixtures/tiny-qwen2-gcide" && pwd)
    repo=gcide/tiny-qwen2
    model_dir=$fx/model
    targets=$fx/targets.json
    echo "demo: model $repo = the shared fixture $fx/model"
    # the calibration texts of calibration.jsonl and the held-out token
    # blocks of reference/eval-blocks.i32 (int32, little-endian), by the
    # protocol of targets.json
    od -An -v -td4 --endian=little "$fx/reference/eval-blocks.i32" | jq -s -c . >"$dir/eval-ids.json" ||
        die "cannot read $fx/reference/eval-blocks.i32"
    jq -s -c --arg model "$repo" --slurpfile eval "$dir/eval-ids.json" '{
        model: $model,
        revision: "main",
        quantization: {bits: 4, group_size: 128, sym: false, desc_act: false},
        calibration: {texts: map(.text), num_samples: 128, seq_len: 256, seed: 0},
        eval: {token_ids: $eval[0], seq_len: 256, max_ppl_ratio: 1.05},
        labels: {source: "make demo"}
    }' "$fx/calibration.jsonl" >"$body" || die "cannot build the request from $fx/calibration.jsonl"
else
    repo=gen/tiny-llama
    model_dir=$root/tests/fixtures/tiny-llama
    targets=
    echo "demo: ../shared is absent; model $repo = the generated $model_dir"
    # no tokenizer: a stream of random token ids (vocabulary 320) for
    # calibration and another for the perplexity
    ids() { od -An -v -tu2 -N "$1" /dev/urandom | jq -s -c 'map(. % 320)'; }
    ids 8192 >"$dir/calib-ids.json" && ids 8192 >"$dir/eval-ids.json" || die "cannot read /dev/urandom"
    jq -n -c --arg model "$repo" --slurpfile calib "$dir/calib-ids.json" --slurpfile eval "$dir/eval-ids.json" '{
        model: $model,
        revision: "main",
        quantization: {bits: 4, group_size: 32, sym: true},
        calibration: {token_ids: $calib[0], num_samples: 32, seq_len: 64, seed: 0},
        eval: {token_ids: $eval[0], seq_len: 64, max_ppl_ratio: 1.05},
        labels: {source: "make demo"}
    }' >"$body" || die "cannot build the request"
fi

# ---- the servers ----
"$fakehub" --port-file "$dir/hub.url" "$repo=$model_dir" >"$dir/fakehub.log" 2>&1 &
pids+=($!)
wait_file "$dir/hub.url" $! 20 || {
    log_tail "$dir/fakehub.log"
    die "the fake Hub did not start"
}
hub=$(head -n 1 "$dir/hub.url")
sha=$(awk -v r="$repo" '$1 == "repo" && $2 == r { print $3 }' "$dir/fakehub.log")
echo "demo: fake Hub at $hub serves $repo, main = ${sha:-?}"

env -u HF_HUB_CACHE -u HF_HOME -u HF_TOKEN -u GPTQD_TOKENS HF_ENDPOINT="$hub" \
    "$gptqd" --listen "$listen" --port-file "$dir/gptqd.port" --db "$dir/gptqd.db" \
    --data-dir "$dir/var" >"$dir/gptqd.log" 2>&1 &
pids+=($!)
gptqd_pid=$!
wait_file "$dir/gptqd.port" "$gptqd_pid" 20 || {
    log_tail "$dir/gptqd.log"
    die "gptqd did not start (its log: $dir/gptqd.log)"
}
url=$(port_url "$dir/gptqd.port")
echo "demo: gptqd $("$gptqd" --version 2>/dev/null | head -n 1) at $url, database $dir/gptqd.db"

# api METHOD PATH [curl args]: the body in $resp, the HTTP status in $code
# (000 when gptqd did not answer)
api() {
    local method=$1 path=$2
    shift 2
    : >"$dir/resp"
    code=$(curl -sS -o "$dir/resp" -w '%{http_code}' -X "$method" "$@" "$url$path" 2>"$dir/curl.err") || code=000
    resp=$(cat "$dir/resp")
    [ "$code" != 000 ]
}
for i in $(seq 1 100); do
    api GET /readyz && [ "$code" = 200 ] && break
    sleep 0.1
done
[ "$code" = 200 ] || die "gptqd is not ready: $resp$(cat "$dir/curl.err")"

# ---- submit ----
echo
echo "POST $url/v1/jobs"
jq -c '.calibration |= (if .texts then .texts = "<\(.texts | length) texts>" else .token_ids = "<\(.token_ids | length) ids>" end)
       | .eval.token_ids = "<\(.eval.token_ids | length) ids>"' "$body" | sed 's/^/  /'
api POST /v1/jobs -H 'Content-Type: application/json' -H "Idempotency-Key: demo-$$" --data-binary "@$body" ||
    die "cannot reach gptqd: $(cat "$dir/curl.err")"
job=$resp
[ "$code" = 201 ] || [ "$code" = 200 ] || die "POST /v1/jobs answered $code: $job"
id=$(jq -r .id <<<"$job")
echo "  -> $code, job $id ($(jq -r .status <<<"$job"))"
echo

# ---- progress ----
# one curl and one jq per look, twice a second: on a small machine the poller
# must not take CPU from the job it watches
tty=0
[ -t 1 ] && tty=1
start=$EPOCHREALTIME
last=
status=
deadline=$((SECONDS + timeout_s))
while :; do
    api GET "/v1/jobs/$id" || die "gptqd stopped answering (its log: $dir/gptqd.log)"
    cur=$resp
    [ "$code" = 200 ] || die "GET /v1/jobs/$id answered $code: $cur"
    {
        read -r status
        read -r key
        IFS= read -r line
    } < <(jq -r --argjson t0 "$start" --argjson now "$EPOCHREALTIME" '
        (.progress.fraction // 0) as $f
        | ($f * 30 | floor) as $n
        | .status, "\(.status) \(.progress.layer)",
          "[\($now - $t0 | . * 10 | floor / 10)s] "
          + "\("#" * $n // "")\("." * (30 - $n) // "") \($f * 100 | floor)% "
          + "\(.status)"
          + (if .progress.layer != null then " layer \(.progress.layer + 1)/\(.progress.layers_total)" else "" end)
          + (if .progress.eta_seconds != null then ", eta \(.progress.eta_seconds | . * 10 | floor / 10)s" else "" end)' <<<"$cur")
    if [ "$tty" = 1 ]; then
        printf '\r\033[K%s' "$line"
    elif [ "$key" != "$last" ]; then
        echo "$line"
    fi
    last=$key
    case "$status" in succeeded | failed | cancelled) break ;; esac
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo
        echo "demo: job $id is still $status after ${timeout_s}s; giving up" >&2
        exit 1
    fi
    sleep 0.5
done
[ "$tty" = 1 ] && echo

echo
echo "events (GET /v1/jobs/$id/events):"
api GET "/v1/jobs/$id/events?limit=200"
jq -r '.events[]? | "  \(.time[11:23])  \(.message)"' <<<"$resp"

# ---- the artifact ----
if [ "$status" != succeeded ]; then
    echo
    echo "demo: job $id $status: $(jq -r '.error | "\(.code): \(.message)"' <<<"$cur")" >&2
fi
api GET "/v1/jobs/$id/artifact"
art=$resp
if [ "$code" = 200 ]; then
    echo
    echo "artifact (GET /v1/jobs/$id/artifact):"
    jq -r '
        def r(n): . * pow(10; n) | round / pow(10; n);
        "  model         \(.model) @ \(.source_revision)",
        "  quantization  \(.quantization.bits)-bit, group \(.quantization.group_size), " +
            "\(if .quantization.sym then "sym" else "asym" end), desc_act \(.quantization.desc_act), \(.quantization.checkpoint_format)",
        "  calibration   \(.calibration.num_samples) x \(.calibration.seq_len) tokens from \(.calibration.source), sha256 \(.calibration.sha256)",
        "  modules       \(.modules_quantized)/\(.modules) quantized in \(.quantize_seconds | r(2)) s, peak \(.peak_bytes / 1048576 | r(1)) MiB",
        (if .layers then
            "  output error  GPTQ \([.layers[].modules[].out_rel] | add / length | r(5)) vs RTN " +
            "\([.layers[].modules[].rtn_out_rel] | add / length | r(5)) (mean relative error of each module output)"
         else empty end),
        (if .eval then
            "  perplexity    \(.eval.ppl_before | r(4)) before, \(.eval.ppl_after | r(4)) after " +
            "(x\(.eval.ppl_ratio | r(4)), \(.eval.blocks) blocks of \(.eval.seq_len))",
            "  gate          \(.eval.gate)\(if .eval.max_ppl_ratio then " (max x\(.eval.max_ppl_ratio))" else "" end)"
         else empty end),
        "  files         \(.files | length), \(.bytes) bytes:",
        (.files[] | "    \(.size | tostring | " " * (10 - length) + .)  \(.name)")' <<<"$art"
    if [ -n "$targets" ]; then
        jq -r --argjson after "$(jq .eval.ppl_after <<<"$art")" '.configs[] | select(.name == "w4g128") |
            "  reference     \(.name): RTN \(.rtn_ppl), reference GPTQ \(.reference_gptq_ppl | map(tostring) | join(" / ")), " +
            "bar \(.max_ppl): \(if $after <= .max_ppl then "met" else "NOT met" end)"' "$targets"
    fi
    echo "  download      $url$(jq -r '.files[] | select(.name == "model.safetensors" or (.name | startswith("model-00001"))) | .url' <<<"$art" | head -n 1)"
    echo "  on disk       $dir/var/artifacts/$id"
fi

echo
echo "dashboard:  $url/#/jobs/$id"
echo "API:        $url/v1/jobs   (spec: $url/openapi.yaml)"
if [ "$DEMO_SERVE" = 1 ]; then
    echo
    echo "gptqd keeps serving at $url; Ctrl-C stops it (state stays in $dir)."
    wait "$gptqd_pid"
fi
[ "$status" = succeeded ]
