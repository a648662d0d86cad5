#!/usr/bin/env bash
# Check deploy/gptqd.service with systemd-analyze: `verify` (syntax, every
# directive known, ExecStart runnable) and an offline `security` review.
#
#   deploy/check-unit.sh [GPTQD_BINARY]     (default: build/gptqd)
#
# verify needs ExecStart's binary to exist, so the unit is copied to a
# temporary directory with ExecStart pointing at the built binary.  Any
# message verify prints about the unit counts as a failure, not only its exit
# status.  Without systemd-analyze (or without the binary) the check is
# skipped, visibly.  The last line is a RESULT line for tests/run.sh:
#   RESULT passed=1 failed=0 skipped=0
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
unit="$here/gptqd.service"
bin=${1:-"$root/build/gptqd"}

result() {
    echo "RESULT passed=$1 failed=$2 skipped=$3"
    exit 0
}
skip() {
    echo "check-unit: SKIP: $*"
    result 0 0 1
}
fail() {
    echo "check-unit: FAIL: $*"
    result 0 1 0
}

command -v systemd-analyze >/dev/null 2>&1 ||
    skip "systemd-analyze is not installed (apt-get install systemd)"
[ -f "$unit" ] || fail "$unit is missing"
case $bin in /*) ;; *) bin="$PWD/$bin" ;; esac
[ -x "$bin" ] || skip "$bin is not built (make build/gptqd)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# exactly one ExecStart, pointing at /usr/local/bin/gptqd
n=$(grep -c '^ExecStart=/usr/local/bin/gptqd\( \|$\)' "$unit")
[ "$n" -eq 1 ] || fail "expected one ExecStart=/usr/local/bin/gptqd line, found $n"
sed "s|^ExecStart=/usr/local/bin/gptqd|ExecStart=$bin|" "$unit" > "$tmp/gptqd.service"

# verify: --man=no (no man pages here), only this unit's own problems count
out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no --recursive-errors=no \
    "$tmp/gptqd.service" 2>&1)
status=$?
# Messages about other units (a minimal container lacks some targets' binaries)
# are not this unit's; everything else is.
mine=$(printf '%s\n' "$out" | grep -v '^$' | grep -v -E '^(/usr)?/lib/systemd/system/[^:]*:' |
    grep -v -E '^Unit [^ ]+\.(target|socket|slice|mount|swap|path|timer) not found' || true)
printf '%s\n' "$out" | sed '/^$/d; s/^/check-unit: verify: /'
[ "$status" -eq 0 ] || fail "systemd-analyze verify exited $status"
[ -z "$mine" ] || fail "systemd-analyze verify reported problems with the unit"
echo "check-unit: verify: ok ($(systemd-analyze --version | head -n 1))"

# The offline security review: the unit must stay well hardened (systemd
# rates exposure 0.0-10.0; up to 2.0 is its "OK" band, where this unit is).
sec=$(SYSTEMD_LOG_COLOR=0 systemd-analyze security --offline=yes "$tmp/gptqd.service" 2>&1)
score=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9.]*\).*/\1/p' | tail -n 1)
if [ -z "$score" ]; then
    echo "check-unit: security: no offline review from this systemd-analyze; not counted"
else
    echo "check-unit: security: exposure $score"
    if awk -v s="$score" 'BEGIN { exit !(s > 2.0) }'; then
        printf '%s\n' "$sec" | grep '^✗' | sed 's/^/check-unit: security: /'
        fail "exposure $score is above 2.0"
    fi
fi
result 1 0 0
