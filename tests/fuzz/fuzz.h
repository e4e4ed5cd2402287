/* Shared by the libFuzzer targets in tests/fuzz/ and by tests/test_fuzz.c,
   which replays the committed crash files through the same entry functions
   without libFuzzer. A broken promise of q4k's interface (an error with no
   message, an id out of range, text that does not round-trip) aborts, so that
   libFuzzer keeps the input as a crash; the sanitizers catch the rest. */
#ifndef Q4K_FUZZ_H
#define Q4K_FUZZ_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <stddef.h>
#include "q4k.h"

#define FUZZ_CHECK(target, cond, ...)                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("FAIL fuzz_%s: ", target);                                  \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
            fflush(stdout);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* q4k's rule for every error: a message, on one line */
#define FUZZ_ONE_LINE(err) ((err)->msg[0] != 0 && strchr((err)->msg, '\n') == NULL)
#endif
