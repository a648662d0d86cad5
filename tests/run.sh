#!/usr/bin/env bash
# Run every test binary given on the command line and add up their RESULT
# lines into the closing "N passed, N failed, N skipped" line.  A binary that
# crashes or prints no RESULT line counts as one failure.
set -u
passed=0 failed=0 skipped=0
for t in "$@"; do
    name=$(basename "$t")
    out=$("$t" 2>&1)
    status=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^RESULT passed=[0-9]+ failed=[0-9]+ skipped=[0-9]+$' | tail -n 1)
    if [ -z "$line" ]; then
        echo "[$name] crashed or printed no RESULT line (exit $status)"
        failed=$((failed + 1))
        continue
    fi
    p=$(echo "$line" | sed -E 's/.*passed=([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*failed=([0-9]+).*/\1/')
    s=$(echo "$line" | sed -E 's/.*skipped=([0-9]+).*/\1/')
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "[$name] exited with status $status"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
