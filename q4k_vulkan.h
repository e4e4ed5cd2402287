/* q4k_vulkan.h - the Vulkan backend of q4k: GGUF k-quant kernels on any Vulkan GPU.

   Include q4k.h first, or let this header include it. With
      #define Q4K_IMPLEMENTATION        (or Q4K_VULKAN_IMPLEMENTATION)
   in one file, the implementation is compiled there.

   No Vulkan SDK is needed: the Vulkan headers (Debian: libvulkan-dev) are
   used with VK_NO_PROTOTYPES, the loader (libvulkan.so.1, then
   libvulkan.so, or the path in Q4K_LIBVULKAN) is opened with dlopen and
   every other function comes from vkGetInstanceProcAddr/vkGetDeviceProcAddr.
   The kernels (GLSL, kernels_src/ *.comp, embedded here by `make embed`)
   are compiled at run time by glslang, linked statically through its C
   interface when Q4K_VULKAN_GLSLANG is defined:
      cc -DQ4K_VULKAN_GLSLANG app.c -lglslang -lSPIRV -lMachineIndependent \
         -lOSDependent -lGenericCodeGen -lOGLCompiler \
         -lglslang-default-resource-limits -lSPIRV-Tools-opt -lSPIRV-Tools \
         -lstdc++ -lm -lpthread -ldl
   (Debian 12: apt-get install glslang-dev). Without it everything builds,
   devices are listed, and the backend says it was built without a shader
   compiler. SPIR-V is cached on disk, keyed by the source, the compiler
   version and the driver.

   Status: kernels for matrix products of every weight type (F32, F16, BF16,
   Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K) in both arithmetic modes, the 8-bit
   activation quantizer (bit for bit the CPU's) and the forward pass's other
   ops (embedding rows, RMSNorm, RoPE, the KV store, GQA attention, SwiGLU,
   adds, argmax), with the op entry points of q4k_backend (embedding,
   rmsnorm, rope, attention, quantize_act); the whole forward pass on the
   device (q4k_session_create): weights uploaded once per model in their
   GGUF blocks and shared by its sessions, a KV cache of the session's type
   (f16 or f32), every binding within the device's limits (tensors and
   caches split by rows), a one-token step recorded once and replayed, the
   trace and every gate fault of a -DQ4K_FAULTS build.

   Usage:
      q4k_vk_backend_desc d = {0};     (all defaults: the first discrete GPU)
      q4k_backend *b; q4k_error err;
      d.allow_cpu = 1;                 (lavapipe too)
      if (q4k_vk_backend_create(&d, &b, &err) != Q4K_OK) {
          fprintf(stderr, "%s\n", err.msg); return 1; }
      b->matmul(b, Q4K_ACT_Q8, Q4K_TYPE_Q4_K, w, rows, cols, x, n, y, &err);
      q4k_backend_destroy(b);
      (or a whole model: q4k_session_create(b, model, &sd, &s, &err), then
       q4k_session_eval as on every backend)

   Config macros:
      Q4K_VULKAN_IMPLEMENTATION  compile this backend's implementation only
      Q4K_VULKAN_GLSLANG         link glslang (the shader compiler); without it
                                 the backend cannot start

   Environment:
      Q4K_LIBVULKAN=PATH         the Vulkan loader to open
      Q4K_VK_LIMITS=range=1M,alloc=4M
                                 force smaller storage-buffer-range / allocation
                                 limits than the device's (tests split tensors)
      Q4K_VK_DISABLE=subgroup,storage8,storage16,fp16
                                 do not use these optional device features
      Q4K_CACHE_DIR=DIR          where SPIR-V is cached (default
                                 $XDG_CACHE_HOME/q4k or ~/.cache/q4k)
      Q4K_VK_KERNELS_DIR=DIR     read the kernels from DIR (a kernels_src/
                                 being edited) instead of the embedded copies

   Errors: a missing loader, shader compiler or device, or a device without
   what the kernels need, is Q4K_ERR_BACKEND_UNAVAILABLE with the reason; a
   shader that does not compile is Q4K_ERR_GPU with glslang's first message
   on one line, naming the kernels_src/ file and line. Threads: a backend may
   be shared by threads (q4k.h "Threads": each call holds the backend's lock,
   which also guards the queue); a session is used by one thread at a time.
   Test builds with -DQ4K_VK_TEST_FAULT also read $Q4K_VK_TEST_FAULT_EVAL=N
   (eval N loses the device) and $Q4K_VK_TEST_BREAK=FILE:LINE (that line of
   an embedded kernel file replaced by a syntax error).
*/
#ifndef Q4K_VULKAN_H
#define Q4K_VULKAN_H
#include "q4k.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Optional device features the kernels use when present (each has a
   fallback that every device runs). */
typedef enum q4k_vk_feature {
    Q4K_VK_SUBGROUP = 1,  /* subgroup arithmetic for reductions */
    Q4K_VK_STORAGE8 = 2,  /* 8-bit storage-buffer loads */
    Q4K_VK_STORAGE16 = 4, /* 16-bit storage-buffer loads */
    Q4K_VK_FP16 = 8       /* fp16 arithmetic (scale conversion) */
} q4k_vk_feature;

/* One Vulkan device as the backend sees it. */
typedef struct q4k_vk_device_info {
    int index;                 /* in the loader's order; --device N */
    char name[256];
    const char *type;          /* "discrete", "integrated", "virtual", "cpu", "other" */
    uint32_t api_version;      /* VK_MAKE_API_VERSION packing */
    uint32_t vendor_id, device_id, driver_version;
    char driver[256];          /* driver name and info when the device gives them */
    uint64_t device_local_bytes;
    uint64_t max_storage_buffer_range, max_memory_allocation_size, max_buffer_size;
    uint64_t min_storage_buffer_offset_alignment;
    uint32_t max_compute_shared_memory_size, max_compute_work_group_count[3];
    uint32_t subgroup_size;
    unsigned features;         /* q4k_vk_feature bits the device has */
    int usable;                /* the kernels can run on it */
    char reject[256];          /* why not, when !usable */
} q4k_vk_device_info;

/* Every Vulkan device: up to max entries in out (may be NULL with max 0),
   the number of devices in *count. Fails (Q4K_ERR_BACKEND_UNAVAILABLE) only
   when the loader or an instance is missing; a machine without devices
   gives Q4K_OK and 0. */
Q4K_API q4k_result q4k_vk_list_devices(q4k_vk_device_info *out, int max, int *count, q4k_error *err);
/* "subgroup storage8 ..." for a set of q4k_vk_feature bits ("none" when empty) */
Q4K_API const char *q4k_vk_feature_names(unsigned features, char *buf, size_t n);

typedef struct q4k_vk_backend_desc {
    /* NULL or "": the first discrete GPU, then integrated, then virtual; a
       CPU-type device (lavapipe) only with allow_cpu. A number: the device
       of that index; else a case-insensitive part of its name. A named
       device may be a CPU-type one. */
    const char *device;
    int allow_cpu;
    /* 0: the device's limits; smaller values force tensors to be split
       (Q4K_VK_LIMITS sets them too; the smaller wins) */
    uint64_t max_range, max_alloc;
    unsigned disable;      /* q4k_vk_feature bits not to use (or Q4K_VK_DISABLE) */
    const char *cache_dir; /* NULL: the default; "": no cache */
    q4k_log_fn log;
    void *log_user;
} q4k_vk_backend_desc;

/* The Vulkan backend on the chosen device: its op entry points run the
   kernels, its sessions the whole forward pass. */
Q4K_API q4k_result q4k_vk_backend_create(const q4k_vk_backend_desc *d, q4k_backend **out, q4k_error *err);

/* What a Vulkan backend runs with, and what its last calls did. */
typedef struct q4k_vk_backend_info {
    q4k_vk_device_info device;
    unsigned features;           /* the features its kernels use */
    uint64_t range, alloc;       /* the limits it holds itself to */
    int64_t weight_bindings;     /* last matmul: storage-buffer bindings of the weights */
    int64_t allocations;         /* last matmul: device memory allocations */
    int64_t dispatches;          /* last matmul or quantize: compute dispatches */
    int64_t shaders_compiled;    /* by glslang, since creation */
    int64_t shaders_from_cache;  /* SPIR-V read from the disk cache */
} q4k_vk_backend_info;
/* Q4K_ERR_INVALID_ARG when b is not a Vulkan backend */
Q4K_API q4k_result q4k_vk_backend_info_get(q4k_backend *b, q4k_vk_backend_info *out);

/* The 8-bit activation quantizer on the device: out gets n/32 blocks, bit
   for bit those of q4k_quantize_act_q8 (n a multiple of 32). */
Q4K_API q4k_result q4k_vk_quantize_act(q4k_backend *b, const float *x, int64_t n, q4k_block_q8a *out,
                                       q4k_error *err);

/* Parse "range=1M,alloc=4M" (suffixes K, M, G: powers of 1024); a field
   left out stays 0. Q4K_ERR_INVALID_ARG names the bad field. */
Q4K_API q4k_result q4k_vk_parse_limits(const char *s, uint64_t *range, uint64_t *alloc, q4k_error *err);

/* Q4K_OK when the backend can start on this machine (a CPU-type device
   counts); err->msg says on which device, or why not. */
Q4K_API q4k_result q4k_vk_probe(q4k_error *err);

#ifdef __cplusplus
}
#endif
#endif /* Q4K_VULKAN_H */

#if (defined(Q4K_IMPLEMENTATION) || defined(Q4K_VULKAN_IMPLEMENTATION)) && !defined(Q4K_VULKAN_IMPLEMENTED)
#define Q4K_VULKAN_IMPLEMENTED

/* Without the Vulkan headers (Debian's libvulkan-dev) the backend still
   builds, and says at run time why it cannot start. */
#if !defined(Q4K_VULKAN_NO_HEADERS) && defined(__has_include)
#if !__has_include(<vulkan/vulkan.h>)
#define Q4K_VULKAN_NO_HEADERS
#endif
#endif

#ifdef Q4K_VULKAN_NO_HEADERS
#include <stdio.h>
#ifdef __cplusplus
extern "C" {
#endif
static q4k_result q4k__vk_no_headers(q4k_error *err) {
    if (err) {
        err->code = Q4K_ERR_BACKEND_UNAVAILABLE;
        snprintf(err->msg, sizeof err->msg, "vulkan: built without the Vulkan headers (Debian's libvulkan-dev)");
    }
    return Q4K_ERR_BACKEND_UNAVAILABLE;
}
Q4K_API q4k_result q4k_vk_list_devices(q4k_vk_device_info *out, int max, int *count, q4k_error *err) {
    (void)out, (void)max;
    if (count) *count = 0;
    return q4k__vk_no_headers(err);
}
Q4K_API const char *q4k_vk_feature_names(unsigned features, char *buf, size_t n) {
    (void)features;
    if (buf && n) buf[0] = 0;
    return buf;
}
Q4K_API q4k_result q4k_vk_backend_create(const q4k_vk_backend_desc *d, q4k_backend **out, q4k_error *err) {
    (void)d;
    if (out) *out = NULL;
    return q4k__vk_no_headers(err);
}
Q4K_API q4k_result q4k_vk_backend_info_get(q4k_backend *b, q4k_vk_backend_info *out) {
    (void)b, (void)out;
    return Q4K_ERR_BACKEND_UNAVAILABLE;
}
Q4K_API q4k_result q4k_vk_quantize_act(q4k_backend *b, const float *x, int64_t n, q4k_block_q8a *out, q4k_error *err) {
    (void)b, (void)x, (void)n, (void)out;
    return q4k__vk_no_headers(err);
}
Q4K_API q4k_result q4k_vk_parse_limits(const char *s, uint64_t *range, uint64_t *alloc, q4k_error *err) {
    (void)s, (void)range, (void)alloc;
    return q4k__vk_no_headers(err);
}
Q4K_API q4k_result q4k_vk_probe(q4k_error *err) { return q4k__vk_no_headers(err); }
#ifdef __cplusplus
}
#endif
#else /* the Vulkan headers are here */

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>
#include <stdlib.h>
#include <unistd.h>
#if !defined(Q4K_MALLOC) /* compiled without q4k.h's implementation: its default allocator */
#define Q4K_MALLOC(n) malloc(n)
#define Q4K_REALLOC(p, n) realloc(p, n)
#define Q4K_FREE(p) free(p)
#endif
#ifndef Q4K__STR
#define Q4K__STR2(x) #x
#define Q4K__STR(x) Q4K__STR2(x)
#endif
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <errno.h>
#include <sys/stat.h>
#ifdef Q4K_VULKAN_GLSLANG
#include <glslang/Include/glslang_c_interface.h>
#include <glslang/Public/resource_limits_c.h>
#include <glslang/build_info.h>
#endif

#if defined(__GNUC__) && !defined(Q4K__MAYBE_UNUSED)
#define Q4K__MAYBE_UNUSED __attribute__((unused))
#elif !defined(Q4K__MAYBE_UNUSED)
#define Q4K__MAYBE_UNUSED
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* >>vk-kernels (kernels_src/, copied by `make embed`) */
/* Q4K_EMBED_BEGIN(kernels_src/q4k_vk_common.glsl q4k__vk_src_common) */
static const char *const q4k__vk_src_common[] = {
    "/* q4k_vk_common.glsl - what every Vulkan kernel of q4k shares: the bindings,\n",
    "   the push constants, reading ggml blocks (kernels_src/q4k_common.h has the\n",
    "   layouts) and conversions done on integer bits, so that no result depends\n",
    "   on how a driver rounds a division or whether it flushes subnormals.\n",
    "\n",
    "   The backend splices this file in place of the #include line of each\n",
    "   kernel and puts its feature switches after #version:\n",
    "      Q4K_SUBGROUP   1: reductions with subgroupAdd (else shared memory)\n",
    "      Q4K_STORAGE8   1: weight bytes loaded through a uint8_t view\n",
    "      Q4K_STORAGE16  1: weight half-words loaded through a uint16_t view\n",
    "      Q4K_FP16       1: fp16 scales converted by float16_t (needs Q4K_STORAGE16)\n",
    "   Each one is optional: 0 takes the 32-bit-word path, which every device has. */\n",
    "#ifndef Q4K_SUBGROUP\n",
    "#define Q4K_SUBGROUP 0\n",
    "#endif\n",
    "#ifndef Q4K_STORAGE8\n",
    "#define Q4K_STORAGE8 0\n",
    "#endif\n",
    "#ifndef Q4K_STORAGE16\n",
    "#define Q4K_STORAGE16 0\n",
    "#endif\n",
    "#ifndef Q4K_FP16\n",
    "#define Q4K_FP16 0\n",
    "#endif\n",
    "\n",
    "#if Q4K_SUBGROUP\n",
    "#extension GL_KHR_shader_subgroup_basic : require\n",
    "#extension GL_KHR_shader_subgroup_arithmetic : require\n",
    "#endif\n",
    "#if Q4K_STORAGE8\n",
    "#extension GL_EXT_shader_8bit_storage : require\n",
    "#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require\n",
    "#endif\n",
    "#if Q4K_STORAGE16\n",
    "#extension GL_EXT_shader_16bit_storage : require\n",
    "#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require\n",
    "#endif\n",
    "#if Q4K_FP16\n",
    "#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require\n",
    "#endif\n",
    "\n",
    "/* one push-constant block for every kernel: one pipeline layout (128 bytes,\n",
    "   the least maxPushConstantsSize a device may have) */\n",
    "layout(push_constant) uniform Q4kPush {\n",
    "    uint rows;     /* matmul: weight rows in this binding; ops: rows of the part bound */\n",
    "    uint cols;     /* values per weight row / activation column */\n",
    "    uint n;        /* activation columns / tokens */\n",
    "    uint row_base; /* matmul: first row of this dispatch, within the binding */\n",
    "    uint y_stride; /* floats between two columns of y */\n",
    "    uint nblocks;  /* quantizer: blocks of 32 in x */\n",
    "    uint base;     /* first workgroup (x) of this dispatch: a dispatch is split\n",
    "                      under maxComputeWorkGroupCount */\n",
    "    uint flags;    /* Q4K_F_* */\n",
    "    uint u[16];    /* each kernel's parameters (named there) */\n",
    "    float f[8];\n",
    "} pc;\n",
    "\n",
    "/* flags: the gate's faults that live in kernels, and variants */\n",
    "#define Q4K_F_GQA 1u        /* attention: query head h reads KV head h % n_head_kv */\n",
    "#define Q4K_F_F16_ACC 2u    /* rmsnorm: the sum of squares in an fp16 accumulator */\n",
    "#define Q4K_F_Q4K_SCALES 4u /* Q4_K: each sub-block's 6-bit scale and min swapped */\n",
    "#define Q4K_F_KV_F16 8u     /* the KV cache holds f16 (else f32) */\n",
    "#define Q4K_F_NEOX 16u      /* rope: pairs (i, i + n_rot/2), else (2i, 2i + 1) */\n",
    "#define Q4K_F_DEV 32u       /* scale: the factor is read from the params buffer */\n",
    "\n",
    "/* binding 0: weights; 1: activations in; 2: output */\n",
    "layout(std430, set = 0, binding = 0) readonly buffer Q4kW32 { uint w32[]; };\n",
    "#if Q4K_STORAGE8\n",
    "layout(std430, set = 0, binding = 0) readonly buffer Q4kW8 { uint8_t w8[]; };\n",
    "#endif\n",
    "#if Q4K_STORAGE16\n",
    "layout(std430, set = 0, binding = 0) readonly buffer Q4kW16 { uint16_t w16[]; };\n",
    "#endif\n",
    "\n",
    "/* the byte at offset off of the weight binding */\n",
    "uint rd8(uint off) {\n",
    "#if Q4K_STORAGE8\n",
    "    return uint(w8[off]);\n",
    "#else\n",
    "    return (w32[off >> 2] >> ((off & 3u) * 8u)) & 0xffu;\n",
    "#endif\n",
    "}\n",
    "\n",
    "/* the little-endian half-word at an even offset */\n",
    "uint rd16(uint off) {\n",
    "#if Q4K_STORAGE16\n",
    "    return uint(w16[off >> 1]);\n",
    "#else\n",
    "    return (w32[off >> 2] >> ((off & 2u) * 8u)) & 0xffffu;\n",
    "#endif\n",
    "}\n",
    "\n",
    "/* four bytes at an even offset (ggml blocks are 2-byte aligned) */\n",
    "uint rd32(uint off) {\n",
    "#if Q4K_STORAGE8\n",
    "    return rd8(off) | (rd8(off + 1u) << 8) | (rd8(off + 2u) << 16) | (rd8(off + 3u) << 24);\n",
    "#else\n",
    "    if ((off & 3u) == 0u) return w32[off >> 2];\n",
    "    return rd16(off) | (rd16(off + 2u) << 16);\n",
    "#endif\n",
    "}\n",
    "\n",
    "/* exact fp16 -> fp32, subnormal halves included */\n",
    "float h2f(uint h) {\n",
    "#if Q4K_FP16\n",
    "    return float(unpackFloat2x16(h).x);\n",
    "#else\n",
    "    uint s = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;\n",
    "    if (e == 0u) {\n",
    "        if (m == 0u) return uintBitsToFloat(s);\n",
    "        int p = findMSB(m); /* value m * 2^-24 */\n",
    "        return uintBitsToFloat(s | (uint(p + 103) << 23) | ((m << uint(23 - p)) & 0x7fffffu));\n",
    "    }\n",
    "    if (e == 31u) return uintBitsToFloat(s | 0x7f800000u | (m << 13));\n",
    "    return uintBitsToFloat(s | ((e + 112u) << 23) | (m << 13));\n",
    "#endif\n",
    "}\n",
    "\n",
    "/* signed byte k (0..3) of a word */\n",
    "int sbyte(uint w, uint k) { return bitfieldExtract(int(w), int(8u * k), 8); }\n",
    "\n",
    "/* ---- the 8-bit activation quantizer, on integer bits --------------------\n",
    "\n",
    "   q4k_quantize_act_q8 (q4k.h) computes, per block of 32, in IEEE single\n",
    "   precision: d = amax / 127, id = 1 / d, q = clamp(roundeven(x * id)).\n",
    "   GLSL's division may be 2.5 ulp off and a driver may flush subnormals, so\n",
    "   the two divisions and the product are done here on the bits, with the\n",
    "   rounding of IEEE (nearest, ties to even), subnormals included. */\n",
    "\n",
    "/* normalise a positive finite nonzero float's bits: value = m * 2^(e - 150), m in [2^23, 2^24) */\n",
    "void q4k_unpack(uint a, out uint m, out int e) {\n",
    "    e = int(a >> 23);\n",
    "    m = a & 0x7fffffu;\n",
    "    if (e == 0) {\n",
    "        int p = findMSB(m);\n",
    "        m <<= uint(23 - p);\n",
    "        e = p - 22;\n",
    "    } else {\n",
    "        m |= 0x800000u;\n",
    "    }\n",
    "}\n",
    "\n",
    "/* a / b for positive finite nonzero a, b: the bits of the correctly rounded quotient */\n",
    "uint q4k_div_bits(uint a, uint b) {\n",
    "    uint ma, mb;\n",
    "    int ea, eb;\n",
    "    q4k_unpack(a, ma, ea);\n",
    "    q4k_unpack(b, mb, eb);\n",
    "    int e = ea - eb + 127; /* biased exponent of the quotient once ma / mb is in [1, 2) */\n",
    "    if (ma < mb) {\n",
    "        ma <<= 1;\n",
    "        e -= 1;\n",
    "    }\n",
    "    uint q = 0u, r = ma; /* q = floor(ma / mb * 2^24): 25 bits, the last one the guard */\n",
    "    for (int i = 0; i < 25; i++) {\n",
    "        q <<= 1;\n",
    "        if (r >= mb) {\n",
    "            r -= mb;\n",
    "            q |= 1u;\n",
    "        }\n",
    "        r <<= 1;\n",
    "    }\n",
    "    bool sticky = r != 0u;\n",
    "    uint s = e >= 1 ? 1u : uint(min(2 - e, 26)); /* subnormal results lose more bits */\n",
    "    uint m = q >> s;\n",
    "    bool guard = ((q >> (s - 1u)) & 1u) != 0u;\n",
    "    sticky = sticky || (q & ((1u << (s - 1u)) - 1u)) != 0u;\n",
    "    if (guard && (sticky || (m & 1u) != 0u)) m += 1u;\n",
    "    if (e < 1) return m; /* a rounding up to 2^23 is the smallest normal's bits */\n",
    "    if (e >= 255) return 0x7f800000u;\n",
    "    uint bits = (uint(e - 1) << 23) + m; /* m may have rounded up to 2^24: the next binade */\n",
    "    return bits >= 0x7f800000u ? 0x7f800000u : bits;\n",
    "}\n",
    "\n",
    "/* clamp(roundeven(fl(x * id)), -127, 127), NaN products 0, for id >= 0 (bits) */\n",
    "int q4k_quant_bits(uint x, uint id) {\n",
    "    uint ax = x & 0x7fffffffu;\n",
    "    if (ax > 0x7f800000u) return 0;           /* NaN */\n",
    "    if (ax == 0u || id == 0u) return 0;       /* 0, or inf * 0 = NaN */\n",
    "    int sg = (x >> 31) != 0u ? -1 : 1;\n",
    "    if (ax == 0x7f800000u || id == 0x7f800000u) return 127 * sg;\n",
    "    uint mx, mi, hi, lo, m, g, st;\n",
    "    int ex, ei, e;\n",
    "    q4k_unpack(ax, mx, ex);\n",
    "    q4k_unpack(id, mi, ei);\n",
    "    umulExtended(mx, mi, hi, lo); /* the exact product, < 2^48 */\n",
    "    if ((hi >> 15) != 0u) {\n",
    "        m = (hi << 8) | (lo >> 24);\n",
    "        g = (lo >> 23) & 1u;\n",
    "        st = lo & 0x7fffffu;\n",
    "        e = ex + ei - 276; /* value = m * 2^e, m has 24 bits */\n",
    "    } else {\n",
    "        m = (hi << 9) | (lo >> 23);\n",
    "        g = (lo >> 22) & 1u;\n",
    "        st = lo & 0x3fffffu;\n",
    "        e = ex + ei - 277;\n",
    "    }\n",
    "    if (e + 23 < -126) return 0; /* a subnormal product rounds to 0 */\n",
    "    if (g != 0u && (st != 0u || (m & 1u) != 0u)) m += 1u; /* fl(x * id) */\n",
    "    if (e >= 0) return 127 * sg;\n",
    "    uint sh = uint(-e);\n",
    "    if (sh > 25u) return 0;\n",
    "    uint ip = m >> sh, fr = m & ((1u << sh) - 1u), hf = 1u << (sh - 1u);\n",
    "    if (fr > hf || (fr == hf && (ip & 1u) != 0u)) ip += 1u;\n",
    "    return sg * int(min(ip, 127u));\n",
    "}\n",
    "\n",
    "/* f32 -> f16 bits, round to nearest even, subnormals, overflow to inf and\n",
    "   NaN as q4k_fp32_to_fp16 (q4k.h) does: packHalf2x16's rounding is the\n",
    "   driver's choice, so this works on the bits */\n",
    "uint q4k_f2h(float v) {\n",
    "    uint x = floatBitsToUint(v), sg = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;\n",
    "    if (a > 0x7f800000u) return sg | 0x7e00u | ((a >> 13) & 0x3ffu);\n",
    "    if (a >= 0x477ff000u) return sg | 0x7c00u;\n",
    "    if (a >= 0x38800000u) return sg | (((a + 0xfffu + ((a >> 13) & 1u)) - 0x38000000u) >> 13);\n",
    "    if (a < 0x33000000u) return sg;\n",
    "    uint m = (a & 0x7fffffu) | 0x800000u, sh = 126u - (a >> 23); /* 14..24 */\n",
    "    uint r = m >> sh, rem = m & ((1u << sh) - 1u), hf = 1u << (sh - 1u);\n",
    "    if (rem > hf || (rem == hf && (r & 1u) != 0u)) r += 1u;\n",
    "    return sg | r;\n",
    "}\n",
    "\n",
    "\n",
    "/* ---- workgroup reductions -----------------------------------------------\n",
    "\n",
    "   A kernel that defines Q4K_REDUCE_WG (its workgroup size, a power of two)\n",
    "   before the #include gets q4k_wg_sum and q4k_wg_max: every invocation of\n",
    "   the workgroup calls them, in uniform control flow, and each gets the\n",
    "   result. With Q4K_SUBGROUP the subgroups reduce first (subgroupAdd /\n",
    "   subgroupMax), else a tree in shared memory; the sums' order differs. */\n",
    "#ifdef Q4K_REDUCE_WG\n",
    "shared float q4k_red[Q4K_REDUCE_WG];\n",
    "\n",
    "float q4k_wg_sum(float v) {\n",
    "#if Q4K_SUBGROUP\n",
    "    float s = subgroupAdd(v);\n",
    "    if (subgroupElect()) q4k_red[gl_SubgroupID] = s;\n",
    "    barrier();\n",
    "    float t = 0.0;\n",
    "    for (uint i = 0u; i < gl_NumSubgroups; i++) t += q4k_red[i];\n",
    "#else\n",
    "    uint tid = gl_LocalInvocationIndex;\n",
    "    q4k_red[tid] = v;\n",
    "    barrier();\n",
    "    for (uint h = Q4K_REDUCE_WG / 2u; h > 0u; h >>= 1) {\n",
    "        if (tid < h) q4k_red[tid] += q4k_red[tid + h];\n",
    "        barrier();\n",
    "    }\n",
    "    float t = q4k_red[0];\n",
    "#endif\n",
    "    barrier(); /* q4k_red is free for the next call */\n",
    "    return t;\n",
    "}\n",
    "\n",
    "float q4k_wg_max(float v) {\n",
    "#if Q4K_SUBGROUP\n",
    "    float s = subgroupMax(v);\n",
    "    if (subgroupElect()) q4k_red[gl_SubgroupID] = s;\n",
    "    barrier();\n",
    "    float t = q4k_red[0];\n",
    "    for (uint i = 1u; i < gl_NumSubgroups; i++) t = max(t, q4k_red[i]);\n",
    "#else\n",
    "    uint tid = gl_LocalInvocationIndex;\n",
    "    q4k_red[tid] = v;\n",
    "    barrier();\n",
    "    for (uint h = Q4K_REDUCE_WG / 2u; h > 0u; h >>= 1) {\n",
    "        if (tid < h) q4k_red[tid] = max(q4k_red[tid], q4k_red[tid + h]);\n",
    "        barrier();\n",
    "    }\n",
    "    float t = q4k_red[0];\n",
    "#endif\n",
    "    barrier();\n",
    "    return t;\n",
    "}\n",
    "#endif\n",
    0};
/* Q4K_EMBED_END */
/* Q4K_EMBED_BEGIN(kernels_src/matmul.comp q4k__vk_src_matmul) */
static const char *const q4k__vk_src_matmul[] = {
    "#version 450\n",
    "/* matmul.comp - y[j][r] = sum_c W[r][c] * x[j][c] for one weight type, the\n",
    "   arithmetic of the CPU's q4k_matmul (q4k.h, >>cpu) in the same mode:\n",
    "      WTYPE   the ggml type id of W (0 F32, 1 F16, 2 Q4_0, 6 Q5_0, 8 Q8_0,\n",
    "              12 Q4_K, 13 Q5_K, 14 Q6_K, 30 BF16)\n",
    "      ACT_Q8  1: x is q4k_block_q8a blocks (quantize_q8a.comp) and each 32\n",
    "              values of a quantized type give one exact integer dot;\n",
    "              0: x is floats, weights are decoded to the CPU's exact floats.\n",
    "   One workgroup computes one row for every column; each invocation takes\n",
    "   units of 32 values (a legacy block, a k-quant sub-block) and keeps NC\n",
    "   columns' partial sums, reduced across the workgroup at the end. Float\n",
    "   sums run in another order than the CPU's, nothing else differs.\n",
    "   Row r of this binding goes to y[j * y_stride + u[0] + r] (u[0]: the first\n",
    "   row of the binding in the whole matrix). flags Q4K_F_Q4K_SCALES: Q4_K's\n",
    "   scale and min trade places (the gate's fault of swapped Q4_K scales).\n",
    "\n",
    "   EMBED 1 builds the embedding kernel instead: out[j][0..cols) = row\n",
    "   prm[u[1] + j] of the table (binding 0 holds its rows [u[0], u[0] + rows),\n",
    "   an invocation per 32 values, workgroup y = j); the decoding is the float\n",
    "   mode's, the CPU's q4k_dequantize_row bit for bit. */\n",
    "#extension GL_GOOGLE_include_directive : require\n",
    "#include \"q4k_vk_common.glsl\"\n",
    "\n",
    "#ifndef WTYPE\n",
    "#define WTYPE 12\n",
    "#endif\n",
    "#ifndef ACT_Q8\n",
    "#define ACT_Q8 1\n",
    "#endif\n",
    "#ifndef EMBED\n",
    "#define EMBED 0\n",
    "#endif\n",
    "#define WG 64\n",
    "#define NC 8\n",
    "\n",
    "layout(local_size_x = WG) in;\n",
    "\n",
    "layout(std430, set = 0, binding = 1) readonly buffer Q4kXF { float xf[]; };\n",
    "layout(std430, set = 0, binding = 1) readonly buffer Q4kXQ { uint xq[]; };\n",
    "layout(std430, set = 0, binding = 2) writeonly buffer Q4kY { float y[]; };\n",
    "layout(std430, set = 0, binding = 3) readonly buffer Q4kPrm { uint prm[]; };\n",
    "\n",
    "shared float part[NC][WG]; /* partial sums of the reduction */\n",
    "\n",
    "#if WTYPE == 0\n",
    "#define ROW_BYTES(c) ((c) * 4u)\n",
    "#elif WTYPE == 1 || WTYPE == 30\n",
    "#define ROW_BYTES(c) ((c) * 2u)\n",
    "#elif WTYPE == 2\n",
    "#define ROW_BYTES(c) ((c) / 32u * 18u)\n",
    "#elif WTYPE == 6\n",
    "#define ROW_BYTES(c) ((c) / 32u * 22u)\n",
    "#elif WTYPE == 8\n",
    "#define ROW_BYTES(c) ((c) / 32u * 34u)\n",
    "#elif WTYPE == 12\n",
    "#define ROW_BYTES(c) ((c) / 256u * 144u)\n",
    "#elif WTYPE == 13\n",
    "#define ROW_BYTES(c) ((c) / 256u * 176u)\n",
    "#elif WTYPE == 14\n",
    "#define ROW_BYTES(c) ((c) / 256u * 210u)\n",
    "#else\n",
    "#error \"matmul.comp: WTYPE has no kernel\"\n",
    "#endif\n",
    "\n",
    "#define FLOAT_W (WTYPE == 0 || WTYPE == 1 || WTYPE == 30)\n",
    "#define K_QUANT (WTYPE == 12 || WTYPE == 13 || WTYPE == 14)\n",
    "\n",
    "/* the 6-bit scale and min of sub-block j of a Q4_K / Q5_K block at off\n",
    "   (bytes 4..15 of the block; see q4k__scale_min_k4 in q4k.h) */\n",
    "void scale_min_k4(uint off, uint j, out uint sc, out uint m) {\n",
    "    uint s = off + 4u;\n",
    "    if (j < 4u) {\n",
    "        sc = rd8(s + j) & 63u;\n",
    "        m = rd8(s + j + 4u) & 63u;\n",
    "    } else {\n",
    "        sc = (rd8(s + j + 4u) & 0xfu) | ((rd8(s + j - 4u) >> 6) << 4);\n",
    "        m = (rd8(s + j + 4u) >> 4) | ((rd8(s + j) >> 6) << 4);\n",
    "    }\n",
    "#if WTYPE == 12\n",
    "    if ((pc.flags & Q4K_F_Q4K_SCALES) != 0u) {\n",
    "        uint t = sc;\n",
    "        sc = m;\n",
    "        m = t;\n",
    "    }\n",
    "#endif\n",
    "}\n",
    "\n",
    "#if !FLOAT_W\n",
    "/* unit u (32 values) of the row at byte rb: its quants, and the floats that\n",
    "   scale them: w_i = a * q_i - b (legacy: b = 0; Q6_K: a per half, in a, b) */\n",
    "void unit_quants(uint rb, uint u, out int q[32], out float a, out float b, out uint sc0, out uint sc1) {\n",
    "#if WTYPE == 2 || WTYPE == 6 || WTYPE == 8\n",
    "    uint off = rb + u * (WTYPE == 2 ? 18u : WTYPE == 6 ? 22u : 34u);\n",
    "    a = h2f(rd16(off));\n",
    "    b = 0.0;\n",
    "    sc0 = 1u;\n",
    "    sc1 = 1u;\n",
    "#if WTYPE == 8\n",
    "    for (uint k = 0u; k < 8u; k++) {\n",
    "        uint w = rd32(off + 2u + 4u * k);\n",
    "        for (uint t = 0u; t < 4u; t++) q[4u * k + t] = sbyte(w, t);\n",
    "    }\n",
    "#else\n",
    "    uint qh = WTYPE == 6 ? rd32(off + 2u) : 0u;\n",
    "    uint qs = off + (WTYPE == 6 ? 6u : 2u);\n",
    "    for (uint k = 0u; k < 4u; k++) {\n",
    "        uint w = rd32(qs + 4u * k);\n",
    "        for (uint t = 0u; t < 4u; t++) {\n",
    "            uint i = 4u * k + t, v = (w >> (8u * t)) & 0xffu;\n",
    "#if WTYPE == 2\n",
    "            q[i] = int(v & 0xfu) - 8;\n",
    "            q[i + 16u] = int(v >> 4) - 8;\n",
    "#else\n",
    "            q[i] = int((v & 0xfu) | (((qh >> i) & 1u) << 4)) - 16;\n",
    "            q[i + 16u] = int((v >> 4) | (((qh >> (i + 16u)) & 1u) << 4)) - 16;\n",
    "#endif\n",
    "        }\n",
    "    }\n",
    "#endif\n",
    "#elif WTYPE == 12 || WTYPE == 13\n",
    "    uint sb = u >> 3, s = u & 7u;\n",
    "    uint off = rb + sb * (WTYPE == 12 ? 144u : 176u);\n",
    "    a = h2f(rd16(off));      /* d */\n",
    "    b = h2f(rd16(off + 2u)); /* dmin */\n",
    "    scale_min_k4(off, s, sc0, sc1);\n",
    "    uint qs = off + (WTYPE == 12 ? 16u : 48u) + 32u * (s >> 1), shift = 4u * (s & 1u);\n",
    "    for (uint k = 0u; k < 8u; k++) {\n",
    "        uint w = rd32(qs + 4u * k);\n",
    "#if WTYPE == 13\n",
    "        uint h = rd32(off + 16u + 4u * k);\n",
    "#endif\n",
    "        for (uint t = 0u; t < 4u; t++) {\n",
    "            uint v = (w >> (8u * t + shift)) & 0xfu;\n",
    "#if WTYPE == 13\n",
    "            v |= ((h >> (8u * t + s)) & 1u) << 4;\n",
    "#endif\n",
    "            q[4u * k + t] = int(v);\n",
    "        }\n",
    "    }\n",
    "#else /* Q6_K: unit u = 4h + g covers values 128h + 32g .. +31 */\n",
    "    uint sb = u >> 3, s = u & 7u, h = s >> 2, g = s & 3u;\n",
    "    uint off = rb + sb * 210u;\n",
    "    a = h2f(rd16(off + 208u));\n",
    "    b = 0.0;\n",
    "    uint ql = off + 64u * h + 32u * (g & 1u), qh = off + 128u + 32u * h, shift = 4u * (g >> 1);\n",
    "    sc0 = rd8(off + 192u + 8u * h + 2u * g);\n",
    "    sc1 = rd8(off + 193u + 8u * h + 2u * g);\n",
    "    for (uint k = 0u; k < 8u; k++) {\n",
    "        uint wl = rd32(ql + 4u * k), wh = rd32(qh + 4u * k);\n",
    "        for (uint t = 0u; t < 4u; t++) {\n",
    "            uint lo = (wl >> (8u * t + shift)) & 0xfu, hb = (wh >> (8u * t + 2u * g)) & 3u;\n",
    "            q[4u * k + t] = int(lo | (hb << 4)) - 32;\n",
    "        }\n",
    "    }\n",
    "#endif\n",
    "}\n",
    "#endif\n",
    "\n",
    "#if FLOAT_W || !ACT_Q8 || EMBED\n",
    "/* the cnt (32 but at the end of a float row) weights of unit u of the row at\n",
    "   byte rb, as the CPU decodes them (q4k_dequantize_row): every product is\n",
    "   exact in float, only the k-quants' subtraction of the min rounds */\n",
    "void unit_floats(uint rb, uint u, uint cnt, out float w[32]) {\n",
    "#if FLOAT_W\n",
    "    for (uint i = 0u; i < cnt; i++) {\n",
    "        uint e = 32u * u + i;\n",
    "#if WTYPE == 0\n",
    "        w[i] = uintBitsToFloat(w32[(rb >> 2) + e]);\n",
    "#elif WTYPE == 1\n",
    "        w[i] = h2f(rd16(rb + 2u * e));\n",
    "#else\n",
    "        w[i] = uintBitsToFloat(rd16(rb + 2u * e) << 16);\n",
    "#endif\n",
    "    }\n",
    "#else\n",
    "    int q[32];\n",
    "    float a, b;\n",
    "    uint sc0, sc1;\n",
    "    unit_quants(rb, u, q, a, b, sc0, sc1);\n",
    "#if WTYPE == 12 || WTYPE == 13\n",
    "    float d1 = a * float(sc0), m1 = b * float(sc1);\n",
    "    for (uint i = 0u; i < 32u; i++) w[i] = d1 * float(q[i]) - m1;\n",
    "#elif WTYPE == 14\n",
    "    float d0 = a * float(int(sc0 << 24) >> 24), dh = a * float(int(sc1 << 24) >> 24);\n",
    "    for (uint i = 0u; i < 32u; i++) w[i] = (i < 16u ? d0 : dh) * float(q[i]);\n",
    "#else\n",
    "    for (uint i = 0u; i < 32u; i++) w[i] = float(q[i]) * a;\n",
    "#endif\n",
    "#endif\n",
    "}\n",
    "#endif\n",
    "\n",
    "#if EMBED\n",
    "void main() {\n",
    "    uint j = gl_WorkGroupID.y, u = (pc.base + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;\n",
    "    if (j >= pc.n || u >= (pc.cols + 31u) / 32u) return;\n",
    "    uint tok = prm[pc.u[1] + j];\n",
    "    if (tok < pc.u[0] || tok - pc.u[0] >= pc.rows) return; /* another binding's row */\n",
    "    float w[32];\n",
    "    uint cnt = min(32u, pc.cols - 32u * u);\n",
    "    unit_floats((tok - pc.u[0]) * ROW_BYTES(pc.cols), u, cnt, w);\n",
    "    for (uint i = 0u; i < cnt; i++) y[j * pc.cols + 32u * u + i] = w[i];\n",
    "}\n",
    "#else\n",
    "void main() {\n",
    "    uint row = pc.row_base + gl_WorkGroupID.x;\n",
    "    uint tid = gl_LocalInvocationID.x;\n",
    "    uint rb = row * ROW_BYTES(pc.cols);\n",
    "    uint nunits = (pc.cols + 31u) / 32u;\n",
    "    bool live = row < pc.rows; /* every invocation reaches the barriers */\n",
    "\n",
    "    for (uint j0 = 0u; j0 < pc.n; j0 += NC) {\n",
    "        float acc[NC];\n",
    "        for (uint c = 0u; c < NC; c++) acc[c] = 0.0;\n",
    "        uint nc = min(uint(NC), pc.n - j0);\n",
    "        for (uint u = tid; live && u < nunits; u += WG) {\n",
    "#if FLOAT_W || !ACT_Q8\n",
    "            float w[32];\n",
    "            uint cnt = min(32u, pc.cols - 32u * u);\n",
    "            unit_floats(rb, u, cnt, w);\n",
    "            for (uint c = 0u; c < nc; c++) {\n",
    "                uint xo = (j0 + c) * pc.cols + 32u * u;\n",
    "                float s = 0.0;\n",
    "                for (uint i = 0u; i < cnt; i++) s += w[i] * xf[xo + i];\n",
    "                acc[c] += s;\n",
    "            }\n",
    "#else /* 8-bit activations against a quantized type */\n",
    "            int q[32];\n",
    "            float a, b;\n",
    "            uint sc0, sc1;\n",
    "            unit_quants(rb, u, q, a, b, sc0, sc1);\n",
    "            for (uint c = 0u; c < nc; c++) {\n",
    "                uint xo = 10u * ((j0 + c) * nunits + u);\n",
    "                float dx = uintBitsToFloat(xq[xo]);\n",
    "                int s0 = 0, s1 = 0;\n",
    "                for (uint k = 0u; k < 4u; k++) {\n",
    "                    uint x0 = xq[xo + 2u + k], x1 = xq[xo + 6u + k];\n",
    "                    for (uint t = 0u; t < 4u; t++) {\n",
    "                        s0 += q[4u * k + t] * sbyte(x0, t);\n",
    "                        s1 += q[16u + 4u * k + t] * sbyte(x1, t);\n",
    "                    }\n",
    "                }\n",
    "#if WTYPE == 12 || WTYPE == 13\n",
    "                float sx = float(int(xq[xo + 1u]));\n",
    "                acc[c] += a * (dx * float(int(sc0) * (s0 + s1))) - b * (float(sc1) * (dx * sx));\n",
    "#elif WTYPE == 14\n",
    "                acc[c] += a * (dx * float((int(sc0 << 24) >> 24) * s0 + (int(sc1 << 24) >> 24) * s1));\n",
    "#else\n",
    "                acc[c] += (a * dx) * float(s0 + s1);\n",
    "#endif\n",
    "            }\n",
    "#endif\n",
    "        }\n",
    "\n",
    "#if Q4K_SUBGROUP\n",
    "        for (uint c = 0u; c < nc; c++) { /* nc is uniform: N = 1 reduces one sum, not NC */\n",
    "            float s = subgroupAdd(acc[c]);\n",
    "            if (subgroupElect()) part[c][gl_SubgroupID] = s;\n",
    "        }\n",
    "        barrier();\n",
    "        if (tid < nc && live) {\n",
    "            float t = 0.0;\n",
    "            for (uint i = 0u; i < gl_NumSubgroups; i++) t += part[tid][i];\n",
    "            y[(j0 + tid) * pc.y_stride + pc.u[0] + row] = t;\n",
    "        }\n",
    "#else\n",
    "        for (uint c = 0u; c < nc; c++) part[c][tid] = acc[c];\n",
    "        barrier();\n",
    "        for (uint h = WG / 2u; h > 0u; h >>= 1) {\n",
    "            if (tid < h)\n",
    "                for (uint c = 0u; c < nc; c++) part[c][tid] += part[c][tid + h];\n",
    "            barrier();\n",
    "        }\n",
    "        if (tid < nc && live) y[(j0 + tid) * pc.y_stride + pc.u[0] + row] = part[tid][0];\n",
    "#endif\n",
    "        barrier();\n",
    "    }\n",
    "}\n",
    "#endif\n",
    0};
/* Q4K_EMBED_END */
/* Q4K_EMBED_BEGIN(kernels_src/quantize_q8a.comp q4k__vk_src_quantize) */
static const char *const q4k__vk_src_quantize[] = {
    "#version 450\n",
    "/* quantize_q8a.comp - the 8-bit activation quantizer, bit for bit the CPU's\n",
    "   q4k_quantize_act_q8: one invocation per block of 32 floats, writing one\n",
    "   q4k_block_q8a (float d, int sum, 32 signed bytes: 10 words). */\n",
    "#extension GL_GOOGLE_include_directive : require\n",
    "#include \"q4k_vk_common.glsl\"\n",
    "\n",
    "layout(local_size_x = 64) in;\n",
    "\n",
    "layout(std430, set = 0, binding = 1) readonly buffer Q4kX { uint xbits[]; };\n",
    "layout(std430, set = 0, binding = 2) writeonly buffer Q4kQ { uint qout[]; };\n",
    "\n",
    "void main() {\n",
    "    uint b = pc.base * 64u + gl_GlobalInvocationID.x;\n",
    "    if (b >= pc.nblocks) return;\n",
    "    uint amax = 0u; /* the bits of max |x|: positive floats order as their bits */\n",
    "    for (uint i = 0u; i < 32u; i++) {\n",
    "        uint a = xbits[32u * b + i] & 0x7fffffffu;\n",
    "        if (a <= 0x7f800000u && a > amax) amax = a; /* NaN ignored */\n",
    "    }\n",
    "    uint d = 0u, id = 0u;\n",
    "    if (amax == 0x7f800000u) {\n",
    "        d = amax; /* inf / 127 = inf, 1 / inf = 0 */\n",
    "    } else if (amax != 0u) {\n",
    "        d = q4k_div_bits(amax, 0x42fe0000u); /* 127.0f */\n",
    "        if (d != 0u) id = q4k_div_bits(0x3f800000u, d);\n",
    "    }\n",
    "    int sum = 0;\n",
    "    uint words[8] = uint[8](0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);\n",
    "    for (uint i = 0u; i < 32u; i++) {\n",
    "        int q = q4k_quant_bits(xbits[32u * b + i], id);\n",
    "        sum += q;\n",
    "        words[i >> 2] |= (uint(q) & 0xffu) << (8u * (i & 3u));\n",
    "    }\n",
    "    qout[10u * b] = d;\n",
    "    qout[10u * b + 1u] = uint(sum);\n",
    "    for (uint k = 0u; k < 8u; k++) qout[10u * b + 2u + k] = words[k];\n",
    "}\n",
    0};
/* Q4K_EMBED_END */
/* Q4K_EMBED_BEGIN(kernels_src/rmsnorm.comp q4k__vk_src_rmsnorm) */
static const char *const q4k__vk_src_rmsnorm[] = {
    "#version 450\n",
    "/* rmsnorm.comp - y[r] = x[r] * (1 / sqrt(mean(x[r]^2) + eps)) * w for rows\n",
    "   r < n of cols values, a workgroup per row (the CPU sums the squares in\n",
    "   double; here in float, in another order). flags Q4K_F_F16_ACC: the sum\n",
    "   of squares kept in an fp16 accumulator, one value after the other, as\n",
    "   the gate's fp16-accumulator fault does on the CPU.\n",
    "   binding 1: x, 2: y, 4: w (f32); f[0]: eps */\n",
    "#extension GL_GOOGLE_include_directive : require\n",
    "#define WG 256\n",
    "#define Q4K_REDUCE_WG WG\n",
    "#include \"q4k_vk_common.glsl\"\n",
    "\n",
    "layout(local_size_x = WG) in;\n",
    "\n",
    "layout(std430, set = 0, binding = 1) readonly buffer Q4kX { float x[]; };\n",
    "layout(std430, set = 0, binding = 2) writeonly buffer Q4kY { float y[]; };\n",
    "layout(std430, set = 0, binding = 4) readonly buffer Q4kW { float w[]; };\n",
    "\n",
    "void main() {\n",
    "    uint r = pc.base + gl_WorkGroupID.x, tid = gl_LocalInvocationID.x, d = pc.cols;\n",
    "    if (r >= pc.n) return; /* the whole workgroup: no barrier is skipped by half of it */\n",
    "    uint o = r * d;\n",
    "    float ss = 0.0;\n",
    "    if ((pc.flags & Q4K_F_F16_ACC) != 0u) {\n",
    "        if (tid == 0u)\n",
    "            for (uint i = 0u; i < d; i++) {\n",
    "                precise float t = ss + x[o + i] * x[o + i];\n",
    "                ss = h2f(q4k_f2h(t));\n",
    "            }\n",
    "    } else {\n",
    "        for (uint i = tid; i < d; i += WG) ss += x[o + i] * x[o + i];\n",
    "    }\n",
    "    float scale = 1.0 / sqrt(q4k_wg_sum(ss) / float(d) + pc.f[0]);\n",
    "    for (uint i = tid; i < d; i += WG) {\n",
    "        precise float v = x[o + i] * scale;\n",
    "        y[o + i] = v * w[i];\n",
    "    }\n",
    "}\n",
    0};
/* Q4K_EMBED_END */
/* Q4K_EMBED_BEGIN(kernels_src/ops.comp q4k__vk_src_ops) */
static const char *const q4k__vk_src_ops[] = {
    "#version 450\n",
    "/* ops.comp - the forward pass's element-wise operations, one kernel per OP,\n",
    "   each computing what q4k.h's CPU forward pass computes (>>model):\n",
    "      OP 1  add       x[i] += y[i % u[1]] for i < u[0]: a bias (period the\n",
    "                      row width) or the residual (period u[0])\n",
    "      OP 2  swiglu    x[i] = silu(x[i]) * y[i], silu(v) = v / (1 + e^-v)\n",
    "      OP 3  rope      rotate x [u[0] tokens][stride u[3]], u[1] heads of\n",
    "                      u[2] values, the first u[4] of each in pairs, by the\n",
    "                      cos/sin rows of the table part in binding 2 (rows\n",
    "                      u[6].. u[6] + rows, each u[4]/2 (cos, sin) pairs):\n",
    "                      token j at position prm[u[5]] + j\n",
    "      OP 4  kv_store  rows prm[u[5]] + j of the cache part in binding 2\n",
    "                      (rows u[6].. u[6] + rows of u[1] values, f16 with\n",
    "                      flags Q4K_F_KV_F16 else f32) = x[j] for j < u[0]\n",
    "      OP 5  perturb   x[i] *= 1 + f[0] * N(0,1) for i < u[0]; the normal\n",
    "                      draw from a counter-based hash of (seed u[2], u[3],\n",
    "                      prm[u[1]], i), so each position gets its own noise\n",
    "      OP 6  scale     x[i] *= f[0] (flags Q4K_F_DEV: the float in prm[u[1]])\n",
    "   binding 1: x (written), 2: y, or the table / cache part, 3: params (uint).\n",
    "   A kernel that works on a part of a split table or cache runs once per\n",
    "   part; the dispatch whose part holds a position does the work. */\n",
    "#extension GL_GOOGLE_include_directive : require\n",
    "#include \"q4k_vk_common.glsl\"\n",
    "\n",
    "#ifndef OP\n",
    "#define OP 1\n",
    "#endif\n",
    "\n",
    "layout(local_size_x = 64) in;\n",
    "\n",
    "layout(std430, set = 0, binding = 1) buffer Q4kX { float x[]; };\n",
    "layout(std430, set = 0, binding = 2) buffer Q4kB { uint b[]; };\n",
    "layout(std430, set = 0, binding = 3) readonly buffer Q4kPrm { uint prm[]; };\n",
    "\n",
    "/* a 64-bit mix (splitmix64's finaliser) on two 32-bit halves */\n",
    "uvec2 q4k_mix(uvec2 v) {\n",
    "    uint hi, lo, c;\n",
    "    /* v ^= v >> 30; v *= 0xbf58476d1ce4e5b9; v ^= v >> 27; v *= 0x94d049bb133111eb; v ^= v >> 31 */\n",
    "    v = uvec2(v.x ^ ((v.y << 2) | (v.x >> 30)), v.y ^ (v.y >> 30));\n",
    "    umulExtended(v.x, 0x1ce4e5b9u, hi, lo);\n",
    "    v = uvec2(lo, hi + v.x * 0xbf58476du + v.y * 0x1ce4e5b9u);\n",
    "    v = uvec2(v.x ^ ((v.y << 5) | (v.x >> 27)), v.y ^ (v.y >> 27));\n",
    "    umulExtended(v.x, 0x133111ebu, hi, lo);\n",
    "    v = uvec2(lo, hi + v.x * 0x94d049bbu + v.y * 0x133111ebu);\n",
    "    c = v.y;\n",
    "    return uvec2(v.x ^ ((v.y << 1) | (v.x >> 31)), c ^ (c >> 31));\n",
    "}\n",
    "\n",
    "void main() {\n",
    "    uint i = (pc.base + gl_WorkGroupID.x) * 64u + gl_LocalInvocationID.x;\n",
    "#if OP == 1\n",
    "    if (i < pc.u[0]) x[i] += uintBitsToFloat(b[i % pc.u[1]]);\n",
    "#elif OP == 2\n",
    "    if (i < pc.u[0]) {\n",
    "        float v = x[i];\n",
    "        x[i] = v / (1.0 + exp(-v)) * uintBitsToFloat(b[i]);\n",
    "    }\n",
    "#elif OP == 3\n",
    "    uint half_ = pc.u[4] / 2u, per_tok = pc.u[1] * half_;\n",
    "    if (i >= pc.u[0] * per_tok) return;\n",
    "    uint j = i / per_tok, h = i % per_tok / half_, k = i % half_;\n",
    "    uint p = prm[pc.u[5]] + j;\n",
    "    if (p < pc.u[6] || p - pc.u[6] >= pc.rows) return;\n",
    "    uint t = 2u * ((p - pc.u[6]) * half_ + k);\n",
    "    float c = uintBitsToFloat(b[t]), s = uintBitsToFloat(b[t + 1u]);\n",
    "    bool neox = (pc.flags & Q4K_F_NEOX) != 0u;\n",
    "    uint o = j * pc.u[3] + h * pc.u[2], i0 = o + (neox ? k : 2u * k), i1 = o + (neox ? k + half_ : 2u * k + 1u);\n",
    "    float x0 = x[i0], x1 = x[i1];\n",
    "    precise float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;\n",
    "    x[i0] = y0;\n",
    "    x[i1] = y1;\n",
    "#elif OP == 4\n",
    "    uint dim = pc.u[1];\n",
    "    bool f16 = (pc.flags & Q4K_F_KV_F16) != 0u;\n",
    "    uint per_tok = f16 ? dim / 2u : dim; /* f16: an invocation per pair, one word */\n",
    "    if (i >= pc.u[0] * per_tok) return;\n",
    "    uint j = i / per_tok, e = i % per_tok;\n",
    "    uint p = prm[pc.u[5]] + j;\n",
    "    if (p < pc.u[6] || p - pc.u[6] >= pc.rows) return;\n",
    "    if (f16)\n",
    "        b[(p - pc.u[6]) * per_tok + e] = q4k_f2h(x[j * dim + 2u * e]) | (q4k_f2h(x[j * dim + 2u * e + 1u]) << 16);\n",
    "    else\n",
    "        b[(p - pc.u[6]) * dim + e] = floatBitsToUint(x[j * dim + e]);\n",
    "#elif OP == 5\n",
    "    if (i >= pc.u[0]) return;\n",
    "    uvec2 r = q4k_mix(uvec2(pc.u[2] ^ i, pc.u[3] ^ (prm[pc.u[1]] * 0x9e3779b9u)));\n",
    "    r = q4k_mix(r + uvec2(0x7f4a7c15u, 0x9e3779b9u));\n",
    "    float u1 = (float(r.y >> 8) + 0.5) / 16777216.0, u2 = float(r.x >> 8) / 16777216.0;\n",
    "    x[i] *= 1.0 + pc.f[0] * sqrt(-2.0 * log(u1)) * cos(6.283185307 * u2);\n",
    "#elif OP == 6\n",
    "    if (i < pc.u[0]) x[i] *= (pc.flags & Q4K_F_DEV) != 0u ? uintBitsToFloat(prm[pc.u[1]]) : pc.f[0];\n",
    "#else\n",
    "#error \"ops.comp: unknown OP\"\n",
    "#endif\n",
    "}\n",
    0};
/* Q4K_EMBED_END */
/* Q4K_EMBED_BEGIN(kernels_src/attention.comp q4k__vk_src_attention) */
static const char *const q4k__vk_src_attention[] = {
    "#version 450\n",
    "/* attention.comp - causal GQA attention with f32 scores over a KV cache\n",
    "   that may be split by positions across several bindings (q4k.h's\n",
    "   q4k__attn_head: out = softmax(q.k / sqrt(hd)) v over positions 0..p).\n",
    "   PASS 1, per (tile of TILE positions of one cache part, head, token):\n",
    "      m = max score, s = sum e^(score - m), a[d] = sum e^(score - m) v[d]\n",
    "   into the scratch slot of the tile; PASS 2, per (head, token), combines\n",
    "   the slots: out = sum a_c e^(m_c - M) / sum s_c e^(m_c - M). Each dot runs\n",
    "   over d in order and each a[d] over positions in order, as the CPU does.\n",
    "   Token j (of this group, absolute u[7] + j) sits at position prm[u[3]] +\n",
    "   u[7] + j and attends to positions 0 ..= that.\n",
    "   binding 1: q [tokens][u[0] heads * u[2]] (PASS 2: out, same shape),\n",
    "   2: K part, 4: V part (rows u[4] .. u[4] + rows of u[1] * u[2] values,\n",
    "   f16 pairs in words with Q4K_F_KV_F16, else f32), 3: params,\n",
    "   5: scratch [group tokens][group heads][u[6] slots][u[2] + 2] floats;\n",
    "   a dispatch covers heads u[8] .. u[8] + (workgroups in y);\n",
    "   u[5]: the first slot of this part; f[0]: 1 / sqrt(hd);\n",
    "   flags Q4K_F_GQA: head h reads KV head h % n_head_kv (the gate's fault). */\n",
    "#extension GL_GOOGLE_include_directive : require\n",
    "#define WG 64\n",
    "#define Q4K_REDUCE_WG WG\n",
    "#include \"q4k_vk_common.glsl\"\n",
    "\n",
    "#ifndef PASS\n",
    "#define PASS 1\n",
    "#endif\n",
    "#define TILE 128\n",
    "\n",
    "layout(local_size_x = WG) in;\n",
    "\n",
    "layout(std430, set = 0, binding = 1) buffer Q4kQ { float q[]; };\n",
    "layout(std430, set = 0, binding = 2) readonly buffer Q4kK { uint kc[]; };\n",
    "layout(std430, set = 0, binding = 3) readonly buffer Q4kPrm { uint prm[]; };\n",
    "layout(std430, set = 0, binding = 4) readonly buffer Q4kV { uint vc[]; };\n",
    "layout(std430, set = 0, binding = 5) buffer Q4kS { float sc[]; };\n",
    "\n",
    "shared float e[TILE];\n",
    "\n",
    "/* element i of a cache part */\n",
    "float kv_k(uint i) {\n",
    "    if ((pc.flags & Q4K_F_KV_F16) != 0u) return h2f((kc[i >> 1] >> (16u * (i & 1u))) & 0xffffu);\n",
    "    return uintBitsToFloat(kc[i]);\n",
    "}\n",
    "float kv_v(uint i) {\n",
    "    if ((pc.flags & Q4K_F_KV_F16) != 0u) return h2f((vc[i >> 1] >> (16u * (i & 1u))) & 0xffffu);\n",
    "    return uintBitsToFloat(vc[i]);\n",
    "}\n",
    "\n",
    "void main() {\n",
    "    uint tid = gl_LocalInvocationID.x, n_head = pc.u[0], hd = pc.u[2];\n",
    "    uint h = pc.u[8] + gl_WorkGroupID.y, j = gl_WorkGroupID.z, nslot = pc.u[6];\n",
    "    uint sbase = (j * gl_NumWorkGroups.y + gl_WorkGroupID.y) * nslot; /* this (token, head)'s first slot */\n",
    "#if PASS == 1\n",
    "    uint tile = pc.base + gl_WorkGroupID.x;\n",
    "    uint kvh = (pc.flags & Q4K_F_GQA) != 0u ? h % pc.u[1] : h / (n_head / pc.u[1]);\n",
    "    uint kv_dim = pc.u[1] * hd, last = prm[pc.u[3]] + pc.u[7] + j;\n",
    "    uint r0 = tile * TILE; /* within the part */\n",
    "    uint nt = 0u;\n",
    "    if (r0 < pc.rows && pc.u[4] + r0 <= last) nt = min(min(uint(TILE), pc.rows - r0), last + 1u - pc.u[4] - r0);\n",
    "    uint qo = ((pc.u[7] + j) * n_head + h) * hd;\n",
    "    float mx = uintBitsToFloat(0xff800000u); /* -inf */\n",
    "    for (uint t = tid; t < nt; t += WG) {\n",
    "        uint ko = (r0 + t) * kv_dim + kvh * hd;\n",
    "        float dot = 0.0;\n",
    "        for (uint d = 0u; d < hd; d++) dot += q[qo + d] * kv_k(ko + d);\n",
    "        e[t] = dot * pc.f[0];\n",
    "        mx = max(mx, e[t]);\n",
    "    }\n",
    "    mx = q4k_wg_max(mx); /* its barriers also publish e[] */\n",
    "    float sum = 0.0;\n",
    "    for (uint t = tid; t < nt; t += WG) {\n",
    "        e[t] = exp(e[t] - mx);\n",
    "        sum += e[t];\n",
    "    }\n",
    "    sum = q4k_wg_sum(sum);\n",
    "    uint so = (sbase + pc.u[5] + tile) * (hd + 2u);\n",
    "    for (uint d = tid; d < hd; d += WG) {\n",
    "        float acc = 0.0;\n",
    "        for (uint t = 0u; t < nt; t++) acc += e[t] * kv_v((r0 + t) * kv_dim + kvh * hd + d);\n",
    "        sc[so + 2u + d] = acc;\n",
    "    }\n",
    "    if (tid == 0u) {\n",
    "        sc[so] = mx;\n",
    "        sc[so + 1u] = sum;\n",
    "    }\n",
    "#else\n",
    "    float mx = uintBitsToFloat(0xff800000u), den = 0.0;\n",
    "    for (uint c = 0u; c < nslot; c++)\n",
    "        if (sc[(sbase + c) * (hd + 2u) + 1u] > 0.0) mx = max(mx, sc[(sbase + c) * (hd + 2u)]);\n",
    "    for (uint c = 0u; c < nslot; c++) {\n",
    "        uint so = (sbase + c) * (hd + 2u);\n",
    "        if (sc[so + 1u] > 0.0) den += sc[so + 1u] * exp(sc[so] - mx);\n",
    "    }\n",
    "    for (uint d = tid; d < hd; d += WG) {\n",
    "        float acc = 0.0;\n",
    "        for (uint c = 0u; c < nslot; c++) {\n",
    "            uint so = (sbase + c) * (hd + 2u);\n",
    "            if (sc[so + 1u] > 0.0) acc += sc[so + 2u + d] * exp(sc[so] - mx);\n",
    "        }\n",
    "        q[((pc.u[7] + j) * n_head + h) * hd + d] = acc / den;\n",
    "    }\n",
    "#endif\n",
    "}\n",
    0};
/* Q4K_EMBED_END */
/* Q4K_EMBED_BEGIN(kernels_src/argmax.comp q4k__vk_src_argmax) */
static const char *const q4k__vk_src_argmax[] = {
    "#version 450\n",
    "/* argmax.comp - the greedy token: the index of the largest of x[0..u[0]),\n",
    "   the lowest among equals, NaN never winning (q4k_argmax in q4k.h).\n",
    "   PASS 1: workgroup g reduces x[g * CHUNK ..) to (value bits, index) in\n",
    "   scratch[2g], [2g + 1] (index 0xffffffff: no number there);\n",
    "   PASS 2: one workgroup reduces the u[1] pairs into prm[u[2]].\n",
    "   binding 1: x (floats), 5: scratch, 3: params (written). */\n",
    "#extension GL_GOOGLE_include_directive : require\n",
    "#include \"q4k_vk_common.glsl\"\n",
    "\n",
    "#ifndef PASS\n",
    "#define PASS 1\n",
    "#endif\n",
    "#define WG 256\n",
    "#define CHUNK (WG * 16u)\n",
    "\n",
    "layout(local_size_x = WG) in;\n",
    "\n",
    "layout(std430, set = 0, binding = 1) readonly buffer Q4kX { float x[]; };\n",
    "layout(std430, set = 0, binding = 3) buffer Q4kPrm { uint prm[]; };\n",
    "layout(std430, set = 0, binding = 5) buffer Q4kS { uint sc[]; };\n",
    "\n",
    "shared float sv[WG];\n",
    "shared uint si[WG];\n",
    "\n",
    "/* (v, i) beats (bv, bi): a number, larger, or equal with a lower index */\n",
    "bool better(float v, uint i, float bv, uint bi) {\n",
    "    if (i == 0xffffffffu) return false;\n",
    "    return bi == 0xffffffffu || v > bv || (v == bv && i < bi);\n",
    "}\n",
    "\n",
    "void main() {\n",
    "    uint tid = gl_LocalInvocationID.x;\n",
    "    float bv = 0.0;\n",
    "    uint bi = 0xffffffffu;\n",
    "#if PASS == 1\n",
    "    uint g = pc.base + gl_WorkGroupID.x;\n",
    "    uint end = min(pc.u[0], (g + 1u) * CHUNK);\n",
    "    for (uint i = g * CHUNK + tid; i < end; i += WG) {\n",
    "        float v = x[i];\n",
    "        if ((floatBitsToUint(v) & 0x7fffffffu) <= 0x7f800000u && better(v, i, bv, bi)) { /* not NaN, on the bits */\n",
    "            bv = v;\n",
    "            bi = i;\n",
    "        }\n",
    "    }\n",
    "#else\n",
    "    for (uint k = tid; k < pc.u[1]; k += WG)\n",
    "        if (better(uintBitsToFloat(sc[2u * k]), sc[2u * k + 1u], bv, bi)) {\n",
    "            bv = uintBitsToFloat(sc[2u * k]);\n",
    "            bi = sc[2u * k + 1u];\n",
    "        }\n",
    "#endif\n",
    "    sv[tid] = bv;\n",
    "    si[tid] = bi;\n",
    "    barrier();\n",
    "    for (uint s = WG / 2u; s > 0u; s >>= 1) {\n",
    "        if (tid < s && better(sv[tid + s], si[tid + s], sv[tid], si[tid])) {\n",
    "            sv[tid] = sv[tid + s];\n",
    "            si[tid] = si[tid + s];\n",
    "        }\n",
    "        barrier();\n",
    "    }\n",
    "    if (tid == 0u) {\n",
    "#if PASS == 1\n",
    "        sc[2u * g] = floatBitsToUint(sv[0]);\n",
    "        sc[2u * g + 1u] = si[0];\n",
    "#else\n",
    "        prm[pc.u[2]] = si[0];\n",
    "#endif\n",
    "    }\n",
    "}\n",
    0};
/* Q4K_EMBED_END */

/* >>vk-loader: the functions q4k calls, loaded at run time */
#define Q4K__VK_INSTANCE_FNS(X)                                                \
    X(vkDestroyInstance) X(vkEnumeratePhysicalDevices)                         \
    X(vkGetPhysicalDeviceProperties) X(vkGetPhysicalDeviceProperties2)         \
    X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceMemoryProperties)     \
    X(vkGetPhysicalDeviceQueueFamilyProperties) X(vkCreateDevice)              \
    X(vkGetDeviceProcAddr)
#define Q4K__VK_DEVICE_FNS(X)                                                  \
    X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer) \
    X(vkGetBufferMemoryRequirements) X(vkAllocateMemory) X(vkFreeMemory)       \
    X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory)                      \
    X(vkCreateShaderModule) X(vkDestroyShaderModule)                           \
    X(vkCreateDescriptorSetLayout) X(vkDestroyDescriptorSetLayout)             \
    X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout)                       \
    X(vkCreateComputePipelines) X(vkDestroyPipeline)                           \
    X(vkCreateDescriptorPool) X(vkDestroyDescriptorPool)                       \
    X(vkAllocateDescriptorSets) X(vkUpdateDescriptorSets)                      \
    X(vkCreateCommandPool) X(vkDestroyCommandPool) X(vkAllocateCommandBuffers) \
    X(vkFreeCommandBuffers)                                                    \
    X(vkBeginCommandBuffer) X(vkEndCommandBuffer) X(vkResetCommandBuffer)      \
    X(vkCmdBindPipeline) X(vkCmdBindDescriptorSets) X(vkCmdPushConstants)      \
    X(vkCmdDispatch) X(vkCmdPipelineBarrier) X(vkQueueSubmit)                  \
    X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences)    \
    X(vkCmdCopyBuffer) X(vkCmdFillBuffer) X(vkResetDescriptorPool)

#define Q4K__VK_PFN(f) PFN_##f f;

/* the loader and one instance; the handles and tables of one user */
typedef struct q4k__vk_lib {
    void *so;
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
    PFN_vkCreateInstance vkCreateInstance;
    VkInstance instance;
    uint32_t api;
    Q4K__VK_INSTANCE_FNS(Q4K__VK_PFN)
} q4k__vk_lib;

static void q4k__vk_lib_close(q4k__vk_lib *l) {
    if (l->instance && l->vkDestroyInstance) l->vkDestroyInstance(l->instance, NULL);
    if (l->so) dlclose(l->so);
    memset(l, 0, sizeof *l);
}

static q4k_result q4k__vk_lib_open(q4k__vk_lib *l, q4k_error *err) {
    const char *env = getenv("Q4K_LIBVULKAN");
    const char *names[3];
    char tried[300] = "";
    PFN_vkEnumerateInstanceVersion enum_version;
    VkApplicationInfo app;
    VkInstanceCreateInfo ci;
    VkResult vr;
    int i, nn = 0;
    memset(l, 0, sizeof *l);
    if (env && *env) names[nn++] = env;
    else {
        names[nn++] = "libvulkan.so.1";
        names[nn++] = "libvulkan.so";
    }
    for (i = 0; i < nn && !l->so; i++) {
        l->so = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!l->so) {
            const char *e = dlerror();
            snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%s", i ? "; " : "", e ? e : names[i]);
        }
    }
    if (!l->so)
        return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: no Vulkan loader (%s)", tried);
    /* dlsym returns an object pointer; the copy is how C99 turns it into a function pointer */
    {
        void *sym = dlsym(l->so, "vkGetInstanceProcAddr");
        if (!sym) {
            q4k__vk_lib_close(l);
            return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: the loader has no vkGetInstanceProcAddr");
        }
        memcpy(&l->vkGetInstanceProcAddr, &sym, sizeof sym);
    }
    l->vkCreateInstance = (PFN_vkCreateInstance)l->vkGetInstanceProcAddr(NULL, "vkCreateInstance");
    enum_version = (PFN_vkEnumerateInstanceVersion)l->vkGetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    l->api = VK_API_VERSION_1_0;
    if (enum_version && enum_version(&l->api) != VK_SUCCESS) l->api = VK_API_VERSION_1_0;
    if (!l->vkCreateInstance || l->api < VK_API_VERSION_1_1) {
        q4k__vk_lib_close(l);
        return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: the loader offers Vulkan %u.%u; q4k needs 1.1",
                         VK_API_VERSION_MAJOR(l->api), VK_API_VERSION_MINOR(l->api));
    }
    if (l->api > VK_API_VERSION_1_3) l->api = VK_API_VERSION_1_3;
    memset(&app, 0, sizeof app);
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "q4k";
    app.pEngineName = "q4k";
    app.apiVersion = l->api;
    memset(&ci, 0, sizeof ci);
    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ci.pApplicationInfo = &app;
    vr = l->vkCreateInstance(&ci, NULL, &l->instance);
    if (vr != VK_SUCCESS) {
        l->instance = NULL;
        q4k__vk_lib_close(l);
        /* the loader without any driver (ICD) answers this: say it as "no device" */
        if (vr == VK_ERROR_INCOMPATIBLE_DRIVER)
            return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE,
                             "vulkan: no Vulkan device: the loader found no driver it can use "
                             "(vkCreateInstance: VK_ERROR_INCOMPATIBLE_DRIVER)");
        return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: vkCreateInstance failed (VkResult %d)", (int)vr);
    }
#define Q4K__VK_LOAD_I(f) l->f = (PFN_##f)l->vkGetInstanceProcAddr(l->instance, #f);
    Q4K__VK_INSTANCE_FNS(Q4K__VK_LOAD_I)
#undef Q4K__VK_LOAD_I
#define Q4K__VK_CHECK_I(f)                                                                                \
    if (!l->f) {                                                                                          \
        q4k__vk_lib_close(l);                                                                             \
        return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: the loader has no %s", #f);           \
    }
    Q4K__VK_INSTANCE_FNS(Q4K__VK_CHECK_I)
#undef Q4K__VK_CHECK_I
    return Q4K_OK;
}

/* >>vk-devices */

Q4K_API const char *q4k_vk_feature_names(unsigned f, char *buf, size_t n) {
    static const char *const names[] = {"subgroup", "storage8", "storage16", "fp16"};
    size_t o = 0;
    int i;
    if (!buf || !n) return "";
    buf[0] = 0;
    for (i = 0; i < 4; i++)
        if (f & (1u << i)) o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "%s%s", o ? " " : "", names[i]);
    if (!o) snprintf(buf, n, "none");
    return buf;
}

/* the memory type for buffers the host writes and reads: host-visible and
   coherent, device-local first; -1 when there is none */
static int q4k__vk_memory_type(const VkPhysicalDeviceMemoryProperties *mp, uint32_t bits, int device_local) {
    uint32_t i;
    const VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    for (i = 0; i < mp->memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = mp->memoryTypes[i].propertyFlags;
        if (!(bits & (1u << i)) || (f & host) != host) continue;
        if (device_local && !(f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)) continue;
        return (int)i;
    }
    return -1;
}

static int q4k__vk_compute_queue(q4k__vk_lib *l, VkPhysicalDevice pd) {
    VkQueueFamilyProperties qf[16];
    uint32_t n = 16, i;
    l->vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, qf);
    for (i = 0; i < n; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) return (int)i;
    return -1;
}

/* the feature structs q4k reads and enables, chained; the 8-bit and fp16
   ones only for a Vulkan 1.2 device */
typedef struct q4k__vk_feats {
    VkPhysicalDeviceFeatures2 f2;
    VkPhysicalDevice16BitStorageFeatures s16;
    VkPhysicalDevice8BitStorageFeatures s8;
    VkPhysicalDeviceShaderFloat16Int8Features f16;
} q4k__vk_feats;

static void q4k__vk_feats_init(q4k__vk_feats *f, int v12) {
    memset(f, 0, sizeof *f);
    f->f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    f->s16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
    f->s8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES;
    f->f16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
    f->f2.pNext = &f->s16;
    if (v12) {
        f->s16.pNext = &f->s8;
        f->s8.pNext = &f->f16;
    }
}

static void q4k__vk_describe(q4k__vk_lib *l, VkPhysicalDevice pd, int index, q4k_vk_device_info *o) {
    VkPhysicalDeviceProperties p;
    VkPhysicalDeviceProperties2 p2;
    VkPhysicalDeviceSubgroupProperties sg;
    VkPhysicalDeviceMaintenance3Properties m3;
    VkPhysicalDeviceMaintenance4Properties m4;
    VkPhysicalDeviceDriverProperties drv;
    q4k__vk_feats f;
    VkPhysicalDeviceMemoryProperties mp;
    uint32_t i;
    memset(o, 0, sizeof *o);
    o->index = index;
    l->vkGetPhysicalDeviceProperties(pd, &p);
    snprintf(o->name, sizeof o->name, "%s", p.deviceName);
    switch (p.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: o->type = "discrete"; break;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: o->type = "integrated"; break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: o->type = "virtual"; break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: o->type = "cpu"; break;
    default: o->type = "other"; break;
    }
    o->api_version = p.apiVersion;
    o->vendor_id = p.vendorID;
    o->device_id = p.deviceID;
    o->driver_version = p.driverVersion;
    o->max_storage_buffer_range = p.limits.maxStorageBufferRange;
    o->min_storage_buffer_offset_alignment = p.limits.minStorageBufferOffsetAlignment;
    o->max_compute_shared_memory_size = p.limits.maxComputeSharedMemorySize;
    for (i = 0; i < 3; i++) o->max_compute_work_group_count[i] = p.limits.maxComputeWorkGroupCount[i];
    if (p.apiVersion < VK_API_VERSION_1_1 || l->api < VK_API_VERSION_1_1) {
        snprintf(o->reject, sizeof o->reject, "Vulkan %u.%u; q4k needs 1.1", VK_API_VERSION_MAJOR(p.apiVersion),
                 VK_API_VERSION_MINOR(p.apiVersion));
        return;
    }
    /* the property and feature structs of a version chain only when the device has it */
    memset(&p2, 0, sizeof p2);
    memset(&sg, 0, sizeof sg);
    memset(&m3, 0, sizeof m3);
    memset(&m4, 0, sizeof m4);
    memset(&drv, 0, sizeof drv);
    p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
    sg.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
    m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
    m4.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_PROPERTIES;
    drv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
    p2.pNext = &sg;
    sg.pNext = &m3;
    if (p.apiVersion >= VK_API_VERSION_1_2 && l->api >= VK_API_VERSION_1_2) m3.pNext = &drv;
    if (p.apiVersion >= VK_API_VERSION_1_3 && l->api >= VK_API_VERSION_1_3) drv.pNext = &m4;
    l->vkGetPhysicalDeviceProperties2(pd, &p2);
    o->max_memory_allocation_size = m3.maxMemoryAllocationSize;
    o->max_buffer_size = m4.maxBufferSize ? m4.maxBufferSize : m3.maxMemoryAllocationSize;
    o->subgroup_size = sg.subgroupSize;
    if (drv.driverName[0]) snprintf(o->driver, sizeof o->driver, "%.120s %.120s", drv.driverName, drv.driverInfo);
    if ((sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
        (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
        (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT))
        o->features |= Q4K_VK_SUBGROUP;
    q4k__vk_feats_init(&f, p.apiVersion >= VK_API_VERSION_1_2 && l->api >= VK_API_VERSION_1_2);
    l->vkGetPhysicalDeviceFeatures2(pd, &f.f2);
    if (f.s16.storageBuffer16BitAccess && f.f2.features.shaderInt16) o->features |= Q4K_VK_STORAGE16;
    if (f.s8.storageBuffer8BitAccess && f.f16.shaderInt8) o->features |= Q4K_VK_STORAGE8;
    if (f.f16.shaderFloat16) o->features |= Q4K_VK_FP16;
    l->vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    for (i = 0; i < mp.memoryHeapCount; i++)
        if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) o->device_local_bytes += mp.memoryHeaps[i].size;
    if (q4k__vk_compute_queue(l, pd) < 0)
        snprintf(o->reject, sizeof o->reject, "no compute queue");
    else if (q4k__vk_memory_type(&mp, ~0u, 0) < 0)
        snprintf(o->reject, sizeof o->reject, "no host-visible coherent memory");
    else if (p.limits.maxComputeWorkGroupSize[0] < 64 || p.limits.maxComputeWorkGroupInvocations < 64)
        snprintf(o->reject, sizeof o->reject, "workgroups of %u invocations; the kernels need 64",
                 p.limits.maxComputeWorkGroupInvocations);
    else if (p.limits.maxComputeSharedMemorySize < 4096)
        snprintf(o->reject, sizeof o->reject, "%u bytes of shared memory; the kernels need 4096",
                 p.limits.maxComputeSharedMemorySize);
    else if (o->max_memory_allocation_size < 4096)
        snprintf(o->reject, sizeof o->reject, "maxMemoryAllocationSize %llu",
                 (unsigned long long)o->max_memory_allocation_size);
    else
        o->usable = 1;
}

static q4k_result q4k__vk_enumerate(q4k__vk_lib *l, VkPhysicalDevice **pds, uint32_t *n, q4k_error *err) {
    VkResult vr = l->vkEnumeratePhysicalDevices(l->instance, n, NULL);
    *pds = NULL;
    if (vr != VK_SUCCESS) return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: vkEnumeratePhysicalDevices failed (VkResult %d)", (int)vr);
    if (!*n) return Q4K_OK;
    *pds = (VkPhysicalDevice *)Q4K_MALLOC(*n * sizeof **pds);
    if (!*pds) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of memory listing devices");
    vr = l->vkEnumeratePhysicalDevices(l->instance, n, *pds);
    if (vr != VK_SUCCESS && vr != VK_INCOMPLETE) {
        Q4K_FREE(*pds);
        *pds = NULL;
        return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: vkEnumeratePhysicalDevices failed (VkResult %d)", (int)vr);
    }
    return Q4K_OK;
}

Q4K_API q4k_result q4k_vk_list_devices(q4k_vk_device_info *out, int max, int *count, q4k_error *err) {
    q4k__vk_lib l;
    VkPhysicalDevice *pds;
    uint32_t n = 0, i;
    q4k_result r;
    if (count) *count = 0;
    if ((r = q4k__vk_lib_open(&l, err))) return r;
    if ((r = q4k__vk_enumerate(&l, &pds, &n, err))) {
        q4k__vk_lib_close(&l);
        return r;
    }
    for (i = 0; i < n && (int)i < max && out; i++) q4k__vk_describe(&l, pds[i], (int)i, &out[i]);
    if (count) *count = (int)n;
    Q4K_FREE(pds);
    q4k__vk_lib_close(&l);
    return Q4K_OK;
}

static int q4k__vk_type_rank(const char *t) {
    return !strcmp(t, "discrete") ? 0 : !strcmp(t, "integrated") ? 1 : !strcmp(t, "virtual") ? 2 : !strcmp(t, "other") ? 3 : 4;
}

static int q4k__vk_name_has(const char *name, const char *part) {
    size_t i, j, n = strlen(name), m = strlen(part);
    for (i = 0; i + m <= n; i++) {
        for (j = 0; j < m && tolower((unsigned char)name[i + j]) == tolower((unsigned char)part[j]); j++)
            ;
        if (j == m) return 1;
    }
    return 0;
}

/* the device the descriptor asks for: index into infos, or -1 with err set */
static int q4k__vk_choose(const q4k_vk_device_info *infos, int n, const char *want, int allow_cpu, q4k_error *err) {
    int i, best = -1;
    if (!n) {
        q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: no Vulkan device");
        return -1;
    }
    if (want && *want) {
        char *end;
        long idx = strtol(want, &end, 10);
        for (i = 0; i < n; i++)
            if ((!*end && idx == i) || (*end && q4k__vk_name_has(infos[i].name, want))) break;
        if (i == n) {
            q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: no device '%s' among the %d devices (q4k devices lists them)", want, n);
            return -1;
        }
        if (!infos[i].usable) {
            q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: device %d (%s) cannot run q4k: %s", i, infos[i].name, infos[i].reject);
            return -1;
        }
        return i;
    }
    for (i = 0; i < n; i++) {
        if (!infos[i].usable || (!allow_cpu && !strcmp(infos[i].type, "cpu"))) continue;
        if (best < 0 || q4k__vk_type_rank(infos[i].type) < q4k__vk_type_rank(infos[best].type)) best = i;
    }
    if (best < 0) {
        for (i = 0; i < n && !infos[i].usable; i++)
            ;
        if (i < n)
            q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE,
                      "vulkan: only a CPU-type device (%s); name it with --device or ask for --backend vulkan", infos[i].name);
        else
            q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: no usable device (device 0, %s: %s)", infos[0].name, infos[0].reject);
    }
    return best;
}

static int q4k__vk_parse_size(const char *s, const char **end, uint64_t *v) {
    uint64_t x = 0;
    const char *p = s;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return 0;
        x = x * 10 + (uint64_t)(*p++ - '0');
    }
    switch (*p) {
    case 'K': case 'k': x <<= 10; p++; break;
    case 'M': case 'm': x <<= 20; p++; break;
    case 'G': case 'g': x <<= 30; p++; break;
    default: break;
    }
    *end = p;
    *v = x;
    return x > 0;
}

Q4K_API q4k_result q4k_vk_parse_limits(const char *s, uint64_t *range, uint64_t *alloc, q4k_error *err) {
    const char *p = s;
    *range = *alloc = 0;
    while (p && *p) {
        uint64_t *dst = !strncmp(p, "range=", 6) ? range : !strncmp(p, "alloc=", 6) ? alloc : NULL;
        const char *e;
        if (!dst || !q4k__vk_parse_size(p + 6, &e, dst) || (*e && *e != ','))
            return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: bad limit '%s' in '%s' (expected range=SIZE,alloc=SIZE, SIZE like 1M)", p, s);
        p = *e ? e + 1 : e;
    }
    return Q4K_OK;
}

/* >>vk-backend */

typedef struct q4k__vk_block { /* one allocation, one buffer over all of it, mapped */
    VkBuffer buf;
    VkDeviceMemory mem;
    unsigned char *map;
    uint64_t size, used;
    uint64_t mem_bytes; /* what the allocation takes of the device (>= size) */
} q4k__vk_block;

typedef struct q4k__vk_slice { /* one binding: a range of a block */
    VkBuffer buf;
    uint64_t off, size;
    unsigned char *map;
} q4k__vk_slice;

typedef struct q4k__vk_arena {
    q4k__vk_block *blk;
    int n, cap;
} q4k__vk_arena;

/* pipelines by id: each kernel file under the #defines that specialise it */
enum {
    Q4K__VK_P_QUANT = 0,                      /* quantize_q8a.comp */
    Q4K__VK_P_MATMUL = 1,                     /* + 2 * type slot + q8: matmul.comp */
    Q4K__VK_P_EMBED = Q4K__VK_P_MATMUL + 18,  /* + type slot: matmul.comp, EMBED */
    Q4K__VK_P_RMSNORM = Q4K__VK_P_EMBED + 9,  /* rmsnorm.comp */
    Q4K__VK_P_ADD,                            /* ops.comp, OP 1..6 */
    Q4K__VK_P_SWIGLU,
    Q4K__VK_P_ROPE,
    Q4K__VK_P_KV_STORE,
    Q4K__VK_P_PERTURB,
    Q4K__VK_P_SCALE,
    Q4K__VK_P_ATTN,                           /* attention.comp, PASS 1 and 2 */
    Q4K__VK_P_ATTN_COMBINE,
    Q4K__VK_P_ARGMAX,                         /* argmax.comp, PASS 1 and 2 */
    Q4K__VK_P_ARGMAX2,
    Q4K__VK_NPIPE
};
enum { Q4K__VK_NBIND = 8 }; /* storage buffers of the one descriptor-set layout */

typedef struct q4k__vk_backend {
    q4k_backend base;
    q4k__vk_lib lib;
    q4k_vk_device_info info;
    VkPhysicalDevice pd;
    VkPhysicalDeviceMemoryProperties mp;
    VkDevice dev;
    VkQueue queue;
    int qfam; /* the compute queue's family (sessions' command pools) */
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe[Q4K__VK_NPIPE];
    unsigned features;
    uint64_t range, alloc, align;
    uint64_t mem_limit; /* $Q4K_DEVICE_MEM_LIMIT: allocations beyond it fail as out of memory (0: none) */
    uint64_t allocated; /* device memory held by this backend's allocations */
    char lost[160];     /* set once the device is lost: every later call says so */
    int64_t test_fault_eval; /* Q4K_VK_TEST_FAULT builds: $Q4K_VK_TEST_FAULT_EVAL, the eval that loses the device */
    int64_t n_evals;    /* session evals on this backend (for the above) */
    char cache_dir[512];
    char kernels_dir[512]; /* Q4K_VK_KERNELS_DIR, "" for the embedded kernels */
    q4k_log_fn log;
    void *log_user;
    int glslang_up;
    q4k_vk_backend_info stats;
    Q4K__VK_DEVICE_FNS(Q4K__VK_PFN)
} q4k__vk_backend;

static q4k_result q4k__vk_err(q4k_error *err, VkResult vr, const char *what) {
    return q4k__fail(err, vr == VK_ERROR_OUT_OF_DEVICE_MEMORY || vr == VK_ERROR_OUT_OF_HOST_MEMORY ? Q4K_ERR_OUT_OF_MEMORY : Q4K_ERR_GPU,
                     "vulkan: %s failed (VkResult %d)", what, (int)vr);
}

/* A lost device (VK_ERROR_DEVICE_LOST: a fault during a step, a reset) ends
   the backend: it is marked, and every later call says so instead of
   submitting to a device whose memory may hold anything. */
static q4k_result q4k__vk_lost_check(q4k__vk_backend *vb, VkResult vr, const char *what, q4k_error *err) {
    if (vr != VK_ERROR_DEVICE_LOST) return q4k__vk_err(err, vr, what);
    snprintf(vb->lost, sizeof vb->lost, "%s failed: the device was lost (VkResult %d)", what, (int)vr);
    return q4k__fail(err, Q4K_ERR_GPU, "vulkan: %s; the backend and its sessions are dead", vb->lost);
}

static q4k_result q4k__vk_dead(q4k__vk_backend *vb, q4k_error *err) {
    return q4k__fail(err, Q4K_ERR_GPU, "vulkan: the backend is dead: earlier, %s", vb->lost);
}

static void q4k__vk_arena_free(q4k__vk_backend *vb, q4k__vk_arena *a) {
    int i;
    for (i = 0; i < a->n; i++) {
        vb->vkDestroyBuffer(vb->dev, a->blk[i].buf, NULL);
        vb->vkFreeMemory(vb->dev, a->blk[i].mem, NULL); /* unmaps it */
        vb->allocated -= a->blk[i].mem_bytes;
    }
    Q4K_FREE(a->blk);
    memset(a, 0, sizeof *a);
}

/* one allocation with one buffer over it, for copies too: device-local
   memory first (host-visible or not), else any; mapped when host-visible.
   host: host-visible memory only (what the host writes or reads). */
static q4k_result q4k__vk_mem_new(q4k__vk_backend *vb, q4k__vk_arena *a, uint64_t size, int host, q4k_error *err) {
    q4k__vk_block b;
    VkBufferCreateInfo bi;
    VkMemoryRequirements req;
    VkMemoryAllocateInfo ai;
    VkResult vr = VK_ERROR_OUT_OF_DEVICE_MEMORY;
    void *map = NULL;
    int pass;
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 8;
        q4k__vk_block *nb = (q4k__vk_block *)Q4K_REALLOC(a->blk, (size_t)cap * sizeof *nb);
        if (!nb) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
        a->blk = nb;
        a->cap = cap;
    }
    memset(&b, 0, sizeof b);
    memset(&bi, 0, sizeof bi);
    bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    bi.size = size;
    bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    if ((vr = vb->vkCreateBuffer(vb->dev, &bi, NULL, &b.buf)) != VK_SUCCESS) return q4k__vk_err(err, vr, "vkCreateBuffer");
    vb->vkGetBufferMemoryRequirements(vb->dev, b.buf, &req);
    if (req.size > vb->info.max_memory_allocation_size) {
        vb->vkDestroyBuffer(vb->dev, b.buf, NULL);
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: a buffer of %llu bytes needs %llu, over maxMemoryAllocationSize %llu",
                         (unsigned long long)size, (unsigned long long)req.size,
                         (unsigned long long)vb->info.max_memory_allocation_size);
    }
    if (vb->mem_limit && vb->allocated + req.size > vb->mem_limit) {
        vb->vkDestroyBuffer(vb->dev, b.buf, NULL);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY,
                         "vulkan: out of device memory: %llu bytes needed, %llu free (Q4K_DEVICE_MEM_LIMIT=%llu)",
                         (unsigned long long)req.size, (unsigned long long)(vb->mem_limit - vb->allocated),
                         (unsigned long long)vb->mem_limit);
    }
    /* host: host-visible (device-local first); else device-local, then anything */
    for (pass = host ? 1 : 0; pass < 4 && !b.mem; pass++) {
        uint32_t i;
        for (i = 0; i < vb->mp.memoryTypeCount && !b.mem; i++) {
            VkMemoryPropertyFlags f = vb->mp.memoryTypes[i].propertyFlags;
            const VkMemoryPropertyFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
            int dl = (f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) != 0, hvis = (f & hv) == hv;
            if (!(req.memoryTypeBits & (1u << i))) continue;
            /* pass 0: device-local the host cannot see (the fast kind where BAR is small);
               1: device-local host-visible; 2: host-visible; 3: anything (device only) */
            if ((pass == 0 && !(dl && !hvis)) || (pass == 1 && !(dl && hvis)) || (pass == 2 && !hvis) || (pass == 3 && host))
                continue;
            memset(&ai, 0, sizeof ai);
            ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
            ai.allocationSize = req.size;
            ai.memoryTypeIndex = i;
            if ((vr = vb->vkAllocateMemory(vb->dev, &ai, NULL, &b.mem)) != VK_SUCCESS) b.mem = VK_NULL_HANDLE;
            else if (hvis) b.map = (unsigned char *)1; /* mapped below */
        }
    }
    if (!b.mem) {
        vb->vkDestroyBuffer(vb->dev, b.buf, NULL);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: cannot allocate %llu bytes of %s memory (VkResult %d)",
                         (unsigned long long)req.size, host ? "host-visible" : "device", (int)vr);
    }
    if ((vr = vb->vkBindBufferMemory(vb->dev, b.buf, b.mem, 0)) != VK_SUCCESS ||
        (b.map && (vr = vb->vkMapMemory(vb->dev, b.mem, 0, VK_WHOLE_SIZE, 0, &map)) != VK_SUCCESS)) {
        vb->vkDestroyBuffer(vb->dev, b.buf, NULL);
        vb->vkFreeMemory(vb->dev, b.mem, NULL);
        return q4k__vk_err(err, vr, "binding or mapping device memory");
    }
    b.map = (unsigned char *)map;
    b.size = size;
    b.mem_bytes = req.size;
    vb->allocated += req.size;
    a->blk[a->n++] = b;
    return Q4K_OK;
}

/* a host-visible allocation (what the op entry points write and read) */
static q4k_result q4k__vk_block_new(q4k__vk_backend *vb, q4k__vk_arena *a, uint64_t size, q4k_error *err) {
    return q4k__vk_mem_new(vb, a, size, 1, err);
}

/* a binding of `bytes` (<= vb->range) at an aligned offset; a new
   allocation (of min(alloc limit, max(bytes, hint)) bytes) when the last
   one is full. hint: what the caller will still ask for, so that one
   tensor's bindings share allocations. */
static q4k_result q4k__vk_slice_get(q4k__vk_backend *vb, q4k__vk_arena *a, uint64_t bytes, uint64_t hint,
                                    q4k__vk_slice *s, q4k_error *err) {
    q4k__vk_block *b = a->n ? &a->blk[a->n - 1] : NULL;
    uint64_t off = b ? (b->used + vb->align - 1) / vb->align * vb->align : 0;
    q4k_result r;
    /* whole words: a kernel reading the last 2-byte-aligned block through
       32-bit words must stay inside the binding (robust access reads 0 past it) */
    bytes = bytes ? (bytes + 3) / 4 * 4 : 4;
    if (!b || off + bytes > b->size) {
        uint64_t size = hint > bytes ? hint : bytes;
        if (size > vb->alloc) size = vb->alloc / vb->align * vb->align;
        if ((r = q4k__vk_block_new(vb, a, size, err))) return r;
        b = &a->blk[a->n - 1];
        off = 0;
    }
    b->used = off + bytes;
    s->buf = b->buf;
    s->off = off;
    s->size = bytes;
    s->map = b->map + off;
    return Q4K_OK;
}

/* >>vk-compile: GLSL to SPIR-V with glslang, cached on disk */

static uint64_t q4k__vk_fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* The kernel's text as glslang sees it: #version, the feature switches,
   then the file with q4k_vk_common.glsl spliced in place of its #include,
   under #line directives that keep glslang's messages at the real
   kernels_src/ file and line. */
static char *q4k__vk_assemble(const char *file, const char *const *lines, const char *const *common,
                              const char *defines) {
    size_t n = strlen(defines) + 256, i, o = 0, j;
    char *s;
    for (i = 0; lines[i]; i++) n += strlen(lines[i]) + 80;
    for (i = 0; common[i]; i++) n += strlen(common[i]);
    s = (char *)Q4K_MALLOC(n);
    if (!s) return NULL;
    s[0] = 0;
    for (i = 0; lines[i]; i++) {
        const char *l = lines[i];
        if (i == 0) { /* #version */
            o += (size_t)snprintf(s + o, n - o, "%s%s#extension GL_GOOGLE_cpp_style_line_directive : require\n#line 2 \"kernels_src/%s\"\n",
                                  l, defines, file);
        } else if (!strncmp(l, "#extension GL_GOOGLE_include_directive", 38)) {
            o += (size_t)snprintf(s + o, n - o, "\n");
        } else if (!strncmp(l, "#include \"q4k_vk_common.glsl\"", 29)) {
            o += (size_t)snprintf(s + o, n - o, "#line 1 \"kernels_src/q4k_vk_common.glsl\"\n");
            for (j = 0; common[j]; j++) o += (size_t)snprintf(s + o, n - o, "%s", common[j]);
            o += (size_t)snprintf(s + o, n - o, "#line %d \"kernels_src/%s\"\n", (int)i + 2, file);
        } else {
            o += (size_t)snprintf(s + o, n - o, "%s", l);
        }
    }
    return s;
}

/* Q4K_VK_KERNELS_DIR: a kernel file read from disk instead of the embedded
   copy (editing kernels without `make embed`; the tests break one on
   purpose), as the same NULL-terminated array of lines; one allocation */
static char **q4k__vk_read_lines(const char *dir, const char *file) {
    char path[600], **lines, *text;
    FILE *f;
    long len;
    size_t i, k = 0;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (!(f = fopen(path, "rb"))) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    /* pointers, the text, then the lines: len bytes and at most len + 1 NULs */
    lines = (char **)Q4K_MALLOC(((size_t)len + 2) * sizeof(char *) + 3 * (size_t)len + 3);
    if (!lines) {
        fclose(f);
        return NULL;
    }
    text = (char *)(lines + (size_t)len + 2);
    if (fread(text, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        Q4K_FREE(lines);
        return NULL;
    }
    fclose(f);
    /* split after each newline: copy line i to its own NUL-terminated string */
    {
        char *out = text + len + 1;
        size_t start = 0;
        for (i = 0; i <= (size_t)len; i++) {
            if (i == (size_t)len || text[i] == '\n') {
                size_t end = i < (size_t)len ? i + 1 : i;
                if (end > start) {
                    lines[k++] = out;
                    memcpy(out, text + start, end - start);
                    out += end - start;
                    *out++ = 0;
                }
                start = end;
            }
        }
    }
    lines[k] = NULL;
    return lines;
}

static void q4k__vk_cache_path(q4k__vk_backend *vb, uint64_t key, char *path, size_t n) {
    snprintf(path, n, "%s/vk-%016llx.spv", vb->cache_dir, (unsigned long long)key);
}

static uint32_t *q4k__vk_cache_read(q4k__vk_backend *vb, uint64_t key, size_t *words) {
    char path[600];
    FILE *f;
    long len;
    uint32_t *code = NULL;
    if (!vb->cache_dir[0]) return NULL;
    q4k__vk_cache_path(vb, key, path, sizeof path);
    if (!(f = fopen(path, "rb"))) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 20 && len % 4 == 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (code = (uint32_t *)Q4K_MALLOC((size_t)len)) && fread(code, 1, (size_t)len, f) == (size_t)len &&
        code[0] == 0x07230203u) {
        *words = (size_t)len / 4;
    } else {
        Q4K_FREE(code);
        code = NULL;
    }
    fclose(f);
    return code;
}

#ifdef Q4K_VULKAN_GLSLANG
/* mkdir -p; failures show up when the file is written */
static void q4k__vk_mkdirs(const char *dir) {
    char p[512];
    size_t i;
    snprintf(p, sizeof p, "%s", dir);
    for (i = 1; p[i]; i++)
        if (p[i] == '/') {
            p[i] = 0;
            mkdir(p, 0755);
            p[i] = '/';
        }
    mkdir(p, 0755);
}

static void q4k__vk_cache_write(q4k__vk_backend *vb, uint64_t key, const uint32_t *code, size_t words) {
    char path[600], tmp[640];
    FILE *f;
    if (!vb->cache_dir[0]) return;
    q4k__vk_mkdirs(vb->cache_dir);
    q4k__vk_cache_path(vb, key, path, sizeof path);
    /* written beside and renamed: a reader never sees half a file */
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    if (!(f = fopen(tmp, "wb"))) {
        q4k__log(vb->log, vb->log_user, Q4K_LOG_WARN, "vulkan: cannot write the shader cache %s: %s", tmp, strerror(errno));
        return;
    }
    if (fwrite(code, 4, words, f) != words || fclose(f) != 0 || rename(tmp, path) != 0) {
        q4k__log(vb->log, vb->log_user, Q4K_LOG_WARN, "vulkan: cannot write the shader cache %s", path);
        remove(tmp);
    }
}
#define Q4K__VK_COMPILER "glslang " Q4K__STR(GLSLANG_VERSION_MAJOR) "." Q4K__STR(GLSLANG_VERSION_MINOR) "." Q4K__STR(GLSLANG_VERSION_PATCH)

/* glslang's log as one line of the error: its first message (which names
   kernels_src/FILE:LINE), and how many more there were, since a CLI prints
   err.msg as one line; "ERROR: N compilation errors." is a summary, not one */
static q4k_result q4k__vk_compile_fail(q4k_error *err, const char *what, const char *file, const char *log) {
    const char *first;
    int first_len, more = q4k__log_first_line(log, "ERROR: ", NULL, " compilation errors", &first, &first_len) - 1;
    if (!first) return q4k__fail(err, Q4K_ERR_GPU, "vulkan: %s kernels_src/%s failed (glslang gave no log)", what, file);
    if (more)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: %s kernels_src/%s: %.*s (and %d more messages)", what, file, first_len, first, more);
    return q4k__fail(err, Q4K_ERR_GPU, "vulkan: %s kernels_src/%s: %.*s", what, file, first_len, first);
}

static q4k_result q4k__vk_compile(const char *file, const char *src, uint32_t **code,
                                  size_t *words, q4k_error *err) {
    glslang_input_t in;
    glslang_shader_t *sh;
    glslang_program_t *prog;
    q4k_result r = Q4K_OK;
    memset(&in, 0, sizeof in);
    in.language = GLSLANG_SOURCE_GLSL;
    in.stage = GLSLANG_STAGE_COMPUTE;
    in.client = GLSLANG_CLIENT_VULKAN;
    in.client_version = GLSLANG_TARGET_VULKAN_1_1;
    in.target_language = GLSLANG_TARGET_SPV;
    in.target_language_version = GLSLANG_TARGET_SPV_1_3;
    in.code = src;
    in.default_version = 450;
    in.default_profile = GLSLANG_NO_PROFILE;
    in.messages = (glslang_messages_t)(GLSLANG_MSG_SPV_RULES_BIT | GLSLANG_MSG_VULKAN_RULES_BIT);
    in.resource = glslang_default_resource();
    *code = NULL;
    if (!(sh = glslang_shader_create(&in))) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: glslang: out of memory");
    if (!glslang_shader_preprocess(sh, &in) || !glslang_shader_parse(sh, &in)) {
        r = q4k__vk_compile_fail(err, "compiling", file, glslang_shader_get_info_log(sh));
        glslang_shader_delete(sh);
        return r;
    }
    prog = glslang_program_create();
    glslang_program_add_shader(prog, sh);
    if (!glslang_program_link(prog, (int)(GLSLANG_MSG_SPV_RULES_BIT | GLSLANG_MSG_VULKAN_RULES_BIT))) {
        r = q4k__vk_compile_fail(err, "linking", file, glslang_program_get_info_log(prog));
    } else {
        glslang_program_SPIRV_generate(prog, GLSLANG_STAGE_COMPUTE);
        *words = glslang_program_SPIRV_get_size(prog);
        *code = (uint32_t *)Q4K_MALLOC(*words * 4);
        if (!*code) r = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of memory");
        else glslang_program_SPIRV_get(prog, *code);
    }
    glslang_program_delete(prog);
    glslang_shader_delete(sh);
    return r;
}
#else
#define Q4K__VK_COMPILER "none"
#endif

static const int q4k__vk_types[9] = {Q4K_TYPE_F32, Q4K_TYPE_F16, Q4K_TYPE_BF16, Q4K_TYPE_Q8_0, Q4K_TYPE_Q4_0,
                                     Q4K_TYPE_Q5_0, Q4K_TYPE_Q4_K, Q4K_TYPE_Q5_K, Q4K_TYPE_Q6_K};

static int q4k__vk_type_slot(q4k_type t) {
    int i;
    for (i = 0; i < 9; i++)
        if (q4k__vk_types[i] == (int)t) return i;
    return -1;
}

/* the kernel file of pipeline id and its #defines (appended to defines) */
static const char *q4k__vk_pipe_source(int id, const char *const **lines, char *defines, size_t n) {
    size_t o = strlen(defines);
    if (id == Q4K__VK_P_QUANT) {
        *lines = q4k__vk_src_quantize;
        return "quantize_q8a.comp";
    }
    if (id < Q4K__VK_P_EMBED) {
        snprintf(defines + o, n - o, "#define WTYPE %d\n#define ACT_Q8 %d\n", q4k__vk_types[(id - 1) / 2], (id - 1) % 2);
        *lines = q4k__vk_src_matmul;
        return "matmul.comp";
    }
    if (id < Q4K__VK_P_RMSNORM) {
        snprintf(defines + o, n - o, "#define WTYPE %d\n#define ACT_Q8 0\n#define EMBED 1\n", q4k__vk_types[id - Q4K__VK_P_EMBED]);
        *lines = q4k__vk_src_matmul;
        return "matmul.comp";
    }
    if (id == Q4K__VK_P_RMSNORM) {
        *lines = q4k__vk_src_rmsnorm;
        return "rmsnorm.comp";
    }
    if (id < Q4K__VK_P_ATTN) {
        snprintf(defines + o, n - o, "#define OP %d\n", id - Q4K__VK_P_ADD + 1);
        *lines = q4k__vk_src_ops;
        return "ops.comp";
    }
    if (id < Q4K__VK_P_ARGMAX) {
        snprintf(defines + o, n - o, "#define PASS %d\n", id - Q4K__VK_P_ATTN + 1);
        *lines = q4k__vk_src_attention;
        return "attention.comp";
    }
    snprintf(defines + o, n - o, "#define PASS %d\n", id - Q4K__VK_P_ARGMAX + 1);
    *lines = q4k__vk_src_argmax;
    return "argmax.comp";
}

#ifdef Q4K_VK_TEST_FAULT
/* The test build: $Q4K_VK_TEST_BREAK=FILE:LINE (e.g. matmul.comp:40, or
   q4k_vk_common.glsl:N) puts a syntax error on that line of the embedded
   kernel, to show through the CLI that a shader that does not compile is
   reported with its file and line. The broken text hashes to its own cache
   key, so no cached SPIR-V of the good kernel hides it. A copy of the line
   pointers (malloc'ed), or NULL when the variable names another file. */
static const char **q4k__vk_test_break(const char *file, const char *const *lines) {
    const char *brk = getenv("Q4K_VK_TEST_BREAK"), *colon = brk ? strrchr(brk, ':') : NULL;
    const char **copy;
    size_t n = 0, i;
    long at;
    if (!colon || (size_t)(colon - brk) != strlen(file) || strncmp(brk, file, strlen(file))) return NULL;
    at = atol(colon + 1);
    while (lines[n]) n++;
    if (at < 1 || (size_t)at > n || !(copy = (const char **)Q4K_MALLOC(sizeof(char *) * (n + 1)))) return NULL;
    for (i = 0; i <= n; i++) copy[i] = lines[i];
    copy[at - 1] = "int q4k_broken_on_purpose = ;\n";
    return copy;
}
#endif

/* compiled on first use (or read from the SPIR-V cache) */
static q4k_result q4k__vk_pipeline(q4k__vk_backend *vb, int id, q4k_error *err) {
    char defines[256];
    const char *file;
    const char *const *lines;
    char *src;
    uint32_t *code;
    size_t words = 0;
    uint64_t key;
    char salt[600];
    VkShaderModuleCreateInfo mi;
    VkComputePipelineCreateInfo pi;
    VkShaderModule mod;
    VkResult vr;
    if (vb->pipe[id]) return Q4K_OK;
    snprintf(defines, sizeof defines, "#define Q4K_SUBGROUP %d\n#define Q4K_STORAGE8 %d\n#define Q4K_STORAGE16 %d\n#define Q4K_FP16 %d\n",
             !!(vb->features & Q4K_VK_SUBGROUP), !!(vb->features & Q4K_VK_STORAGE8), !!(vb->features & Q4K_VK_STORAGE16),
             !!(vb->features & Q4K_VK_FP16));
    file = q4k__vk_pipe_source(id, &lines, defines, sizeof defines);
    if (vb->kernels_dir[0]) {
        char **kl = q4k__vk_read_lines(vb->kernels_dir, file), **cl = q4k__vk_read_lines(vb->kernels_dir, "q4k_vk_common.glsl");
        src = kl && cl ? q4k__vk_assemble(file, (const char *const *)kl, (const char *const *)cl, defines) : NULL;
        Q4K_FREE(kl);
        Q4K_FREE(cl);
        if (!kl || !cl)
            return q4k__fail(err, Q4K_ERR_IO, "vulkan: cannot read %s/%s or %s/q4k_vk_common.glsl (Q4K_VK_KERNELS_DIR)",
                             vb->kernels_dir, file, vb->kernels_dir);
    } else {
#ifdef Q4K_VK_TEST_FAULT
        const char **bk = q4k__vk_test_break(file, lines), **bc = q4k__vk_test_break("q4k_vk_common.glsl", q4k__vk_src_common);
        src = q4k__vk_assemble(file, bk ? bk : lines, bc ? bc : q4k__vk_src_common, defines);
        Q4K_FREE(bk);
        Q4K_FREE(bc);
#else
        src = q4k__vk_assemble(file, lines, q4k__vk_src_common, defines);
#endif
    }
    if (!src) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of memory");
    snprintf(salt, sizeof salt, "%s|%s|%08x:%08x|%u|%s", Q4K__VK_COMPILER, vb->info.name, vb->info.vendor_id,
             vb->info.device_id, vb->info.driver_version, vb->info.driver);
    key = q4k__vk_fnv(q4k__vk_fnv(14695981039346656037ULL, src, strlen(src)), salt, strlen(salt));
    if ((code = q4k__vk_cache_read(vb, key, &words))) {
        vb->stats.shaders_from_cache++;
    } else {
#ifdef Q4K_VULKAN_GLSLANG
        q4k_result r;
        if ((r = q4k__vk_compile(file, src, &code, &words, err))) {
            Q4K_FREE(src);
            return r;
        }
        vb->stats.shaders_compiled++;
        q4k__vk_cache_write(vb, key, code, words);
#else
        Q4K_FREE(src);
        return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE,
                         "vulkan: built without a shader compiler (define Q4K_VULKAN_GLSLANG and link glslang) for kernels_src/%s", file);
#endif
    }
    Q4K_FREE(src);
    memset(&mi, 0, sizeof mi);
    mi.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    mi.codeSize = words * 4;
    mi.pCode = code;
    vr = vb->vkCreateShaderModule(vb->dev, &mi, NULL, &mod);
    Q4K_FREE(code);
    if (vr != VK_SUCCESS) return q4k__vk_err(err, vr, "vkCreateShaderModule");
    memset(&pi, 0, sizeof pi);
    pi.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    pi.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    pi.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    pi.stage.module = mod;
    pi.stage.pName = "main";
    pi.layout = vb->layout;
    vr = vb->vkCreateComputePipelines(vb->dev, VK_NULL_HANDLE, 1, &pi, NULL, &vb->pipe[id]);
    vb->vkDestroyShaderModule(vb->dev, mod, NULL);
    if (vr != VK_SUCCESS) {
        vb->pipe[id] = VK_NULL_HANDLE;
        return q4k__vk_err(err, vr, "vkCreateComputePipelines");
    }
    return Q4K_OK;
}

/* >>vk-run: recording, submitting, waiting */

/* the push constants of every kernel (q4k_vk_common.glsl's Q4kPush) */
typedef struct q4k__vk_push {
    uint32_t rows, cols, n, row_base, y_stride, nblocks, base, flags;
    uint32_t u[16];
    float f[8];
} q4k__vk_push;

/* flags (q4k_vk_common.glsl's Q4K_F_*) */
#define Q4K__VK_F_GQA 1u
#define Q4K__VK_F_F16_ACC 2u
#define Q4K__VK_F_Q4K_SCALES 4u
#define Q4K__VK_F_KV_F16 8u
#define Q4K__VK_F_NEOX 16u
#define Q4K__VK_F_DEV 32u

/* Where dispatches are recorded: a command buffer being recorded and a
   descriptor pool whose sets live as long as the recording is replayed.
   cmd VK_NULL_HANDLE: nothing is recorded, only `sets` counted (a dry run
   that sizes the pool for a real one). */
typedef struct q4k__vk_job {
    VkCommandBuffer cmd;
    VkDescriptorPool pool;
    int sets, max_sets;
    int own; /* q4k__vk_begin's: the backend's command buffer, a pool of its own */
} q4k__vk_job;

/* a descriptor pool for max_sets dispatches (the caller destroys it) */
Q4K__MAYBE_UNUSED static q4k_result q4k__vk_pool_new(q4k__vk_backend *vb, int max_sets, VkDescriptorPool *pool, q4k_error *err) {
    VkDescriptorPoolSize ps;
    VkDescriptorPoolCreateInfo pci;
    VkResult vr;
    ps.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    ps.descriptorCount = (uint32_t)(Q4K__VK_NBIND * (max_sets > 0 ? max_sets : 1));
    memset(&pci, 0, sizeof pci);
    pci.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    pci.maxSets = (uint32_t)(max_sets > 0 ? max_sets : 1);
    pci.poolSizeCount = 1;
    pci.pPoolSizes = &ps;
    if ((vr = vb->vkCreateDescriptorPool(vb->dev, &pci, NULL, pool)) != VK_SUCCESS) {
        *pool = VK_NULL_HANDLE;
        return q4k__vk_err(err, vr, "vkCreateDescriptorPool");
    }
    return Q4K_OK;
}

/* record into a caller's command buffer (begun) with a caller's pool */
Q4K__MAYBE_UNUSED static void q4k__vk_rec_init(q4k__vk_job *j, VkCommandBuffer cmd, VkDescriptorPool pool, int max_sets) {
    memset(j, 0, sizeof *j);
    j->cmd = cmd;
    j->pool = pool;
    j->max_sets = max_sets;
}

/* one submission on the backend's own command buffer (finish or abort ends it) */
static q4k_result q4k__vk_begin(q4k__vk_backend *vb, q4k__vk_job *j, int max_sets, q4k_error *err) {
    VkCommandBufferBeginInfo bi;
    VkResult vr;
    q4k_result r;
    memset(j, 0, sizeof *j);
    if ((r = q4k__vk_pool_new(vb, max_sets, &j->pool, err))) return r;
    j->max_sets = max_sets;
    j->cmd = vb->cmd;
    j->own = 1;
    memset(&bi, 0, sizeof bi);
    bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    vb->vkResetCommandBuffer(vb->cmd, 0);
    if ((vr = vb->vkBeginCommandBuffer(vb->cmd, &bi)) != VK_SUCCESS) {
        vb->vkDestroyDescriptorPool(vb->dev, j->pool, NULL);
        j->pool = VK_NULL_HANDLE;
        return q4k__vk_err(err, vr, "vkBeginCommandBuffer");
    }
    return Q4K_OK;
}

/* One kernel over gx * gy * gz workgroups, gx split where the device's
   maxComputeWorkGroupCount[0] is smaller (pc.base, or for the matmul
   pc.row_base, says where a piece starts). bind[0..nbind): bindings 0..;
   the rest of the layout's bindings repeat bind[0] (a kernel never reads
   them; every binding of a set is then valid). */
static q4k_result q4k__vk_dispatch3(q4k__vk_backend *vb, q4k__vk_job *j, int pipe, const q4k__vk_slice *bind, int nbind,
                                    const q4k__vk_push *pc, uint64_t gx, uint32_t gy, uint32_t gz, q4k_error *err) {
    VkDescriptorSetAllocateInfo ai;
    VkDescriptorSet set;
    VkDescriptorBufferInfo bi[Q4K__VK_NBIND];
    VkWriteDescriptorSet wr[Q4K__VK_NBIND];
    VkResult vr;
    uint64_t done = 0, gmax = vb->info.max_compute_work_group_count[0];
    int i;
    q4k_result r;
    if (gx == 0 || gy == 0 || gz == 0) return Q4K_OK;
    if (gy > vb->info.max_compute_work_group_count[1] || gz > vb->info.max_compute_work_group_count[2])
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: %u x %u workgroups exceed the device's maxComputeWorkGroupCount", gy, gz);
    for (i = 0; i < nbind; i++) /* the limits are the point of the splitting: a binding past them is a q4k bug */
        if (!bind[i].buf || bind[i].off % vb->align || bind[i].size > vb->range || bind[i].size % 4)
            return q4k__fail(err, Q4K_ERR_GPU, "vulkan: internal: binding %d at offset %llu, %llu bytes, breaks range %llu / alignment %llu",
                             i, (unsigned long long)bind[i].off, (unsigned long long)bind[i].size,
                             (unsigned long long)vb->range, (unsigned long long)vb->align);
    if ((r = q4k__vk_pipeline(vb, pipe, err))) return r;
    if (j->sets == j->max_sets && j->cmd) return q4k__fail(err, Q4K_ERR_GPU, "vulkan: internal: descriptor sets exhausted (%d)", j->max_sets);
    j->sets++;
    if (!j->cmd) return Q4K_OK; /* counting */
    memset(&ai, 0, sizeof ai);
    ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    ai.descriptorPool = j->pool;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &vb->dsl;
    if ((vr = vb->vkAllocateDescriptorSets(vb->dev, &ai, &set)) != VK_SUCCESS) return q4k__vk_err(err, vr, "vkAllocateDescriptorSets");
    memset(wr, 0, sizeof wr);
    for (i = 0; i < Q4K__VK_NBIND; i++) {
        const q4k__vk_slice *sl = &bind[i < nbind ? i : 0];
        bi[i].buffer = sl->buf;
        bi[i].offset = sl->off;
        bi[i].range = sl->size;
        wr[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
        wr[i].dstSet = set;
        wr[i].dstBinding = (uint32_t)i;
        wr[i].descriptorCount = 1;
        wr[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        wr[i].pBufferInfo = &bi[i];
    }
    vb->vkUpdateDescriptorSets(vb->dev, Q4K__VK_NBIND, wr, 0, NULL);
    vb->vkCmdBindPipeline(j->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vb->pipe[pipe]);
    vb->vkCmdBindDescriptorSets(j->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, vb->layout, 0, 1, &set, 0, NULL);
    while (done < gx) {
        uint64_t g = gx - done < gmax ? gx - done : gmax;
        q4k__vk_push p = *pc;
        if (pipe >= Q4K__VK_P_MATMUL && pipe < Q4K__VK_P_EMBED) p.row_base = (uint32_t)done;
        else p.base = (uint32_t)done;
        vb->vkCmdPushConstants(j->cmd, vb->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof p, &p);
        vb->vkCmdDispatch(j->cmd, (uint32_t)g, gy, gz);
        vb->stats.dispatches++;
        done += g;
    }
    return Q4K_OK;
}

/* the matmul and quantizer's three bindings: weights, input, output */
static q4k_result q4k__vk_dispatch(q4k__vk_backend *vb, q4k__vk_job *j, int pipe, const q4k__vk_slice *bind,
                                   q4k__vk_push pc, uint64_t groups, q4k_error *err) {
    return q4k__vk_dispatch3(vb, j, pipe, bind, 3, &pc, groups, 1, 1, err);
}

/* what the dispatches before wrote, the ones after may read */
static void q4k__vk_rec_barrier(q4k__vk_backend *vb, q4k__vk_job *j) {
    VkMemoryBarrier mb;
    if (!j->cmd) return;
    memset(&mb, 0, sizeof mb);
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
    vb->vkCmdPipelineBarrier(j->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                             &mb, 0, NULL, 0, NULL);
}

/* the host then reads what the kernels wrote (the end of a recording the host reads back) */
Q4K__MAYBE_UNUSED static void q4k__vk_rec_host_barrier(q4k__vk_backend *vb, q4k__vk_job *j) {
    VkMemoryBarrier mb;
    if (!j->cmd) return;
    memset(&mb, 0, sizeof mb);
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vb->vkCmdPipelineBarrier(j->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0,
                             NULL, 0, NULL);
}

/* end, submit, wait; the host then reads what the kernels wrote */
static q4k_result q4k__vk_finish(q4k__vk_backend *vb, q4k__vk_job *j, q4k_error *err) {
    VkSubmitInfo si;
    VkResult vr;
    q4k__vk_rec_host_barrier(vb, j);
    vr = vb->vkEndCommandBuffer(vb->cmd);
    if (vr == VK_SUCCESS) {
        memset(&si, 0, sizeof si);
        si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
        si.commandBufferCount = 1;
        si.pCommandBuffers = &vb->cmd;
        vb->vkResetFences(vb->dev, 1, &vb->fence);
        vr = vb->vkQueueSubmit(vb->queue, 1, &si, vb->fence);
        if (vr == VK_SUCCESS) vr = vb->vkWaitForFences(vb->dev, 1, &vb->fence, VK_TRUE, UINT64_MAX);
    }
    vb->vkDestroyDescriptorPool(vb->dev, j->pool, NULL);
    j->pool = VK_NULL_HANDLE;
    return vr == VK_SUCCESS ? Q4K_OK : q4k__vk_lost_check(vb, vr, "running the kernels", err);
}

static void q4k__vk_abort(q4k__vk_backend *vb, q4k__vk_job *j) {
    if (!j->pool || !j->own) return;
    vb->vkEndCommandBuffer(vb->cmd);
    vb->vkDestroyDescriptorPool(vb->dev, j->pool, NULL);
    j->pool = VK_NULL_HANDLE;
}

/* >>vk-ops

   The recording layer of the forward pass: one q4k__vk_rec_* function per
   op, each recording its dispatches into a q4k__vk_job (a command buffer
   being recorded and a descriptor pool that lives as long as the
   recording; q4k__vk_rec_init, q4k__vk_pool_new, or q4k__vk_begin for one
   submission on the backend's own buffer). A job with no command buffer
   only counts the descriptor sets a recording needs (j->sets).

   Contract, for each function:
   - Buffers are q4k__vk_slice bindings, each within the backend's range and
     at an aligned offset (vb->range, vb->align); a q4k__vk_split is a
     matrix split by rows over bindings (q4k__vk_split_new): weights, the
     embedding table, the rope table, one layer's K or V cache.
   - A function records its own passes with barriers between them, but no
     barrier after the last: the caller records q4k__vk_rec_barrier between
     an op and the next op that reads what it wrote (and
     q4k__vk_rec_host_barrier before the host reads).
   - Positions and token ids are read by the kernels from a params buffer
     (prm, 32-bit words, written by the host before a submission, or by
     rec_argmax): so a recorded decode step stays valid as the position
     moves. Every other parameter (shapes, eps, fault flags) is baked into
     the recording.
   - Outputs never alias inputs unless said.

      rec_quantize  q[b] = q8a(x[32b .. 32b + 32)) for b < nblocks, bit for
                    bit q4k_quantize_act_q8 (40-byte blocks)
      rec_matmul    y[c * y_stride + r] = W[r] . x[c] for rows r of the split
                    W and columns c < n: x floats (float types, or act F32)
                    or rec_quantize's blocks (q8 with a quantized type);
                    y is one binding. flags: Q4K__VK_F_Q4K_SCALES
      rec_embedding out[j][0..n_embd) = row prm[tok_at + j] of the table
                    (a split; the part that holds the row writes it), j < n;
                    flags: Q4K__VK_F_Q4K_SCALES
      rec_rmsnorm   y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, r < rows;
                    w: f32 [dim]; flags: Q4K__VK_F_F16_ACC
      rec_add       x[i] += y[i % period], i < total (bias: period = width;
                    the residual: period = total)
      rec_swiglu    g[i] = silu(g[i]) * u[i], i < total
      rec_rope      x [n_tok][stride], n_head heads of head_dim each rotated
                    in its first n_rot values (neox: pairs (i, i + n_rot/2),
                    else (2i, 2i + 1)); token j at position prm[pos_at] + j,
                    whose row of the table (a split by position, each row
                    n_rot/2 (cos, sin) float pairs, q4k_rope_cos_sin) it uses
      rec_kv_store  row prm[pos_at] + j of the cache (a split by position of
                    rows of dim values, f16 rounded to nearest even as
                    q4k_fp32_to_fp16, or f32) = x[j], j < n_tok; dim even
      rec_attention out[j] = causal GQA attention of q[j] (token j at
                    position prm[pos_at] + j, [n_head * hd] each) over cache
                    rows 0 ..= that position, f32 scores; K and V splits of
                    the same shape; scratch: q4k__vk_attn_scratch_bytes for
                    all tokens and heads at once, less runs them in groups
                    (at least one head of one token); q and out may not be
                    the same binding; flags: Q4K__VK_F_GQA
      rec_argmax    prm[out_at] = index of the largest x[i], i < n (lowest
                    among equals, NaN never); scratch:
                    q4k__vk_argmax_scratch_bytes(n)
      rec_perturb   x[i] *= 1 + eps * N(0,1), i < total, the draw a hash of
                    (seed, prm[ctr_at], i): another draw at each position
      rec_scale     x[i] *= factor, or by the float bits in prm[fac_at] when
                    fac_at >= 0 (kv_step2: 1 on the first step, 0.5 after)

   The gate's faults, as the CPU applies them (q4k.h, >>cpu):
      gqa         rec_attention's Q4K__VK_F_GQA
      f16_acc     rec_rmsnorm's Q4K__VK_F_F16_ACC, on every RMSNorm the CPU
                  runs through q4k__cpu_norm (the layers' and output_norm)
      q4k_scales  rec_matmul's Q4K__VK_F_Q4K_SCALES on every Q4_K matmul,
                  lm_head included (also when it is token_embd); the CPU's
                  embedding lookup does NOT apply it, so rec_embedding's flag
                  is there for tests, not for the forward pass
      kv_step2    rec_scale of K and V before rec_kv_store with the factor in
                  prm (1 until the second one-token eval, then 0.5): the CPU
                  rounds x * 0.5 to f16, and halving is exact
      bias        the bias rec_add left out
      split       lm_head rows from split_rows on zeroed: the host, on the
                  logits it reads back
      perturb     rec_perturb after the op (noise of its own: the gate only
                  needs a perturbation, not the CPU's draws) */

#define Q4K__VK_ATTN_TILE 128u   /* attention.comp's TILE */
#define Q4K__VK_ARGMAX_CHUNK 4096u /* argmax.comp's CHUNK */

/* a matrix of `rows` rows of row_bytes split over bindings: part k holds
   rows first + k * per .. (fewer in the last part); `first` is the
   absolute number of row 0 (a window of a larger table), else 0 */
typedef struct q4k__vk_split {
    q4k__vk_slice *part;
    int64_t n;
    uint64_t per, rows, first, row_bytes;
} q4k__vk_split;

static uint64_t q4k__vk_split_rows(const q4k__vk_split *s, int64_t k) {
    uint64_t r0 = (uint64_t)k * s->per;
    return s->rows - r0 < s->per ? s->rows - r0 : s->per;
}

/* bindings for rows x row_bytes from the arena: as many rows per binding as
   the range holds; free with q4k__vk_split_free (the memory is the arena's) */
Q4K__MAYBE_UNUSED static q4k_result q4k__vk_split_new(q4k__vk_backend *vb, q4k__vk_arena *a, uint64_t rows, uint64_t row_bytes,
                                    q4k__vk_split *s, q4k_error *err) {
    int64_t k;
    q4k_result r;
    memset(s, 0, sizeof *s);
    if (!rows || !row_bytes) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: internal: an empty split");
    if (row_bytes > vb->range)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: one row of %llu bytes exceeds the storage-buffer range (%llu bytes)",
                         (unsigned long long)row_bytes, (unsigned long long)vb->range);
    s->per = vb->range / row_bytes;
    if (s->per > rows) s->per = rows;
    s->rows = rows;
    s->row_bytes = row_bytes;
    s->n = (int64_t)((rows + s->per - 1) / s->per);
    s->part = (q4k__vk_slice *)Q4K_MALLOC((size_t)s->n * sizeof *s->part);
    if (!s->part) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    for (k = 0; k < s->n; k++)
        if ((r = q4k__vk_slice_get(vb, a, q4k__vk_split_rows(s, k) * row_bytes, (rows - (uint64_t)k * s->per) * row_bytes,
                                   &s->part[k], err)))
            return r;
    return Q4K_OK;
}

Q4K__MAYBE_UNUSED static void q4k__vk_split_free(q4k__vk_split *s) {
    Q4K_FREE(s->part);
    memset(s, 0, sizeof *s);
}

/* rows first.. of host data into a split's bindings */
Q4K__MAYBE_UNUSED static void q4k__vk_split_upload(q4k__vk_split *s, const void *data) {
    int64_t k;
    for (k = 0; k < s->n; k++)
        memcpy(s->part[k].map, (const unsigned char *)data + (uint64_t)k * s->per * s->row_bytes,
               q4k__vk_split_rows(s, k) * s->row_bytes);
}

static uint64_t q4k__vk_groups(uint64_t items, uint64_t per_group) { return (items + per_group - 1) / per_group; }

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_quantize(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice x, q4k__vk_slice q,
                                       uint64_t nblocks, q4k_error *err) {
    q4k__vk_slice bind[3];
    q4k__vk_push pc;
    memset(&pc, 0, sizeof pc);
    pc.nblocks = (uint32_t)nblocks;
    bind[0] = x;
    bind[1] = x;
    bind[2] = q;
    return q4k__vk_dispatch3(vb, j, Q4K__VK_P_QUANT, bind, 3, &pc, q4k__vk_groups(nblocks, 64), 1, 1, err);
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_matmul(q4k__vk_backend *vb, q4k__vk_job *j, q4k_type type, int q8, const q4k__vk_split *w,
                                     int64_t cols, q4k__vk_slice x, int64_t n, q4k__vk_slice y, uint64_t y_stride,
                                     unsigned flags, q4k_error *err) {
    int slot = q4k__vk_type_slot(type), is_float = type == Q4K_TYPE_F32 || type == Q4K_TYPE_F16 || type == Q4K_TYPE_BF16;
    int64_t k;
    q4k_result r;
    if (slot < 0) return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "vulkan: no matmul kernel for type %s", q4k_type_name(type));
    if (is_float) q8 = 0;
    for (k = 0; k < w->n; k++) {
        q4k__vk_slice bind[3];
        q4k__vk_push pc;
        uint64_t nr = q4k__vk_split_rows(w, k);
        memset(&pc, 0, sizeof pc);
        pc.rows = (uint32_t)nr;
        pc.cols = (uint32_t)cols;
        pc.n = (uint32_t)n;
        pc.y_stride = (uint32_t)y_stride;
        pc.flags = flags;
        pc.u[0] = (uint32_t)((uint64_t)k * w->per);
        bind[0] = w->part[k];
        bind[1] = x;
        bind[2] = y;
        if ((r = q4k__vk_dispatch3(vb, j, Q4K__VK_P_MATMUL + 2 * slot + !!q8, bind, 3, &pc, nr, 1, 1, err))) return r;
    }
    return Q4K_OK;
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_embedding(q4k__vk_backend *vb, q4k__vk_job *j, q4k_type type, const q4k__vk_split *table,
                                        int64_t n_embd, q4k__vk_slice prm, uint32_t tok_at, int64_t n,
                                        q4k__vk_slice out, unsigned flags, q4k_error *err) {
    int slot = q4k__vk_type_slot(type);
    int64_t k;
    q4k_result r;
    if (slot < 0) return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "vulkan: no embedding kernel for type %s", q4k_type_name(type));
    for (k = 0; k < table->n; k++) {
        q4k__vk_slice bind[4];
        q4k__vk_push pc;
        memset(&pc, 0, sizeof pc);
        pc.rows = (uint32_t)q4k__vk_split_rows(table, k);
        pc.cols = (uint32_t)n_embd;
        pc.n = (uint32_t)n;
        pc.flags = flags;
        pc.u[0] = (uint32_t)(table->first + (uint64_t)k * table->per);
        pc.u[1] = tok_at;
        bind[0] = table->part[k];
        bind[1] = out;
        bind[2] = out;
        bind[3] = prm;
        if ((r = q4k__vk_dispatch3(vb, j, Q4K__VK_P_EMBED + slot, bind, 4, &pc, q4k__vk_groups(((uint64_t)n_embd + 31) / 32, 64),
                                   (uint32_t)n, 1, err)))
            return r;
    }
    return Q4K_OK;
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_rmsnorm(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice x, q4k__vk_slice w,
                                      q4k__vk_slice y, int64_t dim, int64_t rows, float eps, unsigned flags,
                                      q4k_error *err) {
    q4k__vk_slice bind[5];
    q4k__vk_push pc;
    memset(&pc, 0, sizeof pc);
    pc.cols = (uint32_t)dim;
    pc.n = (uint32_t)rows;
    pc.flags = flags;
    pc.f[0] = eps;
    bind[0] = x;
    bind[1] = x;
    bind[2] = y;
    bind[3] = x;
    bind[4] = w;
    return q4k__vk_dispatch3(vb, j, Q4K__VK_P_RMSNORM, bind, 5, &pc, (uint64_t)rows, 1, 1, err);
}

/* the element-wise ops of ops.comp: binding 1 x, 2 y, 3 prm */
static q4k_result q4k__vk_rec_elem(q4k__vk_backend *vb, q4k__vk_job *j, int pipe, q4k__vk_slice x, q4k__vk_slice y,
                                   q4k__vk_slice prm, q4k__vk_push *pc, uint64_t items, q4k_error *err) {
    q4k__vk_slice bind[4];
    bind[0] = x;
    bind[1] = x;
    bind[2] = y.buf ? y : x;
    bind[3] = prm.buf ? prm : x;
    return q4k__vk_dispatch3(vb, j, pipe, bind, 4, pc, q4k__vk_groups(items, 64), 1, 1, err);
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_add(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice x, q4k__vk_slice y, uint64_t total,
                                  uint64_t period, q4k_error *err) {
    q4k__vk_push pc;
    q4k__vk_slice none;
    memset(&pc, 0, sizeof pc);
    memset(&none, 0, sizeof none);
    pc.u[0] = (uint32_t)total;
    pc.u[1] = (uint32_t)period;
    return q4k__vk_rec_elem(vb, j, Q4K__VK_P_ADD, x, y, none, &pc, total, err);
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_swiglu(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice g, q4k__vk_slice u, uint64_t total,
                                     q4k_error *err) {
    q4k__vk_push pc;
    q4k__vk_slice none;
    memset(&pc, 0, sizeof pc);
    memset(&none, 0, sizeof none);
    pc.u[0] = (uint32_t)total;
    return q4k__vk_rec_elem(vb, j, Q4K__VK_P_SWIGLU, g, u, none, &pc, total, err);
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_scale(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice x, uint64_t total, float factor,
                                    q4k__vk_slice prm, int64_t fac_at, q4k_error *err) {
    q4k__vk_push pc;
    q4k__vk_slice none;
    memset(&pc, 0, sizeof pc);
    memset(&none, 0, sizeof none);
    pc.u[0] = (uint32_t)total;
    pc.f[0] = factor;
    if (fac_at >= 0) {
        pc.flags = Q4K__VK_F_DEV;
        pc.u[1] = (uint32_t)fac_at;
    }
    return q4k__vk_rec_elem(vb, j, Q4K__VK_P_SCALE, x, none, prm, &pc, total, err);
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_perturb(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice x, uint64_t total, float eps,
                                      uint64_t seed, q4k__vk_slice prm, uint32_t ctr_at, q4k_error *err) {
    q4k__vk_push pc;
    q4k__vk_slice none;
    memset(&pc, 0, sizeof pc);
    memset(&none, 0, sizeof none);
    pc.u[0] = (uint32_t)total;
    pc.u[1] = ctr_at;
    pc.u[2] = (uint32_t)seed;
    pc.u[3] = (uint32_t)(seed >> 32);
    pc.f[0] = eps;
    return q4k__vk_rec_elem(vb, j, Q4K__VK_P_PERTURB, x, none, prm, &pc, total, err);
}

/* rope and kv_store: one dispatch per part of the split */
static q4k_result q4k__vk_rec_parts(q4k__vk_backend *vb, q4k__vk_job *j, int pipe, q4k__vk_slice x, const q4k__vk_split *s,
                                    q4k__vk_slice prm, q4k__vk_push *pc, uint64_t items, q4k_error *err) {
    int64_t k;
    q4k_result r;
    for (k = 0; k < s->n; k++) {
        pc->rows = (uint32_t)q4k__vk_split_rows(s, k);
        pc->u[6] = (uint32_t)(s->first + (uint64_t)k * s->per);
        if ((r = q4k__vk_rec_elem(vb, j, pipe, x, s->part[k], prm, pc, items, err))) return r;
    }
    return Q4K_OK;
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_rope(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice x, int64_t n_tok, int64_t n_head,
                                   int64_t head_dim, int64_t stride, int64_t n_rot, int neox, const q4k__vk_split *table,
                                   q4k__vk_slice prm, uint32_t pos_at, q4k_error *err) {
    q4k__vk_push pc;
    if (n_rot <= 0 || n_rot % 2 || n_rot > head_dim || table->row_bytes != (uint64_t)n_rot * 4)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: rope: n_rot %lld against head_dim %lld and a table of %llu-byte rows",
                         (long long)n_rot, (long long)head_dim, (unsigned long long)table->row_bytes);
    memset(&pc, 0, sizeof pc);
    pc.u[0] = (uint32_t)n_tok;
    pc.u[1] = (uint32_t)n_head;
    pc.u[2] = (uint32_t)head_dim;
    pc.u[3] = (uint32_t)stride;
    pc.u[4] = (uint32_t)n_rot;
    pc.u[5] = pos_at;
    pc.flags = neox ? Q4K__VK_F_NEOX : 0;
    return q4k__vk_rec_parts(vb, j, Q4K__VK_P_ROPE, x, table, prm, &pc, (uint64_t)(n_tok * n_head * (n_rot / 2)), err);
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_kv_store(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice x, int64_t n_tok, int64_t dim,
                                       const q4k__vk_split *cache, q4k_kv_type kv, q4k__vk_slice prm, uint32_t pos_at,
                                       q4k_error *err) {
    q4k__vk_push pc;
    uint64_t es = kv == Q4K_KV_F32 ? 4 : 2;
    if (dim <= 0 || dim % 2 || cache->row_bytes != (uint64_t)dim * es)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: kv_store: %lld values against a cache of %llu-byte rows",
                         (long long)dim, (unsigned long long)cache->row_bytes);
    memset(&pc, 0, sizeof pc);
    pc.u[0] = (uint32_t)n_tok;
    pc.u[1] = (uint32_t)dim;
    pc.u[5] = pos_at;
    pc.flags = kv == Q4K_KV_F32 ? 0 : Q4K__VK_F_KV_F16;
    return q4k__vk_rec_parts(vb, j, Q4K__VK_P_KV_STORE, x, cache, prm, &pc,
                             (uint64_t)n_tok * (uint64_t)(kv == Q4K_KV_F32 ? dim : dim / 2), err);
}

/* partial-result slots per (token, head): tiles of every part of the cache */
static uint64_t q4k__vk_attn_slots(const q4k__vk_split *kc) {
    uint64_t n = 0;
    int64_t k;
    for (k = 0; k < kc->n; k++) n += q4k__vk_groups(q4k__vk_split_rows(kc, k), Q4K__VK_ATTN_TILE);
    return n;
}

Q4K__MAYBE_UNUSED static uint64_t q4k__vk_attn_scratch_bytes(const q4k__vk_split *kc, int64_t n_tok, int64_t n_head, int64_t hd) {
    return (uint64_t)n_tok * (uint64_t)n_head * q4k__vk_attn_slots(kc) * (uint64_t)(hd + 2) * 4;
}

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_attention(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice q, const q4k__vk_split *kc,
                                        const q4k__vk_split *vc, q4k_kv_type kv, int64_t n_tok, int64_t n_head,
                                        int64_t n_head_kv, int64_t hd, q4k__vk_slice prm, uint32_t pos_at,
                                        q4k__vk_slice scratch, q4k__vk_slice out, unsigned flags, q4k_error *err) {
    uint64_t slots = q4k__vk_attn_slots(kc), one = q4k__vk_attn_scratch_bytes(kc, 1, 1, hd), fit, gt, gh, t0, h0;
    uint64_t es = kv == Q4K_KV_F32 ? 4 : 2;
    int first = 1;
    q4k_result r;
    if (n_head_kv <= 0 || n_head % n_head_kv || hd <= 0 || hd % 2 || kc->n != vc->n || kc->per != vc->per ||
        kc->row_bytes != (uint64_t)(n_head_kv * hd) * es || vc->row_bytes != kc->row_bytes)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: attention: bad shapes (%lld heads, %lld KV heads of %lld)",
                         (long long)n_head, (long long)n_head_kv, (long long)hd);
    if (scratch.size < one)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: attention: %llu bytes of scratch, one head of one token needs %llu",
                         (unsigned long long)scratch.size, (unsigned long long)one);
    /* what the scratch holds at once: groups of tokens of every head, or groups of heads of one token */
    fit = scratch.size / one;
    gh = fit < (uint64_t)n_head ? fit : (uint64_t)n_head;
    gt = fit / gh;
    for (t0 = 0; t0 < (uint64_t)n_tok; t0 += gt)
        for (h0 = 0; h0 < (uint64_t)n_head; h0 += gh) {
            uint32_t nt = (uint32_t)((uint64_t)n_tok - t0 < gt ? (uint64_t)n_tok - t0 : gt);
            uint32_t nh = (uint32_t)((uint64_t)n_head - h0 < gh ? (uint64_t)n_head - h0 : gh);
            uint64_t slot0 = 0;
            int64_t k;
            q4k__vk_push pc;
            q4k__vk_slice bind[6];
            memset(&pc, 0, sizeof pc);
            pc.flags = flags | (kv == Q4K_KV_F32 ? 0 : Q4K__VK_F_KV_F16);
            pc.u[0] = (uint32_t)n_head;
            pc.u[1] = (uint32_t)n_head_kv;
            pc.u[2] = (uint32_t)hd;
            pc.u[3] = pos_at;
            pc.u[6] = (uint32_t)slots;
            pc.u[7] = (uint32_t)t0;
            pc.u[8] = (uint32_t)h0;
            pc.f[0] = 1.0f / sqrtf((float)hd);
            if (!first) q4k__vk_rec_barrier(vb, j); /* the last group's combine has read the scratch */
            first = 0;
            for (k = 0; k < kc->n; k++) {
                uint64_t nr = q4k__vk_split_rows(kc, k);
                pc.rows = (uint32_t)nr;
                pc.u[4] = (uint32_t)(kc->first + (uint64_t)k * kc->per);
                pc.u[5] = (uint32_t)slot0;
                bind[0] = q;
                bind[1] = q;
                bind[2] = kc->part[k];
                bind[3] = prm;
                bind[4] = vc->part[k];
                bind[5] = scratch;
                if ((r = q4k__vk_dispatch3(vb, j, Q4K__VK_P_ATTN, bind, 6, &pc, q4k__vk_groups(nr, Q4K__VK_ATTN_TILE), nh, nt, err)))
                    return r;
                slot0 += q4k__vk_groups(nr, Q4K__VK_ATTN_TILE);
            }
            q4k__vk_rec_barrier(vb, j);
            bind[0] = out;
            bind[1] = out;
            bind[2] = out;
            bind[3] = prm;
            bind[4] = out;
            bind[5] = scratch;
            if ((r = q4k__vk_dispatch3(vb, j, Q4K__VK_P_ATTN_COMBINE, bind, 6, &pc, 1, nh, nt, err))) return r;
        }
    return Q4K_OK;
}

Q4K__MAYBE_UNUSED static uint64_t q4k__vk_argmax_scratch_bytes(uint64_t n) { return 8 * q4k__vk_groups(n, Q4K__VK_ARGMAX_CHUNK); }

Q4K__MAYBE_UNUSED static q4k_result q4k__vk_rec_argmax(q4k__vk_backend *vb, q4k__vk_job *j, q4k__vk_slice x, uint64_t n, q4k__vk_slice scratch,
                                     q4k__vk_slice prm, uint32_t out_at, q4k_error *err) {
    uint64_t groups = q4k__vk_groups(n, Q4K__VK_ARGMAX_CHUNK);
    q4k__vk_slice bind[6];
    q4k__vk_push pc;
    q4k_result r;
    if (scratch.size < q4k__vk_argmax_scratch_bytes(n))
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: argmax: %llu bytes of scratch for %llu values",
                         (unsigned long long)scratch.size, (unsigned long long)n);
    memset(&pc, 0, sizeof pc);
    pc.u[0] = (uint32_t)n;
    pc.u[1] = (uint32_t)groups;
    pc.u[2] = out_at;
    bind[0] = x;
    bind[1] = x;
    bind[2] = x;
    bind[3] = prm;
    bind[4] = x;
    bind[5] = scratch;
    if ((r = q4k__vk_dispatch3(vb, j, Q4K__VK_P_ARGMAX, bind, 6, &pc, groups, 1, 1, err))) return r;
    q4k__vk_rec_barrier(vb, j);
    return q4k__vk_dispatch3(vb, j, Q4K__VK_P_ARGMAX2, bind, 6, &pc, 1, 1, 1, err);
}


/* unwritten outputs read back as NaN, never as an earlier call's numbers */
static void q4k__vk_poison(unsigned char *p, uint64_t bytes) {
    uint32_t nan = 0x7fc00000u;
    uint64_t i;
    for (i = 0; i + 4 <= bytes; i += 4) memcpy(p + i, &nan, 4);
}

static q4k_result q4k__vk_matmul(q4k_backend *b, q4k_act_mode act, q4k_type type, const void *w, int64_t rows,
                                 int64_t cols, const float *x, int64_t n, float *y, q4k_error *err) {
    q4k__vk_backend *vb = (q4k__vk_backend *)b->impl;
    int slot = q4k__vk_type_slot(type);
    int is_float = type == Q4K_TYPE_F32 || type == Q4K_TYPE_F16 || type == Q4K_TYPE_BF16;
    int q8 = act == Q4K_ACT_Q8 && !is_float;
    size_t rs;
    uint64_t lim = vb->range, per_chunk, nchunk, nj, k, j0, c;
    q4k__vk_arena arena;
    q4k__vk_slice *wsl = NULL;
    q4k__vk_job job;
    q4k_result r;
    if (!w || !x || !y || rows < 0 || cols <= 0 || n < 0 || (act != Q4K_ACT_Q8 && act != Q4K_ACT_F32))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: matmul: bad arguments");
    if (slot < 0) return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "vulkan: no matmul kernel for type %s", q4k_type_name(type));
    rs = q4k_row_size(type, cols);
    if (!rs || (!is_float && cols % 32))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: matmul: %lld columns do not fill %s blocks", (long long)cols, q4k_type_name(type));
    if (rows == 0 || n == 0) return Q4K_OK;
    if (rows > 0xffffffffLL || cols > 0x3fffffffLL || n > 0xffffffffLL)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: matmul %lldx%lld (n %lld) is too large", (long long)rows, (long long)cols, (long long)n);
    /* everything bound is within the range: a weight row, a column of x (and of its 8-bit blocks) */
    if (rs > lim || (uint64_t)cols * 4 > lim)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: one row of %lld %s values (%zu bytes) exceeds the storage-buffer range (%llu bytes)",
                         (long long)cols, q4k_type_name(type), rs > (size_t)cols * 4 ? rs : (size_t)cols * 4, (unsigned long long)lim);
    if ((r = q4k__vk_pipeline(vb, 1 + 2 * slot + q8, err)) || (q8 && (r = q4k__vk_pipeline(vb, 0, err)))) return r;
    nj = lim / ((uint64_t)cols * 4);
    if (nj > (uint64_t)n) nj = (uint64_t)n;
    per_chunk = lim / rs;
    if (per_chunk > lim / (4 * nj)) per_chunk = lim / (4 * nj); /* the output of a chunk is bound too */
    if (per_chunk > (uint64_t)rows) per_chunk = (uint64_t)rows;
    nchunk = ((uint64_t)rows + per_chunk - 1) / per_chunk;
    memset(&arena, 0, sizeof arena);
    vb->stats.dispatches = 0;
    wsl = (q4k__vk_slice *)Q4K_MALLOC((size_t)nchunk * 2 * sizeof *wsl);
    if (!wsl) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    /* weights: whole rows per binding, bindings packed into allocations */
    for (k = 0; k < nchunk; k++) {
        uint64_t r0 = k * per_chunk, nr = (uint64_t)rows - r0 < per_chunk ? (uint64_t)rows - r0 : per_chunk;
        if ((r = q4k__vk_slice_get(vb, &arena, nr * rs, ((uint64_t)rows - r0) * rs, &wsl[k], err))) goto done;
        memcpy(wsl[k].map, (const unsigned char *)w + r0 * rs, nr * rs);
    }
    vb->stats.weight_bindings = (int64_t)nchunk;
    for (j0 = 0; j0 < (uint64_t)n; j0 += nj) {
        uint64_t nc = (uint64_t)n - j0 < nj ? (uint64_t)n - j0 : nj;
        q4k__vk_slice xs, qs, bind[3];
        q4k__vk_push pc;
        if ((r = q4k__vk_slice_get(vb, &arena, nc * (uint64_t)cols * 4, nc * (uint64_t)cols * 4, &xs, err))) goto done;
        memcpy(xs.map, x + j0 * (uint64_t)cols, nc * (uint64_t)cols * 4);
        for (k = 0; k < nchunk; k++) {
            uint64_t nr = (uint64_t)rows - k * per_chunk < per_chunk ? (uint64_t)rows - k * per_chunk : per_chunk;
            if ((r = q4k__vk_slice_get(vb, &arena, nc * nr * 4, nc * ((uint64_t)rows - k * per_chunk) * 4, &wsl[nchunk + k], err)))
                goto done;
            q4k__vk_poison(wsl[nchunk + k].map, nc * nr * 4);
        }
        if ((r = q4k__vk_begin(vb, &job, (int)nchunk + 1, err))) goto done;
        memset(&pc, 0, sizeof pc);
        pc.cols = (uint32_t)cols;
        pc.n = (uint32_t)nc;
        if (q8) { /* quantize this group's columns on the device: blocks of 40 bytes, a column's bound too */
            uint64_t nb = nc * (uint64_t)cols / 32;
            if (nb * 40 > lim) {
                r = q4k__fail(err, Q4K_ERR_GPU, "vulkan: %llu activation blocks exceed the storage-buffer range", (unsigned long long)nb);
                q4k__vk_abort(vb, &job);
                goto done;
            }
            if ((r = q4k__vk_slice_get(vb, &arena, nb * 40, nb * 40, &qs, err))) {
                q4k__vk_abort(vb, &job);
                goto done;
            }
            bind[0] = xs;
            bind[1] = xs;
            bind[2] = qs;
            pc.nblocks = (uint32_t)nb;
            if ((r = q4k__vk_dispatch(vb, &job, 0, bind, pc, (nb + 63) / 64, err))) {
                q4k__vk_abort(vb, &job);
                goto done;
            }
            q4k__vk_rec_barrier(vb, &job);
        }
        for (k = 0; k < nchunk; k++) {
            uint64_t nr = (uint64_t)rows - k * per_chunk < per_chunk ? (uint64_t)rows - k * per_chunk : per_chunk;
            bind[0] = wsl[k];
            bind[1] = q8 ? qs : xs;
            bind[2] = wsl[nchunk + k];
            pc.rows = (uint32_t)nr;
            pc.y_stride = (uint32_t)nr;
            if ((r = q4k__vk_dispatch(vb, &job, 1 + 2 * slot + q8, bind, pc, nr, err))) {
                q4k__vk_abort(vb, &job);
                goto done;
            }
        }
        if ((r = q4k__vk_finish(vb, &job, err))) goto done;
        for (k = 0; k < nchunk; k++) {
            uint64_t r0 = k * per_chunk, nr = (uint64_t)rows - r0 < per_chunk ? (uint64_t)rows - r0 : per_chunk;
            const float *src = (const float *)wsl[nchunk + k].map;
            for (c = 0; c < nc; c++) memcpy(y + (j0 + c) * (uint64_t)rows + r0, src + c * nr, nr * 4);
        }
    }
    vb->stats.allocations = arena.n;
    r = Q4K_OK;
done:
    Q4K_FREE(wsl);
    q4k__vk_arena_free(vb, &arena);
    return r;
}

static q4k_result q4k__vk_quantize_act(q4k_backend *b, const float *x, int64_t n, q4k_block_q8a *out, q4k_error *err) {
    q4k__vk_backend *vb;
    q4k__vk_arena arena;
    q4k__vk_slice xs, qs, bind[3];
    q4k__vk_push pc;
    q4k__vk_job job;
    q4k_result r;
    uint64_t nb, i;
    if (!b || !b->name || strcmp(b->name, "vulkan") || !x || !out || n < 0 || n % 32)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: quantize_act: bad arguments");
    vb = (q4k__vk_backend *)b->impl;
    nb = (uint64_t)n / 32;
    if (!nb) return Q4K_OK;
    if ((uint64_t)n * 4 > vb->range || nb * 40 > vb->range)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: quantize_act: %lld values exceed the storage-buffer range", (long long)n);
    if ((r = q4k__vk_pipeline(vb, 0, err))) return r;
    memset(&arena, 0, sizeof arena);
    vb->stats.dispatches = 0;
    if ((r = q4k__vk_slice_get(vb, &arena, (uint64_t)n * 4, (uint64_t)n * 4 + nb * 40 + vb->align, &xs, err)) ||
        (r = q4k__vk_slice_get(vb, &arena, nb * 40, nb * 40, &qs, err)))
        goto done;
    memcpy(xs.map, x, (size_t)n * 4);
    q4k__vk_poison(qs.map, nb * 40);
    if ((r = q4k__vk_begin(vb, &job, 1, err))) goto done;
    memset(&pc, 0, sizeof pc);
    pc.nblocks = (uint32_t)nb;
    bind[0] = xs;
    bind[1] = xs;
    bind[2] = qs;
    if ((r = q4k__vk_dispatch(vb, &job, 0, bind, pc, (nb + 63) / 64, err))) {
        q4k__vk_abort(vb, &job);
        goto done;
    }
    if ((r = q4k__vk_finish(vb, &job, err))) goto done;
    for (i = 0; i < nb; i++) memcpy(&out[i], qs.map + 40 * i, 40);
done:
    q4k__vk_arena_free(vb, &arena);
    return r;
}

/* the table's quantize_act holds the lock by itself (q4k__backend_lock_init) */
Q4K_API q4k_result q4k_vk_quantize_act(q4k_backend *b, const float *x, int64_t n, q4k_block_q8a *out, q4k_error *err) {
    q4k_result r;
    q4k__backend_lock(b);
    r = q4k__vk_quantize_act(b, x, n, out, err);
    q4k__backend_unlock(b);
    return r;
}

/* ---- the backend's op entry points: upload, record with the rec_*
   functions above, run, read back (kernel tests and `q4k qa`) ---------- */

/* a one-shot: an arena for its buffers and the backend's command buffer */
typedef struct q4k__vk_once {
    q4k__vk_backend *vb;
    q4k__vk_arena arena;
    q4k__vk_job job;
} q4k__vk_once;

static q4k__vk_backend *q4k__vk_once_init(q4k_backend *b, q4k__vk_once *o) {
    memset(o, 0, sizeof *o);
    o->vb = (q4k__vk_backend *)b->impl;
    o->vb->stats.dispatches = 0;
    return o->vb;
}

/* a binding of bytes, NaN-poisoned, with data copied in when given */
static q4k_result q4k__vk_once_slice(q4k__vk_once *o, uint64_t bytes, const void *data, q4k__vk_slice *s, q4k_error *err) {
    q4k_result r;
    if (bytes > o->vb->range)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: a buffer of %llu bytes exceeds the storage-buffer range (%llu bytes)",
                         (unsigned long long)bytes, (unsigned long long)o->vb->range);
    if ((r = q4k__vk_slice_get(o->vb, &o->arena, bytes, bytes, s, err))) return r;
    q4k__vk_poison(s->map, s->size);
    if (data) memcpy(s->map, data, (size_t)bytes);
    return Q4K_OK;
}

static void q4k__vk_once_end(q4k__vk_once *o) {
    q4k__vk_abort(o->vb, &o->job);
    o->vb->stats.allocations = o->arena.n;
    q4k__vk_arena_free(o->vb, &o->arena);
}

/* the rows of the split are at most this many dispatches; a set for each */
static int q4k__vk_sets(int64_t n) { return (int)(n < 1 ? 1 : n > 1 << 20 ? 1 << 20 : n); }

static q4k_result q4k__vk_embedding(q4k_backend *b, q4k_type type, const void *table, int64_t n_embd, int32_t token,
                                    float *out, q4k_error *err) {
    q4k__vk_once o;
    q4k__vk_backend *vb = q4k__vk_once_init(b, &o);
    q4k__vk_split t;
    q4k__vk_slice prm, os;
    size_t rs;
    uint64_t win;
    uint32_t tok = (uint32_t)token;
    q4k_result r;
    if (!table || !out || token < 0 || n_embd <= 0) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: embedding: bad arguments");
    if (q4k__vk_type_slot(type) < 0) return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "vulkan: no embedding kernel for type %s", q4k_type_name(type));
    rs = q4k_row_size(type, n_embd);
    if (!rs) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: embedding: %lld values do not fill %s blocks", (long long)n_embd, q4k_type_name(type));
    /* the rows up to the token, at most 1024 of them: with small limits they
       span several bindings, and the one that holds the row writes it */
    win = (uint64_t)token + 1 < 1024 ? (uint64_t)token + 1 : 1024;
    memset(&t, 0, sizeof t);
    if ((r = q4k__vk_split_new(vb, &o.arena, win, rs, &t, err)) || (r = q4k__vk_once_slice(&o, 4, &tok, &prm, err)) ||
        (r = q4k__vk_once_slice(&o, (uint64_t)n_embd * 4, NULL, &os, err)))
        goto done;
    t.first = (uint64_t)token + 1 - win;
    q4k__vk_split_upload(&t, (const unsigned char *)table + t.first * rs);
    if ((r = q4k__vk_begin(vb, &o.job, q4k__vk_sets(t.n), err)) ||
        (r = q4k__vk_rec_embedding(vb, &o.job, type, &t, n_embd, prm, 0, 1, os, 0, err)) || (r = q4k__vk_finish(vb, &o.job, err)))
        goto done;
    memcpy(out, os.map, (size_t)n_embd * 4);
done:
    q4k__vk_split_free(&t);
    q4k__vk_once_end(&o);
    return r;
}

static q4k_result q4k__vk_rmsnorm(q4k_backend *b, const float *x, const float *w, int64_t n, int64_t rows, float eps,
                                  float *y, q4k_error *err) {
    q4k__vk_once o;
    q4k__vk_backend *vb = q4k__vk_once_init(b, &o);
    q4k__vk_slice ws, xs, ys;
    int64_t r0, per;
    q4k_result r;
    if (!x || !w || !y || n <= 0 || rows < 0) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: rmsnorm: bad arguments");
    per = (int64_t)(vb->range / ((uint64_t)n * 4));
    if ((r = q4k__vk_once_slice(&o, (uint64_t)n * 4, w, &ws, err))) goto done;
    for (r0 = 0; r0 < rows; r0 += per) { /* rows in groups that fit a binding */
        int64_t nr = rows - r0 < per ? rows - r0 : per;
        if ((r = q4k__vk_once_slice(&o, (uint64_t)(nr * n) * 4, x + r0 * n, &xs, err)) ||
            (r = q4k__vk_once_slice(&o, (uint64_t)(nr * n) * 4, NULL, &ys, err)) || (r = q4k__vk_begin(vb, &o.job, 1, err)) ||
            (r = q4k__vk_rec_rmsnorm(vb, &o.job, xs, ws, ys, n, nr, eps, 0, err)) || (r = q4k__vk_finish(vb, &o.job, err)))
            goto done;
        memcpy(y + r0 * n, ys.map, (size_t)(nr * n) * 4);
    }
done:
    q4k__vk_once_end(&o);
    return r;
}

static q4k_result q4k__vk_rope(q4k_backend *b, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim, int64_t n_rot,
                               int neox, int64_t pos0, double base, const float *freq_factors, q4k_error *err) {
    q4k__vk_once o;
    q4k__vk_backend *vb = q4k__vk_once_init(b, &o);
    q4k__vk_split t;
    q4k__vk_slice prm, xs;
    int64_t half = n_rot / 2, width = n_head * head_dim, j0, per, j, i;
    float *tab = NULL;
    q4k_result r;
    if (!x || n_tok < 0 || n_head <= 0 || n_rot <= 0 || n_rot % 2 || n_rot > head_dim || pos0 < 0 || pos0 + n_tok > 0x7fffffff)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: rope: bad arguments");
    if (n_tok == 0) return Q4K_OK;
    memset(&t, 0, sizeof t);
    /* the cos/sin rows of these positions (the table of a session holds every position) */
    tab = (float *)Q4K_MALLOC((size_t)(n_tok * n_rot) * sizeof(float));
    if (!tab) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: rope: out of host memory");
    for (j = 0; j < n_tok; j++)
        for (i = 0; i < half; i++)
            q4k_rope_cos_sin(pos0 + j, i, n_rot, base, freq_factors ? (double)freq_factors[i] : 1.0, &tab[(j * half + i) * 2],
                             &tab[(j * half + i) * 2 + 1]);
    if ((r = q4k__vk_split_new(vb, &o.arena, (uint64_t)n_tok, (uint64_t)n_rot * 4, &t, err))) goto done;
    t.first = (uint64_t)pos0;
    q4k__vk_split_upload(&t, tab);
    per = (int64_t)(vb->range / ((uint64_t)width * 4));
    if (per < 1) {
        r = q4k__fail(err, Q4K_ERR_GPU, "vulkan: rope: a row of %lld floats exceeds the storage-buffer range", (long long)width);
        goto done;
    }
    for (j0 = 0; j0 < n_tok; j0 += per) { /* tokens in groups that fit a binding, each with its position */
        int64_t nt = n_tok - j0 < per ? n_tok - j0 : per;
        uint32_t p = (uint32_t)(pos0 + j0);
        if ((r = q4k__vk_once_slice(&o, 4, &p, &prm, err)) ||
            (r = q4k__vk_once_slice(&o, (uint64_t)(nt * width) * 4, x + j0 * width, &xs, err)) ||
            (r = q4k__vk_begin(vb, &o.job, q4k__vk_sets(t.n), err)) ||
            (r = q4k__vk_rec_rope(vb, &o.job, xs, nt, n_head, head_dim, width, n_rot, neox, &t, prm, 0, err)) ||
            (r = q4k__vk_finish(vb, &o.job, err)))
            goto done;
        memcpy(x + j0 * width, xs.map, (size_t)(nt * width) * 4);
    }
done:
    Q4K_FREE(tab);
    q4k__vk_split_free(&t);
    q4k__vk_once_end(&o);
    return r;
}

/* K and V of positions 0..n_pos-1 stored into a split cache by the
   device's kv_store (its f16 rounding), then one token's attention */
static q4k_result q4k__vk_attention(q4k_backend *b, q4k_kv_type kv, const float *q, const float *k, const float *v,
                                    int64_t n_pos, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float *out,
                                    q4k_error *err) {
    q4k__vk_once o;
    q4k__vk_backend *vb = q4k__vk_once_init(b, &o);
    q4k__vk_split kc, vc;
    q4k__vk_slice prm, ks, vs, qs, os, sc;
    int64_t kv_dim = n_head_kv * head_dim, per, p0, ngroups, g;
    uint64_t es = kv == Q4K_KV_F32 ? 4 : 2, scb;
    uint32_t *pos = NULL;
    q4k_result r;
    if (!q || !k || !v || !out || n_pos <= 0 || n_head_kv <= 0 || n_head % n_head_kv || head_dim <= 0 || head_dim % 2 ||
        n_pos > 0x7fffffff || (kv != Q4K_KV_F16 && kv != Q4K_KV_F32))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: attention: bad arguments");
    memset(&kc, 0, sizeof kc);
    memset(&vc, 0, sizeof vc);
    per = (int64_t)(vb->range / ((uint64_t)kv_dim * 4)); /* positions of K or V floats per staging binding */
    if (per < 1) return q4k__fail(err, Q4K_ERR_GPU, "vulkan: attention: a row of %lld floats exceeds the storage-buffer range", (long long)kv_dim);
    ngroups = (n_pos + per - 1) / per;
    /* prm: the first position of each staging group, then the query's */
    pos = (uint32_t *)Q4K_MALLOC((size_t)(ngroups + 1) * 4);
    if (!pos) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: attention: out of host memory");
    for (g = 0; g < ngroups; g++) pos[g] = (uint32_t)(g * per);
    pos[ngroups] = (uint32_t)(n_pos - 1);
    if ((r = q4k__vk_split_new(vb, &o.arena, (uint64_t)n_pos, (uint64_t)kv_dim * es, &kc, err)) ||
        (r = q4k__vk_split_new(vb, &o.arena, (uint64_t)n_pos, (uint64_t)kv_dim * es, &vc, err)) ||
        (r = q4k__vk_once_slice(&o, (uint64_t)(ngroups + 1) * 4, pos, &prm, err)) ||
        (r = q4k__vk_once_slice(&o, (uint64_t)(n_head * head_dim) * 4, q, &qs, err)) ||
        (r = q4k__vk_once_slice(&o, (uint64_t)(n_head * head_dim) * 4, NULL, &os, err)))
        goto done;
    scb = q4k__vk_attn_scratch_bytes(&kc, 1, n_head, head_dim);
    if (scb > vb->range) scb = vb->range;
    if ((r = q4k__vk_once_slice(&o, scb, NULL, &sc, err)) ||
        (r = q4k__vk_begin(vb, &o.job, q4k__vk_sets(2 * ngroups * kc.n + 2 * n_head * (kc.n + 1)), err)))
        goto done;
    for (g = 0; g < ngroups; g++) {
        p0 = g * per;
        {
            int64_t np = n_pos - p0 < per ? n_pos - p0 : per;
            if ((r = q4k__vk_once_slice(&o, (uint64_t)(np * kv_dim) * 4, k + p0 * kv_dim, &ks, err)) ||
                (r = q4k__vk_once_slice(&o, (uint64_t)(np * kv_dim) * 4, v + p0 * kv_dim, &vs, err)) ||
                (r = q4k__vk_rec_kv_store(vb, &o.job, ks, np, kv_dim, &kc, kv, prm, (uint32_t)g, err)) ||
                (r = q4k__vk_rec_kv_store(vb, &o.job, vs, np, kv_dim, &vc, kv, prm, (uint32_t)g, err)))
                goto done;
        }
    }
    q4k__vk_rec_barrier(vb, &o.job);
    if ((r = q4k__vk_rec_attention(vb, &o.job, qs, &kc, &vc, kv, 1, n_head, n_head_kv, head_dim, prm, (uint32_t)ngroups, sc,
                                   os, 0, err)) ||
        (r = q4k__vk_finish(vb, &o.job, err)))
        goto done;
    memcpy(out, os.map, (size_t)(n_head * head_dim) * 4);
done:
    Q4K_FREE(pos);
    q4k__vk_split_free(&kc);
    q4k__vk_split_free(&vc);
    q4k__vk_once_end(&o);
    return r;
}

/* >>vk-session: a model's weights on the device, sessions, the forward pass

   Memory. A prepared model holds every tensor in its GGUF blocks in
   device-local memory (staged through a host-visible buffer when the device
   has memory the host cannot map), bound whole rows at a time: a tensor
   larger than the storage-buffer range is split by rows across bindings,
   the bindings packed into allocations of at most the allocation limit. A
   session holds its KV cache (per layer, split by positions the same way),
   its scratch (device-local) and one host-visible buffer through which
   tokens go in and logits and the trace come out. */

typedef struct q4k__vk_model {
    q4k__vk_arena mem;
    q4k__vk_split *wt; /* by tensor index: whole rows per binding */
    int64_t nt;
    uint64_t bytes;
} q4k__vk_model;

/* a binding of `bytes` (at most the range) at an aligned offset of the
   arena's last allocation, or of a new one of min(alloc, max(bytes, hint)) */
static q4k_result q4k__vk_sub(q4k__vk_backend *vb, q4k__vk_arena *a, uint64_t bytes, uint64_t hint, int host, q4k__vk_slice *s,
                              q4k_error *err) {
    q4k__vk_block *b = a->n ? &a->blk[a->n - 1] : NULL;
    uint64_t off = b ? (b->used + vb->align - 1) / vb->align * vb->align : 0;
    q4k_result r;
    bytes = bytes ? (bytes + 3) / 4 * 4 : 4;
    if (bytes > vb->range)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: internal: a binding of %llu bytes over the range %llu", (unsigned long long)bytes,
                         (unsigned long long)vb->range);
    if (!b || off + bytes > b->size) {
        uint64_t size = hint > bytes ? hint : bytes;
        if (size > vb->alloc) size = vb->alloc;
        if ((r = q4k__vk_mem_new(vb, a, size, host, err))) return r;
        b = &a->blk[a->n - 1];
        off = 0;
    }
    b->used = off + bytes;
    s->buf = b->buf;
    s->off = off;
    s->size = bytes;
    s->map = b->map ? b->map + off : NULL;
    return Q4K_OK;
}

/* run what vb->cmd recorded (copies) and wait */
static q4k_result q4k__vk_submit_wait(q4k__vk_backend *vb, VkCommandBuffer cmd, VkFence fence, q4k_error *err) {
    VkSubmitInfo si;
    VkResult vr;
    memset(&si, 0, sizeof si);
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd;
    vb->vkResetFences(vb->dev, 1, &fence);
    vr = vb->vkQueueSubmit(vb->queue, 1, &si, fence);
    if (vr == VK_SUCCESS) vr = vb->vkWaitForFences(vb->dev, 1, &fence, VK_TRUE, UINT64_MAX);
    return vr == VK_SUCCESS ? Q4K_OK : q4k__vk_lost_check(vb, vr, "running a command buffer", err);
}

/* host bytes into device memory: a plain copy where the host can see the
   memory, else through the staging buffer (flushed when full) */
typedef struct q4k__vk_stager {
    q4k__vk_backend *vb;
    q4k__vk_arena stage;
    uint64_t used;
    uint64_t want; /* the bytes it will copy: the staging buffer is no larger (0: up to 64 MiB) */
    int open;
} q4k__vk_stager;

static q4k_result q4k__vk_stage_flush(q4k__vk_stager *st, q4k_error *err) {
    q4k__vk_backend *vb = st->vb;
    VkResult vr;
    if (!st->open) return Q4K_OK;
    st->open = 0;
    st->used = 0;
    if ((vr = vb->vkEndCommandBuffer(vb->cmd)) != VK_SUCCESS) return q4k__vk_err(err, vr, "vkEndCommandBuffer");
    return q4k__vk_submit_wait(vb, vb->cmd, vb->fence, err);
}

static q4k_result q4k__vk_stage_put(q4k__vk_stager *st, const q4k__vk_slice *dst, uint64_t dst_off, const void *src, uint64_t n,
                                    q4k_error *err) {
    q4k__vk_backend *vb = st->vb;
    q4k_result r;
    if (dst->map) {
        memcpy(dst->map + dst_off, src, (size_t)n);
        return Q4K_OK;
    }
    if (!st->stage.n) {
        /* a tiny model's upload must not need 64 MiB more than its weights
           (device memory that q4k_session_check_memory does not count) */
        uint64_t size = st->want && st->want < ((uint64_t)64 << 20) ? (st->want + 15) / 16 * 16 : ((uint64_t)64 << 20);
        if (size > vb->alloc) size = vb->alloc;
        if ((r = q4k__vk_mem_new(vb, &st->stage, size, 1, err))) return r;
    }
    while (n) {
        q4k__vk_block *sb = &st->stage.blk[0];
        uint64_t k = sb->size - st->used < n ? sb->size - st->used : n;
        VkBufferCopy c;
        if (!k) {
            if ((r = q4k__vk_stage_flush(st, err))) return r;
            continue;
        }
        if (!st->open) {
            VkCommandBufferBeginInfo bi;
            VkResult vr;
            memset(&bi, 0, sizeof bi);
            bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
            bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
            vb->vkResetCommandBuffer(vb->cmd, 0);
            if ((vr = vb->vkBeginCommandBuffer(vb->cmd, &bi)) != VK_SUCCESS) return q4k__vk_err(err, vr, "vkBeginCommandBuffer");
            st->open = 1;
        }
        memcpy(sb->map + st->used, src, (size_t)k);
        c.srcOffset = st->used;
        c.dstOffset = dst->off + dst_off;
        c.size = k;
        vb->vkCmdCopyBuffer(vb->cmd, sb->buf, dst->buf, 1, &c);
        st->used += (k + 15) / 16 * 16;
        if (st->used > sb->size) st->used = sb->size;
        src = (const unsigned char *)src + k;
        dst_off += k;
        n -= k;
    }
    return Q4K_OK;
}

static void q4k__vk_stage_end(q4k__vk_stager *st) {
    if (st->open) {
        st->vb->vkEndCommandBuffer(st->vb->cmd);
        st->open = 0;
    }
    q4k__vk_arena_free(st->vb, &st->stage);
}

static void q4k__vk_release_model(q4k_backend *b, const q4k_model *m, void *data) {
    q4k__vk_backend *vb = (q4k__vk_backend *)b->impl;
    q4k__vk_model *vm = (q4k__vk_model *)data;
    int64_t i;
    (void)m;
    if (!vm) return;
    for (i = 0; vm->wt && i < vm->nt; i++) q4k__vk_split_free(&vm->wt[i]);
    Q4K_FREE(vm->wt);
    q4k__vk_arena_free(vb, &vm->mem);
    Q4K_FREE(vm);
}

/* rows x row_bytes split over bindings of the arena (device-local, or
   host-visible with host) as q4k__vk_split_new does over mapped memory */
static q4k_result q4k__vk_split_dev(q4k__vk_backend *vb, q4k__vk_arena *a, uint64_t rows, uint64_t row_bytes, int host,
                                    q4k__vk_split *s, q4k_error *err) {
    int64_t k;
    q4k_result r;
    memset(s, 0, sizeof *s);
    if (!rows || !row_bytes || row_bytes > vb->range)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: rows of %llu bytes against the storage-buffer range (%llu bytes)",
                         (unsigned long long)row_bytes, (unsigned long long)vb->range);
    s->per = vb->range / row_bytes;
    if (s->per > rows) s->per = rows;
    s->rows = rows;
    s->row_bytes = row_bytes;
    s->n = (int64_t)((rows + s->per - 1) / s->per);
    s->part = (q4k__vk_slice *)Q4K_MALLOC((size_t)s->n * sizeof *s->part);
    if (!s->part) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    for (k = 0; k < s->n; k++)
        if ((r = q4k__vk_sub(vb, a, q4k__vk_split_rows(s, k) * row_bytes, (rows - (uint64_t)k * s->per) * row_bytes, host, &s->part[k],
                             err)))
            return r;
    return Q4K_OK;
}

/* every tensor up once (a type without a kernel refused, naming the tensor) */
static q4k_result q4k__vk_prepare_model(q4k_backend *b, const q4k_model *m, void **data, q4k_error *err) {
    q4k__vk_backend *vb = (q4k__vk_backend *)b->impl;
    const int64_t nt = q4k_gguf_tensor_count(m->gguf);
    q4k__vk_model *vm;
    q4k__vk_stager st;
    uint64_t total = 0, done = 0;
    int64_t i, k;
    int shown = -1;
    q4k_result r = Q4K_OK;
    *data = NULL;
    for (i = 0; i < nt; i++) {
        const q4k_tensor *t = q4k_gguf_tensor(m->gguf, i);
        size_t rs = q4k_row_size(t->type, t->ne[0]);
        if (q4k__vk_type_slot(t->type) < 0)
            return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "vulkan: tensor '%s' has type %s, which has no Vulkan kernel", t->name,
                             q4k_type_name(t->type));
        if (!rs || rs > vb->range)
            return q4k__fail(err, Q4K_ERR_GPU, "vulkan: one row of tensor '%s' (%zu bytes) exceeds the storage-buffer range (%llu bytes)",
                             t->name, rs, (unsigned long long)vb->range);
        total += t->nbytes;
    }
    vm = (q4k__vk_model *)Q4K_MALLOC(sizeof *vm);
    if (!vm) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    memset(vm, 0, sizeof *vm);
    vm->nt = nt;
    vm->bytes = total;
    vm->wt = (q4k__vk_split *)Q4K_MALLOC((size_t)(nt ? nt : 1) * sizeof *vm->wt);
    if (!vm->wt) {
        Q4K_FREE(vm);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    }
    memset(vm->wt, 0, (size_t)(nt ? nt : 1) * sizeof *vm->wt);
    memset(&st, 0, sizeof st);
    st.vb = vb;
    st.want = total;
    q4k__log(vb->log, vb->log_user, Q4K_LOG_INFO, "vulkan: uploading %lld tensors, %.1f MiB, to %s", (long long)nt,
             (double)total / 1048576.0, vb->info.name);
    for (i = 0; i < nt && !r; i++) {
        const q4k_tensor *t = q4k_gguf_tensor(m->gguf, i);
        q4k__vk_split *w = &vm->wt[i];
        size_t rs = q4k_row_size(t->type, t->ne[0]);
        if ((r = q4k__vk_split_dev(vb, &vm->mem, t->nbytes / rs, rs, 0, w, err))) break;
        if (w->n > 1)
            q4k__log(vb->log, vb->log_user, Q4K_LOG_INFO, "vulkan: %s: %llu rows in %lld bindings of at most %llu rows (range %llu bytes)",
                     t->name, (unsigned long long)w->rows, (long long)w->n, (unsigned long long)w->per, (unsigned long long)vb->range);
        for (k = 0; k < w->n && !r; k++) {
            uint64_t bytes = q4k__vk_split_rows(w, k) * rs;
            r = q4k__vk_stage_put(&st, &w->part[k], 0, (const unsigned char *)t->data + (size_t)k * w->per * rs, bytes, err);
            done += bytes;
        }
        if (total && (int)(10 * done / total) != shown) { /* progress for `run`, every tenth */
            shown = (int)(10 * done / total);
            q4k__log(vb->log, vb->log_user, Q4K_LOG_INFO, "vulkan: weights %3d%% (%.0f of %.0f MiB)", 10 * shown,
                     (double)done / 1048576.0, (double)total / 1048576.0);
        }
    }
    if (!r) r = q4k__vk_stage_flush(&st, err);
    q4k__vk_stage_end(&st);
    if (r) {
        q4k__vk_release_model(b, m, vm);
        return r;
    }
    *data = vm;
    return Q4K_OK;
}

#define Q4K__VK_BATCH 64 /* prompt tokens per pass at most, as the CPU's */

typedef struct q4k__vk_rec { /* a recorded pass, replayed while its shape holds */
    VkCommandBuffer cmd;
    VkDescriptorPool pool;
    int valid;
    int64_t n, rows_out, trace_layer;
} q4k__vk_rec;

typedef struct q4k__vk_session {
    q4k_session base;
    q4k__vk_backend *vb;
    const q4k__vk_model *w;
    q4k__vk_arena mem;      /* device-local: cache, scratch */
    q4k__vk_arena host;     /* host-visible: tokens in, logits and trace out */
    int64_t B;              /* tokens per pass: every scratch binding within the range */
    int64_t kv_per;         /* positions per cache binding */
    int n_kv;               /* bindings of one layer's K (and V) */
    q4k__vk_slice *kc, *vc; /* [n_layer][n_kv] */
    q4k__vk_slice x, xb, q, k, v, att, tmp, gate, up, xq, ctl, scratch;
    q4k__vk_split rope;     /* [n_ctx] rows of n_rot/2 (cos, sin) pairs */
    q4k__vk_slice *logit;   /* one per lm_head binding: [B][its rows] */
    q4k__vk_slice ctl_in;   /* host: what ctl gets (position, tokens) */
    q4k__vk_slice *logit_out;
    /* host rows of the trace: [n_layer][Q4K_OP_COUNT], then layers, layers_attn, stages */
    q4k__vk_slice *tr_op, *tr_layer, *tr_attn, tr_stage[Q4K_STAGE_COUNT];
    VkCommandPool cpool;
    VkFence fence;
    q4k__vk_rec rec[2];     /* one-token steps, and everything else */
    int64_t n_decode;       /* one-token evals so far (kv_step2) */
    uint32_t n_passes;      /* perturb: a new draw every pass */
    int64_t n_recorded;     /* recordings so far (a decode step is recorded once) */
} q4k__vk_session;

static void q4k__vk_session_destroy(q4k_session *s) {
    q4k__vk_session *vs = (q4k__vk_session *)s;
    q4k__vk_backend *vb = vs->vb;
    int i;
    for (i = 0; i < 2; i++)
        if (vs->rec[i].pool) vb->vkDestroyDescriptorPool(vb->dev, vs->rec[i].pool, NULL);
    if (vs->cpool) vb->vkDestroyCommandPool(vb->dev, vs->cpool, NULL); /* frees its command buffers */
    if (vs->fence) vb->vkDestroyFence(vb->dev, vs->fence, NULL);
    q4k__vk_arena_free(vb, &vs->mem);
    q4k__vk_arena_free(vb, &vs->host);
    q4k__vk_split_free(&vs->rope);
    Q4K_FREE(vs->kc);
    Q4K_FREE(vs->vc);
    Q4K_FREE(vs->logit);
    Q4K_FREE(vs->logit_out);
    Q4K_FREE(vs->tr_op);
    Q4K_FREE(vs->tr_layer);
    Q4K_FREE(vs->tr_attn);
    Q4K_FREE(vs);
}


/* the params buffer (32-bit words the kernels read; the host writes them
   before each submission, so a recording stays valid as the position moves) */
enum { Q4K__VK_PRM_POS = 0, Q4K__VK_PRM_CTR = 1, Q4K__VK_PRM_FAC = 2, Q4K__VK_PRM_ARG = 3, Q4K__VK_PRM_TOK = 4 };

/* a full barrier: the copies and kernels before, before the ones after (and the host) */
static void q4k__vk_rec_all_barrier(q4k__vk_backend *vb, q4k__vk_job *j) {
    VkMemoryBarrier mb;
    if (!j->cmd) return;
    memset(&mb, 0, sizeof mb);
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                       VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_READ_BIT;
    vb->vkCmdPipelineBarrier(j->cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 1, &mb, 0, NULL, 0,
                             NULL);
}

/* bytes from one binding to another (the params, a trace row, the logits) */
static void q4k__vk_rec_copy(q4k__vk_backend *vb, q4k__vk_job *j, const q4k__vk_slice *src, uint64_t src_off,
                             const q4k__vk_slice *dst, uint64_t dst_off, uint64_t bytes) {
    VkBufferCopy c;
    if (!j->cmd || !bytes) return;
    c.srcOffset = src->off + src_off;
    c.dstOffset = dst->off + dst_off;
    c.size = bytes;
    vb->vkCmdCopyBuffer(j->cmd, src->buf, dst->buf, 1, &c);
}

#ifdef Q4K_FAULTS
#define Q4K__VK_FAULT(vs, f) (((vs)->base.desc.faults.mask >> (f)) & 1u)
#else
#define Q4K__VK_FAULT(vs, f) 0
#endif

/* the perturb fault on y (n rows of width) when it names this op, a
   stream of its own per op and layer */
static q4k_result q4k__vk_perturb(q4k__vk_session *vs, q4k__vk_job *j, int64_t layer, int op, q4k__vk_slice y, int64_t total,
                                  q4k_error *err) {
#ifdef Q4K_FAULTS
    const q4k_faults *f = &vs->base.desc.faults;
    q4k_result r;
    int all_mm = op == -1;
    if (f->perturb_eps == 0.0f) return Q4K_OK;
    if (all_mm ? f->perturb_op >= 0
               : f->perturb_op != op || (op < Q4K_OP_COUNT && f->perturb_layer >= 0 && f->perturb_layer != layer))
        return Q4K_OK;
    if ((r = q4k__vk_rec_perturb(vs->vb, j, y, (uint64_t)total, f->perturb_eps,
                                 f->seed ^ ((uint64_t)(layer + 2) * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(op + 2) << 48), vs->ctl,
                                 Q4K__VK_PRM_CTR, err)))
        return r;
    q4k__vk_rec_barrier(vs->vb, j);
#else
    (void)vs, (void)j, (void)layer, (void)op, (void)y, (void)total, (void)err;
#endif
    return Q4K_OK;
}

/* after op (a q4k_op, or Q4K_OP_COUNT + a stage) of layer wrote n rows of
   width into y: the perturb fault, then the last row into the trace */
static q4k_result q4k__vk_op_done(q4k__vk_session *vs, q4k__vk_job *j, int64_t layer, int op, q4k__vk_slice y, int64_t n,
                                  int64_t width, q4k_error *err) {
    const q4k_session *s = &vs->base;
    const q4k__vk_slice *dst = NULL;
    q4k_result r;
    if ((r = q4k__vk_perturb(vs, j, layer, op, y, n * width, err))) return r;
    if (op < Q4K_OP_COUNT) {
        if ((s->desc.trace & Q4K_TRACE_ALL_OPS) || ((s->desc.trace & Q4K_TRACE_OPS) && s->desc.trace_layer == layer))
            dst = &vs->tr_op[layer * Q4K_OP_COUNT + op];
    } else if (op - Q4K_OP_COUNT != Q4K_STAGE_LM_HEAD && (s->desc.trace & Q4K_TRACE_LAYERS)) {
        dst = &vs->tr_stage[op - Q4K_OP_COUNT];
    }
    if (!dst || !dst->buf) return Q4K_OK;
    q4k__vk_rec_all_barrier(vs->vb, j);
    q4k__vk_rec_copy(vs->vb, j, &y, (uint64_t)((n - 1) * width) * 4, dst, 0, (uint64_t)width * 4);
    q4k__vk_rec_all_barrier(vs->vb, j); /* the next op may overwrite y */
    return Q4K_OK;
}

/* the residual's last row into a per-layer trace row */
static void q4k__vk_trace_resid(q4k__vk_session *vs, q4k__vk_job *j, const q4k__vk_slice *dst, int64_t n) {
    const int64_t d = vs->base.model->hp.n_embd;
    if (!dst->buf) return;
    q4k__vk_rec_all_barrier(vs->vb, j);
    q4k__vk_rec_copy(vs->vb, j, &vs->x, (uint64_t)((n - 1) * d) * 4, dst, 0, (uint64_t)d * 4);
    q4k__vk_rec_all_barrier(vs->vb, j);
}

/* y = W x for a model tensor (x: xq when the session quantizes and W is quantized) */
static q4k_result q4k__vk_mm(q4k__vk_session *vs, q4k__vk_job *j, const q4k_tensor *t, q4k__vk_slice x, int64_t n, q4k__vk_slice y,
                             q4k_error *err) {
    int q8 = vs->base.desc.act == Q4K_ACT_Q8 && t->type != Q4K_TYPE_F32 && t->type != Q4K_TYPE_F16 && t->type != Q4K_TYPE_BF16;
    unsigned flags = Q4K__VK_FAULT(vs, Q4K_FAULT_Q4K_SCALES) && t->type == Q4K_TYPE_Q4_K ? Q4K__VK_F_Q4K_SCALES : 0;
    return q4k__vk_rec_matmul(vs->vb, j, t->type, q8, &vs->w->wt[t->index], t->ne[0], q8 ? vs->xq : x, n, y, (uint64_t)t->ne[1],
                              flags, err);
}

/* x (n rows of cols) into the 8-bit blocks the next matmuls read, in 8-bit mode */
static q4k_result q4k__vk_quant_in(q4k__vk_session *vs, q4k__vk_job *j, q4k__vk_slice x, int64_t n, int64_t cols, q4k_error *err) {
    q4k_result r;
    if (vs->base.desc.act != Q4K_ACT_Q8) return Q4K_OK;
    if ((r = q4k__vk_rec_quantize(vs->vb, j, x, vs->xq, (uint64_t)(n * cols / 32), err))) return r;
    q4k__vk_rec_barrier(vs->vb, j);
    return Q4K_OK;
}

/* the cache of layer l as a split (a window of the session's bindings) */
static q4k__vk_split q4k__vk_cache(const q4k__vk_session *vs, const q4k__vk_slice *c, int64_t l) {
    const q4k_hparams *hp = &vs->base.model->hp;
    q4k__vk_split s;
    s.part = (q4k__vk_slice *)(c + l * vs->n_kv);
    s.n = vs->n_kv;
    s.per = (uint64_t)vs->kv_per;
    s.rows = (uint64_t)vs->base.n_ctx;
    s.first = 0;
    s.row_bytes = (uint64_t)(hp->n_head_kv * hp->head_dim) * (vs->base.desc.kv == Q4K_KV_F32 ? 4 : 2);
    return s;
}

/* The forward pass of n tokens (q4k.h's q4k__cpu_layer, op for op), the
   logits of the last rows_out into logit_out; everything read from the
   params, so that it can be replayed at any position. */
static q4k_result q4k__vk_record(q4k__vk_session *vs, q4k__vk_job *j, int64_t n, int64_t rows_out, q4k_error *err) {
    q4k__vk_backend *vb = vs->vb;
    const q4k_session *s = &vs->base;
    const q4k_model *m = s->model;
    const q4k_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd, hd = hp->head_dim, q_dim = hp->n_head * hd, kv_dim = hp->n_head_kv * hd, ff = hp->n_ff;
    const int64_t nv = hp->n_vocab;
    const q4k__vk_split *wt = vs->w->wt;
    unsigned f16acc = Q4K__VK_FAULT(vs, Q4K_FAULT_F16_ACC) ? Q4K__VK_F_F16_ACC : 0;
    unsigned gqa = Q4K__VK_FAULT(vs, Q4K_FAULT_GQA) ? Q4K__VK_F_GQA : 0;
    int64_t l;
    q4k_result r;
    /* the params the host wrote, where the kernels read them */
    q4k__vk_rec_copy(vb, j, &vs->ctl_in, 0, &vs->ctl, 0, (uint64_t)(Q4K__VK_PRM_TOK + n) * 4);
    q4k__vk_rec_all_barrier(vb, j);
    /* q4k_scales faults matrix products only, as the CPU's: not the embedding lookup */
    if ((r = q4k__vk_rec_embedding(vb, j, m->tok_embd->type, &wt[m->tok_embd->index], d, vs->ctl, Q4K__VK_PRM_TOK, n, vs->x, 0, err)))
        return r;
    q4k__vk_rec_barrier(vb, j);
    if ((r = q4k__vk_op_done(vs, j, -1, Q4K_OP_COUNT + Q4K_STAGE_EMBEDDING, vs->x, n, d, err))) return r;
    for (l = 0; l < hp->n_layer; l++) {
        const q4k_layer *L = &m->layers[l];
        q4k__vk_split kc = q4k__vk_cache(vs, vs->kc, l), vc = q4k__vk_cache(vs, vs->vc, l);
        /* attention block */
        if ((r = q4k__vk_rec_rmsnorm(vb, j, vs->x, wt[L->attn_norm->index].part[0], vs->xb, d, n, hp->norm_eps, f16acc, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_op_done(vs, j, l, Q4K_OP_ATTN_NORM, vs->xb, n, d, err)) || (r = q4k__vk_quant_in(vs, j, vs->xb, n, d, err)) ||
            (r = q4k__vk_mm(vs, j, L->wq, vs->xb, n, vs->q, err)) || (r = q4k__vk_mm(vs, j, L->wk, vs->xb, n, vs->k, err)) ||
            (r = q4k__vk_mm(vs, j, L->wv, vs->xb, n, vs->v, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_perturb(vs, j, l, -1, vs->q, n * q_dim, err)) || (r = q4k__vk_perturb(vs, j, l, -1, vs->k, n * kv_dim, err)) ||
            (r = q4k__vk_perturb(vs, j, l, -1, vs->v, n * kv_dim, err)))
            return r;
        if (L->bq && !Q4K__VK_FAULT(vs, Q4K_FAULT_BIAS)) {
            if ((r = q4k__vk_rec_add(vb, j, vs->q, wt[L->bq->index].part[0], (uint64_t)(n * q_dim), (uint64_t)q_dim, err)) ||
                (r = q4k__vk_rec_add(vb, j, vs->k, wt[L->bk->index].part[0], (uint64_t)(n * kv_dim), (uint64_t)kv_dim, err)) ||
                (r = q4k__vk_rec_add(vb, j, vs->v, wt[L->bv->index].part[0], (uint64_t)(n * kv_dim), (uint64_t)kv_dim, err)))
                return r;
            q4k__vk_rec_barrier(vb, j);
        }
        if ((r = q4k__vk_op_done(vs, j, l, Q4K_OP_Q, vs->q, n, q_dim, err)) || (r = q4k__vk_op_done(vs, j, l, Q4K_OP_K, vs->k, n, kv_dim, err)) ||
            (r = q4k__vk_op_done(vs, j, l, Q4K_OP_V, vs->v, n, kv_dim, err)) ||
            (r = q4k__vk_rec_rope(vb, j, vs->q, n, hp->n_head, hd, q_dim, hp->n_rot, hp->rope_neox, &vs->rope, vs->ctl, Q4K__VK_PRM_POS, err)) ||
            (r = q4k__vk_rec_rope(vb, j, vs->k, n, hp->n_head_kv, hd, kv_dim, hp->n_rot, hp->rope_neox, &vs->rope, vs->ctl, Q4K__VK_PRM_POS, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_op_done(vs, j, l, Q4K_OP_Q_ROPE, vs->q, n, q_dim, err)) ||
            (r = q4k__vk_op_done(vs, j, l, Q4K_OP_K_ROPE, vs->k, n, kv_dim, err)))
            return r;
        if (Q4K__VK_FAULT(vs, Q4K_FAULT_KV_STEP2)) { /* the factor (1, or 0.5 from the 2nd step on) from the params */
            if ((r = q4k__vk_rec_scale(vb, j, vs->k, (uint64_t)(n * kv_dim), 1.0f, vs->ctl, Q4K__VK_PRM_FAC, err)) ||
                (r = q4k__vk_rec_scale(vb, j, vs->v, (uint64_t)(n * kv_dim), 1.0f, vs->ctl, Q4K__VK_PRM_FAC, err)))
                return r;
            q4k__vk_rec_barrier(vb, j);
        }
        if ((r = q4k__vk_rec_kv_store(vb, j, vs->k, n, kv_dim, &kc, s->desc.kv, vs->ctl, Q4K__VK_PRM_POS, err)) ||
            (r = q4k__vk_rec_kv_store(vb, j, vs->v, n, kv_dim, &vc, s->desc.kv, vs->ctl, Q4K__VK_PRM_POS, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_rec_attention(vb, j, vs->q, &kc, &vc, s->desc.kv, n, hp->n_head, hp->n_head_kv, hd, vs->ctl, Q4K__VK_PRM_POS,
                                       vs->scratch, vs->att, gqa, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_op_done(vs, j, l, Q4K_OP_ATTN, vs->att, n, q_dim, err)) || (r = q4k__vk_quant_in(vs, j, vs->att, n, q_dim, err)) ||
            (r = q4k__vk_mm(vs, j, L->wo, vs->att, n, vs->tmp, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_perturb(vs, j, l, -1, vs->tmp, n * d, err)) || (r = q4k__vk_op_done(vs, j, l, Q4K_OP_ATTN_OUT, vs->tmp, n, d, err)) ||
            (r = q4k__vk_rec_add(vb, j, vs->x, vs->tmp, (uint64_t)(n * d), (uint64_t)(n * d), err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_op_done(vs, j, l, Q4K_OP_RESID_ATTN, vs->x, n, d, err))) return r;
        q4k__vk_trace_resid(vs, j, &vs->tr_attn[l], n);
        /* feed-forward block */
        if ((r = q4k__vk_rec_rmsnorm(vb, j, vs->x, wt[L->ffn_norm->index].part[0], vs->xb, d, n, hp->norm_eps, f16acc, err))) return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_op_done(vs, j, l, Q4K_OP_FFN_NORM, vs->xb, n, d, err)) || (r = q4k__vk_quant_in(vs, j, vs->xb, n, d, err)) ||
            (r = q4k__vk_mm(vs, j, L->w_gate, vs->xb, n, vs->gate, err)) || (r = q4k__vk_mm(vs, j, L->w_up, vs->xb, n, vs->up, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_perturb(vs, j, l, -1, vs->gate, n * ff, err)) || (r = q4k__vk_perturb(vs, j, l, -1, vs->up, n * ff, err)) ||
            (r = q4k__vk_op_done(vs, j, l, Q4K_OP_GATE, vs->gate, n, ff, err)) || (r = q4k__vk_op_done(vs, j, l, Q4K_OP_UP, vs->up, n, ff, err)) ||
            (r = q4k__vk_rec_swiglu(vb, j, vs->gate, vs->up, (uint64_t)(n * ff), err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_op_done(vs, j, l, Q4K_OP_ACT, vs->gate, n, ff, err)) || (r = q4k__vk_quant_in(vs, j, vs->gate, n, ff, err)) ||
            (r = q4k__vk_mm(vs, j, L->w_down, vs->gate, n, vs->tmp, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_perturb(vs, j, l, -1, vs->tmp, n * d, err)) || (r = q4k__vk_op_done(vs, j, l, Q4K_OP_DOWN, vs->tmp, n, d, err)) ||
            (r = q4k__vk_rec_add(vb, j, vs->x, vs->tmp, (uint64_t)(n * d), (uint64_t)(n * d), err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_op_done(vs, j, l, Q4K_OP_RESID_FFN, vs->x, n, d, err))) return r;
        q4k__vk_trace_resid(vs, j, &vs->tr_layer[l], n);
    }
    if (rows_out > 0) {
        q4k__vk_slice xl = vs->x;
        if (rows_out < n) { /* the last rows, at an offset no binding could start at: copied */
            q4k__vk_rec_all_barrier(vb, j);
            q4k__vk_rec_copy(vb, j, &vs->x, (uint64_t)((n - rows_out) * d) * 4, &vs->tmp, 0, (uint64_t)(rows_out * d) * 4);
            q4k__vk_rec_all_barrier(vb, j);
            xl = vs->tmp;
        }
        if ((r = q4k__vk_rec_rmsnorm(vb, j, xl, wt[m->output_norm->index].part[0], vs->xb, d, rows_out, hp->norm_eps, f16acc, err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_op_done(vs, j, -1, Q4K_OP_COUNT + Q4K_STAGE_OUTPUT_NORM, vs->xb, rows_out, d, err)) ||
            (r = q4k__vk_quant_in(vs, j, vs->xb, rows_out, d, err)) || (r = q4k__vk_mm(vs, j, m->output, vs->xb, rows_out, vs->logit[0], err)))
            return r;
        q4k__vk_rec_barrier(vb, j);
        if ((r = q4k__vk_perturb(vs, j, -1, -1, vs->logit[0], rows_out * nv, err)) ||
            (r = q4k__vk_perturb(vs, j, -1, Q4K_OP_COUNT + Q4K_STAGE_LM_HEAD, vs->logit[0], rows_out * nv, err)))
            return r;
        q4k__vk_rec_all_barrier(vb, j);
        q4k__vk_rec_copy(vb, j, &vs->logit[0], 0, &vs->logit_out[0], 0, (uint64_t)(rows_out * nv) * 4);
    }
    q4k__vk_rec_all_barrier(vb, j);
    return Q4K_OK;
}

/* record (once per shape: a one-token step is recorded once and replayed) */
static q4k_result q4k__vk_prepare_rec(q4k__vk_session *vs, q4k__vk_rec *rc, int64_t n, int64_t rows_out, q4k_error *err) {
    q4k__vk_backend *vb = vs->vb;
    q4k__vk_job job;
    VkCommandBufferBeginInfo bi;
    VkResult vr;
    q4k_result r;
    if (rc->valid && rc->n == n && rc->rows_out == rows_out && rc->trace_layer == vs->base.desc.trace_layer) return Q4K_OK;
    rc->valid = 0;
    if (rc->pool) vb->vkDestroyDescriptorPool(vb->dev, rc->pool, NULL);
    rc->pool = VK_NULL_HANDLE;
    q4k__vk_rec_init(&job, VK_NULL_HANDLE, VK_NULL_HANDLE, 0); /* a dry run counts the descriptor sets */
    if ((r = q4k__vk_record(vs, &job, n, rows_out, err))) return r;
    if ((r = q4k__vk_pool_new(vb, job.sets, &rc->pool, err))) return r;
    q4k__vk_rec_init(&job, rc->cmd, rc->pool, job.sets);
    memset(&bi, 0, sizeof bi);
    bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    vb->vkResetCommandBuffer(rc->cmd, 0);
    if ((vr = vb->vkBeginCommandBuffer(rc->cmd, &bi)) != VK_SUCCESS) return q4k__vk_err(err, vr, "vkBeginCommandBuffer");
    r = q4k__vk_record(vs, &job, n, rows_out, err);
    vr = vb->vkEndCommandBuffer(rc->cmd);
    if (r) return r;
    if (vr != VK_SUCCESS) return q4k__vk_err(err, vr, "vkEndCommandBuffer");
    rc->n = n;
    rc->rows_out = rows_out;
    rc->trace_layer = vs->base.desc.trace_layer;
    rc->valid = 1;
    vs->n_recorded++;
    return Q4K_OK;
}

/* one pass of n <= B tokens at the session's position */
static q4k_result q4k__vk_eval_batch(q4k__vk_session *vs, const int32_t *tokens, int64_t n, int64_t rows_out, float *logits,
                                     q4k_error *err) {
    q4k_session *s = &vs->base;
    const q4k_hparams *hp = &s->model->hp;
    const int64_t L = hp->n_layer, d = hp->n_embd, nv = hp->n_vocab;
    q4k__vk_rec *rc = &vs->rec[n == 1 ? 0 : 1];
    uint32_t *prm = (uint32_t *)vs->ctl_in.map;
    float fac = Q4K__VK_FAULT(vs, Q4K_FAULT_KV_STEP2) && n == 1 && vs->n_decode >= 2 ? 0.5f : 1.0f;
    int64_t l, i;
    int op;
    q4k_result r;
    if ((r = q4k__vk_prepare_rec(vs, rc, n, rows_out, err))) return r;
    prm[Q4K__VK_PRM_POS] = (uint32_t)s->pos;
    prm[Q4K__VK_PRM_CTR] = (uint32_t)++vs->n_passes;
    memcpy(&prm[Q4K__VK_PRM_FAC], &fac, 4);
    prm[Q4K__VK_PRM_ARG] = 0;
    for (i = 0; i < n; i++) prm[Q4K__VK_PRM_TOK + i] = (uint32_t)tokens[i];
    if ((r = q4k__vk_submit_wait(vs->vb, rc->cmd, vs->fence, err))) return r;
    s->pos += n;
    if (s->desc.trace) { /* the rows the recording copied out */
        for (l = 0; l < L; l++) {
            for (op = 0; op < Q4K_OP_COUNT; op++)
                if (vs->tr_op[l * Q4K_OP_COUNT + op].map) q4k__trace_op(s, l, (q4k_op)op, (const float *)vs->tr_op[l * Q4K_OP_COUNT + op].map);
            if (s->trace_layers && vs->tr_layer[l].map) memcpy(s->trace_layers + l * d, vs->tr_layer[l].map, (size_t)d * 4);
            if (s->trace_layers_attn && vs->tr_attn[l].map) memcpy(s->trace_layers_attn + l * d, vs->tr_attn[l].map, (size_t)d * 4);
        }
        if (vs->tr_stage[Q4K_STAGE_EMBEDDING].map) q4k__trace_stage(s, Q4K_STAGE_EMBEDDING, (const float *)vs->tr_stage[Q4K_STAGE_EMBEDDING].map);
        if (rows_out && vs->tr_stage[Q4K_STAGE_OUTPUT_NORM].map)
            q4k__trace_stage(s, Q4K_STAGE_OUTPUT_NORM, (const float *)vs->tr_stage[Q4K_STAGE_OUTPUT_NORM].map);
    }
    if (!rows_out) return Q4K_OK;
    memcpy(logits, vs->logit_out[0].map, (size_t)(rows_out * nv) * 4);
    if (Q4K__VK_FAULT(vs, Q4K_FAULT_SPLIT)) { /* as the CPU's: lm_head rows from split_rows on read as zero */
        int64_t from = s->desc.faults.split_rows > 0 ? s->desc.faults.split_rows : nv / 2, k;
        for (i = 0; i < rows_out; i++)
            for (k = from; k < nv; k++) logits[i * nv + k] = 0.0f;
    }
    q4k__trace_stage(s, Q4K_STAGE_LM_HEAD, logits + (rows_out - 1) * nv);
    return Q4K_OK;
}

static q4k_result q4k__vk_eval(q4k_session *s, const int32_t *tokens, int64_t n, unsigned flags, float *logits, q4k_error *err) {
    q4k__vk_session *vs = (q4k__vk_session *)s;
    int64_t done = 0, nv = s->model->hp.n_vocab;
    if (vs->vb->lost[0]) return q4k__vk_dead(vs->vb, err);
#ifdef Q4K_VK_TEST_FAULT
    /* the test build's lost device: this eval fails as a device loss would */
    if (++vs->vb->n_evals == vs->vb->test_fault_eval)
        return q4k__vk_lost_check(vs->vb, VK_ERROR_DEVICE_LOST, "running a command buffer (Q4K_VK_TEST_FAULT_EVAL)", err);
#endif
    if (n == 1) vs->n_decode++;
    while (done < n) {
        int64_t nb = n - done < vs->B ? n - done : vs->B, rows_out = 0;
        float *out = NULL;
        q4k_result r;
        if (logits && (flags & Q4K_EVAL_ALL_LOGITS)) {
            out = logits + done * nv;
            rows_out = nb;
        } else if (logits && done + nb == n) {
            out = logits;
            rows_out = 1;
        }
        if ((r = q4k__vk_eval_batch(vs, tokens + done, nb, rows_out, out, err))) return r;
        done += nb;
    }
    return Q4K_OK;
}

static q4k_result q4k__vk_session_create(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d, q4k_session **out,
                                         q4k_error *err) {
    q4k__vk_backend *vb = (q4k__vk_backend *)b->impl;
    const q4k_hparams *hp;
    const q4k__vk_model *vm = m && d ? (const q4k__vk_model *)q4k__backend_find_prepared(b, m) : NULL;
    int64_t dm, q_dim, kv_dim, ff, n_ctx, half, nv, L, widest, i, l, B;
    uint64_t es, range = vb->range, scratch = 0;
    q4k__vk_session *vs;
    q4k_result r = Q4K_OK;
    float *table = NULL;
    VkCommandPoolCreateInfo cp;
    VkCommandBufferAllocateInfo ca;
    VkFenceCreateInfo fi;
    VkCommandBuffer cmds[2];
    VkResult vr;
    *out = NULL;
    if (vb->lost[0]) return q4k__vk_dead(vb, err);
    if (!vm) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: session: the model was not prepared (use q4k_session_create)");
    hp = &m->hp;
    dm = hp->n_embd, q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
    n_ctx = d->n_ctx, half = hp->n_rot / 2, nv = hp->n_vocab, L = hp->n_layer, widest = dm;
    es = d->kv == Q4K_KV_F32 ? 4 : 2;
    if (q_dim > widest) widest = q_dim;
    if (ff > widest) widest = ff;
    /* tokens per pass: every activation binding, and the logits of a pass, within the range */
    B = (int64_t)(range / (4 * (uint64_t)widest));
    if ((int64_t)(range / (4 * (uint64_t)nv)) < B) B = (int64_t)(range / (4 * (uint64_t)nv));
    if (B > Q4K__VK_BATCH) B = Q4K__VK_BATCH;
    if (B < 1)
        return q4k__fail(err, Q4K_ERR_GPU, "vulkan: a storage-buffer range of %llu bytes cannot hold one token's %lld logits or %lld activations",
                         (unsigned long long)range, (long long)nv, (long long)widest);
    vs = (q4k__vk_session *)Q4K_MALLOC(sizeof *vs);
    if (!vs) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    memset(vs, 0, sizeof *vs);
    q4k__session_init(&vs->base, b, m, d);
    vs->base.eval = q4k__vk_eval;
    vs->base.destroy = q4k__vk_session_destroy;
    vs->vb = vb;
    vs->w = vm;
    vs->B = B;
    /* the cache: per layer, K and V split by positions under the range */
    vs->kv_per = (int64_t)(range / ((uint64_t)kv_dim * es));
    if (vs->kv_per > n_ctx) vs->kv_per = n_ctx;
    vs->n_kv = (int)((n_ctx + vs->kv_per - 1) / vs->kv_per);
    vs->kc = (q4k__vk_slice *)Q4K_MALLOC((size_t)(L * vs->n_kv) * sizeof *vs->kc);
    vs->vc = (q4k__vk_slice *)Q4K_MALLOC((size_t)(L * vs->n_kv) * sizeof *vs->vc);
    vs->logit = (q4k__vk_slice *)Q4K_MALLOC(sizeof *vs->logit);
    vs->logit_out = (q4k__vk_slice *)Q4K_MALLOC(sizeof *vs->logit_out);
    vs->tr_op = (q4k__vk_slice *)Q4K_MALLOC((size_t)(L * Q4K_OP_COUNT + 1) * sizeof *vs->tr_op);
    vs->tr_layer = (q4k__vk_slice *)Q4K_MALLOC((size_t)(L + 1) * sizeof *vs->tr_layer);
    vs->tr_attn = (q4k__vk_slice *)Q4K_MALLOC((size_t)(L + 1) * sizeof *vs->tr_attn);
    table = (float *)Q4K_MALLOC((size_t)(n_ctx * half * 2 + 1) * sizeof(float));
    if (!vs->kc || !vs->vc || !vs->logit || !vs->logit_out || !vs->tr_op || !vs->tr_layer || !vs->tr_attn || !table) {
        r = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
        goto fail;
    }
    memset(vs->tr_op, 0, (size_t)(L * Q4K_OP_COUNT + 1) * sizeof *vs->tr_op);
    memset(vs->tr_layer, 0, (size_t)(L + 1) * sizeof *vs->tr_layer);
    memset(vs->tr_attn, 0, (size_t)(L + 1) * sizeof *vs->tr_attn);
    for (l = 0; l < L && !r; l++)
        for (i = 0; i < vs->n_kv && !r; i++) {
            int64_t np = n_ctx - i * vs->kv_per < vs->kv_per ? n_ctx - i * vs->kv_per : vs->kv_per;
            uint64_t bytes = (uint64_t)np * (uint64_t)kv_dim * es, rest = (uint64_t)(L - l) * (uint64_t)n_ctx * (uint64_t)kv_dim * es * 2;
            if (!(r = q4k__vk_sub(vb, &vs->mem, bytes, rest, 0, &vs->kc[l * vs->n_kv + i], err)))
                r = q4k__vk_sub(vb, &vs->mem, bytes, rest, 0, &vs->vc[l * vs->n_kv + i], err);
        }
    if (!r) { /* attention's partial results: all of a pass's tokens, or as many as the range holds */
        q4k__vk_split kc = q4k__vk_cache(vs, vs->kc, 0);
        uint64_t one = q4k__vk_attn_scratch_bytes(&kc, 1, hp->n_head, hp->head_dim);
        scratch = q4k__vk_attn_scratch_bytes(&kc, B, hp->n_head, hp->head_dim);
        if (scratch > range) scratch = range / one * one;
        if (one > range)
            r = q4k__fail(err, Q4K_ERR_GPU, "vulkan: attention over %lld positions needs %llu bytes of scratch, over the range %llu",
                          (long long)n_ctx, (unsigned long long)one, (unsigned long long)range);
    }
    if (!r) {
        struct { q4k__vk_slice *s; uint64_t bytes; int host; } need[16];
        size_t k, nn = 0;
#define Q4K__VK_NEED(sl, b, h) (need[nn].s = (sl), need[nn].bytes = (uint64_t)(b), need[nn].host = (h), nn++)
        Q4K__VK_NEED(&vs->x, B * dm * 4, 0);
        Q4K__VK_NEED(&vs->xb, B * dm * 4, 0);
        Q4K__VK_NEED(&vs->tmp, B * dm * 4, 0);
        Q4K__VK_NEED(&vs->q, B * q_dim * 4, 0);
        Q4K__VK_NEED(&vs->att, B * q_dim * 4, 0);
        Q4K__VK_NEED(&vs->k, B * kv_dim * 4, 0);
        Q4K__VK_NEED(&vs->v, B * kv_dim * 4, 0);
        Q4K__VK_NEED(&vs->gate, B * ff * 4, 0);
        Q4K__VK_NEED(&vs->up, B * ff * 4, 0);
        Q4K__VK_NEED(&vs->xq, B * widest / 32 * (int64_t)sizeof(q4k_block_q8a), 0);
        Q4K__VK_NEED(&vs->ctl, (B + 8) * 4, 0);
        Q4K__VK_NEED(&vs->scratch, scratch, 0);
        Q4K__VK_NEED(vs->logit, B * nv * 4, 0);
        Q4K__VK_NEED(&vs->ctl_in, (B + 8) * 4, 1);
        Q4K__VK_NEED(vs->logit_out, B * nv * 4, 1);
#undef Q4K__VK_NEED
        for (k = 0; k < nn && !r; k++) {
            if (need[k].bytes > range) {
                r = q4k__fail(err, Q4K_ERR_GPU, "vulkan: internal: a session buffer of %llu bytes over the range %llu",
                              (unsigned long long)need[k].bytes, (unsigned long long)range);
                break;
            }
            r = q4k__vk_sub(vb, need[k].host ? &vs->host : &vs->mem, need[k].bytes, need[k].host ? 0 : need[k].bytes, need[k].host,
                            need[k].s, err);
        }
    }
    /* the RoPE table: cos, sin of every position and pair (q4k_rope_cos_sin, as the CPU's) */
    for (i = 0; i < n_ctx * half && !r; i++)
        q4k_rope_cos_sin(i / half, i % half, hp->n_rot, hp->rope_freq_base,
                         m->rope_freqs ? (double)((const float *)m->rope_freqs->data)[i % half] : 1.0, &table[2 * i], &table[2 * i + 1]);
    if (!r && !(r = q4k__vk_split_dev(vb, &vs->mem, (uint64_t)n_ctx, (uint64_t)half * 8, 0, &vs->rope, err))) {
        q4k__vk_stager st;
        memset(&st, 0, sizeof st);
        st.vb = vb;
        st.want = (uint64_t)n_ctx * (uint64_t)half * 8;
        for (i = 0; i < vs->rope.n && !r; i++)
            r = q4k__vk_stage_put(&st, &vs->rope.part[i], 0, table + (uint64_t)i * vs->rope.per * (uint64_t)half * 2,
                                  q4k__vk_split_rows(&vs->rope, i) * (uint64_t)half * 8, err);
        if (!r) r = q4k__vk_stage_flush(&st, err);
        q4k__vk_stage_end(&st);
    }
    /* host rows for the trace the session asks for */
    if (!r && d->trace) {
        int64_t widths[Q4K_OP_COUNT];
        int op;
        for (op = 0; op < Q4K_OP_COUNT; op++)
            widths[op] = op == Q4K_OP_Q || op == Q4K_OP_Q_ROPE || op == Q4K_OP_ATTN ? q_dim
                         : op == Q4K_OP_K || op == Q4K_OP_V || op == Q4K_OP_K_ROPE ? kv_dim
                         : op == Q4K_OP_GATE || op == Q4K_OP_UP || op == Q4K_OP_ACT ? ff : dm;
        for (l = 0; l < L && !r; l++) {
            int ops = (d->trace & Q4K_TRACE_ALL_OPS) || (d->trace & Q4K_TRACE_OPS);
            for (op = 0; op < Q4K_OP_COUNT && ops && !r; op++)
                r = q4k__vk_sub(vb, &vs->host, (uint64_t)widths[op] * 4, 1 << 20, 1, &vs->tr_op[l * Q4K_OP_COUNT + op], err);
            if (!r && (d->trace & Q4K_TRACE_LAYERS)) r = q4k__vk_sub(vb, &vs->host, (uint64_t)dm * 4, 1 << 20, 1, &vs->tr_layer[l], err);
            if (!r && (d->trace & Q4K_TRACE_LAYERS)) r = q4k__vk_sub(vb, &vs->host, (uint64_t)dm * 4, 1 << 20, 1, &vs->tr_attn[l], err);
        }
        for (op = 0; op < Q4K_STAGE_COUNT && !r && (d->trace & Q4K_TRACE_LAYERS); op++)
            if (op != Q4K_STAGE_LM_HEAD) r = q4k__vk_sub(vb, &vs->host, (uint64_t)dm * 4, 1 << 20, 1, &vs->tr_stage[op], err);
    }
    if (r) goto fail;
    /* a command pool of the session's own: its recordings outlive any call */
    memset(&cp, 0, sizeof cp);
    cp.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    cp.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    cp.queueFamilyIndex = (uint32_t)vb->qfam;
    if ((vr = vb->vkCreateCommandPool(vb->dev, &cp, NULL, &vs->cpool)) != VK_SUCCESS) {
        vs->cpool = VK_NULL_HANDLE;
        r = q4k__vk_err(err, vr, "vkCreateCommandPool");
        goto fail;
    }
    memset(&ca, 0, sizeof ca);
    ca.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ca.commandPool = vs->cpool;
    ca.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ca.commandBufferCount = 2;
    if ((vr = vb->vkAllocateCommandBuffers(vb->dev, &ca, cmds)) != VK_SUCCESS) {
        r = q4k__vk_err(err, vr, "vkAllocateCommandBuffers");
        goto fail;
    }
    vs->rec[0].cmd = cmds[0];
    vs->rec[1].cmd = cmds[1];
    memset(&fi, 0, sizeof fi);
    fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    if ((vr = vb->vkCreateFence(vb->dev, &fi, NULL, &vs->fence)) != VK_SUCCESS) {
        vs->fence = VK_NULL_HANDLE;
        r = q4k__vk_err(err, vr, "vkCreateFence");
        goto fail;
    }
    if ((r = q4k__session_alloc_trace(&vs->base, err))) goto fail;
    Q4K_FREE(table);
    *out = &vs->base;
    return Q4K_OK;
fail:
    Q4K_FREE(table);
    q4k__session_free_trace(&vs->base);
    q4k__vk_session_destroy(&vs->base);
    return r;
}

/* the hook q4k_session_check_memory asks before any upload: Vulkan tells no
   free memory (without VK_EXT_memory_budget), so the largest device-local
   heap less what this backend holds, under $Q4K_DEVICE_MEM_LIMIT */
static q4k_result q4k__vk_mem_info(q4k_backend *b, uint64_t *free_bytes, uint64_t *total_bytes, q4k_error *err) {
    q4k__vk_backend *vb = (q4k__vk_backend *)b->impl;
    uint64_t total = 0;
    uint32_t i;
    (void)err;
    for (i = 0; i < vb->mp.memoryHeapCount; i++)
        if ((vb->mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && vb->mp.memoryHeaps[i].size > total)
            total = vb->mp.memoryHeaps[i].size;
    if (vb->mem_limit && vb->mem_limit < total) total = vb->mem_limit;
    *total_bytes = total;
    *free_bytes = total > vb->allocated ? total - vb->allocated : 0;
    return Q4K_OK;
}

static void q4k__vk_destroy(q4k_backend *b) {
    q4k__vk_backend *vb;
    int i;
    if (!b) return;
    vb = (q4k__vk_backend *)b->impl;
    if (vb->dev) {
        for (i = 0; i < Q4K__VK_NPIPE; i++)
            if (vb->pipe[i]) vb->vkDestroyPipeline(vb->dev, vb->pipe[i], NULL);
        if (vb->layout) vb->vkDestroyPipelineLayout(vb->dev, vb->layout, NULL);
        if (vb->dsl) vb->vkDestroyDescriptorSetLayout(vb->dev, vb->dsl, NULL);
        if (vb->fence) vb->vkDestroyFence(vb->dev, vb->fence, NULL);
        if (vb->cmd_pool) vb->vkDestroyCommandPool(vb->dev, vb->cmd_pool, NULL);
        vb->vkDestroyDevice(vb->dev, NULL);
    }
#ifdef Q4K_VULKAN_GLSLANG
    if (vb->glslang_up) glslang_finalize_process();
#endif
    q4k__vk_lib_close(&vb->lib);
    Q4K_FREE(vb);
}

static unsigned q4k__vk_parse_disable(const char *s) {
    unsigned f = 0;
    if (!s) return 0;
    if (strstr(s, "subgroup")) f |= Q4K_VK_SUBGROUP;
    if (strstr(s, "storage8")) f |= Q4K_VK_STORAGE8;
    if (strstr(s, "storage16")) f |= Q4K_VK_STORAGE16;
    if (strstr(s, "fp16")) f |= Q4K_VK_FP16;
    if (strstr(s, "all")) f = Q4K_VK_SUBGROUP | Q4K_VK_STORAGE8 | Q4K_VK_STORAGE16 | Q4K_VK_FP16;
    return f;
}

static q4k_result q4k__vk_open_device(q4k__vk_backend *vb, int qfam, q4k_error *err) {
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi;
    VkDeviceCreateInfo di;
    q4k__vk_feats f;
    VkResult vr;
    memset(&qi, 0, sizeof qi);
    qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qi.queueFamilyIndex = (uint32_t)qfam;
    qi.queueCount = 1;
    qi.pQueuePriorities = &prio;
    /* only what the kernels use is enabled (8-bit and fp16 were found on a 1.2 device) */
    q4k__vk_feats_init(&f, (vb->features & (Q4K_VK_STORAGE8 | Q4K_VK_FP16)) != 0);
    if (vb->features & Q4K_VK_STORAGE16) {
        f.s16.storageBuffer16BitAccess = VK_TRUE;
        f.f2.features.shaderInt16 = VK_TRUE;
    }
    if (vb->features & Q4K_VK_STORAGE8) {
        f.s8.storageBuffer8BitAccess = VK_TRUE;
        f.f16.shaderInt8 = VK_TRUE;
    }
    if (vb->features & Q4K_VK_FP16) f.f16.shaderFloat16 = VK_TRUE;
    memset(&di, 0, sizeof di);
    di.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    di.pNext = &f.f2;
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    if ((vr = vb->lib.vkCreateDevice(vb->pd, &di, NULL, &vb->dev)) != VK_SUCCESS) {
        vb->dev = VK_NULL_HANDLE;
        return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: vkCreateDevice on %s failed (VkResult %d)", vb->info.name, (int)vr);
    }
#define Q4K__VK_LOAD_D(f) vb->f = (PFN_##f)vb->lib.vkGetDeviceProcAddr(vb->dev, #f);
    Q4K__VK_DEVICE_FNS(Q4K__VK_LOAD_D)
#undef Q4K__VK_LOAD_D
#define Q4K__VK_CHECK_D(f) \
    if (!vb->f) return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: device %s has no %s", vb->info.name, #f);
    Q4K__VK_DEVICE_FNS(Q4K__VK_CHECK_D)
#undef Q4K__VK_CHECK_D
    vb->vkGetDeviceQueue(vb->dev, (uint32_t)qfam, 0, &vb->queue);
    return Q4K_OK;
}

static q4k_result q4k__vk_objects(q4k__vk_backend *vb, int qfam, q4k_error *err) {
    VkCommandPoolCreateInfo cp;
    VkCommandBufferAllocateInfo ca;
    VkFenceCreateInfo fi;
    VkDescriptorSetLayoutBinding lb[Q4K__VK_NBIND];
    VkDescriptorSetLayoutCreateInfo li;
    VkPushConstantRange pr;
    VkPipelineLayoutCreateInfo pl;
    VkResult vr;
    int i;
    memset(&cp, 0, sizeof cp);
    cp.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    cp.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    cp.queueFamilyIndex = (uint32_t)qfam;
    if ((vr = vb->vkCreateCommandPool(vb->dev, &cp, NULL, &vb->cmd_pool)) != VK_SUCCESS) return q4k__vk_err(err, vr, "vkCreateCommandPool");
    memset(&ca, 0, sizeof ca);
    ca.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ca.commandPool = vb->cmd_pool;
    ca.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ca.commandBufferCount = 1;
    if ((vr = vb->vkAllocateCommandBuffers(vb->dev, &ca, &vb->cmd)) != VK_SUCCESS) return q4k__vk_err(err, vr, "vkAllocateCommandBuffers");
    memset(&fi, 0, sizeof fi);
    fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
    if ((vr = vb->vkCreateFence(vb->dev, &fi, NULL, &vb->fence)) != VK_SUCCESS) return q4k__vk_err(err, vr, "vkCreateFence");
    memset(lb, 0, sizeof lb);
    for (i = 0; i < Q4K__VK_NBIND; i++) {
        lb[i].binding = (uint32_t)i;
        lb[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        lb[i].descriptorCount = 1;
        lb[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    memset(&li, 0, sizeof li);
    li.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    li.bindingCount = Q4K__VK_NBIND;
    li.pBindings = lb;
    if ((vr = vb->vkCreateDescriptorSetLayout(vb->dev, &li, NULL, &vb->dsl)) != VK_SUCCESS)
        return q4k__vk_err(err, vr, "vkCreateDescriptorSetLayout");
    pr.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    pr.offset = 0;
    pr.size = sizeof(q4k__vk_push);
    memset(&pl, 0, sizeof pl);
    pl.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    pl.setLayoutCount = 1;
    pl.pSetLayouts = &vb->dsl;
    pl.pushConstantRangeCount = 1;
    pl.pPushConstantRanges = &pr;
    if ((vr = vb->vkCreatePipelineLayout(vb->dev, &pl, NULL, &vb->layout)) != VK_SUCCESS)
        return q4k__vk_err(err, vr, "vkCreatePipelineLayout");
    return Q4K_OK;
}

static void q4k__vk_default_cache_dir(const q4k_vk_backend_desc *d, char *out, size_t n) {
    const char *e;
    out[0] = 0;
    if (d->cache_dir) snprintf(out, n, "%s", d->cache_dir);
    else if ((e = getenv("Q4K_CACHE_DIR")) && *e) snprintf(out, n, "%s", e);
    else if ((e = getenv("XDG_CACHE_HOME")) && *e) snprintf(out, n, "%s/q4k", e);
    else if ((e = getenv("HOME")) && *e) snprintf(out, n, "%s/.cache/q4k", e);
}

Q4K_API q4k_result q4k_vk_backend_create(const q4k_vk_backend_desc *dp, q4k_backend **out, q4k_error *err) {
    q4k_vk_backend_desc d;
    q4k__vk_backend *vb;
    q4k_vk_device_info *infos = NULL;
    VkPhysicalDevice *pds = NULL;
    uint32_t n = 0, i;
    uint64_t env_range = 0, env_alloc = 0;
    int pick, qfam;
    q4k_result r;
    const char *env;
    if (!out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: out is NULL");
    *out = NULL;
    if (dp) d = *dp;
    else memset(&d, 0, sizeof d);
#ifndef Q4K_VULKAN_GLSLANG
    return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE,
                     "vulkan: built without a shader compiler (define Q4K_VULKAN_GLSLANG and link glslang; see q4k_vulkan.h)");
#endif
    if ((env = getenv("Q4K_VK_LIMITS")) && *env && (r = q4k_vk_parse_limits(env, &env_range, &env_alloc, err))) return r;
    vb = (q4k__vk_backend *)Q4K_MALLOC(sizeof *vb);
    if (!vb) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of memory");
    memset(vb, 0, sizeof *vb);
    vb->base.name = "vulkan";
    vb->base.impl = vb;
    vb->base.session_create = q4k__vk_session_create;
    vb->base.prepare_model = q4k__vk_prepare_model;
    vb->base.release_model = q4k__vk_release_model;
    vb->base.matmul = q4k__vk_matmul;
    vb->base.mem_info = q4k__vk_mem_info;
    vb->base.embedding = q4k__vk_embedding;
    vb->base.rmsnorm = q4k__vk_rmsnorm;
    vb->base.rope = q4k__vk_rope;
    vb->base.attention = q4k__vk_attention;
    vb->base.quantize_act = q4k__vk_quantize_act;
    vb->base.destroy = q4k__vk_destroy;
    vb->log = d.log;
    vb->log_user = d.log_user;
    if ((r = q4k__vk_lib_open(&vb->lib, err))) {
        Q4K_FREE(vb);
        return r;
    }
    if ((r = q4k__vk_enumerate(&vb->lib, &pds, &n, err))) goto fail;
    infos = (q4k_vk_device_info *)Q4K_MALLOC((n ? n : 1) * sizeof *infos);
    if (!infos) {
        r = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vulkan: out of memory");
        goto fail;
    }
    for (i = 0; i < n; i++) q4k__vk_describe(&vb->lib, pds[i], (int)i, &infos[i]);
    if ((pick = q4k__vk_choose(infos, (int)n, d.device, d.allow_cpu, err)) < 0) {
        r = Q4K_ERR_BACKEND_UNAVAILABLE;
        goto fail;
    }
    vb->info = infos[pick];
    vb->pd = pds[pick];
    vb->lib.vkGetPhysicalDeviceMemoryProperties(vb->pd, &vb->mp);
    qfam = vb->qfam = q4k__vk_compute_queue(&vb->lib, vb->pd);
#ifdef Q4K_VK_TEST_FAULT
    if (getenv("Q4K_VK_TEST_FAULT_EVAL")) vb->test_fault_eval = atoll(getenv("Q4K_VK_TEST_FAULT_EVAL"));
#endif
    {
        const char *lim = getenv("Q4K_DEVICE_MEM_LIMIT"), *end = NULL;
        if (lim && *lim && (!q4k__vk_parse_size(lim, &end, &vb->mem_limit) || *end)) {
            r = q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: Q4K_DEVICE_MEM_LIMIT='%s' is not a number of bytes", lim);
            goto fail;
        }
    }
    vb->features = vb->info.features & ~(d.disable | q4k__vk_parse_disable(getenv("Q4K_VK_DISABLE")));
    if (!(vb->features & Q4K_VK_STORAGE16)) vb->features &= ~(unsigned)Q4K_VK_STORAGE8; /* rd16 of the 8-bit path */
    /* the limits q4k holds itself to: the device's, or smaller ones asked for */
    vb->align = vb->info.min_storage_buffer_offset_alignment > 16 ? vb->info.min_storage_buffer_offset_alignment : 16;
    vb->alloc = vb->info.max_memory_allocation_size < vb->info.max_buffer_size ? vb->info.max_memory_allocation_size : vb->info.max_buffer_size;
    if (d.max_alloc && d.max_alloc < vb->alloc) vb->alloc = d.max_alloc;
    if (env_alloc && env_alloc < vb->alloc) vb->alloc = env_alloc;
    vb->range = vb->info.max_storage_buffer_range < vb->alloc ? vb->info.max_storage_buffer_range : vb->alloc;
    if (d.max_range && d.max_range < vb->range) vb->range = d.max_range;
    if (env_range && env_range < vb->range) vb->range = env_range;
    if (vb->range > 0xfffff000u) vb->range = 0xfffff000u; /* the kernels address bytes with 32 bits */
    vb->range = vb->range / vb->align * vb->align;
    vb->alloc = vb->alloc / vb->align * vb->align;
    if (vb->range < 4096) {
        r = q4k__fail(err, Q4K_ERR_INVALID_ARG, "vulkan: a storage-buffer range of %llu bytes is too small", (unsigned long long)vb->range);
        goto fail;
    }
    q4k__vk_default_cache_dir(&d, vb->cache_dir, sizeof vb->cache_dir);
    if ((env = getenv("Q4K_VK_KERNELS_DIR")) && *env) snprintf(vb->kernels_dir, sizeof vb->kernels_dir, "%s", env);
    if ((r = q4k__vk_open_device(vb, qfam, err)) || (r = q4k__vk_objects(vb, qfam, err))) goto fail;
#ifdef Q4K_VULKAN_GLSLANG
    if (!glslang_initialize_process()) {
        r = q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: glslang failed to initialise");
        goto fail;
    }
    vb->glslang_up = 1;
#endif
    vb->stats.device = vb->info;
    q4k__log(vb->log, vb->log_user, Q4K_LOG_INFO, "vulkan: device %d, %s (%s), range %llu, alloc %llu", vb->info.index,
             vb->info.name, vb->info.type, (unsigned long long)vb->range, (unsigned long long)vb->alloc);
    if ((r = q4k__backend_lock_init(&vb->base, err))) goto fail;
    Q4K_FREE(infos);
    Q4K_FREE(pds);
    *out = &vb->base;
    return Q4K_OK;
fail:
    Q4K_FREE(infos);
    Q4K_FREE(pds);
    q4k__vk_destroy(&vb->base);
    return r;
}

Q4K_API q4k_result q4k_vk_backend_info_get(q4k_backend *b, q4k_vk_backend_info *out) {
    q4k__vk_backend *vb;
    if (!b || !out || !b->name || strcmp(b->name, "vulkan")) return Q4K_ERR_INVALID_ARG;
    vb = (q4k__vk_backend *)b->impl;
    q4k__backend_lock(b); /* the stats of another thread's calls */
    *out = vb->stats;
    q4k__backend_unlock(b);
    out->device = vb->info;
    out->features = vb->features;
    out->range = vb->range;
    out->alloc = vb->alloc;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_vk_probe(q4k_error *err) {
    q4k_vk_device_info infos[16];
    q4k_error e;
    int n = 0, pick;
    q4k_result r = q4k_vk_list_devices(infos, 16, &n, &e);
    if (r) {
        if (err) *err = e;
        return r;
    }
    if (n > 16) n = 16;
    if ((pick = q4k__vk_choose(infos, n, NULL, 1, &e)) < 0) {
        if (err) *err = e;
        return e.code;
    }
#ifndef Q4K_VULKAN_GLSLANG
    return q4k__fail(err, Q4K_ERR_BACKEND_UNAVAILABLE, "vulkan: built without a shader compiler (glslang); device %d would be %s",
                     pick, infos[pick].name);
#else
    if (err) {
        err->code = Q4K_OK;
        snprintf(err->msg, sizeof err->msg, "device %d, %s (%s)%s", pick, infos[pick].name, infos[pick].type,
                 strcmp(infos[pick].type, "cpu") ? "" : ", used only when asked for by name or --backend vulkan");
    }
    return Q4K_OK;
#endif
}

#ifdef __cplusplus
}
#endif
#endif /* Q4K_VULKAN_NO_HEADERS */
#endif /* Q4K_VULKAN_IMPLEMENTED */
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
