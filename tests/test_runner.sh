#!/usr/bin/env bash
# tests/run.sh itself: under CI=true a skip without [hardware] counts as a
# failure and is named with its reason, also for labels holding '/'
# (asan/...); a FAIL line's reason is printed; a crash without FAIL counts.
set -u
cd "$(dirname "$0")/.."
. tests/t.sh
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(
    . tests/run.sh
    log=$tmp
    CI=true run_one "asan/fake_skip" bash -c 'echo "ok a"; echo "skip b: no tool"; echo "skip c: [hardware] no GPU"'
    echo "counts $pass $fail $skip"
) > "$tmp/skip.out" 2>&1
check ci_skip_named_with_slash_label grep -qF '[CI: skip counts as failure] asan/fake_skip: skip b: no tool' "$tmp/skip.out"
check ci_skip_no_sed_error bash -c "! grep -q 'sed:' '$tmp/skip.out'"
check ci_skip_counted grep -q '^counts 1 1 1$' "$tmp/skip.out"
(
    . tests/run.sh
    log=$tmp
    run_one "asan/fake_fail" bash -c 'echo "why it broke"; echo "FAIL t: 2 != 3"; exit 1'
    run_one "asan/fake_crash" bash -c 'echo "last words"; exit 139'
    echo "counts $pass $fail $skip"
) > "$tmp/fail.out" 2>&1
check fail_reason_printed bash -c "grep -q 'FAIL t: 2 != 3' '$tmp/fail.out' && grep -q 'why it broke' '$tmp/fail.out'"
check crash_counted bash -c "grep -q 'asan/fake_crash exited with code 139' '$tmp/fail.out' && grep -q 'last words' '$tmp/fail.out'"
check fail_counts grep -q '^counts 0 2 0$' "$tmp/fail.out"
