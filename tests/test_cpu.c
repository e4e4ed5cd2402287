/* CPU kernels: thread pool, activation quantization, q4k_matmul in both
   activation modes against float64 references, every SIMD path against the
   scalar path (7B shapes included), tiling and thread invariance, path
   selection. */
#define _POSIX_C_SOURCE 200809L
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "t.h"

static const q4k_type all_types[] = {Q4K_TYPE_F32,  Q4K_TYPE_F16,  Q4K_TYPE_BF16, Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0,
                                     Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

static q4k_pool *pool2, *pool3;
/* SIMD against scalar: the same exact integers summed in another float
   order; measured worst 2.3e-7 of sum|w*x| on AVX2 */
#define TOL 2e-6
static double worst_seen; /* largest relative difference of a check_case, for the log */

static int is_quantized(q4k_type t) { return t != Q4K_TYPE_F32 && t != Q4K_TYPE_F16 && t != Q4K_TYPE_BF16; }

static int path_usable(q4k_cpu_path p) {
    return ((q4k_cpu_paths_compiled() & q4k_cpu_paths_detected()) >> p) & 1;
}

static q4k_cpu make_cpu(q4k_cpu_path p, q4k_act_mode act, q4k_pool *pool) {
    q4k_cpu c;
    c.path = p;
    c.act = act;
    c.pool = pool;
    return c;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v & 0xFF); p[1] = (uint8_t)(v >> 8); }

/* Random weights: random block bytes with finite, modest fp16 scales (so a
   weight is at most a few units), or random floats for the float types. */
static uint8_t *gen_weights(q4k_type t, int64_t rows, int64_t cols, uint64_t seed) {
    q4k_type_info ti = q4k_type_traits((int)t);
    size_t nbytes = q4k_row_size(t, cols) * (size_t)rows, i;
    int64_t nblocks = rows * (cols / ti.block_size), b;
    uint8_t *w = (uint8_t *)malloc(nbytes + 8);
    uint16_t scale16[64];
    t_rng r;
    r.s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (i = 0; i < nbytes; i += 8) {
        uint64_t v = t_rng_next(&r);
        memcpy(w + i, &v, 8);
    }
    if (t == Q4K_TYPE_F32) {
        for (b = 0; b < nblocks; b++) {
            float f = (float)(t_rng_unif(&r) * 2.0 - 1.0);
            memcpy(w + 4 * b, &f, 4);
        }
        return w;
    }
    if (t == Q4K_TYPE_F16 || t == Q4K_TYPE_BF16) {
        for (b = 0; b < nblocks; b++) {
            float f = (float)(t_rng_unif(&r) * 2.0 - 1.0);
            put16(w + 2 * b, t == Q4K_TYPE_F16 ? q4k_fp32_to_fp16(f) : q4k_fp32_to_bf16(f));
        }
        return w;
    }
    for (i = 0; i < 64; i++) {
        /* scales giving weights of order 1: the quants reach 8..128 and the
           k-quant sub-block scales 64 */
        double base = t == Q4K_TYPE_Q8_0 || t == Q4K_TYPE_Q6_K ? 1.0 / 128 : t == Q4K_TYPE_Q4_0 ? 1.0 / 8 : t == Q4K_TYPE_Q5_0 ? 1.0 / 16 : 1.0 / 512;
        scale16[i] = q4k_fp32_to_fp16((float)(base * (0.25 + t_rng_unif(&r))));
    }
    for (b = 0; b < nblocks; b++) {
        uint8_t *p = w + (size_t)b * ti.type_size;
        uint64_t v = t_rng_next(&r);
        switch (t) {
        case Q4K_TYPE_Q4_K:
        case Q4K_TYPE_Q5_K:
            put16(p, scale16[v & 63]);
            put16(p + 2, scale16[(v >> 8) & 63]);
            break;
        case Q4K_TYPE_Q6_K: put16(p + 208, scale16[v & 63]); break;
        default: put16(p, scale16[v & 63]); break;
        }
    }
    return w;
}

/* gaussian activations; every 5th row starts with a zero block (d = 0) */
static float *gen_x(int64_t n, int64_t cols, uint64_t seed) {
    float *x = (float *)malloc(sizeof(float) * (size_t)(n * cols));
    int64_t j, i;
    t_rng r;
    r.s = seed * 0xD1B54A32D192ED03ULL + 7;
    for (j = 0; j < n; j++)
        for (i = 0; i < cols; i++) x[j * cols + i] = (j % 5 == 4 && i < 32) ? 0.0f : (float)t_rng_gauss(&r);
    return x;
}

/* ---- activation quantization -------------------------------------------- */

static void test_quantize_act_by_hand(void) {
    float x[4 * 32];
    q4k_block_q8a q[4];
    int i, sum;
    memset(x, 0, sizeof x);
    /* block 0: amax 254 -> d = 2, id = 0.5 exactly: ties go to even */
    x[0] = 254.0f;  /* 127 */
    x[1] = 5.0f;    /* 2.5 -> 2 */
    x[2] = 7.0f;    /* 3.5 -> 4 */
    x[3] = -5.0f;   /* -2.5 -> -2 */
    x[4] = 1.0f;    /* 0.5 -> 0 */
    x[5] = 3.0f;    /* 1.5 -> 2 */
    x[6] = -253.0f; /* -126.5 -> -126 */
    x[7] = 2.2f;    /* 1.1 -> 1 */
    x[8] = -2.9f;   /* -1.45 -> -1 */
    x[9] = 101.0f;  /* 50.5 -> 50 */
    x[10] = -3.2f;  /* -1.6 -> -2 */
    /* block 1: zeros -> d = 0, q = 0 */
    /* block 2: amax 1 -> d = 1/127 */
    x[64] = 1.0f;
    x[65] = -1.0f;
    x[66] = 0.5f;
    /* block 3: subnormal amax: 1/d overflows, the clamp binds */
    x[96] = 1e-40f;
    x[97] = -1e-40f;
    q4k_quantize_act_q8(x, q, 4 * 32);
    T_CHECK(q[0].d == 2.0f, "d %g", q[0].d);
    {
        static const int want[11] = {127, 2, 4, -2, 0, 2, -126, 1, -1, 50, -2};
        for (i = 0, sum = 0; i < 11; i++) {
            T_CHECK(q[0].qs[i] == want[i], "qs[%d] = %d, want %d", i, q[0].qs[i], want[i]);
            sum += want[i];
        }
        for (i = 11; i < 32; i++) T_CHECK(q[0].qs[i] == 0, "qs[%d] = %d", i, q[0].qs[i]);
        T_CHECK(q[0].sum == sum && sum == 55, "sum %d (%d)", q[0].sum, sum);
    }
    T_CHECK(q[1].d == 0.0f && q[1].sum == 0, "zero block d %g sum %d", q[1].d, q[1].sum);
    for (i = 0; i < 32; i++) T_CHECK(q[1].qs[i] == 0, "zero block qs[%d] = %d", i, q[1].qs[i]);
    T_CHECK(q[2].d == 1.0f / 127.0f, "d %.9g", q[2].d);
    /* id = 1/fl(1/127) rounds to exactly 127: 0.5 * id = 63.5, a tie -> 64 */
    T_CHECK(q[2].qs[0] == 127 && q[2].qs[1] == -127 && q[2].qs[2] == 64, "%d %d %d", q[2].qs[0], q[2].qs[1],
            q[2].qs[2]);
    T_CHECK(q[2].sum == 64, "sum %d", q[2].sum);
    T_CHECK(q[3].qs[0] == 127 && q[3].qs[1] == -127 && q[3].qs[2] == 0 && q[3].sum == 0, "subnormal %d %d %d %d",
            q[3].qs[0], q[3].qs[1], q[3].qs[2], q[3].sum);
}

/* |x - d*q| <= d/2 (plus rounding of d, id), |q| <= 127, sum right, on
   random data of every scale */
static void test_quantize_act_random(void) {
    int64_t n = 32 * 512, i, b;
    float *x = (float *)malloc(sizeof(float) * (size_t)n);
    q4k_block_q8a *q = (q4k_block_q8a *)malloc(sizeof(q4k_block_q8a) * (size_t)(n / 32));
    t_rng r = {12345};
    double worst = 0.0;
    for (i = 0; i < n; i++) x[i] = (float)(t_rng_gauss(&r) * pow(10.0, (double)((i / 32) % 40) - 20.0));
    q4k_quantize_act_q8(x, q, n);
    for (b = 0; b < n / 32; b++) {
        int32_t s = 0;
        double amax = 0.0;
        /* not fmax: aarch64 gcc 12 -O2 crashes vectorizing an fmax reduction */
        for (i = 0; i < 32; i++)
            if (fabs((double)x[b * 32 + i]) > amax) amax = fabs((double)x[b * 32 + i]);
        T_CHECK(q[b].d == (float)(amax / 127.0) || fabs(q[b].d - amax / 127.0) <= 1e-7 * amax / 127.0, "d");
        for (i = 0; i < 32; i++) {
            double e = fabs((double)x[b * 32 + i] - (double)q[b].d * q[b].qs[i]);
            if (q[b].d > 0) worst = fmax(worst, e / q[b].d);
            T_CHECK(q[b].qs[i] >= -127 && q[b].qs[i] <= 127, "range");
            s += q[b].qs[i];
        }
        T_CHECK(s == q[b].sum, "block %d sum %d vs %d", (int)b, (int)q[b].sum, (int)s);
    }
    T_CHECK(worst <= 0.5 + 1e-4, "worst |x - dq| / d = %g", worst);
    T_CHECK(worst > 0.49, "worst error %g: suspiciously small", worst);
    free(x);
    free(q);
}

/* the SIMD quantizer (of the AVX2 / AVX-512 paths, or of NEON) equals the
   scalar one bit for bit: ties, zeros, huge and subnormal blocks, NaN and
   infinity */
static void test_quantize_act_simd(void) {
#if defined(Q4K__X86) || defined(Q4K__NEON)
    int64_t n = 32 * 4096, i;
    float *x = (float *)malloc(sizeof(float) * (size_t)n);
    q4k_block_q8a *a = (q4k_block_q8a *)malloc(sizeof(q4k_block_q8a) * (size_t)(n / 32));
    q4k_block_q8a *b = (q4k_block_q8a *)malloc(sizeof(q4k_block_q8a) * (size_t)(n / 32));
    t_rng r = {777};
    int64_t bad = -1;
#ifdef Q4K__X86
    if (!path_usable(Q4K_CPU_AVX2)) {
        free(x), free(a), free(b);
        T_NA("CPU lacks AVX2");
    }
#endif
    for (i = 0; i < n; i++) {
        int64_t blk = i / 32;
        double g = t_rng_gauss(&r);
        switch (blk % 8) {
        case 0: x[i] = (float)g; break;
        case 1: x[i] = (float)((double)(int)(g * 40.0) + 0.5) * (127.0f / 254.0f); break; /* halves times d */
        case 2: /* d = 2, id = 0.5: odd integers are exact ties */
            x[i] = (i % 32 == 5) ? 254.0f : (float)(int)fmax(-253.0, fmin(253.0, g * 60.0));
            break;
        case 3: x[i] = 0.0f; break;
        case 4: x[i] = (float)(g * 1e-39); break;                                         /* subnormal */
        case 5: x[i] = (float)(g * 1e37); break;
        case 6: x[i] = (i % 32 == 3) ? NAN : (i % 32 == 9) ? -INFINITY : (float)g; break;
        default: x[i] = (i % 32 == 0) ? -0.0f : (float)(g * 1e-3); break;
        }
    }
    q4k_quantize_act_q8(x, a, n);
#ifdef Q4K__X86
    q4k__quantize_act_avx2(x, b, n);
#else
    q4k__quantize_act_neon(x, b, n);
#endif
    for (i = 0; i < n / 32 && bad < 0; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) bad = i;
    T_CHECK(bad < 0, "block %d (kind %d) differs: d %g/%g sum %d/%d", (int)bad, (int)(bad % 8), a[bad < 0 ? 0 : bad].d,
            b[bad < 0 ? 0 : bad].d, a[bad < 0 ? 0 : bad].sum, b[bad < 0 ? 0 : bad].sum);
    free(x), free(a), free(b);
#else
    T_NA("SIMD not compiled (Q4K_NO_SIMD, or neither x86 nor Arm64)");
#endif
}

/* ---- thread pool -------------------------------------------------------- */

typedef struct pool_probe {
    int hits[8];
    int nth_seen;
    long total;
} pool_probe;

static void pool_job(void *ctx, int ith, int nth) {
    pool_probe *p = (pool_probe *)ctx;
    p->hits[ith]++;
    p->nth_seen = nth;
    __atomic_add_fetch(&p->total, (long)ith + 1, __ATOMIC_RELAXED);
}

static void test_pool(void) {
    int nt[4] = {0, 1, 2, 3}, k, i, rep;
    for (k = 0; k < 4; k++) {
        q4k_pool *p = q4k_pool_create(nt[k]);
        pool_probe pr;
        int want = nt[k] < 1 || !Q4K__THREADS ? 1 : nt[k]; /* without pthreads every pool has 1 */
        T_CHECK(p != NULL, "create %d", nt[k]);
        if (!p) continue;
        T_CHECK(q4k_pool_threads(p) == want, "threads %d want %d", q4k_pool_threads(p), want);
        memset(&pr, 0, sizeof pr);
        for (rep = 0; rep < 2000; rep++) q4k_pool_run(p, pool_job, &pr);
        T_CHECK(pr.nth_seen == want, "nth %d", pr.nth_seen);
        for (i = 0; i < want; i++) T_CHECK(pr.hits[i] == 2000, "thread %d ran %d jobs", i, pr.hits[i]);
        T_CHECK(pr.total == 2000L * want * (want + 1) / 2, "total %ld", pr.total);
        q4k_pool_destroy(p);
    }
    {
        pool_probe pr;
        memset(&pr, 0, sizeof pr);
        q4k_pool_run(NULL, pool_job, &pr);
        T_CHECK(pr.hits[0] == 1 && pr.nth_seen == 1 && q4k_pool_threads(NULL) == 1, "NULL pool");
    }
    q4k_pool_destroy(NULL);
}

/* ---- the scalar specification against float64 -------------------------- */

/* F32 mode: y = the float dot of the exactly dequantized weights */
static void test_scalar_f32_vs_f64(void) {
    const int64_t rows = 9, cols = 3584, n = 3;
    int t;
    for (t = 0; t < N_TYPES; t++) {
        q4k_type ty = all_types[t];
        uint8_t *w = gen_weights(ty, rows, cols, 100 + t);
        float *x = gen_x(n, cols, 200 + t), *y = (float *)malloc(sizeof(float) * rows * n);
        float *wr = (float *)malloc(sizeof(float) * cols);
        q4k_cpu cpu = make_cpu(Q4K_CPU_SCALAR, Q4K_ACT_F32, NULL);
        double worst = 0.0;
        int64_t r, j, i;
        T_CHECK(q4k_matmul(&cpu, ty, w, rows, cols, x, n, y) == Q4K_OK, "%s", q4k_type_name(ty));
        for (r = 0; r < rows; r++) {
            q4k_dequantize_row(ty, w + r * q4k_row_size(ty, cols), wr, cols);
            for (j = 0; j < n; j++) {
                double ref = 0.0, mag = 0.0;
                for (i = 0; i < cols; i++) {
                    ref += (double)wr[i] * x[j * cols + i];
                    mag += fabs((double)wr[i] * x[j * cols + i]);
                }
                worst = fmax(worst, fabs(y[j * rows + r] - ref) / mag);
            }
        }
        /* 32-value blocks then 112 block sums: a few ulps of the magnitude */
        T_CHECK(worst <= 1e-6, "%s: F32 mode error %.3g of sum|w*x|", q4k_type_name(ty), worst);
        free(w), free(x), free(y), free(wr);
    }
}

/* Q8 mode: exact against the dequantized (q4k_block_q8a) activations up to
   float rounding; against the float activations within the rounding of the
   activations, sum_i |w_i| * d_block(i) / 2. */
static void test_scalar_q8_vs_f64(void) {
    const int64_t rows = 9, cols = 3584, n = 3, nb = cols / 32;
    int t;
    for (t = 0; t < N_TYPES; t++) {
        q4k_type ty = all_types[t];
        uint8_t *w = gen_weights(ty, rows, cols, 300 + t);
        float *x = gen_x(n, cols, 400 + t), *y = (float *)malloc(sizeof(float) * rows * n);
        float *wr = (float *)malloc(sizeof(float) * cols);
        q4k_block_q8a *xq = (q4k_block_q8a *)malloc(sizeof(q4k_block_q8a) * nb * n);
        q4k_cpu cpu = make_cpu(Q4K_CPU_SCALAR, Q4K_ACT_Q8, NULL);
        double worst_hat = 0.0, worst_ratio = 0.0;
        int64_t r, j, i;
        T_CHECK(q4k_matmul(&cpu, ty, w, rows, cols, x, n, y) == Q4K_OK, "%s", q4k_type_name(ty));
        q4k_quantize_act_q8(x, xq, n * cols);
        for (r = 0; r < rows; r++) {
            q4k_dequantize_row(ty, w + r * q4k_row_size(ty, cols), wr, cols);
            for (j = 0; j < n; j++) {
                double ref = 0.0, ref_hat = 0.0, mag = 0.0, bound = 0.0;
                for (i = 0; i < cols; i++) {
                    const q4k_block_q8a *qb = &xq[j * nb + i / 32];
                    double xh = (double)qb->d * qb->qs[i % 32];
                    ref += (double)wr[i] * x[j * cols + i];
                    ref_hat += (double)wr[i] * xh;
                    mag += fabs((double)wr[i] * x[j * cols + i]);
                    bound += fabs((double)wr[i]) * qb->d * (0.5 + 1e-4);
                }
                if (!is_quantized(ty)) {
                    /* float activations in Q8 mode for the float types */
                    worst_hat = fmax(worst_hat, fabs(y[j * rows + r] - ref) / mag);
                    continue;
                }
                worst_hat = fmax(worst_hat, fabs(y[j * rows + r] - ref_hat) / mag);
                T_CHECK(fabs(y[j * rows + r] - ref) <= bound + 1e-5 * mag, "%s row %d col %d: %g vs %g, bound %g",
                        q4k_type_name(ty), (int)r, (int)j, y[j * rows + r], ref, bound);
                worst_ratio = fmax(worst_ratio, fabs(ref_hat - ref) / bound);
            }
        }
        T_CHECK(worst_hat <= (is_quantized(ty) ? 2e-6 : 1e-6), "%s: error %.3g of sum|w*x| against the q8a activations",
                q4k_type_name(ty), worst_hat);
        /* the activation rounding is really there and of the derived size */
        if (is_quantized(ty)) T_CHECK(worst_ratio > 1e-3 && worst_ratio < 1.0, "%s: ratio %g", q4k_type_name(ty), worst_ratio);
        free(w), free(x), free(y), free(wr), free(xq);
    }
}

/* ---- SIMD paths against scalar ------------------------------------------ */

/* Run `path` on the whole matrix, scalar on a gathered subset of rows (all of
   them when small), and compare within tol * sum|w*x|. With n > 1, also
   check columns 0 and n-1 against separate matrix-vector products, bit for
   bit. Returns the worst relative error. */
static double check_case(q4k_type ty, q4k_act_mode act, q4k_cpu_path path, int64_t rows, int64_t cols, int64_t n,
                         uint64_t seed, double tol) {
    size_t rb = q4k_row_size(ty, cols);
    uint8_t *w = gen_weights(ty, rows, cols, seed);
    float *x = gen_x(n, cols, seed + 1);
    float *y = (float *)malloc(sizeof(float) * (size_t)(rows * n));
    int64_t *sel = (int64_t *)malloc(sizeof(int64_t) * (size_t)rows), ns = 0, r, j, i, k;
    q4k_cpu cpu = make_cpu(path, act, pool2), ref = make_cpu(Q4K_CPU_SCALAR, act, pool2);
    double worst = 0.0;
    const char *tn = q4k_type_name(ty), *pn = q4k_cpu_path_name(path);
    const char *mn = act == Q4K_ACT_Q8 ? "Q8" : "F32";

    for (i = 0; i < rows * n; i++) y[i] = NAN;
    T_CHECK(q4k_matmul(&cpu, ty, w, rows, cols, x, n, y) == Q4K_OK, "%s %s", tn, pn);
    /* which rows scalar checks: all, or the ends and a stride (~200 rows) */
    for (r = 0; r < rows; r++)
        if (rows * cols * n <= (1 << 22) || r < 48 || r >= rows - 48 || r % (rows / 100 + 1) == 7) sel[ns++] = r;
    {
        uint8_t *ws = (uint8_t *)malloc(rb * (size_t)ns + 8);
        float *ys = (float *)malloc(sizeof(float) * (size_t)(ns * n));
        float *wr = (float *)malloc(sizeof(float) * (size_t)cols);
        for (k = 0; k < ns; k++) memcpy(ws + (size_t)k * rb, w + (size_t)sel[k] * rb, rb);
        T_CHECK(q4k_matmul(&ref, ty, ws, ns, cols, x, n, ys) == Q4K_OK, "scalar");
        for (k = 0; k < ns; k++) {
            q4k_dequantize_row(ty, ws + (size_t)k * rb, wr, cols);
            for (j = 0; j < n; j++) {
                double mag = 0.0, e;
                float got = y[j * rows + sel[k]];
                for (i = 0; i < cols; i++) mag += fabs((double)wr[i] * x[j * cols + i]);
                e = fabs((double)got - ys[j * ns + k]) / (mag + 1e-30);
                if (!(e <= tol))
                    T_CHECK(e <= tol, "%s %s %s %dx%d n=%d: row %d col %d: %.9g vs scalar %.9g (rel %.3g)", tn, mn,
                            pn, (int)rows, (int)cols, (int)n, (int)sel[k], (int)j, got, ys[j * ns + k], e);
                if (e > worst || e != e) worst = e;
            }
        }
        free(ws), free(ys), free(wr);
    }
    if (n > 1) {
        float *yv = (float *)malloc(sizeof(float) * (size_t)rows);
        int64_t jj[2];
        jj[0] = 0;
        jj[1] = n - 1;
        for (k = 0; k < 2; k++) {
            T_CHECK(q4k_matmul(&cpu, ty, w, rows, cols, x + jj[k] * cols, 1, yv) == Q4K_OK, "matvec");
            for (r = 0; r < rows; r++)
                if (memcmp(&yv[r], &y[jj[k] * rows + r], sizeof(float)) != 0) {
                    T_CHECK(0, "%s %s %s %dx%d n=%d: column %d row %d: matmul %.9g, matvec %.9g", tn, mn, pn, (int)rows,
                            (int)cols, (int)n, (int)jj[k], (int)r, y[jj[k] * rows + r], yv[r]);
                    break;
                }
        }
        free(yv);
    }
    free(w), free(x), free(y), free(sel);
    if (worst > worst_seen) worst_seen = worst;
    return worst;
}

/* every type, both modes, odd small shapes and tiles of 1, 7, 64 columns */
static void paths_small(q4k_cpu_path path) {
    static const int64_t rows_list[] = {1, 3, 17, 64};
    static const int64_t ns[] = {1, 7, 64};
    int t, a, ri, ci, ni;
    for (t = 0; t < N_TYPES; t++) {
        q4k_type ty = all_types[t];
        int64_t bs = q4k_type_traits((int)ty).block_size;
        /* one block, three blocks, odd lengths for the float types */
        int64_t cols_list[4];
        cols_list[0] = bs == 1 ? 32 : bs;
        cols_list[1] = bs == 1 ? 96 : 3 * bs;
        cols_list[2] = bs == 1 ? 37 : 2048;
        cols_list[3] = bs == 1 ? 1 : 3584;
        for (a = 0; a < 2; a++)
            for (ri = 0; ri < 4; ri++)
                for (ci = 0; ci < 4; ci++)
                    for (ni = 0; ni < 3; ni++) {
                        if (t_quick() && (ci == 3 || ni == 2) && ri > 0) continue;
                        check_case(ty, a ? Q4K_ACT_F32 : Q4K_ACT_Q8, path, rows_list[ri], cols_list[ci], ns[ni],
                                   (uint64_t)(1000 * t + 100 * ri + 10 * ci + ni), TOL);
                    }
    }
    /* prefill-sized: 512 columns on a small matrix */
    if (!t_quick())
        for (t = 0; t < N_TYPES; t++) {
            check_case(all_types[t], Q4K_ACT_Q8, path, 19, 512, 512, 77 + t, TOL);
            check_case(all_types[t], Q4K_ACT_F32, path, 19, 512, 512, 88 + t, TOL);
        }
}

/* the Qwen2.5-7B shapes: q/o 3584x3584, k/v 512x3584, gate/up 18944x3584,
   down 3584x18944, lm_head 152064x3584 */
static void paths_big(q4k_cpu_path path) {
    static const int64_t shapes[5][2] = {{3584, 3584}, {512, 3584}, {18944, 3584}, {3584, 18944}, {152064, 3584}};
    static const q4k_type big_types[] = {Q4K_TYPE_Q4_K, Q4K_TYPE_Q6_K};
    int s, t;
    /* Q4K_TEST_BIG=1 keeps the whole list in quick mode: tests/test_neon.sh
       runs the small cases quick under emulation, these in full */
    const char *big = getenv("Q4K_TEST_BIG");
    if (t_quick() && !(big && *big && *big != '0')) {
        check_case(Q4K_TYPE_Q4_K, Q4K_ACT_Q8, path, 512, 3584, 1, 5, TOL);
        check_case(Q4K_TYPE_Q6_K, Q4K_ACT_Q8, path, 512, 3584, 1, 6, TOL);
        return;
    }
    for (s = 0; s < 5; s++)
        for (t = 0; t < 2; t++) check_case(big_types[t], Q4K_ACT_Q8, path, shapes[s][0], shapes[s][1], 1, 10 * s + t, TOL);
    /* the other types and F32 mode on the square shape, prefill tiles on the big ones */
    for (t = 0; t < N_TYPES; t++) {
        if (all_types[t] != Q4K_TYPE_Q4_K && all_types[t] != Q4K_TYPE_Q6_K)
            check_case(all_types[t], Q4K_ACT_Q8, path, 3584, 3584, 1, 60 + t, TOL);
        check_case(all_types[t], Q4K_ACT_F32, path, 512, 3584, 1, 70 + t, TOL);
    }
    check_case(Q4K_TYPE_Q4_K, Q4K_ACT_Q8, path, 3584, 3584, 64, 90, TOL);
    check_case(Q4K_TYPE_Q6_K, Q4K_ACT_Q8, path, 3584, 18944, 7, 91, TOL);
    check_case(Q4K_TYPE_Q4_K, Q4K_ACT_Q8, path, 18944, 3584, 7, 92, TOL);
}

/* Float mode decodes quantized rows with the path's SIMD decoder: the floats
   must be q4k_dequantize_row's bit for bit, for modest scales and for every
   finite fp16 scale (the products stay exact, only the min subtraction
   rounds). */
static void test_decode_simd_exact(void) {
    static const q4k_type qt[] = {Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0, Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};
    int p, t, v, checked = 0;
    for (p = Q4K_CPU_SCALAR; p <= Q4K_CPU_NEON; p++) {
        const q4k__kernels *k = NULL;
#ifdef Q4K__X86
        if (p == Q4K_CPU_AVX2) k = &q4k__kernels_avx2;
        if (p == Q4K_CPU_AVX512) k = &q4k__kernels_avx512;
#endif
#ifdef Q4K__NEON
        if (p == Q4K_CPU_NEON) k = &q4k__kernels_neon;
#endif
        if (!k || !k->decode || !path_usable((q4k_cpu_path)p)) continue;
        for (t = 0; t < 6; t++)
            for (v = 0; v < 2; v++) {
                const int64_t rows = 8, cols = 2048;
                q4k_type_info ti = q4k_type_traits((int)qt[t]);
                uint8_t *w = gen_weights(qt[t], rows, cols, (uint64_t)(500 + 10 * t + v));
                float *a = (float *)malloc(sizeof(float) * (size_t)cols), *b = (float *)malloc(sizeof(float) * (size_t)cols);
                size_t rb = q4k_row_size(qt[t], cols);
                int64_t r, blk, i, nblk = rows * cols / ti.block_size;
                if (v) { /* every block scale a random finite fp16 */
                    t_rng rng;
                    rng.s = 99 + (uint64_t)t;
                    for (blk = 0; blk < nblk; blk++) {
                        uint8_t *bp = w + (size_t)blk * ti.type_size;
                        int off = qt[t] == Q4K_TYPE_Q6_K ? 208 : 0;
                        uint16_t h;
                        do h = (uint16_t)t_rng_next(&rng); while ((h & 0x7c00) == 0x7c00);
                        put16(bp + off, h);
                        if (qt[t] == Q4K_TYPE_Q4_K || qt[t] == Q4K_TYPE_Q5_K) {
                            do h = (uint16_t)t_rng_next(&rng); while ((h & 0x7c00) == 0x7c00);
                            put16(bp + 2, h);
                        }
                    }
                }
                for (r = 0; r < rows; r++) {
                    for (i = 0; i < cols; i++) a[i] = b[i] = NAN;
                    T_CHECK(q4k_dequantize_row(qt[t], w + (size_t)r * rb, a, cols) == Q4K_OK, "dequantize");
                    T_CHECK(k->decode(qt[t], w + (size_t)r * rb, b, cols) == 1, "%s %s: not decoded",
                            q4k_cpu_path_name((q4k_cpu_path)p), q4k_type_name(qt[t]));
                    for (i = 0; i < cols; i++)
                        if (memcmp(&a[i], &b[i], sizeof(float))) {
                            T_CHECK(0, "%s %s %s scales: row %d value %d: %.9g, q4k_dequantize_row %.9g",
                                    q4k_cpu_path_name((q4k_cpu_path)p), q4k_type_name(qt[t]), v ? "random" : "modest",
                                    (int)r, (int)i, b[i], a[i]);
                            break;
                        }
                }
                checked++;
                free(w), free(a), free(b);
            }
    }
    if (!checked) T_NA("no SIMD decoder on this CPU");
}

static void test_scalar_tiles(void) { paths_small(Q4K_CPU_SCALAR); }

static void test_avx2_vs_scalar(void) {
    if (!((q4k_cpu_paths_compiled() >> Q4K_CPU_AVX2) & 1)) T_NA("AVX2 path not compiled (Q4K_NO_SIMD or not x86)");
    if (!path_usable(Q4K_CPU_AVX2)) T_NA("CPU lacks AVX2/FMA");
    worst_seen = 0.0;
    paths_small(Q4K_CPU_AVX2);
    printf("  worst |path - scalar| / sum|w*x|: %.3g\n", worst_seen);
}

static void test_avx2_vs_scalar_7b_shapes(void) {
    if (!((q4k_cpu_paths_compiled() >> Q4K_CPU_AVX2) & 1)) T_NA("AVX2 path not compiled (Q4K_NO_SIMD or not x86)");
    if (!path_usable(Q4K_CPU_AVX2)) T_NA("CPU lacks AVX2/FMA");
    worst_seen = 0.0;
    paths_big(Q4K_CPU_AVX2);
    printf("  worst |path - scalar| / sum|w*x|: %.3g\n", worst_seen);
}

static void test_avx512_vs_scalar(void) {
    if (!((q4k_cpu_paths_compiled() >> Q4K_CPU_AVX512) & 1)) T_NA("AVX-512 path not compiled (Q4K_NO_SIMD or not x86)");
    if (!path_usable(Q4K_CPU_AVX512)) T_NA("CPU lacks AVX-512");
    worst_seen = 0.0;
    paths_small(Q4K_CPU_AVX512);
    printf("  worst |path - scalar| / sum|w*x|: %.3g\n", worst_seen);
}

static void test_avx512_vs_scalar_7b_shapes(void) {
    if (!((q4k_cpu_paths_compiled() >> Q4K_CPU_AVX512) & 1)) T_NA("AVX-512 path not compiled (Q4K_NO_SIMD or not x86)");
    if (!path_usable(Q4K_CPU_AVX512)) T_NA("CPU lacks AVX-512");
    worst_seen = 0.0;
    paths_big(Q4K_CPU_AVX512);
    printf("  worst |path - scalar| / sum|w*x|: %.3g\n", worst_seen);
}

static void test_neon_vs_scalar(void) {
    if (!((q4k_cpu_paths_compiled() >> Q4K_CPU_NEON) & 1)) T_NA("NEON path not compiled (Q4K_NO_SIMD or not Arm64)");
    if (!path_usable(Q4K_CPU_NEON)) T_NA("CPU lacks NEON");
#ifdef Q4K__NEON_DOTPROD
    printf("  NEON integer dots: sdot (dot-product extension)\n");
#else
    printf("  NEON integer dots: smull/smlal (base ARMv8-A)\n");
#endif
    worst_seen = 0.0;
    paths_small(Q4K_CPU_NEON);
    printf("  worst |path - scalar| / sum|w*x|: %.3g\n", worst_seen);
}

static void test_neon_vs_scalar_7b_shapes(void) {
    if (!((q4k_cpu_paths_compiled() >> Q4K_CPU_NEON) & 1)) T_NA("NEON path not compiled (Q4K_NO_SIMD or not Arm64)");
    if (!path_usable(Q4K_CPU_NEON)) T_NA("CPU lacks NEON");
    worst_seen = 0.0;
    paths_big(Q4K_CPU_NEON);
    printf("  worst |path - scalar| / sum|w*x|: %.3g\n", worst_seen);
}

/* 1, 2 and 3 threads: bit-identical, on every usable path */
static void test_thread_invariance(void) {
    static const int64_t ns[] = {1, 7};
    q4k_pool *pools[3];
    int p, t, ni, k;
    pools[0] = NULL;
    pools[1] = pool2;
    pools[2] = pool3;
    T_CHECK(!Q4K__THREADS || (q4k_pool_threads(pool2) == 2 && q4k_pool_threads(pool3) == 3), "pools");
    for (p = Q4K_CPU_SCALAR; p <= Q4K_CPU_NEON; p++) {
        if (!path_usable((q4k_cpu_path)p)) continue;
        for (t = 0; t < N_TYPES; t++)
            for (ni = 0; ni < 2; ni++) {
                q4k_type ty = all_types[t];
                const int64_t rows = 37, cols = 512, n = ns[ni];
                uint8_t *w = gen_weights(ty, rows, cols, 500 + t);
                float *x = gen_x(n, cols, 600 + t);
                float *y[3];
                int a;
                for (a = 0; a < 2; a++) {
                    for (k = 0; k < 3; k++) {
                        q4k_cpu cpu = make_cpu((q4k_cpu_path)p, a ? Q4K_ACT_F32 : Q4K_ACT_Q8, pools[k]);
                        y[k] = (float *)malloc(sizeof(float) * rows * n);
                        T_CHECK(q4k_matmul(&cpu, ty, w, rows, cols, x, n, y[k]) == Q4K_OK, "run");
                    }
                    T_CHECK(memcmp(y[0], y[1], sizeof(float) * rows * n) == 0, "%s %s n=%d: 1 vs 2 threads",
                            q4k_cpu_path_name((q4k_cpu_path)p), q4k_type_name(ty), (int)n);
                    T_CHECK(memcmp(y[0], y[2], sizeof(float) * rows * n) == 0, "%s %s n=%d: 1 vs 3 threads",
                            q4k_cpu_path_name((q4k_cpu_path)p), q4k_type_name(ty), (int)n);
                    for (k = 0; k < 3; k++) free(y[k]);
                }
                free(w), free(x);
            }
    }
}

/* ---- arguments and path selection --------------------------------------- */

static void test_matmul_args(void) {
    q4k_cpu cpu = make_cpu(Q4K_CPU_SCALAR, Q4K_ACT_Q8, NULL), bad;
    uint8_t w[4 * 144];
    float x[512], y[8];
    memset(w, 0, sizeof w);
    memset(x, 0, sizeof x);
    T_CHECK(q4k_matmul(NULL, Q4K_TYPE_Q4_K, w, 1, 256, x, 1, y) == Q4K_ERR_INVALID_ARG, "cpu NULL");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, NULL, 1, 256, x, 1, y) == Q4K_ERR_INVALID_ARG, "w NULL");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 1, 256, NULL, 1, y) == Q4K_ERR_INVALID_ARG, "x NULL");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 1, 256, x, 1, NULL) == Q4K_ERR_INVALID_ARG, "y NULL");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 1, 128, x, 1, y) == Q4K_ERR_INVALID_ARG, "cols 128 for Q4_K");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q8_0, w, 1, 48, x, 1, y) == Q4K_ERR_INVALID_ARG, "cols 48 for Q8_0");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 1, 0, x, 1, y) == Q4K_ERR_INVALID_ARG, "cols 0");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, -1, 256, x, 1, y) == Q4K_ERR_INVALID_ARG, "rows -1");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 1, 256, x, -1, y) == Q4K_ERR_INVALID_ARG, "n -1");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q2_K, w, 1, 256, x, 1, y) == Q4K_ERR_UNSUPPORTED_TYPE, "Q2_K");
    T_CHECK(q4k_matmul(&cpu, (q4k_type)77, w, 1, 256, x, 1, y) == Q4K_ERR_UNSUPPORTED_TYPE, "type 77");
    bad = cpu;
    bad.act = (q4k_act_mode)5;
    T_CHECK(q4k_matmul(&bad, Q4K_TYPE_Q4_K, w, 1, 256, x, 1, y) == Q4K_ERR_INVALID_ARG, "act 5");
    bad = cpu;
    bad.path = (q4k_cpu_path)9;
    T_CHECK(q4k_matmul(&bad, Q4K_TYPE_Q4_K, w, 1, 256, x, 1, y) == Q4K_ERR_INVALID_ARG, "path 9");
    bad.path = Q4K_CPU_NEON;
    if (path_usable(Q4K_CPU_NEON))
        T_CHECK(q4k_matmul(&bad, Q4K_TYPE_Q4_K, w, 1, 256, x, 1, y) == Q4K_OK, "neon");
    else
        T_CHECK(q4k_matmul(&bad, Q4K_TYPE_Q4_K, w, 1, 256, x, 1, y) == Q4K_ERR_UNSUPPORTED, "neon");
    y[0] = 42.0f;
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 0, 256, x, 1, y) == Q4K_OK && y[0] == 42.0f, "rows 0");
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 1, 256, x, 0, y) == Q4K_OK && y[0] == 42.0f, "n 0");
    /* zero weights, zero activations: exactly 0 (no NaN from d = 0) */
    T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 2, 512, x, 1, y) == Q4K_OK && y[0] == 0.0f && y[1] == 0.0f, "zeros");
}

static void test_resolve_path(void) {
    q4k_cpu_path p = Q4K_CPU_AUTO;
    q4k_error err;
    unsigned usable = q4k_cpu_paths_compiled() & q4k_cpu_paths_detected();
    q4k_result r;
    T_CHECK(usable & (1u << Q4K_CPU_SCALAR), "scalar always usable");
    unsetenv("Q4K_CPU");
    T_CHECK(q4k_cpu_resolve_path(Q4K_CPU_AUTO, &p, NULL) == Q4K_OK && p != Q4K_CPU_AUTO && (usable >> p & 1),
            "auto -> %d", (int)p);
#ifdef Q4K__X86
    if (usable & (1u << Q4K_CPU_AVX2)) T_CHECK(p >= Q4K_CPU_AVX2, "auto picked %s", q4k_cpu_path_name(p));
#endif
#ifdef Q4K__NEON
    T_CHECK(p == Q4K_CPU_NEON, "auto picked %s on Arm64", q4k_cpu_path_name(p));
#endif
    setenv("Q4K_CPU", "neon", 1);
    r = q4k_cpu_resolve_path(Q4K_CPU_AUTO, &p, &err);
    if (usable & (1u << Q4K_CPU_NEON))
        T_CHECK(r == Q4K_OK && p == Q4K_CPU_NEON, "env neon on Arm64: %s", q4k_result_name(r));
    else
        T_CHECK(r == Q4K_ERR_UNSUPPORTED && strstr(err.msg, "neon"), "env neon elsewhere: %s (%s)",
                q4k_result_name(r), err.msg);
    setenv("Q4K_CPU", "scalar", 1);
    T_CHECK(q4k_cpu_resolve_path(Q4K_CPU_AUTO, &p, NULL) == Q4K_OK && p == Q4K_CPU_SCALAR, "env scalar");
    setenv("Q4K_CPU", "avx512", 1);
    r = q4k_cpu_resolve_path(Q4K_CPU_AUTO, &p, &err);
    if (usable & (1u << Q4K_CPU_AVX512))
        T_CHECK(r == Q4K_OK && p == Q4K_CPU_AVX512, "env avx512 on an AVX-512 CPU: %s", q4k_result_name(r));
    else
        T_CHECK(r == Q4K_ERR_UNSUPPORTED && strstr(err.msg, "avx512"), "env avx512 without it: %s (%s)",
                q4k_result_name(r), err.msg);
    setenv("Q4K_CPU", "avx3000", 1);
    r = q4k_cpu_resolve_path(Q4K_CPU_AUTO, &p, &err);
    T_CHECK(r == Q4K_ERR_INVALID_ARG && strstr(err.msg, "avx3000"), "garbage: %s (%s)", q4k_result_name(r), err.msg);
    {
        /* matmul with path AUTO reads the variable too */
        q4k_cpu cpu = make_cpu(Q4K_CPU_AUTO, Q4K_ACT_Q8, NULL);
        uint8_t w[144];
        float x[256], y[1];
        memset(w, 0, sizeof w);
        memset(x, 0, sizeof x);
        T_CHECK(q4k_matmul(&cpu, Q4K_TYPE_Q4_K, w, 1, 256, x, 1, y) == Q4K_ERR_INVALID_ARG, "matmul with garbage env");
    }
    unsetenv("Q4K_CPU");
    T_CHECK(q4k_cpu_resolve_path(Q4K_CPU_SCALAR, &p, NULL) == Q4K_OK && p == Q4K_CPU_SCALAR, "explicit scalar");
    T_CHECK(q4k_cpu_resolve_path((q4k_cpu_path)42, &p, NULL) == Q4K_ERR_INVALID_ARG, "path 42");
    if (!(usable & (1u << Q4K_CPU_AVX512)))
        T_CHECK(q4k_cpu_resolve_path(Q4K_CPU_AVX512, &p, NULL) == Q4K_ERR_UNSUPPORTED, "explicit avx512");
}

int main(void) {
    pool2 = q4k_pool_create(2);
    pool3 = q4k_pool_create(3);
    T_RUN(test_quantize_act_by_hand);
    T_RUN(test_quantize_act_random);
    T_RUN(test_quantize_act_simd);
    T_RUN(test_pool);
    T_RUN(test_scalar_f32_vs_f64);
    T_RUN(test_scalar_q8_vs_f64);
    T_RUN(test_scalar_tiles);
    T_RUN(test_avx2_vs_scalar);
    T_RUN(test_avx512_vs_scalar);
    T_RUN(test_avx2_vs_scalar_7b_shapes);
    T_RUN(test_avx512_vs_scalar_7b_shapes);
    T_RUN(test_neon_vs_scalar);
    T_RUN(test_neon_vs_scalar_7b_shapes);
    T_RUN(test_decode_simd_exact);
    T_RUN(test_thread_invariance);
    T_RUN(test_matmul_args);
    T_RUN(test_resolve_path);
    q4k_pool_destroy(pool2);
    q4k_pool_destroy(pool3);
    T_EXIT();
}
