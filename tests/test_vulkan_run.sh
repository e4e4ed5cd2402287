#!/usr/bin/env bash
# The whole model on Vulkan through the q4k command (lavapipe in CI):
# `q4k qa --backend vulkan` passes on a tiny `synth --quant mixed` model
# (every weight type; both modes, 8 steps; with the device's limits and
# with Q4K_VK_LIMITS=range=64K,alloc=256K) and on a 1-layer model with 7B
# shapes and the full 152064 vocabulary, whose embedding and lm_head exceed
# lavapipe's 128 MiB binding range (split into bindings, said by run -v);
# `q4k run --backend vulkan` prints text after "parity: vulkan passed the
# gate"; --device picks a device or says why not; gate faults of the test
# build exit 3 naming the layer and op. Failure paths: Q4K_DEVICE_MEM_LIMIT
# refusals, a device lost during a step (Q4K_VK_TEST_FAULT_EVAL) and a shader
# that does not compile (Q4K_VK_TEST_BREAK=FILE:LINE) under run and qa: exit 1,
# one line; --backend auto falls back to the CPU with one warning when the
# failure comes before the answer. Q4K_TEST_VK_DEVICE=N|NAME runs every
# Vulkan command on that device (tests/gpu.sh vkfail). The 7B-shaped model costs lavapipe
# ~15-20 s per evaluated step (its 447 MB lm_head): CI runs 8 steps in 8-bit
# mode and 2 in float mode; Q4K_TEST_VK_BIG=full runs 8 in both (15 minutes
# on a loaded 2-core machine), Q4K_TEST_VK_BIG=0 leaves the model out.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
Q=./q4k
F=build/q4k-faults
ok() { echo "ok $1"; }
# a failure shows the last command's q4k lines too (what the device said)
fail() { echo "FAIL $1: $2"; grep -s -m3 '^q4k' "$tmp/e" | sed 's/^/    stderr: /'; }
check() { # name, condition command...
    local name=$1; shift
    if "$@"; then ok "$name"; else fail "$name" "$*"; fi
}
if [ ! -x $Q ] || [ ! -x $F ]; then echo "FAIL vk_run_build: $Q or $F missing (make q4k $F)"; exit 1; fi
# Q4K_TEST_VK_DEVICE=N|NAME: every Vulkan command on that device (tests/gpu.sh
# vkfail: the NVIDIA GPU of the lent machine); unset, --backend vulkan's choice
VK=(--backend vulkan)
[ -n "${Q4K_TEST_VK_DEVICE:-}" ] && VK+=(--device "$Q4K_TEST_VK_DEVICE")
# the release binary carries no test-build variable; the test build does (so the check can fail)
for s in Q4K_VK_TEST_BREAK Q4K_VK_TEST_FAULT_EVAL Q4K_TEST_AUTO_LAVAPIPE; do
    check "release_lacks_$s" bash -c "! grep -aq '$s' $Q"
    check "test_build_has_$s" grep -aq "$s" $F
done
if ! $Q devices 2>/dev/null | grep -q '^      usable'; then
    echo "skip vk_run: no usable Vulkan device ($($Q devices 2>&1 | grep -m1 '^vulkan'))"
    exit 0
fi

$Q synth "$tmp/mixed.gguf" --preset tiny --quant mixed --seed 3 >/dev/null 2>&1
M=$tmp/mixed.gguf

# qa: the kernel table and the gate, both modes, 8 steps
$Q qa $M "${VK[@]}" --mode both --steps 8 >"$tmp/qa" 2>&1; rc=$?
check qa_vulkan_tiny_mixed bash -c "test $rc -eq 0 && grep -Eq '^summary: ([0-9]+)/\1 passed$' $tmp/qa"
check qa_vulkan_both_modes bash -c "grep -q '^model: vulkan, q8, f16 cache, 20 prompt tokens then 8 steps' $tmp/qa && grep -q '^model: vulkan, f32, f16 cache' $tmp/qa"
check qa_vulkan_every_type bash -c "for t in F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q4_K Q5_K Q6_K; do grep -q \"matmul \$t .* pass\" $tmp/qa || exit 1; done"
Q4K_VK_LIMITS=range=64K,alloc=256K $Q qa $M "${VK[@]}" --mode both --steps 8 --kv f32 >"$tmp/qa" 2>&1; rc=$?
check qa_vulkan_small_limits bash -c "test $rc -eq 0 && grep -Eq '^summary: ([0-9]+)/\1 passed$' $tmp/qa"
Q4K_VK_LIMITS=range=64K,alloc=256K $Q run $M "Hello" "${VK[@]}" -v -n 1 --gate-steps 0 >/dev/null 2>"$tmp/e"
check run_small_limits_split grep -q 'vulkan: output.weight: 2048 rows in [0-9]* bindings' "$tmp/e"

# run: the gate, then text
$Q run $M "Once upon a time" "${VK[@]}" -n 8 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check run_vulkan_exit0 test $rc -eq 0
check run_vulkan_passed_gate grep -q '^parity: vulkan passed the gate (.*3 steps)' "$tmp/e"
check run_vulkan_text test -s "$tmp/o"
$Q run $M "Once upon a time" --device 0 -n 2 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check run_device_0 bash -c "test $rc -eq 0 && grep -q '^parity: vulkan passed the gate' $tmp/e && test -s $tmp/o"
$Q run $M "x" --device no-such-gpu -n 2 >"$tmp/o" 2>"$tmp/e"; rc=$?
check run_device_unknown bash -c "test $rc -eq 1 && grep -q \"no device 'no-such-gpu'\" $tmp/e && ! test -s $tmp/o"
$Q run $M "x" --backend cpu --device 0 >/dev/null 2>&1
check run_device_cpu_exit2 test $? -eq 2
$Q devices --device 0 >"$tmp/o" 2>&1
check devices_device_0 grep -q '^vulkan: --device 0: device 0, ' "$tmp/o"
$Q bench $M "${VK[@]}" -p 8 -n 4 --mode q8 >"$tmp/o" 2>&1; rc=$?
check bench_vulkan bash -c "test $rc -eq 0 && grep -q '^backend: vulkan, device' $tmp/o && grep -q 'decode: 4 tokens' $tmp/o"

# faults of the test build: qa and run --strict exit 3, naming where

# device memory under Q4K_DEVICE_MEM_LIMIT: a session that cannot fit is refused
# before any upload with the bytes needed and free; one that fits the check but
# not the allocations fails naming them; enough memory runs
Q4K_DEVICE_MEM_LIMIT=2M $Q run $M "Hello" "${VK[@]}" -n 2 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check memlimit_refused_before_upload bash -c "test $rc -eq 1 && grep -q '^q4k: backend vulkan could not start: session: .* needs [0-9]* bytes .* the device has 2097152 bytes' $tmp/e && ! grep -q 'uploading\|parity' $tmp/e && ! test -s $tmp/o"
Q4K_DEVICE_MEM_LIMIT=64M $Q run $M "Hello" "${VK[@]}" -n 2 -c 1000000 >"$tmp/o" 2>"$tmp/e"; rc=$?
check memlimit_ctx_names_fit bash -c "test $rc -eq 1 && grep -q 'at most [0-9]* tokens fit' $tmp/e"
Q4K_DEVICE_MEM_LIMIT=11M $Q run $M "Hello" "${VK[@]}" -n 2 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check memlimit_allocation_oom bash -c "test $rc -eq 1 && grep -q 'vulkan: out of device memory: [0-9]* bytes needed, [0-9]* free (Q4K_DEVICE_MEM_LIMIT=11534336)' $tmp/e && ! test -s $tmp/o"
Q4K_DEVICE_MEM_LIMIT=64M $Q run $M "Hello" "${VK[@]}" -n 2 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check memlimit_enough_runs bash -c "test $rc -eq 0 && grep -q '^parity: vulkan passed the gate' $tmp/e && test -s $tmp/o"
Q4K_DEVICE_MEM_LIMIT=lots $Q run $M "Hello" "${VK[@]}" -n 2 >"$tmp/o" 2>"$tmp/e"; rc=$?
check memlimit_bad_value bash -c "test $rc -eq 1 && grep -q \"Q4K_DEVICE_MEM_LIMIT='lots' is not a number of bytes\" $tmp/e"

# a device lost during a step (the test build's injected loss at the 6th eval):
# the answer stops there, the error is printed once, exit 1, no other backend
Q4K_VK_TEST_FAULT_EVAL=6 build/q4k-faults run $M "Once upon a time" "${VK[@]}" --gate-steps 0 -n 32 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check device_lost_run_exit1 bash -c "test $rc -eq 1 && test \$(grep -c 'the device was lost' $tmp/e) -eq 1 && ! grep -qi 'cpu' $tmp/e"
check device_lost_answer_stopped bash -c "test -s $tmp/o && test \$(wc -c < $tmp/o) -lt 60"
Q4K_VK_TEST_FAULT_EVAL=6 $Q run $M "Once upon a time" "${VK[@]}" --gate-steps 0 -n 8 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check device_lost_release_has_no_injection test $rc -eq 0

# a shader that does not compile (the test build's Q4K_VK_TEST_BREAK=FILE:LINE
# puts a syntax error on that line of the embedded kernel; the good kernels are
# in the shader cache by now, so a hit would hide it): run and qa exit 1 with
# one line naming kernels_src/FILE:LINE, glslang's own line number
for brk in matmul.comp:40 q4k_vk_common.glsl:61; do
    name=${brk%%.*}; file=${brk%:*}; line=${brk#*:}
    Q4K_VK_TEST_BREAK=$brk $F run $M "Hello" "${VK[@]}" -n 4 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
    check "shader_break_run_exit1_$name" bash -c "test $rc -eq 1 && ! test -s $tmp/o"
    check "shader_break_run_one_line_$name" bash -c "test \$(grep -c '^q4k' $tmp/e) -eq 1 &&
        grep -q '^q4k: parity: vulkan: compiling kernels_src/.*: kernels_src/$file:$line: .*syntax error' $tmp/e"
    Q4K_VK_TEST_BREAK=$brk $F qa $M "${VK[@]}" --steps 3 >"$tmp/o" 2>"$tmp/e"; rc=$?
    check "shader_break_qa_exit1_$name" bash -c "test $rc -eq 1 && test \$(wc -l < $tmp/e) -eq 1 &&
        grep -q '^q4k: qa: vulkan: compiling kernels_src/.*: kernels_src/$file:$line: ' $tmp/e && ! grep -q summary $tmp/o"
done
Q4K_VK_TEST_BREAK=matmul.comp:40 $Q run $M "Hello" "${VK[@]}" -n 4 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check shader_break_release_ignores bash -c "test $rc -eq 0 && grep -q '^parity: vulkan passed the gate' $tmp/e && test -s $tmp/o"

# --backend auto where a failure comes before the answer's first token: one
# warning naming it, the answer on the CPU, exit 0 (CUDA pointed at nothing;
# the test build's Q4K_TEST_AUTO_LAVAPIPE lets auto take lavapipe); a device
# lost during the answer stops it with exit 1, no switch
Q4K_TEST_AUTO_LAVAPIPE=1 Q4K_LIBCUDA=/nonexistent/libcuda.so.1 $F run $M "Hello" -n 4 --temp 0 >"$tmp/cpu" 2>/dev/null
auto() { # NAME WHAT-THE-WARNING-NAMES ENV...
    local name=$1 want=$2
    shift 2
    env Q4K_TEST_AUTO_LAVAPIPE=1 Q4K_LIBCUDA=/nonexistent/libcuda.so.1 "$@" $F run $M "Hello" -n 4 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
    check "auto_falls_back_$name" bash -c "test $rc -eq 0 && test \$(grep -c '^q4k' $tmp/e) -eq 1 &&
        grep -q \"^q4k: warning: --backend auto: cuda could not start (.*); vulkan could not start (.*$want.*): running on the cpu\$\" $tmp/e &&
        cmp -s $tmp/o $tmp/cpu"
}
auto shader_break 'kernels_src/matmul.comp:40: ' Q4K_VK_TEST_BREAK=matmul.comp:40
auto device_lost_in_gate 'the device was lost' Q4K_VK_TEST_FAULT_EVAL=2
auto memlimit_session 'needs [0-9]* bytes' Q4K_DEVICE_MEM_LIMIT=2M
auto memlimit_allocation 'out of device memory: [0-9]* bytes needed' Q4K_DEVICE_MEM_LIMIT=11M
Q4K_TEST_AUTO_LAVAPIPE=1 Q4K_LIBCUDA=/nonexistent/libcuda.so.1 Q4K_VK_TEST_FAULT_EVAL=8 $F run $M "Once upon a time" -n 32 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check auto_device_lost_in_answer_no_switch bash -c "test $rc -eq 1 && grep -q 'running on vulkan' $tmp/e &&
    test \$(grep -c 'the device was lost' $tmp/e) -eq 1 && ! grep -q 'running on the cpu\|cpu reference' $tmp/e && test -s $tmp/o"

$Q synth "$tmp/tiny.gguf" --preset tiny --seed 3 --fast >/dev/null 2>&1
while IFS='|' read -r fault step where; do
    name=$(echo "$fault" | tr ':.' '__')
    Q4K_FAULT=$fault $F qa "$tmp/tiny.gguf" "${VK[@]}" --steps 3 >"$tmp/qa" 2>&1; rc=$?
    check "qa_vulkan_fault_exit3_$name" test $rc -eq 3
    check "qa_vulkan_fault_names_$name" grep -Eq "first divergence at step $step: $where " "$tmp/qa"
    Q4K_FAULT=$fault $F run "$tmp/tiny.gguf" "Hello there" "${VK[@]}" --gate-steps 3 --strict -n 8 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
    check "run_vulkan_fault_exit3_$name" bash -c "test $rc -eq 3 && ! test -s $tmp/o"
    check "run_vulkan_refusal_$name" grep -Eq "^q4k: parity: vulkan rejected at step $step/3: .* \(first divergence: $where\)\$" "$tmp/e"
done <<'CASES'
gqa|0|layer 0, attn
kv_step2|2|layer 0, attn
q4k_scales|0|layer 0, q
split|0|lm_head
perturb:3:q_rope:0.05|0|layer 3, q_rope
CASES

# 7B shapes, one layer, the full vocabulary: embedding (306 MB) and lm_head (447 MB) over the 128 MiB range
if [ "${Q4K_TEST_VK_BIG:-1}" != 0 ]; then
    $Q synth "$tmp/l1.gguf" --preset 7b --layers 1 --fast --seed 5 >/dev/null 2>&1
    t0=$(date +%s)
    f32_steps=2; [ "${Q4K_TEST_VK_BIG:-}" = full ] && f32_steps=8
    $Q qa "$tmp/l1.gguf" "${VK[@]}" --mode q8 --steps 8 >"$tmp/qa" 2>&1; rc=$?
    $Q qa "$tmp/l1.gguf" "${VK[@]}" --mode f32 --steps $f32_steps >"$tmp/qa2" 2>&1; rc2=$?
    grep -hE '^model: |^summary' "$tmp/qa" "$tmp/qa2" | sed 's/^/  /'; echo "  (qa on the 7B-shaped layer: $(( $(date +%s) - t0 ))s)"
    check qa_vulkan_7b_layer_full_vocab_q8 bash -c "test $rc -eq 0 && grep -Eq '^summary: ([0-9]+)/\1 passed$' $tmp/qa"
    check qa_vulkan_7b_layer_full_vocab_f32 bash -c "test $rc2 -eq 0 && grep -Eq '^summary: ([0-9]+)/\1 passed$' $tmp/qa2"
    check qa_vulkan_7b_layer_steps bash -c "grep -q '^model: vulkan, q8, f16 cache, 20 prompt tokens then 8 steps' $tmp/qa && grep -q \"^model: vulkan, f32, f16 cache, 20 prompt tokens then $f32_steps steps\" $tmp/qa2"
    $Q run "$tmp/l1.gguf" "Hi" --raw "${VK[@]}" -v -n 1 --gate-steps 0 --temp 0 >/dev/null 2>"$tmp/e"
    # split where the device's storage-buffer range (lavapipe: 128 MiB) is below
    # the tensor; one binding where it holds it (the NVIDIA driver: 4 GiB)
    range=$(grep -o 'range [0-9]*' "$tmp/e" | head -1 | cut -d' ' -f2)
    if [ "${range:-0}" -lt 306000000 ]; then
        check run_7b_layer_lm_head_split grep -q 'vulkan: output.weight: 152064 rows in [2-9] bindings' "$tmp/e"
        check run_7b_layer_embd_split grep -q 'vulkan: token_embd.weight: 152064 rows in [2-9] bindings' "$tmp/e"
    else
        check run_7b_layer_one_binding_in_range_$range bash -c "grep -q '^q4k run: vulkan: uploading' $tmp/e && ! grep -q 'rows in [0-9]* bindings' $tmp/e"
    fi
else
    echo "skip qa_vulkan_7b_layer_full_vocab: Q4K_TEST_VK_BIG=0"
fi
