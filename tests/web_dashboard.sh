#!/usr/bin/env bash
# web_dashboard.sh - the dashboard (web/) in a real browser.  make test runs
# it after the C tests.
#
# Starts the fake Hub ($FAKEHUB_BIN serving tests/fixtures/tiny-llama as
# gen/tiny-llama) and two daemons ($GPTQD_BIN on ephemeral loopback ports,
# each with its own database and data directory; the second with
# --token=secret), then drives Debian's chromium with playwright-core
# (tests/web/dashboard.mjs): submit a job through the form (a rejected one
# first), watch it succeed in the list, its page (the per-layer chart,
# perplexity, downloads, events), cancel, pagination, and the token prompt.
# The job page's screenshot is left in build/dashboard.png.
#
# playwright-core is installed into build/npm-web by tests/tools/npm-get.sh
# (npm, never a browser download) and reused after that.
# Without the binaries, chromium, node, npm or the npm registry it says
# "skip: <why>" and counts one skip: visible, never a pass.
#
# Environment:
#   GPTQD_BIN, FAKEHUB_BIN  the daemon and the fake Hub (make test sets them)
#   CHROMIUM_BIN            the browser (default /usr/bin/chromium)
#   WEB_DASHBOARD_TIMEOUT   seconds for the browser run (default 240)
#   NPM_SETUP_TIMEOUT       seconds for the npm install (default 180)
#
# Ends with "RESULT passed=N failed=N skipped=N"; exit status 1 on failure.
set -u

PLAYWRIGHT_VERSION=1.65.1
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
passed=0 failed=0 skipped=0
say() { echo "[web_dashboard] $*"; }
finish() {
    echo "RESULT passed=$passed failed=$failed skipped=$skipped"
    [ "$failed" -eq 0 ]
    exit
}
skip() {
    say "skip: $*"
    skipped=1
    finish
}

gptqd=${GPTQD_BIN:-}
fakehub=${FAKEHUB_BIN:-}
[ -n "$gptqd" ] && [ -x "$gptqd" ] || skip "GPTQD_BIN is not set to the gptqd binary (run through make test)"
[ -n "$fakehub" ] && [ -x "$fakehub" ] || skip "FAKEHUB_BIN is not set to build/fakehub_serve (run through make test)"
browser=${CHROMIUM_BIN:-/usr/bin/chromium}
[ -x "$browser" ] || skip "no chromium at $browser (apt-get install chromium; deploy/install-deps.sh lists it)"
command -v node >/dev/null 2>&1 || skip "node is not installed"
command -v timeout >/dev/null 2>&1 || skip "timeout(1) is not installed"

# ---- playwright-core under build/npm-web ----
modules=$(tests/tools/npm-get.sh "$root/build/npm-web" "playwright-core@$PLAYWRIGHT_VERSION" 2>"$root/build/npm-web.err") ||
    skip "$(tail -n 1 "$root/build/npm-web.err")"

# ---- the servers ----
tmp=$(mktemp -d "${TMPDIR:-/tmp}/web-dashboard.XXXXXX") || exit 1
pids=()
names=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. tests/tools/servers.sh   # wait_file, port_url
fail_setup() {
    say "FAIL: $1"
    for log in "$tmp"/*.log; do
        [ -f "$log" ] && { echo "--- $(basename "$log")"; tail -n 20 "$log"; }
    done
    failed=1
    finish
}

"$fakehub" --port-file "$tmp/hub.url" gen/tiny-llama=tests/fixtures/tiny-llama >"$tmp/fakehub.log" 2>&1 &
pids+=($!)
names+=("the fake Hub")
wait_file "$tmp/hub.url" "$!" || fail_setup "the fake Hub did not start"
hub=$(head -n 1 "$tmp/hub.url")

# start_gptqd NAME ARGS...: a daemon with its own state; its URL in $url
start_gptqd() {
    local name=$1
    shift
    mkdir -p "$tmp/$name"
    env -u HF_HUB_CACHE -u HF_TOKEN HF_ENDPOINT="$hub" "$gptqd" --listen=127.0.0.1:0 --port-file "$tmp/$name/port" \
        --db "$tmp/$name/gptqd.db" --data-dir "$tmp/$name/data" "$@" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    names+=("gptqd ($name)")
    wait_file "$tmp/$name/port" "$!" || fail_setup "gptqd ($name) did not start"
    url=$(port_url "$tmp/$name/port")
}
start_gptqd open
open_url=$url
start_gptqd auth --token=secret
auth_url=$url
say "fake Hub $hub, gptqd $open_url and $auth_url (token)"

# ---- the browser ----
shot="$root/build/dashboard.png"
rm -f "$shot"
out="$tmp/node.out"
PLAYWRIGHT_MODULES="$modules" CHROMIUM_BIN="$browser" DASHBOARD_URL="$open_url" DASHBOARD_AUTH_URL="$auth_url" \
    DASHBOARD_TOKEN=secret DASHBOARD_SHOT="$shot" PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
    timeout "${WEB_DASHBOARD_TIMEOUT:-240}" node tests/web/dashboard.mjs >"$out" 2>&1
status=$?
cat "$out"
passed=$(grep -cE '^\[web_dashboard\] .* ok$' "$out")
failed=$(grep -cE '^\[web_dashboard\] .* FAIL: ' "$out")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    [ "$status" -eq 124 ] && say "FAIL: the browser run timed out after ${WEB_DASHBOARD_TIMEOUT:-240}s"
    say "FAIL: tests/web/dashboard.mjs exited with status $status"
    failed=1
fi
# a server that died under the browser is a failure of its own, named
for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        wait "${pids[$i]}" 2>/dev/null
        say "FAIL: ${names[$i]} died during the run (exit status $?)"
        failed=$((failed + 1))
    fi
done
if [ ! -s "$shot" ]; then
    say "FAIL: no screenshot at $shot"
    failed=$((failed + 1))
else
    say "screenshot: $shot"
fi
if [ "$failed" -ne 0 ]; then
    for log in "$tmp"/*.log; do
        echo "--- $(basename "$log") (last lines)"
        tail -n 15 "$log"
    done
fi
finish
