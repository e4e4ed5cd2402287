#version 450
/* rmsnorm.comp - y[r] = x[r] * (1 / sqrt(mean(x[r]^2) + eps)) * w for rows
   r < n of cols values, a workgroup per row (the CPU sums the squares in
   double; here in float, in another order). flags Q4K_F_F16_ACC: the sum
   of squares kept in an fp16 accumulator, one value after the other, as
   the gate's fp16-accumulator fault does on the CPU.
   binding 1: x, 2: y, 4: w (f32); f[0]: eps */
#extension GL_GOOGLE_include_directive : require
#define WG 256
#define Q4K_REDUCE_WG WG
#include "q4k_vk_common.glsl"

layout(local_size_x = WG) in;

layout(std430, set = 0, binding = 1) readonly buffer Q4kX { float x[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Q4kY { float y[]; };
layout(std430, set = 0, binding = 4) readonly buffer Q4kW { float w[]; };

void main() {
    uint r = pc.base + gl_WorkGroupID.x, tid = gl_LocalInvocationID.x, d = pc.cols;
    if (r >= pc.n) return; /* the whole workgroup: no barrier is skipped by half of it */
    uint o = r * d;
    float ss = 0.0;
    if ((pc.flags & Q4K_F_F16_ACC) != 0u) {
        if (tid == 0u)
            for (uint i = 0u; i < d; i++) {
                precise float t = ss + x[o + i] * x[o + i];
                ss = h2f(q4k_f2h(t));
            }
    } else {
        for (uint i = tid; i < d; i += WG) ss += x[o + i] * x[o + i];
    }
    float scale = 1.0 / sqrt(q4k_wg_sum(ss) / float(d) + pc.f[0]);
    for (uint i = tid; i < d; i += WG) {
        precise float v = x[o + i] * scale;
        y[o + i] = v * w[i];
    }
}
