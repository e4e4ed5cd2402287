/* tool_gguf_write - writes the sample GGUF that tests/test_info.sh and
   tests/test_gguf_py.py read: every metadata value type, arrays of every
   element type, string and nested arrays, and one tensor of every type q4k
   implements, with bytes given by a formula the tests repeat:
       byte j of tensor i = (j * 131 + i * 29 + 7) mod 256

   usage: tool_gguf_write PATH [--align N] [--stream] [--q3k]
      --align N   data alignment (default 32; writes general.alignment)
      --stream    write with begin / write_tensor / end instead of write_file
      --q3k       add a Q3_K tensor (a type q4k knows but does not run) */
#include "q4k.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sample_tensor {
    const char *name;
    q4k_type type;
    int n_dims;
    int64_t ne[4];
} sample_tensor;

static const sample_tensor tensors[] = {
    {"token_embd.weight", Q4K_TYPE_Q4_K, 2, {256, 4, 1, 1}},
    {"blk.0.attn_q.weight", Q4K_TYPE_Q5_K, 2, {512, 2, 1, 1}},
    {"blk.0.ffn_down.weight", Q4K_TYPE_Q6_K, 2, {256, 3, 1, 1}},
    {"blk.0.attn_k.weight", Q4K_TYPE_Q8_0, 2, {64, 3, 1, 1}},
    {"blk.0.attn_v.weight", Q4K_TYPE_Q4_0, 3, {32, 2, 2, 1}},
    {"blk.0.ffn_up.weight", Q4K_TYPE_Q5_0, 2, {96, 1, 1, 1}},
    {"blk.0.attn_norm.weight", Q4K_TYPE_F32, 1, {16, 1, 1, 1}},
    {"blk.0.ffn_gate.weight", Q4K_TYPE_F16, 4, {8, 2, 3, 2}},
    {"output_norm.weight", Q4K_TYPE_BF16, 1, {24, 1, 1, 1}},
};
static const sample_tensor q3k_tensor = {"blk.0.q3k.weight", Q4K_TYPE_Q3_K, 2, {256, 2, 1, 1}};

static int fail(const char *what, const q4k_error *err) {
    fprintf(stderr, "tool_gguf_write: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    return 1;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    unsigned align = 32;
    int stream = 0, q3k = 0, i, n_t;
    size_t j;
    q4k_gguf_writer *w;
    q4k_error err;
    unsigned char *data[16];
    sample_tensor all[16];
    q4k_result r = Q4K_OK;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--align") && i + 1 < argc) align = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--stream")) stream = 1;
        else if (!strcmp(argv[i], "--q3k")) q3k = 1;
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            fprintf(stderr, "usage: tool_gguf_write PATH [--align N] [--stream] [--q3k]\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: tool_gguf_write PATH [--align N] [--stream] [--q3k]\n");
        return 2;
    }
    if (!(w = q4k_gguf_writer_new(align))) return fail("bad alignment or out of memory", NULL);

    {
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
        static const float a_f32[] = {0.5f, -1.25f, 1e-6f};
        static const uint64_t a_u64[] = {18446744073709551615ULL};
        static const int64_t a_i64[] = {-9223372036854775807LL - 1, 9223372036854775807LL};
        static const double a_f64[] = {3.141592653589793, -0.1};
        static const uint8_t a_bool[] = {1, 0, 1};
        static const char *const a_str[] = {"", "hello", "h\xc3\xa9llo", "quote\" back\\slash", "tab\tnl\n"};
        int32_t a_i32_long[100];
        char tokbuf[20][8];
        const char *toks[20];
        static const int32_t in_i32[] = {1, 2, 3};
        static const char *const in_str[] = {"x", "y"};
        static const float in_f32[] = {1.5f};
        q4k_gguf_arr deep[1], nested[4];
        for (i = 0; i < 100; i++) a_i32_long[i] = i * i - 50;
        for (i = 0; i < 20; i++) {
            snprintf(tokbuf[i], sizeof tokbuf[i], "tok%d", i);
            toks[i] = tokbuf[i];
        }
        deep[0].elem_type = Q4K_GGUF_FLOAT32; deep[0].count = 1; deep[0].data = in_f32;
        nested[0].elem_type = Q4K_GGUF_INT32; nested[0].count = 3; nested[0].data = in_i32;
        nested[1].elem_type = Q4K_GGUF_STRING; nested[1].count = 2; nested[1].data = in_str;
        nested[2].elem_type = Q4K_GGUF_ARRAY; nested[2].count = 1; nested[2].data = deep;
        nested[3].elem_type = Q4K_GGUF_UINT8; nested[3].count = 0; nested[3].data = NULL;

        q4k_gguf_writer_set_str(w, "general.architecture", "llama");
        q4k_gguf_writer_set_str(w, "general.name", "q4k sample \xe2\x9c\x93 \"quoted\"\n");
        q4k_gguf_writer_set(w, "sample.u8", Q4K_GGUF_UINT8, &u8);
        q4k_gguf_writer_set(w, "sample.i8", Q4K_GGUF_INT8, &i8);
        q4k_gguf_writer_set(w, "sample.u16", Q4K_GGUF_UINT16, &u16);
        q4k_gguf_writer_set(w, "sample.i16", Q4K_GGUF_INT16, &i16);
        q4k_gguf_writer_set_u32(w, "sample.u32", 4000000000u);
        q4k_gguf_writer_set_i32(w, "sample.i32", -2000000000);
        q4k_gguf_writer_set_f32(w, "sample.f32", 0.15625f);
        q4k_gguf_writer_set(w, "sample.bool", Q4K_GGUF_BOOL, &b1);
        q4k_gguf_writer_set(w, "sample.u64", Q4K_GGUF_UINT64, &u64);
        q4k_gguf_writer_set(w, "sample.i64", Q4K_GGUF_INT64, &i64);
        q4k_gguf_writer_set(w, "sample.f64", Q4K_GGUF_FLOAT64, &f64);
        q4k_gguf_writer_set_arr(w, "sample.arr_u8", Q4K_GGUF_UINT8, a_u8, 3);
        q4k_gguf_writer_set_arr(w, "sample.arr_i8", Q4K_GGUF_INT8, a_i8, 3);
        q4k_gguf_writer_set_arr(w, "sample.arr_u16", Q4K_GGUF_UINT16, a_u16, 2);
        q4k_gguf_writer_set_arr(w, "sample.arr_i16", Q4K_GGUF_INT16, a_i16, 2);
        q4k_gguf_writer_set_arr(w, "sample.arr_u32", Q4K_GGUF_UINT32, a_u32, 2);
        q4k_gguf_writer_set_arr(w, "sample.arr_i32_long", Q4K_GGUF_INT32, a_i32_long, 100);
        q4k_gguf_writer_set_arr(w, "sample.arr_f32", Q4K_GGUF_FLOAT32, a_f32, 3);
        q4k_gguf_writer_set_arr(w, "sample.arr_bool", Q4K_GGUF_BOOL, a_bool, 3);
        q4k_gguf_writer_set_arr(w, "sample.arr_u64", Q4K_GGUF_UINT64, a_u64, 1);
        q4k_gguf_writer_set_arr(w, "sample.arr_i64", Q4K_GGUF_INT64, a_i64, 2);
        q4k_gguf_writer_set_arr(w, "sample.arr_f64", Q4K_GGUF_FLOAT64, a_f64, 2);
        q4k_gguf_writer_set_arr(w, "sample.arr_empty", Q4K_GGUF_FLOAT32, NULL, 0);
        q4k_gguf_writer_set_arr_str(w, "sample.arr_str", a_str, 5);
        q4k_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 20);
        {
            q4k_gguf_arr top;
            top.elem_type = Q4K_GGUF_ARRAY;
            top.count = 4;
            top.data = nested;
            q4k_gguf_writer_set_array(w, "sample.arr_nested", &top);
        }
    }

    n_t = (int)(sizeof tensors / sizeof tensors[0]);
    memcpy(all, tensors, sizeof tensors);
    if (q3k) all[n_t++] = q3k_tensor;
    for (i = 0; i < n_t; i++) {
        size_t n = q4k_row_size(all[i].type, all[i].ne[0]) * (size_t)(all[i].ne[1] * all[i].ne[2] * all[i].ne[3]);
        data[i] = (unsigned char *)malloc(n);
        if (!data[i]) return fail("out of memory", NULL);
        for (j = 0; j < n; j++) data[i][j] = (unsigned char)((j * 131 + (size_t)i * 29 + 7) & 0xff);
        q4k_gguf_writer_add_tensor(w, all[i].name, all[i].type, all[i].n_dims, all[i].ne, stream ? NULL : data[i]);
    }

    if (stream) {
        r = q4k_gguf_writer_begin(w, path, &err);
        for (i = 0; r == Q4K_OK && i < n_t; i++) r = q4k_gguf_writer_write_tensor(w, data[i], &err);
        if (r == Q4K_OK) r = q4k_gguf_writer_end(w, &err);
    } else {
        r = q4k_gguf_writer_write_file(w, path, &err);
    }
    for (i = 0; i < n_t; i++) free(data[i]);
    q4k_gguf_writer_free(w);
    if (r != Q4K_OK) return fail("write failed", &err);
    return 0;
}
