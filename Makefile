# q4k - build the `q4k` command and run the tests.
#   make            build ./q4k
#   make test       build and run every test (prints "N passed, N failed, N skipped");
#                   make -j4 test-bins && make test builds in parallel
#   make check-embed / make embed   kernels_src/ <-> header strings
#   make tsan       the thread rules under ThreadSanitizer (tests/test_tsan.sh)
#   make fuzz       each libFuzzer target for FUZZ_SECONDS (60) under ASan+UBSan
#                   (clang, libclang-rt-14-dev); make -j2 fuzz runs two at once
#   make q4k-asan   ./q4k-asan: the command under ASan+UBSan (Q4K=./q4k-asan for the CLI tests)

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

.PHONY: all test test-bins clean embed check-embed tsan fuzz fuzz-seeds

all: q4k

q4k: demo.c $(HEADERS)
	$(CC) $(CFLAGS) $(WARN) $(VK_CFLAGS) -o $@ demo.c $(LDLIBS) $(VK_LIBS)

# the whole command under ASan+UBSan, for the CLI tests (Q4K=./q4k-asan) and valgrind's twin
q4k-asan: demo.c $(HEADERS)
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(SANITIZE) -o $@ demo.c $(LDLIBS) $(VK_LIBS)

# the test build: faults from Q4K_FAULT=NAME[,NAME...] and the CUDA backend's
# injected failures (Q4K_CUDA_TEST_FAULT_EVAL, Q4K_CUDA_TEST_BREAK) and Vulkan's lost device
# (Q4K_VK_TEST_FAULT_EVAL); never in ./q4k
build/q4k-faults: demo.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) $(VK_CFLAGS) -DQ4K_FAULTS -DQ4K_CUDA_TEST_FAULT -DQ4K_VK_TEST_FAULT -o $@ demo.c $(LDLIBS) $(VK_LIBS)

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

build/test_%: tests/test_%.c tests/t.h tests/t_cuda.h tests/t_vk.h tests/t_share.h $(HEADERS) $(IMPL)
	$(CC) -O2 -g $(WARN) $(VK_CFLAGS) -Itests -I. -o $@ $< $(call link_impl,$<,$(IMPL)) $(LDLIBS) $(VK_LIBS)

build/asan/test_%: tests/test_%.c tests/t.h tests/t_cuda.h tests/t_vk.h tests/t_share.h $(HEADERS) $(ASAN_IMPL)
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(SANITIZE) -Itests -I. -o $@ $< $(call link_impl,$<,$(ASAN_IMPL)) $(LDLIBS) $(VK_LIBS)

# ThreadSanitizer: the thread rules (tests/tsan_threads.c), run by tests/test_tsan.sh
build/tsan/q4k_impl.o: tests/q4k_impl.c $(HEADERS)
	@mkdir -p build/tsan
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(TSAN) -I. -c -o $@ $<

build/tsan/tsan_threads: tests/tsan_threads.c tests/t.h tests/t_share.h tests/t_vk.h $(HEADERS) build/tsan/q4k_impl.o
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(TSAN) -Itests -I. -o $@ $< build/tsan/q4k_impl.o $(LDLIBS) $(VK_LIBS)

# the same with the backends' lock compiled out: a shared backend must be reported
build/tsan/q4k_impl_nolock.o: tests/q4k_impl.c $(HEADERS)
	@mkdir -p build/tsan
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(TSAN) -DQ4K_TEST_NO_BACKEND_LOCK -I. -c -o $@ $<

build/tsan/tsan_threads_nolock: tests/tsan_threads.c tests/t.h tests/t_share.h tests/t_vk.h $(HEADERS) build/tsan/q4k_impl_nolock.o
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(TSAN) -Itests -I. -o $@ $< build/tsan/q4k_impl_nolock.o $(LDLIBS) $(VK_LIBS)

tsan: q4k build/tsan/tsan_threads build/tsan/tsan_threads_nolock
	bash tests/test_tsan.sh

build/tool_%: tests/tool_%.c $(HEADERS) $(IMPL)
	$(CC) -O2 -g $(WARN) $(VK_CFLAGS) -Itests -I. -o $@ $< $(call link_impl,$<,$(IMPL)) $(LDLIBS) $(VK_LIBS)

test-bins: q4k q4k-asan build/q4k-faults build/fuzz_seeds build/embed $(TEST_BINS) $(ASAN_BINS) $(TOOL_BINS) build/tsan/tsan_threads build/tsan/tsan_threads_nolock

test: test-bins check-embed
	bash tests/run.sh

# ---- coverage-guided fuzzing (tests/fuzz/): libFuzzer needs clang's runtime
# (Debian: libclang-rt-14-dev). Each target is built at -O1 with ASan and UBSan
# over q4k.h alone. Corpora: build/fuzz/seeds/T (made by build/fuzz_seeds from
# tests/data), build/fuzz/corpus/T (what libFuzzer adds) and tests/data/fuzz/T
# (minimised crashes, also replayed by tests/test_fuzz.c in make test).
# A crash, a hang past -timeout or memory past -rss_limit_mb fails the run;
# its input lands in build/fuzz/artifacts/T/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
# more libFuzzer flags, e.g. FUZZ_FLAGS=-len_control=0 (long inputs at once)
FUZZ_FLAGS   ?=
FUZZ_TARGETS  = gguf model tokenizer chat
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_MAXLEN_gguf      = 65536
FUZZ_MAXLEN_model     = 65536
FUZZ_MAXLEN_tokenizer = 4096
FUZZ_MAXLEN_chat      = 16384
FUZZ_DICT_gguf        = -dict=tests/fuzz/gguf.dict
FUZZ_DICT_model       = -dict=tests/fuzz/gguf.dict
FUZZ_DICT_chat        = -dict=tests/fuzz/chat.dict

build/fuzz/q4k.o: tests/fuzz/fuzz_impl.c q4k.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) -O1 -g $(WARN) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -I. -c -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h build/fuzz/q4k.o
	$(FUZZ_CC) -O1 -g $(WARN) -fsanitize=fuzzer $(FUZZ_SAN) -I. -o $@ $< build/fuzz/q4k.o $(LDLIBS)

build/fuzz_seeds: tests/fuzz/fuzz_seeds.c $(HEADERS) $(IMPL)
	$(CC) -O2 -g $(WARN) $(VK_CFLAGS) -I. -o $@ $< $(IMPL) $(LDLIBS) $(VK_LIBS)

build/fuzz/seeds/.done: build/fuzz_seeds $(wildcard tests/data/templates/*.jinja) tests/data/vocab-tests/qwen2.inp
	rm -rf build/fuzz/seeds && mkdir -p build/fuzz/seeds
	build/fuzz_seeds build/fuzz/seeds tests/data
	touch $@

fuzz-seeds: build/fuzz/seeds/.done

fuzz: $(addprefix fuzz-,$(FUZZ_TARGETS))

fuzz-%: build/fuzz/fuzz_% build/fuzz/seeds/.done
	@mkdir -p build/fuzz/corpus/$* build/fuzz/artifacts/$*
	@echo "fuzz $*: $(FUZZ_SECONDS) s (log: build/fuzz/$*.log)"
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  build/fuzz/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	  -max_len=$(FUZZ_MAXLEN_$*) $(FUZZ_DICT_$*) -print_final_stats=1 $(FUZZ_FLAGS) \
	  -artifact_prefix=build/fuzz/artifacts/$*/ build/fuzz/corpus/$* build/fuzz/seeds/$* \
	  $(wildcard tests/data/fuzz/$*) >build/fuzz/$*.log 2>&1 \
	  || { tail -n 80 build/fuzz/$*.log; echo "fuzz $*: FAILED (input in build/fuzz/artifacts/$*/)"; exit 1; }
	@echo "fuzz $*: $$(grep -aE '^#[0-9]+[[:space:]]+DONE' build/fuzz/$*.log | tail -n 1)"
	@grep -aE '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' build/fuzz/$*.log | sed 's/^/  /'

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
	rm -rf build q4k q4k-asan
