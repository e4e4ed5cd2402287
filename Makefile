# q4k - build the `q4k` command and run the tests.
#   make            build ./q4k
#   make test       build and run every test (prints "N passed, N failed, N skipped")
#   make check-embed / make embed   kernels_src/ <-> header strings

CC      ?= cc
CFLAGS  ?= -O2
WARN     = -Wall -Wextra -Werror
LDLIBS   = -lm -lpthread -ldl
HEADERS  = q4k.h q4k_cuda.h q4k_vulkan.h

TEST_SRCS  = $(wildcard tests/test_*.c)
TEST_BINS  = $(patsubst tests/%.c,build/%,$(TEST_SRCS))
ASAN_BINS  = $(patsubst tests/%.c,build/asan/%,$(TEST_SRCS))
TOOL_SRCS  = $(wildcard tests/tool_*.c)
TOOL_BINS  = $(patsubst tests/%.c,build/%,$(TOOL_SRCS))
SANITIZE   = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: all test test-bins clean embed check-embed

all: q4k

q4k: demo.c $(HEADERS)
	$(CC) $(CFLAGS) $(WARN) -o $@ demo.c $(LDLIBS)

# the test build: faults from Q4K_FAULT=NAME[,NAME...] (never in ./q4k)
build/q4k-faults: demo.c $(HEADERS)
	@mkdir -p build
	$(CC) $(CFLAGS) $(WARN) -DQ4K_FAULTS -o $@ demo.c $(LDLIBS)

build/test_%: tests/test_%.c tests/t.h $(HEADERS)
	@mkdir -p build
	$(CC) -O2 -g $(WARN) -Itests -I. -o $@ $< $(LDLIBS)

build/asan/test_%: tests/test_%.c tests/t.h $(HEADERS)
	@mkdir -p build/asan
	$(CC) -O1 -g $(WARN) $(SANITIZE) -Itests -I. -o $@ $< $(LDLIBS)

build/tool_%: tests/tool_%.c $(HEADERS)
	@mkdir -p build
	$(CC) -O2 -g $(WARN) -Itests -I. -o $@ $< $(LDLIBS)

test-bins: q4k build/q4k-faults $(TEST_BINS) $(ASAN_BINS) $(TOOL_BINS)

test: test-bins
	bash tests/run.sh

clean:
	rm -rf build q4k
