/* q4k.h - run GGUF k-quant language models on the CPU, from one C header.

   Do this:
      #define Q4K_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the
   implementation. Every other file includes it without the macro.

   q4k reads GGUF files (v2, v3), dequantizes and multiplies the ggml block
   formats F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K and Q6_K, and runs
   qwen2 / llama models. GPU backends live in q4k_cuda.h and q4k_vulkan.h and
   are checked against the CPU backend of this file: GPU output is never
   wrong in silence.

   Usage (read a file, print its tensors):

      #define Q4K_IMPLEMENTATION
      #include "q4k.h"
      int main(int argc, char **argv) {
          q4k_gguf *g; q4k_error err;
          if (q4k_gguf_open_file(argv[1], NULL, &g, &err) != Q4K_OK) {
              fprintf(stderr, "%s\n", err.msg); return 1; }
          for (int64_t i = 0; i < q4k_gguf_tensor_count(g); i++)
              printf("%s\n", q4k_gguf_tensor(g, i)->name);
          q4k_gguf_close(g);
      }

   Config macros (define before including):
      Q4K_IMPLEMENTATION    compile the implementation of every q4k header
                            included after it
      Q4K_STATIC            make every function static (Q4K_API)
      Q4K_API               override the declaration prefix (default extern)
      Q4K_ASSERT(c)         override assert() (programmer errors only)
      Q4K_MALLOC(n), Q4K_REALLOC(p,n), Q4K_FREE(p)
                            override the allocator: all three or none
      Q4K_NO_SIMD           compile the scalar CPU kernels only

   Errors: every fallible call returns a q4k_result; calls that can fail for
   reasons worth explaining also fill an optional q4k_error with a message
   naming the key, tensor, file offset or value at fault. Nothing in the
   library exits or aborts on bad input.

   Logging: objects take an optional q4k_log_fn; q4k is silent without one.

   Threads: a q4k_gguf may be read from any number of threads at once. A
   q4k_pool runs one job at a time; the CPU kernels use it to split rows.

   Environment: Q4K_CPU=scalar|avx2|avx512 forces a CPU kernel path.
*/
#ifndef Q4K_H
#define Q4K_H

#define Q4K_VERSION_MAJOR 0
#define Q4K_VERSION_MINOR 1
#define Q4K_VERSION_PATCH 0

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef Q4K_API
#ifdef Q4K_STATIC
#define Q4K_API static
#else
#define Q4K_API extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* results and logging                                                       */
/* ------------------------------------------------------------------------ */

#define Q4K_RESULT_LIST(X)                                                     \
    X(Q4K_OK, "ok")                                                            \
    X(Q4K_ERR_INVALID_ARG, "invalid argument")                                 \
    X(Q4K_ERR_IO, "I/O error")                                                 \
    X(Q4K_ERR_OUT_OF_MEMORY, "out of memory")                                  \
    X(Q4K_ERR_NOT_GGUF, "not a GGUF file")                                     \
    X(Q4K_ERR_LFS_POINTER, "Git LFS pointer instead of the file")              \
    X(Q4K_ERR_HTML, "HTML page instead of the file")                           \
    X(Q4K_ERR_BAD_VERSION, "unsupported GGUF version")                         \
    X(Q4K_ERR_TRUNCATED, "file truncated")                                     \
    X(Q4K_ERR_BAD_COUNT, "count larger than the file allows")                  \
    X(Q4K_ERR_BAD_STRING, "invalid string")                                    \
    X(Q4K_ERR_BAD_UTF8, "invalid UTF-8")                                       \
    X(Q4K_ERR_BAD_KEY, "invalid metadata key")                                 \
    X(Q4K_ERR_DUPLICATE_KEY, "duplicate metadata key")                         \
    X(Q4K_ERR_BAD_VALUE_TYPE, "invalid metadata value type")                   \
    X(Q4K_ERR_BAD_ARRAY, "invalid metadata array")                             \
    X(Q4K_ERR_BAD_BOOL, "invalid bool value")                                  \
    X(Q4K_ERR_BAD_ALIGNMENT, "invalid alignment")                              \
    X(Q4K_ERR_BAD_TENSOR_NAME, "invalid tensor name")                          \
    X(Q4K_ERR_DUPLICATE_TENSOR, "duplicate tensor name")                       \
    X(Q4K_ERR_BAD_DIMS, "invalid tensor dimensions")                           \
    X(Q4K_ERR_BAD_TYPE, "unknown tensor type")                                 \
    X(Q4K_ERR_UNSUPPORTED_TYPE, "tensor type not implemented")                 \
    X(Q4K_ERR_BAD_SHAPE, "tensor row not a multiple of the block size")        \
    X(Q4K_ERR_OVERFLOW, "size overflow")                                       \
    X(Q4K_ERR_BAD_OFFSET, "invalid tensor data offset")                        \
    X(Q4K_ERR_TENSOR_OVERLAP, "tensor data overlaps another tensor")           \
    X(Q4K_ERR_NOT_FOUND, "not found")                                          \
    X(Q4K_ERR_TYPE_MISMATCH, "metadata type mismatch")                         \
    X(Q4K_ERR_BAD_MODEL, "invalid model")                                      \
    X(Q4K_ERR_UNSUPPORTED, "unsupported model feature")                        \
    X(Q4K_ERR_CONTEXT_FULL, "context is full")                                 \
    X(Q4K_ERR_BACKEND_UNAVAILABLE, "backend not available")                    \
    X(Q4K_ERR_GPU, "GPU error")                                                \
    X(Q4K_ERR_PARITY, "parity check failed")                                   \
    X(Q4K_ERR_STOPPED, "stopped by callback")

typedef enum q4k_result {
#define Q4K__RESULT_ENUM(name, text) name,
    Q4K_RESULT_LIST(Q4K__RESULT_ENUM)
#undef Q4K__RESULT_ENUM
    Q4K_RESULT_COUNT
} q4k_result;

/* Short text of a result code ("file truncated"); never NULL. */
Q4K_API const char *q4k_result_string(q4k_result r);
/* Identifier of a result code ("Q4K_ERR_TRUNCATED"); never NULL. */
Q4K_API const char *q4k_result_name(q4k_result r);

/* The detail of a failure: the code and a message naming the thing. */
typedef struct q4k_error {
    q4k_result code;
    char msg[512];
} q4k_error;

typedef enum q4k_log_level {
    Q4K_LOG_ERROR = 0,
    Q4K_LOG_WARN = 1,
    Q4K_LOG_INFO = 2,
    Q4K_LOG_DEBUG = 3
} q4k_log_level;

typedef void (*q4k_log_fn)(q4k_log_level level, const char *msg, void *user);

/* "0.1.0" */
Q4K_API const char *q4k_version_string(void);

/* ------------------------------------------------------------------------ */
/* tensor types and block formats (ids equal ggml's)                        */
/* ------------------------------------------------------------------------ */

typedef enum q4k_type {
    Q4K_TYPE_F32 = 0,
    Q4K_TYPE_F16 = 1,
    Q4K_TYPE_Q4_0 = 2,
    Q4K_TYPE_Q4_1 = 3,
    Q4K_TYPE_Q5_0 = 6,
    Q4K_TYPE_Q5_1 = 7,
    Q4K_TYPE_Q8_0 = 8,
    Q4K_TYPE_Q8_1 = 9,
    Q4K_TYPE_Q2_K = 10,
    Q4K_TYPE_Q3_K = 11,
    Q4K_TYPE_Q4_K = 12,
    Q4K_TYPE_Q5_K = 13,
    Q4K_TYPE_Q6_K = 14,
    Q4K_TYPE_Q8_K = 15,
    Q4K_TYPE_IQ2_XXS = 16,
    Q4K_TYPE_IQ2_XS = 17,
    Q4K_TYPE_IQ3_XXS = 18,
    Q4K_TYPE_IQ1_S = 19,
    Q4K_TYPE_IQ4_NL = 20,
    Q4K_TYPE_IQ3_S = 21,
    Q4K_TYPE_IQ2_S = 22,
    Q4K_TYPE_IQ4_XS = 23,
    Q4K_TYPE_I8 = 24,
    Q4K_TYPE_I16 = 25,
    Q4K_TYPE_I32 = 26,
    Q4K_TYPE_I64 = 27,
    Q4K_TYPE_F64 = 28,
    Q4K_TYPE_IQ1_M = 29,
    Q4K_TYPE_BF16 = 30,
    Q4K_TYPE_TQ1_0 = 34,
    Q4K_TYPE_TQ2_0 = 35,
    Q4K_TYPE_MXFP4 = 39,
    Q4K_TYPE_COUNT = 40
} q4k_type;

#define Q4K_QK 32   /* values per block of Q4_0, Q5_0, Q8_0 */
#define Q4K_QK_K 256 /* values per super-block of the k-quants */

/* Block layouts, byte for byte as ggml stores them. Scales are IEEE half
   floats kept as raw bits. */
typedef struct q4k_block_q4_0 {
    uint16_t d;
    uint8_t qs[Q4K_QK / 2]; /* low nibbles: values 0..15, high: 16..31 */
} q4k_block_q4_0;

typedef struct q4k_block_q5_0 {
    uint16_t d;
    uint8_t qh[4]; /* bit j = 5th bit of value j */
    uint8_t qs[Q4K_QK / 2];
} q4k_block_q5_0;

typedef struct q4k_block_q8_0 {
    uint16_t d;
    int8_t qs[Q4K_QK];
} q4k_block_q8_0;

typedef struct q4k_block_q4_K {
    uint16_t d;          /* super-block scale for the 6-bit scales */
    uint16_t dmin;       /* super-block scale for the 6-bit mins */
    uint8_t scales[12];  /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[Q4K_QK_K / 2];
} q4k_block_q4_K;

typedef struct q4k_block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[Q4K_QK_K / 8];
    uint8_t qs[Q4K_QK_K / 2];
} q4k_block_q5_K;

typedef struct q4k_block_q6_K {
    uint8_t ql[Q4K_QK_K / 2]; /* low 4 bits */
    uint8_t qh[Q4K_QK_K / 4]; /* high 2 bits */
    int8_t scales[Q4K_QK_K / 16];
    uint16_t d;
} q4k_block_q6_K;

/* Activations quantized to 8 bits for the integer dot products of the
   quantized types (Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K). One scheme for every
   backend: 32 values per block, d = max|x| / 127 as float, q = x * (1/d)
   rounded to nearest, ties to even; sum = sum of q. */
typedef struct q4k_block_q8a {
    float d;
    int32_t sum;
    int8_t qs[Q4K_QK];
} q4k_block_q8a;

typedef struct q4k_type_info {
    const char *name;    /* "Q4_K"; NULL for ids no ggml version uses */
    int64_t block_size;  /* values per block */
    size_t type_size;    /* bytes per block; 0 when q4k does not know it */
    int implemented;     /* q4k can dequantize and multiply it */
} q4k_type_info;

/* Traits of a type id; an all-zero struct for ids out of range. */
Q4K_API q4k_type_info q4k_type_traits(int type);
/* Name of a type ("Q4_K"), or "unknown" */
Q4K_API const char *q4k_type_name(int type);
/* Bytes of one row of n values; 0 when n is not a multiple of the block
   size or the type is unknown. */
Q4K_API size_t q4k_row_size(q4k_type type, int64_t n);

/* Exact IEEE conversions (round to nearest even on the way down). */
Q4K_API float q4k_fp16_to_fp32(uint16_t h);
Q4K_API uint16_t q4k_fp32_to_fp16(float f);
Q4K_API float q4k_bf16_to_fp32(uint16_t h);
Q4K_API uint16_t q4k_fp32_to_bf16(float f);

/* >>formats-api */
/* Dequantize one row of n values (n a multiple of the block size). Gives
   exactly the floats of ggml's reference dequantizers. */
Q4K_API q4k_result q4k_dequantize_row(q4k_type type, const void *src, float *dst, int64_t n);
/* Quantize one row of n values with the reference algorithm of the type
   (Q8_0, Q5_0, Q4_0, Q4_K, Q6_K; F32, F16, BF16 convert). Returns the bytes
   written, 0 when the type has no quantizer or n does not fit its blocks. */
Q4K_API size_t q4k_quantize_row(q4k_type type, const float *src, void *dst, int64_t n);
/* Activation quantization (see q4k_block_q8a); n a multiple of 32. */
Q4K_API void q4k_quantize_act_q8(const float *x, q4k_block_q8a *out, int64_t n);
/* <<formats-api */

/* ------------------------------------------------------------------------ */
/* GGUF                                                                      */
/* ------------------------------------------------------------------------ */

/* >>gguf-api */
typedef enum q4k_gguf_type {
    Q4K_GGUF_UINT8 = 0,
    Q4K_GGUF_INT8 = 1,
    Q4K_GGUF_UINT16 = 2,
    Q4K_GGUF_INT16 = 3,
    Q4K_GGUF_UINT32 = 4,
    Q4K_GGUF_INT32 = 5,
    Q4K_GGUF_FLOAT32 = 6,
    Q4K_GGUF_BOOL = 7,
    Q4K_GGUF_STRING = 8,
    Q4K_GGUF_ARRAY = 9,
    Q4K_GGUF_UINT64 = 10,
    Q4K_GGUF_INT64 = 11,
    Q4K_GGUF_FLOAT64 = 12,
    Q4K_GGUF_TYPE_COUNT = 13
} q4k_gguf_type;

typedef struct q4k_gguf q4k_gguf;

typedef struct q4k_gguf_desc {
    q4k_log_fn log; /* optional */
    void *log_user;
    int no_mmap;    /* read the file into memory instead of mapping it */
} q4k_gguf_desc;

typedef struct q4k_tensor {
    const char *name;
    q4k_type type;
    int n_dims;         /* 1..4 */
    int64_t ne[4];      /* ne[0] is the row length; unused dims are 1 */
    uint64_t offset;    /* from the start of the data section */
    uint64_t file_offset; /* from the start of the file */
    size_t nbytes;
    const void *data;   /* in the mapping or buffer */
} q4k_tensor;

/* Open and validate a GGUF file (mapped) or a buffer (used in place; it must
   outlive the q4k_gguf). desc may be NULL. On failure *out is NULL and err
   (optional) says what is wrong, where (file offset) and with which value. */
Q4K_API q4k_result q4k_gguf_open_file(const char *path, const q4k_gguf_desc *desc, q4k_gguf **out, q4k_error *err);
Q4K_API q4k_result q4k_gguf_open_memory(const void *data, size_t size, const q4k_gguf_desc *desc, q4k_gguf **out, q4k_error *err);
Q4K_API void q4k_gguf_close(q4k_gguf *g);

Q4K_API uint32_t q4k_gguf_version(const q4k_gguf *g);
Q4K_API size_t q4k_gguf_alignment(const q4k_gguf *g);
Q4K_API size_t q4k_gguf_file_size(const q4k_gguf *g);
Q4K_API size_t q4k_gguf_data_offset(const q4k_gguf *g);

/* metadata: keys by index */
Q4K_API int64_t q4k_gguf_key_count(const q4k_gguf *g);
Q4K_API const char *q4k_gguf_key(const q4k_gguf *g, int64_t i);
Q4K_API q4k_gguf_type q4k_gguf_key_type(const q4k_gguf *g, int64_t i);
/* index of a key, -1 when absent */
Q4K_API int64_t q4k_gguf_find_key(const q4k_gguf *g, const char *key);

/* Typed getters: Q4K_ERR_NOT_FOUND when the key is absent,
   Q4K_ERR_TYPE_MISMATCH when its type differs. The integer getters accept
   any integer type whose value fits the result; get_f32 accepts FLOAT32 and
   FLOAT64. Strings are not NUL-terminated in the file: get_str returns a
   NUL-terminated copy owned by the q4k_gguf. */
Q4K_API q4k_result q4k_gguf_get_u32(const q4k_gguf *g, const char *key, uint32_t *out);
Q4K_API q4k_result q4k_gguf_get_i32(const q4k_gguf *g, const char *key, int32_t *out);
Q4K_API q4k_result q4k_gguf_get_u64(const q4k_gguf *g, const char *key, uint64_t *out);
Q4K_API q4k_result q4k_gguf_get_i64(const q4k_gguf *g, const char *key, int64_t *out);
Q4K_API q4k_result q4k_gguf_get_f32(const q4k_gguf *g, const char *key, float *out);
Q4K_API q4k_result q4k_gguf_get_f64(const q4k_gguf *g, const char *key, double *out);
Q4K_API q4k_result q4k_gguf_get_bool(const q4k_gguf *g, const char *key, int *out);
Q4K_API q4k_result q4k_gguf_get_str(const q4k_gguf *g, const char *key, const char **out);
/* Arrays: element type and count; then elements by index. For numeric
   arrays, q4k_gguf_get_arr_data gives a pointer to the packed little-endian
   elements (not aligned). Nested arrays: q4k_gguf_get_arr_type gives ARRAY. */
Q4K_API q4k_result q4k_gguf_get_arr(const q4k_gguf *g, const char *key, q4k_gguf_type *elem_type, uint64_t *count);
Q4K_API q4k_result q4k_gguf_get_arr_data(const q4k_gguf *g, const char *key, const void **data);
Q4K_API q4k_result q4k_gguf_get_arr_str(const q4k_gguf *g, const char *key, uint64_t i, const char **s, size_t *len);

/* tensors */
Q4K_API int64_t q4k_gguf_tensor_count(const q4k_gguf *g);
Q4K_API const q4k_tensor *q4k_gguf_tensor(const q4k_gguf *g, int64_t i);
Q4K_API const q4k_tensor *q4k_gguf_find_tensor(const q4k_gguf *g, const char *name);

/* Write a human-readable (or --json) dump of metadata and tensor table. */
Q4K_API void q4k_gguf_print(const q4k_gguf *g, FILE *f, int json);

/* Writer. Keys and tensors are written in the order they were added.
   Tensor data is given at add time (kept by pointer until written) or
   streamed after q4k_gguf_writer_begin: then pass data = NULL at add time
   and call write_tensor once per tensor, in order. */
typedef struct q4k_gguf_writer q4k_gguf_writer;
Q4K_API q4k_gguf_writer *q4k_gguf_writer_new(uint32_t alignment /* 0: 32 */);
Q4K_API void q4k_gguf_writer_free(q4k_gguf_writer *w);
Q4K_API q4k_result q4k_gguf_writer_set(q4k_gguf_writer *w, const char *key, q4k_gguf_type type, const void *value);
Q4K_API q4k_result q4k_gguf_writer_set_u32(q4k_gguf_writer *w, const char *key, uint32_t v);
Q4K_API q4k_result q4k_gguf_writer_set_i32(q4k_gguf_writer *w, const char *key, int32_t v);
Q4K_API q4k_result q4k_gguf_writer_set_f32(q4k_gguf_writer *w, const char *key, float v);
Q4K_API q4k_result q4k_gguf_writer_set_bool(q4k_gguf_writer *w, const char *key, int v);
Q4K_API q4k_result q4k_gguf_writer_set_str(q4k_gguf_writer *w, const char *key, const char *v);
/* numeric (or bool) array of n elements of elem_type, packed */
Q4K_API q4k_result q4k_gguf_writer_set_arr(q4k_gguf_writer *w, const char *key, q4k_gguf_type elem_type, const void *data, uint64_t n);
Q4K_API q4k_result q4k_gguf_writer_set_arr_str(q4k_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
Q4K_API q4k_result q4k_gguf_writer_add_tensor(q4k_gguf_writer *w, const char *name, q4k_type type, int n_dims, const int64_t *ne, const void *data);
Q4K_API q4k_result q4k_gguf_writer_write_file(q4k_gguf_writer *w, const char *path, q4k_error *err);
Q4K_API q4k_result q4k_gguf_writer_begin(q4k_gguf_writer *w, const char *path, q4k_error *err);
Q4K_API q4k_result q4k_gguf_writer_write_tensor(q4k_gguf_writer *w, const void *data, q4k_error *err);
Q4K_API q4k_result q4k_gguf_writer_end(q4k_gguf_writer *w, q4k_error *err);
/* <<gguf-api */

/* ------------------------------------------------------------------------ */
/* CPU kernels                                                               */
/* ------------------------------------------------------------------------ */

/* >>cpu-api */
typedef enum q4k_cpu_path {
    Q4K_CPU_AUTO = 0, /* best detected, or Q4K_CPU from the environment */
    Q4K_CPU_SCALAR = 1,
    Q4K_CPU_AVX2 = 2,   /* AVX2 + FMA + F16C */
    Q4K_CPU_AVX512 = 3, /* AVX-512 F/BW/VL (+VNNI when present) */
    Q4K_CPU_NEON = 4
} q4k_cpu_path;

typedef enum q4k_act_mode {
    Q4K_ACT_Q8 = 0,  /* quantized types: activations in q4k_block_q8a, integer dots */
    Q4K_ACT_F32 = 1  /* reference: float activations against dequantized weights */
} q4k_act_mode;

/* Paths compiled into this build (bit 1<<path) and detected on this CPU. */
Q4K_API unsigned q4k_cpu_paths_compiled(void);
Q4K_API unsigned q4k_cpu_paths_detected(void);
Q4K_API const char *q4k_cpu_path_name(q4k_cpu_path p);
/* Resolve AUTO (and the Q4K_CPU variable) to a concrete path; an explicit
   path that this CPU lacks gives Q4K_ERR_UNSUPPORTED, an unknown name in
   Q4K_CPU Q4K_ERR_INVALID_ARG. */
Q4K_API q4k_result q4k_cpu_resolve_path(q4k_cpu_path want, q4k_cpu_path *out, q4k_error *err);

/* A pool of worker threads; n_threads <= 1 runs jobs on the caller (so does
   every pool of a build without pthreads). NULL when out of memory. A pool
   runs one job at a time: use it from one thread at a time. */
typedef struct q4k_pool q4k_pool;
typedef void (*q4k_pool_fn)(void *ctx, int ith, int nth);
Q4K_API q4k_pool *q4k_pool_create(int n_threads);
Q4K_API void q4k_pool_destroy(q4k_pool *p);
/* threads of the pool, the caller included; 1 for NULL */
Q4K_API int q4k_pool_threads(const q4k_pool *p);
/* run fn(ctx, ith, nth) for ith = 0..nth-1 in parallel and wait; the caller
   runs ith 0. p may be NULL (one share, on the caller). */
Q4K_API void q4k_pool_run(q4k_pool *p, q4k_pool_fn fn, void *ctx);

typedef struct q4k_cpu {
    q4k_cpu_path path; /* AUTO is resolved at every call */
    q4k_act_mode act;
    q4k_pool *pool;    /* may be NULL: single thread */
} q4k_cpu;

/* Y[j][r] = sum_c W[r][c] * X[j][c] for r < rows, j < n.
   W: rows x cols of `type`, row-major, q4k_row_size(type, cols) bytes a row.
   X: n x cols floats; Y: n x rows floats (must not overlap X).
   Types F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K.
   Q4K_ACT_F32: each weight row is decoded exactly (q4k_dequantize_row) and
   dotted with the float activations in float. Q4K_ACT_Q8: the quantized types
   take activations quantized once per call by q4k_quantize_act_q8 and sum
   exact integer dots per 32 values (per 16 for Q6_K's sub-blocks), scaled in
   float; F32/F16/BF16 weights take float activations as in Q4K_ACT_F32. The
   exact formulas are at the scalar kernels (`>>cpu`); SIMD paths compute the
   same exact integers and differ from scalar only in float summation order.
   The result of a row depends neither on the thread count nor on n (a column
   of a matrix product equals the matrix-vector product of that column).
   Errors: Q4K_ERR_INVALID_ARG (NULL pointer, negative size, cols not a
   multiple of the block size, bad act mode or path), Q4K_ERR_UNSUPPORTED_TYPE,
   Q4K_ERR_UNSUPPORTED (path not usable here), Q4K_ERR_OUT_OF_MEMORY. */
Q4K_API q4k_result q4k_matmul(const q4k_cpu *cpu, q4k_type type, const void *w, int64_t rows, int64_t cols, const float *x, int64_t n, float *y);
/* <<cpu-api */

/* >>tokenizer-api */
/* <<tokenizer-api */

/* >>model-api */
/* <<model-api */

#ifdef __cplusplus
}
#endif
#endif /* Q4K_H */

/* ======================================================================== */
/* implementation                                                            */
/* ======================================================================== */

#if defined(Q4K_IMPLEMENTATION) && !defined(Q4K_IMPLEMENTED)
#define Q4K_IMPLEMENTED

#if defined(Q4K_MALLOC) && defined(Q4K_REALLOC) && defined(Q4K_FREE)
#elif !defined(Q4K_MALLOC) && !defined(Q4K_REALLOC) && !defined(Q4K_FREE)
#include <stdlib.h>
#define Q4K_MALLOC(n) malloc(n)
#define Q4K_REALLOC(p, n) realloc(p, n)
#define Q4K_FREE(p) free(p)
#else
#error "q4k: define all of Q4K_MALLOC, Q4K_REALLOC and Q4K_FREE, or none"
#endif

#ifndef Q4K_ASSERT
#include <assert.h>
#define Q4K_ASSERT(c) assert(c)
#endif

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
#define Q4K__STATIC_ASSERT(c, m) static_assert(c, #m)
#else
#define Q4K__STATIC_ASSERT(c, m) typedef char q4k__static_assert_##m[(c) ? 1 : -1]
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* >>core */

Q4K__STATIC_ASSERT(sizeof(q4k_block_q4_0) == 18, q4_0);
Q4K__STATIC_ASSERT(sizeof(q4k_block_q5_0) == 22, q5_0);
Q4K__STATIC_ASSERT(sizeof(q4k_block_q8_0) == 34, q8_0);
Q4K__STATIC_ASSERT(sizeof(q4k_block_q4_K) == 144, q4_K);
Q4K__STATIC_ASSERT(sizeof(q4k_block_q5_K) == 176, q5_K);
Q4K__STATIC_ASSERT(sizeof(q4k_block_q6_K) == 210, q6_K);
Q4K__STATIC_ASSERT(sizeof(q4k_block_q8a) == 40, q8a);

Q4K_API const char *q4k_result_string(q4k_result r) {
    static const char *const text[] = {
#define Q4K__RESULT_TEXT(name, text) text,
        Q4K_RESULT_LIST(Q4K__RESULT_TEXT)
#undef Q4K__RESULT_TEXT
    };
    if ((int)r < 0 || (int)r >= (int)Q4K_RESULT_COUNT) return "unknown result";
    return text[r];
}

Q4K_API const char *q4k_result_name(q4k_result r) {
    static const char *const names[] = {
#define Q4K__RESULT_NAME(name, text) #name,
        Q4K_RESULT_LIST(Q4K__RESULT_NAME)
#undef Q4K__RESULT_NAME
    };
    if ((int)r < 0 || (int)r >= (int)Q4K_RESULT_COUNT) return "Q4K_ERR_UNKNOWN";
    return names[r];
}

#define Q4K__STR2(x) #x
#define Q4K__STR(x) Q4K__STR2(x)

Q4K_API const char *q4k_version_string(void) {
    return Q4K__STR(Q4K_VERSION_MAJOR) "." Q4K__STR(Q4K_VERSION_MINOR) "." Q4K__STR(Q4K_VERSION_PATCH);
}

#if defined(__GNUC__)
#define Q4K__MAYBE_UNUSED __attribute__((unused))
#else
#define Q4K__MAYBE_UNUSED
#endif

/* Fill err (if given) with code and a printf-style message; returns code. */
Q4K__MAYBE_UNUSED static q4k_result q4k__fail(q4k_error *err, q4k_result code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static q4k_result q4k__fail(q4k_error *err, q4k_result code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

Q4K__MAYBE_UNUSED static void q4k__log(q4k_log_fn fn, void *user, q4k_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void q4k__log(q4k_log_fn fn, void *user, q4k_log_level level, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    if (!fn) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fn(level, buf, user);
}

/* checked size arithmetic: return 0 on overflow */
Q4K__MAYBE_UNUSED static int q4k__mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}
Q4K__MAYBE_UNUSED static int q4k__add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return 0;
    *out = a + b;
    return 1;
}

Q4K_API q4k_type_info q4k_type_traits(int type) {
    q4k_type_info t;
    memset(&t, 0, sizeof t);
    switch (type) {
#define Q4K__T(id, nm, bs, ts, impl) \
    case id: t.name = nm; t.block_size = bs; t.type_size = ts; t.implemented = impl; break;
        Q4K__T(Q4K_TYPE_F32, "F32", 1, 4, 1)
        Q4K__T(Q4K_TYPE_F16, "F16", 1, 2, 1)
        Q4K__T(Q4K_TYPE_Q4_0, "Q4_0", 32, 18, 1)
        Q4K__T(Q4K_TYPE_Q4_1, "Q4_1", 32, 20, 0)
        Q4K__T(Q4K_TYPE_Q5_0, "Q5_0", 32, 22, 1)
        Q4K__T(Q4K_TYPE_Q5_1, "Q5_1", 32, 24, 0)
        Q4K__T(Q4K_TYPE_Q8_0, "Q8_0", 32, 34, 1)
        Q4K__T(Q4K_TYPE_Q8_1, "Q8_1", 32, 36, 0)
        Q4K__T(Q4K_TYPE_Q2_K, "Q2_K", 256, 84, 0)
        Q4K__T(Q4K_TYPE_Q3_K, "Q3_K", 256, 110, 0)
        Q4K__T(Q4K_TYPE_Q4_K, "Q4_K", 256, 144, 1)
        Q4K__T(Q4K_TYPE_Q5_K, "Q5_K", 256, 176, 1)
        Q4K__T(Q4K_TYPE_Q6_K, "Q6_K", 256, 210, 1)
        Q4K__T(Q4K_TYPE_Q8_K, "Q8_K", 256, 292, 0)
        Q4K__T(Q4K_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66, 0)
        Q4K__T(Q4K_TYPE_IQ2_XS, "IQ2_XS", 256, 74, 0)
        Q4K__T(Q4K_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98, 0)
        Q4K__T(Q4K_TYPE_IQ1_S, "IQ1_S", 256, 50, 0)
        Q4K__T(Q4K_TYPE_IQ4_NL, "IQ4_NL", 32, 18, 0)
        Q4K__T(Q4K_TYPE_IQ3_S, "IQ3_S", 256, 110, 0)
        Q4K__T(Q4K_TYPE_IQ2_S, "IQ2_S", 256, 82, 0)
        Q4K__T(Q4K_TYPE_IQ4_XS, "IQ4_XS", 256, 136, 0)
        Q4K__T(Q4K_TYPE_I8, "I8", 1, 1, 0)
        Q4K__T(Q4K_TYPE_I16, "I16", 1, 2, 0)
        Q4K__T(Q4K_TYPE_I32, "I32", 1, 4, 0)
        Q4K__T(Q4K_TYPE_I64, "I64", 1, 8, 0)
        Q4K__T(Q4K_TYPE_F64, "F64", 1, 8, 0)
        Q4K__T(Q4K_TYPE_IQ1_M, "IQ1_M", 256, 56, 0)
        Q4K__T(Q4K_TYPE_BF16, "BF16", 1, 2, 1)
        Q4K__T(Q4K_TYPE_TQ1_0, "TQ1_0", 256, 54, 0)
        Q4K__T(Q4K_TYPE_TQ2_0, "TQ2_0", 256, 66, 0)
        Q4K__T(Q4K_TYPE_MXFP4, "MXFP4", 32, 17, 0)
#undef Q4K__T
    default: break;
    }
    return t;
}

Q4K_API const char *q4k_type_name(int type) {
    q4k_type_info t = q4k_type_traits(type);
    return t.name ? t.name : "unknown";
}

Q4K_API size_t q4k_row_size(q4k_type type, int64_t n) {
    q4k_type_info t = q4k_type_traits((int)type);
    if (!t.type_size || n < 0 || n % t.block_size) return 0;
    return (size_t)(n / t.block_size) * t.type_size;
}

Q4K_API float q4k_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    float f;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* subnormal: normalise */
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    memcpy(&f, &bits, 4);
    return f;
}

Q4K_API uint16_t q4k_fp32_to_fp16(float f) {
    uint32_t x, sign, absx;
    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000u;
    absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((absx >> 13) & 0x3ff)); /* NaN */
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
    if (absx >= 0x38800000u) { /* normal half */
        uint32_t mant = absx + 0xfff + ((absx >> 13) & 1); /* round to nearest even */
        return (uint16_t)(sign | ((mant - 0x38000000u) >> 13));
    }
    if (absx < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
    {
        /* subnormal half: value = m * 2^-24 */
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
}

Q4K_API float q4k_bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

Q4K_API uint16_t q4k_fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

/* <<core */

/* >>formats */

/* Block formats. Each dequantizer is the scalar spec of its type: it gives
   bit for bit the floats of ggml's reference dequantizers (and of the gguf
   Python package, which mirrors them), so every faster kernel is held to it.
   The k-quants form d*sc and dmin*m as floats first, then y = d1*q - m1;
   Q6_K forms (d*sc)*q. Every product here is exact in float: an 11-bit fp16
   mantissa times integers of at most 12 significant bits together (Q6_K:
   a scale of 7, |sc| <= 128, and a quant of 5, |q| <= 32; Q8_0: a quant
   of 7) needs at most 23 of float's 24 bits, and no product leaves float's
   exponent range. Only the final subtraction of the k-quant min rounds, so a
   kernel that uses FMA, or multiplies in another order, gets the same bits.

   The quantizers are not so lucky: trunc(x*id + 8.5f) must round x*id before
   the add to match the reference byte for byte, so the formats code asks the
   compiler not to contract a*b+c into an FMA (clang honours the STDC pragma;
   gcc contracts in GNU mode when the target has FMA, so it gets its own
   switch there). Blocks are copied out with memcpy: rows may sit at any
   address in a mapped file. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__) && defined(__FP_FAST_FMAF)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#define Q4K__GCC_FP_OPTIONS_PUSHED 1
#endif

static void q4k__dequantize_q4_0(const uint8_t *src, float *y, int64_t nb) {
    int64_t i;
    int j;
    for (i = 0; i < nb; i++, src += sizeof(q4k_block_q4_0), y += Q4K_QK) {
        q4k_block_q4_0 b;
        float d;
        memcpy(&b, src, sizeof b);
        d = q4k_fp16_to_fp32(b.d);
        for (j = 0; j < Q4K_QK / 2; j++) {
            y[j] = (float)((b.qs[j] & 0xF) - 8) * d;
            y[j + Q4K_QK / 2] = (float)((b.qs[j] >> 4) - 8) * d;
        }
    }
}

static void q4k__dequantize_q5_0(const uint8_t *src, float *y, int64_t nb) {
    int64_t i;
    int j;
    for (i = 0; i < nb; i++, src += sizeof(q4k_block_q5_0), y += Q4K_QK) {
        q4k_block_q5_0 b;
        uint32_t qh;
        float d;
        memcpy(&b, src, sizeof b);
        d = q4k_fp16_to_fp32(b.d);
        qh = (uint32_t)b.qh[0] | (uint32_t)b.qh[1] << 8 | (uint32_t)b.qh[2] << 16 | (uint32_t)b.qh[3] << 24;
        for (j = 0; j < Q4K_QK / 2; j++) {
            int lo = (b.qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (b.qs[j] >> 4) | (int)((qh >> (j + Q4K_QK / 2)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + Q4K_QK / 2] = (float)(hi - 16) * d;
        }
    }
}

static void q4k__dequantize_q8_0(const uint8_t *src, float *y, int64_t nb) {
    int64_t i;
    int j;
    for (i = 0; i < nb; i++, src += sizeof(q4k_block_q8_0), y += Q4K_QK) {
        q4k_block_q8_0 b;
        float d;
        memcpy(&b, src, sizeof b);
        d = q4k_fp16_to_fp32(b.d);
        for (j = 0; j < Q4K_QK; j++) y[j] = (float)b.qs[j] * d;
    }
}

/* The 12 scale bytes of Q4_K/Q5_K hold 8 six-bit scales and 8 six-bit mins:
   bytes 0-3 scales 0-3 (low 6 bits), bytes 4-7 mins 0-3 (low 6 bits),
   bytes 8-11 the low 4 bits of scales 4-7 (low nibble) and mins 4-7 (high
   nibble), whose top 2 bits sit in the spare top bits of bytes 0-3 / 4-7. */
static void q4k__scale_min_k4(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K and Q5_K: 8 sub-blocks of 32. Sub-blocks 2k and 2k+1 share the 32
   bytes qs[32k..32k+31]: low nibbles for 2k, high nibbles for 2k+1. Q5_K's
   fifth bit of value e is bit e/32 of qh[e%32]. */
static void q4k__dequantize_q4_K(const uint8_t *src, float *y, int64_t nb) {
    int64_t i;
    int s, l;
    for (i = 0; i < nb; i++, src += sizeof(q4k_block_q4_K)) {
        q4k_block_q4_K b;
        float d, dmin;
        memcpy(&b, src, sizeof b);
        d = q4k_fp16_to_fp32(b.d);
        dmin = q4k_fp16_to_fp32(b.dmin);
        for (s = 0; s < 8; s++, y += 32) {
            const uint8_t *q = b.qs + 32 * (s / 2);
            int shift = 4 * (s & 1), sc, m;
            float d1, m1;
            q4k__scale_min_k4(s, b.scales, &sc, &m);
            d1 = d * (float)sc;
            m1 = dmin * (float)m;
            for (l = 0; l < 32; l++) y[l] = d1 * (float)((q[l] >> shift) & 0xF) - m1;
        }
    }
}

static void q4k__dequantize_q5_K(const uint8_t *src, float *y, int64_t nb) {
    int64_t i;
    int s, l;
    for (i = 0; i < nb; i++, src += sizeof(q4k_block_q5_K)) {
        q4k_block_q5_K b;
        float d, dmin;
        memcpy(&b, src, sizeof b);
        d = q4k_fp16_to_fp32(b.d);
        dmin = q4k_fp16_to_fp32(b.dmin);
        for (s = 0; s < 8; s++, y += 32) {
            const uint8_t *q = b.qs + 32 * (s / 2);
            int shift = 4 * (s & 1), sc, m;
            float d1, m1;
            q4k__scale_min_k4(s, b.scales, &sc, &m);
            d1 = d * (float)sc;
            m1 = dmin * (float)m;
            for (l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 0xF) | ((b.qh[l] >> s) & 1) << 4;
                y[l] = d1 * (float)v - m1;
            }
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with signed 8-bit scales. Each half of 128
   values uses 64 bytes of ql and 32 of qh: value h*128 + 32*g + l (g = 0..3,
   l = 0..31) takes the low (g < 2) or high (g >= 2) nibble of
   ql[64h + l + 32*(g&1)] and bits 2g..2g+1 of qh[32h + l]. */
static void q4k__dequantize_q6_K(const uint8_t *src, float *y, int64_t nb) {
    int64_t i;
    int h, g, l;
    for (i = 0; i < nb; i++, src += sizeof(q4k_block_q6_K)) {
        q4k_block_q6_K b;
        float d;
        memcpy(&b, src, sizeof b);
        d = q4k_fp16_to_fp32(b.d);
        for (h = 0; h < 2; h++) {
            for (g = 0; g < 4; g++, y += 32) {
                const uint8_t *ql = b.ql + 64 * h + 32 * (g & 1);
                const uint8_t *qh = b.qh + 32 * h;
                int shift = 4 * (g >> 1);
                for (l = 0; l < 32; l++) {
                    int q = (((ql[l] >> shift) & 0xF) | ((qh[l] >> (2 * g)) & 3) << 4) - 32;
                    float ds = d * (float)b.scales[8 * h + 2 * g + l / 16];
                    y[l] = ds * (float)q;
                }
            }
        }
    }
}

Q4K_API q4k_result q4k_dequantize_row(q4k_type type, const void *src, float *dst, int64_t n) {
    const uint8_t *s = (const uint8_t *)src;
    q4k_type_info t;
    int64_t i;
    switch (type) {
    case Q4K_TYPE_F32: case Q4K_TYPE_F16: case Q4K_TYPE_BF16: case Q4K_TYPE_Q4_0: case Q4K_TYPE_Q5_0:
    case Q4K_TYPE_Q8_0: case Q4K_TYPE_Q4_K: case Q4K_TYPE_Q5_K: case Q4K_TYPE_Q6_K:
        break;
    default:
        return Q4K_ERR_UNSUPPORTED_TYPE;
    }
    t = q4k_type_traits((int)type);
    if (n < 0 || n % t.block_size) return Q4K_ERR_INVALID_ARG;
    if (n == 0) return Q4K_OK;
    if (!src || !dst) return Q4K_ERR_INVALID_ARG;
    switch (type) {
    case Q4K_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case Q4K_TYPE_F16:
        for (i = 0; i < n; i++) dst[i] = q4k_fp16_to_fp32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        break;
    case Q4K_TYPE_BF16:
        for (i = 0; i < n; i++) dst[i] = q4k_bf16_to_fp32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        break;
    case Q4K_TYPE_Q4_0: q4k__dequantize_q4_0(s, dst, n / Q4K_QK); break;
    case Q4K_TYPE_Q5_0: q4k__dequantize_q5_0(s, dst, n / Q4K_QK); break;
    case Q4K_TYPE_Q8_0: q4k__dequantize_q8_0(s, dst, n / Q4K_QK); break;
    case Q4K_TYPE_Q4_K: q4k__dequantize_q4_K(s, dst, n / Q4K_QK_K); break;
    case Q4K_TYPE_Q5_K: q4k__dequantize_q5_K(s, dst, n / Q4K_QK_K); break;
    case Q4K_TYPE_Q6_K: q4k__dequantize_q6_K(s, dst, n / Q4K_QK_K); break;
    default: break;
    }
    return Q4K_OK;
}

/* ---- quantizers --------------------------------------------------------- */

/* Round to nearest, ties to even, for |x| < 2^22: adding 1.5 * 2^23 leaves
   the integer in the low mantissa bits, rounded by the FPU. */
static int q4k__nearest_int(float x) {
    float v = x + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (int)(i & 0x007FFFFF) - 0x00400000;
}

static int q4k__clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* float to integer in [lo, hi], NaN to lo: the C cast of an out-of-range
   float is undefined, and a scale of inf or 0 * inf can produce one */
static int q4k__clamp_to_int(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v > (float)hi) return hi;
    return (int)v;
}

/* Q8_0, Q4_0 and Q5_0 follow ggml's reference quantizers, and so match the
   gguf Python package byte for byte: d from the value of largest magnitude
   (the first one on ties; its sign kept for Q4_0/Q5_0 so that it lands on
   the one-sided end of the range, -8 or -16), q = roundf(x/d) with ties away
   from zero for Q8_0, q = trunc(x/d + 8.5) (or 16.5) for Q4_0/Q5_0. */
static void q4k__quantize_q8_0(const float *x, uint8_t *dst, int64_t nb) {
    int64_t i;
    int j;
    for (i = 0; i < nb; i++, x += Q4K_QK, dst += sizeof(q4k_block_q8_0)) {
        q4k_block_q8_0 b;
        float amax = 0.0f, d, id;
        for (j = 0; j < Q4K_QK; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        d = amax / 127.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = q4k_fp32_to_fp16(d);
        for (j = 0; j < Q4K_QK; j++) b.qs[j] = (int8_t)q4k__clamp_to_int(roundf(x[j] * id), -128, 127);
        memcpy(dst, &b, sizeof b);
    }
}

/* signed value of largest magnitude, the first one on ties */
static float q4k__signed_absmax(const float *x, int n) {
    float amax = fabsf(x[0]), max = x[0];
    int j;
    for (j = 1; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    return max;
}

static void q4k__quantize_q4_0(const float *x, uint8_t *dst, int64_t nb) {
    int64_t i;
    int j;
    for (i = 0; i < nb; i++, x += Q4K_QK, dst += sizeof(q4k_block_q4_0)) {
        q4k_block_q4_0 b;
        float d = q4k__signed_absmax(x, Q4K_QK) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b.d = q4k_fp32_to_fp16(d);
        for (j = 0; j < Q4K_QK / 2; j++) {
            int lo = q4k__clamp_to_int(truncf(x[j] * id + 8.5f), 0, 15);
            int hi = q4k__clamp_to_int(truncf(x[j + Q4K_QK / 2] * id + 8.5f), 0, 15);
            b.qs[j] = (uint8_t)(lo | hi << 4);
        }
        memcpy(dst, &b, sizeof b);
    }
}

static void q4k__quantize_q5_0(const float *x, uint8_t *dst, int64_t nb) {
    int64_t i;
    int j;
    for (i = 0; i < nb; i++, x += Q4K_QK, dst += sizeof(q4k_block_q5_0)) {
        q4k_block_q5_0 b;
        float d = q4k__signed_absmax(x, Q4K_QK) / -16.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        b.d = q4k_fp32_to_fp16(d);
        for (j = 0; j < Q4K_QK / 2; j++) {
            int lo = q4k__clamp_to_int(truncf(x[j] * id + 16.5f), 0, 31);
            int hi = q4k__clamp_to_int(truncf(x[j + Q4K_QK / 2] * id + 16.5f), 0, 31);
            b.qs[j] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + Q4K_QK / 2);
        }
        for (j = 0; j < 4; j++) b.qh[j] = (uint8_t)(qh >> (8 * j));
        memcpy(dst, &b, sizeof b);
    }
}

/* Scale and min of one Q4_K sub-block: x ~ scale * L + min with L in
   0..nmax, min <= 0, minimising the weighted squared error. Start from the
   min/max grid, then try nstep+1 slightly different grids (nmax + rmin +
   rdelta*k levels across the range) and for each take the weighted
   least-squares scale and min of the levels it picks, keeping the best.
   Returns the scale; *neg_min = -min >= 0. */
static float q4k__fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                                uint8_t *Ltry, float rmin, float rdelta, int nstep) {
    float lo = x[0], hi = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    float iscale, scale, best_err = 0.0f;
    int i, k;
    for (i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0.0f) lo = 0.0f;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *neg_min = -lo;
        return 0.0f;
    }
    iscale = (float)nmax / (hi - lo);
    scale = 1.0f / iscale;
    for (i = 0; i < n; i++) {
        float e;
        L[i] = (uint8_t)q4k__clampi(q4k__nearest_int(iscale * (x[i] - lo)), 0, nmax);
        e = scale * (float)L[i] + lo - x[i];
        best_err += w[i] * e * e;
    }
    for (k = 0; k <= nstep; k++) {
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f, det;
        iscale = (rmin + rdelta * (float)k + (float)nmax) / (hi - lo);
        for (i = 0; i < n; i++) {
            int l = q4k__clampi(q4k__nearest_int(iscale * (x[i] - lo)), 0, nmax);
            Ltry[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0.0f) {
            float s = (sum_w * sum_xl - sum_x * sum_l) / det;
            float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            float err = 0.0f;
            if (m > 0.0f) { /* the format needs min <= 0: refit the scale alone */
                m = 0.0f;
                s = sum_xl / sum_l2;
            }
            for (i = 0; i < n; i++) {
                float e = s * (float)Ltry[i] + m - x[i];
                err += w[i] * e * e;
            }
            if (err < best_err) {
                memcpy(L, Ltry, (size_t)n);
                best_err = err;
                scale = s;
                lo = m;
            }
        }
    }
    *neg_min = -lo;
    return scale;
}

/* Q4_K: fit (scale, min) of each of the 8 sub-blocks of 32 with weights
   rms(sub-block) + |x| (large values matter more), quantize the 8 scales and
   8 mins to 6 bits against d = max scale / 63 and dmin = max min / 63 (fp16),
   then requantize the values with the scales as stored. */
static void q4k__quantize_q4_K(const float *x, uint8_t *dst, int64_t nb) {
    int64_t i;
    int j, l;
    for (i = 0; i < nb; i++, x += Q4K_QK_K, dst += sizeof(q4k_block_q4_K)) {
        q4k_block_q4_K b;
        uint8_t L[Q4K_QK_K], Ltry[32];
        float w[32], scales[8], mins[8], max_scale = 0.0f, max_min = 0.0f, inv_scale, inv_min, d, dmin;
        for (j = 0; j < 8; j++) {
            const float *xs = x + 32 * j;
            float sum_x2 = 0.0f, av;
            for (l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
            av = sqrtf(sum_x2 / 32.0f);
            for (l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
            scales[j] = q4k__fit_scale_min(32, 15, xs, w, L + 32 * j, &mins[j], Ltry, -1.0f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
        inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
        memset(b.scales, 0, sizeof b.scales);
        for (j = 0; j < 8; j++) {
            int ls = q4k__clampi(q4k__nearest_int(inv_scale * scales[j]), 0, 63);
            int lm = q4k__clampi(q4k__nearest_int(inv_min * mins[j]), 0, 63);
            if (j < 4) {
                b.scales[j] = (uint8_t)ls;
                b.scales[j + 4] = (uint8_t)lm;
            } else {
                b.scales[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
                b.scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                b.scales[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        b.d = q4k_fp32_to_fp16(max_scale / 63.0f);
        b.dmin = q4k_fp32_to_fp16(max_min / 63.0f);
        d = q4k_fp16_to_fp32(b.d);
        dmin = q4k_fp16_to_fp32(b.dmin);
        for (j = 0; j < 8; j++) {
            int sc, m;
            float d1, m1;
            q4k__scale_min_k4(j, b.scales, &sc, &m);
            d1 = d * (float)sc;
            m1 = dmin * (float)m;
            if (d1 == 0.0f) continue; /* every level decodes to -m1: keep the fit's */
            for (l = 0; l < 32; l++)
                L[32 * j + l] = (uint8_t)q4k__clampi(q4k__nearest_int((x[32 * j + l] + m1) / d1), 0, 15);
        }
        for (j = 0; j < 4; j++)
            for (l = 0; l < 32; l++) b.qs[32 * j + l] = (uint8_t)(L[64 * j + l] | L[64 * j + 32 + l] << 4);
        memcpy(dst, &b, sizeof b);
    }
}

/* Scale of one Q6_K sub-block, x ~ scale * l with l in -nmax..nmax-1 and
   weights x^2: start at the grid that puts the value of largest magnitude
   on -nmax, take the weighted least-squares scale of its levels, then try
   grids with nmax +- 0.1k (k = 1..9) levels and keep the one whose levels
   fit best (largest sum_xl^2 / sum_l2). L gets l + nmax. */
static float q4k__fit_scale_sym(int n, int nmax, const float *x, uint8_t *L) {
    float amax = 0.0f, max = 0.0f, iscale, sum_lx = 0.0f, sum_l2 = 0.0f, scale, best;
    int i, k;
    for (i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    iscale = -(float)nmax / max;
    for (i = 0; i < n; i++) {
        int l = q4k__clampi(q4k__nearest_int(iscale * x[i]), -nmax, nmax - 1);
        float w = x[i] * x[i];
        L[i] = (uint8_t)(l + nmax);
        sum_lx += w * x[i] * (float)l;
        sum_l2 += w * (float)l * (float)l;
    }
    scale = sum_l2 > 0.0f ? sum_lx / sum_l2 : 0.0f;
    best = scale * sum_lx;
    for (k = -9; k <= 9; k++) {
        if (k == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)k) / max;
        sum_lx = sum_l2 = 0.0f;
        for (i = 0; i < n; i++) {
            int l = q4k__clampi(q4k__nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sum_lx += w * x[i] * (float)l;
            sum_l2 += w * (float)l * (float)l;
        }
        if (sum_l2 > 0.0f && sum_lx * sum_lx > best * sum_l2) {
            for (i = 0; i < n; i++)
                L[i] = (uint8_t)(nmax + q4k__clampi(q4k__nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    return scale;
}

/* Q6_K: fit a scale per sub-block of 16, quantize the 16 scales to signed
   8 bits against d (the largest-magnitude scale lands on -128), requantize
   the values with the stored scales to -32..31. */
static void q4k__quantize_q6_K(const float *x, uint8_t *dst, int64_t nb) {
    int64_t i;
    int j, l, h;
    for (i = 0; i < nb; i++, x += Q4K_QK_K, dst += sizeof(q4k_block_q6_K)) {
        q4k_block_q6_K b;
        uint8_t L[Q4K_QK_K];
        float scales[16], max_scale = 0.0f, max_abs = 0.0f, iscale, d;
        for (j = 0; j < 16; j++) {
            scales[j] = q4k__fit_scale_sym(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(&b, 0, sizeof b);
        if (max_abs >= 1e-15f) {
            iscale = -128.0f / max_scale;
            b.d = q4k_fp32_to_fp16(1.0f / iscale);
            for (j = 0; j < 16; j++) b.scales[j] = (int8_t)q4k__clampi(q4k__nearest_int(iscale * scales[j]), -128, 127);
            d = q4k_fp16_to_fp32(b.d);
            for (j = 0; j < 16; j++) {
                float ds = d * (float)b.scales[j];
                if (ds == 0.0f) continue;
                for (l = 0; l < 16; l++)
                    L[16 * j + l] = (uint8_t)(32 + q4k__clampi(q4k__nearest_int(x[16 * j + l] / ds), -32, 31));
            }
            for (h = 0; h < 2; h++) {
                const uint8_t *Lh = L + 128 * h;
                for (l = 0; l < 32; l++) {
                    b.ql[64 * h + l] = (uint8_t)((Lh[l] & 0xF) | (Lh[l + 64] & 0xF) << 4);
                    b.ql[64 * h + 32 + l] = (uint8_t)((Lh[l + 32] & 0xF) | (Lh[l + 96] & 0xF) << 4);
                    b.qh[32 * h + l] = (uint8_t)((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 |
                                                 (Lh[l + 96] >> 4) << 6);
                }
            }
        }
        memcpy(dst, &b, sizeof b);
    }
}

Q4K_API size_t q4k_quantize_row(q4k_type type, const float *src, void *dst, int64_t n) {
    uint8_t *d = (uint8_t *)dst;
    size_t size;
    int64_t i;
    switch (type) {
    case Q4K_TYPE_F32: case Q4K_TYPE_F16: case Q4K_TYPE_BF16: case Q4K_TYPE_Q4_0: case Q4K_TYPE_Q5_0:
    case Q4K_TYPE_Q8_0: case Q4K_TYPE_Q4_K: case Q4K_TYPE_Q6_K:
        break;
    default:
        return 0;
    }
    size = q4k_row_size(type, n);
    if (size == 0 || !src || !dst) return 0;
    switch (type) {
    case Q4K_TYPE_F32:
        memcpy(dst, src, size);
        break;
    case Q4K_TYPE_F16:
    case Q4K_TYPE_BF16:
        for (i = 0; i < n; i++) {
            uint16_t h = type == Q4K_TYPE_F16 ? q4k_fp32_to_fp16(src[i]) : q4k_fp32_to_bf16(src[i]);
            d[2 * i] = (uint8_t)(h & 0xFF);
            d[2 * i + 1] = (uint8_t)(h >> 8);
        }
        break;
    case Q4K_TYPE_Q4_0: q4k__quantize_q4_0(src, d, n / Q4K_QK); break;
    case Q4K_TYPE_Q5_0: q4k__quantize_q5_0(src, d, n / Q4K_QK); break;
    case Q4K_TYPE_Q8_0: q4k__quantize_q8_0(src, d, n / Q4K_QK); break;
    case Q4K_TYPE_Q4_K: q4k__quantize_q4_K(src, d, n / Q4K_QK_K); break;
    case Q4K_TYPE_Q6_K: q4k__quantize_q6_K(src, d, n / Q4K_QK_K); break;
    default: break;
    }
    return size;
}

#if defined(__clang__)
#pragma STDC FP_CONTRACT DEFAULT
#elif defined(Q4K__GCC_FP_OPTIONS_PUSHED)
#pragma GCC pop_options
#undef Q4K__GCC_FP_OPTIONS_PUSHED
#endif
/* <<formats */

/* >>gguf */
/* <<gguf */

/* >>cpu */

#if !defined(Q4K_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define Q4K__X86 1
#include <immintrin.h>
#endif
#if !defined(Q4K_NO_SIMD) && defined(__aarch64__) && defined(__ARM_NEON)
#define Q4K__NEON 1
#include <arm_neon.h>
#endif

Q4K_API const char *q4k_cpu_path_name(q4k_cpu_path p) {
    switch (p) {
    case Q4K_CPU_AUTO: return "auto";
    case Q4K_CPU_SCALAR: return "scalar";
    case Q4K_CPU_AVX2: return "avx2";
    case Q4K_CPU_AVX512: return "avx512";
    case Q4K_CPU_NEON: return "neon";
    }
    return "unknown";
}

Q4K_API unsigned q4k_cpu_paths_compiled(void) {
    unsigned m = 1u << Q4K_CPU_SCALAR;
#ifdef Q4K__X86
    m |= (1u << Q4K_CPU_AVX2) | (1u << Q4K_CPU_AVX512);
#endif
    /* no NEON kernels yet: the path is detected but not compiled */
    return m;
}

Q4K_API unsigned q4k_cpu_paths_detected(void) {
    unsigned m = 1u << Q4K_CPU_SCALAR;
#ifdef Q4K__X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) m |= 1u << Q4K_CPU_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && (m & (1u << Q4K_CPU_AVX2)))
        m |= 1u << Q4K_CPU_AVX512;
#endif
#ifdef Q4K__NEON
    m |= 1u << Q4K_CPU_NEON;
#endif
    return m;
}

Q4K_API q4k_result q4k_cpu_resolve_path(q4k_cpu_path want, q4k_cpu_path *out, q4k_error *err) {
    unsigned usable = q4k_cpu_paths_compiled() & q4k_cpu_paths_detected();
    int p;
    if (want == Q4K_CPU_AUTO) {
        const char *env = getenv("Q4K_CPU");
        if (env && *env) {
            for (p = Q4K_CPU_SCALAR; p <= Q4K_CPU_NEON; p++)
                if (!strcmp(env, q4k_cpu_path_name((q4k_cpu_path)p))) break;
            if (p > Q4K_CPU_NEON)
                return q4k__fail(err, Q4K_ERR_INVALID_ARG,
                                 "Q4K_CPU='%s' is not a CPU path (scalar, avx2, avx512, neon)", env);
            want = (q4k_cpu_path)p;
        } else {
            for (p = Q4K_CPU_NEON; p > Q4K_CPU_SCALAR; p--)
                if (usable & (1u << p)) break;
            *out = (q4k_cpu_path)p;
            return Q4K_OK;
        }
    }
    if ((int)want < Q4K_CPU_SCALAR || (int)want > Q4K_CPU_NEON)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "CPU path %d does not exist", (int)want);
    if (!(q4k_cpu_paths_compiled() & (1u << want)))
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "CPU path %s is not compiled into this build",
                         q4k_cpu_path_name(want));
    if (!(usable & (1u << want)))
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "this CPU lacks the instructions of path %s",
                         q4k_cpu_path_name(want));
    *out = want;
    return Q4K_OK;
}
/* ---- thread pool --------------------------------------------------------

   Workers wait for a generation counter to change: they spin a little (a
   decode step launches a few hundred short jobs back to back) and then sleep
   on a condition variable, so an idle pool costs no CPU. The caller runs
   share 0 itself. Without pthreads every pool has one thread. */

#if !defined(Q4K_NO_THREADS) && (defined(__unix__) || defined(__APPLE__))
#define Q4K__THREADS 1
#include <pthread.h>
#else
#define Q4K__THREADS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define Q4K__LOAD(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define Q4K__STORE(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
#define Q4K__DEC(p) __atomic_sub_fetch(p, 1, __ATOMIC_ACQ_REL)
#define Q4K__SPIN_ITERS 4000
#else /* no atomics known: every access below is also done under the mutex */
#define Q4K__LOAD(p) (*(p))
#define Q4K__STORE(p, v) (*(p) = (v))
#define Q4K__DEC(p) (--*(p))
#define Q4K__SPIN_ITERS 0
#endif

#if defined(Q4K__X86)
#define Q4K__PAUSE() _mm_pause()
#else
#define Q4K__PAUSE() ((void)0)
#endif

#if Q4K__THREADS
struct q4k__worker {
    q4k_pool *pool;
    int ith;
};
#endif

struct q4k_pool {
    int n; /* threads, the caller included */
#if Q4K__THREADS
    pthread_t *threads;
    struct q4k__worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    q4k_pool_fn fn;
    void *ctx;
    unsigned gen;  /* bumped (under mu) to start a job or to stop */
    int pending;   /* workers still running the current job */
    int stop;
#endif
};

#if Q4K__THREADS
static void *q4k__pool_main(void *arg) {
    struct q4k__worker *wk = (struct q4k__worker *)arg;
    q4k_pool *p = wk->pool;
    unsigned seen = 0, g;
    for (;;) {
        int spin;
        for (spin = 0; (g = Q4K__LOAD(&p->gen)) == seen && spin < Q4K__SPIN_ITERS; spin++) Q4K__PAUSE();
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = Q4K__LOAD(&p->gen)) == seen) pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (Q4K__LOAD(&p->stop)) break;
        p->fn(p->ctx, wk->ith, p->n);
        if (Q4K__DEC(&p->pending) == 0) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}
#endif

Q4K_API q4k_pool *q4k_pool_create(int n_threads) {
    q4k_pool *p = (q4k_pool *)Q4K_MALLOC(sizeof *p);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->n = 1;
#if Q4K__THREADS
    if (n_threads > 1) {
        int i;
        p->threads = (pthread_t *)Q4K_MALLOC(sizeof(pthread_t) * (size_t)n_threads);
        p->workers = (struct q4k__worker *)Q4K_MALLOC(sizeof(struct q4k__worker) * (size_t)n_threads);
        if (!p->threads || !p->workers) {
            Q4K_FREE(p->threads);
            Q4K_FREE(p->workers);
            Q4K_FREE(p);
            return NULL;
        }
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv_work, NULL);
        pthread_cond_init(&p->cv_done, NULL);
        /* a thread that cannot be created makes the pool smaller, not fail */
        for (i = 1; i < n_threads; i++) {
            p->workers[i].pool = p;
            p->workers[i].ith = i;
            if (pthread_create(&p->threads[i], NULL, q4k__pool_main, &p->workers[i]) != 0) break;
            p->n = i + 1;
        }
    }
#else
    (void)n_threads;
#endif
    return p;
}

Q4K_API void q4k_pool_destroy(q4k_pool *p) {
    if (!p) return;
#if Q4K__THREADS
    if (p->threads) {
        int i;
        pthread_mutex_lock(&p->mu);
        Q4K__STORE(&p->stop, 1);
        Q4K__STORE(&p->gen, p->gen + 1);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
        for (i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
        pthread_cond_destroy(&p->cv_done);
        pthread_cond_destroy(&p->cv_work);
        pthread_mutex_destroy(&p->mu);
        Q4K_FREE(p->threads);
        Q4K_FREE(p->workers);
    }
#endif
    Q4K_FREE(p);
}

Q4K_API int q4k_pool_threads(const q4k_pool *p) { return p ? p->n : 1; }

Q4K_API void q4k_pool_run(q4k_pool *p, q4k_pool_fn fn, void *ctx) {
#if Q4K__THREADS
    int spin;
    if (p && p->n > 1) {
        p->fn = fn;
        p->ctx = ctx;
        Q4K__STORE(&p->pending, p->n - 1);
        pthread_mutex_lock(&p->mu);
        Q4K__STORE(&p->gen, p->gen + 1);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
        fn(ctx, 0, p->n);
        for (spin = 0; Q4K__LOAD(&p->pending) != 0 && spin < Q4K__SPIN_ITERS; spin++) Q4K__PAUSE();
        if (Q4K__LOAD(&p->pending) != 0) {
            pthread_mutex_lock(&p->mu);
            while (Q4K__LOAD(&p->pending) != 0) pthread_cond_wait(&p->cv_done, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        return;
    }
#endif
    (void)p;
    fn(ctx, 0, 1);
}

/* ---- activation quantization --------------------------------------------

   The one 8-bit activation scheme of every backend. Per block of 32 floats,
   in IEEE single precision with correctly rounded operations:
      amax = max |x_i|                (NaN elements are ignored)
      d    = amax / 127.0f
      id   = d != 0 ? 1.0f / d : 0.0f
      q_i  = clamp(roundeven(x_i * id), -127, 127)   (NaN products give 0)
      sum  = q_0 + ... + q_31
   roundeven is round half to even, independent of the FP environment. The
   clamp never binds for finite normal inputs (|x_i * id| <= 127 * (1 + 3u));
   it only matters when amax is subnormal and 1/d overflows. GPU kernels must
   use IEEE division (no fast-math reciprocal) and keep subnormals. */

static float q4k__round_even(float v) {
    float f = floorf(v), r = v - f; /* exact for |v| < 2^23 */
    if (r > 0.5f || (r == 0.5f && fmodf(f, 2.0f) != 0.0f)) f += 1.0f;
    return f;
}

Q4K_API void q4k_quantize_act_q8(const float *x, q4k_block_q8a *out, int64_t n) {
    int64_t b, nb = n / Q4K_QK;
    int i;
    for (b = 0; b < nb; b++) {
        const float *xb = x + b * Q4K_QK;
        float amax = 0.0f, d, id;
        int32_t sum = 0;
        for (i = 0; i < Q4K_QK; i++) {
            float a = fabsf(xb[i]);
            if (a > amax) amax = a;
        }
        d = amax / 127.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        for (i = 0; i < Q4K_QK; i++) {
            float r = q4k__round_even(xb[i] * id);
            int q = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? (int)r : 0;
            out[b].qs[i] = (int8_t)q;
            sum += q;
        }
        out[b].d = d;
        out[b].sum = sum;
    }
}

/* ---- kernels: shared definitions -----------------------------------------

   A kernel computes, for one weight row and nc <= Q4K__NT consecutive
   activation rows (columns of Y), nc dot products. The arithmetic of each
   column is the same whatever nc is, and rows never share arithmetic, so a
   result depends neither on the thread count nor on the tiling. */

#define Q4K__NT 8 /* most columns a kernel call handles */

typedef struct q4k__act {
    const q4k_block_q8a *q; /* n rows of nbx blocks */
    const float *d;         /* q[i].d, contiguous */
    const float *bs;        /* q[i].d * (float)q[i].sum */
    int64_t nbx;            /* blocks per row: cols / 32 */
} q4k__act;

/* Q8 mode: integer dots against q4k_block_q8a activations */
typedef void (*q4k__qdot_fn)(const void *w, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                             int64_t ys);
/* float activations: weights of type F32, F16 or BF16 (x rows of xs floats) */
typedef void (*q4k__fdot_fn)(const void *w, int64_t cols, const float *x, int64_t xs, int nc, float *y, int64_t ys);

typedef struct q4k__kernels {
    q4k__fdot_fn f32, f16, bf16; /* NULL: decode with q4k_dequantize_row, then f32 */
    q4k__qdot_fn q8_0, q4_0, q5_0, q4_K, q5_K, q6_K;
    int nt; /* columns per call */
} q4k__kernels;

/* the 8 six-bit scales and mins of a Q4_K / Q5_K super-block (>>formats) */
static void q4k__scales_k4(const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    int j, a, b;
    for (j = 0; j < 8; j++) {
        q4k__scale_min_k4(j, s, &a, &b);
        sc[j] = (uint8_t)a;
        mn[j] = (uint8_t)b;
    }
}

/* the same, a word at a time (SIMD paths): bytes 0-3 hold scales 0-3 and
   the top bits of scales 4-7, bytes 4-7 mins 0-3 and the top bits of mins
   4-7, bytes 8-11 the low nibbles of scales 4-7 and mins 4-7. Byte j of
   *sc / *mn is scale / min j; they stay in registers (no store-to-load
   forwarding stall). */
static inline void q4k__scales_k4_words(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    *sc = (uint64_t)(u0 & 0x3f3f3f3fu) | (uint64_t)((u2 & 0x0f0f0f0fu) | ((u0 >> 6) & 0x03030303u) << 4) << 32;
    *mn = (uint64_t)(u1 & 0x3f3f3f3fu) | (uint64_t)(((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 6) & 0x03030303u) << 4) << 32;
}

/* ---- scalar kernels: the specification ----------------------------------

   Float activations (Q4K_ACT_F32, and F32/F16/BF16 weights in either mode):
   the weight row is decoded exactly (q4k_dequantize_row) and
      y = sum over 32-blocks b, in order, of s_b,
      s_b = sum over i in b, in order, of w_i * x_i     (a last block may be short)
   in float. SIMD paths accumulate in lanes: same value up to float rounding.

   Q8 mode (quantized weights): x is quantized by q4k_quantize_act_q8; every
   product of integers below is exact in int32 and converts exactly to float.
   With dx_j, sx_j, qx the scale, sum and quants of activation block j:
      Q8_0, Q4_0, Q5_0 (weight block b = d * q):
         y = sum_b (d_b * dx_b) * (float)(sum_i q_i * qx_i)
      Q4_K, Q5_K (sub-block j: w = d * sc_j * q - dmin * m_j, q >= 0):
         y = sum over super-blocks of  d * A - dmin * B,
         A = sum_j dx_j * (float)(sc_j * sum_i q_i * qx_i)
         B = sum_j (float)m_j * (dx_j * (float)sx_j)
      Q6_K (16-value sub-block k: w = d * sc_k * q, q in -32..31; one
         activation block j covers sub-blocks 2j and 2j+1):
         y = sum over super-blocks of  d * A,
         A = sum_j dx_j * (float)(sc_2j * sum_{i<16} q_i qx_i + sc_2j+1 * sum_{i>=16} q_i qx_i)
   all sums in order; SIMD paths sum the same exact integers in another float
   order. */

static float q4k__fdot_ref(const float *w, const float *x, int64_t n) {
    float acc = 0.0f;
    int64_t b, i;
    for (b = 0; b < n; b += Q4K_QK) {
        int64_t e = b + Q4K_QK < n ? b + Q4K_QK : n;
        float s = 0.0f;
        for (i = b; i < e; i++) s += w[i] * x[i];
        acc += s;
    }
    return acc;
}

static void q4k__fdot_f32_scalar(const void *w, int64_t cols, const float *x, int64_t xs, int nc, float *y,
                                 int64_t ys) {
    int c;
    for (c = 0; c < nc; c++) y[c * ys] = q4k__fdot_ref((const float *)w, x + c * xs, cols);
}

static void q4k__qdot_q8_0_scalar(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                  int64_t ys) {
    const q4k_block_q8_0 *w = (const q4k_block_q8_0 *)wv;
    int64_t b, nb = cols / Q4K_QK;
    int c, i;
    for (c = 0; c < nc; c++) {
        const q4k_block_q8a *x = a->q + (j + c) * a->nbx;
        float acc = 0.0f;
        for (b = 0; b < nb; b++) {
            int32_t s = 0;
            for (i = 0; i < Q4K_QK; i++) s += w[b].qs[i] * x[b].qs[i];
            acc += (q4k_fp16_to_fp32(w[b].d) * x[b].d) * (float)s;
        }
        y[c * ys] = acc;
    }
}

/* q[32] = the signed quants of a Q4_0 / Q5_0 block */
static void q4k__unpack_q4_0(const q4k_block_q4_0 *w, int8_t *q) {
    int i;
    for (i = 0; i < 16; i++) {
        q[i] = (int8_t)((w->qs[i] & 0xF) - 8);
        q[i + 16] = (int8_t)((w->qs[i] >> 4) - 8);
    }
}

static void q4k__unpack_q5_0(const q4k_block_q5_0 *w, int8_t *q) {
    uint32_t qh = (uint32_t)w->qh[0] | (uint32_t)w->qh[1] << 8 | (uint32_t)w->qh[2] << 16 | (uint32_t)w->qh[3] << 24;
    int i;
    for (i = 0; i < 16; i++) {
        q[i] = (int8_t)(((w->qs[i] & 0xF) | ((qh >> i) & 1) << 4) - 16);
        q[i + 16] = (int8_t)(((w->qs[i] >> 4) | ((qh >> (i + 16)) & 1) << 4) - 16);
    }
}

static void q4k__qdot_q4_0_scalar(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                  int64_t ys) {
    const q4k_block_q4_0 *w = (const q4k_block_q4_0 *)wv;
    int64_t b, nb = cols / Q4K_QK;
    float acc[Q4K__NT] = {0};
    int8_t q[Q4K_QK];
    int c, i;
    for (b = 0; b < nb; b++) {
        float d = q4k_fp16_to_fp32(w[b].d);
        q4k__unpack_q4_0(&w[b], q);
        for (c = 0; c < nc; c++) {
            const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b;
            int32_t s = 0;
            for (i = 0; i < Q4K_QK; i++) s += q[i] * x->qs[i];
            acc[c] += (d * x->d) * (float)s;
        }
    }
    for (c = 0; c < nc; c++) y[c * ys] = acc[c];
}

static void q4k__qdot_q5_0_scalar(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                  int64_t ys) {
    const q4k_block_q5_0 *w = (const q4k_block_q5_0 *)wv;
    int64_t b, nb = cols / Q4K_QK;
    float acc[Q4K__NT] = {0};
    int8_t q[Q4K_QK];
    int c, i;
    for (b = 0; b < nb; b++) {
        float d = q4k_fp16_to_fp32(w[b].d);
        q4k__unpack_q5_0(&w[b], q);
        for (c = 0; c < nc; c++) {
            const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b;
            int32_t s = 0;
            for (i = 0; i < Q4K_QK; i++) s += q[i] * x->qs[i];
            acc[c] += (d * x->d) * (float)s;
        }
    }
    for (c = 0; c < nc; c++) y[c * ys] = acc[c];
}

/* Q4_K / Q5_K share everything but the quants: q[256] unsigned */
static void q4k__qdot_k45_scalar(const uint8_t *q, const uint8_t *scales, float d, float dmin, const q4k__act *a,
                                 int64_t b, int64_t j, int nc, float *acc) {
    uint8_t sc[8], mn[8];
    int c, k, i;
    q4k__scales_k4(scales, sc, mn);
    for (c = 0; c < nc; c++) {
        const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b * 8;
        const float *bs = a->bs + (j + c) * a->nbx + b * 8;
        float sa = 0.0f, sb = 0.0f;
        for (k = 0; k < 8; k++) {
            int32_t s = 0;
            for (i = 0; i < Q4K_QK; i++) s += q[k * 32 + i] * x[k].qs[i];
            sa += x[k].d * (float)(sc[k] * s);
            sb += (float)mn[k] * bs[k];
        }
        acc[c] += d * sa - dmin * sb;
    }
}

static void q4k__qdot_q4_K_scalar(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                  int64_t ys) {
    const q4k_block_q4_K *w = (const q4k_block_q4_K *)wv;
    int64_t b, nb = cols / Q4K_QK_K;
    float acc[Q4K__NT] = {0};
    uint8_t q[Q4K_QK_K];
    int c, k, l;
    for (b = 0; b < nb; b++) {
        for (k = 0; k < 4; k++)
            for (l = 0; l < 32; l++) {
                q[64 * k + l] = w[b].qs[32 * k + l] & 0xF;
                q[64 * k + 32 + l] = w[b].qs[32 * k + l] >> 4;
            }
        q4k__qdot_k45_scalar(q, w[b].scales, q4k_fp16_to_fp32(w[b].d), q4k_fp16_to_fp32(w[b].dmin), a, b, j, nc, acc);
    }
    for (c = 0; c < nc; c++) y[c * ys] = acc[c];
}

static void q4k__qdot_q5_K_scalar(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                  int64_t ys) {
    const q4k_block_q5_K *w = (const q4k_block_q5_K *)wv;
    int64_t b, nb = cols / Q4K_QK_K;
    float acc[Q4K__NT] = {0};
    uint8_t q[Q4K_QK_K];
    int c, k, l;
    for (b = 0; b < nb; b++) {
        for (k = 0; k < 4; k++)
            for (l = 0; l < 32; l++) {
                q[64 * k + l] = (uint8_t)((w[b].qs[32 * k + l] & 0xF) | ((w[b].qh[l] >> (2 * k)) & 1) << 4);
                q[64 * k + 32 + l] = (uint8_t)((w[b].qs[32 * k + l] >> 4) | ((w[b].qh[l] >> (2 * k + 1)) & 1) << 4);
            }
        q4k__qdot_k45_scalar(q, w[b].scales, q4k_fp16_to_fp32(w[b].d), q4k_fp16_to_fp32(w[b].dmin), a, b, j, nc, acc);
    }
    for (c = 0; c < nc; c++) y[c * ys] = acc[c];
}

/* q[256] = the signed quants (-32..31) of a Q6_K super-block, in value order */
static void q4k__unpack_q6_K(const q4k_block_q6_K *w, int8_t *q) {
    int h, l;
    for (h = 0; h < 2; h++) {
        const uint8_t *ql = w->ql + 64 * h, *qh = w->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
        }
    }
}

static void q4k__qdot_q6_K_scalar(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                  int64_t ys) {
    const q4k_block_q6_K *w = (const q4k_block_q6_K *)wv;
    int64_t b, nb = cols / Q4K_QK_K;
    float acc[Q4K__NT] = {0};
    int8_t q[Q4K_QK_K];
    int c, k, i;
    for (b = 0; b < nb; b++) {
        float d = q4k_fp16_to_fp32(w[b].d);
        q4k__unpack_q6_K(&w[b], q);
        for (c = 0; c < nc; c++) {
            const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b * 8;
            float sa = 0.0f;
            for (k = 0; k < 8; k++) {
                int32_t s0 = 0, s1 = 0;
                for (i = 0; i < 16; i++) s0 += q[32 * k + i] * x[k].qs[i];
                for (i = 16; i < 32; i++) s1 += q[32 * k + i] * x[k].qs[i];
                sa += x[k].d * (float)(w[b].scales[2 * k] * s0 + w[b].scales[2 * k + 1] * s1);
            }
            acc[c] += d * sa;
        }
    }
    for (c = 0; c < nc; c++) y[c * ys] = acc[c];
}

static const q4k__kernels q4k__kernels_scalar = {
    q4k__fdot_f32_scalar, NULL, NULL,
    q4k__qdot_q8_0_scalar, q4k__qdot_q4_0_scalar, q4k__qdot_q5_0_scalar,
    q4k__qdot_q4_K_scalar, q4k__qdot_q5_K_scalar, q4k__qdot_q6_K_scalar,
    Q4K__NT};

#ifdef Q4K__X86
/* ---- AVX2 + FMA + F16C ---------------------------------------------------

   Integer dots with vpmaddubsw (unsigned x signed bytes to int16 pairs, never
   saturating here: |pair| <= 2 * 128 * 127) and vpmaddwd. Signed weights use
   the sign trick: |w| times x with the sign of w. Kernels are written once
   for nc columns and instantiated for each nc (Q4K__AVX2_TILES), so the
   column loops unroll and accumulators stay in registers. */

#define Q4K__AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define Q4K__AVX2_INL static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define Q4K__NT_AVX2 4
/* prefetch distance for streamed weights: the hardware prefetcher alone
   leaves a compute-heavy loop short of memory bandwidth */
#ifndef Q4K__PF_DIST
#define Q4K__PF_DIST 1024
#endif

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define Q4K__UNROLL _Pragma("GCC unroll 8")
#else
#define Q4K__UNROLL
#endif

/* fixed-order horizontal sum */
Q4K__AVX2_INL float q4k__hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

Q4K__AVX2_INL float q4k__h2f(uint16_t h) { return _cvtsh_ss(h); }

/* q4k_quantize_act_q8, bit for bit: max and the clamp are exact, the product
   is the same IEEE multiply, vroundps rounds half to even */
Q4K__AVX2_FN static void q4k__quantize_act_avx2(const float *x, q4k_block_q8a *out, int64_t n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t b, nb = n / Q4K_QK;
    for (b = 0; b < nb; b++) {
        const float *xb = x + b * Q4K_QK;
        __m256 v[4], mx = _mm256_setzero_ps(), vid;
        __m256i q[4], s, p;
        __m128 m4;
        float amax, d, id;
        int i;
        for (i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            mx = _mm256_max_ps(_mm256_and_ps(v[i], absmask), mx); /* a NaN element keeps mx */
        }
        m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        amax = _mm_cvtss_f32(m4);
        d = amax / 127.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        vid = _mm256_set1_ps(id);
        for (i = 0; i < 4; i++) {
            __m256 r = _mm256_round_ps(_mm256_mul_ps(v[i], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q)); /* NaN -> 0 */
            q[i] = _mm256_cvttps_epi32(_mm256_max_ps(_mm256_min_ps(r, lim), nlim));
        }
        s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        s = _mm256_hadd_epi32(s, s);
        s = _mm256_hadd_epi32(s, s);
        p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)out[b].qs, _mm256_permutevar8x32_epi32(p, order));
        out[b].d = d;
        out[b].sum = _mm_cvtsi128_si32(_mm256_castsi256_si128(s)) + _mm256_extract_epi32(s, 4);
    }
}

/* float weights: 0 = F32, 1 = F16, 2 = BF16 */
Q4K__AVX2_INL __m256 q4k__load8w(const void *w, int64_t i, int wt) {
    if (wt == 1) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    if (wt == 2)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i))), 16));
    return _mm256_loadu_ps((const float *)w + i);
}

Q4K__AVX2_INL float q4k__load1w(const void *w, int64_t i, int wt) {
    if (wt == 1) return q4k__h2f(((const uint16_t *)w)[i]);
    if (wt == 2) return q4k_bf16_to_fp32(((const uint16_t *)w)[i]);
    return ((const float *)w)[i];
}

/* The last cols % 16 values go through the same FMAs, zero-padded: plain C
   there would be contracted to FMA or not depending on the tile width, and a
   column must not depend on it. */
Q4K__AVX2_INL void q4k__fdot_avx2_t(const void *w, int64_t cols, const float *x, int64_t xs, int nc, float *y,
                                    int64_t ys, int wt) {
    __m256 a0[Q4K__NT_AVX2], a1[Q4K__NT_AVX2];
    int64_t i = 0, e = cols - cols % 16;
    int c;
    Q4K__UNROLL for (c = 0; c < nc; c++) a0[c] = a1[c] = _mm256_setzero_ps();
    for (; i < e; i += 16) {
        __m256 w0 = q4k__load8w(w, i, wt), w1 = q4k__load8w(w, i + 8, wt);
        Q4K__UNROLL for (c = 0; c < nc; c++) {
            a0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + c * xs + i), a0[c]);
            a1[c] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + c * xs + i + 8), a1[c]);
        }
    }
    if (e < cols) {
        float wt16[16] = {0}, xt[16] = {0};
        __m256 w0, w1;
        for (i = e; i < cols; i++) wt16[i - e] = q4k__load1w(w, i, wt);
        w0 = _mm256_loadu_ps(wt16), w1 = _mm256_loadu_ps(wt16 + 8);
        for (c = 0; c < nc; c++) {
            for (i = e; i < cols; i++) xt[i - e] = x[c * xs + i];
            a0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xt), a0[c]);
            a1[c] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xt + 8), a1[c]);
        }
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = q4k__hsum8(_mm256_add_ps(a0[c], a1[c]));
}

#define Q4K__AVX2_TILES(name, body_t, extra)                                                                    \
    Q4K__AVX2_FN static void name(const void *w, int64_t cols, const float *x, int64_t xs, int nc, float *y,   \
                                  int64_t ys) {                                                                 \
        switch (nc) {                                                                                           \
        case 1: body_t(w, cols, x, xs, 1, y, ys, extra); break;                                                 \
        case 2: body_t(w, cols, x, xs, 2, y, ys, extra); break;                                                 \
        case 3: body_t(w, cols, x, xs, 3, y, ys, extra); break;                                                 \
        default: body_t(w, cols, x, xs, 4, y, ys, extra); break;                                                \
        }                                                                                                       \
    }
Q4K__AVX2_TILES(q4k__fdot_f32_avx2, q4k__fdot_avx2_t, 0)
Q4K__AVX2_TILES(q4k__fdot_f16_avx2, q4k__fdot_avx2_t, 1)
Q4K__AVX2_TILES(q4k__fdot_bf16_avx2, q4k__fdot_avx2_t, 2)

#define Q4K__AVX2_QTILES(name, body_t)                                                                          \
    Q4K__AVX2_FN static void name(const void *w, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,  \
                                  int64_t ys) {                                                                 \
        switch (nc) {                                                                                           \
        case 1: body_t(w, cols, a, j, 1, y, ys); break;                                                         \
        case 2: body_t(w, cols, a, j, 2, y, ys); break;                                                         \
        case 3: body_t(w, cols, a, j, 3, y, ys); break;                                                         \
        default: body_t(w, cols, a, j, 4, y, ys); break;                                                        \
        }                                                                                                       \
    }

/* 32 signed weights q (|q| <= 128) times 32 activations: 8 int32 partial sums */
Q4K__AVX2_INL __m256i q4k__dot32_sign(__m256i absw, __m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(absw, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

/* The 32-value types: wq(b) gives block b's 32 signed quants. */
#define Q4K__AVX2_Q32_BODY(blk_t, wq_expr)                                                                      \
    const blk_t *w = (const blk_t *)wv;                                                                         \
    int64_t b, nb = cols / Q4K_QK;                                                                              \
    __m256 acc[Q4K__NT_AVX2];                                                                                   \
    int c;                                                                                                      \
    Q4K__UNROLL for (c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();                                         \
    for (b = 0; b < nb; b++) {                                                                                  \
        const float d = q4k__h2f(w[b].d);                                                                       \
        const __m256i q = wq_expr;                                                                              \
        const __m256i aq = _mm256_sign_epi8(q, q);                                                              \
        Q4K__UNROLL for (c = 0; c < nc; c++) {                                                                  \
            const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b;                                               \
            __m256i s = q4k__dot32_sign(aq, q, _mm256_loadu_si256((const __m256i *)x->qs));                     \
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * x->d), acc[c]);                  \
        }                                                                                                       \
    }                                                                                                           \
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = q4k__hsum8(acc[c]);

Q4K__AVX2_INL __m256i q4k__q8_0_avx2(const q4k_block_q8_0 *w) {
    return _mm256_loadu_si256((const __m256i *)w->qs);
}

Q4K__AVX2_INL __m256i q4k__q4_0_avx2(const q4k_block_q4_0 *w) {
    __m128i q = _mm_loadu_si128((const __m128i *)w->qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_sub_epi8(_mm256_and_si256(v, _mm256_set1_epi8(0xF)), _mm256_set1_epi8(8));
}

/* the 32 bits of qh spread to bytes: 0x10 where bit i is set */
Q4K__AVX2_INL __m256i q4k__bits_to_bytes(uint32_t bits) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                          3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

Q4K__AVX2_INL __m256i q4k__q5_0_avx2(const q4k_block_q5_0 *w) {
    __m128i q = _mm_loadu_si128((const __m128i *)w->qs);
    __m256i v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0xF));
    uint32_t qh;
    memcpy(&qh, w->qh, 4);
    v = _mm256_or_si256(v, q4k__bits_to_bytes(qh));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(16));
}

Q4K__AVX2_INL void q4k__qdot_q8_0_avx2_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                         int64_t ys) {
    Q4K__AVX2_Q32_BODY(q4k_block_q8_0, q4k__q8_0_avx2(&w[b]))
}
Q4K__AVX2_INL void q4k__qdot_q4_0_avx2_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                         int64_t ys) {
    Q4K__AVX2_Q32_BODY(q4k_block_q4_0, q4k__q4_0_avx2(&w[b]))
}
Q4K__AVX2_INL void q4k__qdot_q5_0_avx2_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                         int64_t ys) {
    Q4K__AVX2_Q32_BODY(q4k_block_q5_0, q4k__q5_0_avx2(&w[b]))
}
Q4K__AVX2_QTILES(q4k__qdot_q8_0_avx2, q4k__qdot_q8_0_avx2_t)
Q4K__AVX2_QTILES(q4k__qdot_q4_0_avx2, q4k__qdot_q4_0_avx2_t)
Q4K__AVX2_QTILES(q4k__qdot_q5_0_avx2, q4k__qdot_q5_0_avx2_t)

/* Q4_K and Q5_K: per 64-value chunk k the low nibbles are sub-block 2k and the
   high nibbles sub-block 2k+1 (plus bit 2k / 2k+1 of qh for Q5_K). */
Q4K__AVX2_INL void q4k__qdot_k45_avx2_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                        int64_t ys, int is_q5) {
    int64_t b, nb = cols / Q4K_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF), m16 = _mm256_set1_epi8(0x10);
    __m256 acc[Q4K__NT_AVX2];
    int c, k;
    Q4K__UNROLL for (c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (b = 0; b < nb; b++) {
        const uint8_t *qs, *scales;
        uint64_t sc, mn;
        float d, dmin;
        __m256i hb = _mm256_setzero_si256(), sc16;
        __m256 sa[Q4K__NT_AVX2], sb[Q4K__NT_AVX2], mf;
        if (is_q5) {
            const q4k_block_q5_K *w = (const q4k_block_q5_K *)wv + b;
            qs = w->qs, scales = w->scales, d = q4k__h2f(w->d), dmin = q4k__h2f(w->dmin);
            hb = _mm256_loadu_si256((const __m256i *)w->qh);
        } else {
            const q4k_block_q4_K *w = (const q4k_block_q4_K *)wv + b;
            qs = w->qs, scales = w->scales, d = q4k__h2f(w->d), dmin = q4k__h2f(w->dmin);
        }
        _mm_prefetch((const char *)scales + Q4K__PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)scales + Q4K__PF_DIST + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)scales + Q4K__PF_DIST + 128, _MM_HINT_T0);
        q4k__scales_k4_words(scales, &sc, &mn);
        /* the 8 scales as int16 in both 128-bit lanes; vpshufb picks one */
        sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
        Q4K__UNROLL for (c = 0; c < nc; c++) sa[c] = sb[c] = _mm256_setzero_ps();
        for (k = 0; k < 4; k++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i s0 = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * 2 * k)));
            const __m256i s1 = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * k + 1))));
            if (is_q5) {
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hb, 4), m16));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hb, 3), m16));
                hb = _mm256_srli_epi16(hb, 2);
            }
            Q4K__UNROLL for (c = 0; c < nc; c++) {
                const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b * 8 + 2 * k;
                __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)x[0].qs));
                __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)x[1].qs));
                sa[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p0, s0)), _mm256_set1_ps(x[0].d), sa[c]);
                sb[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p1, s1)), _mm256_set1_ps(x[1].d), sb[c]);
            }
        }
        mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn)));
        Q4K__UNROLL for (c = 0; c < nc; c++) {
            __m256 mins = _mm256_mul_ps(mf, _mm256_loadu_ps(a->bs + (j + c) * a->nbx + b * 8));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_add_ps(sa[c], sb[c]), acc[c]);
            acc[c] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin), mins, acc[c]);
        }
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = q4k__hsum8(acc[c]);
}
Q4K__AVX2_INL void q4k__qdot_q4_K_avx2_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                         int64_t ys) {
    q4k__qdot_k45_avx2_t(wv, cols, a, j, nc, y, ys, 0);
}
Q4K__AVX2_INL void q4k__qdot_q5_K_avx2_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                         int64_t ys) {
    q4k__qdot_k45_avx2_t(wv, cols, a, j, nc, y, ys, 1);
}
Q4K__AVX2_QTILES(q4k__qdot_q4_K_avx2, q4k__qdot_q4_K_avx2_t)
Q4K__AVX2_QTILES(q4k__qdot_q5_K_avx2, q4k__qdot_q5_K_avx2_t)

/* Q6_K: per 128-value half, groups g = 0..3 of 32 values (activation block
   4h+g, sub-blocks 8h+2g and 8h+2g+1) take their low 4 bits from ql (low
   nibbles of ql[0..31], ql[32..63], then the high nibbles) and 2 bits from qh
   (bits 2g, 2g+1). */
Q4K__AVX2_INL void q4k__qdot_q6_K_avx2_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                         int64_t ys) {
    const q4k_block_q6_K *w = (const q4k_block_q6_K *)wv;
    int64_t b, nb = cols / Q4K_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    __m256 acc[Q4K__NT_AVX2];
    int c, h, g;
    Q4K__UNROLL for (c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    for (b = 0; b < nb; b++) {
        __m256 sa[2][Q4K__NT_AVX2]; /* even and odd groups: two dependency chains */
        _mm_prefetch((const char *)&w[b] + Q4K__PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)&w[b] + Q4K__PF_DIST + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)&w[b] + Q4K__PF_DIST + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)&w[b] + Q4K__PF_DIST + 192, _MM_HINT_T0);
        Q4K__UNROLL for (c = 0; c < nc; c++) sa[0][c] = sa[1][c] = _mm256_setzero_ps();
        for (h = 0; h < 2; h++) {
            const __m256i la = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
            const __m256i lb = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            int64_t sc8;
            __m256i sc16;
            memcpy(&sc8, w[b].scales + 8 * h, 8);
            /* the half's 8 scales as int16 in both 128-bit lanes */
            sc16 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_cvtsi64_si128((long long)sc8)));
            for (g = 0; g < 4; g++) {
                __m256i lo4 = g == 0 ? _mm256_and_si256(la, m4)
                            : g == 1 ? _mm256_and_si256(lb, m4)
                            : g == 2 ? _mm256_and_si256(_mm256_srli_epi16(la, 4), m4)
                                     : _mm256_and_si256(_mm256_srli_epi16(lb, 4), m4);
                __m256i hi2 = g == 0 ? _mm256_slli_epi16(qh, 4)
                            : g == 1 ? _mm256_slli_epi16(qh, 2)
                            : g == 2 ? qh
                                     : _mm256_srli_epi16(qh, 2);
                const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo4, _mm256_and_si256(hi2, m30)), k32);
                const __m256i aq = _mm256_sign_epi8(q, q);
                /* [scale 2g x 8 | scale 2g+1 x 8] */
                const __m256i s16 = _mm256_shuffle_epi8(
                    sc16, _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * g + 1))),
                                           _mm_set1_epi16((short)(0x0100 + 0x0202 * 2 * g))));
                Q4K__UNROLL for (c = 0; c < nc; c++) {
                    const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b * 8 + 4 * h + g;
                    __m256i xv = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x->qs), q);
                    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aq, xv), s16);
                    sa[g & 1][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(x->d), sa[g & 1][c]);
                }
            }
        }
        Q4K__UNROLL for (c = 0; c < nc; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(q4k__h2f(w[b].d)), _mm256_add_ps(sa[0][c], sa[1][c]), acc[c]);
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = q4k__hsum8(acc[c]);
}
Q4K__AVX2_QTILES(q4k__qdot_q6_K_avx2, q4k__qdot_q6_K_avx2_t)

static const q4k__kernels q4k__kernels_avx2 = {
    q4k__fdot_f32_avx2, q4k__fdot_f16_avx2, q4k__fdot_bf16_avx2,
    q4k__qdot_q8_0_avx2, q4k__qdot_q4_0_avx2, q4k__qdot_q5_0_avx2,
    q4k__qdot_q4_K_avx2, q4k__qdot_q5_K_avx2, q4k__qdot_q6_K_avx2,
    Q4K__NT_AVX2};

/* ---- AVX-512 F/BW/VL -----------------------------------------------------

   zmm versions of the float dots and of Q6_K (two 32-value blocks per
   register). Q8_0/Q4_0/Q5_0/Q4_K/Q5_K run the AVX2 kernels, which this
   path's CPUs have: a zmm Q4_K kernel (pairs of 32-byte activation loads
   joined by vinserti64x4, scales and block scales spread by permutes) ran at
   half the speed of the ymm one on a Sapphire Rapids-class Xeon (5.0 vs 10.0
   GB/s, one thread, 3584x18944) and no faster for 64 columns: the shuffles
   all compete for port 5. AVX-512 has no vpsignb: the sign of the weights
   goes to the activations through a mask subtraction. */

/* g++ 12 sees the _mm512_undefined_* placeholders inside the intrinsics as
   uninitialized reads */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define Q4K__AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define Q4K__AVX512_INL static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define Q4K__NT_AVX512 8

/* through memory: g++ 12 warns on the 512-to-256 extract intrinsics */
Q4K__AVX512_INL float q4k__hsum16(__m512 v) {
    float t[16];
    _mm512_storeu_ps(t, v);
    return q4k__hsum8(_mm256_add_ps(_mm256_loadu_ps(t), _mm256_loadu_ps(t + 8)));
}

Q4K__AVX512_INL __m512 q4k__load16w(const void *w, int64_t i, int wt) {
    if (wt == 1) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
    if (wt == 2)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i))), 16));
    return _mm512_loadu_ps((const float *)w + i);
}

Q4K__AVX512_INL void q4k__fdot_avx512_t(const void *w, int64_t cols, const float *x, int64_t xs, int nc, float *y,
                                        int64_t ys, int wt) {
    __m512 a0[Q4K__NT_AVX512], a1[Q4K__NT_AVX512];
    int64_t i = 0, e = cols - cols % 32;
    int c;
    Q4K__UNROLL for (c = 0; c < nc; c++) a0[c] = a1[c] = _mm512_setzero_ps();
    for (; i < e; i += 32) {
        __m512 w0 = q4k__load16w(w, i, wt), w1 = q4k__load16w(w, i + 16, wt);
        Q4K__UNROLL for (c = 0; c < nc; c++) {
            a0[c] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + c * xs + i), a0[c]);
            a1[c] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + c * xs + i + 16), a1[c]);
        }
    }
    if (e < cols) { /* zero-padded, as in q4k__fdot_avx2_t */
        float wt32[32] = {0}, xt[32] = {0};
        __m512 w0, w1;
        for (i = e; i < cols; i++) wt32[i - e] = q4k__load1w(w, i, wt);
        w0 = _mm512_loadu_ps(wt32), w1 = _mm512_loadu_ps(wt32 + 16);
        for (c = 0; c < nc; c++) {
            for (i = e; i < cols; i++) xt[i - e] = x[c * xs + i];
            a0[c] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xt), a0[c]);
            a1[c] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xt + 16), a1[c]);
        }
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = q4k__hsum16(_mm512_add_ps(a0[c], a1[c]));
}

#define Q4K__AVX512_SWITCH(call)                                                                                \
    switch (nc) {                                                                                               \
    case 1: call(1); break;                                                                                     \
    case 2: call(2); break;                                                                                     \
    case 3: call(3); break;                                                                                     \
    case 4: call(4); break;                                                                                     \
    case 5: call(5); break;                                                                                     \
    case 6: call(6); break;                                                                                     \
    case 7: call(7); break;                                                                                     \
    default: call(8); break;                                                                                    \
    }

#define Q4K__CALL_F(n_) q4k__fdot_avx512_t(w, cols, x, xs, n_, y, ys, Q4K__WT)
#define Q4K__WT 0
Q4K__AVX512_FN static void q4k__fdot_f32_avx512(const void *w, int64_t cols, const float *x, int64_t xs, int nc,
                                                float *y, int64_t ys) {
    Q4K__AVX512_SWITCH(Q4K__CALL_F)
}
#undef Q4K__WT
#define Q4K__WT 1
Q4K__AVX512_FN static void q4k__fdot_f16_avx512(const void *w, int64_t cols, const float *x, int64_t xs, int nc,
                                                float *y, int64_t ys) {
    Q4K__AVX512_SWITCH(Q4K__CALL_F)
}
#undef Q4K__WT
#define Q4K__WT 2
Q4K__AVX512_FN static void q4k__fdot_bf16_avx512(const void *w, int64_t cols, const float *x, int64_t xs, int nc,
                                                 float *y, int64_t ys) {
    Q4K__AVX512_SWITCH(Q4K__CALL_F)
}
#undef Q4K__WT
#undef Q4K__CALL_F

/* two activation blocks side by side: [x0.qs | x1.qs] */
Q4K__AVX512_INL __m512i q4k__x2_avx512(const q4k_block_q8a *x0, const q4k_block_q8a *x1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x0->qs)),
                              _mm256_loadu_si256((const __m256i *)x1->qs), 1);
}

/* [lo x 16 | hi x 16] int16 lanes */
Q4K__AVX512_INL __m512i q4k__pair16_avx512(int lo, int hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)lo)), _mm256_set1_epi16((short)hi), 1);
}

/* lane i takes v[idx_i]: the scale of the block lane i belongs to */
static const int32_t q4k__pair_idx[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};

/* Q6_K, two groups per zmm: [g0 | g1] from the low nibbles of ql[0..63] and
   qh bits 0-1 / 2-3, [g2 | g3] from the high nibbles and qh bits 4-5 / 6-7 */
Q4K__AVX512_INL void q4k__qdot_q6_K_avx512_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc,
                                             float *y, int64_t ys) {
    static const int16_t sidx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                     2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    const q4k_block_q6_K *w = (const q4k_block_q6_K *)wv;
    int64_t b, nb = cols / Q4K_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30), k32 = _mm512_set1_epi8(32);
    const __m512i sbase = _mm512_loadu_si512((const void *)sidx);
    const __m512i pidx = _mm512_loadu_si512((const void *)q4k__pair_idx);
    const __m512i sh01 = q4k__pair16_avx512(4, 2), sh23 = q4k__pair16_avx512(0, 2);
    __m512 acc[Q4K__NT_AVX512];
    int c, h, p;
    Q4K__UNROLL for (c = 0; c < nc; c++) acc[c] = _mm512_setzero_ps();
    for (b = 0; b < nb; b++) {
        const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[b].scales)));
        __m512 sa[2][Q4K__NT_AVX512]; /* p = 0 and 1: two dependency chains */
        __m256 dx[Q4K__NT_AVX512];
        Q4K__UNROLL for (c = 0; c < nc; c++) {
            sa[0][c] = sa[1][c] = _mm512_setzero_ps();
            dx[c] = _mm256_loadu_ps(a->d + (j + c) * a->nbx + b * 8);
        }
        for (h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512((const void *)(w[b].ql + 64 * h));
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h)));
            for (p = 0; p < 2; p++) {
                const int blk = 4 * h + 2 * p; /* activation blocks blk, blk+1 */
                __m512i lo4 = p == 0 ? _mm512_and_si512(ql, m4) : _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4);
                __m512i hi2 = p == 0 ? _mm512_sllv_epi16(qh, sh01) : _mm512_srlv_epi16(qh, sh23);
                const __m512i q = _mm512_sub_epi8(_mm512_or_si512(lo4, _mm512_and_si512(hi2, m30)), k32);
                const __m512i aq = _mm512_abs_epi8(q);
                const __mmask64 neg = _mm512_movepi8_mask(q);
                const __m512i s16 = _mm512_permutexvar_epi16(_mm512_add_epi16(sbase, _mm512_set1_epi16((short)(2 * blk))), sc);
                const __m512i didx = _mm512_add_epi32(pidx, _mm512_set1_epi32(blk));
                Q4K__UNROLL for (c = 0; c < nc; c++) {
                    const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b * 8 + blk;
                    __m512i xv = q4k__x2_avx512(x, x + 1);
                    __m512i pr;
                    xv = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
                    pr = _mm512_madd_epi16(_mm512_maddubs_epi16(aq, xv), s16);
                    sa[p][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pr),
                                               _mm512_permutexvar_ps(didx, _mm512_castps256_ps512(dx[c])), sa[p][c]);
                }
            }
        }
        Q4K__UNROLL for (c = 0; c < nc; c++)
            acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(q4k__h2f(w[b].d)), _mm512_add_ps(sa[0][c], sa[1][c]), acc[c]);
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = q4k__hsum16(acc[c]);
}

#define Q4K__CALL_Q(n_) q4k__qdot_q6_K_avx512_t(w, cols, a, j, n_, y, ys)
Q4K__AVX512_FN static void q4k__qdot_q6_K_avx512(const void *w, int64_t cols, const q4k__act *a, int64_t j, int nc,
                                                 float *y, int64_t ys) {
    Q4K__AVX512_SWITCH(Q4K__CALL_Q)
}
#undef Q4K__CALL_Q

/* AVX2 kernels called with at most 4 columns */
#define Q4K__AVX512_FROM_AVX2(name, avx2)                                                                      \
    Q4K__AVX512_FN static void name(const void *w, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y, \
                                    int64_t ys) {                                                              \
        int c0;                                                                                                \
        for (c0 = 0; c0 < nc; c0 += Q4K__NT_AVX2)                                                              \
            avx2(w, cols, a, j + c0, nc - c0 < Q4K__NT_AVX2 ? nc - c0 : Q4K__NT_AVX2, y + c0 * ys, ys);         \
    }
Q4K__AVX512_FROM_AVX2(q4k__qdot_q8_0_avx512, q4k__qdot_q8_0_avx2)
Q4K__AVX512_FROM_AVX2(q4k__qdot_q4_0_avx512, q4k__qdot_q4_0_avx2)
Q4K__AVX512_FROM_AVX2(q4k__qdot_q5_0_avx512, q4k__qdot_q5_0_avx2)
Q4K__AVX512_FROM_AVX2(q4k__qdot_q4_K_avx512, q4k__qdot_q4_K_avx2)
Q4K__AVX512_FROM_AVX2(q4k__qdot_q5_K_avx512, q4k__qdot_q5_K_avx2)

static const q4k__kernels q4k__kernels_avx512 = {
    q4k__fdot_f32_avx512, q4k__fdot_f16_avx512, q4k__fdot_bf16_avx512,
    q4k__qdot_q8_0_avx512, q4k__qdot_q4_0_avx512, q4k__qdot_q5_0_avx512,
    q4k__qdot_q4_K_avx512, q4k__qdot_q5_K_avx512, q4k__qdot_q6_K_avx512,
    Q4K__NT_AVX512};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif /* Q4K__X86 */

/* ---- matmul ------------------------------------------------------------- */

typedef struct q4k__mm {
    const q4k__kernels *k;
    void (*quantize)(const float *x, q4k_block_q8a *out, int64_t n);
    q4k__fdot_fn fdot;  /* float mode: kernel of the (decoded) weight type */
    q4k__qdot_fn qdot;  /* Q8 mode */
    int decode;         /* float mode: decode each row with q4k_dequantize_row */
    q4k_type type;
    const uint8_t *w;
    size_t row_bytes;
    int64_t rows, cols, n, jblk;
    const float *x;
    float *y;
    float *scratch;     /* decode: cols floats per thread */
    q4k__act act;
    q4k_block_q8a *xq;  /* Q8 mode: the writable side of act */
    float *xd, *xbs;
} q4k__mm;

/* quantize the activation rows of share ith */
static void q4k__mm_quantize(void *ctx, int ith, int nth) {
    q4k__mm *m = (q4k__mm *)ctx;
    int64_t j0 = m->n * ith / nth, j1 = m->n * (ith + 1) / nth, i;
    int64_t nbx = m->act.nbx;
    if (j1 <= j0) return;
    m->quantize(m->x + j0 * m->cols, m->xq + j0 * nbx, (j1 - j0) * m->cols);
    for (i = j0 * nbx; i < j1 * nbx; i++) {
        m->xd[i] = m->xq[i].d;
        m->xbs[i] = m->xq[i].d * (float)m->xq[i].sum;
    }
}

/* rows of share ith; activation rows in blocks of jblk so that they stay in
   cache while the weights stream by, and in tiles of k->nt per kernel call */
static void q4k__mm_rows(void *ctx, int ith, int nth) {
    q4k__mm *m = (q4k__mm *)ctx;
    int64_t r0 = m->rows * ith / nth, r1 = m->rows * (ith + 1) / nth, r, j0, j;
    int nt = m->k->nt;
    float *tmp = m->scratch ? m->scratch + (size_t)ith * (size_t)m->cols : NULL;
    for (j0 = 0; j0 < m->n; j0 += m->jblk) {
        int64_t j1 = j0 + m->jblk < m->n ? j0 + m->jblk : m->n;
        for (r = r0; r < r1; r++) {
            const void *wr = m->w + (size_t)r * m->row_bytes;
            if (m->qdot) {
                for (j = j0; j < j1; j += nt)
                    m->qdot(wr, m->cols, &m->act, j, (int)(j1 - j < nt ? j1 - j : nt), m->y + j * m->rows + r, m->rows);
                continue;
            }
            if (m->decode) {
                q4k_dequantize_row(m->type, wr, tmp, m->cols);
                wr = tmp;
            }
            for (j = j0; j < j1; j += nt)
                m->fdot(wr, m->cols, m->x + j * m->cols, m->cols, (int)(j1 - j < nt ? j1 - j : nt),
                        m->y + j * m->rows + r, m->rows);
        }
    }
}

Q4K_API q4k_result q4k_matmul(const q4k_cpu *cpu, q4k_type type, const void *w, int64_t rows, int64_t cols,
                              const float *x, int64_t n, float *y) {
    q4k_type_info ti = q4k_type_traits((int)type);
    q4k__mm m;
    q4k_cpu_path path;
    q4k_result res;
    int nth, quantized;
    size_t act_bytes;
    void *buf = NULL;
    if (!cpu || !w || !x || !y || rows < 0 || cols <= 0 || n < 0) return Q4K_ERR_INVALID_ARG;
    if (!ti.name || !ti.implemented) return Q4K_ERR_UNSUPPORTED_TYPE;
    if (cols % ti.block_size) return Q4K_ERR_INVALID_ARG;
    if (cpu->act != Q4K_ACT_Q8 && cpu->act != Q4K_ACT_F32) return Q4K_ERR_INVALID_ARG;
    res = q4k_cpu_resolve_path(cpu->path, &path, NULL);
    if (res != Q4K_OK) return res;
    if (rows == 0 || n == 0) return Q4K_OK;

    memset(&m, 0, sizeof m);
    m.k = &q4k__kernels_scalar;
    m.quantize = q4k_quantize_act_q8;
#ifdef Q4K__X86
    if (path == Q4K_CPU_AVX2) m.k = &q4k__kernels_avx2;
    if (path == Q4K_CPU_AVX512) m.k = &q4k__kernels_avx512;
    if (path == Q4K_CPU_AVX2 || path == Q4K_CPU_AVX512) m.quantize = q4k__quantize_act_avx2;
#endif
    m.type = type;
    m.w = (const uint8_t *)w;
    m.row_bytes = q4k_row_size(type, cols);
    m.rows = rows;
    m.cols = cols;
    m.n = n;
    m.x = x;
    m.y = y;
    nth = q4k_pool_threads(cpu->pool);
    quantized = type != Q4K_TYPE_F32 && type != Q4K_TYPE_F16 && type != Q4K_TYPE_BF16;

    if (quantized && cpu->act == Q4K_ACT_Q8) {
        switch (type) {
        case Q4K_TYPE_Q8_0: m.qdot = m.k->q8_0; break;
        case Q4K_TYPE_Q4_0: m.qdot = m.k->q4_0; break;
        case Q4K_TYPE_Q5_0: m.qdot = m.k->q5_0; break;
        case Q4K_TYPE_Q4_K: m.qdot = m.k->q4_K; break;
        case Q4K_TYPE_Q5_K: m.qdot = m.k->q5_K; break;
        default: m.qdot = m.k->q6_K; break;
        }
        m.act.nbx = cols / Q4K_QK;
        act_bytes = (size_t)n * (size_t)m.act.nbx * (sizeof(q4k_block_q8a) + 2 * sizeof(float));
        buf = Q4K_MALLOC(act_bytes);
        if (!buf) return Q4K_ERR_OUT_OF_MEMORY;
        m.xq = (q4k_block_q8a *)buf;
        m.xd = (float *)(m.xq + n * m.act.nbx);
        m.xbs = m.xd + n * m.act.nbx;
        m.act.q = m.xq;
        m.act.d = m.xd;
        m.act.bs = m.xbs;
        if (n > 1)
            q4k_pool_run(cpu->pool, q4k__mm_quantize, &m);
        else
            q4k__mm_quantize(&m, 0, 1);
        act_bytes = (size_t)cols + (size_t)cols / 4; /* per activation row */
    } else {
        m.fdot = type == Q4K_TYPE_F32 ? m.k->f32 : type == Q4K_TYPE_F16 ? m.k->f16 : type == Q4K_TYPE_BF16 ? m.k->bf16 : NULL;
        if (!m.fdot) {
            m.decode = 1;
            m.fdot = m.k->f32;
            buf = Q4K_MALLOC(sizeof(float) * (size_t)cols * (size_t)nth);
            if (!buf) return Q4K_ERR_OUT_OF_MEMORY;
            m.scratch = (float *)buf;
        }
        act_bytes = (size_t)cols * sizeof(float);
    }
    /* about 512 KiB of activations per pass over the weights */
    m.jblk = (int64_t)((512u << 10) / act_bytes);
    m.jblk = m.jblk < m.k->nt ? m.k->nt : m.jblk - m.jblk % m.k->nt;
    q4k_pool_run(cpu->pool, q4k__mm_rows, &m);
    Q4K_FREE(buf);
    return Q4K_OK;
}
/* <<cpu */

/* >>tokenizer */
/* <<tokenizer */

/* >>model */
/* <<model */

#ifdef __cplusplus
}
#endif
#endif /* Q4K_IMPLEMENTATION */

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
