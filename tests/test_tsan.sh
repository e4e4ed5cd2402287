#!/usr/bin/env bash
# ThreadSanitizer on the thread rules of q4k.h (tests/tsan_threads.c, built
# by `make test-bins` or `make tsan`): two threads, one model, on the CPU and
# on Vulkan (lavapipe), each with a backend of its own and then sharing one
# backend; any report outside the Vulkan loader and Mesa (tests/tsan.supp,
# each entry explained) fails. Then the same sharing in a build with the
# backends' lock compiled out (tsan_threads_nolock) must be reported, so
# that the clean run means something.
set -u
cd "$(dirname "$0")/.."
. tests/t.sh
B=build/tsan/tsan_threads
N=build/tsan/tsan_threads_nolock
for b in $B $N; do
    if [ ! -x $b ]; then fail tsan "$b not built (make $b)"; exit 1; fi
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
opts="suppressions=$PWD/tests/tsan.supp halt_on_error=0 exitcode=66"
# an empty shader cache: both threads compile their kernels with glslang at once
Q4K_CACHE_DIR=$tmp/cache TSAN_OPTIONS="$opts" timeout 600 $B > "$tmp/out" 2> "$tmp/err"; rc=$?
cat "$tmp/out"
if [ $rc -eq 0 ] && ! grep -q 'WARNING: ThreadSanitizer' "$tmp/err"; then ok tsan_no_reports
else fail tsan_no_reports "rc $rc: $(grep -A12 'WARNING: ThreadSanitizer' "$tmp/err" | head -40)"; fi
TSAN_OPTIONS="$opts" timeout 300 $N --share-backend > /dev/null 2> "$tmp/err2"; rc=$?
check tsan_reports_a_shared_backend_without_lock bash -c "test $rc -eq 66 &&
    grep -q 'WARNING: ThreadSanitizer: data race' $tmp/err2 && grep -q ' q4k' $tmp/err2"
# and the locked build, sharing the same way, is not reported
TSAN_OPTIONS="$opts" timeout 300 $B --share-backend > /dev/null 2> "$tmp/err3"; rc=$?
check tsan_shared_backend_with_lock bash -c "test $rc -eq 0 && ! grep -q 'WARNING: ThreadSanitizer' $tmp/err3"
