/* Minimal test harness shared by the C tests.

   Each test is a function run by T_RUN(fn); it prints one line the runner
   (tests/run.sh) counts: "ok NAME", "FAIL NAME" or "skip NAME: why".
   A test program's exit code is the number of failed tests (capped). */
#ifndef Q4K_TEST_T_H
#define Q4K_TEST_T_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#if defined(__GNUC__)
#define T__UNUSED __attribute__((unused))
#else
#define T__UNUSED
#endif

static int t__failed_now, t__skipped_now, t__n_fail;
static char t__skip_why[256];

#define T_CHECK(c, ...)                                                        \
    do {                                                                       \
        if (!(c)) {                                                            \
            if (t__failed_now < 10) {                                          \
                printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__, #c); \
                printf(__VA_ARGS__);                                           \
                printf("\n");                                                  \
            }                                                                  \
            t__failed_now++;                                                   \
        }                                                                      \
    } while (0)

/* skip the current test (a missing tool); the runner fails it when CI=true */
#define T_SKIP(why)                                                            \
    do {                                                                       \
        t__skipped_now = 1;                                                    \
        snprintf(t__skip_why, sizeof t__skip_why, "%s", why);                  \
        return;                                                                \
    } while (0)

/* skip because this machine lacks a CPU feature (AVX-512, say): unlike
   T_SKIP, CI accepts it, since no install step can add the feature */
#define T_NA(why)                                                              \
    do {                                                                       \
        t__skipped_now = 1;                                                    \
        snprintf(t__skip_why, sizeof t__skip_why, "[hardware] %s", why);       \
        return;                                                                \
    } while (0)

#define T_RUN(fn)                                                              \
    do {                                                                       \
        t__failed_now = 0;                                                     \
        t__skipped_now = 0;                                                    \
        fn();                                                                  \
        if (t__failed_now) {                                                   \
            printf("FAIL %s (%d checks failed)\n", #fn, t__failed_now);        \
            t__n_fail++;                                                       \
        } else if (t__skipped_now) {                                           \
            printf("skip %s: %s\n", #fn, t__skip_why);                         \
        } else {                                                               \
            printf("ok %s\n", #fn);                                            \
        }                                                                      \
        fflush(stdout);                                                        \
    } while (0)

#define T_EXIT() return t__n_fail > 100 ? 100 : t__n_fail

/* deterministic random numbers for fixtures (xorshift64*) */
typedef struct t_rng { unsigned long long s; } t_rng;
T__UNUSED static unsigned long long t_rng_next(t_rng *r) {
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}
/* uniform in [0, 1) */
T__UNUSED static double t_rng_unif(t_rng *r) { return (double)(t_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
/* standard normal (Box-Muller) */
T__UNUSED static double t_rng_gauss(t_rng *r) {
    double u = t_rng_unif(r), v = t_rng_unif(r);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
/* quick mode (sanitizer builds): smaller shapes */
T__UNUSED static int t_quick(void) { const char *q = getenv("Q4K_TEST_QUICK"); return q && *q && *q != '0'; }
/* a whole file, malloc'd (one spare byte); NULL and *n = 0 when unreadable */
T__UNUSED static unsigned char *t_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *p = NULL;
    long sz;
    *n = 0;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        p = (unsigned char *)malloc((size_t)sz + 1);
        if (p && fread(p, 1, (size_t)sz, f) == (size_t)sz) *n = (size_t)sz;
        else { free(p); p = NULL; }
    }
    fclose(f);
    return p;
}
#endif
