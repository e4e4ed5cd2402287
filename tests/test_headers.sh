#!/usr/bin/env bash
# The three headers compile with their implementations as C99 and C++11 under
# -Wall -Wextra -Wpedantic -Werror, with gcc and clang; and a user who copies
# only the headers into an empty folder can build against them.
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/all.c" <<'C'
#define Q4K_IMPLEMENTATION
#include "q4k_cuda.h"
#include "q4k_vulkan.h"
#include "q4k.h"
int main(void) {
    q4k_error err;
    q4k_cpu_path p;
    if (q4k_cpu_resolve_path(Q4K_CPU_AUTO, &p, &err) != Q4K_OK) return 1;
    return q4k_row_size(Q4K_TYPE_Q4_K, 256) == 144 ? 0 : 1;
}
C
# a second translation unit without the implementation must link against the first
cat > "$tmp/user.c" <<'C'
#include "q4k.h"
#include "q4k_cuda.h"
#include "q4k_vulkan.h"
const char *user_version(void) { return q4k_version_string(); }
/* what a backend's implementation in its own translation unit reaches */
q4k_result user_backend_helpers(q4k_session *s, q4k_error *err) {
    q4k__log(NULL, NULL, Q4K_LOG_INFO, "%s", "unused");
    if (!s) return q4k__fail(err, Q4K_ERR_GPU, "no session %d", 1);
    q4k__trace_op(s, 0, Q4K_OP_Q, NULL);
    return q4k__session_alloc_trace(s, err);
}
C

check() { # name, compiler, std flag, language
    local name=$1 cc=$2 std=$3 lang=$4
    if ! command -v "$cc" >/dev/null; then echo "skip $name: compiler $cc missing"; return; fi
    if $cc $std -x $lang -Wall -Wextra -Wpedantic -Werror -I. -c "$tmp/all.c" -o "$tmp/all.o" 2>"$tmp/err" &&
       $cc $std -x $lang -Wall -Wextra -Wpedantic -Werror -I. -c "$tmp/user.c" -o "$tmp/user.o" 2>>"$tmp/err" &&
       $cc "$tmp/all.o" "$tmp/user.o" -o "$tmp/a.out" -lm -lpthread -ldl 2>>"$tmp/err" && "$tmp/a.out"; then
        echo "ok $name"
    else
        echo "FAIL $name"; head -n 30 "$tmp/err"
    fi
}
check headers_gcc_c99 gcc -std=c99 c
check headers_clang_c99 clang -std=c99 c
check headers_gxx_cxx11 g++ -std=c++11 c++
check headers_clangxx_cxx11 clang++ -std=c++11 c++
check headers_gcc_c99_faults gcc "-std=c99 -DQ4K_FAULTS" c
check headers_clangxx_cxx11_faults clang++ "-std=c++11 -DQ4K_FAULTS" c++

# the split the headers' comments document: q4k.h implemented in one file,
# Q4K_CUDA_IMPLEMENTATION and Q4K_VULKAN_IMPLEMENTATION each in its own, all
# linked together (each backend reaches only q4k.h's exported internals)
printf '#define Q4K_IMPLEMENTATION\n#include "q4k.h"\n' > "$tmp/impl_core.c"
printf '#define Q4K_CUDA_IMPLEMENTATION\n#include "q4k_cuda.h"\n' > "$tmp/impl_cuda.c"
printf '#define Q4K_VULKAN_IMPLEMENTATION\n#include "q4k_vulkan.h"\n' > "$tmp/impl_vk.c"
cat > "$tmp/split_main.c" <<'C'
#include "q4k_cuda.h"
#include "q4k_vulkan.h"
int main(void) {
    q4k_error e;
    q4k_cuda_probe(&e);
    q4k_vk_probe(&e);
    return q4k_row_size(Q4K_TYPE_Q4_K, 256) == 144 ? 0 : 1;
}
C
for cc in "gcc -std=c99 -x c" "g++ -std=c++11 -x c++"; do
    name="headers_split_tus_$(echo "$cc" | cut -d' ' -f1 | tr '+' 'x')"
    ok=1
    for f in impl_core impl_cuda impl_vk split_main; do
        $cc -Wall -Wextra -Wpedantic -Werror -I. -c "$tmp/$f.c" -o "$tmp/$f.o" 2>>"$tmp/err_split" || ok=0
    done
    if [ $ok = 1 ] && gcc "$tmp"/impl_core.o "$tmp"/impl_cuda.o "$tmp"/impl_vk.o "$tmp"/split_main.o -o "$tmp/split" \
           -lm -lpthread -ldl -lstdc++ 2>>"$tmp/err_split" && "$tmp/split"; then echo "ok $name"
    else echo "FAIL $name"; head -n 20 "$tmp/err_split"; fi
done

# the q4k command itself builds clean four ways
for cc in "gcc -std=c99" "clang -std=c99" "g++ -std=c++11 -x c++" "clang++ -std=c++11 -x c++"; do
    name="demo_$(echo "$cc" | cut -d' ' -f1 | tr '+' 'x')"
    if $cc -O1 -Wall -Wextra -Wpedantic -Werror demo.c -o "$tmp/q4k_demo" -lm -lpthread -ldl 2>"$tmp/err" &&
       "$tmp/q4k_demo" --version >/dev/null; then
        echo "ok $name"
    else
        echo "FAIL $name"; head -n 20 "$tmp/err"
    fi
done

# Q4K_STATIC and the allocator overrides
cat > "$tmp/static.c" <<'C'
#include <stdlib.h>
static size_t n_alloc;
static void *my_malloc(size_t n) { n_alloc++; return malloc(n); }
#define Q4K_MALLOC(n) my_malloc(n)
#define Q4K_REALLOC(p, n) realloc(p, n)
#define Q4K_FREE(p) free(p)
#define Q4K_STATIC
#define Q4K_IMPLEMENTATION
#include "q4k.h"
int main(void) { return q4k_fp16_to_fp32(0x3c00) == 1.0f ? 0 : 1; }
C
if gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -I. "$tmp/static.c" -o "$tmp/s" -lm -lpthread -ldl 2>"$tmp/err" && "$tmp/s"; then
    echo "ok headers_static_and_allocator"
else
    echo "FAIL headers_static_and_allocator"; head -n 30 "$tmp/err"
fi
# defining only some allocator macros is an error the user sees at compile time
printf '#define Q4K_MALLOC(n) malloc(n)\n#define Q4K_IMPLEMENTATION\n#include "q4k.h"\nint main(void){return 0;}\n' > "$tmp/bad.c"
if gcc -std=c99 -I. "$tmp/bad.c" -o "$tmp/b" 2>"$tmp/err"; then
    echo "FAIL headers_partial_allocator: compiled"
elif grep -q 'Q4K_MALLOC, Q4K_REALLOC and Q4K_FREE' "$tmp/err"; then
    echo "ok headers_partial_allocator"
else
    echo "FAIL headers_partial_allocator: other error"; head -n 5 "$tmp/err"
fi

# vendoring: only the three headers, copied into an empty folder
mkdir -p "$tmp/vendor/third_party/q4k" "$tmp/vendor/src"
cp q4k.h q4k_cuda.h q4k_vulkan.h "$tmp/vendor/third_party/q4k/"
cat > "$tmp/vendor/src/main.c" <<'C'
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_cuda.h"
#include "q4k_vulkan.h"
#include <stdio.h>
int main(void) {
    q4k_error err;
    float x = q4k_fp16_to_fp32(q4k_fp32_to_fp16(0.5f));
    printf("%s %g %d\n", q4k_version_string(), x, q4k_cuda_probe(&err) == Q4K_OK || err.msg[0] != 0);
    return 0;
}
C
if (cd "$tmp/vendor" && cc -O2 -Wall -Werror -Ithird_party/q4k src/main.c -o app -lm -lpthread -ldl 2>"$tmp/err" && ./app > out.txt) &&
   grep -q "^$(sed -n 's/#define Q4K_VERSION_MAJOR //p' q4k.h)\.[0-9]*\.[0-9]* 0.5 1$" "$tmp/vendor/out.txt"; then
    echo "ok headers_vendored_build"
else
    echo "FAIL headers_vendored_build"; cat "$tmp/err" "$tmp/vendor/out.txt" 2>/dev/null | head -n 20
fi

# the README's embedding example (its first ```c block) builds as it stands
# with gcc, clang and g++, and prints byte for byte what `q4k run --raw --temp 0`
# prints (less run's closing newline) on the same model and prompt
awk '/^```c$/{f=1;next}/^```$/{if(f){exit}}f' README.md > "$tmp/readme.c"
if [ ! -x ./q4k ]; then
    echo "FAIL readme_example: ./q4k not built"
elif ! ./q4k synth "$tmp/tiny.gguf" --preset tiny --layers 1 2>/dev/null ||
     ! ./q4k run "$tmp/tiny.gguf" "Hello" --raw --temp 0 -n 16 --quiet > "$tmp/run.out" 2>"$tmp/err"; then
    echo "FAIL readme_example: q4k synth/run failed"; head -n 5 "$tmp/err"
else
    head -c -1 "$tmp/run.out" > "$tmp/run.txt"
    for cc in "gcc -std=c99" "clang -std=c99" "g++ -std=c++11 -x c++"; do
        name="readme_example_$(echo "$cc" | cut -d' ' -f1 | tr '+' 'x')"
        if ! command -v "${cc%% *}" >/dev/null; then echo "skip $name: compiler ${cc%% *} missing"; continue; fi
        if $cc -O1 -Wall -Wextra -Wpedantic -Werror -I. "$tmp/readme.c" -o "$tmp/readme" -lm -lpthread -ldl 2>"$tmp/err" &&
           "$tmp/readme" "$tmp/tiny.gguf" "Hello" > "$tmp/readme.out" 2>>"$tmp/err" &&
           [ -s "$tmp/run.txt" ] && cmp -s "$tmp/readme.out" "$tmp/run.txt"; then
            echo "ok $name"
        else
            echo "FAIL $name: output differs from q4k run or build failed"; head -n 20 "$tmp/err"
            od -c "$tmp/readme.out" | head -n 4; od -c "$tmp/run.txt" | head -n 4
        fi
    done
fi
