#!/usr/bin/env bash
# The NEON path on Arm64, run on any Linux machine through user-mode emulation:
# cross-compiles tests/test_cpu.c and the q4k command with aarch64-linux-gnu-gcc
# (static, so qemu-aarch64 needs no sysroot), runs the CPU tests under
# qemu-aarch64 (quick mode for the small cases, every 7B shape: Q4K_TEST_BIG=1;
# their ok/FAIL/skip lines count as this script's, named arm64/... and, built
# with the dot-product extension, arm64+dotprod/...), asserts that the NEON
# tests really ran, and runs a tiny synthetic model on the NEON kernels
# against the x86 scalar path. Missing tools are skips (failures in CI).
# Packages: gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
# qemu-user (and clang, for the compile checks).
set -u
cd "$(dirname "$0")/.."
XCC=${Q4K_AARCH64_CC:-aarch64-linux-gnu-gcc}
QEMU=${Q4K_QEMU_AARCH64:-qemu-aarch64}
if ! command -v "$XCC" >/dev/null; then
    echo "skip neon_arm64: cross compiler $XCC missing (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)"
    exit 0
fi
if ! command -v "$QEMU" >/dev/null; then
    echo "skip neon_arm64: $QEMU missing (apt-get install qemu-user)"
    exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
XFLAGS="-O2 -static -Wall -Wextra -Werror"

# ---- test_cpu under emulation, base ARMv8-A and with the dot-product
# extension (sdot; qemu's "max" CPU has it)
cpu_tests() { # label, kernel line test_neon_vs_scalar must print, qemu args, compiler flags...
    local label=$1 dots=$2 qargs=$3; shift 3
    if ! $XCC $XFLAGS "$@" -Itests -I. -o "$tmp/test_cpu" tests/test_cpu.c -lm -lpthread 2>"$tmp/err"; then
        echo "FAIL $label/build"; head -n 30 "$tmp/err"; return
    fi
    echo "ok $label/build"
    local t0=$(date +%s) rc ran=1 t
    Q4K_TEST_QUICK=1 Q4K_TEST_BIG=1 "$QEMU" $qargs "$tmp/test_cpu" >"$tmp/cpu.out" 2>&1
    rc=$?
    # the AVX tests skip by construction here (x86 runs them): left out of the count
    grep -v '^skip test_avx' "$tmp/cpu.out" | sed -E "s#^(ok|FAIL|skip) #\\1 $label/#"
    echo "  $label test_cpu under $QEMU $qargs: $(( $(date +%s) - t0 ))s, exit $rc"
    if [ $rc -ne 0 ] && ! grep -q '^FAIL ' "$tmp/cpu.out"; then echo "FAIL $label/test_cpu: exit $rc"; fi
    # the NEON tests must have run, not skipped, with the intended kernels
    for t in test_quantize_act_simd test_neon_vs_scalar test_neon_vs_scalar_7b_shapes; do
        grep -qx "ok $t" "$tmp/cpu.out" || { ran=0; echo "  $t did not pass under emulation"; }
    done
    grep -qx "  NEON integer dots: $dots" "$tmp/cpu.out" || { ran=0; echo "  integer dots are not $dots"; }
    [ $ran = 1 ] && echo "ok $label/neon_tests_ran" || echo "FAIL $label/neon_tests_ran"
}
cpu_tests arm64 "smull/smlal (base ARMv8-A)" ""
cpu_tests arm64+dotprod "sdot (dot-product extension)" "-cpu max" -march=armv8.2-a+dotprod

# ---- the header builds clean for Arm64 as C99 and C++11, gcc and clang, with
# and without the dot-product extension (compile only: the runs above cover gcc)
xcheck() { # name, compiler..., (then flags follow in "$@")
    local name=$1 cc=$2; shift 2
    if ! command -v "$cc" >/dev/null; then echo "skip $name: compiler $cc missing"; return; fi
    local m ok=1
    for m in -march=armv8-a -march=armv8.2-a+dotprod; do
        "$cc" "$@" $m -O2 -Wall -Wextra -Wpedantic -Werror -Itests -I. -c tests/test_cpu.c -o "$tmp/x.o" 2>"$tmp/err" ||
            { ok=0; echo "  $name $m:"; head -n 20 "$tmp/err"; }
    done
    [ $ok = 1 ] && echo "ok $name" || echo "FAIL $name"
}
xcheck arm64_gcc_c99 "$XCC" -std=c99
xcheck arm64_gxx_cxx11 "${Q4K_AARCH64_CXX:-aarch64-linux-gnu-g++}" -std=c++11 -x c++
xcheck arm64_clang_c99 clang --target=aarch64-linux-gnu -std=c99
xcheck arm64_clangxx_cxx11 clang++ --target=aarch64-linux-gnu -std=c++11 -x c++

# ---- the q4k command on Arm64
if [ ! -x ./q4k ]; then echo "FAIL neon_q4k: ./q4k (x86) not built; run make"; exit 1; fi
if ! $XCC $XFLAGS -o "$tmp/q4k-arm64" demo.c -lm -lpthread 2>"$tmp/err"; then
    echo "FAIL neon_build_q4k"; head -n 30 "$tmp/err"; exit 1
fi
echo "ok neon_build_q4k"
"$QEMU" "$tmp/q4k-arm64" --version >"$tmp/version" 2>&1
if grep -q '^cpu paths compiled:.* neon' "$tmp/version" && grep -q '^cpu paths detected:.* neon' "$tmp/version" &&
   grep -qx 'cpu path used: neon' "$tmp/version"; then
    echo "ok neon_q4k_version"
else
    echo "FAIL neon_q4k_version"; cat "$tmp/version"
fi
./q4k synth "$tmp/tiny.gguf" --preset tiny --seed 3 2>"$tmp/err" || { echo "FAIL neon_q4k_synth"; cat "$tmp/err"; exit 1; }
run_args=("$tmp/tiny.gguf" "Hello" -n 8 --temp 0 -t 2 --quiet)
if Q4K_CPU=neon "$QEMU" "$tmp/q4k-arm64" run "${run_args[@]}" --logits-out "$tmp/neon.bin" >"$tmp/neon.txt" 2>"$tmp/err" &&
   [ -s "$tmp/neon.txt" ]; then
    echo "ok neon_q4k_run"
else
    echo "FAIL neon_q4k_run"; head -n 20 "$tmp/err"
fi
# logits against x86 scalar: within 1e-4 of the largest logit with float
# activations (--ref); 8-bit activations turn float-order differences into
# quant steps, so the default mode gets 5e-2 (x86 scalar vs AVX2 differ by
# 1.2e-2 on this model; a wrong kernel is off by the order of 1)
Q4K_CPU=scalar ./q4k run "${run_args[@]}" --logits-out "$tmp/x86.bin" >/dev/null 2>&1
Q4K_CPU=neon "$QEMU" "$tmp/q4k-arm64" run "${run_args[@]}" --ref --logits-out "$tmp/neon_ref.bin" >/dev/null 2>&1
Q4K_CPU=scalar ./q4k run "${run_args[@]}" --ref --logits-out "$tmp/x86_ref.bin" >/dev/null 2>&1
cat > "$tmp/cmp.py" <<'PY'
import struct, sys
def load(p):
    b = open(p, 'rb').read()
    assert b[:8] == b'Q4KLOGIT', p
    nv = struct.unpack_from('<I', b, 12)[0]
    rows, off = [], 16
    while off < len(b):
        key = struct.unpack_from('<ii', b, off)
        rows.append((key, struct.unpack_from('<%df' % nv, b, off + 8)))
        off += 8 + 4 * nv
    return rows
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
worst, n = 0.0, 0
for (ka, la), (kb, lb) in zip(a, b):
    if ka != kb: break  # greedy picks diverged: later positions see other tokens
    worst = max(worst, max(abs(x - y) for x, y in zip(la, lb)) / max(abs(v) for v in la))
    n += 1
print('  %d positions, worst |neon - x86 scalar| / max|logit| = %.3g (tol %g)' % (n, worst, tol))
sys.exit(0 if n >= 64 and worst <= tol else 1)
PY
for m in "neon.bin x86.bin 5e-2 neon_q4k_logits_q8" "neon_ref.bin x86_ref.bin 1e-4 neon_q4k_logits_ref"; do
    set -- $m
    if python3 "$tmp/cmp.py" "$tmp/$1" "$tmp/$2" "$3"; then echo "ok $4"; else echo "FAIL $4"; fi
done
