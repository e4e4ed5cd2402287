#!/usr/bin/env bash
# The q4k command as a new user meets it: each error printed once and naming
# its subcommand, files that are not regular files, control bytes from a
# file escaped, the chat's keys (-i, Ctrl-C, Ctrl-D, piped input),
# --logits-out holding every evaluated position, help of every subcommand,
# llama.cpp's spellings and usage errors, and --version's backend lines.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT && echo "tmp $tmp" # KEEP=1: leave the files to look at
Q=${Q4K_BIN:-./q4k} # Q4K_BIN=./q4k-asan: the sanitizer build (tests/test_sanitize_cli.sh)
. tests/t.sh
lines() { wc -l < "$1" | tr -d ' '; }

$Q synth "$tmp/tiny.gguf" --preset tiny --layers 2 --seed 5 2>"$tmp/synth.err"
check synth_progress grep -q 'tensor 1 of' "$tmp/synth.err"
check synth_progress_ends grep -Eq 'tensor ([0-9]+) of \1$' "$tmp/synth.err"

# ---- every error once, naming its subcommand
$Q run "$tmp/missing.gguf" hi > /dev/null 2>"$tmp/e.err"; rc=$?
check error_once_run bash -c "[ $rc -eq 1 ] && [ $(lines "$tmp/e.err") -eq 1 ] && grep -q '^q4k run: .*missing.gguf' '$tmp/e.err'"
$Q info "$tmp/missing.gguf" > /dev/null 2>"$tmp/e.err"; rc=$?
check error_once_info bash -c "[ $rc -eq 1 ] && [ $(lines "$tmp/e.err") -eq 1 ] && grep -q '^q4k info: ' '$tmp/e.err'"
$Q bench "$tmp/missing.gguf" > /dev/null 2>"$tmp/e.err"; rc=$?
check error_once_bench bash -c "[ $rc -eq 1 ] && [ $(lines "$tmp/e.err") -eq 1 ] && grep -q '^q4k bench: ' '$tmp/e.err'"
$Q bench "$tmp/tiny.gguf" -p abc > /dev/null 2>"$tmp/e.err"; rc=$?
check usage_error_names_bench bash -c "[ $rc -eq 2 ] && grep -q '^q4k bench: -p' '$tmp/e.err' && grep -q 'q4k bench --help' '$tmp/e.err' && ! grep -q 'run' '$tmp/e.err'"
$Q synth "$tmp/x.gguf" --preset tiny --layers 0 > /dev/null 2>"$tmp/e.err"; rc=$?
check usage_error_names_synth bash -c "[ $rc -eq 2 ] && grep -q '^q4k synth: --layers' '$tmp/e.err' && grep -q 'q4k synth --help' '$tmp/e.err'"

# ---- files that are not regular files: refused at once (timeout: no hang)
mkfifo "$tmp/fifo"
for c in run info bench; do
    if [ $c = run ]; then args=(x); else args=(); fi
    timeout 20 $Q $c "$tmp/fifo" "${args[@]}" > /dev/null 2>"$tmp/f.err"; rc=$?
    check "fifo_refused_$c" bash -c "[ $rc -eq 1 ] && grep -q 'FIFO' '$tmp/f.err' && [ $(lines "$tmp/f.err") -eq 1 ]"
    timeout 20 $Q $c /dev/zero "${args[@]}" > /dev/null 2>"$tmp/z.err"; rc=$?
    check "dev_zero_refused_$c" bash -c "[ $rc -eq 1 ] && grep -q \"character device.*not 'GGUF'\" '$tmp/z.err'"
    timeout 20 $Q $c "$tmp" "${args[@]}" > /dev/null 2>"$tmp/d.err"; rc=$?
    check "directory_refused_$c" bash -c "[ $rc -eq 1 ] && grep -q 'directory' '$tmp/d.err'"
done
# a pipe that holds a GGUF file is read (bounded by the machine's memory)
cat "$tmp/tiny.gguf" | timeout 60 $Q run /dev/stdin "Hi" -n 2 --temp 0 --quiet > /dev/null 2>"$tmp/p.err"
check pipe_model_read test $? -eq 0
timeout 60 $Q run "$tmp/tiny.gguf" -f /dev/zero > /dev/null 2>"$tmp/pz.err"; rc=$?
check prompt_file_dev_zero_bounded bash -c "[ $rc -eq 1 ] && grep -q 'longer than' '$tmp/pz.err'"
timeout 20 $Q run "$tmp/tiny.gguf" -f "$tmp" > /dev/null 2>"$tmp/pd.err"; rc=$?
check prompt_file_directory bash -c "[ $rc -eq 1 ] && grep -q 'directory' '$tmp/pd.err'"
timeout 20 $Q run "$tmp/tiny.gguf" -f "$tmp/fifo" --raw > /dev/null 2>"$tmp/pf.err"; rc=$?
check prompt_file_fifo_no_hang test $rc -ne 124
timeout 20 $Q synth "$tmp/v.gguf" --preset tiny --vocab /dev/zero > /dev/null 2>"$tmp/sv.err"; rc=$?
check synth_vocab_not_regular bash -c "[ $rc -eq 1 ] && grep -q 'not a regular file' '$tmp/sv.err'"

# ---- control bytes quoted from a file are escaped: an architecture name with ESC
python3 - "$tmp/tiny.gguf" "$tmp/esc.gguf" "$tmp/esc_tok.gguf" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
key = b"general.architecture"
i = b.index(key) + len(key) + 4 + 8  # type u32, length u64, then the value
assert b[i:i + 5] == b"qwen2", b[i:i + 5]
open(sys.argv[2], "wb").write(b[:i] + b"q\x1b[2J" + b[i + 5:])
key = b"tokenizer.ggml.model"
i = b.index(key) + len(key) + 4 + 8
assert b[i:i + 4] == b"gpt2", b[i:i + 4]
open(sys.argv[3], "wb").write(b[:i] + b"g\x07\x1bx" + b[i + 4:])
PY
$Q run "$tmp/esc_tok.gguf" hi > /dev/null 2>"$tmp/esc_tok.err"; rc=$?
check escape_tokenizer_model bash -c "[ $rc -eq 1 ] && ! grep -q $'[\x07\x1b]' '$tmp/esc_tok.err' && grep -qF \"'g\\x07\\x1bx'\" '$tmp/esc_tok.err'"
$Q run "$tmp/esc.gguf" hi > /dev/null 2>"$tmp/esc.err"; rc=$?
check escape_arch_exit_1 test $rc -eq 1
check escape_arch_no_raw_esc bash -c "! grep -q $'\x1b' '$tmp/esc.err'"
check escape_arch_shown_escaped grep -qF "'q\\x1b[2J'" "$tmp/esc.err"
check escape_arch_once test "$(lines "$tmp/esc.err")" -eq 1

# ---- --logits-out: every evaluated position; the last sampled token is not evaluated
$Q run "$tmp/tiny.gguf" "Hi there" --raw -n 3 --temp 0 --logits-out "$tmp/l3.bin" > /dev/null 2>"$tmp/l3.err"
$Q run "$tmp/tiny.gguf" "Hi there" --raw -n 4 --temp 0 --logits-out "$tmp/l4.bin" > /dev/null 2>"$tmp/l4.err"
python3 - "$tmp/l3.bin" "$tmp/l4.bin" "$tmp/l3.err" <<'PY' > "$tmp/logits.txt" 2>&1
import re, struct, sys
def records(path):
    b = open(path, "rb").read()
    assert b[:8] == b"Q4KLOGIT" and struct.unpack("<I", b[8:12])[0] == 1
    nv = struct.unpack("<I", b[12:16])[0]
    rec = 8 + 4 * nv
    assert (len(b) - 16) % rec == 0
    out = []
    for i in range((len(b) - 16) // rec):
        tok, pos = struct.unpack("<ii", b[16 + i * rec:24 + i * rec])
        lg = struct.unpack("<%df" % nv, b[24 + i * rec:16 + (i + 1) * rec])
        out.append((tok, pos, max(range(nv), key=lambda j: (lg[j], -j))))
    return out
r3, r4 = records(sys.argv[1]), records(sys.argv[2])
err = open(sys.argv[3]).read()
n_prompt = int(re.search(r"prompt eval time.*/ *(\d+) tokens", err).group(1))
n_eval = int(re.search(r"\n *eval time.*/ *(\d+) tokens", err).group(1))
assert [p for _, p, _ in r3] == list(range(len(r3))), "positions"
assert len(r3) == n_prompt + n_eval, ("records", len(r3), "evaluated", n_prompt, n_eval)
assert n_eval == 2, ("3 tokens sampled, the last not evaluated", n_eval)
assert r4[:len(r3)] == r3 and len(r4) == len(r3) + 1, "-n 4 extends -n 3 by one position"
# greedy: each record's argmax is the next record's token, and the last
# record of -n 3 holds the logits the 3rd token was drawn from
for j in range(n_prompt - 1, len(r4) - 1):
    assert r4[j][2] == r4[j + 1][0], ("argmax", j)
assert r3[-1][2] == r4[len(r3)][0]
print("every evaluated position:", len(r3))
PY
check logits_out_every_position grep -q '^every evaluated position' "$tmp/logits.txt" || cat "$tmp/logits.txt"

# ---- -i: a first line says how to quit; piped turns are kept apart
printf 'Hello\nAnd again\n' | $Q run "$tmp/tiny.gguf" -i -n 4 --temp 0 --quiet > "$tmp/i.out" 2>"$tmp/i.err"; rc=$?
check chat_exit_0_at_end_of_input test $rc -eq 0
# the first line after the backends that could not start (named, never skipped in silence)
check chat_says_how_to_quit bash -c "grep -v '^q4k: backend .* could not start: \|^q4k: warning: --backend auto: ' '$tmp/i.err' | head -n 1 | grep -q 'Ctrl-D'"
check chat_echoes_piped_lines bash -c "grep -q '^> Hello$' '$tmp/i.err' && grep -q '^> And again$' '$tmp/i.err'"
check chat_answers_on_their_own_lines test "$(lines "$tmp/i.out")" -eq 2
# Ctrl-C during an answer: back at the prompt; the chat goes on; Ctrl-C at the prompt ends it
mkfifo "$tmp/in"
$Q run "$tmp/tiny.gguf" -i -n -1 --ignore-eos -c 30000 --temp 0 < "$tmp/in" > "$tmp/c.out" 2>"$tmp/c.err" &
qpid=$!; pids+=("$qpid")
exec 3>"$tmp/in"
echo "Hello" >&3
for _ in $(seq 200); do [ -s "$tmp/c.out" ] && break; sleep 0.1; done
kill -INT "$qpid"
for _ in $(seq 200); do [ "$(grep -c '^> ' "$tmp/c.err")" -ge 2 ] && break; sleep 0.1; done
check chat_ctrl_c_answer_back_to_prompt test "$(grep -c '^> ' "$tmp/c.err")" -ge 2
check chat_ctrl_c_answer_still_running kill -0 "$qpid"
echo "Again" >&3
for _ in $(seq 100); do [ "$(lines "$tmp/c.out")" -ge 1 ] && [ -n "$(tail -c 1 "$tmp/c.out")" ] && break; sleep 0.1; done
sleep 0.5; kill -INT "$qpid"   # stops the second answer
for _ in $(seq 200); do [ "$(grep -c '^> ' "$tmp/c.err")" -ge 3 ] && break; sleep 0.1; done
sleep 0.3; kill -INT "$qpid"   # at the prompt: ends the chat
for _ in $(seq 200); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.1; done
check chat_ctrl_c_at_prompt_ends bash -c "! kill -0 $qpid 2>/dev/null"
exec 3>&-                      # end of input: no wait forever if Ctrl-C was missed
wait "$qpid"; rc=$?
check chat_ctrl_c_exit_0 test $rc -eq 0
check chat_ctrl_c_prints_timings grep -q 'eval time' "$tmp/c.err"
check chat_ctrl_c_two_answers test "$(lines "$tmp/c.out")" -ge 2

# ---- help of every subcommand
for c in run info bench synth; do
    $Q $c --help > "$tmp/h.txt" 2>&1; rc=$?
    check "help_$c" bash -c "[ $rc -eq 0 ] && grep -q '^usage: q4k $c' '$tmp/h.txt'"
done
$Q synth --help > "$tmp/h.txt"
check synth_help_explains bash -c "grep -q -- '--fast' '$tmp/h.txt' && grep -q -- '--outliers' '$tmp/h.txt' && grep -q 'mixed (' '$tmp/h.txt'"

# ---- llama.cpp's spellings: the same output as q4k's own
base=(--temp 0 --quiet --raw)
$Q run "$tmp/tiny.gguf" "Hello" -n 6 -t 1 -c 64 "${base[@]}" > "$tmp/a.out" 2>/dev/null
$Q run -m "$tmp/tiny.gguf" -p "Hello" --n-predict 6 --threads 1 --ctx-size 64 "${base[@]}" > "$tmp/b.out" 2>/dev/null
check llama_long_flags cmp -s "$tmp/a.out" "$tmp/b.out"
$Q run -m "$tmp/tiny.gguf" -p "Hello" --n-predict=6 --threads=1 --ctx-size=64 --temp=0 --quiet --raw > "$tmp/c2.out" 2>/dev/null
check flag_equals_value cmp -s "$tmp/a.out" "$tmp/c2.out"
check flag_output_nonempty test -s "$tmp/a.out"
$Q run "$tmp/tiny.gguf" "Hello" -n 2 --seed -1 > /dev/null 2>"$tmp/s1.err"
$Q run "$tmp/tiny.gguf" "Hello" -n 2 --seed -1 > /dev/null 2>"$tmp/s2.err"; rc=$?
s1=$(grep -o 'seed [0-9]*' "$tmp/s1.err"); s2=$(grep -o 'seed [0-9]*' "$tmp/s2.err")
check seed_minus_1_random bash -c "[ $rc -eq 0 ] && [ -n '$s1' ] && [ '$s1' != '$s2' ]"
# an echoed seed reproduces its run
seed=${s1#seed }
$Q run "$tmp/tiny.gguf" "Hello" -n 12 --seed "$seed" --quiet > "$tmp/r1.out" 2>/dev/null
$Q run "$tmp/tiny.gguf" "Hello" -n 12 --seed "$seed" --quiet > "$tmp/r2.out" 2>/dev/null
check seed_echoed_reproduces cmp -s "$tmp/r1.out" "$tmp/r2.out"
# --repeat-penalty: 1 is off; a strong one changes greedy output
$Q run "$tmp/tiny.gguf" "Hello" -n 24 "${base[@]}" > "$tmp/p0.out" 2>/dev/null
$Q run "$tmp/tiny.gguf" "Hello" -n 24 --repeat-penalty 1 "${base[@]}" > "$tmp/p1.out" 2>/dev/null
$Q run "$tmp/tiny.gguf" "Hello" -n 24 --repeat-penalty 3 --repeat-last-n 64 "${base[@]}" > "$tmp/p3.out" 2>/dev/null
$Q run "$tmp/tiny.gguf" "Hello" -n 24 --repeat-penalty 3 --repeat-last-n 0 "${base[@]}" > "$tmp/pn.out" 2>/dev/null
check repeat_penalty_1_is_off cmp -s "$tmp/p0.out" "$tmp/p1.out"
check repeat_penalty_changes_output bash -c "! cmp -s '$tmp/p0.out' '$tmp/p3.out'"
check repeat_last_n_0_is_off cmp -s "$tmp/p0.out" "$tmp/pn.out"
# -e: escapes in the prompt
$Q run "$tmp/tiny.gguf" 'a\tb\x41' -e -n 6 "${base[@]}" > "$tmp/e1.out" 2>/dev/null
$Q run "$tmp/tiny.gguf" "$(printf 'a\tbA')" -n 6 "${base[@]}" > "$tmp/e2.out" 2>/dev/null
$Q run "$tmp/tiny.gguf" 'a\tb\x41' -n 6 "${base[@]}" > "$tmp/e3.out" 2>/dev/null
check escapes_read cmp -s "$tmp/e1.out" "$tmp/e2.out"
check escapes_only_with_e bash -c "! cmp -s '$tmp/e1.out' '$tmp/e3.out'"

# ---- usage errors (exit 2)
usage() { # name, args...
    local name=$1; shift
    $Q "$@" > /dev/null 2>"$tmp/u.err"; local rc=$?
    check "usage_$name" bash -c "[ $rc -eq 2 ] && grep -q '^q4k run: ' '$tmp/u.err' && grep -q 'q4k run --help' '$tmp/u.err'"
}
usage n_fraction run "$tmp/tiny.gguf" hi -n 2.5
usage t_fraction run "$tmp/tiny.gguf" hi -t 1.5
usage prompt_twice run "$tmp/tiny.gguf" hi -p there
usage empty_raw_prompt run "$tmp/tiny.gguf" "" --raw
usage flag_without_value run "$tmp/tiny.gguf" hi -n
usage value_on_a_switch run "$tmp/tiny.gguf" hi --raw=1
# ---- warnings: -c beyond the trained context (32768), -t beyond the cores
$Q run "$tmp/tiny.gguf" hi -n 1 -c 40000 --quiet > /dev/null 2>"$tmp/w.err"; rc=$?
check warn_ctx_beyond_trained bash -c "[ $rc -eq 0 ] && grep -q 'warning: -c 40000 is beyond the 32768' '$tmp/w.err'"
cores=$(getconf _NPROCESSORS_ONLN)
$Q run "$tmp/tiny.gguf" hi -n 1 -t $((cores + 1)) --quiet > /dev/null 2>"$tmp/w.err"; rc=$?
check warn_threads_beyond_cores bash -c "[ $rc -eq 0 ] && grep -q 'warning: -t $((cores + 1)) is more threads than' '$tmp/w.err'"
$Q run "$tmp/tiny.gguf" hi -n 1 -t 1 -c 64 --quiet > /dev/null 2>"$tmp/w.err"
# (--backend auto's fallback to the CPU is the one warning a machine without a GPU gives)
check no_warning_within_limits bash -c "! grep -v '^q4k: warning: --backend auto: ' '$tmp/w.err' | grep -q warning"

# ---- --version: one line a backend
$Q --version > "$tmp/v.txt"
check version_cuda_line test "$(grep -c '^cuda: ' "$tmp/v.txt")" -eq 1
check version_vulkan_line test "$(grep -c '^vulkan: ' "$tmp/v.txt")" -eq 1
check version_cpu_line grep -q '^cpu path used: ' "$tmp/v.txt"
