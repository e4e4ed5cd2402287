/* q4k_common.h - what every GPU kernel of q4k shares with the CPU reference:
   the ggml block layouts and the arithmetic the GPUs must reproduce: fp16
   conversions (the KV cache rounds to nearest even), the Q4_K/Q5_K scale and
   min unpacking, the decoding of every block type, the per-block integer dot
   products against 8-bit activations, the one 8-bit activation scheme, and
   the RoPE rotation (its cos/sin table is computed on the host and uploaded,
   never recomputed with a device sinf).

   This file is the kernels' copy: it compiles as CUDA C under NVRTC (no
   system headers) and as plain C, where tests/test_kernels_common.c checks
   it field by field against the host structs of q4k.h and every function
   bit for bit against q4k.h's scalar kernels. The backends hand it to the
   compiler as the header of every kernel source (`make embed` carries it).

   Weight blocks are only 2-byte aligned (Q6_K, Q8_0, Q4_0, Q5_0 have odd
   word counts): nothing here reads a weight block more than 2 bytes at a
   time. Activation blocks (block_q8a) are 4-byte aligned. */
#ifndef Q4K_COMMON_H
#define Q4K_COMMON_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define Q4K_HD __device__ __forceinline__
#else
#define Q4K_HD static inline
#endif

#define QK 32   /* values per block of Q4_0, Q5_0, Q8_0 and of the activations */
#define QK_K 256 /* values per super-block of the k-quants */

/* Scales are IEEE half floats kept as raw bits. */
typedef struct block_q4_0 {
    unsigned short d;
    unsigned char qs[QK / 2]; /* value j: low nibble of qs[j] (j < 16), high nibble of qs[j-16] */
} block_q4_0;

typedef struct block_q5_0 {
    unsigned short d;
    unsigned char qh[4]; /* bit j: the fifth bit of value j */
    unsigned char qs[QK / 2];
} block_q5_0;

typedef struct block_q8_0 {
    unsigned short d;
    signed char qs[QK];
} block_q8_0;

typedef struct block_q4_K {
    unsigned short d;         /* scale of the 6-bit sub-block scales */
    unsigned short dmin;      /* scale of the 6-bit sub-block mins */
    unsigned char scales[12]; /* 8 scales and 8 mins, 6 bits each */
    unsigned char qs[QK_K / 2];
} block_q4_K;

typedef struct block_q5_K {
    unsigned short d;
    unsigned short dmin;
    unsigned char scales[12];
    unsigned char qh[QK_K / 8];
    unsigned char qs[QK_K / 2];
} block_q5_K;

typedef struct block_q6_K {
    unsigned char ql[QK_K / 2]; /* low 4 bits */
    unsigned char qh[QK_K / 4]; /* high 2 bits */
    signed char scales[QK_K / 16];
    unsigned short d;
} block_q6_K;

/* Activations, 8 bits: 32 values a block, d = max|x| / 127 (a float
   division), id = d != 0 ? 1/d : 0, q = x*id rounded to nearest, ties to
   even, clamped to [-127, 127] (a NaN product gives 0); sum = sum of q. */
typedef struct block_q8a {
    float d;
    int sum;
    signed char qs[QK];
} block_q8a;

/* ---- bits and products ---------------------------------------------------

   q4k_mul(a, b) is a product rounded on its own: the device compiler may not
   fuse it with a following add (NVRTC contracts a*b+c into one FMA unless
   told otherwise; the kernels are also compiled with --fmad=false). */
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
Q4K_HD float q4k_bits_f32(unsigned int u) { return __uint_as_float(u); }
Q4K_HD unsigned int q4k_f32_bits(float f) { return __float_as_uint(f); }
Q4K_HD float q4k_mul(float a, float b) { return __fmul_rn(a, b); }
/* a . b + c over the 4 signed bytes of a and b */
Q4K_HD int q4k_dot4(int a, int b, int c) { return __dp4a(a, b, c); }
#else
Q4K_HD float q4k_bits_f32(unsigned int u) {
    union { unsigned int u; float f; } v;
    v.u = u;
    return v.f;
}
Q4K_HD unsigned int q4k_f32_bits(float f) {
    union { unsigned int u; float f; } v;
    v.f = f;
    return v.u;
}
Q4K_HD float q4k_mul(float a, float b) { return a * b; }
Q4K_HD int q4k_dot4(int a, int b, int c) {
    int i;
    for (i = 0; i < 32; i += 8) c += (int)(signed char)(a >> i) * (int)(signed char)(b >> i);
    return c;
}
#endif

/* 4 bytes, little-endian, from a 2-byte aligned address (two 16-bit loads
   on the device; bytes on the host, where the buffer may be any type) */
Q4K_HD int q4k_ld4(const unsigned char *p) {
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    const unsigned short *h = (const unsigned short *)p;
    return (int)((unsigned int)h[0] | (unsigned int)h[1] << 16);
#else
    return (int)((unsigned int)p[0] | (unsigned int)p[1] << 8 | (unsigned int)p[2] << 16 | (unsigned int)p[3] << 24);
#endif
}

/* ---- half floats -------------------------------------------------------- */

Q4K_HD float q4k_h2f(unsigned short h) {
    unsigned int sign = (unsigned int)(h >> 15) << 31, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return q4k_bits_f32(sign | 0x7f800000u | m << 13);
    if (e) return q4k_bits_f32(sign | (e + 112) << 23 | m << 13);
    /* zero or subnormal: m * 2^-24, exact in float */
    return q4k_bits_f32(sign | q4k_f32_bits((float)m * 5.9604644775390625e-08f));
}

/* round to nearest, ties to even (the KV cache's rounding) */
Q4K_HD unsigned short q4k_f2h(float f) {
    unsigned int x = q4k_f32_bits(f), sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN stays NaN */
    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);                       /* overflows to inf */
    if (a >= 0x38800000u) return (unsigned short)(sign | ((a + 0xfffu + ((a >> 13) & 1u)) - 0x38000000u) >> 13);
    if (a < 0x33000000u) return (unsigned short)sign; /* under half the smallest subnormal */
    {
        unsigned int m = (a & 0x7fffffu) | 0x800000u, shift = 126 - (a >> 23); /* 14..24 */
        unsigned int r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (unsigned short)(sign | r);
    }
}

Q4K_HD float q4k_bf2f(unsigned short h) { return q4k_bits_f32((unsigned int)h << 16); }

/* ---- k-quant scales ------------------------------------------------------

   The 12 scale bytes of Q4_K/Q5_K hold 8 six-bit scales and 8 six-bit mins:
   bytes 0-3 scales 0-3, bytes 4-7 mins 0-3 (low 6 bits), bytes 8-11 the low
   nibbles of scales 4-7 and (high nibble) mins 4-7, whose top 2 bits are the
   spare top bits of bytes 0-3 / 4-7. */
Q4K_HD void q4k_k4_scale_min(int j, const unsigned char *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* round to nearest, ties to even, for |x| < 2^23 (larger floats are integers) */
Q4K_HD float q4k_round_even(float x) {
    const float big = 8388608.0f; /* 2^23: adding it drops the fraction, rounding to even */
    float ax = x < 0 ? -x : x;
    float r;
    if (!(ax < big)) return x;
    r = (ax + big) - big;
    return x < 0 ? -r : r;
}

Q4K_HD void q4k_quantize_q8a_block(const float *x, block_q8a *out) {
    float amax = 0.0f, d, id;
    int i, sum = 0;
    for (i = 0; i < QK; i++) {
        float a = x[i] < 0 ? -x[i] : x[i];
        if (a > amax) amax = a;
    }
    d = amax / 127.0f;
    id = d != 0.0f ? 1.0f / d : 0.0f;
    for (i = 0; i < QK; i++) {
        float r = q4k_round_even(q4k_mul(x[i], id));
        int q = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? (int)r : 0;
        out->qs[i] = (signed char)q;
        sum += q;
    }
    out->d = d;
    out->sum = sum;
}

/* ---- decoding: 32 values of a row -----------------------------------------

   q4k_decode32(type, row, b, y): values 32b..32b+31 of a weight row, as
   q4k_dequantize_row gives them bit for bit (every product is exact; the
   k-quants form d*sc and dmin*m first and round only in y = d1*q - m1). The
   float-activation kernels dot these with the activations. */

/* type ids (ggml's) */
#define Q4K_T_F32 0
#define Q4K_T_F16 1
#define Q4K_T_Q4_0 2
#define Q4K_T_Q5_0 6
#define Q4K_T_Q8_0 8
#define Q4K_T_Q4_K 12
#define Q4K_T_Q5_K 13
#define Q4K_T_Q6_K 14
#define Q4K_T_BF16 30

Q4K_HD void q4k_decode32_q4_0(const block_q4_0 *w, float *y) {
    float d = q4k_h2f(w->d);
    int j;
    for (j = 0; j < 16; j++) {
        y[j] = (float)((w->qs[j] & 0xF) - 8) * d;
        y[j + 16] = (float)((w->qs[j] >> 4) - 8) * d;
    }
}

Q4K_HD void q4k_decode32_q5_0(const block_q5_0 *w, float *y) {
    float d = q4k_h2f(w->d);
    unsigned int qh = (unsigned int)q4k_ld4(w->qh);
    int j;
    for (j = 0; j < 16; j++) {
        y[j] = (float)(((w->qs[j] & 0xF) | (int)((qh >> j) & 1u) << 4) - 16) * d;
        y[j + 16] = (float)(((w->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1u) << 4) - 16) * d;
    }
}

Q4K_HD void q4k_decode32_q8_0(const block_q8_0 *w, float *y) {
    float d = q4k_h2f(w->d);
    int j;
    for (j = 0; j < 32; j++) y[j] = (float)w->qs[j] * d;
}

/* sub-block s (0..7) of a Q4_K / Q5_K super-block; qh NULL for Q4_K */
Q4K_HD void q4k_decode32_k45(unsigned short dh, unsigned short dminh, const unsigned char *scales,
                             const unsigned char *qs, const unsigned char *qh, int s, float *y) {
    const unsigned char *q = qs + 32 * (s / 2);
    int shift = 4 * (s & 1), sc, m, l;
    float d1, m1;
    q4k_k4_scale_min(s, scales, &sc, &m);
    d1 = q4k_h2f(dh) * (float)sc;
    m1 = q4k_h2f(dminh) * (float)m;
    for (l = 0; l < 32; l++) {
        int v = (q[l] >> shift) & 0xF;
        if (qh) v |= ((qh[l] >> s) & 1) << 4;
        y[l] = d1 * (float)v - m1;
    }
}

/* 32-value group g (0..7) of a Q6_K super-block: half h = g/4, group g%4 */
Q4K_HD void q4k_decode32_q6_K(const block_q6_K *w, int g, float *y) {
    int h = g >> 2, k = g & 3, l;
    const unsigned char *ql = w->ql + 64 * h + 32 * (k & 1), *qh = w->qh + 32 * h;
    int shift = 4 * (k >> 1);
    float d = q4k_h2f(w->d);
    for (l = 0; l < 32; l++) {
        int q = (((ql[l] >> shift) & 0xF) | ((qh[l] >> (2 * k)) & 3) << 4) - 32;
        float ds = d * (float)w->scales[8 * h + 2 * k + l / 16];
        y[l] = ds * (float)q;
    }
}

/* values 32b.. of a row of n values (a last F32/F16/BF16 block may be
   short: only n - 32b values are written) */
Q4K_HD void q4k_decode32(int type, const unsigned char *row, long long b, long long n, float *y) {
    long long e = n - 32 * b < 32 ? n - 32 * b : 32, i;
    switch (type) {
    case Q4K_T_F32: {
        const float *r = (const float *)row + 32 * b;
        for (i = 0; i < e; i++) y[i] = r[i];
        break;
    }
    case Q4K_T_F16: case Q4K_T_BF16: {
        const unsigned short *r = (const unsigned short *)row + 32 * b;
        for (i = 0; i < e; i++) y[i] = type == Q4K_T_F16 ? q4k_h2f(r[i]) : q4k_bf2f(r[i]);
        break;
    }
    case Q4K_T_Q4_0: q4k_decode32_q4_0((const block_q4_0 *)row + b, y); break;
    case Q4K_T_Q5_0: q4k_decode32_q5_0((const block_q5_0 *)row + b, y); break;
    case Q4K_T_Q8_0: q4k_decode32_q8_0((const block_q8_0 *)row + b, y); break;
    case Q4K_T_Q4_K: {
        const block_q4_K *w = (const block_q4_K *)row + b / 8;
        q4k_decode32_k45(w->d, w->dmin, w->scales, w->qs, 0, (int)(b % 8), y);
        break;
    }
    case Q4K_T_Q5_K: {
        const block_q5_K *w = (const block_q5_K *)row + b / 8;
        q4k_decode32_k45(w->d, w->dmin, w->scales, w->qs, w->qh, (int)(b % 8), y);
        break;
    }
    default: q4k_decode32_q6_K((const block_q6_K *)row + b / 8, (int)(b % 8), y); break;
    }
}

/* ---- integer dots against 8-bit activations --------------------------------

   Each function gives one weight block's term of a row's dot product with
   one activation row, exactly as q4k.h's scalar kernels form it (the same
   exact integers, the same float operations in the same order); a kernel
   sums the terms of a row in any order:
      Q8_0, Q4_0, Q5_0:  (d * dx) * (float)(sum_i q_i qx_i)
      Q4_K, Q5_K:        d * A - dmin * B over the super-block's 8
                         activation blocks j, in order:
                         A = sum_j dx_j * (float)(sc_j * s_j),
                         B = sum_j (float)m_j * (dx_j * (float)sum_j)
      Q6_K:              d * sum_j dx_j * (float)(sc_2j * s_lo + sc_2j+1 * s_hi)
                         (s_lo, s_hi: the dots of the first and last 16 values)
   Quants with an offset (Q4_0's q - 8, ...) are dotted unsigned and the
   offset times the activations' sum taken off: the same exact integer. */

/* activation quants 4i..4i+3 (block_q8a is 4-byte aligned: one load on the device) */
Q4K_HD int q4k_qx4(const block_q8a *x, int i) {
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
    return *(const int *)(x->qs + 4 * i);
#else
    return q4k_ld4((const unsigned char *)x->qs + 4 * i);
#endif
}

Q4K_HD float q4k_qdot_q8_0(const block_q8_0 *w, const block_q8a *x) {
    int s = 0, i;
    for (i = 0; i < 8; i++) s = q4k_dot4(q4k_ld4((const unsigned char *)w->qs + 4 * i), q4k_qx4(x, i), s);
    return (q4k_h2f(w->d) * x->d) * (float)s;
}

Q4K_HD float q4k_qdot_q4_0(const block_q4_0 *w, const block_q8a *x) {
    int s = 0, i;
    for (i = 0; i < 4; i++) {
        int q = q4k_ld4(w->qs + 4 * i);
        s = q4k_dot4(q & 0x0f0f0f0f, q4k_qx4(x, i), s);
        s = q4k_dot4((q >> 4) & 0x0f0f0f0f, q4k_qx4(x, i + 4), s);
    }
    s -= 8 * x->sum;
    return (q4k_h2f(w->d) * x->d) * (float)s;
}

/* the fifth bits of values 4i..4i+3 (bits 4i.. of qh), one per byte, << 4 */
Q4K_HD int q4k_bits4(unsigned int qh, int i) {
    unsigned int b = (qh >> (4 * i)) & 0xFu;
    return (int)(((b & 1u) | (b & 2u) << 7 | (b & 4u) << 14 | (b & 8u) << 21) << 4);
}

Q4K_HD float q4k_qdot_q5_0(const block_q5_0 *w, const block_q8a *x) {
    unsigned int qh = (unsigned int)q4k_ld4(w->qh);
    int s = 0, i;
    for (i = 0; i < 4; i++) {
        int q = q4k_ld4(w->qs + 4 * i);
        s = q4k_dot4((q & 0x0f0f0f0f) | q4k_bits4(qh, i), q4k_qx4(x, i), s);
        s = q4k_dot4(((q >> 4) & 0x0f0f0f0f) | q4k_bits4(qh, i + 4), q4k_qx4(x, i + 4), s);
    }
    s -= 16 * x->sum;
    return (q4k_h2f(w->d) * x->d) * (float)s;
}

/* Q4_K / Q5_K: x points at the super-block's 8 activation blocks; qh NULL for Q4_K */
Q4K_HD float q4k_qdot_k45(unsigned short dh, unsigned short dminh, const unsigned char *scales,
                          const unsigned char *qs, const unsigned char *qh, const block_q8a *x) {
    float sa = 0.0f, sb = 0.0f;
    int j;
    for (j = 0; j < 8; j++) {
        const unsigned char *q = qs + 32 * (j / 2);
        int shift = 4 * (j & 1), s = 0, sc, m, i;
        q4k_k4_scale_min(j, scales, &sc, &m);
        for (i = 0; i < 8; i++) {
            int v = (q4k_ld4(q + 4 * i) >> shift) & 0x0f0f0f0f;
            if (qh) v |= ((q4k_ld4(qh + 4 * i) >> j) & 0x01010101) << 4;
            s = q4k_dot4(v, q4k_qx4(x + j, i), s);
        }
        sa += x[j].d * (float)(sc * s);
        sb += (float)m * (x[j].d * (float)x[j].sum);
    }
    return q4k_h2f(dh) * sa - q4k_h2f(dminh) * sb;
}

Q4K_HD float q4k_qdot_q4_K(const block_q4_K *w, const block_q8a *x) {
    return q4k_qdot_k45(w->d, w->dmin, w->scales, w->qs, 0, x);
}

Q4K_HD float q4k_qdot_q5_K(const block_q5_K *w, const block_q8a *x) {
    return q4k_qdot_k45(w->d, w->dmin, w->scales, w->qs, w->qh, x);
}

Q4K_HD float q4k_qdot_q6_K(const block_q6_K *w, const block_q8a *x) {
    float sa = 0.0f;
    int j;
    for (j = 0; j < 8; j++) { /* activation block j = values 32j..: half j/4, group j%4 */
        int h = j >> 2, k = j & 3, shift = 4 * (k >> 1), s[2], t;
        const unsigned char *ql = w->ql + 64 * h + 32 * (k & 1), *qh = w->qh + 32 * h;
        for (t = 0; t < 2; t++) {
            int i, acc = 0, xs = 0;
            for (i = 4 * t; i < 4 * t + 4; i++) {
                int v = ((q4k_ld4(ql + 4 * i) >> shift) & 0x0f0f0f0f) | ((q4k_ld4(qh + 4 * i) >> (2 * k)) & 0x03030303) << 4;
                acc = q4k_dot4(v, q4k_qx4(x + j, i), acc);
                xs = q4k_dot4(0x01010101, q4k_qx4(x + j, i), xs);
            }
            s[t] = acc - 32 * xs;
        }
        sa += x[j].d * (float)(w->scales[8 * h + 2 * k] * s[0] + w->scales[8 * h + 2 * k + 1] * s[1]);
    }
    return q4k_h2f(w->d) * sa;
}

/* ---- RoPE ------------------------------------------------------------------

   The table: for position p and pair i < n_rot/2, cos and sin of
   p * base^(-2i/n_rot) / factor, formed in double and rounded to float on the
   host (q4k_rope_cos_sin), stored as cs[2 * (p * n_rot/2 + i)] = cos, +1 = sin.
   A pair is (i, i + n_rot/2) with neox (qwen2), else (2i, 2i+1) (llama). */
Q4K_HD void q4k_rope_pair(float *v0, float *v1, float c, float s) {
    float x0 = *v0, x1 = *v1;
    *v0 = q4k_mul(x0, c) - q4k_mul(x1, s);
    *v1 = q4k_mul(x0, s) + q4k_mul(x1, c);
}

#endif /* Q4K_COMMON_H */
