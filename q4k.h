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
   path that this CPU lacks gives Q4K_ERR_UNSUPPORTED. */
Q4K_API q4k_result q4k_cpu_resolve_path(q4k_cpu_path want, q4k_cpu_path *out, q4k_error *err);

/* A pool of worker threads; n_threads <= 1 runs jobs on the caller. */
typedef struct q4k_pool q4k_pool;
typedef void (*q4k_pool_fn)(void *ctx, int ith, int nth);
Q4K_API q4k_pool *q4k_pool_create(int n_threads);
Q4K_API void q4k_pool_destroy(q4k_pool *p);
Q4K_API int q4k_pool_threads(const q4k_pool *p);
/* run fn(ctx, ith, nth) for ith = 0..nth-1 in parallel and wait */
Q4K_API void q4k_pool_run(q4k_pool *p, q4k_pool_fn fn, void *ctx);

typedef struct q4k_cpu {
    q4k_cpu_path path; /* concrete: not AUTO */
    q4k_act_mode act;
    q4k_pool *pool;    /* may be NULL: single thread */
} q4k_cpu;

/* Y[j][r] = sum_c W[r][c] * X[j][c] for r < rows, j < n.
   W: rows x cols of `type`, row-major, q4k_row_size(type, cols) bytes a row.
   X: n x cols floats; Y: n x rows floats. The result of a row does not
   depend on the thread count. */
Q4K_API q4k_result q4k_matmul(const q4k_cpu *cpu, q4k_type type, const void *w, int64_t rows, int64_t cols, const float *x, int64_t n, float *y);
/* <<cpu-api */

/* >>tokenizer-api */
/* Byte-level BPE tokenizer (GPT-2 style, as Qwen2 and Llama 3 use it), built
   from a GGUF vocabulary or from arrays. A q4k_tokenizer is immutable once
   created: any number of threads may use one at once. Texts are bytes; they
   need not be valid UTF-8 (every byte is covered by some token, so
   detokenizing gives the exact bytes back). */

typedef struct q4k_tokenizer q4k_tokenizer;

/* Token types, as GGUF's tokenizer.ggml.token_type stores them. */
typedef enum q4k_token_type {
    Q4K_TOKEN_UNDEFINED = 0, /* treated as NORMAL */
    Q4K_TOKEN_NORMAL = 1,
    Q4K_TOKEN_UNKNOWN = 2,
    Q4K_TOKEN_CONTROL = 3,      /* <|im_start|>: matched only with Q4K_TOKENIZE_SPECIAL */
    Q4K_TOKEN_USER_DEFINED = 4, /* added text tokens: always matched in the text */
    Q4K_TOKEN_UNUSED = 5,       /* padding of the vocabulary */
    Q4K_TOKEN_BYTE = 6
} q4k_token_type;

/* A vocabulary given as arrays (all copied by q4k_tokenizer_create).
   A zeroed descriptor plus tokens (and merges) is a valid GPT-2 style
   vocabulary without special tokens. */
typedef struct q4k_vocab_desc {
    int64_t n_tokens;
    /* Token strings in GPT-2's byte-to-unicode form (" the" is spelled
       U+0120 "the");
       CONTROL and USER_DEFINED tokens are plain text ("<|im_end|>"). */
    const char *const *tokens;
    const size_t *token_lens;    /* NULL: the strings are NUL-terminated */
    const int32_t *token_types;  /* NULL: every token is NORMAL */
    /* Merges "left right" (both sides in the byte-to-unicode form), best
       (lowest rank) first. */
    int64_t n_merges;
    const char *const *merges;
    const size_t *merge_lens;    /* NULL: NUL-terminated */
    /* Pre-tokenizer (GGUF tokenizer.ggml.pre): "qwen2", "llama-bpe"
       ("llama3"), or "gpt2"/"default"; NULL or "" means "default". */
    const char *pre;
    /* Special ids are read only when set_ids is nonzero; -1 means none. */
    int set_ids;
    int32_t bos_id, eos_id, eot_id, pad_id;
    int add_bos; /* Q4K_TOKENIZE_ADD_BOS adds BOS only when this is set */
    q4k_log_fn log; /* optional: warnings about odd vocabularies */
    void *log_user;
} q4k_vocab_desc;

/* Flags of q4k_tokenize */
#define Q4K_TOKENIZE_SPECIAL 1u /* match CONTROL tokens (<|im_start|>) written in the text */
#define Q4K_TOKENIZE_ADD_BOS 2u /* start with BOS when the vocabulary asks for it */

/* Build a tokenizer. Fails with Q4K_ERR_INVALID_ARG (merge naming a missing
   token, id out of range, ...), Q4K_ERR_UNSUPPORTED (unknown pre-tokenizer)
   or Q4K_ERR_OUT_OF_MEMORY; err says which entry is at fault. */
Q4K_API q4k_result q4k_tokenizer_create(const q4k_vocab_desc *d, q4k_tokenizer **out, q4k_error *err);
/* Build a tokenizer from the tokenizer.ggml.* keys of a GGUF file. Only
   byte-level BPE (tokenizer.ggml.model "gpt2") is implemented; SentencePiece
   ("llama") gives Q4K_ERR_UNSUPPORTED. The q4k_gguf may be closed afterwards. */
Q4K_API q4k_result q4k_tokenizer_from_gguf(const q4k_gguf *g, q4k_tokenizer **out, q4k_error *err);
Q4K_API void q4k_tokenizer_free(q4k_tokenizer *tok);

/* Tokenize len bytes of text: USER_DEFINED tokens (and CONTROL tokens with
   Q4K_TOKENIZE_SPECIAL) are matched first, longest first; the text between
   them is split by the pre-tokenizer's pattern and each piece merged by BPE.
   A byte that is not part of valid UTF-8 counts as one character that is no
   letter, number or space. Writes up to cap ids to out and the number of
   ids of the whole text to *n_out. When cap is too small it writes the first
   cap ids, sets *n_out to the count needed and returns Q4K_ERR_OVERFLOW;
   out = NULL with cap = 0 only counts (Q4K_OK). Texts longer than 2^31 - 1
   bytes give Q4K_ERR_INVALID_ARG. err is optional. */
Q4K_API q4k_result q4k_tokenize(const q4k_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                int32_t *out, int64_t cap, int64_t *n_out, q4k_error *err);

/* The bytes a token stands for in generated text; "" (length 0) for CONTROL,
   UNUSED and UNKNOWN tokens, so <|im_end|> is never printed by accident.
   NUL-terminated, but may hold NUL bytes: use *len (optional). NULL for an id
   out of range. Valid until q4k_tokenizer_free. */
Q4K_API const char *q4k_token_bytes(const q4k_tokenizer *tok, int32_t id, size_t *len);
/* The same, with the text of CONTROL and UNUSED tokens too ("<|im_end|>"). */
Q4K_API const char *q4k_token_text(const q4k_tokenizer *tok, int32_t id, size_t *len);

Q4K_API int64_t q4k_tokenizer_n_vocab(const q4k_tokenizer *tok);
Q4K_API int32_t q4k_tokenizer_bos(const q4k_tokenizer *tok); /* -1: none */
Q4K_API int32_t q4k_tokenizer_eos(const q4k_tokenizer *tok);
Q4K_API int32_t q4k_tokenizer_eot(const q4k_tokenizer *tok);
Q4K_API int32_t q4k_tokenizer_pad(const q4k_tokenizer *tok);
Q4K_API int q4k_tokenizer_add_bos(const q4k_tokenizer *tok);
/* "qwen2", "llama-bpe" or "gpt2" */
Q4K_API const char *q4k_tokenizer_pre(const q4k_tokenizer *tok);
/* Length of the longest token, in bytes. */
Q4K_API size_t q4k_tokenizer_max_token_len(const q4k_tokenizer *tok);
/* Id of the token whose text is exactly `text` (NUL-terminated, plain bytes:
   "<|im_start|>", " the"), -1 when none; ordinary tokens win over special
   ones of the same text. */
Q4K_API int32_t q4k_tokenizer_find(const q4k_tokenizer *tok, const char *text);
/* Type of a token; Q4K_TOKEN_UNDEFINED for ids out of range. */
Q4K_API q4k_token_type q4k_tokenizer_token_type(const q4k_tokenizer *tok, int32_t id);
Q4K_API int q4k_tokenizer_is_control(const q4k_tokenizer *tok, int32_t id);
/* End of generation: EOS, EOT, or a CONTROL token spelled <|im_end|>,
   <|endoftext|>, <|eot_id|>, <|eom_id|> or <|end_of_text|>. */
Q4K_API int q4k_tokenizer_is_eog(const q4k_tokenizer *tok, int32_t id);

/* Streaming output: feed the bytes of each generated token and print only
   whole UTF-8 characters. A trailing prefix of a valid UTF-8 sequence (at
   most 3 bytes) is held back until the bytes that complete it arrive; bytes
   that cannot start or continue a valid sequence pass through at once, so
   the concatenated output always equals the concatenated input. Zeroed (or
   q4k_utf8_stream_init) is the start state. */
typedef struct q4k_utf8_stream {
    unsigned char held[4];
    uint32_t n_held;
} q4k_utf8_stream;
Q4K_API void q4k_utf8_stream_init(q4k_utf8_stream *s);
/* Takes bytes while their output fits in out[0..cap): returns how many of
   the len bytes it took (all of them when cap >= len + 3; at least one when
   cap >= 4) and sets *out_len to the bytes written. */
Q4K_API size_t q4k_utf8_stream_push(q4k_utf8_stream *s, const void *bytes, size_t len, char *out, size_t cap,
                                    size_t *out_len);
/* At the end of the text: writes the held bytes (an incomplete sequence, at
   most 3) as they are and returns how many are still held for lack of room
   (0 when cap >= 3). */
Q4K_API size_t q4k_utf8_stream_flush(q4k_utf8_stream *s, char *out, size_t cap, size_t *out_len);

/* A vocabulary as GGUF stores it (tokens in byte-level form, merges
   "left right" by rank), for writing GGUF files and for tests. */
typedef struct q4k_vocab_strings {
    int64_t n_tokens;
    char **tokens; /* NUL-terminated (byte-level strings hold no NUL) */
    int64_t n_merges;
    char **merges; /* NUL-terminated */
    char *mem_;    /* internal: the strings */
} q4k_vocab_strings;
/* Read a tiktoken file (lines "BASE64 RANK", ranks 0, 1, 2, ... in order):
   token i is the token of rank i, and the merges are derived from the ranks
   (the last merge BPE makes on each token's bytes with the lower ranks).
   Tokens that BPE cannot reach get no merge. Special tokens are not in such
   files: append them. On failure *out is zeroed and owns nothing. */
Q4K_API q4k_result q4k_vocab_from_tiktoken(const char *path, q4k_vocab_strings *out, q4k_error *err);
/* A made-up vocabulary of n_tokens (>= 256): the 256 bytes (id = byte),
   then letter words with and without a leading space, each one merge from a
   shorter one (" a", "ab", "abc", ...). For synthetic test models. */
Q4K_API q4k_result q4k_vocab_synthetic(int64_t n_tokens, q4k_vocab_strings *out, q4k_error *err);
Q4K_API void q4k_vocab_strings_free(q4k_vocab_strings *v);
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
#ifdef Q4K__NEON
    m |= 1u << Q4K_CPU_NEON;
#endif
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
/* <<cpu */

/* >>tokenizer */

/* ---- Unicode classes of the pre-tokenizer patterns ---------------------- */

/* BEGIN GENERATED by tools/gen_unicode.py: do not edit */
/* Unicode 15.0.0, from UnicodeData.txt and PropList.txt. Entry k: (first code point << 2) | class, the
   class holding up to the next entry; 0 other, 1 \p{L}, 2 \p{N}, 3 \s. */
#define Q4K__UCD_VERSION "15.0.0"
#define Q4K__UCD_RUNS 1562
static const uint32_t q4k__ucd_runs[Q4K__UCD_RUNS] = {
    0x0000000u, 0x0000027u, 0x0000038u, 0x0000083u, 0x0000084u, 0x00000c2u, 0x00000e8u, 0x0000105u,
    0x000016cu, 0x0000185u, 0x00001ecu, 0x0000217u, 0x0000218u, 0x0000283u, 0x0000284u, 0x00002a9u,
    0x00002acu, 0x00002cau, 0x00002d0u, 0x00002d5u, 0x00002d8u, 0x00002e6u, 0x00002e9u, 0x00002ecu,
    0x00002f2u, 0x00002fcu, 0x0000301u, 0x000035cu, 0x0000361u, 0x00003dcu, 0x00003e1u, 0x0000b08u,
    0x0000b19u, 0x0000b48u, 0x0000b81u, 0x0000b94u, 0x0000bb1u, 0x0000bb4u, 0x0000bb9u, 0x0000bbcu,
    0x0000dc1u, 0x0000dd4u, 0x0000dd9u, 0x0000de0u, 0x0000de9u, 0x0000df8u, 0x0000dfdu, 0x0000e00u,
    0x0000e19u, 0x0000e1cu, 0x0000e21u, 0x0000e2cu, 0x0000e31u, 0x0000e34u, 0x0000e39u, 0x0000e88u,
    0x0000e8du, 0x0000fd8u, 0x0000fddu, 0x0001208u, 0x0001229u, 0x00014c0u, 0x00014c5u, 0x000155cu,
    0x0001565u, 0x0001568u, 0x0001581u, 0x0001624u, 0x0001741u, 0x00017acu, 0x00017bdu, 0x00017ccu,
    0x0001881u, 0x000192cu, 0x0001982u, 0x00019a8u, 0x00019b9u, 0x00019c0u, 0x00019c5u, 0x0001b50u,
    0x0001b55u, 0x0001b58u, 0x0001b95u, 0x0001b9cu, 0x0001bb9u, 0x0001bc2u, 0x0001be9u, 0x0001bf4u,
    0x0001bfdu, 0x0001c00u, 0x0001c41u, 0x0001c44u, 0x0001c49u, 0x0001cc0u, 0x0001d35u, 0x0001e98u,
    0x0001ec5u, 0x0001ec8u, 0x0001f02u, 0x0001f29u, 0x0001facu, 0x0001fd1u, 0x0001fd8u, 0x0001fe9u,
    0x0001fecu, 0x0002001u, 0x0002058u, 0x0002069u, 0x000206cu, 0x0002091u, 0x0002094u, 0x00020a1u,
    0x00020a4u, 0x0002101u, 0x0002164u, 0x0002181u, 0x00021acu, 0x00021c1u, 0x0002220u, 0x0002225u,
    0x000223cu, 0x0002281u, 0x0002328u, 0x0002411u, 0x00024e8u, 0x00024f5u, 0x00024f8u, 0x0002541u,
    0x0002544u, 0x0002561u, 0x0002588u, 0x000259au, 0x00025c0u, 0x00025c5u, 0x0002604u, 0x0002615u,
    0x0002634u, 0x000263du, 0x0002644u, 0x000264du, 0x00026a4u, 0x00026a9u, 0x00026c4u, 0x00026c9u,
    0x00026ccu, 0x00026d9u, 0x00026e8u, 0x00026f5u, 0x00026f8u, 0x0002739u, 0x000273cu, 0x0002771u,
    0x0002778u, 0x000277du, 0x0002788u, 0x000279au, 0x00027c1u, 0x00027c8u, 0x00027d2u, 0x00027e8u,
    0x00027f1u, 0x00027f4u, 0x0002815u, 0x000282cu, 0x000283du, 0x0002844u, 0x000284du, 0x00028a4u,
    0x00028a9u, 0x00028c4u, 0x00028c9u, 0x00028d0u, 0x00028d5u, 0x00028dcu, 0x00028e1u, 0x00028e8u,
    0x0002965u, 0x0002974u, 0x0002979u, 0x000297cu, 0x000299au, 0x00029c0u, 0x00029c9u, 0x00029d4u,
    0x0002a15u, 0x0002a38u, 0x0002a3du, 0x0002a48u, 0x0002a4du, 0x0002aa4u, 0x0002aa9u, 0x0002ac4u,
    0x0002ac9u, 0x0002ad0u, 0x0002ad5u, 0x0002ae8u, 0x0002af5u, 0x0002af8u, 0x0002b41u, 0x0002b44u,
    0x0002b81u, 0x0002b88u, 0x0002b9au, 0x0002bc0u, 0x0002be5u, 0x0002be8u, 0x0002c15u, 0x0002c34u,
    0x0002c3du, 0x0002c44u, 0x0002c4du, 0x0002ca4u, 0x0002ca9u, 0x0002cc4u, 0x0002cc9u, 0x0002cd0u,
    0x0002cd5u, 0x0002ce8u, 0x0002cf5u, 0x0002cf8u, 0x0002d71u, 0x0002d78u, 0x0002d7du, 0x0002d88u,
    0x0002d9au, 0x0002dc0u, 0x0002dc5u, 0x0002dcau, 0x0002de0u, 0x0002e0du, 0x0002e10u, 0x0002e15u,
    0x0002e2cu, 0x0002e39u, 0x0002e44u, 0x0002e49u, 0x0002e58u, 0x0002e65u, 0x0002e6cu, 0x0002e71u,
    0x0002e74u, 0x0002e79u, 0x0002e80u, 0x0002e8du, 0x0002e94u, 0x0002ea1u, 0x0002eacu, 0x0002eb9u,
    0x0002ee8u, 0x0002f41u, 0x0002f44u, 0x0002f9au, 0x0002fccu, 0x0003015u, 0x0003034u, 0x0003039u,
    0x0003044u, 0x0003049u, 0x00030a4u, 0x00030a9u, 0x00030e8u, 0x00030f5u, 0x00030f8u, 0x0003161u,
    0x000316cu, 0x0003175u, 0x0003178u, 0x0003181u, 0x0003188u, 0x000319au, 0x00031c0u, 0x00031e2u,
    0x00031fcu, 0x0003201u, 0x0003204u, 0x0003215u, 0x0003234u, 0x0003239u, 0x0003244u, 0x0003249u,
    0x00032a4u, 0x00032a9u, 0x00032d0u, 0x00032d5u, 0x00032e8u, 0x00032f5u, 0x00032f8u, 0x0003375u,
    0x000337cu, 0x0003381u, 0x0003388u, 0x000339au, 0x00033c0u, 0x00033c5u, 0x00033ccu, 0x0003411u,
    0x0003434u, 0x0003439u, 0x0003444u, 0x0003449u, 0x00034ecu, 0x00034f5u, 0x00034f8u, 0x0003539u,
    0x000353cu, 0x0003551u, 0x000355cu, 0x0003562u, 0x000357du, 0x0003588u, 0x000359au, 0x00035e4u,
    0x00035e9u, 0x0003600u, 0x0003615u, 0x000365cu, 0x0003669u, 0x00036c8u, 0x00036cdu, 0x00036f0u,
    0x00036f5u, 0x00036f8u, 0x0003701u, 0x000371cu, 0x000379au, 0x00037c0u, 0x0003805u, 0x00038c4u,
    0x00038c9u, 0x00038d0u, 0x0003901u, 0x000391cu, 0x0003942u, 0x0003968u, 0x0003a05u, 0x0003a0cu,
    0x0003a11u, 0x0003a14u, 0x0003a19u, 0x0003a2cu, 0x0003a31u, 0x0003a90u, 0x0003a95u, 0x0003a98u,
    0x0003a9du, 0x0003ac4u, 0x0003ac9u, 0x0003ad0u, 0x0003af5u, 0x0003af8u, 0x0003b01u, 0x0003b14u,
    0x0003b19u, 0x0003b1cu, 0x0003b42u, 0x0003b68u, 0x0003b71u, 0x0003b80u, 0x0003c01u, 0x0003c04u,
    0x0003c82u, 0x0003cd0u, 0x0003d01u, 0x0003d20u, 0x0003d25u, 0x0003db4u, 0x0003e21u, 0x0003e34u,
    0x0004001u, 0x00040acu, 0x00040fdu, 0x0004102u, 0x0004128u, 0x0004141u, 0x0004158u, 0x0004169u,
    0x0004178u, 0x0004185u, 0x0004188u, 0x0004195u, 0x000419cu, 0x00041b9u, 0x00041c4u, 0x00041d5u,
    0x0004208u, 0x0004239u, 0x000423cu, 0x0004242u, 0x0004268u, 0x0004281u, 0x0004318u, 0x000431du,
    0x0004320u, 0x0004335u, 0x0004338u, 0x0004341u, 0x00043ecu, 0x00043f1u, 0x0004924u, 0x0004929u,
    0x0004938u, 0x0004941u, 0x000495cu, 0x0004961u, 0x0004964u, 0x0004969u, 0x0004978u, 0x0004981u,
    0x0004a24u, 0x0004a29u, 0x0004a38u, 0x0004a41u, 0x0004ac4u, 0x0004ac9u, 0x0004ad8u, 0x0004ae1u,
    0x0004afcu, 0x0004b01u, 0x0004b04u, 0x0004b09u, 0x0004b18u, 0x0004b21u, 0x0004b5cu, 0x0004b61u,
    0x0004c44u, 0x0004c49u, 0x0004c58u, 0x0004c61u, 0x0004d6cu, 0x0004da6u, 0x0004df4u, 0x0004e01u,
    0x0004e40u, 0x0004e81u, 0x0004fd8u, 0x0004fe1u, 0x0004ff8u, 0x0005005u, 0x00059b4u, 0x00059bdu,
    0x0005a03u, 0x0005a05u, 0x0005a6cu, 0x0005a81u, 0x0005bacu, 0x0005bbau, 0x0005bc5u, 0x0005be4u,
    0x0005c01u, 0x0005c48u, 0x0005c7du, 0x0005cc8u, 0x0005d01u, 0x0005d48u, 0x0005d81u, 0x0005db4u,
    0x0005db9u, 0x0005dc4u, 0x0005e01u, 0x0005ed0u, 0x0005f5du, 0x0005f60u, 0x0005f71u, 0x0005f74u,
    0x0005f82u, 0x0005fa8u, 0x0005fc2u, 0x0005fe8u, 0x0006042u, 0x0006068u, 0x0006081u, 0x00061e4u,
    0x0006201u, 0x0006214u, 0x000621du, 0x00062a4u, 0x00062a9u, 0x00062acu, 0x00062c1u, 0x00063d8u,
    0x0006401u, 0x000647cu, 0x000651au, 0x0006541u, 0x00065b8u, 0x00065c1u, 0x00065d4u, 0x0006601u,
    0x00066b0u, 0x00066c1u, 0x0006728u, 0x0006742u, 0x000676cu, 0x0006801u, 0x000685cu, 0x0006881u,
    0x0006954u, 0x0006a02u, 0x0006a28u, 0x0006a42u, 0x0006a68u, 0x0006a9du, 0x0006aa0u, 0x0006c15u,
    0x0006cd0u, 0x0006d15u, 0x0006d34u, 0x0006d42u, 0x0006d68u, 0x0006e0du, 0x0006e84u, 0x0006eb9u,
    0x0006ec2u, 0x0006ee9u, 0x0006f98u, 0x0007001u, 0x0007090u, 0x0007102u, 0x0007128u, 0x0007135u,
    0x0007142u, 0x0007169u, 0x00071f8u, 0x0007201u, 0x0007224u, 0x0007241u, 0x00072ecu, 0x00072f5u,
    0x0007300u, 0x00073a5u, 0x00073b4u, 0x00073b9u, 0x00073d0u, 0x00073d5u, 0x00073dcu, 0x00073e9u,
    0x00073ecu, 0x0007401u, 0x0007700u, 0x0007801u, 0x0007c58u, 0x0007c61u, 0x0007c78u, 0x0007c81u,
    0x0007d18u, 0x0007d21u, 0x0007d38u, 0x0007d41u, 0x0007d60u, 0x0007d65u, 0x0007d68u, 0x0007d6du,
    0x0007d70u, 0x0007d75u, 0x0007d78u, 0x0007d7du, 0x0007df8u, 0x0007e01u, 0x0007ed4u, 0x0007ed9u,
    0x0007ef4u, 0x0007ef9u, 0x0007efcu, 0x0007f09u, 0x0007f14u, 0x0007f19u, 0x0007f34u, 0x0007f41u,
    0x0007f50u, 0x0007f59u, 0x0007f70u, 0x0007f81u, 0x0007fb4u, 0x0007fc9u, 0x0007fd4u, 0x0007fd9u,
    0x0007ff4u, 0x0008003u, 0x000802cu, 0x00080a3u, 0x00080a8u, 0x00080bfu, 0x00080c0u, 0x000817fu,
    0x0008180u, 0x00081c2u, 0x00081c5u, 0x00081c8u, 0x00081d2u, 0x00081e8u, 0x00081fdu, 0x0008202u,
    0x0008228u, 0x0008241u, 0x0008274u, 0x0008409u, 0x000840cu, 0x000841du, 0x0008420u, 0x0008429u,
    0x0008450u, 0x0008455u, 0x0008458u, 0x0008465u, 0x0008478u, 0x0008491u, 0x0008494u, 0x0008499u,
    0x000849cu, 0x00084a1u, 0x00084a4u, 0x00084a9u, 0x00084b8u, 0x00084bdu, 0x00084e8u, 0x00084f1u,
    0x0008500u, 0x0008515u, 0x0008528u, 0x0008539u, 0x000853cu, 0x0008542u, 0x000860du, 0x0008616u,
    0x0008628u, 0x0009182u, 0x0009270u, 0x00093aau, 0x0009400u, 0x0009ddau, 0x0009e50u, 0x000b001u,
    0x000b394u, 0x000b3adu, 0x000b3bcu, 0x000b3c9u, 0x000b3d0u, 0x000b3f6u, 0x000b3f8u, 0x000b401u,
    0x000b498u, 0x000b49du, 0x000b4a0u, 0x000b4b5u, 0x000b4b8u, 0x000b4c1u, 0x000b5a0u, 0x000b5bdu,
    0x000b5c0u, 0x000b601u, 0x000b65cu, 0x000b681u, 0x000b69cu, 0x000b6a1u, 0x000b6bcu, 0x000b6c1u,
    0x000b6dcu, 0x000b6e1u, 0x000b6fcu, 0x000b701u, 0x000b71cu, 0x000b721u, 0x000b73cu, 0x000b741u,
    0x000b75cu, 0x000b761u, 0x000b77cu, 0x000b8bdu, 0x000b8c0u, 0x000c003u, 0x000c004u, 0x000c015u,
    0x000c01eu, 0x000c020u, 0x000c086u, 0x000c0a8u, 0x000c0c5u, 0x000c0d8u, 0x000c0e2u, 0x000c0edu,
    0x000c0f4u, 0x000c105u, 0x000c25cu, 0x000c275u, 0x000c280u, 0x000c285u, 0x000c3ecu, 0x000c3f1u,
    0x000c400u, 0x000c415u, 0x000c4c0u, 0x000c4c5u, 0x000c63cu, 0x000c64au, 0x000c658u, 0x000c681u,
    0x000c700u, 0x000c7c1u, 0x000c800u, 0x000c882u, 0x000c8a8u, 0x000c922u, 0x000c940u, 0x000c946u,
    0x000c980u, 0x000ca02u, 0x000ca28u, 0x000cac6u, 0x000cb00u, 0x000d001u, 0x0013700u, 0x0013801u,
    0x0029234u, 0x0029341u, 0x00293f8u, 0x0029401u, 0x0029834u, 0x0029841u, 0x0029882u, 0x00298a9u,
    0x00298b0u, 0x0029901u, 0x00299bcu, 0x00299fdu, 0x0029a78u, 0x0029a81u, 0x0029b9au, 0x0029bc0u,
    0x0029c5du, 0x0029c80u, 0x0029c89u, 0x0029e24u, 0x0029e2du, 0x0029f2cu, 0x0029f41u, 0x0029f48u,
    0x0029f4du, 0x0029f50u, 0x0029f55u, 0x0029f68u, 0x0029fc9u, 0x002a008u, 0x002a00du, 0x002a018u,
    0x002a01du, 0x002a02cu, 0x002a031u, 0x002a08cu, 0x002a0c2u, 0x002a0d8u, 0x002a101u, 0x002a1d0u,
    0x002a209u, 0x002a2d0u, 0x002a342u, 0x002a368u, 0x002a3c9u, 0x002a3e0u, 0x002a3edu, 0x002a3f0u,
    0x002a3f5u, 0x002a3fcu, 0x002a402u, 0x002a429u, 0x002a498u, 0x002a4c1u, 0x002a51cu, 0x002a581u,
    0x002a5f4u, 0x002a611u, 0x002a6ccu, 0x002a73du, 0x002a742u, 0x002a768u, 0x002a781u, 0x002a794u,
    0x002a799u, 0x002a7c2u, 0x002a7e9u, 0x002a7fcu, 0x002a801u, 0x002a8a4u, 0x002a901u, 0x002a90cu,
    0x002a911u, 0x002a930u, 0x002a942u, 0x002a968u, 0x002a981u, 0x002a9dcu, 0x002a9e9u, 0x002a9ecu,
    0x002a9f9u, 0x002aac0u, 0x002aac5u, 0x002aac8u, 0x002aad5u, 0x002aadcu, 0x002aae5u, 0x002aaf8u,
    0x002ab01u, 0x002ab04u, 0x002ab09u, 0x002ab0cu, 0x002ab6du, 0x002ab78u, 0x002ab81u, 0x002abacu,
    0x002abc9u, 0x002abd4u, 0x002ac05u, 0x002ac1cu, 0x002ac25u, 0x002ac3cu, 0x002ac45u, 0x002ac5cu,
    0x002ac81u, 0x002ac9cu, 0x002aca1u, 0x002acbcu, 0x002acc1u, 0x002ad6cu, 0x002ad71u, 0x002ada8u,
    0x002adc1u, 0x002af8cu, 0x002afc2u, 0x002afe8u, 0x002b001u, 0x0035e90u, 0x0035ec1u, 0x0035f1cu,
    0x0035f2du, 0x0035ff0u, 0x003e401u, 0x003e9b8u, 0x003e9c1u, 0x003eb68u, 0x003ec01u, 0x003ec1cu,
    0x003ec4du, 0x003ec60u, 0x003ec75u, 0x003ec78u, 0x003ec7du, 0x003eca4u, 0x003eca9u, 0x003ecdcu,
    0x003ece1u, 0x003ecf4u, 0x003ecf9u, 0x003ecfcu, 0x003ed01u, 0x003ed08u, 0x003ed0du, 0x003ed14u,
    0x003ed19u, 0x003eec8u, 0x003ef4du, 0x003f4f8u, 0x003f541u, 0x003f640u, 0x003f649u, 0x003f720u,
    0x003f7c1u, 0x003f7f0u, 0x003f9c1u, 0x003f9d4u, 0x003f9d9u, 0x003fbf4u, 0x003fc42u, 0x003fc68u,
    0x003fc85u, 0x003fcecu, 0x003fd05u, 0x003fd6cu, 0x003fd99u, 0x003fefcu, 0x003ff09u, 0x003ff20u,
    0x003ff29u, 0x003ff40u, 0x003ff49u, 0x003ff60u, 0x003ff69u, 0x003ff74u, 0x0040001u, 0x0040030u,
    0x0040035u, 0x004009cu, 0x00400a1u, 0x00400ecu, 0x00400f1u, 0x00400f8u, 0x00400fdu, 0x0040138u,
    0x0040141u, 0x0040178u, 0x0040201u, 0x00403ecu, 0x004041eu, 0x00404d0u, 0x0040502u, 0x00405e4u,
    0x004062au, 0x0040630u, 0x0040a01u, 0x0040a74u, 0x0040a81u, 0x0040b44u, 0x0040b86u, 0x0040bf0u,
    0x0040c01u, 0x0040c82u, 0x0040c90u, 0x0040cb5u, 0x0040d06u, 0x0040d09u, 0x0040d2au, 0x0040d2cu,
    0x0040d41u, 0x0040dd8u, 0x0040e01u, 0x0040e78u, 0x0040e81u, 0x0040f10u, 0x0040f21u, 0x0040f40u,
    0x0040f46u, 0x0040f58u, 0x0041001u, 0x0041278u, 0x0041282u, 0x00412a8u, 0x00412c1u, 0x0041350u,
    0x0041361u, 0x00413f0u, 0x0041401u, 0x00414a0u, 0x00414c1u, 0x0041590u, 0x00415c1u, 0x00415ecu,
    0x00415f1u, 0x004162cu, 0x0041631u, 0x004164cu, 0x0041651u, 0x0041658u, 0x004165du, 0x0041688u,
    0x004168du, 0x00416c8u, 0x00416cdu, 0x00416e8u, 0x00416edu, 0x00416f4u, 0x0041801u, 0x0041cdcu,
    0x0041d01u, 0x0041d58u, 0x0041d81u, 0x0041da0u, 0x0041e01u, 0x0041e18u, 0x0041e1du, 0x0041ec4u,
    0x0041ec9u, 0x0041eecu, 0x0042001u, 0x0042018u, 0x0042021u, 0x0042024u, 0x0042029u, 0x00420d8u,
    0x00420ddu, 0x00420e4u, 0x00420f1u, 0x00420f4u, 0x00420fdu, 0x0042158u, 0x0042162u, 0x0042181u,
    0x00421dcu, 0x00421e6u, 0x0042201u, 0x004227cu, 0x004229eu, 0x00422c0u, 0x0042381u, 0x00423ccu,
    0x00423d1u, 0x00423d8u, 0x00423eeu, 0x0042401u, 0x004245au, 0x0042470u, 0x0042481u, 0x00424e8u,
    0x0042601u, 0x00426e0u, 0x00426f2u, 0x00426f9u, 0x0042702u, 0x0042740u, 0x004274au, 0x0042801u,
    0x0042804u, 0x0042841u, 0x0042850u, 0x0042855u, 0x0042860u, 0x0042865u, 0x00428d8u, 0x0042902u,
    0x0042924u, 0x0042981u, 0x00429f6u, 0x00429fcu, 0x0042a01u, 0x0042a76u, 0x0042a80u, 0x0042b01u,
    0x0042b20u, 0x0042b25u, 0x0042b94u, 0x0042baeu, 0x0042bc0u, 0x0042c01u, 0x0042cd8u, 0x0042d01u,
    0x0042d58u, 0x0042d62u, 0x0042d81u, 0x0042dccu, 0x0042de2u, 0x0042e01u, 0x0042e48u, 0x0042ea6u,
    0x0042ec0u, 0x0043001u, 0x0043124u, 0x0043201u, 0x00432ccu, 0x0043301u, 0x00433ccu, 0x00433eau,
    0x0043401u, 0x0043490u, 0x00434c2u, 0x00434e8u, 0x0043982u, 0x00439fcu, 0x0043a01u, 0x0043aa8u,
    0x0043ac1u, 0x0043ac8u, 0x0043c01u, 0x0043c76u, 0x0043c9du, 0x0043ca0u, 0x0043cc1u, 0x0043d18u,
    0x0043d46u, 0x0043d54u, 0x0043dc1u, 0x0043e08u, 0x0043ec1u, 0x0043f16u, 0x0043f30u, 0x0043f81u,
    0x0043fdcu, 0x004400du, 0x00440e0u, 0x004414au, 0x00441c0u, 0x00441c5u, 0x00441ccu, 0x00441d5u,
    0x00441d8u, 0x004420du, 0x00442c0u, 0x0044341u, 0x00443a4u, 0x00443c2u, 0x00443e8u, 0x004440du,
    0x004449cu, 0x00444dau, 0x0044500u, 0x0044511u, 0x0044514u, 0x004451du, 0x0044520u, 0x0044541u,
    0x00445ccu, 0x00445d9u, 0x00445dcu, 0x004460du, 0x00446ccu, 0x0044705u, 0x0044714u, 0x0044742u,
    0x0044769u, 0x004476cu, 0x0044771u, 0x0044774u, 0x0044786u, 0x00447d4u, 0x0044801u, 0x0044848u,
    0x004484du, 0x00448b0u, 0x00448fdu, 0x0044904u, 0x0044a01u, 0x0044a1cu, 0x0044a21u, 0x0044a24u,
    0x0044a29u, 0x0044a38u, 0x0044a3du, 0x0044a78u, 0x0044a7du, 0x0044aa4u, 0x0044ac1u, 0x0044b7cu,
    0x0044bc2u, 0x0044be8u, 0x0044c15u, 0x0044c34u, 0x0044c3du, 0x0044c44u, 0x0044c4du, 0x0044ca4u,
    0x0044ca9u, 0x0044cc4u, 0x0044cc9u, 0x0044cd0u, 0x0044cd5u, 0x0044ce8u, 0x0044cf5u, 0x0044cf8u,
    0x0044d41u, 0x0044d44u, 0x0044d75u, 0x0044d88u, 0x0045001u, 0x00450d4u, 0x004511du, 0x004512cu,
    0x0045142u, 0x0045168u, 0x004517du, 0x0045188u, 0x0045201u, 0x00452c0u, 0x0045311u, 0x0045318u,
    0x004531du, 0x0045320u, 0x0045342u, 0x0045368u, 0x0045601u, 0x00456bcu, 0x0045761u, 0x0045770u,
    0x0045801u, 0x00458c0u, 0x0045911u, 0x0045914u, 0x0045942u, 0x0045968u, 0x0045a01u, 0x0045aacu,
    0x0045ae1u, 0x0045ae4u, 0x0045b02u, 0x0045b28u, 0x0045c01u, 0x0045c6cu, 0x0045cc2u, 0x0045cf0u,
    0x0045d01u, 0x0045d1cu, 0x0046001u, 0x00460b0u, 0x0046281u, 0x0046382u, 0x00463ccu, 0x00463fdu,
    0x004641cu, 0x0046425u, 0x0046428u, 0x0046431u, 0x0046450u, 0x0046455u, 0x004645cu, 0x0046461u,
    0x00464c0u, 0x00464fdu, 0x0046500u, 0x0046505u, 0x0046508u, 0x0046542u, 0x0046568u, 0x0046681u,
    0x00466a0u, 0x00466a9u, 0x0046744u, 0x0046785u, 0x0046788u, 0x004678du, 0x0046790u, 0x0046801u,
    0x0046804u, 0x004682du, 0x00468ccu, 0x00468e9u, 0x00468ecu, 0x0046941u, 0x0046944u, 0x0046971u,
    0x0046a28u, 0x0046a75u, 0x0046a78u, 0x0046ac1u, 0x0046be4u, 0x0047001u, 0x0047024u, 0x0047029u,
    0x00470bcu, 0x0047101u, 0x0047104u, 0x0047142u, 0x00471b4u, 0x00471c9u, 0x0047240u, 0x0047401u,
    0x004741cu, 0x0047421u, 0x0047428u, 0x004742du, 0x00474c4u, 0x0047519u, 0x004751cu, 0x0047542u,
    0x0047568u, 0x0047581u, 0x0047598u, 0x004759du, 0x00475a4u, 0x00475a9u, 0x0047628u, 0x0047661u,
    0x0047664u, 0x0047682u, 0x00476a8u, 0x0047b81u, 0x0047bccu, 0x0047c09u, 0x0047c0cu, 0x0047c11u,
    0x0047c44u, 0x0047c49u, 0x0047cd0u, 0x0047d42u, 0x0047d68u, 0x0047ec1u, 0x0047ec4u, 0x0047f02u,
    0x0047f54u, 0x0048001u, 0x0048e68u, 0x0049002u, 0x00491bcu, 0x0049201u, 0x0049510u, 0x004be41u,
    0x004bfc4u, 0x004c001u, 0x004d0c0u, 0x004d105u, 0x004d11cu, 0x0051001u, 0x005191cu, 0x005a001u,
    0x005a8e4u, 0x005a901u, 0x005a97cu, 0x005a982u, 0x005a9a8u, 0x005a9c1u, 0x005aafcu, 0x005ab02u,
    0x005ab28u, 0x005ab41u, 0x005abb8u, 0x005ac01u, 0x005acc0u, 0x005ad01u, 0x005ad10u, 0x005ad42u,
    0x005ad68u, 0x005ad6eu, 0x005ad88u, 0x005ad8du, 0x005ade0u, 0x005adf5u, 0x005ae40u, 0x005b901u,
    0x005ba02u, 0x005ba5cu, 0x005bc01u, 0x005bd2cu, 0x005bd41u, 0x005bd44u, 0x005be4du, 0x005be80u,
    0x005bf81u, 0x005bf88u, 0x005bf8du, 0x005bf90u, 0x005c001u, 0x0061fe0u, 0x0062001u, 0x0063358u,
    0x0063401u, 0x0063424u, 0x006bfc1u, 0x006bfd0u, 0x006bfd5u, 0x006bff0u, 0x006bff5u, 0x006bffcu,
    0x006c001u, 0x006c48cu, 0x006c4c9u, 0x006c4ccu, 0x006c541u, 0x006c54cu, 0x006c555u, 0x006c558u,
    0x006c591u, 0x006c5a0u, 0x006c5c1u, 0x006cbf0u, 0x006f001u, 0x006f1acu, 0x006f1c1u, 0x006f1f4u,
    0x006f201u, 0x006f224u, 0x006f241u, 0x006f268u, 0x0074b02u, 0x0074b50u, 0x0074b82u, 0x0074bd0u,
    0x0074d82u, 0x0074de4u, 0x0075001u, 0x0075154u, 0x0075159u, 0x0075274u, 0x0075279u, 0x0075280u,
    0x0075289u, 0x007528cu, 0x0075295u, 0x007529cu, 0x00752a5u, 0x00752b4u, 0x00752b9u, 0x00752e8u,
    0x00752edu, 0x00752f0u, 0x00752f5u, 0x0075310u, 0x0075315u, 0x0075418u, 0x007541du, 0x007542cu,
    0x0075435u, 0x0075454u, 0x0075459u, 0x0075474u, 0x0075479u, 0x00754e8u, 0x00754edu, 0x00754fcu,
    0x0075501u, 0x0075514u, 0x0075519u, 0x007551cu, 0x0075529u, 0x0075544u, 0x0075549u, 0x0075a98u,
    0x0075aa1u, 0x0075b04u, 0x0075b09u, 0x0075b6cu, 0x0075b71u, 0x0075becu, 0x0075bf1u, 0x0075c54u,
    0x0075c59u, 0x0075cd4u, 0x0075cd9u, 0x0075d3cu, 0x0075d41u, 0x0075dbcu, 0x0075dc1u, 0x0075e24u,
    0x0075e29u, 0x0075ea4u, 0x0075ea9u, 0x0075f0cu, 0x0075f11u, 0x0075f30u, 0x0075f3au, 0x0076000u,
    0x0077c01u, 0x0077c7cu, 0x0077c95u, 0x0077cacu, 0x00780c1u, 0x00781b8u, 0x0078401u, 0x00784b4u,
    0x00784ddu, 0x00784f8u, 0x0078502u, 0x0078528u, 0x0078539u, 0x007853cu, 0x0078a41u, 0x0078ab8u,
    0x0078b01u, 0x0078bb0u, 0x0078bc2u, 0x0078be8u, 0x0079341u, 0x00793b0u, 0x00793c2u, 0x00793e8u,
    0x0079f81u, 0x0079f9cu, 0x0079fa1u, 0x0079fb0u, 0x0079fb5u, 0x0079fbcu, 0x0079fc1u, 0x0079ffcu,
    0x007a001u, 0x007a314u, 0x007a31eu, 0x007a340u, 0x007a401u, 0x007a510u, 0x007a52du, 0x007a530u,
    0x007a542u, 0x007a568u, 0x007b1c6u, 0x007b2b0u, 0x007b2b6u, 0x007b2c0u, 0x007b2c6u, 0x007b2d4u,
    0x007b406u, 0x007b4b8u, 0x007b4beu, 0x007b4f8u, 0x007b801u, 0x007b810u, 0x007b815u, 0x007b880u,
    0x007b885u, 0x007b88cu, 0x007b891u, 0x007b894u, 0x007b89du, 0x007b8a0u, 0x007b8a5u, 0x007b8ccu,
    0x007b8d1u, 0x007b8e0u, 0x007b8e5u, 0x007b8e8u, 0x007b8edu, 0x007b8f0u, 0x007b909u, 0x007b90cu,
    0x007b91du, 0x007b920u, 0x007b925u, 0x007b928u, 0x007b92du, 0x007b930u, 0x007b935u, 0x007b940u,
    0x007b945u, 0x007b94cu, 0x007b951u, 0x007b954u, 0x007b95du, 0x007b960u, 0x007b965u, 0x007b968u,
    0x007b96du, 0x007b970u, 0x007b975u, 0x007b978u, 0x007b97du, 0x007b980u, 0x007b985u, 0x007b98cu,
    0x007b991u, 0x007b994u, 0x007b99du, 0x007b9acu, 0x007b9b1u, 0x007b9ccu, 0x007b9d1u, 0x007b9e0u,
    0x007b9e5u, 0x007b9f4u, 0x007b9f9u, 0x007b9fcu, 0x007ba01u, 0x007ba28u, 0x007ba2du, 0x007ba70u,
    0x007ba85u, 0x007ba90u, 0x007ba95u, 0x007baa8u, 0x007baadu, 0x007baf0u, 0x007c402u, 0x007c434u,
    0x007efc2u, 0x007efe8u, 0x0080001u, 0x00a9b80u, 0x00a9c01u, 0x00adce8u, 0x00add01u, 0x00ae078u,
    0x00ae081u, 0x00b3a88u, 0x00b3ac1u, 0x00baf84u, 0x00be001u, 0x00be878u, 0x00c0001u, 0x00c4d2cu,
    0x00c4d41u, 0x00c8ec0u,
};
/* END GENERATED by tools/gen_unicode.py */

enum { Q4K__CC_OTHER = 0, Q4K__CC_L = 1, Q4K__CC_N = 2, Q4K__CC_S = 3 };

/* Class of a code point: \p{L}, \p{N}, \s (White_Space) or other. */
static int q4k__ucd_class(uint32_t cp) {
    size_t lo = 0, hi = Q4K__UCD_RUNS;
    if (cp < 0x80) {
        if ((cp | 0x20) - 'a' < 26) return Q4K__CC_L;
        if (cp - '0' < 10) return Q4K__CC_N;
        if (cp == ' ' || cp - 9 < 5) return Q4K__CC_S;
        return Q4K__CC_OTHER;
    }
    if (cp > 0x10FFFF) return Q4K__CC_OTHER;
    /* the last run that starts at or before cp (entry 0 starts at 0) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((q4k__ucd_runs[mid] >> 2) <= cp) lo = mid;
        else hi = mid;
    }
    return (int)(q4k__ucd_runs[lo] & 3u);
}

/* ---- UTF-8 --------------------------------------------------------------- */

/* Bytes of the sequence a lead byte starts: 1 for ASCII, 2..4, 0 for a byte
   that cannot start a valid sequence (continuation, C0, C1, F5..FF). */
static uint32_t q4k__utf8_need(unsigned b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Can b be byte k (1..3) of a sequence led by `lead`? The second-byte limits
   exclude overlong forms, surrogates and code points above U+10FFFF. */
static int q4k__utf8_cont_ok(unsigned lead, uint32_t k, unsigned b) {
    if ((b & 0xC0) != 0x80) return 0;
    if (k == 1) {
        if (lead == 0xE0) return b >= 0xA0;
        if (lead == 0xED) return b <= 0x9F;
        if (lead == 0xF0) return b >= 0x90;
        if (lead == 0xF4) return b <= 0x8F;
    }
    return 1;
}

/* Decode the valid sequence at s[0..n) (n >= 1): its length, or 0 when the
   bytes there are not valid UTF-8. */
static uint32_t q4k__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    uint32_t need = q4k__utf8_need(s[0]), k, v;
    if (need == 1) { *cp = s[0]; return 1; }
    if (need == 0 || n < need) return 0;
    v = s[0] & (0x7Fu >> need);
    for (k = 1; k < need; k++) {
        if (!q4k__utf8_cont_ok(s[0], k, s[k])) return 0;
        v = (v << 6) | (s[k] & 0x3Fu);
    }
    *cp = v;
    return need;
}

Q4K_API void q4k_utf8_stream_init(q4k_utf8_stream *s) { memset(s, 0, sizeof *s); }

Q4K_API size_t q4k_utf8_stream_push(q4k_utf8_stream *s, const void *bytes, size_t len, char *out, size_t cap,
                                    size_t *out_len) {
    const unsigned char *p = (const unsigned char *)bytes;
    size_t o = 0, i;
    for (i = 0; i < len; i++) {
        unsigned b = p[i];
        int lead = q4k__utf8_need(b) >= 2;
        if (s->n_held && q4k__utf8_cont_ok(s->held[0], s->n_held, b)) {
            if (s->n_held + 1 == q4k__utf8_need(s->held[0])) {
                if (cap - o < s->n_held + 1) break;
                memcpy(out + o, s->held, s->n_held);
                o += s->n_held;
                out[o++] = (char)b;
                s->n_held = 0;
            } else {
                s->held[s->n_held++] = (unsigned char)b;
            }
            continue;
        }
        /* a held prefix that b does not continue can never complete: its
           bytes go out as they are, and b is looked at afresh */
        if (cap - o < s->n_held + (lead ? 0 : 1)) break;
        memcpy(out + o, s->held, s->n_held);
        o += s->n_held;
        s->n_held = 0;
        if (lead) s->held[s->n_held++] = (unsigned char)b;
        else out[o++] = (char)b;
    }
    if (out_len) *out_len = o;
    return i;
}

Q4K_API size_t q4k_utf8_stream_flush(q4k_utf8_stream *s, char *out, size_t cap, size_t *out_len) {
    size_t n = s->n_held < cap ? s->n_held : cap;
    memcpy(out, s->held, n);
    memmove(s->held, s->held + n, s->n_held - n);
    s->n_held -= (uint32_t)n;
    if (out_len) *out_len = n;
    return s->n_held;
}

/* ---- GPT-2 byte-to-unicode mapping -------------------------------------- */

/* Byte-level BPE spells byte b as code point b when b is a printable
   Latin-1 character (21..7E, A1..AC, AE..FF) and as 256 + k for the k-th
   other byte (00..20, 7F..A0, AD, in order). Inverse: the byte of a code
   point, -1 when the code point spells no byte. */
static int q4k__bytelevel_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return (int)cp;
    if (cp >= 256 && cp < 256 + 33) return (int)(cp - 256);              /* 00..20 */
    if (cp >= 256 + 33 && cp < 256 + 67) return (int)(cp - 256 - 33 + 0x7F); /* 7F..A0 */
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

/* Decode a byte-level string into out (room for n bytes); returns the byte
   count, or -1 when it holds invalid UTF-8 or a code point that spells no
   byte. */
static int64_t q4k__bytelevel_decode(const unsigned char *s, size_t n, unsigned char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp, l = q4k__utf8_decode(s + i, n - i, &cp);
        int b;
        if (!l) return -1;
        b = q4k__bytelevel_byte(cp);
        if (b < 0) return -1;
        out[o++] = (unsigned char)b;
        i += l;
    }
    return (int64_t)o;
}

/* ---- the tokenizer object ----------------------------------------------- */

enum { Q4K__PRE_GPT2 = 0, Q4K__PRE_QWEN2 = 1, Q4K__PRE_LLAMA3 = 2 };

#define Q4K__TOKF_EOG 1u

struct q4k_tokenizer {
    int64_t n_vocab;
    unsigned char *text;  /* every token's bytes, each followed by a NUL */
    size_t *off;          /* n_vocab + 1 offsets into text */
    uint8_t *type;        /* q4k_token_type */
    uint8_t *tflags;      /* Q4K__TOKF_* */
    size_t max_len;
    int32_t byte_id[256]; /* the token of each single byte */
    /* bytes -> id (open addressing; -1 empty) */
    int32_t *map_id;
    uint32_t *map_hash;
    size_t map_mask;
    /* (left id, right id) -> merge rank and merged id */
    uint64_t *mkey;
    int32_t *mrank, *mres;
    size_t mmask;
    /* CONTROL and USER_DEFINED tokens by first byte, longest first */
    int32_t *special;
    size_t special_start[257];
    int32_t bos, eos, eot, pad;
    int add_bos;
    int pre;
    int ignore_merges; /* look a whole pre-token up before BPE (Llama 3) */
};

#define Q4K__MKEY_EMPTY UINT64_MAX

static uint32_t q4k__hash_bytes(const unsigned char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

static size_t q4k__hash_u64(uint64_t k) {
    k *= 0x9E3779B97F4A7C15ull;
    return (size_t)(k ^ (k >> 29));
}

static int q4k__tok_is_plain(int type) {
    return type == Q4K_TOKEN_NORMAL || type == Q4K_TOKEN_UNDEFINED || type == Q4K_TOKEN_BYTE;
}

static const unsigned char *q4k__tok_str(const q4k_tokenizer *t, int32_t id, size_t *len) {
    *len = t->off[id + 1] - t->off[id] - 1;
    return t->text + t->off[id];
}

/* Id of the token spelled by bytes s[0..n), -1 when none. */
static int32_t q4k__map_find(const q4k_tokenizer *t, const unsigned char *s, size_t n) {
    uint32_t h = q4k__hash_bytes(s, n);
    size_t i = h & t->map_mask;
    for (;; i = (i + 1) & t->map_mask) {
        int32_t id = t->map_id[i];
        size_t l;
        const unsigned char *p;
        if (id < 0) return -1;
        if (t->map_hash[i] != h) continue;
        p = q4k__tok_str(t, id, &l);
        if (l == n && !memcmp(p, s, n)) return id;
    }
}

/* Add token id; of two tokens with the same bytes the map keeps the first
   plain one (BPE must find the ordinary token), else the first. */
static void q4k__map_add(q4k_tokenizer *t, int32_t id) {
    size_t n;
    const unsigned char *s = q4k__tok_str(t, id, &n);
    uint32_t h = q4k__hash_bytes(s, n);
    size_t i = h & t->map_mask;
    for (;; i = (i + 1) & t->map_mask) {
        int32_t old = t->map_id[i];
        size_t l;
        const unsigned char *p;
        if (old < 0) {
            t->map_id[i] = id;
            t->map_hash[i] = h;
            return;
        }
        if (t->map_hash[i] != h) continue;
        p = q4k__tok_str(t, old, &l);
        if (l == n && !memcmp(p, s, n)) {
            if (!q4k__tok_is_plain(t->type[old]) && q4k__tok_is_plain(t->type[id])) t->map_id[i] = id;
            return;
        }
    }
}

static int q4k__merge_find(const q4k_tokenizer *t, int32_t left, int32_t right, int32_t *rank, int32_t *res) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t i = q4k__hash_u64(key) & t->mmask;
    for (;; i = (i + 1) & t->mmask) {
        if (t->mkey[i] == key) {
            *rank = t->mrank[i];
            *res = t->mres[i];
            return 1;
        }
        if (t->mkey[i] == Q4K__MKEY_EMPTY) return 0;
    }
}

/* 0 when the pair is there already (a repeated merge keeps its first rank) */
static int q4k__merge_add(q4k_tokenizer *t, int32_t left, int32_t right, int32_t rank, int32_t res) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t i = q4k__hash_u64(key) & t->mmask;
    for (;; i = (i + 1) & t->mmask) {
        if (t->mkey[i] == key) return 0;
        if (t->mkey[i] == Q4K__MKEY_EMPTY) {
            t->mkey[i] = key;
            t->mrank[i] = rank;
            t->mres[i] = res;
            return 1;
        }
    }
}

Q4K_API void q4k_tokenizer_free(q4k_tokenizer *t) {
    if (!t) return;
    Q4K_FREE(t->text);
    Q4K_FREE(t->off);
    Q4K_FREE(t->type);
    Q4K_FREE(t->tflags);
    Q4K_FREE(t->map_id);
    Q4K_FREE(t->map_hash);
    Q4K_FREE(t->mkey);
    Q4K_FREE(t->mrank);
    Q4K_FREE(t->mres);
    Q4K_FREE(t->special);
    Q4K_FREE(t);
}

static int q4k__pre_from_name(const char *name) {
    if (!name || !*name || !strcmp(name, "default") || !strcmp(name, "gpt2") || !strcmp(name, "gpt-2"))
        return Q4K__PRE_GPT2;
    if (!strcmp(name, "qwen2")) return Q4K__PRE_QWEN2;
    if (!strcmp(name, "llama-bpe") || !strcmp(name, "llama3")) return Q4K__PRE_LLAMA3;
    return -1;
}

/* A string for error messages: printable ASCII as is, other bytes as \xNN,
   cut at about 48 characters. */
static const char *q4k__esc(const void *p, size_t n, char buf[80]) {
    const unsigned char *s = (const unsigned char *)p;
    size_t i, o = 0;
    for (i = 0; i < n && o < 60; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '\\') {
            buf[o++] = (char)s[i];
        } else {
            static const char hex[] = "0123456789abcdef";
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[s[i] >> 4];
            buf[o++] = hex[s[i] & 15];
        }
    }
    if (i < n) { buf[o++] = '.'; buf[o++] = '.'; buf[o++] = '.'; }
    buf[o] = 0;
    return buf;
}

static size_t q4k__pow2_at_least(size_t n) {
    size_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

typedef struct q4k__special_key {
    int32_t id;
    unsigned first;
    size_t len;
} q4k__special_key;

static int q4k__special_cmp(const void *a, const void *b) {
    const q4k__special_key *x = (const q4k__special_key *)a, *y = (const q4k__special_key *)b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int q4k__is_eog_text(const unsigned char *s, size_t n) {
    static const char *const names[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) return 1;
    return 0;
}

/* `kp` prefixes key names in messages: "" for a descriptor,
   "tokenizer.ggml." for a GGUF file. */
static q4k_result q4k__tokenizer_build(const q4k_vocab_desc *d, const char *kp, q4k_tokenizer **out, q4k_error *err) {
    q4k_tokenizer *t;
    int64_t i, n, n_raw = 0;
    size_t total = 0, o = 0, cap, max_merge = 0;
    unsigned char *buf = NULL;
    q4k__special_key *keys = NULL;
    size_t n_special = 0;
    char e1[80], e2[80];
    q4k_result rc = Q4K_OK;
    int pre;

    if (out) *out = NULL;
    if (!d || !out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_tokenizer_create: desc and out must not be NULL");
    n = d->n_tokens;
    if (n < 256 || n > INT32_MAX - 1 || !d->tokens)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG,
                         "%stokens: a byte-level BPE vocabulary needs 256 to 2^31-2 tokens, not %lld", kp, (long long)n);
    if (d->n_merges < 0 || d->n_merges > INT32_MAX || (d->n_merges && !d->merges))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "%smerges: bad count %lld", kp, (long long)d->n_merges);
    pre = q4k__pre_from_name(d->pre);
    if (pre < 0)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                         "%spre = '%s': pre-tokenizer not implemented (q4k knows qwen2, llama-bpe, gpt2/default)", kp, d->pre);

    t = (q4k_tokenizer *)Q4K_MALLOC(sizeof *t);
    if (!t) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    memset(t, 0, sizeof *t);
    t->n_vocab = n;
    t->pre = pre;
    t->ignore_merges = pre == Q4K__PRE_LLAMA3;
    t->bos = t->eos = t->eot = t->pad = -1;
    t->add_bos = d->add_bos != 0;

    for (i = 0; i < n; i++) {
        size_t l;
        if (!d->tokens[i]) {
            rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%stokens[%lld] is NULL", kp, (long long)i);
            goto fail;
        }
        l = d->token_lens ? d->token_lens[i] : strlen(d->tokens[i]);
        total += l + 1;
    }
    t->text = (unsigned char *)Q4K_MALLOC(total ? total : 1);
    t->off = (size_t *)Q4K_MALLOC((size_t)(n + 1) * sizeof *t->off);
    t->type = (uint8_t *)Q4K_MALLOC((size_t)n);
    t->tflags = (uint8_t *)Q4K_MALLOC((size_t)n);
    cap = q4k__pow2_at_least((size_t)n + (size_t)n / 2);
    t->map_id = (int32_t *)Q4K_MALLOC(cap * sizeof *t->map_id);
    t->map_hash = (uint32_t *)Q4K_MALLOC(cap * sizeof *t->map_hash);
    t->map_mask = cap - 1;
    if (!t->text || !t->off || !t->type || !t->tflags || !t->map_id || !t->map_hash) goto oom;
    memset(t->map_id, 0xff, cap * sizeof *t->map_id);
    memset(t->tflags, 0, (size_t)n);

    /* token bytes: byte-level strings are decoded once, here; CONTROL and
       USER_DEFINED tokens are plain text */
    for (i = 0; i < n; i++) {
        const unsigned char *s = (const unsigned char *)d->tokens[i];
        size_t l = d->token_lens ? d->token_lens[i] : strlen(d->tokens[i]);
        int32_t ty = d->token_types ? d->token_types[i] : (int32_t)Q4K_TOKEN_NORMAL;
        int64_t dl = -1;
        if (ty < Q4K_TOKEN_UNDEFINED || ty > Q4K_TOKEN_BYTE) {
            rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%stoken_type[%lld] = %ld is not a token type (0..6)", kp,
                           (long long)i, (long)ty);
            goto fail;
        }
        t->type[i] = (uint8_t)ty;
        t->off[i] = o;
        if (ty != Q4K_TOKEN_CONTROL && ty != Q4K_TOKEN_USER_DEFINED) dl = q4k__bytelevel_decode(s, l, t->text + o);
        if (dl < 0) {
            /* plain text, or a string that is not in byte-level form (kept
               as it is, so it still prints) */
            if (ty != Q4K_TOKEN_CONTROL && ty != Q4K_TOKEN_USER_DEFINED) n_raw++;
            if (l) memcpy(t->text + o, s, l);
            dl = (int64_t)l;
        }
        o += (size_t)dl;
        t->text[o++] = 0;
        if ((size_t)dl > t->max_len) t->max_len = (size_t)dl;
    }
    t->off[n] = o;
    if (n_raw)
        q4k__log(d->log, d->log_user, Q4K_LOG_WARN,
                 "tokenizer: %lld tokens are not in byte-level form; they are used as plain text", (long long)n_raw);
    for (i = 0; i < n; i++) q4k__map_add(t, (int32_t)i);

    for (i = 0; i < 256; i++) {
        unsigned char b = (unsigned char)i;
        int32_t id = q4k__map_find(t, &b, 1);
        if (id < 0 || !q4k__tok_is_plain(t->type[id])) {
            rc = q4k__fail(err, Q4K_ERR_INVALID_ARG,
                           "%stokens: no ordinary token for byte 0x%02x (byte-level BPE needs all 256 bytes)", kp,
                           (unsigned)i);
            goto fail;
        }
        t->byte_id[i] = id;
    }

    /* merges: "left right" in byte-level form, rank = index */
    cap = q4k__pow2_at_least((size_t)d->n_merges + (size_t)d->n_merges / 2 + 1);
    t->mkey = (uint64_t *)Q4K_MALLOC(cap * sizeof *t->mkey);
    t->mrank = (int32_t *)Q4K_MALLOC(cap * sizeof *t->mrank);
    t->mres = (int32_t *)Q4K_MALLOC(cap * sizeof *t->mres);
    t->mmask = cap - 1;
    if (!t->mkey || !t->mrank || !t->mres) goto oom;
    memset(t->mkey, 0xff, cap * sizeof *t->mkey);
    for (i = 0; i < d->n_merges; i++) {
        size_t l = d->merges[i] ? (d->merge_lens ? d->merge_lens[i] : strlen(d->merges[i])) : 0;
        if (l > max_merge) max_merge = l;
    }
    buf = (unsigned char *)Q4K_MALLOC(max_merge + 1);
    if (!buf) goto oom;
    for (i = 0; i < d->n_merges; i++) {
        const unsigned char *s = (const unsigned char *)d->merges[i];
        size_t l, sp;
        int64_t la, lb;
        int32_t left, right, res;
        if (!s) {
            rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%smerges[%lld] is NULL", kp, (long long)i);
            goto fail;
        }
        l = d->merge_lens ? d->merge_lens[i] : strlen(d->merges[i]);
        /* split at the first space after the first byte (byte-level strings
           hold no spaces: U+0120 stands for one) */
        for (sp = 1; sp < l && s[sp] != ' '; sp++) {}
        if (sp + 1 >= l) {
            rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%smerges[%lld] = '%s' is not two tokens separated by a space", kp,
                           (long long)i, q4k__esc(s, l, e1));
            goto fail;
        }
        la = q4k__bytelevel_decode(s, sp, buf);
        if (la < 0) { memcpy(buf, s, sp); la = (int64_t)sp; }
        lb = q4k__bytelevel_decode(s + sp + 1, l - sp - 1, buf + la);
        if (lb < 0) { memcpy(buf + la, s + sp + 1, l - sp - 1); lb = (int64_t)(l - sp - 1); }
        left = q4k__map_find(t, buf, (size_t)la);
        right = q4k__map_find(t, buf + la, (size_t)lb);
        if (left < 0 || right < 0) {
            rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%smerges[%lld] = '%s': '%s' is not a token", kp, (long long)i,
                           q4k__esc(s, l, e1),
                           left < 0 ? q4k__esc(s, sp, e2) : q4k__esc(s + sp + 1, l - sp - 1, e2));
            goto fail;
        }
        res = q4k__map_find(t, buf, (size_t)(la + lb));
        if (res < 0) {
            rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%smerges[%lld] = '%s': the merged token is not in the vocabulary",
                           kp, (long long)i, q4k__esc(s, l, e1));
            goto fail;
        }
        q4k__merge_add(t, left, right, (int32_t)i, res);
    }

    /* special ids */
    if (d->set_ids) {
        const int32_t ids[4] = {d->bos_id, d->eos_id, d->eot_id, d->pad_id};
        static const char *const names[4] = {"bos_token_id", "eos_token_id", "eot_token_id", "padding_token_id"};
        int k;
        for (k = 0; k < 4; k++) {
            if (ids[k] < -1 || ids[k] >= n) {
                rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%s%s = %ld is out of range (the vocabulary has %lld tokens)",
                               kp, names[k], (long)ids[k], (long long)n);
                goto fail;
            }
        }
        t->bos = ids[0];
        t->eos = ids[1];
        t->eot = ids[2];
        t->pad = ids[3];
    }

    /* end-of-generation marks and the special tokens matched in text */
    for (i = 0; i < n; i++) {
        size_t l;
        const unsigned char *s = q4k__tok_str(t, (int32_t)i, &l);
        if (i == t->eos || i == t->eot || (t->type[i] == Q4K_TOKEN_CONTROL && q4k__is_eog_text(s, l)))
            t->tflags[i] |= Q4K__TOKF_EOG;
        if ((t->type[i] == Q4K_TOKEN_CONTROL || t->type[i] == Q4K_TOKEN_USER_DEFINED) && l) n_special++;
    }
    t->special = (int32_t *)Q4K_MALLOC((n_special ? n_special : 1) * sizeof *t->special);
    keys = (q4k__special_key *)Q4K_MALLOC((n_special ? n_special : 1) * sizeof *keys);
    if (!t->special || !keys) goto oom;
    n_special = 0;
    for (i = 0; i < n; i++) {
        size_t l;
        const unsigned char *s = q4k__tok_str(t, (int32_t)i, &l);
        if ((t->type[i] == Q4K_TOKEN_CONTROL || t->type[i] == Q4K_TOKEN_USER_DEFINED) && l) {
            keys[n_special].id = (int32_t)i;
            keys[n_special].first = s[0];
            keys[n_special].len = l;
            n_special++;
        }
    }
    if (n_special) qsort(keys, n_special, sizeof *keys, q4k__special_cmp);
    {
        size_t k = 0;
        unsigned b;
        for (b = 0; b <= 256; b++) {
            while (k < n_special && keys[k].first < b) k++;
            t->special_start[b] = k;
        }
        for (k = 0; k < n_special; k++) t->special[k] = keys[k].id;
    }

    Q4K_FREE(buf);
    Q4K_FREE(keys);
    *out = t;
    return Q4K_OK;
oom:
    rc = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "tokenizer: out of memory (%lld tokens, %lld merges)", (long long)n,
                   (long long)d->n_merges);
fail:
    Q4K_FREE(buf);
    Q4K_FREE(keys);
    q4k_tokenizer_free(t);
    return rc;
}

Q4K_API q4k_result q4k_tokenizer_create(const q4k_vocab_desc *d, q4k_tokenizer **out, q4k_error *err) {
    return q4k__tokenizer_build(d, "", out, err);
}

/* Element i of an integer array of a GGUF file (packed little-endian). */
static int q4k__gguf_arr_int(const void *data, q4k_gguf_type et, uint64_t i, int64_t *v) {
    const unsigned char *p = (const unsigned char *)data;
    size_t w;
    uint64_t u = 0;
    int sign;
    size_t k;
    switch (et) {
    case Q4K_GGUF_UINT8: w = 1; sign = 0; break;
    case Q4K_GGUF_INT8: w = 1; sign = 1; break;
    case Q4K_GGUF_UINT16: w = 2; sign = 0; break;
    case Q4K_GGUF_INT16: w = 2; sign = 1; break;
    case Q4K_GGUF_UINT32: w = 4; sign = 0; break;
    case Q4K_GGUF_INT32: w = 4; sign = 1; break;
    case Q4K_GGUF_UINT64: w = 8; sign = 0; break;
    case Q4K_GGUF_INT64: w = 8; sign = 1; break;
    default: return 0;
    }
    p += (size_t)i * w;
    for (k = 0; k < w; k++) u |= (uint64_t)p[k] << (8 * k);
    if (sign && w < 8 && (u >> (8 * w - 1)) & 1) u |= ~(uint64_t)0 << (8 * w);
    if (!sign && w == 8 && u > (uint64_t)INT64_MAX) u = (uint64_t)INT64_MAX;
    memcpy(v, &u, sizeof u);
    return 1;
}

/* An optional token id key: -1 when absent. */
static q4k_result q4k__gguf_token_id(const q4k_gguf *g, const char *key, int32_t *id, q4k_error *err) {
    uint32_t v;
    q4k_result rc = q4k_gguf_get_u32(g, key, &v);
    if (rc == Q4K_ERR_NOT_FOUND) {
        *id = -1;
        return Q4K_OK;
    }
    if (rc != Q4K_OK) return q4k__fail(err, rc, "%s: %s (want an unsigned integer)", key, q4k_result_string(rc));
    if (v > (uint32_t)INT32_MAX) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "%s = %lu is out of range", key, (unsigned long)v);
    *id = (int32_t)v;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_tokenizer_from_gguf(const q4k_gguf *g, q4k_tokenizer **out, q4k_error *err) {
    const char *model = NULL, *pre = NULL;
    q4k_gguf_type et;
    uint64_t n_tok = 0, n_merge = 0, n_type = 0, i;
    const char **tokens = NULL, **merges = NULL;
    size_t *token_lens = NULL, *merge_lens = NULL;
    int32_t *types = NULL;
    q4k_vocab_desc d;
    q4k_result rc;
    int add_bos;

    if (out) *out = NULL;
    if (!g || !out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_tokenizer_from_gguf: g and out must not be NULL");
    memset(&d, 0, sizeof d);

    rc = q4k_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (rc == Q4K_ERR_NOT_FOUND) return q4k__fail(err, rc, "tokenizer.ggml.model is missing: the file has no tokenizer");
    if (rc != Q4K_OK) return q4k__fail(err, rc, "tokenizer.ggml.model: %s (want a string)", q4k_result_string(rc));
    if (!strcmp(model, "llama"))
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                         "tokenizer.ggml.model = 'llama' (SentencePiece) is not implemented; q4k implements 'gpt2' "
                         "(byte-level BPE: Qwen2, Llama 3)");
    if (strcmp(model, "gpt2"))
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                         "tokenizer.ggml.model = '%s' is not implemented; q4k implements 'gpt2' (byte-level BPE)", model);

    rc = q4k_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    if (rc == Q4K_ERR_NOT_FOUND)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                         "tokenizer.ggml.pre is missing: q4k needs it to choose the pre-tokenizer (qwen2, llama-bpe, "
                         "default); convert the model again with a current converter");
    if (rc != Q4K_OK) return q4k__fail(err, rc, "tokenizer.ggml.pre: %s (want a string)", q4k_result_string(rc));
    if (q4k__pre_from_name(pre) < 0)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                         "tokenizer.ggml.pre = '%s': pre-tokenizer not implemented (q4k knows qwen2, llama-bpe, default)",
                         pre);

    rc = q4k_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok);
    if (rc != Q4K_OK) return q4k__fail(err, rc, "tokenizer.ggml.tokens: %s", q4k_result_string(rc));
    if (et != Q4K_GGUF_STRING)
        return q4k__fail(err, Q4K_ERR_TYPE_MISMATCH, "tokenizer.ggml.tokens is an array of type %d, not of strings", (int)et);
    if (n_tok > (uint64_t)(INT32_MAX - 1))
        return q4k__fail(err, Q4K_ERR_BAD_COUNT, "tokenizer.ggml.tokens has %llu entries (at most 2^31-2)",
                         (unsigned long long)n_tok);

    rc = q4k_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n_merge);
    if (rc == Q4K_ERR_NOT_FOUND)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "tokenizer.ggml.merges is missing (a byte-level BPE vocabulary needs it)");
    if (rc != Q4K_OK) return q4k__fail(err, rc, "tokenizer.ggml.merges: %s", q4k_result_string(rc));
    if (et != Q4K_GGUF_STRING)
        return q4k__fail(err, Q4K_ERR_TYPE_MISMATCH, "tokenizer.ggml.merges is an array of type %d, not of strings", (int)et);
    if (n_merge > (uint64_t)INT32_MAX)
        return q4k__fail(err, Q4K_ERR_BAD_COUNT, "tokenizer.ggml.merges has %llu entries (at most 2^31-1)",
                         (unsigned long long)n_merge);

    tokens = (const char **)Q4K_MALLOC((size_t)(n_tok ? n_tok : 1) * sizeof *tokens);
    token_lens = (size_t *)Q4K_MALLOC((size_t)(n_tok ? n_tok : 1) * sizeof *token_lens);
    merges = (const char **)Q4K_MALLOC((size_t)(n_merge ? n_merge : 1) * sizeof *merges);
    merge_lens = (size_t *)Q4K_MALLOC((size_t)(n_merge ? n_merge : 1) * sizeof *merge_lens);
    if (!tokens || !token_lens || !merges || !merge_lens) {
        rc = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        goto done;
    }
    for (i = 0; i < n_tok; i++) {
        rc = q4k_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &tokens[i], &token_lens[i]);
        if (rc != Q4K_OK) {
            q4k__fail(err, rc, "tokenizer.ggml.tokens[%llu]: %s", (unsigned long long)i, q4k_result_string(rc));
            goto done;
        }
    }
    for (i = 0; i < n_merge; i++) {
        rc = q4k_gguf_get_arr_str(g, "tokenizer.ggml.merges", i, &merges[i], &merge_lens[i]);
        if (rc != Q4K_OK) {
            q4k__fail(err, rc, "tokenizer.ggml.merges[%llu]: %s", (unsigned long long)i, q4k_result_string(rc));
            goto done;
        }
    }

    rc = q4k_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n_type);
    if (rc == Q4K_OK) {
        const void *data = NULL;
        if (n_type != n_tok) {
            rc = q4k__fail(err, Q4K_ERR_BAD_COUNT, "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                           (unsigned long long)n_type, (unsigned long long)n_tok);
            goto done;
        }
        rc = q4k_gguf_get_arr_data(g, "tokenizer.ggml.token_type", &data);
        if (rc != Q4K_OK) {
            q4k__fail(err, rc, "tokenizer.ggml.token_type: %s (want integers)", q4k_result_string(rc));
            goto done;
        }
        types = (int32_t *)Q4K_MALLOC((size_t)(n_tok ? n_tok : 1) * sizeof *types);
        if (!types) {
            rc = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
            goto done;
        }
        for (i = 0; i < n_tok; i++) {
            int64_t v;
            if (!q4k__gguf_arr_int(data, et, i, &v)) {
                rc = q4k__fail(err, Q4K_ERR_TYPE_MISMATCH, "tokenizer.ggml.token_type is an array of type %d, not of integers",
                               (int)et);
                goto done;
            }
            if (v < Q4K_TOKEN_UNDEFINED || v > Q4K_TOKEN_BYTE) {
                rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "tokenizer.ggml.token_type[%llu] = %lld is not a token type (0..6)",
                               (unsigned long long)i, (long long)v);
                goto done;
            }
            types[i] = (int32_t)v;
        }
    } else if (rc != Q4K_ERR_NOT_FOUND) {
        q4k__fail(err, rc, "tokenizer.ggml.token_type: %s", q4k_result_string(rc));
        goto done;
    }

    d.set_ids = 1;
    if ((rc = q4k__gguf_token_id(g, "tokenizer.ggml.bos_token_id", &d.bos_id, err)) != Q4K_OK ||
        (rc = q4k__gguf_token_id(g, "tokenizer.ggml.eos_token_id", &d.eos_id, err)) != Q4K_OK ||
        (rc = q4k__gguf_token_id(g, "tokenizer.ggml.eot_token_id", &d.eot_id, err)) != Q4K_OK ||
        (rc = q4k__gguf_token_id(g, "tokenizer.ggml.padding_token_id", &d.pad_id, err)) != Q4K_OK)
        goto done;
    rc = q4k_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    if (rc == Q4K_ERR_NOT_FOUND) {
        add_bos = q4k__pre_from_name(pre) == Q4K__PRE_LLAMA3;
    } else if (rc != Q4K_OK) {
        q4k__fail(err, rc, "tokenizer.ggml.add_bos_token: %s (want a bool)", q4k_result_string(rc));
        goto done;
    }

    d.n_tokens = (int64_t)n_tok;
    d.tokens = tokens;
    d.token_lens = token_lens;
    d.token_types = types;
    d.n_merges = (int64_t)n_merge;
    d.merges = merges;
    d.merge_lens = merge_lens;
    d.pre = pre;
    d.add_bos = add_bos;
    rc = q4k__tokenizer_build(&d, "tokenizer.ggml.", out, err);
done:
    Q4K_FREE(tokens);
    Q4K_FREE(token_lens);
    Q4K_FREE(merges);
    Q4K_FREE(merge_lens);
    Q4K_FREE(types);
    return rc;
}

/* ---- getters ------------------------------------------------------------ */

Q4K_API int64_t q4k_tokenizer_n_vocab(const q4k_tokenizer *t) { return t ? t->n_vocab : 0; }
Q4K_API int32_t q4k_tokenizer_bos(const q4k_tokenizer *t) { return t ? t->bos : -1; }
Q4K_API int32_t q4k_tokenizer_eos(const q4k_tokenizer *t) { return t ? t->eos : -1; }
Q4K_API int32_t q4k_tokenizer_eot(const q4k_tokenizer *t) { return t ? t->eot : -1; }
Q4K_API int32_t q4k_tokenizer_pad(const q4k_tokenizer *t) { return t ? t->pad : -1; }
Q4K_API int q4k_tokenizer_add_bos(const q4k_tokenizer *t) { return t ? t->add_bos : 0; }
Q4K_API size_t q4k_tokenizer_max_token_len(const q4k_tokenizer *t) { return t ? t->max_len : 0; }

Q4K_API const char *q4k_tokenizer_pre(const q4k_tokenizer *t) {
    if (!t) return "";
    return t->pre == Q4K__PRE_QWEN2 ? "qwen2" : t->pre == Q4K__PRE_LLAMA3 ? "llama-bpe" : "gpt2";
}

Q4K_API q4k_token_type q4k_tokenizer_token_type(const q4k_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return Q4K_TOKEN_UNDEFINED;
    return (q4k_token_type)t->type[id];
}

Q4K_API int q4k_tokenizer_is_control(const q4k_tokenizer *t, int32_t id) {
    return q4k_tokenizer_token_type(t, id) == Q4K_TOKEN_CONTROL;
}

Q4K_API int q4k_tokenizer_is_eog(const q4k_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    return (t->tflags[id] & Q4K__TOKF_EOG) != 0;
}

Q4K_API int32_t q4k_tokenizer_find(const q4k_tokenizer *t, const char *text) {
    if (!t || !text) return -1;
    return q4k__map_find(t, (const unsigned char *)text, strlen(text));
}

Q4K_API const char *q4k_token_text(const q4k_tokenizer *t, int32_t id, size_t *len) {
    size_t l;
    const unsigned char *s;
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    s = q4k__tok_str(t, id, &l);
    if (len) *len = l;
    return (const char *)s;
}

Q4K_API const char *q4k_token_bytes(const q4k_tokenizer *t, int32_t id, size_t *len) {
    const char *s = q4k_token_text(t, id, len);
    int ty;
    if (!s) return NULL;
    ty = t->type[id];
    if (ty == Q4K_TOKEN_CONTROL || ty == Q4K_TOKEN_UNUSED || ty == Q4K_TOKEN_UNKNOWN) {
        if (len) *len = 0;
        return (const char *)t->text + t->off[id + 1] - 1; /* the NUL: "" */
    }
    return s;
}

/* ---- pre-tokenizer ------------------------------------------------------ */

/* One character of text: valid UTF-8, or one byte that starts no valid
   sequence (class other, code point Q4K__BAD_CP). */
#define Q4K__BAD_CP 0xFFFFFFFFu
typedef struct q4k__uch {
    uint32_t cp;
    uint32_t len;
    int cls;
} q4k__uch;

static q4k__uch q4k__peek(const unsigned char *s, size_t n, size_t i) {
    q4k__uch c;
    c.cp = Q4K__BAD_CP;
    c.len = q4k__utf8_decode(s + i, n - i, &c.cp);
    if (!c.len) {
        c.cp = Q4K__BAD_CP;
        c.len = 1;
        c.cls = Q4K__CC_OTHER;
    } else {
        c.cls = q4k__ucd_class(c.cp);
    }
    return c;
}

static size_t q4k__skip_class(const unsigned char *s, size_t n, size_t i, int cls) {
    while (i < n) {
        q4k__uch c = q4k__peek(s, n, i);
        if (c.cls != cls) break;
        i += c.len;
    }
    return i;
}

/* Length of s|t|re|ve|m|ll|d at s[j] (after an apostrophe), 0 when none.
   With ci the match ignores case as Unicode simple case folding does
   (which also folds U+017F LONG S to s). */
static size_t q4k__contraction(const unsigned char *s, size_t n, size_t j, int ci) {
    unsigned a, b;
    if (j >= n) return 0;
    a = s[j];
    if (ci) {
        if (a == 0xC5 && j + 1 < n && s[j + 1] == 0xBF) return 2;
        if (a >= 'A' && a <= 'Z') a += 32;
    }
    switch (a) {
    case 's': case 't': case 'm': case 'd': return 1;
    case 'r': case 'v': case 'l':
        if (j + 1 >= n) return 0;
        b = s[j + 1];
        if (ci && b >= 'A' && b <= 'Z') b += 32;
        return b == (a == 'l' ? 'l' : 'e') ? 2 : 0;
    default: return 0;
    }
}

/* End of the pre-token that starts at s[i] (i < n), as the first matching
   alternative of the pattern gives it (Perl semantics, n = end of text):

   qwen2:     (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
              | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
   llama-bpe: the same with \p{N}{1,3}
   gpt2:      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+
              |\s+(?!\S)|\s+ */
static size_t q4k__pretok_next(const unsigned char *s, size_t n, size_t i, int pre) {
    q4k__uch c = q4k__peek(s, n, i), d;
    size_t j = i + c.len;
    int gpt2 = pre == Q4K__PRE_GPT2;
    if (c.cp == '\'') {
        size_t m = q4k__contraction(s, n, j, !gpt2);
        if (m) return j + m;
    }
    if (c.cls == Q4K__CC_L) return q4k__skip_class(s, n, j, Q4K__CC_L);
    if (j < n) {
        d = q4k__peek(s, n, j);
    } else {
        d.cp = Q4K__BAD_CP;
        d.len = 0;
        d.cls = -1;
    }
    /* an optional leading character, then letters */
    if (d.cls == Q4K__CC_L && (gpt2 ? c.cp == ' ' : (c.cls != Q4K__CC_N && c.cp != '\r' && c.cp != '\n')))
        return q4k__skip_class(s, n, j, Q4K__CC_L);
    if (c.cls == Q4K__CC_N) {
        if (pre == Q4K__PRE_QWEN2) return j;
        if (pre == Q4K__PRE_LLAMA3) {
            int k;
            for (k = 1; k < 3 && j < n; k++) {
                q4k__uch e = q4k__peek(s, n, j);
                if (e.cls != Q4K__CC_N) break;
                j += e.len;
            }
            return j;
        }
        return q4k__skip_class(s, n, j, Q4K__CC_N);
    }
    if (gpt2 && c.cp == ' ' && d.cls == Q4K__CC_N) return q4k__skip_class(s, n, j, Q4K__CC_N);
    /* ' ?[^\s\p{L}\p{N}]+', then [\r\n]* */
    if (c.cls == Q4K__CC_OTHER || (c.cp == ' ' && d.cls == Q4K__CC_OTHER)) {
        j = q4k__skip_class(s, n, j, Q4K__CC_OTHER);
        if (!gpt2)
            while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    /* c is white space: look at the whole run */
    {
        size_t e = i, last_nl = 0, last = i, count = 0;
        while (e < n) {
            q4k__uch w = q4k__peek(s, n, e);
            if (w.cls != Q4K__CC_S) break;
            last = e;
            e += w.len;
            if (w.cp == '\r' || w.cp == '\n') last_nl = e;
            count++;
        }
        if (!gpt2 && last_nl) return last_nl; /* \s*[\r\n]+ */
        if (e == n) return e;                 /* \s+(?!\S) at the end */
        if (count >= 2) return last;          /* \s+(?!\S): leave one for the next word */
        return e;                             /* \s+ */
    }
}

/* ---- BPE ---------------------------------------------------------------- */

typedef struct q4k__bpe_item {
    int32_t rank, left, right;
} q4k__bpe_item;

typedef struct q4k__tokctx {
    const q4k_tokenizer *t;
    int32_t *out;
    int64_t cap, n;
    /* scratch, grown to the longest pre-token */
    int32_t *sym, *next, *prev;
    q4k__bpe_item *heap;
    size_t n_heap, scap;
} q4k__tokctx;

static void q4k__emit(q4k__tokctx *c, int32_t id) {
    if (c->n < c->cap) c->out[c->n] = id;
    c->n++;
}

static int q4k__bpe_less(const q4k__bpe_item *a, const q4k__bpe_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void q4k__bpe_push(q4k__tokctx *c, int32_t left, int32_t right) {
    int32_t rank, res;
    size_t k;
    q4k__bpe_item it;
    if (left < 0 || right < 0) return;
    if (!q4k__merge_find(c->t, c->sym[left], c->sym[right], &rank, &res)) return;
    it.rank = rank;
    it.left = left;
    it.right = right;
    k = c->n_heap++;
    while (k > 0) {
        size_t p = (k - 1) / 2;
        if (!q4k__bpe_less(&it, &c->heap[p])) break;
        c->heap[k] = c->heap[p];
        k = p;
    }
    c->heap[k] = it;
}

static q4k__bpe_item q4k__bpe_pop(q4k__tokctx *c) {
    q4k__bpe_item top = c->heap[0], last = c->heap[--c->n_heap];
    size_t k = 0, n = c->n_heap;
    for (;;) {
        size_t m = 2 * k + 1;
        if (m >= n) break;
        if (m + 1 < n && q4k__bpe_less(&c->heap[m + 1], &c->heap[m])) m++;
        if (!q4k__bpe_less(&c->heap[m], &last)) break;
        c->heap[k] = c->heap[m];
        k = m;
    }
    if (n) c->heap[k] = last;
    return top;
}

/* Merge the bytes w[0..n) by rank: always the best-ranked adjacent pair,
   the leftmost of equals. */
static q4k_result q4k__bpe(q4k__tokctx *c, const unsigned char *w, size_t n) {
    const q4k_tokenizer *t = c->t;
    int32_t k, m = (int32_t)n;
    if (n == 1) {
        q4k__emit(c, t->byte_id[w[0]]);
        return Q4K_OK;
    }
    if (t->ignore_merges) {
        int32_t id = q4k__map_find(t, w, n);
        if (id >= 0 && q4k__tok_is_plain(t->type[id])) {
            q4k__emit(c, id);
            return Q4K_OK;
        }
    }
    if (n > c->scap) {
        size_t cap = n < 64 ? 64 : n;
        Q4K_FREE(c->sym);
        Q4K_FREE(c->next);
        Q4K_FREE(c->prev);
        Q4K_FREE(c->heap);
        c->sym = (int32_t *)Q4K_MALLOC(cap * sizeof *c->sym);
        c->next = (int32_t *)Q4K_MALLOC(cap * sizeof *c->next);
        c->prev = (int32_t *)Q4K_MALLOC(cap * sizeof *c->prev);
        /* at most n - 1 pairs at first and two new ones per merge */
        c->heap = (q4k__bpe_item *)Q4K_MALLOC(3 * cap * sizeof *c->heap);
        c->scap = cap;
        if (!c->sym || !c->next || !c->prev || !c->heap) {
            c->scap = 0;
            return Q4K_ERR_OUT_OF_MEMORY;
        }
    }
    for (k = 0; k < m; k++) {
        c->sym[k] = t->byte_id[w[k]];
        c->prev[k] = k - 1;
        c->next[k] = k + 1 < m ? k + 1 : -1;
    }
    c->n_heap = 0;
    for (k = 0; k + 1 < m; k++) q4k__bpe_push(c, k, k + 1);
    while (c->n_heap) {
        q4k__bpe_item it = q4k__bpe_pop(c);
        int32_t rank, res, l = it.left, r = it.right;
        /* stale when a side was merged away or changed since the push */
        if (c->sym[l] < 0 || c->sym[r] < 0 || c->next[l] != r) continue;
        if (!q4k__merge_find(t, c->sym[l], c->sym[r], &rank, &res) || rank != it.rank) continue;
        c->sym[l] = res;
        c->sym[r] = -1;
        c->next[l] = c->next[r];
        if (c->next[r] >= 0) c->prev[c->next[r]] = l;
        q4k__bpe_push(c, c->prev[l], l);
        q4k__bpe_push(c, l, c->next[l]);
    }
    for (k = 0; k >= 0; k = c->next[k]) q4k__emit(c, c->sym[k]);
    return Q4K_OK;
}

static q4k_result q4k__encode_fragment(q4k__tokctx *c, const unsigned char *s, size_t a, size_t b) {
    while (a < b) {
        size_t e = q4k__pretok_next(s, b, a, c->t->pre);
        q4k_result rc = q4k__bpe(c, s + a, e - a);
        if (rc != Q4K_OK) return rc;
        a = e;
    }
    return Q4K_OK;
}

Q4K_API q4k_result q4k_tokenize(const q4k_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t *out,
                                int64_t cap, int64_t *n_out, q4k_error *err) {
    const unsigned char *s = (const unsigned char *)text;
    q4k__tokctx c;
    size_t i = 0, frag = 0;
    q4k_result rc = Q4K_OK;
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!text && len) || cap < 0 || (!out && cap > 0))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_tokenize: tok, n_out and text must be given, out when cap > 0");
    if (len > (size_t)INT32_MAX)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_tokenize: text of %llu bytes (at most 2^31-1)",
                         (unsigned long long)len);
    memset(&c, 0, sizeof c);
    c.t = t;
    c.out = out;
    c.cap = cap;
    if ((flags & Q4K_TOKENIZE_ADD_BOS) && t->add_bos && t->bos >= 0) q4k__emit(&c, t->bos);
    while (i < len) {
        size_t k, end = t->special_start[s[i] + 1];
        int32_t hit = -1;
        size_t hit_len = 0;
        for (k = t->special_start[s[i]]; k < end; k++) {
            int32_t id = t->special[k];
            size_t l;
            const unsigned char *p = q4k__tok_str(t, id, &l);
            if (t->type[id] == Q4K_TOKEN_CONTROL && !(flags & Q4K_TOKENIZE_SPECIAL)) continue;
            if (l <= len - i && !memcmp(p, s + i, l)) {
                hit = id;
                hit_len = l;
                break;
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        rc = q4k__encode_fragment(&c, s, frag, i);
        if (rc != Q4K_OK) break;
        q4k__emit(&c, hit);
        i += hit_len;
        frag = i;
    }
    if (rc == Q4K_OK) rc = q4k__encode_fragment(&c, s, frag, len);
    Q4K_FREE(c.sym);
    Q4K_FREE(c.next);
    Q4K_FREE(c.prev);
    Q4K_FREE(c.heap);
    if (rc != Q4K_OK) return q4k__fail(err, rc, "q4k_tokenize: out of memory (text of %llu bytes)", (unsigned long long)len);
    *n_out = c.n;
    if (c.n > cap && !(out == NULL && cap == 0))
        return q4k__fail(err, Q4K_ERR_OVERFLOW, "q4k_tokenize: %lld tokens do not fit in %lld", (long long)c.n,
                         (long long)cap);
    return Q4K_OK;
}

/* ---- vocabularies as strings (tiktoken files, synthetic) ---------------- */

Q4K_API void q4k_vocab_strings_free(q4k_vocab_strings *v) {
    if (!v) return;
    Q4K_FREE(v->tokens);
    Q4K_FREE(v->merges);
    Q4K_FREE(v->mem_);
    memset(v, 0, sizeof *v);
}

/* The code point that spells byte b (see q4k__bytelevel_byte). */
static uint32_t q4k__bytelevel_cp(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256 + b;
    if (b <= 0xA0) return 256 + 33 + (b - 0x7F);
    return 256 + 67; /* AD */
}

/* Byte-level form of n bytes into out (room for 2n); returns its length. */
static size_t q4k__bytelevel_encode(const unsigned char *s, size_t n, char *out) {
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        uint32_t cp = q4k__bytelevel_cp(s[i]);
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else {
            out[o++] = (char)(0xC0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    return o;
}

/* Fill out from raw token bytes (token i = raw[off[i]..off[i+1])) and, for
   each token, the split of its merge (0: no merge). */
static q4k_result q4k__vocab_emit(const unsigned char *raw, const size_t *off, int64_t n, const size_t *split,
                                  q4k_vocab_strings *out, q4k_error *err) {
    int64_t i, n_merges = 0;
    size_t total = 0, o = 0;
    for (i = 0; i < n; i++) {
        size_t l = off[i + 1] - off[i];
        total += 2 * l + 1;
        if (split[i]) {
            n_merges++;
            total += 2 * l + 2;
        }
    }
    out->n_tokens = n;
    out->n_merges = n_merges;
    out->tokens = (char **)Q4K_MALLOC((size_t)n * sizeof *out->tokens);
    out->merges = (char **)Q4K_MALLOC((size_t)(n_merges ? n_merges : 1) * sizeof *out->merges);
    out->mem_ = (char *)Q4K_MALLOC(total);
    if (!out->tokens || !out->merges || !out->mem_) {
        q4k_vocab_strings_free(out);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "vocabulary: out of memory (%lld tokens)", (long long)n);
    }
    for (i = 0; i < n; i++) {
        out->tokens[i] = out->mem_ + o;
        o += q4k__bytelevel_encode(raw + off[i], off[i + 1] - off[i], out->mem_ + o);
        out->mem_[o++] = 0;
    }
    n_merges = 0;
    for (i = 0; i < n; i++) {
        const unsigned char *s = raw + off[i];
        size_t l = off[i + 1] - off[i];
        if (!split[i]) continue;
        out->merges[n_merges++] = out->mem_ + o;
        o += q4k__bytelevel_encode(s, split[i], out->mem_ + o);
        out->mem_[o++] = ' ';
        o += q4k__bytelevel_encode(s + split[i], l - split[i], out->mem_ + o);
        out->mem_[o++] = 0;
    }
    return Q4K_OK;
}

static int q4k__b64_value(unsigned c) {
    if (c >= 'A' && c <= 'Z') return (int)(c - 'A');
    if (c >= 'a' && c <= 'z') return (int)(c - 'a' + 26);
    if (c >= '0' && c <= '9') return (int)(c - '0' + 52);
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decode base64 (padding optional) into out; -1 when malformed. */
static int64_t q4k__b64_decode(const char *s, size_t n, unsigned char *out) {
    uint32_t acc = 0;
    int bits = 0;
    size_t i, o = 0;
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1) return -1;
    for (i = 0; i < n; i++) {
        int v = q4k__b64_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (int64_t)o;
}

/* bytes -> rank while deriving merges */
typedef struct q4k__rank_map {
    int32_t *slot;
    size_t mask;
    const unsigned char *raw;
    const size_t *off;
} q4k__rank_map;

static int32_t q4k__rank_find(const q4k__rank_map *m, const unsigned char *s, size_t n) {
    size_t i = q4k__hash_bytes(s, n) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        int32_t r = m->slot[i];
        if (r < 0) return -1;
        if (m->off[r + 1] - m->off[r] == n && !memcmp(m->raw + m->off[r], s, n)) return r;
    }
}

Q4K_API q4k_result q4k_vocab_from_tiktoken(const char *path, q4k_vocab_strings *out, q4k_error *err) {
    FILE *f;
    char *text = NULL;
    size_t size = 0, cap = 0, pos, total_raw = 0, *off = NULL, *split = NULL, *bounds = NULL;
    unsigned char *raw = NULL;
    int32_t *pr = NULL;
    int64_t n = 0, i, line_no = 0;
    q4k__rank_map m;
    q4k_result rc = Q4K_OK;

    if (out) memset(out, 0, sizeof *out);
    memset(&m, 0, sizeof m);
    if (!path || !out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_vocab_from_tiktoken: path and out must be given");
    f = fopen(path, "rb");
    if (!f) return q4k__fail(err, Q4K_ERR_IO, "%s: cannot open", path);
    for (;;) {
        size_t got;
        if (cap - size < 65536) {
            char *nt = (char *)Q4K_REALLOC(text, cap ? 2 * cap : 1 << 20);
            if (!nt) {
                fclose(f);
                Q4K_FREE(text);
                return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
            }
            text = nt;
            cap = cap ? 2 * cap : 1 << 20;
        }
        got = fread(text + size, 1, cap - size, f);
        size += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        fclose(f);
        Q4K_FREE(text);
        return q4k__fail(err, Q4K_ERR_IO, "%s: read error", path);
    }
    fclose(f);

    /* pass 1: count tokens and bytes */
    for (pos = 0; pos < size;) {
        size_t e = pos;
        while (e < size && text[e] != '\n') e++;
        if (e > pos) {
            n++;
            total_raw += (e - pos) / 4 * 3 + 3;
        }
        pos = e + 1;
    }
    if (n < 256 || n > INT32_MAX - 1) {
        rc = q4k__fail(err, Q4K_ERR_BAD_MODEL, "%s: %lld tokens (a byte-level BPE vocabulary has 256 to 2^31-2)", path,
                       (long long)n);
        goto done;
    }
    raw = (unsigned char *)Q4K_MALLOC(total_raw);
    off = (size_t *)Q4K_MALLOC((size_t)(n + 1) * sizeof *off);
    split = (size_t *)Q4K_MALLOC((size_t)n * sizeof *split);
    m.mask = q4k__pow2_at_least((size_t)n * 2) - 1;
    m.slot = (int32_t *)Q4K_MALLOC((m.mask + 1) * sizeof *m.slot);
    if (!raw || !off || !split || !m.slot) goto oom;
    memset(m.slot, 0xff, (m.mask + 1) * sizeof *m.slot);
    m.raw = raw;
    m.off = off;

    /* pass 2: decode "BASE64 RANK" lines */
    off[0] = 0;
    i = 0;
    for (pos = 0; pos < size;) {
        size_t e = pos, sp, l;
        int64_t dl, rank = 0;
        line_no++;
        while (e < size && text[e] != '\n') e++;
        l = e;
        if (l > pos && text[l - 1] == '\r') l--;
        if (l == pos) {
            pos = e + 1;
            continue;
        }
        for (sp = pos; sp < l && text[sp] != ' '; sp++) {}
        if (sp == l || sp == pos) {
            rc = q4k__fail(err, Q4K_ERR_BAD_MODEL, "%s:%lld: not 'BASE64 RANK'", path, (long long)line_no);
            goto done;
        }
        dl = q4k__b64_decode(text + pos, sp - pos, raw + off[i]);
        if (dl <= 0) {
            rc = q4k__fail(err, Q4K_ERR_BAD_MODEL, "%s:%lld: bad base64 token", path, (long long)line_no);
            goto done;
        }
        for (sp++; sp < l && text[sp] >= '0' && text[sp] <= '9' && rank <= INT32_MAX; sp++)
            rank = rank * 10 + (text[sp] - '0');
        if (sp != l || rank != i) {
            rc = q4k__fail(err, Q4K_ERR_BAD_MODEL, "%s:%lld: rank must be %lld (ranks 0, 1, 2, ... in order)", path,
                           (long long)line_no, (long long)i);
            goto done;
        }
        off[i + 1] = off[i] + (size_t)dl;
        {
            size_t k = q4k__hash_bytes(raw + off[i], (size_t)dl) & m.mask;
            for (;; k = (k + 1) & m.mask) {
                int32_t r = m.slot[k];
                if (r < 0) {
                    m.slot[k] = (int32_t)i;
                    break;
                }
                if (off[r + 1] - off[r] == (size_t)dl && !memcmp(raw + off[r], raw + off[i], (size_t)dl)) {
                    rc = q4k__fail(err, Q4K_ERR_BAD_MODEL, "%s:%lld: the token of rank %ld again", path,
                                   (long long)line_no, (long)r);
                    goto done;
                }
            }
        }
        i++;
        pos = e + 1;
    }

    /* merges: BPE on each token's bytes with the ranks below its own; when
       that leaves two parts, their merge is the one that makes the token */
    {
        size_t max_len = 0;
        for (i = 0; i < n; i++)
            if (off[i + 1] - off[i] > max_len) max_len = off[i + 1] - off[i];
        bounds = (size_t *)Q4K_MALLOC((max_len + 1) * sizeof *bounds);
        pr = (int32_t *)Q4K_MALLOC((max_len + 1) * sizeof *pr);
        if (!bounds || !pr) goto oom;
    }
    for (i = 0; i < n; i++) {
        const unsigned char *s = raw + off[i];
        size_t l = off[i + 1] - off[i], np = l, k, best;
        split[i] = 0;
        if (l < 2) continue;
        /* parts k = s[bounds[k]..bounds[k+1]); pr[k] = rank of parts k, k+1 joined */
        for (k = 0; k <= l; k++) bounds[k] = k;
        for (k = 0; k + 1 < np; k++) {
            int32_t r = q4k__rank_find(&m, s + bounds[k], 2);
            pr[k] = r >= 0 && r < i ? r : INT32_MAX;
        }
        for (;;) {
            best = 0;
            for (k = 1; k + 1 < np; k++)
                if (pr[k] < pr[best]) best = k;
            if (np < 2 || pr[best] == INT32_MAX) break;
            /* join parts best and best+1 */
            for (k = best + 1; k < np; k++) bounds[k] = bounds[k + 1];
            for (k = best + 1; k + 1 < np; k++) pr[k] = pr[k + 1];
            np--;
            if (best + 1 < np) {
                int32_t r = q4k__rank_find(&m, s + bounds[best], bounds[best + 2] - bounds[best]);
                pr[best] = r >= 0 && r < i ? r : INT32_MAX;
            }
            if (best > 0) {
                int32_t r = q4k__rank_find(&m, s + bounds[best - 1], bounds[best + 1] - bounds[best - 1]);
                pr[best - 1] = r >= 0 && r < i ? r : INT32_MAX;
            }
        }
        if (np == 2) split[i] = bounds[1];
    }
    rc = q4k__vocab_emit(raw, off, n, split, out, err);
    goto done;
oom:
    rc = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
done:
    Q4K_FREE(text);
    Q4K_FREE(raw);
    Q4K_FREE(off);
    Q4K_FREE(split);
    Q4K_FREE(m.slot);
    Q4K_FREE(bounds);
    Q4K_FREE(pr);
    return rc;
}

Q4K_API q4k_result q4k_vocab_synthetic(int64_t n_tokens, q4k_vocab_strings *out, q4k_error *err) {
    unsigned char *raw = NULL;
    size_t *off = NULL, *split = NULL, o = 0;
    int64_t *pref = NULL, n = n_tokens, i, k, np = 0, lvl_begin, lvl_end;
    q4k_result rc;
    if (out) memset(out, 0, sizeof *out);
    if (!out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_vocab_synthetic: out must be given");
    if (n < 256 || n > (int64_t)1 << 24)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "synthetic vocabulary of %lld tokens (256 to 2^24)", (long long)n);
    /* up to 2^24 tokens the words have at most 5 letters and a space */
    raw = (unsigned char *)Q4K_MALLOC((size_t)n * 8);
    off = (size_t *)Q4K_MALLOC((size_t)(n + 1) * sizeof *off);
    split = (size_t *)Q4K_MALLOC((size_t)n * sizeof *split);
    pref = (int64_t *)Q4K_MALLOC((size_t)n * sizeof *pref);
    if (!raw || !off || !split || !pref) {
        rc = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "synthetic vocabulary: out of memory");
        goto done;
    }
    for (i = 0; i < 256; i++) {
        off[i] = o;
        raw[o++] = (unsigned char)i;
        split[i] = 0;
    }
    off[i] = o;
    for (k = 0; k < 26; k++) pref[np++] = 'a' + k;
    for (k = 0; k < 26 && i < n; k++, i++) { /* " a" .. " z" */
        raw[o++] = ' ';
        raw[o++] = (unsigned char)('a' + k);
        split[i] = 1;
        off[i + 1] = o;
        pref[np++] = i;
    }
    /* each level: every word of the level before, followed by each letter */
    lvl_begin = 0;
    lvl_end = np;
    while (i < n) {
        int64_t j;
        for (j = lvl_begin; j < lvl_end && i < n; j++) {
            int64_t p = pref[j];
            size_t pl = off[p + 1] - off[p];
            for (k = 0; k < 26 && i < n; k++, i++) {
                memmove(raw + o, raw + off[p], pl);
                o += pl;
                raw[o++] = (unsigned char)('a' + k);
                split[i] = pl;
                off[i + 1] = o;
                pref[np++] = i;
            }
        }
        lvl_begin = lvl_end;
        lvl_end = np;
    }
    rc = q4k__vocab_emit(raw, off, n, split, out, err);
done:
    Q4K_FREE(raw);
    Q4K_FREE(off);
    Q4K_FREE(split);
    Q4K_FREE(pref);
    return rc;
}

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
