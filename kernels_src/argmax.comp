#version 450
/* argmax.comp - the greedy token: the index of the largest of x[0..u[0]),
   the lowest among equals, NaN never winning (q4k_argmax in q4k.h).
   PASS 1: workgroup g reduces x[g * CHUNK ..) to (value bits, index) in
   scratch[2g], [2g + 1] (index 0xffffffff: no number there);
   PASS 2: one workgroup reduces the u[1] pairs into prm[u[2]].
   binding 1: x (floats), 5: scratch, 3: params (written). */
#extension GL_GOOGLE_include_directive : require
#include "q4k_vk_common.glsl"

#ifndef PASS
#define PASS 1
#endif
#define WG 256
#define CHUNK (WG * 16u)

layout(local_size_x = WG) in;

layout(std430, set = 0, binding = 1) readonly buffer Q4kX { float x[]; };
layout(std430, set = 0, binding = 3) buffer Q4kPrm { uint prm[]; };
layout(std430, set = 0, binding = 5) buffer Q4kS { uint sc[]; };

shared float sv[WG];
shared uint si[WG];

/* (v, i) beats (bv, bi): a number, larger, or equal with a lower index */
bool better(float v, uint i, float bv, uint bi) {
    if (i == 0xffffffffu) return false;
    return bi == 0xffffffffu || v > bv || (v == bv && i < bi);
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    float bv = 0.0;
    uint bi = 0xffffffffu;
#if PASS == 1
    uint g = pc.base + gl_WorkGroupID.x;
    uint end = min(pc.u[0], (g + 1u) * CHUNK);
    for (uint i = g * CHUNK + tid; i < end; i += WG) {
        float v = x[i];
        if ((floatBitsToUint(v) & 0x7fffffffu) <= 0x7f800000u && better(v, i, bv, bi)) { /* not NaN, on the bits */
            bv = v;
            bi = i;
        }
    }
#else
    for (uint k = tid; k < pc.u[1]; k += WG)
        if (better(uintBitsToFloat(sc[2u * k]), sc[2u * k + 1u], bv, bi)) {
            bv = uintBitsToFloat(sc[2u * k]);
            bi = sc[2u * k + 1u];
        }
#endif
    sv[tid] = bv;
    si[tid] = bi;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (tid < s && better(sv[tid + s], si[tid + s], sv[tid], si[tid])) {
            sv[tid] = sv[tid + s];
            si[tid] = si[tid + s];
        }
        barrier();
    }
    if (tid == 0u) {
#if PASS == 1
        sc[2u * g] = floatBitsToUint(sv[0]);
        sc[2u * g + 1u] = si[0];
#else
        prm[pc.u[2]] = si[0];
#endif
    }
}
