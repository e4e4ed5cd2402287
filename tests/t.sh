# The shell tests' side of tests/t.h: "ok NAME" / "FAIL NAME: why" lines for
# tests/run.sh. Sourced by tests/test_*.sh.
ok() { echo "ok $1"; }
fail() { echo "FAIL $1: $2"; }
check() { # name, condition command...
    local name=$1; shift
    if "$@"; then ok "$name"; else fail "$name" "$*"; fi
}
