/* ops.cu - the forward pass's operations other than matrix products, each
   written to compute what q4k.h's CPU reference computes (see the comments
   at its functions, `>>model`):
      q4k_get_rows      embedding rows, decoded exactly (any weight type)
      q4k_rmsnorm       y = x * (float)(1 / sqrt(mean(x^2) + eps)) * w, the
                        mean in double (f16acc: a fault of the gate)
      q4k_add_bias, q4k_add, q4k_swiglu (silu(g) * u, silu(x) = x / (1 + e^-x))
      q4k_rope          rotation by the host's cos/sin table (q4k_rope_pair)
      q4k_kv_append     K or V rows into the cache: f16 (round to nearest even)
                        or f32 (exact), as the session's KV type says
      q4k_attention     causal GQA attention, f32 scores, decode and prefill
      q4k_argmax        greedy token (lowest index among equal maxima)
      q4k_perturb       the gate's perturb fault: y *= 1 + eps * N(0,1), the
                        CPU's generator (splitmix64, Box-Muller) at its position
   Positions are read from device memory (pos[0]: the position of the
   batch's first token), so a captured decode step stays valid as the
   position moves. */
#include "q4k_common.h"

/* out[j][0..d) = row tokens[j] of w (row_bytes a row); a thread per 32-value group */
extern "C" __global__ void q4k_get_rows(int type, const unsigned char *w, long long row_bytes, const int *tokens,
                                        long long n, long long d, float *out) {
    const long long ng = (d + 31) / 32;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    float v[32];
    if (t >= n * ng) return;
    const long long j = t / ng, g = t % ng;
    const int e = d - 32 * g < 32 ? (int)(d - 32 * g) : 32;
    q4k_decode32(type, w + (long long)tokens[j] * row_bytes, g, d, v);
    for (int i = 0; i < e; i++) out[j * d + 32 * g + i] = v[i];
}

#define Q4K_OPS_THREADS 256

/* block-wide sum of a double (blockDim.x == Q4K_OPS_THREADS) */
__device__ double q4k_block_sum_d(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = Q4K_OPS_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    v = sh[0];
    __syncthreads();
    return v;
}

/* one thread block per row; f16acc (a fault of the gate): the sum of
   squares kept in an fp16 accumulator, one add at a time as the CPU's fault does */
extern "C" __global__ void __launch_bounds__(Q4K_OPS_THREADS)
    q4k_rmsnorm(const float *x, const float *w, float *y, long long d, float eps, int f16acc) {
    __shared__ double sh[Q4K_OPS_THREADS];
    const float *xr = x + blockIdx.x * d;
    float *yr = y + blockIdx.x * d;
    double ss = 0.0;
    if (f16acc) {
        if (threadIdx.x == 0) {
            float h = 0.0f;
            for (long long i = 0; i < d; i++) h = q4k_h2f(q4k_f2h(h + q4k_mul(xr[i], xr[i])));
            sh[0] = (double)h;
        }
        __syncthreads();
        ss = sh[0];
        __syncthreads();
    } else {
        for (long long i = threadIdx.x; i < d; i += blockDim.x) ss += (double)xr[i] * (double)xr[i];
        ss = q4k_block_sum_d(ss, sh);
    }
    const float scale = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
    for (long long i = threadIdx.x; i < d; i += blockDim.x) yr[i] = q4k_mul(xr[i], scale) * w[i];
}

/* y[j][i] += b[i] for n rows of dim */
extern "C" __global__ void q4k_add_bias(float *y, const float *b, long long n, long long dim) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n * dim) y[t] += b[t % dim];
}

extern "C" __global__ void q4k_add(float *x, const float *y, long long n) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) x[t] += y[t];
}

extern "C" __global__ void q4k_swiglu(float *g, const float *u, long long n) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) {
        const float x = g[t];
        g[t] = x / (1.0f + expf(-x)) * u[t];
    }
}

/* v: n tokens x n_heads heads of head_dim (row stride `stride` floats);
   table: [position][n_rot/2] (cos, sin) pairs; a thread per pair */
extern "C" __global__ void q4k_rope(float *v, long long n, int n_heads, int head_dim, long long stride, int n_rot,
                                    int neox, const float *table, const int *pos) {
    const int half = n_rot / 2;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n * n_heads * half) return;
    const long long j = t / ((long long)n_heads * half);
    const int h = (int)(t / half % n_heads), i = (int)(t % half);
    float *hv = v + j * stride + (long long)h * head_dim;
    const float *cs = table + 2 * ((long long)(pos[0] + j) * half + i);
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    q4k_rope_pair(&hv[i0], &hv[i1], cs[0], cs[1]);
}

/* cache[(pos0 + j) * dim + i] = x[j * dim + i] * scale, rounded to f16
   unless f32 (scale is 1, an exact product, except under a fault of the
   gate that halves the cache) */
extern "C" __global__ void q4k_kv_append(const float *x, void *cache, long long dim, long long n, const int *pos, int f32,
                                         float scale) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n * dim) return;
    const long long at = ((long long)pos[0] + t / dim) * dim + t % dim;
    const float v = scale == 1.0f ? x[t] : q4k_mul(x[t], scale); /* a NaN keeps its payload, as on the CPU */
    if (f32) ((float *)cache)[at] = v;
    else ((unsigned short *)cache)[at] = q4k_f2h(v);
}

/* element i of a cache of f16 or f32 */
Q4K_HD float q4k_kv_get(const void *c, long long i, int f32) {
    return f32 ? ((const float *)c)[i] : q4k_h2f(((const unsigned short *)c)[i]);
}

/* Causal attention of token j (position pos0 + j) and query head h: one
   thread block per (j, h), grid n * n_head. q, out: [n][n_head * hd];
   kc, vc: one layer's cache [n_ctx][n_head_kv * hd] (f16, or f32); scores: scratch of
   n * n_head rows of n_ctx floats. The dot of each score runs over d in
   order, and each output sums p_t * v_t over t in order, as the CPU does;
   only the max and the softmax denominator are reduced in another order.
   gqa_fault (a fault of the gate): query head h reads KV head h % n_head_kv. */
extern "C" __global__ void __launch_bounds__(Q4K_OPS_THREADS)
    q4k_attention(const float *q, const void *kc, const void *vc, float *out, float *scores,
                  const int *pos, int n_head, int n_head_kv, int hd, long long n_ctx, int f32, int gqa_fault) {
    __shared__ float shf[Q4K_OPS_THREADS];
    const long long j = blockIdx.x / n_head;
    const int h = blockIdx.x % n_head, kvh = gqa_fault ? h % n_head_kv : h / (n_head / n_head_kv);
    const long long kv_dim = (long long)n_head_kv * hd, last = (long long)pos[0] + j;
    const float *qh = q + (j * n_head + h) * hd;
    float *sc = scores + (long long)blockIdx.x * n_ctx;
    const float scale = 1.0f / sqrtf((float)hd);
    float mx = __int_as_float(0xff800000), sum = 0.0f; /* -inf */
    for (long long t = threadIdx.x; t <= last; t += blockDim.x) {
        const long long k = t * kv_dim + (long long)kvh * hd;
        float dot = 0.0f;
        for (int d = 0; d < hd; d++) dot += q4k_mul(qh[d], q4k_kv_get(kc, k + d, f32));
        sc[t] = dot * scale;
        mx = fmaxf(mx, sc[t]);
    }
    shf[threadIdx.x] = mx;
    __syncthreads();
    for (int s = Q4K_OPS_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shf[threadIdx.x] = fmaxf(shf[threadIdx.x], shf[threadIdx.x + s]);
        __syncthreads();
    }
    mx = shf[0];
    __syncthreads();
    for (long long t = threadIdx.x; t <= last; t += blockDim.x) {
        sc[t] = expf(sc[t] - mx);
        sum += sc[t];
    }
    shf[threadIdx.x] = sum;
    __syncthreads();
    for (int s = Q4K_OPS_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shf[threadIdx.x] += shf[threadIdx.x + s];
        __syncthreads();
    }
    sum = shf[0];
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (long long t = 0; t <= last; t++)
            acc += q4k_mul(sc[t] / sum, q4k_kv_get(vc, t * kv_dim + (long long)kvh * hd + d, f32));
        out[(j * n_head + h) * hd + d] = acc;
    }
}

/* out[0] = index of the largest of x[0..n) (the lowest among equals; NaN never wins); one block */
extern "C" __global__ void __launch_bounds__(Q4K_OPS_THREADS) q4k_argmax(const float *x, long long n, int *out) {
    __shared__ float sv[Q4K_OPS_THREADS];
    __shared__ long long si[Q4K_OPS_THREADS];
    float best = __int_as_float(0xff800000); /* -inf */
    long long bi = -1;
    for (long long i = threadIdx.x; i < n; i += blockDim.x)
        if (x[i] > best || (bi < 0 && x[i] == x[i])) {
            best = x[i];
            bi = i;
        }
    sv[threadIdx.x] = best;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = Q4K_OPS_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float ov = sv[threadIdx.x + s];
            const long long oi = si[threadIdx.x + s];
            if (oi >= 0 && (si[threadIdx.x] < 0 || ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x]))) {
                sv[threadIdx.x] = ov;
                si[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = (int)si[0];
}

/* The gate's perturb fault: y[i] *= 1 + eps * N(0,1), value i drawn as the
   CPU's generator draws its (drawn + i)-th value after `seed` (splitmix64,
   then Box-Muller in double), so both backends add the same noise when they
   perturb the same ops in the same order. */
extern "C" __global__ void q4k_perturb(float *y, long long n, float eps, unsigned long long seed, unsigned long long drawn) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    unsigned long long a = seed + (drawn + (unsigned long long)t + 1ull) * 0x9E3779B97F4A7C15ull;
    a = (a ^ (a >> 30)) * 0xBF58476D1CE4E5B9ull;
    a = (a ^ (a >> 27)) * 0x94D049BB133111EBull;
    const unsigned long long b = a ^ (a >> 31);
    const double u = ((double)(b >> 11) + 0.5) / 9007199254740992.0, v = (double)(b & 0x7ff) / 2048.0;
    y[t] *= (float)(1.0 + (double)eps * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}
