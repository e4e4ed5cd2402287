#version 450
/* ops.comp - the forward pass's element-wise operations, one kernel per OP,
   each computing what q4k.h's CPU forward pass computes (>>model):
      OP 1  add       x[i] += y[i % u[1]] for i < u[0]: a bias (period the
                      row width) or the residual (period u[0])
      OP 2  swiglu    x[i] = silu(x[i]) * y[i], silu(v) = v / (1 + e^-v)
      OP 3  rope      rotate x [u[0] tokens][stride u[3]], u[1] heads of
                      u[2] values, the first u[4] of each in pairs, by the
                      cos/sin rows of the table part in binding 2 (rows
                      u[6].. u[6] + rows, each u[4]/2 (cos, sin) pairs):
                      token j at position prm[u[5]] + j
      OP 4  kv_store  rows prm[u[5]] + j of the cache part in binding 2
                      (rows u[6].. u[6] + rows of u[1] values, f16 with
                      flags Q4K_F_KV_F16 else f32) = x[j] for j < u[0]
      OP 5  perturb   x[i] *= 1 + f[0] * N(0,1) for i < u[0]; the normal
                      draw from a counter-based hash of (seed u[2], u[3],
                      prm[u[1]], i), so each position gets its own noise
      OP 6  scale     x[i] *= f[0] (flags Q4K_F_DEV: the float in prm[u[1]])
   binding 1: x (written), 2: y, or the table / cache part, 3: params (uint).
   A kernel that works on a part of a split table or cache runs once per
   part; the dispatch whose part holds a position does the work. */
#extension GL_GOOGLE_include_directive : require
#include "q4k_vk_common.glsl"

#ifndef OP
#define OP 1
#endif

layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 1) buffer Q4kX { float x[]; };
layout(std430, set = 0, binding = 2) buffer Q4kB { uint b[]; };
layout(std430, set = 0, binding = 3) readonly buffer Q4kPrm { uint prm[]; };

/* a 64-bit mix (splitmix64's finaliser) on two 32-bit halves */
uvec2 q4k_mix(uvec2 v) {
    uint hi, lo, c;
    /* v ^= v >> 30; v *= 0xbf58476d1ce4e5b9; v ^= v >> 27; v *= 0x94d049bb133111eb; v ^= v >> 31 */
    v = uvec2(v.x ^ ((v.y << 2) | (v.x >> 30)), v.y ^ (v.y >> 30));
    umulExtended(v.x, 0x1ce4e5b9u, hi, lo);
    v = uvec2(lo, hi + v.x * 0xbf58476du + v.y * 0x1ce4e5b9u);
    v = uvec2(v.x ^ ((v.y << 5) | (v.x >> 27)), v.y ^ (v.y >> 27));
    umulExtended(v.x, 0x133111ebu, hi, lo);
    v = uvec2(lo, hi + v.x * 0x94d049bbu + v.y * 0x133111ebu);
    c = v.y;
    return uvec2(v.x ^ ((v.y << 1) | (v.x >> 31)), c ^ (c >> 31));
}

void main() {
    uint i = (pc.base + gl_WorkGroupID.x) * 64u + gl_LocalInvocationID.x;
#if OP == 1
    if (i < pc.u[0]) x[i] += uintBitsToFloat(b[i % pc.u[1]]);
#elif OP == 2
    if (i < pc.u[0]) {
        float v = x[i];
        x[i] = v / (1.0 + exp(-v)) * uintBitsToFloat(b[i]);
    }
#elif OP == 3
    uint half_ = pc.u[4] / 2u, per_tok = pc.u[1] * half_;
    if (i >= pc.u[0] * per_tok) return;
    uint j = i / per_tok, h = i % per_tok / half_, k = i % half_;
    uint p = prm[pc.u[5]] + j;
    if (p < pc.u[6] || p - pc.u[6] >= pc.rows) return;
    uint t = 2u * ((p - pc.u[6]) * half_ + k);
    float c = uintBitsToFloat(b[t]), s = uintBitsToFloat(b[t + 1u]);
    bool neox = (pc.flags & Q4K_F_NEOX) != 0u;
    uint o = j * pc.u[3] + h * pc.u[2], i0 = o + (neox ? k : 2u * k), i1 = o + (neox ? k + half_ : 2u * k + 1u);
    float x0 = x[i0], x1 = x[i1];
    precise float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
    x[i0] = y0;
    x[i1] = y1;
#elif OP == 4
    uint dim = pc.u[1];
    bool f16 = (pc.flags & Q4K_F_KV_F16) != 0u;
    uint per_tok = f16 ? dim / 2u : dim; /* f16: an invocation per pair, one word */
    if (i >= pc.u[0] * per_tok) return;
    uint j = i / per_tok, e = i % per_tok;
    uint p = prm[pc.u[5]] + j;
    if (p < pc.u[6] || p - pc.u[6] >= pc.rows) return;
    if (f16)
        b[(p - pc.u[6]) * per_tok + e] = q4k_f2h(x[j * dim + 2u * e]) | (q4k_f2h(x[j * dim + 2u * e + 1u]) << 16);
    else
        b[(p - pc.u[6]) * dim + e] = floatBitsToUint(x[j * dim + e]);
#elif OP == 5
    if (i >= pc.u[0]) return;
    uvec2 r = q4k_mix(uvec2(pc.u[2] ^ i, pc.u[3] ^ (prm[pc.u[1]] * 0x9e3779b9u)));
    r = q4k_mix(r + uvec2(0x7f4a7c15u, 0x9e3779b9u));
    float u1 = (float(r.y >> 8) + 0.5) / 16777216.0, u2 = float(r.x >> 8) / 16777216.0;
    x[i] *= 1.0 + pc.f[0] * sqrt(-2.0 * log(u1)) * cos(6.283185307 * u2);
#elif OP == 6
    if (i < pc.u[0]) x[i] *= (pc.flags & Q4K_F_DEV) != 0u ? uintBitsToFloat(prm[pc.u[1]]) : pc.f[0];
#else
#error "ops.comp: unknown OP"
#endif
}
