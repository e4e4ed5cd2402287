/* q4k_common.h - what every GPU kernel of q4k shares with the CPU reference:
   the ggml block layouts and the one 8-bit activation scheme.

   This file is the kernels' copy: it compiles as CUDA C under NVRTC (no
   system headers) and as plain C, where tests/test_kernels_common.c checks it
   field by field against the host structs of q4k.h and the activation
   quantizer bit for bit against q4k_quantize_act_q8. The backends splice it
   into their kernel sources (`make embed`). */
#ifndef Q4K_COMMON_H
#define Q4K_COMMON_H

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define Q4K_HD __host__ __device__ __forceinline__
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
        float r = q4k_round_even(x[i] * id);
        int q = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? (int)r : 0;
        out->qs[i] = (signed char)q;
        sum += q;
    }
    out->d = d;
    out->sum = sum;
}

#endif /* Q4K_COMMON_H */
