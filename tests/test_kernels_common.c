/* kernels_src/q4k_common.h (the GPU kernels' copy of the block layouts and
   of the arithmetic they must reproduce) agrees with q4k.h: every field at
   the same offset with the same size, and bit for bit the same activation
   bytes, fp16 conversions, k-quant scales and mins, decoded weights,
   per-block integer dot products and RoPE rotations. */
#define Q4K_IMPLEMENTATION
#include "q4k.h"
#include "t.h"
#include "../kernels_src/q4k_common.h"

#include <stddef.h>

#define SAME_FIELD(host, kern, f)                                                                     \
    T_CHECK(offsetof(host, f) == offsetof(kern, f) && sizeof(((host *)0)->f) == sizeof(((kern *)0)->f), \
            #kern "." #f ": offset %zu/%zu size %zu/%zu", offsetof(host, f), offsetof(kern, f),          \
            sizeof(((host *)0)->f), sizeof(((kern *)0)->f))

static void test_layouts(void) {
    T_CHECK(sizeof(block_q4_0) == sizeof(q4k_block_q4_0) && sizeof(block_q5_0) == sizeof(q4k_block_q5_0) &&
            sizeof(block_q8_0) == sizeof(q4k_block_q8_0) && sizeof(block_q4_K) == sizeof(q4k_block_q4_K) &&
            sizeof(block_q5_K) == sizeof(q4k_block_q5_K) && sizeof(block_q6_K) == sizeof(q4k_block_q6_K) &&
            sizeof(block_q8a) == sizeof(q4k_block_q8a), "block sizes differ");
    T_CHECK(QK == Q4K_QK && QK_K == Q4K_QK_K, "block lengths differ");
    SAME_FIELD(q4k_block_q4_0, block_q4_0, d);
    SAME_FIELD(q4k_block_q4_0, block_q4_0, qs);
    SAME_FIELD(q4k_block_q5_0, block_q5_0, d);
    SAME_FIELD(q4k_block_q5_0, block_q5_0, qh);
    SAME_FIELD(q4k_block_q5_0, block_q5_0, qs);
    SAME_FIELD(q4k_block_q8_0, block_q8_0, d);
    SAME_FIELD(q4k_block_q8_0, block_q8_0, qs);
    SAME_FIELD(q4k_block_q4_K, block_q4_K, d);
    SAME_FIELD(q4k_block_q4_K, block_q4_K, dmin);
    SAME_FIELD(q4k_block_q4_K, block_q4_K, scales);
    SAME_FIELD(q4k_block_q4_K, block_q4_K, qs);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, d);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, dmin);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, scales);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, qh);
    SAME_FIELD(q4k_block_q5_K, block_q5_K, qs);
    SAME_FIELD(q4k_block_q6_K, block_q6_K, ql);
    SAME_FIELD(q4k_block_q6_K, block_q6_K, qh);
    SAME_FIELD(q4k_block_q6_K, block_q6_K, scales);
    SAME_FIELD(q4k_block_q6_K, block_q6_K, d);
    SAME_FIELD(q4k_block_q8a, block_q8a, d);
    SAME_FIELD(q4k_block_q8a, block_q8a, sum);
    SAME_FIELD(q4k_block_q8a, block_q8a, qs);
}

/* random blocks of several scales, ties (x*id exactly k + 0.5), zeros */
static void test_activation_scheme(void) {
    t_rng r = {12345};
    int64_t nb = t_quick() ? 2000 : 20000, b, i, diff = 0;
    float *x = (float *)malloc((size_t)nb * QK * sizeof(float));
    q4k_block_q8a *host = (q4k_block_q8a *)malloc((size_t)nb * sizeof *host);
    block_q8a kern;
    for (b = 0; b < nb; b++) {
        double scale = pow(10.0, (double)(b % 9) - 4.0);
        for (i = 0; i < QK; i++) x[b * QK + i] = (float)(t_rng_gauss(&r) * scale);
        if (b % 7 == 1) /* ties: 127 at one place, halves elsewhere */
            for (i = 0; i < QK; i++) x[b * QK + i] = i == 0 ? 127.0f : (float)((int)(i % 11) - 5) + 0.5f;
        if (b % 13 == 2)
            for (i = 0; i < QK; i++) x[b * QK + i] = 0.0f;
    }
    q4k_quantize_act_q8(x, host, nb * QK);
    for (b = 0; b < nb; b++) {
        q4k_quantize_q8a_block(x + b * QK, &kern);
        if (memcmp(&kern, &host[b], sizeof kern)) {
            if (diff < 3) printf("  block %lld differs (d %g / %g)\n", (long long)b, (double)kern.d, (double)host[b].d);
            diff++;
        }
    }
    T_CHECK(diff == 0, "%lld of %lld blocks differ", (long long)diff, (long long)nb);
    /* the tie block rounds halves to even: 0.5 -> 0, 1.5 -> 2, -4.5 -> -4 */
    q4k_quantize_q8a_block(x + 1 * QK, &kern);
    T_CHECK(kern.d == 1.0f && kern.qs[0] == 127, "tie block scale %g", (double)kern.d);
    for (i = 1; i < QK; i++) {
        double v = (double)((int)(i % 11) - 5) + 0.5;
        double want = fmod(floor(v), 2.0) == 0 ? floor(v) : floor(v) + 1; /* the even neighbour */
        T_CHECK(kern.qs[i] == (int)want, "value %g rounds to %d, not %d", v, kern.qs[i], (int)want);
    }
    free(x);
    free(host);
}

/* every half float, and floats around each rounding boundary */
static void test_fp16(void) {
    t_rng r = {777};
    int64_t i, bad = 0, n = t_quick() ? 200000 : 2000000;
    for (i = 0; i < 65536; i++) {
        float a = q4k_fp16_to_fp32((uint16_t)i), b = q4k_h2f((unsigned short)i);
        if (memcmp(&a, &b, 4) && bad++ < 3) printf("  h2f(0x%04x): %08x, q4k.h %08x\n", (unsigned)i, q4k_f32_bits(b), q4k_f32_bits(a));
        if (q4k_bf2f((unsigned short)i) != q4k_bf16_to_fp32((uint16_t)i) && q4k_bf2f((unsigned short)i) == q4k_bf2f((unsigned short)i))
            bad++;
    }
    for (i = 0; i < n; i++) {
        uint32_t u = (uint32_t)t_rng_next(&r);
        float f;
        if (i % 4 == 1) u = (u & 0x80001fffu) | (uint32_t)(0x33000000u + (t_rng_next(&r) % 0x14800000u)) ; /* half's range */
        if (i % 4 == 2) u = (u & ~0x1fffu) | 0x1000u; /* exact ties */
        f = q4k_bits_f32(u);
        if (q4k_f2h(f) != q4k_fp32_to_fp16(f) && bad++ < 3)
            printf("  f2h(%08x): %04x, q4k.h %04x\n", (unsigned)u, q4k_f2h(f), q4k_fp32_to_fp16(f));
    }
    for (i = 0; i < 4096; i++) { /* ties between subnormal halves: odd multiples of 2^-25 */
        float f = (float)(2 * i + 1) * 2.98023223876953125e-08f * (i % 2 ? -1.0f : 1.0f);
        bad += q4k_f2h(f) != q4k_fp32_to_fp16(f);
    }
    T_CHECK(bad == 0, "%lld conversions differ", (long long)bad);
    T_CHECK(q4k_f2h(65520.0f) == 0x7c00 && q4k_f2h(65519.99f) == 0x7bff && q4k_f2h(1.0f + 1.0f / 2048) == 0x3c00 &&
                q4k_f2h(1.0f + 3.0f / 2048) == 0x3c02,
            "rounding of the boundary cases");
}

/* n random blocks of a quantized type, with finite fp16 scales */
static unsigned char *random_blocks(t_rng *r, q4k_type type, int64_t nb) {
    q4k_type_info ti = q4k_type_traits((int)type);
    size_t bs = ti.type_size, i, k;
    unsigned char *w = (unsigned char *)malloc(bs * (size_t)nb);
    for (i = 0; i < bs * (size_t)nb; i++) w[i] = (unsigned char)t_rng_next(r);
    for (i = 0; i < (size_t)nb; i++) {
        unsigned char *b = w + i * bs;
        size_t offs[2] = {0, 2}, n_offs = type == Q4K_TYPE_Q4_K || type == Q4K_TYPE_Q5_K ? 2 : 1;
        if (type == Q4K_TYPE_Q6_K) offs[0] = 208;
        for (k = 0; k < n_offs; k++) {
            uint16_t h = q4k_fp32_to_fp16((float)(t_rng_gauss(r) * 0.01));
            memcpy(b + offs[k], &h, 2);
        }
    }
    return w;
}

static const q4k_type quant_types[] = {Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0, Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};

static void test_k4_scales(void) {
    t_rng r = {99};
    int it, j, bad = 0;
    for (it = 0; it < 2000; it++) {
        unsigned char s[12];
        for (j = 0; j < 12; j++) s[j] = (unsigned char)t_rng_next(&r);
        for (j = 0; j < 8; j++) {
            int a, b, c, d;
            q4k__scale_min_k4(j, s, &a, &b);
            q4k_k4_scale_min(j, s, &c, &d);
            bad += a != c || b != d;
        }
    }
    T_CHECK(bad == 0, "%d scale/min pairs differ", bad);
}

/* every type's 32-value groups against q4k_dequantize_row, bit for bit */
static void test_decode(void) {
    static const q4k_type all[] = {Q4K_TYPE_F32, Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0,
                                   Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};
    t_rng r = {4242};
    size_t t;
    for (t = 0; t < sizeof all / sizeof all[0]; t++) {
        q4k_type_info ti = q4k_type_traits((int)all[t]);
        int64_t n = ti.block_size == 1 ? 1000 : 40 * ti.block_size, b, i, bad = 0; /* F32..: a short last group */
        unsigned char *w;
        float *ref = (float *)malloc((size_t)n * sizeof(float)), y[32];
        if (ti.block_size == 1) {
            w = (unsigned char *)malloc((size_t)n * ti.type_size);
            for (i = 0; i < n; i++) {
                float f = (float)t_rng_gauss(&r);
                uint16_t h = all[t] == Q4K_TYPE_F16 ? q4k_fp32_to_fp16(f) : q4k_fp32_to_bf16(f);
                if (all[t] == Q4K_TYPE_F32) memcpy(w + 4 * i, &f, 4);
                else memcpy(w + 2 * i, &h, 2);
            }
        } else {
            w = random_blocks(&r, all[t], n / ti.block_size);
        }
        q4k_dequantize_row(all[t], w, ref, n);
        for (b = 0; 32 * b < n; b++) {
            int64_t e = n - 32 * b < 32 ? n - 32 * b : 32;
            q4k_decode32((int)all[t], w, b, n, y);
            for (i = 0; i < e; i++) bad += memcmp(&y[i], &ref[32 * b + i], 4) != 0;
        }
        T_CHECK(bad == 0, "%s: %lld values differ", q4k_type_name(all[t]), (long long)bad);
        free(w);
        free(ref);
    }
}

/* each block's term: one block a row (the scalar CPU kernel's sum of one
   term is that term), activations quantized by the kernels' quantizer */
static void test_qdots(void) {
    t_rng r = {31337};
    q4k_cpu cpu = {Q4K_CPU_SCALAR, Q4K_ACT_Q8, NULL};
    size_t t;
    for (t = 0; t < sizeof quant_types / sizeof quant_types[0]; t++) {
        q4k_type type = quant_types[t];
        q4k_type_info ti = q4k_type_traits((int)type);
        int64_t nb = t_quick() ? 300 : 3000, b, i, bad = 0, nx = ti.block_size / 32;
        unsigned char *w = random_blocks(&r, type, nb);
        float x[256];
        block_q8a xq[8];
        for (b = 0; b < nb; b++) {
            float want, got = 0;
            double scale = pow(10.0, (double)(b % 5) - 2.0);
            for (i = 0; i < ti.block_size; i++) x[i] = (float)(t_rng_gauss(&r) * scale);
            if (b % 11 == 3) x[5] = 0.0f / 0.0f; /* a NaN activation quantizes to 0 */
            for (i = 0; i < nx; i++) q4k_quantize_q8a_block(x + 32 * i, &xq[i]);
            T_CHECK(q4k_matmul(&cpu, type, w + b * ti.type_size, 1, ti.block_size, x, 1, &want) == Q4K_OK, "matmul");
            switch (type) {
            case Q4K_TYPE_Q8_0: got = q4k_qdot_q8_0((const block_q8_0 *)(w + b * ti.type_size), xq); break;
            case Q4K_TYPE_Q4_0: got = q4k_qdot_q4_0((const block_q4_0 *)(w + b * ti.type_size), xq); break;
            case Q4K_TYPE_Q5_0: got = q4k_qdot_q5_0((const block_q5_0 *)(w + b * ti.type_size), xq); break;
            case Q4K_TYPE_Q4_K: got = q4k_qdot_q4_K((const block_q4_K *)(w + b * ti.type_size), xq); break;
            case Q4K_TYPE_Q5_K: got = q4k_qdot_q5_K((const block_q5_K *)(w + b * ti.type_size), xq); break;
            default: got = q4k_qdot_q6_K((const block_q6_K *)(w + b * ti.type_size), xq); break;
            }
            if (memcmp(&got, &want, 4) && bad++ < 3)
                printf("  %s block %lld: %.9g, q4k.h %.9g\n", q4k_type_name(type), (long long)b, (double)got, (double)want);
        }
        T_CHECK(bad == 0, "%s: %lld of %lld block dots differ", q4k_type_name(type), (long long)bad, (long long)nb);
        free(w);
    }
}

/* the rotation of a head by the host table, both pairings */
static void test_rope(void) {
    t_rng r = {5};
    int64_t n_rot = 128, half = 64, pos, i, bad = 0;
    int neox;
    float v[128], u[128], c[64], s[64], cs[128];
    for (neox = 0; neox < 2; neox++)
        for (pos = 0; pos < 5000; pos += 37) {
            for (i = 0; i < half; i++) {
                q4k_rope_cos_sin(pos, i, n_rot, 1000000.0, 1.0, &c[i], &s[i]);
                cs[2 * i] = c[i];
                cs[2 * i + 1] = s[i];
            }
            for (i = 0; i < n_rot; i++) v[i] = u[i] = (float)t_rng_gauss(&r);
            q4k__rope(v, c, s, n_rot, neox);
            for (i = 0; i < half; i++) {
                int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                q4k_rope_pair(&u[i0], &u[i1], cs[2 * i], cs[2 * i + 1]);
            }
            bad += memcmp(u, v, sizeof u) != 0;
        }
    T_CHECK(bad == 0, "%lld rotated heads differ", (long long)bad);
}

int main(void) {
    T_RUN(test_layouts);
    T_RUN(test_activation_scheme);
    T_RUN(test_fp16);
    T_RUN(test_k4_scales);
    T_RUN(test_decode);
    T_RUN(test_qdots);
    T_RUN(test_rope);
    T_EXIT();
}
