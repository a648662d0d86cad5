#!/usr/bin/env bash
# deploy_check.sh - the deployment files against each other and against the
# real daemon (tests/deploy/check.mjs says what is checked); make test runs
# it.  Docker and Kubernetes are not needed: the files are parsed (the npm
# package yaml, installed into build/npm-web by tests/tools/npm-get.sh) and
# build/gptqd is run with each one's environment.  Without node, npm or the
# registry it says "skip: <why>" and counts one skip.
#
# Environment: GPTQD_BIN (make test sets it).
# Ends with "RESULT passed=N failed=N skipped=N".
set -u
YAML_VERSION=2.9.1
root=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "[deploy] $*"; }
result() {
    echo "RESULT passed=$1 failed=$2 skipped=$3"
    exit 0
}
[ -x "${GPTQD_BIN:-}" ] || { say "skip: GPTQD_BIN is not set to the gptqd binary (run through make test)"; result 0 0 1; }
for tool in node curl dpkg-query ldd; do
    command -v "$tool" >/dev/null 2>&1 || { say "skip: $tool is not installed"; result 0 0 1; }
done
mkdir -p "$root/build"
modules=$("$root/tests/tools/npm-get.sh" "$root/build/npm-web" "yaml@$YAML_VERSION" 2>"$root/build/npm-yaml.err") || {
    say "skip: $(tail -n 1 "$root/build/npm-yaml.err")"
    result 0 0 1
}
out=$(YAML_MODULE="$modules/yaml" GPTQD_BIN="$GPTQD_BIN" timeout 300 node "$root/tests/deploy/check.mjs" 2>&1)
status=$?
printf '%s\n' "$out"
passed=$(grep -cE '^\[deploy\] .* ok$' <<<"$out")
failed=$(grep -cE '^\[deploy\] .* FAIL: ' <<<"$out")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    say "FAIL: tests/deploy/check.mjs exited with status $status"
    failed=1
fi
result "$passed" "$failed" 0
