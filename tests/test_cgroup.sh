#!/usr/bin/env bash
# A real memory cgroup limit (a container's): q4k reads it and refuses a -c
# that MemAvailable would allow but the cgroup would answer with the OOM
# killer. A child cgroup of 64 MiB is made (v1's memory hierarchy, or v2 with
# the memory controller), ./q4k runs inside it:
#   - `q4k devices` reports the host memory as the cgroup's limit less usage
#     (at most 64 MiB, source named);
#   - `run -c 100000` (123 MiB: KV cache and scratch) exits 1 with one line
#     naming the cgroup and how many tokens fit, before generating;
#   - `run -c 2000` answers (exit 0).
# The parsing of /proc/self/cgroup, mountinfo and the limit files on
# imitated trees (v1, v2, nested, containers) is tests/test_limits.c.
# Needs root and a writable cgroup file system: CI's machine has both.
set -u
cd "$(dirname "$0")/.."
. tests/t.sh
tmp=$(mktemp -d)
Q=./q4k
cg=""
cleanup() { [ -n "$cg" ] && rmdir "$cg" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
if [ ! -x $Q ]; then fail cgroup "./q4k not built"; exit 1; fi

# where to make the child: v1's memory mount, else a v2 mount whose root
# delegates the memory controller
v1=$(awk '$0 ~ / - cgroup / && $NF ~ /(^|,)memory(,|$)/ {print $5; exit}' /proc/self/mountinfo)
v2=$(awk '$0 ~ / - cgroup2 / {print $5; exit}' /proc/self/mountinfo)
limit=67108864
if [ -n "$v1" ] && [ -w "$v1" ]; then
    cg="$v1/q4k-test-$$"
    mkdir "$cg" 2>/dev/null && echo $limit > "$cg/memory.limit_in_bytes" 2>/dev/null || cg=""
elif [ -n "$v2" ] && [ -w "$v2" ]; then
    grep -qw memory "$v2/cgroup.subtree_control" 2>/dev/null || echo +memory > "$v2/cgroup.subtree_control" 2>/dev/null
    cg="$v2/q4k-test-$$"
    mkdir "$cg" 2>/dev/null && echo $limit > "$cg/memory.max" 2>/dev/null || cg=""
fi
if [ -z "$cg" ]; then
    echo "skip cgroup_limit: no writable memory cgroup (needs root and cgroup v1 memory or v2 with +memory; mounts: v1 '$v1' v2 '$v2')"
    exit 0
fi
in_cg() { # command... inside the cgroup; stdout $tmp/out, stderr $tmp/err, exit code $rc
    bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@" > "$tmp/out" 2> "$tmp/err"; rc=$?
}

$Q synth "$tmp/tiny.gguf" --preset tiny --seed 4 > /dev/null 2>&1 || { fail cgroup "synth"; exit 1; }
in_cg $Q devices
mib=$(sed -n 's/^  host memory available: \([0-9.]*\) MiB (the memory cgroup.*/\1/p' "$tmp/out")
check cgroup_devices_reports_the_limit bash -c "test $rc -eq 0 && test -n '$mib' && awk 'BEGIN{exit !($mib > 0 && $mib <= 64)}'"
[ -z "$mib" ] && sed 's/^/    /' "$tmp/out" | head -3

in_cg $Q run "$tmp/tiny.gguf" "Hello there" -n 4 --temp 0 --quiet -c 100000
check cgroup_refuses_a_context_past_the_limit bash -c "test $rc -eq 1 && test \$(wc -l < $tmp/err) -eq 1 &&
    grep -q -- '-c 100000 does not fit' $tmp/err && grep -q 'memory cgroup' $tmp/err && grep -q 'at most [0-9]* tokens fit' $tmp/err &&
    test ! -s $tmp/out"
[ $rc -ne 1 ] && sed 's/^/    /' "$tmp/err" | head -3

in_cg $Q run "$tmp/tiny.gguf" "Hello there" -n 4 --temp 0 --quiet -c 2000
check cgroup_runs_a_context_that_fits bash -c "test $rc -eq 0 && test -s $tmp/out"
# the cgroup is empty again (its processes exited): cleanup can remove it
