/* The Vulkan backend's forward-pass operations against the CPU: the op
   entry points of q4k_backend (embedding, rmsnorm, rope, attention,
   quantize_act) against the CPU backend's, and the recording layer
   (q4k__vk_rec_*: kv_store, add, swiglu, scale, perturb, argmax, matmul
   inside a recorded buffer, the faults' flags), on lavapipe in CI, with the
   device's limits and with small forced ones that split the tables and the
   KV cache over several bindings. Outputs are poisoned (NaN) before each
   run. Bounds: bit for bit where the CPU's result is exact (embedding rows,
   f16 rounding, the quantizer, add, scale, argmax), else 1e-5 x the sum of
   the magnitudes of the terms (worst ratio reported). */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "q4k_vulkan.h"
#include "t.h"
#include "t_vk.h"
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

static q4k_backend *cpu, *vk_dev, *vk_small, *vk_plain, *vk_tiny;
static char vk_why[600];

#define SKIP_WHY(msg)                                                          \
    do {                                                                       \
        char why_[200];                                                        \
        snprintf(why_, sizeof why_, "%.190s", msg);                            \
        T_SKIP(why_);                                                          \
    } while (0)

static q4k_backend *make_backend(uint64_t range, uint64_t alloc, unsigned disable) {
    return t_vk_backend(range, alloc, disable, vk_why, sizeof vk_why);
}

typedef struct named { q4k_backend *b; const char *name; } named;
static named backends[4];
static int n_backends;

static q4k__vk_backend *VB(q4k_backend *b) { return (q4k__vk_backend *)b->impl; }

static float fbits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- one submission of recorded ops on the backend's command buffer ---- */

typedef struct rig {
    q4k__vk_backend *vb;
    q4k__vk_arena arena;
    q4k__vk_job job;
} rig;

static void rig_init(rig *g, q4k_backend *b) {
    memset(g, 0, sizeof *g);
    g->vb = VB(b);
}

/* a poisoned binding, with data when given */
static q4k__vk_slice rig_slice(rig *g, uint64_t bytes, const void *data) {
    q4k__vk_slice s;
    q4k_error err;
    memset(&s, 0, sizeof s);
    if (q4k__vk_slice_get(g->vb, &g->arena, bytes, bytes, &s, &err)) {
        printf("  slice of %llu bytes: %s\n", (unsigned long long)bytes, err.msg);
        return s;
    }
    q4k__vk_poison(s.map, s.size);
    if (data) memcpy(s.map, data, (size_t)bytes);
    return s;
}

static void rig_free(rig *g) {
    q4k__vk_abort(g->vb, &g->job);
    q4k__vk_arena_free(g->vb, &g->arena);
}

/* ---- compile every kernel ---------------------------------------------- */

static void test_vk_ops_compile(void) {
    int i, k, id;
    q4k_error err;
    if (!vk_dev) SKIP_WHY(vk_why);
    for (k = 0; k < n_backends; k++)
        for (id = 0; id < Q4K__VK_NPIPE; id++) {
            i = q4k__vk_pipeline(VB(backends[k].b), id, &err);
            T_CHECK(i == Q4K_OK, "%s: pipeline %d: %s", backends[k].name, id, err.msg);
        }
}

/* ---- embedding: bit for bit every type --------------------------------- */

/* random bytes with sane fp16 scales; float types from Gaussian floats */
static unsigned char *make_table(q4k_type type, int64_t rows, int64_t cols, t_rng *rng) {
    size_t rs = q4k_row_size(type, cols), bsz = q4k_type_traits((int)type).type_size, total = rs * (size_t)rows, o;
    unsigned char *w = (unsigned char *)malloc(total + 8);
    int64_t r, c;
    if (!w) return NULL;
    if (type == Q4K_TYPE_F32 || type == Q4K_TYPE_F16 || type == Q4K_TYPE_BF16) {
        float *row = (float *)malloc((size_t)cols * sizeof(float));
        for (r = 0; r < rows && row; r++) {
            for (c = 0; c < cols; c++) row[c] = (float)t_rng_gauss(rng);
            q4k_quantize_row(type, row, w + (size_t)r * rs, cols);
        }
        free(row);
        return w;
    }
    for (o = 0; o < total; o += 8) {
        unsigned long long v = t_rng_next(rng);
        memcpy(w + o, &v, 8);
    }
    for (o = 0; o < total; o += bsz) {
        uint16_t d = q4k_fp32_to_fp16((float)(1e-3 + t_rng_unif(rng)));
        if (type == Q4K_TYPE_Q6_K) memcpy(w + o + 208, &d, 2);
        else memcpy(w + o, &d, 2);
        if (type == Q4K_TYPE_Q4_K || type == Q4K_TYPE_Q5_K) { /* dmin: any finite fp16, subnormals too */
            uint16_t m;
            memcpy(&m, w + o + 2, 2);
            if (((m >> 10) & 0x1f) == 0x1f) m ^= 0x4000;
            memcpy(w + o + 2, &m, 2);
        }
    }
    return w;
}

static void test_vk_embedding(void) {
    static const q4k_type types[] = {Q4K_TYPE_F32, Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0,
                                     Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};
    static const int64_t dims[] = {3584, 512};
    static const int32_t toks[] = {0, 37, 1099};
    int t, di, k, ti;
    t_rng rng = {0xe1be77ull};
    if (!vk_dev) SKIP_WHY(vk_why);
    for (t = 0; t < 9; t++)
        for (di = 0; di < 2; di++) {
            int64_t d = dims[di], rows = 1100, i;
            unsigned char *tab = make_table(types[t], rows, d, &rng);
            float *want = (float *)malloc((size_t)d * 4), *got = (float *)malloc((size_t)d * 4);
            q4k_error err;
            for (k = 0; k < n_backends; k++)
                for (ti = 0; ti < 3; ti++) {
                    int64_t bad = 0;
                    q4k_result r1 = cpu->embedding(cpu, types[t], tab, d, toks[ti], want, &err);
                    q4k_result r2 = backends[k].b->embedding(backends[k].b, types[t], tab, d, toks[ti], got, &err);
                    T_CHECK(r1 == Q4K_OK && r2 == Q4K_OK, "%s %s: %s", q4k_type_name(types[t]), backends[k].name, err.msg);
                    if (r1 || r2) continue;
                    for (i = 0; i < d; i++) bad += memcmp(&want[i], &got[i], 4) != 0;
                    T_CHECK(bad == 0, "%s d %lld token %d on %s: %lld values differ (first: %g / %g)", q4k_type_name(types[t]),
                            (long long)d, toks[ti], backends[k].name, (long long)bad, want[0], got[0]);
                }
            free(tab);
            free(want);
            free(got);
        }
    /* the tiny limits spread the 1024-row window over bindings: the row is found in one of them */
    if (vk_tiny) {
        q4k_vk_backend_info info;
        T_CHECK(q4k_vk_backend_info_get(vk_tiny, &info) == Q4K_OK && info.dispatches > 1,
                "the tiny backend's last embedding made %lld dispatches", (long long)info.dispatches);
    }
}

static void q4k_rows_swapped(const unsigned char *w, int64_t rows, int64_t cols, float *out);

/* the q4k_scales flag: Q4_K rows decoded with each sub-block's scale and min swapped */
static void test_vk_embedding_q4k_scales(void) {
    int64_t d = 512, i, bad = 0;
    t_rng rng = {0x5ca1e5ull};
    unsigned char *tab;
    float want[512];
    uint32_t tok = 2;
    rig g;
    q4k__vk_split s;
    q4k__vk_slice prm, out;
    q4k_error err;
    q4k_result r;
    if (!vk_dev) SKIP_WHY(vk_why);
    tab = make_table(Q4K_TYPE_Q4_K, 3, d, &rng);
    q4k_rows_swapped(tab + 2 * 288, 1, d, want);
    rig_init(&g, vk_dev);
    r = q4k__vk_split_new(g.vb, &g.arena, 3, 288, &s, &err);
    T_CHECK(r == Q4K_OK, "%s", err.msg);
    if (!r) {
        q4k__vk_split_upload(&s, tab);
        prm = rig_slice(&g, 4, &tok);
        out = rig_slice(&g, (uint64_t)d * 4, NULL);
        r = q4k__vk_begin(g.vb, &g.job, 4, &err);
        if (!r) r = q4k__vk_rec_embedding(g.vb, &g.job, Q4K_TYPE_Q4_K, &s, d, prm, 0, 1, out, Q4K__VK_F_Q4K_SCALES, &err);
        if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
        T_CHECK(r == Q4K_OK, "%s", err.msg);
        for (i = 0; i < d && !r; i++) bad += memcmp(&want[i], (float *)out.map + i, 4) != 0;
        T_CHECK(bad == 0, "%lld values differ", (long long)bad);
    }
    q4k__vk_split_free(&s);
    rig_free(&g);
    free(tab);
}

/* ---- rmsnorm ------------------------------------------------------------ */

static void test_vk_rmsnorm(void) {
    static const int64_t dims[] = {3584, 896, 100};
    t_rng rng = {0x4a5ull};
    int di, k;
    double worst = 0;
    if (!vk_dev) SKIP_WHY(vk_why);
    for (di = 0; di < 3; di++) {
        int64_t d = dims[di], rows = 7, i;
        float *x = (float *)malloc((size_t)(rows * d) * 4), *w = (float *)malloc((size_t)d * 4);
        float *want = (float *)malloc((size_t)(rows * d) * 4), *got = (float *)malloc((size_t)(rows * d) * 4);
        q4k_error err;
        for (i = 0; i < rows * d; i++) x[i] = (float)(t_rng_gauss(&rng) * (i < d ? 1e-3 : 30.0));
        for (i = 0; i < d; i++) w[i] = (float)(0.5 + t_rng_unif(&rng));
        T_CHECK(cpu->rmsnorm(cpu, x, w, d, rows, 1e-6f, want, &err) == Q4K_OK, "%s", err.msg);
        for (k = 0; k < n_backends; k++) {
            int64_t bad = 0;
            q4k_result r = backends[k].b->rmsnorm(backends[k].b, x, w, d, rows, 1e-6f, got, &err);
            T_CHECK(r == Q4K_OK, "%s: %s", backends[k].name, err.msg);
            if (r) continue;
            for (i = 0; i < rows * d; i++) {
                double bound = 1e-5 * fabs((double)want[i]) + 1e-30, e = fabs((double)got[i] - want[i]);
                if (!(e <= bound)) bad++;
                if (e / bound > worst) worst = e / bound;
            }
            T_CHECK(bad == 0, "d %lld on %s: %lld values out of bounds", (long long)d, backends[k].name, (long long)bad);
        }
        free(x);
        free(w);
        free(want);
        free(got);
    }
    printf("  rmsnorm: worst %.3g of the bound\n", worst);
}

/* f16_acc: the CPU's fault, step by step */
static void test_vk_rmsnorm_f16_acc(void) {
    int64_t d = 896, i;
    float x[896], w[896], want[896], ss = 0.0f, scale;
    t_rng rng = {0xf16ull};
    rig g;
    q4k__vk_slice xs, ws, ys;
    q4k_error err;
    q4k_result r;
    int bad = 0;
    if (!vk_dev) SKIP_WHY(vk_why);
    for (i = 0; i < d; i++) {
        x[i] = (float)(t_rng_gauss(&rng) * 12.0);
        w[i] = (float)(0.5 + t_rng_unif(&rng));
    }
    for (i = 0; i < d; i++) ss = q4k_fp16_to_fp32(q4k_fp32_to_fp16(ss + x[i] * x[i]));
    scale = (float)(1.0 / sqrt((double)ss / (double)d + 1e-6));
    for (i = 0; i < d; i++) want[i] = x[i] * scale * w[i];
    rig_init(&g, vk_dev);
    xs = rig_slice(&g, (uint64_t)d * 4, x);
    ws = rig_slice(&g, (uint64_t)d * 4, w);
    ys = rig_slice(&g, (uint64_t)d * 4, NULL);
    r = q4k__vk_begin(g.vb, &g.job, 1, &err);
    if (!r) r = q4k__vk_rec_rmsnorm(g.vb, &g.job, xs, ws, ys, d, 1, 1e-6f, Q4K__VK_F_F16_ACC, &err);
    if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
    T_CHECK(r == Q4K_OK, "%s", err.msg);
    for (i = 0; i < d && !r; i++) bad += !(fabsf(((float *)ys.map)[i] - want[i]) <= 1e-5f * fabsf(want[i]));
    T_CHECK(bad == 0, "%d values differ from the CPU's f16_acc (sum of squares %g)", bad, ss);
    rig_free(&g);
}

/* ---- rope --------------------------------------------------------------- */

static void test_vk_rope(void) {
    int neox, k, c;
    t_rng rng = {0x40beull};
    double worst = 0;
    static const struct { int64_t n_tok, n_head, hd, n_rot, pos0; } cases[] = {{1, 28, 128, 128, 4321}, {7, 4, 128, 128, 0},
                                                                              {64, 3, 64, 32, 100}};
    float ff[64];
    if (!vk_dev) SKIP_WHY(vk_why);
    for (c = 0; c < 64; c++) ff[c] = (float)(1.0 + c * 0.25);
    for (c = 0; c < 3; c++)
        for (neox = 0; neox < 2; neox++) {
            int64_t n = cases[c].n_tok * cases[c].n_head * cases[c].hd, i;
            float *x = (float *)malloc((size_t)n * 4), *want = (float *)malloc((size_t)n * 4), *got = (float *)malloc((size_t)n * 4);
            const float *freq = c == 2 ? ff : NULL;
            q4k_error err;
            for (i = 0; i < n; i++) x[i] = (float)t_rng_gauss(&rng);
            memcpy(want, x, (size_t)n * 4);
            T_CHECK(cpu->rope(cpu, want, cases[c].n_tok, cases[c].n_head, cases[c].hd, cases[c].n_rot, neox, cases[c].pos0,
                              1000000.0, freq, &err) == Q4K_OK, "%s", err.msg);
            for (k = 0; k < n_backends; k++) {
                int64_t bad = 0;
                q4k_result r;
                memcpy(got, x, (size_t)n * 4);
                r = backends[k].b->rope(backends[k].b, got, cases[c].n_tok, cases[c].n_head, cases[c].hd, cases[c].n_rot, neox,
                                        cases[c].pos0, 1000000.0, freq, &err);
                T_CHECK(r == Q4K_OK, "%s: %s", backends[k].name, err.msg);
                if (r) continue;
                for (i = 0; i < n; i++) { /* the terms: |x0 c| + |x1 s| <= |x0| + |x1| */
                    double bound = 1e-5 * 2.0 * (fabs(x[i]) + fabs(x[i ^ 1]) + fabs(x[(i + cases[c].n_rot / 2) % n])) + 1e-30;
                    double e = fabs((double)got[i] - want[i]);
                    if (!(e <= bound)) bad++;
                    if (e / bound > worst) worst = e / bound;
                }
                T_CHECK(bad == 0, "case %d neox %d on %s: %lld values out of bounds", c, neox, backends[k].name, (long long)bad);
            }
            free(x);
            free(want);
            free(got);
        }
    printf("  rope: worst %.3g of the bound\n", worst);
}

/* the table split over bindings, the position read from the device */
static void test_vk_rope_split_table(void) {
    int64_t n_ctx = 300, n_rot = 128, half = 64, hd = 128, n_head = 2, n_tok = 5, pos0 = 190, j, i, bad = 0;
    float *tab = (float *)malloc((size_t)(n_ctx * n_rot) * 4), x[5 * 2 * 128], want[5 * 2 * 128];
    uint32_t prm_v[2] = {7, (uint32_t)pos0};
    t_rng rng = {0x7ab1eull};
    rig g;
    q4k__vk_split s;
    q4k__vk_slice xs, prm;
    q4k_error err;
    q4k_result r;
    if (!vk_tiny) {
        free(tab);
        SKIP_WHY(vk_why);
    }
    for (j = 0; j < n_ctx; j++)
        for (i = 0; i < half; i++) q4k_rope_cos_sin(j, i, n_rot, 10000.0, 1.0, &tab[(j * half + i) * 2], &tab[(j * half + i) * 2 + 1]);
    for (i = 0; i < n_tok * n_head * hd; i++) x[i] = (float)t_rng_gauss(&rng);
    memcpy(want, x, sizeof x);
    T_CHECK(cpu->rope(cpu, want, n_tok, n_head, hd, n_rot, 1, pos0, 10000.0, NULL, &err) == Q4K_OK, "%s", err.msg);
    rig_init(&g, vk_tiny);
    r = q4k__vk_split_new(g.vb, &g.arena, (uint64_t)n_ctx, (uint64_t)n_rot * 4, &s, &err);
    T_CHECK(!r && s.n >= 3, "%lld parts: %s", (long long)s.n, err.msg);
    if (!r) {
        q4k__vk_split_upload(&s, tab);
        xs = rig_slice(&g, sizeof x, x);
        prm = rig_slice(&g, sizeof prm_v, prm_v);
        r = q4k__vk_begin(g.vb, &g.job, (int)s.n, &err);
        if (!r) r = q4k__vk_rec_rope(g.vb, &g.job, xs, n_tok, n_head, hd, n_head * hd, n_rot, 1, &s, prm, 1, &err);
        if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
        T_CHECK(r == Q4K_OK, "%s", err.msg);
        for (i = 0; i < n_tok * n_head * hd && !r; i++)
            bad += !(fabsf(((float *)xs.map)[i] - want[i]) <= 1e-5f * 4.0f * (fabsf(x[i]) + 1.0f));
        T_CHECK(bad == 0, "%lld values differ (positions 190..194 straddle the parts of %llu rows)", (long long)bad,
                (unsigned long long)s.per);
    }
    q4k__vk_split_free(&s);
    rig_free(&g);
    free(tab);
}

/* ---- KV store: the CPU's f16 rounding, bit for bit ----------------------- */

static int64_t kv_inputs(float *x, int64_t n, t_rng *rng) {
    int64_t i;
    for (i = 0; i < n; i++) {
        switch (i % 8) {
        case 0: x[i] = (float)t_rng_gauss(rng); break;
        case 1: x[i] = fbits((uint32_t)t_rng_next(rng)); break; /* any bits: NaN, inf, subnormal */
        case 2: x[i] = fbits(0x38000000u + ((uint32_t)t_rng_next(rng) & 0x00ffe000u) + 0x1000u); break; /* ties */
        case 3: x[i] = (float)(t_rng_gauss(rng) * 6e-5); break; /* half subnormals */
        case 4: x[i] = (float)(t_rng_gauss(rng) * 65504.0); break; /* near overflow */
        case 5: x[i] = fbits(0x33000000u + ((uint32_t)t_rng_next(rng) & 0x1fffffu)); break; /* near the smallest */
        case 6: x[i] = fbits(0x477fe000u + ((uint32_t)t_rng_next(rng) & 0x1fffu)); break; /* rounds to inf or not */
        default: x[i] = -(float)t_rng_unif(rng); break;
        }
    }
    return n;
}

static void test_vk_kv_store(void) {
    int64_t dim = 512, n_ctx = 200, n_tok = 9, i, bad = 0;
    uint32_t prm_v[3] = {0, 123, 7};
    float x[9 * 512];
    t_rng rng = {0xcafeull};
    int kvt, k;
    if (!vk_dev) SKIP_WHY(vk_why);
    kv_inputs(x, n_tok * dim, &rng);
    for (k = 0; k < n_backends; k++)
        for (kvt = 0; kvt < 2; kvt++) {
            q4k_kv_type kv = kvt ? Q4K_KV_F32 : Q4K_KV_F16;
            uint64_t es = kvt ? 4 : 2;
            rig g;
            q4k__vk_split s;
            q4k__vk_slice xs, prm;
            q4k_error err;
            q4k_result r;
            rig_init(&g, backends[k].b);
            r = q4k__vk_split_new(g.vb, &g.arena, (uint64_t)n_ctx, (uint64_t)dim * es, &s, &err);
            T_CHECK(r == Q4K_OK, "%s", err.msg);
            if (r) {
                rig_free(&g);
                continue;
            }
            for (i = 0; i < s.n; i++) memset(s.part[i].map, 0x55, s.part[i].size);
            xs = rig_slice(&g, sizeof x, x);
            prm = rig_slice(&g, sizeof prm_v, prm_v);
            r = q4k__vk_begin(g.vb, &g.job, (int)s.n, &err);
            if (!r) r = q4k__vk_rec_kv_store(g.vb, &g.job, xs, n_tok, dim, &s, kv, prm, 1, &err);
            if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
            T_CHECK(r == Q4K_OK, "%s: %s", backends[k].name, err.msg);
            bad = 0;
            for (i = 0; i < n_ctx * dim && !r; i++) {
                int64_t row = i / dim, part = row / (int64_t)s.per, off = (row % (int64_t)s.per) * dim + i % dim;
                const unsigned char *p = s.part[part].map + off * es;
                if (row >= 123 && row < 123 + n_tok) {
                    float v = x[(row - 123) * dim + i % dim];
                    if (kvt) bad += memcmp(p, &v, 4) != 0;
                    else {
                        uint16_t h = q4k_fp32_to_fp16(v), got;
                        memcpy(&got, p, 2);
                        if (got != h && bad++ < 3) {
                            uint32_t xb;
                            memcpy(&xb, &v, 4);
                            printf("  %08x: f16 %04x, device %04x\n", xb, h, got);
                        }
                    }
                } else {
                    bad += p[0] != 0x55 || p[1] != 0x55; /* other rows untouched */
                }
            }
            T_CHECK(bad == 0, "%s %s: %lld elements wrong (%lld parts)", backends[k].name, kvt ? "f32" : "f16", (long long)bad,
                    (long long)s.n);
            q4k__vk_split_free(&s);
            rig_free(&g);
        }
}

/* ---- attention ---------------------------------------------------------- */

/* bound[h*hd+d] = sum_t p_t |v_t d| (double, the rounded cache) */
static void attn_bound(q4k_kv_type kv, const float *q, const float *k, const float *v, int64_t n_pos, int64_t n_head,
                       int64_t n_head_kv, int64_t hd, double *bound) {
    int64_t kv_dim = n_head_kv * hd, h, t, d;
    double *s = (double *)malloc((size_t)n_pos * sizeof(double));
#define RND(x) (kv == Q4K_KV_F16 ? (double)q4k_fp16_to_fp32(q4k_fp32_to_fp16(x)) : (double)(x))
    for (h = 0; h < n_head; h++) {
        int64_t kvh = h / (n_head / n_head_kv);
        double mx = -1e300, sum = 0;
        for (t = 0; t < n_pos; t++) {
            double dot = 0;
            for (d = 0; d < hd; d++) dot += (double)q[h * hd + d] * RND(k[t * kv_dim + kvh * hd + d]);
            s[t] = dot / sqrt((double)hd);
            if (s[t] > mx) mx = s[t];
        }
        for (t = 0; t < n_pos; t++) sum += (s[t] = exp(s[t] - mx));
        for (d = 0; d < hd; d++) {
            double b = 0;
            for (t = 0; t < n_pos; t++) b += s[t] / sum * fabs(RND(v[t * kv_dim + kvh * hd + d]));
            bound[h * hd + d] = b;
        }
    }
#undef RND
    free(s);
}

static void test_vk_attention(void) {
    static const struct { int64_t n_pos, n_head, n_head_kv, hd; double qs; } cases[] = {
        {1, 28, 4, 128, 1.0}, {7, 28, 4, 128, 3.0}, {300, 28, 4, 128, 1.0}, {300, 4, 4, 64, 8.0}, {1000, 2, 1, 96, 0.5},
        {64, 2, 1, 128, 300.0}}; /* the last: scores in the hundreds, as a random 7B's layer 0 has */
    t_rng rng = {0xa77e7ull};
    int c, k, kvt;
    double worst = 0;
    if (!vk_dev) SKIP_WHY(vk_why);
    for (c = 0; c < 6; c++) {
        int64_t nq = cases[c].n_head * cases[c].hd, nkv = cases[c].n_pos * cases[c].n_head_kv * cases[c].hd, i;
        float *q = (float *)malloc((size_t)nq * 4), *kk = (float *)malloc((size_t)nkv * 4), *vv = (float *)malloc((size_t)nkv * 4);
        float *want = (float *)malloc((size_t)nq * 4), *got = (float *)malloc((size_t)nq * 4);
        double *bound = (double *)malloc((size_t)nq * sizeof(double));
        for (i = 0; i < nq; i++) q[i] = (float)(t_rng_gauss(&rng) * cases[c].qs);
        for (i = 0; i < nkv; i++) {
            kk[i] = (float)t_rng_gauss(&rng);
            vv[i] = (float)t_rng_gauss(&rng);
        }
        for (kvt = 0; kvt < 2; kvt++) {
            q4k_kv_type kv = kvt ? Q4K_KV_F32 : Q4K_KV_F16;
            q4k_error err;
            T_CHECK(cpu->attention(cpu, kv, q, kk, vv, cases[c].n_pos, cases[c].n_head, cases[c].n_head_kv, cases[c].hd, want,
                                   &err) == Q4K_OK, "%s", err.msg);
            attn_bound(kv, q, kk, vv, cases[c].n_pos, cases[c].n_head, cases[c].n_head_kv, cases[c].hd, bound);
            for (k = 0; k < n_backends; k++) {
                int64_t bad = 0;
                q4k_result r = backends[k].b->attention(backends[k].b, kv, q, kk, vv, cases[c].n_pos, cases[c].n_head,
                                                        cases[c].n_head_kv, cases[c].hd, got, &err);
                T_CHECK(r == Q4K_OK, "%s: %s", backends[k].name, err.msg);
                if (r) continue;
                for (i = 0; i < nq; i++) {
                    double b = 1e-5 * bound[i] + 1e-30, e = fabs((double)got[i] - want[i]);
                    if (!(e <= b)) bad++;
                    if (e / b > worst) worst = e / b;
                }
                T_CHECK(bad == 0, "%lld positions, %lld/%lld heads, %s, on %s: %lld values out of bounds (%g / %g)",
                        (long long)cases[c].n_pos, (long long)cases[c].n_head, (long long)cases[c].n_head_kv,
                        kvt ? "f32" : "f16", backends[k].name, (long long)bad, got[0], want[0]);
            }
        }
        free(q);
        free(kk);
        free(vv);
        free(want);
        free(got);
        free(bound);
    }
    printf("  attention: worst %.3g of the bound\n", worst);
}

/* causal prefill of 9 tokens at positions 250..258 over a cache split in
   parts, with less scratch than all of them need, and the gqa flag */
static void test_vk_attention_prefill(void) {
    int64_t n_ctx = 300, n_head = 4, n_kv = 2, hd = 128, n_tok = 9, p0 = 250, kv_dim = 256, stage = 50, i, j, h, s0, bad = 0;
    float *k = (float *)malloc((size_t)(n_ctx * kv_dim) * 4), *v = (float *)malloc((size_t)(n_ctx * kv_dim) * 4);
    float q[9 * 4 * 128], want[4 * 128];
    uint32_t prm_v[2] = {0, (uint32_t)p0};
    t_rng rng = {0x9ef111ull};
    int gqa;
    if (!vk_tiny) {
        free(k);
        free(v);
        SKIP_WHY(vk_why);
    }
    for (i = 0; i < n_ctx * kv_dim; i++) {
        k[i] = (float)t_rng_gauss(&rng);
        v[i] = (float)t_rng_gauss(&rng);
    }
    for (i = 0; i < n_tok * n_head * hd; i++) q[i] = (float)(t_rng_gauss(&rng) * 2.0);
    for (gqa = 0; gqa < 2; gqa++) {
        rig g;
        q4k__vk_split kc, vc;
        q4k__vk_slice ks, vs, qs, os, sc, prm, at;
        q4k_error err;
        q4k_result r;
        rig_init(&g, vk_tiny);
        r = q4k__vk_split_new(g.vb, &g.arena, (uint64_t)n_ctx, (uint64_t)kv_dim * 2, &kc, &err);
        if (!r) r = q4k__vk_split_new(g.vb, &g.arena, (uint64_t)n_ctx, (uint64_t)kv_dim * 2, &vc, &err);
        T_CHECK(!r && kc.n >= 3, "%lld parts: %s", (long long)kc.n, r ? err.msg : "");
        if (r) {
            rig_free(&g);
            break;
        }
        ks = rig_slice(&g, (uint64_t)(4 * stage * kv_dim), NULL); /* positions through a staging binding, 50 at a time */
        vs = rig_slice(&g, (uint64_t)(4 * stage * kv_dim), NULL);
        at = rig_slice(&g, 4, NULL);
        prm = rig_slice(&g, sizeof prm_v, prm_v);
        qs = rig_slice(&g, sizeof q, q);
        os = rig_slice(&g, sizeof q, NULL);
        sc = rig_slice(&g, q4k__vk_attn_scratch_bytes(&kc, 1, 3, hd), NULL); /* three heads of one token at a time */
        for (s0 = 0; s0 < n_ctx && !r; s0 += stage) {
            uint32_t p = (uint32_t)s0;
            memcpy(ks.map, k + s0 * kv_dim, (size_t)(stage * kv_dim) * 4);
            memcpy(vs.map, v + s0 * kv_dim, (size_t)(stage * kv_dim) * 4);
            memcpy(at.map, &p, 4);
            r = q4k__vk_begin(g.vb, &g.job, 2 * (int)kc.n, &err);
            if (!r) r = q4k__vk_rec_kv_store(g.vb, &g.job, ks, stage, kv_dim, &kc, Q4K_KV_F16, at, 0, &err);
            if (!r) r = q4k__vk_rec_kv_store(g.vb, &g.job, vs, stage, kv_dim, &vc, Q4K_KV_F16, at, 0, &err);
            if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
        }
        if (!r) r = q4k__vk_begin(g.vb, &g.job, 200, &err);
        if (!r) r = q4k__vk_rec_attention(g.vb, &g.job, qs, &kc, &vc, Q4K_KV_F16, n_tok, n_head, n_kv, hd, prm, 1, sc, os,
                                          gqa ? Q4K__VK_F_GQA : 0, &err);
        if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
        T_CHECK(r == Q4K_OK, "%s", err.msg);
        for (j = 0; j < n_tok && !r; j++) {
            double bound[4 * 128];
            float *kh = (float *)malloc((size_t)((p0 + j + 1) * hd) * 4), *vh = (float *)malloc((size_t)((p0 + j + 1) * hd) * 4);
            for (h = 0; h < n_head; h++) { /* the CPU, one head at a time over the KV head the flag picks */
                int64_t kvh = gqa ? h % n_kv : h / (n_head / n_kv), t;
                q4k_error e2;
                for (t = 0; t <= p0 + j; t++) {
                    memcpy(kh + t * hd, k + t * kv_dim + kvh * hd, (size_t)hd * 4);
                    memcpy(vh + t * hd, v + t * kv_dim + kvh * hd, (size_t)hd * 4);
                }
                T_CHECK(cpu->attention(cpu, Q4K_KV_F16, q + (j * n_head + h) * hd, kh, vh, p0 + j + 1, 1, 1, hd, want + h * hd,
                                       &e2) == Q4K_OK, "%s", e2.msg);
                attn_bound(Q4K_KV_F16, q + (j * n_head + h) * hd, kh, vh, p0 + j + 1, 1, 1, hd, bound + h * hd);
            }
            for (i = 0; i < n_head * hd; i++) {
                float gv = ((float *)os.map)[j * n_head * hd + i];
                if (!(fabs((double)gv - want[i]) <= 1e-5 * bound[i] + 1e-30) && bad++ < 3)
                    printf("  gqa %d token %lld value %lld: %g, cpu %g\n", gqa, (long long)j, (long long)i, gv, want[i]);
            }
            free(kh);
            free(vh);
        }
        T_CHECK(bad == 0, "gqa %d: %lld values out of bounds", gqa, (long long)bad);
        q4k__vk_split_free(&kc);
        q4k__vk_split_free(&vc);
        rig_free(&g);
    }
    free(k);
    free(v);
}

/* ---- element-wise ops, argmax, perturb ---------------------------------- */

static void test_vk_elementwise(void) {
    int64_t n = 3 * 1000 + 17, dim = 1000, i, bad_add = 0, bad_bias = 0, bad_sw = 0, bad_sc = 0, bad_dev = 0;
    float *x = (float *)malloc((size_t)n * 4), *y = (float *)malloc((size_t)n * 4);
    uint32_t prm_v[2] = {0, 0x3f000000u}; /* 0.5f */
    t_rng rng = {0xe1e3ull};
    rig g;
    q4k__vk_slice xa, xb, xs, xsc, xd, ys, prm, none;
    q4k_error err;
    q4k_result r;
    if (!vk_dev) {
        free(x);
        free(y);
        SKIP_WHY(vk_why);
    }
    memset(&none, 0, sizeof none);
    for (i = 0; i < n; i++) {
        x[i] = (float)(t_rng_gauss(&rng) * 4.0);
        y[i] = (float)t_rng_gauss(&rng);
    }
    rig_init(&g, vk_plain ? vk_plain : vk_dev);
    xa = rig_slice(&g, (uint64_t)n * 4, x);
    xb = rig_slice(&g, (uint64_t)n * 4, x);
    xs = rig_slice(&g, (uint64_t)n * 4, x);
    xsc = rig_slice(&g, (uint64_t)n * 4, x);
    xd = rig_slice(&g, (uint64_t)n * 4, x);
    ys = rig_slice(&g, (uint64_t)n * 4, y);
    prm = rig_slice(&g, sizeof prm_v, prm_v);
    r = q4k__vk_begin(g.vb, &g.job, 8, &err);
    if (!r) r = q4k__vk_rec_add(g.vb, &g.job, xa, ys, (uint64_t)n, (uint64_t)n, &err);
    if (!r) r = q4k__vk_rec_add(g.vb, &g.job, xb, ys, (uint64_t)n, (uint64_t)dim, &err);
    if (!r) r = q4k__vk_rec_swiglu(g.vb, &g.job, xs, ys, (uint64_t)n, &err);
    if (!r) r = q4k__vk_rec_scale(g.vb, &g.job, xsc, (uint64_t)n, -3.0f, none, -1, &err);
    if (!r) r = q4k__vk_rec_scale(g.vb, &g.job, xd, (uint64_t)n, 7.0f, prm, 1, &err);
    if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
    T_CHECK(r == Q4K_OK, "%s", err.msg);
    for (i = 0; i < n && !r; i++) {
        float add = x[i] + y[i], bias = x[i] + y[i % dim], sw = x[i] / (1.0f + expf(-x[i])) * y[i], sc = x[i] * -3.0f, dv = x[i] * 0.5f;
        bad_add += memcmp(&add, (float *)xa.map + i, 4) != 0;
        bad_bias += memcmp(&bias, (float *)xb.map + i, 4) != 0;
        bad_sw += !(fabsf(((float *)xs.map)[i] - sw) <= 1e-5f * fabsf(sw));
        bad_sc += memcmp(&sc, (float *)xsc.map + i, 4) != 0;
        bad_dev += memcmp(&dv, (float *)xd.map + i, 4) != 0;
    }
    T_CHECK(!bad_add && !bad_bias && !bad_sw && !bad_sc && !bad_dev, "wrong: add %lld, bias %lld, swiglu %lld, scale %lld, device scale %lld",
            (long long)bad_add, (long long)bad_bias, (long long)bad_sw, (long long)bad_sc, (long long)bad_dev);
    rig_free(&g);
    free(x);
    free(y);
}

/* the index of the largest, the lowest among equals, NaN never (the CPU's
   q4k_argmax agrees but when x[0] is NaN: it then answers 0) */
static int64_t argmax_ref(const float *x, int64_t n) {
    int64_t i, best = -1;
    for (i = 0; i < n; i++)
        if (x[i] == x[i] && (best < 0 || x[i] > x[best])) best = i;
    return best;
}

static void test_vk_argmax(void) {
    int64_t n = 152064, i;
    float *x = (float *)malloc((size_t)n * 4);
    t_rng rng = {0xa59ull};
    int c;
    if (!vk_dev) {
        free(x);
        SKIP_WHY(vk_why);
    }
    for (c = 0; c < 4; c++) {
        rig g;
        q4k__vk_slice xs, sc, prm;
        uint32_t init[3] = {0, 0, 0};
        q4k_error err;
        q4k_result r;
        int64_t want;
        for (i = 0; i < n; i++) x[i] = (float)t_rng_gauss(&rng);
        if (c == 1) { /* equal maxima: the lowest index wins */
            x[90000] = 9.0f;
            x[5000] = 9.0f;
            x[150000] = 9.0f;
        } else if (c == 2) { /* NaN never wins, not even at the start */
            x[0] = fbits(0x7fc00000u);
            x[77] = fbits(0x7fc00000u);
            x[4097] = 50.0f;
        } else if (c == 3) { /* one value: everything else -inf and NaN */
            for (i = 0; i < n; i++) x[i] = i % 2 ? fbits(0xff800000u) : fbits(0x7fc00000u);
            x[152063] = -1e30f;
        }
        want = argmax_ref(x, n);
        if (c < 2) T_CHECK(want == q4k_argmax(x, n), "case %d: the reference is not the CPU's", c);
        rig_init(&g, vk_dev);
        xs = rig_slice(&g, (uint64_t)n * 4, x);
        sc = rig_slice(&g, q4k__vk_argmax_scratch_bytes((uint64_t)n), NULL);
        prm = rig_slice(&g, sizeof init, init);
        r = q4k__vk_begin(g.vb, &g.job, 2, &err);
        if (!r) r = q4k__vk_rec_argmax(g.vb, &g.job, xs, (uint64_t)n, sc, prm, 2, &err);
        if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
        T_CHECK(r == Q4K_OK, "%s", err.msg);
        T_CHECK(!r && ((uint32_t *)prm.map)[2] == (uint32_t)want && ((uint32_t *)prm.map)[1] == 0, "case %d: %u, the CPU %lld", c,
                ((uint32_t *)prm.map)[2], (long long)want);
        rig_free(&g);
    }
    free(x);
}

static void test_vk_perturb(void) {
    int64_t n = 65536, i;
    float *x = (float *)malloc((size_t)n * 4);
    uint32_t prm_v[2] = {5, 6};
    double m1 = 0, m2 = 0, same = 0;
    rig g;
    q4k__vk_slice a, b, c, prm;
    q4k_error err;
    q4k_result r;
    if (!vk_dev) {
        free(x);
        SKIP_WHY(vk_why);
    }
    for (i = 0; i < n; i++) x[i] = 1.0f + (float)(i % 7);
    rig_init(&g, vk_dev);
    a = rig_slice(&g, (uint64_t)n * 4, x);
    b = rig_slice(&g, (uint64_t)n * 4, x);
    c = rig_slice(&g, (uint64_t)n * 4, x);
    prm = rig_slice(&g, sizeof prm_v, prm_v);
    r = q4k__vk_begin(g.vb, &g.job, 3, &err);
    if (!r) r = q4k__vk_rec_perturb(g.vb, &g.job, a, (uint64_t)n, 1e-3f, 42, prm, 0, &err);
    if (!r) r = q4k__vk_rec_perturb(g.vb, &g.job, b, (uint64_t)n, 1e-3f, 42, prm, 1, &err); /* another position */
    if (!r) r = q4k__vk_rec_perturb(g.vb, &g.job, c, (uint64_t)n, 1e-3f, 42, prm, 0, &err); /* the same draw as a */
    if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
    T_CHECK(r == Q4K_OK, "%s", err.msg);
    for (i = 0; i < n && !r; i++) {
        double z = (((float *)a.map)[i] / x[i] - 1.0) / 1e-3;
        m1 += z;
        m2 += z * z;
        same += ((float *)a.map)[i] == ((float *)b.map)[i];
        T_CHECK(((float *)a.map)[i] == ((float *)c.map)[i], "the draw is not a function of (seed, counter, i) at %lld", (long long)i);
        if (t__failed_now) break;
    }
    m1 /= (double)n;
    m2 = m2 / (double)n - m1 * m1;
    /* N(0,1) up to float rounding of the products (z's resolution is about 1e-4 / 1e-3 x ulp) */
    T_CHECK(fabs(m1) < 0.03 && fabs(m2 - 1.0) < 0.05, "noise mean %g, variance %g", m1, m2);
    T_CHECK(same < 0.01 * (double)n, "%g of %lld values equal at another position", same, (long long)n);
    rig_free(&g);
    free(x);
}

/* Q4_K decoded as q4k_dequantize_row does but with each sub-block's scale
   and min exchanged (what the CPU's q4k_scales fault computes) */
static void q4k_rows_swapped(const unsigned char *w, int64_t rows, int64_t cols, float *out) {
    int64_t r, i, sb, l;
    for (r = 0; r < rows; r++)
        for (i = 0; i < cols / 256; i++) {
            const q4k_block_q4_K *b = (const q4k_block_q4_K *)(w + (size_t)r * q4k_row_size(Q4K_TYPE_Q4_K, cols)) + i;
            float dd = q4k_fp16_to_fp32(b->d), dm = q4k_fp16_to_fp32(b->dmin);
            int sc, m;
            for (sb = 0; sb < 8; sb++) {
                q4k__scale_min_k4((int)sb, b->scales, &sc, &m);
                for (l = 0; l < 32; l++)
                    out[r * cols + i * 256 + sb * 32 + l] =
                        dd * (float)m * (float)((b->qs[32 * (sb / 2) + l] >> (4 * (sb & 1))) & 0xF) - dm * (float)sc;
            }
        }
}

/* rec_matmul in float mode over a split weight, three columns, the
   q4k_scales flag against the CPU on the swapped decode */
static void test_vk_matmul_q4k_scales(void) {
    int64_t rows = 300, cols = 512, n = 3, i, j, c, bad = 0;
    t_rng rng = {0x5ca1ull};
    unsigned char *w;
    float *wf = (float *)malloc((size_t)(rows * cols) * 4), x[3 * 512], *want = (float *)malloc((size_t)(rows * n) * 4);
    rig g;
    q4k__vk_split ws;
    q4k__vk_slice xs, ys;
    q4k_error err;
    q4k_result r;
    double worst = 0;
    if (!vk_tiny) {
        free(wf);
        free(want);
        SKIP_WHY(vk_why);
    }
    w = make_table(Q4K_TYPE_Q4_K, rows, cols, &rng);
    q4k_rows_swapped(w, rows, cols, wf);
    for (i = 0; i < n * cols; i++) x[i] = (float)t_rng_gauss(&rng);
    T_CHECK(cpu->matmul(cpu, Q4K_ACT_F32, Q4K_TYPE_F32, wf, rows, cols, x, n, want, &err) == Q4K_OK, "%s", err.msg);
    rig_init(&g, vk_tiny);
    r = q4k__vk_split_new(g.vb, &g.arena, (uint64_t)rows, q4k_row_size(Q4K_TYPE_Q4_K, cols), &ws, &err);
    T_CHECK(!r && ws.n >= 2, "%lld parts: %s", (long long)ws.n, r ? err.msg : "");
    if (!r) {
        q4k__vk_split_upload(&ws, w);
        xs = rig_slice(&g, sizeof x, x);
        ys = rig_slice(&g, (uint64_t)(rows * n) * 4, NULL);
        r = q4k__vk_begin(g.vb, &g.job, (int)ws.n, &err);
        if (!r) r = q4k__vk_rec_matmul(g.vb, &g.job, Q4K_TYPE_Q4_K, 0, &ws, cols, xs, n, ys, (uint64_t)rows, Q4K__VK_F_Q4K_SCALES, &err);
        if (!r) r = q4k__vk_finish(g.vb, &g.job, &err);
        T_CHECK(r == Q4K_OK, "%s", err.msg);
        for (j = 0; j < n && !r; j++)
            for (i = 0; i < rows; i++) {
                double bound = 0, e = fabs((double)((float *)ys.map)[j * rows + i] - want[j * rows + i]);
                for (c = 0; c < cols; c++) bound += fabs((double)wf[i * cols + c] * x[j * cols + c]);
                bound = 1e-5 * bound + 1e-30;
                bad += !(e <= bound);
                if (e / bound > worst) worst = e / bound;
            }
        T_CHECK(bad == 0, "%lld outputs out of bounds (worst %.3g)", (long long)bad, worst);
    }
    q4k__vk_split_free(&ws);
    rig_free(&g);
    free(w);
    free(wf);
    free(want);
}

/* ---- a recorded buffer replayed: matmul, quantizer, argmax, params ------- */

static void test_vk_recorded_replay(void) {
    int64_t rows = 700, cols = 512, i, step;
    q4k_backend *b = vk_tiny ? vk_tiny : vk_dev;
    t_rng rng = {0x5e9ull};
    unsigned char *w;
    float x[512], *want = (float *)malloc((size_t)rows * 4);
    rig g;
    q4k__vk_split ws;
    q4k__vk_slice xs, qs, ys, sc, prm;
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    VkDescriptorPool pool = VK_NULL_HANDLE;
    VkCommandBufferAllocateInfo ca;
    VkCommandBufferBeginInfo bi;
    VkSubmitInfo si;
    q4k__vk_job count;
    q4k_error err;
    q4k_result r;
    q4k__vk_backend *vb;
    if (!vk_dev) {
        free(want);
        SKIP_WHY(vk_why);
    }
    vb = VB(b);
    w = make_table(Q4K_TYPE_Q4_K, rows, cols, &rng);
    rig_init(&g, b);
    r = q4k__vk_split_new(vb, &g.arena, (uint64_t)rows, q4k_row_size(Q4K_TYPE_Q4_K, cols), &ws, &err);
    T_CHECK(r == Q4K_OK, "%s", err.msg);
    if (r) goto out;
    q4k__vk_split_upload(&ws, w);
    xs = rig_slice(&g, sizeof x, NULL);
    qs = rig_slice(&g, (uint64_t)cols / 32 * 40, NULL);
    ys = rig_slice(&g, (uint64_t)rows * 4, NULL);
    sc = rig_slice(&g, q4k__vk_argmax_scratch_bytes((uint64_t)rows), NULL);
    prm = rig_slice(&g, 8, NULL);
    /* a dry run counts the descriptor sets, then the real recording, once */
    q4k__vk_rec_init(&count, VK_NULL_HANDLE, VK_NULL_HANDLE, 0);
    r = q4k__vk_rec_quantize(vb, &count, xs, qs, (uint64_t)cols / 32, &err);
    if (!r) r = q4k__vk_rec_matmul(vb, &count, Q4K_TYPE_Q4_K, 1, &ws, cols, qs, 1, ys, (uint64_t)rows, 0, &err);
    if (!r) r = q4k__vk_rec_argmax(vb, &count, ys, (uint64_t)rows, sc, prm, 1, &err);
    T_CHECK(r == Q4K_OK && count.sets == 1 + (int)ws.n + 2 && ws.n > 1, "counted %d sets for %lld parts: %s", count.sets,
            (long long)ws.n, err.msg);
    if (r || (r = q4k__vk_pool_new(vb, count.sets, &pool, &err))) goto out;
    memset(&ca, 0, sizeof ca);
    ca.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ca.commandPool = vb->cmd_pool;
    ca.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ca.commandBufferCount = 1;
    T_CHECK(vb->vkAllocateCommandBuffers(vb->dev, &ca, &cmd) == VK_SUCCESS, "vkAllocateCommandBuffers");
    memset(&bi, 0, sizeof bi);
    bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    vb->vkBeginCommandBuffer(cmd, &bi);
    q4k__vk_rec_init(&g.job, cmd, pool, count.sets);
    r = q4k__vk_rec_quantize(vb, &g.job, xs, qs, (uint64_t)cols / 32, &err);
    q4k__vk_rec_barrier(vb, &g.job);
    if (!r) r = q4k__vk_rec_matmul(vb, &g.job, Q4K_TYPE_Q4_K, 1, &ws, cols, qs, 1, ys, (uint64_t)rows, 0, &err);
    q4k__vk_rec_barrier(vb, &g.job);
    if (!r) r = q4k__vk_rec_argmax(vb, &g.job, ys, (uint64_t)rows, sc, prm, 1, &err);
    q4k__vk_rec_host_barrier(vb, &g.job);
    T_CHECK(r == Q4K_OK && vb->vkEndCommandBuffer(cmd) == VK_SUCCESS, "recording: %s", err.msg);
    g.job.pool = VK_NULL_HANDLE; /* ours, not the rig's */
    for (step = 0; step < 3 && !r; step++) { /* new inputs each time, the same recording */
        int64_t bad = 0, am;
        for (i = 0; i < cols; i++) x[i] = (float)t_rng_gauss(&rng);
        memcpy(xs.map, x, sizeof x);
        q4k__vk_poison(ys.map, ys.size);
        T_CHECK(cpu->matmul(cpu, Q4K_ACT_Q8, Q4K_TYPE_Q4_K, w, rows, cols, x, 1, want, &err) == Q4K_OK, "%s", err.msg);
        memset(&si, 0, sizeof si);
        si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
        si.commandBufferCount = 1;
        si.pCommandBuffers = &cmd;
        vb->vkResetFences(vb->dev, 1, &vb->fence);
        T_CHECK(vb->vkQueueSubmit(vb->queue, 1, &si, vb->fence) == VK_SUCCESS &&
                    vb->vkWaitForFences(vb->dev, 1, &vb->fence, VK_TRUE, UINT64_MAX) == VK_SUCCESS, "submit");
        for (i = 0; i < rows; i++) bad += !(fabsf(((float *)ys.map)[i] - want[i]) <= 1e-3f * (fabsf(want[i]) + 1.0f));
        am = q4k_argmax((float *)ys.map, rows);
        T_CHECK(bad == 0 && ((uint32_t *)prm.map)[1] == (uint32_t)am, "step %lld: %lld rows differ, argmax %u / %lld",
                (long long)step, (long long)bad, ((uint32_t *)prm.map)[1], (long long)am);
    }
out:
    if (cmd) vb->vkFreeCommandBuffers(vb->dev, vb->cmd_pool, 1, &cmd);
    if (pool) vb->vkDestroyDescriptorPool(vb->dev, pool, NULL);
    q4k__vk_split_free(&ws);
    rig_free(&g);
    free(w);
    free(want);
}

static void test_vk_quantize_act_entry(void) {
    float x[32 * 40];
    q4k_block_q8a want[40], got[40];
    t_rng rng = {0x8aull};
    q4k_error err;
    int i, k;
    if (!vk_dev) SKIP_WHY(vk_why);
    for (i = 0; i < 32 * 40; i++) x[i] = (float)(t_rng_gauss(&rng) * pow(10.0, (i / 32) % 9 - 4));
    T_CHECK(cpu->quantize_act(cpu, x, 32 * 40, want, &err) == Q4K_OK, "%s", err.msg);
    for (k = 0; k < n_backends; k++) {
        memset(got, 0x5a, sizeof got);
        T_CHECK(backends[k].b->quantize_act(backends[k].b, x, 32 * 40, got, &err) == Q4K_OK && !memcmp(want, got, sizeof want),
                "%s: %s", backends[k].name, err.msg);
    }
}

int main(void) {
    q4k_error err;
#if defined(__SANITIZE_ADDRESS__)
    __lsan_disable(); /* lavapipe's JIT code leaks what LeakSanitizer cannot attribute (see test_vulkan.c) */
#endif
    if (q4k_cpu_backend_create(NULL, &cpu, &err) != Q4K_OK) {
        printf("FAIL cpu backend: %s\n", err.msg);
        return 1;
    }
    vk_dev = make_backend(0, 0, 0);
    if (vk_dev) {
        backends[n_backends].b = vk_dev;
        backends[n_backends++].name = "device";
        if ((vk_small = make_backend(1048576, 4194304, 0))) {
            backends[n_backends].b = vk_small;
            backends[n_backends++].name = "small-limits";
        }
        if ((vk_plain = make_backend(0, 0, Q4K_VK_SUBGROUP | Q4K_VK_STORAGE8 | Q4K_VK_STORAGE16 | Q4K_VK_FP16))) {
            backends[n_backends].b = vk_plain;
            backends[n_backends++].name = "no-features";
        }
        if ((vk_tiny = make_backend(65536, 262144, 0))) {
            backends[n_backends].b = vk_tiny;
            backends[n_backends++].name = "tiny-limits";
        }
    }
    T_RUN(test_vk_ops_compile);
    T_RUN(test_vk_embedding);
    T_RUN(test_vk_embedding_q4k_scales);
    T_RUN(test_vk_rmsnorm);
    T_RUN(test_vk_rmsnorm_f16_acc);
    T_RUN(test_vk_rope);
    T_RUN(test_vk_rope_split_table);
    T_RUN(test_vk_kv_store);
    T_RUN(test_vk_attention);
    T_RUN(test_vk_attention_prefill);
    T_RUN(test_vk_elementwise);
    T_RUN(test_vk_argmax);
    T_RUN(test_vk_perturb);
    T_RUN(test_vk_matmul_q4k_scales);
    T_RUN(test_vk_recorded_replay);
    T_RUN(test_vk_quantize_act_entry);
    q4k_backend_destroy(vk_dev);
    q4k_backend_destroy(vk_small);
    q4k_backend_destroy(vk_plain);
    q4k_backend_destroy(vk_tiny);
    q4k_backend_destroy(cpu);
    T_EXIT();
}
