/* q4k_vk_common.glsl - what every Vulkan kernel of q4k shares: the bindings,
   the push constants, reading ggml blocks (kernels_src/q4k_common.h has the
   layouts) and conversions done on integer bits, so that no result depends
   on how a driver rounds a division or whether it flushes subnormals.

   The backend splices this file in place of the #include line of each
   kernel and puts its feature switches after #version:
      Q4K_SUBGROUP   1: reductions with subgroupAdd (else shared memory)
      Q4K_STORAGE8   1: weight bytes loaded through a uint8_t view
      Q4K_STORAGE16  1: weight half-words loaded through a uint16_t view
      Q4K_FP16       1: fp16 scales converted by float16_t (needs Q4K_STORAGE16)
   Each one is optional: 0 takes the 32-bit-word path, which every device has. */
#ifndef Q4K_SUBGROUP
#define Q4K_SUBGROUP 0
#endif
#ifndef Q4K_STORAGE8
#define Q4K_STORAGE8 0
#endif
#ifndef Q4K_STORAGE16
#define Q4K_STORAGE16 0
#endif
#ifndef Q4K_FP16
#define Q4K_FP16 0
#endif

#if Q4K_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
#if Q4K_STORAGE8
#extension GL_EXT_shader_8bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#endif
#if Q4K_STORAGE16
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#endif
#if Q4K_FP16
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif

/* one push-constant block for every kernel: one pipeline layout (128 bytes,
   the least maxPushConstantsSize a device may have) */
layout(push_constant) uniform Q4kPush {
    uint rows;     /* matmul: weight rows in this binding; ops: rows of the part bound */
    uint cols;     /* values per weight row / activation column */
    uint n;        /* activation columns / tokens */
    uint row_base; /* matmul: first row of this dispatch, within the binding */
    uint y_stride; /* floats between two columns of y */
    uint nblocks;  /* quantizer: blocks of 32 in x */
    uint base;     /* first workgroup (x) of this dispatch: a dispatch is split
                      under maxComputeWorkGroupCount */
    uint flags;    /* Q4K_F_* */
    uint u[16];    /* each kernel's parameters (named there) */
    float f[8];
} pc;

/* flags: the gate's faults that live in kernels, and variants */
#define Q4K_F_GQA 1u        /* attention: query head h reads KV head h % n_head_kv */
#define Q4K_F_F16_ACC 2u    /* rmsnorm: the sum of squares in an fp16 accumulator */
#define Q4K_F_Q4K_SCALES 4u /* Q4_K: each sub-block's 6-bit scale and min swapped */
#define Q4K_F_KV_F16 8u     /* the KV cache holds f16 (else f32) */
#define Q4K_F_NEOX 16u      /* rope: pairs (i, i + n_rot/2), else (2i, 2i + 1) */
#define Q4K_F_DEV 32u       /* scale: the factor is read from the params buffer */

/* binding 0: weights; 1: activations in; 2: output */
layout(std430, set = 0, binding = 0) readonly buffer Q4kW32 { uint w32[]; };
#if Q4K_STORAGE8
layout(std430, set = 0, binding = 0) readonly buffer Q4kW8 { uint8_t w8[]; };
#endif
#if Q4K_STORAGE16
layout(std430, set = 0, binding = 0) readonly buffer Q4kW16 { uint16_t w16[]; };
#endif

/* the byte at offset off of the weight binding */
uint rd8(uint off) {
#if Q4K_STORAGE8
    return uint(w8[off]);
#else
    return (w32[off >> 2] >> ((off & 3u) * 8u)) & 0xffu;
#endif
}

/* the little-endian half-word at an even offset */
uint rd16(uint off) {
#if Q4K_STORAGE16
    return uint(w16[off >> 1]);
#else
    return (w32[off >> 2] >> ((off & 2u) * 8u)) & 0xffffu;
#endif
}

/* four bytes at an even offset (ggml blocks are 2-byte aligned) */
uint rd32(uint off) {
#if Q4K_STORAGE8
    return rd8(off) | (rd8(off + 1u) << 8) | (rd8(off + 2u) << 16) | (rd8(off + 3u) << 24);
#else
    if ((off & 3u) == 0u) return w32[off >> 2];
    return rd16(off) | (rd16(off + 2u) << 16);
#endif
}

/* exact fp16 -> fp32, subnormal halves included */
float h2f(uint h) {
#if Q4K_FP16
    return float(unpackFloat2x16(h).x);
#else
    uint s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0u) {
        if (m == 0u) return uintBitsToFloat(s);
        int p = findMSB(m); /* value m * 2^-24 */
        return uintBitsToFloat(s | (uint(p + 103) << 23) | ((m << uint(23 - p)) & 0x7fffffu));
    }
    if (e == 31u) return uintBitsToFloat(s | 0x7f800000u | (m << 13));
    return uintBitsToFloat(s | ((e + 112u) << 23) | (m << 13));
#endif
}

/* signed byte k (0..3) of a word */
int sbyte(uint w, uint k) { return bitfieldExtract(int(w), int(8u * k), 8); }

/* ---- the 8-bit activation quantizer, on integer bits --------------------

   q4k_quantize_act_q8 (q4k.h) computes, per block of 32, in IEEE single
   precision: d = amax / 127, id = 1 / d, q = clamp(roundeven(x * id)).
   GLSL's division may be 2.5 ulp off and a driver may flush subnormals, so
   the two divisions and the product are done here on the bits, with the
   rounding of IEEE (nearest, ties to even), subnormals included. */

/* normalise a positive finite nonzero float's bits: value = m * 2^(e - 150), m in [2^23, 2^24) */
void q4k_unpack(uint a, out uint m, out int e) {
    e = int(a >> 23);
    m = a & 0x7fffffu;
    if (e == 0) {
        int p = findMSB(m);
        m <<= uint(23 - p);
        e = p - 22;
    } else {
        m |= 0x800000u;
    }
}

/* a / b for positive finite nonzero a, b: the bits of the correctly rounded quotient */
uint q4k_div_bits(uint a, uint b) {
    uint ma, mb;
    int ea, eb;
    q4k_unpack(a, ma, ea);
    q4k_unpack(b, mb, eb);
    int e = ea - eb + 127; /* biased exponent of the quotient once ma / mb is in [1, 2) */
    if (ma < mb) {
        ma <<= 1;
        e -= 1;
    }
    uint q = 0u, r = ma; /* q = floor(ma / mb * 2^24): 25 bits, the last one the guard */
    for (int i = 0; i < 25; i++) {
        q <<= 1;
        if (r >= mb) {
            r -= mb;
            q |= 1u;
        }
        r <<= 1;
    }
    bool sticky = r != 0u;
    uint s = e >= 1 ? 1u : uint(min(2 - e, 26)); /* subnormal results lose more bits */
    uint m = q >> s;
    bool guard = ((q >> (s - 1u)) & 1u) != 0u;
    sticky = sticky || (q & ((1u << (s - 1u)) - 1u)) != 0u;
    if (guard && (sticky || (m & 1u) != 0u)) m += 1u;
    if (e < 1) return m; /* a rounding up to 2^23 is the smallest normal's bits */
    if (e >= 255) return 0x7f800000u;
    uint bits = (uint(e - 1) << 23) + m; /* m may have rounded up to 2^24: the next binade */
    return bits >= 0x7f800000u ? 0x7f800000u : bits;
}

/* clamp(roundeven(fl(x * id)), -127, 127), NaN products 0, for id >= 0 (bits) */
int q4k_quant_bits(uint x, uint id) {
    uint ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0;           /* NaN */
    if (ax == 0u || id == 0u) return 0;       /* 0, or inf * 0 = NaN */
    int sg = (x >> 31) != 0u ? -1 : 1;
    if (ax == 0x7f800000u || id == 0x7f800000u) return 127 * sg;
    uint mx, mi, hi, lo, m, g, st;
    int ex, ei, e;
    q4k_unpack(ax, mx, ex);
    q4k_unpack(id, mi, ei);
    umulExtended(mx, mi, hi, lo); /* the exact product, < 2^48 */
    if ((hi >> 15) != 0u) {
        m = (hi << 8) | (lo >> 24);
        g = (lo >> 23) & 1u;
        st = lo & 0x7fffffu;
        e = ex + ei - 276; /* value = m * 2^e, m has 24 bits */
    } else {
        m = (hi << 9) | (lo >> 23);
        g = (lo >> 22) & 1u;
        st = lo & 0x3fffffu;
        e = ex + ei - 277;
    }
    if (e + 23 < -126) return 0; /* a subnormal product rounds to 0 */
    if (g != 0u && (st != 0u || (m & 1u) != 0u)) m += 1u; /* fl(x * id) */
    if (e >= 0) return 127 * sg;
    uint sh = uint(-e);
    if (sh > 25u) return 0;
    uint ip = m >> sh, fr = m & ((1u << sh) - 1u), hf = 1u << (sh - 1u);
    if (fr > hf || (fr == hf && (ip & 1u) != 0u)) ip += 1u;
    return sg * int(min(ip, 127u));
}

/* f32 -> f16 bits, round to nearest even, subnormals, overflow to inf and
   NaN as q4k_fp32_to_fp16 (q4k.h) does: packHalf2x16's rounding is the
   driver's choice, so this works on the bits */
uint q4k_f2h(float v) {
    uint x = floatBitsToUint(v), sg = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sg | 0x7e00u | ((a >> 13) & 0x3ffu);
    if (a >= 0x477ff000u) return sg | 0x7c00u;
    if (a >= 0x38800000u) return sg | (((a + 0xfffu + ((a >> 13) & 1u)) - 0x38000000u) >> 13);
    if (a < 0x33000000u) return sg;
    uint m = (a & 0x7fffffu) | 0x800000u, sh = 126u - (a >> 23); /* 14..24 */
    uint r = m >> sh, rem = m & ((1u << sh) - 1u), hf = 1u << (sh - 1u);
    if (rem > hf || (rem == hf && (r & 1u) != 0u)) r += 1u;
    return sg | r;
}


/* ---- workgroup reductions -----------------------------------------------

   A kernel that defines Q4K_REDUCE_WG (its workgroup size, a power of two)
   before the #include gets q4k_wg_sum and q4k_wg_max: every invocation of
   the workgroup calls them, in uniform control flow, and each gets the
   result. With Q4K_SUBGROUP the subgroups reduce first (subgroupAdd /
   subgroupMax), else a tree in shared memory; the sums' order differs. */
#ifdef Q4K_REDUCE_WG
shared float q4k_red[Q4K_REDUCE_WG];

float q4k_wg_sum(float v) {
#if Q4K_SUBGROUP
    float s = subgroupAdd(v);
    if (subgroupElect()) q4k_red[gl_SubgroupID] = s;
    barrier();
    float t = 0.0;
    for (uint i = 0u; i < gl_NumSubgroups; i++) t += q4k_red[i];
#else
    uint tid = gl_LocalInvocationIndex;
    q4k_red[tid] = v;
    barrier();
    for (uint h = Q4K_REDUCE_WG / 2u; h > 0u; h >>= 1) {
        if (tid < h) q4k_red[tid] += q4k_red[tid + h];
        barrier();
    }
    float t = q4k_red[0];
#endif
    barrier(); /* q4k_red is free for the next call */
    return t;
}

float q4k_wg_max(float v) {
#if Q4K_SUBGROUP
    float s = subgroupMax(v);
    if (subgroupElect()) q4k_red[gl_SubgroupID] = s;
    barrier();
    float t = q4k_red[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++) t = max(t, q4k_red[i]);
#else
    uint tid = gl_LocalInvocationIndex;
    q4k_red[tid] = v;
    barrier();
    for (uint h = Q4K_REDUCE_WG / 2u; h > 0u; h >>= 1) {
        if (tid < h) q4k_red[tid] = max(q4k_red[tid], q4k_red[tid + h]);
        barrier();
    }
    float t = q4k_red[0];
#endif
    barrier();
    return t;
}
#endif
