#!/usr/bin/env bash
# Runs on the lent GPU machine (see the device tool) and leaves logs under
# $OUT (or build/gpu-logs). Stages:
#   tests/gpu.sh [all]   builds everything, runs the C tests (its CPU has
#                        AVX-512, which the CI machine lacks) and the
#                        transformers oracle
#   tests/gpu.sh cuda    the CUDA backend: q4k devices, then every kernel
#                        and synthetic models' forward passes and the parity
#                        gate against the CPU (tests/test_cuda.c; ~4 minutes,
#                        ~1.5 with Q4K_TEST_MATMUL7B=0), then q4k qa and
#                        q4k run --backend cuda on a synthetic tiny model
#   tests/gpu.sh kernels the CUDA backend's own tests (tests/test_cuda.c: every
#                        kernel, sessions, the gate, no CPU kernel during a
#                        CUDA eval, decode graph vs Q4K_CUDA_GRAPH=0, device
#                        memory; Q4K_TEST_MATMUL7B=0 leaves out the 7B matrix
#                        products), then q4k run -v on a tiny model with and
#                        without the graph (same text) and its memory line
#   tests/gpu.sh faults  every gate fault on CUDA (tests/test_cuda_faults.c,
#                        and q4k qa of the test build exiting 3 naming the
#                        layer and op), an injected asynchronous fault under
#                        run (exit 1, the error printed, the answer stopped)
#                        and a -c that cannot fit under Q4K_DEVICE_MEM_LIMIT
#   tests/gpu.sh study   CPU only, on the 16 cores: the gate's false-alarm
#                        study (200 runs on tiny, 0.5b, 7b1 and tinyo; 40
#                        in float mode; 20 runs in 8-bit mode on the full
#                        28-layer 7b), then q4k bench in both arithmetic
#                        modes on that 7b
set -u
cd "$(dirname "$0")/.."
out=${OUT:-build/gpu-logs}; mkdir -p "$out"
stage=${1:-all}
commit=${Q4K_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
{
  echo "commit: $commit"
  echo "date: $(date -u +%FT%TZ)"; uname -a; nproc
  grep -m1 'model name' /proc/cpuinfo; grep -o 'avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
} > "$out/machine.txt"
cat "$out/machine.txt"
if [ "$stage" = cuda ]; then
  make -j16 q4k build/test_cuda > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  ./q4k devices 2>&1 | tee "$out/devices.txt"
  ./q4k --version >> "$out/devices.txt"
  echo "== build/test_cuda"
  t0=$(date +%s)
  build/test_cuda > "$out/test_cuda.log" 2>&1; rc=$?
  grep -v '^  [A-Z0-9_]* *q8\|^  [A-Z0-9_]* *f32' "$out/test_cuda.log" | tail -40
  echo "test_cuda: exit $rc, $(( $(date +%s) - t0 ))s"
  echo "== q4k qa and q4k run --backend cuda on a synthetic tiny model"
  m=/tmp/q4k_gpu_tiny.gguf
  ./q4k synth $m --preset tiny --seed 3 > /dev/null 2>&1 || { echo "synth failed"; exit 1; }
  for kv in f16 f32; do
    ./q4k qa $m --backend cuda --mode both --kv $kv --steps 8 > "$out/qa_cuda_$kv.log" 2>&1; q=$?
    tail -3 "$out/qa_cuda_$kv.log"; echo "qa --kv $kv: exit $q"; [ $q -eq 0 ] || rc=1
  done
  ./q4k run $m "Once upon a time" --backend cuda -n 16 --temp 0 > "$out/run_cuda.txt" 2> "$out/run_cuda.err"; q=$?
  grep -E 'parity|backend|eval time' "$out/run_cuda.err"; echo "run --backend cuda: exit $q, $(wc -c < "$out/run_cuda.txt") bytes of text"
  [ $q -eq 0 ] && grep -q 'parity: cuda passed the gate' "$out/run_cuda.err" && [ -s "$out/run_cuda.txt" ] || rc=1
  rm -f $m
  exit $rc
fi
if [ "$stage" = kernels ]; then
  make -j16 q4k build/test_cuda > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  ./q4k devices > "$out/devices.txt" 2>&1
  echo "== build/test_cuda"
  t0=$(date +%s)
  build/test_cuda > "$out/test_cuda.log" 2>&1; rc=$?
  grep -E '^(ok|FAIL|skip)|CPU kernel calls|decode steps with|in use .* MiB|gate ' "$out/test_cuda.log"
  echo "test_cuda: exit $rc, $(( $(date +%s) - t0 ))s"
  m=/tmp/q4k_gpu_tiny.gguf
  ./q4k synth $m --preset tiny --seed 3 > /dev/null 2>&1 || { echo "synth failed"; exit 1; }
  echo "== q4k run -v --backend cuda, with the decode graph and with Q4K_CUDA_GRAPH=0"
  ./q4k run $m "Once upon a time" --backend cuda -n 48 --temp 0 -v > "$out/run_graph.txt" 2> "$out/run_graph.err"; q=$?
  Q4K_CUDA_GRAPH=0 ./q4k run $m "Once upon a time" --backend cuda -n 48 --temp 0 > "$out/run_nograph.txt" 2> "$out/run_nograph.err"; q2=$?
  grep -E 'device memory|parity|eval time' "$out/run_graph.err"; grep -E 'eval time' "$out/run_nograph.err" | sed 's/^/Q4K_CUDA_GRAPH=0: /'
  echo "run: exit $q and $q2; same text: $(cmp -s "$out/run_graph.txt" "$out/run_nograph.txt" && echo yes || echo NO)"
  { [ $q -eq 0 ] && [ $q2 -eq 0 ] && [ -s "$out/run_graph.txt" ] && cmp -s "$out/run_graph.txt" "$out/run_nograph.txt" &&
    grep -q '^cuda: device memory in use' "$out/run_graph.err"; } || rc=1
  rm -f $m
  exit $rc
fi
if [ "$stage" = faults ]; then
  make -j16 q4k build/q4k-faults build/test_cuda_faults > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  echo "== build/test_cuda_faults"
  t0=$(date +%s)
  build/test_cuda_faults > "$out/test_cuda_faults.log" 2>&1; rc=$?
  grep -E '^(ok|FAIL|skip)|rejected|passed|eval [23]:|bytes' "$out/test_cuda_faults.log"
  echo "test_cuda_faults: exit $rc, $(( $(date +%s) - t0 ))s"
  d=$(mktemp -d)
  ./q4k synth $d/tiny.gguf --preset tiny --seed 3 --fast > /dev/null 2>&1
  ./q4k synth $d/tinyo.gguf --preset tiny --outliers --seed 3 --fast > /dev/null 2>&1
  echo "== Q4K_FAULT=X build/q4k-faults qa --backend cuda: exit 3, the divergence named"
  while IFS='|' read -r fault model step where; do
    Q4K_FAULT=$fault build/q4k-faults qa $d/$model.gguf --backend cuda --steps 3 > $d/qa.log 2>&1; q=$?
    named=no; grep -Eq "first divergence at step $step: $where " $d/qa.log && named=yes
    echo "qa $fault ($model): exit $q, named '$where' at step $step: $named" | tee -a "$out/qa_faults.log"
    grep -E 'first divergence|summary' $d/qa.log >> "$out/qa_faults.log"
    [ $q -eq 3 ] && [ $named = yes ] || rc=1
  done <<'CASES'
gqa|tiny|0|layer 0, attn
bias|tiny|0|layer 0, q
kv_step2|tiny|2|layer 0, attn
q4k_scales|tiny|0|layer 0, q
f16_acc|tinyo|0|layer 0, attn_norm
split|tiny|0|lm_head
perturb:1:down:0.05|tiny|0|layer 1, down
perturb:0:embedding:0.05|tiny|0|embedding
CASES
  build/q4k-faults qa $d/tiny.gguf --backend cuda --steps 3 > $d/qa.log 2>&1; q=$?
  echo "qa without a fault: exit $q"; [ $q -eq 0 ] || rc=1
  echo "== an asynchronous fault at the 6th eval under run (Q4K_CUDA_TEST_FAULT_EVAL=6)"
  Q4K_CUDA_TEST_FAULT_EVAL=6 build/q4k-faults run $d/tiny.gguf "Once upon a time" --backend cuda --gate-steps 0 -n 32 --temp 0 \
    > "$out/run_fault.txt" 2> "$out/run_fault.err"; q=$?
  grep -E '^q4k' "$out/run_fault.err"
  echo "run: exit $q, $(wc -c < "$out/run_fault.txt") bytes of text before the fault"
  [ $q -eq 1 ] && grep -q 'context is lost' "$out/run_fault.err" || rc=1
  echo "== -c 1000000 under Q4K_DEVICE_MEM_LIMIT=268435456"
  Q4K_DEVICE_MEM_LIMIT=268435456 ./q4k run $d/tiny.gguf "Hello" --backend cuda --gate-steps 0 -c 1000000 -n 4 > /dev/null 2> "$out/run_memlimit.err"; q=$?
  grep -E '^q4k' "$out/run_memlimit.err"; echo "run: exit $q"
  [ $q -eq 1 ] && grep -q 'bytes of device memory' "$out/run_memlimit.err" || rc=1
  rm -rf "$d"
  exit $rc
fi
if [ "$stage" = study ]; then
  make -j16 q4k > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  rc=0
  d=$(mktemp -d)
  echo "== gate study: 200 runs, tiny 0.5b 7b1 tinyo, q8"
  tools/gate_study.sh -n 200 -j "$(nproc)" -p "tiny 0.5b 7b1 tinyo" "$d/small" > "$out/gate_study_small.log" 2>&1 || rc=1
  tail -5 "$out/gate_study_small.log"
  echo "== gate study: 40 runs in float mode, tiny 0.5b 7b1"
  tools/gate_study.sh -n 40 -j "$(nproc)" -m f32 -p "tiny 0.5b 7b1" "$d/small" > "$out/gate_study_small_f32.log" 2>&1 || rc=1
  tail -5 "$out/gate_study_small_f32.log"
  echo "== gate study: 28-layer 7b, 20 runs in 8-bit mode, prompts of at most 16 tokens (scalar reference: slow)"
  timeout 360 tools/gate_study.sh -n 20 -j 16 -m q8 -p 7b --max-pos 16 "$d/big" > "$out/gate_study_7b.log" 2>&1 || rc=1
  tail -5 "$out/gate_study_7b.log"
  m7=$(ls "$d"/big/*.gguf 2>/dev/null | head -1)
  if [ -n "$m7" ]; then
    echo "== bench both modes on $m7"
    for t in "$(nproc)" 2; do ./q4k bench "$m7" -p 32 -n 8 -t "$t" --mode both 2>&1 | tee -a "$out/bench_7b.log"; done
  fi
  rm -rf "$d"
  exit $rc
fi
make -j16 q4k build/tool_hf $(ls tests/test_*.c | sed 's|tests/\(.*\)\.c|build/\1|') > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
./q4k --version | tee "$out/version.txt"
rc=0
for t in build/test_*; do
  echo "== $t"
  "$t" > "$out/$(basename $t).log" 2>&1 || rc=1
  grep -E '^(ok|FAIL|skip)' "$out/$(basename $t).log" | grep -v '^ok' ; grep -c '^ok' "$out/$(basename $t).log"
done
echo "== transformers oracle"
PYTHONUNBUFFERED=1 python3 tests/hf_compare.py 2>&1 | tee "$out/hf_compare.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
if [ "${Q4K_GPU_BENCH:-0}" = 1 ]; then
  echo "== CPU decode of a synthetic 7b (Q4_K_M, --fast) on this machine's cores"
  ./q4k synth /tmp/q7b.gguf --preset 7b --fast -t "$(nproc)" 2>&1 | tail -1
  for t in "$(nproc)" 8 2; do
    ./q4k run /tmp/q7b.gguf "What is 2 + 2?" -n 32 --temp 0 -t "$t" 2>&1 >/dev/null | grep -E 'load time|eval time' | sed "s/^/-t $t: /"
  done | tee "$out/cpu_7b.log"
  rm -f /tmp/q7b.gguf
fi
exit $rc
