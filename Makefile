# q4k - build the `q4k` command and run the tests.
#   make            build ./q4k
#   make test       build and run every test (prints "N passed, N failed, N skipped");
#                   make -j4 test-bins && make test builds in parallel
#   make check-embed / make embed   kernels_src/ <-> header strings
#   make tsan       the thread rules under ThreadSanitizer (tests/test_tsan.sh)

CC      ?= cc
CFLAGS  ?= -O2
WARN     = -Wall -Wextra -Werror
LDLIBS   = -lm -lpthread -ldl
HEADERS  = q4k.h q4k_cuda.h q4k_vulkan.h $(wildcard kernels_src/*)

# glslang compiles the Vulkan kernels at run time; Debian 12 ships it only as
# static libraries (glslang-dev). Linked when its headers exist; without them
# the Vulkan backend builds and says it has no shader compiler.
GLSLANG_LIBS = -lglslang -lSPIRV -lMachineIndependent -lOSDependent -lGenericCodeGen -lOGLCompiler \
               -lglslang-default-resource-limits -lSPIRV-Tools-opt -lSPIRV-Tools -lstdc++
ifneq ($(wildcard /usr/include/glslang/Include/glslang_c_interface.h),)
VK_CFLAGS = -DQ4K_VULKAN_GLSLANG
VK_LIBS   = $(GLSLANG_LIBS)
endif

TEST_SRCS  = $(wildcard tests/test_*.c)
TEST_BINS  = $(patsubst tests/%.c,build/%,$(TEST_SRCS))
ASAN_BINS  = $(patsubst tests/%.c,build/asan/%,$(TEST_SRCS))
TOOL_SRCS  = $(wildcard tests/tool_*.c)
TOOL_BINS  = $(patsubst tests/%.c,build/%,$(TOOL_SRCS))
SANITIZE   = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TSAN       = -fsanitize=thread -fno-omit-frame-pointer

.PHONY: all test test-bins clean embed check-embed tsan

all: q4k

q4k: demo.c $(HEADERS)
	$(CC) $(CFLAGS) $(WARN) $(VK_CFLAGS) -o $@ demo.c $(LDLIBS) $(VK_LIBS)

# the test build: faults from Q4K_FAULT=NAME[,NAME...] and the CUDA backend's
# injected failures (Q4K_CUDA_TEST_FAULT_EVAL, Q4K_CUDA_TEST_BREAK); never in ./q4k
build/q4k-faults: demo.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) $(VK_CFLAGS) -DQ4K_FAULTS -DQ4K_CUDA_TEST_FAULT -o $@ demo.c $(LDLIBS) $(VK_LIBS)

# The implementation is compiled once per flavour and linked into every test
# program and tool; a source that defines Q4K_IMPLEMENTATION itself (it reaches
# static q4k__ internals) is built alone instead.
IMPL      = build/q4k_impl.o
ASAN_IMPL = build/asan/q4k_impl.o
own_impl  = $(shell grep -l '^\#define Q4K_IMPLEMENTATION' $(1))
link_impl = $(if $(call own_impl,$(1)),,$(2))

$(IMPL): tests/q4k_impl.c $(HEADERS)
	@mkdir -p build
	$(CC) -O2 -g $(WARN) $(VK_CFLAGS) -I. -c -o $@ $<

$(ASAN_IMPL): tests/q4k_impl.c $(HEADERS)
	@mkdir -p build/asan
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(SANITIZE) -I. -c -o $@ $<

build/test_%: tests/test_%.c tests/t.h tests/t_cuda.h $(HEADERS) $(IMPL)
	$(CC) -O2 -g $(WARN) $(VK_CFLAGS) -Itests -I. -o $@ $< $(call link_impl,$<,$(IMPL)) $(LDLIBS) $(VK_LIBS)

build/asan/test_%: tests/test_%.c tests/t.h tests/t_cuda.h $(HEADERS) $(ASAN_IMPL)
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(SANITIZE) -Itests -I. -o $@ $< $(call link_impl,$<,$(ASAN_IMPL)) $(LDLIBS) $(VK_LIBS)

# ThreadSanitizer: the thread rules (tests/tsan_threads.c), run by tests/test_tsan.sh
build/tsan/q4k_impl.o: tests/q4k_impl.c $(HEADERS)
	@mkdir -p build/tsan
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(TSAN) -I. -c -o $@ $<

build/tsan/tsan_threads: tests/tsan_threads.c tests/t.h $(HEADERS) build/tsan/q4k_impl.o
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(TSAN) -Itests -I. -o $@ $< build/tsan/q4k_impl.o $(LDLIBS) $(VK_LIBS)

tsan: q4k build/tsan/tsan_threads
	bash tests/test_tsan.sh

build/tool_%: tests/tool_%.c $(HEADERS) $(IMPL)
	$(CC) -O2 -g $(WARN) $(VK_CFLAGS) -Itests -I. -o $@ $< $(call link_impl,$<,$(IMPL)) $(LDLIBS) $(VK_LIBS)

test-bins: q4k build/q4k-faults build/embed $(TEST_BINS) $(ASAN_BINS) $(TOOL_BINS) build/tsan/tsan_threads

test: test-bins check-embed
	bash tests/run.sh

# kernels_src/ is the source of truth; the headers carry copies (tools/embed.c)
EMBED_HEADERS = q4k_cuda.h q4k_vulkan.h

build/embed: tools/embed.c
	@mkdir -p build
	$(CC) -O2 $(WARN) -o $@ $<

embed: build/embed
	build/embed $(EMBED_HEADERS)

check-embed: build/embed
	build/embed --check $(EMBED_HEADERS)

clean:
	rm -rf build q4k
