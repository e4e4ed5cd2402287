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
#                        run (exit 1, the error printed, the answer stopped),
#                        a -c that cannot fit under Q4K_DEVICE_MEM_LIMIT, and
#                        a kernel broken on purpose (Q4K_CUDA_TEST_BREAK):
#                        --backend cuda exits 1 with one line naming
#                        kernels_src/ops.cu:40, auto warns and answers
#   tests/gpu.sh vulkan  the Vulkan backend on the NVIDIA driver (the loader
#                        and glvnd debs unpacked first: see the device
#                        README); ./q4k and build/q4k-faults built on the
#                        CI-like machine beforehand (no glslang there):
#                        q4k devices, qa --backend vulkan on the full
#                        synthetic 7B and an --outliers 7B (32 steps, both
#                        modes), 8-bit qa at --pos 4100, bench decode tok/s,
#                        run --backend vulkan (~5 minutes)
#   tests/gpu.sh vkfail  the Vulkan failure paths on the NVIDIA driver (debs
#                        and binaries as for vulkan): tests/test_vulkan_run.sh
#                        on that device (Q4K_TEST_VK_DEVICE): Q4K_DEVICE_MEM_LIMIT
#                        refusals, a lost device, a shader that does not
#                        compile (Q4K_VK_TEST_BREAK), --backend auto falling
#                        back to the CPU, with its qa, gate-fault and
#                        7B-shaped-layer checks around them (~1 minute)
#   tests/gpu.sh study   CPU only, on the 16 cores: the gate's false-alarm
#                        study (200 runs on tiny, 0.5b, 7b1 and tinyo; 40
#                        in float mode; 20 runs in 8-bit mode on the full
#                        28-layer 7b), then q4k bench in both arithmetic
#                        modes on that 7b
#   tests/gpu.sh model   q4k qa --backend cuda (kernel table and gate) on
#                        the full synthetic 7B (28 layers, Qwen vocabulary,
#                        --mode both --steps 32), on the same 7B written by
#                        the gguf package (tests/gguf_writer_model.py; its
#                        wheel carried in .whl when the machine lacks it), on
#                        a 4-layer 7B with --outliers, at --pos 4100 in 8-bit
#                        mode, then q4k run --backend cuda -n 64 on the 7B
#   tests/gpu.sh bench   q4k bench on that 7B: the CPU (all cores), then
#                        --backend cuda (after its gate) with the device
#                        memory in use sampled by nvidia-smi
#                        (model and bench share their models through
#                        $Q4K_GPU_MODELS, default /tmp/q4k_gpu_models)
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
  [ $q -eq 1 ] && grep -q 'needs [0-9]* bytes .* on the cuda device.*at most [0-9]* tokens fit' "$out/run_memlimit.err" || rc=1
  echo "== a kernel that does not compile under run (Q4K_CUDA_TEST_BREAK=ops.cu:40, an empty kernel cache)"
  Q4K_CACHE_DIR=$d/cache Q4K_CUDA_TEST_BREAK=ops.cu:40 build/q4k-faults run $d/tiny.gguf "Hello" --backend cuda -n 4 \
    > "$out/run_break.txt" 2> "$out/run_break.err"; q=$?
  grep -E '^q4k' "$out/run_break.err"; echo "run --backend cuda: exit $q, $(grep -c '^q4k' "$out/run_break.err") q4k lines"
  [ $q -eq 1 ] && [ "$(grep -c '^q4k' "$out/run_break.err")" -eq 1 ] && grep -q 'kernels_src/ops.cu:40: error' "$out/run_break.err" &&
    [ ! -s "$out/run_break.txt" ] || rc=1
  Q4K_CACHE_DIR=$d/cache Q4K_CUDA_TEST_BREAK=ops.cu:40 build/q4k-faults run $d/tiny.gguf "Hello" --backend auto -n 4 --temp 0 \
    > "$out/run_break_auto.txt" 2> "$out/run_break_auto.err"; q=$?
  grep -E '^q4k' "$out/run_break_auto.err"; echo "run --backend auto: exit $q, $(wc -c < "$out/run_break_auto.txt") bytes of text"
  [ $q -eq 0 ] && grep -q 'warning: --backend auto: cuda could not start.*kernels_src/ops.cu:40' "$out/run_break_auto.err" &&
    [ -s "$out/run_break_auto.txt" ] || rc=1
  rm -rf "$d"
  exit $rc
fi
# the Vulkan stages run binaries built where glslang is (the device has none):
# check they came, and log the devices they see
vk_binaries() {
  for b in ./q4k build/q4k-faults; do [ -x $b ] || { echo "missing $b: build it where glslang is (make q4k build/q4k-faults)"; exit 1; }; done
  ./q4k devices 2>&1 | tee "$out/devices.txt"
  ./q4k --version >> "$out/devices.txt"
}
if [ "$stage" = vulkan ]; then
  vk_binaries
  dev=${Q4K_VK_DEVICE:-NVIDIA}
  rc=0
  d=$(mktemp -d)
  ./q4k synth $d/7b.gguf --preset 7b --fast --seed 5 -t 16 > /dev/null 2>&1 || { echo "synth 7b failed"; exit 1; }
  # the --outliers model has 4 layers (as the cuda model stage's): the float-mode
  # gate's CPU reference of 28 layers twice would not fit one device call
  ./q4k synth $d/7bo.gguf --preset 7b --layers 4 --fast --outliers --seed 6 -t 16 > /dev/null 2>&1 || { echo "synth 7b --outliers failed"; exit 1; }
  ./q4k synth $d/l1.gguf --preset 7b --layers 1 --fast --seed 7 -t 16 > /dev/null 2>&1
  echo "== bench decode, 28-layer 7b (Q4_K_M), device $dev"
  ./q4k bench $d/7b.gguf --backend vulkan --device "$dev" -p 64 -n 32 --mode ${Q4K_VK_BENCH_MODE:-both} --bw 4800 2>&1 | tee "$out/bench_vulkan_7b.log"
  for m in 7b 7bo; do
    echo "== qa --backend vulkan on $m, 32 steps, both modes"
    t0=$(date +%s)
    timeout 240 stdbuf -oL ./q4k qa $d/$m.gguf --backend vulkan --device "$dev" --mode both --steps 32 > "$out/qa_vulkan_$m.log" 2>&1; q=$?
    grep -E '^model: |^summary|FAIL' "$out/qa_vulkan_$m.log" | head -12; echo "qa $m: exit $q, $(( $(date +%s) - t0 ))s"; [ $q -eq 0 ] || rc=1
  done
  echo "== qa --backend vulkan, 8-bit, positions past 4096 (1-layer 7B shapes, full vocabulary)"
  t0=$(date +%s)
  timeout 100 ./q4k qa $d/l1.gguf --backend vulkan --device "$dev" --mode q8 --pos 4100 --steps 3 > "$out/qa_vulkan_pos4100.log" 2>&1; q=$?
  grep -E '^model: |^summary|FAIL' "$out/qa_vulkan_pos4100.log"; echo "qa --pos 4100: exit $q, $(( $(date +%s) - t0 ))s"; [ $q -eq 0 ] || rc=1
  echo "== run --backend vulkan on the 7b"
  ./q4k run $d/7b.gguf "Once upon a time" --backend vulkan --device "$dev" -n 32 --temp 0 --ignore-eos > "$out/run_vulkan.txt" 2> "$out/run_vulkan.err"; q=$?
  grep -E 'parity|backend|eval time' "$out/run_vulkan.err"; echo "run --backend vulkan: exit $q, $(wc -c < "$out/run_vulkan.txt") bytes of text"
  [ $q -eq 0 ] && grep -q 'parity: vulkan passed the gate' "$out/run_vulkan.err" && [ -s "$out/run_vulkan.txt" ] || rc=1
  rm -rf "$d"
  exit $rc
fi
if [ "$stage" = vkfail ]; then
  vk_binaries
  t0=$(date +%s)
  Q4K_TEST_VK_DEVICE=${Q4K_VK_DEVICE:-NVIDIA} bash tests/test_vulkan_run.sh > "$out/test_vulkan_run.log" 2>&1
  grep -v '^ok' "$out/test_vulkan_run.log"
  n_ok=$(grep -c '^ok' "$out/test_vulkan_run.log"); n_fail=$(grep -c '^FAIL' "$out/test_vulkan_run.log")
  echo "test_vulkan_run.sh on ${Q4K_VK_DEVICE:-NVIDIA}: $n_ok ok, $n_fail FAIL, $(( $(date +%s) - t0 ))s"
  [ "$n_fail" -eq 0 ] && [ "$n_ok" -gt 0 ]
  exit $?
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
# model, bench: the 7B models both use, written once per machine
models=${Q4K_GPU_MODELS:-/tmp/q4k_gpu_models}
m7=$models/synth7b.gguf
mgw=$models/gguf_writer7b.gguf
step() { # NAME LIMIT_S COMMAND...: log in $out/NAME.log, one summary line
  local name=$1 lim=$2 t0 q
  shift 2
  t0=$(date +%s)
  timeout "$lim" "$@" > "$out/$name.log" 2>&1; q=$?
  echo "$name: exit $q, $(( $(date +%s) - t0 ))s" | tee -a "$out/summary.txt"
  return $q
}
qa_summary() { grep -E '^summary:|^backend cuda: skipped' "$out/$1.log" | tail -2 | sed "s/^/  $1: /" | tee -a "$out/summary.txt"; }
make_7b() {
  mkdir -p "$models"
  [ -s "$m7" ] || step synth7b 120 ./q4k synth "$m7" --preset 7b --vocab tests/data/qwen.tiktoken --fast -t "$(nproc)" || return 1
}
if [ "$stage" = model ]; then
  t_stage=$(date +%s)
  rc=0
  make -j16 q4k > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  ./q4k devices > "$out/devices.txt" 2>&1
  make_7b || exit 1
  # the outside writer: its package where the machine lacks it (a wheel in .whl)
  if ! python3 -c 'import gguf' 2>/dev/null && ls .whl/gguf-*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/q4k_site .whl/*.whl > /dev/null &&
      export PYTHONPATH=/tmp/q4k_site${PYTHONPATH:+:$PYTHONPATH}
  fi
  [ -s "$mgw" ] || step gguf_writer7b 180 python3 tests/gguf_writer_model.py "$mgw" || rc=1
  [ -s "$mgw" ] && tail -1 "$out/gguf_writer7b.log" | tee -a "$out/summary.txt"
  # prompt + 32 steps in both modes on the 28-layer 7B (the scalar CPU
  # reference is the slow side: about a minute on 16 cores)
  step qa_7b 300 ./q4k qa "$m7" --backend cuda --mode both --steps 32 || rc=1
  qa_summary qa_7b
  if [ -s "$mgw" ]; then
    step qa_gguf_writer7b 240 ./q4k qa "$mgw" --backend cuda --mode both --steps 8 || rc=1
    qa_summary qa_gguf_writer7b
  fi
  # generation with its timings (--ignore-eos: all 64 tokens)
  step run_7b 120 ./q4k run "$m7" "Write a short story about a lighthouse keeper." --backend cuda -n 64 --temp 0 --ignore-eos || rc=1
  grep -E 'parity|prompt eval time|eval time' "$out/run_7b.log" | tee -a "$out/summary.txt"
  # outliers: 7B shapes and vocabulary, 4 layers (the embedding is quantized
  # row by row, not drawn from the --fast pool)
  mo=$models/outliers7b4.gguf
  [ -s "$mo" ] || step synth_outliers 120 ./q4k synth "$mo" --preset 7b --layers 4 --outliers --fast -t "$(nproc)" || rc=1
  step qa_outliers 240 ./q4k qa "$mo" --backend cuda --mode both --steps 32 || rc=1
  qa_summary qa_outliers
  # past 4096: RoPE rows and a KV cache beyond 4096 positions, 8-bit mode;
  # tiny first (seconds), then one 7B-shaped layer while time remains
  mt=$models/tiny.gguf
  [ -s "$mt" ] || ./q4k synth "$mt" --preset tiny --seed 5 > /dev/null 2>&1
  step qa_pos4100_tiny 120 ./q4k qa "$mt" --backend cuda --mode q8 --pos 4100 -c 4200 --steps 8 || rc=1
  qa_summary qa_pos4100_tiny
  if [ $(( $(date +%s) - t_stage )) -lt "${Q4K_GPU_POS7B_BEFORE:-170}" ]; then
    m1=$models/synth7b1.gguf
    [ -s "$m1" ] || ./q4k synth "$m1" --preset 7b --layers 1 --fast -t "$(nproc)" > /dev/null 2>&1
    step qa_pos4100_7b1 100 ./q4k qa "$m1" --backend cuda --mode q8 --pos 4100 -c 4200 --steps 4 || rc=1
    qa_summary qa_pos4100_7b1
  else
    echo "qa_pos4100_7b1: skipped ($(( $(date +%s) - t_stage ))s into the stage)" | tee -a "$out/summary.txt"
  fi
  echo "model stage: exit $rc, $(( $(date +%s) - t_stage ))s" | tee -a "$out/summary.txt"
  exit $rc
fi
if [ "$stage" = bench ]; then
  t_stage=$(date +%s)
  rc=0
  make -j16 q4k > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
  make_7b || exit 1
  step bench_cpu 120 ./q4k bench "$m7" -p 32 -n 8 -t "$(nproc)" --mode both || rc=1
  grep -E 'activations|prompt:|decode' "$out/bench_cpu.log" | tee -a "$out/summary.txt"
  # device memory in use, sampled while the CUDA bench runs (the machine is ours alone)
  smi=
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits > "$out/gpu_mem_idle.txt" 2>&1
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$out/gpu_mem.log" 2>&1 &
    smi=$!
  fi
  # H200: 4.3 TB/s device-to-device copy measured on this kind (KINDS.md)
  step bench_cuda 180 ./q4k bench "$m7" -p 512 -n 128 --backend cuda --bw 4300 --mode both || rc=1
  grep -E 'parity|backend|activations|prompt:|decode' "$out/bench_cuda.log" | tee -a "$out/summary.txt"
  if [ -n "$smi" ]; then
    kill "$smi" 2> /dev/null; wait "$smi" 2> /dev/null
    echo "device memory: $(cut -d, -f1 "$out/gpu_mem_idle.txt" | tr -d ' ') MiB before, $(sort -n "$out/gpu_mem.log" | tail -1) MiB" \
      "at most during bench --backend cuda ($(wc -l < "$out/gpu_mem.log") samples every 100 ms)" | tee -a "$out/summary.txt"
  fi
  echo "bench stage: exit $rc, $(( $(date +%s) - t_stage ))s" | tee -a "$out/summary.txt"
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
