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
#   tests/gpu.sh vulkan  the Vulkan backend on the NVIDIA driver (the loader
#                        and glvnd debs unpacked first: see the device
#                        README); ./q4k and build/q4k-faults built on the
#                        CI-like machine beforehand (no glslang there):
#                        q4k devices, qa --backend vulkan on the full
#                        synthetic 7B and an --outliers 7B (32 steps, both
#                        modes), 8-bit qa at --pos 4100, bench decode tok/s,
#                        run --backend vulkan (~5 minutes)
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
if [ "$stage" = vulkan ]; then
  for b in ./q4k build/q4k-faults; do [ -x $b ] || { echo "missing $b: build it where glslang is (make q4k build/q4k-faults)"; exit 1; }; done
  ./q4k devices 2>&1 | tee "$out/devices.txt"
  ./q4k --version >> "$out/devices.txt"
  dev=${Q4K_VK_DEVICE:-NVIDIA}
  rc=0
  d=$(mktemp -d)
  ./q4k synth $d/7b.gguf --preset 7b --fast --seed 5 -t 16 > /dev/null 2>&1 || { echo "synth 7b failed"; exit 1; }
  ./q4k synth $d/7bo.gguf --preset 7b --fast --outliers --seed 6 -t 16 > /dev/null 2>&1 || { echo "synth 7b --outliers failed"; exit 1; }
  ./q4k synth $d/l1.gguf --preset 7b --layers 1 --fast --seed 7 -t 16 > /dev/null 2>&1
  echo "== bench decode, 28-layer 7b (Q4_K_M), device $dev"
  ./q4k bench $d/7b.gguf --backend vulkan --device "$dev" -p 64 -n 32 --mode both --bw 4800 2>&1 | tee "$out/bench_vulkan_7b.log"
  for m in 7b 7bo; do
    echo "== qa --backend vulkan on $m, 32 steps, both modes"
    t0=$(date +%s)
    timeout 120 ./q4k qa $d/$m.gguf --backend vulkan --device "$dev" --mode both --steps 32 > "$out/qa_vulkan_$m.log" 2>&1; q=$?
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
