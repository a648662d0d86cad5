#!/usr/bin/env bash
# npm-get.sh - make one pinned npm package available under a prefix in
# build/, and print its node_modules directory:
#
#   modules=$(tests/tools/npm-get.sh build/npm-web playwright-core@1.65.1) || skip ...
#
# An install that loads at that version is reused (no network).  Otherwise
# npm install runs (under a flock on PREFIX/.lock, so parallel callers
# install once), bounded by NPM_SETUP_TIMEOUT seconds (default 180), never
# downloading browsers (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1).  Exits 1 with
# one line on stderr saying why when node or npm is missing, the registry
# cannot be reached or the package does not load.
set -u
[ $# -eq 2 ] || { echo "usage: npm-get.sh PREFIX NAME@VERSION" >&2; exit 2; }
prefix=$1 spec=$2
name=${spec%@*} version=${spec##*@}
modules="$prefix/node_modules"
limit=${NPM_SETUP_TIMEOUT:-180}
fail() { echo "$*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || fail "node is not installed"
command -v timeout >/dev/null 2>&1 || fail "timeout(1) is not installed"
loads() {
    node -e '
        const p = require(process.argv[1] + "/" + process.argv[2] + "/package.json");
        if (p.version !== process.argv[3]) process.exit(3);
        require(process.argv[1] + "/" + process.argv[2]);
    ' "$modules" "$name" "$version" >/dev/null 2>&1
}
if ! loads; then
    command -v npm >/dev/null 2>&1 || fail "npm is not installed (needed for $spec)"
    mkdir -p "$prefix" || fail "cannot create $prefix"
    exec 9>"$prefix/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w "$limit" 9 || fail "another install holds $prefix/.lock"
    fi
    if ! loads; then
        [ -f "$prefix/package.json" ] || echo '{"private": true}' >"$prefix/package.json"
        echo "npm-get: installing $spec into $prefix" >&2
        # saved to PREFIX/package.json: npm prunes unsaved packages when it
        # installs another one into the same prefix
        log="$prefix/install-${name//\//_}.log"
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout "$limit" \
            npm install --prefix "$prefix" --no-audit --no-fund --fetch-retries=1 \
            --fetch-timeout=30000 "$spec" >"$log" 2>&1
        status=$?
        [ "$status" -eq 124 ] && fail "npm install $spec timed out after ${limit}s (registry unreachable?); see $log"
        if [ "$status" -ne 0 ]; then
            reason=$(grep -m1 -E 'npm (ERR!|error) (code|network|request)' "$log")
            fail "npm install $spec failed (exit $status${reason:+: $reason}); see $log"
        fi
        loads || fail "$spec installed in $modules but does not load"
    fi
    exec 9>&-
fi
echo "$modules"
