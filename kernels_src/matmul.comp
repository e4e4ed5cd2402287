#version 450
/* matmul.comp - y[j][r] = sum_c W[r][c] * x[j][c] for one weight type, the
   arithmetic of the CPU's q4k_matmul (q4k.h, >>cpu) in the same mode:
      WTYPE   the ggml type id of W (0 F32, 1 F16, 2 Q4_0, 6 Q5_0, 8 Q8_0,
              12 Q4_K, 13 Q5_K, 14 Q6_K, 30 BF16)
      ACT_Q8  1: x is q4k_block_q8a blocks (quantize_q8a.comp) and each 32
              values of a quantized type give one exact integer dot;
              0: x is floats, weights are decoded to the CPU's exact floats.
   One workgroup computes one row for every column; each invocation takes
   units of 32 values (a legacy block, a k-quant sub-block) and keeps NC
   columns' partial sums, reduced across the workgroup at the end. Float
   sums run in another order than the CPU's, nothing else differs.
   Row r of this binding goes to y[j * y_stride + u[0] + r] (u[0]: the first
   row of the binding in the whole matrix). flags Q4K_F_Q4K_SCALES: Q4_K's
   scale and min trade places (the gate's fault of swapped Q4_K scales).

   EMBED 1 builds the embedding kernel instead: out[j][0..cols) = row
   prm[u[1] + j] of the table (binding 0 holds its rows [u[0], u[0] + rows),
   an invocation per 32 values, workgroup y = j); the decoding is the float
   mode's, the CPU's q4k_dequantize_row bit for bit. */
#extension GL_GOOGLE_include_directive : require
#include "q4k_vk_common.glsl"

#ifndef WTYPE
#define WTYPE 12
#endif
#ifndef ACT_Q8
#define ACT_Q8 1
#endif
#ifndef EMBED
#define EMBED 0
#endif
#define WG 64
#define NC 8

layout(local_size_x = WG) in;

layout(std430, set = 0, binding = 1) readonly buffer Q4kXF { float xf[]; };
layout(std430, set = 0, binding = 1) readonly buffer Q4kXQ { uint xq[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Q4kY { float y[]; };
layout(std430, set = 0, binding = 3) readonly buffer Q4kPrm { uint prm[]; };

shared float part[NC][WG]; /* partial sums of the reduction */

#if WTYPE == 0
#define ROW_BYTES(c) ((c) * 4u)
#elif WTYPE == 1 || WTYPE == 30
#define ROW_BYTES(c) ((c) * 2u)
#elif WTYPE == 2
#define ROW_BYTES(c) ((c) / 32u * 18u)
#elif WTYPE == 6
#define ROW_BYTES(c) ((c) / 32u * 22u)
#elif WTYPE == 8
#define ROW_BYTES(c) ((c) / 32u * 34u)
#elif WTYPE == 12
#define ROW_BYTES(c) ((c) / 256u * 144u)
#elif WTYPE == 13
#define ROW_BYTES(c) ((c) / 256u * 176u)
#elif WTYPE == 14
#define ROW_BYTES(c) ((c) / 256u * 210u)
#else
#error "matmul.comp: WTYPE has no kernel"
#endif

#define FLOAT_W (WTYPE == 0 || WTYPE == 1 || WTYPE == 30)
#define K_QUANT (WTYPE == 12 || WTYPE == 13 || WTYPE == 14)

/* the 6-bit scale and min of sub-block j of a Q4_K / Q5_K block at off
   (bytes 4..15 of the block; see q4k__scale_min_k4 in q4k.h) */
void scale_min_k4(uint off, uint j, out uint sc, out uint m) {
    uint s = off + 4u;
    if (j < 4u) {
        sc = rd8(s + j) & 63u;
        m = rd8(s + j + 4u) & 63u;
    } else {
        sc = (rd8(s + j + 4u) & 0xfu) | ((rd8(s + j - 4u) >> 6) << 4);
        m = (rd8(s + j + 4u) >> 4) | ((rd8(s + j) >> 6) << 4);
    }
#if WTYPE == 12
    if ((pc.flags & Q4K_F_Q4K_SCALES) != 0u) {
        uint t = sc;
        sc = m;
        m = t;
    }
#endif
}

#if !FLOAT_W
/* unit u (32 values) of the row at byte rb: its quants, and the floats that
   scale them: w_i = a * q_i - b (legacy: b = 0; Q6_K: a per half, in a, b) */
void unit_quants(uint rb, uint u, out int q[32], out float a, out float b, out uint sc0, out uint sc1) {
#if WTYPE == 2 || WTYPE == 6 || WTYPE == 8
    uint off = rb + u * (WTYPE == 2 ? 18u : WTYPE == 6 ? 22u : 34u);
    a = h2f(rd16(off));
    b = 0.0;
    sc0 = 1u;
    sc1 = 1u;
#if WTYPE == 8
    for (uint k = 0u; k < 8u; k++) {
        uint w = rd32(off + 2u + 4u * k);
        for (uint t = 0u; t < 4u; t++) q[4u * k + t] = sbyte(w, t);
    }
#else
    uint qh = WTYPE == 6 ? rd32(off + 2u) : 0u;
    uint qs = off + (WTYPE == 6 ? 6u : 2u);
    for (uint k = 0u; k < 4u; k++) {
        uint w = rd32(qs + 4u * k);
        for (uint t = 0u; t < 4u; t++) {
            uint i = 4u * k + t, v = (w >> (8u * t)) & 0xffu;
#if WTYPE == 2
            q[i] = int(v & 0xfu) - 8;
            q[i + 16u] = int(v >> 4) - 8;
#else
            q[i] = int((v & 0xfu) | (((qh >> i) & 1u) << 4)) - 16;
            q[i + 16u] = int((v >> 4) | (((qh >> (i + 16u)) & 1u) << 4)) - 16;
#endif
        }
    }
#endif
#elif WTYPE == 12 || WTYPE == 13
    uint sb = u >> 3, s = u & 7u;
    uint off = rb + sb * (WTYPE == 12 ? 144u : 176u);
    a = h2f(rd16(off));      /* d */
    b = h2f(rd16(off + 2u)); /* dmin */
    scale_min_k4(off, s, sc0, sc1);
    uint qs = off + (WTYPE == 12 ? 16u : 48u) + 32u * (s >> 1), shift = 4u * (s & 1u);
    for (uint k = 0u; k < 8u; k++) {
        uint w = rd32(qs + 4u * k);
#if WTYPE == 13
        uint h = rd32(off + 16u + 4u * k);
#endif
        for (uint t = 0u; t < 4u; t++) {
            uint v = (w >> (8u * t + shift)) & 0xfu;
#if WTYPE == 13
            v |= ((h >> (8u * t + s)) & 1u) << 4;
#endif
            q[4u * k + t] = int(v);
        }
    }
#else /* Q6_K: unit u = 4h + g covers values 128h + 32g .. +31 */
    uint sb = u >> 3, s = u & 7u, h = s >> 2, g = s & 3u;
    uint off = rb + sb * 210u;
    a = h2f(rd16(off + 208u));
    b = 0.0;
    uint ql = off + 64u * h + 32u * (g & 1u), qh = off + 128u + 32u * h, shift = 4u * (g >> 1);
    sc0 = rd8(off + 192u + 8u * h + 2u * g);
    sc1 = rd8(off + 193u + 8u * h + 2u * g);
    for (uint k = 0u; k < 8u; k++) {
        uint wl = rd32(ql + 4u * k), wh = rd32(qh + 4u * k);
        for (uint t = 0u; t < 4u; t++) {
            uint lo = (wl >> (8u * t + shift)) & 0xfu, hb = (wh >> (8u * t + 2u * g)) & 3u;
            q[4u * k + t] = int(lo | (hb << 4)) - 32;
        }
    }
#endif
}
#endif

#if FLOAT_W || !ACT_Q8 || EMBED
/* the cnt (32 but at the end of a float row) weights of unit u of the row at
   byte rb, as the CPU decodes them (q4k_dequantize_row): every product is
   exact in float, only the k-quants' subtraction of the min rounds */
void unit_floats(uint rb, uint u, uint cnt, out float w[32]) {
#if FLOAT_W
    for (uint i = 0u; i < cnt; i++) {
        uint e = 32u * u + i;
#if WTYPE == 0
        w[i] = uintBitsToFloat(w32[(rb >> 2) + e]);
#elif WTYPE == 1
        w[i] = h2f(rd16(rb + 2u * e));
#else
        w[i] = uintBitsToFloat(rd16(rb + 2u * e) << 16);
#endif
    }
#else
    int q[32];
    float a, b;
    uint sc0, sc1;
    unit_quants(rb, u, q, a, b, sc0, sc1);
#if WTYPE == 12 || WTYPE == 13
    float d1 = a * float(sc0), m1 = b * float(sc1);
    for (uint i = 0u; i < 32u; i++) w[i] = d1 * float(q[i]) - m1;
#elif WTYPE == 14
    float d0 = a * float(int(sc0 << 24) >> 24), dh = a * float(int(sc1 << 24) >> 24);
    for (uint i = 0u; i < 32u; i++) w[i] = (i < 16u ? d0 : dh) * float(q[i]);
#else
    for (uint i = 0u; i < 32u; i++) w[i] = float(q[i]) * a;
#endif
#endif
}
#endif

#if EMBED
void main() {
    uint j = gl_WorkGroupID.y, u = (pc.base + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (j >= pc.n || u >= (pc.cols + 31u) / 32u) return;
    uint tok = prm[pc.u[1] + j];
    if (tok < pc.u[0] || tok - pc.u[0] >= pc.rows) return; /* another binding's row */
    float w[32];
    uint cnt = min(32u, pc.cols - 32u * u);
    unit_floats((tok - pc.u[0]) * ROW_BYTES(pc.cols), u, cnt, w);
    for (uint i = 0u; i < cnt; i++) y[j * pc.cols + 32u * u + i] = w[i];
}
#else
void main() {
    uint row = pc.row_base + gl_WorkGroupID.x;
    uint tid = gl_LocalInvocationID.x;
    uint rb = row * ROW_BYTES(pc.cols);
    uint nunits = (pc.cols + 31u) / 32u;
    bool live = row < pc.rows; /* every invocation reaches the barriers */

    for (uint j0 = 0u; j0 < pc.n; j0 += NC) {
        float acc[NC];
        for (uint c = 0u; c < NC; c++) acc[c] = 0.0;
        uint nc = min(uint(NC), pc.n - j0);
        for (uint u = tid; live && u < nunits; u += WG) {
#if FLOAT_W || !ACT_Q8
            float w[32];
            uint cnt = min(32u, pc.cols - 32u * u);
            unit_floats(rb, u, cnt, w);
            for (uint c = 0u; c < nc; c++) {
                uint xo = (j0 + c) * pc.cols + 32u * u;
                float s = 0.0;
                for (uint i = 0u; i < cnt; i++) s += w[i] * xf[xo + i];
                acc[c] += s;
            }
#else /* 8-bit activations against a quantized type */
            int q[32];
            float a, b;
            uint sc0, sc1;
            unit_quants(rb, u, q, a, b, sc0, sc1);
            for (uint c = 0u; c < nc; c++) {
                uint xo = 10u * ((j0 + c) * nunits + u);
                float dx = uintBitsToFloat(xq[xo]);
                int s0 = 0, s1 = 0;
                for (uint k = 0u; k < 4u; k++) {
                    uint x0 = xq[xo + 2u + k], x1 = xq[xo + 6u + k];
                    for (uint t = 0u; t < 4u; t++) {
                        s0 += q[4u * k + t] * sbyte(x0, t);
                        s1 += q[16u + 4u * k + t] * sbyte(x1, t);
                    }
                }
#if WTYPE == 12 || WTYPE == 13
                float sx = float(int(xq[xo + 1u]));
                acc[c] += a * (dx * float(int(sc0) * (s0 + s1))) - b * (float(sc1) * (dx * sx));
#elif WTYPE == 14
                acc[c] += a * (dx * float((int(sc0 << 24) >> 24) * s0 + (int(sc1 << 24) >> 24) * s1));
#else
                acc[c] += (a * dx) * float(s0 + s1);
#endif
            }
#endif
        }

#if Q4K_SUBGROUP
        for (uint c = 0u; c < nc; c++) { /* nc is uniform: N = 1 reduces one sum, not NC */
            float s = subgroupAdd(acc[c]);
            if (subgroupElect()) part[c][gl_SubgroupID] = s;
        }
        barrier();
        if (tid < nc && live) {
            float t = 0.0;
            for (uint i = 0u; i < gl_NumSubgroups; i++) t += part[tid][i];
            y[(j0 + tid) * pc.y_stride + pc.u[0] + row] = t;
        }
#else
        for (uint c = 0u; c < nc; c++) part[c][tid] = acc[c];
        barrier();
        for (uint h = WG / 2u; h > 0u; h >>= 1) {
            if (tid < h)
                for (uint c = 0u; c < nc; c++) part[c][tid] += part[c][tid + h];
            barrier();
        }
        if (tid < nc && live) y[(j0 + tid) * pc.y_stride + pc.u[0] + row] = part[tid][0];
#endif
        barrier();
    }
}
#endif
