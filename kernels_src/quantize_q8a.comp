#version 450
/* quantize_q8a.comp - the 8-bit activation quantizer, bit for bit the CPU's
   q4k_quantize_act_q8: one invocation per block of 32 floats, writing one
   q4k_block_q8a (float d, int sum, 32 signed bytes: 10 words). */
#extension GL_GOOGLE_include_directive : require
#include "q4k_vk_common.glsl"

layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 1) readonly buffer Q4kX { uint xbits[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Q4kQ { uint qout[]; };

void main() {
    uint b = pc.base * 64u + gl_GlobalInvocationID.x;
    if (b >= pc.nblocks) return;
    uint amax = 0u; /* the bits of max |x|: positive floats order as their bits */
    for (uint i = 0u; i < 32u; i++) {
        uint a = xbits[32u * b + i] & 0x7fffffffu;
        if (a <= 0x7f800000u && a > amax) amax = a; /* NaN ignored */
    }
    uint d = 0u, id = 0u;
    if (amax == 0x7f800000u) {
        d = amax; /* inf / 127 = inf, 1 / inf = 0 */
    } else if (amax != 0u) {
        d = q4k_div_bits(amax, 0x42fe0000u); /* 127.0f */
        if (d != 0u) id = q4k_div_bits(0x3f800000u, d);
    }
    int sum = 0;
    uint words[8] = uint[8](0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    for (uint i = 0u; i < 32u; i++) {
        int q = q4k_quant_bits(xbits[32u * b + i], id);
        sum += q;
        words[i >> 2] |= (uint(q) & 0xffu) << (8u * (i & 3u));
    }
    qout[10u * b] = d;
    qout[10u * b + 1u] = uint(sum);
    for (uint k = 0u; k < 8u; k++) qout[10u * b + 2u + k] = words[k];
}
