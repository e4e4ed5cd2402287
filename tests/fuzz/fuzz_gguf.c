/* libFuzzer target: the GGUF reader from memory (q4k_gguf_open_memory), then
   every accessor over what it accepted. The reader promises that a file it
   opens is validated: every value and tensor lies inside the buffer, and
   nothing after the open can fail on the file's contents. */
#include "fuzz.h"

#define GG "gguf"

/* walk a value and (up to a bound) its elements; depth bounds nesting */
static void fuzz_gguf_walk(const q4k_gguf_value *v, const unsigned char *base, size_t size, int depth) {
    uint64_t i;
    FUZZ_CHECK(GG, v->file_offset <= size && v->size <= size - v->file_offset, "value at %llu + %llu past the end %zu",
               (unsigned long long)v->file_offset, (unsigned long long)v->size, size);
    FUZZ_CHECK(GG, v->size == 0 || (const unsigned char *)v->data == base + v->file_offset, "value data not at its offset");
    if (v->type != Q4K_GGUF_ARRAY) return;
    FUZZ_CHECK(GG, depth < 16, "nesting deeper than 16 accepted");
    for (i = 0; i < v->count && i < 64; i++) {
        q4k_gguf_value e;
        FUZZ_CHECK(GG, q4k_gguf_value_elem(v, i, &e) == Q4K_OK, "element %llu of %llu", (unsigned long long)i,
                   (unsigned long long)v->count);
        FUZZ_CHECK(GG, e.type == v->elem_type, "element type %d in an array of %d", (int)e.type, (int)v->elem_type);
        fuzz_gguf_walk(&e, base, size, depth + 1);
    }
    if (v->count) {
        q4k_gguf_value e;
        FUZZ_CHECK(GG, q4k_gguf_value_elem(v, v->count - 1, &e) == Q4K_OK, "last element");
        FUZZ_CHECK(GG, q4k_gguf_value_elem(v, v->count, &e) == Q4K_ERR_INVALID_ARG, "element past the end");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *null_out;
    q4k_gguf_desc d;
    q4k_gguf *g = NULL;
    q4k_error err;
    q4k_result r;
    int64_t i, nk, nt;
    if (!null_out) null_out = fopen("/dev/null", "w");
    memset(&d, 0, sizeof d);
    d.allow_unimplemented = 1;
    r = q4k_gguf_open_memory(data, size, &d, &g, &err);
    if (r != Q4K_OK) {
        FUZZ_CHECK(GG, g == NULL && err.code == r && FUZZ_ONE_LINE(&err), "refused (%s) without a one-line message: '%s'",
                   q4k_result_name(r), err.msg);
        return 0;
    }
    FUZZ_CHECK(GG, q4k_gguf_file_size(g) == size, "file size %zu of %zu bytes", q4k_gguf_file_size(g), size);
    nk = q4k_gguf_key_count(g);
    for (i = 0; i < nk; i++) {
        const char *key = q4k_gguf_key(g, i);
        q4k_gguf_value v;
        q4k_gguf_type et;
        uint64_t count;
        FUZZ_CHECK(GG, key != NULL, "key %lld has no name", (long long)i);
        FUZZ_CHECK(GG, q4k_gguf_key_value(g, i, &v) == Q4K_OK, "key %lld has no value", (long long)i);
        FUZZ_CHECK(GG, v.type == q4k_gguf_key_type(g, i), "key %lld: two types", (long long)i);
        /* duplicate keys are refused at open, so the name finds this key */
        FUZZ_CHECK(GG, q4k_gguf_find_key(g, key) == i, "key '%s' finds %lld, not %lld", key,
                   (long long)q4k_gguf_find_key(g, key), (long long)i);
        fuzz_gguf_walk(&v, data, size, 0);
        if (v.type == Q4K_GGUF_STRING) {
            const char *s;
            FUZZ_CHECK(GG, q4k_gguf_get_str(g, key, &s) == Q4K_OK && s, "string '%s'", key);
        } else if (v.type == Q4K_GGUF_ARRAY) {
            FUZZ_CHECK(GG, q4k_gguf_get_arr(g, key, &et, &count) == Q4K_OK && et == v.elem_type && count == v.count,
                       "array '%s'", key);
            if (et == Q4K_GGUF_STRING && count) {
                const char *s;
                size_t len;
                FUZZ_CHECK(GG, q4k_gguf_get_arr_str(g, key, count - 1, &s, &len) == Q4K_OK, "last string of '%s'", key);
                FUZZ_CHECK(GG, (const uint8_t *)s >= data && len <= size && (const uint8_t *)s - data <= (ptrdiff_t)(size - len),
                           "string of '%s' outside the buffer", key);
            } else if (et != Q4K_GGUF_ARRAY && et != Q4K_GGUF_STRING) {
                const void *p;
                FUZZ_CHECK(GG, q4k_gguf_get_arr_data(g, key, &p) == Q4K_OK, "data of '%s'", key);
            }
        } else {
            uint32_t u32;
            uint64_t u64;
            int32_t i32;
            int64_t i64;
            float f;
            double f64;
            int b;
            /* typed getters either read the value or say it is another type */
            (void)q4k_gguf_get_u32(g, key, &u32);
            (void)q4k_gguf_get_u64(g, key, &u64);
            (void)q4k_gguf_get_i32(g, key, &i32);
            (void)q4k_gguf_get_i64(g, key, &i64);
            (void)q4k_gguf_get_f32(g, key, &f);
            (void)q4k_gguf_get_f64(g, key, &f64);
            (void)q4k_gguf_get_bool(g, key, &b);
        }
    }
    nt = q4k_gguf_tensor_count(g);
    /* without tensors the padding before the (empty) data section may be
       missing, so only then may the data offset pass the end */
    FUZZ_CHECK(GG, nt == 0 || q4k_gguf_data_offset(g) < size, "data offset %zu past the end %zu with %lld tensors",
               q4k_gguf_data_offset(g), size, (long long)nt);
    for (i = 0; i < nt; i++) {
        const q4k_tensor *t = q4k_gguf_tensor(g, i);
        const unsigned char *p;
        FUZZ_CHECK(GG, t && t->name && t->index == i, "tensor %lld", (long long)i);
        p = (const unsigned char *)t->data;
        FUZZ_CHECK(GG, t->nbytes == 0 || (p >= data && t->nbytes <= size && (size_t)(p - data) <= size - t->nbytes),
                   "tensor '%s' (%zu bytes) outside the buffer", t->name, t->nbytes);
        FUZZ_CHECK(GG, t->n_dims >= 1 && t->n_dims <= 4, "tensor '%s' has %d dims", t->name, t->n_dims);
        FUZZ_CHECK(GG, q4k_gguf_find_tensor(g, t->name) == t, "tensor '%s' is not found by its name", t->name);
    }
    if (null_out) {
        q4k_gguf_print(g, null_out, 0);
        q4k_gguf_print(g, null_out, 1);
    }
    q4k_gguf_close(g);
    return 0;
}
