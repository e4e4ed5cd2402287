#!/usr/bin/env bash
# The parity gate through the q4k command: every fault of the test build
# (build/q4k-faults) makes `run --gate-steps 3 --strict` and `qa` exit 3 with
# the refusal line naming the right layer and op; without a fault both pass;
# the release ./q4k carries none of the fault parser's strings; backends that
# cannot start are named; bad arguments exit 2. Then a 20-run sample of the
# false-alarm study (tools/gate_study.sh).
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
Q=./q4k
F=build/q4k-faults
ok() { echo "ok $1"; }
fail() { echo "FAIL $1: $2"; }
check() { # name, condition command...
    local name=$1; shift
    if "$@"; then ok "$name"; else fail "$name" "$*"; fi
}
if [ ! -x $F ]; then echo "FAIL fault_build: $F missing (make $F)"; exit 1; fi

# the release binary has no fault parser; the test build has one (so the check can fail)
for s in Q4K_FAULT kv_step2 q4k_scales f16_acc; do
    check "release_lacks_$s" bash -c "! grep -aq '$s' $Q"
    check "test_build_has_$s" grep -aq "$s" $F
done

$Q synth "$tmp/tiny.gguf" --preset tiny --seed 3 --fast 2>/dev/null
$Q synth "$tmp/tinyo.gguf" --preset tiny --outliers --seed 3 --fast 2>/dev/null
$Q synth "$tmp/b05.gguf" --preset 0.5b --layers 2 --seed 3 --fast 2>/dev/null
M=$tmp/tiny.gguf

# each fault: run --strict exits 3 with one refusal line and no text; qa exits 3
while IFS='|' read -r fault model step where; do
    [ -z "$fault" ] && continue
    name=$(echo "$fault" | tr ':.' '__')
    Q4K_FAULT=$fault $F run "$tmp/$model.gguf" "Hello there" --backend cpu --gate-steps 3 --strict -n 8 --temp 0 \
        >"$tmp/o" 2>"$tmp/e"; rc=$?
    check "run_strict_exit3_$name" test $rc -eq 3
    check "run_strict_no_text_$name" test ! -s "$tmp/o"
    check "run_refusal_line_$name" grep -Eq "^q4k: parity: cpu rejected at step $step/3: .* \(first divergence: $where\)\$" "$tmp/e"
    [ "$(grep -c '^q4k: parity:' "$tmp/e")" = 1 ] || fail "run_one_line_$name" "$(cat "$tmp/e")"
    Q4K_FAULT=$fault $F qa "$tmp/$model.gguf" --steps 3 >"$tmp/qa" 2>&1; rc=$?
    check "qa_exit3_$name" test $rc -eq 3
    check "qa_names_divergence_$name" grep -Eq "first divergence at step $step: $where " "$tmp/qa"
done <<'CASES'
gqa|tiny|0|layer 0, attn
bias|tiny|0|layer 0, q
kv_step2|tiny|2|layer 0, attn
q4k_scales|tiny|0|layer 0, q
f16_acc|tinyo|0|layer 0, attn_norm
split|tiny|0|lm_head
split|b05|0|lm_head
perturb:1:down:0.05|tiny|0|layer 1, down
perturb:3:q_rope:0.05|tiny|0|layer 3, q_rope
perturb:0:embedding:0.05|tiny|0|embedding
perturb:1:k:0.05|b05|0|layer 1, k
CASES

# without a fault the same commands pass
$F run $M "Hello there" --backend cpu --gate-steps 3 --strict -n 8 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check run_gate_passes_exit0 test $rc -eq 0
check run_gate_passes_text test -s "$tmp/o"
check run_gate_passes_said grep -q '^parity: cpu passed the gate' "$tmp/e"
$F qa $M >"$tmp/qa" 2>&1; rc=$?
check qa_passes_exit0 test $rc -eq 0
check qa_summary grep -Eq '^summary: ([0-9]+)/\1 passed$' "$tmp/qa"
check qa_kernel_table grep -q 'matmul Q6_K 2048x256 (output.weight)' "$tmp/qa"
check qa_header grep -q '^seed 1, mode q8, f16 cache; reference: cpu, scalar kernels$' "$tmp/qa"
$Q qa $M --mode both --kv f32 --json >"$tmp/qa.json" 2>&1; rc=$?
check qa_json_both_modes bash -c "test $rc -eq 0 && grep -q '\"mode\":\"f32\"' $tmp/qa.json && grep -q '\"mode\":\"q8\"' $tmp/qa.json && grep -q '\"kv\":\"f32\"' $tmp/qa.json"
$Q qa $M --pos 40 --steps 2 >"$tmp/qa" 2>&1; rc=$?
check qa_pos_40 bash -c "test $rc -eq 0 && grep -q '52 prompt tokens then 2 steps' $tmp/qa"

# without --strict a refused path is named and generation goes on with the reference
Q4K_FAULT=gqa $F run $M "Hello there" --backend cpu --gate-steps 3 -n 8 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
$Q run $M "Hello there" -n 8 --temp 0 >"$tmp/o_ref" 2>/dev/null
check run_fallback_exit0 test $rc -eq 0
check run_fallback_warns grep -q '^q4k: parity: cpu rejected at step 0/3' "$tmp/e"
check run_fallback_text_is_correct cmp -s "$tmp/o" "$tmp/o_ref"
# the release build ignores the variable
Q4K_FAULT=gqa $Q run $M "Hello there" --backend cpu --gate-steps 3 --strict -n 8 --temp 0 >"$tmp/o" 2>"$tmp/e"
check release_ignores_fault_env test $? -eq 0
Q4K_FAULT=nonsense $F run $M "Hello" --backend cpu -n 2 >"$tmp/o" 2>"$tmp/e"; rc=$?
check fault_env_unknown_exit2 bash -c "test $rc -eq 2 && grep -q \"unknown name 'nonsense'\" $tmp/e"

# backends that cannot start: named with a reason, never skipped in silence
$Q run $M "Hello" -n 2 --temp 0 >"$tmp/o" 2>"$tmp/e"; rc=$?
check auto_names_cuda bash -c "test $rc -eq 0 && grep -q '^q4k: warning: --backend auto: cuda could not start (.*); vulkan could not start (' $tmp/e"
# (vulkan without a loader: lavapipe, where installed, runs the model; tests/test_vulkan_run.sh)
for b in cuda vulkan; do
    Q4K_LIBVULKAN=/nonexistent/libvulkan.so.1 $Q run $M "Hello" -n 2 --backend $b >"$tmp/o" 2>"$tmp/e"; rc=$?
    check "explicit_${b}_exit1" bash -c "test $rc -eq 1 && grep -q '^q4k: backend $b could not start: ' $tmp/e && ! test -s $tmp/o"
done
$Q qa $M --backend all >"$tmp/qa" 2>&1; rc=$?
check qa_all_lists_skipped bash -c "test $rc -eq 0 && grep -q '^backend cuda: skipped: ' $tmp/qa && grep -q '^backend vulkan: skipped: ' $tmp/qa"
$Q qa $M --backend cuda >"$tmp/qa" 2>&1
check qa_no_backend_exit1 test $? -eq 1

# usage errors and bad files
$Q run $M "x" --kv f8 >/dev/null 2>"$tmp/e"; check run_kv_bad_exit2 test $? -eq 2
$Q run $M "x" --backend tpu >/dev/null 2>"$tmp/e"; check run_backend_bad_exit2 test $? -eq 2
$Q qa $M --mode q4 >/dev/null 2>&1; check qa_mode_bad_exit2 test $? -eq 2
$Q qa >/dev/null 2>&1; check qa_missing_model_exit2 test $? -eq 2
$Q qa "$tmp/nothing.gguf" >/dev/null 2>"$tmp/e"; check qa_bad_file_exit1 test $? -eq 1
$Q run --help | grep -q 'unsafe' ; check run_help_says_unsafe test $? -eq 0
$Q run --help | grep -q -- '--ref --kv f32 is the float reference'; check run_help_ref_kv test $? -eq 0

# the false-alarm sample: 20 unfaulted gates, random prompts and seeds
tools/gate_study.sh -n 20 -j 2 -p "tiny 0.5b2" "$tmp/study" >"$tmp/study.log" 2>&1; rc=$?
tail -n 4 "$tmp/study.log"
check gate_study_sample_no_false_alarm bash -c "test $rc -eq 0 && grep -q '20 runs, 0 false alarms' $tmp/study.log"
