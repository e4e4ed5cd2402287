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
   compared with its first columns. Q4K_TEST_BIG=0 leaves the 7B shapes out,
   Q4K_TEST_MATMUL7B=0 the 7B matrix products alone (about 150 s of CPU
   reference on 16 cores).

   Sessions: synthetic models (tiny; 7B shapes with one layer and the full
   vocabulary) evaluated on CUDA and on the CPU in the same mode, and held
   to the parity gate (q4k_gate_run, the CPU as reference). */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_cuda.h"
#include "t.h"
#include <pthread.h>

#include "t_cuda.h"
#include "t_share.h"

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
    const char *big = getenv("Q4K_TEST_BIG"), *mm = getenv("Q4K_TEST_MATMUL7B");
    size_t t, s;
    NEED_GPU();
    if (big && !strcmp(big, "0")) T_SKIP("Q4K_TEST_BIG=0");
    if (mm && !strcmp(mm, "0")) T_SKIP("Q4K_TEST_MATMUL7B=0 (a run of its own: docs/logs/cuda-*)");
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

/* ---- the other kernels, against the CPU's functions --------------------- */

static q4k__cuda_backend *cbk(void) { return (q4k__cuda_backend *)gpu; }

/* a device buffer holding host data (or NaN when host is NULL) */
static q4k__CUdeviceptr dev(q4k__cuda_buf *b, const void *host, size_t bytes) {
    q4k_error err;
    if (q4k__cuda_alloc(cbk(), b, bytes, &err)) {
        T_CHECK(0, "%s", err.msg);
        return 0;
    }
    if (host) q4k__cuda_put(cbk(), b->p, host, bytes, &err);
    else cbk()->lib.cuMemsetD32Async(b->p, 0x7fc00000u, (bytes + 3) / 4, cbk()->stream);
    return b->p;
}

static int64_t count_ne_bits(const void *a, const void *b, size_t n) {
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    size_t i;
    int64_t k = 0;
    for (i = 0; i < n; i++) k += x[i] != y[i];
    return k;
}

/* the activation quantizer: the CPU's bytes exactly, NaN and ties included */
static void run_op_quantize(void) {
    int64_t nb = 20000, b, i;
    float *x = (float *)malloc(sizeof(float) * 32 * (size_t)nb);
    q4k_block_q8a *want = (q4k_block_q8a *)malloc(sizeof *want * (size_t)nb), *got = (q4k_block_q8a *)malloc(sizeof *got * (size_t)nb);
    q4k__cuda_buf bx = {0, 0}, bq = {0, 0};
    q4k_error err;
    for (b = 0; b < nb; b++) {
        double scale = pow(10.0, (double)(b % 13) - 8.0) * (b % 29 == 3 ? 1e-30 : 1.0); /* subnormal scales too */
        for (i = 0; i < 32; i++) x[b * 32 + i] = (float)(t_rng_gauss(&xr) * scale);
        if (b % 7 == 1)
            for (i = 0; i < 32; i++) x[b * 32 + i] = i == 0 ? 127.0f : (float)((int)(i % 11) - 5) + 0.5f;
        if (b % 11 == 2) x[b * 32 + 7] = NAN;
        if (b % 17 == 5)
            for (i = 0; i < 32; i++) x[b * 32 + i] = 0.0f;
    }
    q4k_quantize_act_q8(x, want, nb * 32);
    dev(&bx, x, sizeof(float) * 32 * (size_t)nb);
    dev(&bq, NULL, sizeof *got * (size_t)nb);
    T_CHECK(q4k__cuda_quantize(cbk(), bx.p, bq.p, nb, &err) == Q4K_OK && q4k__cuda_get(cbk(), got, bq.p, sizeof *got * (size_t)nb, &err) == Q4K_OK,
            "%s", err.msg);
    T_CHECK(count_ne_bits(got, want, sizeof *got * (size_t)nb) == 0, "quantized blocks differ from the CPU's");
    q4k__cuda_free(cbk(), &bx);
    q4k__cuda_free(cbk(), &bq);
    free(x);
    free(want);
    free(got);
}
static void test_op_quantize(void) {
    NEED_GPU();
    run_op_quantize();
}

/* embedding rows of every type: the CPU's decoded floats exactly */
static void run_op_get_rows(void) {
    size_t t;
    q4k_error err;
    for (t = 0; t < N_TYPES; t++) {
        q4k_type type = all_types[t];
        int64_t rows = 300, d = q4k_type_traits((int)type).block_size == 1 ? 1001 : 3584, n = 9, j;
        int32_t tok[9] = {0, 299, 17, 17, 150, 3, 298, 1, 42};
        size_t wbytes;
        unsigned char *w = random_weights(type, rows, d, &wbytes);
        float *want = (float *)malloc(sizeof(float) * (size_t)(n * d)), *got = (float *)malloc(sizeof(float) * (size_t)(n * d));
        q4k__cuda_buf bw = {0, 0}, bt = {0, 0}, bo = {0, 0};
        for (j = 0; j < n; j++) q4k_dequantize_row(type, w + (size_t)tok[j] * q4k_row_size(type, d), want + j * d, d);
        dev(&bw, w, wbytes);
        dev(&bt, tok, sizeof tok);
        dev(&bo, NULL, sizeof(float) * (size_t)(n * d));
        T_CHECK(q4k__cuda_get_rows(cbk(), type, bw.p, d, bt.p, n, bo.p, &err) == Q4K_OK &&
                    q4k__cuda_get(cbk(), got, bo.p, sizeof(float) * (size_t)(n * d), &err) == Q4K_OK, "%s", err.msg);
        T_CHECK(count_ne_bits(got, want, sizeof(float) * (size_t)(n * d)) == 0, "%s rows differ", q4k_type_name((int)type));
        q4k__cuda_free(cbk(), &bw);
        q4k__cuda_free(cbk(), &bt);
        q4k__cuda_free(cbk(), &bo);
        free(w);
        free(want);
        free(got);
    }
}
static void test_op_get_rows(void) {
    NEED_GPU();
    run_op_get_rows();
}

/* largest |a-b| over |b|-scaled elements: max_i |a_i - b_i| / (|b_i| + floor) */
static double rel_err(const float *a, const float *b, int64_t n, double floor) {
    double worst = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]) / (fabs((double)b[i]) + floor);
        if (!(e <= worst)) worst = e == e ? e : 1e30;
    }
    return worst;
}

/* RMSNorm (the mean in double: at most a rounding apart), SwiGLU (expf: a
   few ulps), add and bias (exact) */
static void run_op_elementwise(void) {
    int64_t n = 7, d = 3584, i, j;
    float *x = (float *)malloc(sizeof(float) * (size_t)(n * d)), *w = (float *)malloc(sizeof(float) * (size_t)d);
    float *u = (float *)malloc(sizeof(float) * (size_t)(n * d)), *want = (float *)malloc(sizeof(float) * (size_t)(n * d));
    float *got = (float *)malloc(sizeof(float) * (size_t)(n * d));
    q4k__cuda_buf bx = {0, 0}, bw = {0, 0}, by = {0, 0}, bu = {0, 0};
    q4k_error err;
    double e;
    for (i = 0; i < n * d; i++) {
        x[i] = (float)(t_rng_gauss(&xr) * (i / d + 1) * 3.0);
        u[i] = (float)t_rng_gauss(&xr);
    }
    for (i = 0; i < d; i++) w[i] = (float)(1.0 + 0.1 * t_rng_gauss(&xr));
    for (j = 0; j < n; j++) q4k__rmsnorm(want + j * d, x + j * d, w, d, 1e-6f);
    dev(&bx, x, sizeof(float) * (size_t)(n * d));
    dev(&bw, w, sizeof(float) * (size_t)d);
    dev(&by, NULL, sizeof(float) * (size_t)(n * d));
    dev(&bu, u, sizeof(float) * (size_t)(n * d));
    T_CHECK(q4k__cuda_rmsnorm(cbk(), bx.p, bw.p, by.p, n, d, 1e-6f, &err) == Q4K_OK &&
                q4k__cuda_get(cbk(), got, by.p, sizeof(float) * (size_t)(n * d), &err) == Q4K_OK, "%s", err.msg);
    e = rel_err(got, want, n * d, 1e-30);
    printf("  rmsnorm: worst relative difference %.2e\n", e);
    T_CHECK(e <= 3e-7, "rmsnorm off by %.3g", e);
    /* swiglu on x, u */
    for (i = 0; i < n * d; i++) want[i] = q4k__silu(x[i]) * u[i];
    dev(&by, x, sizeof(float) * (size_t)(n * d));
    T_CHECK(q4k__cuda_swiglu(cbk(), by.p, bu.p, n * d, &err) == Q4K_OK &&
                q4k__cuda_get(cbk(), got, by.p, sizeof(float) * (size_t)(n * d), &err) == Q4K_OK, "%s", err.msg);
    e = rel_err(got, want, n * d, 1e-30);
    printf("  swiglu: worst relative difference %.2e\n", e);
    T_CHECK(e <= 1e-6, "swiglu off by %.3g", e);
    /* x + u, then + bias w per row */
    for (j = 0; j < n; j++)
        for (i = 0; i < d; i++) want[j * d + i] = (x[j * d + i] + u[j * d + i]) + w[i];
    dev(&by, x, sizeof(float) * (size_t)(n * d));
    T_CHECK(q4k__cuda_add(cbk(), by.p, bu.p, n * d, &err) == Q4K_OK && q4k__cuda_add_bias(cbk(), by.p, bw.p, n, d, &err) == Q4K_OK &&
                q4k__cuda_get(cbk(), got, by.p, sizeof(float) * (size_t)(n * d), &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(count_ne_bits(got, want, sizeof(float) * (size_t)(n * d)) == 0, "add / add_bias differ");
    q4k__cuda_free(cbk(), &bx);
    q4k__cuda_free(cbk(), &bw);
    q4k__cuda_free(cbk(), &by);
    q4k__cuda_free(cbk(), &bu);
    free(x);
    free(w);
    free(u);
    free(want);
    free(got);
}
static void test_op_elementwise(void) {
    NEED_GPU();
    run_op_elementwise();
}

/* RoPE from the host table (both pairings) and the f16 KV append: exact */
static void run_op_rope_kv(void) {
    const int n_head = 28, hd = 128, n_rot = 128, half = 64;
    const int64_t n = 5, n_pos = 5000, q_dim = n_head * hd;
    int32_t pos0 = 4093;
    float *table = (float *)malloc(sizeof(float) * (size_t)(n_pos * n_rot));
    float *v = (float *)malloc(sizeof(float) * (size_t)(n * q_dim)), *want = (float *)malloc(sizeof(float) * (size_t)(n * q_dim));
    float *got = (float *)malloc(sizeof(float) * (size_t)(n * q_dim)), c[64], sn[64];
    uint16_t *hwant = (uint16_t *)malloc(2 * (size_t)(n_pos * q_dim)), *hgot = (uint16_t *)malloc(2 * (size_t)(n_pos * q_dim));
    q4k__cuda_buf bt = {0, 0}, bv = {0, 0}, bp = {0, 0}, bc = {0, 0};
    q4k_error err;
    int64_t p, i, j, h;
    int neox;
    for (p = 0; p < n_pos; p++)
        for (i = 0; i < half; i++) q4k_rope_cos_sin(p, i, n_rot, 1000000.0, 1.0, &table[2 * (p * half + i)], &table[2 * (p * half + i) + 1]);
    dev(&bt, table, sizeof(float) * (size_t)(n_pos * n_rot));
    dev(&bp, &pos0, sizeof pos0);
    for (neox = 0; neox < 2; neox++) {
        for (i = 0; i < n * q_dim; i++) v[i] = want[i] = (float)t_rng_gauss(&xr);
        for (j = 0; j < n; j++) {
            for (i = 0; i < half; i++) {
                c[i] = table[2 * ((pos0 + j) * half + i)];
                sn[i] = table[2 * ((pos0 + j) * half + i) + 1];
            }
            for (h = 0; h < n_head; h++) q4k__rope(want + j * q_dim + h * hd, c, sn, n_rot, neox);
        }
        dev(&bv, v, sizeof(float) * (size_t)(n * q_dim));
        T_CHECK(q4k__cuda_rope(cbk(), bv.p, n, n_head, hd, q_dim, n_rot, neox, bt.p, bp.p, &err) == Q4K_OK &&
                    q4k__cuda_get(cbk(), got, bv.p, sizeof(float) * (size_t)(n * q_dim), &err) == Q4K_OK, "%s", err.msg);
        T_CHECK(count_ne_bits(got, want, sizeof(float) * (size_t)(n * q_dim)) == 0, "rope (neox %d) differs", neox);
    }
    /* the cache rows pos0..pos0+n-1 get f16(v), specials included; others stay */
    v[0] = NAN;
    v[1] = INFINITY;
    v[2] = 1e-7f;  /* subnormal half */
    v[3] = 65519.0f;
    v[4] = 70000.0f;
    dev(&bv, v, sizeof(float) * (size_t)(n * q_dim));
    memset(hwant, 0x55, 2 * (size_t)(n_pos * q_dim));
    dev(&bc, hwant, 2 * (size_t)(n_pos * q_dim));
    for (i = 0; i < n * q_dim; i++) hwant[pos0 * q_dim + i] = q4k_fp32_to_fp16(v[i]);
    T_CHECK(q4k__cuda_kv_append(cbk(), bv.p, bc.p, q_dim, n, bp.p, 0, &err) == Q4K_OK &&
                q4k__cuda_get(cbk(), hgot, bc.p, 2 * (size_t)(n_pos * q_dim), &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(count_ne_bits(hgot, hwant, 2 * (size_t)(n_pos * q_dim)) == 0, "the f16 cache differs");
    q4k__cuda_free(cbk(), &bt);
    q4k__cuda_free(cbk(), &bv);
    q4k__cuda_free(cbk(), &bp);
    q4k__cuda_free(cbk(), &bc);
    free(table);
    free(v);
    free(want);
    free(got);
    free(hwant);
    free(hgot);
}
static void test_op_rope_kv(void) {
    NEED_GPU();
    run_op_rope_kv();
}

/* the CPU's attention (q4k__attn_worker's loops) for token j at position last */
static void attn_ref(const float *q, const uint16_t *kc, const uint16_t *vc, float *out, double *mag, int64_t last, int n_head,
                     int n_head_kv, int hd, float *sc) {
    int64_t kv_dim = (int64_t)n_head_kv * hd, t, d;
    int h;
    float scale = 1.0f / sqrtf((float)hd);
    for (h = 0; h < n_head; h++) {
        int kvh = h / (n_head / n_head_kv);
        const float *qh = q + (int64_t)h * hd;
        float mx = -INFINITY, sum = 0.0f;
        for (t = 0; t <= last; t++) {
            float dot = 0.0f;
            for (d = 0; d < hd; d++) dot += qh[d] * q4k_fp16_to_fp32(kc[t * kv_dim + kvh * hd + d]);
            sc[t] = dot * scale;
            if (sc[t] > mx) mx = sc[t];
        }
        for (t = 0; t <= last; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        for (d = 0; d < hd; d++) {
            float acc = 0.0f;
            double m = 0;
            for (t = 0; t <= last; t++) {
                float vv = q4k_fp16_to_fp32(vc[t * kv_dim + kvh * hd + d]);
                acc += sc[t] / sum * vv;
                m += (double)(sc[t] / sum) * fabs((double)vv);
            }
            out[(int64_t)h * hd + d] = acc;
            mag[(int64_t)h * hd + d] = m;
        }
    }
}

/* decode (one token far into the cache), prefill from 0 and prefill that
   continues a cache: within 1e-5 x sum_t p_t |v_t| of the CPU's loops */
static void run_op_attention(void) {
    const int n_head = 28, n_head_kv = 4, hd = 128;
    const int64_t n_ctx = 700, q_dim = n_head * hd, kv_dim = n_head_kv * hd;
    static const int64_t cases[][2] = {{1, 577}, {64, 0}, {7, 300}, {1, 0}}; /* n, pos0 */
    uint16_t *kc = (uint16_t *)malloc(2 * (size_t)(n_ctx * kv_dim)), *vc = (uint16_t *)malloc(2 * (size_t)(n_ctx * kv_dim));
    float *q = (float *)malloc(sizeof(float) * (size_t)(64 * q_dim)), *want = (float *)malloc(sizeof(float) * (size_t)(64 * q_dim));
    float *got = (float *)malloc(sizeof(float) * (size_t)(64 * q_dim)), *sc = (float *)malloc(sizeof(float) * (size_t)n_ctx);
    double *mag = (double *)malloc(sizeof(double) * (size_t)(64 * q_dim)), worst = 0;
    q4k__cuda_buf bq = {0, 0}, bk = {0, 0}, bv = {0, 0}, bo = {0, 0}, bs = {0, 0}, bp = {0, 0};
    q4k_error err;
    size_t c;
    int64_t i, j;
    for (i = 0; i < n_ctx * kv_dim; i++) {
        kc[i] = q4k_fp32_to_fp16((float)t_rng_gauss(&xr));
        vc[i] = q4k_fp32_to_fp16((float)t_rng_gauss(&xr));
    }
    dev(&bk, kc, 2 * (size_t)(n_ctx * kv_dim));
    dev(&bv, vc, 2 * (size_t)(n_ctx * kv_dim));
    dev(&bs, NULL, sizeof(float) * (size_t)(64 * n_head * n_ctx));
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t n = cases[c][0];
        int32_t pos0 = (int32_t)cases[c][1];
        int bad = 0;
        double sharp = c == 2 ? 8.0 : 1.0; /* one case with peaked softmaxes */
        for (i = 0; i < n * q_dim; i++) q[i] = (float)(t_rng_gauss(&xr) * sharp);
        for (j = 0; j < n; j++) attn_ref(q + j * q_dim, kc, vc, want + j * q_dim, mag + j * q_dim, pos0 + j, n_head, n_head_kv, hd, sc);
        dev(&bq, q, sizeof(float) * (size_t)(n * q_dim));
        dev(&bo, NULL, sizeof(float) * (size_t)(n * q_dim));
        dev(&bp, &pos0, sizeof pos0);
        T_CHECK(q4k__cuda_attention(cbk(), bq.p, bk.p, bv.p, bo.p, bs.p, bp.p, n, n_head, n_head_kv, hd, n_ctx, 0, &err) == Q4K_OK &&
                    q4k__cuda_get(cbk(), got, bo.p, sizeof(float) * (size_t)(n * q_dim), &err) == Q4K_OK, "%s", err.msg);
        for (i = 0; i < n * q_dim; i++) {
            double e = fabs((double)got[i] - (double)want[i]) / (mag[i] + 1e-30);
            if (!(e <= 1e-5) && bad++ < 3)
                printf("  attention n=%lld pos0=%d: out[%lld] gpu %.9g cpu %.9g\n", (long long)n, (int)pos0, (long long)i, (double)got[i],
                       (double)want[i]);
            if (!(e <= worst)) worst = e == e ? e : 1e30;
        }
        T_CHECK(bad == 0, "attention n=%lld pos0=%d: %d outputs off", (long long)n, (int)pos0, bad);
    }
    printf("  attention: worst |gpu-cpu| / sum p|v| = %.2e (bound 1e-5)\n", worst);
    q4k__cuda_free(cbk(), &bq);
    q4k__cuda_free(cbk(), &bk);
    q4k__cuda_free(cbk(), &bv);
    q4k__cuda_free(cbk(), &bo);
    q4k__cuda_free(cbk(), &bs);
    q4k__cuda_free(cbk(), &bp);
    free(kc);
    free(vc);
    free(q);
    free(want);
    free(got);
    free(sc);
    free(mag);
}
static void test_op_attention(void) {
    NEED_GPU();
    run_op_attention();
}

/* greedy argmax over a vocabulary: the largest, the lowest index of equals */
static void run_op_argmax(void) {
    int64_t n = 152064, i;
    float *x = (float *)malloc(sizeof(float) * (size_t)n);
    q4k__cuda_buf bx = {0, 0}, bo = {0, 0};
    q4k_error err;
    int32_t got = -7, k;
    for (k = 0; k < 3; k++) {
        int64_t want = 0;
        for (i = 0; i < n; i++) x[i] = (float)t_rng_gauss(&xr);
        if (k == 1) x[100] = x[151000] = 50.0f; /* equal maxima */
        if (k == 2) x[5] = NAN, x[n - 1] = 60.0f;
        for (i = 1; i < n; i++)
            if (x[i] > x[want] || x[want] != x[want]) want = i;
        dev(&bx, x, sizeof(float) * (size_t)n);
        dev(&bo, NULL, 4);
        T_CHECK(q4k__cuda_argmax(cbk(), bx.p, n, bo.p, &err) == Q4K_OK && q4k__cuda_get(cbk(), &got, bo.p, 4, &err) == Q4K_OK, "%s", err.msg);
        T_CHECK(got == want, "case %d: argmax %d, want %lld", (int)k, (int)got, (long long)want);
    }
    q4k__cuda_free(cbk(), &bx);
    q4k__cuda_free(cbk(), &bo);
    free(x);
}
static void test_op_argmax(void) {
    NEED_GPU();
    run_op_argmax();
}

/* ---- the whole forward pass ----------------------------------------------- */

static double cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

/* A synthetic model (q4k synth) on the CPU and on CUDA in the same mode: a
   prompt (all logits), then decode steps fed the CPU's argmax; every row of
   logits, every layer's residual and every op of layer 0 compared by
   cosine. In 8-bit mode two correct paths differ by a few flipped roundings
   (the CPU's scalar and SIMD paths: 1 - cos up to 5.4e-5 on tiny), hence
   0.999 there; float mode differs by reassociation only (0.99999). */
static void session_parity(const char *preset, const char *extra, int64_t n_prompt, int steps, double min_cos_q8, double min_cos_f32) {
    char path[256], cmd[600];
    q4k_model *m = NULL;
    q4k_error err;
    int mode;
    snprintf(path, sizeof path, "/tmp/q4k_cuda_%s_%ld.gguf", preset, (long)getpid());
    snprintf(cmd, sizeof cmd, "./q4k synth %s --preset %s %s --seed 11 2>/dev/null", path, preset, extra);
    if (system(cmd) != 0 || q4k_model_load(path, NULL, &m, &err) != Q4K_OK) {
        T_CHECK(0, "cannot make the %s model (%s)", preset, cmd);
        remove(path);
        return;
    }
    for (mode = 0; mode < 2; mode++) {
        q4k_session_desc sd;
        q4k_session *sc = NULL, *sg = NULL;
        int64_t nv = m->hp.n_vocab, i, j;
        int32_t *toks = (int32_t *)malloc(sizeof(int32_t) * (size_t)n_prompt);
        float *lc = (float *)malloc(sizeof(float) * (size_t)(n_prompt * nv)), *lg = (float *)malloc(sizeof(float) * (size_t)(n_prompt * nv));
        double worst = 1.0, worst_trace = 1.0, min_cos = mode ? min_cos_f32 : min_cos_q8;
        int same_argmax = 0, rows = 0;
        memset(&sd, 0, sizeof sd);
        sd.n_ctx = 256;
        sd.act = mode ? Q4K_ACT_F32 : Q4K_ACT_Q8;
        sd.trace = Q4K_TRACE_LAYERS | Q4K_TRACE_OPS;
        sd.trace_layer = 0;
        for (i = 0; i < n_prompt; i++) toks[i] = (int32_t)(rnd() % (unsigned long long)nv);
        if (q4k_session_create(cpu, m, &sd, &sc, &err) || q4k_session_create(gpu, m, &sd, &sg, &err)) {
            T_CHECK(0, "session: %s", err.msg);
        } else {
            T_CHECK(q4k_session_eval(sc, toks, n_prompt, Q4K_EVAL_ALL_LOGITS, lc, &err) == Q4K_OK, "cpu eval: %s", err.msg);
            for (i = 0; i < n_prompt * nv; i++) lg[i] = NAN;
            T_CHECK(q4k_session_eval(sg, toks, n_prompt, Q4K_EVAL_ALL_LOGITS, lg, &err) == Q4K_OK, "cuda eval: %s", err.msg);
            for (j = 0; j <= steps; j++) {
                int64_t nr = j == 0 ? n_prompt : 1;
                for (i = 0; i < nr; i++) {
                    const float *a = lg + i * nv, *b = lc + i * nv;
                    double c = cosine(a, b, nv);
                    int64_t k, ia = 0, ib = 0;
                    for (k = 1; k < nv; k++) {
                        if (a[k] > a[ia]) ia = k;
                        if (b[k] > b[ib]) ib = k;
                    }
                    same_argmax += ia == ib;
                    rows++;
                    if (!(c >= worst)) worst = c;
                }
                {
                    int64_t L, op;
                    for (L = 0; L < m->hp.n_layer; L++) {
                        double c = cosine(q4k_session_trace_layer(sg, L), q4k_session_trace_layer(sc, L), m->hp.n_embd);
                        if (!(c >= worst_trace)) worst_trace = c;
                    }
                    for (op = 0; op < Q4K_OP_COUNT; op++) {
                        int64_t len = 0;
                        const float *tg = q4k_session_trace_op(sg, (q4k_op)op, &len), *tc = q4k_session_trace_op(sc, (q4k_op)op, NULL);
                        double c = tg && tc ? cosine(tg, tc, len) : 0;
                        T_CHECK(c >= min_cos, "%s %s step %lld: op %s of layer 0: cosine %.8f", preset, mode ? "f32" : "q8", (long long)j,
                                q4k_op_name((q4k_op)op), c);
                    }
                }
                if (j < steps) { /* next token: the CPU's argmax */
                    int64_t k, ib = 0;
                    const float *b = lc + (nr - 1) * nv;
                    int32_t t;
                    for (k = 1; k < nv; k++)
                        if (b[k] > b[ib]) ib = k;
                    t = (int32_t)ib;
                    T_CHECK(q4k_session_eval(sc, &t, 1, 0, lc, &err) == Q4K_OK, "cpu step: %s", err.msg);
                    for (i = 0; i < nv; i++) lg[i] = NAN;
                    T_CHECK(q4k_session_eval(sg, &t, 1, 0, lg, &err) == Q4K_OK, "cuda step: %s", err.msg);
                }
            }
            printf("  %s %s: %d rows of logits, worst cosine %.9f, same argmax %d/%d; worst layer-residual cosine %.9f\n", preset,
                   mode ? "f32" : "q8", rows, worst, same_argmax, rows, worst_trace);
            T_CHECK(worst >= min_cos, "%s %s: logits cosine %.9f < %.9f", preset, mode ? "f32" : "q8", worst, min_cos);
            T_CHECK(worst_trace >= min_cos, "%s %s: residual cosine %.9f < %.9f", preset, mode ? "f32" : "q8", worst_trace, min_cos);
            T_CHECK(q4k_session_pos(sg) == n_prompt + steps, "cuda position %lld", (long long)q4k_session_pos(sg));
        }
        q4k_session_free(sc);
        q4k_session_free(sg);
        free(toks);
        free(lc);
        free(lg);
    }
    q4k_model_free(m);
    remove(path);
}

static void test_session_tiny(void) {
    NEED_GPU();
    session_parity("tiny", "", 70, 8, 0.999, 0.99999);
}

/* Qwen2.5-7B's shapes, one layer, the full vocabulary (lm_head 152064 x 3584) */
static void test_session_7b_layer(void) {
    const char *big = getenv("Q4K_TEST_BIG");
    NEED_GPU();
    if (big && !strcmp(big, "0")) T_SKIP("Q4K_TEST_BIG=0");
    session_parity("7b", "--layers 1 --fast", 20, 4, 0.999, 0.99999);
}

/* The backend's op entry points (host arrays, what `q4k qa` calls) against
   the CPU's: the quantizer, the embedding row and RoPE bit for bit;
   RMSNorm and attention (f16 and f32 caches) within NMSE 1e-10 (only the
   order of the softmax's reductions differs; a wrong head mapping or cache
   rounding is far above it). */
static void test_op_entry_points(void) {
    const int64_t n_head = 28, n_head_kv = 4, hd = 128, q_dim = n_head * hd, kv_dim = n_head_kv * hd, n_pos = 300, d = 3584;
    float *x, *a, *b, *w, ff[64];
    q4k_block_q8a qa[112], qb[112];
    q4k_error err;
    size_t bytes;
    unsigned char *table;
    int64_t i;
    int kv;
    NEED_GPU(); /* before any allocation: a skip returns */
    x = (float *)malloc(sizeof(float) * (size_t)(q_dim + 2 * n_pos * kv_dim));
    a = (float *)malloc(sizeof(float) * (size_t)d * 2);
    b = (float *)malloc(sizeof(float) * (size_t)d * 2);
    w = (float *)malloc(sizeof(float) * (size_t)d);
    table = random_weights(Q4K_TYPE_Q6_K, 50, d, &bytes);
    for (i = 0; i < q_dim + 2 * n_pos * kv_dim; i++) x[i] = (float)t_rng_gauss(&xr);
    for (i = 0; i < d; i++) w[i] = 1.0f + 0.1f * unif();
    T_CHECK(cpu->quantize_act(cpu, x, d, qa, &err) == Q4K_OK && gpu->quantize_act(gpu, x, d, qb, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(count_ne_bits(qa, qb, sizeof qa) == 0, "quantize_act differs from the CPU's");
    T_CHECK(cpu->embedding(cpu, Q4K_TYPE_Q6_K, table, d, 37, a, &err) == Q4K_OK &&
                gpu->embedding(gpu, Q4K_TYPE_Q6_K, table, d, 37, b, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(count_ne_bits(a, b, sizeof(float) * (size_t)d) == 0, "embedding row 37 (Q6_K) differs");
    T_CHECK(gpu->embedding(gpu, Q4K_TYPE_COUNT, table, d, 0, b, &err) == Q4K_ERR_UNSUPPORTED_TYPE, "an unknown type is accepted");
    T_CHECK(cpu->rmsnorm(cpu, x, w, d, 2, 1e-6f, a, &err) == Q4K_OK && gpu->rmsnorm(gpu, x, w, d, 2, 1e-6f, b, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(q4k_parity_compare(a, b, 2 * d).nmse <= 1e-10, "rmsnorm: NMSE %.3g", q4k_parity_compare(a, b, 2 * d).nmse);
    for (i = 0; i < 32; i++) ff[i] = 1.0f + 0.25f * (float)(i % 5);
    memcpy(a, x, sizeof(float) * (size_t)q_dim);
    memcpy(b, x, sizeof(float) * (size_t)q_dim);
    T_CHECK(cpu->rope(cpu, a, 2, 14, hd, 64, 1, 4097, 1e6, ff, &err) == Q4K_OK && gpu->rope(gpu, b, 2, 14, hd, 64, 1, 4097, 1e6, ff, &err) == Q4K_OK,
            "%s", err.msg);
    T_CHECK(count_ne_bits(a, b, sizeof(float) * (size_t)q_dim) == 0, "rope (2 tokens at 4097, 64 of 128 dims, factors) differs");
    for (kv = 0; kv < 2; kv++) {
        q4k_kv_type t = kv ? Q4K_KV_F32 : Q4K_KV_F16;
        double e;
        T_CHECK(cpu->attention(cpu, t, x, x + q_dim, x + q_dim + n_pos * kv_dim, n_pos, n_head, n_head_kv, hd, a, &err) == Q4K_OK &&
                    gpu->attention(gpu, t, x, x + q_dim, x + q_dim + n_pos * kv_dim, n_pos, n_head, n_head_kv, hd, b, &err) == Q4K_OK,
                "%s", err.msg);
        e = q4k_parity_compare(a, b, q_dim).nmse;
        printf("  attention %lld positions, %s cache: NMSE %.3g\n", (long long)n_pos, q4k_kv_type_name(t), e);
        T_CHECK(e <= 1e-10, "attention (%s cache): NMSE %.3g", q4k_kv_type_name(t), e);
    }
    /* the f16 cache rounds: the f16 and f32 results must differ */
    T_CHECK(gpu->attention(gpu, Q4K_KV_F16, x, x + q_dim, x + q_dim + n_pos * kv_dim, n_pos, n_head, n_head_kv, hd, a, &err) == Q4K_OK &&
                count_ne_bits(a, b, sizeof(float) * (size_t)q_dim) != 0, "the f16 and f32 caches give the same bits");
    free(table);
    free(x);
    free(a);
    free(b);
    free(w);
}

/* a synthetic model from `q4k synth` (NULL on failure, reported) */
static q4k_model *synth_model(const char *preset, const char *extra, char *path, size_t cap) {
    char cmd[600];
    q4k_model *m = NULL;
    q4k_error err;
    snprintf(path, cap, "/tmp/q4k_cudagate_%s_%ld.gguf", preset, (long)getpid());
    snprintf(cmd, sizeof cmd, "./q4k synth %s --preset %s %s --seed 5 2>/dev/null", path, preset, extra);
    if (system(cmd) != 0 || q4k_model_load(path, NULL, &m, &err) != Q4K_OK) {
        T_CHECK(0, "cannot make the %s model (%s)", preset, cmd);
        remove(path);
        return NULL;
    }
    return m;
}

/* Two sessions of one model on CUDA share its weights: prepared once,
   released after the last; the second session computes what the first does. */
static void test_prepared_shared(void) {
    char path[256];
    q4k_model *m;
    q4k_session *s1 = NULL, *s2 = NULL;
    q4k_session_desc sd;
    q4k_error err;
    int32_t toks[5] = {3, 99, 1000, 7, 42};
    float *l1, *l2;
    int64_t n0;
    NEED_GPU();
    if (!(m = synth_model("tiny", "", path, sizeof path))) return;
    l1 = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    l2 = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    n0 = gpu->n_prepare;
    T_CHECK(q4k_session_create(gpu, m, &sd, &s1, &err) == Q4K_OK && q4k_session_create(gpu, m, &sd, &s2, &err) == Q4K_OK, "%s", err.msg);
    T_CHECK(gpu->n_prepare == n0 + 1, "the model was prepared %lld times for two sessions", (long long)(gpu->n_prepare - n0));
    T_CHECK(q4k_backend_prepared(gpu, m) != NULL, "no prepared model while sessions are open");
    if (s1 && s2) {
        T_CHECK(q4k_session_eval(s1, toks, 5, 0, l1, &err) == Q4K_OK && q4k_session_eval(s2, toks, 5, 0, l2, &err) == Q4K_OK, "%s", err.msg);
        T_CHECK(count_ne_bits(l1, l2, sizeof(float) * (size_t)m->hp.n_vocab) == 0, "two sessions of one model differ");
    }
    q4k_session_free(s1);
    T_CHECK(q4k_backend_prepared(gpu, m) != NULL, "the model was released while a session uses it");
    q4k_session_free(s2);
    T_CHECK(q4k_backend_prepared(gpu, m) == NULL, "the model is still held after its last session");
    free(l1);
    free(l2);
    q4k_model_free(m);
    remove(path);
}

/* One CUDA backend shared by two threads, which it has never run on (its
   context is made current in each caller): two sessions each, a prompt and
   8 decode steps (replayed graphs) at the same time, in both arithmetic
   modes; tokens and logits bit-identical to the same work done one thread
   after the other on the backend (tests/t_share.h). */
static void test_shared_threads(void) {
    char path[256];
    q4k_model *m;
    q4k_session_desc sd;
    int mode;
    NEED_GPU();
    if (!(m = synth_model("tiny", "", path, sizeof path))) return;
    for (mode = 0; mode < 2; mode++) {
        int before = t__failed_now;
        memset(&sd, 0, sizeof sd);
        sd.n_ctx = 64;
        sd.act = mode ? Q4K_ACT_F32 : Q4K_ACT_Q8;
        t_share_check(gpu, m, &sd, mode == 0, mode ? "cuda, f32 activations" : "cuda, q8 activations");
        printf("  shared backend, 2 threads x 2 sessions, %s activations: prompt 8 + %d steps, tokens and logits %s\n",
               mode ? "f32" : "q8", T_SHARE_STEPS, t__failed_now == before ? "as one thread after the other" : "DIFFER");
    }
    q4k_model_free(m);
    remove(path);
}

/* The parity gate with the CPU as reference and CUDA under test: prompt
   then 4 greedy steps must pass, every step traced (all ops of every layer,
   the stages), in both arithmetic modes and with both KV cache types. */
static void gate_case(const char *preset, const char *extra, int both_kv) {
    char path[256];
    q4k_model *m;
    int mode, kv;
    int32_t toks[20];
    int64_t i;
    if (!(m = synth_model(preset, extra, path, sizeof path))) return;
    for (i = 0; i < 20; i++) toks[i] = (int32_t)(rnd() % (unsigned long long)m->hp.n_vocab);
    for (mode = 0; mode < 2; mode++)
        for (kv = 0; kv < (both_kv ? 2 : 1); kv++) {
            q4k_session_desc sd;
            q4k_gate_desc gd;
            q4k_gate_report rep;
            q4k_error err;
            double worst = 1.0, upd = 1.0, opc = 1.0;
            memset(&sd, 0, sizeof sd);
            memset(&gd, 0, sizeof gd);
            sd.act = mode ? Q4K_ACT_F32 : Q4K_ACT_Q8;
            sd.kv = kv ? Q4K_KV_F32 : Q4K_KV_F16;
            gd.steps = 4;
            if (q4k_gate_run(cpu, gpu, m, &sd, toks, 20, &gd, &rep, &err) != Q4K_OK) {
                T_CHECK(0, "%s %s: gate: %s", preset, mode ? "f32" : "q8", err.msg);
                continue;
            }
            for (i = 0; i < rep.n_steps; i++) {
                if (!(rep.step[i].logits.cosine >= worst)) worst = rep.step[i].logits.cosine;
                if (!(rep.step[i].update_cos >= upd)) upd = rep.step[i].update_cos;
                if (!(rep.step[i].op_cos >= opc)) opc = rep.step[i].op_cos;
            }
            printf("  gate %s %s, %s cache: %s, %lld steps, worst logits cosine %.9f, layer update %.9f, op %.9f\n", preset,
                   mode ? "f32" : "q8", kv ? "f32" : "f16", rep.pass ? "pass" : "FAIL", (long long)rep.n_steps, worst, upd, opc);
            T_CHECK(rep.pass, "%s %s %s cache: the gate rejects CUDA at step %lld: %s (%s)", preset, mode ? "f32" : "q8",
                    kv ? "f32" : "f16", (long long)rep.failed_step, rep.reason, rep.where);
            T_CHECK(rep.n_steps == 5, "%s: %lld steps judged, not 5", preset, (long long)rep.n_steps);
        }
    q4k_model_free(m);
    remove(path);
}

static void test_gate_tiny(void) {
    NEED_GPU();
    gate_case("tiny", "", 1);
}

static void test_gate_7b_layer(void) {
    const char *big = getenv("Q4K_TEST_BIG");
    NEED_GPU();
    if (big && !strcmp(big, "0")) T_SKIP("Q4K_TEST_BIG=0");
    gate_case("7b", "--layers 1 --fast", 0);
}

/* The counter the CUDA test below relies on, where no GPU is: one count
   per q4k_matmul call, one per layer of a CPU session's forward pass. */
static void test_cpu_counter(void) {
    char path[256];
    q4k_model *m;
    q4k_session *sc = NULL;
    q4k_session_desc sd;
    q4k_error err;
    q4k_cpu c;
    int32_t toks[2] = {3, 99};
    float w[64], x[64], y[2], *logits;
    uint64_t c0, c1;
    memset(&c, 0, sizeof c);
    memset(w, 0, sizeof w);
    memset(x, 0, sizeof x);
    c.act = Q4K_ACT_F32;
    c0 = q4k_cpu_kernel_calls();
    T_CHECK(q4k_matmul(&c, Q4K_TYPE_F32, w, 2, 32, x, 1, y) == Q4K_OK, "matmul");
    T_CHECK(q4k_cpu_kernel_calls() == c0 + 1, "a q4k_matmul counted %llu", (unsigned long long)(q4k_cpu_kernel_calls() - c0));
    if (!(m = synth_model("tiny", "", path, sizeof path))) return;
    logits = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 16;
    T_CHECK(q4k_session_create(cpu, m, &sd, &sc, &err) == Q4K_OK, "%s", err.msg);
    if (sc) {
        c0 = q4k_cpu_kernel_calls();
        T_CHECK(q4k_session_eval(sc, toks, 2, 0, logits, &err) == Q4K_OK, "%s", err.msg);
        c1 = q4k_cpu_kernel_calls();
        T_CHECK(c1 >= c0 + (uint64_t)m->hp.n_layer * 8, "a CPU eval of %lld layers counted %llu", (long long)m->hp.n_layer,
                (unsigned long long)(c1 - c0));
    }
    q4k_session_free(sc);
    free(logits);
    q4k_model_free(m);
    remove(path);
}

/* A CUDA session's eval runs no CPU kernel (q4k_cpu_kernel_calls stays
   put across it), while the CPU session's eval of the same tokens moves it. */
static void test_no_cpu_kernels(void) {
    char path[256];
    q4k_model *m;
    q4k_session *sg = NULL, *sc = NULL;
    q4k_session_desc sd;
    q4k_error err;
    int32_t toks[6] = {3, 99, 1000, 7, 42, 5};
    float *logits;
    uint64_t c0, c1, c2;
    NEED_GPU();
    if (!(m = synth_model("tiny", "", path, sizeof path))) return;
    logits = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 64;
    T_CHECK(q4k_session_create(gpu, m, &sd, &sg, &err) == Q4K_OK && q4k_session_create(cpu, m, &sd, &sc, &err) == Q4K_OK, "%s",
            err.msg);
    if (sg && sc) {
        c0 = q4k_cpu_kernel_calls();
        T_CHECK(q4k_session_eval(sg, toks, 5, 0, logits, &err) == Q4K_OK && q4k_session_eval(sg, toks + 5, 1, 0, logits, &err) == Q4K_OK,
                "%s", err.msg);
        c1 = q4k_cpu_kernel_calls();
        T_CHECK(q4k_session_eval(sc, toks, 5, 0, logits, &err) == Q4K_OK, "%s", err.msg);
        c2 = q4k_cpu_kernel_calls();
        printf("  CPU kernel calls: %llu during the CUDA evals, %llu during the CPU's\n", (unsigned long long)(c1 - c0),
               (unsigned long long)(c2 - c1));
        T_CHECK(c1 == c0, "a CUDA eval ran %llu CPU kernels", (unsigned long long)(c1 - c0));
        T_CHECK(c2 > c1, "the counter did not move for a CPU eval");
    }
    q4k_session_free(sg);
    q4k_session_free(sc);
    free(logits);
    q4k_model_free(m);
    remove(path);
}

/* Greedy decoding with the step's CUDA graph and with Q4K_CUDA_GRAPH=0:
   the same tokens and bit-identical logits at every step, in both
   arithmetic modes, also after rewinding both sessions and decoding again
   from the earlier position; the graph session did capture a graph. */
static void test_graph_identical(void) {
    char path[256];
    q4k_model *m;
    int mode;
    NEED_GPU();
    if (!(m = synth_model("tiny", "", path, sizeof path))) return;
    for (mode = 0; mode < 2; mode++) {
        q4k_session *sg = NULL, *sp = NULL;
        q4k_session_desc sd;
        q4k_error err;
        int64_t nv = m->hp.n_vocab, step, k, differ = 0, steps = 0;
        int32_t prompt[7] = {3, 99, 1000, 7, 42, 5, 600}, tg = 0, tp = 0;
        float *lg = (float *)malloc(sizeof(float) * (size_t)nv), *lp = (float *)malloc(sizeof(float) * (size_t)nv);
        int pass;
        memset(&sd, 0, sizeof sd);
        sd.n_ctx = 128;
        sd.act = mode ? Q4K_ACT_F32 : Q4K_ACT_Q8;
        setenv("Q4K_CUDA_GRAPH", "0", 1);
        T_CHECK(q4k_session_create(gpu, m, &sd, &sp, &err) == Q4K_OK, "%s", err.msg);
        unsetenv("Q4K_CUDA_GRAPH");
        T_CHECK(q4k_session_create(gpu, m, &sd, &sg, &err) == Q4K_OK, "%s", err.msg);
        if (!sg || !sp) {
            q4k_session_free(sg);
            q4k_session_free(sp);
            free(lg);
            free(lp);
            continue;
        }
        T_CHECK(((q4k__cuda_session *)sp)->use_graph == 0, "Q4K_CUDA_GRAPH=0 did not turn the graph off");
        for (pass = 0; pass < 2; pass++) {
            if (pass == 0) {
                T_CHECK(q4k_session_eval(sg, prompt, 7, 0, lg, &err) == Q4K_OK && q4k_session_eval(sp, prompt, 7, 0, lp, &err) == Q4K_OK,
                        "%s", err.msg);
            } else { /* back to position 4, then the prompt's last three tokens again */
                T_CHECK(q4k_session_rewind(sg, 4) == Q4K_OK && q4k_session_rewind(sp, 4) == Q4K_OK, "rewind");
                T_CHECK(q4k_session_eval(sg, prompt + 4, 3, 0, lg, &err) == Q4K_OK &&
                            q4k_session_eval(sp, prompt + 4, 3, 0, lp, &err) == Q4K_OK, "%s", err.msg);
            }
            differ += count_ne_bits(lg, lp, sizeof(float) * (size_t)nv) != 0;
            for (step = 0; step < 12; step++) {
                for (k = 1, tg = 0, tp = 0; k < nv; k++) {
                    if (lg[k] > lg[tg]) tg = (int32_t)k;
                    if (lp[k] > lp[tp]) tp = (int32_t)k;
                }
                T_CHECK(tg == tp, "%s pass %d step %lld: token %d with the graph, %d without", mode ? "f32" : "q8", pass,
                        (long long)step, (int)tg, (int)tp);
                T_CHECK(q4k_session_eval(sg, &tg, 1, 0, lg, &err) == Q4K_OK && q4k_session_eval(sp, &tp, 1, 0, lp, &err) == Q4K_OK,
                        "%s", err.msg);
                differ += count_ne_bits(lg, lp, sizeof(float) * (size_t)nv) != 0;
                steps++;
            }
        }
        printf("  %s: %lld decode steps with and without the graph, %lld with different logits; graph %s\n", mode ? "f32" : "q8",
               (long long)steps, (long long)differ, ((q4k__cuda_session *)sg)->graph ? "captured" : "NOT captured");
        T_CHECK(differ == 0, "%s: %lld evals gave different logits with the graph", mode ? "f32" : "q8", (long long)differ);
        T_CHECK(((q4k__cuda_session *)sg)->graph != NULL, "no graph was captured");
        q4k_session_free(sg);
        q4k_session_free(sp);
        free(lg);
        free(lp);
    }
    q4k_model_free(m);
    remove(path);
}

/* Device memory in use (total - free, the context included) with one
   session of a 7B-shaped model: at most the file size + KV cache + scratch
   + 1 GiB. */
static void test_device_memory(void) {
    const char *big = getenv("Q4K_TEST_BIG");
    char path[256];
    q4k_model *m;
    q4k_session *s = NULL;
    q4k_session_desc sd;
    q4k_error err;
    q4k_cuda_memory mem;
    int32_t tok = 11;
    float *logits;
    FILE *f;
    long long fsize = 0;
    NEED_GPU();
    if (big && !strcmp(big, "0")) T_SKIP("Q4K_TEST_BIG=0");
    if (!(m = synth_model("7b", "--layers 1 --fast", path, sizeof path))) return;
    if ((f = fopen(path, "rb"))) {
        fseek(f, 0, SEEK_END);
        fsize = ftell(f);
        fclose(f);
    }
    logits = (float *)malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = 4096;
    T_CHECK(q4k_session_create(gpu, m, &sd, &s, &err) == Q4K_OK, "%s", err.msg);
    if (s) {
        q4k__cuda_session *cs = (q4k__cuda_session *)s;
        uint64_t bound = (uint64_t)fsize + cs->kv_bytes + cs->scratch_bytes + (1ull << 30);
        T_CHECK(q4k_session_eval(s, &tok, 1, 0, logits, &err) == Q4K_OK, "%s", err.msg);
        T_CHECK(q4k_cuda_memory_info(gpu, &mem, &err) == Q4K_OK, "%s", err.msg);
        printf("  in use %.1f MiB (context %.1f MiB, q4k's allocations %.1f MiB); bound: file %.1f + KV %.1f + scratch %.1f + 1024 MiB\n",
               mem.used / 1048576.0, mem.context / 1048576.0, mem.allocated / 1048576.0, fsize / 1048576.0, cs->kv_bytes / 1048576.0,
               cs->scratch_bytes / 1048576.0);
        T_CHECK(mem.used > 0 && mem.used <= bound, "%llu bytes in use > %llu", (unsigned long long)mem.used, (unsigned long long)bound);
        T_CHECK(mem.allocated >= (uint64_t)fsize / 2, "q4k's allocations (%llu) are less than the weights", (unsigned long long)mem.allocated);
    }
    T_CHECK(q4k_cuda_memory_info(cpu, &mem, &err) == Q4K_ERR_INVALID_ARG, "memory info of the CPU backend");
    q4k_session_free(s);
    free(logits);
    q4k_model_free(m);
    remove(path);
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
    T_RUN(test_op_quantize);
    T_RUN(test_op_get_rows);
    T_RUN(test_op_elementwise);
    T_RUN(test_op_rope_kv);
    T_RUN(test_op_attention);
    T_RUN(test_op_argmax);
    T_RUN(test_session_tiny);
    T_RUN(test_session_7b_layer);
    T_RUN(test_op_entry_points);
    T_RUN(test_prepared_shared);
    T_RUN(test_shared_threads);
    T_RUN(test_cpu_counter);
    T_RUN(test_no_cpu_kernels);
    T_RUN(test_graph_identical);
    T_RUN(test_device_memory);
    T_RUN(test_gate_tiny);
    T_RUN(test_gate_7b_layer);
    T_RUN(test_matmul_7b);
    if (gpu) q4k_backend_destroy(gpu);
    q4k_backend_destroy(cpu);
    T_EXIT();
}
