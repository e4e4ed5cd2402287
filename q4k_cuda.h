/* q4k_cuda.h - the CUDA backend of q4k (runs the forward pass on the GPU).

   Include q4k.h first, or let this header include it. With
      #define Q4K_IMPLEMENTATION        (or Q4K_CUDA_IMPLEMENTATION)
   in one file, the implementation is compiled there.

   At run time it loads the CUDA driver (libcuda.so.1) and NVRTC with dlopen: nothing of
   them is needed to build.

   Status: the backend is not built yet. q4k_cuda_probe() says so with
   Q4K_ERR_BACKEND_UNAVAILABLE; nothing here computes anything yet.

   Usage:
      q4k_error err;
      if (q4k_cuda_probe(&err) != Q4K_OK) fprintf(stderr, "%s\n", err.msg);
*/
#ifndef Q4K_CUDA_H
#define Q4K_CUDA_H
#include "q4k.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Q4K_OK when the backend can start on this machine; otherwise err says
   why (library not found, no device, not built). */
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
#include <stdio.h>
#include <string.h>
#ifdef __cplusplus
extern "C" {
#endif

/* The kernels' sources, copied from kernels_src/ by `make embed` (never edit
   between the markers: `make check-embed` fails when they differ). */
/* Q4K_EMBED_BEGIN(kernels_src/q4k_common.h) */
static const char *const q4k__embed_q4k_common_h[] = {
    "/* q4k_common.h - what every GPU kernel of q4k shares with the CPU reference:\n",
    "   the ggml block layouts and the one 8-bit activation scheme.\n",
    "\n",
    "   This file is the kernels' copy: it compiles as CUDA C under NVRTC (no\n",
    "   system headers) and as plain C, where tests/test_kernels_common.c checks it\n",
    "   field by field against the host structs of q4k.h and the activation\n",
    "   quantizer bit for bit against q4k_quantize_act_q8. The backends splice it\n",
    "   into their kernel sources (`make embed`). */\n",
    "#ifndef Q4K_COMMON_H\n",
    "#define Q4K_COMMON_H\n",
    "\n",
    "#if defined(__CUDACC__) || defined(__CUDACC_RTC__)\n",
    "#define Q4K_HD __host__ __device__ __forceinline__\n",
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
    "        float r = q4k_round_even(x[i] * id);\n",
    "        int q = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? (int)r : 0;\n",
    "        out->qs[i] = (signed char)q;\n",
    "        sum += q;\n",
    "    }\n",
    "    out->d = d;\n",
    "    out->sum = sum;\n",
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

Q4K_API q4k_result q4k_cuda_probe(q4k_error *err) {
    if (err) {
        err->code = Q4K_ERR_BACKEND_UNAVAILABLE;
        snprintf(err->msg, sizeof err->msg, "the CUDA backend is not built yet");
    }
    return Q4K_ERR_BACKEND_UNAVAILABLE;
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
