/* GGUF reader and writer: round trips of every value and tensor type,
   typed getters, the streaming writer, crafted bad files (each refused with
   its own result code and a message naming the key or tensor), and a fuzz
   loop of truncations and byte flips. */
#include "q4k.h"
#include "t.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------- */

static void tmp_path(char *buf, size_t n, const char *tag) {
    const char *d = getenv("TMPDIR");
    if (!d || !*d) d = "/tmp";
    snprintf(buf, n, "%s/q4k_test_gguf_%ld_%s.gguf", d, (long)getpid(), tag);
}

static int write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = n == 0 || fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* exact-size heap copy, so that ASan sees a read one byte past the end */
static q4k_result open_exact(const void *p, size_t n, const q4k_gguf_desc *desc, q4k_gguf **g, q4k_error *err,
                             unsigned char **copy) {
    *copy = (unsigned char *)malloc(n ? n : 1);
    if (n) memcpy(*copy, p, n);
    return q4k_gguf_open_memory(*copy, n, desc, g, err);
}

/* byte builder for crafted files */
typedef struct bb {
    unsigned char *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = (unsigned char *)realloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u8(bb *b, unsigned v) { unsigned char c = (unsigned char)v; bb_put(b, &c, 1); }
static void bb_u32(bb *b, uint32_t v) { int i; for (i = 0; i < 4; i++) bb_u8(b, (v >> (8 * i)) & 0xff); }
static void bb_u64(bb *b, uint64_t v) { int i; for (i = 0; i < 8; i++) bb_u8(b, (unsigned)((v >> (8 * i)) & 0xff)); }
static void bb_strn(bb *b, const char *s, size_t n) { bb_u64(b, n); bb_put(b, s, n); }
static void bb_str(bb *b, const char *s) { bb_strn(b, s, strlen(s)); }
static void bb_zeros(bb *b, size_t n) { while (n--) bb_u8(b, 0); }
static void bb_pad(bb *b, size_t a) { while (b->n % a) bb_u8(b, 0); }
static void bb_hdr(bb *b, uint32_t ver, uint64_t nt, uint64_t nkv) {
    bb_put(b, "GGUF", 4);
    bb_u32(b, ver);
    bb_u64(b, nt);
    bb_u64(b, nkv);
}
static void bb_kv_u32(bb *b, const char *k, uint32_t v) { bb_str(b, k); bb_u32(b, Q4K_GGUF_UINT32); bb_u32(b, v); }
static void bb_kv_str(bb *b, const char *k, const char *v) { bb_str(b, k); bb_u32(b, Q4K_GGUF_STRING); bb_str(b, v); }
static void bb_tinfo(bb *b, const char *name, uint32_t nd, uint64_t ne0, uint64_t ne1, uint32_t type, uint64_t off) {
    bb_str(b, name);
    bb_u32(b, nd);
    if (nd >= 1) bb_u64(b, ne0);
    if (nd >= 2) bb_u64(b, ne1);
    if (nd >= 3) { uint32_t d; for (d = 2; d < nd; d++) bb_u64(b, 1); }
    bb_u32(b, type);
    bb_u64(b, off);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ---- the sample written through the writer ------------------------------ */

typedef struct tspec {
    const char *name;
    q4k_type type;
    int n_dims;
    int64_t ne[4];
} tspec;

static const tspec all_types[] = {
    {"t.f32", Q4K_TYPE_F32, 2, {8, 3, 1, 1}},
    {"t.f16", Q4K_TYPE_F16, 1, {6, 1, 1, 1}},
    {"t.bf16", Q4K_TYPE_BF16, 3, {4, 2, 3, 1}},
    {"t.q8_0", Q4K_TYPE_Q8_0, 2, {64, 2, 1, 1}},
    {"t.q4_0", Q4K_TYPE_Q4_0, 2, {32, 5, 1, 1}},
    {"t.q5_0", Q4K_TYPE_Q5_0, 4, {96, 1, 2, 2}},
    {"t.q4_k", Q4K_TYPE_Q4_K, 2, {512, 3, 1, 1}},
    {"t.q5_k", Q4K_TYPE_Q5_K, 2, {256, 2, 1, 1}},
    {"t.q6_k", Q4K_TYPE_Q6_K, 2, {256, 3, 1, 1}},
};
#define N_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

static const int32_t in_i32[] = {1, -2, 3};
static const char *const in_str[] = {"x", "", "z\xc3\xa9"};
static const float in_f32[] = {1.5f, -0.25f};
static const char *const a_str[] = {"", "hello", "h\xc3\xa9llo", "with \"quote\"", "tok4", "tok5"};

/* fills w with one key of every scalar type, arrays of every element type,
   a string array and a nested array; tensors of every implemented type with
   random bytes in data[i] */
static void fill_writer(q4k_gguf_writer *w, unsigned char **data, unsigned seed) {
    uint8_t u8 = 200, b1 = 1;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint64_t u64 = 1152921504606846977ULL;
    int64_t i64 = -1152921504606846977LL;
    double f64 = -2.718281828459045;
    static const uint8_t a_u8[] = {0, 1, 255};
    static const int8_t a_i8[] = {-128, 0, 127};
    static const uint16_t a_u16[] = {0, 65535};
    static const int16_t a_i16[] = {-32768, 32767};
    static const uint32_t a_u32[] = {0, 4294967295u};
    static const int32_t a_i32[] = {-2147483647 - 1, 0, 2147483647};
    static const float a_f32[] = {0.5f, -1.25f, 1e-6f};
    static const uint64_t a_u64[] = {18446744073709551615ULL, 1};
    static const int64_t a_i64[] = {-9223372036854775807LL - 1, 9223372036854775807LL};
    static const double a_f64[] = {3.141592653589793, -0.1};
    static const uint8_t a_bool[] = {1, 0, 1};
    q4k_gguf_arr deep[1], nested[4], top;
    t_rng rng;
    int i;
    size_t j;
    rng.s = 0x9e3779b97f4a7c15ULL ^ seed;
    deep[0].elem_type = Q4K_GGUF_FLOAT32; deep[0].count = 2; deep[0].data = in_f32;
    nested[0].elem_type = Q4K_GGUF_INT32; nested[0].count = 3; nested[0].data = in_i32;
    nested[1].elem_type = Q4K_GGUF_STRING; nested[1].count = 3; nested[1].data = in_str;
    nested[2].elem_type = Q4K_GGUF_ARRAY; nested[2].count = 1; nested[2].data = deep;
    nested[3].elem_type = Q4K_GGUF_UINT8; nested[3].count = 0; nested[3].data = NULL;
    top.elem_type = Q4K_GGUF_ARRAY; top.count = 4; top.data = nested;

    T_CHECK(q4k_gguf_writer_set_str(w, "general.architecture", "llama") == Q4K_OK, "set");
    q4k_gguf_writer_set_str(w, "general.name", "name \xe2\x9c\x93 \"q\"\n");
    q4k_gguf_writer_set(w, "v.u8", Q4K_GGUF_UINT8, &u8);
    q4k_gguf_writer_set(w, "v.i8", Q4K_GGUF_INT8, &i8);
    q4k_gguf_writer_set(w, "v.u16", Q4K_GGUF_UINT16, &u16);
    q4k_gguf_writer_set(w, "v.i16", Q4K_GGUF_INT16, &i16);
    q4k_gguf_writer_set_u32(w, "v.u32", 4000000000u);
    q4k_gguf_writer_set_i32(w, "v.i32", -2000000000);
    q4k_gguf_writer_set_f32(w, "v.f32", 0.15625f);
    q4k_gguf_writer_set(w, "v.bool", Q4K_GGUF_BOOL, &b1);
    q4k_gguf_writer_set_bool(w, "v.bool0", 0);
    q4k_gguf_writer_set(w, "v.u64", Q4K_GGUF_UINT64, &u64);
    q4k_gguf_writer_set(w, "v.i64", Q4K_GGUF_INT64, &i64);
    q4k_gguf_writer_set(w, "v.f64", Q4K_GGUF_FLOAT64, &f64);
    q4k_gguf_writer_set_i32(w, "v.i32_small", 7);
    q4k_gguf_writer_set_arr(w, "a.u8", Q4K_GGUF_UINT8, a_u8, 3);
    q4k_gguf_writer_set_arr(w, "a.i8", Q4K_GGUF_INT8, a_i8, 3);
    q4k_gguf_writer_set_arr(w, "a.u16", Q4K_GGUF_UINT16, a_u16, 2);
    q4k_gguf_writer_set_arr(w, "a.i16", Q4K_GGUF_INT16, a_i16, 2);
    q4k_gguf_writer_set_arr(w, "a.u32", Q4K_GGUF_UINT32, a_u32, 2);
    q4k_gguf_writer_set_arr(w, "a.i32", Q4K_GGUF_INT32, a_i32, 3);
    q4k_gguf_writer_set_arr(w, "a.f32", Q4K_GGUF_FLOAT32, a_f32, 3);
    q4k_gguf_writer_set_arr(w, "a.bool", Q4K_GGUF_BOOL, a_bool, 3);
    q4k_gguf_writer_set_arr(w, "a.u64", Q4K_GGUF_UINT64, a_u64, 2);
    q4k_gguf_writer_set_arr(w, "a.i64", Q4K_GGUF_INT64, a_i64, 2);
    q4k_gguf_writer_set_arr(w, "a.f64", Q4K_GGUF_FLOAT64, a_f64, 2);
    q4k_gguf_writer_set_arr(w, "a.empty", Q4K_GGUF_FLOAT32, NULL, 0);
    q4k_gguf_writer_set_arr_str(w, "a.str", a_str, 6);
    T_CHECK(q4k_gguf_writer_set_array(w, "a.nested", &top) == Q4K_OK, "nested");
    for (i = 0; i < N_TYPES; i++) {
        const tspec *t = &all_types[i];
        size_t n = q4k_row_size(t->type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        data[i] = (unsigned char *)malloc(n);
        for (j = 0; j < n; j++) data[i][j] = (unsigned char)(t_rng_next(&rng) >> 56);
        T_CHECK(q4k_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, data[i]) == Q4K_OK, "%s", t->name);
    }
}

/* every value written by fill_writer comes back, with its type */
static void check_sample(const q4k_gguf *g, unsigned char **data, size_t align) {
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0, n = 0;
    int64_t i64 = 0;
    float f32 = 0;
    double f64 = 0;
    int b = -1, i, d;
    const char *s = NULL;
    size_t len = 0;
    const void *p = NULL;
    q4k_gguf_type et = Q4K_GGUF_TYPE_COUNT;
    q4k_gguf_value v, e, e2, e3;

    T_CHECK(q4k_gguf_version(g) == 3, "version %u", q4k_gguf_version(g));
    T_CHECK(q4k_gguf_alignment(g) == align, "alignment %zu", q4k_gguf_alignment(g));
    T_CHECK(q4k_gguf_data_offset(g) % align == 0, "data offset %zu", q4k_gguf_data_offset(g));
    /* writer_new(a != 32) sets general.alignment first */
    T_CHECK(q4k_gguf_key_count(g) == 29 + (align != 32), "keys %lld", (long long)q4k_gguf_key_count(g));
    T_CHECK(!strcmp(q4k_gguf_key(g, align != 32), "general.architecture"), "first key %s", q4k_gguf_key(g, 0));
    T_CHECK(q4k_gguf_key_type(g, align != 32) == Q4K_GGUF_STRING, "type");
    T_CHECK(q4k_gguf_find_key(g, "general.architecture") == (align != 32), "find first");
    T_CHECK(q4k_gguf_key(g, -1) == NULL && q4k_gguf_key(g, 1000) == NULL, "key out of range");
    T_CHECK(q4k_gguf_key_type(g, 1000) == Q4K_GGUF_TYPE_COUNT, "type out of range");
    T_CHECK(q4k_gguf_find_key(g, "v.f64") >= 0 && q4k_gguf_find_key(g, "v.f6") == -1, "find_key");
    T_CHECK(q4k_gguf_get_str(g, "general.architecture", &s) == Q4K_OK && !strcmp(s, "llama"), "arch");
    T_CHECK(q4k_gguf_get_str(g, "general.name", &s) == Q4K_OK && !strcmp(s, "name \xe2\x9c\x93 \"q\"\n"), "name");
    T_CHECK(q4k_gguf_get_u32(g, "v.u8", &u32) == Q4K_OK && u32 == 200, "u8 %u", u32);
    T_CHECK(q4k_gguf_get_i32(g, "v.i8", &i32) == Q4K_OK && i32 == -100, "i8 %d", i32);
    T_CHECK(q4k_gguf_get_u32(g, "v.u16", &u32) == Q4K_OK && u32 == 60000, "u16");
    T_CHECK(q4k_gguf_get_i32(g, "v.i16", &i32) == Q4K_OK && i32 == -30000, "i16");
    T_CHECK(q4k_gguf_get_u32(g, "v.u32", &u32) == Q4K_OK && u32 == 4000000000u, "u32");
    T_CHECK(q4k_gguf_get_i32(g, "v.i32", &i32) == Q4K_OK && i32 == -2000000000, "i32");
    T_CHECK(q4k_gguf_get_f32(g, "v.f32", &f32) == Q4K_OK && f32 == 0.15625f, "f32");
    T_CHECK(q4k_gguf_get_bool(g, "v.bool", &b) == Q4K_OK && b == 1, "bool");
    T_CHECK(q4k_gguf_get_bool(g, "v.bool0", &b) == Q4K_OK && b == 0, "bool0");
    T_CHECK(q4k_gguf_get_u64(g, "v.u64", &u64) == Q4K_OK && u64 == 1152921504606846977ULL, "u64");
    T_CHECK(q4k_gguf_get_i64(g, "v.i64", &i64) == Q4K_OK && i64 == -1152921504606846977LL, "i64");
    T_CHECK(q4k_gguf_get_f64(g, "v.f64", &f64) == Q4K_OK && f64 == -2.718281828459045, "f64");
    T_CHECK(q4k_gguf_get_f32(g, "v.f64", &f32) == Q4K_OK && f32 == (float)-2.718281828459045, "f64 as f32");
    T_CHECK(q4k_gguf_get_f64(g, "v.f32", &f64) == Q4K_OK && f64 == 0.15625, "f32 as f64");
    T_CHECK(q4k_gguf_get_u64(g, "v.u8", &u64) == Q4K_OK && u64 == 200, "u8 as u64");
    T_CHECK(q4k_gguf_get_i64(g, "v.i16", &i64) == Q4K_OK && i64 == -30000, "i16 as i64");
    T_CHECK(q4k_gguf_get_u32(g, "v.i32_small", &u32) == Q4K_OK && u32 == 7, "positive i32 as u32");

    /* numeric arrays: packed little-endian data */
    T_CHECK(q4k_gguf_get_arr(g, "a.i16", &et, &n) == Q4K_OK && et == Q4K_GGUF_INT16 && n == 2, "a.i16");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.i16", &p) == Q4K_OK && !memcmp(p, "\x00\x80\xff\x7f", 4), "a.i16 data");
    T_CHECK(q4k_gguf_get_arr(g, "a.u64", &et, &n) == Q4K_OK && et == Q4K_GGUF_UINT64 && n == 2, "a.u64");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.u64", &p) == Q4K_OK && !memcmp(p, "\xff\xff\xff\xff\xff\xff\xff\xff\x01", 9),
            "a.u64 data");
    T_CHECK(q4k_gguf_get_arr(g, "a.f32", &et, &n) == Q4K_OK && et == Q4K_GGUF_FLOAT32 && n == 3, "a.f32");
    if (q4k_gguf_get_arr_data(g, "a.f32", &p) == Q4K_OK) {
        float x[3];
        memcpy(x, p, sizeof x);
        T_CHECK(x[0] == 0.5f && x[1] == -1.25f && x[2] == 1e-6f, "a.f32 values");
    }
    if (q4k_gguf_get_arr_data(g, "a.f64", &p) == Q4K_OK) {
        double x[2];
        memcpy(x, p, sizeof x);
        T_CHECK(x[0] == 3.141592653589793 && x[1] == -0.1, "a.f64 values");
    }
    if (q4k_gguf_get_arr_data(g, "a.i64", &p) == Q4K_OK) {
        int64_t x[2];
        memcpy(x, p, sizeof x);
        T_CHECK(x[0] == INT64_MIN && x[1] == INT64_MAX, "a.i64 values");
    }
    T_CHECK(q4k_gguf_get_arr_data(g, "a.i32", &p) == Q4K_OK && !memcmp(p, "\0\0\0\x80\0\0\0\0\xff\xff\xff\x7f", 12), "a.i32");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.u8", &p) == Q4K_OK && !memcmp(p, "\x00\x01\xff", 3), "a.u8");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.i8", &p) == Q4K_OK && !memcmp(p, "\x80\x00\x7f", 3), "a.i8");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.u16", &p) == Q4K_OK && !memcmp(p, "\0\0\xff\xff", 4), "a.u16");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.u32", &p) == Q4K_OK && !memcmp(p, "\0\0\0\0\xff\xff\xff\xff", 8), "a.u32");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.bool", &p) == Q4K_OK && !memcmp(p, "\x01\x00\x01", 3), "a.bool");
    T_CHECK(q4k_gguf_get_arr(g, "a.empty", &et, &n) == Q4K_OK && et == Q4K_GGUF_FLOAT32 && n == 0, "a.empty");

    /* string array, O(1) by index */
    T_CHECK(q4k_gguf_get_arr(g, "a.str", &et, &n) == Q4K_OK && et == Q4K_GGUF_STRING && n == 6, "a.str");
    for (i = 0; i < 6; i++) {
        T_CHECK(q4k_gguf_get_arr_str(g, "a.str", (uint64_t)i, &s, &len) == Q4K_OK && len == strlen(a_str[i]) &&
                    !memcmp(s, a_str[i], len),
                "a.str[%d]", i);
    }
    /* nested: [[1,-2,3], ["x","","zé"], [[1.5,-0.25]], []] */
    T_CHECK(q4k_gguf_get_arr(g, "a.nested", &et, &n) == Q4K_OK && et == Q4K_GGUF_ARRAY && n == 4, "nested");
    T_CHECK(q4k_gguf_get_value(g, "a.nested", &v) == Q4K_OK && v.type == Q4K_GGUF_ARRAY && v.count == 4, "value");
    T_CHECK(q4k_gguf_value_elem(&v, 0, &e) == Q4K_OK && e.type == Q4K_GGUF_ARRAY && e.elem_type == Q4K_GGUF_INT32 &&
                e.count == 3 && e.size == 12,
            "nested[0]");
    T_CHECK(q4k_gguf_value_elem(&e, 1, &e2) == Q4K_OK && e2.type == Q4K_GGUF_INT32 && !memcmp(e2.data, "\xfe\xff\xff\xff", 4),
            "nested[0][1]");
    T_CHECK(q4k_gguf_value_elem(&v, 1, &e) == Q4K_OK && e.elem_type == Q4K_GGUF_STRING && e.count == 3, "nested[1]");
    T_CHECK(q4k_gguf_value_elem(&e, 2, &e2) == Q4K_OK && e2.type == Q4K_GGUF_STRING && e2.size == 3 &&
                !memcmp(e2.data, "z\xc3\xa9", 3),
            "nested[1][2]");
    T_CHECK(q4k_gguf_value_elem(&e, 1, &e2) == Q4K_OK && e2.size == 0, "nested[1][1] empty");
    T_CHECK(q4k_gguf_value_elem(&v, 2, &e) == Q4K_OK && e.elem_type == Q4K_GGUF_ARRAY && e.count == 1, "nested[2]");
    T_CHECK(q4k_gguf_value_elem(&e, 0, &e2) == Q4K_OK && e2.elem_type == Q4K_GGUF_FLOAT32 && e2.count == 2, "nested[2][0]");
    T_CHECK(q4k_gguf_value_elem(&e2, 1, &e3) == Q4K_OK && e3.type == Q4K_GGUF_FLOAT32 && !memcmp(e3.data, &in_f32[1], 4),
            "nested[2][0][1]");
    T_CHECK(q4k_gguf_value_elem(&v, 3, &e) == Q4K_OK && e.elem_type == Q4K_GGUF_UINT8 && e.count == 0, "nested[3]");
    T_CHECK(q4k_gguf_value_elem(&v, 4, &e) == Q4K_ERR_INVALID_ARG, "nested[4] out of range");
    T_CHECK(q4k_gguf_value_elem(&e3, 0, &e) == Q4K_ERR_TYPE_MISMATCH, "elem of a scalar");
    T_CHECK(q4k_gguf_key_value(g, align != 32, &v) == Q4K_OK && v.type == Q4K_GGUF_STRING && v.size == 5 &&
                !memcmp(v.data, "llama", 5),
            "key_value");

    /* tensors */
    T_CHECK(q4k_gguf_tensor_count(g) == N_TYPES, "tensor count %lld", (long long)q4k_gguf_tensor_count(g));
    for (i = 0; i < N_TYPES; i++) {
        const tspec *ts = &all_types[i];
        const q4k_tensor *t = q4k_gguf_tensor(g, i);
        size_t nb = q4k_row_size(ts->type, ts->ne[0]) * (size_t)(ts->ne[1] * ts->ne[2] * ts->ne[3]);
        if (!t) { T_CHECK(0, "tensor %d missing", i); continue; }
        T_CHECK(!strcmp(t->name, ts->name) && t->type == ts->type && t->n_dims == ts->n_dims, "tensor %d %s", i, t->name);
        for (d = 0; d < 4; d++) T_CHECK(t->ne[d] == ts->ne[d], "%s ne[%d] %lld", t->name, d, (long long)t->ne[d]);
        T_CHECK(t->nbytes == nb, "%s nbytes %zu vs %zu", t->name, t->nbytes, nb);
        T_CHECK(t->offset % align == 0, "%s offset %llu", t->name, (unsigned long long)t->offset);
        T_CHECK(t->file_offset == q4k_gguf_data_offset(g) + t->offset, "%s file offset", t->name);
        T_CHECK(data == NULL || !memcmp(t->data, data[i], nb), "%s data differs", t->name);
        T_CHECK(q4k_gguf_find_tensor(g, ts->name) == t, "find %s", ts->name);
    }
    T_CHECK(q4k_gguf_find_tensor(g, "t.q4") == NULL && q4k_gguf_tensor(g, N_TYPES) == NULL, "absent tensor");
}

static void free_data(unsigned char **data) {
    int i;
    for (i = 0; i < N_TYPES; i++) free(data[i]);
}

/* ---- round trips ------------------------------------------------------- */

static void test_roundtrip_align(uint32_t align, const char *tag) {
    char path[512];
    unsigned char *data[N_TYPES], *bytes, *copy;
    size_t n;
    q4k_gguf_writer *w = q4k_gguf_writer_new(align);
    q4k_gguf *g;
    q4k_error err;
    q4k_gguf_desc desc;
    size_t want = align ? align : 32;
    tmp_path(path, sizeof path, tag);
    T_CHECK(w != NULL, "writer_new(%u)", align);
    if (!w) return;
    fill_writer(w, data, align);
    T_CHECK(q4k_gguf_writer_write_file(w, path, &err) == Q4K_OK, "write: %s", err.msg);
    q4k_gguf_writer_free(w);

    /* mapped */
    T_CHECK(q4k_gguf_open_file(path, NULL, &g, &err) == Q4K_OK, "open_file: %s", err.msg);
    if (g) {
        uint32_t a = 0;
        check_sample(g, data, want);
        T_CHECK((q4k_gguf_get_u32(g, "general.alignment", &a) == Q4K_OK) == (want != 32) && (want == 32 || a == want),
                "general.alignment key %u", a);
        q4k_gguf_close(g);
    }
    /* read into memory */
    memset(&desc, 0, sizeof desc);
    desc.no_mmap = 1;
    T_CHECK(q4k_gguf_open_file(path, &desc, &g, &err) == Q4K_OK, "open_file no_mmap: %s", err.msg);
    if (g) {
        check_sample(g, data, want);
        q4k_gguf_close(g);
    }
    /* from a buffer, also as version 2 */
    bytes = t_read_file(path, &n);
    T_CHECK(bytes && n > 24, "read back");
    if (bytes) {
        T_CHECK(open_exact(bytes, n, NULL, &g, &err, &copy) == Q4K_OK, "open_memory: %s", err.msg);
        if (g) {
            T_CHECK(q4k_gguf_file_size(g) == n, "size");
            check_sample(g, data, want);
            q4k_gguf_close(g);
        }
        free(copy);
        bytes[4] = 2;
        T_CHECK(open_exact(bytes, n, NULL, &g, &err, &copy) == Q4K_OK, "v2: %s", err.msg);
        if (g) {
            T_CHECK(q4k_gguf_version(g) == 2, "v2 version");
            T_CHECK(q4k_gguf_tensor_count(g) == N_TYPES && q4k_gguf_key_count(g) == 29 + (want != 32), "v2 counts");
            T_CHECK(!memcmp(q4k_gguf_tensor(g, 6)->data, data[6], q4k_gguf_tensor(g, 6)->nbytes), "v2 data");
            q4k_gguf_close(g);
        }
        free(copy);
        free(bytes);
    }
    free_data(data);
    remove(path);
}

static void test_roundtrip_align32(void) { test_roundtrip_align(0, "a32"); }
static void test_roundtrip_align64(void) { test_roundtrip_align(64, "a64"); }
static void test_roundtrip_align4096(void) { test_roundtrip_align(4096, "a4096"); }

static void test_getter_mismatch(void) {
    char path[512];
    unsigned char *data[N_TYPES];
    q4k_gguf_writer *w = q4k_gguf_writer_new(0);
    q4k_gguf *g = NULL;
    q4k_error err;
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0;
    int64_t i64 = 0;
    float f = 0;
    double d = 0;
    int b = 0;
    const char *s = NULL;
    const void *p = NULL;
    size_t len = 0;
    tmp_path(path, sizeof path, "mm");
    fill_writer(w, data, 1);
    q4k_gguf_writer_write_file(w, path, &err);
    q4k_gguf_writer_free(w);
    free_data(data);
    T_CHECK(q4k_gguf_open_file(path, NULL, &g, &err) == Q4K_OK, "%s", err.msg);
    remove(path);
    if (!g) return;
    T_CHECK(q4k_gguf_get_u32(g, "general.architecture", &u32) == Q4K_ERR_TYPE_MISMATCH, "u32 of string");
    T_CHECK(q4k_gguf_get_str(g, "v.u32", &s) == Q4K_ERR_TYPE_MISMATCH, "str of u32");
    T_CHECK(q4k_gguf_get_f32(g, "v.i32", &f) == Q4K_ERR_TYPE_MISMATCH, "f32 of i32");
    T_CHECK(q4k_gguf_get_f64(g, "v.u8", &d) == Q4K_ERR_TYPE_MISMATCH, "f64 of u8");
    T_CHECK(q4k_gguf_get_u32(g, "v.i32", &u32) == Q4K_ERR_TYPE_MISMATCH, "u32 of negative i32");
    T_CHECK(q4k_gguf_get_u64(g, "v.i8", &u64) == Q4K_ERR_TYPE_MISMATCH, "u64 of negative i8");
    T_CHECK(q4k_gguf_get_i32(g, "v.u32", &i32) == Q4K_ERR_TYPE_MISMATCH, "i32 of 4e9");
    T_CHECK(q4k_gguf_get_u32(g, "v.u64", &u32) == Q4K_ERR_TYPE_MISMATCH, "u32 of 2^60");
    T_CHECK(q4k_gguf_get_i64(g, "v.f64", &i64) == Q4K_ERR_TYPE_MISMATCH, "i64 of f64");
    T_CHECK(q4k_gguf_get_bool(g, "v.u8", &b) == Q4K_ERR_TYPE_MISMATCH, "bool of u8");
    T_CHECK(q4k_gguf_get_u32(g, "v.bool", &u32) == Q4K_ERR_TYPE_MISMATCH, "u32 of bool");
    T_CHECK(q4k_gguf_get_u32(g, "a.u32", &u32) == Q4K_ERR_TYPE_MISMATCH, "u32 of array");
    T_CHECK(q4k_gguf_get_arr(g, "v.u32", NULL, NULL) == Q4K_ERR_TYPE_MISMATCH, "arr of scalar");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.str", &p) == Q4K_ERR_TYPE_MISMATCH, "arr_data of strings");
    T_CHECK(q4k_gguf_get_arr_data(g, "a.nested", &p) == Q4K_ERR_TYPE_MISMATCH, "arr_data of nested");
    T_CHECK(q4k_gguf_get_arr_str(g, "a.i32", 0, &s, &len) == Q4K_ERR_TYPE_MISMATCH, "arr_str of i32");
    T_CHECK(q4k_gguf_get_arr_str(g, "a.str", 6, &s, &len) == Q4K_ERR_INVALID_ARG, "arr_str out of range");
    T_CHECK(q4k_gguf_get_u32(g, "no.such.key", &u32) == Q4K_ERR_NOT_FOUND, "missing u32");
    T_CHECK(q4k_gguf_get_str(g, "no.such.key", &s) == Q4K_ERR_NOT_FOUND, "missing str");
    T_CHECK(q4k_gguf_get_arr(g, "no.such.key", NULL, NULL) == Q4K_ERR_NOT_FOUND, "missing arr");
    T_CHECK(q4k_gguf_get_f32(g, "no.such.key", &f) == Q4K_ERR_NOT_FOUND, "missing f32");
    T_CHECK(q4k_gguf_get_bool(g, "no.such.key", &b) == Q4K_ERR_NOT_FOUND, "missing bool");
    T_CHECK(q4k_gguf_get_u32(g, NULL, &u32) == Q4K_ERR_INVALID_ARG, "NULL key");
    /* a failed getter leaves the output alone */
    u32 = 12345;
    q4k_gguf_get_u32(g, "v.i32", &u32);
    T_CHECK(u32 == 12345, "output untouched on mismatch");
    q4k_gguf_close(g);
}

static void test_writer_streaming(void) {
    char p1[512], p2[512];
    unsigned char *data[N_TYPES], *b1, *b2;
    size_t n1 = 0, n2 = 0;
    int i;
    q4k_error err;
    q4k_gguf_writer *w;
    tmp_path(p1, sizeof p1, "whole");
    tmp_path(p2, sizeof p2, "stream");
    w = q4k_gguf_writer_new(64);
    fill_writer(w, data, 7);
    T_CHECK(q4k_gguf_writer_write_file(w, p1, &err) == Q4K_OK, "write_file: %s", err.msg);
    q4k_gguf_writer_free(w);
    free_data(data);

    /* same content streamed, data given per tensor */
    w = q4k_gguf_writer_new(64);
    fill_writer(w, data, 7);
    T_CHECK(q4k_gguf_writer_begin(w, p2, &err) == Q4K_OK, "begin: %s", err.msg);
    T_CHECK(q4k_gguf_writer_set_u32(w, "late.key", 1) == Q4K_ERR_INVALID_ARG, "set after begin");
    for (i = 0; i < N_TYPES; i++)
        T_CHECK(q4k_gguf_writer_write_tensor(w, i % 2 ? data[i] : NULL, &err) == Q4K_OK, "write_tensor %d: %s", i, err.msg);
    T_CHECK(q4k_gguf_writer_write_tensor(w, data[0], &err) == Q4K_ERR_INVALID_ARG && contains(err.msg, "all"),
            "one too many: %s", err.msg);
    T_CHECK(q4k_gguf_writer_end(w, &err) == Q4K_OK, "end: %s", err.msg);
    q4k_gguf_writer_free(w);
    free_data(data);
    b1 = t_read_file(p1, &n1);
    b2 = t_read_file(p2, &n2);
    T_CHECK(b1 && b2 && n1 == n2 && n1 > 0 && !memcmp(b1, b2, n1), "streamed file differs (%zu vs %zu bytes)", n1, n2);
    free(b1);
    free(b2);
    remove(p1);
    remove(p2);

    /* stopping early removes the partial file */
    w = q4k_gguf_writer_new(0);
    fill_writer(w, data, 8);
    T_CHECK(q4k_gguf_writer_begin(w, p2, &err) == Q4K_OK, "begin");
    T_CHECK(q4k_gguf_writer_write_tensor(w, NULL, &err) == Q4K_OK, "first");
    T_CHECK(q4k_gguf_writer_end(w, &err) == Q4K_ERR_INVALID_ARG && contains(err.msg, "1 of 9"), "early end: %s", err.msg);
    T_CHECK(!file_exists(p2), "partial file left behind");
    /* freeing while streaming removes it too */
    T_CHECK(q4k_gguf_writer_begin(w, p2, &err) == Q4K_OK, "begin again");
    T_CHECK(file_exists(p2), "file being written");
    q4k_gguf_writer_free(w);
    T_CHECK(!file_exists(p2), "free while streaming left a file");
    free_data(data);

    /* tensors without data: write_file refuses and writes nothing */
    w = q4k_gguf_writer_new(0);
    {
        int64_t ne[1] = {32};
        q4k_gguf_writer_add_tensor(w, "nodata", Q4K_TYPE_F32, 1, ne, NULL);
    }
    T_CHECK(q4k_gguf_writer_write_file(w, p2, &err) == Q4K_ERR_INVALID_ARG && contains(err.msg, "nodata"), "%s", err.msg);
    T_CHECK(!file_exists(p2), "file written without data");
    T_CHECK(q4k_gguf_writer_write_tensor(w, NULL, &err) == Q4K_ERR_INVALID_ARG, "write_tensor before begin");
    T_CHECK(q4k_gguf_writer_end(w, &err) == Q4K_ERR_INVALID_ARG, "end before begin");
    T_CHECK(q4k_gguf_writer_write_file(w, "/nonexistent-dir-q4k/x.gguf", &err) == Q4K_ERR_INVALID_ARG, "no data first");
    q4k_gguf_writer_free(w);

    /* I/O error names the path */
    w = q4k_gguf_writer_new(0);
    q4k_gguf_writer_set_u32(w, "k", 1);
    T_CHECK(q4k_gguf_writer_write_file(w, "/nonexistent-dir-q4k/x.gguf", &err) == Q4K_ERR_IO &&
                contains(err.msg, "/nonexistent-dir-q4k/x.gguf"),
            "io: %s", err.msg);
    q4k_gguf_writer_free(w);
}

static void test_writer_refusals(void) {
    q4k_gguf_writer *w;
    q4k_error err;
    char path[512], longname[80];
    int64_t ne[4] = {256, 2, 1, 1}, bad_ne[2] = {100, 2}, zero_ne[2] = {32, 0};
    float x[512];
    uint8_t two = 2;
    q4k_gguf *g;
    uint32_t u = 0;
    const char *s;
    memset(x, 0, sizeof x);
    tmp_path(path, sizeof path, "refuse");
    T_CHECK(q4k_gguf_writer_new(3) == NULL, "alignment 3 accepted");
    T_CHECK(q4k_gguf_writer_new(1u << 31) == NULL, "alignment 2^31 accepted");
    w = q4k_gguf_writer_new(0);
    T_CHECK(q4k_gguf_writer_add_tensor(w, "a", Q4K_TYPE_Q4_K, 2, bad_ne, x) == Q4K_ERR_BAD_SHAPE, "shape");
    T_CHECK(q4k_gguf_writer_add_tensor(w, "a", Q4K_TYPE_F32, 2, zero_ne, x) == Q4K_ERR_BAD_DIMS, "dim 0");
    T_CHECK(q4k_gguf_writer_add_tensor(w, "a", Q4K_TYPE_F32, 5, ne, x) == Q4K_ERR_BAD_DIMS, "n_dims 5");
    T_CHECK(q4k_gguf_writer_add_tensor(w, "a", (q4k_type)99, 2, ne, x) == Q4K_ERR_BAD_TYPE, "type 99");
    T_CHECK(q4k_gguf_writer_add_tensor(w, "", Q4K_TYPE_F32, 2, ne, x) == Q4K_ERR_BAD_TENSOR_NAME, "empty name");
    memset(longname, 'n', 64);
    longname[64] = 0;
    T_CHECK(q4k_gguf_writer_add_tensor(w, longname, Q4K_TYPE_F32, 2, ne, x) == Q4K_ERR_BAD_TENSOR_NAME, "64-byte name");
    longname[63] = 0;
    T_CHECK(q4k_gguf_writer_add_tensor(w, longname, Q4K_TYPE_F32, 1, ne, x) == Q4K_OK, "63-byte name");
    T_CHECK(q4k_gguf_writer_add_tensor(w, "b", Q4K_TYPE_F32, 1, ne, x) == Q4K_OK, "b");
    T_CHECK(q4k_gguf_writer_add_tensor(w, "b", Q4K_TYPE_F32, 1, ne, x) == Q4K_ERR_DUPLICATE_TENSOR, "duplicate");
    T_CHECK(q4k_gguf_writer_add_tensor(w, "bad\xff", Q4K_TYPE_F32, 1, ne, x) == Q4K_ERR_BAD_UTF8, "utf8 name");
    T_CHECK(q4k_gguf_writer_set_u32(w, "", 1) == Q4K_ERR_BAD_KEY, "empty key");
    T_CHECK(q4k_gguf_writer_set_u32(w, "k\xc0\x80", 1) == Q4K_ERR_BAD_UTF8, "overlong UTF-8 key");
    T_CHECK(q4k_gguf_writer_set(w, "k", Q4K_GGUF_BOOL, &two) == Q4K_ERR_BAD_BOOL, "bool 2");
    T_CHECK(q4k_gguf_writer_set(w, "k", Q4K_GGUF_ARRAY, x) == Q4K_ERR_BAD_VALUE_TYPE, "array via set");
    T_CHECK(q4k_gguf_writer_set_arr(w, "k", Q4K_GGUF_STRING, x, 1) == Q4K_ERR_BAD_ARRAY, "strings via set_arr");
    T_CHECK(q4k_gguf_writer_set_str(w, "general.alignment", "64") == Q4K_ERR_BAD_ALIGNMENT, "alignment string");
    T_CHECK(q4k_gguf_writer_set_u32(w, "general.alignment", 48) == Q4K_ERR_BAD_ALIGNMENT, "alignment 48");
    /* the first failure is remembered: nothing is written */
    T_CHECK(q4k_gguf_writer_write_file(w, path, &err) == Q4K_ERR_BAD_SHAPE && contains(err.msg, "'a'"), "sticky: %s",
            err.msg);
    T_CHECK(!file_exists(path), "written despite errors");
    q4k_gguf_writer_free(w);

    /* setting a key twice replaces it in place; general.alignment changes the alignment */
    w = q4k_gguf_writer_new(0);
    q4k_gguf_writer_set_str(w, "first", "one");
    q4k_gguf_writer_set_u32(w, "second", 2);
    q4k_gguf_writer_set_str(w, "first", "uno");
    q4k_gguf_writer_set_u32(w, "general.alignment", 128);
    q4k_gguf_writer_add_tensor(w, "w1", Q4K_TYPE_F32, 1, bad_ne, x);
    q4k_gguf_writer_add_tensor(w, "w2", Q4K_TYPE_F32, 1, bad_ne, x);
    T_CHECK(q4k_gguf_writer_write_file(w, path, &err) == Q4K_OK, "%s", err.msg);
    q4k_gguf_writer_free(w);
    T_CHECK(q4k_gguf_open_file(path, NULL, &g, &err) == Q4K_OK, "%s", err.msg);
    if (g) {
        T_CHECK(q4k_gguf_key_count(g) == 3 && !strcmp(q4k_gguf_key(g, 0), "first"), "order");
        T_CHECK(q4k_gguf_get_str(g, "first", &s) == Q4K_OK && !strcmp(s, "uno"), "replaced");
        T_CHECK(q4k_gguf_get_u32(g, "general.alignment", &u) == Q4K_OK && u == 128, "alignment key");
        T_CHECK(q4k_gguf_alignment(g) == 128 && q4k_gguf_tensor(g, 1)->offset == 512, "offset %llu",
                (unsigned long long)q4k_gguf_tensor(g, 1)->offset);
        q4k_gguf_close(g);
    }
    remove(path);
}

static void test_unimplemented_type(void) {
    char path[512];
    unsigned char blk[110 * 2];
    int64_t ne[2] = {256, 2};
    q4k_gguf_writer *w = q4k_gguf_writer_new(0);
    q4k_gguf *g = NULL;
    q4k_gguf_desc desc;
    q4k_error err;
    memset(blk, 0x5a, sizeof blk);
    tmp_path(path, sizeof path, "q3k");
    T_CHECK(q4k_gguf_writer_add_tensor(w, "blk.3.ffn_down.weight", Q4K_TYPE_Q3_K, 2, ne, blk) == Q4K_OK, "writer takes Q3_K");
    T_CHECK(q4k_gguf_writer_write_file(w, path, &err) == Q4K_OK, "%s", err.msg);
    q4k_gguf_writer_free(w);
    T_CHECK(q4k_gguf_open_file(path, NULL, &g, &err) == Q4K_ERR_UNSUPPORTED_TYPE && g == NULL, "refused by default");
    T_CHECK(contains(err.msg, "Q3_K") && contains(err.msg, "blk.3.ffn_down.weight") && contains(err.msg, path), "%s", err.msg);
    memset(&desc, 0, sizeof desc);
    desc.allow_unimplemented = 1;
    T_CHECK(q4k_gguf_open_file(path, &desc, &g, &err) == Q4K_OK, "allowed: %s", err.msg);
    if (g) {
        T_CHECK(q4k_gguf_tensor(g, 0)->type == Q4K_TYPE_Q3_K && q4k_gguf_tensor(g, 0)->nbytes == 220, "q3k tensor");
        T_CHECK(!memcmp(q4k_gguf_tensor(g, 0)->data, blk, 220), "q3k data");
        q4k_gguf_close(g);
    }
    remove(path);
}

typedef struct log_capture {
    int n;
    q4k_log_level level;
    char last[600];
} log_capture;

static void capture_log(q4k_log_level level, const char *msg, void *user) {
    log_capture *c = (log_capture *)user;
    c->n++;
    c->level = level;
    snprintf(c->last, sizeof c->last, "%s", msg);
}

static void test_open_errors(void) {
    q4k_gguf *g = (q4k_gguf *)&g;
    q4k_error err;
    q4k_gguf_desc desc;
    log_capture cap;
    char path[512];
    memset(&cap, 0, sizeof cap);
    memset(&desc, 0, sizeof desc);
    desc.log = capture_log;
    desc.log_user = &cap;
    T_CHECK(q4k_gguf_open_file("/nonexistent-q4k/model.gguf", &desc, &g, &err) == Q4K_ERR_IO && g == NULL, "missing");
    T_CHECK(contains(err.msg, "/nonexistent-q4k/model.gguf"), "%s", err.msg);
    T_CHECK(cap.n == 1 && cap.level == Q4K_LOG_ERROR && !strcmp(cap.last, err.msg), "logged: %s", cap.last);
    T_CHECK(q4k_gguf_open_file("/", NULL, &g, &err) == Q4K_ERR_IO && !strncmp(err.msg, "/: ", 3), "%s", err.msg);
#if defined(__unix__) || defined(__APPLE__)
    T_CHECK(contains(err.msg, "directory"), "%s", err.msg);
    /* a device is read as a stream only while it looks like GGUF: /dev/zero
       stops at its 4th byte, not when memory runs out */
    T_CHECK(q4k_gguf_open_file("/dev/zero", NULL, &g, &err) == Q4K_ERR_NOT_GGUF && contains(err.msg, "character device"),
            "%s", err.msg);
    /* a FIFO no one writes to: an error at once, not a wait forever */
    tmp_path(path, sizeof path, "fifo");
    if (mkfifo(path, 0600) == 0) {
        T_CHECK(q4k_gguf_open_file(path, NULL, &g, &err) == Q4K_ERR_IO && contains(err.msg, "FIFO"), "%s", err.msg);
        remove(path);
    } else {
        T_CHECK(0, "mkfifo %s failed", path);
    }
#endif
    T_CHECK(q4k_gguf_open_file(NULL, NULL, &g, &err) == Q4K_ERR_INVALID_ARG, "NULL path");
    T_CHECK(q4k_gguf_open_memory(NULL, 5, NULL, &g, &err) == Q4K_ERR_INVALID_ARG, "NULL data");
    T_CHECK(q4k_gguf_open_memory("GGUF", 4, NULL, NULL, &err) == Q4K_ERR_INVALID_ARG, "NULL out");
    T_CHECK(q4k_gguf_open_memory("GGUF", 4, NULL, &g, NULL) == Q4K_ERR_TRUNCATED, "NULL err is fine");
    /* an empty file on disk */
    tmp_path(path, sizeof path, "empty");
    write_all(path, "", 0);
    T_CHECK(q4k_gguf_open_file(path, NULL, &g, &err) == Q4K_ERR_NOT_GGUF && contains(err.msg, path) &&
                contains(err.msg, "empty"),
            "%s", err.msg);
    remove(path);
    /* success logs at INFO */
    {
        q4k_gguf_writer *w = q4k_gguf_writer_new(0);
        q4k_gguf_writer_set_u32(w, "k", 1);
        q4k_gguf_writer_write_file(w, path, &err);
        q4k_gguf_writer_free(w);
        cap.n = 0;
        T_CHECK(q4k_gguf_open_file(path, &desc, &g, &err) == Q4K_OK && err.code == Q4K_OK && err.msg[0] == 0, "ok");
        T_CHECK(cap.n == 1 && cap.level == Q4K_LOG_INFO && contains(cap.last, "1 keys"), "info log: %s", cap.last);
        q4k_gguf_close(g);
        remove(path);
    }
}

/* ---- crafted bad files --------------------------------------------------- */

/* A valid base: 2 keys, 1 F32 tensor "w" of 8 values. */
static void base_ok(bb *b) {
    bb_hdr(b, 3, 1, 2);
    bb_kv_str(b, "general.architecture", "llama");
    bb_kv_u32(b, "general.alignment", 32);
    bb_tinfo(b, "w", 1, 8, 0, Q4K_TYPE_F32, 0);
    bb_pad(b, 32);
    bb_zeros(b, 32);
}

/* one tensor info (after a header with 1 tensor, no keys) and its data */
static void one_tensor(bb *b, const char *name, uint32_t nd, uint64_t ne0, uint64_t ne1, uint32_t type, uint64_t off,
                       size_t data) {
    bb_hdr(b, 3, 1, 0);
    bb_tinfo(b, name, nd, ne0, ne1, type, off);
    bb_pad(b, 32);
    bb_zeros(b, data);
}

/* one key of a raw type, value bytes to follow */
static void one_key(bb *b, const char *key, uint32_t type) {
    bb_hdr(b, 3, 0, 1);
    bb_str(b, key);
    bb_u32(b, type);
}

#define CASE(fn) static void fn(bb *b)
CASE(c_empty) { (void)b; }
CASE(c_bad_magic) { bb_put(b, "GGUX", 4); bb_u32(b, 3); bb_u64(b, 0); bb_u64(b, 0); }
CASE(c_elf) { bb_put(b, "\x7f" "ELF\x02\x01\x01", 7); bb_zeros(b, 40); }
CASE(c_lfs) {
    const char *s = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 4683073184\n";
    bb_put(b, s, strlen(s));
}
CASE(c_html) { const char *s = "\r\n  <!DOCTYPE html>\n<html><head><title>Sign in</title>"; bb_put(b, s, strlen(s)); }
CASE(c_html_bom) { const char *s = "\xef\xbb\xbf\n<HtMl lang=en><body>404</body></html>"; bb_put(b, s, strlen(s)); }
CASE(c_ggjt) { bb_put(b, "tjgg", 4); bb_u32(b, 3); bb_zeros(b, 100); }
CASE(c_version1) { bb_put(b, "GGUF", 4); bb_u32(b, 1); bb_u32(b, 0); bb_u32(b, 0); bb_zeros(b, 8); }
CASE(c_version4) { bb_hdr(b, 4, 0, 0); }
CASE(c_version0) { bb_hdr(b, 0, 0, 0); }
CASE(c_big_endian) { bb_put(b, "GGUF\0\0\0\x03", 8); bb_zeros(b, 16); }
CASE(c_trunc_header) { bb_put(b, "GGUF", 4); bb_u32(b, 3); bb_u64(b, 0); bb_u32(b, 0); }
CASE(c_tensor_count_huge) { bb_hdr(b, 3, (uint64_t)1 << 40, 0); bb_zeros(b, 200); }
CASE(c_tensor_count_max) { bb_hdr(b, 3, UINT64_MAX, 1); bb_kv_u32(b, "a", 1); }
CASE(c_tensor_count_after_kv) { bb_hdr(b, 3, 2, 1); bb_kv_str(b, "k.big", "0123456789012345678901234567890123456789"); bb_zeros(b, 40); }
CASE(c_kv_count_huge) { bb_hdr(b, 3, 0, UINT64_MAX); bb_zeros(b, 64); }
CASE(c_key_len_huge) { bb_hdr(b, 3, 0, 1); bb_u64(b, (uint64_t)1 << 62); bb_put(b, "abcdefgh", 8); bb_zeros(b, 8); }
CASE(c_key_len_over_limit) { bb_hdr(b, 3, 0, 1); bb_u64(b, 70000); bb_zeros(b, 70010); }
CASE(c_key_trunc) { bb_hdr(b, 3, 0, 1); bb_u64(b, 40); bb_put(b, "general.architect", 17); }
CASE(c_empty_key) { bb_hdr(b, 3, 0, 1); bb_str(b, ""); bb_u32(b, Q4K_GGUF_UINT32); bb_u32(b, 1); }
CASE(c_dup_key) { bb_hdr(b, 3, 0, 2); bb_kv_u32(b, "llama.block_count", 1); bb_kv_u32(b, "llama.block_count", 2); }
CASE(c_utf8_key) { bb_hdr(b, 3, 0, 1); bb_kv_u32(b, "llama.bad\xff" "key", 1); }
CASE(c_surrogate_key) { bb_hdr(b, 3, 0, 1); bb_kv_u32(b, "sur.\xed\xa0\x80", 1); }
CASE(c_nul_key) { bb_hdr(b, 3, 0, 1); bb_strn(b, "nul\0key", 7); bb_u32(b, Q4K_GGUF_UINT32); bb_u32(b, 1); }
CASE(c_value_type_13) { one_key(b, "llama.context_length", 13); bb_u32(b, 4096); }
CASE(c_value_trunc) { one_key(b, "llama.rope.freq_base", Q4K_GGUF_FLOAT64); bb_zeros(b, 5); }
CASE(c_array_elem_type) { one_key(b, "tokenizer.ggml.scores", Q4K_GGUF_ARRAY); bb_u32(b, 77); bb_u64(b, 1); bb_zeros(b, 8); }
CASE(c_array_count_overflow) { one_key(b, "tokenizer.ggml.ids", Q4K_GGUF_ARRAY); bb_u32(b, Q4K_GGUF_UINT64); bb_u64(b, (uint64_t)1 << 62); bb_zeros(b, 16); }
CASE(c_array_count_big) { one_key(b, "tokenizer.ggml.token_type", Q4K_GGUF_ARRAY); bb_u32(b, Q4K_GGUF_INT32); bb_u64(b, 1000); bb_zeros(b, 400); }
CASE(c_array_str_count) { one_key(b, "tokenizer.ggml.tokens", Q4K_GGUF_ARRAY); bb_u32(b, Q4K_GGUF_STRING); bb_u64(b, 100); bb_str(b, "a"); bb_str(b, "b"); }
CASE(c_array_str_trunc) { one_key(b, "tokenizer.ggml.merges", Q4K_GGUF_ARRAY); bb_u32(b, Q4K_GGUF_STRING); bb_u64(b, 2); bb_str(b, "a b"); bb_u64(b, 500); bb_zeros(b, 20); }
CASE(c_depth_bomb) {
    int i;
    one_key(b, "x.bomb", Q4K_GGUF_ARRAY);
    for (i = 0; i < 200; i++) { bb_u32(b, Q4K_GGUF_ARRAY); bb_u64(b, 1); }
    bb_u32(b, Q4K_GGUF_UINT8); bb_u64(b, 0);
}
CASE(c_bool_2) { one_key(b, "llama.use_parallel_residual", Q4K_GGUF_BOOL); bb_u8(b, 2); }
CASE(c_bool_arr) { one_key(b, "x.flags", Q4K_GGUF_ARRAY); bb_u32(b, Q4K_GGUF_BOOL); bb_u64(b, 3); bb_u8(b, 1); bb_u8(b, 0); bb_u8(b, 255); }
CASE(c_align_0) { bb_hdr(b, 3, 0, 1); bb_kv_u32(b, "general.alignment", 0); }
CASE(c_align_3) { bb_hdr(b, 3, 0, 1); bb_kv_u32(b, "general.alignment", 3); }
CASE(c_align_huge) { bb_hdr(b, 3, 0, 1); bb_kv_u32(b, "general.alignment", 1u << 31); }
CASE(c_align_str) { bb_hdr(b, 3, 0, 1); bb_kv_str(b, "general.alignment", "32"); }
CASE(c_align_neg) { one_key(b, "general.alignment", Q4K_GGUF_INT32); bb_u32(b, 0xffffffe0u); }
CASE(c_string_trunc) { one_key(b, "general.name", Q4K_GGUF_STRING); bb_u64(b, 100); bb_put(b, "Qwen2.5-7B", 10); }
CASE(c_ndims_0) { one_tensor(b, "blk.0.attn_q.weight", 0, 0, 0, Q4K_TYPE_F32, 0, 32); }
CASE(c_ndims_5) { bb_hdr(b, 3, 1, 0); bb_str(b, "blk.0.attn_k.weight"); bb_u32(b, 5); bb_zeros(b, 5 * 8 + 12); }
CASE(c_dim_0) { one_tensor(b, "blk.0.attn_q.weight", 2, 32, 0, Q4K_TYPE_F32, 0, 128); }
CASE(c_dim_huge) { one_tensor(b, "blk.0.attn_v.weight", 2, 32, (uint64_t)1 << 63, Q4K_TYPE_F32, 0, 128); }
CASE(c_dim_overflow) { one_tensor(b, "blk.0.ffn_up.weight", 2, (uint64_t)1 << 32, (uint64_t)1 << 32, Q4K_TYPE_F32, 0, 64); }
CASE(c_bytes_overflow) { one_tensor(b, "blk.0.ffn_gate.weight", 2, (uint64_t)1 << 40, (uint64_t)1 << 22, Q4K_TYPE_F32, 0, 64); }
CASE(c_type_99) { one_tensor(b, "output.weight", 2, 32, 2, 99, 0, 256); }
CASE(c_type_gap) { one_tensor(b, "output.weight", 2, 32, 2, 4, 0, 256); }
CASE(c_type_q3k) { one_tensor(b, "blk.0.ffn_down.weight", 2, 256, 1, Q4K_TYPE_Q3_K, 0, 110); }
CASE(c_q4k_shape) { one_tensor(b, "token_embd.weight", 2, 100, 4, Q4K_TYPE_Q4_K, 0, 1024); }
CASE(c_offset_unaligned) { one_tensor(b, "output_norm.weight", 1, 8, 0, Q4K_TYPE_F32, 4, 64); }
CASE(c_offset_align64) {
    bb_hdr(b, 3, 2, 1);
    bb_kv_u32(b, "general.alignment", 64);
    bb_tinfo(b, "a", 1, 16, 0, Q4K_TYPE_F32, 0);
    bb_tinfo(b, "b.weight", 1, 8, 0, Q4K_TYPE_F32, 96);
    bb_pad(b, 64);
    bb_zeros(b, 256);
}
CASE(c_offset_past_end) { one_tensor(b, "output_norm.weight", 1, 8, 0, Q4K_TYPE_F32, 4096, 32); }
CASE(c_offset_wrap) { one_tensor(b, "output_norm.weight", 1, 8, 0, Q4K_TYPE_F32, UINT64_MAX - 31, 32); }
CASE(c_data_past_end) { one_tensor(b, "output.weight", 2, 32, 4, Q4K_TYPE_F32, 0, 500); }
CASE(c_overlap) {
    bb_hdr(b, 3, 2, 0);
    bb_tinfo(b, "blk.0.attn_q.weight", 1, 64, 0, Q4K_TYPE_F32, 0);
    bb_tinfo(b, "blk.0.attn_k.weight", 1, 32, 0, Q4K_TYPE_F32, 128);
    bb_pad(b, 32);
    bb_zeros(b, 256);
}
CASE(c_dup_tensor) {
    bb_hdr(b, 3, 2, 0);
    bb_tinfo(b, "blk.1.attn_q.weight", 1, 8, 0, Q4K_TYPE_F32, 0);
    bb_tinfo(b, "blk.1.attn_q.weight", 1, 8, 0, Q4K_TYPE_F32, 32);
    bb_pad(b, 32);
    bb_zeros(b, 64);
}
CASE(c_empty_name) { one_tensor(b, "", 1, 8, 0, Q4K_TYPE_F32, 0, 32); }
CASE(c_long_name) { one_tensor(b, "blk.0.a_very_long_tensor_name_that_goes_on_and_on_past_the_limit.weight", 1, 8, 0, Q4K_TYPE_F32, 0, 32); }
CASE(c_utf8_name) { one_tensor(b, "blk.0.\xc3(.weight", 1, 8, 0, Q4K_TYPE_F32, 0, 32); }
CASE(c_nul_name) { bb_hdr(b, 3, 1, 0); bb_strn(b, "w\0x", 3); bb_u32(b, 1); bb_u64(b, 8); bb_u32(b, 0); bb_u64(b, 0); bb_pad(b, 32); bb_zeros(b, 32); }
CASE(c_trunc_tinfo) { bb_hdr(b, 3, 1, 0); bb_str(b, "blk.0.attn_output.weight"); bb_u32(b, 2); bb_u64(b, 4096); bb_zeros(b, 4); }
CASE(c_trunc_tinfo_type) { bb_hdr(b, 3, 1, 0); bb_str(b, "blk.0.ffn_norm.weight"); bb_u32(b, 1); bb_u64(b, 8); bb_u32(b, 0); bb_zeros(b, 3); }
CASE(c_trunc_tname) { bb_hdr(b, 3, 1, 0); bb_u64(b, 40); bb_put(b, "blk.0.attn_q", 12); bb_zeros(b, 21); }
#undef CASE

typedef struct bad_case {
    const char *label;
    void (*build)(bb *);
    q4k_result code;
    const char *needle; /* the message must contain it */
} bad_case;

static const bad_case bad_cases[] = {
    {"empty file", c_empty, Q4K_ERR_NOT_GGUF, "empty"},
    {"bad magic", c_bad_magic, Q4K_ERR_NOT_GGUF, "GGUX"},
    {"ELF binary", c_elf, Q4K_ERR_NOT_GGUF, "magic"},
    {"Git LFS pointer", c_lfs, Q4K_ERR_LFS_POINTER, "Git LFS"},
    {"HTML page", c_html, Q4K_ERR_HTML, "HTML"},
    {"HTML with BOM, mixed case", c_html_bom, Q4K_ERR_HTML, "HTML"},
    {"old GGJT file", c_ggjt, Q4K_ERR_NOT_GGUF, "GGJT"},
    {"version 1", c_version1, Q4K_ERR_BAD_VERSION, "version 1"},
    {"version 4", c_version4, Q4K_ERR_BAD_VERSION, "version 4"},
    {"version 0", c_version0, Q4K_ERR_BAD_VERSION, "version 0"},
    {"big-endian file", c_big_endian, Q4K_ERR_BAD_VERSION, "big-endian"},
    {"truncated header", c_trunc_header, Q4K_ERR_TRUNCATED, "header"},
    {"tensor_count huge", c_tensor_count_huge, Q4K_ERR_BAD_COUNT, "tensor_count 1099511627776"},
    {"tensor_count 2^64-1", c_tensor_count_max, Q4K_ERR_BAD_COUNT, "tensor_count"},
    {"tensor_count vs bytes after kvs", c_tensor_count_after_kv, Q4K_ERR_BAD_COUNT, "after the metadata"},
    {"kv_count huge", c_kv_count_huge, Q4K_ERR_BAD_COUNT, "kv_count"},
    {"key length 2^62", c_key_len_huge, Q4K_ERR_BAD_KEY, "key length 4611686018427387904"},
    {"key length over 65535", c_key_len_over_limit, Q4K_ERR_BAD_KEY, "70000"},
    {"key cut by end of file", c_key_trunc, Q4K_ERR_TRUNCATED, "key"},
    {"empty key", c_empty_key, Q4K_ERR_BAD_KEY, "empty"},
    {"duplicate key", c_dup_key, Q4K_ERR_DUPLICATE_KEY, "'llama.block_count'"},
    {"non-UTF-8 key", c_utf8_key, Q4K_ERR_BAD_UTF8, "llama.bad\\xffkey"},
    {"surrogate in key", c_surrogate_key, Q4K_ERR_BAD_UTF8, "sur."},
    {"NUL in key", c_nul_key, Q4K_ERR_BAD_KEY, "NUL"},
    {"value type 13", c_value_type_13, Q4K_ERR_BAD_VALUE_TYPE, "'llama.context_length'"},
    {"value cut by end of file", c_value_trunc, Q4K_ERR_TRUNCATED, "'llama.rope.freq_base'"},
    {"array element type 77", c_array_elem_type, Q4K_ERR_BAD_ARRAY, "'tokenizer.ggml.scores'"},
    {"array count overflow", c_array_count_overflow, Q4K_ERR_BAD_COUNT, "'tokenizer.ggml.ids'"},
    {"array count > bytes", c_array_count_big, Q4K_ERR_BAD_COUNT, "'tokenizer.ggml.token_type'"},
    {"string array count > bytes", c_array_str_count, Q4K_ERR_BAD_COUNT, "'tokenizer.ggml.tokens'"},
    {"string in array truncated", c_array_str_trunc, Q4K_ERR_BAD_STRING, "'tokenizer.ggml.merges'"},
    {"nested array depth bomb", c_depth_bomb, Q4K_ERR_BAD_ARRAY, "'x.bomb'"},
    {"bool byte 2", c_bool_2, Q4K_ERR_BAD_BOOL, "'llama.use_parallel_residual'"},
    {"bool array byte 255", c_bool_arr, Q4K_ERR_BAD_BOOL, "'x.flags'"},
    {"alignment 0", c_align_0, Q4K_ERR_BAD_ALIGNMENT, "'general.alignment'"},
    {"alignment 3", c_align_3, Q4K_ERR_BAD_ALIGNMENT, "alignment 3"},
    {"alignment 2^31", c_align_huge, Q4K_ERR_BAD_ALIGNMENT, "2147483648"},
    {"alignment of type string", c_align_str, Q4K_ERR_BAD_ALIGNMENT, "STRING"},
    {"alignment negative", c_align_neg, Q4K_ERR_BAD_ALIGNMENT, "-32"},
    {"string value truncated", c_string_trunc, Q4K_ERR_BAD_STRING, "'general.name'"},
    {"n_dims 0", c_ndims_0, Q4K_ERR_BAD_DIMS, "'blk.0.attn_q.weight'"},
    {"n_dims 5", c_ndims_5, Q4K_ERR_BAD_DIMS, "'blk.0.attn_k.weight'"},
    {"dim 0", c_dim_0, Q4K_ERR_BAD_DIMS, "tensor 'blk.0.attn_q.weight' at offset 63: dim 1 is 0"},
    {"dim 2^63", c_dim_huge, Q4K_ERR_BAD_DIMS, "'blk.0.attn_v.weight'"},
    {"element count overflow", c_dim_overflow, Q4K_ERR_OVERFLOW, "'blk.0.ffn_up.weight'"},
    {"byte size overflow", c_bytes_overflow, Q4K_ERR_OVERFLOW, "'blk.0.ffn_gate.weight'"},
    {"type id 99", c_type_99, Q4K_ERR_BAD_TYPE, "'output.weight'"},
    {"type id 4 (removed Q4_2)", c_type_gap, Q4K_ERR_BAD_TYPE, "type id 4"},
    {"unimplemented Q3_K", c_type_q3k, Q4K_ERR_UNSUPPORTED_TYPE, "tensor 'blk.0.ffn_down.weight'"},
    {"Q4_K ne0 not a multiple of 256", c_q4k_shape, Q4K_ERR_BAD_SHAPE, "'token_embd.weight'"},
    {"offset unaligned", c_offset_unaligned, Q4K_ERR_BAD_OFFSET, "'output_norm.weight'"},
    {"offset 32- but not 64-aligned", c_offset_align64, Q4K_ERR_BAD_OFFSET, "'b.weight'"},
    {"offset past end of file", c_offset_past_end, Q4K_ERR_BAD_OFFSET, "'output_norm.weight'"},
    {"offset wraps around", c_offset_wrap, Q4K_ERR_BAD_OFFSET, "'output_norm.weight'"},
    {"tensor data past end", c_data_past_end, Q4K_ERR_TRUNCATED, "'output.weight'"},
    {"overlapping tensors", c_overlap, Q4K_ERR_TENSOR_OVERLAP, "'blk.0.attn_q.weight'"},
    {"duplicate tensor name", c_dup_tensor, Q4K_ERR_DUPLICATE_TENSOR, "'blk.1.attn_q.weight'"},
    {"empty tensor name", c_empty_name, Q4K_ERR_BAD_TENSOR_NAME, "empty"},
    {"tensor name of 71 bytes", c_long_name, Q4K_ERR_BAD_TENSOR_NAME, "blk.0.a_very_long"},
    {"non-UTF-8 tensor name", c_utf8_name, Q4K_ERR_BAD_UTF8, "blk.0.\\xc3(.weight"},
    {"NUL in tensor name", c_nul_name, Q4K_ERR_BAD_TENSOR_NAME, "NUL"},
    {"truncated in tensor dims", c_trunc_tinfo, Q4K_ERR_TRUNCATED, "'blk.0.attn_output.weight'"},
    {"truncated before tensor offset", c_trunc_tinfo_type, Q4K_ERR_TRUNCATED, "'blk.0.ffn_norm.weight'"},
    {"truncated in tensor name", c_trunc_tname, Q4K_ERR_TRUNCATED, "tensor name"},
};
#define N_BAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

static void test_base_file_is_valid(void) {
    bb b;
    q4k_gguf *g = NULL;
    q4k_error err;
    unsigned char *copy;
    memset(&b, 0, sizeof b);
    base_ok(&b);
    T_CHECK(open_exact(b.p, b.n, NULL, &g, &err, &copy) == Q4K_OK, "%s", err.msg);
    if (g) {
        T_CHECK(q4k_gguf_tensor_count(g) == 1 && q4k_gguf_tensor(g, 0)->nbytes == 32 && q4k_gguf_data_offset(g) == 160,
                "base layout: data at %zu", q4k_gguf_data_offset(g));
        q4k_gguf_close(g);
    }
    free(copy);
    free(b.p);
}

static void test_bad_files(void) {
    int i, distinct = 0;
    int seen[Q4K_RESULT_COUNT];
    char path[512];
    memset(seen, 0, sizeof seen);
    tmp_path(path, sizeof path, "bad");
    for (i = 0; i < N_BAD; i++) {
        const bad_case *c = &bad_cases[i];
        bb b;
        q4k_gguf *g = (q4k_gguf *)&b;
        q4k_error err;
        unsigned char *copy;
        q4k_result r;
        memset(&b, 0, sizeof b);
        c->build(&b);
        memset(&err, 0, sizeof err);
        r = open_exact(b.p, b.n, NULL, &g, &err, &copy);
        T_CHECK(r == c->code, "%s: got %s, want %s: %s", c->label, q4k_result_name(r), q4k_result_name(c->code), err.msg);
        T_CHECK(g == NULL, "%s: out not NULL", c->label);
        T_CHECK(err.code == r, "%s: err.code", c->label);
        T_CHECK(err.msg[0] && contains(err.msg, c->needle), "%s: message lacks \"%s\": %s", c->label, c->needle, err.msg);
        T_CHECK(!strchr(err.msg, '\n'), "%s: message spans lines", c->label);
        T_CHECK(contains(err.msg, "offset"), "%s: message names no offset: %s", c->label, err.msg);
        if (g) q4k_gguf_close(g);
        free(copy);
        /* from a path: same code, and the message starts with the path */
        write_all(path, b.p, b.n);
        g = NULL;
        r = q4k_gguf_open_file(path, NULL, &g, &err);
        T_CHECK(r == c->code && !strncmp(err.msg, path, strlen(path)) && contains(err.msg, c->needle),
                "%s from a file: %s: %s", c->label, q4k_result_name(r), err.msg);
        if (g) q4k_gguf_close(g);
        if (!seen[r]) distinct++;
        seen[r] = 1;
        free(b.p);
    }
    remove(path);
    T_CHECK(N_BAD >= 25, "%d cases", N_BAD);
    T_CHECK(distinct >= 20, "only %d distinct result codes", distinct);
    printf("  %d crafted bad files, %d distinct result codes\n", N_BAD, distinct);
}

/* ---- fuzz -------------------------------------------------------------- */

/* touches everything an accepted file offers, so ASan sees every read */
static uint64_t walk(const q4k_gguf *g, FILE *sink) {
    uint64_t acc = 0, j;
    int64_t i;
    q4k_gguf_value v, e;
    for (i = 0; i < q4k_gguf_key_count(g); i++) {
        if (q4k_gguf_key_value(g, i, &v) != Q4K_OK) continue;
        acc += strlen(q4k_gguf_key(g, i)) + v.size;
        if (v.type == Q4K_GGUF_ARRAY)
            for (j = 0; j < v.count && j < 64; j++)
                if (q4k_gguf_value_elem(&v, j, &e) == Q4K_OK && e.size) acc += ((const unsigned char *)e.data)[e.size - 1];
        if (v.type == Q4K_GGUF_STRING) {
            const char *s;
            q4k_gguf_get_str(g, q4k_gguf_key(g, i), &s);
            acc += strlen(s);
        }
    }
    for (i = 0; i < q4k_gguf_tensor_count(g); i++) {
        const q4k_tensor *t = q4k_gguf_tensor(g, i);
        acc += ((const unsigned char *)t->data)[0] + ((const unsigned char *)t->data)[t->nbytes - 1];
    }
    if (sink) {
        q4k_gguf_print(g, sink, 0);
        q4k_gguf_print(g, sink, 1);
    }
    return acc;
}

static void test_fuzz(void) {
    char path[512];
    unsigned char *data[N_TYPES], *file, *buf;
    size_t n = 0, len, data_end = 0, data_off = 0;
    int64_t i;
    int iters = t_quick() ? 3000 : 30000, it, accepted = 0, refused = 0;
    q4k_gguf_writer *w = q4k_gguf_writer_new(0);
    q4k_gguf *g;
    q4k_error err;
    t_rng rng;
    FILE *sink = tmpfile();
    rng.s = 12345;
    tmp_path(path, sizeof path, "fuzz");
    fill_writer(w, data, 3);
    q4k_gguf_writer_write_file(w, path, &err);
    q4k_gguf_writer_free(w);
    free_data(data);
    file = t_read_file(path, &n);
    remove(path);
    T_CHECK(file && n > 0, "fuzz seed");
    if (!file) return;
    if (q4k_gguf_open_memory(file, n, NULL, &g, &err) == Q4K_OK) {
        for (i = 0; i < q4k_gguf_tensor_count(g); i++) {
            const q4k_tensor *t = q4k_gguf_tensor(g, i);
            if (t->file_offset + t->nbytes > data_end) data_end = (size_t)(t->file_offset + t->nbytes);
        }
        data_off = q4k_gguf_data_offset(g);
        q4k_gguf_close(g);
    }
    T_CHECK(data_off > 0 && data_end > data_off, "seed layout");
    /* every truncation: refused while it cuts into header or data */
    for (len = 0; len < n; len++) {
        q4k_result r = open_exact(file, len, NULL, &g, &err, &buf);
        if (r == Q4K_OK) {
            T_CHECK(len >= data_end, "truncated to %zu (data ends at %zu) accepted", len, data_end);
            walk(g, NULL);
            q4k_gguf_close(g);
        } else {
            T_CHECK(err.msg[0] && !strchr(err.msg, '\n'), "len %zu: %s", len, err.msg);
        }
        free(buf);
    }
    /* random flips, mostly in the header */
    for (it = 0; it < iters; it++) {
        unsigned char *m = (unsigned char *)malloc(n);
        int flips = 1 + (int)(t_rng_next(&rng) % 4), f;
        q4k_result r;
        memcpy(m, file, n);
        for (f = 0; f < flips; f++) {
            size_t span = (t_rng_next(&rng) % 10) ? data_off : n;
            size_t pos = (size_t)(t_rng_next(&rng) % span);
            unsigned mode = (unsigned)(t_rng_next(&rng) % 3);
            if (mode == 0) m[pos] ^= (unsigned char)(1u << (t_rng_next(&rng) % 8));
            else if (mode == 1) m[pos] = (unsigned char)t_rng_next(&rng);
            else m[pos] = (unsigned char)(t_rng_next(&rng) % 2 ? 0xff : 0x00);
        }
        len = (t_rng_next(&rng) % 8) ? n : (size_t)(t_rng_next(&rng) % (n + 1));
        r = open_exact(m, len, NULL, &g, &err, &buf);
        if (r == Q4K_OK) {
            accepted++;
            walk(g, (it % 16 == 0) ? sink : NULL);
            q4k_gguf_close(g);
        } else {
            refused++;
            T_CHECK(err.code == r && err.msg[0] && !strchr(err.msg, '\n'), "flip %d: %s", it, err.msg);
        }
        free(buf);
        free(m);
        if (sink && it % 256 == 0) rewind(sink);
    }
    printf("  fuzz: %zu truncations, %d flips (%d accepted, %d refused)\n", n, iters, accepted, refused);
    T_CHECK(refused > iters / 10, "too few refusals: %d", refused);
    if (sink) fclose(sink);
    free(file);
}

/* ---- scale: vocab-sized string arrays and many tensors -------------------- */

static void test_big_vocab_and_many_tensors(void) {
    char path[512];
    int n_tok = t_quick() ? 20000 : 152064, n_t = t_quick() ? 300 : 1000, i;
    char **toks = (char **)malloc(sizeof(char *) * (size_t)n_tok);
    float *scores = (float *)malloc(sizeof(float) * (size_t)n_tok);
    float row[32];
    q4k_gguf_writer *w = q4k_gguf_writer_new(0);
    q4k_gguf *g = NULL;
    q4k_error err;
    int64_t ne[1] = {32};
    t_rng rng;
    rng.s = 99;
    for (i = 0; i < n_tok; i++) {
        toks[i] = (char *)malloc(24);
        snprintf(toks[i], 24, "t%d_%x", i, (unsigned)(i * 2654435761u));
        scores[i] = (float)-i;
    }
    for (i = 0; i < 32; i++) row[i] = (float)i;
    q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n_tok);
    q4k_gguf_writer_set_arr(w, "tokenizer.ggml.scores", Q4K_GGUF_FLOAT32, scores, (uint64_t)n_tok);
    for (i = 0; i < n_t; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.w%d.weight", i / 7, i % 7);
        q4k_gguf_writer_add_tensor(w, name, Q4K_TYPE_F32, 1, ne, row);
    }
    tmp_path(path, sizeof path, "big");
    T_CHECK(q4k_gguf_writer_write_file(w, path, &err) == Q4K_OK, "%s", err.msg);
    q4k_gguf_writer_free(w);
    T_CHECK(q4k_gguf_open_file(path, NULL, &g, &err) == Q4K_OK, "%s", err.msg);
    if (g) {
        const char *s;
        size_t len;
        uint64_t cnt = 0;
        const void *p;
        T_CHECK(q4k_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &cnt) == Q4K_OK && cnt == (uint64_t)n_tok, "count");
        for (i = 0; i < 2000; i++) {
            uint64_t k = t_rng_next(&rng) % (uint64_t)n_tok;
            T_CHECK(q4k_gguf_get_arr_str(g, "tokenizer.ggml.tokens", k, &s, &len) == Q4K_OK && len == strlen(toks[k]) &&
                        !memcmp(s, toks[k], len),
                    "token %llu", (unsigned long long)k);
        }
        T_CHECK(q4k_gguf_get_arr_data(g, "tokenizer.ggml.scores", &p) == Q4K_OK &&
                    !memcmp(p, scores, sizeof(float) * (size_t)n_tok),
                "scores");
        for (i = 0; i < n_t; i++) {
            char name[64];
            const q4k_tensor *t;
            snprintf(name, sizeof name, "blk.%d.w%d.weight", i / 7, i % 7);
            t = q4k_gguf_find_tensor(g, name);
            T_CHECK(t == q4k_gguf_tensor(g, i) && t && t->offset == (uint64_t)i * 128, "tensor %s", name);
        }
        q4k_gguf_close(g);
    }
    remove(path);
    for (i = 0; i < n_tok; i++) free(toks[i]);
    free(toks);
    free(scores);
}

/* ---- printing ------------------------------------------------------------ */

static char *print_to_string(const q4k_gguf *g, int json) {
    FILE *f = tmpfile();
    long n;
    char *s;
    if (!f) return NULL;
    q4k_gguf_print(g, f, json);
    n = ftell(f);
    rewind(f);
    s = (char *)calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = 0;
    fclose(f);
    return s;
}

static void test_print(void) {
    char path[512];
    unsigned char *data[N_TYPES];
    int32_t many[50];
    int i;
    q4k_gguf_writer *w = q4k_gguf_writer_new(0);
    q4k_gguf *g = NULL;
    q4k_error err;
    char *txt, *js;
    for (i = 0; i < 50; i++) many[i] = i;
    fill_writer(w, data, 5);
    q4k_gguf_writer_set_arr(w, "a.many", Q4K_GGUF_INT32, many, 50);
    q4k_gguf_writer_set_str(w, "ctl", "a\x01z\xff");
    tmp_path(path, sizeof path, "print");
    q4k_gguf_writer_write_file(w, path, &err);
    q4k_gguf_writer_free(w);
    free_data(data);
    T_CHECK(q4k_gguf_open_file(path, NULL, &g, &err) == Q4K_OK, "%s", err.msg);
    remove(path);
    if (!g) return;
    txt = print_to_string(g, 0);
    js = print_to_string(g, 1);
    T_CHECK(txt && contains(txt, "[0, 1, 2, 3, 4, 5, 6, 7, ... (50 total)]"), "abbreviated array:\n%s", txt ? txt : "");
    T_CHECK(txt && contains(txt, "t.q4_k") && contains(txt, "Q4_K") && contains(txt, "[512, 3]"), "tensor row");
    T_CHECK(txt && contains(txt, "[96, 1, 2, 2]") && contains(txt, "Q5_0"), "4-d tensor row");
    T_CHECK(txt && contains(txt, "[[1, -2, 3], [\"x\", \"\", \"z\xc3\xa9\"], [[1.5, -0.25]], []]"), "nested");
    T_CHECK(txt && contains(txt, "\"a\\x01z\\xff\""), "escaped string");
    T_CHECK(txt && contains(txt, "1e-06") && contains(txt, "0.15625"), "shortest floats");
    T_CHECK(js && js[0] == '{' && contains(js, "\"key\": \"a.many\", \"type\": \"ARRAY\", \"elem_type\": \"INT32\", \"count\": 50"),
            "json array");
    T_CHECK(js && contains(js, "\"truncated\": true") && contains(js, "\"value\": \"a\\u0001z\\ufffd\""), "json escapes");
    T_CHECK(js && contains(js, "\"name\": \"t.q6_k\", \"type\": \"Q6_K\", \"type_id\": 14"), "json tensor");
    T_CHECK(js && contains(js, "\"value\": \"name \xe2\x9c\x93 \\\"q\\\"\\n\""), "json utf-8 kept");
    free(txt);
    free(js);
    q4k_gguf_close(g);
}

static void test_type_names(void) {
    T_CHECK(!strcmp(q4k_gguf_type_name(Q4K_GGUF_FLOAT64), "FLOAT64"), "FLOAT64");
    T_CHECK(!strcmp(q4k_gguf_type_name(Q4K_GGUF_UINT8), "UINT8"), "UINT8");
    T_CHECK(!strcmp(q4k_gguf_type_name((q4k_gguf_type)13), "unknown"), "13");
}

int main(void) {
    (void)t_rng_gauss;
    T_RUN(test_type_names);
    T_RUN(test_roundtrip_align32);
    T_RUN(test_roundtrip_align64);
    T_RUN(test_roundtrip_align4096);
    T_RUN(test_getter_mismatch);
    T_RUN(test_writer_streaming);
    T_RUN(test_writer_refusals);
    T_RUN(test_unimplemented_type);
    T_RUN(test_open_errors);
    T_RUN(test_base_file_is_valid);
    T_RUN(test_bad_files);
    T_RUN(test_print);
    T_RUN(test_big_vocab_and_many_tensors);
    T_RUN(test_fuzz);
    T_EXIT();
}
