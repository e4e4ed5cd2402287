#!/usr/bin/env bash
# Runs every test and prints "N passed, N failed, N skipped" last.
# Test programs print lines "ok NAME", "FAIL NAME ...", "skip NAME: why".
# A program that exits non-zero without a FAIL line counts as one failure.
# With CI=true a skip counts as a failure: CI must have every tool.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0; skip=0
failed_names=()
log=build/test-logs; mkdir -p "$log"

run_one() { # label, command...
    local label=$1; shift
    local out="$log/$(echo "$label" | tr '/ :' '___').log"
    local t0=$(date +%s)
    "$@" >"$out" 2>&1
    local rc=$?
    local p f s
    p=$(grep -c '^ok ' "$out"); f=$(grep -c '^FAIL ' "$out"); s=$(grep -c '^skip ' "$out")
    if [ "${CI:-}" = "true" ]; then
        local tool_skips
        tool_skips=$(grep '^skip ' "$out" | grep -vc '^skip [^:]*: \[hardware\]')
        if [ "$tool_skips" -gt 0 ]; then
            # printf, not sed: labels hold '/' (asan/test_tokenizer)
            grep '^skip ' "$out" | grep -v '^skip [^:]*: \[hardware\]' |
                while IFS= read -r l; do printf '  [CI: skip counts as failure] %s: %s\n' "$label" "$l"; done
            f=$((f + tool_skips)); s=$((s - tool_skips))
        fi
    fi
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "  $label exited with code $rc without a FAIL line:"; tail -n 20 "$out" | sed 's/^/    /'
        f=1
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    printf '%-40s %4d ok %3d failed %3d skipped  (%ss)\n' "$label" "$p" "$f" "$s" "$(( $(date +%s) - t0 ))"
    if [ "$f" -gt 0 ]; then
        grep -B12 '^FAIL ' "$out" | grep -v '^ok ' | sed 's/^/    /' | tail -n 60
        failed_names+=("$label")
    fi
}

# sourced (tests/test_runner.sh tests run_one): stop here
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

for t in build/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for t in build/asan/test_*; do
    [ -x "$t" ] || continue
    run_one "asan/$(basename "$t")" env Q4K_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$t"
done
for t in tests/test_*.sh; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t")" bash "$t"
done
for t in tests/test_*.py; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t")" python3 "$t"
done

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
