#!/usr/bin/env bash
# q4k devices and --version, the Vulkan part: exit 0 with or without a loader
# or device, reasons named; a build without glslang says it has no compiler.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok $1"; }
fail() { echo "FAIL $1: $2"; }

if [ ! -x ./q4k ]; then fail vk_cli "./q4k not built"; exit 1; fi

./q4k devices > "$tmp/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q '^vulkan: [0-9]* device' "$tmp/out"; then ok vk_devices_lists; else fail vk_devices_lists "rc $rc: $(head -3 "$tmp/out")"; fi
# lavapipe (CI) is listed as a CPU device that auto never takes
if grep -q '(cpu)' "$tmp/out"; then
    if grep -q 'usable when named (--device) or with --backend vulkan, never by auto' "$tmp/out" &&
       grep -q 'maxStorageBufferRange [0-9]' "$tmp/out"; then ok vk_devices_cpu_device; else fail vk_devices_cpu_device "$(cat "$tmp/out")"; fi
fi

Q4K_LIBVULKAN=/nonexistent/libvulkan.so.1 ./q4k devices > "$tmp/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q 'no Vulkan loader (/nonexistent/libvulkan.so.1' "$tmp/out"; then ok vk_devices_no_loader
else fail vk_devices_no_loader "rc $rc: $(cat "$tmp/out")"; fi

./q4k devices extra > "$tmp/out" 2>&1; rc=$?
if [ $rc -eq 2 ]; then ok vk_devices_usage; else fail vk_devices_usage "rc $rc"; fi

./q4k --version > "$tmp/out" 2>&1
if grep -q '^vulkan: ' "$tmp/out"; then ok vk_version_line; else fail vk_version_line "$(cat "$tmp/out")"; fi

# the same CLI built without -DQ4K_VULKAN_GLSLANG: everything builds, the backend says why it cannot start
if cc -O0 -w demo.c -o "$tmp/q4k_nocc" -lm -lpthread -ldl 2>"$tmp/err"; then
    "$tmp/q4k_nocc" --version > "$tmp/out" 2>&1
    if grep -q '^vulkan: \(built without a shader compiler\|no Vulkan loader\|no Vulkan device\|only\)' "$tmp/out"; then
        ok vk_built_without_glslang
    else
        fail vk_built_without_glslang "$(grep vulkan "$tmp/out")"
    fi
else
    fail vk_built_without_glslang "$(head -5 "$tmp/err")"
fi

# without the Vulkan headers (Q4K_VULKAN_NO_HEADERS, which a missing <vulkan/vulkan.h> sets by itself):
# the CLI still builds as C99 and C++11, and the backend says why it cannot start
for cc in "cc -std=c99" "c++ -std=c++11 -x c++"; do
    name=vk_built_without_headers_$(echo "$cc" | cut -d' ' -f1 | tr + x)
    if $cc -O0 -Wall -Wextra -Wpedantic -Werror -DQ4K_VULKAN_NO_HEADERS demo.c -o "$tmp/q4k_nohdr" -lm -lpthread -ldl 2>"$tmp/err" &&
       "$tmp/q4k_nohdr" --version 2>&1 | grep -q '^vulkan: built without the Vulkan headers' &&
       "$tmp/q4k_nohdr" devices > "$tmp/out" 2>&1 && grep -q 'built without the Vulkan headers' "$tmp/out"; then ok "$name"
    else fail "$name" "$(head -5 "$tmp/err")"; fi
done
