/* q4k_matmul throughput on random weights.
     build/tool_cpu_bench [type rows cols n threads path act seconds]
     defaults: Q4_K 3584 18944 1 1 auto q8 2
   Prints the weight bytes read per second (each call reads the matrix once)
   and the multiply-adds per second. */
#define _POSIX_C_SOURCE 200809L
#include "q4k.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }

int main(int argc, char **argv) {
    const char *tname = argc > 1 ? argv[1] : "Q4_K";
    int64_t rows = argc > 2 ? atoll(argv[2]) : 3584, cols = argc > 3 ? atoll(argv[3]) : 18944;
    int64_t n = argc > 4 ? atoll(argv[4]) : 1;
    int threads = argc > 5 ? atoi(argv[5]) : 1;
    const char *pname = argc > 6 ? argv[6] : "auto";
    const char *aname = argc > 7 ? argv[7] : "q8";
    double secs = argc > 8 ? atof(argv[8]) : 2.0;
    q4k_type type = Q4K_TYPE_COUNT;
    q4k_cpu cpu;
    size_t nbytes, i;
    uint8_t *w;
    float *x, *y;
    uint64_t s = 88172645463325252ULL;
    int t, calls = 0;
    double t0, t1, c0, c1;
    q4k_result r;

    for (t = 0; t < Q4K_TYPE_COUNT; t++)
        if (q4k_type_traits(t).implemented && !strcmp(q4k_type_name(t), tname)) type = (q4k_type)t;
    if (type == Q4K_TYPE_COUNT || !q4k_row_size(type, cols)) {
        fprintf(stderr, "bad type or cols\n");
        return 2;
    }
    cpu.path = Q4K_CPU_AUTO;
    for (t = Q4K_CPU_AUTO; t <= Q4K_CPU_NEON; t++)
        if (!strcmp(pname, q4k_cpu_path_name((q4k_cpu_path)t))) cpu.path = (q4k_cpu_path)t;
    cpu.act = !strcmp(aname, "f32") ? Q4K_ACT_F32 : Q4K_ACT_Q8;
    cpu.pool = q4k_pool_create(threads);

    nbytes = q4k_row_size(type, cols) * (size_t)rows;
    w = (uint8_t *)malloc(nbytes);
    x = (float *)malloc(sizeof(float) * (size_t)(n * cols));
    y = (float *)malloc(sizeof(float) * (size_t)(n * rows));
    for (i = 0; i < nbytes; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        w[i] = (uint8_t)s;
    }
    /* tame scales: fp16 0x2000-ish in every block's scale fields */
    {
        size_t bs = q4k_type_traits((int)type).type_size;
        int64_t b, nb = (int64_t)(nbytes / bs);
        if (type == Q4K_TYPE_F32)
            for (b = 0; b < (int64_t)(nbytes / 4); b++) ((float *)w)[b] = (float)(b % 7) - 3.0f;
        else if (type == Q4K_TYPE_F16 || type == Q4K_TYPE_BF16)
            for (b = 0; b < (int64_t)(nbytes / 2); b++) ((uint16_t *)w)[b] = 0x2000;
        else
            for (b = 0; b < nb; b++) {
                uint8_t *p = w + (size_t)b * bs + (type == Q4K_TYPE_Q6_K ? 208 : 0);
                p[0] = 0, p[1] = 0x20;
                if (type == Q4K_TYPE_Q4_K || type == Q4K_TYPE_Q5_K) p[2] = 0, p[3] = 0x20;
            }
    }
    for (i = 0; i < (size_t)(n * cols); i++) x[i] = (float)((int)(i % 13) - 6) * 0.25f;

    r = q4k_matmul(&cpu, type, w, rows, cols, x, n, y); /* warm up */
    if (r != Q4K_OK) {
        fprintf(stderr, "q4k_matmul: %s\n", q4k_result_string(r));
        return 1;
    }
    t0 = now();
    c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    do {
        q4k_matmul(&cpu, type, w, rows, cols, x, n, y);
        calls++;
        t1 = now();
    } while (t1 - t0 < secs);
    c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    {
        q4k_cpu_path p;
        double per = (t1 - t0) / calls;
        q4k_cpu_resolve_path(cpu.path, &p, NULL);
        /* CPU time counts every thread: on a shared machine it shows what a
           call costs when the wall clock is stretched by other work */
        double cpu_per = (c1 - c0) / calls;
        printf("%s %lldx%lld n=%lld threads=%d path=%s act=%s: %.3f ms/call, %.2f GB/s weights, %.2f GMAC/s; "
               "CPU %.3f ms/call (%.2f GB/s per busy thread) (y0=%g)\n",
               q4k_type_name(type), (long long)rows, (long long)cols, (long long)n, q4k_pool_threads(cpu.pool),
               q4k_cpu_path_name(p), aname, per * 1e3, (double)nbytes / per * 1e-9,
               (double)rows * (double)cols * (double)n / per * 1e-9, cpu_per * 1e3, (double)nbytes / cpu_per * 1e-9,
               y[0]);
    }
    q4k_pool_destroy(cpu.pool);
    free(w), free(x), free(y);
    return 0;
}
