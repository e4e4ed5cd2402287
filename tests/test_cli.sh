#!/usr/bin/env bash
# The q4k command end to end on synthetic models: synth, info, run (greedy
# output independent of threads, logits file layout, chat template, stop at
# the context end), and the exit codes of bad input.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
Q=${Q4K_BIN:-./q4k} # Q4K_BIN=./q4k-asan: the sanitizer build (tests/test_sanitize_cli.sh)
. tests/t.sh

$Q synth "$tmp/tiny.gguf" --preset tiny --seed 3 2>"$tmp/synth.err"
check synth_tiny test -s "$tmp/tiny.gguf"
$Q info "$tmp/tiny.gguf" > "$tmp/info.txt" 2>&1
check synth_tiny_info grep -q 'blk.3.ffn_down.weight' "$tmp/info.txt"
# the Q4_K_M recipe: attn_v / ffn_down are Q6_K on layers i < n/8, i >= 7n/8 or (i - n/8) % 3 == 2: with n = 4, layers 2 and 3
check synth_recipe_q6k_layers_2_3 bash -c "grep -Eq 'blk\.2\.ffn_down\.weight.*Q6_K' $tmp/info.txt && grep -Eq 'blk\.3\.attn_v\.weight.*Q6_K' $tmp/info.txt"
check synth_recipe_q4k_first_layer grep -Eq 'blk\.0\.ffn_down\.weight.*Q4_K' "$tmp/info.txt"
check synth_recipe_output_q6k grep -Eq '(^|[^.a-z_])output\.weight.*Q6_K' "$tmp/info.txt"

# greedy output is the same with 1 and 2 threads
$Q run "$tmp/tiny.gguf" "Hello there" -n 24 --temp 0 -t 1 > "$tmp/t1.txt" 2>"$tmp/t1.err"; rc1=$?
$Q run "$tmp/tiny.gguf" "Hello there" -n 24 --temp 0 -t 2 > "$tmp/t2.txt" 2>"$tmp/t2.err"; rc2=$?
check run_exit_0 test $rc1 -eq 0 -a $rc2 -eq 0
check run_threads_same_output cmp -s "$tmp/t1.txt" "$tmp/t2.txt"
check run_output_nonempty test -s "$tmp/t1.txt"
check run_prints_timings grep -q 'eval time' "$tmp/t1.err"
check run_prints_summary grep -q 'arch qwen2' "$tmp/t1.err"
check run_echoes_seed grep -q 'seed' "$tmp/t1.err"
# sampling with a seed is reproducible, and differs from another seed
$Q run "$tmp/tiny.gguf" "Hello" -n 24 --seed 11 --quiet > "$tmp/s1.txt" 2>/dev/null
$Q run "$tmp/tiny.gguf" "Hello" -n 24 --seed 11 --quiet > "$tmp/s2.txt" 2>/dev/null
$Q run "$tmp/tiny.gguf" "Hello" -n 24 --seed 12 --quiet > "$tmp/s3.txt" 2>/dev/null
check run_seed_reproducible cmp -s "$tmp/s1.txt" "$tmp/s2.txt"
check run_seed_changes_output bash -c "! cmp -s '$tmp/s1.txt' '$tmp/s3.txt'"

# --logits-out: header, then (token, position, n_vocab floats) per evaluated position
$Q run "$tmp/tiny.gguf" "Hi" --raw -n 3 --temp 0 --quiet --logits-out "$tmp/l.bin" > /dev/null 2>&1
python3 - "$tmp/l.bin" <<'PY' > "$tmp/logits.txt" 2>&1
import struct, sys, math
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"Q4KLOGIT", b[:8]
ver, nv = struct.unpack("<II", b[8:16])
assert ver == 1, ver
rec = 8 + 4 * nv
n = (len(b) - 16) // rec
assert (len(b) - 16) % rec == 0
pos = [struct.unpack("<ii", b[16 + i * rec:24 + i * rec])[1] for i in range(n)]
assert pos == list(range(n)), pos
first = struct.unpack("<%df" % nv, b[24:24 + 4 * nv])
m = sum(first) / nv
sd = math.sqrt(sum((x - m) ** 2 for x in first) / nv)
print("positions", n, "n_vocab", nv, "std", sd)
assert n >= 3, n
PY
check logits_out_layout grep -q '^positions' "$tmp/logits.txt"

# the context ends: generation stops with a message, exit 0
$Q run "$tmp/tiny.gguf" "Hello" --raw -c 16 -n 100 --temp 0 > /dev/null 2>"$tmp/ctx.err"; rc=$?
check run_context_full_message grep -q 'context is full' "$tmp/ctx.err"
check run_context_full_exit_0 test $rc -eq 0
# a templated prompt longer than the context: an error, exit 1, and no negative token counts
$Q run "$tmp/tiny.gguf" "Hello there, how are you" -c 8 -n 4 --temp 0 > /dev/null 2>"$tmp/ctx2.err"; rc=$?
check run_prompt_over_context_exit_1 test $rc -eq 1
check run_prompt_over_context_message grep -q 'context' "$tmp/ctx2.err"
check run_prompt_over_context_counts bash -c "! grep -Eq '/ +-[0-9]+ tokens' '$tmp/ctx2.err'"

# -i: two turns in one KV cache; the second prompt follows the first answer
printf 'Hello\nAnd again\n' | $Q run "$tmp/tiny.gguf" -i -n 6 --temp 0 -c 512 > "$tmp/i.out" 2>"$tmp/i.err"; rc=$?
check interactive_exit_0 test $rc -eq 0
check interactive_two_prompts test "$(grep -o '^> ' "$tmp/i.err" | wc -l)" -ge 2
n1=$(grep 'prompt eval time' "$tmp/i.err" | sed 's|.*/ *\([0-9]*\) tokens.*|\1|')
check interactive_both_turns_evaluated test "${n1:-0}" -gt 70
# an answer cut by -n is closed with <|im_end|> before the next turn: the
# evaluated tokens (from --logits-out) hold it 4 times (system, user, the cut
# answer, the second user)
printf 'Hello\nAnd again\n' | $Q run "$tmp/tiny.gguf" -i -n 6 --temp 0 --ignore-eos -c 512 --logits-out "$tmp/il.bin" > /dev/null 2>&1
python3 - "$tmp/tiny.gguf" "$tmp/il.bin" <<'PY' > "$tmp/iclose.txt" 2>&1
import struct, subprocess, sys
rec = struct.pack("<I", 10) + b"<|im_end|>"
ids = subprocess.run(["build/tool_tokenize", "--special", sys.argv[1]], input=rec, stdout=subprocess.PIPE, check=True).stdout.split()
assert len(ids) == 1, ids
im_end = int(ids[0])
def tokens(path):
    b = open(path, "rb").read()
    nv = struct.unpack("<I", b[12:16])[0]
    step = 8 + 4 * nv
    return [struct.unpack("<i", b[16 + i * step:20 + i * step])[0] for i in range((len(b) - 16) // step)]
cut = tokens(sys.argv[2]).count(im_end)
assert cut == 4, cut
print("closed: <|im_end|> id", im_end, "evaluated", cut, "times")
PY
check interactive_cut_answer_closed grep -q '^closed' "$tmp/iclose.txt"
# Ctrl-C stops generation, still prints the timings, exits 0
$Q run "$tmp/tiny.gguf" "Hello" --raw -n -1 -c 30000 --ignore-eos --temp 0 > "$tmp/c.out" 2>"$tmp/c.err" &
pid=$!
sleep 1.5; kill -INT $pid; wait $pid; rc=$?
check ctrl_c_exit_0 test $rc -eq 0
check ctrl_c_prints_timings grep -q 'eval time' "$tmp/c.err"
check ctrl_c_after_some_output test -s "$tmp/c.out"
check ctrl_c_before_the_context_end bash -c "! grep -q 'context is full' '$tmp/c.err'"

# 0.5b shapes: 896-wide rows cannot hold Q4_K/Q6_K super-blocks: Q5_0 and Q8_0 instead
$Q synth "$tmp/05b.gguf" --preset 0.5b --layers 2 --fast 2>/dev/null
$Q info "$tmp/05b.gguf" > "$tmp/05b.txt" 2>&1
check synth_05b_fallback_q5_0 grep -Eq 'blk\.0\.attn_q\.weight +Q5_0' "$tmp/05b.txt"
check synth_05b_fallback_q8_0 grep -Eq 'token_embd\.weight +Q8_0' "$tmp/05b.txt"
check synth_05b_k_quants_where_they_fit grep -Eq 'blk\.1\.ffn_down\.weight +Q6_K' "$tmp/05b.txt"
check synth_05b_tied bash -c "! grep -Eq '^ *output\.weight' '$tmp/05b.txt'"
$Q run "$tmp/05b.gguf" "Hi" -n 2 --temp 0 --quiet > /dev/null 2>&1
check synth_05b_runs test $? -eq 0

# the Qwen vocabulary: q4k tokenizes the ChatML prompt into as many tokens as tiktoken does
data=tests/data
$Q synth "$tmp/qv.gguf" --preset tiny --layers 1 --fast --vocab "$data/qwen.tiktoken" 2>/dev/null
$Q run "$tmp/qv.gguf" "What is 2 + 2? Ünïcödé 😀" -n 3 --temp 0 > /dev/null 2>"$tmp/qv.err"
got=$(grep 'prompt eval time' "$tmp/qv.err" | sed 's|.*/ *\([0-9]*\) tokens.*|\1|')
want=$(python3 - "$data/qwen.tiktoken" <<'PY' 2>&1
import base64, sys
try:
    import tiktoken
except ImportError:
    print("no-tiktoken"); sys.exit(0)
ranks = {}
for line in open(sys.argv[1], "rb"):
    t, r = line.split()
    ranks[base64.b64decode(t)] = int(r)
pat = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
enc = tiktoken.Encoding("qwen", pat_str=pat, mergeable_ranks=ranks,
                        special_tokens={"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645})
text = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 2? Ünïcödé 😀<|im_end|>\n<|im_start|>assistant\n")
print(len(enc.encode(text, allowed_special="all")))
PY
)
if [ "$want" = "no-tiktoken" ]; then
    echo "skip qwen_vocab_chat_prompt: python package tiktoken missing"
else
    check qwen_vocab_chat_prompt test "${got:-x}" = "$want"
fi

# bench: prompt and decode speed, bytes a step reads, fraction of a given floor
$Q bench "$tmp/tiny.gguf" -p 16 -n 4 -t 1 --bw 10 > "$tmp/bench.txt" 2>&1; rc=$?
check bench_exit_0 test $rc -eq 0
check bench_reports grep -q 'decode: 4 tokens' "$tmp/bench.txt"
check bench_floor grep -q 'of the 10 GB/s floor' "$tmp/bench.txt"
check bench_both_modes grep -qE '^f32 / q8 time: prompt [0-9.]+x, decode [0-9.]+x$' "$tmp/bench.txt"
$Q bench "$tmp/tiny.gguf" -p 4 -n 2 -t 1 --mode f32 > "$tmp/bench1.txt" 2>&1
check bench_mode_f32_only sh -c "grep -q '^f32 activations' '$tmp/bench1.txt' && ! grep -q '^q8 activations' '$tmp/bench1.txt'"
$Q bench "$tmp/tiny.gguf" --bw -3 > /dev/null 2>&1; rc=$?
check bench_bad_flag_exit_2 test $rc -eq 2
$Q bench "$tmp/tiny.gguf" --backend nope > /dev/null 2>&1; rc=$?
check bench_bad_backend_exit_2 test $rc -eq 2
# --backend cuda: timed only after the parity gate where a GPU runs; elsewhere
# one line naming the backend and why, exit 1
$Q bench "$tmp/tiny.gguf" -p 4 -n 2 -t 1 --backend cuda > "$tmp/bench_cuda.txt" 2>&1; rc=$?
if [ $rc -eq 0 ]; then
  check bench_cuda_after_gate sh -c "grep -q '^parity: cuda passed the gate in q8 mode' '$tmp/bench_cuda.txt' &&
    grep -q '^parity: cuda passed the gate in f32 mode' '$tmp/bench_cuda.txt' && grep -q 'decode: 2 tokens' '$tmp/bench_cuda.txt'"
else
  check bench_cuda_unavailable sh -c "test $rc -eq 1 && test \$(wc -l < '$tmp/bench_cuda.txt') -eq 1 &&
    grep -q '^q4k bench: cuda: ' '$tmp/bench_cuda.txt'"
fi

# bad input: exit codes 1 (error) and 2 (usage), one clear line
$Q run "$tmp/missing.gguf" "x" > /dev/null 2>"$tmp/e1.err"; rc=$?
check run_missing_file_exit_1 test $rc -eq 1
check run_missing_file_names_it grep -q 'missing.gguf' "$tmp/e1.err"
$Q run "$tmp/tiny.gguf" "x" --temp abc > /dev/null 2>"$tmp/e2.err"; rc=$?
check run_bad_flag_value_exit_2 test $rc -eq 2
$Q run "$tmp/tiny.gguf" "x" --frobnicate > /dev/null 2>&1; rc=$?
check run_unknown_flag_exit_2 test $rc -eq 2
$Q run "$tmp/tiny.gguf" "x" --backend cuda > /dev/null 2>"$tmp/e3.err"; rc=$?
# a backend that cannot start is an error (1), named with its reason; an unknown one is usage (2)
check run_unavailable_backend_exit_1 bash -c "test $rc -eq 1 && grep -q 'backend cuda could not start' $tmp/e3.err"
$Q run "$tmp/tiny.gguf" "x" --backend tpu > /dev/null 2>&1; rc=$?
check run_unknown_backend_exit_2 test $rc -eq 2
$Q frobnicate > /dev/null 2>&1; rc=$?
check unknown_command_exit_2 test $rc -eq 2
$Q synth "$tmp/x.gguf" --preset 13b > /dev/null 2>&1; rc=$?
check synth_unknown_preset_exit_2 test $rc -eq 2
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n' > "$tmp/lfs.gguf"
$Q run "$tmp/lfs.gguf" "x" > /dev/null 2>"$tmp/e4.err"; rc=$?
check run_lfs_pointer_exit_1 test $rc -eq 1
check run_lfs_pointer_says_so grep -qi 'lfs' "$tmp/e4.err"
check run_help_documents_exit_codes bash -c "$Q run --help | grep -q 'exit codes'"
check version_lists_paths bash -c "$Q --version | grep -q 'cpu paths detected'"
# q4k devices: no model needed, exit 0 whatever the machine has; a missing
# driver or NVRTC is named, and --version reports the same probe
$Q devices > "$tmp/devices.txt" 2>&1; rc=$?
check devices_exit_0 test $rc -eq 0
check devices_cuda_section grep -q '^cuda:' "$tmp/devices.txt"
Q4K_LIBCUDA=/nonexistent/libcuda.so.1 $Q devices > "$tmp/devices2.txt" 2>&1; rc=$?
check devices_no_driver_exit_0 test $rc -eq 0
check devices_names_missing_driver grep -q 'driver: not available: .*/nonexistent/libcuda.so.1' "$tmp/devices2.txt"
Q4K_NVRTC=/nonexistent/libnvrtc.so.13 $Q devices > "$tmp/devices3.txt" 2>&1
check devices_names_missing_nvrtc grep -q 'nvrtc: not found: .*/nonexistent/libnvrtc.so.13' "$tmp/devices3.txt"
check version_uses_device_probe bash -c "Q4K_LIBCUDA=/nonexistent/libcuda.so.1 $Q --version | grep '^cuda: ' | grep -q /nonexistent/libcuda.so.1"
$Q devices extra > /dev/null 2>&1; rc=$?
check devices_extra_argument_exit_2 test $rc -eq 2

# other quantization mixes load and run
for qn in mixed q8_0 f32; do
    $Q synth "$tmp/$qn.gguf" --preset tiny --layers 2 --quant $qn 2>/dev/null &&
    $Q run "$tmp/$qn.gguf" "abc" -n 4 --temp 0 --quiet > /dev/null 2>"$tmp/$qn.err"
    check "synth_and_run_$qn" test $? -eq 0
done
$Q info "$tmp/mixed.gguf" > "$tmp/mixed.txt"
n_types=$(grep -oE '\b(F32|F16|BF16|Q8_0|Q4_0|Q5_0|Q4_K|Q5_K|Q6_K)\b' "$tmp/mixed.txt" | sort -u | wc -l)
check synth_mixed_has_every_type test "$n_types" -eq 9
