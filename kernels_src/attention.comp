#version 450
/* attention.comp - causal GQA attention with f32 scores over a KV cache
   that may be split by positions across several bindings (q4k.h's
   q4k__attn_head: out = softmax(q.k / sqrt(hd)) v over positions 0..p).
   PASS 1, per (tile of TILE positions of one cache part, head, token):
      m = max score, s = sum e^(score - m), a[d] = sum e^(score - m) v[d]
   into the scratch slot of the tile; PASS 2, per (head, token), combines
   the slots: out = sum a_c e^(m_c - M) / sum s_c e^(m_c - M). Each dot runs
   over d in order and each a[d] over positions in order, as the CPU does.
   Token j (of this group, absolute u[7] + j) sits at position prm[u[3]] +
   u[7] + j and attends to positions 0 ..= that.
   binding 1: q [tokens][u[0] heads * u[2]] (PASS 2: out, same shape),
   2: K part, 4: V part (rows u[4] .. u[4] + rows of u[1] * u[2] values,
   f16 pairs in words with Q4K_F_KV_F16, else f32), 3: params,
   5: scratch [group tokens][group heads][u[6] slots][u[2] + 2] floats;
   a dispatch covers heads u[8] .. u[8] + (workgroups in y);
   u[5]: the first slot of this part; f[0]: 1 / sqrt(hd);
   flags Q4K_F_GQA: head h reads KV head h % n_head_kv (the gate's fault). */
#extension GL_GOOGLE_include_directive : require
#define WG 64
#define Q4K_REDUCE_WG WG
#include "q4k_vk_common.glsl"

#ifndef PASS
#define PASS 1
#endif
#define TILE 128

layout(local_size_x = WG) in;

layout(std430, set = 0, binding = 1) buffer Q4kQ { float q[]; };
layout(std430, set = 0, binding = 2) readonly buffer Q4kK { uint kc[]; };
layout(std430, set = 0, binding = 3) readonly buffer Q4kPrm { uint prm[]; };
layout(std430, set = 0, binding = 4) readonly buffer Q4kV { uint vc[]; };
layout(std430, set = 0, binding = 5) buffer Q4kS { float sc[]; };

shared float e[TILE];

/* element i of a cache part */
float kv_k(uint i) {
    if ((pc.flags & Q4K_F_KV_F16) != 0u) return h2f((kc[i >> 1] >> (16u * (i & 1u))) & 0xffffu);
    return uintBitsToFloat(kc[i]);
}
float kv_v(uint i) {
    if ((pc.flags & Q4K_F_KV_F16) != 0u) return h2f((vc[i >> 1] >> (16u * (i & 1u))) & 0xffffu);
    return uintBitsToFloat(vc[i]);
}

void main() {
    uint tid = gl_LocalInvocationID.x, n_head = pc.u[0], hd = pc.u[2];
    uint h = pc.u[8] + gl_WorkGroupID.y, j = gl_WorkGroupID.z, nslot = pc.u[6];
    uint sbase = (j * gl_NumWorkGroups.y + gl_WorkGroupID.y) * nslot; /* this (token, head)'s first slot */
#if PASS == 1
    uint tile = pc.base + gl_WorkGroupID.x;
    uint kvh = (pc.flags & Q4K_F_GQA) != 0u ? h % pc.u[1] : h / (n_head / pc.u[1]);
    uint kv_dim = pc.u[1] * hd, last = prm[pc.u[3]] + pc.u[7] + j;
    uint r0 = tile * TILE; /* within the part */
    uint nt = 0u;
    if (r0 < pc.rows && pc.u[4] + r0 <= last) nt = min(min(uint(TILE), pc.rows - r0), last + 1u - pc.u[4] - r0);
    uint qo = ((pc.u[7] + j) * n_head + h) * hd;
    float mx = uintBitsToFloat(0xff800000u); /* -inf */
    for (uint t = tid; t < nt; t += WG) {
        uint ko = (r0 + t) * kv_dim + kvh * hd;
        float dot = 0.0;
        for (uint d = 0u; d < hd; d++) dot += q[qo + d] * kv_k(ko + d);
        e[t] = dot * pc.f[0];
        mx = max(mx, e[t]);
    }
    mx = q4k_wg_max(mx); /* its barriers also publish e[] */
    float sum = 0.0;
    for (uint t = tid; t < nt; t += WG) {
        e[t] = exp(e[t] - mx);
        sum += e[t];
    }
    sum = q4k_wg_sum(sum);
    uint so = (sbase + pc.u[5] + tile) * (hd + 2u);
    for (uint d = tid; d < hd; d += WG) {
        float acc = 0.0;
        for (uint t = 0u; t < nt; t++) acc += e[t] * kv_v((r0 + t) * kv_dim + kvh * hd + d);
        sc[so + 2u + d] = acc;
    }
    if (tid == 0u) {
        sc[so] = mx;
        sc[so + 1u] = sum;
    }
#else
    float mx = uintBitsToFloat(0xff800000u), den = 0.0;
    for (uint c = 0u; c < nslot; c++)
        if (sc[(sbase + c) * (hd + 2u) + 1u] > 0.0) mx = max(mx, sc[(sbase + c) * (hd + 2u)]);
    for (uint c = 0u; c < nslot; c++) {
        uint so = (sbase + c) * (hd + 2u);
        if (sc[so + 1u] > 0.0) den += sc[so + 1u] * exp(sc[so] - mx);
    }
    for (uint d = tid; d < hd; d += WG) {
        float acc = 0.0;
        for (uint c = 0u; c < nslot; c++) {
            uint so = (sbase + c) * (hd + 2u);
            if (sc[so + 1u] > 0.0) acc += sc[so + 2u + d] * exp(sc[so] - mx);
        }
        q[((pc.u[7] + j) * n_head + h) * hd + d] = acc / den;
    }
#endif
}
