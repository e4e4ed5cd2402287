# q4k - build the `q4k` command and run the tests.
#   make            build ./q4k
#   make test       build and run every test (prints "N passed, N failed, N skipped")
#   make check-embed / make embed   kernels_src/ <-> header strings

CC      ?= cc
CFLAGS  ?= -O2
WARN     = -Wall -Wextra -Werror
LDLIBS   = -lm -lpthread -ldl
HEADERS  = q4k.h q4k_cuda.h q4k_vulkan.h

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

.PHONY: all test test-bins clean embed check-embed

all: q4k

q4k: demo.c $(HEADERS)
	$(CC) $(CFLAGS) $(WARN) $(VK_CFLAGS) -o $@ demo.c $(LDLIBS) $(VK_LIBS)

build/test_%: tests/test_%.c tests/t.h $(HEADERS)
	@mkdir -p build
	$(CC) -O2 -g $(WARN) $(VK_CFLAGS) -Itests -I. -o $@ $< $(LDLIBS) $(VK_LIBS)

build/asan/test_%: tests/test_%.c tests/t.h $(HEADERS)
	@mkdir -p build/asan
	$(CC) -O1 -g $(WARN) $(VK_CFLAGS) $(SANITIZE) -Itests -I. -o $@ $< $(LDLIBS) $(VK_LIBS)

build/tool_%: tests/tool_%.c $(HEADERS)
	@mkdir -p build
	$(CC) -O2 -g $(WARN) -Itests -I. -o $@ $< $(LDLIBS)

test-bins: q4k build/embed $(TEST_BINS) $(ASAN_BINS) $(TOOL_BINS)

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
