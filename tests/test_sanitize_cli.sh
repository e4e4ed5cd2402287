#!/usr/bin/env bash
# The q4k command under the sanitizers: the CLI test scripts (test_cli.sh,
# test_cli_habits.sh, test_info.sh) run again against ./q4k-asan (ASan and
# UBSan, make q4k-asan), then a short run on the tiny model; every sanitizer
# report (including LeakSanitizer's at exit) is written to a log file and
# any log at all is a failure. Then valgrind (memcheck, full leak check) on
# ./q4k run and ./q4k info: no invalid access and no leak, with suppressions
# only for the Vulkan loader and Mesa (tests/sanitize/valgrind.supp, each
# explained there).
set -u
cd "$(dirname "$0")/.."
. tests/t.sh
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ ! -x ./q4k-asan ] || [ ! -x ./q4k ]; then fail sanitize_prerequisites "build ./q4k and ./q4k-asan first (make test-bins)"; exit 1; fi

# reports go to $tmp/san.PID: the scripts send much of q4k's stderr to files
# or /dev/null, and a report must not go unseen there
export ASAN_OPTIONS="detect_leaks=1:log_path=$tmp/san:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$tmp/san"

# Mesa's lavapipe driver keeps allocations in its globals for the life of the
# process; the Vulkan loader unloads it at vkDestroyInstance, and LeakSanitizer
# then counts them as leaks from an "<unknown module>", which no suppression
# can name. Preloading the driver (after the ASan runtime, which must come
# first) keeps it mapped, and with it what it still points to. Only q4k-asan
# gets the preload, through this wrapper.
lvp=$(ls /usr/lib/*/libvulkan_lvp.so 2>/dev/null | head -n 1)
libasan=$(${CC:-cc} -print-file-name=libasan.so)
printf '#!/bin/sh\nLD_PRELOAD="%s %s" exec "%s" "$@"\n' "$libasan" "$lvp" "$PWD/q4k-asan" > "$tmp/q4k-asan"
chmod +x "$tmp/q4k-asan"
A=$tmp/q4k-asan

for t in test_cli.sh test_cli_habits.sh test_info.sh; do
    # the same checks, named asan_... so they count apart from the plain run
    Q4K_BIN=$A bash "tests/$t" 2>&1 | sed -e 's/^ok /ok asan_/' -e 's/^FAIL /FAIL asan_/' -e 's/^skip /skip asan_/'
done

$A synth "$tmp/tiny.gguf" --preset tiny --layers 1 2>/dev/null
$A run "$tmp/tiny.gguf" "Hello there" -n 6 --temp 0 > "$tmp/run.out" 2>"$tmp/run.err"; rc=$?
check asan_run_tiny bash -c "[ $rc -eq 0 ] && [ -s '$tmp/run.out' ] && grep -q 'eval time' '$tmp/run.err'"

reports=$(ls "$tmp"/san.* 2>/dev/null | wc -l)
if [ "$reports" -eq 0 ]; then
    ok asan_no_reports
else
    fail asan_no_reports "$reports sanitizer reports"
    for f in "$tmp"/san.*; do echo "--- $f"; head -n 40 "$f"; done
fi
unset ASAN_OPTIONS UBSAN_OPTIONS

# ---- valgrind on the release build
if ! command -v valgrind >/dev/null; then
    echo "skip valgrind: valgrind is not installed (apt-get install valgrind)"
    exit 0
fi
./q4k synth "$tmp/v.gguf" --preset tiny --layers 1 2>/dev/null
# --num-callers: the suppressions match on the Vulkan loader deep in the stack
VG=(valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible
    --error-exitcode=99 --num-callers=40 --suppressions=tests/sanitize/valgrind.supp)
vg() { # name, regex its stdout must match, command...
    local name=$1 want=$2 rc; shift 2
    # without CI's NVRTC from the pip wheel: its $ORIGIN run path trips the
    # same false report in ld.so as Mesa's (valgrind.supp), outside the Vulkan
    # loader; q4k's CUDA probe still runs (and finds no NVRTC or no driver)
    env -u Q4K_NVRTC -u LD_LIBRARY_PATH "${VG[@]}" "$@" > "$tmp/$name.out" 2>"$tmp/$name.err"; rc=$?
    if [ $rc -eq 0 ] && grep -q 'ERROR SUMMARY: 0 errors' "$tmp/$name.err" && grep -Eq -- "$want" "$tmp/$name.out"; then
        ok "$name"
    else
        fail "$name" "exit $rc"; grep -E '^==[0-9]+== ' "$tmp/$name.err" | head -n 60
    fi
}
# the default backend (auto) probes CUDA and Vulkan before the CPU
vg valgrind_run . ./q4k run "$tmp/v.gguf" "Hello" -n 4 --temp 0
vg valgrind_info token_embd.weight ./q4k info "$tmp/v.gguf"
vg valgrind_devices vulkan ./q4k devices
