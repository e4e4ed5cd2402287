/* The CUDA backend against the CPU. Without a CUDA driver or device the GPU
   tests skip as [hardware]; the loader's refusals are tested everywhere.

   Matrix products: every weight type, both arithmetic modes, at Qwen2.5-7B's
   shapes (rows x cols 3584x3584, 512x3584, 18944x3584, 3584x18944,
   152064x3584) and odd small shapes, N = 1, 7, 64, 512 activation rows.
   Each GPU output must be within 1e-5 x sum_i |w_i x_i| of the CPU's in the
   same mode (the CPU's own SIMD paths stay under 2.3e-7 of it; an fp16
   accumulator would not pass). Outputs are poisoned with NaN before every
   run, so an element no kernel wrote fails. The worst ratio is printed.

   The CPU's result of a column does not depend on how many columns a call
   has, so the CPU computes N = 512 once and the GPU's N = 1, 7, 64 runs are
   compared with its first columns. Q4K_TEST_BIG=0 leaves the 7B shapes out. */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_cuda.h"
#include "t.h"

static q4k_backend *gpu, *cpu;
static char gpu_why[200];

/* skip as [hardware] when this machine has no driver or no device; a
   backend that fails to start on a machine with a GPU is a failure */
static int need_gpu(void) {
    q4k_cuda_info info;
    q4k_error err;
    if (gpu) return 1;
    if (gpu_why[0]) return 0;
    q4k_cuda_list_devices(NULL, &info);
    if (!info.driver_loaded || info.n_devices == 0) {
        snprintf(gpu_why, sizeof gpu_why, "no CUDA GPU here: %.150s", info.driver_why);
        return 0;
    }
    if (q4k_cuda_backend_create(NULL, &gpu, &err) != Q4K_OK) {
        snprintf(gpu_why, sizeof gpu_why, "backend create failed: %.150s", err.msg);
        T_CHECK(0, "%s", gpu_why);
        return 0;
    }
    return 1;
}
#define NEED_GPU()                                                   \
    do {                                                             \
        if (!need_gpu()) {                                           \
            if (t__failed_now) return;                               \
            T_NA(gpu_why);                                           \
        }                                                            \
    } while (0)

/* a driver that is missing, or a library that is not the driver, is
   refused with Q4K_ERR_BACKEND_UNAVAILABLE naming it */
static void test_unavailable(void) {
    q4k_cuda_desc d;
    q4k_backend *b = NULL;
    q4k_error err;
    memset(&d, 0, sizeof d);
    d.libcuda_path = "/nonexistent/libcuda.so.1";
    T_CHECK(q4k_cuda_backend_create(&d, &b, &err) == Q4K_ERR_BACKEND_UNAVAILABLE && !b, "created without a driver");
    T_CHECK(strstr(err.msg, "/nonexistent/libcuda.so.1") != NULL, "message: %s", err.msg);
    d.libcuda_path = "libm.so.6";
    T_CHECK(q4k_cuda_backend_create(&d, &b, &err) == Q4K_ERR_BACKEND_UNAVAILABLE && !b, "libm taken for the driver");
    T_CHECK(strstr(err.msg, "cuInit") != NULL, "missing symbol not named: %s", err.msg);
    d.libcuda_path = NULL;
    d.device = 999;
    if (q4k_cuda_backend_create(&d, &b, &err) == Q4K_OK) {
        T_CHECK(0, "device 999 exists?");
        q4k_backend_destroy(b);
    } else {
        T_CHECK(err.code == Q4K_ERR_BACKEND_UNAVAILABLE, "code %d: %s", (int)err.code, err.msg);
    }
}

static unsigned long long rng_s = 88172645463325252ull;
static unsigned long long rnd(void) {
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return rng_s;
}
static float unif(void) { return (float)((double)(rnd() >> 11) * (2.0 / 9007199254740992.0) - 1.0); }

/* rows x cols random weights of type: uniform values for float types,
   random quants with scales of about 0.01 for block types */
static unsigned char *random_weights(q4k_type type, int64_t rows, int64_t cols, size_t *bytes) {
    q4k_type_info ti = q4k_type_traits((int)type);
    size_t n = q4k_row_size(type, cols) * (size_t)rows, i;
    unsigned char *w = (unsigned char *)malloc(n);
    *bytes = n;
    if (!w) return NULL;
    if (type == Q4K_TYPE_F32 || type == Q4K_TYPE_F16 || type == Q4K_TYPE_BF16) {
        for (i = 0; i < (size_t)(rows * cols); i++) {
            float f = unif();
            uint16_t h = type == Q4K_TYPE_F16 ? q4k_fp32_to_fp16(f) : q4k_fp32_to_bf16(f);
            if (type == Q4K_TYPE_F32) memcpy(w + 4 * i, &f, 4);
            else memcpy(w + 2 * i, &h, 2);
        }
        return w;
    }
    for (i = 0; i + 8 <= n; i += 8) {
        unsigned long long v = rnd();
        memcpy(w + i, &v, 8);
    }
    for (; i < n; i++) w[i] = (unsigned char)rnd();
    for (i = 0; i < n; i += ti.type_size) { /* finite scales: d (and dmin) */
        uint16_t d = q4k_fp32_to_fp16(0.002f + 0.01f * (unif() + 1.0f));
        uint16_t m = q4k_fp32_to_fp16(0.001f + 0.005f * (unif() + 1.0f));
        if (type == Q4K_TYPE_Q6_K) memcpy(w + i + 208, &d, 2);
        else memcpy(w + i, &d, 2);
        if (type == Q4K_TYPE_Q4_K || type == Q4K_TYPE_Q5_K) memcpy(w + i + 2, &m, 2);
    }
    return w;
}

typedef struct worst {
    double ratio;
    char where[160];
} worst;

static worst overall;
static t_rng xr = {987654321};

/* one type and shape: CPU once at max N in each mode, GPU at every N */
static void check_shape(q4k_type type, int64_t rows, int64_t cols, const int64_t *ns, int n_ns, int verbose) {
    int64_t nmax = ns[n_ns - 1], i, k;
    size_t wbytes;
    unsigned char *w = random_weights(type, rows, cols, &wbytes);
    float *x = (float *)malloc(sizeof(float) * (size_t)(cols * nmax));
    float *xa = (float *)malloc(sizeof(float) * (size_t)(cols * nmax));
    float *wa = (float *)malloc(sizeof(float) * (size_t)(rows * cols));
    float *sabs = (float *)malloc(sizeof(float) * (size_t)(rows * nmax));
    float *yc = (float *)malloc(sizeof(float) * (size_t)(rows * nmax));
    float *yg = (float *)malloc(sizeof(float) * (size_t)(rows * nmax));
    q4k_error err;
    int mode;
    if (!w || !x || !xa || !wa || !sabs || !yc || !yg) {
        T_CHECK(0, "out of host memory for %lldx%lld", (long long)rows, (long long)cols);
        goto done;
    }
    for (i = 0; i < cols * nmax; i++) {
        x[i] = (float)t_rng_gauss(&xr);
        xa[i] = fabsf(x[i]);
    }
    /* sum_i |w_i x_i| per output: |dequantized W| times |X| in f32 */
    for (i = 0; i < rows; i++) q4k_dequantize_row(type, w + (size_t)i * q4k_row_size(type, cols), wa + i * cols, cols);
    for (i = 0; i < rows * cols; i++) wa[i] = fabsf(wa[i]);
    T_CHECK(cpu->matmul(cpu, Q4K_ACT_F32, Q4K_TYPE_F32, wa, rows, cols, xa, nmax, sabs, &err) == Q4K_OK, "%s", err.msg);
    for (mode = 0; mode < 2; mode++) {
        q4k_act_mode act = mode ? Q4K_ACT_F32 : Q4K_ACT_Q8;
        double shape_worst = 0;
        int64_t bad = 0;
        T_CHECK(cpu->matmul(cpu, act, type, w, rows, cols, x, nmax, yc, &err) == Q4K_OK, "cpu: %s", err.msg);
        for (k = 0; k < n_ns; k++) {
            int64_t n = ns[k];
            for (i = 0; i < rows * n; i++) yg[i] = NAN;
            if (gpu->matmul(gpu, act, type, w, rows, cols, x, n, yg, &err) != Q4K_OK) {
                T_CHECK(0, "gpu %s %lldx%lld n=%lld: %s", q4k_type_name((int)type), (long long)rows, (long long)cols,
                        (long long)n, err.msg);
                continue;
            }
            for (i = 0; i < rows * n; i++) {
                double tol = 1e-5 * (double)sabs[i], diff = fabs((double)yg[i] - (double)yc[i]);
                double ratio = sabs[i] > 0 ? diff / (double)sabs[i] : diff;
                if (!(diff <= tol)) {
                    if (bad++ < 3)
                        printf("  %s %s %lldx%lld n=%lld: y[%lld][%lld] gpu %.9g cpu %.9g (sum|wx| %.6g)\n",
                               q4k_type_name((int)type), mode ? "f32" : "q8", (long long)rows, (long long)cols, (long long)n,
                               (long long)(i / rows), (long long)(i % rows), (double)yg[i], (double)yc[i], (double)sabs[i]);
                }
                if (!(ratio <= shape_worst)) shape_worst = ratio == ratio ? ratio : 1e30;
            }
        }
        T_CHECK(bad == 0, "%s %s %lldx%lld: %lld outputs off", q4k_type_name((int)type), mode ? "f32" : "q8", (long long)rows,
                (long long)cols, (long long)bad);
        if (verbose)
            printf("  %-4s %-3s %6lld x %-5lld N<=%-3lld worst |gpu-cpu|/sum|wx| = %.2e\n", q4k_type_name((int)type),
                   mode ? "f32" : "q8", (long long)rows, (long long)cols, (long long)nmax, shape_worst);
        if (shape_worst > overall.ratio) {
            overall.ratio = shape_worst;
            snprintf(overall.where, sizeof overall.where, "%s %s %lldx%lld", q4k_type_name((int)type), mode ? "f32" : "q8",
                     (long long)rows, (long long)cols);
        }
    }
done:
    free(w);
    free(x);
    free(xa);
    free(wa);
    free(sabs);
    free(yc);
    free(yg);
}

static const q4k_type all_types[] = {Q4K_TYPE_F32, Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0,
                                     Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* odd shapes: a row count that leaves warps of the last thread block idle,
   one block per row, a row of many blocks, short F32 rows */
static void test_matmul_small(void) {
    static const int64_t ns[] = {1, 3, 7, 9, 64};
    size_t t;
    NEED_GPU();
    for (t = 0; t < N_TYPES; t++) {
        q4k_type_info ti = q4k_type_traits((int)all_types[t]);
        int64_t bs = ti.block_size == 1 ? 32 : ti.block_size;
        check_shape(all_types[t], 1, bs, ns, 5, 0);
        check_shape(all_types[t], 5, 3 * bs, ns, 5, 0);
        check_shape(all_types[t], 130, 33 * bs, ns, 5, 0);
        if (ti.block_size == 1) check_shape(all_types[t], 37, 101, ns, 5, 0); /* not a multiple of 32 */
    }
    printf("  worst so far: %.2e (%s)\n", overall.ratio, overall.where);
}

static void test_matmul_7b(void) {
    static const int64_t shapes[][2] = {{3584, 3584}, {512, 3584}, {18944, 3584}, {3584, 18944}, {152064, 3584}};
    static const int64_t ns[] = {1, 7, 64, 512};
    const char *big = getenv("Q4K_TEST_BIG");
    size_t t, s;
    NEED_GPU();
    if (big && !strcmp(big, "0")) T_SKIP("Q4K_TEST_BIG=0");
    for (t = 0; t < N_TYPES; t++)
        for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++) check_shape(all_types[t], shapes[s][0], shapes[s][1], ns, 4, 1);
    printf("  worst |gpu-cpu|/sum|wx| over every type, shape, mode and N: %.2e (%s); bound 1e-5\n", overall.ratio, overall.where);
}

/* bad arguments are refused with a message, not computed */
static void test_matmul_refusals(void) {
    q4k_error err;
    float x[64], y[4];
    unsigned char w[4 * 144];
    NEED_GPU();
    memset(w, 0, sizeof w);
    memset(x, 0, sizeof x);
    T_CHECK(gpu->matmul(gpu, Q4K_ACT_Q8, Q4K_TYPE_Q4_K, w, 1, 100, x, 1, y, &err) == Q4K_ERR_INVALID_ARG, "cols 100 taken");
    T_CHECK(gpu->matmul(gpu, Q4K_ACT_Q8, Q4K_TYPE_Q2_K, w, 1, 256, x, 1, y, &err) == Q4K_ERR_UNSUPPORTED_TYPE &&
                strstr(err.msg, "Q2_K"), "Q2_K taken: %s", err.msg);
}

int main(void) {
    q4k_cpu_backend_desc cd;
    q4k_error err;
    memset(&cd, 0, sizeof cd);
    if (q4k_cpu_backend_create(&cd, &cpu, &err) != Q4K_OK) {
        printf("FAIL cpu_backend %s\n", err.msg);
        return 1;
    }
    T_RUN(test_unavailable);
    T_RUN(test_matmul_refusals);
    T_RUN(test_matmul_small);
    T_RUN(test_matmul_7b);
    if (gpu) q4k_backend_destroy(gpu);
    q4k_backend_destroy(cpu);
    T_EXIT();
}
