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
      q4k_backend *b; q4k_session *s; q4k_error err;
      if (q4k_cuda_backend_create(&d, &b, &err) != Q4K_OK) {
          fprintf(stderr, "%s\n", err.msg); return 1; }
      q4k_session_create(b, model, NULL, &s, &err);   (the first session of a
                                           model uploads its weights; later ones share them)
      q4k_session_eval(s, tokens, n, 0, logits, &err);
      q4k_session_free(s);
      q4k_backend_destroy(b);

   Environment:
      Q4K_LIBCUDA   path of the CUDA driver library (default libcuda.so.1)
      Q4K_NVRTC     path of the NVRTC library (default: the list above)
      XDG_CACHE_HOME  compiled kernels are cached in $XDG_CACHE_HOME/q4k
                    (else ~/.cache/q4k), keyed by source hash, SM and NVRTC
                    version; a corrupt or unwritable cache is ignored with
                    a warning
      Q4K_CUDA_GRAPH  0: decode steps launch kernel by kernel instead of
                    replaying the step's CUDA graph (same results, bit for bit)
      Q4K_DEVICE_MEM_LIMIT  bytes: allocations beyond it fail as out of
                    device memory (tests provoke that path anywhere)

   Errors: a missing library, symbol or device gives
   Q4K_ERR_BACKEND_UNAVAILABLE naming the library or the reason; a kernel
   that does not compile, NVRTC's log with kernels_src/FILE:LINE; driver
   failures give Q4K_ERR_GPU naming the call (and the kernel of a launch);
   out of device memory gives Q4K_ERR_OUT_OF_MEMORY with bytes needed and
   free, and a session whose KV cache, scratch and (first time) weights do
   not fit is refused before anything is uploaded. An asynchronous fault
   (found when the stream is synchronised) loses the context: the backend
   and its sessions are dead, and every later call says so.

   Threads: a backend owns its CUDA context and one stream, and may be
   shared by threads (q4k.h "Threads": each call holds the backend's lock
   and makes the context current in the calling thread first); a session is
   used by one thread at a time. Two backends may live in one process.

   The parity gate: sessions trace what q4k_gate_run reads (every op of
   every layer, the residuals, the stages) and keep the KV cache in the
   descriptor's type (f16 or f32); in -DQ4K_FAULTS builds every fault of
   Q4K_FAULT_LIST and perturb act as on the CPU. Traced and faulted
   sessions launch every kernel; others replay one CUDA graph per decode
   step (the token and position are read from device memory).
   Test builds with -DQ4K_CUDA_TEST_FAULT also read
   $Q4K_CUDA_TEST_FAULT_EVAL=N (eval N of a session makes a kernel write to
   an unmapped address) and $Q4K_CUDA_TEST_BREAK=FILE:LINE (that line of
   an embedded kernel file replaced by a syntax error).
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

/* A backend on device desc->device (desc may be NULL): loads the driver
   and NVRTC, compiles the kernels (or takes them from the cache) and
   creates a context and a stream. Its matmul entry point runs the GPU
   kernels on host arrays (uploads, computes, downloads). */
Q4K_API q4k_result q4k_cuda_backend_create(const q4k_cuda_desc *desc, q4k_backend **out, q4k_error *err);

/* The SMs the NVRTC of desc compiles CUBIN for, from sm_75 (the kernels'
   oldest) up: 75, 80, ..., in *count (at most max stored in sms). */
Q4K_API q4k_result q4k_cuda_nvrtc_sms(const q4k_cuda_desc *desc, int *sms, int max, int *count, q4k_error *err);
/* Compile every kernel file to CUBIN for each SM of sms[] with NVRTC alone
   (no driver, no device, no cache); err names the file, SM and the
   compiler's log of the first failure. */
Q4K_API q4k_result q4k_cuda_compile_only(const q4k_cuda_desc *desc, const int *sms, int n_sms, q4k_error *err);

/* The embedded source of a kernels_src/ file ("q4k_common.h"), as one
   string to free with q4k_free(); NULL when unknown or out of memory. */
Q4K_API char *q4k_cuda_kernel_source(const char *file);

/* Device memory as a CUDA backend sees it, in bytes. */
typedef struct q4k_cuda_memory {
    uint64_t total;     /* the device's */
    uint64_t used;      /* total - free now: the context and everything in it
                           (and whatever other processes hold on the device) */
    uint64_t context;   /* total - free when the backend had made its context,
                           before q4k allocated anything */
    uint64_t allocated; /* q4k's own allocations: weights, KV caches, scratch */
} q4k_cuda_memory;
/* Q4K_ERR_INVALID_ARG when b is not a CUDA backend. */
Q4K_API q4k_result q4k_cuda_memory_info(q4k_backend *b, q4k_cuda_memory *out, q4k_error *err);

#ifdef __cplusplus
}
#endif
#endif /* Q4K_CUDA_H */

#if (defined(Q4K_IMPLEMENTATION) || defined(Q4K_CUDA_IMPLEMENTATION)) && !defined(Q4K_CUDA_IMPLEMENTED)
#define Q4K_CUDA_IMPLEMENTED
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(Q4K_MALLOC) /* compiled without q4k.h's implementation: its default allocator */
#define Q4K_MALLOC(n) malloc(n)
#define Q4K_REALLOC(p, n) realloc(p, n)
#define Q4K_FREE(p) free(p)
#endif
#if defined(__GNUC__) && !defined(Q4K__MAYBE_UNUSED)
#define Q4K__MAYBE_UNUSED __attribute__((unused))
#elif !defined(Q4K__MAYBE_UNUSED)
#define Q4K__MAYBE_UNUSED
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* >>cuda-sources: the kernels, copied from kernels_src/ by `make embed`
   (never edit between the markers: `make check-embed` fails when they
   differ) */
/* Q4K_EMBED_BEGIN(kernels_src/matmul.cu) */
static const char *const q4k__embed_matmul_cu[] = {
    "/* matmul.cu - Y = W X for every weight type q4k runs, in both arithmetic modes,\n",
    "   and the 8-bit activation quantizer.\n",
    "\n",
    "   W: rows x cols in its GGUF blocks (row-major, rows of whole blocks, only\n",
    "   2-byte aligned); X: n activation rows of cols values; Y: n rows of `rows`\n",
    "   floats (Y[j][r] = W[r] . X[j]), as q4k_matmul lays them out.\n",
    "\n",
    "   One warp computes one weight row against NC activation rows: lane l takes\n",
    "   the row's blocks l, l+32, ... and forms each block's term exactly as\n",
    "   q4k.h's scalar kernel does (q4k_common.h); the terms are summed in f32 in\n",
    "   another order (lanes, then a butterfly), so a result differs from the\n",
    "   CPU's by float reassociation only. NC = 1 is the matrix-vector product of\n",
    "   a decode step; NC = 8 serves prompts (prefill).\n",
    "\n",
    "   Q8 mode (q4k_mm_q8_*): activations quantized by q4k_quantize_q8a, the\n",
    "   CPU's 8-bit scheme bit for bit; exact integer dots per block.\n",
    "   Float mode (q4k_mm_f32_*, and F32/F16/BF16 weights in both modes): each\n",
    "   32-value group of a row decoded exactly (q4k_decode32) and dotted with\n",
    "   the float activations in order, as the CPU's reference does. */\n",
    "#include \"q4k_common.h\"\n",
    "\n",
    "#define Q4K_MM_WARPS 4 /* rows per thread block: one warp each */\n",
    "\n",
    "__device__ __forceinline__ float q4k_warp_sum(float v) {\n",
    "    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);\n",
    "    return v;\n",
    "}\n",
    "\n",
    "/* each column's lane sums into y[c][r] */\n",
    "template <int NC>\n",
    "__device__ __forceinline__ void q4k_store_row(const float *acc, int lane, long long c0, long long n, long long rows, long long r,\n",
    "                                              float *y) {\n",
    "#pragma unroll\n",
    "    for (int c = 0; c < NC; c++) {\n",
    "        const float s = q4k_warp_sum(acc[c]);\n",
    "        if (lane == 0 && c0 + c < n) y[(c0 + c) * rows + r] = s;\n",
    "    }\n",
    "}\n",
    "\n",
    "/* one weight block's term against activation row x (the row's first block) */\n",
    "template <int T> __device__ __forceinline__ float q4k_block_term(const unsigned char *row, long long b, const block_q8a *x);\n",
    "template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q8_0>(const unsigned char *row, long long b, const block_q8a *x) {\n",
    "    return q4k_qdot_q8_0((const block_q8_0 *)row + b, x + b);\n",
    "}\n",
    "template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q4_0>(const unsigned char *row, long long b, const block_q8a *x) {\n",
    "    return q4k_qdot_q4_0((const block_q4_0 *)row + b, x + b);\n",
    "}\n",
    "template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q5_0>(const unsigned char *row, long long b, const block_q8a *x) {\n",
    "    return q4k_qdot_q5_0((const block_q5_0 *)row + b, x + b);\n",
    "}\n",
    "template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q4_K>(const unsigned char *row, long long b, const block_q8a *x) {\n",
    "    return q4k_qdot_q4_K((const block_q4_K *)row + b, x + 8 * b);\n",
    "}\n",
    "template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q5_K>(const unsigned char *row, long long b, const block_q8a *x) {\n",
    "    return q4k_qdot_q5_K((const block_q5_K *)row + b, x + 8 * b);\n",
    "}\n",
    "template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q6_K>(const unsigned char *row, long long b, const block_q8a *x) {\n",
    "    return q4k_qdot_q6_K((const block_q6_K *)row + b, x + 8 * b);\n",
    "}\n",
    "\n",
    "/* Q8 mode: BYTES per block of VALS values */\n",
    "template <int T, int BYTES, int VALS, int NC>\n",
    "__device__ __forceinline__ void q4k_mm_q8(const unsigned char *w, long long rows, long long cols, const block_q8a *x,\n",
    "                                          float *y, long long n) {\n",
    "    const long long r = (long long)blockIdx.x * Q4K_MM_WARPS + threadIdx.x / 32;\n",
    "    const long long c0 = (long long)blockIdx.y * NC;\n",
    "    const int lane = threadIdx.x & 31;\n",
    "    const long long nb = cols / VALS, nbx = cols / 32;\n",
    "    const unsigned char *row = w + r * nb * BYTES;\n",
    "    float acc[NC];\n",
    "    if (r >= rows) return; /* the whole warp */\n",
    "#pragma unroll\n",
    "    for (int c = 0; c < NC; c++) acc[c] = 0.0f;\n",
    "    for (long long b = lane; b < nb; b += 32) {\n",
    "#pragma unroll\n",
    "        for (int c = 0; c < NC; c++)\n",
    "            if (c0 + c < n) acc[c] += q4k_block_term<T>(row, b, x + (c0 + c) * nbx);\n",
    "    }\n",
    "    q4k_store_row<NC>(acc, lane, c0, n, rows, r, y);\n",
    "}\n",
    "\n",
    "/* float activations: 32-value groups g = lane, lane+32, ... of a row of\n",
    "   row_bytes bytes; a last group of F32/F16/BF16 may be short */\n",
    "template <int T, int NC>\n",
    "__device__ __forceinline__ void q4k_mm_f(const unsigned char *w, long long row_bytes, long long rows, long long cols,\n",
    "                                         const float *x, float *y, long long n) {\n",
    "    const long long r = (long long)blockIdx.x * Q4K_MM_WARPS + threadIdx.x / 32;\n",
    "    const long long c0 = (long long)blockIdx.y * NC;\n",
    "    const int lane = threadIdx.x & 31;\n",
    "    const long long ng = (cols + 31) / 32;\n",
    "    const unsigned char *row = w + r * row_bytes;\n",
    "    float acc[NC], wv[32];\n",
    "    if (r >= rows) return;\n",
    "#pragma unroll\n",
    "    for (int c = 0; c < NC; c++) acc[c] = 0.0f;\n",
    "    for (long long g = lane; g < ng; g += 32) {\n",
    "        const int e = cols - 32 * g < 32 ? (int)(cols - 32 * g) : 32;\n",
    "        q4k_decode32(T, row, g, cols, wv);\n",
    "#pragma unroll\n",
    "        for (int c = 0; c < NC; c++) {\n",
    "            if (c0 + c < n) {\n",
    "                const float *xr = x + (c0 + c) * cols + 32 * g;\n",
    "                float s = 0.0f;\n",
    "                if (e == 32) {\n",
    "#pragma unroll\n",
    "                    for (int i = 0; i < 32; i++) s += wv[i] * xr[i];\n",
    "                } else {\n",
    "                    for (int i = 0; i < e; i++) s += wv[i] * xr[i];\n",
    "                }\n",
    "                acc[c] += s;\n",
    "            }\n",
    "        }\n",
    "    }\n",
    "    q4k_store_row<NC>(acc, lane, c0, n, rows, r, y);\n",
    "}\n",
    "\n",
    "/* kernels: q4k_mv_* (one column a warp, decode) and q4k_mm_* (8 columns, prefill) */\n",
    "#define Q4K_MM_Q8(name, T, BYTES, VALS)                                                                        \\\n",
    "    extern \"C\" __global__ void __launch_bounds__(32 * Q4K_MM_WARPS)                                           \\\n",
    "        q4k_mv_q8_##name(const unsigned char *w, long long rows, long long cols, const block_q8a *x, float *y, \\\n",
    "                         long long n) {                                                                       \\\n",
    "        q4k_mm_q8<T, BYTES, VALS, 1>(w, rows, cols, x, y, n);                                                 \\\n",
    "    }                                                                                                         \\\n",
    "    extern \"C\" __global__ void __launch_bounds__(32 * Q4K_MM_WARPS)                                           \\\n",
    "        q4k_mm_q8_##name(const unsigned char *w, long long rows, long long cols, const block_q8a *x, float *y, \\\n",
    "                         long long n) {                                                                       \\\n",
    "        q4k_mm_q8<T, BYTES, VALS, 8>(w, rows, cols, x, y, n);                                                 \\\n",
    "    }\n",
    "\n",
    "Q4K_MM_Q8(q8_0, Q4K_T_Q8_0, 34, 32)\n",
    "Q4K_MM_Q8(q4_0, Q4K_T_Q4_0, 18, 32)\n",
    "Q4K_MM_Q8(q5_0, Q4K_T_Q5_0, 22, 32)\n",
    "Q4K_MM_Q8(q4_K, Q4K_T_Q4_K, 144, 256)\n",
    "Q4K_MM_Q8(q5_K, Q4K_T_Q5_K, 176, 256)\n",
    "Q4K_MM_Q8(q6_K, Q4K_T_Q6_K, 210, 256)\n",
    "\n",
    "#define Q4K_MM_F(name, T)                                                                                       \\\n",
    "    extern \"C\" __global__ void __launch_bounds__(32 * Q4K_MM_WARPS)                                            \\\n",
    "        q4k_mv_f32_##name(const unsigned char *w, long long row_bytes, long long rows, long long cols,         \\\n",
    "                          const float *x, float *y, long long n) {                                             \\\n",
    "        q4k_mm_f<T, 1>(w, row_bytes, rows, cols, x, y, n);                                                     \\\n",
    "    }                                                                                                          \\\n",
    "    extern \"C\" __global__ void __launch_bounds__(32 * Q4K_MM_WARPS)                                            \\\n",
    "        q4k_mm_f32_##name(const unsigned char *w, long long row_bytes, long long rows, long long cols,         \\\n",
    "                          const float *x, float *y, long long n) {                                             \\\n",
    "        q4k_mm_f<T, 8>(w, row_bytes, rows, cols, x, y, n);                                                     \\\n",
    "    }\n",
    "\n",
    "Q4K_MM_F(f32, Q4K_T_F32)\n",
    "Q4K_MM_F(f16, Q4K_T_F16)\n",
    "Q4K_MM_F(bf16, Q4K_T_BF16)\n",
    "Q4K_MM_F(q8_0, Q4K_T_Q8_0)\n",
    "Q4K_MM_F(q4_0, Q4K_T_Q4_0)\n",
    "Q4K_MM_F(q5_0, Q4K_T_Q5_0)\n",
    "Q4K_MM_F(q4_K, Q4K_T_Q4_K)\n",
    "Q4K_MM_F(q5_K, Q4K_T_Q5_K)\n",
    "Q4K_MM_F(q6_K, Q4K_T_Q6_K)\n",
    "\n",
    "/* x: nb blocks of 32 floats -> nb block_q8a, one thread a block */\n",
    "extern \"C\" __global__ void q4k_quantize_q8a(const float *x, block_q8a *out, long long nb) {\n",
    "    const long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    "    if (b < nb) q4k_quantize_q8a_block(x + 32 * b, out + b);\n",
    "}\n",
    0};
/* Q4K_EMBED_END */
/* Q4K_EMBED_BEGIN(kernels_src/ops.cu) */
static const char *const q4k__embed_ops_cu[] = {
    "/* ops.cu - the forward pass's operations other than matrix products, each\n",
    "   written to compute what q4k.h's CPU reference computes (see the comments\n",
    "   at its functions, `>>model`):\n",
    "      q4k_get_rows      embedding rows, decoded exactly (any weight type)\n",
    "      q4k_rmsnorm       y = x * (float)(1 / sqrt(mean(x^2) + eps)) * w, the\n",
    "                        mean in double (f16acc: a fault of the gate)\n",
    "      q4k_add_bias, q4k_add, q4k_swiglu (silu(g) * u, silu(x) = x / (1 + e^-x))\n",
    "      q4k_rope          rotation by the host's cos/sin table (q4k_rope_pair)\n",
    "      q4k_kv_append     K or V rows into the cache: f16 (round to nearest even)\n",
    "                        or f32 (exact), as the session's KV type says\n",
    "      q4k_attention     causal GQA attention, f32 scores, decode and prefill\n",
    "      q4k_argmax        greedy token (lowest index among equal maxima)\n",
    "      q4k_perturb       the gate's perturb fault: y *= 1 + eps * N(0,1), the\n",
    "                        CPU's generator (splitmix64, Box-Muller) at its position\n",
    "   Positions are read from device memory (pos[0]: the position of the\n",
    "   batch's first token), so a captured decode step stays valid as the\n",
    "   position moves. */\n",
    "#include \"q4k_common.h\"\n",
    "\n",
    "/* out[j][0..d) = row tokens[j] of w (row_bytes a row); a thread per 32-value group */\n",
    "extern \"C\" __global__ void q4k_get_rows(int type, const unsigned char *w, long long row_bytes, const int *tokens,\n",
    "                                        long long n, long long d, float *out) {\n",
    "    const long long ng = (d + 31) / 32;\n",
    "    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    "    float v[32];\n",
    "    if (t >= n * ng) return;\n",
    "    const long long j = t / ng, g = t % ng;\n",
    "    const int e = d - 32 * g < 32 ? (int)(d - 32 * g) : 32;\n",
    "    q4k_decode32(type, w + (long long)tokens[j] * row_bytes, g, d, v);\n",
    "    for (int i = 0; i < e; i++) out[j * d + 32 * g + i] = v[i];\n",
    "}\n",
    "\n",
    "#define Q4K_OPS_THREADS 256\n",
    "\n",
    "/* block-wide sum of a double (blockDim.x == Q4K_OPS_THREADS) */\n",
    "__device__ double q4k_block_sum_d(double v, double *sh) {\n",
    "    sh[threadIdx.x] = v;\n",
    "    __syncthreads();\n",
    "    for (int s = Q4K_OPS_THREADS / 2; s > 0; s >>= 1) {\n",
    "        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];\n",
    "        __syncthreads();\n",
    "    }\n",
    "    v = sh[0];\n",
    "    __syncthreads();\n",
    "    return v;\n",
    "}\n",
    "\n",
    "/* one thread block per row; f16acc (a fault of the gate): the sum of\n",
    "   squares kept in an fp16 accumulator, one add at a time as the CPU's fault does */\n",
    "extern \"C\" __global__ void __launch_bounds__(Q4K_OPS_THREADS)\n",
    "    q4k_rmsnorm(const float *x, const float *w, float *y, long long d, float eps, int f16acc) {\n",
    "    __shared__ double sh[Q4K_OPS_THREADS];\n",
    "    const float *xr = x + blockIdx.x * d;\n",
    "    float *yr = y + blockIdx.x * d;\n",
    "    double ss = 0.0;\n",
    "    if (f16acc) {\n",
    "        if (threadIdx.x == 0) {\n",
    "            float h = 0.0f;\n",
    "            for (long long i = 0; i < d; i++) h = q4k_h2f(q4k_f2h(h + q4k_mul(xr[i], xr[i])));\n",
    "            sh[0] = (double)h;\n",
    "        }\n",
    "        __syncthreads();\n",
    "        ss = sh[0];\n",
    "        __syncthreads();\n",
    "    } else {\n",
    "        for (long long i = threadIdx.x; i < d; i += blockDim.x) ss += (double)xr[i] * (double)xr[i];\n",
    "        ss = q4k_block_sum_d(ss, sh);\n",
    "    }\n",
    "    const float scale = (float)(1.0 / sqrt(ss / (double)d + (double)eps));\n",
    "    for (long long i = threadIdx.x; i < d; i += blockDim.x) yr[i] = q4k_mul(xr[i], scale) * w[i];\n",
    "}\n",
    "\n",
    "/* y[j][i] += b[i] for n rows of dim */\n",
    "extern \"C\" __global__ void q4k_add_bias(float *y, const float *b, long long n, long long dim) {\n",
    "    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    "    if (t < n * dim) y[t] += b[t % dim];\n",
    "}\n",
    "\n",
    "extern \"C\" __global__ void q4k_add(float *x, const float *y, long long n) {\n",
    "    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    "    if (t < n) x[t] += y[t];\n",
    "}\n",
    "\n",
    "extern \"C\" __global__ void q4k_swiglu(float *g, const float *u, long long n) {\n",
    "    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    "    if (t < n) {\n",
    "        const float x = g[t];\n",
    "        g[t] = x / (1.0f + expf(-x)) * u[t];\n",
    "    }\n",
    "}\n",
    "\n",
    "/* v: n tokens x n_heads heads of head_dim (row stride `stride` floats);\n",
    "   table: [position][n_rot/2] (cos, sin) pairs; a thread per pair */\n",
    "extern \"C\" __global__ void q4k_rope(float *v, long long n, int n_heads, int head_dim, long long stride, int n_rot,\n",
    "                                    int neox, const float *table, const int *pos) {\n",
    "    const int half = n_rot / 2;\n",
    "    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    "    if (t >= n * n_heads * half) return;\n",
    "    const long long j = t / ((long long)n_heads * half);\n",
    "    const int h = (int)(t / half % n_heads), i = (int)(t % half);\n",
    "    float *hv = v + j * stride + (long long)h * head_dim;\n",
    "    const float *cs = table + 2 * ((long long)(pos[0] + j) * half + i);\n",
    "    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;\n",
    "    q4k_rope_pair(&hv[i0], &hv[i1], cs[0], cs[1]);\n",
    "}\n",
    "\n",
    "/* cache[(pos0 + j) * dim + i] = x[j * dim + i] * scale, rounded to f16\n",
    "   unless f32 (scale is 1, an exact product, except under a fault of the\n",
    "   gate that halves the cache) */\n",
    "extern \"C\" __global__ void q4k_kv_append(const float *x, void *cache, long long dim, long long n, const int *pos, int f32,\n",
    "                                         float scale) {\n",
    "    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    "    if (t >= n * dim) return;\n",
    "    const long long at = ((long long)pos[0] + t / dim) * dim + t % dim;\n",
    "    const float v = scale == 1.0f ? x[t] : q4k_mul(x[t], scale); /* a NaN keeps its payload, as on the CPU */\n",
    "    if (f32) ((float *)cache)[at] = v;\n",
    "    else ((unsigned short *)cache)[at] = q4k_f2h(v);\n",
    "}\n",
    "\n",
    "/* element i of a cache of f16 or f32 */\n",
    "Q4K_HD float q4k_kv_get(const void *c, long long i, int f32) {\n",
    "    return f32 ? ((const float *)c)[i] : q4k_h2f(((const unsigned short *)c)[i]);\n",
    "}\n",
    "\n",
    "/* Causal attention of token j (position pos0 + j) and query head h: one\n",
    "   thread block per (j, h), grid n * n_head. q, out: [n][n_head * hd];\n",
    "   kc, vc: one layer's cache [n_ctx][n_head_kv * hd] (f16, or f32); scores: scratch of\n",
    "   n * n_head rows of n_ctx floats. The dot of each score runs over d in\n",
    "   order, and each output sums p_t * v_t over t in order, as the CPU does;\n",
    "   only the max and the softmax denominator are reduced in another order.\n",
    "   gqa_fault (a fault of the gate): query head h reads KV head h % n_head_kv. */\n",
    "extern \"C\" __global__ void __launch_bounds__(Q4K_OPS_THREADS)\n",
    "    q4k_attention(const float *q, const void *kc, const void *vc, float *out, float *scores,\n",
    "                  const int *pos, int n_head, int n_head_kv, int hd, long long n_ctx, int f32, int gqa_fault) {\n",
    "    __shared__ float shf[Q4K_OPS_THREADS];\n",
    "    const long long j = blockIdx.x / n_head;\n",
    "    const int h = blockIdx.x % n_head, kvh = gqa_fault ? h % n_head_kv : h / (n_head / n_head_kv);\n",
    "    const long long kv_dim = (long long)n_head_kv * hd, last = (long long)pos[0] + j;\n",
    "    const float *qh = q + (j * n_head + h) * hd;\n",
    "    float *sc = scores + (long long)blockIdx.x * n_ctx;\n",
    "    const float scale = 1.0f / sqrtf((float)hd);\n",
    "    float mx = __int_as_float(0xff800000), sum = 0.0f; /* -inf */\n",
    "    for (long long t = threadIdx.x; t <= last; t += blockDim.x) {\n",
    "        const long long k = t * kv_dim + (long long)kvh * hd;\n",
    "        float dot = 0.0f;\n",
    "        for (int d = 0; d < hd; d++) dot += q4k_mul(qh[d], q4k_kv_get(kc, k + d, f32));\n",
    "        sc[t] = dot * scale;\n",
    "        mx = fmaxf(mx, sc[t]);\n",
    "    }\n",
    "    shf[threadIdx.x] = mx;\n",
    "    __syncthreads();\n",
    "    for (int s = Q4K_OPS_THREADS / 2; s > 0; s >>= 1) {\n",
    "        if (threadIdx.x < s) shf[threadIdx.x] = fmaxf(shf[threadIdx.x], shf[threadIdx.x + s]);\n",
    "        __syncthreads();\n",
    "    }\n",
    "    mx = shf[0];\n",
    "    __syncthreads();\n",
    "    for (long long t = threadIdx.x; t <= last; t += blockDim.x) {\n",
    "        sc[t] = expf(sc[t] - mx);\n",
    "        sum += sc[t];\n",
    "    }\n",
    "    shf[threadIdx.x] = sum;\n",
    "    __syncthreads();\n",
    "    for (int s = Q4K_OPS_THREADS / 2; s > 0; s >>= 1) {\n",
    "        if (threadIdx.x < s) shf[threadIdx.x] += shf[threadIdx.x + s];\n",
    "        __syncthreads();\n",
    "    }\n",
    "    sum = shf[0];\n",
    "    for (int d = threadIdx.x; d < hd; d += blockDim.x) {\n",
    "        float acc = 0.0f;\n",
    "        for (long long t = 0; t <= last; t++)\n",
    "            acc += q4k_mul(sc[t] / sum, q4k_kv_get(vc, t * kv_dim + (long long)kvh * hd + d, f32));\n",
    "        out[(j * n_head + h) * hd + d] = acc;\n",
    "    }\n",
    "}\n",
    "\n",
    "/* out[0] = index of the largest of x[0..n) (the lowest among equals; NaN never wins); one block */\n",
    "extern \"C\" __global__ void __launch_bounds__(Q4K_OPS_THREADS) q4k_argmax(const float *x, long long n, int *out) {\n",
    "    __shared__ float sv[Q4K_OPS_THREADS];\n",
    "    __shared__ long long si[Q4K_OPS_THREADS];\n",
    "    float best = __int_as_float(0xff800000); /* -inf */\n",
    "    long long bi = -1;\n",
    "    for (long long i = threadIdx.x; i < n; i += blockDim.x)\n",
    "        if (x[i] > best || (bi < 0 && x[i] == x[i])) {\n",
    "            best = x[i];\n",
    "            bi = i;\n",
    "        }\n",
    "    sv[threadIdx.x] = best;\n",
    "    si[threadIdx.x] = bi;\n",
    "    __syncthreads();\n",
    "    for (int s = Q4K_OPS_THREADS / 2; s > 0; s >>= 1) {\n",
    "        if (threadIdx.x < s) {\n",
    "            const float ov = sv[threadIdx.x + s];\n",
    "            const long long oi = si[threadIdx.x + s];\n",
    "            if (oi >= 0 && (si[threadIdx.x] < 0 || ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x]))) {\n",
    "                sv[threadIdx.x] = ov;\n",
    "                si[threadIdx.x] = oi;\n",
    "            }\n",
    "        }\n",
    "        __syncthreads();\n",
    "    }\n",
    "    if (threadIdx.x == 0) out[0] = (int)si[0];\n",
    "}\n",
    "\n",
    "/* The gate's perturb fault: y[i] *= 1 + eps * N(0,1), value i drawn as the\n",
    "   CPU's generator draws its (drawn + i)-th value after `seed` (splitmix64,\n",
    "   then Box-Muller in double), so both backends add the same noise when they\n",
    "   perturb the same ops in the same order. */\n",
    "extern \"C\" __global__ void q4k_perturb(float *y, long long n, float eps, unsigned long long seed, unsigned long long drawn) {\n",
    "    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n",
    "    if (t >= n) return;\n",
    "    unsigned long long a = seed + (drawn + (unsigned long long)t + 1ull) * 0x9E3779B97F4A7C15ull;\n",
    "    a = (a ^ (a >> 30)) * 0xBF58476D1CE4E5B9ull;\n",
    "    a = (a ^ (a >> 27)) * 0x94D049BB133111EBull;\n",
    "    const unsigned long long b = a ^ (a >> 31);\n",
    "    const double u = ((double)(b >> 11) + 0.5) / 9007199254740992.0, v = (double)(b & 0x7ff) / 2048.0;\n",
    "    y[t] *= (float)(1.0 + (double)eps * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));\n",
    "}\n",
    0};
/* Q4K_EMBED_END */
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
} q4k_cuda__sources[] = {{"q4k_common.h", q4k__embed_q4k_common_h},
                         {"matmul.cu", q4k__embed_matmul_cu},
                         {"ops.cu", q4k__embed_ops_cu}};

/* the files compiled into modules, under the names compiler logs show */
#define Q4K__CUDA_N_FILES 2
static const char *const q4k__cuda_files[Q4K__CUDA_N_FILES] = {"kernels_src/matmul.cu", "kernels_src/ops.cu"};
static const char *const *const q4k__cuda_file_lines[Q4K__CUDA_N_FILES] = {q4k__embed_matmul_cu, q4k__embed_ops_cu};

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
typedef struct q4k__CUgraph_st *q4k__CUgraph;
typedef struct q4k__CUgraphExec_st *q4k__CUgraphExec;
typedef int q4k__nvrtcResult;
typedef struct q4k__nvrtcProgram_st *q4k__nvrtcProgram;

#define Q4K__CU_ATTR_MULTIPROCESSOR_COUNT 16
#define Q4K__CU_ATTR_CC_MAJOR 75
#define Q4K__CU_ATTR_CC_MINOR 76
#define Q4K__CU_ERROR_OUT_OF_MEMORY 2
#define Q4K__CU_ERROR_NO_DEVICE 100
#define Q4K__CU_STREAM_CAPTURE_MODE_RELAXED 2
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
    /* graphs (optional: without them every step is launched kernel by kernel) */
    q4k__CUresult (*cuStreamBeginCapture)(q4k__CUstream s, int mode);
    q4k__CUresult (*cuStreamEndCapture)(q4k__CUstream s, q4k__CUgraph *g);
    q4k__CUresult (*cuGraphInstantiateWithFlags)(q4k__CUgraphExec *e, q4k__CUgraph g, unsigned long long flags);
    q4k__CUresult (*cuGraphLaunch)(q4k__CUgraphExec e, q4k__CUstream s);
    q4k__CUresult (*cuGraphExecDestroy)(q4k__CUgraphExec e);
    q4k__CUresult (*cuGraphDestroy)(q4k__CUgraph g);
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

static const q4k__cuda_sym q4k__cuda_graph_syms[] = {
    Q4K__CUDA_SYM(cuStreamBeginCapture, "cuStreamBeginCapture_v2"),
    Q4K__CUDA_SYM(cuStreamEndCapture, "cuStreamEndCapture"),
    Q4K__CUDA_SYM(cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags"),
    Q4K__CUDA_SYM(cuGraphLaunch, "cuGraphLaunch"),
    Q4K__CUDA_SYM(cuGraphExecDestroy, "cuGraphExecDestroy"),
    Q4K__CUDA_SYM(cuGraphDestroy, "cuGraphDestroy"),
};

/* 1 when the driver has every graph call (resolved into lib), else 0 */
static int q4k__cuda_load_graphs(q4k__cuda_lib *lib) {
    size_t i, n = sizeof q4k__cuda_graph_syms / sizeof q4k__cuda_graph_syms[0];
    for (i = 0; i < n; i++) {
        void *p = dlsym(lib->h_cuda, q4k__cuda_graph_syms[i].name);
        if (!p) return 0;
        memcpy((char *)lib + q4k__cuda_graph_syms[i].offset, &p, sizeof p);
    }
    return 1;
}

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
    if (!*handle) return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: cannot load %s (%s)", what, tried);
    for (i = 0; i < n_syms; i++) {
        void *p = dlsym(*handle, syms[i].name);
        if (!p) {
            dlclose(*handle);
            *handle = NULL;
            return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: %s (%s) lacks the symbol %s", what,
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

/* The libraries stay mapped once loaded: the driver runs threads of its own
   after cuInit, and NVRTC keeps allocations in its globals that a dlclose
   would leak on every load (dlopen of a loaded library only counts up). */
static void q4k__cuda_unload(q4k__cuda_lib *lib) { lib->h_nvrtc = lib->h_cuda = NULL; }

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
            snprintf(d->why, sizeof d->why, "cuDeviceGet failed: %.200s", q4k__cuda_errstr(&lib, cr, buf, sizeof buf));
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
    if (!info) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory");
    r = q4k_cuda_list_devices(NULL, info);
    if (r == Q4K_OK) {
        q4k__fail(err, Q4K_OK, "cuda: %d device(s)", info->n_devices);
    } else if (!info->driver_loaded || info->n_devices == 0) {
        q4k__fail(err, r, "%s", info->driver_why);
    } else if (!info->nvrtc_loaded) {
        q4k__fail(err, r, "%s", info->nvrtc_why);
    } else {
        q4k__fail(err, r, "cuda: no usable device (device 0: %s)", info->devices[0].why);
    }
    Q4K_FREE(info);
    return r;
}


/* >>cuda-compile: NVRTC, CUBIN for the device's SM, a disk cache */

/* FNV-1a, 64 bits: the cache key and the cache files' checksum */
static uint64_t q4k__cuda_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Kernels are compiled without fast math; --fmad=false keeps every a*b+c a
   rounded product and a rounded sum, as on the CPU, so each block's term is
   the CPU's bit for bit (only the order of the final sums differs). */
static const char *const q4k__cuda_nvrtc_opts[] = {"--fmad=false", "--std=c++14"};

/* NVRTC writes "kernels_src/ops.cu(40): error: ..."; compilers' usual
   FILE:LINE reads better and is what editors jump to: rewritten in place */
static void q4k__cuda_log_lines(char *log, const char *name) {
    size_t nl = strlen(name);
    char *r = log, *w = log;
    while (*r) {
        if (!strncmp(r, name, nl) && r[nl] == '(' && r[nl + 1] >= '0' && r[nl + 1] <= '9') {
            char *e = r + nl + 1;
            while (*e >= '0' && *e <= '9') e++;
            if (*e == ')') {
                memmove(w, r, nl);
                w += nl;
                *w++ = ':';
                r += nl + 1;
                while (r < e) *w++ = *r++;
                r = e + 1;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = 0;
}

/* src compiled under name, q4k_common.h given as its header; ptx: PTX for
   compute_SM instead of CUBIN for sm_SM. *image is malloc'ed. */
static q4k_result q4k__cuda_nvrtc_compile(const q4k__cuda_lib *lib, const char *name, const char *src, const char *common,
                                          int sm, int ptx, char **image, size_t *size, q4k_log_fn log, void *log_user,
                                          q4k_error *err) {
    q4k__nvrtcProgram prog = NULL;
    const char *hdr_names[1] = {"q4k_common.h"};
    const char *opts[3];
    char arch[64];
    q4k__nvrtcResult nr;
    size_t n = 0;
    *image = NULL;
    *size = 0;
    snprintf(arch, sizeof arch, "--gpu-architecture=%s_%d", ptx ? "compute" : "sm", sm);
    opts[0] = arch;
    opts[1] = q4k__cuda_nvrtc_opts[0];
    opts[2] = q4k__cuda_nvrtc_opts[1];
    nr = lib->nvrtcCreateProgram(&prog, src, name, 1, &common, hdr_names);
    if (nr) return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: nvrtcCreateProgram(%s): %s", name, lib->nvrtcGetErrorString(nr));
    nr = lib->nvrtcCompileProgram(prog, 3, opts);
    if (nr) {
        char *text = NULL;
        if (lib->nvrtcGetProgramLogSize(prog, &n) == 0 && n > 0 && (text = (char *)Q4K_MALLOC(n + 1)) != NULL) {
            if (lib->nvrtcGetProgramLog(prog, text)) text[0] = 0;
            text[n] = 0;
            q4k__cuda_log_lines(text, name);
        }
        if (log && text) {
            char line[900];
            snprintf(line, sizeof line, "cuda: NVRTC log of %s for %s_%d:\n%s", name, ptx ? "compute" : "sm", sm, text);
            log(Q4K_LOG_ERROR, line, log_user);
        }
        {
            /* one line: the log's first error, else its first line (the
               whole log went to log) */
            const char *first;
            int len, n_err = q4k__log_first_line(text, NULL, ": error", NULL, &first, &len);
            if (!n_err) q4k__log_first_line(text, NULL, NULL, NULL, &first, &len);
            if (len > 360) len = 360;
            if (n_err > 1)
                q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: NVRTC cannot compile %s for %s_%d: %s: %.*s (%d errors in all)",
                          name, ptx ? "compute" : "sm", sm, lib->nvrtcGetErrorString(nr), len, first, n_err);
            else
                q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: NVRTC cannot compile %s for %s_%d: %s: %.*s", name,
                          ptx ? "compute" : "sm", sm, lib->nvrtcGetErrorString(nr), first ? len : 8, first ? first : "(no log)");
        }
        Q4K_FREE(text);
        lib->nvrtcDestroyProgram(&prog);
        return Q4K_ERR_BACKEND_UNAVAILABLE;
    }
    nr = ptx ? lib->nvrtcGetPTXSize(prog, &n) : lib->nvrtcGetCUBINSize(prog, &n);
    if (!nr && n > 0 && (*image = (char *)Q4K_MALLOC(n)) != NULL) nr = ptx ? lib->nvrtcGetPTX(prog, *image) : lib->nvrtcGetCUBIN(prog, *image);
    lib->nvrtcDestroyProgram(&prog);
    if (nr || !*image) {
        Q4K_FREE(*image);
        *image = NULL;
        return q4k__fail(err, nr ? Q4K_ERR_BACKEND_UNAVAILABLE : Q4K_ERR_OUT_OF_MEMORY, "cuda: no %s from NVRTC for %s",
                              ptx ? "PTX" : "CUBIN", name);
    }
    *size = n;
    return Q4K_OK;
}

/* kernels_src file f as one string (malloc'ed). Test builds
   (Q4K_CUDA_TEST_FAULT): $Q4K_CUDA_TEST_BREAK=FILE:LINE (e.g. ops.cu:40)
   puts a syntax error on that line, to show that a kernel that does not
   compile is reported with its file and line. */
static char *q4k__cuda_source(int f) {
#ifdef Q4K_CUDA_TEST_FAULT
    const char *brk = getenv("Q4K_CUDA_TEST_BREAK"), *colon = brk ? strrchr(brk, ':') : NULL;
    const char *base = strrchr(q4k__cuda_files[f], '/') + 1;
    if (colon && (size_t)(colon - brk) == strlen(base) && !strncmp(brk, base, strlen(base))) {
        const char *const *lines = q4k__cuda_file_lines[f];
        long at = atol(colon + 1);
        size_t n = 0, i;
        const char **copy;
        char *out;
        while (lines[n]) n++;
        copy = (const char **)Q4K_MALLOC(sizeof(char *) * (n + 1));
        if (!copy) return NULL;
        for (i = 0; i <= n; i++) copy[i] = lines[i];
        if (at >= 1 && (size_t)at <= n) copy[at - 1] = "int q4k_broken_on_purpose = ;\n";
        out = q4k__join_lines(copy, NULL);
        Q4K_FREE(copy);
        return out;
    }
#endif
    return q4k__join_lines(q4k__cuda_file_lines[f], NULL);
}

static int q4k__cuda_cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* supported SMs >= Q4K__CUDA_MIN_SM, ascending */
static q4k_result q4k__cuda_sms(const q4k__cuda_lib *lib, int *sms, int max, int *count, q4k_error *err) {
    int n = 0, i, k = 0, *all;
    if (lib->nvrtcGetNumSupportedArchs(&n) || n <= 0) return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: NVRTC lists no architecture");
    all = (int *)Q4K_MALLOC(sizeof(int) * (size_t)n);
    if (!all) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory");
    if (lib->nvrtcGetSupportedArchs(all)) n = 0;
    qsort(all, (size_t)n, sizeof(int), q4k__cuda_cmp_int);
    for (i = 0; i < n; i++)
        if (all[i] >= Q4K__CUDA_MIN_SM) {
            if (k < max) sms[k] = all[i];
            k++;
        }
    Q4K_FREE(all);
    *count = k;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_cuda_nvrtc_sms(const q4k_cuda_desc *desc, int *sms, int max, int *count, q4k_error *err) {
    q4k__cuda_lib lib;
    q4k_result r;
    memset(&lib, 0, sizeof lib);
    *count = 0;
    if ((r = q4k__cuda_load_nvrtc(&lib, desc ? desc->nvrtc_path : NULL, err))) return r;
    r = q4k__cuda_sms(&lib, sms, max, count, err);
    q4k__cuda_unload(&lib);
    return r;
}

Q4K_API q4k_result q4k_cuda_compile_only(const q4k_cuda_desc *desc, const int *sms, int n_sms, q4k_error *err) {
    q4k__cuda_lib lib;
    q4k_result r;
    char *common, *src, *image;
    size_t size;
    int i, f;
    memset(&lib, 0, sizeof lib);
    if ((r = q4k__cuda_load_nvrtc(&lib, desc ? desc->nvrtc_path : NULL, err))) return r;
    common = q4k__join_lines(q4k__embed_q4k_common_h, NULL);
    r = common ? Q4K_OK : q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory");
    for (f = 0; f < Q4K__CUDA_N_FILES && !r; f++) {
        src = q4k__cuda_source(f);
        if (!src) r = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory");
        for (i = 0; i < n_sms && !r; i++) {
            r = q4k__cuda_nvrtc_compile(&lib, q4k__cuda_files[f], src, common, sms[i], 0, &image, &size,
                                        desc ? desc->log : NULL, desc ? desc->log_user : NULL, err);
            Q4K_FREE(image);
        }
        Q4K_FREE(src);
    }
    Q4K_FREE(common);
    q4k__cuda_unload(&lib);
    return r;
}


/* The cache: one file per (kernel file, SM, NVRTC version, source hash),
   holding "Q4KCUDA1", the payload's length and FNV-1a hash (8 bytes each,
   little-endian) and the payload. A file that fails the check is a
   warning and a recompile; a cache that cannot be written is a warning. */
static void q4k__cuda_note(const q4k_cuda_desc *d, q4k_log_level level, const char *fmt, const char *a, const char *b) {
    char line[1200];
    if (!d->log) return;
    snprintf(line, sizeof line, fmt, a, b);
    d->log(level, line, d->log_user);
}

static int q4k__cuda_cache_dir(const q4k_cuda_desc *d, char *dir, size_t n) {
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (d->no_cache) return 0;
    if (d->cache_dir && *d->cache_dir) snprintf(dir, n, "%s", d->cache_dir);
    else if (x && *x) snprintf(dir, n, "%s/q4k", x);
    else if (home && *home) snprintf(dir, n, "%s/.cache/q4k", home);
    else return 0;
    return 1;
}

static void q4k__cuda_put64(unsigned char *p, uint64_t v) {
    int i;
    for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t q4k__cuda_get64(const unsigned char *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* *image (malloc'ed) from path, or NULL when absent or corrupt (warned) */
static void q4k__cuda_cache_read(const q4k_cuda_desc *d, const char *path, char **image, size_t *size) {
    FILE *f = fopen(path, "rb");
    unsigned char hdr[24];
    uint64_t len;
    *image = NULL;
    if (!f) return;
    if (fread(hdr, 1, 24, f) != 24 || memcmp(hdr, "Q4KCUDA1", 8) || (len = q4k__cuda_get64(hdr + 8)) == 0 ||
        len > ((uint64_t)1 << 30) || !(*image = (char *)Q4K_MALLOC((size_t)len)) || fread(*image, 1, (size_t)len, f) != len ||
        q4k__cuda_fnv(0xcbf29ce484222325ull, *image, (size_t)len) != q4k__cuda_get64(hdr + 16)) {
        Q4K_FREE(*image);
        *image = NULL;
        q4k__cuda_note(d, Q4K_LOG_WARN, "cuda: ignoring the corrupt cache file %s%s (recompiling)", path, "");
    } else {
        *size = (size_t)len;
    }
    fclose(f);
}

static void q4k__cuda_cache_write(const q4k_cuda_desc *d, const char *dir, const char *path, const char *image, size_t size) {
    char tmp[1100], parent[1024];
    unsigned char hdr[24];
    FILE *f;
    const char *slash = strrchr(dir, '/');
    int ok;
    if (slash && slash != dir) { /* $HOME/.cache may not exist yet */
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - dir), dir);
        mkdir(parent, 0755);
    }
    mkdir(dir, 0755);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    memcpy(hdr, "Q4KCUDA1", 8);
    q4k__cuda_put64(hdr + 8, (uint64_t)size);
    q4k__cuda_put64(hdr + 16, q4k__cuda_fnv(0xcbf29ce484222325ull, image, size));
    f = fopen(tmp, "wb");
    ok = f && fwrite(hdr, 1, 24, f) == 24 && fwrite(image, 1, size, f) == size;
    if (f && fclose(f)) ok = 0;
    if (ok && rename(tmp, path) == 0) return;
    remove(tmp);
    q4k__cuda_note(d, Q4K_LOG_WARN, "cuda: cannot write the kernel cache %s (%s); compiling every time", path, strerror(errno));
}

/* The image of file f for SM sm (PTX for compute_sm when ptx), from the
   cache or from NVRTC. */
static q4k_result q4k__cuda_image(const q4k__cuda_lib *lib, const q4k_cuda_desc *d, int f, int sm, int ptx, char **image,
                                  size_t *size, q4k_error *err) {
    char *src = q4k__cuda_source(f), *common = q4k__join_lines(q4k__embed_q4k_common_h, NULL);
    char dir[900], path[1024], base[64];
    int nv_major = 0, nv_minor = 0, cached;
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;
    q4k_result r;
    if (!src || !common) {
        Q4K_FREE(src);
        Q4K_FREE(common);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory");
    }
    lib->nvrtcVersion(&nv_major, &nv_minor);
    h = q4k__cuda_fnv(h, src, strlen(src) + 1);
    h = q4k__cuda_fnv(h, common, strlen(common) + 1);
    for (i = 0; i < sizeof q4k__cuda_nvrtc_opts / sizeof q4k__cuda_nvrtc_opts[0]; i++)
        h = q4k__cuda_fnv(h, q4k__cuda_nvrtc_opts[i], strlen(q4k__cuda_nvrtc_opts[i]) + 1);
    snprintf(base, sizeof base, "%s", strrchr(q4k__cuda_files[f], '/') + 1);
    *strchr(base, '.') = 0;
    cached = q4k__cuda_cache_dir(d, dir, sizeof dir);
    if (cached) {
        snprintf(path, sizeof path, "%s/%s-%s%d-nvrtc%d.%d-%016llx.%s", dir, base, ptx ? "compute" : "sm", sm, nv_major,
                 nv_minor, (unsigned long long)h, ptx ? "ptx" : "cubin");
        q4k__cuda_cache_read(d, path, image, size);
        if (*image) {
            q4k__cuda_note(d, Q4K_LOG_DEBUG, "cuda: %s from the cache %s", q4k__cuda_files[f], path);
            Q4K_FREE(src);
            Q4K_FREE(common);
            return Q4K_OK;
        }
    }
    r = q4k__cuda_nvrtc_compile(lib, q4k__cuda_files[f], src, common, sm, ptx, image, size, d->log, d->log_user, err);
    if (!r && cached) q4k__cuda_cache_write(d, dir, path, *image, *size);
    Q4K_FREE(src);
    Q4K_FREE(common);
    return r;
}

/* >>cuda-backend */

/* the kernels of kernels_src/ops.cu */
#define Q4K__CUDA_OP_LIST(X) X(get_rows) X(rmsnorm) X(add_bias) X(add) X(swiglu) X(rope) X(kv_append) X(attention) X(argmax) X(perturb)
enum {
#define Q4K__CUDA_OP_ENUM(name) Q4K__CUDA_OP_##name,
    Q4K__CUDA_OP_LIST(Q4K__CUDA_OP_ENUM)
#undef Q4K__CUDA_OP_ENUM
    Q4K__CUDA_OP_COUNT
};
static const char *const q4k__cuda_op_names[Q4K__CUDA_OP_COUNT] = {
#define Q4K__CUDA_OP_NAME(name) "q4k_" #name,
    Q4K__CUDA_OP_LIST(Q4K__CUDA_OP_NAME)
#undef Q4K__CUDA_OP_NAME
};

typedef struct q4k__cuda_buf {
    q4k__CUdeviceptr p;
    size_t size;
} q4k__cuda_buf;

typedef struct q4k__cuda_backend {
    q4k_backend base;
    q4k__cuda_lib lib;
    q4k_cuda_desc desc;
    q4k__CUdevice dev;
    q4k__CUcontext ctx; /* the device's primary context, retained */
    q4k__CUstream stream;
    int sm, ptx;        /* ptx: the modules were JIT-compiled by the driver from PTX */
    char name[128];
    q4k__CUmodule mods[Q4K__CUDA_N_FILES];
    q4k__CUfunction quantize;
    q4k__CUfunction op[Q4K__CUDA_OP_COUNT]; /* kernels_src/ops.cu */
    /* [q8 or f32 activations][matrix-vector or matrix-matrix][type] */
    q4k__CUfunction mm[2][2][Q4K_TYPE_COUNT];
    q4k__cuda_buf w, x, xq, y; /* the matmul entry point's buffers, grown on demand */
    q4k__cuda_buf opb[9];      /* the other op entry points' buffers */
    int dead;                  /* an asynchronous fault: the context is unusable */
    char dead_why[300];
    uint64_t allocated;        /* bytes of device memory this backend holds (q4k__cuda_reserve) */
    uint64_t mem_limit;        /* $Q4K_DEVICE_MEM_LIMIT: allocations beyond it fail as out of memory (0: none) */
    uint64_t mem_total, mem_ctx; /* the device's memory; in use once the context existed, before any allocation */
    int graphs;                /* the driver has the graph calls and $Q4K_CUDA_GRAPH is not 0 */
} q4k__cuda_backend;

/* the driver's errors after which the context cannot be used again (an
   illegal address or instruction, a trap, a failed launch, a hardware
   error): any later call returns them */
static int q4k__cuda_sticky(q4k__CUresult cr) {
    return cr == 214 || cr == 700 || cr == 702 || cr == 709 || cr == 710 || (cr >= 714 && cr <= 719);
}

/* a driver result as a q4k_result with detail; an error found at a
   synchronisation is an asynchronous fault, and a sticky error (wherever it
   shows) loses the context: both mark the backend dead */
static q4k_result q4k__cuda_check(q4k__cuda_backend *cb, q4k__CUresult cr, const char *what, int sync, q4k_error *err) {
    char buf[200];
    if (cr == 0) return Q4K_OK;
    q4k__cuda_errstr(&cb->lib, cr, buf, sizeof buf);
    if (sync || q4k__cuda_sticky(cr)) {
        cb->dead = 1;
        snprintf(cb->dead_why, sizeof cb->dead_why, "%s: %s", what, buf);
        return q4k__fail(err, Q4K_ERR_GPU, "cuda: %s failed: %s; the CUDA context is lost", what, buf);
    }
    if (cr == Q4K__CU_ERROR_OUT_OF_MEMORY) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: %s: out of device memory", what);
    return q4k__fail(err, Q4K_ERR_GPU, "cuda: %s failed: %s", what, buf);
}

/* The context is current only in the thread that made it so, and threads
   may share a backend (under its lock, q4k.h "Threads"): every entry point
   another thread may call makes it current in the caller first (a per-
   thread setting, cheap to repeat). */
static q4k_result q4k__cuda_bind(q4k__cuda_backend *cb, q4k_error *err) {
    return q4k__cuda_check(cb, cb->lib.cuCtxSetCurrent(cb->ctx), "cuCtxSetCurrent", 0, err);
}

/* device memory free for this backend: the driver's free memory, less
   under $Q4K_DEVICE_MEM_LIMIT */
static uint64_t q4k__cuda_mem_free(q4k__cuda_backend *cb) {
    size_t fr = 0, total = 0;
    uint64_t f;
    cb->lib.cuMemGetInfo(&fr, &total);
    f = (uint64_t)fr;
    if (cb->mem_limit) {
        uint64_t left = cb->mem_limit > cb->allocated ? cb->mem_limit - cb->allocated : 0;
        if (left < f) f = left;
    }
    return f;
}

static q4k_result q4k__cuda_oom(q4k__cuda_backend *cb, const char *what, uint64_t bytes, q4k_error *err) {
    char lim[96];
    lim[0] = 0;
    if (cb->mem_limit) snprintf(lim, sizeof lim, " (Q4K_DEVICE_MEM_LIMIT=%llu)", (unsigned long long)cb->mem_limit);
    return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of device memory for %s: %llu bytes needed, %llu free%s", what,
                     (unsigned long long)bytes, (unsigned long long)q4k__cuda_mem_free(cb), lim);
}

static void q4k__cuda_free(q4k__cuda_backend *cb, q4k__cuda_buf *buf) {
    if (buf->p) {
        cb->lib.cuMemFree(buf->p);
        cb->allocated -= buf->size;
    }
    buf->p = 0;
    buf->size = 0;
}

/* make buf hold at least bytes (contents are not kept) */
static q4k_result q4k__cuda_reserve(q4k__cuda_backend *cb, q4k__cuda_buf *buf, size_t bytes, const char *what, q4k_error *err) {
    q4k__CUresult cr;
    if (buf->size >= bytes) return Q4K_OK;
    q4k__cuda_free(cb, buf);
    if (cb->mem_limit && cb->allocated + bytes > cb->mem_limit) return q4k__cuda_oom(cb, what, bytes, err);
    cr = cb->lib.cuMemAlloc(&buf->p, bytes);
    if (cr == Q4K__CU_ERROR_OUT_OF_MEMORY) {
        buf->p = 0;
        return q4k__cuda_oom(cb, what, bytes, err);
    }
    if (cr) {
        buf->p = 0;
        return q4k__cuda_check(cb, cr, "cuMemAlloc", 0, err);
    }
    buf->size = bytes;
    cb->allocated += bytes;
    return Q4K_OK;
}

static q4k_result q4k__cuda_launch(q4k__cuda_backend *cb, q4k__CUfunction fn, const char *name, unsigned gx, unsigned gy,
                                   unsigned threads, void **params, q4k_error *err) {
    q4k__CUresult cr = cb->lib.cuLaunchKernel(fn, gx, gy, 1, threads, 1, 1, 0, cb->stream, params, NULL);
    char buf[200];
    if (cr == 0) return Q4K_OK;
    q4k__cuda_errstr(&cb->lib, cr, buf, sizeof buf);
    if (q4k__cuda_sticky(cr)) { /* an earlier kernel's fault, seen here */
        cb->dead = 1;
        snprintf(cb->dead_why, sizeof cb->dead_why, "launch of %s: %s", name, buf);
    }
    return q4k__fail(err, Q4K_ERR_GPU, "cuda: launch of kernel %s (grid %ux%u, %u threads) failed: %s%s", name, gx, gy, threads, buf,
                     cb->dead ? "; the CUDA context is lost" : "");
}

static const char *q4k__cuda_type_suffix(q4k_type t) {
    switch (t) {
    case Q4K_TYPE_F32: return "f32";
    case Q4K_TYPE_F16: return "f16";
    case Q4K_TYPE_BF16: return "bf16";
    case Q4K_TYPE_Q8_0: return "q8_0";
    case Q4K_TYPE_Q4_0: return "q4_0";
    case Q4K_TYPE_Q5_0: return "q5_0";
    case Q4K_TYPE_Q4_K: return "q4_K";
    case Q4K_TYPE_Q5_K: return "q5_K";
    case Q4K_TYPE_Q6_K: return "q6_K";
    default: return NULL;
    }
}

static int q4k__cuda_quantized(q4k_type t) { return t != Q4K_TYPE_F32 && t != Q4K_TYPE_F16 && t != Q4K_TYPE_BF16; }

/* ---- device-side operations ------------------------------------------------

   Internal: the launchers of kernels_src/ops.cu on device buffers, for the
   forward pass and the kernel tests (tests/test_cuda.c). Arguments are
   device pointers (q4k__CUdeviceptr); each launch is checked, nothing is
   synchronised. */

static q4k_result q4k__cuda_launch1d(q4k__cuda_backend *cb, int op, int64_t total, void **params, q4k_error *err) {
    unsigned blocks = (unsigned)((total + 255) / 256);
    if (total <= 0) return Q4K_OK;
    return q4k__cuda_launch(cb, cb->op[op], q4k__cuda_op_names[op], blocks ? blocks : 1, 1, 256, params, err);
}

Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_get_rows(q4k__cuda_backend *cb, q4k_type type, q4k__CUdeviceptr w, int64_t d,
                                                       q4k__CUdeviceptr tokens, int64_t n, q4k__CUdeviceptr out, q4k_error *err) {
    int t = (int)type;
    long long row_bytes = (long long)q4k_row_size(type, d), ln = n, ld = d;
    void *p[7];
    p[0] = &t; p[1] = &w; p[2] = &row_bytes; p[3] = &tokens; p[4] = &ln; p[5] = &ld; p[6] = &out;
    if (!q4k__cuda_type_suffix(type) || !row_bytes)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "cuda: no embedding kernel for %s rows of %lld", q4k_type_name(t), ld);
    return q4k__cuda_launch1d(cb, Q4K__CUDA_OP_get_rows, n * ((d + 31) / 32), p, err);
}

/* y = rmsnorm(x) * w for n rows of d (f16acc: the gate's fault) */
static q4k_result q4k__cuda_rmsnorm_f(q4k__cuda_backend *cb, q4k__CUdeviceptr x, q4k__CUdeviceptr w, q4k__CUdeviceptr y, int64_t n,
                                     int64_t d, float eps, int f16acc, q4k_error *err) {
    long long ld = d;
    void *p[6];
    p[0] = &x; p[1] = &w; p[2] = &y; p[3] = &ld; p[4] = &eps; p[5] = &f16acc;
    if (n <= 0) return Q4K_OK;
    return q4k__cuda_launch(cb, cb->op[Q4K__CUDA_OP_rmsnorm], "q4k_rmsnorm", (unsigned)n, 1, 256, p, err);
}
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_rmsnorm(q4k__cuda_backend *cb, q4k__CUdeviceptr x, q4k__CUdeviceptr w, q4k__CUdeviceptr y,
                                                      int64_t n, int64_t d, float eps, q4k_error *err) {
    return q4k__cuda_rmsnorm_f(cb, x, w, y, n, d, eps, 0, err);
}

Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_add_bias(q4k__cuda_backend *cb, q4k__CUdeviceptr y, q4k__CUdeviceptr b, int64_t n,
                                                       int64_t dim, q4k_error *err) {
    long long ln = n, ldim = dim;
    void *p[4];
    p[0] = &y; p[1] = &b; p[2] = &ln; p[3] = &ldim;
    return q4k__cuda_launch1d(cb, Q4K__CUDA_OP_add_bias, n * dim, p, err);
}

/* x += y (n floats) */
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_add(q4k__cuda_backend *cb, q4k__CUdeviceptr x, q4k__CUdeviceptr y, int64_t n, q4k_error *err) {
    long long ln = n;
    void *p[3];
    p[0] = &x; p[1] = &y; p[2] = &ln;
    return q4k__cuda_launch1d(cb, Q4K__CUDA_OP_add, n, p, err);
}

/* g = silu(g) * u (n floats) */
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_swiglu(q4k__cuda_backend *cb, q4k__CUdeviceptr g, q4k__CUdeviceptr u, int64_t n,
                                                     q4k_error *err) {
    long long ln = n;
    void *p[3];
    p[0] = &g; p[1] = &u; p[2] = &ln;
    return q4k__cuda_launch1d(cb, Q4K__CUDA_OP_swiglu, n, p, err);
}

/* rotate n tokens x n_heads heads (row stride `stride` floats) by the table
   rows of positions pos[0] + j */
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_rope(q4k__cuda_backend *cb, q4k__CUdeviceptr v, int64_t n, int n_heads, int head_dim,
                                                   int64_t stride, int n_rot, int neox, q4k__CUdeviceptr table, q4k__CUdeviceptr pos,
                                                   q4k_error *err) {
    long long ln = n, ls = stride;
    void *p[9];
    p[0] = &v; p[1] = &ln; p[2] = &n_heads; p[3] = &head_dim; p[4] = &ls; p[5] = &n_rot; p[6] = &neox; p[7] = &table; p[8] = &pos;
    return q4k__cuda_launch1d(cb, Q4K__CUDA_OP_rope, n * n_heads * (n_rot / 2), p, err);
}

/* n rows of dim floats times scale (1 but under the kv_step2 fault) into a
   cache at rows pos[0].. (f16, or f32 when f32) */
static q4k_result q4k__cuda_kv_append_s(q4k__cuda_backend *cb, q4k__CUdeviceptr x, q4k__CUdeviceptr cache, int64_t dim, int64_t n,
                                        q4k__CUdeviceptr pos, int f32, float scale, q4k_error *err) {
    long long ld = dim, ln = n;
    void *p[7];
    p[0] = &x; p[1] = &cache; p[2] = &ld; p[3] = &ln; p[4] = &pos; p[5] = &f32; p[6] = &scale;
    return q4k__cuda_launch1d(cb, Q4K__CUDA_OP_kv_append, n * dim, p, err);
}
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_kv_append(q4k__cuda_backend *cb, q4k__CUdeviceptr x, q4k__CUdeviceptr cache, int64_t dim,
                                                        int64_t n, q4k__CUdeviceptr pos, int f32, q4k_error *err) {
    return q4k__cuda_kv_append_s(cb, x, cache, dim, n, pos, f32, 1.0f, err);
}

/* causal GQA attention of n tokens at positions pos[0].. over a cache of
   f16 (f32 when f32) (scores: n * n_head rows of n_ctx floats of scratch;
   gqa: the gate's fault) */
static q4k_result q4k__cuda_attention_g(q4k__cuda_backend *cb, q4k__CUdeviceptr q, q4k__CUdeviceptr kc, q4k__CUdeviceptr vc,
                                        q4k__CUdeviceptr out, q4k__CUdeviceptr scores, q4k__CUdeviceptr pos, int64_t n, int n_head,
                                        int n_head_kv, int hd, int64_t n_ctx, int f32, int gqa, q4k_error *err) {
    long long lctx = n_ctx;
    void *p[12];
    p[0] = &q; p[1] = &kc; p[2] = &vc; p[3] = &out; p[4] = &scores; p[5] = &pos; p[6] = &n_head; p[7] = &n_head_kv; p[8] = &hd;
    p[9] = &lctx; p[10] = &f32; p[11] = &gqa;
    if (n <= 0) return Q4K_OK;
    if (n_head_kv <= 0 || n_head % n_head_kv)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: attention: %d query heads over %d KV heads", n_head, n_head_kv);
    return q4k__cuda_launch(cb, cb->op[Q4K__CUDA_OP_attention], "q4k_attention", (unsigned)(n * n_head), 1, 256, p, err);
}
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_attention(q4k__cuda_backend *cb, q4k__CUdeviceptr q, q4k__CUdeviceptr kc, q4k__CUdeviceptr vc,
                                                        q4k__CUdeviceptr out, q4k__CUdeviceptr scores, q4k__CUdeviceptr pos, int64_t n,
                                                        int n_head, int n_head_kv, int hd, int64_t n_ctx, int f32, q4k_error *err) {
    return q4k__cuda_attention_g(cb, q, kc, vc, out, scores, pos, n, n_head, n_head_kv, hd, n_ctx, f32, 0, err);
}

/* y[0..n) *= 1 + eps * N(0,1), the noise values drawn..drawn+n-1 after seed
   (the gate's perturb fault) */
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_perturb(q4k__cuda_backend *cb, q4k__CUdeviceptr y, int64_t n, float eps, uint64_t seed,
                                                      uint64_t drawn, q4k_error *err) {
    long long ln = n;
    unsigned long long ls = seed, ld = drawn;
    void *p[5];
    p[0] = &y; p[1] = &ln; p[2] = &eps; p[3] = &ls; p[4] = &ld;
    return q4k__cuda_launch1d(cb, Q4K__CUDA_OP_perturb, n, p, err);
}

/* out[0] = argmax of x[0..n) (an int on the device) */
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_argmax(q4k__cuda_backend *cb, q4k__CUdeviceptr x, int64_t n, q4k__CUdeviceptr out,
                                                     q4k_error *err) {
    long long ln = n;
    void *p[3];
    p[0] = &x; p[1] = &ln; p[2] = &out;
    return q4k__cuda_launch(cb, cb->op[Q4K__CUDA_OP_argmax], "q4k_argmax", 1, 1, 256, p, err);
}

/* x: nb blocks of 32 floats -> nb block_q8a */
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_quantize(q4k__cuda_backend *cb, q4k__CUdeviceptr x, q4k__CUdeviceptr xq, int64_t nb,
                                                       q4k_error *err) {
    long long lnb = nb;
    void *p[3];
    p[0] = &x; p[1] = &xq; p[2] = &lnb;
    if (nb <= 0) return Q4K_OK;
    return q4k__cuda_launch(cb, cb->quantize, "q4k_quantize_q8a", (unsigned)((nb + 127) / 128), 1, 128, p, err);
}

/* buffers for the tests: allocate, copy up, copy down (synchronously) */
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_alloc(q4k__cuda_backend *cb, q4k__cuda_buf *buf, size_t bytes, q4k_error *err) {
    return q4k__cuda_reserve(cb, buf, bytes ? bytes : 4, "a test buffer", err);
}
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_put(q4k__cuda_backend *cb, q4k__CUdeviceptr dst, const void *src, size_t bytes, q4k_error *err) {
    q4k_result r = q4k__cuda_check(cb, cb->lib.cuMemcpyHtoDAsync(dst, src, bytes, cb->stream), "cuMemcpyHtoD", 0, err);
    return r ? r : q4k__cuda_check(cb, cb->lib.cuStreamSynchronize(cb->stream), "cuStreamSynchronize", 1, err);
}
Q4K__MAYBE_UNUSED static q4k_result q4k__cuda_get(q4k__cuda_backend *cb, void *dst, q4k__CUdeviceptr src, size_t bytes, q4k_error *err) {
    q4k_result r = q4k__cuda_check(cb, cb->lib.cuMemcpyDtoHAsync(dst, src, bytes, cb->stream), "cuMemcpyDtoH", 0, err);
    return r ? r : q4k__cuda_check(cb, cb->lib.cuStreamSynchronize(cb->stream), "cuStreamSynchronize (after the kernels)", 1, err);
}

/* y[n][rows] = W x[n][cols] on device buffers; with q8 (a quantized type in
   8-bit mode) the kernels read xq, x quantized by q4k__cuda_quantize */
static q4k_result q4k__cuda_mm_dev(q4k__cuda_backend *cb, int q8, q4k_type type, q4k__CUdeviceptr w, int64_t rows, int64_t cols,
                                   q4k__CUdeviceptr x, q4k__CUdeviceptr xq, int64_t n, q4k__CUdeviceptr y, q4k_error *err) {
    long long lrows = rows, lcols = cols, ln = n, row_bytes = (long long)q4k_row_size(type, cols);
    int mm = n > 1, k = 0;
    unsigned gx = (unsigned)((lrows + 3) / 4), gy = (unsigned)(mm ? (ln + 7) / 8 : 1);
    char kname[64];
    void *p[7];
    if (rows <= 0 || n <= 0) return Q4K_OK;
    snprintf(kname, sizeof kname, "q4k_%s_%s_%s", mm ? "mm" : "mv", q8 ? "q8" : "f32", q4k__cuda_type_suffix(type));
    p[k++] = &w;
    if (!q8) p[k++] = &row_bytes;
    p[k++] = &lrows;
    p[k++] = &lcols;
    p[k++] = q8 ? &xq : &x;
    p[k++] = &y;
    p[k++] = &ln;
    return q4k__cuda_launch(cb, cb->mm[q8 ? 0 : 1][mm][type], kname, gx, gy, 128, p, err);
}

/* Y = W X on host arrays: W and X go up, Y (poisoned with NaN first, so an
   element no kernel wrote shows) comes down. */
static q4k_result q4k__cuda_matmul(q4k_backend *b, q4k_act_mode act, q4k_type type, const void *w, int64_t rows, int64_t cols,
                                   const float *x, int64_t n, float *y, q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    q4k_type_info ti = q4k_type_traits((int)type);
    int q8 = act == Q4K_ACT_Q8 && q4k__cuda_quantized(type);
    size_t wbytes, xbytes, ybytes;
    q4k_result r;
    long long lrows = rows, lcols = cols, ln = n;
    if (cb->dead) return q4k__fail(err, Q4K_ERR_GPU, "cuda: the backend is dead after an earlier fault (%s)", cb->dead_why);
    if ((r = q4k__cuda_bind(cb, err))) return r;
    if (!w || !x || !y || rows < 0 || cols <= 0 || n < 0 || (act != Q4K_ACT_Q8 && act != Q4K_ACT_F32))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: matmul: invalid arguments");
    if (!q4k__cuda_type_suffix(type)) return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "cuda: no kernel for type %s", q4k_type_name((int)type));
    if (cols % ti.block_size) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: matmul: %lld columns are not whole %s blocks", lcols, ti.name);
    if (rows == 0 || n == 0) return Q4K_OK;
    if (rows > 4 * 2147483647LL || n > 8 * 65535LL) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: matmul: %lldx%lld too large a grid", lrows, ln);
    wbytes = q4k_row_size(type, cols) * (size_t)rows;
    xbytes = sizeof(float) * (size_t)cols * (size_t)n;
    ybytes = sizeof(float) * (size_t)rows * (size_t)n;
    if ((r = q4k__cuda_reserve(cb, &cb->w, wbytes, "the weights", err)) || (r = q4k__cuda_reserve(cb, &cb->x, xbytes, "the activations", err)) ||
        (r = q4k__cuda_reserve(cb, &cb->y, ybytes, "the output", err)) ||
        (q8 && (r = q4k__cuda_reserve(cb, &cb->xq, sizeof(q4k_block_q8a) * (size_t)(lcols / 32 * ln), "the 8-bit activations", err))))
        return r;
    if ((r = q4k__cuda_check(cb, cb->lib.cuMemcpyHtoDAsync(cb->w.p, w, wbytes, cb->stream), "cuMemcpyHtoD (weights)", 0, err)) ||
        (r = q4k__cuda_check(cb, cb->lib.cuMemcpyHtoDAsync(cb->x.p, x, xbytes, cb->stream), "cuMemcpyHtoD (activations)", 0, err)) ||
        (r = q4k__cuda_check(cb, cb->lib.cuMemsetD32Async(cb->y.p, 0x7fc00000u, ybytes / 4, cb->stream), "cuMemsetD32 (poison)", 0, err)) ||
        (q8 && (r = q4k__cuda_quantize(cb, cb->x.p, cb->xq.p, lcols / 32 * ln, err))) ||
        (r = q4k__cuda_mm_dev(cb, q8, type, cb->w.p, rows, cols, cb->x.p, cb->xq.p, n, cb->y.p, err)) ||
        (r = q4k__cuda_check(cb, cb->lib.cuMemcpyDtoHAsync(y, cb->y.p, ybytes, cb->stream), "cuMemcpyDtoH (output)", 0, err)))
        return r;
    return q4k__cuda_check(cb, cb->lib.cuStreamSynchronize(cb->stream), "the matmul kernels", 1, err);
}

/* The other op entry points (q4k_backend's table, for `q4k qa` and the
   tests) on host arrays: the same kernels as the forward pass, each input
   copied into buffer opb[i] (grown on demand; src NULL: only reserved). */
static q4k_result q4k__cuda_opbuf(q4k__cuda_backend *cb, int i, const void *src, size_t bytes, q4k_error *err) {
    q4k_result r = q4k__cuda_reserve(cb, &cb->opb[i], bytes ? bytes : 4, "an op's buffers", err);
    if (r || !src || !bytes) return r;
    return q4k__cuda_check(cb, cb->lib.cuMemcpyHtoDAsync(cb->opb[i].p, src, bytes, cb->stream), "cuMemcpyHtoD", 0, err);
}

/* the kernels' output (opb[i]) down, after the stream has run them */
static q4k_result q4k__cuda_opget(q4k__cuda_backend *cb, int i, void *dst, size_t bytes, q4k_error *err) {
    return q4k__cuda_get(cb, dst, cb->opb[i].p, bytes, err);
}

/* an op entry point's start: the backend alive, its context current */
#define Q4K__CUDA_ENTER(cb)                                                                                                   \
    do {                                                                                                                     \
        if ((cb)->dead) return q4k__fail(err, Q4K_ERR_GPU, "cuda: the backend is dead after an earlier fault (%s)", (cb)->dead_why); \
        if ((r = q4k__cuda_bind((cb), err))) return r;                                                                        \
    } while (0)

static q4k_result q4k__cuda_op_embedding(q4k_backend *b, q4k_type type, const void *table, int64_t n_embd, int32_t token, float *out,
                                         q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    const size_t row = q4k_row_size(type, n_embd);
    const int32_t zero = 0;
    q4k_result r;
    Q4K__CUDA_ENTER(cb);
    if (!table || !out || token < 0 || n_embd <= 0) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: embedding: bad arguments");
    if (!q4k__cuda_type_suffix(type) || !row)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "cuda: no embedding kernel for %s rows of %lld", q4k_type_name((int)type),
                              (long long)n_embd);
    /* only the token's row goes up: it is row 0 there */
    if ((r = q4k__cuda_opbuf(cb, 0, (const char *)table + (size_t)token * row, row, err)) || (r = q4k__cuda_opbuf(cb, 1, &zero, 4, err)) ||
        (r = q4k__cuda_opbuf(cb, 2, NULL, (size_t)n_embd * 4, err)) ||
        (r = q4k__cuda_get_rows(cb, type, cb->opb[0].p, n_embd, cb->opb[1].p, 1, cb->opb[2].p, err)))
        return r;
    return q4k__cuda_opget(cb, 2, out, (size_t)n_embd * 4, err);
}

static q4k_result q4k__cuda_op_rmsnorm(q4k_backend *b, const float *x, const float *w, int64_t n, int64_t rows, float eps, float *y,
                                       q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    const size_t bytes = (size_t)(n * rows) * 4;
    q4k_result r;
    Q4K__CUDA_ENTER(cb);
    if (!x || !w || !y || n <= 0 || rows < 0) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: rmsnorm: bad arguments");
    if (rows == 0) return Q4K_OK;
    if ((r = q4k__cuda_opbuf(cb, 0, x, bytes, err)) || (r = q4k__cuda_opbuf(cb, 1, w, (size_t)n * 4, err)) ||
        (r = q4k__cuda_opbuf(cb, 2, NULL, bytes, err)) || (r = q4k__cuda_rmsnorm(cb, cb->opb[0].p, cb->opb[1].p, cb->opb[2].p, rows, n, eps, err)))
        return r;
    return q4k__cuda_opget(cb, 2, y, bytes, err);
}

/* the table rows of positions pos0.. (the forward pass's table, from row pos0) */
static q4k_result q4k__cuda_op_rope(q4k_backend *b, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim, int64_t n_rot, int neox,
                                    int64_t pos0, double base, const float *freq_factors, q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    const int64_t half = n_rot / 2;
    const size_t bytes = (size_t)(n_tok * n_head * head_dim) * 4;
    const int32_t zero = 0;
    float *table;
    int64_t i;
    q4k_result r;
    Q4K__CUDA_ENTER(cb);
    if (!x || n_tok < 0 || n_head <= 0 || n_rot <= 0 || n_rot % 2 || n_rot > head_dim || pos0 < 0)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: rope: bad arguments");
    if (n_tok == 0) return Q4K_OK;
    table = (float *)Q4K_MALLOC(sizeof(float) * (size_t)(n_tok * half * 2));
    if (!table) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: rope: out of memory");
    for (i = 0; i < n_tok * half; i++)
        q4k_rope_cos_sin(pos0 + i / half, i % half, n_rot, base, freq_factors ? (double)freq_factors[i % half] : 1.0, &table[2 * i],
                         &table[2 * i + 1]);
    r = q4k__cuda_opbuf(cb, 0, x, bytes, err);
    if (!r) r = q4k__cuda_opbuf(cb, 1, table, sizeof(float) * (size_t)(n_tok * half * 2), err);
    if (!r) r = q4k__cuda_opbuf(cb, 2, &zero, 4, err);
    if (!r) r = q4k__cuda_rope(cb, cb->opb[0].p, n_tok, (int)n_head, (int)head_dim, n_head * head_dim, (int)n_rot, neox, cb->opb[1].p,
                               cb->opb[2].p, err);
    if (!r) r = q4k__cuda_opget(cb, 0, x, bytes, err);
    Q4K_FREE(table);
    return r;
}

/* K and V go up in f32 and into the cache through the forward pass's
   kv_append (rounded to f16 there when kv is f16) */
static q4k_result q4k__cuda_op_attention(q4k_backend *b, q4k_kv_type kv, const float *q, const float *k, const float *v, int64_t n_pos,
                                         int64_t n_head, int64_t n_head_kv, int64_t head_dim, float *out, q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    const int64_t kv_dim = n_head_kv * head_dim, q_dim = n_head * head_dim;
    const int f32 = kv == Q4K_KV_F32;
    const size_t kvb = (size_t)(n_pos * kv_dim) * 4;
    int32_t pos[2];
    q4k_result r;
    Q4K__CUDA_ENTER(cb);
    if (!q || !k || !v || !out || n_pos <= 0 || n_pos > 2147483647LL || n_head_kv <= 0 || n_head % n_head_kv || head_dim <= 0 ||
        (kv != Q4K_KV_F16 && kv != Q4K_KV_F32))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: attention: bad arguments");
    pos[0] = 0;                   /* the cache is written from row 0 */
    pos[1] = (int32_t)(n_pos - 1); /* the query's position */
    if ((r = q4k__cuda_opbuf(cb, 0, q, (size_t)q_dim * 4, err)) || (r = q4k__cuda_opbuf(cb, 1, k, kvb, err)) ||
        (r = q4k__cuda_opbuf(cb, 2, v, kvb, err)) || (r = q4k__cuda_opbuf(cb, 3, NULL, f32 ? kvb : kvb / 2, err)) ||
        (r = q4k__cuda_opbuf(cb, 4, NULL, f32 ? kvb : kvb / 2, err)) || (r = q4k__cuda_opbuf(cb, 5, pos, sizeof pos, err)) ||
        (r = q4k__cuda_opbuf(cb, 6, NULL, (size_t)(n_head * n_pos) * 4, err)) || (r = q4k__cuda_opbuf(cb, 7, NULL, (size_t)q_dim * 4, err)) ||
        (r = q4k__cuda_kv_append(cb, cb->opb[1].p, cb->opb[3].p, kv_dim, n_pos, cb->opb[5].p, f32, err)) ||
        (r = q4k__cuda_kv_append(cb, cb->opb[2].p, cb->opb[4].p, kv_dim, n_pos, cb->opb[5].p, f32, err)) ||
        (r = q4k__cuda_attention(cb, cb->opb[0].p, cb->opb[3].p, cb->opb[4].p, cb->opb[7].p, cb->opb[6].p, cb->opb[5].p + 4, 1, (int)n_head,
                                 (int)n_head_kv, (int)head_dim, n_pos, f32, err)))
        return r;
    return q4k__cuda_opget(cb, 7, out, (size_t)q_dim * 4, err);
}

static q4k_result q4k__cuda_op_quantize_act(q4k_backend *b, const float *x, int64_t n, q4k_block_q8a *out, q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    const size_t qb = sizeof(q4k_block_q8a) * (size_t)(n / 32);
    q4k_result r;
    Q4K__CUDA_ENTER(cb);
    if (!x || !out || n < 0 || n % 32) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: quantize_act: n %lld is not a multiple of 32", (long long)n);
    if (n == 0) return Q4K_OK;
    if ((r = q4k__cuda_opbuf(cb, 0, x, (size_t)n * 4, err)) || (r = q4k__cuda_opbuf(cb, 1, NULL, qb, err)) ||
        (r = q4k__cuda_quantize(cb, cb->opb[0].p, cb->opb[1].p, n / 32, err)))
        return r;
    return q4k__cuda_opget(cb, 1, out, qb, err);
}
#undef Q4K__CUDA_ENTER

/* >>cuda-session: the forward pass on the GPU (q4k.h's `>>model` op for op) */

#define Q4K__CUDA_BATCH 64 /* prompt tokens per pass, as the CPU's */

#ifdef Q4K_FAULTS
#define Q4K__CUDA_FAULT(cs, f) (((cs)->base.desc.faults.mask >> (f)) & 1u)
#else
#define Q4K__CUDA_FAULT(cs, f) 0
#endif

typedef struct q4k__cuda_layer {
    q4k__CUdeviceptr attn_norm, wq, wk, wv, bq, bk, bv, wo, ffn_norm, gate, up, down;
} q4k__cuda_layer;

/* A model as the GPU holds it (prepare_model): every tensor in its GGUF
   blocks, shared by every session of the model. The first session uploads
   them, once it has checked that they fit with its own buffers, so that a
   context too large is refused before any weight moves. */
typedef struct q4k__cuda_model {
    q4k__cuda_buf weights;
    uint64_t bytes;  /* the weights on the device, each tensor at a 256-byte boundary */
    uint64_t *offs;  /* of each tensor in weights, by GGUF index */
    q4k__cuda_layer *layers;
    q4k__CUdeviceptr tok_embd, output_norm, output;
} q4k__cuda_model;

typedef struct q4k__cuda_session {
    q4k_session base;
    q4k__cuda_backend *cb;
    const q4k__cuda_model *w;      /* the shared model (fw under the q4k_scales fault) */
    int kv_f32;                    /* the cache holds f32 (desc.kv), else f16 */
    int64_t n_decode;              /* one-token evals so far (the kv_step2 fault counts them) */
    q4k__cuda_buf kc, vc;          /* [n_layer][n_ctx][kv_dim] of desc.kv */
    q4k__cuda_buf x, xb, q, k, v, att, tmp, gate, up, xq, tok, pos, table, scores, logits;
    uint64_t kv_bytes, scratch_bytes; /* device memory of the cache and of the rest */
    int use_graph;                 /* decode steps replay a captured graph */
    q4k__CUgraphExec graph;        /* the decode step once captured */
    q4k__cuda_model fw;            /* q4k_scales: the model with each Q4_K matrix a faulted copy in fault_w */
    q4k__cuda_buf fault_w;
    uint64_t drawn;                /* perturb: noise values drawn so far */
} q4k__cuda_session;

static void q4k__cuda_release_model(q4k_backend *b, const q4k_model *m, void *data) {
    q4k__cuda_model *cm = (q4k__cuda_model *)data;
    (void)m;
    if (!cm) return;
    if (cm->weights.p) q4k__cuda_bind((q4k__cuda_backend *)b, NULL);
    q4k__cuda_free((q4k__cuda_backend *)b, &cm->weights);
    Q4K_FREE(cm->offs);
    Q4K_FREE(cm->layers);
    Q4K_FREE(cm);
}

/* the layout of every tensor on the device; a type without a kernel is
   refused here, naming the tensor (the upload waits for the first session) */
static q4k_result q4k__cuda_prepare_model(q4k_backend *b, const q4k_model *m, void **data, q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    const int64_t nt = q4k_gguf_tensor_count(m->gguf);
    q4k__cuda_model *cm;
    int64_t i;
    *data = NULL;
    if (cb->dead) return q4k__fail(err, Q4K_ERR_GPU, "cuda: the backend is dead after an earlier fault (%s)", cb->dead_why);
    for (i = 0; i < nt; i++) {
        const q4k_tensor *t = q4k_gguf_tensor(m->gguf, i);
        if (!q4k__cuda_type_suffix(t->type))
            return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "cuda: tensor '%s' has type %s, which has no CUDA kernel", t->name,
                                  q4k_type_name((int)t->type));
    }
    cm = (q4k__cuda_model *)Q4K_MALLOC(sizeof *cm);
    if (cm) {
        memset(cm, 0, sizeof *cm);
        cm->offs = (uint64_t *)Q4K_MALLOC(sizeof(uint64_t) * (size_t)(nt + 1));
        cm->layers = (q4k__cuda_layer *)Q4K_MALLOC(sizeof(q4k__cuda_layer) * (size_t)(m->hp.n_layer + 1));
    }
    if (!cm || !cm->offs || !cm->layers) {
        q4k__cuda_release_model(b, m, cm);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory for a model");
    }
    for (i = 0; i < nt; i++) {
        cm->offs[i] = cm->bytes;
        cm->bytes += (q4k_gguf_tensor(m->gguf, i)->nbytes + 255) / 256 * 256;
    }
    if (!cm->bytes) cm->bytes = 256;
    *data = cm;
    return Q4K_OK;
}

/* the device address of a model tensor (0 for none) */
static q4k__CUdeviceptr q4k__cuda_tensor(const q4k_model *m, const q4k__cuda_model *cm, const q4k_tensor *t) {
    int64_t i, n = q4k_gguf_tensor_count(m->gguf);
    if (!t) return 0;
    for (i = 0; i < n; i++)
        if (q4k_gguf_tensor(m->gguf, i) == t) return cm->weights.p + cm->offs[i];
    return 0;
}

/* the weights up, by the first session of the model */
static q4k_result q4k__cuda_upload_model(q4k__cuda_backend *cb, const q4k_model *m, q4k__cuda_model *cm, q4k_error *err) {
    const int64_t nt = q4k_gguf_tensor_count(m->gguf);
    int64_t i, l;
    q4k_result r = q4k__cuda_reserve(cb, &cm->weights, (size_t)cm->bytes, "the model's weights", err);
    for (i = 0; i < nt && !r; i++) {
        const q4k_tensor *t = q4k_gguf_tensor(m->gguf, i);
        r = q4k__cuda_put(cb, cm->weights.p + cm->offs[i], t->data, t->nbytes, err);
    }
    if (r) {
        q4k__cuda_free(cb, &cm->weights);
        return r;
    }
#define Q4K__CUDA_T(t) q4k__cuda_tensor(m, cm, (t))
    cm->tok_embd = Q4K__CUDA_T(m->tok_embd);
    cm->output_norm = Q4K__CUDA_T(m->output_norm);
    cm->output = Q4K__CUDA_T(m->output);
    for (l = 0; l < m->hp.n_layer; l++) {
        const q4k_layer *L = &m->layers[l];
        q4k__cuda_layer *D = &cm->layers[l];
        D->attn_norm = Q4K__CUDA_T(L->attn_norm);
        D->wq = Q4K__CUDA_T(L->wq);
        D->wk = Q4K__CUDA_T(L->wk);
        D->wv = Q4K__CUDA_T(L->wv);
        D->bq = Q4K__CUDA_T(L->bq);
        D->bk = Q4K__CUDA_T(L->bk);
        D->bv = Q4K__CUDA_T(L->bv);
        D->wo = Q4K__CUDA_T(L->wo);
        D->ffn_norm = Q4K__CUDA_T(L->ffn_norm);
        D->gate = Q4K__CUDA_T(L->w_gate);
        D->up = Q4K__CUDA_T(L->w_up);
        D->down = Q4K__CUDA_T(L->w_down);
    }
#undef Q4K__CUDA_T
    return Q4K_OK;
}

static void q4k__cuda_session_destroy(q4k_session *s) {
    q4k__cuda_session *cs = (q4k__cuda_session *)s;
    q4k__cuda_buf *bufs[] = {&cs->kc, &cs->vc, &cs->x, &cs->xb, &cs->q, &cs->k, &cs->v, &cs->att, &cs->tmp, &cs->gate,
                             &cs->up, &cs->xq, &cs->tok, &cs->pos, &cs->table, &cs->scores, &cs->logits, &cs->fault_w};
    size_t i;
    q4k__cuda_bind(cs->cb, NULL);
    if (cs->graph) cs->cb->lib.cuGraphExecDestroy(cs->graph);
    for (i = 0; i < sizeof bufs / sizeof bufs[0]; i++) q4k__cuda_free(cs->cb, bufs[i]);
    Q4K_FREE(cs->fw.layers);
    Q4K_FREE(cs);
}

/* y[n][rows] = W x for a model tensor; xq holds x quantized when q8. The
   perturb fault with no op named perturbs every matrix product. */
static q4k_result q4k__cuda_mm_t(q4k__cuda_session *cs, const q4k_tensor *t, q4k__CUdeviceptr w, q4k__CUdeviceptr x, int q8,
                                 int64_t n, q4k__CUdeviceptr y, q4k_error *err) {
    q4k_result r = q4k__cuda_mm_dev(cs->cb, q8 && q4k__cuda_quantized(t->type), t->type, w, t->ne[1], t->ne[0], x, cs->xq.p, n, y, err);
#ifdef Q4K_FAULTS
    const q4k_faults *f = &cs->base.desc.faults;
    if (!r && f->perturb_eps != 0.0f && f->perturb_op < 0) {
        r = q4k__cuda_perturb(cs->cb, y, t->ne[1] * n, f->perturb_eps, f->seed, cs->drawn, err);
        cs->drawn += (uint64_t)(t->ne[1] * n);
    }
#endif
    return r;
}

/* x quantized into xq when the session runs 8-bit activations */
static q4k_result q4k__cuda_quantize_in(q4k__cuda_session *cs, q4k__CUdeviceptr x, int64_t n, int64_t cols, q4k_error *err) {
    if (cs->base.desc.act != Q4K_ACT_Q8) return Q4K_OK;
    return q4k__cuda_quantize(cs->cb, x, cs->xq.p, n * cols / 32, err);
}

/* the last token's row of a buffer into the trace of op (layer l) */
static q4k_result q4k__cuda_trace_op(q4k__cuda_session *cs, int64_t l, q4k_op op, q4k__CUdeviceptr buf, int64_t n, q4k_error *err) {
    q4k_session *s = &cs->base;
    int64_t len = s->trace_op_len[op];
    float *dst;
    if (!s->trace_ops[op]) return Q4K_OK;
    if (s->desc.trace & Q4K_TRACE_ALL_OPS) dst = s->trace_ops[op] + l * len;
    else if ((s->desc.trace & Q4K_TRACE_OPS) && s->desc.trace_layer == l) dst = s->trace_ops[op];
    else return Q4K_OK;
    return q4k__cuda_get(cs->cb, dst, buf + (q4k__CUdeviceptr)((n - 1) * len * 4), (size_t)len * 4, err);
}

/* a device row (the last token's) into a stage of the trace */
static q4k_result q4k__cuda_trace_stage(q4k__cuda_session *cs, q4k_stage st, q4k__CUdeviceptr row, q4k_error *err) {
    q4k_session *s = &cs->base;
    q4k_result r;
    if (!s->trace_stages[st]) return Q4K_OK;
    if ((r = q4k__cuda_get(cs->cb, s->trace_stages[st], row, (size_t)s->trace_stage_len[st] * 4, err))) return r;
    s->trace_stage_set[st] = 1;
    return Q4K_OK;
}

/* the residual of the last token into a per-layer trace (NULL: not traced) */
static q4k_result q4k__cuda_trace_resid(q4k__cuda_session *cs, float *dst, int64_t n, q4k_error *err) {
    const int64_t d = cs->base.model->hp.n_embd;
    if (!dst) return Q4K_OK;
    return q4k__cuda_get(cs->cb, dst, cs->x.p + (q4k__CUdeviceptr)((n - 1) * d * 4), (size_t)d * 4, err);
}

/* After op `op` (a q4k_op, or Q4K_OP_COUNT + a q4k_stage) of layer l wrote
   n rows of width at y: the perturb fault, then the trace of the last row
   (the CPU's q4k__cpu_op_done) */
static q4k_result q4k__cuda_op_done(q4k__cuda_session *cs, int64_t l, int op, q4k__CUdeviceptr y, int64_t n, int64_t width,
                                   q4k_error *err) {
#ifdef Q4K_FAULTS
    const q4k_faults *f = &cs->base.desc.faults;
    if (f->perturb_eps != 0.0f && f->perturb_op == op && (op >= Q4K_OP_COUNT || f->perturb_layer < 0 || f->perturb_layer == l)) {
        q4k_result r = q4k__cuda_perturb(cs->cb, y, n * width, f->perturb_eps, f->seed, cs->drawn, err);
        cs->drawn += (uint64_t)(n * width);
        if (r) return r;
    }
#endif
    if (op < Q4K_OP_COUNT) return q4k__cuda_trace_op(cs, l, (q4k_op)op, y, n, err);
    return q4k__cuda_trace_stage(cs, (q4k_stage)(op - Q4K_OP_COUNT), y + (q4k__CUdeviceptr)((n - 1) * width * 4), err);
}

/* The forward pass of n tokens (already in tok, their first position in
   pos), queued on the stream: nothing here waits for the device unless a
   trace asks for rows, so that a decode step can be captured as a graph.
   rows_out > 0: the logits of the last rows_out tokens into logits. */
static q4k_result q4k__cuda_forward(q4k__cuda_session *cs, int64_t n, int64_t rows_out, q4k_error *err) {
    q4k_session *s = &cs->base;
    q4k__cuda_backend *cb = cs->cb;
    const q4k_model *m = s->model;
    const q4k_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, hd = hp->head_dim, q_dim = hp->n_head * hd, kv_dim = hp->n_head_kv * hd, ff = hp->n_ff;
    const int64_t nv = hp->n_vocab, es = cs->kv_f32 ? 4 : 2;
    const int q8 = s->desc.act == Q4K_ACT_Q8, f32kv = cs->kv_f32;
    const int f16acc = (int)Q4K__CUDA_FAULT(cs, Q4K_FAULT_F16_ACC), gqa = (int)Q4K__CUDA_FAULT(cs, Q4K_FAULT_GQA);
    const int bias = !Q4K__CUDA_FAULT(cs, Q4K_FAULT_BIAS);
    const float kv_scale = Q4K__CUDA_FAULT(cs, Q4K_FAULT_KV_STEP2) && n == 1 && cs->n_decode >= 2 ? 0.5f : 1.0f;
    int64_t l;
    q4k_result r;
    if ((r = q4k__cuda_get_rows(cb, m->tok_embd->type, cs->w->tok_embd, d, cs->tok.p, n, cs->x.p, err)) ||
        (r = q4k__cuda_op_done(cs, -1, Q4K_OP_COUNT + Q4K_STAGE_EMBEDDING, cs->x.p, n, d, err)))
        return r;
    for (l = 0; l < hp->n_layer; l++) {
        const q4k_layer *L = &m->layers[l];
        const q4k__cuda_layer *D = &cs->w->layers[l];
        q4k__CUdeviceptr kc = cs->kc.p + (q4k__CUdeviceptr)(l * s->n_ctx * kv_dim * es), vc = cs->vc.p + (q4k__CUdeviceptr)(l * s->n_ctx * kv_dim * es);
        /* attention block */
        if ((r = q4k__cuda_rmsnorm_f(cb, cs->x.p, D->attn_norm, cs->xb.p, n, d, hp->norm_eps, f16acc, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_ATTN_NORM, cs->xb.p, n, d, err)) || (r = q4k__cuda_quantize_in(cs, cs->xb.p, n, d, err)) ||
            (r = q4k__cuda_mm_t(cs, L->wq, D->wq, cs->xb.p, q8, n, cs->q.p, err)) ||
            (r = q4k__cuda_mm_t(cs, L->wk, D->wk, cs->xb.p, q8, n, cs->k.p, err)) ||
            (r = q4k__cuda_mm_t(cs, L->wv, D->wv, cs->xb.p, q8, n, cs->v.p, err)))
            return r;
        if (L->bq && bias &&
            ((r = q4k__cuda_add_bias(cb, cs->q.p, D->bq, n, q_dim, err)) || (r = q4k__cuda_add_bias(cb, cs->k.p, D->bk, n, kv_dim, err)) ||
             (r = q4k__cuda_add_bias(cb, cs->v.p, D->bv, n, kv_dim, err))))
            return r;
        if ((r = q4k__cuda_op_done(cs, l, Q4K_OP_Q, cs->q.p, n, q_dim, err)) || (r = q4k__cuda_op_done(cs, l, Q4K_OP_K, cs->k.p, n, kv_dim, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_V, cs->v.p, n, kv_dim, err)) ||
            (r = q4k__cuda_rope(cb, cs->q.p, n, (int)hp->n_head, (int)hd, q_dim, (int)hp->n_rot, hp->rope_neox, cs->table.p, cs->pos.p, err)) ||
            (r = q4k__cuda_rope(cb, cs->k.p, n, (int)hp->n_head_kv, (int)hd, kv_dim, (int)hp->n_rot, hp->rope_neox, cs->table.p, cs->pos.p, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_Q_ROPE, cs->q.p, n, q_dim, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_K_ROPE, cs->k.p, n, kv_dim, err)) ||
            (r = q4k__cuda_kv_append_s(cb, cs->k.p, kc, kv_dim, n, cs->pos.p, f32kv, kv_scale, err)) ||
            (r = q4k__cuda_kv_append_s(cb, cs->v.p, vc, kv_dim, n, cs->pos.p, f32kv, kv_scale, err)) ||
            (r = q4k__cuda_attention_g(cb, cs->q.p, kc, vc, cs->att.p, cs->scores.p, cs->pos.p, n, (int)hp->n_head, (int)hp->n_head_kv,
                                       (int)hd, s->n_ctx, f32kv, gqa, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_ATTN, cs->att.p, n, q_dim, err)) || (r = q4k__cuda_quantize_in(cs, cs->att.p, n, q_dim, err)) ||
            (r = q4k__cuda_mm_t(cs, L->wo, D->wo, cs->att.p, q8, n, cs->tmp.p, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_ATTN_OUT, cs->tmp.p, n, d, err)) || (r = q4k__cuda_add(cb, cs->x.p, cs->tmp.p, n * d, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_RESID_ATTN, cs->x.p, n, d, err)) ||
            (r = q4k__cuda_trace_resid(cs, s->trace_layers_attn ? s->trace_layers_attn + l * d : NULL, n, err)))
            return r;
        /* feed-forward block */
        if ((r = q4k__cuda_rmsnorm_f(cb, cs->x.p, D->ffn_norm, cs->xb.p, n, d, hp->norm_eps, f16acc, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_FFN_NORM, cs->xb.p, n, d, err)) || (r = q4k__cuda_quantize_in(cs, cs->xb.p, n, d, err)) ||
            (r = q4k__cuda_mm_t(cs, L->w_gate, D->gate, cs->xb.p, q8, n, cs->gate.p, err)) ||
            (r = q4k__cuda_mm_t(cs, L->w_up, D->up, cs->xb.p, q8, n, cs->up.p, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_GATE, cs->gate.p, n, ff, err)) || (r = q4k__cuda_op_done(cs, l, Q4K_OP_UP, cs->up.p, n, ff, err)) ||
            (r = q4k__cuda_swiglu(cb, cs->gate.p, cs->up.p, n * ff, err)) || (r = q4k__cuda_op_done(cs, l, Q4K_OP_ACT, cs->gate.p, n, ff, err)) ||
            (r = q4k__cuda_quantize_in(cs, cs->gate.p, n, ff, err)) ||
            (r = q4k__cuda_mm_t(cs, L->w_down, D->down, cs->gate.p, q8, n, cs->tmp.p, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_DOWN, cs->tmp.p, n, d, err)) || (r = q4k__cuda_add(cb, cs->x.p, cs->tmp.p, n * d, err)) ||
            (r = q4k__cuda_op_done(cs, l, Q4K_OP_RESID_FFN, cs->x.p, n, d, err)) ||
            (r = q4k__cuda_trace_resid(cs, s->trace_layers ? s->trace_layers + l * d : NULL, n, err)))
            return r;
    }
    if (rows_out <= 0) return Q4K_OK;
    /* final norm and logits, of every token or of the last */
    if ((r = q4k__cuda_rmsnorm_f(cb, cs->x.p + (q4k__CUdeviceptr)((n - rows_out) * d * 4), cs->w->output_norm, cs->xb.p, rows_out, d,
                                 hp->norm_eps, f16acc, err)) ||
        (r = q4k__cuda_op_done(cs, -1, Q4K_OP_COUNT + Q4K_STAGE_OUTPUT_NORM, cs->xb.p, rows_out, d, err)) ||
        (r = q4k__cuda_quantize_in(cs, cs->xb.p, rows_out, d, err)) ||
        (r = q4k__cuda_mm_t(cs, m->output, cs->w->output, cs->xb.p, q8, rows_out, cs->logits.p, err)))
        return r;
    if (Q4K__CUDA_FAULT(cs, Q4K_FAULT_SPLIT)) {
        const int64_t from = s->desc.faults.split_rows > 0 ? s->desc.faults.split_rows : nv / 2;
        int64_t j;
        for (j = 0; j < rows_out && from < nv; j++)
            if ((r = q4k__cuda_check(cb, cb->lib.cuMemsetD32Async(cs->logits.p + (q4k__CUdeviceptr)((j * nv + from) * 4), 0, (size_t)(nv - from), cb->stream),
                                     "cuMemsetD32 (the split fault)", 0, err)))
                return r;
    }
    return q4k__cuda_op_done(cs, -1, Q4K_OP_COUNT + Q4K_STAGE_LM_HEAD, cs->logits.p, rows_out, nv, err);
}

/* A decode step through its graph: captured the first time (the kernels
   read the token and the position from device memory, so one capture
   serves every later step, after a rewind too), then replayed. A capture
   the driver refuses turns the graph off for the session, with a warning:
   nothing ran while capturing, so the step goes kernel by kernel. */
static q4k_result q4k__cuda_graph_step(q4k__cuda_session *cs, int *done, q4k_error *err) {
    q4k__cuda_backend *cb = cs->cb;
    q4k__CUresult cr;
    char buf[200];
    *done = 0;
    if (!cs->graph) {
        q4k__CUgraph g = NULL;
        q4k_result r;
        const char *what = "cuStreamBeginCapture";
        cr = cb->lib.cuStreamBeginCapture(cb->stream, Q4K__CU_STREAM_CAPTURE_MODE_RELAXED);
        if (!cr) {
            r = q4k__cuda_forward(cs, 1, 1, err);
            what = "cuStreamEndCapture";
            cr = cb->lib.cuStreamEndCapture(cb->stream, &g);
            if (r) {
                if (g) cb->lib.cuGraphDestroy(g);
                return r;
            }
            if (!cr) {
                what = "cuGraphInstantiate";
                cr = cb->lib.cuGraphInstantiateWithFlags(&cs->graph, g, 0);
                cb->lib.cuGraphDestroy(g);
            }
        }
        if (cr) {
            cs->graph = NULL;
            cs->use_graph = 0;
            q4k__log(cb->desc.log, cb->desc.log_user, Q4K_LOG_WARN, "cuda: no graph for the decode step (%s: %s): launching kernel by kernel",
                     what, q4k__cuda_errstr(&cb->lib, cr, buf, sizeof buf));
            return Q4K_OK;
        }
    }
    *done = 1;
    return q4k__cuda_check(cb, cb->lib.cuGraphLaunch(cs->graph, cb->stream), "cuGraphLaunch (the decode step)", 0, err);
}

#ifdef Q4K_CUDA_TEST_FAULT
/* Test builds: at eval number $Q4K_CUDA_TEST_FAULT_EVAL a kernel writes to
   an address nothing maps, an asynchronous fault as a driver bug would cause */
static q4k_result q4k__cuda_test_fault(q4k__cuda_session *cs, q4k_error *err) {
    const char *at = getenv("Q4K_CUDA_TEST_FAULT_EVAL");
    if (!at || !*at || cs->base.n_evals != (int64_t)atoll(at)) return Q4K_OK;
    return q4k__cuda_add(cs->cb, (q4k__CUdeviceptr)256, cs->tmp.p, 1 << 20, err);
}
#endif

static q4k_result q4k__cuda_eval_batch(q4k__cuda_session *cs, const int32_t *tokens, int64_t n, unsigned flags, float *logits,
                                       q4k_error *err) {
    q4k_session *s = &cs->base;
    q4k__cuda_backend *cb = cs->cb;
    const int64_t rows_out = logits ? ((flags & Q4K_EVAL_ALL_LOGITS) ? n : 1) : 0;
    int32_t pos0 = (int32_t)s->pos;
    int done = 0;
    q4k_result r;
    if ((r = q4k__cuda_put(cb, cs->tok.p, tokens, sizeof(int32_t) * (size_t)n, err)) ||
        (r = q4k__cuda_put(cb, cs->pos.p, &pos0, sizeof pos0, err)))
        return r;
    if (cs->use_graph && n == 1 && rows_out == 1 && (r = q4k__cuda_graph_step(cs, &done, err))) return r;
    if (!done && (r = q4k__cuda_forward(cs, n, rows_out, err))) return r;
#ifdef Q4K_CUDA_TEST_FAULT
    if ((r = q4k__cuda_test_fault(cs, err))) return r;
#endif
    if (logits) {
        if ((r = q4k__cuda_get(cb, logits, cs->logits.p, sizeof(float) * (size_t)(rows_out * s->model->hp.n_vocab), err))) return r;
    } else if ((r = q4k__cuda_check(cb, cb->lib.cuStreamSynchronize(cb->stream), "the layers' kernels", 1, err))) {
        return r;
    }
    s->pos += n;
    return Q4K_OK;
}

static q4k_result q4k__cuda_eval(q4k_session *s, const int32_t *tokens, int64_t n, unsigned flags, float *logits, q4k_error *err) {
    q4k__cuda_session *cs = (q4k__cuda_session *)s;
    int64_t done = 0, n_vocab = s->model->hp.n_vocab;
    q4k_result r;
    if (cs->cb->dead) return q4k__fail(err, Q4K_ERR_GPU, "cuda: the session is dead after an earlier fault (%s)", cs->cb->dead_why);
    if ((r = q4k__cuda_bind(cs->cb, err))) return r;
    if (n == 1) cs->n_decode++;
    while (done < n) {
        int64_t nb = n - done < Q4K__CUDA_BATCH ? n - done : Q4K__CUDA_BATCH;
        float *out = NULL;
        if (logits && (flags & Q4K_EVAL_ALL_LOGITS)) out = logits + done * n_vocab;
        else if (logits && done + nb == n) out = logits;
        if ((r = q4k__cuda_eval_batch(cs, tokens + done, nb, flags, out, err))) return r;
        done += nb;
    }
    return Q4K_OK;
}

#ifdef Q4K_FAULTS
/* q4k_scales: every Q4_K matrix the forward pass multiplies by (the CPU's
   q4k__cpu_matmul_t's) replaced by a copy with its scales and mins
   exchanged, in this session alone */
static q4k_result q4k__cuda_fault_scales(q4k__cuda_session *cs, const q4k__cuda_model *cm, q4k_error *err) {
    const q4k_model *m = cs->base.model;
    const int64_t nl = m->hp.n_layer, per = 7;
    int64_t i, k;
    uint64_t off = 0;
    q4k_result r = Q4K_OK;
    cs->fw = *cm;
    cs->fw.layers = (q4k__cuda_layer *)Q4K_MALLOC(sizeof(q4k__cuda_layer) * (size_t)(nl + 1));
    if (!cs->fw.layers) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory for the q4k_scales fault");
    memcpy(cs->fw.layers, cm->layers, sizeof(q4k__cuda_layer) * (size_t)nl);
    cs->w = &cs->fw;
    for (k = 0; k < 2 && !r; k++) { /* sizes, then copies */
        if (k == 1 && (r = q4k__cuda_reserve(cs->cb, &cs->fault_w, (size_t)(off ? off : 256), "the q4k_scales fault's weights", err))) break;
        off = 0;
        for (i = 0; i <= nl * per && !r; i++) {
            const q4k_layer *L = i < nl * per ? &m->layers[i / per] : NULL;
            q4k__cuda_layer *D = i < nl * per ? &cs->fw.layers[i / per] : NULL;
            const q4k_tensor *ts[7];
            q4k__CUdeviceptr *ds[7];
            const q4k_tensor *t;
            q4k__CUdeviceptr *dp;
            if (L) {
                ts[0] = L->wq; ts[1] = L->wk; ts[2] = L->wv; ts[3] = L->wo; ts[4] = L->w_gate; ts[5] = L->w_up; ts[6] = L->w_down;
                ds[0] = &D->wq; ds[1] = &D->wk; ds[2] = &D->wv; ds[3] = &D->wo; ds[4] = &D->gate; ds[5] = &D->up; ds[6] = &D->down;
                t = ts[i % per];
                dp = ds[i % per];
            } else {
                t = m->output;
                dp = &cs->fw.output;
            }
            if (t->type != Q4K_TYPE_Q4_K) continue;
            if (k == 1) {
                unsigned char *copy = (unsigned char *)Q4K_MALLOC(t->nbytes);
                if (!copy) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory for the q4k_scales copy of '%s'", t->name);
                memcpy(copy, t->data, t->nbytes);
                q4k__fault_swap_scales(copy, (int64_t)(t->nbytes / sizeof(q4k_block_q4_K)));
                r = q4k__cuda_put(cs->cb, cs->fault_w.p + off, copy, t->nbytes, err);
                Q4K_FREE(copy);
                *dp = cs->fault_w.p + off;
            }
            off += (t->nbytes + 255) / 256 * 256;
        }
    }
    return r;
}
#endif

static q4k_result q4k__cuda_session_create(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d, q4k_session **out,
                                           q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    const q4k_hparams *hp = &m->hp;
    const int64_t B = Q4K__CUDA_BATCH, dm = hp->n_embd, q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    const int64_t ff = hp->n_ff, half = hp->n_rot / 2, n_ctx = d->n_ctx;
    q4k__cuda_model *cm = (q4k__cuda_model *)q4k__backend_find_prepared(b, m);
    int64_t i, widest = dm > q_dim ? dm : q_dim;
    float *table;
    q4k__cuda_session *cs;
    q4k_result r = Q4K_OK;
    struct { q4k__cuda_buf *b; size_t bytes; } need[17];
    const size_t n_need = sizeof need / sizeof need[0];
    size_t k;
    uint64_t upload, have;
    const char *env = getenv("Q4K_CUDA_GRAPH");
    *out = NULL;
    if (cb->dead) return q4k__fail(err, Q4K_ERR_GPU, "cuda: the backend is dead after an earlier fault (%s)", cb->dead_why);
    if (!cm) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: session: the model was not prepared (use q4k_session_create)");
    if ((r = q4k__cuda_bind(cb, err))) return r;
    if (widest < ff) widest = ff;
    cs = (q4k__cuda_session *)Q4K_MALLOC(sizeof *cs);
    if (!cs) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory for a session");
    memset(cs, 0, sizeof *cs);
    q4k__session_init(&cs->base, b, m, d);
    cs->cb = cb;
    cs->w = cm;
    cs->kv_f32 = d->kv == Q4K_KV_F32;
    cs->base.eval = q4k__cuda_eval;
    cs->base.destroy = q4k__cuda_session_destroy;
    /* a step replays a graph unless a trace reads rows between the kernels,
       a fault changes them from step to step, or $Q4K_CUDA_GRAPH is 0 */
    cs->use_graph = cb->graphs && !d->trace && !d->faults.mask && d->faults.perturb_eps == 0.0f && !(env && !strcmp(env, "0"));
    need[0].b = &cs->kc; need[0].bytes = (size_t)(hp->n_layer * n_ctx * kv_dim) * (cs->kv_f32 ? 4 : 2);
    need[1].b = &cs->vc; need[1].bytes = need[0].bytes;
    need[2].b = &cs->x; need[2].bytes = (size_t)(B * dm) * 4;
    need[3].b = &cs->xb; need[3].bytes = need[2].bytes;
    need[4].b = &cs->q; need[4].bytes = (size_t)(B * q_dim) * 4;
    need[5].b = &cs->k; need[5].bytes = (size_t)(B * kv_dim) * 4;
    need[6].b = &cs->v; need[6].bytes = need[5].bytes;
    need[7].b = &cs->att; need[7].bytes = need[4].bytes;
    need[8].b = &cs->tmp; need[8].bytes = need[2].bytes;
    need[9].b = &cs->gate; need[9].bytes = (size_t)(B * ff) * 4;
    need[10].b = &cs->up; need[10].bytes = need[9].bytes;
    need[11].b = &cs->xq; need[11].bytes = (size_t)(B * widest / 32) * sizeof(q4k_block_q8a);
    need[12].b = &cs->scores; need[12].bytes = (size_t)(B * hp->n_head * n_ctx) * 4;
    need[13].b = &cs->logits; need[13].bytes = (size_t)(B * hp->n_vocab) * 4;
    need[14].b = &cs->table; need[14].bytes = (size_t)(n_ctx * half * 2) * 4;
    need[15].b = &cs->tok; need[15].bytes = (size_t)B * 4;
    need[16].b = &cs->pos; need[16].bytes = 4;
    cs->kv_bytes = 2 * (uint64_t)need[0].bytes;
    for (k = 2; k < n_need; k++) cs->scratch_bytes += need[k].bytes;
    /* all of it must fit before anything is allocated or uploaded */
    upload = cm->weights.p ? 0 : cm->bytes;
    have = q4k__cuda_mem_free(cb);
    if (upload + cs->kv_bytes + cs->scratch_bytes > have) {
        q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY,
                  "cuda: a session of %lld positions needs %llu bytes of device memory (KV cache %llu, scratch %llu, weights "
                  "%llu to upload), %llu free%s; try a smaller -c",
                  (long long)n_ctx, (unsigned long long)(upload + cs->kv_bytes + cs->scratch_bytes), (unsigned long long)cs->kv_bytes,
                  (unsigned long long)cs->scratch_bytes, (unsigned long long)upload, (unsigned long long)have,
                  cb->mem_limit ? " (under Q4K_DEVICE_MEM_LIMIT)" : "");
        Q4K_FREE(cs);
        return Q4K_ERR_OUT_OF_MEMORY;
    }
    table = (float *)Q4K_MALLOC(sizeof(float) * (size_t)(n_ctx * half * 2 + 1));
    if (!table) {
        Q4K_FREE(cs);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory for a session");
    }
    for (i = 0; i < n_ctx * half; i++)
        q4k_rope_cos_sin(i / half, i % half, hp->n_rot, hp->rope_freq_base,
                         m->rope_freqs ? (double)((const float *)m->rope_freqs->data)[i % half] : 1.0, &table[2 * i], &table[2 * i + 1]);
    if (upload) r = q4k__cuda_upload_model(cb, m, cm, err);
    for (k = 0; k < n_need && !r; k++) r = q4k__cuda_reserve(cb, need[k].b, need[k].bytes, "a session's buffers", err);
    if (!r) r = q4k__cuda_put(cb, cs->table.p, table, need[14].bytes, err);
    Q4K_FREE(table);
#ifdef Q4K_FAULTS
    if (!r && Q4K__CUDA_FAULT(cs, Q4K_FAULT_Q4K_SCALES)) r = q4k__cuda_fault_scales(cs, cm, err);
#endif
    if (r || (r = q4k__session_alloc_trace(&cs->base, err))) {
        q4k__session_free_trace(&cs->base);
        q4k__cuda_session_destroy(&cs->base);
        return r;
    }
    *out = &cs->base;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_cuda_memory_info(q4k_backend *b, q4k_cuda_memory *out, q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    size_t fr = 0, total = 0;
    q4k__CUresult cr;
    q4k_result r;
    memset(out, 0, sizeof *out);
    if (!b || !b->name || strcmp(b->name, "cuda") || b->impl != (void *)b)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: memory info: not a CUDA backend");
    q4k__backend_lock(b);
    if (!(r = q4k__cuda_bind(cb, err))) {
        if ((cr = cb->lib.cuMemGetInfo(&fr, &total)) != 0) {
            r = q4k__cuda_check(cb, cr, "cuMemGetInfo", 0, err);
        } else {
            out->total = (uint64_t)total;
            out->used = (uint64_t)(total - fr);
            out->context = cb->mem_ctx;
            out->allocated = cb->allocated;
        }
    }
    q4k__backend_unlock(b);
    return r;
}

/* the hook q4k_session_check_memory asks before any upload: what this
   backend may still allocate (the driver's free memory, less under
   $Q4K_DEVICE_MEM_LIMIT) */
static q4k_result q4k__cuda_mem_info(q4k_backend *b, uint64_t *free_bytes, uint64_t *total_bytes, q4k_error *err) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    size_t fr = 0, total = 0;
    q4k__CUresult cr;
    q4k_result r;
    /* a lost context answers every call with its old error: say dead, as the other entry points */
    if (cb->dead) return q4k__fail(err, Q4K_ERR_GPU, "cuda: the backend is dead after an earlier fault (%s)", cb->dead_why);
    if ((r = q4k__cuda_bind(cb, err))) return r;
    if ((cr = cb->lib.cuMemGetInfo(&fr, &total)) != 0) return q4k__cuda_check(cb, cr, "cuMemGetInfo", 0, err);
    *free_bytes = q4k__cuda_mem_free(cb);
    *total_bytes = cb->mem_limit && cb->mem_limit < (uint64_t)total ? cb->mem_limit : (uint64_t)total;
    return Q4K_OK;
}

static void q4k__cuda_destroy(q4k_backend *b) {
    q4k__cuda_backend *cb = (q4k__cuda_backend *)b;
    int i;
    if (cb->ctx) {
        q4k__cuda_buf *bufs[4];
        bufs[0] = &cb->w;
        bufs[1] = &cb->x;
        bufs[2] = &cb->xq;
        bufs[3] = &cb->y;
        cb->lib.cuCtxSetCurrent(cb->ctx);
        for (i = 0; i < 4; i++)
            if (bufs[i]->p) cb->lib.cuMemFree(bufs[i]->p);
        for (i = 0; i < (int)(sizeof cb->opb / sizeof cb->opb[0]); i++)
            if (cb->opb[i].p) cb->lib.cuMemFree(cb->opb[i].p);
        for (i = 0; i < Q4K__CUDA_N_FILES; i++)
            if (cb->mods[i]) cb->lib.cuModuleUnload(cb->mods[i]);
        if (cb->stream) cb->lib.cuStreamDestroy(cb->stream);
        cb->lib.cuDevicePrimaryCtxRelease(cb->dev);
    }
    q4k__cuda_unload(&cb->lib);
    Q4K_FREE(cb);
}

/* load module f: CUBIN for the device's SM when NVRTC knows it, else PTX
   for the newest SM it knows below the device's (the driver compiles it) */
static q4k_result q4k__cuda_load_module(q4k__cuda_backend *cb, int f, const int *sms, int n_sms, q4k_error *err) {
    char *image = NULL, jit_log[2048];
    size_t size = 0;
    int target = 0, i, ptx = 0;
    int opts[2] = {Q4K__CU_JIT_ERROR_LOG_BUFFER, Q4K__CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[2];
    q4k__CUresult cr;
    q4k_result r;
    char buf[200];
    for (i = 0; i < n_sms; i++) {
        if (sms[i] == cb->sm) target = sms[i];
        if (sms[i] < cb->sm && sms[i] > target && target != cb->sm) target = sms[i];
    }
    if (!target) return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: NVRTC cannot compile for sm_%d", cb->sm);
    ptx = target != cb->sm;
    if ((r = q4k__cuda_image(&cb->lib, &cb->desc, f, target, ptx, &image, &size, err))) return r;
    jit_log[0] = 0;
    vals[0] = jit_log;
    vals[1] = (void *)(size_t)sizeof jit_log;
    cr = cb->lib.cuModuleLoadDataEx(&cb->mods[f], image, 2, opts, vals);
    Q4K_FREE(image);
    if (cr) return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: the driver cannot load %s compiled for %s_%d: %s %.300s",
                                  q4k__cuda_files[f], ptx ? "compute" : "sm", target, q4k__cuda_errstr(&cb->lib, cr, buf, sizeof buf), jit_log);
    cb->ptx |= ptx;
    return Q4K_OK;
}

static q4k_result q4k__cuda_get_fn(q4k__cuda_backend *cb, int f, const char *name, q4k__CUfunction *fn, q4k_error *err) {
    q4k__CUresult cr = cb->lib.cuModuleGetFunction(fn, cb->mods[f], name);
    char buf[200];
    if (cr) return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: kernel %s missing from %s: %s", name, q4k__cuda_files[f],
                                  q4k__cuda_errstr(&cb->lib, cr, buf, sizeof buf));
    return Q4K_OK;
}

Q4K_API q4k_result q4k_cuda_backend_create(const q4k_cuda_desc *desc, q4k_backend **out, q4k_error *err) {
    static const q4k_type types[] = {Q4K_TYPE_F32, Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0,
                                     Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};
    q4k__cuda_backend *cb;
    q4k_result r;
    q4k__CUresult cr;
    int n = 0, major = 0, minor = 0, sms[64], n_sms = 0, i, m, a;
    char buf[200];
    *out = NULL;
    cb = (q4k__cuda_backend *)Q4K_MALLOC(sizeof *cb);
    if (!cb) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cuda: out of memory");
    memset(cb, 0, sizeof *cb);
    if (desc) cb->desc = *desc;
    cb->base.name = "cuda";
    cb->base.impl = cb;
    cb->base.prepare_model = q4k__cuda_prepare_model;
    cb->base.release_model = q4k__cuda_release_model;
    cb->base.session_create = q4k__cuda_session_create;
    cb->base.matmul = q4k__cuda_matmul;
    cb->base.mem_info = q4k__cuda_mem_info;
    cb->base.embedding = q4k__cuda_op_embedding;
    cb->base.rmsnorm = q4k__cuda_op_rmsnorm;
    cb->base.rope = q4k__cuda_op_rope;
    cb->base.attention = q4k__cuda_op_attention;
    cb->base.quantize_act = q4k__cuda_op_quantize_act;
    cb->base.destroy = q4k__cuda_destroy;
    if ((r = q4k__cuda_load_driver(&cb->lib, cb->desc.libcuda_path, err)) || (r = q4k__cuda_load_nvrtc(&cb->lib, cb->desc.nvrtc_path, err)))
        goto fail;
    if ((cr = cb->lib.cuInit(0)) != 0) {
        r = q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: cuInit failed (%s): %s", cb->lib.cuda_path,
                           q4k__cuda_errstr(&cb->lib, cr, buf, sizeof buf));
        goto fail;
    }
    if (cb->lib.cuDeviceGetCount(&n) || cb->desc.device < 0 || cb->desc.device >= n) {
        r = q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: no device %d (the driver reports %d)", cb->desc.device, n);
        goto fail;
    }
    cb->lib.cuDeviceGet(&cb->dev, cb->desc.device);
    cb->lib.cuDeviceGetName(cb->name, (int)sizeof cb->name, cb->dev);
    cb->lib.cuDeviceGetAttribute(&major, Q4K__CU_ATTR_CC_MAJOR, cb->dev);
    cb->lib.cuDeviceGetAttribute(&minor, Q4K__CU_ATTR_CC_MINOR, cb->dev);
    cb->sm = major * 10 + minor;
    if (cb->sm < Q4K__CUDA_MIN_SM) {
        r = q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "cuda: device %d (%s) has compute capability %d.%d; the kernels need 7.5",
                           cb->desc.device, cb->name, major, minor);
        goto fail;
    }
    if ((r = q4k__cuda_sms(&cb->lib, sms, 64, &n_sms, err))) goto fail;
    if (n_sms > 64) n_sms = 64;
    if ((r = q4k__cuda_check(cb, cb->lib.cuDevicePrimaryCtxRetain(&cb->ctx, cb->dev), "cuDevicePrimaryCtxRetain", 0, err))) goto fail;
    if ((r = q4k__cuda_check(cb, cb->lib.cuCtxSetCurrent(cb->ctx), "cuCtxSetCurrent", 0, err)) ||
        (r = q4k__cuda_check(cb, cb->lib.cuStreamCreate(&cb->stream, 1 /* non-blocking */), "cuStreamCreate", 0, err)))
        goto fail;
    {
        size_t fr = 0, total = 0;
        const char *lim = getenv("Q4K_DEVICE_MEM_LIMIT");
        if (!cb->lib.cuMemGetInfo(&fr, &total)) {
            cb->mem_total = (uint64_t)total;
            cb->mem_ctx = (uint64_t)(total - fr);
        }
        if (lim && *lim) {
            char *end = NULL;
            unsigned long long v = strtoull(lim, &end, 10);
            if (!end || *end || v == 0) {
                r = q4k__fail(err, Q4K_ERR_INVALID_ARG, "cuda: Q4K_DEVICE_MEM_LIMIT='%s' is not a number of bytes", lim);
                goto fail;
            }
            cb->mem_limit = (uint64_t)v;
        }
        cb->graphs = q4k__cuda_load_graphs(&cb->lib);
    }
    for (i = 0; i < Q4K__CUDA_N_FILES; i++)
        if ((r = q4k__cuda_load_module(cb, i, sms, n_sms, err))) goto fail;
    if ((r = q4k__cuda_get_fn(cb, 0, "q4k_quantize_q8a", &cb->quantize, err))) goto fail;
    for (i = 0; i < Q4K__CUDA_OP_COUNT; i++)
        if ((r = q4k__cuda_get_fn(cb, 1, q4k__cuda_op_names[i], &cb->op[i], err))) goto fail;
    for (i = 0; i < (int)(sizeof types / sizeof types[0]); i++)
        for (a = 0; a < 2; a++)
            for (m = 0; m < 2; m++) {
                char name[64];
                if (a == 0 && !q4k__cuda_quantized(types[i])) continue;
                snprintf(name, sizeof name, "q4k_%s_%s_%s", m ? "mm" : "mv", a ? "f32" : "q8", q4k__cuda_type_suffix(types[i]));
                if ((r = q4k__cuda_get_fn(cb, 0, name, &cb->mm[a][m][types[i]], err))) goto fail;
            }
    if (cb->desc.log) {
        char line[300];
        snprintf(line, sizeof line, "cuda: device %d: %s, sm_%d, kernels %s", cb->desc.device, cb->name, cb->sm,
                 cb->ptx ? "from PTX (NVRTC does not know this SM)" : "as CUBIN");
        cb->desc.log(Q4K_LOG_INFO, line, cb->desc.log_user);
    }
    if ((r = q4k__backend_lock_init(&cb->base, err))) goto fail;
    *out = &cb->base;
    return Q4K_OK;
fail:
    q4k__cuda_destroy(&cb->base);
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
