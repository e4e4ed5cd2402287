#!/usr/bin/env bash
# make embed / check-embed: the headers carry kernels_src/ byte for byte, a
# change in kernels_src/ is detected, and the embedded lines join back into
# the file (compiled as C99 and C++11).
set -u
cd "$(dirname "$0")/.."
fail() { echo "FAIL $1: $2"; }
make -s build/embed >/dev/null || { fail embed_build "cannot build tools/embed.c"; exit 1; }
if build/embed --check q4k_cuda.h q4k_vulkan.h; then echo "ok check_embed_clean"; else fail check_embed_clean "headers differ from kernels_src/"; fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r kernels_src q4k.h q4k_cuda.h q4k_vulkan.h "$tmp/"
echo "/* one more line */" >> "$tmp/kernels_src/q4k_common.h"
bin=$PWD/build/embed
if (cd "$tmp" && "$bin" --check q4k_cuda.h 2>/dev/null); then fail check_embed_detects "an edited kernels_src/q4k_common.h went unnoticed"
else echo "ok check_embed_detects"; fi
if (cd "$tmp" && "$bin" q4k_cuda.h 2>/dev/null && "$bin" --check q4k_cuda.h) && grep -q '"/\* one more line \*/\\n",' "$tmp/q4k_cuda.h"
then echo "ok embed_rewrites"; else fail embed_rewrites "make embed did not carry the edit into q4k_cuda.h"; fi
# only the text between the markers changes
if diff <(grep -v '^    "' q4k_cuda.h) <(grep -v '^    "' "$tmp/q4k_cuda.h") >/dev/null; then echo "ok embed_only_between_markers"
else fail embed_only_between_markers "text outside the markers changed"; fi
printf '/* Q4K_EMBED_BEGIN(kernels_src/q4k_common.h) */\nx\n' > "$tmp/bad.h"
if (cd "$tmp" && "$bin" bad.h 2>"$tmp/err"); then fail embed_unclosed "accepted a marker without Q4K_EMBED_END"
elif grep -q 'no Q4K_EMBED_END' "$tmp/err"; then echo "ok embed_unclosed"; else fail embed_unclosed "$(cat "$tmp/err")"; fi

mkdir -p "$tmp/j"; cat > "$tmp/j/join.c" <<'C'
#define Q4K_IMPLEMENTATION
#include "q4k_cuda.h"
int main(void) {
    char *s = q4k_cuda_kernel_source("q4k_common.h");
    if (!s || q4k_cuda_kernel_source("no_such_file.cu")) return 1;
    fputs(s, stdout);
    q4k_free(s);
    return 0;
}
C
for cc in "gcc -std=c99 -x c" "g++ -std=c++11 -x c++"; do
    name=embed_join_$(echo "$cc" | cut -d' ' -f1)
    if $cc -Wall -Wextra -Wpedantic -Werror -I. -o "$tmp/j/join" "$tmp/j/join.c" -lm -lpthread -ldl 2>"$tmp/err" &&
       "$tmp/j/join" | cmp -s - kernels_src/q4k_common.h; then echo "ok $name"
    else fail "$name" "joined source differs from kernels_src/q4k_common.h $(head -3 "$tmp/err")"; fi
done
