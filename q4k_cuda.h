/* q4k_cuda.h - the CUDA backend of q4k: kernels compiled at run time by NVRTC.

   Include q4k.h first, or let this header include it. With
      #define Q4K_IMPLEMENTATION        (or Q4K_CUDA_IMPLEMENTATION)
   in one file, the implementation is compiled there.

   Nothing of CUDA is needed to build: the subset of the driver API and of
   NVRTC used here is declared below, and both libraries are loaded with
   dlopen when a backend is created (libcuda.so.1, or $Q4K_LIBCUDA; NVRTC
   from libnvrtc.so.13, .so.12, .so, or $Q4K_NVRTC). The kernels live in
   kernels_src/ and are embedded here by `make embed`.

   Usage:
      q4k_cuda_desc d = {0};          (all defaults: device 0)
      q4k_backend *b; q4k_error err;
      if (q4k_cuda_backend_create(&d, &b, &err) != Q4K_OK) {
          fprintf(stderr, "%s\n", err.msg); return 1; }
      b->matmul(b, Q4K_ACT_Q8, Q4K_TYPE_Q4_K, w, rows, cols, x, n, y, &err);
      q4k_backend_destroy(b);

   Environment:
      Q4K_LIBCUDA   path of the CUDA driver library (default libcuda.so.1)
      Q4K_NVRTC     path of the NVRTC library (default: the list above)
      XDG_CACHE_HOME  compiled kernels are cached in $XDG_CACHE_HOME/q4k
                    (else ~/.cache/q4k), keyed by source hash, SM and NVRTC
                    version; a corrupt or unwritable cache is ignored with
                    a warning

   Errors: a missing library, symbol or device gives
   Q4K_ERR_BACKEND_UNAVAILABLE naming the library or the reason; driver
   failures give Q4K_ERR_GPU naming the call (and the kernel of a launch);
   out of device memory gives Q4K_ERR_OUT_OF_MEMORY with bytes needed and free.

   Threads: a backend owns its CUDA context and one stream; use it from one
   thread at a time. Two backends may live in one process.
*/
#ifndef Q4K_CUDA_H
#define Q4K_CUDA_H
#include "q4k.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct q4k_cuda_desc {
    int device;               /* CUDA device ordinal */
    const char *libcuda_path; /* NULL: $Q4K_LIBCUDA, else libcuda.so.1 */
    const char *nvrtc_path;   /* NULL: $Q4K_NVRTC, else libnvrtc.so.13, .so.12, .so */
    const char *cache_dir;    /* NULL: $XDG_CACHE_HOME/q4k, else $HOME/.cache/q4k */
    int no_cache;             /* compile every time, write nothing */
    q4k_log_fn log;
    void *log_user;
} q4k_cuda_desc;

#define Q4K_CUDA_MAX_DEVICES 16

typedef struct q4k_cuda_device_info {
    int ordinal;
    char name[128];
    uint64_t total_memory; /* bytes */
    int cc_major, cc_minor;
    int n_sm;              /* multiprocessors */
    int usable;            /* 1: q4k can run on it; else why says why not */
    char why[256];
} q4k_cuda_device_info;

typedef struct q4k_cuda_info {
    int driver_loaded;     /* libcuda opened and initialised */
    char driver_path[256]; /* the name or path that was opened */
    int driver_version;    /* 13000 means CUDA 13.0 */
    char driver_why[512];  /* when not loaded */
    int nvrtc_loaded;
    char nvrtc_path[256];
    int nvrtc_major, nvrtc_minor;
    char nvrtc_why[512];
    int n_devices;         /* devices the driver reports (at most Q4K_CUDA_MAX_DEVICES listed) */
    q4k_cuda_device_info devices[Q4K_CUDA_MAX_DEVICES];
} q4k_cuda_info;

/* Probe the driver, NVRTC and every device, opening and closing the
   libraries (desc may be NULL). Always fills info; returns Q4K_OK when at
   least one device is usable, else Q4K_ERR_BACKEND_UNAVAILABLE. */
Q4K_API q4k_result q4k_cuda_list_devices(const q4k_cuda_desc *desc, q4k_cuda_info *info);
/* Q4K_OK when the backend can start on this machine; otherwise err says why. */
Q4K_API q4k_result q4k_cuda_probe(q4k_error *err);

/* The embedded source of a kernels_src/ file ("q4k_common.h"), as one
   string to free with q4k_free(); NULL when unknown or out of memory. */
Q4K_API char *q4k_cuda_kernel_source(const char *file);

#ifdef __cplusplus
}
#endif
#endif /* Q4K_CUDA_H */

#if (defined(Q4K_IMPLEMENTATION) || defined(Q4K_CUDA_IMPLEMENTATION)) && !defined(Q4K_CUDA_IMPLEMENTED)
#define Q4K_CUDA_IMPLEMENTED
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(Q4K_MALLOC) /* compiled without q4k.h's implementation: its default allocator */
#define Q4K_MALLOC(n) malloc(n)
#define Q4K_REALLOC(p, n) realloc(p, n)
#define Q4K_FREE(p) free(p)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* >>cuda-sources: the kernels, copied from kernels_src/ by `make embed`
   (never edit between the markers: `make check-embed` fails when they
   differ) */
/* Q4K_EMBED_BEGIN(kernels_src/q4k_common.h) */
static const char *const q4k__embed_q4k_common_h[] = {
    "/* q4k_common.h - what every GPU kernel of q4k shares with the CPU reference:\n",
    "   the ggml block layouts and the arithmetic the GPUs must reproduce: fp16\n",
    "   conversions (the KV cache rounds to nearest even), the Q4_K/Q5_K scale and\n",
    "   min unpacking, the decoding of every block type, the per-block integer dot\n",
    "   products against 8-bit activations, the one 8-bit activation scheme, and\n",
    "   the RoPE rotation (its cos/sin table is computed on the host and uploaded,\n",
    "   never recomputed with a device sinf).\n",
    "\n",
    "   This file is the kernels' copy: it compiles as CUDA C under NVRTC (no\n",
    "   system headers) and as plain C, where tests/test_kernels_common.c checks\n",
    "   it field by field against the host structs of q4k.h and every function\n",
    "   bit for bit against q4k.h's scalar kernels. The backends hand it to the\n",
    "   compiler as the header of every kernel source (`make embed` carries it).\n",
    "\n",
    "   Weight blocks are only 2-byte aligned (Q6_K, Q8_0, Q4_0, Q5_0 have odd\n",
    "   word counts): nothing here reads a weight block more than 2 bytes at a\n",
    "   time. Activation blocks (block_q8a) are 4-byte aligned. */\n",
    "#ifndef Q4K_COMMON_H\n",
    "#define Q4K_COMMON_H\n",
    "\n",
    "#if defined(__CUDACC__) || defined(__CUDACC_RTC__)\n",
    "#define Q4K_HD __device__ __forceinline__\n",
    "#else\n",
    "#define Q4K_HD static inline\n",
    "#endif\n",
    "\n",
    "#define QK 32   /* values per block of Q4_0, Q5_0, Q8_0 and of the activations */\n",
    "#define QK_K 256 /* values per super-block of the k-quants */\n",
    "\n",
    "/* Scales are IEEE half floats kept as raw bits. */\n",
    "typedef struct block_q4_0 {\n",
    "    unsigned short d;\n",
    "    unsigned char qs[QK / 2]; /* value j: low nibble of qs[j] (j < 16), high nibble of qs[j-16] */\n",
    "} block_q4_0;\n",
    "\n",
    "typedef struct block_q5_0 {\n",
    "    unsigned short d;\n",
    "    unsigned char qh[4]; /* bit j: the fifth bit of value j */\n",
    "    unsigned char qs[QK / 2];\n",
    "} block_q5_0;\n",
    "\n",
    "typedef struct block_q8_0 {\n",
    "    unsigned short d;\n",
    "    signed char qs[QK];\n",
    "} block_q8_0;\n",
    "\n",
    "typedef struct block_q4_K {\n",
    "    unsigned short d;         /* scale of the 6-bit sub-block scales */\n",
    "    unsigned short dmin;      /* scale of the 6-bit sub-block mins */\n",
    "    unsigned char scales[12]; /* 8 scales and 8 mins, 6 bits each */\n",
    "    unsigned char qs[QK_K / 2];\n",
    "} block_q4_K;\n",
    "\n",
    "typedef struct block_q5_K {\n",
    "    unsigned short d;\n",
    "    unsigned short dmin;\n",
    "    unsigned char scales[12];\n",
    "    unsigned char qh[QK_K / 8];\n",
    "    unsigned char qs[QK_K / 2];\n",
    "} block_q5_K;\n",
    "\n",
    "typedef struct block_q6_K {\n",
    "    unsigned char ql[QK_K / 2]; /* low 4 bits */\n",
    "    unsigned char qh[QK_K / 4]; /* high 2 bits */\n",
    "    signed char scales[QK_K / 16];\n",
    "    unsigned short d;\n",
    "} block_q6_K;\n",
    "\n",
    "/* Activations, 8 bits: 32 values a block, d = max|x| / 127 (a float\n",
    "   division), id = d != 0 ? 1/d : 0, q = x*id rounded to nearest, ties to\n",
    "   even, clamped to [-127, 127] (a NaN product gives 0); sum = sum of q. */\n",
    "typedef struct block_q8a {\n",
    "    float d;\n",
    "    int sum;\n",
    "    signed char qs[QK];\n",
    "} block_q8a;\n",
    "\n",
    "/* ---- bits and products ---------------------------------------------------\n",
    "\n",
    "   q4k_mul(a, b) is a product rounded on its own: the device compiler may not\n",
    "   fuse it with a following add (NVRTC contracts a*b+c into one FMA unless\n",
    "   told otherwise; the kernels are also compiled with --fmad=false). */\n",
    "#if defined(__CUDACC__) || defined(__CUDACC_RTC__)\n",
    "Q4K_HD float q4k_bits_f32(unsigned int u) { return __uint_as_float(u); }\n",
    "Q4K_HD unsigned int q4k_f32_bits(float f) { return __float_as_uint(f); }\n",
    "Q4K_HD float q4k_mul(float a, float b) { return __fmul_rn(a, b); }\n",
    "/* a . b + c over the 4 signed bytes of a and b */\n",
    "Q4K_HD int q4k_dot4(int a, int b, int c) { return __dp4a(a, b, c); }\n",
    "#else\n",
    "Q4K_HD float q4k_bits_f32(unsigned int u) {\n",
    "    union { unsigned int u; float f; } v;\n",
    "    v.u = u;\n",
    "    return v.f;\n",
    "}\n",
    "Q4K_HD unsigned int q4k_f32_bits(float f) {\n",
    "    union { unsigned int u; float f; } v;\n",
    "    v.f = f;\n",
    "    return v.u;\n",
    "}\n",
    "Q4K_HD float q4k_mul(float a, float b) { return a * b; }\n",
    "Q4K_HD int q4k_dot4(int a, int b, int c) {\n",
    "    int i;\n",
    "    for (i = 0; i < 32; i += 8) c += (int)(signed char)(a >> i) * (int)(signed char)(b >> i);\n",
    "    return c;\n",
    "}\n",
    "#endif\n",
    "\n",
    "/* 4 bytes, little-endian, from a 2-byte aligned address (two 16-bit loads\n",
    "   on the device; bytes on the host, where the buffer may be any type) */\n",
    "Q4K_HD int q4k_ld4(const unsigned char *p) {\n",
    "#if defined(__CUDACC__) || defined(__CUDACC_RTC__)\n",
    "    const unsigned short *h = (const unsigned short *)p;\n",
    "    return (int)((unsigned int)h[0] | (unsigned int)h[1] << 16);\n",
    "#else\n",
    "    return (int)((unsigned int)p[0] | (unsigned int)p[1] << 8 | (unsigned int)p[2] << 16 | (unsigned int)p[3] << 24);\n",
    "#endif\n",
    "}\n",
    "\n",
    "/* ---- half floats -------------------------------------------------------- */\n",
    "\n",
    "Q4K_HD float q4k_h2f(unsigned short h) {\n",
    "    unsigned int sign = (unsigned int)(h >> 15) << 31, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;\n",
    "    if (e == 0x1f) return q4k_bits_f32(sign | 0x7f800000u | m << 13);\n",
    "    if (e) return q4k_bits_f32(sign | (e + 112) << 23 | m << 13);\n",
    "    /* zero or subnormal: m * 2^-24, exact in float */\n",
    "    return q4k_bits_f32(sign | q4k_f32_bits((float)m * 5.9604644775390625e-08f));\n",
    "}\n",
    "\n",
    "/* round to nearest, ties to even (the KV cache's rounding) */\n",
    "Q4K_HD unsigned short q4k_f2h(float f) {\n",
    "    unsigned int x = q4k_f32_bits(f), sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;\n",
    "    if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN stays NaN */\n",
    "    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);                       /* overflows to inf */\n",
    "    if (a >= 0x38800000u) return (unsigned short)(sign | ((a + 0xfffu + ((a >> 13) & 1u)) - 0x38000000u) >> 13);\n",
    "    if (a < 0x33000000u) return (unsigned short)sign; /* under half the smallest subnormal */\n",
    "    {\n",
    "        unsigned int m = (a & 0x7fffffu) | 0x800000u, shift = 126 - (a >> 23); /* 14..24 */\n",
    "        unsigned int r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);\n",
    "        if (rem > half || (rem == half && (r & 1u))) r++;\n",
    "        return (unsigned short)(sign | r);\n",
    "    }\n",
    "}\n",
    "\n",
    "Q4K_HD float q4k_bf2f(unsigned short h) { return q4k_bits_f32((unsigned int)h << 16); }\n",
    "\n",
    "/* ---- k-quant scales ------------------------------------------------------\n",
    "\n",
    "   The 12 scale bytes of Q4_K/Q5_K hold 8 six-bit scales and 8 six-bit mins:\n",
    "   bytes 0-3 scales 0-3, bytes 4-7 mins 0-3 (low 6 bits), bytes 8-11 the low\n",
    "   nibbles of scales 4-7 and (high nibble) mins 4-7, whose top 2 bits are the\n",
    "   spare top bits of bytes 0-3 / 4-7. */\n",
    "Q4K_HD void q4k_k4_scale_min(int j, const unsigned char *s, int *sc, int *m) {\n",
    "    if (j < 4) {\n",
    "        *sc = s[j] & 63;\n",
    "        *m = s[j + 4] & 63;\n",
    "    } else {\n",
    "        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);\n",
    "        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);\n",
    "    }\n",
    "}\n",
    "\n",
    "/* round to nearest, ties to even, for |x| < 2^23 (larger floats are integers) */\n",
    "Q4K_HD float q4k_round_even(float x) {\n",
    "    const float big = 8388608.0f; /* 2^23: adding it drops the fraction, rounding to even */\n",
    "    float ax = x < 0 ? -x : x;\n",
    "    float r;\n",
    "    if (!(ax < big)) return x;\n",
    "    r = (ax + big) - big;\n",
    "    return x < 0 ? -r : r;\n",
    "}\n",
    "\n",
    "Q4K_HD void q4k_quantize_q8a_block(const float *x, block_q8a *out) {\n",
    "    float amax = 0.0f, d, id;\n",
    "    int i, sum = 0;\n",
    "    for (i = 0; i < QK; i++) {\n",
    "        float a = x[i] < 0 ? -x[i] : x[i];\n",
    "        if (a > amax) amax = a;\n",
    "    }\n",
    "    d = amax / 127.0f;\n",
    "    id = d != 0.0f ? 1.0f / d : 0.0f;\n",
    "    for (i = 0; i < QK; i++) {\n",
    "        float r = q4k_round_even(q4k_mul(x[i], id));\n",
    "        int q = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? (int)r : 0;\n",
    "        out->qs[i] = (signed char)q;\n",
    "        sum += q;\n",
    "    }\n",
    "    out->d = d;\n",
    "    out->sum = sum;\n",
    "}\n",
    "\n",
    "/* ---- decoding: 32 values of a row -----------------------------------------\n",
    "\n",
    "   q4k_decode32(type, row, b, y): values 32b..32b+31 of a weight row, as\n",
    "   q4k_dequantize_row gives them bit for bit (every product is exact; the\n",
    "   k-quants form d*sc and dmin*m first and round only in y = d1*q - m1). The\n",
    "   float-activation kernels dot these with the activations. */\n",
    "\n",
    "/* type ids (ggml's) */\n",
    "#define Q4K_T_F32 0\n",
    "#define Q4K_T_F16 1\n",
    "#define Q4K_T_Q4_0 2\n",
    "#define Q4K_T_Q5_0 6\n",
    "#define Q4K_T_Q8_0 8\n",
    "#define Q4K_T_Q4_K 12\n",
    "#define Q4K_T_Q5_K 13\n",
    "#define Q4K_T_Q6_K 14\n",
    "#define Q4K_T_BF16 30\n",
    "\n",
    "Q4K_HD void q4k_decode32_q4_0(const block_q4_0 *w, float *y) {\n",
    "    float d = q4k_h2f(w->d);\n",
    "    int j;\n",
    "    for (j = 0; j < 16; j++) {\n",
    "        y[j] = (float)((w->qs[j] & 0xF) - 8) * d;\n",
    "        y[j + 16] = (float)((w->qs[j] >> 4) - 8) * d;\n",
    "    }\n",
    "}\n",
    "\n",
    "Q4K_HD void q4k_decode32_q5_0(const block_q5_0 *w, float *y) {\n",
    "    float d = q4k_h2f(w->d);\n",
    "    unsigned int qh = (unsigned int)q4k_ld4(w->qh);\n",
    "    int j;\n",
    "    for (j = 0; j < 16; j++) {\n",
    "        y[j] = (float)(((w->qs[j] & 0xF) | (int)((qh >> j) & 1u) << 4) - 16) * d;\n",
    "        y[j + 16] = (float)(((w->qs[j] >> 4) | (int)((qh >> (j + 16)) & 1u) << 4) - 16) * d;\n",
    "    }\n",
    "}\n",
    "\n",
    "Q4K_HD void q4k_decode32_q8_0(const block_q8_0 *w, float *y) {\n",
    "    float d = q4k_h2f(w->d);\n",
    "    int j;\n",
    "    for (j = 0; j < 32; j++) y[j] = (float)w->qs[j] * d;\n",
    "}\n",
    "\n",
    "/* sub-block s (0..7) of a Q4_K / Q5_K super-block; qh NULL for Q4_K */\n",
    "Q4K_HD void q4k_decode32_k45(unsigned short dh, unsigned short dminh, const unsigned char *scales,\n",
    "                             const unsigned char *qs, const unsigned char *qh, int s, float *y) {\n",
    "    const unsigned char *q = qs + 32 * (s / 2);\n",
    "    int shift = 4 * (s & 1), sc, m, l;\n",
    "    float d1, m1;\n",
    "    q4k_k4_scale_min(s, scales, &sc, &m);\n",
    "    d1 = q4k_h2f(dh) * (float)sc;\n",
    "    m1 = q4k_h2f(dminh) * (float)m;\n",
    "    for (l = 0; l < 32; l++) {\n",
    "        int v = (q[l] >> shift) & 0xF;\n",
    "        if (qh) v |= ((qh[l] >> s) & 1) << 4;\n",
    "        y[l] = d1 * (float)v - m1;\n",
    "    }\n",
    "}\n",
    "\n",
    "/* 32-value group g (0..7) of a Q6_K super-block: half h = g/4, group g%4 */\n",
    "Q4K_HD void q4k_decode32_q6_K(const block_q6_K *w, int g, float *y) {\n",
    "    int h = g >> 2, k = g & 3, l;\n",
    "    const unsigned char *ql = w->ql + 64 * h + 32 * (k & 1), *qh = w->qh + 32 * h;\n",
    "    int shift = 4 * (k >> 1);\n",
    "    float d = q4k_h2f(w->d);\n",
    "    for (l = 0; l < 32; l++) {\n",
    "        int q = (((ql[l] >> shift) & 0xF) | ((qh[l] >> (2 * k)) & 3) << 4) - 32;\n",
    "        float ds = d * (float)w->scales[8 * h + 2 * k + l / 16];\n",
    "        y[l] = ds * (float)q;\n",
    "    }\n",
    "}\n",
    "\n",
    "/* values 32b.. of a row of n values (a last F32/F16/BF16 block may be\n",
    "   short: only n - 32b values are written) */\n",
    "Q4K_HD void q4k_decode32(int type, const unsigned char *row, long long b, long long n, float *y) {\n",
    "    long long e = n - 32 * b < 32 ? n - 32 * b : 32, i;\n",
    "    switch (type) {\n",
    "    case Q4K_T_F32: {\n",
    "        const float *r = (const float *)row + 32 * b;\n",
    "        for (i = 0; i < e; i++) y[i] = r[i];\n",
    "        break;\n",
    "    }\n",
    "    case Q4K_T_F16: case Q4K_T_BF16: {\n",
    "        const unsigned short *r = (const unsigned short *)row + 32 * b;\n",
    "        for (i = 0; i < e; i++) y[i] = type == Q4K_T_F16 ? q4k_h2f(r[i]) : q4k_bf2f(r[i]);\n",
    "        break;\n",
    "    }\n",
    "    case Q4K_T_Q4_0: q4k_decode32_q4_0((const block_q4_0 *)row + b, y); break;\n",
    "    case Q4K_T_Q5_0: q4k_decode32_q5_0((const block_q5_0 *)row + b, y); break;\n",
    "    case Q4K_T_Q8_0: q4k_decode32_q8_0((const block_q8_0 *)row + b, y); break;\n",
    "    case Q4K_T_Q4_K: {\n",
    "        const block_q4_K *w = (const block_q4_K *)row + b / 8;\n",
    "        q4k_decode32_k45(w->d, w->dmin, w->scales, w->qs, 0, (int)(b % 8), y);\n",
    "        break;\n",
    "    }\n",
    "    case Q4K_T_Q5_K: {\n",
    "        const block_q5_K *w = (const block_q5_K *)row + b / 8;\n",
    "        q4k_decode32_k45(w->d, w->dmin, w->scales, w->qs, w->qh, (int)(b % 8), y);\n",
    "        break;\n",
    "    }\n",
    "    default: q4k_decode32_q6_K((const block_q6_K *)row + b / 8, (int)(b % 8), y); break;\n",
    "    }\n",
    "}\n",
    "\n",
    "/* ---- integer dots against 8-bit activations --------------------------------\n",
    "\n",
    "   Each function gives one weight block's term of a row's dot product with\n",
    "   one activation row, exactly as q4k.h's scalar kernels form it (the same\n",
    "   exact integers, the same float operations in the same order); a kernel\n",
    "   sums the terms of a row in any order:\n",
    "      Q8_0, Q4_0, Q5_0:  (d * dx) * (float)(sum_i q_i qx_i)\n",
    "      Q4_K, Q5_K:        d * A - dmin * B over the super-block's 8\n",
    "                         activation blocks j, in order:\n",
    "                         A = sum_j dx_j * (float)(sc_j * s_j),\n",
    "                         B = sum_j (float)m_j * (dx_j * (float)sum_j)\n",
    "      Q6_K:              d * sum_j dx_j * (float)(sc_2j * s_lo + sc_2j+1 * s_hi)\n",
    "                         (s_lo, s_hi: the dots of the first and last 16 values)\n",
    "   Quants with an offset (Q4_0's q - 8, ...) are dotted unsigned and the\n",
    "   offset times the activations' sum taken off: the same exact integer. */\n",
    "\n",
    "/* activation quants 4i..4i+3 (block_q8a is 4-byte aligned: one load on the device) */\n",
    "Q4K_HD int q4k_qx4(const block_q8a *x, int i) {\n",
    "#if defined(__CUDACC__) || defined(__CUDACC_RTC__)\n",
    "    return *(const int *)(x->qs + 4 * i);\n",
    "#else\n",
    "    return q4k_ld4((const unsigned char *)x->qs + 4 * i);\n",
    "#endif\n",
    "}\n",
    "\n",
    "Q4K_HD float q4k_qdot_q8_0(const block_q8_0 *w, const block_q8a *x) {\n",
    "    int s = 0, i;\n",
    "    for (i = 0; i < 8; i++) s = q4k_dot4(q4k_ld4((const unsigned char *)w->qs + 4 * i), q4k_qx4(x, i), s);\n",
    "    return (q4k_h2f(w->d) * x->d) * (float)s;\n",
    "}\n",
    "\n",
    "Q4K_HD float q4k_qdot_q4_0(const block_q4_0 *w, const block_q8a *x) {\n",
    "    int s = 0, i;\n",
    "    for (i = 0; i < 4; i++) {\n",
    "        int q = q4k_ld4(w->qs + 4 * i);\n",
    "        s = q4k_dot4(q & 0x0f0f0f0f, q4k_qx4(x, i), s);\n",
    "        s = q4k_dot4((q >> 4) & 0x0f0f0f0f, q4k_qx4(x, i + 4), s);\n",
    "    }\n",
    "    s -= 8 * x->sum;\n",
    "    return (q4k_h2f(w->d) * x->d) * (float)s;\n",
    "}\n",
    "\n",
    "/* the fifth bits of values 4i..4i+3 (bits 4i.. of qh), one per byte, << 4 */\n",
    "Q4K_HD int q4k_bits4(unsigned int qh, int i) {\n",
    "    unsigned int b = (qh >> (4 * i)) & 0xFu;\n",
    "    return (int)(((b & 1u) | (b & 2u) << 7 | (b & 4u) << 14 | (b & 8u) << 21) << 4);\n",
    "}\n",
    "\n",
    "Q4K_HD float q4k_qdot_q5_0(const block_q5_0 *w, const block_q8a *x) {\n",
    "    unsigned int qh = (unsigned int)q4k_ld4(w->qh);\n",
    "    int s = 0, i;\n",
    "    for (i = 0; i < 4; i++) {\n",
    "        int q = q4k_ld4(w->qs + 4 * i);\n",
    "        s = q4k_dot4((q & 0x0f0f0f0f) | q4k_bits4(qh, i), q4k_qx4(x, i), s);\n",
    "        s = q4k_dot4(((q >> 4) & 0x0f0f0f0f) | q4k_bits4(qh, i + 4), q4k_qx4(x, i + 4), s);\n",
    "    }\n",
    "    s -= 16 * x->sum;\n",
    "    return (q4k_h2f(w->d) * x->d) * (float)s;\n",
    "}\n",
    "\n",
    "/* Q4_K / Q5_K: x points at the super-block's 8 activation blocks; qh NULL for Q4_K */\n",
    "Q4K_HD float q4k_qdot_k45(unsigned short dh, unsigned short dminh, const unsigned char *scales,\n",
    "                          const unsigned char *qs, const unsigned char *qh, const block_q8a *x) {\n",
    "    float sa = 0.0f, sb = 0.0f;\n",
    "    int j;\n",
    "    for (j = 0; j < 8; j++) {\n",
    "        const unsigned char *q = qs + 32 * (j / 2);\n",
    "        int shift = 4 * (j & 1), s = 0, sc, m, i;\n",
    "        q4k_k4_scale_min(j, scales, &sc, &m);\n",
    "        for (i = 0; i < 8; i++) {\n",
    "            int v = (q4k_ld4(q + 4 * i) >> shift) & 0x0f0f0f0f;\n",
    "            if (qh) v |= ((q4k_ld4(qh + 4 * i) >> j) & 0x01010101) << 4;\n",
    "            s = q4k_dot4(v, q4k_qx4(x + j, i), s);\n",
    "        }\n",
    "        sa += x[j].d * (float)(sc * s);\n",
    "        sb += (float)m * (x[j].d * (float)x[j].sum);\n",
    "    }\n",
    "    return q4k_h2f(dh) * sa - q4k_h2f(dminh) * sb;\n",
    "}\n",
    "\n",
    "Q4K_HD float q4k_qdot_q4_K(const block_q4_K *w, const block_q8a *x) {\n",
    "    return q4k_qdot_k45(w->d, w->dmin, w->scales, w->qs, 0, x);\n",
    "}\n",
    "\n",
    "Q4K_HD float q4k_qdot_q5_K(const block_q5_K *w, const block_q8a *x) {\n",
    "    return q4k_qdot_k45(w->d, w->dmin, w->scales, w->qs, w->qh, x);\n",
    "}\n",
    "\n",
    "Q4K_HD float q4k_qdot_q6_K(const block_q6_K *w, const block_q8a *x) {\n",
    "    float sa = 0.0f;\n",
    "    int j;\n",
    "    for (j = 0; j < 8; j++) { /* activation block j = values 32j..: half j/4, group j%4 */\n",
    "        int h = j >> 2, k = j & 3, shift = 4 * (k >> 1), s[2], t;\n",
    "        const unsigned char *ql = w->ql + 64 * h + 32 * (k & 1), *qh = w->qh + 32 * h;\n",
    "        for (t = 0; t < 2; t++) {\n",
    "            int i, acc = 0, xs = 0;\n",
    "            for (i = 4 * t; i < 4 * t + 4; i++) {\n",
    "                int v = ((q4k_ld4(ql + 4 * i) >> shift) & 0x0f0f0f0f) | ((q4k_ld4(qh + 4 * i) >> (2 * k)) & 0x03030303) << 4;\n",
    "                acc = q4k_dot4(v, q4k_qx4(x + j, i), acc);\n",
    "                xs = q4k_dot4(0x01010101, q4k_qx4(x + j, i), xs);\n",
    "            }\n",
    "            s[t] = acc - 32 * xs;\n",
    "        }\n",
    "        sa += x[j].d * (float)(w->scales[8 * h + 2 * k] * s[0] + w->scales[8 * h + 2 * k + 1] * s[1]);\n",
    "    }\n",
    "    return q4k_h2f(w->d) * sa;\n",
    "}\n",
    "\n",
    "/* ---- RoPE ------------------------------------------------------------------\n",
    "\n",
    "   The table: for position p and pair i < n_rot/2, cos and sin of\n",
    "   p * base^(-2i/n_rot) / factor, formed in double and rounded to float on the\n",
    "   host (q4k_rope_cos_sin), stored as cs[2 * (p * n_rot/2 + i)] = cos, +1 = sin.\n",
    "   A pair is (i, i + n_rot/2) with neox (qwen2), else (2i, 2i+1) (llama). */\n",
    "Q4K_HD void q4k_rope_pair(float *v0, float *v1, float c, float s) {\n",
    "    float x0 = *v0, x1 = *v1;\n",
    "    *v0 = q4k_mul(x0, c) - q4k_mul(x1, s);\n",
    "    *v1 = q4k_mul(x0, s) + q4k_mul(x1, c);\n",
    "}\n",
    "\n",
    "#endif /* Q4K_COMMON_H */\n",
    0};
/* Q4K_EMBED_END */

static const struct {
    const char *file;
    const char *const *lines;
} q4k_cuda__sources[] = {{"q4k_common.h", q4k__embed_q4k_common_h}};

Q4K_API char *q4k_cuda_kernel_source(const char *file) {
    size_t i;
    for (i = 0; i < sizeof q4k_cuda__sources / sizeof q4k_cuda__sources[0]; i++)
        if (file && !strcmp(file, q4k_cuda__sources[i].file)) return q4k__join_lines(q4k_cuda__sources[i].lines, NULL);
    return NULL;
}

/* >>cuda-api: the driver API and NVRTC, as far as q4k uses them (their
   documented C ABI: handles are opaque pointers, results are ints) */

typedef int q4k__CUresult;
typedef int q4k__CUdevice;
typedef unsigned long long q4k__CUdeviceptr;
typedef struct q4k__CUctx_st *q4k__CUcontext;
typedef struct q4k__CUmod_st *q4k__CUmodule;
typedef struct q4k__CUfunc_st *q4k__CUfunction;
typedef struct q4k__CUstream_st *q4k__CUstream;
typedef int q4k__nvrtcResult;
typedef struct q4k__nvrtcProgram_st *q4k__nvrtcProgram;

#define Q4K__CU_ATTR_MULTIPROCESSOR_COUNT 16
#define Q4K__CU_ATTR_CC_MAJOR 75
#define Q4K__CU_ATTR_CC_MINOR 76
#define Q4K__CU_ERROR_OUT_OF_MEMORY 2
#define Q4K__CU_ERROR_NO_DEVICE 100
#define Q4K__CU_JIT_ERROR_LOG_BUFFER 5
#define Q4K__CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES 6

/* The oldest SM the kernels are written for (Turing; NVRTC 13 starts there too). */
#define Q4K__CUDA_MIN_SM 75

typedef struct q4k__cuda_lib {
    void *h_cuda, *h_nvrtc;
    char cuda_path[256], nvrtc_path[256];
    /* driver */
    q4k__CUresult (*cuInit)(unsigned flags);
    q4k__CUresult (*cuDriverGetVersion)(int *v);
    q4k__CUresult (*cuDeviceGetCount)(int *n);
    q4k__CUresult (*cuDeviceGet)(q4k__CUdevice *d, int ordinal);
    q4k__CUresult (*cuDeviceGetName)(char *name, int len, q4k__CUdevice d);
    q4k__CUresult (*cuDeviceTotalMem)(size_t *bytes, q4k__CUdevice d);
    q4k__CUresult (*cuDeviceGetAttribute)(int *v, int attr, q4k__CUdevice d);
    q4k__CUresult (*cuDevicePrimaryCtxRetain)(q4k__CUcontext *c, q4k__CUdevice d);
    q4k__CUresult (*cuDevicePrimaryCtxRelease)(q4k__CUdevice d);
    q4k__CUresult (*cuCtxSetCurrent)(q4k__CUcontext c);
    q4k__CUresult (*cuCtxSynchronize)(void);
    q4k__CUresult (*cuMemGetInfo)(size_t *free_bytes, size_t *total);
    q4k__CUresult (*cuMemAlloc)(q4k__CUdeviceptr *p, size_t bytes);
    q4k__CUresult (*cuMemFree)(q4k__CUdeviceptr p);
    q4k__CUresult (*cuMemcpyHtoDAsync)(q4k__CUdeviceptr dst, const void *src, size_t bytes, q4k__CUstream s);
    q4k__CUresult (*cuMemcpyDtoHAsync)(void *dst, q4k__CUdeviceptr src, size_t bytes, q4k__CUstream s);
    q4k__CUresult (*cuMemsetD32Async)(q4k__CUdeviceptr dst, unsigned v, size_t n, q4k__CUstream s);
    q4k__CUresult (*cuStreamCreate)(q4k__CUstream *s, unsigned flags);
    q4k__CUresult (*cuStreamDestroy)(q4k__CUstream s);
    q4k__CUresult (*cuStreamSynchronize)(q4k__CUstream s);
    q4k__CUresult (*cuModuleLoadDataEx)(q4k__CUmodule *m, const void *image, unsigned n_opt, int *opts, void **vals);
    q4k__CUresult (*cuModuleUnload)(q4k__CUmodule m);
    q4k__CUresult (*cuModuleGetFunction)(q4k__CUfunction *f, q4k__CUmodule m, const char *name);
    q4k__CUresult (*cuLaunchKernel)(q4k__CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                    unsigned bz, unsigned shared, q4k__CUstream s, void **params, void **extra);
    q4k__CUresult (*cuGetErrorName)(q4k__CUresult r, const char **s);
    q4k__CUresult (*cuGetErrorString)(q4k__CUresult r, const char **s);
    /* NVRTC */
    q4k__nvrtcResult (*nvrtcVersion)(int *major, int *minor);
    q4k__nvrtcResult (*nvrtcGetNumSupportedArchs)(int *n);
    q4k__nvrtcResult (*nvrtcGetSupportedArchs)(int *archs);
    q4k__nvrtcResult (*nvrtcCreateProgram)(q4k__nvrtcProgram *p, const char *src, const char *name, int n_headers,
                                           const char *const *headers, const char *const *include_names);
    q4k__nvrtcResult (*nvrtcDestroyProgram)(q4k__nvrtcProgram *p);
    q4k__nvrtcResult (*nvrtcCompileProgram)(q4k__nvrtcProgram p, int n_opt, const char *const *opts);
    q4k__nvrtcResult (*nvrtcGetProgramLogSize)(q4k__nvrtcProgram p, size_t *n);
    q4k__nvrtcResult (*nvrtcGetProgramLog)(q4k__nvrtcProgram p, char *log);
    q4k__nvrtcResult (*nvrtcGetCUBINSize)(q4k__nvrtcProgram p, size_t *n);
    q4k__nvrtcResult (*nvrtcGetCUBIN)(q4k__nvrtcProgram p, char *cubin);
    q4k__nvrtcResult (*nvrtcGetPTXSize)(q4k__nvrtcProgram p, size_t *n);
    q4k__nvrtcResult (*nvrtcGetPTX)(q4k__nvrtcProgram p, char *ptx);
    const char *(*nvrtcGetErrorString)(q4k__nvrtcResult r);
} q4k__cuda_lib;

/* >>cuda-load */

static q4k_result q4k__cuda_fail(q4k_error *err, q4k_result code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static q4k_result q4k__cuda_fail(q4k_error *err, q4k_result code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

typedef struct q4k__cuda_sym {
    const char *name;
    size_t offset; /* of the function pointer in q4k__cuda_lib */
} q4k__cuda_sym;

#define Q4K__CUDA_SYM(field, sym) {sym, offsetof(q4k__cuda_lib, field)}

/* versioned names are the ABI the driver keeps for the calls whose
   signature changed (the unsuffixed names are the CUDA 2/3 ones) */
static const q4k__cuda_sym q4k__cuda_driver_syms[] = {
    Q4K__CUDA_SYM(cuInit, "cuInit"),
    Q4K__CUDA_SYM(cuDriverGetVersion, "cuDriverGetVersion"),
    Q4K__CUDA_SYM(cuDeviceGetCount, "cuDeviceGetCount"),
    Q4K__CUDA_SYM(cuDeviceGet, "cuDeviceGet"),
    Q4K__CUDA_SYM(cuDeviceGetName, "cuDeviceGetName"),
    Q4K__CUDA_SYM(cuDeviceTotalMem, "cuDeviceTotalMem_v2"),
    Q4K__CUDA_SYM(cuDeviceGetAttribute, "cuDeviceGetAttribute"),
    Q4K__CUDA_SYM(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
    Q4K__CUDA_SYM(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
    Q4K__CUDA_SYM(cuCtxSetCurrent, "cuCtxSetCurrent"),
    Q4K__CUDA_SYM(cuCtxSynchronize, "cuCtxSynchronize"),
    Q4K__CUDA_SYM(cuMemGetInfo, "cuMemGetInfo_v2"),
    Q4K__CUDA_SYM(cuMemAlloc, "cuMemAlloc_v2"),
    Q4K__CUDA_SYM(cuMemFree, "cuMemFree_v2"),
    Q4K__CUDA_SYM(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
    Q4K__CUDA_SYM(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"),
    Q4K__CUDA_SYM(cuMemsetD32Async, "cuMemsetD32Async"),
    Q4K__CUDA_SYM(cuStreamCreate, "cuStreamCreate"),
    Q4K__CUDA_SYM(cuStreamDestroy, "cuStreamDestroy_v2"),
    Q4K__CUDA_SYM(cuStreamSynchronize, "cuStreamSynchronize"),
    Q4K__CUDA_SYM(cuModuleLoadDataEx, "cuModuleLoadDataEx"),
    Q4K__CUDA_SYM(cuModuleUnload, "cuModuleUnload"),
    Q4K__CUDA_SYM(cuModuleGetFunction, "cuModuleGetFunction"),
    Q4K__CUDA_SYM(cuLaunchKernel, "cuLaunchKernel"),
    Q4K__CUDA_SYM(cuGetErrorName, "cuGetErrorName"),
    Q4K__CUDA_SYM(cuGetErrorString, "cuGetErrorString"),
};

static const q4k__cuda_sym q4k__cuda_nvrtc_syms[] = {
    Q4K__CUDA_SYM(nvrtcVersion, "nvrtcVersion"),
    Q4K__CUDA_SYM(nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs"),
    Q4K__CUDA_SYM(nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs"),
    Q4K__CUDA_SYM(nvrtcCreateProgram, "nvrtcCreateProgram"),
    Q4K__CUDA_SYM(nvrtcDestroyProgram, "nvrtcDestroyProgram"),
    Q4K__CUDA_SYM(nvrtcCompileProgram, "nvrtcCompileProgram"),
    Q4K__CUDA_SYM(nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize"),
    Q4K__CUDA_SYM(nvrtcGetProgramLog, "nvrtcGetProgramLog"),
    Q4K__CUDA_SYM(nvrtcGetCUBINSize, "nvrtcGetCUBINSize"),
    Q4K__CUDA_SYM(nvrtcGetCUBIN, "nvrtcGetCUBIN"),
    Q4K__CUDA_SYM(nvrtcGetPTXSize, "nvrtcGetPTXSize"),
    Q4K__CUDA_SYM(nvrtcGetPTX, "nvrtcGetPTX"),
    Q4K__CUDA_SYM(nvrtcGetErrorString, "nvrtcGetErrorString"),
};

/* Open the first of names[] that loads and resolve every symbol into lib
   (dlsym gives an object pointer; memcpy stores it in the function-pointer
   field without the cast ISO C forbids). The library that failed and the
   symbol that is missing are named in err. */
static q4k_result q4k__cuda_dlopen(q4k__cuda_lib *lib, void **handle, char *path_out, const char *const *names,
                                   int n_names, const q4k__cuda_sym *syms, size_t n_syms, const char *what,
                                   q4k_error *err) {
    char tried[384];
    size_t used = 0, i;
    int k;
    tried[0] = 0;
    *handle = NULL;
    for (k = 0; k < n_names && !*handle; k++) {
        const char *e;
        *handle = dlopen(names[k], RTLD_NOW | RTLD_LOCAL);
        if (*handle) {
            snprintf(path_out, 256, "%s", names[k]);
            break;
        }
        e = dlerror();
        if (used < sizeof tried - 1) {
            int w = snprintf(tried + used, sizeof tried - used, "%s%s", used ? "; " : "", e ? e : names[k]);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    if (!*handle) return q4k__cuda_fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: cannot load %s (%s)", what, tried);
    for (i = 0; i < n_syms; i++) {
        void *p = dlsym(*handle, syms[i].name);
        if (!p) {
            dlclose(*handle);
            *handle = NULL;
            return q4k__cuda_fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: %s (%s) lacks the symbol %s", what,
                                  path_out, syms[i].name);
        }
        memcpy((char *)lib + syms[i].offset, &p, sizeof p);
    }
    return Q4K_OK;
}

static q4k_result q4k__cuda_load_driver(q4k__cuda_lib *lib, const char *path, q4k_error *err) {
    const char *names[1];
    const char *env = getenv("Q4K_LIBCUDA");
    names[0] = path && *path ? path : env && *env ? env : "libcuda.so.1";
    return q4k__cuda_dlopen(lib, &lib->h_cuda, lib->cuda_path, names, 1, q4k__cuda_driver_syms,
                            sizeof q4k__cuda_driver_syms / sizeof q4k__cuda_driver_syms[0], "the CUDA driver", err);
}

static q4k_result q4k__cuda_load_nvrtc(q4k__cuda_lib *lib, const char *path, q4k_error *err) {
    static const char *const list[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
    const char *env = getenv("Q4K_NVRTC");
    const char *one = path && *path ? path : env && *env ? env : NULL;
    if (one) return q4k__cuda_dlopen(lib, &lib->h_nvrtc, lib->nvrtc_path, &one, 1, q4k__cuda_nvrtc_syms,
                                     sizeof q4k__cuda_nvrtc_syms / sizeof q4k__cuda_nvrtc_syms[0], "NVRTC", err);
    return q4k__cuda_dlopen(lib, &lib->h_nvrtc, lib->nvrtc_path, list, 3, q4k__cuda_nvrtc_syms,
                            sizeof q4k__cuda_nvrtc_syms / sizeof q4k__cuda_nvrtc_syms[0], "NVRTC", err);
}

static void q4k__cuda_unload(q4k__cuda_lib *lib) {
    if (lib->h_nvrtc) dlclose(lib->h_nvrtc);
    if (lib->h_cuda) dlclose(lib->h_cuda);
    lib->h_nvrtc = lib->h_cuda = NULL;
}

/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" */
static const char *q4k__cuda_errstr(const q4k__cuda_lib *lib, q4k__CUresult r, char *buf, size_t n) {
    const char *name = NULL, *text = NULL;
    if (lib->cuGetErrorName) lib->cuGetErrorName(r, &name);
    if (lib->cuGetErrorString) lib->cuGetErrorString(r, &text);
    if (name) snprintf(buf, n, "%s (%s)", name, text ? text : "no description");
    else snprintf(buf, n, "CUDA error %d", (int)r);
    return buf;
}

/* >>cuda-devices */

Q4K_API q4k_result q4k_cuda_list_devices(const q4k_cuda_desc *desc, q4k_cuda_info *info) {
    q4k__cuda_lib lib;
    q4k_error e;
    q4k__CUresult cr;
    char buf[256];
    int i, n = 0, any = 0;
    memset(info, 0, sizeof *info);
    memset(&lib, 0, sizeof lib);
    if (q4k__cuda_load_nvrtc(&lib, desc ? desc->nvrtc_path : NULL, &e) == Q4K_OK) {
        info->nvrtc_loaded = 1;
        snprintf(info->nvrtc_path, sizeof info->nvrtc_path, "%s", lib.nvrtc_path);
        lib.nvrtcVersion(&info->nvrtc_major, &info->nvrtc_minor);
    } else {
        snprintf(info->nvrtc_why, sizeof info->nvrtc_why, "%s", e.msg);
    }
    if (q4k__cuda_load_driver(&lib, desc ? desc->libcuda_path : NULL, &e) != Q4K_OK) {
        snprintf(info->driver_why, sizeof info->driver_why, "%s", e.msg);
        q4k__cuda_unload(&lib);
        return Q4K_ERR_BACKEND_UNAVAILABLE;
    }
    snprintf(info->driver_path, sizeof info->driver_path, "%s", lib.cuda_path);
    if ((cr = lib.cuInit(0)) != 0) {
        snprintf(info->driver_why, sizeof info->driver_why, "cuda: cuInit failed: %s",
                 q4k__cuda_errstr(&lib, cr, buf, sizeof buf));
        q4k__cuda_unload(&lib);
        return Q4K_ERR_BACKEND_UNAVAILABLE;
    }
    info->driver_loaded = 1;
    lib.cuDriverGetVersion(&info->driver_version);
    if (lib.cuDeviceGetCount(&n) != 0) n = 0;
    info->n_devices = n;
    for (i = 0; i < n && i < Q4K_CUDA_MAX_DEVICES; i++) {
        q4k_cuda_device_info *d = &info->devices[i];
        q4k__CUdevice dev;
        size_t mem = 0;
        d->ordinal = i;
        if ((cr = lib.cuDeviceGet(&dev, i)) != 0) {
            snprintf(d->why, sizeof d->why, "cuDeviceGet failed: %s", q4k__cuda_errstr(&lib, cr, buf, sizeof buf));
            continue;
        }
        if (lib.cuDeviceGetName(d->name, (int)sizeof d->name, dev) != 0) snprintf(d->name, sizeof d->name, "?");
        if (lib.cuDeviceTotalMem(&mem, dev) == 0) d->total_memory = mem;
        lib.cuDeviceGetAttribute(&d->cc_major, Q4K__CU_ATTR_CC_MAJOR, dev);
        lib.cuDeviceGetAttribute(&d->cc_minor, Q4K__CU_ATTR_CC_MINOR, dev);
        lib.cuDeviceGetAttribute(&d->n_sm, Q4K__CU_ATTR_MULTIPROCESSOR_COUNT, dev);
        if (d->cc_major * 10 + d->cc_minor < Q4K__CUDA_MIN_SM)
            snprintf(d->why, sizeof d->why, "compute capability %d.%d is older than the kernels' minimum %d.%d",
                     d->cc_major, d->cc_minor, Q4K__CUDA_MIN_SM / 10, Q4K__CUDA_MIN_SM % 10);
        else if (!info->nvrtc_loaded)
            snprintf(d->why, sizeof d->why, "no NVRTC to compile the kernels");
        else
            d->usable = any = 1;
    }
    if (n == 0) snprintf(info->driver_why, sizeof info->driver_why, "cuda: the driver reports no device");
    q4k__cuda_unload(&lib);
    return any ? Q4K_OK : Q4K_ERR_BACKEND_UNAVAILABLE;
}

Q4K_API q4k_result q4k_cuda_probe(q4k_error *err) {
    q4k_cuda_info *info = (q4k_cuda_info *)Q4K_MALLOC(sizeof *info);
    q4k_result r;
    if (!info) return q4k__cuda_fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory");
    r = q4k_cuda_list_devices(NULL, info);
    if (r == Q4K_OK) {
        q4k__cuda_fail(err, Q4K_OK, "cuda: %d device(s)", info->n_devices);
    } else if (!info->driver_loaded || info->n_devices == 0) {
        q4k__cuda_fail(err, r, "%s", info->driver_why);
    } else if (!info->nvrtc_loaded) {
        q4k__cuda_fail(err, r, "%s", info->nvrtc_why);
    } else {
        q4k__cuda_fail(err, r, "cuda: no usable device (device 0: %s)", info->devices[0].why);
    }
    Q4K_FREE(info);
    return r;
}

#ifdef __cplusplus
}
#endif
#endif
/*
MIT License

Copyright (c) 2026 the q4k authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
*/
