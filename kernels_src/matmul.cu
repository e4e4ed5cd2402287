/* matmul.cu - Y = W X for every weight type q4k runs, in both arithmetic modes,
   and the 8-bit activation quantizer.

   W: rows x cols in its GGUF blocks (row-major, rows of whole blocks, only
   2-byte aligned); X: n activation rows of cols values; Y: n rows of `rows`
   floats (Y[j][r] = W[r] . X[j]), as q4k_matmul lays them out.

   One warp computes one weight row against NC activation rows: lane l takes
   the row's blocks l, l+32, ... and forms each block's term exactly as
   q4k.h's scalar kernel does (q4k_common.h); the terms are summed in f32 in
   another order (lanes, then a butterfly), so a result differs from the
   CPU's by float reassociation only. NC = 1 is the matrix-vector product of
   a decode step; NC = 8 serves prompts (prefill).

   Q8 mode (q4k_mm_q8_*): activations quantized by q4k_quantize_q8a, the
   CPU's 8-bit scheme bit for bit; exact integer dots per block.
   Float mode (q4k_mm_f32_*, and F32/F16/BF16 weights in both modes): each
   32-value group of a row decoded exactly (q4k_decode32) and dotted with
   the float activations in order, as the CPU's reference does. */
#include "q4k_common.h"

#define Q4K_MM_WARPS 4 /* rows per thread block: one warp each */

__device__ __forceinline__ float q4k_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* each column's lane sums into y[c][r] */
template <int NC>
__device__ __forceinline__ void q4k_store_row(const float *acc, int lane, long long c0, long long n, long long rows, long long r,
                                              float *y) {
#pragma unroll
    for (int c = 0; c < NC; c++) {
        const float s = q4k_warp_sum(acc[c]);
        if (lane == 0 && c0 + c < n) y[(c0 + c) * rows + r] = s;
    }
}

/* one weight block's term against activation row x (the row's first block) */
template <int T> __device__ __forceinline__ float q4k_block_term(const unsigned char *row, long long b, const block_q8a *x);
template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q8_0>(const unsigned char *row, long long b, const block_q8a *x) {
    return q4k_qdot_q8_0((const block_q8_0 *)row + b, x + b);
}
template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q4_0>(const unsigned char *row, long long b, const block_q8a *x) {
    return q4k_qdot_q4_0((const block_q4_0 *)row + b, x + b);
}
template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q5_0>(const unsigned char *row, long long b, const block_q8a *x) {
    return q4k_qdot_q5_0((const block_q5_0 *)row + b, x + b);
}
template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q4_K>(const unsigned char *row, long long b, const block_q8a *x) {
    return q4k_qdot_q4_K((const block_q4_K *)row + b, x + 8 * b);
}
template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q5_K>(const unsigned char *row, long long b, const block_q8a *x) {
    return q4k_qdot_q5_K((const block_q5_K *)row + b, x + 8 * b);
}
template <> __device__ __forceinline__ float q4k_block_term<Q4K_T_Q6_K>(const unsigned char *row, long long b, const block_q8a *x) {
    return q4k_qdot_q6_K((const block_q6_K *)row + b, x + 8 * b);
}

/* Q8 mode: BYTES per block of VALS values */
template <int T, int BYTES, int VALS, int NC>
__device__ __forceinline__ void q4k_mm_q8(const unsigned char *w, long long rows, long long cols, const block_q8a *x,
                                          float *y, long long n) {
    const long long r = (long long)blockIdx.x * Q4K_MM_WARPS + threadIdx.x / 32;
    const long long c0 = (long long)blockIdx.y * NC;
    const int lane = threadIdx.x & 31;
    const long long nb = cols / VALS, nbx = cols / 32;
    const unsigned char *row = w + r * nb * BYTES;
    float acc[NC];
    if (r >= rows) return; /* the whole warp */
#pragma unroll
    for (int c = 0; c < NC; c++) acc[c] = 0.0f;
    for (long long b = lane; b < nb; b += 32) {
#pragma unroll
        for (int c = 0; c < NC; c++)
            if (c0 + c < n) acc[c] += q4k_block_term<T>(row, b, x + (c0 + c) * nbx);
    }
    q4k_store_row<NC>(acc, lane, c0, n, rows, r, y);
}

/* float activations: 32-value groups g = lane, lane+32, ... of a row of
   row_bytes bytes; a last group of F32/F16/BF16 may be short */
template <int T, int NC>
__device__ __forceinline__ void q4k_mm_f(const unsigned char *w, long long row_bytes, long long rows, long long cols,
                                         const float *x, float *y, long long n) {
    const long long r = (long long)blockIdx.x * Q4K_MM_WARPS + threadIdx.x / 32;
    const long long c0 = (long long)blockIdx.y * NC;
    const int lane = threadIdx.x & 31;
    const long long ng = (cols + 31) / 32;
    const unsigned char *row = w + r * row_bytes;
    float acc[NC], wv[32];
    if (r >= rows) return;
#pragma unroll
    for (int c = 0; c < NC; c++) acc[c] = 0.0f;
    for (long long g = lane; g < ng; g += 32) {
        const int e = cols - 32 * g < 32 ? (int)(cols - 32 * g) : 32;
        q4k_decode32(T, row, g, cols, wv);
#pragma unroll
        for (int c = 0; c < NC; c++) {
            if (c0 + c < n) {
                const float *xr = x + (c0 + c) * cols + 32 * g;
                float s = 0.0f;
                if (e == 32) {
#pragma unroll
                    for (int i = 0; i < 32; i++) s += wv[i] * xr[i];
                } else {
                    for (int i = 0; i < e; i++) s += wv[i] * xr[i];
                }
                acc[c] += s;
            }
        }
    }
    q4k_store_row<NC>(acc, lane, c0, n, rows, r, y);
}

/* kernels: q4k_mv_* (one column a warp, decode) and q4k_mm_* (8 columns, prefill) */
#define Q4K_MM_Q8(name, T, BYTES, VALS)                                                                        \
    extern "C" __global__ void __launch_bounds__(32 * Q4K_MM_WARPS)                                           \
        q4k_mv_q8_##name(const unsigned char *w, long long rows, long long cols, const block_q8a *x, float *y, \
                         long long n) {                                                                       \
        q4k_mm_q8<T, BYTES, VALS, 1>(w, rows, cols, x, y, n);                                                 \
    }                                                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * Q4K_MM_WARPS)                                           \
        q4k_mm_q8_##name(const unsigned char *w, long long rows, long long cols, const block_q8a *x, float *y, \
                         long long n) {                                                                       \
        q4k_mm_q8<T, BYTES, VALS, 8>(w, rows, cols, x, y, n);                                                 \
    }

Q4K_MM_Q8(q8_0, Q4K_T_Q8_0, 34, 32)
Q4K_MM_Q8(q4_0, Q4K_T_Q4_0, 18, 32)
Q4K_MM_Q8(q5_0, Q4K_T_Q5_0, 22, 32)
Q4K_MM_Q8(q4_K, Q4K_T_Q4_K, 144, 256)
Q4K_MM_Q8(q5_K, Q4K_T_Q5_K, 176, 256)
Q4K_MM_Q8(q6_K, Q4K_T_Q6_K, 210, 256)

#define Q4K_MM_F(name, T)                                                                                       \
    extern "C" __global__ void __launch_bounds__(32 * Q4K_MM_WARPS)                                            \
        q4k_mv_f32_##name(const unsigned char *w, long long row_bytes, long long rows, long long cols,         \
                          const float *x, float *y, long long n) {                                             \
        q4k_mm_f<T, 1>(w, row_bytes, rows, cols, x, y, n);                                                     \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(32 * Q4K_MM_WARPS)                                            \
        q4k_mm_f32_##name(const unsigned char *w, long long row_bytes, long long rows, long long cols,         \
                          const float *x, float *y, long long n) {                                             \
        q4k_mm_f<T, 8>(w, row_bytes, rows, cols, x, y, n);                                                     \
    }

Q4K_MM_F(f32, Q4K_T_F32)
Q4K_MM_F(f16, Q4K_T_F16)
Q4K_MM_F(bf16, Q4K_T_BF16)
Q4K_MM_F(q8_0, Q4K_T_Q8_0)
Q4K_MM_F(q4_0, Q4K_T_Q4_0)
Q4K_MM_F(q5_0, Q4K_T_Q5_0)
Q4K_MM_F(q4_K, Q4K_T_Q4_K)
Q4K_MM_F(q5_K, Q4K_T_Q5_K)
Q4K_MM_F(q6_K, Q4K_T_Q6_K)

/* x: nb blocks of 32 floats -> nb block_q8a, one thread a block */
extern "C" __global__ void q4k_quantize_q8a(const float *x, block_q8a *out, long long nb) {
    const long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (b < nb) q4k_quantize_q8a_block(x + 32 * b, out + b);
}
