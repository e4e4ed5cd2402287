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
      Q4K_NO_THREADS        no thread pool (every job runs on the caller)
      Q4K_FAULTS            test builds: sessions honour q4k_session_desc.faults
                            and q4k_faults_parse exists (proof that the parity
                            gate fails; never in a release build)

   Errors: every fallible call returns a q4k_result; calls that can fail for
   reasons worth explaining also fill an optional q4k_error with a message
   naming the key, tensor, file offset or value at fault. Nothing in the
   library exits or aborts on bad input.

   Logging: objects take an optional q4k_log_fn; q4k is silent without one.

   Threads: a q4k_gguf may be read from any number of threads at once. A
   q4k_pool runs one job at a time; the CPU kernels use it to split rows.
     model (q4k_model): read-only after load; share it freely between
       threads, backends and sessions.
     backend (q4k_backend): may be shared by threads. Every call that
       reaches it (session create, free, eval, eval_layer, rewind,
       q4k_session_check_memory, q4k_backend_prepared, the op entry points
       of its table, the GPU headers' own calls on a backend) holds a lock
       of the backend for the call: the calls of two threads run one after
       the other, not at once (a device or a thread pool runs one pass at a
       time anyway), and sessions of one model on one backend share one
       preparation of the model (on a GPU, one upload of the weights).
       Destroy it only when no thread uses it any more, after its sessions.
       Sharing needs pthreads: with Q4K_NO_THREADS (or without unix) there
       is no lock, and a backend is used by one thread at a time.
     session (q4k_session): one thread at a time (a thread per session).
   Two threads with a session each, on one shared backend or on a backend
   each, give the tokens and logits that sequential runs give
   (tests/test_model.c checks it; `make tsan` runs the same under
   ThreadSanitizer, also with Vulkan backends).

   Environment: Q4K_CPU=scalar|avx2|avx512 forces a CPU kernel path;
   Q4K_HOST_MEM_LIMIT=BYTES replaces MemAvailable (and cgroup limits) in the memory checks
   (q4k_host_memory_available).
*/
#ifndef Q4K_H
#define Q4K_H

#define Q4K_VERSION_MAJOR 0
#define Q4K_VERSION_MINOR 1
#define Q4K_VERSION_PATCH 0

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef Q4K_API
#if defined(Q4K_STATIC) && defined(__GNUC__)
#define Q4K_API static __attribute__((unused))
#elif defined(Q4K_STATIC)
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
   (Q8_0, Q5_0, Q4_0, Q4_K, Q5_K, Q6_K; F32, F16, BF16 convert). Returns the bytes
   written, 0 when the type has no quantizer or n does not fit its blocks. */
Q4K_API size_t q4k_quantize_row(q4k_type type, const float *src, void *dst, int64_t n);
/* Activation quantization (see q4k_block_q8a); n a multiple of 32. */
Q4K_API void q4k_quantize_act_q8(const float *x, q4k_block_q8a *out, int64_t n);
/* <<formats-api */

/* ------------------------------------------------------------------------ */
/* GGUF                                                                      */
/* ------------------------------------------------------------------------ */

/* >>gguf-api */
/* GGUF v2/v3, little-endian files only (q4k reads the integers of the header
   portably, but hands out tensor data and numeric arrays as stored). Every
   field is validated at open; nothing after a successful open can fail on
   the file's contents. */
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

/* "UINT32", "ARRAY", ...; "unknown" out of range */
Q4K_API const char *q4k_gguf_type_name(q4k_gguf_type t);

typedef struct q4k_gguf q4k_gguf;

typedef struct q4k_gguf_desc {
    q4k_log_fn log; /* optional */
    void *log_user;
    int no_mmap;    /* read the file into memory instead of mapping it */
    int allow_unimplemented; /* accept tensors of known types q4k cannot run
                                (Q3_K, IQ2_XS...): for inspection tools */
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
    int64_t index;      /* position in the file's tensor list, 0-based: a stable key
                           (a backend's device buffers are indexed by it) */
} q4k_tensor;

/* Open and validate a GGUF file (mapped) or a buffer (used in place; it must
   outlive the q4k_gguf). desc may be NULL. On failure *out is NULL and err
   (optional) says what is wrong, where (file offset) and with which value;
   the message starts with the path when there is one, and is one line. */
Q4K_API q4k_result q4k_gguf_open_file(const char *path, const q4k_gguf_desc *desc, q4k_gguf **out, q4k_error *err);
Q4K_API q4k_result q4k_gguf_open_memory(const void *data, size_t size, const q4k_gguf_desc *desc, q4k_gguf **out, q4k_error *err);
Q4K_API void q4k_gguf_close(q4k_gguf *g);

Q4K_API uint32_t q4k_gguf_version(const q4k_gguf *g);
Q4K_API size_t q4k_gguf_alignment(const q4k_gguf *g);
Q4K_API size_t q4k_gguf_file_size(const q4k_gguf *g);
Q4K_API size_t q4k_gguf_data_offset(const q4k_gguf *g);

/* metadata: keys by index (file order), 0 <= i < key_count */
Q4K_API int64_t q4k_gguf_key_count(const q4k_gguf *g);
Q4K_API const char *q4k_gguf_key(const q4k_gguf *g, int64_t i); /* NULL out of range */
Q4K_API q4k_gguf_type q4k_gguf_key_type(const q4k_gguf *g, int64_t i); /* TYPE_COUNT out of range */
/* index of a key, -1 when absent (hash lookup) */
Q4K_API int64_t q4k_gguf_find_key(const q4k_gguf *g, const char *key);

/* Typed getters: Q4K_ERR_NOT_FOUND when the key is absent,
   Q4K_ERR_TYPE_MISMATCH when its type differs. The integer getters accept
   any integer type whose value fits the result (else TYPE_MISMATCH);
   get_f32 and get_f64 accept FLOAT32 and FLOAT64. Strings are not
   NUL-terminated in the file: get_str returns a NUL-terminated copy owned by
   the q4k_gguf (cut at the first NUL byte if the value holds one). */
Q4K_API q4k_result q4k_gguf_get_u32(const q4k_gguf *g, const char *key, uint32_t *out);
Q4K_API q4k_result q4k_gguf_get_i32(const q4k_gguf *g, const char *key, int32_t *out);
Q4K_API q4k_result q4k_gguf_get_u64(const q4k_gguf *g, const char *key, uint64_t *out);
Q4K_API q4k_result q4k_gguf_get_i64(const q4k_gguf *g, const char *key, int64_t *out);
Q4K_API q4k_result q4k_gguf_get_f32(const q4k_gguf *g, const char *key, float *out);
Q4K_API q4k_result q4k_gguf_get_f64(const q4k_gguf *g, const char *key, double *out);
Q4K_API q4k_result q4k_gguf_get_bool(const q4k_gguf *g, const char *key, int *out);
Q4K_API q4k_result q4k_gguf_get_str(const q4k_gguf *g, const char *key, const char **out);
/* Arrays: element type and count (elem_type ARRAY for an array of arrays,
   read those with q4k_gguf_get_value / q4k_gguf_value_elem). For numeric
   and bool arrays, q4k_gguf_get_arr_data gives a pointer to the packed
   little-endian elements (not aligned; TYPE_MISMATCH for string and nested
   arrays). get_arr_str gives element i of a string array in O(1): s points
   into the file, is not NUL-terminated and has len bytes; an index out of
   range gives Q4K_ERR_INVALID_ARG. */
Q4K_API q4k_result q4k_gguf_get_arr(const q4k_gguf *g, const char *key, q4k_gguf_type *elem_type, uint64_t *count);
Q4K_API q4k_result q4k_gguf_get_arr_data(const q4k_gguf *g, const char *key, const void **data);
Q4K_API q4k_result q4k_gguf_get_arr_str(const q4k_gguf *g, const char *key, uint64_t i, const char **s, size_t *len);

/* A view of one value, for generic walks (printing, nested arrays). */
typedef struct q4k_gguf_value {
    q4k_gguf_type type;
    q4k_gguf_type elem_type;  /* ARRAY: type of the elements */
    uint64_t count;           /* ARRAY: elements; STRING: bytes; else 1 */
    const void *data;         /* scalar: its little-endian bytes; STRING: its
                                 bytes (no NUL); ARRAY: the encoded elements */
    uint64_t size;            /* bytes at data */
    uint64_t file_offset;     /* of data */
    const uint64_t *str_index; /* internal: element offsets of a string array */
} q4k_gguf_value;
Q4K_API q4k_result q4k_gguf_get_value(const q4k_gguf *g, const char *key, q4k_gguf_value *out);
Q4K_API q4k_result q4k_gguf_key_value(const q4k_gguf *g, int64_t i, q4k_gguf_value *out);
/* Element i of an array value: O(1) for numeric arrays and top-level string
   arrays, O(i) inside nested arrays. INVALID_ARG when i >= count,
   TYPE_MISMATCH when arr is not an array. */
Q4K_API q4k_result q4k_gguf_value_elem(const q4k_gguf_value *arr, uint64_t i, q4k_gguf_value *out);

/* tensors */
Q4K_API int64_t q4k_gguf_tensor_count(const q4k_gguf *g);
Q4K_API const q4k_tensor *q4k_gguf_tensor(const q4k_gguf *g, int64_t i); /* NULL out of range */
Q4K_API const q4k_tensor *q4k_gguf_find_tensor(const q4k_gguf *g, const char *name); /* NULL when absent */

/* Write a human-readable (json = 0) or JSON (json != 0: one object) dump of
   the metadata and the tensor table. Long arrays show their first elements
   and their count. */
Q4K_API void q4k_gguf_print(const q4k_gguf *g, FILE *f, int json);

/* Writer (GGUF v3). Keys and tensors are written in the order they were
   added; setting a key again replaces its value in place. Tensor data is
   given at add time (kept by pointer until written) or streamed after
   q4k_gguf_writer_begin: then pass data = NULL at add time and call
   write_tensor once per tensor, in order (write_tensor(w, NULL, err) writes
   the data given at add time).
   A failed set/add is remembered: write_file and begin then fail with its
   message, so a caller may check only their result.
   Setting "general.alignment" (UINT32, a power of two) changes the
   alignment; q4k_gguf_writer_new(a) with a != 32 sets that key.
   Any known tensor type may be written (not only the implemented ones). */
typedef struct q4k_gguf_writer q4k_gguf_writer;
/* NULL when out of memory or alignment is not a power of two <= 2^30 */
Q4K_API q4k_gguf_writer *q4k_gguf_writer_new(uint32_t alignment /* 0: 32 */);
/* frees; an unfinished streamed file is closed and removed */
Q4K_API void q4k_gguf_writer_free(q4k_gguf_writer *w);
/* scalar of any type but ARRAY: value points to the C type of `type`
   (uint8_t .. double; BOOL: a uint8_t 0 or 1); STRING: value is the
   NUL-terminated string itself */
Q4K_API q4k_result q4k_gguf_writer_set(q4k_gguf_writer *w, const char *key, q4k_gguf_type type, const void *value);
Q4K_API q4k_result q4k_gguf_writer_set_u32(q4k_gguf_writer *w, const char *key, uint32_t v);
Q4K_API q4k_result q4k_gguf_writer_set_i32(q4k_gguf_writer *w, const char *key, int32_t v);
Q4K_API q4k_result q4k_gguf_writer_set_f32(q4k_gguf_writer *w, const char *key, float v);
Q4K_API q4k_result q4k_gguf_writer_set_bool(q4k_gguf_writer *w, const char *key, int v);
Q4K_API q4k_result q4k_gguf_writer_set_str(q4k_gguf_writer *w, const char *key, const char *v);
/* numeric (or bool: uint8_t 0/1) array of n elements of elem_type, packed */
Q4K_API q4k_result q4k_gguf_writer_set_arr(q4k_gguf_writer *w, const char *key, q4k_gguf_type elem_type, const void *data, uint64_t n);
Q4K_API q4k_result q4k_gguf_writer_set_arr_str(q4k_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Any array, nested ones included: data is the packed elements (numeric,
   bool), const char *const * (STRING) or const q4k_gguf_arr * (ARRAY: each
   element an array of its own type). Nesting depth at most 8. */
typedef struct q4k_gguf_arr {
    q4k_gguf_type elem_type;
    uint64_t count;
    const void *data;
} q4k_gguf_arr;
Q4K_API q4k_result q4k_gguf_writer_set_array(q4k_gguf_writer *w, const char *key, const q4k_gguf_arr *arr);
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
    Q4K_CPU_NEON = 4    /* Arm64 NEON (sdot when compiled for the dot-product extension) */
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
/* Calls of the CPU's kernels so far in this process: q4k_matmul, the CPU
   backend's op entry points and each layer of its forward pass count one.
   Read it around a GPU session's eval to show that nothing ran on the CPU
   (any thread's calls count; relaxed atomics where the compiler has them). */
Q4K_API uint64_t q4k_cpu_kernel_calls(void);
/* <<cpu-api */

/* >>tokenizer-api */
/* Two tokenizers, built from a GGUF vocabulary or from arrays:
   - byte-level BPE (GPT-2 style, tokenizer.ggml.model "gpt2": Qwen2,
     Llama 3): merges by rank after a regex pre-tokenizer;
   - SentencePiece BPE (tokenizer.ggml.model "llama": Llama 2, TinyLlama,
     Mistral): merges by token score, U+2581 "▁" spelling a space, bytes
     without a token of their own written as <0xAB> BYTE tokens.
   A q4k_tokenizer is immutable once created: any number of threads may use
   one at once. Texts are bytes; they need not be valid UTF-8 (with byte
   tokens every byte is covered by some token, so detokenizing gives the
   exact bytes back, plus the space SentencePiece puts in front). */

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
   vocabulary without special tokens; model = "llama" plus tokens and
   scores is a SentencePiece one. */
typedef struct q4k_vocab_desc {
    /* "gpt2" (NULL or "" too): byte-level BPE; "llama" (or "spm"):
       SentencePiece BPE. */
    const char *model;
    int64_t n_tokens;
    /* gpt2: token strings in GPT-2's byte-to-unicode form (" the" is
       spelled U+0120 "the").
       llama: UTF-8 text with U+2581 "▁" for each space ("▁the"); BYTE
       tokens are spelled <0xAB> (two hex digits) and stand for that byte.
       CONTROL and USER_DEFINED tokens are plain text ("<|im_end|>"). */
    const char *const *tokens;
    const size_t *token_lens;    /* NULL: the strings are NUL-terminated */
    const int32_t *token_types;  /* NULL: every token is NORMAL */
    /* llama: one finite score per token (required); of the adjacent pairs
       whose concatenation is a token, the one making the highest-scored
       token merges first. */
    const float *scores;
    /* llama: put a space in front of each piece of text between special
       tokens (SentencePiece's dummy prefix; GGUF's default is on). */
    int add_space_prefix;
    /* gpt2: merges "left right" (both sides in the byte-to-unicode form),
       best (lowest rank) first. llama: none (n_merges must be 0). */
    int64_t n_merges;
    const char *const *merges;
    const size_t *merge_lens;    /* NULL: NUL-terminated */
    /* gpt2: pre-tokenizer (GGUF tokenizer.ggml.pre): a name from
       q4k_pre_tokenizer_name ("qwen2", "llama-bpe", "gpt2", or an alias
       such as "deepseek-r1-qwen"); NULL or "" means "gpt2".
       llama: not used. */
    const char *pre;
    /* Special ids are read only when set_ids is nonzero; -1 means none.
       unk_id is read for llama vocabularies only: the token of a character
       that has no token and no byte tokens. Without set_ids it is the
       first UNKNOWN token. */
    int set_ids;
    int32_t bos_id, eos_id, eot_id, pad_id, unk_id;
    int add_bos; /* Q4K_TOKENIZE_ADD_BOS adds BOS only when this is set */
    q4k_log_fn log; /* optional: warnings about odd vocabularies */
    void *log_user;
} q4k_vocab_desc;

/* Flags of q4k_tokenize */
#define Q4K_TOKENIZE_SPECIAL 1u /* match CONTROL tokens (<|im_start|>) written in the text */
#define Q4K_TOKENIZE_ADD_BOS 2u /* start with BOS when the vocabulary asks for it */

/* Build a tokenizer. Fails with Q4K_ERR_INVALID_ARG (merge naming a missing
   token, id out of range, missing or non-finite score, BYTE token not
   spelled <0xAB>, ...), Q4K_ERR_UNSUPPORTED (unknown model or
   pre-tokenizer) or Q4K_ERR_OUT_OF_MEMORY; err says which entry is at
   fault. A llama vocabulary needs a BYTE token for each of the 256 bytes
   or an unknown token, so that every text can be tokenized. */
Q4K_API q4k_result q4k_tokenizer_create(const q4k_vocab_desc *d, q4k_tokenizer **out, q4k_error *err);
/* Build a tokenizer from the tokenizer.ggml.* keys of a GGUF file:
   model "gpt2" (tokens, merges, pre, token_type) or "llama" (tokens,
   scores, token_type; add_bos_token defaults to true, add_space_prefix to
   true, unknown_token_id to the first UNKNOWN token). The q4k_gguf may be
   closed afterwards. */
Q4K_API q4k_result q4k_tokenizer_from_gguf(const q4k_gguf *g, q4k_tokenizer **out, q4k_error *err);
/* The same with the pre-tokenizer named by `pre` instead of the file's
   tokenizer.ggml.pre (NULL: the file's); byte-level BPE files only. */
Q4K_API q4k_result q4k_tokenizer_from_gguf_pre(const q4k_gguf *g, const char *pre, q4k_tokenizer **out, q4k_error *err);
/* The i-th tokenizer.ggml.pre name q4k accepts (NULL past the last one) and
   the pattern it stands for in *family (optional): "qwen2", "llama-bpe" or
   "gpt2". The names are those GGUF converters write for these patterns
   ("deepseek-r1-qwen" is Qwen2's, "llama3" and "smaug-bpe" Llama 3's,
   "gpt-2" and "phi-2" GPT-2's, ...). */
Q4K_API const char *q4k_pre_tokenizer_name(int64_t i, const char **family);
Q4K_API void q4k_tokenizer_free(q4k_tokenizer *tok);

/* Tokenize len bytes of text: USER_DEFINED tokens (and CONTROL tokens with
   Q4K_TOKENIZE_SPECIAL) are matched first, longest first.
   gpt2: the text between them is split by the pre-tokenizer's pattern and
   each piece merged by BPE. A byte that is not part of valid UTF-8 counts
   as one character that is no letter, number or space.
   llama (as llama.cpp does it): with add_space_prefix every piece of text
   between special tokens (so the first one, and each one after a special
   token) gets a space in front; spaces (and "▁" in the text) become "▁";
   each piece starts as one symbol per UTF-8 character (a byte that is not
   part of valid UTF-8 is a symbol of its own) and the adjacent pair whose
   concatenation is the highest-scored NORMAL or USER_DEFINED token merges
   (the leftmost of equals) until none does; a symbol left that is no token
   becomes its bytes' BYTE tokens, or the unknown token when a byte has
   none. Writes up to cap ids to out and the number of
   ids of the whole text to *n_out. When cap is too small it writes the first
   cap ids, sets *n_out to the count needed and returns Q4K_ERR_OVERFLOW;
   out = NULL with cap = 0 only counts (Q4K_OK). Texts longer than 2^31 - 1
   bytes give Q4K_ERR_INVALID_ARG. err is optional. */
Q4K_API q4k_result q4k_tokenize(const q4k_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                int32_t *out, int64_t cap, int64_t *n_out, q4k_error *err);

/* The bytes a token stands for in generated text; "" (length 0) for CONTROL,
   UNUSED and UNKNOWN tokens, so <|im_end|> is never printed by accident.
   SentencePiece tokens give their text with "▁" as " " ("▁the" gives
   " the"), BYTE tokens <0xAB> their one byte.
   NUL-terminated, but may hold NUL bytes: use *len (optional). NULL for an id
   out of range. Valid until q4k_tokenizer_free. */
Q4K_API const char *q4k_token_bytes(const q4k_tokenizer *tok, int32_t id, size_t *len);
/* The same, with the text of CONTROL and UNUSED tokens too ("<|im_end|>");
   byte tokens give their byte here too. */
Q4K_API const char *q4k_token_text(const q4k_tokenizer *tok, int32_t id, size_t *len);

Q4K_API int64_t q4k_tokenizer_n_vocab(const q4k_tokenizer *tok);
Q4K_API int32_t q4k_tokenizer_bos(const q4k_tokenizer *tok); /* -1: none */
Q4K_API int32_t q4k_tokenizer_eos(const q4k_tokenizer *tok);
Q4K_API int32_t q4k_tokenizer_eot(const q4k_tokenizer *tok);
Q4K_API int32_t q4k_tokenizer_pad(const q4k_tokenizer *tok);
Q4K_API int q4k_tokenizer_add_bos(const q4k_tokenizer *tok);
/* The pattern of a byte-level BPE vocabulary's pre-tokenizer: "qwen2",
   "llama-bpe" or "gpt2" (whichever name chose it); "spm" for a
   SentencePiece (tokenizer.ggml.model "llama") vocabulary. */
Q4K_API const char *q4k_tokenizer_pre(const q4k_tokenizer *tok);
/* The unknown token of a SentencePiece vocabulary; -1: none (and always -1
   for byte-level BPE, which needs none). */
Q4K_API int32_t q4k_tokenizer_unk(const q4k_tokenizer *tok);
/* Length of the longest token, in bytes. */
Q4K_API size_t q4k_tokenizer_max_token_len(const q4k_tokenizer *tok);
/* Id of the token whose text is exactly `text` (NUL-terminated, plain bytes:
   "<|im_start|>", " the"; SentencePiece's "▁the" is found as " the"), -1
   when none; ordinary tokens win over special ones of the same text (and,
   in SentencePiece vocabularies, over BYTE tokens). */
Q4K_API int32_t q4k_tokenizer_find(const q4k_tokenizer *tok, const char *text);
/* Type of a token; Q4K_TOKEN_UNDEFINED for ids out of range. */
Q4K_API q4k_token_type q4k_tokenizer_token_type(const q4k_tokenizer *tok, int32_t id);
Q4K_API int q4k_tokenizer_is_control(const q4k_tokenizer *tok, int32_t id);
/* End of generation: EOS, EOT, EOM (tokenizer.ggml.eom_token_id), or a
   CONTROL or USER_DEFINED token spelled <|im_end|>, <|endoftext|>,
   <|eot_id|>, <|eom_id|>, <|end_of_text|> or <｜end▁of▁sentence｜>. */
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
/* ------------------------------------------------------------------------ */
/* models, backends, sessions                                                */
/* ------------------------------------------------------------------------ */

typedef enum q4k_arch { Q4K_ARCH_QWEN2 = 0, Q4K_ARCH_LLAMA = 1 } q4k_arch;

typedef struct q4k_hparams {
    q4k_arch arch;
    int64_t n_layer;
    int64_t n_embd;
    int64_t n_ff;
    int64_t n_head;
    int64_t n_head_kv;
    int64_t head_dim;
    int64_t n_rot;       /* rotated dims of each head (<= head_dim, even) */
    int64_t n_vocab;
    int64_t n_ctx_train;
    float rope_freq_base;
    float norm_eps;
    int rope_neox;       /* 1: pairs (i, i + n_rot/2) (qwen2); 0: (2i, 2i+1) (llama) */
    int tied_embeddings; /* output.weight absent: logits use token_embd */
} q4k_hparams;

/* Weights of one layer; shapes are GGUF ne = [cols, rows]. */
typedef struct q4k_layer {
    const q4k_tensor *attn_norm; /* [n_embd] F32 */
    const q4k_tensor *wq;        /* [n_embd, n_head*head_dim] */
    const q4k_tensor *wk;        /* [n_embd, n_head_kv*head_dim] */
    const q4k_tensor *wv;        /* [n_embd, n_head_kv*head_dim] */
    const q4k_tensor *bq, *bk, *bv; /* qwen2: F32 biases of the three; llama: NULL */
    const q4k_tensor *wo;        /* [n_head*head_dim, n_embd] */
    const q4k_tensor *ffn_norm;  /* [n_embd] F32 */
    const q4k_tensor *w_gate;    /* [n_embd, n_ff] */
    const q4k_tensor *w_up;      /* [n_embd, n_ff] */
    const q4k_tensor *w_down;    /* [n_ff, n_embd] */
} q4k_layer;

typedef struct q4k_model {
    q4k_hparams hp;
    q4k_gguf *gguf;               /* the weights live in its mapping */
    const q4k_tensor *tok_embd;   /* [n_embd, n_vocab] */
    const q4k_tensor *output_norm;/* [n_embd] F32 */
    const q4k_tensor *output;     /* [n_embd, n_vocab]; == tok_embd when tied */
    const q4k_tensor *rope_freqs; /* [n_rot/2] F32 frequency factors (Llama 3.1) or NULL */
    q4k_layer *layers;            /* n_layer */
    int owns_gguf;
    q4k_log_fn log;
    void *log_user;
} q4k_model;

typedef void (*q4k_progress_fn)(float fraction, void *user);

/* Element type of the KV cache. */
typedef enum q4k_kv_type {
    Q4K_KV_F16 = 0, /* default: keys and values rounded to IEEE half (nearest even) */
    Q4K_KV_F32 = 1  /* exact: with Q4K_ACT_F32 the float reference */
} q4k_kv_type;
Q4K_API const char *q4k_kv_type_name(q4k_kv_type t);

/* Sane maxima, checked before anything is sized from them: a context (token
   positions are int32 on the GPUs, and a session holds n_ctx attention
   scores per thread) and a vocabulary (token ids are int32_t; the largest
   real vocabularies have about 2^18 tokens). */
#ifndef Q4K_MAX_CTX
#define Q4K_MAX_CTX ((int64_t)1 << 24)
#endif
#ifndef Q4K_MAX_VOCAB
#define Q4K_MAX_VOCAB ((int64_t)1 << 24)
#endif

typedef struct q4k_model_desc {
    q4k_log_fn log;
    void *log_user;
    q4k_progress_fn progress; /* called while the weights are touched (mmap) */
    void *progress_user;
    int no_mmap;
    /* The context the caller will open a host-memory (CPU) session with:
       when not 0, the load checks that its KV cache (of type kv) and scratch
       fit in the host's available memory (q4k_host_memory_available) before
       it reads any weight, and refuses it with Q4K_ERR_OUT_OF_MEMORY (bytes
       needed and available, and the largest context that fits) or
       Q4K_ERR_INVALID_ARG (above Q4K_MAX_CTX). < 0: the session default,
       min(training context, 4096). */
    int64_t n_ctx;
    q4k_kv_type kv;
} q4k_model_desc;

/* Load a qwen2 or llama model: every hyperparameter and tensor (presence,
   shape, type) is validated, and anything that would change the math and is
   not implemented (rope scaling, sliding window, unknown tensors) is
   refused. desc may be NULL. */
Q4K_API q4k_result q4k_model_load(const char *path, const q4k_model_desc *desc, q4k_model **out, q4k_error *err);
/* Same over an open q4k_gguf; the model does not take ownership. */
Q4K_API q4k_result q4k_model_from_gguf(q4k_gguf *g, const q4k_model_desc *desc, q4k_model **out, q4k_error *err);
Q4K_API void q4k_model_free(q4k_model *m);
Q4K_API const char *q4k_arch_name(q4k_arch a);
/* number of weights, and bytes of tensor data */
Q4K_API int64_t q4k_model_n_params(const q4k_model *m);
Q4K_API uint64_t q4k_model_weight_bytes(const q4k_model *m);

/* The operations of one layer, in order, for the trace. */
#define Q4K_OP_LIST(X)                 \
    X(Q4K_OP_ATTN_NORM, "attn_norm")   \
    X(Q4K_OP_Q, "q")                   \
    X(Q4K_OP_K, "k")                   \
    X(Q4K_OP_V, "v")                   \
    X(Q4K_OP_Q_ROPE, "q_rope")         \
    X(Q4K_OP_K_ROPE, "k_rope")         \
    X(Q4K_OP_ATTN, "attn")             \
    X(Q4K_OP_ATTN_OUT, "attn_out")     \
    X(Q4K_OP_RESID_ATTN, "resid_attn") \
    X(Q4K_OP_FFN_NORM, "ffn_norm")     \
    X(Q4K_OP_GATE, "gate")             \
    X(Q4K_OP_UP, "up")                 \
    X(Q4K_OP_ACT, "silu_gate_x_up")    \
    X(Q4K_OP_DOWN, "down")             \
    X(Q4K_OP_RESID_FFN, "resid_ffn")

typedef enum q4k_op {
#define Q4K__OP_ENUM(name, text) name,
    Q4K_OP_LIST(Q4K__OP_ENUM)
#undef Q4K__OP_ENUM
    Q4K_OP_COUNT
} q4k_op;
Q4K_API const char *q4k_op_name(q4k_op op);

/* The stages outside the layers, for the trace and the faults. */
#define Q4K_STAGE_LIST(X)                      \
    X(Q4K_STAGE_EMBEDDING, "embedding")        \
    X(Q4K_STAGE_OUTPUT_NORM, "output_norm")    \
    X(Q4K_STAGE_LM_HEAD, "lm_head")

typedef enum q4k_stage {
#define Q4K__STAGE_ENUM(name, text) name,
    Q4K_STAGE_LIST(Q4K__STAGE_ENUM)
#undef Q4K__STAGE_ENUM
    Q4K_STAGE_COUNT
} q4k_stage;
Q4K_API const char *q4k_stage_name(q4k_stage st);

typedef struct q4k_session q4k_session;
typedef struct q4k_backend q4k_backend;

/* Trace flags of q4k_session_desc (of the last token of each eval). */
#define Q4K_TRACE_LAYERS 1u /* residual after every layer, and the stages */
#define Q4K_TRACE_OPS 2u    /* every op (Q4K_OP_LIST) of trace_layer */
#define Q4K_TRACE_ALL_OPS 4u /* every op of every layer (the gate's) */

/* Faults: deliberate errors that prove the parity gate fails. The session
   descriptor carries them and every backend honours them, but only a build
   with -DQ4K_FAULTS does: elsewhere a session with a fault set is refused.
   A fault is applied to the session it is given to, never to another. */
#define Q4K_FAULT_LIST(X)                                                     \
    X(Q4K_FAULT_GQA, "gqa")               /* query head h reads KV head h % n_head_kv */ \
    X(Q4K_FAULT_BIAS, "bias")             /* Q/K/V biases dropped */          \
    X(Q4K_FAULT_KV_STEP2, "kv_step2")     /* from the 2nd one-token eval on, K and V halved in the cache */ \
    X(Q4K_FAULT_Q4K_SCALES, "q4k_scales") /* Q4_K: 6-bit scale and min swapped */ \
    X(Q4K_FAULT_F16_ACC, "f16_acc")       /* RMSNorm's sum of squares in an fp16 accumulator */ \
    X(Q4K_FAULT_SPLIT, "split")           /* lm_head rows from split_rows on zeroed */

typedef enum q4k_fault {
#define Q4K__FAULT_ENUM(name, text) name,
    Q4K_FAULT_LIST(Q4K__FAULT_ENUM)
#undef Q4K__FAULT_ENUM
    Q4K_FAULT_COUNT
} q4k_fault;

typedef struct q4k_faults {
    unsigned mask;         /* bits 1u << Q4K_FAULT_* */
    /* relative Gaussian noise y *= 1 + perturb_eps * N(0,1) on one op's
       output (0: none): perturb_layer < 0 means every layer; perturb_op is a
       q4k_op, or Q4K_OP_COUNT + a q4k_stage, or < 0 for every matrix product */
    float perturb_eps;
    int64_t perturb_layer;
    int perturb_op;
    uint64_t seed;
    int64_t split_rows;    /* split: first zeroed row of lm_head (0: n_vocab / 2) */
} q4k_faults;

typedef struct q4k_session_desc {
    int64_t n_ctx;      /* 0: min(model's training context, 4096) */
    q4k_act_mode act;   /* Q4K_ACT_Q8 (default) or Q4K_ACT_F32 (float activations) */
    q4k_kv_type kv;     /* Q4K_KV_F16 (default) or Q4K_KV_F32 */
    unsigned trace;     /* Q4K_TRACE_* (0: no trace) */
    int64_t trace_layer;/* the layer of Q4K_TRACE_OPS (q4k_session_set_trace_layer changes it) */
    q4k_faults faults;  /* zero: none (see Q4K_FAULT_LIST) */
} q4k_session_desc;

/* Flags of q4k_session_eval. */
#define Q4K_EVAL_ALL_LOGITS 1u /* logits of every token (n x n_vocab), not only the last */

/* A model as a backend holds it (weights uploaded once): one per model and
   backend, shared by every session of the model on that backend. */
typedef struct q4k_prepared {
    const q4k_model *model;
    void *data;    /* the backend's */
    int64_t refs;  /* sessions using it */
} q4k_prepared;
#define Q4K_MAX_PREPARED 8 /* models prepared on one backend at a time */

/* A backend is a table of functions; the CPU backend is the reference the
   GPU backends are checked against. A backend fills everything but the
   bookkeeping (prepared, n_prepare, lock); its create calls
   q4k__backend_lock_init last, so that threads may share it. */
struct q4k_backend {
    const char *name;
    void *impl;
    /* Receive a model once (upload its weights): q4k_session_create calls
       it for the first session of a model and release_model after the last
       one is freed; *data is the backend's (q4k_backend_prepared finds it). */
    q4k_result (*prepare_model)(q4k_backend *b, const q4k_model *m, void **data, q4k_error *err);
    void (*release_model)(q4k_backend *b, const q4k_model *m, void *data);
    q4k_result (*session_create)(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d,
                                 q4k_session **out, q4k_error *err);
    /* op level, for kernel tests and `q4k qa`; each computes what the
       backend's forward pass computes (the CPU calls the same functions) */
    q4k_result (*matmul)(q4k_backend *b, q4k_act_mode act, q4k_type type, const void *w, int64_t rows,
                         int64_t cols, const float *x, int64_t n, float *y, q4k_error *err);
    /* out[n_embd] = row `token` of a [n_embd, n_vocab] table of `type` */
    q4k_result (*embedding)(q4k_backend *b, q4k_type type, const void *table, int64_t n_embd, int32_t token,
                            float *out, q4k_error *err);
    /* y[r] = rmsnorm(x[r]) * w for rows r < rows of n values */
    q4k_result (*rmsnorm)(q4k_backend *b, const float *x, const float *w, int64_t n, int64_t rows, float eps,
                          float *y, q4k_error *err);
    /* rotate in place: x [n_tok][n_head * head_dim], token j at position pos0 + j;
       freq_factors [n_rot/2] or NULL (q4k_rope_cos_sin) */
    q4k_result (*rope)(q4k_backend *b, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim, int64_t n_rot,
                       int neox, int64_t pos0, double base, const float *freq_factors, q4k_error *err);
    /* causal attention of one token at position n_pos - 1: q [n_head*head_dim],
       k, v [n_pos][n_head_kv*head_dim] (stored in the cache type kv first),
       out [n_head*head_dim]; query head h reads KV head h / (n_head/n_head_kv) */
    q4k_result (*attention)(q4k_backend *b, q4k_kv_type kv, const float *q, const float *k, const float *v,
                            int64_t n_pos, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float *out,
                            q4k_error *err);
    /* the 8-bit activation quantizer (q4k_quantize_act_q8); n a multiple of 32 */
    q4k_result (*quantize_act)(q4k_backend *b, const float *x, int64_t n, q4k_block_q8a *out, q4k_error *err);
    /* Optional: the device memory free now and in all, in bytes, so that
       q4k_session_create can refuse a KV cache (and weights not yet
       uploaded) that cannot fit, before prepare_model. NULL: the backend
       keeps its sessions in host memory (the CPU), checked against
       q4k_host_memory_available. The GPU backends fill it in their own
       headers. */
    q4k_result (*mem_info)(q4k_backend *b, uint64_t *free_bytes, uint64_t *total_bytes, q4k_error *err);
    void (*destroy)(q4k_backend *b);
    /* bookkeeping of the common code */
    q4k_prepared prepared[Q4K_MAX_PREPARED];
    int64_t n_prepare; /* prepare_model calls so far */
    /* what threads sharing the backend hold for each call
       (q4k__backend_lock_init); NULL: the backend runs unlocked */
    struct q4k__backend_lock *lock;
};

/* Everything a session holds that is common to the backends. */
struct q4k_session {
    q4k_backend *backend;
    const q4k_model *model;
    void *prepared; /* the backend's data for this model (prepare_model) */
    q4k_session_desc desc;
    int64_t n_ctx;
    int64_t pos;   /* tokens in the KV cache */
    int64_t n_evals; /* calls of eval so far (faults that start late count them) */
    float *trace_layers; /* n_layer x n_embd with Q4K_TRACE_LAYERS */
    float *trace_layers_attn; /* the same after each layer's attention block */
    float *trace_stages[Q4K_STAGE_COUNT];
    int64_t trace_stage_len[Q4K_STAGE_COUNT];
    int trace_stage_set[Q4K_STAGE_COUNT]; /* written by the last eval */
    float *trace_ops[Q4K_OP_COUNT];
    int64_t trace_op_len[Q4K_OP_COUNT];
    q4k_result (*eval)(q4k_session *s, const int32_t *tokens, int64_t n, unsigned flags, float *logits,
                       q4k_error *err);
    /* optional (the reference backend has it): recompute `layer` for the
       token at position pos - 1 from x_in [n_embd], into x_out (and the
       residual after its attention block into x_attn); the cache is left as
       it was; with Q4K_TRACE_OPS on this layer its ops are traced */
    q4k_result (*eval_layer)(q4k_session *s, int64_t layer, const float *x_in, float *x_attn, float *x_out,
                             q4k_error *err);
    void (*destroy)(q4k_session *s);
};

typedef struct q4k_cpu_backend_desc {
    int n_threads;      /* 0: all cores */
    q4k_cpu_path path;  /* Q4K_CPU_AUTO: best, or Q4K_CPU */
} q4k_cpu_backend_desc;

Q4K_API q4k_result q4k_cpu_backend_create(const q4k_cpu_backend_desc *d, q4k_backend **out, q4k_error *err);
Q4K_API void q4k_backend_destroy(q4k_backend *b);

Q4K_API q4k_result q4k_session_create(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d,
                                      q4k_session **out, q4k_error *err);
Q4K_API void q4k_session_free(q4k_session *s);
/* Evaluate n tokens at the session's position; logits gets n_vocab floats
   (of the last token) or n x n_vocab with Q4K_EVAL_ALL_LOGITS (may be NULL).
   Q4K_ERR_CONTEXT_FULL when pos + n > n_ctx (nothing is evaluated).
   Q4K_ERR_BAD_MODEL when a logit is NaN or infinite (the tokens were
   evaluated and the position has advanced; the logits are not to be used). */
Q4K_API q4k_result q4k_session_eval(q4k_session *s, const int32_t *tokens, int64_t n, unsigned flags,
                                    float *logits, q4k_error *err);
/* Forget tokens from position pos on (0 resets); multi-turn chat keeps the prefix. */
Q4K_API q4k_result q4k_session_rewind(q4k_session *s, int64_t pos);
Q4K_API int64_t q4k_session_pos(const q4k_session *s);
/* After an eval with trace on: residual stream after `layer` (n_embd floats),
   and the output of `op` in the traced layer (length in *len). */
Q4K_API const float *q4k_session_trace_layer(const q4k_session *s, int64_t layer);
Q4K_API const float *q4k_session_trace_op(const q4k_session *s, q4k_op op, int64_t *len);
/* A stage (embedding, output_norm, lm_head) of the last eval with
   Q4K_TRACE_LAYERS; NULL when that eval did not compute it (no logits). */
Q4K_API const float *q4k_session_trace_stage(const q4k_session *s, q4k_stage st, int64_t *len);
/* The output of `op` in `layer` (Q4K_TRACE_ALL_OPS, or the traced layer). */
Q4K_API const float *q4k_session_trace_op_layer(const q4k_session *s, int64_t layer, q4k_op op, int64_t *len);
/* The layer whose ops the next evals trace (needs Q4K_TRACE_OPS). */
Q4K_API q4k_result q4k_session_set_trace_layer(q4k_session *s, int64_t layer);
/* The residual after the attention block of `layer` (Q4K_TRACE_LAYERS). */
Q4K_API const float *q4k_session_trace_layer_attn(const q4k_session *s, int64_t layer);
/* Recompute one layer for the token at position pos - 1 from the residual
   x_in (n_embd) into x_out (and x_attn, after the attention block; may be
   NULL), leaving the KV cache as it was (the gate's teacher-forced check);
   Q4K_ERR_UNSUPPORTED when the backend lacks it. */
Q4K_API q4k_result q4k_session_eval_layer(q4k_session *s, int64_t layer, const float *x_in, float *x_attn,
                                          float *x_out, q4k_error *err);
/* The backend's data for a model it has prepared (NULL when none). */
Q4K_API void *q4k_backend_prepared(const q4k_backend *b, const q4k_model *m);

/* Memory a CPU session needs for n_ctx (KV cache in f16 plus scratch), and
   the weight bytes, before anything is allocated. */
Q4K_API uint64_t q4k_session_memory_estimate(const q4k_model *m, int64_t n_ctx, int64_t n_batch);

/* Host memory q4k may still allocate, in bytes: $Q4K_HOST_MEM_LIMIT when
   set (a byte count with an optional K, M, G or T suffix, powers of 1024;
   tests force small limits with it), else MemAvailable of /proc/meminfo,
   else sysconf's available pages; UINT64_MAX when none can be read. On
   Linux the memory cgroup of the process (v1 or v2, every level up to the
   hierarchy's mount) lowers it: a limit less the usage, the inactive page
   cache counted as free, as the kernel reclaims it before it kills (a
   container's limit is what the OOM killer enforces, not MemAvailable).
   *source (may be NULL) names where the number came from. */
Q4K_API uint64_t q4k_host_memory_available(const char **source);

/* Whether a session of d (n_ctx, kv; d may be NULL: the defaults) on
   backend b fits, before anything is allocated or uploaded: n_ctx at most
   Q4K_MAX_CTX (else Q4K_ERR_INVALID_ARG); with b->mem_info, its KV cache,
   scratch and the model's weights (unless b has prepared the model already)
   within the device's free memory; else its KV cache and scratch within
   q4k_host_memory_available (the weights are mapped from the file, not
   allocated). Q4K_ERR_OUT_OF_MEMORY names the bytes needed and available
   and the largest context that fits. q4k_session_create calls it. Each
   session is checked alone, against what is free when it is created; the
   estimate is a lower bound (a backend's own buffers come on top). */
Q4K_API q4k_result q4k_session_check_memory(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d,
                                            q4k_error *err);

/* The RoPE angle every backend uses: theta = pos * base^(-2i/n_rot) / factor,
   formed in double; cos and sin rounded to float. */
Q4K_API void q4k_rope_cos_sin(int64_t pos, int64_t i, int64_t n_rot, double base, double factor,
                              float *c, float *s);

/* Internal, for the implementation sections of q4k_cuda.h and q4k_vulkan.h
   (which may sit in another translation unit): not part of the API, may
   change without notice. */
/* fill err (optional) with code and a printf-style message; returns code */
Q4K_API q4k_result q4k__fail(q4k_error *err, q4k_result code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* call fn (may be NULL: silent) with a printf-style message */
Q4K_API void q4k__log(q4k_log_fn fn, void *user, q4k_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Threads: make b shareable, last in a backend's create (its table
   filled): b->lock is a mutex, and the table's op entry points (matmul,
   embedding, rmsnorm, rope, attention, quantize_act) become ones that hold
   it for the call; q4k_backend_destroy frees it. A no-op without pthreads,
   or in a test build with -DQ4K_TEST_NO_BACKEND_LOCK (the proof that the
   lock is what keeps ThreadSanitizer quiet; never in ./q4k). The lock does
   not nest: the backend's own functions run under it (session_create,
   prepare/release_model, mem_info, a session's eval and destroy) and must
   not call the locking calls on b: q4k__backend_find_prepared, not
   q4k_backend_prepared. */
Q4K_API q4k_result q4k__backend_lock_init(q4k_backend *b, q4k_error *err);
/* hold and release b's lock (nothing for a backend without one), around a
   backend header's own public calls on b (q4k_vk_quantize_act, ...) */
Q4K_API void q4k__backend_lock(const q4k_backend *b);
Q4K_API void q4k__backend_unlock(const q4k_backend *b);
/* q4k_backend_prepared for code that holds the lock */
Q4K_API void *q4k__backend_find_prepared(const q4k_backend *b, const q4k_model *m);
/* A compiler's log (NVRTC, glslang) as one line for a q4k_error, since a
   CLI prints err.msg as one line: counts the log's lines that hold mark
   (NULL: every non-empty line) once prefix (may be NULL) is dropped from
   their start, leaving out those that hold skip (a summary line, may be
   NULL); *first and *len are the first counted line (NULL, 0 if none). */
Q4K_API int q4k__log_first_line(const char *log, const char *prefix, const char *mark, const char *skip,
                                const char **first, int *len);
/* the common fields of a new session (desc already defaulted by q4k_session_create) */
Q4K_API void q4k__session_init(q4k_session *s, q4k_backend *b, const q4k_model *m, const q4k_session_desc *d);
/* allocate the trace buffers the session's desc asks for */
Q4K_API q4k_result q4k__session_alloc_trace(q4k_session *s, q4k_error *err);
/* q4k_host_memory_available's cgroup part with every path under root
   ("" for the real system; tests give a directory that imitates /proc and
   /sys): what the process's memory cgroups still allow, UINT64_MAX when no
   level has a limit; *source (may be NULL) names the file of the binding
   limit: "memory.max" (v2) or "memory.limit_in_bytes" (v1). */
Q4K_API uint64_t q4k__cgroup_memory_available(const char *root, const char **source);
/* free them (a session_create that fails after allocating them) */
Q4K_API void q4k__session_free_trace(q4k_session *s);
/* copy the last token's row of an op / stage into the trace when traced */
Q4K_API void q4k__trace_op(q4k_session *s, int64_t layer, q4k_op op, const float *row);
Q4K_API void q4k__trace_stage(q4k_session *s, q4k_stage st, const float *row);

/* ------------------------------------------------------------------------ */
/* sampling and chat templates                                               */
/* ------------------------------------------------------------------------ */

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05, no
   repetition penalty. The repetition penalty comes first (as llama.cpp
   documents it: the logit of every token among the last repeat_last_n
   accepted ones is divided by repeat_penalty when positive, multiplied by it
   when negative), then the filters in that order, then the temperature,
   then a draw. temp <= 0 is greedy (argmax, lowest id on ties). */
typedef struct q4k_sampler_params {
    float temp;
    int32_t top_k;  /* <= 0: off */
    float top_p;    /* >= 1: off */
    float min_p;    /* <= 0: off */
    uint64_t seed;
    float repeat_penalty;  /* 1 or <= 0: off */
    int32_t repeat_last_n; /* tokens of q4k_sampler_accept remembered (default 64; <= 0: off) */
} q4k_sampler_params;

typedef struct q4k_sampler q4k_sampler;
Q4K_API q4k_sampler_params q4k_sampler_defaults(void);
Q4K_API q4k_sampler *q4k_sampler_create(const q4k_sampler_params *p, int64_t n_vocab);
Q4K_API void q4k_sampler_free(q4k_sampler *s);
Q4K_API int32_t q4k_sampler_sample(q4k_sampler *s, const float *logits);
/* Remember a token for the repetition penalty: the prompt's and each one
   generated (q4k_generate accepts both). */
Q4K_API void q4k_sampler_accept(q4k_sampler *s, int32_t id);
/* index of the largest value (lowest index on ties) */
Q4K_API int64_t q4k_argmax(const float *x, int64_t n);

typedef enum q4k_chat_template {
    Q4K_CHAT_NONE = 0,   /* no template known: prompts are sent raw */
    Q4K_CHAT_CHATML = 1, /* qwen2: <|im_start|>role\n...<|im_end|>\n */
    Q4K_CHAT_LLAMA3 = 2, /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    /* Llama 2 chat, as Meta's reference code builds it:
       <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s><s>[INST] {user} [/INST]
       A system message goes into the next user message (alone, when none
       follows); without one there is no <<SYS>> block. Each user turn
       starts with BOS written as the text <s>: tokenize with
       Q4K_TOKENIZE_SPECIAL and without Q4K_TOKENIZE_ADD_BOS, or BOS comes
       twice. The prompt of an answer ends with [/INST]. */
    Q4K_CHAT_LLAMA2 = 3,
    /* DeepSeek-R1 (and its Qwen and Llama distillations):
       {system}<｜User｜>{user}<｜Assistant｜>{answer}<｜end▁of▁sentence｜>...
       and the prompt of an answer ends with <｜Assistant｜><think>\n. BOS is
       not written: tokenize with Q4K_TOKENIZE_ADD_BOS. */
    Q4K_CHAT_DEEPSEEK = 4
} q4k_chat_template;

typedef struct q4k_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} q4k_chat_msg;

/* Qwen2.5's default system prompt, used by ChatML when none is given. */
#define Q4K_QWEN_DEFAULT_SYSTEM "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

/* Render messages; with add_assistant, end with the opening of the
   assistant's turn. Returns a malloc'd (Q4K_MALLOC) NUL-terminated string
   the caller frees with q4k_free(). NULL when out of memory. */
Q4K_API char *q4k_chat_format(q4k_chat_template t, const q4k_chat_msg *msgs, int64_t n, int add_assistant);
Q4K_API void q4k_free(void *p);
/* Internal, for q4k_cuda.h and q4k_vulkan.h: the kernel sources that
   `make embed` copies into them are arrays of lines ending with a null
   pointer; this joins such an array into one string (free it with
   q4k_free). NULL when out of memory; *len (optional) gets its length. */
Q4K_API char *q4k__join_lines(const char *const *lines, size_t *len);

/* The chat template a GGUF file carries (tokenizer.chat_template) is a
   Jinja program. q4k_chat_render runs the subset of Jinja that published
   chat templates use and gives the bytes transformers' apply_chat_template
   gives (jinja2 with trim_blocks and lstrip_blocks):
     {% if / elif / else / for (else, "if" filter, two loop variables) /
     set (also ns.attr) / break / continue / generation %}, {{ }}, {# #},
     whitespace control {%- -%} {{- -}} and {%+ +%};
     literals (strings with Python escapes, numbers, true/false/none,
     [lists], {dicts}); + - * / // % ** ~, comparisons, and/or/not, in /
     not in, x if c else y, indexing and slicing (negative too);
     loop.index/index0/revindex/revindex0/first/last/length/previtem/nextitem;
     tests defined/undefined/none/string/number/integer/float/boolean/true/
     false/mapping/iterable/sequence/callable/lower/upper/equalto/eq/ne/
     sameas/in/odd/even/divisibleby;
     filters trim/length/count/tojson/items/list/first/last/reverse/join/
     default/string/int/abs/safe/upper/lower/capitalize/title/replace;
     string methods strip/lstrip/rstrip/split/startswith/endswith/replace/
     upper/lower/capitalize/title/find/join, dict methods get/items/keys/
     values;
     globals messages (role, content), bos_token, eos_token,
     add_generation_prompt, raise_exception, strftime_now, namespace,
     range, dict.
   Anything else (macros, other filters, ...) fails with
   Q4K_ERR_UNSUPPORTED and a message naming it and its line, as do syntax
   errors and runaway templates (more than 5 million steps, 64 MiB of
   working memory, max_output bytes of output, nesting deeper than 96);
   raise_exception(msg) fails with Q4K_ERR_INVALID_ARG and the message. */
typedef struct q4k_chat_render_desc {
    const char *bos_token; /* the text bos_token stands for (NULL: "") */
    const char *eos_token;
    int add_generation_prompt;
    int64_t now;       /* strftime_now's clock, seconds since 1970-01-01 UTC; 0: now */
    size_t max_output; /* 0: 1 MiB */
} q4k_chat_render_desc;
/* On success *out is a NUL-terminated string to free with q4k_free. */
Q4K_API q4k_result q4k_chat_render(const char *tmpl, const q4k_chat_msg *msgs, int64_t n, const q4k_chat_render_desc *d,
                                   char **out, q4k_error *err);
/* The built-in format whose markers a template uses (<|im_start|>,
   <|start_header_id|>, <｜User｜>, [INST]); Q4K_CHAT_NONE when none. */
Q4K_API q4k_chat_template q4k_chat_template_guess(const char *tmpl);
/* "none", "chatml", "llama3", "llama2" or "deepseek": 1 and *out set; 0
   for any other name. */
Q4K_API int q4k_chat_template_from_name(const char *name, q4k_chat_template *out);
/* Generation: evaluate `tokens`, then sample up to n_predict tokens (-1: no
   limit), evaluating each but the last of n_predict (nothing would use its
   logits: a caller that goes on evaluates it first). Every token, prompt
   and sampled, goes to q4k_sampler_accept. After each sample cb (optional)
   gets the token and the logits it was drawn from; a nonzero return stops
   generation (Q4K_ERR_STOPPED, the token not evaluated either). Ends with Q4K_OK at an end-of-generation token (not
   passed to cb; evaluated into the cache with Q4K_GEN_EVAL_EOG, so that a
   chat can go on) or after n_predict tokens, and with Q4K_ERR_CONTEXT_FULL
   when the context is full. *n_generated (optional) counts the tokens
   passed to cb. */
#define Q4K_GEN_EVAL_EOG 1u
#define Q4K_GEN_IGNORE_EOG 2u /* go on past end-of-generation tokens (benchmarks) */
typedef int (*q4k_token_fn)(void *user, int32_t token, const float *logits);
Q4K_API q4k_result q4k_generate(q4k_session *s, const q4k_tokenizer *tok, q4k_sampler *smp, const int32_t *tokens,
                                int64_t n, int64_t n_predict, unsigned flags, q4k_token_fn cb, void *user,
                                int64_t *n_generated, q4k_error *err);
/* >>parity-api */
/* ------------------------------------------------------------------------ */
/* parity: comparing two paths, and the gate                                 */
/* ------------------------------------------------------------------------ */

/* How far `test` is from `ref` (n values). These report; they never assert.
   Sums in double; a NaN or infinity in test makes cosine NaN. */
typedef struct q4k_parity {
    double cosine;      /* ref.test / (|ref| |test|) */
    double max_abs;     /* max |test - ref| */
    double max_rel;     /* max |test - ref| / max |ref| */
    double nmse;        /* sum (test - ref)^2 / sum ref^2 */
    double kl;          /* KL(softmax(ref) || softmax(test)) */
    double std_ref;     /* standard deviation of ref */
    double margin;      /* ref's largest minus second largest value */
    int64_t argmax_ref, argmax_test;
    int64_t n_nonfinite; /* NaN or infinite values in test */
} q4k_parity;

static inline double q4k_parity_cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa == 0 && bb == 0) return 1.0;
    return aa == 0 || bb == 0 ? 0.0 : ab / (sqrt(aa) * sqrt(bb));
}

/* index of the largest value (lowest on ties) and the gap to the second */
static inline int64_t q4k_parity_argmax(const float *x, int64_t n, double *margin) {
    int64_t i, best = 0;
    double second = -1e300;
    for (i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    for (i = 0; i < n; i++)
        if (i != best && x[i] > second) second = x[i];
    if (margin) *margin = n > 1 ? (double)x[best] - second : 0.0;
    return best;
}

/* KL(softmax(p) || softmax(q)) in nats */
static inline double q4k_parity_kl(const float *p, const float *q, int64_t n) {
    double mp = -1e300, mq = -1e300, zp = 0, zq = 0, kl = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        if (p[i] > mp) mp = p[i];
        if (q[i] > mq) mq = q[i];
    }
    for (i = 0; i < n; i++) {
        zp += exp((double)p[i] - mp);
        zq += exp((double)q[i] - mq);
    }
    for (i = 0; i < n; i++) {
        double lp = (double)p[i] - mp - log(zp), lq = (double)q[i] - mq - log(zq);
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

static inline q4k_parity q4k_parity_compare(const float *ref, const float *test, int64_t n) {
    q4k_parity p;
    double se = 0, sr = 0, mr = 0, sum = 0, sum2 = 0;
    int64_t i;
    p.cosine = q4k_parity_cosine(ref, test, n);
    p.max_abs = 0;
    p.n_nonfinite = 0;
    for (i = 0; i < n; i++) {
        double d = (double)test[i] - ref[i], a = d < 0 ? -d : d, r = ref[i] < 0 ? -(double)ref[i] : ref[i];
        if (test[i] - test[i] != 0.0f) p.n_nonfinite++;
        if (!(a <= p.max_abs)) p.max_abs = a;
        if (r > mr) mr = r;
        se += d * d;
        sr += (double)ref[i] * ref[i];
        sum += ref[i];
        sum2 += (double)ref[i] * ref[i];
    }
    p.max_rel = mr > 0 ? p.max_abs / mr : p.max_abs;
    p.nmse = sr > 0 ? se / sr : se;
    p.std_ref = n > 0 ? sqrt(sum2 / (double)n - (sum / (double)n) * (sum / (double)n) > 0
                                           ? sum2 / (double)n - (sum / (double)n) * (sum / (double)n) : 0.0) : 0.0;
    p.kl = q4k_parity_kl(ref, test, n);
    p.argmax_ref = q4k_parity_argmax(ref, n, &p.margin);
    p.argmax_test = q4k_parity_argmax(test, n, NULL);
    return p;
}

/* The gate: a reference session (CPU) and a test session run the same
   prompt, then `steps` greedy steps in which both are fed the reference's
   argmax; the logits are compared at every step (step 0 is the prompt).
   The prompt is a fixed built-in one (Q4K_GATE_BUILTIN token ids, taken
   modulo the vocabulary) followed by at most the first 64 of the given
   tokens, so the gate's cost does not grow with long prompts.
   A step fails
     per layer (teacher-forced): the reference recomputes each layer from the
       test session's own input to it (its trace, q4k_session_eval_layer):
       the cosine of the two layer updates (output - input) is below
       layer_cos, or that of one of the layer's ops (Q4K_OP_LIST; the
       residual adds as updates) below op_cos; the stages outside the layers
       (embedding, output_norm, lm_head) are recomputed from the test's
       inputs and judged against op_cos;
     end to end: a NaN or infinite logit, a logit cosine below logit_cos, or
       another argmax where the reference's top-two margin exceeds
       margin_frac x the standard deviation of its logits.
   KL is reported, not judged. The gate stops at the first failing step and
   names the first layer (or stage) that failed and inside it the first op
   below op_cos (the worst op when only the update failed). Both sessions
   run in the test descriptor's arithmetic mode and KV type; its faults go to
   the test session only. The backend under test must trace
   (Q4K_TRACE_LAYERS | Q4K_TRACE_ALL_OPS); the reference must have
   eval_layer (the CPU does). */
/* Thresholds, from the spread between two correct paths (CPU scalar vs
   SIMD + threads, 200 runs of tools/gate_study.sh; README "The parity
   gate"): 1-cos up to 8.3e-5 for a layer update, 1.17e-4 for an op, 7.4e-5
   for the logits of 2-4 layer models (28 layers amplify it tens of times);
   argmax flips at margins up to 1.14% of the logits' std. A relative error
   EPS on an op costs it 1-cos = EPS^2/2: 1.25e-3 at EPS 0.05. */
#define Q4K_GATE_LAYER_COS 0.9995  /* per-layer update cosine */
#define Q4K_GATE_OP_COS 0.9995     /* per-op cosine inside a layer, and the stages */
#define Q4K_GATE_LOGIT_COS 0.99    /* end-to-end logit cosine */
#define Q4K_GATE_MARGIN_FRAC 0.05  /* argmax rule: margin > 5% of the logits' std */
#define Q4K_GATE_MAX_STEPS 64
#define Q4K_GATE_MAX_USER_TOKENS 64

typedef struct q4k_gate_desc {
    int64_t steps;       /* greedy steps after the prompt, <= Q4K_GATE_MAX_STEPS (0: the prompt only) */
    double layer_cos;    /* 0: Q4K_GATE_LAYER_COS */
    double op_cos;       /* 0: Q4K_GATE_OP_COS */
    double logit_cos;    /* 0: Q4K_GATE_LOGIT_COS */
    double margin_frac;  /* 0: Q4K_GATE_MARGIN_FRAC */
    int64_t max_user_tokens; /* of the given prompt (0: Q4K_GATE_MAX_USER_TOKENS) */
} q4k_gate_desc;

typedef struct q4k_gate_step {
    q4k_parity logits;      /* reference vs test */
    /* the teacher-forced check: worst layer update, worst op and where
       (layer -1: a stage; op: a q4k_op, or Q4K_OP_COUNT + a q4k_stage) */
    double update_cos;
    int64_t update_layer;
    double op_cos;
    int64_t op_layer;
    int op_worst;
    int pass;
} q4k_gate_step;

typedef struct q4k_gate_report {
    int pass;
    int64_t n_steps;         /* steps run, the prompt included */
    int64_t steps_asked;
    int64_t n_prompt;        /* tokens of the gate's prompt */
    q4k_gate_step step[Q4K_GATE_MAX_STEPS + 1];
    int64_t failed_step;     /* -1 when it passed */
    char reason[192];        /* "cosine 0.7223 < 0.9999", "layer 3 update cosine ..." */
    /* first divergence: layer (-1: outside the layers) and op (a q4k_op, or
       Q4K_OP_COUNT + a q4k_stage; -1: not found) */
    int64_t div_layer;
    int div_op;
    char where[96];          /* "layer 0, attn", "lm_head", "no single layer" */
    double layer_cos_used, op_cos_used, logit_cos_used, margin_frac_used;
} q4k_gate_report;

Q4K_API q4k_result q4k_gate_run(q4k_backend *ref, q4k_backend *test, const q4k_model *m,
                                const q4k_session_desc *test_desc, const int32_t *prompt, int64_t n_prompt,
                                const q4k_gate_desc *d, q4k_gate_report *rep, q4k_error *err);
/* The name of op `op` as the gate reports it: a q4k_op or Q4K_OP_COUNT + a stage. */
Q4K_API const char *q4k_gate_op_name(int op);
/* Look up an op or stage name ("down", "lm_head"): the gate's numbering, -1 when unknown. */
Q4K_API int q4k_gate_op_from_name(const char *name);

#ifdef Q4K_FAULTS
/* Parse "NAME[,NAME...]" (Q4K_FAULT_LIST names, and perturb:LAYER:OP:EPS
   with LAYER 0-based, OP an op or stage name); test builds only. */
Q4K_API q4k_result q4k_faults_parse(const char *spec, q4k_faults *out, q4k_error *err);
Q4K_API const char *q4k_fault_name(q4k_fault f);
/* Internal, for the GPU backends: the q4k_scales fault on nb Q4_K blocks in
   place (each block's 6-bit scales and mins exchanged) */
Q4K_API void q4k__fault_swap_scales(void *blocks, int64_t nb);
#endif
/* <<parity-api */

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
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

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

Q4K_API q4k_result q4k__fail(q4k_error *err, q4k_result code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

Q4K_API void q4k__log(q4k_log_fn fn, void *user, q4k_log_level level, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    if (!fn) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fn(level, buf, user);
}

Q4K_API int q4k__log_first_line(const char *log, const char *prefix, const char *mark, const char *skip,
                                const char **first, int *len) {
    const char *p = log ? log : "", *nl;
    size_t pl = prefix ? strlen(prefix) : 0;
    int n = 0;
    *first = NULL;
    *len = 0;
    for (; *p; p = *nl ? nl + 1 : nl) {
        const char *l = p, *at;
        int ll;
        if (!(nl = strchr(p, '\n'))) nl = p + strlen(p);
        ll = (int)(nl - l);
        if (pl && ll >= (int)pl && !strncmp(l, prefix, pl)) {
            l += pl;
            ll -= (int)pl;
        }
        while (ll > 0 && (l[ll - 1] == ' ' || l[ll - 1] == '\r')) ll--;
        if (ll == 0) continue;
        if (mark && (!(at = strstr(l, mark)) || at >= l + ll)) continue;
        if (skip && (at = strstr(l, skip)) != NULL && at < l + ll) continue;
        if (!n++) {
            *first = l;
            *len = ll;
        }
    }
    return n;
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
/* Q4_K (five = 0) and Q5_K (five = 1): per sub-block of 32 a weighted
   scale-and-min fit to 16 / 32 levels, then the 8 scales and 8 mins
   quantized to 6 bits against the super-block's d and dmin, and every value
   re-rounded against the decoded scale and min. */
static void q4k__quantize_k45(const float *x, uint8_t *dst, int64_t nb, int five) {
    const int nmax = five ? 31 : 15;
    int64_t i;
    int j, l;
    for (i = 0; i < nb; i++, x += Q4K_QK_K) {
        uint8_t scales6[12], qs[Q4K_QK_K / 2], qh[Q4K_QK_K / 8];
        uint16_t hd, hdmin;
        uint8_t L[Q4K_QK_K], Ltry[32];
        float w[32], scales[8], mins[8], max_scale = 0.0f, max_min = 0.0f, inv_scale, inv_min, d, dmin;
        for (j = 0; j < 8; j++) {
            const float *xs = x + 32 * j;
            float sum_x2 = 0.0f, av;
            for (l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
            av = sqrtf(sum_x2 / 32.0f);
            for (l = 0; l < 32; l++) w[l] = av + fabsf(xs[l]);
            scales[j] = five ? q4k__fit_scale_min(32, nmax, xs, w, L + 32 * j, &mins[j], Ltry, -0.5f, 0.1f, 15)
                             : q4k__fit_scale_min(32, nmax, xs, w, L + 32 * j, &mins[j], Ltry, -1.0f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
        inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
        memset(scales6, 0, sizeof scales6);
        for (j = 0; j < 8; j++) {
            int ls = q4k__clampi(q4k__nearest_int(inv_scale * scales[j]), 0, 63);
            int lm = q4k__clampi(q4k__nearest_int(inv_min * mins[j]), 0, 63);
            if (j < 4) {
                scales6[j] = (uint8_t)ls;
                scales6[j + 4] = (uint8_t)lm;
            } else {
                scales6[j + 4] = (uint8_t)((ls & 0xF) | (lm & 0xF) << 4);
                scales6[j - 4] |= (uint8_t)((ls >> 4) << 6);
                scales6[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        hd = q4k_fp32_to_fp16(max_scale / 63.0f);
        hdmin = q4k_fp32_to_fp16(max_min / 63.0f);
        d = q4k_fp16_to_fp32(hd);
        dmin = q4k_fp16_to_fp32(hdmin);
        for (j = 0; j < 8; j++) {
            int sc, m;
            float d1, m1;
            q4k__scale_min_k4(j, scales6, &sc, &m);
            d1 = d * (float)sc;
            m1 = dmin * (float)m;
            if (d1 == 0.0f) continue; /* every level decodes to -m1: keep the fit's */
            for (l = 0; l < 32; l++)
                L[32 * j + l] = (uint8_t)q4k__clampi(q4k__nearest_int((x[32 * j + l] + m1) / d1), 0, nmax);
        }
        /* sub-blocks 2k and 2k+1 share qs[32k..]: low and high nibbles; Q5_K's
           fifth bit of value e is bit e/32 of qh[e%32] */
        memset(qh, 0, sizeof qh);
        for (j = 0; j < 4; j++)
            for (l = 0; l < 32; l++)
                qs[32 * j + l] = (uint8_t)((L[64 * j + l] & 0xF) | (L[64 * j + 32 + l] & 0xF) << 4);
        for (j = 0; j < 8; j++)
            for (l = 0; l < 32; l++) qh[l] |= (uint8_t)((L[32 * j + l] >> 4) << j);
        if (five) {
            q4k_block_q5_K b;
            b.d = hd, b.dmin = hdmin;
            memcpy(b.scales, scales6, 12);
            memcpy(b.qh, qh, sizeof qh);
            memcpy(b.qs, qs, sizeof qs);
            memcpy(dst, &b, sizeof b);
            dst += sizeof b;
        } else {
            q4k_block_q4_K b;
            b.d = hd, b.dmin = hdmin;
            memcpy(b.scales, scales6, 12);
            memcpy(b.qs, qs, sizeof qs);
            memcpy(dst, &b, sizeof b);
            dst += sizeof b;
        }
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
    case Q4K_TYPE_Q8_0: case Q4K_TYPE_Q4_K: case Q4K_TYPE_Q5_K: case Q4K_TYPE_Q6_K:
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
    case Q4K_TYPE_Q4_K: q4k__quantize_k45(src, d, n / Q4K_QK_K, 0); break;
    case Q4K_TYPE_Q5_K: q4k__quantize_k45(src, d, n / Q4K_QK_K, 1); break;
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

/* GGUF, as read and written here (every integer little-endian):
      "GGUF", u32 version (2 or 3), u64 tensor_count, u64 kv_count
      kv_count x     { string key, u32 value type, value }
      tensor_count x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
      zero padding to the alignment (general.alignment, default 32)
      data section: tensor offsets count from its start, each aligned
   A string is a u64 byte count and the bytes (no NUL); an array is a u32
   element type, a u64 count and the elements, which may be arrays again.
   Version 1 used 32-bit counts and is refused. Every length and count is
   checked against the bytes that remain before anything is allocated for it,
   and all size arithmetic is overflow-checked. */

#ifdef __cplusplus
}
#endif
#include <errno.h>
#if defined(__unix__) || defined(__unix) || defined(__APPLE__)
#define Q4K__POSIX_IO 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
#ifdef __cplusplus
extern "C" {
#endif

#define Q4K__GGUF_ALIGN 32
#define Q4K__GGUF_MAX_ALIGN (1u << 30)
#define Q4K__GGUF_MAX_DEPTH 8       /* arrays of arrays: levels at most */
#define Q4K__GGUF_MAX_KEY 65535     /* bytes of a key (the spec's limit) */
#define Q4K__GGUF_MAX_NAME 63       /* bytes of a tensor name (ggml: 64 with the NUL) */
#define Q4K__GGUF_MIN_KV 13         /* key length, type, a 1-byte value */
#define Q4K__GGUF_MIN_TENSOR 33     /* name length + 1 byte, n_dims, one dim, type, offset */
#define Q4K__GGUF_SHOW 8            /* array elements shown by q4k_gguf_print */

static uint32_t q4k__rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t q4k__rd64(const uint8_t *p) { return (uint64_t)q4k__rd32(p) | (uint64_t)q4k__rd32(p + 4) << 32; }
static uint16_t q4k__rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* two's complement of the low `bits` bits, without implementation-defined casts */
static int64_t q4k__sext(uint64_t x, int bits) {
    uint64_t sign = (uint64_t)1 << (bits - 1);
    x &= bits == 64 ? ~(uint64_t)0 : (sign << 1) - 1;
    if (!(x & sign)) return (int64_t)x;
    x = (bits == 64 ? ~(uint64_t)0 : (sign << 1) - 1) - x; /* = -value - 1 */
    return -(int64_t)x - 1;
}

static size_t q4k__gguf_scalar_size(uint32_t t) {
    switch (t) {
    case Q4K_GGUF_UINT8: case Q4K_GGUF_INT8: case Q4K_GGUF_BOOL: return 1;
    case Q4K_GGUF_UINT16: case Q4K_GGUF_INT16: return 2;
    case Q4K_GGUF_UINT32: case Q4K_GGUF_INT32: case Q4K_GGUF_FLOAT32: return 4;
    case Q4K_GGUF_UINT64: case Q4K_GGUF_INT64: case Q4K_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

Q4K_API const char *q4k_gguf_type_name(q4k_gguf_type t) {
    static const char *const names[] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                        "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
    if ((int)t < 0 || (int)t >= (int)Q4K_GGUF_TYPE_COUNT) return "unknown";
    return names[t];
}

/* Integer scalar at p: *neg says the value is below zero; then *s holds it,
   else *u. Returns 0 for non-integer types. */
static int q4k__gguf_int(q4k_gguf_type t, const uint8_t *p, int *neg, uint64_t *u, int64_t *s) {
    int64_t v;
    switch (t) {
    case Q4K_GGUF_UINT8: *neg = 0; *u = p[0]; return 1;
    case Q4K_GGUF_UINT16: *neg = 0; *u = q4k__rd16(p); return 1;
    case Q4K_GGUF_UINT32: *neg = 0; *u = q4k__rd32(p); return 1;
    case Q4K_GGUF_UINT64: *neg = 0; *u = q4k__rd64(p); return 1;
    case Q4K_GGUF_INT8: v = q4k__sext(p[0], 8); break;
    case Q4K_GGUF_INT16: v = q4k__sext(q4k__rd16(p), 16); break;
    case Q4K_GGUF_INT32: v = q4k__sext(q4k__rd32(p), 32); break;
    case Q4K_GGUF_INT64: v = q4k__sext(q4k__rd64(p), 64); break;
    default: return 0;
    }
    *neg = v < 0;
    if (v < 0) *s = v;
    else *u = (uint64_t)v;
    return 1;
}

static double q4k__gguf_float(q4k_gguf_type t, const uint8_t *p) {
    if (t == Q4K_GGUF_FLOAT32) {
        uint32_t b = q4k__rd32(p);
        float f;
        memcpy(&f, &b, 4);
        return f;
    } else {
        uint64_t b = q4k__rd64(p);
        double d;
        memcpy(&d, &b, 8);
        return d;
    }
}

/* Length of the valid UTF-8 sequence at s (n bytes available); 0 when
   invalid (overlong, surrogate, above U+10FFFF, cut short). */
static size_t q4k__utf8_seq(const uint8_t *s, size_t n) {
    uint32_t cp, min;
    size_t len, k;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xe0) == 0xc0) { len = 2; cp = s[0] & 0x1fu; min = 0x80; }
    else if ((s[0] & 0xf0) == 0xe0) { len = 3; cp = s[0] & 0x0fu; min = 0x800; }
    else if ((s[0] & 0xf8) == 0xf0) { len = 4; cp = s[0] & 0x07u; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static int q4k__utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0, k;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        k = q4k__utf8_seq(s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* A printable excerpt of bytes for one-line messages: printable ASCII as is,
   anything else as \xNN, at most 64 bytes then "...". cap >= 272. */
static const char *q4k__quote(char *buf, size_t cap, const void *bytes, uint64_t n) {
    const uint8_t *s = (const uint8_t *)bytes;
    size_t o = 0;
    uint64_t i;
    for (i = 0; i < n && i < 64 && o + 8 < cap; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\' && s[i] != '\'') {
            buf[o++] = (char)s[i];
        } else {
            snprintf(buf + o, cap - o, "\\x%02x", s[i]);
            o += 4;
        }
    }
    if (i < n && o + 4 <= cap) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o] = 0;
    return buf;
}

/* FNV-1a */
static uint64_t q4k__hash(const char *s, size_t n) {
    uint64_t h = 14695981039346656037ULL;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* A growable hash index of names (borrowed, must stay put) to ids 0..n-1. */
typedef struct q4k__index {
    size_t *slot;  /* id + 1; 0 = empty */
    size_t mask;   /* slots - 1 */
    const char **name;
    size_t *len;
    size_t n, cap;
} q4k__index;

static void q4k__index_free(q4k__index *ix) {
    Q4K_FREE(ix->slot);
    Q4K_FREE((void *)ix->name);
    Q4K_FREE(ix->len);
    memset(ix, 0, sizeof *ix);
}

static int64_t q4k__index_find(const q4k__index *ix, const char *s, size_t n) {
    size_t i, id;
    if (!ix->slot) return -1;
    for (i = (size_t)q4k__hash(s, n) & ix->mask;; i = (i + 1) & ix->mask) {
        id = ix->slot[i];
        if (!id) return -1;
        if (ix->len[id - 1] == n && !memcmp(ix->name[id - 1], s, n)) return (int64_t)(id - 1);
    }
}

static void q4k__index_place(q4k__index *ix, size_t id) {
    size_t i = (size_t)q4k__hash(ix->name[id], ix->len[id]) & ix->mask;
    while (ix->slot[i]) i = (i + 1) & ix->mask;
    ix->slot[i] = id + 1;
}

/* Adds name as id n. Returns 0 when out of memory; *dup is the id of an
   equal name already present (then nothing is added), else -1. */
static int q4k__index_add(q4k__index *ix, const char *s, size_t n, int64_t *dup) {
    *dup = q4k__index_find(ix, s, n);
    if (*dup >= 0) return 1;
    if (ix->n == ix->cap) {
        size_t cap = ix->cap ? ix->cap * 2 : 16, i;
        const char **nm;
        size_t *ln, *sl;
        if (cap > SIZE_MAX / 4 / sizeof(size_t)) return 0;
        nm = (const char **)Q4K_REALLOC((void *)ix->name, cap * sizeof *nm);
        if (!nm) return 0;
        ix->name = nm;
        ln = (size_t *)Q4K_REALLOC(ix->len, cap * sizeof *ln);
        if (!ln) return 0;
        ix->len = ln;
        sl = (size_t *)Q4K_MALLOC(cap * 2 * sizeof *sl); /* load <= 1/2 */
        if (!sl) return 0;
        memset(sl, 0, cap * 2 * sizeof *sl);
        Q4K_FREE(ix->slot);
        ix->slot = sl;
        ix->mask = cap * 2 - 1;
        ix->cap = cap;
        for (i = 0; i < ix->n; i++) q4k__index_place(ix, i);
    }
    ix->name[ix->n] = s;
    ix->len[ix->n] = n;
    q4k__index_place(ix, ix->n);
    ix->n++;
    return 1;
}

/* Bump allocator for the reader's strings: freed all at once. */
typedef struct q4k__arena {
    struct q4k__arena *next;
    size_t used, cap;
} q4k__arena;

static char *q4k__arena_str(q4k__arena **a, const void *s, size_t n) {
    char *p;
    if (n >= SIZE_MAX - sizeof(q4k__arena) - 65536) return NULL;
    if (!*a || (*a)->cap - (*a)->used < n + 1) {
        size_t cap = n + 1 > 65536 ? n + 1 : 65536;
        q4k__arena *b = (q4k__arena *)Q4K_MALLOC(sizeof *b + cap);
        if (!b) return NULL;
        b->next = *a;
        b->used = 0;
        b->cap = cap;
        *a = b;
    }
    p = (char *)(*a + 1) + (*a)->used;
    (*a)->used += n + 1;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static void q4k__arena_free(q4k__arena *a) {
    while (a) {
        q4k__arena *next = a->next;
        Q4K_FREE(a);
        a = next;
    }
}

/* ---- reader ------------------------------------------------------------ */

typedef struct q4k__gguf_kv {
    const char *key; /* NUL-terminated copy */
    size_t key_len;
    q4k_gguf_type type;
    q4k_gguf_type elem_type; /* ARRAY */
    uint64_t count;          /* ARRAY: elements; STRING: bytes; else 1 */
    uint64_t kv_offset;      /* where the key starts */
    uint64_t data_offset;    /* scalar value, string bytes or first element */
    uint64_t size;           /* bytes from data_offset */
    const char *str;         /* STRING: NUL-terminated copy */
    uint64_t *str_index;     /* ARRAY of STRING: element offsets from data_offset */
} q4k__gguf_kv;

struct q4k_gguf {
    const uint8_t *data;
    size_t size;
    void *map; /* mmap'ed (POSIX) */
    size_t map_size;
    uint8_t *owned; /* read into memory */
    char *path;     /* NULL for buffers */
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    q4k__gguf_kv *kv;
    int64_t n_kv;
    q4k_tensor *tensors;
    uint64_t *info_off; /* file offset of each tensor's info, for messages */
    int64_t n_tensors;
    q4k__index kv_index, tensor_index;
    q4k__arena *arena;
};

typedef struct q4k__rd {
    const uint8_t *p;
    size_t size, pos;
    const char *path;
    q4k_error *err;
    char ctx[300]; /* "key 'general.name'", "tensor 'output.weight'" */
} q4k__rd;

static q4k_result q4k__rfail(q4k__rd *r, q4k_result code, uint64_t off, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static q4k_result q4k__rfail(q4k__rd *r, q4k_result code, uint64_t off, const char *fmt, ...) {
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return q4k__fail(r->err, code, "%s%s%s at offset %llu: %s", r->path ? r->path : "", r->path ? ": " : "",
                     r->ctx, (unsigned long long)off, detail);
}

static uint64_t q4k__rd_left(const q4k__rd *r) { return (uint64_t)(r->size - r->pos); }

static q4k_result q4k__rd_short(q4k__rd *r, uint64_t need, const char *what) {
    return q4k__rfail(r, Q4K_ERR_TRUNCATED, r->pos,
                      "%s needs %llu bytes but the file ends %llu bytes later (size %zu): truncated", what,
                      (unsigned long long)need, (unsigned long long)q4k__rd_left(r), r->size);
}

static void q4k__rd_ctx(q4k__rd *r, const char *what, const void *name, uint64_t n) {
    char q[272];
    snprintf(r->ctx, sizeof r->ctx, "%s '%s'", what, q4k__quote(q, sizeof q, name, n));
}

static q4k_result q4k__gguf_bools(q4k__rd *r, const uint8_t *p, uint64_t n) {
    uint64_t i;
    for (i = 0; i < n; i++)
        if (p[i] > 1)
            return q4k__rfail(r, Q4K_ERR_BAD_BOOL, (uint64_t)(p - r->p) + i, "bool byte is %u, must be 0 or 1",
                              (unsigned)p[i]);
    return Q4K_OK;
}

/* Validates the array at r->pos (depth 1 for a key's own array) and steps
   over it. Recursion is bounded by Q4K__GGUF_MAX_DEPTH. */
static q4k_result q4k__gguf_scan_array(q4k__rd *r, int depth) {
    uint64_t off = r->pos, count, need, i, len;
    uint32_t et;
    size_t sz;
    q4k_result res;
    if (q4k__rd_left(r) < 12) return q4k__rd_short(r, 12, "array header");
    et = q4k__rd32(r->p + r->pos);
    count = q4k__rd64(r->p + r->pos + 4);
    if (et >= Q4K_GGUF_TYPE_COUNT)
        return q4k__rfail(r, Q4K_ERR_BAD_ARRAY, off, "array element type %u is not a GGUF value type (0..12)", et);
    if (et == Q4K_GGUF_ARRAY && depth >= Q4K__GGUF_MAX_DEPTH)
        return q4k__rfail(r, Q4K_ERR_BAD_ARRAY, off, "arrays nested more than %d levels deep", Q4K__GGUF_MAX_DEPTH);
    r->pos += 12;
    sz = q4k__gguf_scalar_size(et);
    if (!q4k__mul_u64(count, sz ? sz : et == Q4K_GGUF_STRING ? 8 : 12, &need) || need > q4k__rd_left(r))
        return q4k__rfail(r, Q4K_ERR_BAD_COUNT, off + 4,
                          "array of %llu %s elements cannot fit in the %llu bytes that remain",
                          (unsigned long long)count, q4k_gguf_type_name((q4k_gguf_type)et),
                          (unsigned long long)q4k__rd_left(r));
    if (sz) {
        if (et == Q4K_GGUF_BOOL && (res = q4k__gguf_bools(r, r->p + r->pos, count)) != Q4K_OK) return res;
        r->pos += (size_t)need;
        return Q4K_OK;
    }
    for (i = 0; i < count; i++) {
        if (et == Q4K_GGUF_STRING) {
            if (q4k__rd_left(r) < 8) return q4k__rd_short(r, 8, "string length");
            len = q4k__rd64(r->p + r->pos);
            if (len > q4k__rd_left(r) - 8)
                return q4k__rfail(r, Q4K_ERR_BAD_STRING, r->pos,
                                  "array element %llu: string of %llu bytes runs past the end of the file (%llu bytes remain)",
                                  (unsigned long long)i, (unsigned long long)len,
                                  (unsigned long long)(q4k__rd_left(r) - 8));
            r->pos += 8 + (size_t)len;
        } else if ((res = q4k__gguf_scan_array(r, depth + 1)) != Q4K_OK) {
            return res;
        }
    }
    return Q4K_OK;
}

/* Says what a file that is not GGUF is, when it is something common. */
static q4k_result q4k__gguf_sniff(q4k__rd *r) {
    const uint8_t *p = r->p;
    size_t n = r->size, i = 0;
    char q[272];
    static const char lfs[] = "version https://git-lfs";
    if (n >= sizeof lfs - 1 && !memcmp(p, lfs, sizeof lfs - 1))
        return q4k__rfail(r, Q4K_ERR_LFS_POINTER, 0,
                          "this is a Git LFS pointer (a small text file naming the real one), not the model: "
                          "fetch the file itself (git lfs pull, or download it)");
    if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) i = 3; /* UTF-8 BOM */
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n' || p[i] == '\f' || p[i] == '\v')) i++;
    {
        static const char *const tags[] = {"<!doctype", "<html"};
        size_t t, k;
        for (t = 0; t < 2; t++) {
            size_t tl = strlen(tags[t]);
            if (n - i < tl) continue;
            for (k = 0; k < tl; k++) {
                uint8_t c = p[i + k];
                if (c >= 'A' && c <= 'Z') c = (uint8_t)(c + 32);
                if (c != (uint8_t)tags[t][k]) break;
            }
            if (k == tl)
                return q4k__rfail(r, Q4K_ERR_HTML, (uint64_t)i,
                                  "this is an HTML page, not a GGUF file: the download saved a web page "
                                  "(use the file's direct download link)");
        }
    }
    if (n >= 4 && (!memcmp(p, "tjgg", 4) || !memcmp(p, "lmgg", 4) || !memcmp(p, "fmgg", 4)))
        return q4k__rfail(r, Q4K_ERR_NOT_GGUF, 0,
                          "magic '%.4s' is an old GGML/GGJT model file, not GGUF: convert it to GGUF first", (const char *)p);
    return q4k__rfail(r, Q4K_ERR_NOT_GGUF, 0, "magic is '%s', not 'GGUF'", q4k__quote(q, sizeof q, p, n < 4 ? n : 4));
}

static q4k_result q4k__gguf_oom(q4k__rd *r, const char *what) {
    return q4k__fail(r->err, Q4K_ERR_OUT_OF_MEMORY, "%s%sout of memory for %s", r->path ? r->path : "",
                     r->path ? ": " : "", what);
}

static q4k_result q4k__gguf_parse_kvs(q4k_gguf *g, q4k__rd *r, uint64_t n_kv) {
    uint64_t i;
    size_t cap = 0;
    q4k_result res;
    for (i = 0; i < n_kv; i++) {
        uint64_t koff = r->pos, klen, slen;
        const uint8_t *kp;
        uint32_t t;
        q4k__gguf_kv *kv;
        int64_t dup;
        size_t sz;
        snprintf(r->ctx, sizeof r->ctx, "key #%llu", (unsigned long long)i);
        if (q4k__rd_left(r) < 8) return q4k__rd_short(r, 8, "key length");
        klen = q4k__rd64(r->p + r->pos);
        if (klen == 0) return q4k__rfail(r, Q4K_ERR_BAD_KEY, koff, "key is empty");
        if (klen > Q4K__GGUF_MAX_KEY)
            return q4k__rfail(r, Q4K_ERR_BAD_KEY, koff, "key length %llu is over the limit of %d bytes",
                              (unsigned long long)klen, Q4K__GGUF_MAX_KEY);
        if (klen > q4k__rd_left(r) - 8) {
            r->pos += 8;
            return q4k__rd_short(r, klen, "key");
        }
        kp = r->p + r->pos + 8;
        q4k__rd_ctx(r, "key", kp, klen);
        if (!q4k__utf8_valid(kp, (size_t)klen)) return q4k__rfail(r, Q4K_ERR_BAD_UTF8, koff + 8, "key is not valid UTF-8");
        if (memchr(kp, 0, (size_t)klen)) return q4k__rfail(r, Q4K_ERR_BAD_KEY, koff + 8, "key holds a NUL byte");
        r->pos += 8 + (size_t)klen;
        if (q4k__rd_left(r) < 4) return q4k__rd_short(r, 4, "value type");
        t = q4k__rd32(r->p + r->pos);
        if (t >= Q4K_GGUF_TYPE_COUNT)
            return q4k__rfail(r, Q4K_ERR_BAD_VALUE_TYPE, r->pos, "value type %u is not a GGUF value type (0..12)", t);
        r->pos += 4;
        if ((size_t)g->n_kv == cap) {
            size_t nc = cap ? cap * 2 : 16;
            q4k__gguf_kv *nk = (q4k__gguf_kv *)Q4K_REALLOC(g->kv, nc * sizeof *nk);
            if (!nk) return q4k__gguf_oom(r, "metadata");
            g->kv = nk;
            cap = nc;
        }
        kv = &g->kv[g->n_kv++];
        memset(kv, 0, sizeof *kv);
        kv->key = q4k__arena_str(&g->arena, kp, (size_t)klen);
        if (!kv->key) return q4k__gguf_oom(r, "metadata keys");
        kv->key_len = (size_t)klen;
        kv->type = (q4k_gguf_type)t;
        kv->kv_offset = koff;
        kv->count = 1;
        if (!q4k__index_add(&g->kv_index, kv->key, kv->key_len, &dup)) return q4k__gguf_oom(r, "the key index");
        if (dup >= 0)
            return q4k__rfail(r, Q4K_ERR_DUPLICATE_KEY, koff, "duplicate key (first defined at offset %llu)",
                              (unsigned long long)g->kv[dup].kv_offset);
        sz = q4k__gguf_scalar_size(t);
        if (sz) {
            if (q4k__rd_left(r) < sz) return q4k__rd_short(r, sz, "value");
            if (t == Q4K_GGUF_BOOL && (res = q4k__gguf_bools(r, r->p + r->pos, 1)) != Q4K_OK) return res;
            kv->data_offset = r->pos;
            kv->size = sz;
            r->pos += sz;
        } else if (t == Q4K_GGUF_STRING) {
            if (q4k__rd_left(r) < 8) return q4k__rd_short(r, 8, "string length");
            slen = q4k__rd64(r->p + r->pos);
            if (slen > q4k__rd_left(r) - 8)
                return q4k__rfail(r, Q4K_ERR_BAD_STRING, r->pos,
                                  "string of %llu bytes runs past the end of the file (%llu bytes remain)",
                                  (unsigned long long)slen, (unsigned long long)(q4k__rd_left(r) - 8));
            kv->data_offset = r->pos + 8;
            kv->count = kv->size = slen;
            kv->str = q4k__arena_str(&g->arena, r->p + r->pos + 8, (size_t)slen);
            if (!kv->str) return q4k__gguf_oom(r, "a string value");
            r->pos += 8 + (size_t)slen;
        } else { /* ARRAY */
            uint64_t start = r->pos, k, off;
            if ((res = q4k__gguf_scan_array(r, 1)) != Q4K_OK) return res;
            kv->elem_type = (q4k_gguf_type)q4k__rd32(r->p + start);
            kv->count = q4k__rd64(r->p + start + 4);
            kv->data_offset = start + 12;
            kv->size = r->pos - kv->data_offset;
            if (kv->elem_type == Q4K_GGUF_STRING && kv->count) {
                /* count <= bytes / 8, so the table is no larger than the array */
                if (kv->count > SIZE_MAX / sizeof(uint64_t)) return q4k__gguf_oom(r, "a string array index");
                kv->str_index = (uint64_t *)Q4K_MALLOC((size_t)kv->count * sizeof(uint64_t));
                if (!kv->str_index) return q4k__gguf_oom(r, "a string array index");
                for (k = 0, off = 0; k < kv->count; k++) {
                    kv->str_index[k] = off;
                    off += 8 + q4k__rd64(r->p + kv->data_offset + off);
                }
            }
        }
    }
    return Q4K_OK;
}

static q4k_result q4k__gguf_alignment(q4k_gguf *g, q4k__rd *r) {
    int64_t i = q4k__index_find(&g->kv_index, "general.alignment", 17);
    const q4k__gguf_kv *kv;
    int neg = 0;
    uint64_t u = 0;
    int64_t s = 0;
    g->alignment = Q4K__GGUF_ALIGN;
    if (i < 0) return Q4K_OK;
    kv = &g->kv[i];
    snprintf(r->ctx, sizeof r->ctx, "key 'general.alignment'");
    if (!q4k__gguf_int(kv->type, r->p + kv->data_offset, &neg, &u, &s))
        return q4k__rfail(r, Q4K_ERR_BAD_ALIGNMENT, kv->kv_offset, "alignment has type %s, must be UINT32",
                          q4k_gguf_type_name(kv->type));
    if (neg)
        return q4k__rfail(r, Q4K_ERR_BAD_ALIGNMENT, kv->data_offset, "alignment %lld is negative", (long long)s);
    if (u == 0 || (u & (u - 1)) || u > Q4K__GGUF_MAX_ALIGN)
        return q4k__rfail(r, Q4K_ERR_BAD_ALIGNMENT, kv->data_offset,
                          "alignment %llu is not a power of two between 1 and 2^30", (unsigned long long)u);
    g->alignment = (size_t)u;
    return Q4K_OK;
}

static q4k_result q4k__gguf_parse_tensors(q4k_gguf *g, q4k__rd *r, uint64_t n_t, int allow) {
    uint64_t i;
    size_t cap = 0;
    int d;
    for (i = 0; i < n_t; i++) {
        uint64_t toff = r->pos, nlen, dims[4], elems, bytes;
        const uint8_t *np;
        uint32_t nd, type;
        q4k_type_info tr;
        q4k_tensor *t;
        uint64_t *no;
        int64_t dup;
        snprintf(r->ctx, sizeof r->ctx, "tensor #%llu", (unsigned long long)i);
        if (q4k__rd_left(r) < 8) return q4k__rd_short(r, 8, "tensor name length");
        nlen = q4k__rd64(r->p + r->pos);
        np = r->p + r->pos + 8;
        if (nlen == 0) return q4k__rfail(r, Q4K_ERR_BAD_TENSOR_NAME, toff, "tensor name is empty");
        if (nlen > Q4K__GGUF_MAX_NAME) {
            uint64_t have = q4k__rd_left(r) - 8;
            q4k__rd_ctx(r, "tensor", np, nlen < have ? nlen : have);
            return q4k__rfail(r, Q4K_ERR_BAD_TENSOR_NAME, toff, "tensor name is %llu bytes, at most %d allowed",
                              (unsigned long long)nlen, Q4K__GGUF_MAX_NAME);
        }
        if (nlen > q4k__rd_left(r) - 8) {
            r->pos += 8;
            return q4k__rd_short(r, nlen, "tensor name");
        }
        q4k__rd_ctx(r, "tensor", np, nlen);
        if (!q4k__utf8_valid(np, (size_t)nlen))
            return q4k__rfail(r, Q4K_ERR_BAD_UTF8, toff + 8, "tensor name is not valid UTF-8");
        if (memchr(np, 0, (size_t)nlen))
            return q4k__rfail(r, Q4K_ERR_BAD_TENSOR_NAME, toff + 8, "tensor name holds a NUL byte");
        r->pos += 8 + (size_t)nlen;
        if (q4k__rd_left(r) < 4) return q4k__rd_short(r, 4, "n_dims");
        nd = q4k__rd32(r->p + r->pos);
        if (nd < 1 || nd > 4) return q4k__rfail(r, Q4K_ERR_BAD_DIMS, r->pos, "n_dims is %u, must be 1..4", nd);
        r->pos += 4;
        if (q4k__rd_left(r) < 8 * nd) return q4k__rd_short(r, 8 * nd, "dims");
        for (d = 0; d < 4; d++) {
            dims[d] = d < (int)nd ? q4k__rd64(r->p + r->pos + 8 * d) : 1;
            if (dims[d] == 0) return q4k__rfail(r, Q4K_ERR_BAD_DIMS, r->pos + 8 * d, "dim %d is 0", d);
            if (dims[d] > (uint64_t)INT64_MAX)
                return q4k__rfail(r, Q4K_ERR_BAD_DIMS, r->pos + 8 * d, "dim %d is %llu, above 2^63-1", d,
                                  (unsigned long long)dims[d]);
        }
        r->pos += 8 * nd;
        if (q4k__rd_left(r) < 12) return q4k__rd_short(r, 12, "tensor type and offset");
        type = q4k__rd32(r->p + r->pos);
        tr = q4k_type_traits((int)type);
        if (!tr.name || !tr.type_size)
            return q4k__rfail(r, Q4K_ERR_BAD_TYPE, r->pos, "type id %u is not a ggml tensor type", type);
        if (!tr.implemented && !allow)
            return q4k__rfail(r, Q4K_ERR_UNSUPPORTED_TYPE, r->pos,
                              "type %s (id %u) is not implemented by q4k, which runs F32, F16, BF16, Q8_0, Q4_0, "
                              "Q5_0, Q4_K, Q5_K and Q6_K",
                              tr.name, type);
        if (dims[0] % (uint64_t)tr.block_size)
            return q4k__rfail(r, Q4K_ERR_BAD_SHAPE, toff, "ne[0] = %llu is not a multiple of the %s block size %lld",
                              (unsigned long long)dims[0], tr.name, (long long)tr.block_size);
        elems = 1;
        bytes = dims[0] / (uint64_t)tr.block_size * tr.type_size;
        for (d = 0; d < 4; d++) {
            if (!q4k__mul_u64(elems, dims[d], &elems) || elems > (uint64_t)INT64_MAX ||
                (d > 0 && !q4k__mul_u64(bytes, dims[d], &bytes)) || bytes > (uint64_t)SIZE_MAX)
                return q4k__rfail(r, Q4K_ERR_OVERFLOW, toff,
                                  "shape [%llu, %llu, %llu, %llu] of %s overflows the element count or byte size",
                                  (unsigned long long)dims[0], (unsigned long long)dims[1],
                                  (unsigned long long)dims[2], (unsigned long long)dims[3], tr.name);
        }
        if ((size_t)g->n_tensors == cap) { /* grown as read: memory follows the bytes actually present */
            size_t nc = cap ? cap * 2 : 64;
            q4k_tensor *nt = (q4k_tensor *)Q4K_REALLOC(g->tensors, nc * sizeof *nt);
            if (!nt) return q4k__gguf_oom(r, "tensor infos");
            g->tensors = nt;
            no = (uint64_t *)Q4K_REALLOC(g->info_off, nc * sizeof *no);
            if (!no) return q4k__gguf_oom(r, "tensor infos");
            g->info_off = no;
            cap = nc;
        }
        t = &g->tensors[g->n_tensors];
        memset(t, 0, sizeof *t);
        t->name = q4k__arena_str(&g->arena, np, (size_t)nlen);
        if (!t->name) return q4k__gguf_oom(r, "tensor names");
        if (!q4k__index_add(&g->tensor_index, t->name, (size_t)nlen, &dup)) return q4k__gguf_oom(r, "the tensor index");
        if (dup >= 0)
            return q4k__rfail(r, Q4K_ERR_DUPLICATE_TENSOR, toff, "duplicate tensor name (also tensor #%lld)",
                              (long long)dup);
        g->n_tensors++;
        t->type = (q4k_type)type;
        t->n_dims = (int)nd;
        for (d = 0; d < 4; d++) t->ne[d] = (int64_t)dims[d];
        t->nbytes = (size_t)bytes;
        t->offset = q4k__rd64(r->p + r->pos + 4);
        g->info_off[i] = toff;
        r->pos += 12;
    }
    return Q4K_OK;
}

typedef struct q4k__span {
    uint64_t start, end;
    int64_t i;
} q4k__span;

static int q4k__span_cmp(const void *a, const void *b) {
    const q4k__span *x = (const q4k__span *)a, *y = (const q4k__span *)b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Offsets aligned, inside the file, no two tensors sharing a byte. */
static q4k_result q4k__gguf_place_tensors(q4k_gguf *g, q4k__rd *r) {
    const uint64_t *info_off = g->info_off;
    int64_t i;
    q4k__span *sp;
    char q[272];
    if (!g->n_tensors) return Q4K_OK;
    for (i = 0; i < g->n_tensors; i++) {
        q4k_tensor *t = &g->tensors[i];
        uint64_t fo;
        q4k__rd_ctx(r, "tensor", t->name, strlen(t->name));
        if (t->offset % g->alignment)
            return q4k__rfail(r, Q4K_ERR_BAD_OFFSET, info_off[i], "data offset %llu is not a multiple of the alignment %zu",
                              (unsigned long long)t->offset, g->alignment);
        if (!q4k__add_u64(g->data_offset, t->offset, &fo) || fo >= g->size)
            return q4k__rfail(r, Q4K_ERR_BAD_OFFSET, info_off[i],
                              "data offset %llu (data section at %zu) is past the end of the file (size %zu)",
                              (unsigned long long)t->offset, g->data_offset, g->size);
        if (t->nbytes > g->size - fo)
            return q4k__rfail(r, Q4K_ERR_TRUNCATED, info_off[i],
                              "data [%llu, %llu) runs %llu bytes past the end of the file (size %zu): truncated",
                              (unsigned long long)fo, (unsigned long long)(fo + t->nbytes),
                              (unsigned long long)(fo + t->nbytes - g->size), g->size);
        t->file_offset = fo;
        t->data = g->data + fo;
        t->index = (int64_t)i;
    }
    sp = (q4k__span *)Q4K_MALLOC((size_t)g->n_tensors * sizeof *sp);
    if (!sp) return q4k__gguf_oom(r, "the overlap check");
    for (i = 0; i < g->n_tensors; i++) {
        sp[i].start = g->tensors[i].file_offset;
        sp[i].end = sp[i].start + g->tensors[i].nbytes;
        sp[i].i = i;
    }
    qsort(sp, (size_t)g->n_tensors, sizeof *sp, q4k__span_cmp);
    for (i = 1; i < g->n_tensors; i++) {
        if (sp[i].start < sp[i - 1].end) {
            const q4k_tensor *a = &g->tensors[sp[i - 1].i], *b = &g->tensors[sp[i].i];
            int64_t bi = sp[i].i;
            q4k__rd_ctx(r, "tensor", b->name, strlen(b->name));
            Q4K_FREE(sp);
            return q4k__rfail(r, Q4K_ERR_TENSOR_OVERLAP, info_off[bi],
                              "data [%llu, %llu) overlaps tensor '%s' at [%llu, %llu)",
                              (unsigned long long)b->file_offset, (unsigned long long)(b->file_offset + b->nbytes),
                              q4k__quote(q, sizeof q, a->name, strlen(a->name)), (unsigned long long)a->file_offset,
                              (unsigned long long)(a->file_offset + a->nbytes));
        }
    }
    Q4K_FREE(sp);
    return Q4K_OK;
}

static q4k_result q4k__gguf_parse(q4k_gguf *g, q4k__rd *r, int allow_unimplemented) {
    uint64_t n_t, n_kv, left, need_kv, need_t, pad;
    uint32_t v;
    q4k_result res;
    snprintf(r->ctx, sizeof r->ctx, "header");
    if (r->size == 0) return q4k__rfail(r, Q4K_ERR_NOT_GGUF, 0, "the file is empty (0 bytes), not a GGUF file");
    if (r->size < 4 || memcmp(r->p, "GGUF", 4)) return q4k__gguf_sniff(r);
    if (r->size < 24)
        return q4k__rfail(r, Q4K_ERR_TRUNCATED, r->size, "the header needs 24 bytes, the file has %zu: truncated", r->size);
    v = q4k__rd32(r->p + 4);
    if (v == 1)
        return q4k__rfail(r, Q4K_ERR_BAD_VERSION, 4,
                          "GGUF version 1 (32-bit counts) is not supported: convert the model again with a "
                          "current llama.cpp (q4k reads versions 2 and 3)");
    if (v != 2 && v != 3) {
        uint32_t sw = (v >> 24) | (v >> 8 & 0xff00u) | (v << 8 & 0xff0000u) | (v << 24);
        if (sw == 2 || sw == 3)
            return q4k__rfail(r, Q4K_ERR_BAD_VERSION, 4,
                              "version %u byte-swapped: a big-endian GGUF; q4k reads little-endian files only", sw);
        return q4k__rfail(r, Q4K_ERR_BAD_VERSION, 4, "GGUF version %u is not supported (q4k reads versions 2 and 3)", v);
    }
    g->version = v;
    n_t = q4k__rd64(r->p + 8);
    n_kv = q4k__rd64(r->p + 16);
    r->pos = 24;
    left = q4k__rd_left(r);
    if (!q4k__mul_u64(n_kv, Q4K__GGUF_MIN_KV, &need_kv) || need_kv > left)
        return q4k__rfail(r, Q4K_ERR_BAD_COUNT, 16, "kv_count %llu cannot fit in the %llu bytes after the header",
                          (unsigned long long)n_kv, (unsigned long long)left);
    if (!q4k__mul_u64(n_t, Q4K__GGUF_MIN_TENSOR, &need_t) || need_t > left - need_kv)
        return q4k__rfail(r, Q4K_ERR_BAD_COUNT, 8,
                          "tensor_count %llu cannot fit in the %llu bytes after the header (with %llu keys)",
                          (unsigned long long)n_t, (unsigned long long)left, (unsigned long long)n_kv);
    if ((res = q4k__gguf_parse_kvs(g, r, n_kv)) != Q4K_OK) return res;
    if ((res = q4k__gguf_alignment(g, r)) != Q4K_OK) return res;
    snprintf(r->ctx, sizeof r->ctx, "tensor infos");
    if (n_t > q4k__rd_left(r) / Q4K__GGUF_MIN_TENSOR)
        return q4k__rfail(r, Q4K_ERR_BAD_COUNT, r->pos,
                          "tensor_count %llu cannot fit in the %llu bytes left after the metadata",
                          (unsigned long long)n_t, (unsigned long long)q4k__rd_left(r));
    if ((res = q4k__gguf_parse_tensors(g, r, n_t, allow_unimplemented)) != Q4K_OK) return res;
    pad = (g->alignment - r->pos % g->alignment) % g->alignment;
    g->data_offset = r->pos + (size_t)pad;
    if (g->data_offset < r->pos) g->data_offset = SIZE_MAX; /* wrapped: every tensor is then out of the file */
    return q4k__gguf_place_tensors(g, r);
}

Q4K_API void q4k_gguf_close(q4k_gguf *g) {
    int64_t i;
    if (!g) return;
    for (i = 0; i < g->n_kv; i++) Q4K_FREE(g->kv[i].str_index);
    Q4K_FREE(g->kv);
    Q4K_FREE(g->tensors);
    Q4K_FREE(g->info_off);
    q4k__index_free(&g->kv_index);
    q4k__index_free(&g->tensor_index);
    q4k__arena_free(g->arena);
#ifdef Q4K__POSIX_IO
    if (g->map) munmap(g->map, g->map_size);
#endif
    Q4K_FREE(g->owned);
    Q4K_FREE(g->path);
    Q4K_FREE(g);
}

static q4k_result q4k__gguf_finish(q4k_gguf *g, const q4k_gguf_desc *desc, q4k_gguf **out, q4k_error *err) {
    q4k__rd r;
    q4k_error local;
    q4k_result res;
    memset(&r, 0, sizeof r);
    r.p = g->data;
    r.size = g->size;
    r.path = g->path;
    r.err = err ? err : &local;
    res = q4k__gguf_parse(g, &r, desc && desc->allow_unimplemented);
    if (res != Q4K_OK) {
        if (desc) q4k__log(desc->log, desc->log_user, Q4K_LOG_ERROR, "%s", r.err->msg);
        q4k_gguf_close(g);
        return res;
    }
    if (err) {
        err->code = Q4K_OK;
        err->msg[0] = 0;
    }
    if (desc)
        q4k__log(desc->log, desc->log_user, Q4K_LOG_INFO, "%s: GGUF v%u, %lld keys, %lld tensors, %zu bytes%s",
                 g->path ? g->path : "(memory)", (unsigned)g->version, (long long)g->n_kv,
                 (long long)g->n_tensors, g->size, g->map ? " (mapped)" : "");
    *out = g;
    return Q4K_OK;
}

static q4k_gguf *q4k__gguf_new(void) {
    q4k_gguf *g = (q4k_gguf *)Q4K_MALLOC(sizeof *g);
    if (g) memset(g, 0, sizeof *g);
    return g;
}

Q4K_API q4k_result q4k_gguf_open_memory(const void *data, size_t size, const q4k_gguf_desc *desc, q4k_gguf **out,
                                        q4k_error *err) {
    q4k_gguf *g;
    if (!out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_gguf_open_memory: out is NULL");
    *out = NULL;
    if (!data && size) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_gguf_open_memory: data is NULL");
    if (!(g = q4k__gguf_new())) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "out of memory");
    g->data = data ? (const uint8_t *)data : (const uint8_t *)"";
    g->size = size;
    return q4k__gguf_finish(g, desc, out, err);
}

#ifndef Q4K__POSIX_IO
/* Reads a whole file into g->owned (systems without POSIX I/O). */
static q4k_result q4k__gguf_read_stream(q4k_gguf *g, const char *path, q4k_error *err) {
    FILE *f = fopen(path, "rb");
    size_t cap = 0, n = 0, got;
    if (!f) return q4k__fail(err, Q4K_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1u << 20;
            uint8_t *p = nc > cap ? (uint8_t *)Q4K_REALLOC(g->owned, nc) : NULL;
            if (!p) {
                fclose(f);
                return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: out of memory reading the file (%zu bytes so far)", path, n);
            }
            g->owned = p;
            cap = nc;
        }
        got = fread(g->owned + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        fclose(f);
        return q4k__fail(err, Q4K_ERR_IO, "%s: read error", path);
    }
    fclose(f);
    g->data = g->owned;
    g->size = n;
    return Q4K_OK;
}
#endif

#ifdef Q4K__POSIX_IO
/* A pipe, FIFO or device has no size to map: it is read as a stream, but
   only while it looks like a GGUF file (/dev/zero fails at its first 4 bytes)
   and only up to this machine's memory. */
static q4k_result q4k__gguf_read_fd(q4k_gguf *g, int fd, const char *path, const char *kind, q4k_error *err) {
    size_t cap = 0, n = 0, limit = SIZE_MAX / 2;
    const char *source;
    uint64_t avail = q4k_host_memory_available(&source);
    if (avail < (uint64_t)limit) limit = (size_t)avail;
    for (;;) {
        ssize_t got;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1u << 16;
            uint8_t *p;
            if (cap >= limit) {
                close(fd);
                return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY,
                                 "%s: a %s longer than the host's available memory (%zu bytes, %s): not read further",
                                 path, kind, n, source);
            }
            if (nc > limit) nc = limit;
            if (!(p = (uint8_t *)Q4K_REALLOC(g->owned, nc))) {
                close(fd);
                return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: out of memory reading the %s (%zu bytes so far)", path, kind, n);
            }
            g->owned = p;
            cap = nc;
        }
        got = read(fd, g->owned + n, n < 4 ? 4 - n : cap - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            return q4k__fail(err, Q4K_ERR_IO, "%s: read error in the %s at byte %zu: %s", path, kind, n, strerror(e));
        }
        if (got == 0) break;
        n += (size_t)got;
        if (n == 4 && memcmp(g->owned, "GGUF", 4) != 0) {
            char q[272];
            close(fd);
            return q4k__fail(err, Q4K_ERR_NOT_GGUF, "%s: a %s, not a regular file, and it starts with '%s', not 'GGUF'", path,
                             kind, q4k__quote(q, sizeof q, g->owned, 4));
        }
    }
    close(fd);
    if (n == 0)
        return q4k__fail(err, Q4K_ERR_IO, "%s: a %s, not a regular file, and it gave no data%s", path, kind,
                         strcmp(kind, "FIFO") ? "" : " (nothing had it open for writing)");
    g->data = g->owned;
    g->size = n;
    return Q4K_OK;
}
#endif

static q4k_result q4k__gguf_load(q4k_gguf *g, const char *path, int no_mmap, q4k_error *err) {
#ifdef Q4K__POSIX_IO
    struct stat st;
    size_t size, got = 0;
    /* O_NONBLOCK: opening a FIFO that no one writes to must not wait forever;
       it is cleared again before a stream is read */
    int fd = open(path, O_RDONLY | O_NONBLOCK), e;
    if (fd < 0) return q4k__fail(err, Q4K_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        e = errno;
        close(fd);
        return q4k__fail(err, Q4K_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return q4k__fail(err, Q4K_ERR_IO, "%s: is a directory, not a file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        int fl = fcntl(fd, F_GETFL);
        if (fl == -1 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
            e = errno;
            close(fd);
            return q4k__fail(err, Q4K_ERR_IO, "%s: cannot read: %s", path, strerror(e));
        }
        return q4k__gguf_read_fd(g, fd, path,
                                 S_ISFIFO(st.st_mode) ? "FIFO" : S_ISCHR(st.st_mode) ? "character device"
                                 : S_ISBLK(st.st_mode) ? "block device" : "special file",
                                 err);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return q4k__fail(err, Q4K_ERR_IO, "%s: too large for this address space", path);
    }
    size = (size_t)st.st_size;
    g->data = (const uint8_t *)"";
    g->size = 0;
    if (size == 0) {
        close(fd);
        return Q4K_OK;
    }
    if (!no_mmap) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            close(fd);
            g->map = m;
            g->map_size = size;
            g->data = (const uint8_t *)m;
            g->size = size;
            return Q4K_OK;
        }
    }
    {
        /* a copy that cannot fit would only be found out by the OOM killer */
        const char *source;
        uint64_t avail = q4k_host_memory_available(&source);
        if ((uint64_t)size > avail) {
            close(fd);
            return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY,
                             "%s: reading the file into memory (no mmap) needs %zu bytes but %llu are available (%s)", path,
                             size, (unsigned long long)avail, source);
        }
    }
    g->owned = (uint8_t *)Q4K_MALLOC(size);
    if (!g->owned) {
        close(fd);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", path, size);
    }
    while (got < size) {
        size_t want = size - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : size - got;
        ssize_t n = read(fd, g->owned + got, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            e = errno;
            close(fd);
            return q4k__fail(err, Q4K_ERR_IO, "%s: read error at byte %zu: %s", path, got, strerror(e));
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    close(fd);
    if (got != size) return q4k__fail(err, Q4K_ERR_IO, "%s: file shrank while reading (%zu of %zu bytes)", path, got, size);
    g->data = g->owned;
    g->size = size;
    return Q4K_OK;
#else
    (void)no_mmap;
    return q4k__gguf_read_stream(g, path, err);
#endif
}

Q4K_API q4k_result q4k_gguf_open_file(const char *path, const q4k_gguf_desc *desc, q4k_gguf **out, q4k_error *err) {
    q4k_gguf *g;
    q4k_result res;
    q4k_error local;
    size_t n;
    if (!out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_gguf_open_file: out is NULL");
    *out = NULL;
    if (!path) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_gguf_open_file: path is NULL");
    if (!(g = q4k__gguf_new())) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "out of memory");
    n = strlen(path);
    g->path = (char *)Q4K_MALLOC(n + 1);
    if (!g->path) {
        Q4K_FREE(g);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(g->path, path, n + 1);
    res = q4k__gguf_load(g, path, desc && desc->no_mmap, err ? err : &local);
    if (res != Q4K_OK) {
        if (desc) q4k__log(desc->log, desc->log_user, Q4K_LOG_ERROR, "%s", (err ? err : &local)->msg);
        q4k_gguf_close(g);
        return res;
    }
    return q4k__gguf_finish(g, desc, out, err);
}

Q4K_API uint32_t q4k_gguf_version(const q4k_gguf *g) { return g ? g->version : 0; }
Q4K_API size_t q4k_gguf_alignment(const q4k_gguf *g) { return g ? g->alignment : 0; }
Q4K_API size_t q4k_gguf_file_size(const q4k_gguf *g) { return g ? g->size : 0; }
Q4K_API size_t q4k_gguf_data_offset(const q4k_gguf *g) { return g ? g->data_offset : 0; }
Q4K_API int64_t q4k_gguf_key_count(const q4k_gguf *g) { return g ? g->n_kv : 0; }

Q4K_API const char *q4k_gguf_key(const q4k_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

Q4K_API q4k_gguf_type q4k_gguf_key_type(const q4k_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? g->kv[i].type : Q4K_GGUF_TYPE_COUNT;
}

Q4K_API int64_t q4k_gguf_find_key(const q4k_gguf *g, const char *key) {
    if (!g || !key) return -1;
    return q4k__index_find(&g->kv_index, key, strlen(key));
}

static const q4k__gguf_kv *q4k__gguf_kv_of(const q4k_gguf *g, const char *key) {
    int64_t i = q4k_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

/* the integer value of a key, range-checked by the caller */
static q4k_result q4k__gguf_get_int(const q4k_gguf *g, const char *key, int *neg, uint64_t *u, int64_t *s) {
    const q4k__gguf_kv *kv;
    if (!g || !key) return Q4K_ERR_INVALID_ARG;
    if (!(kv = q4k__gguf_kv_of(g, key))) return Q4K_ERR_NOT_FOUND;
    if (!q4k__gguf_int(kv->type, g->data + kv->data_offset, neg, u, s)) return Q4K_ERR_TYPE_MISMATCH;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_u32(const q4k_gguf *g, const char *key, uint32_t *out) {
    int neg = 0;
    uint64_t u = 0;
    int64_t s = 0;
    q4k_result res = q4k__gguf_get_int(g, key, &neg, &u, &s);
    if (res != Q4K_OK) return res;
    if (neg || u > UINT32_MAX) return Q4K_ERR_TYPE_MISMATCH;
    if (out) *out = (uint32_t)u;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_i32(const q4k_gguf *g, const char *key, int32_t *out) {
    int neg = 0;
    uint64_t u = 0;
    int64_t s = 0;
    q4k_result res = q4k__gguf_get_int(g, key, &neg, &u, &s);
    if (res != Q4K_OK) return res;
    if (neg ? s < INT32_MIN : u > (uint64_t)INT32_MAX) return Q4K_ERR_TYPE_MISMATCH;
    if (out) *out = neg ? (int32_t)s : (int32_t)u;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_u64(const q4k_gguf *g, const char *key, uint64_t *out) {
    int neg = 0;
    uint64_t u = 0;
    int64_t s = 0;
    q4k_result res = q4k__gguf_get_int(g, key, &neg, &u, &s);
    if (res != Q4K_OK) return res;
    if (neg) return Q4K_ERR_TYPE_MISMATCH;
    if (out) *out = u;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_i64(const q4k_gguf *g, const char *key, int64_t *out) {
    int neg = 0;
    uint64_t u = 0;
    int64_t s = 0;
    q4k_result res = q4k__gguf_get_int(g, key, &neg, &u, &s);
    if (res != Q4K_OK) return res;
    if (!neg && u > (uint64_t)INT64_MAX) return Q4K_ERR_TYPE_MISMATCH;
    if (out) *out = neg ? s : (int64_t)u;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_f64(const q4k_gguf *g, const char *key, double *out) {
    const q4k__gguf_kv *kv;
    if (!g || !key) return Q4K_ERR_INVALID_ARG;
    if (!(kv = q4k__gguf_kv_of(g, key))) return Q4K_ERR_NOT_FOUND;
    if (kv->type != Q4K_GGUF_FLOAT32 && kv->type != Q4K_GGUF_FLOAT64) return Q4K_ERR_TYPE_MISMATCH;
    if (out) *out = q4k__gguf_float(kv->type, g->data + kv->data_offset);
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_f32(const q4k_gguf *g, const char *key, float *out) {
    double d = 0;
    q4k_result res = q4k_gguf_get_f64(g, key, &d);
    if (res == Q4K_OK && out) *out = (float)d;
    return res;
}

Q4K_API q4k_result q4k_gguf_get_bool(const q4k_gguf *g, const char *key, int *out) {
    const q4k__gguf_kv *kv;
    if (!g || !key) return Q4K_ERR_INVALID_ARG;
    if (!(kv = q4k__gguf_kv_of(g, key))) return Q4K_ERR_NOT_FOUND;
    if (kv->type != Q4K_GGUF_BOOL) return Q4K_ERR_TYPE_MISMATCH;
    if (out) *out = g->data[kv->data_offset];
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_str(const q4k_gguf *g, const char *key, const char **out) {
    const q4k__gguf_kv *kv;
    if (!g || !key) return Q4K_ERR_INVALID_ARG;
    if (!(kv = q4k__gguf_kv_of(g, key))) return Q4K_ERR_NOT_FOUND;
    if (kv->type != Q4K_GGUF_STRING) return Q4K_ERR_TYPE_MISMATCH;
    if (out) *out = kv->str;
    return Q4K_OK;
}

static void q4k__gguf_kv_view(const q4k_gguf *g, const q4k__gguf_kv *kv, q4k_gguf_value *v) {
    memset(v, 0, sizeof *v);
    v->type = kv->type;
    v->elem_type = kv->type == Q4K_GGUF_ARRAY ? kv->elem_type : Q4K_GGUF_TYPE_COUNT;
    v->count = kv->count;
    v->data = g->data + kv->data_offset;
    v->size = kv->size;
    v->file_offset = kv->data_offset;
    v->str_index = kv->str_index;
}

Q4K_API q4k_result q4k_gguf_get_value(const q4k_gguf *g, const char *key, q4k_gguf_value *out) {
    const q4k__gguf_kv *kv;
    if (!g || !key || !out) return Q4K_ERR_INVALID_ARG;
    if (!(kv = q4k__gguf_kv_of(g, key))) return Q4K_ERR_NOT_FOUND;
    q4k__gguf_kv_view(g, kv, out);
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_key_value(const q4k_gguf *g, int64_t i, q4k_gguf_value *out) {
    if (!g || !out) return Q4K_ERR_INVALID_ARG;
    if (i < 0 || i >= g->n_kv) return Q4K_ERR_NOT_FOUND;
    q4k__gguf_kv_view(g, &g->kv[i], out);
    return Q4K_OK;
}

/* Bytes of the encoding of one value of type t at p (avail bytes); 0 when
   it does not fit. Values of an open q4k_gguf always fit; the checks guard
   hand-made views. */
static uint64_t q4k__gguf_enc_size(const uint8_t *p, uint64_t avail, uint32_t t, int depth) {
    size_t sz = q4k__gguf_scalar_size(t);
    uint64_t n, k, off, e, need;
    uint32_t et;
    if (sz) return sz <= avail ? sz : 0;
    if (avail < (t == Q4K_GGUF_STRING ? 8u : 12u)) return 0;
    if (t == Q4K_GGUF_STRING) {
        n = q4k__rd64(p);
        return n <= avail - 8 ? 8 + n : 0;
    }
    if (t != Q4K_GGUF_ARRAY || depth > Q4K__GGUF_MAX_DEPTH) return 0;
    et = q4k__rd32(p);
    n = q4k__rd64(p + 4);
    if ((sz = q4k__gguf_scalar_size(et)) != 0)
        return q4k__mul_u64(n, sz, &need) && need <= avail - 12 ? 12 + need : 0;
    for (k = 0, off = 12; k < n; k++) {
        if (!(e = q4k__gguf_enc_size(p + off, avail - off, et, depth + 1))) return 0;
        off += e;
    }
    return off;
}

Q4K_API q4k_result q4k_gguf_value_elem(const q4k_gguf_value *arr, uint64_t i, q4k_gguf_value *out) {
    const uint8_t *p;
    uint64_t off = 0, k, e;
    size_t sz;
    if (!arr || !out) return Q4K_ERR_INVALID_ARG;
    if (arr->type != Q4K_GGUF_ARRAY) return Q4K_ERR_TYPE_MISMATCH;
    if (i >= arr->count) return Q4K_ERR_INVALID_ARG;
    p = (const uint8_t *)arr->data;
    memset(out, 0, sizeof *out);
    out->type = arr->elem_type;
    out->elem_type = Q4K_GGUF_TYPE_COUNT;
    if ((sz = q4k__gguf_scalar_size(arr->elem_type)) != 0) {
        if (i >= arr->size / sz) return Q4K_ERR_INVALID_ARG;
        off = i * sz;
        out->count = 1;
        out->size = sz;
        out->data = p + off;
        out->file_offset = arr->file_offset + off;
        return Q4K_OK;
    }
    if (arr->elem_type == Q4K_GGUF_STRING && arr->str_index) {
        off = arr->str_index[i];
    } else {
        for (k = 0; k < i; k++) {
            if (!(e = q4k__gguf_enc_size(p + off, arr->size - off, arr->elem_type, 1))) return Q4K_ERR_INVALID_ARG;
            off += e;
        }
    }
    if (!(e = q4k__gguf_enc_size(p + off, arr->size - off, arr->elem_type, 1))) return Q4K_ERR_INVALID_ARG;
    if (arr->elem_type == Q4K_GGUF_STRING) {
        out->count = out->size = e - 8;
        out->data = p + off + 8;
        out->file_offset = arr->file_offset + off + 8;
    } else if (arr->elem_type == Q4K_GGUF_ARRAY) {
        out->elem_type = (q4k_gguf_type)q4k__rd32(p + off);
        out->count = q4k__rd64(p + off + 4);
        out->data = p + off + 12;
        out->size = e - 12;
        out->file_offset = arr->file_offset + off + 12;
    } else {
        return Q4K_ERR_INVALID_ARG;
    }
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_arr(const q4k_gguf *g, const char *key, q4k_gguf_type *elem_type, uint64_t *count) {
    const q4k__gguf_kv *kv;
    if (!g || !key) return Q4K_ERR_INVALID_ARG;
    if (!(kv = q4k__gguf_kv_of(g, key))) return Q4K_ERR_NOT_FOUND;
    if (kv->type != Q4K_GGUF_ARRAY) return Q4K_ERR_TYPE_MISMATCH;
    if (elem_type) *elem_type = kv->elem_type;
    if (count) *count = kv->count;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_arr_data(const q4k_gguf *g, const char *key, const void **data) {
    const q4k__gguf_kv *kv;
    if (!g || !key) return Q4K_ERR_INVALID_ARG;
    if (!(kv = q4k__gguf_kv_of(g, key))) return Q4K_ERR_NOT_FOUND;
    if (kv->type != Q4K_GGUF_ARRAY || !q4k__gguf_scalar_size(kv->elem_type)) return Q4K_ERR_TYPE_MISMATCH;
    if (data) *data = g->data + kv->data_offset;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_get_arr_str(const q4k_gguf *g, const char *key, uint64_t i, const char **s, size_t *len) {
    const q4k__gguf_kv *kv;
    uint64_t off;
    if (!g || !key) return Q4K_ERR_INVALID_ARG;
    if (!(kv = q4k__gguf_kv_of(g, key))) return Q4K_ERR_NOT_FOUND;
    if (kv->type != Q4K_GGUF_ARRAY || kv->elem_type != Q4K_GGUF_STRING) return Q4K_ERR_TYPE_MISMATCH;
    if (i >= kv->count) return Q4K_ERR_INVALID_ARG;
    off = kv->data_offset + kv->str_index[i];
    if (s) *s = (const char *)g->data + off + 8;
    if (len) *len = (size_t)q4k__rd64(g->data + off);
    return Q4K_OK;
}

Q4K_API int64_t q4k_gguf_tensor_count(const q4k_gguf *g) { return g ? g->n_tensors : 0; }

Q4K_API const q4k_tensor *q4k_gguf_tensor(const q4k_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

Q4K_API const q4k_tensor *q4k_gguf_find_tensor(const q4k_gguf *g, const char *name) {
    int64_t i;
    if (!g || !name) return NULL;
    i = q4k__index_find(&g->tensor_index, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}

/* ---- printing ---------------------------------------------------------- */

/* JSON: escaped, invalid UTF-8 as U+FFFD. Text: quoted with C escapes,
   invalid bytes as \xNN, cut after max bytes with the length noted. */
static void q4k__print_str(FILE *f, const uint8_t *s, uint64_t n, int json, uint64_t max) {
    uint64_t i = 0, lim = json ? n : (n < max ? n : max);
    fputc('"', f);
    while (i < lim) {
        uint8_t c = s[i];
        size_t k;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, json ? "\\u%04x" : "\\x%02x", c);
        else if (c < 0x80) fputc(c, f);
        else if ((k = q4k__utf8_seq(s + i, (size_t)(n - i))) != 0) {
            fwrite(s + i, 1, k, f);
            i += k;
            continue;
        } else if (json) fputs("\\ufffd", f);
        else fprintf(f, "\\x%02x", c);
        i++;
    }
    fputc('"', f);
    if (i < n) fprintf(f, "... (%llu bytes)", (unsigned long long)n);
}

/* shortest %g that reads back as the same value; non-finite as a string */
static void q4k__print_float(FILE *f, double v, int f32, int json) {
    char buf[400]; /* %.17g needs 25; gcc assumes the worst case of %g */
    int p;
    if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) {
        const char *s = v != v ? "nan" : v > 0 ? "inf" : "-inf";
        fprintf(f, json ? "\"%s\"" : "%s", s);
        return;
    }
    for (p = f32 ? 6 : 15; p < (f32 ? 9 : 17); p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (f32 ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
    }
    snprintf(buf, sizeof buf, "%.*g", p, v);
    fputs(buf, f);
}

static void q4k__print_value(FILE *f, const q4k_gguf_value *v, int json, int depth);

/* the elements of an array: "[a, b, ... (N total)]" or, in JSON, the
   members "elem_type", "count", "value" (first elements), "truncated" */
static void q4k__print_array(FILE *f, const q4k_gguf_value *v, int json, int depth) {
    uint64_t show = depth <= 1 ? Q4K__GGUF_SHOW : depth == 2 ? 4 : 2, i; /* bounded output for deep nests */
    q4k_gguf_value e;
    if (show > v->count) show = v->count;
    if (json)
        fprintf(f, "\"elem_type\": \"%s\", \"count\": %llu, \"value\": [", q4k_gguf_type_name(v->elem_type),
                (unsigned long long)v->count);
    else
        fputc('[', f);
    for (i = 0; i < show; i++) {
        if (i) fputs(", ", f);
        if (q4k_gguf_value_elem(v, i, &e) != Q4K_OK) break;
        q4k__print_value(f, &e, json, depth + 1);
    }
    if (json) fprintf(f, "], \"truncated\": %s", show < v->count ? "true" : "false");
    else if (show < v->count) fprintf(f, "%s... (%llu total)]", show ? ", " : "", (unsigned long long)v->count);
    else fputc(']', f);
}

static void q4k__print_value(FILE *f, const q4k_gguf_value *v, int json, int depth) {
    const uint8_t *p = (const uint8_t *)v->data;
    int neg = 0;
    uint64_t u = 0;
    int64_t s = 0;
    if (q4k__gguf_int(v->type, p, &neg, &u, &s)) {
        if (neg) fprintf(f, "%lld", (long long)s);
        else fprintf(f, "%llu", (unsigned long long)u);
    } else if (v->type == Q4K_GGUF_FLOAT32 || v->type == Q4K_GGUF_FLOAT64) {
        q4k__print_float(f, q4k__gguf_float(v->type, p), v->type == Q4K_GGUF_FLOAT32, json);
    } else if (v->type == Q4K_GGUF_BOOL) {
        fputs(p[0] ? "true" : "false", f);
    } else if (v->type == Q4K_GGUF_STRING) {
        q4k__print_str(f, p, v->size, json, depth ? 40 : 120);
    } else if (v->type == Q4K_GGUF_ARRAY) {
        if (json && depth) fputc('{', f);
        q4k__print_array(f, v, json, depth ? depth : 1);
        if (json && depth) fputc('}', f);
    }
}

/* tensor names are valid UTF-8 but may hold control characters */
static void q4k__print_name(FILE *f, const char *s, int width) {
    int n = 0;
    for (; *s; s++, n++) {
        if ((uint8_t)*s < 0x20 || *s == 0x7f) {
            fprintf(f, "\\x%02x", (uint8_t)*s);
            n += 3;
        } else {
            fputc(*s, f);
            if (((uint8_t)*s & 0xc0) == 0x80) n--; /* continuation byte: same column */
        }
    }
    for (; n < width; n++) fputc(' ', f);
}

static void q4k__print_shape(FILE *f, const q4k_tensor *t, int width) {
    char buf[128];
    int o = 0, d;
    for (d = 0; d < t->n_dims; d++)
        o += snprintf(buf + o, sizeof buf - (size_t)o, "%s%lld", d ? ", " : "[", (long long)t->ne[d]);
    snprintf(buf + o, sizeof buf - (size_t)o, "]");
    fprintf(f, "%-*s", width, buf);
}

Q4K_API void q4k_gguf_print(const q4k_gguf *g, FILE *f, int json) {
    int64_t i, n_by_type[Q4K_TYPE_COUNT];
    uint64_t bytes = 0, params = 0, bytes_by_type[Q4K_TYPE_COUNT];
    int kw = 8, nw = 4, first, unimpl = 0, d;
    q4k_gguf_value v;
    if (!g || !f) return;
    memset(n_by_type, 0, sizeof n_by_type);
    memset(bytes_by_type, 0, sizeof bytes_by_type);
    for (i = 0; i < g->n_tensors; i++) {
        const q4k_tensor *t = &g->tensors[i];
        uint64_t el = 1;
        for (d = 0; d < 4; d++) el *= (uint64_t)t->ne[d];
        bytes += t->nbytes;
        params += el;
        if ((int)t->type >= 0 && (int)t->type < Q4K_TYPE_COUNT) {
            n_by_type[t->type]++;
            bytes_by_type[t->type] += t->nbytes;
        }
        if (!q4k_type_traits((int)t->type).implemented) unimpl++;
        if ((int)strlen(t->name) > nw) nw = (int)strlen(t->name);
    }
    if (json) {
        fputs("{\"file\": ", f);
        if (g->path) q4k__print_str(f, (const uint8_t *)g->path, strlen(g->path), 1, 0);
        else fputs("null", f);
        fprintf(f, ", \"file_size\": %zu, \"version\": %u, \"alignment\": %zu, \"data_offset\": %zu,\n", g->size,
                (unsigned)g->version, g->alignment, g->data_offset);
        fprintf(f, " \"key_count\": %lld, \"tensor_count\": %lld, \"tensor_bytes\": %llu, \"parameters\": %llu,\n",
                (long long)g->n_kv, (long long)g->n_tensors, (unsigned long long)bytes, (unsigned long long)params);
        fputs(" \"metadata\": [", f);
        for (i = 0; i < g->n_kv; i++) {
            q4k_gguf_key_value(g, i, &v);
            fputs(i ? ",\n  {\"key\": " : "\n  {\"key\": ", f);
            q4k__print_str(f, (const uint8_t *)g->kv[i].key, g->kv[i].key_len, 1, 0);
            fprintf(f, ", \"type\": \"%s\", ", q4k_gguf_type_name(v.type));
            if (v.type == Q4K_GGUF_ARRAY) {
                q4k__print_array(f, &v, 1, 1);
            } else {
                fputs("\"value\": ", f);
                q4k__print_value(f, &v, 1, 0);
            }
            fputc('}', f);
        }
        fputs("],\n \"tensors\": [", f);
        for (i = 0; i < g->n_tensors; i++) {
            const q4k_tensor *t = &g->tensors[i];
            fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", f);
            q4k__print_str(f, (const uint8_t *)t->name, strlen(t->name), 1, 0);
            fprintf(f, ", \"type\": \"%s\", \"type_id\": %d, \"implemented\": %s, \"shape\": [", q4k_type_name((int)t->type),
                    (int)t->type, q4k_type_traits((int)t->type).implemented ? "true" : "false");
            for (d = 0; d < t->n_dims; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
            fprintf(f, "], \"bytes\": %zu, \"offset\": %llu, \"file_offset\": %llu}", t->nbytes,
                    (unsigned long long)t->offset, (unsigned long long)t->file_offset);
        }
        fputs("]}\n", f);
        return;
    }
    for (i = 0; i < g->n_kv; i++)
        if ((int)g->kv[i].key_len > kw) kw = g->kv[i].key_len > 48 ? 48 : (int)g->kv[i].key_len;
    fprintf(f, "file: %s\n", g->path ? g->path : "(memory)");
    fprintf(f, "GGUF v%u, %zu bytes, alignment %zu, data section at offset %zu\n", (unsigned)g->version, g->size,
            g->alignment, g->data_offset);
    fprintf(f, "metadata: %lld keys\n", (long long)g->n_kv);
    for (i = 0; i < g->n_kv; i++) {
        char ty[32];
        q4k_gguf_key_value(g, i, &v);
        if (v.type == Q4K_GGUF_ARRAY) snprintf(ty, sizeof ty, "[%s]", q4k_gguf_type_name(v.elem_type));
        else snprintf(ty, sizeof ty, "%s", q4k_gguf_type_name(v.type));
        fputs("  ", f);
        q4k__print_name(f, g->kv[i].key, kw);
        fprintf(f, "  %-9s ", ty);
        q4k__print_value(f, &v, 0, 0);
        fputc('\n', f);
    }
    fprintf(f, "tensors: %lld, %llu bytes, %llu parameters\n", (long long)g->n_tensors, (unsigned long long)bytes,
            (unsigned long long)params);
    if (g->n_tensors) {
        fprintf(f, "  %5s  %-*s  %-7s  %-26s %12s %12s\n", "#", nw, "name", "type", "shape", "bytes", "offset");
        for (i = 0; i < g->n_tensors; i++) {
            const q4k_tensor *t = &g->tensors[i];
            char ty[16];
            snprintf(ty, sizeof ty, "%s%s", q4k_type_name((int)t->type),
                     q4k_type_traits((int)t->type).implemented ? "" : "*");
            fprintf(f, "  %5lld  ", (long long)i);
            q4k__print_name(f, t->name, nw);
            fprintf(f, "  %-7s  ", ty);
            q4k__print_shape(f, t, 26);
            fprintf(f, " %12zu %12llu\n", t->nbytes, (unsigned long long)t->offset);
        }
        fputs("types:", f);
        for (i = 0, first = 1; i < Q4K_TYPE_COUNT; i++) {
            if (!n_by_type[i]) continue;
            fprintf(f, "%s %s x %lld (%llu bytes)", first ? "" : ",", q4k_type_name((int)i), (long long)n_by_type[i],
                    (unsigned long long)bytes_by_type[i]);
            first = 0;
        }
        fputc('\n', f);
        if (unimpl) fprintf(f, "* %d tensor%s of a type q4k does not implement: q4k cannot run this model\n", unimpl, unimpl == 1 ? "" : "s");
    }
}

/* ---- writer ------------------------------------------------------------ */

typedef struct q4k__wbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} q4k__wbuf;

static void q4k__wbuf_put(q4k__wbuf *b, const void *d, size_t n) {
    if (b->oom || !n) return;
    if (n > b->cap - b->n) {
        size_t nc = b->cap ? b->cap : 256;
        uint8_t *p;
        while (nc - b->n < n) {
            if (nc > SIZE_MAX / 2) { b->oom = 1; return; }
            nc *= 2;
        }
        if (!(p = (uint8_t *)Q4K_REALLOC(b->p, nc))) { b->oom = 1; return; }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void q4k__wbuf_u32(q4k__wbuf *b, uint32_t v) {
    uint8_t x[4];
    int i;
    for (i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    q4k__wbuf_put(b, x, 4);
}

static void q4k__wbuf_u64(q4k__wbuf *b, uint64_t v) {
    uint8_t x[8];
    int i;
    for (i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    q4k__wbuf_put(b, x, 8);
}

typedef struct q4k__wkv {
    char *key;
    size_t key_len;
    uint8_t *val; /* u32 type + encoded value */
    size_t val_size;
} q4k__wkv;

typedef struct q4k__wtensor {
    char *name;
    q4k_type type;
    int n_dims;
    int64_t ne[4];
    uint64_t nbytes, offset;
    const void *data;
} q4k__wtensor;

struct q4k_gguf_writer {
    uint32_t alignment;
    q4k__wkv *kv;
    size_t n_kv, cap_kv;
    q4k__wtensor *t;
    size_t n_t, cap_t;
    q4k__index kv_index, t_index;
    q4k_error first; /* first failed set/add; code Q4K_OK when none */
    FILE *f;         /* while streaming */
    char *path;
    size_t next;     /* next tensor to stream */
};

static q4k_result q4k__wfail(q4k_gguf_writer *w, q4k_result code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static q4k_result q4k__wfail(q4k_gguf_writer *w, q4k_result code, const char *fmt, ...) {
    va_list ap;
    if (w->first.code != Q4K_OK) return code;
    w->first.code = code;
    va_start(ap, fmt);
    vsnprintf(w->first.msg, sizeof w->first.msg, fmt, ap);
    va_end(ap);
    return code;
}

static char *q4k__strdup(const char *s, size_t n) {
    char *p = (char *)Q4K_MALLOC(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

Q4K_API void q4k_gguf_writer_free(q4k_gguf_writer *w) {
    size_t i;
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        remove(w->path);
    }
    for (i = 0; i < w->n_kv; i++) {
        Q4K_FREE(w->kv[i].key);
        Q4K_FREE(w->kv[i].val);
    }
    for (i = 0; i < w->n_t; i++) Q4K_FREE(w->t[i].name);
    Q4K_FREE(w->kv);
    Q4K_FREE(w->t);
    q4k__index_free(&w->kv_index);
    q4k__index_free(&w->t_index);
    Q4K_FREE(w->path);
    Q4K_FREE(w);
}

Q4K_API q4k_gguf_writer *q4k_gguf_writer_new(uint32_t alignment) {
    q4k_gguf_writer *w;
    if (alignment == 0) alignment = Q4K__GGUF_ALIGN;
    if ((alignment & (alignment - 1)) || alignment > Q4K__GGUF_MAX_ALIGN) return NULL;
    if (!(w = (q4k_gguf_writer *)Q4K_MALLOC(sizeof *w))) return NULL;
    memset(w, 0, sizeof *w);
    w->alignment = Q4K__GGUF_ALIGN;
    if (alignment != Q4K__GGUF_ALIGN && q4k_gguf_writer_set_u32(w, "general.alignment", alignment) != Q4K_OK) {
        q4k_gguf_writer_free(w);
        return NULL;
    }
    return w;
}

/* Stores key = the encoded value in b (taken over, freed on failure). */
static q4k_result q4k__w_setkv(q4k_gguf_writer *w, const char *key, q4k__wbuf *b) {
    size_t n = strlen(key);
    int64_t dup;
    q4k__wkv *kv;
    if (b->oom) {
        Q4K_FREE(b->p);
        return q4k__wfail(w, Q4K_ERR_OUT_OF_MEMORY, "key '%.200s': out of memory", key);
    }
    if (n == 17 && !memcmp(key, "general.alignment", 17)) {
        uint32_t a = b->n == 8 ? q4k__rd32(b->p + 4) : 0;
        if (b->n != 8 || q4k__rd32(b->p) != Q4K_GGUF_UINT32 || !a || (a & (a - 1)) || a > Q4K__GGUF_MAX_ALIGN) {
            Q4K_FREE(b->p);
            return q4k__wfail(w, Q4K_ERR_BAD_ALIGNMENT, "key 'general.alignment' must be a UINT32 power of two up to 2^30");
        }
        w->alignment = a;
    }
    dup = q4k__index_find(&w->kv_index, key, n);
    if (dup >= 0) {
        Q4K_FREE(w->kv[dup].val);
        w->kv[dup].val = b->p;
        w->kv[dup].val_size = b->n;
        return Q4K_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? w->cap_kv * 2 : 16;
        q4k__wkv *nk = (q4k__wkv *)Q4K_REALLOC(w->kv, nc * sizeof *nk);
        if (!nk) {
            Q4K_FREE(b->p);
            return q4k__wfail(w, Q4K_ERR_OUT_OF_MEMORY, "key '%.200s': out of memory", key);
        }
        w->kv = nk;
        w->cap_kv = nc;
    }
    kv = &w->kv[w->n_kv];
    if (!(kv->key = q4k__strdup(key, n)) || !q4k__index_add(&w->kv_index, kv->key, n, &dup)) {
        Q4K_FREE(kv->key);
        Q4K_FREE(b->p);
        return q4k__wfail(w, Q4K_ERR_OUT_OF_MEMORY, "key '%.200s': out of memory", key);
    }
    kv->key_len = n;
    kv->val = b->p;
    kv->val_size = b->n;
    w->n_kv++;
    return Q4K_OK;
}

static q4k_result q4k__w_check_key(q4k_gguf_writer *w, const char *key) {
    size_t n;
    char q[272];
    if (!key || !*key) return q4k__wfail(w, Q4K_ERR_BAD_KEY, "metadata key is %s", key ? "empty" : "NULL");
    n = strlen(key);
    if (n > Q4K__GGUF_MAX_KEY)
        return q4k__wfail(w, Q4K_ERR_BAD_KEY, "key '%s' is %zu bytes, at most %d allowed", q4k__quote(q, sizeof q, key, n),
                          n, Q4K__GGUF_MAX_KEY);
    if (!q4k__utf8_valid((const uint8_t *)key, n))
        return q4k__wfail(w, Q4K_ERR_BAD_UTF8, "key '%s' is not valid UTF-8", q4k__quote(q, sizeof q, key, n));
    if (w->f) return q4k__wfail(w, Q4K_ERR_INVALID_ARG, "key '%s': set after q4k_gguf_writer_begin", q4k__quote(q, sizeof q, key, n));
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_writer_set(q4k_gguf_writer *w, const char *key, q4k_gguf_type type, const void *value) {
    q4k__wbuf b;
    size_t sz;
    q4k_result res;
    if (!w) return Q4K_ERR_INVALID_ARG;
    if ((res = q4k__w_check_key(w, key)) != Q4K_OK) return res;
    if ((int)type < 0 || (int)type >= (int)Q4K_GGUF_TYPE_COUNT || type == Q4K_GGUF_ARRAY)
        return q4k__wfail(w, Q4K_ERR_BAD_VALUE_TYPE, "key '%.200s': type %d is not a GGUF scalar type%s", key, (int)type,
                          type == Q4K_GGUF_ARRAY ? " (use q4k_gguf_writer_set_array)" : "");
    if (!value) return q4k__wfail(w, Q4K_ERR_INVALID_ARG, "key '%.200s': value is NULL", key);
    if (type == Q4K_GGUF_BOOL && *(const uint8_t *)value > 1)
        return q4k__wfail(w, Q4K_ERR_BAD_BOOL, "key '%.200s': bool byte %u, must be 0 or 1", key, *(const uint8_t *)value);
    memset(&b, 0, sizeof b);
    q4k__wbuf_u32(&b, (uint32_t)type);
    if (type == Q4K_GGUF_STRING) {
        size_t n = strlen((const char *)value);
        q4k__wbuf_u64(&b, n);
        q4k__wbuf_put(&b, value, n);
    } else {
        sz = q4k__gguf_scalar_size((uint32_t)type);
        q4k__wbuf_put(&b, value, sz);
    }
    return q4k__w_setkv(w, key, &b);
}

Q4K_API q4k_result q4k_gguf_writer_set_u32(q4k_gguf_writer *w, const char *key, uint32_t v) {
    return q4k_gguf_writer_set(w, key, Q4K_GGUF_UINT32, &v);
}
Q4K_API q4k_result q4k_gguf_writer_set_i32(q4k_gguf_writer *w, const char *key, int32_t v) {
    return q4k_gguf_writer_set(w, key, Q4K_GGUF_INT32, &v);
}
Q4K_API q4k_result q4k_gguf_writer_set_f32(q4k_gguf_writer *w, const char *key, float v) {
    return q4k_gguf_writer_set(w, key, Q4K_GGUF_FLOAT32, &v);
}
Q4K_API q4k_result q4k_gguf_writer_set_bool(q4k_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return q4k_gguf_writer_set(w, key, Q4K_GGUF_BOOL, &b);
}
Q4K_API q4k_result q4k_gguf_writer_set_str(q4k_gguf_writer *w, const char *key, const char *v) {
    return q4k_gguf_writer_set(w, key, Q4K_GGUF_STRING, v);
}

static q4k_result q4k__w_enc_array(q4k_gguf_writer *w, const char *key, q4k__wbuf *b, const q4k_gguf_arr *a, int depth) {
    size_t sz;
    uint64_t i, bytes;
    q4k_result res;
    if (!a) return q4k__wfail(w, Q4K_ERR_INVALID_ARG, "key '%.200s': array is NULL", key);
    if ((int)a->elem_type < 0 || (int)a->elem_type >= (int)Q4K_GGUF_TYPE_COUNT)
        return q4k__wfail(w, Q4K_ERR_BAD_ARRAY, "key '%.200s': array element type %d is not a GGUF type", key,
                          (int)a->elem_type);
    if (a->elem_type == Q4K_GGUF_ARRAY && depth >= Q4K__GGUF_MAX_DEPTH)
        return q4k__wfail(w, Q4K_ERR_BAD_ARRAY, "key '%.200s': arrays nested more than %d levels deep", key,
                          Q4K__GGUF_MAX_DEPTH);
    if (a->count && !a->data) return q4k__wfail(w, Q4K_ERR_INVALID_ARG, "key '%.200s': array data is NULL", key);
    q4k__wbuf_u32(b, (uint32_t)a->elem_type);
    q4k__wbuf_u64(b, a->count);
    if ((sz = q4k__gguf_scalar_size((uint32_t)a->elem_type)) != 0) {
        if (!q4k__mul_u64(a->count, sz, &bytes) || bytes > SIZE_MAX)
            return q4k__wfail(w, Q4K_ERR_OVERFLOW, "key '%.200s': array of %llu elements is too large", key,
                              (unsigned long long)a->count);
        if (a->elem_type == Q4K_GGUF_BOOL)
            for (i = 0; i < a->count; i++)
                if (((const uint8_t *)a->data)[i] > 1)
                    return q4k__wfail(w, Q4K_ERR_BAD_BOOL, "key '%.200s': bool element %llu is %u, must be 0 or 1", key,
                                      (unsigned long long)i, ((const uint8_t *)a->data)[i]);
        q4k__wbuf_put(b, a->data, (size_t)bytes);
    } else if (a->elem_type == Q4K_GGUF_STRING) {
        const char *const *s = (const char *const *)a->data;
        for (i = 0; i < a->count; i++) {
            size_t n;
            if (!s[i])
                return q4k__wfail(w, Q4K_ERR_INVALID_ARG, "key '%.200s': string element %llu is NULL", key,
                                  (unsigned long long)i);
            n = strlen(s[i]);
            q4k__wbuf_u64(b, n);
            q4k__wbuf_put(b, s[i], n);
        }
    } else {
        const q4k_gguf_arr *sub = (const q4k_gguf_arr *)a->data;
        for (i = 0; i < a->count; i++)
            if ((res = q4k__w_enc_array(w, key, b, &sub[i], depth + 1)) != Q4K_OK) return res;
    }
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_writer_set_array(q4k_gguf_writer *w, const char *key, const q4k_gguf_arr *arr) {
    q4k__wbuf b;
    q4k_result res;
    if (!w) return Q4K_ERR_INVALID_ARG;
    if ((res = q4k__w_check_key(w, key)) != Q4K_OK) return res;
    memset(&b, 0, sizeof b);
    q4k__wbuf_u32(&b, Q4K_GGUF_ARRAY);
    if ((res = q4k__w_enc_array(w, key, &b, arr, 1)) != Q4K_OK) {
        Q4K_FREE(b.p);
        return res;
    }
    return q4k__w_setkv(w, key, &b);
}

Q4K_API q4k_result q4k_gguf_writer_set_arr(q4k_gguf_writer *w, const char *key, q4k_gguf_type elem_type, const void *data,
                                           uint64_t n) {
    q4k_gguf_arr a;
    if (!w) return Q4K_ERR_INVALID_ARG;
    if (!q4k__gguf_scalar_size((uint32_t)elem_type))
        return q4k__wfail(w, Q4K_ERR_BAD_ARRAY, "key '%.200s': q4k_gguf_writer_set_arr takes numeric or bool elements, not %s",
                          key ? key : "(null)", q4k_gguf_type_name(elem_type));
    a.elem_type = elem_type;
    a.count = n;
    a.data = data;
    return q4k_gguf_writer_set_array(w, key, &a);
}

Q4K_API q4k_result q4k_gguf_writer_set_arr_str(q4k_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    q4k_gguf_arr a;
    a.elem_type = Q4K_GGUF_STRING;
    a.count = n;
    a.data = strs;
    return q4k_gguf_writer_set_array(w, key, &a);
}

Q4K_API q4k_result q4k_gguf_writer_add_tensor(q4k_gguf_writer *w, const char *name, q4k_type type, int n_dims,
                                              const int64_t *ne, const void *data) {
    q4k_type_info tr;
    uint64_t bytes, elems = 1;
    size_t n;
    int d;
    int64_t dup;
    q4k__wtensor *t;
    char q[272];
    if (!w) return Q4K_ERR_INVALID_ARG;
    if (!name || !*name) return q4k__wfail(w, Q4K_ERR_BAD_TENSOR_NAME, "tensor name is %s", name ? "empty" : "NULL");
    n = strlen(name);
    q4k__quote(q, sizeof q, name, n);
    if (n > Q4K__GGUF_MAX_NAME)
        return q4k__wfail(w, Q4K_ERR_BAD_TENSOR_NAME, "tensor '%s': name is %zu bytes, at most %d allowed", q, n,
                          Q4K__GGUF_MAX_NAME);
    if (!q4k__utf8_valid((const uint8_t *)name, n))
        return q4k__wfail(w, Q4K_ERR_BAD_UTF8, "tensor '%s': name is not valid UTF-8", q);
    if (w->f) return q4k__wfail(w, Q4K_ERR_INVALID_ARG, "tensor '%s': added after q4k_gguf_writer_begin", q);
    tr = q4k_type_traits((int)type);
    if (!tr.name || !tr.type_size) return q4k__wfail(w, Q4K_ERR_BAD_TYPE, "tensor '%s': type id %d is unknown", q, (int)type);
    if (n_dims < 1 || n_dims > 4 || !ne)
        return q4k__wfail(w, Q4K_ERR_BAD_DIMS, "tensor '%s': n_dims is %d, must be 1..4 (with ne given)", q, n_dims);
    for (d = 0; d < n_dims; d++)
        if (ne[d] < 1) return q4k__wfail(w, Q4K_ERR_BAD_DIMS, "tensor '%s': dim %d is %lld", q, d, (long long)ne[d]);
    if (ne[0] % tr.block_size)
        return q4k__wfail(w, Q4K_ERR_BAD_SHAPE, "tensor '%s': ne[0] = %lld is not a multiple of the %s block size %lld", q,
                          (long long)ne[0], tr.name, (long long)tr.block_size);
    bytes = (uint64_t)(ne[0] / tr.block_size) * tr.type_size;
    for (d = 0; d < n_dims; d++)
        if (!q4k__mul_u64(elems, (uint64_t)ne[d], &elems) || elems > (uint64_t)INT64_MAX ||
            (d > 0 && !q4k__mul_u64(bytes, (uint64_t)ne[d], &bytes)) || bytes > SIZE_MAX)
            return q4k__wfail(w, Q4K_ERR_OVERFLOW, "tensor '%s': size overflows", q);
    if (q4k__index_find(&w->t_index, name, n) >= 0)
        return q4k__wfail(w, Q4K_ERR_DUPLICATE_TENSOR, "tensor '%s' is added twice", q);
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? w->cap_t * 2 : 64;
        q4k__wtensor *nt = (q4k__wtensor *)Q4K_REALLOC(w->t, nc * sizeof *nt);
        if (!nt) return q4k__wfail(w, Q4K_ERR_OUT_OF_MEMORY, "tensor '%s': out of memory", q);
        w->t = nt;
        w->cap_t = nc;
    }
    t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = q4k__strdup(name, n)) || !q4k__index_add(&w->t_index, t->name, n, &dup)) {
        Q4K_FREE(t->name);
        return q4k__wfail(w, Q4K_ERR_OUT_OF_MEMORY, "tensor '%s': out of memory", q);
    }
    t->type = type;
    t->n_dims = n_dims;
    for (d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = bytes;
    t->data = data;
    w->n_t++;
    return Q4K_OK;
}

static q4k_result q4k__w_io(q4k_gguf_writer *w, q4k_error *err, const char *what) {
    int e = errno;
    q4k_result res = q4k__fail(err, Q4K_ERR_IO, "%s: %s: %s", w->path, what, e ? strerror(e) : "I/O error");
    if (w->f) fclose(w->f);
    w->f = NULL;
    remove(w->path);
    Q4K_FREE(w->path);
    w->path = NULL;
    return res;
}

static int q4k__w_zeros(FILE *f, uint64_t n) {
    static const uint8_t zeros[256] = {0};
    while (n) {
        size_t k = n > sizeof zeros ? sizeof zeros : (size_t)n;
        if (fwrite(zeros, 1, k, f) != k) return 0;
        n -= k;
    }
    return 1;
}

Q4K_API q4k_result q4k_gguf_writer_begin(q4k_gguf_writer *w, const char *path, q4k_error *err) {
    q4k__wbuf b;
    uint64_t off = 0, pad;
    size_t i;
    int d;
    if (!w || !path) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_gguf_writer_begin: %s is NULL", w ? "path" : "writer");
    if (w->first.code != Q4K_OK) {
        if (err) *err = w->first;
        return w->first.code;
    }
    if (w->f) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "%s: the writer is already streaming to %s", path, w->path);
    for (i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        pad = (w->alignment - w->t[i].nbytes % w->alignment) % w->alignment;
        if (!q4k__add_u64(off, w->t[i].nbytes, &off) || !q4k__add_u64(off, pad, &off))
            return q4k__fail(err, Q4K_ERR_OVERFLOW, "%s: tensor data size overflows", path);
    }
    memset(&b, 0, sizeof b);
    q4k__wbuf_put(&b, "GGUF", 4);
    q4k__wbuf_u32(&b, 3);
    q4k__wbuf_u64(&b, w->n_t);
    q4k__wbuf_u64(&b, w->n_kv);
    for (i = 0; i < w->n_kv; i++) {
        q4k__wbuf_u64(&b, w->kv[i].key_len);
        q4k__wbuf_put(&b, w->kv[i].key, w->kv[i].key_len);
        q4k__wbuf_put(&b, w->kv[i].val, w->kv[i].val_size);
    }
    for (i = 0; i < w->n_t; i++) {
        const q4k__wtensor *t = &w->t[i];
        size_t n = strlen(t->name);
        q4k__wbuf_u64(&b, n);
        q4k__wbuf_put(&b, t->name, n);
        q4k__wbuf_u32(&b, (uint32_t)t->n_dims);
        for (d = 0; d < t->n_dims; d++) q4k__wbuf_u64(&b, (uint64_t)t->ne[d]);
        q4k__wbuf_u32(&b, (uint32_t)t->type);
        q4k__wbuf_u64(&b, t->offset);
    }
    if (b.oom) {
        Q4K_FREE(b.p);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: out of memory for the header", path);
    }
    if (!(w->path = q4k__strdup(path, strlen(path)))) {
        Q4K_FREE(b.p);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    errno = 0;
    if (!(w->f = fopen(path, "wb"))) {
        int e = errno;
        Q4K_FREE(b.p);
        Q4K_FREE(w->path);
        w->path = NULL;
        return q4k__fail(err, Q4K_ERR_IO, "%s: cannot create: %s", path, e ? strerror(e) : "I/O error");
    }
    pad = (w->alignment - b.n % w->alignment) % w->alignment;
    if (fwrite(b.p, 1, b.n, w->f) != b.n || !q4k__w_zeros(w->f, pad)) {
        Q4K_FREE(b.p);
        return q4k__w_io(w, err, "write failed");
    }
    Q4K_FREE(b.p);
    w->next = 0;
    if (err) {
        err->code = Q4K_OK;
        err->msg[0] = 0;
    }
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_writer_write_tensor(q4k_gguf_writer *w, const void *data, q4k_error *err) {
    const q4k__wtensor *t;
    uint64_t pad;
    if (!w || !w->f) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_gguf_writer_write_tensor: call q4k_gguf_writer_begin first");
    if (w->next >= w->n_t)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "%s: all %zu tensors are written already", w->path, w->n_t);
    t = &w->t[w->next];
    if (!data) data = t->data;
    if (!data) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "%s: tensor '%.100s': no data given", w->path, t->name);
    pad = (w->alignment - t->nbytes % w->alignment) % w->alignment;
    errno = 0;
    if (fwrite(data, 1, (size_t)t->nbytes, w->f) != t->nbytes || !q4k__w_zeros(w->f, pad))
        return q4k__w_io(w, err, "write failed");
    w->next++;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_writer_end(q4k_gguf_writer *w, q4k_error *err) {
    int bad;
    if (!w || !w->f) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_gguf_writer_end: call q4k_gguf_writer_begin first");
    if (w->next != w->n_t) {
        q4k_result res = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%s: only %zu of %zu tensors written; file removed", w->path,
                                   w->next, w->n_t);
        fclose(w->f);
        w->f = NULL;
        remove(w->path);
        Q4K_FREE(w->path);
        w->path = NULL;
        return res;
    }
    errno = 0;
    bad = ferror(w->f) != 0;
    bad |= fclose(w->f) != 0;
    w->f = NULL;
    if (bad) return q4k__w_io(w, err, "write failed");
    Q4K_FREE(w->path);
    w->path = NULL;
    if (err) {
        err->code = Q4K_OK;
        err->msg[0] = 0;
    }
    return Q4K_OK;
}

Q4K_API q4k_result q4k_gguf_writer_write_file(q4k_gguf_writer *w, const char *path, q4k_error *err) {
    size_t i;
    q4k_result res;
    if (!w || !path) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_gguf_writer_write_file: %s is NULL", w ? "path" : "writer");
    if (w->first.code == Q4K_OK)
        for (i = 0; i < w->n_t; i++)
            if (!w->t[i].data)
                return q4k__fail(err, Q4K_ERR_INVALID_ARG,
                                 "%s: tensor '%.100s' has no data (give it to add_tensor, or stream with begin/write_tensor)",
                                 path, w->t[i].name);
    if ((res = q4k_gguf_writer_begin(w, path, err)) != Q4K_OK) return res;
    for (i = 0; i < w->n_t; i++)
        if ((res = q4k_gguf_writer_write_tensor(w, NULL, err)) != Q4K_OK) return res;
    return q4k_gguf_writer_end(w, err);
}

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

/* float mode: decode one row of a quantized type to floats, bit for bit as
   q4k_dequantize_row; 0 when the type is not handled (then that decodes) */
typedef int (*q4k__decode_fn)(q4k_type type, const void *w, float *y, int64_t cols);

typedef struct q4k__kernels {
    q4k__fdot_fn f32, f16, bf16; /* NULL: decode with q4k_dequantize_row, then f32 */
    q4k__qdot_fn q8_0, q4_0, q5_0, q4_K, q5_K, q6_K;
    q4k__decode_fn decode;       /* NULL: q4k_dequantize_row */
    /* float mode, quantized weights: a fused decode-and-dot kernel for the
       type (NULL: none), and the float dot that decoded rows take, which
       must give the fused kernel's bits (a prompt decodes each row once and
       a column must not depend on how many there are) */
    q4k__fdot_fn (*fquant)(q4k_type type);
    q4k__fdot_fn fdec;
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
static void q4k__unpack_q4_0(const void *wv, int8_t *q) {
    const q4k_block_q4_0 *w = (const q4k_block_q4_0 *)wv;
    int i;
    for (i = 0; i < 16; i++) {
        q[i] = (int8_t)((w->qs[i] & 0xF) - 8);
        q[i + 16] = (int8_t)((w->qs[i] >> 4) - 8);
    }
}

static void q4k__unpack_q5_0(const void *wv, int8_t *q) {
    const q4k_block_q5_0 *w = (const q4k_block_q5_0 *)wv;
    uint32_t qh = (uint32_t)w->qh[0] | (uint32_t)w->qh[1] << 8 | (uint32_t)w->qh[2] << 16 | (uint32_t)w->qh[3] << 24;
    int i;
    for (i = 0; i < 16; i++) {
        q[i] = (int8_t)(((w->qs[i] & 0xF) | ((qh >> i) & 1) << 4) - 16);
        q[i + 16] = (int8_t)(((w->qs[i] >> 4) | ((qh >> (i + 16)) & 1) << 4) - 16);
    }
}

/* Q4_0 and Q5_0: unpack each block to 32 signed quants, then the Q8_0 dot */
static void q4k__qdot_legacy_scalar(const unsigned char *w, size_t bsize, void (*unpack)(const void *, int8_t *),
                                    int64_t cols, const q4k__act *a, int64_t j, int nc, float *y, int64_t ys) {
    int64_t b, nb = cols / Q4K_QK;
    float acc[Q4K__NT] = {0};
    int8_t q[Q4K_QK];
    int c, i;
    for (b = 0; b < nb; b++) {
        uint16_t dh;
        float d;
        memcpy(&dh, w + (size_t)b * bsize, 2); /* every legacy block starts with its fp16 d */
        d = q4k_fp16_to_fp32(dh);
        unpack(w + (size_t)b * bsize, q);
        for (c = 0; c < nc; c++) {
            const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b;
            int32_t s = 0;
            for (i = 0; i < Q4K_QK; i++) s += q[i] * x->qs[i];
            acc[c] += (d * x->d) * (float)s;
        }
    }
    for (c = 0; c < nc; c++) y[c * ys] = acc[c];
}

static void q4k__qdot_q4_0_scalar(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                  int64_t ys) {
    q4k__qdot_legacy_scalar((const unsigned char *)wv, sizeof(q4k_block_q4_0), q4k__unpack_q4_0, cols, a, j, nc, y, ys);
}

static void q4k__qdot_q5_0_scalar(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                  int64_t ys) {
    q4k__qdot_legacy_scalar((const unsigned char *)wv, sizeof(q4k_block_q5_0), q4k__unpack_q5_0, cols, a, j, nc, y, ys);
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
    NULL, NULL, q4k__fdot_f32_scalar, Q4K__NT};

/* SIMD kernels: column loops over compile-time tile widths */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define Q4K__UNROLL _Pragma("GCC unroll 8")
#else
#define Q4K__UNROLL
#endif

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

/* Float mode (Q4K_ACT_F32) decodes each quantized weight row before the
   float dot; these give q4k_dequantize_row's floats bit for bit (the
   products there are exact, so the FMA in the k-quants rounds once, as the
   scalar subtraction does) at SIMD speed: the scalar decoder made a 7B's
   float-mode token 16x slower than its 8-bit one. */
Q4K__AVX2_INL void q4k__store_q8x8(float *y, __m128i q8, __m256 d) { /* 8 signed bytes * d */
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d));
}

/* 32 unsigned bytes: y[i] = dm * q[i] - mm  (products exact: one rounding) */
Q4K__AVX2_INL void q4k__store_u8x32_fms(float *y, __m256i q, __m256 dm, __m256 mm) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y, _mm256_fmsub_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), mm));
    _mm256_storeu_ps(y + 8, _mm256_fmsub_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), mm));
    _mm256_storeu_ps(y + 16, _mm256_fmsub_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), mm));
    _mm256_storeu_ps(y + 24, _mm256_fmsub_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), mm));
}

Q4K__AVX2_FN static int q4k__decode_avx2(q4k_type type, const void *src, float *y, int64_t cols) {
    const uint8_t *s = (const uint8_t *)src;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i m4y = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    int64_t b, nb;
    switch (type) {
    case Q4K_TYPE_Q8_0:
        for (b = 0, nb = cols / Q4K_QK; b < nb; b++, s += sizeof(q4k_block_q8_0), y += Q4K_QK) {
            uint16_t dh;
            __m256 d;
            __m256i q = _mm256_loadu_si256((const __m256i *)(s + 2));
            memcpy(&dh, s, 2);
            d = _mm256_set1_ps(q4k__h2f(dh));
            q4k__store_q8x8(y, _mm256_castsi256_si128(q), d);
            q4k__store_q8x8(y + 8, _mm_srli_si128(_mm256_castsi256_si128(q), 8), d);
            q4k__store_q8x8(y + 16, _mm256_extracti128_si256(q, 1), d);
            q4k__store_q8x8(y + 24, _mm_srli_si128(_mm256_extracti128_si256(q, 1), 8), d);
        }
        return 1;
    case Q4K_TYPE_Q4_0:
    case Q4K_TYPE_Q5_0: {
        const int five = type == Q4K_TYPE_Q5_0;
        const size_t bs = five ? sizeof(q4k_block_q5_0) : sizeof(q4k_block_q4_0);
        const __m128i off = _mm_set1_epi8(five ? 16 : 8);
        for (b = 0, nb = cols / Q4K_QK; b < nb; b++, s += bs, y += Q4K_QK) {
            uint16_t dh;
            __m256 d;
            __m128i v = _mm_loadu_si128((const __m128i *)(s + (five ? 6 : 2)));
            __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
            memcpy(&dh, s, 2);
            d = _mm256_set1_ps(q4k__h2f(dh));
            if (five) {
                /* fifth bit j of value j: spread qh's 32 bits to bytes, keep bit j of byte j */
                uint32_t qh;
                __m256i bits;
                memcpy(&qh, s + 2, 4);
                bits = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                                           _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll,
                                                              0x0303030303030303ll));
                bits = _mm256_and_si256(bits, _mm256_set1_epi64x(0x8040201008040201ll));
                bits = _mm256_and_si256(_mm256_cmpeq_epi8(bits, _mm256_setzero_si256()), _mm256_set1_epi8(16));
                bits = _mm256_xor_si256(bits, _mm256_set1_epi8(16)); /* 16 where the bit is set */
                lo = _mm_or_si128(lo, _mm256_castsi256_si128(bits));
                hi = _mm_or_si128(hi, _mm256_extracti128_si256(bits, 1));
            }
            lo = _mm_sub_epi8(lo, off);
            hi = _mm_sub_epi8(hi, off);
            q4k__store_q8x8(y, lo, d);
            q4k__store_q8x8(y + 8, _mm_srli_si128(lo, 8), d);
            q4k__store_q8x8(y + 16, hi, d);
            q4k__store_q8x8(y + 24, _mm_srli_si128(hi, 8), d);
        }
        return 1;
    }
    case Q4K_TYPE_Q4_K:
    case Q4K_TYPE_Q5_K: {
        const int five = type == Q4K_TYPE_Q5_K;
        const size_t bs = five ? sizeof(q4k_block_q5_K) : sizeof(q4k_block_q4_K);
        const size_t qs_off = five ? offsetof(q4k_block_q5_K, qs) : offsetof(q4k_block_q4_K, qs);
        for (b = 0, nb = cols / Q4K_QK_K; b < nb; b++, s += bs) {
            uint16_t dh, mh;
            float d, dmin;
            int k, sc, m;
            __m256i qhv = five ? _mm256_loadu_si256((const __m256i *)(s + offsetof(q4k_block_q5_K, qh)))
                               : _mm256_setzero_si256();
            memcpy(&dh, s, 2);
            memcpy(&mh, s + 2, 2);
            d = q4k__h2f(dh);
            dmin = q4k__h2f(mh);
            for (k = 0; k < 4; k++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(s + qs_off + 32 * k));
                __m256i lo = _mm256_and_si256(q, m4y), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4y);
                if (five) {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qhv, one), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qhv, 1), one), 4));
                    qhv = _mm256_srli_epi16(qhv, 2);
                }
                q4k__scale_min_k4(2 * k, s + 4, &sc, &m);
                q4k__store_u8x32_fms(y, lo, _mm256_set1_ps(d * (float)sc), _mm256_set1_ps(dmin * (float)m));
                q4k__scale_min_k4(2 * k + 1, s + 4, &sc, &m);
                q4k__store_u8x32_fms(y + 32, hi, _mm256_set1_ps(d * (float)sc), _mm256_set1_ps(dmin * (float)m));
                y += 64;
            }
        }
        return 1;
    }
    case Q4K_TYPE_Q6_K:
        for (b = 0, nb = cols / Q4K_QK_K; b < nb; b++, s += sizeof(q4k_block_q6_K)) {
            uint16_t dh;
            float d;
            const int8_t *scales = (const int8_t *)(s + offsetof(q4k_block_q6_K, scales));
            int h, g;
            memcpy(&dh, s + offsetof(q4k_block_q6_K, d), 2);
            d = q4k__h2f(dh);
            for (h = 0; h < 2; h++) {
                const uint8_t *ql = s + 64 * h, *qhp = s + offsetof(q4k_block_q6_K, qh) + 32 * h;
                __m256i qh = _mm256_loadu_si256((const __m256i *)qhp);
                for (g = 0; g < 4; g++, y += 32) {
                    __m256i l = _mm256_loadu_si256((const __m256i *)(ql + 32 * (g & 1)));
                    __m256i q;
                    __m128i q0, q1;
                    __m256 d0 = _mm256_set1_ps(d * (float)scales[8 * h + 2 * g]);
                    __m256 d1 = _mm256_set1_ps(d * (float)scales[8 * h + 2 * g + 1]);
                    if (g >> 1) l = _mm256_srli_epi16(l, 4);
                    q = _mm256_or_si256(_mm256_and_si256(l, m4y),
                                        _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(3)), 4));
                    qh = _mm256_srli_epi16(qh, 2);
                    q = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
                    q0 = _mm256_castsi256_si128(q);
                    q1 = _mm256_extracti128_si256(q, 1);
                    q4k__store_q8x8(y, q0, d0);
                    q4k__store_q8x8(y + 8, _mm_srli_si128(q0, 8), d0);
                    q4k__store_q8x8(y + 16, q1, d1);
                    q4k__store_q8x8(y + 24, _mm_srli_si128(q1, 8), d1);
                }
            }
        }
        return 1;
    default:
        return 0;
    }
}

/* Float mode, fused, for the two types of a Q4_K_M file: the values of
   q4k__decode_avx2 go straight into the FMAs of q4k__fdot_avx2_t in its
   order (two accumulators, 16 values a step), so a row gives the
   decode-then-dot result bit for bit without the round trip through memory. */
Q4K__AVX2_INL void q4k__fma32_avx2(const __m256 *v, const float *x, int64_t xs, int nc, __m256 *a0, __m256 *a1) {
    int c;
    Q4K__UNROLL for (c = 0; c < nc; c++) {
        const float *xc = x + c * xs;
        a0[c] = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(xc), a0[c]);
        a1[c] = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(xc + 8), a1[c]);
        a0[c] = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(xc + 16), a0[c]);
        a1[c] = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(xc + 24), a1[c]);
    }
}

Q4K__AVX2_INL void q4k__fdot_kq_avx2_t(const void *wv, int64_t cols, const float *x, int64_t xs, int nc, float *y,
                                       int64_t ys, int q6) {
    const __m256i m4y = _mm256_set1_epi8(0x0F);
    const uint8_t *s = (const uint8_t *)wv;
    __m256 a0[Q4K__NT_AVX2], a1[Q4K__NT_AVX2], v[4];
    int64_t b, nb = cols / Q4K_QK_K;
    int c;
    Q4K__UNROLL for (c = 0; c < nc; c++) a0[c] = a1[c] = _mm256_setzero_ps();
    for (b = 0; b < nb; b++) {
        const float *xb = x + b * Q4K_QK_K;
        uint16_t dh;
        if (!q6) {
            uint16_t mh;
            float d, dmin;
            int k, h, sc, m;
            memcpy(&dh, s, 2);
            memcpy(&mh, s + 2, 2);
            d = q4k__h2f(dh);
            dmin = q4k__h2f(mh);
            _mm_prefetch((const char *)s + Q4K__PF_DIST, _MM_HINT_T0);
            for (k = 0; k < 4; k++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(s + offsetof(q4k_block_q4_K, qs) + 32 * k));
                for (h = 0; h < 2; h++) {
                    __m256i n = _mm256_and_si256(h ? _mm256_srli_epi16(q, 4) : q, m4y);
                    __m128i lo = _mm256_castsi256_si128(n), hi = _mm256_extracti128_si256(n, 1);
                    __m256 dm, mm;
                    q4k__scale_min_k4(2 * k + h, s + 4, &sc, &m);
                    dm = _mm256_set1_ps(d * (float)sc);
                    mm = _mm256_set1_ps(dmin * (float)m);
                    v[0] = _mm256_fmsub_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), mm);
                    v[1] = _mm256_fmsub_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), mm);
                    v[2] = _mm256_fmsub_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), mm);
                    v[3] = _mm256_fmsub_ps(dm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), mm);
                    q4k__fma32_avx2(v, xb + 64 * k + 32 * h, xs, nc, a0, a1);
                }
            }
            s += sizeof(q4k_block_q4_K);
        } else {
            const int8_t *scales = (const int8_t *)(s + offsetof(q4k_block_q6_K, scales));
            float d;
            int h, g;
            memcpy(&dh, s + offsetof(q4k_block_q6_K, d), 2);
            d = q4k__h2f(dh);
            _mm_prefetch((const char *)s + Q4K__PF_DIST, _MM_HINT_T0);
            for (h = 0; h < 2; h++) {
                const uint8_t *ql = s + 64 * h;
                __m256i qh = _mm256_loadu_si256((const __m256i *)(s + offsetof(q4k_block_q6_K, qh) + 32 * h));
                for (g = 0; g < 4; g++) {
                    __m256i l = _mm256_loadu_si256((const __m256i *)(ql + 32 * (g & 1))), q;
                    __m128i q0, q1;
                    __m256 d0 = _mm256_set1_ps(d * (float)scales[8 * h + 2 * g]);
                    __m256 d1 = _mm256_set1_ps(d * (float)scales[8 * h + 2 * g + 1]);
                    if (g >> 1) l = _mm256_srli_epi16(l, 4);
                    q = _mm256_or_si256(_mm256_and_si256(l, m4y),
                                        _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(3)), 4));
                    qh = _mm256_srli_epi16(qh, 2);
                    q = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
                    q0 = _mm256_castsi256_si128(q);
                    q1 = _mm256_extracti128_si256(q, 1);
                    v[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0)), d0);
                    v[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8))), d0);
                    v[2] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1)), d1);
                    v[3] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8))), d1);
                    q4k__fma32_avx2(v, xb + 128 * h + 32 * g, xs, nc, a0, a1);
                }
            }
            s += sizeof(q4k_block_q6_K);
        }
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = q4k__hsum8(_mm256_add_ps(a0[c], a1[c]));
}
Q4K__AVX2_TILES(q4k__fdot_q4_K_avx2, q4k__fdot_kq_avx2_t, 0)
Q4K__AVX2_TILES(q4k__fdot_q6_K_avx2, q4k__fdot_kq_avx2_t, 1)

static q4k__fdot_fn q4k__fquant_avx2(q4k_type type) {
    return type == Q4K_TYPE_Q4_K ? q4k__fdot_q4_K_avx2 : type == Q4K_TYPE_Q6_K ? q4k__fdot_q6_K_avx2 : NULL;
}

static const q4k__kernels q4k__kernels_avx2 = {
    q4k__fdot_f32_avx2, q4k__fdot_f16_avx2, q4k__fdot_bf16_avx2,
    q4k__qdot_q8_0_avx2, q4k__qdot_q4_0_avx2, q4k__qdot_q5_0_avx2,
    q4k__qdot_q4_K_avx2, q4k__qdot_q5_K_avx2, q4k__qdot_q6_K_avx2,
    q4k__decode_avx2, q4k__fquant_avx2, q4k__fdot_f32_avx2, Q4K__NT_AVX2};

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

/* the fused float-mode kernels, AVX2 tiles of at most 4 columns */
#define Q4K__AVX512_FDOT_FROM_AVX2(name, avx2)                                                                 \
    Q4K__AVX512_FN static void name(const void *w, int64_t cols, const float *x, int64_t xs, int nc, float *y,  \
                                    int64_t ys) {                                                              \
        int c0;                                                                                                \
        for (c0 = 0; c0 < nc; c0 += Q4K__NT_AVX2)                                                              \
            avx2(w, cols, x + c0 * xs, xs, nc - c0 < Q4K__NT_AVX2 ? nc - c0 : Q4K__NT_AVX2, y + c0 * ys, ys);   \
    }
Q4K__AVX512_FDOT_FROM_AVX2(q4k__fdot_q4_K_avx512, q4k__fdot_q4_K_avx2)
Q4K__AVX512_FDOT_FROM_AVX2(q4k__fdot_q6_K_avx512, q4k__fdot_q6_K_avx2)
Q4K__AVX512_FDOT_FROM_AVX2(q4k__fdot_f32_avx2_x8, q4k__fdot_f32_avx2)
static q4k__fdot_fn q4k__fquant_avx512(q4k_type type) {
    return type == Q4K_TYPE_Q4_K ? q4k__fdot_q4_K_avx512 : type == Q4K_TYPE_Q6_K ? q4k__fdot_q6_K_avx512 : NULL;
}

static const q4k__kernels q4k__kernels_avx512 = {
    q4k__fdot_f32_avx512, q4k__fdot_f16_avx512, q4k__fdot_bf16_avx512,
    q4k__qdot_q8_0_avx512, q4k__qdot_q4_0_avx512, q4k__qdot_q5_0_avx512,
    q4k__qdot_q4_K_avx512, q4k__qdot_q5_K_avx512, q4k__qdot_q6_K_avx512,
    q4k__decode_avx2, q4k__fquant_avx512, q4k__fdot_f32_avx2_x8, Q4K__NT_AVX512};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif /* Q4K__X86 */

#ifdef Q4K__NEON
/* ---- Arm64 NEON (base ARMv8-A) -------------------------------------------

   Integer dots with smull/smlal (int8 x int8 widened to int16 lanes, two to
   four products a lane: |q| <= 128 and |x| <= 127 keep a lane of two Q8_0
   products within 32512, of four Q4_K/Q5_K/Q6_K products within 16256),
   then to int32 by pairwise adds or, for the k-quants, by a widening multiply
   with the sub-block scale, which keeps every partial exact; or, where the
   compiler targets the dot-product extension, by sdot (q4k__dot32_neon). Each lane's
   int32 partial goes to float and into an FMA with its block's scale, as in
   the AVX2 path. Every float operation is an explicit fused intrinsic or a
   product that feeds no addition: gcc implements vmulq_f32/vaddq_f32 as
   plain C operators and could otherwise contract them differently in each
   tile width, and a column must not depend on it. Kernels are written once
   for nc columns and instantiated for each nc (Q4K__NEON_TILES). */

#define Q4K__NEON_INL static inline __attribute__((always_inline))
#define Q4K__NT_NEON 4

Q4K__NEON_INL float q4k__h2f_neon(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* q4k_quantize_act_q8, bit for bit: the running max keeps the scalar
   comparison (a NaN lane never wins, unlike fmax), the product is the same
   IEEE multiply, frintn rounds half to even, min/max clamp exactly */
static void q4k__quantize_act_neon(const float *x, q4k_block_q8a *out, int64_t n) {
    const float32x4_t lim = vdupq_n_f32(127.0f), nlim = vdupq_n_f32(-127.0f);
    int64_t b, nb = n / Q4K_QK;
    for (b = 0; b < nb; b++) {
        const float *xb = x + b * Q4K_QK;
        float32x4_t v[8], mx = vdupq_n_f32(0.0f), vid;
        int32x4_t q[8], s;
        int16x8_t h0, h1, h2, h3;
        float amax, d, id;
        int i;
        for (i = 0; i < 8; i++) {
            float32x4_t av;
            v[i] = vld1q_f32(xb + 4 * i);
            av = vabsq_f32(v[i]);
            mx = vbslq_f32(vcgtq_f32(av, mx), av, mx);
        }
        amax = vmaxvq_f32(mx); /* no NaN lanes left: any order gives the same max */
        d = amax / 127.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        vid = vdupq_n_f32(id);
        for (i = 0; i < 8; i++) {
            float32x4_t r = vrndnq_f32(vmulq_f32(v[i], vid));
            r = vmaxq_f32(vminq_f32(r, lim), nlim);
            r = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(r), vceqq_f32(r, r))); /* NaN -> 0 */
            q[i] = vcvtq_s32_f32(r);
        }
        s = vaddq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])),
                      vaddq_s32(vaddq_s32(q[4], q[5]), vaddq_s32(q[6], q[7])));
        h0 = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]));
        h1 = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
        h2 = vcombine_s16(vmovn_s32(q[4]), vmovn_s32(q[5]));
        h3 = vcombine_s16(vmovn_s32(q[6]), vmovn_s32(q[7]));
        vst1q_s8(out[b].qs, vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)));
        vst1q_s8(out[b].qs + 16, vcombine_s8(vmovn_s16(h2), vmovn_s16(h3)));
        out[b].d = d;
        out[b].sum = vaddvq_s32(s);
    }
}

/* float weights: 0 = F32, 1 = F16, 2 = BF16; the conversions are exact */
Q4K__NEON_INL float32x4_t q4k__load4w_neon(const void *w, int64_t i, int wt) {
    if (wt == 1) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)w + i)));
    if (wt == 2) return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)w + i), 16));
    return vld1q_f32((const float *)w + i);
}

Q4K__NEON_INL float q4k__load1w_neon(const void *w, int64_t i, int wt) {
    if (wt == 1) return q4k_fp16_to_fp32(((const uint16_t *)w)[i]);
    if (wt == 2) return q4k_bf16_to_fp32(((const uint16_t *)w)[i]);
    return ((const float *)w)[i];
}

/* 16 values a step in four accumulators; the last cols % 16 values go
   through the same FMAs, zero-padded (see q4k__fdot_avx2_t) */
Q4K__NEON_INL void q4k__fdot_neon_t(const void *w, int64_t cols, const float *x, int64_t xs, int nc, float *y,
                                    int64_t ys, int wt) {
    float32x4_t acc[Q4K__NT_NEON][4];
    int64_t i = 0, e = cols - cols % 16;
    int c, k;
    Q4K__UNROLL for (c = 0; c < nc; c++) for (k = 0; k < 4; k++) acc[c][k] = vdupq_n_f32(0.0f);
    for (; i < e; i += 16) {
        float32x4_t wv[4];
        for (k = 0; k < 4; k++) wv[k] = q4k__load4w_neon(w, i + 4 * k, wt);
        Q4K__UNROLL for (c = 0; c < nc; c++) for (k = 0; k < 4; k++)
            acc[c][k] = vfmaq_f32(acc[c][k], wv[k], vld1q_f32(x + c * xs + i + 4 * k));
    }
    if (e < cols) {
        float wt16[16] = {0}, xt[16] = {0};
        float32x4_t wv[4];
        for (i = e; i < cols; i++) wt16[i - e] = q4k__load1w_neon(w, i, wt);
        for (k = 0; k < 4; k++) wv[k] = vld1q_f32(wt16 + 4 * k);
        for (c = 0; c < nc; c++) {
            for (i = e; i < cols; i++) xt[i - e] = x[c * xs + i];
            for (k = 0; k < 4; k++) acc[c][k] = vfmaq_f32(acc[c][k], wv[k], vld1q_f32(xt + 4 * k));
        }
    }
    Q4K__UNROLL for (c = 0; c < nc; c++)
        y[c * ys] = vaddvq_f32(vaddq_f32(vaddq_f32(acc[c][0], acc[c][1]), vaddq_f32(acc[c][2], acc[c][3])));
}

#define Q4K__NEON_TILES(name, body_t, extra)                                                                    \
    static void name(const void *w, int64_t cols, const float *x, int64_t xs, int nc, float *y, int64_t ys) {   \
        switch (nc) {                                                                                           \
        case 1: body_t(w, cols, x, xs, 1, y, ys, extra); break;                                                 \
        case 2: body_t(w, cols, x, xs, 2, y, ys, extra); break;                                                 \
        case 3: body_t(w, cols, x, xs, 3, y, ys, extra); break;                                                 \
        default: body_t(w, cols, x, xs, 4, y, ys, extra); break;                                                \
        }                                                                                                       \
    }
Q4K__NEON_TILES(q4k__fdot_f32_neon, q4k__fdot_neon_t, 0)
Q4K__NEON_TILES(q4k__fdot_f16_neon, q4k__fdot_neon_t, 1)
Q4K__NEON_TILES(q4k__fdot_bf16_neon, q4k__fdot_neon_t, 2)

#define Q4K__NEON_QTILES(name, body_t, extra)                                                                   \
    static void name(const void *w, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y, int64_t ys) { \
        switch (nc) {                                                                                           \
        case 1: body_t(w, cols, a, j, 1, y, ys, extra); break;                                                  \
        case 2: body_t(w, cols, a, j, 2, y, ys, extra); break;                                                  \
        case 3: body_t(w, cols, a, j, 3, y, ys, extra); break;                                                  \
        default: body_t(w, cols, a, j, 4, y, ys, extra); break;                                                 \
        }                                                                                                       \
    }

/* The integer dots of 32 weights (w0, w1) and 32 activations x, as four
   exact int32 partials: plain, times one scale (|w| <= 32), or the first 16
   times s0 plus the last 16 times s1. With the dot-product extension
   (compiled with -march=armv8.2-a+dotprod or later) sdot sums four products
   a lane; the totals are the same integers. */
#ifdef __ARM_FEATURE_DOTPROD
#define Q4K__NEON_DOTPROD 1
Q4K__NEON_INL int32x4_t q4k__dot32_neon(int8x16_t w0, int8x16_t w1, const int8_t *x) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, vld1q_s8(x)), w1, vld1q_s8(x + 16));
}

Q4K__NEON_INL int32x4_t q4k__dot32_sc_neon(int8x16_t w0, int8x16_t w1, const int8_t *x, int32_t sc) {
    return vmulq_n_s32(q4k__dot32_neon(w0, w1, x), sc);
}

Q4K__NEON_INL int32x4_t q4k__dot16x2_sc_neon(int8x16_t w0, int8x16_t w1, const int8_t *x, int32_t s0, int32_t s1) {
    const int32x4_t z = vdupq_n_s32(0);
    return vmlaq_n_s32(vmulq_n_s32(vdotq_s32(z, w0, vld1q_s8(x)), s0), vdotq_s32(z, w1, vld1q_s8(x + 16)), s1);
}
#else
/* 16 weights times 16 activations: eight int16 lanes of two products each */
Q4K__NEON_INL int16x8_t q4k__mul16_neon(int8x16_t w, int8x16_t x) {
    return vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x);
}

/* sc * (sum of the lanes of p), as four exact int32 partials, added to s */
Q4K__NEON_INL int32x4_t q4k__scale16_neon(int32x4_t s, int16x8_t p, int16_t sc) {
    return vmlal_high_n_s16(vmlal_n_s16(s, vget_low_s16(p), sc), p, sc);
}

Q4K__NEON_INL int32x4_t q4k__dot32_neon(int8x16_t w0, int8x16_t w1, const int8_t *x) {
    return vpadalq_s16(vpaddlq_s16(q4k__mul16_neon(w0, vld1q_s8(x))), q4k__mul16_neon(w1, vld1q_s8(x + 16)));
}

/* four products a lane: |w| <= 32 keeps them within int16 */
Q4K__NEON_INL int32x4_t q4k__dot32_sc_neon(int8x16_t w0, int8x16_t w1, const int8_t *x, int32_t sc) {
    const int8x16_t x0 = vld1q_s8(x), x1 = vld1q_s8(x + 16);
    int16x8_t p = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
    p = vmlal_s8(p, vget_low_s8(w1), vget_low_s8(x1));
    return q4k__scale16_neon(vdupq_n_s32(0), vmlal_high_s8(p, w1, x1), (int16_t)sc);
}

Q4K__NEON_INL int32x4_t q4k__dot16x2_sc_neon(int8x16_t w0, int8x16_t w1, const int8_t *x, int32_t s0, int32_t s1) {
    const int32x4_t s = q4k__scale16_neon(vdupq_n_s32(0), q4k__mul16_neon(w0, vld1q_s8(x)), (int16_t)s0);
    return q4k__scale16_neon(s, q4k__mul16_neon(w1, vld1q_s8(x + 16)), (int16_t)s1);
}
#endif

/* the 32 signed quants of block b of the 32-value types (wt: 0 = Q8_0,
   1 = Q4_0, 2 = Q5_0) */
Q4K__NEON_INL int8x16x2_t q4k__q32_neon(const void *wv, int64_t b, int wt, float *d) {
    int8x16x2_t q;
    if (wt == 0) {
        const q4k_block_q8_0 *w = (const q4k_block_q8_0 *)wv + b;
        *d = q4k__h2f_neon(w->d);
        q.val[0] = vld1q_s8(w->qs);
        q.val[1] = vld1q_s8(w->qs + 16);
    } else if (wt == 1) {
        const q4k_block_q4_0 *w = (const q4k_block_q4_0 *)wv + b;
        const uint8x16_t v = vld1q_u8(w->qs);
        *d = q4k__h2f_neon(w->d);
        q.val[0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0xF))), vdupq_n_s8(8));
        q.val[1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
    } else {
        /* bit i of qh is bit 4 of quant i: byte lane l tests bit l % 8 of qh
           byte l / 8 */
        static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const q4k_block_q5_0 *w = (const q4k_block_q5_0 *)wv + b;
        const uint8x16_t v = vld1q_u8(w->qs), m = vld1q_u8(bit), m16 = vdupq_n_u8(0x10);
        const uint8x16_t h0 = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(w->qh[0]), vdup_n_u8(w->qh[1])), m), m16);
        const uint8x16_t h1 = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(w->qh[2]), vdup_n_u8(w->qh[3])), m), m16);
        *d = q4k__h2f_neon(w->d);
        q.val[0] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, vdupq_n_u8(0xF)), h0)), vdupq_n_s8(16));
        q.val[1] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), h1)), vdupq_n_s8(16));
    }
    return q;
}

Q4K__NEON_INL void q4k__qdot_q32_neon_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                        int64_t ys, int wt) {
    int64_t b, nb = cols / Q4K_QK;
    float32x4_t acc[Q4K__NT_NEON];
    int c;
    Q4K__UNROLL for (c = 0; c < nc; c++) acc[c] = vdupq_n_f32(0.0f);
    for (b = 0; b < nb; b++) {
        float d;
        const int8x16x2_t q = q4k__q32_neon(wv, b, wt, &d);
        Q4K__UNROLL for (c = 0; c < nc; c++) {
            const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b;
            const int32x4_t s = q4k__dot32_neon(q.val[0], q.val[1], x->qs);
            acc[c] = vfmaq_n_f32(acc[c], vcvtq_f32_s32(s), d * x->d);
        }
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = vaddvq_f32(acc[c]);
}
Q4K__NEON_QTILES(q4k__qdot_q8_0_neon, q4k__qdot_q32_neon_t, 0)
Q4K__NEON_QTILES(q4k__qdot_q4_0_neon, q4k__qdot_q32_neon_t, 1)
Q4K__NEON_QTILES(q4k__qdot_q5_0_neon, q4k__qdot_q32_neon_t, 2)

/* Q4_K and Q5_K: per 64-value chunk k the low nibbles are sub-block 2k and the
   high nibbles sub-block 2k+1 (plus bit 2k / 2k+1 of qh for Q5_K); the quants
   (0..31) are non-negative, so their bytes are also int8 */
Q4K__NEON_INL void q4k__qdot_k45_neon_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                        int64_t ys, int is_q5) {
    int64_t b, nb = cols / Q4K_QK_K;
    const uint8x16_t m4 = vdupq_n_u8(0xF), m16 = vdupq_n_u8(0x10);
    float32x4_t acc[Q4K__NT_NEON];
    int c, k;
    Q4K__UNROLL for (c = 0; c < nc; c++) acc[c] = vdupq_n_f32(0.0f);
    for (b = 0; b < nb; b++) {
        const uint8_t *qs, *scales;
        uint64_t sc, mn;
        float d, dmin;
        uint8x16_t h0 = vdupq_n_u8(0), h1 = vdupq_n_u8(0);
        uint16x8_t mn16;
        float32x4_t sa[Q4K__NT_NEON], mf0, mf1;
        if (is_q5) {
            const q4k_block_q5_K *w = (const q4k_block_q5_K *)wv + b;
            qs = w->qs, scales = w->scales, d = q4k__h2f_neon(w->d), dmin = q4k__h2f_neon(w->dmin);
            h0 = vld1q_u8(w->qh);
            h1 = vld1q_u8(w->qh + 16);
        } else {
            const q4k_block_q4_K *w = (const q4k_block_q4_K *)wv + b;
            qs = w->qs, scales = w->scales, d = q4k__h2f_neon(w->d), dmin = q4k__h2f_neon(w->dmin);
        }
        q4k__scales_k4_words(scales, &sc, &mn);
        Q4K__UNROLL for (c = 0; c < nc; c++) sa[c] = vdupq_n_f32(0.0f);
        for (k = 0; k < 4; k++) {
            const uint8x16_t v0 = vld1q_u8(qs + 32 * k), v1 = vld1q_u8(qs + 32 * k + 16);
            uint8x16_t l0 = vandq_u8(v0, m4), l1 = vandq_u8(v1, m4), u0 = vshrq_n_u8(v0, 4), u1 = vshrq_n_u8(v1, 4);
            const int32_t s0 = (int32_t)((sc >> (16 * k)) & 0xFF), s1 = (int32_t)((sc >> (16 * k + 8)) & 0xFF);
            if (is_q5) {
                l0 = vorrq_u8(l0, vandq_u8(vshlq_n_u8(h0, 4), m16));
                l1 = vorrq_u8(l1, vandq_u8(vshlq_n_u8(h1, 4), m16));
                u0 = vorrq_u8(u0, vandq_u8(vshlq_n_u8(h0, 3), m16));
                u1 = vorrq_u8(u1, vandq_u8(vshlq_n_u8(h1, 3), m16));
                h0 = vshrq_n_u8(h0, 2);
                h1 = vshrq_n_u8(h1, 2);
            }
            Q4K__UNROLL for (c = 0; c < nc; c++) {
                const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b * 8 + 2 * k;
                const int32x4_t i0 = q4k__dot32_sc_neon(vreinterpretq_s8_u8(l0), vreinterpretq_s8_u8(l1), x[0].qs, s0);
                const int32x4_t i1 = q4k__dot32_sc_neon(vreinterpretq_s8_u8(u0), vreinterpretq_s8_u8(u1), x[1].qs, s1);
                sa[c] = vfmaq_n_f32(sa[c], vcvtq_f32_s32(i0), x[0].d);
                sa[c] = vfmaq_n_f32(sa[c], vcvtq_f32_s32(i1), x[1].d);
            }
        }
        mn16 = vmovl_u8(vcreate_u8(mn));
        mf0 = vcvtq_f32_u32(vmovl_u16(vget_low_u16(mn16)));
        mf1 = vcvtq_f32_u32(vmovl_high_u16(mn16));
        Q4K__UNROLL for (c = 0; c < nc; c++) {
            const float *bs = a->bs + (j + c) * a->nbx + b * 8;
            const float32x4_t mins = vfmaq_f32(vmulq_f32(mf0, vld1q_f32(bs)), mf1, vld1q_f32(bs + 4));
            acc[c] = vfmaq_n_f32(acc[c], sa[c], d);
            acc[c] = vfmsq_f32(acc[c], mins, vdupq_n_f32(dmin));
        }
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = vaddvq_f32(acc[c]);
}
Q4K__NEON_QTILES(q4k__qdot_q4_K_neon, q4k__qdot_k45_neon_t, 0)
Q4K__NEON_QTILES(q4k__qdot_q5_K_neon, q4k__qdot_k45_neon_t, 1)

/* Q6_K: per 128-value half h, groups g = 0..3 of 32 values (activation block
   4h+g, sub-blocks 8h+2g and 8h+2g+1) take their low 4 bits from ql (low
   nibbles of ql[0..31], ql[32..63], then the high nibbles) and 2 bits from qh
   (bits 2g, 2g+1) */
Q4K__NEON_INL void q4k__qdot_q6_K_neon_t(const void *wv, int64_t cols, const q4k__act *a, int64_t j, int nc, float *y,
                                         int64_t ys, int unused) {
    const q4k_block_q6_K *w = (const q4k_block_q6_K *)wv;
    int64_t b, nb = cols / Q4K_QK_K;
    const uint8x16_t m4 = vdupq_n_u8(0xF), m30 = vdupq_n_u8(0x30);
    const int8x16_t k32 = vdupq_n_s8(32);
    float32x4_t acc[Q4K__NT_NEON];
    int c, h, g, i;
    (void)unused;
    Q4K__UNROLL for (c = 0; c < nc; c++) acc[c] = vdupq_n_f32(0.0f);
    for (b = 0; b < nb; b++) {
        float32x4_t sa[2][Q4K__NT_NEON]; /* even and odd groups: two dependency chains */
        Q4K__UNROLL for (c = 0; c < nc; c++) sa[0][c] = sa[1][c] = vdupq_n_f32(0.0f);
        for (h = 0; h < 2; h++) {
            uint8x16_t la[2], lb[2], qh[2];
            for (i = 0; i < 2; i++) {
                la[i] = vld1q_u8(w[b].ql + 64 * h + 16 * i);
                lb[i] = vld1q_u8(w[b].ql + 64 * h + 32 + 16 * i);
                qh[i] = vld1q_u8(w[b].qh + 32 * h + 16 * i);
            }
            for (g = 0; g < 4; g++) {
                const int32_t s0 = w[b].scales[8 * h + 2 * g], s1 = w[b].scales[8 * h + 2 * g + 1];
                int8x16_t q[2];
                for (i = 0; i < 2; i++) {
                    const uint8x16_t lo4 = g == 0 ? vandq_u8(la[i], m4)
                                         : g == 1 ? vandq_u8(lb[i], m4)
                                         : g == 2 ? vshrq_n_u8(la[i], 4)
                                                  : vshrq_n_u8(lb[i], 4);
                    const uint8x16_t hi2 = g == 0 ? vshlq_n_u8(qh[i], 4)
                                         : g == 1 ? vshlq_n_u8(qh[i], 2)
                                         : g == 2 ? qh[i]
                                                  : vshrq_n_u8(qh[i], 2);
                    q[i] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo4, vandq_u8(hi2, m30))), k32);
                }
                Q4K__UNROLL for (c = 0; c < nc; c++) {
                    const q4k_block_q8a *x = a->q + (j + c) * a->nbx + b * 8 + 4 * h + g;
                    const int32x4_t s = q4k__dot16x2_sc_neon(q[0], q[1], x->qs, s0, s1);
                    sa[g & 1][c] = vfmaq_n_f32(sa[g & 1][c], vcvtq_f32_s32(s), x->d);
                }
            }
        }
        Q4K__UNROLL for (c = 0; c < nc; c++)
            acc[c] = vfmaq_n_f32(acc[c], vaddq_f32(sa[0][c], sa[1][c]), q4k__h2f_neon(w[b].d));
    }
    Q4K__UNROLL for (c = 0; c < nc; c++) y[c * ys] = vaddvq_f32(acc[c]);
}
Q4K__NEON_QTILES(q4k__qdot_q6_K_neon, q4k__qdot_q6_K_neon_t, 0)

/* Float mode decodes quantized rows with these: q4k_dequantize_row's floats
   bit for bit (the products are exact; the k-quants' fused min subtraction
   rounds once, as the scalar subtraction does). */
Q4K__NEON_INL void q4k__store_s8x16_neon(float *y, int8x16_t q, float d) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    vst1q_f32(y, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
}

/* y = dm * q - mm for 16 unsigned quants */
Q4K__NEON_INL void q4k__store_u8x16_neon(float *y, uint8x16_t q, float dm, float mm) {
    const float32x4_t nm = vdupq_n_f32(-mm);
    const uint16x8_t lo = vmovl_u8(vget_low_u8(q)), hi = vmovl_high_u8(q);
    vst1q_f32(y, vfmaq_n_f32(nm, vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), dm));
    vst1q_f32(y + 4, vfmaq_n_f32(nm, vcvtq_f32_u32(vmovl_high_u16(lo)), dm));
    vst1q_f32(y + 8, vfmaq_n_f32(nm, vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), dm));
    vst1q_f32(y + 12, vfmaq_n_f32(nm, vcvtq_f32_u32(vmovl_high_u16(hi)), dm));
}

static int q4k__decode_neon(q4k_type type, const void *src, float *y, int64_t cols) {
    const uint8x16_t m4 = vdupq_n_u8(0xF), m16 = vdupq_n_u8(0x10);
    int64_t b, nb;
    switch (type) {
    case Q4K_TYPE_Q8_0:
    case Q4K_TYPE_Q4_0:
    case Q4K_TYPE_Q5_0: {
        const int wt = type == Q4K_TYPE_Q8_0 ? 0 : type == Q4K_TYPE_Q4_0 ? 1 : 2;
        for (b = 0, nb = cols / Q4K_QK; b < nb; b++, y += Q4K_QK) {
            float d;
            const int8x16x2_t q = q4k__q32_neon(src, b, wt, &d);
            q4k__store_s8x16_neon(y, q.val[0], d);
            q4k__store_s8x16_neon(y + 16, q.val[1], d);
        }
        return 1;
    }
    case Q4K_TYPE_Q4_K:
    case Q4K_TYPE_Q5_K: {
        const int is_q5 = type == Q4K_TYPE_Q5_K;
        for (b = 0, nb = cols / Q4K_QK_K; b < nb; b++) {
            const uint8_t *qs, *scales;
            float d, dmin;
            uint8x16_t h0 = vdupq_n_u8(0), h1 = vdupq_n_u8(0);
            int k, sc, m;
            if (is_q5) {
                const q4k_block_q5_K *w = (const q4k_block_q5_K *)src + b;
                qs = w->qs, scales = w->scales, d = q4k__h2f_neon(w->d), dmin = q4k__h2f_neon(w->dmin);
                h0 = vld1q_u8(w->qh);
                h1 = vld1q_u8(w->qh + 16);
            } else {
                const q4k_block_q4_K *w = (const q4k_block_q4_K *)src + b;
                qs = w->qs, scales = w->scales, d = q4k__h2f_neon(w->d), dmin = q4k__h2f_neon(w->dmin);
            }
            for (k = 0; k < 4; k++, y += 64) {
                const uint8x16_t v0 = vld1q_u8(qs + 32 * k), v1 = vld1q_u8(qs + 32 * k + 16);
                uint8x16_t l0 = vandq_u8(v0, m4), l1 = vandq_u8(v1, m4), u0 = vshrq_n_u8(v0, 4), u1 = vshrq_n_u8(v1, 4);
                if (is_q5) {
                    l0 = vorrq_u8(l0, vandq_u8(vshlq_n_u8(h0, 4), m16));
                    l1 = vorrq_u8(l1, vandq_u8(vshlq_n_u8(h1, 4), m16));
                    u0 = vorrq_u8(u0, vandq_u8(vshlq_n_u8(h0, 3), m16));
                    u1 = vorrq_u8(u1, vandq_u8(vshlq_n_u8(h1, 3), m16));
                    h0 = vshrq_n_u8(h0, 2);
                    h1 = vshrq_n_u8(h1, 2);
                }
                q4k__scale_min_k4(2 * k, scales, &sc, &m);
                q4k__store_u8x16_neon(y, l0, d * (float)sc, dmin * (float)m);
                q4k__store_u8x16_neon(y + 16, l1, d * (float)sc, dmin * (float)m);
                q4k__scale_min_k4(2 * k + 1, scales, &sc, &m);
                q4k__store_u8x16_neon(y + 32, u0, d * (float)sc, dmin * (float)m);
                q4k__store_u8x16_neon(y + 48, u1, d * (float)sc, dmin * (float)m);
            }
        }
        return 1;
    }
    case Q4K_TYPE_Q6_K:
        for (b = 0, nb = cols / Q4K_QK_K; b < nb; b++) {
            const q4k_block_q6_K *w = (const q4k_block_q6_K *)src + b;
            const float d = q4k__h2f_neon(w->d);
            int h, g, i;
            for (h = 0; h < 2; h++)
                for (g = 0; g < 4; g++, y += 32)
                    for (i = 0; i < 2; i++) { /* 16 values, one scale */
                        uint8x16_t l = vld1q_u8(w->ql + 64 * h + 32 * (g & 1) + 16 * i);
                        const uint8x16_t qh = vld1q_u8(w->qh + 32 * h + 16 * i);
                        int8x16_t q;
                        l = (g >> 1) ? vshrq_n_u8(l, 4) : vandq_u8(l, m4);
                        l = vorrq_u8(l, vshlq_n_u8(vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * g))), vdupq_n_u8(3)), 4));
                        q = vsubq_s8(vreinterpretq_s8_u8(l), vdupq_n_s8(32));
                        q4k__store_s8x16_neon(y + 16 * i, q, d * (float)w->scales[8 * h + 2 * g + i]);
                    }
        }
        return 1;
    default:
        return 0;
    }
}

static const q4k__kernels q4k__kernels_neon = {
    q4k__fdot_f32_neon, q4k__fdot_f16_neon, q4k__fdot_bf16_neon,
    q4k__qdot_q8_0_neon, q4k__qdot_q4_0_neon, q4k__qdot_q5_0_neon,
    q4k__qdot_q4_K_neon, q4k__qdot_q5_K_neon, q4k__qdot_q6_K_neon,
    q4k__decode_neon, NULL, q4k__fdot_f32_neon, Q4K__NT_NEON};
#endif /* Q4K__NEON */

/* ---- matmul ------------------------------------------------------------- */

#define Q4K__NT_FUSED 4 /* the fused float-mode kernels' widest tile */

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
                if (!m->k->decode || !m->k->decode(m->type, wr, tmp, m->cols))
                    q4k_dequantize_row(m->type, wr, tmp, m->cols);
                wr = tmp;
            }
            for (j = j0; j < j1; j += nt)
                m->fdot(wr, m->cols, m->x + j * m->cols, m->cols, (int)(j1 - j < nt ? j1 - j : nt),
                        m->y + j * m->rows + r, m->rows);
        }
    }
}

/* The one process-wide counter q4k has: a diagnostic that must see the
   calls of every backend and session, so it cannot live in one of them. */
static uint64_t q4k__cpu_calls;
static void q4k__cpu_count(void) {
#if defined(__GNUC__)
    __atomic_fetch_add(&q4k__cpu_calls, 1, __ATOMIC_RELAXED);
#else
    q4k__cpu_calls++;
#endif
}
Q4K_API uint64_t q4k_cpu_kernel_calls(void) {
#if defined(__GNUC__)
    return __atomic_load_n(&q4k__cpu_calls, __ATOMIC_RELAXED);
#else
    return q4k__cpu_calls;
#endif
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
    q4k__cpu_count();
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
#ifdef Q4K__NEON
    if (path == Q4K_CPU_NEON) {
        m.k = &q4k__kernels_neon;
        m.quantize = q4k__quantize_act_neon;
    }
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
        /* one tile of columns: fused; more: each row decoded once for all */
        if (!m.fdot && m.k->fquant && n <= m.k->nt && n <= Q4K__NT_FUSED) m.fdot = m.k->fquant(type);
        if (!m.fdot) {
            m.decode = 1;
            m.fdot = m.k->fdec;
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
    int32_t byte_id[256]; /* the token of each single byte (SentencePiece: its BYTE token, -1 none) */
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
    /* SentencePiece */
    int spm;
    float *score;
    int add_space_prefix;
    int32_t unk;
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

/* Which of two tokens with the same bytes the map keeps (lower wins, then
   the lower id). Byte-level BPE: plain tokens, so that BPE finds the
   ordinary one. SentencePiece: NORMAL, then USER_DEFINED (the types
   SentencePiece merges into), before BYTE tokens, whose byte is only the
   fallback for a character that has no token. */
static int q4k__map_prio(const q4k_tokenizer *t, int type) {
    if (!t->spm) return q4k__tok_is_plain(type) ? 0 : 1;
    switch (type) {
    case Q4K_TOKEN_NORMAL: case Q4K_TOKEN_UNDEFINED: return 0;
    case Q4K_TOKEN_USER_DEFINED: return 1;
    case Q4K_TOKEN_BYTE: return 2;
    default: return 3;
    }
}

/* SentencePiece merges only into these (the pieces it matches in text). */
static int q4k__spm_mergeable(int type) {
    return type == Q4K_TOKEN_NORMAL || type == Q4K_TOKEN_UNDEFINED || type == Q4K_TOKEN_USER_DEFINED;
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

/* Add token id; of two tokens with the same bytes the map keeps the one
   q4k__map_prio prefers, the first of equals. */
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
            if (q4k__map_prio(t, t->type[id]) < q4k__map_prio(t, t->type[old])) t->map_id[i] = id;
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
    Q4K_FREE(t->score);
    Q4K_FREE(t);
}

/* Every tokenizer.ggml.pre name that GGUF converters write for one of the
   three patterns q4k implements (llama.cpp's llama-vocab.cpp gives each of
   these names that very pattern). ignore_merges: a pre-token that is a whole
   token is taken as it is (llama.cpp does so for its Llama 3 group, not for
   smaug-bpe or dbrx, which share the pattern); add_bos: the default when
   tokenizer.ggml.add_bos_token is absent. "default" is not here: llama.cpp
   splits it with other patterns. */
static const struct q4k__pre_name {
    const char *name;
    int pre, ignore_merges, add_bos;
} q4k__pre_names[] = {
    {"qwen2", Q4K__PRE_QWEN2, 0, 0},        {"deepseek-r1-qwen", Q4K__PRE_QWEN2, 0, 0},
    {"megrez", Q4K__PRE_QWEN2, 0, 0},       {"kormo", Q4K__PRE_QWEN2, 0, 0},
    {"stablelm2", Q4K__PRE_QWEN2, 0, 0},    {"hunyuan", Q4K__PRE_QWEN2, 0, 0},
    {"grok-2", Q4K__PRE_QWEN2, 0, 0},
    {"llama-bpe", Q4K__PRE_LLAMA3, 1, 1},   {"llama3", Q4K__PRE_LLAMA3, 1, 1},
    {"llama-v3", Q4K__PRE_LLAMA3, 1, 1},    {"falcon3", Q4K__PRE_LLAMA3, 1, 1},
    {"falcon-h1", Q4K__PRE_LLAMA3, 1, 1},   {"pixtral", Q4K__PRE_LLAMA3, 1, 1},
    {"midm-2.0", Q4K__PRE_LLAMA3, 1, 1},    {"lfm2", Q4K__PRE_LLAMA3, 1, 1},
    {"smaug-bpe", Q4K__PRE_LLAMA3, 0, 0},   {"dbrx", Q4K__PRE_LLAMA3, 0, 0},
    {"gpt2", Q4K__PRE_GPT2, 0, 0},          {"gpt-2", Q4K__PRE_GPT2, 0, 0},
    {"phi-2", Q4K__PRE_GPT2, 0, 0},         {"jina-es", Q4K__PRE_GPT2, 0, 0},
    {"jina-de", Q4K__PRE_GPT2, 0, 0},       {"jina-v2-es", Q4K__PRE_GPT2, 0, 0},
    {"jina-v2-de", Q4K__PRE_GPT2, 0, 0},    {"gigachat", Q4K__PRE_GPT2, 0, 0},
    {"a.x-4.0", Q4K__PRE_GPT2, 0, 0},       {"mellum", Q4K__PRE_GPT2, 0, 0},
    {"exaone4", Q4K__PRE_GPT2, 0, 0},       {"mpt", Q4K__PRE_GPT2, 0, 0},
    {"olmo", Q4K__PRE_GPT2, 0, 0},          {"jais", Q4K__PRE_GPT2, 0, 0},
    {"trillion", Q4K__PRE_GPT2, 0, 0},      {"granite-docling", Q4K__PRE_GPT2, 0, 0},
};
#define Q4K__N_PRE_NAMES ((int64_t)(sizeof q4k__pre_names / sizeof q4k__pre_names[0]))

/* The table entry of a name; NULL or "" is gpt2 (a descriptor's default). */
static const struct q4k__pre_name *q4k__pre_lookup(const char *name) {
    int64_t i;
    if (!name || !*name) name = "gpt2";
    for (i = 0; i < Q4K__N_PRE_NAMES; i++)
        if (!strcmp(name, q4k__pre_names[i].name)) return &q4k__pre_names[i];
    return NULL;
}

static int q4k__pre_from_name(const char *name) {
    const struct q4k__pre_name *e = q4k__pre_lookup(name);
    return e ? e->pre : -1;
}

/* "qwen2, deepseek-r1-qwen, ..." for messages (cut to fit) */
static const char *q4k__pre_list(char *buf, size_t cap) {
    size_t o = 0;
    int64_t i;
    buf[0] = 0;
    for (i = 0; i < Q4K__N_PRE_NAMES && o + 1 < cap; i++) {
        int w = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", q4k__pre_names[i].name);
        if (w < 0) break;
        o += (size_t)w;
    }
    return buf;
}

Q4K_API const char *q4k_pre_tokenizer_name(int64_t i, const char **family) {
    static const char *const fam[] = {"gpt2", "qwen2", "llama-bpe"};
    if (i < 0 || i >= Q4K__N_PRE_NAMES) return NULL;
    if (family) *family = fam[q4k__pre_names[i].pre];
    return q4k__pre_names[i].name;
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
    static const char *const names[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
                                        "<\xEF\xBD\234end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) return 1;
    return 0;
}

/* The byte of a SentencePiece BYTE token spelled <0xAB>, -1 otherwise. */
static int q4k__spm_byte_token(const unsigned char *s, size_t n) {
    int v = 0;
    size_t i;
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    for (i = 3; i < 5; i++) {
        unsigned c = s[i];
        int h = c >= '0' && c <= '9' ? (int)(c - '0') : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10)
              : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : -1;
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Copy n bytes with each U+2581 "▁" (E2 96 81) turned into a space; the
   output is never longer. Returns its length. */
static size_t q4k__spm_unescape(const unsigned char *s, size_t n, unsigned char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        if (i + 2 < n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
            out[o++] = ' ';
            i += 3;
        } else {
            out[o++] = s[i++];
        }
    }
    return o;
}

/* `kp` prefixes key names in messages: "" for a descriptor,
   "tokenizer.ggml." for a GGUF file. */
static q4k_result q4k__tokenizer_build(const q4k_vocab_desc *d, const char *kp, q4k_tokenizer **out, q4k_error *err) {
    q4k_tokenizer *t;
    int64_t i, n, n_raw = 0;
    size_t total = 0, o = 0, cap, max_merge = 0;
    int64_t n_skipped = 0, n_unmade = 0, first_unmade = -1;
    unsigned char *buf = NULL;
    q4k__special_key *keys = NULL;
    size_t n_special = 0;
    char e1[80], e2[80];
    q4k_result rc = Q4K_OK;
    int pre = Q4K__PRE_GPT2, spm = 0;

    if (out) *out = NULL;
    if (!d || !out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_tokenizer_create: desc and out must not be NULL");
    if (d->model && *d->model && strcmp(d->model, "gpt2")) {
        char q[272];
        if (strcmp(d->model, "llama") && strcmp(d->model, "spm"))
            return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                             "%smodel = '%s' is not implemented (q4k knows 'gpt2', byte-level BPE, and 'llama', "
                             "SentencePiece BPE)", kp, q4k__quote(q, sizeof q, d->model, strlen(d->model)));
        spm = 1;
    }
    n = d->n_tokens;
    if (spm) {
        if (n < 1 || n > INT32_MAX - 1 || !d->tokens)
            return q4k__fail(err, Q4K_ERR_INVALID_ARG,
                             "%stokens: a SentencePiece vocabulary needs 1 to 2^31-2 tokens, not %lld", kp, (long long)n);
        if (!d->scores)
            return q4k__fail(err, Q4K_ERR_INVALID_ARG, "%sscores: a SentencePiece vocabulary needs one score per token",
                             kp);
        if (d->n_merges)
            return q4k__fail(err, Q4K_ERR_INVALID_ARG,
                             "%smerges: a SentencePiece vocabulary merges by score and has no merges (%lld given)", kp,
                             (long long)d->n_merges);
    } else {
        if (n < 256 || n > INT32_MAX - 1 || !d->tokens)
            return q4k__fail(err, Q4K_ERR_INVALID_ARG,
                             "%stokens: a byte-level BPE vocabulary needs 256 to 2^31-2 tokens, not %lld", kp,
                             (long long)n);
        if (d->n_merges < 0 || d->n_merges > INT32_MAX || (d->n_merges && !d->merges))
            return q4k__fail(err, Q4K_ERR_INVALID_ARG, "%smerges: bad count %lld", kp, (long long)d->n_merges);
        pre = q4k__pre_from_name(d->pre);
        if (pre < 0) {
            char names[400];
            return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "%spre = '%s': pre-tokenizer not implemented (q4k knows %s)", kp,
                             q4k__esc(d->pre, strlen(d->pre), e1), q4k__pre_list(names, sizeof names));
        }
    }

    t = (q4k_tokenizer *)Q4K_MALLOC(sizeof *t);
    if (!t) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    memset(t, 0, sizeof *t);
    t->n_vocab = n;
    t->pre = pre;
    t->ignore_merges = !spm && q4k__pre_lookup(d->pre)->ignore_merges;
    t->bos = t->eos = t->eot = t->pad = t->unk = -1;
    t->add_bos = d->add_bos != 0;
    t->spm = spm;
    t->add_space_prefix = spm && d->add_space_prefix;

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
    if (spm) {
        t->score = (float *)Q4K_MALLOC((size_t)n * sizeof *t->score);
        if (!t->score) goto oom;
    }

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
        if (spm) {
            float sc = d->scores[i];
            if (!(sc - sc == 0.0f)) { /* NaN or infinite */
                rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "%sscores[%lld] = %g is not a finite number", kp,
                               (long long)i, (double)sc);
                goto fail;
            }
            t->score[i] = sc;
            if (ty == Q4K_TOKEN_BYTE) {
                int b = q4k__spm_byte_token(s, l);
                if (b < 0) {
                    rc = q4k__fail(err, Q4K_ERR_INVALID_ARG,
                                   "%stokens[%lld] = '%s' is a BYTE token but is not spelled <0xAB>", kp, (long long)i,
                                   q4k__esc(s, l, e1));
                    goto fail;
                }
                t->text[o] = (unsigned char)b;
                dl = 1;
            } else if (ty == Q4K_TOKEN_CONTROL || ty == Q4K_TOKEN_UNKNOWN) {
                if (l) memcpy(t->text + o, s, l);
                dl = (int64_t)l;
            } else {
                dl = (int64_t)q4k__spm_unescape(s, l, t->text + o);
            }
        } else if (ty != Q4K_TOKEN_CONTROL && ty != Q4K_TOKEN_USER_DEFINED) {
            dl = q4k__bytelevel_decode(s, l, t->text + o);
        }
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

    if (spm) {
        int missing = -1;
        for (i = 0; i < 256; i++) t->byte_id[i] = -1;
        for (i = n - 1; i >= 0; i--) /* the first BYTE token of each byte */
            if (t->type[i] == Q4K_TOKEN_BYTE) t->byte_id[t->text[t->off[i]]] = (int32_t)i;
        if (d->set_ids) {
            if (d->unk_id < -1 || d->unk_id >= n) {
                rc = q4k__fail(err, Q4K_ERR_INVALID_ARG,
                               "%sunknown_token_id = %ld is out of range (the vocabulary has %lld tokens)", kp,
                               (long)d->unk_id, (long long)n);
                goto fail;
            }
            t->unk = d->unk_id;
        } else {
            for (i = 0; i < n && t->unk < 0; i++)
                if (t->type[i] == Q4K_TOKEN_UNKNOWN) t->unk = (int32_t)i;
        }
        for (i = 255; i >= 0; i--)
            if (t->byte_id[i] < 0) missing = (int)i;
        if (missing >= 0 && t->unk < 0) {
            rc = q4k__fail(err, Q4K_ERR_INVALID_ARG,
                           "%stokens: no BYTE token <0x%02X> and no unknown token, so a text holding that byte "
                           "could not be tokenized", kp, (unsigned)missing);
            goto fail;
        }
        goto special_ids; /* no byte table or merges to build */
    }

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
        if (res < 0) { /* real files carry a few such merges: BPE cannot use them */
            if (!n_unmade) first_unmade = i;
            n_unmade++;
            continue;
        }
        /* BPE never makes a control, unknown or unused token out of plain
           text (that could turn a user's words into an end-of-generation
           mark): such merges are left out */
        if (!q4k__tok_is_plain(t->type[left]) || !q4k__tok_is_plain(t->type[right]) ||
            !q4k__tok_is_plain(t->type[res])) {
            n_skipped++;
            continue;
        }
        q4k__merge_add(t, left, right, (int32_t)i, res);
    }
    if (n_skipped)
        q4k__log(d->log, d->log_user, Q4K_LOG_WARN,
                 "tokenizer: %lld merges join or make special tokens; left out", (long long)n_skipped);
    if (n_unmade)
        q4k__log(d->log, d->log_user, Q4K_LOG_WARN,
                 "tokenizer: %lld merges make a token that is not in the vocabulary (the first: %smerges[%lld] = '%s'); "
                 "left out", (long long)n_unmade, kp, (long long)first_unmade,
                 q4k__esc(d->merges[first_unmade], d->merge_lens ? d->merge_lens[first_unmade] : strlen(d->merges[first_unmade]), e1));

special_ids:
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
        if (i == t->eos || i == t->eot ||
            ((t->type[i] == Q4K_TOKEN_CONTROL || t->type[i] == Q4K_TOKEN_USER_DEFINED) && q4k__is_eog_text(s, l)))
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

/* A per-token array of the vocabulary: its element type and encoded data,
   with one entry per token. Q4K_ERR_NOT_FOUND (err untouched) when absent. */
static q4k_result q4k__vocab_arr(const q4k_gguf *g, const char *key, uint64_t n_tok, q4k_gguf_type *et,
                                 const void **data, q4k_error *err) {
    uint64_t n = 0;
    q4k_result rc = q4k_gguf_get_arr(g, key, et, &n);
    if (rc == Q4K_ERR_NOT_FOUND) return rc;
    if (rc != Q4K_OK) return q4k__fail(err, rc, "%s: %s", key, q4k_result_string(rc));
    if (n != n_tok)
        return q4k__fail(err, Q4K_ERR_BAD_COUNT, "%s has %llu entries for %llu tokens", key, (unsigned long long)n,
                         (unsigned long long)n_tok);
    rc = q4k_gguf_get_arr_data(g, key, data);
    if (rc != Q4K_OK) return q4k__fail(err, rc, "%s: %s (want numbers)", key, q4k_result_string(rc));
    return Q4K_OK;
}

Q4K_API q4k_result q4k_tokenizer_from_gguf(const q4k_gguf *g, q4k_tokenizer **out, q4k_error *err) {
    return q4k_tokenizer_from_gguf_pre(g, NULL, out, err);
}

Q4K_API q4k_result q4k_tokenizer_from_gguf_pre(const q4k_gguf *g, const char *pre_override, q4k_tokenizer **out,
                                               q4k_error *err) {
    const char *model = NULL, *pre = NULL;
    int32_t eom = -1;
    q4k_gguf_type et;
    uint64_t n_tok = 0, n_merge = 0, i;
    const void *data = NULL;
    const char **tokens = NULL, **merges = NULL;
    size_t *token_lens = NULL, *merge_lens = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    q4k_vocab_desc d;
    q4k_result rc;
    int add_bos, spm;

    if (out) *out = NULL;
    if (!g || !out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_tokenizer_from_gguf: g and out must not be NULL");
    memset(&d, 0, sizeof d);

    rc = q4k_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (rc == Q4K_ERR_NOT_FOUND) return q4k__fail(err, rc, "tokenizer.ggml.model is missing: the file has no tokenizer");
    if (rc != Q4K_OK) return q4k__fail(err, rc, "tokenizer.ggml.model: %s (want a string)", q4k_result_string(rc));
    spm = !strcmp(model, "llama");
    if (!spm && strcmp(model, "gpt2")) {
        char q[272];
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                         "tokenizer.ggml.model = '%s' is not implemented; q4k implements 'gpt2' (byte-level BPE) and "
                         "'llama' (SentencePiece BPE)", q4k__quote(q, sizeof q, model, strlen(model)));
    }

    /* SentencePiece has no pre-tokenizer: tokenizer.ggml.pre is not read */
    if (spm && pre_override)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "pre-tokenizer '%s' given for a SentencePiece vocabulary, which has none",
                         pre_override);
    if (!spm) {
        char names[400], e1[80];
        if (pre_override) {
            pre = pre_override;
            if (q4k__pre_from_name(pre) < 0)
                return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "pre-tokenizer '%s' is not one q4k knows (%s)",
                                 q4k__esc(pre, strlen(pre), e1), q4k__pre_list(names, sizeof names));
        } else {
            rc = q4k_gguf_get_str(g, "tokenizer.ggml.pre", &pre);
            if (rc == Q4K_ERR_NOT_FOUND)
                return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                                 "tokenizer.ggml.pre is missing: q4k needs it to choose the pre-tokenizer; convert the "
                                 "model again with a current converter, or name one (%s)",
                                 q4k__pre_list(names, sizeof names));
            if (rc != Q4K_OK) return q4k__fail(err, rc, "tokenizer.ggml.pre: %s (want a string)", q4k_result_string(rc));
            if (q4k__pre_from_name(pre) < 0)
                return q4k__fail(err, Q4K_ERR_UNSUPPORTED,
                                 "tokenizer.ggml.pre = '%s': pre-tokenizer not implemented (q4k knows %s)",
                                 q4k__esc(pre, strlen(pre), e1), q4k__pre_list(names, sizeof names));
        }
    }

    rc = q4k_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok);
    if (rc != Q4K_OK) return q4k__fail(err, rc, "tokenizer.ggml.tokens: %s", q4k_result_string(rc));
    if (et != Q4K_GGUF_STRING)
        return q4k__fail(err, Q4K_ERR_TYPE_MISMATCH, "tokenizer.ggml.tokens is an array of type %d, not of strings", (int)et);
    if (n_tok > (uint64_t)Q4K_MAX_VOCAB)
        return q4k__fail(err, Q4K_ERR_BAD_COUNT, "tokenizer.ggml.tokens has %llu entries, above q4k's limit of %lld",
                         (unsigned long long)n_tok, (long long)Q4K_MAX_VOCAB);

    /* SentencePiece merges by score: tokenizer.ggml.merges is not read */
    if (!spm) {
        rc = q4k_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n_merge);
        if (rc == Q4K_ERR_NOT_FOUND)
            return q4k__fail(err, Q4K_ERR_BAD_MODEL,
                             "tokenizer.ggml.merges is missing (a byte-level BPE vocabulary needs it)");
        if (rc != Q4K_OK) return q4k__fail(err, rc, "tokenizer.ggml.merges: %s", q4k_result_string(rc));
        if (et != Q4K_GGUF_STRING)
            return q4k__fail(err, Q4K_ERR_TYPE_MISMATCH, "tokenizer.ggml.merges is an array of type %d, not of strings",
                             (int)et);
        if (n_merge > (uint64_t)INT32_MAX)
            return q4k__fail(err, Q4K_ERR_BAD_COUNT, "tokenizer.ggml.merges has %llu entries (at most 2^31-1)",
                             (unsigned long long)n_merge);
    }

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

    rc = q4k__vocab_arr(g, "tokenizer.ggml.token_type", n_tok, &et, &data, err);
    if (rc == Q4K_OK) {
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
        goto done;
    }

    if (spm) {
        rc = q4k__vocab_arr(g, "tokenizer.ggml.scores", n_tok, &et, &data, err);
        if (rc == Q4K_ERR_NOT_FOUND) {
            rc = q4k__fail(err, Q4K_ERR_BAD_MODEL, "tokenizer.ggml.scores is missing (a SentencePiece vocabulary needs it)");
            goto done;
        }
        if (rc != Q4K_OK) goto done;
        if (et != Q4K_GGUF_FLOAT32) {
            rc = q4k__fail(err, Q4K_ERR_TYPE_MISMATCH, "tokenizer.ggml.scores is an array of %s, not of FLOAT32",
                           q4k_gguf_type_name(et));
            goto done;
        }
        scores = (float *)Q4K_MALLOC((size_t)(n_tok ? n_tok : 1) * sizeof *scores);
        if (!scores) {
            rc = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
            goto done;
        }
        for (i = 0; i < n_tok; i++) { /* little-endian, maybe unaligned */
            const unsigned char *p = (const unsigned char *)data + 4 * i;
            uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&scores[i], &u, 4);
        }
        d.model = "llama";
        d.scores = scores;
        rc = q4k_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &d.add_space_prefix);
        if (rc == Q4K_ERR_NOT_FOUND) {
            d.add_space_prefix = 1;
        } else if (rc != Q4K_OK) {
            q4k__fail(err, rc, "tokenizer.ggml.add_space_prefix: %s (want a bool)", q4k_result_string(rc));
            goto done;
        }
        if ((rc = q4k__gguf_token_id(g, "tokenizer.ggml.unknown_token_id", &d.unk_id, err)) != Q4K_OK) goto done;
        if (d.unk_id < 0 && types) /* absent: the first UNKNOWN token, as without set_ids */
            for (i = 0; i < n_tok && d.unk_id < 0; i++)
                if (types[i] == Q4K_TOKEN_UNKNOWN) d.unk_id = (int32_t)i;
    }

    d.set_ids = 1;
    if ((rc = q4k__gguf_token_id(g, "tokenizer.ggml.bos_token_id", &d.bos_id, err)) != Q4K_OK ||
        (rc = q4k__gguf_token_id(g, "tokenizer.ggml.eos_token_id", &d.eos_id, err)) != Q4K_OK ||
        (rc = q4k__gguf_token_id(g, "tokenizer.ggml.eot_token_id", &d.eot_id, err)) != Q4K_OK ||
        (rc = q4k__gguf_token_id(g, "tokenizer.ggml.padding_token_id", &d.pad_id, err)) != Q4K_OK ||
        (rc = q4k__gguf_token_id(g, "tokenizer.ggml.eom_token_id", &eom, err)) != Q4K_OK)
        goto done;
    if (eom >= (int64_t)n_tok) {
        rc = q4k__fail(err, Q4K_ERR_INVALID_ARG, "tokenizer.ggml.eom_token_id = %ld is out of range (the vocabulary has %llu tokens)",
                       (long)eom, (unsigned long long)n_tok);
        goto done;
    }
    rc = q4k_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos);
    if (rc == Q4K_ERR_NOT_FOUND) {
        add_bos = spm || q4k__pre_lookup(pre)->add_bos;
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
    if (rc == Q4K_OK && eom >= 0) (*out)->tflags[eom] |= Q4K__TOKF_EOG;
done:
    Q4K_FREE(tokens);
    Q4K_FREE(token_lens);
    Q4K_FREE(merges);
    Q4K_FREE(merge_lens);
    Q4K_FREE(types);
    Q4K_FREE(scores);
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

Q4K_API int32_t q4k_tokenizer_unk(const q4k_tokenizer *t) { return t ? t->unk : -1; }

Q4K_API const char *q4k_tokenizer_pre(const q4k_tokenizer *t) {
    if (!t) return "";
    if (t->spm) return "spm";
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

/* A candidate merge of two adjacent symbols, in a binary heap that gives
   the lowest key first, the leftmost of equals. Byte-level BPE: key = merge
   rank, b = the right symbol. SentencePiece: key = -score of token id, b =
   the byte length of the pair (symbols at byte offsets left and left + the
   left one's length). Both keys are exact in a double. */
typedef struct q4k__pair {
    double key;
    int32_t left, b, id;
} q4k__pair;

typedef struct q4k__tokctx {
    const q4k_tokenizer *t;
    int32_t *out;
    int64_t cap, n;
    /* scratch, grown to the longest pre-token */
    int32_t *sym, *next, *prev;
    q4k__pair *heap;
    size_t n_heap, scap;
    /* SentencePiece scratch, grown to the longest text fragment: the
       fragment's bytes, and per symbol (indexed by its first byte) its
       length (0: merged into the symbol before it) and neighbours */
    unsigned char *wbuf;
    int32_t *slen, *snext, *sprev;
    q4k__pair *sheap;
    size_t n_sheap, wcap;
} q4k__tokctx;

static void q4k__emit(q4k__tokctx *c, int32_t id) {
    if (c->n < c->cap) c->out[c->n] = id;
    c->n++;
}

static int q4k__pair_before(const q4k__pair *a, const q4k__pair *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static void q4k__heap_push(q4k__pair *h, size_t *n, const q4k__pair *it) {
    size_t k = (*n)++;
    while (k > 0) {
        size_t p = (k - 1) / 2;
        if (!q4k__pair_before(it, &h[p])) break;
        h[k] = h[p];
        k = p;
    }
    h[k] = *it;
}

static q4k__pair q4k__heap_pop(q4k__pair *h, size_t *n_io) {
    q4k__pair top = h[0], last = h[--*n_io];
    size_t k = 0, n = *n_io;
    for (;;) {
        size_t m = 2 * k + 1;
        if (m >= n) break;
        if (m + 1 < n && q4k__pair_before(&h[m + 1], &h[m])) m++;
        if (!q4k__pair_before(&h[m], &last)) break;
        h[k] = h[m];
        k = m;
    }
    if (n) h[k] = last;
    return top;
}

static void q4k__bpe_push(q4k__tokctx *c, int32_t left, int32_t right) {
    int32_t rank, res;
    q4k__pair it;
    if (left < 0 || right < 0) return;
    if (!q4k__merge_find(c->t, c->sym[left], c->sym[right], &rank, &res)) return;
    it.key = (double)rank;
    it.left = left;
    it.b = right;
    it.id = res;
    q4k__heap_push(c->heap, &c->n_heap, &it);
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
        c->heap = (q4k__pair *)Q4K_MALLOC(3 * cap * sizeof *c->heap);
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
        q4k__pair it = q4k__heap_pop(c->heap, &c->n_heap);
        int32_t rank, res, l = it.left, r = it.b;
        /* stale when a side was merged away or changed since the push */
        if (c->sym[l] < 0 || c->sym[r] < 0 || c->next[l] != r) continue;
        if (!q4k__merge_find(t, c->sym[l], c->sym[r], &rank, &res) || (double)rank != it.key) continue;
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

/* ---- SentencePiece BPE ---------------------------------------------------- */

static void q4k__spm_push(q4k__tokctx *c, int32_t left, int32_t right) {
    const q4k_tokenizer *t = c->t;
    q4k__pair it;
    int32_t id;
    if (left < 0 || right < 0) return;
    it.b = c->slen[left] + c->slen[right];
    id = q4k__map_find(t, c->wbuf + left, (size_t)it.b);
    if (id < 0 || !q4k__spm_mergeable(t->type[id])) return;
    it.key = -(double)t->score[id]; /* the highest score first */
    it.left = left;
    it.id = id;
    q4k__heap_push(c->sheap, &c->n_sheap, &it);
}

static q4k_result q4k__spm_reserve(q4k__tokctx *c, size_t n) {
    size_t cap = n < 64 ? 64 : n;
    if (n <= c->wcap) return Q4K_OK;
    Q4K_FREE(c->wbuf);
    Q4K_FREE(c->slen);
    Q4K_FREE(c->snext);
    Q4K_FREE(c->sprev);
    Q4K_FREE(c->sheap);
    c->wbuf = (unsigned char *)Q4K_MALLOC(cap);
    c->slen = (int32_t *)Q4K_MALLOC(cap * sizeof *c->slen);
    c->snext = (int32_t *)Q4K_MALLOC(cap * sizeof *c->snext);
    c->sprev = (int32_t *)Q4K_MALLOC(cap * sizeof *c->sprev);
    /* at most n - 1 pairs at first and two new ones per merge */
    c->sheap = (q4k__pair *)Q4K_MALLOC(3 * cap * sizeof *c->sheap);
    c->wcap = cap;
    if (!c->wbuf || !c->slen || !c->snext || !c->sprev || !c->sheap) {
        c->wcap = 0;
        return Q4K_ERR_OUT_OF_MEMORY;
    }
    return Q4K_OK;
}

/* One piece of text between special tokens, tokenized as SentencePiece's
   BPE does it: symbols start as characters; the pair making the token of
   the highest score merges, the leftmost of equals, until no pair makes a
   token. A pushed pair is stale once either side has merged since (its
   size no longer equals the two lengths: lengths only grow). */
static q4k_result q4k__spm_fragment(q4k__tokctx *c, const unsigned char *s, size_t a, size_t b) {
    const q4k_tokenizer *t = c->t;
    size_t n = 0, i;
    int32_t k, last = -1;
    q4k_result rc;
    if (a >= b) return Q4K_OK; /* llama.cpp gives an empty piece no space either */
    if (b - a >= (size_t)INT32_MAX) return Q4K_ERR_INVALID_ARG;
    if ((rc = q4k__spm_reserve(c, b - a + 1)) != Q4K_OK) return rc;
    if (t->add_space_prefix) c->wbuf[n++] = ' ';
    /* tokens hold spaces where SentencePiece writes "▁": a "▁" in the text
       means a space too, as it does for SentencePiece */
    n += q4k__spm_unescape(s + a, b - a, c->wbuf + n);
    for (i = 0; i < n;) {
        uint32_t cp, l = q4k__utf8_decode(c->wbuf + i, n - i, &cp);
        if (!l) l = 1; /* not valid UTF-8: the byte alone */
        c->slen[i] = (int32_t)l;
        c->sprev[i] = last;
        c->snext[i] = -1;
        if (last >= 0) c->snext[last] = (int32_t)i;
        last = (int32_t)i;
        i += l;
    }
    c->n_sheap = 0;
    for (k = 0; c->snext[k] >= 0; k = c->snext[k]) q4k__spm_push(c, k, c->snext[k]);
    while (c->n_sheap) {
        q4k__pair it = q4k__heap_pop(c->sheap, &c->n_sheap);
        int32_t l = it.left, r = c->snext[l];
        if (!c->slen[l] || r < 0 || c->slen[l] + c->slen[r] != it.b) continue;
        c->slen[l] = it.b;
        c->slen[r] = 0;
        c->snext[l] = c->snext[r];
        if (c->snext[r] >= 0) c->sprev[c->snext[r]] = l;
        q4k__spm_push(c, c->sprev[l], l);
        q4k__spm_push(c, l, c->snext[l]);
    }
    for (k = 0; k >= 0; k = c->snext[k]) {
        const unsigned char *w = c->wbuf + k;
        size_t j, l = (size_t)c->slen[k];
        int32_t id = q4k__map_find(t, w, l);
        if (id >= 0 && q4k__spm_mergeable(t->type[id])) {
            q4k__emit(c, id);
            continue;
        }
        /* only a single character is left without a token: its bytes, or
           the unknown token when one of them has no byte token (the
           vocabulary has an unknown token then: checked at creation) */
        for (j = 0; j < l && t->byte_id[w[j]] >= 0; j++) {}
        if (j < l) {
            q4k__emit(c, t->unk);
            continue;
        }
        for (j = 0; j < l; j++) q4k__emit(c, t->byte_id[w[j]]);
    }
    return Q4K_OK;
}

static q4k_result q4k__encode_fragment(q4k__tokctx *c, const unsigned char *s, size_t a, size_t b) {
    if (c->t->spm) return q4k__spm_fragment(c, s, a, b);
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
    Q4K_FREE(c.wbuf);
    Q4K_FREE(c.slen);
    Q4K_FREE(c.snext);
    Q4K_FREE(c.sprev);
    Q4K_FREE(c.sheap);
    if (rc == Q4K_ERR_INVALID_ARG)
        return q4k__fail(err, rc, "q4k_tokenize: a piece of text of 2^31-1 bytes or more (with the space in front)");
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

Q4K_API const char *q4k_arch_name(q4k_arch a) {
    switch (a) {
    case Q4K_ARCH_QWEN2: return "qwen2";
    case Q4K_ARCH_LLAMA: return "llama";
    }
    return "unknown";
}

Q4K_API const char *q4k_op_name(q4k_op op) {
    static const char *const names[] = {
#define Q4K__OP_NAME(name, text) text,
        Q4K_OP_LIST(Q4K__OP_NAME)
#undef Q4K__OP_NAME
    };
    if ((int)op < 0 || (int)op >= (int)Q4K_OP_COUNT) return "unknown";
    return names[op];
}

Q4K_API void q4k_rope_cos_sin(int64_t pos, int64_t i, int64_t n_rot, double base, double factor, float *c,
                              float *s) {
    double theta = (double)pos * pow(base, -2.0 * (double)i / (double)n_rot) / factor;
    *c = (float)cos(theta);
    *s = (float)sin(theta);
}

/* --- loading ------------------------------------------------------------ */

/* A hyperparameter "{arch}.{name}" as a positive integer. */
static q4k_result q4k__hp_int(const q4k_gguf *g, const char *arch, const char *name, int required, int64_t dflt,
                              int64_t *out, q4k_error *err) {
    char key[128];
    uint64_t v;
    q4k_result r;
    snprintf(key, sizeof key, "%s.%s", arch, name);
    r = q4k_gguf_get_u64(g, key, &v);
    if (r == Q4K_ERR_NOT_FOUND && !required) {
        *out = dflt;
        return Q4K_OK;
    }
    if (r == Q4K_ERR_NOT_FOUND) return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: metadata key '%s' is missing", key);
    if (r != Q4K_OK) return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: metadata key '%s' is not a non-negative integer (%s)", key, q4k_result_string(r));
    if (v == 0 || v > ((uint64_t)1 << 40))
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: metadata key '%s' has the value %llu, out of range",
                         key, (unsigned long long)v);
    *out = (int64_t)v;
    return Q4K_OK;
}

static q4k_result q4k__hp_float(const q4k_gguf *g, const char *arch, const char *name, int required, float dflt,
                                float *out, q4k_error *err) {
    char key[128];
    q4k_result r;
    snprintf(key, sizeof key, "%s.%s", arch, name);
    r = q4k_gguf_get_f32(g, key, out);
    if (r == Q4K_ERR_NOT_FOUND && !required) {
        *out = dflt;
        return Q4K_OK;
    }
    if (r != Q4K_OK) return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: metadata key '%s': %s", key, q4k_result_string(r));
    if (!(*out > 0.0f) || *out != *out || *out > 1e30f)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: metadata key '%s' has the value %g, out of range", key, (double)*out);
    return Q4K_OK;
}

/* Find a tensor and check its shape [ne0, ne1] (ne1 = 0: 1-d) and type class. */
static q4k_result q4k__want(const q4k_gguf *g, const char *name, int64_t ne0, int64_t ne1, int f32_only,
                            const q4k_tensor **out, q4k_error *err) {
    const q4k_tensor *t = q4k_gguf_find_tensor(g, name);
    int nd = ne1 ? 2 : 1;
    if (!t) return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: tensor '%s' is missing", name);
    if (t->n_dims != nd || t->ne[0] != ne0 || (nd == 2 && t->ne[1] != ne1))
        return q4k__fail(err, Q4K_ERR_BAD_MODEL,
                         "model: tensor '%s' has shape [%lld, %lld] (%d dims), expected [%lld, %lld] (%d dims)", name,
                         (long long)t->ne[0], (long long)t->ne[1], t->n_dims, (long long)ne0, (long long)(ne1 ? ne1 : 1), nd);
    if (f32_only && t->type != Q4K_TYPE_F32)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: tensor '%s' has type %s, expected F32", name,
                         q4k_type_name(t->type));
    if (!q4k_type_traits(t->type).implemented)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED_TYPE, "model: tensor '%s' has type %s, not implemented", name,
                         q4k_type_name(t->type));
    *out = t;
    return Q4K_OK;
}

static const char *const q4k__layer_tensor_names[] = {
    "attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_q.bias", "attn_k.bias",
    "attn_v.bias", "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};

/* 1 when `name` is a tensor this architecture uses */
static int q4k__known_tensor(const q4k_hparams *hp, const char *name, int has_rope_freqs) {
    size_t i;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output_norm.weight") || !strcmp(name, "output.weight"))
        return 1;
    if (!strcmp(name, "rope_freqs.weight")) return has_rope_freqs;
    if (!strncmp(name, "blk.", 4)) {
        const char *p = name + 4;
        int64_t l = 0;
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9' && l < 1000000) l = l * 10 + (*p++ - '0');
        if (*p != '.' || l >= hp->n_layer) return 0;
        p++;
        for (i = 0; i < sizeof q4k__layer_tensor_names / sizeof q4k__layer_tensor_names[0]; i++) {
            if (strcmp(p, q4k__layer_tensor_names[i])) continue;
            if (hp->arch == Q4K_ARCH_LLAMA && strstr(p, ".bias")) return 0;
            return 1;
        }
    }
    return 0;
}

static q4k_result q4k__refuse_str_key(const q4k_gguf *g, const char *key, const char *allowed, q4k_error *err) {
    const char *v;
    if (q4k_gguf_find_key(g, key) < 0) return Q4K_OK;
    if (q4k_gguf_get_str(g, key, &v) == Q4K_OK && allowed && !strcmp(v, allowed)) return Q4K_OK;
    if (q4k_gguf_get_str(g, key, &v) == Q4K_OK) {
        char q[272];
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "model: '%s' = '%s' changes the math and q4k does not implement it", key,
                         q4k__quote(q, sizeof q, v, strlen(v)));
    }
    return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "model: '%s' is set; q4k does not implement it", key);
}

static q4k_result q4k__load_hparams(const q4k_gguf *g, q4k_hparams *hp, q4k_error *err) {
    const char *arch;
    char key[128];
    q4k_result r;
    int64_t key_len, val_len;
    memset(hp, 0, sizeof *hp);
    r = q4k_gguf_get_str(g, "general.architecture", &arch);
    if (r != Q4K_OK) return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: metadata key 'general.architecture' %s",
                                      r == Q4K_ERR_NOT_FOUND ? "is missing" : "is not a string");
    if (!strcmp(arch, "qwen2")) hp->arch = Q4K_ARCH_QWEN2;
    else if (!strcmp(arch, "llama")) hp->arch = Q4K_ARCH_LLAMA;
    else {
        char q[272];
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "model: architecture '%s' is not supported (q4k runs qwen2 and llama)",
                         q4k__quote(q, sizeof q, arch, strlen(arch)));
    }
    hp->rope_neox = hp->arch == Q4K_ARCH_QWEN2;
    if ((r = q4k__hp_int(g, arch, "block_count", 1, 0, &hp->n_layer, err)) ||
        (r = q4k__hp_int(g, arch, "embedding_length", 1, 0, &hp->n_embd, err)) ||
        (r = q4k__hp_int(g, arch, "feed_forward_length", 1, 0, &hp->n_ff, err)) ||
        (r = q4k__hp_int(g, arch, "attention.head_count", 1, 0, &hp->n_head, err)) ||
        (r = q4k__hp_int(g, arch, "attention.head_count_kv", 0, hp->n_head, &hp->n_head_kv, err)) ||
        (r = q4k__hp_int(g, arch, "context_length", 1, 0, &hp->n_ctx_train, err)) ||
        (r = q4k__hp_float(g, arch, "rope.freq_base", 0, 10000.0f, &hp->rope_freq_base, err)) ||
        (r = q4k__hp_float(g, arch, "attention.layer_norm_rms_epsilon", 1, 0, &hp->norm_eps, err)))
        return r;
    if (hp->n_embd % hp->n_head)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: embedding_length %lld is not a multiple of head_count %lld",
                         (long long)hp->n_embd, (long long)hp->n_head);
    if (hp->n_head % hp->n_head_kv)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: head_count %lld is not a multiple of head_count_kv %lld",
                         (long long)hp->n_head, (long long)hp->n_head_kv);
    if ((r = q4k__hp_int(g, arch, "attention.key_length", 0, hp->n_embd / hp->n_head, &key_len, err)) ||
        (r = q4k__hp_int(g, arch, "attention.value_length", 0, key_len, &val_len, err)))
        return r;
    if (key_len != val_len)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "model: attention.key_length %lld differs from value_length %lld",
                         (long long)key_len, (long long)val_len);
    hp->head_dim = key_len;
    if (hp->head_dim % 2)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: head dimension %lld is odd", (long long)hp->head_dim);
    if ((r = q4k__hp_int(g, arch, "rope.dimension_count", 0, hp->head_dim, &hp->n_rot, err))) return r;
    if (hp->n_rot % 2 || hp->n_rot > hp->head_dim)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: rope.dimension_count %lld must be even and at most the head dimension %lld",
                         (long long)hp->n_rot, (long long)hp->head_dim);
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if ((r = q4k__refuse_str_key(g, key, "none", err))) return r;
    snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
    if (q4k_gguf_find_key(g, key) >= 0)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "model: '%s' is set: sliding-window attention is not implemented", key);
    snprintf(key, sizeof key, "%s.expert_count", arch);
    if (q4k_gguf_find_key(g, key) >= 0)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "model: '%s' is set: mixture-of-experts models are not implemented", key);
    return Q4K_OK;
}

/* --- memory limits -------------------------------------------------------- */

/* "56.0 GiB": sizes in messages also carry the exact byte count */
static const char *q4k__human_bytes(char *buf, size_t cap, uint64_t n) {
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
    else snprintf(buf, cap, "%.1f %s", v, unit[u]);
    return buf;
}

/* a byte count with an optional K/M/G/T suffix (powers of 1024); 0 when it is not one */
static int q4k__parse_bytes(const char *s, uint64_t *out) {
    uint64_t v = 0, mul = 1;
    const char *p = s;
    if (*p < '0' || *p > '9') return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10) return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    switch (*p) {
    case 'k': case 'K': mul = 1ull << 10; p++; break;
    case 'm': case 'M': mul = 1ull << 20; p++; break;
    case 'g': case 'G': mul = 1ull << 30; p++; break;
    case 't': case 'T': mul = 1ull << 40; p++; break;
    default: break;
    }
    if (*p == 'i' && mul > 1) p++; /* 4GiB reads as 4G */
    if ((*p == 'b' || *p == 'B') && (mul > 1 || p[1] == 0)) p++;
    if (*p || (v && mul > UINT64_MAX / v)) return 0;
    *out = v * mul;
    return 1;
}

/* the first number of a file (a cgroup limit or usage), or of its line
   that starts with key (memory.stat); "max" reads as UINT64_MAX */
static int q4k__read_u64_file(const char *path, const char *key, uint64_t *out) {
    FILE *f = fopen(path, "r");
    char line[256];
    int ok = 0;
    if (!f) return 0;
    while (!ok && fgets(line, sizeof line, f)) {
        const char *p = line;
        unsigned long long v;
        if (key) {
            size_t kl = strlen(key);
            if (strncmp(line, key, kl) != 0 || line[kl] != ' ') continue;
            p = line + kl + 1;
        }
        if (strncmp(p, "max", 3) == 0 && (p[3] == '\n' || p[3] == 0)) {
            *out = UINT64_MAX;
            ok = 1;
        } else if (sscanf(p, "%llu", &v) == 1) {
            *out = (uint64_t)v;
            ok = 1;
        }
        if (!key) break;
    }
    fclose(f);
    return ok;
}

/* whether the comma-separated list s (up to end) holds word */
static int q4k__csv_has(const char *s, const char *end, const char *word) {
    size_t wl = strlen(word);
    while (s < end) {
        const char *c = s;
        while (c < end && *c != ',') c++;
        if ((size_t)(c - s) == wl && strncmp(s, word, wl) == 0) return 1;
        s = c + 1;
    }
    return 0;
}

/* what one memory cgroup hierarchy (v2: memory.max; v1: memory.limit_in_bytes)
   still allows the process: from its cgroup's directory up to the mount
   point, the least of limit - (usage - inactive file cache) */
static uint64_t q4k__cgroup_level_walk(char *dir, size_t mount_len, int v2) {
    uint64_t best = UINT64_MAX;
    char path[4200];
    for (;;) {
        uint64_t lim, use, inactive = 0;
        snprintf(path, sizeof path, "%s/%s", dir, v2 ? "memory.max" : "memory.limit_in_bytes");
        /* v1 writes "no limit" as the largest page-aligned signed 64-bit value */
        if (q4k__read_u64_file(path, NULL, &lim) && lim < (v2 ? UINT64_MAX : (1ull << 62))) {
            snprintf(path, sizeof path, "%s/%s", dir, v2 ? "memory.current" : "memory.usage_in_bytes");
            if (!q4k__read_u64_file(path, NULL, &use)) use = 0;
            snprintf(path, sizeof path, "%s/memory.stat", dir);
            if (!q4k__read_u64_file(path, v2 ? "inactive_file" : "total_inactive_file", &inactive) &&
                !q4k__read_u64_file(path, "inactive_file", &inactive))
                inactive = 0;
            if (inactive > use) inactive = use;
            use -= inactive;
            if ((use < lim ? lim - use : 0) < best) best = use < lim ? lim - use : 0;
        }
        if (strlen(dir) <= mount_len) break;
        {
            char *slash = strrchr(dir + mount_len, '/');
            if (!slash) break;
            *slash = 0;
        }
    }
    return best;
}

Q4K_API uint64_t q4k__cgroup_memory_available(const char *root, const char **source) {
    uint64_t best = UINT64_MAX;
    const char *dummy;
    if (!source) source = &dummy;
    *source = NULL;
#if defined(__linux__)
    {
        /* the process's cgroup in each hierarchy: "0::/path" (v2), "N:a,memory,b:/path" (v1) */
        char path[4200], line[4200], cg1[4096] = "", cg2[4096] = "";
        int have1 = 0, have2 = 0;
        FILE *f;
        snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
        if (!(f = fopen(path, "r"))) return UINT64_MAX;
        while (fgets(line, sizeof line, f)) {
            char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *nl;
            if (!c2) continue;
            if ((nl = strchr(c2, '\n')) != NULL) *nl = 0;
            if (strlen(c2 + 1) >= sizeof cg1) continue;
            if (strncmp(line, "0::", 3) == 0) {
                strcpy(cg2, c2 + 1);
                have2 = 1;
            } else if (q4k__csv_has(c1 + 1, c2, "memory")) {
                strcpy(cg1, c2 + 1);
                have1 = 1;
            }
        }
        fclose(f);
        /* where each hierarchy is mounted, and which of its directories the
           mount shows ("ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - TYPE SOURCE SUPEROPTS") */
        snprintf(path, sizeof path, "%s/proc/self/mountinfo", root);
        if (!(f = fopen(path, "r"))) return UINT64_MAX;
        while ((have1 || have2) && fgets(line, sizeof line, f)) {
            char mroot[4096], mpoint[4096], fstype[64], super[1024], dir[4096];
            const char *dash = strstr(line, " - "), *cg, *rel;
            int v2;
            size_t rl;
            uint64_t got;
            if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", mroot, mpoint) != 2 ||
                sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2)
                continue;
            if (have2 && strcmp(fstype, "cgroup2") == 0) v2 = 1;
            else if (have1 && strcmp(fstype, "cgroup") == 0 && q4k__csv_has(super, super + strlen(super), "memory")) v2 = 0;
            else continue;
            cg = v2 ? cg2 : cg1;
            /* the mount shows the subtree at mroot: strip it from the cgroup's path
               (a container's own cgroup mounted as its root leaves nothing) */
            rl = strcmp(mroot, "/") == 0 ? 0 : strlen(mroot);
            rel = strncmp(cg, mroot, rl) == 0 && (cg[rl] == 0 || cg[rl] == '/') ? cg + rl : "";
            if (strcmp(rel, "/") == 0) rel = "";
            {
                size_t a = strlen(root), b = strlen(mpoint), c = strlen(rel);
                if (a + b + c >= sizeof dir) continue;
                memcpy(dir, root, a);
                memcpy(dir + a, mpoint, b);
                memcpy(dir + a + b, rel, c + 1);
                rl = a + b;
            }
            got = q4k__cgroup_level_walk(dir, rl, v2);
            if (got < best) {
                best = got;
                *source = v2 ? "memory.max" : "memory.limit_in_bytes";
            }
            if (v2) have2 = 0;
            else have1 = 0;
        }
        fclose(f);
    }
#else
    (void)root;
#endif
    return best;
}

Q4K_API uint64_t q4k_host_memory_available(const char **source) {
    const char *env = getenv("Q4K_HOST_MEM_LIMIT"), *dummy, *cg_source;
    uint64_t cg, v = 0;
    int have = 0;
    if (!source) source = &dummy;
    if (env && *env) {
        if (q4k__parse_bytes(env, &v)) {
            *source = "Q4K_HOST_MEM_LIMIT";
            return v;
        }
        /* a limit that was asked for and cannot be read must not turn into no limit */
        *source = "Q4K_HOST_MEM_LIMIT, which is not a byte count";
        return 0;
    }
#if defined(__linux__)
    {
        FILE *f = fopen("/proc/meminfo", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f)) {
            unsigned long long kb;
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                *source = "MemAvailable in /proc/meminfo";
                v = (uint64_t)kb * 1024u;
                have = 1;
                break;
            }
        }
        if (f) fclose(f);
    }
#endif
#if defined(_SC_AVPHYS_PAGES) && defined(_SC_PAGESIZE)
    if (!have) {
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0) {
            *source = "sysconf(_SC_AVPHYS_PAGES)";
            v = (uint64_t)pages * (uint64_t)page;
            have = 1;
        }
    }
#endif
    if (!have) {
        *source = "unknown";
        v = UINT64_MAX;
    }
    cg = q4k__cgroup_memory_available("", &cg_source);
    if (cg < v) {
        *source = strcmp(cg_source, "memory.max") == 0
                      ? "the memory cgroup's memory.max less its usage"
                      : "the memory cgroup's memory.limit_in_bytes less its usage";
        v = cg;
    }
    return v;
}

/* The memory of a session of n_ctx tokens: its KV cache (per token) and
   scratch (a batch of Q4K__CPU_BATCH tokens, attention scores of up to 64
   threads): the CPU's allocation, and the least a GPU backend needs. */
static uint64_t q4k__kv_bytes_per_token(const q4k_hparams *hp, q4k_kv_type kv) {
    return 2ull * (uint64_t)hp->n_layer * (uint64_t)(hp->n_head_kv * hp->head_dim) * (kv == Q4K_KV_F32 ? 4u : 2u);
}
#define Q4K__SCORES_PER_TOKEN (64ull * 4ull)
static uint64_t q4k__scratch_bytes(const q4k_hparams *hp, int64_t n_batch);
static q4k_result q4k__check_memory(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d, q4k_error *err);

/* Whether a session of n_ctx fits (see q4k_session_check_memory): on the
   device of b when it tells its memory, else in host memory; `weights` are
   the bytes still to upload (0 when prepared, or for the host). */
static q4k_result q4k__check_fit(q4k_backend *b, const q4k_hparams *hp, uint64_t weights, int64_t n_ctx,
                                 q4k_kv_type kv, const char *who, q4k_error *err) {
    uint64_t per_tok = q4k__kv_bytes_per_token(hp, kv), scratch, need, avail, total = 0, fixed, fit;
    const char *source = "";
    char h_need[32], h_kv[32], h_avail[32], h_w[32], h_total[32];
    int device = b && b->mem_info;
    q4k_result r;
    if (n_ctx > Q4K_MAX_CTX)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "%s: a context of %lld tokens is above q4k's limit of %lld", who,
                         (long long)n_ctx, (long long)Q4K_MAX_CTX);
    if (n_ctx < 1) return Q4K_OK;
    scratch = q4k__scratch_bytes(hp, 0) + (uint64_t)n_ctx * Q4K__SCORES_PER_TOKEN;
    need = per_tok * (uint64_t)n_ctx + scratch + weights; /* < 2^63: n_ctx <= 2^24, dims bounded by the file */
    if (device) {
        if ((r = b->mem_info(b, &avail, &total, err))) return r;
    } else {
        avail = q4k_host_memory_available(&source);
    }
    if (need <= avail && (uint64_t)need <= (uint64_t)SIZE_MAX) return Q4K_OK;
    fixed = q4k__scratch_bytes(hp, 0) + weights;
    fit = avail > fixed ? (avail - fixed) / (per_tok + Q4K__SCORES_PER_TOKEN) : 0;
    if (fit > (uint64_t)Q4K_MAX_CTX) fit = (uint64_t)Q4K_MAX_CTX;
    q4k__human_bytes(h_need, sizeof h_need, need);
    q4k__human_bytes(h_kv, sizeof h_kv, per_tok * (uint64_t)n_ctx);
    q4k__human_bytes(h_avail, sizeof h_avail, avail);
    if (device) {
        q4k__human_bytes(h_w, sizeof h_w, weights);
        q4k__human_bytes(h_total, sizeof h_total, total);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY,
                         "%s: a context of %lld tokens needs %llu bytes (%s) on the %s device: KV cache %s (%s, %llu "
                         "bytes per token), scratch %llu bytes, weights to upload %llu bytes (%s); the device has %llu "
                         "bytes (%s) free of %s; %s%lld tokens fit",
                         who, (long long)n_ctx, (unsigned long long)need, h_need, b->name, h_kv, q4k_kv_type_name(kv),
                         (unsigned long long)per_tok, (unsigned long long)scratch, (unsigned long long)weights, h_w,
                         (unsigned long long)avail, h_avail, h_total, fit ? "at most " : "not even the weights fit: ",
                         (long long)fit);
    }
    return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY,
                     "%s: a context of %lld tokens needs %llu bytes (%s) of host memory: KV cache %s (%s, %llu bytes "
                     "per token), scratch %llu bytes; %llu bytes (%s) are available (%s); at most %lld tokens fit",
                     who, (long long)n_ctx, (unsigned long long)need, h_need, h_kv, q4k_kv_type_name(kv),
                     (unsigned long long)per_tok, (unsigned long long)scratch, (unsigned long long)avail, h_avail, source,
                     (long long)fit);
}

static void q4k__touch_pages(const q4k_model *m, const q4k_model_desc *d) {
    /* Fault the mapping in once so that load time is paid here, with progress. */
    uint64_t total = q4k_model_weight_bytes(m), done = 0, next = 0;
    volatile unsigned char sink = 0;
    int64_t i, n = q4k_gguf_tensor_count(m->gguf);
    for (i = 0; i < n; i++) {
        const q4k_tensor *t = q4k_gguf_tensor(m->gguf, i);
        const unsigned char *p = (const unsigned char *)t->data;
        size_t off;
        for (off = 0; off < t->nbytes; off += 4096) sink = (unsigned char)(sink + p[off]);
        done += t->nbytes;
        if (d->progress && (done >= next || i == n - 1)) {
            d->progress(total ? (float)((double)done / (double)total) : 1.0f, d->progress_user);
            next = done + total / 100;
        }
    }
    (void)sink;
}

Q4K_API q4k_result q4k_model_from_gguf(q4k_gguf *g, const q4k_model_desc *desc, q4k_model **out, q4k_error *err) {
    q4k_model *m;
    q4k_hparams hp;
    q4k_result r;
    int64_t l, i, q_dim, kv_dim, n_vocab;
    const q4k_tensor *emb;
    char name[96];
    q4k_model_desc d;
    memset(&d, 0, sizeof d);
    if (desc) d = *desc;
    *out = NULL;
    if ((r = q4k__load_hparams(g, &hp, err))) return r;
    emb = q4k_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: tensor 'token_embd.weight' is %s",
                         emb ? "not 2-dimensional" : "missing");
    n_vocab = emb->ne[1];
    if (n_vocab > Q4K_MAX_VOCAB)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL, "model: a vocabulary of %lld tokens (token_embd.weight) is above q4k's limit of %lld",
                         (long long)n_vocab, (long long)Q4K_MAX_VOCAB);
    hp.n_vocab = n_vocab;
    if (d.kv != Q4K_KV_F16 && d.kv != Q4K_KV_F32)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "model: KV cache type %d is not one of f16 (0), f32 (1)", (int)d.kv);
    /* every layer has at least 9 tensors: refuse a block_count the file cannot hold
       before sizing anything from it */
    if (hp.n_layer > q4k_gguf_tensor_count(g) / 9)
        return q4k__fail(err, Q4K_ERR_BAD_MODEL,
                         "model: block_count %lld needs at least %lld tensors but the file holds %lld",
                         (long long)hp.n_layer, (long long)hp.n_layer * 9, (long long)q4k_gguf_tensor_count(g));
    q_dim = hp.n_head * hp.head_dim;
    kv_dim = hp.n_head_kv * hp.head_dim;
    m = (q4k_model *)Q4K_MALLOC(sizeof *m);
    if (!m) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "model: out of memory");
    memset(m, 0, sizeof *m);
    m->gguf = g;
    m->log = d.log;
    m->log_user = d.log_user;
    m->layers = (q4k_layer *)Q4K_MALLOC((size_t)hp.n_layer * sizeof(q4k_layer));
    if (!m->layers) {
        Q4K_FREE(m);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "model: out of memory for %lld layers", (long long)hp.n_layer);
    }
    memset(m->layers, 0, (size_t)hp.n_layer * sizeof(q4k_layer));
    if ((r = q4k__want(g, "token_embd.weight", hp.n_embd, n_vocab, 0, &m->tok_embd, err)) ||
        (r = q4k__want(g, "output_norm.weight", hp.n_embd, 0, 1, &m->output_norm, err)))
        goto fail;
    if (q4k_gguf_find_tensor(g, "output.weight")) {
        if ((r = q4k__want(g, "output.weight", hp.n_embd, n_vocab, 0, &m->output, err))) goto fail;
    } else {
        m->output = m->tok_embd;
        hp.tied_embeddings = 1;
    }
    if (q4k_gguf_find_tensor(g, "rope_freqs.weight")) {
        if (hp.arch != Q4K_ARCH_LLAMA) {
            r = q4k__fail(err, Q4K_ERR_UNSUPPORTED, "model: tensor 'rope_freqs.weight' in a %s model is not implemented",
                          q4k_arch_name(hp.arch));
            goto fail;
        }
        if ((r = q4k__want(g, "rope_freqs.weight", hp.n_rot / 2, 0, 1, &m->rope_freqs, err))) goto fail;
    }
    for (l = 0; l < hp.n_layer; l++) {
        q4k_layer *L = &m->layers[l];
#define Q4K__W(field, suffix, ne0, ne1, f32)                                      \
    snprintf(name, sizeof name, "blk.%lld." suffix, (long long)l);                \
    if ((r = q4k__want(g, name, ne0, ne1, f32, &L->field, err))) goto fail;
        Q4K__W(attn_norm, "attn_norm.weight", hp.n_embd, 0, 1)
        Q4K__W(wq, "attn_q.weight", hp.n_embd, q_dim, 0)
        Q4K__W(wk, "attn_k.weight", hp.n_embd, kv_dim, 0)
        Q4K__W(wv, "attn_v.weight", hp.n_embd, kv_dim, 0)
        if (hp.arch == Q4K_ARCH_QWEN2) {
            Q4K__W(bq, "attn_q.bias", q_dim, 0, 1)
            Q4K__W(bk, "attn_k.bias", kv_dim, 0, 1)
            Q4K__W(bv, "attn_v.bias", kv_dim, 0, 1)
        }
        Q4K__W(wo, "attn_output.weight", q_dim, hp.n_embd, 0)
        Q4K__W(ffn_norm, "ffn_norm.weight", hp.n_embd, 0, 1)
        Q4K__W(w_gate, "ffn_gate.weight", hp.n_embd, hp.n_ff, 0)
        Q4K__W(w_up, "ffn_up.weight", hp.n_embd, hp.n_ff, 0)
        Q4K__W(w_down, "ffn_down.weight", hp.n_ff, hp.n_embd, 0)
#undef Q4K__W
    }
    for (i = 0; i < q4k_gguf_tensor_count(g); i++) {
        const q4k_tensor *t = q4k_gguf_tensor(g, i);
        if (!q4k__known_tensor(&hp, t->name, m->rope_freqs != NULL)) {
            char q[272];
            r = q4k__fail(err, Q4K_ERR_UNSUPPORTED, "model: tensor '%s' is not part of a %s model as q4k computes it",
                          q4k__quote(q, sizeof q, t->name, strlen(t->name)), q4k_arch_name(hp.arch));
            goto fail;
        }
    }
    m->hp = hp;
    if (d.n_ctx &&
        (r = q4k__check_fit(NULL, &hp, 0, d.n_ctx < 0 ? (hp.n_ctx_train < 4096 ? hp.n_ctx_train : 4096) : d.n_ctx,
                            d.kv, "model", err)))
        goto fail;
    {
        const char *source;
        uint64_t avail = q4k_host_memory_available(&source), wb = q4k_model_weight_bytes(m);
        char h_w[32], h_a[32];
        if (g->map && wb > avail)
            q4k__log(d.log, d.log_user, Q4K_LOG_WARN,
                     "model: its weights (%s) exceed the host's available memory (%s, %s): they will be read from "
                     "the file again and again (slow)",
                     q4k__human_bytes(h_w, sizeof h_w, wb), q4k__human_bytes(h_a, sizeof h_a, avail), source);
    }
    q4k__touch_pages(m, &d);
    q4k__log(d.log, d.log_user, Q4K_LOG_INFO, "model: %s, %lld layers, embd %lld, ff %lld, heads %lld/%lld, vocab %lld",
             q4k_arch_name(hp.arch), (long long)hp.n_layer, (long long)hp.n_embd, (long long)hp.n_ff,
             (long long)hp.n_head, (long long)hp.n_head_kv, (long long)hp.n_vocab);
    *out = m;
    return Q4K_OK;
fail:
    Q4K_FREE(m->layers);
    Q4K_FREE(m);
    return r;
}

Q4K_API q4k_result q4k_model_load(const char *path, const q4k_model_desc *desc, q4k_model **out, q4k_error *err) {
    q4k_gguf *g;
    q4k_gguf_desc gd;
    q4k_result r;
    memset(&gd, 0, sizeof gd);
    if (desc) {
        gd.log = desc->log;
        gd.log_user = desc->log_user;
        gd.no_mmap = desc->no_mmap;
    }
    *out = NULL;
    if ((r = q4k_gguf_open_file(path, &gd, &g, err))) return r;
    if ((r = q4k_model_from_gguf(g, desc, out, err))) {
        q4k_gguf_close(g);
        return r;
    }
    (*out)->owns_gguf = 1;
    return Q4K_OK;
}

Q4K_API void q4k_model_free(q4k_model *m) {
    if (!m) return;
    if (m->owns_gguf) q4k_gguf_close(m->gguf);
    Q4K_FREE(m->layers);
    Q4K_FREE(m);
}

Q4K_API int64_t q4k_model_n_params(const q4k_model *m) {
    int64_t i, n = 0;
    for (i = 0; i < q4k_gguf_tensor_count(m->gguf); i++) {
        const q4k_tensor *t = q4k_gguf_tensor(m->gguf, i);
        n += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    return n;
}

Q4K_API uint64_t q4k_model_weight_bytes(const q4k_model *m) {
    int64_t i;
    uint64_t n = 0;
    for (i = 0; i < q4k_gguf_tensor_count(m->gguf); i++) n += q4k_gguf_tensor(m->gguf, i)->nbytes;
    return n;
}

/* --- sessions (common part) ---------------------------------------------- */

Q4K_API const char *q4k_stage_name(q4k_stage st) {
    static const char *const names[] = {
#define Q4K__STAGE_NAME(name, text) text,
        Q4K_STAGE_LIST(Q4K__STAGE_NAME)
#undef Q4K__STAGE_NAME
    };
    if ((int)st < 0 || (int)st >= (int)Q4K_STAGE_COUNT) return "unknown";
    return names[st];
}

Q4K_API const char *q4k_kv_type_name(q4k_kv_type t) {
    return t == Q4K_KV_F16 ? "f16" : t == Q4K_KV_F32 ? "f32" : "unknown";
}

/* ---- one backend, several threads ----------------------------------------

   One coarse lock per backend, held for a whole public call: a session's
   eval occupies the device (or the thread pool) anyway, so finer locks
   would buy nothing, and one lock also keeps the bookkeeping (prepared,
   the memory check before an upload) and each backend's shared state (the
   CUDA stream and op buffers, the Vulkan queue and its one-shot command
   buffer, pipelines compiled on first use) consistent. It does not nest:
   strict C99 cannot ask for a recursive mutex, so every public call takes
   it once, and what runs under it calls only unlocked internals. */

#if Q4K__THREADS && !defined(Q4K_TEST_NO_BACKEND_LOCK)
#define Q4K__BACKEND_LOCK 1
struct q4k__backend_lock {
    pthread_mutex_t mu;
    q4k_backend own; /* the table as the backend filled it: what the locked op entry points call */
};
#else
#define Q4K__BACKEND_LOCK 0
#endif

Q4K_API void q4k__backend_lock(const q4k_backend *b) {
#if Q4K__BACKEND_LOCK
    if (b && b->lock) pthread_mutex_lock(&b->lock->mu);
#else
    (void)b;
#endif
}

Q4K_API void q4k__backend_unlock(const q4k_backend *b) {
#if Q4K__BACKEND_LOCK
    if (b && b->lock) pthread_mutex_unlock(&b->lock->mu);
#else
    (void)b;
#endif
}

#if Q4K__BACKEND_LOCK
static q4k_result q4k__locked_matmul(q4k_backend *b, q4k_act_mode act, q4k_type type, const void *w, int64_t rows,
                                     int64_t cols, const float *x, int64_t n, float *y, q4k_error *err) {
    q4k_result r;
    q4k__backend_lock(b);
    r = b->lock->own.matmul(b, act, type, w, rows, cols, x, n, y, err);
    q4k__backend_unlock(b);
    return r;
}

static q4k_result q4k__locked_embedding(q4k_backend *b, q4k_type type, const void *table, int64_t n_embd, int32_t token,
                                        float *out, q4k_error *err) {
    q4k_result r;
    q4k__backend_lock(b);
    r = b->lock->own.embedding(b, type, table, n_embd, token, out, err);
    q4k__backend_unlock(b);
    return r;
}

static q4k_result q4k__locked_rmsnorm(q4k_backend *b, const float *x, const float *w, int64_t n, int64_t rows, float eps,
                                      float *y, q4k_error *err) {
    q4k_result r;
    q4k__backend_lock(b);
    r = b->lock->own.rmsnorm(b, x, w, n, rows, eps, y, err);
    q4k__backend_unlock(b);
    return r;
}

static q4k_result q4k__locked_rope(q4k_backend *b, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                                   int64_t n_rot, int neox, int64_t pos0, double base, const float *freq_factors,
                                   q4k_error *err) {
    q4k_result r;
    q4k__backend_lock(b);
    r = b->lock->own.rope(b, x, n_tok, n_head, head_dim, n_rot, neox, pos0, base, freq_factors, err);
    q4k__backend_unlock(b);
    return r;
}

static q4k_result q4k__locked_attention(q4k_backend *b, q4k_kv_type kv, const float *q, const float *k, const float *v,
                                        int64_t n_pos, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float *out,
                                        q4k_error *err) {
    q4k_result r;
    q4k__backend_lock(b);
    r = b->lock->own.attention(b, kv, q, k, v, n_pos, n_head, n_head_kv, head_dim, out, err);
    q4k__backend_unlock(b);
    return r;
}

static q4k_result q4k__locked_quantize_act(q4k_backend *b, const float *x, int64_t n, q4k_block_q8a *out,
                                           q4k_error *err) {
    q4k_result r;
    q4k__backend_lock(b);
    r = b->lock->own.quantize_act(b, x, n, out, err);
    q4k__backend_unlock(b);
    return r;
}
#endif

Q4K_API q4k_result q4k__backend_lock_init(q4k_backend *b, q4k_error *err) {
#if Q4K__BACKEND_LOCK
    struct q4k__backend_lock *lk;
    if (!b || b->lock) return Q4K_OK;
    lk = (struct q4k__backend_lock *)Q4K_MALLOC(sizeof *lk);
    if (!lk) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: out of memory for the backend's lock", b->name);
    if (pthread_mutex_init(&lk->mu, NULL) != 0) {
        Q4K_FREE(lk);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "%s: pthread_mutex_init failed for the backend's lock", b->name);
    }
    lk->own = *b;
    b->lock = lk;
    /* a backend without an op entry point keeps it NULL (`q4k qa` asks) */
    if (b->matmul) b->matmul = q4k__locked_matmul;
    if (b->embedding) b->embedding = q4k__locked_embedding;
    if (b->rmsnorm) b->rmsnorm = q4k__locked_rmsnorm;
    if (b->rope) b->rope = q4k__locked_rope;
    if (b->attention) b->attention = q4k__locked_attention;
    if (b->quantize_act) b->quantize_act = q4k__locked_quantize_act;
#else
    (void)b;
    (void)err;
#endif
    return Q4K_OK;
}

Q4K_API void *q4k__backend_find_prepared(const q4k_backend *b, const q4k_model *m) {
    int i;
    if (!b) return NULL;
    for (i = 0; i < Q4K_MAX_PREPARED; i++)
        if (b->prepared[i].refs > 0 && b->prepared[i].model == m) return b->prepared[i].data;
    return NULL;
}

Q4K_API void *q4k_backend_prepared(const q4k_backend *b, const q4k_model *m) {
    void *p;
    q4k__backend_lock(b);
    p = q4k__backend_find_prepared(b, m);
    q4k__backend_unlock(b);
    return p;
}

/* The backend's prepared model, prepared now for the model's first session. */
static q4k_result q4k__backend_acquire(q4k_backend *b, const q4k_model *m, q4k_error *err) {
    int i, slot = -1;
    void *data = NULL;
    q4k_result r;
    for (i = 0; i < Q4K_MAX_PREPARED; i++) {
        if (b->prepared[i].refs > 0 && b->prepared[i].model == m) {
            b->prepared[i].refs++;
            return Q4K_OK;
        }
        if (b->prepared[i].refs == 0 && slot < 0) slot = i;
    }
    if (slot < 0)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "session: backend '%s' already holds %d models", b->name,
                         Q4K_MAX_PREPARED);
    if (b->prepare_model && (r = b->prepare_model(b, m, &data, err))) return r;
    b->n_prepare++;
    b->prepared[slot].model = m;
    b->prepared[slot].data = data;
    b->prepared[slot].refs = 1;
    return Q4K_OK;
}

static void q4k__backend_release(q4k_backend *b, const q4k_model *m) {
    int i;
    for (i = 0; i < Q4K_MAX_PREPARED; i++) {
        q4k_prepared *p = &b->prepared[i];
        if (p->refs <= 0 || p->model != m) continue;
        if (--p->refs == 0) {
            if (b->release_model) b->release_model(b, m, p->data);
            p->model = NULL;
            p->data = NULL;
        }
        return;
    }
}

Q4K_API void q4k__session_init(q4k_session *s, q4k_backend *b, const q4k_model *m, const q4k_session_desc *d) {
    s->backend = b;
    s->model = m;
    s->prepared = q4k__backend_find_prepared(b, m);
    s->desc = *d;
    s->n_ctx = d->n_ctx;
    s->pos = 0;
    s->n_evals = 0;
}

Q4K_API void q4k__session_free_trace(q4k_session *s) {
    int i;
    Q4K_FREE(s->trace_layers);
    Q4K_FREE(s->trace_layers_attn);
    s->trace_layers = s->trace_layers_attn = NULL;
    for (i = 0; i < Q4K_OP_COUNT; i++) {
        Q4K_FREE(s->trace_ops[i]);
        s->trace_ops[i] = NULL;
    }
    for (i = 0; i < Q4K_STAGE_COUNT; i++) {
        Q4K_FREE(s->trace_stages[i]);
        s->trace_stages[i] = NULL;
    }
}

Q4K_API q4k_result q4k_session_create(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d,
                                      q4k_session **out, q4k_error *err) {
    q4k_session_desc dd;
    q4k_result r;
    memset(&dd, 0, sizeof dd);
    if (d) dd = *d;
    *out = NULL;
    if (!b || !m) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "session: backend and model are required");
    if (dd.n_ctx < 0) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "session: n_ctx %lld is negative", (long long)dd.n_ctx);
    if (dd.n_ctx == 0) dd.n_ctx = m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    if (dd.act != Q4K_ACT_Q8 && dd.act != Q4K_ACT_F32)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "session: activation mode %d is not one of q8 (0), f32 (1)", (int)dd.act);
    if (dd.kv != Q4K_KV_F16 && dd.kv != Q4K_KV_F32)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "session: KV cache type %d is not one of f16 (0), f32 (1)", (int)dd.kv);
    if ((dd.trace & Q4K_TRACE_OPS) && (dd.trace_layer < 0 || dd.trace_layer >= m->hp.n_layer))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "session: trace_layer %lld out of range (model has %lld layers)",
                         (long long)dd.trace_layer, (long long)m->hp.n_layer);
#ifndef Q4K_FAULTS
    if (dd.faults.mask || dd.faults.perturb_eps != 0.0f)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "session: fault injection is compiled into test builds only");
#endif
    /* under one hold: two threads creating sessions at once cannot both
       pass the memory check and then overcommit the device */
    q4k__backend_lock(b);
    if (!(r = q4k__check_memory(b, m, &dd, err)) && !(r = q4k__backend_acquire(b, m, err)) &&
        (r = b->session_create(b, m, &dd, out, err)))
        q4k__backend_release(b, m);
    q4k__backend_unlock(b);
    return r;
}

Q4K_API void q4k_session_free(q4k_session *s) {
    q4k_backend *b;
    const q4k_model *m;
    if (!s) return;
    b = s->backend;
    m = s->model;
    q4k__session_free_trace(s);
    q4k__backend_lock(b);
    s->destroy(s);
    q4k__backend_release(b, m);
    q4k__backend_unlock(b);
}

Q4K_API q4k_result q4k_session_eval(q4k_session *s, const int32_t *tokens, int64_t n, unsigned flags,
                                    float *logits, q4k_error *err) {
    int64_t i;
    if (!s || (!tokens && n)) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "eval: no session or tokens");
    if (n <= 0) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "eval: %lld tokens", (long long)n);
    if (s->pos + n > s->n_ctx)
        return q4k__fail(err, Q4K_ERR_CONTEXT_FULL, "eval: context is full: %lld tokens in the cache + %lld new > n_ctx %lld",
                         (long long)s->pos, (long long)n, (long long)s->n_ctx);
    for (i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->model->hp.n_vocab)
            return q4k__fail(err, Q4K_ERR_INVALID_ARG, "eval: token id %d at index %lld is out of range (vocab %lld)",
                             (int)tokens[i], (long long)i, (long long)s->model->hp.n_vocab);
    {
        /* never hand out a NaN or an infinity as if it were a logit */
        q4k_result r;
        int64_t rows = (flags & Q4K_EVAL_ALL_LOGITS) ? n : 1, nv = s->model->hp.n_vocab, k;
        for (k = 0; k < Q4K_STAGE_COUNT; k++) s->trace_stage_set[k] = 0;
        s->n_evals++;
        q4k__backend_lock(s->backend);
        r = s->eval(s, tokens, n, flags, logits, err);
        q4k__backend_unlock(s->backend);
        if (r != Q4K_OK || !logits) return r;
        for (i = 0; i < rows; i++)
            for (k = 0; k < nv; k++) {
                float v = logits[i * nv + k];
                if (v - v != 0.0f)
                    return q4k__fail(err, Q4K_ERR_BAD_MODEL,
                                     "eval: the logit of token id %lld at position %lld is %s: the model's weights (or "
                                     "an overflow) produce non-finite values",
                                     (long long)k, (long long)(s->pos - rows + i), v != v ? "NaN" : "infinite");
            }
        return Q4K_OK;
    }
}

Q4K_API q4k_result q4k_session_rewind(q4k_session *s, int64_t pos) {
    if (!s || pos < 0 || pos > s->pos) return Q4K_ERR_INVALID_ARG;
    q4k__backend_lock(s->backend);
    s->pos = pos;
    q4k__backend_unlock(s->backend);
    return Q4K_OK;
}

Q4K_API int64_t q4k_session_pos(const q4k_session *s) { return s->pos; }

Q4K_API const float *q4k_session_trace_layer(const q4k_session *s, int64_t layer) {
    if (!s || !s->trace_layers || layer < 0 || layer >= s->model->hp.n_layer) return NULL;
    return s->trace_layers + layer * s->model->hp.n_embd;
}

Q4K_API const float *q4k_session_trace_layer_attn(const q4k_session *s, int64_t layer) {
    if (!s || !s->trace_layers_attn || layer < 0 || layer >= s->model->hp.n_layer) return NULL;
    return s->trace_layers_attn + layer * s->model->hp.n_embd;
}

Q4K_API const float *q4k_session_trace_op(const q4k_session *s, q4k_op op, int64_t *len) {
    return s ? q4k_session_trace_op_layer(s, s->desc.trace_layer, op, len) : NULL;
}

Q4K_API const float *q4k_session_trace_op_layer(const q4k_session *s, int64_t layer, q4k_op op, int64_t *len) {
    if (!s || (int)op < 0 || (int)op >= Q4K_OP_COUNT || !s->trace_ops[op]) return NULL;
    if (!(s->desc.trace & Q4K_TRACE_ALL_OPS) && layer != s->desc.trace_layer) return NULL;
    if (layer < 0 || layer >= s->model->hp.n_layer) return NULL;
    if (len) *len = s->trace_op_len[op];
    return s->trace_ops[op] + ((s->desc.trace & Q4K_TRACE_ALL_OPS) ? layer * s->trace_op_len[op] : 0);
}

Q4K_API const float *q4k_session_trace_stage(const q4k_session *s, q4k_stage st, int64_t *len) {
    if (!s || (int)st < 0 || (int)st >= Q4K_STAGE_COUNT || !s->trace_stages[st] || !s->trace_stage_set[st]) return NULL;
    if (len) *len = s->trace_stage_len[st];
    return s->trace_stages[st];
}

Q4K_API q4k_result q4k_session_set_trace_layer(q4k_session *s, int64_t layer) {
    if (!s || !(s->desc.trace & Q4K_TRACE_OPS) || layer < 0 || layer >= s->model->hp.n_layer) return Q4K_ERR_INVALID_ARG;
    s->desc.trace_layer = layer;
    return Q4K_OK;
}

Q4K_API q4k_result q4k_session_eval_layer(q4k_session *s, int64_t layer, const float *x_in, float *x_attn,
                                          float *x_out, q4k_error *err) {
    q4k_result r;
    if (!s || !x_in || !x_out) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "eval_layer: no session or buffer");
    if (!s->eval_layer)
        return q4k__fail(err, Q4K_ERR_UNSUPPORTED, "eval_layer: the %s backend cannot recompute one layer", s->backend->name);
    if (layer < 0 || layer >= s->model->hp.n_layer || s->pos < 1)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "eval_layer: layer %lld at position %lld: out of range",
                         (long long)layer, (long long)s->pos - 1);
    q4k__backend_lock(s->backend);
    r = s->eval_layer(s, layer, x_in, x_attn, x_out, err);
    q4k__backend_unlock(s->backend);
    return r;
}

Q4K_API q4k_result q4k__session_alloc_trace(q4k_session *s, q4k_error *err) {
    const q4k_hparams *hp = &s->model->hp;
    int64_t lens[Q4K_OP_COUNT];
    int i;
    if (s->desc.trace & Q4K_TRACE_LAYERS) {
        s->trace_layers = (float *)Q4K_MALLOC((size_t)(hp->n_layer * hp->n_embd) * sizeof(float));
        s->trace_layers_attn = (float *)Q4K_MALLOC((size_t)(hp->n_layer * hp->n_embd) * sizeof(float));
        if (!s->trace_layers || !s->trace_layers_attn) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "session: out of memory for the trace");
        s->trace_stage_len[Q4K_STAGE_EMBEDDING] = s->trace_stage_len[Q4K_STAGE_OUTPUT_NORM] = hp->n_embd;
        s->trace_stage_len[Q4K_STAGE_LM_HEAD] = hp->n_vocab;
        for (i = 0; i < Q4K_STAGE_COUNT; i++) {
            s->trace_stages[i] = (float *)Q4K_MALLOC((size_t)s->trace_stage_len[i] * sizeof(float));
            if (!s->trace_stages[i]) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "session: out of memory for the trace");
        }
    }
    if (!(s->desc.trace & (Q4K_TRACE_OPS | Q4K_TRACE_ALL_OPS))) return Q4K_OK;
    lens[Q4K_OP_ATTN_NORM] = hp->n_embd;
    lens[Q4K_OP_Q] = lens[Q4K_OP_Q_ROPE] = lens[Q4K_OP_ATTN] = hp->n_head * hp->head_dim;
    lens[Q4K_OP_K] = lens[Q4K_OP_V] = lens[Q4K_OP_K_ROPE] = hp->n_head_kv * hp->head_dim;
    lens[Q4K_OP_ATTN_OUT] = lens[Q4K_OP_RESID_ATTN] = lens[Q4K_OP_FFN_NORM] = hp->n_embd;
    lens[Q4K_OP_GATE] = lens[Q4K_OP_UP] = lens[Q4K_OP_ACT] = hp->n_ff;
    lens[Q4K_OP_DOWN] = lens[Q4K_OP_RESID_FFN] = hp->n_embd;
    for (i = 0; i < Q4K_OP_COUNT; i++) {
        s->trace_op_len[i] = lens[i];
        s->trace_ops[i] = (float *)Q4K_MALLOC((size_t)(lens[i] * ((s->desc.trace & Q4K_TRACE_ALL_OPS) ? hp->n_layer : 1)) *
                                              sizeof(float));
        if (!s->trace_ops[i]) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "session: out of memory for the trace");
    }
    return Q4K_OK;
}

Q4K_API void q4k__trace_op(q4k_session *s, int64_t layer, q4k_op op, const float *row) {
    if ((s->desc.trace & Q4K_TRACE_ALL_OPS) && s->trace_ops[op])
        memcpy(s->trace_ops[op] + layer * s->trace_op_len[op], row, (size_t)s->trace_op_len[op] * sizeof(float));
    else if ((s->desc.trace & Q4K_TRACE_OPS) && s->desc.trace_layer == layer && s->trace_ops[op])
        memcpy(s->trace_ops[op], row, (size_t)s->trace_op_len[op] * sizeof(float));
}

Q4K_API void q4k__trace_stage(q4k_session *s, q4k_stage st, const float *row) {
    if (!s->trace_stages[st]) return;
    memcpy(s->trace_stages[st], row, (size_t)s->trace_stage_len[st] * sizeof(float));
    s->trace_stage_set[st] = 1;
}

/* --- the CPU backend: the reference forward pass ------------------------- */

#define Q4K__CPU_BATCH 64 /* prompt tokens per matrix-matrix pass */

#ifdef Q4K_FAULTS
#define Q4K__FAULT(cs, f) (((cs)->base.desc.faults.mask >> (f)) & 1u)
#else
#define Q4K__FAULT(cs, f) 0
#endif

typedef struct q4k__cpu_backend {
    q4k_backend base;
    q4k_cpu cpu;
} q4k__cpu_backend;

/* What the CPU prepares once per model and its sessions share: the table
   that widens f16 cache entries. The weights stay in the model's mapping. */
typedef struct q4k__cpu_prepared {
    float f16_table[65536]; /* f16 bits -> float */
} q4k__cpu_prepared;

typedef struct q4k__cpu_session {
    q4k_session base;
    q4k_cpu cpu;
    void *k_cache, *v_cache;     /* [n_layer][n_ctx][kv_dim] of desc.kv */
    size_t kv_size;              /* bytes of one cache element */
    const float *f16_table;      /* the prepared model's */
    /* scratch for a batch of up to Q4K__CPU_BATCH tokens */
    float *x, *xb, *q, *k, *v, *att, *tmp, *gate, *up;
    float *rope_c, *rope_s; /* [batch][n_rot/2] */
    float *scores;          /* [n_threads][n_ctx] */
    unsigned char *kv_save; /* one position's K and V of one layer (eval_layer) */
    float *x_attn;          /* where q4k__cpu_layer leaves the last token's residual after attention, or NULL */
    int n_threads;
    int64_t n_decode;       /* one-token evals so far */
#ifdef Q4K_FAULTS
    uint64_t perturb_state;
    void **fault_weights;   /* q4k_scales: the altered copy of each Q4_K tensor, by index */
#endif
} q4k__cpu_session;

/* y = x / sqrt(mean(x^2) + eps) * w   (x, y: [n]) */
static void q4k__rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    int64_t i;
    float scale;
    for (i = 0; i < n; i++) ss += (double)x[i] * x[i];
    scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

/* cos and sin of n positions from pos0   c, s: [n][n_rot/2] */
static void q4k__rope_tables(float *c, float *s, int64_t pos0, int64_t n, int64_t n_rot, double base,
                             const float *freq_factors) {
    int64_t j, i, half = n_rot / 2;
    for (j = 0; j < n; j++)
        for (i = 0; i < half; i++)
            q4k_rope_cos_sin(pos0 + j, i, n_rot, base, freq_factors ? (double)freq_factors[i] : 1.0,
                             &c[j * half + i], &s[j * half + i]);
}

/* rotate one head's vector in place by the cos/sin of its position */
static void q4k__rope(float *v, const float *c, const float *s, int64_t n_rot, int neox) {
    int64_t i, half = n_rot / 2;
    for (i = 0; i < half; i++) {
        int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        float x0 = v[i0], x1 = v[i1];
        v[i0] = x0 * c[i] - x1 * s[i];
        v[i1] = x0 * s[i] + x1 * c[i];
    }
}

static float q4k__silu(float x) { return x / (1.0f + expf(-x)); }

/* out[n_embd] = row `token` of an embedding table */
static q4k_result q4k__embed_row(q4k_type type, const void *table, int64_t n_embd, int32_t token, float *out) {
    return q4k_dequantize_row(type, (const char *)table + (size_t)token * q4k_row_size(type, n_embd), out, n_embd);
}

/* Store n floats into a KV cache of type kv at element offset off. */
static void q4k__kv_store(void *cache, q4k_kv_type kv, int64_t off, const float *x, int64_t n, float scale) {
    int64_t i;
    if (kv == Q4K_KV_F16)
        for (i = 0; i < n; i++) ((uint16_t *)cache)[off + i] = q4k_fp32_to_fp16(x[i] * scale);
    else
        for (i = 0; i < n; i++) ((float *)cache)[off + i] = x[i] * scale;
}

/* One query head against positions 0..n_pos-1 of one KV head whose rows are
   `stride` elements apart: out = softmax(q.k / sqrt(hd)) v   (sc: [n_pos]) */
static void q4k__attn_head(const float *q, const void *kc, const void *vc, int64_t stride, int64_t n_pos, int64_t hd,
                           q4k_kv_type kv, const float *tab, float *sc, float *out) {
    float mx = -INFINITY, sum = 0.0f, scale = 1.0f / sqrtf((float)hd);
    int64_t t, d;
    for (t = 0; t < n_pos; t++) {
        float dot = 0.0f;
        if (kv == Q4K_KV_F16) {
            const uint16_t *k = (const uint16_t *)kc + t * stride;
            for (d = 0; d < hd; d++) dot += q[d] * tab[k[d]];
        } else {
            const float *k = (const float *)kc + t * stride;
            for (d = 0; d < hd; d++) dot += q[d] * k[d];
        }
        sc[t] = dot * scale;
        if (sc[t] > mx) mx = sc[t];
    }
    for (t = 0; t < n_pos; t++) {
        sc[t] = expf(sc[t] - mx);
        sum += sc[t];
    }
    for (d = 0; d < hd; d++) out[d] = 0.0f;
    for (t = 0; t < n_pos; t++) {
        float p = sc[t] / sum;
        if (kv == Q4K_KV_F16) {
            const uint16_t *v = (const uint16_t *)vc + t * stride;
            for (d = 0; d < hd; d++) out[d] += p * tab[v[d]];
        } else {
            const float *v = (const float *)vc + t * stride;
            for (d = 0; d < hd; d++) out[d] += p * v[d];
        }
    }
}

#ifdef Q4K_FAULTS
/* y[i] *= 1 + eps * N(0,1) */
static void q4k__perturb(q4k__cpu_session *cs, float *y, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) {
        uint64_t a, b;
        double u, v;
        a = (cs->perturb_state += 0x9E3779B97F4A7C15ull);
        a = (a ^ (a >> 30)) * 0xBF58476D1CE4E5B9ull;
        a = (a ^ (a >> 27)) * 0x94D049BB133111EBull;
        b = a ^ (a >> 31);
        u = ((double)(b >> 11) + 0.5) / 9007199254740992.0;
        v = (double)(b & 0x7ff) / 2048.0;
        y[i] *= (float)(1.0 + (double)cs->base.desc.faults.perturb_eps * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
    }
}

Q4K_API void q4k__fault_swap_scales(void *blocks, int64_t nb) {
    int64_t b;
    for (b = 0; b < nb; b++) {
        uint8_t *s = ((q4k_block_q4_K *)blocks)[b].scales, sc[8], mn[8];
        int j;
        for (j = 0; j < 4; j++) {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
            sc[j + 4] = (uint8_t)((s[j + 8] & 0xF) | (s[j] >> 6) << 4);
            mn[j + 4] = (uint8_t)((s[j + 8] >> 4) | (s[j + 4] >> 6) << 4);
        }
        for (j = 0; j < 4; j++) { /* encoded with the roles exchanged */
            s[j] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
            s[j + 4] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
            s[j + 8] = (uint8_t)((mn[j + 4] & 0xF) | (sc[j + 4] & 0xF) << 4);
        }
    }
}

/* q4k_scales: a copy of a Q4_K tensor whose 6-bit scales and mins trade places */
static const void *q4k__fault_q4k_scales(q4k__cpu_session *cs, const q4k_tensor *w) {
    int64_t nt = q4k_gguf_tensor_count(cs->base.model->gguf);
    uint8_t *copy;
    if (!cs->fault_weights) {
        cs->fault_weights = (void **)Q4K_MALLOC((size_t)nt * sizeof(void *));
        if (!cs->fault_weights) return NULL;
        memset(cs->fault_weights, 0, (size_t)nt * sizeof(void *));
    }
    if (cs->fault_weights[w->index]) return cs->fault_weights[w->index];
    copy = (uint8_t *)Q4K_MALLOC(w->nbytes);
    if (!copy) return NULL;
    memcpy(copy, w->data, w->nbytes);
    q4k__fault_swap_scales(copy, (int64_t)(w->nbytes / sizeof(q4k_block_q4_K)));
    cs->fault_weights[w->index] = copy;
    return copy;
}
#endif

/* After op `op` (a q4k_op, or Q4K_OP_COUNT + a q4k_stage) of `layer` wrote n
   rows of `width`: the perturb fault, and the trace of the last row. */
static void q4k__cpu_op_done(q4k__cpu_session *cs, int64_t layer, int op, float *y, int64_t n, int64_t width) {
#ifdef Q4K_FAULTS
    const q4k_faults *f = &cs->base.desc.faults;
    if (f->perturb_eps != 0.0f && f->perturb_op == op && (op >= Q4K_OP_COUNT || f->perturb_layer < 0 || f->perturb_layer == layer))
        q4k__perturb(cs, y, n * width);
#endif
    if (op < Q4K_OP_COUNT) q4k__trace_op(&cs->base, layer, (q4k_op)op, y + (n - 1) * width);
    else q4k__trace_stage(&cs->base, (q4k_stage)(op - Q4K_OP_COUNT), y + (n - 1) * width);
}

static q4k_result q4k__cpu_matmul_t(q4k__cpu_session *cs, const q4k_tensor *w, const float *x, int64_t n, float *y,
                                    q4k_error *err) {
    const void *data = w->data;
    q4k_result r;
#ifdef Q4K_FAULTS
    if (Q4K__FAULT(cs, Q4K_FAULT_Q4K_SCALES) && w->type == Q4K_TYPE_Q4_K && !(data = q4k__fault_q4k_scales(cs, w)))
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cpu: out of memory for the q4k_scales copy of '%s'", w->name);
#endif
    r = q4k_matmul(&cs->cpu, w->type, data, w->ne[1], w->ne[0], x, n, y);
    if (r) return q4k__fail(err, r, "cpu: matmul of tensor '%s' failed: %s", w->name, q4k_result_string(r));
#ifdef Q4K_FAULTS
    if (cs->base.desc.faults.perturb_eps != 0.0f && cs->base.desc.faults.perturb_op < 0) q4k__perturb(cs, y, w->ne[1] * n);
#endif
    return Q4K_OK;
}

/* RMSNorm of n rows as the forward pass runs it (f16_acc: the sum of squares
   kept in an fp16 accumulator, the bug it stands for) */
static void q4k__cpu_norm(q4k__cpu_session *cs, float *y, const float *x, const q4k_tensor *w, int64_t n) {
    const q4k_hparams *hp = &cs->base.model->hp;
    int64_t j, d = hp->n_embd, i;
    for (j = 0; j < n; j++) {
        if (Q4K__FAULT(cs, Q4K_FAULT_F16_ACC)) {
            float ss = 0.0f, scale;
            for (i = 0; i < d; i++) ss = q4k_fp16_to_fp32(q4k_fp32_to_fp16(ss + x[j * d + i] * x[j * d + i]));
            scale = (float)(1.0 / sqrt((double)ss / (double)d + (double)hp->norm_eps));
            for (i = 0; i < d; i++) y[j * d + i] = x[j * d + i] * scale * ((const float *)w->data)[i];
        } else {
            q4k__rmsnorm(y + j * d, x + j * d, (const float *)w->data, d, hp->norm_eps);
        }
    }
}

static void q4k__add_bias(float *y, const q4k_tensor *b, int64_t n, int64_t dim) {
    const float *bias = (const float *)b->data;
    int64_t j, i;
    for (j = 0; j < n; j++)
        for (i = 0; i < dim; i++) y[j * dim + i] += bias[i];
}

typedef struct q4k__attn_job {
    q4k__cpu_session *cs;
    int64_t layer, n, pos0;
} q4k__attn_job;

/* Causal GQA attention for tokens pos0..pos0+n-1, one (token, head) at a time. */
static void q4k__attn_worker(void *ctx, int ith, int nth) {
    q4k__attn_job *job = (q4k__attn_job *)ctx;
    q4k__cpu_session *cs = job->cs;
    const q4k_hparams *hp = &cs->base.model->hp;
    int64_t hd = hp->head_dim, kv_dim = hp->n_head_kv * hd, q_dim = hp->n_head * hd;
    int64_t group = hp->n_head / hp->n_head_kv, n_ctx = cs->base.n_ctx;
    const char *kc = (const char *)cs->k_cache + (size_t)(job->layer * n_ctx * kv_dim) * cs->kv_size;
    const char *vc = (const char *)cs->v_cache + (size_t)(job->layer * n_ctx * kv_dim) * cs->kv_size;
    float *sc = cs->scores + (int64_t)ith * n_ctx;
    int64_t task, n_tasks = job->n * hp->n_head;
    for (task = ith; task < n_tasks; task += nth) {
        int64_t j = task / hp->n_head, h = task % hp->n_head, kvh = h / group;
        if (Q4K__FAULT(cs, Q4K_FAULT_GQA)) kvh = h % hp->n_head_kv;
        q4k__attn_head(cs->q + j * q_dim + h * hd, kc + (size_t)(kvh * hd) * cs->kv_size,
                       vc + (size_t)(kvh * hd) * cs->kv_size, kv_dim, job->pos0 + j + 1, hd, cs->base.desc.kv,
                       cs->f16_table, sc, cs->att + j * q_dim + h * hd);
    }
}

/* Layer l for n tokens at positions pos0.., in place on cs->x; the rope
   tables hold those positions. */
static q4k_result q4k__cpu_layer(q4k__cpu_session *cs, int64_t l, int64_t n, int64_t pos0, q4k_error *err) {
    q4k_session *s = &cs->base;
    const q4k_hparams *hp = &s->model->hp;
    const q4k_layer *L = &s->model->layers[l];
    int64_t d = hp->n_embd, hd = hp->head_dim, q_dim = hp->n_head * hd, kv_dim = hp->n_head_kv * hd;
    int64_t ff = hp->n_ff, half = hp->n_rot / 2, j, i, h;
    int64_t cache_off = l * s->n_ctx * kv_dim;
    float kv_scale = 1.0f;
    q4k_result r;
    q4k__attn_job job;

    q4k__cpu_count();
    /* attention block */
    q4k__cpu_norm(cs, cs->xb, cs->x, L->attn_norm, n);
    q4k__cpu_op_done(cs, l, Q4K_OP_ATTN_NORM, cs->xb, n, d);
    if ((r = q4k__cpu_matmul_t(cs, L->wq, cs->xb, n, cs->q, err)) ||
        (r = q4k__cpu_matmul_t(cs, L->wk, cs->xb, n, cs->k, err)) ||
        (r = q4k__cpu_matmul_t(cs, L->wv, cs->xb, n, cs->v, err)))
        return r;
    if (L->bq && !Q4K__FAULT(cs, Q4K_FAULT_BIAS)) {
        q4k__add_bias(cs->q, L->bq, n, q_dim);
        q4k__add_bias(cs->k, L->bk, n, kv_dim);
        q4k__add_bias(cs->v, L->bv, n, kv_dim);
    }
    q4k__cpu_op_done(cs, l, Q4K_OP_Q, cs->q, n, q_dim);
    q4k__cpu_op_done(cs, l, Q4K_OP_K, cs->k, n, kv_dim);
    q4k__cpu_op_done(cs, l, Q4K_OP_V, cs->v, n, kv_dim);
    for (j = 0; j < n; j++) {
        for (h = 0; h < hp->n_head; h++)
            q4k__rope(cs->q + j * q_dim + h * hd, cs->rope_c + j * half, cs->rope_s + j * half, hp->n_rot, hp->rope_neox);
        for (h = 0; h < hp->n_head_kv; h++)
            q4k__rope(cs->k + j * kv_dim + h * hd, cs->rope_c + j * half, cs->rope_s + j * half, hp->n_rot, hp->rope_neox);
    }
    q4k__cpu_op_done(cs, l, Q4K_OP_Q_ROPE, cs->q, n, q_dim);
    q4k__cpu_op_done(cs, l, Q4K_OP_K_ROPE, cs->k, n, kv_dim);
    if (Q4K__FAULT(cs, Q4K_FAULT_KV_STEP2) && n == 1 && cs->n_decode >= 2) kv_scale = 0.5f;
    for (j = 0; j < n; j++) { /* append to the cache */
        q4k__kv_store(cs->k_cache, s->desc.kv, cache_off + (pos0 + j) * kv_dim, cs->k + j * kv_dim, kv_dim, kv_scale);
        q4k__kv_store(cs->v_cache, s->desc.kv, cache_off + (pos0 + j) * kv_dim, cs->v + j * kv_dim, kv_dim, kv_scale);
    }
    job.cs = cs;
    job.layer = l;
    job.n = n;
    job.pos0 = pos0;
    if (cs->cpu.pool) q4k_pool_run(cs->cpu.pool, q4k__attn_worker, &job);
    else q4k__attn_worker(&job, 0, 1);
    q4k__cpu_op_done(cs, l, Q4K_OP_ATTN, cs->att, n, q_dim);
    if ((r = q4k__cpu_matmul_t(cs, L->wo, cs->att, n, cs->tmp, err))) return r;
    q4k__cpu_op_done(cs, l, Q4K_OP_ATTN_OUT, cs->tmp, n, d);
    for (i = 0; i < n * d; i++) cs->x[i] += cs->tmp[i];
    q4k__cpu_op_done(cs, l, Q4K_OP_RESID_ATTN, cs->x, n, d);
    if (cs->x_attn) memcpy(cs->x_attn, cs->x + (n - 1) * d, (size_t)d * sizeof(float));

    /* feed-forward block */
    q4k__cpu_norm(cs, cs->xb, cs->x, L->ffn_norm, n);
    q4k__cpu_op_done(cs, l, Q4K_OP_FFN_NORM, cs->xb, n, d);
    if ((r = q4k__cpu_matmul_t(cs, L->w_gate, cs->xb, n, cs->gate, err)) ||
        (r = q4k__cpu_matmul_t(cs, L->w_up, cs->xb, n, cs->up, err)))
        return r;
    q4k__cpu_op_done(cs, l, Q4K_OP_GATE, cs->gate, n, ff);
    q4k__cpu_op_done(cs, l, Q4K_OP_UP, cs->up, n, ff);
    for (i = 0; i < n * ff; i++) cs->gate[i] = q4k__silu(cs->gate[i]) * cs->up[i];
    q4k__cpu_op_done(cs, l, Q4K_OP_ACT, cs->gate, n, ff);
    if ((r = q4k__cpu_matmul_t(cs, L->w_down, cs->gate, n, cs->tmp, err))) return r;
    q4k__cpu_op_done(cs, l, Q4K_OP_DOWN, cs->tmp, n, d);
    for (i = 0; i < n * d; i++) cs->x[i] += cs->tmp[i];
    q4k__cpu_op_done(cs, l, Q4K_OP_RESID_FFN, cs->x, n, d);
    return Q4K_OK;
}

/* One batch of n <= Q4K__CPU_BATCH tokens at position s->pos. */
static q4k_result q4k__cpu_eval_batch(q4k__cpu_session *cs, const int32_t *tokens, int64_t n, unsigned flags,
                                      float *logits, q4k_error *err) {
    q4k_session *s = &cs->base;
    const q4k_model *m = s->model;
    const q4k_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, nv = hp->n_vocab, pos0 = s->pos, l, j, rows;
    q4k_result r;

    /* token embeddings: x[j] = row tokens[j] of token_embd   x: [n][d] */
    for (j = 0; j < n; j++)
        if ((r = q4k__embed_row(m->tok_embd->type, m->tok_embd->data, d, tokens[j], cs->x + j * d)))
            return q4k__fail(err, r, "cpu: cannot dequantize token_embd (%s)", q4k_type_name(m->tok_embd->type));
    q4k__cpu_op_done(cs, -1, Q4K_OP_COUNT + Q4K_STAGE_EMBEDDING, cs->x, n, d);
    /* rotation of each position   rope_c, rope_s: [n][n_rot/2] */
    q4k__rope_tables(cs->rope_c, cs->rope_s, pos0, n, hp->n_rot, hp->rope_freq_base,
                     m->rope_freqs ? (const float *)m->rope_freqs->data : NULL);
    for (l = 0; l < hp->n_layer; l++) {
        cs->x_attn = s->trace_layers_attn ? s->trace_layers_attn + l * d : NULL;
        if ((r = q4k__cpu_layer(cs, l, n, pos0, err))) return r;
        if (s->trace_layers) memcpy(s->trace_layers + l * d, cs->x + (n - 1) * d, (size_t)d * sizeof(float));
    }
    s->pos += n;

    /* final norm and logits, of every token or of the last */
    if (!logits) return Q4K_OK;
    rows = (flags & Q4K_EVAL_ALL_LOGITS) ? n : 1;
    q4k__cpu_norm(cs, cs->xb, cs->x + (n - rows) * d, m->output_norm, rows);
    q4k__cpu_op_done(cs, -1, Q4K_OP_COUNT + Q4K_STAGE_OUTPUT_NORM, cs->xb, rows, d);
    if ((r = q4k__cpu_matmul_t(cs, m->output, cs->xb, rows, logits, err))) return r;
    if (Q4K__FAULT(cs, Q4K_FAULT_SPLIT)) {
        int64_t from = s->desc.faults.split_rows > 0 ? s->desc.faults.split_rows : nv / 2, k;
        for (j = 0; j < rows; j++)
            for (k = from; k < nv; k++) logits[j * nv + k] = 0.0f;
    }
    q4k__cpu_op_done(cs, -1, Q4K_OP_COUNT + Q4K_STAGE_LM_HEAD, logits, rows, nv);
    return Q4K_OK;
}

static q4k_result q4k__cpu_eval(q4k_session *s, const int32_t *tokens, int64_t n, unsigned flags, float *logits,
                                q4k_error *err) {
    q4k__cpu_session *cs = (q4k__cpu_session *)s;
    int64_t done = 0, n_vocab = s->model->hp.n_vocab;
    if (n == 1) cs->n_decode++;
    while (done < n) {
        int64_t nb = n - done < Q4K__CPU_BATCH ? n - done : Q4K__CPU_BATCH;
        int last_batch = done + nb == n;
        float *out = NULL;
        q4k_result r;
        if (logits && (flags & Q4K_EVAL_ALL_LOGITS)) out = logits + done * n_vocab;
        else if (logits && last_batch) out = logits;
        r = q4k__cpu_eval_batch(cs, tokens + done, nb, flags, out, err);
        if (r) return r;
        done += nb;
    }
    return Q4K_OK;
}

static q4k_result q4k__cpu_eval_layer(q4k_session *s, int64_t layer, const float *x_in, float *x_attn, float *x_out,
                                      q4k_error *err) {
    q4k__cpu_session *cs = (q4k__cpu_session *)s;
    const q4k_model *m = s->model;
    int64_t d = m->hp.n_embd, kv_dim = m->hp.n_head_kv * m->hp.head_dim, p = s->pos - 1;
    size_t row = (size_t)kv_dim * cs->kv_size, off = (size_t)((layer * s->n_ctx + p) * kv_dim) * cs->kv_size;
    q4k_result r;
    memcpy(cs->kv_save, (char *)cs->k_cache + off, row);
    memcpy(cs->kv_save + row, (char *)cs->v_cache + off, row);
    memcpy(cs->x, x_in, (size_t)d * sizeof(float));
    q4k__rope_tables(cs->rope_c, cs->rope_s, p, 1, m->hp.n_rot, m->hp.rope_freq_base,
                     m->rope_freqs ? (const float *)m->rope_freqs->data : NULL);
    cs->x_attn = x_attn;
    r = q4k__cpu_layer(cs, layer, 1, p, err);
    memcpy(x_out, cs->x, (size_t)d * sizeof(float));
    memcpy((char *)cs->k_cache + off, cs->kv_save, row);
    memcpy((char *)cs->v_cache + off, cs->kv_save + row, row);
    return r;
}

static void q4k__cpu_session_destroy(q4k_session *s) {
    q4k__cpu_session *cs = (q4k__cpu_session *)s;
    float *bufs[] = {cs->x, cs->xb, cs->q, cs->k, cs->v, cs->att, cs->tmp, cs->gate, cs->up, cs->rope_c, cs->rope_s, cs->scores};
    size_t i;
    for (i = 0; i < sizeof bufs / sizeof bufs[0]; i++) Q4K_FREE(bufs[i]);
#ifdef Q4K_FAULTS
    if (cs->fault_weights) {
        int64_t t, nt = q4k_gguf_tensor_count(s->model->gguf);
        for (t = 0; t < nt; t++) Q4K_FREE(cs->fault_weights[t]);
        Q4K_FREE(cs->fault_weights);
    }
#endif
    Q4K_FREE(cs->kv_save);
    Q4K_FREE(cs->k_cache);
    Q4K_FREE(cs->v_cache);
    Q4K_FREE(cs);
}

/* scratch without the attention scores; n_batch <= 0: Q4K__CPU_BATCH, what a session allocates */
static uint64_t q4k__scratch_bytes(const q4k_hparams *hp, int64_t n_batch) {
    uint64_t kv_dim = (uint64_t)(hp->n_head_kv * hp->head_dim), q_dim = (uint64_t)(hp->n_head * hp->head_dim);
    uint64_t b = (uint64_t)(n_batch > 0 ? n_batch : Q4K__CPU_BATCH);
    if (b > Q4K__CPU_BATCH) b = Q4K__CPU_BATCH;
    return 4ull * (b * (3ull * (uint64_t)hp->n_embd + 2ull * q_dim + 2ull * kv_dim + 2ull * (uint64_t)hp->n_ff +
                        (uint64_t)hp->n_rot) + 65536ull);
}

Q4K_API uint64_t q4k_session_memory_estimate(const q4k_model *m, int64_t n_ctx, int64_t n_batch) {
    return q4k__kv_bytes_per_token(&m->hp, Q4K_KV_F16) * (uint64_t)n_ctx +
           q4k__scratch_bytes(&m->hp, n_batch > 0 ? n_batch : 1) + Q4K__SCORES_PER_TOKEN * (uint64_t)n_ctx;
}

static q4k_result q4k__check_memory(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d, q4k_error *err) {
    int64_t n_ctx = d ? d->n_ctx : 0;
    q4k_kv_type kv = d ? d->kv : Q4K_KV_F16;
    uint64_t weights = 0;
    int i, prepared = 0;
    if (!m) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "session: a model is required");
    if (n_ctx == 0) n_ctx = m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    for (i = 0; b && i < Q4K_MAX_PREPARED; i++)
        if (b->prepared[i].refs > 0 && b->prepared[i].model == m) prepared = 1;
    if (b && b->mem_info && !prepared) weights = q4k_model_weight_bytes(m);
    return q4k__check_fit(b, &m->hp, weights, n_ctx, kv, "session", err);
}

Q4K_API q4k_result q4k_session_check_memory(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d,
                                            q4k_error *err) {
    q4k_result r;
    q4k__backend_lock(b);
    r = q4k__check_memory(b, m, d, err);
    q4k__backend_unlock(b);
    return r;
}

static q4k_result q4k__cpu_session_create(q4k_backend *b, const q4k_model *m, const q4k_session_desc *d,
                                          q4k_session **out, q4k_error *err) {
    q4k__cpu_backend *cb = (q4k__cpu_backend *)b;
    const q4k_hparams *hp = &m->hp;
    q4k__cpu_session *cs;
    int64_t B = Q4K__CPU_BATCH, kv_dim = hp->n_head_kv * hp->head_dim, q_dim = hp->n_head * hp->head_dim;
    size_t kv_elems = (size_t)hp->n_layer * (size_t)d->n_ctx * (size_t)kv_dim;
    q4k_result r;
    cs = (q4k__cpu_session *)Q4K_MALLOC(sizeof *cs);
    if (!cs) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cpu: out of memory for a session");
    memset(cs, 0, sizeof *cs);
    q4k__session_init(&cs->base, b, m, d);
    cs->base.eval = q4k__cpu_eval;
    cs->base.eval_layer = q4k__cpu_eval_layer;
    cs->base.destroy = q4k__cpu_session_destroy;
    cs->cpu = cb->cpu;
    cs->cpu.act = d->act;
    cs->f16_table = ((const q4k__cpu_prepared *)cs->base.prepared)->f16_table;
    cs->kv_size = d->kv == Q4K_KV_F32 ? 4 : 2;
#ifdef Q4K_FAULTS
    cs->perturb_state = d->faults.seed;
#endif
    cs->n_threads = cb->cpu.pool ? q4k_pool_threads(cb->cpu.pool) : 1;
    cs->k_cache = Q4K_MALLOC(kv_elems * cs->kv_size);
    cs->v_cache = Q4K_MALLOC(kv_elems * cs->kv_size);
    cs->kv_save = (unsigned char *)Q4K_MALLOC((size_t)kv_dim * 2 * cs->kv_size);
#define Q4K__ALLOC(p, count) cs->p = (float *)Q4K_MALLOC((size_t)(count) * sizeof(float))
    Q4K__ALLOC(x, B * hp->n_embd);
    Q4K__ALLOC(xb, B * hp->n_embd);
    Q4K__ALLOC(tmp, B * hp->n_embd);
    Q4K__ALLOC(q, B * q_dim);
    Q4K__ALLOC(att, B * q_dim);
    Q4K__ALLOC(k, B * kv_dim);
    Q4K__ALLOC(v, B * kv_dim);
    Q4K__ALLOC(gate, B * hp->n_ff);
    Q4K__ALLOC(up, B * hp->n_ff);
    Q4K__ALLOC(rope_c, B * (hp->n_rot / 2 + 1));
    Q4K__ALLOC(rope_s, B * (hp->n_rot / 2 + 1));
    Q4K__ALLOC(scores, (int64_t)cs->n_threads * d->n_ctx);
#undef Q4K__ALLOC
    if (!cs->k_cache || !cs->v_cache || !cs->kv_save || !cs->x || !cs->xb || !cs->tmp || !cs->q || !cs->att || !cs->k ||
        !cs->v || !cs->gate || !cs->up || !cs->rope_c || !cs->rope_s || !cs->scores) {
        q4k__cpu_session_destroy(&cs->base);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cpu: out of memory for a session of context %lld (%.1f MiB)",
                         (long long)d->n_ctx, (double)q4k_session_memory_estimate(m, d->n_ctx, B) / 1048576.0);
    }
    if ((r = q4k__session_alloc_trace(&cs->base, err))) {
        q4k__session_free_trace(&cs->base);
        q4k__cpu_session_destroy(&cs->base);
        return r;
    }
    *out = &cs->base;
    return Q4K_OK;
}

static q4k_result q4k__cpu_prepare_model(q4k_backend *b, const q4k_model *m, void **data, q4k_error *err) {
    q4k__cpu_prepared *p = (q4k__cpu_prepared *)Q4K_MALLOC(sizeof *p);
    uint32_t i;
    (void)b;
    (void)m;
    if (!p) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cpu: out of memory preparing a model");
    for (i = 0; i < 65536; i++) p->f16_table[i] = q4k_fp16_to_fp32((uint16_t)i);
    *data = p;
    return Q4K_OK;
}

static void q4k__cpu_release_model(q4k_backend *b, const q4k_model *m, void *data) {
    (void)b;
    (void)m;
    Q4K_FREE(data);
}

/* --- the CPU's op-level entry points: the forward pass's own functions --- */

static q4k_result q4k__cpu_backend_matmul(q4k_backend *b, q4k_act_mode act, q4k_type type, const void *w, int64_t rows,
                                          int64_t cols, const float *x, int64_t n, float *y, q4k_error *err) {
    q4k__cpu_backend *cb = (q4k__cpu_backend *)b;
    q4k_cpu cpu = cb->cpu;
    q4k_result r;
    cpu.act = act;
    r = q4k_matmul(&cpu, type, w, rows, cols, x, n, y);
    if (r) return q4k__fail(err, r, "cpu: matmul %s %lldx%lld failed", q4k_type_name(type), (long long)rows, (long long)cols);
    return Q4K_OK;
}

static q4k_result q4k__cpu_backend_embedding(q4k_backend *b, q4k_type type, const void *table, int64_t n_embd,
                                             int32_t token, float *out, q4k_error *err) {
    q4k_result r;
    (void)b;
    q4k__cpu_count();
    if (!table || !out || token < 0 || n_embd <= 0) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cpu: embedding: bad arguments");
    if ((r = q4k__embed_row(type, table, n_embd, token, out)))
        return q4k__fail(err, r, "cpu: embedding of type %s: %s", q4k_type_name(type), q4k_result_string(r));
    return Q4K_OK;
}

static q4k_result q4k__cpu_backend_rmsnorm(q4k_backend *b, const float *x, const float *w, int64_t n, int64_t rows,
                                           float eps, float *y, q4k_error *err) {
    int64_t j;
    (void)b;
    q4k__cpu_count();
    if (!x || !w || !y || n <= 0 || rows < 0) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cpu: rmsnorm: bad arguments");
    for (j = 0; j < rows; j++) q4k__rmsnorm(y + j * n, x + j * n, w, n, eps);
    return Q4K_OK;
}

static q4k_result q4k__cpu_backend_rope(q4k_backend *b, float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                                        int64_t n_rot, int neox, int64_t pos0, double base, const float *freq_factors,
                                        q4k_error *err) {
    int64_t j, h, half = n_rot / 2;
    float *c, *s;
    (void)b;
    q4k__cpu_count();
    if (!x || n_tok < 0 || n_head <= 0 || n_rot <= 0 || n_rot % 2 || n_rot > head_dim || pos0 < 0)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cpu: rope: bad arguments");
    c = (float *)Q4K_MALLOC((size_t)(n_tok * half + 1) * sizeof(float));
    s = (float *)Q4K_MALLOC((size_t)(n_tok * half + 1) * sizeof(float));
    if (!c || !s) {
        Q4K_FREE(c);
        Q4K_FREE(s);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cpu: rope: out of memory");
    }
    q4k__rope_tables(c, s, pos0, n_tok, n_rot, base, freq_factors);
    for (j = 0; j < n_tok; j++)
        for (h = 0; h < n_head; h++) q4k__rope(x + (j * n_head + h) * head_dim, c + j * half, s + j * half, n_rot, neox);
    Q4K_FREE(c);
    Q4K_FREE(s);
    return Q4K_OK;
}

static q4k_result q4k__cpu_backend_attention(q4k_backend *b, q4k_kv_type kv, const float *q, const float *k,
                                             const float *v, int64_t n_pos, int64_t n_head, int64_t n_head_kv,
                                             int64_t head_dim, float *out, q4k_error *err) {
    int64_t kv_dim = n_head_kv * head_dim, h;
    size_t es = kv == Q4K_KV_F32 ? 4 : 2;
    void *kc, *vc;
    float *sc, *tab = NULL;
    uint32_t i;
    (void)b;
    q4k__cpu_count();
    if (!q || !k || !v || !out || n_pos <= 0 || n_head_kv <= 0 || n_head % n_head_kv || head_dim <= 0 ||
        (kv != Q4K_KV_F16 && kv != Q4K_KV_F32))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cpu: attention: bad arguments");
    kc = Q4K_MALLOC((size_t)(n_pos * kv_dim) * es);
    vc = Q4K_MALLOC((size_t)(n_pos * kv_dim) * es);
    sc = (float *)Q4K_MALLOC((size_t)n_pos * sizeof(float));
    if (kv == Q4K_KV_F16) tab = (float *)Q4K_MALLOC(65536 * sizeof(float));
    if (!kc || !vc || !sc || (kv == Q4K_KV_F16 && !tab)) {
        Q4K_FREE(kc); Q4K_FREE(vc); Q4K_FREE(sc); Q4K_FREE(tab);
        return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cpu: attention: out of memory for %lld positions", (long long)n_pos);
    }
    if (tab)
        for (i = 0; i < 65536; i++) tab[i] = q4k_fp16_to_fp32((uint16_t)i);
    q4k__kv_store(kc, kv, 0, k, n_pos * kv_dim, 1.0f);
    q4k__kv_store(vc, kv, 0, v, n_pos * kv_dim, 1.0f);
    for (h = 0; h < n_head; h++) {
        int64_t kvh = h / (n_head / n_head_kv);
        q4k__attn_head(q + h * head_dim, (char *)kc + (size_t)(kvh * head_dim) * es, (char *)vc + (size_t)(kvh * head_dim) * es,
                       kv_dim, n_pos, head_dim, kv, tab, sc, out + h * head_dim);
    }
    Q4K_FREE(kc); Q4K_FREE(vc); Q4K_FREE(sc); Q4K_FREE(tab);
    return Q4K_OK;
}

static q4k_result q4k__cpu_backend_quantize_act(q4k_backend *b, const float *x, int64_t n, q4k_block_q8a *out,
                                                q4k_error *err) {
    (void)b;
    q4k__cpu_count();
    if (!x || !out || n < 0 || n % Q4K_QK) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "cpu: quantize_act: n %lld is not a multiple of %d", (long long)n, Q4K_QK);
    q4k_quantize_act_q8(x, out, n);
    return Q4K_OK;
}

static void q4k__cpu_backend_destroy(q4k_backend *b) {
    q4k__cpu_backend *cb = (q4k__cpu_backend *)b;
    q4k_pool_destroy(cb->cpu.pool);
    Q4K_FREE(cb);
}

Q4K_API q4k_result q4k_cpu_backend_create(const q4k_cpu_backend_desc *d, q4k_backend **out, q4k_error *err) {
    q4k__cpu_backend *cb;
    q4k_cpu_backend_desc dd;
    q4k_result r;
    memset(&dd, 0, sizeof dd);
    if (d) dd = *d;
    *out = NULL;
    cb = (q4k__cpu_backend *)Q4K_MALLOC(sizeof *cb);
    if (!cb) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cpu: out of memory");
    memset(cb, 0, sizeof *cb);
    if ((r = q4k_cpu_resolve_path(dd.path, &cb->cpu.path, err))) {
        Q4K_FREE(cb);
        return r;
    }
    if (dd.n_threads <= 0) {
#if defined(_SC_NPROCESSORS_ONLN)
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        dd.n_threads = nc > 0 ? (int)nc : 1;
#else
        dd.n_threads = 1;
#endif
    }
    if (dd.n_threads > 1) {
        cb->cpu.pool = q4k_pool_create(dd.n_threads);
        if (!cb->cpu.pool) {
            Q4K_FREE(cb);
            return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "cpu: cannot start %d threads", dd.n_threads);
        }
    }
    cb->base.name = "cpu";
    cb->base.impl = cb;
    cb->base.prepare_model = q4k__cpu_prepare_model;
    cb->base.release_model = q4k__cpu_release_model;
    cb->base.session_create = q4k__cpu_session_create;
    cb->base.matmul = q4k__cpu_backend_matmul;
    cb->base.embedding = q4k__cpu_backend_embedding;
    cb->base.rmsnorm = q4k__cpu_backend_rmsnorm;
    cb->base.rope = q4k__cpu_backend_rope;
    cb->base.attention = q4k__cpu_backend_attention;
    cb->base.quantize_act = q4k__cpu_backend_quantize_act;
    cb->base.destroy = q4k__cpu_backend_destroy;
    if ((r = q4k__backend_lock_init(&cb->base, err))) {
        q4k__cpu_backend_destroy(&cb->base);
        return r;
    }
    *out = &cb->base;
    return Q4K_OK;
}

Q4K_API void q4k_backend_destroy(q4k_backend *b) {
    struct q4k__backend_lock *lk;
    if (!b) return;
    lk = b->lock;
    b->destroy(b);
#if Q4K__BACKEND_LOCK
    if (lk) {
        pthread_mutex_destroy(&lk->mu);
        Q4K_FREE(lk);
    }
#else
    (void)lk;
#endif
}


/* >>parity */

Q4K_API const char *q4k_gate_op_name(int op) {
    if (op >= 0 && op < Q4K_OP_COUNT) return q4k_op_name((q4k_op)op);
    if (op >= Q4K_OP_COUNT && op < Q4K_OP_COUNT + Q4K_STAGE_COUNT) return q4k_stage_name((q4k_stage)(op - Q4K_OP_COUNT));
    return "unknown";
}

Q4K_API int q4k_gate_op_from_name(const char *name) {
    int i;
    for (i = 0; i < Q4K_OP_COUNT + Q4K_STAGE_COUNT; i++)
        if (name && !strcmp(name, q4k_gate_op_name(i))) return i;
    return -1;
}

#ifdef Q4K_FAULTS
Q4K_API const char *q4k_fault_name(q4k_fault f) {
    static const char *const names[] = {
#define Q4K__FAULT_NAME(name, text) text,
        Q4K_FAULT_LIST(Q4K__FAULT_NAME)
#undef Q4K__FAULT_NAME
    };
    if ((int)f < 0 || (int)f >= (int)Q4K_FAULT_COUNT) return "unknown";
    return names[f];
}

Q4K_API q4k_result q4k_faults_parse(const char *spec, q4k_faults *out, q4k_error *err) {
    const char *p = spec;
    memset(out, 0, sizeof *out);
    out->seed = 1;
    while (p && *p) {
        char item[96], *colon;
        size_t n = strcspn(p, ",");
        int f;
        if (n == 0 || n >= sizeof item) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "fault: empty or overlong name in '%s'", spec);
        memcpy(item, p, n);
        item[n] = 0;
        p += n + (p[n] == ',');
        for (f = 0; f < Q4K_FAULT_COUNT; f++)
            if (!strcmp(item, q4k_fault_name((q4k_fault)f))) break;
        if (f < Q4K_FAULT_COUNT) {
            out->mask |= 1u << f;
            continue;
        }
        if (!strncmp(item, "perturb:", 8)) {
            char *end, *opname = NULL;
            long layer = strtol(item + 8, &end, 10);
            double eps;
            if (end == item + 8 || *end != ':' || layer < 0)
                return q4k__fail(err, Q4K_ERR_INVALID_ARG, "fault '%s': want perturb:LAYER:OP:EPS with LAYER >= 0", item);
            opname = end + 1;
            colon = strchr(opname, ':');
            if (!colon) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "fault '%s': want perturb:LAYER:OP:EPS", item);
            *colon = 0;
            out->perturb_op = q4k_gate_op_from_name(opname);
            if (out->perturb_op < 0)
                return q4k__fail(err, Q4K_ERR_INVALID_ARG, "fault '%s': unknown op '%s' (an op of Q4K_OP_LIST or embedding, output_norm, lm_head)", spec, opname);
            eps = strtod(colon + 1, &end);
            if (end == colon + 1 || *end || !(eps > 0) || eps > 1e6)
                return q4k__fail(err, Q4K_ERR_INVALID_ARG, "fault perturb: EPS '%s' is not a positive number", colon + 1);
            out->perturb_layer = layer;
            out->perturb_eps = (float)eps;
            continue;
        }
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "fault: unknown name '%s' (gqa, bias, kv_step2, q4k_scales, f16_acc, split, perturb:LAYER:OP:EPS)", item);
    }
    return Q4K_OK;
}
#endif

/* a - b into out */
static void q4k__sub(float *out, const float *a, const float *b, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) out[i] = a[i] - b[i];
}

typedef struct q4k__gate {
    q4k_session *ref, *test;
    const q4k_model *m;
    q4k_backend *ref_b;
    q4k_act_mode act;
    double layer_cos, op_cos;
    float *x_out, *u_ref, *u_test, *buf;
} q4k__gate;

/* Cosine of op `op` of layer l: the reference's recomputation (from the
   test's input to the layer) against the test's own; the residual ops as
   updates, so that the stream they carry does not hide the error. */
static double q4k__gate_op_cos(q4k__gate *g, int64_t l, int op, const float *in) {
    int64_t d = g->m->hp.n_embd, len = 0;
    const float *a = q4k_session_trace_op_layer(g->ref, l, (q4k_op)op, &len);
    const float *b = q4k_session_trace_op_layer(g->test, l, (q4k_op)op, NULL);
    if (op == Q4K_OP_RESID_ATTN || op == Q4K_OP_RESID_FFN) {
        const float *base_r = op == Q4K_OP_RESID_ATTN ? in : q4k_session_trace_op_layer(g->ref, l, Q4K_OP_RESID_ATTN, NULL);
        const float *base_t = op == Q4K_OP_RESID_ATTN ? in : q4k_session_trace_op_layer(g->test, l, Q4K_OP_RESID_ATTN, NULL);
        q4k__sub(g->u_ref, a, base_r, d);
        q4k__sub(g->u_test, b, base_t, d);
        return q4k_parity_cosine(g->u_ref, g->u_test, d);
    }
    return q4k_parity_cosine(a, b, len);
}

/* The teacher-forced check of the step just evaluated: each layer
   recomputed by the reference from the test's input to it; its update
   (output - input) judged against layer_cos, every op against op_cos; the
   stages outside the layers against op_cos. Fills the step's worst values;
   *bad_layer / *bad_op: the first failure (op -1: none; layer -1: a stage). */
static q4k_result q4k__gate_layers(q4k__gate *g, q4k_gate_step *st, int64_t *bad_layer, int *bad_op, q4k_error *err) {
    const q4k_hparams *hp = &g->m->hp;
    int64_t d = hp->n_embd, nv = hp->n_vocab, l;
    const float *emb_t = q4k_session_trace_stage(g->test, Q4K_STAGE_EMBEDDING, NULL);
    const float *emb_r = q4k_session_trace_stage(g->ref, Q4K_STAGE_EMBEDDING, NULL);
    const float *on_t = q4k_session_trace_stage(g->test, Q4K_STAGE_OUTPUT_NORM, NULL);
    const float *lm_t = q4k_session_trace_stage(g->test, Q4K_STAGE_LM_HEAD, NULL);
    const float *last = q4k_session_trace_layer(g->test, hp->n_layer - 1);
    double c;
    int op;
    q4k_result r;
    st->op_cos = st->update_cos = 1.0;
    st->op_layer = st->update_layer = -1;
    st->op_worst = -1;
    *bad_layer = -1;
    *bad_op = -1;
    if (!emb_t || !emb_r || !on_t || !lm_t || !last)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "gate: the %s session gave no trace", g->test->backend->name);
#define Q4K__GATE_OP(cosv, layer, opv)                                                      \
    c = (cosv);                                                                             \
    if (!(c >= st->op_cos)) { st->op_cos = c; st->op_layer = (layer); st->op_worst = (opv); } \
    if (!(c >= g->op_cos) && *bad_op < 0) { *bad_layer = (layer); *bad_op = (opv); }
    Q4K__GATE_OP(q4k_parity_cosine(emb_r, emb_t, d), -1, Q4K_OP_COUNT + Q4K_STAGE_EMBEDDING)
    for (l = 0; l < hp->n_layer; l++) {
        const float *in = l ? q4k_session_trace_layer(g->test, l - 1) : emb_t;
        int first_bad = -1, worst_op = 0;
        double worst = 2.0, cu;
        if ((r = q4k_session_eval_layer(g->ref, l, in, NULL, g->x_out, err))) return r;
        q4k__sub(g->u_ref, g->x_out, in, d);
        q4k__sub(g->u_test, q4k_session_trace_layer(g->test, l), in, d);
        cu = q4k_parity_cosine(g->u_ref, g->u_test, d);
        if (!(cu >= st->update_cos)) { st->update_cos = cu; st->update_layer = l; }
        for (op = 0; op < Q4K_OP_COUNT; op++) {
            c = q4k__gate_op_cos(g, l, op, in);
            if (!(c >= st->op_cos)) { st->op_cos = c; st->op_layer = l; st->op_worst = op; }
            if (!(c >= g->op_cos) && first_bad < 0) first_bad = op;
            if (!(c >= worst)) { worst = c; worst_op = op; }
        }
        if (*bad_op < 0 && (first_bad >= 0 || !(cu >= g->layer_cos))) {
            /* the first op below its threshold; when only the update fails, the worst op */
            *bad_layer = l;
            *bad_op = first_bad >= 0 ? first_bad : worst_op;
        }
    }
    if ((r = g->ref_b->rmsnorm(g->ref_b, last, (const float *)g->m->output_norm->data, d, 1, hp->norm_eps, g->x_out, err)))
        return r;
    Q4K__GATE_OP(q4k_parity_cosine(g->x_out, on_t, d), -1, Q4K_OP_COUNT + Q4K_STAGE_OUTPUT_NORM)
    if ((r = g->ref_b->matmul(g->ref_b, g->act, g->m->output->type, g->m->output->data, nv, d, on_t, 1, g->buf, err)))
        return r;
    Q4K__GATE_OP(q4k_parity_cosine(g->buf, lm_t, nv), -1, Q4K_OP_COUNT + Q4K_STAGE_LM_HEAD)
#undef Q4K__GATE_OP
    return Q4K_OK;
}

static const int32_t q4k__gate_builtin[] = {9, 1771, 42, 30000, 512, 77, 8191, 3, 100000, 256, 12345, 64};

Q4K_API q4k_result q4k_gate_run(q4k_backend *ref_b, q4k_backend *test_b, const q4k_model *m,
                                const q4k_session_desc *test_desc, const int32_t *prompt, int64_t n_prompt,
                                const q4k_gate_desc *d, q4k_gate_report *rep, q4k_error *err) {
    q4k_gate_desc gd;
    q4k_session_desc rd, td;
    q4k__gate g;
    int64_t nv, n_builtin = (int64_t)(sizeof q4k__gate_builtin / sizeof q4k__gate_builtin[0]), n_user, i, step;
    int32_t *toks = NULL, next = 0;
    float *lr = NULL, *lt = NULL;
    q4k_result r = Q4K_OK;
    memset(&gd, 0, sizeof gd);
    if (d) gd = *d;
    memset(rep, 0, sizeof *rep);
    memset(&g, 0, sizeof g);
    rep->failed_step = -1;
    rep->div_layer = -1;
    rep->div_op = -1;
    if (!ref_b || !test_b || !m || (!prompt && n_prompt > 0) || n_prompt < 0 || gd.steps < 0 || gd.steps > Q4K_GATE_MAX_STEPS)
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "gate: bad arguments (steps %lld, at most %d)", (long long)gd.steps,
                         Q4K_GATE_MAX_STEPS);
    g.layer_cos = rep->layer_cos_used = gd.layer_cos > 0 ? gd.layer_cos : Q4K_GATE_LAYER_COS;
    g.op_cos = rep->op_cos_used = gd.op_cos > 0 ? gd.op_cos : Q4K_GATE_OP_COS;
    rep->logit_cos_used = gd.logit_cos > 0 ? gd.logit_cos : Q4K_GATE_LOGIT_COS;
    rep->margin_frac_used = gd.margin_frac > 0 ? gd.margin_frac : Q4K_GATE_MARGIN_FRAC;
    rep->steps_asked = gd.steps;
    nv = m->hp.n_vocab;
    n_user = gd.max_user_tokens > 0 ? gd.max_user_tokens : Q4K_GATE_MAX_USER_TOKENS;
    if (n_user > n_prompt) n_user = n_prompt;
    rep->n_prompt = n_builtin + n_user;
    memset(&td, 0, sizeof td);
    if (test_desc) td = *test_desc;
    if (td.n_ctx < rep->n_prompt + gd.steps + 1) td.n_ctx = rep->n_prompt + gd.steps + 1;
    td.trace = Q4K_TRACE_LAYERS | Q4K_TRACE_ALL_OPS;
    td.trace_layer = 0;
    rd = td;
    memset(&rd.faults, 0, sizeof rd.faults); /* the reference is never faulted */
    toks = (int32_t *)Q4K_MALLOC((size_t)rep->n_prompt * sizeof(int32_t));
    lr = (float *)Q4K_MALLOC((size_t)nv * sizeof(float));
    lt = (float *)Q4K_MALLOC((size_t)nv * sizeof(float));
    g.buf = (float *)Q4K_MALLOC((size_t)nv * sizeof(float));
    g.x_out = (float *)Q4K_MALLOC((size_t)m->hp.n_embd * 4 * sizeof(float));
    if (!toks || !lr || !lt || !g.buf || !g.x_out) {
        r = q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "gate: out of memory");
        goto done;
    }
    g.u_ref = g.x_out + m->hp.n_embd;
    g.u_test = g.u_ref + m->hp.n_embd;
    g.m = m;
    g.ref_b = ref_b;
    g.act = td.act;
    for (i = 0; i < n_builtin; i++) toks[i] = (int32_t)(q4k__gate_builtin[i] % nv);
    for (i = 0; i < n_user; i++) toks[n_builtin + i] = prompt[i];
    if ((r = q4k_session_create(ref_b, m, &rd, &g.ref, err)) || (r = q4k_session_create(test_b, m, &td, &g.test, err)))
        goto done;
    rep->pass = 1;
    for (step = 0; step <= gd.steps; step++) {
        const int32_t *t = step ? &next : toks;
        int64_t n = step ? 1 : rep->n_prompt, bad_layer;
        int bad_op;
        q4k_gate_step *st = &rep->step[step];
        q4k_result rt;
        if ((r = q4k_session_eval(g.ref, t, n, 0, lr, err))) goto done;
        rt = q4k_session_eval(g.test, t, n, 0, lt, err);
        if (rt != Q4K_OK && rt != Q4K_ERR_BAD_MODEL) {
            r = rt;
            goto done;
        }
        st->logits = q4k_parity_compare(lr, lt, nv);
        if ((r = q4k__gate_layers(&g, st, &bad_layer, &bad_op, err))) goto done;
        st->pass = 1;
        rep->n_steps = step + 1;
        if (st->logits.n_nonfinite) {
            snprintf(rep->reason, sizeof rep->reason, "%lld NaN/Inf logits", (long long)st->logits.n_nonfinite);
            st->pass = 0;
        } else if (!(st->logits.cosine >= rep->logit_cos_used)) {
            snprintf(rep->reason, sizeof rep->reason, "cosine %.4f < %g", st->logits.cosine, rep->logit_cos_used);
            st->pass = 0;
        } else if (st->logits.argmax_ref != st->logits.argmax_test &&
                   st->logits.margin > rep->margin_frac_used * st->logits.std_ref) {
            snprintf(rep->reason, sizeof rep->reason, "argmax %lld != %lld (margin %.3g > %g x std %.3g)",
                     (long long)st->logits.argmax_test, (long long)st->logits.argmax_ref, st->logits.margin,
                     rep->margin_frac_used, st->logits.std_ref);
            st->pass = 0;
        } else if (bad_op >= 0) {
            if (bad_layer < 0 || st->op_cos < rep->op_cos_used)
                snprintf(rep->reason, sizeof rep->reason, "%s cosine %.6f < %g", q4k_gate_op_name(st->op_worst),
                         st->op_cos, rep->op_cos_used);
            else
                snprintf(rep->reason, sizeof rep->reason, "layer %lld update cosine %.6f < %g", (long long)st->update_layer,
                         st->update_cos, rep->layer_cos_used);
            st->pass = 0;
        }
        if (!st->pass) {
            rep->pass = 0;
            rep->failed_step = step;
            rep->div_layer = bad_layer;
            rep->div_op = bad_op;
            if (bad_op >= 0 && bad_layer >= 0)
                snprintf(rep->where, sizeof rep->where, "layer %lld, %s", (long long)bad_layer, q4k_gate_op_name(bad_op));
            else if (bad_op >= 0)
                snprintf(rep->where, sizeof rep->where, "%s", q4k_gate_op_name(bad_op));
            else {
                /* every layer passes alone: the error is the sum of small ones */
                int64_t l;
                for (l = 0; l < m->hp.n_layer; l++)
                    if (!(q4k_parity_cosine(q4k_session_trace_layer(g.ref, l), q4k_session_trace_layer(g.test, l),
                                            m->hp.n_embd) >= rep->logit_cos_used))
                        break;
                rep->div_layer = l < m->hp.n_layer ? l : -1;
                if (l < m->hp.n_layer)
                    snprintf(rep->where, sizeof rep->where, "layer %lld, accumulated (no single layer fails)", (long long)l);
                else
                    snprintf(rep->where, sizeof rep->where, "no single layer");
            }
            break;
        }
        next = (int32_t)st->logits.argmax_ref;
    }
done:
    q4k_session_free(g.ref);
    q4k_session_free(g.test);
    Q4K_FREE(toks);
    Q4K_FREE(lr);
    Q4K_FREE(lt);
    Q4K_FREE(g.buf);
    Q4K_FREE(g.x_out);
    if (r) rep->pass = 0;
    return r;
}

/* --- sampling ------------------------------------------------------------ */

struct q4k_sampler {
    q4k_sampler_params p;
    int64_t n_vocab;
    uint64_t rng;
    int32_t *idx;  /* candidates */
    float *prob;
    int32_t *recent; /* ring of the last repeat_last_n accepted tokens */
    int64_t n_recent, next;
    float *work;     /* logits after the repetition penalty */
};

Q4K_API q4k_sampler_params q4k_sampler_defaults(void) {
    q4k_sampler_params p;
    p.temp = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.seed = 0;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    return p;
}

Q4K_API void q4k_free(void *p) { Q4K_FREE(p); }

Q4K_API char *q4k__join_lines(const char *const *lines, size_t *len) {
    size_t n = 0, i, o = 0;
    char *s;
    for (i = 0; lines[i]; i++) n += strlen(lines[i]);
    s = (char *)Q4K_MALLOC(n + 1);
    if (!s) return NULL;
    for (i = 0; lines[i]; i++) {
        size_t l = strlen(lines[i]);
        memcpy(s + o, lines[i], l);
        o += l;
    }
    s[o] = 0;
    if (len) *len = o;
    return s;
}

Q4K_API q4k_sampler *q4k_sampler_create(const q4k_sampler_params *p, int64_t n_vocab) {
    q4k_sampler *s;
    if (n_vocab <= 0) return NULL;
    s = (q4k_sampler *)Q4K_MALLOC(sizeof *s);
    if (!s) return NULL;
    s->p = p ? *p : q4k_sampler_defaults();
    s->n_vocab = n_vocab;
    s->rng = s->p.seed ^ 0x9E3779B97F4A7C15ull;
    s->idx = (int32_t *)Q4K_MALLOC((size_t)n_vocab * sizeof(int32_t));
    s->prob = (float *)Q4K_MALLOC((size_t)n_vocab * sizeof(float));
    s->recent = NULL;
    s->work = NULL;
    s->n_recent = s->next = 0;
    if (s->p.repeat_penalty > 0.0f && s->p.repeat_penalty != 1.0f && s->p.repeat_last_n > 0) {
        s->recent = (int32_t *)Q4K_MALLOC((size_t)s->p.repeat_last_n * sizeof(int32_t));
        s->work = (float *)Q4K_MALLOC((size_t)n_vocab * sizeof(float));
        if (!s->recent || !s->work) {
            q4k_sampler_free(s);
            return NULL;
        }
    }
    if (!s->idx || !s->prob) {
        q4k_sampler_free(s);
        return NULL;
    }
    return s;
}

Q4K_API void q4k_sampler_free(q4k_sampler *s) {
    if (!s) return;
    Q4K_FREE(s->idx);
    Q4K_FREE(s->prob);
    Q4K_FREE(s->recent);
    Q4K_FREE(s->work);
    Q4K_FREE(s);
}

Q4K_API int64_t q4k_argmax(const float *x, int64_t n) {
    int64_t i, best = 0;
    for (i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* splitmix64: uniform double in [0, 1) */
static double q4k__rand01(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* sort candidate ids by logit, descending (ties: lower id first) */
static void q4k__sort_desc(int32_t *idx, int64_t n, const float *logits) {
    /* heap sort: O(n log n) without recursion */
    int64_t i, end;
#define Q4K__LESS(a, b) (logits[a] > logits[b] || (logits[a] == logits[b] && (a) < (b)))
    for (i = n / 2 - 1; i >= 0; i--) {
        int64_t root = i;
        for (;;) {
            int64_t c = 2 * root + 1;
            int32_t t;
            if (c >= n) break;
            if (c + 1 < n && Q4K__LESS(idx[c], idx[c + 1])) c++;
            if (!Q4K__LESS(idx[root], idx[c])) break;
            t = idx[root]; idx[root] = idx[c]; idx[c] = t;
            root = c;
        }
    }
    for (end = n - 1; end > 0; end--) {
        int32_t t = idx[0];
        int64_t root = 0;
        idx[0] = idx[end]; idx[end] = t;
        for (;;) {
            int64_t c = 2 * root + 1;
            if (c >= end) break;
            if (c + 1 < end && Q4K__LESS(idx[c], idx[c + 1])) c++;
            if (!Q4K__LESS(idx[root], idx[c])) break;
            t = idx[root]; idx[root] = idx[c]; idx[c] = t;
            root = c;
        }
    }
#undef Q4K__LESS
}

Q4K_API void q4k_sampler_accept(q4k_sampler *s, int32_t id) {
    if (!s || !s->recent) return;
    s->recent[s->next] = id;
    s->next = (s->next + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

Q4K_API int32_t q4k_sampler_sample(q4k_sampler *s, const float *logits) {
    int64_t n = s->n_vocab, i, keep;
    double sum, cum, r;
    float mx;
    if (s->recent && s->n_recent) {
        /* each remembered token once, however often it occurs: a token is
           penalized when its logit still equals the raw one */
        memcpy(s->work, logits, (size_t)n * sizeof(float));
        for (i = 0; i < s->n_recent; i++) {
            int32_t id = s->recent[i];
            if (id < 0 || id >= n || s->work[id] != logits[id]) continue;
            s->work[id] = logits[id] > 0.0f ? logits[id] / s->p.repeat_penalty : logits[id] * s->p.repeat_penalty;
        }
        logits = s->work;
    }
    if (!(s->p.temp > 0.0f)) return (int32_t)q4k_argmax(logits, n);
    for (i = 0; i < n; i++) s->idx[i] = (int32_t)i;
    /* top-k: a partial selection would do, but a full sort keeps the code plain */
    q4k__sort_desc(s->idx, n, logits);
    keep = n;
    if (s->p.top_k > 0 && s->p.top_k < keep) keep = s->p.top_k;
    mx = logits[s->idx[0]];
    /* softmax of the raw logits over the kept candidates */
    sum = 0;
    for (i = 0; i < keep; i++) sum += (s->prob[i] = expf(logits[s->idx[i]] - mx));
    if (s->p.top_p < 1.0f) {
        cum = 0;
        for (i = 0; i < keep; i++) {
            cum += s->prob[i] / sum;
            if (cum >= s->p.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0.0f) {
        /* prob >= min_p * max prob; the first candidate is the max */
        for (i = 1; i < keep; i++)
            if (s->prob[i] < s->p.min_p * s->prob[0]) break;
        keep = i;
    }
    /* temperature, then a draw */
    sum = 0;
    for (i = 0; i < keep; i++) sum += (s->prob[i] = expf((logits[s->idx[i]] - mx) / s->p.temp));
    r = q4k__rand01(&s->rng) * sum;
    cum = 0;
    for (i = 0; i < keep; i++) {
        cum += s->prob[i];
        if (r < cum) return s->idx[i];
    }
    return s->idx[keep - 1];
}

/* --- chat templates ------------------------------------------------------ */

typedef struct q4k__buf {
    char *p;
    size_t len, cap;
    int oom;
} q4k__buf;

static void q4k__buf_add(q4k__buf *b, const char *s) {
    size_t n = strlen(s);
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = (char *)Q4K_REALLOC(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

Q4K_API char *q4k_chat_format(q4k_chat_template t, const q4k_chat_msg *msgs, int64_t n, int add_assistant) {
    q4k__buf b;
    int64_t i;
    memset(&b, 0, sizeof b);
    q4k__buf_add(&b, "");
    for (i = 0; i < n; i++) {
        if (t == Q4K_CHAT_CHATML) {
            q4k__buf_add(&b, "<|im_start|>");
            q4k__buf_add(&b, msgs[i].role);
            q4k__buf_add(&b, "\n");
            q4k__buf_add(&b, msgs[i].content);
            q4k__buf_add(&b, "<|im_end|>\n");
        } else if (t == Q4K_CHAT_LLAMA3) {
            q4k__buf_add(&b, "<|start_header_id|>");
            q4k__buf_add(&b, msgs[i].role);
            q4k__buf_add(&b, "<|end_header_id|>\n\n");
            q4k__buf_add(&b, msgs[i].content);
            q4k__buf_add(&b, "<|eot_id|>");
        } else if (t == Q4K_CHAT_DEEPSEEK) {
            if (!strcmp(msgs[i].role, "user")) q4k__buf_add(&b, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>");
            else if (!strcmp(msgs[i].role, "assistant")) q4k__buf_add(&b, "<\xEF\xBD\234Assistant\xEF\xBD\x9C>");
            q4k__buf_add(&b, msgs[i].content);
            if (!strcmp(msgs[i].role, "assistant"))
                q4k__buf_add(&b, "<\xEF\xBD\234end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>");
        } else if (t == Q4K_CHAT_LLAMA2) {
            if (!strcmp(msgs[i].role, "assistant")) {
                q4k__buf_add(&b, " ");
                q4k__buf_add(&b, msgs[i].content);
                q4k__buf_add(&b, " </s>");
                continue;
            }
            q4k__buf_add(&b, "<s>[INST] ");
            if (!strcmp(msgs[i].role, "system")) {
                q4k__buf_add(&b, "<<SYS>>\n");
                q4k__buf_add(&b, msgs[i].content);
                q4k__buf_add(&b, "\n<</SYS>>\n\n");
                if (i + 1 >= n || strcmp(msgs[i + 1].role, "user")) {
                    q4k__buf_add(&b, " [/INST]");
                    continue;
                }
                i++;
            }
            q4k__buf_add(&b, msgs[i].content);
            q4k__buf_add(&b, " [/INST]");
        } else {
            q4k__buf_add(&b, msgs[i].content);
        }
    }
    if (add_assistant) {
        if (t == Q4K_CHAT_CHATML) q4k__buf_add(&b, "<|im_start|>assistant\n");
        else if (t == Q4K_CHAT_LLAMA3) q4k__buf_add(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        else if (t == Q4K_CHAT_DEEPSEEK) q4k__buf_add(&b, "<\xEF\xBD\234Assistant\xEF\xBD\x9C><think>\n");
    }
    if (b.oom) {
        Q4K_FREE(b.p);
        return NULL;
    }
    return b.p;
}

/* --- chat templates: the Jinja subset ------------------------------------ */

/* tokenizer.chat_template is a Jinja program. q4k renders the subset that
   published chat templates use, byte for byte as transformers'
   apply_chat_template does: jinja2 with trim_blocks and lstrip_blocks, the
   loopcontrols extension, an ImmutableSandboxedEnvironment (no mutation but
   `set ns.x`) and the default Undefined (prints as "", is false, iterates
   as empty, fails on anything else). The template comes from a file, so
   everything is bounded: nesting depth, evaluation steps, memory (one
   arena, freed at once) and output. Errors unwind with longjmp: the arena
   and the output buffer are the only resources, and both are released by
   the caller of setjmp. */

#define Q4K__J_MAX_DEPTH 96
#define Q4K__J_MAX_STEPS 5000000
#define Q4K__J_MAX_MEM ((size_t)64 << 20)
#define Q4K__J_MAX_ARGS 8
#define Q4K__J_MAX_EVAL_DEPTH 400

enum {
    Q4K__JT_TEXT, Q4K__JT_VAR_BEGIN, Q4K__JT_VAR_END, Q4K__JT_BLOCK_BEGIN, Q4K__JT_BLOCK_END,
    Q4K__JT_NAME, Q4K__JT_STR, Q4K__JT_INT, Q4K__JT_FLOAT, Q4K__JT_OP, Q4K__JT_EOF
};

typedef struct q4k__jtok {
    int t, line;
    const char *s;
    size_t n;
    int64_t i;
    double f;
} q4k__jtok;

enum { /* value kinds */
    Q4K__JV_UNDEF, Q4K__JV_NONE, Q4K__JV_BOOL, Q4K__JV_INT, Q4K__JV_FLOAT, Q4K__JV_STR,
    Q4K__JV_LIST, Q4K__JV_DICT, Q4K__JV_NS, Q4K__JV_FUNC
};
enum { Q4K__JF_RAISE, Q4K__JF_STRFTIME, Q4K__JF_NAMESPACE, Q4K__JF_RANGE, Q4K__JF_DICT };

struct q4k__jobj;
typedef struct q4k__jv {
    int k;
    int64_t i; /* int, bool, function id */
    double f;
    const char *s; /* string bytes (UTF-8, not NUL-terminated); undefined: its name */
    size_t n;
    struct q4k__jobj *o; /* list, dict, namespace */
} q4k__jv;

/* a list, or a dict / namespace (keys are strings, in insertion order) */
typedef struct q4k__jobj {
    int64_t n, cap;
    q4k__jv *v, *key;
} q4k__jobj;

enum { /* node types */
    Q4K__JN_TEXT, Q4K__JN_OUT, Q4K__JN_IF, Q4K__JN_FOR, Q4K__JN_SET, Q4K__JN_BREAK, Q4K__JN_CONTINUE,
    Q4K__JN_BLOCK, Q4K__JN_LIT, Q4K__JN_NAME, Q4K__JN_ATTR, Q4K__JN_ITEM, Q4K__JN_SLICE, Q4K__JN_CALL,
    Q4K__JN_FILTER, Q4K__JN_TEST, Q4K__JN_NOT, Q4K__JN_NEG, Q4K__JN_BIN, Q4K__JN_COND, Q4K__JN_LIST,
    Q4K__JN_DICT, Q4K__JN_ARG
};
enum { /* binary operators */
    Q4K__JO_ADD, Q4K__JO_SUB, Q4K__JO_MUL, Q4K__JO_DIV, Q4K__JO_FDIV, Q4K__JO_MOD, Q4K__JO_POW, Q4K__JO_CAT,
    Q4K__JO_EQ, Q4K__JO_NE, Q4K__JO_LT, Q4K__JO_GT, Q4K__JO_LE, Q4K__JO_GE, Q4K__JO_IN, Q4K__JO_NOTIN,
    Q4K__JO_AND, Q4K__JO_OR
};

typedef struct q4k__jnode {
    int t, op, line;
    const char *s, *s2; /* text, names */
    size_t n, n2;
    q4k__jv lit;
    struct q4k__jnode *a, *b, *c, *d;
    struct q4k__jnode *next; /* the next statement, argument or list item */
} q4k__jnode;

typedef struct q4k__jvar {
    const char *name;
    size_t n;
    q4k__jv v;
} q4k__jvar;

typedef struct q4k__jblk {
    struct q4k__jblk *next;
    size_t used, cap;
} q4k__jblk;

typedef struct q4k__jctx {
    const char *src;
    size_t len;
    /* arena */
    q4k__jblk *blk;
    size_t mem;
    /* tokens and parser position */
    q4k__jtok *tok;
    int64_t ntok, captok, pos;
    int depth;
    /* evaluation */
    q4k__jvar *var;
    int64_t nvar, capvar, frame;
    int64_t steps;
    int loopctl; /* 1 break, 2 continue */
    int edepth;
    int64_t now;
    char *out;
    size_t out_len, out_cap, out_max;
    q4k_error *err;
    q4k_result code;
    jmp_buf jb;
} q4k__jctx;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5), noreturn))
#endif
static void q4k__jfail(q4k__jctx *c, q4k_result code, int line, const char *fmt, ...) {
    char buf[400], *p;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* raise_exception's message is the template's text and may hold line
       breaks (found by tests/fuzz/fuzz_chat.c); an error is one line */
    for (p = buf; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    c->code = code;
    if (line > 0) q4k__fail(c->err, code, "chat template line %d: %s", line, buf);
    else q4k__fail(c->err, code, "chat template: %s", buf);
    longjmp(c->jb, 1);
}

static void *q4k__jalloc(q4k__jctx *c, size_t n) {
    const size_t hdr = (sizeof(q4k__jblk) + 15) & ~(size_t)15;
    unsigned char *p;
    n = (n + 15) & ~(size_t)15;
    if (!c->blk || c->blk->used + n > c->blk->cap) {
        size_t cap = n > 65536 ? n : 65536;
        q4k__jblk *b;
        if (c->mem + cap > Q4K__J_MAX_MEM)
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, 0, "rendering needs more than %u MiB", (unsigned)(Q4K__J_MAX_MEM >> 20));
        b = (q4k__jblk *)Q4K_MALLOC(hdr + cap);
        if (!b) q4k__jfail(c, Q4K_ERR_OUT_OF_MEMORY, 0, "out of memory");
        b->next = c->blk;
        b->used = 0;
        b->cap = cap;
        c->blk = b;
        c->mem += cap;
    }
    p = (unsigned char *)c->blk + hdr + c->blk->used;
    c->blk->used += n;
    memset(p, 0, n);
    return p;
}

static char *q4k__jstrdup(q4k__jctx *c, const char *s, size_t n) {
    char *p = (char *)q4k__jalloc(c, n + 1);
    if (n) memcpy(p, s, n);
    return p;
}

static int q4k__jis_space(int ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

static int q4k__jlen_is(const char *s, size_t n, const char *lit) { return strlen(lit) == n && !memcmp(s, lit, n); }

/* ---- lexer ---- */

static q4k__jtok *q4k__jpush(q4k__jctx *c, int t, int line) {
    q4k__jtok *k;
    if (c->ntok == c->captok) {
        int64_t cap = c->captok ? 2 * c->captok : 256;
        q4k__jtok *nt = (q4k__jtok *)q4k__jalloc(c, (size_t)cap * sizeof *nt);
        if (c->ntok) memcpy(nt, c->tok, (size_t)c->ntok * sizeof *nt);
        c->tok = nt;
        c->captok = cap;
    }
    k = &c->tok[c->ntok++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->line = line;
    return k;
}

/* Jinja's data and string literals have \r\n and \r made \n */
static const char *q4k__jnewlines(q4k__jctx *c, const char *s, size_t *n) {
    size_t i, o = 0;
    char *d;
    if (!memchr(s, '\r', *n)) return s;
    d = q4k__jstrdup(c, s, *n);
    for (i = 0; i < *n; i++) {
        if (s[i] == '\r') {
            d[o++] = '\n';
            if (i + 1 < *n && s[i + 1] == '\n') i++;
        } else {
            d[o++] = s[i];
        }
    }
    *n = o;
    return d;
}

static size_t q4k__jutf8_put(char *d, uint32_t cp) {
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) { d[0] = (char)(0xC0 | cp >> 6); d[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | cp >> 12); d[1] = (char)(0x80 | (cp >> 6 & 63)); d[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    d[0] = (char)(0xF0 | cp >> 18); d[1] = (char)(0x80 | (cp >> 12 & 63)); d[2] = (char)(0x80 | (cp >> 6 & 63));
    d[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static int q4k__jhex(int ch) {
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* A string literal's body with Python's escapes (unknown ones stay as they are). */
static void q4k__jlex_string(q4k__jctx *c, q4k__jtok *k, const char *s, size_t n) {
    char *d;
    size_t i, o = 0;
    s = q4k__jnewlines(c, s, &n);
    d = (char *)q4k__jalloc(c, 4 * n + 1);
    for (i = 0; i < n; i++) {
        char e;
        if (s[i] != '\\' || i + 1 >= n) { d[o++] = s[i]; continue; }
        e = s[++i];
        switch (e) {
        case 'n': d[o++] = '\n'; break;
        case 't': d[o++] = '\t'; break;
        case 'r': d[o++] = '\r'; break;
        case '\\': d[o++] = '\\'; break;
        case '\'': d[o++] = '\''; break;
        case '"': d[o++] = '"'; break;
        case 'a': d[o++] = '\a'; break;
        case 'b': d[o++] = '\b'; break;
        case 'f': d[o++] = '\f'; break;
        case 'v': d[o++] = '\v'; break;
        case '\n': break; /* line continuation */
        case 'x': case 'u': case 'U': {
            int w = e == 'x' ? 2 : e == 'u' ? 4 : 8, j;
            uint32_t cp = 0;
            for (j = 0; j < w; j++) {
                int h = i + 1 + (size_t)j < n ? q4k__jhex((unsigned char)s[i + 1 + (size_t)j]) : -1;
                if (h < 0) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "bad \\%c escape in a string", e);
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
                q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "escape \\%c names no character", e);
            o += q4k__jutf8_put(d + o, cp);
            i += (size_t)w;
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                int j;
                for (j = 0; j < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; j++) cp = cp * 8 + (uint32_t)(s[++i] - '0');
                o += q4k__jutf8_put(d + o, cp);
            } else {
                d[o++] = '\\';
                d[o++] = e;
            }
        }
    }
    k->s = d;
    k->n = o;
}

static void q4k__jlex(q4k__jctx *c) {
    const char *s = c->src;
    size_t n = c->len, pos = 0;
    int line = 1, line_starting = 1, strip_next = 0;
    /* keep_trailing_newline is off: one newline at the end goes */
    if (n && s[n - 1] == '\n') n -= (n >= 2 && s[n - 2] == '\r') ? 2 : 1;
    else if (n && s[n - 1] == '\r') n--;
    while (pos < n) {
        size_t p = pos, te, tb;
        int kind = 0; /* '{', '%', '#' */
        char mod = 0;
        q4k__jtok *k;
        while (p + 1 < n && !(s[p] == '{' && (s[p + 1] == '{' || s[p + 1] == '%' || s[p + 1] == '#'))) p++;
        if (p + 1 >= n) p = n;
        else kind = s[p + 1];
        tb = pos;
        te = p;
        if (strip_next)
            while (tb < te && q4k__jis_space((unsigned char)s[tb])) tb++;
        if (kind) {
            mod = p + 2 < n && (s[p + 2] == '-' || s[p + 2] == '+') ? s[p + 2] : 0;
            if (mod == '-') {
                while (te > tb && q4k__jis_space((unsigned char)s[te - 1])) te--;
            } else if (mod != '+' && kind != '{') { /* lstrip_blocks */
                size_t ws = te;
                while (ws > tb && q4k__jis_space((unsigned char)s[ws - 1]) && s[ws - 1] != '\n') ws--;
                if (ws < te && ((ws > tb && s[ws - 1] == '\n') || (ws == tb && line_starting))) te = ws;
            }
        }
        if (te > tb) {
            size_t m = te - tb;
            k = q4k__jpush(c, Q4K__JT_TEXT, line);
            k->s = q4k__jnewlines(c, s + tb, &m);
            k->n = m;
        }
        for (; pos < p; pos++) line += s[pos] == '\n';
        if (!kind) break;
        pos = p + 2 + (mod ? 1 : 0);
        strip_next = 0;
        if (kind == '#') {
            size_t e = pos;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "a comment {# is not closed");
            for (; pos < e; pos++) line += s[pos] == '\n';
            pos = e + 2;
            line_starting = 0;
            if (e > 0 && s[e - 1] == '-') {
                strip_next = 1;
            } else if (!(e > 0 && s[e - 1] == '+') && pos < n && s[pos] == '\n') {
                pos++; /* trim_blocks */
                line++;
                line_starting = 1;
            } else if (!(e > 0 && s[e - 1] == '+') && pos + 1 < n && s[pos] == '\r' && s[pos + 1] == '\n') {
                pos += 2;
                line++;
                line_starting = 1;
            }
            continue;
        }
        q4k__jpush(c, kind == '{' ? Q4K__JT_VAR_BEGIN : Q4K__JT_BLOCK_BEGIN, line);
        {
            int bal = 0, done = 0;
            while (!done) {
                char ch;
                while (pos < n && q4k__jis_space((unsigned char)s[pos])) line += s[pos++] == '\n';
                if (pos >= n) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "a tag is not closed");
                ch = s[pos];
                if (!bal) { /* the end of the tag, with its whitespace control */
                    char endc = kind == '{' ? '}' : '%';
                    size_t q = pos;
                    char m2 = 0;
                    if ((ch == '-' || ch == '+') && q + 2 < n && s[q + 1] == endc && s[q + 2] == '}') { m2 = ch; q++; }
                    if (q + 1 < n && s[q] == endc && s[q + 1] == '}') {
                        if (m2 == '+' && kind == '{') q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "'+}}' is not Jinja");
                        q4k__jpush(c, kind == '{' ? Q4K__JT_VAR_END : Q4K__JT_BLOCK_END, line);
                        pos = q + 2;
                        line_starting = 0;
                        if (m2 == '-') {
                            strip_next = 1;
                        } else if (kind == '%' && m2 != '+') { /* trim_blocks */
                            if (pos < n && s[pos] == '\n') { pos++; line++; line_starting = 1; }
                            else if (pos + 1 < n && s[pos] == '\r' && s[pos + 1] == '\n') { pos += 2; line++; line_starting = 1; }
                        }
                        done = 1;
                        continue;
                    }
                }
                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') {
                    size_t b = pos;
                    while (pos < n && ((s[pos] >= 'a' && s[pos] <= 'z') || (s[pos] >= 'A' && s[pos] <= 'Z') ||
                                       (s[pos] >= '0' && s[pos] <= '9') || s[pos] == '_'))
                        pos++;
                    k = q4k__jpush(c, Q4K__JT_NAME, line);
                    k->s = s + b;
                    k->n = pos - b;
                } else if (ch >= '0' && ch <= '9') {
                    size_t b = pos;
                    int isf = 0;
                    char num[64];
                    size_t o = 0;
                    while (pos < n && ((s[pos] >= '0' && s[pos] <= '9') || s[pos] == '_')) pos++;
                    if (pos + 1 < n && s[pos] == '.' && s[pos + 1] >= '0' && s[pos + 1] <= '9') {
                        isf = 1;
                        pos++;
                        while (pos < n && ((s[pos] >= '0' && s[pos] <= '9') || s[pos] == '_')) pos++;
                    }
                    if (pos < n && (s[pos] == 'e' || s[pos] == 'E')) {
                        size_t q = pos + 1;
                        if (q < n && (s[q] == '+' || s[q] == '-')) q++;
                        if (q < n && s[q] >= '0' && s[q] <= '9') {
                            isf = 1;
                            pos = q;
                            while (pos < n && s[pos] >= '0' && s[pos] <= '9') pos++;
                        }
                    }
                    for (; b < pos && o < sizeof num - 1; b++)
                        if (s[b] != '_') num[o++] = s[b];
                    num[o] = 0;
                    k = q4k__jpush(c, isf ? Q4K__JT_FLOAT : Q4K__JT_INT, line);
                    if (isf) {
                        k->f = strtod(num, NULL);
                    } else {
                        if (o > 18) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "integer %s is too large", num);
                        k->i = (int64_t)strtoll(num, NULL, 10);
                    }
                } else if (ch == '\'' || ch == '"') {
                    size_t b = ++pos;
                    while (pos < n && s[pos] != ch) {
                        if (s[pos] == '\\' && pos + 1 < n) pos++;
                        line += s[pos] == '\n';
                        pos++;
                    }
                    if (pos >= n) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "a string is not closed");
                    k = q4k__jpush(c, Q4K__JT_STR, line);
                    q4k__jlex_string(c, k, s + b, pos - b);
                    pos++;
                } else {
                    static const char *const ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
                    size_t l = 1, j;
                    for (j = 0; j < sizeof ops2 / sizeof ops2[0]; j++)
                        if (pos + 1 < n && s[pos] == ops2[j][0] && s[pos + 1] == ops2[j][1]) l = 2;
                    if (l == 1 && !strchr("+-*/%~()[]{},.:|=<>", ch))
                        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "unexpected character '%c' in a tag", ch);
                    if (ch == '(' || ch == '[' || ch == '{') bal++;
                    if ((ch == ')' || ch == ']' || ch == '}') && bal > 0) bal--;
                    k = q4k__jpush(c, Q4K__JT_OP, line);
                    k->s = s + pos;
                    k->n = l;
                    pos += l;
                }
            }
        }
    }
    q4k__jpush(c, Q4K__JT_EOF, line);
}

/* ---- parser ---- */

static q4k__jnode *q4k__jnew(q4k__jctx *c, int t, int line) {
    q4k__jnode *nd = (q4k__jnode *)q4k__jalloc(c, sizeof *nd);
    nd->t = t;
    nd->line = line;
    return nd;
}

static q4k__jtok *q4k__jpeek(q4k__jctx *c) { return &c->tok[c->pos]; }
static int q4k__jis_op(q4k__jtok *k, const char *op) { return k->t == Q4K__JT_OP && q4k__jlen_is(k->s, k->n, op); }
static int q4k__jis_name(q4k__jtok *k, const char *nm) { return k->t == Q4K__JT_NAME && q4k__jlen_is(k->s, k->n, nm); }
static int q4k__jaccept_op(q4k__jctx *c, const char *op) {
    if (!q4k__jis_op(q4k__jpeek(c), op)) return 0;
    c->pos++;
    return 1;
}
static int q4k__jaccept_name(q4k__jctx *c, const char *nm) {
    if (!q4k__jis_name(q4k__jpeek(c), nm)) return 0;
    c->pos++;
    return 1;
}

static const char *q4k__jtok_desc(q4k__jtok *k, char buf[48]) {
    switch (k->t) {
    case Q4K__JT_TEXT: return "text";
    case Q4K__JT_VAR_END: return "'}}'";
    case Q4K__JT_BLOCK_END: return "'%}'";
    case Q4K__JT_EOF: return "the end of the template";
    case Q4K__JT_STR: return "a string";
    case Q4K__JT_INT: case Q4K__JT_FLOAT: return "a number";
    default:
        snprintf(buf, 48, "'%.*s'", (int)(k->n < 40 ? k->n : 40), k->s ? k->s : "");
        return buf;
    }
}

static void q4k__jexpect_op(q4k__jctx *c, const char *op) {
    char b[48];
    if (!q4k__jaccept_op(c, op))
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, q4k__jpeek(c)->line, "expected '%s', found %s", op, q4k__jtok_desc(q4k__jpeek(c), b));
}

static q4k__jtok *q4k__jexpect(q4k__jctx *c, int t, const char *what) {
    char b[48];
    q4k__jtok *k = q4k__jpeek(c);
    if (k->t != t) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "expected %s, found %s", what, q4k__jtok_desc(k, b));
    c->pos++;
    return k;
}

static void q4k__jenter(q4k__jctx *c) {
    if (++c->depth > Q4K__J_MAX_DEPTH)
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, q4k__jpeek(c)->line, "nested more than %d deep", Q4K__J_MAX_DEPTH);
}

static q4k__jnode *q4k__jexpr(q4k__jctx *c);
static q4k__jnode *q4k__junary(q4k__jctx *c, int with_filter);

/* (args) after '(' was read: positional and name=value arguments */
static q4k__jnode *q4k__jargs(q4k__jctx *c) {
    q4k__jnode *first = NULL, **tail = &first;
    while (!q4k__jaccept_op(c, ")")) {
        q4k__jnode *a = q4k__jnew(c, Q4K__JN_ARG, q4k__jpeek(c)->line);
        if (q4k__jpeek(c)->t == Q4K__JT_NAME && q4k__jis_op(&c->tok[c->pos + 1], "=")) {
            a->s = q4k__jpeek(c)->s;
            a->n = q4k__jpeek(c)->n;
            c->pos += 2;
        }
        a->a = q4k__jexpr(c);
        *tail = a;
        tail = &a->next;
        if (!q4k__jaccept_op(c, ",")) {
            q4k__jexpect_op(c, ")");
            break;
        }
    }
    return first;
}

static q4k__jnode *q4k__jprimary(q4k__jctx *c) {
    q4k__jtok *k = q4k__jpeek(c);
    q4k__jnode *nd;
    char b[48];
    if (k->t == Q4K__JT_NAME) {
        c->pos++;
        nd = q4k__jnew(c, Q4K__JN_LIT, k->line);
        if (q4k__jlen_is(k->s, k->n, "true") || q4k__jlen_is(k->s, k->n, "True") ||
            q4k__jlen_is(k->s, k->n, "false") || q4k__jlen_is(k->s, k->n, "False")) {
            nd->lit.k = Q4K__JV_BOOL;
            nd->lit.i = k->s[0] == 't' || k->s[0] == 'T';
        } else if (q4k__jlen_is(k->s, k->n, "none") || q4k__jlen_is(k->s, k->n, "None")) {
            nd->lit.k = Q4K__JV_NONE;
        } else {
            nd->t = Q4K__JN_NAME;
            nd->s = k->s;
            nd->n = k->n;
        }
        return nd;
    }
    if (k->t == Q4K__JT_STR) { /* adjacent strings are one */
        size_t total = 0;
        int64_t j;
        char *d;
        nd = q4k__jnew(c, Q4K__JN_LIT, k->line);
        for (j = c->pos; c->tok[j].t == Q4K__JT_STR; j++) total += c->tok[j].n;
        d = (char *)q4k__jalloc(c, total + 1);
        nd->lit.k = Q4K__JV_STR;
        nd->lit.s = d;
        for (; c->pos < j; c->pos++) {
            if (c->tok[c->pos].n) memcpy(d + nd->lit.n, c->tok[c->pos].s, c->tok[c->pos].n);
            nd->lit.n += c->tok[c->pos].n;
        }
        return nd;
    }
    if (k->t == Q4K__JT_INT || k->t == Q4K__JT_FLOAT) {
        c->pos++;
        nd = q4k__jnew(c, Q4K__JN_LIT, k->line);
        nd->lit.k = k->t == Q4K__JT_INT ? Q4K__JV_INT : Q4K__JV_FLOAT;
        nd->lit.i = k->i;
        nd->lit.f = k->f;
        return nd;
    }
    if (q4k__jaccept_op(c, "(")) {
        nd = q4k__jexpr(c);
        if (q4k__jis_op(q4k__jpeek(c), ","))
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "tuples are outside q4k's Jinja subset");
        q4k__jexpect_op(c, ")");
        return nd;
    }
    if (q4k__jaccept_op(c, "[")) {
        q4k__jnode **tail;
        nd = q4k__jnew(c, Q4K__JN_LIST, k->line);
        tail = &nd->b;
        while (!q4k__jaccept_op(c, "]")) {
            q4k__jnode *a = q4k__jnew(c, Q4K__JN_ARG, k->line);
            a->a = q4k__jexpr(c);
            *tail = a;
            tail = &a->next;
            if (!q4k__jaccept_op(c, ",")) {
                q4k__jexpect_op(c, "]");
                break;
            }
        }
        return nd;
    }
    if (q4k__jaccept_op(c, "{")) {
        q4k__jnode **tail;
        nd = q4k__jnew(c, Q4K__JN_DICT, k->line);
        tail = &nd->b;
        while (!q4k__jaccept_op(c, "}")) {
            q4k__jnode *a = q4k__jnew(c, Q4K__JN_ARG, k->line);
            a->a = q4k__jexpr(c);
            q4k__jexpect_op(c, ":");
            a->b = q4k__jexpr(c);
            *tail = a;
            tail = &a->next;
            if (!q4k__jaccept_op(c, ",")) {
                q4k__jexpect_op(c, "}");
                break;
            }
        }
        return nd;
    }
    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "expected an expression, found %s", q4k__jtok_desc(k, b));
}

static q4k__jnode *q4k__jpostfix(q4k__jctx *c, q4k__jnode *e) {
    for (;;) {
        q4k__jtok *k = q4k__jpeek(c);
        if (q4k__jaccept_op(c, ".")) {
            q4k__jtok *nm = q4k__jpeek(c);
            q4k__jnode *nd;
            if (nm->t == Q4K__JT_INT) { /* x.0 is x[0] */
                c->pos++;
                nd = q4k__jnew(c, Q4K__JN_ITEM, k->line);
                nd->a = e;
                nd->b = q4k__jnew(c, Q4K__JN_LIT, k->line);
                nd->b->lit.k = Q4K__JV_INT;
                nd->b->lit.i = nm->i;
            } else {
                q4k__jexpect(c, Q4K__JT_NAME, "an attribute name");
                nd = q4k__jnew(c, Q4K__JN_ATTR, k->line);
                nd->a = e;
                nd->s = nm->s;
                nd->n = nm->n;
            }
            e = nd;
        } else if (q4k__jaccept_op(c, "[")) {
            q4k__jnode *nd = q4k__jnew(c, Q4K__JN_ITEM, k->line), *parts[3] = {NULL, NULL, NULL};
            int np = 0, slice = 0;
            nd->a = e;
            for (;;) {
                if (q4k__jis_op(q4k__jpeek(c), ":") || q4k__jis_op(q4k__jpeek(c), "]")) parts[np] = NULL;
                else parts[np] = q4k__jexpr(c);
                if (np < 2 && q4k__jaccept_op(c, ":")) {
                    slice = 1;
                    np++;
                    continue;
                }
                break;
            }
            q4k__jexpect_op(c, "]");
            if (slice) {
                nd->t = Q4K__JN_SLICE;
                nd->b = parts[0];
                nd->c = parts[1];
                nd->d = parts[2];
            } else {
                if (!parts[0]) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "empty subscript []");
                nd->b = parts[0];
            }
            e = nd;
        } else if (q4k__jaccept_op(c, "(")) {
            q4k__jnode *nd = q4k__jnew(c, Q4K__JN_CALL, k->line);
            nd->a = e;
            nd->b = q4k__jargs(c);
            e = nd;
        } else {
            return e;
        }
    }
}

/* filters (x | f(args)) and tests (x is [not] t(args)) */
static q4k__jnode *q4k__jfilters(q4k__jctx *c, q4k__jnode *e) {
    for (;;) {
        q4k__jtok *k = q4k__jpeek(c);
        if (q4k__jaccept_op(c, "|")) {
            q4k__jtok *nm = q4k__jexpect(c, Q4K__JT_NAME, "a filter name");
            q4k__jnode *nd = q4k__jnew(c, Q4K__JN_FILTER, k->line);
            nd->a = e;
            nd->s = nm->s;
            nd->n = nm->n;
            if (q4k__jaccept_op(c, "(")) nd->b = q4k__jargs(c);
            e = nd;
        } else if (q4k__jaccept_name(c, "is")) {
            q4k__jnode *nd = q4k__jnew(c, Q4K__JN_TEST, k->line);
            q4k__jtok *nm;
            nd->op = q4k__jaccept_name(c, "not");
            nm = q4k__jpeek(c);
            if (nm->t == Q4K__JT_NAME || (nm->t == Q4K__JT_OP && (q4k__jlen_is(nm->s, nm->n, "==") ||
                                                                   q4k__jlen_is(nm->s, nm->n, "!=") ||
                                                                   q4k__jlen_is(nm->s, nm->n, "<") ||
                                                                   q4k__jlen_is(nm->s, nm->n, ">")))) {
                c->pos++;
            } else {
                char b[48];
                q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "expected a test name after 'is', found %s", q4k__jtok_desc(nm, b));
            }
            nd->a = e;
            nd->s = nm->s;
            nd->n = nm->n;
            if (q4k__jaccept_op(c, "(")) {
                nd->b = q4k__jargs(c);
            } else {
                q4k__jtok *x = q4k__jpeek(c);
                if (x->t == Q4K__JT_STR || x->t == Q4K__JT_INT || x->t == Q4K__JT_FLOAT ||
                    (x->t == Q4K__JT_NAME && !q4k__jis_name(x, "and") && !q4k__jis_name(x, "or") &&
                     !q4k__jis_name(x, "else") && !q4k__jis_name(x, "if") && !q4k__jis_name(x, "in") &&
                     !q4k__jis_name(x, "is") && !q4k__jis_name(x, "not"))) {
                    nd->b = q4k__jnew(c, Q4K__JN_ARG, x->line);
                    nd->b->a = q4k__junary(c, 0);
                }
            }
            e = nd;
        } else {
            return e;
        }
    }
}

static q4k__jnode *q4k__junary(q4k__jctx *c, int with_filter) {
    q4k__jtok *k = q4k__jpeek(c);
    q4k__jnode *e;
    q4k__jenter(c);
    if (q4k__jaccept_op(c, "-")) {
        e = q4k__jnew(c, Q4K__JN_NEG, k->line);
        e->a = q4k__junary(c, 0);
    } else if (q4k__jaccept_op(c, "+")) {
        e = q4k__junary(c, 0);
    } else {
        e = q4k__jprimary(c);
    }
    e = q4k__jpostfix(c, e);
    if (with_filter) e = q4k__jfilters(c, e);
    c->depth--;
    return e;
}

/* The binary operator at the parser's position for precedence level
   `level` (consumed; -1 when none). Levels, loosest first: 0 or, 1 and,
   2 not (prefix), 3 comparisons and (not) in, 4 + -, 5 ~, 6 * / // %, 7 **,
   8 unary operands with their filters and tests. */
static int q4k__jbinop(q4k__jctx *c, int level) {
    static const char *const ops[8][6] = {
        {0}, {0}, {0}, {"==", "!=", "<", ">", "<=", ">="}, {"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
    static const int codes[8][6] = {
        {0}, {0}, {0}, {Q4K__JO_EQ, Q4K__JO_NE, Q4K__JO_LT, Q4K__JO_GT, Q4K__JO_LE, Q4K__JO_GE},
        {Q4K__JO_ADD, Q4K__JO_SUB}, {Q4K__JO_CAT}, {Q4K__JO_MUL, Q4K__JO_DIV, Q4K__JO_FDIV, Q4K__JO_MOD}, {Q4K__JO_POW}};
    q4k__jtok *k = q4k__jpeek(c);
    int i;
    if (level == 0 || level == 1) return q4k__jaccept_name(c, level ? "and" : "or") ? (level ? Q4K__JO_AND : Q4K__JO_OR) : -1;
    if (level == 3) {
        if (q4k__jaccept_name(c, "in")) return Q4K__JO_IN;
        if (q4k__jis_name(k, "not") && q4k__jis_name(&c->tok[c->pos + 1], "in")) {
            c->pos += 2;
            return Q4K__JO_NOTIN;
        }
    }
    for (i = 0; i < 6 && ops[level][i]; i++)
        if (q4k__jaccept_op(c, ops[level][i])) return codes[level][i];
    return -1;
}

static q4k__jnode *q4k__jlevel(q4k__jctx *c, int level) {
    q4k__jnode *e;
    if (level == 8) return q4k__junary(c, 1);
    if (level == 2) {
        q4k__jtok *k = q4k__jpeek(c);
        if (!q4k__jaccept_name(c, "not")) return q4k__jlevel(c, 3);
        e = q4k__jnew(c, Q4K__JN_NOT, k->line);
        q4k__jenter(c);
        e->a = q4k__jlevel(c, 2);
        c->depth--;
        return e;
    }
    e = q4k__jlevel(c, level + 1);
    for (;;) {
        int line = q4k__jpeek(c)->line, op = q4k__jbinop(c, level);
        q4k__jnode *nd;
        if (op < 0) return e;
        nd = q4k__jnew(c, Q4K__JN_BIN, line);
        nd->op = op;
        nd->a = e;
        nd->b = q4k__jlevel(c, level + 1);
        e = nd;
    }
}

static q4k__jnode *q4k__jor(q4k__jctx *c) { return q4k__jlevel(c, 0); }

static q4k__jnode *q4k__jexpr(q4k__jctx *c) {
    q4k__jnode *e;
    q4k__jenter(c);
    e = q4k__jor(c);
    while (q4k__jis_name(q4k__jpeek(c), "if")) {
        q4k__jnode *nd = q4k__jnew(c, Q4K__JN_COND, q4k__jpeek(c)->line);
        c->pos++;
        nd->a = e;
        nd->b = q4k__jor(c);
        if (q4k__jaccept_name(c, "else")) nd->c = q4k__jexpr(c);
        e = nd;
    }
    c->depth--;
    return e;
}

static q4k__jnode *q4k__jbody(q4k__jctx *c, const char *const *ends, int n_ends, const char *opener);

static void q4k__jblock_end(q4k__jctx *c) { q4k__jexpect(c, Q4K__JT_BLOCK_END, "'%}'"); }

/* after "{% if": the condition, the body, then elif / else / endif */
static q4k__jnode *q4k__jif(q4k__jctx *c, int line) {
    static const char *const ends[] = {"elif", "else", "endif"};
    q4k__jnode *nd = q4k__jnew(c, Q4K__JN_IF, line);
    q4k__jtok *k;
    nd->a = q4k__jexpr(c);
    q4k__jblock_end(c);
    nd->b = q4k__jbody(c, ends, 3, "if");
    k = q4k__jpeek(c);
    c->pos++;
    if (q4k__jis_name(k, "elif")) {
        q4k__jenter(c);
        nd->c = q4k__jif(c, k->line);
        c->depth--;
        return nd;
    }
    if (q4k__jis_name(k, "else")) {
        static const char *const end[] = {"endif"};
        q4k__jblock_end(c);
        nd->c = q4k__jnew(c, Q4K__JN_BLOCK, k->line);
        nd->c->b = q4k__jbody(c, end, 1, "if");
        c->pos++;
    }
    q4k__jblock_end(c);
    return nd;
}

static q4k__jnode *q4k__jstmt(q4k__jctx *c) {
    q4k__jtok *k = q4k__jexpect(c, Q4K__JT_NAME, "a statement name");
    q4k__jnode *nd;
    if (q4k__jis_name(k, "if")) {
        q4k__jenter(c);
        nd = q4k__jif(c, k->line);
        c->depth--;
    } else if (q4k__jis_name(k, "for")) {
        static const char *const ends[] = {"else", "endfor"};
        q4k__jtok *e;
        nd = q4k__jnew(c, Q4K__JN_FOR, k->line);
        e = q4k__jexpect(c, Q4K__JT_NAME, "a loop variable");
        nd->s = e->s;
        nd->n = e->n;
        if (q4k__jaccept_op(c, ",")) {
            e = q4k__jexpect(c, Q4K__JT_NAME, "a second loop variable");
            nd->s2 = e->s;
            nd->n2 = e->n;
            if (q4k__jis_op(q4k__jpeek(c), ","))
                q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "unpacking more than two loop variables");
        }
        if (!q4k__jaccept_name(c, "in")) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "expected 'in' in a for loop");
        /* the iterable stops before a filter condition: parse it below 'if' */
        nd->a = q4k__jor(c);
        if (q4k__jaccept_name(c, "if")) nd->d = q4k__jexpr(c);
        if (q4k__jis_name(q4k__jpeek(c), "recursive"))
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "recursive loops are outside q4k's Jinja subset");
        q4k__jblock_end(c);
        nd->b = q4k__jbody(c, ends, 2, "for");
        if (q4k__jis_name(q4k__jpeek(c), "else")) {
            static const char *const end[] = {"endfor"};
            c->pos++;
            q4k__jblock_end(c);
            nd->c = q4k__jbody(c, end, 1, "for");
        }
        c->pos++;
        q4k__jblock_end(c);
    } else if (q4k__jis_name(k, "set")) {
        q4k__jtok *e = q4k__jexpect(c, Q4K__JT_NAME, "a variable name");
        nd = q4k__jnew(c, Q4K__JN_SET, k->line);
        nd->s = e->s;
        nd->n = e->n;
        if (q4k__jaccept_op(c, ".")) {
            e = q4k__jexpect(c, Q4K__JT_NAME, "an attribute name");
            nd->s2 = e->s;
            nd->n2 = e->n;
        }
        if (!q4k__jaccept_op(c, "="))
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line,
                       "only '{%% set name = value %%}' is in q4k's Jinja subset (not block sets or tuples)");
        nd->a = q4k__jexpr(c);
        q4k__jblock_end(c);
    } else if (q4k__jis_name(k, "break") || q4k__jis_name(k, "continue")) {
        nd = q4k__jnew(c, k->s[0] == 'b' ? Q4K__JN_BREAK : Q4K__JN_CONTINUE, k->line);
        q4k__jblock_end(c);
    } else if (q4k__jis_name(k, "generation")) { /* transformers' assistant mask marker: renders its body */
        static const char *const end[] = {"endgeneration"};
        q4k__jblock_end(c);
        nd = q4k__jnew(c, Q4K__JN_BLOCK, k->line);
        nd->b = q4k__jbody(c, end, 1, "generation");
        c->pos++;
        q4k__jblock_end(c);
    } else {
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "'{%% %.*s %%}' is outside q4k's Jinja subset", (int)(k->n < 40 ? k->n : 40), k->s);
    }
    return nd;
}

/* Statements until one of `ends` (left as the next token, after its "{%"). */
static q4k__jnode *q4k__jbody(q4k__jctx *c, const char *const *ends, int n_ends, const char *opener) {
    q4k__jnode *first = NULL, **tail = &first;
    q4k__jenter(c);
    for (;;) {
        q4k__jtok *k = q4k__jpeek(c);
        q4k__jnode *nd;
        if (k->t == Q4K__JT_EOF) {
            if (n_ends) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "'{%% %s %%}' is not closed with '{%% %s %%}'", opener, ends[n_ends - 1]);
            break;
        }
        if (k->t == Q4K__JT_TEXT) {
            c->pos++;
            nd = q4k__jnew(c, Q4K__JN_TEXT, k->line);
            nd->s = k->s;
            nd->n = k->n;
        } else if (k->t == Q4K__JT_VAR_BEGIN) {
            c->pos++;
            nd = q4k__jnew(c, Q4K__JN_OUT, k->line);
            nd->a = q4k__jexpr(c);
            q4k__jexpect(c, Q4K__JT_VAR_END, "'}}'");
        } else if (k->t == Q4K__JT_BLOCK_BEGIN) {
            q4k__jtok *nm = &c->tok[c->pos + 1];
            int j;
            for (j = 0; j < n_ends; j++)
                if (q4k__jis_name(nm, ends[j])) {
                    c->pos++;
                    c->depth--;
                    return first;
                }
            if (nm->t == Q4K__JT_NAME && nm->n > 3 && (!memcmp(nm->s, "end", 3) || q4k__jis_name(nm, "else") || q4k__jis_name(nm, "elif")))
                q4k__jfail(c, Q4K_ERR_UNSUPPORTED, nm->line, "unexpected '{%% %.*s %%}'", (int)(nm->n < 40 ? nm->n : 40), nm->s);
            c->pos++;
            nd = q4k__jstmt(c);
        } else {
            char b[48];
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, k->line, "unexpected %s", q4k__jtok_desc(k, b));
        }
        *tail = nd;
        tail = &nd->next;
    }
    c->depth--;
    return first;
}

/* ---- values ---- */

static q4k__jv q4k__jv_undef(const char *name, size_t n) {
    q4k__jv v;
    memset(&v, 0, sizeof v);
    v.k = Q4K__JV_UNDEF;
    v.s = name;
    v.n = n;
    return v;
}
static q4k__jv q4k__jv_none(void) { q4k__jv v; memset(&v, 0, sizeof v); v.k = Q4K__JV_NONE; return v; }
static q4k__jv q4k__jv_bool(int b) { q4k__jv v; memset(&v, 0, sizeof v); v.k = Q4K__JV_BOOL; v.i = b != 0; return v; }
static q4k__jv q4k__jv_int(int64_t i) { q4k__jv v; memset(&v, 0, sizeof v); v.k = Q4K__JV_INT; v.i = i; return v; }
static q4k__jv q4k__jv_float(double f) { q4k__jv v; memset(&v, 0, sizeof v); v.k = Q4K__JV_FLOAT; v.f = f; return v; }
static q4k__jv q4k__jv_str(const char *s, size_t n) { q4k__jv v; memset(&v, 0, sizeof v); v.k = Q4K__JV_STR; v.s = s; v.n = n; return v; }

static q4k__jv q4k__jv_obj(q4k__jctx *c, int kind, int64_t cap) {
    q4k__jv v;
    memset(&v, 0, sizeof v);
    v.k = kind;
    v.o = (q4k__jobj *)q4k__jalloc(c, sizeof *v.o);
    v.o->cap = cap > 0 ? cap : 4;
    v.o->v = (q4k__jv *)q4k__jalloc(c, (size_t)v.o->cap * sizeof(q4k__jv));
    if (kind != Q4K__JV_LIST) v.o->key = (q4k__jv *)q4k__jalloc(c, (size_t)v.o->cap * sizeof(q4k__jv));
    return v;
}

static void q4k__jobj_grow(q4k__jctx *c, q4k__jobj *o) {
    if (o->n == o->cap) {
        int64_t cap = 2 * o->cap;
        q4k__jv *nv = (q4k__jv *)q4k__jalloc(c, (size_t)cap * sizeof *nv);
        memcpy(nv, o->v, (size_t)o->n * sizeof *nv);
        o->v = nv;
        if (o->key) {
            q4k__jv *nk = (q4k__jv *)q4k__jalloc(c, (size_t)cap * sizeof *nk);
            memcpy(nk, o->key, (size_t)o->n * sizeof *nk);
            o->key = nk;
        }
        o->cap = cap;
    }
}

static void q4k__jlist_add(q4k__jctx *c, q4k__jv list, q4k__jv v) {
    q4k__jobj_grow(c, list.o);
    list.o->v[list.o->n++] = v;
}

static int64_t q4k__jdict_find(const q4k__jobj *o, const char *k, size_t n) {
    int64_t i;
    for (i = 0; i < o->n; i++)
        if (o->key[i].n == n && (!n || !memcmp(o->key[i].s, k, n))) return i;
    return -1;
}

static void q4k__jdict_set(q4k__jctx *c, q4k__jv d, const char *k, size_t n, q4k__jv v) {
    int64_t i = q4k__jdict_find(d.o, k, n);
    if (i >= 0) {
        d.o->v[i] = v;
        return;
    }
    q4k__jobj_grow(c, d.o);
    d.o->key[d.o->n] = q4k__jv_str(k, n);
    d.o->v[d.o->n++] = v;
}

static const char *q4k__jkind_name(int k) {
    switch (k) {
    case Q4K__JV_UNDEF: return "undefined";
    case Q4K__JV_NONE: return "none";
    case Q4K__JV_BOOL: return "bool";
    case Q4K__JV_INT: return "int";
    case Q4K__JV_FLOAT: return "float";
    case Q4K__JV_STR: return "string";
    case Q4K__JV_LIST: return "list";
    case Q4K__JV_DICT: return "dict";
    case Q4K__JV_NS: return "namespace";
    default: return "function";
    }
}

static int q4k__jtruthy(q4k__jv v) {
    switch (v.k) {
    case Q4K__JV_UNDEF: case Q4K__JV_NONE: return 0;
    case Q4K__JV_BOOL: case Q4K__JV_INT: return v.i != 0;
    case Q4K__JV_FLOAT: return v.f != 0.0;
    case Q4K__JV_STR: return v.n != 0;
    case Q4K__JV_LIST: case Q4K__JV_DICT: return v.o->n != 0;
    default: return 1;
    }
}

static int q4k__jnumeric(q4k__jv v) { return v.k == Q4K__JV_BOOL || v.k == Q4K__JV_INT || v.k == Q4K__JV_FLOAT; }
static double q4k__jnum(q4k__jv v) { return v.k == Q4K__JV_FLOAT ? v.f : (double)v.i; }

static int q4k__jeq(q4k__jv a, q4k__jv b) {
    int64_t i;
    if (q4k__jnumeric(a) && q4k__jnumeric(b)) {
        if (a.k != Q4K__JV_FLOAT && b.k != Q4K__JV_FLOAT) return a.i == b.i;
        return q4k__jnum(a) == q4k__jnum(b);
    }
    if (a.k != b.k) return 0;
    switch (a.k) {
    case Q4K__JV_UNDEF: case Q4K__JV_NONE: return 1;
    case Q4K__JV_STR: return a.n == b.n && (!a.n || !memcmp(a.s, b.s, a.n));
    case Q4K__JV_LIST:
        if (a.o->n != b.o->n) return 0;
        for (i = 0; i < a.o->n; i++)
            if (!q4k__jeq(a.o->v[i], b.o->v[i])) return 0;
        return 1;
    case Q4K__JV_DICT:
        if (a.o->n != b.o->n) return 0;
        for (i = 0; i < a.o->n; i++) {
            int64_t j = q4k__jdict_find(b.o, a.o->key[i].s, a.o->key[i].n);
            if (j < 0 || !q4k__jeq(a.o->v[i], b.o->v[j])) return 0;
        }
        return 1;
    default: return a.o == b.o && a.i == b.i;
    }
}

/* ---- output and string conversion ---- */

typedef struct q4k__jsb { /* a string being built in the arena */
    char *p;
    size_t n, cap;
} q4k__jsb;

static void q4k__jsb_add(q4k__jctx *c, q4k__jsb *b, const char *s, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 16;
        char *p;
        if (cap > Q4K__J_MAX_MEM) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, 0, "a string grows past %u MiB", (unsigned)(Q4K__J_MAX_MEM >> 20));
        p = (char *)q4k__jalloc(c, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void q4k__jsb_cstr(q4k__jctx *c, q4k__jsb *b, const char *s) { q4k__jsb_add(c, b, s, strlen(s)); }

/* Python's repr of a float: the shortest %g form that reads back exactly */
static void q4k__jfloat_str(double f, char buf[40]) {
    int p;
    if (f != f) { strcpy(buf, "nan"); return; }
    if (f - f != 0.0) { strcpy(buf, f > 0 ? "inf" : "-inf"); return; }
    for (p = 1; p <= 17; p++) {
        snprintf(buf, 40, "%.*g", p, f);
        if (strtod(buf, NULL) == f) break;
    }
    {
        /* Python writes exponents with at least two digits, and 1e16 as 1e+16,
           and fixed notation up to 1e16 */
        char *e = strchr(buf, 'e');
        if (e) {
            int ex = atoi(e + 1);
            if (ex >= -4 && ex < 16) {
                snprintf(buf, 40, "%.*f", ex < 0 ? p - 1 - ex : (p - 1 - ex > 0 ? p - 1 - ex : 0), f);
            }
        }
        if (!strchr(buf, '.') && !strchr(buf, 'e') && !strchr(buf, 'n') && !strchr(buf, 'i')) strcat(buf, ".0");
    }
}

static void q4k__jrepr(q4k__jctx *c, q4k__jsb *b, q4k__jv v);

static void q4k__jstr_into(q4k__jctx *c, q4k__jsb *b, q4k__jv v) {
    char buf[40];
    switch (v.k) {
    case Q4K__JV_UNDEF: return;
    case Q4K__JV_NONE: q4k__jsb_cstr(c, b, "None"); return;
    case Q4K__JV_BOOL: q4k__jsb_cstr(c, b, v.i ? "True" : "False"); return;
    case Q4K__JV_INT: snprintf(buf, sizeof buf, "%lld", (long long)v.i); q4k__jsb_cstr(c, b, buf); return;
    case Q4K__JV_FLOAT: q4k__jfloat_str(v.f, buf); q4k__jsb_cstr(c, b, buf); return;
    case Q4K__JV_STR: q4k__jsb_add(c, b, v.s, v.n); return;
    case Q4K__JV_LIST: case Q4K__JV_DICT: q4k__jrepr(c, b, v); return;
    default: q4k__jfail(c, Q4K_ERR_UNSUPPORTED, 0, "printing a %s is outside q4k's Jinja subset", q4k__jkind_name(v.k));
    }
}

/* Python's repr for strings, lists and dicts (what {{ list }} prints) */
static void q4k__jrepr(q4k__jctx *c, q4k__jsb *b, q4k__jv v) {
    int64_t i;
    if (v.k == Q4K__JV_STR) {
        char q = memchr(v.s, '\'', v.n) && !memchr(v.s, '"', v.n) ? '"' : '\'';
        size_t j;
        q4k__jsb_add(c, b, &q, 1);
        for (j = 0; j < v.n; j++) {
            unsigned char ch = (unsigned char)v.s[j];
            char e[8];
            if (ch == '\\' || ch == (unsigned char)q) { e[0] = '\\'; e[1] = (char)ch; q4k__jsb_add(c, b, e, 2); }
            else if (ch == '\n') q4k__jsb_cstr(c, b, "\\n");
            else if (ch == '\r') q4k__jsb_cstr(c, b, "\\r");
            else if (ch == '\t') q4k__jsb_cstr(c, b, "\\t");
            else if (ch < 0x20 || ch == 0x7F) { snprintf(e, sizeof e, "\\x%02x", ch); q4k__jsb_cstr(c, b, e); }
            else q4k__jsb_add(c, b, (const char *)&v.s[j], 1);
        }
        q4k__jsb_add(c, b, &q, 1);
    } else if (v.k == Q4K__JV_LIST) {
        q4k__jsb_cstr(c, b, "[");
        for (i = 0; i < v.o->n; i++) {
            if (i) q4k__jsb_cstr(c, b, ", ");
            q4k__jrepr(c, b, v.o->v[i]);
        }
        q4k__jsb_cstr(c, b, "]");
    } else if (v.k == Q4K__JV_DICT) {
        q4k__jsb_cstr(c, b, "{");
        for (i = 0; i < v.o->n; i++) {
            if (i) q4k__jsb_cstr(c, b, ", ");
            q4k__jrepr(c, b, v.o->key[i]);
            q4k__jsb_cstr(c, b, ": ");
            q4k__jrepr(c, b, v.o->v[i]);
        }
        q4k__jsb_cstr(c, b, "}");
    } else if (v.k == Q4K__JV_UNDEF) {
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, 0, "printing an undefined value inside a list");
    } else {
        q4k__jstr_into(c, b, v);
    }
}

static q4k__jv q4k__jto_str(q4k__jctx *c, q4k__jv v) {
    q4k__jsb b;
    if (v.k == Q4K__JV_STR) return v;
    memset(&b, 0, sizeof b);
    q4k__jstr_into(c, &b, v);
    return q4k__jv_str(b.p ? b.p : "", b.n);
}

static void q4k__jemit(q4k__jctx *c, const char *s, size_t n) {
    if (!n) return;
    if (c->out_len + n > c->out_max)
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, 0, "the rendered prompt is longer than %llu bytes", (unsigned long long)c->out_max);
    if (c->out_len + n + 1 > c->out_cap) {
        size_t cap = (c->out_len + n + 1) * 2;
        char *p = (char *)Q4K_REALLOC(c->out, cap);
        if (!p) q4k__jfail(c, Q4K_ERR_OUT_OF_MEMORY, 0, "out of memory for the rendered prompt");
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

/* ---- JSON (transformers' tojson: json.dumps with ensure_ascii=False) ---- */

static void q4k__jjson(q4k__jctx *c, q4k__jsb *b, q4k__jv v, int64_t indent, int level) {
    int64_t i;
    char buf[40];
    switch (v.k) {
    case Q4K__JV_NONE: q4k__jsb_cstr(c, b, "null"); return;
    case Q4K__JV_BOOL: q4k__jsb_cstr(c, b, v.i ? "true" : "false"); return;
    case Q4K__JV_INT: case Q4K__JV_FLOAT: q4k__jstr_into(c, b, v); return;
    case Q4K__JV_STR: {
        size_t j;
        q4k__jsb_cstr(c, b, "\"");
        for (j = 0; j < v.n; j++) {
            unsigned char ch = (unsigned char)v.s[j];
            if (ch == '"') q4k__jsb_cstr(c, b, "\\\"");
            else if (ch == '\\') q4k__jsb_cstr(c, b, "\\\\");
            else if (ch == '\n') q4k__jsb_cstr(c, b, "\\n");
            else if (ch == '\r') q4k__jsb_cstr(c, b, "\\r");
            else if (ch == '\t') q4k__jsb_cstr(c, b, "\\t");
            else if (ch == '\b') q4k__jsb_cstr(c, b, "\\b");
            else if (ch == '\f') q4k__jsb_cstr(c, b, "\\f");
            else if (ch < 0x20) { snprintf(buf, sizeof buf, "\\u%04x", ch); q4k__jsb_cstr(c, b, buf); }
            else q4k__jsb_add(c, b, &v.s[j], 1);
        }
        q4k__jsb_cstr(c, b, "\"");
        return;
    }
    case Q4K__JV_LIST: case Q4K__JV_DICT:
        if (level > Q4K__J_MAX_DEPTH) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, 0, "tojson: nested too deep");
        q4k__jsb_cstr(c, b, v.k == Q4K__JV_LIST ? "[" : "{");
        for (i = 0; i < v.o->n; i++) {
            if (i) q4k__jsb_cstr(c, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                int64_t s;
                q4k__jsb_cstr(c, b, "\n");
                for (s = 0; s < indent * (level + 1); s++) q4k__jsb_cstr(c, b, " ");
            }
            if (v.k == Q4K__JV_DICT) {
                q4k__jjson(c, b, v.o->key[i], indent, level + 1);
                q4k__jsb_cstr(c, b, ": ");
            }
            q4k__jjson(c, b, v.o->v[i], indent, level + 1);
        }
        if (indent >= 0 && v.o->n) {
            int64_t s;
            q4k__jsb_cstr(c, b, "\n");
            for (s = 0; s < indent * level; s++) q4k__jsb_cstr(c, b, " ");
        }
        q4k__jsb_cstr(c, b, v.k == Q4K__JV_LIST ? "]" : "}");
        return;
    default: q4k__jfail(c, Q4K_ERR_UNSUPPORTED, 0, "tojson: a %s is not JSON", q4k__jkind_name(v.k));
    }
}

/* ---- strings, by code point as Python indexes them ---- */

static size_t q4k__jcp_len(const char *s, size_t n, size_t i) {
    unsigned char b = (unsigned char)s[i];
    size_t l = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    return i + l <= n ? l : n - i;
}

static int64_t q4k__jcp_count(const char *s, size_t n) {
    size_t i = 0;
    int64_t k = 0;
    while (i < n) { i += q4k__jcp_len(s, n, i); k++; }
    return k;
}

/* byte offset of code point index cp (cp <= count) */
static size_t q4k__jcp_off(const char *s, size_t n, int64_t cp) {
    size_t i = 0;
    while (cp-- > 0 && i < n) i += q4k__jcp_len(s, n, i);
    return i;
}

/* Python's str.isspace for the code point at s[i]; returns its byte length or 0 */
static size_t q4k__jspace_at(const char *s, size_t n, size_t i) {
    unsigned char b = (unsigned char)s[i];
    uint32_t cp;
    size_t l = q4k__jcp_len(s, n, i);
    if (b < 0x80) return ((b >= 9 && b <= 13) || (b >= 0x1C && b <= 0x20)) ? 1 : 0;
    if (l == 2) cp = (uint32_t)(b & 0x1F) << 6 | ((unsigned char)s[i + 1] & 0x3F);
    else if (l == 3) cp = (uint32_t)(b & 0x0F) << 12 | (uint32_t)((unsigned char)s[i + 1] & 0x3F) << 6 | ((unsigned char)s[i + 2] & 0x3F);
    else return 0;
    return (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
            cp == 0x202F || cp == 0x205F || cp == 0x3000) ? l : 0;
}

/* strip: which 1 left, 2 right, 3 both; chars NULL: white space */
static q4k__jv q4k__jstrip(q4k__jv s, int which, const q4k__jv *chars) {
    size_t b = 0, e = s.n;
    if (chars && chars->k == Q4K__JV_STR) {
        /* a set of code points; the templates use ASCII sets */
        if (which & 1) while (b < e && memchr(chars->s, s.s[b], chars->n)) b++;
        if (which & 2) while (e > b && memchr(chars->s, s.s[e - 1], chars->n)) e--;
        return q4k__jv_str(s.s + b, e - b);
    }
    if (which & 1) {
        size_t l;
        while (b < e && (l = q4k__jspace_at(s.s, e, b)) > 0) b += l;
    }
    if (which & 2) {
        while (e > b) {
            size_t st = e - 1, l;
            while (st > b && ((unsigned char)s.s[st] & 0xC0) == 0x80) st--;
            l = q4k__jspace_at(s.s, e, st);
            if (!l || st + l != e) break;
            e = st;
        }
    }
    return q4k__jv_str(s.s + b, e - b);
}

static const char *q4k__jmemmem(const char *h, size_t hn, const char *nd, size_t nn) {
    size_t i;
    if (!nn) return h;
    for (i = 0; i + nn <= hn; i++)
        if (h[i] == nd[0] && !memcmp(h + i, nd, nn)) return h + i;
    return NULL;
}

static q4k__jv q4k__jsplit(q4k__jctx *c, q4k__jv s, const q4k__jv *sep, int64_t maxsplit, int line) {
    q4k__jv out = q4k__jv_obj(c, Q4K__JV_LIST, 4);
    size_t i = 0;
    if (!sep || sep->k == Q4K__JV_NONE) { /* runs of white space; no empty pieces */
        for (;;) {
            size_t st, l;
            while (i < s.n && (l = q4k__jspace_at(s.s, s.n, i)) > 0) i += l;
            if (i >= s.n) break;
            if (maxsplit >= 0 && out.o->n >= maxsplit) { /* the rest, trailing space and all */
                q4k__jlist_add(c, out, q4k__jv_str(s.s + i, s.n - i));
                break;
            }
            st = i;
            while (i < s.n && !q4k__jspace_at(s.s, s.n, i)) i += q4k__jcp_len(s.s, s.n, i);
            q4k__jlist_add(c, out, q4k__jv_str(s.s + st, i - st));
        }
        return out;
    }
    if (sep->k != Q4K__JV_STR) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "split: the separator is a %s", q4k__jkind_name(sep->k));
    if (!sep->n) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "split: empty separator");
    for (;;) {
        const char *f = maxsplit >= 0 && out.o->n >= maxsplit ? NULL : q4k__jmemmem(s.s + i, s.n - i, sep->s, sep->n);
        if (!f) {
            q4k__jlist_add(c, out, q4k__jv_str(s.s + i, s.n - i));
            return out;
        }
        q4k__jlist_add(c, out, q4k__jv_str(s.s + i, (size_t)(f - (s.s + i))));
        i = (size_t)(f - s.s) + sep->n;
    }
}

static q4k__jv q4k__jreplace(q4k__jctx *c, q4k__jv s, q4k__jv old, q4k__jv nw, int64_t count) {
    q4k__jsb b;
    size_t i = 0;
    int64_t done = 0;
    memset(&b, 0, sizeof b);
    if (!old.n) { /* Python puts `new` between the characters and at both ends */
        while (count < 0 || done < count) {
            q4k__jsb_add(c, &b, nw.s, nw.n);
            done++;
            if (i >= s.n) break;
            {
                size_t l = q4k__jcp_len(s.s, s.n, i);
                q4k__jsb_add(c, &b, s.s + i, l);
                i += l;
            }
        }
        q4k__jsb_add(c, &b, s.s + i, s.n - i);
        return q4k__jv_str(b.p ? b.p : "", b.n);
    }
    for (;;) {
        const char *f = count >= 0 && done >= count ? NULL : q4k__jmemmem(s.s + i, s.n - i, old.s, old.n);
        if (!f) break;
        q4k__jsb_add(c, &b, s.s + i, (size_t)(f - (s.s + i)));
        q4k__jsb_add(c, &b, nw.s, nw.n);
        i = (size_t)(f - s.s) + old.n;
        done++;
    }
    q4k__jsb_add(c, &b, s.s + i, s.n - i);
    return q4k__jv_str(b.p ? b.p : "", b.n);
}

/* ASCII case mapping (mode 0 lower, 1 upper, 2 capitalize, 3 title) */
static q4k__jv q4k__jcase(q4k__jctx *c, q4k__jv s, int mode) {
    char *d = q4k__jstrdup(c, s.s, s.n);
    size_t i;
    int prev_alpha = 0;
    for (i = 0; i < s.n; i++) {
        char ch = d[i];
        int up = mode == 1 || (mode == 2 && i == 0) || (mode == 3 && !prev_alpha);
        if (up && ch >= 'a' && ch <= 'z') d[i] = (char)(ch - 32);
        if (!up && ch >= 'A' && ch <= 'Z') d[i] = (char)(ch + 32);
        prev_alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
    }
    return q4k__jv_str(d, s.n);
}

/* ---- strftime_now ---- */

static void q4k__jcivil(int64_t days, int64_t *y, int *m, int *d) {
    /* days since 1970-01-01 to a proleptic Gregorian date, by 400-year eras */
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static q4k__jv q4k__jstrftime(q4k__jctx *c, q4k__jv fmt, int line) {
    static const char *const mon[] = {"January", "February", "March", "April", "May", "June", "July",
                                      "August", "September", "October", "November", "December"};
    static const char *const wd[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
    int64_t t = c->now, days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400), sec = t - days * 86400, y, yday;
    int m, d, w = (int)(((days % 7) + 7 + 4) % 7);
    q4k__jsb b;
    size_t i;
    char buf[48];
    q4k__jcivil(days, &y, &m, &d);
    {
        static const int cum[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        yday = cum[m - 1] + d + (leap && m > 2);
    }
    memset(&b, 0, sizeof b);
    for (i = 0; i < fmt.n; i++) {
        char f;
        if (fmt.s[i] != '%' || i + 1 >= fmt.n) { q4k__jsb_add(c, &b, fmt.s + i, 1); continue; }
        f = fmt.s[++i];
        buf[0] = 0;
        switch (f) {
        case 'd': snprintf(buf, sizeof buf, "%02d", d); break;
        case 'e': snprintf(buf, sizeof buf, "%2d", d); break;
        case 'm': snprintf(buf, sizeof buf, "%02d", m); break;
        case 'Y': snprintf(buf, sizeof buf, "%lld", (long long)y); break;
        case 'y': snprintf(buf, sizeof buf, "%02d", (int)(((y % 100) + 100) % 100)); break;
        case 'b': snprintf(buf, sizeof buf, "%.3s", mon[m - 1]); break;
        case 'B': snprintf(buf, sizeof buf, "%s", mon[m - 1]); break;
        case 'a': snprintf(buf, sizeof buf, "%.3s", wd[w]); break;
        case 'A': snprintf(buf, sizeof buf, "%s", wd[w]); break;
        case 'H': snprintf(buf, sizeof buf, "%02d", (int)(sec / 3600)); break;
        case 'I': snprintf(buf, sizeof buf, "%02d", (int)((sec / 3600 + 11) % 12 + 1)); break;
        case 'p': snprintf(buf, sizeof buf, "%s", sec < 43200 ? "AM" : "PM"); break;
        case 'M': snprintf(buf, sizeof buf, "%02d", (int)(sec / 60 % 60)); break;
        case 'S': snprintf(buf, sizeof buf, "%02d", (int)(sec % 60)); break;
        case 'j': snprintf(buf, sizeof buf, "%03d", (int)yday); break;
        case 'w': snprintf(buf, sizeof buf, "%d", w); break;
        case '%': strcpy(buf, "%"); break;
        default: q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "strftime_now: %%%c is outside q4k's subset", f);
        }
        q4k__jsb_cstr(c, &b, buf);
    }
    return q4k__jv_str(b.p ? b.p : "", b.n);
}

/* ---- evaluation ---- */

static q4k__jv q4k__jeval(q4k__jctx *c, const q4k__jnode *e);

static void q4k__jstep(q4k__jctx *c, int line) {
    if (++c->steps > Q4K__J_MAX_STEPS)
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "rendering takes more than %d steps", Q4K__J_MAX_STEPS);
}

static q4k__jv q4k__jlookup(q4k__jctx *c, const char *s, size_t n) {
    int64_t i;
    for (i = c->nvar - 1; i >= 0; i--)
        if (c->var[i].n == n && !memcmp(c->var[i].name, s, n)) return c->var[i].v;
    return q4k__jv_undef(s, n);
}

static void q4k__jassign(q4k__jctx *c, const char *s, size_t n, q4k__jv v) {
    int64_t i;
    for (i = c->nvar - 1; i >= c->frame; i--)
        if (c->var[i].n == n && !memcmp(c->var[i].name, s, n)) {
            c->var[i].v = v;
            return;
        }
    if (c->nvar == c->capvar) {
        int64_t cap = c->capvar ? 2 * c->capvar : 32;
        q4k__jvar *nv = (q4k__jvar *)q4k__jalloc(c, (size_t)cap * sizeof *nv);
        if (c->nvar) memcpy(nv, c->var, (size_t)c->nvar * sizeof *nv);
        c->var = nv;
        c->capvar = cap;
    }
    c->var[c->nvar].name = s;
    c->var[c->nvar].n = n;
    c->var[c->nvar].v = v;
    c->nvar++;
}

typedef struct q4k__jargv {
    int n;
    q4k__jv v[Q4K__J_MAX_ARGS];
    const char *kw[Q4K__J_MAX_ARGS]; /* NULL: positional */
    size_t kwn[Q4K__J_MAX_ARGS];
} q4k__jargv;

static void q4k__jeval_args(q4k__jctx *c, const q4k__jnode *a, q4k__jargv *out, int line) {
    out->n = 0;
    for (; a; a = a->next) {
        if (out->n == Q4K__J_MAX_ARGS) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "more than %d arguments", Q4K__J_MAX_ARGS);
        out->v[out->n] = q4k__jeval(c, a->a);
        out->kw[out->n] = a->s;
        out->kwn[out->n] = a->n;
        out->n++;
    }
}

/* argument i by position or by name; NULL when not given */
static const q4k__jv *q4k__jarg(const q4k__jargv *a, int i, const char *name) {
    int j, pos = 0;
    for (j = 0; j < a->n; j++) {
        if (a->kw[j]) {
            if (name && q4k__jlen_is(a->kw[j], a->kwn[j], name)) return &a->v[j];
        } else if (pos++ == i) {
            return &a->v[j];
        }
    }
    return NULL;
}

static void q4k__jargs_max(q4k__jctx *c, const q4k__jargv *a, int max, const char *what, int line) {
    if (a->n > max) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "%s takes at most %d arguments, not %d", what, max, a->n);
}

static q4k__jv q4k__jwant_str(q4k__jctx *c, const q4k__jv *v, const char *what, int line) {
    if (!v || v->k != Q4K__JV_STR)
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "%s wants a string, not %s", what, v ? q4k__jkind_name(v->k) : "nothing");
    return *v;
}

static int64_t q4k__jwant_int(q4k__jctx *c, const q4k__jv *v, const char *what, int line) {
    if (!v || (v->k != Q4K__JV_INT && v->k != Q4K__JV_BOOL))
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "%s wants an integer, not %s", what, v ? q4k__jkind_name(v->k) : "nothing");
    return v->i;
}

static void q4k__jundef_fail(q4k__jctx *c, q4k__jv v, const char *doing, int line) {
    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "'%.*s' is undefined (%s)", (int)(v.n < 60 ? v.n : 60), v.s ? v.s : "value", doing);
}

/* items to iterate: lists, dict keys, string characters; undefined: none */
static q4k__jv q4k__jiter(q4k__jctx *c, q4k__jv v, int line) {
    q4k__jv out;
    int64_t i;
    switch (v.k) {
    case Q4K__JV_LIST: return v;
    case Q4K__JV_UNDEF: return q4k__jv_obj(c, Q4K__JV_LIST, 1);
    case Q4K__JV_DICT:
        out = q4k__jv_obj(c, Q4K__JV_LIST, v.o->n);
        for (i = 0; i < v.o->n; i++) q4k__jlist_add(c, out, v.o->key[i]);
        return out;
    case Q4K__JV_STR: {
        size_t j = 0;
        out = q4k__jv_obj(c, Q4K__JV_LIST, 8);
        while (j < v.n) {
            size_t l = q4k__jcp_len(v.s, v.n, j);
            q4k__jlist_add(c, out, q4k__jv_str(v.s + j, l));
            j += l;
        }
        return out;
    }
    default: q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "a %s is not iterable", q4k__jkind_name(v.k));
    }
}

static q4k__jv q4k__jlength(q4k__jctx *c, q4k__jv v, int line) {
    switch (v.k) {
    case Q4K__JV_STR: return q4k__jv_int(q4k__jcp_count(v.s, v.n));
    case Q4K__JV_LIST: case Q4K__JV_DICT: return q4k__jv_int(v.o->n);
    case Q4K__JV_UNDEF: return q4k__jv_int(0);
    default: q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "a %s has no length", q4k__jkind_name(v.k));
    }
}

static q4k__jv q4k__jgetattr(q4k__jctx *c, q4k__jv o, const char *s, size_t n, int line) {
    if (o.k == Q4K__JV_DICT || o.k == Q4K__JV_NS) {
        int64_t i = q4k__jdict_find(o.o, s, n);
        return i >= 0 ? o.o->v[i] : q4k__jv_undef(s, n);
    }
    if (o.k == Q4K__JV_UNDEF) q4k__jundef_fail(c, o, "reading an attribute of it", line);
    return q4k__jv_undef(s, n);
}

/* Python's slice indices for a sequence of length len */
static void q4k__jslice_idx(q4k__jctx *c, const q4k__jv *a, const q4k__jv *b, const q4k__jv *st, int64_t len,
                            int64_t *start, int64_t *stop, int64_t *step, int line) {
    int64_t s = st && st->k != Q4K__JV_NONE ? q4k__jwant_int(c, st, "a slice step", line) : 1;
    if (s == 0) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "slice step cannot be zero");
    *step = s;
    if (!a || a->k == Q4K__JV_NONE) *start = s > 0 ? 0 : len - 1;
    else {
        int64_t v = q4k__jwant_int(c, a, "a slice start", line);
        if (v < 0) v += len;
        if (v < 0) v = s > 0 ? 0 : -1;
        if (v > len) v = s > 0 ? len : len - 1;
        if (v == len && s < 0) v = len - 1;
        *start = v;
    }
    if (!b || b->k == Q4K__JV_NONE) *stop = s > 0 ? len : -1;
    else {
        int64_t v = q4k__jwant_int(c, b, "a slice stop", line);
        if (v < 0) v += len;
        if (v < 0) v = s > 0 ? 0 : -1;
        if (v > len) v = len;
        *stop = v;
    }
}

static q4k__jv q4k__jslice(q4k__jctx *c, q4k__jv o, const q4k__jv *a, const q4k__jv *b, const q4k__jv *st, int line) {
    int64_t start, stop, step, i, len;
    q4k__jv out;
    if (o.k == Q4K__JV_LIST) {
        len = o.o->n;
        q4k__jslice_idx(c, a, b, st, len, &start, &stop, &step, line);
        out = q4k__jv_obj(c, Q4K__JV_LIST, len);
        for (i = start; step > 0 ? i < stop : i > stop; i += step) q4k__jlist_add(c, out, o.o->v[i]);
        return out;
    }
    if (o.k == Q4K__JV_STR) {
        q4k__jsb sb;
        len = q4k__jcp_count(o.s, o.n);
        q4k__jslice_idx(c, a, b, st, len, &start, &stop, &step, line);
        memset(&sb, 0, sizeof sb);
        if (step == 1) {
            size_t bo = q4k__jcp_off(o.s, o.n, start), eo = stop > start ? q4k__jcp_off(o.s, o.n, stop) : bo;
            return q4k__jv_str(o.s + bo, eo - bo);
        }
        for (i = start; step > 0 ? i < stop : i > stop; i += step) {
            size_t off = q4k__jcp_off(o.s, o.n, i);
            q4k__jsb_add(c, &sb, o.s + off, q4k__jcp_len(o.s, o.n, off));
        }
        return q4k__jv_str(sb.p ? sb.p : "", sb.n);
    }
    if (o.k == Q4K__JV_UNDEF) q4k__jundef_fail(c, o, "slicing it", line);
    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "slicing a %s", q4k__jkind_name(o.k));
}

static q4k__jv q4k__jgetitem(q4k__jctx *c, q4k__jv o, q4k__jv k, int line) {
    if (o.k == Q4K__JV_DICT || o.k == Q4K__JV_NS) {
        if (k.k != Q4K__JV_STR) return q4k__jv_undef("item", 4);
        return q4k__jgetattr(c, o, k.s, k.n, line);
    }
    if (o.k == Q4K__JV_LIST || o.k == Q4K__JV_STR) {
        int64_t len, i;
        if (k.k == Q4K__JV_STR) return q4k__jgetattr(c, o, k.s, k.n, line);
        if (k.k != Q4K__JV_INT && k.k != Q4K__JV_BOOL)
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "an index must be an integer, not %s", q4k__jkind_name(k.k));
        len = o.k == Q4K__JV_LIST ? o.o->n : q4k__jcp_count(o.s, o.n);
        i = k.i < 0 ? k.i + len : k.i;
        if (i < 0 || i >= len) return q4k__jv_undef("item", 4);
        if (o.k == Q4K__JV_LIST) return o.o->v[i];
        {
            size_t off = q4k__jcp_off(o.s, o.n, i);
            return q4k__jv_str(o.s + off, q4k__jcp_len(o.s, o.n, off));
        }
    }
    if (o.k == Q4K__JV_UNDEF) q4k__jundef_fail(c, o, "indexing it", line);
    return q4k__jv_undef("item", 4);
}

static int q4k__jcontains(q4k__jctx *c, q4k__jv item, q4k__jv seq, int line) {
    int64_t i;
    switch (seq.k) {
    case Q4K__JV_STR:
        if (item.k != Q4K__JV_STR)
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "'in <string>' needs a string on the left, not %s", q4k__jkind_name(item.k));
        return q4k__jmemmem(seq.s, seq.n, item.s, item.n) != NULL;
    case Q4K__JV_LIST:
        for (i = 0; i < seq.o->n; i++)
            if (q4k__jeq(item, seq.o->v[i])) return 1;
        return 0;
    case Q4K__JV_DICT: case Q4K__JV_NS:
        return item.k == Q4K__JV_STR && q4k__jdict_find(seq.o, item.s, item.n) >= 0;
    case Q4K__JV_UNDEF: return 0;
    default: q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "'in' a %s", q4k__jkind_name(seq.k));
    }
}

static int q4k__jcompare_lt(q4k__jctx *c, q4k__jv a, q4k__jv b, int line) {
    if (q4k__jnumeric(a) && q4k__jnumeric(b)) {
        if (a.k != Q4K__JV_FLOAT && b.k != Q4K__JV_FLOAT) return a.i < b.i;
        return q4k__jnum(a) < q4k__jnum(b);
    }
    if (a.k == Q4K__JV_STR && b.k == Q4K__JV_STR) {
        size_t m = a.n < b.n ? a.n : b.n;
        int r = m ? memcmp(a.s, b.s, m) : 0;
        return r < 0 || (r == 0 && a.n < b.n);
    }
    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "comparing a %s with a %s", q4k__jkind_name(a.k), q4k__jkind_name(b.k));
}

static q4k__jv q4k__jarith(q4k__jctx *c, int op, q4k__jv a, q4k__jv b, int line) {
    if (a.k == Q4K__JV_UNDEF) q4k__jundef_fail(c, a, "in arithmetic", line);
    if (b.k == Q4K__JV_UNDEF) q4k__jundef_fail(c, b, "in arithmetic", line);
    if (op == Q4K__JO_ADD && a.k == Q4K__JV_STR && b.k == Q4K__JV_STR) {
        char *d = (char *)q4k__jalloc(c, a.n + b.n + 1);
        if (a.n) memcpy(d, a.s, a.n);
        if (b.n) memcpy(d + a.n, b.s, b.n);
        return q4k__jv_str(d, a.n + b.n);
    }
    if (op == Q4K__JO_ADD && a.k == Q4K__JV_LIST && b.k == Q4K__JV_LIST) {
        q4k__jv out = q4k__jv_obj(c, Q4K__JV_LIST, a.o->n + b.o->n);
        int64_t i;
        for (i = 0; i < a.o->n; i++) q4k__jlist_add(c, out, a.o->v[i]);
        for (i = 0; i < b.o->n; i++) q4k__jlist_add(c, out, b.o->v[i]);
        return out;
    }
    if (op == Q4K__JO_MUL && ((a.k == Q4K__JV_STR && b.k == Q4K__JV_INT) || (a.k == Q4K__JV_INT && b.k == Q4K__JV_STR))) {
        q4k__jv s = a.k == Q4K__JV_STR ? a : b;
        int64_t times = a.k == Q4K__JV_INT ? a.i : b.i, i;
        q4k__jsb sb;
        memset(&sb, 0, sizeof sb);
        if (times > 0 && s.n && (uint64_t)times > (uint64_t)(Q4K__J_MAX_MEM / s.n))
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "string repeated %lld times", (long long)times);
        for (i = 0; i < times; i++) q4k__jsb_add(c, &sb, s.s, s.n);
        return q4k__jv_str(sb.p ? sb.p : "", sb.n);
    }
    if (!q4k__jnumeric(a) || !q4k__jnumeric(b))
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "arithmetic on a %s and a %s", q4k__jkind_name(a.k), q4k__jkind_name(b.k));
    if (a.k != Q4K__JV_FLOAT && b.k != Q4K__JV_FLOAT && op != Q4K__JO_DIV) {
        uint64_t x = (uint64_t)a.i, y = (uint64_t)b.i;
        int64_t r;
        switch (op) {
        case Q4K__JO_ADD: return q4k__jv_int((int64_t)(x + y));
        case Q4K__JO_SUB: return q4k__jv_int((int64_t)(x - y));
        case Q4K__JO_MUL: return q4k__jv_int((int64_t)(x * y));
        case Q4K__JO_FDIV: case Q4K__JO_MOD:
            if (b.i == 0) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "integer division or modulo by zero");
            if (a.i == INT64_MIN && b.i == -1) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "integer overflow");
            r = a.i % b.i;
            if (r != 0 && ((r < 0) != (b.i < 0))) r += b.i; /* Python's sign rule */
            return op == Q4K__JO_MOD ? q4k__jv_int(r) : q4k__jv_int((a.i - r) / b.i);
        case Q4K__JO_POW: {
            int64_t e = b.i, acc = 1, base = a.i;
            if (e < 0) return q4k__jv_float(pow((double)a.i, (double)b.i));
            while (e > 0) {
                if (e & 1) acc = (int64_t)((uint64_t)acc * (uint64_t)base);
                base = (int64_t)((uint64_t)base * (uint64_t)base);
                e >>= 1;
            }
            return q4k__jv_int(acc);
        }
        default: break;
        }
    }
    {
        double x = q4k__jnum(a), y = q4k__jnum(b), r;
        switch (op) {
        case Q4K__JO_ADD: return q4k__jv_float(x + y);
        case Q4K__JO_SUB: return q4k__jv_float(x - y);
        case Q4K__JO_MUL: return q4k__jv_float(x * y);
        case Q4K__JO_DIV:
            if (y == 0.0) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "division by zero");
            return q4k__jv_float(x / y);
        case Q4K__JO_FDIV: case Q4K__JO_MOD:
            if (y == 0.0) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "float modulo or division by zero");
            r = fmod(x, y);
            if (r != 0.0 && ((r < 0) != (y < 0))) r += y;
            return q4k__jv_float(op == Q4K__JO_MOD ? r : floor(x / y));
        default: return q4k__jv_float(pow(x, y));
        }
    }
}

static int q4k__jtest(q4k__jctx *c, const q4k__jnode *e, q4k__jv v) {
    const char *t = e->s;
    size_t n = e->n;
    q4k__jargv a;
    q4k__jeval_args(c, e->b, &a, e->line);
#define Q4K__JT_IS(name) q4k__jlen_is(t, n, name)
    if (Q4K__JT_IS("defined")) return v.k != Q4K__JV_UNDEF;
    if (Q4K__JT_IS("undefined")) return v.k == Q4K__JV_UNDEF;
    if (Q4K__JT_IS("none")) return v.k == Q4K__JV_NONE;
    if (Q4K__JT_IS("string")) return v.k == Q4K__JV_STR;
    if (Q4K__JT_IS("number")) return q4k__jnumeric(v);
    if (Q4K__JT_IS("integer")) return v.k == Q4K__JV_INT;
    if (Q4K__JT_IS("float")) return v.k == Q4K__JV_FLOAT;
    if (Q4K__JT_IS("boolean")) return v.k == Q4K__JV_BOOL;
    if (Q4K__JT_IS("true")) return v.k == Q4K__JV_BOOL && v.i;
    if (Q4K__JT_IS("false")) return v.k == Q4K__JV_BOOL && !v.i;
    if (Q4K__JT_IS("mapping")) return v.k == Q4K__JV_DICT;
    if (Q4K__JT_IS("iterable")) return v.k == Q4K__JV_LIST || v.k == Q4K__JV_DICT || v.k == Q4K__JV_STR || v.k == Q4K__JV_UNDEF;
    if (Q4K__JT_IS("sequence")) return v.k == Q4K__JV_LIST || v.k == Q4K__JV_DICT || v.k == Q4K__JV_STR;
    if (Q4K__JT_IS("callable")) return v.k == Q4K__JV_FUNC;
    if (Q4K__JT_IS("lower") || Q4K__JT_IS("upper")) {
        size_t i;
        if (v.k != Q4K__JV_STR) return 0;
        for (i = 0; i < v.n; i++)
            if (Q4K__JT_IS("lower") ? (v.s[i] >= 'A' && v.s[i] <= 'Z') : (v.s[i] >= 'a' && v.s[i] <= 'z')) return 0;
        return 1;
    }
    if (Q4K__JT_IS("equalto") || Q4K__JT_IS("eq") || Q4K__JT_IS("==") || Q4K__JT_IS("sameas") ||
        Q4K__JT_IS("ne") || Q4K__JT_IS("!=")) {
        const q4k__jv *o = q4k__jarg(&a, 0, NULL);
        if (!o) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "test '%.*s' needs an argument", (int)n, t);
        if (Q4K__JT_IS("sameas") && (q4k__jnumeric(v) != q4k__jnumeric(*o) || v.k != o->k)) return 0;
        return (Q4K__JT_IS("ne") || Q4K__JT_IS("!=")) ? !q4k__jeq(v, *o) : q4k__jeq(v, *o);
    }
    if (Q4K__JT_IS("in")) return q4k__jcontains(c, v, a.n ? a.v[0] : q4k__jv_undef("seq", 3), e->line);
    if (Q4K__JT_IS("odd") || Q4K__JT_IS("even") || Q4K__JT_IS("divisibleby")) {
        int64_t x = q4k__jwant_int(c, &v, "test odd/even/divisibleby", e->line), m = 2;
        if (Q4K__JT_IS("divisibleby")) m = q4k__jwant_int(c, q4k__jarg(&a, 0, "num"), "divisibleby", e->line);
        if (m == 0) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "divisibleby(0)");
        if (Q4K__JT_IS("odd")) return x % 2 != 0;
        return x % m == 0;
    }
#undef Q4K__JT_IS
    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "test '%.*s' is outside q4k's Jinja subset", (int)(n < 40 ? n : 40), t);
}

static q4k__jv q4k__jfilter(q4k__jctx *c, const q4k__jnode *e, q4k__jv v) {
    const char *f = e->s;
    size_t n = e->n;
    q4k__jargv a;
    int line = e->line;
    q4k__jeval_args(c, e->b, &a, line);
#define Q4K__JF_IS(name) q4k__jlen_is(f, n, name)
    if (Q4K__JF_IS("default") || Q4K__JF_IS("d")) {
        const q4k__jv *dv = q4k__jarg(&a, 0, "default_value"), *bo = q4k__jarg(&a, 1, "boolean");
        int use = v.k == Q4K__JV_UNDEF || (bo && q4k__jtruthy(*bo) && !q4k__jtruthy(v));
        return use ? (dv ? *dv : q4k__jv_str("", 0)) : v;
    }
    if (Q4K__JF_IS("length") || Q4K__JF_IS("count")) return q4k__jlength(c, v, line);
    if (Q4K__JF_IS("safe")) return v;
    if (Q4K__JF_IS("string")) return q4k__jto_str(c, v);
    if (Q4K__JF_IS("tojson")) {
        const q4k__jv *ind = q4k__jarg(&a, 0, "indent");
        q4k__jsb sb;
        memset(&sb, 0, sizeof sb);
        q4k__jargs_max(c, &a, 1, "tojson", line);
        q4k__jjson(c, &sb, v, ind && ind->k != Q4K__JV_NONE ? q4k__jwant_int(c, ind, "tojson(indent)", line) : -1, 0);
        return q4k__jv_str(sb.p ? sb.p : "", sb.n);
    }
    if (Q4K__JF_IS("items")) {
        q4k__jv out = q4k__jv_obj(c, Q4K__JV_LIST, 4);
        int64_t i;
        if (v.k == Q4K__JV_UNDEF) return out;
        if (v.k != Q4K__JV_DICT) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "items of a %s", q4k__jkind_name(v.k));
        for (i = 0; i < v.o->n; i++) {
            q4k__jv pair = q4k__jv_obj(c, Q4K__JV_LIST, 2);
            q4k__jlist_add(c, pair, v.o->key[i]);
            q4k__jlist_add(c, pair, v.o->v[i]);
            q4k__jlist_add(c, out, pair);
        }
        return out;
    }
    if (Q4K__JF_IS("list")) return q4k__jslice(c, q4k__jiter(c, v, line), NULL, NULL, NULL, line);
    if (Q4K__JF_IS("first") || Q4K__JF_IS("last")) {
        q4k__jv l = q4k__jiter(c, v, line);
        if (!l.o->n) return q4k__jv_undef("item", 4);
        return l.o->v[Q4K__JF_IS("first") ? 0 : l.o->n - 1];
    }
    if (Q4K__JF_IS("reverse")) {
        q4k__jv minus1 = q4k__jv_int(-1);
        if (v.k != Q4K__JV_STR) v = q4k__jiter(c, v, line);
        return q4k__jslice(c, v, NULL, NULL, &minus1, line);
    }
    if (Q4K__JF_IS("join")) {
        q4k__jv l = q4k__jiter(c, v, line), sep = q4k__jv_str("", 0);
        const q4k__jv *d = q4k__jarg(&a, 0, "d");
        q4k__jsb sb;
        int64_t i;
        if (d) sep = q4k__jwant_str(c, d, "join", line);
        memset(&sb, 0, sizeof sb);
        for (i = 0; i < l.o->n; i++) {
            if (i) q4k__jsb_add(c, &sb, sep.s, sep.n);
            q4k__jstr_into(c, &sb, l.o->v[i]);
        }
        return q4k__jv_str(sb.p ? sb.p : "", sb.n);
    }
    if (Q4K__JF_IS("int")) {
        if (v.k == Q4K__JV_INT || v.k == Q4K__JV_BOOL) return q4k__jv_int(v.i);
        if (v.k == Q4K__JV_FLOAT) return q4k__jv_int((int64_t)v.f);
        if (v.k == Q4K__JV_STR) {
            char buf[32];
            char *end;
            long long r;
            q4k__jv t = q4k__jstrip(v, 3, NULL);
            if (t.n && t.n < sizeof buf) {
                memcpy(buf, t.s, t.n);
                buf[t.n] = 0;
                r = strtoll(buf, &end, 10);
                if (!*end) return q4k__jv_int((int64_t)r);
            }
        }
        return q4k__jv_int(0);
    }
    if (Q4K__JF_IS("abs")) {
        if (v.k == Q4K__JV_FLOAT) return q4k__jv_float(fabs(v.f));
        return q4k__jv_int(q4k__jwant_int(c, &v, "abs", line) < 0 ? -v.i : v.i);
    }
    /* the rest work on strings */
    if (Q4K__JF_IS("trim") || Q4K__JF_IS("upper") || Q4K__JF_IS("lower") || Q4K__JF_IS("capitalize") ||
        Q4K__JF_IS("title") || Q4K__JF_IS("replace")) {
        q4k__jv s = q4k__jto_str(c, v);
        if (Q4K__JF_IS("trim")) {
            const q4k__jv *ch = q4k__jarg(&a, 0, "chars");
            return q4k__jstrip(s, 3, ch && ch->k != Q4K__JV_NONE ? ch : NULL);
        }
        if (Q4K__JF_IS("replace")) {
            const q4k__jv *cnt = q4k__jarg(&a, 2, "count");
            return q4k__jreplace(c, s, q4k__jwant_str(c, q4k__jarg(&a, 0, "old"), "replace", line),
                                 q4k__jwant_str(c, q4k__jarg(&a, 1, "new"), "replace", line),
                                 cnt && cnt->k != Q4K__JV_NONE ? q4k__jwant_int(c, cnt, "replace", line) : -1);
        }
        return q4k__jcase(c, s, Q4K__JF_IS("lower") ? 0 : Q4K__JF_IS("upper") ? 1 : Q4K__JF_IS("capitalize") ? 2 : 3);
    }
#undef Q4K__JF_IS
    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "filter '%.*s' is outside q4k's Jinja subset", (int)(n < 40 ? n : 40), f);
}

/* obj.name(args): the methods of Python's str and dict that templates use */
static q4k__jv q4k__jmethod(q4k__jctx *c, q4k__jv o, const q4k__jnode *callee, const q4k__jargv *a, int line) {
    const char *m = callee->s;
    size_t n = callee->n;
#define Q4K__JM_IS(name) q4k__jlen_is(m, n, name)
    if (o.k == Q4K__JV_STR) {
        if (Q4K__JM_IS("strip") || Q4K__JM_IS("lstrip") || Q4K__JM_IS("rstrip")) {
            const q4k__jv *ch = q4k__jarg(a, 0, NULL);
            q4k__jargs_max(c, a, 1, "strip", line);
            return q4k__jstrip(o, m[0] == 'l' ? 1 : m[0] == 'r' ? 2 : 3, ch && ch->k != Q4K__JV_NONE ? ch : NULL);
        }
        if (Q4K__JM_IS("split")) {
            const q4k__jv *mx = q4k__jarg(a, 1, "maxsplit");
            q4k__jargs_max(c, a, 2, "split", line);
            return q4k__jsplit(c, o, q4k__jarg(a, 0, "sep"), mx ? q4k__jwant_int(c, mx, "split(maxsplit)", line) : -1, line);
        }
        if (Q4K__JM_IS("startswith") || Q4K__JM_IS("endswith")) {
            const q4k__jv *p = q4k__jarg(a, 0, NULL);
            int64_t i, np;
            q4k__jargs_max(c, a, 1, "startswith/endswith", line);
            if (!p) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "%.*s needs an argument", (int)n, m);
            np = p->k == Q4K__JV_LIST ? p->o->n : 1;
            for (i = 0; i < np; i++) {
                q4k__jv x = q4k__jwant_str(c, p->k == Q4K__JV_LIST ? &p->o->v[i] : p, "startswith/endswith", line);
                if (x.n <= o.n && (!x.n || !memcmp(m[0] == 's' ? o.s : o.s + o.n - x.n, x.s, x.n))) return q4k__jv_bool(1);
            }
            return q4k__jv_bool(0);
        }
        if (Q4K__JM_IS("replace")) {
            const q4k__jv *cnt = q4k__jarg(a, 2, NULL);
            q4k__jargs_max(c, a, 3, "replace", line);
            return q4k__jreplace(c, o, q4k__jwant_str(c, q4k__jarg(a, 0, NULL), "replace", line),
                                 q4k__jwant_str(c, q4k__jarg(a, 1, NULL), "replace", line),
                                 cnt ? q4k__jwant_int(c, cnt, "replace", line) : -1);
        }
        if (Q4K__JM_IS("upper") || Q4K__JM_IS("lower") || Q4K__JM_IS("capitalize") || Q4K__JM_IS("title")) {
            q4k__jargs_max(c, a, 0, "case methods", line);
            return q4k__jcase(c, o, Q4K__JM_IS("lower") ? 0 : Q4K__JM_IS("upper") ? 1 : Q4K__JM_IS("capitalize") ? 2 : 3);
        }
        if (Q4K__JM_IS("find")) {
            q4k__jv x = q4k__jwant_str(c, q4k__jarg(a, 0, NULL), "find", line);
            const char *f = q4k__jmemmem(o.s, o.n, x.s, x.n);
            q4k__jargs_max(c, a, 1, "find", line);
            return q4k__jv_int(f ? q4k__jcp_count(o.s, (size_t)(f - o.s)) : -1);
        }
        if (Q4K__JM_IS("join")) {
            q4k__jv l = q4k__jiter(c, a->n ? a->v[0] : q4k__jv_undef("list", 4), line);
            q4k__jsb sb;
            int64_t i;
            memset(&sb, 0, sizeof sb);
            for (i = 0; i < l.o->n; i++) {
                if (i) q4k__jsb_add(c, &sb, o.s, o.n);
                q4k__jsb_add(c, &sb, q4k__jwant_str(c, &l.o->v[i], "join", line).s, l.o->v[i].n);
            }
            return q4k__jv_str(sb.p ? sb.p : "", sb.n);
        }
    } else if (o.k == Q4K__JV_DICT) {
        if (Q4K__JM_IS("get")) {
            q4k__jv k = q4k__jwant_str(c, q4k__jarg(a, 0, NULL), "get", line), r = q4k__jgetattr(c, o, k.s, k.n, line);
            const q4k__jv *dv = q4k__jarg(a, 1, NULL);
            if (r.k == Q4K__JV_UNDEF) return dv ? *dv : q4k__jv_none();
            return r;
        }
        if (Q4K__JM_IS("items") || Q4K__JM_IS("keys") || Q4K__JM_IS("values")) {
            q4k__jv out = q4k__jv_obj(c, Q4K__JV_LIST, o.o->n);
            int64_t i;
            q4k__jargs_max(c, a, 0, "items/keys/values", line);
            for (i = 0; i < o.o->n; i++) {
                if (m[0] == 'i') {
                    q4k__jv pair = q4k__jv_obj(c, Q4K__JV_LIST, 2);
                    q4k__jlist_add(c, pair, o.o->key[i]);
                    q4k__jlist_add(c, pair, o.o->v[i]);
                    q4k__jlist_add(c, out, pair);
                } else {
                    q4k__jlist_add(c, out, m[0] == 'k' ? o.o->key[i] : o.o->v[i]);
                }
            }
            return out;
        }
    } else if (o.k == Q4K__JV_UNDEF) {
        q4k__jundef_fail(c, o, "calling a method of it", line);
    }
#undef Q4K__JM_IS
    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, line, "method '%.*s' of a %s is outside q4k's Jinja subset", (int)(n < 40 ? n : 40), m,
               q4k__jkind_name(o.k));
}

static q4k__jv q4k__jcall(q4k__jctx *c, const q4k__jnode *e) {
    q4k__jargv a;
    q4k__jv f;
    if (e->a->t == Q4K__JN_ATTR) {
        /* Jinja looks up attributes before items: d.items() is the method */
        q4k__jv o = q4k__jeval(c, e->a->a);
        const char *m = e->a->s;
        size_t mn = e->a->n;
        if (o.k != Q4K__JV_NS && (o.k != Q4K__JV_DICT || q4k__jlen_is(m, mn, "get") || q4k__jlen_is(m, mn, "items") ||
                                  q4k__jlen_is(m, mn, "keys") || q4k__jlen_is(m, mn, "values"))) {
            q4k__jeval_args(c, e->b, &a, e->line);
            return q4k__jmethod(c, o, e->a, &a, e->line);
        }
        f = q4k__jgetattr(c, o, m, mn, e->line);
    } else {
        f = q4k__jeval(c, e->a);
    }
    q4k__jeval_args(c, e->b, &a, e->line);
    if (f.k != Q4K__JV_FUNC) {
        if (f.k == Q4K__JV_UNDEF)
            q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "'%.*s' is not a function q4k knows", (int)(f.n < 60 ? f.n : 60),
                       f.s ? f.s : "value");
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "calling a %s", q4k__jkind_name(f.k));
    }
    switch (f.i) {
    case Q4K__JF_RAISE: {
        q4k__jv msg = a.n ? q4k__jto_str(c, a.v[0]) : q4k__jv_str("", 0);
        q4k__jfail(c, Q4K_ERR_INVALID_ARG, e->line, "raise_exception: %.*s", (int)(msg.n < 300 ? msg.n : 300), msg.s);
    }
    case Q4K__JF_STRFTIME:
        q4k__jargs_max(c, &a, 1, "strftime_now", e->line);
        return q4k__jstrftime(c, q4k__jwant_str(c, q4k__jarg(&a, 0, NULL), "strftime_now", e->line), e->line);
    case Q4K__JF_NAMESPACE: case Q4K__JF_DICT: {
        q4k__jv ns = q4k__jv_obj(c, f.i == Q4K__JF_NAMESPACE ? Q4K__JV_NS : Q4K__JV_DICT, a.n);
        int j;
        for (j = 0; j < a.n; j++) {
            if (!a.kw[j]) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "namespace()/dict() take only name=value arguments here");
            q4k__jdict_set(c, ns, a.kw[j], a.kwn[j], a.v[j]);
        }
        return ns;
    }
    default: { /* range */
        int64_t lo = 0, hi, st = 1, i;
        q4k__jv out;
        q4k__jargs_max(c, &a, 3, "range", e->line);
        if (a.n == 1) hi = q4k__jwant_int(c, &a.v[0], "range", e->line);
        else {
            lo = q4k__jwant_int(c, q4k__jarg(&a, 0, NULL), "range", e->line);
            hi = q4k__jwant_int(c, q4k__jarg(&a, 1, NULL), "range", e->line);
            if (a.n == 3) st = q4k__jwant_int(c, &a.v[2], "range", e->line);
        }
        if (st == 0) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "range() step is zero");
        if ((hi - lo) / st > 1000000) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "range() of more than a million numbers");
        out = q4k__jv_obj(c, Q4K__JV_LIST, 8);
        for (i = lo; st > 0 ? i < hi : i > hi; i += st) q4k__jlist_add(c, out, q4k__jv_int(i));
        return out;
    }
    }
}

static q4k__jv q4k__jeval_node(q4k__jctx *c, const q4k__jnode *e) {
    q4k__jv a, b;
    switch (e->t) {
    case Q4K__JN_LIT: return e->lit;
    case Q4K__JN_NAME: return q4k__jlookup(c, e->s, e->n);
    case Q4K__JN_ATTR: return q4k__jgetattr(c, q4k__jeval(c, e->a), e->s, e->n, e->line);
    case Q4K__JN_ITEM:
        a = q4k__jeval(c, e->a);
        return q4k__jgetitem(c, a, q4k__jeval(c, e->b), e->line);
    case Q4K__JN_SLICE: {
        q4k__jv lo, hi, st;
        a = q4k__jeval(c, e->a);
        if (e->b) lo = q4k__jeval(c, e->b);
        if (e->c) hi = q4k__jeval(c, e->c);
        if (e->d) st = q4k__jeval(c, e->d);
        return q4k__jslice(c, a, e->b ? &lo : NULL, e->c ? &hi : NULL, e->d ? &st : NULL, e->line);
    }
    case Q4K__JN_CALL: return q4k__jcall(c, e);
    case Q4K__JN_FILTER: return q4k__jfilter(c, e, q4k__jeval(c, e->a));
    case Q4K__JN_TEST: {
        int r = q4k__jtest(c, e, q4k__jeval(c, e->a));
        return q4k__jv_bool(e->op ? !r : r);
    }
    case Q4K__JN_NOT: return q4k__jv_bool(!q4k__jtruthy(q4k__jeval(c, e->a)));
    case Q4K__JN_NEG:
        a = q4k__jeval(c, e->a);
        if (a.k == Q4K__JV_FLOAT) return q4k__jv_float(-a.f);
        return q4k__jv_int((int64_t)(0 - (uint64_t)q4k__jwant_int(c, &a, "unary minus", e->line)));
    case Q4K__JN_COND:
        if (q4k__jtruthy(q4k__jeval(c, e->b))) return q4k__jeval(c, e->a);
        return e->c ? q4k__jeval(c, e->c) : q4k__jv_undef("else", 4);
    case Q4K__JN_LIST: {
        const q4k__jnode *x;
        q4k__jv out = q4k__jv_obj(c, Q4K__JV_LIST, 4);
        for (x = e->b; x; x = x->next) q4k__jlist_add(c, out, q4k__jeval(c, x->a));
        return out;
    }
    case Q4K__JN_DICT: {
        const q4k__jnode *x;
        q4k__jv out = q4k__jv_obj(c, Q4K__JV_DICT, 4);
        for (x = e->b; x; x = x->next) {
            q4k__jv k = q4k__jeval(c, x->a);
            if (k.k != Q4K__JV_STR) q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "dict keys must be strings here");
            q4k__jdict_set(c, out, k.s, k.n, q4k__jeval(c, x->b));
        }
        return out;
    }
    case Q4K__JN_BIN:
        a = q4k__jeval(c, e->a);
        if (e->op == Q4K__JO_AND) return q4k__jtruthy(a) ? q4k__jeval(c, e->b) : a;
        if (e->op == Q4K__JO_OR) return q4k__jtruthy(a) ? a : q4k__jeval(c, e->b);
        b = q4k__jeval(c, e->b);
        switch (e->op) {
        case Q4K__JO_EQ: return q4k__jv_bool(q4k__jeq(a, b));
        case Q4K__JO_NE: return q4k__jv_bool(!q4k__jeq(a, b));
        case Q4K__JO_LT: return q4k__jv_bool(q4k__jcompare_lt(c, a, b, e->line));
        case Q4K__JO_GT: return q4k__jv_bool(q4k__jcompare_lt(c, b, a, e->line));
        case Q4K__JO_LE: return q4k__jv_bool(!q4k__jcompare_lt(c, b, a, e->line));
        case Q4K__JO_GE: return q4k__jv_bool(!q4k__jcompare_lt(c, a, b, e->line));
        case Q4K__JO_IN: return q4k__jv_bool(q4k__jcontains(c, a, b, e->line));
        case Q4K__JO_NOTIN: return q4k__jv_bool(!q4k__jcontains(c, a, b, e->line));
        case Q4K__JO_CAT: {
            q4k__jsb sb;
            memset(&sb, 0, sizeof sb);
            q4k__jstr_into(c, &sb, a);
            q4k__jstr_into(c, &sb, b);
            return q4k__jv_str(sb.p ? sb.p : "", sb.n);
        }
        default: return q4k__jarith(c, e->op, a, b, e->line);
        }
    default: break;
    }
    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "internal: node %d is not an expression", e->t);
}

/* chains (a + b + c ..., x|f|g ...) are parsed by loops but evaluated by
   recursion: their depth is bounded here */
static q4k__jv q4k__jeval(q4k__jctx *c, const q4k__jnode *e) {
    q4k__jv v;
    q4k__jstep(c, e->line);
    if (++c->edepth > Q4K__J_MAX_EVAL_DEPTH)
        q4k__jfail(c, Q4K_ERR_UNSUPPORTED, e->line, "an expression nested more than %d deep", Q4K__J_MAX_EVAL_DEPTH);
    v = q4k__jeval_node(c, e);
    c->edepth--;
    return v;
}

static void q4k__jexec(q4k__jctx *c, const q4k__jnode *s);

static void q4k__jexec_for(q4k__jctx *c, const q4k__jnode *s) {
    q4k__jv items = q4k__jiter(c, q4k__jeval(c, s->a), s->line), kept;
    int64_t i, saved_frame = c->frame, saved_nvar = c->nvar;
    if (s->d) { /* for x in xs if cond: the loop sees only the kept items */
        kept = q4k__jv_obj(c, Q4K__JV_LIST, items.o->n);
        for (i = 0; i < items.o->n; i++) {
            c->frame = c->nvar;
            q4k__jassign(c, s->s, s->n, items.o->v[i]);
            if (q4k__jtruthy(q4k__jeval(c, s->d))) q4k__jlist_add(c, kept, items.o->v[i]);
            c->nvar = saved_nvar;
            c->frame = saved_frame;
        }
        items = kept;
    }
    for (i = 0; i < items.o->n; i++) {
        q4k__jv loop = q4k__jv_obj(c, Q4K__JV_DICT, 8), it = items.o->v[i];
        int64_t len = items.o->n;
        q4k__jstep(c, s->line);
        c->frame = c->nvar;
        q4k__jdict_set(c, loop, "index", 5, q4k__jv_int(i + 1));
        q4k__jdict_set(c, loop, "index0", 6, q4k__jv_int(i));
        q4k__jdict_set(c, loop, "revindex", 8, q4k__jv_int(len - i));
        q4k__jdict_set(c, loop, "revindex0", 9, q4k__jv_int(len - i - 1));
        q4k__jdict_set(c, loop, "first", 5, q4k__jv_bool(i == 0));
        q4k__jdict_set(c, loop, "last", 4, q4k__jv_bool(i == len - 1));
        q4k__jdict_set(c, loop, "length", 6, q4k__jv_int(len));
        if (i > 0) q4k__jdict_set(c, loop, "previtem", 8, items.o->v[i - 1]);
        if (i + 1 < len) q4k__jdict_set(c, loop, "nextitem", 8, items.o->v[i + 1]);
        q4k__jassign(c, "loop", 4, loop);
        if (s->s2) {
            if (it.k != Q4K__JV_LIST || it.o->n != 2)
                q4k__jfail(c, Q4K_ERR_UNSUPPORTED, s->line, "cannot unpack a %s into two loop variables", q4k__jkind_name(it.k));
            q4k__jassign(c, s->s, s->n, it.o->v[0]);
            q4k__jassign(c, s->s2, s->n2, it.o->v[1]);
        } else {
            q4k__jassign(c, s->s, s->n, it);
        }
        q4k__jexec(c, s->b);
        c->nvar = saved_nvar;
        c->frame = saved_frame;
        if (c->loopctl == 1) { c->loopctl = 0; break; }
        c->loopctl = 0;
    }
    if (!items.o->n && s->c) q4k__jexec(c, s->c);
}

static void q4k__jexec(q4k__jctx *c, const q4k__jnode *s) {
    for (; s && !c->loopctl; s = s->next) {
        q4k__jstep(c, s->line);
        switch (s->t) {
        case Q4K__JN_TEXT: q4k__jemit(c, s->s, s->n); break;
        case Q4K__JN_OUT: {
            q4k__jv v = q4k__jto_str(c, q4k__jeval(c, s->a));
            q4k__jemit(c, v.s, v.n);
            break;
        }
        case Q4K__JN_IF: {
            const q4k__jnode *x = s;
            while (x && x->t == Q4K__JN_IF && !q4k__jtruthy(q4k__jeval(c, x->a))) x = x->c;
            if (x) q4k__jexec(c, x->b); /* the IF's body, or the else BLOCK's */
            break;
        }
        case Q4K__JN_FOR: q4k__jexec_for(c, s); break;
        case Q4K__JN_SET: {
            q4k__jv v = q4k__jeval(c, s->a);
            if (s->s2) {
                q4k__jv ns = q4k__jlookup(c, s->s, s->n);
                if (ns.k != Q4K__JV_NS)
                    q4k__jfail(c, Q4K_ERR_UNSUPPORTED, s->line, "'set %.*s.%.*s': only a namespace() takes attributes",
                               (int)s->n, s->s, (int)s->n2, s->s2);
                q4k__jdict_set(c, ns, s->s2, s->n2, v);
            } else {
                q4k__jassign(c, s->s, s->n, v);
            }
            break;
        }
        case Q4K__JN_BREAK: c->loopctl = 1; break;
        case Q4K__JN_CONTINUE: c->loopctl = 2; break;
        case Q4K__JN_BLOCK: q4k__jexec(c, s->b); break;
        default: q4k__jfail(c, Q4K_ERR_UNSUPPORTED, s->line, "internal: node %d is not a statement", s->t);
        }
    }
}

static q4k__jv q4k__jfunc(int id) {
    q4k__jv v;
    memset(&v, 0, sizeof v);
    v.k = Q4K__JV_FUNC;
    v.i = id;
    return v;
}

/* parse and run; the caller owns c's arena and output buffer */
static void q4k__jrun(q4k__jctx *c, const q4k_chat_msg *msgs, int64_t n, const q4k_chat_render_desc *d) {
    q4k__jnode *prog;
    q4k__jv list;
    int64_t i;
    q4k__jlex(c);
    prog = q4k__jbody(c, NULL, 0, "");
    list = q4k__jv_obj(c, Q4K__JV_LIST, n);
    for (i = 0; i < n; i++) {
        q4k__jv m = q4k__jv_obj(c, Q4K__JV_DICT, 2);
        const char *role = msgs[i].role ? msgs[i].role : "", *content = msgs[i].content ? msgs[i].content : "";
        q4k__jdict_set(c, m, "role", 4, q4k__jv_str(role, strlen(role)));
        q4k__jdict_set(c, m, "content", 7, q4k__jv_str(content, strlen(content)));
        q4k__jlist_add(c, list, m);
    }
    q4k__jassign(c, "messages", 8, list);
    q4k__jassign(c, "bos_token", 9, q4k__jv_str(d && d->bos_token ? d->bos_token : "", d && d->bos_token ? strlen(d->bos_token) : 0));
    q4k__jassign(c, "eos_token", 9, q4k__jv_str(d && d->eos_token ? d->eos_token : "", d && d->eos_token ? strlen(d->eos_token) : 0));
    q4k__jassign(c, "add_generation_prompt", 21, q4k__jv_bool(d && d->add_generation_prompt));
    q4k__jassign(c, "raise_exception", 15, q4k__jfunc(Q4K__JF_RAISE));
    q4k__jassign(c, "strftime_now", 12, q4k__jfunc(Q4K__JF_STRFTIME));
    q4k__jassign(c, "namespace", 9, q4k__jfunc(Q4K__JF_NAMESPACE));
    q4k__jassign(c, "range", 5, q4k__jfunc(Q4K__JF_RANGE));
    q4k__jassign(c, "dict", 4, q4k__jfunc(Q4K__JF_DICT));
    /* the template's own top-level variables go in a frame above the globals */
    c->frame = c->nvar;
    q4k__jexec(c, prog);
}

Q4K_API q4k_result q4k_chat_render(const char *tmpl, const q4k_chat_msg *msgs, int64_t n, const q4k_chat_render_desc *d,
                                   char **out, q4k_error *err) {
    q4k__jctx *c;
    q4k_result rc;
    if (out) *out = NULL;
    if (!tmpl || !out || n < 0 || (n && !msgs))
        return q4k__fail(err, Q4K_ERR_INVALID_ARG, "q4k_chat_render: template, messages and out are required");
    c = (q4k__jctx *)Q4K_MALLOC(sizeof *c);
    if (!c) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "chat template: out of memory");
    memset(c, 0, sizeof *c);
    c->src = tmpl;
    c->len = strlen(tmpl);
    c->err = err;
    c->out_max = d && d->max_output ? d->max_output : (size_t)1 << 20;
    c->now = d && d->now ? d->now : (int64_t)time(NULL);
    if (setjmp(c->jb) == 0) {
        q4k__jrun(c, msgs, n, d);
        q4k__jemit(c, "", 0);
        if (!c->out) {
            c->out = (char *)Q4K_MALLOC(1);
            if (!c->out) q4k__jfail(c, Q4K_ERR_OUT_OF_MEMORY, 0, "out of memory");
        }
        c->out[c->out_len] = 0;
        *out = c->out;
        c->out = NULL;
        rc = Q4K_OK;
    } else {
        rc = c->code;
    }
    while (c->blk) {
        q4k__jblk *nx = c->blk->next;
        Q4K_FREE(c->blk);
        c->blk = nx;
    }
    Q4K_FREE(c->out);
    Q4K_FREE(c);
    return rc;
}

Q4K_API q4k_chat_template q4k_chat_template_guess(const char *tmpl) {
    if (!tmpl) return Q4K_CHAT_NONE;
    if (strstr(tmpl, "<|im_start|>")) return Q4K_CHAT_CHATML;
    if (strstr(tmpl, "<|start_header_id|>")) return Q4K_CHAT_LLAMA3;
    if (strstr(tmpl, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>")) return Q4K_CHAT_DEEPSEEK; /* <｜User｜> */
    if (strstr(tmpl, "[INST]")) return Q4K_CHAT_LLAMA2;
    return Q4K_CHAT_NONE;
}

Q4K_API int q4k_chat_template_from_name(const char *name, q4k_chat_template *out) {
    static const char *const names[] = {"none", "chatml", "llama3", "llama2", "deepseek"};
    int i;
    for (i = 0; name && i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(name, names[i])) {
            if (out) *out = (q4k_chat_template)i;
            return 1;
        }
    return 0;
}

/* --- generation ------------------------------------------------------------ */

Q4K_API q4k_result q4k_generate(q4k_session *s, const q4k_tokenizer *tok, q4k_sampler *smp, const int32_t *tokens,
                                int64_t n, int64_t n_predict, unsigned flags, q4k_token_fn cb, void *user,
                                int64_t *n_generated, q4k_error *err) {
    int64_t i, n_vocab;
    float *logits;
    q4k_result r;
    if (n_generated) *n_generated = 0;
    if (!s || !tok || !smp) return q4k__fail(err, Q4K_ERR_INVALID_ARG, "generate: session, tokenizer and sampler are required");
    n_vocab = s->model->hp.n_vocab;
    logits = (float *)Q4K_MALLOC((size_t)n_vocab * sizeof(float));
    if (!logits) return q4k__fail(err, Q4K_ERR_OUT_OF_MEMORY, "generate: out of memory for %lld logits", (long long)n_vocab);
    r = q4k_session_eval(s, tokens, n, 0, logits, err);
    for (i = 0; i < n; i++) q4k_sampler_accept(smp, tokens[i]);
    for (i = 0; r == Q4K_OK && (n_predict < 0 || i < n_predict); i++) {
        int32_t id = q4k_sampler_sample(smp, logits);
        q4k_sampler_accept(smp, id);
        if (!(flags & Q4K_GEN_IGNORE_EOG) && q4k_tokenizer_is_eog(tok, id)) {
            if ((flags & Q4K_GEN_EVAL_EOG) && s->pos < s->n_ctx) r = q4k_session_eval(s, &id, 1, 0, logits, err);
            break;
        }
        if (n_generated) (*n_generated)++;
        if (cb && cb(user, id, logits)) {
            r = q4k__fail(err, Q4K_ERR_STOPPED, "generate: stopped by the callback after %lld tokens", (long long)(i + 1));
            break;
        }
        if (n_predict >= 0 && i + 1 >= n_predict) break;
        r = q4k_session_eval(s, &id, 1, 0, logits, err);
    }
    Q4K_FREE(logits);
    return r;
}

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
